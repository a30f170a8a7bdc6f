//! Reading documents out of a cluster.
//!
//! [`scroll::ScrollReader`] reads one slice of one index page by page and
//! turns each page into archive lines ([`crate::archive::line`]) without
//! parsing `_source`.

pub mod archive;
pub mod scroll;

pub use scroll::{Page, ScrollError, ScrollReader};
