#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! Property tests of the wire codecs in `translate` and the SSE parser, on generated
//! requests, answers and streams (text with unicode and JSON-special characters, random
//! turns and roles, function tools and calls with JSON arguments, optional limits):
//!
//! 1. Responses request → chat: valid requests translate with every text, role, call id and
//!    argument string preserved in order; each broken shape is an error naming its path;
//!    arbitrary JSON is `Ok` or `Err`, never a panic. Stored (normalised) input items
//!    decode to the same messages as the request they came from.
//! 2. Chat answer → Response object: `output_text` is the chat content, tool calls are
//!    `function_call` items with identical ids, names and arguments, usage maps over; and
//!    OpenAI → Anthropic → OpenAI answers keep text, calls, finish reason and usage.
//! 3. Streams: an OpenAI SSE byte stream cut at arbitrary byte boundaries (and byte by byte)
//!    gives the same events as the whole stream through `SseParser` and
//!    `ChatToResponsesStream`, and through `OpenAiToAnthropicStream` whose Anthropic SSE,
//!    cut again, goes through `AnthropicToOpenAiStream`; the deltas add up to the original
//!    text, arguments, finish reason and usage at every stage.
//! 4. OpenAI chat request → Anthropic → OpenAI keeps system text, the order of texts and
//!    roles, tool calls (ids, names, arguments), tool results, tools, tool choice and limits.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};
use tollgate_dataplane::providers::sse::{SseEvent, SseParser};
use tollgate_dataplane::translate::{
    AnthropicToOpenAiStream, ChatToResponsesStream, OpenAiToAnthropicStream, ResponseMeta, TokenUsage,
    anthropic_request_to_openai, anthropic_response_to_openai, chat_response_to_responses,
    normalize_input_items, openai_request_to_anthropic, openai_response_to_anthropic,
    responses_request_to_chat,
};

const CASES: u32 = 256;

// ---------------------------------------------------------------------------------------
// Shared strategies
// ---------------------------------------------------------------------------------------

/// Pieces of text that stress escaping: quotes, backslashes, line ends, SSE look-alikes,
/// multi-byte and astral characters, NUL and the JSON-vs-JS line separator.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 .,!?]{1,10}",
        3 => "\\PC{1,6}",
        1 => Just("\"".to_owned()),
        1 => Just("\\".to_owned()),
        1 => Just("\n".to_owned()),
        1 => Just("\r\n".to_owned()),
        1 => Just("\r".to_owned()),
        1 => Just("{\"a\":[1,2],\"b\":null}".to_owned()),
        1 => Just("data: [DONE]\n\n".to_owned()),
        1 => Just("event: error\ndata: {}\n\n".to_owned()),
        1 => Just("é日本語".to_owned()),
        1 => Just("🦀👍🏽".to_owned()),
        1 => Just("\u{0}\t".to_owned()),
        1 => Just("\u{2028}\u{2029}".to_owned()),
        1 => Just("\u{feff}".to_owned()),
    ]
}

/// Text of `min..5` pieces (so `min = 1` is never empty).
fn text(min: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), min..5).prop_map(|v| v.concat())
}

/// Tool call ids Anthropic accepts as they are.
fn clean_id() -> impl Strategy<Value = String> {
    "call_[A-Za-z0-9_-]{1,12}"
}

fn tool_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,15}"
}

/// JSON without floats (whose text form may not survive a parse/print cycle bit for bit).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        text(0).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(0), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object, as function arguments are.
fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(text(1), json_value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// `s` cut at the char boundaries `cuts` pick; empty pieces are left out.
fn split_chars(s: &str, cuts: &[Index]) -> Vec<String> {
    let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
    let mut at: Vec<usize> = cuts.iter().map(|c| bounds[c.index(bounds.len())]).collect();
    at.extend([0, s.len()]);
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| s[w[0]..w[1]].to_owned()).filter(|p| !p.is_empty()).collect()
}

/// `bytes` cut at the byte offsets `cuts` pick (UTF-8 sequences and `\r\n` split too).
fn split_bytes<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.extend([0, bytes.len()]);
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

/// Replaces generated ids (by first appearance) and timestamps, so that two runs compare.
fn normalize(v: &mut Value, ids: &mut HashMap<String, usize>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match (k.as_str(), &*x) {
                    ("created" | "created_at", _) => *x = json!(0),
                    ("id" | "item_id", Value::String(s)) => {
                        let next = ids.len();
                        let n = *ids.entry(s.clone()).or_insert(next);
                        *x = json!(format!("id#{n}"));
                    }
                    _ => normalize(x, ids),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| normalize(x, ids)),
        _ => {}
    }
}

fn normalized(events: impl IntoIterator<Item = (&'static str, Value)>) -> Vec<(String, Value)> {
    let mut ids = HashMap::new();
    events
        .into_iter()
        .map(|(name, mut data)| {
            normalize(&mut data, &mut ids);
            (name.to_owned(), data)
        })
        .collect()
}

fn usage() -> impl Strategy<Value = TokenUsage> {
    (0u64..1 << 40, 0u64..1 << 40, any::<Index>()).prop_map(|(input, output, cached)| TokenUsage {
        input,
        output,
        cached_input: u64::try_from(cached.index(usize::try_from(input + 1).unwrap())).unwrap(),
    })
}

fn openai_usage_value(u: TokenUsage) -> Value {
    json!({
        "prompt_tokens": u.input,
        "completion_tokens": u.output,
        "total_tokens": u.input + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cached_input},
    })
}

fn finish_reason() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["stop", "length", "tool_calls", "content_filter"])
}

/// What a message-level comparison looks at: texts by role, images, calls, tool results.
#[derive(Debug, Clone, PartialEq)]
enum Atom {
    Text { role: String, text: String },
    Image { url: String },
    Call { id: String, name: String, arguments: String },
    Tool { id: String, text: String },
}

