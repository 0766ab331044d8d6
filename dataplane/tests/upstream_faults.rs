//! Upstreams that misbehave in ways the mock provider does not script: a provider that
//! echoes the gateway's own key back in its error messages, in forms no pattern would
//! recognise (issue 17, item 13), and streams that break with an error event or are answered
//! with a plain JSON body (item 12). The gateway knows the key's exact value and masks it
//! (and any prefix of 8 bytes or more) in everything that reaches the caller; a broken
//! stream is charged for what the provider reported, recorded with its error class, and
//! ends with an error event, never `[DONE]`.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_dataplane::reliability::BreakerConfig;
use tollgate_dataplane::secrets::{SecretSource, SecretString};
use tollgate_dataplane::store::{Store, UsageRow};
use tollgate_dataplane::{GatewayOptions, now_ms};
use tollgate_testkit::{ScratchDb, TestGateway, developer};
use tower::ServiceExt;

// NB: a key no pattern recognises (no known prefix, no digits: a self-hosted server's
// token), so only exact masking can hide it.
const KEY: &str = "vllmEchoTokenQuiteSecretValueWithoutDigits";

/// How the provider puts the key it was sent into its messages.
const ECHO_FORMS: &[&str] = &["plain", "assign", "glued", "tabs", "json", "prefix"];

fn echo(form: &str, key: &str) -> String {
    match form {
        "plain" => format!("Incorrect API key provided: {key}."),
        "assign" => format!("request rejected (key={key}&org=none)"),
        "glued" => format!("auth header was Bearer{key}"),
        "tabs" => format!("credential\t{key}\tis revoked"),
        "json" => format!("bad credential {{\"api_key\":\"{key}\"}}"),
        "prefix" => format!("key {}**** has no access", &key[..12]),
        other => panic!("unknown form {other}"),
    }
}

fn sse(events: &[Value]) -> Response {
    let mut body = String::new();
    for e in events {
        body.push_str(&format!("data: {e}\n\n"));
    }
    ([("content-type", "text/event-stream")], body).into_response()
}

fn chunk(content: &str) -> Value {
    json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "echo-1",
           "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
}

