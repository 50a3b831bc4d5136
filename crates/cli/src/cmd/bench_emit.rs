//! `infer-doctor bench --emit k8s-job`: the bench the other flags describe, as Kubernetes Jobs that run it from
//! many pods (one shard each) and merge the shards; the API key goes in by Secret reference, never by value.

use anyhow::anyhow;
use infer_doctor_core::shard::ShardSpec;
use std::path::Path;

use infer_doctor_plan::load_job::{LoadJob, RESULTS_MOUNT, manifests};

use crate::args::BenchArgs;
use crate::{Failure, exit};

/// Flags that shape the manifest, not the bench each pod runs, or that each pod sets itself; all take a value.
const NOT_FOR_THE_PODS: [&str; 14] = [
    "--emit",
    "--shards",
    "--image",
    "--namespace",
    "--job-name",
    "--results-claim",
    "--api-key-secret",
    "--output",
    "-o",
    "--api-key",
    "--out",
    "--shard",
    "--format",
    "--history",
];

/// Switches (no value) each pod sets itself or that only shape the manifest: typed twice, clap refuses the pod's.
const SWITCHES_NOT_FOR_THE_PODS: [&str; 4] = ["--quiet", "-q", "--no-history", "--paths-in-image"];

/// How long the merge Job waits for the shards by default: the run's own length is unknown to it.
const MERGE_WAIT_S: u64 = 6 * 3600;

pub fn run(args: &BenchArgs) -> Result<u8, Failure> {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let image = args.image.clone().ok_or_else(|| {
        Failure::usage(anyhow!(
            "--emit k8s-job needs --image IMAGE: an image with infer-doctor on its PATH"
        ))
    })?;
    let api_key_secret = args
        .api_key_secret
        .as_deref()
        .map(|s| match s.split_once(':') {
            Some((name, key)) => (name.to_string(), key.to_string()),
            None => (s.to_string(), "api-key".to_string()),
        });
    if args.api_key.is_some() && api_key_secret.is_none() {
        return Err(Failure::usage(anyhow!(
            "an API key is set (--api-key or OPENAI_API_KEY) but a manifest never holds one: put it in a Secret \
             (kubectl create secret generic NAME --from-literal=api-key=…) and pass --api-key-secret NAME"
        )));
    }
    if !args.paths_in_image {
        for (flag, path) in [
            ("--dataset", &args.dataset),
            ("--tokenizer", &args.tokenizer),
            ("--thresholds", &args.thresholds),
            ("--ca-cert", &args.ca_cert),
        ] {
            if let Some(path) = path {
                check_pod_path(flag, path).map_err(Failure::usage)?;
            }
        }
    }
    // Every pod must get a user (closed loop) or an in-flight slot: the last shard's share is the smallest.
    let shards = args.shards.unwrap_or(1).max(1);
    infer_doctor_load::run::check_shard(
        &crate::cmd::bench::shape(args)?,
        ShardSpec {
            index: shards - 1,
            count: shards,
        },
    )
    .map_err(Failure::usage)?;
    let job = LoadJob {
        name: args.job_name.clone(),
        namespace: args.namespace.clone(),
        image,
        shards: args.shards.unwrap_or(1),
        results_claim: args.results_claim.clone(),
        api_key_secret,
        bench_args: pod_args(&argv),
        merge_wait_s: MERGE_WAIT_S,
    };
    let yaml = manifests(&job).map_err(Failure::usage)?;
    crate::cmd::write_or_print(args.output.as_deref(), &yaml)?;
    Ok(exit::OK)
}

/// A file flag's path as the pods will see it: only the results volume is shared with them, so a path on this
/// machine would name nothing there (or something else).
fn check_pod_path(flag: &str, path: &Path) -> anyhow::Result<()> {
    if path.is_absolute() && path.starts_with(RESULTS_MOUNT) {
        return Ok(());
    }
    Err(anyhow!(
        "{flag} {}: the pods cannot read files on this machine; copy the file onto the results volume and pass its \
         path there ({RESULTS_MOUNT}/…, where --results-claim is mounted in every pod), or build it into the image \
         and add --paths-in-image",
        path.display()
    ))
}

/// The bench flags as the user typed them after `bench`, less the manifest's own and those each pod sets.
fn pod_args(argv: &[String]) -> Vec<String> {
    let after = argv
        .iter()
        .position(|a| a == "bench")
        .map_or(argv.len(), |i| i + 1);
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in &argv[after..] {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        let name = arg.split_once('=').map_or(arg.as_str(), |(n, _)| n);
        if NOT_FOR_THE_PODS.contains(&name) {
            skip_value = !arg.contains('=');
            continue;
        }
        if SWITCHES_NOT_FOR_THE_PODS.contains(&name) {
            continue;
        }
        out.push(arg.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pods_get_the_bench_flags_and_never_the_key() {
        let argv: Vec<String> = [
            "infer-doctor",
            "bench",
            "--url",
            "http://vllm:8000",
            "--api-key",
            "sk-secret",
            "--emit",
            "k8s-job",
            "--shards=3",
            "-o",
            "job.yaml",
            "--request-rate",
            "50",
            "--api-key=sk-other",
            "--image",
            "img",
            "--seed",
            "7",
            "--quiet",
            "-q",
            "--no-history",
            "--history",
            "h.sqlite",
            "--history=h2.sqlite",
            "--paths-in-image",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            pod_args(&argv),
            [
                "--url",
                "http://vllm:8000",
                "--request-rate",
                "50",
                "--seed",
                "7"
            ]
        );
    }

    #[test]
    fn only_paths_on_the_results_volume_reach_the_pods() {
        assert!(check_pod_path("--dataset", Path::new("/results/data/sharegpt.json")).is_ok());
        for local in [
            "sharegpt.json",
            "/home/me/tok",
            "/resultsx/tok",
            "results/tok",
        ] {
            let err = check_pod_path("--tokenizer", Path::new(local))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("--tokenizer")
                    && err.contains(local)
                    && err.contains("--paths-in-image"),
                "{err}"
            );
        }
    }
}
