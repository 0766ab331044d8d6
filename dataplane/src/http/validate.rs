//! Validation of request bodies before anything is sent upstream. Checks the fields the
//! gateway relies on and the shapes providers would reject, and names the field at fault
//! (`messages[2].content[0].type`). Unknown fields pass through untouched.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// What the gateway needs to know about a chat or messages request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatInfo {
    /// Requested model.
    pub model: String,
    /// Whether the caller asked for a stream.
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
}

/// What the gateway needs to know about an embeddings request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingsInfo {
    /// Requested model.
    pub model: String,
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(message, Some(param.to_owned()))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected(param: &str, what: &str, got: &Value) -> ApiError {
    invalid(param, format!("`{param}` must be {what}, not {}", type_name(got)))
}

fn root(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| {
        ApiError::invalid(format!("the request body must be a JSON object, not {}", type_name(body)), None)
    })
}

fn model(obj: &Map<String, Value>) -> Result<String, ApiError> {
    match obj.get("model") {
        None | Some(Value::Null) => Err(invalid("model", "`model` is required")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(invalid("model", "`model` must not be empty")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(expected("model", "a string", other)),
    }
}

fn opt_bool(obj: &Map<String, Value>, field: &str, param: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(expected(param, "a boolean", other)),
    }
}

fn opt_uint(obj: &Map<String, Value>, field: &str, min: u64) -> Result<Option<u64>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= min => Ok(Some(n)),
            _ => Err(invalid(field, format!("`{field}` must be an integer of at least {min}"))),
        },
    }
}

fn opt_number_in(obj: &Map<String, Value>, field: &str, lo: f64, hi: f64) -> Result<(), ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_f64() {
            Some(n) if (lo..=hi).contains(&n) => Ok(()),
            Some(_) => Err(invalid(field, format!("`{field}` must be between {lo} and {hi}"))),
            None => Err(expected(field, "a number", v)),
        },
    }
}

fn string_field<'a>(obj: &'a Map<String, Value>, field: &str, param: &str) -> Result<&'a str, ApiError> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(invalid(param, format!("`{param}` is required"))),
        Some(other) => Err(expected(param, "a string", other)),
    }
}

/// Content parts: an array of objects each with a string `type`.
fn parts(value: &Value, param: &str, known: &[&str]) -> Result<(), ApiError> {
    let Value::Array(items) = value else {
        return Err(expected(param, "a string or an array of content parts", value));
    };
    for (i, item) in items.iter().enumerate() {
        let p = format!("{param}[{i}]");
        let Value::Object(part) = item else {
            return Err(expected(&p, "an object", item));
        };
        let kind = string_field(part, "type", &format!("{p}.type"))?;
        if !known.is_empty() && !known.contains(&kind) {
            return Err(invalid(
                &format!("{p}.type"),
                format!("unknown content part type {kind:?}; expected one of {}", known.join(", ")),
            ));
        }
        if kind == "text" {
            string_field(part, "text", &format!("{p}.text"))?;
        }
    }
    Ok(())
}

fn tools(obj: &Map<String, Value>, openai: bool) -> Result<(), ApiError> {
    let Some(value) = obj.get("tools").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let Value::Array(items) = value else {
        return Err(expected("tools", "an array", value));
    };
    for (i, item) in items.iter().enumerate() {
        let p = format!("tools[{i}]");
        let Value::Object(tool) = item else {
            return Err(expected(&p, "an object", item));
        };
        if openai {
            let kind = string_field(tool, "type", &format!("{p}.type"))?;
            if kind != "function" {
                continue;
            }
            let f = tool.get("function").unwrap_or(&Value::Null);
            let Value::Object(f) = f else {
                return Err(expected(&format!("{p}.function"), "an object", f));
            };
            string_field(f, "name", &format!("{p}.function.name"))?;
        } else if tool.get("type").and_then(Value::as_str).is_none_or(|t| t == "custom") {
            string_field(tool, "name", &format!("{p}.name"))?;
        }
    }
    Ok(())
}

/// The non-empty `messages` array both chat APIs require.
fn message_list(obj: &Map<String, Value>) -> Result<&Vec<Value>, ApiError> {
    match obj.get("messages") {
        Some(Value::Array(m)) if m.is_empty() => Err(invalid("messages", "`messages` must not be empty")),
        Some(Value::Array(m)) => Ok(m),
        None | Some(Value::Null) => Err(invalid("messages", "`messages` is required")),
        Some(other) => Err(expected("messages", "an array", other)),
    }
}

