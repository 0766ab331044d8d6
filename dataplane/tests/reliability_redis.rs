//! Rate limits on Redis: exact admission across gateways sharing one Redis under
//! concurrency, token corrections, keys that expire with their window, and failing open
//! (`Unavailable` within the timeout) when Redis is down, hung or restarted.
//!
//! Each test runs a `redis-server` of its own on a free port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_dataplane::reliability::ratelimit::{REDIS_TIMEOUT, RedisRateLimiter};
use tollgate_dataplane::reliability::{RateLimitError, RateLimiter};

mod support;
use support::RedisServer;

const MIN: Duration = Duration::from_secs(60);

#[expect(clippy::unwrap_used, reason = "test set-up: a failure is the test's failure")]
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_is_exact_across_two_gateways_under_concurrency() {
    let redis = RedisServer::start();
    let gateways = [
        Arc::new(RateLimiter::redis(&redis.url(), "t").unwrap()),
        Arc::new(RateLimiter::redis(&redis.url(), "t").unwrap()),
    ];
    let now = now_ms();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let rl = Arc::clone(&gateways[i % 2]);
            tokio::spawn(async move { rl.check("principal:alice:rpm", 50, 1, MIN, now).await.unwrap() })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        let d = t.await.unwrap();
        if d.allowed {
            admitted += 1;
        } else {
            assert_eq!(d.remaining, 0);
            assert!(d.retry_after > Duration::ZERO && d.retry_after <= MIN);
        }
    }
    assert_eq!(admitted, 50);
    // Both gateways see the same full window; the next window starts from zero.
    assert!(!gateways[1].check("principal:alice:rpm", 50, 1, MIN, now).await.unwrap().allowed);
    let next = now - now.rem_euclid(60_000) + 60_000;
    let d = gateways[0].check("principal:alice:rpm", 50, 1, MIN, next).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 49);
}

#[tokio::test]
async fn token_costs_corrections_and_expiring_keys() {
    let redis = RedisServer::start();
    let a = RateLimiter::redis(&redis.url(), "gw").unwrap();
    let b = RateLimiter::redis(&redis.url(), "gw").unwrap();
    let now = now_ms();
    assert_eq!(a.check("tpm", 1000, 600, MIN, now).await.unwrap().remaining, 400);
    let refused = b.check("tpm", 1000, 600, MIN, now).await.unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 400, "a refusal charges nothing");
    a.add("tpm", -500, MIN, now).await.unwrap();
    assert_eq!(b.check("tpm", 1000, 600, MIN, now).await.unwrap().remaining, 300);
    b.add("tpm", -5000, MIN, now).await.unwrap();
    assert_eq!(a.check("tpm", 1000, 0, MIN, now).await.unwrap().remaining, 1000, "never below zero");
    // A correction to a window without a counter creates none.
    a.add("tpm", 100, MIN, now + 120_000).await.unwrap();

    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut con).await.unwrap();
    let start = now - now.rem_euclid(60_000);
    assert_eq!(keys, vec![format!("gw:rl:tpm:60000:{start}")]);
    let ttl: i64 = redis::cmd("PTTL").arg(&keys[0]).query_async(&mut con).await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "expires with its window: {ttl}");
}

#[tokio::test]
async fn unavailable_at_once_when_redis_was_never_up() {
    let rl = RateLimiter::redis(&format!("redis://127.0.0.1:{}", free_port()), "t").unwrap();
    let started = Instant::now();
    let err = rl.check("k", 10, 1, MIN, now_ms()).await.unwrap_err();
    assert!(matches!(err, RateLimitError::Unavailable(_)), "{err:?}");
    assert!(matches!(rl.add("k", 1, MIN, now_ms()).await, Err(RateLimitError::Unavailable(_))));
    assert!(started.elapsed() <= REDIS_TIMEOUT * 2 + Duration::from_millis(500), "{:?}", started.elapsed());
}

#[tokio::test]
async fn unavailable_within_the_timeout_when_redis_hangs() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let timeout = Duration::from_millis(300);
    let rl = RateLimiter::Redis(
        RedisRateLimiter::new(&format!("redis://127.0.0.1:{port}"), "t", timeout).unwrap(),
    );
    for _ in 0..3 {
        let started = Instant::now();
        let err = rl.check("k", 10, 1, MIN, now_ms()).await.unwrap_err();
        assert!(matches!(err, RateLimitError::Unavailable(_)), "{err:?}");
        let took = started.elapsed();
        assert!(took <= timeout + Duration::from_millis(500), "{took:?}");
    }
    hold.abort();
}

#[tokio::test]
async fn unavailable_when_redis_goes_away_and_back_by_itself_after() {
    let mut redis = RedisServer::start();
    let rl = RateLimiter::redis(&redis.url(), "t").unwrap();
    assert!(rl.check("k", 10, 1, MIN, now_ms()).await.unwrap().allowed);
    redis.kill();
    let started = Instant::now();
    let err = rl.check("k", 10, 1, MIN, now_ms()).await.unwrap_err();
    assert!(matches!(err, RateLimitError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() <= REDIS_TIMEOUT + Duration::from_millis(500), "{:?}", started.elapsed());

    let _redis = RedisServer::start_on(redis.port);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match rl.check("k", 10, 1, MIN, now_ms()).await {
            Ok(d) => {
                assert!(d.allowed);
                break;
            }
            Err(RateLimitError::Unavailable(_)) => {
                assert!(Instant::now() < deadline, "did not reconnect");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
}
