//! The `tollgate-operator` process: the admin API on `--listen` (every replica), health
//! and metrics on `--metrics-listen`, and — on the one replica holding the leader lease —
//! the controllers.
//!
//! Lifecycle: connect to the database and the API server → serve the admin API and probes
//! → wait for the lease → run the controllers while a supervised task renews it. If that
//! task ends (lease lost, or not renewable for a lease duration) or dies, [`run`] returns
//! an error and the process exits, so a replica never keeps reconciling while another one
//! leads. On SIGTERM the lease is released for a quick hand-over.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use k8s_openapi::api::coordination::v1::Lease;
use kube_client::{Api, Client};
use tollgate_dataplane::auth::KeyService;
use tollgate_dataplane::budget::Alerts;
use tollgate_dataplane::cost::CounterStore;
use tollgate_dataplane::observability::{TelemetryConfig, init_tracing};
use tollgate_dataplane::store::Store;
use tollgate_dataplane::usage::UsageSink;
use tollgate_dataplane::{Gateway, GatewayOptions, now_ms};

use crate::controllers::reconcilers::{self, Context, ResourceStores};
use crate::error::Error;
use crate::leader::{self, LeaseSettings};
use crate::metrics::Metrics;
use crate::{ControlPlane, router};

/// The gateway image of this release, used for DataPlanes that name none.
pub const DEFAULT_GATEWAY_IMAGE: &str = concat!("ghcr.io/tollgate-dev/tollgate:", env!("CARGO_PKG_VERSION"));

/// Command line of `tollgate-operator`; every flag also reads an environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "tollgate-operator", version, about = "Tollgate's control plane and Kubernetes operator")]
pub struct Args {
    /// Address of the admin API (CLI, dashboard).
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "0.0.0.0:8081")]
    pub listen: SocketAddr,
    /// The dashboard's build folder, served at `/` next to the admin API (the image sets
    /// it). Without one the admin API is served alone.
    #[arg(long, env = "TOLLGATE_DASHBOARD_DIR")]
    pub dashboard: Option<std::path::PathBuf>,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "TOLLGATE_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "tollgate-system")]
    pub leader_election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, env = "TOLLGATE_LEADER_ELECTION_ID", default_value = "tollgate-operator")]
    pub leader_election_id: String,
    /// This replica's identity in the Lease (default: the pod name, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Gateway image for DataPlanes that name none.
    #[arg(long, env = "TOLLGATE_GATEWAY_IMAGE", default_value = DEFAULT_GATEWAY_IMAGE)]
    pub gateway_image: String,
    /// Database URL (`postgres://...` or `sqlite://PATH`): the one the gateways use, so
    /// agents' virtual keys reach them and Budget status reads their ledger.
    #[arg(
        long = "database",
        env = "TOLLGATE_DATABASE_URL",
        default_value = "sqlite:///var/lib/tollgate/tollgate.db"
    )]
    pub database: String,
    /// Redis URL of the gateways' shared budget counters, for `Budget.status.reserved`.
    #[arg(long, env = "TOLLGATE_REDIS_URL")]
    pub redis: Option<String>,
    /// Prefix of the gateways' Redis keys.
    #[arg(long, env = "TOLLGATE_REDIS_PREFIX", default_value = "tollgate")]
    pub redis_prefix: String,
}

/// The database, creating a SQLite file's directory first.
async fn open_store(url: &str) -> anyhow::Result<Store> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    Store::connect(url).await.context("cannot open the database")
}

#[derive(Clone)]
struct Probes {
    metrics: Metrics,
    store: Store,
}

/// `/healthz`, `/readyz` and `/metrics`.
fn probes_router(probes: Probes) -> axum::Router {
    async fn healthz() -> &'static str {
        "ok"
    }
    async fn readyz(State(p): State<Probes>) -> impl IntoResponse {
        // Ready = the admin API can answer, which needs the database.
        if p.store.ping().await {
            (StatusCode::OK, "ok")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
    async fn metrics(State(p): State<Probes>) -> impl IntoResponse {
        ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], p.metrics.encode())
    }
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probes)
}

async fn serve(addr: SocketAddr, app: axum::Router, what: &'static str) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, what, "listening");
    // The gateway's listener: header-read, idle and connection limits (a slow or silent
    // client cannot hold the admin API either).
    tollgate_dataplane::http::server::serve(
        listener,
        app,
        tollgate_dataplane::http::server::ServerLimits::default(),
        std::future::pending(),
        Duration::ZERO,
    )
    .await;
    anyhow::bail!("{what} server stopped")
}

