#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The controllers against a scripted Kubernetes API (kube-rs's tower-test scenario
//! pattern): each test runs one reconcile and answers the exact requests it must make, in
//! order, with canned responses; a request that never comes fails after a timeout, and one
//! that differs from the script fails at once. The database is a real SQLite file.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube_client::Client;
use kube_client::client::Body;
use kube_runtime::controller::Action;
use serde_json::{Value, json};
use tollgate_crds::safety::SafetyPolicy;
use tollgate_crds::{Agent, Budget, DataPlane, IpToken, Sandbox};
use tollgate_dataplane::auth::{KeyService, Principal, PrincipalKind, Role, hash_key};
use tollgate_dataplane::now_ms;
use tollgate_dataplane::store::Store;
use tollgate_dataplane::usage::{Charge, UsageRecord};
use tollgate_operator::controllers::configuration::{ClusterResources, ConfigOutcome, compile_cluster};
use tollgate_operator::controllers::gateway_config::SecretData;
use tollgate_operator::controllers::reconcilers::{
    Context, ResourceStores, agent, budget, dataplane, resources, sandbox,
};
use tower_test::mock::{Handle, SendResponse};

const TIMEOUT: Duration = Duration::from_secs(5);
const NS: &str = "tollgate-system";

type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// The scripted API server.
struct ApiServer(ApiHandle);

/// One request, waiting for its answer.
struct Exchange {
    method: String,
    path: String,
    query: String,
    body: Value,
    send: SendResponse<Response<Body>>,
}

impl Exchange {
    fn reply(self, code: u16, body: Value) {
        let response =
            Response::builder().status(code).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap();
        self.send.send_response(response);
    }

    /// Answers with the request's own object, as the API server does for an apply.
    fn echo(self) {
        let mut body = self.body.clone();
        if !body["metadata"].is_object() {
            // A status apply carries no metadata; the API server answers with the object.
            let name = self.path.trim_end_matches("/status").rsplit('/').next().unwrap_or("x").to_owned();
            body["metadata"] = json!({"name": name});
        }
        if body["metadata"].get("uid").is_none() {
            body["metadata"]["uid"] = json!("child-uid");
        }
        self.reply(200, body);
    }

    /// Answers a status apply with `object` carrying the applied status, as the API server
    /// answers with the whole object.
    fn echo_onto<K: serde::Serialize>(self, object: &K) {
        let mut whole = serde_json::to_value(object).unwrap();
        whole["status"] = self.body["status"].clone();
        self.reply(200, whole);
    }

    fn not_found(self) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "not found", "reason": "NotFound", "code": 404});
        self.reply(404, status);
    }

    /// Asserts a server-side apply by `controller`'s field manager, forced.
    fn assert_applied_by(&self, controller: &str) {
        assert_eq!(self.method, "PATCH", "{}", self.path);
        assert!(
            self.query.contains(&format!("fieldManager=tollgate-operator%2F{controller}")),
            "{} {}",
            self.path,
            self.query
        );
        assert!(self.query.contains("force=true"), "{}", self.query);
    }

    /// Asserts the one controller owner reference every child carries.
    fn assert_owned_by(&self, uid: &str) {
        let refs = self.body["metadata"]["ownerReferences"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no owner", self.path));
        assert_eq!(refs.len(), 1, "{}", self.path);
        assert_eq!(refs[0]["uid"], uid, "{}", self.path);
        assert_eq!(refs[0]["controller"], true, "{}", self.path);
        assert_eq!(self.body["metadata"]["labels"]["app.kubernetes.io/managed-by"], "tollgate-operator");
    }
}

impl ApiServer {
    /// The next request, which must be `method path`.
    async fn expect(&mut self, method: &str, path: &str) -> Exchange {
        let next = tokio::time::timeout(TIMEOUT, self.0.next_request()).await;
        let (request, send) = next
            .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"))
            .unwrap_or_else(|| panic!("the client went away before {method} {path}"));
        let (method_got, path_got) = (request.method().to_string(), request.uri().path().to_owned());
        let query = request.uri().query().unwrap_or("").to_owned();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        assert_eq!(
            (method_got.as_str(), path_got.as_str()),
            (method, path),
            "unexpected request; body {body}"
        );
        Exchange { method: method_got, path: path_got, query, body, send }
    }

    /// Expects an apply of `path` by `controller`, owned by `uid`; echoes it.
    async fn apply(&mut self, path: &str, controller: &str, uid: &str) -> Value {
        let e = self.expect("PATCH", path).await;
        e.assert_applied_by(controller);
        e.assert_owned_by(uid);
        let body = e.body.clone();
        e.echo();
        body
    }

