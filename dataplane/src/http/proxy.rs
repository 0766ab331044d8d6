//! The request path: authenticate → parse and validate → resolve the model → choose an IP
//! token → translate if the upstream speaks the other wire format → call → stream or return
//! the answer in the caller's format → write the usage record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use tokio::sync::mpsc;
use tollgate_crds::iptoken::ModelKind;

use super::{parse_json, read_body, validate};
use crate::Shared;
use crate::auth::KeyRecord;
use crate::error::{ApiError, ApiFormat};
use crate::providers::sse::{SseEvent, SseParser};
use crate::providers::{Operation, Upstream, UpstreamError, Wire};
use crate::runtime::choose_target;
use crate::translate::{self, AnthropicToOpenAiStream, OpenAiToAnthropicStream, TokenUsage};
use crate::usage::UsageRecord;

/// Which API the caller used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/messages`
    Messages,
    /// `POST /v1/embeddings`
    Embeddings,
}

impl Endpoint {
    fn format(self) -> ApiFormat {
        match self {
            Self::Messages => ApiFormat::Anthropic,
            Self::ChatCompletions | Self::Embeddings => ApiFormat::OpenAi,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat.completions",
            Self::Messages => "messages",
            Self::Embeddings => "embeddings",
        }
    }

    fn wire(self) -> Wire {
        match self {
            Self::Messages => Wire::Anthropic,
            Self::ChatCompletions | Self::Embeddings => Wire::OpenAi,
        }
    }
}

/// What is known about a request so far, for its usage record.
struct Ctx {
    endpoint: Endpoint,
    request_id: String,
    started: Instant,
    ts_ms: i64,
    key: Option<Arc<KeyRecord>>,
    model: Option<String>,
    upstream_model: Option<String>,
    provider: Option<&'static str>,
    ip_token: Option<String>,
    stream: bool,
}

impl Ctx {
    fn record(&self, status: u16, usage: TokenUsage, error_class: Option<&'static str>) -> UsageRecord {
        let principal = self.key.as_ref().map(|k| &k.principal);
        UsageRecord {
            request_id: self.request_id.clone(),
            ts_ms: self.ts_ms,
            key_id: self.key.as_ref().map(|k| k.id.clone()),
            principal_kind: principal.map(|p| p.kind.as_str().to_owned()),
            principal_name: principal.map(|p| p.name.clone()),
            endpoint: self.endpoint.name(),
            model: self.model.clone(),
            upstream_model: self.upstream_model.clone(),
            provider: self.provider.map(str::to_owned),
            ip_token: self.ip_token.clone(),
            stream: self.stream,
            input_tokens: usage.input,
            output_tokens: usage.output,
            cached_input_tokens: usage.cached_input,
            latency_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            status,
            error_class,
        }
    }
}

