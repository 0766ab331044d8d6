//! `Agent` → ServiceAccount, virtual-key Secret, Deployment, HPA and NetworkPolicy.
//!
//! The agent's containers get the gateway's address and the agent's virtual key in the
//! variables unmodified OpenAI and Anthropic clients read (`OPENAI_BASE_URL`,
//! `OPENAI_API_KEY`, `ANTHROPIC_BASE_URL`, `ANTHROPIC_API_KEY`) and in Tollgate's own
//! (`TOLLGATE_BASE_URL`, `TOLLGATE_API_KEY`). The key reaches them only through a
//! `secretKeyRef`, never as a literal in the Deployment. The NetworkPolicy lets the pods
//! reach the data plane and DNS and nothing else, so no code path can call a provider
//! directly.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, Secret, SecretKeySelector, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use tollgate_crds::Agent;
use tollgate_crds::workload::{DataPlaneRef, GATEWAY_HTTP_PORT, Resources};

use super::dataplane::cpu_metric;
use super::{
    CONFIG_HASH_ANNOTATION, Component, Owner, match_labels, requests_cpu, resource_requirements, resources,
    restricted_container_security_context, restricted_pod_security_context, selector_labels, short_hash,
    tmp_volume,
};
use crate::error::{Error, Result};

/// The key of the virtual key inside the agent's Secret.
pub const API_KEY_SECRET_KEY: &str = "api-key";

/// Variables the operator sets; an agent's own `env` may not use these names (the CRD's CEL
/// rule refuses them, and [`desired`] drops them should one get through).
pub const RESERVED_ENV: [&str; 4] =
    ["OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"];

/// The name of an agent's virtual-key Secret.
pub fn key_secret_name(agent: &str) -> String {
    format!("{agent}-virtual-key")
}

/// What the controller knows besides the Agent itself.
#[derive(Clone, Copy, Debug)]
pub struct AgentInputs<'a> {
    /// The agent's virtual key, issued by the control plane (and kept in the Secret from
    /// then on: a reconcile reuses the Secret's value rather than issuing a new one).
    pub virtual_key: &'a str,
    /// Its budget is exhausted with `onExhausted: suspend-agents`: run zero pods.
    pub suspended: bool,
}

/// Every object an Agent should have. `hpa` is `None` when min == max or while suspended.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentChildren {
    /// The pods' identity (no token mounted: agents have no business with the API).
    pub service_account: ServiceAccount,
    /// The virtual key.
    pub key_secret: Secret,
    /// The agent's pods.
    pub deployment: Deployment,
    /// CPU autoscaling between min and max.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// Egress to the data plane and DNS only.
    pub network_policy: NetworkPolicy,
}

/// Agent resources when the Agent names none.
pub fn default_resources() -> Resources {
    resources(("100m", "128Mi"), "512Mi", None)
}

