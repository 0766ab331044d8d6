//! OpenAI chat completions (also under Azure's deployment path) and the model list.

use std::convert::identity;

use axum::extract::{Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::delivery::{self, SseBuilder, json_bytes};
use crate::exchange::{Exchange, unix_now};
use crate::flavor::Flavor;
use crate::reply::{Finish, Reply, argument_fragments, text_pieces};
use crate::structured;

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    response_format: Option<ResponseFormat>,
}

/// `response_format`: `json_schema` gets a structured reply.
#[derive(Deserialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    json_schema: Option<JsonSchema>,
}

#[derive(Deserialize)]
struct JsonSchema {
    #[serde(default)]
    schema: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<ChatContent>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ChatContent {
    Text(String),
    Parts(Vec<ChatPart>),
}

/// A content part; only `text` parts count, images and audio are accepted and ignored.
#[derive(Deserialize)]
struct ChatPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

impl ChatContent {
    fn texts(&self) -> impl Iterator<Item = &str> {
        let (whole, parts) = match self {
            Self::Text(text) => (Some(text.as_str()), &[][..]),
            Self::Parts(parts) => (None, parts.as_slice()),
        };
        whole.into_iter().chain(parts.iter().filter(|p| p.kind == "text").filter_map(|p| p.text.as_deref()))
    }
}

impl ChatMessage {
    fn texts(&self) -> impl Iterator<Item = &str> {
        self.content.iter().flat_map(ChatContent::texts)
    }
}

#[derive(Serialize, Clone, Copy)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Usage,
    system_fingerprint: &'static str,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: (),
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: (),
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall<'a>>,
}

#[derive(Serialize)]
struct ToolCall<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function<'a>,
}

#[derive(Serialize)]
struct Function<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: &'a [ChunkChoice<'a>],
    /// Absent without `include_usage`; `null` on every chunk but the last with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: (),
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// `Some(None)` is an explicit `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[DeltaToolCall<'a>; 1]>,
}

#[derive(Serialize)]
struct DeltaToolCall<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: DeltaFunction<'a>,
}

#[derive(Serialize)]
struct DeltaFunction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

fn finish_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
    }
}

pub(crate) async fn chat(State(state): State<AppState>, req: Request) -> Response {
    complete(&state, None, req).await.unwrap_or_else(identity)
}

/// Azure OpenAI: the deployment in the path is the model.
pub(crate) async fn azure_chat(
    State(state): State<AppState>,
    Path(deployment): Path<String>,
    req: Request,
) -> Response {
    complete(&state, Some(deployment), req).await.unwrap_or_else(identity)
}

async fn complete(state: &AppState, deployment: Option<String>, req: Request) -> Result<Response, Response> {
    let ex = Exchange::receive(Flavor::OpenAi, req).await?;
    let request: ChatRequest = ex.parse()?;
    let model = deployment
        .or(request.model)
        .ok_or_else(|| ex.flavor.bad_request("you must provide a model parameter"))?;
    if request.messages.is_empty() {
        return Err(ex.flavor.bad_request("messages must not be empty"));
    }
    let cut = ex.prepare(state).await?;

    let prompt_bytes: usize = request.messages.iter().flat_map(ChatMessage::texts).map(str::len).sum();
    let last_user: String = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.texts().collect())
        .unwrap_or_default();
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    let tool_results = request.messages.iter().filter(|m| m.role == "tool").count();
    let structured = request.response_format.as_ref().and_then(|format| {
        let schema = format.json_schema.as_ref().and_then(|s| s.schema.as_ref());
        structured::reply_for(Some(&format.kind), schema)
    });
    let reply = Reply::compose_structured(&ex.control, &last_user, structured, tool_results, max_tokens);
    let prompt_tokens = (prompt_bytes as u64).div_ceil(4);
    let usage = Usage {
        prompt_tokens,
        completion_tokens: reply.completion_tokens,
        total_tokens: prompt_tokens + reply.completion_tokens,
    };
    let id = format!("chatcmpl-{:016x}", ex.tag.0);
    let call_ids: Vec<String> =
        (0..reply.tool_calls.len()).map(|i| format!("call_{:016x}_{i}", ex.tag.0)).collect();
    let created = unix_now();

    if request.stream == Some(true) {
        let include_usage = request.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
        let stream = StreamShape { id: &id, created, model: &model, usage: include_usage.then_some(None) };
        let mut sse = SseBuilder::new(ex.control.ttft, ex.control.chunk_gap, cut);
        stream.write(&mut sse, &reply, &call_ids, ex.control.chunks, usage);
        return Ok(sse.into_response(ex.kill));
    }

    let tool_calls = reply
        .tool_calls
        .iter()
        .zip(&call_ids)
        .map(|(call, id)| ToolCall {
            id: id.clone(),
            kind: "function",
            function: Function { name: &call.name, arguments: call.arguments.get() },
        })
        .collect();
    let body = json_bytes(&ChatCompletion {
        id: &id,
        object: "chat.completion",
        created,
        model: &model,
        choices: [Choice {
            index: 0,
            message: Message {
                role: "assistant",
                content: reply.tool_calls.is_empty().then_some(reply.text.as_str()),
                refusal: (),
                tool_calls,
            },
            logprobs: (),
            finish_reason: finish_reason(reply.finish),
        }],
        usage,
        system_fingerprint: "fp_mock",
    });
    Ok(delivery::json(body, cut, ex.kill).await)
}

