//! `collect` end to end on a machine without a GPU: fake `nvidia-smi` and `journalctl` first on the child's PATH
//! replay real captures (or hang, or fail), the simulator stands in for the server, and the bundle is read back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// How the fake nvidia-smi behaves.
enum Gpu {
    /// Replays the real captures by argument; a fake dcgmi beside it replays a failing `dcgmi diag -j` and leaves
    /// [`DCGMI_CALLED`] behind, so a test can tell whether it ran.
    Replay,
    Hangs,
    /// What nvidia-smi says on a host whose driver is not loaded.
    Fails,
    /// Not on PATH at all.
    Absent,
    /// An AMD host: no nvidia-smi, and rocm-smi replays an MI250X's `--showallinfo --json`.
    Amd,
}

const XID_79: &str = "2026-07-14T08:12:53+0000 gpu-host kernel: NVRM: Xid (PCI:0000:00:09): 79, pid=1234, \
GPU has fallen off the bus.\n";
const QUIET_KERNEL: &str =
    "2026-07-14T08:12:53+0000 gpu-host kernel: Linux version 6.8.0-1015-nvidia\n";

/// Puts a fake tool named `name` running the shell `body` in `dir`.
fn fake_tool(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    Command::new("/bin/chmod")
        .arg("+x")
        .arg(&path)
        .status()
        .unwrap();
}

/// A fake tool's line that replays a fixture.
fn cat(rel: &str) -> String {
    format!("exec /bin/cat '{}'", fixture(rel).display())
}

/// The file the fake dcgmi writes in the fakes' directory when it is run.
const DCGMI_CALLED: &str = "dcgmi-called";

/// A directory holding only the fakes, to be the child's whole PATH (scripts call their tools by full path);
/// the fake journalctl's kernel log is `kernel`.
fn fake_path(gpu: Gpu, kernel: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| fake_tool(dir.path(), name, body);
    match gpu {
        Gpu::Replay => {
            script(
                "dcgmi",
                // A failing diagnostic prints its JSON and exits non-zero.
                &format!(
                    "echo \"$*\" > '{}'\n[ \"$*\" = 'diag -r 1 -j' ] && {{ /bin/cat '{}'; exit 1; }}\n\
                     echo \"unexpected: $*\" >&2; exit 2",
                    dir.path().join(DCGMI_CALLED).display(),
                    fixture("fixtures/gpu/dcgmi_diag_r1_4x_fail.json").display(),
                ),
            );
            script(
                "nvidia-smi",
                &format!(
                    "case \"$1 $2\" in\n-q*) {} ;;\ntopo*) {} ;;\n'nvlink -e') {} ;;\nnvlink*) {} ;;\n\
                 --query-gpu=*) {} ;;\nesac\necho \"unexpected: $*\" >&2; exit 2",
                    cat("fixtures/gpu/a10g.xml"),
                    cat("fixtures/gpu/h100_topo_m.txt"),
                    cat("fixtures/gpu/h100_nvlink_e.txt"),
                    cat("fixtures/gpu/h100_nvlink_s.txt"),
                    cat("fixtures/gpu/h100_load_query_gpu.csv"),
                ),
            )
        }
        Gpu::Hangs => script("nvidia-smi", "exec /bin/sleep 1000"),
        Gpu::Fails => script(
            "nvidia-smi",
            "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"; exit 9",
        ),
        Gpu::Absent => {}
        Gpu::Amd => script(
            "rocm-smi",
            &format!(
                "[ \"$*\" = '--showallinfo --json' ] && {}\necho \"unexpected: $*\" >&2; exit 2",
                cat("fixtures/gpu/mi250x_rocm_smi_a.json"),
            ),
        ),
    }
    std::fs::write(dir.path().join("kernel.log"), kernel).unwrap();
    script(
        "journalctl",
        &format!(
            "case \"$1\" in\n-k) exec /bin/cat '{}' ;;\n-u) echo \"unit $2: INFO vLLM API server version 0.32.0\" ;;\n\
             *) echo \"unexpected: $*\" >&2; exit 1 ;;\nesac",
            dir.path().join("kernel.log").display()
        ),
    );
    dir
}

fn bin() -> Command {
    infer_doctor_testkit::command(env!("CARGO_BIN_EXE_infer-doctor"))
}

/// `collect` with `path` as its whole PATH; returns its output and how long it took.
fn collect(path: &Path, out: &Path, extra: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = bin()
        .args(["collect", "--quiet", "--item-timeout", "1s", "--out"])
        .arg(out)
        .args(extra)
        .env("PATH", path)
        .output()
        .unwrap();
    (output, started.elapsed())
}

fn manifest(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["schema_version"], 1);
    doc["items"].as_array().unwrap().clone()
}

