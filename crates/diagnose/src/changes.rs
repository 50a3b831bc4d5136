//! What changed between two diagnoses of the same server: the findings that appeared, cleared or changed severity.
//! `watch` re-diagnoses every interval and reports only these changes, so an alerting pipe hears each once.

use infer_doctor_core::{Finding, Severity};

/// How one finding changed between the earlier diagnosis and the later one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Not in the earlier diagnosis, in the later one.
    Appeared,
    /// In the earlier diagnosis, gone from the later one.
    Cleared,
    /// In both, at another severity.
    Changed,
}

/// One change, told with the finding as it now stands (as it last stood, for a cleared one).
#[derive(Clone, Debug, PartialEq)]
pub struct Change<'a> {
    pub kind: ChangeKind,
    pub finding: &'a Finding,
}

/// The changes from `before` to `after`, findings told apart by their stable id: appeared and changed ones in
/// `after`'s order (most severe first), then cleared ones in `before`'s.
pub fn changes<'a>(before: &'a [Finding], after: &'a [Finding]) -> Vec<Change<'a>> {
    let severity_before =
        |id: &str| -> Option<Severity> { before.iter().find(|f| f.id == id).map(|f| f.severity) };
    let mut out: Vec<Change<'a>> = after
        .iter()
        .filter_map(|finding| {
            let kind = match severity_before(&finding.id) {
                None => ChangeKind::Appeared,
                Some(severity) if severity != finding.severity => ChangeKind::Changed,
                Some(_) => return None,
            };
            Some(Change { kind, finding })
        })
        .collect();
    out.extend(
        before
            .iter()
            .filter(|earlier| !after.iter().any(|f| f.id == earlier.id))
            .map(|finding| Change {
                kind: ChangeKind::Cleared,
                finding,
            }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use infer_doctor_core::{Confidence, Symptom};

    fn finding(id: &str, severity: Severity) -> Finding {
        Finding {
            id: id.into(),
            severity,
            confidence: Confidence::High,
            symptom: Symptom::Ttft,
            verdict: format!("{id} verdict"),
            evidence: Vec::new(),
            why: String::new(),
            remedies: Vec::new(),
            source: String::new(),
        }
    }

    fn told(changes: &[Change<'_>]) -> Vec<(ChangeKind, String)> {
        changes
            .iter()
            .map(|c| (c.kind, c.finding.id.clone()))
            .collect()
    }

    #[test]
    fn a_finding_that_stays_the_same_is_no_change() {
        let same = [finding("capacity.kv_saturated", Severity::Critical)];
        assert!(changes(&same, &same).is_empty());
        assert!(changes(&[], &[]).is_empty());
    }

    #[test]
    fn appeared_changed_and_cleared_are_told_by_id() {
        let before = [
            finding("capacity.preemptions", Severity::Warning),
            finding("ttft.queueing", Severity::Warning),
        ];
        let after = [
            finding("capacity.kv_saturated", Severity::Critical),
            finding("capacity.preemptions", Severity::Critical),
        ];
        assert_eq!(
            told(&changes(&before, &after)),
            [
                (ChangeKind::Appeared, "capacity.kv_saturated".to_string()),
                (ChangeKind::Changed, "capacity.preemptions".to_string()),
                (ChangeKind::Cleared, "ttft.queueing".to_string()),
            ]
        );
        // A cleared finding is told as it last stood.
        let cleared = changes(&before, &[]);
        assert_eq!(cleared[1].finding.verdict, "ttft.queueing verdict");
        assert!(cleared.iter().all(|c| c.kind == ChangeKind::Cleared));
    }
}
