//! Reads the server's pod as `kubectl get pod -o json` prints it (the Kubernetes v1 Pod API), since a container
//! the kubelet restarted, for memory or a crash, leaves no trace in the server's own metrics or its new log.

use infer_doctor_core::{PodContainer, PodFacts, Termination};
use serde_json::Value;

/// Where a bundle holds the pod's description.
pub const POD_JSON: &str = "k8s/pod.json";
/// What names a GPU capture taken inside the pod (`gpu/k8s-nvidia-smi-q.xml`): read when the host's own are not.
pub const POD_CAPTURE_PREFIX: &str = "k8s-";

/// The pod `collect --log k8s:[NAMESPACE/]POD[/CONTAINER]` names, and the kubectl commands that ask about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    /// `None`: kubectl's current namespace (its context's, else `default`).
    pub namespace: Option<String>,
    pub pod: String,
    /// `None`: kubectl's choice (the pod's only container, or its default-container annotation).
    pub container: Option<String>,
}

impl PodRef {
    /// `POD`, `NAMESPACE/POD`, `NAMESPACE/POD/CONTAINER`, or `/POD/CONTAINER` for a container in the current
    /// namespace.
    pub fn parse(spec: &str) -> Result<PodRef, String> {
        let parts: Vec<&str> = spec.split('/').collect();
        let (namespace, pod, container) = match parts.as_slice() {
            [pod] => (None, *pod, None),
            [namespace, pod] => (Some(*namespace), *pod, None),
            [namespace, pod, container] => (Some(*namespace), *pod, Some(*container)),
            _ => return Err(format!("k8s:{spec}: give k8s:[NAMESPACE/]POD[/CONTAINER]")),
        };
        if pod.is_empty() || container.is_some_and(str::is_empty) {
            return Err(format!("k8s:{spec}: give k8s:[NAMESPACE/]POD[/CONTAINER]"));
        }
        Ok(PodRef {
            namespace: namespace.filter(|n| !n.is_empty()).map(str::to_string),
            pod: pod.to_string(),
            container: container.map(str::to_string),
        })
    }

    /// `kubectl get pod POD -o json`: its spec and status.
    pub fn get_pod(&self) -> Vec<String> {
        self.kubectl(&["get", "pod", &self.pod, "-o", "json"], false)
    }

    /// The pod's events (scheduling, pulls, kills, back-offs), which the kubelet keeps for about an hour.
    pub fn events(&self) -> Vec<String> {
        let selector = format!("involvedObject.name={}", self.pod);
        self.kubectl(
            &["get", "events", "--field-selector", &selector, "-o", "json"],
            false,
        )
    }

    /// The container's log, its last `lines`; with `previous`, the run before the last restart.
    pub fn logs(&self, lines: &str, previous: bool) -> Vec<String> {
        let mut args = vec!["logs", self.pod.as_str(), "--tail", lines];
        if previous {
            args.push("--previous");
        }
        self.kubectl(&args, true)
    }

    /// `command` run inside the container.
    pub fn exec(&self, command: &[&str]) -> Vec<String> {
        let mut args = self.kubectl(&["exec", &self.pod], true);
        args.push("--".to_string());
        args.extend(command.iter().map(|a| a.to_string()));
        args
    }

    /// kubectl's arguments: `args`, then the namespace and, `in_container`, the container when they were named.
    fn kubectl(&self, args: &[&str], in_container: bool) -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if let Some(namespace) = &self.namespace {
            all.extend(["-n".to_string(), namespace.clone()]);
        }
        if let (true, Some(container)) = (in_container, &self.container) {
            all.extend(["-c".to_string(), container.clone()]);
        }
        all
    }
}

/// Why a pod description could not be read; every field error names the field by its JSON path.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KubeReadError {
    #[error("not JSON: line {line}, column {column}: {message}")]
    NotJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("not a Pod (kind {0:?}); give `kubectl get pod POD -o json`")]
    NotPod(String),
    #[error("{field}: {problem}")]
    Field {
        field: String,
        problem: &'static str,
    },
}

fn field_error(field: impl Into<String>, problem: &'static str) -> KubeReadError {
    KubeReadError::Field {
        field: field.into(),
        problem,
    }
}

