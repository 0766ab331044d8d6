//! Desired state: pure functions from a Tollgate resource (plus the few facts a controller
//! looked up, such as a virtual key or a Secret's hash) to the Kubernetes objects that
//! should exist for it. No I/O here: the kube-runtime controllers that apply these objects
//! with server-side apply, and prune the ones no longer returned, wrap them thinly.
//!
//! - [`dataplane`]: `DataPlane` → ServiceAccount, Role, RoleBinding, Deployment, Service,
//!   HPA, PodDisruptionBudget.
//! - [`gateway_config`]: `DataPlaneConfig` → the ConfigMap and provider-key Secret the
//!   gateway pods mount.
//! - [`agent`]: `Agent` → ServiceAccount, virtual-key Secret, Deployment, HPA, NetworkPolicy.
//! - [`sandbox`]: `Sandbox` → Pod and NetworkPolicy; the sandbox's status from its pod.
//!
//! - [`configuration`]: every IPToken, Budget and SafetyPolicy → one `DataPlaneConfig`,
//!   what each resource's status says about it, and a budget's figures.
//! - [`reconcilers`]: the kube-runtime controllers that read inputs, call the functions
//!   above and apply the result.
//!
//! Every child carries a controller owner reference (so Kubernetes garbage-collects it with
//! its owner) and the `app.kubernetes.io/*` labels; every pod meets the restricted Pod
//! Security Standard.

pub mod agent;
pub mod configuration;
pub mod dataplane;
pub mod gateway_config;
pub mod reconcilers;
pub mod sandbox;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, EmptyDirVolumeSource, PodSecurityContext, ResourceRequirements, SeccompProfile,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;
use sha2::{Digest, Sha256};
use tollgate_crds::workload::{ResourceAmounts, Resources};

use crate::error::{Error, Result};

/// `app.kubernetes.io/managed-by` of everything the operator creates; also its field
/// manager prefix.
pub const MANAGED_BY: &str = "tollgate-operator";
/// `app.kubernetes.io/part-of` of everything the operator creates.
pub const PART_OF: &str = "tollgate";
/// Pod-template annotation whose change rolls a Deployment's pods.
pub const CONFIG_HASH_ANNOTATION: &str = "tollgate.dev/config-hash";
/// The user every pod runs as: distroless's `nonroot`. A numeric id lets the kubelet verify
/// `runAsNonRoot` whatever the image says.
pub const RUN_AS_USER: i64 = 65532;

/// What a child is part of, for its labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// A DataPlane's gateway.
    Gateway,
    /// An Agent's workload.
    Agent,
    /// A Sandbox's pod.
    Sandbox,
}

impl Component {
    /// `app.kubernetes.io/name`.
    pub fn app_name(self) -> &'static str {
        match self {
            Self::Gateway => "tollgate-dataplane",
            Self::Agent => "tollgate-agent",
            Self::Sandbox => "tollgate-sandbox",
        }
    }

    /// `app.kubernetes.io/component`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Agent => "agent",
            Self::Sandbox => "sandbox",
        }
    }
}

/// The labels that select the pods of one instance. NB: a Deployment's selector is
/// immutable, so this set must never grow.
pub fn selector_labels(component: Component, instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), component.app_name().to_owned()),
        ("app.kubernetes.io/instance".to_owned(), instance.to_owned()),
    ])
}

/// Every label a child carries.
pub fn labels(component: Component, instance: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(component, instance);
    labels.insert("app.kubernetes.io/component".to_owned(), component.as_str().to_owned());
    labels.insert("app.kubernetes.io/managed-by".to_owned(), MANAGED_BY.to_owned());
    labels.insert("app.kubernetes.io/part-of".to_owned(), PART_OF.to_owned());
    labels
}

/// A selector matching exactly these labels.
pub fn match_labels(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector { match_labels: Some(labels), ..LabelSelector::default() }
}

/// Name, namespace and controller owner reference of a resource, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Owner {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// The reference every child carries (`controller: true`).
    pub reference: OwnerReference,
}

impl Owner {
    /// Reads them from an object; fails for one not (yet) stored by the API server.
    pub fn of<K: Resource<DynamicType = ()>>(obj: &K) -> Result<Self> {
        let kind = match K::kind(&()) {
            std::borrow::Cow::Borrowed(k) => k,
            std::borrow::Cow::Owned(_) => "resource",
        };
        let missing = |field| Error::MissingMetadata { kind, field };
        let meta = obj.meta();
        let name = meta.name.clone().ok_or_else(|| missing("name"))?;
        let namespace = meta.namespace.clone().ok_or_else(|| missing("namespace"))?;
        if meta.uid.is_none() {
            return Err(missing("uid"));
        }
        let reference = obj.controller_owner_ref(&()).ok_or_else(|| missing("uid"))?;
        Ok(Self { name, namespace, reference })
    }