    /// Expects an Event about an object; returns (type, reason).
    async fn event(&mut self, namespace: &str) -> (String, String, String) {
        let next = tokio::time::timeout(TIMEOUT, self.0.next_request()).await;
        let (request, send) =
            next.expect("timed out waiting for an Event").expect("the client went away before an Event");
        // POST a new Event, or PATCH the series of one the recorder published before.
        let (method, path) = (request.method().to_string(), request.uri().path().to_owned());
        assert!(
            path.starts_with(&format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events")),
            "{method} {path}"
        );
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        let e = Exchange { method, path, query: String::new(), body, send };
        let out = (
            e.body["type"].as_str().unwrap().to_owned(),
            e.body["reason"].as_str().unwrap().to_owned(),
            e.body["note"].as_str().unwrap_or("").to_owned(),
        );
        e.echo();
        out
    }

    /// Expects nothing more.
    async fn done(&mut self) {
        if let Ok(Some((request, _))) =
            tokio::time::timeout(Duration::from_millis(100), self.0.next_request()).await
        {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

fn mock_api() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer(handle))
}

async fn ledger(dir: &tempfile::TempDir) -> (Store, KeyService) {
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
    let keys = KeyService::load(store.clone()).await.unwrap();
    (store, keys)
}

fn obj<K: serde::de::DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap()
}

fn meta(name: &str, namespace: &str, uid: &str) -> Value {
    json!({"name": name, "namespace": namespace, "uid": uid, "generation": 1, "resourceVersion": "1"})
}

fn mock_token() -> IpToken {
    obj(
        json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "IPToken", "metadata": meta("mock", "ai", "tok-uid"),
        "spec": {"provider": "mock", "models": [{"name": "mock-1"}]}}),
    )
}

fn openai_token() -> IpToken {
    obj(
        json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "IPToken", "metadata": meta("openai", "ai", "oai-uid"),
        "spec": {"provider": "openai", "secretRef": {"name": "openai", "key": "key"}, "models": [{"name": "gpt-4o"}]}}),
    )
}

fn team_budget(limit: &str) -> Budget {
    obj(
        json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "Budget", "metadata": meta("team", "ai", "bud-uid"),
        "spec": {"subject": {"kind": "team", "name": "support"}, "limit": limit, "period": "daily"}}),
    )
}

fn broken_policy() -> SafetyPolicy {
    obj(
        json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "SafetyPolicy", "metadata": meta("strict", "ai", "sp-uid"),
        "spec": {"input": {"custom": {"regex": [{"id": "broken", "pattern": "([a-z", "action": "block"}]}}}}),
    )
}

fn gateway() -> DataPlane {
    obj(
        json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "DataPlane", "metadata": meta("gateway", NS, "dp-uid"),
        "spec": {"replicas": {"min": 1, "max": 1}, "cache": {"type": "memory"}, "database": {"type": "sqlite"}}}),
    )
}

fn context(client: Client, r: ClusterResources) -> Context {
    let (stores, mut writers) = ResourceStores::new();
    writers.fill(r);
    // NB: the writers' stores stay readable after the writers are dropped.
    Context::new(client, "ghcr.io/tollgate-dev/tollgate:test".into(), stores)
}

fn secret(name: &str, namespace: &str, key: &str, value: &str) -> Value {
    use base64::Engine;
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace, "uid": "s-uid"},
        "data": {key: base64::engine::general_purpose::STANDARD.encode(value)}})
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or(&Value::Null)
}

const CORE: &str = "/api/v1/namespaces/tollgate-system";

