//! The live terminal view of `watch`: the server's canonical signals with sparklines of their recent history, and
//! the current findings. Drawing on the terminal is the binary's job alone (DESIGN.md §2), so it lives here.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use infer_doctor_core::signals::ServerWindow;
use infer_doctor_core::{Finding, Severity, Signal};
use infer_doctor_diagnose::FAILED_FINISH_REASONS;
use infer_doctor_report::markdown::severity_label;
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Sparkline, Wrap};
use tokio::sync::mpsc;

use crate::cmd::watch::Snapshot;
use crate::{Failure, exit};

/// Intervals of history each sparkline keeps (a wide terminal shows the most recent that fit).
const HISTORY: usize = 240;

/// How often the key reader wakes to see whether the view has ended.
const KEY_POLL: Duration = Duration::from_millis(100);

/// Shows `snapshots` as they come until q or Esc (exit 0) or Ctrl-C (exit 130); the terminal is restored however
/// it ends, a panic included.
pub async fn run(
    source: String,
    span: String,
    mut snapshots: mpsc::Receiver<Snapshot>,
) -> Result<u8, Failure> {
    let mut keys = read_keys();
    let mut terminal = ratatui::try_init()?;
    let _restore = RestoreOnDrop;
    let mut view = View::new(source, span);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        terminal.draw(|frame| view.draw(frame))?;
        tokio::select! {
            Some(snapshot) = snapshots.recv() => view.update(snapshot),
            key = keys.recv() => match key {
                Some(Key::Quit) | None => return Ok(exit::OK),
                Some(Key::Interrupt) => return Ok(exit::INTERRUPTED),
                Some(Key::Redraw) => {}
            },
            // SIGINT from outside: raw mode keeps the terminal's own Ctrl-C from becoming one.
            _ = &mut ctrl_c => return Ok(exit::INTERRUPTED),
        }
    }
}

struct RestoreOnDrop;

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

enum Key {
    Quit,
    /// Ctrl-C, which raw mode delivers as a key rather than a signal.
    Interrupt,
    /// The terminal was resized.
    Redraw,
}

/// Reads the terminal's keys on a thread of its own (crossterm's reading blocks); the thread ends soon after the
/// view drops the receiver.
fn read_keys() -> mpsc::Receiver<Key> {
    let (tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || {
        while !tx.is_closed() {
            let Ok(true) = event::poll(KEY_POLL) else {
                continue;
            };
            let key = match event::read() {
                Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => match k.code {
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        Key::Interrupt
                    }
                    KeyCode::Char('q') | KeyCode::Esc => Key::Quit,
                    _ => continue,
                },
                Ok(Event::Resize(..)) => Key::Redraw,
                _ => continue,
            };
            if tx.blocking_send(key).is_err() {
                break;
            }
        }
    });
    rx
}

/// How a row's number reads.
#[derive(Clone, Copy)]
enum Unit {
    Count,
    /// A 0–1 share, shown in percent; its sparkline's scale is 0–100%.
    Share,
    PerSecond,
    /// Seconds, shown in milliseconds.
    Latency,
}

