//! The configuration a gateway is serving, with its upstreams built. A new configuration is
//! built off to the side and swapped in whole (see [`crate::Gateway::apply_config`]), so no
//! request sees half of a change, and one that fails to build leaves the old one in force.

use tollgate_crds::DataPlaneConfig;
use tollgate_crds::config::{ModelRoute, RouteTarget};

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

/// Picks a target by weight. `roll` is a uniformly random number; targets of weight 0 are
/// never chosen. `None` when no target has weight.
pub fn choose_target(route: &ModelRoute, roll: u64) -> Option<&RouteTarget> {
    let total: u64 = route.targets.iter().map(|t| u64::from(t.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut point = roll % total;
    for target in &route.targets {
        let w = u64::from(target.weight);
        if point < w {
            return Some(target);
        }
        point -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_crds::iptoken::ModelKind;

    fn route(weights: &[u32]) -> ModelRoute {
        ModelRoute {
            kind: ModelKind::Chat,
            targets: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| RouteTarget {
                    ip_token: i,
                    upstream_model: "m".into(),
                    weight,
                    prices: None,
                })
                .collect(),
            fallbacks: Vec::new(),
            fallback_on: Vec::new(),
            timeouts: None,
        }
    }

    #[test]
    fn chooses_in_proportion_to_weight() {
        let r = route(&[1, 0, 3]);
        let mut counts = [0; 3];
        for roll in 0..4000 {
            counts[choose_target(&r, roll).unwrap().ip_token] += 1;
        }
        assert_eq!(counts, [1000, 0, 3000]);
        assert!(choose_target(&route(&[0, 0]), 7).is_none());
        assert!(choose_target(&route(&[]), 7).is_none());
    }
}
