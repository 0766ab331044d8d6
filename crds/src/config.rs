//! `DataPlaneConfig`: everything a gateway needs, compiled from resources by a pure
//! function. The operator ships it in a ConfigMap; standalone mode hands it over in-process.
//! It holds secret *references* only, never secret values.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::budget::{Budget, BudgetPeriod, Enforcement, OnExhausted, SubjectKind};
use crate::iptoken::{ModelKind, ModelPrices, ModelTimeouts, SecretRef};
use crate::money::parse_usd_micros;
use crate::{ProviderKind, Resource};

/// The compiled configuration of a gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataPlaneConfig {
    /// SHA-256 of the rest of this document: the configuration version.
    pub hash: String,
    /// Every IP token, sorted by id.
    pub ip_tokens: Vec<IpTokenConfig>,
    /// Model name → the IP tokens serving it.
    pub models: BTreeMap<String, ModelRoute>,
    /// Every budget, sorted by id; `parent` indexes into this list.
    #[serde(default)]
    pub budgets: Vec<BudgetConfig>,
    /// Every safety policy, validated (regexes compile, detectors exist).
    #[serde(default)]
    pub safety_policies: Vec<crate::safety::SafetyPolicyConfig>,
}

/// A budget as the gateway enforces it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetConfig {
    /// `namespace/name`.
    pub id: String,
    /// Who it is for.
    pub subject_kind: SubjectKind,
    /// The subject's name.
    pub subject_name: String,
    /// The limit in micro-USD.
    pub limit_micros: u64,
    /// The period.
    pub period: BudgetPeriod,
    /// Time zone of calendar periods; serialised as its IANA name (`Europe/Berlin`).
    pub time_zone: chrono_tz::Tz,
    /// Hard (refuse) or soft (alert).
    pub hard: bool,
    /// Alert thresholds in percent, ascending.
    pub alert_thresholds: Vec<u32>,
    /// Index of the parent budget in [`DataPlaneConfig::budgets`].
    pub parent: Option<usize>,
    /// Models allowed under this budget (empty: all).
    pub allowed_models: Vec<String>,
    /// What happens at the limit.
    pub on_exhausted: OnExhausted,
}

/// One provider credential as the gateway sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IpTokenConfig {
    /// `namespace/name` (standalone resources without a namespace use `default`).
    pub id: String,
    /// The API it speaks.
    pub provider: ProviderKind,
    /// Base URL without a trailing slash; `None` means the provider's default (or, for
    /// `mock`, the in-process mock).
    pub base_url: Option<String>,
    /// Where the key is.
    pub secret_ref: Option<SecretRef>,
    /// Azure `api-version`.
    pub api_version: Option<String>,
    /// Lower-cased header-name prefixes forwarded from the caller.
    pub forward_headers: Vec<String>,
    /// Upstream requests-per-minute limit.
    pub rpm: Option<u32>,
    /// Upstream tokens-per-minute limit.
    pub tpm: Option<u64>,
}

/// How a model is served.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelRoute {
    /// Chat or embedding.
    pub kind: ModelKind,
    /// Candidate targets, in IP-token id order.
    pub targets: Vec<RouteTarget>,
    /// Models to fall back to, in order.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Error classes that trigger a fallback (empty: unavailable, timeout, rate-limited).
    #[serde(default)]
    pub fallback_on: Vec<FallbackClass>,
    /// Per-model timeouts.
    #[serde(default)]
    pub timeouts: Option<ModelTimeouts>,
}

/// A failure a model's fallbacks are tried for (`fallbackOn`). The IPToken resource lists
/// them as strings; `compile()` turns each into one of these or reports its field path.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum FallbackClass {
    /// The upstream is down, overloaded or out of quota.
    Unavailable,
    /// The upstream did not answer in time.
    Timeout,
    /// The upstream (or our limit for that IP token) refused with 429.
    RateLimited,
    /// The prompt does not fit the model's context window.
    ContextLengthExceeded,
    /// The provider's content filter refused the prompt.
    ContentFiltered,
}