/// Validates an OpenAI Chat Completions request.
pub fn chat_completions(body: &Value) -> Result<ChatInfo, ApiError> {
    let obj = root(body)?;
    let model = model(obj)?;
    let messages = message_list(obj)?;
    for (i, message) in messages.iter().enumerate() {
        let p = format!("messages[{i}]");
        let Value::Object(m) = message else {
            return Err(expected(&p, "an object", message));
        };
        let role = string_field(m, "role", &format!("{p}.role"))?;
        let content = m.get("content").unwrap_or(&Value::Null);
        let cp = format!("{p}.content");
        match role {
            "system" | "developer" | "user" | "tool" | "function" => match content {
                Value::String(_) => {}
                Value::Null if role == "function" => {}
                Value::Null => return Err(invalid(&cp, format!("`{cp}` is required for role {role:?}"))),
                other => parts(other, &cp, &[])?,
            },
            "assistant" => match content {
                Value::String(_) | Value::Null => {}
                other => parts(other, &cp, &[])?,
            },
            other => {
                return Err(invalid(
                    &format!("{p}.role"),
                    format!("unknown role {other:?}; expected system, developer, user, assistant or tool"),
                ));
            }
        }
        if role == "tool" {
            string_field(m, "tool_call_id", &format!("{p}.tool_call_id"))?;
        }
        if let Some(calls) = m.get("tool_calls").filter(|v| !v.is_null()) {
            let Value::Array(calls) = calls else {
                return Err(expected(&format!("{p}.tool_calls"), "an array", calls));
            };
            for (j, call) in calls.iter().enumerate() {
                let cp = format!("{p}.tool_calls[{j}]");
                let f = call.get("function").unwrap_or(&Value::Null);
                let Value::Object(f) = f else {
                    return Err(expected(&format!("{cp}.function"), "an object", f));
                };
                string_field(f, "name", &format!("{cp}.function.name"))?;
                string_field(f, "arguments", &format!("{cp}.function.arguments"))?;
            }
        }
    }
    let stream = opt_bool(obj, "stream", "stream")?.unwrap_or(false);
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => {
            opt_bool(o, "include_usage", "stream_options.include_usage")?.unwrap_or(false)
        }
        Some(other) => return Err(expected("stream_options", "an object", other)),
    };
    opt_uint(obj, "max_tokens", 1)?;
    opt_uint(obj, "max_completion_tokens", 1)?;
    opt_uint(obj, "n", 1)?;
    opt_number_in(obj, "temperature", 0.0, 2.0)?;
    opt_number_in(obj, "top_p", 0.0, 1.0)?;
    tools(obj, true)?;
    if let Some(rf) = obj.get("response_format").filter(|v| !v.is_null()) {
        let Value::Object(rf) = rf else {
            return Err(expected("response_format", "an object", rf));
        };
        let kind = string_field(rf, "type", "response_format.type")?;
        if !matches!(kind, "text" | "json_object" | "json_schema") {
            return Err(invalid(
                "response_format.type",
                format!("unknown response format {kind:?}; expected text, json_object or json_schema"),
            ));
        }
    }
    Ok(ChatInfo { model, stream, include_usage })
}

/// Validates an Anthropic Messages request.
pub fn messages(body: &Value) -> Result<ChatInfo, ApiError> {
    let obj = root(body)?;
    let model = model(obj)?;
    if opt_uint(obj, "max_tokens", 1)?.is_none() {
        return Err(invalid("max_tokens", "`max_tokens` is required"));
    }
    let messages = message_list(obj)?;
    for (i, message) in messages.iter().enumerate() {
        let p = format!("messages[{i}]");
        let Value::Object(m) = message else {
            return Err(expected(&p, "an object", message));
        };
        let role = string_field(m, "role", &format!("{p}.role"))?;
        if !matches!(role, "user" | "assistant") {
            return Err(invalid(
                &format!("{p}.role"),
                format!("unknown role {role:?}; expected user or assistant"),
            ));
        }
        match m.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Null) | None => {
                return Err(invalid(&format!("{p}.content"), format!("`{p}.content` is required")));
            }
            Some(other) => parts(other, &format!("{p}.content"), &[])?,
        }
    }
    match obj.get("system") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(other) => parts(other, "system", &["text"])?,
    }
    let stream = opt_bool(obj, "stream", "stream")?.unwrap_or(false);
    opt_number_in(obj, "temperature", 0.0, 1.0)?;
    opt_number_in(obj, "top_p", 0.0, 1.0)?;
    tools(obj, false)?;
    Ok(ChatInfo { model, stream, include_usage: true })
}

