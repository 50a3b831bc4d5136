//! vLLM's own log lines, byte for byte (line prefix, start-up capacity lines, the periodic stats line), so the
//! simulator's log reads like a real vLLM 0.32 GPU server's to the diagnoser's log parsers.

use std::collections::VecDeque;
use std::fmt::Write;

use infer_doctor_core::units::with_thousands_separators;

use crate::metrics::{StepStats, write_python_float};

const BYTES_PER_GIB: f64 = (1_u64 << 30) as f64;

/// vLLM's prefix-cache hit rate in the stats line covers the most recent this-many requests, not all time.
const PREFIX_HIT_RATE_WINDOW_REQUESTS: u64 = 1000;

/// Where in vLLM 0.32's source each line is logged; the fixture's numbers where it shows the line, else the
/// nearest upstream version read (`research/server_signals.md` §2.3).
const SITE_BANNER: Site = Site::new("api_utils.py", 347);
const SITE_NON_DEFAULT_ARGS: Site = Site::new("api_utils.py", 286);
const SITE_MAX_MODEL_LEN: Site = Site::new("model.py", 2152);
const SITE_MODEL_LOADING: Site = Site::new("gpu_model_runner.py", 5102);
const SITE_AVAILABLE_KV_MEMORY: Site = Site::new("gpu_worker.py", 463);
const SITE_KV_CACHE_SIZE: Site = Site::new("kv_cache_utils.py", 2327);
const SITE_ENGINE_INIT: Site = Site::new("core.py", 402);
const SITE_SERVER_START: Site = Site::new("entry.py", 140);
const SITE_STATS: Site = Site::new("loggers.py", 335);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

/// Which vLLM process writes a line; its tag opens the line, as in `(APIServer pid=24678)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    ApiServer,
    EngineCore,
    /// The GPU worker; vLLM 0.32 runs it as its own process even with one GPU.
    Worker,
}

impl Process {
    pub fn tag(self) -> &'static str {
        match self {
            Process::ApiServer => "APIServer",
            Process::EngineCore => "EngineCore",
            Process::Worker => "Worker",
        }
    }
}

/// The simulated server's process ids, one per vLLM process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pids {
    pub api_server: u32,
    pub engine_core: u32,
    pub worker: u32,
}

impl Pids {
    fn of(&self, process: Process) -> u32 {
        match process {
            Process::ApiServer => self.api_server,
            Process::EngineCore => self.engine_core,
            Process::Worker => self.worker,
        }
    }
}

/// A source location, printed as `[file.py:line]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    pub file: &'static str,
    pub line: u32,
}

impl Site {
    pub const fn new(file: &'static str, line: u32) -> Site {
        Site { file, line }
    }
}

/// One log record: who logs it, at what level, from where, and the message.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    pub process: Process,
    pub level: Level,
    pub site: Site,
    pub message: String,
}

impl LogRecord {
    fn new(process: Process, site: Site, message: String) -> LogRecord {
        LogRecord {
            process,
            level: Level::Info,
            site,
            message,
        }
    }

    /// The record as vLLM prints it at `unix_s` (UTC): every line of a multi-line message gets its own prefix,
    /// as vLLM's formatter does. Lines are joined by `\n`, with no trailing newline.
    pub fn render(&self, pids: &Pids, unix_s: f64) -> String {
        let mut prefix = String::with_capacity(64);
        let _ = write!(
            prefix,
            "({} pid={}) {} {} [{}:{}] ",
            self.process.tag(),
            pids.of(self.process),
            self.level.name(),
            timestamp(unix_s),
            self.site.file,
            self.site.line,
        );
        let mut out = String::with_capacity(prefix.len() + self.message.len() + 1);
        for (i, line) in self.message.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&prefix);
            out.push_str(line);
        }
        out
    }
}

