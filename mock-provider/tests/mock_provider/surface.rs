//! Everything around the completions: errors, stamps, model list, health.

use serde_json::json;

use crate::support::{app, chat_body, get, messages_body, post, post_raw, send};

#[tokio::test]
async fn malformed_json_is_a_400_in_each_flavor() {
    let app = app();
    let reply = send(&app, post_raw("/v1/chat/completions", &[], "{not json")).await;
    assert_eq!(reply.status, 400);
    let err = reply.json();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(err["error"]["message"].is_string());
    assert_eq!(err["error"]["param"], serde_json::Value::Null);
    assert_eq!(err["error"]["code"], serde_json::Value::Null);

    let reply = send(&app, post_raw("/v1/messages", &[], "[]")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["type"], "error");
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");

    let reply = send(&app, post_raw("/v1/embeddings", &[], "")).await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn bad_control_headers_are_400s_naming_the_header() {
    let reply =
        send(&app(), post("/v1/chat/completions", &[("x-mock-fault", "explode")], &chat_body("hi"))).await;
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("x-mock-fault"));
}

#[tokio::test]
async fn unknown_paths_and_methods_are_json_errors() {
    let app = app();
    let reply = send(&app, post("/v1/completions", &[], &json!({}))).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    let reply = send(&app, get("/v1/chat/completions")).await;
    assert_eq!(reply.status, 405);
    assert!(reply.json()["error"]["message"].is_string());
}

#[tokio::test]
async fn every_response_says_which_credential_arrived_never_its_value() {
    let app = app();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[], "none"),
        (&[("authorization", "Bearer sk-secret")], "bearer"),
        (&[("x-api-key", "sk-secret")], "x-api-key"),
        (&[("api-key", "sk-secret")], "api-key"),
        (&[("authorization", "Bearer a"), ("x-api-key", "b")], "bearer,x-api-key"),
    ];
    for (headers, want) in cases {
        let reply = send(&app, post("/v1/chat/completions", headers, &chat_body("hi"))).await;
        assert_eq!(reply.header("x-mock-auth"), want);
        assert!(reply.header("x-mock-request-id").starts_with("mockreq_"));
        for (name, value) in reply.headers.iter() {
            assert!(!value.as_bytes().windows(9).any(|w| w == b"sk-secret"), "{name} leaks");
        }
        assert!(!String::from_utf8_lossy(&reply.body).contains("sk-secret"));
    }
    // Also on errors and unknown paths.
    let reply = send(&app, post("/nope", &[("x-api-key", "k")], &json!({}))).await;
    assert_eq!(reply.header("x-mock-auth"), "x-api-key");
}

#[tokio::test]
async fn echo_headers_lists_received_names() {
    let headers = [
        ("x-mock-echo-headers", "1"),
        ("authorization", "Bearer sk-secret"),
        ("x-request-id", "abc"),
        ("anthropic-version", "2023-06-01"),
    ];
    let reply = send(&app(), post("/v1/messages", &headers, &messages_body("hi"))).await;
    assert_eq!(reply.header("x-mock-seen-headers"), "authorization,x-mock-echo-headers,x-request-id");
    let reply = send(&app(), post("/v1/messages", &[], &messages_body("hi"))).await;
    assert!(reply.headers.get("x-mock-seen-headers").is_none());
}

#[tokio::test]
async fn models_and_health() {
    let app = app();
    let reply = send(&app, get("/v1/models")).await;
    assert_eq!(reply.status, 200);
    let models = reply.json();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"mock-1") && ids.contains(&"mock-embedding-1"));

    let reply = send(&app, get("/healthz")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "ok");
}
