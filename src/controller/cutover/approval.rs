//! The GO/NO-GO approval: people say GO through `spec.approval.approvedBy`, the annotation, or
//! sign-offs in `spec.approval.approvals`; the gate opens when enough distinct people have signed
//! (`minApprovals`) and every required group has a sign-off of its own. Until then the step waits, up to
//! `spec.approval.timeout` if one is set. Who may write which name is the admission policy's job
//! (deploy/approval-policy.yaml): the controller counts what the API server admitted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::ResourceExt;

use super::machine::Step;
use super::steps::{step_age, SLOW_POLL};
use super::{now, Progress, Run};
use crate::api::cutover::{
    Approval, ApprovalRecord, SignOff, APPROVAL_REASON_ANNOTATION, APPROVED_BY_ANNOTATION,
};
use crate::controller::ReconcileError;
use crate::duration::format_duration;

pub(super) async fn approval(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let spec = run.cutover.spec.approval.clone().unwrap_or_default();
    let tally = Tally::of(&spec, run.cutover.annotations());
    if tally.is_go() {
        let (who, reason) = tally.record();
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
    Ok(awaiting(step_age(run, step), timeout, &tally.still_needed()))
}

/// The sign-offs given so far, against what the gate asks for.
#[derive(Debug, PartialEq)]
struct Tally {
    /// Every sign-off with a name, in order: the spec field, the annotation, then `approvals`.
    signoffs: Vec<SignOff>,
    minimum: usize,
    required_groups: Vec<String>,
}

impl Tally {
    fn of(spec: &Approval, annotations: &BTreeMap<String, String>) -> Tally {
        let by_field = spec.approved_by.clone().map(|by| SignOff {
            by,
            group: None,
            reason: spec.reason.clone(),
        });
        let by_annotation = annotations.get(APPROVED_BY_ANNOTATION).map(|by| SignOff {
            by: by.clone(),
            group: None,
            reason: annotations.get(APPROVAL_REASON_ANNOTATION).cloned(),
        });
        let signoffs = by_field
            .into_iter()
            .chain(by_annotation)
            .chain(spec.approvals.iter().cloned())
            .filter(|signoff| !signoff.by.trim().is_empty())
            .collect();
        Tally {
            signoffs,
            minimum: usize::try_from(spec.min_approvals.unwrap_or(1))
                .unwrap_or(1)
                .max(1),
            required_groups: spec.required_groups.clone(),
        }
    }

    fn people(&self) -> BTreeSet<&str> {
        self.signoffs.iter().map(|s| s.by.as_str()).collect()
    }

    fn is_go(&self) -> bool {
        self.people().len() >= self.minimum && self.uncovered_groups().is_empty()
    }

    /// Required groups without a sign-off of their own: each group needs a different person who
    /// signed for it (a matching of groups to people), so one person in two groups covers only one.
    fn uncovered_groups(&self) -> Vec<String> {
        let signers = |group: &str| -> Vec<&str> {
            self.signoffs
                .iter()
                .filter(|s| s.group.as_deref() == Some(group))
                .map(|s| s.by.as_str())
                .collect()
        };
        let mut assigned: BTreeMap<&str, usize> = BTreeMap::new();
        let mut uncovered = Vec::new();
        for (index, group) in self.required_groups.iter().enumerate() {
            let mut visited = BTreeSet::new();
            if !assign(
                index,
                &self.required_groups,
                &signers,
                &mut assigned,
                &mut visited,
            ) {
                uncovered.push(group.clone());
            }
        }
        uncovered
    }

    /// What the gate still waits for, as the status message says it.
    fn still_needed(&self) -> String {
        let mut needs = Vec::new();
        let people = self.people().len();
        if self.minimum > 1 && people < self.minimum {
            needs.push(format!("{} of {} sign-offs", people, self.minimum));
        }
        let uncovered = self.uncovered_groups();
        if !uncovered.is_empty() {
            needs.push(format!("a sign-off for {}", uncovered.join(", ")));
        }
        needs.join("; ")
    }

    /// The approval record: every signer (with the group signed for) and every reason given.
    fn record(&self) -> (String, Option<String>) {
        let mut seen = BTreeSet::new();
        let who: Vec<String> = self
            .signoffs
            .iter()
            .filter(|s| seen.insert((s.by.clone(), s.group.clone())))
            .map(|s| match &s.group {
                Some(group) => format!("{} ({group})", s.by),
                None => s.by.clone(),
            })
            .collect();
        let reasons: Vec<&str> = self
            .signoffs
            .iter()
            .filter_map(|s| s.reason.as_deref())
            .filter(|r| !r.trim().is_empty())
            .collect();
        let mut unique_reasons: Vec<&str> = Vec::new();
        for reason in reasons {
            if !unique_reasons.contains(&reason) {
                unique_reasons.push(reason);
            }
        }
        let reason = (!unique_reasons.is_empty()).then(|| unique_reasons.join("; "));
        (who.join(", "), reason)
    }
}

/// Augmenting-path step of the group → person matching: finds a person for group `index`, moving
/// earlier assignments to other people where that frees one.
fn assign<'a>(
    index: usize,
    groups: &[String],
    signers: &dyn Fn(&str) -> Vec<&'a str>,
    assigned: &mut BTreeMap<&'a str, usize>,
    visited: &mut BTreeSet<&'a str>,
) -> bool {
    for person in signers(&groups[index]) {
        if !visited.insert(person) {
            continue;
        }
        let free = match assigned.get(person) {
            None => true,
            Some(&other) => assign(other, groups, signers, assigned, visited),
        };
        if free {
            assigned.insert(person, index);
            return true;
        }
    }
    false
}

