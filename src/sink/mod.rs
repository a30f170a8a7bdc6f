//! Writing documents out.
//!
//! [`chunk::ChunkWriter`] turns pages of archive lines into numbered,
//! compressed, checksummed chunk files.

pub mod chunk;

pub use chunk::ChunkWriter;
