//! Prints the CustomResourceDefinitions as YAML (`cargo run -p tollgate-crds --bin crdgen`).

use kube::CustomResourceExt;

fn main() -> Result<(), serde_yaml::Error> {
    let crds = [tollgate_crds::IpToken::crd()];
    for crd in crds {
        print!("---\n{}", serde_yaml::to_string(&crd)?);
    }
    Ok(())
}
