//! Tollgate's API: the custom resources admins write, how they are loaded from YAML, and the
//! pure `compile()` that turns a set of resources into the [`DataPlaneConfig`] a gateway runs.
//!
//! Data flow: YAML documents (`kubectl apply` files or `tollgate up --resources DIR`)
//! → [`load::parse_documents`] → [`Resource`]s → [`compile`] → [`DataPlaneConfig`]
//! (versioned by a content hash). No network code lives here, so the operator, the CLI and
//! the data plane can all share it.

pub mod budget;
pub mod config;
pub mod iptoken;
pub mod load;
pub mod money;
pub mod safety;

pub use budget::{Budget, BudgetSpec};
pub use config::{CompileError, DataPlaneConfig, compile};
pub use iptoken::{IpToken, IpTokenSpec, ProviderKind};
pub use load::{LoadError, Resource, parse_documents};

/// The API group of every Tollgate resource.
pub const GROUP: &str = "tollgate.dev";
/// The served version of every Tollgate resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in YAML documents.
pub const API_VERSION: &str = "tollgate.dev/v1alpha1";

/// Every CRD as one multi-document YAML string (what `crdgen` prints).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let mut out = String::new();
    for crd in [IpToken::crd(), Budget::crd(), safety::SafetyPolicy::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
