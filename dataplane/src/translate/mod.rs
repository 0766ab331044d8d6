//! Translation between the OpenAI Chat Completions and the Anthropic Messages wire formats.
//!
//! The gateway accepts both API shapes from clients and may serve either from an upstream
//! that speaks the other. This module is the pure bridge between them; it does no I/O and
//! works on `serde_json::Value` throughout:
//!
//! - requests: the client body (already validated) goes through
//!   [`openai_request_to_anthropic`] or [`anthropic_request_to_openai`] and becomes the
//!   upstream body. Shapes that cannot be expressed on the other side become a
//!   [`TranslateError`] naming the JSON path (`messages[2].content[0].type`).
//! - non-streaming responses: the upstream body goes through [`anthropic_response_to_openai`]
//!   or [`openai_response_to_anthropic`] and becomes the client body. Responses never fail:
//!   whatever the upstream sent is rendered as faithfully as the target format allows.
//! - streams: each upstream SSE event (Anthropic) or chunk (OpenAI) is fed to an
//!   [`AnthropicToOpenAiStream`] or [`OpenAiToAnthropicStream`], which returns the payloads
//!   to forward; `finish()` is called once when the upstream ends and closes the stream in
//!   the client's format.
//! - usage: [`openai_usage`] and [`anthropic_usage`] read token counts for billing from
//!   either format, normalised to [`TokenUsage`].
//!
//! NB: nothing here panics on any input, however odd; unknown fields are dropped rather
//! than forwarded, so provider-specific options never leak across formats.

mod request;
mod response;
mod responses;
mod stream;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

pub use request::{anthropic_request_to_openai, openai_request_to_anthropic};
pub use response::{anthropic_response_to_openai, openai_response_to_anthropic};
pub use responses::{
    ChatToResponsesStream, ResponseMeta, chat_response_to_responses, normalize_input_items,
    responses_request_to_chat, responses_usage, usage_json as responses_usage_json,
};
pub use stream::{AnthropicToOpenAiStream, OpenAiToAnthropicStream};

/// Token counts of one call, normalised across formats.
///
/// NB: `input` counts every prompt token, cached ones included (OpenAI's `prompt_tokens`
/// semantics); `cached_input` is the part of `input` served from the provider's prompt cache,
/// which is usually billed at a discount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// All prompt tokens, including `cached_input` (and, for Anthropic, cache writes).
    pub input: u64,
    /// Generated tokens.
    pub output: u64,
    /// Prompt tokens read from the provider's cache; a subset of `input`.
    pub cached_input: u64,
}

/// A request that cannot be expressed in the target format.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{path}: {message}")]
pub struct TranslateError {
    /// JSON path of the offending field, e.g. `messages[2].content[0].type`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// Usage from an OpenAI response, chunk, or bare usage object: `prompt_tokens`,
/// `completion_tokens` and `prompt_tokens_details.cached_tokens`.
pub fn openai_usage(resp: &Value) -> Option<TokenUsage> {
    let usage = usage_object(resp, &["prompt_tokens", "completion_tokens"])?;
    let input = count_field(usage, "prompt_tokens");
    let cached = usage
        .get("prompt_tokens_details")
        .and_then(Value::as_object)
        .map_or(0, |d| count_field(d, "cached_tokens"));
    Some(TokenUsage {
        input,
        output: count_field(usage, "completion_tokens"),
        cached_input: cached.min(input),
    })
}

/// Usage from an Anthropic response, `message_start`/`message_delta` event, or bare usage
/// object. Anthropic's `input_tokens` excludes cache reads and writes, so all three are added
/// into [`TokenUsage::input`]; cache reads are also reported as `cached_input`.
pub fn anthropic_usage(resp: &Value) -> Option<TokenUsage> {
    let obj = resp.as_object()?;
    let usage = match obj.get("message").and_then(|m| m.get("usage")) {
        // A `message_start` event carries the usage inside its message.
        Some(u) if !obj.contains_key("usage") => u.as_object()?,
        _ => usage_object(resp, &["input_tokens", "output_tokens"])?,
    };
    Some(AnthropicUsage::from_map(usage).total())
}

/// Anthropic's usage counters kept apart, because stream events update them one by one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct AnthropicUsage {
    input: u64,
    cache_creation: u64,
    cache_read: u64,
    output: u64,
}

impl AnthropicUsage {
    fn from_map(usage: &Map<String, Value>) -> Self {
        let mut u = Self::default();
        u.update(usage);
        u
    }

