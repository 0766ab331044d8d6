//! `tollgate-dataplane`: the gateway on its own, as deployed in Kubernetes. It starts from
//! the `DataPlaneConfig` JSON at `--config` (a mounted ConfigMap) and then follows what the
//! operator publishes: every second the copy in the shared database, else the file
//! ([`tollgate_dataplane::config_sync`]); a change that fails to load leaves the previous
//! configuration in force.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tollgate_dataplane::auth::KeyService;
use tollgate_dataplane::budget::Alerts;
use tollgate_dataplane::config_sync::{ConfigSync, Outcome, Source};
use tollgate_dataplane::cost::CounterStore;
use tollgate_dataplane::http::server::{ServerLimits, serve};
use tollgate_dataplane::observability::{TelemetryConfig, init_tracing, metrics_handler};
use tollgate_dataplane::secrets::SecretSource;
use tollgate_dataplane::store::Store;
use tollgate_dataplane::usage::UsageSink;
use tollgate_dataplane::{Gateway, GatewayOptions};

/// The Tollgate gateway.
#[derive(Debug, Parser)]
#[command(name = "tollgate-dataplane", version, about)]
struct Args {
    /// The compiled configuration (JSON), written by the operator.
    #[arg(long, env = "TOLLGATE_CONFIG")]
    config: PathBuf,
    /// Database URL (`postgres://...` or `sqlite://PATH`).
    #[arg(long, env = "TOLLGATE_DATABASE_URL")]
    database: String,
    /// Address to listen on.
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// YAML file of provider secrets (`NAME: {KEY: value}`); environment variables
    /// `TOLLGATE_SECRET_<NAME>_<KEY>` are consulted for the rest.
    #[arg(long, env = "TOLLGATE_SECRETS_FILE")]
    secrets: Option<PathBuf>,
    /// Redis URL for budget counters shared by every gateway replica (required with more
    /// than one replica; without it counters are in memory).
    #[arg(long, env = "TOLLGATE_REDIS_URL")]
    redis: Option<String>,
    /// URL that receives a JSON POST for each budget alert.
    #[arg(long, env = "TOLLGATE_BUDGET_WEBHOOK")]
    budget_webhook: Option<String>,
    /// Prefix of this installation's Redis keys.
    #[arg(long, env = "TOLLGATE_REDIS_PREFIX", default_value = "tollgate")]
    redis_prefix: String,
    /// Where `/metrics` is served (kept off the public port: it names models and budgets).
    #[arg(long, env = "TOLLGATE_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    metrics_listen: SocketAddr,
    /// Seconds in-flight requests and streams get to finish after SIGTERM.
    #[arg(long, env = "TOLLGATE_SHUTDOWN_SECONDS", default_value_t = 30)]
    shutdown_seconds: u64,
    /// Requests served at once; beyond it 503 at once.
    #[arg(long, env = "TOLLGATE_MAX_IN_FLIGHT", default_value_t = 4096)]
    max_in_flight: usize,
    /// Requests of one virtual key served at once; beyond it 429 at once (0: no cap).
    #[arg(long, env = "TOLLGATE_MAX_IN_FLIGHT_PER_KEY", default_value_t = 1024)]
    max_in_flight_per_key: usize,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "TOLLGATE_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    max_body_bytes: usize,
    /// Open client connections at most (0: three quarters of the descriptor limit, which is
    /// raised to its hard limit at start).
    #[arg(long, env = "TOLLGATE_MAX_CONNECTIONS", default_value_t = 0)]
    max_connections: usize,
    /// Open client connections from one source address at most (0: no cap).
    #[arg(long, env = "TOLLGATE_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 1024)]
    max_connections_per_address: usize,
}

/// jemalloc gives memory back to the system after load; glibc's malloc keeps its arenas.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = init_tracing(&TelemetryConfig::from_env()?)?;
    let secrets = match &args.secrets {
        Some(p) => SecretSource::from_file(p)?,
        None => SecretSource::default(),
    };
    let store = Store::connect(&args.database).await?;
    let keys = KeyService::load(store.clone()).await?;
    let usage = UsageSink::open(store.clone()).await?;
    let options = GatewayOptions {
        max_body_bytes: args.max_body_bytes,
        max_in_flight: args.max_in_flight,
        max_in_flight_per_key: args.max_in_flight_per_key,
        redis: args.redis.clone().map(|url| (url, args.redis_prefix.clone())),
        ..GatewayOptions::default()
    };
    let counters = CounterStore::from_options(options.redis.as_ref()).await?;
    let alerts = Alerts { webhook: args.budget_webhook.clone() };
    let gateway = Gateway::new(keys, usage, counters, alerts, options)?;
    gateway.persist_findings(store.clone());
    gateway.report_breakers(store.clone(), Gateway::default_instance(), Duration::from_secs(5));
    let mut sync = ConfigSync::new(gateway.clone(), store.clone(), args.config.clone(), secrets);
    let first = match sync.sync_once().await {
        // Refused, or unreadable for now: start from the file; the rounds retry the database.
        Outcome::Refused(Source::Database, why) => {
            tracing::warn!(error = %why, "the published configuration is refused; starting from the mounted file");
            sync.sync_file()
        }
        other => other,
    };
    match first {
        Outcome::Refused(_, why) => anyhow::bail!("no configuration can be served: {why}"),
        Outcome::Applied(source, hash) => tracing::info!(?source, %hash, "configuration loaded"),
        Outcome::Unchanged(_) => {}
    }
    gateway.rebuild_budgets(&store).await?;

    tokio::spawn(sync.run(Duration::from_secs(1)));
    let watcher = gateway.clone();
    tokio::spawn(async move {
        // Keys issued or revoked through the control plane.
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            if let Err(e) = watcher.keys().reload().await {
                tracing::warn!(error = %e, "key refresh failed");
            }
        }
    });

    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen).await?;
    let metrics_app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics_handler))
        .with_state(gateway.metrics().clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(metrics_listener, metrics_app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = ServerLimits {
        max_connections: args.max_connections,
        max_connections_per_address: args.max_connections_per_address,
        ..ServerLimits::default()
    };
    let server = tokio::spawn(serve(
        listener,
        gateway.router(),
        limits,
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_secs(2),
    ));
    tollgate_dataplane::shutdown_signal().await;
    let left = gateway.drain(Duration::from_secs(args.shutdown_seconds)).await;
    if left > 0 {
        tracing::warn!(requests = left, "shutdown deadline reached with requests still running");
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}
