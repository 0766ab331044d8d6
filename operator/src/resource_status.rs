//! What the control plane says about each resource when it is not in Kubernetes (standalone
//! mode, and the admin API's view): the `status.conditions` a resource would carry, decided
//! by a pure function from the resource, the others beside it and the configuration the
//! in-process gateway has in force. In Kubernetes the controllers write these conditions on
//! the custom resources themselves (`controllers::reconcilers`).
//!
//! - `Accepted`: the resource can be served as written. `False` for an IP token whose key
//!   is not set (`SecretNotFound`, `SecretKeyNotFound`) or cannot be used (`InvalidSpec`),
//!   an Agent or Sandbox naming a Budget, SafetyPolicy or DataPlane that does not exist
//!   (`ReferenceNotFound`), a DataPlane that cannot run as asked
//!   (`ReplicasNeedSharedState`).
//! - `Ready`: in effect. IP tokens, Budgets and SafetyPolicies are ready when the gateway
//!   serves or enforces them; a resource the gateway does not have yet is `Pending` (with
//!   why the last change was not applied, when it was not). Workloads (Agent, Sandbox,
//!   DataPlane) are never ready here: standalone mode has nothing to run them on
//!   (`Standalone`).

use std::collections::HashSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Value, json};
use tollgate_crds::status::{ACCEPTED, ConditionStatus, READY, reason, set_condition};
use tollgate_crds::workload::DataPlaneRef;
use tollgate_crds::{DataPlaneConfig, Resource};
use tollgate_dataplane::runtime::OutOfService;

use crate::config::resource_id;
use crate::store::Kind;

/// The configuration in force on the in-process gateway, and why the last change was not
/// applied (if it was not).
#[derive(Debug, Clone, Copy)]
pub struct InForce<'a> {
    /// What the gateway runs.
    pub config: &'a DataPlaneConfig,
    /// Its IP tokens that are not served.
    pub out_of_service: &'a [OutOfService],
    /// When it was applied (epoch milliseconds).
    pub applied_at_ms: i64,
    /// Why the newest resources could not be applied, if they could not.
    pub refusal: Option<&'a str>,
}

/// Every resource in force by `(kind, namespace, name)`, for resolving references.
pub type Known = HashSet<(Kind, String, String)>;

/// The index of `all`.
pub fn known(all: &[Resource]) -> Known {
    all.iter().map(resource_id).collect()
}

/// `status` of `resource` at `generation`, beside the resources `known`:
/// `{observedGeneration, conditions}`.
pub fn status(resource: &Resource, known: &Known, in_force: &InForce<'_>, generation: i64) -> Value {
    let (kind, namespace, name) = resource_id(resource);
    let id = format!("{namespace}/{name}");
    let generation = Some(generation).filter(|g| *g > 0);
    let at = |ms: i64| Time(k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap_or_default());
    let mut conditions: Vec<Condition> = Vec::new();
    let mut set = |type_: &str, ok: bool, why: &str, message: &str, since_ms: i64| {
        set_condition(
            &mut conditions,
            type_,
            ConditionStatus::from(ok),
            why,
            message,
            generation,
            &at(since_ms),
        );
    };
    let applied = in_force.applied_at_ms;
    let pending = || match in_force.refusal {
        Some(why) => format!("not in the configuration in force, which stays until this is fixed: {why}"),
        None => "not in the configuration in force yet".to_owned(),
    };
    match kind {
        Kind::IpToken => match in_force.out_of_service.iter().find(|o| o.ip_token == id) {
            Some(o) => {
                set(ACCEPTED, false, o.reason, &o.message, o.since_ms);
                set(
                    READY,
                    false,
                    o.reason,
                    "out of service: its models are served by other IP tokens or answer 503",
                    o.since_ms,
                );
            }
            None if in_force.config.ip_tokens.iter().any(|t| t.id == id) => {
                set(ACCEPTED, true, reason::ACCEPTED, "", applied);
                set(READY, true, reason::READY, "serving", applied);
            }
            None => {
                set(ACCEPTED, true, reason::ACCEPTED, "", applied);
                set(READY, false, reason::PENDING, &pending(), applied);
            }
        },
        Kind::Budget | Kind::SafetyPolicy => {
            let in_config = match kind {
                Kind::Budget => in_force.config.budgets.iter().any(|b| b.id == id),
                _ => in_force.config.safety_policies.iter().any(|p| p.id == id),
            };
            set(ACCEPTED, true, reason::ACCEPTED, "", applied);
            if in_config {
                set(READY, true, reason::READY, "enforced by the gateway", applied);
            } else {
                set(READY, false, reason::PENDING, &pending(), applied);
            }
        }
        Kind::Agent | Kind::Sandbox | Kind::DataPlane => {
            match workload_problem(resource, &namespace, known) {
                Some((why, message)) => set(ACCEPTED, false, why, &message, applied),
                None => set(ACCEPTED, true, reason::ACCEPTED, "", applied),
            }
            set(
                READY,
                false,
                reason::STANDALONE,
                "standalone mode runs no workloads; apply it to a Kubernetes cluster running the operator",
                applied,
            );
        }
    }
    let mut status = json!({"conditions": conditions});
    if let (Some(g), Some(obj)) = (generation, status.as_object_mut()) {
        obj.insert("observedGeneration".into(), json!(g));
    }
    status
}

