#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! One broken resource of every kind beside working ones, through the admin API and the
//! in-process gateway, on SQLite and on PostgreSQL: the working ones are enforced (a
//! request is served, a hard budget refuses, a policy blocks) and the broken one is
//! reported — on the resource (`status.conditions`) when it is stored, or by a 422 naming
//! the field when it cannot be stored. A restart on the same database starts and serves
//! with the broken resources still there.
//!
//! Kinds and what "broken" means for each:
//! - IPToken: its `secretRef` key is not set (valid, cannot be served yet).
//! - Budget: its `parent` does not exist (refused, 422 `spec.parent`).
//! - SafetyPolicy: a regex that does not compile (refused, 422 naming the pattern).
//! - Agent: its `budgetRef` and `safetyPolicyRef` name nothing (`ReferenceNotFound`).
//! - Sandbox: its `dataPlaneRef` names no DataPlane (`ReferenceNotFound`).
//! - DataPlane: three replicas on a memory cache (`ReplicasNeedSharedState`).

use std::collections::BTreeMap;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_dataplane::auth::{Principal, PrincipalKind, Role};
use tollgate_dataplane::now_ms;
use tollgate_operator::{ControlPlane, router};
use tollgate_testkit::{ScratchDb, TestGateway, developer};
use tower::ServiceExt;

/// The resource file: a working IP token.
const FILES: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models: [{name: mock-1}, {name: shared-model}]
"#;

struct App {
    cp: ControlPlane,
    keys: BTreeMap<&'static str, String>,
}

/// A control plane with its gateway on `db`, keys issued once (`keys` empty) or reused.
async fn start(db: &ScratchDb, mut keys: BTreeMap<&'static str, String>) -> App {
    let TestGateway { gateway, keys: service, store } =
        TestGateway::builder(db.connect().await).start().await;
    if keys.is_empty() {
        let admin =
            Principal { kind: PrincipalKind::Developer, name: "root".into(), role: Role::Admin, team: None };
        for (label, p) in [("admin", admin), ("carol", developer("carol")), ("dave", developer("dave"))] {
            keys.insert(label, service.create(label.into(), p, vec![], None, now_ms()).await.unwrap().secret);
        }
    }
    let cp = ControlPlane::standalone(gateway, store);
    cp.config.set_files(tollgate_crds::parse_documents("files", FILES).unwrap().resources);
    // NB: start-up must not depend on one bad resource: this is what `tollgate up` does.
    cp.reconfigure().await.expect("start-up with the broken resources stored");
    App { cp, keys }
}

