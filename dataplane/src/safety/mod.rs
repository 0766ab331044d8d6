//! The safety service: stops personal data, secrets and prompt injections on their way into
//! and out of the LLM, and keeps agents to the tools they may use.
//!
//! Data flow: [`SafetyPolicyConfig`]s (validated in `tollgate-crds`) → [`SafetyEngine::new`]
//! compiles them once per configuration (the built-in detectors, each policy's regexes and
//! term lists) → per request, [`SafetyEngine::policies_for`] gives the [`PolicySet`] that
//! applies to the caller (cached) → the request path calls
//! [`PolicySet::check_request`] / [`PolicySet::check_embeddings_input`] before the upstream
//! call, [`PolicySet::check_response`] on a whole reply, or feeds a stream through
//! [`PolicySet::stream_scanner`]. Each returns a [`Verdict`]: allow, redact (with the new
//! body) or block (with the [`Violation`]), plus the findings to log.
//!
//! Findings name the policy, the rule, the category and where (JSON path, byte offset,
//! length) — never the matched text. If the engine fails in any way the verdict is a block
//! with rule `engine.error` (fail closed), counted in [`SafetyCounters::engine_errors`].
//! See this folder's README for the detectors, the injection patterns and the streaming
//! design.

mod check;
mod custom;
mod detectors;
mod injection;
pub mod log;
mod stream;
mod tools;

use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde_json::Value;
use tollgate_crds::safety::{InjectionConfig, LimitsConfig, PolicyMode, StageConfig, SubjectSelector};

pub use crate::providers::Wire;
pub use injection::CATEGORIES as INJECTION_RULES;
pub use stream::{StreamScanner, StreamStep};
pub use tollgate_crds::safety::{Action, Detector, SafetyPolicyConfig, SubjectKind};

use detectors::{Builtins, DetectorMask, Hit, Rule};

/// Errors of building the engine. Checking never errors: it fails closed into a verdict.
#[derive(Debug, thiserror::Error)]
pub enum SafetyError {
    /// A policy that cannot be compiled (the CRD compiler should have caught it).
    #[error("safety policy {policy}: {path}: {message}")]
    Policy { policy: String, path: String, message: String },
    /// Something inside the engine.
    #[error("safety engine: {0}")]
    Internal(String),
}

/// `Result` with [`SafetyError`].
pub type Result<T, E = SafetyError> = std::result::Result<T, E>;

/// Which way the text flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The request, to the model.
    Input,
    /// The reply, from the model.
    Output,
}

/// What kind of rule produced a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Personal data (`pii.*`).
    Pii,
    /// Credentials (`secrets.*`).
    Secret,
    /// Prompt injection (`injection.*`).
    Injection,
    /// A policy's own regex or term list (`custom.*`).
    Custom,
    /// Tool allow/deny lists and argument rules (`tools.*`).
    Tool,
    /// Request limits (`limits.*`).
    Limit,
    /// The engine itself failed (`engine.error`).
    Engine,
}

impl Stage {
    /// The name used in findings (`input`, `output`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
        }
    }
}

impl Category {
    /// The name used in findings (`pii`, `secret`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pii => "pii",
            Self::Secret => "secret",
            Self::Injection => "injection",
            Self::Custom => "custom",
            Self::Tool => "tool",
            Self::Limit => "limit",
            Self::Engine => "engine",
        }
    }
}

/// Where a finding is. Offsets are in bytes of the UTF-8 string at `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// JSON path of the string (`messages[2].content[0].text`,
    /// `choices[0].message.tool_calls[0].function.arguments.url`); for streams
    /// `choices[0].delta.content` or `content[1].text` with offsets into the whole stream.
    pub path: String,
    /// Message index (request), choice or content-block index (reply), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<usize>,
    /// Byte offset of the match in that string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
    /// Length of the match in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<usize>,
}

