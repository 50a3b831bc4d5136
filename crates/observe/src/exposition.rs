//! Our own Prometheus text format (0.0.4) and OpenMetrics 1.0 text parser: names with `:`, escaped labels, NaN
//! and ±Inf, timestamps and exemplars; a malformed line is reported with its number and the rest is kept.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::ops::ControlFlow;

use memchr::{memchr, memchr2};
use serde::{Deserialize, Serialize};

/// A family's declared type (`# TYPE`); `Untyped` when none was declared (or declared `untyped`/`unknown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Untyped,
}

/// One sample line. Borrowed from the scraped text where possible; label values with escapes are owned.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The full sample name, e.g. `vllm:e2e_request_latency_seconds_bucket`.
    pub name: &'a str,
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: f64,
    /// Milliseconds since the Unix epoch (OpenMetrics' float seconds are converted).
    pub timestamp_ms: Option<i64>,
}

/// A family: the samples under one `# TYPE`/`# HELP` name (a histogram's `_bucket`, `_sum`, `_count` included).
#[derive(Clone, Debug, PartialEq)]
pub struct Family<'a> {
    pub name: &'a str,
    pub kind: MetricType,
    pub help: Option<Cow<'a, str>>,
    pub unit: Option<&'a str>,
    pub samples: Vec<Sample<'a>>,
}

/// A line that could not be read, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("line {line}: {message}")]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// A parsed scrape: every family in the order first seen, and the lines that were skipped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape<'a> {
    pub families: Vec<Family<'a>>,
    pub errors: Vec<LineError>,
}

/// A scrape that owns its text, for storing (one JSON line per scrape); non-finite values are written as the
/// strings `"NaN"`, `"+Inf"`, `"-Inf"` because JSON numbers cannot hold them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OwnedScrape {
    pub families: Vec<OwnedFamily>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<LineError>,
}

/// The owned form of [`Family`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OwnedFamily {
    pub name: String,
    pub kind: MetricType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub samples: Vec<OwnedSample>,
}

/// The owned form of [`Sample`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OwnedSample {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
    #[serde(with = "json_float")]
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
}

/// Parses Prometheus text format 0.0.4 or OpenMetrics 1.0 text (told apart by the closing `# EOF` that
/// OpenMetrics requires). Never fails as a whole: each unreadable line becomes a [`LineError`].
pub fn parse(text: &str) -> Scrape<'_> {
    let mut parser = Parser {
        open_metrics: ends_with_open_metrics_eof(text),
        scrape: Scrape::default(),
        family_by_name: HashMap::new(),
        current_family: None,
        label_capacity: 0,
        series_seen: HashMap::default(),
        series_colliding: Vec::new(),
    };
    for (index, line) in text.split('\n').enumerate() {
        if parser.read_line(index + 1, line).is_break() {
            break;
        }
    }
    parser.scrape
}

impl MetricType {
    /// The suffixes a family of this type appends to its own name to name its samples (OpenMetrics 1.0). A sample
    /// named exactly like the family always belongs to it, which covers 0.0.4, where a counter is declared
    /// under its `_total` name and `_created` comes as a separate gauge family.
    fn sample_suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["_total", "_created"],
            MetricType::Histogram => &["_bucket", "_count", "_sum", "_created"],
            MetricType::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
            MetricType::Summary => &["_count", "_sum", "_created"],
            MetricType::Info => &["_info"],
            MetricType::Gauge | MetricType::StateSet | MetricType::Untyped => &[],
        }
    }

    fn from_type_word(word: &str) -> Option<MetricType> {
        Some(match word {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            // 0.0.4 says `untyped`, OpenMetrics says `unknown`.
            "untyped" | "unknown" => MetricType::Untyped,
            _ => return None,
        })
    }
}

impl Sample<'_> {
    /// The value of label `key`, unescaped.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.as_ref())
    }
}

impl<'a> Family<'a> {
    fn new(name: &'a str) -> Family<'a> {
        Family {
            name,
            kind: MetricType::Untyped,
            help: None,
            unit: None,
            samples: Vec::new(),
        }
    }

    /// The value of label `key` on the first sample that has it: the payload of an info-style family such as
    /// `vllm:cache_config_info`, whose one sample carries its facts as labels.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.samples.iter().find_map(|sample| sample.label(key))
    }

    /// Whether a sample named `sample_name` belongs to this family by its type's naming rules.
    fn owns_sample_name(&self, sample_name: &str) -> bool {
        sample_name.strip_prefix(self.name).is_some_and(|suffix| {
            suffix.is_empty() || self.kind.sample_suffixes().contains(&suffix)
        })
    }
}

impl<'a> Scrape<'a> {
    /// The family declared (or, if untyped, first sampled) under exactly `name`.
    pub fn family(&self, name: &str) -> Option<&Family<'a>> {
        self.families.iter().find(|family| family.name == name)
    }

    /// Every sample named exactly `sample_name`, whichever family holds it: `vllm:prompt_tokens_total` is found
    /// both when 0.0.4 declares the family under that name and when OpenMetrics declares `vllm:prompt_tokens`.
    pub fn samples_named<'s>(&'s self, sample_name: &str) -> impl Iterator<Item = &'s Sample<'a>> {
        self.families
            .iter()
            .filter(move |family| sample_name.starts_with(family.name))
            .flat_map(|family| &family.samples)
            .filter(move |sample| sample.name == sample_name)
    }

    /// A copy that owns its text, for storing; [`OwnedScrape::as_scrape`] gives the borrowed form back.
    pub fn to_owned_scrape(&self) -> OwnedScrape {
        OwnedScrape {
            families: self
                .families
                .iter()
                .map(|family| OwnedFamily {
                    name: family.name.to_owned(),
                    kind: family.kind,
                    help: family.help.as_deref().map(str::to_owned),
                    unit: family.unit.map(str::to_owned),
                    samples: family
                        .samples
                        .iter()
                        .map(|sample| OwnedSample {
                            name: sample.name.to_owned(),
                            labels: sample
                                .labels
                                .iter()
                                .map(|(name, value)| ((*name).to_owned(), value.to_string()))
                                .collect(),
                            value: sample.value,
                            timestamp_ms: sample.timestamp_ms,
                        })
                        .collect(),
                })
                .collect(),
            errors: self.errors.clone(),
        }
    }
}

impl OwnedScrape {
    /// A borrowed view, so a stored scrape goes through the same code as a fresh one.
    pub fn as_scrape(&self) -> Scrape<'_> {
        Scrape {
            families: self
                .families
                .iter()
                .map(|family| Family {
                    name: &family.name,
                    kind: family.kind,
                    help: family.help.as_deref().map(Cow::Borrowed),
                    unit: family.unit.as_deref(),
                    samples: family
                        .samples
                        .iter()
                        .map(|sample| Sample {
                            name: &sample.name,
                            labels: sample
                                .labels
                                .iter()
                                .map(|(name, value)| (name.as_str(), Cow::Borrowed(value.as_str())))
                                .collect(),
                            value: sample.value,
                            timestamp_ms: sample.timestamp_ms,
                        })
                        .collect(),
                })
                .collect(),
            errors: self.errors.clone(),
        }
    }
}

