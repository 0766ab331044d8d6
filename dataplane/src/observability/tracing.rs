//! Logs and traces: one `tracing` subscriber with a JSON (or text) log layer on stderr and,
//! when an OTLP endpoint is configured, an OpenTelemetry layer that exports spans over OTLP
//! gRPC through a batch processor.
//!
//! Span layout of one request (all built by [`RequestSpan`]):
//!
//! ```text
//! chat {model}                 kind server: gen_ai.* request/response/usage, error.type
//! ├── safety input             one per safety pass when a policy applies (input, output)
//! ├── budget.reserve           worst-case reservation, one per model tried
//! ├── chat {upstream model}    kind client: one per upstream attempt (retries, fallbacks)
//! ├── chat {upstream model}
//! ├── safety output
//! └── budget.settle            actual cost; tokens-per-minute corrected
//! ```
//!
//! A W3C `traceparent` sent by the caller becomes the parent of the request span.
//!
//! NB: nothing here takes a key, a prompt or a completion, and nothing should be recorded
//! into these spans that is: events logged inside a span become span events, so the same
//! rule holds for log lines.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::ObservabilityError;
use super::metrics::SafetyStage;

/// `target` of every span built here, for filters (`TOLLGATE_LOG=info,tollgate::request=off`).
pub const SPAN_TARGET: &str = "tollgate::request";
/// Default `service.name`.
pub const DEFAULT_SERVICE_NAME: &str = "tollgate-dataplane";
/// Default log filter (`TOLLGATE_LOG`).
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn";
/// Default filter of what becomes spans and span events (`TOLLGATE_TRACE_FILTER`).
/// NB: `tollgate` matches every `tollgate*` target (filters match by prefix). The transport
/// crates are off so the exporter's own HTTP/2 traffic can never feed back into traces.
pub const DEFAULT_TRACE_FILTER: &str =
    "warn,tollgate=info,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,opentelemetry=off";

/// Attribute names: the OpenTelemetry GenAI and general semantic conventions, and
/// Tollgate's own under `tollgate.`. Record span fields by these names.
pub mod attr {
    /// `chat`, `embeddings`.
    pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
    /// `openai`, `anthropic`, `azure.ai.openai`, ...
    pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
    /// The older name of `gen_ai.provider.name`, still read by many backends.
    pub const GEN_AI_SYSTEM: &str = "gen_ai.system";
    /// The model asked for.
    pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
    /// `max_tokens` of the request.
    pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
    /// The model that answered: its Tollgate name, after downgrades and fallbacks.
    pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
    /// Why generation stopped (string array).
    pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
    /// Prompt tokens.
    pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    /// Completion tokens.
    pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    /// Upstream host.
    pub const SERVER_ADDRESS: &str = "server.address";
    /// Upstream port.
    pub const SERVER_PORT: &str = "server.port";
    /// Error class (the gateway's error code) when the operation failed.
    pub const ERROR_TYPE: &str = "error.type";
    /// HTTP status sent to the caller (request span) or received (attempt span).
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    /// The request id (`x-request-id`).
    pub const TOLLGATE_REQUEST_ID: &str = "tollgate.request.id";
    /// The API used (`chat.completions`, `messages`, `embeddings`).
    pub const TOLLGATE_ENDPOINT: &str = "tollgate.endpoint";
    /// The caller: `kind/name` of the principal (never the key).
    pub const TOLLGATE_PRINCIPAL: &str = "tollgate.principal";
    /// The IP token (by name) that served.
    pub const TOLLGATE_IP_TOKEN: &str = "tollgate.ip_token";
    /// Whether the answer is streamed.
    pub const TOLLGATE_STREAM: &str = "tollgate.stream";
    /// The model asked for before a budget downgrade or fallback.
    pub const TOLLGATE_FALLBACK_FROM: &str = "tollgate.fallback.from";
    /// Charged cost in micro-USD.
    pub const TOLLGATE_COST_MICRO_USD: &str = "tollgate.cost.micro_usd";
    /// Reserved (worst-case) cost in micro-USD.
    pub const TOLLGATE_RESERVED_MICRO_USD: &str = "tollgate.cost.reserved_micro_usd";
    /// The budget that refused.
    pub const TOLLGATE_BUDGET_ID: &str = "tollgate.budget.id";
    /// `admitted`, `none` (no budget applies, or soft budgets on an unpriced model),
    /// `unchecked` (soft budgets while the counters cannot answer), `downgraded`, `refused`.
    pub const TOLLGATE_BUDGET_OUTCOME: &str = "tollgate.budget.outcome";
    /// `input`, `output`, `tool`.
    pub const TOLLGATE_SAFETY_STAGE: &str = "tollgate.safety.stage";
    /// The strictest action taken (`block`, `redact`, `log`, `none`).
    pub const TOLLGATE_SAFETY_ACTION: &str = "tollgate.safety.action";
    /// Names of the rules that matched, comma-separated (names only, never matched text).
    pub const TOLLGATE_SAFETY_RULES: &str = "tollgate.safety.rules";
    /// 1-based number of the upstream attempt within the request.
    pub const TOLLGATE_ATTEMPT: &str = "tollgate.attempt";
    /// Trace id, also on log lines for correlation.
    pub const TRACE_ID: &str = "trace_id";
    /// tracing-opentelemetry's field for the span status (`ok`, `error`).
    pub const OTEL_STATUS_CODE: &str = "otel.status_code";
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// JSON lines (production).
    #[default]
    Json,
    /// Human-readable text.
    Text,
}