/// One rule that matched. Never holds the matched text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The policy (`namespace/name`), or `tollgate` for engine errors.
    pub policy: Arc<str>,
    /// Rule id: a detector id (`pii.email`), `injection.<category>`, `custom.<id>`,
    /// `tools.deny`, `tools.allow`, `tools.arguments.<id>`, `limits.<limit>` or `engine.error`.
    pub rule: Cow<'static, str>,
    /// The rule's category.
    pub category: Category,
    /// Input or output.
    pub stage: Stage,
    /// The rule's action.
    pub action: Action,
    /// The policy is in audit mode: the action was recorded, not taken.
    pub audit: bool,
    /// Where, when the rule matched text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The request's prompt-injection score (injection findings only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<u32>,
}

/// The finding that blocked a request or a stream.
pub type Violation = Finding;

impl Finding {
    /// A message for the caller (`policy_violation` errors): policy, rule, category and
    /// location, never the matched text.
    pub fn message(&self) -> String {
        let what = match self.stage {
            Stage::Input => "request blocked",
            Stage::Output => "response blocked",
        };
        let mut m = format!(
            "{what} by safety policy {}: rule {} ({})",
            self.policy,
            self.rule,
            serde_json::to_value(self.category)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        );
        if let Some(l) = &self.location {
            if !l.path.is_empty() {
                m.push_str(&format!(" at {}", l.path));
            }
            if let Some(o) = l.offset {
                m.push_str(&format!(", offset {o}"));
            }
        }
        if let Some(s) = self.score {
            m.push_str(&format!(", score {s}"));
        }
        m
    }
}

/// What to do with the request or reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Pass it on unchanged.
    Allow,
    /// Pass on this body instead (sensitive text replaced by `[REDACTED:KIND]`).
    Redact(Value),
    /// Refuse it (input: 400 `policy_violation`; output: end with an error).
    Block(Violation),
}

/// A decision and what led to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The decision.
    pub outcome: Outcome,
    /// Every finding, audit ones included (capped at [`MAX_FINDINGS`]), for logs and audit.
    pub findings: Vec<Finding>,
}

impl Verdict {
    /// Nothing to do and nothing found.
    pub fn allow() -> Self {
        Self { outcome: Outcome::Allow, findings: Vec::new() }
    }

    /// Whether the outcome is a block.
    pub fn is_block(&self) -> bool {
        matches!(self.outcome, Outcome::Block(_))
    }
}

/// Most findings kept in one verdict.
pub const MAX_FINDINGS: usize = 256;

/// Who is calling; policies select on these.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject {
    /// Developer, team or agent (the virtual key's principal).
    pub kind: SubjectKind,
    /// Its name.
    pub name: String,
    /// Its team, if any.
    pub team: Option<String>,
    /// Its Kubernetes namespace (agents), if any.
    pub namespace: Option<String>,
}

impl Subject {
    /// The subject of a virtual key's principal; `namespace` is the agent's Kubernetes
    /// namespace when known.
    pub fn from_principal(p: &crate::auth::Principal, namespace: Option<String>) -> Self {
        let kind = match p.kind {
            crate::auth::PrincipalKind::Developer => SubjectKind::Developer,
            crate::auth::PrincipalKind::Team => SubjectKind::Team,
            crate::auth::PrincipalKind::Agent => SubjectKind::Agent,
        };
        Self { kind, name: p.name.clone(), team: p.team.clone(), namespace }
    }
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct SafetyCounters {
    /// Checks that failed inside the engine and were refused (fail closed).
    pub engine_errors: AtomicU64,
    /// Requests and replies blocked (enforce mode).
    pub blocked: AtomicU64,
    /// Requests and replies redacted (enforce mode).
    pub redacted: AtomicU64,
}

/// The redaction label of a detector.
pub fn redaction_label(d: Detector) -> &'static str {
    match d {
        Detector::Email => "EMAIL",
        Detector::Phone => "PHONE",
        Detector::CreditCard => "CREDIT_CARD",
        Detector::UsSsn => "US_SSN",
        Detector::Iban => "IBAN",
        Detector::IpAddress => "IP_ADDRESS",
        Detector::AwsAccessKey => "AWS_ACCESS_KEY",
        Detector::AwsSecretKey => "AWS_SECRET_KEY",
        Detector::GithubToken => "GITHUB_TOKEN",
        Detector::SlackToken => "SLACK_TOKEN",
        Detector::OpenaiKey => "OPENAI_KEY",
        Detector::AnthropicKey => "ANTHROPIC_KEY",
        Detector::GoogleApiKey => "GOOGLE_API_KEY",
        Detector::StripeKey => "STRIPE_KEY",
        Detector::PrivateKey => "PRIVATE_KEY",
        Detector::Jwt => "JWT",
        Detector::GenericAssignment => "SECRET",
    }
}

