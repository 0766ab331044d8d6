//! Request bodies, both ways.

use serde_json::{Map, Value, json};

use super::{TranslateError, as_count, err, present};

/// Anthropic's default for tools that take no arguments.
fn empty_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

// ---------------------------------------------------------------------------------------
// OpenAI -> Anthropic
// ---------------------------------------------------------------------------------------

/// OpenAI chat request -> Anthropic messages request. `upstream_model` replaces `model`.
/// `default_max_tokens` is used when the OpenAI request has neither `max_completion_tokens`
/// nor `max_tokens` (Anthropic requires `max_tokens`).
pub fn openai_request_to_anthropic(
    req: &Value,
    upstream_model: &str,
    default_max_tokens: u64,
) -> Result<Value, TranslateError> {
    let req = req.as_object().ok_or_else(|| err("body", "must be a JSON object"))?;
    if let Some(n) = present(req, "n") {
        match as_count(n) {
            Some(0 | 1) => {}
            Some(_) => {
                return Err(err("n", "only one choice (n=1) can be served by an Anthropic upstream"));
            }
            None => return Err(err("n", "must be a positive integer")),
        }
    }

    let messages =
        req.get("messages").and_then(Value::as_array).ok_or_else(|| err("messages", "must be an array"))?;
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, msg) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let msg = msg.as_object().ok_or_else(|| err(&path, "must be an object"))?;
        let role = msg
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("{path}.role"), "must be a string"))?;
        match role {
            "system" | "developer" => system.push(openai_system_text(msg.get("content"), &path)?),
            "user" => push_turn(&mut turns, "user", openai_user_content(msg, &path)?),
            "assistant" => push_turn(&mut turns, "assistant", openai_assistant_content(msg, &path)?),
            "tool" => push_turn(&mut turns, "user", Content::Blocks(vec![openai_tool_result(msg, &path)?])),
            "function" => {
                return Err(err(
                    format!("{path}.role"),
                    "deprecated function messages are not supported; use tools",
                ));
            }
            other => {
                return Err(err(format!("{path}.role"), format!("unsupported role {other:?}")));
            }
        }
    }
    if turns.is_empty() {
        return Err(err("messages", "must contain at least one user or assistant message"));
    }
    if let Some(instruction) = json_instruction(req)? {
        system.push(instruction);
    }

    let mut out = Map::new();
    out.insert("model".into(), upstream_model.into());
    out.insert("max_tokens".into(), openai_max_tokens(req)?.unwrap_or(default_max_tokens).into());
    if !system.is_empty() {
        out.insert("system".into(), system.join("\n\n").into());
    }
    out.insert("messages".into(), turns.into_iter().map(Turn::into_value).collect());
    if let Some(stop) = present(req, "stop") {
        let stop = match stop {
            Value::String(s) => vec![Value::String(s.clone())],
            Value::Array(items) => strings(items, "stop")?,
            _ => return Err(err("stop", "must be a string or an array of strings")),
        };
        if !stop.is_empty() {
            out.insert("stop_sequences".into(), Value::Array(stop));
        }
    }
    if let Some(t) = number(req, "temperature")? {
        // NB: OpenAI's range is 0..=2, Anthropic's 0..=1.
        out.insert("temperature".into(), t.clamp(0.0, 1.0).into());
    }
    if let Some(p) = number(req, "top_p")? {
        out.insert("top_p".into(), p.into());
    }
    let tools = openai_tools(req)?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = openai_tool_choice(req)? {
            out.insert("tool_choice".into(), choice);
        }
    }
    if let Some(stream) = present(req, "stream") {
        let stream = stream.as_bool().ok_or_else(|| err("stream", "must be a boolean"))?;
        out.insert("stream".into(), stream.into());
    }
    // `safety_identifier` is OpenAI's successor to `user`.
    for key in ["user", "safety_identifier"] {
        if let Some(user) = present(req, key) {
            let user = user.as_str().ok_or_else(|| err(key, "must be a string"))?;
            if !user.is_empty() {
                out.insert("metadata".into(), json!({ "user_id": user }));
                break;
            }
        }
    }
    Ok(Value::Object(out))
}

/// Content of one Anthropic message being assembled.
enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

impl Content {
    fn into_blocks(self) -> Vec<Value> {
        match self {
            Self::Text(s) if s.is_empty() => Vec::new(),
            Self::Text(s) => vec![text_block(s)],
            Self::Blocks(blocks) => blocks,
        }
    }
}

struct Turn {
    role: &'static str,
    content: Content,
}

impl Turn {
    fn into_value(self) -> Value {
        let content = match self.content {
            Content::Text(s) => Value::String(s),
            Content::Blocks(mut blocks) => {
                if self.role == "user" {
                    // NB: Anthropic wants the tool results first in a user message, and the
                    // sort is stable, so everything else keeps its order.
                    blocks.sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
                }
                Value::Array(blocks)
            }
        };
        json!({ "role": self.role, "content": content })
    }
}

/// Appends a message, merging it into the previous one when both have the same role:
/// Anthropic wants user and assistant turns to alternate.
fn push_turn(turns: &mut Vec<Turn>, role: &'static str, content: Content) {
    match turns.last_mut() {
        Some(last) if last.role == role => {
            let previous = std::mem::replace(&mut last.content, Content::Blocks(Vec::new()));
            let mut blocks = previous.into_blocks();
            blocks.extend(content.into_blocks());
            last.content = Content::Blocks(blocks);
        }
        _ => turns.push(Turn { role, content }),
    }
}

fn text_block(text: String) -> Value {
    json!({ "type": "text", "text": text })
}

