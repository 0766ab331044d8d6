#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Reliability through the whole request path, driven by the mock provider's fault
//! injection: retries and a fallback under a 30% failure rate, circuit breakers, a stream
//! broken mid-way, per-key rate limits (one gateway, and two sharing Redis), tokens per
//! minute charged what an answer really used (key and IP token), the in-flight cap, and the
//! metrics scraped and parsed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_dataplane::reliability::{BreakerConfig, RetryPolicy};
use tollgate_dataplane::store::Store;
use tollgate_dataplane::{Gateway, GatewayOptions, now_ms};
use tollgate_testkit::{ScratchDb, TestGateway, developer};
use tower::ServiceExt;

/// `flaky-1` falls back to `steady-1`, served by a token that forwards no fault headers.
const TOKENS: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: flaky}
spec:
  provider: mock
  models:
    - name: flaky-1
      prices: {inputPerMtok: "0", outputPerMtok: "1000000"}
      fallbacks: [steady-1]
      timeouts: {firstByteSeconds: 1, totalSeconds: 8}
    - name: lonely-1
      prices: {inputPerMtok: "0", outputPerMtok: "1000000"}
---
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: steady}
spec:
  provider: mock
  forwardHeaders: [x-steady-]
  models:
    - name: steady-1
      prices: {inputPerMtok: "0", outputPerMtok: "1000000"}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: alice}
spec: {subject: {kind: developer, name: alice}, limit: "1000000", period: monthly}
"#;

struct App {
    router: Router,
    gateway: Gateway,
    store: Store,
    key: String,
    _db: Option<ScratchDb>,
}

/// A gateway on a database of its own, or (`db`) on a database the test shares.
async fn spawn_with(options: GatewayOptions, rpm: Option<u64>, db: Option<&ScratchDb>) -> App {
    let own = db.is_none().then(ScratchDb::sqlite);
    let store = db.or(own.as_ref()).unwrap().connect().await;
    let t = TestGateway::builder(store).options(options).resources(TOKENS).start().await;
    let alice = developer("alice");
    let key = t.keys.create_limited("k".into(), alice, vec![], None, (rpm, None), now_ms()).await.unwrap();
    App { router: t.router(), gateway: t.gateway, store: t.store, key: key.secret, _db: own }
}

fn fast_options() -> GatewayOptions {
    GatewayOptions {
        retry: RetryPolicy {
            base: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..RetryPolicy::default()
        },
        ..GatewayOptions::default()
    }
}

async fn chat(
    app: &App,
    model: &str,
    stream: bool,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let body = json!({"model": model, "max_tokens": 2, "stream": stream,
        "messages": [{"role": "user", "content": "a question that has a long answer"}]});
    let mut request =
        Request::post("/v1/chat/completions").header("authorization", format!("Bearer {}", app.key));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response =
        app.router.clone().oneshot(request.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let (status, h) = (response.status(), response.headers().clone());
    let text = match response.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(e) => format!("BODY ERROR {e}"),
    };
    (status, h, text)
}

