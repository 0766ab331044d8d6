//! Loading resources from YAML: the same multi-document files `kubectl apply` takes.
//!
//! Documents of other API groups (Namespaces, ConfigMaps, ...) are skipped so a GitOps
//! folder can be pointed at as it is; a Tollgate document that does not parse is an error
//! naming the source, the document's index and the field path.

use serde::Deserialize;

use crate::{API_VERSION, Agent, Budget, DataPlane, GROUP, IpToken, Sandbox};

/// One Tollgate resource, of any kind.
#[derive(Debug, Clone)]
pub enum Resource {
    /// An `IPToken`.
    IpToken(IpToken),
    /// A `Budget`.
    Budget(Budget),
    /// A `SafetyPolicy`.
    SafetyPolicy(crate::safety::SafetyPolicy),
    /// An `Agent` (run by the operator; standalone mode has no workloads).
    Agent(Agent),
    /// A `Sandbox` (run by the operator).
    Sandbox(Sandbox),
    /// A `DataPlane` (run by the operator; standalone mode is its own data plane).
    DataPlane(DataPlane),
}

/// The kinds [`parse_documents`] knows, as written in `kind:`.
pub const KINDS: [&str; 6] = ["IPToken", "Budget", "SafetyPolicy", "Agent", "Sandbox", "DataPlane"];

impl Resource {
    /// The `kind` as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::IpToken(_) => "IPToken",
            Self::Budget(_) => "Budget",
            Self::SafetyPolicy(_) => "SafetyPolicy",
            Self::Agent(_) => "Agent",
            Self::Sandbox(_) => "Sandbox",
            Self::DataPlane(_) => "DataPlane",
        }
    }

    /// `kind/name` for messages.
    pub fn display_name(&self) -> String {
        let name = match self {
            Self::IpToken(r) => r.metadata.name.as_deref(),
            Self::Budget(r) => r.metadata.name.as_deref(),
            Self::SafetyPolicy(r) => r.metadata.name.as_deref(),
            Self::Agent(r) => r.metadata.name.as_deref(),
            Self::Sandbox(r) => r.metadata.name.as_deref(),
            Self::DataPlane(r) => r.metadata.name.as_deref(),
        };
        format!("{}/{}", self.kind(), name.unwrap_or(""))
    }
}

/// A document that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: document {index}: {path}: {message}")]
pub struct LoadError {
    /// The file (or other source) the document came from.
    pub source_name: String,
    /// Zero-based index of the document in its source.
    pub index: usize,
    /// Field path inside the document (`spec.models[0].name`), or `.` for the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// What parsing one source produced: the resources and the documents skipped as foreign.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Tollgate resources, in document order.
    pub resources: Vec<Resource>,
    /// `(index, apiVersion/kind)` of documents that are not Tollgate's.
    pub skipped: Vec<(usize, String)>,
}

/// Parses every YAML document in `text`. Any bad Tollgate document fails the whole source.
pub fn parse_documents(source_name: &str, text: &str) -> Result<Parsed, LoadError> {
    let mut parsed = Parsed::default();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let err = |path: String, message: String| LoadError {
            source_name: source_name.to_owned(),
            index,
            path,
            message,
        };
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|e| err(".".to_owned(), format!("invalid YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        let field = |name: &str| value.get(name).and_then(serde_yaml::Value::as_str).unwrap_or("");
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        if api_version.is_empty() || kind.is_empty() {
            return Err(err(".".to_owned(), "a resource needs `apiVersion` and `kind`".to_owned()));
        }
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        if group != GROUP {
            parsed.skipped.push((index, format!("{api_version}/{kind}")));
            continue;
        }
        if api_version != API_VERSION {
            return Err(err(
                "apiVersion".to_owned(),
                format!("unsupported version {api_version:?}; this Tollgate serves {API_VERSION}"),
            ));
        }
        let resource = match kind {
            "IPToken" => Resource::IpToken(typed(value, &err)?),
            "Budget" => Resource::Budget(typed(value, &err)?),
            "SafetyPolicy" => Resource::SafetyPolicy(typed(value, &err)?),
            "Agent" => Resource::Agent(typed(value, &err)?),
            "Sandbox" => Resource::Sandbox(typed(value, &err)?),
            "DataPlane" => Resource::DataPlane(typed(value, &err)?),
            other => {
                return Err(err(
                    "kind".to_owned(),
                    format!("unknown kind {other:?}; known kinds: {}", KINDS.join(", ")),
                ));
            }
        };
        parsed.resources.push(resource);
    }
    Ok(parsed)
}

fn typed<T: serde::de::DeserializeOwned>(
    value: serde_yaml::Value,
    err: &dyn Fn(String, String) -> LoadError,
) -> Result<T, LoadError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        err(path, e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: ai}
---
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: openai-main, namespace: ai}
spec:
  provider: openai
  secretRef: {name: openai, key: api-key}
  models:
    - name: gpt-4o-mini