impl FallbackClass {
    /// Every class, in the order the documentation lists them.
    pub const ALL: [Self; 5] = [
        Self::Unavailable,
        Self::Timeout,
        Self::RateLimited,
        Self::ContextLengthExceeded,
        Self::ContentFiltered,
    ];

    /// The name used in resources and in the compiled configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate-limited",
            Self::ContextLengthExceeded => "context-length-exceeded",
            Self::ContentFiltered => "content-filtered",
        }
    }
}

impl std::str::FromStr for FallbackClass {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|c| c.as_str()).collect();
            format!("unknown error class {s:?}; expected one of {}", names.join(", "))
        })
    }
}

/// One IP token serving one model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteTarget {
    /// Index into [`DataPlaneConfig::ip_tokens`].
    pub ip_token: usize,
    /// The model name sent upstream.
    pub upstream_model: String,
    /// Load-balancing weight.
    pub weight: u32,
    /// Price override from the IP token, in micro-USD per million tokens.
    pub prices: Option<PricesMicros>,
}

/// Prices in micro-USD per million tokens.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PricesMicros {
    /// Per million input tokens.
    pub input_per_mtok: u64,
    /// Per million output tokens.
    pub output_per_mtok: u64,
    /// Per million cached input tokens.
    pub cached_input_per_mtok: u64,
}

