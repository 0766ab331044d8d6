#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! The SDK against a running gateway (the data plane on a real socket, the built-in mock
//! provider, a real SQLite ledger): chat, streams, embeddings, tool verdicts, budget
//! exhaustion as `BudgetExceeded` with its numbers, policy refusals, and the reqwest
//! middleware routing an unmodified OpenAI-style client.

use std::net::SocketAddr;

use futures::StreamExt;
use serde_json::{Value, json};
use tollgate_dataplane::store::Store;
use tollgate_sdk::{ChatRequest, Client, Error, Stage, TextVerdict, ToolDecision, TraceContext};
use tollgate_testkit::{ScratchDb, TestGateway, agent};

/// `mock-costly` costs $1 per output token, so `max_tokens: 2` costs exactly $2; `mock-1` is free.
const RESOURCES: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  forwardHeaders: ["x-mock-"]
  models:
    - name: mock-1
      prices: {inputPerMtok: "0", outputPerMtok: "0"}
    - name: mock-costly
      prices: {inputPerMtok: "0", outputPerMtok: "1000000"}
    - {name: mock-embedding-1, kind: embedding}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: bot}
spec:
  subject: {kind: agent, name: bot}
  limit: "5"
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
  input:
    detectors:
      - {id: "secrets.*", action: block}
  output:
    custom:
      terms:
        - {id: codeword, terms: [pineapple], action: block}
"#;

struct App {
    addr: SocketAddr,
    key: String,
    store: Store,
    _db: ScratchDb,
}

async fn spawn() -> App {
    let db = ScratchDb::sqlite();
    let t = TestGateway::start(db.connect().await, RESOURCES).await;
    let key = t.issue_key("bot", agent("bot")).await;
    App { addr: t.serve().await, key: key.secret, store: t.store, _db: db }
}

fn sdk(app: &App) -> Client {
    Client::builder().base_url(format!("http://{}", app.addr)).api_key(&app.key).build().unwrap()
}

#[tokio::test]
async fn chat_streams_and_embeddings_through_the_gateway() {
    let app = spawn().await;
    let c = sdk(&app);
    let reply = c.chat(&ChatRequest::new("mock-1").user("hello there")).await.unwrap();
    assert_eq!(reply.text(), "Mock reply to: hello there");
    assert!(reply.usage.unwrap().completion_tokens > 0);

    let mut stream = c.chat_stream(&ChatRequest::new("mock-1").user("stream me")).await.unwrap();
    let (mut text, mut usage) = (String::new(), None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        text.push_str(chunk.text());
        usage = usage.or(chunk.usage);
    }
    assert_eq!(text, "Mock reply to: stream me");
    assert!(usage.is_some(), "the SDK asks for usage on streams");

    let e = c.embeddings("mock-embedding-1", &["a", "b"]).await.unwrap();
    assert_eq!(e.data.len(), 2);
    assert!(!e.data[0].embedding.is_empty());

    // Tool calls scripted through the mock.
    let calls = r#"[{"name": "get_weather", "arguments": {"city": "Paris"}}]"#;
    let reply = c
        .chat(
            &ChatRequest::new("mock-1")
                .user("weather?")
                .tool("get_weather", "", json!({"type": "object"}))
                .header("x-mock-tool-calls", calls),
        )
        .await
        .unwrap();
    let call = &reply.tool_calls()[0];
    assert_eq!(call.function.name, "get_weather");
    let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
}

#[tokio::test]
async fn a_tool_denied_by_policy_and_text_checks() {
    let app = spawn().await;
    let c = sdk(&app);
    let v = c.check_tool("shell_exec", &json!({"cmd": "ls"})).await.unwrap();
    assert!(!v.is_allowed());
    assert!(
        matches!(&v.decision, ToolDecision::Deny { policy, rule, .. } if policy == "default/agents" && rule == "tools.deny")
    );
    let e = v.into_arguments(json!({"cmd": "ls"})).unwrap_err();
    assert!(matches!(&e, Error::ToolDenied { tool, .. } if tool == "shell_exec"), "{e:?}");

    let args = json!({"q": "rust"});
    let v = c.check_tool_in_run("search", &args, "run-7").await.unwrap();
    assert_eq!(v.into_arguments(args.clone()).unwrap(), args);

    let t = c.validate_text("pineapple time", Stage::Output).await.unwrap();
    assert!(matches!(t, TextVerdict::Blocked { ref rule, .. } if rule == "custom.codeword"), "{t:?}");
    assert_eq!(c.validate_text("pineapple time", Stage::Input).await.unwrap(), TextVerdict::Allow);

    // A bad key is a typed error on both protocols.
    let bad = Client::builder().base_url(format!("http://{}", app.addr)).api_key("tg-nope").build().unwrap();
    assert!(matches!(bad.budgets().await.unwrap_err(), Error::Unauthenticated { .. }));
    assert!(matches!(
        bad.chat(&ChatRequest::new("mock-1").user("x")).await.unwrap_err(),
        Error::Unauthenticated { .. }
    ));
}

