//! The command line, as clap definitions. Flag names follow DESIGN.md §1 (and `vllm bench serve` where one
//! exists); they are a contract: add, never rename.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use infer_doctor_core::shard::ShardSpec;

#[derive(Parser, Debug)]
#[command(
    name = "infer-doctor",
    version,
    about = "Finds out why an LLM inference service is slow, and says what to do about it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load-test an OpenAI-compatible endpoint and measure it as a client sees it.
    Bench(Box<BenchArgs>),
    /// Run `bench` against a built-in server on loopback; needs nothing installed.
    Demo(DemoArgs),
    /// The simulated vLLM V1 server: serve it over HTTP, or `sim run` a workload through it without HTTP.
    Sim(Box<SimArgs>),
    /// Read a server's Prometheus metrics as canonical signals: one scrape, or the interval between two.
    Metrics(MetricsArgs),
    /// Read an engine log (vLLM, SGLang, llama.cpp): capacity, configuration, stats timeline, problems.
    Logs(LogsArgs),
    /// Find out why a server is slow: probe it live (--url), or read evidence from disk, and run the playbook.
    Diagnose(Box<DiagnoseArgs>),
    /// Render a stored run or diagnosis: terminal, Markdown, JSON or a self-contained HTML page.
    Report(ReportArgs),
    /// On the GPU host: the GPUs, the kernel log, the engine log, the server's view and a probe, redacted, in
    /// one bundle that `diagnose --bundle` reads offline.
    Collect(Box<CollectArgs>),
    /// Size a vLLM deployment for a load and an SLO: capacity as vLLM computes it, options checked on the
    /// simulator, the recommended flags.
    Plan(Box<PlanArgs>),
    /// Analyse PyTorch profiler traces (one file per rank, or the profiler's directory) as HTA does: where the
    /// GPU's time went, the kernels, launches, copies and queues, and vLLM's prefill and decode steps.
    Trace(TraceArgs),
    /// Two runs side by side (run directories, bundles or history ids): each figure's change with its
    /// confidence interval, better / worse / within noise, and what the server's signals did meanwhile.
    Compare(CompareArgs),
    /// One figure across the recorded runs of a target: a trend table or chart, and a finding when it drifts.
    History(HistoryArgs),
    /// Carry the playbook into the monitoring already running: a Grafana dashboard, or Prometheus alert rules
    /// from the same thresholds `diagnose` uses.
    Export(ExportArgs),
    /// A live view of a server's signals and findings, re-diagnosed every interval from its metrics (no load
    /// unless --probe); `--once` for cron, `--format jsonl` for alerting.
    Watch(Box<WatchArgs>),
}

