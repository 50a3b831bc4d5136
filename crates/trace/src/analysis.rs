//! HTA's analyses over one rank's trace, with HTA's definitions (holistictraceanalysis 0.5.0, named per function),
//! on the trace's exact timestamps: temporal, idle-time, kernel, overlap, launch, memory-copy and queue-length.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::event::{Device, GpuKind, GpuOp, Names, RuntimeCall};
use crate::intervals::{covered, exclusive_segments, overlap, union};
use crate::kernel::{HtaType, KernelClass, classify, hta_type};
use crate::read::{EventCounts, Trace};
use crate::steps::{Steps, engine_steps};

/// HTA's defaults, which are also ours.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Options {
    /// HTA drops the last `ProfilerStep` (usually partial) unless asked to keep it.
    pub include_last_profiler_step: bool,
    /// A gap shorter than this between two ops of a stream is the GPU waiting on the next kernel (HTA: 30 µs).
    pub consecutive_kernel_delay_us: f64,
    /// A CPU launch call longer than this is a runtime outlier (HTA: 50 µs).
    pub runtime_cutoff_us: f64,
    /// A launch delay longer than this is an outlier (HTA: 100 µs).
    pub launch_delay_cutoff_us: f64,
    /// A kernel shorter than this is a short kernel (TraceLens: 10 µs).
    pub short_kernel_us: f64,
    /// A stream queue this long blocks the CPU's next launch (HTA: 1024).
    pub max_queue_length: u32,
    /// Kernels listed by name per type before the rest are "others" (HTA: 10, and 80% of the cumulative time).
    pub top_kernels: usize,
    pub duration_ratio: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            include_last_profiler_step: false,
            consecutive_kernel_delay_us: 30.0,
            runtime_cutoff_us: 50.0,
            launch_delay_cutoff_us: 100.0,
            short_kernel_us: 10.0,
            max_queue_length: 1024,
            top_kernels: 10,
            duration_ratio: 0.8,
        }
    }
}

/// Everything said about one rank's trace.
#[derive(Clone, Debug, Serialize)]
pub struct RankAnalysis {
    pub source: String,
    pub rank: Option<u32>,
    pub devices: Vec<Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vllm_version: Option<String>,
    pub events: EventCounts,
    /// Where the file ended early, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<String>,
    /// The `ProfilerStep` left out as HTA leaves it out, with the GPU ops it held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_step: Option<DroppedStep>,
    /// `None` without a GPU op.
    pub temporal: Option<Temporal>,
    pub idle: Vec<StreamIdle>,
    pub kernel_types: Vec<TypeTime>,
    pub classes: Vec<ClassTime>,
    pub kernels: Vec<KernelStats>,
    /// HTA's kernel table: per type, the top kernels by total time and "others".
    pub hta_kernels: Vec<HtaKernelRow>,
    /// Share of communication time overlapped by computation, %; `None` without communication.
    pub comm_comp_overlap_pct: Option<f64>,
    /// The time the GPU ran anything (the union of every op).
    pub busy_us: f64,
    /// Communication of our classes (vLLM's custom all-reduce included, which HTA counts as computation) with no
    /// computation running under it: what a tensor-parallel step waits on.
    pub communication_exposed_us: f64,
    pub launches: LaunchStats,
    pub memory: Vec<CopyKind>,
    pub queues: Vec<QueueLength>,
    /// vLLM's engine steps, where its annotations are in the trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Steps>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DroppedStep {
    pub name: String,
    pub gpu_ops: u64,
}

/// `get_temporal_breakdown`: span = first op start to last op end over every op on a stream; idle = span − their
/// union; compute = the union of HTA's COMPUTATION ops; non-compute = the rest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Temporal {
    pub span_us: f64,
    pub idle_us: f64,
    pub compute_us: f64,
    pub non_compute_us: f64,
    pub idle_pct: f64,
    pub compute_pct: f64,
    pub non_compute_pct: f64,
}

