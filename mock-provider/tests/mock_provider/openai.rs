//! OpenAI chat completions, in-process.

use serde_json::{Value, json};
use tollgate_mock_provider::count_tokens;

use crate::support::{app, chat_body, openai_chunks, post, send};

#[tokio::test]
async fn non_streaming_reply_is_openai_shaped_with_exact_usage() {
    let reply = send(&app(), post("/v1/chat/completions", &[], &chat_body("Hello there"))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "application/json");
    let body = reply.json();
    let text = "Mock reply to: Hello there";
    let prompt = count_tokens("You are helpful.Hello there");
    let completion = count_tokens(text);
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    let id = body["id"].clone();
    let created = body["created"].clone();
    assert_eq!(
        body,
        json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": "mock-1",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
            "system_fingerprint": "fp_mock",
        })
    );
}

#[tokio::test]
async fn content_parts_count_text_only_and_quote_the_last_user_message() {
    let body = json!({
        "model": "mock-1",
        "messages": [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [
                {"type": "text", "text": "What is "},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "this?"},
            ]},
        ],
        "n": 3,
    });
    let reply = send(&app(), post("/v1/chat/completions", &[], &body)).await.json();
    assert_eq!(reply["choices"][0]["message"]["content"], "Mock reply to: What is this?");
    assert_eq!(reply["usage"]["prompt_tokens"], count_tokens("first questionfirst answerWhat is this?"));
}

#[tokio::test]
async fn reply_header_and_quote_limit() {
    let reply =
        send(&app(), post("/v1/chat/completions", &[("x-mock-reply", "Exactly this.")], &chat_body("hi")))
            .await
            .json();
    assert_eq!(reply["choices"][0]["message"]["content"], "Exactly this.");
    assert_eq!(reply["usage"]["completion_tokens"], count_tokens("Exactly this."));

    let long = "x".repeat(500);
    let reply = send(&app(), post("/v1/chat/completions", &[], &chat_body(&long))).await.json();
    assert_eq!(reply["choices"][0]["message"]["content"], format!("Mock reply to: {}", "x".repeat(200)));

    let no_user = json!({"model": "m", "messages": [{"role": "system", "content": "sys"}]});
    let reply = send(&app(), post("/v1/chat/completions", &[], &no_user)).await.json();
    assert_eq!(reply["choices"][0]["message"]["content"], "Mock reply.");
}

#[tokio::test]
async fn streaming_concatenates_to_the_reply_with_usage_chunk_and_done() {
    let mut body = chat_body("Tell me a story");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let reply = send(&app(), post("/v1/chat/completions", &[], &body)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), "text/event-stream");
    let (chunks, done) = openai_chunks(reply.text());
    assert!(done, "ends with [DONE]");

    let text = "Mock reply to: Tell me a story";
    let first = &chunks[0];
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["model"], "mock-1");
    assert_eq!(first["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(first["choices"][0]["finish_reason"], Value::Null);

    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    let prompt = count_tokens("You are helpful.Tell me a story");
    let completion = count_tokens(text);
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
    );
    for chunk in rest {
        assert_eq!(chunk["id"], first["id"], "one id per stream");
        assert!(chunk.get("usage").is_some_and(Value::is_null), "usage: null on {chunk}");
    }
    let (finish, content) = rest.split_last().unwrap();
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let pieces: Vec<&str> =
        content[1..].iter().map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap()).collect();
    assert_eq!(pieces, ["Mock ", "reply ", "to: ", "Tell ", "me ", "a ", "story"]);
    assert_eq!(pieces.concat(), text);
}

#[tokio::test]
async fn streaming_without_include_usage_has_no_usage_field_and_honours_chunk_count() {
    let mut body = chat_body("one two three four five six");
    body["stream"] = json!(true);
    let reply = send(&app(), post("/v1/chat/completions", &[("x-mock-chunks", "3")], &body)).await;
    let (chunks, done) = openai_chunks(reply.text());
    assert!(done);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    // role chunk, 3 content chunks, finish chunk
    assert_eq!(chunks.len(), 5);
    let text: String =
        chunks[1..4].iter().map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap()).collect();
    assert_eq!(text, "Mock reply to: one two three four five six");
}

