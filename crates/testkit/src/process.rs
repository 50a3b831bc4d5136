//! The binary as tests start it: no key from the developer's environment, a history of its own (a test run never
//! reads or writes the developer's `~/.local/share/infer-doctor`), and child processes that never outlive a test.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One scratch data directory per test process, shared by its tests (the history file tolerates concurrent
/// writers); tests that look into the history give `--history FILE` of their own.
fn scratch_data_home() -> &'static PathBuf {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("infer-doctor-test-data-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

/// `exe` (the test's `env!("CARGO_BIN_EXE_infer-doctor")`) with a clean environment for the tool.
pub fn command(exe: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env_remove("OPENAI_API_KEY")
        .env("XDG_DATA_HOME", scratch_data_home());
    cmd
}

/// A child process killed (by its PID) when the test ends, passed or not.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        // Errors mean it already exited.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Waits for the process to exit, for at most `limit`; panics past it.
    pub fn wait_for(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().expect("polling a child process") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("still running after {limit:?}");
    }
}

/// `infer-doctor sim ARGS` (`exe` is the test's `env!("CARGO_BIN_EXE_infer-doctor")`) on a free loopback port
/// (or `--port P` among `args`):
/// the process and the URL it printed first. Whatever it prints later is drained, so a full pipe never stalls it.
pub fn start_sim(exe: &str, args: &[&str]) -> (Running, String) {
    let (running, mut lines) = spawn_sim(exe, args, 0);
    (running, lines.remove(0))
}

/// `infer-doctor sim --replicas N ARGS` (a fleet of `replicas`): the process, the router's URL, and each replica's
/// pod name and URL as it printed them.
pub fn start_sim_fleet(
    exe: &str,
    args: &[&str],
    replicas: usize,
) -> (Running, String, Vec<(String, String)>) {
    let (running, mut lines) = spawn_sim(exe, args, replicas);
    let router = lines.remove(0);
    let pods = lines
        .iter()
        .map(|line| {
            let (pod, url) = line.split_once(' ').expect("a `POD URL` line");
            assert!(url.starts_with("http://127.0.0.1:"), "sim printed {line:?}");
            (pod.to_string(), url.to_string())
        })
        .collect();
    (running, router, pods)
}

/// Starts the simulator and reads its URL line and `more` lines after it.
fn spawn_sim(exe: &str, args: &[&str], more: usize) -> (Running, Vec<String>) {
    // A free port unless the caller names one (a replica restarted where its scraper expects it).
    let port: &[&str] = if args.iter().any(|a| a.starts_with("--port")) {
        &[]
    } else {
        &["--port", "0"]
    };
    let mut child = command(exe)
        .arg("sim")
        .args(port)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting infer-doctor sim");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut lines = Vec::new();
    for _ in 0..=more {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("reading the sim's URLs");
        lines.push(line.trim().to_string());
    }
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let url = &lines[0];
    assert!(url.starts_with("http://127.0.0.1:"), "sim printed {url:?}");
    (Running(child), lines)
}