/// A DataPlane's first reconcile: the configuration is compiled from every resource and
/// published (keys in the Secret, never in the ConfigMap), every child is applied with the
/// controller's field manager and an owner reference, the orphaned HPA it owns is pruned
/// (a look-alike it does not own is left alone), and the status says what happened.
#[tokio::test]
async fn dataplane_create_publishes_configuration_applies_children_and_prunes_orphans() {
    let (client, mut api) = mock_api();
    let resources = ClusterResources {
        ip_tokens: vec![mock_token(), openai_token()],
        budgets: vec![team_budget("10")],
        ..Default::default()
    };
    let ctx = Arc::new(context(client, resources));
    let task = tokio::spawn(dataplane::reconcile(Arc::new(gateway()), ctx.clone()));

    api.expect("GET", "/api/v1/namespaces/ai/secrets/openai")
        .await
        .reply(200, secret("openai", "ai", "key", "sk-live-123\n"));
    let keys = api.apply(&format!("{CORE}/secrets/gateway-provider-keys"), "dataplane", "dp-uid").await;
    let keys_hash =
        keys["metadata"]["annotations"]["tollgate.dev/provider-keys-hash"].as_str().unwrap().to_owned();
    let map = api.apply(&format!("{CORE}/configmaps/gateway-config"), "dataplane", "dp-uid").await;
    let config = map["data"]["config.json"].as_str().unwrap();
    assert!(!config.contains("sk-live-123"), "a provider key in the ConfigMap");
    assert!(
        config.contains("\"ai/team\"") && config.contains("\"ai/openai\"") && config.contains("\"ai/mock\"")
    );
    let version = map["metadata"]["annotations"]["tollgate.dev/config-version"].as_str().unwrap().to_owned();
    assert_eq!(version.len(), 64);
    api.apply(&format!("{CORE}/serviceaccounts/gateway"), "dataplane", "dp-uid").await;
    api.apply(
        "/apis/rbac.authorization.k8s.io/v1/namespaces/tollgate-system/roles/gateway",
        "dataplane",
        "dp-uid",
    )
    .await;
    api.apply(
        "/apis/rbac.authorization.k8s.io/v1/namespaces/tollgate-system/rolebindings/gateway",
        "dataplane",
        "dp-uid",
    )
    .await;
    let deployment = api
        .apply("/apis/apps/v1/namespaces/tollgate-system/deployments/gateway", "dataplane", "dp-uid")
        .await;
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["tollgate.dev/provider-keys-hash"],
        keys_hash,
        "a key rotation must roll the gateways"
    );
    api.apply(&format!("{CORE}/services/gateway"), "dataplane", "dp-uid").await;

    // min == max: no HPA wanted; the one left from when it autoscaled is pruned.
    let list =
        api.expect("GET", "/apis/autoscaling/v2/namespaces/tollgate-system/horizontalpodautoscalers").await;
    assert!(list.query.contains("app.kubernetes.io%2Finstance%3Dgateway"), "{}", list.query);
    let hpa = |name: &str, owner: &str| {
        json!({"metadata": {"name": name, "namespace": NS, "ownerReferences": [{"apiVersion": "tollgate.dev/v1alpha1",
            "kind": "DataPlane", "name": "gateway", "uid": owner, "controller": true}]},
            "spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": name}}})
    };
    list.reply(
        200,
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscalerList", "metadata": {},
        "items": [hpa("gateway", "dp-uid"), hpa("someone-elses", "other-uid")]}),
    );
    api.expect("DELETE", "/apis/autoscaling/v2/namespaces/tollgate-system/horizontalpodautoscalers/gateway")
        .await
        .reply(
            200,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200}),
        );
    api.apply(
        "/apis/policy/v1/namespaces/tollgate-system/poddisruptionbudgets/gateway",
        "dataplane",
        "dp-uid",
    )
    .await;

    let status = api
        .expect("PATCH", "/apis/tollgate.dev/v1alpha1/namespaces/tollgate-system/dataplanes/gateway/status")
        .await;
    status.assert_applied_by("dataplane");
    assert_eq!(status.body["status"]["configHash"], version);
    assert_eq!(status.body["status"]["observedGeneration"], 1);
    assert_eq!(condition(&status.body, "Programmed")["status"], "True");
    assert_eq!(condition(&status.body, "Accepted")["status"], "True");
    assert_eq!(condition(&status.body, "Ready")["reason"], "Pending");
    status.echo_onto(&gateway());
    let (kind, reason, _) = api.event(NS).await;
    assert_eq!((kind.as_str(), reason.as_str()), ("Normal", "Pending"));
    let action = tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap().unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    api.done().await;

    let outcome = ctx.outcome.borrow().clone();
    assert_eq!(outcome.published.as_deref(), Some(version.as_str()));
    assert!(outcome.included.contains("Budget/ai/team"));
}

/// Answers every request of a reconcile generically (GETs 404, lists empty, applies
/// echoed) and returns them all.
async fn answer_all(
    api: &mut ApiServer,
    task: tokio::task::JoinHandle<tollgate_operator::error::Result<Action>>,
) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    let mut task = task;
    loop {
        tokio::select! {
            done = &mut task => {
                done.unwrap().unwrap();
                return seen;
            }
            next = api.0.next_request() => {
                let Some((request, send)) = next else {
                    // The reconcile finished and dropped its client.
                    (&mut task).await.unwrap().unwrap();
                    return seen;
                };
                let (method, path) = (request.method().to_string(), request.uri().path().to_owned());
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
                seen.push((format!("{method} {path}"), body.clone()));
                let e = Exchange { method: method.clone(), path: path.clone(), query: String::new(), body, send };
                match method.as_str() {
                    "PATCH" if path.ends_with("/status") => e.echo_onto(&gateway()),
                    "GET" if path.ends_with("horizontalpodautoscalers") => {
                        e.reply(200, json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscalerList", "metadata": {}, "items": []}))
                    }
                    "GET" => e.not_found(),
                    _ => e.echo(),
                }
            }
        }
    }
}