/// Parses a sample value as Prometheus does: Go's `ParseFloat` without hexadecimal floats and `_` digit
/// separators (Prometheus rejects both), so decimal and exponent forms plus `NaN`, `Inf`, `+Inf`, `-Inf`
/// (case-insensitive, as `Infinity` too). Rust's float grammar is exactly that.
fn parse_value(text: &str) -> Option<f64> {
    text.parse().ok()
}

/// JSON has no NaN or infinities, so those travel as Prometheus spells them.
mod json_float {
    use std::borrow::Cow;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else if value.is_nan() {
            serializer.serialize_str("NaN")
        } else if value.is_sign_positive() {
            serializer.serialize_str("+Inf")
        } else {
            serializer.serialize_str("-Inf")
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum NumberOrText<'t> {
            Number(f64),
            Text(#[serde(borrow)] Cow<'t, str>),
        }
        match NumberOrText::deserialize(deserializer)? {
            NumberOrText::Number(number) => Ok(number),
            NumberOrText::Text(text) => super::parse_value(&text)
                .ok_or_else(|| D::Error::custom(format!("bad sample value {text:?}"))),
        }
    }
}

const BLANKS: [char; 2] = [' ', '\t'];

/// OpenMetrics text must end with `# EOF`; 0.0.4 text never does. Only the timestamp unit depends on it.
fn ends_with_open_metrics_eof(text: &str) -> bool {
    text.trim_end()
        .strip_suffix("# EOF")
        .is_some_and(|before| before.is_empty() || before.ends_with('\n'))
}

struct Parser<'a> {
    open_metrics: bool,
    scrape: Scrape<'a>,
    family_by_name: HashMap<&'a str, usize>,
    /// The family of the latest metadata line or sample: the next samples almost always belong to it.
    current_family: Option<usize>,
    /// Label count of the previous sample; consecutive samples share a label set, so this spares regrowth.
    label_capacity: usize,
    /// Every sample kept, by a hash of its series: where it is, to tell a duplicate from a hash collision.
    series_seen: HashMap<u64, SampleAt, BuildHasherDefault<SeriesHasher>>,
    /// The rare samples whose series hash another series already had.
    series_colliding: Vec<(u64, SampleAt)>,
}

/// A kept sample: its family, its index there, and its line.
#[derive(Clone, Copy)]
struct SampleAt {
    family: usize,
    index: usize,
    line: usize,
}

/// A fast, non-cryptographic hasher (FxHash's mixing, a word at a time, and a finaliser): the duplicate check
/// hashes every sample, and SipHash would halve the parser's speed. A collision costs only a comparison.
#[derive(Default)]
struct SeriesHasher(u64);

impl Hasher for SeriesHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let word: [u8; 8] = word.try_into().unwrap_or_default();
            self.add(u64::from_le_bytes(word));
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        self.add(u64::from_le_bytes(tail) ^ bytes.len() as u64);
    }

    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    /// MurmurHash3's finaliser: the multiply above only carries low bits upward, and hash tables index by the
    /// low bits, so without it label values that differ past their first byte would all collide.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

impl SeriesHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

enum Metadata<'a> {
    Help(Cow<'a, str>),
    Type(MetricType),
    Unit(&'a str),
}

impl<'a> Parser<'a> {
    fn read_line(&mut self, number: usize, line: &'a str) -> ControlFlow<()> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.trim_start_matches(BLANKS);
        let outcome = if line.is_empty() {
            Ok(ControlFlow::Continue(()))
        } else if let Some(comment) = line.strip_prefix('#') {
            self.read_comment(comment)
        } else {
            self.read_sample(number, line).map(ControlFlow::Continue)
        };
        outcome.unwrap_or_else(|message| {
            self.scrape.errors.push(LineError {
                line: number,
                message,
            });
            ControlFlow::Continue(())
        })
    }

    /// `comment` is the line after its `#`: `HELP`, `TYPE` and `UNIT` lines set metadata, `EOF` ends the
    /// exposition, anything else is a plain comment.
    fn read_comment(&mut self, comment: &'a str) -> Result<ControlFlow<()>, String> {
        let (keyword, rest) = split_first_token(comment.trim_start_matches(BLANKS));
        if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
            let is_eof = keyword == "EOF" && rest.trim_matches(BLANKS).is_empty();
            return Ok(if is_eof {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            });
        }
        let (name, argument) = split_first_token(rest.trim_start_matches(BLANKS));
        if name.is_empty() {
            return Err(format!("{keyword} line without a metric name"));
        }
        if metric_name_len(name.as_bytes()) != name.len() {
            return Err(format!(
                "bad metric name {} in {keyword} line",
                quoted(name)
            ));
        }
        let argument = argument.trim_start_matches(BLANKS);
        let metadata = match keyword {
            "HELP" => Metadata::Help(unescape_help(argument)),
            "TYPE" => {
                let word = argument.trim_end_matches(BLANKS);
                Metadata::Type(
                    MetricType::from_type_word(word)
                        .ok_or_else(|| format!("unknown metric type {}", quoted(word)))?,
                )
            }
            _ => Metadata::Unit(argument.trim_end_matches(BLANKS)),
        };

        let index = self.family_for_metadata(name);
        self.current_family = Some(index);
        let family = &mut self.scrape.families[index];
        let duplicate = match metadata {
            Metadata::Help(_) => family.help.is_some(),
            Metadata::Type(_) => family.kind != MetricType::Untyped,
            Metadata::Unit(_) => family.unit.is_some(),
        };
        if duplicate {
            return Err(format!("second {keyword} line for {name}"));
        }
        match metadata {
            Metadata::Help(help) => family.help = Some(help),
            Metadata::Type(kind) => family.kind = kind,
            Metadata::Unit(unit) => family.unit = Some(unit),
        }
        Ok(ControlFlow::Continue(()))
    }

    /// A sample is kept unless its series (name, label set and timestamp) already had one: the same series
    /// twice is two answers to one question, and adding them up would double it, so it is an error naming both
    /// lines, and the first stands, as in Prometheus.
    fn read_sample(&mut self, number: usize, line: &'a str) -> Result<(), String> {
        let sample = parse_sample(line, self.open_metrics, self.label_capacity)?;
        self.label_capacity = sample.labels.len();
        let index = match self.current_family {
            Some(index) if self.scrape.families[index].owns_sample_name(sample.name) => index,
            _ => self.family_for_sample(sample.name),
        };
        self.current_family = Some(index);
        let hash = series_hash(&sample);
        let families = &self.scrape.families;
        let earlier = self
            .series_seen
            .get(&hash)
            .into_iter()
            .chain(
                self.series_colliding
                    .iter()
                    .filter(|(h, _)| *h == hash)
                    .map(|(_, at)| at),
            )
            .find(|at| same_series(&families[at.family].samples[at.index], &sample));
        if let Some(earlier) = earlier {
            let series = series_text(&sample);
            let (kept, cut) = shortened(&series, 160);
            return Err(format!(
                "duplicate series `{kept}{}`: first on line {}; the first is kept",
                if cut { "…" } else { "" },
                earlier.line
            ));
        }
        let samples = &mut self.scrape.families[index].samples;
        let at = SampleAt {
            family: index,
            index: samples.len(),
            line: number,
        };
        match self.series_seen.entry(hash) {
            Entry::Vacant(free) => {
                free.insert(at);
            }
            Entry::Occupied(_) => self.series_colliding.push((hash, at)),
        }
        samples.push(sample);
        Ok(())
    }

    fn family_for_metadata(&mut self, name: &'a str) -> usize {
        let families = &mut self.scrape.families;
        *self.family_by_name.entry(name).or_insert_with(|| {
            families.push(Family::new(name));
            families.len() - 1
        })
    }

    /// The family of a sample that does not follow its metadata: one named like the sample, else one whose type
    /// gives its samples this suffix (never a blind cut: `x_total` joins `x` only if `x` is a counter), else a
    /// new untyped family named after the sample.
    fn family_for_sample(&mut self, sample_name: &'a str) -> usize {
        let owner = self.family_by_name.get(sample_name).copied().or_else(|| {
            // Every type's suffix is one `_` and a word, so the candidate stem ends at the last `_`.
            let (stem, suffix) = sample_name.split_at(sample_name.rfind('_')?);
            let index = *self.family_by_name.get(stem)?;
            let kind = self.scrape.families[index].kind;
            kind.sample_suffixes().contains(&suffix).then_some(index)
        });
        owner.unwrap_or_else(|| self.family_for_metadata(sample_name))
    }
}

