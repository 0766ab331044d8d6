//! Verdicts and budget state from the gateway's gRPC runtime service (`tollgate.v1.Runtime`),
//! in plain Rust types.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tollgate_proto::v1 as pb;

use crate::{Error, Result};

/// One rule that matched (never the matched text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `namespace/name` of the policy.
    pub policy: String,
    /// The rule.
    pub rule: String,
    /// `pii`, `secret`, `injection`, `custom`, `tool`, `limit` or `engine`.
    pub category: String,
    /// `block`, `redact` or `log`.
    pub action: String,
    /// The policy is in audit mode (recorded, not enforced).
    pub audit: bool,
    /// Where in the arguments or text it matched.
    pub path: String,
}

impl From<pb::Finding> for Finding {
    fn from(f: pb::Finding) -> Self {
        Self {
            policy: f.policy,
            rule: f.rule,
            category: f.category,
            action: f.action,
            audit: f.audit,
            path: f.path,
        }
    }
}

/// What a tool call may do.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolDecision {
    /// Run it as asked.
    Allow,
    /// Run it with these arguments instead (sensitive values replaced).
    AllowRedacted {
        /// The arguments to use.
        arguments: Value,
    },
    /// Do not run it.
    Deny {
        /// `namespace/name` of the policy.
        policy: String,
        /// The rule.
        rule: String,
        /// Why, for the agent or its developer.
        reason: String,
    },
}

/// The runtime service's answer to a tool check.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolVerdict {
    /// The tool that was checked.
    pub tool: String,
    /// The decision.
    pub decision: ToolDecision,
    /// Every rule that matched, audit ones included.
    pub findings: Vec<Finding>,
}

impl ToolVerdict {
    /// Whether the call may run (with the original or redacted arguments).
    pub fn is_allowed(&self) -> bool {
        !matches!(self.decision, ToolDecision::Deny { .. })
    }

    /// The arguments to run the tool with, or [`Error::ToolDenied`].
    pub fn into_arguments(self, original: Value) -> Result<Value> {
        match self.decision {
            ToolDecision::Allow => Ok(original),
            ToolDecision::AllowRedacted { arguments } => Ok(arguments),
            ToolDecision::Deny { policy, rule, reason } => {
                Err(Error::ToolDenied { tool: self.tool, policy, rule, reason })
            }
        }
    }

    pub(crate) fn from_pb(tool: &str, r: pb::CheckToolResponse) -> Result<Self> {
        let decision = match r.decision() {
            pb::Decision::Allow => ToolDecision::Allow,
            pb::Decision::AllowRedacted => ToolDecision::AllowRedacted {
                arguments: serde_json::from_str(&r.redacted_arguments_json)
                    .map_err(|e| Error::Decode(format!("redacted arguments: {e}")))?,
            },
            pb::Decision::Deny => ToolDecision::Deny { policy: r.policy, rule: r.rule, reason: r.reason },
            pb::Decision::Unspecified => return Err(Error::Decode("a verdict without a decision".into())),
        };
        Ok(Self {
            tool: tool.to_owned(),
            decision,
            findings: r.findings.into_iter().map(Finding::from).collect(),
        })
    }
}

/// Which way a text flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// To a model (prompts, tool results).
    Input,
    /// From a model.
    Output,
}

/// The runtime service's answer to a text check.
#[derive(Debug, Clone, PartialEq)]
pub enum TextVerdict {
    /// Use the text as it is.
    Allow,
    /// Use this text instead.
    Redacted(String),
    /// Do not use the text.
    Blocked {
        /// `namespace/name` of the policy.
        policy: String,
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
}

impl TextVerdict {
    pub(crate) fn from_pb(r: pb::ValidateTextResponse) -> Result<Self> {
        Ok(match r.decision() {
            pb::Decision::Allow => Self::Allow,
            pb::Decision::AllowRedacted => Self::Redacted(r.redacted_text),
            pb::Decision::Deny => Self::Blocked { policy: r.policy, rule: r.rule, reason: r.reason },
            pb::Decision::Unspecified => return Err(Error::Decode("a verdict without a decision".into())),
        })
    }
}

/// A budget's state in its current period. Money is integer micro-USD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetStatus {
    /// `namespace/name`.
    pub name: String,
    /// `developer`, `team`, `agent` or `namespace`.
    pub subject_kind: String,
    /// The subject's name.
    pub subject_name: String,
    /// Hard budgets refuse requests; soft ones only alert.
    pub hard: bool,
    /// The limit.
    pub limit_micros: u64,
    /// Charged this period.
    pub spent_micros: u64,
    /// Held by requests in flight.
    pub reserved_micros: u64,
    /// What is left.
    pub remaining_micros: u64,
    /// Start of the period (`None` for a `total` budget).
    pub period_start: Option<DateTime<Utc>>,
    /// When the period ends and the budget resets.
    pub resets_at: Option<DateTime<Utc>>,
    /// Spent has reached the limit.
    pub exhausted: bool,
    /// The parent budget, if any.
    pub parent: Option<String>,
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

impl From<pb::Budget> for BudgetStatus {
    fn from(b: pb::Budget) -> Self {
        Self {
            period_start: time(&b.period_start),
            resets_at: time(&b.period_end),
            parent: (!b.parent.is_empty()).then_some(b.parent),
            hard: b.enforcement == "hard",
            name: b.name,
            subject_kind: b.subject_kind,
            subject_name: b.subject_name,
            limit_micros: b.limit_micros,
            spent_micros: b.spent_micros,
            reserved_micros: b.reserved_micros,
            remaining_micros: b.remaining_micros,
            exhausted: b.exhausted,
        }
    }
}
