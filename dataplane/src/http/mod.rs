//! The HTTP API (axum): OpenAI- and Anthropic-compatible endpoints, health and readiness.
//! One [`router`] serves `main`, the standalone CLI and the tests.

mod count_tokens;
mod models;
mod proxy;
mod responses_state;
pub mod server;
pub mod validate;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::Shared;
use crate::error::{ApiError, ApiFormat};

/// The data plane's routes. Unknown paths and wrong methods answer in OpenAI's error format.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions).fallback(method_not_allowed))
        .route("/v1/messages", post(messages).fallback(method_not_allowed_anthropic))
        .route(
            "/v1/messages/count_tokens",
            post(count_tokens::count_tokens).fallback(method_not_allowed_anthropic),
        )
        .route("/v1/responses", post(responses).fallback(method_not_allowed))
        .route("/v1/embeddings", post(embeddings).fallback(method_not_allowed))
        .route("/v1/models", get(models::list).fallback(method_not_allowed))
        .route("/v1/models/{*model}", get(models::get_one).fallback(method_not_allowed))
        .route(
            "/v1/responses/{id}",
            get(responses_state::retrieve).delete(responses_state::delete).fallback(method_not_allowed),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(responses_state::input_items).fallback(method_not_allowed),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        // The gRPC runtime service shares the port (HTTP/2, h2c or TLS-terminated).
        .route_service("/tollgate.v1.Runtime/{*method}", crate::grpc::server(Arc::clone(&shared)))
        .fallback(not_found)
        .with_state(shared)
}

async fn chat_completions(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    proxy::handle(shared, proxy::Endpoint::ChatCompletions, request).await
}

async fn messages(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    proxy::handle(shared, proxy::Endpoint::Messages, request).await
}

async fn responses(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    proxy::handle(shared, proxy::Endpoint::Responses, request).await
}

async fn embeddings(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    proxy::handle(shared, proxy::Endpoint::Embeddings, request).await
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

/// The endpoints an unknown path's 404 names.
const SERVED: &str = "POST /v1/chat/completions, POST /v1/responses, GET|DELETE /v1/responses/{id}, \
GET /v1/responses/{id}/input_items, POST /v1/messages, POST /v1/messages/count_tokens, \
POST /v1/embeddings, GET /v1/models, GET /v1/models/{model}";

/// The JSON 404 of an unknown path, naming the endpoints served, in the caller's format
/// (Anthropic's under `/v1/messages` or when the caller sends `anthropic-version`).
pub async fn not_found(request: Request) -> Response {
    let path = request.uri().path();
    let format = if path.starts_with("/v1/messages") || request.headers().contains_key("anthropic-version") {
        ApiFormat::Anthropic
    } else {
        ApiFormat::OpenAi
    };
    let message = if path.starts_with("/v1/") {
        format!("unknown path {}; Tollgate serves {SERVED}", sanitize_path(path))
    } else {
        format!("unknown path {}", sanitize_path(path))
    };
    ApiError::not_found("unknown_url", message).into_response(format)
}

async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response(ApiFormat::OpenAi)
}

async fn method_not_allowed_anthropic() -> Response {
    ApiError::method_not_allowed().into_response(ApiFormat::Anthropic)
}

/// Paths are echoed in errors; keep them short and printable.
fn sanitize_path(path: &str) -> String {
    path.chars().take(200).filter(|c| !c.is_control()).collect()
}

/// How long a request body may take to arrive: whole, and between two of its chunks. A
/// caller that sends headers and then a trickle (or nothing) is cut with a 408 instead of
/// holding its connection, its task and its place in the in-flight cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeouts {
    /// The whole body.
    pub total: Duration,
    /// Silence between two chunks.
    pub idle: Duration,
}

impl Default for BodyTimeouts {
    fn default() -> Self {
        Self { total: Duration::from_secs(30), idle: Duration::from_secs(10) }
    }
}

