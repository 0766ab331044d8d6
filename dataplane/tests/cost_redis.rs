//! The Redis counter store against a real Redis: each test starts its own `redis-server`
//! on a free port (killed when the test ends), so tests can stop and restart it.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "test setup: failing loudly is the point")]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{RedisServer, key};
use tollgate_dataplane::cost::{Admission, CostError, CounterState, CounterStore, RedisCounters, Window};

/// A day in the past: the store must not depend on the caller's clock agreeing with Redis'.
const DAY: Window = Window { start_ms: 1_764_201_600_000, end_ms: 1_764_288_000_000 };
const NOW: i64 = DAY.start_ms + 1_000;

async fn store(server: &RedisServer, prefix: &str) -> CounterStore {
    CounterStore::redis(&server.url(), prefix).await.expect("connect to the test redis")
}

async fn store_with_timeout(server: &RedisServer, prefix: &str, timeout: Duration) -> CounterStore {
    CounterStore::Redis(RedisCounters::connect(&server.url(), prefix, timeout).await.unwrap())
}

async fn state(s: &CounterStore, k: &tollgate_dataplane::cost::BudgetKey) -> (u64, u64) {
    let CounterState { spent_micros, reserved_micros } = s.state(k).await.unwrap();
    (spent_micros, reserved_micros)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_affordable_number_of_500_concurrent_requests_is_admitted() {
    let server = RedisServer::start();
    // Two "replicas" sharing Redis, each taking half of the requests.
    let a = Arc::new(store(&server, "conc:").await);
    let b = Arc::new(store(&server, "conc:").await);
    const COST: u64 = 1_234;
    let dev = key("dev", DAY, 50 * COST, true);
    let team = key("team", DAY, 80 * COST, true);
    let org = key("org", DAY, 1_000 * COST, false);
    let chain = Arc::new(vec![dev.clone(), team.clone(), org.clone()]);
    let mut tasks = Vec::new();
    for i in 0..500 {
        let s = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        let chain = Arc::clone(&chain);
        tasks.push(tokio::spawn(async move {
            let id = format!("req-{i}");
            let admitted = s.reserve(&id, &chain, COST, NOW + 60_000, NOW).await.unwrap();
            (id, admitted)
        }));
    }
    let mut admitted = Vec::new();
    for t in tasks {
        let (id, adm) = t.await.unwrap();
        match adm {
            Admission::Admitted => admitted.push(id),
            Admission::Refused { budget_id, remaining_micros, window_end_ms } => {
                assert_eq!(budget_id, "dev");
                assert!(remaining_micros < COST);
                assert_eq!(window_end_ms, DAY.end_ms);
            }
        }
    }
    assert_eq!(admitted.len(), 50);
    assert_eq!(state(&a, &dev).await, (0, 50 * COST));
    assert_eq!(state(&b, &team).await, (0, 50 * COST));
    // Settle concurrently, each call to cost slightly less than reserved.
    let mut settles = Vec::new();
    for (i, id) in admitted.into_iter().enumerate() {
        let s = if i % 2 == 0 { Arc::clone(&b) } else { Arc::clone(&a) };
        settles.push(tokio::spawn(async move { s.settle(&id, COST - 34).await.unwrap() }));
    }
    for s in settles {
        assert!(s.await.unwrap());
    }
    assert_eq!(state(&a, &dev).await, (50 * (COST - 34), 0));
    assert_eq!(state(&a, &team).await, (50 * (COST - 34), 0));
    assert_eq!(state(&a, &org).await, (50 * (COST - 34), 0));
    assert!(50 * (COST - 34) <= dev.limit_micros);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_unavailable_quickly_and_service_resumes_by_itself() {
    let mut server = RedisServer::start();
    let port = server.port;
    let timeout = Duration::from_millis(500);
    let s = store_with_timeout(&server, "down:", timeout).await;
    let b = key("b", DAY, 1_000, true);
    assert_eq!(
        s.reserve("before", std::slice::from_ref(&b), 10, NOW + 60_000, NOW).await,
        Ok(Admission::Admitted)
    );

    server.kill();
    for i in 0..5 {
        let started = Instant::now();
        let r = s.reserve(&format!("down-{i}"), std::slice::from_ref(&b), 10, NOW + 60_000, NOW).await;
        assert!(matches!(r, Err(CostError::Unavailable(_))), "{r:?}");
        assert!(started.elapsed() < timeout * 3, "took {:?}", started.elapsed());
        let started = Instant::now();
        assert!(matches!(s.settle("before", 5).await, Err(CostError::Unavailable(_))));
        assert!(matches!(s.state(&b).await, Err(CostError::Unavailable(_))));
        assert!(started.elapsed() < timeout * 6);
    }
    // A new store cannot be built while Redis is down either, and says so in time.
    let started = Instant::now();
    let r = RedisCounters::connect(&format!("redis://127.0.0.1:{port}"), "down:", timeout).await;
    assert!(matches!(r, Err(CostError::Unavailable(_))));
    assert!(started.elapsed() < timeout * 3);

    let _server = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match s.reserve(&format!("after-{attempt}"), std::slice::from_ref(&b), 10, NOW + 60_000, NOW).await {
            Ok(admission) => {
                assert_eq!(admission, Admission::Admitted);
                break;
            }
            Err(CostError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("service did not resume within 15 s: {e}"),
        }
    }
    // The restarted Redis had no persistence: only the new reservation is there.
    assert_eq!(state(&s, &b).await, (0, 10));
    assert!(s.settle(&format!("after-{attempt}"), 7).await.unwrap());
    assert_eq!(state(&s, &b).await, (7, 0));
}

#[tokio::test]
async fn reserve_is_idempotent_and_settle_happens_once() {
    let server = RedisServer::start();
    let s = store(&server, "idem:").await;
    let b = key("b", DAY, 100, true);
    let chain = std::slice::from_ref(&b);
    assert_eq!(s.reserve("r1", chain, 60, NOW + 1_000, NOW).await, Ok(Admission::Admitted));
    assert_eq!(s.reserve("r1", chain, 60, NOW + 1_000, NOW).await, Ok(Admission::Admitted));
    assert_eq!(state(&s, &b).await, (0, 60));
    assert_eq!(
        s.reserve("r2", chain, 41, NOW + 1_000, NOW).await,
        Ok(Admission::Refused { budget_id: "b".into(), remaining_micros: 40, window_end_ms: DAY.end_ms })
    );
    assert_eq!(s.settle("r1", 55).await, Ok(true));
    assert_eq!(s.settle("r1", 55).await, Ok(false));
    assert_eq!(s.settle("unknown", 1).await, Ok(false));
    assert_eq!(state(&s, &b).await, (55, 0));
    // A budget listed twice in a chain is charged once.
    let c = key("c", DAY, 100, true);
    assert_eq!(s.reserve("r3", &[c.clone(), c.clone()], 70, NOW + 1_000, NOW).await, Ok(Admission::Admitted));
    assert_eq!(state(&s, &c).await, (0, 70));
    assert_eq!(s.settle("r3", 70).await, Ok(true));
    assert_eq!(state(&s, &c).await, (70, 0));
}

#[tokio::test]
async fn the_first_hard_budget_without_room_is_named_and_nothing_is_reserved() {
    let server = RedisServer::start();
    let s = store(&server, "chain:").await;
    let dev = key("dev", DAY, 1_000, false);
    let team = key("team", DAY, 10, true);
    let org = key("org", DAY, 5, true);
    assert_eq!(
        s.reserve("r", &[dev.clone(), team.clone(), org.clone()], 20, NOW + 1_000, NOW).await,
        Ok(Admission::Refused { budget_id: "team".into(), remaining_micros: 10, window_end_ms: DAY.end_ms })
    );
    for k in [&dev, &team, &org] {
        assert_eq!(state(&s, k).await, (0, 0));
    }
    // Soft budgets reserve beyond their limit.
    assert_eq!(
        s.reserve("soft", std::slice::from_ref(&dev), 5_000, NOW + 1_000, NOW).await,
        Ok(Admission::Admitted)
    );
    assert_eq!(state(&s, &dev).await, (0, 5_000));
}

#[tokio::test]
async fn expiry_releases_reservations_and_reserve_sweeps_on_its_own() {
    let server = RedisServer::start();
    let s = store(&server, "exp:").await;
    let b = key("b", DAY, 100, true);
    let chain = std::slice::from_ref(&b);
    assert_eq!(s.reserve("r1", chain, 100, NOW + 50, NOW).await, Ok(Admission::Admitted));
    assert!(matches!(s.reserve("r2", chain, 1, NOW + 500, NOW + 50).await, Ok(Admission::Refused { .. })));
    // Past the deadline the next reserve releases r1 first.
    assert_eq!(s.reserve("r2", chain, 1, NOW + 500, NOW + 51).await, Ok(Admission::Admitted));
    assert_eq!(state(&s, &b).await, (0, 1));
    assert_eq!(s.settle("r1", 100).await, Ok(false), "expired reservations do not settle");
    assert_eq!(s.expire(NOW + 500).await, Ok(0), "deadline itself is not past");
    assert_eq!(s.expire(NOW + 501).await, Ok(1));
    assert_eq!(state(&s, &b).await, (0, 0));
    // expire() pages through many expired reservations.
    let big = key("big", DAY, u64::MAX, true);
    for i in 0..250 {
        assert_eq!(
            s.reserve(&format!("many-{i}"), std::slice::from_ref(&big), 3, NOW + 600, NOW + 501).await,
            Ok(Admission::Admitted)
        );
    }
    assert_eq!(s.expire(NOW + 601).await, Ok(250));
    assert_eq!(state(&s, &big).await, (0, 0));
}

#[tokio::test]
async fn settle_charges_the_window_it_was_reserved_in() {
    let server = RedisServer::start();
    let s = store(&server, "roll:").await;
    let next = Window { start_ms: DAY.end_ms, end_ms: DAY.end_ms + 86_400_000 };
    let today = key("b", DAY, 100, true);
    let tomorrow = key("b", next, 100, true);
    assert_eq!(
        s.reserve("late", std::slice::from_ref(&today), 80, next.start_ms + 60_000, DAY.end_ms - 1).await,
        Ok(Admission::Admitted)
    );
    assert_eq!(
        s.reserve("early", std::slice::from_ref(&tomorrow), 100, next.start_ms + 60_000, next.start_ms).await,
        Ok(Admission::Admitted)
    );
    assert_eq!(s.settle("late", 75).await, Ok(true));
    assert_eq!(state(&s, &today).await, (75, 0));
    assert_eq!(state(&s, &tomorrow).await, (0, 100));
}

#[tokio::test]
async fn rebuild_sets_spent_and_keys_expire_after_their_window() {
    let server = RedisServer::start();
    let s = store(&server, "rebuild:").await;
    let b = key("b", DAY, 100, true);
    s.set_spent(&b, 90).await.unwrap();
    s.set_spent(&b, 90).await.unwrap();
    assert_eq!(state(&s, &b).await, (90, 0), "a rebuild sets, never adds");
    assert!(matches!(
        s.reserve("r", std::slice::from_ref(&b), 11, NOW + 1_000, NOW).await,
        Ok(Admission::Refused { remaining_micros: 10, .. })
    ));
    assert_eq!(s.reserve("r", std::slice::from_ref(&b), 10, NOW + 1_000, NOW).await, Ok(Admission::Admitted));
    s.set_spent(&b, 0).await.unwrap();
    assert_eq!(state(&s, &b).await, (0, 10), "reservations survive a rebuild");

    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // Keys live the window's length plus a week from creation, whatever the caller's clock.
    let ttl: i64 =
        redis::cmd("PTTL").arg(format!("rebuild:b:{}:b", DAY.start_ms)).query_async(&mut conn).await.unwrap();
    let expected = DAY.len_ms() + 7 * 86_400_000;
    assert!(ttl > expected - 60_000 && ttl <= expected, "{ttl}");
    let total = key("t", Window::TOTAL, 100, true);
    s.set_spent(&total, 5).await.unwrap();
    let ttl: i64 = redis::cmd("PTTL").arg("rebuild:b:0:t").query_async(&mut conn).await.unwrap();
    assert_eq!(ttl, -1, "total counters never expire");
    // Reservations made through reserve() set the same expiry on new counters.
    let fresh = key("fresh", DAY, 100, true);
    assert_eq!(
        s.reserve("f", std::slice::from_ref(&fresh), 1, NOW + 1_000, NOW).await,
        Ok(Admission::Admitted)
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("rebuild:b:{}:fresh", DAY.start_ms))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > expected - 60_000 && ttl <= expected, "{ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_claimed_once_across_replicas() {
    let server = RedisServer::start();
    let a = Arc::new(store(&server, "alert:").await);
    let b = Arc::new(store(&server, "alert:").await);
    let k = key("b", DAY, 100, false);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        let k = k.clone();
        tasks.push(tokio::spawn(async move { s.claim_alert(&k, 80u8).await.unwrap() }));
    }
    let mut firsts = 0;
    for t in tasks {
        firsts += usize::from(t.await.unwrap());
    }
    assert_eq!(firsts, 1);
    assert!(b.claim_alert(&k, 500u32).await.unwrap(), "another threshold is its own alert");
    let next = key("b", Window { start_ms: DAY.end_ms, end_ms: DAY.end_ms + 86_400_000 }, 100, false);
    assert!(a.claim_alert(&next, 80u8).await.unwrap(), "a new window alerts again");
}

#[tokio::test]
async fn prefixes_isolate_stores() {
    let server = RedisServer::start();
    let a = store(&server, "one:").await;
    let b = store(&server, "two:").await;
    let k = key("b", DAY, 100, true);
    assert_eq!(
        a.reserve("r", std::slice::from_ref(&k), 100, NOW + 1_000, NOW).await,
        Ok(Admission::Admitted)
    );
    assert_eq!(
        b.reserve("r", std::slice::from_ref(&k), 100, NOW + 1_000, NOW).await,
        Ok(Admission::Admitted)
    );
    assert_eq!(state(&a, &k).await, (0, 100));
    assert_eq!(state(&b, &k).await, (0, 100));
    assert!(matches!(CounterStore::redis("not a url", "x").await, Err(CostError::Config(_))));
}

/// The shared Redis on 127.0.0.1:6379, under a prefix no other test uses.
async fn shared_redis(prefix: &str) -> CounterStore {
    CounterStore::redis("redis://127.0.0.1:6379", prefix).await.expect("the Redis on 127.0.0.1:6379")
}

fn unique(name: &str) -> String {
    format!("t{}-{name}", uuid::Uuid::new_v4().simple())
}

/// Issue 17, item 14: a replica killed with -9 never settles its reservations. Status reads
/// release them at their deadline without waiting for another reservation to sweep them.
#[tokio::test]
async fn a_dead_replicas_reservation_stops_counting_as_reserved_at_its_deadline() {
    let prefix = unique("dead");
    let k = key("dev", DAY, 1_000, true);
    {
        // The replica that dies: it reserves and is gone without settling.
        let dying = shared_redis(&prefix).await;
        assert_eq!(
            dying.reserve("in-flight", std::slice::from_ref(&k), 400, NOW + 500, NOW).await,
            Ok(Admission::Admitted)
        );
    }
    let survivor = shared_redis(&prefix).await;
    let at = |now| {
        let (s, k) = (&survivor, &k);
        async move { s.state_at(k, now).await.map(|c| (c.spent_micros, c.reserved_micros)).unwrap() }
    };
    assert_eq!(at(NOW + 500).await, (0, 400), "before its deadline it is still held");
    assert_eq!(at(NOW + 501).await, (0, 0), "after it, released by the read alone");
    assert_eq!(state(&survivor, &k).await, (0, 0), "and released for good");
    // Settling it late changes nothing: it was released, not charged.
    assert_eq!(survivor.settle("in-flight", 400).await, Ok(false));
    assert_eq!(state(&survivor, &k).await, (0, 0));
}

/// Issue 17, item 14: the prefix is joined with `:`, so prefixes that extend one another
/// (`a`, `ab`, `ar:`) name disjoint keys. Before, `a` + `r:{id}` and `ar:` + `b:{window}:{id}`
/// were the same key when a caller chose the request id `b:{window}:{id}`.
#[tokio::test]
async fn prefixes_that_extend_one_another_never_share_a_key() {
    let base = unique("p");
    let a = shared_redis(&format!("{base}a")).await;
    let ab = shared_redis(&format!("{base}ab")).await;
    let ar = shared_redis(&format!("{base}ar:")).await;
    let k = key("dev", DAY, 100, true);
    let crafted = format!("b:{}:dev", DAY.start_ms);
    for (s, id) in [(&a, crafted.as_str()), (&ab, "r"), (&ar, "r")] {
        assert_eq!(
            s.reserve(id, std::slice::from_ref(&k), 100, NOW + 60_000, NOW).await,
            Ok(Admission::Admitted),
            "each prefix has its own full budget"
        );
        assert_eq!(state(s, &k).await, (0, 100));
    }
    assert_eq!(a.settle(&crafted, 30).await, Ok(true));
    assert_eq!(state(&a, &k).await, (30, 0));
    assert_eq!(state(&ab, &k).await, (0, 100));
    assert_eq!(state(&ar, &k).await, (0, 100));
    // Every key of `a` starts with `a:`; none of the others does.
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{base}*")).query_async(&mut conn).await.unwrap();
    let of_a: Vec<&String> = keys.iter().filter(|k| k.starts_with(&format!("{base}a:"))).collect();
    assert!(!of_a.is_empty());
    assert!(
        keys.iter().all(|k| ["a:", "ab:", "ar:"].iter().any(|p| k.starts_with(&format!("{base}{p}")))),
        "{keys:?}"
    );
    // A prefix that already ends with `:` keeps naming exactly the keys it named before.
    if let CounterStore::Redis(r) = &ar {
        assert_eq!(r.key_prefix(), format!("{base}ar:"));
    }
    if let CounterStore::Redis(r) = &a {
        assert_eq!(r.key_prefix(), format!("{base}a:"));
    }
    let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
}
