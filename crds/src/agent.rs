//! `Agent`: an AI agent workload whose every LLM call goes through a Tollgate gateway.
//!
//! The operator turns one into a Deployment, a ServiceAccount, an HPA, a Secret holding the
//! agent's virtual key, and a NetworkPolicy whose egress allows only the data plane and DNS,
//! so an agent cannot call a provider directly even if its code tries.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::workload::{DataPlaneRef, EnvVar, LocalRef, Replicas, Resources};

/// An agent workload governed by Tollgate.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tollgate.dev",
    version = "v1alpha1",
    kind = "Agent",
    namespaced,
    status = "AgentStatus",
    shortname = "agt",
    category = "tollgate",
    doc = "An agent workload: its pods reach LLMs only through a Tollgate gateway.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Budget","type":"string","jsonPath":".spec.budgetRef.name","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSpec {
    /// Container image of the agent (`registry.example.com/team/agent:1.4.2`).
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Overrides the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Vec<String>,
    /// Arguments to the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub args: Vec<String>,
    /// Environment variables. The gateway settings (`OPENAI_BASE_URL`, `ANTHROPIC_BASE_URL`,
    /// `TOLLGATE_BASE_URL`, `TOLLGATE_API_KEY`, ...) are added by the operator and cannot be
    /// set here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvVar>,
    /// CPU and memory of the agent container. Defaults: requests 100m CPU and 128Mi,
    /// limit 512Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// How many pods run (default one), scaled by an HPA on CPU between `min` and `max`.
    #[serde(default)]
    pub replicas: Replicas,
    /// The Budget (same namespace) the agent's spending counts against. With
    /// `onExhausted: suspend-agents` on it, the agent is scaled to zero until the next period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_ref: Option<LocalRef>,
    /// The SafetyPolicy (same namespace) applied to the agent's traffic, in addition to
    /// every policy whose selector matches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_policy_ref: Option<LocalRef>,
    /// Models the agent may use (empty: whatever its budget and the IP tokens allow).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub allowed_models: Vec<String>,
    /// The gateway the agent's calls go through (default: DataPlane `gateway` in
    /// `tollgate-system`). The NetworkPolicy allows egress to its pods only.
    #[serde(default)]
    pub data_plane_ref: DataPlaneRef,
}

/// Observed state of an agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: `Accepted` (references resolve), `Programmed` (children applied),
    /// `Ready` (pods available; `Suspended` when its budget scaled it to zero).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Pods of the agent that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Name of the Secret holding the agent's virtual key (key `api-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub key_secret_name: Option<String>,
    /// Whether the agent is scaled to zero because its budget is exhausted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<bool>,
}
