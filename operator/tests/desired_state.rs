#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The desired-state functions: golden files (`tests/snapshots/`, reviewed with
//! `cargo insta review`; CI fails on any difference) for what each kind becomes, and
//! explicit checks of the properties that matter — hardening, isolation, ownership,
//! secrets staying secret.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodSpec, PodStatus,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde::de::DeserializeOwned;
use tollgate_crds::sandbox::{SandboxPhase, SandboxStatus};
use tollgate_crds::status::reason;
use tollgate_crds::{Agent, DataPlane, DataPlaneConfig, Sandbox};
use tollgate_operator::controllers::agent::{self, AgentInputs};
use tollgate_operator::controllers::dataplane::{self, DataPlaneInputs};
use tollgate_operator::controllers::gateway_config::{self, SecretData};
use tollgate_operator::controllers::{Owner, sandbox};
use tollgate_operator::error::Error;

const KEY: &str = "tg-agent-7f3a9c2e5b1d4f60a8e2c9b7d1f3e5a7";

/// A resource as the API server would hand it to a controller (with a uid).
fn resource<K: DeserializeOwned>(kind: &str, name: &str, namespace: &str, spec: &str) -> K {
    let yaml = format!(
        "apiVersion: tollgate.dev/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  \
         uid: 00000000-0000-4000-8000-{:012}\n  generation: 1\nspec:\n{spec}",
        name.len()
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn data_plane(spec: &str) -> DataPlane {
    resource("DataPlane", "gateway", "tollgate-system", spec)
}

const PRODUCTION: &str = r#"
  replicas: {min: 2, max: 10, targetCpuUtilization: 70}
  resources: {requests: {cpu: 500m, memory: 512Mi}, limits: {memory: 2Gi}}
  cache: {type: redis, redis: {urlSecretRef: {name: tollgate-redis, key: url}, keyPrefix: prod}}
  database: {type: postgres, postgres: {urlSecretRef: {name: tollgate-postgres, key: url}}}
  logLevel: info
  otlpEndpoint: http://otel-collector.observability:4317
"#;

fn agent_resource(extra: &str) -> Agent {
    resource(
        "Agent",
        "support-bot",
        "ai",
        &format!(
            r#"
  image: registry.example.com/support-bot:1.4.2
  args: ["--queue", "tickets"]
  env:
    - {{name: LOG_LEVEL, value: info}}
    - {{name: CRM_TOKEN, secretKeyRef: {{name: crm, key: token}}}}
  replicas: {{min: 1, max: 4}}
  budgetRef: {{name: support}}
  allowedModels: [gpt-4o-mini]
{extra}"#
        ),
    )
}

fn sandbox_resource(extra: &str) -> Sandbox {
    resource(
        "Sandbox",
        "run-42",
        "ai",
        &format!(
            "  image: python:3.12-slim\n  command: [python, -c, \"print(6*7)\"]\n  timeoutSeconds: 120\n{extra}"
        ),
    )
}

fn inputs() -> DataPlaneInputs<'static> {
    DataPlaneInputs {
        default_image: "ghcr.io/tollgate-dev/tollgate:0.1.0",
        provider_keys_hash: "5d41402abc4b2a76",
    }
}

/// Every object as JSON, in a stable order, for snapshots and generic checks.
fn objects(list: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    list
}

fn dp_objects(c: &dataplane::DataPlaneChildren) -> Vec<serde_json::Value> {
    let mut v = vec![
        serde_json::to_value(&c.service_account).unwrap(),
        serde_json::to_value(&c.role).unwrap(),
        serde_json::to_value(&c.role_binding).unwrap(),
        serde_json::to_value(&c.deployment).unwrap(),
        serde_json::to_value(&c.service).unwrap(),
        serde_json::to_value(&c.pod_disruption_budget).unwrap(),
    ];
    v.extend(c.hpa.iter().map(|h| serde_json::to_value(h).unwrap()));
    objects(v)
}

fn agent_objects(c: &agent::AgentChildren) -> Vec<serde_json::Value> {
    let mut v = vec![
        serde_json::to_value(&c.service_account).unwrap(),
        serde_json::to_value(&c.key_secret).unwrap(),
        serde_json::to_value(&c.deployment).unwrap(),
        serde_json::to_value(&c.network_policy).unwrap(),
    ];
    v.extend(c.hpa.iter().map(|h| serde_json::to_value(h).unwrap()));
    v
}

fn sandbox_objects(c: &sandbox::SandboxChildren) -> Vec<serde_json::Value> {
    vec![serde_json::to_value(&c.pod).unwrap(), serde_json::to_value(&c.network_policy).unwrap()]
}

// ---------------------------------------------------------------------------------------
// Golden files
// ---------------------------------------------------------------------------------------

#[test]
fn golden_data_plane_pilot() {
    let c = dataplane::desired(&data_plane("  {}"), &inputs()).unwrap();
    insta::assert_yaml_snapshot!("dataplane_pilot", dp_objects(&c));
}

#[test]
fn golden_data_plane_production() {
    let c = dataplane::desired(&data_plane(PRODUCTION), &inputs()).unwrap();
    insta::assert_yaml_snapshot!("dataplane_production", dp_objects(&c));
}

#[test]
fn golden_agent() {
    let c = agent::desired(&agent_resource(""), &AgentInputs { virtual_key: KEY, suspended: false }).unwrap();
    insta::assert_yaml_snapshot!("agent", agent_objects(&c));
}

#[test]
fn golden_sandbox_without_network() {
    let c = sandbox::desired(&sandbox_resource("")).unwrap();
    insta::assert_yaml_snapshot!("sandbox_none", sandbox_objects(&c));
}

#[test]
fn golden_sandbox_with_gateway_network() {
    let c = sandbox::desired(&sandbox_resource("  network: gateway\n  runtimeClassName: kata\n")).unwrap();
    insta::assert_yaml_snapshot!("sandbox_gateway", sandbox_objects(&c));
}

const TOKENS: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: openai-main, namespace: ai}
spec:
  provider: openai
  secretRef: {name: openai, key: api-key}
  models: [{name: gpt-4o-mini}]
