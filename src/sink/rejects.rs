//! The rejects file: one JSON line per document the target refused for good
//! or that could not be delivered,
//! `{"index","id","routing"?,"status","reason","document"}` (`routing` when
//! the document has one; `status` 0 when no answer came). Created on the
//! first reject only, so that no file means no reject; it belongs to one
//! run: a new run empties the file of an earlier one
//! ([`RejectsWriter::fresh`]).
//!
//! Durability: [`RejectsWriter::sync`] flushes and fsyncs; the restore calls
//! it before it acknowledges a chunk that had rejects, so that a chunk a
//! resumed run skips never loses its rejects. A write that fails is kept
//! ([`RejectsWriter::flush`] and `sync` return it) and fails the run:
//! a reject is never only logged.
//!
//! A resumed restore appends to the file of the interrupted run
//! ([`RejectsWriter::resume`]): it drops a torn last line, and does not list
//! again a document (index and id) the file already lists, so that each
//! rejected document is listed once across both runs.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::archive::ArchiveError;
use crate::job::{Event, Events};

pub struct RejectsWriter {
    path: PathBuf,
    /// The open file; `None` until the first reject. The lock is held only
    /// while one line is written (rejects are rare, so contention is too).
    file: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    /// The first write that failed, returned by every later flush.
    failed: Mutex<Option<String>>,
    /// `index\0id` of the documents an earlier run listed (resumed only).
    listed: HashSet<String>,
    /// Each reject is also an [`Event::DocumentRejected`].
    events: Events,
}

#[derive(Deserialize)]
struct Listed<'a> {
    #[serde(borrow)]
    index: &'a str,
    #[serde(borrow)]
    id: &'a RawValue,
}

#[derive(Deserialize)]
struct Action<'a> {
    #[serde(alias = "index", alias = "create", borrow)]
    meta: Meta<'a>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(rename = "_id", borrow)]
    id: Option<&'a RawValue>,
    #[serde(alias = "_routing", borrow)]
    routing: Option<&'a RawValue>,
}

impl RejectsWriter {
    pub fn new(path: &Path) -> RejectsWriter {
        RejectsWriter {
            path: path.into(),
            file: Mutex::new(None),
            failed: Mutex::new(None),
            listed: HashSet::new(),
            events: Events::discard(),
        }
    }

    /// Reports each reject written as an event too.
    pub fn with_events(mut self, events: Events) -> RejectsWriter {
        self.events = events;
        self
    }

