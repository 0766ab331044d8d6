#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! The data plane's HTTP API driven in-process (`oneshot`), against the in-process mock
//! provider and a real SQLite file.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_crds::{compile, parse_documents};
use tollgate_dataplane::secrets::SecretSource;
use tollgate_dataplane::store::Store;
use tollgate_dataplane::{Gateway, GatewayOptions, now_ms};
use tollgate_testkit::{ScratchDb, TestGateway, developer};
use tower::ServiceExt;

struct App {
    router: Router,
    gateway: Gateway,
    store: Store,
    key: String,
    _db: ScratchDb,
}

const RESOURCES: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models:
    - name: mock-1
    - name: mock-2
    - name: mock-embedding-1
      kind: embedding
"#;

async fn spawn_app(options: GatewayOptions) -> App {
    let db = ScratchDb::sqlite();
    let t = TestGateway::builder(db.connect().await).options(options).resources(RESOURCES).start().await;
    let models = vec!["mock-1".into(), "mock-embedding-1".into()];
    let key = t.keys.create("k".into(), developer("alice"), models, None, now_ms()).await.unwrap();
    App { router: t.router(), gateway: t.gateway, store: t.store, key: key.secret, _db: db }
}

async fn call(app: &App, request: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, value)
}

fn post(path: &str, key: Option<&str>, body: impl Into<Body>) -> http::request::Builder {
    let _ = body;
    let mut b = Request::builder().method("POST").uri(path).header("content-type", "application/json");
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    b
}

fn chat_body(model: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]}).to_string()
}

