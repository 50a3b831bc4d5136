//! Engine logs → typed events and a report: vLLM (V1 and V0), SGLang and llama.cpp `llama-server`, read one
//! line at a time so a multi-gigabyte log never sits in memory. Unknown lines are counted and skipped.

mod events;
mod llamacpp;
mod prefix;
mod report;
mod scan;
mod sglang;
mod traceback;
mod vllm;

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, BufRead};

pub use events::{EventKind, LogEvent, RequestTiming, ServerKind, StatsSample, StatsSource};
pub use prefix::{Clock, Level, LogTime};
pub use report::{
    Capacity, Configuration, LineCounts, LogReport, Problem, ProblemKind, RequestPoint, StatsPoint,
    WarningSummary,
};

use llamacpp::{LlamaMessage, TimingPart};
use prefix::{LinePrefix, PrefixStyle, TimeResolver};
use traceback::OpenBlock;

/// Distinct warning messages a report keeps; a noisy log repeats a few, a broken one could print millions.
pub const MAX_DISTINCT_WARNINGS: usize = 1000;

/// Error records still open at once (one per process is typical); beyond this the oldest is closed.
const MAX_OPEN_ERRORS: usize = 16;

/// llama.cpp timing blocks still waiting for their `total time` line.
const MAX_OPEN_TIMINGS: usize = 256;

/// Parses a whole log held in memory.
pub fn parse_log(text: &str) -> LogReport {
    let mut parser = LogParser::new();
    for line in text.lines() {
        parser.push_line(line);
    }
    parser.finish()
}

/// Parses a log from a reader, line by line; bytes that are not UTF-8 are replaced, never fatal.
pub fn read_log<R: BufRead>(mut reader: R) -> io::Result<LogReport> {
    let mut parser = LogParser::new();
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        if reader.read_until(b'\n', &mut buffer)? == 0 {
            break;
        }
        parser.push_line(&String::from_utf8_lossy(&buffer));
    }
    Ok(parser.finish())
}

/// A streaming log parser: feed it lines, take events as they complete, and the report at the end.
#[derive(Debug, Default)]
pub struct LogParser {
    line_number: u64,
    recognised: u64,
    times: TimeResolver,
    open_errors: Vec<OpenError>,
    open_timings: Vec<OpenTiming>,
    report: LogReport,
    /// Recognised events per server.
    server_votes: HashMap<ServerKind, u64>,
    /// Lines per server whose prefix is that server's own; decides only when no event does.
    prefix_votes: HashMap<ServerKind, u64>,
    warning_index: HashMap<String, usize>,
    /// Whether the server announced its shutdown (and has not started again since): errors printed while it
    /// tears down are its processes being killed, not a crash.
    shutting_down: bool,
}

/// An error record and what its first line said about where and when.
#[derive(Debug)]
struct OpenError {
    block: OpenBlock,
    time: Option<LogTime>,
    level: Option<Level>,
    during_shutdown: bool,
}

/// vLLM's own process tags (`(EngineCore_DP0 pid=8884) `): its engine and worker processes print unlevelled
/// tracebacks under them, so the tag alone tells the server.
const VLLM_PROCESS_NAMES: [&str; 4] = ["APIServer", "EngineCore", "VllmWorker", "Worker"];

/// The first line of an orderly shutdown: vLLM's `[shutdown] ...` lines (2026), uvicorn's and older vLLM's
/// `Shutting down ...`.
fn is_shutdown_notice(message: &str) -> bool {
    message.starts_with("[shutdown]") || message.starts_with("Shutting down")
}

/// A llama.cpp timing block before its last line.
#[derive(Debug)]
struct OpenTiming {
    line: u64,
    time: Option<LogTime>,
    process: Option<String>,
    timing: RequestTiming,
}

impl LogParser {
    pub fn new() -> LogParser {
        LogParser::default()
    }

