//! In-process gateways: the data plane built the way `tollgate-dataplane` builds it, over a
//! test's store, with a configuration from YAML, optionally on a real socket.

use std::net::SocketAddr;

use tollgate_crds::{DataPlaneConfig, compile, parse_documents};
use tollgate_dataplane::auth::{KeyService, NewKey, Principal, PrincipalKind, Role};
use tollgate_dataplane::budget::Alerts;
use tollgate_dataplane::cost::CounterStore;
use tollgate_dataplane::secrets::SecretSource;
use tollgate_dataplane::store::Store;
use tollgate_dataplane::usage::UsageSink;
use tollgate_dataplane::{Gateway, GatewayOptions, now_ms};

/// A gateway for a test: its [`KeyService`] and [`Store`] at hand.
///
/// ```no_run
/// # async fn f() {
/// use tollgate_testkit::{ScratchDb, TestGateway, developer};
/// let db = ScratchDb::sqlite();
/// let t = TestGateway::start(db.connect().await, "apiVersion: tollgate.dev/v1alpha1\n...").await;
/// let key = t.issue_key("k", developer("alice")).await.secret;
/// let addr = t.serve().await; // or t.router() with `oneshot`
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TestGateway {
    /// The gateway.
    pub gateway: Gateway,
    /// The gateway's key service (one cache: keys issued or revoked here count at once).
    pub keys: KeyService,
    /// The store the gateway records usage in and loads keys from.
    pub store: Store,
}

impl TestGateway {
    /// A gateway over `store` with default options, in-memory budget counters, no alert
    /// webhook, and `resources_yaml` compiled and applied.
    pub async fn start(store: Store, resources_yaml: &str) -> Self {
        Self::builder(store).resources(resources_yaml).start().await
    }

    /// A gateway over `store`, set up step by step; without
    /// [`resources`](TestGatewayBuilder::resources) it starts with no configuration (not
    /// ready, no models), like a freshly started data plane.
    pub fn builder(store: Store) -> TestGatewayBuilder {
        TestGatewayBuilder {
            store,
            resources: None,
            options: GatewayOptions::default(),
            counters: None,
            alerts: Alerts::default(),
            secrets: SecretSource::default(),
        }
    }

    /// The gateway's HTTP routes, for driving it in-process (`tower::ServiceExt::oneshot`).
    pub fn router(&self) -> axum::Router {
        self.gateway.router()
    }

    /// Serves the gateway on `127.0.0.1` at a free port (HTTP/1, h2c and gRPC, as in
    /// production) until the test's runtime ends; returns the address.
    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port on 127.0.0.1");
        let addr = listener.local_addr().expect("the listener's address");
        let router = self.router();
        tokio::spawn(tollgate_dataplane::http::server::serve(
            listener,
            router,
            tollgate_dataplane::http::server::ServerLimits::default(),
            std::future::pending(),
            std::time::Duration::ZERO,
        ));
        addr
    }

    /// Issues a key named `name` for `principal`: every configured model, no expiry, no
    /// rate limits. (For anything else call [`KeyService::create`] or
    /// [`KeyService::create_limited`] on [`TestGateway::keys`].)
    pub async fn issue_key(&self, name: &str, principal: Principal) -> NewKey {
        self.keys.create(name.into(), principal, vec![], None, now_ms()).await.expect("issuing a key")
    }
}

/// Builds a [`TestGateway`]; see [`TestGateway::builder`].
#[derive(Debug)]
#[must_use = "nothing starts until `start`"]
pub struct TestGatewayBuilder {
    store: Store,
    resources: Option<String>,
    options: GatewayOptions,
    counters: Option<CounterStore>,
    alerts: Alerts,
    secrets: SecretSource,
}

impl TestGatewayBuilder {
    /// Where provider keys come from (default: the environment only).
    pub fn secrets(mut self, secrets: SecretSource) -> Self {
        self.secrets = secrets;
        self
    }

    /// The Tollgate resources (multi-document YAML) to compile and apply.
    pub fn resources(mut self, yaml: &str) -> Self {
        self.resources = Some(yaml.to_owned());
        self
    }

    /// The gateway's options (default: [`GatewayOptions::default`]).
    pub fn options(mut self, options: GatewayOptions) -> Self {
        self.options = options;
        self
    }

    /// Its budget counters (default: [`CounterStore::memory`]).
    pub fn counters(mut self, counters: CounterStore) -> Self {
        self.counters = Some(counters);
        self
    }

    /// Where its budget alerts go (default: nowhere).
    pub fn alerts(mut self, alerts: Alerts) -> Self {
        self.alerts = alerts;
        self
    }

    /// Loads the keys, starts the usage sink, builds the gateway and applies the
    /// resources.
    ///
    /// # Panics
    /// When any step fails (a test's set-up failing loudly).
    pub async fn start(self) -> TestGateway {
        let Self { store, resources, options, counters, alerts, secrets } = self;
        let keys = KeyService::load(store.clone()).await.expect("loading the keys");
        let gateway = Gateway::new(
            keys.clone(),
            UsageSink::start(store.clone()),
            counters.unwrap_or_else(CounterStore::memory),
            alerts,
            options,
        )
        .expect("building the gateway");
        // As the binaries do: safety findings go to the database the control plane reads.
        gateway.persist_findings(store.clone());
        if let Some(yaml) = resources {
            gateway.apply_config(config(&yaml), &secrets).expect("applying the configuration");
        }
        TestGateway { gateway, keys, store }
    }
}

/// `yaml` (Tollgate resources) parsed and compiled into a data-plane configuration.
///
/// # Panics
/// When the YAML does not parse or the resources do not compile.
pub fn config(yaml: &str) -> DataPlaneConfig {
    let resources = parse_documents("t", yaml).expect("parsing the resources").resources;
    compile(&resources).expect("compiling the resources")
}

/// A developer `name` with the developer role and no team.
pub fn developer(name: &str) -> Principal {
    Principal { kind: PrincipalKind::Developer, name: name.into(), role: Role::Developer, team: None }
}

/// An agent `name` with the developer role and no team.
pub fn agent(name: &str) -> Principal {
    Principal { kind: PrincipalKind::Agent, name: name.into(), role: Role::Developer, team: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScratchDb;

    const RESOURCES: &str = "apiVersion: tollgate.dev/v1alpha1\nkind: IPToken\nmetadata: {name: mock}\nspec:\n  provider: mock\n  models: [{name: mock-1}]\n";

    /// Served on a real socket: ready with the configuration applied, and an issued key
    /// authenticates at once.
    #[tokio::test]
    async fn a_served_gateway_is_configured_and_knows_its_keys() {
        let db = ScratchDb::sqlite();
        let t = TestGateway::start(db.connect().await, RESOURCES).await;
        assert_eq!(t.gateway.config_hash(), config(RESOURCES).hash);
        let key = t.issue_key("k", agent("bot")).await;
        assert_eq!(key.record.principal, agent("bot"));
        let addr = t.serve().await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
            key.secret
        );
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("mock-1"), "{response}");
    }

    /// Without resources the gateway has no configuration yet.
    #[tokio::test]
    async fn without_resources_nothing_is_applied() {
        let db = ScratchDb::sqlite();
        let t = TestGateway::builder(db.connect().await).start().await;
        assert_ne!(t.gateway.config_hash(), config(RESOURCES).hash);
    }
}