/// The pod `text` describes; `source` is the file it came from. A field of the wrong type is an error naming
/// it, never a pod read as healthy; fields the API leaves out (a pod not yet scheduled has no status) are `None`.
pub fn read_pod(text: &str, source: &str) -> Result<PodFacts, KubeReadError> {
    let pod: Value = serde_json::from_str(text).map_err(|e| KubeReadError::NotJson {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    if !pod.is_object() {
        return Err(KubeReadError::NotPod("not an object".to_string()));
    }
    match optional_str(&pod, "kind", "kind")? {
        Some("Pod") | None => {}
        Some(other) => return Err(KubeReadError::NotPod(other.to_string())),
    }
    let name = optional_str(&pod["metadata"], "name", "metadata.name")?
        .ok_or_else(|| field_error("metadata.name", "missing"))?;
    let specs = pod["spec"]["containers"]
        .as_array()
        .ok_or_else(|| field_error("spec.containers", "missing or not a list"))?;
    let statuses = match &pod["status"]["containerStatuses"] {
        Value::Null => &Vec::new(),
        Value::Array(list) => list,
        _ => return Err(field_error("status.containerStatuses", "not a list")),
    };
    let mut containers = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let at = format!("spec.containers[{i}]");
        let name = optional_str(spec, "name", &at)?
            .ok_or_else(|| field_error(format!("{at}.name"), "missing"))?;
        let mut container = read_spec(spec, name, &at)?;
        let status = statuses
            .iter()
            .enumerate()
            .find(|(_, s)| s["name"].as_str() == Some(name));
        if let Some((j, status)) = status {
            read_status(
                status,
                &format!("status.containerStatuses[{j}]"),
                &mut container,
            )?;
        }
        containers.push(container);
    }
    Ok(PodFacts {
        source: source.to_string(),
        name: name.to_string(),
        namespace: optional_str(&pod["metadata"], "namespace", "metadata.namespace")?
            .map(str::to_string),
        node: optional_str(&pod["spec"], "nodeName", "spec.nodeName")?.map(str::to_string),
        phase: optional_str(&pod["status"], "phase", "status.phase")?.map(str::to_string),
        containers,
    })
}

fn read_spec(spec: &Value, name: &str, at: &str) -> Result<PodContainer, KubeReadError> {
    let limits = &spec["resources"]["limits"];
    let memory_limit = optional_str(limits, "memory", &format!("{at}.resources.limits"))?;
    let memory_limit_bytes = memory_limit
        .map(|q| {
            quantity_bytes(q).ok_or_else(|| {
                field_error(format!("{at}.resources.limits.memory"), "not a quantity")
            })
        })
        .transpose()?;
    // GPUs are extended resources named by vendor: nvidia.com/gpu, amd.com/gpu.
    let gpu_limit = limits
        .as_object()
        .and_then(|l| l.iter().find(|(k, _)| k.ends_with("/gpu")))
        .map(|(_, v)| v.as_str().map_or_else(|| v.to_string(), str::to_string));
    Ok(PodContainer {
        name: name.to_string(),
        image: optional_str(spec, "image", at)?.map(str::to_string),
        command: strings(spec, "command", at)?,
        args: strings(spec, "args", at)?,
        memory_limit: memory_limit.map(str::to_string),
        memory_limit_bytes,
        memory_request: optional_str(
            &spec["resources"]["requests"],
            "memory",
            &format!("{at}.resources.requests"),
        )?
        .map(str::to_string),
        gpu_limit,
        ..Default::default()
    })
}

fn read_status(
    status: &Value,
    at: &str,
    container: &mut PodContainer,
) -> Result<(), KubeReadError> {
    container.restart_count = match &status["restartCount"] {
        Value::Null => None,
        count => Some(
            count
                .as_u64()
                .ok_or_else(|| field_error(format!("{at}.restartCount"), "not a count"))?,
        ),
    };
    // The API sets one of running, waiting or terminated.
    let state = &status["state"];
    container.state = ["running", "waiting", "terminated"]
        .into_iter()
        .find(|s| state[*s].is_object())
        .map(|s| match state[s]["reason"].as_str() {
            Some(reason) => format!("{s}: {reason}"),
            None => s.to_string(),
        });
    // How the latest run ended: the current one when it has ended (a pod that does not restart, or caught before
    // the kubelet restarts it), else the one before the last restart.
    let (terminated, at) = if state["terminated"].is_object() {
        (&state["terminated"], format!("{at}.state.terminated"))
    } else {
        (
            &status["lastState"]["terminated"],
            format!("{at}.lastState.terminated"),
        )
    };
    if terminated.is_object() {
        container.last_termination = Some(Termination {
            reason: optional_str(terminated, "reason", &at)?.map(str::to_string),
            exit_code: match &terminated["exitCode"] {
                Value::Null => None,
                code => Some(
                    code.as_i64()
                        .ok_or_else(|| field_error(format!("{at}.exitCode"), "not an integer"))?,
                ),
            },
            finished_at: optional_str(terminated, "finishedAt", &at)?.map(str::to_string),
        });
    }
    Ok(())
}

/// `parent[key]` as text: `None` when absent, an error naming `at.key` when it is something else.
fn optional_str<'a>(
    parent: &'a Value,
    key: &str,
    at: &str,
) -> Result<Option<&'a str>, KubeReadError> {
    match &parent[key] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(field_error(joined(at, key), "not a string")),
    }
}

/// `parent[key]` as a list of strings (a command or its arguments); empty when absent.
fn strings(parent: &Value, key: &str, at: &str) -> Result<Vec<String>, KubeReadError> {
    match &parent[key] {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| field_error(joined(at, key), "not a list of strings")),
        _ => Err(field_error(joined(at, key), "not a list of strings")),
    }
}

