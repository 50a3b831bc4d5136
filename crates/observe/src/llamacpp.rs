//! llama.cpp's capacity, which its `/metrics` does not carry: `/props` (slots, context per slot) and `/slots`
//! (which slots are busy, what each holds), read into canonical signals.

use infer_doctor_core::signals::GaugeStats;
use infer_doctor_core::{ServerReadings, Signal};
use serde_json::Value;

/// What `/props` and `/slots` say about how much the server can hold.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SlotCapacity {
    pub slots: u64,
    /// Tokens of context each slot holds (`n_ctx` per slot).
    pub context_per_slot: u64,
    /// Slots processing a request when `/slots` was read, if it was.
    pub busy: Option<u64>,
}

impl SlotCapacity {
    /// The KV cache as tokens: every slot's context.
    pub fn kv_tokens(&self) -> u64 {
        self.slots * self.context_per_slot
    }
}

/// Reads `/props` (`total_slots`, `default_generation_settings.n_ctx`) and, if given, `/slots` (per-slot
/// `n_ctx` and `is_processing`, which wins where both are known); `None` when neither gives the numbers.
pub fn capacity(props: Option<&Value>, slots: Option<&Value>) -> Option<SlotCapacity> {
    let listed = slots.and_then(Value::as_array);
    let from_props = props.and_then(|p| {
        Some((
            p["total_slots"].as_u64()?,
            p["default_generation_settings"]["n_ctx"].as_u64()?,
        ))
    });
    let from_slots = listed.and_then(|list| {
        let per_slot = list.first()?["n_ctx"].as_u64()?;
        Some((list.len() as u64, per_slot))
    });
    let (slots_count, context_per_slot) = from_slots.or(from_props)?;
    let busy = listed.map(|list| {
        list.iter()
            .filter(|s| s["is_processing"].as_bool() == Some(true))
            .count() as u64
    });
    Some(SlotCapacity {
        slots: slots_count,
        context_per_slot,
        busy,
    })
}

/// The capacity as canonical signals: the KV tokens all slots hold, and how many requests run at once.
fn signals(capacity: &SlotCapacity) -> [(Signal, f64); 2] {
    [
        (Signal::KvCapacityTokens, capacity.kv_tokens() as f64),
        (Signal::MaxRunning, capacity.slots as f64),
    ]
}

/// Adds the capacity to one scrape's readings (llama.cpp's metrics lack it).
pub fn add_to(readings: &mut ServerReadings, capacity: &SlotCapacity) {
    for (signal, value) in signals(capacity) {
        readings
            .readings
            .insert(signal, infer_doctor_core::Reading::Value(value));
    }
}

/// The same as a window's gauges, for summaries already made.
pub fn gauges(capacity: &SlotCapacity) -> impl Iterator<Item = (Signal, GaugeStats)> {
    signals(capacity)
        .into_iter()
        .map(|(signal, v)| (signal, GaugeStats::constant(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../../fixtures/llamacpp/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn real_props_and_slots_give_the_servers_capacity() {
        let props = fixture("props.json");
        let during = fixture("slots_during_load.json");
        let c = capacity(Some(&props), Some(&during)).unwrap();
        assert_eq!((c.slots, c.context_per_slot, c.busy), (4, 1024, Some(4)));
        assert_eq!(c.kv_tokens(), 4096);
        let idle = capacity(Some(&props), Some(&fixture("slots_idle.json"))).unwrap();
        assert_eq!(idle.busy, Some(0));
        let props_only = capacity(Some(&props), None).unwrap();
        assert_eq!((props_only.kv_tokens(), props_only.busy), (4096, None));
        // `/slots` disabled answers an error object, not a list.
        let disabled = serde_json::json!({"error": {"code": 501, "message": "This server does not support slots endpoint."}});
        assert_eq!(capacity(Some(&props), Some(&disabled)).unwrap().busy, None);
        assert_eq!(capacity(None, Some(&disabled)), None);
    }
}
