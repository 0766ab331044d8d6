//! Upstream attempts: choose a healthy IP token (weighted, least outstanding, open breakers
//! skipped), respect its upstream rate limits, call it with timeouts, retry with backoff and
//! jitter while nothing has reached the caller, and map failures to the gateway's errors
//! with provider messages sanitised.

use super::*;
use crate::observability::tracing::{attr, record_error};

/// What is being asked upstream, for every attempt.
pub(in crate::http) struct Call<'a> {
    pub(super) runtime: &'a Arc<Runtime>,
    pub(super) route: &'a ModelRoute,
    pub(super) model: &'a str,
    pub(super) value: &'a Value,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
    pub(super) timeouts: Timeouts,
    pub(super) deadline: Instant,
}

/// Every attempt on this model failed.
pub(in crate::http) struct Failed {
    pub(super) error: ApiError,
    pub(super) class: ErrorClass,
}

/// A breaker permit to report when the answer ends.
pub(super) struct BreakerTicket {
    pub(super) breaker: Arc<crate::reliability::CircuitBreaker>,
    pub(super) permit: crate::reliability::Permit,
    pub(super) sent: Instant,
    /// Where the breaker's state is published, so a success that closes it shows.
    pub(super) metrics: crate::observability::Metrics,
    pub(super) ip_token: String,
    pub(super) model: String,
}

impl BreakerTicket {
    pub(super) fn report(self, outcome: Outcome) {
        self.breaker.record(self.permit, outcome, Instant::now());
        publish_breaker(&self.metrics, &self.ip_token, &self.model, &self.breaker);
    }
}