/// Telemetry settings; [`TelemetryConfig::from_env`] reads them from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// `service.name` of exported spans (`OTEL_SERVICE_NAME`).
    pub service_name: String,
    /// OTLP gRPC endpoint such as `http://otel-collector.observability:4317`
    /// (`TOLLGATE_OTLP_ENDPOINT`); traces are off when `None`.
    pub otlp_endpoint: Option<String>,
    /// Log format (`TOLLGATE_LOG_FORMAT`: `json` or `text`).
    pub log_format: LogFormat,
    /// `EnvFilter` directives for logs (`TOLLGATE_LOG`).
    pub log_filter: String,
    /// `EnvFilter` directives for spans (`TOLLGATE_TRACE_FILTER`).
    pub trace_filter: String,
    /// Share of new traces kept, 0.0–1.0 (`TOLLGATE_TRACE_SAMPLE_RATIO`). A caller's
    /// `traceparent` sampled flag is honoured.
    pub sample_ratio: f64,
    /// Deadline of one export call, retries included.
    pub export_timeout: Duration,
    /// How long spans wait in the batch before they are sent.
    pub batch_delay: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            otlp_endpoint: None,
            log_format: LogFormat::Json,
            log_filter: DEFAULT_LOG_FILTER.to_owned(),
            trace_filter: DEFAULT_TRACE_FILTER.to_owned(),
            sample_ratio: 1.0,
            export_timeout: Duration::from_secs(5),
            batch_delay: Duration::from_secs(2),
        }
    }
}

impl TelemetryConfig {
    /// Reads `TOLLGATE_OTLP_ENDPOINT`, `TOLLGATE_LOG`, `TOLLGATE_LOG_FORMAT`,
    /// `TOLLGATE_TRACE_FILTER`, `TOLLGATE_TRACE_SAMPLE_RATIO` and `OTEL_SERVICE_NAME`;
    /// unset or empty variables keep their defaults.
    pub fn from_env() -> Result<Self, ObservabilityError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`TelemetryConfig::from_env`], reading variables through `var`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, ObservabilityError> {
        let var = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let mut cfg = Self::default();
        if let Some(name) = var("OTEL_SERVICE_NAME") {
            cfg.service_name = name;
        }
        cfg.otlp_endpoint = var("TOLLGATE_OTLP_ENDPOINT");
        if let Some(format) = var("TOLLGATE_LOG_FORMAT") {
            cfg.log_format = match format.to_ascii_lowercase().as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                _ => {
                    return Err(config_error(
                        "TOLLGATE_LOG_FORMAT",
                        format!("{format:?} is neither json nor text"),
                    ));
                }
            };
        }
        if let Some(filter) = var("TOLLGATE_LOG") {
            cfg.log_filter = filter;
        }
        if let Some(filter) = var("TOLLGATE_TRACE_FILTER") {
            cfg.trace_filter = filter;
        }
        if let Some(ratio) = var("TOLLGATE_TRACE_SAMPLE_RATIO") {
            cfg.sample_ratio = ratio.parse().map_err(|_| {
                config_error("TOLLGATE_TRACE_SAMPLE_RATIO", format!("{ratio:?} is not a number"))
            })?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the settings without installing anything.
    pub fn validate(&self) -> Result<(), ObservabilityError> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(config_error("sample ratio", format!("{} is outside 0.0..=1.0", self.sample_ratio)));
        }
        if let Some(endpoint) = &self.otlp_endpoint
            && !endpoint.starts_with("http://")
        {
            // NB: the exporter is built without TLS (no C or crypto build for in-cluster
            // traffic); an https:// endpoint would fail on every export, so refuse it now.
            return Err(config_error(
                "OTLP endpoint",
                format!(
                    "{endpoint:?} must be http://HOST:PORT (plaintext gRPC; use a collector sidecar or in-cluster service)"
                ),
            ));
        }
        parse_filter("log filter", &self.log_filter)?;
        parse_filter("trace filter", &self.trace_filter)?;
        Ok(())
    }
}

