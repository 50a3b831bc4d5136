//! Reads what DCGM's diagnostic (`dcgmi diag`) printed, as JSON (`-j`, DCGM 3.x and 4.x) or as its table, so a
//! GPU that fails NVIDIA's own checks is named even when every nvidia-smi counter looks healthy.

use infer_doctor_core::{DiagOutcome, DiagTest};
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DiagReadError {
    #[error(
        "not `dcgmi diag` output: no \"DCGM GPU Diagnostic\" JSON nor a Diagnostic | Result table"
    )]
    NotDcgmDiag,
    #[error("line {line}, column {column}: not JSON: {reason}")]
    Json {
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("field {field}: {reason}")]
    Field { field: String, reason: String },
    #[error("line {line}: {reason}")]
    Row { line: usize, reason: String },
}

/// The JSON's root key: `DCGM GPU Diagnostic` up to DCGM 3.x, `DCGM Diagnostic` from 4.x.
const ROOT_KEYS: [&str; 2] = ["DCGM GPU Diagnostic", "DCGM Diagnostic"];

/// Every test's verdict per GPU in one `dcgmi diag` output, JSON or table, told apart by content.
pub fn read_dcgm_diag(text: &str) -> Result<Vec<DiagTest>, DiagReadError> {
    if ROOT_KEYS
        .iter()
        .any(|key| text.contains(&format!("\"{key}\"")))
    {
        return read_json(text);
    }
    read_table(text)
}

/// The words DCGM uses for a verdict, in either case (`PASS` in 3.x's JSON, `Pass` elsewhere).
fn outcome(status: &str) -> Option<DiagOutcome> {
    match status.trim().to_ascii_lowercase().as_str() {
        "pass" => Some(DiagOutcome::Pass),
        "fail" => Some(DiagOutcome::Fail),
        "warn" | "warning" => Some(DiagOutcome::Warn),
        "skip" | "skipped" | "not run" => Some(DiagOutcome::Skip),
        _ => None,
    }
}

fn read_json(text: &str) -> Result<Vec<DiagTest>, DiagReadError> {
    // dcgmi may print a line of its own before the document (DCGM's tests strip up to the first brace too).
    let start = text.find('{').unwrap_or(0);
    let doc: Value = serde_json::from_str(&text[start..]).map_err(|e| {
        let skipped_lines = text[..start].matches('\n').count();
        DiagReadError::Json {
            line: e.line() + skipped_lines,
            column: e.column(),
            reason: e.to_string(),
        }
    })?;
    let (key, root) = ROOT_KEYS
        .iter()
        .find_map(|key| doc.get(key).map(|root| (*key, root)))
        .ok_or(DiagReadError::NotDcgmDiag)?;
    let field = |path: &str, reason: &str| DiagReadError::Field {
        field: format!("{key}.{path}"),
        reason: reason.to_string(),
    };
    let categories = match root.get("test_categories") {
        Some(Value::Array(categories)) => categories,
        Some(_) => return Err(field("test_categories", "not a list")),
        None => {
            let why = root
                .get("runtime_error")
                .and_then(Value::as_str)
                .map_or("missing: the diagnostic ran no test".to_string(), |error| {
                    format!("missing: the diagnostic did not run ({error})")
                });
            return Err(field("test_categories", &why));
        }
    };
    let mut tests = Vec::new();
    for (c, category) in categories.iter().enumerate() {
        let Some(list) = category.get("tests").and_then(Value::as_array) else {
            return Err(field(&format!("test_categories[{c}].tests"), "not a list"));
        };
        // DCGM 3.x writes `null` between a category's tests.
        for (t, test) in list.iter().enumerate().filter(|(_, t)| !t.is_null()) {
            let at = format!("test_categories[{c}].tests[{t}]");
            let name = test
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| field(&format!("{at}.name"), "missing or not text"))?;
            let Some(results) = test.get("results").and_then(Value::as_array) else {
                return Err(field(&format!("{at}.results"), "missing or not a list"));
            };
            for (r, result) in results.iter().enumerate() {
                let at = format!("{at}.results[{r}]");
                let status = result.get("status").and_then(Value::as_str).unwrap_or("");
                let outcome = outcome(status).ok_or_else(|| {
                    field(
                        &format!("{at}.status"),
                        &format!("{status:?} is none of Pass, Fail, Warn, Skip"),
                    )
                })?;
                tests.push(DiagTest {
                    name: name.to_string(),
                    gpu: result_gpu(result),
                    outcome,
                    detail: result_detail(result),
                });
            }
        }
    }
    Ok(tests)
}

