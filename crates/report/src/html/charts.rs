//! Inline SVG charts for the HTML report: the timeline of client latency against the server's queue and KV cache,
//! latency CDFs, and single-user versus loaded bars. Every chart is a string; nothing is fetched when viewed.

use std::collections::BTreeSet;
use std::fmt::Write;

use infer_doctor_core::{RankTrace, RequestRecord, ServerReadings, Signal, StepTrace, Summary};

use super::escape;
use crate::markdown::{LatencyRow, duration};

/// Above this many measured requests the timeline keeps, per time bin, the fastest and the slowest request, so
/// the page stays small while outliers stay visible.
const MAX_TIMELINE_REQUESTS: usize = 1200;
/// Scrapes are plotted one point each up to this many; beyond, every n-th (a page for hours of scrapes).
const MAX_SCRAPE_POINTS: usize = 2000;
/// Points per CDF curve: enough for a smooth curve at any page width.
const CDF_POINTS: usize = 200;

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 930.0;

/// Maps a value range onto pixels.
#[derive(Clone, Copy)]
struct Scale {
    domain: (f64, f64),
    range: (f64, f64),
    log: bool,
}

impl Scale {
    fn linear(domain: (f64, f64), range: (f64, f64)) -> Self {
        Scale {
            domain,
            range,
            log: false,
        }
    }

    /// A base-10 scale; values at or below zero are drawn at the bottom of the domain.
    fn log(domain: (f64, f64), range: (f64, f64)) -> Self {
        Scale {
            domain: (domain.0.log10(), domain.1.log10()),
            range,
            log: true,
        }
    }

    fn at(&self, v: f64) -> f64 {
        let v = if self.log {
            v.max(10f64.powf(self.domain.0)).log10()
        } else {
            v
        };
        let span = self.domain.1 - self.domain.0;
        let fraction = if span > 0.0 {
            (v - self.domain.0) / span
        } else {
            0.5
        };
        self.range.0 + fraction * (self.range.1 - self.range.0)
    }
}

/// A step of 1, 2 or 5 × 10ⁿ giving about `count` ticks over `span`.
fn nice_step(span: f64, count: f64) -> f64 {
    let raw = (span / count).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let normalised = raw / magnitude;
    let factor = if normalised < 1.5 {
        1.0
    } else if normalised < 3.0 {
        2.0
    } else if normalised < 7.0 {
        5.0
    } else {
        10.0
    };
    factor * magnitude
}

/// Ticks from 0 to a rounded-up maximum; returns (ticks, the maximum).
fn linear_ticks(max: f64, count: f64) -> (Vec<f64>, f64) {
    let step = nice_step(max.max(1e-9), count);
    let top = (max / step).ceil().max(1.0) * step;
    let ticks = (0..=((top / step).round() as usize))
        .map(|i| i as f64 * step)
        .collect();
    (ticks, top)
}

/// Decades covering `[min, max]`, with 2× and 5× ticks when the range is narrow enough to need them.
fn log_domain(min: f64, max: f64) -> ((f64, f64), Vec<f64>) {
    let low = 10f64.powf(min.max(1e-3).log10().floor());
    let mut high = 10f64.powf(max.max(1e-3).log10().ceil());
    if high <= low {
        high = low * 10.0;
    }
    let decades = (high / low).log10().round() as i32;
    let mut ticks = Vec::new();
    let mut decade = low;
    while decade <= high * 1.0001 {
        ticks.push(decade);
        if decades <= 3 && decade < high {
            ticks.push(decade * 2.0);
            ticks.push(decade * 5.0);
        }
        decade *= 10.0;
    }
    ((low, high), ticks)
}

/// A duration in milliseconds as an axis label.
fn duration_label(ms_value: f64) -> String {
    if ms_value >= 1000.0 {
        format!("{} s", trim(ms_value / 1000.0))
    } else {
        format!("{} ms", trim(ms_value))
    }
}