    /// Applies an update. NB: Anthropic reports cumulative counts, and some compatible
    /// upstreams send `input_tokens: 0` up front and the real count at the end, so a counter
    /// only ever grows.
    fn update(&mut self, usage: &Map<String, Value>) {
        let fields = [
            ("input_tokens", &mut self.input),
            ("cache_creation_input_tokens", &mut self.cache_creation),
            ("cache_read_input_tokens", &mut self.cache_read),
            ("output_tokens", &mut self.output),
        ];
        for (key, slot) in fields {
            if let Some(n) = usage.get(key).and_then(as_count) {
                *slot = (*slot).max(n);
            }
        }
    }

    fn total(self) -> TokenUsage {
        TokenUsage {
            input: self.input.saturating_add(self.cache_creation).saturating_add(self.cache_read),
            output: self.output,
            cached_input: self.cache_read,
        }
    }
}

/// The `usage` object of `v`, or `v` itself if it looks like a usage object.
fn usage_object<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Map<String, Value>> {
    let obj = v.as_object()?;
    match obj.get("usage") {
        Some(u) => u.as_object(),
        None => keys.iter().any(|k| obj.contains_key(*k)).then_some(obj),
    }
}

/// OpenAI's `usage` object for `u`.
fn openai_usage_json(u: TokenUsage) -> Value {
    let mut usage = Map::new();
    usage.insert("prompt_tokens".into(), u.input.into());
    usage.insert("completion_tokens".into(), u.output.into());
    usage.insert("total_tokens".into(), u.input.saturating_add(u.output).into());
    if u.cached_input > 0 {
        usage.insert("prompt_tokens_details".into(), json!({ "cached_tokens": u.cached_input }));
    }
    Value::Object(usage)
}

/// Anthropic's `usage` object for `u`: `input_tokens` excludes the cache reads, which are
/// reported apart.
fn anthropic_usage_json(u: TokenUsage) -> Value {
    let mut usage = Map::new();
    usage.insert("input_tokens".into(), u.input.saturating_sub(u.cached_input).into());
    usage.insert("output_tokens".into(), u.output.into());
    if u.cached_input > 0 {
        usage.insert("cache_read_input_tokens".into(), u.cached_input.into());
    }
    Value::Object(usage)
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
fn openai_finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything new.
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
fn anthropic_stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        // stop and anything new.
        _ => "end_turn",
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError { path: path.into(), message: message.into() }
}

/// A non-negative integer, also accepting integral floats such as `100.0`.
fn as_count(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    // NB: the cast is exact, as `f` is checked to be a non-negative integer below 2^64.
    (f >= 0.0 && f.fract() == 0.0 && f < 18_446_744_073_709_551_616.0).then_some(f as u64)
}

fn count_field(obj: &Map<String, Value>, key: &str) -> u64 {
    obj.get(key).and_then(as_count).unwrap_or(0)
}

/// `obj[key]` unless absent or `null`.
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A fresh identifier such as `chatcmpl-18c3f0a1b2c3d4e50001`, for upstream replies that
/// carry none. Unique within the process; not meant to be unguessable.
fn fresh_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}{nanos:x}{n:04x}")
}