/// A hash of a sample's series that ignores the order of its labels, since `{a="1",b="2"}` and `{b="2",a="1"}`
/// name one series.
fn series_hash(sample: &Sample<'_>) -> u64 {
    let mut series = SeriesHasher::default();
    series.write(sample.name.as_bytes());
    sample.timestamp_ms.hash(&mut series);
    for (name, value) in &sample.labels {
        let mut label = SeriesHasher::default();
        label.write(name.as_bytes());
        label.write(value.as_bytes());
        // A sum does not depend on the labels' order. Each label is finalised first: sums of raw FxHash values
        // keep their near-linear structure, and series that differ in two labels would collide in droves.
        series.0 = series.0.wrapping_add(label.finish());
    }
    series.finish()
}

fn same_series(a: &Sample<'_>, b: &Sample<'_>) -> bool {
    a.name == b.name
        && a.timestamp_ms == b.timestamp_ms
        && a.labels.len() == b.labels.len()
        && a.labels
            .iter()
            .all(|(name, value)| b.label(name) == Some(value))
}

/// `name{label="value",…}` as the exposition writes it, for messages.
fn series_text(sample: &Sample<'_>) -> String {
    let labels: Vec<String> = sample
        .labels
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    if labels.is_empty() {
        sample.name.to_string()
    } else {
        format!("{}{{{}}}", sample.name, labels.join(","))
    }
}

/// Parses `name{labels} value [timestamp] [# exemplar]`; `line` has no line break and no leading blanks.
fn parse_sample(
    line: &str,
    open_metrics: bool,
    label_capacity: usize,
) -> Result<Sample<'_>, String> {
    let bytes = line.as_bytes();
    let name_len = metric_name_len(bytes);
    if name_len == 0 {
        return Err(format!(
            "bad metric name {}",
            quoted(split_first_token(line).0)
        ));
    }
    let name = &line[..name_len];
    let mut position = skip_blanks(bytes, name_len);
    let mut labels = Vec::new();
    if bytes.get(position) == Some(&b'{') {
        labels.reserve_exact(label_capacity);
        position = parse_labels(line, position + 1, &mut labels)?;
        position = skip_blanks(bytes, position);
    } else if position == name_len
        && let Some(unexpected) = line[name_len..].chars().next()
    {
        return Err(format!(
            "bad character {unexpected:?} after metric name {name}"
        ));
    }

    let (value_text, rest) = split_first_token(&line[position..]);
    if value_text.is_empty() {
        return Err("missing value".to_owned());
    }
    let value =
        parse_value(value_text).ok_or_else(|| format!("bad value {}", quoted(value_text)))?;

    // Whatever follows ` # ` is an OpenMetrics exemplar: tolerated, not kept.
    let mut rest = rest.trim_start_matches(BLANKS);
    let mut timestamp_ms = None;
    if !rest.is_empty() && !rest.starts_with('#') {
        let (timestamp_text, after) = split_first_token(rest);
        timestamp_ms = Some(
            parse_timestamp_ms(timestamp_text, open_metrics)
                .ok_or_else(|| format!("bad timestamp {}", quoted(timestamp_text)))?,
        );
        rest = after.trim_start_matches(BLANKS);
    }
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err(format!(
            "unexpected text after the timestamp: {}",
            quoted(rest)
        ));
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

/// Parses the labels after `{` (at `position`) up to and including `}`, and returns the position after it.
fn parse_labels<'a>(
    line: &'a str,
    mut position: usize,
    labels: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<usize, String> {
    let bytes = line.as_bytes();
    loop {
        position = skip_blanks(bytes, position);
        match bytes.get(position) {
            None => return Err("unterminated label set".to_owned()),
            Some(b'}') => return Ok(position + 1),
            Some(_) => {}
        }
        let name_len = label_name_len(&bytes[position..]);
        if name_len == 0 {
            let (at, _) = split_first_token(&line[position..]);
            return Err(format!("bad label name at {}", quoted(at)));
        }
        let name = &line[position..position + name_len];
        position = skip_blanks(bytes, position + name_len);
        if bytes.get(position) != Some(&b'=') {
            return Err(format!("expected '=' after label name {name}"));
        }
        position = skip_blanks(bytes, position + 1);
        if bytes.get(position) != Some(&b'"') {
            return Err(format!("expected '\"' to open the value of label {name}"));
        }
        let (value, after_value) = parse_label_value(line, position + 1)
            .ok_or_else(|| format!("unterminated label value of label {name}"))?;
        if labels.iter().any(|(seen, _)| *seen == name) {
            return Err(format!("duplicate label name {name}"));
        }
        labels.push((name, value));
        position = skip_blanks(bytes, after_value);
        match bytes.get(position) {
            Some(b',') => position += 1,
            Some(b'}') => return Ok(position + 1),
            None => return Err("unterminated label set".to_owned()),
            Some(_) => {
                return Err(format!(
                    "expected ',' or '}}' after the value of label {name}"
                ));
            }
        }
    }
}

/// Reads a label value that starts at `start` (after its opening quote); returns it and the position after the
/// closing quote, or `None` if the line ends first. Borrows unless the value has escapes. `\\`, `\"` and `\n`
/// are the escapes the formats define; any other backslash is kept as written, as Prometheus itself does.
fn parse_label_value(line: &str, start: usize) -> Option<(Cow<'_, str>, usize)> {
    let bytes = line.as_bytes();
    let mut special = start + memchr2(b'"', b'\\', &bytes[start..])?;
    if bytes[special] == b'"' {
        return Some((Cow::Borrowed(&line[start..special]), special + 1));
    }
    let mut value = String::with_capacity(special - start + 16);
    value.push_str(&line[start..special]);
    loop {
        // `special` is at a backslash here.
        let run_start = match bytes.get(special + 1)? {
            b'n' => {
                value.push('\n');
                special + 2
            }
            escaped @ (b'\\' | b'"') => {
                value.push(char::from(*escaped));
                special + 2
            }
            _ => {
                value.push('\\');
                special + 1
            }
        };
        special = run_start + memchr2(b'"', b'\\', &bytes[run_start..])?;
        value.push_str(&line[run_start..special]);
        if bytes[special] == b'"' {
            return Some((Cow::Owned(value), special + 1));
        }
    }
}

