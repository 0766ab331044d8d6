//! The Tollgate gateway (data plane). Every LLM call and tool request of an agent passes
//! here: it is authenticated by virtual key, validated, routed to an IP token (translating
//! between the OpenAI and Anthropic wire formats when the provider speaks the other one),
//! streamed back, and recorded.
//!
//! Data flow: [`http::router`] → `http::proxy` (the request path) → [`providers`] (upstream
//! calls) → [`usage`] (records, written in batches to the [`store`]). Configuration arrives
//! as a [`tollgate_crds::DataPlaneConfig`] and is swapped in whole by
//! [`Gateway::apply_config`].

pub mod auth;
pub mod budget;
pub mod config_sync;
pub mod cost;
pub mod error;
pub mod grpc;
pub mod http;
pub mod observability;
pub mod providers;
pub mod reliability;
pub mod runtime;
pub mod safety;
pub mod secrets;
pub mod store;
pub mod translate;
pub mod usage;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tollgate_crds::DataPlaneConfig;

pub use error::{ApiError, ApiFormat, Error, Result};

use crate::auth::KeyService;
use crate::budget::{Alerts, key_for};
use crate::cost::CounterStore;
use crate::observability::{Metrics, Vocabulary};
use crate::providers::UpstreamClient;
use crate::reliability::{
    BreakerConfig, Breakers, InFlight, Outstanding, PerKeyInFlight, RateLimiter, RetryPolicy,
};
use crate::runtime::Runtime;
use crate::secrets::SecretSource;
use crate::store::Store;
use crate::usage::UsageSink;

/// Tunables of the request path.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Largest accepted request body (default 4 MiB).
    pub max_body_bytes: usize,
    /// `max_tokens` sent to providers that require one when the caller gave none.
    pub default_max_tokens: u64,
    /// Connect timeout for upstreams.
    pub connect_timeout: Duration,
    /// Time allowed until an upstream's response headers arrive.
    pub header_timeout: Duration,
    /// Time allowed for a whole non-streaming answer.
    pub response_timeout: Duration,
    /// Longest silence allowed between two chunks of a stream.
    pub stream_idle_timeout: Duration,
    /// Requests served at once; beyond it, 503 at once (never an unbounded queue).
    pub max_in_flight: usize,
    /// Requests of one virtual key served at once; beyond it, 429 at once (`0`: no cap).
    pub max_in_flight_per_key: usize,
    /// How long a request body may take to arrive (whole, and between chunks).
    pub body_timeouts: http::BodyTimeouts,
    /// Retries of failed upstream attempts (before any byte reached the caller).
    pub retry: RetryPolicy,
    /// Circuit breakers per (IP token, model).
    pub breaker: BreakerConfig,
    /// Redis for rate limits shared by gateway replicas (`None`: in memory), and the key
    /// prefix to use there.
    pub redis: Option<(String, String)>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            default_max_tokens: 4096,
            connect_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(60),
            response_timeout: Duration::from_secs(600),
            stream_idle_timeout: Duration::from_secs(30),
            max_in_flight: 4096,
            max_in_flight_per_key: 1024,
            body_timeouts: http::BodyTimeouts::default(),
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            redis: None,
        }
    }
}