/// Tries the route's IP tokens until one answers, retries are exhausted or the deadline
/// passes. Settles and records a successful answer; releases the reservation on failure.
pub(super) async fn attempt_upstreams(
    shared: &Arc<Shared>,
    ctx: &mut Ctx,
    headers: &HeaderMap,
    call: &Call<'_>,
    mut admitted: Admitted,
) -> Result<Response, Failed> {
    let route = call.route;
    if let Some(error) = out_of_service(call) {
        admitted.release().await;
        return Err(Failed { error, class: ErrorClass::Unavailable });
    }
    let mut excluded: Vec<usize> = Vec::new();
    let mut retry: u32 = 0;
    let mut last: Option<(ApiError, ErrorClass)> = None;
    // Bounded: every pass either attempts (bounded by the retry policy) or excludes a target.
    let max_passes = route.targets.len() * 2 + shared.options.retry.max_attempts as usize * 2 + 2;
    for _ in 0..max_passes {
        let now = Instant::now();
        if now >= call.deadline {
            last = Some((
                ApiError::timeout("the request ran out of time across its attempts"),
                ErrorClass::Timeout,
            ));
            break;
        }
        let Some(i) = choose(shared, call, &excluded, now) else {
            if !excluded.is_empty() && route.targets.len() > excluded.len() {
                continue;
            }
            if last.is_none() {
                last = Some((
                    ApiError {
                        retry_after: Some(1),
                        ..ApiError::unavailable(
                            "no_healthy_upstream",
                            format!("every IP token serving {:?} is failing; retry shortly", call.model),
                        )
                    },
                    ErrorClass::Unavailable,
                ));
            }
            break;
        };
        let Some(target) = route.targets.get(i) else { break };
        let Some(upstream) = call.runtime.upstreams.get(target.ip_token) else { break };
        let token = call.runtime.config.ip_tokens.get(target.ip_token);
        let breaker = shared.breakers.get(&upstream.id, call.model);
        let permit = match breaker.acquire(now) {
            Ok(p) => p,
            Err(open) => {
                shared.metrics.upstream_attempt(
                    upstream.provider_name(),
                    call.model,
                    AttemptOutcome::BreakerOpen,
                    Duration::ZERO,
                );
                excluded.push(i);
                last = Some(if open.rate_limited {
                    (
                        ApiError::rate_limited(
                            "upstream_rate_limited",
                            "the provider is rate limiting; retry later",
                            Some(open.retry_in.as_secs().max(1)),
                        ),
                        ErrorClass::RateLimited,
                    )
                } else {
                    (
                        ApiError {
                            retry_after: Some(open.retry_in.as_secs().max(1)),
                            ..ApiError::unavailable(
                                "no_healthy_upstream",
                                "the provider is failing; retry shortly",
                            )
                        },
                        ErrorClass::Unavailable,
                    )
                });
                continue;
            }
        };
        // Throttle before the provider does.
        if let Some(limited) = upstream_limits(shared, token, &mut admitted).await {
            breaker.record(permit, Outcome::Ignored, Instant::now());
            excluded.push(i);
            last = Some((limited, ErrorClass::RateLimited));
            continue;
        }
        ctx.upstream_model = Some(target.upstream_model.clone());
        ctx.provider = Some(upstream.provider_name());
        ctx.ip_token = Some(upstream.id.clone());
        let request = match build_request(shared, ctx, headers, call, target, upstream) {
            Ok(r) => r,
            Err(e) => {
                breaker.record(permit, Outcome::Ignored, Instant::now());
                admitted.release().await;
                return Err(Failed { error: e, class: ErrorClass::Client });
            }
        };
        ctx.attempts += 1;
        let upstream_target = crate::observability::UpstreamTarget {
            provider: upstream.provider_name(),
            ip_token: &upstream.id,
            server_address: upstream.server_address(),
            server_port: server_port(upstream, &request),
        };
        // The request span names the last upstream tried: the one that served, if any did.
        ctx.span.set_upstream(&upstream_target);
        let attempt_span = ctx.span.upstream_attempt(&crate::observability::UpstreamAttempt {
            attempt: ctx.attempts,
            target: upstream_target,
            model: &target.upstream_model,
        });
        let outstanding = shared.outstanding(&upstream.id).start();
        let sent = Instant::now();
        let first_byte = call.timeouts.phase(call.timeouts.first_byte, ctx.started, sent);
        let sent_result = tokio::time::timeout(first_byte, shared.client.send(upstream, request))
            .instrument(attempt_span.clone())
            .await;
        if let Ok(Ok(response)) = &sent_result {
            attempt_span.record(attr::HTTP_RESPONSE_STATUS_CODE, i64::from(response.status().as_u16()));
        }
        let (error, class, outcome, retry_after) = match sent_result {
            Ok(Ok(response)) if response.status().is_success() => {
                let ticket = BreakerTicket {
                    breaker: Arc::clone(&breaker),
                    permit,
                    sent,
                    metrics: shared.metrics.clone(),
                    ip_token: upstream.id.clone(),
                    model: call.model.to_owned(),
                };
                if call.stream {
                    // Nothing has reached the caller until the first event is in hand, so a
                    // stream that breaks before it is still retried.
                    let left = call.deadline.saturating_duration_since(Instant::now());
                    match first_events(response, call.timeouts.first_byte.min(left)).await {
                        Ok(first) => {
                            shared.metrics.upstream_attempt(
                                upstream.provider_name(),
                                call.model,
                                AttemptOutcome::Success,
                                sent.elapsed(),
                            );
                            return Ok(start_stream(
                                shared,
                                ctx,
                                call,
                                upstream,
                                first,
                                admitted,
                                ticket,
                                outstanding,
                            ));
                        }
                        Err((error, class, metric)) => {
                            ticket.report(Outcome::Failure);
                            (error, class, metric, None)
                        }
                    }
                } else {
                    match finish_json(shared, ctx, call, upstream, response, &mut admitted, ticket).await {
                        Ok(response) => return Ok(response),
                        Err(failure) => failure,
                    }
                }
            }
            Ok(Ok(response)) => {
                let status = response.status();
                let (error, class, retry_after) = upstream_status_error(status, response, upstream).await;
                let outcome = match class {
                    ErrorClass::RateLimited => Outcome::RateLimited { retry_after },
                    ErrorClass::Unavailable | ErrorClass::Timeout => Outcome::Failure,
                    ErrorClass::Client | ErrorClass::ContextLengthExceeded | ErrorClass::ContentFiltered => {
                        Outcome::Ignored
                    }
                };
                breaker.record(permit, outcome, Instant::now());
                let metric = match class {
                    ErrorClass::RateLimited => AttemptOutcome::RateLimited,
                    ErrorClass::Unavailable => AttemptOutcome::ServerError,
                    ErrorClass::Timeout => AttemptOutcome::Timeout,
                    _ => AttemptOutcome::ClientError,
                };
                (error, class, metric, retry_after)
            }
            Ok(Err(e)) => {
                breaker.record(permit, Outcome::Failure, Instant::now());
                let class = if matches!(e, UpstreamError::Timeout(_)) {
                    ErrorClass::Timeout
                } else {
                    ErrorClass::Unavailable
                };
                let metric = if class == ErrorClass::Timeout {
                    AttemptOutcome::Timeout
                } else {
                    AttemptOutcome::ConnectionError
                };
                (upstream_failure(&e, upstream), class, metric, None)
            }
            Err(_) => {
                breaker.record(permit, Outcome::Failure, Instant::now());
                let error = ApiError::timeout(format!(
                    "the provider did not start answering within {}s",
                    first_byte.as_secs_f64().ceil()
                ));
                (error, ErrorClass::Timeout, AttemptOutcome::Timeout, None)
            }
        };
        drop(outstanding);
        shared.metrics.upstream_attempt(upstream.provider_name(), call.model, outcome, sent.elapsed());
        publish_breaker(&shared.metrics, &upstream.id, call.model, &breaker);
        // NB: on the attempt, not the request: a retry or fallback may still succeed, and
        // the request span's error is set once, by `handle`, if it does not.
        record_error(&attempt_span, error.code);
        excluded.push(i);
        let remaining = call.deadline.saturating_duration_since(Instant::now());
        let delay = {
            let mut rng = rand::rng();
            shared.options.retry.retry_delay(retry, class, retry_after, remaining, &mut rng)
        };
        last = Some((error, class));
        match delay {
            Some(d) => {
                shared.metrics.upstream_retry(upstream.provider_name(), outcome);
                retry += 1;
                tokio::time::sleep(d).await;
            }
            None => break,
        }
    }
    admitted.release().await;
    let (error, class) = last.unwrap_or_else(|| {
        (
            ApiError::unavailable("no_healthy_upstream", "no IP token could serve the request"),
            ErrorClass::Unavailable,
        )
    });
    Err(Failed { error, class })
}

