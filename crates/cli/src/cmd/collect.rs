//! `infer-doctor collect`: on the GPU host, gathers what an on-call engineer gathers by hand (nvidia-smi, the
//! kernel and engine logs, the server's own view, a probe) in parallel, each under a deadline, into one bundle.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow};
use clap::Parser;
use infer_doctor_core::ServerThreads;
use infer_doctor_host::archive;
use infer_doctor_host::command::{self, CommandSpec, Ran, Status};
use infer_doctor_host::hostnames::HostPseudonyms;
use infer_doctor_host::kube::{POD_CAPTURE_PREFIX, POD_JSON, PodRef};
use infer_doctor_host::machine::HostInfo;
use infer_doctor_host::process::{self, FoundServer};
use infer_doctor_host::redact::{Redactions, Redactor};
use infer_doctor_host::system;
use infer_doctor_load::http::{ClientOptions, HttpClient};
use infer_doctor_load::probe::time_path;
use infer_doctor_load::{ApiKey, Target};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::args::{Cli, CollectArgs, Command};
use crate::cmd::diagnose::{Probed, probe};
use crate::{Failure, exit};

/// The version of `manifest.json`'s layout: changes only when a field changes meaning or goes away.
const MANIFEST_VERSION: u32 = 1;
/// What `--query-gpu` samples every second: the seed's `dmon -s pucvmet` (PCIe throughput aside, which
/// `--query-gpu` lacks) as fields the capture reader knows. An unknown field fails the whole query, so these are
/// names older drivers know too: `clocks_throttle_reasons` rather than its newer alias `clocks_event_reasons`.
const QUERY_GPU_FIELDS: &str = "timestamp,index,name,pci.bus_id,driver_version,pstate,utilization.gpu,\
utilization.memory,memory.total,memory.used,temperature.gpu,power.draw,power.limit,clocks.current.sm,\
clocks.current.memory,clocks.max.sm,clocks.max.memory,clocks_throttle_reasons.active,pcie.link.gen.current,\
pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max,ecc.errors.uncorrected.volatile.total,\
remapped_rows.pending,remapped_rows.failure,mig.mode.current";
/// The trace analysis `collect --trace` keeps, which `diagnose --bundle` reads as the evidence's trace.
pub const TRACE_FACTS: &str = "trace/facts.json";
/// The engine log lines asked of docker and journald: hours of a busy vLLM, a few MB.
const LOG_LINES: &str = "20000";
/// The server process's environment that says how the engine runs; the rest is the shell's.
const ENGINE_ENV_PREFIXES: [&str; 10] = [
    "VLLM_", "CUDA_", "NCCL_", "HF_", "PYTORCH_", "OMP_", "TORCH_", "SGLANG_", "LLAMA_", "NVIDIA_",
];

/// One gathered item as `manifest.json` records it.
#[derive(Debug, Serialize)]
struct Item {
    /// The file in the bundle, relative to its root, or what it would have been.
    file: String,
    /// The command line, file or URL it came from.
    source: String,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    duration_ms: u64,
    /// Bytes written (after redaction); 0 when missing.
    bytes: u64,
    /// How many secrets of each kind were replaced in it.
    #[serde(skip_serializing_if = "Redactions::is_empty")]
    redacted: Redactions,
    /// Why it is missing or incomplete.
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

#[derive(Serialize)]
struct Manifest {
    schema_version: u32,
    tool: infer_doctor_report::document::Tool,
    created_at: String,
    command_line: String,
    duration_ms: u64,
    items: Vec<Item>,
}

/// What every task writing into the bundle shares.
struct Bundle {
    dir: PathBuf,
    redactor: Redactor,
    timeout: Duration,
    progress: bool,
}

impl Bundle {
    /// Writes `bytes` (as text, redacted) to `file` and records it.
    fn write(&self, file: &str, source: String, started: Instant, bytes: &[u8]) -> Item {
        let mut item = self.missing(file, source, started, Status::Ok, None);
        let text = String::from_utf8_lossy(bytes);
        let (text, redacted) = if file.ends_with(".json") {
            self.redactor.redact_json(&text)
        } else {
            self.redactor.redact(&text)
        };
        let path = self.dir.join(file);
        match std::fs::write(&path, &text) {
            Ok(()) => {
                item.bytes = text.len() as u64;
                item.redacted = redacted;
            }
            Err(e) => {
                item.status = Status::Failed;
                item.why = Some(format!("writing {}: {e}", path.display()));
            }
        }
        item.duration_ms = started.elapsed().as_millis() as u64;
        item
    }

    /// The record of a command's run, its output written when there is any: a failed command's own words are
    /// evidence too (nvidia-smi saying it cannot reach the driver).
    fn ran(&self, file: &str, started: Instant, ran: Ran) -> Item {
        let mut item = if ran.stdout.is_empty() && ran.status != Status::Ok {
            self.missing(file, ran.command_line.clone(), started, ran.status, None)
        } else {
            self.write(file, ran.command_line.clone(), started, &ran.stdout)
        };
        if item.status == Status::Ok {
            item.status = ran.status;
        }
        item.exit_code = ran.exit_code;
        item.why = item.why.or(ran.why.map(|why| self.redactor.redact(&why).0));
        item
    }

