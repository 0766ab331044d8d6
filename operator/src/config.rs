//! Standalone mode's configuration source: resource files (GitOps, read-only to the API)
//! plus the resources created through the admin API ([`crate::store::sql::SqlStore`]),
//! compiled together by the same `compile()` the operator uses and handed to the
//! in-process gateway. A change that does not compile is refused before it is stored, so
//! the configuration in force is always the last good one.

use std::sync::RwLock;

use tollgate_crds::{Resource, compile, parse_documents};
use tollgate_dataplane::secrets::SecretSource;

use crate::store::{Kind, ResourceStore, StoredResource};

/// What the resource files hold, and the secrets given outside the API.
#[derive(Debug, Default)]
pub struct ConfigSource {
    files: RwLock<Vec<Resource>>,
    base_secrets: RwLock<SecretSource>,
}

/// `namespace/name` of a resource, `default` when it names no namespace.
pub fn resource_id(r: &Resource) -> (Kind, String, String) {
    macro_rules! meta {
        ($x:expr) => {
            (
                $x.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned()),
                $x.metadata.name.clone().unwrap_or_default(),
            )
        };
    }
    let (kind, (ns, name)) = match r {
        Resource::IpToken(x) => (Kind::IpToken, meta!(x)),
        Resource::Budget(x) => (Kind::Budget, meta!(x)),
        Resource::SafetyPolicy(x) => (Kind::SafetyPolicy, meta!(x)),
        Resource::Agent(x) => (Kind::Agent, meta!(x)),
        Resource::Sandbox(x) => (Kind::Sandbox, meta!(x)),
        Resource::DataPlane(x) => (Kind::DataPlane, meta!(x)),
    };
    (kind, ns, name)
}

/// Parses a stored document back into a resource.
pub fn parse_stored(s: &StoredResource) -> Result<Resource, String> {
    let text = s.document.to_string();
    let parsed = parse_documents(&format!("{} {}/{}", s.kind.as_str(), s.namespace, s.name), &text)
        .map_err(|e| e.to_string())?;
    parsed.resources.into_iter().next().ok_or_else(|| "stored document holds no resource".to_owned())
}

impl ConfigSource {
    /// Sets what the resource files hold now.
    pub fn set_files(&self, resources: Vec<Resource>) {
        if let Ok(mut f) = self.files.write() {
            *f = resources;
        }
    }

    /// What the resource files hold.
    pub fn files(&self) -> Vec<Resource> {
        self.files.read().map(|f| f.clone()).unwrap_or_default()
    }

    /// Sets the secrets from the secrets file and environment.
    pub fn set_base_secrets(&self, s: SecretSource) {
        if let Ok(mut b) = self.base_secrets.write() {
            *b = s;
        }
    }

    /// The secrets from the secrets file and environment.
    pub fn base_secrets(&self) -> SecretSource {
        self.base_secrets.read().map(|b| b.clone()).unwrap_or_default()
    }

    /// Whether `kind namespace/name` comes from a resource file.
    pub fn from_file(&self, kind: Kind, namespace: &str, name: &str) -> bool {
        self.files().iter().any(|r| resource_id(r) == (kind, namespace.to_owned(), name.to_owned()))
    }

    /// Every resource in force: files, then the API's (files win a name clash, which the
    /// API refuses anyway).
    pub async fn all(&self, store: &dyn ResourceStore) -> Result<Vec<Resource>, String> {
        let mut all = self.files();
        let stored = store.list(None).await.map_err(|e| e.to_string())?;
        for s in &stored {
            if !self.from_file(s.kind, &s.namespace, &s.name) {
                all.push(parse_stored(s)?);
            }
        }
        Ok(all)
    }
}

/// Compiles `resources`; the error lists every problem, one per line.
pub fn check(resources: &[Resource]) -> Result<tollgate_crds::DataPlaneConfig, String> {
    compile(resources).map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
}
