//! The two API dialects the mock speaks, and their error bodies.

use axum::extract::Request;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::delivery::json_bytes;

/// Which provider's wire format a response uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    OpenAi,
    Anthropic,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorDetail<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: Option<&'static str>,
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicErrorDetail<'a>,
}

#[derive(Serialize)]
struct AnthropicErrorDetail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

impl Flavor {
    /// An error response in this flavor's shape, its `type` derived from the status.
    pub(crate) fn error(self, status: StatusCode, message: &str) -> Response {
        let body = match self {
            Self::OpenAi => {
                let (kind, code) = match status.as_u16() {
                    401 => ("invalid_request_error", Some("invalid_api_key")),
                    403 => ("permission_error", None),
                    404 => ("invalid_request_error", Some("not_found")),
                    429 => ("rate_limit_error", Some("rate_limit_exceeded")),
                    400..=499 => ("invalid_request_error", None),
                    _ => ("server_error", None),
                };
                json_bytes(&OpenAiError { error: OpenAiErrorDetail { message, kind, param: None, code } })
            }
            Self::Anthropic => {
                // Anthropic's documented error types, by status.
                let kind = match status.as_u16() {
                    401 => "authentication_error",
                    403 => "permission_error",
                    404 => "not_found_error",
                    413 => "request_too_large",
                    429 => "rate_limit_error",
                    503 | 529 => "overloaded_error",
                    400..=499 => "invalid_request_error",
                    _ => "api_error",
                };
                json_bytes(&AnthropicError { kind: "error", error: AnthropicErrorDetail { kind, message } })
            }
        };
        (status, [(CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
    }

    pub(crate) fn bad_request(self, message: &str) -> Response {
        self.error(StatusCode::BAD_REQUEST, message)
    }

    /// The response for an injected `status:<code>` fault.
    pub(crate) fn status_fault(self, code: u16) -> Response {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.error(status, &format!("mock fault: HTTP {}", status.as_u16()))
    }

    /// The response for an injected `429:<secs>` fault.
    pub(crate) fn rate_limited(self, retry_after_secs: u64) -> Response {
        let mut resp = self.error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("mock fault: rate limited, retry after {retry_after_secs}s"),
        );
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
        resp
    }

    /// Anthropic clients always send `anthropic-version`; use it to pick the error shape
    /// where the path does not say.
    fn of_request(req: &Request) -> Self {
        if req.uri().path().starts_with("/v1/messages") || req.headers().contains_key("anthropic-version") {
            Self::Anthropic
        } else {
            Self::OpenAi
        }
    }
}

pub(crate) async fn not_found(req: Request) -> Response {
    let message = format!("Unknown request URL: {} {}", req.method(), req.uri().path());
    Flavor::of_request(&req).error(StatusCode::NOT_FOUND, &message)
}

pub(crate) async fn method_not_allowed(req: Request) -> Response {
    let message = format!("Method {} not allowed on {}", req.method(), req.uri().path());
    Flavor::of_request(&req).error(StatusCode::METHOD_NOT_ALLOWED, &message)
}