/// `get_idle_time_breakdown` for one stream: each gap before an op is host wait (the CPU launched it after the
/// previous op ended), kernel wait (a gap under `consecutive_kernel_delay_us`) or other.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamIdle {
    pub stream: i64,
    pub ops: u64,
    pub host_wait_us: f64,
    pub kernel_wait_us: f64,
    pub other_us: f64,
    pub host_wait_gaps: u64,
    pub kernel_wait_gaps: u64,
    pub other_gaps: u64,
}

impl StreamIdle {
    pub fn total_us(&self) -> f64 {
        self.host_wait_us + self.kernel_wait_us + self.other_us
    }
}

/// `get_gpu_kernel_breakdown`'s type table: time during which exactly these types ran (overlaps apart).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TypeTime {
    /// HTA's label, e.g. "COMPUTATION overlapping COMMUNICATION".
    pub kernel_type: String,
    pub time_us: f64,
    pub pct: f64,
}

/// The time a class of ops kept the GPU busy (the union of its ops) and their summed durations.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassTime {
    pub class: KernelClass,
    pub label: &'static str,
    pub ops: u64,
    pub busy_us: f64,
    pub sum_us: f64,
    /// `busy_us` over the GPU's busy time (the union of every op).
    pub busy_pct: f64,
}

/// One kernel name's durations.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelStats {
    pub name: String,
    pub class: KernelClass,
    pub hta_type: HtaType,
    pub count: u64,
    pub sum_us: f64,
    pub mean_us: f64,
    pub min_us: f64,
    pub max_us: f64,
    pub std_us: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HtaKernelRow {
    pub hta_type: HtaType,
    /// A kernel's name, or "others".
    pub name: String,
    pub sum_us: f64,
}

/// `get_cuda_kernel_launch_stats` over HTA's launch calls, and the launches of every kind beside it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LaunchStats {
    /// HTA's pairs: `cudaLaunchKernel`, `cudaLaunchKernelExC` and the async copies and sets, joined to their ops.
    pub pairs: u64,
    pub cpu_duration_us: Option<Distribution>,
    pub gpu_duration_us: Option<Distribution>,
    /// GPU start − (CPU start + CPU duration), clipped at 0.
    pub launch_delay_us: Option<Distribution>,
    /// CPU call ≤ `runtime_cutoff_us` and the op shorter than the call that launched it.
    pub short_pairs: u64,
    pub runtime_outliers: u64,
    pub delay_outliers: u64,
    /// Every launch call, of any API (Triton's `cuLaunchKernel`, CUDA graphs, HIP), and the kernels they ran.
    pub launch_calls: u64,
    pub graph_launches: u64,
    pub kernels: u64,
    pub kernels_from_graphs: u64,
    /// Kernels shorter than `short_kernel_us`.
    pub short_kernels: u64,
    /// CPU time spent in launch calls.
    pub launch_cpu_us: f64,
}

/// A distribution's summary (exact, from every value).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Distribution {
    pub count: u64,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Distribution {
    pub fn of(mut values: Vec<f64>) -> Option<Distribution> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Some(Distribution {
            count: values.len() as u64,
            mean,
            std,
            min: values[0],
            p50: quantile(&values, 0.5),
            p95: quantile(&values, 0.95),
            max: values[values.len() - 1],
        })
    }
}

/// Linear interpolation between closest ranks (numpy's default), over sorted values.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
}

/// Memory copies and sets of one kind (`get_memory_bw_summary`'s groups: "Memcpy HtoD", "Memset", …).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CopyKind {
    pub kind: String,
    pub count: u64,
    pub bytes: f64,
    pub time_us: f64,
    /// The mean of Kineto's per-copy bandwidth (what HTA's summary averages when copies do not overlap).
    pub mean_bandwidth_gbps: Option<f64>,
    /// Bytes over time: what the copies achieved together.
    pub effective_bandwidth_gbps: Option<f64>,
}

