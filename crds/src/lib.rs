//! Tollgate's API: the custom resources admins write, how they are loaded from YAML, and the
//! pure `compile()` that turns a set of resources into the [`DataPlaneConfig`] a gateway runs.
//!
//! Data flow: YAML documents (`kubectl apply` files or `tollgate up --resources DIR`)
//! → [`load::parse_documents`] → [`Resource`]s → [`compile`] → [`DataPlaneConfig`]
//! (versioned by a content hash). No network code lives here, so the operator, the CLI and
//! the data plane can all share it.
//!
//! Six kinds: `IPToken`, `Budget` and `SafetyPolicy` compile into the gateway's
//! configuration; `Agent`, `Sandbox` and `DataPlane` describe workloads the operator runs
//! (standalone mode loads them but has nothing to run them on). [`status`] holds the
//! condition types and reasons every kind's status uses.

pub mod agent;
pub mod budget;
pub mod config;
pub mod dataplane;
pub mod iptoken;
pub mod load;
pub mod money;
pub mod safety;
pub mod sandbox;
pub mod status;
pub mod workload;

pub use agent::{Agent, AgentSpec};
pub use budget::{Budget, BudgetSpec};
pub use config::{CompileError, DataPlaneConfig, compile};
pub use dataplane::{DataPlane, DataPlaneSpec};
pub use iptoken::{IpToken, IpTokenSpec, ProviderKind};
pub use load::{LoadError, Resource, parse_documents};
pub use sandbox::{Sandbox, SandboxSpec};

/// The API group of every Tollgate resource.
pub const GROUP: &str = "tollgate.dev";
/// The served version of every Tollgate resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in YAML documents.
pub const API_VERSION: &str = "tollgate.dev/v1alpha1";

/// Every CustomResourceDefinition, in a fixed order.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![
        IpToken::crd(),
        Budget::crd(),
        safety::SafetyPolicy::crd(),
        Agent::crd(),
        Sandbox::crd(),
        DataPlane::crd(),
    ]
}

/// Files that hold [`crd_yaml`]'s output, relative to the repository root. `crdgen` writes
/// them; a test fails when one is stale. The copy under `manifests/` exists because
/// kustomize only reads files below a kustomization's own directory.
pub const CRD_YAML_FILES: [&str; 2] = ["crds/yaml/crds.yaml", "manifests/base/crds.yaml"];

/// Every CRD as one multi-document YAML string (what `crdgen` writes).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
