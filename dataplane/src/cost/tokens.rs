//! Token estimates before a call: how large can it get?
//!
//! The provider's reported usage is what gets charged; these estimates only size the
//! reservation. Input is counted with OpenAI's own tokenizers (tiktoken-rs: `o200k_base`
//! for gpt-4o, gpt-4.1, gpt-5 and the o-series, `cl100k_base` for gpt-4, gpt-3.5 and the
//! embedding models) and OpenAI's per-message framing; every other model gets a
//! conservative byte-based estimate. `cost/README.md` explains the numbers.
//!
//! NB: nothing here panics on any input. tiktoken's regex can fail on pathological text
//! (a megabyte of spaces overflows its backtracking stack), so text goes to it in chunks of
//! at most [`CHUNK_BYTES`] cut where the tokenizer would cut anyway, each call is guarded
//! by `catch_unwind`, and a request's text beyond [`BPE_BUDGET_BYTES`] is estimated
//! conservatively instead, which bounds the time spent per request.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use serde_json::{Map, Value};
use tiktoken_rs::CoreBPE;

use super::prices::div_ceil_saturating;
use crate::providers::Wire;
use tollgate_crds::config::PricesMicros;

/// Largest piece of text handed to the tokenizer at once.
pub const CHUNK_BYTES: usize = 8 * 1024;
/// Text per request counted exactly; the rest is estimated conservatively. 512 KiB is
/// about 120k tokens of English, beyond gpt-4o's whole context window.
pub const BPE_BUDGET_BYTES: usize = 512 * 1024;
/// Worst case for one image. OpenAI's high-detail tiling tops out at 8 tiles (85 + 8 × 170
/// = 1,445 tokens for gpt-4o), its patch-based models at 1,536 patches × 2.46 = 3,779
/// (gpt-4.1-nano), Anthropic's at about 1,600 (1.15 megapixels / 750).
pub const IMAGE_TOKENS: u64 = 4_000;
/// gpt-4o-mini bills images at 2,833 + 5,667 per tile (same price as gpt-4o in dollars):
/// 8 tiles make 48,169.
pub const GPT_4O_MINI_IMAGE_TOKENS: u64 = 48_200;
/// Floor for an attached document (PDF) of unknown size, e.g. given by URL or file id.
pub const DOCUMENT_TOKENS: u64 = 4_000;
/// Hidden system prompt Anthropic adds when `tools` are present (346 tokens on current
/// models), rounded up.
pub const ANTHROPIC_TOOLS_OVERHEAD: u64 = 500;
/// Built-in (typed) Anthropic tools such as `computer`, `bash` and `text_editor` carry hidden
/// definitions of up to ~735 tokens each.
pub const ANTHROPIC_BUILTIN_TOOL_TOKENS: u64 = 800;

/// Which tokenizer a model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    O200k,
    Cl100k,
}

fn encoding_for(model: &str) -> Option<Encoding> {
    let lowered = model.trim().to_ascii_lowercase();
    let name = lowered.rsplit('/').next().unwrap_or(&lowered);
    let family = |p: &str| name == p || name.strip_prefix(p).is_some_and(|rest| rest.starts_with('-'));
    let o200k =
        ["gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "chatgpt-4o", "codex-mini", "gpt-oss", "omni-moderation"];
    if o200k.iter().any(|p| name.starts_with(p)) || ["o1", "o3", "o4"].into_iter().any(family) {
        return Some(Encoding::O200k);
    }
    let cl100k = ["gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada-002"];
    if cl100k.iter().any(|p| name.starts_with(p)) {
        return Some(Encoding::Cl100k);
    }
    None
}

fn bpe(encoding: Encoding) -> Option<&'static CoreBPE> {
    static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    let loaded = match encoding {
        Encoding::O200k => O200K.get_or_init(|| load(tiktoken_rs::o200k_base)),
        Encoding::Cl100k => CL100K.get_or_init(|| load(tiktoken_rs::cl100k_base)),
    };
    loaded.as_ref()
}

fn load(f: fn() -> anyhow::Result<CoreBPE>) -> Option<CoreBPE> {
    match catch_unwind(f) {
        Ok(Ok(bpe)) => Some(bpe),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "tokenizer does not load; using conservative estimates");
            None
        }
        Err(_) => {
            tracing::error!("tokenizer panicked while loading; using conservative estimates");
            None
        }
    }
}