/// The text of a system or developer message: a string or text parts.
fn openai_system_text(content: Option<&Value>, path: &str) -> Result<String, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let part_path = format!("{path}.content[{j}]");
                match part_type(part, &part_path)? {
                    "text" => texts.push(part_text(part, &part_path)?),
                    other => {
                        return Err(err(
                            format!("{part_path}.type"),
                            format!("unsupported content part type {other:?} in a system message"),
                        ));
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        _ => Err(err(format!("{path}.content"), "must be a string or an array of text parts")),
    }
}

fn part_type<'a>(part: &'a Value, path: &str) -> Result<&'a str, TranslateError> {
    part.get("type").and_then(Value::as_str).ok_or_else(|| err(format!("{path}.type"), "must be a string"))
}

fn part_text(part: &Value, path: &str) -> Result<String, TranslateError> {
    part.get("text")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| err(format!("{path}.text"), "must be a string"))
}

fn openai_user_content(msg: &Map<String, Value>, path: &str) -> Result<Content, TranslateError> {
    match msg.get("content") {
        Some(Value::String(s)) => Ok(Content::Text(s.clone())),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let part_path = format!("{path}.content[{j}]");
                match part_type(part, &part_path)? {
                    "text" => {
                        let text = part_text(part, &part_path)?;
                        if !text.is_empty() {
                            blocks.push(text_block(text));
                        }
                    }
                    "image_url" => blocks.push(openai_image(part, &part_path)?),
                    "file" => blocks.push(openai_file(part, &part_path)?),
                    other => {
                        return Err(err(
                            format!("{part_path}.type"),
                            format!("content part type {other:?} is not supported by Anthropic"),
                        ));
                    }
                }
            }
            Ok(Content::Blocks(blocks))
        }
        _ => Err(err(format!("{path}.content"), "must be a string or an array of content parts")),
    }
}

/// An `image_url` part as an Anthropic image block: data URLs become base64 sources,
/// http(s) URLs URL sources.
fn openai_image(part: &Value, path: &str) -> Result<Value, TranslateError> {
    let (url, url_path) = match part.get("image_url") {
        Some(Value::String(url)) => (url.as_str(), format!("{path}.image_url")),
        Some(Value::Object(image)) => (
            image
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| err(format!("{path}.image_url.url"), "must be a string"))?,
            format!("{path}.image_url.url"),
        ),
        _ => {
            return Err(err(format!("{path}.image_url"), "must be an object with a url"));
        }
    };
    if let Some(rest) = strip_prefix_ignore_case(url, "data:") {
        let (media_type, data) = parse_base64_data_url(rest)
            .ok_or_else(|| err(&url_path, "data URL must have the form data:<media type>;base64,<data>"))?;
        return Ok(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type, "data": data },
        }));
    }
    if strip_prefix_ignore_case(url, "https://").is_some()
        || strip_prefix_ignore_case(url, "http://").is_some()
    {
        return Ok(json!({ "type": "image", "source": { "type": "url", "url": url } }));
    }
    Err(err(url_path, "must be an http(s) URL or a base64 data URL"))
}

/// A `file` part with inline PDF data as an Anthropic document block.
fn openai_file(part: &Value, path: &str) -> Result<Value, TranslateError> {
    let data_path = format!("{path}.file.file_data");
    let Some(file_data) = part.get("file").and_then(|f| f.get("file_data")).and_then(Value::as_str) else {
        return Err(err(
            data_path,
            "only inline file data can be sent to Anthropic (file_id is not supported)",
        ));
    };
    let (media_type, data) = strip_prefix_ignore_case(file_data, "data:")
        .and_then(parse_base64_data_url)
        .ok_or_else(|| err(&data_path, "must be a data:application/pdf;base64,... URL"))?;
    if media_type != "application/pdf" {
        return Err(err(
            data_path,
            format!("file type {media_type:?} is not supported by Anthropic; only PDFs are"),
        ));
    }
    Ok(json!({
        "type": "document",
        "source": { "type": "base64", "media_type": media_type, "data": data },
    }))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| s.get(prefix.len()..)).flatten()
}

/// `<media type>[;params];base64,<data>` (after `data:`) → (media type, data).
fn parse_base64_data_url(rest: &str) -> Option<(&str, &str)> {
    let (meta, data) = rest.split_once(',')?;
    let mut params = meta.split(';');
    let media_type = params.next()?.trim();
    let is_base64 = params.any(|p| p.trim().eq_ignore_ascii_case("base64"));
    (is_base64 && !media_type.is_empty() && !data.is_empty()).then_some((media_type, data))
}

fn openai_assistant_content(msg: &Map<String, Value>, path: &str) -> Result<Content, TranslateError> {
    let mut blocks = Vec::new();
    let mut plain_text = None;
    match msg.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            plain_text = Some(s.clone());
            if !s.is_empty() {
                blocks.push(text_block(s.clone()));
            }
        }
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let part_path = format!("{path}.content[{j}]");
                let text = match part_type(part, &part_path)? {
                    "text" => part_text(part, &part_path)?,
                    "refusal" => part
                        .get("refusal")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| err(format!("{part_path}.refusal"), "must be a string"))?,
                    other => {
                        return Err(err(
                            format!("{part_path}.type"),
                            format!("unsupported content part type {other:?} in an assistant message"),
                        ));
                    }
                };
                if !text.is_empty() {
                    blocks.push(text_block(text));
                }
            }
        }
        Some(_) => {
            return Err(err(
                format!("{path}.content"),
                "must be a string, an array of content parts, or null",
            ));
        }
    }
    if present(msg, "function_call").is_some() {
        return Err(err(
            format!("{path}.function_call"),
            "deprecated function_call is not supported; use tool_calls",
        ));
    }
    let tool_calls = match present(msg, "tool_calls") {
        None => &[][..],
        Some(Value::Array(calls)) => calls.as_slice(),
        Some(_) => {
            return Err(err(format!("{path}.tool_calls"), "must be an array"));
        }
    };
    if tool_calls.is_empty()
        && let Some(text) = plain_text
    {
        return Ok(Content::Text(text));
    }
    for (k, call) in tool_calls.iter().enumerate() {
        blocks.push(openai_tool_call(call, &format!("{path}.tool_calls[{k}]"))?);
    }
    Ok(Content::Blocks(blocks))
}