---
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock, namespace: ai}
spec:
  provider: mock
  models: [{name: mock-1}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: support, namespace: ai}
spec: {subject: {kind: agent, name: support-bot}, limit: "25", period: daily}
"#;

fn compiled(yaml: &str) -> DataPlaneConfig {
    tollgate_crds::compile(&tollgate_crds::parse_documents("t", yaml).unwrap().resources).unwrap()
}

fn secrets(entries: &[(&str, &str, &str, &str)]) -> SecretData {
    let mut out: SecretData = BTreeMap::new();
    for (ns, name, key, value) in entries {
        out.entry(((*ns).to_owned(), (*name).to_owned()))
            .or_default()
            .insert((*key).to_owned(), value.as_bytes().to_vec());
    }
    out
}

#[test]
fn golden_gateway_configuration() {
    let config = compiled(TOKENS);
    let resolved = gateway_config::resolve_provider_keys(
        &config,
        &secrets(&[("ai", "openai", "api-key", "sk-example-not-a-real-key\n")]),
    );
    assert_eq!(resolved.problems, vec![]);
    let owner = Owner::of(&data_plane("  {}")).unwrap();
    let map = gateway_config::config_map(&owner, &config, &resolved.keys).unwrap();
    let secret = gateway_config::provider_keys_secret(&owner, &resolved.keys).unwrap();
    insta::assert_yaml_snapshot!("gateway_configuration", (map, secret));
}

// ---------------------------------------------------------------------------------------
// Hardening: every pod the operator creates meets the restricted Pod Security Standard
// ---------------------------------------------------------------------------------------

