//! Helpers: build requests, send them in-process, read bodies and SSE.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use tollgate_mock_provider::{MockConfig, router};
use tower::ServiceExt;

pub fn app() -> Router {
    router(MockConfig::default())
}

pub fn post(path: &str, headers: &[(&str, &str)], body: &Value) -> Request<Body> {
    post_raw(path, headers, body.to_string())
}

pub fn post_raw(path: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Request<Body> {
    let mut req = Request::post(path).header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(body.into()).unwrap()
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

pub async fn call(app: &Router, req: Request<Body>) -> Response<Body> {
    // A generous bound: nothing here should take long, and a hang must fail, not block.
    tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(req))
        .await
        .expect("response within 10s")
        .unwrap()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap_or_else(|| panic!("header {name}")).to_str().unwrap()
    }
}

/// Sends a request and reads the whole body, which must not error.
pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = call(app, req).await;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("body within 10s")
        .expect("body without error")
        .to_bytes();
    Reply { status: parts.status, headers: parts.headers, body }
}

/// Reads a body frame by frame until it ends or errors: the bytes, and the error if any.
pub async fn read_until_error(body: Body) -> (Vec<u8>, Option<String>) {
    let mut body = body;
    let mut bytes = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), body.frame()).await.expect("frame within 10s") {
            None => return (bytes, None),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            Some(Err(err)) => return (bytes, Some(err.to_string())),
        }
    }
}

/// The JSON payloads of an OpenAI stream's `data:` lines, and whether `[DONE]` ended it.
pub fn openai_chunks(body: &str) -> (Vec<Value>, bool) {
    let mut chunks = Vec::new();
    let mut done = false;
    for event in body.split_terminator("\n\n") {
        let data = event.strip_prefix("data: ").expect("data line");
        assert!(!done, "nothing after [DONE]");
        if data == "[DONE]" {
            done = true;
        } else {
            chunks.push(serde_json::from_str(data).unwrap());
        }
    }
    (chunks, done)
}

/// The `(event, data)` pairs of an Anthropic stream.
pub fn anthropic_events(body: &str) -> Vec<(String, Value)> {
    body.split_terminator("\n\n")
        .map(|event| {
            let (name, data) = event.split_once('\n').expect("two lines");
            let name = name.strip_prefix("event: ").expect("event line");
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name, "event name matches data type");
            (name.to_owned(), data)
        })
        .collect()
}

pub fn chat_body(user: &str) -> Value {
    serde_json::json!({
        "model": "mock-1",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": user},
        ],
    })
}

pub fn messages_body(user: &str) -> Value {
    serde_json::json!({
        "model": "claude-mock",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": user}],
    })
}
