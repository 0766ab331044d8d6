//! The cluster's gateway configuration: every IPToken, Budget and SafetyPolicy compiled by
//! the same pure [`tollgate_crds::compile`] standalone mode uses, plus the provider keys
//! their Secrets hold — and, per resource, why it is not (or is) in the published document.
//!
//! Rules, in the order they apply:
//! 1. Any compile error (a regex that does not compile, a missing parent budget, ...) means
//!    there is nothing new to publish: the controller leaves the ConfigMap as it is, so the
//!    gateways keep the last good configuration, and the broken resources get a condition.
//! 2. An IP token whose Secret or key is missing is left out and the rest compiled again, so
//!    one forgotten Secret does not hold every other change back. (If leaving it out breaks
//!    something else, e.g. a fallback to a model only it served, rule 1 applies.)
//!
//! Budget numbers (spent, reserved, remaining) and alert thresholds are decided here too,
//! from the ledger's figures, so the controller only fetches and writes.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use tollgate_crds::config::BudgetConfig;
use tollgate_crds::money::format_usd;
use tollgate_crds::safety::SafetyPolicy;
use tollgate_crds::status::reason;
use tollgate_crds::{Budget, CompileError, DataPlaneConfig, IpToken, Resource, compile};

use super::gateway_config::{ProviderKeys, SecretData, resolve_provider_keys};

/// Everything that compiles into the gateway configuration, as read from the cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterResources {
    /// Every IPToken.
    pub ip_tokens: Vec<IpToken>,
    /// Every Budget.
    pub budgets: Vec<Budget>,
    /// Every SafetyPolicy.
    pub safety_policies: Vec<SafetyPolicy>,
}

/// One reason a resource is not (fully) in force; becomes its `Accepted=False` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// A stable reason (`InvalidPattern`, `InvalidSpec`, `SecretNotFound`, ...).
    pub reason: &'static str,
    /// What to fix. Never contains a key.
    pub message: String,
}

/// The result of [`compile_cluster`].
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// The document to publish; `None` when a compile error forbids publishing anything.
    pub config: Option<DataPlaneConfig>,
    /// The provider keys of every IP token in `config`.
    pub keys: ProviderKeys,
    /// Problems by resource key ([`resource_key`]).
    pub problems: BTreeMap<String, Vec<Problem>>,
    /// Resource keys whose content is in `config`.
    pub included: BTreeSet<String>,
    /// IP token id (`namespace/name`) → short hash of its key.
    pub secret_hashes: BTreeMap<String, String>,
}

/// `Kind/namespace/name`, the way compile errors name resources.
pub fn resource_key(kind: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{kind}/{}/{name}", namespace.unwrap_or("default"))
}

/// The key of an IPToken.
pub fn ip_token_key(t: &IpToken) -> String {
    resource_key("IPToken", t.namespace().as_deref(), &t.name_any())
}

/// The key of a Budget.
pub fn budget_key(b: &Budget) -> String {
    resource_key("Budget", b.namespace().as_deref(), &b.name_any())
}

/// The key of a SafetyPolicy.
pub fn safety_policy_key(p: &SafetyPolicy) -> String {
    resource_key("SafetyPolicy", p.namespace().as_deref(), &p.name_any())
}

/// The Secrets the IP tokens reference, as `(namespace, name)`: what the controller reads.
pub fn referenced_secrets(resources: &ClusterResources) -> BTreeSet<(String, String)> {
    resources
        .ip_tokens
        .iter()
        .filter_map(|t| {
            let r = t.spec.secret_ref.as_ref()?;
            Some((t.namespace().unwrap_or_else(|| "default".to_owned()), r.name.clone()))
        })
        .collect()
}

/// The condition reason a compile error is reported under.
pub fn compile_error_reason(e: &CompileError) -> &'static str {
    if e.path.ends_with(".pattern") || e.path.ends_with(".tool") {
        reason::INVALID_PATTERN
    } else {
        reason::INVALID_SPEC
    }
}

fn add_errors(problems: &mut BTreeMap<String, Vec<Problem>>, errors: Vec<CompileError>) {
    for e in errors {
        let reason = compile_error_reason(&e);
        let message = format!("{}: {}", e.path, e.message);
        problems.entry(e.resource).or_default().push(Problem { reason, message });
    }
}

fn as_resources(r: &ClusterResources, leave_out: &BTreeSet<String>) -> Vec<Resource> {
    let tokens = r.ip_tokens.iter().filter(|t| !leave_out.contains(&ip_token_key(t)));
    tokens
        .map(|t| Resource::IpToken(t.clone()))
        .chain(r.budgets.iter().map(|b| Resource::Budget(b.clone())))
        .chain(r.safety_policies.iter().map(|p| Resource::SafetyPolicy(p.clone())))
        .collect()
}

