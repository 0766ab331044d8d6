//! The configuration a gateway is serving, with its upstreams built. A new configuration is
//! built off to the side and swapped in whole (see [`crate::Gateway::apply_config`]), so no
//! request sees half of a change, and one that fails to build leaves the old one in force.
//!
//! Building is per IP token: a token whose key cannot be resolved (its secret is not set
//! yet, or the value cannot be sent in a header) is kept *out of service* — its targets are
//! skipped, a model only it serves answers 503 naming it — and everything else is served.
//! One forgotten key never holds back budgets, policies or other tokens, and never stops a
//! gateway from starting.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use tollgate_crds::DataPlaneConfig;
use tollgate_crds::config::{IpTokenConfig, ModelRoute};
use tollgate_crds::status::reason;

use crate::budget::BudgetIndex;
use crate::error::{Error, Result};
use crate::providers::Upstream;
use crate::secrets::{ExposeSecret, SecretSource, SecretString};

/// Why an IP token of the configuration is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfService {
    /// The IP token (`namespace/name`).
    pub ip_token: String,
    /// A stable condition reason (`SecretNotFound`, `SecretKeyNotFound`, `InvalidSpec`).
    pub reason: &'static str,
    /// What to fix. Never contains a key.
    pub message: String,
    /// Since when (epoch milliseconds): kept across configurations while the reason stays.
    pub since_ms: i64,
}

/// A built configuration.
#[derive(Debug)]
pub struct Runtime {
    /// What it was built from.
    pub config: DataPlaneConfig,
    /// One per `config.ip_tokens`, same order. An out-of-service token's upstream has no
    /// key and is never chosen.
    pub upstreams: Vec<Upstream>,
    /// IP tokens that are not served, by index into `config.ip_tokens`.
    pub out_of_service: BTreeMap<usize, OutOfService>,
    /// [`keys_fingerprint`] of the keys this was built with.
    pub keys_fingerprint: String,
    /// When this configuration was built (epoch milliseconds).
    pub built_at_ms: i64,
    /// Budgets by subject.
    pub budget_index: BudgetIndex,
    /// The compiled safety policies.
    pub safety: crate::safety::SafetyEngine,
}

/// A token's key, or why there is none.
fn resolve_key(
    token: &IpTokenConfig,
    secrets: &SecretSource,
) -> Result<Option<SecretString>, (&'static str, String)> {
    let Some(r) = &token.secret_ref else { return Ok(None) };
    secrets.resolve(r).map(Some).map_err(|e| {
        let why =
            if secrets.has_secret(&r.name) { reason::SECRET_KEY_NOT_FOUND } else { reason::SECRET_NOT_FOUND };
        let hint = match e {
            Error::SecretMissing { hint, .. } => hint,
            other => other.to_string(),
        };
        (
            why,
            format!(
                "IP token {} has no key: secret {:?} key {:?} is not set ({hint})",
                token.id, r.name, r.key
            ),
        )
    })
}

/// A digest of the key each IP token of `config` resolves to under `secrets` (or that it
/// resolves to none): a configuration of the same hash must be rebuilt when this changes
/// (a key set, rotated or removed). Never reveals a key.
pub fn keys_fingerprint(config: &DataPlaneConfig, secrets: &SecretSource) -> String {
    let mut h = Sha256::new();
    for token in &config.ip_tokens {
        h.update(token.id.as_bytes());
        h.update([0]);
        match resolve_key(token, secrets) {
            Ok(Some(k)) => {
                h.update([1]);
                h.update(k.expose_secret().as_bytes());
            }
            Ok(None) => h.update([2]),
            Err(_) => h.update([3]),
        }
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Runtime {
    /// Resolves every IP token's secret and builds its upstream. A token whose key cannot
    /// be resolved or used is left out of service (see the module header); `previous` is
    /// the configuration in force, whose out-of-service times carry over.
    pub fn build(
        config: DataPlaneConfig,
        secrets: &SecretSource,
        previous: Option<&Runtime>,
    ) -> Result<Self> {
        let now = crate::now_ms();
        let since = |id: &str, why: &'static str| {
            previous
                .and_then(|p| p.out_of_service.values().find(|o| o.ip_token == id && o.reason == why))
                .map_or(now, |o| o.since_ms)
        };
        let mut upstreams = Vec::with_capacity(config.ip_tokens.len());
        let mut out_of_service = BTreeMap::new();
        for (i, token) in config.ip_tokens.iter().enumerate() {
            let built = resolve_key(token, secrets).and_then(|key| {
                Upstream::new(token, key).map_err(|e| {
                    (reason::INVALID_SPEC, format!("IP token {} cannot be served: {e}", token.id))
                })
            });
            let upstream = match built {
                Ok(u) => u,
                Err((why, message)) => {
                    tracing::warn!(ip_token = %token.id, reason = why, %message, "IP token out of service");
                    out_of_service.insert(
                        i,
                        OutOfService {
                            ip_token: token.id.clone(),
                            reason: why,
                            message,
                            since_ms: since(&token.id, why),
                        },
                    );
                    Upstream::stand_in(token)
                }
            };
            upstreams.push(upstream);
        }
        let keys_fingerprint = keys_fingerprint(&config, secrets);
        let budget_index = BudgetIndex::new(&config.budgets);
        let safety = crate::safety::SafetyEngine::new(&config.safety_policies)
            .map_err(|e| Error::Config(format!("safety policies: {e}")))?;
        Ok(Self {
            config,
            upstreams,
            out_of_service,
            keys_fingerprint,
            built_at_ms: now,
            budget_index,
            safety,
        })
    }

    /// An empty runtime (no models) for a gateway still waiting for configuration.
    pub fn empty() -> Result<Self> {
        let safety =
            crate::safety::SafetyEngine::empty().map_err(|e| Error::Config(format!("safety engine: {e}")))?;
        Ok(Self {
            config: DataPlaneConfig::default(),
            upstreams: Vec::new(),
            out_of_service: BTreeMap::new(),
            keys_fingerprint: String::new(),
            built_at_ms: crate::now_ms(),
            budget_index: BudgetIndex::default(),
            safety,
        })
    }

    /// How `model` is served, if it is.
    pub fn route(&self, model: &str) -> Option<&ModelRoute> {
        self.config.models.get(model)
    }

    /// Why the IP token at `index` is not served, if it is not.
    pub fn out_of_service(&self, index: usize) -> Option<&OutOfService> {
        self.out_of_service.get(&index)
    }
}