#[tokio::test]
async fn bad_inputs_get_precise_errors_in_the_apis_own_format() {
    let app = spawn_app(GatewayOptions { max_body_bytes: 4096, ..Default::default() }).await;
    let k = Some(app.key.as_str());
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let big =
        json!({"model": "mock-1", "messages": [{"role": "user", "content": "x".repeat(5000)}]}).to_string();
    // (path, key, body, status, code, param, message fragment)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str, Option<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/v1/chat/completions",
            k,
            b"{\"model\": \"mock-1\",".to_vec(),
            400,
            "invalid_request",
            None,
            "line 1 column 19",
        ),
        (
            "/v1/chat/completions",
            k,
            b"{\"model\": mock}".to_vec(),
            400,
            "invalid_request",
            None,
            "line 1 column 11",
        ),
        ("/v1/chat/completions", k, vec![0xff, 0xfe, b'{'], 400, "invalid_request", None, "not valid JSON"),
        ("/v1/chat/completions", k, b"".to_vec(), 400, "invalid_request", None, "empty"),
        ("/v1/chat/completions", k, b"[1,2]".to_vec(), 400, "invalid_request", None, "JSON object"),
        ("/v1/chat/completions", k, nested.into_bytes(), 413, "request_too_large", None, "4096"),
        (
            "/v1/chat/completions",
            k,
            br#"{"model":"mock-1","messages":"hi"}"#.to_vec(),
            400,
            "invalid_request",
            Some("messages"),
            "must be an array",
        ),
        (
            "/v1/chat/completions",
            k,
            br#"{"model":1,"messages":[]}"#.to_vec(),
            400,
            "invalid_request",
            Some("model"),
            "must be a string",
        ),
        (
            "/v1/chat/completions",
            k,
            br#"{"model":"mock-1","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#.to_vec(),
            400,
            "invalid_request",
            Some("stream"),
            "boolean",
        ),
        (
            "/v1/chat/completions",
            None,
            chat_body("mock-1").into_bytes(),
            401,
            "missing_api_key",
            None,
            "API key",
        ),
        (
            "/v1/chat/completions",
            Some("tg-not-a-real-key"),
            chat_body("mock-1").into_bytes(),
            401,
            "invalid_api_key",
            None,
            "invalid",
        ),
        (
            "/v1/chat/completions",
            Some("sk-openai-style"),
            chat_body("mock-1").into_bytes(),
            401,
            "invalid_api_key",
            None,
            "invalid",
        ),
        (
            "/v1/chat/completions",
            k,
            chat_body("mock-2").into_bytes(),
            403,
            "model_not_allowed",
            Some("model"),
            "may not use",
        ),
        (
            "/v1/chat/completions",
            k,
            chat_body("gpt-9").into_bytes(),
            404,
            "model_not_found",
            Some("model"),
            "does not exist",
        ),
        ("/v1/chat/completions", k, big.into_bytes(), 413, "request_too_large", None, "limit"),
        (
            "/v1/chat/completions",
            k,
            chat_body("mock-embedding-1").into_bytes(),
            400,
            "invalid_request",
            Some("model"),
            "embedding model",
        ),
        (
            "/v1/embeddings",
            k,
            br#"{"model":"mock-embedding-1","input":[]}"#.to_vec(),
            400,
            "invalid_request",
            Some("input"),
            "empty",
        ),
        (
            "/v1/embeddings",
            k,
            br#"{"model":"mock-1","input":"x"}"#.to_vec(),
            400,
            "invalid_request",
            Some("model"),
            "chat model",
        ),
        ("/v1/nope", k, b"{}".to_vec(), 404, "unknown_url", None, "/v1/nope"),
    ];
    for (path, key, body, status, code, param, fragment) in cases {
        let request = post(path, key, ()).body(Body::from(body)).unwrap();
        let (got, _, v) = call(&app, request).await;
        let label = format!("{path} expecting {status} {code}: got {got} {v}");
        assert_eq!(got.as_u16(), status, "{label}");
        assert_eq!(v["error"]["code"], code, "{label}");
        assert_eq!(v["error"]["param"].as_str(), param, "{label}");
        assert!(v["error"]["message"].as_str().unwrap().contains(fragment), "{label}");
        assert!(v["error"]["type"].is_string(), "{label}");
    }

    // Wrong method.
    let request = Request::builder().uri("/v1/chat/completions").body(Body::empty()).unwrap();
    let (status, _, v) = call(&app, request).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn anthropic_endpoint_answers_in_anthropic_format() {
    let app = spawn_app(GatewayOptions::default()).await;
    let cases: Vec<(Option<&str>, Value, u16, &str)> = vec![
        (
            Some(&app.key),
            json!({"model": "mock-1", "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
        ),
        (
            None,
            json!({"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            401,
            "authentication_error",
        ),
        (
            Some(&app.key),
            json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            404,
            "not_found_error",
        ),
        (
            Some(&app.key),
            json!({"model": "mock-2", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            403,
            "permission_error",
        ),
    ];
    for (key, body, status, kind) in cases {
        let mut b = Request::builder().method("POST").uri("/v1/messages");
        if let Some(k) = key {
            b = b.header("x-api-key", k);
        }
        let (got, _, v) = call(&app, b.body(Body::from(body.to_string())).unwrap()).await;
        assert_eq!(got.as_u16(), status, "{v}");
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
    }
}

#[tokio::test]
async fn upstream_failures_map_to_gateway_errors() {
    let app =
        spawn_app(GatewayOptions { header_timeout: Duration::from_millis(300), ..Default::default() }).await;
    let cases: Vec<(&str, u16, &str)> = vec![
        ("status:500", 502, "upstream_error"),
        ("status:503", 503, "upstream_unavailable"),
        ("status:401", 502, "upstream_auth_failed"),
        ("status:400", 400, "invalid_request"),
        ("429:7", 429, "upstream_rate_limited"),
        ("reset-before", 502, "upstream_connection_error"),
    ];
    for (fault, status, code) in cases {
        let request = post("/v1/chat/completions", Some(&app.key), ())
            .header("x-mock-fault", fault)
            .body(Body::from(chat_body("mock-1")))
            .unwrap();
        let (got, headers, v) = call(&app, request).await;
        assert_eq!(got.as_u16(), status, "{fault}: {v}");
        assert_eq!(v["error"]["code"], code, "{fault}: {v}");
        if fault.starts_with("429") {
            assert_eq!(headers["retry-after"], "7");
        }
    }
    let request = post("/v1/chat/completions", Some(&app.key), ())
        .header("x-mock-latency-ms", "5000")
        .body(Body::from(chat_body("mock-1")))
        .unwrap();
    let (got, _, v) = call(&app, request).await;
    assert_eq!(got, StatusCode::GATEWAY_TIMEOUT, "{v}");
}

#[tokio::test]
async fn chat_and_usage_record() {
    let app = spawn_app(GatewayOptions::default()).await;
    let request = post("/v1/chat/completions", Some(&app.key), ())
        .header("x-request-id", "req-123")
        .body(Body::from(chat_body("mock-1")))
        .unwrap();
    let (status, headers, v) = call(&app, request).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(headers["x-request-id"], "req-123");
    assert_eq!(headers["x-tollgate-model"], "mock-1");
    assert_eq!(v["object"], "chat.completion");
    let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rows = app.store.recent_usage(10).await.unwrap();
        if let Some(row) = rows.iter().find(|r| r.request_id == "req-123") {
            assert_eq!(row.principal_name.as_deref(), Some("alice"));
            assert_eq!(row.model.as_deref(), Some("mock-1"));
            assert_eq!(row.provider.as_deref(), Some("mock"));
            assert_eq!(row.ip_token.as_deref(), Some("default/mock"));
            assert_eq!(row.input_tokens as u64, prompt);
            assert_eq!(row.status, 200);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no usage record written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = &app.gateway;
}

#[tokio::test]
async fn models_lists_only_what_the_key_may_use() {
    let app = spawn_app(GatewayOptions::default()).await;
    let request = Request::builder().uri("/v1/models").header("authorization", format!("Bearer {}", app.key));
    let (status, _, v) = call(&app, request.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["mock-1", "mock-embedding-1"]);
}

#[tokio::test]
async fn a_token_without_its_key_is_out_of_service_and_the_rest_applies() {
    let app = spawn_app(GatewayOptions::default()).await;
    let yaml = format!(
        "{RESOURCES}---{}",
        r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: openai}
spec:
  provider: openai
  secretRef: {name: nowhere, key: api-key}
  models: [{name: gpt-4o-mini}, {name: mock-2}]
"#
    );
    let config = compile(&parse_documents("t", &yaml).unwrap().resources).unwrap();
    let hash = config.hash.clone();
    app.gateway.apply_config(config.clone(), &SecretSource::default()).unwrap();
    assert_eq!(app.gateway.config_hash(), hash, "applied, the keyless token aside");
    let out = app.gateway.out_of_service();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].ip_token.as_str(), out[0].reason), ("default/openai", "SecretNotFound"));
    assert!(out[0].message.contains("TOLLGATE_SECRET_NOWHERE_API_KEY"), "{}", out[0].message);

    let any =
        app.gateway.keys().create("any".into(), developer("bob"), vec![], None, now_ms()).await.unwrap();
    let chat = |model: &str| {
        post("/v1/chat/completions", Some(&any.secret), ()).body(Body::from(chat_body(model))).unwrap()
    };
    // Served by the mock alone, and by the mock beside the keyless token: never the latter.
    assert_eq!(call(&app, chat("mock-1")).await.0, StatusCode::OK);
    for _ in 0..8 {
        assert_eq!(call(&app, chat("mock-2")).await.0, StatusCode::OK);
    }
    // Served only by the keyless token: a clear 503 naming it, not where keys are kept.
    let (status, _, v) = call(&app, chat("gpt-4o-mini")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "ip_token_unavailable", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("default/openai") && message.contains("key is not set"), "{message}");
    assert!(!message.contains("TOLLGATE_SECRET"), "{message}");

    // The same configuration with its key set is not "current": it is applied, and served.
    let keyed = SecretSource::from_map(
        [(
            "nowhere".to_owned(),
            [("api-key".to_owned(), tollgate_dataplane::secrets::SecretString::new("sk-x".into()))].into(),
        )]
        .into(),
    );
    assert!(app.gateway.is_current(&config, &SecretSource::default()));
    assert!(!app.gateway.is_current(&config, &keyed));
    app.gateway.apply_config(config, &keyed).unwrap();
    assert!(app.gateway.out_of_service().is_empty());
}
