//! The OpenAI Responses API wire (`POST /v1/responses`), served through the Chat
//! Completions form the rest of the request path already governs.
//!
//! - requests: [`responses_request_to_chat`] decodes a Responses body (with the items of a
//!   `previous_response_id` chain prepended) into a Chat Completions body; every input item
//!   becomes a message the safety scan, token estimate and translation to Anthropic see.
//!   [`normalize_input_items`] gives the request's own items the ids and shape they are
//!   stored and listed with.
//! - answers: [`chat_response_to_responses`] encodes a Chat Completions answer (as the
//!   caller would get it, after output safety) as a Response object.
//! - streams: [`ChatToResponsesStream`] turns Chat Completions chunks into the Responses
//!   API's typed events (`response.created` … `response.completed`), numbered by
//!   `sequence_number`.
//!
//! NB: like the rest of this module, nothing here panics on any input.

use serde_json::{Map, Value, json};

use super::{TokenUsage, TranslateError, err, fresh_id, unix_now};

/// What a Response object echoes of its request, and how it is identified.
#[derive(Debug, Clone, Default)]
pub struct ResponseMeta {
    /// `resp_…`.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model that served (the name the caller used, or its fallback).
    pub model: String,
    /// The request's echoed fields: `instructions`, `metadata`, `tools`, `tool_choice`,
    /// `text`, `temperature`, `top_p`, `max_output_tokens`, `parallel_tool_calls`,
    /// `previous_response_id`, `store`, `user`, `reasoning`, `truncation`.
    pub echo: Map<String, Value>,
}

/// The default of an echoed field when the request leaves it out.
type Default = fn() -> Value;

/// Request fields a Response object repeats, with their defaults when absent.
const ECHOED: [(&str, Default); 14] = [
    ("instructions", || Value::Null),
    ("metadata", || json!({})),
    ("tools", || json!([])),
    ("tool_choice", || json!("auto")),
    ("text", || json!({"format": {"type": "text"}})),
    ("temperature", || json!(1.0)),
    ("top_p", || json!(1.0)),
    ("max_output_tokens", || Value::Null),
    ("parallel_tool_calls", || json!(true)),
    ("previous_response_id", || Value::Null),
    ("store", || json!(true)),
    ("user", || Value::Null),
    ("reasoning", || json!({"effort": null, "summary": null})),
    ("truncation", || json!("disabled")),
];

impl ResponseMeta {
    /// A fresh id and timestamp, echoing `request`'s fields.
    pub fn new(request: &Value, model: &str) -> Self {
        let mut echo = Map::new();
        for (key, default) in ECHOED {
            let v = request.get(key).filter(|v| !v.is_null()).cloned().unwrap_or_else(default);
            echo.insert(key.to_owned(), v);
        }
        Self { id: fresh_id("resp_"), created_at: unix_now(), model: model.to_owned(), echo }
    }

    /// The Response object around `output`, in `status`.
    pub fn response(&self, status: &str, output: Vec<Value>, usage: Option<TokenUsage>) -> Value {
        let mut r = Map::new();
        r.insert("id".into(), json!(self.id));
        r.insert("object".into(), json!("response"));
        r.insert("created_at".into(), json!(self.created_at));
        r.insert("status".into(), json!(status));
        r.insert("background".into(), json!(false));
        r.insert("error".into(), Value::Null);
        r.insert("incomplete_details".into(), Value::Null);
        r.insert("model".into(), json!(self.model));
        r.insert("output".into(), Value::Array(output));
        for (k, v) in &self.echo {
            r.insert(k.clone(), v.clone());
        }
        r.insert("service_tier".into(), json!("default"));
        r.insert("usage".into(), usage.map_or(Value::Null, usage_json));
        Value::Object(r)
    }
}

/// The Responses API's usage object.
pub fn usage_json(u: TokenUsage) -> Value {
    json!({
        "input_tokens": u.input,
        "input_tokens_details": {"cached_tokens": u.cached_input},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.input.saturating_add(u.output),
    })
}