/// A Budget update is published as a new configuration version with the new limit.
#[tokio::test]
async fn dataplane_update_publishes_a_new_version() {
    // The gateways sharing the ledger get each version from it too (read every second).
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = ledger(&dir).await;
    let mut versions = Vec::new();
    for limit in ["10", "25.5"] {
        let (client, mut api) = mock_api();
        let resources = ClusterResources {
            ip_tokens: vec![mock_token()],
            budgets: vec![team_budget(limit)],
            ..Default::default()
        };
        let mut ctx = context(client, resources);
        ctx.ledger = Some(store.clone());
        let task = tokio::spawn(dataplane::reconcile(Arc::new(gateway()), Arc::new(ctx)));
        let seen = answer_all(&mut api, task).await;
        let (_, map) = seen.iter().find(|(r, _)| r.ends_with("/configmaps/gateway-config")).unwrap();
        let json = map["data"]["config.json"].as_str().unwrap();
        let config: Value = serde_json::from_str(json).unwrap();
        let version = map["metadata"]["annotations"]["tollgate.dev/config-version"].clone();
        let (hash, published) = store.published_config().await.unwrap().expect("published to the ledger");
        assert_eq!((Value::String(hash.clone()), published.as_str()), (version.clone(), json));
        tollgate_dataplane::config_sync::verify(&hash, &published).expect("a whole document");
        versions.push((version, config["budgets"][0]["limitMicros"].clone()));
    }
    assert_ne!(versions[0].0, versions[1].0);
    assert_eq!(versions[0].1, 10_000_000);
    assert_eq!(versions[1].1, 25_500_000);
}

/// An invalid SafetyPolicy: nothing new is published — no write to the ConfigMap at all,
/// the version in force is read back and kept — and the status says which resource is wrong
/// and which configuration stays; the workload is still applied with the key hash in force.
#[tokio::test]
async fn an_invalid_safety_policy_keeps_the_previous_configuration() {
    let (client, mut api) = mock_api();
    let resources = ClusterResources {
        ip_tokens: vec![mock_token()],
        safety_policies: vec![broken_policy()],
        ..Default::default()
    };
    let ctx = Arc::new(context(client, resources));
    let task = tokio::spawn(dataplane::reconcile(Arc::new(gateway()), ctx.clone()));

    let previous = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    api.expect("GET", &format!("{CORE}/configmaps/gateway-config")).await.reply(
        200,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gateway-config", "namespace": NS,
            "annotations": {"tollgate.dev/config-version": previous}}, "data": {"config.json": "{}"}}),
    );
    api.expect("GET", &format!("{CORE}/secrets/gateway-provider-keys")).await.reply(
        200,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gateway-provider-keys", "namespace": NS,
            "annotations": {"tollgate.dev/provider-keys-hash": "keys-in-force"}}}),
    );
    api.apply(&format!("{CORE}/serviceaccounts/gateway"), "dataplane", "dp-uid").await;
    api.apply(
        "/apis/rbac.authorization.k8s.io/v1/namespaces/tollgate-system/roles/gateway",
        "dataplane",
        "dp-uid",
    )
    .await;
    api.apply(
        "/apis/rbac.authorization.k8s.io/v1/namespaces/tollgate-system/rolebindings/gateway",
        "dataplane",
        "dp-uid",
    )
    .await;
    let deployment = api
        .apply("/apis/apps/v1/namespaces/tollgate-system/deployments/gateway", "dataplane", "dp-uid")
        .await;
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["tollgate.dev/provider-keys-hash"],
        "keys-in-force"
    );
    api.apply(&format!("{CORE}/services/gateway"), "dataplane", "dp-uid").await;
    api.expect("GET", "/apis/autoscaling/v2/namespaces/tollgate-system/horizontalpodautoscalers")
        .await
        .reply(200, json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscalerList", "metadata": {}, "items": []}));
    api.apply(
        "/apis/policy/v1/namespaces/tollgate-system/poddisruptionbudgets/gateway",
        "dataplane",
        "dp-uid",
    )
    .await;
    let status = api
        .expect("PATCH", "/apis/tollgate.dev/v1alpha1/namespaces/tollgate-system/dataplanes/gateway/status")
        .await;
    assert_eq!(status.body["status"]["configHash"], previous);
    let programmed = condition(&status.body, "Programmed");
    assert_eq!(programmed["status"], "False");
    assert_eq!(programmed["reason"], "InvalidPattern");
    let message = programmed["message"].as_str().unwrap();
    assert!(
        message.contains("SafetyPolicy/ai/strict") && message.contains("0123456789ab stays in force"),
        "{message}"
    );
    status.echo_onto(&gateway());
    assert_eq!(api.event(NS).await.1, "InvalidPattern");
    assert_eq!(api.event(NS).await.1, "Pending");
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap().unwrap();
    api.done().await;

    // The SafetyPolicy's own status names the bad pattern.
    let (client, mut api) = mock_api();
    let pctx = context(client, ClusterResources::default());
    let compiled = compile_cluster(
        &ClusterResources { safety_policies: vec![broken_policy()], ..Default::default() },
        &SecretData::new(),
    );
    pctx.outcome.send_replace(Arc::new(ConfigOutcome::of(&compiled, Some(previous.into()))));
    let task = tokio::spawn(resources::reconcile_safety_policy(Arc::new(broken_policy()), Arc::new(pctx)));
    let status =
        api.expect("PATCH", "/apis/tollgate.dev/v1alpha1/namespaces/ai/safetypolicies/strict/status").await;
    status.assert_applied_by("safetypolicy");
    let accepted = condition(&status.body, "Accepted");
    assert_eq!(accepted["reason"], "InvalidPattern");
    assert!(
        accepted["message"].as_str().unwrap().contains("spec.input.custom.regex[0].pattern"),
        "{accepted}"
    );
    assert_eq!(condition(&status.body, "Ready")["status"], "False");
    status.echo_onto(&broken_policy());
    let (kind, reason, _) = api.event("ai").await;
    assert_eq!((kind.as_str(), reason.as_str()), ("Warning", "InvalidPattern"));
    assert_eq!(api.event("ai").await.1, "InvalidSpec", "Programmed=False: left out");
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap().unwrap();
    api.done().await;
}

