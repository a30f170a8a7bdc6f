//! The rejects file: one JSON line per document the target refused for good
//! or that could not be delivered, `{"index","id","status","reason","document"}`.
//! Created on the first reject only, so that no file means no reject.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::archive::ArchiveError;

pub struct RejectsWriter {
    path: PathBuf,
    /// The open file; `None` until the first reject. The lock is held only
    /// while one line is written (rejects are rare, so contention is too).
    file: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
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
}

impl RejectsWriter {
    pub fn new(path: &Path) -> RejectsWriter {
        RejectsWriter {
            path: path.into(),
            file: Mutex::new(None),
        }
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
        let id = serde_json::from_slice::<Action>(action)
            .ok()
            .and_then(|a| a.meta.id.map(|i| i.get().to_string()))
            .unwrap_or_else(|| "null".into());
        let source = if serde_json::from_slice::<&RawValue>(source).is_ok() {
            String::from_utf8_lossy(source).into_owned()
        } else {
            serde_json::to_string(&String::from_utf8_lossy(source)).unwrap_or_default()
        };
        let line = format!(
            "{{\"index\":{},\"id\":{id},\"status\":{status},\"reason\":{},\"document\":{source}}}\n",
            serde_json::to_string(index).unwrap_or_default(),
            serde_json::to_string(reason).unwrap_or_default(),
        );
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let file = options
                .open(&self.path)
                .map_err(|e| ArchiveError::io(&self.path, e))?;
            *guard = Some(std::io::BufWriter::new(file));
        }
        let file = guard.as_mut().expect("opened above");
        file.write_all(line.as_bytes())
            .map_err(|e| ArchiveError::io(&self.path, e))
    }

    /// Flushes the file, if any.
    pub fn flush(&self) -> Result<(), ArchiveError> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = guard.as_mut() {
            f.flush().map_err(|e| ArchiveError::io(&self.path, e))?;
        }
        Ok(())
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
}