/// Where finished runs are recorded (`bench`, `diagnose`) and read back (`compare`, `history`).
#[derive(Args, Debug, Clone, Default)]
pub struct HistoryFlags {
    /// Do not record this run in the local history.
    #[arg(long)]
    pub no_history: bool,
    /// The history file (default: $XDG_DATA_HOME/infer-doctor/history.sqlite, else
    /// ~/.local/share/infer-doctor/history.sqlite).
    #[arg(long, value_name = "FILE", conflicts_with = "no_history")]
    pub history: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The baseline then the compared run, each a run directory (`bench --out`), a diagnose bundle (a
    /// directory or .tar.gz) or a history id (`12` or `#12`); with --baseline, only the compared run.
    #[arg(required = true, num_args = 1..=2, value_name = "RUN")]
    pub runs: Vec<String>,
    /// Use the run pinned under this name (`history pin NAME RUN`) as the baseline.
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,
    /// Exit 1 when a figure moved past its limit beyond noise, e.g. tpot_p95=+10%,throughput=-5%,error_rate=+1%
    /// (the error rate's limit is in percentage points).
    #[arg(long, value_name = "LIMITS")]
    pub fail_on: Option<String>,
    /// Changes smaller than this are within noise even when significant (run-to-run variation).
    #[arg(long, value_parser = parse_percent, default_value = "5%")]
    pub noise: f64,
    /// `md` is a pull-request comment; `junit` is JUnit XML for a CI system's test view.
    #[arg(long, value_enum, default_value_t = CompareFormat::Term)]
    pub format: CompareFormat,
    /// Write the output to this file instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompareFormat {
    Term,
    Md,
    Json,
    Junit,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HistoryArgs {
    #[command(subcommand)]
    pub action: Option<HistoryCommand>,
    /// The target's URL (default: the most recent run's).
    #[arg(long)]
    pub target: Option<String>,
    /// The served model (default: the most recent run's for the target).
    #[arg(long)]
    pub model: Option<String>,
    /// The figure to follow: ttft_p50/p95/p99, tpot_*, itl_*, e2e_*, throughput, request_rate, error_rate.
    #[arg(long, default_value = "throughput")]
    pub metric: String,
    /// The most recent N runs (the trend test compares every pair of runs, so it stays bounded).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub last: u64,
    /// `html` draws the trend.
    #[arg(long, value_enum, default_value_t = ReportFormat::Term)]
    pub format: ReportFormat,
    /// Write the output to this file instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long, value_name = "FILE", global = true)]
    pub history: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum HistoryCommand {
    /// Record run directories (bench --out, diagnose --out, collect bundles) again, e.g. into a new history file:
    /// the directories are the source of truth, the history an index of them.
    Rebuild(HistoryRebuildArgs),
    /// Name a run (a history id or a run directory) as a baseline, for `compare --baseline NAME`.
    Pin(HistoryPinArgs),
}

#[derive(Args, Debug)]
pub struct HistoryRebuildArgs {
    /// Run directories, or directories holding them (searched two levels deep).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct HistoryPinArgs {
    pub name: String,
    /// A history id (`12`, `#12`) or a run directory (recorded first if it is not yet).
    pub run: String,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub what: ExportCommand,
}

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// A Grafana dashboard (JSON, with a Prometheus data source variable): latency percentiles, queue, batch,
    /// KV cache, preemptions, prefix cache, tokens/s, errors, and each pod.
    Grafana(ExportTargetArgs),
    /// A Prometheus rule file (YAML): the playbook's findings as alerts, and regressions against 7 days ago.
    Alerts(ExportAlertsArgs),
}

#[derive(Args, Debug)]
pub struct ExportTargetArgs {
    /// The servers' metric names: vllm, sglang, llamacpp, tgi, trtllm (or triton, llmd_epp, vllm_v0).
    #[arg(long, default_value = "vllm")]
    pub dialect: infer_doctor_observe::dialect::Dialect,
    /// Write here instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Label matchers every query keeps, e.g. '{namespace="llm"}'.
    #[arg(long, default_value = "")]
    pub selector: String,
    /// The label that tells pods apart (`instance` outside Kubernetes).
    #[arg(long, default_value = "pod")]
    pub pod_label: String,
    /// The window of every rate() and histogram quantile.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub rate_window: Duration,
}

#[derive(Args, Debug)]
pub struct ExportAlertsArgs {
    #[command(flatten)]
    pub target: ExportTargetArgs,
    /// How long a condition must hold before its alert fires.
    #[arg(long = "for", value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub hold: Duration,
    /// A TOML file overriding the playbook's thresholds, as `diagnose --thresholds` reads it.
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TraceArgs {
    #[command(subcommand)]
    pub action: Option<TraceCommand>,
    /// Trace files (`*.pt.trace.json[.gz]`, one per rank) or a directory of them (`torch_profiler_dir`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub analysis: TraceAnalysisArgs,
}

#[derive(Args, Debug)]
pub struct TraceAnalysisArgs {
    /// Keep the last `ProfilerStep`, which HTA leaves out (it is usually cut short by the profiler's stop).
    #[arg(long)]
    pub include_last_step: bool,
    /// `html` draws each rank's engine steps and top kernels above the tables.
    #[arg(long, value_enum, default_value_t = ReportFormat::Term)]
    pub format: ReportFormat,
}

#[derive(Subcommand, Debug)]
pub enum TraceCommand {
    /// Two traces side by side (a baseline first): where the time went, and the kernels that changed.
    Diff(TraceDiffArgs),
}

#[derive(Args, Debug)]
pub struct TraceDiffArgs {
    /// The baseline trace (a file or a directory of one rank's files).
    pub baseline: PathBuf,
    /// The trace to compare with it.
    pub compared: PathBuf,
    #[command(flatten)]
    pub analysis: TraceAnalysisArgs,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// A built-in model name (e.g. llama-3.1-8b, qwen3-8b, deepseek-v3), a config.json, or a model directory.
    #[arg(long, required_unless_present = "from")]
    pub model: Option<String>,
    /// The GPU (h100, h200, a100, l40s, l4, a10, b200, mi300x, ...).
    #[arg(long, required_unless_present = "from")]
    pub gpu: Option<String>,
    /// Plan from what was measured instead: a bench run or sweep directory, or a diagnose bundle. The highest
    /// rate one replica served within its SLO sets the replicas for --rate.
    #[arg(long, conflicts_with_all = ["model", "gpu"])]
    pub from: Option<PathBuf>,
    /// GPUs one replica may span (one node).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub gpus: u32,
    /// Prompt tokens per request.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    pub isl: u64,
    /// Output tokens per request.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    pub osl: u64,
    /// Requests per second to serve, over all replicas.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// The latency goal at the 95th percentile (with --from, it judges runs that had none of their own).
    #[arg(long, default_value = "ttft_p95=1s,tpot_p95=50ms")]
    pub slo: String,
    /// Dollars per GPU-hour, for the cost per million output tokens.
    #[arg(long)]
    pub gpu_hour_price: Option<f64>,
    /// vLLM's --max-model-len (default: twice the request's length rounded up to 1,024, within the model's).
    #[arg(long)]
    pub max_model_len: Option<u64>,
    /// vLLM's --gpu-memory-utilization.
    #[arg(long, default_value_t = 0.9)]
    pub gpu_memory_utilization: f64,
    /// Spare capacity kept above the rate when counting replicas.
    #[arg(long, default_value_t = 0.2)]
    pub headroom: f64,
    /// Requests each option's simulated check runs (the first tenth warm it up).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(20..=100_000))]
    pub sim_requests: u64,
    #[arg(long, value_enum, default_value = "term")]
    pub format: ReportFormat,
    /// Also write plan.json, plan.md and plan.html here (`report DIR` renders it again).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also print autoscaling manifests for the recommended option, scaling on vllm:num_requests_waiting and
    /// KV usage: a HorizontalPodAutoscaler (with the Prometheus Adapter rules it needs) or a KEDA ScaledObject.
    #[arg(long, value_enum)]
    pub autoscale: Option<AutoscaleKind>,
    /// The Kubernetes Deployment the autoscaler scales.
    #[arg(long, default_value = "vllm")]
    pub deployment: String,
    #[arg(long)]
    pub namespace: Option<String>,
    /// vLLM's served model name (its metrics' model_name label); default: the model's name.
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// The Prometheus KEDA queries.
    #[arg(long, default_value = infer_doctor_plan::autoscale::DEFAULT_PROMETHEUS_ADDRESS)]
    pub prometheus_address: String,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum AutoscaleKind {
    Hpa,
    Keda,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Term,
    Md,
    Json,
    Html,
}

#[derive(Args, Debug)]
pub struct CollectArgs {
    /// The server to read (/metrics, /v1/models, /version) and probe; without it only the host is gathered.
    #[arg(long)]
    pub url: Option<String>,
    /// The bundle's directory, or one `.tar.gz` file (default: the directory infer-doctor-bundle-<host>-<time>
    /// here); `diagnose --bundle` reads either.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The longest the probe may take; the GPUs are sampled every second through it.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// Send the server no load: read what it says about itself, and the host, only.
    #[arg(long)]
    pub no_probe: bool,
    /// Also run DCGM's quick diagnostic (`dcgmi diag -r 1`, about a minute) after the probe, into
    /// gpu/dcgmi-diag.json. Off by default: it loads the GPUs, so run it on a node you may disturb.
    #[arg(long)]
    pub dcgm: bool,
    /// One server straight, bypassing the gateway or load balancer in front of --url: the path's timings are
    /// compared, to tell what the front adds.
    #[arg(long, requires = "url")]
    pub direct_url: Option<String>,
    /// The engine's log: a file, `docker:NAME` (docker logs), `journal:UNIT` (journalctl -u) or
    /// `k8s:[NAMESPACE/]POD[/CONTAINER]` (kubectl: the pod's log, its log before the last restart, the pod's
    /// description and events, and nvidia-smi inside it; the namespace defaults to kubectl's current one).
    #[arg(
        long,
        value_name = "FILE|docker:NAME|journal:UNIT|k8s:[NS/]POD[/CONTAINER]"
    )]
    pub log: Option<String>,
    /// The server's process: its command line and engine environment (secrets redacted), and the kernel log
    /// since it started.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Replace host names, IP and MAC addresses by pseudonyms (`host-1`, `ip-1`, `mac-1`), the same in every
    /// file, for a bundle sent outside; the key to them is written beside the bundle, not in it.
    #[arg(long)]
    pub redact_hosts: bool,
    /// Users in the loaded probe (default: as `diagnose`).
    #[arg(long)]
    pub concurrency: Option<u64>,
    /// Prompt length of the probe's requests (default: as `diagnose`).
    #[arg(long)]
    pub input_tokens: Option<u32>,
    /// Output length of the probe's requests (default: as `diagnose`).
    #[arg(long)]
    pub output_tokens: Option<u32>,
    /// The model to ask for (default: the first of /v1/models).
    #[arg(long)]
    pub model: Option<String>,
    /// API key sent as a bearer token; never printed or written, and redacted wherever it appears.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PyTorch profiler traces of the server (files, one per rank, or vLLM's `torch_profiler_dir`): analysed
    /// here, and the bundle keeps the analysis (`trace/facts.json` for diagnose, `trace/analysis.md` to read),
    /// not the traces, which are large and hold paths and host names.
    #[arg(long)]
    pub trace: Vec<PathBuf>,
    /// No progress lines on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// Read the host's /proc and /sys under this directory instead of `/` (tests).
    #[arg(long, hide = true, default_value = "/")]
    pub root: PathBuf,
    /// The deadline of each command run on the host (tests shorten it).
    #[arg(long, hide = true, value_parser = parse_duration, default_value = "30s")]
    pub item_timeout: Duration,
}

#[derive(Args, Clone, Debug)]
pub struct DiagnoseArgs {
    /// Probe this server live: one user, then a crowd, while scraping its metrics. Give it once per replica of a
    /// fleet (--url A --url B ..): each is probed with its share of the users at the same time, scraped on its
    /// own, and judged beside its peers.
    #[arg(long, conflicts_with = "bundle")]
    pub url: Vec<String>,
    /// A run directory (from `bench --out` or `diagnose --out`) to diagnose offline.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// A Prometheus that scrapes the fleet (e.g. http://prometheus:9090): every replica judged side by side over
    /// --window, and the fleet as a whole.
    /// With --url (a gateway in front of them), the probe's requests are judged against what the replicas
    /// themselves counted.
    #[arg(long, conflicts_with_all = ["bundle", "metrics"])]
    pub prometheus: Option<String>,
    /// Which series to read from --prometheus, e.g. '{namespace="llm"}'.
    #[arg(long, default_value = "", requires = "prometheus")]
    pub selector: String,
    /// The window rates, quantiles and means are taken over (with --prometheus).
    #[arg(long, value_parser = parse_duration, default_value = "5m", requires = "prometheus")]
    pub window: Duration,
    /// The label that tells replicas apart (with --prometheus; `instance` is used when no series has it).
    #[arg(long, default_value = "pod", requires = "prometheus")]
    pub group_by: String,
    /// Scrapes of one server's /metrics, earlier first.
    #[arg(long, num_args = 1..)]
    pub metrics: Vec<PathBuf>,
    /// Scrapes of llm-d's endpoint picker (the EPP's /metrics: scheduling latency, flow-control queue, ready
    /// endpoints), earlier first.
    #[arg(long, num_args = 1.., conflicts_with = "prometheus")]
    pub scheduler_metrics: Vec<PathBuf>,
    /// Seconds between the --metrics (and --scheduler-metrics) scrapes (default: from the files' modification times).
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// The server's log (vLLM, SGLang, llama.cpp): start-up capacity and configuration.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// A `requests.jsonl` of a run to read the client's view from.
    #[arg(long)]
    pub requests: Option<PathBuf>,
    /// The longest the live probes may take together.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub budget: Duration,
    /// The most requests the loaded probe may send.
    #[arg(long, default_value_t = 300)]
    pub max_requests: u64,
    /// Users in the loaded probe.
    #[arg(long, default_value_t = 32)]
    pub concurrency: u64,
    #[arg(long, default_value_t = 512)]
    pub input_tokens: u32,
    #[arg(long, default_value_t = 256)]
    pub output_tokens: u32,
    #[arg(long, default_value_t = 0)]
    pub prefix_tokens: u32,
    #[arg(long, default_value_t = 1)]
    pub prefix_groups: u32,
    /// Local Hugging Face tokenizer (a directory with tokenizer.json, or the file) for exact prompt lengths.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Ask the server to ignore end-of-sequence so every output has exactly --output-tokens (then outputs
    /// ending by length are expected, not a runaway).
    #[arg(long)]
    pub ignore_eos: bool,
    /// The model to ask for (default: the first of /v1/models).
    #[arg(long)]
    pub model: Option<String>,
    /// API key sent as a bearer token; never printed or written.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The server's metrics URL (default: the --url's host with `/metrics`).
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Read the server's metrics as this dialect (vllm_v1, sglang, llamacpp, …) instead of detecting it.
    #[arg(long)]
    pub dialect: Option<String>,
    /// The served model's shapes (a built-in name such as llama-3.1-8b, or an HF config.json), with the GPU from
    /// --gpu or a capture: the hardware floors single-user latency is judged against.
    #[arg(long)]
    pub model_config: Option<String>,
    /// The GPUs: nvidia-smi captures from the GPU host, taken while it serves (`nvidia-smi -q`, `-q -x`, or
    /// `--query-gpu=… --format=csv`; `rocm-smi --showallinfo --json` on AMD), for their health (memory errors, clocks, PCIe link); and, with
    /// --model-config, the GPU for the hardware floors: a built-in name (h100, h100-pcie, h200, a100,
    /// a100-40gb, l40s, l4, a10, b200, mi300x), else the one a capture names.
    #[arg(long, num_args = 1.., value_name = "FILE|NAME")]
    pub gpu: Vec<String>,
    /// How many GPUs the model is split over (tensor parallel), for the hardware floors.
    #[arg(long, default_value_t = 1)]
    pub tensor_parallel_size: u32,
    /// The output of `vllm collect-env` (`python -m vllm.collect_env`) from the GPU host, as pasted into a
    /// ticket: versions, GPUs, the GPU topology and the environment (secret values are not kept).
    #[arg(long, value_name = "FILE")]
    pub env: Option<PathBuf>,
    /// PyTorch profiler traces of the server (one file per rank, or vLLM's `torch_profiler_dir`): where the
    /// GPU's time went, for the trace rules.
    #[arg(long, value_name = "FILE|DIR", num_args = 1..)]
    pub trace: Vec<PathBuf>,
    /// After the probes, send a fixed set of prompts at temperature 0 alone (twice: a prompt whose two lone runs
    /// differ is nondeterministic alone) and then inside batches of concurrent requests, and compare the outputs
    /// token by token (output.nondeterministic); nothing is sent after a third of --budget (requests in flight
    /// finish). With several --url, the first replica answers for the fleet (as for --template).
    #[arg(long, requires = "url")]
    pub determinism: bool,
    /// After the probes, send one conversation through /v1/chat/completions and, rendered locally with the
    /// model's own chat template (the tokenizer_config.json beside --tokenizer), through /v1/completions, and
    /// compare the answers (output.template).
    #[arg(long, requires_all = ["url", "tokenizer"])]
    pub template: bool,
    /// The batch sizes of the determinism probe, each sent at once after the one before has finished.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "8,32",
        requires = "determinism"
    )]
    pub determinism_batches: Vec<u32>,
    /// Distinct prompts of the determinism probe; each batch repeats them to fill itself.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64), requires = "determinism")]
    pub determinism_prompts: u32,
    /// max_tokens of each determinism request: the longer, the more chances for a flip to show.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096), requires = "determinism")]
    pub determinism_tokens: u32,
    /// A TOML file overriding the playbook's thresholds.
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
    /// The service's latency goal, for the escalation summary (e.g. ttft_p95=500ms,tpot_p95=50ms).
    #[arg(long)]
    pub slo: Option<String>,
    /// Keep the bundle (probe runs, diagnosis.json, report.html, report.md) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "term")]
    pub format: ReportFormat,
    /// No progress lines on stderr; the report alone.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub history: HistoryFlags,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run directory: its diagnosis.json, or (a bench run) diagnosed now from its files; or a plan's
    /// directory (`plan --out`).
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value = "term")]
    pub format: ReportFormat,
    /// Write here instead of standard output.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct MetricsArgs {
    #[command(subcommand)]
    pub action: MetricsCommand,
}

