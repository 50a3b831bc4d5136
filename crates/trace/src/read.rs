//! Reads a Kineto trace (`*.pt.trace.json[.gz]`) as a stream: events are visited one at a time and only what the
//! analyses need is kept, so memory follows the GPU operations kept, not the file; a file cut short keeps its events.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::TraceError;
use crate::event::{Annotation, Device, GpuKind, GpuOp, NameId, Names, RuntimeCall};
use crate::kernel::{HtaType, KernelClass, classify, hta_type};

/// Visitor methods that accept a value of an unexpected JSON type and give `$value`: an odd field in one event
/// must not end the reading of the millions after it.
macro_rules! fallback {
    ($value:expr; $($kind:ident),*) => { $(fallback!(@one $value; $kind);)* };
    (@one $value:expr; bool) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> { Ok($value) }
    };
    (@one $value:expr; i64) => {
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> { Ok($value) }
    };
    (@one $value:expr; u64) => {
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> { Ok($value) }
    };
    (@one $value:expr; f64) => {
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> { Ok($value) }
    };
    (@one $value:expr; str) => {
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> { Ok($value) }
    };
    (@one $value:expr; unit) => {
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> { Ok($value) }
    };
    (@one $value:expr; seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($value)
        }
    };
    (@one $value:expr; map) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($value)
        }
    };
}

/// One rank's trace, as read.
#[derive(Debug, Default)]
pub struct Trace {
    pub path: PathBuf,
    /// `distributedInfo.rank`; `None` in single-process traces and the 2022 format without it.
    pub rank: Option<u32>,
    pub devices: Vec<Device>,
    pub names: Names,
    pub gpu_ops: Vec<GpuOp>,
    pub runtime: Vec<RuntimeCall>,
    pub annotations: Vec<Annotation>,
    pub counts: EventCounts,
    /// Where and why the file ended before its end (a profiler killed mid-write, a truncated gzip).
    pub cut: Option<String>,
    /// Kineto's `baseTimeNanoseconds`: `ts` µs + this = Unix time, what lines ranks' clocks up.
    pub base_time_ns: Option<u64>,
    /// vLLM writes its version into the traces its workers record.
    pub vllm_version: Option<String>,
    /// First start and last end of every complete event, CPU and GPU (µs, the trace's clock).
    pub span: Option<(f64, f64)>,
}

/// What the file held, kept or not.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EventCounts {
    pub events: u64,
    pub gpu_ops: u64,
    pub runtime_calls: u64,
    pub annotations: u64,
    pub cpu_ops: u64,
    pub python_functions: u64,
    /// Complete events without a category, a start or a duration, and other phases (flows, metadata, counters).
    pub other: u64,
    /// Categories no Kineto version documented here writes, with their counts (the first few names).
    pub unknown_categories: BTreeMap<String, u64>,
}

/// Unknown category names kept by name; past this many they are counted under one entry.
const UNKNOWN_CATEGORY_NAMES: usize = 16;

/// Reads one trace file, gzipped or not (told by its first bytes, not its name).
pub fn read_trace(path: &Path) -> Result<Trace, TraceError> {
    let open = |path: &Path| {
        File::open(path).map_err(|source| TraceError::Open {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut magic = [0u8; 2];
    let gzipped = open(path)?.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let file = open(path)?;
    let reader: Box<dyn Read> = if gzipped {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            file,
        )))
    } else {
        Box::new(file)
    };
    let mut trace = Trace {
        path: path.to_path_buf(),
        ..Default::default()
    };
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 20, reader));
    let outcome = TopLevel(&mut Builder::new(&mut trace))
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Err(e) = outcome {
        let read_any = trace.counts.events > 0;
        let at = if e.line() > 0 {
            format!(" at line {} column {}", e.line(), e.column())
        } else {
            String::new()
        };
        let why = if e.is_eof() || e.is_io() {
            format!("the file ends early{at} ({e})")
        } else {
            format!("unreadable JSON{at}: {e}")
        };
        if !read_any {
            return Err(TraceError::NotATrace {
                path: path.to_path_buf(),
                reason: why,
            });
        }
        trace.cut = Some(format!(
            "{why}: the {} events before the cut are analysed",
            trace.counts.events
        ));
    }
    if trace.counts.events == 0 {
        return Err(TraceError::NotATrace {
            path: path.to_path_buf(),
            reason: "no traceEvents".into(),
        });
    }
    Ok(trace)
}

