//! Running one measured child process: wall time, CPU of its process tree,
//! peak RSS, with a deadline.
//!
//! The tool is not started by the harness itself but by a launcher, this
//! binary's `launch` role, which reaps it with `wait4(pid)` and reports the
//! `rusage` in a small JSON file. The `rusage` of `wait4` covers the child
//! and every descendant it waited for (Linux folds reaped children into
//! their parent's counters): user+sys is the CPU of the whole tree
//! (elasticdump's forked workers included), and `ru_maxrss` the largest
//! single process of that tree. The launcher exists because Linux starts a
//! child's `ru_maxrss` from the memory of the process that spawned it (the
//! spawner's peak, with `posix_spawn`): spawned from the harness, which
//! holds scratch data, every tool would inherit the harness's peak; the
//! launcher is a fresh process of a few MiB, like a shell would be.
//!
//! The launcher and the tool share a fresh process group; because forked
//! workers run side by side, a sampler also sums the RSS of every process
//! of the group but the launcher from `/proc` every 50 ms ("tree RSS").
//! On the deadline the whole group is killed with SIGKILL.

use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// The process group of the child being measured (0: none), killed if the
/// harness is interrupted or loses its parent.
static CURRENT_GROUP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    stop_now();
}

/// Kills the measured child's group and exits at once. Only
/// async-signal-safe calls: servers notice our exit on their own
/// (osmem's `-parent-pid`, the null sink's parent check).
fn stop_now() -> ! {
    let group = CURRENT_GROUP.load(Ordering::SeqCst);
    // SAFETY: kill and _exit are async-signal-safe syscalls.
    unsafe {
        if group > 0 {
            libc::kill(-group, libc::SIGKILL);
        }
        libc::_exit(130)
    }
}

/// Makes an interrupted (SIGINT, SIGTERM, SIGHUP) or orphaned harness take
/// its measured child down with it. Handlers are reset in exec'd children.
pub fn install_guards() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only makes async-signal-safe calls.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    thread::spawn(move || loop {
        thread::sleep(Duration::from_millis(500));
        // SAFETY: as above.
        if unsafe { libc::getppid() } != parent {
            eprintln!("compare: the parent process went away; stopping");
            stop_now();
        }
    });
}

/// What one run of a child cost.
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    pub wall: Duration,
    /// User + system CPU seconds of the child's process tree.
    pub cpu: f64,
    /// `ru_maxrss`: the largest single process of the tree, bytes.
    pub max_rss: u64,
    /// Largest sampled sum of the RSS of every process of the group, bytes.
    pub tree_rss: u64,
}

/// How a child ended.
#[derive(Debug)]
pub struct Outcome {
    pub measurement: Measurement,
    /// `Ok(())` on exit code 0; otherwise what went wrong.
    pub status: Result<(), String>,
    pub stdout: String,
}

/// What the launcher reports about the tool it ran.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LaunchReport {
    wall: f64,
    cpu: f64,
    max_rss: u64,
    /// Exit code, or `None` when a signal ended it.
    code: Option<i32>,
    signal: Option<i32>,
}

/// The environment variable naming the launcher's report file.
const REPORT_ENV: &str = "ESARK_BENCH_LAUNCH_REPORT";

/// Waits for `pid`, retrying on EINTR: its wait status and rusage.
fn reap(pid: libc::pid_t) -> std::io::Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own child, `status` and `usage` outlive the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `launch PROGRAM ARGS...`: runs the program (same stdio, same process
/// group), reaps it, writes a [`LaunchReport`] to the file named by
/// `ESARK_BENCH_LAUNCH_REPORT` and exits like it.
pub fn launch_main(args: &[String]) -> std::process::ExitCode {
    let Some((program, rest)) = args.split_first() else {
        eprintln!("launch: no program");
        return std::process::ExitCode::from(2);
    };
    let report_path = std::env::var_os(REPORT_ENV);
    let started = Instant::now();
    let child = match Command::new(program)
        .args(rest)
        .env_remove(REPORT_ENV)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("launch: cannot start {program}: {e}");
            return std::process::ExitCode::from(127);
        }
    };
    let (status, usage) = match reap(child.id() as libc::pid_t) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("launch: wait4 failed: {e}");
            return std::process::ExitCode::from(125);
        }
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let report = LaunchReport {
        wall: started.elapsed().as_secs_f64(),
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
        max_rss: usage.ru_maxrss as u64 * 1024, // kilobytes on Linux
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
    };
    if let Some(path) = report_path {
        let json = serde_json::to_vec(&report).expect("a report serializes");
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!("launch: cannot write {}: {e}", Path::new(&path).display());
            return std::process::ExitCode::from(125);
        }
    }
    match (report.code, report.signal) {
        (Some(c), _) => std::process::ExitCode::from(c as u8),
        (None, Some(s)) => std::process::ExitCode::from(128u8.wrapping_add(s as u8)),
        _ => std::process::ExitCode::FAILURE,
    }
}