/// Handles one API call end to end. Never panics; every failure is an [`ApiError`] in the
/// endpoint's format.
pub async fn handle(shared: Arc<Shared>, endpoint: Endpoint, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut ctx = Ctx {
        endpoint,
        request_id: request_id(&parts.headers),
        started: Instant::now(),
        ts_ms: crate::now_ms(),
        key: None,
        model: None,
        upstream_model: None,
        provider: None,
        ip_token: None,
        stream: false,
    };
    let mut response = match run(&shared, &mut ctx, &parts.headers, body).await {
        Ok(response) => response,
        Err(error) => {
            if ctx.key.is_some() {
                shared
                    .usage
                    .record(ctx.record(error.status.as_u16(), TokenUsage::default(), Some(error.class())))
                    .await;
            }
            if error.status.is_server_error() {
                tracing::warn!(request_id = %ctx.request_id, status = error.status.as_u16(), code = error.code, "request failed");
            }
            error.into_response(endpoint.format())
        }
    };
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

async fn run(
    shared: &Arc<Shared>,
    ctx: &mut Ctx,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = shared.keys.authenticate(headers, ctx.ts_ms).await?;
    ctx.key = Some(Arc::clone(&key));
    let bytes = read_body(headers, body, shared.options.max_body_bytes).await?;
    let mut value = parse_json(&bytes)?;
    let (model, stream, include_usage) = match ctx.endpoint {
        Endpoint::ChatCompletions => {
            let i = validate::chat_completions(&value)?;
            (i.model, i.stream, i.include_usage)
        }
        Endpoint::Messages => {
            let i = validate::messages(&value)?;
            (i.model, i.stream, i.include_usage)
        }
        Endpoint::Embeddings => (validate::embeddings(&value)?.model, false, false),
    };
    ctx.model = Some(model.clone());
    ctx.stream = stream;

    let runtime = shared.runtime.load_full();
    let route = runtime.route(&model).ok_or_else(|| {
        ApiError::not_found("model_not_found", format!("model {model:?} does not exist")).with_param("model")
    })?;
    if !key.allows_model(&model) {
        return Err(ApiError::forbidden(
            "model_not_allowed",
            format!("this key may not use model {model:?}"),
        )
        .with_param("model"));
    }
    let wanted = if ctx.endpoint == Endpoint::Embeddings { ModelKind::Embedding } else { ModelKind::Chat };
    if route.kind != wanted {
        let hint = match route.kind {
            ModelKind::Chat => "a chat model; use /v1/chat/completions or /v1/messages",
            ModelKind::Embedding => "an embedding model; use /v1/embeddings",
        };
        return Err(ApiError::invalid(format!("model {model:?} is {hint}"), Some("model".into())));
    }
    let target = choose_target(route, rand::random()).ok_or_else(|| {
        ApiError::unavailable("no_upstream", format!("no IP token is currently serving model {model:?}"))
    })?;
    let upstream = runtime
        .upstreams
        .get(target.ip_token)
        .ok_or_else(|| ApiError::internal("routing table is inconsistent"))?;
    ctx.upstream_model = Some(target.upstream_model.clone());
    ctx.provider = Some(upstream.provider_name());
    ctx.ip_token = Some(upstream.id.clone());

    let client_wire = ctx.endpoint.wire();
    let upstream_wire = upstream.wire();
    let upstream_model = target.upstream_model.as_str();
    let op = if ctx.endpoint == Endpoint::Embeddings { Operation::Embeddings } else { Operation::Chat };
    if op == Operation::Embeddings && upstream_wire != Wire::OpenAi {
        return Err(ApiError::invalid(
            format!("model {model:?} is served by a provider without embeddings"),
            None,
        ));
    }
    let upstream_body = match (client_wire, upstream_wire) {
        (Wire::OpenAi, Wire::OpenAi) | (Wire::Anthropic, Wire::Anthropic) => {
            if let Some(obj) = value.as_object_mut() {
                obj.insert("model".into(), Value::String(upstream_model.to_owned()));
                if stream && client_wire == Wire::OpenAi {
                    // Always ask for usage so the request can be accounted; stripped again
                    // below when the caller did not ask for it.
                    obj.insert("stream_options".into(), serde_json::json!({ "include_usage": true }));
                }
            }
            value
        }
        (Wire::OpenAi, Wire::Anthropic) => {
            translate::openai_request_to_anthropic(&value, upstream_model, shared.options.default_max_tokens)
                .map_err(|e| {
                    ApiError::invalid(
                        format!("cannot be served by this model's provider: {}", e.message),
                        Some(e.path),
                    )
                })?
        }
        (Wire::Anthropic, Wire::OpenAi) => translate::anthropic_request_to_openai(&value, upstream_model)
            .map_err(|e| {
                ApiError::invalid(
                    format!("cannot be served by this model's provider: {}", e.message),
                    Some(e.path),
                )
            })?,
    };
    let upstream_bytes = Bytes::from(serde_json::to_vec(&upstream_body).unwrap_or_default());
    let request = upstream
        .request(op, upstream_model, upstream_bytes, headers)
        .map_err(|_| ApiError::internal("could not build the upstream request"))?;
    let response = shared.client.send(upstream, request).await.map_err(|e| upstream_failure(&e, upstream))?;
    let status = response.status();
    if !status.is_success() {
        return Err(upstream_status_error(status, response, upstream).await);
    }
    let served_model = model.clone();
    if stream {
        let mode = match (client_wire, upstream_wire) {
            (Wire::OpenAi, Wire::OpenAi) => StreamMode::OpenAiPassthrough { include_usage },
            (Wire::Anthropic, Wire::Anthropic) => StreamMode::AnthropicPassthrough,
            (Wire::OpenAi, Wire::Anthropic) => StreamMode::AnthropicToOpenAi(Box::new(
                AnthropicToOpenAiStream::new(&served_model, include_usage),
            )),
            (Wire::Anthropic, Wire::OpenAi) => {
                StreamMode::OpenAiToAnthropic(Box::new(OpenAiToAnthropicStream::new(&served_model)))
            }
        };
        return Ok(stream_response(shared, ctx, response.into_body(), mode));
    }

    let limited = Limited::new(response.into_body(), MAX_UPSTREAM_BODY);
    let collected = tokio::time::timeout(shared.options.response_timeout, limited.collect())
        .await
        .map_err(|_| ApiError::timeout("the upstream did not finish its answer in time"))?
        .map_err(|_| {
            ApiError::bad_gateway("upstream_connection_error", "the upstream connection failed mid-answer")
        })?
        .to_bytes();
    let parsed: Value = serde_json::from_slice(&collected).map_err(|_| {
        ApiError::bad_gateway(
            "upstream_invalid_response",
            "the upstream answered with something that is not JSON",
        )
    })?;
    let (out, usage) = match (client_wire, upstream_wire) {
        (Wire::OpenAi, Wire::OpenAi) => (collected, translate::openai_usage(&parsed).unwrap_or_default()),
        (Wire::Anthropic, Wire::Anthropic) => {
            (collected, translate::anthropic_usage(&parsed).unwrap_or_default())
        }
        (Wire::OpenAi, Wire::Anthropic) => {
            let usage = translate::anthropic_usage(&parsed).unwrap_or_default();
            let out = translate::anthropic_response_to_openai(&parsed, &served_model);
            (Bytes::from(serde_json::to_vec(&out).unwrap_or_default()), usage)
        }
        (Wire::Anthropic, Wire::OpenAi) => {
            let usage = translate::openai_usage(&parsed).unwrap_or_default();
            let out = translate::openai_response_to_anthropic(&parsed, &served_model);
            (Bytes::from(serde_json::to_vec(&out).unwrap_or_default()), usage)
        }
    };
    shared.usage.record(ctx.record(200, usage, None)).await;
    let mut response = Response::new(Body::from(out));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    served_headers(h, &served_model, upstream);
    Ok(response)
}

/// The largest non-streaming upstream answer accepted (64 MiB: embeddings of big batches).
const MAX_UPSTREAM_BODY: usize = 64 << 20;
/// The most of an upstream error body read.
const MAX_UPSTREAM_ERROR_BODY: usize = 64 << 10;

fn served_headers(h: &mut HeaderMap, model: &str, upstream: &Upstream) {
    if let Ok(v) = HeaderValue::from_str(model) {
        h.insert("x-tollgate-model", v);
    }
    h.insert("x-tollgate-provider", HeaderValue::from_static(upstream.provider_name()));
}

fn upstream_failure(e: &UpstreamError, upstream: &Upstream) -> ApiError {
    tracing::warn!(upstream = %upstream.id, error = %e, "upstream call failed");
    match e {
        UpstreamError::Connect => {
            ApiError::unavailable("upstream_unavailable", "the provider could not be reached")
        }
        UpstreamError::Timeout(d) => {
            ApiError::timeout(format!("the provider did not answer within {}s", d.as_secs()))
        }
        UpstreamError::Transport => {
            ApiError::bad_gateway("upstream_connection_error", "the connection to the provider failed")
        }
    }
}

async fn upstream_status_error(
    status: StatusCode,
    response: Response<Body>,
    upstream: &Upstream,
) -> ApiError {
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = tokio::time::timeout(
        Duration::from_secs(5),
        Limited::new(response.into_body(), MAX_UPSTREAM_ERROR_BODY).collect(),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .map(|c| c.to_bytes())
    .unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_owned))
        .map(|m| sanitize_upstream_message(&m))
        .unwrap_or_default();
    let code = status.as_u16();
    tracing::warn!(upstream = %upstream.id, status = code, "provider returned an error");
    let suffix = if message.is_empty() { String::new() } else { format!(": {message}") };
    match code {
        400 | 413 | 422 => ApiError::invalid(format!("the provider rejected the request{suffix}"), None),
        401 | 403 => {
            ApiError::bad_gateway("upstream_auth_failed", "the provider rejected the gateway's credential")
        }
        404 => ApiError::bad_gateway(
            "upstream_not_found",
            format!("the provider does not know this model{suffix}"),
        ),
        429 => ApiError::rate_limited(
            "upstream_rate_limited",
            format!("the provider is rate limiting{suffix}"),
            retry_after.or(Some(1)),
        ),
        503 | 529 => ApiError {
            retry_after,
            ..ApiError::unavailable(
                "upstream_unavailable",
                format!("the provider is overloaded or unavailable (HTTP {code})"),
            )
        },
        504 => ApiError::timeout("the provider timed out"),
        _ => ApiError::bad_gateway("upstream_error", format!("the provider returned HTTP {code}")),
    }
}