/// The GPU a result is about: 4.x names an entity (a GPU, or a CPU or switch, which is no GPU), 3.x a
/// `gpu_ids` number or string; a list of several (`"0,1,2"`) is the verdict for all of them.
fn result_gpu(result: &Value) -> Option<u32> {
    if let Some(id) = result.get("entity_id").and_then(Value::as_u64) {
        let group = result.get("entity_group").and_then(Value::as_str);
        return group
            .is_none_or(|g| g.eq_ignore_ascii_case("gpu"))
            .then_some(id as u32);
    }
    match result.get("gpu_ids")? {
        Value::Number(n) => n.as_u64().map(|id| id as u32),
        Value::String(ids) => ids.trim().parse().ok(),
        _ => None,
    }
}

/// DCGM's warnings (text, or `{"warning": text}` objects) and info lines, joined.
fn result_detail(result: &Value) -> Option<String> {
    let mut said = Vec::new();
    for key in ["warnings", "info"] {
        let items = match result.get(key) {
            Some(Value::Array(items)) => items.clone(),
            Some(one) => vec![one.clone()],
            None => continue,
        };
        for item in items {
            let text = match &item {
                Value::String(text) => Some(text.as_str()),
                other => other.get("warning").and_then(Value::as_str),
            };
            said.extend(
                text.map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from),
            );
        }
    }
    (!said.is_empty()).then(|| said.join("; "))
}

/// The table `dcgmi diag` prints without `-j`: `| Memory | Fail - GPU: 0 |` rows under `|----- Hardware ---|`
/// section rules, a `| Warning: GPU 0 | … |` row after a result that did not pass.
fn read_table(text: &str) -> Result<Vec<DiagTest>, DiagReadError> {
    let is_header = |line: &str| {
        let cells = cells(line);
        cells.len() == 2 && cells[0] == "Diagnostic" && cells[1] == "Result"
    };
    let Some(header_at) = text.lines().position(is_header) else {
        return Err(DiagReadError::NotDcgmDiag);
    };
    let mut tests: Vec<DiagTest> = Vec::new();
    let mut in_metadata = false;
    // Where the latest test's results begin in `tests`, and its name, for its further rows.
    let mut current: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate().skip(header_at + 1) {
        let line_no = index + 1;
        let trimmed = line.trim();
        if trimmed.starts_with("|-") || trimmed.starts_with("+-") {
            // A section rule (`|-----  Metadata  ----+---|`) or a border.
            let words = trimmed.trim_matches(|c| "|+-= ".contains(c));
            if let Some(section) = words
                .split(['-', '+', '|'])
                .map(str::trim)
                .find(|w| !w.is_empty())
            {
                in_metadata = section.eq_ignore_ascii_case("metadata");
            }
            continue;
        }
        let cells = cells(line);
        if in_metadata || cells.len() != 2 {
            continue;
        }
        let (label, result) = (cells[0], cells[1]);
        let said = label
            .strip_prefix("Warning")
            .or_else(|| label.strip_prefix("Info"));
        if let Some(about) = said {
            let gpu = gpus_named(about).into_iter().next();
            add_detail(&mut tests, current.as_ref().map(|c| c.0), gpu, result);
            continue;
        }
        let verdict = result.split(" - ").next().and_then(outcome);
        match (label.is_empty(), verdict) {
            (false, Some(verdict)) => {
                current = Some((tests.len(), label.to_string()));
                push_results(&mut tests, label, verdict, result);
            }
            (true, Some(verdict)) => {
                let Some((_, name)) = &current else {
                    return Err(DiagReadError::Row {
                        line: line_no,
                        reason: "a result before any test's name".to_string(),
                    });
                };
                push_results(&mut tests, &name.clone(), verdict, result);
            }
            // A warning's words wrapped onto the next row.
            (true, None) => add_detail(&mut tests, current.as_ref().map(|c| c.0), None, result),
            (false, None) => {
                return Err(DiagReadError::Row {
                    line: line_no,
                    reason: format!("{label}: {result:?} is none of Pass, Fail, Warn, Skip"),
                });
            }
        }
    }
    if tests.is_empty() {
        return Err(DiagReadError::NotDcgmDiag);
    }
    Ok(tests)
}

/// A table row's cells, trimmed, without the outer borders.
fn cells(line: &str) -> Vec<&str> {
    let line = line.trim();
    let Some(inner) = line.strip_prefix('|').and_then(|l| l.strip_suffix('|')) else {
        return Vec::new();
    };
    inner.split('|').map(str::trim).collect()
}

/// The GPUs a cell names (`GPU: 0, 1`, `GPUs: 2`, `GPU 3`); none for `All` or no GPU at all.
fn gpus_named(text: &str) -> Vec<u32> {
    let Some(at) = text.find("GPU") else {
        return Vec::new();
    };
    text[at + 3..]
        .trim_start_matches(['s', ':'])
        .split(',')
        .map_while(|word| word.trim().parse().ok())
        .collect()
}