/// State shared by every request.
#[derive(Debug)]
pub struct Shared {
    /// The configuration in force.
    pub runtime: ArcSwap<Runtime>,
    /// Virtual keys.
    pub keys: KeyService,
    /// Where usage records go.
    pub usage: UsageSink,
    /// Upstream connection pool.
    pub client: UpstreamClient,
    /// Tunables.
    pub options: GatewayOptions,
    /// Readiness (`/readyz`).
    pub ready: AtomicBool,
    /// Budget counters (in-memory or Redis).
    pub counters: Arc<CounterStore>,
    /// Where budget alerts go.
    pub alerts: Alerts,
    /// Circuit breakers per (IP token, model).
    pub breakers: Breakers,
    /// Requests in flight per IP token (least-outstanding balancing).
    pub outstanding: std::sync::Mutex<std::collections::HashMap<String, Outstanding>>,
    /// Per-principal and per-IP-token rate limits.
    pub rate_limiter: RateLimiter,
    /// The in-flight cap.
    pub in_flight: InFlight,
    /// The in-flight cap per virtual key.
    pub in_flight_per_key: Arc<PerKeyInFlight>,
    /// Large safety scans running at once on the blocking pool (one per core): more wait.
    pub scan_slots: tokio::sync::Semaphore,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Preferred models by principal (`kind/name`), used when a chat request names no model
    /// or the alias `default`. Set by the control plane.
    pub preferred_models: std::sync::RwLock<std::collections::HashMap<String, String>>,
    /// The name breaker states are reported under ([`Gateway::report_breakers`]).
    pub instance: std::sync::OnceLock<String>,
    /// Where safety findings are recorded (the database, once [`Gateway::persist_findings`]).
    pub findings: safety::log::FindingLog,
}

impl Shared {
    /// Logs safety findings and counts verdicts (HTTP and gRPC alike). Never logs matched
    /// text: findings do not hold it.
    pub fn report_findings(
        &self,
        request_id: &str,
        principal: Option<(&str, &str)>,
        findings: &[safety::Finding],
    ) {
        self.findings.record(now_ms(), request_id, principal, findings);
        use crate::observability::SafetyStage;
        for f in findings {
            let stage = match (f.category, f.stage) {
                (safety::Category::Tool, _) => SafetyStage::Tool,
                (_, safety::Stage::Input) => SafetyStage::Input,
                (_, safety::Stage::Output) => SafetyStage::Output,
            };
            let action = if f.audit { "audit" } else { f.action.as_str() };
            self.metrics.safety_verdict(stage, &f.rule, action);
            tracing::info!(
                request_id = %request_id,
                policy = %f.policy,
                rule = %f.rule,
                action,
                location = f.location.as_ref().map(|l| l.path.as_str()).unwrap_or(""),
                "safety finding"
            );
        }
    }

    /// The in-flight counter of an IP token.
    pub fn outstanding(&self, ip_token: &str) -> Outstanding {
        match self.outstanding.lock() {
            Ok(mut map) => map.entry(ip_token.to_owned()).or_default().clone(),
            Err(_) => Outstanding::default(),
        }
    }
}

