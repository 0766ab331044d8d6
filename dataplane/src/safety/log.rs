//! Safety findings recorded for the control plane (recent violations, violations per
//! hour): each finding with who and when, never the matched text (findings do not hold
//! it). Handed to a writer task off the request path and stored in batches
//! ([`crate::store::Store::insert_findings`]); when the queue is full a finding is dropped
//! and counted rather than slowing a request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use super::{Category, Finding, Stage};
use crate::store::Store;
use tollgate_crds::safety::Action;

/// Findings queued before new ones are dropped.
pub const QUEUE: usize = 65_536;
/// Findings written per statement batch at most.
const BATCH: usize = 512;

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

impl FindingEvent {
    /// The event of `finding`.
    pub fn new(ts_ms: i64, request_id: &str, principal: Option<(&str, &str)>, finding: &Finding) -> Self {
        Self {
            ts_ms,
            request_id: request_id.to_owned(),
            principal_kind: principal.map(|(k, _)| k.to_owned()),
            principal_name: principal.map(|(_, n)| n.to_owned()),
            policy: finding.policy.to_string(),
            rule: finding.rule.to_string(),
            category: finding.category,
            stage: finding.stage,
            action: finding.action,
            audit: finding.audit,
        }
    }
}

/// Where findings go: nowhere until [`FindingLog::persist`] or [`FindingLog::send_to`].
#[derive(Debug, Default)]
pub struct FindingLog {
    tx: OnceLock<mpsc::Sender<FindingEvent>>,
    dropped: Arc<AtomicU64>,
}

impl FindingLog {
    /// Queues `findings` for the writer, never waiting.
    pub fn record(
        &self,
        ts_ms: i64,
        request_id: &str,
        principal: Option<(&str, &str)>,
        findings: &[Finding],
    ) {
        let Some(tx) = self.tx.get() else { return };
        for f in findings {
            if tx.try_send(FindingEvent::new(ts_ms, request_id, principal, f)).is_err() {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        dropped = n,
                        "safety findings dropped: the findings writer is behind or stopped"
                    );
                }
            }
        }
    }

    /// Findings dropped so far (queue full, writer gone, or the database refusing them).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Sends findings to `tx` (tests; [`FindingLog::persist`] uses it). A second call is
    /// ignored: the first destination stays.
    pub fn send_to(&self, tx: mpsc::Sender<FindingEvent>) {
        let _ = self.tx.set(tx);
    }

    /// Stores findings in `store` from now on (a writer task batching inserts).
    pub fn persist(&self, store: Store) {
        let (tx, rx) = mpsc::channel(QUEUE);
        if self.tx.set(tx).is_ok() {
            tokio::spawn(write_loop(store, rx, Arc::clone(&self.dropped)));
        }
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<FindingEvent>, dropped: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=4 {
            match store.insert_findings(&batch).await {
                Ok(()) => break,
                Err(e) if attempt == 4 => {
                    let n = u64::try_from(batch.len()).unwrap_or(u64::MAX);
                    dropped.fetch_add(n, Ordering::Relaxed);
                    tracing::error!(error = %e, findings = batch.len(), "cannot store safety findings; dropped");
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "storing safety findings failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use super::*;
    use crate::store::FindingQuery;

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

    #[tokio::test]
    async fn nothing_is_queued_without_a_destination_and_a_full_queue_drops() {
        let log = FindingLog::default();
        log.record(1, "r", None, &[finding("pii.email")]);
        assert_eq!(log.dropped(), 0);
        let (tx, mut rx) = mpsc::channel(1);
        log.send_to(tx);
        log.record(2, "r", Some(("developer", "dana")), &[finding("pii.email"), finding("pii.phone")]);
        let first = rx.recv().await.unwrap();
        assert_eq!((first.rule.as_str(), first.principal_name.as_deref()), ("pii.email", Some("dana")));
        assert_eq!(log.dropped(), 1, "the second did not fit");
    }

    #[tokio::test]
    async fn persisted_findings_read_back_filtered_and_counted_per_hour() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
        let log = FindingLog::default();
        log.persist(store.clone());
        let hour = 3_600_000;
        log.record(10 * hour + 5, "a", Some(("developer", "dana")), &[finding("pii.email")]);
        log.record(10 * hour + 9, "b", Some(("agent", "bot")), &[finding("pii.email"), finding("pii.phone")]);
        log.record(12 * hour, "c", None, &[finding("pii.email")]);
        let everything = FindingQuery { from_ms: 0, to_ms: 100 * hour, principals: None };
        for _ in 0..100 {
            if store.findings(&everything, 100).await.unwrap().len() == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let all = store.findings(&everything, 100).await.unwrap();
        assert_eq!(all.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(), ["c", "b", "b", "a"]);
        assert_eq!(all[3].action, Action::Block);
        assert_eq!(store.finding_counts(&everything).await.unwrap(), vec![(10 * hour, 3), (12 * hour, 1)]);
        let dana = FindingQuery {
            principals: Some(vec![("developer".into(), "dana".into())]),
            ..everything.clone()
        };
        assert_eq!(store.findings(&dana, 100).await.unwrap().len(), 1);
        let nobody = FindingQuery { principals: Some(vec![]), ..everything.clone() };
        assert!(store.findings(&nobody, 100).await.unwrap().is_empty());
        assert_eq!(store.prune_findings(11 * hour).await.unwrap(), 3);
        assert_eq!(store.finding_counts(&everything).await.unwrap(), vec![(12 * hour, 1)]);
    }
}