/// Usage from a Response object, a `response.completed` event, or a bare usage object.
pub fn responses_usage(v: &Value) -> Option<TokenUsage> {
    let usage = v.pointer("/response/usage").or_else(|| v.get("usage")).unwrap_or(v).as_object()?;
    if !usage.contains_key("input_tokens") && !usage.contains_key("output_tokens") {
        return None;
    }
    let count = |k: &str| usage.get(k).and_then(super::as_count).unwrap_or(0);
    let input = count("input_tokens");
    let cached = usage
        .get("input_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(super::as_count)
        .unwrap_or(0);
    Some(TokenUsage { input, output: count("output_tokens"), cached_input: cached.min(input) })
}

/// The request's own input items as they are stored and listed: a string `input` is one
/// user message; items without a `type` are messages; every item gets an `id`.
pub fn normalize_input_items(request: &Value) -> Vec<Value> {
    let items = match request.get("input") {
        Some(Value::String(s)) => {
            vec![json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": s}]})]
        }
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .map(|mut item| {
            if let Some(obj) = item.as_object_mut() {
                if !obj.contains_key("type") {
                    obj.insert("type".into(), json!("message"));
                }
                if obj.get("type").and_then(Value::as_str) == Some("message") {
                    if let Some(Value::String(text)) = obj.get("content") {
                        let part = if obj.get("role").and_then(Value::as_str) == Some("assistant") {
                            json!({"type": "output_text", "text": text, "annotations": []})
                        } else {
                            json!({"type": "input_text", "text": text})
                        };
                        obj.insert("content".into(), json!([part]));
                    }
                    obj.entry("status").or_insert_with(|| json!("completed"));
                }
                if !obj.get("id").is_some_and(Value::is_string) {
                    let prefix = match obj.get("type").and_then(Value::as_str) {
                        Some("function_call") => "fc_",
                        Some("function_call_output") => "fco_",
                        _ => "msg_",
                    };
                    obj.insert("id".into(), json!(fresh_id(prefix)));
                }
            }
            item
        })
        .collect()
}

/// Decodes a Responses request into a Chat Completions request. `history` holds the items
/// of the `previous_response_id` chain, oldest first; they come after `instructions` and
/// before the request's own `input`. Fields the chat form has no place for (`metadata`,
/// `store`, `previous_response_id`, `truncation`, `include`) stay behind.
pub fn responses_request_to_chat(req: &Value, history: &[Value]) -> Result<Value, TranslateError> {
    let obj = req.as_object().ok_or_else(|| err("", "the request body must be a JSON object"))?;
    let mut messages: Vec<Value> = Vec::new();
    match obj.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(_) => return Err(err("instructions", "must be a string")),
    }
    for (i, item) in history.iter().enumerate() {
        push_item(&mut messages, item, &format!("previous_response_id: item {i}"))?;
    }
    match obj.get("input") {
        None | Some(Value::Null) => {
            if history.is_empty() && messages.is_empty() {
                return Err(err("input", "is required"));
            }
        }
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                push_item(&mut messages, item, &format!("input[{i}]"))?;
            }
        }
        Some(_) => return Err(err("input", "must be a string or an array of input items")),
    }
    if !messages.iter().any(|m| m.get("role").and_then(Value::as_str) != Some("system")) {
        return Err(err("input", "must hold at least one message or item"));
    }
    let mut chat = Map::new();
    if let Some(model) = obj.get("model") {
        chat.insert("model".into(), model.clone());
    }
    chat.insert("messages".into(), Value::Array(messages));
    for key in ["temperature", "top_p", "parallel_tool_calls", "user", "seed", "top_logprobs"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            chat.insert(key.into(), v.clone());
        }
    }
    match obj.get("max_output_tokens") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_u64().is_some_and(|n| n >= 1) => {
            chat.insert("max_tokens".into(), v.clone());
        }
        Some(_) => return Err(err("max_output_tokens", "must be a positive integer")),
    }
    if obj.get("stream").and_then(Value::as_bool) == Some(true) {
        chat.insert("stream".into(), json!(true));
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    } else if let Some(v) = obj.get("stream").filter(|v| !v.is_null() && !v.is_boolean()) {
        return Err(err("stream", format!("must be a boolean, not {v}")));
    }
    if let Some(effort) = obj.get("reasoning").and_then(|r| r.get("effort")).filter(|v| v.is_string()) {
        chat.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(tools) = obj.get("tools").filter(|v| !v.is_null()) {
        let tools = tools.as_array().ok_or_else(|| err("tools", "must be an array"))?;
        let mut out = Vec::with_capacity(tools.len());
        for (i, tool) in tools.iter().enumerate() {
            out.push(tool_to_chat(tool, &format!("tools[{i}]"))?);
        }
        if !out.is_empty() {
            chat.insert("tools".into(), Value::Array(out));
        }
    }
    if let Some(choice) = obj.get("tool_choice").filter(|v| !v.is_null()) {
        chat.insert("tool_choice".into(), tool_choice_to_chat(choice)?);
    }
    if let Some(format) = obj.get("text").and_then(|t| t.get("format")).filter(|v| !v.is_null())
        && let Some(rf) = format_to_chat(format)?
    {
        chat.insert("response_format".into(), rf);
    }
    Ok(Value::Object(chat))
}