    fn missing(
        &self,
        file: &str,
        source: String,
        started: Instant,
        status: Status,
        why: Option<String>,
    ) -> Item {
        Item {
            file: file.to_string(),
            source,
            status,
            exit_code: None,
            duration_ms: started.elapsed().as_millis() as u64,
            bytes: 0,
            redacted: Redactions::default(),
            why: why.map(|w| self.redactor.redact(&w).0),
        }
    }

    fn command(&self, file: &str, program: &str, args: &[&str]) -> Item {
        let started = Instant::now();
        self.ran(
            file,
            started,
            command::run(&CommandSpec::new(program, args, self.timeout)),
        )
    }

    /// An item of this machine left out because the pod's server runs elsewhere (collect beside the cluster,
    /// not on the pod's node): this machine's facts would speak for the wrong host, and a clean kernel log from
    /// it would pass "no OOM kill" falsely.
    fn not_the_pods_host(&self, file: &str, source: &str) -> Item {
        self.missing(
            file,
            source.to_string(),
            Instant::now(),
            Status::Skipped,
            Some(
                "not read: the pod's server process is not on this machine, so its kernel log and host facts \
                 would be another host's; run collect on the pod's node for them"
                    .to_string(),
            ),
        )
    }

    /// A progress line per item, on a terminal.
    fn said(&self, item: &Item) {
        if !self.progress {
            return;
        }
        let seconds = item.duration_ms as f64 / 1e3;
        match (&item.status, &item.why) {
            (Status::Ok, None) => eprintln!(
                "collect: {} ({:.1} s, {} bytes)",
                item.file, seconds, item.bytes
            ),
            (status, why) => eprintln!(
                "collect: {} {}: {}",
                item.file,
                status.words(),
                why.as_deref().unwrap_or("")
            ),
        }
    }
}

/// `nvidia-smi nvlink -e`, read at the start and again after the probe, so the diagnosis sees which counters grew.
const NVLINK_ERRORS: &[&str] = &["nvlink", "-e"];
const NVLINK_ERRORS_BEFORE: &str = "gpu/nvlink-errors-before.txt";
const NVLINK_ERRORS_AFTER: &str = "gpu/nvlink-errors-after.txt";
/// DCGM's quick diagnostic: level 1, as JSON.
const DCGM_DIAG: &[&str] = &["diag", "-r", "1", "-j"];
const DCGM_DIAG_FILE: &str = "gpu/dcgmi-diag.json";
/// Level 1 takes about a minute; a deadline shorter than that would time out a healthy run.
const DCGM_DIAG_LEAST_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn run(args: Box<CollectArgs>) -> Result<u8, Failure> {
    let started = Instant::now();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(args.redact_hosts));
    // A tarball is gathered in a scratch directory beside it, under the name it will hold, then packed.
    let archive = archive::is_archive(&out).then(|| out.clone());
    let scratch = match &archive {
        Some(file) => {
            let parent = file.parent().filter(|p| !p.as_os_str().is_empty());
            Some(
                tempfile::tempdir_in(parent.unwrap_or(Path::new(".")))
                    .with_context(|| format!("a scratch directory beside {}", file.display()))
                    .map_err(Failure::usage)?,
            )
        }
        None => None,
    };
    let dir = match (&scratch, &archive) {
        (Some(tmp), Some(file)) => tmp.path().join(archive::stem(file)),
        _ => out,
    };
    let pod = match args.log.as_deref().and_then(|log| log.strip_prefix("k8s:")) {
        Some(spec) => Some(PodRef::parse(spec).map_err(|e| Failure::usage(anyhow!(e)))?),
        None => None,
    };
    let k8s = pod.is_some().then_some("k8s");
    for sub in ["gpu", "logs", "server", "env"].into_iter().chain(k8s) {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating {}", path.display()))
            .map_err(Failure::usage)?;
    }
    let (url, url_password) = match &args.url {
        Some(url) => {
            let (bare, password) = without_credentials(url);
            (Some(bare), password)
        }
        None => (None, None),
    };
    let mut redactor = Redactor::default();
    redactor.environment(std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    }));
    if let Some(key) = &args.api_key {
        redactor.secret("api_key", key);
    }
    let direct_password = args
        .direct_url
        .as_deref()
        .and_then(|direct| without_credentials(direct).1);
    for password in url_password.iter().chain(&direct_password) {
        redactor.secret("url_password", password);
    }
    let server_process_found = match args.pid {
        Some(pid) => Ok(FoundServer {
            pid,
            how: "--pid".to_string(),
        }),
        None => process::find_server(&args.root, url.as_deref().and_then(local_port)),
    };
    let server_pid = server_process_found.as_ref().ok().map(|found| found.pid);
    // The server's threads are read before and after the probe: which of them the load keeps busy.
    let threads_before = server_process_found.as_ref().ok().map(|found| {
        (
            found.clone(),
            Instant::now(),
            process::thread_times(&args.root, found.pid),
        )
    });
    let server_env = server_pid.map(|pid| process::environment(&args.root, pid));
    if let Some(Ok(vars)) = &server_env {
        redactor.environment(vars.iter().cloned());
    }
    if args.redact_hosts {
        redactor.hide_hosts(host_names(
            &args,
            server_env.as_ref().and_then(|e| e.as_ref().ok()),
        ));
    }
    let bundle = Arc::new(Bundle {
        dir: dir.clone(),
        redactor,
        timeout: args.item_timeout,
        progress: !args.quiet && std::io::stderr().is_terminal(),
    });

    let mut tasks: JoinSet<Vec<Item>> = JoinSet::new();
    for (file, argv) in [
        ("gpu/nvidia-smi-q.xml", &["-q", "-x"][..]),
        ("gpu/topo.txt", &["topo", "-m"][..]),
        ("gpu/nvlink.txt", &["nvlink", "-s"][..]),
        (NVLINK_ERRORS_BEFORE, NVLINK_ERRORS),
    ] {
        let bundle = bundle.clone();
        tasks.spawn_blocking(move || vec![bundle.command(file, "nvidia-smi", argv)]);
    }
    {
        // AMD's counterpart; where it is absent it is recorded as not installed, as nvidia-smi is on AMD hosts.
        let bundle = bundle.clone();
        tasks.spawn_blocking(move || {
            vec![bundle.command(
                "gpu/rocm-smi.json",
                "rocm-smi",
                &["--showallinfo", "--json"],
            )]
        });
    }
    let since = server_pid.and_then(|pid| process::start_time(&args.root, pid));
    // With a pod named and its server not among this machine's processes, collect runs beside the cluster (a
    // laptop with kubectl), not on the pod's node: this machine's kernel and host facts would speak for the
    // wrong host, and "no OOM kill" from them would be a false pass.
    let this_host = pod.is_none() || server_pid.is_some();
    {
        let bundle = bundle.clone();
        tasks.spawn_blocking(move || {
            vec![if this_host {
                kernel_log(&bundle, since)
            } else {
                bundle.not_the_pods_host("logs/kernel.log", "the kernel log")
            }]
        });
    }
    match (&pod, args.log.clone()) {
        (Some(pod), _) => {
            for (file, argv) in pod_items(pod) {
                let bundle = bundle.clone();
                tasks.spawn_blocking(move || vec![pod_item(&bundle, &file, &argv)]);
            }
        }
        (None, Some(source)) => {
            let bundle = bundle.clone();
            tasks.spawn_blocking(move || vec![engine_log(&bundle, &source)]);
        }
        (None, None) => {}
    }
    match (server_process_found, server_env) {
        (Ok(found), Some(env)) => {
            let bundle = bundle.clone();
            let root = args.root.clone();
            tasks.spawn_blocking(move || server_process(&bundle, &root, &found, env));
        }
        (Err(why), _) => {
            let item = bundle.missing(
                "server/cmdline.txt",
                "the server process (--pid, the port of --url, or its name)".to_string(),
                Instant::now(),
                Status::Failed,
                Some(why),
            );
            tasks.spawn(async move { vec![item] });
        }
        (Ok(_), None) => unreachable!("a found server's environment is read"),
    }
    {
        let bundle = bundle.clone();
        let root = args.root.clone();
        let pid = server_pid;
        tasks.spawn_blocking(move || {
            vec![if this_host {
                host_json(&bundle, &root, pid)
            } else {
                bundle.not_the_pods_host("host.json", "/proc and /sys")
            }]
        });
    }
    if !args.trace.is_empty() {
        let bundle = bundle.clone();
        let traces = args.trace.clone();
        tasks.spawn_blocking(move || trace_items(&bundle, &traces));
    }
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let bundle = bundle.clone();
        let stop = stop_sampling.clone();
        let most = args.duration + args.item_timeout * 4;
        tokio::task::spawn_blocking(move || sample_gpus(&bundle, &stop, most))
    };

    // The host's items are said as they finish, while the server is read and probed.
    let host_side = async {
        let mut items = Vec::new();
        while let Some(done) = tasks.join_next().await {
            for item in done.map_err(|e| anyhow!("a collecting task failed: {e}"))? {
                bundle.said(&item);
                items.push(item);
            }
        }
        Ok::<_, Failure>(items)
    };
    let server_side = async {
        match &url {
            Some(url) => server(&bundle, &args, url).await,
            None => (Vec::new(), false),
        }
    };
    let (host_items, (mut items, interrupted)) = tokio::join!(host_side, server_side);
    items.extend(host_items?);
    stop_sampling.store(true, Ordering::Relaxed);
    // The NVLink error counters again: those that grew since the first reading grew under the probe's load.
    let nvlink_errors = {
        let bundle = bundle.clone();
        tokio::task::spawn_blocking(move || {
            bundle.command(NVLINK_ERRORS_AFTER, "nvidia-smi", NVLINK_ERRORS)
        })
    };
    if let Some(url) = &url {
        // After the probe: the counters' increase over it, for a reader without the probe's own scrapes.
        let metrics = get(&bundle, &args, url, "server/metrics-after.prom", "/metrics").await;
        bundle.said(&metrics);
        items.push(metrics);
        if let Some(before) = threads_before.filter(|_| !args.no_probe) {
            let threads = server_threads(&bundle, &args.root, before);
            bundle.said(&threads);
            items.push(threads);
        }
    }
    let nvlink_errors = nvlink_errors
        .await
        .map_err(|e| anyhow!("reading the NVLink error counters failed: {e}"))?;
    bundle.said(&nvlink_errors);
    items.push(nvlink_errors);
    let sampled = sampler
        .await
        .map_err(|e| anyhow!("the GPU sampler failed: {e}"))?;
    bundle.said(&sampled);
    items.push(sampled);
    // Only now, with the probe, its readings and the GPU sampling done: the diagnostic's own load would
    // distort them.
    let dcgm = {
        let bundle = bundle.clone();
        let wanted = args.dcgm;
        tokio::task::spawn_blocking(move || dcgm_diag(&bundle, wanted))
            .await
            .map_err(|e| anyhow!("running DCGM's diagnostic failed: {e}"))?
    };
    bundle.said(&dcgm);
    items.push(dcgm);
    items.sort_by(|a, b| a.file.cmp(&b.file));

    let manifest = Manifest {
        schema_version: MANIFEST_VERSION,
        tool: infer_doctor_report::RunDocument::tool(),
        created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        command_line: bundle
            .redactor
            .redact(&crate::rundir::redacted_command_line().join(" "))
            .0,
        duration_ms: started.elapsed().as_millis() as u64,
        items,
    };
    let path = dir.join("manifest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)?)
        .with_context(|| format!("writing {}", path.display()))
        .map_err(Failure::usage)?;
    let written = match (&archive, scratch) {
        (Some(file), Some(tmp)) => match archive::pack(&dir, file, args.item_timeout) {
            Ok(()) => file.clone(),
            Err(why) => {
                // What was gathered is kept as a directory rather than lost with the scratch space.
                let kept = tmp.keep().join(archive::stem(file));
                eprintln!(
                    "warning: packing {} failed ({why}); the bundle is the directory {}",
                    file.display(),
                    kept.display()
                );
                kept
            }
        },
        _ => dir.clone(),
    };
    if let Some(key) = bundle.redactor.host_key() {
        let path = host_key_path(&written);
        std::fs::write(&path, serde_json::to_string_pretty(&key)?)
            .with_context(|| format!("writing {}", path.display()))
            .map_err(Failure::usage)?;
        if !args.quiet {
            eprintln!(
                "collect: hosts are pseudonyms in the bundle; the key to them is {} (keep it, do not send it)",
                path.display()
            );
        }
    }
    if !args.quiet {
        eprintln!("collect: the bundle is in {}", written.display());
    }
    println!("{}", written.display());
    Ok(if interrupted {
        exit::INTERRUPTED
    } else {
        exit::OK
    })
}