/// Upstream messages may echo credentials ("Incorrect API key provided: sk-..."): mask
/// anything that looks like a key, drop control characters, and keep it short.
pub fn sanitize_upstream_message(message: &str) -> String {
    let masked: Vec<String> = message
        .split(' ')
        .map(|word| {
            let core = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_');
            let keyish = ["sk-", "sk_", "tg-", "key-", "AKIA", "xox", "ghp_", "AIza"]
                .iter()
                .any(|p| core.starts_with(p));
            let long_token = core.len() >= 24
                && core.chars().any(|c| c.is_ascii_digit())
                && core.chars().any(|c| c.is_ascii_alphabetic());
            if keyish && core.len() >= 8 || long_token { "[redacted]".to_owned() } else { word.to_owned() }
        })
        .collect();
    masked.join(" ").chars().filter(|c| !c.is_control()).take(300).collect()
}

enum StreamMode {
    OpenAiPassthrough { include_usage: bool },
    AnthropicPassthrough,
    AnthropicToOpenAi(Box<AnthropicToOpenAiStream>),
    OpenAiToAnthropic(Box<OpenAiToAnthropicStream>),
}

impl StreamMode {
    fn client_format(&self) -> ApiFormat {
        match self {
            Self::OpenAiPassthrough { .. } | Self::AnthropicToOpenAi(_) => ApiFormat::OpenAi,
            Self::AnthropicPassthrough | Self::OpenAiToAnthropic(_) => ApiFormat::Anthropic,
        }
    }
}