/// `get_queue_length_summary` for one stream: ops launched and not yet started.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueLength {
    pub stream: i64,
    /// The mean over change points, as HTA's summary takes it.
    pub mean: f64,
    /// The mean over time.
    pub time_mean: f64,
    pub max: i64,
    /// Time the queue held `max_queue_length` or more (the CPU blocked on its next launch).
    pub blocked_us: f64,
}

/// Launch calls HTA's launch statistics join (`cuda_kernel_analysis.py`).
const HTA_LAUNCH_CALLS: [&str; 5] = [
    "cudaLaunchKernel",
    "cudaLaunchKernelExC",
    "runFunction - job_prep_and_submit_for_execution",
    "cudaMemcpyAsync",
    "cudaMemsetAsync",
];

/// Launch calls HTA's queue length counts (`trace_symbol_table.py`): graph launches are not among them.
const HTA_QUEUE_CALLS: [&str; 11] = [
    "cudaLaunchKernel",
    "cudaLaunchKernelExC",
    "cuLaunchKernel",
    "cudaMemcpyAsync",
    "cudaMemsetAsync",
    "runFunction - job_prep_and_submit_for_execution",
    "hipLaunchKernel",
    "hipExtModuleLaunchKernel",
    "hipMemcpyAsync",
    "hipMemsetAsync",
    "hipMemcpyWithStream",
];

/// Any API's kernel launch: runtime, driver (Triton), graph replays, HIP.
fn is_launch(name: &str) -> bool {
    name.contains("LaunchKernel")
        || name.contains("GraphLaunch")
        || name == "runFunction - job_prep_and_submit_for_execution"
}

fn is_graph_launch(name: &str) -> bool {
    name.contains("GraphLaunch")
}

/// Analyses one rank's trace.
pub fn analyse(trace: &Trace, options: &Options) -> RankAnalysis {
    let names = &trace.names;
    let (ops, dropped_step) = without_last_profiler_step(trace, options);
    let launch_ts: HashMap<i64, f64> = trace
        .runtime
        .iter()
        .filter_map(|call| Some((call.correlation?, call.ts)))
        .collect();
    let busy = union(ops.iter().map(|op| (op.ts, op.end())));
    let temporal = temporal(&ops, &busy);
    RankAnalysis {
        source: trace.path.display().to_string(),
        rank: trace.rank,
        devices: trace.devices.clone(),
        vllm_version: trace.vllm_version.clone(),
        events: trace.counts.clone(),
        cut: trace.cut.clone(),
        dropped_step,
        temporal,
        idle: idle_breakdown(&ops, &launch_ts, options),
        kernel_types: kernel_types(&ops),
        classes: classes(&ops, covered(&busy)),
        kernels: kernel_stats(&ops, names),
        hta_kernels: hta_kernels(&ops, names, options),
        comm_comp_overlap_pct: comm_comp_overlap(&ops),
        busy_us: covered(&busy),
        communication_exposed_us: communication_exposed(&ops),
        launches: launch_stats(&ops, &trace.runtime, names, options),
        memory: memory(&ops, names),
        queues: queue_lengths(&ops, &trace.runtime, names, options),
        steps: engine_steps(trace, &ops),
    }
}

