#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! End to end through a real OTLP gRPC receiver: `init_tracing` installs the global
//! subscriber, so this binary holds exactly one test.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::sync::mpsc;
use tollgate_dataplane::observability::tracing::{
    DEFAULT_TRACE_FILTER, attr, inject_trace_context, record_error, record_u64,
};
use tollgate_dataplane::observability::{
    GenAiOperation, LogFormat, RequestSpan, RequestSpanStart, ResponseAttributes, SafetyStage,
    TelemetryConfig, UpstreamAttempt, UpstreamTarget, init_tracing,
};
use tracing::Instrument;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";
const VIRTUAL_KEY: &str = "tg-vk-4f1e0f3c9b8a7d6e5f4a3b2c1d0e9f8a";
const PROVIDER_KEY: &str = "sk-proj-ZmFrZS1wcm92aWRlci1rZXk";

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

fn string<'a>(a: &HashMap<&str, &'a Any>, key: &str) -> &'a str {
    match a.get(key) {
        Some(Any::StringValue(s)) => s,
        other => panic!("{key}: expected a string, got {other:?}"),
    }
}

fn int(a: &HashMap<&str, &Any>, key: &str) -> i64 {
    match a.get(key) {
        Some(Any::IntValue(i)) => *i,
        other => panic!("{key}: expected an int, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_with_genai_attributes_and_the_callers_parent() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver { tx }))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let cfg = TelemetryConfig {
        otlp_endpoint: Some(format!("http://{addr}")),
        log_format: LogFormat::Json,
        log_filter: "info".into(),
        // This test binary's own events (target `otlp`) become span events too.
        trace_filter: format!("{DEFAULT_TRACE_FILTER},observability_otlp=info"),
        batch_delay: Duration::from_millis(50),
        ..TelemetryConfig::default()
    };
    let guard = init_tracing(&cfg).unwrap();
    assert!(guard.traces_enabled());

    let mut headers = HeaderMap::new();
    headers
        .insert("traceparent", HeaderValue::from_str(&format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01")).unwrap());
    headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {VIRTUAL_KEY}")).unwrap());
    headers.insert("x-api-key", HeaderValue::from_static(PROVIDER_KEY));

    let request = RequestSpan::start(&RequestSpanStart {
        operation: GenAiOperation::Chat,
        endpoint: "chat.completions",
        request_id: "req-0001",
        headers: &headers,
    });
    assert_eq!(request.trace_id().as_deref(), Some(TRACE_ID));
    // Upstream requests carry the trace on, with the request span as their parent.
    let mut upstream_headers = HeaderMap::new();
    inject_trace_context(request.span(), &mut upstream_headers);
    let propagated = upstream_headers.get("traceparent").unwrap().to_str().unwrap().to_owned();
    assert!(
        propagated.starts_with(&format!("00-{TRACE_ID}-")) && !propagated.contains(CALLER_SPAN_ID),
        "{propagated}"
    );
    let target = UpstreamTarget {
        provider: "azure-openai",
        ip_token: "azure-eu",
        server_address: "eu.openai.azure.com",
        server_port: Some(443),
    };
    async {
        // Log lines inside the request carry its fields; the key is not one of them.
        tracing::info!("authenticated");
        request.set_principal("team/payments");
        request.set_model("gpt-4o-mini");
        request.set_request(Some(256), false);
        request.safety(SafetyStage::Input).in_scope(|| {
            tracing::Span::current().record(attr::TOLLGATE_SAFETY_ACTION, "none");
        });
        let reserve = request.budget_reserve();
        record_u64(&reserve, attr::TOLLGATE_RESERVED_MICRO_USD, 4_000);
        reserve.record(attr::TOLLGATE_BUDGET_OUTCOME, "admitted");
        drop(reserve);
        let first = request.upstream_attempt(&UpstreamAttempt {
            attempt: 1,
            target,
            model: "gpt-4o-mini-2024-07-18",
        });
        first.record(attr::HTTP_RESPONSE_STATUS_CODE, 503_i64);
        record_error(&first, "upstream_unavailable");
        drop(first);
        let second = request.upstream_attempt(&UpstreamAttempt {
            attempt: 2,
            target,
            model: "gpt-4o-mini-2024-07-18",
        });
        second.record(attr::HTTP_RESPONSE_STATUS_CODE, 200_i64);
        drop(second);
        request.safety(SafetyStage::Output).in_scope(|| {});
        request.settle().in_scope(|| {
            record_u64(&tracing::Span::current(), attr::TOLLGATE_COST_MICRO_USD, 1_234);
        });
        request.set_upstream(&target);
        request.set_response(&ResponseAttributes {
            model: Some("gpt-4o-mini-2024-07-18"),
            finish_reasons: &["stop"],
            input_tokens: 120,
            output_tokens: 45,
            cost_micro_usd: Some(1_234),
        });
        request.set_status(200);
    }
    .instrument(request.span().clone())
    .await;
    drop(request);

    // A second, failed request without a caller context starts its own trace.
    let failed = RequestSpan::start(&RequestSpanStart {
        operation: GenAiOperation::Embeddings,
        endpoint: "embeddings",
        request_id: "req-0002",
        headers: &HeaderMap::new(),
    });
    failed.set_model("text-embedding-3-small");
    failed.set_status(429);
    failed.set_error("rate_limited");
    let failed_trace = failed.trace_id().unwrap();
    assert_ne!(failed_trace, TRACE_ID);
    drop(failed);

    let guard = tokio::task::spawn_blocking(move || {
        guard.flush().unwrap();
        guard
    })
    .await
    .unwrap();

    // Poll with a deadline until all 8 spans arrived.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut requests = Vec::new();
    let count = |rs: &[ExportTraceServiceRequest]| {
        rs.iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum::<usize>()
    };
    while count(&requests) < 8 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(r)) => requests.push(r),
            _ => panic!("only {} spans arrived before the deadline", count(&requests)),
        }
    }

    // Nothing that was in a secret header left the process.
    let everything = format!("{requests:?}");
    assert!(!everything.contains(VIRTUAL_KEY) && !everything.contains(PROVIDER_KEY));
    assert!(!everything.contains("Bearer"));

    let resource = requests[0].resource_spans[0].resource.as_ref().unwrap();
    let service = resource.attributes.iter().find(|kv| kv.key == "service.name").unwrap();
    assert_eq!(service.value.as_ref().unwrap().value, Some(Any::StringValue("tollgate-dataplane".into())));

    let spans: Vec<&OtlpSpan> = requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    assert_eq!(spans.len(), 8, "{:#?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());

    let root = spans.iter().find(|s| s.name == "chat gpt-4o-mini").expect("request span");
    assert_eq!(propagated, format!("00-{TRACE_ID}-{}-01", hex(&root.span_id)));
    assert_eq!(hex(&root.trace_id), TRACE_ID);
    assert_eq!(hex(&root.parent_span_id), CALLER_SPAN_ID);
    assert_eq!(root.kind, SpanKind::Server as i32);
    let a = attrs(root);
    assert_eq!(string(&a, attr::GEN_AI_OPERATION_NAME), "chat");
    assert_eq!(string(&a, attr::GEN_AI_PROVIDER_NAME), "azure.ai.openai");
    assert_eq!(string(&a, attr::GEN_AI_SYSTEM), "azure.ai.openai");
    assert_eq!(string(&a, attr::GEN_AI_REQUEST_MODEL), "gpt-4o-mini");
    assert_eq!(string(&a, attr::GEN_AI_RESPONSE_MODEL), "gpt-4o-mini-2024-07-18");
    assert_eq!(int(&a, attr::GEN_AI_USAGE_INPUT_TOKENS), 120);
    assert_eq!(int(&a, attr::GEN_AI_USAGE_OUTPUT_TOKENS), 45);
    assert_eq!(int(&a, attr::GEN_AI_REQUEST_MAX_TOKENS), 256);
    assert_eq!(string(&a, attr::SERVER_ADDRESS), "eu.openai.azure.com");
    assert_eq!(int(&a, attr::SERVER_PORT), 443);
    assert_eq!(int(&a, attr::HTTP_RESPONSE_STATUS_CODE), 200);
    assert_eq!(int(&a, attr::TOLLGATE_COST_MICRO_USD), 1234);
    assert_eq!(string(&a, attr::TOLLGATE_PRINCIPAL), "team/payments");
    assert_eq!(string(&a, attr::TOLLGATE_REQUEST_ID), "req-0001");
    assert_eq!(string(&a, attr::TRACE_ID), TRACE_ID);
    assert!(!a.contains_key(attr::ERROR_TYPE));
    match a.get(attr::GEN_AI_RESPONSE_FINISH_REASONS) {
        Some(Any::ArrayValue(arr)) => {
            assert_eq!(arr.values.len(), 1);
            assert_eq!(arr.values[0].value, Some(Any::StringValue("stop".into())));
        }
        other => panic!("finish reasons: {other:?}"),
    }
    // The log line inside the request became a span event.
    assert!(root.events.iter().any(|e| e.name == "authenticated"), "{:?}", root.events);

    let children: Vec<&&OtlpSpan> = spans.iter().filter(|s| s.parent_span_id == root.span_id).collect();
    let mut names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "budget.reserve",
            "budget.settle",
            "chat gpt-4o-mini-2024-07-18",
            "chat gpt-4o-mini-2024-07-18",
            "safety input",
            "safety output"
        ]
    );
    assert!(children.iter().all(|s| hex(&s.trace_id) == TRACE_ID));

    let mut attempts: Vec<&&&OtlpSpan> = children.iter().filter(|s| s.name.starts_with("chat ")).collect();
    attempts.sort_by_key(|s| int(&attrs(s), attr::TOLLGATE_ATTEMPT));
    let (a1, a2) = (attrs(attempts[0]), attrs(attempts[1]));
    assert_eq!(attempts[0].kind, SpanKind::Client as i32);
    assert_eq!(string(&a1, attr::GEN_AI_REQUEST_MODEL), "gpt-4o-mini-2024-07-18");
    assert_eq!(string(&a1, attr::GEN_AI_PROVIDER_NAME), "azure.ai.openai");
    assert_eq!(string(&a1, attr::TOLLGATE_IP_TOKEN), "azure-eu");
    assert_eq!(int(&a1, attr::HTTP_RESPONSE_STATUS_CODE), 503);
    assert_eq!(string(&a1, attr::ERROR_TYPE), "upstream_unavailable");
    let status = attempts[0].status.as_ref().unwrap();
    assert_eq!(status.code, 2, "error status: {status:?}");
    assert_eq!(int(&a2, attr::HTTP_RESPONSE_STATUS_CODE), 200);
    assert!(!a2.contains_key(attr::ERROR_TYPE));

    let reserve = children.iter().find(|s| s.name == "budget.reserve").unwrap();
    assert_eq!(int(&attrs(reserve), attr::TOLLGATE_RESERVED_MICRO_USD), 4000);
    let settle = children.iter().find(|s| s.name == "budget.settle").unwrap();
    assert_eq!(int(&attrs(settle), attr::TOLLGATE_COST_MICRO_USD), 1234);
    let safety = children.iter().find(|s| s.name == "safety input").unwrap();
    assert_eq!(string(&attrs(safety), attr::TOLLGATE_SAFETY_STAGE), "input");

    let other = spans.iter().find(|s| s.name == "embeddings text-embedding-3-small").unwrap();
    assert_eq!(hex(&other.trace_id), failed_trace);
    assert!(other.parent_span_id.is_empty());
    let oa = attrs(other);
    assert_eq!(string(&oa, attr::ERROR_TYPE), "rate_limited");
    assert_eq!(int(&oa, attr::HTTP_RESPONSE_STATUS_CODE), 429);
    assert_eq!(other.status.as_ref().unwrap().code, 2);

    tokio::task::spawn_blocking(move || guard.shutdown()).await.unwrap().unwrap();
    server.abort();
}