fn trim(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn percentage(count: usize, total: usize) -> f64 {
    count as f64 * 100.0 / total.max(1) as f64
}

/// A polyline with its point count recorded, so tests and readers can check what was drawn.
fn polyline(class: &str, points: &[(f64, f64)]) -> String {
    let mut coordinates = String::new();
    for (x, y) in points {
        let _ = write!(coordinates, "{x:.1},{y:.1} ");
    }
    format!(
        r#"<polyline class="{class}" data-points="{}" points="{}"/>"#,
        points.len(),
        coordinates.trim_end()
    )
}

/// Many dots as one path of zero-length round-capped segments: a fraction of the bytes of one element per dot.
fn dots(class: &str, points: &[(f64, f64)]) -> String {
    let mut d = String::new();
    for (x, y) in points {
        let _ = write!(d, "M{x:.1} {y:.1}h0");
    }
    format!(
        r#"<path class="{class}" data-points="{}" d="{d}"/>"#,
        points.len()
    )
}

/// Swatches with labels from the left, wrapping onto a new row past the right edge; returns the last row's `y`.
fn legend(out: &mut String, y: f64, items: &[(&str, &str)]) -> f64 {
    let (mut x, mut y) = (LEFT, y);
    for (class, label) in items {
        // Wide enough for capitals at 12 px.
        let width = 34.0 + 8.0 * label.chars().count() as f64;
        if x > LEFT && x + width > WIDTH {
            (x, y) = (LEFT, y + 20.0);
        }
        let _ = write!(
            out,
            r#"<g class="legend-item"><rect class="swatch {class}" x="{x:.0}" y="{:.0}" width="14" height="10" rx="2"/><text x="{:.0}" y="{y:.0}">{}</text></g>"#,
            y - 9.0,
            x + 20.0,
            escape(label)
        );
        x += width;
    }
    y
}

fn x_axis(out: &mut String, x: &Scale, max_seconds: f64, top: f64, bottom: f64, with_labels: bool) {
    let (ticks, _) = linear_ticks(max_seconds, 10.0);
    for t in ticks.into_iter().filter(|t| *t <= max_seconds + 1e-9) {
        let px = x.at(t);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{px:.1}" x2="{px:.1}" y1="{top:.0}" y2="{bottom:.0}"/>"#
        );
        if with_labels {
            let _ = write!(
                out,
                r#"<text class="tick" x="{px:.1}" y="{:.0}" text-anchor="middle">{}</text>"#,
                bottom + 16.0,
                trim(t)
            );
        }
    }
}

/// A horizontal grid line across the plot at `py`, labelled at the left.
fn y_gridline(out: &mut String, py: f64, class: &str, label: &str) {
    let _ = write!(
        out,
        r#"<line class="{class}" x1="{LEFT}" x2="{RIGHT}" y1="{py:.1}" y2="{py:.1}"/><text class="tick" x="{:.0}" y="{:.1}" text-anchor="end">{}</text>"#,
        LEFT - 6.0,
        py + 4.0,
        escape(label)
    );
}

fn frame(out: &mut String, top: f64, bottom: f64) {
    let _ = write!(
        out,
        r#"<rect class="plot-frame" x="{LEFT}" y="{top:.0}" width="{:.0}" height="{:.0}"/>"#,
        RIGHT - LEFT,
        bottom - top
    );
}

fn axis_title(out: &mut String, x: f64, y: f64, rotate: i32, text: &str) {
    let _ = write!(
        out,
        r#"<text class="axis-title" transform="translate({x:.0} {y:.0}) rotate({rotate})" text-anchor="middle">{}</text>"#,
        escape(text)
    );
}

fn panel_message(out: &mut String, top: f64, bottom: f64, class: &str, text: &str) {
    let _ = write!(
        out,
        r#"<text class="panel-message {class}" x="{:.0}" y="{:.0}" text-anchor="middle">{}</text>"#,
        (LEFT + RIGHT) / 2.0,
        (top + bottom) / 2.0,
        escape(text)
    );
}

/// The measured requests the timeline draws: all of them, or the fastest and slowest per time bin.
fn timeline_requests(requests: &[RequestRecord]) -> (Vec<&RequestRecord>, usize) {
    let mut measured: Vec<&RequestRecord> = requests.iter().filter(|r| r.measured()).collect();
    measured.sort_by_key(|r| r.sent_us);
    let total = measured.len();
    if total <= MAX_TIMELINE_REQUESTS {
        return (measured, total);
    }
    let bins = MAX_TIMELINE_REQUESTS / 2;
    let first = measured[0].sent_us;
    let span = (measured[total - 1].sent_us - first).max(1);
    let bin_of = |r: &RequestRecord| ((r.sent_us - first) * bins as u64 / (span + 1)) as usize;
    let mut kept_ids = BTreeSet::new();
    for bin in measured.chunk_by(|a, b| bin_of(a) == bin_of(b)) {
        kept_ids.extend(bin.iter().min_by_key(|r| r.e2e_us()).map(|r| r.id));
        kept_ids.extend(bin.iter().max_by_key(|r| r.e2e_us()).map(|r| r.id));
        // Failures are the points people look for; never thin them out.
        kept_ids.extend(bin.iter().filter(|r| !r.ok()).map(|r| r.id));
    }
    measured.retain(|r| kept_ids.contains(&r.id));
    (measured, total)
}

