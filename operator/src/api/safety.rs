//! `POST /api/v1/safety/check`: try a policy on a text (admins any policy, others only
//! the policies that apply to them). Answers the verdict with the spans
//! that matched (policy, rule, category, location) — never the matched text itself.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tollgate_dataplane::budget::rfc3339;
use tollgate_dataplane::http::read_body;
use tollgate_dataplane::safety::log::FindingEvent;
use tollgate_dataplane::safety::{Finding, Outcome, SafetyEngine, Stage, Subject};
use tollgate_dataplane::store::FindingQuery;
use tollgate_dataplane::{ApiError, ApiFormat, now_ms};

use super::{Caller, ControlPlane, json_object, query, respond};
use crate::store::sql::HOUR_MS;

/// The request body.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// `namespace/name`, or a name in `default`.
    pub policy: String,
    /// The text to check.
    pub text: String,
    /// `input` (default) or `output`.
    #[serde(default)]
    pub stage: Option<Stage>,
}

/// `POST /api/v1/safety/check`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CheckResult {
    /// The policy applied (`namespace/name`).
    pub policy: String,
    /// `allow`, `redact` or `block`.
    pub outcome: &'static str,
    /// For `redact`: the text as it would be sent on.
    pub redacted: Option<Value>,
    /// For `block`: why.
    pub violation: Option<ViolationView>,
    /// Every rule that matched, with where (byte offsets into the text).
    pub findings: Vec<Finding>,
}

/// The finding that blocked.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ViolationView {
    /// What the caller would be told.
    pub message: String,
    /// The rule.
    pub rule: String,
}

/// Whether `policy` (`namespace/name`) applies to the caller's traffic: its selector names
/// the caller's principal or one of their teams (the key's and the directory's), or every
/// subject.
fn applies_to_caller(safety: &SafetyEngine, caller: &Caller, policy: &str) -> bool {
    let own = Subject::from_principal(&caller.key.principal, None);
    let as_member = caller.teams.iter().map(|t| Subject { team: Some(t.clone()), ..own.clone() });
    std::iter::once(own.clone())
        .chain(as_member)
        .any(|s| safety.policies_for(&s).policy_ids().any(|id| id == policy))
}

pub async fn check(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let result: super::ApiResult = async {
        let bytes = read_body(&parts.headers, body, 1 << 20).await?;
        let req: CheckRequest = serde_path_to_error::deserialize(json_object(&bytes)?).map_err(|e| {
            let path = e.path().to_string();
            ApiError::invalid(e.into_inner().to_string(), Some(path))
        })?;
        let stage = req.stage.unwrap_or(Stage::Input);
        let id =
            if req.policy.contains('/') { req.policy.clone() } else { format!("default/{}", req.policy) };
        let runtime = cp.gateway.shared().runtime.load_full();
        // NB: a policy that does not apply to a non-admin caller is answered exactly like one
        // that does not exist: trying texts on another team's policy would reveal its hidden
        // patterns, and even its existence is not theirs to know.
        let policy = runtime
            .safety
            .policy(&id)
            .filter(|_| caller.is_admin() || applies_to_caller(&runtime.safety, &caller, &id))
            .ok_or_else(|| ApiError::not_found("policy_not_found", format!("no SafetyPolicy {id:?}")))?;
        let verdict = policy.check_text(&req.text, stage);
        let (outcome, redacted, violation) = match verdict.outcome {
            Outcome::Allow => ("allow", None, None),
            Outcome::Redact(v) => ("redact", Some(v), None),
            Outcome::Block(v) => {
                ("block", None, Some(ViolationView { message: v.message(), rule: v.rule.to_string() }))
            }
        };
        Ok(Json(CheckResult { policy: id, outcome, redacted, violation, findings: verdict.findings })
            .into_response())
    }
    .await;
    result.unwrap_or_else(|e| e.into_response(ApiFormat::OpenAi))
}

/// `GET /api/v1/safety/violations` parameters.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ViolationsQuery {
    /// Start, RFC 3339, a date or epoch ms (default: 24 hours ago).
    from: Option<String>,
    /// End, exclusive (default: now).
    to: Option<String>,
    /// Events listed at most (1-500, default 100); `byHour` and `total` count them all.
    #[schemars(range(min = 1, max = 500))]
    #[serde(default, deserialize_with = "super::page_limit")]
    limit: Option<usize>,
}

/// `GET /api/v1/safety/violations`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Violations {
    /// The newest findings in the range.
    pub items: Vec<FindingEvent>,
    /// Findings per hour in the range (hours without any are left out), oldest first.
    pub by_hour: Vec<HourCount>,
    /// Findings in the range.
    pub total: usize,
}

/// Findings in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct HourCount {
    /// The hour's start (RFC 3339).
    pub key: String,
    /// Findings.
    pub count: usize,
}

