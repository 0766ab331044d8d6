//! Scanning a streamed reply as it flows, without buffering it.
//!
//! Per choice (OpenAI) or content block (Anthropic) the scanner keeps one small buffer:
//! up to [`LOOKBEHIND`] bytes of text already released (so a match that spans a chunk
//! boundary is still seen whole) followed by the text it holds back. Each `push` scans that
//! buffer and releases everything except the trailing bytes that could still be the start
//! of something an enforce policy blocks or redacts (the last word when it could begin an
//! e-mail or a key, a number in progress, `password=` whose value is still arriving, a PEM
//! header, the first words of a term). The hold-back never exceeds [`MAX_HOLD`] bytes: a
//! match still growing at that point (a JWT, a PEM block) is acted on at once — blocked, or
//! replaced by its label while the rest of it is swallowed as it arrives.
//!
//! Tool calls are different: arguments are JSON and argument rules need the whole
//! document, so they are accumulated per call and checked when the call is complete.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde_json::Value;
use tollgate_crds::safety::Detector;

use super::check::{self, Span, apply_spans};
use super::detectors::{self, Hit, Rule, SECRET_PREFIXES};
use super::injection::CATEGORIES;
use super::{
    Action, Applied, Category, Finding, Location, Outcome, PolicySet, Result, SafetyError, Stage, Violation,
    Wire, engine_error_finding,
};

/// Bytes of released text kept for matching across chunk boundaries.
pub const LOOKBEHIND: usize = 256;
/// Most bytes held back from the caller at any time, per choice / content block.
pub const MAX_HOLD: usize = 256;
/// Largest tool-call arguments accepted in a stream (they are held whole).
const MAX_TOOL_ARGUMENTS: usize = 4 << 20;
/// Most choices / content blocks per stream.
const MAX_INDEX: usize = 1024;

/// What a push allows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamStep {
    /// Text to send to the caller now (possibly with `[REDACTED:...]` in it). May be empty.
    pub release: String,
    /// End the stream now with a `policy_violation` error event.
    pub block: Option<Violation>,
    /// New findings (log them).
    pub findings: Vec<Finding>,
}

/// How the rest of an over-long match is swallowed once it has been redacted.
#[derive(Debug, Clone)]
enum Swallow {
    /// Bytes of this class continue the match.
    Class(fn(u8) -> bool),
    /// Until the PEM footer; keeps the last bytes seen to find it across chunks.
    PemFooter(String),
}

#[derive(Debug, Default)]
struct TextState {
    /// Released look-behind (`..split`) and held text (`split..`).
    buf: String,
    split: usize,
    /// Offset of `buf[0]` in the whole text of this index.
    base: usize,
    swallow: Option<Swallow>,
    /// Matches already reported: (rule, absolute start).
    reported: Vec<(Rule, usize)>,
}

#[derive(Debug)]
struct ToolCall {
    index: usize,
    call: usize,
    name: Option<String>,
    args: String,
}

/// Scans one streamed reply. Feed text deltas with [`push`](Self::push) and close each
/// choice / block with [`finish`](Self::finish); feed tool-call argument deltas with
/// [`push_tool_call`](Self::push_tool_call) and close each call with
/// [`finish_tool_call`](Self::finish_tool_call).
#[derive(Debug)]
pub struct StreamScanner {
    set: Arc<PolicySet>,
    wire: Wire,
    texts: Vec<Option<TextState>>,
    calls: Vec<ToolCall>,
    hold_tool_args: bool,
    /// Injection: patterns seen, the score, hits (pattern, index, absolute start, length),
    /// and, per injection binding, how many hits it has reported.
    seen: Vec<u16>,
    score: u32,
    injection_hits: Vec<(u16, usize, usize, usize)>,
    reported_upto: Vec<usize>,
    blocked: Option<Violation>,
    hits: Vec<Hit>,
    applied: Vec<Applied>,
}

impl StreamScanner {
    pub(super) fn new(set: Arc<PolicySet>, wire: Wire) -> Self {
        let rules = &set.output;
        let acts = |b: &super::Binding| !b.audit && b.action >= Action::Redact;
        let arg_rules = set.policies.iter().any(|p| {
            !p.audit
                && p.tools.as_ref().is_some_and(|t| t.arguments.iter().any(|a| a.action >= Action::Redact))
        });
        let hold_tool_args = !rules.hold_mask.is_empty()
            || rules.hold_regex
            || rules.hold_terms
            || rules.injection.iter().any(|(b, _)| acts(b))
            || arg_rules;
        let reported_upto = vec![0; rules.injection.len()];
        Self {
            set,
            wire,
            texts: Vec::new(),
            calls: Vec::new(),
            hold_tool_args,
            seen: Vec::new(),
            score: 0,
            injection_hits: Vec::new(),
            reported_upto,
            blocked: None,
            hits: Vec::new(),
            applied: Vec::new(),
        }
    }

