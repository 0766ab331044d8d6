#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The committed generated code matches the .proto. `TOLLGATE_UPDATE_GENERATED=1` rewrites it.

use std::path::Path;

#[test]
fn generated_code_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile([root.join("tollgate/v1/runtime.proto")], [root]).unwrap();
    let out = tempfile::tempdir().unwrap();
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .out_dir(out.path())
        .compile_fds(fds)
        .unwrap();
    let fresh = std::fs::read_to_string(out.path().join("tollgate.v1.rs")).unwrap();
    let committed_path = root.join("src/generated/tollgate.v1.rs");
    if std::env::var_os("TOLLGATE_UPDATE_GENERATED").is_some() {
        std::fs::write(&committed_path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == fresh,
        "proto/src/generated/tollgate.v1.rs is stale: run TOLLGATE_UPDATE_GENERATED=1 cargo test -p tollgate-proto"
    );
}