/// Turns visited events into the compact model, reusing one name buffer for every event.
struct Builder<'t> {
    trace: &'t mut Trace,
    name: String,
    category: String,
    /// Each GPU op name's class and HTA type, found once per name: a trace repeats a few thousand names millions
    /// of times.
    kinds: Vec<Option<(KernelClass, HtaType)>>,
}

impl<'t> Builder<'t> {
    fn new(trace: &'t mut Trace) -> Self {
        Builder {
            trace,
            name: String::new(),
            category: String::new(),
            kinds: Vec::new(),
        }
    }

    fn kinds_of(&mut self, name: NameId) -> (KernelClass, HtaType) {
        let index = name as usize;
        if self.kinds.len() <= index {
            self.kinds.resize(index + 1, None);
        }
        let names = &self.trace.names;
        *self.kinds[index].get_or_insert_with(|| {
            let text = names.get(name);
            (classify(text), hta_type(text))
        })
    }

    fn finish(&mut self, event: RawEvent) {
        let counts = &mut self.trace.counts;
        counts.events += 1;
        let (Some(ts), Some(dur)) = (event.ts, event.dur) else {
            counts.other += 1;
            return;
        };
        if event.phase != Some(b'X') || !ts.is_finite() || !dur.is_finite() {
            counts.other += 1;
            return;
        }
        let span = self.trace.span.get_or_insert((ts, ts + dur));
        (span.0, span.1) = (span.0.min(ts), span.1.max(ts + dur));
        let category = Category::of(&self.category);
        if category == Category::Unknown {
            let unknown = &mut counts.unknown_categories;
            let key =
                if unknown.len() < UNKNOWN_CATEGORY_NAMES || unknown.contains_key(&self.category) {
                    self.category.clone()
                } else {
                    "(others)".to_string()
                };
            *unknown.entry(key).or_default() += 1;
        }
        // As HTA reads Kineto: an event with a stream (not -1) is on the GPU, whatever its category.
        if let Some(stream) = event.stream.filter(|s| *s != -1)
            && !matches!(category, Category::Missing | Category::Trace)
        {
            counts.gpu_ops += 1;
            let name = self.trace.names.intern(&self.name);
            let (class, hta) = self.kinds_of(name);
            self.trace.gpu_ops.push(GpuOp {
                ts,
                dur,
                stream,
                correlation: event.correlation,
                name,
                kind: category.gpu_kind(),
                class,
                hta,
                bandwidth_gbps: event.bandwidth_gbps,
                bytes: event.bytes,
            });
            return;
        }
        match category {
            Category::Runtime => {
                counts.runtime_calls += 1;
                let name = self.trace.names.intern(&self.name);
                self.trace.runtime.push(RuntimeCall {
                    ts,
                    dur,
                    correlation: event.correlation,
                    name,
                });
            }
            Category::UserAnnotation | Category::GpuUserAnnotation => {
                counts.annotations += 1;
                let name = self.trace.names.intern(&self.name);
                self.trace.annotations.push(Annotation {
                    ts,
                    dur,
                    name,
                    on_gpu: category == Category::GpuUserAnnotation,
                });
            }
            Category::CpuOp => counts.cpu_ops += 1,
            Category::PythonFunction => counts.python_functions += 1,
            _ => counts.other += 1,
        }
    }
}