/// Validates an OpenAI Embeddings request.
pub fn embeddings(body: &Value) -> Result<EmbeddingsInfo, ApiError> {
    let obj = root(body)?;
    let model = model(obj)?;
    let input = obj.get("input").unwrap_or(&Value::Null);
    let ok = match input {
        Value::String(_) => true,
        Value::Array(items) if items.is_empty() => return Err(invalid("input", "`input` must not be empty")),
        Value::Array(items) => {
            items.iter().all(Value::is_string)
                || items.iter().all(Value::is_u64)
                || items
                    .iter()
                    .all(|i| i.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_u64)))
        }
        Value::Null => return Err(invalid("input", "`input` is required")),
        _ => false,
    };
    if !ok {
        return Err(invalid(
            "input",
            "`input` must be a string, an array of strings, an array of token ids or an array of token-id arrays",
        ));
    }
    match obj.get("encoding_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "float" || f == "base64" => {}
        Some(_) => {
            return Err(invalid("encoding_format", "`encoding_format` must be \"float\" or \"base64\""));
        }
    }
    opt_uint(obj, "dimensions", 1)?;
    Ok(EmbeddingsInfo { model })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param_of(r: Result<ChatInfo, ApiError>) -> String {
        r.unwrap_err().param.unwrap_or_default()
    }

    #[test]
    fn accepts_a_full_chat_request() {
        let body = json!({
            "model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:x"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "r"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "response_format": {"type": "json_object"}, "max_tokens": 5, "temperature": 0.2
        });
        let info = chat_completions(&body).unwrap();
        assert_eq!(info, ChatInfo { model: "m".into(), stream: true, include_usage: true });
    }

    #[test]
    fn names_the_bad_field() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        let with = |f: &dyn Fn(&mut Value)| {
            let mut b = base.clone();
            f(&mut b);
            param_of(chat_completions(&b))
        };
        assert_eq!(with(&|b| b["model"] = json!(5)), "model");
        assert_eq!(with(&|b| b["messages"] = json!([])), "messages");
        assert_eq!(with(&|b| b["messages"][0]["role"] = json!("wizard")), "messages[0].role");
        assert_eq!(
            with(&|b| b["messages"][0]["content"] = json!([{"text": "x"}])),
            "messages[0].content[0].type"
        );
        assert_eq!(with(&|b| b["messages"][0]["content"] = json!(7)), "messages[0].content");
        assert_eq!(with(&|b| b["stream"] = json!("yes")), "stream");
        assert_eq!(with(&|b| b["max_tokens"] = json!(-1)), "max_tokens");
        assert_eq!(with(&|b| b["temperature"] = json!(9)), "temperature");
        assert_eq!(
            with(&|b| b["tools"] = json!([{"type": "function", "function": {}}])),
            "tools[0].function.name"
        );
        assert!(chat_completions(&json!([1])).unwrap_err().message.contains("JSON object"));
    }

    #[test]
    fn anthropic_requires_max_tokens() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(messages(&body).unwrap_err().param.as_deref(), Some("max_tokens"));
        let mut ok = body.clone();
        ok["max_tokens"] = json!(10);
        assert!(messages(&ok).is_ok());
        ok["messages"][0]["role"] = json!("system");
        assert_eq!(messages(&ok).unwrap_err().param.as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn embeddings_inputs() {
        assert!(embeddings(&json!({"model": "e", "input": "x"})).is_ok());
        assert!(embeddings(&json!({"model": "e", "input": [[1, 2], [3]]})).is_ok());
        assert!(embeddings(&json!({"model": "e", "input": [1, "x"]})).is_err());
        assert!(embeddings(&json!({"model": "e", "input": []})).is_err());
        assert!(embeddings(&json!({"model": "e", "input": "x", "encoding_format": "hex"})).is_err());
    }
}