/// `employee-id` → `EMPLOYEE_ID`.
fn label_of(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// The policy name engine errors are reported under.
const ENGINE_POLICY: &str = "tollgate";

// -------------------------------------------------------------------------------------
// Compiled policies
// -------------------------------------------------------------------------------------

/// A custom rule's reporting data.
#[derive(Debug)]
struct CustomRule {
    rule: String,
    label: String,
    action: Action,
}

#[derive(Debug)]
struct CompiledStage {
    detectors: Vec<(Detector, Action)>,
    injection: Option<InjectionConfig>,
    limits: Option<LimitsConfig>,
    custom: custom::CustomScanner,
    regex_rules: Vec<CustomRule>,
    term_rules: Vec<CustomRule>,
}

impl CompiledStage {
    fn new(policy: &str, path: &str, c: &StageConfig) -> Result<Self> {
        let custom = custom::CustomScanner::new(policy, path, &c.regex, &c.terms)?;
        let rule =
            |id: &str, action| CustomRule { rule: format!("custom.{id}"), label: label_of(id), action };
        Ok(Self {
            detectors: c.detectors.iter().map(|(d, a)| (*d, *a)).collect(),
            injection: c.injection,
            limits: c.limits,
            custom,
            regex_rules: c.regex.iter().map(|r| rule(&r.id, r.action)).collect(),
            term_rules: c.terms.iter().map(|r| rule(&r.id, r.action)).collect(),
        })
    }
}

#[derive(Debug)]
struct CompiledPolicy {
    id: Arc<str>,
    audit: bool,
    subjects: Vec<SubjectSelector>,
    input: CompiledStage,
    output: CompiledStage,
    tools: Option<tools::ToolRules>,
}

impl CompiledPolicy {
    fn new(c: &SafetyPolicyConfig) -> Result<Self> {
        Ok(Self {
            id: Arc::from(c.id.as_str()),
            audit: c.mode == PolicyMode::Audit,
            subjects: c.subjects.clone(),
            input: CompiledStage::new(&c.id, "spec.input", &c.input)?,
            output: CompiledStage::new(&c.id, "spec.output", &c.output)?,
            tools: tools::ToolRules::new(&c.id, &c.tools)?,
        })
    }

    fn stage(&self, stage: Stage) -> &CompiledStage {
        match stage {
            Stage::Input => &self.input,
            Stage::Output => &self.output,
        }
    }

    fn applies_to(&self, s: &Subject) -> bool {
        let name_ok = |pattern: &str, name: &str| pattern == "*" || pattern == name;
        self.subjects.is_empty()
            || self.subjects.iter().any(|sel| match sel.kind {
                SubjectKind::Developer | SubjectKind::Agent => {
                    s.kind == sel.kind && name_ok(&sel.name, &s.name)
                }
                SubjectKind::Team => {
                    (s.kind == SubjectKind::Team && name_ok(&sel.name, &s.name))
                        || s.team.as_deref().is_some_and(|t| name_ok(&sel.name, t))
                }
                SubjectKind::Namespace => s.namespace.as_deref().is_some_and(|n| name_ok(&sel.name, n)),
            })
    }
}

// -------------------------------------------------------------------------------------
// The engine
// -------------------------------------------------------------------------------------

/// Most distinct policy combinations cached; the cache is cleared when full.
const CACHE_LIMIT: usize = 4096;

/// All safety policies of one configuration, compiled.
#[derive(Debug)]
pub struct SafetyEngine {
    builtins: Arc<Builtins>,
    policies: Vec<Arc<CompiledPolicy>>,
    /// NB: keyed by the list of applicable policies, not by subject: thousands of agents
    /// share a handful of combinations, so the cache stays small and hits almost always.
    cache: RwLock<HashMap<Vec<u16>, Arc<PolicySet>>>,
    counters: Arc<SafetyCounters>,
    empty: Arc<PolicySet>,
}

impl SafetyEngine {
    /// Compiles `policies` (a configuration's `safetyPolicies`).
    pub fn new(policies: &[SafetyPolicyConfig]) -> Result<Self> {
        if policies.len() > usize::from(u16::MAX) {
            return Err(SafetyError::Internal("too many safety policies".to_owned()));
        }
        let builtins = Arc::new(Builtins::new()?);
        let compiled =
            policies.iter().map(|p| CompiledPolicy::new(p).map(Arc::new)).collect::<Result<Vec<_>>>()?;
        let counters = Arc::new(SafetyCounters::default());
        let empty = Arc::new(PolicySet::build(Arc::clone(&builtins), Vec::new(), Arc::clone(&counters)));
        Ok(Self { builtins, policies: compiled, cache: RwLock::new(HashMap::new()), counters, empty })
    }

    /// An engine with no policies: every check allows.
    pub fn empty() -> Result<Self> {
        Self::new(&[])
    }

    /// Counters for metrics.
    pub fn counters(&self) -> &SafetyCounters {
        &self.counters
    }

    /// The policies that apply to `subject`, combined. Cached per combination.
    pub fn policies_for(&self, subject: &Subject) -> Arc<PolicySet> {
        let key: Vec<u16> = self
            .policies
            .iter()
            .enumerate()
            .filter(|(_, p)| p.applies_to(subject))
            .filter_map(|(i, _)| u16::try_from(i).ok())
            .collect();
        self.set_of(key)
    }

    /// One policy by id (`namespace/name`), alone: for `POST /api/v1/safety/check` and
    /// `tollgate policy test`.
    pub fn policy(&self, id: &str) -> Option<Arc<PolicySet>> {
        let i = self.policies.iter().position(|p| &*p.id == id)?;
        Some(self.set_of(vec![u16::try_from(i).ok()?]))
    }

    /// Ids of the compiled policies.
    pub fn policy_ids(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| &*p.id)
    }

    fn set_of(&self, key: Vec<u16>) -> Arc<PolicySet> {
        if key.is_empty() {
            return Arc::clone(&self.empty);
        }
        if let Ok(cache) = self.cache.read()
            && let Some(set) = cache.get(&key)
        {
            return Arc::clone(set);
        }
        let policies = key.iter().filter_map(|i| self.policies.get(usize::from(*i)).cloned()).collect();
        let set =
            Arc::new(PolicySet::build(Arc::clone(&self.builtins), policies, Arc::clone(&self.counters)));
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, Arc::clone(&set));
        }
        set
    }
}