/// Compiles the cluster's resources with the keys in `secrets` (the referenced Secrets
/// that exist). Pure: the same inputs always give the same document and hash.
pub fn compile_cluster(resources: &ClusterResources, secrets: &SecretData) -> Compiled {
    let mut out = Compiled::default();
    let config = match compile(&as_resources(resources, &BTreeSet::new())) {
        Ok(config) => config,
        Err(errors) => {
            add_errors(&mut out.problems, errors);
            return out;
        }
    };
    let mut resolved = resolve_provider_keys(&config, secrets);
    let config = if resolved.problems.is_empty() {
        config
    } else {
        let mut leave_out = BTreeSet::new();
        for p in std::mem::take(&mut resolved.problems) {
            let key = format!("IPToken/{}", p.ip_token);
            leave_out.insert(key.clone());
            out.problems.entry(key).or_default().push(Problem { reason: p.reason, message: p.message });
        }
        match compile(&as_resources(resources, &leave_out)) {
            Ok(config) => {
                resolved = resolve_provider_keys(&config, secrets);
                config
            }
            Err(errors) => {
                add_errors(&mut out.problems, errors);
                return out;
            }
        }
    };
    out.included = config
        .ip_tokens
        .iter()
        .map(|t| format!("IPToken/{}", t.id))
        .chain(config.budgets.iter().map(|b| format!("Budget/{}", b.id)))
        .chain(config.safety_policies.iter().map(|p| format!("SafetyPolicy/{}", p.id)))
        .collect();
    out.keys = resolved.keys;
    out.secret_hashes = resolved.secret_hashes;
    out.config = Some(config);
    out
}

/// What the last compile means for each resource, shared by the controllers that write
/// the resources' statuses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigOutcome {
    /// Whether any compile has run yet (no DataPlane: nothing publishes).
    pub compiled: bool,
    /// The version of the configuration published last (`None`: none could be).
    pub published: Option<String>,
    /// Resource keys in the published configuration.
    pub included: BTreeSet<String>,
    /// Problems by resource key.
    pub problems: BTreeMap<String, Vec<Problem>>,
}

impl ConfigOutcome {
    /// The outcome of `compiled`, with `in_force` the version the gateways keep when nothing
    /// new could be published.
    pub fn of(compiled: &Compiled, in_force: Option<String>) -> Self {
        Self {
            compiled: true,
            published: compiled.config.as_ref().map(|c| c.hash.clone()).or(in_force),
            included: if compiled.config.is_some() { compiled.included.clone() } else { BTreeSet::new() },
            problems: compiled.problems.clone(),
        }
    }

    /// `(status, reason, message)` of the `Programmed` condition of the resource `key`.
    pub fn programmed(&self, key: &str) -> (bool, &'static str, String) {
        if !self.compiled {
            return (false, reason::PENDING, "no DataPlane publishes the configuration yet".to_owned());
        }
        if self.included.contains(key) {
            let version = self.published.as_deref().unwrap_or("");
            return (true, reason::PROGRAMMED, format!("in configuration {}", short(version)));
        }
        if self.problems.contains_key(key) {
            return (false, reason::INVALID_SPEC, "left out of the published configuration".to_owned());
        }
        let kept = match &self.published {
            Some(v) => format!("configuration {} stays in force", short(v)),
            None => "no configuration is in force".to_owned(),
        };
        let broken: Vec<&str> = self.problems.keys().map(String::as_str).take(3).collect();
        (
            false,
            reason::PENDING,
            format!("not published: other resources are invalid ({}); {kept}", broken.join(", ")),
        )
    }
}

/// The first 12 characters of a version hash, as shown in messages.
pub fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

/// A budget's figures for its current period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetFigures {
    /// Settled charges in the period, micro-USD.
    pub spent_micros: u64,
    /// Held by requests in flight (`None`: unknown, counters are per gateway).
    pub reserved_micros: Option<u64>,
    /// `limit - spent - reserved`, never below zero.
    pub remaining_micros: u64,
    /// Period start (RFC 3339), `None` for `total`.
    pub period_start: Option<String>,
    /// Period end (RFC 3339), `None` for `total`.
    pub period_end: Option<String>,
    /// Period end in epoch milliseconds, `None` for `total`.
    pub period_end_ms: Option<i64>,
    /// Spent has reached the limit.
    pub exhausted: bool,
}

impl BudgetFigures {
    /// The figures of `budget` for the window `[start_ms, end_ms)`.
    pub fn new(budget: &BudgetConfig, window: (i64, i64), spent: u64, reserved: Option<u64>) -> Self {
        let remaining = budget.limit_micros.saturating_sub(spent).saturating_sub(reserved.unwrap_or(0));
        // NB: a `total` budget's window spans all representable time: no period to show.
        let bounded = window.1 < i64::MAX / 2;
        let time = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        };
        Self {
            spent_micros: spent,
            reserved_micros: reserved,
            remaining_micros: remaining,
            period_start: bounded.then(|| time(window.0)).flatten(),
            period_end: bounded.then(|| time(window.1)).flatten(),
            period_end_ms: bounded.then_some(window.1),
            exhausted: spent >= budget.limit_micros,
        }
    }

    /// `spent` as written in the status.
    pub fn spent(&self) -> String {
        format_usd(self.spent_micros)
    }
}

