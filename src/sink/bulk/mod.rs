//! Bulk indexing: archive lines -> `_bulk` requests -> the target.
//!
//! - [`request`]: [`BulkBuilder`] turns archive lines into NDJSON pairs
//!   without parsing `_source` (its raw bytes are copied) and cuts
//!   [`BulkRequest`]s by bytes and by documents. Each request keeps the byte
//!   range of every pair, so a partial retry re-joins only the documents
//!   that failed.
//! - [`indexer`]: [`BulkIndexer`] sends requests concurrently under a
//!   semaphore and the rate limits; each request's retries run in its own
//!   task through the one [`crate::retry::RetryPolicy`], deciding with the
//!   pure [`crate::retry::classify_bulk`]. Every document ends up written,
//!   rejected or failed, and counted ([`IndexStats`]).

pub mod indexer;
pub mod request;

pub use indexer::{BulkIndexer, IndexStats, Pending};
pub use request::{BulkBuilder, BulkOp, BulkRequest, PushError};