#[derive(Subcommand, Debug)]
pub enum MetricsCommand {
    /// The canonical signals of one scrape: a metrics URL (http://host:8000/metrics) or a saved file.
    Show(MetricsShowArgs),
    /// Two scrapes of one server, earlier first: rates, increases and histogram quantiles over the interval.
    Diff(MetricsDiffArgs),
}

#[derive(Args, Debug)]
pub struct MetricsShowArgs {
    /// A URL (`/metrics` is added when it has no path) or a file.
    #[arg(required_unless_present = "prometheus")]
    pub source: Option<String>,
    /// Ask a Prometheus server that already scrapes the fleet instead (e.g. http://prometheus:9090).
    #[arg(long, conflicts_with = "source")]
    pub prometheus: Option<String>,
    /// Which series to read from --prometheus, e.g. '{namespace="llm"}'.
    #[arg(long, default_value = "", requires = "prometheus")]
    pub selector: String,
    /// The window rates and quantiles are computed over (with --prometheus).
    #[arg(long, value_parser = parse_duration, default_value = "5m", requires = "prometheus")]
    pub window: Duration,
    /// The label that tells pods apart (with --prometheus; `instance` is used when no series has it).
    #[arg(long, default_value = "pod", requires = "prometheus")]
    pub group_by: String,
    /// Read the names as this server's (vllm_v1, vllm_v0, sglang, tgi, llamacpp, trtllm_serve, triton,
    /// llmd_epp, dcgm) instead of detecting it.
    #[arg(long)]
    pub dialect: Option<String>,
    #[arg(long, value_enum, default_value = "term")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct MetricsDiffArgs {
    pub earlier: PathBuf,
    pub later: PathBuf,
    /// Seconds between the two scrapes (default: from the files' modification times).
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    #[arg(long)]
    pub dialect: Option<String>,
    #[arg(long, value_enum, default_value = "term")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    pub file: PathBuf,
    #[arg(long, value_enum, default_value = "term")]
    pub format: Format,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum EndpointArg {
    Completions,
    Chat,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ArrivalArg {
    Constant,
    Poisson,
    Gamma,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Term,
    Json,
}

/// A duration with a unit (`60s`, `2m`, `500ms`), or plain seconds (`4`, `0.5`), as the flags' help says.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("`{text}`: not a number of seconds (e.g. 4, 60s, 2m, 500ms)"));
    }
    humantime::parse_duration(text).map_err(|e| format!("`{text}`: {e} (e.g. 4, 60s, 2m, 500ms)"))
}