    /// Whether nothing in the reply is checked: the caller may forward it untouched.
    pub fn is_passthrough(&self) -> bool {
        !self.set.checks_output()
    }

    /// Whether tool-call argument deltas are held until the call is complete (some enforce
    /// rule could block or rewrite them); if not, they are released as they come.
    pub fn holds_tool_arguments(&self) -> bool {
        self.hold_tool_args
    }

    /// A text delta of choice / content block `index`.
    pub fn push(&mut self, index: usize, delta: &str) -> StreamStep {
        self.guarded(|s| s.push_inner(index, delta, false))
    }

    /// The end of choice / content block `index`: releases what was held back.
    pub fn finish(&mut self, index: usize) -> StreamStep {
        self.guarded(|s| s.push_inner(index, "", true))
    }

    /// A tool-call delta: `call` is the call's index within the choice (OpenAI
    /// `tool_calls[].index`; 0 for an Anthropic `tool_use` block), `name` when it arrives.
    /// The name is checked at once; the arguments are released now only when
    /// [`holds_tool_arguments`](Self::holds_tool_arguments) is false.
    pub fn push_tool_call(
        &mut self,
        index: usize,
        call: usize,
        name: Option<&str>,
        arguments_delta: &str,
    ) -> StreamStep {
        self.guarded(|s| s.push_tool_call_inner(index, call, name, arguments_delta))
    }

    /// The end of a tool call: checks the whole arguments; when they were held, `release`
    /// is the arguments to send (possibly redacted).
    pub fn finish_tool_call(&mut self, index: usize, call: usize) -> StreamStep {
        self.guarded(|s| s.finish_tool_call_inner(index, call))
    }

    fn guarded(&mut self, f: impl FnOnce(&mut Self) -> Result<StreamStep>) -> StreamStep {
        if let Some(b) = &self.blocked {
            return StreamStep { release: String::new(), block: Some(b.clone()), findings: Vec::new() };
        }
        let step = match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(Ok(step)) => {
                if step.block.is_some() {
                    self.set.counters.blocked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                step
            }
            Ok(Err(e)) => self.fail(&e.to_string()),
            Err(_) => self.fail("panic in the safety engine"),
        };
        if let Some(b) = &step.block {
            self.blocked = Some(b.clone());
        }
        step
    }

    fn fail(&mut self, reason: &str) -> StreamStep {
        let f = engine_error_finding(&self.set.counters, Stage::Output, reason);
        StreamStep { release: String::new(), block: Some(f.clone()), findings: vec![f] }
    }

    fn text_path(&self, index: usize) -> String {
        match self.wire {
            Wire::OpenAi => format!("choices[{index}].delta.content"),
            Wire::Anthropic => format!("content[{index}].text"),
        }
    }

    fn push_inner(&mut self, index: usize, delta: &str, last: bool) -> Result<StreamStep> {
        if index >= MAX_INDEX {
            return Err(SafetyError::Internal(format!("stream index {index} out of range")));
        }
        if self.texts.len() <= index {
            self.texts.resize_with(index + 1, || None);
        }
        let mut st = self.texts[index].take().unwrap_or_default();
        let mut input = delta;
        if let Some(sw) = st.swallow.take() {
            let consumed = match sw {
                Swallow::Class(class) => {
                    let n = input.bytes().position(|c| !class(c)).unwrap_or(input.len());
                    if n == input.len() {
                        st.swallow = Some(Swallow::Class(class));
                    }
                    n
                }
                Swallow::PemFooter(mut tail) => {
                    let keep = tail.len();
                    tail.push_str(input);
                    match detectors::pem_footer_end(tail.as_bytes(), 0) {
                        Some(end) => end.saturating_sub(keep).min(input.len()),
                        None => {
                            let mut cut = tail.len().saturating_sub(64);
                            while !tail.is_char_boundary(cut) {
                                cut += 1;
                            }
                            st.swallow = Some(Swallow::PemFooter(tail[cut..].to_owned()));
                            input.len()
                        }
                    }
                }
            };
            st.base += consumed;
            input = input.get(consumed..).unwrap_or("");
        }
        if st.swallow.is_some() && !last {
            self.texts[index] = Some(st);
            return Ok(StreamStep::default());
        }
        st.swallow = None;
        st.buf.push_str(input);
        let step = self.process(index, &mut st, last);
        if !last {
            self.texts[index] = Some(st);
        }
        step
    }

