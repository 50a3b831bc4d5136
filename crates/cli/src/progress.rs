//! Live progress on stderr while a run is going, only when stderr is a terminal; the engine only counts.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use infer_doctor_load::LiveCounters;

pub struct Display {
    bar: Option<ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn start(live: Arc<LiveCounters>, quiet: bool) -> Display {
    if quiet || !std::io::stderr().is_terminal() {
        return Display {
            bar: None,
            task: None,
        };
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let ticking = bar.clone();
    let task = tokio::spawn(async move {
        loop {
            let (sent, ok, failed, in_flight) = (
                live.sent.load(Ordering::Relaxed),
                live.ok.load(Ordering::Relaxed),
                live.failed.load(Ordering::Relaxed),
                live.in_flight.load(Ordering::Relaxed),
            );
            ticking.set_message(format!(
                "sent {sent} · ok {ok} · failed {failed} · in flight {in_flight}"
            ));
            ticking.tick();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Display {
        bar: Some(bar),
        task: Some(task),
    }
}

impl Display {
    pub fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
