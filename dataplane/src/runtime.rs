//! The configuration a gateway is serving, with its upstreams built. A new configuration is
//! built off to the side and swapped in whole (see [`crate::Gateway::apply_config`]), so no
//! request sees half of a change, and one that fails to build leaves the old one in force.

use tollgate_crds::DataPlaneConfig;
use tollgate_crds::config::ModelRoute;

use crate::budget::BudgetIndex;
use crate::error::Result;
use crate::providers::Upstream;
use crate::secrets::SecretSource;

/// A built configuration.
#[derive(Debug)]
pub struct Runtime {
    /// What it was built from.
    pub config: DataPlaneConfig,
    /// One per `config.ip_tokens`, same order.
    pub upstreams: Vec<Upstream>,
    /// Budgets by subject.
    pub budget_index: BudgetIndex,
    /// The compiled safety policies.
    pub safety: crate::safety::SafetyEngine,
}

impl Runtime {
    /// Resolves every IP token's secret and builds its upstream. Any failure fails the whole.
    pub fn build(config: DataPlaneConfig, secrets: &SecretSource) -> Result<Self> {
        let upstreams = config
            .ip_tokens
            .iter()
            .map(|token| {
                let key = token.secret_ref.as_ref().map(|r| secrets.resolve(r)).transpose()?;
                Upstream::new(token, key)
            })
            .collect::<Result<_>>()?;
        let budget_index = BudgetIndex::new(&config.budgets);
        let safety = crate::safety::SafetyEngine::new(&config.safety_policies)
            .map_err(|e| crate::error::Error::Config(format!("safety policies: {e}")))?;
        Ok(Self { config, upstreams, budget_index, safety })
    }

    /// An empty runtime (no models) for a gateway still waiting for configuration.
    pub fn empty() -> Result<Self> {
        let safety = crate::safety::SafetyEngine::empty()
            .map_err(|e| crate::error::Error::Config(format!("safety engine: {e}")))?;
        Ok(Self {
            config: DataPlaneConfig::default(),
            upstreams: Vec::new(),
            budget_index: BudgetIndex::default(),
            safety,
        })
    }

    /// How `model` is served, if it is.
    pub fn route(&self, model: &str) -> Option<&ModelRoute> {
        self.config.models.get(model)
    }
}
