//! `Sandbox` → one hardened Pod and a deny-by-default NetworkPolicy; and back, the
//! sandbox's status from its pod, and when the sandbox is due for deletion.
//!
//! The pod runs untrusted code, so it gets every restriction that does not stop code from
//! running: a user-space kernel (`runtimeClassName: gvisor` unless the Sandbox names
//! another), the restricted Pod Security Standard, a read-only root filesystem with a
//! small writable `/tmp`, no service account token, no service-link environment, a hard
//! deadline, and no restarts. Its NetworkPolicy denies all ingress and egress; with
//! `network: gateway` it allows the gateway pods and DNS only, by pod selector — so the
//! cloud metadata service (169.254.169.254), the API server and the internet stay out of
//! reach.

use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, Pod, PodSpec, SecretKeySelector};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::SignedDuration;
use tollgate_crds::Sandbox;
use tollgate_crds::sandbox::{SandboxNetwork, SandboxPhase, SandboxStatus};
use tollgate_crds::status::reason;
use tollgate_crds::workload::{DataPlaneRef, Resources};

use super::agent::{dns_egress, gateway_egress};
use super::{
    Component, Owner, match_labels, resource_requirements, resources, restricted_container_security_context,
    restricted_pod_security_context, selector_labels, tmp_volume,
};
use crate::error::Result;

/// The name of the container that runs the code.
pub const CONTAINER: &str = "sandbox";

/// The objects a Sandbox should have.
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxChildren {
    /// The run.
    pub pod: Pod,
    /// Its network isolation.
    pub network_policy: NetworkPolicy,
}

/// Sandbox resources when the Sandbox names none.
pub fn default_resources() -> Resources {
    resources(("100m", "128Mi"), "512Mi", Some("1"))
}

/// The desired children of `sandbox`.
pub fn desired(sandbox: &Sandbox) -> Result<SandboxChildren> {
    let owner = Owner::of(sandbox)?;
    let name = owner.name.as_str();
    let spec = &sandbox.spec;
    let gateway = match spec.network {
        SandboxNetwork::None => None,
        SandboxNetwork::Gateway => Some(spec.data_plane_ref.clone().unwrap_or_default()),
    };

    let mut env: Vec<EnvVar> = spec
        .env
        .iter()
        .map(|e| EnvVar {
            name: e.name.clone(),
            value: e.value.clone(),
            value_from: e.secret_key_ref.as_ref().map(|r| EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: r.name.clone(),
                    key: r.key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
        })
        .collect();
    if let Some(gateway) = &gateway {
        // Addresses only: a sandbox gets no key of its own; code that needs the gateway is
        // handed a key by the agent that runs it.
        env.push(EnvVar {
            name: "TOLLGATE_BASE_URL".to_owned(),
            value: Some(gateway.gateway_url()),
            value_from: None,
        });
        env.push(EnvVar {
            name: "OPENAI_BASE_URL".to_owned(),
            value: Some(format!("{}/v1", gateway.gateway_url())),
            value_from: None,
        });
    }

    let (tmp, tmp_mount) = tmp_volume("256Mi");
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(spec.image.clone()),
        command: (!spec.command.is_empty()).then(|| spec.command.clone()),
        args: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: (!env.is_empty()).then_some(env),
        resources: Some(resource_requirements(spec.resources.as_ref(), &default_resources())),
        security_context: Some(restricted_container_security_context(true)),
        volume_mounts: Some(vec![tmp_mount]),
        ..Container::default()
    };
    let pod = Pod {
        metadata: owner.child_meta(name, Component::Sandbox),
        spec: Some(PodSpec {
            runtime_class_name: (!spec.runtime_class_name.is_empty())
                .then(|| spec.runtime_class_name.clone()),
            restart_policy: Some("Never".to_owned()),
            active_deadline_seconds: Some(spec.timeout_seconds),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            host_network: Some(false),
            host_pid: Some(false),
            host_ipc: Some(false),
            security_context: Some(restricted_pod_security_context()),
            // The code gets no graceful shutdown worth waiting for.
            termination_grace_period_seconds: Some(5),
            containers: vec![container],
            volumes: Some(vec![tmp]),
            ..PodSpec::default()
        }),
        status: None,
    };

    let network_policy = NetworkPolicy {
        metadata: owner.child_meta(name, Component::Sandbox),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(match_labels(selector_labels(Component::Sandbox, name))),
            // Both directions listed with no ingress rule and (for `none`) no egress rule:
            // everything denied.
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: None,
            egress: gateway.as_ref().map(|g: &DataPlaneRef| vec![gateway_egress(g), dns_egress()]),
        }),
    };
    Ok(SandboxChildren { pod, network_policy })
}