    /// The writer of a new run (not `--resume`): the file an earlier run
    /// left at `path` is emptied, so that it lists this run's rejects only.
    pub fn fresh(path: &Path) -> Result<RejectsWriter, ArchiveError> {
        match std::fs::OpenOptions::new().write(true).open(path) {
            Ok(file) => file.set_len(0).map_err(|e| ArchiveError::io(path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArchiveError::io(path, e)),
        }
        Ok(RejectsWriter::new(path))
    }

    /// The writer of a resumed run: appends to what the interrupted run
    /// wrote, cut after its last whole line, and skips documents it lists.
    pub fn resume(path: &Path) -> Result<RejectsWriter, ArchiveError> {
        let mut writer = RejectsWriter::new(path);
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(writer),
            Err(e) => return Err(ArchiveError::io(path, e)),
        };
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if whole < text.len() {
            // A line torn by the kill: its chunk was not acknowledged, and
            // its document is sent (and, if refused, listed) again.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| ArchiveError::io(path, e))?;
            file.set_len(whole as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| ArchiveError::io(path, e))?;
        }
        for line in text[..whole].split(|&b| b == b'\n') {
            if let Ok(l) = serde_json::from_slice::<Listed>(line) {
                writer.listed.insert(format!("{}\0{}", l.index, l.id.get()));
            }
        }
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether anything was written.
    pub fn is_used(&self) -> bool {
        self.file.lock().map(|f| f.is_some()).unwrap_or(true)
    }

    /// Records one document, given as its NDJSON pair (action and source).
    pub fn write(
        &self,
        index: &str,
        pair: &[u8],
        status: u16,
        reason: &str,
    ) -> Result<(), ArchiveError> {
        let (action, source) = match memchr::memchr(b'\n', pair) {
            Some(nl) => (
                &pair[..nl],
                pair[nl + 1..]
                    .strip_suffix(b"\n")
                    .unwrap_or(&pair[nl + 1..]),
            ),
            None => (pair, &b"null"[..]),
        };
        let meta = serde_json::from_slice::<Action>(action)
            .ok()
            .map(|a| a.meta);
        let id = meta
            .as_ref()
            .and_then(|m| m.id.map(|i| i.get().to_string()))
            .unwrap_or_else(|| "null".into());
        let routing = meta
            .as_ref()
            .and_then(|m| m.routing)
            .map(|r| format!(",\"routing\":{}", r.get()))
            .unwrap_or_default();
        let source = if serde_json::from_slice::<&RawValue>(source).is_ok() {
            String::from_utf8_lossy(source).into_owned()
        } else {
            serde_json::to_string(&String::from_utf8_lossy(source)).unwrap_or_default()
        };
        let line = format!(
            "{{\"index\":{},\"id\":{id}{routing},\"status\":{status},\"reason\":{},\"document\":{source}}}\n",
            serde_json::to_string(index).unwrap_or_default(),
            serde_json::to_string(reason).unwrap_or_default(),
        );
        if !self.listed.is_empty() && self.listed.contains(&format!("{index}\0{id}")) {
            return Ok(());
        }
        self.events.emit(Event::DocumentRejected {
            index: index.to_string(),
            id: match serde_json::from_str::<Option<String>>(&id) {
                Ok(id) => id,
                Err(_) => Some(id.clone()),
            },
            status,
            reason: reason.to_string(),
        });
        self.append(line.as_bytes()).map_err(|e| {
            self.failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| e.to_string());
            ArchiveError::io(&self.path, e)
        })
    }

    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            *guard = Some(std::io::BufWriter::new(options.open(&self.path)?));
        }
        guard.as_mut().expect("opened above").write_all(line)
    }

    /// Flushes the file, if any; fails if any write failed.
    pub fn flush(&self) -> Result<(), ArchiveError> {
        self.flush_and(false)
    }

    /// Flushes and fsyncs the file, if any; fails if any write failed.
    pub fn sync(&self) -> Result<(), ArchiveError> {
        self.flush_and(true)
    }

    fn flush_and(&self, sync: bool) -> Result<(), ArchiveError> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = guard.as_mut() {
            f.flush().map_err(|e| ArchiveError::io(&self.path, e))?;
            if sync {
                f.get_ref()
                    .sync_data()
                    .map_err(|e| ArchiveError::io(&self.path, e))?;
            }
        }
        drop(guard);
        match &*self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(ArchiveError::io(
                &self.path,
                std::io::Error::other(format!("cannot record rejected documents: {e}")),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_line_per_reject_and_only_when_needed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rejects.jsonl");
        let w = RejectsWriter::new(&path);
        assert!(!w.is_used());
        w.flush().unwrap();
        assert!(!path.exists());
        w.write(
            "idx",
            b"{\"index\":{\"_index\":\"idx\",\"_id\":\"a\\\"1\"}}\n{\"b\":9223372036854775807}\n",
            400,
            "strict_dynamic_mapping_exception: no",
        )
        .unwrap();
        w.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"index\":\"idx\",\"id\":\"a\\\"1\",\"status\":400,\"reason\":\"strict_dynamic_mapping_exception: no\",\"document\":{\"b\":9223372036854775807}}\n"
        );
    }

    #[test]
    fn a_resumed_writer_cuts_a_torn_line_and_lists_each_document_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rejects.jsonl");
        let pair = |id: &str| format!("{{\"index\":{{\"_id\":\"{id}\"}}}}\n{{\"a\":1}}\n");
        let first = RejectsWriter::new(&path);
        first
            .write("idx", pair("1").as_bytes(), 400, "bad")
            .unwrap();
        first.sync().unwrap();
        let whole = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!("{whole}{{\"index\":\"idx\",\"id\":\"2\",\"sta"),
        )
        .unwrap();
        let resumed = RejectsWriter::resume(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
        resumed
            .write("idx", pair("1").as_bytes(), 400, "bad")
            .unwrap();
        resumed
            .write("other", pair("1").as_bytes(), 400, "bad")
            .unwrap();
        resumed
            .write("idx", pair("2").as_bytes(), 400, "bad")
            .unwrap();
        resumed.sync().unwrap();
        let ids: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!(
                    "{}/{}",
                    v["index"].as_str().unwrap(),
                    v["id"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(ids, ["idx/1", "other/1", "idx/2"]);
    }

    /// Regression: the rejects file was appended to across runs, so a new
    /// run's file also listed an earlier run's rejects; and it did not
    /// record a document's routing.
    #[test]
    fn a_new_run_empties_the_file_and_routing_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rejects.jsonl");
        std::fs::write(&path, "{\"index\":\"old\",\"id\":\"x\"}\n").unwrap();
        let w = RejectsWriter::fresh(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        w.write(
            "idx",
            b"{\"index\":{\"_index\":\"idx\",\"_id\":\"1\",\"routing\":\"r1\"}}\n{\"a\":1}\n",
            413,
            "HTTP 413: too large",
        )
        .unwrap();
        w.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"index\":\"idx\",\"id\":\"1\",\"routing\":\"r1\",\"status\":413,\"reason\":\"HTTP 413: too large\",\"document\":{\"a\":1}}\n"
        );
    }

    #[test]
    fn a_failed_write_fails_every_later_flush() {
        let dir = tempfile::tempdir().unwrap();
        let w = RejectsWriter::new(&dir.path().join("no/such/dir/rejects.jsonl"));
        assert!(w.write("i", b"{\"index\":{}}\n{}\n", 400, "x").is_err());
        let e = w.sync().unwrap_err().to_string();
        assert!(e.contains("cannot record rejected documents"), "{e}");
        assert!(w.flush().is_err());
    }
}
