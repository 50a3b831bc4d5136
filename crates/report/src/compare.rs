//! `compare`'s output: the figures side by side in the terminal, a Markdown comment for a pull request, and
//! JUnit XML so a CI system shows each gate as a test.

use std::fmt::Write;

use infer_doctor_core::comparison::{ChangeUnit, Comparison, FigureChange, Verdict};

use crate::table::Table;

/// What the two runs are called in the output (a directory, a history id, a baseline's name).
#[derive(Clone, Debug)]
pub struct Labels {
    pub baseline: String,
    pub compared: String,
}

fn number(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "—".into(),
        Some(v) if unit == "%" => format!("{v:.2}%"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn signed(v: f64, unit: ChangeUnit) -> String {
    match unit {
        ChangeUnit::Relative => format!("{:+.1}%", v * 100.0),
        ChangeUnit::Points => format!("{v:+.2} pp"),
    }
}

fn change_text(c: &FigureChange) -> String {
    c.change
        .map_or_else(|| "—".into(), |v| signed(v, c.change_unit))
}

fn interval_text(c: &FigureChange) -> String {
    match c.interval {
        Some(ci) => format!(
            "{} … {}",
            signed(ci.low, c.change_unit),
            signed(ci.high, c.change_unit)
        ),
        None => "—".into(),
    }
}

/// The figures as rows: name, baseline, compared, change, interval, verdict.
pub fn table(c: &Comparison, labels: &Labels) -> Table {
    Table {
        caption: format!("{} → {}", labels.baseline, labels.compared),
        header: [
            "figure", "baseline", "compared", "change", "95% CI", "verdict",
        ]
        .map(String::from)
        .to_vec(),
        rows: c
            .figures
            .iter()
            .filter(|f| f.baseline.is_some() || f.candidate.is_some())
            .map(|f| {
                vec![
                    format!("{} ({})", f.label, f.unit),
                    number(f.baseline, f.unit),
                    number(f.candidate, f.unit),
                    change_text(f),
                    interval_text(f),
                    f.verdict.to_string(),
                ]
            })
            .collect(),
    }
}

/// One line per figure that really moved, with the server-side reason: "TPOT p95 +18% (CI +12% … +24%): twice
/// the batch size (8.0 → 16.1), KV usage 40% → 85%".
pub fn headlines(c: &Comparison) -> Vec<String> {
    let reason = c.server_reason();
    c.figures
        .iter()
        .filter(|f| matches!(f.verdict, Verdict::Better | Verdict::Worse))
        .map(|f| {
            let mut line = format!(
                "{} {} {} (CI {})",
                f.verdict,
                f.label,
                change_text(f),
                interval_text(f)
            );
            if let Some(reason) = &reason {
                let _ = write!(line, ": {reason}");
            }
            line
        })
        .collect()
}

/// What the notes under the table say: why figures have no interval, the server side, the gates.
fn notes(c: &Comparison) -> Vec<String> {
    let mut notes = Vec::new();
    let mut seen = Vec::new();
    for f in &c.figures {
        if let Some(note) = &f.note
            && (f.baseline.is_some() || f.candidate.is_some())
            && !seen.contains(&note)
        {
            seen.push(note);
            let same: Vec<&str> = c
                .figures
                .iter()
                .filter(|g| g.note.as_ref() == Some(note))
                .map(|g| g.name)
                .collect();
            notes.push(format!("no interval for {}: {note}", same.join(", ")));
        }
    }
    match (c.server_reason(), &c.server_note) {
        (Some(reason), _) => notes.push(format!("server side: {reason}")),
        (None, Some(note)) => notes.push(note.clone()),
        (None, None) => notes.push("server side: no signal changed markedly".into()),
    }
    for g in &c.gates {
        notes.push(format!(
            "gate {} {}: {} ({})",
            g.name,
            if g.name == "error_rate" {
                format!("{:+.1} pp", g.limit)
            } else {
                format!("{:+.1}%", g.limit * 100.0)
            },
            if g.failed { "FAILED" } else { "passed" },
            g.reason
        ));
    }
    notes
}

/// Figures present on either side: how many got a verdict, and how many stayed unknown.
fn judged(c: &Comparison) -> (usize, usize) {
    let present = c
        .figures
        .iter()
        .filter(|f| f.baseline.is_some() || f.candidate.is_some());
    let unknown = present
        .clone()
        .filter(|f| f.verdict == Verdict::Unknown)
        .count();
    (present.count() - unknown, unknown)
}

/// The one line under the headlines when nothing moved: never a clean bill when nothing could be judged.
fn quiet_line(c: &Comparison) -> String {
    match judged(c) {
        (0, _) => {
            "no verdict: no figure could be tested (no per-request samples on one side)".into()
        }
        (_, 0) => "no figure changed beyond noise".into(),
        (n, unknown) => format!("no figure changed beyond noise ({n} tested, {unknown} unknown)"),
    }
}

pub fn term(c: &Comparison, labels: &Labels, warnings: &[String]) -> String {
    let mut out = String::new();
    for h in headlines(c) {
        out += &h;
        out.push('\n');
    }
    if out.is_empty() {
        out += &quiet_line(c);
        out.push('\n');
    }
    out += &table(c, labels).term();
    for n in warnings
        .iter()
        .map(|w| format!("warning: {w}"))
        .chain(notes(c))
    {
        out += &n;
        out.push('\n');
    }
    out
}

/// A pull-request comment: the verdict first, then the table and the notes.
pub fn markdown(c: &Comparison, labels: &Labels, warnings: &[String]) -> String {
    let verdict = if c.failed() {
        "❌ a gate failed".to_string()
    } else if c.figures.iter().any(|f| f.verdict == Verdict::Worse) {
        "⚠️ worse beyond noise".to_string()
    } else if judged(c).0 == 0 {
        "❔ no verdict: no figure could be tested".to_string()
    } else {
        match judged(c).1 {
            0 => "✅ no regression beyond noise".to_string(),
            unknown => format!("✅ no regression beyond noise ({unknown} figures unknown)"),
        }
    };
    let mut out = format!(
        "# infer-doctor compare: {verdict}\n\n`{}` → `{}`\n\n",
        labels.baseline, labels.compared
    );
    for h in headlines(c) {
        let _ = writeln!(out, "- **{h}**");
    }
    out += &table(c, labels).markdown();
    out.push('\n');
    for n in warnings
        .iter()
        .map(|w| format!("warning: {w}"))
        .chain(notes(c))
    {
        let _ = writeln!(out, "- {n}");
    }
    out
}

/// Text as XML content or attribute value: HTML's escaping serves XML too, but XML 1.0 cannot carry most control
/// characters even escaped, so they become `?`.
fn xml_escape(text: &str) -> String {
    let printable: String = text
        .chars()
        .map(|c| {
            if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') {
                '?'
            } else {
                c
            }
        })
        .collect();
    crate::html::escape(&printable)
}

/// JUnit XML: one test case per figure, failed when a `--fail-on` gate on it failed; the change, interval and
/// verdict of each are in its `system-out`, so a CI system's test view shows them.
pub fn junit(c: &Comparison, labels: &Labels) -> String {
    let failures = c.gates.iter().filter(|g| g.failed).count();
    let cases: Vec<&FigureChange> = c
        .figures
        .iter()
        .filter(|f| {
            f.baseline.is_some()
                || f.candidate.is_some()
                || c.gates.iter().any(|g| g.name == f.name)
        })
        .collect();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"infer-doctor compare\" tests=\"{}\" failures=\"{failures}\">\n  <testsuite name=\"{} → {}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">\n",
        cases.len(),
        xml_escape(&labels.baseline),
        xml_escape(&labels.compared),
        cases.len()
    );
    let reason = c.server_reason();
    for f in cases {
        let _ = writeln!(
            out,
            "    <testcase classname=\"infer-doctor.compare\" name=\"{}\">",
            f.name
        );
        for g in c.gates.iter().filter(|g| g.name == f.name && g.failed) {
            let _ = writeln!(
                out,
                "      <failure message=\"{}\" type=\"regression\">{} {} (CI {}){}</failure>",
                xml_escape(&g.reason),
                xml_escape(f.label),
                xml_escape(&change_text(f)),
                xml_escape(&interval_text(f)),
                xml_escape(
                    &reason
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
            );
        }
        let _ = writeln!(
            out,
            "      <system-out>{}: {} → {} {}, change {}, 95% CI {}, {}</system-out>\n    </testcase>",
            xml_escape(f.label),
            number(f.baseline, f.unit),
            number(f.candidate, f.unit),
            xml_escape(f.unit),
            xml_escape(&change_text(f)),
            xml_escape(&interval_text(f)),
            f.verdict
        );
    }
    out + "  </testsuite>\n</testsuites>\n"
}
