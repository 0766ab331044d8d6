//! `SafetyPolicy`: what may go into and come out of an LLM, and which tools an agent may use.
//!
//! A policy selects subjects (developers, teams, agents, namespaces; none = everyone) and
//! carries rules for three stages: `input` (the request), `output` (the reply, streamed or
//! not) and `tools` (tool definitions sent to the model and tool calls it returns). Every
//! rule has an action, `block | redact | log`; several policies may apply to one request and
//! the strictest action wins. In `audit` mode a policy only records what it would have done.
//!
//! [`compile_safety`] validates policies (detector ids, regexes, limits) into the
//! serialisable [`SafetyPolicyConfig`]s the data plane compiles into its scanners. Nothing
//! downstream sees an unvalidated policy.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::budget::SubjectKind;
use crate::config::CompileError;

/// A safety policy: detectors and tool rules applied to the LLM traffic of its subjects.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tollgate.dev",
    version = "v1alpha1",
    kind = "SafetyPolicy",
    namespaced,
    status = "SafetyPolicyStatus",
    shortname = "sp",
    category = "tollgate",
    doc = "A safety policy: detectors and tool rules applied to the LLM traffic of its subjects.",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SafetyPolicySpec {
    /// Whose traffic this policy applies to. Empty (or absent) means everyone's.
    #[serde(default)]
    pub selector: PolicySelector,
    /// `enforce` (default) blocks and redacts; `audit` changes nothing and records what would
    /// have been done, for trying a policy on live traffic.
    #[serde(default)]
    pub mode: PolicyMode,
    /// Rules for what is sent to the model: every message part, tool results, the system
    /// prompt and tool definitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputRules>,
    /// Rules for what the model answers, including tool-call arguments; applied to streams
    /// as they flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputRules>,
    /// Which tools may be offered to and called by the model, and rules on call arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<ToolRules>,
}

/// Whose traffic a policy applies to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySelector {
    /// The subjects; a request matches when its developer, team, agent or namespace is one
    /// of them. Empty means every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub subjects: Vec<SubjectSelector>,
}

/// One subject a policy applies to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectSelector {
    /// `developer`, `team`, `agent` or `namespace`.
    pub kind: SubjectKind,
    /// The subject's name; `*` matches every subject of this kind.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Whether a policy acts or only records.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Block and redact as the rules say.
    #[default]
    Enforce,
    /// Record findings with the action that would have been taken; change nothing.
    Audit,
}

/// What a rule does when it matches. Ordered from mildest to strictest.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Record a finding; let the text through unchanged.
    Log,
    /// Replace the matched text with `[REDACTED:KIND]` and let the rest through.
    Redact,
    /// Refuse the request (input) or end the reply (output) with `policy_violation`.
    Block,
}

impl Action {
    /// The name used in resources and findings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Redact => "redact",
            Self::Block => "block",
        }
    }
}

/// Rules for the request sent to the model.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InputRules {
    /// Built-in detectors (`pii.email`, `secrets.*`, ...) and their actions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub detectors: Vec<DetectorRule>,
    /// Prompt-injection scoring: weighted patterns summed per request, acting at a threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<InjectionRule>,
    /// The policy's own regular expressions and term lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomRules>,
    /// Size limits on the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

/// Rules for the model's reply.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutputRules {
    /// Built-in detectors (`pii.email`, `secrets.*`, ...) and their actions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub detectors: Vec<DetectorRule>,
    /// Prompt-injection scoring on the reply (for replies that other agents will read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<InjectionRule>,
    /// The policy's own regular expressions and term lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomRules>,
}

/// A built-in detector, or a category of them, and its action.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DetectorRule {
    /// A detector id (`pii.email`, `secrets.github_token`) or a category wildcard (`pii.*`,
    /// `secrets.*`, `*` for both). Within one list an exact id overrides a wildcard.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9_.*]+$"))]
    pub id: String,
    /// `block`, `redact` or `log`.
    pub action: Action,
}