/// HELP text escapes `\\` and `\n` (and `\"` in OpenMetrics); other backslashes are kept as written.
fn unescape_help(text: &str) -> Cow<'_, str> {
    if memchr(b'\\', text.as_bytes()).is_none() {
        return Cow::Borrowed(text);
    }
    let mut help = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            help.push(c);
            continue;
        }
        match chars.clone().next() {
            Some('n') => help.push('\n'),
            Some(escaped @ ('\\' | '"')) => help.push(escaped),
            _ => {
                help.push('\\');
                continue;
            }
        }
        chars.next();
    }
    Cow::Owned(help)
}

/// 0.0.4 timestamps are integer milliseconds; OpenMetrics timestamps are (possibly fractional) seconds.
fn parse_timestamp_ms(text: &str, open_metrics: bool) -> Option<i64> {
    if !open_metrics {
        return text.parse().ok();
    }
    let milliseconds = (text.parse::<f64>().ok()? * 1000.0).round();
    // The `as` cast saturates; keep only values that fit rather than clamping them.
    let fits = milliseconds.is_finite() && milliseconds.abs() < 9.2e18;
    fits.then_some(milliseconds as i64)
}

/// Length of the metric name at the start of `bytes`: `[a-zA-Z_:][a-zA-Z0-9_:]*`, 0 if none.
fn metric_name_len(bytes: &[u8]) -> usize {
    if bytes.first().is_none_or(u8::is_ascii_digit) {
        return 0;
    }
    bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b':'))
        .unwrap_or(bytes.len())
}

/// Length of the label name at the start of `bytes`: `[a-zA-Z_][a-zA-Z0-9_]*`, 0 if none.
fn label_name_len(bytes: &[u8]) -> usize {
    if bytes.first().is_none_or(u8::is_ascii_digit) {
        return 0;
    }
    bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
        .unwrap_or(bytes.len())
}

fn skip_blanks(bytes: &[u8], mut position: usize) -> usize {
    while matches!(bytes.get(position), Some(b' ' | b'\t')) {
        position += 1;
    }
    position
}

/// Splits at the first blank: the token before it, and the rest from the blank on.
fn split_first_token(text: &str) -> (&str, &str) {
    text.split_at(text.find(BLANKS).unwrap_or(text.len()))
}

/// `text` quoted for an error message, cut short (on a character boundary) so a huge line stays readable.
fn quoted(text: &str) -> String {
    let (kept, cut) = shortened(text, 40);
    format!("{kept:?}{}", if cut { "…" } else { "" })
}

