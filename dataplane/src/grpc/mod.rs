//! The agent runtime service `tollgate.v1.Runtime` (tonic), served on the gateway's own port
//! next to the HTTP API (gRPC is HTTP/2; the server speaks HTTP/1 and h2c on one socket).
//!
//! Flow of a call: metadata → [`crate::auth::KeyService`] (the same virtual keys as HTTP) →
//! the principal's [`crate::safety::PolicySet`] or budgets from the configuration in force →
//! a pure decision ([`tool_verdict`], [`text_verdict`]) → the response. Findings are logged
//! and counted exactly as on the HTTP path ([`crate::Shared::report_findings`]); every call
//! gets a span (parented by the caller's `traceparent`) and the `tollgate_grpc_*` metrics.

use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use serde_json::{Value, json};
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::runtime_server::{Runtime, RuntimeServer};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::Shared;
use crate::auth::KeyRecord;
use crate::error::ApiError;
use crate::safety::{Finding, Outcome, PolicySet, Stage, Subject, Verdict, Wire};

/// The `domain` of every `google.rpc.ErrorInfo` this service sends.
pub const ERROR_DOMAIN: &str = "tollgate.dev";
/// Longest tool name accepted.
pub const MAX_TOOL_NAME: usize = 256;
/// Largest text or argument document accepted (bytes).
pub const MAX_TEXT: usize = 1 << 20;
/// Largest encoded request message; beyond it tonic answers `OUT_OF_RANGE`/`RESOURCE_EXHAUSTED`.
const MAX_MESSAGE: usize = MAX_TEXT + 64 * 1024;

/// The service, ready to be routed (`/tollgate.v1.Runtime/*`).
pub fn server(shared: Arc<Shared>) -> RuntimeServer<RuntimeService> {
    RuntimeServer::new(RuntimeService { shared })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(4 * MAX_MESSAGE)
}

/// `tollgate.v1.Runtime` over the gateway's shared state.
#[derive(Debug, Clone)]
pub struct RuntimeService {
    shared: Arc<Shared>,
}

/// What a tool call may do, decided from a [`Verdict`].
#[derive(Debug, Clone, PartialEq)]
pub enum ToolVerdict {
    /// Run it as asked.
    Allow,
    /// Run it with these arguments (JSON) instead.
    AllowRedacted(String),
    /// Do not run it.
    Deny { policy: String, rule: String, reason: String },
}

/// The synthetic reply a tool call is checked as: one assistant message calling `tool`,
/// so the same tool rules and output detectors that guard replies on the HTTP path decide.
fn tool_call_reply(tool: &str, arguments: &str) -> Value {
    json!({
        "object": "chat.completion",
        "choices": [{
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": "call_0",
                    "type": "function",
                    "function": { "name": tool, "arguments": arguments }
                }]
            }
        }]
    })
}

/// Where the synthetic reply keeps the call; locations are reported relative to it
/// (`arguments.url`, `name`).
const CALL_PATH: &str = "choices[0].message.tool_calls[0].function.";

fn relative(mut f: Finding) -> Finding {
    if let Some(l) = &mut f.location
        && let Some(rest) = l.path.strip_prefix(CALL_PATH)
    {
        l.path = rest.to_owned();
        l.message = None;
    }
    f
}

/// Decides a tool call (pure). `arguments` must already be valid JSON.
pub fn tool_verdict(policies: &PolicySet, tool: &str, arguments: &str) -> (ToolVerdict, Vec<Finding>) {
    if policies.is_empty() {
        return (ToolVerdict::Allow, Vec::new());
    }
    let mut verdict = policies.check_response(&tool_call_reply(tool, arguments), Wire::OpenAi);
    verdict.findings = verdict.findings.into_iter().map(relative).collect();
    if let Outcome::Block(v) = verdict.outcome {
        verdict.outcome = Outcome::Block(relative(v));
    }
    let decision = match verdict.outcome {
        Outcome::Allow => ToolVerdict::Allow,
        Outcome::Block(v) => ToolVerdict::Deny {
            policy: v.policy.to_string(),
            rule: v.rule.to_string(),
            reason: v.message().replace("response blocked", "tool call blocked"),
        },
        Outcome::Redact(body) => {
            match body.pointer("/choices/0/message/tool_calls/0/function/arguments").and_then(Value::as_str) {
                Some(args) => ToolVerdict::AllowRedacted(args.to_owned()),
                // NB: the engine redacted something it did not put back where we look; refuse
                // rather than run the tool with what may still hold the sensitive value.
                None => ToolVerdict::Deny {
                    policy: "tollgate".to_owned(),
                    rule: "engine.error".to_owned(),
                    reason: "the redacted arguments could not be recovered".to_owned(),
                },
            }
        }
    };
    (decision, verdict.findings)
}

