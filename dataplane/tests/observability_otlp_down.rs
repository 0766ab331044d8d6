#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! A collector that is down must never slow requests: spans are queued (and dropped when the
//! queue is full) and shutdown is bounded by the export timeout. One test: `init_tracing`
//! installs the global subscriber.

use std::time::{Duration, Instant};

use http::HeaderMap;
use tollgate_dataplane::observability::{
    GenAiOperation, RequestSpan, RequestSpanStart, TelemetryConfig, init_tracing,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_costs_requests_nothing_and_shutdown_is_bounded() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = TelemetryConfig {
        otlp_endpoint: Some(format!("http://127.0.0.1:{port}")),
        log_filter: "off".into(),
        export_timeout: Duration::from_millis(500),
        batch_delay: Duration::from_millis(20),
        ..TelemetryConfig::default()
    };
    let guard = init_tracing(&cfg).unwrap();
    let headers = HeaderMap::new();
    let started = Instant::now();
    // More spans than the batch queue holds (2,048): the overflow is dropped, not waited for.
    for i in 0..5_000 {
        let request_id = format!("req-{i}");
        let span = RequestSpan::start(&RequestSpanStart {
            operation: GenAiOperation::Chat,
            endpoint: "chat.completions",
            request_id: &request_id,
            headers: &headers,
        });
        span.set_model("gpt-4o-mini");
        let _settle = span.settle();
    }
    let emitting = started.elapsed();
    assert!(emitting < Duration::from_secs(5), "emitting 10,000 spans (5,000 requests) took {emitting:?}");

    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || guard.shutdown()).await.unwrap();
    let shutdown = started.elapsed();
    eprintln!("emitting: {emitting:?}, shutdown: {shutdown:?} ({result:?})");
    assert!(shutdown < Duration::from_secs(4), "shutdown took {shutdown:?} ({result:?})");
}