/// What every chunk of one stream repeats.
struct StreamShape<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
    usage: Option<Option<Usage>>,
}

impl StreamShape<'_> {
    fn chunk<'c>(&'c self, choices: &'c [ChunkChoice<'c>]) -> Chunk<'c> {
        Chunk {
            id: self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model,
            system_fingerprint: "fp_mock",
            choices,
            usage: self.usage,
        }
    }

    fn delta(&self, sse: &mut SseBuilder, content: bool, delta: Delta<'_>) {
        let choice = [ChunkChoice { index: 0, delta, logprobs: (), finish_reason: None }];
        sse.data(content, &self.chunk(&choice));
    }

    fn write(
        &self,
        sse: &mut SseBuilder,
        reply: &Reply<'_>,
        call_ids: &[String],
        chunks: Option<usize>,
        usage: Usage,
    ) {
        let opening = if reply.tool_calls.is_empty() { Some("") } else { None };
        self.delta(sse, false, Delta { role: Some("assistant"), content: Some(opening), ..Delta::default() });
        for piece in text_pieces(&reply.text, chunks) {
            self.delta(sse, true, Delta { content: Some(Some(piece)), ..Delta::default() });
        }
        for (index, (call, id)) in reply.tool_calls.iter().zip(call_ids).enumerate() {
            let start = DeltaToolCall {
                index,
                id: Some(id),
                kind: Some("function"),
                function: DeltaFunction { name: Some(&call.name), arguments: "" },
            };
            self.delta(sse, true, Delta { tool_calls: Some([start]), ..Delta::default() });
            for fragment in argument_fragments(call.arguments.get(), chunks) {
                let more = DeltaToolCall {
                    index,
                    id: None,
                    kind: None,
                    function: DeltaFunction { name: None, arguments: fragment },
                };
                self.delta(sse, true, Delta { tool_calls: Some([more]), ..Delta::default() });
            }
        }
        let finish = [ChunkChoice {
            index: 0,
            delta: Delta::default(),
            logprobs: (),
            finish_reason: Some(finish_reason(reply.finish)),
        }];
        sse.data(false, &self.chunk(&finish));
        if self.usage.is_some() {
            let last = Chunk { usage: Some(Some(usage)), ..self.chunk(&[]) };
            sse.data(false, &last);
        }
        sse.done();
    }
}

const MODELS: &str = concat!(
    r#"{"object":"list","data":["#,
    r#"{"id":"mock-1","object":"model","created":1700000000,"owned_by":"tollgate-mock"},"#,
    r#"{"id":"mock-2","object":"model","created":1700000000,"owned_by":"tollgate-mock"},"#,
    r#"{"id":"mock-embedding-1","object":"model","created":1700000000,"owned_by":"tollgate-mock"}"#,
    r#"]}"#
);

pub(crate) async fn models() -> Response {
    (StatusCode::OK, [(CONTENT_TYPE, HeaderValue::from_static("application/json"))], MODELS).into_response()
}
