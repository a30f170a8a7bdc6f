//! `esark dump --output -`: one index to standard output as an esark
//! stream ([`crate::stream`] has the format: header, documents, trailer).
//!
//! Bytes written to a pipe cannot be taken back, so the source is read with
//! repeatable pages: a point in time where the cluster has one. A slice
//! that must restart (a lost scroll page) ends the run with an error
//! instead of writing documents twice. A reader of the pipe that goes away
//! (`| head`) fails the dump.

use std::sync::Arc;

use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{DumpConfig, DumpError};
use crate::archive::manifest::SourceCluster;
use crate::catalog::select_indices;
use crate::cluster::Cluster;
use crate::job::CancellationToken;
use crate::source::slice::spawn_slices_matching;
use crate::source::{ReadError, ReaderKind, SliceEvent};
use crate::stream::{header_line, trailer_line, StreamHeader, STREAM_VERSION};

/// Streams the one index `config` selects into `out`: header, documents,
/// trailer. Returns the number of documents written.
pub async fn dump_to<W: AsyncWrite + Unpin>(
    config: &DumpConfig,
    out: &mut W,
    cancel: CancellationToken,
) -> Result<u64, DumpError> {
    let created_at = crate::archive::manifest::now_rfc3339();
    let cluster = Arc::new(Cluster::connect(&config.source).await?);
    let (selected, _) = select_indices(&cluster, &config.selector).await?;
    let selected = match selected.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(DumpError::Pipe(
                "no open index matched; --output - writes exactly one".into(),
            ))
        }
        many => {
            return Err(DumpError::Pipe(format!(
                "{} indices matched ({}…); --output - writes exactly one: narrow --match",
                many.len(),
                many[0].name
            )))
        }
    };
    // One data stream reads like one index: its documents, by its name.
    let (meta, _) = crate::catalog::read_metadata(&cluster, &selected, None, false, None).await?;
    let index = selected.name;
    let info = cluster.info();
    let header = StreamHeader {
        version: STREAM_VERSION,
        index: index.clone(),
        source: SourceCluster {
            url: cluster.url().to_string(),
            cluster_name: info.cluster_name.clone(),
            cluster_uuid: info.cluster_uuid.clone(),
            flavor: info.flavor,
            version: info.version.clone(),
        },
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at,
    };
    let mut written = 0;
    out.write_all(&header_line(&header))
        .await
        .map_err(|e| pipe_error(e, written))?;
    let slices = config.slices.resolve(meta.shards());
    let reader = match config.reader {
        ReaderKind::Auto if cluster.has_pit() => ReaderKind::Pit,
        other => other,
    };
    let (mut events, readers) = spawn_slices_matching(
        cluster.clone(),
        &index,
        slices,
        config.page_size,
        reader,
        config.query.clone(),
        cancel,
    );
    let mut failure = None;
    while let Some((_, event)) = events.next().await {
        match event {
            SliceEvent::Page(page) => {
                if let Err(e) = out.write_all(&page.lines).await {
                    failure = Some(pipe_error(e, written));
                    break;
                }
                written += page.docs;
            }
            SliceEvent::Restart => {
                failure = Some(DumpError::Pipe(format!(
                    "index {index:?}: the source lost a page and the slice must be read again, which a pipe cannot take back; {written} documents were written, run again (with --reader pit if the cluster has point in time)"
                )));
                break;
            }
        }
    }
    drop(events);
    for r in readers {
        match r.await {
            Ok(Ok(())) => {}
            Ok(Err(ReadError::Interrupted)) => {
                // Nothing to resume: a pipe keeps no checkpoint.
                failure.get_or_insert(DumpError::Pipe(format!(
                    "interrupted: the stream of index {index:?} is incomplete (no trailer, {written} documents written); run the pipe again"
                )));
            }
            Ok(Err(e)) => {
                failure.get_or_insert(DumpError::Pipe(e.to_string()));
            }
            Err(e) => {
                failure.get_or_insert(DumpError::Pipe(format!("a reader task failed: {e}")));
            }
        }
    }
    // No trailer after a failure: the reader of the stream sees it is
    // incomplete. What was read is still passed on, so that it shows how
    // far the dump got.
    if let Some(e) = failure {
        let _ = out.flush().await;
        return Err(e);
    }
    out.write_all(&trailer_line(written))
        .await
        .map_err(|e| pipe_error(e, written))?;
    out.flush().await.map_err(|e| pipe_error(e, written))?;
    Ok(written)
}

fn pipe_error(e: std::io::Error, written: u64) -> DumpError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        DumpError::PipeClosed { written }
    } else {
        DumpError::Pipe(format!("writing to stdout: {e}"))
    }
}