fn config_error(setting: &'static str, message: String) -> ObservabilityError {
    ObservabilityError::Config { setting, message }
}

fn parse_filter(setting: &'static str, directives: &str) -> Result<EnvFilter, ObservabilityError> {
    EnvFilter::builder().parse(directives).map_err(|e| config_error(setting, e.to_string()))
}

/// Keeps the trace pipeline alive; dropping it flushes what is queued and shuts the exporter
/// down (a blocking call of up to the export timeout).
///
/// NB: drop it (or call [`TelemetryGuard::flush`]) from a multi-thread Tokio runtime or
/// outside any runtime, never on a current-thread runtime's own thread: the exporter's
/// connection is driven by the runtime that the flush would be blocking.
#[derive(Debug)]
#[must_use = "dropping the guard shuts the trace exporter down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    shutdown_timeout: Duration,
}

impl TelemetryGuard {
    /// Whether spans are exported (an OTLP endpoint was configured).
    pub fn traces_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span now (blocking).
    pub fn flush(&self) -> Result<(), ObservabilityError> {
        match &self.provider {
            Some(provider) => Ok(provider.force_flush()?),
            None => Ok(()),
        }
    }

    /// Flushes and shuts the exporter down (blocking), reporting failure; dropping the
    /// guard does the same and ignores failure.
    pub fn shutdown(mut self) -> Result<(), ObservabilityError> {
        match self.provider.take() {
            Some(provider) => Ok(provider.shutdown_with_timeout(self.shutdown_timeout)?),
            None => Ok(()),
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown_with_timeout(self.shutdown_timeout)
        {
            tracing::warn!(error = %e, "trace exporter shutdown failed; queued spans may be lost");
        }
    }
}

/// Installs the global subscriber: logs to stderr filtered by `cfg.log_filter`, and spans
/// exported over OTLP gRPC when `cfg.otlp_endpoint` is set. Also installs the W3C trace
/// context propagator globally. Call once, early in `main`, inside the Tokio runtime when
/// an endpoint is set (the gRPC channel is driven by it), and keep the guard until exit.
pub fn init_tracing(cfg: &TelemetryConfig) -> Result<TelemetryGuard, ObservabilityError> {
    cfg.validate()?;
    let log_filter = parse_filter("log filter", &cfg.log_filter)?;
    let logs = match cfg.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            // Every enclosing span's fields, so a line logged inside `budget.settle` still
            // carries the request id, principal and model of its request span.
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
    }
    .with_filter(log_filter);
    let subscriber = tracing_subscriber::registry().with(logs);
    let (traces, provider) = match &cfg.otlp_endpoint {
        Some(endpoint) => {
            let (layer, provider) = otel_layer(cfg, endpoint)?;
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    let guard = TelemetryGuard { provider, shutdown_timeout: cfg.export_timeout + Duration::from_secs(1) };
    subscriber.with(traces).try_init()?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(guard)
}

fn otel_layer<S>(
    cfg: &TelemetryConfig,
    endpoint: &str,
) -> Result<(impl Layer<S> + use<S>, SdkTracerProvider), ObservabilityError>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ObservabilityError::NoRuntime);
    }
    let trace_filter = parse_filter("trace filter", &cfg.trace_filter)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(cfg.export_timeout)
        .build()?;
    let batch = BatchConfigBuilder::default().with_scheduled_delay(cfg.batch_delay).build();
    let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
    let root_sampler = if cfg.sample_ratio >= 1.0 {
        Sampler::AlwaysOn
    } else {
        Sampler::TraceIdRatioBased(cfg.sample_ratio)
    };
    let resource = Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(root_sampler)))
        .with_resource(resource)
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("tollgate"))
        .with_threads(false)
        .with_filter(trace_filter);
    Ok((layer, provider))
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

