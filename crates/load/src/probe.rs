//! What the server says about itself before the load starts: `/v1/models` (which model to use, its context
//! length) and `/version`, kept verbatim for the run record, and how long the path to it takes.

use std::time::Duration;

use infer_doctor_core::{NetworkFacts, PathTiming};
use serde::Serialize;
use serde_json::Value;

use crate::http::HttpClient;
use crate::target::Target;

#[derive(Clone, Debug, Default, Serialize)]
pub struct TargetInfo {
    pub url: String,
    pub model_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Value>,
    /// Why `/v1/models` could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models_error: Option<String>,
    /// llama.cpp's `/props` and `/slots` (capacity its metrics lack); absent on other servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub props: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<Value>,
    /// `/health` on fresh connections, timed in phases (connect, TLS, first byte).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkFacts>,
}

/// Fresh connections timed per probe: enough for a median that one slow connect does not move.
const PATH_SAMPLES: u32 = 5;

/// The median of each phase over a few fresh connections to `/health`; `None` when none answered.
pub async fn time_path(client: &HttpClient, timeout: Duration) -> Option<NetworkFacts> {
    let path = client.target().path("/health");
    let mut samples = Vec::new();
    for _ in 0..PATH_SAMPLES {
        // A path that does not answer once will not answer faster the next four times: stop at the first.
        match client.time_path(&path, timeout).await {
            Ok(timing) => samples.push(timing),
            Err(_) => break,
        }
    }
    let median = |pick: &dyn Fn(&PathTiming) -> Option<f64>| {
        let mut values: Vec<f64> = samples.iter().filter_map(pick).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    };
    Some(NetworkFacts {
        url: client.target().display_url(),
        path,
        samples: samples.len() as u32,
        through: PathTiming {
            connect_ms: median(&|t| Some(t.connect_ms))?,
            tls_ms: median(&|t| t.tls_ms),
            first_byte_ms: median(&|t| Some(t.first_byte_ms))?,
        },
        direct_url: None,
        direct: None,
    })
}

async fn get_json(client: &HttpClient, api_path: &str, timeout: Duration) -> Result<Value, String> {
    let body = client.get(&client.target().path(api_path), timeout).await?;
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}

/// Reads `/v1/models` and `/version`; failures are recorded, not fatal.
pub async fn probe(client: &HttpClient, timeout: Duration) -> TargetInfo {
    let mut info = TargetInfo {
        url: client.target().display_url(),
        ..Default::default()
    };
    match get_json(client, "/v1/models", timeout).await {
        Ok(models) => {
            info.model_ids = models["data"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(|m| m["id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            info.models = Some(models);
        }
        Err(e) => info.models_error = Some(e),
    }
    info.version = get_json(client, "/version", timeout).await.ok();
    info.network = time_path(client, timeout).await;
    info.props = get_json(client, "/props", timeout).await.ok();
    if info.props.is_some() {
        info.slots = get_json(client, "/slots", timeout).await.ok();
    }
    // All of it goes into run.json as the server said it: scrubbed of the key first.
    let target = client.target();
    for value in [
        &mut info.models,
        &mut info.version,
        &mut info.props,
        &mut info.slots,
    ]
    .into_iter()
    .flatten()
    {
        scrub_strings(value, target);
    }
    info.model_ids = info
        .model_ids
        .iter()
        .map(|id| target.scrub(id).into_owned())
        .collect();
    info
}

fn scrub_strings(value: &mut Value, target: &Target) {
    match value {
        Value::String(s) => *s = target.scrub(s).into_owned(),
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_strings(v, target)),
        Value::Object(map) => map.values_mut().for_each(|v| scrub_strings(v, target)),
        _ => {}
    }
}
