//! The storage rows: what archives on object storage and encryption cost.
//! esark dump of the same source with the same options to S3 (moto on
//! 127.0.0.1) and to a folder with `--encrypt-to`, and esark restore into
//! the null sink from each of those archives, measured in the same rounds
//! as the folder rows they are compared with (`dump.esark`,
//! `restore.null`): each round runs folder, S3, encrypted back to back.
//!
//! Restores go into the null sink, not osmem: osmem indexes a few hundred
//! documents a second, which would hide the cost of reading the archive.
//!
//! moto is installed by run.sh (`scripts/install-moto.sh`, pinned); when it
//! could not be, the S3 rows are reported as SKIPPED with the reason. The
//! age key pair is generated here, for this run only.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{dir_size, failed, progress, Bench};
use crate::measure::median;
use crate::moto::Moto;
use crate::report::{Row, Run, RunStatus};
use crate::servers::GcCycle;

/// The bucket the S3 rows write to; each dump run gets a fresh prefix.
const BUCKET: &str = "esark-bench";

/// Where an esark archive lives, and what esark needs to write or read it.
#[derive(Debug, Clone)]
pub enum Archive {
    Folder(PathBuf),
    /// `s3://BUCKET/PREFIX` and the environment naming moto.
    S3 {
        prefix: String,
        env: Vec<(&'static str, String)>,
    },
    /// A folder encrypted to `recipient`, opened with the `identity` file.
    Encrypted {
        dir: PathBuf,
        recipient: String,
        identity: PathBuf,
    },
}

impl Archive {
    /// The `--output` / `--input` / `inspect` argument.
    pub fn location(&self) -> OsString {
        match self {
            Archive::Folder(dir) | Archive::Encrypted { dir, .. } => dir.clone().into(),
            Archive::S3 { prefix, .. } => format!("s3://{BUCKET}/{prefix}").into(),
        }
    }

    /// What `esark dump` needs to write it.
    pub fn writing(&self, cmd: &mut Command) {
        match self {
            Archive::Folder(_) => {}
            Archive::S3 { env, .. } => {
                cmd.envs(env.iter().map(|(k, v)| (k, v)));
            }
            Archive::Encrypted { recipient, .. } => {
                cmd.args(["--encrypt-to", recipient]);
            }
        }
    }

    /// What `esark restore` and `esark inspect` need to read it.
    pub fn reading(&self, cmd: &mut Command) {
        match self {
            Archive::Folder(_) => {}
            Archive::S3 { env, .. } => {
                cmd.envs(env.iter().map(|(k, v)| (k, v)));
            }
            Archive::Encrypted { identity, .. } => {
                cmd.arg("--identity").arg(identity);
            }
        }
    }