/// Streams the upstream's events to the caller as they arrive, translating when needed, and
/// writes the usage record when the stream ends, however it ends.
fn stream_response(shared: &Arc<Shared>, ctx: &Ctx, body: Body, mode: StreamMode) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    let record = ctx.record(200, TokenUsage::default(), None);
    let shared = Arc::clone(shared);
    let idle = shared.options.stream_idle_timeout;
    tokio::spawn(async move {
        let mut pump =
            Pump { mode, usage: TokenUsage::default(), tx, parser: SseParser::default(), client_gone: false };
        let outcome = pump.run(body, idle).await;
        let mut record = record;
        record.input_tokens = pump.usage.input;
        record.output_tokens = pump.usage.output;
        record.cached_input_tokens = pump.usage.cached_input;
        record.error_class = outcome;
        record.latency_ms = u64::try_from((crate::now_ms() - record.ts_ms).max(0)).unwrap_or(0);
        shared.usage.record(record).await;
    });
    let mut response = Response::new(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(model) = &ctx.model
        && let Ok(v) = HeaderValue::from_str(model)
    {
        h.insert("x-tollgate-model", v);
    }
    if let Some(p) = ctx.provider {
        h.insert("x-tollgate-provider", HeaderValue::from_static(p));
    }
    response
}

struct Pump {
    mode: StreamMode,
    usage: TokenUsage,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    parser: SseParser,
    client_gone: bool,
}

impl Pump {
    /// Runs to the end of the upstream stream. Returns the error class, if it did not end well.
    async fn run(&mut self, mut body: Body, idle: Duration) -> Option<&'static str> {
        let mut events = Vec::new();
        loop {
            let frame = match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => return self.fail("stream_idle_timeout", "the provider stopped sending").await,
                Ok(None) => break,
                Ok(Some(Err(_))) => {
                    return self
                        .fail("upstream_stream_error", "the connection to the provider broke mid-stream")
                        .await;
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            if self.parser.feed(&data, &mut events).is_err() {
                return self
                    .fail("upstream_invalid_response", "the provider sent an oversized stream event")
                    .await;
            }
            for event in events.drain(..) {
                let done = self.on_event(event).await;
                if self.client_gone {
                    return Some("client_disconnected");
                }
                if done {
                    return self.finish().await;
                }
            }
        }
        self.parser.finish(&mut events);
        for event in std::mem::take(&mut events) {
            if self.on_event(event).await {
                break;
            }
        }
        if self.client_gone {
            return Some("client_disconnected");
        }
        self.finish().await
    }

    async fn send(&mut self, bytes: Bytes) {
        if !self.client_gone && self.tx.send(Ok(bytes)).await.is_err() {
            self.client_gone = true;
        }
    }

    async fn send_data(&mut self, data: &str) {
        let mut out = Vec::with_capacity(data.len() + 8);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(data.as_bytes());
        out.extend_from_slice(b"\n\n");
        self.send(Bytes::from(out)).await;
    }

    async fn send_event(&mut self, name: &str, data: &Value) {
        let json = serde_json::to_string(data).unwrap_or_default();
        self.send(Bytes::from(format!("event: {name}\ndata: {json}\n\n"))).await;
    }

