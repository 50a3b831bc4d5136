//! A profiler trace's analysis as people read it: where each rank's GPU time went, which kernels took it, how
//! launches and copies behaved, and per engine step what prefill and decode spent.

use infer_doctor_trace::TraceReport;
use infer_doctor_trace::analysis::{Distribution, RankAnalysis};

use crate::table::Table;

/// Kernels listed by name per rank.
const TOP_KERNELS: usize = 10;

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1e3)
}

fn pct(value: f64) -> String {
    format!("{value:.1}%")
}

fn rank_label(rank: &RankAnalysis, index: usize) -> String {
    rank.rank
        .map_or_else(|| format!("file {}", index + 1), |r| format!("rank {r}"))
}

/// Kernel names are C++ signatures hundreds of characters long: their start says what they are.
pub(crate) fn short_name(name: &str) -> String {
    const WIDTH: usize = 72;
    let name = name.strip_prefix("void ").unwrap_or(name);
    if name.chars().count() <= WIDTH {
        return name.to_string();
    }
    format!("{}…", name.chars().take(WIDTH - 1).collect::<String>())
}

fn distribution(d: &Option<Distribution>) -> String {
    d.as_ref().map_or("–".into(), |d| {
        format!("{:.1} / {:.1} / {:.1}", d.p50, d.p95, d.max)
    })
}