/// One assistant `tool_calls` entry as an Anthropic `tool_use` block.
fn openai_tool_call(call: &Value, path: &str) -> Result<Value, TranslateError> {
    if let Some(kind) = call.get("type").filter(|t| !t.is_null())
        && kind.as_str() != Some("function")
    {
        return Err(err(format!("{path}.type"), "only function tool calls are supported"));
    }
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{path}.id"), "must be a string"))?;
    let function =
        call.get("function").ok_or_else(|| err(format!("{path}.function"), "must be an object"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{path}.function.name"), "must be a string"))?;
    let args_path = format!("{path}.function.arguments");
    let input = match function.get("arguments") {
        // NB: some models emit "" for tools without parameters.
        None | Some(Value::Null) => json!({}),
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .map_err(|e| err(&args_path, format!("is not valid JSON: {e}")))?,
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(err(args_path, "must be a string of JSON")),
    };
    if !input.is_object() {
        return Err(err(args_path, "must encode a JSON object"));
    }
    Ok(json!({
        "type": "tool_use",
        "id": anthropic_tool_id(id),
        "name": name,
        "input": input,
    }))
}

/// A `tool` message as an Anthropic `tool_result` block.
fn openai_tool_result(msg: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let id = msg
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{path}.tool_call_id"), "must be a string"))?;
    let content = match msg.get("content") {
        None | Some(Value::Null) => Value::String(String::new()),
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let part_path = format!("{path}.content[{j}]");
                match part_type(part, &part_path)? {
                    "text" => blocks.push(text_block(part_text(part, &part_path)?)),
                    other => {
                        return Err(err(
                            format!("{part_path}.type"),
                            format!("unsupported content part type {other:?} in a tool message"),
                        ));
                    }
                }
            }
            Value::Array(blocks)
        }
        Some(_) => {
            return Err(err(format!("{path}.content"), "must be a string or an array of text parts"));
        }
    };
    Ok(json!({
        "type": "tool_result",
        "tool_use_id": anthropic_tool_id(id),
        "content": content,
    }))
}

/// Anthropic accepts only `[A-Za-z0-9_-]` in tool ids; OpenAI-compatible upstreams are less
/// strict (e.g. `functions.get_weather:0`). The mapping is deterministic, so a call and
/// its result still match after it.
fn anthropic_tool_id(id: &str) -> String {
    let clean: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if clean.is_empty() { "toolu_".to_owned() } else { clean }
}

fn openai_max_tokens(req: &Map<String, Value>) -> Result<Option<u64>, TranslateError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        if let Some(v) = present(req, key) {
            return as_count(v).map(Some).ok_or_else(|| err(key, "must be a non-negative integer"));
        }
    }
    Ok(None)
}

fn number(req: &Map<String, Value>, key: &str) -> Result<Option<f64>, TranslateError> {
    present(req, key).map(|v| v.as_f64().ok_or_else(|| err(key, "must be a number"))).transpose()
}

fn strings(items: &[Value], path: &str) -> Result<Vec<Value>, TranslateError> {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            Value::String(_) => Ok(s.clone()),
            _ => Err(err(format!("{path}[{i}]"), "must be a string")),
        })
        .collect()
}

fn openai_tools(req: &Map<String, Value>) -> Result<Vec<Value>, TranslateError> {
    let tools = match present(req, "tools") {
        None => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(err("tools", "must be an array")),
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                return Err(err(
                    format!("{path}.type"),
                    format!("tool type {other:?} is not supported by Anthropic"),
                ));
            }
            None => return Err(err(format!("{path}.type"), "must be a string")),
        }
        let function = tool
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| err(format!("{path}.function"), "must be an object"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("{path}.function.name"), "must be a string"))?;
        let schema = match present(function, "parameters") {
            None => empty_schema(),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(err(format!("{path}.function.parameters"), "must be an object"));
            }
        };
        let mut def = Map::new();
        def.insert("name".into(), name.into());
        match present(function, "description") {
            None => {}
            Some(Value::String(d)) => {
                def.insert("description".into(), d.clone().into());
            }
            Some(_) => {
                return Err(err(format!("{path}.function.description"), "must be a string"));
            }
        }
        def.insert("input_schema".into(), schema);
        out.push(Value::Object(def));
    }
    Ok(out)
}

fn openai_tool_choice(req: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let mut choice = match present(req, "tool_choice") {
        None => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "none" => Some(json!({"type": "none"})),
            "required" => Some(json!({"type": "any"})),
            other => {
                return Err(err("tool_choice", format!("unsupported tool_choice {other:?}")));
            }
        },
        Some(Value::Object(obj)) => match obj.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = obj
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| err("tool_choice.function.name", "must be a string"))?;
                Some(json!({"type": "tool", "name": name}))
            }
            Some(other) => {
                return Err(err(
                    "tool_choice.type",
                    format!("tool_choice type {other:?} is not supported by Anthropic"),
                ));
            }
            None => return Err(err("tool_choice.type", "must be a string")),
        },
        Some(_) => return Err(err("tool_choice", "must be a string or an object")),
    };
    match present(req, "parallel_tool_calls") {
        None | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            let choice = choice.get_or_insert_with(|| json!({"type": "auto"}));
            // NB: `{"type": "none"}` takes no other field.
            if let Some(obj) = choice.as_object_mut()
                && obj.get("type") != Some(&json!("none"))
            {
                obj.insert("disable_parallel_tool_use".into(), true.into());
            }
        }
        Some(_) => return Err(err("parallel_tool_calls", "must be a boolean")),
    }
    Ok(choice)
}

