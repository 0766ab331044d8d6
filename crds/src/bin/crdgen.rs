//! Writes the CustomResourceDefinitions: `cargo run -p tollgate-crds --bin crdgen` updates
//! every file in `tollgate_crds::CRD_YAML_FILES` (`crds/yaml/crds.yaml` and the copy the
//! kustomize base includes); `-- --stdout` prints them instead. A test fails when a
//! committed file is stale.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let yaml = tollgate_crds::crd_yaml()?;
    if std::env::args().skip(1).any(|a| a == "--stdout") {
        // An error, not a panic, when the reader goes away (`crdgen --stdout | head`).
        std::io::Write::write_all(&mut std::io::stdout().lock(), yaml.as_bytes())?;
        return Ok(());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("crds/ has no parent directory")?;
    for file in tollgate_crds::CRD_YAML_FILES {
        std::fs::write(root.join(file), &yaml)?;
        eprintln!("wrote {file}");
    }
    Ok(())
}