/// A resource that is valid YAML but cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{resource}: {path}: {message}")]
pub struct CompileError {
    /// `Kind/name` of the resource.
    pub resource: String,
    /// Field path (`spec.baseUrl`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// One model of one IP token, validated.
struct ModelEntry {
    name: String,
    kind: ModelKind,
    upstream: String,
    prices: Option<PricesMicros>,
    fallbacks: Vec<String>,
    fallback_on: Vec<FallbackClass>,
    timeouts: Option<ModelTimeouts>,
}

/// Compiles resources into a configuration, or lists every problem found.
pub fn compile(resources: &[Resource]) -> Result<DataPlaneConfig, Vec<CompileError>> {
    let mut errors = Vec::new();
    /// A token, its models `(name, kind, upstream name, prices)` and its weight.
    type TokenModels = (IpTokenConfig, Vec<ModelEntry>, u32);
    let mut tokens: Vec<TokenModels> = Vec::new();
    let mut ids = HashSet::new();
    let mut budgets = Vec::new();
    let mut policies = Vec::new();
    for resource in resources {
        let token = match resource {
            Resource::IpToken(token) => token,
            Resource::Budget(budget) => {
                budgets.push(budget);
                continue;
            }
            Resource::SafetyPolicy(policy) => {
                policies.push(policy.clone());
                continue;
            }
            // Workloads are the operator's business: they shape pods, not the routing
            // configuration, so standalone mode accepts and ignores them.
            Resource::Agent(_) | Resource::Sandbox(_) | Resource::DataPlane(_) => continue,
        };
        let name = token.metadata.name.clone().unwrap_or_default();
        let namespace = token.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let id = format!("{namespace}/{name}");
        let mut err = |path: &str, message: String| {
            errors.push(CompileError { resource: format!("IPToken/{id}"), path: path.to_owned(), message });
        };
        if name.is_empty() {
            err("metadata.name", "a name is required".to_owned());
        }
        if !ids.insert(id.clone()) {
            err("metadata.name", "defined more than once".to_owned());
        }
        let spec = &token.spec;
        let base_url = spec.base_url.as_deref().map(|u| u.trim().trim_end_matches('/').to_owned());
        if let Some(url) = &base_url {
            let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                err("spec.baseUrl", format!("{url:?} is not an http(s) URL"));
            }
        }
        match spec.provider {
            ProviderKind::AzureOpenai | ProviderKind::OpenaiCompatible if base_url.is_none() => {
                err("spec.baseUrl", format!("required for provider {}", spec.provider.as_str()))
            }
            _ => {}
        }
        if spec.provider == ProviderKind::AzureOpenai && spec.api_version.is_none() {
            err("spec.apiVersion", "required for provider azure-openai".to_owned());
        }
        let needs_secret = matches!(
            spec.provider,
            ProviderKind::Openai | ProviderKind::Anthropic | ProviderKind::AzureOpenai
        );
        if needs_secret && spec.secret_ref.is_none() {
            err("spec.secretRef", format!("required for provider {}", spec.provider.as_str()));
        }
        if spec.models.is_empty() {
            err("spec.models", "at least one model is required".to_owned());
        }
        let mut models = Vec::new();
        let mut seen = HashSet::new();
        for (i, model) in spec.models.iter().enumerate() {
            let path = format!("spec.models[{i}]");
            if model.name.trim().is_empty() {
                err(&format!("{path}.name"), "must not be empty".to_owned());
                continue;
            }
            if !seen.insert(model.name.as_str()) {
                err(&format!("{path}.name"), format!("model {:?} listed twice", model.name));
            }
            let prices = match &model.prices {
                None => None,
                Some(p) => match compile_prices(p) {
                    Ok(p) => Some(p),
                    Err((field, message)) => {
                        err(&format!("{path}.prices.{field}"), message);
                        None
                    }
                },
            };
            let mut fallback_on = Vec::with_capacity(model.fallback_on.len());
            for (j, class) in model.fallback_on.iter().enumerate() {
                match class.parse::<FallbackClass>() {
                    Ok(class) => fallback_on.push(class),
                    Err(message) => err(&format!("{path}.fallbackOn[{j}]"), message),
                }
            }
            if let Some(t) = model.timeouts {
                for (field, v) in [
                    ("firstByteSeconds", t.first_byte_seconds),
                    ("idleSeconds", t.idle_seconds),
                    ("totalSeconds", t.total_seconds),
                ] {
                    if v == Some(0) {
                        err(&format!("{path}.timeouts.{field}"), "must be at least 1".to_owned());
                    }
                }
            }
            let upstream = model.upstream_name.clone().unwrap_or_else(|| model.name.clone());
            models.push(ModelEntry {
                name: model.name.clone(),
                kind: model.kind.unwrap_or(ModelKind::Chat),
                upstream,
                prices,
                fallbacks: model.fallbacks.clone(),
                fallback_on,
                timeouts: model.timeouts,
            });
        }
        let mut forward_headers: Vec<String> =
            spec.forward_headers.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
        if spec.provider == ProviderKind::Mock && forward_headers.is_empty() {
            forward_headers.push("x-mock-".to_owned());
        }
        let config = IpTokenConfig {
            id,
            provider: spec.provider,
            base_url,
            secret_ref: spec.secret_ref.clone(),
            api_version: spec.api_version.clone(),
            forward_headers,
            rpm: spec.rpm,
            tpm: spec.tpm,
        };
        tokens.push((config, models, spec.weight));
    }
    tokens.sort_by(|a, b| a.0.id.cmp(&b.0.id));

