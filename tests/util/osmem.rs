//! A private `osmem-server` (in-memory OpenSearch-compatible server) for one
//! test: started on `127.0.0.1:0`, its URL read from the JSON line it prints
//! first, killed and reaped on drop. It also dies with the test process
//! (`-parent-pid`).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// A private `osmem-server` child process, killed on drop.
pub struct Osmem {
    child: Child,
    pub url: String,
    /// Everything the server printed (stdout and stderr), for diagnostics.
    /// Draining both pipes also keeps the server from dying of a closed pipe.
    log: Arc<Mutex<Vec<u8>>>,
}

impl Osmem {
    fn binary() -> PathBuf {
        match std::env::var_os("ESARK_OSMEM_BIN") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/osmem-server"),
        }
    }

    pub fn start() -> Osmem {
        let bin = Self::binary();
        if !bin.exists() {
            panic!(
                "osmem-server not found at {}: run ./scripts/install-osmem.sh \
                 (or set ESARK_OSMEM_BIN, or ESARK_TEST_URL to use a real cluster)",
                bin.display()
            );
        }
        let mut child = Command::new(&bin)
            .args(["-addr", "127.0.0.1:0", "-no-stdin-watch", "-parent-pid"])
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (first_line_tx, first_line_rx) = mpsc::channel::<String>();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let log_out = log.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            log_out.lock().unwrap().extend_from_slice(line.as_bytes());
            let _ = first_line_tx.send(line);
            drain(stdout, log_out);
        });
        let stderr = child.stderr.take().unwrap();
        let log_err = log.clone();
        std::thread::spawn(move || drain(stderr, log_err));

        let line = match first_line_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "osmem-server printed no address within 30 s:\n{}",
                    String::from_utf8_lossy(&log.lock().unwrap())
                );
            }
        };
        let url = serde_json::from_str::<Value>(line.trim())
            .ok()
            .and_then(|v| v["url"].as_str().map(str::to_string));
        let Some(url) = url else {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "osmem-server's first line has no \"url\": {line:?}\n{}",
                String::from_utf8_lossy(&log.lock().unwrap())
            );
        };
        Osmem { child, url, log }
    }

    pub fn log(&self) -> String {
        let log = self.log.lock().unwrap();
        let text = String::from_utf8_lossy(&log);
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("--- osmem output (tail) ---\n{}", tail.join("\n"))
    }
}

fn drain(mut from: impl Read, into: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut log = into.lock().unwrap();
                // Keep memory bounded on chatty servers: the tail is what matters.
                if log.len() > 1 << 20 {
                    log.drain(..1 << 19);
                }
                log.extend_from_slice(&buf[..n]);
            }
        }
    }
}

impl Drop for Osmem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