    /// Reads one line (with or without its line ending) and returns the events it completes: usually none or
    /// one; an error record that this line ends comes first. Every event is also added to the report.
    pub fn push_line(&mut self, line: &str) -> Vec<LogEvent> {
        self.line_number += 1;
        let cleaned = clean(line);
        let prefix = prefix::split(&cleaned);
        let time = prefix.time.map(|raw| self.times.resolve(raw));
        let vllm_process = prefix
            .process
            .is_some_and(|name| VLLM_PROCESS_NAMES.iter().any(|own| name.starts_with(own)));
        let prefix_server = match prefix.style {
            Some(PrefixStyle::Vllm) => Some(ServerKind::Vllm),
            Some(PrefixStyle::Sglang) => Some(ServerKind::Sglang),
            Some(PrefixStyle::LlamaCpp) => Some(ServerKind::LlamaCpp),
            _ if vllm_process => Some(ServerKind::Vllm),
            // vLLM and SGLang both serve HTTP through uvicorn.
            Some(PrefixStyle::Uvicorn) | None => None,
        };
        if let Some(server) = prefix_server {
            *self.prefix_votes.entry(server).or_default() += 1;
        }
        let mut completed = Vec::new();

        if let Some(index) = self
            .open_errors
            .iter()
            .position(|open| open.block.is_same_process(&prefix))
        {
            if self.open_errors[index]
                .block
                .try_extend(&prefix, self.line_number)
            {
                self.recognised += 1;
                return completed;
            }
            let closed = self.open_errors.remove(index);
            completed.push(self.close_error(closed));
        }

        let recognised = if let Some(block) = OpenBlock::start(&prefix, self.line_number) {
            if self.open_errors.len() == MAX_OPEN_ERRORS {
                let oldest = self.open_errors.remove(0);
                completed.push(self.close_error(oldest));
            }
            self.open_errors.push(OpenError {
                block,
                time,
                level: prefix.level,
                during_shutdown: self.shutting_down,
            });
            true
        } else {
            if is_shutdown_notice(prefix.message) {
                self.shutting_down = true;
            }
            self.parse_message(&prefix, time, &mut completed)
        };
        if recognised {
            self.recognised += 1;
        }
        completed
    }

    /// Closes what is still open (error records, timing blocks cut off by the end of the log) and returns
    /// their events; [`LogParser::finish`] does this too.
    pub fn flush(&mut self) -> Vec<LogEvent> {
        let mut completed = Vec::new();
        for open in std::mem::take(&mut self.open_errors) {
            completed.push(self.close_error(open));
        }
        for open in std::mem::take(&mut self.open_timings) {
            completed.push(self.close_timing(open));
        }
        completed
    }

    /// The report over every line pushed.
    pub fn finish(mut self) -> LogReport {
        self.flush();
        let mut report = self.report;
        report.lines = LineCounts {
            read: self.line_number,
            recognised: self.recognised,
            skipped: self.line_number - self.recognised,
        };
        report.server = most_voted(&self.server_votes).or_else(|| most_voted(&self.prefix_votes));
        report
    }

    /// Runs the message through each server's parser; returns whether any recognised it.
    fn parse_message(
        &mut self,
        prefix: &LinePrefix<'_>,
        time: Option<LogTime>,
        completed: &mut Vec<LogEvent>,
    ) -> bool {
        let message = prefix.message;
        let mut kinds = Vec::new();
        // NCCL prints under every engine alike, so it names no server.
        if let Some((_, network)) = message.split_once("NCCL INFO Using network ") {
            kinds.push(EventKind::CollectiveNetwork {
                network: network.trim().to_string(),
            });
            return self.file_events(prefix, time, None, kinds, completed);
        }
        vllm::parse(message, &mut kinds);
        let mut server = Some(ServerKind::Vllm);
        if kinds.is_empty() {
            server = Some(ServerKind::Sglang);
            kinds.extend(sglang::parse(message));
        }
        if kinds.is_empty() {
            server = Some(ServerKind::LlamaCpp);
            match llamacpp::parse(message) {
                Some(LlamaMessage::Event(kind)) => kinds.push(kind),
                Some(LlamaMessage::Timing { slot, task, part }) => {
                    self.add_timing(prefix, time, slot, task, part, completed);
                    return true;
                }
                None => {}
            }
        }
        if kinds.is_empty() && prefix.level == Some(Level::Warning) {
            server = None;
            kinds.push(EventKind::Warning {
                message: message.trim().to_string(),
            });
        }
        self.file_events(prefix, time, server, kinds, completed)
    }