    let mut ip_tokens = Vec::with_capacity(tokens.len());
    let mut routes: BTreeMap<String, ModelRoute> = BTreeMap::new();
    for (index, (config, models, weight)) in tokens.into_iter().enumerate() {
        for ModelEntry { name, kind, upstream: upstream_model, prices, fallbacks, fallback_on, timeouts } in
            models
        {
            let route = routes.entry(name.clone()).or_insert_with(|| ModelRoute {
                kind,
                targets: Vec::new(),
                fallbacks: Vec::new(),
                fallback_on: Vec::new(),
                timeouts: None,
            });
            for f in fallbacks {
                if !route.fallbacks.contains(&f) {
                    route.fallbacks.push(f);
                }
            }
            for c in fallback_on {
                if !route.fallback_on.contains(&c) {
                    route.fallback_on.push(c);
                }
            }
            route.timeouts = route.timeouts.or(timeouts);
            if route.kind != kind {
                errors.push(CompileError {
                    resource: format!("IPToken/{}", config.id),
                    path: "spec.models".to_owned(),
                    message: format!(
                        "model {name:?} is a {kind:?} model here but a {:?} model elsewhere",
                        route.kind
                    ),
                });
            }
            route.targets.push(RouteTarget { ip_token: index, upstream_model, weight, prices });
        }
        ip_tokens.push(config);
    }
    for (name, route) in &routes {
        for f in &route.fallbacks {
            if !routes.contains_key(f) {
                errors.push(CompileError {
                    resource: format!("model/{name}"),
                    path: "spec.models[].fallbacks".to_owned(),
                    message: format!("fallback model {f:?} is not served by any IPToken"),
                });
            } else if f == name {
                errors.push(CompileError {
                    resource: format!("model/{name}"),
                    path: "spec.models[].fallbacks".to_owned(),
                    message: "a model cannot fall back to itself".to_owned(),
                });
            }
        }
    }
    let budgets = compile_budgets(&budgets, &mut errors);
    let safety_policies = crate::safety::compile_safety(&policies).unwrap_or_else(|e| {
        errors.extend(e);
        Vec::new()
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut config =
        DataPlaneConfig { hash: String::new(), ip_tokens, models: routes, budgets, safety_policies };
    config.hash = config.content_hash();
    Ok(config)
}

fn compile_budgets(budgets: &[&Budget], errors: &mut Vec<CompileError>) -> Vec<BudgetConfig> {
    let id_of = |b: &Budget| {
        let ns = b.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned());
        (ns.clone(), format!("{ns}/{}", b.metadata.name.clone().unwrap_or_default()))
    };
    let mut sorted: Vec<&Budget> = budgets.to_vec();
    sorted.sort_by_key(|b| id_of(b).1);
    let index: BTreeMap<String, usize> = sorted.iter().enumerate().map(|(i, b)| (id_of(b).1, i)).collect();
    let mut out = Vec::with_capacity(sorted.len());
    let mut ids = HashSet::new();
    let mut subjects: BTreeMap<(SubjectKind, String, String), String> = BTreeMap::new();
    for budget in &sorted {
        let (namespace, id) = id_of(budget);
        let mut err = |path: &str, message: String| {
            errors.push(CompileError { resource: format!("Budget/{id}"), path: path.to_owned(), message });
        };
        if budget.metadata.name.as_deref().unwrap_or("").is_empty() {
            err("metadata.name", "a name is required".to_owned());
        }
        if !ids.insert(id.clone()) {
            err("metadata.name", "defined more than once".to_owned());
        }
        let spec = &budget.spec;
        if spec.subject.name.trim().is_empty() {
            err("spec.subject.name", "must not be empty".to_owned());
        }
        let subject_key = (spec.subject.kind, spec.subject.name.clone(), namespace.clone());
        if let Some(other) = subjects.insert(subject_key, id.clone()) {
            err(
                "spec.subject",
                format!("{} {:?} already has budget {other}", spec.subject.kind.as_str(), spec.subject.name),
            );
        }
        let limit_micros = parse_usd_micros(&spec.limit).unwrap_or_else(|e| {
            err("spec.limit", e.to_string());
            0
        });
        let period = spec.period.parse::<BudgetPeriod>().unwrap_or_else(|e| {
            err("spec.period", e);
            BudgetPeriod::Total
        });
        let time_zone = match spec.time_zone.as_deref() {
            None => chrono_tz::UTC,
            Some(zone) => zone.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
                err("spec.timeZone", format!("{zone:?} is not an IANA time zone (like Europe/Berlin)"));
                chrono_tz::UTC
            }),
        };
        let mut thresholds = spec.alert_thresholds.clone();
        for (i, t) in thresholds.iter().enumerate() {
            if *t == 0 || *t > 1000 {
                err(
                    &format!("spec.alertThresholds[{i}]"),
                    format!("{t} is not a percentage between 1 and 1000"),
                );
            }
        }
        thresholds.sort_unstable();
        thresholds.dedup();
        let on_exhausted = spec.on_exhausted.parse::<OnExhausted>().unwrap_or_else(|e| {
            err("spec.onExhausted", e);
            OnExhausted::Block
        });
        let parent = match &spec.parent {
            None => None,
            Some(p) => {
                let pid = format!("{namespace}/{p}");
                match index.get(&pid) {
                    Some(i) => Some(*i),
                    None => {
                        err("spec.parent", format!("no Budget {p:?} in namespace {namespace:?}"));
                        None
                    }
                }
            }
        };
        out.push(BudgetConfig {
            id,
            subject_kind: spec.subject.kind,
            subject_name: spec.subject.name.trim().to_owned(),
            limit_micros,
            period,
            time_zone,
            hard: spec.enforcement == Enforcement::Hard,
            alert_thresholds: thresholds,
            parent,
            allowed_models: spec.allowed_models.clone(),
            on_exhausted,
        });
    }
    // A parent chain must end: walking more steps than there are budgets means a cycle.
    for (i, b) in out.iter().enumerate() {
        let mut at = b.parent;
        let mut steps = 0;
        while let Some(p) = at {
            steps += 1;
            if p == i || steps > out.len() {
                errors.push(CompileError {
                    resource: format!("Budget/{}", b.id),
                    path: "spec.parent".to_owned(),
                    message: "the parent chain loops back to this budget".to_owned(),
                });
                break;
            }
            at = out.get(p).and_then(|x| x.parent);
        }
    }
    out
}