/// `infer-doctor-bundle-<host>-<time>` here; a bundle whose hosts are hidden does not name its host.
fn default_out(redact_hosts: bool) -> PathBuf {
    let host = HostInfo::read()
        .hostname
        .filter(|_| !redact_hosts)
        .unwrap_or_else(|| "host".to_string());
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from(format!("infer-doctor-bundle-{host}-{unix}"))
}

/// The names `--redact-hosts` hides by value (addresses it finds by their shape): this machine's, the
/// servers' in the URLs, and the host and node names the server's environment gives.
fn host_names(args: &CollectArgs, server_env: Option<&Vec<(String, String)>>) -> HostPseudonyms {
    const NAME_VARIABLES: [&str; 3] = ["HOSTNAME", "NODE_NAME", "KUBERNETES_NODE_NAME"];
    let mut hosts = HostPseudonyms::default();
    if let Ok(name) = std::fs::read_to_string(args.root.join("proc/sys/kernel/hostname")) {
        hosts.name(&name);
    }
    for url in args.url.iter().chain(&args.direct_url) {
        if let Ok(target) = Target::parse(&without_credentials(url).0, None) {
            hosts.name(&target.host);
        }
    }
    let own_env = std::env::vars().collect::<Vec<_>>();
    for (name, value) in own_env.iter().chain(server_env.into_iter().flatten()) {
        if NAME_VARIABLES.contains(&name.as_str()) {
            hosts.name(value);
        }
    }
    hosts
}

