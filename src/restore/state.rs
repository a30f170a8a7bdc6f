//! The state of a restore in progress, for `esark restore --resume`: the
//! options that decide where and what is written, and per index the
//! concrete index written, whether esark created it (and the settings to
//! put back), the chunks begun and the chunks acknowledged by the target.
//!
//! Rewritten atomically whenever a chunk begins or is acknowledged. It
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

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::report::IndexReport;
use super::RestoreError;
use crate::archive::ArchiveError;

/// The name of the state file that earlier versions kept in the archive
/// folder (or next to an input file); still skipped by the detection of
/// foreign dumps.
pub const STATE_FILE: &str = "restore.state.json";
const STATE_FORMAT: &str = "esark-restore-state";
/// 2: `options` and per index `started` were added.
const FORMAT_VERSION: u32 = 2;

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

impl RestoreState {
    /// Whether an index was begun and not finished: documents may be
    /// half-loaded, and only `--resume` finishes them.
    pub fn unfinished(&self) -> bool {
        self.indices.values().any(|i| i.done.is_none())
    }
}

/// The state file of a running restore, shared by its tasks.
pub struct StateFile {
    file: crate::archive::state_file::StateFile<RestoreState>,
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
            Ok(bytes) if !discard => match serde_json::from_slice::<RestoreState>(&bytes) {
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
        let file = StateFile {
            file: crate::archive::state_file::StateFile::new(
                path,
                RestoreState {
                    format: STATE_FORMAT.into(),
                    format_version: FORMAT_VERSION,
                    input: new.input.into(),
                    target_url: new.url.into(),
                    target_cluster_uuid: new.uuid.into(),
                    options: new.options.clone(),
                    indices: BTreeMap::new(),
                },
            ),
        };
        file.update(|_| {})?;
        Ok(file)
    }

    /// The state of an interrupted restore into the cluster `uuid`, if the
    /// options of this run agree with the recorded ones.
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
        let state: RestoreState =
            serde_json::from_slice(&bytes).map_err(|e| RestoreError::BadFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        if state.format != STATE_FORMAT || state.format_version > FORMAT_VERSION {
            return Err(RestoreError::Resume(format!(
                "{}: not an esark restore state of a known version",
                path.display()
            )));
        }
        if state.format_version < FORMAT_VERSION {
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
        Ok(StateFile {
            file: crate::archive::state_file::StateFile::new(path, state),
        })
    }

    pub fn index(&self, name: &str) -> Option<IndexState> {
        self.file.snapshot().indices.get(name).cloned()
    }

    pub fn update(&self, change: impl FnOnce(&mut RestoreState)) -> Result<(), ArchiveError> {
        self.file.update(change)
    }

    /// Removes the file: the restore is complete.
    pub fn remove(&self) -> Result<(), ArchiveError> {
        self.file.remove()
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
        state
            .update(|s| {
                let _ = s.indices.insert(
                    "i".into(),
                    IndexState {
                        target: "i".into(),
                        concrete: "i".into(),
                        restore_settings: None,
                        started: BTreeSet::new(),
                        chunks: BTreeMap::new(),
                        done: None,
                    },
                );
            })
            .unwrap();
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