    /// Handles one upstream event; returns true when the upstream said it is done.
    async fn on_event(&mut self, event: SseEvent) -> bool {
        match &mut self.mode {
            StreamMode::OpenAiPassthrough { include_usage } => {
                if event.data == "[DONE]" {
                    return true;
                }
                let include_usage = *include_usage;
                if !event.data.contains("\"usage\"") {
                    self.send_data(&event.data).await;
                    return false;
                }
                let Ok(mut chunk) = serde_json::from_str::<Value>(&event.data) else {
                    self.send_data(&event.data).await;
                    return false;
                };
                if let Some(u) = translate::openai_usage(&chunk) {
                    self.usage = u;
                }
                if include_usage {
                    self.send_data(&event.data).await;
                } else {
                    let usage_only =
                        chunk.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty);
                    if !usage_only {
                        if let Some(o) = chunk.as_object_mut() {
                            o.remove("usage");
                        }
                        let data = serde_json::to_string(&chunk).unwrap_or_default();
                        self.send_data(&data).await;
                    }
                }
                false
            }
            StreamMode::AnthropicPassthrough => {
                let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
                    return false;
                };
                let kind = if event.event.is_empty() {
                    data.get("type").and_then(Value::as_str).unwrap_or("").to_owned()
                } else {
                    event.event.clone()
                };
                match kind.as_str() {
                    "message_start" => {
                        if let Some(u) = data.get("message").and_then(translate::anthropic_usage) {
                            self.usage.input = u.input;
                            self.usage.cached_input = u.cached_input;
                            self.usage.output = u.output;
                        }
                    }
                    "message_delta" => {
                        if let Some(out) = data.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                            self.usage.output = out;
                        }
                    }
                    _ => {}
                }
                let frame = format!("event: {kind}\ndata: {}\n\n", event.data);
                self.send(Bytes::from(frame)).await;
                kind == "message_stop"
            }
            StreamMode::AnthropicToOpenAi(t) => {
                let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
                    return false;
                };
                let name = if event.event.is_empty() {
                    data.get("type").and_then(Value::as_str).unwrap_or("").to_owned()
                } else {
                    event.event.clone()
                };
                let out = t.on_event(&name, &data);
                self.usage = t.usage();
                for payload in out {
                    self.send_data(&payload).await;
                }
                name == "message_stop"
            }
            StreamMode::OpenAiToAnthropic(t) => {
                if event.data == "[DONE]" {
                    return true;
                }
                let Ok(chunk) = serde_json::from_str::<Value>(&event.data) else {
                    return false;
                };
                let out = t.on_chunk(&chunk);
                self.usage = t.usage();
                for (name, data) in out {
                    self.send_event(name, &data).await;
                }
                false
            }
        }
    }

    /// Ends a stream that completed.
    async fn finish(&mut self) -> Option<&'static str> {
        match &mut self.mode {
            StreamMode::OpenAiPassthrough { .. } => self.send_data("[DONE]").await,
            StreamMode::AnthropicPassthrough => {}
            StreamMode::AnthropicToOpenAi(t) => {
                let out = t.finish();
                self.usage = t.usage();
                for payload in out {
                    self.send_data(&payload).await;
                }
                self.send_data("[DONE]").await;
            }
            StreamMode::OpenAiToAnthropic(t) => {
                let out = t.finish();
                self.usage = t.usage();
                for (name, data) in out {
                    self.send_event(name, &data).await;
                }
            }
        }
        if self.client_gone { Some("client_disconnected") } else { None }
    }

    /// Ends a stream that broke: an error event in the caller's format, then the end.
    async fn fail(&mut self, class: &'static str, message: &str) -> Option<&'static str> {
        let error = ApiError::bad_gateway(class, message);
        match self.mode.client_format() {
            ApiFormat::OpenAi => {
                let data = serde_json::to_string(&error.body(ApiFormat::OpenAi)).unwrap_or_default();
                self.send_data(&data).await;
            }
            ApiFormat::Anthropic => {
                let body = error.body(ApiFormat::Anthropic);
                self.send_event("error", &body).await;
            }
        }
        Some(class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_credentials_in_upstream_messages() {
        let m = sanitize_upstream_message("Incorrect API key provided: sk-proj-abc123def456. See docs.");
        assert!(!m.contains("abc123"), "{m}");
        assert!(m.starts_with("Incorrect API key provided: [redacted]"), "{m}");
        let long = "x".repeat(1000);
        assert_eq!(sanitize_upstream_message(&long).len(), 300);
        assert_eq!(sanitize_upstream_message("context length exceeded"), "context length exceeded");
    }
}
