#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! The Kubernetes resource store against a scripted in-memory API server (kube-rs's
//! tower-test scenario pattern): the exact requests each operation makes, in order, with
//! canned answers.

use std::time::Duration;

use http::{Request, Response};
use kube_client::Client;
use kube_client::client::Body;
use serde_json::{Value, json};
use tollgate_operator::error::Error;
use tollgate_operator::store::kube::KubeStore;
use tollgate_operator::store::{Kind, ResourceStore, WriteMode};
use tower_test::mock::Handle;

type ApiHandle = Handle<Request<Body>, Response<Body>>;

struct Server(ApiHandle);

impl Server {
    /// Waits for the next request, checks method and path, answers `code` with `body`;
    /// returns the request's body.
    async fn expect(&mut self, method: &str, path: &str, code: u16, body: Value) -> (String, Value) {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
            .expect("the client went away");
        assert_eq!(request.method().as_str(), method, "{}", request.uri());
        assert_eq!(request.uri().path(), path);
        let query = request.uri().query().unwrap_or("").to_owned();
        let bytes = http_body_util::BodyExt::collect(request.into_body()).await.unwrap().to_bytes();
        let sent: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        send.send_response(
            Response::builder().status(code).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap(),
        );
        (query, sent)
    }
}

fn store() -> (KubeStore, Server) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (KubeStore::new(Client::new(service, "default")), Server(handle))
}

fn budget(name: &str, generation: i64, limit: &str) -> Value {
    json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "Budget",
        "metadata": {"name": name, "namespace": "team-a", "generation": generation, "resourceVersion": "41",
                     "uid": "u1", "creationTimestamp": "2026-11-27T10:00:00Z",
                     "managedFields": [{"manager": "kubectl", "operation": "Apply", "time": "2026-11-27T11:00:00Z"}]},
        "spec": {"subject": {"kind": "team", "name": "team-a"}, "limit": limit, "period": "monthly"},
        "status": {"observedGeneration": generation}})
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": reason, "reason": reason, "code": code})
}

const PATH: &str = "/apis/tollgate.dev/v1alpha1/namespaces/team-a/budgets";

#[tokio::test]
async fn list_and_get_read_the_custom_resources() {
    let (store, mut server) = store();
    let list = tokio::spawn(async move { store.list(Some(Kind::Budget)).await.map(|l| (l, store)) });
    server
        .expect("GET", "/apis/tollgate.dev/v1alpha1/budgets", 200,
            json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "BudgetList", "metadata": {}, "items": [budget("b", 3, "10")]}))
        .await;
    let (items, store) = list.await.unwrap().unwrap();
    assert_eq!(items.len(), 1);
    let b = &items[0];
    assert_eq!((b.namespace.as_str(), b.name.as_str(), b.generation), ("team-a", "b", 3));
    assert!(b.document.get("status").is_none() && b.document["metadata"].get("managedFields").is_none());
    assert_eq!(b.updated_at_ms - b.created_at_ms, 3_600_000);

    let get = tokio::spawn(async move { store.get(Kind::Budget, "team-a", "missing").await });
    server.expect("GET", &format!("{PATH}/missing"), 404, status(404, "NotFound")).await;
    assert!(get.await.unwrap().unwrap().is_none());
}

