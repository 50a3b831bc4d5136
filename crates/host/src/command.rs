//! Runs the GPU host's own tools (nvidia-smi, journalctl, docker) so that none can hang a collection: each runs
//! in a process group of its own under a deadline, and the whole group is killed when the deadline passes.

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One external command to run.
#[derive(Clone, Debug)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
    pub timeout: Duration,
    /// The most stdout kept: its tail, since a log's latest lines are the ones that matter.
    pub max_stdout: usize,
}

impl CommandSpec {
    pub fn new(program: &str, args: &[&str], timeout: Duration) -> CommandSpec {
        CommandSpec {
            program: program.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            timeout,
            max_stdout: DEFAULT_MAX_STDOUT,
        }
    }

    /// The command as a user would type it, for the manifest.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Far above any nvidia-smi output; a bound on a kernel log that never ends.
pub const DEFAULT_MAX_STDOUT: usize = 16 << 20;
/// stderr only explains a failure: its last lines are enough.
const MAX_STDERR: usize = 4 << 10;
/// How long output may keep arriving after the command ended (a child it left behind holding the pipe).
const DRAIN_GRACE: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(10);
/// How long a killed command may take to die before it is abandoned.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// How a command ended, as the manifest records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    NotInstalled,
    PermissionDenied,
    TimedOut,
    Failed,
    /// Not run, on purpose: an item that only runs when asked for (`why` says how).
    Skipped,
}

impl Status {
    /// In words, for a progress line.
    pub fn words(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NotInstalled => "not installed",
            Status::PermissionDenied => "permission denied",
            Status::TimedOut => "timed out",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// What running a command gave: its output, or why there is none.
#[derive(Debug)]
pub struct Ran {
    pub command_line: String,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub duration: Duration,
    pub stdout: Vec<u8>,
    /// Bytes of stdout dropped from the start to keep within `max_stdout`.
    pub stdout_dropped: u64,
    /// The end of stderr (lossy UTF-8), to say why a command failed.
    pub stderr: String,
    /// Why the output is missing or incomplete, in words; `None` when it ran cleanly.
    pub why: Option<String>,
}

/// Runs `spec` to completion or its deadline. Never fails: every way it can go wrong is a [`Status`].
pub fn run(spec: &CommandSpec) -> Ran {
    let started = Instant::now();
    let mut ran = Ran {
        command_line: spec.command_line(),
        status: Status::Ok,
        exit_code: None,
        duration: Duration::ZERO,
        stdout: Vec::new(),
        stdout_dropped: 0,
        stderr: String::new(),
        why: None,
    };
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout kills what it started too (nvidia-smi's helpers, a shell's children).
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let (status, why) = match e.kind() {
                std::io::ErrorKind::NotFound => (
                    Status::NotInstalled,
                    "not installed (not on PATH)".to_string(),
                ),
                std::io::ErrorKind::PermissionDenied => {
                    (Status::PermissionDenied, "permission denied".to_string())
                }
                _ => (Status::Failed, format!("could not start ({e})")),
            };
            ran.status = status;
            ran.why = Some(format!("{}: {why}", spec.program));
            ran.duration = started.elapsed();
            return ran;
        }
    };
    let group = rustix::process::Pid::from_child(&child);
    let kill_group = || {
        // ESRCH (the group is gone already) is the outcome wanted.
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    };
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        let max = spec.max_stdout;
        std::thread::spawn(move || tx.send((true, read_tail(out, max))));
    }
    if let Some(err) = child.stderr.take() {
        std::thread::spawn(move || tx.send((false, read_tail(err, MAX_STDERR))));
    }
    let deadline = started + spec.timeout;
    let exit = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            Ok(None) | Err(_) => {
                kill_group();
                // A process stuck in the driver (uninterruptible sleep, the wedged-GPU case) outlives SIGKILL:
                // wait a moment, then leave it to a thread of its own rather than hang the collection on it.
                let killed = Instant::now();
                while matches!(child.try_wait(), Ok(None)) && killed.elapsed() < KILL_GRACE {
                    std::thread::sleep(POLL);
                }
                if matches!(child.try_wait(), Ok(None)) {
                    std::thread::spawn(move || child.wait());
                }
                break None;
            }
        }
    };
    let drain_until = Instant::now() + DRAIN_GRACE;
    for _ in 0..2 {
        let left = drain_until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, (bytes, dropped))) => {
                ran.stdout = bytes;
                ran.stdout_dropped = dropped;
            }
            Ok((false, (bytes, _))) => ran.stderr = String::from_utf8_lossy(&bytes).into_owned(),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Something it started still holds the pipe open: end it, keep what arrived.
                kill_group();
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    ran.duration = started.elapsed();
    match exit {
        None => {
            ran.status = Status::TimedOut;
            ran.why = Some(format!(
                "timed out after {:.1} s; its process group was killed",
                spec.timeout.as_secs_f64()
            ));
        }
        Some(status) if status.success() => {}
        Some(status) => {
            ran.status = Status::Failed;
            ran.exit_code = status.code();
            let how = match status.code() {
                Some(code) => format!("exit status {code}"),
                None => format!("killed by a signal ({status})"),
            };
            let said = ran.stderr.lines().rev().find(|l| !l.trim().is_empty());
            ran.why = Some(match said {
                Some(line) => format!("failed: {how}: {}", line.trim()),
                None => format!("failed: {how}"),
            });
        }
    }
    if ran.status == Status::Ok && ran.stdout_dropped > 0 {
        ran.why = Some(format!(
            "its first {} bytes were dropped to keep the last {}",
            ran.stdout_dropped, spec.max_stdout
        ));
    }
    ran
}

