//! Observability: what operators see of the gateway.
//!
//! - [`metrics`]: Prometheus families with bounded labels, recorded through typed methods on
//!   one cloned [`Metrics`] and served by [`metrics_handler`] on `GET /metrics`.
//! - [`tracing`]: JSON log lines and OpenTelemetry spans over OTLP gRPC, set
//!   up once by [`init_tracing`]; each request gets a [`RequestSpan`] (GenAI semantic
//!   conventions) with children for safety, budget reserve, each upstream attempt and settle;
//!   a caller's W3C `traceparent` becomes its parent.
//!
//! Data flow: the request path records into [`Metrics`] and the request's spans as it goes;
//! Prometheus pulls `/metrics`; spans leave through a batch processor to the collector at
//! `TOLLGATE_OTLP_ENDPOINT` (off when unset). Keys, prompts and completions are never
//! recorded: label values and span attributes are names from the code or the configuration,
//! counts, durations and error codes.

pub mod metrics;
pub mod tracing;

pub use self::metrics::{
    AttemptOutcome, BreakerState, InFlight, Metrics, RateLimitKind, RateLimitScope, RequestLabels,
    SafetyStage, Vocabulary, metrics_handler,
};
pub use self::tracing::{
    GenAiOperation, LogFormat, RequestSpan, RequestSpanStart, ResponseAttributes, TelemetryConfig,
    TelemetryGuard, UpstreamAttempt, UpstreamTarget, init_tracing, parent_context, set_parent_from_headers,
};

/// Errors of setting observability up.
#[derive(Debug, thiserror::Error)]
pub enum ObservabilityError {
    /// A setting is invalid (filter directives, sample ratio, endpoint, log format).
    #[error("invalid {setting}: {message}")]
    Config {
        /// Which setting.
        setting: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The OTLP exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// An OTLP endpoint is set but there is no Tokio runtime to drive the gRPC channel.
    #[error("an OTLP endpoint is configured but no Tokio runtime is running: call init_tracing inside one")]
    NoRuntime,
    /// A global `tracing` subscriber (or `log` logger) was already installed.
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
    /// Flushing or shutting the span exporter down failed.
    #[error("span export: {0}")]
    Export(#[from] opentelemetry_sdk::error::OTelSdkError),
}