/// Loads the tokenizers now (about 0.25 s of CPU) rather than on the first request that
/// needs one. Call once at startup, off the async runtime (`spawn_blocking`).
pub fn warm_up() {
    let _ = bpe(Encoding::O200k);
    let _ = bpe(Encoding::Cl100k);
}

/// Counts text for one request: exactly while the budget lasts, conservatively after.
struct Counter {
    bpe: Option<&'static CoreBPE>,
    bpe_budget: usize,
    /// Tokens of framing per message, and once per request for the reply.
    per_message: u64,
    per_request: u64,
    image: u64,
}

impl Counter {
    fn new(model: &str) -> Self {
        let encoding = encoding_for(model);
        let image = if model.trim().to_ascii_lowercase().contains("gpt-4o-mini") {
            GPT_4O_MINI_IMAGE_TOKENS
        } else {
            IMAGE_TOKENS
        };
        match encoding.and_then(bpe) {
            // OpenAI's framing: 3 tokens per message, 3 to prime the reply.
            Some(bpe) => Counter {
                bpe: Some(bpe),
                bpe_budget: BPE_BUDGET_BYTES,
                per_message: 3,
                per_request: 3,
                image,
            },
            None => Counter { bpe: None, bpe_budget: 0, per_message: 8, per_request: 16, image },
        }
    }

    fn text(&mut self, s: &str) -> u64 {
        match self.bpe {
            Some(bpe) if s.len() <= self.bpe_budget => {
                self.bpe_budget -= s.len();
                bpe_count(bpe, s)
            }
            _ => conservative_tokens(s),
        }
    }

    /// A JSON value as the model sees it: serialised (which over-counts the compact forms
    /// providers render tool schemas and arguments into).
    fn json(&mut self, v: &Value) -> u64 {
        match v {
            Value::String(s) => self.text(s),
            Value::Null => 0,
            other => {
                let s = other.to_string();
                self.text(&s)
            }
        }
    }

    /// Inline file data (base64): about one token per decoded byte, at least a page's worth.
    fn document(&mut self, base64_len: usize) -> u64 {
        (base64_len as u64 / 4 * 3).max(DOCUMENT_TOKENS)
    }

    /// Inline audio (base64): far below one token per byte in practice (gpt-4o audio is
    /// about 10 tokens a second); one per hundred decoded bytes covers compressed formats.
    fn audio(&mut self, base64_len: usize) -> u64 {
        base64_len as u64 / 4 * 3 / 100 + 100
    }
}

/// tiktoken's count of `s`, in chunks, never panicking.
fn bpe_count(bpe: &CoreBPE, s: &str) -> u64 {
    chunks(s, CHUNK_BYTES)
        .map(|chunk| match catch_unwind(AssertUnwindSafe(|| bpe.encode_ordinary(chunk).len())) {
            Ok(n) => n as u64,
            Err(_) => conservative_tokens(chunk),
        })
        .sum()
}

/// Splits `s` into pieces of at most `max` bytes (or one char, if longer), preferring to
/// cut just before a space or tab that follows a visible ASCII character: the tokenizer's
/// own pre-splitting never joins across such a point, so counts stay exact. Only a run of
/// `max` bytes without one is cut elsewhere, costing at most a token or two per cut.
fn chunks(s: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() <= max {
            return Some(std::mem::take(&mut rest));
        }
        let b = rest.as_bytes();
        let mut end = max;
        while end > 0 && !rest.is_char_boundary(end) {
            end -= 1;
        }
        let natural = (1..=end).rev().find(|&p| matches!(b[p], b' ' | b'\t') && b[p - 1].is_ascii_graphic());
        let cut = match natural {
            Some(p) => p,
            None if end > 0 => end,
            // A single char longer than `max` (impossible for max >= 4): take it whole.
            None => rest.char_indices().nth(1).map_or(rest.len(), |(i, _)| i),
        };
        let (head, tail) = rest.split_at(cut);
        rest = tail;
        Some(head)
    })
}