// -------------------------------------------------------------------------------------
// Policy sets
// -------------------------------------------------------------------------------------

/// A policy applying to a request, with its action and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Binding {
    slot: u16,
    action: Action,
    audit: bool,
}

/// The combined rules of one stage of a policy set.
#[derive(Debug)]
struct StageRules {
    stage: Stage,
    /// Built-in detectors any policy enables.
    mask: DetectorMask,
    /// Detector index → the policies enabling it.
    detectors: Vec<Vec<Binding>>,
    /// Policies scoring injection, with their thresholds.
    injection: Vec<(Binding, u32)>,
    /// Slots of policies with custom rules in this stage.
    custom: Vec<u16>,
    /// Request limits.
    limits: Vec<(Binding, LimitsConfig)>,
    /// Built-in detectors some enforce policy blocks or redacts (streams hold back for these).
    hold_mask: DetectorMask,
    /// Some enforce policy blocks or redacts with a custom regex / term list.
    hold_regex: bool,
    hold_terms: bool,
}

impl StageRules {
    fn build(stage: Stage, policies: &[Arc<CompiledPolicy>]) -> Self {
        let mut r = Self {
            stage,
            mask: DetectorMask::default(),
            detectors: vec![Vec::new(); Detector::ALL.len()],
            injection: Vec::new(),
            custom: Vec::new(),
            limits: Vec::new(),
            hold_mask: DetectorMask::default(),
            hold_regex: false,
            hold_terms: false,
        };
        for (slot, p) in policies.iter().enumerate() {
            let Ok(slot) = u16::try_from(slot) else { continue };
            let s = p.stage(stage);
            let acts = |a: Action| !p.audit && a >= Action::Redact;
            for (d, action) in &s.detectors {
                r.mask.insert(*d);
                if acts(*action) {
                    r.hold_mask.insert(*d);
                }
                if let Some(list) = r.detectors.get_mut(d.index()) {
                    list.push(Binding { slot, action: *action, audit: p.audit });
                }
            }
            if let Some(inj) = s.injection {
                r.injection.push((Binding { slot, action: inj.action, audit: p.audit }, inj.threshold));
            }
            if !s.custom.is_empty() {
                r.custom.push(slot);
                r.hold_regex |= s.custom.has_regex() && s.regex_rules.iter().any(|c| acts(c.action));
                r.hold_terms |= s.custom.has_terms() && s.term_rules.iter().any(|c| acts(c.action));
            }
            if let Some(l) = s.limits {
                r.limits.push((Binding { slot, action: l.action, audit: p.audit }, l));
            }
        }
        r
    }