---
"#;

    #[test]
    fn loads_tollgate_documents_and_skips_foreign_ones() {
        let parsed = parse_documents("a.yaml", GOOD).unwrap();
        assert_eq!(parsed.resources.len(), 1);
        assert_eq!(parsed.skipped, vec![(0, "v1/Namespace".to_owned())]);
        let Resource::IpToken(t) = &parsed.resources[0] else { panic!("not an IPToken") };
        assert_eq!(t.spec.weight, 1);
        assert_eq!(t.spec.models[0].name, "gpt-4o-mini");
    }

    #[test]
    fn names_the_field_path() {
        let bad = GOOD.replace("- name: gpt-4o-mini", "- name: gpt\n      upstream: x");
        let e = parse_documents("a.yaml", &bad).unwrap_err();
        assert_eq!(e.index, 1);
        assert_eq!(e.path, "spec.models[0].upstream");
        assert!(e.message.contains("unknown field `upstream`"), "{e}");
        let bad = GOOD.replace("- name: gpt-4o-mini", "- name: [1]");
        let e = parse_documents("a.yaml", &bad).unwrap_err();
        assert_eq!(e.path, "spec.models[0].name");
        let bad = GOOD.replace("provider: openai", "provider: opneai");
        let e = parse_documents("a.yaml", &bad).unwrap_err();
        assert_eq!(e.path, "spec.provider");
        assert!(e.to_string().starts_with("a.yaml: document 1: spec.provider:"), "{e}");
    }

    #[test]
    fn loads_workload_kinds_with_defaults() {
        let yaml = r#"
apiVersion: tollgate.dev/v1alpha1
kind: Agent
metadata: {name: support-bot, namespace: ai}
spec: {image: "example.com/bot:1"}
---
apiVersion: tollgate.dev/v1alpha1
kind: Sandbox
metadata: {name: run-1, namespace: ai}
spec: {image: "python:3.12-slim", command: [python, -c, "print(1)"]}
---
apiVersion: tollgate.dev/v1alpha1
kind: DataPlane
metadata: {name: gateway, namespace: tollgate-system}
spec: {}
"#;
        let parsed = parse_documents("w.yaml", yaml).unwrap();
        let names: Vec<String> = parsed.resources.iter().map(Resource::display_name).collect();
        assert_eq!(names, ["Agent/support-bot", "Sandbox/run-1", "DataPlane/gateway"]);
        let Resource::Agent(a) = &parsed.resources[0] else { panic!("not an Agent") };
        assert_eq!((a.spec.replicas.min, a.spec.replicas.max), (1, 1));
        assert_eq!(a.spec.data_plane_ref.gateway_url(), "http://gateway.tollgate-system.svc:8080");
        let Resource::Sandbox(s) = &parsed.resources[1] else { panic!("not a Sandbox") };
        assert_eq!(s.spec.runtime_class_name, "gvisor");
        assert_eq!(s.spec.timeout_seconds, 300);
        let Resource::DataPlane(d) = &parsed.resources[2] else { panic!("not a DataPlane") };
        assert_eq!(d.spec.cache.type_, crate::dataplane::CacheType::Memory);
        // Workloads compile to nothing in standalone mode, alongside the routing kinds.
        let mut all = parse_documents("a.yaml", GOOD).unwrap().resources;
        all.extend(parsed.resources);
        let config = crate::compile(&all).unwrap();
        assert_eq!(config.ip_tokens.len(), 1);
        // A typo in a workload is caught with its path, like any other kind.
        let e = parse_documents("w.yaml", &yaml.replace("spec: {}", "spec: {cache: {type: memcached}}"))
            .unwrap_err();
        assert_eq!((e.index, e.path.as_str()), (2, "spec.cache.type"));
    }

    #[test]
    fn rejects_unknown_kinds_and_versions() {
        let e = parse_documents("x", "apiVersion: tollgate.dev/v1alpha1\nkind: Nope\n").unwrap_err();
        assert_eq!(e.path, "kind");
        assert!(
            e.message.contains("known kinds: IPToken, Budget, SafetyPolicy, Agent, Sandbox, DataPlane"),
            "{e}"
        );
        let e = parse_documents("x", "apiVersion: tollgate.dev/v9\nkind: IPToken\n").unwrap_err();
        assert_eq!(e.path, "apiVersion");
        let e = parse_documents("x", "kind: IPToken\n").unwrap_err();
        assert_eq!(e.path, ".");
        let e = parse_documents("x", "a: [\n").unwrap_err();
        assert!(e.message.starts_with("invalid YAML"), "{e}");
    }
}
