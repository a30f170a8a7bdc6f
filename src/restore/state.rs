//! The state of a restore in progress, for `esark restore --resume`: the
//! options that decide where and what is written, and per index the
//! concrete index written, whether esark created it (and the settings to
//! put back), the chunks begun and the chunks acknowledged by the target.
//!
//! A journal: each change (an index set up, a chunk begun, a chunk
//! acknowledged, an index done) is a line appended and synced to disk
//! before the restore acts on it; a resume writes the file again whole. It
//! lives outside the archive (which may be read-only, and which a restore
//! must not modify): by default in the user's state folder
//! ([`default_dir`]), in a file named after the archive and the target
//! ([`default_path`]); `--state FILE` chooses another.
//!
//! A state with an unfinished index is never overwritten: a run without
//! `--resume` stops before touching anything ([`RestoreError::Unfinished`]),
//! and `--resume` refuses options that contradict the recorded ones
//! ([`RestoreError::OptionsDiffer`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::report::IndexReport;
use super::RestoreError;
use crate::archive::state_file::{complete_lines, Journal};
use crate::archive::ArchiveError;

/// The name of the state file that earlier versions kept in the archive
/// folder (or next to an input file); still skipped by the detection of
/// foreign dumps.
pub const STATE_FILE: &str = "restore.state.json";
const STATE_FORMAT: &str = "esark-restore-state";
/// 2: `options` and per index `started` were added (one JSON object,
/// rewritten whole on every change).
/// 3: a journal of JSON lines, a [`Header`], then a [`Change`] per line.
/// Version 2 rewrote every index's record (and fsynced it) four times per
/// index or more: restoring 1,000 indices of 100 documents spent most of
/// its 14.3 s of client CPU doing so (benches/RESULTS.md); a line per
/// change costs the same whatever came before. Version 2 files are still
/// resumed (rewritten as version 3 first).
const FORMAT_VERSION: u32 = 3;

/// A restore's state: the header of the file and what its changes add up to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreState {
    pub format: String,
    pub format_version: u32,
    /// The input restored, for messages.
    #[serde(default)]
    pub input: String,
    pub target_url: String,
    pub target_cluster_uuid: String,
    /// The options that decide where and what is written (`--mode` ->
    /// `fail`, ...), as [`super::RestoreConfig::recorded`] gives them.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub indices: BTreeMap<String, IndexState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexState {
    pub target: String,
    pub concrete: String,
    /// Set when esark created the index: the settings to put back.
    pub restore_settings: Option<Value>,
    /// Chunks whose documents began to be sent: a resumed run sends those
    /// not acknowledged again, and a `create` answered 409 for one of them
    /// is the earlier run's write, not a conflict.
    #[serde(default)]
    pub started: BTreeSet<PathBuf>,
    /// Acknowledged chunks: path -> (written, rejected).
    pub chunks: BTreeMap<PathBuf, (u64, u64)>,
    /// The final report, once the index is complete.
    pub done: Option<IndexReport>,
}

/// The first line of a version 3 state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    format: String,
    format_version: u32,
    #[serde(default)]
    input: String,
    target_url: String,
    target_cluster_uuid: String,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

/// One line after the header: what happened to one index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
enum Change {
    /// The index was set up (created, or taken over): documents follow.
    Begun {
        index: String,
        target: String,
        concrete: String,
        restore_settings: Option<Value>,
    },
    /// A chunk's documents are about to be sent (written ahead).
    Started { index: String, chunk: PathBuf },
    /// A chunk's documents were all answered.
    Acked {
        index: String,
        chunk: PathBuf,
        written: u64,
        rejected: u64,
    },
    /// The index is complete.
    Done { index: String, report: IndexReport },
}