    fn is_empty(&self) -> bool {
        self.mask.is_empty() && self.injection.is_empty() && self.custom.is_empty() && self.limits.is_empty()
    }

    /// Every match in `text` (built-ins, injection patterns, custom rules).
    fn scan(&self, set: &PolicySet, text: &str, key: Option<&str>, out: &mut Vec<Hit>) {
        set.builtins.scan(text, self.mask, !self.injection.is_empty(), key, out);
        for slot in &self.custom {
            if let Some(p) = set.policies.get(usize::from(*slot)) {
                p.stage(self.stage).custom.scan(*slot, text, out);
            }
        }
    }
}

/// What a non-injection hit means under one policy.
#[derive(Debug)]
struct Applied {
    binding: Binding,
    rule: Cow<'static, str>,
    category: Category,
    label: Cow<'static, str>,
}

/// The policies applying to one caller, combined: strictest action wins.
#[derive(Debug)]
pub struct PolicySet {
    builtins: Arc<Builtins>,
    policies: Vec<Arc<CompiledPolicy>>,
    input: StageRules,
    output: StageRules,
    counters: Arc<SafetyCounters>,
}

impl PolicySet {
    fn build(
        builtins: Arc<Builtins>,
        policies: Vec<Arc<CompiledPolicy>>,
        counters: Arc<SafetyCounters>,
    ) -> Self {
        let input = StageRules::build(Stage::Input, &policies);
        let output = StageRules::build(Stage::Output, &policies);
        Self { builtins, policies, input, output, counters }
    }

