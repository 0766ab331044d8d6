//! Safety on the request path: input checks before anything is sent upstream, output checks
//! on whole answers, and the stream guard that scans answers as they flow (releasing text at
//! once except a bounded hold-back, redacting in place, ending the stream on a block).

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::safety::{Finding, StreamScanner, StreamStep, Violation};

/// The `policy_violation` error for a blocked request or answer.
pub(super) fn violation_error(v: &Violation) -> ApiError {
    let mut e = ApiError::invalid(v.message(), v.location.as_ref().map(|l| l.path.clone()));
    e.code = "policy_violation";
    // Machine-readable for the SDKs (the message is for people).
    e.headers.push(("x-tollgate-policy", v.policy.to_string()));
    e.headers.push(("x-tollgate-rule", v.rule.to_string()));
    e
}

/// Records a safety pass on its span: the strictest action taken (`block`, `redact`, `log`,
/// or `none`; a finding of a policy in audit mode counts as `log`, since it was only
/// recorded), the names of the rules that matched (never the matched text), and an error
/// when it blocked.
pub(super) fn record_verdict(span: &tracing::Span, findings: &[Finding]) {
    use crate::observability::tracing::{attr, record_error};
    let rank = |f: &Finding| match (f.audit, f.action.as_str()) {
        (false, "block") => 3,
        (false, "redact") => 2,
        _ => 1,
    };
    let action = match findings.iter().map(rank).max() {
        Some(3) => "block",
        Some(2) => "redact",
        Some(_) => "log",
        None => "none",
    };
    span.record(attr::TOLLGATE_SAFETY_ACTION, action);
    let rules: BTreeSet<&str> = findings.iter().map(|f| f.rule.as_ref()).collect();
    if !rules.is_empty() {
        span.record(attr::TOLLGATE_SAFETY_RULES, rules.into_iter().collect::<Vec<_>>().join(",").as_str());
    }
    if action == "block" {
        record_error(span, "policy_violation");
    }
}

/// Scans a streamed answer in the caller's format.
pub(super) struct StreamGuard {
    scanner: StreamScanner,
    /// OpenAI: tool-call indices seen per choice.
    calls: BTreeMap<usize, BTreeSet<usize>>,
    /// Anthropic: content blocks that are tool calls.
    tool_blocks: BTreeSet<usize>,
    /// Findings not yet reported.
    pub(super) findings: Vec<Finding>,
}

impl StreamGuard {
    pub(super) fn new(scanner: StreamScanner) -> Self {
        Self { scanner, calls: BTreeMap::new(), tool_blocks: BTreeSet::new(), findings: Vec::new() }
    }

    fn take(&mut self, step: StreamStep) -> Result<String, Box<Violation>> {
        self.findings.extend(step.findings);
        match step.block {
            Some(v) => Err(Box::new(v)),
            None => Ok(step.release),
        }
    }

    /// Rewrites one OpenAI `chat.completion.chunk` in place.
    pub(super) fn openai(&mut self, chunk: &mut Value) -> Result<(), Box<Violation>> {
        let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        for choice in choices {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            let finished = choice.get("finish_reason").is_some_and(|f| !f.is_null());
            let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) else { continue };
            if let Some(text) = delta.get("content").and_then(Value::as_str).map(str::to_owned) {
                let release = {
                    let step = self.scanner.push(index, &text);
                    self.take(step)?
                };
                delta.insert("content".into(), Value::String(release));
            }
            if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
                for call in calls {
                    let n = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                    self.calls.entry(index).or_default().insert(n);
                    let name = call.pointer("/function/name").and_then(Value::as_str).map(str::to_owned);
                    let args =
                        call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("").to_owned();
                    let step = self.scanner.push_tool_call(index, n, name.as_deref(), &args);
                    let release = self.take(step)?;
                    if self.scanner.holds_tool_arguments()
                        && let Some(f) = call.get_mut("function").and_then(Value::as_object_mut)
                    {
                        f.insert("arguments".into(), Value::String(release));
                    }
                }
            }
            if finished {
                let tail = {
                    let step = self.scanner.finish(index);
                    self.take(step)?
                };
                if !tail.is_empty() {
                    let before = delta.get("content").and_then(Value::as_str).unwrap_or("").to_owned();
                    delta.insert("content".into(), Value::String(before + &tail));
                }
                for n in self.calls.remove(&index).unwrap_or_default() {
                    let args = {
                        let step = self.scanner.finish_tool_call(index, n);
                        self.take(step)?
                    };
                    if self.scanner.holds_tool_arguments() && !args.is_empty() {
                        let calls = delta.entry("tool_calls").or_insert_with(|| Value::Array(Vec::new()));
                        if let Some(list) = calls.as_array_mut() {
                            list.push(serde_json::json!({"index": n, "function": {"arguments": args}}));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// One Anthropic event; returns the events to send in its place.
    pub(super) fn anthropic(
        &mut self,
        name: &str,
        mut data: Value,
    ) -> Result<Vec<(String, Value)>, Box<Violation>> {
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
        match name {
            "content_block_start" => {
                if data.pointer("/content_block/type").and_then(Value::as_str) == Some("tool_use") {
                    self.tool_blocks.insert(index);
                    let tool = data.pointer("/content_block/name").and_then(Value::as_str).map(str::to_owned);
                    {
                        let step = self.scanner.push_tool_call(index, 0, tool.as_deref(), "");
                        self.take(step)?
                    };
                }
                Ok(vec![(name.to_owned(), data)])
            }
            "content_block_delta" => {
                let kind = data.pointer("/delta/type").and_then(Value::as_str).unwrap_or("").to_owned();
                if kind == "text_delta" {
                    let text = data.pointer("/delta/text").and_then(Value::as_str).unwrap_or("").to_owned();
                    let release = {
                        let step = self.scanner.push(index, &text);
                        self.take(step)?
                    };
                    if let Some(d) = data.get_mut("delta").and_then(Value::as_object_mut) {
                        d.insert("text".into(), Value::String(release));
                    }
                } else if kind == "input_json_delta" {
                    let part =
                        data.pointer("/delta/partial_json").and_then(Value::as_str).unwrap_or("").to_owned();
                    let release = {
                        let step = self.scanner.push_tool_call(index, 0, None, &part);
                        self.take(step)?
                    };
                    if self.scanner.holds_tool_arguments()
                        && let Some(d) = data.get_mut("delta").and_then(Value::as_object_mut)
                    {
                        d.insert("partial_json".into(), Value::String(release));
                    }
                }
                Ok(vec![(name.to_owned(), data)])
            }
            "content_block_stop" => {
                let mut out = Vec::new();
                if self.tool_blocks.remove(&index) {
                    let args = {
                        let step = self.scanner.finish_tool_call(index, 0);
                        self.take(step)?
                    };
                    if self.scanner.holds_tool_arguments() && !args.is_empty() {
                        out.push((
                            "content_block_delta".to_owned(),
                            serde_json::json!({"type": "content_block_delta", "index": index,
                                "delta": {"type": "input_json_delta", "partial_json": args}}),
                        ));
                    }
                } else {
                    let tail = {
                        let step = self.scanner.finish(index);
                        self.take(step)?
                    };
                    if !tail.is_empty() {
                        out.push((
                            "content_block_delta".to_owned(),
                            serde_json::json!({"type": "content_block_delta", "index": index,
                                "delta": {"type": "text_delta", "text": tail}}),
                        ));
                    }
                }
                out.push((name.to_owned(), data));
                Ok(out)
            }
            _ => Ok(vec![(name.to_owned(), data)]),
        }
    }
}