/// A clear 503 when every IP token serving the model is out of service (its key is not
/// set, say), naming them and why; `None` while any can be tried. Unavailable, so the
/// model's fallbacks apply.
fn out_of_service(call: &Call<'_>) -> Option<ApiError> {
    // NB: callers learn the token and that its key is missing, not where keys are kept
    // (the admin's message on the resource says that).
    let reasons: Vec<String> = call
        .route
        .targets
        .iter()
        .map(|t| {
            call.runtime.out_of_service(t.ip_token).map(|o| match o.reason {
                tollgate_crds::status::reason::SECRET_NOT_FOUND
                | tollgate_crds::status::reason::SECRET_KEY_NOT_FOUND => {
                    format!("IP token {} is out of service: its provider key is not set", o.ip_token)
                }
                _ => format!("IP token {} is out of service: its provider key cannot be used", o.ip_token),
            })
        })
        .collect::<Option<_>>()?;
    if reasons.is_empty() {
        return None;
    }
    Some(ApiError::unavailable(
        "ip_token_unavailable",
        format!("model {:?} cannot be served: {}", call.model, reasons.join("; ")),
    ))
}

/// Picks a target: weighted, least outstanding, skipping open breakers and (while others
/// remain) targets that already failed this request.
fn choose(shared: &Shared, call: &Call<'_>, excluded: &[usize], now: Instant) -> Option<usize> {
    let candidates: Vec<Candidate> = call
        .route
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let id = call.runtime.upstreams.get(t.ip_token).map_or("", |u| u.id.as_str());
            Candidate {
                weight: t.weight,
                outstanding: shared.outstanding(id).get(),
                available: !excluded.contains(&i)
                    && call.runtime.out_of_service(t.ip_token).is_none()
                    && shared.breakers.get(id, call.model).is_available(now),
            }
        })
        .collect();
    let mut rng = rand::rng();
    pick(&candidates, &mut rng)
}

