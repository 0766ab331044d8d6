#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! The committed CRD YAML is what the code generates. Regenerate with
//! `cargo run -p tollgate-crds --bin crdgen > crds/yaml/crds.yaml`.

#[test]
fn committed_crds_are_up_to_date() {
    let generated = tollgate_crds::crd_yaml().unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/yaml/crds.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        generated == committed,
        "crds/yaml/crds.yaml is stale: run `cargo run -p tollgate-crds --bin crdgen > crds/yaml/crds.yaml`"
    );
}

#[test]
fn every_field_is_documented() {
    // `///` on every field becomes the schema's description; kubectl explain shows it.
    use serde::Deserialize;
    let yaml = tollgate_crds::crd_yaml().unwrap();
    let mut missing = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&yaml) {
        let doc = serde_yaml::Value::deserialize(doc).unwrap();
        let kind = doc["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        let spec = &doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        walk(spec, &format!("{kind}.spec"), &mut missing);
    }
    fn walk(v: &serde_yaml::Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_mapping()) {
            for (k, child) in props {
                let p = format!("{path}.{}", k.as_str().unwrap_or("?"));
                if child.get("description").is_none() {
                    missing.push(p.clone());
                }
                walk(child, &p, missing);
                if let Some(items) = child.get("items") {
                    walk(items, &p, missing);
                }
            }
        }
    }
    assert!(missing.is_empty(), "fields without documentation: {missing:?}");
}