async fn admin(app: &App, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {}", app.keys["admin"]))
        .header("content-type", "application/json");
    let req = req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap();
    let response = router(app.cp.clone()).oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn chat(app: &App, who: &str, model: &str, content: &str) -> (StatusCode, Value) {
    let req = Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {}", app.keys[who]))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"model": model, "messages": [{"role": "user", "content": content}]}).to_string(),
        ))
        .unwrap();
    let response = app.cp.gateway.router().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn doc(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

/// `(status, reason, message)` of condition `type_` of the resource at `path`.
async fn condition(app: &App, path: &str, type_: &str) -> (String, String, String) {
    let (s, v) = admin(app, "GET", path, None).await;
    assert_eq!(s, StatusCode::OK, "{path}: {v}");
    let c = v["document"]["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("{path} has no {type_} condition: {v}"));
    let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    (text("status"), text("reason"), text("message"))
}

async fn create(app: &App, plural: &str, body: Value) -> (StatusCode, Value) {
    admin(app, "POST", &format!("/api/v1/resources/{plural}"), Some(body)).await
}

async fn matrix(postgres: bool) {
    let db = ScratchDb::open(postgres, "tollgate_broken").await;
    let app = start(&db, BTreeMap::new()).await;

    // IPToken: the broken one first, as in the report: everything after it must still apply.
    let keyless = doc(
        "IPToken",
        "keyless",
        json!({"provider": "mock", "secretRef": {"name": "keyless", "key": "api-key"},
               "models": [{"name": "keyless-only"}, {"name": "shared-model"}]}),
    );
    let (s, v) = create(&app, "iptokens", keyless).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["document"]["status"]["conditions"][0]["reason"], "SecretNotFound", "reported at once: {v}");

    // Budget: a working hard budget, created after the keyless token, is GET-able and enforced.
    let tiny = json!({"subject": {"kind": "developer", "name": "carol"}, "limit": "0.000001",
                      "period": "monthly", "enforcement": "hard"});
    let (s, v) = create(&app, "budgets", doc("Budget", "carol", tiny)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let orphan = json!({"subject": {"kind": "developer", "name": "dave"}, "limit": "5", "period": "daily",
                        "parent": "missing"});
    let (s, v) = create(&app, "budgets", doc("Budget", "orphan", orphan)).await;
    assert_eq!(
        (s, v["error"]["param"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("spec.parent")),
        "{v}"
    );

    // SafetyPolicy: a working policy for dave; one whose regex does not compile is refused.
    let strict = json!({"selector": {"subjects": [{"kind": "developer", "name": "dave"}]},
                        "input": {"custom": {"terms": [{"id": "codename", "terms": ["project nightingale"], "action": "block"}]}}});
    let (s, v) = create(&app, "safetypolicies", doc("SafetyPolicy", "strict", strict)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let bad = json!({"input": {"custom": {"regex": [{"id": "bad", "pattern": "([a-z", "action": "block"}]}}});
    let (s, v) = create(&app, "safetypolicies", doc("SafetyPolicy", "broken", bad)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"]["param"].as_str().unwrap_or_default().ends_with(".pattern"), "{v}");

    // Workloads: stored either way; the broken one says what it lacks.
    let workloads = [
        (
            "agents",
            doc(
                "Agent",
                "helper",
                json!({"image": "x:1", "budgetRef": {"name": "carol"}, "safetyPolicyRef": {"name": "strict"}}),
            ),
        ),
        (
            "agents",
            doc(
                "Agent",
                "stray",
                json!({"image": "x:1", "budgetRef": {"name": "gone"}, "safetyPolicyRef": {"name": "none"}}),
            ),
        ),
        ("sandboxes", doc("Sandbox", "run", json!({"image": "x:1", "timeoutSeconds": 10}))),
        (
            "sandboxes",
            doc(
                "Sandbox",
                "lost",
                json!({"image": "x:1", "timeoutSeconds": 10, "dataPlaneRef": {"name": "elsewhere", "namespace": "x"}}),
            ),
        ),
        ("dataplanes", doc("DataPlane", "single", json!({"replicas": {"min": 1, "max": 1}}))),
        ("dataplanes", doc("DataPlane", "wide", json!({"replicas": {"min": 1, "max": 3}}))),
    ];
    for (plural, body) in workloads {
        let (s, v) = create(&app, plural, body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    check(&app).await;
    // The provider key arrives: the token comes into service without any other change.
    let (s, v) = admin(
        &app,
        "PUT",
        "/api/v1/resources/iptokens/default/keyless/key",
        Some(json!({"value": "sk-late"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(condition(&app, "/api/v1/resources/iptokens/default/keyless", "Ready").await.0, "True");
    assert_eq!(chat(&app, "dave", "keyless-only", "hello").await.0, StatusCode::OK);

    // A new process on the same database reads the stored key at start.
    let keys = app.keys.clone();
    drop(app);
    let app = start(&db, keys).await;
    assert_eq!(chat(&app, "dave", "keyless-only", "hello").await.0, StatusCode::OK);
}

/// What every kind shows while the key of `keyless` is missing.
async fn check(app: &App) {
    // IPToken: the working one serves (also a model it shares with the keyless one, every
    // time); the keyless one is reported and its own model answers a clear 503.
    let (s, reason, message) = condition(app, "/api/v1/resources/iptokens/default/keyless", "Accepted").await;
    assert_eq!((s.as_str(), reason.as_str()), ("False", "SecretNotFound"));
    assert!(
        message.contains("TOLLGATE_SECRET_KEYLESS_API_KEY"),
        "the admin learns where to put it: {message}"
    );
    assert_eq!(condition(app, "/api/v1/resources/iptokens/default/keyless", "Ready").await.0, "False");
    assert_eq!(condition(app, "/api/v1/resources/iptokens/default/mock", "Ready").await.0, "True");
    assert_eq!(chat(app, "dave", "mock-1", "hello").await.0, StatusCode::OK);
    for _ in 0..6 {
        assert_eq!(chat(app, "dave", "shared-model", "hello").await.0, StatusCode::OK);
    }
    let (s, v) = chat(app, "dave", "keyless-only", "hello").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("ip_token_unavailable")),
        "{v}"
    );
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("default/keyless"), "{v}");

    // Budget: GET-able (state and resource), Ready, and a hard limit refuses.
    let (s, v) = admin(app, "GET", "/api/v1/budgets/default/carol", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(condition(app, "/api/v1/resources/budgets/default/carol", "Ready").await.0, "True");
    let (s, v) = chat(app, "carol", "mock-1", "hello").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("budget_exceeded")),
        "{v}"
    );
    let (s, _) = admin(app, "GET", "/api/v1/resources/budgets/default/orphan", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "the refused budget was not stored");

    // SafetyPolicy: enforced.
    assert_eq!(condition(app, "/api/v1/resources/safetypolicies/default/strict", "Ready").await.0, "True");
    let (s, v) = chat(app, "dave", "mock-1", "about project nightingale").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Workloads: the working ones accepted, the broken ones say why.
    for (path, want) in [
        ("agents/default/helper", ("True", "Accepted")),
        ("agents/default/stray", ("False", "ReferenceNotFound")),
        ("sandboxes/default/run", ("True", "Accepted")),
        ("sandboxes/default/lost", ("False", "ReferenceNotFound")),
        ("dataplanes/default/single", ("True", "Accepted")),
        ("dataplanes/default/wide", ("False", "ReplicasNeedSharedState")),
    ] {
        let (s, reason, _) = condition(app, &format!("/api/v1/resources/{path}"), "Accepted").await;
        assert_eq!((s.as_str(), reason.as_str()), want, "{path}");
    }
    let (_, _, message) = condition(app, "/api/v1/resources/agents/default/stray", "Accepted").await;
    assert!(
        message.contains("Budget default/gone") && message.contains("SafetyPolicy default/none"),
        "{message}"
    );
}

/// Restarting on the same database with the keyless token stored: start-up succeeds and
/// everything else is enforced at once.
async fn restart(postgres: bool) {
    let db = ScratchDb::open(postgres, "tollgate_broken_restart").await;
    let app = start(&db, BTreeMap::new()).await;
    let keyless = doc(
        "IPToken",
        "keyless",
        json!({"provider": "mock", "secretRef": {"name": "keyless", "key": "api-key"},
               "models": [{"name": "keyless-only"}, {"name": "shared-model"}]}),
    );
    assert_eq!(create(&app, "iptokens", keyless).await.0, StatusCode::CREATED);
    let tiny = json!({"subject": {"kind": "developer", "name": "carol"}, "limit": "0.000001", "period": "monthly",
                      "enforcement": "hard"});
    assert_eq!(create(&app, "budgets", doc("Budget", "carol", tiny)).await.0, StatusCode::CREATED);
    let keys = app.keys.clone();
    drop(app);

    let app = start(&db, keys).await;
    assert_eq!(
        condition(&app, "/api/v1/resources/iptokens/default/keyless", "Ready").await.1,
        "SecretNotFound"
    );
    assert_eq!(chat(&app, "dave", "shared-model", "hello").await.0, StatusCode::OK);
    assert_eq!(chat(&app, "carol", "mock-1", "hello").await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broken_resource_of_every_kind_sqlite() {
    matrix(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broken_resource_of_every_kind_postgres() {
    matrix(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_a_keyless_token_starts_and_serves_sqlite() {
    restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_a_keyless_token_starts_and_serves_postgres() {
    restart(true).await;
}