/// The port of a URL that names this machine, where the server listening on it is found by the port.
fn local_port(url: &str) -> Option<u16> {
    let target = Target::parse(url, None).ok()?;
    let host = target.host.trim_matches(['[', ']']);
    let this_host = HostInfo::read().hostname;
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
        || this_host.is_some_and(|name| name.eq_ignore_ascii_case(host));
    local.then_some(target.port)
}

/// Beside the bundle, never in it: `bundle` → `bundle.hosts.json`, `b.tar.gz` → `b.hosts.json`.
fn host_key_path(bundle: &Path) -> PathBuf {
    bundle.with_file_name(format!("{}.hosts.json", archive::stem(bundle)))
}

/// The URL without `user:password@` (the client refuses credentials in a URL), and the password, to redact.
fn without_credentials(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let authority_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_string(), None);
    };
    let password = rest[..at].split_once(':').map(|(_, p)| p.to_string());
    (format!("{scheme}://{}", &rest[at + 1..]), password)
}

/// What the server says about itself, then the probe: the items of `--url`, and whether Ctrl-C cut the probe.
async fn server(bundle: &Arc<Bundle>, args: &CollectArgs, url: &str) -> (Vec<Item>, bool) {
    let mut items = Vec::new();
    for (file, api_path) in [
        ("server/metrics-before.prom", "/metrics"),
        ("server/models.json", "/v1/models"),
        ("server/version.json", "/version"),
    ] {
        let item = get(bundle, args, url, file, api_path).await;
        bundle.said(&item);
        items.push(item);
    }
    let timed = network(bundle, args, url).await;
    bundle.said(&timed);
    items.push(timed);
    if args.no_probe {
        return (items, false);
    }
    let (probed, interrupted) = run_probe(bundle, args, url).await;
    bundle.said(&probed);
    items.push(probed);
    (items, interrupted)
}