/// An IP token's own rpm/tpm limits; `Some(error)` when this request would exceed them.
/// Remembers the tokens-per-minute charge on `admitted`, to be corrected at settle.
async fn upstream_limits(
    shared: &Shared,
    token: Option<&tollgate_crds::config::IpTokenConfig>,
    admitted: &mut Admitted,
) -> Option<ApiError> {
    admitted.upstream_tpm = None;
    let token = token?;
    if let Some(rpm) = token.rpm
        && let Some(d) = check_rate(shared, &format!("ipt:{}:rpm", token.id), u64::from(rpm), 1).await
        && !d.allowed
    {
        shared.metrics.rate_limited(RateLimitKind::Requests, RateLimitScope::IpToken);
        return Some(rate_limited(&d, RateKind::Requests, "the provider credential's"));
    }
    if let Some(tpm) = token.tpm
        && let Some((d, charge)) =
            super::admission::check_tpm(shared, format!("ipt:{}:tpm", token.id), tpm, admitted.token_estimate)
                .await
    {
        if !d.allowed {
            shared.metrics.rate_limited(RateLimitKind::Tokens, RateLimitScope::IpToken);
            return Some(rate_limited(&d, RateKind::Tokens, "the provider credential's"));
        }
        admitted.upstream_tpm = charge;
    }
    None
}

/// The port an HTTP upstream is reached on (none for the in-process mock).
fn server_port(upstream: &Upstream, request: &http::Request<Body>) -> Option<u16> {
    if upstream.server_address() == "in-process" {
        return None;
    }
    let uri = request.uri();
    uri.port_u16().or_else(|| match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    })
}

fn publish_breaker(
    metrics: &crate::observability::Metrics,
    ip_token: &str,
    model: &str,
    breaker: &crate::reliability::CircuitBreaker,
) {
    let state = match breaker.state(Instant::now()) {
        crate::reliability::CircuitState::Closed => crate::observability::BreakerState::Closed,
        crate::reliability::CircuitState::HalfOpen => crate::observability::BreakerState::HalfOpen,
        crate::reliability::CircuitState::Open { .. } => crate::observability::BreakerState::Open,
    };
    metrics.breaker_state(ip_token, model, state);
}

/// The upstream request for this target: the caller's body, translated to the target's wire
/// format when it speaks the other one, with the upstream model name.
fn build_request(
    shared: &Shared,
    ctx: &Ctx,
    headers: &HeaderMap,
    call: &Call<'_>,
    target: &RouteTarget,
    upstream: &Upstream,
) -> Result<http::Request<Body>, ApiError> {
    let client_wire = ctx.endpoint.wire();
    let upstream_model = target.upstream_model.as_str();
    let op = if ctx.endpoint == Endpoint::Embeddings { Operation::Embeddings } else { Operation::Chat };
    let body = match (client_wire, upstream.wire()) {
        (Wire::OpenAi, Wire::OpenAi) | (Wire::Anthropic, Wire::Anthropic) => {
            let mut value = call.value.clone();
            if let Some(obj) = value.as_object_mut() {
                obj.insert("model".into(), Value::String(upstream_model.to_owned()));
                if call.stream && client_wire == Wire::OpenAi {
                    // Always ask for usage so the request can be accounted; stripped again
                    // from the stream when the caller did not ask for it.
                    obj.insert("stream_options".into(), serde_json::json!({ "include_usage": true }));
                }
            }
            value
        }
        (Wire::OpenAi, Wire::Anthropic) => translate::openai_request_to_anthropic(
            call.value,
            upstream_model,
            shared.options.default_max_tokens,
        )
        .map_err(untranslatable)?,
        (Wire::Anthropic, Wire::OpenAi) => {
            translate::anthropic_request_to_openai(call.value, upstream_model).map_err(untranslatable)?
        }
    };
    let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let mut request = upstream
        .request(op, upstream_model, bytes, headers)
        .map_err(|_| ApiError::internal("could not build the upstream request"))?;
    crate::observability::tracing::inject_trace_context(ctx.span.span(), request.headers_mut());
    Ok(request)
}