/// Serializes `&Change`s and `&Header`s alike into one journal.
#[derive(Serialize)]
#[serde(untagged)]
enum Line<'a> {
    Header(&'a Header),
    Change(&'a Change),
}

impl RestoreState {
    /// Whether an index was begun and not finished: documents may be
    /// half-loaded, and only `--resume` finishes them.
    pub fn unfinished(&self) -> bool {
        self.indices.values().any(|i| i.done.is_none())
    }

    fn header(&self) -> Header {
        Header {
            format: self.format.clone(),
            format_version: FORMAT_VERSION,
            input: self.input.clone(),
            target_url: self.target_url.clone(),
            target_cluster_uuid: self.target_cluster_uuid.clone(),
            options: self.options.clone(),
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Begun {
                index,
                target,
                concrete,
                restore_settings,
            } => {
                self.indices.insert(
                    index,
                    IndexState {
                        target,
                        concrete,
                        restore_settings,
                        started: BTreeSet::new(),
                        chunks: BTreeMap::new(),
                        done: None,
                    },
                );
            }
            Change::Started { index, chunk } => {
                if let Some(i) = self.indices.get_mut(&index) {
                    i.started.insert(chunk);
                }
            }
            Change::Acked {
                index,
                chunk,
                written,
                rejected,
            } => {
                if let Some(i) = self.indices.get_mut(&index) {
                    i.chunks.insert(chunk, (written, rejected));
                }
            }
            Change::Done { index, report } => {
                if let Some(i) = self.indices.get_mut(&index) {
                    i.done = Some(report);
                }
            }
        }
    }

    /// The changes that rebuild this state from its header.
    fn changes(&self) -> Vec<Change> {
        let mut out = Vec::new();
        for (name, i) in &self.indices {
            out.push(Change::Begun {
                index: name.clone(),
                target: i.target.clone(),
                concrete: i.concrete.clone(),
                restore_settings: i.restore_settings.clone(),
            });
            out.extend(i.started.iter().map(|chunk| Change::Started {
                index: name.clone(),
                chunk: chunk.clone(),
            }));
            out.extend(
                i.chunks
                    .iter()
                    .map(|(chunk, (written, rejected))| Change::Acked {
                        index: name.clone(),
                        chunk: chunk.clone(),
                        written: *written,
                        rejected: *rejected,
                    }),
            );
            if let Some(report) = &i.done {
                out.push(Change::Done {
                    index: name.clone(),
                    report: report.clone(),
                });
            }
        }
        out
    }

    /// Reads a state file: a version 3 journal, or the single JSON object
    /// of versions 1 and 2. `Err` says why it is not a state.
    fn parse(bytes: &[u8]) -> Result<RestoreState, String> {
        if let Ok(whole) = serde_json::from_slice::<RestoreState>(bytes) {
            return Ok(whole);
        }
        let mut lines = complete_lines(bytes);
        let first = lines.next().ok_or("empty")?;
        let header: Header = serde_json::from_slice(first).map_err(|e| format!("line 1: {e}"))?;
        if header.format != STATE_FORMAT {
            return Err("not an esark restore state".into());
        }
        let mut state = RestoreState {
            format: header.format,
            format_version: header.format_version,
            input: header.input,
            target_url: header.target_url,
            target_cluster_uuid: header.target_cluster_uuid,
            options: header.options,
            indices: BTreeMap::new(),
        };
        if header.format_version > FORMAT_VERSION {
            // A newer esark's changes may mean something else.
            return Ok(state);
        }
        for (n, line) in lines.enumerate() {
            let change: Change =
                serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", n + 2))?;
            state.apply(change);
        }
        Ok(state)
    }
}

/// The state file of a running restore, shared by its tasks: the state in
/// memory, and its journal on disk, which each change is appended to
/// before the restore acts on it.
pub struct StateFile {
    journal: Journal,
    state: Mutex<RestoreState>,
}

/// Where a new restore records its progress, and what is recorded.
pub struct NewState<'a> {
    pub input: &'a str,
    pub url: &'a str,
    pub uuid: &'a str,
    pub options: &'a BTreeMap<String, String>,
}