/// One result per GPU the cell names (`Fail - GPU: 0, 1`), else one for all of them (`Pass`, `Pass - All`).
fn push_results(tests: &mut Vec<DiagTest>, name: &str, verdict: DiagOutcome, result: &str) {
    let gpus = gpus_named(result);
    let one = |gpu| DiagTest {
        name: name.to_string(),
        gpu,
        outcome: verdict,
        detail: None,
    };
    if gpus.is_empty() {
        tests.push(one(None));
    } else {
        tests.extend(gpus.into_iter().map(|gpu| one(Some(gpu))));
    }
}

/// Files a warning's words with the current test's results that did not pass: the named GPU's, else all.
fn add_detail(tests: &mut [DiagTest], from: Option<usize>, gpu: Option<u32>, words: &str) {
    let Some(from) = from else { return };
    if words.is_empty() {
        return;
    }
    let unpassed = |t: &&mut DiagTest| t.outcome != DiagOutcome::Pass;
    for test in tests[from..].iter_mut().filter(unpassed) {
        if gpu.is_some() && test.gpu.is_some() && test.gpu != gpu {
            continue;
        }
        test.detail = Some(match test.detail.take() {
            Some(before) => format!("{before} {words}"),
            None => words.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/../../fixtures/gpu/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn failing(tests: &[DiagTest]) -> Vec<(String, Option<u32>)> {
        tests
            .iter()
            .filter(|t| t.outcome == DiagOutcome::Fail)
            .map(|t| (t.name.clone(), t.gpu))
            .collect()
    }

    #[test]
    fn dcgm_3_json_with_its_nulls_and_csv_gpu_ids_reads() {
        let tests = read_dcgm_diag(&fixture("dcgmi_diag_r1_3x_pass.json")).unwrap();
        assert!(tests.iter().all(|t| t.outcome == DiagOutcome::Pass));
        let denylist = tests.iter().find(|t| t.name == "Denylist").unwrap();
        assert_eq!(denylist.gpu, None, "a CSV of GPUs is the verdict for all");
        assert!(
            tests
                .iter()
                .any(|t| t.name == "software" && t.gpu == Some(7))
        );
    }

    #[test]
    fn dcgm_4_json_names_the_failing_gpu_and_its_warning() {
        let tests = read_dcgm_diag(&fixture("dcgmi_diag_r1_4x_fail.json")).unwrap();
        assert_eq!(
            failing(&tests),
            [("pcie".to_string(), Some(1))],
            "{tests:#?}"
        );
        let pcie = tests
            .iter()
            .find(|t| t.outcome == DiagOutcome::Fail)
            .unwrap();
        assert!(
            pcie.detail.as_deref().unwrap().contains("replay"),
            "{pcie:?}"
        );
        assert!(tests.iter().any(|t| t.outcome == DiagOutcome::Skip));
    }

    #[test]
    fn the_table_reads_per_gpu_results_and_warnings() {
        let tests = read_dcgm_diag(&fixture("dcgmi_diag_r1_table_fail.txt")).unwrap();
        assert_eq!(failing(&tests), [("GPU Memory".to_string(), Some(2))]);
        let memory = tests
            .iter()
            .find(|t| t.outcome == DiagOutcome::Fail)
            .unwrap();
        assert!(
            memory.detail.as_deref().unwrap().contains("uncorrectable"),
            "{memory:?}"
        );
        assert!(
            !tests.iter().any(|t| t.name.contains("Version")),
            "metadata is no test"
        );
    }

    #[test]
    fn unreadable_input_names_the_field_or_line() {
        let bad_status = r#"{"DCGM Diagnostic": {"test_categories": [{"category": "Hardware",
            "tests": [{"name": "memory", "results": [{"entity_id": 0, "status": "Maybe"}]}]}]}}"#;
        let e = read_dcgm_diag(bad_status).unwrap_err();
        assert!(
            e.to_string()
                .contains("DCGM Diagnostic.test_categories[0].tests[0].results[0].status"),
            "{e}"
        );
        let cut = "{\"DCGM GPU Diagnostic\": {\"test_categories\": [\n";
        assert!(matches!(
            read_dcgm_diag(cut),
            Err(DiagReadError::Json { line: 2, .. })
        ));
        let ran_nothing = r#"{"DCGM Diagnostic": {"runtime_error": "no GPU found"}}"#;
        assert!(
            read_dcgm_diag(ran_nothing)
                .unwrap_err()
                .to_string()
                .contains("no GPU found")
        );
        let table = "| Diagnostic | Result |\n| Memory | Perhaps |\n";
        assert_eq!(
            read_dcgm_diag(table),
            Err(DiagReadError::Row {
                line: 2,
                reason: "Memory: \"Perhaps\" is none of Pass, Fail, Warn, Skip".to_string()
            })
        );
        assert_eq!(read_dcgm_diag("GPU 0: up"), Err(DiagReadError::NotDcgmDiag));
    }
}
