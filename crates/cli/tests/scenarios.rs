//! The scenario matrix: every simulator scenario, probed as `diagnose` probes (on the discrete-event clock, or
//! live where the problem sits in the HTTP front), must yield its own finding first, and `healthy` no warning.

use std::process::Command;

use serde_json::Value;

fn bin() -> Command {
    infer_doctor_testkit::command(env!("CARGO_BIN_EXE_infer-doctor"))
}

/// Every scenario with the finding it must produce, from the binary's own list.
fn scenarios() -> Vec<(String, Option<String>)> {
    let out = bin().args(["sim", "--list-scenarios"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|line| {
            let mut parts = line.split_whitespace();
            let name = parts.next().unwrap().to_string();
            let finding = parts.next().filter(|f| f.contains('.')).map(str::to_string);
            (name, finding)
        })
        .collect()
}

/// Scenarios whose problem lives in the HTTP front (injected errors, a gateway), which the discrete-event
/// clock does not serve: they are diagnosed live.
const LIVE: [&str; 2] = ["errors", "upstream-bottleneck"];

/// `sim run --scenario NAME --diagnose` with more flags, as JSON.
fn diagnosed_with(scenario: &str, flags: &[&str]) -> Value {
    let out = bin()
        .args([
            "sim",
            "run",
            "--scenario",
            scenario,
            "--diagnose",
            "--format",
            "json",
        ])
        .args(flags)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn diagnosis(scenario: &str) -> Value {
    if !LIVE.contains(&scenario) {
        return diagnosed_with(scenario, &[]);
    }
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "demo",
            "--scenario",
            scenario,
            "--out",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{scenario}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(dir.path().join("diagnosis.json")).unwrap())
        .unwrap()
}

#[test]
fn every_scenario_yields_its_own_finding_first_and_healthy_none() {
    let mut wrong = Vec::new();
    for (name, expected) in scenarios() {
        let doc = diagnosis(&name);
        let findings = doc["diagnosis"]["findings"].as_array().unwrap();
        let ids: Vec<&str> = findings.iter().filter_map(|f| f["id"].as_str()).collect();
        let failed_lines = doc["diagnosis"]["checklist"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "fail")
            .count();
        match expected {
            Some(expected) if ids.first() != Some(&expected.as_str()) => {
                wrong.push(format!("{name}: expected {expected} first, got {ids:?}"));
            }
            // A problem the playbook names also fails a line of the quick checklist.
            Some(_) if failed_lines == 0 && !LIVE.contains(&name.as_str()) => {
                wrong.push(format!("{name}: no checklist line failed"));
            }
            None => {
                let serious: Vec<&str> = findings
                    .iter()
                    .filter(|f| f["severity"] != "info")
                    .filter_map(|f| f["id"].as_str())
                    .collect();
                if !serious.is_empty() {
                    wrong.push(format!("{name}: expected no warning, got {serious:?}"));
                }
                let failed: Vec<&str> = doc["diagnosis"]["checklist"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| c["status"] == "fail")
                    .filter_map(|c| c["id"].as_str())
                    .collect();
                if !failed.is_empty() {
                    wrong.push(format!("{name}: checklist lines failed: {failed:?}"));
                }
            }
            _ => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The cache-unaware fleet with its router made prefix-aware: the same replicas and traffic, each prefix kept on
/// the pod that cached it, and neither the fleet rule nor the plain prefix-cache rule fires.
#[test]
fn prefix_aware_routing_clears_the_cache_unaware_fleet() {
    let ids = |doc: &Value| -> Vec<String> {
        doc["diagnosis"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect()
    };
    let line = |doc: &Value, id: &str| {
        doc["diagnosis"]["checklist"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    let spread = diagnosed_with("cache-unaware-routing", &[]);
    assert_eq!(line(&spread, "prefix_routing"), "fail");
    let aware = diagnosed_with("cache-unaware-routing", &["--router", "prefix-aware"]);
    let found = ids(&aware);
    assert!(
        !found
            .iter()
            .any(|id| id == "fleet.cache_unaware_routing" || id == "cache.prefix_low_hit"),
        "{found:?}"
    );
    assert_eq!(line(&aware, "prefix_routing"), "pass");
    // One replica is one server again: no fleet to judge.
    let single = diagnosed_with("cache-unaware-routing", &["--replicas", "1"]);
    assert_eq!(line(&single, "prefix_routing"), "unknown");
}

/// The slow-transfer split with its link at RDMA speed: the same replicas and prompts, the KV in milliseconds,
/// and the transfer rule passes with the NIXL numbers read from the decode replicas.
#[test]
fn the_same_split_over_rdma_passes_the_transfer_check() {
    let line = |doc: &Value| {
        doc["diagnosis"]["checklist"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == "kv_transfer_fast")
            .unwrap()
            .clone()
    };
    let slow = diagnosed_with("pd-transfer-slow", &[]);
    assert_eq!(line(&slow)["status"], "fail");
    let rdma = diagnosed_with("pd-transfer-slow", &["--kv-transfer-gbps", "400"]);
    let check = line(&rdma);
    assert_eq!(check["status"], "pass", "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("Gbit/s for 512.0 MiB each"),
        "{check}"
    );
    // A split needs both roles.
    let out = bin()
        .args([
            "sim",
            "run",
            "--scenario",
            "pd-transfer-slow",
            "--prefill-replicas",
            "3",
        ])
        .args(["--diagnose"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--prefill-replicas 3: leaves no prefill or no decode replica"),
        "{err}"
    );
}