/// The misbehaving provider. `x-echo-mode` (forwarded by the gateway) says what to do.
async fn provider(headers: HeaderMap) -> Response {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    let mode = headers.get("x-echo-mode").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let error = |form: &str| json!({"error": {"message": echo(form, &key), "type": "invalid_request_error"}});
    if let Some(form) = mode.strip_prefix("status-") {
        return (StatusCode::BAD_REQUEST, axum::Json(error(form))).into_response();
    }
    if let Some(form) = mode.strip_prefix("stream-error-") {
        // Some content, then the provider's error event, then it hangs up.
        return sse(&[chunk("Hello"), chunk(" there"), error(form)]);
    }
    match mode.as_str() {
        "stream-usage-then-error" => sse(&[
            chunk("Hello"),
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "echo-1",
                   "choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 2000, "total_tokens": 3000}}),
            json!({"error": {"message": "overloaded", "type": "server_error"}}),
        ]),
        "stream-plain-json" => axum::Json(json!({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "echo-1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 2000, "total_tokens": 3000}
        }))
        .into_response(),
        "stream-plain-error" => axum::Json(error("plain")).into_response(),
        _ => sse(&[chunk("Hello"), json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
            "model": "echo-1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})]),
    }
}

struct App {
    router: Router,
    store: Store,
    key: String,
    _db: ScratchDb,
}

async fn start() -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let upstream = Router::new().route("/v1/chat/completions", axum::routing::post(provider));
    tokio::spawn(async move { axum::serve(listener, upstream).await.unwrap() });
    let resources = format!(
        r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {{name: echo}}
spec:
  provider: openai-compatible
  baseUrl: http://{addr}/v1
  secretRef: {{name: echo, key: api-key}}
  forwardHeaders: [x-echo-]
  models:
    - {{name: echo-1, prices: {{inputPerMtok: "1", outputPerMtok: "2"}}}}
"#
    );
    let secrets = SecretSource::from_map(BTreeMap::from([(
        "echo".to_owned(),
        BTreeMap::from([("api-key".to_owned(), SecretString::new(KEY.to_owned()))]),
    )]));
    let db = ScratchDb::sqlite();
    // Every scripted failure would trip the breaker: these tests look at one answer each.
    let options = GatewayOptions {
        breaker: BreakerConfig {
            consecutive_failures: 0,
            failure_rate: f64::NAN,
            ..BreakerConfig::default()
        },
        ..GatewayOptions::default()
    };
    let t = TestGateway::builder(db.connect().await)
        .secrets(secrets)
        .options(options)
        .resources(&resources)
        .start()
        .await;
    let key = t.keys.create("k".into(), developer("alice"), vec![], None, now_ms()).await.unwrap();
    App { router: t.router(), store: t.store, key: key.secret, _db: db }
}

async fn call(app: &App, path: &str, mode: &str, stream: bool, request_id: &str) -> (StatusCode, String) {
    let body = if path == "/v1/messages" {
        json!({"model": "echo-1", "max_tokens": 100, "stream": stream,
               "messages": [{"role": "user", "content": "hi"}]})
    } else {
        json!({"model": "echo-1", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
    };
    let request = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", app.key))
        .header("x-echo-mode", mode)
        .header("x-request-id", request_id)
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether `text` holds the key or any 8-byte piece of it.
fn leaks(text: &str) -> bool {
    (0..=KEY.len() - 8).any(|i| text.contains(&KEY[i..i + 8]))
}

async fn usage_row(store: &Store, request_id: &str) -> UsageRow {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(row) =
            store.recent_usage(50).await.unwrap().into_iter().find(|r| r.request_id == request_id)
        {
            return row;
        }
        assert!(Instant::now() < deadline, "no usage record for {request_id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_providers_echo_of_the_key_never_reaches_the_caller() {
    let app = start().await;
    let mut failures = Vec::new();
    for form in ECHO_FORMS {
        for path in ["/v1/chat/completions", "/v1/messages"] {
            for (mode, stream) in [(format!("status-{form}"), false), (format!("stream-error-{form}"), true)]
            {
                let (status, text) = call(&app, path, &mode, stream, &format!("{form}-{mode}")).await;
                if leaks(&text) {
                    failures.push(format!("{path} {mode}: {status} {text}"));
                }
                // The rest of the provider's message still says what went wrong.
                let rest = match *form {
                    "prefix" => "has no access",
                    "tabs" => "is revoked",
                    _ => "",
                };
                if !text.contains(rest) {
                    failures.push(format!("{path} {mode}: the message lost its text: {text}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn a_stream_broken_by_an_error_event_is_an_error_and_charged() {
    let app = start().await;
    for path in ["/v1/chat/completions", "/v1/messages"] {
        let id = format!("usage-then-error{}", path.replace('/', "-"));
        let (status, text) = call(&app, path, "stream-usage-then-error", true, &id).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(!text.contains("[DONE]"), "a broken stream must not end as if complete: {text}");
        assert!(!text.contains("message_stop"), "{text}");
        assert!(
            text.contains("the provider reported an error mid-stream: overloaded"),
            "the caller is told: {text}"
        );
        let row = usage_row(&app.store, &id).await;
        assert_eq!(row.error_class.as_deref(), Some("upstream_stream_error"));
        // 1,000 input tokens at $1/M and 2,000 output tokens at $2/M = 5,000 micro-USD,
        // capped at what was reserved.
        assert_eq!((row.input_tokens, row.output_tokens), (1000, 2000));
        assert!(row.cost_micros > 0, "charged for what the provider reported: {row:?}");
    }
    // An error event without usage: charged the estimate, never free.
    let (_, text) = call(&app, "/v1/chat/completions", "stream-error-plain", true, "no-usage").await;
    assert!(!text.contains("[DONE]"), "{text}");
    let row = usage_row(&app.store, "no-usage").await;
    assert_eq!(row.error_class.as_deref(), Some("upstream_stream_error"));
    assert!(row.cost_micros > 0, "{row:?}");
}

#[tokio::test]
async fn a_plain_body_answering_a_stream_request_is_an_error_and_charged() {
    let app = start().await;
    let (status, text) = call(&app, "/v1/chat/completions", "stream-plain-json", true, "plain-json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(text.contains("plain body"), "{text}");
    let row = usage_row(&app.store, "plain-json").await;
    assert_eq!(row.error_class.as_deref(), Some("upstream_stream_error"));
    assert_eq!((row.input_tokens, row.output_tokens), (1000, 2000));
    assert!(row.cost_micros > 0);
    let (_, text) = call(&app, "/v1/chat/completions", "stream-plain-error", true, "plain-error").await;
    assert!(!leaks(&text), "{text}");
    assert!(text.contains("Incorrect API key provided"), "{text}");
    // A healthy stream still ends with [DONE] and no error class.
    let (_, text) = call(&app, "/v1/chat/completions", "", true, "healthy").await;
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(usage_row(&app.store, "healthy").await.error_class, None);
}
