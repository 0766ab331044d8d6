//! `tollgate up`: the gateway and the control plane in one process, on a SQLite file (or
//! any database URL), configured from resource files or, with none, the built-in mock.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tollgate_dataplane::auth::KeyService;
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
    #[arg(long, env = "TOLLGATE_DATABASE_URL", default_value = "sqlite://.tollgate/tollgate.db")]
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
    /// Log format: `text` or `json`.
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    let secrets = match &args.secrets {
        Some(path) => SecretSource::from_file(path)?,
        None => SecretSource::default(),
    };
    let config = if args.resources.is_empty() {
        tollgate_crds::DataPlaneConfig::mock_default()
    } else {
        resources::load_config(&args.resources)?
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
    let usage = UsageSink::start(store.clone());
    let options = GatewayOptions { max_body_bytes: args.max_body_bytes, ..GatewayOptions::default() };
    let gateway = Gateway::new(keys, usage, options)?;
    gateway.apply_config(config, &secrets).context("the configuration cannot be served")?;

    let app =
        gateway.router().merge(tollgate_operator::router(ControlPlane { gateway: gateway.clone(), store }));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("Tollgate listening on http://{addr}");
    if args.resources.is_empty() {
        println!("Serving the built-in mock provider: models mock-1 and mock-embedding-1");
    }

    if args.reload_seconds > 0 && !args.resources.is_empty() {
        tokio::spawn(watch_resources(
            gateway.clone(),
            args.resources.clone(),
            secrets.clone(),
            args.reload_seconds,
        ));
    }
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

    let shutdown_gateway = gateway.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tollgate_dataplane::shutdown_signal().await;
            shutdown_gateway.set_ready(false);
            tracing::info!("shutting down: finishing in-flight requests");
        })
        .await?;
    Ok(())
}

/// Re-reads the resources every `seconds`; applies a configuration whose hash changed.
async fn watch_resources(gateway: Gateway, paths: Vec<PathBuf>, secrets: SecretSource, seconds: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(seconds));
    let mut last_error = String::new();
    loop {
        tick.tick().await;
        match resources::load_config(&paths) {
            Ok(config) if config.hash == gateway.config_hash() => last_error.clear(),
            Ok(config) => match gateway.apply_config(config, &secrets) {
                Ok(()) => last_error.clear(),
                Err(e) => report(&mut last_error, format!("{e}")),
            },
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
