//! Load from many machines as Kubernetes runs it: an Indexed Job whose pod `i` runs `bench --shard i/N` into a
//! shared volume, and a Job that waits for every shard and merges them (`bench merge`), as one YAML document stream.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::HardwareError;
use crate::autoscale::{dns_label, dns_subdomain, invalid, invalid_text, q};

/// Where shard results live in every pod.
pub const RESULTS_MOUNT: &str = "/results";

/// How long before the merge pod a shard's run may have started and still be this run's.
pub const MERGE_STARTED_WITHIN_S: u64 = 15 * 60;

/// What the Jobs run and where.
#[derive(Clone, Debug)]
pub struct LoadJob {
    pub name: String,
    pub namespace: Option<String>,
    pub image: String,
    pub shards: u64,
    /// A ReadWriteMany PersistentVolumeClaim: pods on different nodes write their shard into it.
    pub results_claim: String,
    /// (Secret name, key) of the API key, given to `infer-doctor` as `OPENAI_API_KEY`.
    pub api_key_secret: Option<(String, String)>,
    /// `bench`'s flags for the whole run, without `--shard`, `--out` or any key.
    pub bench_args: Vec<String>,
    /// How long the merge waits for the shards, in seconds.
    pub merge_wait_s: u64,
}

/// The most pods one Job may run at once here: past Kubernetes' own limit on an Indexed Job's completions.
const MAX_SHARDS: u64 = 100_000;

impl LoadJob {
    fn validate(&self) -> Result<(), HardwareError> {
        let check = |setting: &'static str, value: &str, rule: fn(&str) -> Result<(), String>| {
            rule(value).map_err(|expected| invalid_text(setting, value, &expected))
        };
        // The merge Job is NAME-merge, and pods get NAME-INDEX-xxxxx: both must stay a label.
        if self.name.len() > 40 {
            return Err(invalid_text(
                "--job-name",
                &self.name,
                "at most 40 characters, leaving room for the pods' suffixes",
            ));
        }
        check("--job-name", &self.name, dns_label)?;
        if let Some(ns) = &self.namespace {
            check("--namespace", ns, dns_label)?;
        }
        check("--results-claim", &self.results_claim, dns_subdomain)?;
        if let Some((secret, key)) = &self.api_key_secret {
            check("--api-key-secret", secret, dns_subdomain)?;
            let key_ok = !key.is_empty()
                && key.len() <= 253
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !key_ok {
                return Err(invalid_text(
                    "--api-key-secret key",
                    key,
                    "a Secret key: letters, digits, '-', '_' and '.'",
                ));
            }
        }
        if self.image.trim().is_empty() || self.image.chars().any(char::is_whitespace) {
            return Err(invalid_text(
                "--image",
                &self.image,
                "an image reference without spaces",
            ));
        }
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(invalid(
                "--shards",
                self.shards,
                &format!("between 1 and {MAX_SHARDS}"),
            ));
        }
        Ok(())
    }

    fn metadata(&self, name: &str, component: &str) -> Value {
        let mut meta = json!({
            "name": name,
            "labels": {
                "app.kubernetes.io/name": "infer-doctor",
                "app.kubernetes.io/component": component,
                "app.kubernetes.io/instance": self.name,
            },
        });
        if let Some(ns) = &self.namespace {
            meta["namespace"] = json!(ns);
        }
        meta
    }

    fn env(&self) -> Value {
        match &self.api_key_secret {
            Some((secret, key)) => json!([{
                "name": "OPENAI_API_KEY",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
            }]),
            None => json!([]),
        }
    }

    /// A pod spec running `infer-doctor ARGS` once with the results volume mounted.
    fn pod(&self, container: &str, args: Vec<String>, labels: Value) -> Value {
        json!({
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": container,
                    "image": self.image,
                    "command": ["infer-doctor"],
                    "args": args,
                    "env": self.env(),
                    "volumeMounts": [{"name": "results", "mountPath": RESULTS_MOUNT}],
                }],
                "volumes": [{
                    "name": "results",
                    "persistentVolumeClaim": {"claimName": self.results_claim},
                }],
            },
        })
    }

    fn shard_dir(&self, index: &str) -> String {
        format!("{RESULTS_MOUNT}/{}/shard-{index}", self.name)
    }
}

