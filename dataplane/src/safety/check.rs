//! Checking whole JSON bodies: walks the parts of a request or reply that carry text
//! (message parts, tool results, the system prompt, tool definitions, tool-call arguments),
//! scans each string once, turns matches into findings under every policy that applies,
//! and, when something must be redacted, builds the new body.
//!
//! NB: OpenAI tool-call arguments are a JSON document inside a string. They are parsed and
//! scanned value by value (so `{"password": "..."}` is seen with its key, argument rules can
//! use JSON pointers, and a redaction re-serialises valid JSON).

use std::borrow::Cow;
use std::cmp::Reverse;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::detectors::{Hit, Rule};
use super::injection::CATEGORIES;
use super::{
    Action, Applied, Category, Finding, Location, MAX_FINDINGS, Outcome, PolicySet, Result, SafetyError,
    Stage, StageRules, Verdict, Wire,
};

/// A redaction: byte span and label.
pub(super) type Span = (usize, usize, Cow<'static, str>);

/// A scanned string that needs (or may need) rewriting.
#[derive(Debug)]
struct Leaf {
    root: usize,
    ptr: String,
    loc: String,
    message: Option<usize>,
    text: String,
    spans: Vec<Span>,
}

/// A JSON document parsed out of a string (tool-call arguments).
#[derive(Debug)]
struct Nested {
    parent_root: usize,
    parent_ptr: String,
    value: Value,
}

#[derive(Debug, Clone, Copy)]
struct InjectionHit {
    pattern: u16,
    leaf: usize,
    start: usize,
    end: usize,
}

/// The state of one check.
pub(super) struct Check<'s> {
    set: &'s PolicySet,
    rules: &'s StageRules,
    stage: Stage,
    findings: Vec<Finding>,
    block: Option<Finding>,
    leaves: Vec<Leaf>,
    injection: Vec<InjectionHit>,
    hits: Vec<Hit>,
    applied: Vec<Applied>,
    loc: String,
    ptr: String,
    root: usize,
    message: Option<usize>,
    nested: Vec<Nested>,
    text_bytes: usize,
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

impl<'s> Check<'s> {
    pub(super) fn new(set: &'s PolicySet, stage: Stage) -> Self {
        Self {
            set,
            rules: set.rules(stage),
            stage,
            findings: Vec::new(),
            block: None,
            leaves: Vec::new(),
            injection: Vec::new(),
            hits: Vec::new(),
            applied: Vec::new(),
            loc: String::new(),
            ptr: String::new(),
            root: 0,
            message: None,
            nested: Vec::new(),
            text_bytes: 0,
        }
    }

    /// Starts location paths with `prefix` (streams: `choices[0].delta.tool_calls[1]...`).
    pub(super) fn with_location(mut self, prefix: String, message: Option<usize>) -> Self {
        self.loc = prefix;
        self.message = message;
        self
    }

    fn done(&self) -> bool {
        self.block.is_some()
    }

    fn at<R>(&mut self, seg: Seg<'_>, f: impl FnOnce(&mut Self) -> R) -> R {
        let (l, p) = (self.loc.len(), self.ptr.len());
        match seg {
            Seg::Key(k) => {
                if !self.loc.is_empty() {
                    self.loc.push('.');
                }
                self.loc.push_str(k);
                self.ptr.push('/');
                self.ptr.push_str(&k.replace('~', "~0").replace('/', "~1"));
            }
            Seg::Index(i) => {
                let _ = write!(self.loc, "[{i}]");
                let _ = write!(self.ptr, "/{i}");
            }
        }
        let r = f(self);
        self.loc.truncate(l);
        self.ptr.truncate(p);
        r
    }

    fn push_finding(&mut self, f: Finding) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(f);
        }
    }

    fn location(&self, offset: Option<usize>, length: Option<usize>) -> Location {
        Location { path: self.loc.clone(), message: self.message, offset, length }
    }

    fn leaf(&mut self, text: &str) -> usize {
        if let Some(i) = self.leaves.iter().position(|l| l.root == self.root && l.ptr == self.ptr) {
            return i;
        }
        self.leaves.push(Leaf {
            root: self.root,
            ptr: self.ptr.clone(),
            loc: self.loc.clone(),
            message: self.message,
            text: text.to_owned(),
            spans: Vec::new(),
        });
        self.leaves.len() - 1
    }

    /// Records a finding and, in enforce mode, its effect.
    fn act(&mut self, f: Finding, leaf_text: Option<&str>, span: Option<Span>) {
        if !f.audit {
            match f.action {
                Action::Block if self.block.is_none() => self.block = Some(f.clone()),
                Action::Redact => {
                    if let (Some(text), Some(span)) = (leaf_text, span) {
                        let i = self.leaf(text);
                        self.leaves[i].spans.push(span);
                    }
                }
                _ => {}
            }
        }
        self.push_finding(f);
    }

    /// Scans one string.
    pub(super) fn scan_text(&mut self, text: &str, key: Option<&str>) {
        self.text_bytes += text.len();
        if self.done() || text.is_empty() {
            return;
        }
        let mut hits = std::mem::take(&mut self.hits);
        hits.clear();
        self.rules.scan(self.set, text, key, &mut hits);
        let mut applied = std::mem::take(&mut self.applied);
        for hit in &hits {
            if let Rule::Injection(pattern) = hit.rule {
                let leaf = self.leaf(text);
                self.injection.push(InjectionHit { pattern, leaf, start: hit.start, end: hit.end });
                continue;
            }
            self.set.applied(self.stage, hit, &mut applied);
            for a in applied.drain(..) {
                let len = hit.redact_end - hit.redact_start;
                let f = Finding {
                    policy: self.set.policy_id(a.binding.slot),
                    rule: a.rule,
                    category: a.category,
                    stage: self.stage,
                    action: a.binding.action,
                    audit: a.binding.audit,
                    location: Some(self.location(Some(hit.redact_start), Some(len))),
                    score: None,
                };
                self.act(f, Some(text), Some((hit.redact_start, hit.redact_end, a.label)));
            }
        }
        self.applied = applied;
        self.hits = hits;
    }

    /// Scans every string in a JSON value, each with the key it is under.
    pub(super) fn scan_json(&mut self, v: &Value, key: Option<&str>) {
        if self.done() {
            return;
        }
        match v {
            Value::String(s) => self.scan_text(s, key),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.at(Seg::Index(i), |c| c.scan_json(item, key));
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    self.at(Seg::Key(k), |c| c.scan_json(item, Some(k)));
                }
            }
            _ => {}
        }
    }

    /// Checks a tool name against every policy's allow/deny lists.
    pub(super) fn tool_name(&mut self, name: &str) {
        let set = self.set;
        for p in &set.policies {
            let Some(t) = &p.tools else { continue };
            if !t.has_lists() {
                continue;
            }
            if let Some(rule) = t.name_violation(name) {
                let f = Finding {
                    policy: Arc::clone(&p.id),
                    rule: Cow::Borrowed(rule),
                    category: Category::Tool,
                    stage: self.stage,
                    action: t.action,
                    audit: p.audit,
                    location: Some(self.location(None, None)),
                    score: None,
                };
                self.act(f, None, None);
            }
        }
    }

    /// Tool-call arguments as a JSON string (OpenAI). `tool` is set for calls the model
    /// returns, whose argument rules apply.
    pub(super) fn arguments_str(&mut self, args: &str, tool: Option<&str>) {
        match serde_json::from_str::<Value>(args) {
            Ok(value) => {
                let saved_root = self.root;
                let saved_ptr = std::mem::take(&mut self.ptr);
                let index = self.nested.len() + 1;
                self.root = index;
                if let Some(tool) = tool {
                    self.argument_rules(tool, &value);
                }
                self.scan_json(&value, None);
                self.root = saved_root;
                self.ptr = saved_ptr;
                self.nested.push(Nested { parent_root: saved_root, parent_ptr: self.ptr.clone(), value });
            }
            Err(_) => {
                if let Some(tool) = tool {
                    self.unparsable_arguments(tool);
                }
                self.scan_text(args, None);
            }
        }
    }

    /// Tool-call arguments as a JSON value (Anthropic `tool_use.input`).
    pub(super) fn arguments_value(&mut self, input: &Value, tool: Option<&str>) {
        if let Some(tool) = tool {
            self.argument_rules(tool, input);
        }
        self.scan_json(input, None);
    }

    /// Argument rules cannot look inside arguments that are not JSON: a blocking rule for
    /// this tool then blocks (fail closed).
    fn unparsable_arguments(&mut self, tool: &str) {
        let set = self.set;
        for p in &set.policies {
            let Some(t) = &p.tools else { continue };
            for r in
                t.arguments.iter().filter(|r| r.action == Action::Block && super::tools::glob(&r.tool, tool))
            {
                let f = Finding {
                    policy: Arc::clone(&p.id),
                    rule: Cow::Owned(r.rule.clone()),
                    category: Category::Tool,
                    stage: self.stage,
                    action: Action::Block,
                    audit: p.audit,
                    location: Some(self.location(None, None)),
                    score: None,
                };
                self.act(f, None, None);
            }
        }
    }

    fn argument_rules(&mut self, tool: &str, args: &Value) {
        let set = self.set;
        for p in &set.policies {
            let Some(t) = &p.tools else { continue };
            for r in t.arguments.iter().filter(|r| super::tools::glob(&r.tool, tool)) {
                let Some(v) = args.pointer(&r.pointer) else { continue };
                let (text, whole) = match v {
                    Value::String(s) => (Cow::Borrowed(s.as_str()), false),
                    other => (Cow::Owned(other.to_string()), true),
                };
                let matches: Vec<(usize, usize)> = r
                    .regex
                    .find_iter(&text)
                    .filter(|m| !m.is_empty())
                    .map(|m| (m.start(), m.end()))
                    .collect();
                if matches.is_empty() {
                    continue;
                }
                let (l, pl) = (self.loc.len(), self.ptr.len());
                for token in r.pointer.split('/').skip(1) {
                    self.loc.push('.');
                    self.loc.push_str(&token.replace("~1", "/").replace("~0", "~"));
                }
                self.ptr.push_str(&r.pointer);
                for (s, e) in matches {
                    let f = Finding {
                        policy: Arc::clone(&p.id),
                        rule: Cow::Owned(r.rule.clone()),
                        category: Category::Tool,
                        stage: self.stage,
                        action: r.action,
                        audit: p.audit,
                        location: Some(self.location(Some(s), Some(e - s))),
                        score: None,
                    };
                    let span = if whole {
                        (0, text.len(), Cow::Owned(r.label.clone()))
                    } else {
                        (s, e, Cow::Owned(r.label.clone()))
                    };
                    self.act(f, Some(&text), Some(span));
                }
                self.loc.truncate(l);
                self.ptr.truncate(pl);
            }
        }
    }

    /// Limits on counts, checked before any scanning.
    fn count_limits(&mut self, messages: usize, tools: usize) {
        let limits = self.rules.limits.clone();
        for (b, l) in limits {
            if l.max_messages.is_some_and(|m| messages as u64 > u64::from(m)) {
                self.limit(b, "limits.max_messages", "messages");
            }
            if l.max_tool_definitions.is_some_and(|m| tools as u64 > u64::from(m)) {
                self.limit(b, "limits.max_tool_definitions", "tools");
            }
        }
    }

    fn token_limits(&mut self) {
        // NB: an estimate (4 bytes per token, rounded up) so the check costs nothing; the
        // budget service counts real tokens.
        let tokens = self.text_bytes.div_ceil(4) as u64;
        let limits = self.rules.limits.clone();
        for (b, l) in limits {
            if l.max_input_tokens.is_some_and(|m| tokens > m) {
                self.limit(b, "limits.max_input_tokens", "");
            }
        }
    }

    fn limit(&mut self, b: super::Binding, rule: &'static str, path: &str) {
        let f = Finding {
            policy: self.set.policy_id(b.slot),
            rule: Cow::Borrowed(rule),
            category: Category::Limit,
            stage: self.stage,
            action: b.action,
            audit: b.audit,
            location: (!path.is_empty()).then(|| Location {
                path: path.to_owned(),
                message: None,
                offset: None,
                length: None,
            }),
            score: None,
        };
        self.act(f, None, None);
    }

    /// Decides injection, then the outcome; builds the redacted body from `body`.
    pub(super) fn finish(mut self, body: &Value) -> Result<Verdict> {
        if !self.injection.is_empty() && !self.done() {
            let mut seen = Vec::new();
            let mut score = 0u32;
            for h in &self.injection {
                if !seen.contains(&h.pattern) {
                    seen.push(h.pattern);
                    score += self.set.builtins.injection.get(usize::from(h.pattern)).map_or(0, |p| p.weight);
                }
            }
            let bindings = self.rules.injection.clone();
            let hits = std::mem::take(&mut self.injection);
            for (b, threshold) in bindings {
                if score < threshold {
                    continue;
                }
                for h in hits.iter().take(32) {
                    let category =
                        self.set.builtins.injection.get(usize::from(h.pattern)).map_or(0, |p| p.category);
                    let leaf = &self.leaves[h.leaf];
                    let f = Finding {
                        policy: self.set.policy_id(b.slot),
                        rule: Cow::Borrowed(CATEGORIES.get(category).copied().unwrap_or("injection")),
                        category: Category::Injection,
                        stage: self.stage,
                        action: b.action,
                        audit: b.audit,
                        location: Some(Location {
                            path: leaf.loc.clone(),
                            message: leaf.message,
                            offset: Some(h.start),
                            length: Some(h.end - h.start),
                        }),
                        score: Some(score),
                    };
                    if !f.audit {
                        match f.action {
                            Action::Block if self.block.is_none() => self.block = Some(f.clone()),
                            Action::Redact => self.leaves[h.leaf].spans.push((
                                h.start,
                                h.end,
                                Cow::Borrowed("PROMPT_INJECTION"),
                            )),
                            _ => {}
                        }
                    }
                    self.push_finding(f);
                }
            }
        }
        let outcome = if let Some(b) = self.block.take() {
            Outcome::Block(b)
        } else if self.leaves.iter().any(|l| !l.spans.is_empty()) {
            Outcome::Redact(self.redacted(body)?)
        } else {
            Outcome::Allow
        };
        Ok(Verdict { outcome, findings: self.findings })
    }

    fn redacted(&mut self, body: &Value) -> Result<Value> {
        let broken = |what: &str| SafetyError::Internal(format!("redaction: {what}"));
        let mut roots: Vec<Option<Value>> = Vec::with_capacity(self.nested.len() + 1);
        roots.push(None);
        roots.extend(self.nested.iter().map(|_| None));
        for leaf in &mut self.leaves {
            if leaf.spans.is_empty() {
                continue;
            }
            let new =
                apply_spans(&leaf.text, &mut leaf.spans).ok_or_else(|| broken("span off a char boundary"))?;
            let slot = roots.get_mut(leaf.root).ok_or_else(|| broken("unknown root"))?;
            let root = slot.get_or_insert_with(|| {
                if leaf.root == 0 { body.clone() } else { self.nested[leaf.root - 1].value.clone() }
            });
            let target = root.pointer_mut(&leaf.ptr).ok_or_else(|| broken("path vanished"))?;
            *target = Value::String(new);
        }
        // Nested documents go back into their strings, innermost first.
        for k in (0..self.nested.len()).rev() {
            let Some(value) = roots[k + 1].take() else { continue };
            let text = serde_json::to_string(&value).map_err(|e| broken(&e.to_string()))?;
            let (pr, pp) = (self.nested[k].parent_root, self.nested[k].parent_ptr.clone());
            let parent = roots[pr].get_or_insert_with(|| {
                if pr == 0 { body.clone() } else { self.nested[pr - 1].value.clone() }
            });
            let target = parent.pointer_mut(&pp).ok_or_else(|| broken("arguments vanished"))?;
            *target = Value::String(text);
        }
        Ok(roots.swap_remove(0).unwrap_or_else(|| body.clone()))
    }
}