/// `/health` timed on fresh connections through --url and, with --direct-url, straight to one server.
async fn network(bundle: &Arc<Bundle>, args: &CollectArgs, url: &str) -> Item {
    const FILE: &str = "server/network.json";
    let started = Instant::now();
    let source = format!(
        "GET {}/health on fresh connections",
        url.trim_end_matches('/')
    );
    let timed = |url: String| async move {
        let client = client(args, &url)?;
        time_path(&client, bundle.timeout)
            .await
            .ok_or_else(|| format!("{url}: no answer to /health"))
    };
    let mut facts = match timed(url.to_string()).await {
        Ok(facts) => facts,
        Err(why) => return bundle.missing(FILE, source, started, Status::Failed, Some(why)),
    };
    if let Some(direct) = &args.direct_url {
        match timed(without_credentials(direct).0).await {
            Ok(direct) => {
                facts.direct_url = Some(direct.url);
                facts.direct = Some(direct.through);
            }
            Err(why) => return bundle.missing(FILE, source, started, Status::Failed, Some(why)),
        }
    }
    match serde_json::to_vec_pretty(&facts) {
        Ok(json) => bundle.write(FILE, source, started, &json),
        Err(e) => bundle.missing(FILE, source, started, Status::Failed, Some(e.to_string())),
    }
}

/// One GET of the server, its body written redacted.
async fn get(
    bundle: &Arc<Bundle>,
    args: &CollectArgs,
    url: &str,
    file: &str,
    api_path: &str,
) -> Item {
    let started = Instant::now();
    let source = format!("GET {}{api_path}", url.trim_end_matches('/'));
    let client = match client(args, url) {
        Ok(client) => client,
        Err(why) => return bundle.missing(file, source, started, Status::Failed, Some(why)),
    };
    match client
        .get(&client.target().path(api_path), bundle.timeout)
        .await
    {
        Ok(body) => bundle.write(file, source, started, &body),
        Err(why) => {
            let status = if why.starts_with("no answer within") {
                Status::TimedOut
            } else {
                Status::Failed
            };
            bundle.missing(file, source, started, status, Some(why))
        }
    }
}

fn client(args: &CollectArgs, url: &str) -> Result<HttpClient, String> {
    let key = match &args.api_key {
        Some(key) => ApiKey::new(key.clone()).map_err(|e| e.to_string())?,
        None => None,
    };
    let target = Target::parse(url, key).map_err(|e| e.to_string())?;
    Ok(HttpClient::new(
        Arc::new(target),
        ClientOptions {
            http2: false,
            pool_size: 1,
            connect_timeout: Duration::from_secs(5),
        },
    ))
}

/// `diagnose`'s own probe (one user, then a crowd) into the bundle's `single/` and `loaded/`, within
/// `--duration`; its files are swept for the known secrets afterwards, since the load engine writes them itself
/// (the command line it records holds the URL as typed, password and all).
async fn run_probe(bundle: &Arc<Bundle>, args: &CollectArgs, url: &str) -> (Item, bool) {
    let started = Instant::now();
    let source = format!(
        "probe of {url} (single-user, then loaded) within {:?}",
        args.duration
    );
    let file = "single, loaded";
    let mut argv: Vec<String> = ["infer-doctor", "diagnose", "--quiet", "--url", url]
        .map(String::from)
        .to_vec();
    argv.extend([
        "--budget".into(),
        format!("{}ms", args.duration.as_millis()),
    ]);
    for (flag, value) in [
        ("--concurrency", args.concurrency.map(|v| v.to_string())),
        ("--input-tokens", args.input_tokens.map(|v| v.to_string())),
        ("--output-tokens", args.output_tokens.map(|v| v.to_string())),
        ("--model", args.model.clone()),
        ("--api-key", args.api_key.clone()),
    ] {
        if let Some(value) = value {
            argv.extend([flag.to_string(), value]);
        }
    }
    let diagnose = match Cli::try_parse_from(argv).map(|cli| cli.command) {
        Ok(Command::Diagnose(diagnose)) => diagnose,
        Ok(_) => unreachable!("a diagnose command line parses as diagnose"),
        Err(e) => {
            let why = format!("the probe's settings: {e}");
            return (
                bundle.missing(file, source, started, Status::Failed, Some(why)),
                false,
            );
        }
    };
    if bundle.progress {
        eprintln!(
            "collect: probing {url} (up to {:.0} s)",
            args.duration.as_secs_f64()
        );
    }
    let outcome = probe(url, &diagnose, diagnose.concurrency, &bundle.dir).await;
    let mut item = bundle.missing(file, source, started, Status::Ok, None);
    let interrupted = matches!(outcome, Ok(Probed::Interrupted));
    match outcome {
        Ok(Probed::Done) => {}
        Ok(Probed::Interrupted) => {
            item.why = Some("interrupted (Ctrl-C): what was measured is kept".to_string())
        }
        Err(failure) => {
            item.status = Status::Failed;
            item.why = Some(bundle.redactor.redact(&format!("{:#}", failure.error)).0);
        }
    }
    for part in ["single", "loaded"] {
        let (bytes, redacted) = sweep(&bundle.redactor, &bundle.dir.join(part));
        item.bytes += bytes;
        item.redacted.add(redacted);
    }
    (item, interrupted)
}