pub fn tables(report: &TraceReport) -> Vec<Table> {
    let ranks = || report.ranks.iter().enumerate();
    let mut tables = vec![Table {
        caption: "Where the GPU's time went (HTA's temporal and idle-time breakdown)".into(),
        header: [
            "rank",
            "span ms",
            "compute",
            "non-compute",
            "idle",
            "idle: host wait",
            "kernel wait",
            "other",
        ]
        .map(String::from)
        .to_vec(),
        rows: ranks()
            .filter_map(|(i, rank)| {
                let t = rank.temporal.as_ref()?;
                let idle_total: f64 = rank.idle.iter().map(|s| s.total_us()).sum();
                let share = |part: f64| {
                    if idle_total > 0.0 {
                        pct(100.0 * part / idle_total)
                    } else {
                        "–".into()
                    }
                };
                Some(vec![
                    rank_label(rank, i),
                    ms(t.span_us),
                    pct(t.compute_pct),
                    pct(t.non_compute_pct),
                    pct(t.idle_pct),
                    share(rank.idle.iter().map(|s| s.host_wait_us).sum()),
                    share(rank.idle.iter().map(|s| s.kernel_wait_us).sum()),
                    share(rank.idle.iter().map(|s| s.other_us).sum()),
                ])
            })
            .collect(),
    }];
    tables.push(Table {
        caption: "Kernel classes (busy time, overlaps counted once)".into(),
        header: ["rank", "class", "ops", "busy ms", "of GPU busy"]
            .map(String::from)
            .to_vec(),
        rows: ranks()
            .flat_map(|(i, rank)| {
                rank.classes.iter().map(move |c| {
                    vec![
                        rank_label(rank, i),
                        c.label.to_string(),
                        c.ops.to_string(),
                        ms(c.busy_us),
                        pct(c.busy_pct),
                    ]
                })
            })
            .collect(),
    });
    tables.push(Table {
        caption: format!("Top {TOP_KERNELS} kernels by total time"),
        header: ["rank", "kernel", "class", "count", "total ms", "mean µs"]
            .map(String::from)
            .to_vec(),
        rows: ranks()
            .flat_map(|(i, rank)| {
                rank.kernels.iter().take(TOP_KERNELS).map(move |k| {
                    vec![
                        rank_label(rank, i),
                        short_name(&k.name),
                        k.class.label().into(),
                        k.count.to_string(),
                        ms(k.sum_us),
                        format!("{:.1}", k.mean_us),
                    ]
                })
            })
            .collect(),
    });
    tables.push(Table {
        caption: "Launches: CPU call (µs), launch delay (µs) p50 / p95 / max, and short kernels"
            .into(),
        header: [
            "rank",
            "kernels",
            "< 10 µs",
            "graph launches",
            "HTA pairs",
            "CPU call",
            "launch delay",
            "comm overlapped",
        ]
        .map(String::from)
        .to_vec(),
        rows: ranks()
            .map(|(i, rank)| {
                let l = &rank.launches;
                vec![
                    rank_label(rank, i),
                    l.kernels.to_string(),
                    if l.kernels > 0 {
                        pct(100.0 * l.short_kernels as f64 / l.kernels as f64)
                    } else {
                        "–".into()
                    },
                    format!("{} ({} kernels)", l.graph_launches, l.kernels_from_graphs),
                    l.pairs.to_string(),
                    distribution(&l.cpu_duration_us),
                    distribution(&l.launch_delay_us),
                    rank.comm_comp_overlap_pct
                        .map_or("no communication".into(), pct),
                ]
            })
            .collect(),
    });
    let copies: Vec<Vec<String>> = ranks()
        .flat_map(|(i, rank)| {
            rank.memory.iter().map(move |c| {
                vec![
                    rank_label(rank, i),
                    c.kind.clone(),
                    c.count.to_string(),
                    format!("{:.1}", c.bytes / 1e6),
                    ms(c.time_us),
                    c.effective_bandwidth_gbps
                        .map_or("–".into(), |b| format!("{b:.1}")),
                ]
            })
        })
        .collect();
    if !copies.is_empty() {
        tables.push(Table {
            caption: "Memory copies and sets".into(),
            header: ["rank", "kind", "count", "MB", "ms", "GB/s"]
                .map(String::from)
                .to_vec(),
            rows: copies,
        });
    }
    let phases: Vec<Vec<String>> = ranks()
        .flat_map(|(i, rank)| {
            rank.steps.iter().flat_map(|s| &s.phases).map(move |p| {
                vec![
                    rank_label(rank, i),
                    p.phase.label().into(),
                    p.steps.to_string(),
                    p.tokens.to_string(),
                    format!("{:.0}", p.mean_cpu_us),
                    p.gpu_idle_pct
                        .map_or("–".into(), |_| format!("{:.0}", p.mean_gpu_busy_us)),
                    p.gpu_idle_pct.map_or("–".into(), pct),
                    p.classes
                        .first()
                        .map_or("–".into(), |(c, _)| c.label().to_string()),
                    p.host_copies.to_string(),
                ]
            })
        })
        .collect();
    if !phases.is_empty() {
        tables.push(Table {
            caption: "vLLM engine steps by phase (µs per step)".into(),
            header: [
                "rank",
                "phase",
                "steps",
                "tokens",
                "CPU",
                "GPU busy",
                "GPU idle in step",
                "dominant class",
                "host copies",
            ]
            .map(String::from)
            .to_vec(),
            rows: phases,
        });
    }
    tables
}

/// What the reader must know beside the tables: cuts, dropped steps, odd events, clocks apart.
pub fn notes(report: &TraceReport) -> Vec<String> {
    let mut notes = report.set_aside.clone();
    for (i, rank) in report.ranks.iter().enumerate() {
        let label = format!("{} ({})", rank_label(rank, i), rank.source);
        if let Some(cut) = &rank.cut {
            notes.push(format!("{label}: {cut}"));
        }
        if let Some(step) = &rank.dropped_step {
            notes.push(format!(
                "{label}: the last profiler step ({}) is left out, as HTA leaves it out ({} GPU ops); \
                 --include-last-step keeps it",
                step.name, step.gpu_ops
            ));
        }
        if rank.temporal.is_none() {
            notes.push(match &rank.dropped_step {
                Some(step) if step.gpu_ops > 0 => format!(
                    "{label}: every GPU operation read lies in the last profiler step ({}), which is left out: \
                     --include-last-step analyses it",
                    step.name
                ),
                _ => format!(
                    "{label}: no GPU operations in the trace (a CPU-only profile): only the steps and counts apply"
                ),
            });
        }
        if !rank.events.unknown_categories.is_empty() {
            let names: Vec<String> = rank
                .events
                .unknown_categories
                .iter()
                .map(|(name, count)| format!("{name} ×{count}"))
                .collect();
            notes.push(format!(
                "{label}: events of unknown categories, counted and skipped: {}",
                names.join(", ")
            ));
        }
    }
    if let Some(spread) = report.rank_start_spread_ms.filter(|s| *s > 1000.0) {
        notes.push(format!(
            "the ranks' first events are {spread:.0} ms apart in Unix time: hosts' clocks or profilers started \
             apart; figures per rank stand, comparisons across ranks allow for it"
        ));
    }
    notes
}

