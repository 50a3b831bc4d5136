//! The simulated fleet's router seen as llm-d's endpoint picker (EPP) sees itself: its time per scheduling
//! decision, its attempts placed (per endpoint) or failed and its ready endpoints, under llm-d's own series names
//! and labels as Go's client writes them (integers without a fraction, no `_created`), so the picker rule is
//! checked on a real scrape and through a real Prometheus.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::metrics::{Buckets, escape_label_value, write_go_float, write_header};

/// The scheduler latency buckets of the Gateway API Inference Extension's `scheduler_e2e_duration_seconds`,
/// which llm-d's picker keeps under its own prefix.
const SCHEDULING_BOUNDS: [f64; 10] = [
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
];

/// Flow-control queue buckets, seconds; the Inference Extension's own are not copied here, these span a
/// millisecond to a minute.
const QUEUE_BOUNDS: [f64; 13] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// What the picker counted since it started.
#[derive(Clone, Debug)]
pub struct PickerMetrics {
    scheduling: Buckets,
    /// Time requests waited in flow control before going on to a replica; `None` without flow control.
    queue: Option<Buckets>,
    /// Attempts that found an endpoint, by the endpoint's name.
    placed: BTreeMap<String, u64>,
    failed: u64,
}

impl Default for PickerMetrics {
    fn default() -> Self {
        PickerMetrics {
            scheduling: Buckets::new(&SCHEDULING_BOUNDS),
            queue: None,
            placed: BTreeMap::new(),
            failed: 0,
        }
    }
}

impl PickerMetrics {
    /// One scheduling decision: how long it took, and the endpoint it chose (`None`: it found none).
    pub fn observe_decision(&mut self, seconds: f64, endpoint: Option<&str>) {
        self.scheduling.observe(seconds);
        match endpoint {
            Some(name) => *self.placed.entry(name.to_string()).or_default() += 1,
            None => self.failed += 1,
        }
    }

    /// One request let through flow control after `seconds` in its queue.
    pub fn observe_queue(&mut self, seconds: f64) {
        self.queue
            .get_or_insert_with(|| Buckets::new(&QUEUE_BOUNDS))
            .observe(seconds);
    }

    /// The picker's `/metrics` text, with `ready` endpoints in `pool` now.
    pub fn render(&self, pool: &str, model: &str, ready: usize) -> String {
        let mut out = String::with_capacity(2048);
        // Writing into a String cannot fail.
        let _ = self.write_exposition(&mut out, pool, model, ready);
        out
    }

    fn write_exposition(
        &self,
        out: &mut String,
        pool: &str,
        model: &str,
        ready: usize,
    ) -> std::fmt::Result {
        let (pool, model) = (escape_label_value(pool), escape_label_value(model));
        let name = "llm_d_epp_scheduler_attempts_total";
        write_header(
            out,
            name,
            "[ALPHA] Total number of scheduling attempts.",
            "counter",
        )?;
        // A failed attempt has no endpoint and, as the picker writes it, no target model either.
        writeln!(
            out,
            "{name}{{endpoint_name=\"\",namespace=\"\",port=\"\",status=\"failure\",target_model_name=\"\"}} {}",
            self.failed
        )?;
        for (endpoint, count) in &self.placed {
            writeln!(
                out,
                "{name}{{endpoint_name=\"{}\",namespace=\"\",port=\"\",status=\"success\",target_model_name=\"{model}\"}} {count}",
                escape_label_value(endpoint)
            )?;
        }
        write_histogram(
            out,
            "llm_d_epp_scheduler_e2e_duration_seconds",
            "[ALPHA] End-to-end scheduling latency distribution in seconds.",
            "",
            &self.scheduling,
        )?;
        if let Some(queue) = &self.queue {
            write_histogram(
                out,
                "llm_d_epp_flow_control_request_queue_duration_seconds",
                "[ALPHA] Distribution of the total time requests spend in the flow control layer.",
                &format!(
                    "fairness_id=\"\",inference_pool=\"{pool}\",model_name=\"{model}\",outcome=\"Dispatched\",priority=\"0\",target_model_name=\"{model}\","
                ),
                queue,
            )?;
        }
        let name = "llm_d_epp_ready_endpoints";
        write_header(
            out,
            name,
            "[ALPHA] The number of ready endpoints in the inference pool.",
            "gauge",
        )?;
        writeln!(out, "{name}{{name=\"{pool}\"}} {ready}")
    }
}

