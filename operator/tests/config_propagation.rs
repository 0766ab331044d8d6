#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! Configuration propagation end to end, in one process: the operator's side compiles the
//! cluster's resources and renders the ConfigMap exactly as the DataPlane controller
//! publishes it; its `config.json` is written to the file a running gateway reads (the
//! mounted ConfigMap), and the gateway applies it the way `tollgate-dataplane` does on each
//! poll. A Budget change turns an admitted request into a refused one; a broken update
//! (an invalid SafetyPolicy the operator refuses to publish, or a damaged file) leaves the
//! gateway on its last good configuration.

use std::path::Path;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::json;
use tollgate_crds::{DataPlane, DataPlaneConfig, Resource, parse_documents};
use tollgate_dataplane::Gateway;
use tollgate_operator::controllers::Owner;
use tollgate_operator::controllers::configuration::{ClusterResources, compile_cluster};
use tollgate_operator::controllers::gateway_config::{CONFIG_CHECKSUM_ANNOTATION, SecretData, config_map};
use tollgate_testkit::{ScratchDb, TestGateway, agent};
use tower::ServiceExt;

/// `mock-1` costs $1 per output token, so `max_tokens: 2` reserves exactly $2.
const TOKEN: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock, namespace: ai}
spec:
  provider: mock
  models: [{name: mock-1, prices: {inputPerMtok: "0", outputPerMtok: "1000000"}}]
"#;

fn budget(limit: &str) -> String {
    format!(
        "apiVersion: tollgate.dev/v1alpha1\nkind: Budget\nmetadata: {{name: support-bot, namespace: ai}}\nspec:\n  subject: {{kind: agent, name: support-bot}}\n  limit: \"{limit}\"\n  period: daily\n"
    )
}

const BROKEN_POLICY: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: SafetyPolicy
metadata: {name: strict, namespace: ai}
spec:
  input:
    custom:
      regex: [{id: broken, pattern: "([a-z", action: block}]
"#;

fn cluster(yaml: &str) -> ClusterResources {
    let mut out = ClusterResources::default();
    for r in parse_documents("t", yaml).unwrap().resources {
        match r {
            Resource::IpToken(t) => out.ip_tokens.push(t),
            Resource::Budget(b) => out.budgets.push(b),
            Resource::SafetyPolicy(p) => out.safety_policies.push(p),
            _ => {}
        }
    }
    out
}

fn owner() -> Owner {
    let dp: DataPlane =
        serde_json::from_value(json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "DataPlane",
        "metadata": {"name": "gateway", "namespace": "tollgate-system", "uid": "dp-uid"}, "spec": {}}))
        .unwrap();
    Owner::of(&dp).unwrap()
}

/// The operator's side: what the DataPlane controller would write into the ConfigMap, or
/// `None` when it publishes nothing. Written to `file` like the kubelet updates a mounted
/// ConfigMap.
fn operator_publishes(yaml: &str, file: &Path) -> Option<String> {
    let compiled = compile_cluster(&cluster(yaml), &SecretData::new());
    let config = compiled.config?;
    let map = config_map(&owner(), &config, &compiled.keys).unwrap();
    let json = map.data.unwrap().remove("config.json").unwrap();
    let checksum = map.metadata.annotations.unwrap().remove(CONFIG_CHECKSUM_ANNOTATION).unwrap();
    let actual: String = {
        use sha2::Digest;
        sha2::Sha256::digest(json.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    };
    assert_eq!(checksum, actual, "the checksum annotation covers the exact bytes");
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, &json).unwrap();
    std::fs::rename(&tmp, file).unwrap();
    Some(config.hash)
}

/// The gateway's side: one poll of the file, as `tollgate-dataplane` does it.
fn gateway_polls(gateway: &Gateway, file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let config: DataPlaneConfig = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if config.hash == gateway.config_hash() {
        return Ok(());
    }
    gateway.apply_config(config, &Default::default()).map_err(|e| e.to_string())
}

async fn chat(gateway: &Gateway, key: &str) -> StatusCode {
    let body =
        json!({"model": "mock-1", "max_tokens": 2, "messages": [{"role": "user", "content": "hello"}]});
    let request = Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    gateway.router().oneshot(request).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_change_reaches_a_running_gateway_and_a_broken_one_does_not() {
    // A gateway started with no configuration, its config file next to its database.
    let db = ScratchDb::sqlite();
    let t = TestGateway::builder(db.connect().await).start().await;
    let key = t.issue_key("agent:ai/support-bot", agent("support-bot")).await.secret;
    let gateway = t.gateway;
    let file = db.dir().unwrap().join("config.json");

    // $100 a day: a $2 request is admitted.
    let v1 = operator_publishes(&format!("{TOKEN}---\n{}", budget("100")), &file).unwrap();
    gateway_polls(&gateway, &file).unwrap();
    assert_eq!(gateway.config_hash(), v1);
    assert_eq!(chat(&gateway, &key).await, StatusCode::OK);

    // The admin lowers the budget to $1: the same request is now refused.
    let v2 = operator_publishes(&format!("{TOKEN}---\n{}", budget("1")), &file).unwrap();
    assert_ne!(v1, v2);
    gateway_polls(&gateway, &file).unwrap();
    assert_eq!(gateway.config_hash(), v2);
    assert_eq!(chat(&gateway, &key).await, StatusCode::TOO_MANY_REQUESTS);

    // A broken update (the budget raised again, next to a SafetyPolicy whose regex does not
    // compile): the operator publishes nothing, the file and the gateway stay on v2.
    let broken = format!("{TOKEN}---\n{}---\n{BROKEN_POLICY}", budget("100"));
    assert_eq!(operator_publishes(&broken, &file), None);
    gateway_polls(&gateway, &file).unwrap();
    assert_eq!(gateway.config_hash(), v2);
    assert_eq!(chat(&gateway, &key).await, StatusCode::TOO_MANY_REQUESTS, "the broken update took effect");

    // A damaged file (half a document): the gateway refuses it and keeps v2.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, &text[..text.len() / 2]).unwrap();
    assert!(gateway_polls(&gateway, &file).is_err());
    assert_eq!(gateway.config_hash(), v2);
    assert_eq!(chat(&gateway, &key).await, StatusCode::TOO_MANY_REQUESTS);

    // Fixed: the next good version reaches it.
    let v3 = operator_publishes(&format!("{TOKEN}---\n{}", budget("100")), &file).unwrap();
    gateway_polls(&gateway, &file).unwrap();
    assert_eq!(gateway.config_hash(), v3);
    assert_eq!(chat(&gateway, &key).await, StatusCode::OK);
}
