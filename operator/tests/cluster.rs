#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! Against a real cluster (ignored by default: run it with `--ignored` and `KUBECONFIG` set;
//! the project's own API server is `e2e/kube`, issue 13): applies
//! the CRDs and `examples/` with `kubectl`, runs the controllers in this process (with a
//! SQLite database in a temporary directory) and waits until the configuration resources
//! are Ready and the example DataPlane's configuration is published. Pods need not start
//! (the cluster may lack gVisor or the images): what is checked is the operator's part.
//!
//! `KUBECONFIG=~/.kube/config cargo test -p tollgate-operator --test cluster -- --ignored --nocapture`

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Resource;
use kube_client::{Api, Client};
use tollgate_crds::safety::SafetyPolicy;
use tollgate_crds::status::{PROGRAMMED, READY, is_true};
use tollgate_crds::{Budget, DataPlane, IpToken};
use tollgate_dataplane::auth::KeyService;
use tollgate_dataplane::store::Store;
use tollgate_operator::controllers::reconcilers::{self, Context, ResourceStores};

const DEADLINE: Duration = Duration::from_secs(120);

fn kubectl(args: &[&str]) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new("kubectl").args(args).current_dir(root).output().expect("kubectl is needed");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, done: impl Fn(&K) -> bool)
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let start = Instant::now();
    loop {
        if let Ok(Some(obj)) = api.get_opt(name).await
            && done(&obj)
        {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "{name} not {what} within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real Kubernetes API server (e2e/kube, issue 13)"]
async fn examples_become_ready_on_a_real_cluster() {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "set KUBECONFIG to the cluster to run the operator against"
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    kubectl(&["apply", "--server-side", "-f", "crds/yaml/crds.yaml"]);
    kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "-f", "crds/yaml/crds.yaml"]);
    kubectl(&["apply", "-f", "examples/00-namespace.yaml"]);
    kubectl(&["apply", "-f", "examples/"]);

    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
    let client = Client::try_default().await.unwrap();
    let (stores, writers) = ResourceStores::new();
    let mut ctx = Context::new(client.clone(), "ghcr.io/tollgate-dev/tollgate:0.1.0".into(), stores);
    ctx.keys = Some(KeyService::load(store.clone()).await.unwrap());
    ctx.ledger = Some(store);
    let controllers = tokio::spawn(reconcilers::run(Arc::new(ctx), writers));

    let ns = "ai-agents";
    let ready = |c: &[_]| is_true(c, READY);
    wait_for(&Api::<IpToken>::namespaced(client.clone(), ns), "mock", "Ready", |t| {
        t.status.as_ref().is_some_and(|s| ready(&s.conditions))
    })
    .await;
    wait_for(&Api::<SafetyPolicy>::namespaced(client.clone(), ns), "support-baseline", "Ready", |p| {
        p.status.as_ref().is_some_and(|s| ready(&s.conditions))
    })
    .await;
    wait_for(&Api::<Budget>::namespaced(client.clone(), ns), "support-team", "Ready", |b| {
        b.status.as_ref().is_some_and(|s| ready(&s.conditions) && s.spent.is_some())
    })
    .await;
    wait_for(&Api::<DataPlane>::namespaced(client.clone(), ns), "team-gateway", "Programmed", |d| {
        d.status.as_ref().is_some_and(|s| is_true(&s.conditions, PROGRAMMED) && s.config_hash.is_some())
    })
    .await;
    controllers.abort();
}