/// Replaces spans (merged where they overlap) with `[REDACTED:LABEL]`.
pub(super) fn apply_spans(text: &str, spans: &mut [Span]) -> Option<String> {
    spans.sort_by_key(|s| (s.0, Reverse(s.1)));
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (s, e, label) in spans.iter() {
        let (s, e) = (*s, (*e).min(text.len()));
        if !text.is_char_boundary(s) || !text.is_char_boundary(e) {
            return None;
        }
        if s < pos {
            pos = pos.max(e);
            continue;
        }
        out.push_str(&text[pos..s]);
        out.push_str("[REDACTED:");
        out.push_str(label);
        out.push(']');
        pos = e;
    }
    out.push_str(text.get(pos..)?);
    Some(out)
}

// -------------------------------------------------------------------------------------
// Walkers
// -------------------------------------------------------------------------------------

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn arr_of<'a>(v: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

impl Check<'_> {
    fn each(&mut self, key: &str, items: &[Value], set_message: bool, mut f: impl FnMut(&mut Self, &Value)) {
        if items.is_empty() {
            return;
        }
        self.at(Seg::Key(key), |c| {
            for (i, item) in items.iter().enumerate() {
                if c.done() {
                    break;
                }
                if set_message {
                    c.message = Some(i);
                }
                c.at(Seg::Index(i), |c| f(c, item));
            }
            if set_message {
                c.message = None;
            }
        });
    }

    fn text_field(&mut self, v: &Value, key: &str) {
        if let Some(s) = str_of(v, key) {
            self.at(Seg::Key(key), |c| c.scan_text(s, None));
        }
    }

    // --- OpenAI ---------------------------------------------------------------------

    fn openai_content(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.at(Seg::Key("content"), |c| c.scan_text(s, None)),
            Value::Array(parts) => self.each("content", parts, false, |c, p| {
                c.text_field(p, "text");
                c.text_field(p, "refusal");
            }),
            _ => {}
        }
    }

    fn openai_function(&mut self, f: &Value, output: bool) {
        let name = str_of(f, "name");
        if output && let Some(n) = name {
            self.at(Seg::Key("name"), |c| c.tool_name(n));
        }
        if let Some(args) = str_of(f, "arguments") {
            self.at(Seg::Key("arguments"), |c| {
                c.arguments_str(args, if output { name.or(Some("")) } else { None })
            });
        }
    }

    fn openai_message(&mut self, m: &Value, output: bool) {
        if let Some(content) = m.get("content") {
            self.openai_content(content);
        }
        self.text_field(m, "refusal");
        if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
            self.each("tool_calls", calls, false, |c, call| {
                if let Some(f) = call.get("function") {
                    c.at(Seg::Key("function"), |c| c.openai_function(f, output));
                }
            });
        }
        if let Some(f) = m.get("function_call") {
            self.at(Seg::Key("function_call"), |c| c.openai_function(f, output));
        }
    }

    fn openai_tools(&mut self, key: &str, tools: &[Value]) {
        self.each(key, tools, false, |c, t| {
            let def = |c: &mut Self, f: &Value| {
                if let Some(n) = str_of(f, "name") {
                    c.at(Seg::Key("name"), |c| c.tool_name(n));
                }
                c.text_field(f, "description");
                if let Some(p) = f.get("parameters") {
                    c.at(Seg::Key("parameters"), |c| c.scan_json(p, None));
                }
            };
            match t.get("function") {
                Some(f) => c.at(Seg::Key("function"), |c| def(c, f)),
                None => def(c, t),
            }
        });
    }

    fn openai_request(&mut self, obj: &Map<String, Value>) {
        let messages = arr_of(obj, "messages");
        let (tools, functions) = (arr_of(obj, "tools"), arr_of(obj, "functions"));
        self.count_limits(messages.len(), tools.len() + functions.len());
        self.each("messages", messages, true, |c, m| c.openai_message(m, false));
        self.openai_tools("tools", tools);
        self.openai_tools("functions", functions);
    }

    fn openai_response(&mut self, obj: &Map<String, Value>) {
        self.each("choices", arr_of(obj, "choices"), true, |c, ch| {
            if let Some(m) = ch.get("message") {
                c.at(Seg::Key("message"), |c| c.openai_message(m, true));
            }
            c.text_field(ch, "text");
        });
    }

    // --- Anthropic ------------------------------------------------------------------

    fn anthropic_block(&mut self, b: &Value, output: bool) {
        match str_of(b, "type").unwrap_or("") {
            "tool_use" | "server_tool_use" => {
                let name = str_of(b, "name");
                if output && let Some(n) = name {
                    self.at(Seg::Key("name"), |c| c.tool_name(n));
                }
                if let Some(input) = b.get("input") {
                    self.at(Seg::Key("input"), |c| {
                        c.arguments_value(input, if output { name.or(Some("")) } else { None })
                    });
                }
            }
            "tool_result" => match b.get("content") {
                Some(Value::String(s)) => self.at(Seg::Key("content"), |c| c.scan_text(s, None)),
                Some(Value::Array(blocks)) => {
                    self.each("content", blocks, false, |c, b| c.anthropic_block(b, output))
                }
                _ => {}
            },
            _ => {
                self.text_field(b, "text");
                self.text_field(b, "thinking");
                if let Some(src) = b.get("source")
                    && str_of(src, "type") == Some("text")
                {
                    self.at(Seg::Key("source"), |c| c.text_field(src, "data"));
                }
            }
        }
    }

    fn anthropic_content(&mut self, key: &str, v: &Value, output: bool) {
        match v {
            Value::String(s) => self.at(Seg::Key(key), |c| c.scan_text(s, None)),
            Value::Array(blocks) => self.each(key, blocks, false, |c, b| c.anthropic_block(b, output)),
            _ => {}
        }
    }

    fn anthropic_request(&mut self, obj: &Map<String, Value>) {
        let messages = arr_of(obj, "messages");
        let tools = arr_of(obj, "tools");
        self.count_limits(messages.len(), tools.len());
        if let Some(system) = obj.get("system") {
            self.anthropic_content("system", system, false);
        }
        self.each("messages", messages, true, |c, m| {
            if let Some(content) = m.get("content") {
                c.anthropic_content("content", content, false);
            }
        });
        self.each("tools", tools, false, |c, t| {
            if let Some(n) = str_of(t, "name") {
                c.at(Seg::Key("name"), |c| c.tool_name(n));
            }
            c.text_field(t, "description");
            if let Some(s) = t.get("input_schema") {
                c.at(Seg::Key("input_schema"), |c| c.scan_json(s, None));
            }
        });
    }

    fn anthropic_response(&mut self, obj: &Map<String, Value>) {
        self.each("content", arr_of(obj, "content"), true, |c, b| c.anthropic_block(b, true));
    }
}