#[tokio::test]
async fn max_tokens_truncates_with_finish_reason_length() {
    let reply_text = "abcdefghijklmnopqrstuvwxyz"; // 26 bytes = 7 tokens
    let headers = [("x-mock-reply", reply_text)];
    let mut body = chat_body("hi");
    body["max_tokens"] = json!(2);
    let reply = send(&app(), post("/v1/chat/completions", &headers, &body)).await.json();
    assert_eq!(reply["choices"][0]["message"]["content"], "abcdefgh");
    assert_eq!(reply["choices"][0]["finish_reason"], "length");
    assert_eq!(reply["usage"]["completion_tokens"], 2);

    // max_completion_tokens wins over the legacy max_tokens.
    body["max_completion_tokens"] = json!(1);
    body["stream"] = json!(true);
    let reply = send(&app(), post("/v1/chat/completions", &headers, &body)).await;
    let (chunks, _) = openai_chunks(reply.text());
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "abcd");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");

    // Not truncated when it fits.
    body["max_completion_tokens"] = json!(7);
    body["stream"] = json!(false);
    let reply = send(&app(), post("/v1/chat/completions", &headers, &body)).await.json();
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
}

const TOOL_CALLS: &str = r#"[{"name":"get_weather","arguments":{"city":"Paris","unit":"celsius"}},{"name":"get_time","arguments":{"tz":"Europe/Paris"}}]"#;

#[tokio::test]
async fn tool_calls_header_non_streaming() {
    let reply = send(
        &app(),
        post("/v1/chat/completions", &[("x-mock-tool-calls", TOOL_CALLS)], &chat_body("weather?")),
    )
    .await
    .json();
    let choice = &reply["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris", "unit": "celsius"}));
    let all_args = r#"{"city":"Paris","unit":"celsius"}{"tz":"Europe/Paris"}"#;
    assert_eq!(reply["usage"]["completion_tokens"], count_tokens(all_args));
}

#[tokio::test]
async fn tool_calls_header_streaming() {
    let mut body = chat_body("weather?");
    body["stream"] = json!(true);
    let reply = send(&app(), post("/v1/chat/completions", &[("x-mock-tool-calls", TOOL_CALLS)], &body)).await;
    let (chunks, done) = openai_chunks(reply.text());
    assert!(done);
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": null}));
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for chunk in &chunks[1..chunks.len() - 1] {
        let delta = &chunk["choices"][0]["delta"]["tool_calls"][0];
        let index = usize::try_from(delta["index"].as_u64().unwrap()).unwrap();
        if index == calls.len() {
            // The first delta of a call names it and starts empty arguments.
            assert_eq!(delta["type"], "function");
            assert_eq!(delta["function"]["arguments"], "");
            calls.push((
                delta["id"].as_str().unwrap().to_owned(),
                delta["function"]["name"].as_str().unwrap().to_owned(),
                String::new(),
            ));
        } else {
            assert!(delta.get("id").is_none());
            calls[index].2.push_str(delta["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].1, "get_weather");
    assert_eq!(calls[0].2, r#"{"city":"Paris","unit":"celsius"}"#);
    assert_eq!(calls[1].1, "get_time");
    assert_eq!(calls[1].2, r#"{"tz":"Europe/Paris"}"#);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn azure_deployment_path_uses_the_deployment_as_model() {
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});
    let reply = send(
        &app(),
        post(
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
            &[("api-key", "secret")],
            &body,
        ),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-mock-auth"), "api-key");
    assert_eq!(reply.json()["model"], "gpt-4o-prod");
}

#[tokio::test]
async fn responses_are_deterministic_apart_from_ids_and_time() {
    let app = app();
    let strip = |mut v: Value| {
        v["id"] = Value::Null;
        v["created"] = Value::Null;
        v
    };
    let a = send(&app, post("/v1/chat/completions", &[], &chat_body("same"))).await.json();
    let b = send(&app, post("/v1/chat/completions", &[], &chat_body("same"))).await.json();
    assert_ne!(a["id"], b["id"]);
    assert_eq!(strip(a), strip(b));
}