fn item<'a>(items: &'a [Value], file: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["file"] == file)
        .unwrap_or_else(|| panic!("no {file} in {items:?}"))
}

const NVIDIA_SMI_FILES: [&str; 6] = [
    "gpu/nvidia-smi-q.xml",
    "gpu/topo.txt",
    "gpu/nvlink.txt",
    "gpu/nvlink-errors-before.txt",
    "gpu/nvlink-errors-after.txt",
    "gpu/query-gpu.csv",
];

#[test]
fn collect_replays_a_gpu_host_and_diagnose_reads_the_bundle() {
    let path = fake_path(Gpu::Replay, XID_79);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle");
    let (output, took) = collect(path.path(), &out, &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let items = manifest(&out);
    for file in NVIDIA_SMI_FILES
        .iter()
        .chain(&["logs/kernel.log", "host.json"])
    {
        let it = item(&items, file);
        assert_eq!(it["status"], "ok", "{it}");
        assert_eq!(
            it["bytes"].as_u64().unwrap(),
            std::fs::metadata(out.join(file)).unwrap().len(),
            "{it}"
        );
    }
    assert_eq!(
        std::fs::read(out.join("gpu/topo.txt")).unwrap(),
        std::fs::read(fixture("fixtures/gpu/h100_topo_m.txt")).unwrap()
    );
    // Sampled at least once, with one header however many samples.
    let csv = std::fs::read_to_string(out.join("gpu/query-gpu.csv")).unwrap();
    assert_eq!(
        csv.lines().filter(|l| l.starts_with("timestamp")).count(),
        1
    );
    assert!(csv.lines().count() >= 2);
    assert_eq!(
        item(&items, "logs/kernel.log")["source"],
        "journalctl -k -b --no-pager -o short-iso"
    );

    let doc = diagnose_bundle(&out);
    let warnings = doc["warnings"].to_string();
    for file in NVIDIA_SMI_FILES {
        assert!(
            !warnings.contains(file),
            "every gpu/ file is read or known: {warnings}"
        );
    }
    let evidence = &doc["evidence"];
    // The fake replays an A10G's `-q -x` and an H100's `--query-gpu`: two GPUs, each once however many
    // samples of it the CSV holds.
    assert_eq!(evidence["gpus"].as_array().unwrap().len(), 2, "{evidence}");
    assert_eq!(evidence["topology"]["gpus"][0]["name"], "GPU0");
    // This machine's own /proc and /sys, read into the host facts the host rules judge.
    assert!(
        evidence["host"]["logical_cores"].as_u64().unwrap_or(0) >= 1,
        "{}",
        evidence["host"]
    );
    assert_eq!(
        evidence["nvlinks"][1][0]["links"].as_array().unwrap().len(),
        18
    );
    // `nvlink -e` read at the start and after the probe, each into its own slot whatever order the names sort in.
    for (slot, file) in [
        ("nvlink_errors_before", "nvlink-errors-before.txt"),
        ("nvlink_errors_after", "nvlink-errors-after.txt"),
    ] {
        assert!(
            evidence[slot][0].as_str().unwrap().ends_with(file),
            "{}",
            evidence[slot]
        );
        assert_eq!(evidence[slot][1][0]["links"].as_array().unwrap().len(), 3);
    }
    assert!(
        evidence.to_string().contains("\"code\":79"),
        "the kernel log's XID: {evidence}"
    );
}

/// On an AMD host rocm-smi's JSON is collected where nvidia-smi is not installed, and the hardware rules see its GPU.
#[test]
fn an_amd_host_is_collected_with_rocm_smi_and_its_gpu_judged() {
    let path = fake_path(Gpu::Amd, QUIET_KERNEL);
    let dir = tempfile::tempdir().unwrap();
    let (output, _) = collect(path.path(), dir.path(), &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let items = manifest(dir.path());
    let rocm = item(&items, "gpu/rocm-smi.json");
    assert_eq!(rocm["status"], "ok", "{rocm}");
    assert_eq!(rocm["source"], "rocm-smi --showallinfo --json");
    assert_eq!(
        item(&items, "gpu/nvidia-smi-q.xml")["status"],
        "not_installed"
    );

    let doc = diagnose_bundle(dir.path());
    assert!(
        !doc["warnings"].to_string().contains("rocm-smi.json"),
        "{}",
        doc["warnings"]
    );
    let gpus = doc["evidence"]["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 1, "{gpus:?}");
    let gpu = &gpus[0];
    assert_eq!(gpu["bus_id"], "0000:C1:00.0");
    assert_eq!(
        (
            &gpu["utilization_percent"],
            &gpu["power_limit_watts"],
            &gpu["sm_clock_mhz"]
        ),
        (&100.0.into(), &560.0.into(), &1700.0.into())
    );
    // The clock rule met a GPU, and says what rocm-smi does not report rather than that no GPU was read.
    let clocks = doc["diagnosis"]["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["id"] == "gpu_clocks_full")
        .unwrap();
    assert_eq!(clocks["status"], "unknown", "{clocks}");
    assert!(
        clocks["detail"]
            .as_str()
            .unwrap()
            .contains("not in this GPU report"),
        "{clocks}"
    );

    // A capture handed over by itself is told from nvidia-smi's by its content.
    let diagnosed = bin()
        .args(["diagnose", "--format", "json", "--gpu"])
        .arg(fixture("fixtures/gpu/radeon780m_rocm_smi_a.json"))
        .output()
        .unwrap();
    let doc = diagnosis(&diagnosed);
    assert_eq!(doc["evidence"]["gpus"][0]["name"], "Phoenix3", "{doc}");
}

/// One file to hand over: the bundle packed as a tarball, diagnosed from the tarball as from the directory.
#[test]
fn a_tarball_bundle_is_written_and_diagnosed_as_it_is() {
    let path = fake_path(Gpu::Replay, XID_79);
    // The host's tar (and the gzip it runs), beside the fakes on the child's PATH.
    fake_tool(path.path(), "tar", "PATH=/usr/bin:/bin exec tar \"$@\"");
    let tar = path.path().join("tar");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gpu-host.tar.gz");
    let (output, _) = collect(path.path(), &out, &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.is_file());
    // Only the tarball is left beside it, not the directory it was gathered in.
    let beside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(beside.len(), 1, "{beside:?}");
    let doc = diagnose_bundle(&out);
    assert!(
        doc["evidence"].to_string().contains("\"code\":79"),
        "the kernel log's XID, read from inside the tarball: {doc}"
    );
    assert_eq!(doc["evidence"]["topology"]["gpus"][0]["name"], "GPU0");
    // Without tar the gathering is kept as a directory, and said.
    std::fs::remove_file(&tar).unwrap();
    let untarred = tempfile::tempdir().unwrap();
    let (output, _) = collect(path.path(), &untarred.path().join("b.tar.gz"), &[]);
    assert_eq!(output.status.code(), Some(0));
    let kept = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        Path::new(&kept).join("manifest.json").is_file(),
        "{kept}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A file that is not a tarball is an error naming it.
    let bogus = dir.path().join("notes.tar.gz");
    std::fs::write(&bogus, "plain text").unwrap();
    let refused = bin()
        .args(["diagnose", "--bundle"])
        .arg(&bogus)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("notes.tar.gz"));
}

/// A wedged driver makes nvidia-smi hang: every item of it times out at its deadline and the rest is collected.
#[test]
fn a_hung_nvidia_smi_times_out_and_the_rest_is_collected() {
    let path = fake_path(Gpu::Hangs, QUIET_KERNEL);
    let dir = tempfile::tempdir().unwrap();
    let (output, took) = collect(path.path(), dir.path(), &[]);
    assert_eq!(output.status.code(), Some(0));
    // Items run in parallel: the deadlines do not add up.
    assert!(took < Duration::from_secs(6), "{took:?}");
    let items = manifest(dir.path());
    for file in NVIDIA_SMI_FILES {
        let it = item(&items, file);
        assert_eq!(it["status"], "timed_out", "{it}");
        assert!(
            it["why"]
                .as_str()
                .unwrap()
                .contains("timed out after 1.0 s"),
            "{it}"
        );
    }
    assert_eq!(item(&items, "logs/kernel.log")["status"], "ok");
    // The hang is itself the finding, read offline from the manifest.
    let diagnosed = bin()
        .args(["diagnose", "--bundle"])
        .arg(dir.path())
        .args(["--format", "json"])
        .output()
        .unwrap();
    let doc = diagnosis(&diagnosed);
    assert_eq!(
        findings(&doc).first().map(String::as_str),
        Some("hardware.gpu_unresponsive"),
        "{doc}"
    );
    assert_eq!(diagnosed.status.code(), Some(1), "a critical finding");
}

#[test]
fn a_failing_nvidia_smi_is_recorded_with_its_reason() {
    let path = fake_path(Gpu::Fails, QUIET_KERNEL);
    let dir = tempfile::tempdir().unwrap();
    let (output, _) = collect(path.path(), dir.path(), &[]);
    assert_eq!(output.status.code(), Some(0));
    let items = manifest(dir.path());
    for file in NVIDIA_SMI_FILES {
        let it = item(&items, file);
        assert_eq!(
            (&it["status"], &it["exit_code"]),
            (&"failed".into(), &9.into()),
            "{it}"
        );
    }
    // What it said is kept: it is the evidence that the driver is not loaded.
    let xml = std::fs::read_to_string(dir.path().join("gpu/nvidia-smi-q.xml")).unwrap();
    assert!(
        xml.contains("couldn't communicate with the NVIDIA driver"),
        "{xml}"
    );
}

#[test]
fn a_host_without_nvidia_smi_or_journald_says_so() {
    let empty = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (output, _) = collect(empty.path(), dir.path(), &[]);
    assert_eq!(output.status.code(), Some(0));
    let items = manifest(dir.path());
    for file in NVIDIA_SMI_FILES {
        let it = item(&items, file);
        assert_eq!(it["status"], "not_installed", "{it}");
        assert!(!dir.path().join(file).exists());
    }
    let kernel = item(&items, "logs/kernel.log");
    assert_eq!(kernel["status"], "not_installed", "{kernel}");
    let why = kernel["why"].as_str().unwrap();
    assert!(why.contains("journalctl") && why.contains("dmesg"), "{why}");
    assert_eq!(item(&items, "host.json")["status"], "ok");

    let path = fake_path(Gpu::Absent, QUIET_KERNEL);
    let (_, _) = collect(path.path(), dir.path(), &[]);
    let items = manifest(dir.path());
    assert_eq!(item(&items, "gpu/topo.txt")["status"], "not_installed");
    assert_eq!(item(&items, "logs/kernel.log")["status"], "ok");
}

/// Starts `infer-doctor sim` on a free port with `args`; returns the process and the URL it printed.
fn sim(args: &[&str]) -> (std::process::Child, String) {
    let mut child = bin()
        .args(["sim", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    (child, line.trim().to_string())
}

fn findings(doc: &Value) -> Vec<String> {
    doc["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

fn diagnosis(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)))
}

/// Every file under a bundle's directory, with its text (lossy), to look for what must not be there.
fn bundle_files(out: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![out.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
                files.push((p, text));
            }
        }
    }
    files
}

/// `diagnose --bundle` of a bundle, as its JSON document.
fn diagnose_bundle(bundle: &Path) -> Value {
    let output = bin()
        .args(["diagnose", "--bundle"])
        .arg(bundle)
        .args(["--format", "json"])
        .output()
        .unwrap();
    diagnosis(&output)
}

/// DCGM's diagnostic loads the GPUs: it runs only with `--dcgm`, after the probe, and its failure is a finding.
#[test]
fn dcgmi_diag_runs_only_with_dcgm_and_a_failed_test_is_a_finding() {
    let path = fake_path(Gpu::Replay, QUIET_KERNEL);
    let called = path.path().join(DCGMI_CALLED);
    let dir = tempfile::tempdir().unwrap();

    let without = dir.path().join("without");
    let (output, _) = collect(path.path(), &without, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!called.exists(), "dcgmi ran without --dcgm");
    let skipped = item(&manifest(&without), "gpu/dcgmi-diag.json").clone();
    assert_eq!(skipped["status"], "skipped", "{skipped}");
    assert!(
        skipped["why"].as_str().unwrap().contains("--dcgm"),
        "{skipped}"
    );
    assert!(!without.join("gpu/dcgmi-diag.json").exists());

    let with = dir.path().join("with");
    let (output, _) = collect(path.path(), &with, &["--dcgm"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(called.exists(), "dcgmi did not run with --dcgm");
    let ran = item(&manifest(&with), "gpu/dcgmi-diag.json").clone();
    assert_eq!(ran["source"], "dcgmi diag -r 1 -j", "{ran}");
    // The failing diagnostic's exit status is kept, and so is its JSON: the evidence.
    assert_eq!(
        (&ran["status"], &ran["exit_code"]),
        (&"failed".into(), &1.into()),
        "{ran}"
    );
    let doc = diagnose_bundle(&with);
    assert!(
        findings(&doc).contains(&"hardware.dcgm_diag_failed".to_string()),
        "{:?}",
        findings(&doc)
    );

    // Asked for where DCGM is not installed: said, and the rest collected.
    let bare = fake_path(Gpu::Absent, QUIET_KERNEL);
    let absent = dir.path().join("absent");
    let (output, _) = collect(bare.path(), &absent, &["--dcgm"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let missing = item(&manifest(&absent), "gpu/dcgmi-diag.json").clone();
    assert_eq!(missing["status"], "not_installed", "{missing}");
    assert_eq!(item(&manifest(&absent), "host.json")["status"], "ok");
}

/// The bundle diagnosed offline gives what a live `diagnose` of the same server gives.
#[test]
fn a_collected_bundle_gives_the_live_diagnosis() {
    let (mut server, url) = sim(&["--scenario", "kv-saturated"]);
    let path = fake_path(Gpu::Replay, QUIET_KERNEL);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle");
    // The same server as the "direct" one: the path in front of it adds nothing.
    let (collected, _) = collect(
        path.path(),
        &out,
        &["--url", &url, "--direct-url", &url, "--duration", "15s"],
    );
    let live = bin()
        .args([
            "diagnose", "--quiet", "--url", &url, "--budget", "15s", "--format", "json",
        ])
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        collected.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&collected.stderr)
    );
    let items = manifest(&out);
    for file in [
        "server/metrics-before.prom",
        "server/metrics-after.prom",
        "server/models.json",
        "server/network.json",
        "server/threads.json",
        "single, loaded",
    ] {
        assert_eq!(item(&items, file)["status"], "ok", "{file}");
    }
    // Without --pid, the server is the process listening on the port of --url: the simulator.
    let found = item(&items, "server/cmdline.txt");
    let port = url.rsplit(':').next().unwrap();
    assert!(
        found["source"]
            .as_str()
            .unwrap()
            .ends_with(&format!("(listening on port {port})")),
        "{found}"
    );
    let cmdline = std::fs::read_to_string(out.join("server/cmdline.txt")).unwrap();
    assert!(
        cmdline.contains("sim --port 0 --scenario kv-saturated"),
        "{cmdline}"
    );
    assert!(out.join("loaded/run.json").is_file());
    let offline = diagnose_bundle(&out);
    let threads = &offline["evidence"]["server_threads"];
    assert!(
        threads["threads"].as_array().is_some_and(|t| !t.is_empty())
            && threads["window_s"].as_f64().unwrap() > 1.0,
        "the simulator's threads over the probe: {threads}"
    );
    let network = &offline["evidence"]["network"];
    assert_eq!(network["direct_url"], network["url"], "{network}");
    let path_line = offline["diagnosis"]["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "network_fast")
        .unwrap();
    assert_eq!(path_line["status"], "pass", "{path_line}");
    let (offline, live) = (findings(&offline), findings(&diagnosis(&live)));
    assert_eq!(
        offline.first(),
        live.first(),
        "offline {offline:?}, live {live:?}"
    );
    assert_eq!(
        offline.first().map(String::as_str),
        Some("capacity.kv_saturated")
    );
}

/// Secrets given every way a user gives them never reach a file of the bundle.
#[test]
fn no_secret_lands_in_the_bundle() {
    const API_KEY: &str = "sk-collect-test-0123456789";
    const ENV_SECRET: &str = "env-secret-9876543210";
    const LOG_TOKEN: &str = "hf_abcdefghijklmnopqrstuvwxyz0123";
    const PASSWORD: &str = "url-password-24680";
    const DIRECT_PASSWORD: &str = "direct-password-13579";
    let (mut server, url) = sim(&[]);
    let path = fake_path(Gpu::Replay, QUIET_KERNEL);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("vllm.log");
    std::fs::write(
        &log,
        format!(
            "INFO 07-14 08:12:53 api_server.py:1 args: --api-key {API_KEY} --max-num-batched-tokens 8192\n\
             INFO 07-14 08:12:54 env HF_TOKEN={LOG_TOKEN} SOME_API_KEY={ENV_SECRET}\n\
             DEBUG request headers: Authorization: Bearer {API_KEY}\n"
        ),
    )
    .unwrap();
    let with_password = url.replacen("http://", &format!("http://admin:{PASSWORD}@"), 1);
    let direct_with_password =
        url.replacen("http://", &format!("http://pod:{DIRECT_PASSWORD}@"), 1);
    let out = dir.path().join("bundle");
    let output = bin()
        .args([
            "collect",
            "--quiet",
            "--item-timeout",
            "2s",
            "--duration",
            "5s",
        ])
        .args([
            "--url",
            &with_password,
            "--direct-url",
            &direct_with_password,
        ])
        .args(["--api-key", API_KEY, "--log"])
        .arg(&log)
        .arg("--out")
        .arg(&out)
        .env("PATH", path.path())
        .env("SOME_API_KEY", ENV_SECRET)
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let files = bundle_files(&out);
    assert!(
        files.iter().any(|(f, _)| f.ends_with("loaded/run.json")),
        "{files:?}"
    );
    for (file, text) in &files {
        for secret in [API_KEY, ENV_SECRET, LOG_TOKEN, PASSWORD, DIRECT_PASSWORD] {
            assert!(!text.contains(secret), "{secret} in {}", file.display());
        }
    }
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains(API_KEY) && !text.contains(PASSWORD),
            "{text}"
        );
    }
    let items = manifest(&out);
    let copied = item(&items, "logs/vllm.log");
    assert!(
        copied["redacted"]["api_key"].as_u64().unwrap() >= 2,
        "{copied}"
    );
    let kept = std::fs::read_to_string(out.join("logs/vllm.log")).unwrap();
    assert!(kept.contains("--max-num-batched-tokens 8192"), "{kept}");
}

/// docker replays a container's stderr on its own, where engines log; journald is asked for the unit's lines.
#[test]
fn the_engine_log_comes_from_docker_or_journald() {
    let path = fake_path(Gpu::Absent, QUIET_KERNEL);
    fake_tool(
        path.path(),
        "docker",
        "echo \"docker $*\"\necho 'INFO engine started HF_TOKEN=hf_secretsecretsecretsecret12' >&2",
    );
    let dir = tempfile::tempdir().unwrap();
    let (output, _) = collect(path.path(), dir.path(), &["--log", "docker:vllm/0"]);
    assert_eq!(output.status.code(), Some(0));
    let items = manifest(dir.path());
    let it = item(&items, "logs/docker-vllm_0.log");
    assert_eq!(it["source"], "docker logs --tail 20000 vllm/0");
    assert_eq!(it["redacted"]["secret_value"], 1, "{it}");
    let text = std::fs::read_to_string(dir.path().join("logs/docker-vllm_0.log")).unwrap();
    assert_eq!(
        text,
        "docker logs --tail 20000 vllm/0\nINFO engine started HF_TOKEN=[redacted]\n"
    );

    let (output, _) = collect(path.path(), dir.path(), &["--log", "journal:vllm.service"]);
    assert_eq!(output.status.code(), Some(0));
    let text = std::fs::read_to_string(dir.path().join("logs/journal-vllm.service.log")).unwrap();
    assert!(text.starts_with("unit vllm.service: INFO vLLM"), "{text}");
}

/// `--redact-hosts`: the machine's name and every address, in the kernel log, the engine log and the manifest,
/// become the same pseudonym in every file; the key lies beside the bundle, and the bundle still diagnoses.
#[test]
fn hidden_hosts_are_pseudonyms_in_every_file_and_the_bundle_still_diagnoses() {
    const HOST: &str = "gpu-host";
    const PEER: &str = "10.20.30.40";
    const MAC: &str = "0c:42:a1:5e:00:01";
    let path = fake_path(Gpu::Replay, XID_79);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
    std::fs::write(root.join("proc/sys/kernel/hostname"), format!("{HOST}\n")).unwrap();
    let log = dir.path().join("vllm.log");
    std::fs::write(
        &log,
        format!(
            "INFO 07-14 08:12:53 NCCL INFO {HOST}:1234 Bootstrap: Using eth0:{PEER}<0> ({MAC})\n\
             INFO 07-14 08:12:54 Uvicorn running on http://{PEER}:8000 and http://127.0.0.1:8000\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("bundle");
    let (output, _) = collect(
        path.path(),
        &out,
        &[
            "--redact-hosts",
            "--root",
            root.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (file, text) in bundle_files(&out) {
        for hidden in [HOST, PEER, MAC] {
            assert!(!text.contains(hidden), "{hidden} in {}", file.display());
        }
    }
    let engine_log = std::fs::read_to_string(out.join("logs/vllm.log")).unwrap();
    assert!(
        engine_log.contains("NCCL INFO host-1:1234 Bootstrap: Using eth0:ip-1<0> (mac-1)"),
        "{engine_log}"
    );
    assert!(
        engine_log.contains("http://ip-1:8000 and http://127.0.0.1:8000"),
        "loopback says nothing about the network: {engine_log}"
    );
    let kernel_log = std::fs::read_to_string(out.join("logs/kernel.log")).unwrap();
    assert!(
        kernel_log.contains("host-1 kernel: NVRM: Xid"),
        "{kernel_log}"
    );
    let items = manifest(&out);
    assert_eq!(item(&items, "logs/vllm.log")["redacted"]["ip_address"], 2);
    let key: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("bundle.hosts.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(key[HOST], "host-1");
    assert_eq!(key[PEER], "ip-1");
    let doc = diagnose_bundle(&out);
    assert!(
        doc["evidence"].to_string().contains("\"code\":79"),
        "the XID is read through the pseudonyms: {doc}"
    );
}

const POD: &str = "vllm-llama-8b-7d9f6c5b8-x2kqp";
/// The five items kubectl is asked for about the pod above.
const POD_FILES: [&str; 5] = [
    "k8s/pod.json",
    "k8s/events.json",
    "logs/k8s-vllm-llama-8b-7d9f6c5b8-x2kqp.log",
    "logs/k8s-vllm-llama-8b-7d9f6c5b8-x2kqp-previous.log",
    "gpu/k8s-nvidia-smi-q.xml",
];

/// `--log k8s:NS/POD/CONTAINER` from a machine with kubectl but no GPU: the fake kubectl replays an OOM-killed
/// vLLM pod, its events, a log holding a secret, no previous log, and an A10G's nvidia-smi inside the pod. The
/// bundle is redacted, its GPU is the pod's, and its diagnosis is the restart, critical.
#[test]
fn a_kubernetes_pod_is_collected_with_kubectl_and_its_oom_kill_diagnosed() {
    const LOG_SECRET: &str = "sk-log-secret-0123456789";
    const POD_SECRET: &str = "sk-pod-fixture-5f3a9c1e7b";
    let path = fake_path(Gpu::Absent, QUIET_KERNEL);
    let at = format!("{POD} -n inference");
    let log = path.path().join("vllm.log");
    std::fs::write(
        &log,
        format!(
            "INFO 07-14 08:13:05 [api_server.py:1] vLLM API server version 0.11.0\n\
             INFO 07-14 08:13:05 [api_server.py:2] env VLLM_API_KEY={LOG_SECRET}\n"
        ),
    )
    .unwrap();
    fake_tool(
        path.path(),
        "kubectl",
        &format!(
            "case \"$*\" in\n\
             'get pod {POD} -o json -n inference') {} ;;\n\
             'get events --field-selector involvedObject.name={POD} -o json -n inference') \
             echo '{{\"kind\": \"List\", \"items\": [{{\"reason\": \"BackOff\", \"type\": \"Warning\"}}]}}'; exit 0 ;;\n\
             *--previous*) echo 'Error from server (BadRequest): previous terminated container \"vllm\" not found' >&2; exit 1 ;;\n\
             'logs {POD} --tail 20000 -n inference -c vllm') exec /bin/cat '{}' ;;\n\
             'exec {at} -c vllm -- nvidia-smi -q -x') {} ;;\n\
             esac\necho \"unexpected: $*\" >&2; exit 2",
            cat("fixtures/k8s/vllm-pod-oomkilled.json"),
            log.display(),
            cat("fixtures/gpu/a10g.xml"),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle");
    let (output, _) = collect(
        path.path(),
        &out,
        &["--log", &format!("k8s:inference/{POD}/vllm")],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let items = manifest(&out);
    // The pod's server is not on this machine: its kernel log and host facts would be another host's.
    for file in ["logs/kernel.log", "host.json"] {
        let it = item(&items, file);
        assert_eq!(it["status"], "skipped", "{it}");
        assert!(it["why"].as_str().unwrap().contains("pod's node"), "{it}");
        assert!(!out.join(file).exists());
    }
    for file in POD_FILES {
        let it = item(&items, file);
        if file.ends_with("previous.log") {
            assert_eq!(it["status"], "failed", "{it}");
            assert!(
                it["why"].as_str().unwrap().contains("has not restarted"),
                "{it}"
            );
        } else {
            assert_eq!(it["status"], "ok", "{it}");
        }
    }
    assert_eq!(
        item(&items, "k8s/pod.json")["source"],
        format!("kubectl get pod {POD} -o json -n inference")
    );
    // The pod's VLLM_API_KEY value, and its secretKeyRef's key (harmless to hide); the log's VLLM_API_KEY.
    for (file, replaced) in [("k8s/pod.json", 2), (POD_FILES[2], 1)] {
        let it = item(&items, file);
        assert_eq!(it["redacted"]["secret_value"], replaced, "{it}");
    }
    let pod = std::fs::read_to_string(out.join("k8s/pod.json")).unwrap();
    serde_json::from_str::<Value>(&pod).expect("the redacted pod is still JSON");
    assert!(pod.contains("\"value\": \"INFO\""), "{pod}");
    for (file, text) in bundle_files(&out) {
        for secret in [LOG_SECRET, POD_SECRET] {
            assert!(!text.contains(secret), "{secret} in {}", file.display());
        }
    }

    let doc = diagnose_bundle(&out);
    assert_eq!(
        findings(&doc).first().map(String::as_str),
        Some("k8s.container_restarts"),
        "{}",
        doc["diagnosis"]
    );
    let found = &doc["diagnosis"]["findings"][0];
    assert_eq!(found["severity"], "critical", "{found}");
    assert!(
        found["verdict"]
            .as_str()
            .unwrap()
            .contains("memory limit of 32Gi"),
        "{found}"
    );
    // The host has no nvidia-smi: the GPU is the one nvidia-smi saw inside the pod.
    let gpus = doc["evidence"]["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 1, "{gpus:?}");
    assert_eq!(
        doc["evidence"]["log"]["version"], "0.11.0",
        "the pod's log is read"
    );

    // A pod description that does not read is said, naming the file and the field, and judges nothing.
    std::fs::write(
        out.join("k8s/pod.json"),
        pod.replacen("\"restartCount\": 3", "\"restartCount\": \"3\"", 1),
    )
    .unwrap();
    let doc = diagnose_bundle(&out);
    let warnings = doc["warnings"].to_string();
    assert!(
        warnings.contains("k8s/pod.json: status.containerStatuses[0].restartCount: not a count"),
        "{warnings}"
    );
    assert!(!findings(&doc).contains(&"k8s.container_restarts".to_string()));
}

/// Without kubectl, the pod's items are missing and say why; the rest is collected, and the pod rule is unknown;
/// a kubectl that hangs costs one deadline.
#[test]
fn without_kubectl_the_pods_items_are_missing_and_collect_goes_on() {
    let path = fake_path(Gpu::Replay, QUIET_KERNEL);
    let dir = tempfile::tempdir().unwrap();
    let (output, _) = collect(path.path(), dir.path(), &["--log", &format!("k8s:{POD}")]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let items = manifest(dir.path());
    for file in POD_FILES {
        let it = item(&items, file);
        assert_eq!(it["status"], "not_installed", "{it}");
        assert!(
            it["why"].as_str().unwrap().contains("not installed"),
            "{it}"
        );
    }
    assert_eq!(item(&items, "gpu/nvidia-smi-q.xml")["status"], "ok");
    let doc = diagnose_bundle(dir.path());
    let line = doc["diagnosis"]["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "k8s_no_restarts")
        .unwrap();
    assert_eq!(line["status"], "unknown", "{line}");
    // A kubectl that never answers (an unreachable API server) times out item by item, the deadlines in parallel.
    fake_tool(path.path(), "kubectl", "exec /bin/sleep 1000");
    let hung = tempfile::tempdir().unwrap();
    let (output, took) = collect(path.path(), hung.path(), &["--log", &format!("k8s:{POD}")]);
    assert_eq!(output.status.code(), Some(0));
    assert!(took < Duration::from_secs(6), "{took:?}");
    let items = manifest(hung.path());
    for file in POD_FILES {
        assert_eq!(item(&items, file)["status"], "timed_out", "{file}");
    }
    // A pod reference that names no pod is refused before anything is gathered.
    let refused = bin()
        .args(["collect", "--quiet", "--log", "k8s:inference/"])
        .arg("--out")
        .arg(dir.path().join("refused"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
}

/// Profiler traces given to collect are analysed on the host: the bundle keeps the evidence and the tables, not
/// the traces, and diagnose judges the bundle's trace as it would the files, cut file included.
#[test]
fn collect_keeps_the_trace_analysis_and_diagnose_reads_it() {
    let path = fake_path(Gpu::Absent, QUIET_KERNEL);
    let dir = tempfile::tempdir().unwrap();
    let traces = dir.path().join("traces");
    std::fs::create_dir(&traces).unwrap();
    std::fs::copy(
        fixture("fixtures/trace/tracelens__sglang_Qwen3-8B_decode_mi300x.json.gz"),
        traces.join("rank0.1765000000000.pt.trace.json.gz"),
    )
    .unwrap();
    let nccl = std::fs::read(fixture(
        "fixtures/trace/hta__nccl_parser_config__nccl_data.json.gz",
    ))
    .unwrap();
    std::fs::write(
        traces.join("rank1.1765000000000.pt.trace.json.gz"),
        &nccl[..nccl.len() * 4 / 5],
    )
    .unwrap();
    let out = dir.path().join("bundle");
    let (output, _) = collect(
        path.path(),
        &out,
        &["--trace", traces.to_str().unwrap(), "--redact-hosts"],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let items = manifest(&out);
    for file in ["trace/facts.json", "trace/analysis.md"] {
        assert_eq!(item(&items, file)["status"], "ok", "{file}");
    }
    let tables = std::fs::read_to_string(out.join("trace/analysis.md")).unwrap();
    assert!(tables.contains("## Kernel classes"), "{tables}");
    assert!(
        !out.join("trace").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".pt.trace")),
        "the traces themselves stay out of the bundle"
    );

    let doc = diagnose_bundle(&out);
    let ranks = doc["evidence"]["trace"]["ranks"].as_array().unwrap();
    assert_eq!(ranks.len(), 2);
    assert_eq!(ranks[0]["phases"][0]["phase"], "decode");
    assert!(ranks[1]["busy_us"].as_f64().unwrap() > 0.0);
    let idle = doc["diagnosis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "trace.gpu_idle");
    assert!(
        idle.is_some(),
        "the SGLang rank's GPU idles within its step"
    );
    let said = doc["warnings"].to_string();
    assert!(said.contains("ends early"), "the cut rank is said: {said}");

    // A trace that cannot be read is a failed item, and the rest of the bundle stands.
    let bad = dir.path().join("bad");
    let (output, _) = collect(
        path.path(),
        &bad,
        &["--trace", dir.path().join("missing.json").to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(0));
    let failed = item(&manifest(&bad), "trace/facts.json").clone();
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["why"].as_str().unwrap().contains("cannot read"),
        "{failed}"
    );
}