/// Appends one Responses item as chat messages: consecutive function calls join one
/// assistant message's `tool_calls`.
fn push_item(messages: &mut Vec<Value>, item: &Value, path: &str) -> Result<(), TranslateError> {
    let obj = item.as_object().ok_or_else(|| err(path, "must be an object"))?;
    let kind = match obj.get("type") {
        None | Some(Value::Null) => "message",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(err(format!("{path}.type"), "must be a string")),
    };
    match kind {
        "message" => {
            let role = obj
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| err(format!("{path}.role"), "is required"))?;
            let role = match role {
                "user" | "assistant" | "system" => role,
                "developer" => "system",
                other => {
                    return Err(err(
                        format!("{path}.role"),
                        format!("unknown role {other:?}; expected user, assistant, system or developer"),
                    ));
                }
            };
            let content = content_to_chat(obj.get("content"), role, &format!("{path}.content"))?;
            messages.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let field = |k: &str| {
                obj.get(k)
                    .and_then(Value::as_str)
                    .ok_or_else(|| err(format!("{path}.{k}"), "must be a string"))
            };
            let call = json!({
                "id": field("call_id")?,
                "type": "function",
                "function": {"name": field("name")?, "arguments": field("arguments")?},
            });
            let joins = messages.last().is_some_and(|m| {
                m.get("role").and_then(Value::as_str) == Some("assistant")
                    && (m.get("tool_calls").is_some() || m.get("content").is_some_and(|c| !c.is_null()))
            });
            match messages.last_mut().and_then(Value::as_object_mut).filter(|_| joins) {
                Some(last) => {
                    let calls = last.entry("tool_calls").or_insert_with(|| json!([]));
                    if let Some(calls) = calls.as_array_mut() {
                        calls.push(call);
                    }
                }
                None => messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let call_id = obj
                .get("call_id")
                .and_then(Value::as_str)
                .ok_or_else(|| err(format!("{path}.call_id"), "must be a string"))?;
            let output = match obj.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => return Err(err(format!("{path}.output"), "must be a string")),
            };
            messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
        }
        // Reasoning is the provider's own state; it has no chat form and carries no input.
        "reasoning" => {}
        other => {
            return Err(err(
                format!("{path}.type"),
                format!(
                    "item type {other:?} is not supported here; supported: message, function_call, \
                     function_call_output"
                ),
            ));
        }
    }
    Ok(())
}

/// A message's content as chat content: a string stays a string; parts become chat parts
/// (text, images), or one string for assistant messages.
fn content_to_chat(content: Option<&Value>, role: &str, path: &str) -> Result<Value, TranslateError> {
    let parts = match content {
        Some(Value::String(s)) => return Ok(json!(s)),
        Some(Value::Array(parts)) => parts,
        None | Some(Value::Null) => return Err(err(path, "is required")),
        Some(_) => return Err(err(path, "must be a string or an array of content parts")),
    };
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let kind = part
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("{p}.type"), "is required"))?;
        match kind {
            "input_text" | "output_text" | "text" | "summary_text" => {
                let text = part
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err(format!("{p}.text"), "must be a string"))?;
                out.push(json!({"type": "text", "text": text}));
            }
            "refusal" => {
                let text = part.get("refusal").and_then(Value::as_str).unwrap_or_default();
                out.push(json!({"type": "text", "text": text}));
            }
            "input_image" => {
                let url = part
                    .get("image_url")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err(format!("{p}.image_url"), "must be a URL or data URL"))?;
                let mut image = json!({"url": url});
                if let Some(detail) = part.get("detail").filter(|d| d.is_string()) {
                    image["detail"] = detail.clone();
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            other => {
                return Err(err(
                    format!("{p}.type"),
                    format!("content type {other:?} is not supported; supported: input_text, input_image"),
                ));
            }
        }
    }
    if role != "user" || out.iter().all(|p| p.get("type").and_then(Value::as_str) == Some("text")) {
        // Assistant and system turns, and text-only user turns: one string.
        let text: Vec<&str> = out.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
        return Ok(json!(text.join("")));
    }
    Ok(Value::Array(out))
}