/// The estimate for models without a known tokenizer, by character class, in one pass:
///
/// - a run of ASCII letters: one token per 3 letters (per 2 if it has two or more capitals);
/// - a run of ASCII letters and digits containing a digit (numbers, hex, ids, base64): one
///   token per character;
/// - ASCII punctuation: one token each;
/// - a single space before a letter: free (it joins the word); other whitespace: one token
///   per 4 characters of a run;
/// - non-ASCII: one token per 2-byte character (accents, Cyrillic), two per 3-byte (CJK),
///   four per 4-byte (emoji).
///
/// Calibrated against tiktoken's `o200k_base` and `cl100k_base` on prose, code, YAML,
/// JSON, CSV, German, Russian, Japanese, Chinese, emoji, UUIDs and base64: 1.4 to 3.7 times
/// their counts, except hex strings, where it meets the one-token-per-byte bound.
pub fn conservative_tokens(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut tokens = 0u64;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphanumeric() {
            let start = i;
            let (mut digits, mut capitals) = (0u64, 0u64);
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                digits += u64::from(b[i].is_ascii_digit());
                capitals += u64::from(b[i].is_ascii_uppercase());
                i += 1;
            }
            let len = (i - start) as u64;
            tokens += match (digits, capitals) {
                (1.., _) => len,
                (0, 2..) => len.div_ceil(2),
                (0, _) => len.div_ceil(3),
            };
        } else if c == b' ' && b.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
            i += 1;
        } else if c.is_ascii_whitespace() {
            let start = i;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            tokens += ((i - start) as u64).div_ceil(4);
        } else if c.is_ascii() {
            tokens += 1;
            i += 1;
        } else {
            // `s` is valid UTF-8, so `c` is a lead byte giving the character's length.
            let (len, cost) = match c {
                0xF0.. => (4, 4),
                0xE0.. => (3, 2),
                _ => (2, 1),
            };
            tokens += cost;
            i += len;
        }
    }
    tokens
}

/// Estimated input tokens of a request body, for the worst-case reservation.
///
/// `body` is an OpenAI chat completion (`messages`) or embeddings (`input`) request for
/// [`Wire::OpenAi`], or an Anthropic messages request for [`Wire::Anthropic`]. Every text
/// part counts: system prompt, message contents, names, tool definitions, tool calls and
/// their arguments, tool results, structured-output schemas. Images count
/// [`IMAGE_TOKENS`] each ([`GPT_4O_MINI_IMAGE_TOKENS`] for gpt-4o-mini); inline documents
/// about one token per decoded byte. A body of any other shape counts all its text.
pub fn estimate_input_tokens(model: &str, body: &Value, wire: Wire) -> u64 {
    let mut c = Counter::new(model);
    let Some(obj) = body.as_object() else {
        return c.json(body);
    };
    if obj.contains_key("messages") {
        return match wire {
            Wire::OpenAi => openai_chat(&mut c, obj),
            Wire::Anthropic => anthropic_messages(&mut c, obj),
        };
    }
    if let Some(input) = obj.get("input") {
        return embedding_input(&mut c, input);
    }
    if let Some(prompt) = obj.get("prompt") {
        return embedding_input(&mut c, prompt) + c.per_request;
    }
    c.json(body)
}

fn openai_chat(c: &mut Counter, body: &Map<String, Value>) -> u64 {
    let mut n = c.per_request;
    for msg in array(body.get("messages")) {
        n += c.per_message;
        let Some(msg) = msg.as_object() else {
            n += c.json(msg);
            continue;
        };
        for (key, v) in msg {
            n += match key.as_str() {
                "role" | "tool_call_id" | "refusal" => c.json(v),
                "name" => c.json(v) + 1,
                "content" => openai_content(c, v),
                "tool_calls" => {
                    array(Some(v)).map(|call| openai_call(c, call.get("function").unwrap_or(call))).sum()
                }
                "function_call" => openai_call(c, v),
                // Replayed assistant audio is referenced by id; its tokens are billed as
                // audio input, bounded like an attachment.
                "audio" => DOCUMENT_TOKENS,
                _ => 0,
            };
        }
    }
    let tools: u64 = array(body.get("tools"))
        .chain(array(body.get("functions")))
        .map(|t| c.json(t.get("function").unwrap_or(t)) + 8)
        .sum();
    if tools > 0 {
        n += tools + 12;
    }
    if let Some(format) = body.get("response_format").and_then(|f| f.get("json_schema")) {
        n += c.json(format) + 8;
    }
    n
}

