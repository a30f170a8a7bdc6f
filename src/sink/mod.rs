//! Writing documents out.
//!
//! - [`chunk::ChunkWriter`]: pages of archive lines -> numbered, compressed,
//!   checksummed chunk files (dump).
//! - [`bulk::BulkBuilder`] and [`bulk::BulkIndexer`]: archive lines -> `_bulk`
//!   requests cut by bytes and documents, sent concurrently under a
//!   semaphore and the [`rate::RateLimits`], retried item by item (restore,
//!   copy).
//! - [`rejects::RejectsWriter`]: every document the target refused, with why.

pub mod bulk;
pub mod chunk;
pub mod rate;
pub mod rejects;

pub use chunk::ChunkWriter;
