//! `DataPlane` → the gateway's ServiceAccount, Role, RoleBinding, Deployment, Service, HPA
//! and PodDisruptionBudget.
//!
//! The gateway reads its provider keys and configuration from mounted files
//! ([`super::gateway_config`]), or its configuration from the database the gateways share,
//! and never calls the Kubernetes API: its pods get no service account token. The
//! configuration is hot-reloaded by the gateway ([`tollgate_dataplane::config_sync`]), so a
//! configuration change does not restart pods; the provider keys are read at start, so
//! their hash is in the pod template and a key rotation rolls the pods one at a time.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe, SecretKeySelector,
    SecretVolumeSource, Service, ServiceAccount, ServicePort, ServiceSpec, TopologySpreadConstraint, Volume,
    VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tollgate_crds::DataPlane;
use tollgate_crds::dataplane::{CacheType, DatabaseType};
use tollgate_crds::iptoken::SecretRef;
use tollgate_crds::workload::{GATEWAY_HTTP_PORT, GATEWAY_METRICS_PORT, Resources};

use super::{
    Component, Owner, match_labels, requests_cpu, resource_requirements, resources,
    restricted_container_security_context, restricted_pod_security_context, selector_labels, tmp_volume,
};
use crate::error::{Error, Result};

/// Where the configuration ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/tollgate/config";
/// The ConfigMap key (and file name) of the compiled configuration.
pub const CONFIG_FILE: &str = "config.json";
/// Where the provider-key Secret is mounted.
pub const SECRETS_DIR: &str = "/etc/tollgate/secrets";
/// The Secret key (and file name) of the provider keys (`NAME: {KEY: value}` YAML).
pub const SECRETS_FILE: &str = "secrets.yaml";
/// Where a SQLite database (and its usage journal) lives.
pub const DATA_DIR: &str = "/var/lib/tollgate";
/// Pod-template annotation: hash of the provider keys the pods were started with.
pub const PROVIDER_KEYS_HASH_ANNOTATION: &str = "tollgate.dev/provider-keys-hash";
/// How long the gateway drains in-flight requests and streams on SIGTERM.
pub const SHUTDOWN_SECONDS: i64 = 30;

/// The name of a DataPlane's configuration ConfigMap.
pub fn config_map_name(data_plane: &str) -> String {
    format!("{data_plane}-config")
}

/// The name of a DataPlane's provider-key Secret.
pub fn provider_keys_secret_name(data_plane: &str) -> String {
    format!("{data_plane}-provider-keys")
}

/// What the controller knows besides the DataPlane itself.
#[derive(Clone, Debug)]
pub struct DataPlaneInputs<'a> {
    /// The image when the DataPlane names none: the operator's own release.
    pub default_image: &'a str,
    /// Hash of the provider-key Secret's content ([`super::gateway_config::ProviderKeys::hash`]).
    pub provider_keys_hash: &'a str,
}

/// Every object a DataPlane should have. `hpa` is `None` when min == max (the controller
/// prunes an existing one).
#[derive(Clone, Debug, PartialEq)]
pub struct DataPlaneChildren {
    /// The gateway pods' identity (no token mounted).
    pub service_account: ServiceAccount,
    /// Read access to exactly its ConfigMap and Secret.
    pub role: Role,
    /// Binds the Role to the ServiceAccount.
    pub role_binding: RoleBinding,
    /// The gateway pods.
    pub deployment: Deployment,
    /// The address agents use (`http://NAME.NAMESPACE.svc:8080`).
    pub service: Service,
    /// CPU autoscaling between min and max.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// At most one gateway voluntarily evicted at a time.
    pub pod_disruption_budget: PodDisruptionBudget,
}

/// Gateway resources when the DataPlane names none.
pub fn default_resources() -> Resources {
    resources(("250m", "256Mi"), "1Gi", None)
}

/// Refuses what would serve wrong answers, before any object is built (also standalone
/// mode's `Accepted` condition of a DataPlane).
pub fn check(dp: &DataPlane) -> Result<()> {
    let max = dp.spec.replicas.max;
    if max > 1 && dp.spec.cache.type_ == CacheType::Memory {
        return Err(Error::MemoryCacheWithReplicas { max });
    }
    if max > 1 && dp.spec.database.type_ == DatabaseType::Sqlite {
        return Err(Error::SqliteWithReplicas { max });
    }
    Ok(())
}