    /// Records the events one message gave and hands them out; whether there were any.
    fn file_events(
        &mut self,
        prefix: &LinePrefix<'_>,
        time: Option<LogTime>,
        server: Option<ServerKind>,
        kinds: Vec<EventKind>,
        completed: &mut Vec<LogEvent>,
    ) -> bool {
        let recognised = !kinds.is_empty();
        for kind in kinds {
            let event = LogEvent {
                line: self.line_number,
                time: time.clone(),
                level: prefix.level,
                process: prefix.process.map(str::to_string),
                server,
                kind,
            };
            self.record(&event);
            completed.push(event);
        }
        recognised
    }

    /// Adds a line of a llama.cpp timing block to its slot's open block; `total time` completes it.
    fn add_timing(
        &mut self,
        prefix: &LinePrefix<'_>,
        time: Option<LogTime>,
        slot: Option<u64>,
        task: Option<u64>,
        part: TimingPart,
        completed: &mut Vec<LogEvent>,
    ) {
        let index = self
            .open_timings
            .iter()
            .position(|open| open.timing.slot == slot && open.timing.task == task);
        // A part seen twice means the earlier block lost its `total time` line.
        let index = match index {
            Some(index) if !Self::has_part(&self.open_timings[index].timing, part) => index,
            stale => {
                if let Some(stale) = stale {
                    let open = self.open_timings.remove(stale);
                    completed.push(self.close_timing(open));
                }
                if self.open_timings.len() == MAX_OPEN_TIMINGS {
                    let oldest = self.open_timings.remove(0);
                    completed.push(self.close_timing(oldest));
                }
                self.open_timings.push(OpenTiming {
                    line: self.line_number,
                    time,
                    process: prefix.process.map(str::to_string),
                    timing: RequestTiming {
                        slot,
                        task,
                        ..RequestTiming::default()
                    },
                });
                self.open_timings.len() - 1
            }
        };
        part.apply(&mut self.open_timings[index].timing);
        if matches!(part, TimingPart::Total { .. }) {
            let open = self.open_timings.remove(index);
            completed.push(self.close_timing(open));
        }
    }

    fn has_part(timing: &RequestTiming, part: TimingPart) -> bool {
        match part {
            TimingPart::Prompt { .. } => timing.prompt_ms.is_some(),
            TimingPart::Generation { .. } => timing.generation_ms.is_some(),
            TimingPart::Total { .. } => timing.total_ms.is_some(),
        }
    }

    fn close_timing(&mut self, open: OpenTiming) -> LogEvent {
        let event = LogEvent {
            line: open.line,
            time: open.time,
            level: Some(Level::Info),
            process: open.process,
            server: Some(ServerKind::LlamaCpp),
            kind: EventKind::RequestTiming(open.timing),
        };
        self.record(&event);
        event
    }

    fn close_error(&mut self, open: OpenError) -> LogEvent {
        let event = LogEvent {
            line: open.block.first_line,
            time: open.time,
            level: open.level,
            process: open.block.process.clone(),
            server: None,
            kind: open.block.into_event(),
        };
        self.record(&event);
        if open.during_shutdown
            && let Some(problem) = self.report.problems.last_mut()
        {
            problem.during_shutdown = true;
        }
        event
    }

