//! `tollgate up`: the gateway and the control plane in one process, on a SQLite file (or
//! any database URL), configured from resource files or, with none, the built-in mock.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tollgate_dataplane::auth::KeyService;
use tollgate_dataplane::budget::Alerts;
use tollgate_dataplane::cost::CounterStore;
use tollgate_dataplane::http::BodyTimeouts;
use tollgate_dataplane::http::server::{ServerLimits, serve};
use tollgate_dataplane::observability::{LogFormat, TelemetryConfig, init_tracing};
use tollgate_dataplane::secrets::SecretSource;
use tollgate_dataplane::store::Store;
use tollgate_dataplane::usage::UsageSink;
use tollgate_dataplane::{Gateway, GatewayOptions, now_ms};
use tollgate_operator::ControlPlane;

use crate::resources;

/// `tollgate up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Resource files or directories (the YAML `kubectl apply` takes). Without any, the
    /// built-in mock provider serves `mock-1` and `mock-embedding-1`.
    #[arg(long = "resources", short = 'f')]
    pub resources: Vec<PathBuf>,
    /// Database URL: `sqlite://PATH` (created if missing) or `postgres://...`.
    #[arg(
        long,
        alias = "database-url",
        env = "TOLLGATE_DATABASE_URL",
        default_value = "sqlite://.tollgate/tollgate.db"
    )]
    pub database: String,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// YAML file of provider secrets: `SECRET_NAME: {KEY: value}`. Secrets not found there
    /// are read from `TOLLGATE_SECRET_<NAME>_<KEY>`.
    #[arg(long, env = "TOLLGATE_SECRETS_FILE")]
    pub secrets: Option<PathBuf>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "TOLLGATE_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// How often resource files are re-read (seconds; 0 = never). A change that does not
    /// load leaves the configuration in force.
    #[arg(long, default_value_t = 2)]
    pub reload_seconds: u64,
    /// Redis URL for budget counters (several gateways sharing budgets). Without it,
    /// counters live in memory and are rebuilt from the ledger at start.
    #[arg(long, env = "TOLLGATE_REDIS_URL")]
    pub redis: Option<String>,
    /// Prefix of every Redis key this Tollgate uses (several installations may share one
    /// Redis).
    #[arg(long, env = "TOLLGATE_REDIS_PREFIX", default_value = "tollgate")]
    pub redis_prefix: String,
    /// URL that receives a JSON POST for each budget alert.
    #[arg(long, env = "TOLLGATE_BUDGET_WEBHOOK")]
    pub budget_webhook: Option<String>,
    /// Seconds in-flight requests and streams get to finish after SIGTERM.
    #[arg(long, env = "TOLLGATE_SHUTDOWN_SECONDS", default_value_t = 30)]
    pub shutdown_seconds: u64,
    /// Requests served at once; beyond it 503 at once.
    #[arg(long, env = "TOLLGATE_MAX_IN_FLIGHT", default_value_t = 4096)]
    pub max_in_flight: usize,
    /// Requests of one virtual key served at once; beyond it 429 at once (0: no cap).
    #[arg(long, env = "TOLLGATE_MAX_IN_FLIGHT_PER_KEY", default_value_t = 1024)]
    pub max_in_flight_per_key: usize,
    /// Open client connections at most (0: three quarters of the descriptor limit, which
    /// is raised to its hard limit at start).
    #[arg(long, env = "TOLLGATE_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,
    /// Open client connections from one source address at most (0: no cap).
    #[arg(long, env = "TOLLGATE_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 1024)]
    pub max_connections_per_address: usize,
    /// Seconds a request head may take to arrive (also the most a new connection may stay
    /// silent).
    #[arg(long, env = "TOLLGATE_HEADER_TIMEOUT_SECONDS", default_value_t = 10)]
    pub header_timeout_seconds: u64,
    /// Seconds a keep-alive connection may stay silent between requests.
    #[arg(long, env = "TOLLGATE_IDLE_TIMEOUT_SECONDS", default_value_t = 75)]
    pub idle_timeout_seconds: u64,
    /// Seconds a request body may take to arrive whole.
    #[arg(long, env = "TOLLGATE_BODY_TIMEOUT_SECONDS", default_value_t = 30)]
    pub body_timeout_seconds: u64,
    /// Seconds a request body may stall between two chunks.
    #[arg(long, env = "TOLLGATE_BODY_IDLE_SECONDS", default_value_t = 10)]
    pub body_idle_seconds: u64,
    /// Seconds between usage rollups (what `tollgate usage` and the dashboard read).
    #[arg(long, env = "TOLLGATE_ROLLUP_SECONDS", default_value_t = 15)]
    pub rollup_seconds: u64,
    /// The dashboard's build folder (`npm --prefix dashboard run build` writes
    /// `dashboard/dist`). Default: `dashboard/dist` here, else in the source tree.
    #[arg(long, env = "TOLLGATE_DASHBOARD_DIR")]
    pub dashboard: Option<std::path::PathBuf>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let mut telemetry = TelemetryConfig::from_env()?;
    telemetry.log_format = if args.log_format == "json" { LogFormat::Json } else { LogFormat::Text };
    telemetry.service_name = "tollgate".to_owned();
    let _telemetry = init_tracing(&telemetry)?;
    let secrets = match &args.secrets {
        Some(path) => SecretSource::from_file(path)?,
        None => SecretSource::default(),
    };
    // Resource files are checked whole before anything starts: a half-loaded configuration
    // is refused. Without files, the built-in mock provider is the one (read-only) file.
    let file_resources = if args.resources.is_empty() {
        tollgate_crds::parse_documents("built-in", tollgate_crds::config::MOCK_DEFAULT_RESOURCES)?.resources
    } else {
        resources::load_config(&args.resources)?;
        resources::load(&args.resources)?
    };

    if let Some(path) = args.database.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    let store = Store::connect(&args.database).await.context("cannot open the database")?;
    let keys = KeyService::load(store.clone()).await?;
    let preset = std::env::var("TOLLGATE_ADMIN_KEY").ok().filter(|k| !k.is_empty());
    if let Some(secret) = keys.ensure_admin(preset.as_deref(), now_ms()).await? {
        println!("Admin key (shown once; store it now): {secret}");
    }
    let usage = UsageSink::open(store.clone()).await?;
    let options = GatewayOptions {
        max_body_bytes: args.max_body_bytes,
        max_in_flight: args.max_in_flight,
        max_in_flight_per_key: args.max_in_flight_per_key,
        body_timeouts: BodyTimeouts {
            total: Duration::from_secs(args.body_timeout_seconds.max(1)),
            idle: Duration::from_secs(args.body_idle_seconds.max(1)),
        },
        redis: args.redis.clone().map(|url| (url, args.redis_prefix.clone())),
        ..GatewayOptions::default()
    };
    let limits = ServerLimits {
        header_read_timeout: Duration::from_secs(args.header_timeout_seconds.max(1)),
        idle_timeout: Duration::from_secs(args.idle_timeout_seconds.max(1)),
        max_connections: args.max_connections,
        max_connections_per_address: args.max_connections_per_address,
        ..ServerLimits::default()
    };
    let counters = CounterStore::from_options(options.redis.as_ref())
        .await
        .context("cannot use Redis for budget counters")?;
    let alerts = Alerts { webhook: args.budget_webhook.clone() };
    let gateway = Gateway::new(keys, usage, counters, alerts, options)?;
    gateway.persist_findings(store.clone());
    gateway.report_breakers(store.clone(), Gateway::default_instance(), Duration::from_secs(5));
    let cp = ControlPlane::standalone(gateway.clone(), store.clone());
    cp.config.set_files(file_resources);
    cp.config.set_base_secrets(secrets.clone());
    cp.reconfigure().await.map_err(|e| anyhow::anyhow!("the configuration cannot be served: {e}"))?;
    cp.push_preferences().await;
    let rebuilt = gateway.rebuild_budgets(&store).await.context("cannot restore budget counters")?;
    if rebuilt > 0 {
        tracing::info!(budgets = rebuilt, "budget counters restored from the ledger");
    }

    let dashboard = tollgate_operator::dashboard::locate(args.dashboard.as_deref());
    if dashboard.is_none() {
        tracing::warn!(
            "the dashboard is not built (npm --prefix dashboard ci && npm --prefix dashboard run build); \
             serving the API only"
        );
    }
    let app = gateway
        .router()
        .merge(tollgate_operator::router(cp.clone()))
        .route(
            "/metrics",
            axum::routing::get(tollgate_dataplane::observability::metrics_handler)
                .with_state(gateway.metrics().clone()),
        )
        .fallback_service(tollgate_operator::dashboard::router(dashboard.clone()));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("Tollgate listening on http://{addr}");
    if dashboard.is_some() {
        println!("Dashboard: http://{addr}/ (sign in with a key)");
    }
    if args.resources.is_empty() {
        println!("Serving the built-in mock provider: models mock-1 and mock-embedding-1");
    }

    if args.reload_seconds > 0 && !args.resources.is_empty() {
        tokio::spawn(watch_resources(cp.clone(), args.resources.clone(), args.reload_seconds));
    }
    tokio::spawn(tollgate_operator::scheduler::run(
        cp.clone(),
        tollgate_operator::scheduler::standard_jobs(
            Duration::from_secs(args.rollup_seconds.max(1)),
            tollgate_operator::scheduler::DEFAULT_RETENTION,
        ),
    ));
    let key_refresh = gateway.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            if let Err(e) = key_refresh.keys().reload().await {
                tracing::warn!(error = %e, "key refresh failed; keeping the keys in memory");
            }
        }
    });

    serve_until_shutdown(listener, app, limits, gateway, Duration::from_secs(args.shutdown_seconds)).await
}

