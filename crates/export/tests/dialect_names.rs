//! Every metric a dashboard or rule file asks for is one its dialect's table in `observe` knows (or a recording
//! rule the file defines itself): a name typed by hand, or another server's, fails here. The names are read back
//! out of the generated PromQL, so the check sees exactly what Grafana and Prometheus will.

use std::collections::BTreeSet;
use std::time::Duration;

use infer_doctor_diagnose::Thresholds;
use infer_doctor_export::{Target, alerts, grafana};
use infer_doctor_observe::dialect::{Dialect, Source, mapping};

/// Words of PromQL that are not metric names when they stand outside braces and brackets.
const KEYWORDS: [&str; 6] = ["and", "or", "unless", "offset", "bool", "ignoring"];

/// The metric names in a PromQL expression: identifiers outside label matchers, ranges and grouping lists that
/// are not function calls, keywords or numbers.
fn metric_names(promql: &str) -> BTreeSet<String> {
    let chars: Vec<char> = promql.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |from: usize, close: char| {
        chars[from..]
            .iter()
            .position(|c| *c == close)
            .map_or(chars.len(), |p| from + p + 1)
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c == '"' {
            // A string literal (label_replace's arguments): text, never a name.
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_digit() {
            // A number or a duration (`7d`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let rest: String = chars[i..].iter().collect();
            let rest = rest.trim_start();
            // A call, or an aggregation with its grouping (`sum by (pod) (…)`).
            let applied =
                rest.starts_with('(') || rest.starts_with("by ") || rest.starts_with("by(");
            if word == "by" || word == "on" {
                i = skip_to(i, ')');
            } else if !applied && !KEYWORDS.contains(&word.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every name a dialect's table lists, with the series names Prometheus stores for a histogram.
fn known_names(dialect: Dialect) -> BTreeSet<String> {
    let mut known = BTreeSet::new();
    for (_, source) in mapping(dialect) {
        let names: Vec<&str> = match *source {
            Source::Family(names) => names.to_vec(),
            Source::HistogramMs(name) | Source::Labeled(name, ..) | Source::ByLabel(name, _) => {
                vec![name]
            }
            Source::InfoProduct(name, ..) | Source::InfoLabel(name, _) => vec![name],
            Source::BlocksTimesSize(blocks, size) => vec![blocks, size],
            Source::LabeledBlocksTimesSize(name, ..) => vec![name],
        };
        for name in names {
            for suffix in ["", "_bucket", "_sum", "_count"] {
                known.insert(format!("{name}{suffix}"));
            }
        }
    }
    known
}

/// The value of each `key: "…"` line of a rule file.
fn yaml_values<'a>(yaml: &'a str, key: &'a str) -> impl Iterator<Item = String> + 'a {
    yaml.lines().filter_map(move |line| {
        let quoted = line
            .trim_start()
            .trim_start_matches("- ")
            .strip_prefix(key)?;
        Some(serde_json::from_str::<String>(quoted).expect("a quoted YAML string"))
    })
}

#[test]
fn the_metric_reader_finds_names_and_only_names() {
    let promql = "histogram_quantile(0.95, sum by (pod, le) (rate(vllm:a_bucket{x=\"y:z\"}[5m]))) * 0.001 > 2 \
                  and on (pod) (sum (b_total) or c:rec offset 7d) / avg(max_over_time(d[1m])) \
                  + label_replace(e, \"job\", \"a \\\"quoted\\\" llm\", \"\", \"\")";
    let names: Vec<String> = metric_names(promql).into_iter().collect();
    assert_eq!(names, ["b_total", "c:rec", "d", "e", "vllm:a_bucket"]);
}

#[test]
fn every_dialects_queries_name_only_metrics_its_table_knows() {
    for dialect in Dialect::ALL.into_iter().filter(|d| *d != Dialect::Dcgm) {
        let target =
            Target::new(dialect, "{job=\"llm\"}", "pod", Duration::from_secs(300)).unwrap();
        let known = known_names(dialect);
        let dashboard = grafana::dashboard(&target);
        let panel_queries: Vec<String> = dashboard.json["panels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
            .map(|t| t["expr"].as_str().unwrap().to_string())
            .collect();
        assert!(!panel_queries.is_empty(), "{dialect:?}: no query");
        let rules = alerts::rule_file(&target, &Thresholds::default(), Duration::from_secs(60));
        let recorded: BTreeSet<String> = yaml_values(&rules.yaml, "record: ").collect();
        for promql in panel_queries
            .iter()
            .cloned()
            .chain(yaml_values(&rules.yaml, "expr: "))
        {
            let names = metric_names(&promql);
            assert!(!names.is_empty(), "{dialect:?}: no metric in {promql}");
            let unknown: Vec<&String> = names
                .iter()
                .filter(|n| !known.contains(*n) && !recorded.contains(*n))
                .collect();
            assert!(unknown.is_empty(), "{dialect:?}: {unknown:?} in {promql}");
        }
    }
}
