//! Streams, both ways: Anthropic SSE events to OpenAI `chat.completion.chunk` payloads and
//! OpenAI chunks to Anthropic SSE events. Each converter is a small state machine fed one
//! upstream item at a time; `finish()` closes the client's stream exactly once.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::response::{anthropic_error_body, openai_error_body};
use super::{
    AnthropicUsage, TokenUsage, anthropic_stop_reason, anthropic_usage_json, fresh_id, openai_finish_reason,
    openai_usage, openai_usage_json, prefixed_id, unix_now,
};

/// What an Anthropic content block becomes on the OpenAI side.
#[derive(Debug, Clone, Copy)]
enum BlockKind {
    Text,
    /// The k-th tool call of the message, which is its OpenAI `tool_calls[].index`.
    Tool(u64),
    /// Thinking and server-tool blocks, which OpenAI has no room for.
    Dropped,
}

/// Converts an Anthropic SSE stream (events) into OpenAI `chat.completion.chunk` payloads.
#[derive(Debug)]
pub struct AnthropicToOpenAiStream {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    started: bool,
    finished: bool,
    /// Anthropic block index → what it maps to.
    blocks: BTreeMap<u64, BlockKind>,
    tool_calls: u64,
    usage: AnthropicUsage,
    finish_reason: Option<&'static str>,
}

impl AnthropicToOpenAiStream {
    /// `model` is the model name to report; `include_usage` mirrors the client's
    /// `stream_options.include_usage`.
    pub fn new(model: &str, include_usage: bool) -> Self {
        Self {
            id: fresh_id("chatcmpl-"),
            model: model.to_owned(),
            created: unix_now(),
            include_usage,
            started: false,
            finished: false,
            blocks: BTreeMap::new(),
            tool_calls: 0,
            usage: AnthropicUsage::default(),
            finish_reason: None,
        }
    }

