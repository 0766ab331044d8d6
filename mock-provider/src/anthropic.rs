//! The Anthropic Messages API, streaming and not.

use std::convert::identity;

use axum::extract::{Request, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::AppState;
use crate::delivery::{self, SseBuilder, json_bytes};
use crate::exchange::Exchange;
use crate::flavor::Flavor;
use crate::reply::{Finish, Reply, argument_fragments, text_pieces};

#[derive(Deserialize)]
struct MessagesRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    system: Option<Content>,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: Option<bool>,
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    content: Content,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<InBlock>),
}

/// An input block; `text` blocks count, as does the text inside `tool_result` blocks.
/// Images and `tool_use` blocks are accepted and ignored.
#[derive(Deserialize)]
struct InBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    content: Option<Content>,
}

impl Content {
    /// Calls `f` with every text this content holds, including inside tool results.
    fn visit_texts<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Self::Text(text) => f(text),
            Self::Blocks(blocks) => {
                for block in blocks {
                    match block.kind.as_str() {
                        "text" => block.text.iter().for_each(|t| f(t)),
                        "tool_result" => {
                            if let Some(inner) = &block.content {
                                inner.visit_texts(f);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// The message's own text: a string, or its top-level text blocks.
    fn own_text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Blocks(blocks) => {
                blocks.iter().filter(|b| b.kind == "text").filter_map(|b| b.text.as_deref()).collect()
            }
        }
    }
}

#[derive(Serialize, Clone, Copy)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: &'a [OutBlock<'a>],
    stop_reason: Option<&'static str>,
    stop_sequence: (),
    usage: Usage,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutBlock<'a> {
    Text { text: &'a str },
    ToolUse { id: &'a str, name: &'a str, input: &'a RawValue },
}

/// The empty `input` a streamed `tool_use` block starts with.
#[derive(Serialize)]
struct EmptyInput {}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock<'a> {
    Text { text: &'static str },
    ToolUse { id: &'a str, name: &'a str, input: EmptyInput },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart { message: OutMessage<'a> },
    ContentBlockStart { index: usize, content_block: StartBlock<'a> },
    Ping,
    ContentBlockDelta { index: usize, delta: BlockDelta<'a> },
    ContentBlockStop { index: usize },
    MessageDelta { delta: MessageDelta, usage: OutputUsage },
    MessageStop,
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::Ping => "ping",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
        }
    }

    fn write(&self, sse: &mut SseBuilder) {
        let content = matches!(self, Self::ContentBlockDelta { .. });
        sse.event(content, self.name(), self);
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Serialize)]
struct MessageDelta {
    stop_reason: &'static str,
    stop_sequence: (),
}

#[derive(Serialize)]
struct OutputUsage {
    output_tokens: u64,
}

fn stop_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::ToolCalls => "tool_use",
    }
}

pub(crate) async fn messages(State(state): State<AppState>, req: Request) -> Response {
    respond(&state, req).await.unwrap_or_else(identity)
}

async fn respond(state: &AppState, req: Request) -> Result<Response, Response> {
    let ex = Exchange::receive(Flavor::Anthropic, req).await?;
    let request: MessagesRequest = ex.parse()?;
    let bad = |message: &str| ex.flavor.bad_request(message);
    let model = request.model.ok_or_else(|| bad("model: Field required"))?;
    let max_tokens = request.max_tokens.ok_or_else(|| bad("max_tokens: Field required"))?;
    if request.messages.is_empty() {
        return Err(bad("messages: at least one message is required"));
    }
    let cut = ex.prepare(state).await?;

    let prompt_bytes = prompt_bytes(request.system.as_ref(), &request.messages);
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.own_text())
        .unwrap_or_default();
    let tool_results = request
        .messages
        .iter()
        .filter_map(|m| match &m.content {
            Content::Blocks(blocks) => Some(blocks.iter().filter(|b| b.kind == "tool_result").count()),
            Content::Text(_) => None,
        })
        .sum();
    let reply = Reply::compose(&ex.control, &last_user, tool_results, Some(max_tokens));
    let input_tokens = (prompt_bytes as u64).div_ceil(4);
    let id = format!("msg_{:016x}", ex.tag.0);
    let tool_ids: Vec<String> =
        (0..reply.tool_calls.len()).map(|i| format!("toolu_{:016x}_{i}", ex.tag.0)).collect();

    if request.stream == Some(true) {
        let mut sse = SseBuilder::new(ex.control.ttft, ex.control.chunk_gap, cut);
        write_stream(&mut sse, &id, &model, input_tokens, &reply, &tool_ids, ex.control.chunks);
        return Ok(sse.into_response(ex.kill));
    }

    let content: Vec<OutBlock<'_>> = if reply.tool_calls.is_empty() {
        vec![OutBlock::Text { text: &reply.text }]
    } else {
        reply
            .tool_calls
            .iter()
            .zip(&tool_ids)
            .map(|(call, id)| OutBlock::ToolUse { id, name: &call.name, input: &call.arguments })
            .collect()
    };
    let body = json_bytes(&OutMessage {
        id: &id,
        kind: "message",
        role: "assistant",
        model: &model,
        content: &content,
        stop_reason: Some(stop_reason(reply.finish)),
        stop_sequence: (),
        usage: Usage { input_tokens, output_tokens: reply.completion_tokens },
    });
    Ok(delivery::json(body, cut, ex.kill).await)
}

/// The prompt's UTF-8 bytes: `system`, every message's text, and text inside tool results.
fn prompt_bytes(system: Option<&Content>, messages: &[InMessage]) -> usize {
    let mut bytes = 0usize;
    let mut add = |text: &str| bytes += text.len();
    if let Some(system) = system {
        system.visit_texts(&mut add);
    }
    for message in messages {
        message.content.visit_texts(&mut add);
    }
    bytes
}

#[derive(Deserialize)]
struct CountTokensRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    system: Option<Content>,
    #[serde(default)]
    messages: Option<Vec<InMessage>>,
}

