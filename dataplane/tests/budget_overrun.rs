//! Settles that charge more than was reserved (issue 17, item 11): an upstream that reports
//! far more usage than the reservation covered, under 200 concurrent requests on a hard
//! budget, with memory and with Redis counters; streams cut at the reserved output; and
//! requests whose images or documents do not fit the budget refused before they are sent.
//!
//! The bound asserted: every admitted request had `spent + reserved + its worst case <=
//! limit` when admitted, so the budget ends at most the overruns (charged − reserved) of the
//! requests in flight at the last admission over its limit, and once over, nothing more is
//! admitted. With every admitted request held in flight at once, that is exactly
//! `limit + admitted × overrun`, and the counters, the ledger, the overrun metric and the
//! `overrun` alert all show it.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::{Mutex, watch};
use tollgate_dataplane::budget::Alerts;
use tollgate_dataplane::cost::CounterStore;
use tollgate_dataplane::now_ms;
use tollgate_dataplane::secrets::{SecretSource, SecretString};
use tollgate_testkit::{ScratchDb, TestGateway, developer};
use tower::ServiceExt;

/// What the upstream reports for every answer: 1,000 input and 2,000 output tokens, at
/// $1 and $2 per million = 5,000 micro-USD, far above the ~130 reserved for "hi" with
/// `max_tokens: 50`.
const REPORTED_INPUT: u64 = 1_000;
const REPORTED_OUTPUT: u64 = 2_000;
const CHARGED: u64 = REPORTED_INPUT + 2 * REPORTED_OUTPUT;

#[derive(Clone)]
struct Upstream {
    /// Requests that reached the provider.
    arrived: Arc<AtomicUsize>,
    /// Answers wait until this is true.
    release: watch::Receiver<bool>,
    /// Alert webhook bodies received.
    alerts: Arc<Mutex<Vec<Value>>>,
}

fn usage() -> Value {
    json!({"prompt_tokens": REPORTED_INPUT, "completion_tokens": REPORTED_OUTPUT,
           "total_tokens": REPORTED_INPUT + REPORTED_OUTPUT})
}

fn chunk(delta: Value) -> Value {
    json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "over-1",
           "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
}

fn sse(events: &[Value]) -> Response {
    let mut body = String::new();
    for e in events {
        body.push_str(&format!("data: {e}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], body).into_response()
}

/// The over-reporting provider. `x-over-mode` (forwarded) picks the answer.
async fn provider(State(up): State<Upstream>, headers: HeaderMap) -> Response {
    up.arrived.fetch_add(1, Ordering::SeqCst);
    let mut release = up.release.clone();
    let _ = release.wait_for(|r| *r).await;
    let mode = headers.get("x-over-mode").and_then(|v| v.to_str().ok()).unwrap_or("");
    match mode {
        // A stream that reports its (inflated) usage at the end, as OpenAI does.
        "stream-usage" => sse(&[
            chunk(json!({"role": "assistant", "content": ""})),
            chunk(json!({"content": "Hello"})),
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "over-1",
                   "choices": [], "usage": usage()}),
        ]),
        // A stream that ignores max_tokens: 1,000 pieces of answer and no usage at all.
        "stream-runaway" => {
            let mut events = vec![chunk(json!({"role": "assistant", "content": ""}))];
            events.extend((0..1_000).map(|i| chunk(json!({"content": format!(" w{i}")}))));
            sse(&events)
        }
        _ => axum::Json(json!({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "over-1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
            "usage": usage(),
        }))
        .into_response(),
    }
}

async fn webhook(State(up): State<Upstream>, axum::Json(body): axum::Json<Value>) -> StatusCode {
    up.alerts.lock().await.push(body);
    StatusCode::OK
}

struct App {
    t: TestGateway,
    router: Router,
    key: String,
    upstream: Upstream,
    release: watch::Sender<bool>,
    _db: ScratchDb,
}

async fn start(limit: &str, counters: CounterStore) -> App {
    let (release, release_rx) = watch::channel(false);
    let upstream = Upstream {
        arrived: Arc::new(AtomicUsize::new(0)),
        release: release_rx,
        alerts: Arc::new(Mutex::new(Vec::new())),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = Router::new()
        .route("/v1/chat/completions", axum::routing::post(provider))
        .route("/alerts", axum::routing::post(webhook))
        .with_state(upstream.clone());
    tokio::spawn(async move { axum::serve(listener, server).await.unwrap() });
    let resources = format!(
        r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {{name: over}}
spec:
  provider: openai-compatible
  baseUrl: http://{addr}/v1
  secretRef: {{name: over, key: api-key}}
  forwardHeaders: [x-over-]
  models:
    - {{name: over-1, prices: {{inputPerMtok: "1", outputPerMtok: "2"}}}}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {{name: alice}}
spec:
  subject: {{kind: developer, name: alice}}
  limit: "{limit}"
  period: daily
  enforcement: hard
"#
    );
    let secrets = SecretSource::from_map(BTreeMap::from([(
        "over".to_owned(),
        BTreeMap::from([("api-key".to_owned(), SecretString::new("sk-over".to_owned()))]),
    )]));
    let db = ScratchDb::sqlite();
    let t = TestGateway::builder(db.connect().await)
        .secrets(secrets)
        .counters(counters)
        .alerts(Alerts { webhook: Some(format!("http://{addr}/alerts")) })
        .resources(&resources)
        .start()
        .await;
    let key = t.issue_key("k", developer("alice")).await.secret;
    App { router: t.router(), t, key, upstream, release, _db: db }
}

fn chat_body(stream: bool, content: Value) -> Value {
    json!({"model": "over-1", "max_tokens": 50, "stream": stream,
           "messages": [{"role": "user", "content": content}]})
}

async fn send(
    router: Router,
    key: &str,
    path: &str,
    mode: &str,
    body: Value,
) -> (StatusCode, HeaderMap, String) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .header("x-over-mode", mode)
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}

/// (spent, reserved) of alice's budget now, as the status read reports it.
async fn budget_state(app: &App) -> (u64, u64, u64) {
    let shared = app.t.gateway.shared();
    let runtime = shared.runtime.load_full();
    let s = tollgate_dataplane::budget::status(&shared.counters, &runtime.config.budgets, 0, now_ms())
        .await
        .unwrap()
        .unwrap();
    (s.spent_micros, s.reserved_micros, s.limit_micros)
}

async fn poll<F: AsyncFn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn overrun_count(app: &App) -> u64 {
    let text = app.t.gateway.metrics().encode();
    text.lines()
        .find(|l| l.starts_with("tollgate_budget_overruns_total{") && l.contains("default/alice"))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |n| n.parse().unwrap())
}