/// Kineto's categories (`ActivityType.h`) and the 2022 format's, as far as the analyses tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Kernel,
    Memcpy,
    Memset,
    Sync,
    Runtime,
    UserAnnotation,
    GpuUserAnnotation,
    CpuOp,
    PythonFunction,
    Trace,
    /// Known to Kineto, not used by the analyses (`overhead`, `cuda_event`, `mtia_*`, …).
    Other,
    Missing,
    Unknown,
}

impl Category {
    fn of(name: &str) -> Category {
        match name {
            "kernel" | "Kernel" => Category::Kernel,
            "gpu_memcpy" | "Memcpy" => Category::Memcpy,
            "gpu_memset" | "Memset" => Category::Memset,
            "cuda_sync" => Category::Sync,
            "cuda_runtime" | "cuda_driver" | "Runtime" => Category::Runtime,
            "user_annotation" => Category::UserAnnotation,
            "gpu_user_annotation" => Category::GpuUserAnnotation,
            "cpu_op" | "Operator" => Category::CpuOp,
            "python_function" => Category::PythonFunction,
            "Trace" => Category::Trace,
            "" => Category::Missing,
            "external_correlation"
            | "cpu_instant_event"
            | "overhead"
            | "cuda_event"
            | "cuda_profiler_range"
            | "collective_comm"
            | "hardware_counters"
            | "ac2g"
            | "fwdbwd"
            | "async_gpu"
            | "Memory"
            | "python" => Category::Other,
            other
                if ["xpu_", "mtia_", "privateuse1_"]
                    .iter()
                    .any(|p| other.starts_with(p)) =>
            {
                Category::Other
            }
            _ => Category::Unknown,
        }
    }

    fn gpu_kind(self) -> GpuKind {
        match self {
            Category::Kernel => GpuKind::Kernel,
            Category::Memcpy => GpuKind::Memcpy,
            Category::Memset => GpuKind::Memset,
            Category::Sync => GpuKind::Sync,
            _ => GpuKind::Other,
        }
    }
}

/// The fields of one event the builder needs; the name and category land in the builder's buffers.
#[derive(Default)]
struct RawEvent {
    phase: Option<u8>,
    ts: Option<f64>,
    dur: Option<f64>,
    stream: Option<i64>,
    correlation: Option<i64>,
    bandwidth_gbps: Option<f64>,
    bytes: Option<f64>,
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum TopKey {
    #[serde(rename = "traceEvents")]
    TraceEvents,
    #[serde(rename = "distributedInfo")]
    DistributedInfo,
    #[serde(rename = "deviceProperties")]
    DeviceProperties,
    #[serde(rename = "baseTimeNanoseconds")]
    BaseTime,
    #[serde(rename = "vllm_version")]
    VllmVersion,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct DistributedInfo {
    rank: Option<u32>,
}

struct TopLevel<'b, 't>(&'b mut Builder<'t>);

impl<'de> DeserializeSeed<'de> for TopLevel<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Chrome trace: an object with traceEvents, or an array of events")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<TopKey>()? {
            match key {
                TopKey::TraceEvents => map.next_value_seed(Events(&mut *self.0))?,
                TopKey::DistributedInfo => {
                    let info: Option<DistributedInfo> = map.next_value().ok().flatten();
                    self.0.trace.rank = info.and_then(|i| i.rank);
                }
                TopKey::DeviceProperties => {
                    self.0.trace.devices = map.next_value().unwrap_or_default();
                }
                TopKey::BaseTime => {
                    self.0.trace.base_time_ns = map.next_value::<Option<u64>>().ok().flatten();
                }
                TopKey::VllmVersion => {
                    self.0.trace.vllm_version = map.next_value::<Option<String>>().ok().flatten();
                }
                TopKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    /// The JSON Array Format of the Chrome trace: events without the object around them.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Events(self.0).visit_seq(seq)
    }
}

struct Events<'b, 't>(&'b mut Builder<'t>);

impl<'de> DeserializeSeed<'de> for Events<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Events<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of trace events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let builder = &mut *self.0;
            builder.name.clear();
            builder.category.clear();
            let Some(event) = seq.next_element_seed(EventSeed {
                name: &mut builder.name,
                category: &mut builder.category,
            })?
            else {
                return Ok(());
            };
            builder.finish(event);
        }
    }
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum EventKey {
    #[serde(rename = "ph")]
    Phase,
    #[serde(rename = "cat")]
    Category,
    #[serde(rename = "name")]
    Name,
    #[serde(rename = "ts")]
    Ts,
    #[serde(rename = "dur")]
    Dur,
    #[serde(rename = "args")]
    Args,
    #[serde(other)]
    Other,
}

