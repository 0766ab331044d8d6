//! Prints the CustomResourceDefinitions as YAML (`cargo run -p tollgate-crds --bin crdgen`).
//! `crds/yaml/crds.yaml` is this output; a test fails when it is stale.

fn main() -> Result<(), serde_yaml::Error> {
    print!("{}", tollgate_crds::crd_yaml()?);
    Ok(())
}