/// An IPToken whose Secret does not exist: `Accepted=False` with `SecretNotFound`, one
/// Warning event; once the Secret exists, `Accepted=True` and `secretHash` — never the key.
#[tokio::test]
async fn ip_token_without_its_secret_is_not_accepted() {
    let (client, mut api) = mock_api();
    let ctx = Arc::new(context(client, ClusterResources::default()));
    let task = tokio::spawn(resources::reconcile_ip_token(Arc::new(openai_token()), ctx.clone()));
    api.expect("GET", "/api/v1/namespaces/ai/secrets/openai").await.not_found();
    let status =
        api.expect("PATCH", "/apis/tollgate.dev/v1alpha1/namespaces/ai/iptokens/openai/status").await;
    status.assert_applied_by("iptoken");
    let accepted = condition(&status.body, "Accepted");
    assert_eq!(
        (accepted["status"].as_str(), accepted["reason"].as_str()),
        (Some("False"), Some("SecretNotFound"))
    );
    assert!(accepted["message"].as_str().unwrap().contains("Secret ai/openai not found"));
    assert_eq!(condition(&status.body, "Ready")["reason"], "SecretNotFound");
    assert!(status.body["status"].get("secretHash").is_none());
    status.echo_onto(&openai_token());
    let (kind, reason, _) = api.event("ai").await;
    assert_eq!((kind.as_str(), reason.as_str()), ("Warning", "SecretNotFound"));
    assert_eq!(api.event("ai").await.1, "Pending", "Programmed: no DataPlane yet");
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap().unwrap();
    api.done().await;

    // The Secret appears.
    let token = openai_token();
    let task = tokio::spawn(resources::reconcile_ip_token(Arc::new(token), ctx));
    api.expect("GET", "/api/v1/namespaces/ai/secrets/openai")
        .await
        .reply(200, secret("openai", "ai", "key", "sk-live-123"));
    let status =
        api.expect("PATCH", "/apis/tollgate.dev/v1alpha1/namespaces/ai/iptokens/openai/status").await;
    assert_eq!(condition(&status.body, "Accepted")["status"], "True");
    let hash = status.body["status"]["secretHash"].as_str().unwrap();
    assert_eq!(hash.len(), 16);
    assert!(!status.body.to_string().contains("sk-live-123"));
    status.echo_onto(&openai_token());
    assert_eq!(api.event("ai").await.1, "Pending");
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap().unwrap();
    api.done().await;
}

fn agent(finalizers: &[&str], deleting: bool) -> Agent {
    let mut m = meta("support-bot", "ai", "agent-uid");
    m["finalizers"] = json!(finalizers);
    if deleting {
        m["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    obj(json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "Agent", "metadata": m, "spec": {
        "image": "curlimages/curl:8.11.1",
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
        "replicas": {"min": 1, "max": 3},
        "budgetRef": {"name": "support-bot"}, "safetyPolicyRef": {"name": "support-baseline"},
        "allowedModels": ["mock-1"]}}))
}

