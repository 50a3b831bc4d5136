//! Folds a multi-line error (vLLM's per-line `ERROR ... [core.py:NNN]` records, a bare Python traceback, an
//! exception group) into one event, so an out-of-memory crash reads as one problem with its message.

use super::events::EventKind;
use super::prefix::{Level, LinePrefix};

/// How many exception lines a block keeps: chained tracebacks rarely have more.
const MAX_EXCEPTION_LINES: usize = 8;

/// An error record still collecting its lines.
#[derive(Clone, Debug)]
pub(super) struct OpenBlock {
    pub process: Option<String>,
    pub pid: Option<u32>,
    /// vLLM's `file.py:123`: lines of the same record repeat it.
    site: Option<String>,
    pub first_line: u64,
    pub headline: String,
    /// Exception lines with their line numbers.
    exception_lines: Vec<(u64, String)>,
    out_of_memory: Option<(u64, String)>,
    pub lines: u64,
}

/// Unlevelled lines that are errors by their words alone: llama.cpp and ggml print these straight to stderr.
const ERROR_MARKERS: [&str; 4] = [
    "GGML_ASSERT",
    "failed to allocate",
    "CUDA error",
    "Fatal Python error",
];

/// Words of a memory allocation that failed, in PyTorch's, CUDA's and ggml's phrasing.
fn is_out_of_memory(text: &str) -> bool {
    text.contains("OutOfMemoryError")
        || text.contains("out of memory")
        || text.to_ascii_lowercase().contains("failed to allocate")
}

impl OpenBlock {
    /// A block opens on an error-level line, a `Traceback` line, a bare `SomeError: ...` line, or an unlevelled
    /// line that names an error (`GGML_ASSERT(...) failed`, `failed to allocate`).
    pub(super) fn start(prefix: &LinePrefix<'_>, line_number: u64) -> Option<OpenBlock> {
        let message = prefix.message.trim_end();
        let opens = match prefix.level {
            Some(level) => level >= Level::Error,
            None => {
                message.contains("Traceback (most recent call last)")
                    || is_exception_line(message)
                    || ERROR_MARKERS.iter().any(|marker| message.contains(marker))
            }
        };
        if !opens {
            return None;
        }
        let mut block = OpenBlock {
            process: prefix.process.map(str::to_string),
            pid: prefix.pid,
            site: prefix.site.map(str::to_string),
            first_line: line_number,
            headline: message.to_string(),
            exception_lines: Vec::new(),
            out_of_memory: None,
            lines: 0,
        };
        block.add(message, line_number);
        Some(block)
    }

    /// Whether the line belongs to this block's process.
    pub(super) fn is_same_process(&self, prefix: &LinePrefix<'_>) -> bool {
        self.process.as_deref() == prefix.process && self.pid == prefix.pid
    }

    /// Takes the line if it continues the record: an error line from the same source site, or an unlevelled
    /// line that reads like part of a traceback.
    pub(super) fn try_extend(&mut self, prefix: &LinePrefix<'_>, line_number: u64) -> bool {
        let continues = match prefix.level {
            Some(level) => {
                level >= Level::Error && self.site.is_some() && self.site.as_deref() == prefix.site
            }
            None => is_traceback_text(prefix.message),
        };
        if continues {
            self.add(prefix.message.trim_end(), line_number);
        }
        continues
    }

    fn add(&mut self, message: &str, line_number: u64) {
        self.lines += 1;
        let text = message.trim_start();
        if self.out_of_memory.is_none() && is_out_of_memory(text) {
            self.out_of_memory = Some((line_number, text.to_string()));
        }
        if is_exception_line(text) {
            if self.exception_lines.len() == MAX_EXCEPTION_LINES {
                self.exception_lines.remove(0);
            }
            self.exception_lines.push((line_number, text.to_string()));
        }
    }

    pub(super) fn into_event(self) -> EventKind {
        let headline = self.headline;
        let lines = self.lines;
        match self.out_of_memory {
            Some((message_line, message)) => EventKind::OutOfMemory {
                message,
                message_line,
                headline,
                lines,
            },
            None => {
                let (message_line, message) = self
                    .exception_lines
                    .last()
                    .cloned()
                    .unwrap_or_else(|| (self.first_line, headline.clone()));
                EventKind::Error {
                    message,
                    message_line,
                    headline,
                    lines,
                }
            }
        }
    }
}

/// A line inside a Python traceback: indented frames and code, caret lines, the chaining sentences, blank
/// separators, exception-group bars, and the exception lines themselves.
fn is_traceback_text(message: &str) -> bool {
    message.trim().is_empty()
        || message.starts_with([' ', '\t', '^', '~', '|', '+'])
        || message.starts_with("Traceback (most recent call last)")
        || message.starts_with("During handling of the above exception")
        || message.starts_with("The above exception was the direct cause")
        || is_exception_line(message)
}

/// `torch.OutOfMemoryError: CUDA out of memory. ...`, `StopIteration`, `ValueError: ...`: a dotted name ending
/// like an exception class, alone or before `: `.
fn is_exception_line(message: &str) -> bool {
    let name = message
        .split_once(':')
        .map_or(message, |(name, _)| name)
        .trim_end();
    let class = name.rsplit('.').next().unwrap_or(name);
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && class.starts_with(|c: char| c.is_ascii_uppercase())
        && [
            "Error",
            "Exception",
            "Exit",
            "Interrupt",
            "Iteration",
            "Failure",
            "Fault",
        ]
        .iter()
        .any(|suffix| class.len() > suffix.len() && class.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_lines() {
        for line in [
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 786.00 MiB.",
            "StopIteration",
            "importlib.metadata.PackageNotFoundError: No package metadata was found for vllm",
            "ValueError: No available memory for the cache blocks.",
            "KeyboardInterrupt",
        ] {
            assert!(is_exception_line(line), "{line}");
        }
        for line in [
            "Warning: NUMA binding",
            "AsyncLLM output_handler failed.",
            "Error",
            "",
            "error: lowercase is not a class",
            "Traceback (most recent call last):",
        ] {
            assert!(!is_exception_line(line), "{line}");
        }
    }
}