/// One histogram in Go's text format; `labels` (each followed by a comma) go before `le` on every bucket and
/// alone on `_sum` and `_count`.
fn write_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    labels: &str,
    buckets: &Buckets,
) -> std::fmt::Result {
    write_header(out, name, help, "histogram")?;
    for (bound, cumulative) in buckets.cumulative() {
        write!(out, "{name}_bucket{{{labels}le=\"")?;
        if bound.is_finite() {
            write_go_float(out, bound)?;
        } else {
            out.push_str("+Inf");
        }
        writeln!(out, "\"}} {cumulative}")?;
    }
    let series = labels.trim_end_matches(',');
    let series = if series.is_empty() {
        String::new()
    } else {
        format!("{{{series}}}")
    };
    write!(out, "{name}_sum{series} ")?;
    write_go_float(out, buckets.sum())?;
    writeln!(out, "\n{name}_count{series} {}", buckets.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_land_in_the_first_bucket_at_or_above_them_and_failures_apart() {
        let mut picker = PickerMetrics::default();
        for (seconds, endpoint) in [(0.00005, "sim-0"), (0.0003, "sim-1"), (0.04, "sim-0")] {
            picker.observe_decision(seconds, Some(endpoint));
        }
        picker.observe_decision(0.2, None);
        let text = picker.render("pool", "m", 2);
        for line in [
            "llm_d_epp_scheduler_e2e_duration_seconds_bucket{le=\"0.0001\"} 1\n",
            "llm_d_epp_scheduler_e2e_duration_seconds_bucket{le=\"0.0005\"} 2\n",
            "llm_d_epp_scheduler_e2e_duration_seconds_bucket{le=\"0.05\"} 3\n",
            "llm_d_epp_scheduler_e2e_duration_seconds_bucket{le=\"0.1\"} 3\n",
            "llm_d_epp_scheduler_e2e_duration_seconds_bucket{le=\"+Inf\"} 4\n",
            "llm_d_epp_scheduler_e2e_duration_seconds_count 4\n",
            "{endpoint_name=\"\",namespace=\"\",port=\"\",status=\"failure\",target_model_name=\"\"} 1\n",
            "{endpoint_name=\"sim-0\",namespace=\"\",port=\"\",status=\"success\",target_model_name=\"m\"} 2\n",
            "{endpoint_name=\"sim-1\",namespace=\"\",port=\"\",status=\"success\",target_model_name=\"m\"} 1\n",
            "llm_d_epp_ready_endpoints{name=\"pool\"} 2\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // Without flow control there is no queue to report; with it, each wait lands in its bucket.
        assert!(!text.contains("flow_control"), "{text}");
        picker.observe_queue(0.3);
        picker.observe_queue(0.004);
        let text = picker.render("pool", "m", 2);
        let labels = "fairness_id=\"\",inference_pool=\"pool\",model_name=\"m\",outcome=\"Dispatched\",priority=\"0\",target_model_name=\"m\"";
        for line in [
            format!(
                "llm_d_epp_flow_control_request_queue_duration_seconds_bucket{{{labels},le=\"0.005\"}} 1\n"
            ),
            format!(
                "llm_d_epp_flow_control_request_queue_duration_seconds_bucket{{{labels},le=\"0.5\"}} 2\n"
            ),
            format!("llm_d_epp_flow_control_request_queue_duration_seconds_count{{{labels}}} 2\n"),
        ] {
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
    }
}