/// The caller's trace context from W3C `traceparent`/`tracestate` headers (an empty context
/// when absent or malformed). Reads no other header.
pub fn parent_context(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Makes the caller's `traceparent` the parent of `span`. Must run before the span is first
/// entered. Returns whether a valid caller context was adopted (false when traces are off).
pub fn set_parent_from_headers(span: &Span, headers: &HeaderMap) -> bool {
    let cx = parent_context(headers);
    if !cx.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(cx).is_ok()
}

/// Writes `span`'s context as `traceparent`/`tracestate` into upstream request headers (for
/// in-cluster upstreams that trace too; third-party providers ignore them).
pub fn inject_trace_context(span: &Span, headers: &mut HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

/// The trace id of `span` in hex, when traces are on.
pub fn trace_id(span: &Span) -> Option<String> {
    let cx = span.context();
    let span_ref = cx.span();
    let sc = span_ref.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Records an unsigned count on `span` as a 64-bit signed integer (saturating).
///
/// NB: tracing-opentelemetry exports `u64` (and `u32`, `u16`) fields as *strings*; integer
/// attributes must be recorded as `i64`, which this does.
pub fn record_u64(span: &Span, field: &'static str, value: u64) {
    span.record(field, i64::try_from(value).unwrap_or(i64::MAX));
}

/// Marks `span` failed with `error_type` (the gateway's error code, e.g. `upstream_timeout`).
pub fn record_error(span: &Span, error_type: &str) {
    span.record(attr::ERROR_TYPE, error_type);
    span.record(attr::OTEL_STATUS_CODE, "error");
}

/// GenAI operation (`gen_ai.operation.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenAiOperation {
    /// Chat completions and Anthropic messages.
    Chat,
    /// Embeddings.
    Embeddings,
}

impl GenAiOperation {
    /// The semantic-convention value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Embeddings => "embeddings",
        }
    }
}

/// `gen_ai.provider.name` for a Tollgate provider name (`azure-openai` → `azure.ai.openai`);
/// names without a convention value are kept.
pub fn gen_ai_provider_name(provider: &'static str) -> &'static str {
    match provider {
        "azure-openai" => "azure.ai.openai",
        other => other,
    }
}

/// What is known when a request arrives.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpanStart<'a> {
    /// The GenAI operation of the endpoint.
    pub operation: GenAiOperation,
    /// The endpoint name (`chat.completions`, `messages`, `embeddings`).
    pub endpoint: &'static str,
    /// The request id.
    pub request_id: &'a str,
    /// The request headers: only `traceparent` and `tracestate` are read.
    pub headers: &'a HeaderMap,
}

/// The upstream a request was sent to, for [`RequestSpan::set_upstream`].
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTarget<'a> {
    /// Tollgate provider name (`openai`, `azure-openai`, ...).
    pub provider: &'static str,
    /// IP token name (never its key).
    pub ip_token: &'a str,
    /// Upstream host only (no scheme, user info or path).
    pub server_address: &'a str,
    /// Upstream port, if known.
    pub server_port: Option<u16>,
}

/// One upstream attempt, for [`RequestSpan::upstream_attempt`].
#[derive(Debug, Clone, Copy)]
pub struct UpstreamAttempt<'a> {
    /// 1-based attempt number within the request (retries and fallbacks included).
    pub attempt: u32,
    /// Where it goes.
    pub target: UpstreamTarget<'a>,
    /// The model name sent upstream.
    pub model: &'a str,
}

/// What the answer said, for [`RequestSpan::set_response`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseAttributes<'a> {
    /// The model that answered, as reported.
    pub model: Option<&'a str>,
    /// Finish reasons (`stop`, `length`, `tool_calls`, `end_turn`, ...).
    pub finish_reasons: &'a [&'a str],
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Charged cost in micro-USD, when priced.
    pub cost_micro_usd: Option<u64>,
}

/// The span of one request (`gen_ai.request`, exported as `{operation} {model}`) and
/// constructors of its children. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RequestSpan {
    span: Span,
    operation: GenAiOperation,
}