/// The desired children of `agent`.
pub fn desired(agent: &Agent, inputs: &AgentInputs<'_>) -> Result<AgentChildren> {
    let owner = Owner::of(agent)?;
    let name = owner.name.as_str();
    let meta = |child: &str| owner.child_meta(child, Component::Agent);
    let spec = &agent.spec;
    let gateway = &spec.data_plane_ref;

    let service_account = ServiceAccount {
        metadata: meta(name),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    };
    let key_secret = Secret {
        metadata: meta(&key_secret_name(name)),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            API_KEY_SECRET_KEY.to_owned(),
            ByteString(inputs.virtual_key.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    };

    let resources = resource_requirements(spec.resources.as_ref(), &default_resources());
    let replicas = spec.replicas;
    let autoscaled = replicas.autoscaled() && !inputs.suspended;
    if autoscaled && !requests_cpu(&resources) {
        return Err(Error::AutoscalingWithoutCpuRequest);
    }
    // Changing any of these must restart the pods: env is read at container start.
    #[derive(Serialize)]
    struct Rolled<'a> {
        spec: &'a tollgate_crds::AgentSpec,
        gateway: String,
        key: String,
    }
    let rolled =
        Rolled { spec, gateway: gateway.gateway_url(), key: short_hash(inputs.virtual_key.as_bytes()) };
    let config_hash = short_hash(&serde_json::to_vec(&rolled)?);

    let mut env: Vec<EnvVar> = spec
        .env
        .iter()
        .filter(|e| !e.name.starts_with("TOLLGATE_") && !RESERVED_ENV.contains(&e.name.as_str()))
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
    env.extend(gateway_env(gateway, &key_secret_name(name)));

    let (tmp, tmp_mount) = tmp_volume("256Mi");
    let container = Container {
        name: "agent".to_owned(),
        image: Some(spec.image.clone()),
        command: (!spec.command.is_empty()).then(|| spec.command.clone()),
        args: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: Some(env),
        resources: Some(resources),
        // NB: the root filesystem stays writable: agent images are the user's and many
        // write to $HOME or caches. Everything the restricted standard requires is set.
        security_context: Some(restricted_container_security_context(false)),
        volume_mounts: Some(vec![tmp_mount]),
        ..Container::default()
    };
    let deployment = Deployment {
        metadata: meta(name),
        spec: Some(DeploymentSpec {
            replicas: if inputs.suspended {
                Some(0)
            } else if autoscaled {
                None
            } else {
                Some(replicas.min)
            },
            selector: match_labels(selector_labels(Component::Agent, name)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(super::labels(Component::Agent, name)),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), config_hash)])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name.to_owned()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(restricted_pod_security_context()),
                    containers: vec![container],
                    volumes: Some(vec![tmp]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };

    let hpa = autoscaled.then(|| HorizontalPodAutoscaler {
        metadata: meta(name),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: name.to_owned(),
            },
            min_replicas: Some(replicas.min),
            max_replicas: replicas.max,
            metrics: Some(vec![cpu_metric(replicas.target_cpu_utilization)]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    });

    let network_policy = NetworkPolicy {
        metadata: meta(name),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(match_labels(selector_labels(Component::Agent, name))),
            // Egress only: who may call the agent is the user's business.
            policy_types: Some(vec!["Egress".to_owned()]),
            egress: Some(vec![gateway_egress(gateway), dns_egress()]),
            ..NetworkPolicySpec::default()
        }),
    };

    Ok(AgentChildren { service_account, key_secret, deployment, hpa, network_policy })
}

/// The variables that point clients at the gateway; the key comes from `key_secret`.
fn gateway_env(gateway: &DataPlaneRef, key_secret: &str) -> Vec<EnvVar> {
    let url = gateway.gateway_url();
    let literal =
        |name: &str, value: String| EnvVar { name: name.to_owned(), value: Some(value), value_from: None };
    let key = |name: &str| EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: key_secret.to_owned(),
                key: API_KEY_SECRET_KEY.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    };
    vec![
        // The OpenAI SDKs append paths to a base that includes `/v1`; Anthropic's add `/v1`.
        literal("OPENAI_BASE_URL", format!("{url}/v1")),
        key("OPENAI_API_KEY"),
        literal("ANTHROPIC_BASE_URL", url.clone()),
        key("ANTHROPIC_API_KEY"),
        literal("TOLLGATE_BASE_URL", url),
        key("TOLLGATE_API_KEY"),
    ]
}

/// Egress to the gateway pods of `gateway` on the gateway port (HTTP and gRPC share it).
pub fn gateway_egress(gateway: &DataPlaneRef) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(namespace_selector(&gateway.namespace)),
            pod_selector: Some(match_labels(selector_labels(Component::Gateway, &gateway.name))),
            ip_block: None,
        }]),
        ports: Some(vec![tcp(GATEWAY_HTTP_PORT)]),
    }
}

/// Egress to DNS in `kube-system` (UDP and TCP 53), to resolve the gateway's name.
pub fn dns_egress() -> NetworkPolicyEgressRule {
    let port = |protocol: &str| NetworkPolicyPort {
        protocol: Some(protocol.to_owned()),
        port: Some(IntOrString::Int(53)),
        end_port: None,
    };
    NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(namespace_selector("kube-system")),
            pod_selector: None,
            ip_block: None,
        }]),
        ports: Some(vec![port("UDP"), port("TCP")]),
    }
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort { protocol: Some("TCP".to_owned()), port: Some(IntOrString::Int(port)), end_port: None }
}

/// Selects a namespace by the label the API server sets on every namespace.
fn namespace_selector(namespace: &str) -> LabelSelector {
    match_labels(BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), namespace.to_owned())]))
}