    /// Metadata of a child called `name`.
    pub fn child_meta(&self, name: &str, component: Component) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels(component, &self.name)),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// The pod-level half of the restricted Pod Security Standard, plus a fixed non-root user.
pub fn restricted_pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        fs_group: Some(RUN_AS_USER),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..PodSecurityContext::default()
    }
}

/// The container-level half: no privilege escalation, every capability dropped, seccomp.
/// `read_only_root` is on wherever the image is ours or is untrusted code.
pub fn restricted_container_security_context(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), add: None }),
        privileged: Some(false),
        read_only_root_filesystem: Some(read_only_root),
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None }
}

/// A writable `/tmp` for containers with a read-only root filesystem.
pub fn tmp_volume(size_limit: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity(size_limit.to_owned())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
        VolumeMount { name: "tmp".to_owned(), mount_path: "/tmp".to_owned(), ..VolumeMount::default() },
    )
}

/// The user's resources when given, the defaults otherwise. NB: not merged field by field: a
/// default request next to a lower user limit would make the pod invalid.
pub fn resource_requirements(user: Option<&Resources>, defaults: &Resources) -> ResourceRequirements {
    let chosen = user.unwrap_or(defaults);
    fn amounts(a: Option<&ResourceAmounts>) -> Option<BTreeMap<String, Quantity>> {
        let a = a?;
        let map: BTreeMap<String, Quantity> =
            [("cpu", &a.cpu), ("memory", &a.memory), ("ephemeral-storage", &a.ephemeral_storage)]
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), Quantity(v.clone()))))
                .collect();
        (!map.is_empty()).then_some(map)
    }
    ResourceRequirements {
        requests: amounts(chosen.requests.as_ref()),
        limits: amounts(chosen.limits.as_ref()),
        ..ResourceRequirements::default()
    }
}

/// Whether the requirements request CPU (the HPA needs it).
pub fn requests_cpu(r: &ResourceRequirements) -> bool {
    r.requests.as_ref().is_some_and(|m| m.contains_key("cpu"))
}

/// Resources from literal amounts, for defaults.
pub fn resources(requests: (&str, &str), memory_limit: &str, cpu_limit: Option<&str>) -> Resources {
    Resources {
        requests: Some(ResourceAmounts {
            cpu: Some(requests.0.to_owned()),
            memory: Some(requests.1.to_owned()),
            ephemeral_storage: None,
        }),
        limits: Some(ResourceAmounts {
            cpu: cpu_limit.map(str::to_owned),
            memory: Some(memory_limit.to_owned()),
            ephemeral_storage: None,
        }),
    }
}

/// Hex SHA-256 of `bytes`, shortened to 16 characters: enough to tell versions apart in an
/// annotation, not meant as a content address.
pub fn short_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_extend_the_selector() {
        let selector = selector_labels(Component::Agent, "bot");
        let all = labels(Component::Agent, "bot");
        assert!(selector.iter().all(|(k, v)| all.get(k) == Some(v)));
        assert_eq!(all["app.kubernetes.io/managed-by"], "tollgate-operator");
        assert_eq!(all["app.kubernetes.io/part-of"], "tollgate");
        assert_eq!(all["app.kubernetes.io/component"], "agent");
        assert_eq!(selector.len(), 2, "selectors are immutable: never add to them");
    }

    #[test]
    fn user_resources_replace_the_defaults_whole() {
        let defaults = resources(("100m", "128Mi"), "512Mi", None);
        let user = Resources {
            requests: None,
            limits: Some(ResourceAmounts { memory: Some("64Mi".into()), ..ResourceAmounts::default() }),
        };
        let r = resource_requirements(Some(&user), &defaults);
        assert_eq!(r.requests, None, "no default request above the user's 64Mi limit");
        assert_eq!(r.limits.unwrap()["memory"], Quantity("64Mi".into()));
        let d = resource_requirements(None, &defaults);
        assert!(requests_cpu(&d));
        assert!(!requests_cpu(&resource_requirements(Some(&user), &defaults)));
    }

    #[test]
    fn short_hash_is_stable() {
        assert_eq!(short_hash(b"tollgate"), short_hash(b"tollgate"));
        assert_ne!(short_hash(b"a"), short_hash(b"b"));
        assert_eq!(short_hash(b"").len(), 16);
    }
}
