//! Non-streaming response bodies, both ways. These never fail: an odd upstream body is
//! rendered as well as the target format allows.

use serde_json::{Map, Value, json};

use super::{
    anthropic_stop_reason, anthropic_usage, anthropic_usage_json, fresh_id, openai_finish_reason,
    openai_usage, openai_usage_json, prefixed_id, unix_now,
};

/// Anthropic message -> OpenAI `chat.completion`. `model` is the model name to report.
pub fn anthropic_response_to_openai(resp: &Value, model: &str) -> Value {
    if let Some(error) = anthropic_error(resp) {
        return openai_error_body(error);
    }
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in resp.get("content").and_then(Value::as_array).into_iter().flatten() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(t) = block.get("text").and_then(Value::as_str) {
                    text.push_str(t);
                }
            }
            Some("tool_use") => {
                let id =
                    block.get("id").and_then(Value::as_str).map_or_else(|| fresh_id("call_"), str::to_owned);
                let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                let arguments = block
                    .get("input")
                    .filter(|i| !i.is_null())
                    .map_or_else(|| "{}".to_owned(), Value::to_string);
                tool_calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }));
            }
            // Thinking and server-tool blocks have no OpenAI counterpart.
            _ => {}
        }
    }
    let finish_reason = match resp.get("stop_reason").and_then(Value::as_str) {
        Some(reason) => openai_finish_reason(reason),
        None if !tool_calls.is_empty() => "tool_calls",
        None => "stop",
    };
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    let content = if text.is_empty() { Value::Null } else { Value::String(text) };
    message.insert("content".into(), content);
    message.insert("refusal".into(), Value::Null);
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    let usage = anthropic_usage(resp).unwrap_or_default();
    json!({
        "id": prefixed_id("chatcmpl-", resp.get("id").and_then(Value::as_str)),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason,
        }],
        "usage": openai_usage_json(usage),
    })
}

/// OpenAI `chat.completion` -> Anthropic message. `model` is the model name to report.
pub fn openai_response_to_anthropic(resp: &Value, model: &str) -> Value {
    if let Some(error) = resp.get("error").filter(|e| !e.is_null()) {
        return anthropic_error_body(error);
    }
    let choices = resp.get("choices").and_then(Value::as_array);
    let choice = choices
        .and_then(|c| {
            c.iter().find(|ch| ch.get("index").and_then(Value::as_u64) == Some(0)).or_else(|| c.first())
        })
        .unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);

    let mut content = Vec::new();
    let text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        // Some compatible upstreams answer with content parts.
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect()
        }
        _ => String::new(),
    };
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        content.push(json!({"type": "text", "text": refusal}));
    }
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let function = call.get("function").unwrap_or(&Value::Null);
        let id = call.get("id").and_then(Value::as_str);
        content.push(tool_use_block(id, function));
    }
    if let Some(function) = message.get("function_call").filter(|f| f.is_object()) {
        content.push(tool_use_block(None, function));
    }

    let stop_reason =
        choice.get("finish_reason").and_then(Value::as_str).map_or("end_turn", anthropic_stop_reason);
    let usage = openai_usage(resp).unwrap_or_default();
    json!({
        "id": prefixed_id("msg_", resp.get("id").and_then(Value::as_str)),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": anthropic_usage_json(usage),
    })
}

/// A `tool_use` block for an OpenAI function call. Arguments that are not a JSON object
/// are kept as `{"_raw": arguments}` so that nothing the model said is lost.
fn tool_use_block(id: Option<&str>, function: &Value) -> Value {
    let name = function.get("name").and_then(Value::as_str).unwrap_or("");
    let input = match function.get("arguments") {
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => json!({ "_raw": s }),
        },
        Some(v @ Value::Object(_)) => v.clone(),
        _ => json!({}),
    };
    json!({
        "type": "tool_use",
        "id": id.filter(|i| !i.is_empty()).map_or_else(|| fresh_id("toolu_"), str::to_owned),
        "name": name,
        "input": input,
    })
}

/// The `error` object of an Anthropic error body (`{"type":"error","error":{...}}`).
fn anthropic_error(resp: &Value) -> Option<&Value> {
    let error = resp.get("error").filter(|e| !e.is_null());
    match resp.get("type").and_then(Value::as_str) {
        Some("error") => Some(error.unwrap_or(&Value::Null)),
        Some(_) => None,
        None => error,
    }
}

/// Message and type of an error object of either format (or a bare string).
fn error_parts(error: &Value) -> (String, Option<String>) {
    let message = match error {
        Value::String(s) => s.clone(),
        _ => error
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| "upstream error".to_owned(), str::to_owned),
    };
    let kind = error.get("type").and_then(Value::as_str).map(str::to_owned);
    (message, kind)
}

/// OpenAI's error body for an Anthropic error object.
pub(super) fn openai_error_body(error: &Value) -> Value {
    let (message, kind) = error_parts(error);
    json!({
        "error": {
            "message": message,
            "type": kind.unwrap_or_else(|| "api_error".to_owned()),
            "param": null,
            "code": null,
        }
    })
}

