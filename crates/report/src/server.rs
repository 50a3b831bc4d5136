//! The server's own view in the terminal: its canonical signals as one table (latency histograms, queue and
//! KV gauges, token and preemption counters), for `metrics show`, `metrics diff` and the end of a `bench` run.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Table};
use infer_doctor_core::signals::ServerWindow;
use infer_doctor_core::{Signal, SignalKind};

use crate::term::ms;

/// A gauge, counter or evidence value: whole when large or integral, three decimals otherwise, `-` when not a number.
pub(crate) fn number(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The heading says what the numbers cover: a window between scrapes, or totals since the server started.
pub fn server_table(w: &ServerWindow) -> String {
    let windowed = w.seconds() > 0.0;
    let mut out = if windowed && w.scrapes == 0 {
        format!(
            "server ({}): the last {:.0} s, as Prometheus computes it\n",
            w.dialect,
            w.seconds()
        )
    } else if windowed {
        format!(
            "server ({}): {} scrapes over {:.1} s\n",
            w.dialect,
            w.scrapes,
            w.seconds()
        )
    } else {
        format!(
            "server ({}): one scrape, totals since the server started\n",
            w.dialect
        )
    };
    let mut latency = Table::new();
    latency.load_preset(UTF8_FULL_CONDENSED);
    latency.set_header(["ms", "p50", "p90", "p99", "mean", "n"]);
    let mut values = Table::new();
    values.load_preset(UTF8_FULL_CONDENSED);
    values.set_header(if windowed {
        ["signal", "mean", "max", "last / increase", "per s"]
    } else {
        ["signal", "", "", "value", ""]
    });
    for signal in Signal::ALL {
        match signal.kind() {
            SignalKind::Histogram => {
                let Some(h) = w.histogram(signal) else {
                    continue;
                };
                let cells = [h.p50, h.p90, h.p99, h.mean].map(|v| {
                    Cell::new(if v.is_finite() {
                        ms(v * 1e3)
                    } else {
                        "-".into()
                    })
                    .set_alignment(CellAlignment::Right)
                });
                let mut row = vec![Cell::new(signal.name())];
                row.extend(cells);
                row.push(Cell::new(number(h.count)).set_alignment(CellAlignment::Right));
                latency.add_row(row);
            }
            SignalKind::Gauge => {
                let Some(g) = w.gauge(signal) else { continue };
                let (mean, max) = if windowed {
                    (number(g.mean), number(g.max))
                } else {
                    (String::new(), String::new())
                };
                values.add_row([
                    Cell::new(signal.name()),
                    Cell::new(mean).set_alignment(CellAlignment::Right),
                    Cell::new(max).set_alignment(CellAlignment::Right),
                    Cell::new(number(g.last)).set_alignment(CellAlignment::Right),
                    Cell::new(""),
                ]);
            }
            SignalKind::Counter => {
                let Some(c) = w.counter(signal) else { continue };
                let mut name = signal.name().to_string();
                let labels: Vec<String> = c
                    .by_label
                    .iter()
                    .filter(|(_, v)| **v > 0.0)
                    .map(|(k, v)| format!("{k} {}", number(*v)))
                    .collect();
                if !labels.is_empty() {
                    name.push_str(&format!(" ({})", labels.join(", ")));
                }
                values.add_row([
                    Cell::new(name),
                    Cell::new(""),
                    Cell::new(""),
                    Cell::new(number(c.increase)).set_alignment(CellAlignment::Right),
                    Cell::new(if windowed {
                        number(c.rate)
                    } else {
                        String::new()
                    })
                    .set_alignment(CellAlignment::Right),
                ]);
            }
        }
    }
    if !latency.is_empty() {
        out.push_str(&latency.to_string());
        out.push_str("\n(quantiles interpolated inside the server's histogram buckets, as PromQL does; means are exact)\n");
    }
    if !values.is_empty() {
        out.push_str(&values.to_string());
        out.push('\n');
    }
    out
}
