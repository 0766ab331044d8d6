//! Pieces the workload kinds (`Agent`, `Sandbox`, `DataPlane`) share: resource amounts,
//! replica ranges, environment variables and references. They are Tollgate's own small
//! types rather than k8s-openapi's so that every string and list in the CRDs carries a
//! `maxLength`/`maxItems` (the API server needs those bounds to cost CEL rules) and so
//! users cannot reach pod fields the operator must control (security contexts, volumes).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// CPU, memory and ephemeral storage for each container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.requests) || !has(self.limits) || !has(self.requests.cpu) || !has(self.limits.cpu) || quantity(self.requests.cpu).compareTo(quantity(self.limits.cpu)) <= 0",
        "message": "requests.cpu must not exceed limits.cpu"
    },
    {
        "rule": "!has(self.requests) || !has(self.limits) || !has(self.requests.memory) || !has(self.limits.memory) || quantity(self.requests.memory).compareTo(quantity(self.limits.memory)) <= 0",
        "message": "requests.memory must not exceed limits.memory"
    }
]))]
pub struct Resources {
    /// What the scheduler reserves. The HPA's CPU target is a percentage of `requests.cpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,
    /// The most the container may use; memory over the limit ends the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
}

/// Amounts as Kubernetes quantities (`250m`, `1`, `512Mi`, `2Gi`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceAmounts {
    /// CPU in cores or millicores (`500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|[kMGTPE]i?)?$"))]
    pub cpu: Option<String>,
    /// Memory in bytes with a suffix (`256Mi`, `1Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|[kMGTPE]i?)?$"))]
    pub memory: Option<String>,
    /// Scratch disk (`emptyDir` volumes, logs) in bytes with a suffix (`1Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|[kMGTPE]i?)?$"))]
    pub ephemeral_storage: Option<String>,
}

/// How many pods run, and when the HorizontalPodAutoscaler adds more.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.min <= self.max", "message": "min must not exceed max"}
]))]
pub struct Replicas {
    /// The fewest pods (at least 1). With `min == max` no HPA is created.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub min: i32,
    /// The most pods the HPA may scale to.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub max: i32,
    /// Average CPU use, in percent of `resources.requests.cpu`, that the HPA aims for.
    #[serde(default = "default_cpu_target")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: i32,
}

impl Default for Replicas {
    fn default() -> Self {
        Self { min: 1, max: 1, target_cpu_utilization: default_cpu_target() }
    }
}

impl Replicas {
    /// Whether an HPA manages the replica count (there is a range to scale in).
    pub fn autoscaled(&self) -> bool {
        self.max > self.min
    }
}

fn one() -> i32 {
    1
}

fn default_cpu_target() -> i32 {
    80
}

/// An environment variable: a literal value or a key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.value) != has(self.secretKeyRef)", "message": "set exactly one of value and secretKeyRef"},
    {
        "rule": "!self.name.startsWith('TOLLGATE_') && !(self.name in ['OPENAI_BASE_URL', 'OPENAI_API_KEY', 'ANTHROPIC_BASE_URL', 'ANTHROPIC_API_KEY'])",
        "message": "the gateway settings (TOLLGATE_*, OPENAI_/ANTHROPIC_ base URL and key) are set by the operator"
    }
]))]
pub struct EnvVar {
    /// The variable's name.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"))]
    pub name: String,
    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub value: Option<String>,
    /// A key of a Secret in the resource's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<crate::iptoken::SecretRef>,
}

/// A resource of another kind in the same namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalRef {
    /// Its `metadata.name`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The DataPlane (gateway) a workload sends its LLM calls through.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataPlaneRef {
    /// The DataPlane's name.
    #[serde(default = "default_data_plane_name")]
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The DataPlane's namespace.
    #[serde(default = "default_data_plane_namespace")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
}

impl Default for DataPlaneRef {
    fn default() -> Self {
        Self { name: default_data_plane_name(), namespace: default_data_plane_namespace() }
    }
}

/// The name of the DataPlane the manifests install.
pub const DEFAULT_DATA_PLANE_NAME: &str = "gateway";
/// The namespace the manifests install Tollgate into.
pub const DEFAULT_NAMESPACE: &str = "tollgate-system";

fn default_data_plane_name() -> String {
    DEFAULT_DATA_PLANE_NAME.to_owned()
}

fn default_data_plane_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}

/// The port every gateway serves its OpenAI/Anthropic-compatible API on.
pub const GATEWAY_HTTP_PORT: i32 = 8080;
/// The port every gateway serves `/metrics` on.
pub const GATEWAY_METRICS_PORT: i32 = 9090;

impl DataPlaneRef {
    /// The base URL of the gateway's Service, as seen from inside the cluster.
    pub fn gateway_url(&self) -> String {
        format!("http://{}.{}.svc:{GATEWAY_HTTP_PORT}", self.name, self.namespace)
    }
}