    /// Removes a folder before a dump writes it again (an S3 dump writes to
    /// a fresh prefix instead).
    pub fn clear(&self) {
        if let Archive::Folder(dir) | Archive::Encrypted { dir, .. } = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The S3 test server and the age key pair of a run, and the storage rows.
pub struct Storage {
    /// moto with the bucket created, or the run every S3 row reports
    /// instead (SKIPPED when moto could not be installed, FAILED when it
    /// did not start).
    moto: Result<Moto, Run>,
    /// The encrypted folder archive (recipient and identity file), or why
    /// there is none.
    encrypted: Result<Archive, String>,
    dump_s3: Row,
    dump_encrypted: Row,
    /// The last S3 dump, if it was complete: what the S3 restores read.
    s3_archive: Option<Archive>,
    /// CPU seconds moto spent during each S3 dump and each S3 restore.
    moto_cpu_dump: Vec<f64>,
    moto_cpu_restore: Vec<f64>,
    restore_s3: Row,
    restore_encrypted: Row,
}

fn skipped(why: String) -> Run {
    Run::without_numbers(RunStatus::Skipped(why))
}

impl Bench {
    /// Starts moto (with the bucket) and generates the age key pair.
    pub(super) fn storage_setup(&self) -> Storage {
        let moto = match &self.cfg.moto {
            Err(why) => Err(skipped(format!("no S3 test server: {why}"))),
            Ok(bin) => Moto::start(bin, &self.logs.join("moto.log"))
                .and_then(|m| m.create_bucket(BUCKET).map(|()| m))
                .map_err(|e| failed(format!("moto: {e}"))),
        };
        match &moto {
            Ok(m) => progress(&format!("moto at {}, bucket {BUCKET}", m.url())),
            Err(run) => progress(&format!("the S3 rows will not run: {:?}", run.status)),
        }
        let n = self.expected;
        let encrypted = age_keys(&self.dir).map(|(recipient, identity)| Archive::Encrypted {
            dir: self.path("dump-esark-encrypted"),
            recipient,
            identity,
        });
        Storage {
            moto,
            encrypted,
            dump_s3: Row::new("dump.s3", "dump", "esark dump → S3 (moto)", n),
            dump_encrypted: Row::new(
                "dump.encrypted",
                "dump",
                "esark dump --encrypt-to (age, folder)",
                n,
            ),
            s3_archive: None,
            moto_cpu_dump: Vec::new(),
            moto_cpu_restore: Vec::new(),
            restore_s3: Row::new(
                "restore.null_s3",
                "restore",
                "esark restore from S3 (moto) → null sink",
                n,
            ),
            restore_encrypted: Row::new(
                "restore.null_encrypted",
                "restore",
                "esark restore --identity (age, folder) → null sink",
                n,
            ),
        }
    }

    /// Round `r` of the storage dumps: to S3, then to an encrypted folder,
    /// each run after `quiet` (which waits for an idle source).
    pub(super) fn storage_dump(
        &self,
        st: &mut Storage,
        source: &str,
        r: usize,
        quiet: &mut dyn FnMut(),
    ) {
        match &st.moto {
            Err(run) => st.dump_s3.runs = vec![run.clone()],
            Ok(moto) => {
                let archive = Archive::S3 {
                    prefix: format!("dump-{r}"),
                    env: moto.env(),
                };
                quiet();
                let before = moto.cpu_seconds();
                let run = self.esark_dump(
                    source,
                    &archive,
                    &format!("dump-s3-{r}"),
                    st.dump_s3.expected,
                );
                if let (Some(b), Some(a)) = (before, moto.cpu_seconds()) {
                    st.moto_cpu_dump.push(a - b);
                }
                st.s3_archive = matches!(run.status, RunStatus::Ok).then_some(archive);
                st.dump_s3.runs.push(run);
                st.dump_s3.data_bytes = moto.prefix_bytes(BUCKET, &format!("dump-{r}/")).ok();
            }
        }
        st.dump_encrypted.runs.push(match &st.encrypted {
            Err(e) => failed(format!("no age key pair: {e}")),
            Ok(archive) => {
                quiet();
                self.esark_dump(
                    source,
                    archive,
                    &format!("dump-encrypted-{r}"),
                    st.dump_encrypted.expected,
                )
            }
        });
        if let Ok(Archive::Encrypted { dir, .. }) = &st.encrypted {
            st.dump_encrypted.data_bytes = Some(dir_size(dir));
        }
    }

    /// Marks the storage dump runs that met a garbage collection of the
    /// source server (see [`Row::note_gc`]).
    pub(super) fn storage_note_gc(&self, st: &mut Storage, cycles: Option<&[GcCycle]>) {
        st.dump_s3.note_gc(cycles);
        st.dump_encrypted.note_gc(cycles);
    }

    /// Round `r` of the storage restores into the null sink: from the last
    /// S3 dump, then from the encrypted folder.
    pub(super) fn storage_restore(&self, st: &mut Storage, r: usize) {
        let n = st.restore_s3.expected;
        match (&st.moto, &st.s3_archive) {
            (Err(run), _) => st.restore_s3.runs = vec![run.clone()],
            (Ok(_), None) => st
                .restore_s3
                .runs
                .push(failed("no complete S3 dump".into())),
            (Ok(moto), Some(archive)) => {
                let before = moto.cpu_seconds();
                let run = self.esark_restore_null(archive, &format!("restore-null-s3-{r}"), n);
                if let (Some(b), Some(a)) = (before, moto.cpu_seconds()) {
                    st.moto_cpu_restore.push(a - b);
                }
                st.restore_s3.runs.push(run);
                st.restore_s3.data_bytes = st.dump_s3.data_bytes;
            }
        }
        let dumped = st
            .dump_encrypted
            .runs
            .last()
            .is_some_and(|r| matches!(r.status, RunStatus::Ok));
        st.restore_encrypted.runs.push(match &st.encrypted {
            Ok(archive) if dumped => {
                self.esark_restore_null(archive, &format!("restore-null-encrypted-{r}"), n)
            }
            _ => failed("no complete encrypted dump".into()),
        });
        st.restore_encrypted.data_bytes = st.dump_encrypted.data_bytes;
    }

    /// Stops moto and keeps the rows and what moto spent.
    pub(super) fn storage_finish(&mut self, st: Storage) {
        if let Ok(moto) = &st.moto {
            let cpu = |v: &[f64]| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.2} s", median(v.to_vec()))
                }
            };
            self.notes.push(format!(
                "moto (the S3 server, a separate Python process, not counted in client CPU) spent a median of \
                 {} CPU per S3 dump and {} per S3 restore.",
                cpu(&st.moto_cpu_dump),
                cpu(&st.moto_cpu_restore)
            ));
            progress(&format!("stopping moto at {}", moto.url()));
        }
        drop(st.moto);
        self.storage_rows = vec![
            st.dump_s3,
            st.dump_encrypted,
            st.restore_s3,
            st.restore_encrypted,
        ];
    }
}

/// A fresh age X25519 key pair for this run: the recipient (`age1…`) and
/// an identity file (owner-only, as `age-keygen -o` writes it).
fn age_keys(dir: &Path) -> Result<(String, PathBuf), String> {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let path = dir.join("bench-age.key");
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(
        file,
        "# public key: {recipient}\n{}",
        identity.to_string().expose_secret()
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((recipient, path))
}