/// `5%` or `0.05`: a share.
fn parse_percent(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.trim().strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text.trim(), 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .map(|v| v / scale)
        .filter(|v| (0.0..1.0).contains(v))
        .ok_or_else(|| format!("`{text}`: a share from 0% to 100% (e.g. 5%)"))
}

/// `--warmup 10` (requests) or `--warmup 10s` (time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WarmupArg {
    Requests(u64),
    Time(Duration),
}

fn parse_warmup(text: &str) -> Result<WarmupArg, String> {
    match text.parse::<u64>() {
        Ok(n) => Ok(WarmupArg::Requests(n)),
        Err(_) => parse_duration(text).map(WarmupArg::Time),
    }
}

#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Server base URL; any path prefix is kept (http://host:8000, http://gw/llm/v1).
    #[arg(long, required_unless_present = "self_test")]
    pub url: Option<String>,
    /// Model name to request (default: the first of /v1/models).
    #[arg(long)]
    pub model: Option<String>,
    /// API key sent as a bearer token; never printed or written.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[arg(long, value_enum, default_value = "completions")]
    pub endpoint: EndpointArg,
    /// Ask for whole responses instead of streams (no TTFT/ITL then).
    #[arg(long)]
    pub no_stream: bool,
    /// Closed loop: this many users, each sending its next request when the last one ends.
    #[arg(long, conflicts_with = "request_rate")]
    pub concurrency: Option<u64>,
    /// Open loop: requests per second on a precomputed schedule, whatever the server does.
    #[arg(long)]
    pub request_rate: Option<f64>,
    #[arg(long, value_enum, default_value = "poisson", requires = "request_rate")]
    pub arrival: ArrivalArg,
    /// Gamma shape of inter-arrival gaps (< 1 burstier, 1 = Poisson); implies --arrival gamma.
    #[arg(long, requires = "request_rate")]
    pub burstiness: Option<f64>,
    /// With --request-rate: at most this many in flight; the rest wait in the client (measured).
    #[arg(long, requires = "request_rate")]
    pub max_concurrency: Option<u64>,
    /// Stop after this many measured requests (default 100 without --duration).
    #[arg(long, visible_alias = "num-prompts", conflicts_with = "duration")]
    pub num_requests: Option<u64>,
    /// Stop sending after this long (e.g. 60s); in-flight requests finish.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Requests (10) or time (10s) sent first and left out of every statistic.
    #[arg(long, value_parser = parse_warmup)]
    pub warmup: Option<WarmupArg>,
    /// Prompt length in tokens: 512, 512:64 (normal, stddev), or 256-768 (uniform).
    #[arg(long, visible_alias = "random-input-len", default_value = "512")]
    pub input_tokens: String,
    /// max_tokens per request, same forms as --input-tokens (default 128; datasets use their own lengths).
    #[arg(long, visible_alias = "random-output-len")]
    pub output_tokens: Option<String>,
    /// Tokens of shared prefix added before each prompt.
    #[arg(long, default_value_t = 0)]
    pub prefix_tokens: u32,
    /// Number of distinct shared prefixes.
    #[arg(long, default_value_t = 1, requires = "prefix_tokens")]
    pub prefix_groups: u32,
    /// Prompts from a JSONL file ({"prompt": ...} per line) or a ShareGPT JSON file.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Local Hugging Face tokenizer (a directory with tokenizer.json, or the file) for exact prompt lengths.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Ask the server to ignore end-of-sequence so every output has exactly max_tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Seeds the prompt and length generator: the same seed sends the same workload.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Objectives, e.g. ttft_p95=500ms,tpot_p95=50ms,error_rate=1%; exit 1 when one fails.
    #[arg(long)]
    pub slo: Option<String>,
    /// Measure saturation throughput, then run --sweep-points rates up to it.
    #[arg(long)]
    pub sweep: bool,
    /// How many request rates the sweep measures.
    #[arg(long, default_value_t = 5, requires = "sweep")]
    pub sweep_points: u32,
    /// How often to scrape the server's Prometheus metrics during the run (0s: never).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub scrape_interval: Duration,
    /// The server's metrics URL (default: the --url's host with `/metrics`).
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Read the server's metrics as this dialect (vllm_v1, sglang, llamacpp, …) instead of detecting it.
    #[arg(long)]
    pub dialect: Option<String>,
    /// Write run.json and requests.jsonl here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A TOML file overriding the playbook's thresholds (here: when the client counts as the run's limit).
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "term")]
    pub format: Format,
    /// No progress lines on stderr; the report alone.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub history: HistoryFlags,
    /// Speak HTTP/2 instead of HTTP/1.1 (prior knowledge on http://, ALPN on https://).
    #[arg(long)]
    pub http2: bool,
    /// Trust the CA certificates in this PEM file for an https target (a private or self-signed CA).
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    pub ca_cert: Option<PathBuf>,
    /// Accept any certificate from an https target: encrypted, but the server is not authenticated.
    #[arg(long)]
    pub insecure: bool,
    /// Fail a request when no byte arrives for this long (a stall).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,
    /// Fail a request that takes longer than this in total (default: no limit).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Do not ask for per-chunk usage (continuous_usage_stats), for servers that reject unknown options.
    #[arg(long)]
    pub no_continuous_usage: bool,
    /// Measure this client against a built-in instant server and print its limits.
    #[arg(long)]
    pub self_test: bool,
    /// How long each self-test line runs; tests shorten it.
    #[arg(long, value_parser = parse_duration, default_value = "3s", hide = true)]
    pub self_test_duration: Duration,
    /// Send only shard I of N (I from 0) of the run the other flags describe: request k when k mod N = I, with the
    /// whole run's prompts and arrival times and 1/N of its users; `bench merge` puts the shards back together.
    #[arg(long, value_name = "I/N", value_parser = parse_shard, conflicts_with = "sweep")]
    pub shard: Option<ShardSpec>,
    /// Print (or write with -o) a manifest that runs this bench from many machines: a Kubernetes Indexed Job of
    /// --shards pods, each `--shard $(JOB_COMPLETION_INDEX)/N`, and a Job merging their results.
    #[arg(long, value_enum, requires = "shards", conflicts_with_all = ["sweep", "shard", "self_test"])]
    pub emit: Option<EmitArg>,
    /// With --emit: how many shards (pods) share the load.
    #[arg(long, requires = "emit")]
    pub shards: Option<u64>,
    /// With --emit: the container image with `infer-doctor` on its PATH.
    #[arg(long, requires = "emit")]
    pub image: Option<String>,
    /// With --emit: the namespace of the Jobs (default: kubectl's current one).
    #[arg(long, requires = "emit")]
    pub namespace: Option<String>,
    /// With --emit: the Job's name; the merge Job is NAME-merge.
    #[arg(long, requires = "emit", default_value = "infer-doctor-bench")]
    pub job_name: String,
    /// With --emit: a ReadWriteMany PersistentVolumeClaim the shards write to and the merge reads from.
    #[arg(long, requires = "emit", default_value = "infer-doctor-results")]
    pub results_claim: String,
    /// With --emit: the Secret (NAME or NAME:KEY, key default `api-key`) holding the API key; the key itself is
    /// never written into a manifest.
    #[arg(long, requires = "emit", value_name = "NAME[:KEY]")]
    pub api_key_secret: Option<String>,
    /// With --emit: write the manifest here instead of standard output.
    #[arg(short = 'o', long = "output", requires = "emit")]
    pub output: Option<PathBuf>,
    /// With --emit: the --dataset, --tokenizer, --thresholds and --ca-cert paths name files inside the image, so
    /// pass them to the pods as they are (without it, only paths under the results volume, /results, are).
    #[arg(long, requires = "emit")]
    pub paths_in_image: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum EmitArg {
    /// A Kubernetes Indexed Job (batch/v1), one pod per shard, and a Job that merges them.
    K8sJob,
}