/// The two Jobs as a YAML stream for `kubectl apply -f`. Each shard is tried once (`backoffLimit: 0`): a retried
/// shard would send its share of the load twice.
pub fn manifests(job: &LoadJob) -> Result<String, HardwareError> {
    job.validate()?;
    let n = job.shards;
    let mut shard_args = vec!["bench".to_string()];
    shard_args.extend(job.bench_args.iter().cloned());
    // Kubernetes expands $(JOB_COMPLETION_INDEX), which the Job controller sets in every pod of an Indexed Job.
    shard_args.extend([
        "--shard".into(),
        format!("$(JOB_COMPLETION_INDEX)/{n}"),
        "--out".into(),
        job.shard_dir("$(JOB_COMPLETION_INDEX)"),
        "--no-history".into(),
        "--quiet".into(),
    ]);
    let labels = job.metadata("", "bench-shard")["labels"].clone();
    let shards = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job.metadata(&job.name, "bench-shard"),
        "spec": {
            "completionMode": "Indexed",
            "completions": n,
            "parallelism": n,
            "backoffLimit": 0,
            "template": job.pod("bench", shard_args, labels),
        },
    });
    let mut merge_args = vec!["bench".to_string(), "merge".to_string()];
    merge_args.extend((0..n).map(|i| job.shard_dir(&i.to_string())));
    merge_args.extend([
        "--wait".into(),
        format!("{}s", job.merge_wait_s),
        // The paths hold the last run of this --job-name: a run.json from before the shards could have started is
        // a previous run's. Pods of the two Jobs start within minutes of each other; runs are repeated later.
        "--started-within".into(),
        format!("{}s", MERGE_STARTED_WITHIN_S),
        "--out".into(),
        format!("{RESULTS_MOUNT}/{}/merged", job.name),
    ]);
    let merge_name = format!("{}-merge", job.name);
    let labels = job.metadata("", "bench-merge")["labels"].clone();
    let mut merge_pod = job.pod("merge", merge_args, labels);
    // The merge needs no key.
    merge_pod["spec"]["containers"][0]
        .as_object_mut()
        .map(|c| c.remove("env"));
    let merge = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job.metadata(&merge_name, "bench-merge"),
        "spec": {
            "backoffLimit": 0,
            "template": merge_pod,
        },
    });
    let mut out = String::from(
        "# infer-doctor bench from many machines: the Indexed Job's pod i sends shard i of the run; the merge Job\n\
         # waits for every shard's run.json on the shared volume and writes the merged run directory.\n",
    );
    for doc in [shards, merge] {
        out.push_str("---\n");
        write_yaml(&doc, 0, &mut out);
    }
    Ok(out)
}

/// Block-style YAML of a JSON value: every string double-quoted (so no value can change the shape), maps and lists
/// one entry per line.
fn write_yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                // Kubernetes' field and label keys are plain YAML scalars; anything else is quoted.
                let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-' | '_'));
                let key = if plain { key.clone() } else { q(key) };
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        let _ = writeln!(out, "{pad}{key}:");
                        write_yaml(v, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        let _ = writeln!(out, "{pad}{key}:");
                        write_yaml(v, indent, out);
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}{key}: {}", scalar(v));
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                let mut block = String::new();
                write_yaml(item, indent + 2, &mut block);
                // The first line of an item's block follows its dash.
                let block = block
                    .strip_prefix(&" ".repeat(indent + 2))
                    .unwrap_or(&block);
                let _ = write!(out, "{pad}- {block}");
            }
        }
        v => {
            let _ = writeln!(out, "{pad}{}", scalar(v));
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => q(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> LoadJob {
        LoadJob {
            name: "bench".into(),
            namespace: Some("load".into()),
            image: "registry.example/infer-doctor:0.1".into(),
            shards: 4,
            results_claim: "results".into(),
            api_key_secret: Some(("llm-key".into(), "api-key".into())),
            bench_args: vec![
                "--url".into(),
                "http://vllm:8000".into(),
                "--request-rate".into(),
                "400".into(),
            ],
            merge_wait_s: 3600,
        }
    }

    #[test]
    fn each_pod_runs_its_shard_and_the_merge_reads_every_one() {
        let yaml = manifests(&job()).unwrap();
        assert!(yaml.contains("completionMode: \"Indexed\"\n"), "{yaml}");
        assert!(yaml.contains("completions: 4\n") && yaml.contains("parallelism: 4\n"));
        assert!(yaml.contains("- \"$(JOB_COMPLETION_INDEX)/4\"\n"), "{yaml}");
        assert!(yaml.contains("- \"/results/bench/shard-$(JOB_COMPLETION_INDEX)\"\n"));
        for i in 0..4 {
            assert!(yaml.contains(&format!("- \"/results/bench/shard-{i}\"\n")));
        }
        // A previous run's shards on the same paths are not merged.
        assert!(
            yaml.contains("- \"--started-within\"\n") && yaml.contains("- \"900s\"\n"),
            "{yaml}"
        );
        assert!(yaml.contains("secretKeyRef:\n"));
        assert_eq!(
            yaml.matches("name: \"OPENAI_API_KEY\"").count(),
            1,
            "only the shards get the key"
        );
    }

    #[test]
    fn bad_names_are_refused_naming_the_flag() {
        let mut bad = job();
        bad.name = "Bench_1".into();
        assert!(
            manifests(&bad)
                .unwrap_err()
                .to_string()
                .starts_with("--job-name = \"Bench_1\" is invalid")
        );
        let mut bad = job();
        bad.shards = 0;
        assert!(
            manifests(&bad)
                .unwrap_err()
                .to_string()
                .starts_with("--shards = 0 is invalid")
        );
        let mut bad = job();
        bad.api_key_secret = Some(("key".into(), "a b".into()));
        assert!(
            manifests(&bad)
                .unwrap_err()
                .to_string()
                .contains("--api-key-secret key")
        );
    }
}