/// A text check's decision: (decision, policy, rule, reason, redacted text).
pub fn text_verdict(verdict: &Verdict) -> (pb::Decision, String, String, String, String) {
    match &verdict.outcome {
        Outcome::Allow => (pb::Decision::Allow, String::new(), String::new(), String::new(), String::new()),
        Outcome::Redact(v) => (
            pb::Decision::AllowRedacted,
            String::new(),
            String::new(),
            String::new(),
            v.as_str().unwrap_or_default().to_owned(),
        ),
        Outcome::Block(f) => {
            (pb::Decision::Deny, f.policy.to_string(), f.rule.to_string(), f.message(), String::new())
        }
    }
}

fn finding_pb(f: &Finding) -> pb::Finding {
    pb::Finding {
        policy: f.policy.to_string(),
        rule: f.rule.to_string(),
        category: serde_json::to_value(f.category)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        action: f.action.as_str().to_owned(),
        audit: f.audit,
        path: f.location.as_ref().map(|l| l.path.clone()).unwrap_or_default(),
    }
}

/// `INVALID_ARGUMENT` naming the field.
fn invalid(field: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

/// An HTTP-path error as a gRPC status, with its error code as the `ErrorInfo` reason.
fn status_of(e: &ApiError) -> Status {
    let code = match e.status.as_u16() {
        400 | 413 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Internal,
    };
    Status::with_error_details(
        code,
        e.message.clone(),
        ErrorDetails::with_error_info(e.code, ERROR_DOMAIN, std::collections::HashMap::new()),
    )
}

fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

impl RuntimeService {
    /// Runs one call: span, authentication, metrics.
    async fn call<Req, Res, F, Fut>(
        &self,
        method: &'static str,
        request: Request<Req>,
        f: F,
    ) -> Result<Response<Res>, Status>
    where
        F: FnOnce(Arc<KeyRecord>, String, Req) -> Fut,
        Fut: std::future::Future<Output = Result<Res, Status>>,
    {
        let started = Instant::now();
        let request_id = uuid::Uuid::now_v7().to_string();
        let (metadata, _, message) = request.into_parts();
        let headers: HeaderMap = metadata.into_headers();
        let span = tracing::info_span!(
            "tollgate.grpc",
            otel.name = method,
            rpc.system = "grpc",
            rpc.service = "tollgate.v1.Runtime",
            rpc.method = method,
            request_id = %request_id,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        crate::observability::set_parent_from_headers(&span, &headers);
        let result = tracing::Instrument::instrument(
            async {
                let key = self
                    .shared
                    .keys
                    .authenticate(&headers, crate::now_ms())
                    .await
                    .map_err(|e| status_of(&e))?;
                f(key, request_id.clone(), message).await
            },
            span.clone(),
        )
        .await;
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        };
        span.record("rpc.grpc.status_code", code as i32);
        if code != Code::Ok {
            tracing::info!(parent: &span, method, code = code_label(code), "runtime call refused");
        }
        self.shared.metrics.grpc_finished(method, code_label(code), started.elapsed());
        let mut response = Response::new(result?);
        if let Ok(v) = request_id.parse() {
            response.metadata_mut().insert("x-request-id", v);
        }
        Ok(response)
    }

    fn policies(&self, key: &KeyRecord) -> Arc<PolicySet> {
        self.shared.runtime.load().safety.policies_for(&Subject::from_principal(&key.principal, None))
    }
}

#[tonic::async_trait]
impl Runtime for RuntimeService {
    async fn check_tool(
        &self,
        request: Request<pb::CheckToolRequest>,
    ) -> Result<Response<pb::CheckToolResponse>, Status> {
        self.call("CheckTool", request, |key, request_id, req| async move {
            let tool = req.tool.trim();
            if tool.is_empty() {
                return Err(invalid("tool", "is required"));
            }
            if tool.len() > MAX_TOOL_NAME || tool.chars().any(char::is_control) {
                return Err(invalid(
                    "tool",
                    format!("must be at most {MAX_TOOL_NAME} bytes without control characters"),
                ));
            }
            let arguments =
                if req.arguments_json.trim().is_empty() { "{}" } else { req.arguments_json.as_str() };
            if arguments.len() > MAX_TEXT {
                return Err(invalid("arguments_json", format!("is larger than {MAX_TEXT} bytes")));
            }
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(arguments) {
                return Err(invalid("arguments_json", format!("is not valid JSON: {e}")));
            }
            if let Some(c) = &req.context {
                tracing::info!(run_id = %c.run_id, tool_call_id = %c.tool_call_id, tool, "tool check");
            }
            let policies = self.policies(&key);
            let (verdict, findings) = tool_verdict(&policies, tool, arguments);
            self.shared.report_findings(&request_id, Some(principal_of(&key)), &findings);
            let findings = findings.iter().map(finding_pb).collect();
            Ok(match verdict {
                ToolVerdict::Allow => pb::CheckToolResponse {
                    decision: pb::Decision::Allow.into(),
                    findings,
                    ..Default::default()
                },
                ToolVerdict::AllowRedacted(args) => pb::CheckToolResponse {
                    decision: pb::Decision::AllowRedacted.into(),
                    redacted_arguments_json: args,
                    findings,
                    ..Default::default()
                },
                ToolVerdict::Deny { policy, rule, reason } => pb::CheckToolResponse {
                    decision: pb::Decision::Deny.into(),
                    policy,
                    rule,
                    reason,
                    redacted_arguments_json: String::new(),
                    findings,
                },
            })
        })
        .await
    }

    async fn validate_text(
        &self,
        request: Request<pb::ValidateTextRequest>,
    ) -> Result<Response<pb::ValidateTextResponse>, Status> {
        self.call("ValidateText", request, |key, request_id, req| async move {
            let stage = match pb::Stage::try_from(req.stage) {
                Ok(pb::Stage::Input) => Stage::Input,
                Ok(pb::Stage::Output) => Stage::Output,
                Ok(pb::Stage::Unspecified) | Err(_) => {
                    return Err(invalid("stage", "must be STAGE_INPUT or STAGE_OUTPUT"));
                }
            };
            if req.text.len() > MAX_TEXT {
                return Err(invalid("text", format!("is larger than {MAX_TEXT} bytes")));
            }
            let policies = self.policies(&key);
            let verdict = policies.check_text(&req.text, stage);
            self.shared.report_findings(&request_id, Some(principal_of(&key)), &verdict.findings);
            let (decision, policy, rule, reason, redacted_text) = text_verdict(&verdict);
            Ok(pb::ValidateTextResponse {
                decision: decision.into(),
                policy,
                rule,
                reason,
                redacted_text,
                findings: verdict.findings.iter().map(finding_pb).collect(),
            })
        })
        .await
    }

    async fn get_budget(
        &self,
        request: Request<pb::GetBudgetRequest>,
    ) -> Result<Response<pb::GetBudgetResponse>, Status> {
        self.call("GetBudget", request, |key, _request_id, req| async move {
            let runtime = self.shared.runtime.load_full();
            let budgets = &runtime.config.budgets;
            let wanted = match req.name.trim() {
                "" => None,
                n if n.len() > 253 * 2 => return Err(invalid("name", "is too long")),
                n if n.contains('/') => Some(n.to_owned()),
                n => Some(format!("default/{n}")),
            };
            let now = crate::now_ms();
            let mut out = Vec::new();
            for i in runtime.budget_index.applicable(budgets, &key.principal) {
                if wanted.as_deref().is_some_and(|w| budgets.get(i).is_none_or(|b| b.id != w)) {
                    continue;
                }
                let status =
                    crate::budget::status(&self.shared.counters, budgets, i, now).await.map_err(|e| {
                        tracing::error!(error = %e, "budget counters unavailable");
                        status_of(&ApiError::unavailable(
                            "budget_unavailable",
                            "budget counters are unavailable; retry shortly",
                        ))
                    })?;
                let Some(s) = status else { continue };
                let rfc = |ms| crate::budget::rfc3339(ms).unwrap_or_default();
                out.push(pb::Budget {
                    name: s.id,
                    subject_kind: s.subject_kind.as_str().to_owned(),
                    subject_name: s.subject_name,
                    enforcement: if s.hard { "hard" } else { "soft" }.to_owned(),
                    limit_micros: s.limit_micros,
                    spent_micros: s.spent_micros,
                    reserved_micros: s.reserved_micros,
                    remaining_micros: s.remaining_micros,
                    period_start: s.window.map(|w| rfc(w.start_ms)).unwrap_or_default(),
                    period_end: s.window.map(|w| rfc(w.end_ms)).unwrap_or_default(),
                    exhausted: s.exhausted,
                    parent: s.parent.unwrap_or_default(),
                });
            }
            if let Some(w) = wanted
                && out.is_empty()
            {
                return Err(Status::with_error_details(
                    Code::NotFound,
                    format!("no budget {w:?} applies to this key"),
                    ErrorDetails::with_resource_info(
                        "tollgate.dev/Budget",
                        w,
                        "",
                        "not applicable to the caller",
                    ),
                ));
            }
            Ok(pb::GetBudgetResponse { budgets: out })
        })
        .await
    }
}

/// `(kind, name)` of a key's principal, for the findings log.
fn principal_of(key: &crate::auth::KeyRecord) -> (&str, &str) {
    (key.principal.kind.as_str(), &key.principal.name)
}

#[cfg(test)]
mod tests;