/// For `response_format` json_object/json_schema, the instruction appended to the system
/// prompt: Anthropic has no JSON mode in the Messages API this targets.
fn json_instruction(req: &Map<String, Value>) -> Result<Option<String>, TranslateError> {
    let Some(format) = present(req, "response_format") else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(
            "Respond with only a valid JSON object, without any other text or Markdown code fences."
                .to_owned(),
        )),
        Some("json_schema") => {
            let spec = format
                .get("json_schema")
                .and_then(Value::as_object)
                .ok_or_else(|| err("response_format.json_schema", "must be an object"))?;
            let schema = present(spec, "schema").cloned().unwrap_or_else(|| json!({}));
            Ok(Some(format!(
                "Respond with only a valid JSON value that conforms to the following JSON Schema, \
                 without any other text or Markdown code fences.\n\nJSON Schema:\n{schema}"
            )))
        }
        Some(other) => Err(err("response_format.type", format!("unsupported response format {other:?}"))),
        None => Err(err("response_format.type", "must be a string")),
    }
}

// ---------------------------------------------------------------------------------------
// Anthropic -> OpenAI
// ---------------------------------------------------------------------------------------

/// Anthropic messages request -> OpenAI chat request. `upstream_model` replaces `model`.
/// A streaming request also asks for usage (`stream_options.include_usage`), which the
/// gateway needs for billing.
pub fn anthropic_request_to_openai(req: &Value, upstream_model: &str) -> Result<Value, TranslateError> {
    let req = req.as_object().ok_or_else(|| err("body", "must be a JSON object"))?;
    let mut messages = Vec::new();
    if let Some(system) = present(req, "system") {
        let text = anthropic_system_text(system)?;
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let input =
        req.get("messages").and_then(Value::as_array).ok_or_else(|| err("messages", "must be an array"))?;
    for (i, msg) in input.iter().enumerate() {
        let path = format!("messages[{i}]");
        let msg = msg.as_object().ok_or_else(|| err(&path, "must be an object"))?;
        let content = msg.get("content").filter(|c| c.is_string() || c.is_array()).ok_or_else(|| {
            err(format!("{path}.content"), "must be a string or an array of content blocks")
        })?;
        match msg.get("role").and_then(Value::as_str) {
            Some("user") => anthropic_user_message(content, &path, &mut messages)?,
            Some("assistant") => messages.push(anthropic_assistant_message(content, &path)?),
            Some(other) => {
                return Err(err(format!("{path}.role"), format!("unsupported role {other:?}")));
            }
            None => return Err(err(format!("{path}.role"), "must be a string")),
        }
    }

    let mut out = Map::new();
    out.insert("model".into(), upstream_model.into());
    out.insert("messages".into(), Value::Array(messages));
    if let Some(max) = present(req, "max_tokens") {
        let max = as_count(max).ok_or_else(|| err("max_tokens", "must be a non-negative integer"))?;
        out.insert("max_tokens".into(), max.into());
    }
    if let Some(stop) = present(req, "stop_sequences") {
        let stop = stop.as_array().ok_or_else(|| err("stop_sequences", "must be an array of strings"))?;
        let stop = strings(stop, "stop_sequences")?;
        if !stop.is_empty() {
            out.insert("stop".into(), Value::Array(stop));
        }
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = number(req, key)? {
            out.insert(key.into(), v.into());
        }
    }
    let tools = anthropic_tools(req)?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        // NB: OpenAI rejects tool_choice and parallel_tool_calls without tools.
        if let Some(choice) = present(req, "tool_choice") {
            let choice = choice.as_object().ok_or_else(|| err("tool_choice", "must be an object"))?;
            let mapped = match choice.get("type").and_then(Value::as_str) {
                Some("auto") => json!("auto"),
                Some("any") => json!("required"),
                Some("none") => json!("none"),
                Some("tool") => {
                    let name = choice
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| err("tool_choice.name", "must be a string"))?;
                    json!({"type": "function", "function": {"name": name}})
                }
                Some(other) => {
                    return Err(err("tool_choice.type", format!("unsupported tool_choice type {other:?}")));
                }
                None => return Err(err("tool_choice.type", "must be a string")),
            };
            out.insert("tool_choice".into(), mapped);
            if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
                out.insert("parallel_tool_calls".into(), false.into());
            }
        }
    }
    if let Some(user) =
        req.get("metadata").and_then(|m| m.get("user_id")).and_then(Value::as_str).filter(|u| !u.is_empty())
    {
        out.insert("user".into(), user.into());
    }
    if let Some(stream) = present(req, "stream") {
        let stream = stream.as_bool().ok_or_else(|| err("stream", "must be a boolean"))?;
        out.insert("stream".into(), stream.into());
        if stream {
            out.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    Ok(Value::Object(out))
}

fn anthropic_system_text(system: &Value) -> Result<String, TranslateError> {
    match system {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                let path = format!("system[{i}]");
                match part_type(block, &path)? {
                    "text" => texts.push(part_text(block, &path)?),
                    other => {
                        return Err(err(
                            format!("{path}.type"),
                            format!("unsupported system block type {other:?}"),
                        ));
                    }
                }
            }
            Ok(texts.join("\n\n"))
        }
        _ => Err(err("system", "must be a string or an array of text blocks")),
    }
}

