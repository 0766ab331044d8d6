//! The request path: authenticate → parse and validate → resolve the model → choose an IP
//! token → translate if the upstream speaks the other wire format → call → stream or return
//! the answer in the caller's format → write the usage record.

mod admission;
mod guard;
mod responses;
mod stream;
mod upstream;

use std::borrow::Cow;
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
use tollgate_crds::budget::OnExhausted;
use tollgate_crds::config::{BudgetConfig, FallbackClass, ModelRoute, PricesMicros, RouteTarget};
use tollgate_crds::iptoken::ModelKind;
use tollgate_crds::money::format_usd;

use self::admission::{Admitted, Refusal, admit};
use self::stream::{StreamExtras, StreamMode, stream_response};
use self::upstream::{BreakerTicket, Call, Failed, FirstEvents, attempt_upstreams};
use super::{parse_json, read_body_within, validate};
use crate::Shared;
use crate::auth::KeyRecord;
use crate::budget::{Reservation, check_alerts, key_for};
use crate::cost::{Admission, BudgetKey, PriceTable, cost_micros, tokens, worst_case_micros};
use crate::error::{ApiError, ApiFormat};
use crate::observability::tracing::GenAiOperation;
use crate::observability::{
    AttemptOutcome, InFlight as MetricsInFlight, RateLimitKind, RateLimitScope, RequestLabels, RequestSpan,
    RequestSpanStart, SafetyStage,
};
use crate::providers::sse::{SseEvent, SseParser};
use crate::providers::{Operation, Provider, Upstream, UpstreamError, Wire};
use crate::reliability::ratelimit::{self, RateDecision, RateKind};
use crate::reliability::{
    Candidate, ErrorClass, FallbackPolicy, InFlightGuard, Outcome, PerKeyGuard, Timeouts, classify_status,
    pick,
};
use crate::runtime::Runtime;
use crate::translate::{self, AnthropicToOpenAiStream, OpenAiToAnthropicStream, TokenUsage};
use crate::usage::{Charge, UsageRecord};
use tracing::Instrument;

/// Which API the caller used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/messages`
    Messages,
    /// `POST /v1/responses` (served through the chat form)
    Responses,
    /// `POST /v1/embeddings`
    Embeddings,
}

impl Endpoint {
    fn format(self) -> ApiFormat {
        match self {
            Self::Messages => ApiFormat::Anthropic,
            Self::ChatCompletions | Self::Responses | Self::Embeddings => ApiFormat::OpenAi,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat.completions",
            Self::Messages => "messages",
            Self::Responses => "responses",
            Self::Embeddings => "embeddings",
        }
    }

    fn operation(self) -> GenAiOperation {
        match self {
            Self::ChatCompletions | Self::Messages | Self::Responses => GenAiOperation::Chat,
            Self::Embeddings => GenAiOperation::Embeddings,
        }
    }

    fn wire(self) -> Wire {
        match self {
            Self::Messages => Wire::Anthropic,
            // NB: a Responses body is decoded into the chat form before anything reads it.
            Self::ChatCompletions | Self::Responses | Self::Embeddings => Wire::OpenAi,
        }
    }
}

/// What is known about a request so far, for its usage record, metrics and trace.
pub(super) struct Ctx {
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
    downgraded_from: Option<String>,
    fallback_from: Option<String>,
    span: RequestSpan,
    /// Held until the response's last byte (moved into a stream's task).
    held: Held,
    /// Upstream attempts so far (retries and fallbacks included).
    attempts: u32,
    /// The safety policies that apply to this caller.
    policy: Option<Arc<crate::safety::PolicySet>>,
    /// A Responses API call: how to encode and store its answer.
    responses: Option<Arc<responses::ResponsesRequest>>,
}

/// Guards that must live as long as the response: they count it in flight until dropped.
#[derive(Default)]
pub(super) struct Held {
    _in_flight: Option<InFlightGuard>,
    _per_key: Option<PerKeyGuard>,
    _gauge: Option<MetricsInFlight>,
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
            endpoint: Cow::Borrowed(self.endpoint.name()),
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
            error_class: error_class.map(Cow::Borrowed),
            downgraded_from: self.downgraded_from.clone(),
            ..UsageRecord::default()
        }
    }
}

