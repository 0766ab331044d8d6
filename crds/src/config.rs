//! `DataPlaneConfig`: everything a gateway needs, compiled from resources by a pure
//! function. The operator ships it in a ConfigMap; standalone mode hands it over in-process.
//! It holds secret *references* only, never secret values.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::iptoken::{ModelKind, ModelPrices, SecretRef};
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

/// Compiles resources into a configuration, or lists every problem found.
pub fn compile(resources: &[Resource]) -> Result<DataPlaneConfig, Vec<CompileError>> {
    let mut errors = Vec::new();
    /// A token, its models `(name, kind, upstream name, prices)` and its weight.
    type TokenModels = (IpTokenConfig, Vec<(String, ModelKind, String, Option<PricesMicros>)>, u32);
    let mut tokens: Vec<TokenModels> = Vec::new();
    let mut ids = HashSet::new();
    for resource in resources {
        let Resource::IpToken(token) = resource;
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
            let upstream = model.upstream_name.clone().unwrap_or_else(|| model.name.clone());
            models.push((model.name.clone(), model.kind.unwrap_or(ModelKind::Chat), upstream, prices));
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
        for (name, kind, upstream_model, prices) in models {
            let route =
                routes.entry(name.clone()).or_insert_with(|| ModelRoute { kind, targets: Vec::new() });
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
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut config = DataPlaneConfig { hash: String::new(), ip_tokens, models: routes };
    config.hash = config.content_hash();
    Ok(config)
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

impl DataPlaneConfig {
    /// SHA-256 (hex) of everything but the hash itself.
    pub fn content_hash(&self) -> String {
        let body = serde_json::to_vec(&(&self.ip_tokens, &self.models)).unwrap_or_default();
        Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The configuration `tollgate up` starts with when given no resources: the in-process
    /// mock provider serving a chat and an embedding model.
    pub fn mock_default() -> Self {
        let yaml = r#"
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
        crate::parse_documents("built-in", yaml)
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

    #[test]
    fn mock_default_serves_chat_and_embeddings() {
        let c = DataPlaneConfig::mock_default();
        assert_eq!(c.models["mock-1"].kind, ModelKind::Chat);
        assert_eq!(c.models["mock-embedding-1"].kind, ModelKind::Embedding);
        assert_eq!(c.ip_tokens[0].forward_headers, vec!["x-mock-".to_owned()]);
    }
}
