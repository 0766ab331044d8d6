//! Budgets on the request path: which budgets a principal's requests count against,
//! admission (reserve the worst-case cost on the subject's budget and every ancestor, all or
//! nothing), settlement (the actual cost, exactly once) and threshold alerts. The arithmetic
//! and the counter stores live in [`crate::cost`]; this module decides what to ask of them.

use std::collections::HashMap;
use std::sync::Arc;

use tollgate_crds::budget::SubjectKind;
use tollgate_crds::config::BudgetConfig;
use tollgate_crds::money::format_usd;

use crate::auth::{Principal, PrincipalKind};
use crate::cost::{BudgetKey, CounterStore, Period, crossed_thresholds, window_at};
use crate::providers::UpstreamClient;

/// Budgets by subject, built once per configuration.
#[derive(Debug, Default)]
pub struct BudgetIndex {
    by_subject: HashMap<(SubjectKind, String), Vec<usize>>,
}

impl BudgetIndex {
    /// Indexes `budgets` by subject.
    pub fn new(budgets: &[BudgetConfig]) -> Self {
        let mut by_subject: HashMap<(SubjectKind, String), Vec<usize>> = HashMap::new();
        for (i, b) in budgets.iter().enumerate() {
            by_subject.entry((b.subject_kind, b.subject_name.clone())).or_default().push(i);
        }
        Self { by_subject }
    }

    /// The budgets a principal's requests count against, each with its ancestors, nearest
    /// first, without repeats: the principal's own budget (developer, agent or team), its
    /// team's budget, and its namespace's budget.
    pub fn applicable(&self, budgets: &[BudgetConfig], principal: &Principal) -> Vec<usize> {
        let own = match principal.kind {
            PrincipalKind::Developer => SubjectKind::Developer,
            PrincipalKind::Team => SubjectKind::Team,
            PrincipalKind::Agent => SubjectKind::Agent,
        };
        let mut subjects = vec![(own, principal.name.clone())];
        if let Some(team) = &principal.team {
            subjects.push((SubjectKind::Team, team.clone()));
        }
        let mut out: Vec<usize> = Vec::new();
        for subject in subjects {
            for &start in self.by_subject.get(&subject).into_iter().flatten() {
                for i in BudgetConfig::chain(budgets, start) {
                    if !out.contains(&i) {
                        out.push(i);
                    }
                }
            }
        }
        out
    }
}

/// The cost engine's period for a compiled budget.
pub fn period_of(b: &BudgetConfig) -> Period {
    Period::from(b.period)
}

/// The counter key of a budget's current window.
pub fn key_for(b: &BudgetConfig, now_ms: i64) -> BudgetKey {
    BudgetKey {
        id: b.id.clone(),
        window: window_at(period_of(b), b.time_zone, now_ms),
        limit_micros: b.limit_micros,
        hard: b.hard,
    }
}

/// One budget's state in its current period, as the admin API, the gRPC runtime service
/// and the CLI show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetStatus {
    /// `namespace/name`.
    pub id: String,
    /// What the budget is for.
    pub subject_kind: SubjectKind,
    /// Its subject's name.
    pub subject_name: String,
    /// Hard budgets refuse requests; soft ones only alert.
    pub hard: bool,
    /// The limit, micro-USD.
    pub limit_micros: u64,
    /// Charged in this period, micro-USD.
    pub spent_micros: u64,
    /// Held by requests in flight, micro-USD.
    pub reserved_micros: u64,
    /// `limit - spent - reserved`, never below zero.
    pub remaining_micros: u64,
    /// The period window (`None` for a `total` budget, which has no window).
    pub window: Option<crate::cost::Window>,
    /// The parent budget's id.
    pub parent: Option<String>,
    /// Spent has reached the limit.
    pub exhausted: bool,
}

/// Reads `budgets[index]`'s counters for the period around `now_ms`.
pub async fn status(
    counters: &CounterStore,
    budgets: &[BudgetConfig],
    index: usize,
    now_ms: i64,
) -> Result<Option<BudgetStatus>, crate::cost::CostError> {
    let Some(b) = budgets.get(index) else { return Ok(None) };
    let key = key_for(b, now_ms);
    // NB: releases reservations past their deadline first, so calls of a replica that died
    // mid-request do not show as reserved after their deadline.
    let state = counters.state_at(&key, now_ms).await?;
    let remaining = b.limit_micros.saturating_sub(state.spent_micros).saturating_sub(state.reserved_micros);
    // NB: a `total` budget's window spans all representable time; it has no period to show.
    let bounded = key.window.end_ms < i64::MAX / 2;
    Ok(Some(BudgetStatus {
        id: b.id.clone(),
        subject_kind: b.subject_kind,
        subject_name: b.subject_name.clone(),
        hard: b.hard,
        limit_micros: b.limit_micros,
        spent_micros: state.spent_micros,
        reserved_micros: state.reserved_micros,
        remaining_micros: remaining,
        window: bounded.then_some(key.window),
        parent: b.parent.and_then(|p| budgets.get(p)).map(|p| p.id.clone()),
        exhausted: state.spent_micros >= b.limit_micros,
    }))
}