    /// Adds an event to the report.
    fn record(&mut self, event: &LogEvent) {
        if let Some(server) = event.server {
            *self.server_votes.entry(server).or_default() += 1;
        }
        let report = &mut self.report;
        let capacity = &mut report.capacity;
        let configuration = &mut report.configuration;
        match &event.kind {
            EventKind::Version { version, engine } => {
                // A version line opens a start-up: whatever shut down before is running again.
                self.shutting_down = false;
                configuration.version = Some(version.clone());
                if engine.is_some() {
                    configuration.engine.clone_from(engine);
                }
            }
            EventKind::Model { model } => configuration.model = Some(model.clone()),
            EventKind::NonDefaultArgs { args } => configuration.non_default_args.clone_from(args),
            EventKind::EngineConfig { settings } => configuration
                .engine_config
                .extend(settings.iter().map(|(k, v)| (k.clone(), v.clone()))),
            EventKind::MaxModelLen { tokens } => configuration.max_model_len = Some(*tokens),
            EventKind::ModelLoaded {
                memory_gib,
                seconds,
            } => {
                configuration.model_memory_gib = *memory_gib;
                configuration.model_load_seconds = *seconds;
            }
            EventKind::AvailableKvMemory { gib } => capacity.kv_memory_gib = Some(*gib),
            EventKind::KvCacheSize { device, tokens } => {
                capacity.kv_cache_tokens = Some(*tokens);
                capacity.kv_cache_device = Some(device.clone());
            }
            EventKind::MaxConcurrency {
                tokens_per_request,
                concurrency,
            } => {
                capacity.max_concurrency = Some(*concurrency);
                capacity.max_concurrency_tokens_per_request = Some(*tokens_per_request);
            }
            EventKind::CacheBlocks {
                device_blocks,
                cpu_blocks,
                ..
            } => {
                capacity.device_blocks = Some(*device_blocks);
                capacity.cpu_blocks = *cpu_blocks;
            }
            EventKind::GraphCapture {
                seconds,
                memory_gib,
            } => {
                configuration.graph_capture_seconds = Some(*seconds);
                configuration.graph_memory_gib = *memory_gib;
            }
            EventKind::EngineInit {
                seconds,
                compilation_seconds,
            } => {
                configuration.engine_init_seconds = Some(*seconds);
                configuration.compilation_seconds = *compilation_seconds;
            }
            EventKind::ServerStarted { address } => {
                configuration.server_address = Some(address.clone());
            }
            EventKind::Stats(sample) => report.stats.push(StatsPoint {
                line: event.line,
                time: event.time.clone(),
                sample: sample.clone(),
            }),
            EventKind::CollectiveNetwork { network } => {
                report.collective_network = Some(network.clone());
            }
            EventKind::SpecDecoding { accepted, drafted } => {
                let (a, d) = report.spec_decode_tokens.unwrap_or_default();
                report.spec_decode_tokens = Some((a + accepted, d + drafted));
            }
            EventKind::PrefixCacheHitRate { rate } => {
                if let Some(last) = report.stats.last_mut()
                    && last.sample.source == Some(StatsSource::VllmV0)
                {
                    last.sample.prefix_cache_hit_rate = Some(*rate);
                }
            }
            EventKind::SglangCapacity {
                max_total_num_tokens,
                max_prefill_tokens,
                max_running_requests,
                context_len,
                ..
            } => {
                capacity.kv_cache_tokens = max_total_num_tokens.or(capacity.kv_cache_tokens);
                capacity.max_prefill_tokens = *max_prefill_tokens;
                capacity.max_running_requests = *max_running_requests;
                configuration.max_model_len = context_len.or(configuration.max_model_len);
            }
            EventKind::KvCacheAllocated { tokens, memory_gib } => {
                capacity.kv_cache_tokens = Some(*tokens);
                capacity.kv_memory_gib = memory_gib.or(capacity.kv_memory_gib);
            }
            EventKind::SlotCapacity {
                slots,
                context_per_slot,
            } => {
                capacity.slots = slots.or(capacity.slots);
                capacity.context_per_slot = context_per_slot.or(capacity.context_per_slot);
                if capacity.kv_cache_tokens.is_none()
                    && let (Some(slots), Some(per_slot)) =
                        (capacity.slots, capacity.context_per_slot)
                {
                    capacity.kv_cache_tokens = Some(slots.saturating_mul(per_slot));
                }
            }
            EventKind::ContextSize { tokens } => capacity.kv_cache_tokens = Some(*tokens),
            EventKind::RequestTiming(timing) => report.requests.push(RequestPoint {
                line: event.line,
                time: event.time.clone(),
                timing: timing.clone(),
            }),
            EventKind::Preemption { message, .. } => {
                report.problems.push(problem(
                    event,
                    ProblemKind::Preemption,
                    (event.line, message),
                    None,
                    1,
                ));
            }
            EventKind::OutOfMemory {
                message,
                message_line,
                headline,
                lines,
            } => report.problems.push(problem(
                event,
                ProblemKind::OutOfMemory,
                (*message_line, message),
                Some(headline),
                *lines,
            )),
            EventKind::Error {
                message,
                message_line,
                headline,
                lines,
            } => report.problems.push(problem(
                event,
                ProblemKind::Error,
                (*message_line, message),
                Some(headline),
                *lines,
            )),
            EventKind::Warning { message } => self.record_warning(event, message),
        }
    }