/// What the sandbox's pod says about the run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// The sandbox's phase (`None` before the pod exists).
    pub phase: Option<SandboxPhase>,
    /// When the code started.
    pub start_time: Option<Time>,
    /// When it finished.
    pub finish_time: Option<Time>,
    /// Its exit status.
    pub exit_code: Option<i32>,
    /// The `Ready` condition's reason: `Pending` while it runs, then `Completed` or `Failed`.
    pub reason: &'static str,
    /// What happened, for the condition's message.
    pub message: String,
}

/// Reads the run's state from its pod (`None`: not created yet, or already gone).
pub fn observe(pod: Option<&Pod>) -> Observation {
    let Some(status) = pod.and_then(|p| p.status.as_ref()) else {
        return Observation {
            reason: reason::PENDING,
            message: "waiting for the pod".to_owned(),
            ..Observation::default()
        };
    };
    let container = status
        .container_statuses
        .as_ref()
        .and_then(|list| list.iter().find(|c| c.name == CONTAINER))
        .and_then(|c| c.state.as_ref());
    let terminated = container.and_then(|s| s.terminated.as_ref());
    let start_time = terminated
        .and_then(|t| t.started_at.clone())
        .or_else(|| container.and_then(|s| s.running.as_ref()).and_then(|r| r.started_at.clone()));
    let phase = match status.phase.as_deref() {
        Some("Running") => SandboxPhase::Running,
        Some("Succeeded") => SandboxPhase::Succeeded,
        Some("Failed") => SandboxPhase::Failed,
        _ => SandboxPhase::Pending,
    };
    let (reason, message) = match phase {
        SandboxPhase::Succeeded => (reason::COMPLETED, "the code exited with status 0".to_owned()),
        SandboxPhase::Failed => {
            // The kubelet marks a pod past activeDeadlineSeconds `DeadlineExceeded`.
            let why = match (status.reason.as_deref(), terminated) {
                (Some("DeadlineExceeded"), _) => "the code ran past timeoutSeconds".to_owned(),
                (_, Some(t)) => format!("the code exited with status {}", t.exit_code),
                (Some(r), None) => format!("the pod failed: {r}"),
                (None, None) => "the pod failed".to_owned(),
            };
            (reason::FAILED, why)
        }
        SandboxPhase::Running => (reason::PENDING, "the code is running".to_owned()),
        SandboxPhase::Pending => (reason::PENDING, "the pod is starting".to_owned()),
    };
    let finished = matches!(phase, SandboxPhase::Succeeded | SandboxPhase::Failed);
    Observation {
        phase: Some(phase),
        start_time,
        finish_time: terminated.and_then(|t| t.finished_at.clone()).filter(|_| finished),
        exit_code: terminated.map(|t| t.exit_code),
        reason,
        message,
    }
}

/// When a finished sandbox is due for deletion (`finishTime + ttlSecondsAfterFinished`);
/// `None` while it runs.
pub fn delete_at(status: &SandboxStatus, ttl_seconds: i64) -> Option<Time> {
    let finished = status.finish_time.as_ref()?;
    finished.0.checked_add(SignedDuration::from_secs(ttl_seconds)).ok().map(Time)
}