/// Reads a request body up to `limit` bytes (413 beyond it, judged by `Content-Length`
/// first) within the default [`BodyTimeouts`].
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    read_body_within(headers, body, limit, BodyTimeouts::default()).await
}

/// Reads a request body up to `limit` bytes within `timeouts` (408 when it is late).
pub async fn read_body_within(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeouts: BodyTimeouts,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let deadline = tokio::time::Instant::now() + timeouts.total;
    let mut body = body;
    // NB: a declared length is only a claim; a caller that announces 4 MiB and sends nothing
    // gets no 4 MiB buffer. The buffer grows with what arrives.
    let mut buf =
        bytes::BytesMut::with_capacity(declared.map_or(8 << 10, |n| n as usize).min(limit).min(64 << 10));
    loop {
        let wait = timeouts.idle.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(_))) => return Err(ApiError::invalid("the request body could not be read", None)),
            Err(_) => {
                let what = if tokio::time::Instant::now() >= deadline {
                    format!("the request body did not arrive within {} s", timeouts.total.as_secs())
                } else {
                    format!("the request body stalled for {} s", timeouts.idle.as_secs())
                };
                return Err(ApiError::body_timeout(what));
            }
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ApiError::too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
}

/// Deepest nesting of objects and arrays a request body may have.
pub const MAX_JSON_DEPTH: usize = 64;

/// Most objects and arrays in one request body. A parsed object costs several hundred
/// bytes however small its text, so this (with the body size) bounds what a request can
/// make the gateway allocate: 3 MB of 100,000 one-letter messages once cost 66-160 MB.
pub const MAX_JSON_CONTAINERS: usize = 50_000;

/// Counts the objects and arrays in a JSON text and its nesting depth, without parsing
/// it: one pass over the bytes, skipping strings. Stops early past the limits.
fn json_shape(bytes: &[u8]) -> Result<(), ApiError> {
    let (mut depth, mut containers) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                containers += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ApiError::invalid(
                        format!(
                            "the request body nests objects and arrays deeper than {MAX_JSON_DEPTH} levels"
                        ),
                        None,
                    ));
                }
                if containers > MAX_JSON_CONTAINERS {
                    return Err(ApiError::invalid(
                        format!(
                            "the request body has more than {MAX_JSON_CONTAINERS} objects and arrays; \
                             send fewer messages, parts or tools"
                        ),
                        None,
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a JSON body, naming line and column on failure. Bodies nested deeper than
/// [`MAX_JSON_DEPTH`] or holding more than [`MAX_JSON_CONTAINERS`] objects and arrays are
/// refused before parsing.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid("the request body is empty; expected a JSON object", None));
    }
    json_shape(bytes)?;
    serde_json::from_slice(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "ends too early",
            _ => "is not valid JSON",
        };
        let detail = e.to_string();
        let detail = detail.split(" at line ").next().unwrap_or_default();
        ApiError::invalid(
            format!("the request body {what} at line {} column {}: {detail}", e.line(), e.column()),
            None,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_line_and_column() {
        let e = parse_json(b"{\n  \"model\": ,\n}").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("line 2 column 12"), "{}", e.message);
        let e = parse_json(b"{\"a\": ").unwrap_err();
        assert!(e.message.contains("ends too early"), "{}", e.message);
        assert!(parse_json(b"  ").unwrap_err().message.contains("empty"));
        // Shape limits, checked before parsing; brackets inside strings do not count.
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(parse_json(deep.as_bytes()).unwrap_err().message.contains("deeper than 64"));
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(parse_json(ok.as_bytes()).is_ok());
        let in_string = format!("{{\"a\": \"{}\\\"{}\"}}", "[".repeat(100), "{".repeat(100_000));
        assert!(parse_json(in_string.as_bytes()).is_ok(), "brackets in strings are text");
        let many = format!("[{}{{}}]", "{},".repeat(50_000));
        assert!(parse_json(many.as_bytes()).unwrap_err().message.contains("more than 50000"));
    }
}