/// One signal of the view: its label and how to read it from a window.
struct Row {
    label: &'static str,
    unit: Unit,
    read: fn(&ServerWindow) -> Option<f64>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn gauge_last(w: &ServerWindow, signal: Signal) -> Option<f64> {
    finite(w.gauge(signal)?.last)
}

fn counter_rate(w: &ServerWindow, signal: Signal) -> Option<f64> {
    finite(w.counter(signal)?.rate)
}

fn quantile(
    w: &ServerWindow,
    signal: Signal,
    pick: fn(&infer_doctor_core::signals::HistogramStats) -> f64,
) -> Option<f64> {
    finite(pick(w.histogram(signal)?))
}

/// Requests the server ended by failing (aborted or errored) per second.
fn failures_per_second(w: &ServerWindow) -> Option<f64> {
    let finished = w.counter(Signal::RequestsFinished)?;
    let failed: f64 = FAILED_FINISH_REASONS
        .iter()
        .filter_map(|reason| finished.by_label.get(*reason))
        .sum();
    finite(failed / w.seconds())
}

/// DESIGN.md §5's canonical signals, in the order an operator reads them: load, memory, latency, throughput.
const ROWS: [Row; 15] = [
    Row {
        label: "running",
        unit: Unit::Count,
        read: |w| gauge_last(w, Signal::RequestsRunning),
    },
    Row {
        label: "waiting",
        unit: Unit::Count,
        read: |w| gauge_last(w, Signal::RequestsWaiting),
    },
    Row {
        label: "KV cache usage",
        unit: Unit::Share,
        read: |w| gauge_last(w, Signal::KvUsage),
    },
    Row {
        label: "preemptions",
        unit: Unit::PerSecond,
        read: |w| counter_rate(w, Signal::Preemptions),
    },
    Row {
        label: "TTFT p50",
        unit: Unit::Latency,
        read: |w| quantile(w, Signal::Ttft, |h| h.p50),
    },
    Row {
        label: "TTFT p99",
        unit: Unit::Latency,
        read: |w| quantile(w, Signal::Ttft, |h| h.p99),
    },
    Row {
        label: "ITL p50",
        unit: Unit::Latency,
        read: |w| quantile(w, Signal::Itl, |h| h.p50),
    },
    Row {
        label: "ITL p99",
        unit: Unit::Latency,
        read: |w| quantile(w, Signal::Itl, |h| h.p99),
    },
    Row {
        label: "E2E p50",
        unit: Unit::Latency,
        read: |w| quantile(w, Signal::E2e, |h| h.p50),
    },
    Row {
        label: "E2E p99",
        unit: Unit::Latency,
        read: |w| quantile(w, Signal::E2e, |h| h.p99),
    },
    Row {
        label: "output tokens",
        unit: Unit::PerSecond,
        read: |w| {
            counter_rate(w, Signal::GenerationTokens)
                .or_else(|| gauge_last(w, Signal::GenerationThroughput))
        },
    },
    Row {
        label: "prompt tokens",
        unit: Unit::PerSecond,
        read: |w| {
            counter_rate(w, Signal::PromptTokens)
                .or_else(|| gauge_last(w, Signal::PromptThroughput))
        },
    },
    Row {
        label: "prefix-cache hits",
        unit: Unit::Share,
        read: ServerWindow::prefix_cache_hit_rate,
    },
    Row {
        label: "requests finished",
        unit: Unit::PerSecond,
        read: |w| counter_rate(w, Signal::RequestsFinished),
    },
    Row {
        label: "requests failed",
        unit: Unit::PerSecond,
        read: failures_per_second,
    },
];

fn shown(value: Option<f64>, unit: Unit) -> String {
    let Some(v) = value else {
        return "-".into();
    };
    match unit {
        Unit::Count => format!("{v:.0}"),
        Unit::Share => format!("{:.1}%", v * 100.0),
        Unit::PerSecond if v >= 100.0 => format!("{v:.0}/s"),
        Unit::PerSecond => format!("{v:.2}/s"),
        Unit::Latency => format!("{:.1} ms", v * 1e3),
    }
}

/// A value as a sparkline bar: the bars only compare a row's values, so any fixed scale that keeps fractions works.
fn bar(value: Option<f64>) -> Option<u64> {
    value
        .filter(|v| *v >= 0.0)
        .map(|v| (v * 1000.0).round() as u64)
}

struct View {
    source: String,
    span: String,
    /// Per row of `ROWS`, its value at each interval, oldest first.
    history: Vec<VecDeque<Option<f64>>>,
    latest: Option<Snapshot>,
    /// The last findings diagnosed, and when.
    findings: Option<(SystemTime, Vec<Finding>)>,
}

impl View {
    fn new(source: String, span: String) -> View {
        View {
            source,
            span,
            history: ROWS.iter().map(|_| VecDeque::new()).collect(),
            latest: None,
            findings: None,
        }
    }

    fn update(&mut self, mut snapshot: Snapshot) {
        for (row, history) in ROWS.iter().zip(&mut self.history) {
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(snapshot.latest.as_ref().and_then(row.read));
        }
        if let Some(findings) = snapshot.findings.take() {
            self.findings = Some((snapshot.at, findings));
        }
        self.latest = Some(snapshot);
    }

    fn draw(&self, frame: &mut Frame) {
        let [header, signals, findings, footer] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Length(ROWS.len() as u16 + 2),
            // The findings take the rest: as many lines as there are findings, on a tall enough terminal.
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        frame.render_widget(Paragraph::new(self.header()), header);
        self.draw_signals(frame, signals);
        self.draw_findings(frame, findings);
        frame.render_widget(
            Paragraph::new("q / Esc quit · Ctrl-C interrupt")
                .style(Style::new().fg(Color::DarkGray)),
            footer,
        );
    }

