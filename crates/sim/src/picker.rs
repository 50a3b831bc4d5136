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

/// What the picker counted since it started.
#[derive(Clone, Debug)]
pub struct PickerMetrics {
    scheduling: Buckets,
    /// Attempts that found an endpoint, by the endpoint's name.
    placed: BTreeMap<String, u64>,
    failed: u64,
}

impl Default for PickerMetrics {
    fn default() -> Self {
        PickerMetrics {
            scheduling: Buckets::new(&SCHEDULING_BOUNDS),
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
            writeln!(out, "\"}} {cumulative}")?;
        }
        write!(out, "{name}_sum ")?;
        write_go_float(out, self.scheduling.sum())?;
        writeln!(out, "\n{name}_count {}", self.scheduling.count())?;
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
    }
}
