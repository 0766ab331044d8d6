//! The kube-runtime controllers: the thin I/O around the pure desired-state functions of
//! [`super`]. Each controller has an instrumented `reconcile(obj, ctx) -> Result<Action>`
//! and an `error_policy` that logs, counts and requeues; children are applied with
//! server-side apply under one field manager per controller (`tollgate-operator/<name>`),
//! carry a controller owner reference, and those no longer desired are pruned; statuses are
//! written with server-side apply on the status subresource; condition changes become
//! Events.
//!
//! | controller | primary | writes |
//! |---|---|---|
//! | [`dataplane`] | DataPlane (+ every IPToken, Budget, SafetyPolicy and their Secrets) | the configuration ConfigMap and provider-key Secret, the gateway's workload, DataPlane status |
//! | [`resources`] | IPToken, SafetyPolicy | their status (`Accepted`, `Programmed`, `secretHash`) |
//! | [`budget`] | Budget | its status from the usage ledger; Events at alert thresholds |
//! | [`agent`] | Agent | its workload and virtual key (finalizer: the key is revoked on deletion) |
//! | [`sandbox`] | Sandbox | its Pod and NetworkPolicy, status from the pod; deletes it after its TTL |
//!
//! Publishing is watch-driven: IPTokens, Budgets and SafetyPolicies are mirrored by
//! reflectors, and any change to them (or to a Secret an IP token names) triggers every
//! DataPlane's reconcile, which compiles everything once and writes the ConfigMap.

pub mod agent;
pub mod budget;
pub mod dataplane;
pub mod resources;
pub mod sandbox;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::PartialObjectMeta;
use kube::{Resource, ResourceExt};
use kube_client::Client;
use kube_client::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube_runtime::WatchStreamExt;
use kube_runtime::events::{Event, EventType, Recorder, Reporter};
use kube_runtime::reflector::{self, Store};
use kube_runtime::watcher;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tollgate_crds::safety::SafetyPolicy;
use tollgate_crds::{Budget, IpToken};
use tollgate_dataplane::Gateway;
use tollgate_dataplane::auth::KeyService;
use tollgate_dataplane::cost::CounterStore;
use tollgate_dataplane::store::Store as Ledger;

use super::configuration::{ClusterResources, ConfigOutcome};
use super::{Component, MANAGED_BY, Owner};
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// How long after a transient error a reconcile is retried.
pub const ERROR_REQUEUE: Duration = Duration::from_secs(15);

/// The field manager of `controller`: one per controller, so `kubectl get --show-managed-fields`
/// says which one owns a field.
pub fn field_manager(controller: &str) -> String {
    format!("{MANAGED_BY}/{controller}")
}

/// Mirrors of the resources that compile into the gateway configuration.
#[derive(Clone)]
pub struct ResourceStores {
    /// Every IPToken.
    pub ip_tokens: Store<IpToken>,
    /// Every Budget.
    pub budgets: Store<Budget>,
    /// Every SafetyPolicy.
    pub safety_policies: Store<SafetyPolicy>,
}

/// The writing halves of [`ResourceStores`], fed by reflectors (or by hand in tests).
pub struct ResourceWriters {
    /// Feeds `ip_tokens`.
    pub ip_tokens: reflector::store::Writer<IpToken>,
    /// Feeds `budgets`.
    pub budgets: reflector::store::Writer<Budget>,
    /// Feeds `safety_policies`.
    pub safety_policies: reflector::store::Writer<SafetyPolicy>,
}

impl ResourceStores {
    /// Empty stores and their writers.
    pub fn new() -> (Self, ResourceWriters) {
        let (ip_tokens, ip_w) = reflector::store();
        let (budgets, b_w) = reflector::store();
        let (safety_policies, s_w) = reflector::store();
        (
            Self { ip_tokens, budgets, safety_policies },
            ResourceWriters { ip_tokens: ip_w, budgets: b_w, safety_policies: s_w },
        )
    }