    fn header(&self) -> Vec<Line<'_>> {
        let mut title = vec![Span::styled(
            format!("infer-doctor watch · {}", self.source),
            Style::new().add_modifier(Modifier::BOLD),
        )];
        let window = self.latest.as_ref().and_then(|s| s.window.as_ref());
        if let Some(w) = window {
            title.push(Span::raw(format!(" · {}", w.dialect)));
            if !w.models.is_empty() {
                title.push(Span::raw(format!(" · {}", w.models.join(", "))));
            }
        }
        let status = match &self.latest {
            None => Line::from("reading the server…"),
            Some(Snapshot {
                problem: Some(problem),
                at,
                ..
            }) => Line::styled(
                format!("{} {problem}", clock(*at)),
                Style::new().fg(Color::Red),
            ),
            Some(Snapshot { window: None, .. }) => {
                Line::from("waiting for a second scrape: a window needs two")
            }
            Some(Snapshot { at, .. }) => Line::from(format!("{} · {}", clock(*at), self.span)),
        };
        vec![Line::from(title), status]
    }

    fn draw_signals(&self, frame: &mut Frame, area: Rect) {
        let block = Block::bordered().title(" signals (the window's value · each interval) ");
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let window = self.latest.as_ref().and_then(|s| s.window.as_ref());
        let lines = Layout::vertical(ROWS.iter().map(|_| Constraint::Length(1))).split(inner);
        for ((row, history), line) in ROWS.iter().zip(&self.history).zip(lines.iter()) {
            let [label, value, spark] = Layout::horizontal([
                Constraint::Length(20),
                Constraint::Length(12),
                Constraint::Min(10),
            ])
            .spacing(1)
            .areas(*line);
            frame.render_widget(Paragraph::new(row.label), label);
            frame.render_widget(
                Paragraph::new(shown(window.and_then(row.read), row.unit)).right_aligned(),
                value,
            );
            // The most recent values that fit: the oldest scroll off the left.
            let fit = history.len().saturating_sub(spark.width as usize);
            let mut sparkline = Sparkline::default()
                .data(history.iter().skip(fit).map(|v| bar(*v)))
                .style(Style::new().fg(Color::Cyan));
            if let Unit::Share = row.unit {
                sparkline = sparkline.max(1000);
            }
            frame.render_widget(sparkline, spark);
        }
    }

    fn draw_findings(&self, frame: &mut Frame, area: Rect) {
        let (title, lines) = match &self.findings {
            None => (
                " findings ".to_string(),
                vec![Line::from("none yet: the first diagnosis needs a window")],
            ),
            Some((_, findings)) if findings.is_empty() => (
                " findings (0) ".to_string(),
                vec![Line::from(
                    "no findings: nothing the window shows is wrong (rules without the data they need stay silent)",
                )],
            ),
            Some((at, findings)) => {
                // Findings from an earlier look than the latest (its read failed) say when they were judged.
                let stale = self.latest.as_ref().is_some_and(|s| s.at != *at);
                let title = if stale {
                    format!(" findings ({}, as of {}) ", findings.len(), clock(*at))
                } else {
                    format!(" findings ({}) ", findings.len())
                };
                (title, findings.iter().map(finding_line).collect())
            }
        };
        frame.render_widget(
            Paragraph::new(lines)
                .block(Block::bordered().title(title))
                .wrap(Wrap { trim: false }),
            area,
        );
    }
}

fn finding_line(f: &Finding) -> Line<'_> {
    let colour = match f.severity {
        Severity::Critical => Color::Red,
        Severity::Warning => Color::Yellow,
        Severity::Info => Color::Blue,
    };
    Line::from(vec![
        Span::styled(
            format!("{:<8} ", severity_label(f.severity)),
            Style::new().fg(colour).add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            format!("{} ", f.id),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(f.verdict.as_str()),
    ])
}

/// The time of day (UTC) of a look.
fn clock(at: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(at).to_string();
    stamp.split_once('T').map_or(stamp.clone(), |(_, time)| {
        time.trim_end_matches('Z').to_string() + " UTC"
    })
}
