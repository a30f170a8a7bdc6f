//! `_bulk` answers: per item, its status and error, paired with the
//! documents sent by position.
//! <https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html#bulk-api-response-body>

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Debug, Deserialize)]
pub struct BulkResponse<'a> {
    #[serde(default)]
    pub errors: bool,
    #[serde(borrow)]
    pub items: Vec<BulkItem<'a>>,
}

/// `{"index": {...}}`, `{"create": {...}}`…: the action key is irrelevant.
#[derive(Debug, Deserialize)]
pub struct BulkItem<'a> {
    #[serde(
        alias = "index",
        alias = "create",
        alias = "update",
        alias = "delete",
        borrow
    )]
    pub result: BulkItemResult<'a>,
}

#[derive(Debug, Deserialize)]
pub struct BulkItemResult<'a> {
    pub status: u16,
    #[serde(default, borrow)]
    pub error: Option<&'a RawValue>,
}

impl BulkItemResult<'_> {
    /// `type: reason` of the item's error (with its first cause), one line.
    pub fn reason(&self) -> String {
        match self.error {
            Some(raw) => {
                let wrapped = format!("{{\"error\":{}}}", raw.get());
                super::error::reason(wrapped.as_bytes())
            }
            None => format!("status {}", self.status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_pair_by_position() {
        let body = br#"{"errors":true,"items":[{"index":{"_id":"1","status":201}},{"create":{"_id":"2","status":400,"error":{"type":"strict_dynamic_mapping_exception","reason":"mapping set to strict"}}},{"index":{"_id":"3","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}],"took":1}"#;
        let r: BulkResponse = serde_json::from_slice(body).unwrap();
        assert!(r.errors);
        let statuses: Vec<u16> = r.items.iter().map(|i| i.result.status).collect();
        assert_eq!(statuses, [201, 400, 429]);
        assert_eq!(
            r.items[1].result.reason(),
            "strict_dynamic_mapping_exception: mapping set to strict"
        );
    }

    /// What `filter_path` (sink::bulk::request::ANSWER_FILTER) leaves of
    /// an answer: statuses and errors, without `_id` or `took`.
    #[test]
    fn a_filtered_answer_pairs_the_same() {
        let body = br#"{"errors":true,"items":[{"index":{"status":201}},{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"document already exists"}}}]}"#;
        let r: BulkResponse = serde_json::from_slice(body).unwrap();
        assert!(r.errors);
        let statuses: Vec<u16> = r.items.iter().map(|i| i.result.status).collect();
        assert_eq!(statuses, [201, 409]);
        assert_eq!(
            r.items[1].result.reason(),
            "version_conflict_engine_exception: document already exists"
        );
        // Nothing failed: `errors` filtered away, or false.
        let r: BulkResponse =
            serde_json::from_slice(br#"{"items":[{"index":{"status":200}}]}"#).unwrap();
        assert!(!r.errors);
    }
}