/// The GPU ops HTA keeps: with two or more distinct `ProfilerStep` names, those launched before the last step's
/// start (the latest start of a range so named, CPU or GPU), joined through their launch's correlation.
fn without_last_profiler_step<'t>(
    trace: &'t Trace,
    options: &Options,
) -> (Cow<'t, [GpuOp]>, Option<DroppedStep>) {
    let names = &trace.names;
    let steps: HashSet<u32> = trace
        .annotations
        .iter()
        .filter(|a| names.get(a.name).contains("ProfilerStep"))
        .map(|a| a.name)
        .collect();
    if options.include_last_profiler_step || steps.len() < 2 {
        return (Cow::Borrowed(&trace.gpu_ops), None);
    }
    let Some(last) = trace
        .annotations
        .iter()
        .filter(|a| steps.contains(&a.name))
        .max_by(|a, b| a.ts.total_cmp(&b.ts))
    else {
        return (Cow::Borrowed(&trace.gpu_ops), None);
    };
    let launched_before: HashSet<i64> = trace
        .runtime
        .iter()
        .filter(|call| call.ts < last.ts)
        .filter_map(|call| call.correlation)
        .collect();
    let kept: Vec<GpuOp> = trace
        .gpu_ops
        .iter()
        .filter(|op| op.correlation.is_some_and(|c| launched_before.contains(&c)))
        .copied()
        .collect();
    let dropped = DroppedStep {
        name: names.get(last.name).to_string(),
        gpu_ops: (trace.gpu_ops.len() - kept.len()) as u64,
    };
    (Cow::Owned(kept), Some(dropped))
}

fn temporal(ops: &[GpuOp], busy: &[(f64, f64)]) -> Option<Temporal> {
    let (first, last) = (busy.first()?.0, busy.last()?.1);
    let span = last - first;
    let idle = span - covered(busy);
    let compute = covered(&union(
        ops.iter()
            .filter(|op| op.hta == HtaType::Computation)
            .map(|op| (op.ts, op.end())),
    ));
    let non_compute = span - compute - idle;
    let pct = |x: f64| if span > 0.0 { 100.0 * x / span } else { 0.0 };
    Some(Temporal {
        span_us: span,
        idle_us: idle,
        compute_us: compute,
        non_compute_us: non_compute,
        idle_pct: pct(idle),
        compute_pct: pct(compute),
        non_compute_pct: pct(non_compute),
    })
}

fn idle_breakdown(
    ops: &[GpuOp],
    launch_ts: &HashMap<i64, f64>,
    options: &Options,
) -> Vec<StreamIdle> {
    let mut streams: Vec<i64> = Vec::new();
    let mut by_stream: HashMap<i64, Vec<&GpuOp>> = HashMap::new();
    for op in ops.iter().filter(|op| op.kind.runs_on_stream()) {
        by_stream
            .entry(op.stream)
            .or_insert_with(|| {
                streams.push(op.stream);
                Vec::new()
            })
            .push(op);
    }
    streams
        .into_iter()
        .map(|stream| {
            let mut stream_ops = by_stream.remove(&stream).unwrap_or_default();
            stream_ops.sort_by(|a, b| a.ts.total_cmp(&b.ts));
            let mut idle = StreamIdle {
                stream,
                ops: stream_ops.len() as u64,
                host_wait_us: 0.0,
                kernel_wait_us: 0.0,
                other_us: 0.0,
                host_wait_gaps: 0,
                kernel_wait_gaps: 0,
                other_gaps: 0,
            };
            for pair in stream_ops.windows(2) {
                let (previous_end, op) = (pair[0].end(), pair[1]);
                let gap = op.ts - previous_end;
                let launched = op.correlation.and_then(|c| launch_ts.get(&c));
                if launched.is_some_and(|ts| *ts > previous_end) {
                    idle.host_wait_us += gap;
                    idle.host_wait_gaps += 1;
                } else if gap < options.consecutive_kernel_delay_us {
                    idle.kernel_wait_us += gap;
                    idle.kernel_wait_gaps += 1;
                } else {
                    idle.other_us += gap;
                    idle.other_gaps += 1;
                }
            }
            idle
        })
        .collect()
}

/// HTA's bits, in its order: the label of a mix lists the types in this order.
const TYPE_BITS: [(HtaType, u8, &str); 3] = [
    (HtaType::Computation, 1, "COMPUTATION"),
    (HtaType::Communication, 2, "COMMUNICATION"),
    (HtaType::Memory, 4, "MEMORY"),
];

