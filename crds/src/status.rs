//! Status conditions shared by every Tollgate kind: the condition types, the stable reasons,
//! and [`set_condition`], the one way controllers change a condition list.
//!
//! Conventions (the same as Gateway API and most of Kubernetes): condition types are
//! *positive* (`Ready=True` is good), reasons are PascalCase words that tools can match on
//! and never change once published, and `lastTransitionTime` moves only when the status
//! flips — so `kubectl get` shows how long something has been broken, not how long ago the
//! controller last looked.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The resource was read and is valid: references resolve, patterns compile.
pub const ACCEPTED: &str = "Accepted";
/// The resource's effect has been written out: configuration published to the gateways, or
/// children applied.
pub const PROGRAMMED: &str = "Programmed";
/// The resource is in effect: gateways run its configuration, workloads are available.
pub const READY: &str = "Ready";

/// Most conditions one resource carries; the CRDs' `maxItems` on `status.conditions`.
pub const MAX_CONDITIONS: usize = 8;

/// Stable reasons. Once released a reason is never renamed: alerts and scripts match on it.
pub mod reason {
    /// Everything is as it should be.
    pub const ACCEPTED: &str = "Accepted";
    /// Children or configuration written.
    pub const PROGRAMMED: &str = "Programmed";
    /// In effect.
    pub const READY: &str = "Ready";
    /// Written, but not yet observed in effect (pods starting, gateways not yet reloaded).
    pub const PENDING: &str = "Pending";
    /// A referenced Secret does not exist.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// A referenced Secret exists but lacks the key.
    pub const SECRET_KEY_NOT_FOUND: &str = "SecretKeyNotFound";
    /// A regular expression or tool pattern does not compile.
    pub const INVALID_PATTERN: &str = "InvalidPattern";
    /// The spec is valid YAML but cannot be served (the message names the field).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A referenced resource (Budget, SafetyPolicy, DataPlane) does not exist.
    pub const REFERENCE_NOT_FOUND: &str = "ReferenceNotFound";
    /// A budget's limit is reached for the current period.
    pub const BUDGET_EXHAUSTED: &str = "BudgetExhausted";
    /// An agent was scaled to zero because its budget is exhausted (`suspend-agents`).
    pub const SUSPENDED: &str = "Suspended";
    /// A DataPlane asks for a memory cache (or SQLite) with more than one replica: each
    /// replica would keep its own budget counters and multiply every limit.
    pub const REPLICAS_NEED_SHARED_STATE: &str = "ReplicasNeedSharedState";
    /// Standalone mode (`tollgate up`) keeps the resource but has nothing to run it on: a
    /// workload (Agent, Sandbox, DataPlane) runs only where the operator runs.
    pub const STANDALONE: &str = "Standalone";
    /// A sandbox's pod finished.
    pub const COMPLETED: &str = "Completed";
    /// A sandbox's pod failed or hit its timeout.
    pub const FAILED: &str = "Failed";
}

/// `True`, `False` or `Unknown`, as condition statuses are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// It does not.
    False,
    /// The controller cannot tell yet.
    Unknown,
}

impl ConditionStatus {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// Sets the condition of `type_` in `conditions`, adding it if absent.
///
/// `lastTransitionTime` is kept when the status does not change (a new reason or message
/// alone is not a transition), otherwise it becomes `now`. Other conditions and their order
/// are untouched. Returns whether anything changed, so a controller can skip a no-op status
/// write.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: &Time,
) -> bool {
    let status = status.as_str();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let before = existing.clone();
            if existing.status != status {
                existing.last_transition_time = now.clone();
            }
            existing.status = status.to_owned();
            existing.reason = reason.to_owned();
            existing.message = message.to_owned();
            existing.observed_generation = observed_generation;
            *existing != before
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                observed_generation,
                last_transition_time: now.clone(),
            });
            true
        }
    }
}

