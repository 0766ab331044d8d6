//! Time from a circuit breaker opening to the first recovered success, through the whole
//! gateway (in-process, mock provider), with the default breaker settings:
//! `cargo bench -p tollgate-dataplane --bench breaker_recovery`.
//!
//! The upstream fails (HTTP 500) until the breaker opens; from then on it is healthy again
//! and a client retries every 10 ms. Reported: how long until a request succeeds, over a few
//! rounds, and how many calls reached the upstream while the breaker was open (must be 0).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark fails loudly")]

use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode};
use tollgate_dataplane::reliability::RetryPolicy;
use tollgate_dataplane::{Gateway, GatewayOptions};
use tollgate_testkit::{ScratchDb, TestGateway, developer};
use tower::ServiceExt;

const TOKENS: &str = "apiVersion: tollgate.dev/v1alpha1\nkind: IPToken\nmetadata: {name: m}\nspec:\n  provider: mock\n  models: [{name: m-1}]\n";

async fn status(router: &axum::Router, key: &str, fail: bool) -> StatusCode {
    let mut r = Request::post("/v1/chat/completions").header("authorization", format!("Bearer {key}"));
    if fail {
        r = r.header("x-mock-fault", "status:500");
    }
    let body = r#"{"model":"m-1","messages":[{"role":"user","content":"hi"}]}"#;
    router.clone().oneshot(r.body(Body::from(body)).unwrap()).await.unwrap().status()
}

fn upstream_calls(gateway: &Gateway) -> f64 {
    let text = gateway.metrics().encode();
    text.lines()
        .filter(|l| l.starts_with("tollgate_upstream_attempts_total") && !l.contains("breaker_open"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::main]
async fn main() {
    let db = ScratchDb::sqlite();
    let options = GatewayOptions {
        retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
        ..Default::default()
    };
    let t = TestGateway::builder(db.connect().await).options(options).resources(TOKENS).start().await;
    let key = t.issue_key("b", developer("b")).await.secret;
    let router = t.router();
    let gateway = t.gateway;
    let cfg = tollgate_dataplane::reliability::BreakerConfig::default();
    println!(
        "breaker: {} consecutive failures, open {:?} first (doubling), probe timeout {:?}",
        cfg.consecutive_failures, cfg.open_base, cfg.probe_timeout
    );
    let mut samples = Vec::new();
    for round in 1..=3 {
        // Fail until the breaker refuses without calling upstream.
        while status(&router, &key, true).await != StatusCode::SERVICE_UNAVAILABLE {}
        let opened = Instant::now();
        let calls_at_open = upstream_calls(&gateway);
        loop {
            if status(&router, &key, false).await == StatusCode::OK {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = opened.elapsed();
        let leaked = upstream_calls(&gateway) - calls_at_open - 1.0;
        println!(
            "round {round}: open -> first recovered success {:.3} s; upstream calls while open: {leaked}",
            took.as_secs_f64()
        );
        samples.push(took.as_secs_f64());
        // Let the breaker's consecutive-trip backoff reset before the next round.
        for _ in 0..30 {
            status(&router, &key, false).await;
        }
    }
    samples.sort_by(f64::total_cmp);
    println!("median open -> recovered: {:.3} s (open period {:?} + one probe)", samples[1], cfg.open_base);
}
