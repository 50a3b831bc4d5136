//! `infer-doctor logs FILE`: an engine log read as capacity, configuration, a stats timeline and problems, so
//! nobody has to grep vLLM, SGLang or llama.cpp output by hand again.

use std::fmt::Write as _;
use std::io::BufReader;

use anyhow::{Context, anyhow};
use infer_doctor_core::KernelFacts;
use infer_doctor_core::units::with_thousands_separators;
use infer_doctor_host::kernel;
use infer_doctor_observe::logs::{LogReport, ServerKind, read_log};

use crate::args::{Format, LogsArgs};
use crate::{Failure, exit};

/// Stats lines shown in full; longer timelines show their head and tail around a summary.
const TIMELINE_ROWS: usize = 24;

pub fn run(args: &LogsArgs) -> Result<u8, Failure> {
    let name = args.file.display().to_string();
    // Logs can be large: each reader streams the file.
    let open = || std::fs::File::open(&args.file).map(BufReader::new);
    let read = || -> std::io::Result<_> {
        // A kernel log from the GPU host: the driver's XIDs, beside whatever engine lines it also holds.
        Ok((read_log(open()?)?, kernel::read_kernel_log(open()?, &name)?))
    };
    let (report, kernel) = read()
        .with_context(|| format!("reading {name}"))
        .map_err(Failure::usage)?;
    match args.format {
        Format::Json => {
            let mut document = serde_json::to_value(&report)
                .map_err(|e| Failure::usage(anyhow!("rendering JSON: {e}")))?;
            if let Some(kernel) = &kernel {
                document["kernel"] = serde_json::json!(kernel);
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&document)
                    .map_err(|e| Failure::usage(anyhow!("rendering JSON: {e}")))?
            );
        }
        Format::Term => match &kernel {
            Some(kernel) if report.server.is_none() => print!("{}", render_kernel(&name, kernel)),
            Some(kernel) => print!("{}{}", render(&name, &report), render_kernel(&name, kernel)),
            None => print!("{}", render(&name, &report)),
        },
    }
    Ok(exit::OK)
}

/// What a kernel log says about serving: XIDs one line per GPU and code, then the OOM killer's victims and
/// the hung tasks.
fn render_kernel(file: &str, kernel: &KernelFacts) -> String {
    let mut out = if kernel.xids.is_empty() {
        format!("{file}: kernel log, no GPU XID errors\n")
    } else {
        format!("{file}: kernel log, GPU XID errors:\n")
    };
    for x in &kernel.xids {
        let _ = writeln!(
            out,
            "  XID {} on {} ×{} (first at {}): {}",
            x.code, x.bus_id, x.count, x.first_seen, x.message
        );
    }
    for k in &kernel.oom_kills {
        let limit = if k.cgroup_limit {
            "a cgroup's memory limit"
        } else {
            "out of memory"
        };
        let rss = k
            .anon_rss_bytes
            .map(|b| format!(", {:.1} GiB resident", b as f64 / (1u64 << 30) as f64))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  OOM killer ({limit}) killed {} (pid {}){rss} at {}",
            k.process, k.pid, k.seen
        );
    }
    for t in &kernel.hung_tasks {
        let driver = if t.in_gpu_driver {
            ", in the NVIDIA driver"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  hung task {} (pid {}) blocked over {} s ×{}{driver} (first at {})",
            t.process, t.pid, t.blocked_s, t.count, t.first_seen
        );
    }
    out
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn render(file: &str, r: &LogReport) -> String {
    let mut out = String::new();
    let server = match r.server {
        Some(ServerKind::Vllm) => "vLLM",
        Some(ServerKind::Sglang) => "SGLang",
        Some(ServerKind::LlamaCpp) => "llama.cpp",
        None => "no known server",
    };
    let c = &r.configuration;
    let version = c
        .version
        .as_deref()
        .map(|v| format!(" {v}"))
        .unwrap_or_default();
    let engine = c
        .engine
        .as_deref()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{file}: {server}{version}{engine} — {} lines read, {} recognised, {} skipped",
        r.lines.read, r.lines.recognised, r.lines.skipped
    );
    if r.server.is_none() {
        let _ = writeln!(
            out,
            "nothing here looks like vLLM, SGLang or llama.cpp output; is this the engine's own log?"
        );
        render_problems(&mut out, r);
        return out;
    }

    let k = &r.capacity;
    let mut capacity = Vec::new();
    if let Some(tokens) = k.kv_cache_tokens {
        let device = k.kv_cache_device.as_deref().unwrap_or("KV");
        capacity.push(format!(
            "{device} KV cache {} tokens",
            with_thousands_separators(tokens)
        ));
    }
    if let Some(blocks) = k.device_blocks {
        capacity.push(format!("{} blocks", with_thousands_separators(blocks)));
    }
    if let (Some(x), Some(len)) = (k.max_concurrency, k.max_concurrency_tokens_per_request) {
        capacity.push(format!(
            "max concurrency {x:.2}x at {} tokens per request",
            with_thousands_separators(len)
        ));
    }
    if let Some(gib) = k.kv_memory_gib {
        capacity.push(format!("KV memory {gib:.2} GiB"));
    }
    if let Some(n) = k.max_running_requests {
        capacity.push(format!("max running requests {n}"));
    }
    if let (Some(slots), Some(ctx)) = (k.slots, k.context_per_slot) {
        capacity.push(format!(
            "{slots} slots × {} tokens",
            with_thousands_separators(ctx)
        ));
    }
    let _ = writeln!(
        out,
        "capacity: {}",
        if capacity.is_empty() {
            "not in this log (vLLM prints it at start-up; was the start cut off?)".to_string()
        } else {
            capacity.join(", ")
        }
    );

    let mut config = Vec::new();
    if let Some(m) = &c.model {
        config.push(format!("model {m}"));
    }
    if let Some(len) = c.max_model_len {
        config.push(format!("max model len {}", with_thousands_separators(len)));
    }
    if let (Some(s), gib) = (c.model_load_seconds, c.model_memory_gib) {
        config.push(format!(
            "weights loaded in {s:.1} s{}",
            gib.map(|g| format!(" ({g:.2} GiB)")).unwrap_or_default()
        ));
    }
    if let Some(s) = c.graph_capture_seconds {
        config.push(format!("CUDA graphs captured in {s:.1} s"));
    }
    if let Some(s) = c.engine_init_seconds {
        config.push(format!("engine ready in {s:.1} s"));
    }
    if !config.is_empty() {
        let _ = writeln!(out, "configuration: {}", config.join(", "));
    }
    if !c.non_default_args.is_empty() {
        let args: Vec<String> = c
            .non_default_args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(out, "non-default args: {}", args.join(" "));
    }

    render_stats(&mut out, r);
    if !r.requests.is_empty() {
        let timings: Vec<_> = r.requests.iter().map(|p| &p.timing).collect();
        let mean = |f: &dyn Fn(&infer_doctor_observe::logs::RequestTiming) -> Option<f64>| {
            let v: Vec<f64> = timings.iter().filter_map(|t| f(t)).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let rate = |ms: Option<f64>, tokens: Option<u64>| Some(tokens? as f64 / (ms? / 1e3));
        let _ = writeln!(
            out,
            "requests: {} timed; mean prompt eval {} ms ({} tok/s), mean generation {} tok/s",
            timings.len(),
            opt(mean(&|t| t.prompt_ms).map(|v| format!("{v:.1}"))),
            opt(mean(&|t| rate(t.prompt_ms, t.prompt_tokens)).map(|v| format!("{v:.0}"))),
            opt(mean(&|t| rate(t.generation_ms, t.generated_tokens)).map(|v| format!("{v:.1}"))),
        );
    }
    render_problems(&mut out, r);
    if !r.warnings.is_empty() {
        let _ = writeln!(out, "warnings ({} distinct):", r.warnings.len());
        for w in r.warnings.iter().take(10) {
            let _ = writeln!(
                out,
                "  {}× (first at line {}) {}",
                w.count, w.first_line, w.message
            );
        }
    }
    out
}