impl StateFile {
    /// A fresh state for a new restore. Refuses to replace the state of an
    /// unfinished restore (unless `discard`), or a file that is not a state.
    pub fn create(
        path: &Path,
        new: NewState<'_>,
        discard: bool,
    ) -> Result<StateFile, RestoreError> {
        match std::fs::read(path) {
            Ok(bytes) if !discard => match RestoreState::parse(&bytes) {
                Ok(old) if old.format == STATE_FORMAT && !old.unfinished() => {}
                Ok(old) if old.format == STATE_FORMAT => {
                    return Err(RestoreError::Unfinished {
                        path: path.to_path_buf(),
                    })
                }
                _ => {
                    return Err(RestoreError::BadFile {
                        path: path.display().to_string(),
                        reason:
                            "not an esark restore state; move it away or choose another --state"
                                .into(),
                    })
                }
            },
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArchiveError::io(path, e).into()),
        }
        let state = RestoreState {
            format: STATE_FORMAT.into(),
            format_version: FORMAT_VERSION,
            input: new.input.into(),
            target_url: new.url.into(),
            target_cluster_uuid: new.uuid.into(),
            options: new.options.clone(),
            indices: BTreeMap::new(),
        };
        StateFile::write(path, state)
    }

    /// Writes `state` whole as a fresh journal.
    fn write(path: &Path, state: RestoreState) -> Result<StateFile, RestoreError> {
        let header = state.header();
        let changes = state.changes();
        let journal = Journal::rewrite(
            path,
            std::iter::once(Line::Header(&header)).chain(changes.iter().map(Line::Change)),
        )?;
        Ok(StateFile {
            journal,
            state: Mutex::new(state),
        })
    }

    /// The state of an interrupted restore into the cluster `uuid`, if the
    /// options of this run agree with the recorded ones. The file is
    /// written again, whole, in the current version, before anything else
    /// (which also drops a last line torn by a crash).
    pub fn resume(
        path: &Path,
        uuid: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<StateFile, RestoreError> {
        let bytes = std::fs::read(path).map_err(|e| {
            RestoreError::Resume(format!(
                "{}: {e}: no interrupted restore of this input into this cluster to continue",
                path.display()
            ))
        })?;
        let mut state = RestoreState::parse(&bytes).map_err(|reason| RestoreError::BadFile {
            path: path.display().to_string(),
            reason,
        })?;
        if state.format != STATE_FORMAT || state.format_version > FORMAT_VERSION {
            return Err(RestoreError::Resume(format!(
                "{}: not an esark restore state of a known version",
                path.display()
            )));
        }
        if state.format_version < 2 {
            // Version 1 did not record the options: nothing would tell a
            // resumed run that it writes where the first did.
            return Err(RestoreError::Resume(format!(
                "{}: written by an older esark that did not record the restore's options; \
                 finish it with that version, or start over with --discard-state",
                path.display()
            )));
        }
        if state.target_cluster_uuid != uuid {
            return Err(RestoreError::Resume(format!(
                "{}: the interrupted restore went to cluster {} at {}, not to this one",
                path.display(),
                state.target_cluster_uuid,
                state.target_url
            )));
        }
        let differ = differing(&state.options, options);
        if !differ.is_empty() {
            return Err(RestoreError::OptionsDiffer {
                path: path.to_path_buf(),
                options: differ.join(", "),
            });
        }
        state.format_version = FORMAT_VERSION;
        StateFile::write(path, state)
    }

    /// What the state records of the index `name`.
    pub fn index(&self, name: &str) -> Option<IndexState> {
        self.lock().indices.get(name).cloned()
    }

    /// Records that `index` was set up: its documents follow.
    pub fn begin(
        &self,
        index: &str,
        target: &str,
        concrete: &str,
        restore_settings: Option<Value>,
    ) -> Result<(), ArchiveError> {
        self.record(Change::Begun {
            index: index.into(),
            target: target.into(),
            concrete: concrete.into(),
            restore_settings,
        })
    }

    /// Records, before they are sent, that the documents of `chunk` of
    /// `index` are about to be.
    pub fn started(&self, index: &str, chunk: &Path) -> Result<(), ArchiveError> {
        self.record(Change::Started {
            index: index.into(),
            chunk: chunk.into(),
        })
    }

    /// Records that every document of `chunk` of `index` was answered.
    pub fn acked(
        &self,
        index: &str,
        chunk: &Path,
        written: u64,
        rejected: u64,
    ) -> Result<(), ArchiveError> {
        self.record(Change::Acked {
            index: index.into(),
            chunk: chunk.into(),
            written,
            rejected,
        })
    }

    /// Records that `index` is complete, with its report.
    pub fn done(&self, index: &str, report: &IndexReport) -> Result<(), ArchiveError> {
        self.record(Change::Done {
            index: index.into(),
            report: report.clone(),
        })
    }

    /// Appends `change` to the file, then applies it in memory.
    fn record(&self, change: Change) -> Result<(), ArchiveError> {
        let mut state = self.lock();
        self.journal.append(&Line::Change(&change))?;
        state.apply(change);
        Ok(())
    }

    /// Removes the file: the restore is complete.
    pub fn remove(&self) -> Result<(), ArchiveError> {
        self.journal.remove()
    }

    fn lock(&self) -> MutexGuard<'_, RestoreState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `--flag value (recorded: other)` for each option that differs.
fn differing(recorded: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> Vec<String> {
    let keys: BTreeSet<&String> = recorded.keys().chain(now.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (was, is) = (recorded.get(k), now.get(k));
            (was != is).then(|| {
                format!(
                    "{k} {} (recorded: {})",
                    is.map_or("(not given)", String::as_str),
                    was.map_or("(not given)", String::as_str)
                )
            })
        })
        .collect()
}

/// The folder of restore states: `$ESARK_STATE_DIR`, else
/// `$XDG_STATE_HOME/esark`, else `~/.local/state/esark`.
pub fn default_dir() -> Result<PathBuf, RestoreError> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("ESARK_STATE_DIR")
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("esark")))
        .or_else(|| var("HOME").map(|d| d.join(".local/state/esark")))
        .ok_or(RestoreError::NoStateDir)
}