#[derive(Serialize)]
struct TokenCount {
    input_tokens: u64,
}

/// `POST /v1/messages/count_tokens`: the `input_tokens` a `/v1/messages` request with the
/// same `system` and `messages` would report. Latency and faults apply as on `messages`.
pub(crate) async fn count_tokens(State(state): State<AppState>, req: Request) -> Response {
    count(&state, req).await.unwrap_or_else(identity)
}

async fn count(state: &AppState, req: Request) -> Result<Response, Response> {
    let ex = Exchange::receive(Flavor::Anthropic, req).await?;
    let request: CountTokensRequest = ex.parse()?;
    if request.model.is_none() {
        return Err(ex.flavor.bad_request("model: Field required"));
    }
    let messages = request.messages.ok_or_else(|| ex.flavor.bad_request("messages: Field required"))?;
    let cut = ex.prepare(state).await?;
    let input_tokens = (prompt_bytes(request.system.as_ref(), &messages) as u64).div_ceil(4);
    Ok(delivery::json(json_bytes(&TokenCount { input_tokens }), cut, ex.kill).await)
}

/// The documented event sequence: `message_start`; per content block `content_block_start`
/// (the first followed by a `ping`), its deltas and `content_block_stop`; `message_delta`
/// with the stop reason and output tokens; `message_stop`.
fn write_stream(
    sse: &mut SseBuilder,
    id: &str,
    model: &str,
    input_tokens: u64,
    reply: &Reply<'_>,
    tool_ids: &[String],
    chunks: Option<usize>,
) {
    Event::MessageStart {
        message: OutMessage {
            id,
            kind: "message",
            role: "assistant",
            model,
            content: &[],
            stop_reason: None,
            stop_sequence: (),
            usage: Usage { input_tokens, output_tokens: 1 },
        },
    }
    .write(sse);
    let start = |sse: &mut SseBuilder, index: usize, content_block: StartBlock<'_>| {
        Event::ContentBlockStart { index, content_block }.write(sse);
        if index == 0 {
            Event::Ping.write(sse);
        }
    };
    if reply.tool_calls.is_empty() {
        start(sse, 0, StartBlock::Text { text: "" });
        for text in text_pieces(&reply.text, chunks) {
            Event::ContentBlockDelta { index: 0, delta: BlockDelta::TextDelta { text } }.write(sse);
        }
        Event::ContentBlockStop { index: 0 }.write(sse);
    }
    for (index, (call, id)) in reply.tool_calls.iter().zip(tool_ids).enumerate() {
        let block = StartBlock::ToolUse { id, name: &call.name, input: EmptyInput {} };
        start(sse, index, block);
        for partial_json in argument_fragments(call.arguments.get(), chunks) {
            Event::ContentBlockDelta { index, delta: BlockDelta::InputJsonDelta { partial_json } }.write(sse);
        }
        Event::ContentBlockStop { index }.write(sse);
    }
    Event::MessageDelta {
        delta: MessageDelta { stop_reason: stop_reason(reply.finish), stop_sequence: () },
        usage: OutputUsage { output_tokens: reply.completion_tokens },
    }
    .write(sse);
    Event::MessageStop.write(sse);
}
