//! Every rule's `source` names references a user can open (vLLM docs and code, llm-d rules, an issue), never a
//! note of the project's private design folder; read from the crate's own source so that no rule is missed.

mod support;

use std::fs;
use std::path::Path;

use support::source_problem;

/// Every `Rule` constant in the crate's source, as (id, source) with the string literals' escapes undone.
fn rules_in_source() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut rules = Vec::new();
    for entry in fs::read_dir(&dir).expect("the crate's src folder") {
        let path = entry.expect("a src entry").path();
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("a readable source file");
        for rest in text.split(": Rule = Rule {").skip(1) {
            let block = &rest[..rest
                .find("\n};")
                .unwrap_or_else(|| panic!("{}: a Rule without its closing `}};`", path.display()))];
            let id = string_field(block, "id")
                .unwrap_or_else(|| panic!("{}: a Rule without a literal id", path.display()));
            let source = string_field(block, "source")
                .unwrap_or_else(|| panic!("{}: rule {id} has no literal source", path.display()));
            rules.push((id, source));
        }
    }
    rules
}

/// The string literal of the field `name` in a `Rule { … }` block, as the compiled string reads.
fn string_field(block: &str, name: &str) -> Option<String> {
    let opening = format!("\n    {name}: \"");
    let start = block.find(&opening)? + opening.len();
    let mut chars = block[start..].chars();
    let mut value = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                // A line continuation drops the newline and the next line's indentation.
                '\n' => chars = chars.as_str().trim_start().chars(),
                'n' => value.push('\n'),
                escaped => value.push(escaped),
            },
            c => value.push(c),
        }
    }
    None
}

#[test]
fn every_rule_cites_public_references_not_design_notes() {
    let rules = rules_in_source();
    assert!(!rules.is_empty(), "no Rule found under src/");
    let problems: Vec<String> = rules
        .iter()
        .filter_map(|(id, source)| {
            source_problem(source).map(|problem| format!("{id}: its source {problem}: {source}"))
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_source_check_refuses_design_notes_and_sources_without_a_public_reference() {
    let refused = [
        "sim_capacity.md §D D16 (llm-d alerting: hit rate < 0.30 for 15 m)",
        "DESIGN.md §6 client.bound",
        "the gpu_trace notes, C8",
        "vLLM v1 scheduler",
        "vllm/v1 scheduler",
    ];
    for source in refused {
        assert!(source_problem(source).is_some(), "accepted {source:?}");
    }
    let accepted = [
        "llm-d/llm-d: docs/monitoring/prometheus-alerting-rules.yaml (LLMDLowPrefixCacheHitRate)",
        "vllm-project/vllm#54101 (coordinated omission)",
        "https://docs.vllm.ai/en/stable/configuration/optimization/ (Preemption)",
    ];
    for source in accepted {
        assert_eq!(source_problem(source), None, "{source}");
    }
}