fn joined(at: &str, key: &str) -> String {
    if at == key {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

/// A Kubernetes quantity of bytes (`64Gi`, `500M`, `1e9`, `68719476736`): binary suffixes are powers of 1024,
/// decimal ones of 1000, as the API defines them.
pub fn quantity_bytes(quantity: &str) -> Option<u64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        // Legal for any quantity, if odd for memory: `100m` is a tenth of a byte.
        ("m", 1e-3),
    ];
    let quantity = quantity.trim();
    let (number, scale) = SUFFIXES
        .iter()
        .find_map(|(suffix, scale)| quantity.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((quantity, 1.0));
    let value: f64 = number.parse().ok()?;
    let bytes = value * scale;
    (bytes.is_finite() && bytes >= 0.0).then(|| bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../../fixtures/k8s/vllm-pod-oomkilled.json");

    #[test]
    fn an_oom_killed_vllm_pod_is_read() {
        let pod = read_pod(FIXTURE, "k8s/pod.json").unwrap();
        assert_eq!(pod.namespace.as_deref(), Some("inference"));
        assert!(pod.node.is_some());
        let vllm = &pod.containers[0];
        assert_eq!(vllm.memory_limit.as_deref(), Some("32Gi"));
        assert_eq!(vllm.memory_limit_bytes, Some(32 << 30));
        assert_eq!(vllm.gpu_limit.as_deref(), Some("1"));
        assert!(vllm.args.iter().any(|a| a == "--swap-space"), "{vllm:?}");
        assert_eq!(vllm.restart_count, Some(3));
        assert_eq!(vllm.state.as_deref(), Some("waiting: CrashLoopBackOff"));
        let ended = vllm.last_termination.as_ref().unwrap();
        assert_eq!(
            (ended.reason.as_deref(), ended.exit_code),
            (Some("OOMKilled"), Some(137))
        );
    }

    #[test]
    fn a_container_that_ended_and_was_not_restarted_says_how() {
        let mut pod: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        let status = &mut pod["status"]["containerStatuses"][0];
        status["restartCount"] = 0.into();
        status["lastState"] = serde_json::json!({});
        status["state"] =
            serde_json::json!({"terminated": {"reason": "OOMKilled", "exitCode": 137}});
        let pod = read_pod(&pod.to_string(), "p").unwrap();
        let vllm = &pod.containers[0];
        assert_eq!(vllm.state.as_deref(), Some("terminated: OOMKilled"));
        let ended = vllm.last_termination.as_ref().unwrap();
        assert_eq!(
            (ended.reason.as_deref(), ended.exit_code),
            (Some("OOMKilled"), Some(137))
        );
        assert_eq!(quantity_bytes("100m"), Some(0));
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let broken = FIXTURE.replacen("\"restartCount\": 3", "\"restartCount\": \"three\"", 1);
        assert_eq!(
            read_pod(&broken, "p").unwrap_err().to_string(),
            "status.containerStatuses[0].restartCount: not a count"
        );
        assert!(matches!(
            read_pod("{\"kind\": \"Pod\"", "p"),
            Err(KubeReadError::NotJson { line: 1, .. })
        ));
        assert_eq!(
            read_pod("{\"kind\": \"Pod\", \"metadata\": {\"name\": \"x\"}}", "p")
                .unwrap_err()
                .to_string(),
            "spec.containers: missing or not a list"
        );
        assert!(matches!(
            read_pod("{\"kind\": \"Node\"}", "p"),
            Err(KubeReadError::NotPod(_))
        ));
    }

    #[test]
    fn a_pod_is_named_with_or_without_its_namespace_and_container() {
        let pod = PodRef::parse("inference/vllm-0/engine").unwrap();
        assert_eq!(
            pod.logs("100", true).join(" "),
            "logs vllm-0 --tail 100 --previous -n inference -c engine"
        );
        assert_eq!(
            pod.exec(&["nvidia-smi", "-q"]).join(" "),
            "exec vllm-0 -n inference -c engine -- nvidia-smi -q"
        );
        let bare = PodRef::parse("vllm-0").unwrap();
        assert_eq!(bare.get_pod().join(" "), "get pod vllm-0 -o json");
        assert_eq!(
            bare.events().join(" "),
            "get events --field-selector involvedObject.name=vllm-0 -o json"
        );
        let current = PodRef::parse("/vllm-0/engine").unwrap();
        assert_eq!(
            (current.namespace, current.container.as_deref()),
            (None, Some("engine"))
        );
        for bad in ["", "ns/", "a/b/c/d", "ns/pod/"] {
            assert!(PodRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantities_follow_the_api() {
        for (text, bytes) in [
            ("64Gi", Some(64u64 << 30)),
            ("500M", Some(500_000_000)),
            ("1e9", Some(1_000_000_000)),
            ("128974848", Some(128_974_848)),
            ("lots", None),
        ] {
            assert_eq!(quantity_bytes(text), bytes, "{text}");
        }
    }
}
