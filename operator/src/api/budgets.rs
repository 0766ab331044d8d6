//! `GET /api/v1/budgets[/{name}]`: spent, reserved and remaining per budget for the current
//! period, read live from the gateway's counters. Admins see every budget; other callers see
//! the budgets whose subject is themselves or their team.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use tollgate_crds::budget::SubjectKind;
use tollgate_crds::config::BudgetConfig;
use tollgate_crds::money::format_usd;
use tollgate_dataplane::auth::{KeyRecord, PrincipalKind, Role};
use tollgate_dataplane::budget::key_for;
use tollgate_dataplane::{ApiError, now_ms};

use super::{ApiResult, ControlPlane, caller, respond};

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

fn visible(key: &KeyRecord, b: &BudgetConfig) -> bool {
    let p = &key.principal;
    if p.role == Role::Admin {
        return true;
    }
    let own = match p.kind {
        PrincipalKind::Developer => SubjectKind::Developer,
        PrincipalKind::Team => SubjectKind::Team,
        PrincipalKind::Agent => SubjectKind::Agent,
    };
    (b.subject_kind == own && b.subject_name == p.name)
        || (b.subject_kind == SubjectKind::Team && p.team.as_deref() == Some(b.subject_name.as_str()))
}

fn rfc3339(ms: i64) -> Option<String> {
    if ms <= i64::MIN / 2 || ms >= i64::MAX / 2 {
        return None;
    }
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

async fn views(cp: &ControlPlane, key: &KeyRecord, only: Option<&str>) -> Result<Vec<BudgetView>, ApiError> {
    let shared = cp.gateway.shared();
    let runtime = shared.runtime.load_full();
    let budgets = &runtime.config.budgets;
    let now = now_ms();
    let mut out = Vec::new();
    for b in budgets.iter().filter(|b| visible(key, b)) {
        if only.is_some_and(|id| id != b.id) {
            continue;
        }
        let k = key_for(b, now);
        let state = shared.counters.state(&k).await.map_err(|e| {
            tracing::error!(error = %e, "budget counters unavailable");
            ApiError::unavailable("budget_unavailable", "budget counters are unavailable; retry shortly")
        })?;
        let remaining =
            b.limit_micros.saturating_sub(state.spent_micros).saturating_sub(state.reserved_micros);
        out.push(BudgetView {
            name: b.id.clone(),
            subject: json!({ "kind": b.subject_kind.as_str(), "name": b.subject_name }),
            enforcement: if b.hard { "hard" } else { "soft" },
            period: format!("{:?}", b.period),
            limit: format_usd(b.limit_micros),
            spent: format_usd(state.spent_micros),
            reserved: format_usd(state.reserved_micros),
            remaining: format_usd(remaining),
            limit_micros: b.limit_micros,
            spent_micros: state.spent_micros,
            reserved_micros: state.reserved_micros,
            remaining_micros: remaining,
            period_start: rfc3339(k.window.start_ms),
            period_end: rfc3339(k.window.end_ms),
            parent: b.parent.and_then(|p| budgets.get(p)).map(|p| p.id.clone()),
            exhausted: state.spent_micros >= b.limit_micros,
        });
    }
    Ok(out)
}

pub async fn list(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap) -> Response {
    respond(
        async {
            let key = caller(&cp, &headers).await?;
            Ok(Json(json!({ "budgets": views(&cp, &key, None).await? })).into_response())
        }
        .await,
    )
}

async fn one(cp: &ControlPlane, headers: &HeaderMap, id: &str) -> ApiResult {
    let key = caller(cp, headers).await?;
    let found = views(cp, &key, Some(id)).await?;
    match found.into_iter().next() {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(ApiError::not_found("budget_not_found", format!("no budget {id:?} visible to this key"))),
    }
}

pub async fn get_one(
    State(cp): State<Arc<ControlPlane>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(one(&cp, &headers, &format!("default/{name}")).await)
}

pub async fn get_namespaced(
    State(cp): State<Arc<ControlPlane>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    respond(one(&cp, &headers, &format!("{namespace}/{name}")).await)
}
