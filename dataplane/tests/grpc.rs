#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! The gRPC runtime service over a real socket (h2c on the gateway's HTTP port), with the
//! generated tonic client: every method, the caller's policies and budgets, and bad input →
//! precise status codes with details.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tollgate_dataplane::auth::{KeyService, Principal};
use tollgate_dataplane::{Gateway, now_ms};
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::runtime_client::RuntimeClient;
use tollgate_testkit::{ScratchDb, TestGateway, agent};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const RESOURCES: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models:
    - name: mock-1
      prices: {inputPerMtok: "0", outputPerMtok: "1000000"}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: bot}
spec:
  subject: {kind: agent, name: bot}
  limit: "5"
  period: daily
  parent: team
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: team}
spec:
  subject: {kind: team, name: research}
  limit: "100"
  period: monthly
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: someone-else}
spec:
  subject: {kind: developer, name: mallory}
  limit: "1"
  period: daily
---
apiVersion: tollgate.dev/v1alpha1
kind: SafetyPolicy
metadata: {name: agents}
spec:
  selector:
    subjects: [{kind: agent, name: bot}]
  tools:
    deny: ["shell*"]
    arguments:
      - {id: no-internal, tool: "http_*", pointer: /url, pattern: 'internal\.example\.com', action: block}
  input:
    detectors:
      - {id: "secrets.*", action: block}
  output:
    detectors:
      - {id: pii.email, action: redact}
"#;

struct App {
    addr: SocketAddr,
    gateway: Gateway,
    keys: KeyService,
    bot: String,
    bot_id: String,
    _db: ScratchDb,
}

async fn spawn() -> App {
    let db = ScratchDb::sqlite();
    let t = TestGateway::start(db.connect().await, RESOURCES).await;
    let bot = t.issue_key("bot", Principal { team: Some("research".into()), ..agent("bot") }).await;
    let addr = t.serve().await;
    App { addr, gateway: t.gateway, keys: t.keys, bot: bot.secret, bot_id: bot.record.id, _db: db }
}

async fn client(app: &App) -> RuntimeClient<Channel> {
    RuntimeClient::connect(format!("http://{}", app.addr)).await.unwrap()
}

fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", MetadataValue::try_from(format!("Bearer {key}")).unwrap());
    r
}

fn tool(name: &str, args: &str) -> pb::CheckToolRequest {
    pb::CheckToolRequest {
        tool: name.into(),
        arguments_json: args.into(),
        context: Some(pb::ToolContext { run_id: "run-1".into(), ..Default::default() }),
    }
}

