//! The OpenAI Responses API (`POST /v1/responses`), streaming and not, as the official
//! clients parse it.
//!
//! The reply is the one the chat endpoint would give ([`Reply::compose`]): the last `user`
//! message is quoted, `x-mock-reply` and `x-mock-tool-calls` script it, and
//! `function_call_output` items count as tool results for `x-mock-tool-rounds`. Request
//! fields the mock does not act on (`tools`, `tool_choice`, `metadata`, `text`, `store`,
//! `previous_response_id`, ...) are echoed in the response object as the real API does.
//! No state is kept: `previous_response_id` is echoed, not resolved.

use std::convert::identity;

use axum::extract::{Request, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::AppState;
use crate::delivery::{self, SseBuilder, json_bytes};
use crate::exchange::{Exchange, unix_now};
use crate::flavor::Flavor;
use crate::reply::{Finish, Reply, argument_fragments, text_pieces};
use crate::structured;

#[derive(Deserialize)]
struct ResponsesRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    input: Option<Input>,
    #[serde(default)]
    instructions: Option<Box<RawValue>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default)]
    text: Option<Box<RawValue>>,
    #[serde(default)]
    tools: Option<Box<RawValue>>,
    #[serde(default)]
    tool_choice: Option<Box<RawValue>>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
    #[serde(default)]
    temperature: Option<Box<RawValue>>,
    #[serde(default)]
    top_p: Option<Box<RawValue>>,
    #[serde(default)]
    store: Option<bool>,
    #[serde(default)]
    previous_response_id: Option<String>,
    #[serde(default)]
    user: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Items(Vec<InputItem>),
}

/// One input item. A message has a `role` (and `type` `message` or none); the other kinds
/// are told by `type`. Unknown kinds (`reasoning`, `item_reference`, ...) are ignored.
#[derive(Deserialize)]
struct InputItem {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Option<Content>,
    /// A `function_call_output`'s result: a string or content parts.
    #[serde(default)]
    output: Option<Content>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
    /// Anything else (e.g. a non-text output) counts as no text.
    Other(serde::de::IgnoredAny),
}

/// A content part: `input_text` and `output_text` count; images and files are ignored.
#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

impl Content {
    fn texts(&self) -> impl Iterator<Item = &str> {
        let (whole, parts) = match self {
            Self::Text(text) => (Some(text.as_str()), &[][..]),
            Self::Parts(parts) => (None, parts.as_slice()),
            Self::Other(_) => (None, &[][..]),
        };
        whole.into_iter().chain(
            parts
                .iter()
                .filter(|p| matches!(p.kind.as_str(), "input_text" | "output_text" | "text"))
                .filter_map(|p| p.text.as_deref()),
        )
    }
}

impl InputItem {
    fn is_message(&self) -> bool {
        self.role.is_some() && self.kind.as_deref().is_none_or(|k| k == "message")
    }

    fn is_tool_result(&self) -> bool {
        self.kind.as_deref() == Some("function_call_output")
    }

    /// The text this item adds to the prompt: a message's text, a tool result's output.
    fn prompt_texts(&self) -> impl Iterator<Item = &str> {
        let content = if self.is_message() {
            self.content.as_ref()
        } else if self.is_tool_result() {
            self.output.as_ref()
        } else {
            None
        };
        content.into_iter().flat_map(Content::texts)
    }
}

/// What the reply and the usage need from the prompt.
struct Prompt {
    /// UTF-8 bytes of `instructions`, message texts and `function_call_output` outputs.
    bytes: usize,
    /// The text of the last `user` message (the whole input when it is a string).
    last_user: String,
    /// How many `function_call_output` items the input holds.
    tool_results: usize,
}

impl Prompt {
    fn of(instructions: Option<&str>, input: &Input) -> Self {
        let instruction_bytes = instructions.map_or(0, str::len);
        match input {
            Input::Text(text) => {
                Self { bytes: instruction_bytes + text.len(), last_user: text.clone(), tool_results: 0 }
            }
            Input::Items(items) => Self {
                bytes: instruction_bytes
                    + items.iter().flat_map(InputItem::prompt_texts).map(str::len).sum::<usize>(),
                last_user: items
                    .iter()
                    .rev()
                    .find(|item| item.is_message() && item.role.as_deref() == Some("user"))
                    .map(|item| item.content.iter().flat_map(Content::texts).collect())
                    .unwrap_or_default(),
                tool_results: items.iter().filter(|item| item.is_tool_result()).count(),
            },
        }
    }
}

/// `text.format`, read to decide on a structured reply.
#[derive(Deserialize)]
struct TextConfig {
    #[serde(default)]
    format: Option<TextFormat>,
}

#[derive(Deserialize)]
struct TextFormat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    schema: Option<Value>,
}