/// An Agent: the finalizer is added first; then a virtual key is issued into the database
/// the gateways read and into the child Secret (never elsewhere), the children applied
/// with owner references, and a missing SafetyPolicy reported.
#[tokio::test]
async fn agent_gets_a_finalizer_and_a_fresh_virtual_key() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = ledger(&dir).await;
    let (client, mut api) = mock_api();
    let mut ctx = context(client, ClusterResources::default());
    ctx.ledger = Some(store.clone());
    ctx.keys = Some(keys);
    let ctx = Arc::new(ctx);

    let task = tokio::spawn(agent::reconcile(Arc::new(agent(&[], false)), ctx.clone()));
    let patch = api.expect("PATCH", "/apis/tollgate.dev/v1alpha1/namespaces/ai/agents/support-bot").await;
    assert_eq!(patch.body[1]["op"], "add");
    assert_eq!(patch.body[1]["value"], json!(["tollgate.dev/virtual-key"]));
    let mut finalized = serde_json::to_value(agent(&["tollgate.dev/virtual-key"], false)).unwrap();
    finalized["metadata"]["resourceVersion"] = json!("2");
    patch.reply(200, finalized);
    assert_eq!(tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap().unwrap(), Action::await_change());

    let task =
        tokio::spawn(agent::reconcile(Arc::new(agent(&["tollgate.dev/virtual-key"], false)), ctx.clone()));
    api.expect("GET", "/apis/tollgate.dev/v1alpha1/namespaces/ai/budgets/support-bot").await.reply(
        200,
        json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "Budget", "metadata": meta("support-bot", "ai", "b"),
            "spec": {"subject": {"kind": "agent", "name": "support-bot"}, "limit": "5", "period": "daily", "onExhausted": "suspend-agents"}}),
    );
    api.expect("GET", "/apis/tollgate.dev/v1alpha1/namespaces/ai/safetypolicies/support-baseline")
        .await
        .not_found();
    api.expect("GET", "/api/v1/namespaces/ai/secrets/support-bot-virtual-key").await.not_found();
    api.apply("/api/v1/namespaces/ai/serviceaccounts/support-bot", "agent", "agent-uid").await;
    let secret =
        api.apply("/api/v1/namespaces/ai/secrets/support-bot-virtual-key", "agent", "agent-uid").await;
    let key = {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD
            .decode(secret["data"]["api-key"].as_str().unwrap())
            .unwrap();
        String::from_utf8(b).unwrap()
    };
    let record =
        store.find_key_by_hash(&hash_key(&key)).await.unwrap().expect("the key is in the gateways' database");
    assert_eq!(record.principal.kind, PrincipalKind::Agent);
    assert_eq!(record.principal.name, "support-bot");
    assert_eq!(record.name, "agent:ai/support-bot");
    assert_eq!(record.allowed_models, vec!["mock-1".to_owned()]);
    let deployment =
        api.apply("/apis/apps/v1/namespaces/ai/deployments/support-bot", "agent", "agent-uid").await;
    assert!(!deployment.to_string().contains(&key), "the key reaches pods through secretKeyRef only");
    api.apply(
        "/apis/autoscaling/v2/namespaces/ai/horizontalpodautoscalers/support-bot",
        "agent",
        "agent-uid",
    )
    .await;
    api.apply("/apis/networking.k8s.io/v1/namespaces/ai/networkpolicies/support-bot", "agent", "agent-uid")
        .await;
    let status =
        api.expect("PATCH", "/apis/tollgate.dev/v1alpha1/namespaces/ai/agents/support-bot/status").await;
    assert_eq!(condition(&status.body, "Accepted")["reason"], "ReferenceNotFound");
    assert_eq!(status.body["status"]["keySecretName"], "support-bot-virtual-key");
    assert_eq!(status.body["status"]["suspended"], false);
    assert!(!status.body.to_string().contains(&key));
    status.echo_onto(&agent(&["tollgate.dev/virtual-key"], false));
    assert_eq!(api.event("ai").await.1, "ReferenceNotFound");
    assert_eq!(api.event("ai").await.1, "Pending");
    let (_, reason, note) = api.event("ai").await;
    assert_eq!(reason, "VirtualKeyIssued");
    assert!(!note.contains(&key));
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap().unwrap();
    api.done().await;
}

