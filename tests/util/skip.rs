//! Visible skips: a test whose precondition is missing (a second cluster,
//! a private osmem, root for a tmpfs) says so instead of passing silently.
//!
//! [`skip`] writes `SKIPPED <test>: <reason>` straight to the process's
//! stderr (not through `eprintln!`, which the test harness captures and
//! shows only for failures) and appends `<test>\t<reason>` to the file named
//! by `ESARK_TEST_SKIP_LOG`. `scripts/test.sh` sets that variable, empties
//! the file before `cargo test` and prints the count and the list after it.
//! The caller then returns from the test.

use std::io::Write;

/// Records that the current test is skipped, and why.
///
/// `label` names the test when the thread does not (the harness names each
/// test's thread after the test's path, except with `--test-threads=1`).
pub fn skip(label: &str, reason: &str) {
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" => name.to_string(),
        _ => label.to_string(),
    };
    let reason = reason.replace(['\n', '\t'], " ");
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os("ESARK_TEST_SKIP_LOG").filter(|p| !p.is_empty()) {
        let line = format!("{test}\t{reason}\n");
        // One write of one short line in append mode: lines of tests running
        // in parallel do not interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!(
                "cannot record the skip of {test} in {}: {e}",
                std::path::Path::new(&path).display()
            );
        }
    }
}
