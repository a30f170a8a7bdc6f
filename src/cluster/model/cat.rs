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
}

impl CatIndex {
    pub fn is_closed(&self) -> bool {
        matches!(self.status.as_deref(), Some("close") | Some("closed"))
    }

    pub fn primary_shards(&self) -> Option<u32> {
        self.pri.as_deref()?.parse().ok()
    }
}