/// A Budget with `suspend-agents` at its limit scales its agent to zero and drops the HPA;
/// the key the agent holds is reused.
#[tokio::test]
async fn an_exhausted_budget_suspends_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = ledger(&dir).await;
    let principal = Principal {
        kind: PrincipalKind::Agent,
        name: "support-bot".into(),
        role: Role::Developer,
        team: None,
    };
    let held = keys
        .create("agent:ai/support-bot".into(), principal, vec!["mock-1".into()], None, now_ms())
        .await
        .unwrap();
    let (client, mut api) = mock_api();
    let mut ctx = context(client, ClusterResources::default());
    ctx.ledger = Some(store.clone());
    ctx.keys = Some(keys);
    let task =
        tokio::spawn(agent::reconcile(Arc::new(agent(&["tollgate.dev/virtual-key"], false)), Arc::new(ctx)));
    api.expect("GET", "/apis/tollgate.dev/v1alpha1/namespaces/ai/budgets/support-bot").await.reply(
        200,
        json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "Budget", "metadata": meta("support-bot", "ai", "b"),
            "spec": {"subject": {"kind": "agent", "name": "support-bot"}, "limit": "5", "period": "daily", "onExhausted": "suspend-agents"},
            "status": {"periodEnd": "2999-01-01T00:00:00Z", "conditions": [{"type": "Ready", "status": "False",
                "reason": "BudgetExhausted", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
    );
    api.expect("GET", "/apis/tollgate.dev/v1alpha1/namespaces/ai/safetypolicies/support-baseline").await.reply(
        200,
        json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "SafetyPolicy", "metadata": meta("support-baseline", "ai", "p"), "spec": {}}),
    );
    // The key it already holds is still valid: reused, not reissued.
    api.expect("GET", "/api/v1/namespaces/ai/secrets/support-bot-virtual-key")
        .await
        .reply(200, secret("support-bot-virtual-key", "ai", "api-key", &held.secret));
    api.apply("/api/v1/namespaces/ai/serviceaccounts/support-bot", "agent", "agent-uid").await;
    let applied =
        api.apply("/api/v1/namespaces/ai/secrets/support-bot-virtual-key", "agent", "agent-uid").await;
    assert_eq!(applied["data"]["api-key"], secret("x", "ai", "api-key", &held.secret)["data"]["api-key"]);
    let deployment =
        api.apply("/apis/apps/v1/namespaces/ai/deployments/support-bot", "agent", "agent-uid").await;
    assert_eq!(deployment["spec"]["replicas"], 0);
    api.expect("GET", "/apis/autoscaling/v2/namespaces/ai/horizontalpodautoscalers")
        .await
        .reply(200, json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscalerList", "metadata": {}, "items": []}));
    api.apply("/apis/networking.k8s.io/v1/namespaces/ai/networkpolicies/support-bot", "agent", "agent-uid")
        .await;
    let status =
        api.expect("PATCH", "/apis/tollgate.dev/v1alpha1/namespaces/ai/agents/support-bot/status").await;
    assert_eq!(condition(&status.body, "Ready")["reason"], "Suspended");
    assert_eq!(status.body["status"]["suspended"], true);
    status.echo_onto(&agent(&["tollgate.dev/virtual-key"], false));
    assert_eq!(
        api.event("ai").await,
        (
            "Warning".into(),
            "Suspended".into(),
            "budget exhausted: scaled to zero until 2999-01-01T00:00:00Z".into()
        )
    );
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap().unwrap();
    api.done().await;
    let active = store.list_keys().await.unwrap().into_iter().filter(|k| k.revoked_at_ms.is_none()).count();
    assert_eq!(active, 1, "no second key issued");
}

/// Deleting an Agent: the finalizer's cleanup revokes its keys in the database, then the
/// finalizer is removed.
#[tokio::test]
async fn deleting_an_agent_revokes_its_virtual_key() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = ledger(&dir).await;
    let principal = Principal {
        kind: PrincipalKind::Agent,
        name: "support-bot".into(),
        role: Role::Developer,
        team: None,
    };
    let issued =
        keys.create("agent:ai/support-bot".into(), principal.clone(), vec![], None, now_ms()).await.unwrap();
    let other = keys.create("agent:ai/other-bot".into(), principal, vec![], None, now_ms()).await.unwrap();
    let (client, mut api) = mock_api();
    let mut ctx = context(client, ClusterResources::default());
    ctx.ledger = Some(store.clone());
    ctx.keys = Some(keys);
    let task =
        tokio::spawn(agent::reconcile(Arc::new(agent(&["tollgate.dev/virtual-key"], true)), Arc::new(ctx)));
    let (_, reason, note) = api.event("ai").await;
    assert_eq!((reason.as_str(), note.as_str()), ("VirtualKeyRevoked", "1 virtual key(s) revoked"));
    let patch = api.expect("PATCH", "/apis/tollgate.dev/v1alpha1/namespaces/ai/agents/support-bot").await;
    assert_eq!(patch.body[1], json!({"op": "remove", "path": "/metadata/finalizers/0"}));
    patch.reply(200, serde_json::to_value(agent(&[], true)).unwrap());
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap().unwrap();
    api.done().await;

    let revoked = store.find_key_by_hash(&issued.record.hash).await.unwrap().unwrap();
    assert!(revoked.revoked_at_ms.is_some(), "the deleted agent's key still works");
    let untouched = store.find_key_by_hash(&other.record.hash).await.unwrap().unwrap();
    assert!(untouched.revoked_at_ms.is_none(), "another agent's key was revoked");
}

