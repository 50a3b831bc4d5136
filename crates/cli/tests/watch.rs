//! `infer-doctor watch` against the simulator going from idle (healthy) to KV-saturated under `bench`'s load:
//! its JSON lines, `--once`'s exit codes, and the live view in a real terminal (tmux).

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use infer_doctor_testkit::Running;
use infer_doctor_testkit::prometheus;
use serde_json::Value;

fn bin() -> Command {
    infer_doctor_testkit::command(env!("CARGO_BIN_EXE_infer-doctor"))
}

/// The `kv-saturated` simulator on a free loopback port: idle it is healthy; 32 users fill its KV cache.
fn saturable_sim() -> (Running, String) {
    infer_doctor_testkit::start_sim(
        env!("CARGO_BIN_EXE_infer-doctor"),
        &["--scenario", "kv-saturated"],
    )
}

/// 32 users sending `requests` requests in all: several times what the cache holds at once, for a few seconds.
fn load(url: &str, requests: u32) -> Running {
    Running(
        bin()
            .args(["bench", "--url", url, "--concurrency", "32", "--quiet"])
            .args(["--num-requests", &requests.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The longest any load of these tests runs (a few seconds alone; much longer on a busy 2-core machine).
const LOAD_LIMIT: Duration = Duration::from_secs(120);

/// Each line of a child's stdout as it arrives, with when it arrived.
fn lines_of(child: &mut Child) -> mpsc::Receiver<(Instant, String)> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits, at most `limit`, for a JSON line with `event` (about the finding `id`, when given); every line read
/// meanwhile is kept in `seen`. Returns when the line arrived, and the line.
fn wait_for_event(
    lines: &mpsc::Receiver<(Instant, String)>,
    seen: &mut Vec<String>,
    event: &str,
    id: Option<&str>,
    limit: Duration,
) -> (Instant, Value) {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((at, line)) = lines.recv_timeout(left) else {
            panic!("no `{event}` of {id:?} within {limit:?}; lines: {seen:#?}");
        };
        seen.push(line.clone());
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["time", "event"] {
            assert!(v[key].is_string(), "{key} missing: {line}");
        }
        if v["event"] == event && id.is_none_or(|id| v["id"] == id) {
            return (at, v);
        }
    }
}

const KV: &str = "capacity.kv_saturated";

#[test]
fn jsonl_tells_when_the_kv_finding_appears_under_load_clears_after_it_and_the_server_goes() {
    let (sim, url) = saturable_sim();
    let mut watch = bin()
        .args(["watch", "--url", &url, "--format", "jsonl"])
        .args(["--interval", "500ms", "--window", "3s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut watch);
    let mut watch = Running(watch);
    // Idle, the server is healthy: several diagnoses, and not a line.
    if let Ok((_, line)) = lines.recv_timeout(Duration::from_secs(3)) {
        panic!("an idle healthy server gave a line: {line}");
    }
    let load_started = Instant::now();
    let mut bench = load(&url, 96);
    let mut seen = Vec::new();
    let (appeared, line) = wait_for_event(&lines, &mut seen, "appeared", Some(KV), LOAD_LIMIT);
    assert!(appeared > load_started);
    assert!(line["verdict"].as_str().unwrap().contains("KV"), "{line}");
    assert_eq!(bench.wait_for(LOAD_LIMIT), Some(0));
    let load_ended = Instant::now();
    // The saturated scrapes leave the 3 s window a few seconds after the load.
    let (cleared, _) = wait_for_event(
        &lines,
        &mut seen,
        "cleared",
        Some(KV),
        Duration::from_secs(30),
    );
    assert!(
        cleared >= load_ended,
        "cleared {:?} before the load ended; lines: {seen:#?}",
        load_ended - cleared
    );
    // A server that goes away is an event too, not the end of the watch.
    drop(sim);
    let (_, line) = wait_for_event(
        &lines,
        &mut seen,
        "scrape_failed",
        None,
        Duration::from_secs(10),
    );
    assert_eq!(line["source"], format!("{url}/metrics"), "{line}");
    assert!(
        line["error"].as_str().unwrap().contains("127.0.0.1"),
        "{line}"
    );
    assert_eq!(watch.0.try_wait().unwrap(), None, "watch ended: {seen:#?}");
    // Ctrl-C ends it as it ends every command of the tool.
    let pid = watch.0.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert_eq!(watch.wait_for(Duration::from_secs(10)), Some(130));
}

#[test]
fn once_exits_0_on_an_idle_server_and_1_naming_the_finding_under_saturation() {
    let (_sim, url) = saturable_sim();
    // An operator who pages at 90% KV usage: the two scrapes of --once catch the cache between 90% and full, so
    // the default 95% would make the severity a coin toss.
    let dir = tempfile::tempdir().unwrap();
    let thresholds = dir.path().join("page-at-90.toml");
    std::fs::write(&thresholds, "kv_saturated = 0.85\nkv_critical = 0.90\n").unwrap();
    let once = |format: &str| {
        let output = bin()
            .args(["watch", "--url", &url, "--once", "--interval", "1s"])
            .args([
                "--format",
                format,
                "--thresholds",
                thresholds.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (code, stdout, stderr) = once("tui");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("/metrics over 1.0 s: no findings"),
        "{stdout}"
    );
    let (code, stdout, _) = once("jsonl");
    assert_eq!((code, stdout.as_str()), (Some(0), ""));
    // Watching sends no request; --probe sends its few, two per look.
    assert_eq!(requests_finished(&url), 0.0);
    let output = bin()
        .args([
            "watch",
            "--url",
            &url,
            "--once",
            "--interval",
            "1s",
            "--probe",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    // Its outputs end by length, so whether outputs run away is left unknown rather than found.
    assert!(stdout.contains("no findings"), "{stdout}");
    assert_eq!(requests_finished(&url), 4.0);

    let mut bench = load(&url, 160);
    // Let the first wave fill the cache and queue.
    std::thread::sleep(Duration::from_secs(2));
    let (code, stdout, stderr) = once("tui");
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let kv_line = stdout
        .lines()
        .find(|l| l.contains(KV))
        .unwrap_or_else(|| panic!("no {KV} in {stdout}"));
    assert!(kv_line.starts_with("critical"), "{stdout}");
    let (code, stdout, stderr) = once("jsonl");
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "appeared" && e["id"] == KV && e["severity"] == "critical"),
        "{stdout}"
    );
    assert_eq!(bench.wait_for(LOAD_LIMIT), Some(0));

    // A server that is not there is an error naming its URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let output = bin()
        .args(["watch", "--url", &gone, "--once", "--interval", "200ms"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{gone}/metrics")), "{stderr}");
}

/// Requests the server has finished since it started, as its metrics say.
fn requests_finished(url: &str) -> f64 {
    let output = bin()
        .args([
            "metrics",
            "show",
            &format!("{url}/metrics"),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let window: Value = serde_json::from_slice(&output.stdout).unwrap();
    window["counters"]["requests_finished"]["increase"]
        .as_f64()
        .unwrap()
}

/// A tmux server of this test's own (its own socket), killed with its sessions when the test ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        infer_doctor_testkit::ensure_debian_packages(&["tmux"]);
        let tmux = Tmux {
            socket: format!("infer-doctor-watch-test-{}", std::process::id()),
        };
        let status = tmux
            .command()
            .args(["new-session", "-d", "-x", "120", "-y", "40", command])
            .status()
            .unwrap();
        assert!(status.success());
        tmux
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket]);
        cmd
    }

    fn screen(&self) -> String {
        let output = self
            .command()
            .args(["capture-pane", "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    /// Waits, at most `limit`, for the screen to show `text`; returns the screen.
    fn wait_for(&self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no `{text}` on the screen within {limit:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}

#[test]
fn the_live_view_shows_the_signals_then_the_finding_and_ends_on_q_or_ctrl_c() {
    let (_sim, url) = saturable_sim();
    let bin = env!("CARGO_BIN_EXE_infer-doctor");
    assert!(Path::new(bin).is_absolute());
    // Watch runs twice, to end once by q and once by Ctrl-C; the shell tells each exit status, and waits for Enter
    // before the second, so the first one's stays on the screen until the test has read it.
    let watch = format!("{bin} watch --url {url} --interval 500ms --window 3s");
    let tmux = Tmux::start(&format!(
        "{watch}; echo \"watch exited with $?\"; read next; {watch}; echo \"watch interrupted with $?\"; sleep 60"
    ));
    let screen = tmux.wait_for("KV cache usage", Duration::from_secs(30));
    for signal in [
        "running",
        "waiting",
        "preemptions",
        "TTFT p99",
        "ITL p50",
        "output tokens",
    ] {
        assert!(screen.contains(signal), "no {signal}:\n{screen}");
    }
    tmux.wait_for("findings (0)", Duration::from_secs(10));
    let mut bench = load(&url, 96);
    let screen = tmux.wait_for(KV, LOAD_LIMIT);
    let kv_line = screen.lines().find(|l| l.contains(KV)).unwrap();
    assert!(
        kv_line.contains("critical ") || kv_line.contains("warning "),
        "{screen}"
    );
    assert_eq!(bench.wait_for(LOAD_LIMIT), Some(0));
    let status = tmux.command().args(["send-keys", "q"]).status().unwrap();
    assert!(status.success());
    let screen = tmux.wait_for("watch exited with 0", Duration::from_secs(10));
    // The terminal is restored: the view is gone from the screen, and the next one starts on a clean terminal.
    assert!(!screen.contains("KV cache usage"), "{screen}");
    let status = tmux
        .command()
        .args(["send-keys", "Enter"])
        .status()
        .unwrap();
    assert!(status.success());
    tmux.wait_for("KV cache usage", Duration::from_secs(30));
    let status = tmux.command().args(["send-keys", "C-c"]).status().unwrap();
    assert!(status.success());
    let screen = tmux.wait_for("watch interrupted with 130", Duration::from_secs(10));
    assert!(!screen.contains("KV cache usage"), "{screen}");
}

#[test]
fn once_through_prometheus_reads_the_window_the_fleet_was_saturated_in() {
    let (_sim, url) = saturable_sim();
    let scratch = tempfile::tempdir().unwrap();
    let target = url.trim_start_matches("http://");
    let config = format!(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 500ms\nscrape_configs:\n  - job_name: vllm\n    \
         static_configs:\n      - targets: ['{target}']\n        labels: {{pod: sim-0}}\n"
    );
    let mut server = prometheus::RunningPrometheus::start(scratch.path(), &config);
    server.wait_until_ready();
    // Prometheus applies its targets a few seconds after start.
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.api("targets", &[])["activeTargets"][0]["health"] != "up" {
        assert!(Instant::now() < deadline, "the simulator was never scraped");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let address = format!("http://{}", server.address);
    let once = || {
        let output = bin()
            .args([
                "watch",
                "--prometheus",
                &address,
                "--selector",
                "{job=\"vllm\"}",
            ])
            .args(["--once", "--window", "15s"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let stderr = String::from_utf8_lossy(&output.stderr);
        (output.status.code(), format!("{stdout}{stderr}"))
    };
    let (code, said) = once();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("no findings"), "{said}");
    let mut bench = load(&url, 96);
    assert_eq!(bench.wait_for(LOAD_LIMIT), Some(0));
    // The last scrape of the load is in.
    std::thread::sleep(Duration::from_secs(1));
    let (code, said) = once();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains(&format!("critical  {KV}")), "{said}");
}