fn metric(app: &App, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = app.gateway.metrics().encode();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_failures_with_a_fallback_lose_nothing_and_charge_once() {
    let app = Arc::new(spawn_with(fast_options(), None, None).await);
    let faults = ["status:500", "status:503", "reset-before", "reset-mid", "stall"];
    let total_timeout = Duration::from_secs(8);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(100));
    let mut tasks = Vec::new();
    for i in 0..2000usize {
        let app = Arc::clone(&app);
        let permit = Arc::clone(&semaphore).acquire_owned().await.unwrap();
        // A stream that breaks after its first bytes reached the caller cannot be retried
        // (that case has its own test), so streams get the faults that strike before.
        let stream = i % 4 == 0;
        let fault = if stream { faults[i % 3] } else { faults[i % faults.len()] };
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let id = format!("r{i}");
            let result = chat(
                &app,
                "flaky-1",
                stream,
                &[("x-mock-fault", fault), ("x-mock-fault-rate", "0.3"), ("x-request-id", &id)],
            )
            .await;
            drop(permit);
            (result, started.elapsed())
        }));
    }
    let mut ok = 0usize;
    let mut charged_micros = 0u64;
    for t in tasks {
        let ((status, headers, body), took) = t.await.unwrap();
        assert!(took <= total_timeout + Duration::from_secs(1), "a request took {took:?}");
        if status != StatusCode::OK || body.contains("\"error\"") {
            eprintln!("FAILED {status} {}", &body[..body.len().min(300)]);
        }
        if status == StatusCode::OK && !body.contains("\"error\"") {
            ok += 1;
            if let Some(c) = headers.get("x-tollgate-cost-usd") {
                let usd: f64 = c.to_str().unwrap().parse().unwrap();
                charged_micros += (usd * 1e6).round() as u64;
            }
        }
    }
    assert!(ok >= 1998, "only {ok} of 2000 succeeded");
    // Every request is settled once: the budget holds exactly what the ledger holds, and
    // each successful non-streaming answer was charged exactly its $2.
    let budget = app.gateway.shared().runtime.load().config.budgets[0].clone();
    let key = tollgate_dataplane::budget::key_for(&budget, now_ms());
    let deadline = Instant::now() + Duration::from_secs(10);
    let state = loop {
        let s = app.gateway.shared().counters.state(&key).await.unwrap();
        if s.reserved_micros == 0 {
            break s;
        }
        assert!(Instant::now() < deadline, "reservations never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ledger = app.store.budget_spent(&budget.id, key.window.start_ms).await.unwrap();
    assert_eq!(state.spent_micros, ledger, "counter and ledger agree");
    assert_eq!(charged_micros % 2_000_000, 0, "non-streaming answers charged exactly once each");
    assert!(metric(&app, "tollgate_fallbacks_total", &[]) > 0.0, "the fallback was used");
    assert!(metric(&app, "tollgate_upstream_retries_total", &[]) > 0.0, "retries happened");
}

#[tokio::test]
async fn breaker_trips_at_its_threshold_stops_calling_and_recovers() {
    let options = GatewayOptions {
        breaker: BreakerConfig {
            consecutive_failures: 5,
            open_base: Duration::from_millis(300),
            ..BreakerConfig::default()
        },
        retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
        ..GatewayOptions::default()
    };
    let app = spawn_with(options, None, None).await;
    let failing = [("x-mock-fault", "status:500")];
    for _ in 0..5 {
        assert_eq!(chat(&app, "lonely-1", false, &failing).await.0, StatusCode::BAD_GATEWAY);
    }
    let calls = |app: &App| metric(app, "tollgate_upstream_attempts_total", &[("outcome", "server_error")]);
    assert_eq!(calls(&app), 5.0);
    // Open: refused at once, and no call reaches the upstream.
    for _ in 0..20 {
        let (status, _, body) = chat(&app, "lonely-1", false, &failing).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("no_healthy_upstream"), "{body}");
    }
    assert_eq!(calls(&app), 5.0, "no upstream call while open");
    assert_eq!(metric(&app, "tollgate_breaker_state", &[("ip_token", "default/flaky")]), 2.0);
    // Half-open after the open period: one good probe closes it.
    let opened = Instant::now();
    let deadline = opened + Duration::from_secs(5);
    loop {
        let (status, _, _) = chat(&app, "lonely-1", false, &[]).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "breaker never recovered");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(opened.elapsed() >= Duration::from_millis(250));
    assert_eq!(chat(&app, "lonely-1", false, &[]).await.0, StatusCode::OK);
    // The gauge follows it back to closed.
    assert_eq!(metric(&app, "tollgate_breaker_state", &[("ip_token", "default/flaky")]), 0.0);
}