/// `id` with `prefix` in front, unless it already starts with it (a round trip).
fn prefixed_id(prefix: &str, id: Option<&str>) -> String {
    match id {
        Some(id) if id.starts_with(prefix) => id.to_owned(),
        Some(id) if !id.is_empty() => format!("{prefix}{id}"),
        _ => fresh_id(prefix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_usage_reads_response_chunk_and_bare_object() {
        let resp = json!({"usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 60}}});
        let want = TokenUsage { input: 100, output: 20, cached_input: 60 };
        assert_eq!(openai_usage(&resp), Some(want));
        assert_eq!(openai_usage(&resp["usage"]), Some(want));
        assert_eq!(openai_usage(&json!({"usage": null})), None);
        assert_eq!(openai_usage(&json!({"id": "x"})), None);
        assert_eq!(openai_usage(&json!(3)), None);
        assert_eq!(
            openai_usage(&json!({"prompt_tokens": 5})),
            Some(TokenUsage { input: 5, ..TokenUsage::default() })
        );
    }

    #[test]
    fn anthropic_usage_counts_cache_reads_and_writes_as_input() {
        let resp = json!({"type": "message", "usage": {"input_tokens": 10, "output_tokens": 7,
            "cache_read_input_tokens": 80, "cache_creation_input_tokens": 5}});
        let want = TokenUsage { input: 95, output: 7, cached_input: 80 };
        assert_eq!(anthropic_usage(&resp), Some(want));
        assert_eq!(anthropic_usage(&resp["usage"]), Some(want));
        let start = json!({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3, "output_tokens": 1}}});
        assert_eq!(anthropic_usage(&start), Some(TokenUsage { input: 3, output: 1, cached_input: 0 }));
        assert_eq!(anthropic_usage(&json!({"type": "ping"})), None);
        assert_eq!(anthropic_usage(&json!(null)), None);
        assert_eq!(
            anthropic_usage(&json!({"usage": {"input_tokens": -3, "output_tokens": "x"}})),
            Some(TokenUsage::default())
        );
    }

    #[test]
    fn usage_json_round_trips_between_formats() {
        let u = TokenUsage { input: 100, output: 20, cached_input: 60 };
        assert_eq!(openai_usage(&openai_usage_json(u)), Some(u));
        assert_eq!(anthropic_usage(&anthropic_usage_json(u)), Some(u));
        assert_eq!(
            anthropic_usage_json(u),
            json!({"input_tokens": 40, "output_tokens": 20, "cache_read_input_tokens": 60})
        );
    }

    #[test]
    fn counts_accept_integral_floats_only() {
        assert_eq!(as_count(&json!(5)), Some(5));
        assert_eq!(as_count(&json!(5.0)), Some(5));
        assert_eq!(as_count(&json!(5.5)), None);
        assert_eq!(as_count(&json!(-1)), None);
        assert_eq!(as_count(&json!(1e30)), None);
        assert_eq!(as_count(&json!("5")), None);
    }

    #[test]
    fn ids_keep_existing_prefix() {
        assert_eq!(prefixed_id("msg_", Some("msg_1")), "msg_1");
        assert_eq!(prefixed_id("msg_", Some("chatcmpl-1")), "msg_chatcmpl-1");
        assert!(prefixed_id("msg_", None).starts_with("msg_"));
        assert_ne!(fresh_id("x"), fresh_id("x"));
    }

    /// Odd values of every kind, nested at every depth the translators look at.
    fn garbage() -> Vec<Value> {
        let leaves = vec![
            json!(null),
            json!(true),
            json!(-1),
            json!(1.5),
            json!(u64::MAX),
            json!(""),
            json!("x"),
            json!([]),
            json!({}),
            json!([null, 1, "a", {}]),
        ];
        let mut out = leaves.clone();
        let keys = [
            "messages",
            "content",
            "role",
            "tools",
            "tool_choice",
            "tool_calls",
            "choices",
            "delta",
            "usage",
            "message",
            "content_block",
            "index",
            "type",
            "system",
            "stop",
            "error",
            "function",
            "arguments",
            "input",
            "image_url",
            "source",
            "max_tokens",
            "temperature",
            "response_format",
            "stream",
        ];
        for key in keys {
            for leaf in &leaves {
                out.push(json!({ key: leaf }));
                out.push(json!({ "messages": [{ "role": "user", key: leaf }] }));
                out.push(json!({ "messages": [{ "role": "assistant", key: leaf }] }));
                out.push(json!({ "messages": [{ "role": "tool", key: leaf }] }));
                out.push(
                    json!({ "messages": [{ "role": "user", "content": [{ "type": "text", key: leaf }] }] }),
                );
                out.push(json!({ "messages": [{ "role": "user", "content": [{ "type": "image_url", key: leaf }] }] }));
                out.push(
                    json!({ "messages": [{ "role": "user", "content": [{ "type": "image", key: leaf }] }] }),
                );
                out.push(json!({ "messages": [{ "role": "user", "content": [{ "type": "tool_result", key: leaf }] }] }));
                out.push(json!({ "messages": [{ "role": "assistant", "content": [{ "type": "tool_use", key: leaf }] }] }));
                out.push(json!({ "messages": [{ "role": "assistant", "tool_calls": [{ key: leaf }] }] }));
                out.push(json!({ "messages": [{ "role": "assistant", "tool_calls": [{ "function": { key: leaf } }] }] }));
                out.push(json!({ "tools": [{ key: leaf }] }));
                out.push(json!({ "tools": [{ "type": "function", "function": { key: leaf } }] }));
                out.push(json!({ "choices": [{ key: leaf }] }));
                out.push(json!({ "choices": [{ "message": { key: leaf } }] }));
                out.push(json!({ "choices": [{ "delta": { key: leaf } }] }));
                out.push(json!({ "choices": [{ "delta": { "tool_calls": [{ key: leaf }] } }] }));
                out.push(
                    json!({ "choices": [{ "delta": { "tool_calls": [{ "function": { key: leaf } }] } }] }),
                );
                out.push(json!({ "content": [{ key: leaf }] }));
                out.push(json!({ "content": [{ "type": "tool_use", key: leaf }] }));
                out.push(json!({ "content_block": { key: leaf } }));
                out.push(json!({ "content_block": { "type": "tool_use", key: leaf } }));
                out.push(json!({ "delta": { key: leaf } }));
                out.push(json!({ "delta": { "type": "input_json_delta", key: leaf } }));
                out.push(json!({ "message": { key: leaf } }));
                out.push(json!({ "usage": { key: leaf } }));
                out.push(json!({ "error": { key: leaf } }));
            }
        }
        out
    }

    /// A pseudo-random JSON value built from the keys and values the translators look at.
    fn random_value(seed: &mut u64, depth: u32) -> Value {
        const KEYS: &[&str] = &[
            "messages",
            "role",
            "content",
            "type",
            "text",
            "tool_calls",
            "function",
            "name",
            "arguments",
            "id",
            "index",
            "delta",
            "choices",
            "message",
            "usage",
            "tools",
            "tool_choice",
            "input",
            "source",
            "image_url",
            "url",
            "tool_use_id",
            "content_block",
            "partial_json",
            "stop_reason",
            "finish_reason",
            "error",
            "system",
            "stream",
        ];
        const STRINGS: &[&str] = &[
            "user",
            "assistant",
            "tool",
            "system",
            "text",
            "image",
            "image_url",
            "tool_use",
            "tool_result",
            "function",
            "auto",
            "any",
            "required",
            "base64",
            "url",
            "text_delta",
            "input_json_delta",
            "data:image/png;base64,AA",
            "https://x",
            "{",
            "{}",
            "[1]",
            "",
        ];
        *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let r = *seed >> 33;
        let pick = |n: usize| usize::try_from(r).unwrap() % n;
        match (r % 8, depth) {
            (0, _) => Value::Null,
            (1, _) => json!(r % 3),
            (2, _) => json!(-1.5),
            (3 | 4, _) | (_, 0) => json!(STRINGS[pick(STRINGS.len())]),
            (5, _) => Value::Array((0..r % 4).map(|_| random_value(seed, depth - 1)).collect()),
            _ => {
                let mut obj = Map::new();
                for _ in 0..r % 5 {
                    let key = KEYS[usize::try_from(*seed >> 40).unwrap() % KEYS.len()];
                    obj.insert(key.to_owned(), random_value(seed, depth - 1));
                }
                Value::Object(obj)
            }
        }
    }

    #[test]
    fn no_function_panics_on_random_values() {
        let mut seed = 7;
        let mut to_openai = AnthropicToOpenAiStream::new("m", true);
        let mut to_anthropic = OpenAiToAnthropicStream::new("m");
        for _ in 0..5_000 {
            let v = random_value(&mut seed, 5);
            let _ = openai_request_to_anthropic(&v, "m", 16);
            let _ = anthropic_request_to_openai(&v, "m");
            let _ = anthropic_response_to_openai(&v, "m");
            let _ = openai_response_to_anthropic(&v, "m");
            let _ = (openai_usage(&v), anthropic_usage(&v));
            let _ = to_openai.on_event("", &v);
            let _ = to_anthropic.on_chunk(&v);
        }
        let _ = (to_openai.finish(), to_anthropic.finish());
    }

    #[test]
    fn no_function_panics_on_odd_values() {
        let events = [
            "",
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
            "ping",
            "error",
            "bogus",
        ];
        let values = garbage();
        let mut to_openai = AnthropicToOpenAiStream::new("m", true);
        let mut to_anthropic = OpenAiToAnthropicStream::new("m");
        for v in &values {
            let _ = openai_request_to_anthropic(v, "m", 16);
            let _ = anthropic_request_to_openai(v, "m");
            let _ = anthropic_response_to_openai(v, "m");
            let _ = openai_response_to_anthropic(v, "m");
            let _ = openai_usage(v);
            let _ = anthropic_usage(v);
            for event in events {
                let _ = to_openai.on_event(event, v);
            }
            let _ = to_anthropic.on_chunk(v);
            // Fresh streams too, so that each value is also seen as the first event.
            let mut fresh = AnthropicToOpenAiStream::new("m", false);
            for event in events {
                let _ = fresh.on_event(event, v);
            }
            let _ = fresh.finish();
            let mut fresh = OpenAiToAnthropicStream::new("m");
            let _ = fresh.on_chunk(v);
            let _ = fresh.finish();
        }
        let _ = to_openai.finish();
        let _ = to_openai.finish();
        let _ = to_anthropic.finish();
        let _ = to_anthropic.finish();
        let _ = (to_openai.usage(), to_openai.finish_reason(), to_anthropic.usage());
    }
}