/// A request field echoed as sent, or the API's default when absent.
#[derive(Serialize, Clone, Copy)]
#[serde(untagged)]
enum Echo<'a> {
    Given(&'a RawValue),
    Null(()),
    Str(&'static str),
    Num(f64),
    EmptyObject(EmptyObject),
    EmptyArray([(); 0]),
    TextDefault(TextDefault),
}

impl<'a> Echo<'a> {
    fn or(given: Option<&'a RawValue>, default: Self) -> Self {
        given.map_or(default, Self::Given)
    }
}

#[derive(Serialize, Clone, Copy)]
struct EmptyObject {}

/// `{"format":{"type":"text"}}`.
#[derive(Serialize, Clone, Copy)]
struct TextDefault {
    format: TextDefaultFormat,
}

#[derive(Serialize, Clone, Copy)]
#[serde(tag = "type", rename = "text")]
struct TextDefaultFormat {}

#[derive(Serialize, Clone, Copy)]
struct Usage {
    input_tokens: u64,
    input_tokens_details: InputDetails,
    output_tokens: u64,
    output_tokens_details: OutputDetails,
    total_tokens: u64,
}

#[derive(Serialize, Clone, Copy)]
struct InputDetails {
    cached_tokens: u64,
}

#[derive(Serialize, Clone, Copy)]
struct OutputDetails {
    reasoning_tokens: u64,
}

#[derive(Serialize, Clone, Copy)]
struct IncompleteDetails {
    reason: &'static str,
}

#[derive(Serialize, Clone, Copy)]
struct Reasoning {
    effort: (),
    summary: (),
}

/// The response object; `response.created`/`in_progress` carry it with no output and no
/// usage yet.
#[derive(Serialize, Clone, Copy)]
struct ResponseObject<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    background: bool,
    error: (),
    incomplete_details: Option<IncompleteDetails>,
    instructions: Echo<'a>,
    max_output_tokens: Option<u64>,
    model: &'a str,
    output: &'a [OutputItem<'a>],
    parallel_tool_calls: bool,
    previous_response_id: Option<&'a str>,
    reasoning: Reasoning,
    service_tier: &'static str,
    store: bool,
    temperature: Echo<'a>,
    text: Echo<'a>,
    tool_choice: Echo<'a>,
    tools: Echo<'a>,
    top_p: Echo<'a>,
    truncation: &'static str,
    usage: Option<Usage>,
    user: Echo<'a>,
    metadata: Echo<'a>,
}

#[derive(Serialize, Clone)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutputItem<'a> {
    Message { id: &'a str, status: &'static str, role: &'static str, content: Vec<OutputText<'a>> },
    FunctionCall { id: &'a str, call_id: &'a str, name: &'a str, arguments: &'a str, status: &'static str },
}

#[derive(Serialize, Clone, Copy)]
#[serde(tag = "type", rename = "output_text")]
struct OutputText<'a> {
    text: &'a str,
    annotations: [(); 0],
    logprobs: [(); 0],
}

/// A stream event, without its `sequence_number` (see [`Events`]).
#[derive(Serialize)]
#[serde(tag = "type")]
enum Event<'a> {
    #[serde(rename = "response.created")]
    Created { response: ResponseObject<'a> },
    #[serde(rename = "response.in_progress")]
    InProgress { response: ResponseObject<'a> },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded { output_index: usize, item: OutputItem<'a> },
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded { item_id: &'a str, output_index: usize, content_index: usize, part: OutputText<'a> },
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        item_id: &'a str,
        output_index: usize,
        content_index: usize,
        delta: &'a str,
        logprobs: [(); 0],
    },
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        item_id: &'a str,
        output_index: usize,
        content_index: usize,
        text: &'a str,
        logprobs: [(); 0],
    },
    #[serde(rename = "response.content_part.done")]
    ContentPartDone { item_id: &'a str, output_index: usize, content_index: usize, part: OutputText<'a> },
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta { item_id: &'a str, output_index: usize, delta: &'a str },
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone { item_id: &'a str, output_index: usize, name: &'a str, arguments: &'a str },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone { output_index: usize, item: OutputItem<'a> },
    #[serde(rename = "response.completed")]
    Completed { response: ResponseObject<'a> },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: ResponseObject<'a> },
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "response.created",
            Self::InProgress { .. } => "response.in_progress",
            Self::OutputItemAdded { .. } => "response.output_item.added",
            Self::ContentPartAdded { .. } => "response.content_part.added",
            Self::OutputTextDelta { .. } => "response.output_text.delta",
            Self::OutputTextDone { .. } => "response.output_text.done",
            Self::ContentPartDone { .. } => "response.content_part.done",
            Self::FunctionCallArgumentsDelta { .. } => "response.function_call_arguments.delta",
            Self::FunctionCallArgumentsDone { .. } => "response.function_call_arguments.done",
            Self::OutputItemDone { .. } => "response.output_item.done",
            Self::Completed { .. } => "response.completed",
            Self::Incomplete { .. } => "response.incomplete",
        }
    }

    /// Deltas carry generated output: the chunk gap separates them and a cut follows the
    /// first of them.
    fn is_content(&self) -> bool {
        matches!(self, Self::OutputTextDelta { .. } | Self::FunctionCallArgumentsDelta { .. })
    }
}

