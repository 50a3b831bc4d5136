//! llama.cpp `llama-server` log messages: slot capacity at start-up, the listening address, and the per-request
//! `print_timing` block (three lines a request). Formats: the fixtures in `fixtures/llamacpp/*.log`.

use super::events::{EventKind, RequestTiming};
use super::scan::{leading_f64, leading_u64, u64_after};

/// What one llama.cpp message says.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum LlamaMessage {
    Event(EventKind),
    /// One line of a request's timing block; the parser joins the lines of one slot and task.
    Timing {
        slot: Option<u64>,
        task: Option<u64>,
        part: TimingPart,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum TimingPart {
    Prompt { ms: f64, tokens: Option<u64> },
    Generation { ms: f64, tokens: Option<u64> },
    Total { ms: f64, tokens: Option<u64> },
}

impl TimingPart {
    /// Adds this line's numbers to a request's timings.
    pub(super) fn apply(self, timing: &mut RequestTiming) {
        match self {
            TimingPart::Prompt { ms, tokens } => {
                timing.prompt_ms = Some(ms);
                timing.prompt_tokens = tokens;
            }
            TimingPart::Generation { ms, tokens } => {
                timing.generation_ms = Some(ms);
                timing.generated_tokens = tokens;
            }
            TimingPart::Total { ms, tokens } => {
                timing.total_ms = Some(ms);
                timing.total_tokens = tokens;
            }
        }
    }
}

pub(super) fn parse(message: &str) -> Option<LlamaMessage> {
    if let Some(part) = timing_part(message) {
        return Some(LlamaMessage::Timing {
            slot: u64_after(message, ": id "),
            task: u64_after(message, "| task "),
            part,
        });
    }
    let event = if message.contains("n_slots = ") || message.contains("n_ctx_slot = ") {
        EventKind::SlotCapacity {
            slots: u64_after(message, "n_slots = "),
            context_per_slot: u64_after(message, "n_ctx_slot = "),
        }
    } else if let Some(tokens) = context_size(message) {
        EventKind::ContextSize { tokens }
    } else if let Some((_, address)) = message.split_once("listening on ") {
        EventKind::ServerStarted {
            address: address.split_whitespace().next()?.to_string(),
        }
    } else if let Some((_, rest)) = message.split_once("HTTP server is listening, hostname: ") {
        // Mid-2025 builds: `main: HTTP server is listening, hostname: 127.0.0.1, port: 8080, http threads: 7`.
        let (host, _) = rest.split_once(',')?;
        EventKind::ServerStarted {
            address: format!("{host}:{}", u64_after(rest, "port: ")?),
        }
    } else {
        return None;
    };
    Some(LlamaMessage::Event(event))
}

/// `prompt eval time =    1437.34 ms /     3 tokens (...)`, `       eval time = ...`, `      total time = ...`.
fn timing_part(message: &str) -> Option<TimingPart> {
    let (label, numbers) = if let Some(at) = message.find("prompt eval time =") {
        ("prompt", &message[at + "prompt eval time =".len()..])
    } else if let Some(at) = message.find("eval time =") {
        ("eval", &message[at + "eval time =".len()..])
    } else if let Some(at) = message.find("total time =") {
        ("total", &message[at + "total time =".len()..])
    } else {
        return None;
    };
    let ms = leading_f64(numbers)?;
    let tokens = numbers
        .split_once("ms /")
        .and_then(|(_, count)| leading_u64(count));
    Some(match label {
        "prompt" => TimingPart::Prompt { ms, tokens },
        "eval" => TimingPart::Generation { ms, tokens },
        _ => TimingPart::Total { ms, tokens },
    })
}

/// `llama_context: n_ctx         = 4096` (older: `llama_new_context_with_model:`, `llama_init_from_model:`); the
/// other `n_ctx_*` keys are per sequence or from training.
fn context_size(message: &str) -> Option<u64> {
    let (_, rest) = message.split_once("n_ctx ")?;
    let is_context_line = [
        "llama_context:",
        "llama_new_context_with_model:",
        "llama_init_from_model:",
    ]
    .iter()
    .any(|head| message.starts_with(head));
    let value = rest.trim_start().strip_prefix('=')?;
    if is_context_line {
        leading_u64(value)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_block_lines_from_the_gemma_fixture() {
        let prompt = "slot print_timing: id  3 | task 0 | prompt eval time =    1437.34 ms /     3 tokens (  479.11 ms per token,     2.09 tokens per second)";
        assert_eq!(
            parse(prompt),
            Some(LlamaMessage::Timing {
                slot: Some(3),
                task: Some(0),
                part: TimingPart::Prompt {
                    ms: 1437.34,
                    tokens: Some(3)
                }
            })
        );
        assert_eq!(
            parse(
                "slot print_timing: id  3 | task 0 |        eval time =   14360.25 ms /    30 tokens (  495.18 ms per token,     2.02 tokens per second)"
            ),
            Some(LlamaMessage::Timing {
                slot: Some(3),
                task: Some(0),
                part: TimingPart::Generation {
                    ms: 14_360.25,
                    tokens: Some(30)
                }
            })
        );
        assert_eq!(
            parse(
                "slot print_timing: id  3 | task 0 |       total time =   15797.59 ms /    33 tokens"
            ),
            Some(LlamaMessage::Timing {
                slot: Some(3),
                task: Some(0),
                part: TimingPart::Total {
                    ms: 15_797.59,
                    tokens: Some(33)
                }
            })
        );
        // Older builds print the block without slot or task.
        assert_eq!(
            parse(
                "print_timings: prompt eval time =      41.07 ms /    12 tokens (    3.42 ms per token,   292.18 tokens per second)"
            ),
            Some(LlamaMessage::Timing {
                slot: None,
                task: None,
                part: TimingPart::Prompt {
                    ms: 41.07,
                    tokens: Some(12)
                }
            })
        );
    }

    #[test]
    fn startup_lines() {
        assert_eq!(
            parse(
                "srv    load_model: initializing, n_slots = 4, n_ctx_slot = 1024, kv_unified = 'false'"
            ),
            Some(LlamaMessage::Event(EventKind::SlotCapacity {
                slots: Some(4),
                context_per_slot: Some(1024)
            }))
        );
        assert_eq!(
            parse("srv  llama_server: listening on http://127.0.0.1:8084"),
            Some(LlamaMessage::Event(EventKind::ServerStarted {
                address: "http://127.0.0.1:8084".into()
            }))
        );
        assert_eq!(
            parse(
                "main: HTTP server is listening, hostname: 127.0.0.1, port: 8080, http threads: 7"
            ),
            Some(LlamaMessage::Event(EventKind::ServerStarted {
                address: "127.0.0.1:8080".into()
            }))
        );
        assert_eq!(
            parse("llama_context: n_ctx         = 4096"),
            Some(LlamaMessage::Event(EventKind::ContextSize { tokens: 4096 }))
        );
        assert_eq!(parse("llama_context: n_ctx_per_seq = 1024"), None);
        assert_eq!(parse("print_info: n_ctx_train      = 131072"), None);
        assert_eq!(
            parse(
                "slot print_timing: id  0 | task 523 | n_gen =    114, tg =  37.63 t/s, tg_3s =  37.96 t/s"
            ),
            None
        );
        assert_eq!(parse("prompt eval time = soon"), None);
    }
}