/// The default state file of restoring `input` (whose identity is
/// `identity`, e.g. its manifest's bytes) into the cluster `uuid` at `url`:
/// `DIR/restore-NAME-HASH.json`, stable across runs of the same archive.
pub fn default_path(dir: &Path, input: &Path, identity: &[u8], url: &str, uuid: &str) -> PathBuf {
    let absolute = std::fs::canonicalize(input).unwrap_or_else(|_| input.to_path_buf());
    let mut hasher = Sha256::new();
    for part in [
        absolute.to_string_lossy().as_bytes(),
        identity,
        url.as_bytes(),
        uuid.as_bytes(),
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let hash = hex::encode(&hasher.finalize()[..8]);
    let name: String = absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    dir.join(format!("restore-{name}-{hash}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn differing_options_name_the_flag_and_the_recorded_value() {
        let recorded = options(&[("--mode", "fail"), ("--prefix", "(none)")]);
        assert!(differing(&recorded, &recorded).is_empty());
        let now = options(&[("--mode", "fail"), ("--prefix", "r-")]);
        assert_eq!(
            differing(&recorded, &now),
            ["--prefix r- (recorded: (none))"]
        );
    }

    #[test]
    fn a_state_with_an_unfinished_index_is_not_replaced_and_old_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let opts = options(&[("--mode", "fail")]);
        let new = || NewState {
            input: "a",
            url: "http://x",
            uuid: "u",
            options: &opts,
        };
        let state = StateFile::create(&path, new(), false).unwrap();
        // Nothing begun yet: a new run may start over.
        drop(StateFile::create(&path, new(), false).unwrap());
        state.begin("i", "i", "i", None).unwrap();
        let refused = StateFile::create(&path, new(), false).err().unwrap();
        assert!(
            matches!(refused, RestoreError::Unfinished { .. }),
            "{refused}"
        );
        let differ = StateFile::resume(&path, "u", &options(&[("--mode", "merge")]))
            .err()
            .unwrap();
        assert!(
            differ.to_string().contains("--mode merge (recorded: fail)"),
            "{differ}"
        );
        assert!(StateFile::resume(&path, "u", &opts).is_ok());
        drop(StateFile::create(&path, new(), true).unwrap());
        assert!(StateFile::resume(&path, "u", &opts)
            .unwrap()
            .index("i")
            .is_none());

        let v1 = r#"{"format":"esark-restore-state","format_version":1,"target_url":"x","target_cluster_uuid":"u","indices":{}}"#;
        std::fs::write(&path, v1).unwrap();
        let old = StateFile::resume(&path, "u", &opts).err().unwrap();
        assert!(old.to_string().contains("older esark"), "{old}");
    }

    #[test]
    fn the_journal_is_resumed_with_every_change_even_after_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let opts = options(&[("--mode", "fail")]);
        let new = NewState {
            input: "a",
            url: "http://x",
            uuid: "u",
            options: &opts,
        };
        let state = StateFile::create(&path, new, false).unwrap();
        let settings = serde_json::json!({"index": {"refresh_interval": "1s"}});
        state
            .begin("i", "t", "t-1", Some(settings.clone()))
            .unwrap();
        state.started("i", Path::new("i/a.lz4")).unwrap();
        state.acked("i", Path::new("i/a.lz4"), 7, 1).unwrap();
        state.started("i", Path::new("i/b.lz4")).unwrap();
        state.begin("j", "j", "j", None).unwrap();
        let mut report = IndexReport::new("j", "j", 0);
        report.status = super::super::report::Status::Restored;
        state.done("j", &report).unwrap();
        drop(state);
        // One line per change after the header: nothing is rewritten.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 7, "{text}");
        // A crash in the middle of the next line.
        let mut torn = text.into_bytes();
        torn.extend_from_slice(br#"{"change":"acked","index":"i","chu"#);
        std::fs::write(&path, &torn).unwrap();
        let refused = StateFile::create(
            &path,
            NewState {
                input: "a",
                url: "http://x",
                uuid: "u",
                options: &opts,
            },
            false,
        )
        .err()
        .unwrap();
        assert!(
            matches!(refused, RestoreError::Unfinished { .. }),
            "{refused}"
        );

        let resumed = StateFile::resume(&path, "u", &opts).unwrap();
        let i = resumed.index("i").unwrap();
        assert_eq!((i.target.as_str(), i.concrete.as_str()), ("t", "t-1"));
        assert_eq!(i.restore_settings, Some(settings));
        assert_eq!(i.started.len(), 2);
        assert_eq!(i.chunks[Path::new("i/a.lz4")], (7, 1));
        assert!(i.done.is_none());
        assert!(resumed.index("j").unwrap().done.is_some());
        // Written again whole, without the torn line: appends go on from there.
        resumed.acked("i", Path::new("i/b.lz4"), 3, 0).unwrap();
        drop(resumed);
        let again = StateFile::resume(&path, "u", &opts).unwrap();
        assert_eq!(again.index("i").unwrap().chunks.len(), 2);
    }

    #[test]
    fn a_version_2_state_is_resumed_and_written_again_as_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let v2 = r#"{
  "format": "esark-restore-state",
  "format_version": 2,
  "input": "a",
  "target_url": "http://x",
  "target_cluster_uuid": "u",
  "options": {"--mode": "fail"},
  "indices": {
    "i": {
      "target": "i",
      "concrete": "i",
      "restore_settings": null,
      "started": ["i/a.zst", "i/b.zst"],
      "chunks": {"i/a.zst": [5, 0]},
      "done": null
    }
  }
}"#;
        std::fs::write(&path, v2).unwrap();
        let opts = options(&[("--mode", "fail")]);
        let resumed = StateFile::resume(&path, "u", &opts).unwrap();
        let i = resumed.index("i").unwrap();
        assert_eq!(i.started.len(), 2);
        assert_eq!(i.chunks[Path::new("i/a.zst")], (5, 0));
        let text = std::fs::read_to_string(&path).unwrap();
        let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(header["format_version"], 3, "{text}");
        assert_eq!(text.lines().count(), 5, "{text}");
    }

    #[test]
    fn the_default_path_is_stable_and_depends_on_archive_and_target() {
        let dir = tempfile::tempdir().unwrap();
        let a = default_path(
            dir.path(),
            Path::new("/no/such/my archive"),
            b"m",
            "http://t",
            "u",
        );
        assert_eq!(
            a,
            default_path(
                dir.path(),
                Path::new("/no/such/my archive"),
                b"m",
                "http://t",
                "u"
            )
        );
        assert!(a
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("restore-my_archive-"));
        for other in [
            default_path(
                dir.path(),
                Path::new("/no/such/other"),
                b"m",
                "http://t",
                "u",
            ),
            default_path(
                dir.path(),
                Path::new("/no/such/my archive"),
                b"n",
                "http://t",
                "u",
            ),
            default_path(
                dir.path(),
                Path::new("/no/such/my archive"),
                b"m",
                "http://t2",
                "u",
            ),
            default_path(
                dir.path(),
                Path::new("/no/such/my archive"),
                b"m",
                "http://t",
                "v",
            ),
        ] {
            assert_ne!(a, other);
        }
    }
}