/// Handles one API call end to end. Never panics; every failure is an [`ApiError`] in the
/// endpoint's format.
pub async fn handle(shared: Arc<Shared>, endpoint: Endpoint, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let request_id = request_id(&parts.headers);
    let span = RequestSpan::start(&RequestSpanStart {
        operation: endpoint.operation(),
        endpoint: endpoint.name(),
        request_id: &request_id,
        headers: &parts.headers,
    });
    let mut ctx = Ctx {
        endpoint,
        request_id,
        started: Instant::now(),
        ts_ms: crate::now_ms(),
        key: None,
        model: None,
        upstream_model: None,
        provider: None,
        ip_token: None,
        stream: false,
        downgraded_from: None,
        fallback_from: None,
        span: span.clone(),
        held: Held::default(),
        attempts: 0,
        policy: None,
        responses: None,
    };
    let result = if shared.in_flight.is_closed() {
        Err(shutting_down())
    } else {
        run(&shared, &mut ctx, &parts.headers, body).instrument(span.span().clone()).await
    };
    let (mut response, code) = match result {
        Ok(response) => (response, None),
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
            span.set_error(error.code);
            let code = error.code;
            (error.into_response(endpoint.format()), Some(code))
        }
    };
    let status = response.status().as_u16();
    span.set_status(status);
    shared.metrics.request_finished(
        &RequestLabels {
            endpoint: endpoint.name(),
            model: ctx.model.as_deref(),
            provider: ctx.provider,
            status,
            code,
        },
        ctx.started.elapsed(),
    );
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// Bodies up to this size are scanned on the request's own task (a few microseconds);
/// larger ones on the blocking pool.
const INLINE_SCAN_BYTES: usize = 64 << 10;

fn shutting_down() -> ApiError {
    ApiError {
        retry_after: Some(1),
        ..ApiError::unavailable("shutting_down", "this gateway is shutting down; retry on another")
    }
}

/// Counts a request in flight, in all and for its key; refused at once beyond either cap.
fn enter_in_flight(shared: &Shared, key: &KeyRecord) -> Result<Held, ApiError> {
    let Some(per_key) = shared.in_flight_per_key.try_enter(&key.id) else {
        shared.metrics.overloaded();
        return Err(ApiError::rate_limited(
            "too_many_concurrent_requests",
            format!(
                "your key has {} requests in flight, the most allowed at once; retry when one finishes",
                shared.in_flight_per_key.cap()
            ),
            Some(1),
        ));
    };
    match shared.in_flight.try_enter() {
        Some(guard) => Ok(Held {
            _in_flight: Some(guard),
            _per_key: Some(per_key),
            _gauge: Some(shared.metrics.in_flight()),
        }),
        None if shared.in_flight.is_closed() => Err(shutting_down()),
        None => {
            shared.metrics.overloaded();
            Err(ApiError {
                retry_after: Some(1),
                ..ApiError::unavailable("overloaded", "the gateway is at capacity; retry shortly")
            })
        }
    }
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// A 429 for a rate limit, with the `x-ratelimit-*` headers.
fn rate_limited(decision: &RateDecision, kind: RateKind, scope: &str) -> ApiError {
    let what = match kind {
        RateKind::Requests => "requests",
        RateKind::Tokens => "tokens",
    };
    let mut error = ApiError::rate_limited(
        "rate_limited",
        format!(
            "{scope} rate limit of {} {what} per minute reached; retry after {}s",
            decision.limit,
            decision.retry_after_secs()
        ),
        Some(decision.retry_after_secs()),
    );
    error.headers.extend(ratelimit::headers(decision, kind));
    error
}

/// Checks a per-minute limit; a limiter that cannot answer admits (rate limits protect,
/// they are not money: they fail open, unlike budgets).
async fn check_rate(shared: &Shared, key: &str, limit: u64, cost: u64) -> Option<RateDecision> {
    match shared.rate_limiter.check(key, limit, cost, Duration::from_secs(60), crate::now_ms()).await {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e, "rate limiter unavailable; admitting");
            None
        }
    }
}