fn kernel_types(ops: &[GpuOp]) -> Vec<TypeTime> {
    let per_type: Vec<(u8, Vec<(f64, f64)>)> = TYPE_BITS
        .iter()
        .map(|(kind, bit, _)| {
            let intervals = union(
                ops.iter()
                    .filter(|op| op.hta == *kind)
                    .map(|op| (op.ts, op.end())),
            );
            (*bit, intervals)
        })
        .collect();
    let mut times: BTreeMap<u8, f64> = BTreeMap::new();
    for (mask, length) in exclusive_segments(&per_type) {
        *times.entry(mask).or_default() += length;
    }
    let total: f64 = times.values().sum();
    let mut rows: Vec<TypeTime> = times
        .into_iter()
        .filter(|(_, time)| *time > 0.0)
        .map(|(mask, time)| TypeTime {
            kernel_type: TYPE_BITS
                .iter()
                .filter(|(_, bit, _)| mask & bit != 0)
                .map(|(_, _, label)| *label)
                .collect::<Vec<_>>()
                .join(" overlapping "),
            time_us: time,
            pct: 100.0 * time / total,
        })
        .collect();
    rows.sort_by(|a, b| b.time_us.total_cmp(&a.time_us));
    rows
}

fn classes(ops: &[GpuOp], busy_us: f64) -> Vec<ClassTime> {
    KernelClass::ALL
        .iter()
        .filter_map(|class| {
            let members: Vec<&GpuOp> = ops
                .iter()
                .filter(|op| op.kind != GpuKind::Sync && op.class == *class)
                .collect();
            if members.is_empty() {
                return None;
            }
            let busy = covered(&union(members.iter().map(|op| (op.ts, op.end()))));
            Some(ClassTime {
                class: *class,
                label: class.label(),
                ops: members.len() as u64,
                busy_us: busy,
                sum_us: members.iter().map(|op| op.dur).sum(),
                busy_pct: if busy_us > 0.0 {
                    100.0 * busy / busy_us
                } else {
                    0.0
                },
            })
        })
        .collect()
}

/// Durations per name, largest total first.
fn kernel_stats(ops: &[GpuOp], names: &Names) -> Vec<KernelStats> {
    let mut durations: HashMap<u32, Vec<f64>> = HashMap::new();
    for op in ops {
        durations.entry(op.name).or_default().push(op.dur);
    }
    let mut stats: Vec<KernelStats> = durations
        .into_iter()
        .filter_map(|(id, values)| {
            let name = names.get(id);
            let sum: f64 = values.iter().sum();
            let d = Distribution::of(values)?;
            Some(KernelStats {
                name: name.to_string(),
                class: classify(name),
                hta_type: hta_type(name),
                count: d.count,
                sum_us: sum,
                mean_us: d.mean,
                min_us: d.min,
                max_us: d.max,
                std_us: d.std,
            })
        })
        .collect();
    stats.sort_by(|a, b| {
        b.sum_us
            .total_cmp(&a.sum_us)
            .then_with(|| a.name.cmp(&b.name))
    });
    stats
}