    /// A snapshot of everything, for one compile.
    pub fn snapshot(&self) -> ClusterResources {
        fn own<K: Clone>(v: Vec<Arc<K>>) -> Vec<K> {
            v.into_iter().map(|a| (*a).clone()).collect()
        }
        ClusterResources {
            ip_tokens: own(self.ip_tokens.state()),
            budgets: own(self.budgets.state()),
            safety_policies: own(self.safety_policies.state()),
        }
    }
}

impl ResourceWriters {
    /// Puts `objects` in the stores and marks them complete (tests, benchmarks).
    pub fn fill(&mut self, resources: ClusterResources) {
        fn load<K: Resource<DynamicType = ()> + Clone>(w: &mut reflector::store::Writer<K>, objects: Vec<K>) {
            w.apply_watcher_event(&watcher::Event::Init);
            for o in objects {
                w.apply_watcher_event(&watcher::Event::InitApply(o));
            }
            w.apply_watcher_event(&watcher::Event::InitDone);
        }
        load(&mut self.ip_tokens, resources.ip_tokens);
        load(&mut self.budgets, resources.budgets);
        load(&mut self.safety_policies, resources.safety_policies);
    }
}

/// What every controller shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events (one recorder: it deduplicates repeated events into series).
    pub recorder: Recorder,
    /// Reconcile metrics.
    pub metrics: Metrics,
    /// The gateway image when a DataPlane names none (the operator's own release).
    pub gateway_image: String,
    /// IPTokens, Budgets and SafetyPolicies.
    pub resources: ResourceStores,
    /// The usage ledger (Budget status) — the database the gateways write.
    pub ledger: Option<Ledger>,
    /// Issues and revokes the agents' virtual keys in that same database.
    pub keys: Option<KeyService>,
    /// Shared budget counters (Redis), for `status.reserved`; `None`: per-gateway memory,
    /// which the operator cannot see.
    pub counters: Option<CounterStore>,
    /// What the last compile means for each resource; the status controllers follow it.
    pub outcome: watch::Sender<Arc<ConfigOutcome>>,
    /// Bumped on every change that may alter the configuration (a resource or a Secret).
    pub changes: watch::Sender<u64>,
    /// The control plane's in-process gateway (its admin API reads budgets from it); gets
    /// every published configuration.
    pub control_plane: Option<Gateway>,
}

impl Context {
    /// A context with the given client and stores; the rest empty.
    pub fn new(client: Client, gateway_image: String, resources: ResourceStores) -> Self {
        let reporter = Reporter {
            controller: MANAGED_BY.to_owned(),
            instance: std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics: Metrics::new(),
            gateway_image,
            resources,
            ledger: None,
            keys: None,
            counters: None,
            outcome: watch::Sender::new(Arc::new(ConfigOutcome::default())),
            changes: watch::Sender::new(0),
            control_plane: None,
        }
    }

    /// Publishes an Event about `regarding`. Failures are logged, never fatal: an Event is
    /// a courtesy, the status is the record.
    pub async fn event(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_owned(),
            note: Some(note.chars().take(1000).collect()),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, regarding).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }

    /// Events for the conditions whose status or reason changed from `before` to `after`:
    /// one per new (status, reason) pair, so `Accepted=False` and `Ready=False` for the same
    /// missing Secret make one Event. `Warning` for a problem, `Normal` for progress.
    pub async fn condition_events(
        &self,
        regarding: &ObjectReference,
        before: &[Condition],
        after: &[Condition],
    ) {
        let mut told: Vec<(&str, &str)> = Vec::new();
        for c in after {
            let old = before.iter().find(|o| o.type_ == c.type_);
            if old.is_some_and(|o| o.status == c.status && o.reason == c.reason) {
                continue;
            }
            // The first `True` of a condition nobody has seen before is not news; a problem is.
            if old.is_none() && c.status == "True" {
                continue;
            }
            if told.contains(&(c.status.as_str(), c.reason.as_str())) {
                continue;
            }
            told.push((c.status.as_str(), c.reason.as_str()));
            let warning = c.status != "True" && c.reason != tollgate_crds::status::reason::PENDING;
            let note =
                if c.message.is_empty() { format!("{} is {}", c.type_, c.status) } else { c.message.clone() };
            self.event(regarding, warning, &c.reason, &c.type_, note).await;
        }
    }
}