/// Why a workload cannot run as written: a reference that does not resolve, or a DataPlane
/// the operator would refuse.
fn workload_problem(resource: &Resource, namespace: &str, known: &Known) -> Option<(&'static str, String)> {
    let exists = |kind: Kind, ns: &str, name: &str| known.contains(&(kind, ns.to_owned(), name.to_owned()));
    // NB: the default DataPlane is the gateway this process runs; only another one named
    // explicitly must exist as a resource.
    let data_plane = |r: &DataPlaneRef| {
        (*r != DataPlaneRef::default() && !exists(Kind::DataPlane, &r.namespace, &r.name))
            .then(|| format!("DataPlane {}/{}", r.namespace, r.name))
    };
    let missing: Vec<String> = match resource {
        Resource::Agent(a) => {
            let spec = &a.spec;
            [
                spec.budget_ref
                    .as_ref()
                    .filter(|r| !exists(Kind::Budget, namespace, &r.name))
                    .map(|r| format!("Budget {namespace}/{}", r.name)),
                spec.safety_policy_ref
                    .as_ref()
                    .filter(|r| !exists(Kind::SafetyPolicy, namespace, &r.name))
                    .map(|r| format!("SafetyPolicy {namespace}/{}", r.name)),
                data_plane(&spec.data_plane_ref),
            ]
            .into_iter()
            .flatten()
            .collect()
        }
        Resource::Sandbox(s) => s.spec.data_plane_ref.as_ref().and_then(data_plane).into_iter().collect(),
        Resource::DataPlane(dp) => {
            return crate::controllers::dataplane::check(dp).err().map(|e| (e.reason(), e.to_string()));
        }
        Resource::IpToken(_) | Resource::Budget(_) | Resource::SafetyPolicy(_) => Vec::new(),
    };
    (!missing.is_empty()).then(|| (reason::REFERENCE_NOT_FOUND, format!("{} not found", missing.join(", "))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    fn condition<'a>(status: &'a Value, type_: &str) -> (&'a str, &'a str) {
        let c = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == type_).unwrap();
        (c["status"].as_str().unwrap(), c["reason"].as_str().unwrap())
    }

    const ALL: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: team}
spec: {subject: {kind: team, name: t}, limit: "1", period: daily}
---
apiVersion: tollgate.dev/v1alpha1
kind: Agent
metadata: {name: good}
spec: {image: "x:1", budgetRef: {name: team}}
---
apiVersion: tollgate.dev/v1alpha1
kind: Agent
metadata: {name: orphan}
spec: {image: "x:1", budgetRef: {name: gone}, safetyPolicyRef: {name: none}}
---
apiVersion: tollgate.dev/v1alpha1
kind: Sandbox
metadata: {name: lost}
spec: {image: "x:1", timeoutSeconds: 10, dataPlaneRef: {name: elsewhere, namespace: x}}
---
apiVersion: tollgate.dev/v1alpha1
kind: DataPlane
metadata: {name: wide}
spec: {replicas: {min: 1, max: 3}}
"#;

    #[test]
    fn workloads_report_what_they_cannot_run_with() {
        let all = tollgate_crds::parse_documents("t", ALL).unwrap().resources;
        let config = DataPlaneConfig::default();
        let in_force = InForce { config: &config, out_of_service: &[], applied_at_ms: 0, refusal: None };
        let known = known(&all);
        let of = |i: usize| status(&all[i], &known, &in_force, 1);
        assert_eq!(condition(&of(1), ACCEPTED), ("True", reason::ACCEPTED));
        assert_eq!(condition(&of(1), READY), ("False", reason::STANDALONE));
        let orphan = of(2);
        assert_eq!(condition(&orphan, ACCEPTED), ("False", reason::REFERENCE_NOT_FOUND));
        let message = orphan["conditions"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("Budget default/gone") && message.contains("SafetyPolicy default/none"),
            "{message}"
        );
        assert_eq!(condition(&of(3), ACCEPTED), ("False", reason::REFERENCE_NOT_FOUND));
        assert_eq!(condition(&of(4), ACCEPTED), ("False", reason::REPLICAS_NEED_SHARED_STATE));
        // A budget the gateway does not have yet is pending, with why.
        let refused = InForce { refusal: Some("IPToken/default/x: spec.baseUrl: bad"), ..in_force };
        let budget = status(&all[0], &known, &refused, 1);
        assert_eq!(condition(&budget, READY), ("False", reason::PENDING));
        assert!(budget.to_string().contains("spec.baseUrl"), "{budget}");
    }
}
