//! Tool rules: allow/deny lists of tool-name patterns (`*` any run, `?` one character,
//! ASCII case-insensitive so `Shell` cannot slip past a deny of `shell*`) and argument
//! rules (a regex on the value at a JSON pointer of a call's arguments).

use regex::Regex;
use tollgate_crds::safety::{Action, ToolsConfig, build_regex};

use super::{Result, SafetyError};

/// Whether `name` matches the glob `pattern`.
pub(super) fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi].eq_ignore_ascii_case(&n[ni])) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// A compiled argument rule.
#[derive(Debug)]
pub(super) struct ArgumentRule {
    /// `tools.arguments.<id>`.
    pub rule: String,
    /// Redaction label (`[REDACTED:<LABEL>]`).
    pub label: String,
    pub tool: String,
    pub pointer: String,
    pub regex: Regex,
    pub action: Action,
}

/// A policy's compiled tool rules.
#[derive(Debug)]
pub(super) struct ToolRules {
    allow: Vec<String>,
    deny: Vec<String>,
    pub action: Action,
    pub arguments: Vec<ArgumentRule>,
}

impl ToolRules {
    pub(super) fn new(policy: &str, c: &ToolsConfig) -> Result<Option<Self>> {
        if c.allow.is_empty() && c.deny.is_empty() && c.arguments.is_empty() {
            return Ok(None);
        }
        let mut arguments = Vec::with_capacity(c.arguments.len());
        for (i, a) in c.arguments.iter().enumerate() {
            let regex = build_regex(&a.pattern).map_err(|message| SafetyError::Policy {
                policy: policy.to_owned(),
                path: format!("spec.tools.arguments[{i}].pattern"),
                message,
            })?;
            arguments.push(ArgumentRule {
                rule: format!("tools.arguments.{}", a.id),
                label: super::label_of(&a.id),
                tool: a.tool.clone(),
                pointer: a.pointer.clone(),
                regex,
                action: a.action,
            });
        }
        Ok(Some(Self { allow: c.allow.clone(), deny: c.deny.clone(), action: c.action, arguments }))
    }

    /// The rule a tool name breaks: `tools.deny` or `tools.allow` (not on the allow list).
    pub(super) fn name_violation(&self, name: &str) -> Option<&'static str> {
        if self.deny.iter().any(|p| glob(p, name)) {
            Some("tools.deny")
        } else if !self.allow.is_empty() && !self.allow.iter().any(|p| glob(p, name)) {
            Some("tools.allow")
        } else {
            None
        }
    }

    /// Whether the lists say anything (else only argument rules).
    pub(super) fn has_lists(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("shell*", "shell_exec"));
        assert!(glob("shell*", "Shell"));
        assert!(glob("*_delete", "files_delete"));
        assert!(glob("get_?eather", "get_weather"));
        assert!(glob("*", "anything"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(!glob("search", "search_web"));
        assert!(!glob("shell*", "myshell"));
    }
}