#[tokio::test]
async fn writes_create_replace_and_apply_with_precise_conflicts() {
    let (store, mut server) = store();
    let doc = budget("b", 1, "10");

    // Create; then the same name again is a conflict.
    let s = store.clone();
    let d = doc.clone();
    let create = tokio::spawn(async move { s.put(Kind::Budget, "team-a", "b", d, WriteMode::Create).await });
    let (_, sent) = server.expect("POST", PATH, 201, budget("b", 1, "10")).await;
    assert_eq!(sent["spec"]["limit"], "10");
    assert_eq!(create.await.unwrap().unwrap().generation, 1);
    let s = store.clone();
    let d = doc.clone();
    let again = tokio::spawn(async move { s.put(Kind::Budget, "team-a", "b", d, WriteMode::Create).await });
    server.expect("POST", PATH, 409, status(409, "AlreadyExists")).await;
    assert!(matches!(again.await.unwrap(), Err(Error::Conflict(_))));

    // Replace at a stale generation: refused before any write.
    let s = store.clone();
    let d = doc.clone();
    let stale =
        tokio::spawn(async move { s.put(Kind::Budget, "team-a", "b", d, WriteMode::Replace(Some(1))).await });
    server.expect("GET", &format!("{PATH}/b"), 200, budget("b", 2, "10")).await;
    let e = stale.await.unwrap().unwrap_err();
    assert!(e.to_string().contains("generation 1"), "{e}");

    // Replace at the current generation carries the resourceVersion.
    let s = store.clone();
    let mut changed = doc.clone();
    changed["spec"]["limit"] = json!("20");
    let replace = tokio::spawn(async move {
        s.put(Kind::Budget, "team-a", "b", changed, WriteMode::Replace(Some(2))).await
    });
    server.expect("GET", &format!("{PATH}/b"), 200, budget("b", 2, "10")).await;
    let (_, sent) = server.expect("PUT", &format!("{PATH}/b"), 200, budget("b", 3, "20")).await;
    assert_eq!(
        (sent["metadata"]["resourceVersion"].as_str(), sent["spec"]["limit"].as_str()),
        (Some("41"), Some("20"))
    );
    assert_eq!(replace.await.unwrap().unwrap().generation, 3);

    // Apply: a forced server-side apply under the admin API's field manager.
    let s = store.clone();
    let apply = tokio::spawn(async move { s.put(Kind::Budget, "team-a", "b", doc, WriteMode::Apply).await });
    let (query, _) = server.expect("PATCH", &format!("{PATH}/b"), 200, budget("b", 4, "10")).await;
    assert!(query.contains("fieldManager=tollgate-admin-api") && query.contains("force=true"), "{query}");
    assert_eq!(apply.await.unwrap().unwrap().generation, 4);
}

#[tokio::test]
async fn delete_returns_what_was_deleted() {
    let (store, mut server) = store();
    let s = store.clone();
    let delete = tokio::spawn(async move { s.delete(Kind::Budget, "team-a", "b").await });
    server.expect("GET", &format!("{PATH}/b"), 200, budget("b", 2, "10")).await;
    server.expect("DELETE", &format!("{PATH}/b"), 200, status(200, "Success")).await;
    assert_eq!(delete.await.unwrap().unwrap().unwrap().name, "b");
    let gone = tokio::spawn(async move { store.delete(Kind::Budget, "team-a", "b").await });
    server.expect("GET", &format!("{PATH}/b"), 404, status(404, "NotFound")).await;
    assert!(gone.await.unwrap().unwrap().is_none());
}

#[tokio::test]
async fn provider_keys_go_into_a_secret_in_the_tokens_namespace() {
    let (store, mut server) = store();
    let s = store.clone();
    let put =
        tokio::spawn(async move { s.put_provider_key("team-a", "openai", "api-key", "sk-canary").await });
    let (query, sent) = server
        .expect("PATCH", "/api/v1/namespaces/team-a/secrets/openai", 200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openai", "namespace": "team-a"}}))
        .await;
    put.await.unwrap().unwrap();
    assert!(query.contains("fieldManager=tollgate-admin-api"), "{query}");
    assert_eq!(sent["stringData"], json!({"api-key": "sk-canary"}));
    let has = tokio::spawn(async move { store.provider_key("team-a", "openai", "api-key").await });
    server
        .expect("GET", "/api/v1/namespaces/team-a/secrets/openai", 200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openai"}, "data": {"api-key": "c2stY2FuYXJ5"}}))
        .await;
    assert!(has.await.unwrap().unwrap().is_some());
}
