#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The CRDs' CEL rules (`x-kubernetes-validations`), evaluated client-side with kube's CEL
//! engine (`kube::core::cel`, i.e. kube-cel) against the generated schemas — the same
//! rules and schema defaults the API server applies on create and update.

use kube::core::cel::{ErrorKind, ScopeContext, Validator, check_rule_scope};
use serde_json::{Value, json};

fn schema(kind: &str) -> Value {
    let crd = tollgate_crds::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let crd = serde_json::to_value(crd).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn object(kind: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "tollgate.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ai"},
        "spec": spec,
    })
}

/// The messages of every failed rule on create (`old` None) or update.
fn failures(kind: &str, spec: Value, old_spec: Option<Value>) -> Vec<String> {
    let old = old_spec.map(|s| object(kind, s));
    match Validator::new().validate(&schema(kind), &object(kind, spec), old.as_ref()) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| {
                // An unsupported function would make the test pass or fail for the wrong
                // reason: only genuine rule failures count.
                assert_eq!(e.kind, ErrorKind::ValidationFailure, "{e:?}");
                e.message.clone()
            })
            .collect(),
    }
}

fn assert_fails_with(kind: &str, spec: Value, old: Option<Value>, expected: &str) {
    let messages = failures(kind, spec, old);
    assert!(messages.iter().any(|m| m.contains(expected)), "expected {expected:?}, got {messages:?}");
}