/// An RFC 3339 time (seconds, UTC) of epoch milliseconds.
pub fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// A reservation that must be settled. Dropped unsettled (the caller went away mid-request),
/// it settles in the background to `fallback_micros`, the cost of the input already sent.
#[derive(Debug)]
pub struct Reservation {
    counters: Arc<CounterStore>,
    /// The reservation id (also used in logs).
    pub id: String,
    /// The budget windows reserved on, nearest first.
    pub keys: Vec<BudgetKey>,
    /// Worst case reserved.
    pub reserved_micros: u64,
    /// Charged if the reservation is dropped unsettled.
    pub fallback_micros: u64,
    settled: bool,
}

impl Reservation {
    /// A reservation just admitted.
    pub fn new(
        counters: Arc<CounterStore>,
        id: String,
        keys: Vec<BudgetKey>,
        reserved: u64,
        fallback: u64,
    ) -> Self {
        Self { counters, id, keys, reserved_micros: reserved, fallback_micros: fallback, settled: false }
    }

    /// Settles to the actual cost. Returns whether the store applied it (false if it had
    /// expired meanwhile; the ledger still has the charge).
    pub async fn settle(mut self, actual_micros: u64) -> bool {
        self.settled = true;
        match self.counters.settle(&self.id, actual_micros).await {
            Ok(applied) => applied,
            Err(e) => {
                tracing::error!(reservation = %self.id, error = %e, "settle failed; the reservation will expire and the ledger keeps the charge");
                false
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let counters = Arc::clone(&self.counters);
        let id = std::mem::take(&mut self.id);
        let amount = self.fallback_micros;
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = counters.settle(&id, amount).await {
                    tracing::warn!(reservation = %id, error = %e, "background settle failed; the reservation will expire");
                }
            });
        }
    }
}

/// Where budget alerts go: the log always, and a webhook when configured.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    /// URL that receives a JSON POST per alert.
    pub webhook: Option<String>,
}

/// After a charge: raise each threshold alert (and the soft-limit-exceeded alert) once per
/// budget window, across replicas. Runs in the background.
pub fn check_alerts(
    counters: Arc<CounterStore>,
    alerts: Alerts,
    client: UpstreamClient,
    budgets: Vec<(BudgetConfig, BudgetKey)>,
    charged_micros: u64,
) {
    if budgets.iter().all(|(b, _)| b.alert_thresholds.is_empty() && b.hard) {
        return;
    }
    tokio::spawn(async move {
        for (budget, key) in budgets {
            let mut thresholds = budget.alert_thresholds.clone();
            if !budget.hard {
                thresholds.push(100);
            }
            if thresholds.is_empty() {
                continue;
            }
            let Ok(state) = counters.state(&key).await else { continue };
            let after = state.spent_micros;
            let before = after.saturating_sub(charged_micros);
            for t in crossed_thresholds(before, after, budget.limit_micros, &thresholds) {
                if !counters.claim_alert(&key, t).await.unwrap_or(false) {
                    continue;
                }
                tracing::warn!(
                    budget = %budget.id,
                    threshold_percent = t,
                    spent = %format_usd(after),
                    limit = %format_usd(budget.limit_micros),
                    "budget alert"
                );
                if let Some(url) = &alerts.webhook {
                    let body = serde_json::json!({
                        "budget": budget.id,
                        "subject": { "kind": budget.subject_kind.as_str(), "name": budget.subject_name },
                        "thresholdPercent": t,
                        "spent": format_usd(after),
                        "limit": format_usd(budget.limit_micros),
                        "windowStartMs": key.window.start_ms,
                        "windowEndMs": key.window.end_ms,
                        "enforcement": if budget.hard { "hard" } else { "soft" },
                        "alert": "threshold",
                    });
                    send_webhook(&client, url, &body).await;
                }
            }
        }
    });
}

/// What a settle charged beyond its reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overrun {
    /// The worst case that was reserved, micro-USD.
    pub reserved_micros: u64,
    /// The true cost charged (the provider's reported usage priced), micro-USD.
    pub charged_micros: u64,
}