/// Reads a whole JSON answer, settles, records, and answers in the caller's format. A
/// failure while reading is returned for the retry decision (nothing has been sent yet).
async fn finish_json(
    shared: &Arc<Shared>,
    ctx: &mut Ctx,
    call: &Call<'_>,
    upstream: &Upstream,
    response: Response<Body>,
    admitted: &mut Admitted,
    ticket: BreakerTicket,
) -> Result<Response, (ApiError, ErrorClass, AttemptOutcome, Option<Duration>)> {
    let remaining = call.deadline.saturating_duration_since(Instant::now());
    let limited = Limited::new(response.into_body(), MAX_UPSTREAM_BODY);
    let collected = match tokio::time::timeout(remaining, limited.collect()).await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(_)) => {
            ticket.report(Outcome::Failure);
            let e = ApiError::bad_gateway(
                "upstream_connection_error",
                "the upstream connection failed mid-answer",
            );
            return Err((e, ErrorClass::Unavailable, AttemptOutcome::ConnectionError, None));
        }
        Err(_) => {
            ticket.report(Outcome::Failure);
            let e = ApiError::timeout("the upstream did not finish its answer in time");
            return Err((e, ErrorClass::Timeout, AttemptOutcome::Timeout, None));
        }
    };
    let Ok(parsed) = serde_json::from_slice::<Value>(&collected) else {
        ticket.report(Outcome::Failure);
        let e = ApiError::bad_gateway(
            "upstream_invalid_response",
            "the upstream answered with something that is not JSON",
        );
        return Err((e, ErrorClass::Unavailable, AttemptOutcome::ServerError, None));
    };
    let latency = ticket.sent.elapsed();
    ticket.report(Outcome::Success { latency });
    shared.metrics.upstream_attempt(upstream.provider_name(), call.model, AttemptOutcome::Success, latency);
    let served_model = call.model;
    let (out, usage) = match (ctx.endpoint.wire(), upstream.wire()) {
        (Wire::OpenAi, Wire::OpenAi) => (collected, translate::openai_usage(&parsed).unwrap_or_default()),
        (Wire::Anthropic, Wire::Anthropic) => {
            (collected, translate::anthropic_usage(&parsed).unwrap_or_default())
        }
        (Wire::OpenAi, Wire::Anthropic) => {
            let usage = translate::anthropic_usage(&parsed).unwrap_or_default();
            let out = translate::anthropic_response_to_openai(&parsed, served_model);
            (Bytes::from(serde_json::to_vec(&out).unwrap_or_default()), usage)
        }
        (Wire::Anthropic, Wire::OpenAi) => {
            let usage = translate::openai_usage(&parsed).unwrap_or_default();
            let out = translate::openai_response_to_anthropic(&parsed, served_model);
            (Bytes::from(serde_json::to_vec(&out).unwrap_or_default()), usage)
        }
    };
    let cost = admitted.settle(shared, &ctx.span, usage).await;
    let reasons = finish_reasons(&parsed);
    account(shared, ctx, served_model, usage, cost, admitted.prices.is_some(), &reasons);
    // Safety on the whole answer (tool-call arguments included), in the caller's format.
    let mut out = out;
    let mut blocked = None;
    if let Some(policy) = ctx.policy.clone().filter(|p| p.checks_output())
        && let Ok(answer) = serde_json::from_slice::<Value>(&out)
    {
        let verdict = {
            let span = ctx.span.safety(SafetyStage::Output);
            let verdict = span.in_scope(|| policy.check_response(&answer, ctx.endpoint.wire()));
            guard::record_verdict(&span, &verdict.findings);
            verdict
        };
        let principal = ctx.key.as_ref().map(|k| (k.principal.kind.as_str(), k.principal.name.as_str()));
        shared.report_findings(&ctx.request_id, principal, &verdict.findings);
        match verdict.outcome {
            crate::safety::Outcome::Allow => {}
            crate::safety::Outcome::Redact(redacted) => {
                out = Bytes::from(serde_json::to_vec(&redacted).unwrap_or_default());
            }
            crate::safety::Outcome::Block(v) => blocked = Some(guard::violation_error(&v)),
        }
    }
    if let Some(error) = blocked {
        // The provider was paid for this answer: it is charged and recorded, not shown.
        let mut record = ctx.record(error.status.as_u16(), usage, Some("policy_violation"));
        admitted.fill(&mut record, cost);
        shared.usage.record_durable(record).await;
        let mut response = error.into_response(ctx.endpoint.format());
        served_headers(response.headers_mut(), ctx, upstream);
        return Ok(response);
    }
    let mut record = ctx.record(200, usage, None);
    admitted.fill(&mut record, cost);
    // NB: the record is committed before the answer leaves: a caller that got a complete
    // response always has a durable usage record.
    shared.usage.record_durable(record).await;
    if let Some(request) = ctx.responses.clone() {
        // A Responses call: the (checked) chat answer becomes a Response object, stored
        // before it leaves so that a caller can chain on it at once.
        let response = request.encode(served_model, &out);
        if let Some(k) = &ctx.key {
            request.save(shared, (k.principal.kind.as_str(), &k.principal.name), &response).await;
        }
        out = Bytes::from(serde_json::to_vec(&response).unwrap_or_default());
    }
    let mut response = Response::new(Body::from(out));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    served_headers(h, ctx, upstream);
    if admitted.prices.is_some()
        && let Ok(v) = HeaderValue::from_str(&format_usd(cost))
    {
        h.insert("x-tollgate-cost-usd", v);
    }
    Ok(response)
}