/// One Anthropic user message as OpenAI messages: a `tool` message per tool result, then
/// a user message with the rest.
fn anthropic_user_message(content: &Value, path: &str, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let blocks = match content {
        Value::Array(blocks) => blocks,
        other => {
            out.push(json!({"role": "user", "content": other.clone()}));
            return Ok(());
        }
    };
    let mut parts = Vec::new();
    let mut had_tool_results = false;
    for (j, block) in blocks.iter().enumerate() {
        let block_path = format!("{path}.content[{j}]");
        match part_type(block, &block_path)? {
            "text" => parts.push(json!({"type": "text", "text": part_text(block, &block_path)?})),
            "image" => parts.push(anthropic_image(block, &block_path)?),
            "document" => parts.push(anthropic_document(block, &block_path)?),
            "tool_result" => {
                had_tool_results = true;
                let id = block
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err(format!("{block_path}.tool_use_id"), "must be a string"))?;
                // NB: OpenAI tool messages hold text only, so images in a result travel in
                // the user message that follows the tool messages.
                let text = anthropic_tool_result_text(block, &block_path, &mut parts)?;
                out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            other => {
                return Err(err(
                    format!("{block_path}.type"),
                    format!("content block type {other:?} is not supported by OpenAI"),
                ));
            }
        }
    }
    let content = match parts.as_slice() {
        [] if had_tool_results => return Ok(()),
        [] => Value::String(String::new()),
        [single] if single.get("type") == Some(&json!("text")) => {
            single.get("text").cloned().unwrap_or_default()
        }
        _ => Value::Array(parts),
    };
    out.push(json!({"role": "user", "content": content}));
    Ok(())
}

fn anthropic_tool_result_text(
    block: &Value,
    path: &str,
    images: &mut Vec<Value>,
) -> Result<String, TranslateError> {
    match block.get("content") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(inner)) => {
            let mut texts = Vec::with_capacity(inner.len());
            for (k, item) in inner.iter().enumerate() {
                let item_path = format!("{path}.content[{k}]");
                match part_type(item, &item_path)? {
                    "text" => texts.push(part_text(item, &item_path)?),
                    "image" => images.push(anthropic_image(item, &item_path)?),
                    other => {
                        return Err(err(
                            format!("{item_path}.type"),
                            format!("tool result block type {other:?} is not supported by OpenAI"),
                        ));
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        Some(_) => Err(err(format!("{path}.content"), "must be a string or an array of content blocks")),
    }
}

fn anthropic_source<'a>(
    block: &'a Value,
    path: &str,
) -> Result<(&'a Map<String, Value>, &'a str), TranslateError> {
    let source = block
        .get("source")
        .and_then(Value::as_object)
        .ok_or_else(|| err(format!("{path}.source"), "must be an object"))?;
    let kind = source
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{path}.source.type"), "must be a string"))?;
    Ok((source, kind))
}

fn source_str<'a>(source: &'a Map<String, Value>, key: &str, path: &str) -> Result<&'a str, TranslateError> {
    source
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{path}.source.{key}"), "must be a string"))
}

fn anthropic_image(block: &Value, path: &str) -> Result<Value, TranslateError> {
    let (source, kind) = anthropic_source(block, path)?;
    let url = match kind {
        "base64" => format!(
            "data:{};base64,{}",
            source_str(source, "media_type", path)?,
            source_str(source, "data", path)?
        ),
        "url" => source_str(source, "url", path)?.to_owned(),
        other => {
            return Err(err(
                format!("{path}.source.type"),
                format!("image source type {other:?} is not supported by OpenAI"),
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// A document block: inline PDFs become file parts, plain-text documents text parts.
fn anthropic_document(block: &Value, path: &str) -> Result<Value, TranslateError> {
    let (source, kind) = anthropic_source(block, path)?;
    match kind {
        "base64" => {
            let media_type = source_str(source, "media_type", path)?;
            let data = source_str(source, "data", path)?;
            let mut file = Map::new();
            file.insert("file_data".into(), format!("data:{media_type};base64,{data}").into());
            if let Some(title) = block.get("title").and_then(Value::as_str) {
                file.insert("filename".into(), title.into());
            }
            Ok(json!({"type": "file", "file": file}))
        }
        "text" => Ok(json!({"type": "text", "text": source_str(source, "data", path)?})),
        other => Err(err(
            format!("{path}.source.type"),
            format!("document source type {other:?} is not supported by OpenAI"),
        )),
    }
}

fn anthropic_assistant_message(content: &Value, path: &str) -> Result<Value, TranslateError> {
    let blocks = match content {
        Value::Array(blocks) => blocks,
        other => return Ok(json!({"role": "assistant", "content": other.clone()})),
    };
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let block_path = format!("{path}.content[{j}]");
        match part_type(block, &block_path)? {
            "text" => text.push_str(&part_text(block, &block_path)?),
            "tool_use" => {
                let id = block
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err(format!("{block_path}.id"), "must be a string"))?;
                let name = block
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err(format!("{block_path}.name"), "must be a string"))?;
                let input = block
                    .get("input")
                    .filter(|i| i.is_object())
                    .ok_or_else(|| err(format!("{block_path}.input"), "must be an object"))?;
                tool_calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": input.to_string()},
                }));
            }
            // Thinking is bound to Anthropic's signatures and means nothing elsewhere.
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(err(
                    format!("{block_path}.type"),
                    format!("content block type {other:?} is not supported by OpenAI"),
                ));
            }
        }
    }
    let mut msg = Map::new();
    msg.insert("role".into(), "assistant".into());
    let content = if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) };
    msg.insert("content".into(), content);
    if !tool_calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    Ok(Value::Object(msg))
}

