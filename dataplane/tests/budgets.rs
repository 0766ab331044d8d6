#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Budgets enforced through the whole request path (in-process router, in-process mock
//! provider, real SQLite ledger): exact admission under concurrency, 429 details,
//! downgrade, soft limits and alert webhooks, counters restored from the ledger, and hard
//! budgets failing closed when Redis goes away.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_crds::{compile, parse_documents};
use tollgate_dataplane::auth::Principal;
use tollgate_dataplane::budget::Alerts;
use tollgate_dataplane::cost::CounterStore;
use tollgate_dataplane::secrets::SecretSource;
use tollgate_dataplane::store::Store;
use tollgate_dataplane::{Gateway, now_ms};
use tollgate_testkit::{ScratchDb, TestGateway, developer};
use tower::ServiceExt;

mod support;
use support::RedisServer;

/// `mock-1` costs exactly $1 per output token and nothing for input, so with `max_tokens: 2`
/// (the mock truncates its reply to it) every request costs exactly its $2 worst case.
const TOKENS: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models:
    - name: mock-1
      prices: {inputPerMtok: "0", outputPerMtok: "1000000"}
    - name: mock-cheap
      prices: {inputPerMtok: "0", outputPerMtok: "1"}
"#;

struct App {
    router: Router,
    gateway: Gateway,
    store: Store,
    key: String,
    _db: ScratchDb,
}

async fn spawn(budgets: &str, counters: CounterStore, webhook: Option<String>, db: Option<ScratchDb>) -> App {
    let db = db.unwrap_or_else(ScratchDb::sqlite);
    let yaml = format!("{TOKENS}\n---\n{budgets}");
    let t = TestGateway::builder(db.connect().await)
        .counters(counters)
        .alerts(Alerts { webhook })
        .resources(&yaml)
        .start()
        .await;
    let alice = Principal { team: Some("pay".into()), ..developer("alice") };
    let key = t.issue_key("k", alice).await;
    t.gateway.rebuild_budgets(&t.store).await.unwrap();
    App { router: t.router(), gateway: t.gateway, store: t.store, key: key.secret, _db: db }
}

fn budget(name: &str, subject: &str, limit: &str, extra: &str) -> String {
    format!(
        "apiVersion: tollgate.dev/v1alpha1\nkind: Budget\nmetadata: {{name: {name}}}\nspec:\n  subject: {subject}\n  limit: \"{limit}\"\n  period: daily\n{extra}"
    )
}

async fn chat(app: &App, model: &str, stream: bool) -> (StatusCode, http::HeaderMap, String) {
    let body = json!({"model": model, "max_tokens": 2, "stream": stream,
        "messages": [{"role": "user", "content": "a question that has a long answer"}]});
    let request = Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {}", app.key))
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}