impl Overrun {
    /// `Some` when `charged` exceeds `reserved`.
    pub fn of(reserved_micros: u64, charged_micros: u64) -> Option<Self> {
        (charged_micros > reserved_micros).then_some(Self { reserved_micros, charged_micros })
    }

    /// How much more was charged than reserved.
    pub fn excess_micros(&self) -> u64 {
        self.charged_micros - self.reserved_micros
    }
}

/// After a settle that charged more than it reserved: count it on every budget of the chain
/// (`tollgate_budget_overruns_total`), log it, and raise the `overrun` alert once per
/// budget window (across replicas), on the log and the webhook. The true cost is already
/// charged; a hard budget pushed past its limit refuses every new reservation until its
/// spent is back under (a new window, or a higher limit), because admission requires
/// `spent + reserved + amount <= limit`. Runs in the background.
pub fn report_overrun(
    counters: Arc<CounterStore>,
    alerts: Alerts,
    client: UpstreamClient,
    metrics: crate::observability::Metrics,
    budgets: Vec<(BudgetConfig, BudgetKey)>,
    overrun: Overrun,
) {
    for (budget, _) in &budgets {
        metrics.budget_overrun(&budget.id);
    }
    tracing::warn!(
        budgets = %budgets.iter().map(|(b, _)| b.id.as_str()).collect::<Vec<_>>().join(","),
        reserved = %format_usd(overrun.reserved_micros),
        charged = %format_usd(overrun.charged_micros),
        "budget overrun: the provider reported more usage than was reserved"
    );
    tokio::spawn(async move {
        for (budget, key) in budgets {
            if !counters.claim_overrun_alert(&key).await.unwrap_or(false) {
                continue;
            }
            let spent = counters.state(&key).await.map(|s| s.spent_micros).unwrap_or(0);
            tracing::warn!(
                budget = %budget.id,
                spent = %format_usd(spent),
                limit = %format_usd(budget.limit_micros),
                excess = %format_usd(overrun.excess_micros()),
                "budget alert: overrun"
            );
            if let Some(url) = &alerts.webhook {
                let body = serde_json::json!({
                    "alert": "overrun",
                    "budget": budget.id,
                    "subject": { "kind": budget.subject_kind.as_str(), "name": budget.subject_name },
                    "reserved": format_usd(overrun.reserved_micros),
                    "charged": format_usd(overrun.charged_micros),
                    "spent": format_usd(spent),
                    "limit": format_usd(budget.limit_micros),
                    "windowStartMs": key.window.start_ms,
                    "windowEndMs": key.window.end_ms,
                    "enforcement": if budget.hard { "hard" } else { "soft" },
                });
                send_webhook(&client, url, &body).await;
            }
        }
    });
}

async fn send_webhook(client: &UpstreamClient, url: &str, body: &serde_json::Value) {
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(body).unwrap_or_default()));
    match request {
        Ok(r) => match client.raw(r).await {
            Ok(resp) if resp.status().is_success() => {}
            Ok(resp) => {
                tracing::warn!(status = resp.status().as_u16(), "budget alert webhook refused the alert")
            }
            Err(e) => tracing::warn!(error = %e, "budget alert webhook unreachable"),
        },
        Err(_) => tracing::warn!("budget alert webhook URL is invalid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use tollgate_crds::{compile, parse_documents};

    #[test]
    fn applicable_budgets_include_team_and_ancestors_once() {
        let yaml = r#"
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: org}
spec: {subject: {kind: team, name: all}, limit: "100", period: monthly}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: pay}
spec: {subject: {kind: team, name: payments}, limit: "10", period: daily, parent: org}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: alice}
spec: {subject: {kind: developer, name: alice}, limit: "1", period: daily, parent: pay}
"#;
        let c = compile(&parse_documents("t", yaml).unwrap().resources).unwrap();
        let index = BudgetIndex::new(&c.budgets);
        let alice = Principal {
            kind: PrincipalKind::Developer,
            name: "alice".into(),
            role: Role::Developer,
            team: Some("payments".into()),
        };
        let ids: Vec<&str> =
            index.applicable(&c.budgets, &alice).iter().map(|&i| c.budgets[i].id.as_str()).collect();
        assert_eq!(ids, ["default/alice", "default/pay", "default/org"]);
        let bob = Principal { name: "bob".into(), team: None, ..alice.clone() };
        assert!(index.applicable(&c.budgets, &bob).is_empty());
    }
}