/// Token and cost metrics and span attributes of a settled answer.
pub(super) fn account(
    shared: &Shared,
    ctx: &Ctx,
    model: &str,
    usage: TokenUsage,
    cost: u64,
    priced: bool,
    finish_reasons: &[String],
) {
    shared.metrics.tokens(model, usage.input, usage.output);
    if priced {
        shared.metrics.cost(model, cost);
    }
    let reasons: Vec<&str> = finish_reasons.iter().map(String::as_str).collect();
    ctx.span.set_response(&crate::observability::ResponseAttributes {
        model: Some(model),
        finish_reasons: &reasons,
        input_tokens: usage.input,
        output_tokens: usage.output,
        cost_micro_usd: priced.then_some(cost),
    });
}

/// Why generation stopped, as the provider said it, from an answer or a stream event in
/// either wire format: OpenAI's `choices[].finish_reason`, Anthropic's `stop_reason` (at the
/// top of a message, or in a `message_delta` event's `delta`).
pub(super) fn finish_reasons(value: &Value) -> Vec<String> {
    let mut reasons: Vec<String> = value
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("finish_reason").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    for anthropic in [value.get("stop_reason"), value.pointer("/delta/stop_reason")] {
        if let Some(reason) = anthropic.and_then(Value::as_str) {
            reasons.push(reason.to_owned());
        }
    }
    reasons
}

/// A stream whose first events have arrived, with the rest still to read.
pub(super) struct FirstEvents {
    pub(super) body: Body,
    pub(super) parser: SseParser,
    pub(super) events: Vec<SseEvent>,
    /// The provider answered the stream request with one plain body (JSON), not events:
    /// `events` holds that body whole, as one event.
    pub(super) not_a_stream: bool,
}