async fn spent(app: &App) -> Vec<(String, u64, u64)> {
    let shared = app.gateway.shared();
    let runtime = shared.runtime.load_full();
    let mut out = Vec::new();
    for b in &runtime.config.budgets {
        let s = shared.counters.state(&tollgate_dataplane::budget::key_for(b, now_ms())).await.unwrap();
        out.push((b.id.clone(), s.spent_micros, s.reserved_micros));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_requests_against_a_budget_for_fifty() {
    let app = Arc::new(
        spawn(
            &budget("alice", "{kind: developer, name: alice}", "100", ""),
            CounterStore::memory(),
            None,
            None,
        )
        .await,
    );
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { chat(&app, "mock-1", i % 2 == 0).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => assert!(body.contains("budget_exceeded"), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 50, "exactly the 50 requests the budget affords");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = spent(&app).await;
        if s[0].2 == 0 {
            assert_eq!(s[0].1, 100_000_000, "spent exactly the limit, never above");
            break;
        }
        assert!(Instant::now() < deadline, "reservations never settled: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every admitted request has its charge in the ledger.
    let ledger = app
        .store
        .budget_spent(
            "default/alice",
            tollgate_dataplane::budget::key_for(
                &app.gateway.shared().runtime.load().config.budgets[0],
                now_ms(),
            )
            .window
            .start_ms,
        )
        .await
        .unwrap();
    assert_eq!(ledger, 100_000_000);
}

#[tokio::test]
async fn exhausted_budget_answers_429_with_details_and_headers() {
    let app = spawn(
        &budget("alice", "{kind: developer, name: alice}", "3", ""),
        CounterStore::memory(),
        None,
        None,
    )
    .await;
    assert_eq!(chat(&app, "mock-1", false).await.0, StatusCode::OK);
    let (status, headers, body) = chat(&app, "mock-1", false).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "budget_exceeded");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("default/alice") && message.contains("$1.000000 remaining"), "{message}");
    assert_eq!(headers["x-tollgate-budget"], "default/alice");
    assert_eq!(headers["x-tollgate-budget-remaining-usd"], "1.000000");
    assert!(headers.contains_key("x-tollgate-budget-reset") && headers.contains_key("retry-after"));
}

#[tokio::test]
async fn a_parent_budget_limits_its_children() {
    let yaml = format!(
        "{}\n---\n{}",
        budget("team", "{kind: team, name: pay}", "4", ""),
        budget("alice", "{kind: developer, name: alice}", "100", "  parent: team\n")
    );
    let app = spawn(&yaml, CounterStore::memory(), None, None).await;
    assert_eq!(chat(&app, "mock-1", false).await.0, StatusCode::OK);
    assert_eq!(chat(&app, "mock-1", true).await.0, StatusCode::OK);
    let (status, headers, _) = chat(&app, "mock-1", false).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["x-tollgate-budget"], "default/team");
}

#[tokio::test]
async fn downgrade_serves_the_cheaper_model_and_says_so() {
    let app = spawn(
        &budget(
            "alice",
            "{kind: developer, name: alice}",
            "2.5",
            "  onExhausted: \"downgrade:mock-cheap\"\n",
        ),
        CounterStore::memory(),
        None,
        None,
    )
    .await;
    let (status, headers, _) = chat(&app, "mock-1", false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key("x-tollgate-downgraded-from"));
    let (status, headers, body) = chat(&app, "mock-1", false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-tollgate-downgraded-from"], "mock-1");
    assert_eq!(headers["x-tollgate-model"], "mock-cheap");
    let (_, headers, _) = chat(&app, "mock-1", true).await;
    assert_eq!(headers["x-tollgate-downgraded-from"], "mock-1");
}

#[tokio::test]
async fn soft_budgets_admit_and_alert_once_per_threshold() {
    let received = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = Arc::clone(&received);
    let hook = Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });
    let app = spawn(
        &budget(
            "alice",
            "{kind: developer, name: alice}",
            "4",
            "  enforcement: soft\n  alertThresholds: [50]\n",
        ),
        CounterStore::memory(),
        Some(format!("http://{addr}/hook")),
        None,
    )
    .await;
    for _ in 0..4 {
        assert_eq!(chat(&app, "mock-1", false).await.0, StatusCode::OK, "soft budgets never refuse");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got: Vec<u64> =
            received.lock().unwrap().iter().map(|v| v["thresholdPercent"].as_u64().unwrap()).collect();
        if got.len() >= 2 {
            assert_eq!(got, vec![50, 100], "each threshold once");
            break;
        }
        assert!(Instant::now() < deadline, "alerts not received: {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(spent(&app).await[0].1, 8_000_000);
}

#[tokio::test]
async fn counters_are_restored_from_the_ledger_after_a_restart() {
    let yaml = budget("alice", "{kind: developer, name: alice}", "5", "");
    let app = spawn(&yaml, CounterStore::memory(), None, None).await;
    assert_eq!(chat(&app, "mock-1", false).await.0, StatusCode::OK);
    assert_eq!(chat(&app, "mock-1", false).await.0, StatusCode::OK);
    let App { _db: db, gateway, .. } = app;
    drop(gateway);
    // A new process: fresh in-memory counters over the same database.
    let app = spawn(&yaml, CounterStore::memory(), None, Some(db)).await;
    assert_eq!(spent(&app).await[0].1, 4_000_000);
    assert_eq!(chat(&app, "mock-1", false).await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn unknown_prices_are_refused_under_a_hard_budget() {
    let app = spawn(
        &budget("alice", "{kind: developer, name: alice}", "5", ""),
        CounterStore::memory(),
        None,
        None,
    )
    .await;
    let yaml = format!(
        "{TOKENS}    - name: mystery\n---\n{}",
        budget("alice", "{kind: developer, name: alice}", "5", "")
    );
    let config = compile(&parse_documents("t", &yaml).unwrap().resources).unwrap();
    app.gateway.apply_config(config, &SecretSource::default()).unwrap();
    let (status, _, body) = chat(&app, "mystery", false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("no known price"), "{body}");
}

#[tokio::test]
async fn hard_budgets_fail_closed_without_redis_and_recover_by_themselves() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let counters = CounterStore::redis(&url, "t").await.unwrap();
    let app =
        spawn(&budget("alice", "{kind: developer, name: alice}", "100", ""), counters, None, None).await;
    assert_eq!(chat(&app, "mock-1", false).await.0, StatusCode::OK);
    redis.kill();
    let started = Instant::now();
    let (status, headers, body) = chat(&app, "mock-1", false).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("budget_unavailable"), "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(5), "must not hang while Redis is away");
    let _redis = RedisServer::start_on(redis.port);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _) = chat(&app, "mock-1", false).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "service did not resume after Redis came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