#[tokio::test]
async fn policy_refusals_are_policy_violations_before_and_during_a_stream() {
    let app = spawn().await;
    let c = sdk(&app);
    let e = c.chat(&ChatRequest::new("mock-1").user("my key is AKIAIOSFODNN7EXAMPLE")).await.unwrap_err();
    let Error::PolicyViolation { policy, rule, message } = e else { panic!("{e:?}") };
    assert_eq!(policy, "default/agents");
    assert!(rule.starts_with("secrets."), "{rule}");
    assert!(!message.contains("AKIA"));

    // The answer trips an output rule mid-stream: the stream's last item is the violation.
    let request =
        ChatRequest::new("mock-1").user("go").header("x-mock-reply", "one two three pineapple four");
    let mut stream = c.chat_stream(&request).await.unwrap();
    let mut last = None;
    while let Some(item) = stream.next().await {
        last = Some(item);
    }
    let e = last.unwrap().unwrap_err();
    assert!(
        matches!(&e, Error::PolicyViolation { policy, rule, .. } if policy == "default/agents" && rule == "custom.codeword"),
        "{e:?}"
    );
}

#[tokio::test]
async fn budget_exhaustion_is_budget_exceeded_with_the_right_numbers() {
    let app = spawn().await;
    let c = sdk(&app).with_trace_context(TraceContext::new_root());
    let request = ChatRequest::new("mock-costly").user("a question with a long answer").max_tokens(2);
    c.chat(&request).await.unwrap();
    c.chat(&request).await.unwrap();
    let before = c.budget("bot").await.unwrap();
    assert_eq!(
        (before.limit_micros, before.spent_micros, before.remaining_micros),
        (5_000_000, 4_000_000, 1_000_000)
    );
    assert!(before.hard && !before.exhausted);

    let e = c.chat(&request).await.unwrap_err();
    let Error::BudgetExceeded { budget, remaining_micros, resets_at, .. } = e else { panic!("{e:?}") };
    assert_eq!((budget.as_str(), remaining_micros), ("default/bot", 1_000_000));
    assert_eq!(resets_at, before.resets_at, "the reset is the end of the budget's period");
    assert!(resets_at.unwrap() > chrono::Utc::now());

    let budgets = c.budgets().await.unwrap();
    assert_eq!(budgets.len(), 1);
    assert_eq!(budgets[0].spent_micros, 4_000_000, "the refused request charged nothing");
    assert!(matches!(c.budget("nope").await.unwrap_err(), Error::NotFound { .. }));

    // Every completed request has a usage record under the agent's principal.
    let rows = app.store.recent_usage(100).await.unwrap();
    let ok: Vec<_> = rows.iter().filter(|r| r.status == 200 && r.endpoint == "chat.completions").collect();
    assert_eq!(ok.len(), 2, "{rows:?}");
    assert!(
        ok.iter().all(|r| r.principal_name.as_deref() == Some("bot") && r.cost_micros == 2_000_000),
        "{rows:?}"
    );
}

#[tokio::test]
async fn the_middleware_routes_an_unmodified_openai_style_client() {
    let app = spawn().await;
    let tollgate = sdk(&app);
    // The only change an agent makes: the client it builds.
    let http =
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).with(tollgate.middleware()).build();

    // What an OpenAI client does, unchanged: its own URL and its own provider key.
    let response = http
        .post("https://api.openai.com/v1/chat/completions")
        .bearer_auth("sk-proj-not-a-tollgate-key")
        .json(&json!({"model": "mock-1", "messages": [{"role": "user", "content": "via middleware"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Mock reply to: via middleware");

    let response = http.get("https://api.openai.com/v1/models").send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(body["data"].as_array().unwrap().iter().any(|m| m["id"] == "mock-1"), "{body}");
}
