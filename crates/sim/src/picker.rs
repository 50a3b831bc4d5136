//! The simulated fleet's router seen as llm-d's endpoint picker (EPP) sees itself: its time per scheduling
//! decision, its attempts placed or failed and its ready endpoints, under llm-d's own series names and in the
//! Go client's text format, so the picker rule is checked on a real scrape and through a real Prometheus.

use std::fmt::Write;

use crate::metrics::{Buckets, escape_label_value, write_count, write_go_float, write_header};

/// The scheduler latency buckets of the Gateway API Inference Extension's `scheduler_e2e_duration_seconds`,
/// which llm-d's picker keeps under its own prefix.
const SCHEDULING_BOUNDS: [f64; 10] = [
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
];

/// What the picker counted since it started.
#[derive(Clone, Debug)]
pub struct PickerMetrics {
    scheduling: Buckets,
    placed: u64,
    failed: u64,
}

impl Default for PickerMetrics {
    fn default() -> Self {
        PickerMetrics {
            scheduling: Buckets::new(&SCHEDULING_BOUNDS),
            placed: 0,
            failed: 0,
        }
    }
}

impl PickerMetrics {
    /// One scheduling decision: how long it took, and whether it found a replica.
    pub fn observe_decision(&mut self, seconds: f64, placed: bool) {
        self.scheduling.observe(seconds);
        if placed {
            self.placed += 1;
        } else {
            self.failed += 1;
        }
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
        for (status, count) in [("failure", self.failed), ("success", self.placed)] {
            write!(
                out,
                "{name}{{namespace=\"\",pod_name=\"\",port=\"\",status=\"{status}\",target_model_name=\"{model}\"}} "
            )?;
            write_count(out, count)?;
            out.push('\n');
        }
        let name = "llm_d_epp_scheduler_e2e_duration_seconds";
        write_header(
            out,
            name,
            "[ALPHA] End-to-end scheduling latency distribution in seconds.",
            "histogram",
        )?;
        for (bound, cumulative) in self.scheduling.cumulative() {
            write!(out, "{name}_bucket{{le=\"")?;
            if bound.is_finite() {
                write_go_float(out, bound)?;
            } else {
                out.push_str("+Inf");
            }
            out.push_str("\"} ");
            write_count(out, cumulative)?;
            out.push('\n');
        }
        write!(out, "{name}_sum ")?;
        write_go_float(out, self.scheduling.sum())?;
        write!(out, "\n{name}_count ")?;
        write_count(out, self.scheduling.count())?;
        out.push('\n');
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_land_in_the_first_bucket_at_or_above_them_and_failures_apart() {
        let mut picker = PickerMetrics::default();
        for seconds in [0.00005, 0.0003, 0.04] {
            picker.observe_decision(seconds, true);
        }
        picker.observe_decision(0.2, false);
        let text = picker.render("pool", "m", 2);
        for line in [
            "llm_d_epp_scheduler_e2e_duration_seconds_bucket{le=\"0.0001\"} 1.0",
            "llm_d_epp_scheduler_e2e_duration_seconds_bucket{le=\"0.0005\"} 2.0",
            "llm_d_epp_scheduler_e2e_duration_seconds_bucket{le=\"0.05\"} 3.0",
            "llm_d_epp_scheduler_e2e_duration_seconds_bucket{le=\"0.1\"} 3.0",
            "llm_d_epp_scheduler_e2e_duration_seconds_bucket{le=\"+Inf\"} 4.0",
            "llm_d_epp_scheduler_e2e_duration_seconds_count 4.0",
            "status=\"failure\",target_model_name=\"m\"} 1.0",
            "status=\"success\",target_model_name=\"m\"} 3.0",
            "llm_d_epp_ready_endpoints{name=\"pool\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
