//! Search and scroll answers, borrowed from the response bytes.
//!
//! Only what the dump needs is located: `_scroll_id`, `_shards` and per hit
//! `_id`, `_routing` and `_source`, the last three as raw JSON slices of the
//! response. `hits.total` is deliberately not read: it is capped (osmem and
//! some proxies stop at 10,000 in a scroll) and a reader must go on until an
//! empty page instead.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Debug, Deserialize)]
pub struct SearchResponse<'a> {
    #[serde(rename = "_scroll_id", default, borrow)]
    pub scroll_id: Option<Cow<'a, str>>,
    /// The point-in-time id, which the server may change between pages.
    #[serde(default, borrow)]
    pub pit_id: Option<Cow<'a, str>>,
    #[serde(rename = "_shards", default)]
    pub shards: Option<Shards>,
    #[serde(default)]
    pub timed_out: bool,
    #[serde(borrow)]
    pub hits: Hits<'a>,
}

#[derive(Debug, Deserialize)]
pub struct Shards {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub failures: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct Hits<'a> {
    #[serde(borrow)]
    pub hits: Vec<Hit<'a>>,
    /// Read by a scroll reader only where exact (`relation: eq`), to end a
    /// slice without asking for an empty page (`crate::source::scroll`).
    #[serde(default, borrow)]
    pub total: Option<&'a RawValue>,
}

/// One hit; each field is the exact JSON text the server sent.
#[derive(Debug, Deserialize)]
pub struct Hit<'a> {
    #[serde(rename = "_id", borrow)]
    pub id: &'a RawValue,
    #[serde(rename = "_routing", default, borrow)]
    pub routing: Option<&'a RawValue>,
    #[serde(rename = "_source", default, borrow)]
    pub source: Option<&'a RawValue>,
    /// Sort values: the `search_after` cursor of a point-in-time page.
    #[serde(default, borrow)]
    pub sort: Option<&'a RawValue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_keep_their_exact_bytes() {
        let body = br#"{"_scroll_id":"abc","_shards":{"failed":0,"skipped":0,"successful":2,"total":2},"hits":{"hits":[{"_id":"a","_index":"t1","_routing":"r1","_score":null,"_source":{"n":9223372036854775807,"z":1,"a":2.50},"sort":[0]}],"max_score":null,"total":{"relation":"eq","value":10000}},"timed_out":false,"took":0}"#;
        let page: SearchResponse = serde_json::from_slice(body).unwrap();
        assert_eq!(page.scroll_id.as_deref(), Some("abc"));
        assert_eq!(page.shards.unwrap().failed, 0);
        let hit = &page.hits.hits[0];
        assert_eq!(hit.id.get(), r#""a""#);
        assert_eq!(hit.routing.unwrap().get(), r#""r1""#);
        assert_eq!(
            hit.source.unwrap().get(),
            r#"{"n":9223372036854775807,"z":1,"a":2.50}"#
        );
    }
}