pub(super) fn request(set: &PolicySet, body: &Value, wire: Wire) -> Result<Verdict> {
    let mut c = Check::new(set, Stage::Input);
    if let Some(obj) = body.as_object() {
        match wire {
            Wire::OpenAi => c.openai_request(obj),
            Wire::Anthropic => c.anthropic_request(obj),
        }
    }
    c.token_limits();
    c.finish(body)
}

pub(super) fn embeddings(set: &PolicySet, body: &Value) -> Result<Verdict> {
    let mut c = Check::new(set, Stage::Input);
    match body.get("input") {
        Some(Value::String(s)) => c.at(Seg::Key("input"), |c| c.scan_text(s, None)),
        Some(Value::Array(items)) => c.each("input", items, true, |c, v| {
            if let Value::String(s) = v {
                c.scan_text(s, None);
            }
        }),
        _ => {}
    }
    c.token_limits();
    c.finish(body)
}

pub(super) fn response(set: &PolicySet, body: &Value, wire: Wire) -> Result<Verdict> {
    let mut c = Check::new(set, Stage::Output);
    if let Some(obj) = body.as_object() {
        match wire {
            Wire::OpenAi => c.openai_response(obj),
            Wire::Anthropic => c.anthropic_response(obj),
        }
    }
    c.finish(body)
}