/// Runs `cmd` (its program, arguments, environment and working directory) through the
/// launcher, to its end or to `timeout`. Stdout is captured, stderr goes
/// to `log` (appended), stdin is closed.
pub fn run(cmd: Command, timeout: Duration, log: &Path) -> Outcome {
    let err_file = match File::options().create(true).append(true).open(log) {
        Ok(f) => f,
        Err(e) => return failed_to_start(format!("cannot open {}: {e}", log.display())),
    };
    let report_path = log.with_extension("rusage.json");
    let _ = std::fs::remove_file(&report_path);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return failed_to_start(format!("no current executable: {e}")),
    };
    let mut launcher = Command::new(exe);
    launcher
        .arg("launch")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        launcher.current_dir(dir);
    }
    // The launcher passes its environment on to the tool: the variables
    // set on `cmd` (the S3 endpoint and keys of the storage rows) go there.
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => launcher.env(key, v),
            None => launcher.env_remove(key),
        };
    }
    launcher
        .env(REPORT_ENV, &report_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err_file))
        .process_group(0);
    let mut child = match launcher.spawn() {
        Ok(c) => c,
        Err(e) => return failed_to_start(format!("cannot start the launcher: {e}")),
    };
    let pid = child.id() as libc::pid_t;
    CURRENT_GROUP.store(pid, Ordering::SeqCst);

    // Drains stdout so the child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });

    // Kills the group when the deadline passes first; the channel's sender
    // is dropped once the launcher is reaped, which ends the watchdog.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let timed_out = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let timed_out = timed_out.clone();
        thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(timeout) {
                timed_out.store(true, Ordering::SeqCst);
                // SAFETY: plain syscall; a negative pid names the process group.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
        })
    };

    let peak_tree = Arc::new(AtomicU64::new(0));
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak_tree.clone(), stop_sampler.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(group_rss(pid), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let reaped = reap(pid);
    CURRENT_GROUP.store(0, Ordering::SeqCst);
    drop(done_tx);
    let _ = watchdog.join();
    stop_sampler.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    // Forked grandchildren may still hold the pipe open; they belong to
    // the group, so make sure none survive.
    // SAFETY: plain syscall on our child's process group.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let stdout = reader.join().unwrap_or_default();
    // `child` was reaped above; dropping it does not wait again.
    drop(child);

    let report: Option<LaunchReport> = std::fs::read(&report_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let status = match (&reaped, &report) {
        (Err(e), _) => Err(format!("wait4 failed: {e}")),
        _ if timed_out.load(Ordering::SeqCst) => {
            Err(format!("timed out after {} s", timeout.as_secs()))
        }
        (_, None) => Err("the launcher wrote no report".into()),
        (_, Some(LaunchReport { code: Some(0), .. })) => Ok(()),
        (_, Some(LaunchReport { code: Some(c), .. })) => Err(format!("exit code {c}")),
        (_, Some(r)) => Err(format!("killed by signal {}", r.signal.unwrap_or(0))),
    };
    let measurement = report.map_or_else(Measurement::default, |r| Measurement {
        wall: Duration::from_secs_f64(r.wall),
        cpu: r.cpu,
        max_rss: r.max_rss,
        tree_rss: peak_tree.load(Ordering::Relaxed).max(r.max_rss),
    });
    Outcome {
        measurement,
        status,
        stdout,
    }
}

fn failed_to_start(reason: String) -> Outcome {
    Outcome {
        measurement: Measurement::default(),
        status: Err(reason),
        stdout: String::new(),
    }
}

/// Sum of the resident memory of every process whose process group is
/// `pgid`, but its leader (the launcher).
fn group_rss(pgid: libc::pid_t) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state ppid pgrp ... ; the
        // command itself may contain spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let pgrp = fields.nth(2).and_then(|f| f.parse::<libc::pid_t>().ok());
        // Field 24 (rss, in pages) is the 22nd after the command.
        let rss = fields.nth(18).and_then(|f| f.parse::<u64>().ok());
        if pgrp == Some(pgid) && pid != pgid.to_string() {
            total += rss.unwrap_or(0) * page;
        }
    }
    total
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
