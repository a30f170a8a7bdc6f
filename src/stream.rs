//! Pipes: `esark dump --output -` writes one index's documents to stdout as
//! archive lines (`{"_id":…,"_routing":…,"_source":…}`, one per line, no
//! compression, no manifest), for `| gzip`, `| jq`, or another tool.
//!
//! Bytes written to a pipe cannot be taken back, so the source is read with
//! repeatable pages: a point in time where the cluster has one. A slice
//! that must restart (a lost scroll page) ends the run with an error
//! instead of writing documents twice.

use std::sync::Arc;

use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::dump::{select_indices, DumpConfig, DumpError};
use crate::source::slice::spawn_slices_matching;
use crate::source::{ReadError, ReaderKind, SliceEvent};

/// Streams the one index `config` selects into `out`; returns the number
/// of documents written.
pub async fn dump_to<W: AsyncWrite + Unpin>(
    config: &DumpConfig,
    out: &mut W,
    cancel: watch::Receiver<bool>,
) -> Result<u64, DumpError> {
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
    let (meta, _) = crate::dump::read_metadata(&cluster, &selected).await?;
    let index = selected.name;
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
    let mut written = 0;
    let mut failure = None;
    while let Some((_, event)) = events.next().await {
        match event {
            SliceEvent::Page(page) => {
                if let Err(e) = out.write_all(&page.lines).await {
                    failure = Some(pipe_error(e));
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
                failure.get_or_insert(DumpError::Interrupted(config.output.clone()));
            }
            Ok(Err(e)) => {
                failure.get_or_insert(DumpError::Pipe(e.to_string()));
            }
            Err(e) => {
                failure.get_or_insert(DumpError::Pipe(format!("a reader task failed: {e}")));
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    out.flush().await.map_err(pipe_error)?;
    Ok(written)
}

fn pipe_error(e: std::io::Error) -> DumpError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        DumpError::PipeClosed
    } else {
        DumpError::Pipe(format!("writing to stdout: {e}"))
    }
}
