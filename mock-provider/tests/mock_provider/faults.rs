//! Fault injection, in-process: statuses, rate limits, stalls, and emulated resets.

use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_mock_provider::{Fault, MockConfig, router};

use crate::support::{app, call, chat_body, messages_body, openai_chunks, post, read_until_error, send};

fn streaming(mut body: serde_json::Value) -> serde_json::Value {
    body["stream"] = json!(true);
    body
}

#[tokio::test]
async fn status_fault_has_a_provider_shaped_body() {
    let app = app();
    let reply =
        send(&app, post("/v1/chat/completions", &[("x-mock-fault", "status:503")], &chat_body("hi"))).await;
    assert_eq!(reply.status, 503);
    let err = reply.json();
    assert_eq!(err["error"]["message"], "mock fault: HTTP 503");
    assert_eq!(err["error"]["type"], "server_error");
    assert!(err["error"].get("param").is_some() && err["error"].get("code").is_some());

    let reply =
        send(&app, post("/v1/messages", &[("x-mock-fault", "status:529")], &messages_body("hi"))).await;
    assert_eq!(reply.status, 529);
    assert_eq!(
        reply.json(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "mock fault: HTTP 529"}})
    );
    let reply =
        send(&app, post("/v1/messages", &[("x-mock-fault", "status:500")], &messages_body("hi"))).await;
    assert_eq!(reply.json()["error"]["type"], "api_error");
}

#[tokio::test]
async fn rate_limit_fault_sets_retry_after() {
    let app = app();
    let reply =
        send(&app, post("/v1/chat/completions", &[("x-mock-fault", "429:7")], &chat_body("hi"))).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), "7");
    assert_eq!(reply.json()["error"]["type"], "rate_limit_error");

    let reply = send(&app, post("/v1/messages", &[("x-mock-fault", "429:2")], &messages_body("hi"))).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), "2");
    assert_eq!(reply.json()["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn config_fault_rate_applies_unless_a_header_says_otherwise() {
    let app = router(MockConfig {
        fault_rate: 1.0,
        default_fault: Some(Fault::Status(502)),
        ..MockConfig::default()
    });
    let reply = send(&app, post("/v1/chat/completions", &[], &chat_body("hi"))).await;
    assert_eq!(reply.status, 502);
    let reply = send(&app, post("/v1/chat/completions", &[("x-mock-fault", "none")], &chat_body("hi"))).await;
    assert_eq!(reply.status, 200);
    let headers = [("x-mock-fault", "status:418"), ("x-mock-fault-rate", "0")];
    let reply = send(&app, post("/v1/chat/completions", &headers, &chat_body("hi"))).await;
    assert_eq!(reply.status, 200);

    // Header rate without a header fault: the config's default fault, else status:500.
    let plain = crate::support::app();
    let reply =
        send(&plain, post("/v1/chat/completions", &[("x-mock-fault-rate", "1")], &chat_body("hi"))).await;
    assert_eq!(reply.status, 500);
    let reply =
        send(&app, post("/v1/chat/completions", &[("x-mock-fault-rate", "1")], &chat_body("hi"))).await;
    assert_eq!(reply.status, 502);
}

#[tokio::test]
async fn emulated_reset_before_errors_before_any_byte() {
    let resp =
        call(&app(), post("/v1/chat/completions", &[("x-mock-fault", "reset-before")], &chat_body("hi")))
            .await;
    let (bytes, err) = read_until_error(resp.into_body()).await;
    assert!(bytes.is_empty());
    assert!(err.unwrap().contains("reset"));
}

#[tokio::test]
async fn emulated_reset_mid_stream_sends_the_first_chunks_then_errors() {
    let headers = [("x-mock-fault", "reset-mid")];
    let resp =
        call(&app(), post("/v1/chat/completions", &headers, &streaming(chat_body("one two three")))).await;
    assert_eq!(resp.status(), 200);
    let (bytes, err) = read_until_error(resp.into_body()).await;
    assert!(err.unwrap().contains("reset"));
    let text = String::from_utf8(bytes).unwrap();
    let (chunks, done) = openai_chunks(&text);
    assert!(!done);
    assert_eq!(chunks.len(), 2, "role chunk and first content chunk");
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Mock ");

    let resp = call(&app(), post("/v1/messages", &headers, &streaming(messages_body("one two")))).await;
    let (bytes, err) = read_until_error(resp.into_body()).await;
    assert!(err.is_some());
    let text = String::from_utf8(bytes).unwrap();
    assert_eq!(text.matches("event: ").count(), 4, "{text}");
    assert!(text.ends_with("\"text\":\"Mock \"}}\n\n"), "{text}");
}

#[tokio::test]
async fn emulated_reset_mid_json_sends_half_the_body() {
    let headers = [("x-mock-fault", "reset-mid")];
    let resp = call(&app(), post("/v1/chat/completions", &headers, &chat_body("hi"))).await;
    let declared: usize = resp.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let (bytes, err) = read_until_error(resp.into_body()).await;
    assert!(err.is_some());
    assert_eq!(bytes.len(), declared / 2);
    assert!(bytes.starts_with(b"{\"id\":\"chatcmpl-"));
}

#[tokio::test]
async fn stall_sends_the_first_chunks_then_nothing() {
    let headers = [("x-mock-fault", "stall")];
    let resp = call(&app(), post("/v1/chat/completions", &headers, &streaming(chat_body("a b c")))).await;
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    use http_body_util::BodyExt;
    while !String::from_utf8_lossy(&seen).contains("\"content\":\"Mock \"") {
        let frame = body.frame().await.unwrap().unwrap();
        seen.extend_from_slice(&frame.into_data().unwrap());
    }
    let next = tokio::time::timeout(Duration::from_millis(300), body.frame()).await;
    assert!(next.is_err(), "nothing after the first chunks");
}

#[tokio::test]
async fn stall_without_streaming_never_responds() {
    use tower::ServiceExt;
    let req = post("/v1/chat/completions", &[("x-mock-fault", "stall")], &chat_body("hi"));
    let pending = tokio::time::timeout(Duration::from_millis(300), app().oneshot(req)).await;
    assert!(pending.is_err(), "no response within 300ms");
}

#[tokio::test]
async fn latency_ttft_and_gaps_delay_as_asked() {
    let app = app();
    let start = Instant::now();
    let reply =
        send(&app, post("/v1/chat/completions", &[("x-mock-latency-ms", "120")], &chat_body("hi"))).await;
    assert_eq!(reply.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(120));

    let headers = [("x-mock-ttft-ms", "200"), ("x-mock-chunk-gap-ms", "30"), ("x-mock-chunks", "3")];
    let start = Instant::now();
    let resp = call(&app, post("/v1/chat/completions", &headers, &streaming(chat_body("hello world")))).await;
    assert!(start.elapsed() < Duration::from_millis(200), "headers come before the first token");
    let (bytes, err) = read_until_error(resp.into_body()).await;
    assert!(err.is_none());
    // ttft + two gaps between three content chunks
    assert!(start.elapsed() >= Duration::from_millis(200 + 2 * 30));
    let (_, done) = openai_chunks(std::str::from_utf8(&bytes).unwrap());
    assert!(done);

    let app = router(MockConfig { latency: Duration::from_millis(100), ..MockConfig::default() });
    let start = Instant::now();
    send(&app, post("/v1/messages", &[], &messages_body("hi"))).await;
    assert!(start.elapsed() >= Duration::from_millis(100));
}