/// HTA's `_aggr_gpu_kernel_time`: per type, names by total time; with more than `top_kernels` names, those past
/// the `duration_ratio` quantile of the running total, or past the first `top_kernels`, become "others".
fn hta_kernels(ops: &[GpuOp], names: &Names, options: &Options) -> Vec<HtaKernelRow> {
    let mut sums: BTreeMap<(HtaType, u32), f64> = BTreeMap::new();
    for op in ops {
        *sums.entry((op.hta, op.name)).or_default() += op.dur;
    }
    let mut rows = Vec::new();
    for kind in [
        HtaType::Communication,
        HtaType::Memory,
        HtaType::Computation,
        HtaType::Other,
    ] {
        let mut named: Vec<(String, f64)> = sums
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, id), sum)| (names.get(*id).to_string(), *sum))
            .collect();
        named.sort_by(|a, b| b.1.total_cmp(&a.1));
        if named.len() > options.top_kernels {
            let running: Vec<f64> = named
                .iter()
                .scan(0.0, |total, (_, sum)| {
                    *total += sum;
                    Some(*total)
                })
                .collect();
            let cut = quantile(&running, options.duration_ratio);
            let mut others = 0.0;
            let mut kept = Vec::new();
            for (rank, ((name, sum), total)) in named.into_iter().zip(&running).enumerate() {
                if *total > cut || rank >= options.top_kernels {
                    others += sum;
                } else {
                    kept.push((name, sum));
                }
            }
            kept.push(("others".to_string(), others));
            named = kept;
        }
        rows.extend(named.into_iter().map(|(name, sum_us)| HtaKernelRow {
            hta_type: kind,
            name,
            sum_us,
        }));
    }
    rows
}

/// `get_comm_comp_overlap`: the time communication ran under computation, over the communication's time.
fn comm_comp_overlap(ops: &[GpuOp]) -> Option<f64> {
    let of = |kind: HtaType| {
        union(
            ops.iter()
                .filter(|op| op.hta == kind)
                .map(|op| (op.ts, op.end())),
        )
    };
    let communication = of(HtaType::Communication);
    let total = covered(&communication);
    (total > 0.0).then(|| 100.0 * overlap(&of(HtaType::Computation), &communication) / total)
}

fn communication_exposed(ops: &[GpuOp]) -> f64 {
    let of = |wanted: &dyn Fn(KernelClass) -> bool| {
        union(
            ops.iter()
                .filter(|op| op.kind != GpuKind::Sync && wanted(op.class))
                .map(|op| (op.ts, op.end())),
        )
    };
    let communication = of(&|c| c == KernelClass::Communication);
    let compute = of(&|c| {
        !matches!(
            c,
            KernelClass::Communication | KernelClass::Memcpy | KernelClass::Memset
        )
    });
    covered(&communication) - overlap(&communication, &compute)
}

fn launch_stats(
    ops: &[GpuOp],
    runtime: &[RuntimeCall],
    names: &Names,
    options: &Options,
) -> LaunchStats {
    let mut by_correlation: HashMap<i64, Vec<&GpuOp>> = HashMap::new();
    for op in ops {
        if let Some(c) = op.correlation {
            by_correlation.entry(c).or_default().push(op);
        }
    }
    let mut stats = LaunchStats::default();
    let (mut cpu, mut gpu, mut delay) = (Vec::new(), Vec::new(), Vec::new());
    for call in runtime {
        let name = names.get(call.name);
        let launched = call
            .correlation
            .and_then(|c| by_correlation.get(&c))
            .map_or(&[][..], Vec::as_slice);
        if is_launch(name) {
            stats.launch_calls += 1;
            stats.launch_cpu_us += call.dur;
            if is_graph_launch(name) {
                stats.graph_launches += 1;
                stats.kernels_from_graphs += launched.len() as u64;
            }
        }
        if !HTA_LAUNCH_CALLS.contains(&name) {
            continue;
        }
        for op in launched {
            let wait = (op.ts - call.ts - call.dur).max(0.0);
            stats.pairs += 1;
            if call.dur <= options.runtime_cutoff_us && op.dur < call.dur {
                stats.short_pairs += 1;
            }
            if call.dur > options.runtime_cutoff_us {
                stats.runtime_outliers += 1;
            }
            if wait > options.launch_delay_cutoff_us {
                stats.delay_outliers += 1;
            }
            cpu.push(call.dur);
            gpu.push(op.dur);
            delay.push(wait);
        }
    }
    for op in ops.iter().filter(|op| op.kind == GpuKind::Kernel) {
        stats.kernels += 1;
        if op.dur < options.short_kernel_us {
            stats.short_kernels += 1;
        }
    }
    stats.cpu_duration_us = Distribution::of(cpu);
    stats.gpu_duration_us = Distribution::of(gpu);
    stats.launch_delay_us = Distribution::of(delay);
    stats
}

