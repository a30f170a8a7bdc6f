//! Runs the `esark` binary under test and captures what it did.
//!
//! Every run has a timeout (60 s by default) so a hang fails the test with
//! the output so far instead of blocking CI. The child's environment is
//! cleaned of `ESARK_*` variables so the developer's shell cannot change a
//! test's outcome; a test adds the ones it means with [`Esark::env`].
//! `ESARK_STATE_DIR` points at [`test_state_dir`] and `ESARK_SPOOL_DIR` at
//! [`test_spool_dir`] unless a test sets them, so restore states and spools
//! never go to the real home.
//! Failure messages show the command line with URL passwords masked.
//!
//! [`dump_cmd`] / [`dump`] point `esark dump` at a [`TestCluster`];
//! [`inspect`] runs `esark inspect DIR`.

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::server::TestCluster;

/// A prepared `esark` invocation.
pub struct Esark {
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    timeout: Duration,
    /// The working directory, where one is given (relative outputs).
    dir: Option<std::path::PathBuf>,
}

/// What an `esark` run did.
#[derive(Debug)]
pub struct Output {
    /// Exit code; `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for failure messages.
    pub command: String,
}

impl Esark {
    pub fn new() -> Esark {
        Esark {
            args: Vec::new(),
            envs: Vec::new(),
            timeout: Duration::from_secs(60),
            dir: None,
        }
    }

    /// Runs in `dir`, where relative paths land.
    pub fn current_dir(mut self, dir: &Path) -> Esark {
        self.dir = Some(dir.to_path_buf());
        self
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Esark {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Esark
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Esark {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Esark {
        self.timeout = timeout;
        self
    }

    /// Runs to completion (or kills it at the timeout and panics).
    pub fn run(self) -> Output {
        let bin = env!("CARGO_BIN_EXE_esark");
        let command = std::iter::once(bin.to_string())
            .chain(
                self.args
                    .iter()
                    .map(|a| shell_quote(&redact(&a.to_string_lossy()))),
            )
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = Command::new(bin);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ESARK_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("NO_COLOR", "1");
        cmd.env("ESARK_STATE_DIR", test_state_dir());
        cmd.env("ESARK_SPOOL_DIR", test_spool_dir());
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
        let stdout = capture(child.stdout.take().unwrap());
        let stderr = capture(child.stderr.take().unwrap());
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "esark did not finish within {:?}: {command}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.timeout,
                    text(&stdout),
                    text(&stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipes close when the child exits; let the readers finish.
        let deadline = Instant::now() + Duration::from_secs(5);
        while (Arc::strong_count(&stdout) > 1 || Arc::strong_count(&stderr) > 1)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        Output {
            code: status.code(),
            stdout: text(&stdout),
            stderr: text(&stderr),
            command,
        }
    }
}

impl Default for Esark {
    fn default() -> Self {
        Esark::new()
    }
}

/// The restore state folder of runs that do not choose one: private to
/// this test process, under the system's temporary folder.
pub fn test_state_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("esark-test-state-{}", std::process::id()))
}

/// The restore spool folder (`ESARK_SPOOL_DIR`) of runs that do not choose
/// one: beside [`test_state_dir`], never the real home's cache.
pub fn test_spool_dir() -> std::path::PathBuf {
    test_state_dir().join("spool")
}

/// `esark <args>` with the default timeout.
pub fn esark<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Esark::new().args(args).run()
}

/// `esark dump --source <cluster> --output <out>`, ready for more flags.
pub fn dump_cmd(cluster: &TestCluster, out: &Path) -> Esark {
    Esark::new()
        .arg("dump")
        .args(cluster.source_args())
        .arg("--output")
        .arg(out)
}

/// `esark dump --source <cluster> --output <out> <extra>`, run.
pub fn dump(cluster: &TestCluster, out: &Path, extra: &[&str]) -> Output {
    dump_cmd(cluster, out).args(extra).run()
}

/// `esark inspect DIR`.
pub fn inspect(dir: &Path) -> Output {
    Esark::new().arg("inspect").arg(dir).run()
}

/// Collects everything a child writes to a pipe, on a thread of its own.
pub fn capture(mut from: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let out = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match from.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
        drop(out);
    });
    buf
}

/// What [`capture`] collected so far, as text.
pub fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

/// Hides the password of a URL (`scheme://user:***@host`) so that failure
/// messages do not print a shared cluster's credentials into CI logs.
pub fn redact(arg: &str) -> String {
    let re = regex::Regex::new(r"(://[^:/@\s]*:)[^@/\s]*@").unwrap();
    re.replace_all(arg, "${1}***@").into_owned()
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the whole run unless it exited 0.
    pub fn assert_success(&self) -> &Output {
        assert!(self.success(), "expected exit 0\n{self}");
        self
    }

    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}