/// The alert thresholds (percent) crossed going from `before` to `after` micro-USD spent.
/// Each fires once per period: the caller passes `before = 0` when the period changed.
pub fn crossed_thresholds(budget: &BudgetConfig, before: u64, after: u64) -> Vec<u32> {
    let reached =
        |spent: u64, pct: u32| u128::from(spent) * 100 >= u128::from(budget.limit_micros) * u128::from(pct);
    budget.alert_thresholds.iter().copied().filter(|&t| reached(after, t) && !reached(before, t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_crds::parse_documents;

    fn resources(yaml: &str) -> ClusterResources {
        let mut out = ClusterResources::default();
        for r in parse_documents("t", yaml).unwrap().resources {
            match r {
                Resource::IpToken(t) => out.ip_tokens.push(t),
                Resource::Budget(b) => out.budgets.push(b),
                Resource::SafetyPolicy(p) => out.safety_policies.push(p),
                _ => {}
            }
        }
        out
    }

    const BASE: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock, namespace: a}
spec: {provider: mock, models: [{name: mock-1}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: openai, namespace: a}
spec: {provider: openai, secretRef: {name: openai, key: key}, models: [{name: gpt-4o}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: team, namespace: a}
spec: {subject: {kind: team, name: t}, limit: "10", period: daily, alertThresholds: [50, 90]}
"#;

    fn secret(ns: &str, name: &str, key: &str, value: &str) -> SecretData {
        BTreeMap::from([(
            (ns.to_owned(), name.to_owned()),
            BTreeMap::from([(key.to_owned(), value.as_bytes().to_vec())]),
        )])
    }

    #[test]
    fn publishes_everything_when_every_key_exists() {
        let c = compile_cluster(&resources(BASE), &secret("a", "openai", "key", "sk-1"));
        let config = c.config.unwrap();
        assert_eq!(config.ip_tokens.len(), 2);
        assert!(c.problems.is_empty());
        assert!(c.included.contains("IPToken/a/openai") && c.included.contains("Budget/a/team"));
        assert!(c.secret_hashes.contains_key("a/openai"));
    }

    #[test]
    fn a_missing_secret_leaves_only_its_token_out() {
        let c = compile_cluster(&resources(BASE), &SecretData::new());
        let config = c.config.as_ref().unwrap();
        assert_eq!(config.ip_tokens.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["a/mock"]);
        assert_eq!(c.problems["IPToken/a/openai"][0].reason, reason::SECRET_NOT_FOUND);
        assert!(!c.included.contains("IPToken/a/openai"));
        let outcome = ConfigOutcome::of(&c, None);
        assert!(!outcome.programmed("IPToken/a/openai").0);
        assert!(outcome.programmed("IPToken/a/mock").0);
    }

    #[test]
    fn an_invalid_pattern_publishes_nothing() {
        let bad = format!(
            "{BASE}---\n{}",
            r#"
apiVersion: tollgate.dev/v1alpha1
kind: SafetyPolicy
metadata: {name: p, namespace: a}
spec:
  input:
    custom:
      regex: [{id: broken, pattern: '([a-z', action: block}]
"#
        );
        let c = compile_cluster(&resources(&bad), &secret("a", "openai", "key", "sk-1"));
        assert!(c.config.is_none());
        assert_eq!(c.problems["SafetyPolicy/a/p"][0].reason, reason::INVALID_PATTERN);
        let outcome = ConfigOutcome::of(&c, Some("abcdef0123456789".into()));
        let (ok, why, message) = outcome.programmed("Budget/a/team");
        assert!(!ok);
        assert_eq!(why, reason::PENDING);
        assert!(message.contains("abcdef012345 stays in force"), "{message}");
    }

    #[test]
    fn the_same_inputs_give_the_same_version() {
        let a = compile_cluster(&resources(BASE), &secret("a", "openai", "key", "sk-1"));
        let b = compile_cluster(&resources(BASE), &secret("a", "openai", "key", "sk-1"));
        assert_eq!(a.config.unwrap().hash, b.config.unwrap().hash);
    }

    #[test]
    fn thresholds_fire_once_per_crossing() {
        let c = compile_cluster(&resources(BASE), &secret("a", "openai", "key", "sk-1")).config.unwrap();
        let b = &c.budgets[0];
        assert_eq!(crossed_thresholds(b, 0, 4_000_000), Vec::<u32>::new());
        assert_eq!(crossed_thresholds(b, 4_000_000, 9_500_000), vec![50, 90]);
        assert_eq!(crossed_thresholds(b, 5_000_000, 6_000_000), Vec::<u32>::new());
        let f = BudgetFigures::new(b, (0, 86_400_000), 10_000_000, Some(0));
        assert!(f.exhausted);
        assert_eq!(f.remaining_micros, 0);
        assert_eq!(f.period_start.as_deref(), Some("1970-01-01T00:00:00Z"));
        let total = BudgetFigures::new(b, (i64::MIN / 2, i64::MAX / 2), 1, None);
        assert_eq!(total.period_end, None);
        assert_eq!(total.remaining_micros, 9_999_999);
    }
}