#[tokio::test]
async fn check_tool_allows_denies_and_redacts_by_the_callers_policy() {
    let app = spawn().await;
    let mut c = client(&app).await;

    let r = c.check_tool(authed(&app.bot, tool("search", r#"{"q": "rust"}"#))).await.unwrap();
    assert!(r.metadata().get("x-request-id").is_some());
    let r = r.into_inner();
    assert_eq!(r.decision(), pb::Decision::Allow);
    assert!(r.findings.is_empty());

    let r = c
        .check_tool(authed(&app.bot, tool("shell_exec", r#"{"cmd": "rm -rf /"}"#)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.decision(), pb::Decision::Deny);
    assert_eq!((r.policy.as_str(), r.rule.as_str()), ("default/agents", "tools.deny"));
    assert!(r.reason.contains("tool call blocked by safety policy default/agents"), "{}", r.reason);

    let r = c
        .check_tool(authed(&app.bot, tool("http_get", r#"{"url": "https://internal.example.com/admin"}"#)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.decision(), r.rule.as_str()), (pb::Decision::Deny, "tools.arguments.no-internal"));
    assert!(!r.reason.contains("internal.example.com"), "the matched text never comes back");
    assert!(r.reason.contains(" at arguments.url,"), "{}", r.reason);

    let r = c
        .check_tool(authed(&app.bot, tool("send_mail", r#"{"to": "bob@example.com", "text": "hi"}"#)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.decision(), pb::Decision::AllowRedacted);
    let args: Value = serde_json::from_str(&r.redacted_arguments_json).unwrap();
    assert_eq!(args, json!({"to": "[REDACTED:EMAIL]", "text": "hi"}));
    assert_eq!(r.findings[0].rule, "pii.email");
    assert_eq!(r.findings[0].path, "arguments.to");

    // Empty arguments mean `{}`.
    let r = c.check_tool(authed(&app.bot, tool("search", ""))).await.unwrap().into_inner();
    assert_eq!(r.decision(), pb::Decision::Allow);

    // The same metrics as the HTTP path, plus the gRPC call counters.
    let metrics = app.gateway.shared().metrics.encode();
    assert!(
        metrics
            .contains(r#"tollgate_safety_verdicts_total{stage="tool",rule="tools.deny",action="block"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"tollgate_grpc_requests_total{method="CheckTool",code="ok"} 5"#), "{metrics}");
}

#[tokio::test]
async fn validate_text_checks_the_stage_asked_for() {
    let app = spawn().await;
    let mut c = client(&app).await;
    let validate = |text: &str, stage: pb::Stage| {
        authed(&app.bot, pb::ValidateTextRequest { text: text.into(), stage: stage.into() })
    };
    let r =
        c.validate_text(validate("key AKIAIOSFODNN7EXAMPLE", pb::Stage::Input)).await.unwrap().into_inner();
    assert_eq!(r.decision(), pb::Decision::Deny);
    assert!(r.rule.starts_with("secrets."), "{}", r.rule);
    assert!(!r.reason.contains("AKIA"));
    let r =
        c.validate_text(validate("write to bob@example.com", pb::Stage::Output)).await.unwrap().into_inner();
    assert_eq!(
        (r.decision(), r.redacted_text.as_str()),
        (pb::Decision::AllowRedacted, "write to [REDACTED:EMAIL]")
    );
    // Output rules do not run on input.
    let r =
        c.validate_text(validate("write to bob@example.com", pb::Stage::Input)).await.unwrap().into_inner();
    assert_eq!(r.decision(), pb::Decision::Allow);
}

#[tokio::test]
async fn get_budget_shows_the_callers_budgets_with_what_was_spent() {
    let app = spawn().await;
    // Spend through the HTTP path: max_tokens 2 at $1 per output token = $2.
    let body = json!({"model": "mock-1", "max_tokens": 2, "messages": [{"role": "user", "content": "a long question here"}]});
    let reply = http1(
        app.addr,
        &format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            app.bot,
            body.to_string().len()
        ),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    let mut c = client(&app).await;
    let r = c.get_budget(authed(&app.bot, pb::GetBudgetRequest::default())).await.unwrap().into_inner();
    let names: Vec<&str> = r.budgets.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["default/bot", "default/team"], "own budget and its ancestors, never another's");
    let bot = &r.budgets[0];
    assert_eq!(
        (bot.limit_micros, bot.spent_micros, bot.reserved_micros, bot.remaining_micros),
        (5_000_000, 2_000_000, 0, 3_000_000)
    );
    assert_eq!(
        (bot.subject_kind.as_str(), bot.enforcement.as_str(), bot.parent.as_str()),
        ("agent", "hard", "default/team")
    );
    assert!(bot.period_end > bot.period_start && bot.period_end.ends_with('Z'), "{bot:?}");
    assert_eq!(r.budgets[1].spent_micros, 2_000_000, "charged to the parent too");

    let one = c
        .get_budget(authed(&app.bot, pb::GetBudgetRequest { name: "bot".into() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.budgets.len(), 1);
    let e = c
        .get_budget(authed(&app.bot, pb::GetBudgetRequest { name: "someone-else".into() }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("default/someone-else"));
}

#[tokio::test]
async fn bad_input_and_bad_keys_get_precise_status_codes() {
    let app = spawn().await;
    let mut c = client(&app).await;

    let e = c.check_tool(authed(&app.bot, tool("search", "{not json"))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let details = e.get_error_details();
    assert_eq!(details.bad_request().unwrap().field_violations[0].field, "arguments_json");
    assert!(e.message().contains("not valid JSON"), "{}", e.message());

    let e = c.check_tool(authed(&app.bot, tool("  ", "{}"))).await.unwrap_err();
    assert_eq!((e.code(), details_field(&e).as_str()), (Code::InvalidArgument, "tool"));
    let e = c.check_tool(authed(&app.bot, tool(&"x".repeat(300), "{}"))).await.unwrap_err();
    assert_eq!((e.code(), details_field(&e).as_str()), (Code::InvalidArgument, "tool"));
    let e = c.check_tool(authed(&app.bot, tool("a\u{7}b", "{}"))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let e = c
        .validate_text(authed(&app.bot, pb::ValidateTextRequest { text: "x".into(), stage: 0 }))
        .await
        .unwrap_err();
    assert_eq!((e.code(), details_field(&e).as_str()), (Code::InvalidArgument, "stage"));
    let e = c
        .validate_text(authed(&app.bot, pb::ValidateTextRequest { text: "x".into(), stage: 77 }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Larger than the service accepts: refused by the codec, the server stays up.
    let big = "a".repeat(3 << 20);
    let e = c
        .validate_text(authed(
            &app.bot,
            pb::ValidateTextRequest { text: big, stage: pb::Stage::Input.into() },
        ))
        .await
        .unwrap_err();
    assert!(matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted), "{e:?}");

    // Keys: none, unknown, revoked.
    let e = c.get_budget(tonic::Request::new(pb::GetBudgetRequest::default())).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(e.get_error_details().error_info().unwrap().domain, "tollgate.dev");
    let e = c.get_budget(authed("tg-notakey", pb::GetBudgetRequest::default())).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    app.keys.revoke(&app.bot_id, now_ms()).await.unwrap();
    let e = c.check_tool(authed(&app.bot, tool("search", "{}"))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(!e.message().contains(&app.bot), "the key is never echoed");

    let metrics = app.gateway.shared().metrics.encode();
    assert!(
        metrics.contains(r#"tollgate_grpc_requests_total{method="CheckTool",code="invalid_argument"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"tollgate_grpc_requests_total{method="GetBudget",code="unauthenticated"} 2"#),
        "{metrics}"
    );

    // The HTTP API on the same port is unaffected.
    let reply = http1(app.addr, "GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

/// One HTTP/1.1 exchange on a fresh connection (the server closes it).
async fn http1(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn details_field(e: &tonic::Status) -> String {
    e.get_error_details().bad_request().map(|b| b.field_violations[0].field.clone()).unwrap_or_default()
}