/// The checks of the restricted profile (Kubernetes' Pod Security Standards), for one pod.
fn assert_restricted(what: &str, pod: &PodSpec) {
    let psc = pod.security_context.as_ref().unwrap_or_else(|| panic!("{what}: no pod securityContext"));
    assert_eq!(psc.run_as_non_root, Some(true), "{what}");
    assert!(psc.run_as_user.is_some_and(|u| u != 0), "{what}: runAsUser 0");
    assert_eq!(psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()), Some("RuntimeDefault"), "{what}");
    assert_ne!(pod.host_network, Some(true), "{what}");
    assert_ne!(pod.host_pid, Some(true), "{what}");
    assert_ne!(pod.host_ipc, Some(true), "{what}");
    assert_eq!(pod.automount_service_account_token, Some(false), "{what}: no API token");
    for v in pod.volumes.iter().flatten() {
        // The restricted profile's allowed volume types (those we use).
        let allowed = v.config_map.is_some()
            || v.secret.is_some()
            || v.empty_dir.is_some()
            || v.persistent_volume_claim.is_some()
            || v.projected.is_some()
            || v.downward_api.is_some();
        assert!(allowed && v.host_path.is_none(), "{what}: volume {} not allowed", v.name);
    }
    let containers = pod.containers.iter().chain(pod.init_containers.iter().flatten());
    for c in containers {
        let sc =
            c.security_context.as_ref().unwrap_or_else(|| panic!("{what}/{}: no securityContext", c.name));
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{what}/{}", c.name);
        assert_ne!(sc.privileged, Some(true), "{what}/{}", c.name);
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]), "{what}/{}", c.name);
        assert!(caps.add.as_ref().is_none_or(|a| a.iter().all(|c| c == "NET_BIND_SERVICE")), "{what}");
        assert_ne!(sc.run_as_non_root, Some(false), "{what}/{}", c.name);
        assert_ne!(sc.run_as_user, Some(0), "{what}/{}", c.name);
        for port in c.ports.iter().flatten() {
            assert_eq!(port.host_port, None, "{what}/{}: hostPort", c.name);
        }
        assert!(
            c.resources.as_ref().is_some_and(|r| r.limits.as_ref().is_some_and(|l| l.contains_key("memory")))
        );
    }
}

fn template(d: &k8s_openapi::api::apps::v1::Deployment) -> &PodSpec {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

#[test]
fn every_desired_pod_meets_the_restricted_standard() {
    let mut pods: Vec<(String, PodSpec)> = Vec::new();
    for (label, spec) in [("pilot", "  {}"), ("production", PRODUCTION)] {
        let c = dataplane::desired(&data_plane(spec), &inputs()).unwrap();
        let pod = template(&c.deployment).clone();
        // Our own image and untrusted code: read-only root filesystems.
        assert!(
            pod.containers
                .iter()
                .all(|c| c.security_context.as_ref().unwrap().read_only_root_filesystem == Some(true))
        );
        pods.push((format!("dataplane/{label}"), pod));
    }
    for suspended in [false, true] {
        let c = agent::desired(&agent_resource(""), &AgentInputs { virtual_key: KEY, suspended }).unwrap();
        pods.push((format!("agent/suspended={suspended}"), template(&c.deployment).clone()));
    }
    for extra in ["", "  network: gateway\n", "  runtimeClassName: \"\"\n"] {
        let c = sandbox::desired(&sandbox_resource(extra)).unwrap();
        let pod = c.pod.spec.clone().unwrap();
        assert!(
            pod.containers
                .iter()
                .all(|c| c.security_context.as_ref().unwrap().read_only_root_filesystem == Some(true))
        );
        pods.push((format!("sandbox/{extra:?}"), pod));
    }
    assert_eq!(pods.len(), 7);
    for (what, pod) in &pods {
        assert_restricted(what, pod);
    }
}

#[test]
fn sandbox_pods_are_isolated_runs() {
    let pod = sandbox::desired(&sandbox_resource("")).unwrap().pod.spec.unwrap();
    assert_eq!(pod.runtime_class_name.as_deref(), Some("gvisor"));
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.active_deadline_seconds, Some(120));
    assert_eq!(pod.enable_service_links, Some(false));
    assert_eq!(pod.containers[0].env, None, "no network: not even the gateway's address");
    let mounts = pod.containers[0].volume_mounts.as_ref().unwrap();
    assert_eq!(mounts.iter().map(|m| m.mount_path.as_str()).collect::<Vec<_>>(), ["/tmp"]);
    let custom = sandbox::desired(&sandbox_resource("  runtimeClassName: kata\n")).unwrap();
    assert_eq!(custom.pod.spec.unwrap().runtime_class_name.as_deref(), Some("kata"));
    let node_default = sandbox::desired(&sandbox_resource("  runtimeClassName: \"\"\n")).unwrap();
    assert_eq!(node_default.pod.spec.unwrap().runtime_class_name, None);
}

