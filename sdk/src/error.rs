//! The SDK's one error type. Gateway refusals become typed variants agent code can match on
//! (a budget that ran out, a safety policy, a rate limit, a denied tool); everything else
//! keeps the gateway's code and message.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde_json::Value;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in the terms an agent can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A hard budget cannot cover the request until it resets (HTTP 429 `budget_exceeded`).
    #[error("budget {budget} is exhausted: {remaining_micros} micro-USD remaining ({message})")]
    BudgetExceeded {
        /// `namespace/name` of the budget that refused.
        budget: String,
        /// What is left in the period, micro-USD.
        remaining_micros: u64,
        /// When the period ends (`None` for a `total` budget).
        resets_at: Option<DateTime<Utc>>,
        /// The gateway's message.
        message: String,
    },
    /// A safety policy blocked the request or the reply (HTTP 400 `policy_violation`, or an
    /// error event that ended a stream).
    #[error("blocked by safety policy {policy}, rule {rule}: {message}")]
    PolicyViolation {
        /// `namespace/name` of the policy.
        policy: String,
        /// The rule (`pii.email`, `tools.deny`, ...).
        rule: String,
        /// The gateway's message (never the matched text).
        message: String,
    },
    /// The runtime service denied a tool call ([`crate::ToolVerdict::into_arguments`]).
    #[error("tool {tool} denied by safety policy {policy}, rule {rule}: {reason}")]
    ToolDenied {
        /// The tool.
        tool: String,
        /// `namespace/name` of the policy.
        policy: String,
        /// The rule.
        rule: String,
        /// Why, for the agent or its developer.
        reason: String,
    },
    /// A rate limit (the caller's or the provider's); retry after the given time.
    #[error("rate limited{}: {message}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// How long to wait, when the gateway said.
        retry_after: Option<Duration>,
        /// The gateway's message.
        message: String,
    },
    /// No key, or an unknown, revoked or expired one.
    #[error("not authenticated: {message}")]
    Unauthenticated {
        /// The gateway's message.
        message: String,
    },
    /// The key may not do this (a model it is not allowed, say).
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// The gateway's message.
        message: String,
    },
    /// The request is malformed; `param` names the field when known.
    #[error("invalid request{}: {message}", param.as_deref().map(|p| format!(" ({p})")).unwrap_or_default())]
    InvalidRequest {
        /// The field at fault.
        param: Option<String>,
        /// The gateway's message.
        message: String,
    },
    /// An unknown model, budget or path.
    #[error("not found: {message}")]
    NotFound {
        /// The gateway's message.
        message: String,
    },
    /// The gateway or the provider is unavailable for now; retry.
    #[error("unavailable: {message}")]
    Unavailable {
        /// The gateway's message.
        message: String,
    },
    /// Any other error answer from the gateway.
    #[error("gateway error {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The gateway's error code.
        code: String,
        /// The gateway's message.
        message: String,
    },
    /// Any other gRPC status from the runtime service.
    #[error("runtime service: {0}")]
    Grpc(Box<tonic::Status>),
    /// The gateway could not be reached or the connection broke.
    #[error("transport: {0}")]
    Transport(String),
    /// An answer that could not be decoded.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The client is not configured (a missing key, a bad base URL).
    #[error("configuration: {0}")]
    Config(String),
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Policy and rule out of the gateway's violation message ("... by safety policy P: rule R (...)"),
/// for stream error events, which carry no headers.
fn violation_from_message(message: &str) -> Option<(String, String)> {
    let rest = &message[message.find("safety policy ")? + "safety policy ".len()..];
    let (policy, rest) = rest.split_once(": rule ")?;
    let rule = rest.split([' ', ',']).next()?;
    Some((policy.to_owned(), rule.to_owned()))
}

