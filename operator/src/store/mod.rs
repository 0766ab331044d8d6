//! The control plane's state behind one interface, whatever holds it.
//!
//! - [`ResourceStore`]: Tollgate resources. [`sql::SqlStore`] keeps them in the database in
//!   standalone mode; in Kubernetes the custom resources themselves are the source of truth
//!   (the kube backend). Both feed the same `compile()` → `DataPlaneConfig`.
//! - [`sql::SqlStore`] also holds users, teams, budget owners' preferences, the audit log,
//!   the usage rollups and the scheduler's job table, in the gateway's database.

pub mod kube;
pub mod sql;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Result;

/// A kind of Tollgate resource, as the admin API names it in paths (`iptokens`, ...).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Kind {
    /// `IPToken`.
    #[serde(rename = "IPToken")]
    IpToken,
    /// `Budget`.
    Budget,
    /// `SafetyPolicy`.
    SafetyPolicy,
    /// `Agent`.
    Agent,
    /// `Sandbox`.
    Sandbox,
    /// `DataPlane`.
    DataPlane,
}

impl Kind {
    /// Every kind, in the order `compile()` wants them listed (tokens before budgets).
    pub const ALL: [Kind; 6] =
        [Kind::IpToken, Kind::Budget, Kind::SafetyPolicy, Kind::Agent, Kind::Sandbox, Kind::DataPlane];

    /// `kind:` as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IpToken => "IPToken",
            Self::Budget => "Budget",
            Self::SafetyPolicy => "SafetyPolicy",
            Self::Agent => "Agent",
            Self::Sandbox => "Sandbox",
            Self::DataPlane => "DataPlane",
        }
    }

    /// The plural the API's paths and the CLI use (`kubectl get iptokens` alike).
    pub fn plural(self) -> &'static str {
        match self {
            Self::IpToken => "iptokens",
            Self::Budget => "budgets",
            Self::SafetyPolicy => "safetypolicies",
            Self::Agent => "agents",
            Self::Sandbox => "sandboxes",
            Self::DataPlane => "dataplanes",
        }
    }

    /// Parses a kind, its plural or its singular, case-insensitively (`iptoken`, `IPTokens`).
    pub fn parse(s: &str) -> Option<Self> {
        let lower = s.to_ascii_lowercase();
        Self::ALL.into_iter().find(|k| lower == k.plural() || lower == k.as_str().to_ascii_lowercase())
    }
}

/// A stored resource: the document as the admin wrote it (JSON), plus bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredResource {
    /// Its kind.
    pub kind: Kind,
    /// Namespace (`default` when the document names none).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Increases by one with every change (optimistic concurrency for updates).
    pub generation: i64,
    /// The whole document (`apiVersion`, `kind`, `metadata`, `spec`).
    pub document: Value,
    /// When it was created (epoch ms).
    pub created_at_ms: i64,
    /// When it last changed (epoch ms).
    pub updated_at_ms: i64,
}

/// How a write treats an existing resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Create; a resource with that name must not exist.
    Create,
    /// Replace an existing one; with `Some(generation)`, only if it is still at it.
    Replace(Option<i64>),
    /// Create or replace (`tollgate apply`).
    Apply,
}

/// Where resources live: the database (standalone) or the Kubernetes API.
#[async_trait::async_trait]
pub trait ResourceStore: Send + Sync + std::fmt::Debug {
    /// Every resource of `kind` (all kinds when `None`), sorted by kind, namespace, name.
    async fn list(&self, kind: Option<Kind>) -> Result<Vec<StoredResource>>;
    /// One resource.
    async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<StoredResource>>;
    /// Writes `document` (already validated) as `kind namespace/name`.
    async fn put(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        document: Value,
        mode: WriteMode,
    ) -> Result<StoredResource>;
    /// Deletes one resource; returns what was deleted.
    async fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<StoredResource>>;
    /// Stores a provider key where the gateways read it (the database standalone; a Secret
    /// in the token's namespace in Kubernetes). Write-only: nothing reads it back.
    async fn put_provider_key(&self, namespace: &str, secret: &str, key: &str, value: &str) -> Result<()>;
    /// Whether a provider key is stored and when it was last set (never its value).
    async fn provider_key(&self, namespace: &str, secret: &str, key: &str) -> Result<Option<KeyState>>;
}

/// What is shown about a stored provider key: that it exists, and when it last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyState {
    /// When it was last set (epoch ms), if the store knows.
    pub updated_at_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_plural_singular_and_kind() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.plural()), Some(k));
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert_eq!(Kind::parse(&k.as_str().to_ascii_uppercase()), Some(k));
        }
        assert_eq!(Kind::parse("ipt"), None);
        assert_eq!(serde_json::to_value(Kind::IpToken).unwrap(), "IPToken");
    }
}
