//! The autoscaling manifests and the sharded bench's Jobs against the schemas their consumers enforce, checked by
//! tools nobody here wrote: the HPA and the Jobs with `kubernetes-validate` (PyPI; Kubernetes' own OpenAPI schemas, strict: unknown fields fail), the
//! KEDA ScaledObject with Python's `jsonschema` against KEDA's own CRD (`fixtures/k8s/keda/`), which
//! `kubernetes-validate` does not know. Each check is also shown to fail on a broken manifest, so a pass means
//! something. The tools live in a cached venv that `scripts/real-servers/install-kubernetes-validate.sh` makes
//! on demand (`.ci/run` calls it first); nothing here touches the network once it is installed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use infer_doctor_plan::autoscale::{
    self, AutoscaleTarget, DEFAULT_PROMETHEUS_ADDRESS, PlannedCapacity,
};
use serde_json::Value;

/// The Kubernetes releases the HPA must validate against: an older supported one and the newest the tool ships.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
/// No validation takes more than a few seconds; this bounds a hung interpreter.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);
/// A model name with everything that could break YAML or PromQL if it were not escaped.
const MODEL: &str = "org/model:v1 \"q\" \\ # x\u{2028}\u{85}é";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's `bin` directory, installed (or found) once per test process by the idempotent, locking script.
fn venv_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = repo().join("scripts/real-servers/install-kubernetes-validate.sh");
        let output = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "install-kubernetes-validate.sh failed ({}): see its stderr above",
            output.status
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let bin = PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("the script prints the venv")
                .trim(),
        );
        assert!(
            bin.join("kubernetes-validate").is_file(),
            "{}",
            bin.display()
        );
        bin
    })
}

/// Runs a command to completion within `COMMAND_LIMIT`; returns whether it succeeded and its stdout + stderr.
fn run(program: &Path, args: &[&Path]) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    // Both pipes are read on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} did not finish within {COMMAND_LIMIT:?}",
                program.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = out.join().unwrap() + &err.join().unwrap();
    (status.success(), text)
}

/// `kubernetes-validate --strict` against each of `KUBERNETES_VERSIONS`.
fn kubernetes_validate(file: &Path) -> (bool, String) {
    let mut args: Vec<&Path> = vec![Path::new("--strict")];
    for version in &KUBERNETES_VERSIONS {
        args.push(Path::new("-k"));
        args.push(Path::new(version));
    }
    args.push(file);
    run(&venv_bin().join("kubernetes-validate"), &args)
}

/// The ScaledObjects of `file` against KEDA's CRD (`tests/autoscale/validate_crd.py`).
fn keda_validate(file: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/autoscale/validate_crd.py");
    let crd = repo().join("fixtures/k8s/keda/keda.sh_scaledobjects.yaml");
    run(&venv_bin().join("python"), &[&script, &crd, file])
}

