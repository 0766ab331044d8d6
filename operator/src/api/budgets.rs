//! `GET /api/v1/budgets[/{name}]`: spent, reserved and remaining per budget for the current
//! period, read live from the gateway's counters. Admins see every budget; superusers the
//! budgets they own and those below them; everyone their own and their teams' budgets.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::json;
use tollgate_crds::money::format_usd;
use tollgate_dataplane::budget::{rfc3339, status};
use tollgate_dataplane::{ApiError, now_ms};

use super::{ApiResult, Caller, ControlPlane, respond};

/// One budget's state in the current period.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetView {
    pub name: String,
    pub subject: serde_json::Value,
    pub enforcement: &'static str,
    pub period: String,
    pub limit: String,
    pub spent: String,
    pub reserved: String,
    pub remaining: String,
    pub limit_micros: u64,
    pub spent_micros: u64,
    pub reserved_micros: u64,
    pub remaining_micros: u64,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub parent: Option<String>,
    pub exhausted: bool,
}

async fn views(cp: &ControlPlane, caller: &Caller, only: Option<&str>) -> Result<Vec<BudgetView>, ApiError> {
    let visible = caller.visible_budgets(&cp.all_resources().await?);
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
            subject: json!({ "kind": s.subject_kind.as_str(), "name": s.subject_name }),
            enforcement: if s.hard { "hard" } else { "soft" },
            period: format!("{:?}", b.period),
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
        });
    }
    Ok(out)
}

pub async fn list(State(cp): State<Arc<ControlPlane>>, Extension(caller): Extension<Caller>) -> Response {
    respond(async { Ok(Json(json!({ "budgets": views(&cp, &caller, None).await? })).into_response()) }.await)
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