#[tokio::test]
async fn a_stream_reset_after_bytes_reached_the_caller_is_an_error_not_a_retry() {
    let app = spawn_with(fast_options(), None, None).await;
    let (status, _, body) = chat(
        &app,
        "lonely-1",
        true,
        &[("x-mock-fault", "reset-mid"), ("x-mock-chunks", "6"), ("x-request-id", "mid")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "headers were already sent");
    assert!(
        body.contains("data: {\"choices\"") || body.contains("\"delta\""),
        "some content arrived: {body}"
    );
    assert!(body.contains("upstream_stream_error"), "the caller sees a stream error: {body}");
    assert!(!body.contains("[DONE]"));
    assert_eq!(metric(&app, "tollgate_upstream_attempts_total", &[]), 1.0, "no retry after bytes were sent");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = app.store.recent_usage(10).await.unwrap();
        if let Some(r) = rows.iter().find(|r| r.request_id == "mid") {
            assert_eq!(r.error_class.as_deref(), Some("upstream_stream_error"));
            assert!(r.cost_micros > 0, "the charge covers what was consumed");
            assert!(r.cost_micros <= 2_000_000, "never more than the worst case");
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn per_key_rate_limits_admit_exactly_the_limit() {
    let app = spawn_with(GatewayOptions::default(), Some(5), None).await;
    for i in 0..5 {
        let (status, headers, _) = chat(&app, "steady-1", false, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-ratelimit-limit-requests"], "5");
        assert_eq!(headers["x-ratelimit-remaining-requests"], (4 - i).to_string().as_str());
    }
    let (status, headers, body) = chat(&app, "steady-1", false, &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("\"rate_limited\""), "{body}");
    assert!(headers.contains_key("retry-after"));
}

/// An answer of ~500 completion tokens although `max_tokens` is 2: the mock never truncates
/// tool-call arguments, so the gateway's estimate (input + 2) falls far short.
fn long_tool_call() -> String {
    let blob = "x".repeat(2000);
    format!(r#"[{{"name":"save","arguments":{{"text":"{blob}"}}}}]"#)
}

/// Two requests in one rate-limit window, retried with a fresh setup when a minute
/// boundary falls between them (the second would then start a new window).
async fn second_request_in_one_window(app: &App) -> Option<(StatusCode, http::HeaderMap, String)> {
    let window = |ms: i64| ms / 60_000;
    let before = now_ms();
    let tool_calls = long_tool_call();
    let (status, _, body) = chat(app, "lonely-1", false, &[("x-mock-tool-calls", &tool_calls)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("tool_calls"), "{body}");
    let second = chat(app, "lonely-1", false, &[]).await;
    (window(before) == window(now_ms())).then_some(second)
}

#[tokio::test]
async fn a_key_is_charged_the_tokens_an_answer_really_used() {
    for _ in 0..3 {
        let db = ScratchDb::sqlite();
        let t = TestGateway::builder(db.connect().await).resources(TOKENS).start().await;
        let key = t
            .keys
            .create_limited("k".into(), developer("alice"), vec![], None, (None, Some(200)), now_ms())
            .await;
        let app = App {
            router: t.router(),
            gateway: t.gateway,
            store: t.store,
            key: key.unwrap().secret,
            _db: Some(db),
        };
        let Some((status, headers, body)) = second_request_in_one_window(&app).await else { continue };
        // The first request was admitted at its estimate (well under 200) but used ~500
        // tokens: the window is over the limit, and a small request is refused.
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(body.contains("tokens per minute"), "{body}");
        assert_eq!(headers["x-ratelimit-remaining-tokens"], "0");
        return;
    }
    panic!("three attempts straddled a minute boundary");
}

#[tokio::test]
async fn an_ip_token_is_charged_the_tokens_an_answer_really_used() {
    let tokens = TOKENS.replacen(
        "metadata: {name: flaky}\nspec:\n",
        "metadata: {name: flaky}\nspec:\n  tpm: 200\n",
        1,
    );
    assert_ne!(tokens, TOKENS);
    for _ in 0..3 {
        let db = ScratchDb::sqlite();
        let t = TestGateway::builder(db.connect().await).resources(&tokens).start().await;
        let key = t.issue_key("k", developer("alice")).await.secret;
        let app = App { router: t.router(), gateway: t.gateway, store: t.store, key, _db: Some(db) };
        let Some((status, _, body)) = second_request_in_one_window(&app).await else { continue };
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(body.contains("provider credential's rate limit"), "{body}");
        return;
    }
    panic!("three attempts straddled a minute boundary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_exact_across_two_gateways_sharing_redis() {
    let prefix = format!("rl-test-{}", uuid::Uuid::new_v4().simple());
    let options = || GatewayOptions {
        redis: Some(("redis://127.0.0.1:6379".to_owned(), prefix.clone())),
        ..GatewayOptions::default()
    };
    let db = ScratchDb::sqlite();
    let a = Arc::new(spawn_with(options(), Some(40), Some(&db)).await);
    // The second gateway serves the same key (found in the shared database).
    let mut b = spawn_with(options(), None, Some(&db)).await;
    b.key = a.key.clone();
    let b = Arc::new(b);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let app = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
            tokio::spawn(async move { chat(&app, "steady-1", false, &[]).await.0 })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    // NB: a minute boundary inside the test would open a second window; 200 requests
    // finish in well under a second, and a straddle could only admit more, never fewer.
    assert!(ok == 40 || ok == 80, "exactly the limit per window, got {ok}");
    drop(db);
}

#[tokio::test]
async fn beyond_the_in_flight_cap_requests_get_503_at_once() {
    let app = Arc::new(
        spawn_with(GatewayOptions { max_in_flight: 2, ..GatewayOptions::default() }, None, None).await,
    );
    // Hold both slots with slow requests (the mock's latency header, forwarded).
    let hold: Vec<_> = (0..2)
        .map(|_| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { chat(&app, "flaky-1", false, &[("x-mock-latency-ms", "800")]).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&app, "tollgate_in_flight_requests", &[]) < 2.0 {
        assert!(Instant::now() < deadline, "slow requests never started");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..3 {
        let started = Instant::now();
        let (status, headers, body) = chat(&app, "steady-1", false, &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("overloaded"), "{body}");
        assert_eq!(headers["retry-after"], "1");
        assert!(started.elapsed() < Duration::from_millis(200), "refused at once, not queued");
    }
    for t in hold {
        let _ = t.await;
    }
    assert!(metric(&app, "tollgate_overload_rejections_total", &[]) >= 1.0);
}

#[tokio::test]
async fn metrics_parse_and_never_contain_keys() {
    let app = spawn_with(GatewayOptions::default(), None, None).await;
    assert_eq!(chat(&app, "steady-1", false, &[]).await.0, StatusCode::OK);
    assert_eq!(chat(&app, "steady-1", true, &[]).await.0, StatusCode::OK);
    let _ = chat(&app, "nope", false, &[]).await;
    let text = app.gateway.metrics().encode();
    assert!(!text.contains(&app.key) && !text.contains("tg-"), "a key leaked into metrics");
    assert_eq!(
        metric(&app, "tollgate_requests_total", &[("model", "steady-1"), ("status_class", "2xx")]),
        2.0
    );
    assert!(metric(&app, "tollgate_tokens_total", &[("model", "steady-1"), ("direction", "output")]) >= 4.0);
    assert!(metric(&app, "tollgate_cost_micro_usd_total", &[("model", "steady-1")]) >= 4_000_000.0);
    assert_eq!(metric(&app, "tollgate_requests_total", &[("code", "model_not_found")]), 1.0);
    let ttft: Value = json!(metric(&app, "tollgate_time_to_first_token_seconds_count", &[]));
    assert!(ttft.as_f64().unwrap_or(0.0) >= 0.0);
}