/// Now, as a condition timestamp.
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Now in epoch milliseconds.
pub fn now_ms() -> i64 {
    tollgate_dataplane::now_ms()
}

/// Applies `obj` (server-side apply, forced: the operator owns what it declares).
/// Returns the object as stored, status included.
pub async fn apply<K>(client: &Client, manager: &str, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let ns = obj.meta().namespace.as_deref().unwrap_or("default");
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.name_any();
    Ok(api.patch(&name, &PatchParams::apply(manager).force(), &Patch::Apply(obj)).await?)
}

/// Deletes the children of `owner` of kind `K` and `component` that are not in `keep`:
/// listed by the instance labels, and deleted only if `owner` controls them (a user's
/// object with look-alike labels is never touched). Returns the names deleted.
pub async fn prune<K>(
    client: &Client,
    owner: &Owner,
    component: Component,
    keep: &[&str],
) -> Result<Vec<String>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), &owner.namespace);
    let selector = format!(
        "app.kubernetes.io/name={},app.kubernetes.io/instance={},app.kubernetes.io/managed-by={MANAGED_BY}",
        component.app_name(),
        owner.name
    );
    let mut deleted = Vec::new();
    for child in api.list(&ListParams::default().labels(&selector)).await? {
        let name = child.name_any();
        let ours = child
            .owner_references()
            .iter()
            .any(|r| r.controller == Some(true) && r.uid == owner.reference.uid);
        if ours && !keep.contains(&name.as_str()) {
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => deleted.push(name),
                Err(kube_client::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(deleted)
}

/// Writes `after` as `obj`'s status when it differs from `before` (no write loops), with an
/// Event for each condition that changed. Returns whether it wrote.
pub async fn update_status<K, S>(ctx: &Context, manager: &str, obj: &K, before: &S, after: &S) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
    S: PartialEq + Serialize + tollgate_crds::status::HasConditions,
{
    if before == after {
        return Ok(false);
    }
    apply_status(&ctx.client, manager, obj, after).await?;
    ctx.condition_events(&obj.object_ref(&()), before.conditions(), after.conditions()).await;
    Ok(true)
}

/// Writes `status` with server-side apply on the status subresource of `obj`.
pub async fn apply_status<K>(client: &Client, manager: &str, obj: &K, status: &impl Serialize) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let ns = obj.meta().namespace.as_deref().unwrap_or("default");
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&obj.name_any(), &PatchParams::apply(manager).force(), &Patch::Apply(&body)).await?;
    Ok(())
}

/// Reads a Secret's data; `None` when it does not exist.
pub async fn read_secret(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get_opt(name).await?;
    Ok(secret.map(|s| s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect()))
}

/// The error policy every controller shares: log, count, retry later.
pub fn requeue_on_error(
    controller: &'static str,
    ctx: &Context,
    error: &Error,
) -> kube_runtime::controller::Action {
    tracing::warn!(controller, error = %error, label = error.metric_label(), "reconcile failed; retrying");
    ctx.metrics.failed(controller, error);
    kube_runtime::controller::Action::requeue(ERROR_REQUEUE)
}

/// Runs `reconcile` and records its duration and result.
pub async fn measured<F>(
    controller: &'static str,
    ctx: &Context,
    reconcile: F,
) -> Result<kube_runtime::controller::Action>
where
    F: std::future::Future<Output = Result<kube_runtime::controller::Action>>,
{
    let started = Instant::now();
    let result = reconcile.await;
    ctx.metrics.reconciled(controller, result.is_ok(), started.elapsed());
    result
}