    /// Scans the buffer of `index` and releases what can go.
    fn process(&mut self, index: usize, st: &mut TextState, last: bool) -> Result<StreamStep> {
        let set = Arc::clone(&self.set);
        let rules = &set.output;
        let path = self.text_path(index);
        let mut step = StreamStep::default();
        let mut hits = std::mem::take(&mut self.hits);
        hits.clear();
        rules.scan(&set, &st.buf, None, &mut hits);
        let n = st.buf.len();
        let split = st.split;
        let mut hold = n;
        let mut spans: Vec<Span> = Vec::new();
        // Enforce matches still growing at the end: (hit, strictest action, label).
        let mut open: Vec<(Hit, Action, Cow<'static, str>)> = Vec::new();
        let mut applied = std::mem::take(&mut self.applied);
        for hit in &hits {
            let touching = !last && hit.end >= n;
            if let Rule::Injection(p) = hit.rule {
                if touching || reported(st, hit) {
                    continue;
                }
                st.reported.push((hit.rule, st.base + hit.start));
                if !self.seen.contains(&p) {
                    self.seen.push(p);
                    self.score += set.builtins.injection.get(usize::from(p)).map_or(0, |x| x.weight);
                }
                if self.injection_hits.len() < 64 {
                    self.injection_hits.push((p, index, st.base + hit.start, hit.end - hit.start));
                }
                continue;
            }
            set.applied(Stage::Output, hit, &mut applied);
            if applied.is_empty() {
                continue;
            }
            let strictest = applied.iter().filter(|a| !a.binding.audit).map(|a| a.binding.action).max();
            if touching {
                if let Some(action) = strictest.filter(|a| *a >= Action::Redact) {
                    hold = hold.min(hit.redact_start.max(split));
                    let label = applied
                        .iter()
                        .find(|a| !a.binding.audit && a.binding.action == action)
                        .map(|a| a.label.clone());
                    open.push((*hit, action, label.unwrap_or(Cow::Borrowed("SECRET"))));
                }
                continue;
            }
            let new = !reported(st, hit);
            if new {
                st.reported.push((hit.rule, st.base + hit.start));
            }
            for a in applied.drain(..) {
                let f = finding(
                    &set,
                    &a,
                    &path,
                    index,
                    st.base + hit.redact_start,
                    hit.redact_end - hit.redact_start,
                );
                if !a.binding.audit {
                    match a.binding.action {
                        Action::Block if new || hit.redact_end > split => {
                            step.block.get_or_insert_with(|| f.clone());
                        }
                        Action::Redact if hit.redact_end > split => {
                            spans.push((hit.redact_start.max(split), hit.redact_end, a.label.clone()));
                        }
                        _ => {}
                    }
                }
                if new {
                    step.findings.push(f);
                }
            }
        }
        self.applied = applied;
        self.hits = hits;
        self.injection_decision(st, split, &mut step, &mut spans);
        if step.block.is_some() {
            step.release.clear();
            return Ok(step);
        }
        if !last {
            hold = hold.min(self.heuristic_hold(&set, &st.buf, split));
        }
        hold = hold.max(split);
        // A complete redaction straddling the hold point is held whole.
        for (s, e, _) in &spans {
            if *s < hold && *e > hold {
                hold = (*s).max(split);
            }
        }
        if !last && n - hold > MAX_HOLD {
            let mut cut = n - MAX_HOLD;
            while !st.buf.is_char_boundary(cut) {
                cut += 1;
            }
            let mut swallow = None;
            for (hit, action, label) in open.iter().filter(|(h, _, _)| h.redact_start < cut) {
                if *action == Action::Block {
                    set.applied(Stage::Output, hit, &mut self.applied);
                    let a =
                        self.applied.iter().find(|a| !a.binding.audit && a.binding.action == Action::Block);
                    if let Some(a) = a {
                        let f =
                            finding(&set, a, &path, index, st.base + hit.redact_start, n - hit.redact_start);
                        step.findings.push(f.clone());
                        step.block = Some(f);
                        return Ok(step);
                    }
                }
                set.applied(Stage::Output, hit, &mut self.applied);
                for a in &self.applied {
                    step.findings.push(finding(
                        &set,
                        a,
                        &path,
                        index,
                        st.base + hit.redact_start,
                        n - hit.redact_start,
                    ));
                }
                st.reported.push((hit.rule, st.base + hit.start));
                spans.push((hit.redact_start.max(split), n, label.clone()));
                swallow = Some(swallow_for(hit.rule, &st.buf[hit.redact_start..]));
            }
            hold = if swallow.is_some() { n } else { hold.max(cut) };
            for (s, e, _) in &spans {
                if *s < hold && *e > hold {
                    hold = *e;
                }
            }
            if swallow.is_some() {
                st.swallow = swallow;
            }
        }
        // Release buf[split..hold] with the redactions in it.
        let mut local: Vec<Span> = spans
            .into_iter()
            .filter(|(s, e, _)| *s < hold && *e > split)
            .map(|(s, e, l)| (s - split, e.min(hold) - split, l))
            .collect();
        step.release = apply_spans(&st.buf[split..hold], &mut local)
            .ok_or_else(|| SafetyError::Internal("stream redaction off a char boundary".to_owned()))?;
        st.split = hold;
        if st.swallow.is_some() {
            // The rest of the buffer was released; what follows is not contiguous with it.
            st.base += st.buf.len();
            st.buf.clear();
            st.split = 0;
        } else if st.split > LOOKBEHIND {
            let mut drop = st.split - LOOKBEHIND;
            while !st.buf.is_char_boundary(drop) {
                drop += 1;
            }
            st.buf.drain(..drop);
            st.base += drop;
            st.split -= drop;
        }
        let base = st.base;
        st.reported.retain(|(_, at)| *at >= base);
        Ok(step)
    }

    /// Injection: acts for every policy whose threshold the stream's score has reached.
    fn injection_decision(
        &mut self,
        st: &TextState,
        split: usize,
        step: &mut StreamStep,
        spans: &mut Vec<Span>,
    ) {
        let set = Arc::clone(&self.set);
        for (i, (b, threshold)) in set.output.injection.iter().enumerate() {
            if self.score < *threshold {
                continue;
            }
            let done = self.reported_upto.get(i).copied().unwrap_or(0);
            for (k, &(p, index, at, len)) in self.injection_hits.iter().enumerate() {
                let category = set.builtins.injection.get(usize::from(p)).map_or(0, |x| x.category);
                let f = Finding {
                    policy: set.policy_id(b.slot),
                    rule: Cow::Borrowed(CATEGORIES.get(category).copied().unwrap_or("injection")),
                    category: Category::Injection,
                    stage: Stage::Output,
                    action: b.action,
                    audit: b.audit,
                    location: Some(Location {
                        path: self.text_path(index),
                        message: Some(index),
                        offset: Some(at),
                        length: Some(len),
                    }),
                    score: Some(self.score),
                };
                let new = k >= done;
                if !b.audit {
                    match b.action {
                        Action::Block if new => {
                            step.block.get_or_insert_with(|| f.clone());
                        }
                        Action::Redact if at + len > st.base + split && at >= st.base => {
                            let s = (at - st.base).max(split);
                            spans.push((s, at - st.base + len, Cow::Borrowed("PROMPT_INJECTION")));
                        }
                        _ => {}
                    }
                }
                if new {
                    step.findings.push(f);
                }
            }
            if let Some(r) = self.reported_upto.get_mut(i) {
                *r = self.injection_hits.len();
            }
        }
    }

    /// Where the held-back tail starts: the earliest trailing position that could still
    /// begin something an enforce rule blocks or redacts.
    fn heuristic_hold(&self, set: &PolicySet, buf: &str, split: usize) -> usize {
        let rules = &set.output;
        let m = rules.hold_mask;
        let b = buf.as_bytes();
        let n = b.len();
        let floor = split.max(n.saturating_sub(MAX_HOLD + 64));
        let run_start = |class: &dyn Fn(u8) -> bool| {
            let mut i = n;
            while i > floor && class(b[i - 1]) {
                i -= 1;
            }
            i
        };
        let mut h = n;
        if m.has(Detector::Email) {
            h = h.min(run_start(&|c| c.is_ascii_alphanumeric() || b"._%+-@".contains(&c)));
        }
        let token = run_start(&|c| detectors::jwt_char(c) || c == b'.');
        if token < n {
            let run = &buf[token..];
            if SECRET_PREFIXES.iter().any(|(p, d)| m.has(*d) && (run.starts_with(p) || p.starts_with(run))) {
                h = h.min(token);
            }
        }
        if m.has(Detector::SlackToken) {
            let url = run_start(&|c| c.is_ascii_alphanumeric() || b":/._-".contains(&c));
            let run = &buf[url..];
            const HOOK: &str = "https://hooks.slack.com/services/";
            if url < n && (run.contains("hooks.slack.com") || HOOK.starts_with(run) || run.starts_with(HOOK))
            {
                h = h.min(url);
            }
        }
        if m.has(Detector::PrivateKey) {
            const BEGIN: &str = "-----BEGIN ";
            let from = n.saturating_sub(11 + 48).max(floor);
            for k in from..n {
                if b[k] != b'-' {
                    continue;
                }
                let rest = &buf[k..];
                let partial = BEGIN.starts_with(rest);
                let header = rest.starts_with(BEGIN) && detectors::pem_header_end(b, k).is_none();
                if partial || header {
                    h = h.min(k);
                    break;
                }
            }
        }
        if m.has(Detector::GenericAssignment) || m.has(Detector::AwsSecretKey) {
            let vs = run_start(&|c| !c.is_ascii_whitespace() && !b"\"'`,;\\".contains(&c));
            if assignment_in_progress(b, vs) {
                h = h.min(vs);
            }
            // A quoted value may hold spaces: `password = "correct horse battery`.
            // (The opening quote may already be in the released look-behind.)
            let from = n.saturating_sub(200);
            if let Some(q) = b[from..].iter().rposition(|c| *c == b'"' || *c == b'\'').map(|q| from + q)
                && !b[q + 1..].contains(&b'\n')
                && !b[q + 1..].contains(&b[q])
                && assignment_in_progress(b, q + 1)
            {
                h = h.min(q + 1);
            }
        }
        let numeric =
            [Detector::CreditCard, Detector::UsSsn, Detector::Phone, Detector::IpAddress, Detector::Iban];
        if numeric.iter().any(|d| m.has(*d)) {
            let iban = m.has(Detector::Iban);
            let mut s = run_start(&|c| {
                c.is_ascii_digit() || b" -.()+/".contains(&c) || (iban && c.is_ascii_uppercase())
            });
            while s < n && b[s] == b' ' {
                s += 1;
            }
            if b[s..].iter().any(u8::is_ascii_digit) {
                h = h.min(s);
            }
        }
        if m.has(Detector::IpAddress) {
            let s = run_start(&|c| c.is_ascii_hexdigit() || c == b':' || c == b'.');
            if b[s..].contains(&b':') {
                h = h.min(s);
            }
        }
        if rules.hold_regex {
            h = h.min(run_start(&|c| !c.is_ascii_whitespace()));
        }
        if rules.hold_terms {
            let mut from = floor;
            while !buf.is_char_boundary(from) {
                from += 1;
            }
            for slot in &rules.custom {
                if let Some(p) = set.policies.get(usize::from(*slot))
                    && let Some(s) = p.output.custom.term_prefix_start(&buf[from..])
                {
                    h = h.min(from + s);
                }
            }
        }
        h.max(split)
    }

    fn call_path(&self, index: usize, call: usize) -> String {
        match self.wire {
            Wire::OpenAi => format!("choices[{index}].delta.tool_calls[{call}].function"),
            Wire::Anthropic => format!("content[{index}]"),
        }
    }

    fn push_tool_call_inner(
        &mut self,
        index: usize,
        call: usize,
        name: Option<&str>,
        delta: &str,
    ) -> Result<StreamStep> {
        let pos = match self.calls.iter().position(|c| c.index == index && c.call == call) {
            Some(p) => p,
            None => {
                self.calls.push(ToolCall { index, call, name: None, args: String::new() });
                self.calls.len() - 1
            }
        };
        let mut step = StreamStep::default();
        if let Some(name) = name.filter(|n| !n.is_empty())
            && self.calls[pos].name.is_none()
        {
            self.calls[pos].name = Some(name.to_owned());
            let path = format!("{}.name", self.call_path(index, call));
            let v = check::tool_name(&self.set, name, path, Some(index))?;
            step.findings = v.findings;
            if let Outcome::Block(b) = v.outcome {
                step.block = Some(b);
                return Ok(step);
            }
        }
        let c = &mut self.calls[pos];
        if c.args.len() + delta.len() > MAX_TOOL_ARGUMENTS {
            return Err(SafetyError::Internal("streamed tool-call arguments too large".to_owned()));
        }
        c.args.push_str(delta);
        if !self.hold_tool_args {
            step.release = delta.to_owned();
        }
        Ok(step)
    }

    fn finish_tool_call_inner(&mut self, index: usize, call: usize) -> Result<StreamStep> {
        let Some(pos) = self.calls.iter().position(|c| c.index == index && c.call == call) else {
            return Ok(StreamStep::default());
        };
        let c = self.calls.swap_remove(pos);
        let path = match self.wire {
            Wire::OpenAi => format!("{}.arguments", self.call_path(index, call)),
            Wire::Anthropic => format!("{}.input", self.call_path(index, call)),
        };
        let v = check::tool_call(&self.set, c.name.as_deref(), false, &c.args, path, Some(index))?;
        let mut step = StreamStep { findings: v.findings, ..StreamStep::default() };
        match v.outcome {
            Outcome::Block(b) => step.block = Some(b),
            Outcome::Redact(Value::String(args)) if self.hold_tool_args => step.release = args,
            Outcome::Redact(_) | Outcome::Allow if self.hold_tool_args => step.release = c.args,
            _ => {}
        }
        Ok(step)
    }
}

fn reported(st: &TextState, hit: &Hit) -> bool {
    let at = st.base + hit.start;
    st.reported.iter().any(|(r, a)| *r == hit.rule && *a == at)
}

fn finding(set: &PolicySet, a: &Applied, path: &str, index: usize, offset: usize, length: usize) -> Finding {
    Finding {
        policy: set.policy_id(a.binding.slot),
        rule: a.rule.clone(),
        category: a.category,
        stage: Stage::Output,
        action: a.binding.action,
        audit: a.binding.audit,
        location: Some(Location {
            path: path.to_owned(),
            message: Some(index),
            offset: Some(offset),
            length: Some(length),
        }),
        score: None,
    }
}

/// How to swallow the rest of a redacted match still growing at the hold limit.
fn swallow_for(rule: Rule, matched: &str) -> Swallow {
    fn key(c: u8) -> bool {
        c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
    }
    fn jwt(c: u8) -> bool {
        key(c) || c == b'.'
    }
    fn email(c: u8) -> bool {
        c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
    }
    fn word(c: u8) -> bool {
        !c.is_ascii_whitespace() && !b"\"'`,;\\".contains(&c)
    }
    match rule {
        Rule::Builtin(Detector::PrivateKey) => {
            let tail = matched.len().saturating_sub(64);
            let mut cut = tail;
            while !matched.is_char_boundary(cut) {
                cut += 1;
            }
            Swallow::PemFooter(matched[cut..].to_owned())
        }
        Rule::Builtin(Detector::Jwt) => Swallow::Class(jwt),
        Rule::Builtin(Detector::Email) => Swallow::Class(email),
        Rule::Builtin(d) if !d.is_pii() && d != Detector::GenericAssignment => Swallow::Class(key),
        _ => Swallow::Class(word),
    }
}

/// Whether the text before `vs` is `<secret identifier> [quote] ws (=|:|:=|=>) ws [quote]`
/// or `Bearer `, i.e. a secret's value is arriving from `vs` on.
fn assignment_in_progress(b: &[u8], vs: usize) -> bool {
    let mut i = vs;
    let back = |i: &mut usize, pred: &dyn Fn(u8) -> bool, max: usize| {
        let mut n = 0;
        while *i > 0 && n < max && pred(b[*i - 1]) {
            *i -= 1;
            n += 1;
        }
        n
    };
    if vs >= 7 && b[vs - 7..vs].eq_ignore_ascii_case(b"bearer ") {
        return true;
    }
    back(&mut i, &|c| c == b'"' || c == b'\'' || c == b'`' || c == b'\\', 2);
    back(&mut i, &|c| c == b' ' || c == b'\t', 4);
    let sep = back(&mut i, &|c| c == b'=' || c == b':' || c == b'>', 2);
    if sep == 0 {
        return false;
    }
    back(&mut i, &|c| c == b' ' || c == b'\t', 4);
    back(&mut i, &|c| c == b'"' || c == b'\'' || c == b'\\', 2);
    let end = i;
    back(&mut i, &|c| c.is_ascii_alphanumeric() || b"_-.".contains(&c), 64);
    detectors::secret_ident(&b[i..end])
}