/// vLLM's `%m-%d %H:%M:%S` for a unix time, in UTC (the simulator's "local" zone). Non-finite input reads as
/// the epoch; times are clamped to about ±30 million years so the arithmetic cannot overflow.
pub fn timestamp(unix_s: f64) -> String {
    const LIMIT_S: f64 = 1e15;
    let seconds = if unix_s.is_finite() {
        // Python's logging truncates the fractional second.
        unix_s.floor().clamp(-LIMIT_S, LIMIT_S) as i64
    } else {
        0
    };
    let second_of_day = seconds.rem_euclid(86_400);
    let (month, day) = month_and_day(seconds.div_euclid(86_400));
    format!(
        "{month:02}-{day:02} {:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Month and day of a day count since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's
/// `civil_from_days`, counting from a March-based year so leap days fall last).
fn month_and_day(days_since_epoch: i64) -> (i64, i64) {
    let shifted = days_since_epoch + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    (month, day)
}

/// vLLM's `format_gib`: `round(bytes / GiB, 2)` printed with `%s`, so `6.9`, `41.98`, `10.0`.
fn format_gib(bytes: u64) -> String {
    let gib = bytes as f64 / BYTES_PER_GIB;
    // `{:.2}` rounds the exact binary value half-to-even, as Python's `round` does.
    let rounded: f64 = format!("{gib:.2}").parse().unwrap_or(gib);
    let mut out = String::new();
    let _ = write_python_float(&mut out, rounded);
    out
}

/// A Python value as `repr` prints it, for the `non-default args` dict.
#[derive(Clone, Debug, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<PyValue>),
}

impl PyValue {
    fn write_repr(&self, out: &mut String) {
        match self {
            PyValue::None => out.push_str("None"),
            PyValue::Bool(true) => out.push_str("True"),
            PyValue::Bool(false) => out.push_str("False"),
            PyValue::Int(n) => {
                let _ = write!(out, "{n}");
            }
            PyValue::Float(x) => {
                let _ = write_python_float(out, *x);
            }
            PyValue::Str(s) => write_python_str_repr(out, s),
            PyValue::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_repr(out);
                }
                out.push(']');
            }
        }
    }
}

/// Python's `repr(str)`: single quotes unless only double quotes avoid escaping; control characters escaped.
/// (Python also escapes non-printable non-ASCII such as U+2028; those are rare in arguments and kept as is.)
fn write_python_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// The ASCII-art banner with version and model the API server logs first (one record, six lines).
pub fn banner(version: &str, model: &str) -> LogRecord {
    // vLLM joins the art with "\r\n" and its formatter splits on "\n", so five lines end in a carriage return.
    let message = format!(
        "\r\n       █     █     █▄   ▄█\r\n ▄▄ ▄█ █     █     █ ▀▄▀ █  version {version}\r\n  █▄█▀ █     █     █     █  model   {model}\r\n   ▀▀  ▀▀▀▀▀ ▀▀▀▀▀ ▀     ▀\r\n"
    );
    LogRecord::new(Process::ApiServer, SITE_BANNER, message)
}

/// `non-default args: {...}`: the command-line arguments that differ from vLLM's defaults, in the order given.
pub fn non_default_args(args: &[(&str, PyValue)]) -> LogRecord {
    let mut message = String::from("non-default args: {");
    for (i, (key, value)) in args.iter().enumerate() {
        if i > 0 {
            message.push_str(", ");
        }
        write_python_str_repr(&mut message, key);
        message.push_str(": ");
        value.write_repr(&mut message);
    }
    message.push('}');
    LogRecord::new(Process::ApiServer, SITE_NON_DEFAULT_ARGS, message)
}

/// `Using max model len N`.
pub fn max_model_len(max_model_len: u32) -> LogRecord {
    LogRecord::new(
        Process::ApiServer,
        SITE_MAX_MODEL_LEN,
        format!("Using max model len {max_model_len}"),
    )
}

/// `Model loading took X GiB memory and S seconds`, logged by the worker once weights are on the GPU.
pub fn model_loading(weights_bytes: u64, seconds: f64) -> LogRecord {
    LogRecord::new(
        Process::Worker,
        SITE_MODEL_LOADING,
        format!(
            "Model loading took {} GiB memory and {:.6} seconds",
            format_gib(weights_bytes),
            finite_or_zero(seconds)
        ),
    )
}

/// `Available KV cache memory: X GiB`, the worker's memory-profiling result.
pub fn available_kv_cache_memory(bytes: u64) -> LogRecord {
    LogRecord::new(
        Process::Worker,
        SITE_AVAILABLE_KV_MEMORY,
        format!("Available KV cache memory: {} GiB", format_gib(bytes)),
    )
}

