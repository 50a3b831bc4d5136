//! Little's law as a sanity check on the server's own numbers: requests in the system should equal completion
//! rate × mean time in the system; when they do not, the scrape or the window is wrong. Source: §D D23, §B5.

use infer_doctor_core::{Confidence, Severity, Signal, Symptom};

use crate::Thresholds;
use crate::assessment::{Assessment, Rule, compared, ratio, seen};
use crate::facts::{Facts, finite};

const LITTLES_LAW: Rule = Rule {
    id: "consistency.littles_law",
    symptom: Symptom::Measurement,
    why: "By Little's law the requests in the system (running + waiting) equal the completion rate times the mean \
          end-to-end time; a large gap means the gauges and the counters describe different windows or servers \
          (scrapes too sparse, several engines behind one name, a restart), so other findings from these metrics \
          are suspect.",
    remedies: &[
        "Scrape more often (--scrape-interval 1s) over a longer steady window",
        "Make sure the metrics URL is the engine the load went to (one replica, not a load-balanced address)",
        "Check for restarts during the run (counters reset)",
    ],
    source: "sim_capacity.md §D D23, §B5 (Little's law; PSAP playbook sanity check)",
};

pub(crate) fn assess(facts: &Facts, t: &Thresholds) -> Vec<Assessment> {
    vec![littles_law(facts, t)]
}

fn littles_law(facts: &Facts, t: &Thresholds) -> Assessment {
    let Some(server) = &facts.evidence.server else {
        return LITTLES_LAW.unknown("server metrics", &facts.how_server());
    };
    let Some(running) = server
        .gauge(Signal::RequestsRunning)
        .and_then(|g| finite(g.mean))
    else {
        return LITTLES_LAW.unknown("the running count", &facts.how_server());
    };
    let waiting = server
        .gauge(Signal::RequestsWaiting)
        .and_then(|g| finite(g.mean))
        .unwrap_or(0.0);
    let Some(e2e) = facts.histogram(Signal::E2e) else {
        return LITTLES_LAW.unknown("the end-to-end latency histogram", &facts.how_server());
    };
    // Completions per second: the finished counter, else the E2E histogram's own count over the window.
    let completion_rate = facts
        .counter(Signal::RequestsFinished)
        .map(|c| c.rate)
        .filter(|r| *r > 0.0)
        .or_else(|| ratio(e2e.count, server.seconds()));
    let Some(completion_rate) = completion_rate else {
        return LITTLES_LAW.unknown(
            "the completion rate (a window of two or more scrapes)",
            &facts.how_server(),
        );
    };
    let in_system = running + waiting;
    let predicted = completion_rate * e2e.mean;
    let larger = in_system.max(predicted);
    if larger < t.littles_law_min_in_system {
        return LITTLES_LAW.passes(format!(
            "{in_system:.1} in the system, {predicted:.1} by Little's law: too few to disagree"
        ));
    }
    let Some(gap) = ratio((in_system - predicted).abs(), larger) else {
        return LITTLES_LAW.unknown("server metrics", &facts.how_server());
    };
    if gap <= t.littles_law_tolerance {
        return LITTLES_LAW.passes(format!(
            "{in_system:.1} in the system vs {predicted:.1} by Little's law ({completion_rate:.2}/s × {:.2} s)",
            e2e.mean
        ));
    }
    let window = facts.server_window_label();
    LITTLES_LAW.fires(
        Severity::Warning,
        Confidence::Medium,
        format!(
            "the server's numbers disagree: {in_system:.1} requests in the system, but {completion_rate:.2}/s × \
             {:.2} s = {predicted:.1} by Little's law",
            e2e.mean
        ),
        vec![
            compared("|L − λW| / max(L, λW)", gap, ">", t.littles_law_tolerance, &window),
            seen("running + waiting mean (L)", in_system, &window),
            seen("completion rate /s (λ)", completion_rate, &window),
            seen("e2e mean s (W)", e2e.mean, &window),
        ],
    )
}