/// Prompt-injection scoring.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectionRule {
    /// Score at which the action is taken: the sum of the weights of the distinct patterns
    /// found (see the data plane's safety README for the patterns). Default 100, which one
    /// strong pattern reaches alone.
    #[serde(default = "default_injection_threshold")]
    #[schemars(range(min = 1, max = 100000))]
    pub threshold: u32,
    /// `block`, `redact` (the matched phrases) or `log`.
    pub action: Action,
}

/// The default prompt-injection threshold.
pub const DEFAULT_INJECTION_THRESHOLD: u32 = 100;

fn default_injection_threshold() -> u32 {
    DEFAULT_INJECTION_THRESHOLD
}

/// A policy's own patterns.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomRules {
    /// Regular expressions (Rust `regex` syntax, no look-around or back-references; add
    /// `(?i)` for case-insensitive matching).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub regex: Vec<RegexRule>,
    /// Term lists, matched case-insensitively at word boundaries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub terms: Vec<TermsRule>,
}

/// A custom regular expression.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexRule {
    /// Rule id, reported as `custom.<id>` and used in the redaction label
    /// (`employee-id` → `[REDACTED:EMPLOYEE_ID]`). Lower-case letters, digits, `-`, `_`, `.`.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,62}$"))]
    pub id: String,
    /// The pattern. It must not match the empty string.
    #[schemars(length(min = 1, max = 4096))]
    pub pattern: String,
    /// `block`, `redact` or `log`.
    pub action: Action,
}

/// A custom term list.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TermsRule {
    /// Rule id, reported as `custom.<id>`. Lower-case letters, digits, `-`, `_`, `.`.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,62}$"))]
    pub id: String,
    /// The terms (words or phrases), matched case-insensitively at word boundaries.
    #[schemars(length(min = 1, max = 10000), inner(length(min = 1, max = 256)))]
    pub terms: Vec<String>,
    /// `block`, `redact` or `log`.
    pub action: Action,
}

/// Size limits on a request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.action != 'redact'", "message": "limits support block or log: there is nothing to redact"}
]))]
pub struct Limits {
    /// Most input tokens, estimated from the text (one token per four bytes, rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_input_tokens: Option<u64>,
    /// Most messages in a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_messages: Option<u32>,
    /// Most tool definitions in a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tool_definitions: Option<u32>,
    /// `block` (default) or `log`.
    #[serde(default = "default_block")]
    pub action: Action,
}

fn default_block() -> Action {
    Action::Block
}

