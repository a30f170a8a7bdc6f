//! Archives as tar streams, both ways, never whole in memory.
//!
//! Out ([`tar_body`]): the files the manifest lists, then `manifest.json`,
//! under `NAME/`, read from the store object by object into a tar writer
//! whose output is the response body. The manifest comes last, as in the
//! store: a transfer cut short leaves an extracted folder without it,
//! which every esark command treats as incomplete. Each file is checked
//! against the manifest on the way; one that changed ends the transfer
//! with an error instead of a complete-looking tar.
//!
//! In ([`receive`]): the request body as a tar stream. Entries are either
//! all at the root of the tar or all under one top folder (stripped).
//! Regular files go to the store as they arrive, with their size and
//! sha256 computed on the way; `manifest.json` is held back (capped at
//! [`MAX_MANIFEST`]) and written last with a conditional create, only
//! once every file it lists arrived intact and nothing else came. Links,
//! devices, fifos and paths leaving the archive are refused. On any
//! failure every object written is removed.
//!
//! [`download`] writes, [`upload`] reads and checks.

mod download;
mod upload;

pub use download::tar_body;
pub use upload::{receive, UploadError, MAX_MANIFEST};

#[cfg(test)]
mod tests;
