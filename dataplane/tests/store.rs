#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! The store against real databases: a fresh SQLite file, and PostgreSQL in a database of
//! its own (created and dropped by the test; server from `TOLLGATE_TEST_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`).

use tollgate_dataplane::auth::{KeyService, Principal, PrincipalKind, Role};
use tollgate_dataplane::store::Store;
use tollgate_dataplane::usage::UsageRecord;
use tollgate_testkit::ScratchDb;

async fn exercise(store: Store) {
    assert!(store.ping().await);
    let keys = KeyService::load(store.clone()).await.unwrap();
    let p = Principal {
        kind: PrincipalKind::Agent,
        name: "bot".into(),
        role: Role::Developer,
        team: Some("t".into()),
    };
    let k = keys.create("k".into(), p.clone(), vec!["m".into()], Some(i64::MAX), 1).await.unwrap();
    let listed = store.list_keys().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0], k.record);
    assert_eq!(store.find_key_by_hash(&k.record.hash).await.unwrap().unwrap().principal, p);
    assert!(store.revoke_key(&k.record.id, 5).await.unwrap());
    assert!(!store.revoke_key("nope", 5).await.unwrap());
    assert_eq!(store.list_keys().await.unwrap()[0].revoked_at_ms, Some(5));
    // A fresh service (another replica) sees the revocation.
    let other = KeyService::load(store.clone()).await.unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {}", k.secret).parse().unwrap());
    assert_eq!(other.authenticate(&headers, 10).await.unwrap_err().code, "key_revoked");

    let record = |i: u32| UsageRecord {
        request_id: format!("r{i}"),
        ts_ms: i64::from(i),
        key_id: Some(k.record.id.clone()),
        principal_kind: Some("agent".into()),
        principal_name: Some("bot".into()),
        endpoint: "chat.completions".into(),
        model: Some("m".into()),
        upstream_model: Some("m".into()),
        provider: Some("mock".into()),
        ip_token: Some("default/mock".into()),
        stream: i.is_multiple_of(2),
        input_tokens: 10,
        output_tokens: u64::from(i),
        cached_input_tokens: 0,
        latency_ms: 3,
        status: 200,
        error_class: None,
        cost_micros: u64::from(i),
        downgraded_from: None,
        charges: vec![tollgate_dataplane::usage::Charge {
            budget_id: "default/b".into(),
            window_start_ms: 7,
        }],
    };
    let batch: Vec<_> = (0..100).map(record).collect();
    store.insert_usage(&batch).await.unwrap();
    let rows = store.recent_usage(1000).await.unwrap();
    assert_eq!(rows.len(), 100);
    assert_eq!(rows[0].request_id, "r99");
    assert!(!rows[0].stream && rows[1].stream);
    assert_eq!(rows[0].cost_micros, 99);
    assert_eq!(store.budget_spent("default/b", 7).await.unwrap(), (0..100).sum::<u64>());
    assert_eq!(store.budget_spent("default/b", 8).await.unwrap(), 0);
    assert!(store.has_usage("r5").await.unwrap() && !store.has_usage("nope").await.unwrap());

    responses(&store).await;
}