/// Whether a response is an event stream (judged by its `Content-Type`; a response with
/// none is taken as one, as some OpenAI-compatible servers send none).
fn is_event_stream(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// Reads a stream up to its first complete event (or its end). A plain body is read whole.
async fn first_events(
    response: Response<Body>,
    timeout: Duration,
) -> Result<FirstEvents, (ApiError, ErrorClass, AttemptOutcome)> {
    if !is_event_stream(&response) {
        let read = Limited::new(response.into_body(), MAX_UPSTREAM_ERROR_BODY).collect();
        let data = match tokio::time::timeout(timeout, read).await {
            Ok(Ok(c)) => String::from_utf8_lossy(&c.to_bytes()).into_owned(),
            Ok(Err(_)) | Err(_) => String::new(),
        };
        return Ok(FirstEvents {
            body: Body::empty(),
            parser: SseParser::default(),
            events: vec![SseEvent { event: String::new(), data }],
            not_a_stream: true,
        });
    }
    let mut body = response.into_body();
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let read = async {
        while events.is_empty() {
            match body.frame().await {
                None => {
                    parser.finish(&mut events);
                    break;
                }
                Some(Err(_)) => return Err(()),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && parser.feed(&data, &mut events).is_err()
                    {
                        return Err(());
                    }
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(())) => Ok(FirstEvents { body, parser, events, not_a_stream: false }),
        Ok(Err(())) => Err((
            ApiError::bad_gateway(
                "upstream_connection_error",
                "the provider's stream broke before it started",
            ),
            ErrorClass::Unavailable,
            AttemptOutcome::ConnectionError,
        )),
        Err(_) => Err((
            ApiError::timeout("the provider's stream did not start in time"),
            ErrorClass::Timeout,
            AttemptOutcome::Timeout,
        )),
    }
}

/// Hands a streaming answer to its pump.
#[expect(clippy::too_many_arguments, reason = "the request path's state, passed once")]
fn start_stream(
    shared: &Arc<Shared>,
    ctx: &mut Ctx,
    call: &Call<'_>,
    upstream: &Upstream,
    first: FirstEvents,
    admitted: Admitted,
    ticket: BreakerTicket,
    outstanding: crate::reliability::OutstandingGuard,
) -> Response {
    let served_model = call.model;
    let mode = match (ctx.endpoint.wire(), upstream.wire()) {
        (Wire::OpenAi, Wire::OpenAi) => StreamMode::OpenAiPassthrough { include_usage: call.include_usage },
        (Wire::Anthropic, Wire::Anthropic) => StreamMode::AnthropicPassthrough,
        (Wire::OpenAi, Wire::Anthropic) => StreamMode::AnthropicToOpenAi(Box::new(
            AnthropicToOpenAiStream::new(served_model, call.include_usage),
        )),
        (Wire::Anthropic, Wire::OpenAi) => {
            StreamMode::OpenAiToAnthropic(Box::new(OpenAiToAnthropicStream::new(served_model)))
        }
    };
    let extras = StreamExtras {
        ticket,
        outstanding,
        held: std::mem::take(&mut ctx.held),
        idle: call.timeouts.idle_between_chunks,
        deadline: call.deadline,
        guard: ctx
            .policy
            .as_ref()
            .filter(|p| p.checks_output())
            .map(|p| p.stream_scanner(ctx.endpoint.wire())),
        upstream: upstream.clone(),
    };
    let mut response = stream_response(shared, ctx, first, mode, admitted, extras);
    served_headers(response.headers_mut(), ctx, upstream);
    response
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
) -> (ApiError, ErrorClass, Option<Duration>) {
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
    let parsed = serde_json::from_slice::<Value>(&body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_owned))
        .map(|m| sanitize_upstream_message(&upstream.mask(&m)))
        .unwrap_or_default();
    let hint = parsed
        .as_ref()
        .map(|v| {
            let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("");
            format!("{} {} {}", s("/error/code"), s("/error/type"), message)
        })
        .unwrap_or_default();
    let class = classify_status(status.as_u16(), &hint);
    let code = status.as_u16();
    tracing::warn!(upstream = %upstream.id, status = code, class = class.as_str(), "provider returned an error");
    let suffix = if message.is_empty() { String::new() } else { format!(": {message}") };
    let error = match code {
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
    };
    (error, class, retry_after.map(Duration::from_secs))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn masks_credentials_in_upstream_messages() {
        let m = sanitize_upstream_message("Incorrect API key provided: sk-proj-abc123def456. See docs.");
        assert!(!m.contains("abc123"), "{m}");
        assert!(m.starts_with("Incorrect API key provided: [redacted]"), "{m}");
        let long = "x".repeat(1000);
        assert_eq!(sanitize_upstream_message(&long).len(), 300);
        assert_eq!(sanitize_upstream_message("context length exceeded"), "context length exceeded");
    }
}
