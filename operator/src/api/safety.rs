//! `POST /api/v1/safety/check`: try a policy on a text. Answers the verdict with the spans
//! that matched (policy, rule, category, location) — never the matched text itself.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_dataplane::http::{parse_json, read_body};
use tollgate_dataplane::safety::{Outcome, Stage};
use tollgate_dataplane::{ApiError, ApiFormat};

use super::ControlPlane;

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
    pub stage: Option<String>,
}

pub async fn check(State(cp): State<Arc<ControlPlane>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let result = async {
        let bytes = read_body(&parts.headers, body, 1 << 20).await?;
        let req: CheckRequest = serde_path_to_error::deserialize(parse_json(&bytes)?).map_err(|e| {
            let path = e.path().to_string();
            ApiError::invalid(e.into_inner().to_string(), Some(path))
        })?;
        let stage = match req.stage.as_deref() {
            None | Some("input") => Stage::Input,
            Some("output") => Stage::Output,
            Some(other) => {
                return Err(ApiError::invalid(
                    format!("stage must be input or output, not {other:?}"),
                    Some("stage".into()),
                ));
            }
        };
        let id =
            if req.policy.contains('/') { req.policy.clone() } else { format!("default/{}", req.policy) };
        let runtime = cp.gateway.shared().runtime.load_full();
        let policy = runtime
            .safety
            .policy(&id)
            .ok_or_else(|| ApiError::not_found("policy_not_found", format!("no SafetyPolicy {id:?}")))?;
        let verdict = policy.check_text(&req.text, stage);
        let (outcome, redacted, violation) = match verdict.outcome {
            Outcome::Allow => ("allow", Value::Null, Value::Null),
            Outcome::Redact(v) => ("redact", v, Value::Null),
            Outcome::Block(v) => ("block", Value::Null, json!({ "message": v.message(), "rule": v.rule })),
        };
        Ok(Json(json!({
            "policy": id,
            "outcome": outcome,
            "redacted": redacted,
            "violation": violation,
            "findings": verdict.findings,
        }))
        .into_response())
    }
    .await;
    result.unwrap_or_else(|e| e.into_response(ApiFormat::OpenAi))
}