/// Every peer any egress rule allows.
fn egress_peers(np: &NetworkPolicy) -> Vec<serde_json::Value> {
    let spec = np.spec.as_ref().unwrap();
    spec.egress
        .iter()
        .flatten()
        .flat_map(|r| r.to.iter().flatten())
        .map(|p| serde_json::to_value(p).unwrap())
        .collect()
}

#[test]
fn sandbox_network_is_denied_or_gateway_only() {
    let none = sandbox::desired(&sandbox_resource("")).unwrap().network_policy;
    let spec = none.spec.as_ref().unwrap();
    assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_owned(), "Egress".to_owned()][..]));
    assert_eq!(spec.egress, None, "no egress rule: all egress denied");
    assert_eq!(spec.ingress, None, "no ingress rule: all ingress denied");

    let gw = sandbox::desired(&sandbox_resource("  network: gateway\n")).unwrap().network_policy;
    let peers = egress_peers(&gw);
    assert_eq!(peers.len(), 2, "{peers:?}");
    for p in &peers {
        // Pod and namespace selectors only: an ipBlock could open 169.254.169.254 (cloud
        // metadata) or the API server's address.
        assert!(p.get("ipBlock").is_none(), "{p}");
        assert!(p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].is_string(), "{p}");
    }
    assert_eq!(peers[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "tollgate-dataplane");
    assert_eq!(
        peers[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "tollgate-system"
    );
    assert_eq!(peers[1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "kube-system");
    assert!(!serde_json::to_string(&gw).unwrap().contains("169.254"));
}

// ---------------------------------------------------------------------------------------
// Ownership and labels
// ---------------------------------------------------------------------------------------

#[test]
fn every_child_is_owned_and_labelled() {
    let mut all: Vec<(String, serde_json::Value)> = Vec::new();
    let dp = data_plane(PRODUCTION);
    all.extend(
        dp_objects(&dataplane::desired(&dp, &inputs()).unwrap()).into_iter().map(|o| ("DataPlane".into(), o)),
    );
    let a = agent_resource("");
    all.extend(
        agent_objects(&agent::desired(&a, &AgentInputs { virtual_key: KEY, suspended: false }).unwrap())
            .into_iter()
            .map(|o| ("Agent".into(), o)),
    );
    let s = sandbox_resource("  network: gateway\n");
    all.extend(sandbox_objects(&sandbox::desired(&s).unwrap()).into_iter().map(|o| ("Sandbox".into(), o)));
    let owner = Owner::of(&dp).unwrap();
    let map = gateway_config::config_map(&owner, &compiled(TOKENS), &Default::default()).unwrap();
    all.push(("DataPlane".into(), serde_json::to_value(map).unwrap()));
    assert_eq!(all.len(), 7 + 5 + 2 + 1);
    for (owner_kind, o) in &all {
        let what = format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap());
        let refs = o["metadata"]["ownerReferences"].as_array().unwrap();
        assert_eq!(refs.len(), 1, "{what}");
        assert_eq!(refs[0]["kind"], owner_kind.as_str(), "{what}");
        assert_eq!(refs[0]["apiVersion"], "tollgate.dev/v1alpha1", "{what}");
        assert_eq!(refs[0]["controller"], true, "{what}");
        assert!(refs[0]["uid"].as_str().is_some_and(|u| !u.is_empty()), "{what}");
        let labels = &o["metadata"]["labels"];
        for key in ["name", "instance", "component", "managed-by", "part-of"] {
            assert!(labels[format!("app.kubernetes.io/{key}")].is_string(), "{what} lacks {key}");
        }
        assert_eq!(labels["app.kubernetes.io/managed-by"], "tollgate-operator", "{what}");
        assert_eq!(labels["app.kubernetes.io/part-of"], "tollgate", "{what}");
        assert_eq!(
            o["metadata"]["namespace"],
            refs_namespace(owner_kind),
            "{what}: children live beside their owner"
        );
    }
    fn refs_namespace(kind: &str) -> &'static str {
        if kind == "DataPlane" { "tollgate-system" } else { "ai" }
    }
}