    /// One upstream event (its `event:` name, or the `type` field of `data` if the name is
    /// empty) with its parsed data. Returns the serialized `data:` payloads to send to the
    /// client, in order; the caller adds `data: ` and the blank line.
    pub fn on_event(&mut self, event: &str, data: &Value) -> Vec<String> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        let event =
            if event.is_empty() { data.get("type").and_then(Value::as_str).unwrap_or("") } else { event };
        match event {
            "message_start" => {
                let message = data.get("message");
                if !self.started
                    && let Some(id) = message.and_then(|m| m.get("id")).and_then(Value::as_str)
                {
                    self.id = prefixed_id("chatcmpl-", Some(id));
                }
                if let Some(usage) = message.and_then(|m| m.get("usage")).and_then(Value::as_object) {
                    self.usage.update(usage);
                }
                self.start(&mut out);
            }
            "content_block_start" => {
                self.start(&mut out);
                let Some(index) = data.get("index").and_then(Value::as_u64) else {
                    return out;
                };
                let block = data.get("content_block").unwrap_or(&Value::Null);
                let kind = match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(text) =
                            block.get("text").and_then(Value::as_str).filter(|t| !t.is_empty())
                        {
                            out.push(self.chunk(json!({ "content": text }), None));
                        }
                        BlockKind::Text
                    }
                    Some("tool_use") => {
                        let k = self.tool_calls;
                        self.tool_calls = self.tool_calls.saturating_add(1);
                        let id = block
                            .get("id")
                            .and_then(Value::as_str)
                            .map_or_else(|| fresh_id("call_"), str::to_owned);
                        let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                        let call = json!({
                            "index": k,
                            "id": id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        });
                        out.push(self.chunk(json!({ "tool_calls": [call] }), None));
                        BlockKind::Tool(k)
                    }
                    _ => BlockKind::Dropped,
                };
                self.blocks.insert(index, kind);
            }
            "content_block_delta" => {
                self.start(&mut out);
                let delta = data.get("delta").unwrap_or(&Value::Null);
                let kind =
                    data.get("index").and_then(Value::as_u64).and_then(|i| self.blocks.get(&i).copied());
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                        // A text delta for a block never started is still text.
                        if !text.is_empty() && matches!(kind, Some(BlockKind::Text) | None) {
                            out.push(self.chunk(json!({ "content": text }), None));
                        }
                    }
                    Some("input_json_delta") => {
                        let partial = delta.get("partial_json").and_then(Value::as_str).unwrap_or("");
                        if let (Some(BlockKind::Tool(k)), false) = (kind, partial.is_empty()) {
                            let call = json!({"index": k, "function": {"arguments": partial}});
                            out.push(self.chunk(json!({ "tool_calls": [call] }), None));
                        }
                    }
                    // thinking_delta, signature_delta, citations_delta: nothing to say.
                    _ => {}
                }
            }
            "message_delta" => {
                self.start(&mut out);
                if let Some(usage) = data.get("usage").and_then(Value::as_object) {
                    self.usage.update(usage);
                }
                if let Some(reason) =
                    data.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str)
                    && self.finish_reason.is_none()
                {
                    let reason = openai_finish_reason(reason);
                    self.finish_reason = Some(reason);
                    out.push(self.chunk(json!({}), Some(reason)));
                }
            }
            "error" => {
                let error = data.get("error").unwrap_or(data);
                out.push(openai_error_body(error).to_string());
            }
            // content_block_stop, message_stop, ping and anything new.
            _ => {}
        }
        out
    }

    /// Upstream ended. Returns the remaining payloads: the usage chunk (`choices: []` plus
    /// `usage`) if the client asked for usage. The caller writes the final `[DONE]`.
    pub fn finish(&mut self) -> Vec<String> {
        if std::mem::replace(&mut self.finished, true) || !self.include_usage {
            return Vec::new();
        }
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": openai_usage_json(self.usage()),
        });
        vec![chunk.to_string()]
    }

    /// Usage reported by the upstream so far.
    pub fn usage(&self) -> TokenUsage {
        self.usage.total()
    }

    /// The OpenAI `finish_reason` sent, once the upstream has said why it stopped.
    pub fn finish_reason(&self) -> Option<&str> {
        self.finish_reason
    }

    /// The first chunk (`role: assistant`), unless already sent.
    fn start(&mut self, out: &mut Vec<String>) {
        if !std::mem::replace(&mut self.started, true) {
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> String {
        let mut chunk = Map::new();
        chunk.insert("id".into(), self.id.clone().into());
        chunk.insert("object".into(), "chat.completion.chunk".into());
        chunk.insert("created".into(), self.created.into());
        chunk.insert("model".into(), self.model.clone().into());
        chunk.insert(
            "choices".into(),
            json!([{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }]),
        );
        if self.include_usage {
            // As OpenAI does: every chunk but the last carries `usage: null`.
            chunk.insert("usage".into(), Value::Null);
        }
        Value::Object(chunk).to_string()
    }
}

/// The Anthropic content block currently open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text { index: u64 },
    Tool { index: u64 },
}

impl OpenBlock {
    fn index(self) -> u64 {
        match self {
            Self::Text { index } | Self::Tool { index } => index,
        }
    }
}

/// A tool call seen in the stream.
#[derive(Debug)]
struct ToolSlot {
    /// Its Anthropic content block index.
    block: u64,
    id: String,
}

/// Converts OpenAI `chat.completion.chunk` payloads into Anthropic SSE events.
#[derive(Debug)]
pub struct OpenAiToAnthropicStream {
    id: Option<String>,
    model: String,
    started: bool,
    errored: bool,
    finished: bool,
    next_block: u64,
    open: Option<OpenBlock>,
    /// OpenAI tool call index → its block.
    tools: BTreeMap<u64, ToolSlot>,
    last_tool: Option<u64>,
    stop_reason: Option<&'static str>,
    usage: Option<TokenUsage>,
}

impl OpenAiToAnthropicStream {
    /// `model` is the model name to report.
    pub fn new(model: &str) -> Self {
        Self {
            id: None,
            model: model.to_owned(),
            started: false,
            errored: false,
            finished: false,
            next_block: 0,
            open: None,
            tools: BTreeMap::new(),
            last_tool: None,
            stop_reason: None,
            usage: None,
        }
    }