    /// Ids of the policies in this set.
    pub fn policy_ids(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| &*p.id)
    }

    /// Whether no policy applies (the request path may skip safety entirely).
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Whether replies need scanning at all (output rules or tool rules).
    pub fn checks_output(&self) -> bool {
        !self.output.is_empty() || self.policies.iter().any(|p| p.tools.is_some())
    }

    fn rules(&self, stage: Stage) -> &StageRules {
        match stage {
            Stage::Input => &self.input,
            Stage::Output => &self.output,
        }
    }

    fn policy_id(&self, slot: u16) -> Arc<str> {
        self.policies.get(usize::from(slot)).map_or_else(|| Arc::from(ENGINE_POLICY), |p| Arc::clone(&p.id))
    }

    /// The policies a (non-injection) hit applies under, with rule id and label.
    fn applied(&self, stage: Stage, hit: &Hit, out: &mut Vec<Applied>) {
        out.clear();
        match hit.rule {
            Rule::Builtin(d) => {
                let category = if d.is_pii() { Category::Pii } else { Category::Secret };
                for b in self.rules(stage).detectors.get(d.index()).into_iter().flatten() {
                    out.push(Applied {
                        binding: *b,
                        rule: Cow::Borrowed(d.as_str()),
                        category,
                        label: Cow::Borrowed(redaction_label(d)),
                    });
                }
            }
            Rule::Regex(slot, i) | Rule::Terms(slot, i) => {
                let Some(p) = self.policies.get(usize::from(slot)) else { return };
                let s = p.stage(stage);
                let list = if matches!(hit.rule, Rule::Regex(..)) { &s.regex_rules } else { &s.term_rules };
                if let Some(c) = list.get(usize::from(i)) {
                    out.push(Applied {
                        binding: Binding { slot, action: c.action, audit: p.audit },
                        rule: Cow::Owned(c.rule.clone()),
                        category: Category::Custom,
                        label: Cow::Owned(c.label.clone()),
                    });
                }
            }
            Rule::Injection(_) => {}
        }
    }

    /// Checks a chat request (`/v1/chat/completions` body for [`Wire::OpenAi`], `/v1/messages`
    /// for [`Wire::Anthropic`]): every message part, tool results, the system prompt, tool
    /// definitions (and the tool lists), and the limits.
    pub fn check_request(&self, body: &Value, wire: Wire) -> Verdict {
        self.guarded(Stage::Input, || check::request(self, body, wire))
    }

    /// Checks an `/v1/embeddings` body's `input`.
    pub fn check_embeddings_input(&self, body: &Value) -> Verdict {
        self.guarded(Stage::Input, || check::embeddings(self, body))
    }

    /// Checks a whole non-streaming reply, including tool-call names and arguments.
    pub fn check_response(&self, body: &Value, wire: Wire) -> Verdict {
        self.guarded(Stage::Output, || check::response(self, body, wire))
    }

    /// Checks one text as if it were a message of `stage` (the safety check API and
    /// `tollgate policy test`). A redaction is returned as `Outcome::Redact(Value::String)`.
    pub fn check_text(&self, text: &str, stage: Stage) -> Verdict {
        self.guarded(stage, || check::text(self, text, stage))
    }

    /// A scanner for one streamed reply.
    pub fn stream_scanner(self: &Arc<Self>, wire: Wire) -> StreamScanner {
        StreamScanner::new(Arc::clone(self), wire)
    }

    /// Runs a check; a panic or an internal error becomes an `engine.error` block.
    fn guarded(&self, stage: Stage, f: impl FnOnce() -> Result<Verdict>) -> Verdict {
        if self.policies.is_empty() {
            return Verdict::allow();
        }
        let verdict = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return self.engine_error(stage, &e.to_string()),
            Err(_) => return self.engine_error(stage, "panic in the safety engine"),
        };
        match verdict.outcome {
            Outcome::Block(_) => self.counters.blocked.fetch_add(1, Ordering::Relaxed),
            Outcome::Redact(_) => self.counters.redacted.fetch_add(1, Ordering::Relaxed),
            Outcome::Allow => 0,
        };
        verdict
    }

    /// A fail-closed verdict.
    fn engine_error(&self, stage: Stage, reason: &str) -> Verdict {
        let finding = engine_error_finding(&self.counters, stage, reason);
        Verdict { outcome: Outcome::Block(finding.clone()), findings: vec![finding] }
    }
}

/// Counts, logs and returns the `engine.error` finding.
fn engine_error_finding(counters: &SafetyCounters, stage: Stage, reason: &str) -> Finding {
    counters.engine_errors.fetch_add(1, Ordering::Relaxed);
    counters.blocked.fetch_add(1, Ordering::Relaxed);
    tracing::error!(?stage, reason, "safety engine failed; refusing (fail closed)");
    Finding {
        policy: Arc::from(ENGINE_POLICY),
        rule: Cow::Borrowed("engine.error"),
        category: Category::Engine,
        stage,
        action: Action::Block,
        audit: false,
        location: None,
        score: None,
    }
}

#[cfg(test)]
mod tests;
