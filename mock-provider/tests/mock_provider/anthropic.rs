//! The Anthropic Messages API, in-process.

use serde_json::{Value, json};
use tollgate_mock_provider::count_tokens;

use crate::support::{anthropic_events, app, messages_body, post, send};

#[tokio::test]
async fn non_streaming_reply_is_anthropic_shaped() {
    let reply =
        send(&app(), post("/v1/messages", &[("x-api-key", "sk-ant")], &messages_body("Hi Claude"))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-mock-auth"), "x-api-key");
    let body = reply.json();
    let id = body["id"].clone();
    assert!(id.as_str().unwrap().starts_with("msg_"));
    let text = "Mock reply to: Hi Claude";
    assert_eq!(
        body,
        json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": "claude-mock",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {
                "input_tokens": count_tokens("Be brief.Hi Claude"),
                "output_tokens": count_tokens(text),
            },
        })
    );
}

#[tokio::test]
async fn blocks_system_and_tool_results_count_as_input() {
    let body = json!({
        "model": "claude-mock",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Sys."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "Sunny"}]},
                {"type": "text", "text": "Thanks"},
            ]},
        ],
    });
    let reply = send(&app(), post("/v1/messages", &[], &body)).await.json();
    assert_eq!(reply["content"][0]["text"], "Mock reply to: Thanks");
    assert_eq!(reply["usage"]["input_tokens"], count_tokens("Sys.Weather?SunnyThanks"));
}

#[tokio::test]
async fn missing_max_tokens_is_an_anthropic_400() {
    let mut body = messages_body("hi");
    body.as_object_mut().unwrap().remove("max_tokens");
    let reply = send(&app(), post("/v1/messages", &[], &body)).await;
    assert_eq!(reply.status, 400);
    let err = reply.json();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(err["error"]["message"].as_str().unwrap().contains("max_tokens"));
}

#[tokio::test]
async fn streaming_follows_the_documented_event_order() {
    let mut body = messages_body("Tell me a story");
    body["stream"] = json!(true);
    let reply = send(&app(), post("/v1/messages", &[], &body)).await;
    assert_eq!(reply.header("content-type"), "text/event-stream");
    let events = anthropic_events(reply.text());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let text = "Mock reply to: Tell me a story";
    let deltas = text.split_inclusive(' ').count();
    let mut want = vec!["message_start", "content_block_start", "ping"];
    want.extend(std::iter::repeat_n("content_block_delta", deltas));
    want.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, want);

    let start = &events[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["model"], "claude-mock");
    assert_eq!(
        start["usage"],
        json!({"input_tokens": count_tokens("Be brief.Tell me a story"), "output_tokens": 1})
    );
    assert_eq!(
        events[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    let streamed: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(streamed, text);
    let n = events.len();
    assert_eq!(events[n - 3].1, json!({"type": "content_block_stop", "index": 0}));
    assert_eq!(
        events[n - 2].1,
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": count_tokens(text)},
        })
    );
    assert_eq!(events[n - 1].1, json!({"type": "message_stop"}));
}

#[tokio::test]
async fn max_tokens_truncates_with_stop_reason_max_tokens() {
    let mut body = messages_body("hi");
    body["max_tokens"] = json!(1);
    let headers = [("x-mock-reply", "0123456789")];
    let reply = send(&app(), post("/v1/messages", &headers, &body)).await.json();
    assert_eq!(reply["content"][0]["text"], "0123");
    assert_eq!(reply["stop_reason"], "max_tokens");
    assert_eq!(reply["usage"]["output_tokens"], 1);

    body["stream"] = json!(true);
    let reply = send(&app(), post("/v1/messages", &headers, &body)).await;
    let events = anthropic_events(reply.text());
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta.1["usage"]["output_tokens"], 1);
}

const TOOL_CALLS: &str = r#"[{"name":"get_weather","arguments":{"city":"Paris"}},{"name":"noop"}]"#;

#[tokio::test]
async fn tool_calls_header_non_streaming() {
    let reply =
        send(&app(), post("/v1/messages", &[("x-mock-tool-calls", TOOL_CALLS)], &messages_body("weather?")))
            .await
            .json();
    assert_eq!(reply["stop_reason"], "tool_use");
    let content = reply["content"].as_array().unwrap();
    assert_eq!(content.len(), 2);
    assert_eq!(content[0]["type"], "tool_use");
    assert!(content[0]["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(content[0]["name"], "get_weather");
    assert_eq!(content[0]["input"], json!({"city": "Paris"}));
    assert_eq!(content[1]["input"], json!({}));
    assert_eq!(reply["usage"]["output_tokens"], count_tokens(r#"{"city":"Paris"}{}"#));
}

#[tokio::test]
async fn tool_calls_header_streaming() {
    let mut body = messages_body("weather?");
    body["stream"] = json!(true);
    let reply = send(&app(), post("/v1/messages", &[("x-mock-tool-calls", TOOL_CALLS)], &body)).await;
    let events = anthropic_events(reply.text());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "tool_use", "id": events[1].1["content_block"]["id"], "name": "get_weather", "input": {}})
    );
    let mut inputs = [String::new(), String::new()];
    for (name, data) in &events {
        if name == "content_block_delta" {
            assert_eq!(data["delta"]["type"], "input_json_delta");
            let index = usize::try_from(data["index"].as_u64().unwrap()).unwrap();
            inputs[index].push_str(data["delta"]["partial_json"].as_str().unwrap());
        }
    }
    assert_eq!(serde_json::from_str::<Value>(&inputs[0]).unwrap(), json!({"city": "Paris"}));
    assert_eq!(inputs[1], "{}");
    assert_eq!(names.iter().filter(|n| **n == "content_block_stop").count(), 2);
    assert_eq!(names.iter().filter(|n| **n == "ping").count(), 1);
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
}