#[test]
fn an_object_never_stored_has_no_owner_reference_to_give() {
    let mut dp = data_plane("  {}");
    dp.metadata.uid = None;
    let e = dataplane::desired(&dp, &inputs()).unwrap_err();
    assert!(matches!(e, Error::MissingMetadata { field: "uid", .. }), "{e}");
    let mut s = sandbox_resource("");
    s.metadata = ObjectMeta { name: Some("x".into()), ..ObjectMeta::default() };
    assert!(matches!(sandbox::desired(&s).unwrap_err(), Error::MissingMetadata { field: "namespace", .. }));
}

// ---------------------------------------------------------------------------------------
// DataPlane decisions
// ---------------------------------------------------------------------------------------

#[test]
fn memory_cache_or_sqlite_with_several_replicas_is_refused_with_a_reason() {
    let e = dataplane::desired(&data_plane("  replicas: {min: 1, max: 3}"), &inputs()).unwrap_err();
    assert!(matches!(e, Error::MemoryCacheWithReplicas { max: 3 }), "{e}");
    assert_eq!(e.reason(), reason::REPLICAS_NEED_SHARED_STATE);
    assert!(e.to_string().contains("multiply every limit"), "{e}");
    let redis_only =
        "  replicas: {min: 2, max: 2}\n  cache: {type: redis, redis: {urlSecretRef: {name: r, key: url}}}";
    let e = dataplane::desired(&data_plane(redis_only), &inputs()).unwrap_err();
    assert!(matches!(e, Error::SqliteWithReplicas { max: 2 }), "{e}");
    assert_eq!(e.metric_label(), "sqlite_with_replicas");
}

#[test]
fn autoscaling_needs_a_cpu_request() {
    let spec = PRODUCTION.replace("requests: {cpu: 500m, memory: 512Mi}", "requests: {memory: 512Mi}");
    let e = dataplane::desired(&data_plane(&spec), &inputs()).unwrap_err();
    assert!(matches!(e, Error::AutoscalingWithoutCpuRequest), "{e}");
    // Without a range to scale in, no HPA and no need.
    let fixed = spec.replace("{min: 2, max: 10, targetCpuUtilization: 70}", "{min: 3, max: 3}");
    let c = dataplane::desired(&data_plane(&fixed), &inputs()).unwrap();
    assert!(c.hpa.is_none());
    assert_eq!(c.deployment.spec.unwrap().replicas, Some(3));
}

#[test]
fn data_plane_scaling_and_rollout() {
    let prod = dataplane::desired(&data_plane(PRODUCTION), &inputs()).unwrap();
    let hpa = prod.hpa.as_ref().unwrap().spec.as_ref().unwrap();
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 10));
    let spec = prod.deployment.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, None, "the HPA owns the replica count");
    let rolling = spec.strategy.as_ref().unwrap().rolling_update.as_ref().unwrap();
    assert_eq!(serde_json::to_value(&rolling.max_unavailable).unwrap(), 0, "rolls never reduce capacity");
    let pilot = dataplane::desired(&data_plane("  {}"), &inputs()).unwrap();
    assert!(pilot.hpa.is_none());
    let spec = pilot.deployment.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.strategy.as_ref().unwrap().type_.as_deref(),
        Some("Recreate"),
        "one pod owns the SQLite file"
    );
    // A new provider-keys hash changes the pod template (a roll); nothing else does.
    let rotated = DataPlaneInputs { provider_keys_hash: "aaaaaaaaaaaaaaaa", ..inputs() };
    let after = dataplane::desired(&data_plane(PRODUCTION), &rotated).unwrap();
    assert_ne!(after.deployment, prod.deployment);
    assert_eq!(after.service, prod.service);
    assert_eq!(dataplane::desired(&data_plane(PRODUCTION), &inputs()).unwrap(), prod, "deterministic");
}