#[test]
fn every_rule_parses_and_uses_only_self_and_old_self() {
    fn rules(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::Array(list)) = map.get("x-kubernetes-validations") {
                    out.extend(list.iter().map(|r| r["rule"].as_str().unwrap().to_owned()));
                }
                map.values().for_each(|child| rules(child, out));
            }
            Value::Array(list) => list.iter().for_each(|child| rules(child, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    for crd in tollgate_crds::crds() {
        rules(&serde_json::to_value(crd).unwrap(), &mut all);
    }
    assert!(all.len() >= 15, "expected the documented rules, found {all:?}");
    for rule in &all {
        kube::core::cel::cel::Program::compile(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
        assert_eq!(check_rule_scope(rule, ScopeContext::CrdValidation), vec![], "{rule}");
    }
}

#[test]
fn ip_token_provider_is_immutable() {
    let spec = json!({"provider": "openai", "secretRef": {"name": "openai", "key": "api-key"}, "models": [{"name": "gpt-4o-mini"}]});
    assert_eq!(failures("IPToken", spec.clone(), None), Vec::<String>::new());
    let mut changed = spec.clone();
    changed["provider"] = json!("anthropic");
    assert_fails_with("IPToken", changed, Some(spec.clone()), "provider is immutable");
    // Other fields may change.
    let mut reweighted = spec.clone();
    reweighted["weight"] = json!(5);
    assert_eq!(failures("IPToken", reweighted, Some(spec)), Vec::<String>::new());
}

#[test]
fn ip_token_provider_union_needs_its_fields() {
    assert_fails_with(
        "IPToken",
        json!({"provider": "anthropic", "models": [{"name": "claude"}]}),
        None,
        "secretRef is required",
    );
    let azure = json!({
        "provider": "azure-openai",
        "secretRef": {"name": "azure", "key": "api-key"},
        "baseUrl": "https://r.openai.azure.com/openai",
        "models": [{"name": "gpt-4o"}],
    });
    assert_fails_with("IPToken", azure.clone(), None, "apiVersion is required");
    let mut complete = azure;
    complete["apiVersion"] = json!("2024-10-21");
    assert_eq!(failures("IPToken", complete, None), Vec::<String>::new());
    assert_fails_with(
        "IPToken",
        json!({"provider": "openai-compatible", "models": [{"name": "llama"}]}),
        None,
        "baseUrl is required",
    );
    // The mock provider needs nothing.
    assert_eq!(
        failures("IPToken", json!({"provider": "mock", "models": [{"name": "mock-1"}]}), None),
        Vec::<String>::new()
    );
}

#[test]
fn data_plane_refuses_per_replica_state_with_several_replicas() {
    // Defaults (memory cache, SQLite, one replica) are valid.
    assert_eq!(failures("DataPlane", json!({}), None), Vec::<String>::new());
    assert_fails_with(
        "DataPlane",
        json!({"replicas": {"min": 2, "max": 4}}),
        None,
        "a memory cache keeps budget counters per replica",
    );
    assert_fails_with(
        "DataPlane",
        json!({
            "replicas": {"min": 1, "max": 3},
            "cache": {"type": "redis", "redis": {"urlSecretRef": {"name": "redis", "key": "url"}}},
        }),
        None,
        "a SQLite database belongs to one pod",
    );
    let shared = json!({
        "replicas": {"min": 2, "max": 10, "targetCpuUtilization": 70},
        "cache": {"type": "redis", "redis": {"urlSecretRef": {"name": "redis", "key": "url"}}},
        "database": {"type": "postgres", "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}}},
    });
    assert_eq!(failures("DataPlane", shared, None), Vec::<String>::new());
}

#[test]
fn data_plane_cache_and_database_unions() {
    assert_fails_with("DataPlane", json!({"cache": {"type": "redis"}}), None, "redis settings are required");
    assert_fails_with(
        "DataPlane",
        json!({"cache": {"type": "memory", "redis": {"urlSecretRef": {"name": "r", "key": "url"}}}}),
        None,
        "redis settings are required with type redis and allowed only then",
    );
    assert_fails_with(
        "DataPlane",
        json!({"database": {"type": "postgres"}}),
        None,
        "postgres settings are required",
    );
    assert_fails_with(
        "DataPlane",
        json!({"replicas": {"min": 3, "max": 2}}),
        None,
        "min must not exceed max",
    );
}

#[test]
fn sandbox_spec_is_immutable() {
    let spec = json!({"image": "python:3.12-slim", "command": ["python", "-c", "print(1)"]});
    assert_eq!(failures("Sandbox", spec.clone(), None), Vec::<String>::new());
    assert_eq!(failures("Sandbox", spec.clone(), Some(spec.clone())), Vec::<String>::new());
    let mut changed = spec.clone();
    changed["timeoutSeconds"] = json!(60);
    assert_fails_with("Sandbox", changed, Some(spec), "its spec is immutable");
}

#[test]
fn sandbox_data_plane_ref_needs_gateway_network() {
    let to_gateway =
        json!({"image": "x", "network": "gateway", "dataPlaneRef": {"name": "gw", "namespace": "t"}});
    assert_eq!(failures("Sandbox", to_gateway, None), Vec::<String>::new());
    assert_fails_with(
        "Sandbox",
        json!({"image": "x", "dataPlaneRef": {"name": "gw"}}),
        None,
        "dataPlaneRef applies only with network: gateway",
    );
}

#[test]
fn agent_env_cannot_override_gateway_settings_and_is_a_union() {
    let with_env = |env: Value| json!({"image": "bot:1", "env": [env]});
    assert_eq!(
        failures("Agent", with_env(json!({"name": "LOG_LEVEL", "value": "debug"})), None),
        Vec::<String>::new()
    );
    for name in ["OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "TOLLGATE_API_KEY", "TOLLGATE_ANYTHING"] {
        assert_fails_with(
            "Agent",
            with_env(json!({"name": name, "value": "http://evil.example"})),
            None,
            "are set by the operator",
        );
    }
    assert_fails_with(
        "Agent",
        with_env(json!({"name": "A", "value": "x", "secretKeyRef": {"name": "s", "key": "k"}})),
        None,
        "set exactly one of value and secretKeyRef",
    );
    assert_fails_with(
        "Agent",
        with_env(json!({"name": "A"})),
        None,
        "set exactly one of value and secretKeyRef",
    );
}

#[test]
fn requests_may_not_exceed_limits() {
    let with = |resources: Value| json!({"image": "bot:1", "resources": resources});
    let ok = with(
        json!({"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}),
    );
    assert_eq!(failures("Agent", ok, None), Vec::<String>::new());
    assert_fails_with(
        "Agent",
        with(json!({"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}})),
        None,
        "requests.cpu must not exceed limits.cpu",
    );
    assert_fails_with(
        "Agent",
        with(json!({"requests": {"memory": "2Gi"}, "limits": {"memory": "512Mi"}})),
        None,
        "requests.memory must not exceed limits.memory",
    );
}

#[test]
fn safety_policy_limits_and_tool_lists_cannot_redact() {
    let ok = json!({"input": {"limits": {"maxMessages": 10}}, "tools": {"deny": ["shell*"]}});
    assert_eq!(failures("SafetyPolicy", ok, None), Vec::<String>::new());
    assert_fails_with(
        "SafetyPolicy",
        json!({"input": {"limits": {"maxMessages": 10, "action": "redact"}}}),
        None,
        "limits support block or log",
    );
    assert_fails_with(
        "SafetyPolicy",
        json!({"tools": {"deny": ["shell*"], "action": "redact"}}),
        None,
        "tool allow/deny lists support block or log",
    );
}
