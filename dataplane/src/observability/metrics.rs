//! Prometheus metrics of the gateway: one [`Metrics`] per process, cloned into whatever
//! records (it is an `Arc` inside), encoded on each scrape of `/metrics`.
//!
//! Every label set is bounded. Values come from three places only:
//! - the code itself (`&'static str` parameters and enums: endpoint, provider, error code,
//!   outcome, ...), so they cannot be request-derived by construction;
//! - the configuration (model, budget, IP token and safety rule names), checked against the
//!   [`Vocabulary`] installed with [`Metrics::set_vocabulary`]: a name outside it is recorded
//!   as [`OTHER`], so a caller-chosen model name can never create a series;
//! - [`NONE`] where a request ended before the value was known (no model resolved yet).
//!
//! NB: callers must still never pass request-derived free text (a key, a prompt, a header)
//! as a label: the vocabulary bounds cardinality, it is not a secret filter.

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Label value for a configuration name that is not in the [`Vocabulary`].
pub const OTHER: &str = "other";
/// Label value for something not known when the request ended (e.g. no model resolved).
pub const NONE: &str = "none";
/// Label value of `code` on requests that succeeded.
pub const CODE_OK: &str = "ok";

/// `Content-Type` of the Prometheus text format (version 0.0.4).
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// `Content-Type` of the OpenMetrics text format (version 1.0.0).
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Buckets (seconds) for whole requests and upstream calls: LLM answers take from tens of
/// milliseconds (embeddings, cached) to many minutes (long streams).
const DURATION_BUCKETS: [f64; 16] =
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// Buckets (seconds) for time to first token.
const TTFT_BUCKETS: [f64; 15] =
    [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 60.0];

/// A label value that costs no allocation to record: a string from the code or a name
/// shared with the [`Vocabulary`].
#[derive(Clone, Debug)]
enum Label {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Label {
    fn as_str(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Shared(s) => s,
        }
    }
}

// NB: equality and hashing by content: `Static("x")` and `Shared("x")` are one series.
impl PartialEq for Label {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Label {}

impl Hash for Label {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestKey {
    endpoint: Label,
    model: Label,
    provider: Label,
    status_class: Label,
    code: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointModel {
    endpoint: Label,
    model: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProviderModel {
    provider: Label,
    model: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModelKey {
    model: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TokenKey {
    model: Label,
    direction: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BudgetKey {
    budget: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SafetyKey {
    stage: Label,
    rule: Label,
    action: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BreakerKey {
    ip_token: Label,
    model: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AttemptKey {
    provider: Label,
    outcome: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FallbackKey {
    from: Label,
    to: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GrpcKey {
    method: Label,
    code: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GrpcMethodKey {
    method: Label,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RateLimitKey {
    kind: Label,
    scope: Label,
}

/// The configuration names allowed as label values. Install a new one with
/// [`Metrics::set_vocabulary`] each time a configuration is applied.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    models: HashSet<Arc<str>>,
    budgets: HashSet<Arc<str>>,
    ip_tokens: HashSet<Arc<str>>,
    safety_rules: HashSet<Arc<str>>,
}

impl Vocabulary {
    /// An empty vocabulary: every configuration name is recorded as [`OTHER`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds model names (the names callers use, and upstream model names if those are
    /// recorded too).
    #[must_use]
    pub fn with_models<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, names: I) -> Self {
        self.models.extend(names.into_iter().map(|n| Arc::from(n.as_ref())));
        self
    }

    /// Adds budget ids.
    #[must_use]
    pub fn with_budgets<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, names: I) -> Self {
        self.budgets.extend(names.into_iter().map(|n| Arc::from(n.as_ref())));
        self
    }

    /// Adds IP token names.
    #[must_use]
    pub fn with_ip_tokens<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, names: I) -> Self {
        self.ip_tokens.extend(names.into_iter().map(|n| Arc::from(n.as_ref())));
        self
    }

    /// Adds safety rule names (built-in detectors such as `pii.email` and `custom.<id>`).
    #[must_use]
    pub fn with_safety_rules<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, names: I) -> Self {
        self.safety_rules.extend(names.into_iter().map(|n| Arc::from(n.as_ref())));
        self
    }

    fn pick(set: &HashSet<Arc<str>>, name: &str) -> Label {
        set.get(name).map_or(Label::Static(OTHER), |n| Label::Shared(Arc::clone(n)))
    }
}

/// HTTP status class of a finished request, as the `status_class` label.
fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// Labels of a finished request for [`Metrics::request_finished`].
#[derive(Debug, Clone, Copy)]
pub struct RequestLabels<'a> {
    /// The API used (`chat.completions`, `messages`, `embeddings`).
    pub endpoint: &'static str,
    /// The model the caller asked for, once resolved against the configuration; `None` when
    /// the request ended before (bad key, bad JSON, unknown model).
    pub model: Option<&'a str>,
    /// The provider that served (or last failed), `None` when no upstream was chosen.
    pub provider: Option<&'static str>,
    /// HTTP status sent to the caller.
    pub status: u16,
    /// The gateway's error code (`ApiError::code`), `None` on success.
    pub code: Option<&'static str>,
}

/// Direction of tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenDirection {
    /// Prompt tokens.
    Input,
    /// Completion tokens.
    Output,
}

impl TokenDirection {
    fn as_str(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
        }
    }
}

/// Where a safety verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafetyStage {
    /// On the request sent to the model.
    Input,
    /// On the model's answer.
    Output,
    /// On a tool call or tool result.
    Tool,
}

impl SafetyStage {
    /// The label value (`input`, `output`, `tool`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
            Self::Tool => "tool",
        }
    }
}

/// Circuit breaker state, exported as a gauge (0 closed, 1 half-open, 2 open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed = 0,
    /// A limited number of probes flow.
    HalfOpen = 1,
    /// No call reaches the upstream.
    Open = 2,
}

/// How one upstream attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A successful answer (2xx).
    Success,
    /// The provider refused the request (4xx other than 429); not the upstream's fault.
    ClientError,
    /// 429 from the provider.
    RateLimited,
    /// 5xx from the provider.
    ServerError,
    /// Connect, first-byte, idle or total timeout.
    Timeout,
    /// Connection refused or reset, TLS or protocol failure.
    ConnectionError,
    /// Not attempted: the circuit breaker for the target was open.
    BreakerOpen,
}

impl AttemptOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ClientError => "client_error",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::ConnectionError => "connection_error",
            Self::BreakerOpen => "breaker_open",
        }
    }
}

