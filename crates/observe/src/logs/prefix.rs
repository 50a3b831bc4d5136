//! Splits a log line into its decorations (container timestamp, process tag, level, time, source site) and
//! the message, for every prefix vLLM, SGLang, llama.cpp, uvicorn, docker and kubectl put in front.

use serde::Serialize;

/// A log level as the line prints it (vLLM's words, uvicorn's `ERROR:`, llama.cpp's one letter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    fn from_word(word: &str) -> Option<Level> {
        match word {
            "DEBUG" => Some(Level::Debug),
            "INFO" => Some(Level::Info),
            "WARNING" | "WARN" => Some(Level::Warning),
            "ERROR" => Some(Level::Error),
            "CRITICAL" | "FATAL" => Some(Level::Critical),
            _ => None,
        }
    }
}

/// The clock a line's time was read on; only times on the same clock compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// A docker/kubectl RFC 3339 stamp with its zone: seconds since the Unix epoch.
    Utc,
    /// SGLang's `YYYY-MM-DD HH:MM:SS` in the server's unknown zone: seconds since the epoch as if it were UTC.
    LocalDate,
    /// vLLM's `MM-DD HH:MM:SS` has no year: seconds since 1 January of the log's first year, counting a year
    /// boundary crossed in the log, so times stay ordered and differences stay right.
    LocalYearless,
    /// Old SGLang's `HH:MM:SS`: seconds since midnight of the log's first day, counting day boundaries.
    LocalTimeOfDay,
    /// llama.cpp's time since the server process started.
    SinceStart,
}

/// When a line was written: the text as printed, and seconds on its clock.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogTime {
    pub text: String,
    pub clock: Clock,
    pub seconds: f64,
}

/// A time read from a line before year or day boundaries are resolved (see [`TimeResolver`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct RawTime<'a> {
    pub text: &'a str,
    pub clock: Clock,
    pub seconds: f64,
}

/// Which server's own prefix a line carries, when it carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PrefixStyle {
    /// `LEVEL MM-DD HH:MM:SS [file.py:123] ` (or the pre-2025 `file.py:123] `).
    Vllm,
    /// `[YYYY-MM-DD HH:MM:SS TP0] `.
    Sglang,
    /// `0.05.979.660 I `.
    LlamaCpp,
    /// uvicorn's `ERROR:    `, printed by vLLM's and SGLang's HTTP front ends.
    Uvicorn,
}

/// One line taken apart.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct LinePrefix<'a> {
    /// The process name of a `(EngineCore_DP0 pid=123) ` tag.
    pub process: Option<&'a str>,
    pub pid: Option<u32>,
    pub level: Option<Level>,
    /// The container runtime's stamp wins over the server's own: it has a year and a zone.
    pub time: Option<RawTime<'a>>,
    /// vLLM's `file.py:123`: every line of one multi-line record shares it.
    pub site: Option<&'a str>,
    pub style: Option<PrefixStyle>,
    pub message: &'a str,
}

/// Takes the decorations off `line` (already free of `\r` and ANSI colour codes).
pub(super) fn split(line: &str) -> LinePrefix<'_> {
    let mut rest = line;
    let mut container_time = None;
    // A kubectl `--prefix` tag or a docker compose service column may come first, then a runtime stamp.
    rest = strip_kubectl_prefix(rest);
    rest = strip_compose_prefix(rest);
    if let Some((time, after)) = rfc3339_stamp(rest) {
        container_time = Some(time);
        rest = after;
    }
    let mut prefix = LinePrefix {
        process: None,
        pid: None,
        level: None,
        time: container_time,
        site: None,
        style: None,
        message: rest,
    };
    if let Some((process, pid, after)) = process_tag(rest) {
        prefix.process = Some(process);
        prefix.pid = pid;
        rest = after;
    }
    prefix.message = rest;
    let server_prefix = vllm_prefix(rest)
        .or_else(|| sglang_prefix(rest))
        .or_else(|| llamacpp_prefix(rest))
        .or_else(|| uvicorn_prefix(rest));
    if let Some(server) = server_prefix {
        prefix.level = server.level;
        prefix.site = server.site;
        prefix.style = Some(server.style);
        prefix.time = prefix.time.or(server.time);
        prefix.message = server.message;
    }
    prefix
}