#[derive(Serialize)]
struct Sequenced<'e, 'a> {
    #[serde(flatten)]
    event: &'e Event<'a>,
    sequence_number: u64,
}

/// Writes events with consecutive `sequence_number`s from 0.
struct Events<'s> {
    sse: &'s mut SseBuilder,
    next: u64,
}

impl Events<'_> {
    fn emit(&mut self, event: &Event<'_>) {
        let sequenced = Sequenced { event, sequence_number: self.next };
        self.next += 1;
        self.sse.event(event.is_content(), event.name(), &sequenced);
    }
}

pub(crate) async fn responses(State(state): State<AppState>, req: Request) -> Response {
    respond(&state, req).await.unwrap_or_else(identity)
}

async fn respond(state: &AppState, req: Request) -> Result<Response, Response> {
    let ex = Exchange::receive(Flavor::OpenAi, req).await?;
    let request: ResponsesRequest = ex.parse()?;
    let bad = |message: &str| ex.flavor.bad_request(message);
    let model = request.model.as_deref().ok_or_else(|| bad("Missing required parameter: 'model'."))?;
    let input = request.input.as_ref().ok_or_else(|| bad("Missing required parameter: 'input'."))?;
    let text_config: Option<TextConfig> = match &request.text {
        Some(raw) => Some(
            serde_json::from_str(raw.get()).map_err(|e| bad(&format!("Invalid 'text' parameter: {e}")))?,
        ),
        None => None,
    };
    let instructions: Option<String> = match &request.instructions {
        Some(raw) => serde_json::from_str(raw.get())
            .map_err(|_| bad("Invalid type for 'instructions': expected a string or null."))?,
        None => None,
    };
    let cut = ex.prepare(state).await?;

    let Prompt { bytes: prompt_bytes, last_user, tool_results } = Prompt::of(instructions.as_deref(), input);
    let format = text_config.as_ref().and_then(|t| t.format.as_ref());
    let structured = format.and_then(|f| structured::reply_for(Some(&f.kind), f.schema.as_ref()));
    let reply = Reply::compose_structured(
        &ex.control,
        &last_user,
        structured,
        tool_results,
        request.max_output_tokens,
    );
    let input_tokens = (prompt_bytes as u64).div_ceil(4);
    let usage = Usage {
        input_tokens,
        input_tokens_details: InputDetails { cached_tokens: 0 },
        output_tokens: reply.completion_tokens,
        output_tokens_details: OutputDetails { reasoning_tokens: 0 },
        total_tokens: input_tokens + reply.completion_tokens,
    };

    let tag = ex.tag.0;
    let id = format!("resp_{tag:016x}");
    let message_id = format!("msg_{tag:016x}");
    let item_ids: Vec<String> = (0..reply.tool_calls.len()).map(|i| format!("fc_{tag:016x}_{i}")).collect();
    let call_ids: Vec<String> = (0..reply.tool_calls.len()).map(|i| format!("call_{tag:016x}_{i}")).collect();
    let incomplete = reply.finish == Finish::Length;
    let item_status = if incomplete { "incomplete" } else { "completed" };
    let output: Vec<OutputItem<'_>> = if reply.tool_calls.is_empty() {
        vec![OutputItem::Message {
            id: &message_id,
            status: item_status,
            role: "assistant",
            content: vec![OutputText { text: &reply.text, annotations: [], logprobs: [] }],
        }]
    } else {
        reply
            .tool_calls
            .iter()
            .zip(item_ids.iter().zip(&call_ids))
            .map(|(call, (id, call_id))| OutputItem::FunctionCall {
                id,
                call_id,
                name: &call.name,
                arguments: call.arguments.get(),
                status: "completed",
            })
            .collect()
    };
    let done = ResponseObject {
        id: &id,
        object: "response",
        created_at: unix_now(),
        status: if incomplete { "incomplete" } else { "completed" },
        background: false,
        error: (),
        incomplete_details: incomplete.then_some(IncompleteDetails { reason: "max_output_tokens" }),
        instructions: Echo::or(request.instructions.as_deref(), Echo::Null(())),
        max_output_tokens: request.max_output_tokens,
        model,
        output: &output,
        parallel_tool_calls: request.parallel_tool_calls.unwrap_or(true),
        previous_response_id: request.previous_response_id.as_deref(),
        reasoning: Reasoning { effort: (), summary: () },
        service_tier: "default",
        store: request.store.unwrap_or(true),
        temperature: Echo::or(request.temperature.as_deref(), Echo::Num(1.0)),
        text: Echo::or(
            request.text.as_deref(),
            Echo::TextDefault(TextDefault { format: TextDefaultFormat {} }),
        ),
        tool_choice: Echo::or(request.tool_choice.as_deref(), Echo::Str("auto")),
        tools: Echo::or(request.tools.as_deref(), Echo::EmptyArray([])),
        top_p: Echo::or(request.top_p.as_deref(), Echo::Num(1.0)),
        truncation: "disabled",
        usage: Some(usage),
        user: Echo::or(request.user.as_deref(), Echo::Null(())),
        metadata: Echo::or(request.metadata.as_deref(), Echo::EmptyObject(EmptyObject {})),
    };

    if request.stream == Some(true) {
        let mut sse = SseBuilder::new(ex.control.ttft, ex.control.chunk_gap, cut);
        write_stream(&mut Events { sse: &mut sse, next: 0 }, &done, &reply, ex.control.chunks);
        return Ok(sse.into_response(ex.kill));
    }
    Ok(delivery::json(json_bytes(&done), cut, ex.kill).await)
}

