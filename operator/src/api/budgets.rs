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
use tollgate_dataplane::budget::{rfc3339, status};
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

async fn views(cp: &ControlPlane, key: &KeyRecord, only: Option<&str>) -> Result<Vec<BudgetView>, ApiError> {
    let shared = cp.gateway.shared();
    let runtime = shared.runtime.load_full();
    let budgets = &runtime.config.budgets;
    let now = now_ms();
    let mut out = Vec::new();
    for (i, b) in budgets.iter().enumerate().filter(|(_, b)| visible(key, b)) {
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