#[derive(Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Put shards of one run (`bench --shard I/N --out DIR`) back together: the run one process would have made.
    Merge(BenchMergeArgs),
}

#[derive(Args, Debug, Clone)]
pub struct BenchMergeArgs {
    /// The shards' run directories, every shard of the run once.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Write the merged run directory here (default: print its summary only).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Wait up to this long for every shard's run.json to appear (shards still running elsewhere), e.g. 30m.
    #[arg(long, value_parser = parse_duration)]
    pub wait: Option<Duration>,
    /// Only shards whose run started at most this long before the merge did (e.g. 15m): an older run.json in a
    /// directory is a previous run's, waited past with --wait, refused without.
    #[arg(long, value_parser = parse_duration)]
    pub started_within: Option<Duration>,
    #[arg(long, value_enum, default_value = "term")]
    pub format: Format,
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_shard(text: &str) -> Result<ShardSpec, String> {
    text.parse::<ShardSpec>().map_err(|e| e.to_string())
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Write each probe's run.json and requests.jsonl under this directory (one subdirectory per probe).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The simulated server's problem, from `sim --list-scenarios` (default: kv-saturated).
    #[arg(long)]
    pub scenario: Option<String>,
}

#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimArgs {
    #[command(subcommand)]
    pub run: Option<SimCommand>,
    #[command(flatten)]
    pub setup: SimSetupArgs,
    /// Listen on this loopback port (0 = any free port; the address is printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Time a fleet's router takes for each scheduling decision, as llm-d's endpoint picker with a slow scorer
    /// would (e.g. 30ms). A fleet's router serves its own series under the picker's names (scheduling time,
    /// attempts, ready endpoints) at /picker/metrics.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub scheduling_delay: Option<Duration>,
    /// A fleet's router lets this many requests through to the replicas at once and holds the rest in its own
    /// queue, as llm-d's endpoint picker with flow control does (the wait is its
    /// llm_d_epp_flow_control_request_queue_duration_seconds).
    #[arg(long, value_name = "N")]
    pub flow_control_limit: Option<usize>,
    /// Address to bind; the simulator is a test target, so loopback by default.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Write the ground truth here as JSON lines: per request its arrival, scheduling, every token's emit time
    /// and finish reason.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Print every scenario with what it reproduces, and exit.
    #[arg(long)]
    pub list_scenarios: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum SimCommand {
    /// Feed a workload through the simulated engine on a discrete-event clock: no HTTP, no sleeping.
    Run(Box<SimRunArgs>),
}

/// The simulated server's setup: a scenario, then any engine argument overriding it (vLLM's flag names).
#[derive(Args, Debug, Clone)]
pub struct SimSetupArgs {
    /// A preset from `sim --list-scenarios` (default: healthy).
    #[arg(long)]
    pub scenario: Option<String>,
    /// A built-in model (tiny, llama-3.1-8b, llama-3.1-70b, qwen3-8b) or a Hugging Face config.json.
    #[arg(long)]
    pub model: Option<String>,
    /// The model name the API answers to (default: the model's).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// A GPU from the built-in catalog (h100, h100-pcie, h200, a100, a100-40gb, l40s, l4, a10, b200, mi300x).
    #[arg(long)]
    pub gpu: Option<String>,
    /// GPUs the model is split over (tensor parallel).
    #[arg(long, visible_alias = "tp")]
    pub tensor_parallel_size: Option<u32>,
    /// Tensor-parallel GPUs talk over PCIe instead of NVLink.
    #[arg(long)]
    pub pcie: bool,
    /// Share of GPU memory the engine may use for weights, activations and the KV pool (vLLM's default 0.9).
    #[arg(long)]
    pub gpu_memory_utilization: Option<f64>,
    /// The KV pool's size in blocks, instead of what fits in memory.
    #[arg(long, visible_alias = "num-gpu-blocks")]
    pub num_gpu_blocks_override: Option<u32>,
    /// The most requests running at once (the batch cap); more wait.
    #[arg(long)]
    pub max_num_seqs: Option<u32>,
    /// The most tokens scheduled in one engine step (prefill chunks and decodes together).
    #[arg(long)]
    pub max_num_batched_tokens: Option<u32>,
    /// The context window: prompt plus output tokens of one request.
    #[arg(long)]
    pub max_model_len: Option<u32>,
    /// Turn off automatic prefix caching.
    #[arg(long)]
    pub no_enable_prefix_caching: bool,
    /// Turn off chunked prefill: a prompt is prefilled in one step.
    #[arg(long)]
    pub no_enable_chunked_prefill: bool,
    /// σ of the lognormal jitter on each step's duration (0 = deterministic).
    #[arg(long)]
    pub jitter: Option<f64>,
    /// Seeds the step jitter and the injected faults.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Share of requests answered with --error-status instead of being served (0–1).
    #[arg(long)]
    pub error_rate: Option<f64>,
    /// The injected error: 429, 500, 503, or 400 (answered as vLLM's context-length error).
    #[arg(long)]
    pub error_status: Option<u16>,
    /// Share of streams cut (connection reset) after --cut-after tokens.
    #[arg(long)]
    pub disconnect_rate: Option<f64>,
    /// Share of streams that go silent after --cut-after tokens, connection left open.
    #[arg(long)]
    pub stall_rate: Option<f64>,
    /// Tokens sent before a stream is cut or stalls.
    #[arg(long)]
    pub cut_after: Option<u32>,
    /// A gateway in front of the engine that lets only this many requests through at once.
    #[arg(long)]
    pub gateway_limit: Option<usize>,
    /// `/health` answers 503 for this many seconds after start, as while vLLM loads.
    #[arg(long)]
    pub loading_seconds: Option<f64>,
    /// The first N seconds of steps run --cold-factor times slower (no warm-up).
    #[arg(long)]
    pub cold_seconds: Option<f64>,
    /// How many times slower steps are during --cold-seconds.
    #[arg(long)]
    pub cold_factor: Option<f64>,
    /// The GPU's work in each step (its compute and memory time) takes this many times longer, as on a thermally
    /// or power-throttled GPU; the host's per-step overhead and the all-reduces between GPUs do not slow down.
    #[arg(long)]
    pub throttle: Option<f64>,
    /// Steps slow down by this fraction per 10,000 tokens generated (wear under traffic).
    #[arg(long)]
    pub degrade_per_10k_tokens: Option<f64>,
    /// The model never emits its stop token (runaway generations: every request runs to max_tokens).
    #[arg(long)]
    pub never_stop: bool,
    /// Batch-variant kernels: a forward pass of more than this many requests flips the model's near tie at
    /// --batch-variant-at, so outputs at temperature 0 change from that token on.
    #[arg(long, requires = "batch_variant_at")]
    pub batch_variant_above: Option<u32>,
    /// The generated token (1-based) where every prompt's near tie lies (with --batch-variant-above).
    #[arg(long, requires = "batch_variant_above")]
    pub batch_variant_at: Option<u32>,
    /// The server renders chat with a template that, unlike the model's, never opens the assistant's turn.
    #[arg(long)]
    pub chat_template_without_generation_prompt: bool,
    /// Simulate a fleet: this many replicas of the setup behind the simulator's own router (default 1, or the
    /// scenario's fleet). Over HTTP, --port serves the router (completions, and every replica's /metrics in one
    /// body, each sample labelled pod="sim-I": scrape it with honor_labels: true) and each replica also listens
    /// on a port of its own, printed after the router's URL, serving its own API and its own labelled /metrics:
    /// a Prometheus that scrapes those ports (one target per replica) sees its `up` and resets per pod.
    #[arg(long)]
    pub replicas: Option<u32>,
    /// How the fleet's router picks a replica: round-robin, least-request (fewest running + waiting),
    /// prefix-aware (the replica that last served the request's longest prompt prefix, else least-request) or
    /// random.
    #[arg(long, value_parser = ["round-robin", "least-request", "prefix-aware", "random"])]
    pub router: Option<String>,
    /// Prefill/decode disaggregation: the first K replicas prefill each prompt (one token), then the decode
    /// replicas pull its KV over the link (vLLM's NixlConnector; they expose vllm:nixl_* metrics) and generate.
    #[arg(long)]
    pub prefill_replicas: Option<u32>,
    /// The KV link's bandwidth per transfer in Gbit/s (default 400, RDMA; UCX's TCP fallback gives about 10).
    #[arg(long)]
    pub kv_transfer_gbps: Option<f64>,
    /// Share of KV transfers that fail (the decode replica recomputes the prompt) (0–1).
    #[arg(long)]
    pub kv_transfer_failure_rate: Option<f64>,
}

#[derive(Args, Debug, Clone)]
pub struct SimRunArgs {
    #[command(flatten)]
    pub setup: SimSetupArgs,
    /// Closed loop: this many users, each sending its next request when the last one finishes.
    #[arg(long, conflicts_with = "request_rate")]
    pub concurrency: Option<u32>,
    /// Open loop: Poisson arrivals at this many requests per second.
    #[arg(long)]
    pub request_rate: Option<f64>,
    #[arg(long, visible_alias = "num-prompts", default_value_t = 1000)]
    pub num_requests: u64,
    /// Prompt length in tokens: 512, 512:64 (normal, stddev), or 256-768 (uniform).
    #[arg(long, default_value = "512")]
    pub input_tokens: String,
    /// max_tokens per request, same forms as --input-tokens.
    #[arg(long, default_value = "256")]
    pub output_tokens: String,
    /// Tokens of shared prefix at the start of each prompt, and how many distinct prefixes.
    #[arg(long, default_value_t = 0)]
    pub prefix_tokens: u32,
    #[arg(long, default_value_t = 1)]
    pub prefix_groups: u32,
    /// Every request runs to max_tokens (no natural stop).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Write requests.jsonl, series.jsonl and the final metrics.prom here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// With --out: `client/` holds only what shard I of N (`bench --shard I/N`) would have recorded of this one
    /// simulated run, on a clock of its own, for `bench merge` to be checked against the whole run.
    #[arg(long, value_name = "I/N", value_parser = parse_shard, requires = "out")]
    pub shard: Option<ShardSpec>,
    #[arg(long, value_enum, default_value = "term")]
    pub format: Format,
    /// Instead: probe the simulated server as `diagnose` would (one user, then --concurrency users, with the
    /// scenario's workload) on the discrete-event clock, and print the diagnosis.
    #[arg(long)]
    pub diagnose: bool,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// The server to watch: its `/metrics` (or --metrics-url) is scraped every --interval.
    #[arg(
        long,
        required_unless_present = "prometheus",
        conflicts_with = "prometheus"
    )]
    pub url: Option<String>,
    /// Watch the fleet through the Prometheus that scrapes it instead (e.g. http://prometheus:9090).
    #[arg(long)]
    pub prometheus: Option<String>,
    /// Which series to read from --prometheus, e.g. '{namespace="llm"}'.
    #[arg(long, default_value = "", requires = "prometheus")]
    pub selector: String,
    /// The label that tells pods apart (with --prometheus; `instance` is used when no series has it).
    #[arg(long, default_value = "pod", requires = "prometheus")]
    pub group_by: String,
    /// How often to scrape (or query Prometheus) and diagnose again.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub interval: Duration,
    /// The span each diagnosis judges: older scrapes drop out of it (with --prometheus, the range of its queries).
    #[arg(long, value_parser = parse_duration, default_value = "1m")]
    pub window: Duration,
    /// The server's metrics URL (default: the --url's host with `/metrics`).
    #[arg(long, requires = "url")]
    pub metrics_url: Option<String>,
    /// Read the server's metrics as this dialect (vllm_v1, sglang, llamacpp, …) instead of detecting it.
    #[arg(long)]
    pub dialect: Option<String>,
    /// Also send a tiny single-user probe every interval (a few short requests), for client-side latency.
    #[arg(long, requires = "url")]
    pub probe: bool,
    /// The model the probe asks for (default: the first of /v1/models).
    #[arg(long, requires = "probe")]
    pub model: Option<String>,
    /// API key sent as a bearer token (scrapes and probe); never printed or written.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Take two scrapes --interval apart (or one Prometheus window), print the findings and exit: 0 none
    /// critical, 1 a critical finding, 2 the server or Prometheus could not be read.
    #[arg(long)]
    pub once: bool,
    /// `tui`: the live view (plain text with --once); `jsonl`: a JSON line each time a finding appears, clears or
    /// changes severity, or scraping fails or recovers.
    #[arg(long, value_enum, default_value = "tui")]
    pub format: WatchFormat,
    /// A TOML file overriding the playbook's thresholds.
    #[arg(long)]
    pub thresholds: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum WatchFormat {
    Tui,
    Jsonl,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn interval_in_plain_seconds_is_accepted() {
        assert_eq!(parse_duration("4"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["-1", "nan", "inf", "4 parsecs"] {
            assert!(parse_duration(bad).is_err(), "{bad} must be refused");
        }
    }
}
