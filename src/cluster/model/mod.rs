//! Wire types: the parts of Elasticsearch/OpenSearch JSON answers esark
//! reads, one file per endpoint family. Hits are borrowed as raw JSON
//! ([`serde_json::value::RawValue`]) so that `_source` is never parsed into a
//! value and written back.

pub mod bulk;
pub mod cat;
pub mod error;
pub mod info;
pub mod search;