struct ServerPrefix<'a> {
    style: PrefixStyle,
    level: Option<Level>,
    time: Option<RawTime<'a>>,
    site: Option<&'a str>,
    message: &'a str,
}

/// `[pod/vllm-0/vllm] `, from `kubectl logs --prefix`.
fn strip_kubectl_prefix(line: &str) -> &str {
    if line.starts_with("[pod/")
        && let Some(end) = line.find("] ")
    {
        return &line[end + 2..];
    }
    line
}

/// `vllm-1  | `, from `docker compose logs`: a name, padding, a bar.
fn strip_compose_prefix(line: &str) -> &str {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        .unwrap_or(line.len());
    if name_end == 0 {
        return line;
    }
    let after_name = &line[name_end..];
    let padding = after_name.len() - after_name.trim_start_matches(' ').len();
    if padding == 0 {
        return line;
    }
    after_name[padding..]
        .strip_prefix("| ")
        .or_else(|| (&after_name[padding..] == "|").then_some(""))
        .unwrap_or(line)
}

/// `(APIServer pid=24678) `, `(VllmWorker rank=0 pid=2445155) `, `(RayWorkerWrapper pid=7, ip=10.0.0.1) `.
fn process_tag(text: &str) -> Option<(&str, Option<u32>, &str)> {
    let inner_end = text.strip_prefix('(')?.find(')')? + 1;
    let inner = &text[1..inner_end];
    let pid_at = inner.find("pid=")?;
    let name = inner[..pid_at].trim_end_matches([' ', ',']);
    let pid = inner[pid_at + 4..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|digits| digits.parse().ok());
    let after = &text[inner_end + 1..];
    Some((name, pid, after.strip_prefix(' ').unwrap_or(after)))
}

/// `INFO 11-22 11:00:36 [api_utils.py:286] ` and the older `INFO 07-17 23:41:28 file.py:56] `.
fn vllm_prefix(text: &str) -> Option<ServerPrefix<'_>> {
    let (word, after_level) = text.split_once(' ')?;
    let level = Level::from_word(word)?;
    let (time, after_time) = yearless_time(after_level)?;
    let after_time = after_time.strip_prefix(' ').unwrap_or(after_time);
    let (site, message) = match after_time.find("] ") {
        Some(end) if is_site(after_time[..end].trim_start_matches('[')) => (
            Some(after_time[..end].trim_start_matches('[')),
            &after_time[end + 2..],
        ),
        _ => match after_time.strip_suffix(']') {
            Some(site) if is_site(site.trim_start_matches('[')) => {
                (Some(site.trim_start_matches('[')), "")
            }
            _ => (None, after_time),
        },
    };
    Some(ServerPrefix {
        style: PrefixStyle::Vllm,
        level: Some(level),
        time: Some(time),
        site,
        message,
    })
}

/// `file.py:123`.
fn is_site(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(file, line)| {
        !file.is_empty()
            && !file.contains(' ')
            && !line.is_empty()
            && line.bytes().all(|b| b.is_ascii_digit())
    })
}

/// `MM-DD HH:MM:SS`, optionally with `,mmm` or `.mmm`.
fn yearless_time(text: &str) -> Option<(RawTime<'_>, &str)> {
    let bytes = text.as_bytes();
    if bytes.len() < 14 || bytes[2] != b'-' || bytes[5] != b' ' {
        return None;
    }
    let month = two_digits(bytes, 0)?;
    let day = two_digits(bytes, 3)?;
    let (second_of_day, mut end) = clock_time(text, 6)?;
    let fraction = fraction_at(text, &mut end);
    let day_of_year = day_of_leap_year(month, day)?;
    Some((
        RawTime {
            text: &text[..end],
            clock: Clock::LocalYearless,
            seconds: day_of_year as f64 * 86_400.0 + second_of_day + fraction,
        },
        &text[end..],
    ))
}

/// `HH:MM:SS` at `start`: seconds since midnight and the index after it.
fn clock_time(text: &str, start: usize) -> Option<(f64, usize)> {
    let bytes = text.as_bytes();
    if bytes.len() < start + 8 || bytes[start + 2] != b':' || bytes[start + 5] != b':' {
        return None;
    }
    let hours = two_digits(bytes, start)?;
    let minutes = two_digits(bytes, start + 3)?;
    let seconds = two_digits(bytes, start + 6)?;
    if hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    Some((f64::from(hours * 3600 + minutes * 60 + seconds), start + 8))
}

