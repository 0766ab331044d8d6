//! `GET /api/v1/budgets[/{name}]`: spent, reserved and remaining per budget for the current
//! period, read live from the gateway's counters. Admins see every budget; superusers the
//! budgets they own and those below them; everyone their own and their teams' budgets.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use tollgate_crds::money::format_usd;
use tollgate_dataplane::budget::{rfc3339, status};
use tollgate_dataplane::{ApiError, now_ms};

use super::{ApiResult, Caller, ControlPlane, respond};

/// One budget's state in the current period.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetView {
    /// `namespace/name`.
    pub name: String,
    /// Whose spending it limits.
    pub subject: SubjectView,
    /// `hard` (refuses beyond the limit) or `soft` (alerts only).
    pub enforcement: &'static str,
    /// The period as the spec writes it (`daily`, `monthly`, `6h`, ...).
    pub period: String,
    /// The limit in USD (display).
    pub limit: String,
    /// Spent this period in USD (display).
    pub spent: String,
    /// Held for requests in flight, in USD (display).
    pub reserved: String,
    /// Left, in USD (display).
    pub remaining: String,
    /// The limit, integer micro-USD.
    pub limit_micros: u64,
    /// Spent this period, integer micro-USD.
    pub spent_micros: u64,
    /// Held for requests in flight, integer micro-USD.
    pub reserved_micros: u64,
    /// Left, integer micro-USD.
    pub remaining_micros: u64,
    /// Start of the period (RFC 3339).
    pub period_start: Option<String>,
    /// End of the period (RFC 3339), when the budget resets.
    pub period_end: Option<String>,
    /// The parent budget (`namespace/name`), if any.
    pub parent: Option<String>,
    /// Nothing is left (a hard budget refuses requests).
    pub exhausted: bool,
    /// Percentages of the limit at which alerts are raised.
    pub alert_thresholds: Vec<u32>,
    /// The highest threshold spending has reached this period, if any.
    pub alert_level: Option<u32>,
    /// Who owns it (superusers see the budgets they own).
    pub owners: Vec<tollgate_crds::budget::BudgetOwner>,
}

/// A budget's subject.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SubjectView {
    /// `developer`, `team`, `agent`, `namespace` or `global`.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// `GET /api/v1/budgets`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BudgetList {
    /// The budgets the caller may see.
    pub budgets: Vec<BudgetView>,
}

/// The highest of `thresholds` (percent) that `spent` has reached of `limit`.
pub fn alert_level(thresholds: &[u32], spent: u64, limit: u64) -> Option<u32> {
    thresholds.iter().copied().filter(|&t| u128::from(spent) * 100 >= u128::from(limit) * u128::from(t)).max()
}

async fn views(cp: &ControlPlane, caller: &Caller, only: Option<&str>) -> Result<Vec<BudgetView>, ApiError> {
    let resources = cp.all_resources().await?;
    let visible = caller.visible_budgets(&resources);
    let owners = |id: &str| -> Vec<tollgate_crds::budget::BudgetOwner> {
        resources
            .iter()
            .find_map(|r| match r {
                tollgate_crds::Resource::Budget(b) => {
                    let (_, ns, name) = crate::config::resource_id(r);
                    (format!("{ns}/{name}") == id).then(|| b.spec.owners.clone())
                }
                _ => None,
            })
            .unwrap_or_default()
    };
    let shared = cp.gateway.shared();
    let runtime = shared.runtime.load_full();
    let budgets = &runtime.config.budgets;
    let now = now_ms();
    let mut out = Vec::new();
    for (i, b) in budgets.iter().enumerate().filter(|(_, b)| visible.contains(&b.id)) {
        if only.is_some_and(|id| id != b.id) {
            continue;
        }
        let s = status(&shared.counters, budgets, i, now).await.map_err(|e| {
            tracing::error!(error = %e, "budget counters unavailable");
            ApiError::unavailable("budget_unavailable", "budget counters are unavailable; retry shortly")
        })?;
        let Some(s) = s else { continue };
        out.push(BudgetView {
            name: s.id,
            subject: SubjectView { kind: s.subject_kind.as_str().to_owned(), name: s.subject_name },
            enforcement: if s.hard { "hard" } else { "soft" },
            period: b.period.to_string(),
            limit: format_usd(s.limit_micros),
            spent: format_usd(s.spent_micros),
            reserved: format_usd(s.reserved_micros),
            remaining: format_usd(s.remaining_micros),
            limit_micros: s.limit_micros,
            spent_micros: s.spent_micros,
            reserved_micros: s.reserved_micros,
            remaining_micros: s.remaining_micros,
            period_start: s.window.and_then(|w| rfc3339(w.start_ms)),
            period_end: s.window.and_then(|w| rfc3339(w.end_ms)),
            parent: s.parent,
            exhausted: s.exhausted,
            alert_level: alert_level(&b.alert_thresholds, s.spent_micros, s.limit_micros),
            alert_thresholds: b.alert_thresholds.clone(),
            owners: owners(&b.id),
        });
    }
    Ok(out)
}

pub async fn list(State(cp): State<Arc<ControlPlane>>, Extension(caller): Extension<Caller>) -> Response {
    respond(
        async { Ok(Json(BudgetList { budgets: views(&cp, &caller, None).await? }).into_response()) }.await,
    )
}

async fn one(cp: &ControlPlane, caller: &Caller, id: &str) -> ApiResult {
    let found = views(cp, caller, Some(id)).await?;
    match found.into_iter().next() {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(ApiError::not_found("budget_not_found", format!("no budget {id:?} visible to this key"))),
    }
}

pub async fn get_one(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    respond(one(&cp, &caller, &format!("default/{name}")).await)
}

pub async fn get_namespaced(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    respond(one(&cp, &caller, &format!("{namespace}/{name}")).await)
}

/// The budget views the caller may see (for `GET /api/v1/me`).
pub(crate) async fn visible_views(cp: &ControlPlane, caller: &Caller) -> Result<Vec<BudgetView>, ApiError> {
    views(cp, caller, None).await
}

#[cfg(test)]
mod tests {
    use super::alert_level;

    #[test]
    fn alert_level_is_the_highest_threshold_reached() {
        assert_eq!(alert_level(&[50, 90], 0, 100), None);
        assert_eq!(alert_level(&[50, 90], 50, 100), Some(50));
        assert_eq!(alert_level(&[90, 50], 95, 100), Some(90));
        assert_eq!(alert_level(&[], 95, 100), None);
        assert_eq!(alert_level(&[100], u64::MAX, u64::MAX), Some(100));
    }
}
