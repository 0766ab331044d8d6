//! Open-loop load generator: sends chat completions at a fixed rate and reports latency
//! percentiles as JSON. Requests are sent on schedule whatever the responses do (a slow
//! server cannot slow the sender down, so there is no coordinated omission); each latency is
//! timed from that request's send.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
struct Args {
    /// Base URL, e.g. http://127.0.0.1:8080 (the API's path is appended).
    #[arg(long)]
    url: String,
    /// Bearer key (optional for the mock).
    #[arg(long, default_value = "")]
    key: String,
    /// Model to ask for.
    #[arg(long, default_value = "mock-1")]
    model: String,
    /// Requests per second.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The API to drive: `chat` (POST /v1/chat/completions) or `responses` (POST /v1/responses).
    #[arg(long, default_value = "chat")]
    api: String,
    /// For `responses`: whether the answers are stored (the Responses API's default).
    #[arg(long, default_value_t = false)]
    store: bool,
    /// Unmeasured warm-up seconds.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build_http();
    let prompt = "Say hello to the benchmark.";
    let (path, body) = match args.api.as_str() {
        "chat" => (
            "chat/completions",
            serde_json::json!({"model": args.model, "messages": [{"role": "user", "content": prompt}]}),
        ),
        "responses" => {
            ("responses", serde_json::json!({"model": args.model, "input": prompt, "store": args.store}))
        }
        other => anyhow::bail!("unknown --api {other:?}; expected chat or responses"),
    };
    let uri: http::Uri = format!("{}/v1/{path}", args.url.trim_end_matches('/')).parse()?;
    let body = Bytes::from(body.to_string());
    let samples = Arc::new(Mutex::new(Vec::<u64>::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let total = u64::from(args.rate) * (args.seconds + args.warmup);
    let warm = u64::from(args.rate) * args.warmup;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let client = client.clone();
        let mut request = http::Request::post(uri.clone()).header("content-type", "application/json");
        if !args.key.is_empty() {
            request = request.header("authorization", format!("Bearer {}", args.key));
        }
        let request = request.body(Full::new(body.clone())).context("request")?;
        let samples = Arc::clone(&samples);
        let errors = Arc::clone(&errors);
        tasks.push(tokio::spawn(async move {
            // Timed from the actual send: the sender never waits for responses (open loop),
            // and tokio's 1 ms timer granularity would otherwise add up to 1 ms to both sides.
            let sent = Instant::now();
            let ok = match client.request(request).await {
                Ok(response) => {
                    let status = response.status();
                    response.into_body().collect().await.is_ok() && status.is_success()
                }
                Err(_) => false,
            };
            let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
            if !ok {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else if i >= warm {
                samples.lock().await.push(micros);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut s = samples.lock().await.clone();
    s.sort_unstable();
    let out = serde_json::json!({
        "requests": s.len(),
        "errors": errors.load(std::sync::atomic::Ordering::Relaxed),
        "achieved_rps": total as f64 / elapsed,
        "p50_us": percentile(&s, 50.0),
        "p90_us": percentile(&s, 90.0),
        "p99_us": percentile(&s, 99.0),
        "max_us": s.last().copied().unwrap_or(0),
    });
    println!("{out}");
    Ok(())
}