/// (IP token, model, state) as reported to the control plane.
type BreakerState = (String, String, &'static str);

/// A gateway: build it, apply a configuration, serve [`Gateway::router`].
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    /// A gateway with no models until a configuration is applied.
    pub fn new(
        keys: KeyService,
        usage: UsageSink,
        counters: CounterStore,
        alerts: Alerts,
        options: GatewayOptions,
    ) -> Result<Self> {
        let client = UpstreamClient::new(options.connect_timeout, options.header_timeout)?;
        let rate_limiter = match &options.redis {
            Some((url, prefix)) => {
                RateLimiter::redis(url, prefix).map_err(|e| Error::Config(e.to_string()))?
            }
            None => RateLimiter::memory(),
        };
        let shared = Shared {
            runtime: ArcSwap::from_pointee(Runtime::empty()?),
            keys,
            usage,
            client,
            ready: AtomicBool::new(false),
            counters: Arc::new(counters),
            alerts,
            breakers: Breakers::new(options.breaker.clone()),
            outstanding: std::sync::Mutex::default(),
            rate_limiter,
            in_flight: InFlight::new(options.max_in_flight),
            in_flight_per_key: PerKeyInFlight::new(options.max_in_flight_per_key),
            scan_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            ),
            metrics: Metrics::new(),
            preferred_models: std::sync::RwLock::default(),
            findings: safety::log::FindingLog::default(),
            instance: std::sync::OnceLock::new(),
            options,
        };
        Ok(Self { shared: Arc::new(shared) })
    }

    /// The HTTP routes.
    pub fn router(&self) -> axum::Router {
        http::router(Arc::clone(&self.shared))
    }

    /// Stores safety findings in `store` from now on (the control plane shows them).
    pub fn persist_findings(&self, store: crate::store::Store) {
        self.shared.findings.persist(store);
    }

    /// Reports this gateway's circuit-breaker states to `store` as `instance` every
    /// `every` from now on, so the control plane shows every replica's. Returns the task.
    pub fn report_breakers(
        &self,
        store: crate::store::Store,
        instance: String,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let _ = self.shared.instance.set(instance.clone());
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Unchanged states are written again only to stay fresh for readers (who leave
            // out reports older than 30 s), not on every tick.
            let refresh = std::time::Duration::from_secs(15);
            let mut last: Option<(Vec<BreakerState>, std::time::Instant)> = None;
            loop {
                tick.tick().await;
                let states: Vec<BreakerState> = shared
                    .breakers
                    .states(std::time::Instant::now())
                    .into_iter()
                    .map(|(token, model, state)| (token, model, state.as_str()))
                    .collect();
                if last.as_ref().is_some_and(|(s, at)| *s == states && at.elapsed() < refresh) {
                    continue;
                }
                match store.report_breakers(&instance, &states, now_ms()).await {
                    Ok(()) => last = Some((states, std::time::Instant::now())),
                    Err(e) => tracing::warn!(error = %e, "cannot report breaker states"),
                }
            }
        })
    }

    /// A name for this gateway process: `POD_NAME` in Kubernetes, else host and process id.
    pub fn default_instance() -> String {
        std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| {
            let host =
                std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "local".into());
            format!("{host}-{}", std::process::id())
        })
    }

    /// The name this gateway reports its breakers under, if it does.
    pub fn instance(&self) -> Option<&str> {
        self.shared.instance.get().map(String::as_str)
    }

    /// Replaces the preferred models (`kind/name` → model) the request path uses for
    /// requests naming no model or `default`.
    pub fn set_preferred_models(&self, models: std::collections::HashMap<String, String>) {
        if let Ok(mut m) = self.shared.preferred_models.write() {
            *m = models;
        }
    }

    /// Builds `config` and swaps it in atomically; on error the configuration in force stays.
    /// The gateway is ready once a configuration has been applied. An IP token whose key
    /// cannot be resolved does not fail it: that token alone is out of service
    /// ([`Gateway::out_of_service`]) and the rest is applied.
    pub fn apply_config(&self, config: DataPlaneConfig, secrets: &SecretSource) -> Result<()> {
        let previous = self.shared.runtime.load_full();
        let runtime = Runtime::build(config, secrets, Some(&previous))?;
        tracing::info!(
            hash = %runtime.config.hash,
            models = runtime.config.models.len(),
            ip_tokens_out_of_service = runtime.out_of_service.len(),
            "configuration applied"
        );
        let c = &runtime.config;
        self.shared.metrics.set_vocabulary(
            Vocabulary::new()
                .with_models(c.models.keys())
                .with_budgets(c.budgets.iter().map(|b| &b.id))
                .with_ip_tokens(c.ip_tokens.iter().map(|t| &t.id))
                .with_safety_rules(safety_rule_names(c)),
        );
        if c.ip_tokens.iter().any(|t| {
            matches!(
                t.provider,
                tollgate_crds::ProviderKind::Openai | tollgate_crds::ProviderKind::AzureOpenai
            )
        }) && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            // Load OpenAI's tokenizers off the request path (~0.25 s, ~60 MiB); a gateway
            // serving no OpenAI model never pays for them.
            handle.spawn_blocking(crate::cost::tokens::warm_up);
        }
        let ids: std::collections::HashSet<String> = c.ip_tokens.iter().map(|t| t.id.clone()).collect();
        self.shared.breakers.retain_tokens(|t| ids.contains(t));
        self.shared.runtime.store(Arc::new(runtime));
        self.shared.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// The hash of the configuration in force.
    pub fn config_hash(&self) -> String {
        self.shared.runtime.load().config.hash.clone()
    }

    /// Whether `config` with the keys in `secrets` is what is in force already: the same
    /// hash *and* the same keys (a key set or rotated since must be applied, though the
    /// configuration's hash, which holds references only, did not change).
    pub fn is_current(&self, config: &DataPlaneConfig, secrets: &SecretSource) -> bool {
        let runtime = self.shared.runtime.load();
        runtime.config.hash == config.hash
            && runtime.keys_fingerprint == runtime::keys_fingerprint(config, secrets)
    }

    /// The IP tokens of the configuration in force that are not served, and why.
    pub fn out_of_service(&self) -> Vec<runtime::OutOfService> {
        self.shared.runtime.load().out_of_service.values().cloned().collect()
    }

    /// Marks the gateway not ready (shutdown).
    pub fn set_ready(&self, ready: bool) {
        self.shared.ready.store(ready, Ordering::Release);
    }

    /// Graceful shutdown: readiness turns false, new requests are refused, and this waits
    /// until the requests and streams in flight finish or `deadline` passes. Returns how
    /// many were still running at the deadline.
    pub async fn drain(&self, deadline: Duration) -> usize {
        self.set_ready(false);
        self.shared.in_flight.close();
        let _ = tokio::time::timeout(deadline, self.shared.in_flight.wait_idle()).await;
        self.shared.in_flight.in_flight()
    }

    /// The Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Restores budget counters from the ledger where the counter store has nothing for the
    /// current window but the ledger has charges (a fresh in-memory store after a restart,
    /// or a Redis that lost its data). Counters are SET, never incremented.
    pub async fn rebuild_budgets(&self, store: &Store) -> Result<usize> {
        let runtime = self.shared.runtime.load_full();
        let now = now_ms();
        let mut rebuilt = 0;
        for budget in &runtime.config.budgets {
            let key = key_for(budget, now);
            let state = self.shared.counters.state(&key).await.map_err(|e| Error::Config(e.to_string()))?;
            if state.spent_micros != 0 || state.reserved_micros != 0 {
                continue;
            }
            let spent = store.budget_spent(&budget.id, key.window.start_ms).await?;
            if spent > 0 {
                self.shared
                    .counters
                    .set_spent(&key, spent)
                    .await
                    .map_err(|e| Error::Config(e.to_string()))?;
                rebuilt += 1;
            }
        }
        Ok(rebuilt)
    }

    /// The shared state (the control plane reads budgets and counters from it).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Key management.
    pub fn keys(&self) -> &KeyService {
        &self.shared.keys
    }

    /// The upstream client (also used by the CLI for its own HTTP calls).
    pub fn client(&self) -> &UpstreamClient {
        &self.shared.client
    }
}

/// Every rule id a safety finding can carry under `config` (the metrics label vocabulary).
fn safety_rule_names(c: &DataPlaneConfig) -> Vec<String> {
    let mut names: Vec<String> =
        tollgate_crds::safety::Detector::ALL.iter().map(|d| d.as_str().to_owned()).collect();
    names.extend(
        ["tools.deny", "tools.allow", "engine.error", "limits.max_input_tokens", "limits.max_messages"]
            .map(str::to_owned),
    );
    names.push("limits.max_tool_definitions".to_owned());
    names.extend(crate::safety::INJECTION_RULES.iter().map(|r| (*r).to_owned()));
    for p in &c.safety_policies {
        for stage in [&p.input, &p.output] {
            names.extend(stage.regex.iter().map(|r| format!("custom.{}", r.id)));
            names.extend(stage.terms.iter().map(|t| format!("custom.{}", t.id)));
        }
        names.extend(p.tools.arguments.iter().map(|a| format!("tools.arguments.{}", a.id)));
    }
    names
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Resolves on SIGINT or SIGTERM (what Kubernetes sends before killing a pod).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