impl BudgetConfig {
    /// This budget and its ancestors, nearest first (indices into `budgets`).
    pub fn chain(budgets: &[BudgetConfig], start: usize) -> Vec<usize> {
        let mut chain = vec![start];
        let mut at = budgets.get(start).and_then(|b| b.parent);
        while let Some(p) = at {
            if chain.contains(&p) || chain.len() > budgets.len() {
                break;
            }
            chain.push(p);
            at = budgets.get(p).and_then(|b| b.parent);
        }
        chain
    }
}

fn compile_prices(p: &ModelPrices) -> Result<PricesMicros, (&'static str, String)> {
    let input = parse_usd_micros(&p.input_per_mtok).map_err(|e| ("inputPerMtok", e.to_string()))?;
    let output = parse_usd_micros(&p.output_per_mtok).map_err(|e| ("outputPerMtok", e.to_string()))?;
    let cached = match &p.cached_input_per_mtok {
        Some(c) => parse_usd_micros(c).map_err(|e| ("cachedInputPerMtok", e.to_string()))?,
        None => input,
    };
    Ok(PricesMicros { input_per_mtok: input, output_per_mtok: output, cached_input_per_mtok: cached })
}

/// The resources `tollgate up` serves when given none: the in-process mock provider with a
/// chat and an embedding model.
pub const MOCK_DEFAULT_RESOURCES: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models:
    - name: mock-1
    - name: mock-embedding-1
      kind: embedding
"#;