fn anthropic_tools(req: &Map<String, Value>) -> Result<Vec<Value>, TranslateError> {
    let tools = match present(req, "tools") {
        None => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(err("tools", "must be an array")),
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let tool = tool.as_object().ok_or_else(|| err(&path, "must be an object"))?;
        match present(tool, "type").map(Value::as_str) {
            None | Some(Some("custom")) => {}
            Some(Some(other)) => {
                return Err(err(
                    format!("{path}.type"),
                    format!("server tool {other:?} is not supported by OpenAI"),
                ));
            }
            Some(None) => return Err(err(format!("{path}.type"), "must be a string")),
        }
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("{path}.name"), "must be a string"))?;
        let mut function = Map::new();
        function.insert("name".into(), name.into());
        match present(tool, "description") {
            None => {}
            Some(Value::String(d)) => {
                function.insert("description".into(), d.clone().into());
            }
            Some(_) => return Err(err(format!("{path}.description"), "must be a string")),
        }
        let schema = match present(tool, "input_schema") {
            None => empty_schema(),
            Some(s @ Value::Object(_)) => s.clone(),
            Some(_) => return Err(err(format!("{path}.input_schema"), "must be an object")),
        };
        function.insert("parameters".into(), schema);
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_anthropic(req: Value) -> Value {
        openai_request_to_anthropic(&req, "claude-up", 4096).unwrap()
    }

    fn to_openai(req: Value) -> Value {
        anthropic_request_to_openai(&req, "gpt-up").unwrap()
    }

    fn anthropic_err(req: Value) -> TranslateError {
        openai_request_to_anthropic(&req, "claude-up", 4096).unwrap_err()
    }

    #[test]
    fn openai_basic_fields_map_to_anthropic() {
        let out = to_anthropic(json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "user", "content": "Hi", "name": "bob"},
            ],
            "max_tokens": 100,
            "max_completion_tokens": 50,
            "temperature": 1.5,
            "top_p": 0.9,
            "stop": "END",
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "u-1",
            "n": 1,
            "logprobs": true,
            "frequency_penalty": 0.5,
            "seed": 7,
        }));
        assert_eq!(
            out,
            json!({
                "model": "claude-up",
                "system": "Be brief.\n\nUse French.",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 50,
                "temperature": 1.0,
                "top_p": 0.9,
                "stop_sequences": ["END"],
                "stream": true,
                "metadata": {"user_id": "u-1"},
            })
        );
    }

    #[test]
    fn openai_defaults_and_clamps() {
        let out = to_anthropic(json!({
            "messages": [{"role": "user", "content": "Hi"}],
            "temperature": -0.5,
            "stop": ["a", "b"],
        }));
        assert_eq!(out["max_tokens"], 4096);
        assert_eq!(out["temperature"], 0.0);
        assert_eq!(out["stop_sequences"], json!(["a", "b"]));
        assert!(out.get("system").is_none());
        assert!(out.get("stream").is_none());
        let out = to_anthropic(json!({
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 77,
            "temperature": 0.3,
        }));
        assert_eq!(out["max_tokens"], 77);
        assert_eq!(out["temperature"], 0.3);
    }

    #[test]
    fn openai_images_become_image_blocks() {
        let out = to_anthropic(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]}]}));
        assert_eq!(
            out["messages"],
            json!([{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ]}])
        );

        let e = anthropic_err(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "x"},
            {"type": "image_url", "image_url": {"url": "ftp://example.com/cat.jpg"}},
        ]}]}));
        assert_eq!(e.path, "messages[0].content[1].image_url.url");
        let e = anthropic_err(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}},
        ]}]}));
        assert_eq!(e.path, "messages[0].content[0].image_url.url");
        let e = anthropic_err(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": 3},
        ]}]}));
        assert_eq!(e.path, "messages[0].content[0].image_url");
    }

    #[test]
    fn openai_pdf_file_becomes_document_block() {
        let out = to_anthropic(json!({"messages": [{"role": "user", "content": [
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBER"}},
        ]}]}));
        assert_eq!(
            out["messages"][0]["content"][0],
            json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}})
        );
        let e = anthropic_err(json!({"messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_id": "file-1"}},
        ]}]}));
        assert_eq!(e.path, "messages[0].content[0].file.file_data");
    }

    fn openai_tool_conversation() -> Value {
        json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are a weather bot."},
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
                {"role": "user", "content": "Thanks! Which is warmer?"},
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "strict": true,
            }}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
        })
    }

    #[test]
    fn openai_tool_calls_and_results_map_to_blocks() {
        let out = to_anthropic(openai_tool_conversation());
        assert_eq!(out["system"], "You are a weather bot.");
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
                    {"type": "text", "text": "Thanks! Which is warmer?"},
                ]},
            ])
        );
        assert_eq!(
            out["tools"],
            json!([{"name": "get_weather", "description": "Current weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
        );
        assert_eq!(out["tool_choice"], json!({"type": "any", "disable_parallel_tool_use": true}));
    }

    #[test]
    fn tool_conversation_round_trips_semantically() {
        let original = openai_tool_conversation();
        let back = to_openai(to_anthropic(original.clone()));
        assert_eq!(back["model"], "gpt-up");
        let msgs = back["messages"].as_array().unwrap();
        let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "tool", "user"]);
        assert_eq!(msgs[0]["content"], "You are a weather bot.");
        assert_eq!(msgs[2]["content"], Value::Null);
        let calls = msgs[2]["tool_calls"].as_array().unwrap();
        let original_calls = original["messages"][2]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        for (call, orig) in calls.iter().zip(original_calls) {
            assert_eq!(call["id"], orig["id"]);
            assert_eq!(call["type"], "function");
            assert_eq!(call["function"]["name"], orig["function"]["name"]);
            let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
            let orig_args: Value =
                serde_json::from_str(orig["function"]["arguments"].as_str().unwrap()).unwrap();
            assert_eq!(args, orig_args);
        }
        assert_eq!(msgs[3], json!({"role": "tool", "tool_call_id": "call_1", "content": "18C"}));
        assert_eq!(msgs[4], json!({"role": "tool", "tool_call_id": "call_2", "content": "21C"}));
        assert_eq!(msgs[5], json!({"role": "user", "content": "Thanks! Which is warmer?"}));
        assert_eq!(back["tools"][0]["function"], {
            let mut f = original["tools"][0]["function"].clone();
            f.as_object_mut().unwrap().remove("strict");
            f
        });
        assert_eq!(back["tool_choice"], "required");
        assert_eq!(back["parallel_tool_calls"], false);
    }

    #[test]
    fn consecutive_same_role_messages_merge() {
        let out = to_anthropic(json!({"messages": [
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "a"},
            {"role": "assistant", "content": [{"type": "text", "text": "b"}, {"type": "refusal", "refusal": "no"}]},
            {"role": "user", "content": "three"},
        ]}));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "a"}, {"type": "text", "text": "b"}, {"type": "text", "text": "no"}]},
                {"role": "user", "content": "three"},
            ])
        );
    }

    #[test]
    fn tool_results_go_first_in_a_merged_user_message() {
        let out = to_anthropic(json!({"messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "Calling.", "tool_calls": [
                {"id": "functions.lookup:0", "type": "function", "function": {"name": "lookup", "arguments": ""}}]},
            {"role": "user", "content": "meanwhile"},
            {"role": "tool", "tool_call_id": "functions.lookup:0", "content": "done"},
        ]}));
        assert_eq!(
            out["messages"][1],
            json!({"role": "assistant", "content": [
                {"type": "text", "text": "Calling."},
                {"type": "tool_use", "id": "functions_lookup_0", "name": "lookup", "input": {}},
            ]})
        );
        assert_eq!(
            out["messages"][2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "functions_lookup_0", "content": "done"},
                {"type": "text", "text": "meanwhile"},
            ]})
        );
    }

    #[test]
    fn openai_tool_choice_variants() {
        let base = |choice: Value, parallel: Value| {
            to_anthropic(json!({
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": choice,
                "parallel_tool_calls": parallel,
            }))
        };
        assert_eq!(base(json!("auto"), Value::Null)["tool_choice"], json!({"type": "auto"}));
        assert_eq!(base(json!("none"), json!(false))["tool_choice"], json!({"type": "none"}));
        assert_eq!(
            base(json!({"type": "function", "function": {"name": "f"}}), json!(true))["tool_choice"],
            json!({"type": "tool", "name": "f"})
        );
        assert_eq!(
            base(Value::Null, json!(false))["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        let out = base(Value::Null, Value::Null);
        assert!(out.get("tool_choice").is_none());
        assert_eq!(
            out["tools"],
            json!([{"name": "f", "input_schema": {"type": "object", "properties": {}}}])
        );
        // Without tools, tool_choice means nothing to Anthropic.
        let out = to_anthropic(json!({
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
        }));
        assert!(out.get("tool_choice").is_none());
        assert!(out.get("tools").is_none());

        let e = anthropic_err(json!({
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "allowed_tools"},
        }));
        assert_eq!(e.path, "tool_choice.type");
        let e = anthropic_err(json!({
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "custom", "custom": {"name": "f"}}],
        }));
        assert_eq!(e.path, "tools[0].type");
    }

    #[test]
    fn response_format_becomes_system_instruction() {
        let out = to_anthropic(json!({
            "messages": [{"role": "system", "content": "Sys."}, {"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}},
        }));
        let system = out["system"].as_str().unwrap();
        assert!(system.starts_with("Sys.\n\nRespond with only"), "{system}");
        assert!(system.contains(r#"{"properties":{"a":{"type":"integer"}},"type":"object"}"#), "{system}");
        let out = to_anthropic(json!({
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
        }));
        assert!(out["system"].as_str().unwrap().contains("JSON object"));
        let out = to_anthropic(json!({
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "text"},
        }));
        assert!(out.get("system").is_none());
    }

    #[test]
    fn openai_bad_shapes_are_errors_with_paths() {
        let cases = [
            (json!([1]), "body"),
            (json!({}), "messages"),
            (json!({"messages": {}}), "messages"),
            (json!({"messages": [3]}), "messages[0]"),
            (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
            (json!({"messages": [{"role": "wizard", "content": "x"}]}), "messages[0].role"),
            (json!({"messages": [{"role": "function", "name": "f", "content": "x"}]}), "messages[0].role"),
            (json!({"messages": [{"role": "user", "content": 42}]}), "messages[0].content"),
            (json!({"messages": [{"role": "user"}]}), "messages[0].content"),
            (
                json!({"messages": [{"role": "system", "content": null}, {"role": "user", "content": "x"}]}),
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}),
                "messages[0].content[0].text",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}),
                "messages[1].tool_calls[0].function.arguments",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1,2]"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]}),
                "messages[0].tool_calls[0].id",
            ),
            (json!({"messages": [{"role": "assistant", "tool_calls": {}}]}), "messages[0].tool_calls"),
            (
                json!({"messages": [{"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}}]}),
                "messages[0].function_call",
            ),
            (json!({"messages": [{"role": "tool", "content": "x"}]}), "messages[0].tool_call_id"),
            (
                json!({"messages": [{"role": "tool", "tool_call_id": "c", "content": 5}]}),
                "messages[0].content",
            ),
            (json!({"messages": [{"role": "system", "content": "only system"}]}), "messages"),
            (json!({"messages": [{"role": "user", "content": "x"}], "n": 2}), "n"),
            (json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}), "max_tokens"),
            (json!({"messages": [{"role": "user", "content": "x"}], "stop": 5}), "stop"),
            (json!({"messages": [{"role": "user", "content": "x"}], "stop": ["a", 5]}), "stop[1]"),
            (json!({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}), "temperature"),
            (json!({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}), "stream"),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}),
                "tools[0].function.parameters",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}}),
                "response_format.type",
            ),
        ];
        for (req, path) in cases {
            let e = openai_request_to_anthropic(&req, "m", 1).unwrap_err();
            assert_eq!(e.path, path, "{req} gave {e}");
            assert!(!e.message.is_empty());
        }
        let e = anthropic_err(json!({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}));
        assert_eq!(
            e.to_string(),
            r#"messages[0].content[0].type: content part type "audio" is not supported by Anthropic"#
        );
    }

    #[test]
    fn anthropic_basic_fields_map_to_openai() {
        let out = to_openai(json!({
            "model": "claude-x",
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Be kind."}],
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": [{"type": "text", "text": "Again"}]},
            ],
            "max_tokens": 256,
            "stop_sequences": ["END"],
            "temperature": 0.5,
            "top_p": 0.8,
            "top_k": 40,
            "metadata": {"user_id": "u-9"},
            "stream": true,
            "thinking": {"type": "enabled", "budget_tokens": 1000},
        }));
        assert_eq!(
            out,
            json!({
                "model": "gpt-up",
                "messages": [
                    {"role": "system", "content": "Be brief.\n\nBe kind."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Again"},
                ],
                "max_tokens": 256,
                "stop": ["END"],
                "temperature": 0.5,
                "top_p": 0.8,
                "user": "u-9",
                "stream": true,
                "stream_options": {"include_usage": true},
            })
        );
        let out = to_openai(
            json!({"system": "S", "messages": [{"role": "user", "content": "Hi"}], "stream": false}),
        );
        assert_eq!(out["messages"][0], json!({"role": "system", "content": "S"}));
        assert_eq!(out["stream"], false);
        assert!(out.get("stream_options").is_none());
    }

    #[test]
    fn anthropic_images_documents_and_tool_results_map_to_openai() {
        let out = to_openai(json!({"messages": [
            {"role": "user", "content": "Look up the weather"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "Here you go"},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                    {"type": "text", "text": "Cold"},
                    {"type": "text", "text": "-5C"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/map.png"}},
                ]},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4A"}},
                {"type": "document", "title": "r.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
            ]},
        ]}));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": "Look up the weather"},
                {"role": "assistant", "content": "Let me check.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "Cold\n-5C"},
                {"role": "user", "content": [
                    {"type": "text", "text": "Here you go"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/map.png"}},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4A"}},
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "r.pdf"}},
                ]},
            ])
        );
    }

    #[test]
    fn anthropic_tool_result_only_message_yields_only_tool_messages() {
        let out = to_openai(json!({"messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "ok", "is_error": false},
            ]},
        ]}));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "ok"},
            ])
        );
    }

    #[test]
    fn anthropic_tools_and_tool_choice_map_to_openai() {
        let tools = json!([
            {"name": "f", "description": "does f", "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
            {"name": "g", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
        ]);
        let with = |choice: Value| {
            to_openai(
                json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}),
            )
        };
        let out = with(json!({"type": "any", "disable_parallel_tool_use": true}));
        assert_eq!(
            out["tools"],
            json!([
                {"type": "function", "function": {"name": "f", "description": "does f",
                    "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "g", "parameters": {"type": "object"}}},
            ])
        );
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["parallel_tool_calls"], false);
        assert_eq!(with(json!({"type": "auto"}))["tool_choice"], "auto");
        assert_eq!(with(json!({"type": "none"}))["tool_choice"], "none");
        assert_eq!(
            with(json!({"type": "tool", "name": "g"}))["tool_choice"],
            json!({"type": "function", "function": {"name": "g"}})
        );
        assert!(with(json!({"type": "auto"})).get("parallel_tool_calls").is_none());
        assert!(with(Value::Null).get("tool_choice").is_none());
    }

    #[test]
    fn anthropic_bad_shapes_are_errors_with_paths() {
        let cases = [
            (json!("x"), "body"),
            (json!({"messages": 1}), "messages"),
            (json!({"system": 5, "messages": []}), "system"),
            (json!({"system": [{"type": "image"}], "messages": []}), "system[0].type"),
            (json!({"messages": [{"role": "user", "content": 5}]}), "messages[0].content"),
            (json!({"messages": [{"role": "system", "content": "x"}]}), "messages[0].role"),
            (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "video"}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}),
                "messages[0].content[0].source.type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}]}]}),
                "messages[0].content[0].source.media_type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]}),
                "messages[0].content[0].tool_use_id",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": 3}]}]}),
                "messages[0].content[0].content",
            ),
            (
                json!({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]}]}),
                "messages[0].content[0].input",
            ),
            (
                json!({"messages": [{"role": "assistant", "content": [{"type": "server_tool_use"}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                "tools[0].type",
            ),
            (
                json!({"messages": [], "tools": [{"name": "f"}], "tool_choice": {"type": "maybe"}}),
                "tool_choice.type",
            ),
            (json!({"messages": [], "tools": [{"name": "f"}], "tool_choice": "auto"}), "tool_choice"),
            (json!({"messages": [], "max_tokens": -1}), "max_tokens"),
            (json!({"messages": [], "stop_sequences": "x"}), "stop_sequences"),
            (json!({"messages": [], "top_p": "x"}), "top_p"),
        ];
        for (req, path) in cases {
            let e = anthropic_request_to_openai(&req, "m").unwrap_err();
            assert_eq!(e.path, path, "{req} gave {e}");
        }
    }

    #[test]
    fn anthropic_request_round_trips_through_openai() {
        let original = json!({
            "model": "claude",
            "max_tokens": 300,
            "system": "Sys",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Describe"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"}},
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_9", "name": "zoom", "input": {"level": 2}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_9", "content": "zoomed"},
                    {"type": "text", "text": "and now?"},
                ]},
            ],
            "tools": [{"name": "zoom", "input_schema": {"type": "object", "properties": {"level": {"type": "integer"}}}}],
            "tool_choice": {"type": "tool", "name": "zoom", "disable_parallel_tool_use": true},
            "stop_sequences": ["X"],
        });
        let back = to_anthropic(to_openai(original.clone()));
        assert_eq!(back["system"], original["system"]);
        assert_eq!(back["max_tokens"], original["max_tokens"]);
        assert_eq!(back["tools"], original["tools"]);
        assert_eq!(back["tool_choice"], original["tool_choice"]);
        assert_eq!(back["stop_sequences"], original["stop_sequences"]);
        assert_eq!(back["messages"], original["messages"]);
    }
}