/// `GPU KV cache size: N tokens, Maximum concurrency for L tokens per request: C.CCx` (one line in vLLM 0.32).
pub fn kv_cache_size(tokens: u64, max_model_len: u32, max_concurrency: f64) -> LogRecord {
    LogRecord::new(
        Process::EngineCore,
        SITE_KV_CACHE_SIZE,
        format!(
            "GPU KV cache size: {} tokens, Maximum concurrency for {} tokens per request: {:.2}x",
            with_thousands_separators(tokens),
            with_thousands_separators(u64::from(max_model_len)),
            finite_or_zero(max_concurrency)
        ),
    )
}

/// `init engine (profile, create kv cache, warmup model) took S s`.
pub fn engine_init_took(seconds: f64) -> LogRecord {
    LogRecord::new(
        Process::EngineCore,
        SITE_ENGINE_INIT,
        format!(
            "init engine (profile, create kv cache, warmup model) took {:.2} s",
            finite_or_zero(seconds)
        ),
    )
}

/// `Starting vLLM server on http://HOST:PORT`.
pub fn server_started(host: &str, port: u16) -> LogRecord {
    LogRecord::new(
        Process::ApiServer,
        SITE_SERVER_START,
        format!("Starting vLLM server on http://{host}:{port}"),
    )
}

/// What the periodic stats line reports for one interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatsLine {
    pub engine_index: u32,
    /// Prompt tokens computed per second over the interval (prefix-cache hits excluded).
    pub prompt_throughput: f64,
    pub generation_throughput: f64,
    pub running: u64,
    pub waiting_capacity: u64,
    pub waiting_deferred: u64,
    /// Preemptions during the interval.
    pub preemptions: u64,
    /// 0–1.
    pub kv_usage: f64,
    /// 0–1, over the most recent 1000 requests.
    pub prefix_cache_hit_rate: f64,
}

/// The periodic stats line. `Waiting` counts deferred requests too; `Deferred` and `Preemptions` appear only
/// when non-zero, as in current vLLM.
pub fn stats(line: &StatsLine) -> LogRecord {
    let mut message = String::with_capacity(200);
    let _ = write!(
        message,
        "Engine {:03}: Avg prompt throughput: {:.1} tokens/s, Avg generation throughput: {:.1} tokens/s, Running: {} reqs, Waiting: {} reqs",
        line.engine_index,
        finite_or_zero(line.prompt_throughput),
        finite_or_zero(line.generation_throughput),
        line.running,
        line.waiting_capacity.saturating_add(line.waiting_deferred),
    );
    if line.waiting_deferred > 0 {
        let _ = write!(message, ", Deferred: {} reqs", line.waiting_deferred);
    }
    if line.preemptions > 0 {
        let _ = write!(message, ", Preemptions: {}", line.preemptions);
    }
    let _ = write!(
        message,
        ", GPU KV cache usage: {:.1}%, Prefix cache hit rate: {:.1}%",
        finite_or_zero(line.kv_usage * 100.0),
        finite_or_zero(line.prefix_cache_hit_rate * 100.0),
    );
    LogRecord::new(Process::ApiServer, SITE_STATS, message)
}

/// Keeps a log line parseable (`nan` would not be) when a caller hands in a non-finite number.
fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// Accumulates what one stats interval reports, the way vLLM's `LoggingStatLogger` does.
#[derive(Clone, Debug)]
pub struct StatsWindow {
    engine_index: u32,
    interval_start_s: f64,
    computed_prompt_tokens: u64,
    generation_tokens: u64,
    preemptions: u64,
    previous_prompt_throughput: f64,
    previous_generation_throughput: f64,
    /// (requests, queries, hits) per step that admitted new requests, oldest first.
    prefix_lookups: VecDeque<(u64, u64, u64)>,
    prefix_requests: u64,
    prefix_queries: u64,
    prefix_hits: u64,
}

impl StatsWindow {
    /// At engine start-up.
    pub fn new(engine_index: u32, now_s: f64) -> StatsWindow {
        StatsWindow {
            engine_index,
            interval_start_s: now_s,
            computed_prompt_tokens: 0,
            generation_tokens: 0,
            preemptions: 0,
            previous_prompt_throughput: 0.0,
            previous_generation_throughput: 0.0,
            prefix_lookups: VecDeque::new(),
            prefix_requests: 0,
            prefix_queries: 0,
            prefix_hits: 0,
        }
    }