impl Error {
    /// The error of an HTTP error answer (the OpenAI or Anthropic error format).
    pub fn from_http(status: u16, headers: &HeaderMap, body: &[u8]) -> Self {
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let error = &parsed["error"];
        let message = error["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
        // OpenAI's format has `code`; Anthropic's puts its kind in `type`.
        let code = error["code"].as_str().or_else(|| error["type"].as_str()).unwrap_or("").to_owned();
        let param = error["param"].as_str().map(str::to_owned);
        let retry_after = header(headers, "retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        match (status, code.as_str()) {
            (_, "budget_exceeded") => Self::BudgetExceeded {
                budget: header(headers, "x-tollgate-budget").unwrap_or_default().to_owned(),
                remaining_micros: header(headers, "x-tollgate-budget-remaining-micros")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                resets_at: header(headers, "x-tollgate-budget-reset")
                    .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                    .map(|t| t.with_timezone(&Utc)),
                message,
            },
            (_, "policy_violation") => {
                let (policy, rule) =
                    match (header(headers, "x-tollgate-policy"), header(headers, "x-tollgate-rule")) {
                        (Some(p), Some(r)) => (p.to_owned(), r.to_owned()),
                        _ => violation_from_message(&message).unwrap_or_default(),
                    };
                Self::PolicyViolation { policy, rule, message }
            }
            (429, _) | (_, "rate_limit_error") => Self::RateLimited { retry_after, message },
            (401, _) | (_, "authentication_error") => Self::Unauthenticated { message },
            (403, _) | (_, "permission_error") => Self::PermissionDenied { message },
            (404, _) | (_, "not_found_error") => Self::NotFound { message },
            (400 | 413 | 415 | 422, _) => Self::InvalidRequest { param, message },
            (503 | 529, _) => Self::Unavailable { message },
            _ => Self::Api { status, code, message },
        }
    }

    /// The error of an error event inside a stream (`{"error": {...}}`, or Anthropic's
    /// `{"type": "error", "error": {...}}`).
    pub fn from_stream_event(data: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(data).ok()?;
        let e = v.get("error")?;
        let code = e["code"].as_str().or_else(|| e["type"].as_str()).unwrap_or("");
        let status = match code {
            "policy_violation" => 400,
            "rate_limit_error" | "rate_limit_exceeded" => 429,
            _ => 502,
        };
        Some(Self::from_http(status, &HeaderMap::new(), v.to_string().as_bytes()))
    }

    /// The error of a runtime-service status.
    pub fn from_status(status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            tonic::Code::Unauthenticated => Self::Unauthenticated { message },
            tonic::Code::PermissionDenied => Self::PermissionDenied { message },
            tonic::Code::NotFound => Self::NotFound { message },
            tonic::Code::Unavailable => Self::Unavailable { message },
            tonic::Code::ResourceExhausted => Self::RateLimited { retry_after: None, message },
            tonic::Code::InvalidArgument => {
                use tonic_types::StatusExt;
                let param = status
                    .get_error_details()
                    .bad_request()
                    .and_then(|b| b.field_violations.first().map(|v| v.field.clone()));
                Self::InvalidRequest { param, message }
            }
            _ => Self::Grpc(Box::new(status)),
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable { .. } | Self::Transport(_))
            || matches!(self, Self::Api { status, .. } if *status >= 500)
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        // NB: reqwest's messages name the URL, never headers, so no key can leak here.
        if e.is_decode() { Self::Decode(e.to_string()) } else { Self::Transport(e.to_string()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn budget_refusals_carry_budget_remaining_and_reset() {
        let e = Error::from_http(
            429,
            &headers(&[
                ("x-tollgate-budget", "ai/bot"),
                ("x-tollgate-budget-remaining-micros", "1500000"),
                ("x-tollgate-budget-reset", "2026-11-28T00:00:00Z"),
                ("retry-after", "30"),
            ]),
            br#"{"error":{"message":"budget ai/bot is exhausted","type":"rate_limit_error","code":"budget_exceeded"}}"#,
        );
        let Error::BudgetExceeded { budget, remaining_micros, resets_at, .. } = e else { panic!("{e:?}") };
        assert_eq!((budget.as_str(), remaining_micros), ("ai/bot", 1_500_000));
        assert_eq!(resets_at.unwrap().to_rfc3339(), "2026-11-28T00:00:00+00:00");
    }

    #[test]
    fn policy_violations_from_headers_or_from_a_stream_event() {
        let e = Error::from_http(
            400,
            &headers(&[("x-tollgate-policy", "ai/p"), ("x-tollgate-rule", "pii.email")]),
            br#"{"error":{"message":"request blocked","code":"policy_violation"}}"#,
        );
        assert!(
            matches!(&e, Error::PolicyViolation { policy, rule, .. } if policy == "ai/p" && rule == "pii.email")
        );
        let e = Error::from_stream_event(
            r#"{"error":{"message":"response blocked by safety policy ai/out: rule secrets.aws_access_key (secret) at choices[0].delta.content, offset 3","code":"policy_violation"}}"#,
        )
        .unwrap();
        assert!(
            matches!(&e, Error::PolicyViolation { policy, rule, .. } if policy == "ai/out" && rule == "secrets.aws_access_key"),
            "{e:?}"
        );
    }

    #[test]
    fn other_statuses_map_to_what_an_agent_can_do() {
        let e = Error::from_http(
            429,
            &headers(&[("retry-after", "7")]),
            br#"{"error":{"code":"rate_limit_exceeded","message":"slow"}}"#,
        );
        assert!(matches!(e, Error::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 7));
        assert!(matches!(Error::from_http(401, &HeaderMap::new(), b"{}"), Error::Unauthenticated { .. }));
        let e = Error::from_http(
            400,
            &HeaderMap::new(),
            br#"{"error":{"code":"invalid_request_error","param":"messages","message":"m"}}"#,
        );
        assert!(matches!(e, Error::InvalidRequest { param: Some(p), .. } if p == "messages"));
        let e = Error::from_http(502, &HeaderMap::new(), b"<html>bad gateway</html>");
        assert!(matches!(&e, Error::Api { status: 502, message, .. } if message.contains("bad gateway")));
        assert!(e.is_retryable());
        // Anthropic's format.
        let e = Error::from_http(
            400,
            &HeaderMap::new(),
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"m"}}"#,
        );
        assert!(matches!(e, Error::InvalidRequest { .. }));
    }
}