/// The client's own count of requests in flight at time `t` (seconds): sent, not yet ended.
fn in_flight_at(sends: &[u64], ends: &[u64], t: f64) -> f64 {
    let at_us = (t.max(0.0) * 1e6) as u64;
    let started = sends.partition_point(|s| *s <= at_us);
    let ended = ends.partition_point(|e| *e <= at_us);
    started.saturating_sub(ended) as f64
}

/// Client latency per request at its send time (top), and the server's running / waiting requests and KV usage
/// (bottom), on one shared time axis so a latency jump lines up with the queue and the cache that caused it.
pub(super) fn timeline(requests: &[RequestRecord], scrapes: &[(f64, ServerReadings)]) -> String {
    let (plotted, measured_total) = timeline_requests(requests);
    let stride = scrapes.len().div_ceil(MAX_SCRAPE_POINTS).max(1);
    let scrapes: Vec<&(f64, ServerReadings)> = scrapes.iter().step_by(stride).collect();

    let last_request_s = plotted
        .iter()
        .map(|r| r.end_us.max(r.sent_us + r.e2e_us()) as f64 / 1e6)
        .fold(0.0, f64::max);
    let last_scrape_s = scrapes.iter().map(|(t, _)| *t).fold(0.0, f64::max);
    let (_, max_seconds) = linear_ticks(last_request_s.max(last_scrape_s).max(1.0), 10.0);
    let x = Scale::linear((0.0, max_seconds), (LEFT, RIGHT));

    let (latency_top, latency_bottom) = (48.0, 268.0);
    let (server_top, server_bottom) = (300.0, 480.0);
    let height = 540.0;
    let mut out = format!(
        r#"<svg id="timeline" class="chart" role="img" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg"><title>Client latency per request over time, with the server's running and waiting requests and KV cache usage</title>"#
    );
    legend(
        &mut out,
        22.0,
        &[
            ("series-ttft", "TTFT"),
            ("series-e2e", "E2E"),
            ("series-failed", "failed request"),
            ("series-running", "running"),
            ("series-waiting", "waiting"),
            ("series-inflight", "in flight (client)"),
            ("series-kv", "KV cache usage"),
        ],
    );

    // Top panel: latency, log scale so TTFT and E2E are both readable.
    frame(&mut out, latency_top, latency_bottom);
    x_axis(
        &mut out,
        &x,
        max_seconds,
        latency_top,
        latency_bottom,
        false,
    );
    let ok: Vec<&&RequestRecord> = plotted.iter().filter(|r| r.ok()).collect();
    let ttft_ms: Vec<(f64, f64)> = ok
        .iter()
        .filter_map(|r| {
            r.ttft_us()
                .map(|t| (r.sent_us as f64 / 1e6, t as f64 / 1e3))
        })
        .collect();
    let e2e_ms: Vec<(f64, f64)> = ok
        .iter()
        .map(|r| (r.sent_us as f64 / 1e6, r.e2e_us() as f64 / 1e3))
        .collect();
    let failed: Vec<f64> = plotted
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.sent_us as f64 / 1e6)
        .collect();
    if plotted.is_empty() {
        panel_message(
            &mut out,
            latency_top,
            latency_bottom,
            "no-requests",
            "no per-request records in this diagnosis",
        );
    } else {
        let values = ttft_ms.iter().chain(&e2e_ms).map(|(_, v)| *v);
        let min = values.clone().fold(f64::INFINITY, f64::min);
        let max = values.fold(0.0, f64::max);
        let (domain, ticks) = if min.is_finite() {
            log_domain(min, max)
        } else {
            log_domain(1.0, 1000.0)
        };
        let y = Scale::log(domain, (latency_bottom, latency_top));
        for tick in ticks {
            y_gridline(&mut out, y.at(tick), "grid", &duration_label(tick));
        }
        let project = |points: &[(f64, f64)]| -> Vec<(f64, f64)> {
            points.iter().map(|(t, v)| (x.at(*t), y.at(*v))).collect()
        };
        out.push_str(&dots("series-e2e", &project(&e2e_ms)));
        out.push_str(&dots("series-ttft", &project(&ttft_ms)));
        let mut crosses = String::new();
        for t in &failed {
            let px = x.at(*t);
            let py = latency_top + 8.0;
            let _ = write!(crosses, "M{:.1} {:.1}l6 6m0 -6l-6 6", px - 3.0, py - 3.0);
        }
        let _ = write!(
            out,
            r#"<path class="series-failed" data-points="{}" d="{crosses}"/>"#,
            failed.len()
        );
    }
    axis_title(
        &mut out,
        18.0,
        (latency_top + latency_bottom) / 2.0,
        -90,
        "client latency (log scale)",
    );

    // Bottom panel: the server's own view, counts on the left and KV usage on the right.
    frame(&mut out, server_top, server_bottom);
    x_axis(&mut out, &x, max_seconds, server_top, server_bottom, true);
    axis_title(
        &mut out,
        (LEFT + RIGHT) / 2.0,
        server_bottom + 40.0,
        0,
        "time since the run started (s)",
    );
    if scrapes.is_empty() {
        panel_message(
            &mut out,
            server_top,
            server_bottom,
            "no-scrapes",
            "no server metrics were scraped",
        );
    } else {
        let series = |signal: Signal| -> Vec<(f64, f64)> {
            scrapes
                .iter()
                .filter_map(|(t, readings)| readings.value(signal).map(|v| (*t, v)))
                // One NaN would make the browser drop the whole polyline.
                .filter(|(t, v)| t.is_finite() && v.is_finite())
                .collect()
        };
        let running = series(Signal::RequestsRunning);
        let waiting = series(Signal::RequestsWaiting);
        let kv_percent: Vec<(f64, f64)> = series(Signal::KvUsage)
            .into_iter()
            .map(|(t, v)| (t, (v * 100.0).clamp(0.0, 100.0)))
            .collect();
        // The client's own in-flight count at each scrape: running + waiting far below it means requests are
        // stuck before the engine (a proxy, the client, or another server).
        let mut sends: Vec<u64> = requests.iter().map(|r| r.sent_us).collect();
        let mut ends: Vec<u64> = requests.iter().map(|r| r.end_us).collect();
        sends.sort_unstable();
        ends.sort_unstable();
        let in_flight: Vec<(f64, f64)> = if requests.is_empty() {
            Vec::new()
        } else {
            scrapes
                .iter()
                .map(|(t, _)| (*t, in_flight_at(&sends, &ends, *t)))
                .collect()
        };
        let count_max = running
            .iter()
            .chain(&waiting)
            .chain(&in_flight)
            .map(|(_, v)| *v)
            .fold(1.0, f64::max);
        let (ticks, top) = linear_ticks(count_max, 5.0);
        let y = Scale::linear((0.0, top), (server_bottom, server_top));
        let kv = Scale::linear((0.0, 100.0), (server_bottom, server_top));
        for tick in ticks {
            y_gridline(&mut out, y.at(tick), "grid", &trim(tick));
        }
        for percent in [0.0, 25.0, 50.0, 75.0, 100.0] {
            let _ = write!(
                out,
                r#"<text class="tick tick-kv" x="{:.0}" y="{:.1}">{percent}%</text>"#,
                RIGHT + 6.0,
                kv.at(percent) + 4.0
            );
        }
        if !kv_percent.is_empty() {
            let projected: Vec<(f64, f64)> = kv_percent
                .iter()
                .map(|(t, v)| (x.at(*t), kv.at(*v)))
                .collect();
            let mut area = format!("M{:.1} {server_bottom:.1}", projected[0].0);
            for (px, py) in &projected {
                let _ = write!(area, "L{px:.1} {py:.1}");
            }
            let _ = write!(
                area,
                "L{:.1} {server_bottom:.1}Z",
                projected[projected.len() - 1].0
            );
            let _ = write!(out, r#"<path class="area-kv" d="{area}"/>"#);
            out.push_str(&polyline("series-kv", &projected));
        }
        let project = |points: &[(f64, f64)]| -> Vec<(f64, f64)> {
            points.iter().map(|(t, v)| (x.at(*t), y.at(*v))).collect()
        };
        if !in_flight.is_empty() {
            out.push_str(&polyline("series-inflight", &project(&in_flight)));
        }
        out.push_str(&polyline("series-waiting", &project(&waiting)));
        out.push_str(&polyline("series-running", &project(&running)));
        if running.is_empty() && waiting.is_empty() && kv_percent.is_empty() {
            panel_message(
                &mut out,
                server_top,
                server_bottom,
                "no-scrapes",
                "the scrapes carry no running, waiting or KV usage gauges",
            );
        }
    }
    axis_title(
        &mut out,
        18.0,
        (server_top + server_bottom) / 2.0,
        -90,
        "requests (count)",
    );
    axis_title(
        &mut out,
        RIGHT + 56.0,
        (server_top + server_bottom) / 2.0,
        90,
        "KV cache usage (%)",
    );
    out.push_str("</svg>");
    if plotted.len() < measured_total {
        let _ = write!(
            out,
            r#"<p class="chart-note">{} of {} requests drawn: the fastest and slowest of each time bin, and every failure.</p>"#,
            plotted.len(),
            measured_total
        );
    }
    out
}