impl RequestSpan {
    /// Opens the request span with every attribute declared, adopts the caller's
    /// `traceparent` as parent and records the trace id (so log lines carry it).
    pub fn start(start: &RequestSpanStart<'_>) -> Self {
        let op = start.operation.as_str();
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "gen_ai.request",
            otel.name = op,
            otel.kind = "server",
            { attr::OTEL_STATUS_CODE } = Empty,
            { attr::GEN_AI_OPERATION_NAME } = op,
            { attr::GEN_AI_PROVIDER_NAME } = Empty,
            { attr::GEN_AI_SYSTEM } = Empty,
            { attr::GEN_AI_REQUEST_MODEL } = Empty,
            { attr::GEN_AI_REQUEST_MAX_TOKENS } = Empty,
            { attr::GEN_AI_RESPONSE_MODEL } = Empty,
            { attr::GEN_AI_USAGE_INPUT_TOKENS } = Empty,
            { attr::GEN_AI_USAGE_OUTPUT_TOKENS } = Empty,
            { attr::SERVER_ADDRESS } = Empty,
            { attr::SERVER_PORT } = Empty,
            { attr::ERROR_TYPE } = Empty,
            { attr::HTTP_RESPONSE_STATUS_CODE } = Empty,
            { attr::TOLLGATE_REQUEST_ID } = start.request_id,
            { attr::TOLLGATE_ENDPOINT } = start.endpoint,
            { attr::TOLLGATE_PRINCIPAL } = Empty,
            { attr::TOLLGATE_IP_TOKEN } = Empty,
            { attr::TOLLGATE_STREAM } = Empty,
            { attr::TOLLGATE_FALLBACK_FROM } = Empty,
            { attr::TOLLGATE_COST_MICRO_USD } = Empty,
            { attr::TRACE_ID } = Empty,
        );
        set_parent_from_headers(&span, start.headers);
        if let Some(id) = trace_id(&span) {
            span.record(attr::TRACE_ID, id);
        }
        Self { span, operation: start.operation }
    }

    /// The `tracing` span, to enter or to `.instrument()` futures with.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Records the caller as `kind/name` of the principal (never the key).
    pub fn set_principal(&self, principal: &str) {
        self.span.record(attr::TOLLGATE_PRINCIPAL, principal);
    }

    /// Records the requested model and renames the span `{operation} {model}`. Call again
    /// after a budget downgrade, after [`RequestSpan::set_fallback_from`].
    pub fn set_model(&self, model: &str) {
        self.span.record(attr::GEN_AI_REQUEST_MODEL, model);
        // NB: `otel.name` only applies before the span starts, and it started in `start`
        // (the trace id was read); rename the OpenTelemetry span directly.
        self.span.context().span().update_name(format!("{} {model}", self.operation.as_str()));
    }

    /// Records the model asked for before a downgrade or fallback.
    pub fn set_fallback_from(&self, model: &str) {
        self.span.record(attr::TOLLGATE_FALLBACK_FROM, model);
    }

    /// Records request parameters.
    pub fn set_request(&self, max_tokens: Option<u64>, stream: bool) {
        if let Some(max) = max_tokens {
            record_u64(&self.span, attr::GEN_AI_REQUEST_MAX_TOKENS, max);
        }
        self.span.record(attr::TOLLGATE_STREAM, stream);
    }

    /// Records the upstream that serves (the last one tried, after fallbacks).
    pub fn set_upstream(&self, target: &UpstreamTarget<'_>) {
        let provider = gen_ai_provider_name(target.provider);
        self.span.record(attr::GEN_AI_PROVIDER_NAME, provider);
        self.span.record(attr::GEN_AI_SYSTEM, provider);
        self.span.record(attr::TOLLGATE_IP_TOKEN, target.ip_token);
        self.span.record(attr::SERVER_ADDRESS, target.server_address);
        if let Some(port) = target.server_port {
            self.span.record(attr::SERVER_PORT, i64::from(port));
        }
    }

    /// Records what the answer said: response model, finish reasons, usage and cost.
    pub fn set_response(&self, response: &ResponseAttributes<'_>) {
        if let Some(model) = response.model {
            self.span.record(attr::GEN_AI_RESPONSE_MODEL, model);
        }
        record_u64(&self.span, attr::GEN_AI_USAGE_INPUT_TOKENS, response.input_tokens);
        record_u64(&self.span, attr::GEN_AI_USAGE_OUTPUT_TOKENS, response.output_tokens);
        if let Some(cost) = response.cost_micro_usd {
            record_u64(&self.span, attr::TOLLGATE_COST_MICRO_USD, cost);
        }
        let reasons: Vec<StringValue> = response
            .finish_reasons
            .iter()
            // Provider-chosen words; keep them short tokens, never free text.
            .filter(|r| {
                r.len() <= 32 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
            .map(|r| StringValue::from((*r).to_owned()))
            .collect();
        if !reasons.is_empty() {
            // A string array exists only in OpenTelemetry, not as a `tracing` field.
            self.span
                .set_attribute(attr::GEN_AI_RESPONSE_FINISH_REASONS, Value::Array(Array::String(reasons)));
        }
    }

    /// Records the HTTP status sent to the caller.
    pub fn set_status(&self, status: u16) {
        self.span.record(attr::HTTP_RESPONSE_STATUS_CODE, i64::from(status));
    }

    /// Marks the request failed with the gateway's error code.
    pub fn set_error(&self, error_type: &str) {
        record_error(&self.span, error_type);
    }

    /// The trace id in hex, when traces are on.
    pub fn trace_id(&self) -> Option<String> {
        trace_id(&self.span)
    }

    /// A child span for one safety pass; record [`attr::TOLLGATE_SAFETY_ACTION`] and
    /// [`attr::TOLLGATE_SAFETY_RULES`] (rule names only) on it.
    pub fn safety(&self, stage: SafetyStage) -> Span {
        let name = match stage {
            SafetyStage::Input => "safety input",
            SafetyStage::Output => "safety output",
            SafetyStage::Tool => "safety tool",
        };
        tracing::info_span!(
            target: SPAN_TARGET,
            parent: &self.span,
            "safety",
            otel.name = name,
            { attr::OTEL_STATUS_CODE } = Empty,
            { attr::TOLLGATE_SAFETY_STAGE } = stage.as_str(),
            { attr::TOLLGATE_SAFETY_ACTION } = Empty,
            { attr::TOLLGATE_SAFETY_RULES } = Empty,
            { attr::ERROR_TYPE } = Empty,
        )
    }

    /// A child span for the budget reservation; record [`attr::TOLLGATE_RESERVED_MICRO_USD`]
    /// (with [`record_u64`]),
    /// [`attr::TOLLGATE_BUDGET_OUTCOME`] and, when refused, [`attr::TOLLGATE_BUDGET_ID`].
    pub fn budget_reserve(&self) -> Span {
        tracing::info_span!(
            target: SPAN_TARGET,
            parent: &self.span,
            "budget.reserve",
            { attr::OTEL_STATUS_CODE } = Empty,
            { attr::TOLLGATE_RESERVED_MICRO_USD } = Empty,
            { attr::TOLLGATE_BUDGET_OUTCOME } = Empty,
            { attr::TOLLGATE_BUDGET_ID } = Empty,
            { attr::ERROR_TYPE } = Empty,
        )
    }

    /// A child span (kind client) for one upstream attempt, named `{operation} {model}`;
    /// record [`attr::HTTP_RESPONSE_STATUS_CODE`] (as `i64`) and, on failure, [`record_error`].
    pub fn upstream_attempt(&self, attempt: &UpstreamAttempt<'_>) -> Span {
        let provider = gen_ai_provider_name(attempt.target.provider);
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            parent: &self.span,
            "gen_ai.upstream",
            otel.name = format!("{} {}", self.operation.as_str(), attempt.model),
            otel.kind = "client",
            { attr::OTEL_STATUS_CODE } = Empty,
            { attr::GEN_AI_OPERATION_NAME } = self.operation.as_str(),
            { attr::GEN_AI_PROVIDER_NAME } = provider,
            { attr::GEN_AI_SYSTEM } = provider,
            { attr::GEN_AI_REQUEST_MODEL } = attempt.model,
            { attr::GEN_AI_RESPONSE_MODEL } = Empty,
            { attr::SERVER_ADDRESS } = attempt.target.server_address,
            { attr::SERVER_PORT } = Empty,
            { attr::TOLLGATE_IP_TOKEN } = attempt.target.ip_token,
            { attr::TOLLGATE_ATTEMPT } = i64::from(attempt.attempt),
            { attr::HTTP_RESPONSE_STATUS_CODE } = Empty,
            { attr::ERROR_TYPE } = Empty,
        );
        if let Some(port) = attempt.target.server_port {
            span.record(attr::SERVER_PORT, i64::from(port));
        }
        span
    }

    /// A child span for settling the charge; record [`attr::TOLLGATE_COST_MICRO_USD`] with
    /// [`record_u64`].
    pub fn settle(&self) -> Span {
        tracing::info_span!(
            target: SPAN_TARGET,
            parent: &self.span,
            "budget.settle",
            { attr::OTEL_STATUS_CODE } = Empty,
            { attr::TOLLGATE_COST_MICRO_USD } = Empty,
            { attr::ERROR_TYPE } = Empty,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parent_context_reads_traceparent_only() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static(TRACEPARENT));
        headers.insert("tracestate", HeaderValue::from_static("vendor=abc"));
        headers.insert("authorization", HeaderValue::from_static("Bearer sk-secret"));
        let cx = parent_context(&headers);
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(sc.trace_state().header(), "vendor=abc");
    }

    #[test]
    fn malformed_or_missing_traceparent_gives_no_parent() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("traceparent", HeaderValue::from_str(bad).unwrap());
            assert!(!parent_context(&headers).span().span_context().is_valid(), "{bad:?}");
        }
        assert!(!parent_context(&HeaderMap::new()).span().span_context().is_valid());
        // Without the OpenTelemetry layer nothing is adopted and nothing fails.
        let span = tracing::info_span!("x");
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static(TRACEPARENT));
        assert!(!set_parent_from_headers(&span, &headers));
        assert_eq!(trace_id(&span), None);
    }

    #[test]
    fn config_from_environment() {
        let env = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> =
                pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            TelemetryConfig::from_lookup(move |k| map.get(k).cloned())
        };
        assert_eq!(env(&[]).unwrap(), TelemetryConfig::default());
        assert_eq!(env(&[("TOLLGATE_OTLP_ENDPOINT", "  ")]).unwrap().otlp_endpoint, None);
        let cfg = env(&[
            ("TOLLGATE_OTLP_ENDPOINT", "http://otel-collector.observability:4317"),
            ("TOLLGATE_LOG_FORMAT", "TEXT"),
            ("TOLLGATE_LOG", "debug"),
            ("TOLLGATE_TRACE_SAMPLE_RATIO", "0.25"),
            ("OTEL_SERVICE_NAME", "gw-eu"),
        ])
        .unwrap();
        assert_eq!(cfg.otlp_endpoint.as_deref(), Some("http://otel-collector.observability:4317"));
        assert_eq!(cfg.log_format, LogFormat::Text);
        assert_eq!(cfg.log_filter, "debug");
        assert_eq!(cfg.sample_ratio, 0.25);
        assert_eq!(cfg.service_name, "gw-eu");
        for bad in [
            ("TOLLGATE_LOG_FORMAT", "xml"),
            ("TOLLGATE_TRACE_SAMPLE_RATIO", "1.5"),
            ("TOLLGATE_TRACE_SAMPLE_RATIO", "half"),
            ("TOLLGATE_OTLP_ENDPOINT", "https://collector:4317"),
            ("TOLLGATE_OTLP_ENDPOINT", "collector:4317"),
            ("TOLLGATE_LOG", "info,[{"),
        ] {
            let err = env(&[bad]).unwrap_err();
            assert!(matches!(err, ObservabilityError::Config { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn init_outside_a_runtime_with_an_endpoint_is_an_error_not_a_panic() {
        // NB: fails before touching the global subscriber, so it is safe in any test binary.
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://127.0.0.1:4317".into()),
            ..TelemetryConfig::default()
        };
        assert!(matches!(
            otel_layer::<tracing_subscriber::Registry>(&cfg, "http://127.0.0.1:4317"),
            Err(ObservabilityError::NoRuntime)
        ));
    }

    #[test]
    fn provider_names_follow_the_conventions() {
        assert_eq!(gen_ai_provider_name("azure-openai"), "azure.ai.openai");
        assert_eq!(gen_ai_provider_name("openai"), "openai");
        assert_eq!(gen_ai_provider_name("anthropic"), "anthropic");
        assert_eq!(gen_ai_provider_name("mock"), "mock");
    }
}