#[test]
fn data_plane_connection_urls_come_from_secrets_and_rbac_is_narrow() {
    let c = dataplane::desired(&data_plane(PRODUCTION), &inputs()).unwrap();
    let env = template(&c.deployment).containers[0].env.clone().unwrap();
    for name in ["TOLLGATE_DATABASE_URL", "TOLLGATE_REDIS_URL"] {
        let var = env.iter().find(|e| e.name == name).unwrap();
        assert_eq!(var.value, None, "{name} must not be a literal");
        assert!(var.value_from.as_ref().unwrap().secret_key_ref.is_some(), "{name}");
    }
    let rules = c.role.rules.unwrap();
    assert_eq!(rules.len(), 2);
    for r in &rules {
        assert_eq!(r.verbs, ["get", "watch"]);
        assert_eq!(
            r.resource_names.as_ref().unwrap().len(),
            1,
            "one named object per rule, never a whole kind"
        );
    }
    let names: Vec<&str> = rules.iter().map(|r| r.resource_names.as_ref().unwrap()[0].as_str()).collect();
    assert_eq!(names, ["gateway-config", "gateway-provider-keys"]);
    assert_eq!(c.role_binding.subjects.unwrap()[0].name, "gateway");
}

// ---------------------------------------------------------------------------------------
// Agent decisions
// ---------------------------------------------------------------------------------------

#[test]
fn agents_reach_llms_only_through_the_gateway() {
    let c = agent::desired(&agent_resource(""), &AgentInputs { virtual_key: KEY, suspended: false }).unwrap();
    let env = template(&c.deployment).containers[0].env.clone().unwrap();
    let value = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
    assert_eq!(value("OPENAI_BASE_URL").as_deref(), Some("http://gateway.tollgate-system.svc:8080/v1"));
    assert_eq!(value("ANTHROPIC_BASE_URL").as_deref(), Some("http://gateway.tollgate-system.svc:8080"));
    assert_eq!(value("TOLLGATE_BASE_URL").as_deref(), Some("http://gateway.tollgate-system.svc:8080"));
    for name in ["TOLLGATE_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"] {
        let var = env.iter().find(|e| e.name == name).unwrap();
        let r = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((r.name.as_str(), r.key.as_str()), ("support-bot-virtual-key", "api-key"), "{name}");
    }
    // The key is in the Secret and nowhere else.
    assert_eq!(c.key_secret.data.as_ref().unwrap()["api-key"].0, KEY.as_bytes());
    for o in [serde_json::to_string(&c.deployment), serde_json::to_string(&c.network_policy)] {
        assert!(!o.unwrap().contains(KEY));
    }
    let peers = egress_peers(&c.network_policy);
    assert_eq!(peers.len(), 2, "the data plane and DNS, nothing else: {peers:?}");
    assert_eq!(
        c.network_policy.spec.as_ref().unwrap().policy_types.as_deref(),
        Some(&["Egress".to_owned()][..])
    );
    assert!(peers.iter().all(|p| p.get("ipBlock").is_none()));
}

#[test]
fn agent_env_cannot_shadow_the_gateway_settings() {
    // The CRD's CEL rule refuses these; should one get through, the operator still drops it.
    let a = agent_resource("").clone();
    let mut a = a;
    a.spec
        .env
        .push(serde_yaml::from_str("{name: OPENAI_BASE_URL, value: 'https://api.openai.com/v1'}").unwrap());
    a.spec.env.push(serde_yaml::from_str("{name: TOLLGATE_API_KEY, value: stolen}").unwrap());
    let c = agent::desired(&a, &AgentInputs { virtual_key: KEY, suspended: false }).unwrap();
    let env = template(&c.deployment).containers[0].env.clone().unwrap();
    assert_eq!(env.iter().filter(|e| e.name == "OPENAI_BASE_URL").count(), 1);
    assert!(env.iter().all(|e| e.value.as_deref() != Some("https://api.openai.com/v1")));
    assert!(env.iter().all(|e| e.value.as_deref() != Some("stolen")));
    assert_eq!(env[0].name, "LOG_LEVEL", "the agent's own variables are kept, in order");
}