    fn record_warning(&mut self, event: &LogEvent, message: &str) {
        let report = &mut self.report;
        if let Some(&index) = self.warning_index.get(message) {
            report.warnings[index].count += 1;
        } else if report.warnings.len() < MAX_DISTINCT_WARNINGS {
            self.warning_index
                .insert(message.to_string(), report.warnings.len());
            report.warnings.push(WarningSummary {
                message: message.to_string(),
                count: 1,
                first_line: event.line,
                first_time: event.time.clone(),
            });
        } else {
            report.warnings_not_kept += 1;
        }
    }
}

/// The server with the most votes; ties go to the first in a fixed order, so hashing cannot decide.
fn most_voted(votes: &HashMap<ServerKind, u64>) -> Option<ServerKind> {
    [ServerKind::Vllm, ServerKind::Sglang, ServerKind::LlamaCpp]
        .into_iter()
        .filter_map(|server| votes.get(&server).map(|count| (server, *count)))
        .fold(
            None,
            |best: Option<(ServerKind, u64)>, (server, count)| match best {
                Some((_, best_count)) if best_count >= count => best,
                _ => Some((server, count)),
            },
        )
        .map(|(server, _)| server)
}

/// A problem from its event; `message` is the line that says what happened, with its line number.
fn problem(
    event: &LogEvent,
    kind: ProblemKind,
    (message_line, message): (u64, &str),
    headline: Option<&String>,
    lines: u64,
) -> Problem {
    Problem {
        line: event.line,
        time: event.time.clone(),
        process: event.process.clone(),
        kind,
        message: message.to_string(),
        message_line,
        headline: headline.filter(|headline| *headline != message).cloned(),
        lines,
        during_shutdown: false,
    }
}

/// The line without its ending, carriage returns (vLLM's banner ends lines in `\r`) and ANSI colour codes
/// (vLLM colours the process tag when writing to a terminal).
fn clean(line: &str) -> Cow<'_, str> {
    let line = line.trim_end_matches(['\n', '\r']);
    if !line.contains('\u{1b}') {
        return Cow::Borrowed(line);
    }
    let mut cleaned = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            cleaned.push(c);
            continue;
        }
        // CSI sequence: ESC [ parameters, then one final byte in @..~.
        if chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    Cow::Owned(cleaned)
}

#[cfg(test)]
mod tests;