/// Serves until SIGINT/SIGTERM, then drains: readiness false, new requests refused (503),
/// requests and streams in flight finish up to `deadline`.
pub async fn serve_until_shutdown(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: ServerLimits,
    gateway: Gateway,
    deadline: Duration,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        app,
        limits,
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_secs(2),
    ));
    tollgate_dataplane::shutdown_signal().await;
    tracing::info!(deadline_seconds = deadline.as_secs(), "shutting down: finishing requests in flight");
    let left = gateway.drain(deadline).await;
    if left > 0 {
        tracing::warn!(requests = left, "shutdown deadline reached with requests still running");
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(3), server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
        Err(_) => tracing::warn!("connections still open after the deadline; closing"),
    }
    Ok(())
}

/// Re-reads the resources every `seconds`; applies a configuration whose hash changed.
async fn watch_resources(cp: ControlPlane, paths: Vec<PathBuf>, seconds: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(seconds));
    let mut last_error = String::new();
    loop {
        tick.tick().await;
        // Files that do not load leave the previous file set (and configuration) in force.
        // NB: read and parsed on a blocking thread: a big resource file must not hold up
        // the requests this process serves meanwhile.
        let files = paths.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            resources::load_config(&files).and_then(|_| resources::load(&files))
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
        match loaded {
            Ok(files) => {
                cp.config.set_files(files);
                match cp.reconfigure().await {
                    Ok(()) => last_error.clear(),
                    Err(e) => report(&mut last_error, e),
                }
            }
            Err(e) => report(&mut last_error, format!("{e:#}")),
        }
    }
}

fn report(last: &mut String, error: String) {
    if *last != error {
        tracing::error!(error = %error, "resources changed but cannot be loaded; the previous configuration stays in force");
        *last = error;
    }
}
