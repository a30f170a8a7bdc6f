//! Comparing the documents of an index with those of its target.
//!
//! Each side (archive chunks, a dump of another tool, or the target read
//! slice by slice) is streamed into an order-independent [`IndexDigest`]
//! ([`super::digest`]); where the digests differ, only the differing
//! buckets are read again, remembering their ids and hashes, to name the
//! missing, changed and unexpected documents. Memory stays bounded: one
//! page or line at a time, plus the documents of the differing buckets
//! (at most [`MAX_LOCATE`] per side).

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;

use super::digest::{doc_hash, DigestError, DocHash, IndexDigest};
use super::{IndexVerdict, VerifyError, MAX_LISTED};
use crate::archive::line::{parse_line, LineError};
use crate::catalog::IndexMetadata;
use crate::cluster::Cluster;
use crate::job::{CancellationToken, IndexCounter};
use crate::plan::{DataOrigin, IndexPlan};
use crate::source::archive::ChunkLines;
use crate::source::foreign::ForeignLines;
use crate::source::slice::spawn_slices_matching;
use crate::source::{LineReader, ReaderKind, SliceEvent};

/// Documents remembered per side while locating differences.
pub const MAX_LOCATE: usize = 200_000;

/// Why one document could not be digested.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error(transparent)]
    Line(#[from] LineError),
    #[error("{0}")]
    Id(serde_json::Error),
    #[error("{0}")]
    Utf8(#[from] std::str::Utf8Error),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// Compares the documents of `index` with those of its target (whose
/// metadata is `meta`): counts and digests, then, where buckets differ,
/// the ids of the missing, changed and unexpected documents.
pub(super) async fn compare_documents(
    index: &IndexPlan,
    target: &Arc<Cluster>,
    meta: &IndexMetadata,
    page_size: usize,
    verdict: &mut IndexVerdict,
    progress: (&IndexCounter, &CancellationToken),
) -> Result<(), VerifyError> {
    let (counter, cancel) = progress;
    let live = target_origin(target, meta, page_size);
    // The target's documents are counted as they are read (the first
    // pass); the archive side is read at the same time.
    let (archive_side, target_side) = tokio::join!(
        digest_side(&index.data, &index.name, None, None, cancel),
        digest_side(&live, &index.target, None, Some(counter), cancel)
    );
    let (archive_digest, _) = archive_side?;
    let (target_digest, _) = target_side?;
    verdict.target_docs = target_digest.count();
    let differing = archive_digest.differing(&target_digest);
    verdict.documents_match = differing.is_empty();
    if !differing.is_empty() {
        let (archive_side, target_side) = tokio::join!(
            digest_side(&index.data, &index.name, Some(&differing), None, cancel),
            digest_side(&live, &index.target, Some(&differing), None, cancel)
        );
        let (_, archive_docs) = archive_side?;
        let (_, target_docs) = target_side?;
        match (archive_docs, target_docs) {
            (Some(a), Some(t)) => locate(&a, &t, verdict),
            _ => verdict.differences.push(format!(
                "too many differing documents to list (more than {MAX_LOCATE})"
            )),
        }
    }
    if verdict.archive_docs != verdict.target_docs {
        verdict.differences.push(format!(
            "{} documents in the archive, {} on the target",
            verdict.archive_docs, verdict.target_docs
        ));
    }
    Ok(())
}

fn target_origin(target: &Arc<Cluster>, meta: &IndexMetadata, page_size: usize) -> DataOrigin {
    DataOrigin::Cluster {
        cluster: target.clone(),
        slices: meta.shards().min(crate::source::slice::AUTO_SLICES_MAX),
        page_size: meta.page_size(page_size),
        reader: ReaderKind::Auto,
        query: None,
    }
}

type Located = HashMap<String, [u8; 32]>;

/// Streams one side. With `only`, also returns the documents of those
/// buckets (None when there are more than [`MAX_LOCATE`]). A live side's
/// documents are counted on `counter`, if given.
async fn digest_side(
    origin: &DataOrigin,
    index: &str,
    only: Option<&[usize]>,
    counter: Option<&IndexCounter>,
    cancel: &CancellationToken,
) -> Result<(IndexDigest, Option<Located>), VerifyError> {
    match origin {
        DataOrigin::Stdin(_) => Err(VerifyError::StdinOnce),
        DataOrigin::Foreign(files) => digest_lines(ForeignLines::new(files.clone()), only).await,
        DataOrigin::Chunks(files) => digest_lines(ChunkLines::new(files.clone()), only).await,
        DataOrigin::Cluster {
            cluster,
            slices,
            page_size,
            reader,
            query,
        } => {
            // One side per slice, so that a restarted slice (a lost scroll
            // page) can start its own count again.
            let mut sides: Vec<Side> = (0..*slices).map(|_| Side::new(only)).collect();
            // Per slice: documents and bytes counted, taken back on a restart.
            let mut counted: Vec<(u64, u64)> = vec![(0, 0); *slices as usize];
            let (mut events, readers) = spawn_slices_matching(
                cluster.clone(),
                index,
                *slices,
                *page_size,
                *reader,
                query.clone(),
                cancel.clone(),
            );
            let mut failed = None;
            while let Some((slice, event)) = events.next().await {
                let side = &mut sides[slice as usize];
                let (docs, bytes) = &mut counted[slice as usize];
                match event {
                    SliceEvent::Restart => {
                        *side = Side::new(only);
                        if let Some(counter) = counter {
                            counter.take_back(*docs, *bytes);
                        }
                        (*docs, *bytes) = (0, 0);
                    }
                    SliceEvent::Page(page) => {
                        if let Some(counter) = counter {
                            counter.add(page.docs, page.lines.len() as u64);
                        }
                        *docs += page.docs;
                        *bytes += page.lines.len() as u64;
                        for line in page.lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                            if let Err(error) = side.visit(line) {
                                failed.get_or_insert(VerifyError::BadDocument {
                                    index: index.to_string(),
                                    error,
                                });
                            }
                        }
                    }
                }
            }
            for r in readers {
                match r.await {
                    Ok(Ok(())) => {}
                    Ok(Err(crate::source::ReadError::Interrupted)) => {
                        failed.get_or_insert(VerifyError::Interrupted);
                    }
                    Ok(Err(e)) => {
                        failed.get_or_insert(VerifyError::Slice(e));
                    }
                    Err(e) => {
                        failed.get_or_insert(VerifyError::Panicked(e));
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            let mut digest = IndexDigest::default();
            let mut located = only.map(|_| HashMap::new());
            for side in sides {
                let (d, l) = side.finish();
                digest.merge(&d);
                located = match (located, l) {
                    (Some(mut all), Some(part)) => {
                        all.extend(part);
                        (all.len() <= MAX_LOCATE).then_some(all)
                    }
                    _ => None,
                };
            }
            Ok((digest, located))
        }
    }
}

/// Digests every line of archive chunks or of a dump of another tool.
async fn digest_lines(
    mut lines: impl LineReader,
    only: Option<&[usize]>,
) -> Result<(IndexDigest, Option<Located>), VerifyError> {
    let mut side = Side::new(only);
    let mut buf = Vec::new();
    while lines.read_line(&mut buf).await? {
        side.visit(&buf).map_err(|error| {
            let (path, line) = lines.position();
            VerifyError::BadLine { path, line, error }
        })?;
    }
    Ok(side.finish())
}

/// The digest of one stream of documents, and the documents of the
/// buckets being located.
struct Side<'a> {
    digest: IndexDigest,
    only: Option<&'a [usize]>,
    located: Option<Located>,
}

impl<'a> Side<'a> {
    fn new(only: Option<&'a [usize]>) -> Side<'a> {
        Side {
            digest: IndexDigest::default(),
            only,
            located: only.map(|_| HashMap::new()),
        }
    }

    fn visit(&mut self, line: &[u8]) -> Result<(), DocumentError> {
        let parsed = parse_line(line)?;
        let id: String = serde_json::from_slice(parsed.id).map_err(DocumentError::Id)?;
        let source = std::str::from_utf8(parsed.source)?;
        let doc: DocHash = doc_hash(&id, source)?;
        self.digest.add(&doc);
        if let (Some(only), Some(map)) = (self.only, self.located.as_mut()) {
            if only.contains(&doc.bucket) {
                if map.len() >= MAX_LOCATE {
                    self.located = None;
                } else {
                    map.insert(id, doc.hash);
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> (IndexDigest, Option<Located>) {
        (self.digest, self.located)
    }
}

fn locate(archive: &Located, target: &Located, verdict: &mut IndexVerdict) {
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    let mut unexpected = Vec::new();
    for (id, hash) in archive {
        match target.get(id) {
            None => missing.push(id.clone()),
            Some(h) if h != hash => changed.push(id.clone()),
            Some(_) => {}
        }
    }
    for id in target.keys() {
        if !archive.contains_key(id) {
            unexpected.push(id.clone());
        }
    }
    for (kind, mut ids, out) in [
        ("missing on the target", missing, &mut verdict.missing),
        ("changed on the target", changed, &mut verdict.changed),
        (
            "on the target but not in the archive",
            unexpected,
            &mut verdict.unexpected,
        ),
    ] {
        if ids.is_empty() {
            continue;
        }
        ids.sort();
        verdict.differences.push(format!(
            "{} documents {kind}: {}{}",
            ids.len(),
            ids.iter()
                .take(MAX_LISTED)
                .map(|i| format!("{i:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            if ids.len() > MAX_LISTED { ", …" } else { "" }
        ));
        ids.truncate(MAX_LISTED);
        *out = ids;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::verdict;

    #[test]
    fn locate_names_missing_changed_and_unexpected() {
        let a: Located = [("1".to_string(), [1; 32]), ("2".to_string(), [2; 32])].into();
        let t: Located = [("2".to_string(), [9; 32]), ("3".to_string(), [3; 32])].into();
        let mut v = verdict();
        locate(&a, &t, &mut v);
        assert_eq!(v.missing, ["1"]);
        assert_eq!(v.changed, ["2"]);
        assert_eq!(v.unexpected, ["3"]);
    }
}