/// Runs the operator until SIGTERM, or until leadership is lost (an error: exit and restart).
pub async fn run(args: Args) -> anyhow::Result<()> {
    // NB: rustls with ring only; both the kube client and the gateway library use it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut telemetry = TelemetryConfig::from_env()?;
    telemetry.service_name = "tollgate-operator".to_owned();
    let _telemetry = init_tracing(&telemetry)?;

    let store = open_store(&args.database).await?;
    let keys = KeyService::load(store.clone()).await?;
    if let Some(preset) = std::env::var("TOLLGATE_ADMIN_KEY").ok().filter(|k| !k.is_empty()) {
        // NB: only a preset key from a Secret; a generated one would have to be printed,
        // and pod logs are no place for a key.
        keys.ensure_admin(Some(&preset), now_ms()).await?;
    }
    let redis = args.redis.clone().map(|url| (url, args.redis_prefix.clone()));
    let counters = CounterStore::from_options(redis.as_ref()).await.context("cannot use Redis")?;
    let options = GatewayOptions { redis: redis.clone(), ..GatewayOptions::default() };
    // The admin API's view of keys and budgets; it serves no LLM traffic.
    let gateway =
        Gateway::new(keys.clone(), UsageSink::discard(), counters.clone(), Alerts::default(), options)?;

    let client =
        Client::try_default().await.context("cannot reach the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let (stores, writers) = ResourceStores::new();
    let mut ctx = Context::new(client.clone(), args.gateway_image.clone(), stores);
    ctx.ledger = Some(store.clone());
    ctx.keys = Some(keys.clone());
    ctx.counters = redis.is_some().then_some(counters);
    ctx.control_plane = Some(gateway.clone());
    let ctx = Arc::new(ctx);

    let probes = probes_router(Probes { metrics: ctx.metrics.clone(), store: store.clone() });
    let mut probe_server = tokio::spawn(serve(args.metrics_listen, probes, "probes and metrics"));
    // The custom resources are the source of truth: the admin API reads and writes them.
    let cp = ControlPlane::standalone(gateway.clone(), store)
        .with_resources(Arc::new(crate::store::kube::KubeStore::new(client.clone())));
    // Rollups, key expiry and retention: on PostgreSQL only the advisory-lock holder runs them.
    tokio::spawn(crate::scheduler::run(
        cp.clone(),
        crate::scheduler::standard_jobs(Duration::from_secs(30), crate::scheduler::DEFAULT_RETENTION),
    ));
    let dashboard = args.dashboard.as_deref().and_then(|d| crate::dashboard::locate(Some(d)));
    let admin = router(cp).fallback_service(crate::dashboard::router(dashboard));
    let mut admin_server = tokio::spawn(serve(args.listen, admin, "admin API"));
    let key_refresh = gateway.clone();
    tokio::spawn(async move {
        // Keys created or revoked through another replica's admin API.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            if let Err(e) = key_refresh.keys().reload().await {
                tracing::warn!(error = %e, "key refresh failed; keeping the keys in memory");
            }
        }
    });

    let identity = args
        .identity
        .clone()
        .filter(|i| !i.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("tollgate-operator-{}", uuid::Uuid::new_v4()));
    let settings =
        LeaseSettings::new(args.leader_election_namespace.clone(), args.leader_election_id.clone(), identity);
    let leases: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let lead = {
        let (ctx, leases, settings) = (ctx.clone(), leases.clone(), settings.clone());
        async move {
            leader::acquire(&leases, &settings).await;
            ctx.metrics.set_leader(true);
            let mut holder = tokio::spawn({
                let (leases, settings) = (leases.clone(), settings.clone());
                async move { leader::hold(&leases, &settings).await }
            });
            let error = tokio::select! {
                ended = &mut holder => match ended {
                    Ok(lost) => lost,
                    Err(died) => Error::Lease(format!("the lease task died: {died}")),
                },
                done = reconcilers::run(ctx.clone(), writers) => done.err().unwrap_or(Error::Stopped("the controllers")),
            };
            holder.abort();
            ctx.metrics.set_leader(false);
            error
        }
    };

    tokio::select! {
        error = lead => Err(anyhow::Error::new(error).context("no longer leading; exiting so a fresh replica takes over")),
        ended = &mut probe_server => Err(anyhow::anyhow!("probe server ended: {ended:?}")),
        ended = &mut admin_server => Err(anyhow::anyhow!("admin API server ended: {ended:?}")),
        () = tollgate_dataplane::shutdown_signal() => {
            tracing::info!("shutting down; releasing the leader lease");
            if let Err(e) = leader::release(&leases, &settings).await {
                tracing::warn!(error = %e, "could not release the lease; it expires on its own");
            }
            Ok(())
        }
    }
}