/// A spec the controller cannot act on: `Accepted` is False with `message`, and each of
/// `dependents` (`Programmed`, `Ready`, ...) is False with the same `reason` and the short
/// `note` (`"not deployed"`), so every positive condition tells the same story.
pub fn set_refused(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    dependents: &[&str],
    note: &str,
    observed_generation: Option<i64>,
    now: &Time,
) {
    set_condition(conditions, ACCEPTED, ConditionStatus::False, reason, message, observed_generation, now);
    for type_ in dependents {
        set_condition(conditions, type_, ConditionStatus::False, reason, note, observed_generation, now);
    }
}

/// A status with standard conditions.
pub trait HasConditions {
    /// The conditions.
    fn conditions(&self) -> &[Condition];
}

macro_rules! has_conditions {
    ($($t:ty),*) => {$(
        impl HasConditions for $t {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
        }
    )*};
}

has_conditions!(
    crate::agent::AgentStatus,
    crate::budget::BudgetStatus,
    crate::dataplane::DataPlaneStatus,
    crate::iptoken::IpTokenStatus,
    crate::safety::SafetyPolicyStatus,
    crate::sandbox::SandboxStatus
);

/// The condition of `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn adds_a_missing_condition() {
        let mut c = Vec::new();
        assert!(set_condition(
            &mut c,
            READY,
            ConditionStatus::False,
            reason::PENDING,
            "starting",
            Some(1),
            &at(10)
        ));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, "False");
        assert_eq!(c[0].reason, "Pending");
        assert_eq!(c[0].last_transition_time, at(10));
    }

    #[test]
    fn keeps_the_transition_time_while_the_status_holds() {
        let mut c = Vec::new();
        set_condition(
            &mut c,
            ACCEPTED,
            ConditionStatus::False,
            reason::SECRET_NOT_FOUND,
            "no s",
            Some(1),
            &at(10),
        );
        let changed = set_condition(
            &mut c,
            ACCEPTED,
            ConditionStatus::False,
            reason::SECRET_KEY_NOT_FOUND,
            "no key k in s",
            Some(2),
            &at(20),
        );
        assert!(changed);
        assert_eq!(c[0].last_transition_time, at(10), "same status: not a transition");
        assert_eq!(c[0].reason, "SecretKeyNotFound");
        assert_eq!(c[0].observed_generation, Some(2));
        // Flipping the status is a transition.
        set_condition(&mut c, ACCEPTED, true.into(), reason::ACCEPTED, "", Some(2), &at(30));
        assert_eq!(c[0].last_transition_time, at(30));
        assert!(is_true(&c, ACCEPTED));
    }

    #[test]
    fn reports_no_change_for_an_identical_write_and_leaves_others_alone() {
        let mut c = Vec::new();
        set_condition(&mut c, ACCEPTED, true.into(), reason::ACCEPTED, "", Some(1), &at(1));
        set_condition(&mut c, READY, false.into(), reason::PENDING, "", Some(1), &at(1));
        assert!(!set_condition(&mut c, ACCEPTED, true.into(), reason::ACCEPTED, "", Some(1), &at(99)));
        assert_eq!(c[0].last_transition_time, at(1));
        assert_eq!(c.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(), [ACCEPTED, READY]);
        assert!(!is_true(&c, READY));
        assert!(find_condition(&c, PROGRAMMED).is_none());
    }

    #[test]
    fn reasons_are_pascal_case() {
        for r in [
            reason::ACCEPTED,
            reason::PROGRAMMED,
            reason::READY,
            reason::PENDING,
            reason::SECRET_NOT_FOUND,
            reason::SECRET_KEY_NOT_FOUND,
            reason::INVALID_PATTERN,
            reason::INVALID_SPEC,
            reason::REFERENCE_NOT_FOUND,
            reason::BUDGET_EXHAUSTED,
            reason::SUSPENDED,
            reason::REPLICAS_NEED_SHARED_STATE,
            reason::COMPLETED,
            reason::FAILED,
        ] {
            // Kubernetes requires reasons to match this (metav1.Condition validation).
            let ok = r.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && r.chars().all(|c| c.is_ascii_alphanumeric());
            assert!(ok, "{r}");
        }
    }
}