#[test]
fn suspended_agents_scale_to_zero_and_changes_roll() {
    let a = agent_resource("");
    let running = agent::desired(&a, &AgentInputs { virtual_key: KEY, suspended: false }).unwrap();
    assert_eq!(running.deployment.spec.as_ref().unwrap().replicas, None, "the HPA owns it");
    assert!(running.hpa.is_some());
    let suspended = agent::desired(&a, &AgentInputs { virtual_key: KEY, suspended: true }).unwrap();
    assert_eq!(suspended.deployment.spec.as_ref().unwrap().replicas, Some(0));
    assert!(suspended.hpa.is_none(), "an HPA would scale it back up");

    let hash = |c: &agent::AgentChildren| {
        c.deployment.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()
            ["tollgate.dev/config-hash"]
            .clone()
    };
    assert_eq!(hash(&running), hash(&suspended), "suspension changes the count, not the pods");
    let rotated = agent::desired(&a, &AgentInputs { virtual_key: "tg-agent-new", suspended: false }).unwrap();
    assert_ne!(hash(&rotated), hash(&running), "a new key must reach the pods");
    let mut changed = a.clone();
    changed.spec.image = "registry.example.com/support-bot:1.5.0".into();
    let changed = agent::desired(&changed, &AgentInputs { virtual_key: KEY, suspended: false }).unwrap();
    assert_ne!(hash(&changed), hash(&running));
}

// ---------------------------------------------------------------------------------------
// Configuration delivery
// ---------------------------------------------------------------------------------------

#[test]
fn no_provider_key_reaches_the_config_map() {
    let config = compiled(TOKENS);
    let key = "sk-example-abcdefghijklmnop";
    let resolved =
        gateway_config::resolve_provider_keys(&config, &secrets(&[("ai", "openai", "api-key", key)]));
    let owner = Owner::of(&data_plane("  {}")).unwrap();
    let map = gateway_config::config_map(&owner, &config, &resolved.keys).unwrap();
    assert!(!serde_json::to_string(&map).unwrap().contains(key));
    // The key is in the Secret, in the gateway's secrets-file format.
    let secret = gateway_config::provider_keys_secret(&owner, &resolved.keys).unwrap();
    let file = String::from_utf8(secret.data.unwrap()["secrets.yaml"].0.clone()).unwrap();
    let parsed: BTreeMap<String, BTreeMap<String, String>> = serde_yaml::from_str(&file).unwrap();
    assert_eq!(parsed["openai"]["api-key"], key);
    assert!(!format!("{:?}", resolved.keys).contains(key), "Debug must not print keys");

    // A key pasted into a published field is refused, not published.
    let leaked = compiled(
        &TOKENS.replace("  provider: mock\n", &format!("  provider: mock\n  baseUrl: http://mock/{key}\n")),
    );
    let resolved =
        gateway_config::resolve_provider_keys(&leaked, &secrets(&[("ai", "openai", "api-key", key)]));
    let e = gateway_config::config_map(&owner, &leaked, &resolved.keys).unwrap_err();
    assert!(matches!(e, Error::SecretInConfig { .. }), "{e}");
    assert!(!e.to_string().contains(key), "the error names the Secret, not the key");
}

#[test]
fn config_map_is_versioned_and_checksummed() {
    let config = compiled(TOKENS);
    let owner = Owner::of(&data_plane("  {}")).unwrap();
    let map = gateway_config::config_map(&owner, &config, &Default::default()).unwrap();
    let json = &map.data.as_ref().unwrap()["config.json"];
    let annotations = map.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations["tollgate.dev/config-version"], config.hash);
    use sha2::Digest;
    let sum: String = sha2::Sha256::digest(json.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(annotations["tollgate.dev/config-checksum"], sum);
    // What the gateway reads back is the configuration, hash and all.
    let back: DataPlaneConfig = serde_json::from_str(json).unwrap();
    assert_eq!(back, config);
    assert_eq!(back.content_hash(), back.hash);
}