/// Budget status from the ledger: spent, remaining, the window, `BudgetExhausted`, and an
/// Event per alert threshold crossed.
#[tokio::test]
async fn budget_status_comes_from_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = ledger(&dir).await;
    let b: Budget = obj(
        json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "Budget", "metadata": meta("support-bot", "ai", "b"),
        "spec": {"subject": {"kind": "agent", "name": "support-bot"}, "limit": "5", "period": "daily", "alertThresholds": [50, 100]}}),
    );
    let config = tollgate_crds::compile(&[tollgate_crds::Resource::Budget(b.clone())]).unwrap();
    let window = tollgate_dataplane::budget::key_for(&config.budgets[0], now_ms()).window;
    let charge = |id: &str, micros: u64| UsageRecord {
        request_id: id.into(),
        ts_ms: now_ms(),
        status: 200,
        cost_micros: micros,
        charges: vec![Charge { budget_id: "ai/support-bot".into(), window_start_ms: window.start_ms }],
        ..UsageRecord::default()
    };
    store.insert_usage(&[charge("r1", 3_000_000), charge("r2", 2_500_000)]).await.unwrap();

    let (client, mut api) = mock_api();
    let mut ctx = context(client, ClusterResources::default());
    ctx.ledger = Some(store);
    let b_for_reply = b.clone();
    let task = tokio::spawn(budget::reconcile(Arc::new(b), Arc::new(ctx)));
    let status =
        api.expect("PATCH", "/apis/tollgate.dev/v1alpha1/namespaces/ai/budgets/support-bot/status").await;
    status.assert_applied_by("budget");
    let s = &status.body["status"];
    assert_eq!(s["spent"], tollgate_crds::money::format_usd(5_500_000));
    assert_eq!(s["remaining"], tollgate_crds::money::format_usd(0));
    assert!(s.get("reserved").is_none(), "per-gateway counters are not known to the operator");
    assert!(s["periodStart"].as_str().unwrap().ends_with('Z'));
    let ready = condition(&status.body, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("BudgetExhausted"))
    );
    status.echo_onto(&b_for_reply);
    assert_eq!(api.event("ai").await.1, "Pending");
    assert_eq!(api.event("ai").await.1, "BudgetExhausted");
    let thresholds: Vec<String> = vec![api.event("ai").await.2, api.event("ai").await.2];
    assert!(thresholds[0].starts_with("50% of the daily limit reached"), "{thresholds:?}");
    assert!(thresholds[1].starts_with("100% of the daily limit reached"), "{thresholds:?}");
    let action = tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap().unwrap();
    assert!(action != Action::await_change(), "spending is polled");
    api.done().await;
}

/// A Sandbox past its TTL is deleted; its finished pod is not applied again.
#[tokio::test]
async fn a_finished_sandbox_is_deleted_after_its_ttl() {
    let s: Sandbox = obj(
        json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "Sandbox", "metadata": meta("fib", "ai", "sb"),
        "spec": {"image": "python:3.12-slim", "timeoutSeconds": 60, "ttlSecondsAfterFinished": 600},
        "status": {"observedGeneration": 1, "phase": "Succeeded", "exitCode": 0, "finishTime": "2020-01-01T00:00:00Z"}}),
    );
    let (client, mut api) = mock_api();
    let task =
        tokio::spawn(sandbox::reconcile(Arc::new(s), Arc::new(context(client, ClusterResources::default()))));
    api.expect("DELETE", "/apis/tollgate.dev/v1alpha1/namespaces/ai/sandboxes/fib").await.reply(
        200,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200}),
    );
    assert_eq!(tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap().unwrap(), Action::await_change());
    api.done().await;
}

/// A running Sandbox: NetworkPolicy before Pod, status from the pod, back at the TTL.
#[tokio::test]
async fn a_sandbox_is_isolated_before_it_runs() {
    let s: Sandbox = obj(
        json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "Sandbox", "metadata": meta("fib", "ai", "sb"),
        "spec": {"image": "python:3.12-slim", "timeoutSeconds": 60, "ttlSecondsAfterFinished": 600}}),
    );
    let (client, mut api) = mock_api();
    let s_for_reply = s.clone();
    let task =
        tokio::spawn(sandbox::reconcile(Arc::new(s), Arc::new(context(client, ClusterResources::default()))));
    api.apply("/apis/networking.k8s.io/v1/namespaces/ai/networkpolicies/fib", "sandbox", "sb").await;
    let pod = api.expect("PATCH", "/api/v1/namespaces/ai/pods/fib").await;
    pod.assert_owned_by("sb");
    let mut done = pod.body.clone();
    done["status"] = json!({"phase": "Succeeded", "containerStatuses": [{"name": "sandbox", "image": "i", "imageID": "",
        "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0,
        "startedAt": "2026-01-01T00:00:00Z", "finishedAt": now_rfc3339()}}}]});
    pod.reply(200, done);
    let status = api.expect("PATCH", "/apis/tollgate.dev/v1alpha1/namespaces/ai/sandboxes/fib/status").await;
    assert_eq!(status.body["status"]["phase"], "Succeeded");
    assert_eq!(status.body["status"]["exitCode"], 0);
    assert_eq!(condition(&status.body, "Ready")["reason"], "Completed");
    status.echo_onto(&s_for_reply);
    let action = tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap().unwrap();
    // Back when the TTL is up (~600 s), not at the 300 s resync and not never.
    assert!(
        action != Action::requeue(Duration::from_secs(300)) && action != Action::await_change(),
        "{action:?}"
    );
    api.done().await;
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
