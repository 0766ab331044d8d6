#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The sample resources in `examples/` are what users apply first: they must load, compile
//! in standalone mode, pass every CEL rule of their CRDs, and cover every kind. (Their
//! OpenAPI schemas are checked by `e2e/python/test_manifests.py`.)

use kube::core::cel::Validator;
use serde::Deserialize;

fn examples() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn examples_load_and_compile() {
    let mut resources = Vec::new();
    for (name, text) in examples() {
        let parsed = tollgate_crds::parse_documents(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        resources.extend(parsed.resources);
    }
    let mut kinds: Vec<&str> = resources.iter().map(|r| r.kind()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut all = tollgate_crds::load::KINDS.to_vec();
    all.sort_unstable();
    assert_eq!(kinds, all, "every kind has an example");
    let config = tollgate_crds::compile(&resources).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(config.models.contains_key("mock-1"));
    assert_eq!(config.budgets.len(), 2);
    assert_eq!(config.safety_policies.len(), 1);
}

#[test]
fn examples_pass_the_crds_cel_rules() {
    let crds: Vec<serde_json::Value> =
        tollgate_crds::crds().iter().map(|c| serde_json::to_value(c).unwrap()).collect();
    let mut checked = 0;
    for (name, text) in examples() {
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc = serde_json::Value::deserialize(doc).unwrap();
            if doc["apiVersion"] != tollgate_crds::API_VERSION {
                continue;
            }
            let crd = crds.iter().find(|c| c["spec"]["names"]["kind"] == doc["kind"]).unwrap();
            let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            if let Err(errors) = Validator::new().validate(schema, &doc, None) {
                panic!("{name}: {} fails: {errors:?}", doc["kind"]);
            }
            // An update that changes nothing passes the transition rules too.
            Validator::new().validate(schema, &doc, Some(&doc)).unwrap();
            checked += 1;
        }
    }
    assert!(checked >= 7, "{checked}");
}