/// How a page is written: its tables one way, its notes another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Term,
    Markdown,
}

fn written(tables: &[Table], notes: &[String], how: Written) -> String {
    let mut out = String::new();
    for table in tables.iter().filter(|t| !t.rows.is_empty()) {
        out += &match how {
            Written::Term => table.term(),
            Written::Markdown => table.markdown(),
        };
    }
    if !notes.is_empty() {
        out += "\n";
        for note in notes {
            out += &match how {
                Written::Term => format!("{note}\n"),
                Written::Markdown => format!("- {note}\n"),
            };
        }
    }
    out
}

/// The analysis as terminal tables or Markdown, with its notes.
pub fn text(report: &TraceReport, how: Written) -> String {
    written(&tables(report), &notes(report), how)
}

/// The analysis as one self-contained page: per rank the engine steps and top kernels drawn, then every table.
pub fn html(report: &TraceReport) -> String {
    let facts = infer_doctor_core::TraceFacts::from(report);
    crate::html::render_tables(
        "profiler trace",
        Some(&facts),
        &tables(report),
        &notes(report),
    )
}

/// `trace diff` as terminal tables or Markdown.
pub fn diff_text(diff: &infer_doctor_trace::diff::TraceDiff, how: Written) -> String {
    written(&diff_tables(diff), &[], how)
}

/// `trace diff` as a page of its tables.
pub fn diff_html(diff: &infer_doctor_trace::diff::TraceDiff) -> String {
    crate::html::render_tables("profiler traces compared", None, &diff_tables(diff), &[])
}

/// `trace diff`: class busy time side by side, then the kernels that changed most.
fn diff_tables(diff: &infer_doctor_trace::diff::TraceDiff) -> Vec<Table> {
    use infer_doctor_trace::diff::Change;
    let delta = |a: f64, b: f64| {
        if a > 0.0 {
            format!("{:+.1}%", 100.0 * (b - a) / a)
        } else {
            "new".into()
        }
    };
    let classes = Table {
        caption: format!("Busy time by class: {} → {}", diff.baseline, diff.compared),
        header: ["class", "baseline ms", "compared ms", "change"]
            .map(String::from)
            .to_vec(),
        rows: diff
            .classes
            .iter()
            .map(|c| {
                vec![
                    c.class.label().into(),
                    ms(c.baseline_us),
                    ms(c.compared_us),
                    delta(c.baseline_us, c.compared_us),
                ]
            })
            .collect(),
    };
    let kernels = Table {
        caption: format!("Kernels that changed most (of {})", diff.kernels.len()),
        header: [
            "kernel",
            "change",
            "count",
            "baseline ms",
            "compared ms",
            "Δ ms",
        ]
        .map(String::from)
        .to_vec(),
        rows: diff
            .kernels
            .iter()
            .filter(|k| k.change != Change::Unchanged)
            .take(TOP_KERNELS)
            .map(|k| {
                vec![
                    short_name(&k.name),
                    format!("{:?}", k.change).to_lowercase(),
                    format!("{} → {}", k.baseline_count, k.compared_count),
                    ms(k.baseline_us),
                    ms(k.compared_us),
                    format!("{:+.2}", k.delta_us() / 1e3),
                ]
            })
            .collect(),
    };
    vec![classes, kernels]
}