/// Which rate limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitKind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

impl RateLimitKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
        }
    }
}

/// Whose rate limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitScope {
    /// The caller's (developer, team, agent) limit.
    Principal,
    /// The IP token's upstream limit (Tollgate throttling before the provider does).
    IpToken,
}

impl RateLimitScope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Principal => "principal",
            Self::IpToken => "ip_token",
        }
    }
}

type HistogramFamily<K> = Family<K, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn ttft_histogram() -> Histogram {
    Histogram::new(TTFT_BUCKETS)
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    vocabulary: RwLock<Arc<Vocabulary>>,
    requests: Family<RequestKey, Counter>,
    request_duration: HistogramFamily<EndpointModel>,
    upstream_duration: HistogramFamily<ProviderModel>,
    ttft: HistogramFamily<ModelKey>,
    tokens: Family<TokenKey, Counter>,
    cost: Family<ModelKey, Counter>,
    budget_remaining: Family<BudgetKey, Gauge>,
    budget_rejections: Family<BudgetKey, Counter>,
    budget_overruns: Family<BudgetKey, Counter>,
    safety_verdicts: Family<SafetyKey, Counter>,
    breaker_state: Family<BreakerKey, Gauge>,
    upstream_attempts: Family<AttemptKey, Counter>,
    upstream_retries: Family<AttemptKey, Counter>,
    fallbacks: Family<FallbackKey, Counter>,
    rate_limit_rejections: Family<RateLimitKey, Counter>,
    overload_rejections: Counter,
    in_flight: Gauge,
    grpc_requests: Family<GrpcKey, Counter>,
    grpc_duration: HistogramFamily<GrpcMethodKey>,
}

