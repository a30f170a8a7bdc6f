//! `GET /_cat/indices?format=json`: the list of indices with their state.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct CatIndex {
    pub index: String,
    /// `open` or `close`.
    #[serde(default)]
    pub status: Option<String>,
    /// Primary shard count, as a string.
    #[serde(default)]
    pub pri: Option<String>,
    /// Documents, as a string (`null` for a closed index).
    #[serde(default, rename = "docs.count")]
    pub docs_count: Option<String>,
    /// Bytes the primary shards take on disk, as a string (`bytes=b`).
    #[serde(default, rename = "pri.store.size")]
    pub pri_store_size: Option<String>,
}

impl CatIndex {
    pub fn is_closed(&self) -> bool {
        matches!(self.status.as_deref(), Some("close") | Some("closed"))
    }

    pub fn primary_shards(&self) -> Option<u32> {
        self.pri.as_deref()?.parse().ok()
    }

    /// The documents and the primaries' bytes on disk, when both are known.
    pub fn docs_and_bytes(&self) -> Option<(u64, u64)> {
        let docs = self.docs_count.as_deref()?.parse().ok()?;
        let bytes = self.pri_store_size.as_deref()?.parse().ok()?;
        Some((docs, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_and_bytes_of_a_listing() {
        let open: CatIndex = serde_json::from_str(
            r#"{"index":"a","status":"open","pri":"2","docs.count":"20","pri.store.size":"2000706"}"#,
        )
        .unwrap();
        assert_eq!(open.docs_and_bytes(), Some((20, 2_000_706)));
        let closed: CatIndex = serde_json::from_str(
            r#"{"index":"b","status":"close","pri":"1","docs.count":null,"pri.store.size":null}"#,
        )
        .unwrap();
        assert_eq!(closed.docs_and_bytes(), None);
        let old: CatIndex = serde_json::from_str(r#"{"index":"c"}"#).unwrap();
        assert_eq!(old.docs_and_bytes(), None);
    }
}
