//! The recent safety findings, kept in memory for the control plane's dashboard (recent
//! violations, violations per hour). Bounded: the oldest entries are dropped first. Holds
//! no matched text (findings never do).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use super::{Category, Finding, Stage};
use tollgate_crds::safety::Action;

/// Findings kept at most.
pub const CAPACITY: usize = 10_000;

/// One finding with who and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindingEvent {
    /// When (epoch ms).
    pub ts_ms: i64,
    /// The request (or gRPC call) it belongs to.
    pub request_id: String,
    /// The caller's principal kind (`developer`, `team`, `agent`), if known.
    pub principal_kind: Option<String>,
    /// The caller's principal name, if known.
    pub principal_name: Option<String>,
    /// The policy (`namespace/name`).
    pub policy: String,
    /// The rule (`pii.email`, `tools.deny`, ...).
    pub rule: String,
    /// The rule's category.
    pub category: Category,
    /// Input or output.
    pub stage: Stage,
    /// The rule's action.
    pub action: Action,
    /// The policy was in audit mode: recorded, not enforced.
    pub audit: bool,
}

/// A bounded log of findings, newest last.
#[derive(Debug, Default)]
pub struct FindingLog {
    events: Mutex<VecDeque<FindingEvent>>,
}

impl FindingLog {
    /// Appends `findings`, dropping the oldest beyond [`CAPACITY`].
    pub fn record(
        &self,
        ts_ms: i64,
        request_id: &str,
        principal: Option<(&str, &str)>,
        findings: &[Finding],
    ) {
        if findings.is_empty() {
            return;
        }
        let Ok(mut events) = self.events.lock() else { return };
        for f in findings {
            if events.len() >= CAPACITY {
                events.pop_front();
            }
            events.push_back(FindingEvent {
                ts_ms,
                request_id: request_id.to_owned(),
                principal_kind: principal.map(|(k, _)| k.to_owned()),
                principal_name: principal.map(|(_, n)| n.to_owned()),
                policy: f.policy.to_string(),
                rule: f.rule.to_string(),
                category: f.category,
                stage: f.stage,
                action: f.action,
                audit: f.audit,
            });
        }
    }

    /// Every event kept that `keep` accepts, newest first.
    pub fn newest_first(&self, keep: impl Fn(&FindingEvent) -> bool) -> Vec<FindingEvent> {
        self.events
            .lock()
            .map(|events| events.iter().rev().filter(|e| keep(e)).cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use super::*;

    fn finding(rule: &'static str) -> Finding {
        Finding {
            policy: Arc::from("default/p"),
            rule: Cow::Borrowed(rule),
            category: Category::Pii,
            stage: Stage::Input,
            action: Action::Block,
            audit: false,
            location: None,
            score: None,
        }
    }

    #[test]
    fn keeps_the_newest_within_capacity() {
        let log = FindingLog::default();
        for i in 0..(CAPACITY + 5) {
            log.record(i64::try_from(i).unwrap(), "r", Some(("developer", "dana")), &[finding("pii.email")]);
        }
        let all = log.newest_first(|_| true);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].ts_ms, i64::try_from(CAPACITY + 4).unwrap());
        assert_eq!(all.last().unwrap().ts_ms, 5);
        assert_eq!(all[0].principal_name.as_deref(), Some("dana"));
    }

    #[test]
    fn filters_and_ignores_empty_reports() {
        let log = FindingLog::default();
        log.record(1, "a", None, &[]);
        log.record(2, "b", Some(("agent", "bot")), &[finding("pii.email"), finding("secrets.aws")]);
        assert_eq!(log.newest_first(|e| e.rule == "secrets.aws").len(), 1);
        assert_eq!(log.newest_first(|_| true).len(), 2);
    }
}