/// The documented event sequence: `response.created`, `response.in_progress`; per output
/// item `response.output_item.added`, its parts and deltas, `response.output_item.done`;
/// then `response.completed` (or `response.incomplete`) with the whole response.
fn write_stream(
    events: &mut Events<'_>,
    done: &ResponseObject<'_>,
    reply: &Reply<'_>,
    chunks: Option<usize>,
) {
    let pending =
        ResponseObject { status: "in_progress", incomplete_details: None, output: &[], usage: None, ..*done };
    events.emit(&Event::Created { response: pending });
    events.emit(&Event::InProgress { response: pending });
    for (output_index, item) in done.output.iter().enumerate() {
        match item {
            OutputItem::Message { id, role, content, .. } => {
                let opening = OutputItem::Message { id, status: "in_progress", role, content: Vec::new() };
                events.emit(&Event::OutputItemAdded { output_index, item: opening });
                for (content_index, part) in content.iter().enumerate() {
                    let empty = OutputText { text: "", ..*part };
                    events.emit(&Event::ContentPartAdded {
                        item_id: id,
                        output_index,
                        content_index,
                        part: empty,
                    });
                    for delta in text_pieces(&reply.text, chunks) {
                        events.emit(&Event::OutputTextDelta {
                            item_id: id,
                            output_index,
                            content_index,
                            delta,
                            logprobs: [],
                        });
                    }
                    events.emit(&Event::OutputTextDone {
                        item_id: id,
                        output_index,
                        content_index,
                        text: part.text,
                        logprobs: [],
                    });
                    events.emit(&Event::ContentPartDone {
                        item_id: id,
                        output_index,
                        content_index,
                        part: *part,
                    });
                }
            }
            OutputItem::FunctionCall { id, call_id, name, arguments, .. } => {
                let opening =
                    OutputItem::FunctionCall { id, call_id, name, arguments: "", status: "in_progress" };
                events.emit(&Event::OutputItemAdded { output_index, item: opening });
                for delta in argument_fragments(arguments, chunks) {
                    events.emit(&Event::FunctionCallArgumentsDelta { item_id: id, output_index, delta });
                }
                events.emit(&Event::FunctionCallArgumentsDone { item_id: id, output_index, name, arguments });
            }
        }
        events.emit(&Event::OutputItemDone { output_index, item: item.clone() });
    }
    if done.status == "incomplete" {
        events.emit(&Event::Incomplete { response: *done });
    } else {
        events.emit(&Event::Completed { response: *done });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn prompt_counts_instructions_messages_and_tool_outputs_only() {
        let body = r#"{
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": "Weather?"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
                {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"role": "user", "content": [{"type": "input_text", "text": "And "}, {"type": "input_image", "image_url": "data:,"}, {"type": "input_text", "text": "tomorrow?"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []}
            ]
        }"#;
        let request: ResponsesRequest = serde_json::from_str(body).unwrap();
        let prompt = Prompt::of(Some("Be brief."), request.input.as_ref().unwrap());
        assert_eq!(prompt.bytes, "Be brief.Weather?Checking.sunnyAnd tomorrow?".len());
        assert_eq!(prompt.last_user, "And tomorrow?");
        assert_eq!(prompt.tool_results, 1);
        let plain = Prompt::of(None, &Input::Text("hello".to_owned()));
        assert_eq!((plain.bytes, plain.last_user.as_str(), plain.tool_results), (5, "hello", 0));
    }
}