async fn run(
    shared: &Arc<Shared>,
    ctx: &mut Ctx,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = shared.keys.authenticate(headers, ctx.ts_ms).await?;
    ctx.key = Some(Arc::clone(&key));
    ctx.span.set_principal(&format!("{}/{}", key.principal.kind.as_str(), key.principal.name));
    let mut limit_headers = Vec::new();
    if let Some(rpm) = key.rpm
        && let Some(d) = check_rate(shared, &format!("key:{}:rpm", key.id), rpm, 1).await
    {
        if !d.allowed {
            shared.metrics.rate_limited(RateLimitKind::Requests, RateLimitScope::Principal);
            return Err(rate_limited(&d, RateKind::Requests, "your key's"));
        }
        limit_headers.extend(ratelimit::headers(&d, RateKind::Requests));
    }
    let bytes =
        read_body_within(headers, body, shared.options.max_body_bytes, shared.options.body_timeouts).await?;
    // NB: counted in flight only once the body is here, so callers that send slowly (or
    // not at all) hold no place that others need; the body timeouts cut them.
    ctx.held = enter_in_flight(shared, &key)?;
    let mut value = parse_json(&bytes)?;
    if ctx.endpoint != Endpoint::Embeddings {
        apply_preferred_model(shared, &key.principal, &mut value)?;
    }
    if ctx.endpoint == Endpoint::Responses {
        let (chat, request) = responses::prepare(shared, &key, value).await?;
        value = chat;
        ctx.responses = Some(Arc::new(request));
    }
    let (model, stream, include_usage) = match ctx.endpoint {
        Endpoint::Responses => {
            let i = validate::chat_completions(&value)?;
            // The encoder reports usage itself, in `response.completed`.
            (i.model, i.stream, false)
        }
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
    ctx.stream = stream;
    ctx.span.set_request(tokens::max_output_tokens(&value, ctx.endpoint.wire()), stream);

    let runtime = shared.runtime.load_full();
    // Safety on the input, before anything is reserved or sent upstream.
    let policy = runtime.safety.policies_for(&crate::safety::Subject::from_principal(&key.principal, None));
    if !policy.is_empty() {
        let span = ctx.span.safety(SafetyStage::Input);
        let (endpoint, wire) = (ctx.endpoint, ctx.endpoint.wire());
        let check = move |policy: &crate::safety::PolicySet, value: &Value| {
            let verdict = span.in_scope(|| match endpoint {
                Endpoint::Embeddings => policy.check_embeddings_input(value),
                Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses => {
                    policy.check_request(value, wire)
                }
            });
            guard::record_verdict(&span, &verdict.findings);
            verdict
        };
        let verdict = if bytes.len() <= INLINE_SCAN_BYTES {
            check(&policy, &value)
        } else {
            // NB: a large body is scanned on the blocking pool, a few at a time, so that
            // scanning never holds the async workers every other request needs.
            let _slot = shared.scan_slots.acquire().await.map_err(|_| shutting_down())?;
            let (policy, owned) = (Arc::clone(&policy), std::mem::take(&mut value));
            let (owned, verdict) = tokio::task::spawn_blocking(move || {
                let verdict = check(&policy, &owned);
                (owned, verdict)
            })
            .await
            .map_err(|_| ApiError::internal("the safety check failed"))?;
            value = owned;
            verdict
        };
        shared.report_findings(
            &ctx.request_id,
            Some((key.principal.kind.as_str(), &key.principal.name)),
            &verdict.findings,
        );
        match verdict.outcome {
            crate::safety::Outcome::Allow => {}
            crate::safety::Outcome::Redact(redacted) => {
                value = redacted;
                if let Some(request) = ctx.responses.as_mut().and_then(Arc::get_mut) {
                    request.redact_input(&policy);
                }
            }
            crate::safety::Outcome::Block(v) => return Err(guard::violation_error(&v)),
        }
        ctx.policy = Some(policy);
    }
    let mut model = model;
    let mut tried_models: Vec<String> = Vec::new();
    let mut deadline: Option<Instant> = None;
    // The key's tokens-per-minute charge (first model only), corrected at settle.
    let mut key_tpm = None;
    loop {
        ctx.model = Some(model.clone());
        ctx.span.set_model(&model);
        let route = resolve(&runtime, &key, ctx.endpoint, &model)?;
        let timeouts = model_timeouts(&shared.options, route);
        let deadline = *deadline.get_or_insert(ctx.started + timeouts.total);
        let need_tokens = key.tpm.is_some()
            || route
                .targets
                .iter()
                .any(|t| runtime.config.ip_tokens.get(t.ip_token).is_some_and(|c| c.tpm.is_some()));
        let mut admitted = match admit(
            shared,
            &runtime,
            ctx,
            &key.principal.clone(),
            &model,
            route,
            &mut value,
            need_tokens,
        )
        .await
        {
            Ok(admitted) => admitted,
            Err(Refusal { downgrade: Some(to), .. }) if ctx.downgraded_from.is_none() && to != model => {
                tracing::info!(request_id = %ctx.request_id, from = %model, to = %to, "budget exhausted; downgrading");
                ctx.span.set_fallback_from(&model);
                ctx.downgraded_from = Some(std::mem::replace(&mut model, to));
                set_model(&mut value, &model);
                continue;
            }
            Err(refusal) => {
                if let Some(budget) = refusal.error.headers.iter().find(|(n, _)| *n == "x-tollgate-budget") {
                    shared.metrics.budget_rejected(&budget.1);
                }
                return Err(refusal.error);
            }
        };
        if tried_models.is_empty()
            && let Some(tpm) = key.tpm
            && let Some((d, charge)) =
                admission::check_tpm(shared, format!("key:{}:tpm", key.id), tpm, admitted.token_estimate)
                    .await
        {
            if !d.allowed {
                admitted.release().await;
                shared.metrics.rate_limited(RateLimitKind::Tokens, RateLimitScope::Principal);
                return Err(rate_limited(&d, RateKind::Tokens, "your key's"));
            }
            key_tpm = charge;
            limit_headers.extend(ratelimit::headers(&d, RateKind::Tokens));
        }
        admitted.key_tpm.clone_from(&key_tpm);
        tried_models.push(model.clone());
        let call = Call {
            runtime: &runtime,
            route,
            model: &model,
            value: &value,
            stream,
            include_usage,
            timeouts,
            deadline,
        };
        match attempt_upstreams(shared, ctx, headers, &call, admitted).await {
            Ok(mut response) => {
                let h = response.headers_mut();
                for (name, v) in limit_headers {
                    if let Ok(v) = HeaderValue::from_str(&v) {
                        h.insert(name, v);
                    }
                }
                return Ok(response);
            }
            Err(Failed { error, class }) => {
                let policy = FallbackPolicy {
                    chain: route.fallbacks.clone(),
                    on: fallback_classes(&route.fallback_on),
                };
                match policy.next(&tried_models, class) {
                    Some(next) if Instant::now() < deadline => {
                        tracing::info!(request_id = %ctx.request_id, from = %model, to = %next, class = class.as_str(), "falling back");
                        shared.metrics.fallback(&model, next);
                        ctx.span.set_fallback_from(&model);
                        ctx.fallback_from.get_or_insert_with(|| model.clone());
                        model = next.to_owned();
                        set_model(&mut value, &model);
                    }
                    _ => return Err(error),
                }
            }
        }
    }
}

/// The alias for "my preferred model".
pub const DEFAULT_MODEL_ALIAS: &str = "default";

/// A chat request naming no model or `default` gets the caller's preferred model (set with
/// `PUT /api/v1/me/preferences`); `default` without a preference is a clear 400.
fn apply_preferred_model(
    shared: &Shared,
    principal: &crate::auth::Principal,
    value: &mut Value,
) -> Result<(), ApiError> {
    let named = value.get("model");
    let wants_default = match named {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => s == DEFAULT_MODEL_ALIAS,
        Some(_) => return Ok(()),
    };
    let absent = matches!(named, None | Some(Value::Null));
    if !wants_default && !absent {
        return Ok(());
    }
    let key = format!("{}/{}", principal.kind.as_str(), principal.name);
    let preferred = shared.preferred_models.read().ok().and_then(|m| m.get(&key).cloned());
    match preferred {
        Some(model) => {
            set_model(value, &model);
            Ok(())
        }
        None if wants_default => Err(ApiError::invalid(
            "model `default` means your preferred model, and none is set: set one with PUT /api/v1/me/preferences",
            Some("model".into()),
        )),
        // No model and no preference: validation says `model` is required.
        None => Ok(()),
    }
}

fn set_model(value: &mut Value, model: &str) {
    if let Some(obj) = value.as_object_mut() {
        obj.insert("model".into(), Value::String(model.to_owned()));
    }
}

/// The error classes a route falls back on (`fallbackOn`), defaulting to the retryable ones.
fn fallback_classes(classes: &[FallbackClass]) -> Vec<ErrorClass> {
    if classes.is_empty() {
        return vec![ErrorClass::Unavailable, ErrorClass::Timeout, ErrorClass::RateLimited];
    }
    classes.iter().map(|&c| ErrorClass::from(c)).collect()
}

/// The timeouts of a model: its own, else the gateway's.
fn model_timeouts(options: &crate::GatewayOptions, route: &ModelRoute) -> Timeouts {
    let t = route.timeouts.unwrap_or(tollgate_crds::iptoken::ModelTimeouts {
        first_byte_seconds: None,
        idle_seconds: None,
        total_seconds: None,
    });
    let secs = |v: Option<u32>, default: Duration| v.map_or(default, |s| Duration::from_secs(u64::from(s)));
    Timeouts {
        connect: options.connect_timeout,
        first_byte: secs(t.first_byte_seconds, options.header_timeout),
        idle_between_chunks: secs(t.idle_seconds, options.stream_idle_timeout),
        total: secs(t.total_seconds, options.response_timeout),
    }
}

fn untranslatable(e: translate::TranslateError) -> ApiError {
    ApiError::invalid(format!("cannot be served by this model's provider: {}", e.message), Some(e.path))
}

/// The model's route, after the key and kind checks.
fn resolve<'r>(
    runtime: &'r Runtime,
    key: &KeyRecord,
    endpoint: Endpoint,
    model: &str,
) -> Result<&'r ModelRoute, ApiError> {
    let route = runtime.route(model).ok_or_else(|| {
        ApiError::not_found("model_not_found", format!("model {model:?} does not exist")).with_param("model")
    })?;
    if !key.allows_model(model) {
        return Err(ApiError::forbidden(
            "model_not_allowed",
            format!("this key may not use model {model:?}"),
        )
        .with_param("model"));
    }
    let wanted = if endpoint == Endpoint::Embeddings { ModelKind::Embedding } else { ModelKind::Chat };
    if route.kind != wanted {
        let hint = match route.kind {
            ModelKind::Chat => "a chat model; use /v1/chat/completions, /v1/responses or /v1/messages",
            ModelKind::Embedding => "an embedding model; use /v1/embeddings",
        };
        return Err(ApiError::invalid(format!("model {model:?} is {hint}"), Some("model".into())));
    }
    if route.targets.iter().all(|t| t.weight == 0) {
        return Err(ApiError::unavailable(
            "no_upstream",
            format!("no IP token is currently serving model {model:?}"),
        ));
    }
    Ok(route)
}

/// The largest non-streaming upstream answer accepted (64 MiB: embeddings of big batches).
const MAX_UPSTREAM_BODY: usize = 64 << 20;
/// The most of an upstream error body read.
const MAX_UPSTREAM_ERROR_BODY: usize = 64 << 10;

pub(super) fn served_headers(h: &mut HeaderMap, ctx: &Ctx, upstream: &Upstream) {
    if let Some(model) = &ctx.model
        && let Ok(v) = HeaderValue::from_str(model)
    {
        h.insert("x-tollgate-model", v);
    }
    if let Some(from) = &ctx.downgraded_from
        && let Ok(v) = HeaderValue::from_str(from)
    {
        h.insert("x-tollgate-downgraded-from", v);
    }
    if let Some(from) = &ctx.fallback_from
        && let Ok(v) = HeaderValue::from_str(from)
    {
        h.insert("x-tollgate-fallback-from", v);
    }
    h.insert("x-tollgate-provider", HeaderValue::from_static(upstream.provider_name()));
}
