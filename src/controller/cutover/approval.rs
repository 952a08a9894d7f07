//! The GO/NO-GO approval: a person says GO through `spec.approval.approvedBy` or an annotation;
//! until then the step waits, up to `spec.approval.timeout` if one is set.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;

use super::machine::Step;
use super::steps::{step_age, SLOW_POLL};
use super::{now, Progress, Run};
use crate::api::cutover::{Approval, ApprovalRecord, APPROVAL_REASON_ANNOTATION, APPROVED_BY_ANNOTATION};
use crate::controller::ReconcileError;
use crate::duration::format_duration;

pub(super) async fn approval(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let spec = run.cutover.spec.approval.clone().unwrap_or_default();
    if let Some((who, reason)) = given(&spec, run.cutover.annotations()) {
        if run.status.approval.is_none() {
            run.status.approval = Some(ApprovalRecord {
                approved_by: who.clone(),
                reason: reason.clone(),
                time: now(),
            });
        }
        let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
        return Ok(Progress::Done(format!("GO from {who}{why}")));
    }
    let timeout = spec.timeout.as_ref().and_then(|t| t.parse().ok());
    Ok(awaiting(step_age(run, step), timeout))
}

/// Who said GO, and why: the spec field wins over the annotation; blank names do not count.
fn given(spec: &Approval, annotations: &BTreeMap<String, String>) -> Option<(String, Option<String>)> {
    let by_field = spec
        .approved_by
        .clone()
        .filter(|who| !who.trim().is_empty())
        .map(|who| (who, spec.reason.clone()));
    let by_annotation = annotations
        .get(APPROVED_BY_ANNOTATION)
        .filter(|who| !who.trim().is_empty())
        .map(|who| (who.clone(), annotations.get(APPROVAL_REASON_ANNOTATION).cloned()));
    by_field.or(by_annotation)
}

/// Without a GO: fail once `timeout` has passed, otherwise wait, saying how to approve.
fn awaiting(waited: Duration, timeout: Option<Duration>) -> Progress {
    let Some(timeout) = timeout else {
        return Progress::Wait {
            after: SLOW_POLL,
            message: format!(
                "awaiting approval: set spec.approval.approvedBy or annotate {APPROVED_BY_ANNOTATION}=<who>"
            ),
        };
    };
    if waited >= timeout {
        return Progress::Failed(format!("no approval within {}", format_duration(timeout)));
    }
    let left = timeout.saturating_sub(waited);
    Progress::Wait {
        after: left.min(SLOW_POLL),
        message: format!(
            "awaiting approval for {} more: set spec.approval.approvedBy or annotate {APPROVED_BY_ANNOTATION}=<who>",
            format_duration(left)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_spec_field_wins_over_the_annotation_and_blank_names_do_not_count() {
        let by_field = Approval {
            approved_by: Some("alice".into()),
            reason: Some("CAB-42".into()),
            ..Default::default()
        };
        let annotated = annotations(&[
            (APPROVED_BY_ANNOTATION, "bob"),
            (APPROVAL_REASON_ANNOTATION, "on call"),
        ]);
        assert_eq!(
            given(&by_field, &annotated),
            Some(("alice".into(), Some("CAB-42".into())))
        );
        let blank = Approval {
            approved_by: Some("  ".into()),
            ..Default::default()
        };
        assert_eq!(
            given(&blank, &annotated),
            Some(("bob".into(), Some("on call".into())))
        );
        let blank_annotation = annotations(&[(APPROVED_BY_ANNOTATION, " ")]);
        assert_eq!(given(&blank, &blank_annotation), None);
        assert_eq!(given(&Approval::default(), &BTreeMap::new()), None);
    }

    #[test]
    fn waiting_for_approval_ends_at_the_timeout() {
        let minute = Duration::from_secs(60);
        assert!(matches!(
            awaiting(10 * minute, None),
            Progress::Wait { after, .. } if after == SLOW_POLL
        ));
        assert_eq!(
            awaiting(minute, Some(2 * minute)),
            Progress::Wait {
                after: SLOW_POLL,
                message: format!(
                    "awaiting approval for 1m more: set spec.approval.approvedBy or annotate {APPROVED_BY_ANNOTATION}=<who>"
                ),
            }
        );
        // Close to the deadline the step looks again exactly when it runs out.
        assert!(matches!(
            awaiting(minute + Duration::from_secs(50), Some(2 * minute)),
            Progress::Wait { after, .. } if after == Duration::from_secs(10)
        ));
        assert_eq!(
            awaiting(2 * minute, Some(2 * minute)),
            Progress::Failed("no approval within 2m".into())
        );
    }
}
