#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! The committed CRD YAML is what the code generates, and the schema is complete: every
//! field documented, every string and list bounded. Regenerate with
//! `cargo run -p tollgate-crds --bin crdgen`.

use serde::Deserialize;

fn crds() -> Vec<serde_json::Value> {
    tollgate_crds::crds().iter().map(|c| serde_json::to_value(c).unwrap()).collect()
}

fn schema(crd: &serde_json::Value) -> &serde_json::Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}

/// Calls `f(path, node)` for every schema node under `node`.
fn walk(node: &serde_json::Value, path: &str, f: &mut dyn FnMut(&str, &serde_json::Value)) {
    f(path, node);
    if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
        for (k, child) in props {
            walk(child, &format!("{path}.{k}"), f);
        }
    }
    if let Some(items) = node.get("items") {
        walk(items, &format!("{path}[]"), f);
    }
}

#[test]
fn committed_crds_are_up_to_date() {
    let generated = tollgate_crds::crd_yaml().unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for file in tollgate_crds::CRD_YAML_FILES {
        let committed = std::fs::read_to_string(format!("{root}/{file}")).unwrap_or_default();
        assert!(generated == committed, "{file} is stale: run `cargo run -p tollgate-crds --bin crdgen`");
    }
}

#[test]
fn every_field_is_documented() {
    // `///` on every field becomes the schema's description; kubectl explain shows it.
    let mut missing = Vec::new();
    for crd in crds() {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        for part in ["spec", "status"] {
            let root = &schema(&crd)["properties"][part];
            assert!(root.is_object(), "{kind} has no {part}");
            walk(root, &format!("{kind}.{part}"), &mut |path, node| {
                // Array items are described by their field; Condition is k8s-openapi's.
                if !path.ends_with("[]")
                    && !path.contains(".conditions[]")
                    && node.get("description").is_none()
                {
                    missing.push(path.to_owned());
                }
            });
        }
    }
    assert!(missing.is_empty(), "fields without documentation: {missing:?}");
}

#[test]
fn every_string_and_list_is_bounded() {
    // The API server estimates the cost of CEL rules from these bounds, and they keep one
    // resource from holding megabytes. Enums and formatted strings are bounded by nature.
    let mut unbounded = Vec::new();
    for crd in crds() {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        for part in ["spec", "status"] {
            walk(&schema(&crd)["properties"][part], &format!("{kind}.{part}"), &mut |path, node| {
                if path.contains(".conditions[]") {
                    return; // metav1.Condition, bounded by the API server itself
                }
                let bounded = match node.get("type").and_then(|t| t.as_str()) {
                    Some("string") => {
                        node.get("maxLength").is_some()
                            || node.get("enum").is_some()
                            || node.get("format").is_some()
                    }
                    Some("array") => node.get("maxItems").is_some(),
                    _ => true,
                };
                if !bounded {
                    unbounded.push(path.to_owned());
                }
            });
        }
    }
    assert!(unbounded.is_empty(), "strings or lists without maxLength/maxItems: {unbounded:?}");
}

#[test]
fn every_kind_has_status_columns_categories_and_short_names() {
    let mut kinds = Vec::new();
    for crd in crds() {
        let names = &crd["spec"]["names"];
        let kind = names["kind"].as_str().unwrap().to_owned();
        assert_eq!(names["categories"], serde_json::json!(["tollgate"]), "{kind}");
        assert!(names["shortNames"].as_array().is_some_and(|s| !s.is_empty()), "{kind}");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["subresources"]["status"], serde_json::json!({}), "{kind}");
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        for want in ["Ready", "Reason", "Age"] {
            assert!(columns.contains(&want), "{kind} lacks column {want}: {columns:?}");
        }
        let specific = match kind.as_str() {
            "Budget" => vec!["Spent", "Limit"],
            "IPToken" => vec!["Provider"],
            "Sandbox" => vec!["Phase"],
            _ => vec![],
        };
        for want in specific {
            assert!(columns.contains(&want), "{kind} lacks column {want}: {columns:?}");
        }
        let status = &schema(&crd)["properties"]["status"]["properties"];
        assert_eq!(status["observedGeneration"]["type"], "integer", "{kind}");
        let conditions = &status["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{kind}");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], serde_json::json!(["type"]), "{kind}");
        kinds.push(kind);
    }
    assert_eq!(kinds, tollgate_crds::load::KINDS);
}

#[test]
fn the_yaml_round_trips_as_crds() {
    // What `kubectl apply` reads back is what we generated (no field lost in YAML).
    let yaml = tollgate_crds::crd_yaml().unwrap();
    let mut back = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&yaml) {
        back.push(serde_json::Value::deserialize(doc).unwrap());
    }
    assert_eq!(back, crds());
}