/// Reads `source` to its end, keeping at most the last `max` bytes; returns them and how many were dropped.
pub fn read_tail(mut source: impl Read, max: usize) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut dropped = 0u64;
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match source.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                kept.extend_from_slice(&chunk[..n]);
                // Trimmed in halves, not per chunk, so a long stream is not copied over and over.
                if kept.len() > max.saturating_mul(2) {
                    let cut = kept.len() - max;
                    kept.drain(..cut);
                    dropped += cut as u64;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if kept.len() > max {
        let cut = kept.len() - max;
        kept.drain(..cut);
        dropped += cut as u64;
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Ran {
        run(&CommandSpec::new("sh", &["-c", script], timeout))
    }

    #[test]
    fn output_and_exit_status_are_kept() {
        let ran = sh("echo hello; echo oops >&2", Duration::from_secs(10));
        assert_eq!((ran.status, ran.why), (Status::Ok, None));
        assert_eq!(ran.stdout, b"hello\n");
        assert_eq!(ran.stderr, "oops\n");
        let failed = sh("echo 'no GPU found' >&2; exit 9", Duration::from_secs(10));
        assert_eq!((failed.status, failed.exit_code), (Status::Failed, Some(9)));
        assert_eq!(
            failed.why.as_deref(),
            Some("failed: exit status 9: no GPU found")
        );
    }

    #[test]
    fn a_missing_or_unrunnable_program_says_which() {
        let ran = run(&CommandSpec::new(
            "infer-doctor-no-such-tool",
            &[],
            Duration::from_secs(1),
        ));
        assert_eq!(ran.status, Status::NotInstalled);
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("not-executable");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let ran = run(&CommandSpec::new(
            script.to_str().unwrap(),
            &[],
            Duration::from_secs(1),
        ));
        assert_eq!(ran.status, Status::PermissionDenied, "{:?}", ran.why);
    }

    /// The hang that matters: a wedged driver makes nvidia-smi (and whatever it started) never return.
    #[test]
    fn a_hung_command_and_its_children_are_killed_at_the_deadline() {
        let started = Instant::now();
        let ran = sh(
            "sleep 1000 & echo started; sleep 1000",
            Duration::from_millis(300),
        );
        assert_eq!(ran.status, Status::TimedOut);
        assert_eq!(ran.stdout, b"started\n");
        // The background sleep holds stdout: had it survived, the drain would have waited out its grace.
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn only_the_tail_of_a_long_output_is_kept() {
        let (kept, dropped) = read_tail(&b"0123456789"[..], 4);
        assert_eq!((kept.as_slice(), dropped), (&b"6789"[..], 6));
    }
}
