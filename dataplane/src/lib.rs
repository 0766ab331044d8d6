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
pub mod cost;
pub mod error;
pub mod http;
pub mod providers;
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
use crate::providers::UpstreamClient;
use crate::runtime::Runtime;
use crate::secrets::SecretSource;
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
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            default_max_tokens: 4096,
            connect_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(120),
            response_timeout: Duration::from_secs(600),
            stream_idle_timeout: Duration::from_secs(120),
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
}

/// A gateway: build it, apply a configuration, serve [`Gateway::router`].
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    /// A gateway with no models until a configuration is applied.
    pub fn new(keys: KeyService, usage: UsageSink, options: GatewayOptions) -> Result<Self> {
        let client = UpstreamClient::new(options.connect_timeout, options.header_timeout)?;
        let shared = Shared {
            runtime: ArcSwap::from_pointee(Runtime::empty()),
            keys,
            usage,
            client,
            options,
            ready: AtomicBool::new(false),
        };
        Ok(Self { shared: Arc::new(shared) })
    }

    /// The HTTP routes.
    pub fn router(&self) -> axum::Router {
        http::router(Arc::clone(&self.shared))
    }

    /// Builds `config` and swaps it in atomically; on error the configuration in force stays.
    /// The gateway is ready once a configuration has been applied.
    pub fn apply_config(&self, config: DataPlaneConfig, secrets: &SecretSource) -> Result<()> {
        let runtime = Runtime::build(config, secrets)?;
        tracing::info!(hash = %runtime.config.hash, models = runtime.config.models.len(), "configuration applied");
        self.shared.runtime.store(Arc::new(runtime));
        self.shared.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// The hash of the configuration in force.
    pub fn config_hash(&self) -> String {
        self.shared.runtime.load().config.hash.clone()
    }

    /// Marks the gateway not ready (shutdown).
    pub fn set_ready(&self, ready: bool) {
        self.shared.ready.store(ready, Ordering::Release);
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