/// Redacts every file under `dir` in place; returns their size after, and what was replaced.
fn sweep(redactor: &Redactor, dir: &Path) -> (u64, Redactions) {
    let mut bytes = 0;
    let mut total = Redactions::default();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            let (b, r) = sweep(redactor, &path);
            bytes += b;
            total.add(r);
            continue;
        }
        let Ok(raw) = std::fs::read(&path) else {
            continue;
        };
        let (text, redacted) = redactor.redact_known(&String::from_utf8_lossy(&raw));
        if !redacted.is_empty() && std::fs::write(&path, &text).is_err() {
            // A file that cannot be rewritten must not stay with its secret in it.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        bytes += text.len() as u64;
        total.add(redacted);
    }
    (bytes, total)
}

/// `nvidia-smi --query-gpu` every second until told to stop (at least once, at most until `most` has passed),
/// as one CSV with one header. A sample that fails ends the sampling, and says why.
fn sample_gpus(bundle: &Bundle, stop: &AtomicBool, most: Duration) -> Item {
    const EVERY: Duration = Duration::from_secs(1);
    let file = "gpu/query-gpu.csv";
    let started = Instant::now();
    let query = format!("--query-gpu={QUERY_GPU_FIELDS}");
    let spec = CommandSpec::new("nvidia-smi", &[&query, "--format=csv"], bundle.timeout);
    let mut csv = Vec::new();
    let mut samples = 0u32;
    let ended = loop {
        let tick = Instant::now();
        let ran = command::run(&spec);
        if ran.status != Status::Ok {
            break Some(ran);
        }
        // Every sample repeats the header; the file keeps the first.
        let rows = if samples == 0 {
            &ran.stdout[..]
        } else {
            let header_end = ran.stdout.iter().position(|b| *b == b'\n');
            &ran.stdout[header_end.map_or(ran.stdout.len(), |n| n + 1)..]
        };
        csv.extend_from_slice(rows);
        samples += 1;
        while tick.elapsed() < EVERY && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if stop.load(Ordering::Relaxed) || started.elapsed() >= most {
            break None;
        }
    };
    let source = spec.command_line() + " (every second)";
    match ended {
        Some(ran) if samples == 0 => bundle.ran(file, started, ran),
        ended => {
            let mut item = bundle.write(file, source, started, &csv);
            if let Some(ran) = ended {
                // The samples taken are kept, and how the sampling ended too: a driver that wedged during the
                // probe is a timed-out item, which the diagnosis reads as an unresponsive GPU.
                item.status = ran.status;
                item.why = Some(format!(
                    "{samples} samples, then: {}",
                    ran.why.unwrap_or_default()
                ));
            }
            item
        }
    }
}

/// `dcgmi diag -r 1 -j` when `--dcgm` asks for it, else a record of why it did not run. dcgmi exits non-zero
/// when a test fails: its JSON is then the evidence, and kept with the exit status.
fn dcgm_diag(bundle: &Bundle, wanted: bool) -> Item {
    let started = Instant::now();
    let spec = CommandSpec::new("dcgmi", DCGM_DIAG, dcgm_diag_deadline(bundle.timeout));
    if !wanted {
        let why = "not run: only with --dcgm, since it loads the GPUs".to_string();
        return bundle.missing(
            DCGM_DIAG_FILE,
            spec.command_line(),
            started,
            Status::Skipped,
            Some(why),
        );
    }
    if bundle.progress {
        eprintln!(
            "collect: running `{}` (up to {:.0} s)",
            spec.command_line(),
            spec.timeout.as_secs_f64()
        );
    }
    bundle.ran(DCGM_DIAG_FILE, started, command::run(&spec))
}

/// The per-item deadline, but never less than a healthy level-1 run needs.
fn dcgm_diag_deadline(item_timeout: Duration) -> Duration {
    item_timeout.max(DCGM_DIAG_LEAST_TIMEOUT)
}