/// The desired children of `dp`, or why there can be none.
pub fn desired(dp: &DataPlane, inputs: &DataPlaneInputs<'_>) -> Result<DataPlaneChildren> {
    check(dp)?;
    let owner = Owner::of(dp)?;
    let name = owner.name.as_str();
    let meta = |child: &str| owner.child_meta(child, Component::Gateway);

    let service_account = ServiceAccount {
        metadata: meta(name),
        // The gateway reads mounted files only; a token would be a credential for nothing.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    };
    let read = |resource: &str, object: String| PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec![resource.to_owned()]),
        resource_names: Some(vec![object]),
        verbs: vec!["get".to_owned(), "watch".to_owned()],
        ..PolicyRule::default()
    };
    let role = Role {
        metadata: meta(name),
        rules: Some(vec![
            read("configmaps", config_map_name(name)),
            read("secrets", provider_keys_secret_name(name)),
        ]),
    };
    let role_binding = RoleBinding {
        metadata: meta(name),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: name.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: name.to_owned(),
            namespace: Some(owner.namespace.clone()),
            ..Subject::default()
        }]),
    };

    let resources = resource_requirements(dp.spec.resources.as_ref(), &default_resources());
    let replicas = dp.spec.replicas;
    if replicas.autoscaled() && !requests_cpu(&resources) {
        return Err(Error::AutoscalingWithoutCpuRequest);
    }
    let deployment = Deployment {
        metadata: meta(name),
        spec: Some(DeploymentSpec {
            // Under an HPA the replica count is the HPA's: leaving it out of the applied
            // object keeps server-side apply from fighting it.
            replicas: (!replicas.autoscaled()).then_some(replicas.min),
            selector: match_labels(selector_labels(Component::Gateway, name)),
            strategy: Some(strategy(dp)),
            template: pod_template(dp, &owner, inputs, resources),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };

    let port = |port_name: &str, port: i32| ServicePort {
        name: Some(port_name.to_owned()),
        port,
        target_port: Some(IntOrString::String(port_name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    };
    let service = Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(Component::Gateway, name)),
            ports: Some(vec![port("http", GATEWAY_HTTP_PORT), port("metrics", GATEWAY_METRICS_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };

    let hpa = replicas.autoscaled().then(|| HorizontalPodAutoscaler {
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

    let pod_disruption_budget = PodDisruptionBudget {
        metadata: meta(name),
        spec: Some(PodDisruptionBudgetSpec {
            // One at a time: with several replicas the rest keep serving; with one, a node
            // drain is still allowed (minAvailable 1 would block it forever).
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(match_labels(selector_labels(Component::Gateway, name))),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    };

    Ok(DataPlaneChildren {
        service_account,
        role,
        role_binding,
        deployment,
        service,
        hpa,
        pod_disruption_budget,
    })
}

/// The HPA metric: average CPU utilisation in percent of the request.
pub fn cpu_metric(target: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".to_owned(),
        resource: Some(ResourceMetricSource {
            name: "cpu".to_owned(),
            target: MetricTarget {
                type_: "Utilization".to_owned(),
                average_utilization: Some(target),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }
}

fn strategy(dp: &DataPlane) -> DeploymentStrategy {
    if dp.spec.database.type_ == DatabaseType::Sqlite {
        // One pod owns the SQLite file (and a PVC is ReadWriteOnce): the old pod must be
        // gone before the new one opens it.
        return DeploymentStrategy { type_: Some("Recreate".to_owned()), rolling_update: None };
    }
    DeploymentStrategy {
        type_: Some("RollingUpdate".to_owned()),
        // Never below the current capacity during a roll (key rotation, upgrades).
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(1)),
            max_unavailable: Some(IntOrString::Int(0)),
        }),
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.to_owned(), value: Some(value.into()), value_from: None }
}

fn env_from_secret(name: &str, r: &SecretRef) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn pod_template(
    dp: &DataPlane,
    owner: &Owner,
    inputs: &DataPlaneInputs<'_>,
    resources: k8s_openapi::api::core::v1::ResourceRequirements,
) -> PodTemplateSpec {
    let name = owner.name.as_str();
    let spec = &dp.spec;
    let mut envs = vec![
        env("TOLLGATE_CONFIG", format!("{CONFIG_DIR}/{CONFIG_FILE}")),
        env("TOLLGATE_SECRETS_FILE", format!("{SECRETS_DIR}/{SECRETS_FILE}")),
        env("TOLLGATE_LISTEN", format!("0.0.0.0:{GATEWAY_HTTP_PORT}")),
        env("TOLLGATE_METRICS_LISTEN", format!("0.0.0.0:{GATEWAY_METRICS_PORT}")),
        env("TOLLGATE_SHUTDOWN_SECONDS", SHUTDOWN_SECONDS.to_string()),
        env("TOLLGATE_LOG_FORMAT", spec.log_format.as_str()),
    ];
    if let Some(level) = &spec.log_level {
        envs.push(env("TOLLGATE_LOG", level.clone()));
    }
    if let Some(endpoint) = &spec.otlp_endpoint {
        envs.push(env("TOLLGATE_OTLP_ENDPOINT", endpoint.clone()));
    }
    // Connection URLs carry passwords: they stay in the user's Secrets and reach the pod as
    // secretKeyRef env, never as literal values in the Deployment.
    match (&spec.database.type_, &spec.database.postgres) {
        (DatabaseType::Postgres, Some(pg)) => {
            envs.push(env_from_secret("TOLLGATE_DATABASE_URL", &pg.url_secret_ref))
        }
        _ => envs.push(env("TOLLGATE_DATABASE_URL", format!("sqlite://{DATA_DIR}/tollgate.db"))),
    }
    if let (CacheType::Redis, Some(redis)) = (&spec.cache.type_, &spec.cache.redis) {
        envs.push(env_from_secret("TOLLGATE_REDIS_URL", &redis.url_secret_ref));
        if let Some(prefix) = &redis.key_prefix {
            envs.push(env("TOLLGATE_REDIS_PREFIX", prefix.clone()));
        }
    }

    let (tmp, tmp_mount) = tmp_volume("64Mi");
    let mount = |volume: &str, path: &str, read_only: bool| VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    let mut volumes = vec![
        Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "provider-keys".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(provider_keys_secret_name(name)),
                // Owner read only (the gateway's uid, via fsGroup).
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        tmp,
    ];
    let mut mounts =
        vec![mount("config", CONFIG_DIR, true), mount("provider-keys", SECRETS_DIR, true), tmp_mount];
    if spec.database.type_ == DatabaseType::Sqlite {
        let claim = spec.database.sqlite.as_ref().and_then(|s| s.persistent_volume_claim_name.clone());
        let data = match claim {
            Some(claim_name) => Volume {
                name: "data".to_owned(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name,
                    read_only: Some(false),
                }),
                ..Volume::default()
            },
            None => Volume {
                name: "data".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        };
        volumes.push(data);
        mounts.push(mount("data", DATA_DIR, false));
    }

    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    };
    let port = |port_name: &str, port: i32| ContainerPort {
        name: Some(port_name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    let container = Container {
        name: "gateway".to_owned(),
        image: Some(spec.image.clone().unwrap_or_else(|| inputs.default_image.to_owned())),
        command: Some(vec!["tollgate-dataplane".to_owned()]),
        env: Some(envs),
        ports: Some(vec![port("http", GATEWAY_HTTP_PORT), port("metrics", GATEWAY_METRICS_PORT)]),
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(Probe { failure_threshold: Some(6), ..probe("/healthz", 10) }),
        resources: Some(resources),
        security_context: Some(restricted_container_security_context(true)),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let spread = spec.replicas.max > 1;
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(super::labels(Component::Gateway, name)),
            annotations: Some(BTreeMap::from([(
                PROVIDER_KEYS_HASH_ANNOTATION.to_owned(),
                inputs.provider_keys_hash.to_owned(),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(name.to_owned()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(restricted_pod_security_context()),
            // Longer than the drain, so in-flight streams finish before SIGKILL.
            termination_grace_period_seconds: Some(SHUTDOWN_SECONDS + 15),
            topology_spread_constraints: spread.then(|| {
                vec![TopologySpreadConstraint {
                    max_skew: 1,
                    topology_key: "kubernetes.io/hostname".to_owned(),
                    when_unsatisfiable: "ScheduleAnyway".to_owned(),
                    label_selector: Some(match_labels(selector_labels(Component::Gateway, name))),
                    ..TopologySpreadConstraint::default()
                }]
            }),
            containers: vec![container],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    }
}