/// Sorted values reduced to at most `CDF_POINTS` (value, cumulative %) pairs, always keeping the extremes.
fn cdf(mut values: Vec<f64>) -> Vec<(f64, f64)> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return Vec::new();
    }
    let count = n.min(CDF_POINTS);
    let mut points: Vec<(f64, f64)> = (0..count)
        .map(|i| {
            let rank = if count == 1 {
                n - 1
            } else {
                i * (n - 1) / (count - 1)
            };
            (values[rank], percentage(rank + 1, n))
        })
        .collect();
    points.insert(0, (values[0], 0.0));
    points
}

/// A CDF to draw: its CSS class, legend label and (value, cumulative %) points.
type Curve = (&'static str, &'static str, Vec<(f64, f64)>);

/// Cumulative distributions of per-request TTFT, TPOT and E2E under load, on a log time axis.
pub(super) fn latency_cdf(requests: &[RequestRecord]) -> String {
    let ok: Vec<&RequestRecord> = requests.iter().filter(|r| r.measured() && r.ok()).collect();
    let curves = [
        (
            "series-ttft",
            "TTFT",
            ok.iter()
                .filter_map(|r| r.ttft_us().map(|t| t as f64 / 1e3))
                .collect::<Vec<f64>>(),
        ),
        (
            "series-tpot",
            "TPOT",
            ok.iter()
                .filter_map(|r| r.tpot_us().map(|t| t / 1e3))
                .collect(),
        ),
        (
            "series-e2e",
            "E2E",
            ok.iter().map(|r| r.e2e_us() as f64 / 1e3).collect(),
        ),
    ];
    let curves: Vec<Curve> = curves
        .into_iter()
        .filter(|(_, _, values)| !values.is_empty())
        .map(|(class, label, values)| (class, label, cdf(values)))
        .collect();
    if curves.is_empty() {
        return r#"<p class="empty" id="latency-cdf-empty">No successful per-request records to draw distributions from.</p>"#.into();
    }
    let all = curves
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|(v, _)| *v));
    let min = all.clone().fold(f64::INFINITY, f64::min);
    let max = all.fold(0.0, f64::max);
    let (domain, ticks) = log_domain(min, max);
    let (top, bottom) = (40.0, 300.0);
    let x = Scale::log(domain, (LEFT, RIGHT));
    let y = Scale::linear((0.0, 100.0), (bottom, top));
    let mut out = format!(
        r#"<svg id="latency-cdf" class="chart" role="img" viewBox="0 0 {WIDTH} 350" xmlns="http://www.w3.org/2000/svg"><title>Cumulative distribution of per-request latency under load</title>"#
    );
    let items: Vec<(&str, &str)> = curves
        .iter()
        .map(|(class, label, _)| (*class, *label))
        .collect();
    legend(&mut out, 20.0, &items);
    frame(&mut out, top, bottom);
    for tick in ticks {
        let px = x.at(tick);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{px:.1}" x2="{px:.1}" y1="{top}" y2="{bottom}"/><text class="tick" x="{px:.1}" y="{:.0}" text-anchor="middle">{}</text>"#,
            bottom + 16.0,
            duration_label(tick)
        );
    }
    for percent in [0.0, 25.0, 50.0, 75.0, 90.0, 99.0] {
        let py = y.at(percent);
        let class = if percent >= 90.0 {
            "grid grid-tail"
        } else {
            "grid"
        };
        y_gridline(&mut out, py, class, &format!("{percent}%"));
    }
    for (class, _, points) in &curves {
        let projected: Vec<(f64, f64)> = points.iter().map(|(v, p)| (x.at(*v), y.at(*p))).collect();
        out.push_str(&polyline(class, &projected));
    }
    axis_title(
        &mut out,
        (LEFT + RIGHT) / 2.0,
        bottom + 40.0,
        0,
        "latency (log scale)",
    );
    axis_title(
        &mut out,
        18.0,
        (top + bottom) / 2.0,
        -90,
        "requests at or below (%)",
    );
    out.push_str("</svg>");
    out
}

