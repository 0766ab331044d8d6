//! Streaming answers: pass through or translate SSE as it arrives, settle and record when
//! the stream ends, holding the final frame back until the usage record is committed.

use super::guard::StreamGuard;
use super::*;

pub(super) fn data_frame(data: &str) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

pub(super) fn event_frame(name: &str, data: &Value) -> Bytes {
    let json = serde_json::to_string(data).unwrap_or_default();
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

pub(super) enum StreamMode {
    OpenAiPassthrough { include_usage: bool },
    AnthropicPassthrough,
    AnthropicToOpenAi(Box<AnthropicToOpenAiStream>),
    OpenAiToAnthropic(Box<OpenAiToAnthropicStream>),
}

impl StreamMode {
    pub(super) fn client_format(&self) -> ApiFormat {
        match self {
            Self::OpenAiPassthrough { .. } | Self::AnthropicToOpenAi(_) => ApiFormat::OpenAi,
            Self::AnthropicPassthrough | Self::OpenAiToAnthropic(_) => ApiFormat::Anthropic,
        }
    }
}

/// Streams the upstream's events to the caller as they arrive, translating when needed.
/// When the stream ends, however it ends, it is settled and recorded; a stream that ended
/// well has its record committed before its last event is sent.
/// What a stream's task holds until the stream ends.
pub(super) struct StreamExtras {
    pub(super) ticket: BreakerTicket,
    pub(super) outstanding: crate::reliability::OutstandingGuard,
    pub(super) held: Held,
    pub(super) idle: Duration,
    /// The request's total deadline: a stream never outlives it.
    pub(super) deadline: Instant,
    /// The output scan, when a safety policy checks this caller's answers.
    pub(super) guard: Option<crate::safety::StreamScanner>,
    /// The upstream serving the stream (to mask its key in what it sends).
    pub(super) upstream: Upstream,
}

pub(super) fn stream_response(
    shared: &Arc<Shared>,
    ctx: &Ctx,
    first: FirstEvents,
    mode: StreamMode,
    admitted: Admitted,
    extras: StreamExtras,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    let record = ctx.record(200, TokenUsage::default(), None);
    let shared_task = Arc::clone(shared);
    let idle = extras.idle;
    let deadline = extras.deadline;
    let started = ctx.started;
    let model = ctx.model.clone().unwrap_or_default();
    let span = ctx.span.clone();
    let task_span = span.span().clone();
    let request_id = ctx.request_id.clone();
    let principal = record.principal_kind.clone().zip(record.principal_name.clone());
    let mut extras = extras;
    let guard = extras.guard.take();
    let responses = ctx.responses.clone();
    let encoder = responses.as_ref().map(|r| r.stream(&model));
    let task = async move {
        let shared = shared_task;
        let StreamExtras { ticket, outstanding, held: _held, guard: _, upstream, .. } = extras;
        let mut admitted = admitted;
        // The output scan runs as the answer flows: its span covers the whole stream.
        let safety_span = guard.is_some().then(|| span.safety(SafetyStage::Output));
        let mut pump = Pump {
            mode,
            usage: TokenUsage::default(),
            tx,
            parser: first.parser,
            client_gone: false,
            content_events: 0,
            first_content: None,
            guard: guard.map(StreamGuard::new),
            blocked: None,
            finish_reasons: Vec::new(),
            upstream,
            upstream_error: None,
            not_a_stream: first.not_a_stream,
            deliver_by: deadline,
            stall: idle,
            client_stalled: false,
            output_cap: admitted.reserved_output,
            delta_events: 0,
            encoder,
            final_response: None,
        };
        let (outcome, terminator) = pump.run(first.body, first.events, idle, deadline).await;
        drop(outstanding);
        if let Some(g) = &pump.guard {
            let principal = principal.as_ref().map(|(k, n)| (k.as_str(), n.as_str()));
            shared.report_findings(&request_id, principal, &g.findings);
            if let Some(s) = &safety_span {
                guard::record_verdict(s, &g.findings);
            }
        }
        drop(safety_span);
        if let Some(at) = pump.first_content {
            shared.metrics.time_to_first_token(&model, at.saturating_duration_since(started));
        }
        ticket.report(match outcome {
            None => Outcome::Success { latency: started.elapsed().min(Duration::from_secs(3600)) },
            Some("client_disconnected" | "client_too_slow") => Outcome::Ignored,
            Some(_) => Outcome::Failure,
        });
        let usage = if pump.usage == TokenUsage::default() && outcome.is_some() {
            // No usage reported (the stream broke or the caller left): charge the input
            // estimate and one token per content event delivered.
            None
        } else {
            Some(pump.usage)
        };
        let cost = match usage {
            Some(u) => admitted.settle(&shared, &span, u).await,
            None => {
                let per_token = admitted.prices.map_or(0, |p| p.output_per_mtok.div_ceil(1_000_000));
                // Never more than the worst case reserved for it.
                let cost = admitted
                    .cap(admitted.input_micros.saturating_add(per_token.saturating_mul(pump.content_events)));
                admitted.settle_unmetered(&span, cost).await;
                cost
            }
        };
        let priced = admitted.prices.is_some();
        shared.metrics.tokens(&model, pump.usage.input, pump.usage.output);
        if priced {
            shared.metrics.cost(&model, cost);
        }
        let reasons: Vec<&str> = pump.finish_reasons.iter().map(String::as_str).collect();
        span.set_response(&crate::observability::ResponseAttributes {
            model: Some(&model),
            finish_reasons: &reasons,
            input_tokens: pump.usage.input,
            output_tokens: pump.usage.output,
            cost_micro_usd: priced.then_some(cost),
        });
        let mut record = record;
        record.input_tokens = pump.usage.input;
        record.output_tokens = pump.usage.output;
        record.cached_input_tokens = pump.usage.cached_input;
        record.error_class = outcome.map(Cow::Borrowed);
        record.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        admitted.fill(&mut record, cost);
        shared.usage.record_durable(record).await;
        // A Responses call that completed is stored before its last event leaves.
        if let (Some(request), Some(response), Some((kind, name))) =
            (&responses, pump.final_response.take(), &principal)
        {
            request.save(&shared, (kind, name), &response).await;
        }
        if let Some(bytes) = terminator {
            pump.send(bytes).await;
        }
    };
    tokio::spawn(task.instrument(task_span));
    let mut response = Response::new(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // NB: the x-tollgate-* headers are added by the caller (`served_headers`).
    response
}

pub(super) struct Pump {
    pub(super) mode: StreamMode,
    pub(super) usage: TokenUsage,
    pub(super) tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    pub(super) parser: SseParser,
    pub(super) client_gone: bool,
    /// Events carrying content delivered to the caller (the fallback output-token count).
    pub(super) content_events: u64,
    /// When the first content event was delivered.
    pub(super) first_content: Option<Instant>,
    /// The safety scan of the answer, when a policy checks output.
    pub(super) guard: Option<StreamGuard>,
    /// Set when the guard blocked the answer.
    pub(super) blocked: Option<crate::safety::Violation>,
    /// Why generation stopped, as the upstream's events said (for the request span).
    pub(super) finish_reasons: Vec<String>,
    /// The upstream serving the stream.
    pub(super) upstream: Upstream,
    /// Set when the upstream reported an error instead of going on (its message, masked).
    pub(super) upstream_error: Option<String>,
    /// The upstream answered with one plain body instead of events.
    pub(super) not_a_stream: bool,
    /// Delivery to the caller ends by the request's deadline too...
    pub(super) deliver_by: Instant,
    /// ...and a caller that takes nothing for this long is cut.
    pub(super) stall: Duration,
    /// Set when the caller stopped reading (cut, not gone by itself).
    pub(super) client_stalled: bool,
    /// The output tokens reserved for this request (the cap sent upstream), if reserved.
    pub(super) output_cap: Option<u64>,
    /// Upstream events carrying a `delta` (the answer's pieces, plus a little framing).
    pub(super) delta_events: u64,
    /// A Responses call: the chat chunks the caller would get become its typed events.
    pub(super) encoder: Option<translate::ChatToResponsesStream>,
    /// A Responses call that completed: its final Response object, to store.
    pub(super) final_response: Option<Value>,
}

/// `delta` events a compliant stream may send beyond one per output token: per choice a
/// role chunk and a finish chunk (OpenAI allows `n` up to 128), plus Anthropic's
/// `message_delta` and OpenAI's usage chunk.
const FRAMING_DELTA_EVENTS: u64 = 2 * 128 + 2;

impl Pump {
    /// Runs to the end of the upstream stream. Returns the error class if it did not end
    /// well, and the stream's final frame, held back until the usage record is committed.
    pub(super) async fn run(
        &mut self,
        body: Body,
        first: Vec<SseEvent>,
        idle: Duration,
        deadline: Instant,
    ) -> (Option<&'static str>, Option<Bytes>) {
        let mut held = None;
        let outcome = match self.run_inner(body, first, idle, deadline, &mut held).await {
            Some("client_disconnected") if self.client_stalled => Some("client_too_slow"),
            other => other,
        };
        (outcome, if outcome.is_none() { held } else { None })
    }

    pub(super) async fn run_inner(
        &mut self,
        mut body: Body,
        first: Vec<SseEvent>,
        idle: Duration,
        deadline: Instant,
        held: &mut Option<Bytes>,
    ) -> Option<&'static str> {
        for event in first {
            let done = self.on_event(event, held).await;
            if let Some(v) = self.blocked.take() {
                return self.block(&v).await;
            }
            if let Some(message) = self.upstream_error.take() {
                return self.fail("upstream_stream_error", &message).await;
            }
            if let Some(cap) = self.output_reached() {
                return self.cut_at_output(cap).await;
            }
            if self.client_gone {
                return Some("client_disconnected");
            }
            if done {
                return self.finish(held).await;
            }
        }
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = match tokio::time::timeout(idle.min(left), body.frame()).await {
                Err(_) if left <= idle => {
                    return self
                        .fail("stream_total_timeout", "the answer ran past the request's time limit")
                        .await;
                }
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
                let done = self.on_event(event, held).await;
                if let Some(v) = self.blocked.take() {
                    return self.block(&v).await;
                }
                if let Some(message) = self.upstream_error.take() {
                    return self.fail("upstream_stream_error", &message).await;
                }
                if let Some(cap) = self.output_reached() {
                    return self.cut_at_output(cap).await;
                }
                if self.client_gone {
                    return Some("client_disconnected");
                }
                if done {
                    return self.finish(held).await;
                }
            }
        }
        self.parser.finish(&mut events);
        for event in std::mem::take(&mut events) {
            let done = self.on_event(event, held).await;
            if let Some(message) = self.upstream_error.take() {
                return self.fail("upstream_stream_error", &message).await;
            }
            if let Some(cap) = self.output_reached() {
                return self.cut_at_output(cap).await;
            }
            if done {
                break;
            }
        }
        if self.client_gone {
            return Some("client_disconnected");
        }
        self.finish(held).await
    }

    /// Hands a frame to the caller's connection. NB: a caller that stops reading fills the
    /// socket and this channel; it is cut once it has taken nothing for the stall time or
    /// the request's deadline passes, so it holds no reservation, slot or upstream stream
    /// past the request's time limit.
    pub(super) async fn send(&mut self, bytes: Bytes) {
        if self.client_gone {
            return;
        }
        let wait = self.stall.min(self.deliver_by.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(wait, self.tx.send(Ok(bytes))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => self.client_gone = true,
            Err(_) => {
                self.client_gone = true;
                self.client_stalled = true;
            }
        }
    }

    pub(super) async fn send_data(&mut self, data: &str) {
        if self.blocked.is_some() {
            return;
        }
        if let Some(guard) = &mut self.guard
            && data.starts_with('{')
            && let Ok(mut chunk) = serde_json::from_str::<Value>(data)
            && chunk.get("error").is_none()
        {
            match guard.openai(&mut chunk) {
                Ok(()) => {
                    self.content_events += 1;
                    self.first_content.get_or_insert_with(Instant::now);
                    if self.encoder.is_some() {
                        self.send_encoded(&chunk).await;
                    } else {
                        let rewritten = serde_json::to_string(&chunk).unwrap_or_default();
                        self.send(data_frame(&rewritten)).await;
                    }
                }
                Err(v) => self.blocked = Some(*v),
            }
            return;
        }
        self.content_events += 1;
        self.first_content.get_or_insert_with(Instant::now);
        if self.encoder.is_some() {
            if let Ok(chunk) = serde_json::from_str::<Value>(data) {
                self.send_encoded(&chunk).await;
            }
            return;
        }
        self.send(data_frame(data)).await;
    }

    /// Sends a chat chunk as the Responses API's events.
    async fn send_encoded(&mut self, chunk: &Value) {
        let Some(encoder) = &mut self.encoder else { return };
        for (name, data) in encoder.on_chunk(chunk) {
            self.send(event_frame(name, &data)).await;
        }
    }

    /// Ends a Responses stream that failed: `response.failed` with the error.
    async fn send_failed(&mut self, code: &str, message: &str) -> bool {
        let Some(encoder) = &mut self.encoder else { return false };
        for (name, data) in encoder.fail(code, message) {
            self.send(event_frame(name, &data)).await;
        }
        true
    }

    pub(super) async fn send_event(&mut self, name: &str, data: &Value) {
        if self.blocked.is_some() {
            return;
        }
        if let Some(guard) = &mut self.guard {
            match guard.anthropic(name, data.clone()) {
                Ok(events) => {
                    for (n, d) in events {
                        self.content_events += 1;
                        self.first_content.get_or_insert_with(Instant::now);
                        self.send(event_frame(&n, &d)).await;
                    }
                }
                Err(v) => self.blocked = Some(*v),
            }
            return;
        }
        self.content_events += 1;
        self.first_content.get_or_insert_with(Instant::now);
        self.send(event_frame(name, data)).await;
    }

    /// Handles one upstream event; returns true when the upstream said it is done.
    pub(super) async fn on_event(&mut self, event: SseEvent, held: &mut Option<Bytes>) -> bool {
        if self.not_a_stream || is_error_event(&event) {
            self.upstream_failed(&event);
            return true;
        }
        if event.data.contains("\"delta\"") {
            self.delta_events += 1;
        }
        // NB: a text test first, so only the (usually one) event that says why the answer
        // stopped is parsed a second time; every OpenAI chunk carries `"finish_reason":null`.
        let d = &event.data;
        if ["\"finish_reason\":\"", "\"finish_reason\": \"", "\"stop_reason\":\"", "\"stop_reason\": \""]
            .iter()
            .any(|p| d.contains(p))
            && let Ok(v) = serde_json::from_str::<Value>(d)
        {
            for reason in super::upstream::finish_reasons(&v) {
                if !self.finish_reasons.contains(&reason) {
                    self.finish_reasons.push(reason);
                }
            }
        }
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
                let frame = Bytes::from(format!("event: {kind}\ndata: {}\n\n", event.data));
                if kind == "message_stop" {
                    *held = Some(frame);
                    return true;
                }
                if self.guard.is_some() {
                    self.send_event(&kind, &data).await;
                    return false;
                }
                self.content_events += 1;
                self.send(frame).await;
                false
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

    /// Ends a stream that completed: sends all but the final frame, which goes to `held`.
    pub(super) async fn finish(&mut self, held: &mut Option<Bytes>) -> Option<&'static str> {
        let responses = self.encoder.is_some();
        match &mut self.mode {
            StreamMode::OpenAiPassthrough { .. } => *held = Some(data_frame("[DONE]")),
            StreamMode::AnthropicPassthrough => {
                if held.is_none() {
                    *held = Some(event_frame("message_stop", &serde_json::json!({"type": "message_stop"})));
                }
            }
            StreamMode::AnthropicToOpenAi(t) => {
                let out = t.finish();
                self.usage = t.usage();
                for payload in out {
                    self.send_data(&payload).await;
                }
                *held = Some(data_frame("[DONE]"));
            }
            StreamMode::OpenAiToAnthropic(t) => {
                let mut out = t.finish();
                self.usage = t.usage();
                let last = out.pop();
                for (name, data) in out {
                    self.send_event(name, &data).await;
                }
                *held = last.map(|(name, data)| event_frame(name, &data));
            }
        }
        if let Some(v) = self.blocked.take() {
            *held = None;
            return self.block(&v).await;
        }
        if responses && let Some(encoder) = &mut self.encoder {
            // `response.completed` takes the place of `[DONE]`, held back the same way.
            let (mut events, response) = encoder.finish(self.usage);
            let last = events.pop();
            for (name, data) in events {
                self.send(event_frame(name, &data)).await;
            }
            *held = last.map(|(name, data)| event_frame(name, &data));
            self.final_response = Some(response);
        }
        if self.client_gone { Some("client_disconnected") } else { None }
    }

    /// The reserved output cap, when the upstream has gone past it: its reported output
    /// tokens exceed the cap, or it sent more `delta` events than the cap plus framing (a
    /// piece of the answer is at least one token, so a compliant stream never does).
    /// NB: not `content bytes / 4`: a token can be many bytes (runs of spaces in code), so
    /// that estimate would cut compliant answers short.
    fn output_reached(&self) -> Option<u64> {
        let cap = self.output_cap?;
        let over = self.usage.output > cap || self.delta_events > cap.saturating_add(FRAMING_DELTA_EVENTS);
        over.then_some(cap)
    }

    /// Ends a stream whose upstream sent more output than was reserved: an error event in
    /// the caller's format (never `[DONE]`), recorded as `upstream_output_exceeded`. It is
    /// charged what the upstream reported (else the estimate), which may overrun the
    /// reservation; the overrun is then counted and alerted at settle.
    async fn cut_at_output(&mut self, cap: u64) -> Option<&'static str> {
        let message = format!(
            "the provider sent more output than the {cap} tokens this request allows; the answer was cut"
        );
        self.fail("upstream_output_exceeded", &message).await
    }

    /// Ends a stream a safety policy blocked: a `policy_violation` error event in the
    /// caller's format (naming policy, rule and location, never the matched text).
    pub(super) async fn block(&mut self, v: &crate::safety::Violation) -> Option<&'static str> {
        let error = guard::violation_error(v);
        if self.send_failed(error.code, &error.message).await {
            return Some("policy_violation");
        }
        match self.mode.client_format() {
            ApiFormat::OpenAi => {
                let data = serde_json::to_string(&error.body(ApiFormat::OpenAi)).unwrap_or_default();
                self.send(data_frame(&data)).await;
            }
            ApiFormat::Anthropic => self.send(event_frame("error", &error.body(ApiFormat::Anthropic))).await,
        }
        Some("policy_violation")
    }

    /// Notes an upstream that reported an error mid-stream, or answered a stream request
    /// with a plain body: the usage it reports is kept (to be charged), and its message,
    /// with the upstream's key masked, ends the caller's stream.
    fn upstream_failed(&mut self, event: &SseEvent) {
        let body = serde_json::from_str::<Value>(&event.data).ok();
        if let Some(b) = &body
            && let Some(u) = translate::openai_usage(b)
                .or_else(|| translate::anthropic_usage(b))
                .or_else(|| b.get("message").and_then(translate::anthropic_usage))
        {
            self.usage = u;
        }
        let said = body
            .as_ref()
            .and_then(|b| b.pointer("/error/message").and_then(Value::as_str))
            .map(|m| super::upstream::sanitize_upstream_message(&self.upstream.mask(m)));
        let message = match (said, self.not_a_stream) {
            (Some(m), _) if !m.is_empty() => format!("the provider reported an error mid-stream: {m}"),
            (_, true) => {
                "the provider answered a streaming request with a plain body, not a stream".to_owned()
            }
            _ => "the provider reported an error mid-stream".to_owned(),
        };
        self.upstream_error = Some(message);
    }

    /// Ends a stream that broke: an error event in the caller's format, then the end.
    pub(super) async fn fail(&mut self, class: &'static str, message: &str) -> Option<&'static str> {
        let error = ApiError::bad_gateway(class, message);
        if self.send_failed(class, message).await {
            return Some(class);
        }
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

/// Whether an upstream event reports an error: Anthropic's `error` event, or a chunk
/// whose top level is `{"error": ...}` (OpenAI and compatible servers). NB: a text test
/// first; only events that mention `"error"` are parsed.
fn is_error_event(event: &SseEvent) -> bool {
    if event.event == "error" {
        return true;
    }
    event.data.contains("\"error\"")
        && serde_json::from_str::<Value>(&event.data).is_ok_and(|v| {
            v.get("error").is_some_and(|e| !e.is_null())
                || v.get("type").and_then(Value::as_str) == Some("error")
        })
}
