//! The server's own view in the terminal: its canonical signals as one table (latency histograms, queue and
//! KV gauges, token and preemption counters), for `metrics show`, `metrics diff` and the end of a `bench` run.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Table};
use infer_doctor_core::signals::ServerWindow;
use infer_doctor_core::{Signal, SignalKind};

use crate::term::{ms, quantile_ms};

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
    let mut out = if w.no_clock {
        format!(
            "server ({}): {} scrapes at unknown times: peaks, increases and quantiles between them (rates need \
             --interval)\n",
            w.dialect, w.scrapes
        )
    } else if windowed && w.scrapes == 0 {
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
    // One row per gauge or counter: name, mean, max, last value or increase, rate per second.
    let mut rows: Vec<[String; 5]> = Vec::new();
    for signal in Signal::ALL {
        match signal.kind() {
            SignalKind::Histogram => {
                let Some(h) = w.histogram(signal) else {
                    continue;
                };
                let quantiles = h.quantiles().map(|(_, v, limit)| quantile_ms(v, limit, ms));
                let mean = quantile_ms(h.mean, None, ms);
                let mut row = vec![Cell::new(signal.name())];
                row.extend(
                    quantiles
                        .into_iter()
                        .chain([mean])
                        .map(|text| Cell::new(text).set_alignment(CellAlignment::Right)),
                );
                row.push(Cell::new(number(h.count)).set_alignment(CellAlignment::Right));
                latency.add_row(row);
            }
            SignalKind::Gauge => {
                let Some(g) = w.gauge(signal) else { continue };
                rows.push([
                    signal.name().to_string(),
                    number(g.mean),
                    number(g.max),
                    number(g.last),
                    String::new(),
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
                rows.push([
                    name,
                    String::new(),
                    String::new(),
                    number(c.increase),
                    number(c.rate),
                ]);
            }
        }
    }
    // One scrape has no window: only the value column means anything.
    let (header, columns): (&[&str], &[usize]) = if windowed {
        (
            &["signal", "mean", "max", "last / increase", "per s"],
            &[0, 1, 2, 3, 4],
        )
    } else {
        (&["signal", "value"], &[0, 3])
    };
    let mut values = Table::new();
    values.load_preset(UTF8_FULL_CONDENSED);
    values.set_header(header.to_vec());
    for row in &rows {
        values.add_row(columns.iter().map(|&i| {
            let cell = Cell::new(&row[i]);
            if i == 0 {
                cell
            } else {
                cell.set_alignment(CellAlignment::Right)
            }
        }));
    }
    if !latency.is_empty() {
        out.push_str(&latency.to_string());
        out.push_str(
            "\n(quantiles interpolated inside the server's histogram buckets, as PromQL does, but shown as \
             ≤ or ≥ a bound where they fell in the first or the +Inf bucket; means are exact)\n",
        );
    }
    if !values.is_empty() {
        out.push_str(&values.to_string());
        out.push('\n');
    }
    out
}
