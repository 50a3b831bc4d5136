//! A real Prometheus 2.42 for every room whose PromQL a real one must accept (observe, export): started on loopback
//! with the test's config and always stopped, plus the tiny HTTP client tests talk to it and loopback servers with.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use infer_doctor_observe::prometheus::percent_encode;

use crate::ensure_debian_packages;

pub const PROMETHEUS_BINARY: &str = "/usr/bin/prometheus";
const PROMETHEUS_VERSION: &str = "version 2.42.";
pub const STARTUP_LIMIT: Duration = Duration::from_secs(20);
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Prometheus running as a child process; killed (by its PID) when dropped, whether the test passed or not.
pub struct RunningPrometheus {
    pub address: SocketAddr,
    child: Child,
    log_path: std::path::PathBuf,
}

impl RunningPrometheus {
    /// Starts Prometheus with this `prometheus.yml`, its data and log under `scratch`.
    pub fn start(scratch: &Path, config: &str) -> Self {
        require_prometheus_2_42();
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_loopback_port()));
        let config_path = scratch.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log_path = scratch.join("prometheus.log");
        let log = File::create(&log_path).expect("create prometheus.log");
        let child = Command::new(PROMETHEUS_BINARY)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                scratch.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {PROMETHEUS_BINARY}: {e}"));
        Self {
            child,
            address,
            log_path,
        }
    }

    /// Waits (at most [`STARTUP_LIMIT`]) until Prometheus answers `/-/ready`.
    pub fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            if let Ok((200, _)) = http_get(self.address, "/-/ready") {
                return;
            }
            // Exiting early (a bad flag, the port taken meanwhile) is reported now rather than at the deadline.
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "Prometheus exited with {status} before it was ready; its log:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus was not ready within {STARTUP_LIMIT:?}; its log:\n{}",
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (at most [`STARTUP_LIMIT`]) until `targets` scrape targets are up: Prometheus applies new targets a
    /// few seconds after start.
    pub fn wait_until_scraping(&self, targets: usize) {
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            let answer = self.api("targets", &[]);
            let up = answer["activeTargets"]
                .as_array()
                .map_or(0, |t| t.iter().filter(|t| t["health"] == "up").count());
            if up == targets {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{targets} targets never came up within {STARTUP_LIMIT:?}: {answer}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The `data` of a successful `/api/v1/{endpoint}` answer; anything else fails the test.
    pub fn api(&self, endpoint: &str, parameters: &[(&str, String)]) -> serde_json::Value {
        let query_string: Vec<String> = parameters
            .iter()
            .map(|(name, value)| format!("{name}={}", percent_encode(value)))
            .collect();
        let path = format!("/api/v1/{endpoint}?{}", query_string.join("&"));
        let (status, body) =
            http_get(self.address, &path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, 200, "GET {path}: {body}");
        let mut answer: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e} in {body}"));
        assert_eq!(answer["status"], "success", "GET {path}: {body}");
        answer["data"].take()
    }
}

impl Drop for RunningPrometheus {
    fn drop(&mut self) {
        // Errors mean it already exited; nothing is left to stop.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_prometheus_2_42() {
    ensure_debian_packages(&["prometheus"]);
    let install = "install it with `apt-get install -y prometheus` (Debian 12's package is 2.42)";
    assert!(
        Path::new(PROMETHEUS_BINARY).exists(),
        "{PROMETHEUS_BINARY} is missing: {install}"
    );
    let output = Command::new(PROMETHEUS_BINARY)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PROMETHEUS_BINARY} --version: {e}; {install}"));
    let version = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The window module reproduces 2.42 (e.g. closed range windows; Prometheus 3 opens the left end).
    assert!(
        version.contains(PROMETHEUS_VERSION),
        "this test needs Prometheus 2.42, found: {version}; {install}"
    );
}

/// A plain HTTP/1.0 GET on loopback: the server closes after answering, so the body is everything it sends
/// (no chunked encoding, no keep-alive).
pub fn http_get(address: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect_timeout(&address, HTTP_TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no end of headers")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}

pub fn free_loopback_port() -> u16 {
    // The OS picks a free port; it is released for Prometheus to take right after.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    listener.local_addr().expect("the bound address").port()
}