fn openai_call(c: &mut Counter, function: &Value) -> u64 {
    3 + function.get("name").map_or(0, |v| c.json(v)) + function.get("arguments").map_or(0, |v| c.json(v))
}

fn openai_content(c: &mut Counter, content: &Value) -> u64 {
    let Value::Array(parts) = content else {
        return c.json(content);
    };
    let mut n = 0;
    for part in parts {
        let field = |name: &str| part.get(name);
        n += match part.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" | "input_text" => field("text").map_or(0, |v| c.json(v)),
            "refusal" => field("refusal").map_or(0, |v| c.json(v)),
            "image_url" | "input_image" => c.image,
            "input_audio" => {
                let data = part.pointer("/input_audio/data").and_then(Value::as_str).unwrap_or("");
                c.audio(data.len())
            }
            "file" | "input_file" => {
                let data = part.pointer("/file/file_data").or_else(|| field("file_data"));
                c.document(data.and_then(Value::as_str).map_or(0, str::len))
            }
            _ => c.json(part),
        };
    }
    n
}

fn anthropic_messages(c: &mut Counter, body: &Map<String, Value>) -> u64 {
    let mut n = c.per_request;
    if let Some(system) = body.get("system") {
        n += anthropic_content(c, system);
    }
    for msg in array(body.get("messages")) {
        n += c.per_message;
        match msg.as_object() {
            Some(m) => {
                n += m.get("role").map_or(0, |v| c.json(v));
                n += m.get("content").map_or(0, |v| anthropic_content(c, v));
            }
            None => n += c.json(msg),
        }
    }
    let mut tools = 0;
    for tool in array(body.get("tools")) {
        tools += c.json(tool);
        let builtin = tool.get("type").and_then(Value::as_str).is_some_and(|t| t != "custom");
        if builtin {
            tools += ANTHROPIC_BUILTIN_TOOL_TOKENS;
        }
    }
    if !array(body.get("tools")).as_slice().is_empty() {
        n += tools + ANTHROPIC_TOOLS_OVERHEAD;
    }
    n
}

fn anthropic_content(c: &mut Counter, content: &Value) -> u64 {
    let Value::Array(blocks) = content else {
        return c.json(content);
    };
    let mut n = 0;
    for block in blocks {
        let field = |name: &str| block.get(name);
        n += match block.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => field("text").map_or(0, |v| c.json(v)),
            "thinking" => field("thinking").map_or(0, |v| c.json(v)),
            "redacted_thinking" => field("data").map_or(0, |v| c.json(v)),
            "image" => c.image,
            "document" => anthropic_document(c, field("source")),
            "tool_use" | "server_tool_use" => {
                4 + field("name").map_or(0, |v| c.json(v)) + field("input").map_or(0, |v| c.json(v))
            }
            "tool_result" => 4 + field("content").map_or(0, |v| anthropic_content(c, v)),
            _ => c.json(block),
        };
    }
    n
}

fn anthropic_document(c: &mut Counter, source: Option<&Value>) -> u64 {
    let Some(source) = source else { return DOCUMENT_TOKENS };
    match source.get("type").and_then(Value::as_str).unwrap_or("") {
        "base64" => c.document(source.get("data").and_then(Value::as_str).map_or(0, str::len)),
        "text" => source.get("data").map_or(0, |v| c.json(v)),
        "content" => source.get("content").map_or(0, |v| anthropic_content(c, v)),
        _ => DOCUMENT_TOKENS,
    }
}

/// `input` of an embeddings request: a string, strings, token ids, or arrays of token ids.
fn embedding_input(c: &mut Counter, input: &Value) -> u64 {
    match input {
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Number(_) => 1,
                Value::Array(ids) if ids.iter().all(Value::is_number) => ids.len() as u64,
                other => c.json(other),
            })
            .sum(),
        other => c.json(other),
    }
}