#[test]
fn missing_or_conflicting_secrets_become_per_token_problems() {
    let two = format!(
        "{TOKENS}---\n{}",
        "apiVersion: tollgate.dev/v1alpha1\nkind: IPToken\nmetadata: {name: anthropic, namespace: research}\n\
         spec: {provider: anthropic, secretRef: {name: openai, key: api-key}, models: [{name: claude}]}\n"
    );
    let config = compiled(&two);
    let none = gateway_config::resolve_provider_keys(&config, &SecretData::new());
    let reasons: Vec<(&str, &str)> = none.problems.iter().map(|p| (p.ip_token.as_str(), p.reason)).collect();
    assert_eq!(reasons, [("ai/openai-main", "SecretNotFound"), ("research/anthropic", "SecretNotFound")]);

    let wrong_key = gateway_config::resolve_provider_keys(&config, &secrets(&[("ai", "openai", "key", "x")]));
    assert_eq!(wrong_key.problems[0].reason, reason::SECRET_KEY_NOT_FOUND);
    assert!(wrong_key.problems[0].message.contains("has no key \"api-key\""));

    // The same Secret name in two namespaces: fine when equal, a problem when not.
    let same = gateway_config::resolve_provider_keys(
        &config,
        &secrets(&[("ai", "openai", "api-key", "sk-1"), ("research", "openai", "api-key", "sk-1")]),
    );
    assert_eq!(same.problems, vec![]);
    assert_eq!(same.secret_hashes.len(), 2);
    let differ = gateway_config::resolve_provider_keys(
        &config,
        &secrets(&[("ai", "openai", "api-key", "sk-1"), ("research", "openai", "api-key", "sk-2")]),
    );
    assert_eq!(differ.problems.len(), 1);
    assert_eq!(differ.problems[0].ip_token, "research/anthropic");
    assert!(!differ.problems[0].message.contains("sk-"), "{}", differ.problems[0].message);
    // Rotation shows in the hash.
    let rotated = gateway_config::resolve_provider_keys(
        &config,
        &secrets(&[("ai", "openai", "api-key", "sk-9"), ("research", "openai", "api-key", "sk-9")]),
    );
    assert_ne!(rotated.secret_hashes["ai/openai-main"], same.secret_hashes["ai/openai-main"]);
    assert_ne!(rotated.keys.hash().unwrap(), same.keys.hash().unwrap());
}

// ---------------------------------------------------------------------------------------
// Sandbox status
// ---------------------------------------------------------------------------------------

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).unwrap())
}

fn finished_pod(phase: &str, pod_reason: Option<&str>, exit_code: i32) -> Pod {
    Pod {
        status: Some(PodStatus {
            phase: Some(phase.into()),
            reason: pod_reason.map(Into::into),
            container_statuses: Some(vec![ContainerStatus {
                name: "sandbox".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code,
                        started_at: Some(at(100)),
                        finished_at: Some(at(160)),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}

#[test]
fn sandbox_status_follows_its_pod() {
    let pending = sandbox::observe(None);
    assert_eq!((pending.phase, pending.reason), (None, "Pending"));

    let ok = sandbox::observe(Some(&finished_pod("Succeeded", None, 0)));
    assert_eq!(ok.phase, Some(SandboxPhase::Succeeded));
    assert_eq!(
        (ok.start_time, ok.finish_time.clone(), ok.exit_code),
        (Some(at(100)), Some(at(160)), Some(0))
    );
    assert_eq!(ok.reason, reason::COMPLETED);

    let failed = sandbox::observe(Some(&finished_pod("Failed", None, 3)));
    assert_eq!(
        (failed.phase, failed.exit_code, failed.reason),
        (Some(SandboxPhase::Failed), Some(3), "Failed")
    );
    assert!(failed.message.contains("status 3"));
    let timed_out = sandbox::observe(Some(&finished_pod("Failed", Some("DeadlineExceeded"), 137)));
    assert!(timed_out.message.contains("timeoutSeconds"), "{}", timed_out.message);

    let status = SandboxStatus { finish_time: ok.finish_time, ..SandboxStatus::default() };
    assert_eq!(sandbox::delete_at(&status, 3600), Some(at(3760)));
    assert_eq!(sandbox::delete_at(&SandboxStatus::default(), 3600), None, "still running: no deadline");
}
