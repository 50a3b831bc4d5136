//! The planner against vLLM's own numbers: real start-up logs from public reports (fixtures/vllm_startup, each
//! with its source) state the KV cache vLLM sized; the planner must agree within 5% from the config alone.

use std::path::{Path, PathBuf};

use infer_doctor_plan::{
    CacheConfig, Deployment, Dtype, Gpu, KvCapacity, KvLayout, MemoryPlan, ModelShape,
};
use serde_json::Value;

const GIB: f64 = (1u64 << 30) as f64;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("fixtures/vllm_startup/cases.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The verbatim config.json of the case's model, if the fixtures hold it (`-Instruct` variants share the base
/// model's shape).
fn config(model_id: &str) -> Option<ModelShape> {
    let file = model_id.replace('/', "--");
    [file.clone(), file.trim_end_matches("-Instruct").to_owned()]
        .iter()
        .map(|name| root().join(format!("crates/plan/models/{name}.json")))
        .find(|path| path.is_file())
        .map(|path| ModelShape::from_config_file(&path).unwrap())
}

fn arg_u64(case: &Value, name: &str) -> Option<u64> {
    case["args"][name].as_u64()
}

/// vLLM's version as (major, minor), for what each release reserves.
fn version(case: &Value) -> (u64, u64) {
    let text = case["vllm_version"].as_str().unwrap_or("");
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    let number = |p: Option<&str>| p.and_then(|p| p.parse().ok()).unwrap_or(0);
    (number(parts.next()), number(parts.next()))
}

fn deployment(case: &Value, model: &ModelShape, gpu: &Gpu) -> Deployment {
    let mut deployment = Deployment::new(
        model,
        gpu,
        arg_u64(case, "tensor_parallel_size").unwrap_or(1) as u32,
    );
    if let Some(dtype) = case["args"]["kv_cache_dtype"]
        .as_str()
        .filter(|d| *d != "auto")
    {
        deployment.kv_cache_dtype = dtype.parse::<Dtype>().unwrap();
    }
    deployment
}

fn within(actual: f64, expected: f64, relative: f64) -> bool {
    (actual - expected).abs() <= expected.abs() * relative
}

/// Cases whose runs the planner models: no draft model or KV connector beside the weights.
fn plain(case: &Value) -> bool {
    case["args"].get("speculative_config").is_none()
        && case["args"].get("kv_transfer_config").is_none()
}

#[test]
fn kv_blocks_tokens_and_concurrency_follow_from_the_logged_budget() {
    let mut checked = Vec::new();
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let expect = &case["expect"];
        let (Some(model), Some(available)) = (
            config(case["model"].as_str().unwrap()),
            expect["available_kv_gib"].as_f64().filter(|gib| *gib > 0.0),
        ) else {
            continue;
        };
        if !plain(&case) {
            continue;
        }
        // The layout needs no GPU facts but the scheduler budget of sliding layers, which these models lack.
        let gpu = Gpu::by_name("h100").unwrap();
        let layout = KvLayout::of(&model, &deployment(&case, &model, &gpu), 2048);
        let kv = KvCapacity::from_budget((available * GIB) as u64, layout, 16).unwrap();
        // The log prints the budget to 0.01 GiB, so blocks agree to that rounding.
        let rounding = 0.006 / available;
        if let Some(blocks) = expect["num_gpu_blocks"].as_f64() {
            assert!(
                within(kv.num_blocks as f64, blocks, rounding),
                "{name}: {} blocks vs {blocks}",
                kv.num_blocks
            );
        }
        if let Some(tokens) = expect["kv_cache_tokens"].as_f64() {
            assert!(
                within(kv.tokens() as f64, tokens, rounding),
                "{name}: {} tokens vs {tokens}",
                kv.tokens()
            );
        }
        if let Some(pair) = expect["max_concurrency"].as_array() {
            let (x, len) = (pair[0].as_f64().unwrap(), pair[1].as_u64().unwrap());
            let concurrency = kv.max_concurrency(len);
            assert!(
                within(concurrency, x, rounding + 0.01),
                "{name}: {concurrency:.2}x vs {x}x"
            );
        }
        checked.push(name.to_owned());
    }
    eprintln!("checked from the logged budget: {checked:?}");
    assert!(checked.len() >= 6, "only {checked:?} could be checked");
}

#[test]
fn kv_tokens_predicted_from_the_config_within_5_percent() {
    let mut checked = Vec::new();
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let (Some(model), Some(tokens)) = (
            config(case["model"].as_str().unwrap()),
            case["expect"]["kv_cache_tokens"].as_f64(),
        ) else {
            continue;
        };
        let gpu_name = case["gpu"].as_str().unwrap_or("");
        let Ok(mut gpu) = Gpu::by_name(gpu_name.split(" (").next().unwrap()) else {
            continue;
        };
        if case["engine"] != "v1" || !plain(&case) {
            continue;
        }
        if let Some(total) = case["gpu_total_memory_gib"].as_f64() {
            gpu.memory_bytes = (total * GIB) as u64;
        }
        let cache = CacheConfig {
            gpu_memory_utilization: case["args"]["gpu_memory_utilization"]
                .as_f64()
                .unwrap_or(0.9),
            max_model_len: arg_u64(&case, "max_model_len"),
            max_num_seqs: arg_u64(&case, "max_num_seqs"),
            max_num_batched_tokens: arg_u64(&case, "max_num_batched_tokens"),
            enforce_eager: case["args"]["enforce_eager"].as_bool().unwrap_or(false),
            reserve_cuda_graphs: version(&case) >= (0, 21),
            ..CacheConfig::default()
        };
        let plan =
            MemoryPlan::compute(&model, &gpu, &deployment(&case, &model, &gpu), &cache).unwrap();
        let predicted = plan.kv.tokens() as f64;
        eprintln!(
            "{name}: predicted {predicted} tokens ({:.2} GiB: weights {:.2}, activations {:.2}, graphs {:.2}) vs {tokens}",
            plan.available_kv_bytes / GIB,
            plan.weight_bytes_per_rank / GIB,
            plan.activation_bytes / GIB,
            plan.cuda_graph_bytes / GIB,
        );
        assert!(
            within(predicted, tokens, 0.05),
            "{name}: predicted {predicted} tokens, vLLM logged {tokens}"
        );
        if let Some(weights) = case["expect"]["model_weights_gib"].as_f64() {
            assert!(
                within(plan.weight_bytes_per_rank / GIB, weights, 0.02),
                "{name}: weights"
            );
        }
        checked.push(name.to_owned());
    }
    assert!(checked.len() >= 3, "only {checked:?} could be checked");
}