async fn two_hundred_over_reported_requests(counters: CounterStore) {
    // $0.002 = 2,000 micro-USD.
    let app = Arc::new(start("0.002", counters).await);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let app = Arc::clone(&app);
        let mode = if i % 2 == 0 { "" } else { "stream-usage" };
        tasks.push(tokio::spawn(async move {
            send(
                app.router.clone(),
                &app.key,
                "/v1/chat/completions",
                mode,
                chat_body(i % 2 == 1, json!("hi")),
            )
            .await
        }));
    }
    // Hold every admitted request at the provider until the others have been answered: all
    // reservations are then held at once, the worst case for the bound.
    let mut refused = 0u64;
    let mut answers = Vec::new();
    let mut pending = Vec::new();
    for t in tasks {
        if t.is_finished() {
            answers.push(t.await.unwrap());
        } else {
            pending.push(t);
        }
    }
    poll("every request admitted or refused", async || {
        let done = pending.iter().filter(|t| t.is_finished()).count() + answers.len();
        app.upstream.arrived.load(Ordering::SeqCst) + done >= 200
    })
    .await;
    let admitted = app.upstream.arrived.load(Ordering::SeqCst) as u64;
    let (spent, reserved, limit) = budget_state(&app).await;
    assert_eq!(spent, 0);
    assert!(admitted >= 1, "some requests fit the budget");
    assert_eq!(reserved % admitted, 0, "every request reserves the same worst case");
    let per_request = reserved / admitted;
    assert!(reserved <= limit, "admission never reserves past the limit: {reserved} > {limit}");
    assert!(reserved + per_request > limit, "as many are admitted as fit: {admitted} × {per_request}");
    assert!(per_request < CHARGED, "the upstream over-reports: {per_request} reserved, {CHARGED} charged");
    app.release.send(true).unwrap();
    for t in pending {
        answers.push(t.await.unwrap());
    }
    for (status, headers, text) in &answers {
        match *status {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(headers.get("x-tollgate-budget").unwrap(), "default/alice", "{text}");
                refused += 1;
            }
            other => panic!("{other}: {text}"),
        }
    }
    assert_eq!(refused, 200 - admitted);
    // Every admitted request was charged its true cost; nothing is left reserved.
    poll("the settles", async || budget_state(&app).await.1 == 0).await;
    let (spent, _, _) = budget_state(&app).await;
    assert_eq!(spent, admitted * CHARGED, "the true cost is recorded");
    let overrun = CHARGED - per_request;
    // The bound: over the limit by at most the overruns of the requests in flight at once.
    assert!(spent <= limit + admitted * overrun, "{spent} > {limit} + {admitted} × {overrun}");
    assert!(spent > limit, "the over-reporting upstream did push the budget over");
    eprintln!(
        "limit {limit}, {admitted} of 200 admitted at {per_request} reserved each, charged {CHARGED} each: \
         spent {spent} ({:.1}× the limit), bound {}",
        spent as f64 / limit as f64,
        limit + admitted * overrun
    );
    // Over its limit, the budget refuses everything until it is back under.
    for mode in ["", "stream-usage"] {
        let (status, headers, text) = send(
            app.router.clone(),
            &app.key,
            "/v1/chat/completions",
            mode,
            chat_body(!mode.is_empty(), json!("hi")),
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
        assert_eq!(headers.get("x-tollgate-budget-remaining-micros").unwrap(), "0");
    }
    assert_eq!(
        app.upstream.arrived.load(Ordering::SeqCst) as u64,
        admitted,
        "nothing more reached the provider"
    );
    // Counted once per overrunning settle; alerted once per budget window.
    assert_eq!(overrun_count(&app), admitted);
    poll("the overrun alert", async || {
        app.upstream.alerts.lock().await.iter().any(|a| a["alert"] == "overrun")
    })
    .await;
    let alerts = app.upstream.alerts.lock().await.clone();
    let overruns: Vec<&Value> = alerts.iter().filter(|a| a["alert"] == "overrun").collect();
    assert_eq!(overruns.len(), 1, "{alerts:#?}");
    assert_eq!(overruns[0]["budget"], "default/alice");
    assert_eq!(overruns[0]["enforcement"], "hard");
    assert_eq!(overruns[0]["charged"], "0.005000");
    // The ledger agrees with the counters.
    let rows = app.t.store.recent_usage(500).await.unwrap();
    let ledger: i64 = rows.iter().filter(|r| r.status == 200).map(|r| r.cost_micros).sum();
    assert_eq!(ledger, i64::try_from(spent).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_reporting_upstream_overruns_a_hard_budget_by_at_most_the_requests_in_flight() {
    two_hundred_over_reported_requests(CounterStore::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bound_holds_with_redis_counters() {
    let prefix = format!("overrun-{}", uuid::Uuid::new_v4().simple());
    let counters = CounterStore::redis("redis://127.0.0.1:6379", &prefix).await.unwrap();
    two_hundred_over_reported_requests(counters).await;
}

#[tokio::test]
async fn a_stream_past_its_reserved_output_is_cut() {
    let app = start("10", CounterStore::memory()).await;
    app.release.send(true).unwrap();
    let (status, _, text) = send(
        app.router.clone(),
        &app.key,
        "/v1/chat/completions",
        "stream-runaway",
        chat_body(true, json!("hi")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("upstream_output_exceeded"), "{text}");
    assert!(!text.contains("[DONE]"), "a cut stream does not end as complete: {text}");
    // 50 tokens allowed; cut within the framing allowance, long before the 1,000 sent.
    let delivered = text.matches("\"content\":\" w").count();
    assert!(delivered <= 50 + 258, "{delivered} pieces delivered");
    assert!(delivered < 1_000);
    // An upstream that reports more output than allowed is cut too, and charged what it said.
    let (_, _, text) = send(
        app.router.clone(),
        &app.key,
        "/v1/chat/completions",
        "stream-usage",
        chat_body(true, json!("hi")),
    )
    .await;
    assert!(text.contains("upstream_output_exceeded"), "{text}");
    poll("the settles", async || budget_state(&app).await.1 == 0).await;
    let rows = app.t.store.recent_usage(10).await.unwrap();
    assert!(rows.iter().all(|r| r.error_class.as_deref() == Some("upstream_output_exceeded")), "{rows:?}");
    assert!(rows.iter().any(|r| r.cost_micros == CHARGED as i64), "{rows:?}");
    assert_eq!(overrun_count(&app), 1);
}

#[tokio::test]
async fn images_and_documents_are_reserved_before_they_are_sent() {
    // Room for a text request (~130 micro-USD) but not for an image (4,000 tokens at $1/M).
    let app = start("0.001", CounterStore::memory()).await;
    app.release.send(true).unwrap();
    let image_url = json!([{"type": "text", "text": "what is this?"},
                           {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]);
    let pdf = json!([{"type": "text", "text": "summarise"},
                     {"type": "file", "file": {"file_id": "file-abc"}}]);
    for (what, content) in [("image", image_url), ("file", pdf)] {
        let (status, headers, text) =
            send(app.router.clone(), &app.key, "/v1/chat/completions", "", chat_body(false, content)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{what}: {text}");
        assert_eq!(headers.get("x-tollgate-budget").unwrap(), "default/alice");
    }
    let anthropic = json!({"model": "over-1", "max_tokens": 50, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "text", "text": "what is this?"}]}]});
    let (status, _, text) = send(app.router.clone(), &app.key, "/v1/messages", "", anthropic).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    assert_eq!(app.upstream.arrived.load(Ordering::SeqCst), 0, "nothing was sent");
    let (spent, reserved, _) = budget_state(&app).await;
    assert_eq!((spent, reserved), (0, 0));
    // The text alone fits (and is then charged what the upstream reports).
    let (status, _, text) = send(
        app.router.clone(),
        &app.key,
        "/v1/chat/completions",
        "",
        chat_body(false, json!("what is this?")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
}