/// Each problem by the line that says what happened; errors of an orderly shutdown are marked as such.
fn render_problems(out: &mut String, r: &LogReport) {
    if r.problems.is_empty() {
        return;
    }
    let _ = writeln!(out, "problems ({}):", r.problems.len());
    for p in r.problems.iter().take(20) {
        let shutdown = if p.during_shutdown {
            " (during shutdown)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  line {}: {:?}{shutdown}: {}",
            p.message_line, p.kind, p.message
        );
        if let Some(headline) = &p.headline {
            let _ = writeln!(out, "    in the record from line {}: {headline}", p.line);
        }
    }
}

fn render_stats(out: &mut String, r: &LogReport) {
    if r.stats.is_empty() {
        let _ = writeln!(
            out,
            "stats: none (vLLM logs them every 10 s unless --disable-log-stats)"
        );
        return;
    }
    let s: Vec<_> = r.stats.iter().map(|p| &p.sample).collect();
    let peak = |f: &dyn Fn(&&infer_doctor_observe::logs::StatsSample) -> Option<f64>| {
        s.iter()
            .filter_map(f)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    // Only a log that can report preemptions can report none.
    let preemptions = r.preemptions().map_or_else(
        || "preemptions not reported".to_string(),
        |n| format!("{n} preemptions"),
    );
    let _ = writeln!(
        out,
        "stats: {} lines; peak running {}, peak waiting {}, peak KV usage {}, {preemptions}, \
         peak generation {} tok/s",
        s.len(),
        opt(peak(&|x| x.running.map(|v| v as f64))),
        opt(peak(&|x| x.waiting.map(|v| v as f64))),
        opt(peak(&|x| x.kv_usage).map(|v| format!("{:.1}%", v * 100.0))),
        opt(peak(&|x| x.generation_throughput).map(|v| format!("{v:.1}"))),
    );
    let _ = writeln!(
        out,
        "  {:<16} {:>11} {:>10} {:>8} {:>8} {:>8} {:>7} {:>7}",
        "time", "prompt t/s", "gen t/s", "running", "waiting", "preempt", "KV %", "hit %"
    );
    let row = |p: &infer_doctor_observe::logs::StatsPoint| {
        let x = &p.sample;
        let pct = |v: Option<f64>| opt(v.map(|v| format!("{:.1}", v * 100.0)));
        format!(
            "  {:<16} {:>11} {:>10} {:>8} {:>8} {:>8} {:>7} {:>7}",
            p.time.as_ref().map_or("-", |t| t.text.as_str()),
            opt(x.prompt_throughput.map(|v| format!("{v:.1}"))),
            opt(x.generation_throughput.map(|v| format!("{v:.1}"))),
            opt(x.running),
            opt(x.waiting),
            opt(x.preemptions),
            pct(x.kv_usage),
            pct(x.prefix_cache_hit_rate),
        )
    };
    let n = r.stats.len();
    for (i, p) in r.stats.iter().enumerate() {
        if n > TIMELINE_ROWS && i == TIMELINE_ROWS / 2 {
            let _ = writeln!(out, "  … {} more lines …", n - TIMELINE_ROWS);
        }
        if n <= TIMELINE_ROWS || i < TIMELINE_ROWS / 2 || i >= n - TIMELINE_ROWS / 2 {
            let _ = writeln!(out, "{}", row(p));
        }
    }
}