impl DataPlaneConfig {
    /// SHA-256 (hex) of everything but the hash itself.
    pub fn content_hash(&self) -> String {
        let body = serde_json::to_vec(&(&self.ip_tokens, &self.models, &self.budgets, &self.safety_policies))
            .unwrap_or_default();
        Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The configuration `tollgate up` starts with when given no resources: the in-process
    /// mock provider serving a chat and an embedding model ([`MOCK_DEFAULT_RESOURCES`]).
    pub fn mock_default() -> Self {
        crate::parse_documents("built-in", MOCK_DEFAULT_RESOURCES)
            .ok()
            .and_then(|p| compile(&p.resources).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_documents;

    fn compile_yaml(yaml: &str) -> Result<DataPlaneConfig, Vec<CompileError>> {
        compile(&parse_documents("t", yaml).unwrap().resources)
    }

    const TWO: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: b}
spec:
  provider: openai
  secretRef: {name: s, key: k}
  weight: 3
  models: [{name: gpt-4o-mini, prices: {inputPerMtok: "0.15", outputPerMtok: "0.60"}}]
---
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: a}
spec:
  provider: openai-compatible
  baseUrl: http://vllm:8000/v1/
  forwardHeaders: [X-Trace]
  models: [{name: gpt-4o-mini, upstreamName: llama}, {name: e, kind: embedding}]
"#;

    #[test]
    fn routes_models_to_every_token_that_serves_them() {
        let c = compile_yaml(TWO).unwrap();
        assert_eq!(c.ip_tokens[0].id, "default/a");
        assert_eq!(c.ip_tokens[0].base_url.as_deref(), Some("http://vllm:8000/v1"));
        assert_eq!(c.ip_tokens[0].forward_headers, vec!["x-trace".to_owned()]);
        let route = &c.models["gpt-4o-mini"];
        assert_eq!(route.targets.len(), 2);
        assert_eq!(route.targets[0].upstream_model, "llama");
        assert_eq!(route.targets[1].weight, 3);
        assert_eq!(route.targets[1].prices.unwrap().output_per_mtok, 600_000);
        assert_eq!(c.models["e"].kind, ModelKind::Embedding);
    }

    #[test]
    fn hash_is_stable_and_changes_with_content() {
        let a = compile_yaml(TWO).unwrap();
        assert_eq!(a.hash, compile_yaml(TWO).unwrap().hash);
        assert_ne!(a.hash, compile_yaml(&TWO.replace("weight: 3", "weight: 4")).unwrap().hash);
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let bad = TWO
            .replace("  secretRef: {name: s, key: k}\n", "")
            .replace("baseUrl: http://vllm:8000/v1/", "baseUrl: ftp://x")
            .replace("\"0.60\"", "\"cheap\"");
        let errors = compile_yaml(&bad).unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| (e.resource.as_str(), e.path.as_str())).collect();
        assert!(paths.contains(&("IPToken/default/b", "spec.secretRef")), "{errors:?}");
        assert!(paths.contains(&("IPToken/default/a", "spec.baseUrl")), "{errors:?}");
        assert!(paths.contains(&("IPToken/default/b", "spec.models[0].prices.outputPerMtok")), "{errors:?}");
    }

    const BUDGETS: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: org}
spec: {subject: {kind: team, name: everyone}, limit: "1000", period: monthly, timeZone: Europe/Berlin}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: payments}
spec:
  subject: {kind: team, name: payments}
  limit: "100.5"
  period: daily
  parent: org
  alertThresholds: [90, 50, 50]
  onExhausted: "downgrade:mock-1"
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: alice}
spec: {subject: {kind: developer, name: alice}, limit: "5", period: 6h, parent: payments, enforcement: soft}
"#;

    #[test]
    fn compiles_budget_trees() {
        let c = compile_yaml(BUDGETS).unwrap();
        let ids: Vec<&str> = c.budgets.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["default/alice", "default/org", "default/payments"]);
        assert_eq!(BudgetConfig::chain(&c.budgets, 0), vec![0, 2, 1]);
        let p = &c.budgets[2];
        assert_eq!(p.limit_micros, 100_500_000);
        assert_eq!(p.alert_thresholds, vec![50, 90]);
        assert_eq!(p.on_exhausted, OnExhausted::Downgrade("mock-1".into()));
        assert!(!c.budgets[0].hard);
        assert_eq!(c.budgets[0].period, BudgetPeriod::EverySeconds(21_600));
    }

    #[test]
    fn budget_errors_name_the_field() {
        let bad = BUDGETS
            .replace("parent: org", "parent: nobody")
            .replace("\"100.5\"", "\"lots\"")
            .replace("Europe/Berlin", "Mars/Olympus")
            .replace("[90, 50, 50]", "[0]");
        let errors = compile_yaml(&bad).unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| (e.resource.as_str(), e.path.as_str())).collect();
        for want in [
            ("Budget/default/payments", "spec.parent"),
            ("Budget/default/payments", "spec.limit"),
            ("Budget/default/org", "spec.timeZone"),
            ("Budget/default/payments", "spec.alertThresholds[0]"),
        ] {
            assert!(paths.contains(&want), "{want:?} missing from {errors:?}");
        }
        let cyclic = BUDGETS.replace("period: monthly,", "period: monthly, parent: alice,");
        let errors = compile_yaml(&cyclic).unwrap_err();
        assert!(errors.iter().any(|e| e.message.contains("loops")), "{errors:?}");
    }

    #[test]
    fn time_zones_compile_to_zones_and_serialise_as_their_iana_names() {
        let c = compile_yaml(BUDGETS).unwrap();
        let org = &c.budgets[1];
        assert_eq!(org.time_zone, chrono_tz::Europe::Berlin);
        assert_eq!(c.budgets[0].time_zone, chrono_tz::UTC, "no timeZone means UTC");
        // The JSON contract (ConfigMap, published_config) is the IANA string, and reads back.
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["budgets"][1]["timeZone"], "Europe/Berlin");
        assert_eq!(json["budgets"][0]["timeZone"], "UTC");
        let back: DataPlaneConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.content_hash(), c.hash);
        // A link name stays the name it was given.
        let linked = compile_yaml(&BUDGETS.replace("Europe/Berlin", "US/Eastern")).unwrap();
        assert_eq!(serde_json::to_value(&linked).unwrap()["budgets"][1]["timeZone"], "US/Eastern");
    }

    #[test]
    fn a_published_document_with_an_unknown_zone_does_not_load() {
        let c = compile_yaml(BUDGETS).unwrap();
        let json = serde_json::to_string(&c).unwrap().replace("Europe/Berlin", "Mars/Olympus");
        let err = serde_json::from_str::<DataPlaneConfig>(&json).unwrap_err();
        assert!(err.to_string().contains("Mars/Olympus"), "{err}");
    }

    const FALLBACKS: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: m}