/// The first `max_chars` characters of `text`, and whether any were left out.
fn shortened(text: &str, max_chars: usize) -> (&str, bool) {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => (&text[..cut], true),
        None => (text, false),
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use proptest::prelude::*;

    use super::*;

    macro_rules! fixture {
        ($path:literal) => {
            ($path, include_str!(concat!("../../../fixtures/", $path)))
        };
    }

    const VLLM_FIXTURES: [(&str, &str); 4] = [
        fixture!("vllm_cpu/metrics_after_bench.txt"),
        fixture!("vllm_cpu/metrics_after_load.txt"),
        fixture!("vllm_cpu/metrics_after_peer_runs.txt"),
        fixture!("vllm_cpu/metrics_during_load.txt"),
    ];

    const LLAMACPP_FIXTURES: [(&str, &str); 4] = [
        fixture!("llamacpp/metrics_idle.txt"),
        fixture!("llamacpp/metrics_after_load.txt"),
        fixture!("llamacpp/metrics_during_load.txt"),
        fixture!("llamacpp/medium_metrics_during_load.txt"),
    ];

    fn only_sample<'s>(scrape: &'s Scrape<'_>, name: &str) -> &'s Sample<'s> {
        let samples: Vec<_> = scrape.samples_named(name).collect();
        assert_eq!(samples.len(), 1, "{name}: {samples:?}");
        samples[0]
    }

    /// Checks a real scrape against what its text declares, line by line, without using the parser.
    fn assert_matches_declarations(path: &str, text: &str, scrape: &Scrape<'_>) {
        assert_eq!(scrape.errors, [], "{path}");
        let declared: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .map(|declaration| declaration.split_once(' ').expect("TYPE line has a type"))
            .collect();
        let parsed: Vec<_> = scrape.families.iter().map(|family| family.name).collect();
        let declared_names: Vec<_> = declared.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            parsed, declared_names,
            "{path}: every family is declared, in order"
        );
        for ((_, word), family) in declared.iter().zip(&scrape.families) {
            assert_eq!(
                MetricType::from_type_word(word),
                Some(family.kind),
                "{path}: {}",
                family.name
            );
            assert!(family.help.is_some(), "{path}: {} has HELP", family.name);
        }
        let sample_lines = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .count();
        let samples: usize = scrape
            .families
            .iter()
            .map(|family| family.samples.len())
            .sum();
        assert_eq!(samples, sample_lines, "{path}: every sample line is kept");
    }

    #[test]
    fn every_vllm_fixture_parses_into_its_declared_families() {
        for (path, text) in VLLM_FIXTURES {
            let scrape = parse(text);
            assert_matches_declarations(path, text, &scrape);
            assert_eq!(scrape.families.len(), 92, "{path}");

            let iteration_tokens = scrape.family("vllm:iteration_tokens_total").unwrap();
            assert_eq!(iteration_tokens.kind, MetricType::Histogram, "{path}");
            assert!(
                iteration_tokens
                    .samples
                    .iter()
                    .any(|sample| sample.name == "vllm:iteration_tokens_total_bucket"),
                "{path}"
            );
            assert_eq!(
                scrape.family("vllm:prompt_tokens_total").unwrap().kind,
                MetricType::Counter
            );
            assert_eq!(
                scrape.family("vllm:prompt_tokens_created").unwrap().kind,
                MetricType::Gauge
            );
            assert_eq!(
                scrape
                    .family("vllm:cache_config_info")
                    .unwrap()
                    .label("block_size"),
                Some("128")
            );

            // In every histogram, each series' +Inf bucket counts exactly the observations of its _count.
            let histograms = scrape
                .families
                .iter()
                .filter(|f| f.kind == MetricType::Histogram);
            for family in histograms {
                let count_name = format!("{}_count", family.name);
                let bucket_name = format!("{}_bucket", family.name);
                let counts: Vec<_> = family
                    .samples
                    .iter()
                    .filter(|s| s.name == count_name)
                    .collect();
                assert!(!counts.is_empty(), "{path}: {}", family.name);
                for count in counts {
                    let inf_bucket = family
                        .samples
                        .iter()
                        .find(|s| {
                            s.name == bucket_name
                                && s.label("le") == Some("+Inf")
                                && s.labels
                                    .iter()
                                    .filter(|(k, _)| *k != "le")
                                    .eq(count.labels.iter())
                        })
                        .unwrap_or_else(|| panic!("{path}: {} has a +Inf bucket", family.name));
                    assert_eq!(inf_bucket.value, count.value, "{path}: {}", family.name);
                }
            }
        }
    }

    #[test]
    fn vllm_fixture_values_are_read_exactly() {
        let scrape = parse(VLLM_FIXTURES[0].1);
        let prompt_tokens = only_sample(&scrape, "vllm:prompt_tokens_total");
        assert_eq!(prompt_tokens.value, 1062.0);
        assert_eq!(prompt_tokens.label("model_name"), Some("tiny"));
        assert_eq!(prompt_tokens.label("engine"), Some("0"));
        assert_eq!(
            only_sample(&scrape, "vllm:e2e_request_latency_seconds_sum").value,
            33.68726181983948
        );
        assert_eq!(
            only_sample(&scrape, "vllm:e2e_request_latency_seconds_created").value,
            1.7953453682665615e9
        );
        assert_eq!(
            only_sample(&scrape, "process_virtual_memory_bytes").value,
            4.8477184e9
        );
        let summary = scrape.family("http_request_size_bytes").unwrap();
        assert_eq!(summary.kind, MetricType::Summary);
        assert_eq!(summary.samples.len(), 8);
    }

    #[test]
    fn every_llamacpp_fixture_parses_into_its_declared_families() {
        for (path, text) in LLAMACPP_FIXTURES {
            let scrape = parse(text);
            assert_matches_declarations(path, text, &scrape);
            assert_eq!(scrape.families.len(), 15, "{path}");
            assert_eq!(
                scrape.family("llamacpp:prompt_tokens_total").unwrap().kind,
                MetricType::Counter
            );
            assert_eq!(
                scrape.family("llamacpp:requests_processing").unwrap().kind,
                MetricType::Gauge
            );
        }
        let scrape = parse(LLAMACPP_FIXTURES[2].1);
        assert_eq!(
            only_sample(&scrape, "llamacpp:tokens_predicted_total").value,
            15648.0
        );
        assert_eq!(
            only_sample(&scrape, "llamacpp:n_busy_slots_per_decode").value,
            3.22475
        );
        assert_eq!(
            only_sample(&scrape, "llamacpp:requests_deferred").labels,
            []
        );
    }

    #[test]
    fn names_may_contain_colons() {
        let scrape = parse("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 3\n");
        assert_eq!(scrape.errors, []);
        assert_eq!(only_sample(&scrape, "vllm:num_requests_running").value, 3.0);
    }

    #[test]
    fn help_unit_and_type_are_read_with_help_escapes() {
        let text = "# HELP x_seconds Line one\\nback\\\\slash \\\"quoted\\\" \\t kept\n\
                    # TYPE x_seconds histogram\n# UNIT x_seconds seconds\n# HELP y\n";
        let scrape = parse(text);
        assert_eq!(scrape.errors, []);
        let family = scrape.family("x_seconds").unwrap();
        assert_eq!(
            family.help.as_deref(),
            Some("Line one\nback\\slash \"quoted\" \\t kept")
        );
        assert_eq!(family.kind, MetricType::Histogram);
        assert_eq!(family.unit, Some("seconds"));
        assert_eq!(scrape.family("y").unwrap().help.as_deref(), Some(""));
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let text = "# a comment\n#\n\n   \n\t\n# HELPER is no keyword\nx 1\n  # indented comment\n";
        let scrape = parse(text);
        assert_eq!(scrape.errors, []);
        assert_eq!(scrape.families.len(), 1);
        assert_eq!(only_sample(&scrape, "x").value, 1.0);
    }

    #[test]
    fn eof_ends_the_exposition() {
        let scrape = parse("# TYPE x gauge\nx 1\n# EOF\nx 2\nnot a sample\n");
        assert_eq!(scrape.errors, []);
        assert_eq!(scrape.family("x").unwrap().samples.len(), 1);
    }

    #[test]
    fn crlf_line_endings_are_read_like_lf() {
        let scrape = parse("# HELP x Help.\r\n# TYPE x counter\r\nx{a=\"b\"} 1 1000\r\n\r\n");
        assert_eq!(scrape.errors, []);
        let family = scrape.family("x").unwrap();
        assert_eq!(family.help.as_deref(), Some("Help."));
        assert_eq!(family.kind, MetricType::Counter);
        assert_eq!(family.samples[0].timestamp_ms, Some(1000));
    }

    #[test]
    fn label_values_are_unescaped_and_borrowed_when_plain() {
        let text = r#"x{plain="a b,}=",escaped="back\\slash \"quote\" new\nline",odd="\t\é"} 1"#;
        let scrape = parse(text);
        assert_eq!(scrape.errors, []);
        let sample = only_sample(&scrape, "x");
        assert_eq!(sample.label("plain"), Some("a b,}="));
        assert!(matches!(sample.labels[0].1, Cow::Borrowed(_)));
        assert_eq!(
            sample.label("escaped"),
            Some("back\\slash \"quote\" new\nline")
        );
        assert_eq!(
            sample.label("odd"),
            Some("\\t\\é"),
            "unknown escapes are kept as written"
        );
        assert_eq!(sample.label("missing"), None);
    }

    #[test]
    fn label_sets_may_be_empty_spaced_or_end_with_a_comma() {
        let scrape = parse("a{} 1\nb{x=\"1\",} 2\nc { x = \"1\" , y=\"2\" } 3\n");
        assert_eq!(scrape.errors, []);
        assert_eq!(only_sample(&scrape, "a").labels, []);
        assert_eq!(only_sample(&scrape, "b").label("x"), Some("1"));
        assert_eq!(only_sample(&scrape, "c").label("y"), Some("2"));
    }

    #[test]
    fn duplicate_label_names_reject_the_line() {
        let scrape = parse("x{a=\"1\",a=\"2\"} 1\nx{a=\"1\"} 2\n");
        assert_eq!(scrape.errors, [error(1, "duplicate label name a")]);
        assert_eq!(only_sample(&scrape, "x").value, 2.0);
    }

    #[test]
    fn values_take_every_float_form_prometheus_accepts() {
        let cases = [
            ("0", 0.0),
            ("-12", -12.0),
            ("1.5", 1.5),
            ("1.7624384230434499e+09", 1.7624384230434499e9),
            ("2E-3", 2e-3),
            (".5", 0.5),
            ("9223372036854775794", 9223372036854775794.0),
            ("+Inf", f64::INFINITY),
            ("Inf", f64::INFINITY),
            ("-Inf", f64::NEG_INFINITY),
            ("+inf", f64::INFINITY),
        ];
        for (text, expected) in cases {
            let line = format!("x {text}");
            let scrape = parse_one(&line);
            assert_eq!(
                scrape.samples_named("x").next().unwrap().value,
                expected,
                "{text}"
            );
        }
        assert!(
            parse_one("x NaN")
                .samples_named("x")
                .next()
                .unwrap()
                .value
                .is_nan()
        );
    }

    #[test]
    fn hex_and_digit_separators_are_bad_values_as_in_prometheus() {
        let scrape = parse("x 0x1p4\nx 0x10\nx 1_000\nx abc\n");
        let messages: Vec<_> = scrape.errors.iter().map(|e| e.message.as_str()).collect();
        let expected = [
            r#"bad value "0x1p4""#,
            r#"bad value "0x10""#,
            r#"bad value "1_000""#,
            r#"bad value "abc""#,
        ];
        assert_eq!(messages, expected);
    }

    #[test]
    fn timestamps_are_milliseconds_in_0_0_4_and_seconds_in_openmetrics() {
        let classic = parse("x 1 1395066363000\ny 2 -5\n");
        assert_eq!(classic.errors, []);
        assert_eq!(
            classic.samples_named("x").next().unwrap().timestamp_ms,
            Some(1395066363000)
        );
        assert_eq!(
            classic.samples_named("y").next().unwrap().timestamp_ms,
            Some(-5)
        );
        assert_eq!(
            parse("x 1 1.5\n").errors,
            [error(1, r#"bad timestamp "1.5""#)]
        );

        let open_metrics = parse("x 1 1520879607.789\ny 2 1520879607\nz 3 1.5e3\n# EOF\n");
        assert_eq!(open_metrics.errors, []);
        let timestamp = |name| {
            open_metrics
                .samples_named(name)
                .next()
                .unwrap()
                .timestamp_ms
        };
        assert_eq!(timestamp("x"), Some(1520879607789));
        assert_eq!(timestamp("y"), Some(1520879607000));
        assert_eq!(timestamp("z"), Some(1500000));
    }

    #[test]
    fn exemplars_are_tolerated_and_ignored() {
        let text = "# TYPE foo histogram\n\
                    foo_bucket{le=\"0.1\"} 8 # {trace_id=\"KOO5S4vxi0o\"} 0.067 1520879607.789\n\
                    foo_bucket{le=\"+Inf\"} 17 1520879607.9 # {trace_id=\"oHg5SJYRHA0\"} 9.8\n\
                    foo_count 17\n# EOF\n";
        let scrape = parse(text);
        assert_eq!(scrape.errors, []);
        let family = scrape.family("foo").unwrap();
        assert_eq!(family.samples.len(), 3);
        assert_eq!(family.samples[0].value, 8.0);
        assert_eq!(family.samples[0].timestamp_ms, None);
        assert_eq!(family.samples[1].timestamp_ms, Some(1520879607900));
    }

    #[test]
    fn samples_join_the_family_their_type_names_them_by() {
        let text = "# TYPE vllm:iteration_tokens_total histogram\n\
                    vllm:iteration_tokens_total_bucket{le=\"1.0\"} 2\n\
                    vllm:iteration_tokens_total_bucket{le=\"+Inf\"} 3\n\
                    vllm:iteration_tokens_total_count 3\nvllm:iteration_tokens_total_sum 9\n\
                    vllm:iteration_tokens_total_created 1.7e9\n\
                    # TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total 5\n\
                    # TYPE vllm:prompt_tokens_created gauge\nvllm:prompt_tokens_created 1.7e9\n\
                    # TYPE rpc summary\nrpc{quantile=\"0.5\"} 1\nrpc_sum 2\nrpc_count 3\n\
                    # TYPE build info\nbuild_info{version=\"1\"} 1\n\
                    # TYPE queue gaugehistogram\nqueue_bucket{le=\"+Inf\"} 1\nqueue_gcount 1\nqueue_gsum 4\n\
                    # TYPE door stateset\ndoor{door=\"open\"} 1\n";
        let scrape = parse(text);
        assert_eq!(scrape.errors, []);
        let sizes: Vec<_> = scrape
            .families
            .iter()
            .map(|f| (f.name, f.kind, f.samples.len()))
            .collect();
        assert_eq!(
            sizes,
            [
                ("vllm:iteration_tokens_total", MetricType::Histogram, 5),
                ("vllm:prompt_tokens_total", MetricType::Counter, 1),
                ("vllm:prompt_tokens_created", MetricType::Gauge, 1),
                ("rpc", MetricType::Summary, 3),
                ("build", MetricType::Info, 1),
                ("queue", MetricType::GaugeHistogram, 3),
                ("door", MetricType::StateSet, 1),
            ]
        );
    }

    #[test]
    fn openmetrics_counters_own_their_total_and_created_samples() {
        let text = "# TYPE vllm:prompt_tokens counter\n# UNIT vllm:prompt_tokens tokens\n\
                    vllm:prompt_tokens_total 5\nvllm:prompt_tokens_created 1.7e9\n# EOF\n";
        let scrape = parse(text);
        assert_eq!(scrape.errors, []);
        let family = scrape.family("vllm:prompt_tokens").unwrap();
        assert_eq!(
            (family.kind, family.samples.len()),
            (MetricType::Counter, 2)
        );
        assert_eq!(only_sample(&scrape, "vllm:prompt_tokens_total").value, 5.0);
    }

    #[test]
    fn samples_without_a_type_are_untyped_families_of_their_own_name() {
        let scrape =
            parse("# TYPE g gauge\ng 1\ng_total 2\nfoo_total 3\nfoo_total{a=\"b\"} 4\ng_sum 5\n");
        assert_eq!(scrape.errors, []);
        let sizes: Vec<_> = scrape
            .families
            .iter()
            .map(|f| (f.name, f.kind, f.samples.len()))
            .collect();
        assert_eq!(
            sizes,
            [
                ("g", MetricType::Gauge, 1),
                ("g_total", MetricType::Untyped, 1),
                ("foo_total", MetricType::Untyped, 2),
                ("g_sum", MetricType::Untyped, 1),
            ]
        );
    }

    #[test]
    fn samples_out_of_place_still_find_their_family() {
        let text = "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\n# TYPE c counter\n# TYPE g gauge\n\
                    g 1\nh_count 1\nc_total 4\ng{a=\"b\"} 2\nh_x_count 3\ng_sum 5\n";
        let scrape = parse(text);
        assert_eq!(scrape.errors, []);
        let sizes: Vec<_> = scrape
            .families
            .iter()
            .map(|f| (f.name, f.samples.len()))
            .collect();
        assert_eq!(
            sizes,
            [("h", 2), ("c", 1), ("g", 2), ("h_x_count", 1), ("g_sum", 1)]
        );
    }

    fn error(line: usize, message: &str) -> LineError {
        LineError {
            line,
            message: message.to_owned(),
        }
    }

    fn parse_one(text: &str) -> Scrape<'_> {
        let scrape = parse(text);
        assert_eq!(scrape.errors, [], "{text}");
        scrape
    }

    #[test]
    fn malformed_lines_are_reported_by_number_and_the_rest_is_kept() {
        let text = "# TYPE ok gauge\n\
                    ok 1\n\
                    bad{a=\"unterminated} 1\n\
                    bad abc\n\
                    bad{a=\"b\"}\n\
                    bad 1 2 3\n\
                    {a=\"b\"} 1\n\
                    bad-name 1\n\
                    bad{1a=\"b\"} 1\n\
                    bad{a \"b\"} 1\n\
                    bad{a=b} 1\n\
                    bad{a=\"b\" c=\"d\"} 1\n\
                    bad{a=\"b\"\n\
                    # TYPE x blob\n\
                    # TYPE\n\
                    # HELP 1x help\n\
                    # TYPE ok counter\n\
                    ok{n=\"2\"} 2\n";
        let scrape = parse(text);
        let expected = [
            error(3, "unterminated label value of label a"),
            error(4, r#"bad value "abc""#),
            error(5, "missing value"),
            error(6, r#"unexpected text after the timestamp: "3""#),
            error(7, r#"bad metric name "{a=\"b\"}""#),
            error(8, "bad character '-' after metric name bad"),
            error(9, r#"bad label name at "1a=\"b\"}""#),
            error(10, "expected '=' after label name a"),
            error(11, "expected '\"' to open the value of label a"),
            error(12, "expected ',' or '}' after the value of label a"),
            error(13, "unterminated label set"),
            error(14, r#"unknown metric type "blob""#),
            error(15, "TYPE line without a metric name"),
            error(16, r#"bad metric name "1x" in HELP line"#),
            error(17, "second TYPE line for ok"),
        ];
        assert_eq!(scrape.errors, expected);
        assert_eq!(scrape.family("ok").unwrap().kind, MetricType::Gauge);
        let values: Vec<_> = scrape.samples_named("ok").map(|s| s.value).collect();
        assert_eq!(values, [1.0, 2.0]);
        assert_eq!(scrape.families.len(), 1, "failed lines create no families");
    }

    #[test]
    fn line_numbers_count_crlf_and_blank_lines() {
        let scrape = parse("\r\n# c\r\nx 1\r\n\r\nx{a=\"b} 2\r\nx{a=\"c\"} 3\r\n");
        assert_eq!(
            scrape.errors,
            [error(5, "unterminated label value of label a")]
        );
        assert_eq!(scrape.samples_named("x").count(), 2);
    }

    /// Issue 11: two copies of one series were both kept, and readers summed them (KV usage 120%).
    #[test]
    fn a_duplicate_series_is_an_error_naming_both_lines_and_the_first_is_kept() {
        let text = "# TYPE kv gauge\n\
                    kv{engine=\"0\",model_name=\"m\"} 0.6\n\
                    kv{engine=\"1\",model_name=\"m\"} 0.5\n\
                    kv{model_name=\"m\",engine=\"0\"} 0.7\n\
                    kv{engine=\"0\",model_name=\"m\"} 0.6 1000\n\
                    other{engine=\"0\",model_name=\"m\"} 0.6\n";
        let scrape = parse(text);
        assert_eq!(
            scrape.errors,
            [error(
                4,
                "duplicate series `kv{model_name=\"m\",engine=\"0\"}`: first on line 2; the first is kept"
            )]
        );
        let values: Vec<_> = scrape.samples_named("kv").map(|s| s.value).collect();
        assert_eq!(
            values,
            [0.6, 0.5, 0.6],
            "a timestamped sample is another point"
        );
        let hundred_copies: String = (0..100).map(|i| format!("x{{i=\"{i}\"}} 1\n")).collect();
        assert_eq!(
            parse(&(hundred_copies.clone() + &hundred_copies))
                .errors
                .len(),
            100
        );
    }

    #[test]
    fn multibyte_characters_anywhere_are_errors_not_panics() {
        let lines = [
            "fé 1",
            "é 1",
            "x{é=\"1\"} 1",
            "x{a=\"é\"} é",
            "x 1 é",
            "x{a=\"b\"é} 1",
            "x{a\u{e9}=\"1\"} 1",
            "# TYPE é gauge",
            "# TYPE x gaugé",
            "x{a=\"\\é",
            "x 1 1 é",
        ];
        for line in lines {
            let scrape = parse(line);
            assert_eq!(scrape.errors.len(), 1, "{line}: {:?}", scrape.errors);
        }
        let long_value = format!("x {}", "é".repeat(100));
        let message = &parse(&long_value).errors[0].message;
        assert!(
            message.ends_with('…') && message.chars().count() < 60,
            "{message}"
        );
    }

    #[test]
    fn helpers_find_families_labels_and_samples_by_name() {
        let scrape = parse_one("# TYPE info gauge\ninfo{a=\"1\"} 1\ninfo{b=\"2\"} 1\n");
        let family = scrape.family("info").unwrap();
        assert_eq!(
            (family.label("a"), family.label("b"), family.label("c")),
            (Some("1"), Some("2"), None)
        );
        assert!(scrape.family("inf").is_none());
        assert_eq!(scrape.samples_named("info").count(), 2);
        assert_eq!(scrape.samples_named("inf").count(), 0);
    }

    #[test]
    fn owned_scrapes_survive_json_with_non_finite_values() {
        let text = "# HELP x Help \\n text.\n# TYPE x gauge\n# UNIT x ratio\n\
                    x{a=\"q\\\"uote\"} NaN 5\nx{a=\"2\"} +Inf\nx{a=\"3\"} -Inf\nx{a=\"4\"} 0.25\nbad\n";
        let scrape = parse(text);
        let json = serde_json::to_string(&scrape.to_owned_scrape()).unwrap();
        assert!(
            json.contains(r#""value":"NaN""#) && json.contains(r#""value":"+Inf""#),
            "{json}"
        );
        let stored: OwnedScrape = serde_json::from_str(&json).unwrap();
        let restored = stored.as_scrape();
        assert_same_data(&restored.families, &scrape.families);
        assert_eq!(restored.errors, scrape.errors);

        // serde_json reads floats exactly only with its `float_roundtrip` feature; without it, one unit in the
        // last place may change, which no rate or quantile can notice.
        let vllm = parse(VLLM_FIXTURES[0].1);
        let json = serde_json::to_string(&vllm.to_owned_scrape()).unwrap();
        let stored: OwnedScrape = serde_json::from_str(&json).unwrap();
        let restored = stored.as_scrape();
        let restored_samples: Vec<_> = restored
            .families
            .iter()
            .flat_map(|family| &family.samples)
            .collect();
        let vllm_samples: Vec<_> = vllm
            .families
            .iter()
            .flat_map(|family| &family.samples)
            .collect();
        assert_eq!(restored_samples.len(), vllm_samples.len());
        for (restored, original) in restored_samples.into_iter().zip(vllm_samples) {
            assert_eq!(
                (restored.name, &restored.labels),
                (original.name, &original.labels)
            );
            let tolerance = original.value.abs() * 2.0 * f64::EPSILON;
            assert!(
                (restored.value - original.value).abs() <= tolerance,
                "{restored:?} vs {original:?}"
            );
        }
    }

    /// Equality that holds NaN equal to NaN, and tells 0.0 from -0.0.
    fn same_value(left: f64, right: f64) -> bool {
        left.to_bits() == right.to_bits() || (left.is_nan() && right.is_nan())
    }

    fn assert_same_data(actual: &[Family<'_>], expected: &[Family<'_>]) {
        assert_eq!(actual.len(), expected.len());
        for (actual, expected) in actual.iter().zip(expected) {
            assert_eq!(
                (actual.name, actual.kind, &actual.help, actual.unit),
                (expected.name, expected.kind, &expected.help, expected.unit)
            );
            assert_eq!(
                actual.samples.len(),
                expected.samples.len(),
                "{}",
                expected.name
            );
            for (actual, expected) in actual.samples.iter().zip(&expected.samples) {
                assert_eq!(
                    (actual.name, &actual.labels, actual.timestamp_ms),
                    (expected.name, &expected.labels, expected.timestamp_ms)
                );
                assert!(
                    same_value(actual.value, expected.value),
                    "{actual:?} vs {expected:?}"
                );
            }
        }
    }

    /// Writes families as an exporter would, in 0.0.4 or (with `# EOF` and float-second timestamps) OpenMetrics.
    fn render(families: &[Family<'_>], open_metrics: bool) -> String {
        fn escape(text: &str, escape_quotes: bool) -> String {
            let text = text.replace('\\', "\\\\").replace('\n', "\\n");
            if escape_quotes {
                text.replace('"', "\\\"")
            } else {
                text
            }
        }
        let mut out = String::new();
        for family in families {
            if let Some(help) = &family.help {
                writeln!(out, "# HELP {} {}", family.name, escape(help, false)).unwrap();
            }
            let word = match family.kind {
                MetricType::Counter => "counter",
                MetricType::Gauge => "gauge",
                MetricType::Histogram => "histogram",
                MetricType::GaugeHistogram => "gaugehistogram",
                MetricType::Summary => "summary",
                MetricType::Info => "info",
                MetricType::StateSet => "stateset",
                MetricType::Untyped if open_metrics => "unknown",
                MetricType::Untyped => "untyped",
            };
            writeln!(out, "# TYPE {} {word}", family.name).unwrap();
            if let Some(unit) = family.unit {
                writeln!(out, "# UNIT {} {unit}", family.name).unwrap();
            }
            for sample in &family.samples {
                out.push_str(sample.name);
                if !sample.labels.is_empty() {
                    let labels: Vec<_> = sample
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", escape(v, true)))
                        .collect();
                    write!(out, "{{{}}}", labels.join(",")).unwrap();
                }
                match sample.value {
                    v if v.is_nan() => out.push_str(" NaN"),
                    v if v == f64::INFINITY => out.push_str(" +Inf"),
                    v if v == f64::NEG_INFINITY => out.push_str(" -Inf"),
                    v => write!(out, " {v:?}").unwrap(),
                }
                match sample.timestamp_ms {
                    Some(ms) if open_metrics => {
                        let sign = if ms < 0 { "-" } else { "" };
                        let ms = ms.unsigned_abs();
                        write!(out, " {sign}{}.{:03}", ms / 1000, ms % 1000).unwrap();
                    }
                    Some(ms) => write!(out, " {ms}").unwrap(),
                    None => {}
                }
                out.push('\n');
            }
        }
        if open_metrics {
            out.push_str("# EOF\n");
        }
        out
    }

    fn text_with_escapes(max_chars: usize) -> impl Strategy<Value = String> {
        let character =
            prop_oneof![4 => any::<char>(), 1 => Just('\\'), 1 => Just('"'), 1 => Just('\n')];
        prop::collection::vec(character, 0..max_chars).prop_map(String::from_iter)
    }

    /// Families with distinct names: a numbered stem cannot collide with another family or its samples' names.
    fn families_strategy() -> impl Strategy<Value = Vec<OwnedFamily>> {
        let kind = prop_oneof![
            Just(MetricType::Counter),
            Just(MetricType::Gauge),
            Just(MetricType::Histogram),
            Just(MetricType::GaugeHistogram),
            Just(MetricType::Summary),
            Just(MetricType::Info),
            Just(MetricType::StateSet),
            Just(MetricType::Untyped),
        ];
        // A trailing CR would read as a CRLF line end, and leading blanks are separators, not text.
        let help = text_with_escapes(24)
            .prop_map(|help| help.replace('\r', "").trim_start_matches(BLANKS).to_owned());
        let value = prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            (-1000i64..1000).prop_map(|n| n as f64 / 8.0),
        ];
        // Within ±3e12 ms, seconds with three decimals convert back to the same milliseconds.
        let timestamp = prop::option::of(-3_000_000_000_000i64..3_000_000_000_000);
        let labels =
            prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,6}", text_with_escapes(10), 0..4);
        let sample = (0..4usize, labels, value, timestamp);
        let family = (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
            kind,
            prop::option::of(help),
            prop::option::of("[a-z]{1,8}"),
            prop::collection::vec(sample, 0..5),
        );
        prop::collection::vec(family, 0..6).prop_map(|families| {
            let numbered = families.into_iter().enumerate();
            let families = numbered.map(|(index, (stem, kind, help, unit, samples))| {
                let name = format!("{stem}_{index}");
                let samples: Vec<OwnedSample> = samples
                    .into_iter()
                    .map(|(suffix_choice, labels, value, timestamp_ms)| {
                        // Choice 0 is the family's own name, the others its type's suffixes if it has them.
                        let suffixes = kind.sample_suffixes();
                        let suffix = suffix_choice.checked_sub(1).and_then(|i| suffixes.get(i));
                        OwnedSample {
                            name: format!("{name}{}", suffix.unwrap_or(&"")),
                            labels: labels.into_iter().collect(),
                            value,
                            timestamp_ms,
                        }
                    })
                    .collect();
                // One series twice is an error the parser reports (and drops), not data it gives back.
                let mut series_seen = std::collections::HashSet::new();
                let samples = samples
                    .into_iter()
                    .filter(|s| {
                        series_seen.insert((s.name.clone(), s.labels.clone(), s.timestamp_ms))
                    })
                    .collect();
                OwnedFamily {
                    name,
                    kind,
                    help,
                    unit,
                    samples,
                }
            });
            families.collect()
        })
    }

    /// A real scrape with bytes replaced, inserted and deleted, read back as (lossy) UTF-8.
    fn mutated_fixture() -> impl Strategy<Value = String> {
        let edit = (any::<prop::sample::Index>(), any::<u8>(), 0..3u8);
        prop::collection::vec(edit, 1..40).prop_map(|edits| {
            let mut bytes = VLLM_FIXTURES[3].1.as_bytes().to_vec();
            for (at, byte, operation) in edits {
                let at = at.index(bytes.len());
                match operation {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }

    fn assert_errors_are_well_formed(text: &str, scrape: &Scrape<'_>) {
        let lines = text.split('\n').count();
        assert!(
            scrape
                .errors
                .windows(2)
                .all(|pair| pair[0].line < pair[1].line)
        );
        assert!(
            scrape
                .errors
                .iter()
                .all(|error| (1..=lines).contains(&error.line))
        );
    }

    proptest! {
        #[test]
        fn render_then_parse_gives_back_the_same_data(families in families_strategy(), open_metrics: bool) {
            let generated = OwnedScrape { families, errors: Vec::new() };
            let expected = generated.as_scrape().families;
            let text = render(&expected, open_metrics);
            let scrape = parse(&text);
            prop_assert_eq!(&scrape.errors, &[], "{}", text);
            assert_same_data(&scrape.families, &expected);
        }

        #[test]
        fn parse_never_panics_on_arbitrary_text(
            text in prop_oneof![any::<String>(), "[#{}=\", \\\\\t\r\na-z_:0-9.+-]{0,200}"]
        ) {
            assert_errors_are_well_formed(&text, &parse(&text));
        }

        #[test]
        fn parse_never_panics_on_a_mutated_real_scrape(text in mutated_fixture()) {
            assert_errors_are_well_formed(&text, &parse(&text));
        }
    }
}