/// The YAML documents of `file` as PyYAML reads them, via JSON.
fn parse_yaml(file: &Path) -> Vec<Value> {
    let code = "import json, sys, yaml\n\
                print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))";
    let (ok, text) = run(
        &venv_bin().join("python"),
        &[Path::new("-c"), Path::new(code), file],
    );
    assert!(ok, "PyYAML could not read {}:\n{text}", file.display());
    serde_json::from_str::<Vec<Value>>(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn target() -> AutoscaleTarget {
    let capacity = PlannedCapacity {
        concurrency_per_replica: 24.0,
        replicas_needed: 2,
        headroom: 2.5,
    };
    AutoscaleTarget::from_capacity(
        "vllm-llama-8b",
        MODEL,
        DEFAULT_PROMETHEUS_ADDRESS,
        &capacity,
    )
    .unwrap()
    .in_namespace("inference")
}

/// Writes `text` to a file in a fresh directory (kept alive by the returned guard).
fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn hpa_passes_the_kubernetes_schemas_strictly() {
    let (_dir, file) = write("hpa.yaml", &autoscale::hpa(&target()).unwrap());
    let (ok, text) = kubernetes_validate(&file);
    assert!(ok, "kubernetes-validate refused the HPA:\n{text}");
    // A pass is a line per resource and version; a warning (an unknown kind, an unknown version) is no pass.
    for version in KUBERNETES_VERSIONS {
        let minor = version.rsplit_once('.').unwrap().0;
        let line = format!(
            "passed for resource horizontalpodautoscaler/vllm-llama-8b against version {minor}"
        );
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }
    assert!(!text.contains("WARN") && !text.contains("ERROR"), "{text}");
}

#[test]
fn a_broken_hpa_fails_the_kubernetes_schemas() {
    let hpa = autoscale::hpa(&target()).unwrap();
    // A quantity where an integer belongs.
    let wrong_type = hpa.replacen("  minReplicas: 2\n", "  minReplicas: \"2\"\n", 1);
    assert_ne!(wrong_type, hpa);
    let (_dir, file) = write("wrong_type.yaml", &wrong_type);
    let (ok, text) = kubernetes_validate(&file);
    assert!(!ok, "a string minReplicas passed:\n{text}");
    assert!(
        text.contains("spec.minReplicas: '2' is not of type 'integer'"),
        "{text}"
    );
    // A field the API does not have (strict validation).
    let unknown = hpa.replacen(
        "  maxReplicas: 5\n",
        "  maxReplicas: 5\n  maxReplica: 5\n",
        1,
    );
    assert_ne!(unknown, hpa);
    let (_dir, file) = write("unknown_field.yaml", &unknown);
    let (ok, text) = kubernetes_validate(&file);
    assert!(!ok, "an unknown field passed:\n{text}");
    assert!(text.contains("maxReplica"), "{text}");
}

/// Why the ScaledObject needs its own check: kubernetes-validate has no schema for a custom resource and says
/// so only as a warning, exiting 0. If a later version starts failing or validating CRDs, this test says so.
#[test]
fn kubernetes_validate_passes_an_unknown_kind_with_only_a_warning() {
    let (_dir, file) = write("keda.yaml", &autoscale::keda(&target()).unwrap());
    let (ok, text) = kubernetes_validate(&file);
    assert!(ok, "{text}");
    assert!(
        text.contains("WARN") && text.contains("Couldn't find schema for kind ScaledObject"),
        "{text}"
    );
    assert!(!text.contains("passed for resource"), "{text}");
}

#[test]
fn scaled_object_passes_kedas_crd_schema() {
    let (_dir, file) = write("keda.yaml", &autoscale::keda(&target()).unwrap());
    let (ok, text) = keda_validate(&file);
    assert!(ok, "KEDA's CRD schema refused the ScaledObject:\n{text}");
    assert!(
        text.contains("PASSED")
            && text.contains("scaledobject/vllm-llama-8b against keda.sh/v1alpha1"),
        "{text}"
    );
}

#[test]
fn a_broken_scaled_object_fails_kedas_crd_schema() {
    let keda = autoscale::keda(&target()).unwrap();
    // KEDA's trigger metadata is a map of strings: an unquoted threshold is the classic mistake.
    let number = keda.replacen("threshold: \"2\"", "threshold: 2", 1);
    assert_ne!(number, keda);
    let (_dir, file) = write("number_threshold.yaml", &number);
    let (ok, text) = keda_validate(&file);
    assert!(!ok, "a numeric threshold passed:\n{text}");
    assert!(
        text.contains("threshold: 2 is not of type 'string'"),
        "{text}"
    );
    // A field KEDA does not have.
    let unknown = keda.replacen("  pollingInterval: 15\n", "  pollingIntervals: 15\n", 1);
    assert_ne!(unknown, keda);
    let (_dir, file) = write("unknown_field.yaml", &unknown);
    let (ok, text) = keda_validate(&file);
    assert!(!ok, "an unknown field passed:\n{text}");
    assert!(text.contains("'pollingIntervals' was unexpected"), "{text}");
    // A file without a ScaledObject is an error, not a silent pass.
    let (_dir, file) = write("hpa.yaml", &autoscale::hpa(&target()).unwrap());
    let (ok, text) = keda_validate(&file);
    assert!(
        !ok && text.contains("no ScaledObject object to validate"),
        "{text}"
    );
}

/// A real YAML parser reads back exactly the strings meant: the model name, and PromQL that carries it escaped.
#[test]
fn manifests_parse_back_to_what_was_meant() {
    let t = target();
    let (_dir, file) = write("keda.yaml", &autoscale::keda(&t).unwrap());
    let docs = parse_yaml(&file);
    assert_eq!(docs.len(), 1, "{docs:?}");
    let object = &docs[0];
    assert_eq!(
        object["metadata"]["annotations"]["infer-doctor/model-name"],
        MODEL
    );
    let triggers = object["spec"]["triggers"].as_array().unwrap();
    let selector =
        "{model_name=\"org/model:v1 \\\"q\\\" \\\\ # x\u{2028}\\u0085é\",namespace=\"inference\"}";
    assert_eq!(
        triggers[0]["metadata"]["query"],
        format!("sum(vllm:num_requests_waiting{selector})")
    );
    assert_eq!(triggers[0]["metadata"]["threshold"], "2");
    assert_eq!(
        triggers[1]["metadata"]["query"],
        format!("avg(vllm:kv_cache_usage_perc{selector})")
    );
    assert_eq!(triggers[1]["metadata"]["threshold"], "0.8");
    assert_eq!(object["spec"]["minReplicaCount"], 2);
    assert_eq!(object["spec"]["maxReplicaCount"], 5);

    let (_dir, file) = write("hpa.yaml", &autoscale::hpa(&t).unwrap());
    let docs = parse_yaml(&file);
    assert_eq!(
        docs.len(),
        1,
        "the adapter rules are a comment, not a document: {docs:?}"
    );
    assert_eq!(
        docs[0]["metadata"]["annotations"]["infer-doctor/model-name"],
        MODEL
    );
    let metrics = docs[0]["spec"]["metrics"].as_array().unwrap();
    assert_eq!(
        metrics[0]["pods"]["metric"]["name"],
        "vllm_num_requests_waiting"
    );
    assert_eq!(metrics[0]["pods"]["target"]["averageValue"], "2");
    assert_eq!(metrics[1]["pods"]["target"]["averageValue"], "800m");

    let (_dir, file) = write("rules.yaml", &autoscale::prometheus_adapter_rules(&t));
    let rules = &parse_yaml(&file)[0]["rules"];
    assert_eq!(
        rules[0]["seriesQuery"],
        r#"vllm:num_requests_waiting{namespace!="",pod!=""}"#
    );
    assert_eq!(rules[0]["name"]["as"], "vllm_num_requests_waiting");
    assert_eq!(rules[0]["resources"]["overrides"]["pod"]["resource"], "pod");
    assert_eq!(
        rules[1]["metricsQuery"],
        "max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"
    );
}

fn load_job() -> infer_doctor_plan::load_job::LoadJob {
    infer_doctor_plan::load_job::LoadJob {
        name: "bench-llama".into(),
        namespace: Some("load".into()),
        image: "registry.example/infer-doctor:0.1".into(),
        shards: 8,
        results_claim: "bench-results".into(),
        api_key_secret: Some(("llm-api-key".into(), "api-key".into())),
        bench_args: [
            "--url",
            "http://vllm.inference:8000",
            "--request-rate",
            "400",
            "--duration",
            "120s",
            "--model",
            MODEL,
        ]
        .map(String::from)
        .to_vec(),
        merge_wait_s: 3600,
    }
}

#[test]
fn the_sharded_bench_jobs_pass_the_kubernetes_schemas_strictly() {
    let yaml = infer_doctor_plan::load_job::manifests(&load_job()).unwrap();
    let (_dir, file) = write("bench-job.yaml", &yaml);
    let (ok, text) = kubernetes_validate(&file);
    assert!(ok, "kubernetes-validate refused the Jobs:\n{text}");
    for version in KUBERNETES_VERSIONS {
        let minor = version.rsplit_once('.').unwrap().0;
        for job in ["bench-llama", "bench-llama-merge"] {
            let line = format!("passed for resource job/{job} against version {minor}");
            assert!(text.contains(&line), "no {line:?} in:\n{text}");
        }
    }
    assert!(!text.contains("WARN") && !text.contains("ERROR"), "{text}");
    // What Kubernetes will run, as a YAML reader sees it: pod i shards by its completion index, the key by reference.
    let docs = parse_yaml(&file);
    let (shards, merge) = (&docs[0], &docs[1]);
    assert_eq!(shards["spec"]["completionMode"], "Indexed");
    assert_eq!(shards["spec"]["completions"], 8);
    assert_eq!(shards["spec"]["parallelism"], 8);
    let pod = &shards["spec"]["template"]["spec"];
    let args: Vec<&str> = pod["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args.iter().position(|a| *a == "--shard").unwrap();
    assert_eq!(args[at + 1], "$(JOB_COMPLETION_INDEX)/8");
    assert!(
        args.contains(&MODEL),
        "the model name survives quoting: {args:?}"
    );
    assert_eq!(
        pod["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"],
        "llm-api-key"
    );
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "bench-results"
    );
    let merge_args = merge["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    assert_eq!(merge_args[0], "bench");
    assert_eq!(merge_args[1], "merge");
    assert_eq!(merge_args[2], "/results/bench-llama/shard-0");
    assert_eq!(merge_args[9], "/results/bench-llama/shard-7");
}

#[test]
fn a_broken_sharded_bench_job_fails_the_kubernetes_schemas() {
    let yaml = infer_doctor_plan::load_job::manifests(&load_job()).unwrap();
    let broken = yaml.replacen("completionMode: \"Indexed\"", "completionMode: 1", 1);
    assert_ne!(broken, yaml);
    let (_dir, file) = write("broken-job.yaml", &broken);
    let (ok, text) = kubernetes_validate(&file);
    assert!(!ok, "a numeric completionMode passed:\n{text}");
    assert!(text.contains("completionMode"), "{text}");
}