fn array(v: Option<&Value>) -> std::slice::Iter<'_, Value> {
    match v {
        Some(Value::Array(items)) => items.iter(),
        _ => [].iter(),
    }
}

/// The most output tokens the request allows: `max_completion_tokens` (else `max_tokens`,
/// else `max_output_tokens`) times `n` for OpenAI; `max_tokens` for Anthropic. Embeddings
/// requests produce no output: `Some(0)`. `None` when no limit is given; the caller then
/// injects a cap (and, for OpenAI, multiplies it by [`choice_count`]).
pub fn max_output_tokens(body: &Value, wire: Wire) -> Option<u64> {
    let get = |k: &str| body.get(k).and_then(Value::as_u64);
    match wire {
        Wire::OpenAi => {
            if body.get("messages").is_none() && body.get("input").is_some() && body.get("prompt").is_none() {
                let responses_limit = get("max_output_tokens");
                return Some(responses_limit.unwrap_or(0));
            }
            let limit = get("max_completion_tokens")
                .or_else(|| get("max_tokens"))
                .or_else(|| get("max_output_tokens"))?;
            Some(limit.saturating_mul(choice_count(body, wire)))
        }
        Wire::Anthropic => get("max_tokens"),
    }
}

/// How many completions the request asks for (OpenAI's `n`, at least 1); each may use the
/// whole output limit. Anthropic has no `n`: 1.
pub fn choice_count(body: &Value, wire: Wire) -> u64 {
    match wire {
        Wire::OpenAi => body.get("n").and_then(Value::as_u64).unwrap_or(1).max(1),
        Wire::Anthropic => 1,
    }
}

