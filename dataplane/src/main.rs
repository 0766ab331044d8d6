//! `tollgate-dataplane`: the gateway on its own, as deployed in Kubernetes. It serves the
//! `DataPlaneConfig` JSON at `--config` (a mounted ConfigMap), re-reading it when it
//! changes; a change that fails to load leaves the previous configuration in force.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tollgate_crds::DataPlaneConfig;
use tollgate_dataplane::auth::KeyService;
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
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "TOLLGATE_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    max_body_bytes: usize,
}

fn read_config(path: &std::path::Path) -> anyhow::Result<DataPlaneConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a DataPlaneConfig", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .init();
    let args = Args::parse();
    let secrets = match &args.secrets {
        Some(p) => SecretSource::from_file(p)?,
        None => SecretSource::default(),
    };
    let store = Store::connect(&args.database).await?;
    let keys = KeyService::load(store.clone()).await?;
    let usage = UsageSink::start(store);
    let options = GatewayOptions { max_body_bytes: args.max_body_bytes, ..GatewayOptions::default() };
    let gateway = Gateway::new(keys, usage, options)?;
    gateway.apply_config(read_config(&args.config)?, &secrets)?;

    let watcher = gateway.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            let applied = match read_config(&args.config) {
                Ok(c) if c.hash == watcher.config_hash() => Ok(()),
                Ok(c) => watcher.apply_config(c, &secrets).map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            if let Err(e) = applied {
                tracing::error!(error = %format!("{e:#}"), "new configuration not applied; the previous one stays in force");
            }
            if let Err(e) = watcher.keys().reload().await {
                tracing::warn!(error = %e, "key refresh failed");
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    let shutdown = gateway.clone();
    axum::serve(listener, gateway.router())
        .with_graceful_shutdown(async move {
            tollgate_dataplane::shutdown_signal().await;
            shutdown.set_ready(false);
        })
        .await?;
    Ok(())
}