pub(super) fn text(set: &PolicySet, text: &str, stage: Stage) -> Result<Verdict> {
    let body = Value::String(text.to_owned());
    let mut c = Check::new(set, stage);
    c.scan_text(text, None);
    if stage == Stage::Input {
        c.token_limits();
    }
    c.finish(&body)
}

/// Checks one streamed tool call once complete: its name and arguments (a JSON string).
/// Returns the verdict; a redaction is `Outcome::Redact(Value::String(new arguments))`.
pub(super) fn tool_call(
    set: &PolicySet,
    name: Option<&str>,
    check_name: bool,
    args: &str,
    location: String,
    message: Option<usize>,
) -> Result<Verdict> {
    let body = Value::String(args.to_owned());
    let mut c = Check::new(set, Stage::Output).with_location(location, message);
    if check_name && let Some(n) = name {
        c.tool_name(n);
    }
    c.arguments_str(args, Some(name.unwrap_or("")));
    c.finish(&body)
}

/// Checks a tool name alone (streams check it as soon as it arrives).
pub(super) fn tool_name(
    set: &PolicySet,
    name: &str,
    location: String,
    message: Option<usize>,
) -> Result<Verdict> {
    let mut c = Check::new(set, Stage::Output).with_location(location, message);
    c.tool_name(name);
    c.finish(&Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_merge_and_keep_text_between() {
        let mut spans: Vec<Span> = vec![(6, 11, "A".into()), (0, 3, "B".into()), (8, 14, "C".into())];
        assert_eq!(
            apply_spans("abc + defghijklm", &mut spans).as_deref(),
            Some("[REDACTED:B] + [REDACTED:A]lm")
        );
        let mut none: Vec<Span> = Vec::new();
        assert_eq!(apply_spans("x", &mut none).as_deref(), Some("x"));
        let mut bad: Vec<Span> = vec![(1, 2, "X".into())];
        assert_eq!(apply_spans("é", &mut bad), None);
    }

    #[test]
    fn injection_categories_cover_the_table() {
        for p in super::super::injection::PATTERNS {
            assert!(CATEGORIES.get(p.category).is_some());
        }
    }
}