/// HTA's grouping of a copy or set by name (`utils.py`): "Memset", "Memcpy HtoD", …, "Memcpy Unknown".
fn copy_kind(name: &str) -> String {
    if name.starts_with("Memset") {
        "Memset".into()
    } else if !name.starts_with("Memcpy") {
        "Memcpy Unknown".into()
    } else {
        name.chars().take(11).collect()
    }
}

fn memory(ops: &[GpuOp], names: &Names) -> Vec<CopyKind> {
    let mut kinds: BTreeMap<String, (u64, f64, f64, Vec<f64>)> = BTreeMap::new();
    for op in ops {
        let name = names.get(op.name);
        if hta_type(name) != HtaType::Memory {
            continue;
        }
        let entry = kinds.entry(copy_kind(name)).or_default();
        entry.0 += 1;
        entry.1 += op.bytes.unwrap_or(0.0).max(0.0);
        entry.2 += op.dur.max(0.0);
        // HTA's summary keeps only positive bandwidths.
        if let Some(bw) = op.bandwidth_gbps.filter(|bw| *bw > 0.0) {
            entry.3.push(bw);
        }
    }
    kinds
        .into_iter()
        .map(|(kind, (count, bytes, time_us, bandwidths))| CopyKind {
            kind,
            count,
            bytes,
            time_us,
            mean_bandwidth_gbps: (!bandwidths.is_empty())
                .then(|| bandwidths.iter().sum::<f64>() / bandwidths.len() as f64),
            // Bytes per µs are MB/s; GB/s as Kineto counts them (10^9 bytes).
            effective_bandwidth_gbps: (time_us > 0.0 && bytes > 0.0).then(|| bytes / time_us / 1e3),
        })
        .collect()
}

fn queue_lengths(
    ops: &[GpuOp],
    runtime: &[RuntimeCall],
    names: &Names,
    options: &Options,
) -> Vec<QueueLength> {
    let queued: HashMap<i64, f64> = runtime
        .iter()
        .filter(|call| HTA_QUEUE_CALLS.contains(&names.get(call.name)))
        .filter_map(|call| Some((call.correlation?, call.ts)))
        .collect();
    // Per stream, +1 when the CPU launches an op, −1 when the op starts.
    let mut changes: BTreeMap<i64, Vec<(f64, i64)>> = BTreeMap::new();
    for op in ops {
        if let Some(launched) = op.correlation.and_then(|c| queued.get(&c)) {
            let stream = changes.entry(op.stream).or_default();
            stream.push((*launched, 1));
            stream.push((op.ts, -1));
        }
    }
    changes
        .into_iter()
        .map(|(stream, mut points)| {
            // Launches first at equal times, as HTA's concatenation order has them before a stable sort.
            points.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
            let mut length = 0i64;
            let (mut sum, mut max, mut weighted, mut blocked) = (0.0, 0i64, 0.0, 0.0);
            for (i, (ts, change)) in points.iter().enumerate() {
                length += change;
                sum += length as f64;
                max = max.max(length);
                if let Some((next, _)) = points.get(i + 1) {
                    weighted += length as f64 * (next - ts);
                    if length >= i64::from(options.max_queue_length) {
                        blocked += next - ts;
                    }
                }
            }
            let duration = points.last().map_or(0.0, |p| p.0) - points.first().map_or(0.0, |p| p.0);
            QueueLength {
                stream,
                mean: sum / points.len() as f64,
                time_mean: if duration > 0.0 {
                    weighted / duration
                } else {
                    0.0
                },
                max,
                blocked_us: blocked,
            }
        })
        .collect()
}
