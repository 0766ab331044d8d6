//! OpenAI-format request and answer types for chat completions and embeddings, as the
//! gateway speaks them whatever the provider behind it. Fields the SDK does not model pass
//! through `extra` untouched.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One message of a conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text, or OpenAI content parts; `null` for an assistant message that only calls tools.
    #[serde(default)]
    pub content: Value,
    /// Tool calls the assistant made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `tool` messages: the call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message with text content.
    pub fn new(role: &str, text: impl Into<String>) -> Self {
        Self { role: role.to_owned(), content: Value::String(text.into()), ..Self::default() }
    }

    /// A tool result answering `tool_call_id`.
    pub fn tool_result(tool_call_id: impl Into<String>, text: impl Into<String>) -> Self {
        Self { tool_call_id: Some(tool_call_id.into()), ..Self::new("tool", text) }
    }

    /// The text content ("" when there is none or it is made of parts).
    pub fn text(&self) -> &str {
        self.content.as_str().unwrap_or_default()
    }
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, echoed in the tool result.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function")]
    pub kind: String,
    /// The function and its arguments.
    pub function: FunctionCall,
}

fn function() -> String {
    "function".to_owned()
}

/// The function a tool call invokes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The tool's name.
    pub name: String,
    /// Arguments as a JSON document in a string (as OpenAI sends them).
    pub arguments: String,
}

/// A chat completion request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatRequest {
    /// The model, by the name the gateway serves it under.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Tool definitions (OpenAI's `tools` format).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Value>,
    /// Most tokens to generate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Any other OpenAI field (`response_format`, `tool_choice`, `seed`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// Extra request headers (not part of the body).
    #[serde(skip)]
    pub headers: Vec<(String, String)>,
}

impl ChatRequest {
    /// A request for `model` with no messages yet.
    pub fn new(model: impl Into<String>) -> Self {
        Self { model: model.into(), ..Self::default() }
    }

    /// Appends a message.
    #[must_use]
    pub fn message(mut self, message: Message) -> Self {
        self.messages.push(message);
        self
    }

    /// Appends a system message.
    #[must_use]
    pub fn system(self, text: impl Into<String>) -> Self {
        self.message(Message::new("system", text))
    }

    /// Appends a user message.
    #[must_use]
    pub fn user(self, text: impl Into<String>) -> Self {
        self.message(Message::new("user", text))
    }

    /// Adds a function tool.
    #[must_use]
    pub fn tool(mut self, name: &str, description: &str, parameters: Value) -> Self {
        self.tools.push(serde_json::json!({
            "type": "function",
            "function": {"name": name, "description": description, "parameters": parameters}
        }));
        self
    }

    /// Sets `max_tokens`.
    #[must_use]
    pub fn max_tokens(mut self, n: u64) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Sets any other body field.
    #[must_use]
    pub fn field(mut self, name: &str, value: Value) -> Self {
        self.extra.insert(name.to_owned(), value);
        self
    }

    /// Adds a request header (for example `x-mock-reply` against the mock provider).
    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// Token usage of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    /// Input tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Both.
    #[serde(default)]
    pub total_tokens: u64,
}

/// One choice of a chat answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Choice {
    /// Its index.
    pub index: u32,
    /// The assistant's message.
    pub message: Message,
    /// `stop`, `length`, `tool_calls`, `content_filter`.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// A chat completion.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChatResponse {
    /// The completion id.
    pub id: String,
    /// The model that answered.
    pub model: String,
    /// The choices (one unless `n` was set).
    pub choices: Vec<Choice>,
    /// Token usage.
    #[serde(default)]
    pub usage: Option<Usage>,
}

impl ChatResponse {
    /// The first choice's text.
    pub fn text(&self) -> &str {
        self.choices.first().map(|c| c.message.text()).unwrap_or_default()
    }

    /// The first choice's tool calls.
    pub fn tool_calls(&self) -> &[ToolCall] {
        self.choices.first().map(|c| c.message.tool_calls.as_slice()).unwrap_or_default()
    }
}

/// The change one stream chunk brings to a choice.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Delta {
    /// Set on the first chunk.
    #[serde(default)]
    pub role: Option<String>,
    /// Text to append.
    #[serde(default)]
    pub content: Option<String>,
    /// Tool-call fragments (OpenAI's streaming shape, by `index`).
    #[serde(default)]
    pub tool_calls: Vec<Value>,
}

/// One choice's part of a stream chunk.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChunkChoice {
    /// The choice.
    pub index: u32,
    /// What changed.
    #[serde(default)]
    pub delta: Delta,
    /// Set on the choice's last chunk.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// One chunk of a streamed chat completion.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChatChunk {
    /// The completion id.
    #[serde(default)]
    pub id: String,
    /// The choices that changed (empty on the final usage chunk).
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Usage, on the last chunk (the SDK always asks for it).
    #[serde(default)]
    pub usage: Option<Usage>,
}

impl ChatChunk {
    /// The text this chunk adds to the first choice.
    pub fn text(&self) -> &str {
        self.choices.first().and_then(|c| c.delta.content.as_deref()).unwrap_or_default()
    }
}

/// One embedding.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Embedding {
    /// Index of the input it embeds.
    pub index: u32,
    /// The vector.
    pub embedding: Vec<f32>,
}

/// An embeddings answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EmbeddingsResponse {
    /// One per input, in input order.
    pub data: Vec<Embedding>,
    /// The model.
    pub model: String,
    /// Token usage.
    #[serde(default)]
    pub usage: Option<Usage>,
}