    /// Once per engine step, with the `StepStats` given to the metrics and the tokens the step emitted.
    pub fn record_step(&mut self, step: &StepStats, generated_tokens: u64) {
        self.computed_prompt_tokens = self
            .computed_prompt_tokens
            .saturating_add(step.computed_prefill_tokens);
        self.generation_tokens = self.generation_tokens.saturating_add(generated_tokens);
        self.preemptions = self.preemptions.saturating_add(step.preemptions);
        // Steps that admitted nothing are not recorded, so they cannot push real lookups out of the window.
        if step.prefix_cache_requests == 0 {
            return;
        }
        self.prefix_lookups.push_back((
            step.prefix_cache_requests,
            step.prefix_cache_queries,
            step.prefix_cache_hits,
        ));
        self.prefix_requests = self
            .prefix_requests
            .saturating_add(step.prefix_cache_requests);
        self.prefix_queries = self
            .prefix_queries
            .saturating_add(step.prefix_cache_queries);
        self.prefix_hits = self.prefix_hits.saturating_add(step.prefix_cache_hits);
        // The newest step always stays, even if it alone exceeds the window.
        while self.prefix_lookups.len() > 1
            && self.prefix_requests > PREFIX_HIT_RATE_WINDOW_REQUESTS
        {
            if let Some((requests, queries, hits)) = self.prefix_lookups.pop_front() {
                self.prefix_requests = self.prefix_requests.saturating_sub(requests);
                self.prefix_queries = self.prefix_queries.saturating_sub(queries);
                self.prefix_hits = self.prefix_hits.saturating_sub(hits);
            }
        }
    }