/// The gateway's metrics. Cheap to clone; all clones record into one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered and an empty [`Vocabulary`]: until
    /// [`Metrics::set_vocabulary`] is called, configuration names are recorded as [`OTHER`].
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::default();
        registry.register(
            "tollgate_requests",
            "Requests answered, by endpoint, model, provider, status class and error code",
            requests.clone(),
        );
        let request_duration: HistogramFamily<EndpointModel> =
            Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "tollgate_request_duration",
            "Time from request received to last byte sent, by endpoint and model",
            Unit::Seconds,
            request_duration.clone(),
        );
        let upstream_duration: HistogramFamily<ProviderModel> =
            Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "tollgate_upstream_duration",
            "Duration of each upstream attempt, by provider and model",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        let ttft: HistogramFamily<ModelKey> = Family::new_with_constructor(ttft_histogram);
        registry.register_with_unit(
            "tollgate_time_to_first_token",
            "Time from request received to the first token sent to the caller, by model",
            Unit::Seconds,
            ttft.clone(),
        );
        let tokens = Family::default();
        registry.register("tollgate_tokens", "Tokens used, by model and direction", tokens.clone());
        let cost = Family::default();
        registry.register("tollgate_cost_micro_usd", "Cost charged in micro-USD, by model", cost.clone());
        let budget_remaining = Family::default();
        registry.register(
            "tollgate_budget_remaining_micro_usd",
            "Budget left in the current window in micro-USD (negative when a soft budget is overspent)",
            budget_remaining.clone(),
        );
        let budget_rejections = Family::default();
        registry.register(
            "tollgate_budget_rejections",
            "Requests refused because a budget was exhausted",
            budget_rejections.clone(),
        );
        let budget_overruns = Family::default();
        registry.register(
            "tollgate_budget_overruns",
            "Settles that charged more than was reserved (the provider reported more usage than the worst case), by budget",
            budget_overruns.clone(),
        );
        let safety_verdicts = Family::default();
        registry.register(
            "tollgate_safety_verdicts",
            "Safety rule matches, by stage, rule and action taken",
            safety_verdicts.clone(),
        );
        let breaker_state = Family::default();
        registry.register(
            "tollgate_breaker_state",
            "Circuit breaker state per IP token and model: 0 closed, 1 half-open, 2 open",
            breaker_state.clone(),
        );
        let upstream_attempts = Family::default();
        registry.register(
            "tollgate_upstream_attempts",
            "Upstream attempts, by provider and outcome",
            upstream_attempts.clone(),
        );
        let upstream_retries = Family::default();
        registry.register(
            "tollgate_upstream_retries",
            "Upstream retries, by provider and the outcome of the attempt that was retried",
            upstream_retries.clone(),
        );
        let fallbacks = Family::default();
        registry.register("tollgate_fallbacks", "Fallbacks taken, from model to model", fallbacks.clone());
        let rate_limit_rejections = Family::default();
        registry.register(
            "tollgate_rate_limit_rejections",
            "Requests refused by a rate limit, by kind and scope",
            rate_limit_rejections.clone(),
        );
        let overload_rejections = Counter::default();
        registry.register(
            "tollgate_overload_rejections",
            "Requests refused with 503 because the in-flight cap was reached",
            overload_rejections.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("tollgate_in_flight_requests", "Requests being served now", in_flight.clone());
        let grpc_requests = Family::default();
        registry.register(
            "tollgate_grpc_requests",
            "Runtime service (gRPC) calls answered, by method and status code",
            grpc_requests.clone(),
        );
        let grpc_duration: HistogramFamily<GrpcMethodKey> = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "tollgate_grpc_request_duration",
            "Duration of runtime service (gRPC) calls, by method",
            Unit::Seconds,
            grpc_duration.clone(),
        );
        let inner = Inner {
            registry,
            vocabulary: RwLock::new(Arc::new(Vocabulary::new())),
            requests,
            request_duration,
            upstream_duration,
            ttft,
            tokens,
            cost,
            budget_remaining,
            budget_rejections,
            budget_overruns,
            safety_verdicts,
            breaker_state,
            upstream_attempts,
            upstream_retries,
            fallbacks,
            rate_limit_rejections,
            overload_rejections,
            in_flight,
            grpc_requests,
            grpc_duration,
        };
        Self { inner: Arc::new(inner) }
    }

    /// Replaces the names allowed as label values (call it whenever a configuration is
    /// applied). Series recorded under names that left the configuration stay until restart.
    pub fn set_vocabulary(&self, vocabulary: Vocabulary) {
        *self.inner.vocabulary.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(vocabulary);
    }

    fn vocabulary(&self) -> Arc<Vocabulary> {
        Arc::clone(&self.inner.vocabulary.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn model(vocabulary: &Vocabulary, model: &str) -> Label {
        Vocabulary::pick(&vocabulary.models, model)
    }

    /// Counts a finished request and observes its duration (received → last byte sent).
    pub fn request_finished(&self, labels: &RequestLabels<'_>, duration: Duration) {
        let vocabulary = self.vocabulary();
        let model = labels.model.map_or(Label::Static(NONE), |m| Self::model(&vocabulary, m));
        let endpoint = Label::Static(labels.endpoint);
        self.inner
            .requests
            .get_or_create(&RequestKey {
                endpoint: endpoint.clone(),
                model: model.clone(),
                provider: Label::Static(labels.provider.unwrap_or(NONE)),
                status_class: Label::Static(status_class(labels.status)),
                code: Label::Static(labels.code.unwrap_or(CODE_OK)),
            })
            .inc();
        self.inner
            .request_duration
            .get_or_create(&EndpointModel { endpoint, model })
            .observe(duration.as_secs_f64());
    }

    /// Counts one upstream attempt and observes its duration. `model` is the model name as
    /// configured (the caller-facing name, or the upstream model if it is in the vocabulary).
    pub fn upstream_attempt(
        &self,
        provider: &'static str,
        model: &str,
        outcome: AttemptOutcome,
        duration: Duration,
    ) {
        let model = Self::model(&self.vocabulary(), model);
        let provider = Label::Static(provider);
        self.inner
            .upstream_attempts
            .get_or_create(&AttemptKey {
                provider: provider.clone(),
                outcome: Label::Static(outcome.as_str()),
            })
            .inc();
        if outcome != AttemptOutcome::BreakerOpen {
            self.inner
                .upstream_duration
                .get_or_create(&ProviderModel { provider, model })
                .observe(duration.as_secs_f64());
        }
    }

    /// Counts a retry, labelled with the outcome of the attempt that is being retried.
    pub fn upstream_retry(&self, provider: &'static str, retried: AttemptOutcome) {
        self.inner
            .upstream_retries
            .get_or_create(&AttemptKey {
                provider: Label::Static(provider),
                outcome: Label::Static(retried.as_str()),
            })
            .inc();
    }

    /// Observes the time from request received to the first token sent to the caller.
    pub fn time_to_first_token(&self, model: &str, elapsed: Duration) {
        let model = Self::model(&self.vocabulary(), model);
        self.inner.ttft.get_or_create(&ModelKey { model }).observe(elapsed.as_secs_f64());
    }

    /// Adds a request's token usage.
    pub fn tokens(&self, model: &str, input: u64, output: u64) {
        let model = Self::model(&self.vocabulary(), model);
        for (direction, n) in [(TokenDirection::Input, input), (TokenDirection::Output, output)] {
            self.inner
                .tokens
                .get_or_create(&TokenKey {
                    model: model.clone(),
                    direction: Label::Static(direction.as_str()),
                })
                .inc_by(n);
        }
    }

    /// Adds a settled charge in micro-USD.
    pub fn cost(&self, model: &str, micro_usd: u64) {
        let model = Self::model(&self.vocabulary(), model);
        self.inner.cost.get_or_create(&ModelKey { model }).inc_by(micro_usd);
    }

    /// Sets what is left of a budget in its current window (after a reserve or settle).
    pub fn budget_remaining(&self, budget: &str, micro_usd: i64) {
        let budget = Vocabulary::pick(&self.vocabulary().budgets, budget);
        self.inner.budget_remaining.get_or_create(&BudgetKey { budget }).set(micro_usd);
    }

    /// Counts a request refused because `budget` was exhausted.
    pub fn budget_rejected(&self, budget: &str) {
        let budget = Vocabulary::pick(&self.vocabulary().budgets, budget);
        self.inner.budget_rejections.get_or_create(&BudgetKey { budget }).inc();
    }

    /// Counts a settle that charged `budget` more than was reserved on it.
    pub fn budget_overrun(&self, budget: &str) {
        let budget = Vocabulary::pick(&self.vocabulary().budgets, budget);
        self.inner.budget_overruns.get_or_create(&BudgetKey { budget }).inc();
    }

    /// Counts a safety rule match. `action` is the action's name (`block`, `redact`, `log`,
    /// or an audit-mode variant chosen by the caller from a fixed set).
    pub fn safety_verdict(&self, stage: SafetyStage, rule: &str, action: &'static str) {
        let rule = Vocabulary::pick(&self.vocabulary().safety_rules, rule);
        self.inner
            .safety_verdicts
            .get_or_create(&SafetyKey {
                stage: Label::Static(stage.as_str()),
                rule,
                action: Label::Static(action),
            })
            .inc();
    }

    /// Sets the state of the breaker for (`ip_token`, `model`).
    pub fn breaker_state(&self, ip_token: &str, model: &str, state: BreakerState) {
        let vocabulary = self.vocabulary();
        let key = BreakerKey {
            ip_token: Vocabulary::pick(&vocabulary.ip_tokens, ip_token),
            model: Self::model(&vocabulary, model),
        };
        self.inner.breaker_state.get_or_create(&key).set(state as i64);
    }

    /// Counts a fallback from one model to another.
    pub fn fallback(&self, from: &str, to: &str) {
        let vocabulary = self.vocabulary();
        let key = FallbackKey { from: Self::model(&vocabulary, from), to: Self::model(&vocabulary, to) };
        self.inner.fallbacks.get_or_create(&key).inc();
    }

    /// Counts a request refused by a rate limit.
    pub fn rate_limited(&self, kind: RateLimitKind, scope: RateLimitScope) {
        let key = RateLimitKey { kind: Label::Static(kind.as_str()), scope: Label::Static(scope.as_str()) };
        self.inner.rate_limit_rejections.get_or_create(&key).inc();
    }

    /// Counts a finished runtime-service call: `method` (`CheckTool`, ...) and `code` (the
    /// gRPC status code name, `ok` ... `unavailable`) come from the code, never the caller.
    pub fn grpc_finished(&self, method: &'static str, code: &'static str, duration: Duration) {
        let key = GrpcKey { method: Label::Static(method), code: Label::Static(code) };
        self.inner.grpc_requests.get_or_create(&key).inc();
        let key = GrpcMethodKey { method: Label::Static(method) };
        self.inner.grpc_duration.get_or_create(&key).observe(duration.as_secs_f64());
    }

    /// Counts a request refused because the in-flight cap was reached.
    pub fn overloaded(&self) {
        self.inner.overload_rejections.inc();
    }

    /// Marks a request in flight until the returned guard is dropped. Move the guard into
    /// the response stream so a streamed answer counts until its last byte.
    #[must_use = "the request counts as in flight only while the guard lives"]
    pub fn in_flight(&self) -> InFlight {
        self.inner.in_flight.inc();
        InFlight { gauge: self.inner.in_flight.clone() }
    }

    /// The registry in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// The registry in the OpenMetrics text format (ends with `# EOF`).
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// A scrape response: OpenMetrics when the `Accept` header asks for it (as Prometheus
    /// does), the Prometheus text format otherwise.
    pub fn response(&self, headers: &HeaderMap) -> Response {
        let openmetrics = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/openmetrics-text"));
        let (content_type, body) = if openmetrics {
            (OPENMETRICS_CONTENT_TYPE, self.encode_openmetrics())
        } else {
            (PROMETHEUS_TEXT_CONTENT_TYPE, self.encode())
        };
        ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
    }
}

/// Axum handler for `GET /metrics`: `.route("/metrics", get(metrics_handler)).with_state(metrics)`.
pub async fn metrics_handler(State(metrics): State<Metrics>, headers: HeaderMap) -> Response {
    metrics.response(&headers)
}

/// A request in flight; decrements `tollgate_in_flight_requests` when dropped.
#[derive(Debug)]
pub struct InFlight {
    gauge: Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_parse::{Sample, Scrape, Value};

    fn scrape(metrics: &Metrics) -> Scrape {
        let text = metrics.encode();
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    }

    fn find<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect()
    }

    fn one<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> &'a Sample {
        let found = find(scrape, name, labels);
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:#?}");
        found[0]
    }

    fn counter(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        match one(scrape, name, labels).value {
            Value::Counter(v) => v,
            ref other => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn gauge(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        match one(scrape, name, labels).value {
            Value::Gauge(v) => v,
            ref other => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    /// (upper bound, cumulative count) of a histogram series.
    fn buckets(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        match &one(scrape, name, labels).value {
            Value::Histogram(b) => b.iter().map(|c| (c.less_than, c.count)).collect(),
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    fn label_names(sample: &Sample) -> Vec<&str> {
        let mut names: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    fn configured() -> Metrics {
        let metrics = Metrics::new();
        metrics.set_vocabulary(
            Vocabulary::new()
                .with_models(["gpt-4o-mini", "claude-haiku"])
                .with_budgets(["team-a"])
                .with_ip_tokens(["openai-prod"])
                .with_safety_rules(["pii.email"]),
        );
        metrics
    }

    /// Records into every family; returns the in-flight guard that is still held.
    fn record_every_family(m: &Metrics) -> InFlight {
        let ok = RequestLabels {
            endpoint: "chat.completions",
            model: Some("gpt-4o-mini"),
            provider: Some("openai"),
            status: 200,
            code: None,
        };
        m.request_finished(&ok, Duration::from_millis(300));
        m.request_finished(&ok, Duration::from_millis(700));
        m.request_finished(
            &RequestLabels { status: 429, code: Some("rate_limited"), ..ok },
            Duration::from_millis(1),
        );
        m.request_finished(
            &RequestLabels {
                endpoint: "messages",
                model: None,
                provider: None,
                status: 401,
                code: Some("invalid_api_key"),
            },
            Duration::from_millis(2),
        );
        m.upstream_attempt("openai", "gpt-4o-mini", AttemptOutcome::Timeout, Duration::from_secs(30));
        m.upstream_retry("openai", AttemptOutcome::Timeout);
        m.upstream_attempt("openai", "gpt-4o-mini", AttemptOutcome::Success, Duration::from_millis(250));
        m.time_to_first_token("gpt-4o-mini", Duration::from_millis(180));
        m.tokens("gpt-4o-mini", 120, 45);
        m.tokens("gpt-4o-mini", 10, 5);
        m.cost("gpt-4o-mini", 1_234);
        m.budget_remaining("team-a", 5_000_000);
        m.budget_remaining("team-a", 4_998_766);
        m.budget_rejected("team-a");
        m.budget_overrun("team-a");
        m.safety_verdict(SafetyStage::Input, "pii.email", "redact");
        m.breaker_state("openai-prod", "gpt-4o-mini", BreakerState::Open);
        m.fallback("gpt-4o-mini", "claude-haiku");
        m.rate_limited(RateLimitKind::Tokens, RateLimitScope::Principal);
        m.rate_limited(RateLimitKind::Requests, RateLimitScope::IpToken);
        m.overloaded();
        let held = m.in_flight();
        drop(m.in_flight());
        held
    }

    #[test]
    fn every_family_encodes_and_parses_with_its_labels_and_values() {
        let m = configured();
        let _held = record_every_family(&m);
        let s = scrape(&m);
        let req = [("endpoint", "chat.completions"), ("model", "gpt-4o-mini"), ("provider", "openai")];
        assert_eq!(
            counter(
                &s,
                "tollgate_requests_total",
                &[&req[..], &[("status_class", "2xx"), ("code", "ok")]].concat()
            ),
            2.0
        );
        assert_eq!(
            counter(
                &s,
                "tollgate_requests_total",
                &[&req[..], &[("status_class", "4xx"), ("code", "rate_limited")]].concat()
            ),
            1.0
        );
        let unauth = one(&s, "tollgate_requests_total", &[("endpoint", "messages")]);
        assert_eq!(label_names(unauth), ["code", "endpoint", "model", "provider", "status_class"]);
        assert_eq!(unauth.labels.get("model"), Some(NONE));
        assert_eq!(unauth.labels.get("provider"), Some(NONE));
        assert_eq!(unauth.labels.get("code"), Some("invalid_api_key"));

        // Histograms: cumulative buckets, ending in +Inf with the count.
        let d = buckets(&s, "tollgate_request_duration_seconds", &[("endpoint", "chat.completions")]);
        assert_eq!(d.last(), Some(&(f64::INFINITY, 3.0)));
        assert!(d.contains(&(0.25, 1.0)) && d.contains(&(0.5, 2.0)) && d.contains(&(1.0, 3.0)), "{d:?}");
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{d:?}");
        assert_eq!(
            one(&s, "tollgate_request_duration_seconds_count", &[("endpoint", "chat.completions")]).value,
            Value::Untyped(3.0)
        );
        let up = buckets(
            &s,
            "tollgate_upstream_duration_seconds",
            &[("provider", "openai"), ("model", "gpt-4o-mini")],
        );
        assert_eq!(up.last(), Some(&(f64::INFINITY, 2.0)));
        assert!(
            up.contains(&(0.25, 1.0)) && up.contains(&(20.0, 1.0)) && up.contains(&(30.0, 2.0)),
            "{up:?}"
        );
        let ttft = buckets(&s, "tollgate_time_to_first_token_seconds", &[("model", "gpt-4o-mini")]);
        assert!(ttft.contains(&(0.1, 0.0)) && ttft.contains(&(0.2, 1.0)), "{ttft:?}");

        assert_eq!(
            counter(
                &s,
                "tollgate_upstream_attempts_total",
                &[("provider", "openai"), ("outcome", "timeout")]
            ),
            1.0
        );
        assert_eq!(
            counter(
                &s,
                "tollgate_upstream_attempts_total",
                &[("provider", "openai"), ("outcome", "success")]
            ),
            1.0
        );
        assert_eq!(
            counter(&s, "tollgate_upstream_retries_total", &[("provider", "openai"), ("outcome", "timeout")]),
            1.0
        );
        assert_eq!(
            counter(&s, "tollgate_tokens_total", &[("model", "gpt-4o-mini"), ("direction", "input")]),
            130.0
        );
        assert_eq!(
            counter(&s, "tollgate_tokens_total", &[("model", "gpt-4o-mini"), ("direction", "output")]),
            50.0
        );
        assert_eq!(counter(&s, "tollgate_cost_micro_usd_total", &[("model", "gpt-4o-mini")]), 1234.0);
        assert_eq!(gauge(&s, "tollgate_budget_remaining_micro_usd", &[("budget", "team-a")]), 4_998_766.0);
        assert_eq!(counter(&s, "tollgate_budget_rejections_total", &[("budget", "team-a")]), 1.0);
        assert_eq!(
            counter(
                &s,
                "tollgate_safety_verdicts_total",
                &[("stage", "input"), ("rule", "pii.email"), ("action", "redact")]
            ),
            1.0
        );
        assert_eq!(
            gauge(&s, "tollgate_breaker_state", &[("ip_token", "openai-prod"), ("model", "gpt-4o-mini")]),
            2.0
        );
        assert_eq!(
            counter(&s, "tollgate_fallbacks_total", &[("from", "gpt-4o-mini"), ("to", "claude-haiku")]),
            1.0
        );
        assert_eq!(
            counter(
                &s,
                "tollgate_rate_limit_rejections_total",
                &[("kind", "tokens"), ("scope", "principal")]
            ),
            1.0
        );
        assert_eq!(
            counter(
                &s,
                "tollgate_rate_limit_rejections_total",
                &[("kind", "requests"), ("scope", "ip_token")]
            ),
            1.0
        );
        assert_eq!(counter(&s, "tollgate_overload_rejections_total", &[]), 1.0);
        assert_eq!(gauge(&s, "tollgate_in_flight_requests", &[]), 1.0);

        // Every family has HELP text.
        for family in [
            "tollgate_requests_total",
            "tollgate_request_duration_seconds",
            "tollgate_upstream_duration_seconds",
            "tollgate_time_to_first_token_seconds",
            "tollgate_tokens_total",
            "tollgate_cost_micro_usd_total",
            "tollgate_budget_remaining_micro_usd",
            "tollgate_budget_rejections_total",
            "tollgate_budget_overruns_total",
            "tollgate_safety_verdicts_total",
            "tollgate_breaker_state",
            "tollgate_upstream_attempts_total",
            "tollgate_upstream_retries_total",
            "tollgate_fallbacks_total",
            "tollgate_rate_limit_rejections_total",
            "tollgate_overload_rejections_total",
            "tollgate_in_flight_requests",
        ] {
            assert!(s.docs.contains_key(family), "no HELP for {family}: {:?}", s.docs.keys());
        }
    }

    /// The Grafana dashboard queries exactly these families, and shows every one of them.
    #[test]
    fn the_dashboard_uses_the_metric_names_of_the_registry() {
        let m = configured();
        let _held = record_every_family(&m);
        let families: HashSet<String> = scrape(&m).docs.into_keys().collect();
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../manifests/grafana/tollgate-dashboard.json")).unwrap();
        let panels = dashboard["panels"].as_array().unwrap();
        let mut used = HashSet::new();
        for target in panels.iter().filter_map(|p| p["targets"].as_array()).flatten() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("tollgate_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                let family = name.strip_suffix("_bucket").unwrap_or(&name).to_owned();
                assert!(families.contains(&family), "{family} in {expr:?} is not a registered family");
                used.insert(family);
            }
        }
        let unused: Vec<_> = families.difference(&used).collect();
        assert!(unused.is_empty(), "families missing from the dashboard: {unused:?}");
    }

    #[test]
    fn names_outside_the_vocabulary_collapse_into_other() {
        let m = configured();
        let secretish = "sk-live-caller-typed-this-as-a-model";
        for i in 0..100 {
            let model = format!("{secretish}-{i}");
            m.request_finished(
                &RequestLabels {
                    endpoint: "chat.completions",
                    model: Some(&model),
                    provider: None,
                    status: 404,
                    code: Some("model_not_found"),
                },
                Duration::from_millis(1),
            );
            m.tokens(&model, 1, 1);
            m.budget_rejected(&model);
            m.breaker_state(&model, &model, BreakerState::Closed);
            m.safety_verdict(SafetyStage::Output, &model, "block");
        }
        let s = scrape(&m);
        assert_eq!(
            counter(&s, "tollgate_requests_total", &[("model", OTHER), ("status_class", "4xx")]),
            100.0
        );
        assert_eq!(counter(&s, "tollgate_tokens_total", &[("model", OTHER), ("direction", "input")]), 100.0);
        assert_eq!(counter(&s, "tollgate_budget_rejections_total", &[("budget", OTHER)]), 100.0);
        assert_eq!(gauge(&s, "tollgate_breaker_state", &[("ip_token", OTHER), ("model", OTHER)]), 0.0);
        assert_eq!(counter(&s, "tollgate_safety_verdicts_total", &[("rule", OTHER)]), 100.0);
        assert!(!m.encode().contains(secretish));
        assert!(!m.encode_openmetrics().contains(secretish));

        // Before any vocabulary is installed everything configurable is `other` too.
        let fresh = Metrics::new();
        fresh.tokens("gpt-4o-mini", 1, 0);
        let s = scrape(&fresh);
        assert_eq!(counter(&s, "tollgate_tokens_total", &[("model", OTHER), ("direction", "input")]), 1.0);
    }

    #[test]
    fn clones_share_one_registry_and_in_flight_follows_guards() {
        let m = Metrics::new();
        let clone = m.clone();
        let guards: Vec<InFlight> = (0..3).map(|_| clone.in_flight()).collect();
        assert_eq!(gauge(&scrape(&m), "tollgate_in_flight_requests", &[]), 3.0);
        drop(guards);
        assert_eq!(gauge(&scrape(&m), "tollgate_in_flight_requests", &[]), 0.0);
    }

    #[tokio::test]
    async fn handler_negotiates_the_format() {
        let m = configured();
        m.overloaded();
        let plain = metrics_handler(State(m.clone()), HeaderMap::new()).await;
        assert_eq!(plain.headers().get(header::CONTENT_TYPE).unwrap(), PROMETHEUS_TEXT_CONTENT_TYPE);
        let mut accept = HeaderMap::new();
        accept.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4",
            ),
        );
        let om = metrics_handler(State(m), accept).await;
        assert_eq!(om.headers().get(header::CONTENT_TYPE).unwrap(), OPENMETRICS_CONTENT_TYPE);
        let body = axum::body::to_bytes(om.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(text.lines().last(), Some("# EOF"));
        let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        assert!(parsed.samples.iter().any(|s| s.metric == "tollgate_overload_rejections_total"));
    }
}