/// An optional `.ddd` or `,ddd` fraction of a second at `*end`, advancing `*end` past it.
fn fraction_at(text: &str, end: &mut usize) -> f64 {
    let bytes = text.as_bytes();
    if !matches!(bytes.get(*end), Some(b'.' | b',')) {
        return 0.0;
    }
    let digits_start = *end + 1;
    let mut digits_end = digits_start;
    while bytes.get(digits_end).is_some_and(u8::is_ascii_digit) {
        digits_end += 1;
    }
    if digits_end == digits_start {
        return 0.0;
    }
    *end = digits_end;
    // Only the first nine digits matter (nanoseconds); the float keeps about that many anyway.
    let kept = &text[digits_start..digits_end.min(digits_start + 9)];
    kept.parse::<f64>().unwrap_or(0.0) / 10_f64.powi(kept.len() as i32)
}

fn two_digits(bytes: &[u8], at: usize) -> Option<u32> {
    let pair = bytes.get(at..at + 2)?;
    pair.iter()
        .all(u8::is_ascii_digit)
        .then(|| u32::from(pair[0] - b'0') * 10 + u32::from(pair[1] - b'0'))
}

/// Zero-based day of `month`-`day` in a leap year, so that `02-29` exists.
fn day_of_leap_year(month: u32, day: u32) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(2000, month, day) - days_from_civil(2000, 1, 1))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `YYYY-MM-DD` at the start of `text`: days since the epoch.
fn date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = i64::from(two_digits(bytes, 0)? * 100 + two_digits(bytes, 2)?);
    let month = two_digits(bytes, 5)?;
    let day = two_digits(bytes, 8)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// A docker/kubectl `--timestamps` stamp and the space after it: `2026-11-22T11:00:36.123456789Z `.
fn rfc3339_stamp(text: &str) -> Option<(RawTime<'_>, &str)> {
    let days = date(text)?;
    if text.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let (second_of_day, mut end) = clock_time(text, 11)?;
    let fraction = fraction_at(text, &mut end);
    let bytes = text.as_bytes();
    let offset_seconds = match bytes.get(end) {
        Some(b'Z') => {
            end += 1;
            0.0
        }
        Some(sign @ (b'+' | b'-')) => {
            let hours = two_digits(bytes, end + 1)?;
            if bytes.get(end + 3) != Some(&b':') {
                return None;
            }
            let minutes = two_digits(bytes, end + 4)?;
            let offset = f64::from(hours * 3600 + minutes * 60);
            end += 6;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let after = text[end..].strip_prefix(' ')?;
    Some((
        RawTime {
            text: &text[..end],
            clock: Clock::Utc,
            seconds: days as f64 * 86_400.0 + second_of_day + fraction - offset_seconds,
        },
        after,
    ))
}

/// `[2025-02-27 04:46:39 TP0] `, `[2026-04-05 20:02:51] `, or 2024's `[04:40:55 TP0] `.
fn sglang_prefix(text: &str) -> Option<ServerPrefix<'_>> {
    let inner = text.strip_prefix('[')?;
    let end = inner.find("] ")?;
    let stamp = &inner[..end];
    let message = &inner[end + 2..];
    let time = if let Some(days) = date(stamp) {
        if stamp.as_bytes().get(10) != Some(&b' ') {
            return None;
        }
        let (second_of_day, mut time_end) = clock_time(stamp, 11)?;
        let fraction = fraction_at(stamp, &mut time_end);
        RawTime {
            text: &stamp[..time_end],
            clock: Clock::LocalDate,
            seconds: days as f64 * 86_400.0 + second_of_day + fraction,
        }
    } else {
        let (second_of_day, mut time_end) = clock_time(stamp, 0)?;
        let fraction = fraction_at(stamp, &mut time_end);
        RawTime {
            text: &stamp[..time_end],
            clock: Clock::LocalTimeOfDay,
            seconds: second_of_day + fraction,
        }
    };
    // After the time come only rank tags such as `TP0 DP1 EP2 PP3`.
    let tags = &stamp[time.text.len()..];
    let tags_are_ranks = tags.split_whitespace().all(|tag| {
        tag.len() > 2
            && tag.as_bytes()[..2].iter().all(u8::is_ascii_uppercase)
            && tag.as_bytes()[2..].iter().all(u8::is_ascii_digit)
    });
    tags_are_ranks.then_some(ServerPrefix {
        style: PrefixStyle::Sglang,
        level: None,
        time: Some(time),
        site: None,
        message,
    })
}

/// `0.05.979.660 I ` (minutes.seconds.milliseconds.microseconds since start, then a level letter).
fn llamacpp_prefix(text: &str) -> Option<ServerPrefix<'_>> {
    let (stamp, after) = text.split_once(' ')?;
    let mut parts = stamp.split('.');
    let minutes: u64 = parts.next()?.parse().ok()?;
    let numbers: Vec<&str> = parts.collect();
    let [seconds, millis, micros] = numbers.as_slice() else {
        return None;
    };
    let digits_of = |part: &str, width: usize| {
        (part.len() == width && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u32>().ok())
            .flatten()
    };
    let seconds = digits_of(seconds, 2)?;
    let millis = digits_of(millis, 3)?;
    let micros = digits_of(micros, 3)?;
    let (letter, message) = match after.split_once(' ') {
        Some((letter, message)) => (letter, message),
        None => (after, ""),
    };
    let level = match letter {
        "D" => Level::Debug,
        "I" | "N" => Level::Info,
        "W" => Level::Warning,
        "E" => Level::Error,
        _ => return None,
    };
    Some(ServerPrefix {
        style: PrefixStyle::LlamaCpp,
        level: Some(level),
        time: Some(RawTime {
            text: stamp,
            clock: Clock::SinceStart,
            seconds: minutes as f64 * 60.0
                + f64::from(seconds)
                + f64::from(millis) / 1e3
                + f64::from(micros) / 1e6,
        }),
        site: None,
        message,
    })
}

