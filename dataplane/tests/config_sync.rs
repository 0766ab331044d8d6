#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! A deployed gateway follows the configuration the operator publishes: from the shared
//! database within a round (the ConfigMap mount lags by up to a minute), from the mounted
//! file when the database has none, never a document that is not whole, and never rolled
//! back to the (older) file while the database cannot be read.

use std::time::{Duration, Instant};

use tollgate_crds::DataPlaneConfig;
use tollgate_dataplane::config_sync::{ConfigSync, Outcome, Source, SyncError, verify};
use tollgate_dataplane::secrets::SecretSource;
use tollgate_dataplane::store::Store;
use tollgate_testkit::{ScratchDb, TestGateway, config};

fn mock(models: &[&str]) -> DataPlaneConfig {
    let list: Vec<String> = models.iter().map(|m| format!("    - name: {m}\n")).collect();
    config(&format!(
        "apiVersion: tollgate.dev/v1alpha1\nkind: IPToken\nmetadata: {{name: mock}}\nspec:\n  provider: mock\n  models:\n{}",
        list.concat()
    ))
}

fn write(path: &std::path::Path, c: &DataPlaneConfig) {
    std::fs::write(path, serde_json::to_string(c).unwrap()).unwrap();
}

async fn publish(store: &Store, c: &DataPlaneConfig) {
    store.publish_config(&c.hash, &serde_json::to_string(c).unwrap(), 1).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_database_then_the_file_and_never_a_broken_document() {
    let db = ScratchDb::sqlite();
    let store = db.connect().await;
    let t = TestGateway::builder(store.clone()).start().await;
    let file = db.dir().unwrap().join("config.json");
    let (a, b, c) = (mock(&["mock-a"]), mock(&["mock-b"]), mock(&["mock-c"]));
    write(&file, &a);
    let mut sync = ConfigSync::new(t.gateway.clone(), store.clone(), file.clone(), SecretSource::default());

    // Nothing published yet: the mounted file.
    assert_eq!(sync.sync_once().await, Outcome::Applied(Source::File, a.hash.clone()));
    assert_eq!(sync.sync_once().await, Outcome::Unchanged(Source::File));

    // Published: the database wins over the (older) file.
    publish(&store, &b).await;
    assert_eq!(sync.sync_once().await, Outcome::Applied(Source::Database, b.hash.clone()));
    assert_eq!(t.gateway.config_hash(), b.hash);
    assert_eq!(sync.sync_once().await, Outcome::Unchanged(Source::Database));

    // A document that is not whole (labelled as one configuration, holding another) is
    // refused, once; the configuration in force stays.
    let mut forged = c.clone();
    forged.hash = "0".repeat(64);
    store.publish_config(&forged.hash, &serde_json::to_string(&forged).unwrap(), 2).await.unwrap();
    assert!(matches!(sync.sync_once().await, Outcome::Refused(Source::Database, SyncError::NotWhole { .. })));
    assert_eq!(sync.sync_once().await, Outcome::Unchanged(Source::Database), "not fetched again");
    assert_eq!(t.gateway.config_hash(), b.hash);
    assert!(matches!(verify(&c.hash, &serde_json::to_string(&b).unwrap()), Err(SyncError::NotWhole { .. })));
    assert!(matches!(verify(&c.hash, "{\"hash\": 1}"), Err(SyncError::ParsePublished(_))));

    // The database unreadable: the newer configuration stays, the file does not roll it back.
    publish(&store, &c).await;
    assert_eq!(sync.sync_once().await, Outcome::Applied(Source::Database, c.hash.clone()));
    write(&file, &a);
    if let Store::Sqlite(pool) = &store {
        pool.close().await;
    }
    assert_eq!(sync.sync_once().await, Outcome::Unchanged(Source::Database));
    assert_eq!(t.gateway.config_hash(), c.hash);

    // A gateway that never had the database's copy starts from the file.
    let t2 = TestGateway::builder(db.connect().await).start().await;
    let mut fresh = ConfigSync::new(t2.gateway.clone(), store, file, SecretSource::default());
    assert_eq!(fresh.sync_once().await, Outcome::Applied(Source::File, a.hash.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_change_is_in_force_within_two_seconds() {
    let db = ScratchDb::sqlite();
    let store = db.connect().await;
    let t = TestGateway::builder(store.clone()).start().await;
    let file = db.dir().unwrap().join("config.json");
    let (a, b) = (mock(&["mock-a"]), mock(&["mock-a", "mock-b"]));
    write(&file, &a);
    publish(&store, &a).await;
    tokio::spawn(
        ConfigSync::new(t.gateway.clone(), store.clone(), file, SecretSource::default())
            .run(Duration::from_secs(1)),
    );
    while t.gateway.config_hash() != a.hash {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut worst = Duration::ZERO;
    for next in [&b, &a, &b] {
        let started = Instant::now();
        publish(&store, next).await;
        while t.gateway.config_hash() != next.hash {
            assert!(started.elapsed() < Duration::from_secs(5), "never applied");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        worst = worst.max(started.elapsed());
    }
    println!("published → in force: worst of 3 {worst:?}");
    assert!(worst < Duration::from_secs(2), "{worst:?}");
}