fn tool_to_chat(tool: &Value, path: &str) -> Result<Value, TranslateError> {
    let kind = tool.get("type").and_then(Value::as_str).unwrap_or_default();
    if kind != "function" {
        return Err(err(
            format!("{path}.type"),
            format!("tool type {kind:?} is not supported by this model's provider; use function tools"),
        ));
    }
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{path}.name"), "must be a string"))?;
    let mut function = Map::new();
    function.insert("name".into(), json!(name));
    for key in ["description", "parameters", "strict"] {
        if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
            function.insert(key.into(), v.clone());
        }
    }
    Ok(json!({"type": "function", "function": function}))
}

fn tool_choice_to_chat(choice: &Value) -> Result<Value, TranslateError> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(choice.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| err("tool_choice.name", "must be a string"))?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => {
            Err(err("tool_choice", "must be auto, none, required or {\"type\": \"function\", \"name\": ...}"))
        }
    }
}

fn format_to_chat(format: &Value) -> Result<Option<Value>, TranslateError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let name = format
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| err("text.format.name", "must be a string"))?;
            let schema = format
                .get("schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| err("text.format.schema", "must be a JSON schema object"))?;
            let mut js = Map::new();
            js.insert("name".into(), json!(name));
            js.insert("schema".into(), schema.clone());
            for key in ["strict", "description"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    js.insert(key.into(), v.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": js})))
        }
        _ => Err(err("text.format.type", "must be text, json_object or json_schema")),
    }
}

/// The output items of a chat answer's first choice.
fn output_items(message: Option<&Value>) -> Vec<Value> {
    let mut items = Vec::new();
    let Some(message) = message else { return items };
    let text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        _ => String::new(),
    };
    let refusal = message.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty());
    if !text.is_empty() || refusal.is_some() {
        let mut content = Vec::new();
        if !text.is_empty() {
            content.push(json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []}));
        }
        if let Some(r) = refusal {
            content.push(json!({"type": "refusal", "refusal": r}));
        }
        items.push(json!({
            "id": fresh_id("msg_"),
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": content,
        }));
    }
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let s = |p: &str| call.pointer(p).and_then(Value::as_str).unwrap_or_default();
        items.push(json!({
            "id": fresh_id("fc_"),
            "type": "function_call",
            "status": "completed",
            "call_id": if s("/id").is_empty() { fresh_id("call_") } else { s("/id").to_owned() },
            "name": s("/function/name"),
            "arguments": s("/function/arguments"),
        }));
    }
    items
}