/// uvicorn's `INFO:     127.0.0.1:48340 - "GET /health HTTP/1.1" 200 OK` and `ERROR:    Exception in ASGI application`.
fn uvicorn_prefix(text: &str) -> Option<ServerPrefix<'_>> {
    let (word, after) = text.split_once(':')?;
    let level = Level::from_word(word)?;
    Some(ServerPrefix {
        style: PrefixStyle::Uvicorn,
        level: Some(level),
        time: None,
        site: None,
        message: after.trim_start_matches(' '),
    })
}

/// Turns times without a year (or without a date) into ordered seconds: a jump back of more than half a year
/// (or half a day) is read as the log crossing into the next one.
#[derive(Clone, Debug, Default)]
pub(super) struct TimeResolver {
    last_yearless: Option<f64>,
    yearless_offset: f64,
    last_time_of_day: Option<f64>,
    time_of_day_offset: f64,
}

impl TimeResolver {
    /// The calendar of [`day_of_leap_year`] is a leap year: 366 days.
    const YEAR_S: f64 = 366.0 * 86_400.0;
    const DAY_S: f64 = 86_400.0;

    pub(super) fn resolve(&mut self, raw: RawTime<'_>) -> LogTime {
        let seconds = match raw.clock {
            Clock::LocalYearless => Self::unwrap(
                &mut self.last_yearless,
                &mut self.yearless_offset,
                raw.seconds,
                Self::YEAR_S,
            ),
            Clock::LocalTimeOfDay => Self::unwrap(
                &mut self.last_time_of_day,
                &mut self.time_of_day_offset,
                raw.seconds,
                Self::DAY_S,
            ),
            Clock::Utc | Clock::LocalDate | Clock::SinceStart => raw.seconds,
        };
        LogTime {
            text: raw.text.to_string(),
            clock: raw.clock,
            seconds,
        }
    }