/// The kernel's log since the server started (else since boot): journald's, else the ring buffer's.
fn kernel_log(bundle: &Bundle, since: Option<u64>) -> Item {
    let file = "logs/kernel.log";
    let started = Instant::now();
    let since = since.map_or("-b".to_string(), |unix| format!("--since=@{unix}"));
    let journal = CommandSpec::new(
        "journalctl",
        &["-k", &since, "--no-pager", "-o", "short-iso"],
        bundle.timeout,
    );
    let ran = command::run(&journal);
    if ran.status == Status::Ok {
        return bundle.ran(file, started, ran);
    }
    let first = format!("{}: {}", ran.command_line, ran.why.unwrap_or_default());
    let mut item = bundle.ran(
        file,
        started,
        command::run(&CommandSpec::new("dmesg", &["-T"], bundle.timeout)),
    );
    item.why = Some(match item.why {
        Some(why) => format!("{first}; and {why}"),
        None => format!("{first}; read dmesg instead"),
    });
    item
}

/// The engine's log from where `--log` says: a file, `docker:NAME` or `journal:UNIT` (`k8s:` is [`pod_items`]).
fn engine_log(bundle: &Bundle, source: &str) -> Item {
    let started = Instant::now();
    if let Some(name) = source.strip_prefix("docker:") {
        let file = format!("logs/docker-{}.log", file_safe(name));
        let mut ran = command::run(&CommandSpec::new(
            "docker",
            &["logs", "--tail", LOG_LINES, name],
            bundle.timeout,
        ));
        // docker replays the container's stderr on its own stderr: an engine logs there.
        ran.stdout.extend_from_slice(ran.stderr.as_bytes());
        return bundle.ran(&file, started, ran);
    }
    if let Some(unit) = source.strip_prefix("journal:") {
        let file = format!("logs/journal-{}.log", file_safe(unit));
        return bundle.command(
            &file,
            "journalctl",
            &["-u", unit, "-n", LOG_LINES, "--no-pager", "-o", "short-iso"],
        );
    }
    let path = Path::new(source);
    // Its own name, unless that is the kernel log's name in the bundle.
    let name = path
        .file_name()
        .map(|n| file_safe(&n.to_string_lossy()))
        .filter(|n| n != "kernel.log")
        .unwrap_or_else(|| "engine.log".to_string());
    let file = format!("logs/{name}");
    match std::fs::File::open(path) {
        Ok(f) => {
            let (tail, dropped) = command::read_tail(f, command::DEFAULT_MAX_STDOUT);
            let mut item = bundle.write(&file, source.to_string(), started, &tail);
            if dropped > 0 {
                item.why = Some(format!("its first {dropped} bytes were left out"));
            }
            item
        }
        Err(e) => {
            let status = status_of(&e);
            bundle.missing(
                &file,
                source.to_string(),
                started,
                status,
                Some(e.to_string()),
            )
        }
    }
}