fn bar(out: &mut String, y: f64, class: &str, label: &str, summary: &Summary, scale: &Scale) {
    let (start, p50, p99) = (scale.at(0.0), scale.at(summary.p50), scale.at(summary.p99));
    let _ = write!(
        out,
        r#"<text class="bar-label" x="{:.0}" y="{:.1}" text-anchor="end">{label}</text><rect class="bar {class}" x="{start:.1}" y="{:.1}" width="{:.1}" height="14" rx="3"/><line class="whisker" x1="{p50:.1}" x2="{p99:.1}" y1="{:.1}" y2="{:.1}"/><line class="whisker" x1="{p99:.1}" x2="{p99:.1}" y1="{:.1}" y2="{:.1}"/><text class="bar-value" x="{:.1}" y="{:.1}">p50 {} · p95 {} · p99 {}</text>"#,
        start - 8.0,
        y + 11.0,
        y,
        (p50 - start).max(1.0),
        y + 7.0,
        y + 7.0,
        y + 2.0,
        y + 12.0,
        p99 + 8.0,
        y + 11.0,
        duration(summary.p50),
        duration(summary.p95),
        duration(summary.p99)
    );
}

/// One row per latency: the single-user and loaded p50 as bars with a whisker to p99, each row on its own scale,
/// and how many times slower load made the median.
pub(super) fn summary_bars(rows: &[LatencyRow]) -> String {
    let row_height = 64.0;
    let left = 260.0;
    let right = 690.0;
    let height = 40.0 + row_height * rows.len() as f64;
    let mut out = format!(
        r#"<svg id="latency-bars" class="chart" role="img" viewBox="0 0 {WIDTH} {height:.0}" xmlns="http://www.w3.org/2000/svg"><title>Single user versus loaded latency: p50 bars with whiskers to p99</title>"#
    );
    legend(
        &mut out,
        20.0,
        &[("bar-single", "1 user"), ("bar-loaded", "loaded")],
    );
    for (i, row) in rows.iter().enumerate() {
        let top = 36.0 + row_height * i as f64;
        let max = [row.single_user, row.loaded]
            .iter()
            .flatten()
            .map(|s| s.p99)
            .fold(1e-9, f64::max);
        let scale = Scale::linear((0.0, max), (left, right));
        let _ = write!(
            out,
            r#"<g class="bar-row" data-metric="{}"><text class="bar-metric" x="20" y="{:.1}">{}</text>"#,
            escape(row.name),
            top + 24.0,
            escape(row.name)
        );
        if let Some(single) = &row.single_user {
            bar(&mut out, top + 4.0, "bar-single", "1 user", single, &scale);
        }
        if let Some(loaded) = &row.loaded {
            bar(&mut out, top + 24.0, "bar-loaded", "loaded", loaded, &scale);
        }
        if let (Some(single), Some(loaded)) = (&row.single_user, &row.loaded)
            && single.p50 > 0.0
        {
            let _ = write!(
                out,
                r#"<text class="bar-ratio" x="20" y="{:.1}">loaded p50 ×{:.1}</text>"#,
                top + 42.0,
                loaded.p50 / single.p50
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

/// A CSS class for a kernel class's label ("attention (paged)" → `k-attention-paged`): one colour per class on
/// every trace chart.
fn kernel_class_css(label: &str) -> String {
    let mut css = String::from("k");
    for word in label.split(|c: char| !c.is_ascii_alphanumeric()) {
        if !word.is_empty() {
            css.push('-');
            css.push_str(&word.to_ascii_lowercase());
        }
    }
    css
}

/// vLLM's engine steps side by side in time order: each a bar of the GPU time per kernel class stacked, topped by
/// the time the GPU idled inside the step, over a strip saying the step's phase.
pub(super) fn step_timeline(rank: &RankTrace, id: &str) -> String {
    let steps = &rank.steps;
    let mut out = String::new();
    let mut classes: Vec<&str> = Vec::new();
    for (class, _) in steps.iter().flat_map(|s| &s.classes) {
        if !classes.contains(&class.as_str()) {
            classes.push(class);
        }
    }
    let css: Vec<String> = classes.iter().map(|c| kernel_class_css(c)).collect();
    let mut items: Vec<(&str, &str)> = css
        .iter()
        .zip(&classes)
        .map(|(css, label)| (css.as_str(), *label))
        .collect();
    if !classes.is_empty() {
        items.push(("k-idle", "GPU idle in step"));
    }
    let last_row = legend(&mut out, 20.0, &items);
    let last_row = legend(
        &mut out,
        last_row + 20.0,
        &[
            ("phase-prefill", "prefill"),
            ("phase-decode", "decode"),
            ("phase-mixed", "mixed"),
        ],
    );
    let (top, bottom) = (last_row + 16.0, last_row + 236.0);
    frame(&mut out, top, bottom);
    let idle = |s: &StepTrace| (s.gpu_span_us - s.gpu_busy_us).max(0.0);
    // Without GPU ops (a CPU profile) a step is its CPU time, drawn in its phase's colour.
    let cpu_only = steps.iter().all(|s| s.gpu_span_us <= 0.0);
    let segments = |s: &StepTrace| -> Vec<(String, f64)> {
        if cpu_only {
            return vec![(format!("phase-{}", s.phase), s.cpu_us)];
        }
        s.classes
            .iter()
            .map(|(class, us)| (kernel_class_css(class), *us))
            .chain([("k-idle".to_string(), idle(s))])
            .collect()
    };
    let max_us = steps
        .iter()
        .map(|s| segments(s).iter().map(|(_, us)| us).sum::<f64>())
        .fold(0.0, f64::max);
    let (ticks, top_ms) = linear_ticks(max_us / 1e3, 5.0);
    let y = Scale::linear((0.0, top_ms), (bottom, top));
    for tick in ticks {
        y_gridline(&mut out, y.at(tick), "grid", &duration_label(tick));
    }
    let slot = (RIGHT - LEFT) / steps.len().max(1) as f64;
    let width = if slot > 3.0 { slot * 0.8 } else { slot };
    for (i, step) in steps.iter().enumerate() {
        let x = LEFT + slot * i as f64;
        let _ = write!(
            out,
            r#"<g class="step" data-phase="{}"><title>step at {:.1} ms, {}: CPU {:.2} ms, GPU busy {:.2} ms of a {:.2} ms span</title>"#,
            escape(&step.phase),
            step.start_us / 1e3,
            escape(&step.phase),
            step.cpu_us / 1e3,
            step.gpu_busy_us / 1e3,
            step.gpu_span_us / 1e3
        );
        let mut base = 0.0;
        for (class, us) in segments(step).into_iter().filter(|(_, us)| *us > 0.0) {
            let (from, to) = (y.at(base / 1e3), y.at((base + us) / 1e3));
            let _ = write!(
                out,
                r#"<rect class="{}" x="{x:.2}" y="{to:.2}" width="{width:.2}" height="{:.2}"/>"#,
                escape(&class),
                from - to
            );
            base += us;
        }
        let _ = write!(
            out,
            r#"<rect class="phase-{}" x="{x:.2}" y="{:.0}" width="{slot:.2}" height="8"/></g>"#,
            escape(&step.phase),
            bottom + 4.0
        );
    }
    let what = if cpu_only {
        "CPU time of the step"
    } else {
        "GPU time in step"
    };
    axis_title(&mut out, 18.0, (top + bottom) / 2.0, -90, what);
    let shown = if rank.steps_total as usize > steps.len() {
        format!(
            "{} of {} steps, evenly spaced, in time order",
            steps.len(),
            rank.steps_total
        )
    } else {
        format!("{} steps in time order", steps.len())
    };
    axis_title(&mut out, (LEFT + RIGHT) / 2.0, bottom + 40.0, 0, &shown);
    format!(
        r#"<svg id="{id}" class="chart step-timeline" data-steps="{}" role="img" viewBox="0 0 {WIDTH} {:.0}" xmlns="http://www.w3.org/2000/svg"><title>Engine steps: GPU time per kernel class and idle time within each step</title>{out}</svg>"#,
        steps.len(),
        bottom + 58.0
    )
}

/// The kernels that took the most GPU time, as bars coloured by class, with their count and mean.
pub(super) fn kernel_bars(rank: &RankTrace, id: &str) -> String {
    let kernels = &rank.top_kernels;
    let row = 30.0;
    let (label_right, bar_left, bar_right) = (20.0, 500.0, 880.0);
    let height = 24.0 + row * kernels.len() as f64;
    let mut out = format!(
        r#"<svg id="{id}" class="chart kernel-bars" data-kernels="{}" role="img" viewBox="0 0 {WIDTH} {height:.0}" xmlns="http://www.w3.org/2000/svg"><title>The kernels that took the most GPU time</title>"#,
        kernels.len()
    );
    let max = kernels.iter().map(|k| k.total_us).fold(1e-9, f64::max);
    let x = Scale::linear((0.0, max), (bar_left, bar_right));
    for (i, kernel) in kernels.iter().enumerate() {
        let y = 12.0 + row * i as f64;
        let name = crate::trace::short_name(&kernel.name);
        let _ = write!(
            out,
            r#"<g class="kernel-bar" data-class="{class}"><title>{} ({}): {} calls, {:.2} ms in all</title><text x="{label_right}" y="{:.1}">{}</text><rect class="{}" x="{bar_left}" y="{y:.1}" width="{:.2}" height="18" rx="2"/><text class="bar-value" x="{:.1}" y="{:.1}">{:.2} ms · {}×</text></g>"#,
            escape(&kernel.name),
            escape(&kernel.class),
            kernel.count,
            kernel.total_us / 1e3,
            y + 13.0,
            escape(&name),
            kernel_class_css(&kernel.class),
            (x.at(kernel.total_us) - bar_left).max(1.0),
            x.at(kernel.total_us) + 6.0,
            y + 13.0,
            kernel.total_us / 1e3,
            kernel.count,
            class = escape(&kernel.class),
        );
    }
    out.push_str("</svg>");
    out
}

/// A figure across runs: one point per run, left to right in time, with the run's label under it; runs without
/// a value leave a gap in the line.
pub(super) fn trend(label: &str, unit: &str, runs: &[(String, Option<f64>)]) -> String {
    let (top, bottom) = (30.0, 280.0);
    let mut out = format!(
        r#"<svg id="trend" class="chart" role="img" viewBox="0 0 {WIDTH} 330" xmlns="http://www.w3.org/2000/svg"><title>{} per run</title>"#,
        escape(label)
    );
    frame(&mut out, top, bottom);
    let max = runs.iter().filter_map(|r| r.1).fold(0.0, f64::max);
    if max <= 0.0 {
        panel_message(&mut out, top, bottom, "missing", "no run has this figure");
        out.push_str("</svg>");
        return out;
    }
    let (ticks, y_max) = linear_ticks(max, 6.0);
    let y = Scale::linear((0.0, y_max), (bottom, top));
    for t in ticks {
        y_gridline(&mut out, y.at(t), "grid", &trim(t));
    }
    let x = Scale::linear(
        (0.0, runs.len().saturating_sub(1).max(1) as f64),
        (LEFT + 20.0, RIGHT - 20.0),
    );
    // Labels thin out so they never overlap: about 16 fit across.
    let every = runs.len().div_ceil(16).max(1);
    for (i, (name, _)) in runs.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let _ = write!(
            out,
            r#"<text class="tick" x="{:.1}" y="{:.0}" text-anchor="middle">{}</text>"#,
            x.at(i as f64),
            bottom + 16.0,
            escape(name)
        );
    }
    let mut segment = Vec::new();
    let mut all = Vec::new();
    for (i, (_, value)) in runs.iter().enumerate() {
        match value {
            Some(v) => {
                let point = (x.at(i as f64), y.at(*v));
                segment.push(point);
                all.push(point);
            }
            None if !segment.is_empty() => {
                out += &polyline("series-trend", &segment);
                segment.clear();
            }
            None => {}
        }
    }
    if !segment.is_empty() {
        out += &polyline("series-trend", &segment);
    }
    out += &dots("series-trend-point", &all);
    axis_title(
        &mut out,
        20.0,
        (top + bottom) / 2.0,
        -90,
        &format!("{label} ({unit})"),
    );
    axis_title(
        &mut out,
        (LEFT + RIGHT) / 2.0,
        bottom + 40.0,
        0,
        "run (oldest first)",
    );
    out.push_str("</svg>");
    out
}