    fn unwrap(last: &mut Option<f64>, offset: &mut f64, seconds: f64, period: f64) -> f64 {
        if let Some(previous) = *last {
            if seconds + period / 2.0 < previous {
                *offset += period;
            } else if seconds > previous + period / 2.0 && *offset >= period {
                // A line from just before the boundary, printed after it by another process.
                return seconds + *offset - period;
            }
        }
        *last = Some(seconds);
        seconds + *offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_prefix_with_process_tag_and_brackets() {
        let line =
            "(APIServer pid=24678) INFO 11-22 11:00:36 [model.py:2152] Using max model len 2048";
        let prefix = split(line);
        assert_eq!(prefix.process, Some("APIServer"));
        assert_eq!(prefix.pid, Some(24_678));
        assert_eq!(prefix.level, Some(Level::Info));
        assert_eq!(prefix.site, Some("model.py:2152"));
        assert_eq!(prefix.style, Some(PrefixStyle::Vllm));
        assert_eq!(prefix.message, "Using max model len 2048");
        let time = prefix.time.expect("time");
        assert_eq!(time.text, "11-22 11:00:36");
        assert_eq!(time.clock, Clock::LocalYearless);
        // 11-22 is day 326 of a leap year.
        assert_eq!(time.seconds, 326.0 * 86_400.0 + 39_636.0);
    }

    #[test]
    fn older_vllm_prefix_without_bracket_or_tag() {
        // From vllm issue #6640 (V0, 2024).
        let prefix = split(
            "INFO 07-22 07:54:32 metrics.py:341] Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 0.0 tokens/s",
        );
        assert_eq!(prefix.process, None);
        assert_eq!(prefix.site, Some("metrics.py:341"));
        assert!(prefix.message.starts_with("Avg prompt throughput"));
    }

    #[test]
    fn process_tags_of_every_shape() {
        for (line, process, pid) in [
            (
                "(EngineCore_DP0 pid=8884) Traceback (most recent call last):",
                "EngineCore_DP0",
                8884,
            ),
            (
                "(VllmWorker TP0 pid=77) INFO 01-02 03:04:05 [a.py:1] x",
                "VllmWorker TP0",
                77,
            ),
            (
                "(VllmWorker rank=0 pid=2445155) INFO 05-10 16:00:15 [gpu_model_runner.py:1686] x",
                "VllmWorker rank=0",
                2_445_155,
            ),
            (
                "(RayWorkerWrapper pid=7, ip=10.0.0.1) INFO 01-02 03:04:05 [a.py:1] x",
                "RayWorkerWrapper",
                7,
            ),
        ] {
            let prefix = split(line);
            assert_eq!(prefix.process, Some(process), "{line}");
            assert_eq!(prefix.pid, Some(pid), "{line}");
        }
        // Parentheses without a pid are part of the message.
        assert_eq!(split("(not a tag) hello").process, None);
    }

    #[test]
    fn docker_timestamp_in_front_wins_over_the_server_time() {
        let prefix = split(
            "2026-11-22T11:00:36.123456789Z (APIServer pid=1) WARNING 11-22 11:00:36 [cpu.py:224] Triton is not installed.",
        );
        let time = prefix.time.expect("time");
        assert_eq!(time.clock, Clock::Utc);
        assert_eq!(time.text, "2026-11-22T11:00:36.123456789Z");
        assert!((time.seconds - 1_795_345_236.0 - 0.123_456_789).abs() < 1e-5);
        assert_eq!(prefix.level, Some(Level::Warning));
        assert_eq!(prefix.message, "Triton is not installed.");
        // An offset stamp without a process tag.
        let offset = split("2026-11-22T12:00:36+01:00 INFO 11-22 11:00:36 [a.py:1] hi");
        assert_eq!(offset.time.expect("time").seconds, 1_795_345_236.0);
        assert_eq!(offset.process, None);
        assert_eq!(offset.message, "hi");
    }

    #[test]
    fn compose_and_kubectl_prefixes() {
        let compose = split("vllm-1  | INFO 11-22 11:00:36 [a.py:1] hi");
        assert_eq!(compose.message, "hi");
        let kubectl =
            split("[pod/vllm-0/vllm] 2026-11-22T11:00:36Z INFO 11-22 11:00:36 [a.py:1] hi");
        assert_eq!(kubectl.message, "hi");
        assert_eq!(kubectl.time.expect("time").clock, Clock::Utc);
        // llama.cpp's `id  3 | task` is not a compose column.
        let llama = split("slot print_timing: id  3 | task 0 | x");
        assert_eq!(llama.message, "slot print_timing: id  3 | task 0 | x");
    }

    #[test]
    fn sglang_prefixes() {
        // From sglang issue #3909, PR #22166 and issue #1270.
        let ranked = split("[2025-02-27 04:46:39 TP0] Decode batch. #running-req: 8");
        assert_eq!(ranked.style, Some(PrefixStyle::Sglang));
        assert_eq!(ranked.message, "Decode batch. #running-req: 8");
        let time = ranked.time.expect("time");
        assert_eq!(time.clock, Clock::LocalDate);
        assert_eq!(time.text, "2025-02-27 04:46:39");
        let plain = split("[2026-04-05 20:02:51] Prefill batch, #new-seq: 1");
        assert_eq!(plain.message, "Prefill batch, #new-seq: 1");
        let old = split("[04:40:55 TP0] Decode batch. #running-req: 2");
        assert_eq!(old.time.expect("time").clock, Clock::LocalTimeOfDay);
        let ray = split(
            "(SGLangEngine pid=41820) [2026-03-22 13:53:37 TP0] Decode batch, #running-req: 6",
        );
        assert_eq!(ray.process, Some("SGLangEngine"));
        assert_eq!(ray.style, Some(PrefixStyle::Sglang));
        // Torch's `[W1122 ...]` warnings are not SGLang lines.
        assert_eq!(
            split("[W1122 11:02:02.688182243 utils.cpp:68] Warning: x").style,
            None
        );
    }

    #[test]
    fn llamacpp_prefix() {
        let prefix = split(
            "1.15.776.958 I slot print_timing: id  2 | task 31 | prompt eval time =     961.20 ms /    13 tokens",
        );
        assert_eq!(prefix.style, Some(PrefixStyle::LlamaCpp));
        assert_eq!(prefix.level, Some(Level::Info));
        let time = prefix.time.expect("time");
        assert_eq!(time.clock, Clock::SinceStart);
        assert!((time.seconds - 75.776_958).abs() < 1e-9);
        assert!(prefix.message.starts_with("slot print_timing"));
        let error = split("0.19.124.240 E srv    send_error: task id = 9, error: x");
        assert_eq!(error.level, Some(Level::Error));
    }

    #[test]
    fn uvicorn_prefix() {
        let prefix = split("INFO:     127.0.0.1:48340 - \"GET /v1/models HTTP/1.1\" 200 OK");
        assert_eq!(prefix.style, Some(PrefixStyle::Uvicorn));
        assert_eq!(
            prefix.message,
            "127.0.0.1:48340 - \"GET /v1/models HTTP/1.1\" 200 OK"
        );
        assert_eq!(
            split("ERROR:    Exception in ASGI application").level,
            Some(Level::Error)
        );
    }

    #[test]
    fn yearless_times_stay_ordered_across_new_year() {
        let mut resolver = TimeResolver::default();
        let mut at = |text: &'static str| {
            let (raw, _) = yearless_time(text).expect("time");
            resolver.resolve(raw).seconds
        };
        let before = at("12-31 23:59:59");
        let after = at("01-01 00:00:00");
        assert_eq!(after - before, 1.0);
        // A straggler from the old year printed after the boundary stays in the old year.
        assert_eq!(at("12-31 23:59:58"), before - 1.0);
        assert_eq!(at("01-01 00:00:01"), after + 1.0);
        let mut days = TimeResolver::default();
        let first = days.resolve(RawTime {
            text: "23:59:59",
            clock: Clock::LocalTimeOfDay,
            seconds: 86_399.0,
        });
        let second = days.resolve(RawTime {
            text: "00:00:00",
            clock: Clock::LocalTimeOfDay,
            seconds: 0.0,
        });
        assert_eq!(second.seconds - first.seconds, 1.0);
    }

    #[test]
    fn malformed_prefixes_fall_back_to_the_message() {
        for line in [
            "",
            "INFO",
            "INFO 13-45 11:00:36 [a.py:1] bad month",
            "INFO 11-22 25:00:36 [a.py:1] bad hour",
            "2026-11-22T11:00:36",
            "2026-11-22T11:00:36.Z x",
            "(pid=",
            "[",
            "[2026-13-01 00:00:00] x",
            "1.2.3.4 I x",
            "0.00.010.488",
        ] {
            assert!(line.ends_with(split(line).message), "{line}");
        }
        assert_eq!(split("INFO 13-45 11:00:36 [a.py:1] x").style, None);
    }
}