/// The Responses `status` and `incomplete_details` for a chat `finish_reason`.
fn status_for(finish_reason: Option<&str>) -> (&'static str, Value) {
    match finish_reason {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// Encodes a Chat Completions answer as a Response object.
pub fn chat_response_to_responses(chat: &Value, meta: &ResponseMeta) -> Value {
    let choice = chat.get("choices").and_then(Value::as_array).and_then(|c| c.first());
    let output = output_items(choice.and_then(|c| c.get("message")));
    let (status, incomplete) =
        status_for(choice.and_then(|c| c.get("finish_reason")).and_then(Value::as_str));
    let usage = super::openai_usage(chat).unwrap_or_default();
    let mut response = meta.response(status, output, Some(usage));
    response["incomplete_details"] = incomplete;
    response
}

/// One output item being streamed.
#[derive(Debug)]
struct OpenItem {
    output_index: usize,
    id: String,
    kind: ItemKind,
}

#[derive(Debug)]
enum ItemKind {
    Text { text: String },
    Call { call_id: String, name: String, arguments: String },
}

/// Chat Completions chunks in, Responses API events out (`(event name, data)`).
#[derive(Debug)]
pub struct ChatToResponsesStream {
    meta: ResponseMeta,
    sequence: u64,
    started: bool,
    /// Items in output order; `None` once done.
    items: Vec<Option<OpenItem>>,
    done_items: Vec<(usize, Value)>,
    /// The open text item's index in `items`.
    text_at: Option<usize>,
    /// Chat tool-call index → index in `items`.
    calls: Vec<(u64, usize)>,
    finish_reason: Option<String>,
    usage: TokenUsage,
}

impl ChatToResponsesStream {
    /// A stream for the response `meta` describes.
    pub fn new(meta: ResponseMeta) -> Self {
        Self {
            meta,
            sequence: 0,
            started: false,
            items: Vec::new(),
            done_items: Vec::new(),
            text_at: None,
            calls: Vec::new(),
            finish_reason: None,
            usage: TokenUsage::default(),
        }
    }

    /// The response's id.
    pub fn id(&self) -> &str {
        &self.meta.id
    }

    /// Token counts seen so far.
    pub fn usage(&self) -> TokenUsage {
        self.usage
    }

    fn event(&mut self, name: &'static str, mut data: Value) -> (&'static str, Value) {
        if let Some(o) = data.as_object_mut() {
            o.insert("type".into(), json!(name));
            o.insert("sequence_number".into(), json!(self.sequence));
        }
        self.sequence += 1;
        (name, data)
    }

    fn start(&mut self, out: &mut Vec<(&'static str, Value)>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = self.meta.response("in_progress", Vec::new(), None);
        let e = self.event("response.created", json!({"response": r}));
        out.push(e);
        let r = self.meta.response("in_progress", Vec::new(), None);
        let e = self.event("response.in_progress", json!({"response": r}));
        out.push(e);
    }

    fn open_text(&mut self, out: &mut Vec<(&'static str, Value)>) -> usize {
        if let Some(at) = self.text_at {
            return at;
        }
        let at = self.items.len();
        let id = fresh_id("msg_");
        self.items.push(Some(OpenItem {
            output_index: at,
            id: id.clone(),
            kind: ItemKind::Text { text: String::new() },
        }));
        self.text_at = Some(at);
        let item =
            json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
        let e = self.event("response.output_item.added", json!({"output_index": at, "item": item}));
        out.push(e);
        let part = json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
        let e = self.event(
            "response.content_part.added",
            json!({"item_id": id, "output_index": at, "content_index": 0, "part": part}),
        );
        out.push(e);
        at
    }

    /// Handles one chat chunk (already checked by output safety).
    pub fn on_chunk(&mut self, chunk: &Value) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        self.start(&mut out);
        if let Some(u) = super::openai_usage(chunk) {
            self.usage = u;
        }
        let Some(choice) = chunk.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else {
            return out;
        };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
        let Some(delta) = choice.get("delta") else { return out };
        if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            let at = self.open_text(&mut out);
            let id = self.push_text(at, text);
            let e = self.event(
                "response.output_text.delta",
                json!({"item_id": id, "output_index": at, "content_index": 0, "delta": text, "logprobs": []}),
            );
            out.push(e);
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let at = match self.calls.iter().find(|(i, _)| *i == index) {
                Some(&(_, at)) => at,
                None => {
                    // A new call: the text before it is finished.
                    if let Some(t) = self.text_at.take() {
                        self.close(t, &mut out);
                    }
                    let at = self.items.len();
                    let id = fresh_id("fc_");
                    let s = |p: &str| call.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned();
                    let call_id = if s("/id").is_empty() { fresh_id("call_") } else { s("/id") };
                    let name = s("/function/name");
                    self.items.push(Some(OpenItem {
                        output_index: at,
                        id: id.clone(),
                        kind: ItemKind::Call {
                            call_id: call_id.clone(),
                            name: name.clone(),
                            arguments: String::new(),
                        },
                    }));
                    self.calls.push((index, at));
                    let item = json!({
                        "id": id, "type": "function_call", "status": "in_progress",
                        "call_id": call_id, "name": name, "arguments": "",
                    });
                    let e =
                        self.event("response.output_item.added", json!({"output_index": at, "item": item}));
                    out.push(e);
                    at
                }
            };
            if let Some(args) =
                call.pointer("/function/arguments").and_then(Value::as_str).filter(|a| !a.is_empty())
                && let Some(Some(item)) = self.items.get_mut(at)
                && let ItemKind::Call { arguments, .. } = &mut item.kind
            {
                arguments.push_str(args);
                let id = item.id.clone();
                let e = self.event(
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": at, "delta": args}),
                );
                out.push(e);
            }
        }
        out
    }

    fn push_text(&mut self, at: usize, piece: &str) -> String {
        match self.items.get_mut(at) {
            Some(Some(OpenItem { id, kind: ItemKind::Text { text }, .. })) => {
                text.push_str(piece);
                id.clone()
            }
            _ => String::new(),
        }
    }

    /// Emits the `.done` events of item `at` and keeps its final form.
    fn close(&mut self, at: usize, out: &mut Vec<(&'static str, Value)>) {
        let Some(item) = self.items.get_mut(at).and_then(Option::take) else { return };
        let OpenItem { output_index, id, kind } = item;
        let done = match kind {
            ItemKind::Text { text } => {
                let part = json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                let e = self.event(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": output_index, "content_index": 0, "text": text, "logprobs": []}),
                );
                out.push(e);
                let e = self.event(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": output_index, "content_index": 0, "part": part}),
                );
                out.push(e);
                json!({"id": id, "type": "message", "status": "completed", "role": "assistant", "content": [part]})
            }
            ItemKind::Call { call_id, name, arguments } => {
                let e = self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": output_index, "name": name, "arguments": arguments}),
                );
                out.push(e);
                json!({
                    "id": id, "type": "function_call", "status": "completed",
                    "call_id": call_id, "name": name, "arguments": arguments,
                })
            }
        };
        let e = self.event("response.output_item.done", json!({"output_index": output_index, "item": done}));
        out.push(e);
        self.done_items.push((output_index, done));
    }

    fn close_all(&mut self, out: &mut Vec<(&'static str, Value)>) {
        self.text_at = None;
        for at in 0..self.items.len() {
            self.close(at, out);
        }
    }

    /// The response as it stands, in `status`.
    fn snapshot(&self, status: &str) -> Value {
        let mut items = self.done_items.clone();
        items.sort_by_key(|(i, _)| *i);
        self.meta.response(status, items.into_iter().map(|(_, v)| v).collect(), Some(self.usage))
    }

    /// Ends a stream that completed, with the usage to report: the closing events, the last
    /// of which is `response.completed` (or `response.incomplete`). Also returns the final
    /// Response object, for storing.
    pub fn finish(&mut self, usage: TokenUsage) -> (Vec<(&'static str, Value)>, Value) {
        let mut out = Vec::new();
        self.start(&mut out);
        self.usage = usage;
        self.close_all(&mut out);
        let (status, incomplete) = status_for(self.finish_reason.as_deref());
        let mut response = self.snapshot(status);
        response["incomplete_details"] = incomplete;
        let name = if status == "completed" { "response.completed" } else { "response.incomplete" };
        let e = self.event(name, json!({"response": response.clone()}));
        out.push(e);
        (out, response)
    }

    /// Ends a stream that failed: `response.failed` carrying the error.
    pub fn fail(&mut self, code: &str, message: &str) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        self.start(&mut out);
        let mut response = self.snapshot("failed");
        response["error"] = json!({"code": code, "message": message});
        let e = self.event("response.failed", json!({"response": response}));
        out.push(e);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_items_tools_and_format() {
        let req = json!({
            "model": "m",
            "instructions": "be brief",
            "input": [
                {"role": "user", "content": "weather in Paris?"},
                {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "c2", "name": "time", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "function_call_output", "call_id": "c2", "output": "noon"},
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "d"}]},
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "weather"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
            "max_output_tokens": 50,
            "metadata": {"a": "b"},
            "store": true,
        });
        let chat = responses_request_to_chat(&req, &[]).unwrap();
        let m = chat["messages"].as_array().unwrap();
        assert_eq!(m.len(), 6, "{chat:#}");
        assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(m[2]["tool_calls"].as_array().unwrap().len(), 2, "consecutive calls join");
        assert_eq!(m[3], json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"}));
        assert_eq!(m[5]["role"], "system");
        assert_eq!(chat["tools"][0]["function"]["name"], "weather");
        assert_eq!(chat["tool_choice"], json!({"type": "function", "function": {"name": "weather"}}));
        assert_eq!(chat["response_format"]["json_schema"]["name"], "w");
        assert_eq!(chat["max_tokens"], 50);
        assert!(chat.get("metadata").is_none() && chat.get("store").is_none());
    }

    #[test]
    fn errors_name_the_responses_path() {
        let bad = |req: Value| responses_request_to_chat(&req, &[]).unwrap_err().path;
        assert_eq!(bad(json!({"model": "m"})), "input");
        assert_eq!(bad(json!({"model": "m", "input": 3})), "input");
        assert_eq!(bad(json!({"model": "m", "input": [{"type": "file_search_call"}]})), "input[0].type");
        assert_eq!(
            bad(json!({"model": "m", "input": [{"role": "wizard", "content": "x"}]})),
            "input[0].role"
        );
        assert_eq!(
            bad(json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]})),
            "tools[0].type"
        );
        assert_eq!(bad(json!({"model": "m", "input": "x", "max_output_tokens": 0})), "max_output_tokens");
    }

    #[test]
    fn history_comes_before_input() {
        let history = normalize_input_items(&json!({"input": "first"}));
        let chat = responses_request_to_chat(&json!({"model": "m", "input": "second"}), &history).unwrap();
        assert_eq!(chat["messages"][0]["content"], "first");
        assert_eq!(chat["messages"][1]["content"], "second");
        // Stored items decode again.
        let items = normalize_input_items(&json!({"input": [{"role": "assistant", "content": "hi"}]}));
        assert_eq!(items[0]["content"][0]["type"], "output_text");
        assert!(items[0]["id"].as_str().unwrap().starts_with("msg_"));
        let chat = responses_request_to_chat(&json!({"model": "m", "input": "x"}), &items).unwrap();
        assert_eq!(chat["messages"][0], json!({"role": "assistant", "content": "hi"}));
    }

    #[test]
    fn encodes_answers() {
        let meta = ResponseMeta::new(&json!({"metadata": {"k": "v"}, "store": false}), "m");
        let chat = json!({
            "choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Let me look.",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        });
        let r = chat_response_to_responses(&chat, &meta);
        assert_eq!(r["status"], "completed");
        assert_eq!(r["output"][0]["content"][0]["text"], "Let me look.");
        assert_eq!(r["output"][1]["call_id"], "call_1");
        assert_eq!(r["usage"]["total_tokens"], 15);
        assert_eq!(r["metadata"]["k"], "v");
        assert_eq!(r["store"], false);
        let cut = json!({"choices": [{"finish_reason": "length", "message": {"content": "ab"}}]});
        let r = chat_response_to_responses(&cut, &meta);
        assert_eq!(
            (r["status"].as_str(), r["incomplete_details"]["reason"].as_str()),
            (Some("incomplete"), Some("max_output_tokens"))
        );
    }

    #[test]
    fn streams_text_then_calls() {
        let mut s = ChatToResponsesStream::new(ResponseMeta::new(&json!({}), "m"));
        let mut names = Vec::new();
        let chunks = [
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "lo"}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_9", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        ];
        for c in &chunks {
            names.extend(s.on_chunk(c).into_iter().map(|(n, d)| (n, d["sequence_number"].as_u64().unwrap())));
        }
        let (end, response) = s.finish(TokenUsage { input: 3, output: 4, cached_input: 0 });
        names.extend(end.into_iter().map(|(n, d)| (n, d["sequence_number"].as_u64().unwrap())));
        let just: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            just,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert!(names.iter().enumerate().all(|(i, (_, n))| *n == i as u64), "numbered in order");
        assert_eq!(response["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(response["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(response["usage"]["output_tokens"], 4);
    }
}