/// The profiler traces analysed on the host: the evidence diagnose judges (`trace/facts.json`) and the tables
/// for a reader (`trace/analysis.md`), both redacted as every item is.
fn trace_items(bundle: &Bundle, traces: &[PathBuf]) -> Vec<Item> {
    let started = Instant::now();
    let source = traces
        .iter()
        .map(|t| t.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let files = [TRACE_FACTS, "trace/analysis.md"];
    let report = std::fs::create_dir_all(bundle.dir.join("trace"))
        .map_err(|e| e.to_string())
        .and_then(|()| {
            infer_doctor_trace::analyse_inputs(traces, &infer_doctor_trace::Options::default())
                .map_err(|e| format!("{e:#}"))
        });
    match report {
        Ok(report) => {
            let facts = infer_doctor_core::TraceFacts::from(&report);
            let facts = serde_json::to_vec_pretty(&facts).unwrap_or_default();
            let tables = infer_doctor_report::trace::text(
                &report,
                infer_doctor_report::trace::Written::Markdown,
            );
            vec![
                bundle.write(files[0], source.clone(), started, &facts),
                bundle.write(files[1], source, started, tables.as_bytes()),
            ]
        }
        Err(why) => files
            .iter()
            .map(|file| {
                bundle.missing(
                    file,
                    source.clone(),
                    started,
                    Status::Failed,
                    Some(why.clone()),
                )
            })
            .collect(),
    }
}

/// What kubectl is asked about the server's pod, each item under its own deadline: the pod (its limits and
/// restarts), its events, the engine's log now and before its last restart, and nvidia-smi inside the container,
/// which sees the GPUs a host without nvidia-smi (a laptop with kubectl) cannot.
fn pod_items(pod: &PodRef) -> Vec<(String, Vec<String>)> {
    let name = file_safe(&pod.pod);
    vec![
        (POD_JSON.to_string(), pod.get_pod()),
        ("k8s/events.json".to_string(), pod.events()),
        (format!("logs/k8s-{name}.log"), pod.logs(LOG_LINES, false)),
        (
            format!("logs/k8s-{name}-previous.log"),
            pod.logs(LOG_LINES, true),
        ),
        (
            format!("gpu/{POD_CAPTURE_PREFIX}nvidia-smi-q.xml"),
            pod.exec(&["nvidia-smi", "-q", "-x"]),
        ),
    ]
}

fn pod_item(bundle: &Bundle, file: &str, argv: &[String]) -> Item {
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut item = bundle.command(file, "kubectl", &argv);
    if argv.contains(&"--previous") && item.status == Status::Failed {
        item.why = item
            .why
            .map(|why| format!("{why} (normal when the container has not restarted)"));
    }
    item
}

/// A name from the command line as one file name in the bundle.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The server's command line (its engine arguments) and its engine environment; for vLLM, also what
/// `vllm collect-env` says, run by the server's own Python so it reports the versions the server runs.
fn server_process(
    bundle: &Bundle,
    root: &Path,
    found: &FoundServer,
    env: std::io::Result<Vec<(String, String)>>,
) -> Vec<Item> {
    let started = Instant::now();
    let source = format!(
        "{} ({})",
        root.join(format!("proc/{}/cmdline", found.pid)).display(),
        found.how
    );
    let mut items = Vec::new();
    let args = match process::command_line(root, found.pid) {
        Ok(words) => {
            if let Some(python) = process::vllm_python(root, &words) {
                items.push(bundle.command(
                    "env/collect_env.txt",
                    &python,
                    &["-m", "vllm.collect_env"],
                ));
            }
            bundle.write(
                "server/cmdline.txt",
                source,
                started,
                (words.join(" ") + "\n").as_bytes(),
            )
        }
        Err(e) => bundle.missing(
            "server/cmdline.txt",
            source,
            started,
            status_of(&e),
            Some(e.to_string()),
        ),
    };
    let source = root
        .join(format!("proc/{}/environ", found.pid))
        .display()
        .to_string();
    let env = match env {
        Ok(vars) => {
            let text: String = vars
                .iter()
                .filter(|(name, _)| ENGINE_ENV_PREFIXES.iter().any(|p| name.starts_with(p)))
                .map(|(name, value)| format!("{name}={value}\n"))
                .collect();
            bundle.write("env/server.env", source, started, text.as_bytes())
        }
        Err(e) => bundle.missing(
            "env/server.env",
            source,
            started,
            status_of(&e),
            Some(e.to_string()),
        ),
    };
    items.extend([args, env]);
    items
}

/// The server's threads' CPU over the probe, from a reading before it and one now.
fn server_threads(
    bundle: &Bundle,
    root: &Path,
    (found, started, before): (FoundServer, Instant, Vec<(u32, String, u64)>),
) -> Item {
    let file = "server/threads.json";
    let source = format!(
        "{} ({}), before and after the probe",
        root.join(format!("proc/{}/task/*/stat", found.pid))
            .display(),
        found.how
    );
    let after = process::thread_times(root, found.pid);
    if after.is_empty() {
        let why = format!("process {} has no readable threads now", found.pid);
        return bundle.missing(file, source, started, Status::Failed, Some(why));
    }
    let window_s = started.elapsed().as_secs_f64();
    let threads = ServerThreads {
        pid: found.pid,
        found_by: found.how,
        window_s,
        threads: process::thread_cpu(&before, &after, window_s),
    };
    match serde_json::to_vec_pretty(&threads) {
        Ok(json) => bundle.write(file, source, started, &json),
        Err(e) => bundle.missing(file, source, started, Status::Failed, Some(e.to_string())),
    }
}

/// A file that could not be read: unreadable to this user, or otherwise missing.
fn status_of(e: &std::io::Error) -> Status {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        Status::PermissionDenied
    } else {
        Status::Failed
    }
}

/// The host's own facts from /proc and /sys under `root`, for the host rules: its GPUs found in sysfs (so a hung
/// nvidia-smi does not leave them unnamed) and, with --pid, where the server may run.
fn host_json(bundle: &Bundle, root: &Path, server_pid: Option<u32>) -> Item {
    let started = Instant::now();
    let gpus = system::nvidia_gpu_bus_ids(root);
    let kubernetes = std::env::var("KUBERNETES_SERVICE_HOST").ok();
    let facts = system::read_host(
        root,
        &system::HostQuery {
            gpu_bus_ids: &gpus,
            kubernetes_service_host: kubernetes.as_deref(),
            server_pid,
        },
    );
    let text = serde_json::to_string_pretty(&facts).unwrap_or_default();
    bundle.write(
        "host.json",
        format!("{}proc, {}sys", root.display(), root.display()),
        started,
        text.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dcgm_diag_gets_the_item_deadline_but_at_least_two_minutes() {
        assert_eq!(
            dcgm_diag_deadline(Duration::from_secs(30)),
            Duration::from_secs(120)
        );
        assert_eq!(
            dcgm_diag_deadline(Duration::from_secs(300)),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn credentials_leave_the_url_and_the_password_is_kept_to_redact() {
        assert_eq!(
            without_credentials("http://admin:pa/ss@word@10.0.0.1:8000/v1?x=a@b"),
            (
                "http://10.0.0.1:8000/v1?x=a@b".to_string(),
                Some("pa/ss@word".to_string())
            )
        );
        assert_eq!(
            without_credentials("http://127.0.0.1:8000"),
            ("http://127.0.0.1:8000".to_string(), None)
        );
    }
}