spec:
  provider: mock
  models:
    - {name: big, fallbacks: [small], fallbackOn: [context-length-exceeded, timeout]}
    - {name: small}
---
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: n}
spec:
  provider: mock
  models: [{name: big, fallbackOn: [timeout, content-filtered]}]
"#;

    #[test]
    fn fallback_classes_compile_to_their_union_in_order() {
        let c = compile_yaml(FALLBACKS).unwrap();
        assert_eq!(
            c.models["big"].fallback_on,
            vec![
                FallbackClass::ContextLengthExceeded,
                FallbackClass::Timeout,
                FallbackClass::ContentFiltered
            ]
        );
        assert!(c.models["small"].fallback_on.is_empty());
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json["models"]["big"]["fallbackOn"],
            serde_json::json!(["context-length-exceeded", "timeout", "content-filtered"])
        );
        assert_eq!(serde_json::from_value::<DataPlaneConfig>(json).unwrap(), c);
    }

    #[test]
    fn an_unknown_fallback_class_is_an_error_at_its_path() {
        let errors =
            compile_yaml(&FALLBACKS.replace("[timeout, content-filtered]", "[timeout, rate_limited]"))
                .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            (errors[0].resource.as_str(), errors[0].path.as_str()),
            ("IPToken/default/n", "spec.models[0].fallbackOn[1]")
        );
        assert!(errors[0].message.contains("\"rate_limited\"") && errors[0].message.contains("rate-limited"));
    }

    #[test]
    fn fallback_class_names_match_serde_and_the_resource_schema() {
        let schema = serde_json::to_string(&schemars::schema_for!(crate::iptoken::ModelSpec)).unwrap();
        for class in FallbackClass::ALL {
            assert_eq!(serde_json::to_value(class).unwrap(), class.as_str());
            assert_eq!(class.as_str().parse::<FallbackClass>(), Ok(class));
            assert!(schema.contains(class.as_str()), "{} missing from the CRD's pattern", class.as_str());
        }
    }

    #[test]
    fn mock_default_serves_chat_and_embeddings() {
        let c = DataPlaneConfig::mock_default();
        assert_eq!(c.models["mock-1"].kind, ModelKind::Chat);
        assert_eq!(c.models["mock-embedding-1"].kind, ModelKind::Embedding);
        assert_eq!(c.ip_tokens[0].forward_headers, vec!["x-mock-".to_owned()]);
    }
}