pub async fn violations(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Response {
    respond(
        async {
            let asked: ViolationsQuery = query(&uri)?;
            let (from_ms, to_ms) =
                super::usage::time_range(asked.from.as_deref(), asked.to.as_deref(), now_ms(), 24 * HOUR_MS)?;
            let resources = if caller.is_admin() { Arc::default() } else { cp.all_resources().await? };
            let visible = caller.visible_subjects(&resources).map(|(principals, _)| principals);
            let q = FindingQuery { from_ms, to_ms, principals: visible.map(|v| v.into_iter().collect()) };
            let limit = i64::try_from(asked.limit.unwrap_or(100).clamp(1, 500)).unwrap_or(100);
            let items = cp.store.findings(&q, limit).await.map_err(|e| super::storage(&e))?;
            let counts = cp.store.finding_counts(&q).await.map_err(|e| super::storage(&e))?;
            let total = counts.iter().map(|(_, n)| usize::try_from(*n).unwrap_or(0)).sum();
            let by_hour = counts
                .into_iter()
                .filter_map(|(start, n)| {
                    rfc3339(start).map(|key| HourCount { key, count: usize::try_from(n).unwrap_or(0) })
                })
                .collect();
            Ok(Json(Violations { items, by_hour, total }).into_response())
        }
        .await,
    )
}

/// `GET /api/v1/breakers`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BreakerList {
    /// One entry per IP token and model that a gateway has called (this process's state,
    /// and what the other gateways reported in the last 30 s); for non-admins only the
    /// chat models they may use.
    pub items: Vec<BreakerView>,
}

/// One IP token and model across the gateways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakerView {
    /// The IP token (`namespace/name`).
    pub ip_token: String,
    /// The model.
    pub model: String,
    /// The worst state any gateway has: `closed` (calls go through), `half_open` (probes
    /// only) or `open` (none do).
    pub state: String,
    /// Gateways reporting this breaker.
    pub gateways: usize,
    /// Of those, how many are not `closed`.
    pub not_closed: usize,
}

/// How bad a state is (unknown states count as open).
fn severity(state: &str) -> u8 {
    match state {
        "closed" => 0,
        "half_open" => 1,
        _ => 2,
    }
}

/// One view per (IP token, model) from every gateway's (IP token, model, state).
pub fn aggregate<'a>(states: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>) -> Vec<BreakerView> {
    let mut by: std::collections::BTreeMap<(&str, &str), BreakerView> = std::collections::BTreeMap::new();
    for (token, model, state) in states {
        let v = by.entry((token, model)).or_insert_with(|| BreakerView {
            ip_token: token.to_owned(),
            model: model.to_owned(),
            state: state.to_owned(),
            gateways: 0,
            not_closed: 0,
        });
        v.gateways += 1;
        v.not_closed += usize::from(state != "closed");
        if severity(state) > severity(&v.state) {
            state.clone_into(&mut v.state);
        }
    }
    by.into_values().collect()
}

/// Other gateways' reports older than this are left out (they report every 5 s).
const BREAKER_REPORT_TTL_MS: i64 = 30_000;

pub async fn breakers(State(cp): State<Arc<ControlPlane>>, Extension(caller): Extension<Caller>) -> Response {
    respond(
        async {
            let own = cp.gateway.shared().breakers.states(std::time::Instant::now());
            let reported = cp
                .store
                .breaker_states(now_ms() - BREAKER_REPORT_TTL_MS)
                .await
                .map_err(|e| super::storage(&e))?;
            let me = cp.gateway.instance();
            let others = reported.iter().filter(|r| Some(r.instance.as_str()) != me);
            let mut items = aggregate(
                own.iter()
                    .map(|(t, m, s)| (t.as_str(), m.as_str(), s.as_str()))
                    .chain(others.map(|r| (r.ip_token.as_str(), r.model.as_str(), r.state.as_str()))),
            );
            if !caller.is_admin() {
                // Others see the models they may use, served by the IP tokens /me names.
                let runtime = cp.gateway.shared().runtime.load_full();
                let choices = super::directory::model_choices(&runtime, &caller.key);
                items.retain(|b| {
                    choices.iter().any(|c| {
                        c.model == b.model
                            && c.providers
                                .iter()
                                .any(|p| *p == b.ip_token || format!("default/{p}") == b.ip_token)
                    })
                });
            }
            Ok(Json(BreakerList { items }).into_response())
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakers_aggregate_to_the_worst_state_per_token_and_model() {
        let views = aggregate([
            ("default/a", "m1", "closed"),
            ("default/a", "m1", "open"),
            ("default/a", "m1", "half_open"),
            ("default/a", "m2", "closed"),
            ("default/b", "m1", "half_open"),
            ("default/b", "m1", "closed"),
        ]);
        let got: Vec<(&str, &str, &str, usize, usize)> = views
            .iter()
            .map(|v| (v.ip_token.as_str(), v.model.as_str(), v.state.as_str(), v.gateways, v.not_closed))
            .collect();
        assert_eq!(
            got,
            [
                ("default/a", "m1", "open", 3, 2),
                ("default/a", "m2", "closed", 1, 0),
                ("default/b", "m1", "half_open", 2, 1)
            ]
        );
    }
}
