//! `Sandbox`: one run of untrusted code (typically written by an agent) in a hardened pod.
//!
//! The operator creates one Pod (gVisor runtime by default, restricted Pod Security, no
//! service account token, read-only root filesystem) and a NetworkPolicy that denies all
//! egress, or allows only the gateway with `network: gateway`. The spec is immutable: a
//! sandbox is a single run, so a change means a new Sandbox. It is deleted
//! `ttlSecondsAfterFinished` after its pod finished.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::workload::{DataPlaneRef, EnvVar, Resources};

/// The runtime class sandboxes use unless they name another.
pub const DEFAULT_RUNTIME_CLASS: &str = "gvisor";

/// An isolated run of code.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tollgate.dev",
    version = "v1alpha1",
    kind = "Sandbox",
    namespaced,
    status = "SandboxStatus",
    shortname = "sbx",
    category = "tollgate",
    doc = "An isolated run of code in a hardened pod with no network, or only the gateway.",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Exit","type":"integer","jsonPath":".status.exitCode"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self == oldSelf", "message": "a Sandbox is a single run and its spec is immutable: create a new Sandbox"},
    {"rule": "self.network == 'gateway' || !has(self.dataPlaneRef)", "message": "dataPlaneRef applies only with network: gateway"}
]))]
pub struct SandboxSpec {
    /// Container image the code runs in.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// The command to run (the image's entrypoint when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 65536)))]
    pub command: Vec<String>,
    /// Arguments to the command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 65536)))]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvVar>,
    /// Wall-clock limit in seconds; the pod is stopped and the sandbox fails after it
    /// (`activeDeadlineSeconds`). Default 300.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: i64,
    /// CPU and memory. Defaults: requests 100m CPU and 128Mi, limits 1 CPU and 512Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// `none` (default): no network at all. `gateway`: only the Tollgate gateway (and DNS to
    /// find it), never the cloud metadata service or the Kubernetes API.
    #[serde(default)]
    pub network: SandboxNetwork,
    /// The gateway reachable with `network: gateway` (default: DataPlane `gateway` in
    /// `tollgate-system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_plane_ref: Option<DataPlaneRef>,
    /// RuntimeClass of the pod (default `gvisor`, a user-space kernel). An empty string uses
    /// the node's default runtime, which isolates far less: only for clusters without one.
    #[serde(default = "default_runtime_class")]
    #[schemars(length(max = 63), regex(pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"))]
    pub runtime_class_name: String,
    /// Seconds after the pod finished that the Sandbox (and its pod) is deleted. Default 3600.
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 0, max = 604800))]
    pub ttl_seconds_after_finished: i64,
}

fn default_timeout() -> i64 {
    300
}

fn default_ttl() -> i64 {
    3600
}

fn default_runtime_class() -> String {
    DEFAULT_RUNTIME_CLASS.to_owned()
}

/// What a sandbox may reach over the network.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SandboxNetwork {
    /// Nothing: all egress and ingress denied.
    #[default]
    None,
    /// Only the Tollgate gateway and DNS.
    Gateway,
}

/// Where a sandbox run is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum SandboxPhase {
    /// Waiting for its pod to start (image pull, scheduling).
    Pending,
    /// The code runs.
    Running,
    /// The code exited with status 0.
    Succeeded,
    /// The code exited non-zero, was killed, or ran out of time.
    Failed,
}

/// Observed state of a sandbox.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: `Accepted`, `Programmed` (pod and NetworkPolicy created),
    /// `Ready` (the run finished; reason `Completed` or `Failed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// `Pending`, `Running`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SandboxPhase>,
    /// When the code started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it finished (the TTL counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<Time>,
    /// The exit status of the code, once it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Name of the pod that runs the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub pod_name: Option<String>,
}