/// A chat request's messages, flattened in order into atoms.
fn chat_atoms(chat: &Value) -> Vec<Atom> {
    let mut out = Vec::new();
    for m in chat["messages"].as_array().unwrap() {
        let role = m["role"].as_str().unwrap().to_owned();
        if role == "tool" {
            let text = match &m["content"] {
                Value::String(s) => s.clone(),
                other => panic!("tool content {other}"),
            };
            out.push(Atom::Tool { id: m["tool_call_id"].as_str().unwrap().to_owned(), text });
            continue;
        }
        match &m["content"] {
            Value::String(s) => out.push(Atom::Text { role: role.clone(), text: s.clone() }),
            Value::Array(parts) => {
                for p in parts {
                    match p["type"].as_str() {
                        Some("text") => {
                            out.push(Atom::Text {
                                role: role.clone(),
                                text: p["text"].as_str().unwrap().into(),
                            });
                        }
                        Some("image_url") => {
                            out.push(Atom::Image { url: p["image_url"]["url"].as_str().unwrap().into() });
                        }
                        other => panic!("part type {other:?}"),
                    }
                }
            }
            Value::Null => {}
            other => panic!("content {other}"),
        }
        for c in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            out.push(Atom::Call {
                id: c["id"].as_str().unwrap().into(),
                name: c["function"]["name"].as_str().unwrap().into(),
                arguments: c["function"]["arguments"].as_str().unwrap().into(),
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// 1. Responses request -> chat
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Part {
    Text { kind: &'static str, text: String },
    Image { url: String },
}

#[derive(Debug, Clone)]
enum Content {
    Str(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Clone)]
enum Item {
    Message { role: &'static str, typed: bool, content: Content },
    Call { call_id: String, name: String, arguments: String },
    Output { call_id: String, output: Vec<String>, as_parts: bool },
    Reasoning,
}

#[derive(Debug, Clone)]
struct ResponsesReq {
    instructions: Option<String>,
    /// `Err(s)`: a string input.
    input: Result<Vec<Item>, String>,
    tools: Vec<(String, Option<String>, Value)>,
    max_output_tokens: Option<u64>,
    stream: Option<bool>,
    tool_choice: Option<Value>,
}

fn part(role: &'static str) -> BoxedStrategy<Part> {
    let text = (prop::sample::select(vec!["input_text", "output_text", "text"]), text(0))
        .prop_map(|(kind, text)| Part::Text { kind, text });
    if role != "user" {
        return text.boxed();
    }
    let image = prop_oneof![
        "https://example\\.com/[a-z]{1,8}\\.png",
        Just("data:image/png;base64,iVBORw0KGgo=".to_owned()),
    ]
    .prop_map(|url| Part::Image { url });
    prop_oneof![4 => text, 1 => image].boxed()
}

fn message_item() -> impl Strategy<Value = Item> {
    (prop::sample::select(vec!["user", "assistant", "system", "developer"]), any::<bool>()).prop_flat_map(
        |(role, typed)| {
            prop_oneof![
                text(0).prop_map(Content::Str),
                prop::collection::vec(part(role), 0..4).prop_map(Content::Parts),
            ]
            .prop_map(move |content| Item::Message { role, typed, content })
        },
    )
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => message_item(),
        2 => (clean_id(), tool_name(), json_object()).prop_map(|(call_id, name, args)| Item::Call {
            call_id,
            name,
            arguments: args.to_string(),
        }),
        // Arguments are whatever string the model produced, not necessarily JSON.
        1 => (clean_id(), tool_name(), text(0)).prop_map(|(call_id, name, arguments)| Item::Call {
            call_id,
            name,
            arguments,
        }),
        2 => (clean_id(), prop::collection::vec(text(0), 1..3), any::<bool>())
            .prop_map(|(call_id, output, as_parts)| Item::Output { call_id, output, as_parts }),
        1 => Just(Item::Reasoning),
    ]
}

fn responses_req() -> impl Strategy<Value = ResponsesReq> {
    (
        prop::option::of(text(0)),
        prop_oneof![1 => text(0).prop_map(Err), 3 => prop::collection::vec(item(), 0..8).prop_map(Ok)],
        prop::collection::vec((tool_name(), prop::option::of(text(0)), json_object()), 0..3),
        prop::option::of(1u64..1_000_000),
        prop::option::of(any::<bool>()),
        prop::option::of(prop_oneof![
            Just(json!("auto")),
            Just(json!("none")),
            Just(json!("required")),
            tool_name().prop_map(|n| json!({"type": "function", "name": n})),
        ]),
    )
        .prop_map(|(instructions, input, tools, max_output_tokens, stream, tool_choice)| ResponsesReq {
            instructions,
            input,
            tools,
            max_output_tokens,
            stream,
            tool_choice,
        })
}

impl Item {
    fn to_json(&self) -> Value {
        match self {
            Self::Message { role, typed, content } => {
                let content = match content {
                    Content::Str(s) => json!(s),
                    Content::Parts(parts) => parts
                        .iter()
                        .map(|p| match p {
                            Part::Text { kind, text } => json!({"type": kind, "text": text}),
                            Part::Image { url } => json!({"type": "input_image", "image_url": url}),
                        })
                        .collect(),
                };
                let mut m = json!({"role": role, "content": content});
                if *typed {
                    m["type"] = json!("message");
                }
                m
            }
            Self::Call { call_id, name, arguments } => {
                json!({"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments})
            }
            Self::Output { call_id, output, as_parts } => {
                let output = if *as_parts {
                    output.iter().map(|t| json!({"type": "input_text", "text": t})).collect()
                } else {
                    json!(output.concat())
                };
                json!({"type": "function_call_output", "call_id": call_id, "output": output})
            }
            Self::Reasoning => json!({"type": "reasoning", "id": "rs_1", "summary": []}),
        }
    }

    /// The atoms the chat form must hold for this item.
    fn atoms(&self) -> Vec<Atom> {
        match self {
            Self::Message { role, content, .. } => {
                let role = if *role == "developer" { "system" } else { role };
                match content {
                    Content::Str(s) => vec![Atom::Text { role: role.into(), text: s.clone() }],
                    Content::Parts(parts)
                        if role == "user" && parts.iter().any(|p| matches!(p, Part::Image { .. })) =>
                    {
                        parts
                            .iter()
                            .map(|p| match p {
                                Part::Text { text, .. } => {
                                    Atom::Text { role: role.into(), text: text.clone() }
                                }
                                Part::Image { url } => Atom::Image { url: url.clone() },
                            })
                            .collect()
                    }
                    Content::Parts(parts) => {
                        let text = parts
                            .iter()
                            .map(|p| match p {
                                Part::Text { text, .. } => text.as_str(),
                                Part::Image { .. } => "",
                            })
                            .collect();
                        vec![Atom::Text { role: role.into(), text }]
                    }
                }
            }
            Self::Call { call_id, name, arguments } => {
                vec![Atom::Call { id: call_id.clone(), name: name.clone(), arguments: arguments.clone() }]
            }
            Self::Output { call_id, output, as_parts } => {
                let text = if *as_parts { output.join("\n") } else { output.concat() };
                vec![Atom::Tool { id: call_id.clone(), text }]
            }
            Self::Reasoning => Vec::new(),
        }
    }
}

impl ResponsesReq {
    fn to_json(&self) -> Value {
        let mut r = json!({"model": "gpt-x"});
        if let Some(i) = &self.instructions {
            r["instructions"] = json!(i);
        }
        r["input"] = match &self.input {
            Err(s) => json!(s),
            Ok(items) => items.iter().map(Item::to_json).collect(),
        };
        if !self.tools.is_empty() {
            r["tools"] = self
                .tools
                .iter()
                .map(|(name, description, parameters)| {
                    let mut t = json!({"type": "function", "name": name, "parameters": parameters});
                    if let Some(d) = description {
                        t["description"] = json!(d);
                    }
                    t
                })
                .collect();
        }
        if let Some(n) = self.max_output_tokens {
            r["max_output_tokens"] = json!(n);
        }
        if let Some(s) = self.stream {
            r["stream"] = json!(s);
        }
        if let Some(c) = &self.tool_choice {
            r["tool_choice"] = c.clone();
        }
        r
    }

    fn atoms(&self) -> Vec<Atom> {
        let mut out = Vec::new();
        if let Some(i) = &self.instructions {
            out.push(Atom::Text { role: "system".into(), text: i.clone() });
        }
        match &self.input {
            Err(s) => out.push(Atom::Text { role: "user".into(), text: s.clone() }),
            Ok(items) => out.extend(items.iter().flat_map(Item::atoms)),
        }
        out
    }

    /// Whether the chat form has a message that is not a system message.
    fn has_conversation(&self) -> bool {
        self.atoms().iter().any(|a| !matches!(a, Atom::Text { role, .. } if role == "system"))
    }
}

/// One way to break a valid request, with the error path it must produce.
#[derive(Debug, Clone)]
enum Breakage {
    InputNotStringOrArray(Value),
    InstructionsNotString(Value),
    BadItem(Value, &'static str),
    MaxOutputTokens(Value),
    Stream(Value),
    ServerTool,
    ToolChoice(Value),
}

fn breakage() -> impl Strategy<Value = Breakage> {
    let bad_items = vec![
        (json!(7), ""),
        (json!("text"), ""),
        (json!({"type": 5}), ".type"),
        (json!({"type": "file_search_call", "id": "fs_1"}), ".type"),
        (json!({"role": "wizard", "content": "x"}), ".role"),
        (json!({"content": "x"}), ".role"),
        (json!({"role": "user"}), ".content"),
        (json!({"role": "user", "content": 3}), ".content"),
        (json!({"role": "user", "content": [{"type": "bogus"}]}), ".content[0].type"),
        (json!({"role": "user", "content": [{"text": "no type"}]}), ".content[0].type"),
        (json!({"role": "user", "content": [{"type": "input_text", "text": 1}]}), ".content[0].text"),
        (json!({"role": "user", "content": [{"type": "input_image"}]}), ".content[0].image_url"),
        (json!({"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}), ".arguments"),
        (json!({"type": "function_call", "name": "f", "arguments": "{}"}), ".call_id"),
        (json!({"type": "function_call", "call_id": "c", "arguments": "{}"}), ".name"),
        (json!({"type": "function_call_output", "call_id": "c", "output": 3}), ".output"),
        (json!({"type": "function_call_output", "output": "x"}), ".call_id"),
    ];
    prop_oneof![
        prop_oneof![Just(json!(3)), Just(json!(true)), Just(json!({"role": "user"}))]
            .prop_map(Breakage::InputNotStringOrArray),
        prop_oneof![Just(json!(3)), Just(json!(["a"])), Just(json!({}))]
            .prop_map(Breakage::InstructionsNotString),
        prop::sample::select(bad_items).prop_map(|(v, p)| Breakage::BadItem(v, p)),
        prop_oneof![Just(json!(0)), Just(json!(-1)), Just(json!(1.5)), Just(json!("10"))]
            .prop_map(Breakage::MaxOutputTokens),
        prop_oneof![Just(json!("yes")), Just(json!(1))].prop_map(Breakage::Stream),
        Just(Breakage::ServerTool),
        prop_oneof![Just(json!("sometimes")), Just(json!(4)), Just(json!({"type": "function"}))]
            .prop_map(Breakage::ToolChoice),
    ]
}

/// Applies `b` to the valid request `r`; returns the error path to expect.
fn apply(b: &Breakage, r: &mut Value) -> String {
    match b {
        Breakage::InputNotStringOrArray(v) => {
            r["input"] = v.clone();
            "input".into()
        }
        Breakage::InstructionsNotString(v) => {
            r["instructions"] = v.clone();
            "instructions".into()
        }
        Breakage::BadItem(v, path) => {
            if let Value::String(s) = &r["input"] {
                r["input"] = json!([{"role": "user", "content": s}]);
            }
            let items = r["input"].as_array_mut().unwrap();
            items.push(v.clone());
            format!("input[{}]{path}", items.len() - 1)
        }
        Breakage::MaxOutputTokens(v) => {
            r["max_output_tokens"] = v.clone();
            "max_output_tokens".into()
        }
        Breakage::Stream(v) => {
            r["stream"] = v.clone();
            "stream".into()
        }
        Breakage::ServerTool => {
            let tools = r.as_object_mut().unwrap().entry("tools").or_insert_with(|| json!([]));
            let tools = tools.as_array_mut().unwrap();
            tools.push(json!({"type": "web_search"}));
            format!("tools[{}].type", tools.len() - 1)
        }
        Breakage::ToolChoice(v) => {
            r["tool_choice"] = v.clone();
            if v.is_object() { "tool_choice.name".into() } else { "tool_choice".into() }
        }
    }
}

/// Arbitrary JSON built from the Responses vocabulary, for the no-panic property.
fn responses_fuzz() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "input",
        "type",
        "role",
        "content",
        "text",
        "call_id",
        "name",
        "arguments",
        "output",
        "instructions",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "stream",
        "reasoning",
        "effort",
        "format",
        "schema",
        "image_url",
        "detail",
        "refusal",
        "id",
        "model",
        "temperature",
        "strict",
        "parameters",
    ]);
    let words = prop::sample::select(vec![
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
        "input_text",
        "output_text",
        "input_image",
        "refusal",
        "summary_text",
        "user",
        "assistant",
        "system",
        "developer",
        "function",
        "auto",
        "none",
        "required",
        "json_schema",
        "json_object",
        "text",
        "web_search",
        "",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..5).prop_map(Value::from),
        Just(json!(1.5)),
        Just(json!(u64::MAX)),
        words.prop_map(Value::from),
        text(0).prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn responses_request_keeps_every_text_and_call_in_order(req in responses_req()) {
        let body = req.to_json();
        let result = responses_request_to_chat(&body, &[]);
        if !req.has_conversation() {
            let e = result.expect_err("no conversation must be refused");
            prop_assert_eq!(e.path, "input");
            return Ok(());
        }
        let chat = result.map_err(|e| TestCaseError::fail(format!("{e} for {body}")))?;
        prop_assert_eq!(chat_atoms(&chat), req.atoms(), "chat: {:#}", chat);
        // Consecutive function calls are one assistant turn (the chat form of parallel calls).
        let msgs = chat["messages"].as_array().unwrap();
        for w in msgs.windows(2) {
            prop_assert!(
                !(w[0]["role"] == "assistant" && w[0].get("tool_calls").is_some()
                    && w[1]["role"] == "assistant" && w[1]["content"].is_null()),
                "a call was not joined to the assistant turn before it: {:#}", chat
            );
        }
        let names: Vec<&str> = chat.get("tools").and_then(Value::as_array).into_iter().flatten()
            .map(|t| t["function"]["name"].as_str().unwrap()).collect();
        let want: Vec<&str> = req.tools.iter().map(|(n, _, _)| n.as_str()).collect();
        prop_assert_eq!(names, want);
        for (t, (_, description, parameters)) in chat.get("tools").and_then(Value::as_array).into_iter().flatten().zip(&req.tools) {
            prop_assert_eq!(&t["function"]["parameters"], parameters);
            prop_assert_eq!(t["function"].get("description").and_then(Value::as_str), description.as_deref());
        }
        prop_assert_eq!(chat.get("max_tokens").and_then(Value::as_u64), req.max_output_tokens);
        let streaming = req.stream == Some(true);
        prop_assert_eq!(chat.get("stream") == Some(&json!(true)), streaming);
        prop_assert_eq!(chat.get("stream_options").is_some(), streaming);
        prop_assert_eq!(chat["model"].as_str(), Some("gpt-x"));
    }

    #[test]
    fn stored_input_items_decode_like_the_request(req in responses_req(), next in text(0)) {
        // Instructions are not input items: they are not stored.
        let req = ResponsesReq { instructions: None, ..req };
        let body = req.to_json();
        let items = normalize_input_items(&body);
        prop_assert!(items.iter().all(|i| i["id"].is_string() && i["type"].is_string()), "{:#?}", items);
        let chat = responses_request_to_chat(&json!({"model": "m", "input": next}), &items).unwrap();
        let mut want = req.atoms();
        want.push(Atom::Text { role: "user".into(), text: next });
        prop_assert_eq!(chat_atoms(&chat), want);
    }

    #[test]
    fn broken_responses_requests_are_errors_naming_the_path(req in responses_req(), b in breakage()) {
        prop_assume!(req.has_conversation());
        let mut body = req.to_json();
        let path = apply(&b, &mut body);
        match responses_request_to_chat(&body, &[]) {
            Ok(chat) => prop_assert!(false, "accepted {body}: {chat}"),
            Err(e) => prop_assert_eq!(e.path, path, "{}", e.message),
        }
    }

    #[test]
    fn responses_request_never_panics_on_any_json(v in responses_fuzz(), history in prop::collection::vec(responses_fuzz(), 0..3)) {
        let _ = responses_request_to_chat(&v, &history);
        let _ = normalize_input_items(&v);
        let wrapped = json!({"model": "m", "input": v});
        let _ = responses_request_to_chat(&wrapped, &[]);
        let _ = responses_request_to_chat(&json!({"model": "m", "input": [v]}), &[]);
        let items = normalize_input_items(&wrapped);
        let _ = responses_request_to_chat(&json!({"model": "m"}), &items);
        // And the other translators, given the same shapes.
        let _ = openai_request_to_anthropic(&v, "m", 16);
        let _ = anthropic_request_to_openai(&v, "m");
        let _ = ResponseMeta::new(&v, "m");
        let _ = chat_response_to_responses(&v, &ResponseMeta::new(&v, "m"));
    }
}

// ---------------------------------------------------------------------------------------
// 2. Chat answers -> Response objects, and OpenAI -> Anthropic -> OpenAI answers
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct ChatAnswer {
    /// `None`: `content: null`; `Some((text, cuts))`: a string, or parts cut at `cuts`.
    content: Option<(String, Option<Vec<Index>>)>,
    calls: Vec<(String, String, String)>,
    finish: &'static str,
    usage: TokenUsage,
}

fn chat_answer() -> impl Strategy<Value = ChatAnswer> {
    (
        prop::option::of((text(0), prop::option::of(prop::collection::vec(any::<Index>(), 0..4)))),
        prop::collection::vec((clean_id(), tool_name(), json_object().prop_map(|v| v.to_string())), 0..4),
        finish_reason(),
        usage(),
    )
        .prop_map(|(content, calls, finish, usage)| ChatAnswer { content, calls, finish, usage })
}

impl ChatAnswer {
    fn text(&self) -> String {
        self.content.as_ref().map(|(t, _)| t.clone()).unwrap_or_default()
    }

    fn to_json(&self) -> Value {
        let content = match &self.content {
            None => Value::Null,
            Some((t, None)) => json!(t),
            Some((t, Some(cuts))) => {
                split_chars(t, cuts).into_iter().map(|p| json!({"type": "text", "text": p})).collect()
            }
        };
        let mut message = json!({"role": "assistant", "content": content});
        if !self.calls.is_empty() {
            message["tool_calls"] = self
                .calls
                .iter()
                .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
                .collect();
        }
        json!({
            "id": "chatcmpl-abc",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-x",
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": self.finish}],
            "usage": openai_usage_value(self.usage),
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn chat_answer_becomes_the_same_response(a in chat_answer(), echo in prop::option::of(json_object())) {
        let request = json!({"metadata": echo.clone().unwrap_or_else(|| json!({}))});
        let meta = ResponseMeta::new(&request, "gpt-x");
        let r = chat_response_to_responses(&a.to_json(), &meta);
        let output = r["output"].as_array().unwrap();
        let messages: Vec<&Value> = output.iter().filter(|i| i["type"] == "message").collect();
        let output_text: String = messages.iter()
            .flat_map(|m| m["content"].as_array().unwrap())
            .filter(|p| p["type"] == "output_text")
            .map(|p| p["text"].as_str().unwrap())
            .collect();
        prop_assert_eq!(&output_text, &a.text());
        prop_assert_eq!(messages.len(), usize::from(!a.text().is_empty()), "{:#}", r);
        let calls: Vec<(String, String, String)> = output.iter()
            .filter(|i| i["type"] == "function_call")
            .map(|i| (
                i["call_id"].as_str().unwrap().into(),
                i["name"].as_str().unwrap().into(),
                i["arguments"].as_str().unwrap().into(),
            ))
            .collect();
        prop_assert_eq!(&calls, &a.calls);
        prop_assert_eq!(output.len(), messages.len() + calls.len());
        // The message comes before the calls, as the chat answer has it.
        prop_assert!(messages.is_empty() || output[0]["type"] == "message");
        prop_assert_eq!(r["usage"]["input_tokens"].as_u64(), Some(a.usage.input));
        prop_assert_eq!(r["usage"]["output_tokens"].as_u64(), Some(a.usage.output));
        prop_assert_eq!(r["usage"]["total_tokens"].as_u64(), Some(a.usage.input + a.usage.output));
        prop_assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"].as_u64(), Some(a.usage.cached_input));
        let status = match a.finish { "length" | "content_filter" => "incomplete", _ => "completed" };
        prop_assert_eq!(r["status"].as_str(), Some(status));
        prop_assert_eq!(r["id"].as_str(), Some(meta.id.as_str()));
        prop_assert_eq!(&r["metadata"], &request["metadata"]);
        prop_assert_eq!(r["object"].as_str(), Some("response"));
    }

    #[test]
    fn answers_survive_openai_to_anthropic_and_back(a in chat_answer()) {
        let anthropic = openai_response_to_anthropic(&a.to_json(), "claude-x");
        let back = anthropic_response_to_openai(&anthropic, "gpt-x");
        let message = &back["choices"][0]["message"];
        prop_assert_eq!(message["content"].as_str().unwrap_or_default(), a.text());
        let calls: Vec<(String, String, Value)> = message.get("tool_calls").and_then(Value::as_array)
            .into_iter().flatten()
            .map(|c| (
                c["id"].as_str().unwrap().into(),
                c["function"]["name"].as_str().unwrap().into(),
                serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap(),
            ))
            .collect();
        let want: Vec<(String, String, Value)> = a.calls.iter()
            .map(|(id, name, args)| (id.clone(), name.clone(), serde_json::from_str(args).unwrap()))
            .collect();
        prop_assert_eq!(calls, want);
        prop_assert_eq!(back["choices"][0]["finish_reason"].as_str(), Some(a.finish));
        let usage = &back["usage"];
        prop_assert_eq!(usage["prompt_tokens"].as_u64(), Some(a.usage.input));
        prop_assert_eq!(usage["completion_tokens"].as_u64(), Some(a.usage.output));
        let cached = usage.pointer("/prompt_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(0);
        prop_assert_eq!(cached, a.usage.cached_input);
    }
}

// ---------------------------------------------------------------------------------------
// 3. Streams cut anywhere
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Seg {
    Text(Vec<String>),
    Call { id: String, name: String, fragments: Vec<String> },
}

#[derive(Debug, Clone)]
struct StreamCase {
    id: String,
    segs: Vec<Seg>,
    finish: &'static str,
    usage: TokenUsage,
    crlf: bool,
    comments: bool,
    /// The first argument fragment rides in the chunk that names the call.
    args_in_header: bool,
    /// Consecutive calls are announced first and their fragments then alternate (parallel
    /// calls as some compatible upstreams stream them).
    interleave: bool,
}

fn seg() -> impl Strategy<Value = Seg> {
    prop_oneof![
        3 => prop::collection::vec(text(1), 1..5).prop_map(Seg::Text),
        2 => (clean_id(), tool_name(), json_object(), prop::collection::vec(any::<Index>(), 0..5))
            .prop_map(|(id, name, args, cuts)| Seg::Call { id, name, fragments: split_chars(&args.to_string(), &cuts) }),
    ]
}

fn stream_case() -> impl Strategy<Value = StreamCase> {
    (
        "[a-zA-Z0-9]{1,12}",
        prop::collection::vec(seg(), 0..5),
        finish_reason(),
        usage(),
        any::<(bool, bool, bool, bool)>(),
    )
        .prop_map(|(id, segs, finish, usage, (crlf, comments, args_in_header, interleave))| StreamCase {
            id: format!("chatcmpl-{id}"),
            segs,
            finish,
            usage,
            crlf,
            comments,
            args_in_header,
            interleave,
        })
}

impl StreamCase {
    fn text(&self) -> String {
        self.segs
            .iter()
            .filter_map(|s| match s {
                Seg::Text(p) => Some(p.concat()),
                Seg::Call { .. } => None,
            })
            .collect()
    }

    /// (id, name, arguments) of each call, in order.
    fn calls(&self) -> Vec<(String, String, String)> {
        self.segs
            .iter()
            .filter_map(|s| match s {
                Seg::Call { id, name, fragments } => Some((id.clone(), name.clone(), fragments.concat())),
                Seg::Text(_) => None,
            })
            .collect()
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            "usage": null,
        })
    }

    /// The chunks an OpenAI upstream sends, usage chunk last.
    fn chunks(&self) -> Vec<Value> {
        let mut out = vec![self.chunk(json!({"role": "assistant", "content": ""}), None)];
        let mut k = 0;
        // The run of consecutive calls not yet sent: (index, id, name, fragments).
        let mut run: Vec<(usize, &str, &str, &[String])> = Vec::new();
        for seg in &self.segs {
            match seg {
                Seg::Text(pieces) => {
                    self.calls_chunks(std::mem::take(&mut run), &mut out);
                    out.extend(pieces.iter().map(|p| self.chunk(json!({"content": p}), None)));
                }
                Seg::Call { id, name, fragments } => {
                    run.push((k, id, name, fragments));
                    k += 1;
                }
            }
        }
        self.calls_chunks(run, &mut out);
        out.push(self.chunk(json!({}), Some(self.finish)));
        out.push(json!({
            "id": self.id, "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
            "choices": [], "usage": openai_usage_value(self.usage),
        }));
        out
    }

    /// The chunks of a run of consecutive calls.
    fn calls_chunks(&self, run: Vec<(usize, &str, &str, &[String])>, out: &mut Vec<Value>) {
        let header = |k: usize, id: &str, name: &str, first: &str| {
            let call = json!({"index": k, "id": id, "type": "function", "function": {"name": name, "arguments": first}});
            self.chunk(json!({"tool_calls": [call]}), None)
        };
        let fragment = |k: usize, f: &str| {
            self.chunk(json!({"tool_calls": [{"index": k, "function": {"arguments": f}}]}), None)
        };
        // Each call's fragments after the header's.
        let mut rest: Vec<(usize, &[String])> = Vec::new();
        for (k, id, name, fragments) in run {
            let (first, tail) = match fragments.split_first() {
                Some((f, tail)) if self.args_in_header => (f.as_str(), tail),
                _ => ("", fragments),
            };
            if self.interleave {
                out.push(header(k, id, name, first));
                rest.push((k, tail));
            } else {
                out.push(header(k, id, name, first));
                out.extend(tail.iter().map(|f| fragment(k, f)));
            }
        }
        // Interleaved: round robin over the calls' remaining fragments.
        let longest = rest.iter().map(|(_, t)| t.len()).max().unwrap_or(0);
        for i in 0..longest {
            for (k, tail) in &rest {
                if let Some(f) = tail.get(i) {
                    out.push(fragment(*k, f));
                }
            }
        }
    }

    /// The SSE bytes of the stream, `[DONE]` last.
    fn bytes(&self) -> Vec<u8> {
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let mut s = String::new();
        for (i, c) in self.chunks().iter().enumerate() {
            if self.comments && i % 2 == 0 {
                s.push_str(&format!(": keep-alive{eol}"));
            }
            s.push_str(&format!("data: {c}{eol}{eol}"));
        }
        s.push_str(&format!("data: [DONE]{eol}{eol}"));
        s.into_bytes()
    }
}

fn parse_sse(pieces: &[&[u8]]) -> Vec<SseEvent> {
    let mut parser = SseParser::default();
    let mut out = Vec::new();
    for p in pieces {
        parser.feed(p, &mut out).unwrap();
    }
    parser.finish(&mut out);
    out
}

/// The chunks of an OpenAI SSE stream, up to `[DONE]`.
fn openai_chunks(events: &[SseEvent]) -> Vec<Value> {
    events.iter().take_while(|e| e.data != "[DONE]").map(|e| serde_json::from_str(&e.data).unwrap()).collect()
}

fn to_responses(chunks: &[Value], meta: &ResponseMeta) -> Vec<(String, Value)> {
    let mut s = ChatToResponsesStream::new(meta.clone());
    let mut events = Vec::new();
    for c in chunks {
        events.extend(s.on_chunk(c));
    }
    let usage = s.usage();
    let (end, _) = s.finish(usage);
    events.extend(end);
    normalized(events)
}

fn to_anthropic(chunks: &[Value]) -> Vec<(String, Value)> {
    let mut s = OpenAiToAnthropicStream::new("claude-x");
    let mut events = Vec::new();
    for c in chunks {
        events.extend(s.on_chunk(c));
    }
    events.extend(s.finish());
    normalized(events)
}

fn anthropic_sse(events: &[(String, Value)], crlf: bool) -> Vec<u8> {
    let eol = if crlf { "\r\n" } else { "\n" };
    events
        .iter()
        .map(|(name, data)| format!("event: {name}{eol}data: {data}{eol}{eol}"))
        .collect::<String>()
        .into_bytes()
}

fn to_openai(events: &[SseEvent]) -> Vec<Value> {
    let mut s = AnthropicToOpenAiStream::new("gpt-x", true);
    let mut out = Vec::new();
    for e in events {
        out.extend(s.on_event(&e.event, &serde_json::from_str(&e.data).unwrap()));
    }
    out.extend(s.finish());
    let mut ids = HashMap::new();
    out.iter()
        .map(|p| {
            let mut v: Value = serde_json::from_str(p).unwrap();
            normalize(&mut v, &mut ids);
            v
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn sse_cut_anywhere_gives_the_same_events(
        case in stream_case(),
        cuts in prop::collection::vec(any::<Index>(), 0..32),
        cuts_back in prop::collection::vec(any::<Index>(), 0..32),
    ) {
        let bytes = case.bytes();
        let whole = parse_sse(&[bytes.as_slice()]);
        let cut = parse_sse(&split_bytes(&bytes, &cuts));
        let byte_by_byte = parse_sse(&bytes.chunks(1).collect::<Vec<_>>());
        prop_assert_eq!(&cut, &whole);
        prop_assert_eq!(&byte_by_byte, &whole);
        let chunks = openai_chunks(&whole);
        prop_assert_eq!(&chunks, &case.chunks(), "the parser gives back every chunk");
        prop_assert_eq!(whole.len(), chunks.len() + 1, "and [DONE] last");

        // Responses events.
        let meta = ResponseMeta::new(&json!({}), "gpt-x");
        let events = to_responses(&chunks, &meta);
        prop_assert_eq!(&to_responses(&openai_chunks(&cut), &meta), &events);
        for (i, (name, data)) in events.iter().enumerate() {
            prop_assert_eq!(data["sequence_number"].as_u64(), Some(i as u64));
            prop_assert_eq!(data["type"].as_str(), Some(name.as_str()));
        }
        let deltas: String = events.iter().filter(|(n, _)| n == "response.output_text.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap()).collect();
        prop_assert_eq!(&deltas, &case.text());
        let (last, done) = events.last().unwrap();
        let incomplete = matches!(case.finish, "length" | "content_filter");
        prop_assert_eq!(last.as_str(), if incomplete { "response.incomplete" } else { "response.completed" });
        let response = &done["response"];
        let calls: Vec<(String, String, String)> = response["output"].as_array().unwrap().iter()
            .filter(|i| i["type"] == "function_call")
            .map(|i| (i["call_id"].as_str().unwrap().into(), i["name"].as_str().unwrap().into(), i["arguments"].as_str().unwrap().into()))
            .collect();
        prop_assert_eq!(&calls, &case.calls());
        let final_text: String = response["output"].as_array().unwrap().iter()
            .filter(|i| i["type"] == "message")
            .flat_map(|m| m["content"].as_array().unwrap())
            .map(|p| p["text"].as_str().unwrap()).collect();
        prop_assert_eq!(&final_text, &case.text());
        prop_assert_eq!(response["usage"]["input_tokens"].as_u64(), Some(case.usage.input));
        prop_assert_eq!(response["usage"]["output_tokens"].as_u64(), Some(case.usage.output));
        prop_assert_eq!(response["usage"]["total_tokens"].as_u64(), Some(case.usage.input + case.usage.output));

        // Anthropic events, then back to OpenAI chunks through Anthropic SSE cut anywhere.
        let anthropic = to_anthropic(&chunks);
        prop_assert_eq!(&to_anthropic(&openai_chunks(&cut)), &anthropic);
        let text: String = anthropic.iter()
            .filter(|(n, d)| n == "content_block_delta" && d["delta"]["type"] == "text_delta")
            .map(|(_, d)| d["delta"]["text"].as_str().unwrap()).collect();
        prop_assert_eq!(&text, &case.text());
        let mut blocks: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
        for (n, d) in &anthropic {
            let index = d["index"].as_u64();
            if n == "content_block_start" && d["content_block"]["type"] == "tool_use" {
                let b = &d["content_block"];
                blocks.insert(index.unwrap(), (b["id"].as_str().unwrap().into(), b["name"].as_str().unwrap().into(), String::new()));
            }
            if n == "content_block_delta" && d["delta"]["type"] == "input_json_delta" {
                blocks.get_mut(&index.unwrap()).unwrap().2.push_str(d["delta"]["partial_json"].as_str().unwrap());
            }
        }
        // The generated ids were normalised; compare names and arguments, in order.
        let got: Vec<(String, String)> = blocks.into_values().map(|(_, n, a)| (n, a)).collect();
        let want: Vec<(String, String)> = case.calls().into_iter().map(|(_, n, a)| (n, a)).collect();
        prop_assert_eq!(&got, &want);

        let sse = anthropic_sse(&anthropic, case.crlf);
        let back_whole = parse_sse(&[sse.as_slice()]);
        let back_cut = parse_sse(&split_bytes(&sse, &cuts_back));
        prop_assert_eq!(&back_cut, &back_whole);
        let openai = to_openai(&back_whole);
        prop_assert_eq!(&to_openai(&back_cut), &openai);
        let content: String = openai.iter()
            .filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
        prop_assert_eq!(&content, &case.text());
        let mut calls: BTreeMap<u64, (String, String)> = BTreeMap::new();
        for call in openai.iter().filter_map(|c| c.pointer("/choices/0/delta/tool_calls").and_then(Value::as_array)).flatten() {
            let e = calls.entry(call["index"].as_u64().unwrap()).or_default();
            if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                e.0.push_str(name);
            }
            e.1.push_str(call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default());
        }
        prop_assert_eq!(calls.into_values().collect::<Vec<_>>(), want);
        let reasons: Vec<&str> = openai.iter()
            .filter_map(|c| c.pointer("/choices/0/finish_reason").and_then(Value::as_str)).collect();
        prop_assert_eq!(reasons, vec![case.finish]);
        let usage = &openai.last().unwrap()["usage"];
        prop_assert_eq!(usage["prompt_tokens"].as_u64(), Some(case.usage.input));
        prop_assert_eq!(usage["completion_tokens"].as_u64(), Some(case.usage.output));
        let cached = usage.pointer("/prompt_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(0);
        prop_assert_eq!(cached, case.usage.cached_input);
    }

    #[test]
    fn stream_ids_survive_openai_to_anthropic_and_back(case in stream_case()) {
        // Without normalisation: the upstream's call ids reach both kinds of client.
        let mut to_a = OpenAiToAnthropicStream::new("claude-x");
        let mut to_o = AnthropicToOpenAiStream::new("gpt-x", false);
        let mut a_ids = Vec::new();
        let mut o_ids = Vec::new();
        let chunks = case.chunks();
        let mut events: Vec<(&str, Value)> = chunks.iter().flat_map(|c| to_a.on_chunk(c)).collect();
        events.extend(to_a.finish());
        for (name, data) in &events {
            if let Some(id) = data.pointer("/content_block/id").and_then(Value::as_str) {
                a_ids.push(id.to_owned());
            }
            for p in to_o.on_event(name, data) {
                let v: Value = serde_json::from_str(&p).unwrap();
                for call in v.pointer("/choices/0/delta/tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(id) = call["id"].as_str() {
                        o_ids.push(id.to_owned());
                    }
                }
            }
        }
        let want: Vec<String> = case.calls().into_iter().map(|(id, _, _)| id).collect();
        prop_assert_eq!(&a_ids, &want);
        prop_assert_eq!(&o_ids, &want);
        prop_assert!(to_o.finish().is_empty(), "no usage chunk when the client did not ask");
    }

    #[test]
    fn failed_streams_end_with_response_failed(case in stream_case(), stop in any::<Index>()) {
        let chunks = case.chunks();
        let n = stop.index(chunks.len() + 1);
        let mut s = ChatToResponsesStream::new(ResponseMeta::new(&json!({}), "gpt-x"));
        let mut events: Vec<(&str, Value)> = chunks[..n].iter().flat_map(|c| s.on_chunk(c)).collect();
        events.extend(s.fail("upstream_error", "boom \"quoted\""));
        for (i, (_, d)) in events.iter().enumerate() {
            prop_assert_eq!(d["sequence_number"].as_u64(), Some(i as u64));
        }
        let (name, data) = events.last().unwrap();
        prop_assert_eq!(*name, "response.failed");
        prop_assert_eq!(data["response"]["status"].as_str(), Some("failed"));
        prop_assert_eq!(data["response"]["error"]["code"].as_str(), Some("upstream_error"));
        prop_assert_eq!(data["response"]["error"]["message"].as_str(), Some("boom \"quoted\""));
        prop_assert_eq!(events.iter().filter(|(n, _)| *n == "response.created").count(), 1);
    }
}

// ---------------------------------------------------------------------------------------
// 4. OpenAI chat request -> Anthropic -> OpenAI
// ---------------------------------------------------------------------------------------

/// A tool call in a request: (id, name, arguments, the result sent back).
type RequestCall = (String, String, Value, String);

#[derive(Debug, Clone)]
struct Exchange {
    user: String,
    /// The assistant's text and calls (at least one of the two), with each call's result.
    assistant: Option<(Option<String>, Vec<RequestCall>)>,
}

#[derive(Debug, Clone)]
struct ChatReq {
    system: Vec<String>,
    exchanges: Vec<Exchange>,
    tools: Vec<(String, Option<String>, Value)>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    max_tokens: Option<u64>,
    temperature: Option<f64>,
    stop: Vec<String>,
    stream: Option<bool>,
    user: Option<String>,
}

fn exchange() -> impl Strategy<Value = Exchange> {
    let call = (clean_id(), tool_name(), json_object(), text(0));
    let assistant = (prop::option::of(text(1)), prop::collection::vec(call, 0..3))
        .prop_filter("the assistant says something", |(t, c)| t.is_some() || !c.is_empty());
    (text(1), prop::option::of(assistant)).prop_map(|(user, assistant)| Exchange { user, assistant })
}

fn chat_req() -> impl Strategy<Value = ChatReq> {
    (
        prop::collection::vec(text(1), 0..3),
        prop::collection::vec(exchange(), 1..5),
        prop::collection::vec((tool_name(), prop::option::of(text(0)), json_object()), 0..3),
        prop::option::of(prop_oneof![
            Just(json!("auto")),
            Just(json!("none")),
            Just(json!("required")),
            tool_name().prop_map(|n| json!({"type": "function", "function": {"name": n}})),
        ]),
        prop::option::of(any::<bool>()),
        prop::option::of(0u64..1_000_000),
        prop::option::of(prop::sample::select(vec![0.0, 0.25, 0.5, 1.0])),
        (prop::collection::vec(text(1), 0..3), prop::option::of(any::<bool>()), prop::option::of(text(1))),
    )
        .prop_map(
            |(
                system,
                exchanges,
                tools,
                tool_choice,
                parallel_tool_calls,
                max_tokens,
                temperature,
                (stop, stream, user),
            )| {
                ChatReq {
                    system,
                    exchanges,
                    tools,
                    tool_choice,
                    parallel_tool_calls,
                    max_tokens,
                    temperature,
                    stop,
                    stream,
                    user,
                }
            },
        )
}

impl ChatReq {
    fn to_json(&self) -> Value {
        let mut messages: Vec<Value> =
            self.system.iter().map(|s| json!({"role": "system", "content": s})).collect();
        for e in &self.exchanges {
            messages.push(json!({"role": "user", "content": e.user}));
            if let Some((text, calls)) = &e.assistant {
                let mut m = json!({"role": "assistant", "content": text});
                if !calls.is_empty() {
                    m["tool_calls"] = calls
                        .iter()
                        .map(|(id, name, args, _)| {
                            json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}})
                        })
                        .collect();
                }
                messages.push(m);
                for (id, _, _, result) in calls {
                    messages.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
                }
            }
        }
        let mut r = json!({"model": "gpt-x", "messages": messages});
        if !self.tools.is_empty() {
            r["tools"] = self
                .tools
                .iter()
                .map(|(name, description, parameters)| {
                    let mut f = json!({"name": name, "parameters": parameters});
                    if let Some(d) = description {
                        f["description"] = json!(d);
                    }
                    json!({"type": "function", "function": f})
                })
                .collect();
        }
        let mut set = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                r[k] = v;
            }
        };
        set("tool_choice", self.tool_choice.clone());
        set("parallel_tool_calls", self.parallel_tool_calls.map(Value::from));
        set("max_tokens", self.max_tokens.map(Value::from));
        set("temperature", self.temperature.map(Value::from));
        set("stop", (!self.stop.is_empty()).then(|| json!(self.stop)));
        set("stream", self.stream.map(Value::from));
        set("user", self.user.clone().map(Value::from));
        r
    }

    /// The conversation both wires can express: texts by role, calls (arguments parsed),
    /// tool results, in order.
    fn atoms(&self) -> Vec<Atom> {
        let mut out = Vec::new();
        for e in &self.exchanges {
            out.push(Atom::Text { role: "user".into(), text: e.user.clone() });
            if let Some((text, calls)) = &e.assistant {
                if let Some(t) = text {
                    out.push(Atom::Text { role: "assistant".into(), text: t.clone() });
                }
                out.extend(calls.iter().map(|(id, name, args, _)| Atom::Call {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: args.to_string(),
                }));
                out.extend(
                    calls
                        .iter()
                        .map(|(id, _, _, result)| Atom::Tool { id: id.clone(), text: result.clone() }),
                );
            }
        }
        out
    }
}

/// `atoms` with call arguments re-encoded from their parsed form (key order and spacing
/// are not part of the arguments' meaning).
fn canonical(atoms: Vec<Atom>) -> Vec<Atom> {
    atoms
        .into_iter()
        .map(|a| match a {
            Atom::Call { id, name, arguments } => {
                let parsed: Value = serde_json::from_str(&arguments).unwrap();
                Atom::Call { id, name, arguments: parsed.to_string() }
            }
            other => other,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn chat_requests_survive_anthropic_and_back(req in chat_req()) {
        let body = req.to_json();
        let anthropic = openai_request_to_anthropic(&body, "claude-x", 4096)
            .map_err(|e| TestCaseError::fail(format!("{e} for {body:#}")))?;
        // Anthropic's turns alternate, starting with the user.
        let roles: Vec<&str> = anthropic["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        prop_assert_eq!(roles.first().copied(), Some("user"));
        prop_assert!(roles.windows(2).all(|w| w[0] != w[1]), "{:?}", roles);
        let back = anthropic_request_to_openai(&anthropic, "gpt-x")
            .map_err(|e| TestCaseError::fail(format!("{e} for {anthropic:#}")))?;

        let msgs = back["messages"].as_array().unwrap();
        let (system, rest): (Vec<&Value>, Vec<&Value>) = msgs.iter().partition(|m| m["role"] == "system");
        let system: Vec<&str> = system.iter().map(|m| m["content"].as_str().unwrap()).collect();
        let want_system = req.system.join("\n\n");
        prop_assert_eq!(system, if want_system.is_empty() { vec![] } else { vec![want_system.as_str()] });
        let conversation = json!({"messages": rest});
        prop_assert_eq!(canonical(chat_atoms(&conversation)), canonical(req.atoms()), "{:#}", back);

        prop_assert_eq!(back["max_tokens"].as_u64(), Some(req.max_tokens.unwrap_or(4096)));
        prop_assert_eq!(back.get("temperature").and_then(Value::as_f64), req.temperature);
        let stop: Vec<&str> = back.get("stop").and_then(Value::as_array).into_iter().flatten().map(|s| s.as_str().unwrap()).collect();
        prop_assert_eq!(stop, req.stop.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(back.get("stream").and_then(Value::as_bool), req.stream);
        prop_assert_eq!(back.get("stream_options").is_some(), req.stream == Some(true));
        prop_assert_eq!(back.get("user").and_then(Value::as_str), req.user.as_deref());
        let tools: Vec<(String, Option<String>, Value)> = back.get("tools").and_then(Value::as_array).into_iter().flatten()
            .map(|t| {
                let f = &t["function"];
                (f["name"].as_str().unwrap().into(), f.get("description").and_then(Value::as_str).map(str::to_owned), f["parameters"].clone())
            })
            .collect();
        prop_assert_eq!(&tools, &req.tools);
        if req.tools.is_empty() {
            prop_assert!(back.get("tool_choice").is_none() && back.get("parallel_tool_calls").is_none());
        } else {
            // `parallel_tool_calls: false` travels with a tool choice (auto if none was given),
            // except with `none`, which Anthropic takes alone.
            let none = req.tool_choice == Some(json!("none"));
            let want_choice = match (&req.tool_choice, req.parallel_tool_calls) {
                (Some(c), _) => Some(c.clone()),
                (None, Some(false)) => Some(json!("auto")),
                (None, _) => None,
            };
            prop_assert_eq!(back.get("tool_choice").cloned(), want_choice);
            let want_parallel = (req.parallel_tool_calls == Some(false) && !none).then_some(false);
            prop_assert_eq!(back.get("parallel_tool_calls").and_then(Value::as_bool), want_parallel);
        }
    }

    #[test]
    fn any_call_id_still_matches_its_result(
        ids in prop::collection::vec(prop_oneof![clean_id(), text(0)], 1..4),
        args in json_object(),
    ) {
        // Anthropic takes only [A-Za-z0-9_-] in ids: whatever an upstream used, a call and its
        // result must still carry the same id on the other side.
        let calls: Vec<Value> = ids.iter().map(|id| json!({"id": id, "type": "function", "function": {"name": "f", "arguments": args.to_string()}})).collect();
        let mut messages = vec![json!({"role": "user", "content": "go"}), json!({"role": "assistant", "content": null, "tool_calls": calls})];
        messages.extend(ids.iter().map(|id| json!({"role": "tool", "tool_call_id": id, "content": "ok"})));
        let a = openai_request_to_anthropic(&json!({"messages": messages}), "claude-x", 16).unwrap();
        let uses: Vec<&str> = a["messages"][1]["content"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
        let results: Vec<&str> = a["messages"][2]["content"].as_array().unwrap().iter().map(|b| b["tool_use_id"].as_str().unwrap()).collect();
        prop_assert_eq!(&uses, &results);
        for (id, sent) in ids.iter().zip(&uses) {
            prop_assert!(!sent.is_empty() && sent.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{:?}", sent);
            if id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') && !id.is_empty() {
                prop_assert_eq!(id.as_str(), *sent);
            }
        }
    }
}

#[test]
fn responses_request_example_decodes() {
    // A fixed example, so that a broken strategy cannot hide a broken translator.
    let body = json!({"model": "m", "instructions": "be \"brief\"", "input": [
        {"role": "user", "content": "weather in Zürich? 🦀"},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Zürich\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny\n"},
    ]});
    let chat = responses_request_to_chat(&body, &[]).unwrap();
    assert_eq!(
        chat_atoms(&chat),
        vec![
            Atom::Text { role: "system".into(), text: "be \"brief\"".into() },
            Atom::Text { role: "user".into(), text: "weather in Zürich? 🦀".into() },
            Atom::Call {
                id: "c1".into(), name: "weather".into(), arguments: "{\"city\":\"Zürich\"}".into()
            },
            Atom::Tool { id: "c1".into(), text: "sunny\n".into() },
        ]
    );
}