/// Anthropic's error body for an OpenAI error object.
pub(super) fn anthropic_error_body(error: &Value) -> Value {
    let (message, _) = error_parts(error);
    json!({"type": "error", "error": {"type": "api_error", "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anthropic_message(content: Value, stop_reason: &str) -> Value {
        json!({
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 30, "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 0},
        })
    }

    #[test]
    fn anthropic_text_and_tools_become_chat_completion() {
        let resp = anthropic_message(
            json!([
                {"type": "thinking", "thinking": "...", "signature": "s"},
                {"type": "text", "text": "Checking "},
                {"type": "text", "text": "both."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo", "units": ["c"]}},
                {"type": "tool_use", "id": "toolu_2", "name": "time", "input": {}},
            ]),
            "tool_use",
        );
        let out = anthropic_response_to_openai(&resp, "my-model");
        assert_eq!(out["id"], "chatcmpl-msg_01");
        assert_eq!(out["object"], "chat.completion");
        assert!(out["created"].as_u64().unwrap() > 1_600_000_000);
        assert_eq!(out["model"], "my-model");
        assert_eq!(
            out["choices"],
            json!([{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking both.",
                    "refusal": null,
                    "tool_calls": [
                        {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\",\"units\":[\"c\"]}"}},
                        {"id": "toolu_2", "type": "function", "function": {"name": "time", "arguments": "{}"}},
                    ],
                },
                "logprobs": null,
                "finish_reason": "tool_calls",
            }])
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 112, "completion_tokens": 30, "total_tokens": 142,
                "prompt_tokens_details": {"cached_tokens": 100}})
        );
    }

    #[test]
    fn anthropic_stop_reasons_map_to_finish_reasons() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("something_new", "stop"),
        ] {
            let out = anthropic_response_to_openai(
                &anthropic_message(json!([{"type": "text", "text": "x"}]), stop),
                "m",
            );
            assert_eq!(out["choices"][0]["finish_reason"], finish, "{stop}");
        }
        let out = anthropic_response_to_openai(&anthropic_message(json!([]), "max_tokens"), "m");
        assert_eq!(out["choices"][0]["message"]["content"], Value::Null);
        assert!(out["choices"][0]["message"].get("tool_calls").is_none());
    }

    #[test]
    fn openai_completion_becomes_anthropic_message() {
        let resp = json!({
            "id": "chatcmpl-abc",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Sure.",
                    "refusal": null,
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{broken"}},
                    ],
                },
                "logprobs": null,
                "finish_reason": "tool_calls",
            }],
            "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59,
                "prompt_tokens_details": {"cached_tokens": 32}},
        });
        let out = openai_response_to_anthropic(&resp, "reported");
        assert_eq!(
            out,
            json!({
                "id": "msg_chatcmpl-abc",
                "type": "message",
                "role": "assistant",
                "model": "reported",
                "content": [
                    {"type": "text", "text": "Sure."},
                    {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
                    {"type": "tool_use", "id": "call_2", "name": "g", "input": {"_raw": "{broken"}},
                ],
                "stop_reason": "tool_use",
                "stop_sequence": null,
                "usage": {"input_tokens": 18, "output_tokens": 9, "cache_read_input_tokens": 32},
            })
        );
        assert_eq!(super::super::anthropic_usage(&out), super::super::openai_usage(&resp));
    }

    #[test]
    fn openai_finish_reasons_map_to_stop_reasons() {
        for (finish, stop) in [
            (json!("stop"), "end_turn"),
            (json!("length"), "max_tokens"),
            (json!("tool_calls"), "tool_use"),
            (json!("function_call"), "tool_use"),
            (json!("content_filter"), "refusal"),
            (json!(null), "end_turn"),
        ] {
            let resp = json!({"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": finish}]});
            let out = openai_response_to_anthropic(&resp, "m");
            assert_eq!(out["stop_reason"], stop, "{finish}");
            assert_eq!(out["content"], json!([]));
            assert_eq!(out["usage"], json!({"input_tokens": 0, "output_tokens": 0}));
        }
    }

    #[test]
    fn error_bodies_cross_over() {
        let out = anthropic_response_to_openai(
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            "m",
        );
        assert_eq!(
            out,
            json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null}})
        );
        let out = openai_response_to_anthropic(
            &json!({"error": {"message": "Rate limited", "type": "requests", "code": "rate_limit_exceeded"}}),
            "m",
        );
        assert_eq!(out, json!({"type": "error", "error": {"type": "api_error", "message": "Rate limited"}}));
    }

    #[test]
    fn odd_responses_still_render() {
        let out = anthropic_response_to_openai(&json!(42), "m");
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        assert!(out["id"].as_str().unwrap().starts_with("chatcmpl-"));
        let out = openai_response_to_anthropic(&json!({"choices": "no"}), "m");
        assert_eq!(out["content"], json!([]));
        assert!(out["id"].as_str().unwrap().starts_with("msg_"));
    }
}
