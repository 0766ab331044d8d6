#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Traces end to end: real requests through the gateway's `router()` (in-process, with the
//! mock provider), exported by the real pipeline to an in-process OTLP gRPC receiver. The
//! assertions read only what the receiver got. `init_tracing` installs the global
//! subscriber, so this binary holds exactly one test.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::json;
use tokio::sync::mpsc;
use tollgate_dataplane::observability::tracing::{DEFAULT_TRACE_FILTER, attr};
use tollgate_dataplane::observability::{LogFormat, TelemetryConfig, init_tracing};
use tollgate_testkit::{ScratchDb, TestGateway, developer};
use tower::ServiceExt;

const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";
const PROVIDER_KEY: &str = "sk-proj-ZmFrZS1wcm92aWRlci1rZXk";

/// `mock-1` under a hard budget and a safety policy for alice; `flaky-1` (whose token
/// forwards the mock's fault headers) falls back to `steady-1` (whose token does not);
/// bob's budget is too small for any request.
const RESOURCES: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models:
    - name: mock-1
      prices: {inputPerMtok: "1", outputPerMtok: "2"}
    - name: flaky-1
      prices: {inputPerMtok: "1", outputPerMtok: "2"}
      fallbacks: [steady-1]
---
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: steady}
spec:
  provider: mock
  forwardHeaders: [x-steady-]
  models:
    - name: steady-1
      prices: {inputPerMtok: "1", outputPerMtok: "2"}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: alice}
spec: {subject: {kind: developer, name: alice}, limit: "100", period: monthly, enforcement: hard}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: bob}
spec: {subject: {kind: developer, name: bob}, limit: "0.000001", period: monthly, enforcement: hard}
---
apiVersion: tollgate.dev/v1alpha1
kind: SafetyPolicy
metadata: {name: pii}
spec:
  selector:
    subjects: [{kind: developer, name: alice}]
  input:
    detectors:
      - {id: pii.email, action: log}
  output:
    detectors:
      - {id: pii.email, action: redact}
"#;

struct Receiver {
    tx: mpsc::UnboundedSender<ExportTraceServiceRequest>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.tx.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attrs(span: &OtlpSpan) -> HashMap<&str, &Any> {
    span.attributes
        .iter()
        .filter_map(|kv| Some((kv.key.as_str(), kv.value.as_ref()?.value.as_ref()?)))
        .collect()
}

fn string<'a>(span: &'a OtlpSpan, key: &str) -> &'a str {
    match attrs(span).get(key) {
        Some(Any::StringValue(s)) => s,
        other => panic!("{} {key}: expected a string, got {other:?}", span.name),
    }
}

fn int(span: &OtlpSpan, key: &str) -> i64 {
    match attrs(span).get(key) {
        Some(Any::IntValue(i)) => *i,
        other => panic!("{} {key}: expected an int, got {other:?}", span.name),
    }
}

fn is_error(span: &OtlpSpan) -> bool {
    span.status.as_ref().is_some_and(|s| s.code == 2)
}