    /// One upstream chunk. Returns the (event name, data) pairs to send; the caller formats
    /// `event: name\ndata: json\n\n`.
    pub fn on_chunk(&mut self, chunk: &Value) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            self.errored = true;
            out.push(("error", anthropic_error_body(error)));
            return out;
        }
        if self.id.is_none()
            && let Some(id) = chunk.get("id").and_then(Value::as_str)
        {
            self.id = Some(prefixed_id("msg_", Some(id)));
        }
        if chunk.get("usage").is_some_and(Value::is_object) {
            self.usage = openai_usage(chunk);
        }
        self.start(&mut out);

        let choices = chunk.get("choices").and_then(Value::as_array);
        let Some(choice) = choices.and_then(|c| {
            c.iter().find(|ch| ch.get("index").and_then(Value::as_u64) == Some(0)).or_else(|| c.first())
        }) else {
            return out;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        for key in ["content", "refusal"] {
            if let Some(text) = delta.get(key).and_then(Value::as_str).filter(|t| !t.is_empty()) {
                self.text(text, &mut out);
            }
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            self.tool_call(call, &mut out);
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = Some(anthropic_stop_reason(reason));
        }
        out
    }

    /// Upstream sent `[DONE]` or ended: closes any open content block and sends
    /// `message_delta` (stop reason and usage) and `message_stop`, exactly once.
    pub fn finish(&mut self) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if std::mem::replace(&mut self.finished, true) {
            return out;
        }
        // NB: after an upstream error with nothing sent, there is no message to close.
        if self.errored && !self.started {
            return out;
        }
        self.start(&mut out);
        self.close_block(&mut out);
        let stop_reason =
            self.stop_reason.unwrap_or(if self.tools.is_empty() { "end_turn" } else { "tool_use" });
        // Anthropic's message_delta usage is cumulative and may carry the input counts,
        // which OpenAI only reports at the end.
        let usage = match self.usage {
            Some(u) => anthropic_usage_json(u),
            None => json!({"output_tokens": 0}),
        };
        out.push((
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": usage,
            }),
        ));
        out.push(("message_stop", json!({"type": "message_stop"})));
        out
    }

    /// Usage reported by the upstream so far.
    pub fn usage(&self) -> TokenUsage {
        self.usage.unwrap_or_default()
    }

    fn start(&mut self, out: &mut Vec<(&'static str, Value)>) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let id = self.id.get_or_insert_with(|| fresh_id("msg_")).clone();
        let usage = self.usage.unwrap_or_default();
        let start_usage = anthropic_usage_json(TokenUsage { output: 0, ..usage });
        out.push((
            "message_start",
            json!({
                "type": "message_start",
                "message": {
                    "id": id,
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": self.model,
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": start_usage,
                },
            }),
        ));
    }

    fn close_block(&mut self, out: &mut Vec<(&'static str, Value)>) {
        if let Some(open) = self.open.take() {
            out.push(("content_block_stop", json!({"type": "content_block_stop", "index": open.index()})));
        }
    }

    fn open_block(&mut self, block: OpenBlock, content_block: Value, out: &mut Vec<(&'static str, Value)>) {
        self.close_block(out);
        out.push((
            "content_block_start",
            json!({
                "type": "content_block_start",
                "index": block.index(),
                "content_block": content_block,
            }),
        ));
        self.open = Some(block);
        self.next_block = self.next_block.saturating_add(1);
    }

    fn text(&mut self, text: &str, out: &mut Vec<(&'static str, Value)>) {
        let index = match self.open {
            Some(OpenBlock::Text { index }) => index,
            _ => {
                let index = self.next_block;
                self.open_block(OpenBlock::Text { index }, json!({"type": "text", "text": ""}), out);
                index
            }
        };
        out.push((
            "content_block_delta",
            json!({
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": text},
            }),
        ));
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<(&'static str, Value)>) {
        let id = call.get("id").and_then(Value::as_str).filter(|i| !i.is_empty());
        let function = call.get("function").unwrap_or(&Value::Null);
        // NB: some compatible upstreams omit `index`; then a new id means a new call.
        let k = match call.get("index").and_then(Value::as_u64) {
            Some(k) => k,
            None => match id {
                Some(id) => self.tools.iter().find(|(_, slot)| slot.id == id).map_or_else(
                    || self.tools.keys().next_back().map_or(0, |last| last.saturating_add(1)),
                    |(k, _)| *k,
                ),
                None => self.last_tool.unwrap_or(0),
            },
        };
        self.last_tool = Some(k);
        let block = match self.tools.get(&k) {
            Some(slot) => slot.block,
            None => {
                let index = self.next_block;
                let id = id.map_or_else(|| fresh_id("toolu_"), str::to_owned);
                let name = function.get("name").and_then(Value::as_str).unwrap_or("");
                self.open_block(
                    OpenBlock::Tool { index },
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    out,
                );
                self.tools.insert(k, ToolSlot { block: index, id });
                index
            }
        };
        if let Some(partial) = function.get("arguments").and_then(Value::as_str).filter(|a| !a.is_empty()) {
            // NB: if an upstream interleaves the fragments of several calls, a fragment
            // can arrive for a block already stopped; it still goes to that block's index,
            // which is where Anthropic clients accumulate it.
            out.push((
                "content_block_delta",
                json!({
                    "type": "content_block_delta",
                    "index": block,
                    "delta": {"type": "input_json_delta", "partial_json": partial},
                }),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(payloads: &[String]) -> Vec<Value> {
        payloads.iter().map(|p| serde_json::from_str(p).unwrap()).collect()
    }

    /// An Anthropic stream: thinking, text, then two tool calls.
    fn anthropic_events() -> Vec<(&'static str, Value)> {
        vec![
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_abc", "type": "message",
                "role": "assistant", "content": [], "model": "claude-x", "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 25, "cache_read_input_tokens": 5, "output_tokens": 1}}}),
            ),
            ("ping", json!({"type": "ping"})),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Let me think"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "signature_delta", "signature": "sig"}}),
            ),
            ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "text_delta", "text": "Checking"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "text_delta", "text": " both."}}),
            ),
            ("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 2,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": "\"Oslo\"}"}}),
            ),
            ("content_block_stop", json!({"type": "content_block_stop", "index": 2})),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 3,
                "content_block": {"type": "tool_use", "id": "toolu_2", "name": "time", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 3,
                "delta": {"type": "input_json_delta", "partial_json": "{\"tz\":"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 3,
                "delta": {"type": "input_json_delta", "partial_json": "\"CET\"}"}}),
            ),
            ("content_block_stop", json!({"type": "content_block_stop", "index": 3})),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"output_tokens": 42}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ]
    }

    /// Content and tool calls reassembled from OpenAI chunks, as a client would.
    fn reassemble_openai(chunks: &[Value]) -> (String, Vec<(String, String, String)>, Vec<Value>) {
        let mut text = String::new();
        let mut calls: Vec<(String, String, String)> = Vec::new();
        let mut finish = Vec::new();
        for chunk in chunks {
            let Some(choice) = chunk["choices"].get(0) else {
                continue;
            };
            if let Some(t) = choice["delta"]["content"].as_str() {
                text.push_str(t);
            }
            for call in choice["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let k = usize::try_from(call["index"].as_u64().unwrap()).unwrap();
                if k == calls.len() {
                    calls.push((
                        call["id"].as_str().unwrap().to_owned(),
                        call["function"]["name"].as_str().unwrap().to_owned(),
                        String::new(),
                    ));
                }
                calls[k].2.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
            }
            if !choice["finish_reason"].is_null() {
                finish.push(choice["finish_reason"].clone());
            }
        }
        (text, calls, finish)
    }

    #[test]
    fn anthropic_stream_becomes_openai_chunks() {
        let mut conv = AnthropicToOpenAiStream::new("my-model", true);
        let mut payloads = Vec::new();
        for (event, data) in anthropic_events() {
            payloads.extend(conv.on_event(event, &data));
        }
        payloads.extend(conv.finish());
        assert!(conv.finish().is_empty(), "finish twice");
        let chunks = parse(&payloads);

        // First chunk announces the role; the last carries usage only.
        assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens": 30, "completion_tokens": 42, "total_tokens": 72,
                "prompt_tokens_details": {"cached_tokens": 5}})
        );
        for chunk in &chunks {
            assert_eq!(chunk["id"], "chatcmpl-msg_abc");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["model"], "my-model");
            assert!(chunk["created"].is_u64());
            assert!(chunk.get("usage").is_some());
        }
        for chunk in &chunks[..chunks.len() - 1] {
            assert_eq!(chunk["usage"], Value::Null);
            assert_eq!(chunk["choices"][0]["index"], 0);
            assert_eq!(chunk["choices"][0]["logprobs"], Value::Null);
        }

        let (text, calls, finish) = reassemble_openai(&chunks);
        assert_eq!(text, "Checking both.");
        assert_eq!(
            calls,
            vec![
                ("toolu_1".to_owned(), "weather".to_owned(), "{\"city\": \"Oslo\"}".to_owned()),
                ("toolu_2".to_owned(), "time".to_owned(), "{\"tz\":\"CET\"}".to_owned()),
            ]
        );
        assert_eq!(finish, vec![json!("tool_calls")]);
        // The start of a tool call carries id, type and name with empty arguments.
        let starts: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"].get(0)?["delta"]["tool_calls"].get(0))
            .filter(|c| c.get("id").is_some())
            .collect();
        assert_eq!(
            *starts[1],
            json!({"index": 1, "id": "toolu_2", "type": "function", "function": {"name": "time", "arguments": ""}})
        );
        // role, 2 text, 2 starts, 4 argument fragments, finish, usage: thinking and the
        // empty fragment say nothing.
        assert_eq!(chunks.len(), 11);
        assert_eq!(conv.finish_reason(), Some("tool_calls"));
        assert_eq!(conv.usage(), TokenUsage { input: 30, output: 42, cached_input: 5 });
    }

    #[test]
    fn anthropic_stream_without_usage_and_with_unnamed_events() {
        let mut conv = AnthropicToOpenAiStream::new("m", false);
        let mut payloads = Vec::new();
        for (_, data) in anthropic_events() {
            // No `event:` names: the data's `type` decides.
            payloads.extend(conv.on_event("", &data));
        }
        payloads.extend(conv.finish());
        let chunks = parse(&payloads);
        assert_eq!(chunks.len(), 10, "no usage chunk");
        for chunk in &chunks {
            assert!(chunk.get("usage").is_none());
        }
        assert_eq!(reassemble_openai(&chunks).0, "Checking both.");
        assert_eq!(conv.usage().output, 42);
    }

    #[test]
    fn anthropic_stop_reasons_and_errors_in_stream() {
        for (stop, finish) in [("end_turn", "stop"), ("max_tokens", "length"), ("refusal", "content_filter")]
        {
            let mut conv = AnthropicToOpenAiStream::new("m", false);
            let out = parse(&conv.on_event(
                "message_delta",
                &json!({"delta": {"stop_reason": stop}, "usage": {"output_tokens": 3}}),
            ));
            // The role chunk comes first even if message_start was missed.
            assert_eq!(out.len(), 2);
            assert_eq!(out[1]["choices"][0]["finish_reason"], finish);
            assert_eq!(out[1]["choices"][0]["delta"], json!({}));
            assert_eq!(conv.finish_reason(), Some(finish));
        }

        let mut conv = AnthropicToOpenAiStream::new("m", true);
        let out = conv.on_event(
            "error",
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        );
        assert_eq!(
            parse(&out),
            vec![
                json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null}})
            ]
        );
        assert_eq!(conv.finish_reason(), None);
        assert_eq!(parse(&conv.finish())[0]["usage"]["total_tokens"], 0);
    }

    /// An OpenAI stream: role, text, then two tool calls, then usage.
    fn openai_chunks() -> Vec<Value> {
        let chunk = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-xyz", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}], "usage": null})
        };
        vec![
            chunk(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null),
            chunk(json!({"content": "Checking"}), Value::Null),
            chunk(json!({"content": " both."}), Value::Null),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": "weather", "arguments": ""}}]}),
                Value::Null,
            ),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\""}}]}), Value::Null),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": ": \"Oslo\"}"}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                "function": {"name": "time", "arguments": "{\"tz\":"}}]}),
                Value::Null,
            ),
            chunk(json!({"tool_calls": [{"index": 1, "function": {"arguments": "\"CET\"}"}}]}), Value::Null),
            chunk(json!({}), json!("tool_calls")),
            json!({"id": "chatcmpl-xyz", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 17, "total_tokens": 57,
                "prompt_tokens_details": {"cached_tokens": 8}}}),
        ]
    }

    #[test]
    fn openai_stream_becomes_anthropic_events() {
        let mut conv = OpenAiToAnthropicStream::new("reported");
        let mut events = Vec::new();
        for chunk in openai_chunks() {
            events.extend(conv.on_chunk(&chunk));
        }
        events.extend(conv.finish());
        assert!(conv.finish().is_empty(), "finish twice");
        assert!(conv.on_chunk(&openai_chunks()[1]).is_empty(), "nothing after finish");

        let names: Vec<&str> = events.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        for (name, data) in &events {
            assert_eq!(data["type"], *name);
        }
        assert_eq!(
            events[0].1,
            json!({"type": "message_start", "message": {"id": "msg_chatcmpl-xyz", "type": "message",
                "role": "assistant", "content": [], "model": "reported", "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}})
        );
        assert_eq!(
            events[1].1,
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(
            events[5].1,
            json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": "call_1", "name": "weather", "input": {}}})
        );
        assert_eq!(events[9].1["index"], 2);
        assert_eq!(events[9].1["content_block"]["id"], "call_2");
        assert_eq!(events[12].1, json!({"type": "content_block_stop", "index": 2}));
        assert_eq!(
            events[13].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"input_tokens": 32, "output_tokens": 17, "cache_read_input_tokens": 8}})
        );

        let blocks = reassemble_anthropic(&events);
        assert_eq!(blocks[0], json!({"type": "text", "text": "Checking both."}));
        assert_eq!(
            blocks[1],
            json!({"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}})
        );
        assert_eq!(
            blocks[2],
            json!({"type": "tool_use", "id": "call_2", "name": "time", "input": {"tz": "CET"}})
        );
        assert_eq!(conv.usage(), TokenUsage { input: 40, output: 17, cached_input: 8 });
    }

    /// Content blocks reassembled from Anthropic events, as the SDKs do.
    fn reassemble_anthropic(events: &[(&str, Value)]) -> Vec<Value> {
        let mut blocks: Vec<Value> = Vec::new();
        let mut json_parts: Vec<String> = Vec::new();
        for (name, data) in events {
            match *name {
                "content_block_start" => {
                    assert_eq!(data["index"].as_u64().unwrap(), blocks.len() as u64);
                    blocks.push(data["content_block"].clone());
                    json_parts.push(String::new());
                }
                "content_block_delta" => {
                    let i = usize::try_from(data["index"].as_u64().unwrap()).unwrap();
                    match data["delta"]["type"].as_str().unwrap() {
                        "text_delta" => {
                            let text = format!(
                                "{}{}",
                                blocks[i]["text"].as_str().unwrap(),
                                data["delta"]["text"].as_str().unwrap()
                            );
                            blocks[i]["text"] = text.into();
                        }
                        "input_json_delta" => {
                            json_parts[i].push_str(data["delta"]["partial_json"].as_str().unwrap());
                        }
                        other => panic!("unexpected delta {other}"),
                    }
                }
                "content_block_stop" => {
                    let i = usize::try_from(data["index"].as_u64().unwrap()).unwrap();
                    if blocks[i]["type"] == "tool_use" && !json_parts[i].is_empty() {
                        blocks[i]["input"] = serde_json::from_str(&json_parts[i]).unwrap();
                    }
                }
                _ => {}
            }
        }
        blocks
    }

    #[test]
    fn openai_stream_finish_reasons_and_defaults() {
        for (finish, stop) in [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")]
        {
            let mut conv = OpenAiToAnthropicStream::new("m");
            let _ = conv.on_chunk(&json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}}]}));
            let _ = conv.on_chunk(
                &json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}),
            );
            let events = conv.finish();
            assert_eq!(events[0], ("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
            assert_eq!(events[1].1["delta"]["stop_reason"], stop);
            assert_eq!(events[1].1["usage"], json!({"output_tokens": 0}));
            assert_eq!(events[2].0, "message_stop");
        }

        // An upstream that sent nothing still yields a well-formed, empty message.
        let mut conv = OpenAiToAnthropicStream::new("m");
        let events = conv.finish();
        let names: Vec<&str> = events.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["message_start", "message_delta", "message_stop"]);
        assert_eq!(events[1].1["delta"]["stop_reason"], "end_turn");
        assert!(conv.finish().is_empty());
    }

    #[test]
    fn openai_stream_errors() {
        let mut conv = OpenAiToAnthropicStream::new("m");
        let events = conv.on_chunk(&json!({"error": {"message": "boom", "type": "server_error"}}));
        assert_eq!(
            events,
            vec![("error", json!({"type": "error", "error": {"type": "api_error", "message": "boom"}}))]
        );
        assert!(conv.finish().is_empty(), "no message to close");

        // After content, an error is forwarded and finish still closes the message once.
        let mut conv = OpenAiToAnthropicStream::new("m");
        let _ = conv.on_chunk(&json!({"choices": [{"delta": {"content": "partial"}}]}));
        let events = conv.on_chunk(&json!({"error": {"message": "cut"}}));
        assert_eq!(events[0].0, "error");
        let names: Vec<&str> = conv.finish().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["content_block_stop", "message_delta", "message_stop"]);
    }

    #[test]
    fn openai_stream_tool_calls_without_index() {
        // Some compatible upstreams omit `index`; ids tell the calls apart.
        let mut conv = OpenAiToAnthropicStream::new("m");
        let mut events = Vec::new();
        for delta in [
            json!({"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{\"x\":"}}]}),
            json!({"tool_calls": [{"function": {"arguments": "1}"}}]}),
            json!({"tool_calls": [{"id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
        ] {
            events.extend(conv.on_chunk(&json!({"choices": [{"delta": delta}]})));
        }
        events.extend(conv.finish());
        let blocks = reassemble_anthropic(&events);
        assert_eq!(
            blocks,
            vec![
                json!({"type": "tool_use", "id": "a", "name": "f", "input": {"x": 1}}),
                json!({"type": "tool_use", "id": "b", "name": "g", "input": {}}),
            ]
        );
        let delta = events.iter().find(|(n, _)| *n == "message_delta").unwrap();
        assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn streams_round_trip_anthropic_to_openai_and_back() {
        let mut to_openai = AnthropicToOpenAiStream::new("m", true);
        let mut to_anthropic = OpenAiToAnthropicStream::new("m");
        let mut events = Vec::new();
        let mut payloads = Vec::new();
        for (event, data) in anthropic_events() {
            payloads.extend(to_openai.on_event(event, &data));
        }
        payloads.extend(to_openai.finish());
        for chunk in parse(&payloads) {
            events.extend(to_anthropic.on_chunk(&chunk));
        }
        events.extend(to_anthropic.finish());
        let blocks = reassemble_anthropic(&events);
        assert_eq!(
            blocks,
            vec![
                json!({"type": "text", "text": "Checking both."}),
                json!({"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}),
                json!({"type": "tool_use", "id": "toolu_2", "name": "time", "input": {"tz": "CET"}}),
            ]
        );
        assert_eq!(to_anthropic.usage(), to_openai.usage());
        assert_eq!(events[0].1["message"]["id"], "msg_chatcmpl-msg_abc");
    }
}