/// Stored Responses API answers: chains, principal scoping, deletion and pruning.
async fn responses(store: &Store) {
    use serde_json::json;
    use tollgate_dataplane::store::StoredResponse;
    let put = |id: &str, prev: Option<&str>, who: &str, at: i64, text: &str| StoredResponse {
        id: id.into(),
        principal_kind: "agent".into(),
        principal_name: who.into(),
        created_at_ms: at,
        previous_response_id: prev.map(Into::into),
        model: "m".into(),
        input_items: json!([{"id": format!("in_{id}"), "type": "message", "role": "user", "content": text}]),
        response: json!({"id": id, "output": [{"id": format!("out_{id}"), "type": "message", "role": "assistant"}]}),
    };
    store.put_response(&put("r1", None, "bot", 10, "one")).await.unwrap();
    store.put_response(&put("r2", Some("r1"), "bot", 20, "two")).await.unwrap();
    store.put_response(&put("r3", Some("r2"), "bot", 30, "three")).await.unwrap();
    store.put_response(&put("x1", Some("r3"), "eve", 40, "other")).await.unwrap();
    let ids = |items: Vec<serde_json::Value>| -> Vec<String> {
        items.iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
    };
    let whole = store.conversation("r3", "agent", "bot", 100).await.unwrap().unwrap();
    assert_eq!(ids(whole), ["in_r1", "out_r1", "in_r2", "out_r2", "in_r3", "out_r3"]);
    // A bounded depth keeps the newest links.
    let recent = store.conversation("r3", "agent", "bot", 2).await.unwrap().unwrap();
    assert_eq!(ids(recent), ["in_r2", "out_r2", "in_r3", "out_r3"]);
    let listed = store.response_input_items("r3", "agent", "bot", 100).await.unwrap().unwrap();
    assert_eq!(ids(listed), ["in_r1", "out_r1", "in_r2", "out_r2", "in_r3"]);
    // Another principal's response is absent, and so is a chain through one.
    assert!(store.get_response("r1", "agent", "eve").await.unwrap().is_none());
    assert!(store.conversation("x1", "agent", "eve", 100).await.unwrap().is_none());
    assert!(!store.delete_response("r1", "agent", "eve").await.unwrap());
    assert_eq!(store.get_response("r2", "agent", "bot").await.unwrap().unwrap().response["id"], "r2");
    // A deleted ancestor breaks the conversation (chaining on it is a 404) but the listing
    // of what is left still works.
    assert!(store.delete_response("r2", "agent", "bot").await.unwrap());
    assert!(store.get_response("r2", "agent", "bot").await.unwrap().is_none());
    assert!(store.conversation("r3", "agent", "bot", 100).await.unwrap().is_none());
    assert_eq!(ids(store.response_input_items("r3", "agent", "bot", 100).await.unwrap().unwrap()), ["in_r3"]);
    assert_eq!(store.prune_responses(35).await.unwrap(), 2);
    assert!(store.get_response("r3", "agent", "bot").await.unwrap().is_none());
    assert!(store.get_response("x1", "agent", "eve").await.unwrap().is_some());
}

#[tokio::test]
async fn sqlite_store() {
    let db = ScratchDb::sqlite();
    exercise(db.connect().await).await;
}

#[tokio::test]
async fn postgres_store() {
    let db = ScratchDb::postgres("tollgate_test").await;
    exercise(db.connect().await).await;
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    let e = Store::connect("mysql://x").await.unwrap_err();
    assert!(e.to_string().contains("sqlite://"), "{e}");
}

#[tokio::test]
async fn the_sqlite_journal_is_replayed_and_emptied() {
    use tollgate_dataplane::usage::UsageSink;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let url = format!("sqlite://{}", db.display());
    // Records acknowledged from the journal reach the database.
    {
        let store = Store::connect(&url).await.unwrap();
        let sink = UsageSink::open(store.clone()).await.unwrap();
        let r = UsageRecord {
            request_id: "acked".into(),
            ts_ms: 1,
            endpoint: "messages".into(),
            ..Default::default()
        };
        assert!(sink.record_durable(r).await);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !store.has_usage("acked").await.unwrap() {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    // A process killed after journaling but before the insert: the next start replays it,
    // skips what is already in the database, and ignores a line cut short mid-write.
    let journal = dir.path().join("j.db.journal");
    let line = |id: &str| {
        format!(
            "{{\"request_id\":\"{id}\",\"ts_ms\":2,\"key_id\":null,\"principal_kind\":null,\"principal_name\":\"p\",\
             \"endpoint\":\"chat.completions\",\"model\":\"m\",\"upstream_model\":null,\"provider\":null,\"ip_token\":null,\
             \"stream\":false,\"input_tokens\":3,\"output_tokens\":4,\"cached_input_tokens\":0,\"latency_ms\":5,\
             \"status\":200,\"error_class\":null,\"cost_micros\":7,\"downgraded_from\":null,\
             \"charges\":[{{\"budget_id\":\"default/b\",\"window_start_ms\":9}}]}}\n"
        )
    };
    std::fs::write(&journal, format!("{}{}{{\"request_id\":\"cut", line("lost"), line("lost"))).unwrap();
    let store = Store::connect(&url).await.unwrap();
    let _sink = UsageSink::open(store.clone()).await.unwrap();
    assert!(store.has_usage("lost").await.unwrap());
    assert_eq!(store.recent_usage(10).await.unwrap().iter().filter(|r| r.request_id == "lost").count(), 1);
    assert_eq!(store.budget_spent("default/b", 9).await.unwrap(), 7, "charges replayed too");
    assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0, "journal emptied");
}