/// Logs each reconcile outcome of a controller's stream until it ends.
pub async fn drain<S, T, E>(controller: &'static str, stream: S)
where
    S: Stream<Item = std::result::Result<T, E>>,
    T: Debug,
    E: std::fmt::Display,
{
    stream
        .for_each(|r| async move {
            match r {
                Ok(o) => tracing::debug!(controller, object = ?o, "reconciled"),
                Err(e) => tracing::debug!(controller, error = %e, "reconcile not run"),
            }
        })
        .await;
}

/// A stream that yields once per change of `rx` (and once at the start).
pub fn on_change<T: Clone + Send + Sync + 'static>(rx: watch::Receiver<T>) -> impl Stream<Item = ()> + Send {
    futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if first {
            return Some(((), (rx, false)));
        }
        rx.changed().await.ok().map(|()| ((), (rx, false)))
    })
}

/// Mirrors IPTokens, Budgets, SafetyPolicies and the Secrets the tokens reference; bumps
/// `ctx.changes` on every change. Resolves once the three stores have their first full list.
pub async fn start_reflectors(ctx: Arc<Context>, writers: ResourceWriters) -> Result<()> {
    fn mirror<K>(
        client: &Client,
        writer: reflector::store::Writer<K>,
        changes: watch::Sender<u64>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + DeserializeOwned + 'static,
    {
        let api: Api<K> = Api::all(client.clone());
        let stream =
            watcher(api, watcher::Config::default()).default_backoff().reflect(writer).touched_objects();
        async move {
            stream
                .for_each(|r| {
                    if let Err(e) = r {
                        tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                    } else {
                        changes.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    futures::future::ready(())
                })
                .await;
        }
    }
    use kube_runtime::watcher::watcher;
    tokio::spawn(mirror(&ctx.client, writers.ip_tokens, ctx.changes.clone()));
    tokio::spawn(mirror(&ctx.client, writers.budgets, ctx.changes.clone()));
    tokio::spawn(mirror(&ctx.client, writers.safety_policies, ctx.changes.clone()));

    // Secrets: metadata only (never every key in the cluster in memory), and only those an
    // IP token names trigger anything.
    let secrets: Api<PartialObjectMeta<Secret>> = Api::all(ctx.client.clone());
    let tokens = ctx.resources.ip_tokens.clone();
    let changes = ctx.changes.clone();
    let stream = watcher(secrets, watcher::Config::default()).default_backoff().touched_objects();
    tokio::spawn(async move {
        stream
            .for_each(|r| {
                match r {
                    Ok(meta) => {
                        let (ns, name) = (meta.namespace(), meta.name_any());
                        let named = tokens.state().iter().any(|t| {
                            t.namespace() == ns && t.spec.secret_ref.as_ref().is_some_and(|r| r.name == name)
                        });
                        if named {
                            changes.send_modify(|n| *n = n.wrapping_add(1));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "Secret watch failed; retrying"),
                }
                futures::future::ready(())
            })
            .await;
    });

    let r = &ctx.resources;
    // NB: compiling before every store has its first full list would publish a
    // configuration missing whatever was not listed yet.
    let stopped = |_| Error::Stopped("a resource mirror");
    r.ip_tokens.wait_until_ready().await.map_err(stopped)?;
    r.budgets.wait_until_ready().await.map_err(stopped)?;
    r.safety_policies.wait_until_ready().await.map_err(stopped)?;
    Ok(())
}

/// Runs every controller until one stops (which happens only at shutdown).
pub async fn run(ctx: Arc<Context>, writers: ResourceWriters) -> Result<()> {
    start_reflectors(ctx.clone(), writers).await?;
    tracing::info!("resource mirrors ready; starting controllers");
    tokio::select! {
        () = dataplane::run(ctx.clone()) => {},
        () = resources::run_ip_tokens(ctx.clone()) => {},
        () = resources::run_safety_policies(ctx.clone()) => {},
        () = budget::run(ctx.clone()) => {},
        () = agent::run(ctx.clone()) => {},
        () = sandbox::run(ctx.clone()) => {},
    }
    Ok(())
}