/// Tool rules.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.action != 'redact'", "message": "tool allow/deny lists support block or log"}
]))]
pub struct ToolRules {
    /// Tool-name patterns that may be used (`*` matches any run of characters, `?` one).
    /// Empty means every tool not denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 256),
        inner(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_.:/*?-]+$"))
    )]
    pub allow: Vec<String>,
    /// Tool-name patterns that must not be used; deny wins over allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 256),
        inner(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_.:/*?-]+$"))
    )]
    pub deny: Vec<String>,
    /// What a tool outside the lists does: `block` (default) or `log`. Applies to tool
    /// definitions in requests and to tool calls in replies.
    #[serde(default = "default_block")]
    pub action: Action,
    /// Rules on the arguments of the tool calls the model returns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub arguments: Vec<ArgumentRule>,
}

/// A pattern on one argument of a tool call.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgumentRule {
    /// Rule id, reported as `tools.arguments.<id>` (default: the rule's index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,62}$"))]
    pub id: Option<String>,
    /// Tool-name pattern the rule applies to (`*` and `?` wildcards).
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_.:/*?-]+$"))]
    pub tool: String,
    /// JSON pointer (RFC 6901) into the call's arguments, such as `/url` or `/options/path`;
    /// empty for the whole arguments object.
    #[schemars(length(max = 1024), regex(pattern = r"^(/.*)?$"))]
    pub pointer: String,
    /// Regular expression matched against the value (strings as they are, other values as
    /// JSON). A match triggers the action.
    #[schemars(length(min = 1, max = 4096))]
    pub pattern: String,
    /// `block`, `redact` (the matched part) or `log`.
    pub action: Action,
}

/// Observed state of a safety policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SafetyPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions (`Ready`, with a reason and message when the policy is invalid;
    /// the last valid version stays in force; `InvalidPattern` names the bad expression).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------------------------------
// Built-in detectors
// ---------------------------------------------------------------------------------------

/// A built-in detector. NB: adding one is a compile error in the data plane until its
/// scanner handles it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    /// E-mail addresses.
    #[serde(rename = "pii.email")]
    Email,
    /// Phone numbers: E.164 and common national formats.
    #[serde(rename = "pii.phone")]
    Phone,
    /// Payment card numbers (Luhn-checked, known issuer prefixes).
    #[serde(rename = "pii.credit_card")]
    CreditCard,
    /// US social security numbers (invalid ranges excluded).
    #[serde(rename = "pii.us_ssn")]
    UsSsn,
    /// IBANs (mod-97 checked).
    #[serde(rename = "pii.iban")]
    Iban,
    /// IPv4 and IPv6 addresses (validated; loopback and unspecified excluded).
    #[serde(rename = "pii.ip_address")]
    IpAddress,
    /// AWS access key ids.
    #[serde(rename = "secrets.aws_access_key")]
    AwsAccessKey,
    /// AWS secret access keys.
    #[serde(rename = "secrets.aws_secret_key")]
    AwsSecretKey,
    /// GitHub tokens.
    #[serde(rename = "secrets.github_token")]
    GithubToken,
    /// Slack tokens and webhook URLs.
    #[serde(rename = "secrets.slack_token")]
    SlackToken,
    /// OpenAI API keys.
    #[serde(rename = "secrets.openai_key")]
    OpenaiKey,
    /// Anthropic API keys.
    #[serde(rename = "secrets.anthropic_key")]
    AnthropicKey,
    /// Google API keys.
    #[serde(rename = "secrets.google_api_key")]
    GoogleApiKey,
    /// Stripe secret and restricted keys, webhook secrets.
    #[serde(rename = "secrets.stripe_key")]
    StripeKey,
    /// PEM private key blocks.
    #[serde(rename = "secrets.private_key")]
    PrivateKey,
    /// JSON Web Tokens.
    #[serde(rename = "secrets.jwt")]
    Jwt,
    /// `password=...`, `api_key: ...` and similar assignments.
    #[serde(rename = "secrets.generic_assignment")]
    GenericAssignment,
}

impl Detector {
    /// Every built-in detector, PII first.
    pub const ALL: [Detector; 17] = [
        Self::Email,
        Self::Phone,
        Self::CreditCard,
        Self::UsSsn,
        Self::Iban,
        Self::IpAddress,
        Self::AwsAccessKey,
        Self::AwsSecretKey,
        Self::GithubToken,
        Self::SlackToken,
        Self::OpenaiKey,
        Self::AnthropicKey,
        Self::GoogleApiKey,
        Self::StripeKey,
        Self::PrivateKey,
        Self::Jwt,
        Self::GenericAssignment,
    ];

    /// The id used in policies and findings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "pii.email",
            Self::Phone => "pii.phone",
            Self::CreditCard => "pii.credit_card",
            Self::UsSsn => "pii.us_ssn",
            Self::Iban => "pii.iban",
            Self::IpAddress => "pii.ip_address",
            Self::AwsAccessKey => "secrets.aws_access_key",
            Self::AwsSecretKey => "secrets.aws_secret_key",
            Self::GithubToken => "secrets.github_token",
            Self::SlackToken => "secrets.slack_token",
            Self::OpenaiKey => "secrets.openai_key",
            Self::AnthropicKey => "secrets.anthropic_key",
            Self::GoogleApiKey => "secrets.google_api_key",
            Self::StripeKey => "secrets.stripe_key",
            Self::PrivateKey => "secrets.private_key",
            Self::Jwt => "secrets.jwt",
            Self::GenericAssignment => "secrets.generic_assignment",
        }
    }

    /// The detector with this id.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == id)
    }

    /// Whether it finds personal data (else: secrets).
    pub fn is_pii(self) -> bool {
        self.as_str().starts_with("pii.")
    }

    /// Position in [`Detector::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

// ---------------------------------------------------------------------------------------
// Compiled configuration
// ---------------------------------------------------------------------------------------

/// A validated safety policy, as the data plane receives it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SafetyPolicyConfig {
    /// `namespace/name`.
    pub id: String,
    /// Subjects, sorted; empty means everyone.
    pub subjects: Vec<SubjectSelector>,
    /// Enforce or audit.
    pub mode: PolicyMode,
    /// Rules on requests.
    pub input: StageConfig,
    /// Rules on replies.
    pub output: StageConfig,
    /// Tool rules.
    pub tools: ToolsConfig,
}

/// The rules of one stage, validated.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StageConfig {
    /// Detector → action, wildcards expanded, one entry per detector.
    pub detectors: BTreeMap<Detector, Action>,
    /// Prompt-injection scoring, when enabled.
    pub injection: Option<InjectionConfig>,
    /// Custom regular expressions.
    pub regex: Vec<RegexConfig>,
    /// Custom term lists.
    pub terms: Vec<TermsConfig>,
    /// Request limits (input stage only).
    pub limits: Option<LimitsConfig>,
}

impl StageConfig {
    /// Whether the stage has no rule at all.
    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty()
            && self.injection.is_none()
            && self.regex.is_empty()
            && self.terms.is_empty()
            && self.limits.is_none()
    }
}

/// Prompt-injection scoring.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InjectionConfig {
    /// Score at which the action is taken (≥ 1).
    pub threshold: u32,
    /// The action.
    pub action: Action,
}

/// A validated custom regular expression.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RegexConfig {
    /// Rule id (without the `custom.` prefix).
    pub id: String,
    /// The pattern; compiles within [`REGEX_SIZE_LIMIT`].
    pub pattern: String,
    /// The action.
    pub action: Action,
}

/// A validated term list.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TermsConfig {
    /// Rule id (without the `custom.` prefix).
    pub id: String,
    /// Trimmed, non-empty, de-duplicated terms.
    pub terms: Vec<String>,
    /// The action.
    pub action: Action,
}

/// Validated request limits.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LimitsConfig {
    /// Most estimated input tokens.
    pub max_input_tokens: Option<u64>,
    /// Most messages.
    pub max_messages: Option<u32>,
    /// Most tool definitions.
    pub max_tool_definitions: Option<u32>,
    /// `block` or `log`.
    pub action: Action,
}

/// Validated tool rules.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ToolsConfig {
    /// Allowed tool-name patterns; empty allows every tool not denied.
    pub allow: Vec<String>,
    /// Denied tool-name patterns.
    pub deny: Vec<String>,
    /// Action for a tool outside the lists (`block` or `log`).
    pub action: Action,
    /// Argument rules.
    pub arguments: Vec<ArgumentRuleConfig>,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self { allow: Vec::new(), deny: Vec::new(), action: Action::Block, arguments: Vec::new() }
    }
}

/// A validated argument rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArgumentRuleConfig {
    /// Rule id (without the `tools.arguments.` prefix).
    pub id: String,
    /// Tool-name pattern.
    pub tool: String,
    /// JSON pointer into the arguments.
    pub pointer: String,
    /// Regular expression.
    pub pattern: String,
    /// The action.
    pub action: Action,
}

/// Compiled size limit of one regular expression (bytes of the compiled program).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Longest regular expression accepted, in bytes of source.
pub const MAX_PATTERN_LEN: usize = 4096;
/// Longest term accepted, in bytes.
pub const MAX_TERM_LEN: usize = 256;
/// Most terms in one list.
pub const MAX_TERMS: usize = 10_000;

/// Builds a regular expression the way the data plane does (same size limits).
pub fn build_regex(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("pattern is longer than {MAX_PATTERN_LEN} bytes"));
    }
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::Syntax(s) => format!("invalid regular expression: {}", s.trim()),
            regex::Error::CompiledTooBig(n) => {
                format!("regular expression is too large when compiled (limit {n} bytes)")
            }
            other => format!("invalid regular expression: {other}"),
        })?;
    if re.is_match("") {
        return Err("pattern matches the empty string; it would match everywhere".to_owned());
    }
    Ok(re)
}

/// Whether `id` is a valid rule id: lower-case letters, digits, `-`, `_`, `.`, 1–63 bytes,
/// starting with a letter or digit.
fn valid_rule_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// Whether `pattern` is a valid tool-name pattern.
fn valid_tool_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= 128
        && pattern.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/*?".contains(&b))
}

/// Validates safety policies into configurations, sorted by id, or lists every problem.
pub fn compile_safety(policies: &[SafetyPolicy]) -> Result<Vec<SafetyPolicyConfig>, Vec<CompileError>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let mut ids = HashSet::new();
    for policy in policies {
        let name = policy.metadata.name.clone().unwrap_or_default();
        let namespace = policy.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let id = format!("{namespace}/{name}");
        let before = errors.len();
        let mut err = |path: String, message: String| {
            errors.push(CompileError { resource: format!("SafetyPolicy/{id}"), path, message });
        };
        if name.is_empty() {
            err("metadata.name".to_owned(), "a name is required".to_owned());
        }
        if !ids.insert(id.clone()) {
            err("metadata.name".to_owned(), "defined more than once".to_owned());
        }
        let spec = &policy.spec;
        let mut subjects = Vec::new();
        for (i, s) in spec.selector.subjects.iter().enumerate() {
            if s.name.trim().is_empty() {
                err(format!("spec.selector.subjects[{i}].name"), "must not be empty".to_owned());
            }
            subjects.push(SubjectSelector { kind: s.kind, name: s.name.trim().to_owned() });
        }
        subjects.sort();
        subjects.dedup();
        let input = match &spec.input {
            None => StageConfig::default(),
            Some(r) => {
                let mut stage = compile_stage(
                    "spec.input",
                    &r.detectors,
                    r.injection.as_ref(),
                    r.custom.as_ref(),
                    &mut err,
                );
                if let Some(l) = &r.limits {
                    stage.limits = compile_limits(l, &mut err);
                }
                stage
            }
        };
        let output = match &spec.output {
            None => StageConfig::default(),
            Some(r) => {
                compile_stage("spec.output", &r.detectors, r.injection.as_ref(), r.custom.as_ref(), &mut err)
            }
        };
        let tools = spec.tools.as_ref().map(|t| compile_tools(t, &mut err)).unwrap_or_default();
        if errors.len() == before {
            out.push(SafetyPolicyConfig { id, subjects, mode: spec.mode, input, output, tools });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

fn compile_stage(
    path: &str,
    detectors: &[DetectorRule],
    injection: Option<&InjectionRule>,
    custom: Option<&CustomRules>,
    err: &mut impl FnMut(String, String),
) -> StageConfig {
    let mut stage = StageConfig::default();
    // Wildcards first, then exact ids, so an exact id overrides a wildcard in the same list.
    let mut exact: BTreeMap<Detector, Action> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (i, rule) in detectors.iter().enumerate() {
        let id = rule.id.trim();
        if !seen.insert(id) {
            err(format!("{path}.detectors[{i}].id"), format!("{id:?} is listed twice"));
            continue;
        }
        let wildcard: Option<fn(&Detector) -> bool> = match id {
            "*" => Some(|_| true),
            "pii.*" => Some(|d| d.is_pii()),
            "secrets.*" => Some(|d| !d.is_pii()),
            _ => None,
        };
        if let Some(select) = wildcard {
            for d in Detector::ALL.iter().filter(|d| select(d)) {
                stage.detectors.insert(*d, rule.action);
            }
        } else if let Some(d) = Detector::from_id(id) {
            exact.insert(d, rule.action);
        } else if id.starts_with("injection") {
            err(
                format!("{path}.detectors[{i}].id"),
                format!("{id:?}: prompt injection is configured under `injection` (threshold and action)"),
            );
        } else {
            let known: Vec<&str> = Detector::ALL.iter().map(|d| d.as_str()).collect();
            err(
                format!("{path}.detectors[{i}].id"),
                format!("unknown detector {id:?}; known: pii.*, secrets.*, *, {}", known.join(", ")),
            );
        }
    }
    stage.detectors.extend(exact);
    if let Some(inj) = injection {
        if inj.threshold == 0 {
            err(format!("{path}.injection.threshold"), "must be at least 1".to_owned());
        }
        stage.injection = Some(InjectionConfig { threshold: inj.threshold.max(1), action: inj.action });
    }
    let mut rule_ids = HashSet::new();
    if let Some(custom) = custom {
        for (i, r) in custom.regex.iter().enumerate() {
            let p = format!("{path}.custom.regex[{i}]");
            if !valid_rule_id(&r.id) {
                err(format!("{p}.id"), format!("{:?} is not a valid rule id (a-z, 0-9, -, _, .)", r.id));
            } else if !rule_ids.insert(r.id.clone()) {
                err(format!("{p}.id"), format!("rule id {:?} is used twice", r.id));
            }
            if let Err(message) = build_regex(&r.pattern) {
                err(format!("{p}.pattern"), message);
            }
            stage.regex.push(RegexConfig { id: r.id.clone(), pattern: r.pattern.clone(), action: r.action });
        }
        for (i, r) in custom.terms.iter().enumerate() {
            let p = format!("{path}.custom.terms[{i}]");
            if !valid_rule_id(&r.id) {
                err(format!("{p}.id"), format!("{:?} is not a valid rule id (a-z, 0-9, -, _, .)", r.id));
            } else if !rule_ids.insert(r.id.clone()) {
                err(format!("{p}.id"), format!("rule id {:?} is used twice", r.id));
            }
            if r.terms.is_empty() {
                err(format!("{p}.terms"), "at least one term is required".to_owned());
            }
            if r.terms.len() > MAX_TERMS {
                err(format!("{p}.terms"), format!("more than {MAX_TERMS} terms"));
            }
            let mut terms: Vec<String> = Vec::new();
            let mut seen_terms = HashSet::new();
            for (j, t) in r.terms.iter().enumerate() {
                let t = t.trim();
                if t.is_empty() {
                    err(format!("{p}.terms[{j}]"), "must not be empty".to_owned());
                } else if t.len() > MAX_TERM_LEN {
                    err(format!("{p}.terms[{j}]"), format!("longer than {MAX_TERM_LEN} bytes"));
                } else if seen_terms.insert(t.to_lowercase()) {
                    terms.push(t.to_owned());
                }
            }
            stage.terms.push(TermsConfig { id: r.id.clone(), terms, action: r.action });
        }
    }
    stage
}

fn compile_limits(l: &Limits, err: &mut impl FnMut(String, String)) -> Option<LimitsConfig> {
    let action = l.action;
    if action == Action::Redact {
        err("spec.input.limits.action".to_owned(), "limits support `block` or `log`".to_owned());
    }
    if l.max_input_tokens.is_none() && l.max_messages.is_none() && l.max_tool_definitions.is_none() {
        return None;
    }
    Some(LimitsConfig {
        max_input_tokens: l.max_input_tokens,
        max_messages: l.max_messages,
        max_tool_definitions: l.max_tool_definitions,
        action,
    })
}

fn compile_tools(t: &ToolRules, err: &mut impl FnMut(String, String)) -> ToolsConfig {
    let action = t.action;
    if action == Action::Redact {
        err("spec.tools.action".to_owned(), "tool allow/deny lists support `block` or `log`".to_owned());
    }
    for (list, name) in [(&t.allow, "allow"), (&t.deny, "deny")] {
        for (i, p) in list.iter().enumerate() {
            if !valid_tool_pattern(p) {
                err(
                    format!("spec.tools.{name}[{i}]"),
                    format!(
                        "{p:?} is not a tool-name pattern (letters, digits, - _ . : / and * ? wildcards)"
                    ),
                );
            }
        }
    }
    let mut arguments = Vec::new();
    let mut ids = HashSet::new();
    for (i, r) in t.arguments.iter().enumerate() {
        let p = format!("spec.tools.arguments[{i}]");
        let id = r.id.clone().unwrap_or_else(|| i.to_string());
        if !valid_rule_id(&id) {
            err(format!("{p}.id"), format!("{id:?} is not a valid rule id (a-z, 0-9, -, _, .)"));
        } else if !ids.insert(id.clone()) {
            err(format!("{p}.id"), format!("rule id {id:?} is used twice"));
        }
        if !valid_tool_pattern(&r.tool) {
            err(format!("{p}.tool"), format!("{:?} is not a tool-name pattern", r.tool));
        }
        if !(r.pointer.is_empty() || r.pointer.starts_with('/')) {
            err(
                format!("{p}.pointer"),
                format!("{:?} is not a JSON pointer (it must start with /)", r.pointer),
            );
        }
        if let Err(message) = build_regex(&r.pattern) {
            err(format!("{p}.pattern"), message);
        }
        arguments.push(ArgumentRuleConfig {
            id,
            tool: r.tool.clone(),
            pointer: r.pointer.clone(),
            pattern: r.pattern.clone(),
            action: r.action,
        });
    }
    ToolsConfig { allow: t.allow.clone(), deny: t.deny.clone(), action, arguments }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> SafetyPolicy {
        let doc = format!(
            "apiVersion: tollgate.dev/v1alpha1\nkind: SafetyPolicy\nmetadata: {{name: p, namespace: ai}}\n{yaml}"
        );
        serde_yaml::from_str(&doc).unwrap()
    }

    #[test]
    fn compiles_a_full_policy() {
        let p = policy(
            r#"
spec:
  selector:
    subjects:
      - {kind: team, name: payments}
      - {kind: agent, name: support-bot}
  input:
    detectors:
      - {id: "pii.*", action: redact}
      - {id: pii.ip_address, action: log}
      - {id: "secrets.*", action: block}
    injection: {action: block}
    custom:
      regex:
        - {id: employee-id, pattern: 'EMP-\d{6}', action: redact}
      terms:
        - {id: codenames, terms: [Project Falcon, " bluebird ", BLUEBIRD], action: block}
    limits: {maxInputTokens: 32000, maxMessages: 50}
  output:
    detectors:
      - {id: "*", action: redact}
  tools:
    allow: ["search_*", get_weather]
    deny: ["shell*"]
    arguments:
      - {tool: http_get, pointer: /url, pattern: 'internal\.example', action: block}
"#,
        );
        let c = compile_safety(&[p]).unwrap();
        assert_eq!(c.len(), 1);
        let c = &c[0];
        assert_eq!(c.id, "ai/p");
        assert_eq!(c.mode, PolicyMode::Enforce);
        assert_eq!(c.subjects.len(), 2);
        assert_eq!(c.input.detectors[&Detector::Email], Action::Redact);
        assert_eq!(c.input.detectors[&Detector::IpAddress], Action::Log, "exact id overrides the wildcard");
        assert_eq!(c.input.detectors[&Detector::Jwt], Action::Block);
        assert_eq!(c.input.detectors.len(), Detector::ALL.len());
        assert_eq!(c.input.injection, Some(InjectionConfig { threshold: 100, action: Action::Block }));
        assert_eq!(c.input.terms[0].terms, vec!["Project Falcon", "bluebird"]);
        let limits = c.input.limits.unwrap();
        assert_eq!(limits.max_input_tokens, Some(32000));
        assert_eq!(limits.action, Action::Block);
        assert_eq!(c.output.detectors.len(), Detector::ALL.len());
        assert!(c.output.limits.is_none());
        assert_eq!(c.tools.arguments[0].id, "0");
        assert_eq!(c.tools.action, Action::Block);
        // The configuration round-trips through JSON (it travels in a ConfigMap).
        let json = serde_json::to_string(c).unwrap();
        assert!(json.contains("\"pii.email\":\"redact\""), "{json}");
        let back: SafetyPolicyConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, c);
    }

    #[test]
    fn an_empty_policy_applies_to_everyone_and_does_nothing() {
        let c = compile_safety(&[policy("spec: {}")]).unwrap();
        assert!(c[0].subjects.is_empty());
        assert!(c[0].input.is_empty() && c[0].output.is_empty());
    }

    #[test]
    fn names_resource_path_and_reason_of_an_invalid_regex() {
        let p = policy(
            r#"
spec:
  input:
    custom:
      regex:
        - {id: a, pattern: 'ok', action: log}
        - {id: b, pattern: 'fine\d', action: log}
        - {id: c, pattern: '(unclosed', action: block}
"#,
        );
        let e = compile_safety(&[p]).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].resource, "SafetyPolicy/ai/p");
        assert_eq!(e[0].path, "spec.input.custom.regex[2].pattern");
        assert!(e[0].message.contains("invalid regular expression"), "{}", e[0].message);
    }

    #[test]
    fn rejects_oversized_and_empty_matching_regexes() {
        assert!(build_regex("a*").unwrap_err().contains("empty string"));
        assert!(build_regex(&"a".repeat(MAX_PATTERN_LEN + 1)).unwrap_err().contains("longer"));
        // A pattern that is small in source but huge when compiled.
        assert!(build_regex(r"\w{1000}\w{1000}\w{1000}").unwrap_err().contains("too large"));
        assert!(build_regex(r"(?i)sk-[a-z]{20}").is_ok());
    }

    #[test]
    fn rejects_unknown_detectors_and_bad_rules() {
        let p = policy(
            r#"
spec:
  input:
    detectors:
      - {id: pii.emial, action: block}
      - {id: injection.*, action: block}
      - {id: pii.email, action: block}
      - {id: pii.email, action: log}
    injection: {threshold: 0, action: log}
    custom:
      terms:
        - {id: Bad Id, terms: [""], action: log}
    limits: {maxMessages: 3, action: redact}
  output:
    custom:
      regex:
        - {id: x, pattern: 'a', action: log}
        - {id: x, pattern: 'b', action: log}
  tools:
    deny: ["rm -rf"]
    action: redact
    arguments:
      - {tool: "*", pointer: url, pattern: x, action: block}
"#,
        );
        let e = compile_safety(&[p]).unwrap_err();
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "spec.input.detectors[0].id",
                "spec.input.detectors[1].id",
                "spec.input.detectors[3].id",
                "spec.input.injection.threshold",
                "spec.input.custom.terms[0].id",
                "spec.input.custom.terms[0].terms[0]",
                "spec.input.limits.action",
                "spec.output.custom.regex[1].id",
                "spec.tools.action",
                "spec.tools.deny[0]",
                "spec.tools.arguments[0].pointer",
            ],
            "{e:#?}"
        );
        assert!(e[0].message.contains("unknown detector \"pii.emial\""), "{}", e[0].message);
        assert!(e[1].message.contains("under `injection`"), "{}", e[1].message);
    }

    #[test]
    fn rejects_duplicate_names_and_sorts_by_id() {
        let a = policy("spec: {mode: audit}");
        let mut b = policy("spec: {}");
        b.metadata.name = Some("a".to_owned());
        let c = compile_safety(&[a.clone(), b]).unwrap();
        assert_eq!(c.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), vec!["ai/a", "ai/p"]);
        assert_eq!(c[1].mode, PolicyMode::Audit);
        let e = compile_safety(&[a.clone(), a]).unwrap_err();
        assert_eq!(e[0].path, "metadata.name");
    }

    #[test]
    fn detector_ids_round_trip() {
        for d in Detector::ALL {
            assert_eq!(Detector::from_id(d.as_str()), Some(d));
            assert_eq!(Detector::ALL[d.index()], d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
        }
        assert!(Detector::Iban.is_pii() && !Detector::Jwt.is_pii());
        assert!(Action::Block > Action::Redact && Action::Redact > Action::Log);
    }

    #[test]
    fn every_field_of_the_crd_is_documented() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(SafetyPolicy::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        fn walk(v: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
            if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
                for (k, child) in props {
                    let p = format!("{path}.{k}");
                    if child.get("description").is_none() {
                        missing.push(p.clone());
                    }
                    walk(child, &p, missing);
                    if let Some(items) = child.get("items") {
                        walk(items, &p, missing);
                    }
                }
            }
        }
        let mut missing = Vec::new();
        walk(spec, "spec", &mut missing);
        assert!(missing.is_empty(), "fields without documentation: {missing:?}");
    }
}