/// The most a call can cost: every input token at the full (uncached) input price plus
/// `max_output_tokens` at the output price, rounded up, saturating.
pub fn worst_case_micros(prices: &PricesMicros, input_tokens: u64, max_output_tokens: u64) -> u64 {
    let input = u128::from(input_tokens) * u128::from(prices.input_per_mtok);
    let output = u128::from(max_output_tokens) * u128::from(prices.output_per_mtok);
    div_ceil_saturating(input.saturating_add(output))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn o200k() -> &'static CoreBPE {
        bpe(Encoding::O200k).unwrap()
    }

    /// The example from OpenAI's cookbook ("How to count tokens with tiktoken"), whose counts
    /// the API reports as 124 prompt tokens for gpt-4o models and 129 for gpt-4.
    fn cookbook_messages() -> Value {
        json!({"messages": [
            {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
            {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
            {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
            {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
            {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
            {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."}
        ]})
    }

    const ENGLISH: &str = "Tollgate governs what AI agents do with LLMs. Every call passes through it: it is \
        authenticated, checked for safety, charged to a budget, protected by circuit breakers and observed. \
        Admins manage it through Kubernetes resources, a CLI and a web dashboard; developers get virtual keys.";
    const CODE: &str = "fn fixed_window(len_ms: i64, now_ms: i64) -> Window {\n    let start_ms = \
        now_ms.div_euclid(len_ms).saturating_mul(len_ms);\n    Window { start_ms, end_ms: start_ms.saturating_add(len_ms) }\n}\n\
        for (i, x) in items.iter().enumerate() {\n        if x.len() > 3 && !seen.contains(&x) { out.push((i, x.clone())); }\n    }\n";
    const JSON_TEXT: &str = r#"{"id":"chatcmpl-123","object":"chat.completion","created":1700000000,"choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12}}"#;
    const GERMAN: &str = "Größere Budgets müssen über alle Ebenen hinweg geprüft werden, bevor die Anfrage weitergeleitet wird.";
    const JAPANESE: &str = "予算は期間ごとに区切られ、新しい期間はリセット処理なしでゼロから始まります。上限に達すると要求は拒否されます。";
    const EMOJI: &str = "Launch 🚀🚀 done ✅ — thanks 🙏🏽 team 🎉!";

    #[test]
    fn openai_chat_matches_the_api_counts() {
        let body = cookbook_messages();
        assert_eq!(estimate_input_tokens("gpt-4o", &body, Wire::OpenAi), 124);
        assert_eq!(estimate_input_tokens("gpt-4o-mini-2024-07-18", &body, Wire::OpenAi), 124);
        assert_eq!(estimate_input_tokens("gpt-4.1", &body, Wire::OpenAi), 124);
        assert_eq!(estimate_input_tokens("o3-mini", &body, Wire::OpenAi), 124);
        assert_eq!(estimate_input_tokens("gpt-5", &body, Wire::OpenAi), 124);
        assert_eq!(estimate_input_tokens("gpt-4", &body, Wire::OpenAi), 129);
        assert_eq!(estimate_input_tokens("gpt-3.5-turbo", &body, Wire::OpenAi), 129);
    }

    #[test]
    fn single_message_is_tiktoken_plus_framing() {
        for text in [ENGLISH, CODE, JSON_TEXT, GERMAN, JAPANESE, EMOJI] {
            let body = json!({"messages": [{"role": "user", "content": text}]});
            let exact =
                o200k().encode_ordinary(text).len() as u64 + o200k().encode_ordinary("user").len() as u64;
            assert_eq!(estimate_input_tokens("gpt-4o", &body, Wire::OpenAi), exact + 6, "{text}");
        }
    }

    const CSV: &str =
        "id,amount,ts\n1,12.50,1700000000\n2,7.25,1700000013\n37,5.3,1700000026\n998,0.01,1700000039\n";
    const BASE64: &str =
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk=";
    const IDS: &str =
        "req 550e8400-e29b-41d4-a716-446655440000 and 6ba7b810-9dad-11d1-80b4-00c04fd430c8 done";
    const RUSSIAN: &str = "Каждый запрос проходит через шлюз: он аутентифицируется и списывается с бюджета.";

    #[test]
    fn conservative_estimate_overestimates_real_tokenizers() {
        // Claude's tokenizers are less efficient than o200k (reports put them 15-35% higher),
        // so the estimate must clear o200k by a good margin on every kind of text.
        for text in [ENGLISH, CODE, JSON_TEXT, GERMAN, JAPANESE, EMOJI, CSV, BASE64, IDS, RUSSIAN] {
            let o200k_count = o200k().encode_ordinary(text).len() as u64;
            let cl100k_count = bpe(Encoding::Cl100k).unwrap().encode_ordinary(text).len() as u64;
            let estimate = conservative_tokens(text);
            assert!(estimate * 10 >= o200k_count * 14, "{estimate} vs o200k {o200k_count}: {text}");
            assert!(estimate * 10 >= cl100k_count * 12, "{estimate} vs cl100k {cl100k_count}: {text}");
        }
        let body = json!({"system": "Be brief.", "messages": [{"role": "user", "content": ENGLISH}]});
        // Hex is as dense as text gets (one token per byte); the estimate still meets it.
        let hex = "0x3f9a2c7d1e8b4a6f ".repeat(20);
        assert!(conservative_tokens(&hex) >= o200k().encode_ordinary(&hex).len() as u64);
        assert_eq!(conservative_tokens(""), 0);
        let claude = estimate_input_tokens("claude-sonnet-4-5", &body, Wire::Anthropic);
        let tiktoken = o200k().encode_ordinary(ENGLISH).len() as u64;
        assert!(claude > tiktoken * 3 / 2, "{claude} vs {tiktoken}");
    }

    #[test]
    fn chunking_keeps_counts_exact_on_natural_text() {
        let long = ENGLISH.repeat(200); // ~60 KB, many chunks
        assert!(long.len() > 5 * CHUNK_BYTES);
        let whole = o200k().encode_ordinary(&long).len() as u64;
        assert_eq!(bpe_count(o200k(), &long), whole);
        let code = CODE.repeat(300);
        assert_eq!(bpe_count(o200k(), &code), o200k().encode_ordinary(&code).len() as u64);
        for piece in chunks(&long, CHUNK_BYTES) {
            assert!(piece.len() <= CHUNK_BYTES);
        }
        assert_eq!(chunks(&long, CHUNK_BYTES).collect::<String>(), long);
        // Multi-byte text without spaces is cut on char boundaries.
        let ja = JAPANESE.repeat(400);
        assert_eq!(chunks(&ja, 100).collect::<String>(), ja);
        assert!(chunks(&ja, 100).all(|p| p.len() <= 100));
        let forced = bpe_count(o200k(), &ja);
        let exact = o200k().encode_ordinary(&ja).len() as u64;
        assert!(forced >= exact && forced <= exact + ja.len() as u64 / CHUNK_BYTES as u64 * 2 + 2);
    }

    #[test]
    fn pathological_text_neither_panics_nor_takes_long() {
        // A megabyte of spaces makes tiktoken's regex overflow when given in one piece.
        let started = std::time::Instant::now();
        for text in [" ".repeat(1 << 20), "\n".repeat(1 << 20), "a".repeat(1 << 20), "7,".repeat(1 << 19)] {
            let body = json!({"messages": [{"role": "user", "content": text}]});
            let n = estimate_input_tokens("gpt-4o", &body, Wire::OpenAi);
            assert!(n > 0);
        }
        // Generous for unoptimised test builds; release builds take a few hundred ms in all.
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }

    #[test]
    fn text_beyond_the_budget_is_estimated_conservatively() {
        let big = ENGLISH.repeat(BPE_BUDGET_BYTES / ENGLISH.len() + 100);
        let body = json!({"messages": [{"role": "user", "content": big}]});
        let n = estimate_input_tokens("gpt-4o", &body, Wire::OpenAi);
        assert!(n >= o200k().encode_ordinary(&big).len() as u64);
        assert_eq!(n, conservative_tokens(&big) + 3 + 1 + 3);
    }

    #[test]
    fn counts_every_part_of_an_openai_request() {
        let base = json!({"messages": [{"role": "user", "content": "hi"}]});
        let base_n = estimate_input_tokens("gpt-4o", &base, Wire::OpenAi);
        let with = |extra: Value| {
            let mut b = base.clone();
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            estimate_input_tokens("gpt-4o", &b, Wire::OpenAi)
        };
        let tool = json!({"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}});
        assert!(with(json!({"tools": [tool]})) > base_n + 20);
        assert!(
            with(
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}})
            ) > base_n
        );
        let parts = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", "A".repeat(100_000))}}
        ]}]});
        let n = estimate_input_tokens("gpt-4o", &parts, Wire::OpenAi);
        assert!(n > IMAGE_TOKENS && n < IMAGE_TOKENS + 50, "image data is not tokenised: {n}");
        assert!(estimate_input_tokens("gpt-4o-mini", &parts, Wire::OpenAi) > GPT_4O_MINI_IMAGE_TOKENS);
        let calls = json!({"messages": [
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris, France\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees and sunny"}
        ]});
        assert!(estimate_input_tokens("gpt-4o", &calls, Wire::OpenAi) > 20);
    }

    #[test]
    fn counts_every_part_of_an_anthropic_request() {
        let body = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 100,
            "system": [{"type": "text", "text": "You are terse."}],
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}},
                      {"type": "bash_20250124", "name": "bash"}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "sunny"}]},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "A".repeat(80_000)}}]}
            ]
        });
        let n = estimate_input_tokens("claude-sonnet-4-5", &body, Wire::Anthropic);
        let floor = IMAGE_TOKENS + ANTHROPIC_TOOLS_OVERHEAD + ANTHROPIC_BUILTIN_TOOL_TOKENS + 60_000;
        assert!(n > floor, "{n} <= {floor}");
        // Unknown block types still count their text.
        let odd = json!({"messages": [{"role": "user", "content": [{"type": "new_kind", "text": "x".repeat(300)}]}]});
        assert!(estimate_input_tokens("claude-3-5-haiku", &odd, Wire::Anthropic) > 100);
    }

    #[test]
    fn embeddings_inputs() {
        let one =
            json!({"model": "text-embedding-3-small", "input": "The food was delicious and the waiter..."});
        let exact =
            bpe(Encoding::Cl100k).unwrap().encode_ordinary("The food was delicious and the waiter...").len();
        assert_eq!(estimate_input_tokens("text-embedding-3-small", &one, Wire::OpenAi), exact as u64);
        let many = json!({"input": ["a b c", "d e f"]});
        assert_eq!(estimate_input_tokens("text-embedding-3-large", &many, Wire::OpenAi), 6);
        let ids = json!({"input": [[1, 2, 3], [4, 5]]});
        assert_eq!(estimate_input_tokens("text-embedding-3-large", &ids, Wire::OpenAi), 5);
        let flat_ids = json!({"input": [1, 2, 3]});
        assert_eq!(estimate_input_tokens("text-embedding-3-large", &flat_ids, Wire::OpenAi), 3);
        assert!(estimate_input_tokens("mock-embedding-1", &one, Wire::OpenAi) > exact as u64);
        assert_eq!(max_output_tokens(&one, Wire::OpenAi), Some(0));
    }

    #[test]
    fn odd_bodies_never_panic() {
        for body in [
            json!(null),
            json!("text"),
            json!([1, 2]),
            json!({}),
            json!({"messages": "nope"}),
            json!({"messages": [null, 1, "x", {"content": {"weird": true}}, {"content": [null, 3, {"type": 5}]}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}], "tools": "x"}),
            json!({"input": {"nested": ["x"]}}),
        ] {
            for wire in [Wire::OpenAi, Wire::Anthropic] {
                for model in ["gpt-4o", "claude-3-5-haiku", "", "mock-1"] {
                    let _ = estimate_input_tokens(model, &body, wire);
                    let _ = max_output_tokens(&body, wire);
                }
            }
        }
    }

    #[test]
    fn tokenizer_families() {
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1-nano",
            "gpt-5-mini",
            "o1",
            "o3-pro",
            "o4-mini",
            "openai/gpt-4o",
            "GPT-4o",
        ] {
            assert_eq!(encoding_for(m), Some(Encoding::O200k), "{m}");
        }
        for m in ["gpt-4", "gpt-4-turbo", "gpt-3.5-turbo-0125", "gpt-35-turbo", "text-embedding-3-small"] {
            assert_eq!(encoding_for(m), Some(Encoding::Cl100k), "{m}");
        }
        for m in ["claude-sonnet-4-5", "mock-1", "llama-3", "o1x", "omega"] {
            assert_eq!(encoding_for(m), None, "{m}");
        }
    }

    #[test]
    fn output_limits() {
        assert_eq!(max_output_tokens(&json!({"messages": [], "max_tokens": 100}), Wire::OpenAi), Some(100));
        assert_eq!(
            max_output_tokens(
                &json!({"messages": [], "max_tokens": 100, "max_completion_tokens": 50}),
                Wire::OpenAi
            ),
            Some(50)
        );
        assert_eq!(
            max_output_tokens(&json!({"messages": [], "max_tokens": 100, "n": 3}), Wire::OpenAi),
            Some(300)
        );
        assert_eq!(max_output_tokens(&json!({"messages": [], "n": 3}), Wire::OpenAi), None);
        assert_eq!(choice_count(&json!({"n": 3}), Wire::OpenAi), 3);
        assert_eq!(choice_count(&json!({"n": 0}), Wire::OpenAi), 1);
        assert_eq!(max_output_tokens(&json!({"messages": [], "max_tokens": -1}), Wire::OpenAi), None);
        assert_eq!(
            max_output_tokens(&json!({"messages": [], "max_tokens": 1024}), Wire::Anthropic),
            Some(1024)
        );
        assert_eq!(max_output_tokens(&json!({"messages": []}), Wire::Anthropic), None);
    }

    #[test]
    fn worst_case_prices_everything_uncached_and_rounds_up() {
        let p = PricesMicros {
            input_per_mtok: 2_500_000,
            output_per_mtok: 10_000_000,
            cached_input_per_mtok: 1_250_000,
        };
        assert_eq!(worst_case_micros(&p, 1_000, 500), 2_500 + 5_000);
        let cheap =
            PricesMicros { input_per_mtok: 150_000, output_per_mtok: 600_000, cached_input_per_mtok: 75_000 };
        assert_eq!(worst_case_micros(&cheap, 1, 0), 1);
        assert_eq!(worst_case_micros(&cheap, 0, 0), 0);
        let dear =
            PricesMicros { input_per_mtok: u64::MAX, output_per_mtok: u64::MAX, cached_input_per_mtok: 0 };
        assert_eq!(worst_case_micros(&dear, u64::MAX, u64::MAX), u64::MAX);
    }
}