/// One request through the router with a `traceparent` of trace `trace`; the whole body is
/// read, so a stream has ended when this returns.
async fn call(
    router: &Router,
    key: &str,
    trace: &str,
    body: serde_json::Value,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut request = Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .header("x-api-key", PROVIDER_KEY)
        .header("traceparent", format!("00-{trace}-{CALLER_SPAN_ID}-01"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = router.clone().oneshot(request.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// What the receiver got so far, and more as it arrives.
struct Received {
    rx: mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    requests: Vec<ExportTraceServiceRequest>,
}

impl Received {
    fn spans(&self) -> Vec<&OtlpSpan> {
        self.requests
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect()
    }

    fn trace(&self, trace: &str) -> Vec<&OtlpSpan> {
        self.spans().into_iter().filter(|s| hex(&s.trace_id) == trace).collect()
    }

    /// Waits (with a deadline) until trace `trace` holds `n` spans.
    async fn wait_for(&mut self, trace: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.trace(trace).len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(r)) => self.requests.push(r),
                _ => panic!(
                    "trace {trace}: {:?} arrived before the deadline, expected {n} spans",
                    self.trace(trace).iter().map(|s| &s.name).collect::<Vec<_>>()
                ),
            }
        }
    }
}

/// The request span of a trace (the one whose parent is the caller's span) and its
/// children's names, sorted.
fn tree<'a>(spans: &[&'a OtlpSpan]) -> (&'a OtlpSpan, Vec<&'a OtlpSpan>, Vec<String>) {
    let roots: Vec<&&OtlpSpan> = spans.iter().filter(|s| hex(&s.parent_span_id) == CALLER_SPAN_ID).collect();
    assert_eq!(roots.len(), 1, "one request span: {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    let root = *roots[0];
    let children: Vec<&OtlpSpan> =
        spans.iter().copied().filter(|s| s.parent_span_id == root.span_id).collect();
    assert_eq!(children.len() + 1, spans.len(), "every other span is a child of the request span");
    let mut names: Vec<String> = children.iter().map(|s| s.name.clone()).collect();
    names.sort_unstable();
    (root, children, names)
}

fn child<'a>(children: &[&'a OtlpSpan], name: &str) -> &'a OtlpSpan {
    children.iter().copied().find(|s| s.name == name).unwrap_or_else(|| panic!("no {name} span"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_requests_export_the_documented_span_tree_with_genai_attributes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver { tx }))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let cfg = TelemetryConfig {
        otlp_endpoint: Some(format!("http://{addr}")),
        log_format: LogFormat::Json,
        log_filter: "warn".into(),
        trace_filter: DEFAULT_TRACE_FILTER.into(),
        batch_delay: Duration::from_millis(50),
        ..TelemetryConfig::default()
    };
    let guard = init_tracing(&cfg).unwrap();
    assert!(guard.traces_enabled());
    let mut received = Received { rx, requests: Vec::new() };

    let db = ScratchDb::sqlite();
    let t = TestGateway::start(db.connect().await, RESOURCES).await;
    let alice = t.issue_key("alice", developer("alice")).await.secret;
    let bob = t.issue_key("bob", developer("bob")).await.secret;
    let router = t.router();
    let question = |model: &str, stream: bool| {
        json!({"model": model, "max_tokens": 50, "stream": stream,
            "messages": [{"role": "user", "content": "write to carol@example.com please"}]})
    };

    // 1. A plain answer: every documented child, in one trace under the caller's span.
    let plain = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (status, body) =
        call(&router, &alice, plain, question("mock-1", false), &[("x-mock-reply", "mail dave@example.com")])
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("[REDACTED"), "the answer's address was redacted: {body}");
    received.wait_for(plain, 6).await;
    let spans = received.trace(plain);
    let (root, children, names) = tree(&spans);
    assert_eq!(names, ["budget.reserve", "budget.settle", "chat mock-1", "safety input", "safety output"]);
    assert_eq!(root.name, "chat mock-1");
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert_eq!(string(root, attr::GEN_AI_OPERATION_NAME), "chat");
    assert_eq!(string(root, attr::GEN_AI_PROVIDER_NAME), "mock");
    assert_eq!(string(root, attr::GEN_AI_SYSTEM), "mock");
    assert_eq!(string(root, attr::GEN_AI_REQUEST_MODEL), "mock-1");
    assert_eq!(string(root, attr::GEN_AI_RESPONSE_MODEL), "mock-1");
    assert_eq!(int(root, attr::GEN_AI_REQUEST_MAX_TOKENS), 50);
    assert!(int(root, attr::GEN_AI_USAGE_INPUT_TOKENS) > 0);
    assert!(int(root, attr::GEN_AI_USAGE_OUTPUT_TOKENS) > 0);
    let cost = int(root, attr::TOLLGATE_COST_MICRO_USD);
    assert!(cost > 0);
    assert_eq!(int(root, attr::HTTP_RESPONSE_STATUS_CODE), 200);
    assert_eq!(string(root, attr::TOLLGATE_PRINCIPAL), "developer/alice");
    assert_eq!(string(root, attr::TOLLGATE_ENDPOINT), "chat.completions");
    assert_eq!(string(root, attr::TOLLGATE_IP_TOKEN), "default/mock");
    assert_eq!(string(root, attr::SERVER_ADDRESS), "in-process");
    assert_eq!(string(root, attr::TRACE_ID), plain);
    assert!(!attrs(root).contains_key(attr::ERROR_TYPE));
    assert!(!is_error(root));
    match attrs(root).get(attr::GEN_AI_RESPONSE_FINISH_REASONS) {
        Some(Any::ArrayValue(a)) => assert_eq!(a.values[0].value, Some(Any::StringValue("stop".into()))),
        other => panic!("finish reasons: {other:?}"),
    }
    let attempt = child(&children, "chat mock-1");
    assert_eq!(attempt.kind, SpanKind::Client as i32);
    assert_eq!(string(attempt, attr::GEN_AI_REQUEST_MODEL), "mock-1");
    assert_eq!(string(attempt, attr::GEN_AI_PROVIDER_NAME), "mock");
    assert_eq!(string(attempt, attr::TOLLGATE_IP_TOKEN), "default/mock");
    assert_eq!(int(attempt, attr::TOLLGATE_ATTEMPT), 1);
    assert_eq!(int(attempt, attr::HTTP_RESPONSE_STATUS_CODE), 200);
    let reserve = child(&children, "budget.reserve");
    assert_eq!(string(reserve, attr::TOLLGATE_BUDGET_OUTCOME), "admitted");
    assert!(int(reserve, attr::TOLLGATE_RESERVED_MICRO_USD) >= cost);
    assert_eq!(int(child(&children, "budget.settle"), attr::TOLLGATE_COST_MICRO_USD), cost);
    let input = child(&children, "safety input");
    assert_eq!(string(input, attr::TOLLGATE_SAFETY_STAGE), "input");
    assert_eq!(string(input, attr::TOLLGATE_SAFETY_ACTION), "log");
    assert_eq!(string(input, attr::TOLLGATE_SAFETY_RULES), "pii.email");
    let output = child(&children, "safety output");
    assert_eq!(string(output, attr::TOLLGATE_SAFETY_ACTION), "redact");
    assert_eq!(string(output, attr::TOLLGATE_SAFETY_RULES), "pii.email");
    // In time order: safety, reserve, attempt, then settle.
    let start = |name: &str| child(&children, name).start_time_unix_nano;
    assert!(start("safety input") <= start("budget.reserve"));
    assert!(start("budget.reserve") <= start("chat mock-1"));
    assert!(start("chat mock-1") <= start("budget.settle"));

    // 2. A stream: the same tree; the output scan's span covers the stream.
    let streamed = "5c0a3f3577b34da6a3ce929d0e0e4737";
    let (status, body) = call(
        &router,
        &alice,
        streamed,
        question("mock-1", true),
        &[("x-mock-reply", "mail dave@example.com")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    received.wait_for(streamed, 6).await;
    let spans = received.trace(streamed);
    let (root, children, names) = tree(&spans);
    assert_eq!(names, ["budget.reserve", "budget.settle", "chat mock-1", "safety input", "safety output"]);
    assert_eq!(attrs(root).get(attr::TOLLGATE_STREAM), Some(&&Any::BoolValue(true)));
    assert!(int(root, attr::GEN_AI_USAGE_INPUT_TOKENS) > 0);
    assert!(int(root, attr::GEN_AI_USAGE_OUTPUT_TOKENS) > 0);
    let cost = int(root, attr::TOLLGATE_COST_MICRO_USD);
    assert_eq!(int(child(&children, "budget.settle"), attr::TOLLGATE_COST_MICRO_USD), cost);
    assert_eq!(string(child(&children, "safety output"), attr::TOLLGATE_SAFETY_ACTION), "redact");
    match attrs(root).get(attr::GEN_AI_RESPONSE_FINISH_REASONS) {
        Some(Any::ArrayValue(a)) => assert_eq!(a.values[0].value, Some(Any::StringValue("stop".into()))),
        other => panic!("stream finish reasons: {other:?}"),
    }
    assert!(!is_error(root));

    // 3. A failed attempt and a fallback: one attempt span each, the failure on the
    //    attempt, not on the request that succeeded.
    let fallback = "6d1b4f3577b34da6a3ce929d0e0e4738";
    let (status, body) =
        call(&router, &alice, fallback, question("flaky-1", false), &[("x-mock-fault", "status:503")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    received.wait_for(fallback, 7).await;
    let spans = received.trace(fallback);
    let (root, children, names) = tree(&spans);
    assert_eq!(
        names,
        [
            "budget.reserve",
            "budget.reserve",
            "budget.settle",
            "chat flaky-1",
            "chat steady-1",
            "safety input",
            "safety output"
        ]
    );
    assert_eq!(root.name, "chat steady-1");
    assert_eq!(string(root, attr::TOLLGATE_FALLBACK_FROM), "flaky-1");
    assert_eq!(string(root, attr::TOLLGATE_IP_TOKEN), "default/steady");
    assert!(!attrs(root).contains_key(attr::ERROR_TYPE) && !is_error(root));
    let failed = child(&children, "chat flaky-1");
    assert_eq!(int(failed, attr::TOLLGATE_ATTEMPT), 1);
    assert_eq!(int(failed, attr::HTTP_RESPONSE_STATUS_CODE), 503);
    assert_eq!(string(failed, attr::ERROR_TYPE), "upstream_unavailable");
    assert!(is_error(failed));
    let served = child(&children, "chat steady-1");
    assert_eq!(int(served, attr::TOLLGATE_ATTEMPT), 2);
    assert_eq!(int(served, attr::HTTP_RESPONSE_STATUS_CODE), 200);
    assert!(!is_error(served));

    // 4. A budget refusal: the reservation says which budget refused; nothing went upstream.
    let refused = "7e2c5f3577b34da6a3ce929d0e0e4739";
    let (status, body) = call(&router, &bob, refused, question("mock-1", false), &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    received.wait_for(refused, 2).await;
    let spans = received.trace(refused);
    let (root, children, names) = tree(&spans);
    assert_eq!(names, ["budget.reserve"]);
    assert_eq!(string(root, attr::ERROR_TYPE), "budget_exceeded");
    assert_eq!(int(root, attr::HTTP_RESPONSE_STATUS_CODE), 429);
    assert!(is_error(root));
    let reserve = children[0];
    assert_eq!(string(reserve, attr::TOLLGATE_BUDGET_OUTCOME), "refused");
    assert!(string(reserve, attr::TOLLGATE_BUDGET_ID).contains("bob"), "{:?}", attrs(reserve));
    assert_eq!(string(reserve, attr::ERROR_TYPE), "budget_exceeded");
    assert!(is_error(reserve));

    // Nothing that was in a secret header left the process.
    let everything = format!("{:?}", received.requests);
    assert!(!everything.contains(&alice) && !everything.contains(&bob) && !everything.contains(PROVIDER_KEY));
    assert!(!everything.contains("Bearer"));
    // Nor the prompt, the answer or the matched text.
    assert!(!everything.contains("example.com"));
    let resource = received.requests[0].resource_spans[0].resource.as_ref().unwrap();
    let service = resource.attributes.iter().find(|kv| kv.key == "service.name").unwrap();
    assert_eq!(service.value.as_ref().unwrap().value, Some(Any::StringValue("tollgate-dataplane".into())));

    tokio::task::spawn_blocking(move || guard.shutdown()).await.unwrap().unwrap();
    server.abort();
    drop(db);
}