    /// Every stats interval (vLLM's `VLLM_LOG_STATS_INTERVAL`, 10 s): closes the interval and returns its line,
    /// or `None` when this and the previous interval had no throughput (vLLM then logs at DEBUG, which its
    /// default INFO level hides).
    pub fn take(
        &mut self,
        now_s: f64,
        running: u64,
        waiting_capacity: u64,
        waiting_deferred: u64,
        kv_usage: f64,
    ) -> Option<LogRecord> {
        let elapsed_s = now_s - self.interval_start_s;
        let per_second = |tokens: u64| {
            if elapsed_s > 0.0 {
                tokens as f64 / elapsed_s
            } else {
                0.0
            }
        };
        let prompt_throughput = per_second(self.computed_prompt_tokens);
        let generation_throughput = per_second(self.generation_tokens);
        let idle = prompt_throughput == 0.0
            && generation_throughput == 0.0
            && self.previous_prompt_throughput == 0.0
            && self.previous_generation_throughput == 0.0;
        let line = StatsLine {
            engine_index: self.engine_index,
            prompt_throughput,
            generation_throughput,
            running,
            waiting_capacity,
            waiting_deferred,
            preemptions: self.preemptions,
            kv_usage,
            prefix_cache_hit_rate: if self.prefix_queries == 0 {
                0.0
            } else {
                self.prefix_hits as f64 / self.prefix_queries as f64
            },
        };
        self.interval_start_s = now_s;
        self.computed_prompt_tokens = 0;
        self.generation_tokens = 0;
        self.preemptions = 0;
        self.previous_prompt_throughput = prompt_throughput;
        self.previous_generation_throughput = generation_throughput;
        (!idle).then(|| stats(&line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN_LOG: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/vllm_cpu/startup_and_run.log"
    ));
    const PEER_LOG: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/vllm_cpu/startup_warm_cache_and_peer_runs.log"
    ));

    const FIXTURE_PIDS: Pids = Pids {
        api_server: 24678,
        engine_core: 25168,
        worker: 25797,
    };

    /// 2026-11-22 00:00:00 UTC; the fixture's server clock was UTC (its `_created` samples agree).
    const FIXTURE_DAY: f64 = 1_795_305_600.0;

    fn at(hours: u32, minutes: u32, seconds: u32) -> f64 {
        FIXTURE_DAY + f64::from(hours * 3600 + minutes * 60 + seconds) + 0.731
    }

    /// The fixture ran on the CPU backend, which says "CPU" where a GPU server says "GPU".
    fn as_cpu_backend(line: &str) -> String {
        line.replace("GPU KV cache", "CPU KV cache")
    }

    fn assert_in_fixture(fixture: &str, rendered: &str) {
        for line in rendered.split('\n') {
            assert!(
                fixture.split('\n').any(|l| l == line),
                "not in fixture: {line:?}"
            );
        }
    }

    #[test]
    fn banner_matches_the_fixture_byte_for_byte() {
        let rendered =
            banner("0.32.0", "<workdir>/tiny-model/hf").render(&FIXTURE_PIDS, at(11, 0, 36));
        let expected: Vec<&str> = RUN_LOG.split('\n').skip(5).take(6).collect();
        assert_eq!(rendered.split('\n').collect::<Vec<_>>(), expected);
    }

    #[test]
    fn startup_lines_match_the_fixture() {
        let args = non_default_args(&[
            ("host", PyValue::Str("127.0.0.1".into())),
            ("port", PyValue::Int(8001)),
            ("model", PyValue::Str("<workdir>/tiny-model/hf".into())),
            ("dtype", PyValue::Str("bfloat16".into())),
            ("max_model_len", PyValue::Int(2048)),
            (
                "served_model_name",
                PyValue::List(vec![PyValue::Str("tiny".into())]),
            ),
            ("load_format", PyValue::Str("dummy".into())),
            ("max_num_seqs", PyValue::Int(8)),
        ]);
        assert_in_fixture(RUN_LOG, &args.render(&FIXTURE_PIDS, at(11, 0, 36)));
        assert_in_fixture(
            RUN_LOG,
            &max_model_len(2048).render(&FIXTURE_PIDS, at(11, 0, 36)),
        );
        assert_in_fixture(
            RUN_LOG,
            &as_cpu_backend(
                &kv_cache_size(262_144, 2048, 128.0).render(&FIXTURE_PIDS, at(11, 2, 46)),
            ),
        );
        assert_in_fixture(
            RUN_LOG,
            &engine_init_took(41.92).render(&FIXTURE_PIDS, at(11, 2, 47)),
        );
        assert_in_fixture(
            RUN_LOG,
            &server_started("127.0.0.1", 8001).render(&FIXTURE_PIDS, at(11, 2, 49)),
        );
    }

    #[test]
    fn gpu_only_lines_follow_the_upstream_formats() {
        let pids = Pids {
            api_server: 1,
            engine_core: 2,
            worker: 3,
        };
        assert_eq!(
            available_kv_cache_memory(45_078_708_224).render(&pids, 0.0),
            "(Worker pid=3) INFO 01-01 00:00:00 [gpu_worker.py:463] Available KV cache memory: 41.98 GiB"
        );
        assert_eq!(
            available_kv_cache_memory(10 << 30).message,
            "Available KV cache memory: 10.0 GiB"
        );
        assert_eq!(
            model_loading(15_032_385_536, 3.5).message,
            "Model loading took 14.0 GiB memory and 3.500000 seconds"
        );
        assert_eq!(
            kv_cache_size(1_234_567, 131_072, 9.419_6).message,
            "GPU KV cache size: 1,234,567 tokens, Maximum concurrency for 131,072 tokens per request: 9.42x"
        );
    }

    fn fixture_stats(
        prompt_throughput: f64,
        generation_throughput: f64,
        running: u64,
        kv_usage: f64,
    ) -> StatsLine {
        StatsLine {
            engine_index: 0,
            prompt_throughput,
            generation_throughput,
            running,
            waiting_capacity: 0,
            waiting_deferred: 0,
            preemptions: 0,
            kv_usage,
            prefix_cache_hit_rate: 0.0,
        }
    }

    #[test]
    fn stats_lines_match_both_fixtures() {
        let pids = FIXTURE_PIDS;
        for (time, line) in [
            (at(11, 4, 10), fixture_stats(2.4, 3.2, 0, 0.0)),
            (at(11, 4, 20), fixture_stats(8.24, 103.66, 4, 0.002)),
            (at(11, 4, 30), fixture_stats(31.4, 382.7, 0, 0.0)),
            (at(11, 4, 40), fixture_stats(0.0, 0.0, 0, 0.0)),
            (at(11, 5, 40), fixture_stats(64.2, 64.0, 0, 0.0)),
            (at(11, 5, 50), fixture_stats(7.5, 180.7, 6, 0.0088)),
        ] {
            assert_in_fixture(RUN_LOG, &as_cpu_backend(&stats(&line).render(&pids, time)));
        }
        let peer_pids = Pids {
            api_server: 3050,
            ..pids
        };
        assert_in_fixture(
            PEER_LOG,
            &as_cpu_backend(
                &stats(&fixture_stats(51.2, 51.2, 0, 0.0)).render(&peer_pids, at(11, 38, 56)),
            ),
        );
    }

    #[test]
    fn stats_line_optional_fields_appear_only_when_non_zero() {
        let line = StatsLine {
            engine_index: 1,
            prompt_throughput: 1234.56,
            generation_throughput: 0.05,
            running: 256,
            waiting_capacity: 40,
            waiting_deferred: 2,
            preemptions: 7,
            kv_usage: 0.9999,
            prefix_cache_hit_rate: 0.4567,
        };
        assert_eq!(
            stats(&line).message,
            "Engine 001: Avg prompt throughput: 1234.6 tokens/s, Avg generation throughput: 0.1 tokens/s, Running: 256 reqs, Waiting: 42 reqs, Deferred: 2 reqs, Preemptions: 7, GPU KV cache usage: 100.0%, Prefix cache hit rate: 45.7%"
        );
        let nan = StatsLine {
            prompt_throughput: f64::NAN,
            kv_usage: f64::INFINITY,
            waiting_deferred: 0,
            preemptions: 0,
            ..line
        };
        assert_eq!(
            stats(&nan).message,
            "Engine 001: Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 0.1 tokens/s, Running: 256 reqs, Waiting: 40 reqs, GPU KV cache usage: 0.0%, Prefix cache hit rate: 45.7%"
        );
    }

    #[test]
    fn stats_window_reports_interval_throughput_and_goes_quiet_when_idle() {
        let mut window = StatsWindow::new(0, 100.0);
        window.record_step(
            &StepStats {
                computed_prefill_tokens: 820,
                preemptions: 2,
                prefix_cache_requests: 4,
                prefix_cache_queries: 1000,
                prefix_cache_hits: 250,
            },
            37,
        );
        window.record_step(&StepStats::default(), 1000);
        let first = window
            .take(110.0, 3, 1, 0, 0.5)
            .expect("busy interval logs");
        assert_eq!(
            first.message,
            "Engine 000: Avg prompt throughput: 82.0 tokens/s, Avg generation throughput: 103.7 tokens/s, Running: 3 reqs, Waiting: 1 reqs, Preemptions: 2, GPU KV cache usage: 50.0%, Prefix cache hit rate: 25.0%"
        );
        assert_eq!(first.level, Level::Info);
        // The interval after a busy one still logs its zeros; the one after that is idle.
        let second = window
            .take(120.0, 0, 0, 0, 0.0)
            .expect("follows a busy interval");
        assert!(second.message.contains(
            "Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 0.0 tokens/s"
        ));
        assert!(!second.message.contains("Preemptions"));
        assert!(second.message.ends_with("Prefix cache hit rate: 25.0%"));
        assert_eq!(window.take(130.0, 0, 0, 0, 0.0), None);
        // A zero-length interval divides by nothing.
        assert_eq!(window.take(130.0, 0, 0, 0, 0.0), None);
    }

    #[test]
    fn prefix_hit_rate_covers_the_most_recent_thousand_requests() {
        let mut window = StatsWindow::new(0, 0.0);
        let admit = |window: &mut StatsWindow, requests, queries, hits| {
            window.record_step(
                &StepStats {
                    prefix_cache_requests: requests,
                    prefix_cache_queries: queries,
                    prefix_cache_hits: hits,
                    ..StepStats::default()
                },
                1,
            );
        };
        admit(&mut window, 600, 6000, 6000);
        admit(&mut window, 400, 4000, 0);
        let rate = |window: &mut StatsWindow, now| {
            window
                .take(now, 0, 0, 0, 0.0)
                .expect("tokens were generated")
                .message
        };
        assert!(rate(&mut window, 1.0).ends_with("Prefix cache hit rate: 60.0%"));
        // One more request pushes the first 600 out of the window.
        admit(&mut window, 1, 10, 10);
        assert!(rate(&mut window, 2.0).ends_with("Prefix cache hit rate: 0.2%"));
        // A single step bigger than the window is kept on its own.
        admit(&mut window, 5000, 100, 50);
        assert!(rate(&mut window, 3.0).ends_with("Prefix cache hit rate: 50.0%"));
    }

    #[test]
    fn timestamps_are_utc_month_day_and_time() {
        for (unix_s, expected) in [
            (0.0, "01-01 00:00:00"),
            (0.999, "01-01 00:00:00"),
            (-1.0, "12-31 23:59:59"),
            (951_868_799.0, "02-29 23:59:59"),
            (951_868_800.0, "03-01 00:00:00"),
            (1_735_689_599.0, "12-31 23:59:59"),
            (1_795_345_236.5, "11-22 11:00:36"),
            (4_107_542_400.0, "03-01 00:00:00"),
            (f64::NAN, "01-01 00:00:00"),
            (f64::INFINITY, "01-01 00:00:00"),
        ] {
            assert_eq!(timestamp(unix_s), expected, "{unix_s}");
        }
        // Absurd inputs clamp rather than overflow.
        assert_eq!(timestamp(1e300).len(), 14);
        assert_eq!(timestamp(-1e300).len(), 14);
    }

    #[test]
    fn numbers_are_formatted_like_python() {
        assert_eq!(with_thousands_separators(0), "0");
        assert_eq!(with_thousands_separators(999), "999");
        assert_eq!(with_thousands_separators(2048), "2,048");
        assert_eq!(with_thousands_separators(262_144), "262,144");
        assert_eq!(with_thousands_separators(1_000_000), "1,000,000");
        assert_eq!(
            with_thousands_separators(u64::MAX),
            "18,446,744,073,709,551,615"
        );
        assert_eq!(format_gib(7_408_779_264), "6.9");
        assert_eq!(format_gib(0), "0.0");
        assert_eq!(
            kv_cache_size(0, 0, 128.0).message.split(": ").last(),
            Some("128.00x")
        );
    }

    #[test]
    fn python_reprs() {
        let record = non_default_args(&[
            ("a", PyValue::Str("it's".into())),
            ("b", PyValue::Str("say \"hi\" it's".into())),
            ("c", PyValue::Str("tab\there\\ \u{7}".into())),
            ("d", PyValue::Bool(true)),
            ("e", PyValue::None),
            ("f", PyValue::Float(0.92)),
            ("g", PyValue::List(vec![])),
            ("h", PyValue::Int(-3)),
        ]);
        assert_eq!(
            record.message,
            r#"non-default args: {'a': "it's", 'b': 'say "hi" it\'s', 'c': 'tab\there\\ \x07', 'd': True, 'e': None, 'f': 0.92, 'g': [], 'h': -3}"#
        );
    }

    proptest::proptest! {
        #[test]
        fn any_input_gives_well_formed_lines(
            seconds in proptest::num::f64::ANY,
            counts in proptest::num::u64::ANY,
            small in proptest::num::u32::ANY,
        ) {
            proptest::prop_assert_eq!(timestamp(seconds).len(), 14);
            let mut window = StatsWindow::new(small, seconds);
            let step = StepStats {
                computed_prefill_tokens: counts,
                preemptions: counts,
                prefix_cache_requests: counts,
                prefix_cache_queries: counts,
                prefix_cache_hits: counts,
            };
            window.record_step(&step, counts);
            window.record_step(&step, counts);
            let pids = Pids { api_server: small, engine_core: small, worker: small };
            if let Some(record) = window.take(seconds, counts, counts, counts, seconds) {
                proptest::prop_assert!(record.render(&pids, seconds).contains("Engine "));
            }
            let lines = [
                model_loading(counts, seconds),
                available_kv_cache_memory(counts),
                kv_cache_size(counts, small, seconds),
                engine_init_took(seconds),
            ];
            for record in lines {
                proptest::prop_assert!(!record.render(&pids, seconds).contains('\n'));
            }
        }
    }
}