struct EventSeed<'b> {
    name: &'b mut String,
    category: &'b mut String,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = RawEvent;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawEvent, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = RawEvent;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a trace event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEvent, A::Error> {
        let mut event = RawEvent::default();
        let mut phase = String::new();
        while let Some(key) = map.next_key::<EventKey>()? {
            match key {
                EventKey::Phase => map.next_value_seed(Text(&mut phase))?,
                EventKey::Category => map.next_value_seed(Text(&mut *self.category))?,
                EventKey::Name => map.next_value_seed(Text(&mut *self.name))?,
                EventKey::Ts => event.ts = map.next_value_seed(Number)?,
                EventKey::Dur => event.dur = map.next_value_seed(Number)?,
                EventKey::Args => map.next_value_seed(ArgsSeed(&mut event))?,
                EventKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        event.phase = phase.bytes().next();
        Ok(event)
    }

    fallback!(RawEvent::default(); bool, i64, u64, f64, str, unit, seq);
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum ArgKey {
    #[serde(rename = "stream")]
    Stream,
    #[serde(rename = "correlation")]
    Correlation,
    #[serde(rename = "memory bandwidth (GB/s)")]
    Bandwidth,
    #[serde(rename = "bytes")]
    Bytes,
    #[serde(other)]
    Other,
}

struct ArgsSeed<'e>(&'e mut RawEvent);

impl<'de> DeserializeSeed<'de> for ArgsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ArgsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event's args object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<ArgKey>()? {
            let event = &mut *self.0;
            match key {
                // ROCm writes its runtime calls' stream as "0x0": HTA reads a stream it cannot parse as -1 (CPU).
                ArgKey::Stream => {
                    event.stream = map.next_value_seed(Integer)?.map(|s| s.unwrap_or(-1))
                }
                ArgKey::Correlation => event.correlation = map.next_value_seed(Integer)?.flatten(),
                ArgKey::Bandwidth => event.bandwidth_gbps = map.next_value_seed(Number)?,
                ArgKey::Bytes => event.bytes = map.next_value_seed(Number)?,
                ArgKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fallback!((); bool, i64, u64, f64, str, unit, seq);
}

/// A string value copied into a reused buffer; any other value leaves it empty.
struct Text<'s>(&'s mut String);

impl<'de> DeserializeSeed<'de> for Text<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push_str(v);
        Ok(())
    }

    fallback!((); bool, i64, u64, f64, unit, seq, map);
}

/// A number, or a string holding one (some writers quote them); anything else is absent.
struct Number;

impl<'de> DeserializeSeed<'de> for Number {
    type Value = Option<f64>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<f64>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Number {
    type Value = Option<f64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Option<f64>, E> {
        Ok(Some(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<f64>, E> {
        Ok(v.trim().parse().ok())
    }

    fallback!(None; bool, unit, seq, map);
}

/// An integer argument: `Some(Some(n))`, `Some(None)` when present but not an integer (ROCm's "0x0"), `None`
/// when null.
struct Integer;

impl<'de> DeserializeSeed<'de> for Integer {
    type Value = Option<Option<i64>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Integer {
    type Value = Option<Option<i64>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Some(v)))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(i64::try_from(v).ok()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(
            (v.fract() == 0.0 && v.abs() < 9e15).then_some(v as i64),
        ))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.trim().parse().ok()))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fallback!(Some(None); bool, seq, map);
}
