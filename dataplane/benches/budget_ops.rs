//! Reserve+settle throughput on one hot budget with a two-level chain (developer → team),
//! for the in-memory store (one and two threads) and the Redis store (many concurrent
//! callers through one multiplexed connection).
//!
//! `cargo bench -p tollgate-dataplane --bench budget_ops`. Criterion's `thrpt` is in
//! reserve+settle *pairs* per second (one element = one reserve and one settle); a summary
//! of pairs/s and operations/s is printed at the end. Redis: the machine's server on
//! 127.0.0.1:6379 if it answers, otherwise a `redis-server` started (and stopped) here.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark aborts on any failure")]

use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tollgate_dataplane::cost::{Admission, BudgetKey, CounterStore, Window};

const AMOUNT: u64 = 1_000;
const ACTUAL: u64 = 700;

fn chain() -> Vec<BudgetKey> {
    let window = Window { start_ms: 0, end_ms: i64::MAX };
    // Limits high enough that the benchmark never runs out of budget.
    vec![
        BudgetKey { id: "bench-dev".into(), window, limit_micros: 1 << 52, hard: true },
        BudgetKey { id: "bench-team".into(), window, limit_micros: 1 << 52, hard: true },
    ]
}

/// `n` reserve+settle pairs, one after another, ids `{tag}-{i}`.
async fn pairs(store: &CounterStore, chain: &[BudgetKey], tag: &str, n: u64) {
    let mut id = String::with_capacity(32);
    for i in 0..n {
        id.clear();
        let _ = write!(id, "{tag}-{i}");
        let admitted = store.reserve(&id, chain, AMOUNT, i64::MAX - 1, 1).await;
        assert_eq!(admitted, Ok(Admission::Admitted));
        assert_eq!(store.settle(&id, ACTUAL).await, Ok(true));
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Time for `n` pairs on the memory store, split over `threads` OS threads.
fn memory_run(store: &CounterStore, chain: &[BudgetKey], threads: u64, n: u64) -> Duration {
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let share = n / threads + u64::from(t < n % threads);
            s.spawn(move || current_thread().block_on(pairs(store, chain, &format!("m{t}"), share)));
        }
    });
    started.elapsed()
}

/// Time for `n` pairs on the Redis store, split over `tasks` concurrent tasks.
fn redis_run(
    rt: &tokio::runtime::Runtime,
    store: &Arc<CounterStore>,
    chain: &Arc<Vec<BudgetKey>>,
    tasks: u64,
    n: u64,
) -> Duration {
    rt.block_on(async {
        let started = Instant::now();
        let mut handles = Vec::new();
        for t in 0..tasks {
            let share = n / tasks + u64::from(t < n % tasks);
            let (store, chain) = (Arc::clone(store), Arc::clone(chain));
            handles.push(tokio::spawn(async move { pairs(&store, &chain, &format!("r{t}"), share).await }));
        }
        for h in handles {
            h.await.unwrap();
        }
        started.elapsed()
    })
}

/// Pairs per second over about `secs` seconds.
fn rate(mut run: impl FnMut(u64) -> Duration, secs: f64) -> f64 {
    let mut n = 1_000;
    loop {
        let took = run(n).as_secs_f64();
        if took >= secs || n > 1 << 34 {
            return n as f64 / took;
        }
        n = ((n as f64) * (secs / took.max(1e-3)) * 1.1) as u64;
    }
}

/// A `redis-server` of our own, killed on drop, for machines without one on 6379.
struct OwnRedis(Child);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

fn redis_server() -> (String, Option<OwnRedis>) {
    if answers_ping(6379) {
        return ("redis://127.0.0.1:6379".into(), None);
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let own = OwnRedis(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answers_ping(port) {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    (format!("redis://127.0.0.1:{port}"), Some(own))
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let chain = chain();
    let mut summary = Vec::new();

    let memory = CounterStore::memory();
    let mut group = c.benchmark_group("memory");
    group.throughput(Throughput::Elements(1));
    group.bench_function("reserve+settle/1 thread", |b| b.iter_custom(|n| memory_run(&memory, &chain, 1, n)));
    group
        .bench_function("reserve+settle/2 threads", |b| b.iter_custom(|n| memory_run(&memory, &chain, 2, n)));
    group.finish();
    summary.push(("memory, 1 thread", rate(|n| memory_run(&memory, &chain, 1, n), 2.0)));
    summary.push(("memory, 2 threads", rate(|n| memory_run(&memory, &chain, 2, n), 2.0)));

    let (url, _own) = redis_server();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let prefix = format!("tollgate-bench-{}:", std::process::id());
    let redis = Arc::new(rt.block_on(CounterStore::redis(&url, &prefix)).expect("connect to redis"));
    let shared_chain = Arc::new(chain.clone());
    let mut group = c.benchmark_group("redis");
    group.throughput(Throughput::Elements(1));
    group.bench_function("reserve+settle/128 tasks", |b| {
        b.iter_custom(|n| redis_run(&rt, &redis, &shared_chain, 128, n))
    });
    group.finish();
    for (name, tasks) in [("redis, 64 tasks", 64), ("redis, 128 tasks", 128), ("redis, 256 tasks", 256)] {
        summary.push((name, rate(|n| redis_run(&rt, &redis, &shared_chain, tasks, n.max(tasks)), 2.0)));
    }
    // Leave nothing behind in a shared Redis.
    rt.block_on(async {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
        }
    });

    c.final_summary();
    println!("\nreserve+settle on one hot budget (2-level chain):");
    for (name, pairs_per_sec) in summary {
        println!(
            "  {name:<20} {:>12.0} pairs/s  ({:>12.0} operations/s)",
            pairs_per_sec,
            2.0 * pairs_per_sec
        );
    }
}