/// Without a GO: fail once `timeout` has passed, otherwise wait, saying what is missing and how to approve.
fn awaiting(waited: Duration, timeout: Option<Duration>, still_needed: &str) -> Progress {
    let how = format!("set spec.approval.approvedBy, annotate {APPROVED_BY_ANNOTATION}=<you>, or add yourself to spec.approval.approvals");
    let needed = if still_needed.is_empty() {
        String::new()
    } else {
        format!(" ({still_needed})")
    };
    let Some(timeout) = timeout else {
        return Progress::Wait {
            after: SLOW_POLL,
            message: format!("awaiting approval{needed}: {how}"),
        };
    };
    if waited >= timeout {
        return Progress::Failed(format!("no approval within {}{needed}", format_duration(timeout)));
    }
    let left = timeout.saturating_sub(waited);
    Progress::Wait {
        after: left.min(SLOW_POLL),
        message: format!(
            "awaiting approval for {} more{needed}: {how}",
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

    fn signoff(by: &str, group: Option<&str>) -> SignOff {
        SignOff {
            by: by.into(),
            group: group.map(Into::into),
            reason: None,
        }
    }

    #[test]
    fn one_name_is_a_go_by_default_and_blank_names_do_not_count() {
        let by_field = Approval {
            approved_by: Some("alice".into()),
            reason: Some("CAB-42".into()),
            ..Default::default()
        };
        let annotated = annotations(&[
            (APPROVED_BY_ANNOTATION, "bob"),
            (APPROVAL_REASON_ANNOTATION, "on call"),
        ]);
        let tally = Tally::of(&by_field, &BTreeMap::new());
        assert!(tally.is_go());
        assert_eq!(tally.record(), ("alice".into(), Some("CAB-42".into())));
        let blank = Approval {
            approved_by: Some("  ".into()),
            ..Default::default()
        };
        let tally = Tally::of(&blank, &annotated);
        assert!(tally.is_go());
        assert_eq!(tally.record(), ("bob".into(), Some("on call".into())));
        let blank_annotation = annotations(&[(APPROVED_BY_ANNOTATION, " ")]);
        assert!(!Tally::of(&blank, &blank_annotation).is_go());
        assert!(!Tally::of(&Approval::default(), &BTreeMap::new()).is_go());
    }

    #[test]
    fn n_of_m_needs_that_many_different_people() {
        let mut spec = Approval {
            min_approvals: Some(2),
            approvals: vec![signoff("alice", None), signoff("alice", None)],
            ..Default::default()
        };
        let tally = Tally::of(&spec, &BTreeMap::new());
        assert!(!tally.is_go(), "one person twice is one sign-off");
        assert_eq!(tally.still_needed(), "1 of 2 sign-offs");
        // The annotation counts as one more person.
        let tally = Tally::of(&spec, &annotations(&[(APPROVED_BY_ANNOTATION, "bob")]));
        assert!(tally.is_go());
        assert_eq!(tally.record().0, "bob, alice");
        spec.approvals.push(signoff("carol", None));
        assert!(Tally::of(&spec, &BTreeMap::new()).is_go());
    }

    #[test]
    fn each_required_group_needs_a_sign_off_of_its_own() {
        let spec = |approvals: Vec<SignOff>| Approval {
            required_groups: vec!["devops".into(), "dev".into(), "qa".into()],
            approvals,
            ..Default::default()
        };
        let partial = Tally::of(
            &spec(vec![signoff("alice", Some("devops")), signoff("bob", None)]),
            &BTreeMap::new(),
        );
        assert!(!partial.is_go());
        assert_eq!(partial.still_needed(), "a sign-off for dev, qa");
        // One person in two groups covers only one of them.
        let doubled = Tally::of(
            &spec(vec![
                signoff("alice", Some("devops")),
                signoff("bob", Some("dev")),
                signoff("bob", Some("qa")),
            ]),
            &BTreeMap::new(),
        );
        assert_eq!(doubled.still_needed(), "a sign-off for qa");
        // The matching moves bob to qa when carol can only take dev.
        let matched = Tally::of(
            &spec(vec![
                signoff("alice", Some("devops")),
                signoff("bob", Some("dev")),
                signoff("bob", Some("qa")),
                signoff("carol", Some("dev")),
            ]),
            &BTreeMap::new(),
        );
        assert!(matched.is_go(), "{}", matched.still_needed());
        assert_eq!(
            matched.record().0,
            "alice (devops), bob (dev), bob (qa), carol (dev)"
        );
    }

    #[test]
    fn waiting_for_approval_ends_at_the_timeout() {
        let minute = Duration::from_secs(60);
        assert!(matches!(
            awaiting(10 * minute, None, ""),
            Progress::Wait { after, .. } if after == SLOW_POLL
        ));
        assert_eq!(
            awaiting(minute, Some(2 * minute), "a sign-off for qa"),
            Progress::Wait {
                after: SLOW_POLL,
                message: format!(
                    "awaiting approval for 1m more (a sign-off for qa): set spec.approval.approvedBy, annotate \
                     {APPROVED_BY_ANNOTATION}=<you>, or add yourself to spec.approval.approvals"
                ),
            }
        );
        // Close to the deadline the step looks again exactly when it runs out.
        assert!(matches!(
            awaiting(minute + Duration::from_secs(50), Some(2 * minute), ""),
            Progress::Wait { after, .. } if after == Duration::from_secs(10)
        ));
        assert_eq!(
            awaiting(2 * minute, Some(2 * minute), ""),
            Progress::Failed("no approval within 2m".into())
        );
    }
}
