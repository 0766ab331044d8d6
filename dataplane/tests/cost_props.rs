//! Property tests of the counter stores: random sequences of reserve / retry / settle /
//! cancel / expire across a budget tree, checked against a reference model after every
//! step. The memory backend runs many cases; the Redis backend (its own `redis-server`)
//! runs the same model on fewer. Plus the in-memory concurrency test.

#![expect(clippy::unwrap_used, reason = "test setup: failing loudly is the point")]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::{RedisServer, key};
use tollgate_dataplane::cost::{Admission, BudgetKey, CounterStore, RedisCounters, Window};

/// The tree: org ← team-a ← dev-1, dev-2; org ← team-b ← dev-3.
const BUDGETS: [&str; 6] = ["org", "team-a", "team-b", "dev-1", "dev-2", "dev-3"];
/// Chains by budget index, subject first.
const CHAINS: [&[usize]; 6] = [&[0], &[1, 0], &[2, 0], &[3, 1, 0], &[4, 1, 0], &[5, 2, 0]];
const WINDOW: Window = Window { start_ms: 0, end_ms: i64::MAX };

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        chain: usize,
        amount: u64,
        ttl: i64,
    },
    /// Repeat an earlier reserve with the same id (a retry).
    Retry {
        pick: usize,
    },
    /// Settle an earlier reservation at `percent` of its amount.
    Settle {
        pick: usize,
        percent: u64,
    },
    /// A cancelled or failed call: settle to zero.
    Cancel {
        pick: usize,
    },
    /// Move the clock forward and release what expired.
    Expire {
        advance: i64,
    },
    SettleUnknown,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..CHAINS.len(), 0u64..80, 1i64..200).prop_map(|(chain, amount, ttl)| Op::Reserve { chain, amount, ttl }),
        1 => any::<usize>().prop_map(|pick| Op::Retry { pick }),
        3 => (any::<usize>(), 0u64..=100).prop_map(|(pick, percent)| Op::Settle { pick, percent }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => (0i64..150).prop_map(|advance| Op::Expire { advance }),
        1 => Just(Op::SettleUnknown),
    ]
}

#[derive(Debug, Clone)]
struct Setup {
    limits: [u64; 6],
    hard: [bool; 6],
}

fn setup() -> impl Strategy<Value = Setup> {
    (prop::array::uniform6(0u64..300), prop::array::uniform6(prop::bool::weighted(0.75)))
        .prop_map(|(limits, hard)| Setup { limits, hard })
}

/// What the store should hold, computed independently.
#[derive(Default)]
struct Model {
    spent: [u64; 6],
    /// Live reservations: id → (chain index, amount, deadline).
    live: BTreeMap<String, (usize, u64, i64)>,
    /// Every reserve made, by id, for retries and settles to pick from.
    made: Vec<(String, usize, u64, i64)>,
    settled_total: [u64; 6],
}

impl Model {
    fn reserved(&self, budget: usize) -> u64 {
        self.live.values().filter(|(c, _, _)| CHAINS[*c].contains(&budget)).map(|(_, a, _)| a).sum()
    }

    fn sweep(&mut self, now: i64) -> u64 {
        let before = self.live.len();
        self.live.retain(|_, (_, _, deadline)| *deadline >= now);
        (before - self.live.len()) as u64
    }
}

fn keys(setup: &Setup) -> Vec<BudgetKey> {
    (0..6).map(|i| key(BUDGETS[i], WINDOW, setup.limits[i], setup.hard[i])).collect()
}

fn chain_keys(all: &[BudgetKey], chain: usize) -> Vec<BudgetKey> {
    CHAINS[chain].iter().map(|&i| all[i].clone()).collect()
}

async fn check_counters(
    store: &CounterStore,
    setup: &Setup,
    model: &Model,
    all: &[BudgetKey],
) -> Result<(), TestCaseError> {
    for (i, k) in all.iter().enumerate() {
        let state = store.state(k).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(state.reserved_micros, model.reserved(i), "reserved of {}", BUDGETS[i]);
        prop_assert_eq!(state.spent_micros, model.spent[i], "spent of {}", BUDGETS[i]);
        if setup.hard[i] {
            // Settling never exceeds the reservation here, so a hard budget stays within its
            // limit with everything in flight counted too.
            prop_assert!(
                state.spent_micros + state.reserved_micros <= setup.limits[i],
                "{} over its limit",
                BUDGETS[i]
            );
        }
    }
    Ok(())
}

async fn run(store: &CounterStore, setup: &Setup, ops: &[Op]) -> Result<(), TestCaseError> {
    let all = keys(setup);
    let mut model = Model::default();
    let mut now: i64 = 1_000;
    let fail = |e: tollgate_dataplane::cost::CostError| TestCaseError::fail(e.to_string());
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Reserve { chain, amount, ttl } => {
                let id = format!("r{step}");
                let deadline = now + ttl;
                model.sweep(now);
                let expected = CHAINS[*chain].iter().copied().find(|&b| {
                    setup.hard[b] && model.spent[b] + model.reserved(b) + amount > setup.limits[b]
                });
                let got = store
                    .reserve(&id, &chain_keys(&all, *chain), *amount, deadline, now)
                    .await
                    .map_err(fail)?;
                match (expected, got) {
                    (None, Admission::Admitted) => {
                        model.live.insert(id.clone(), (*chain, *amount, deadline));
                        model.made.push((id, *chain, *amount, deadline));
                    }
                    (Some(b), Admission::Refused { budget_id, remaining_micros, window_end_ms }) => {
                        prop_assert_eq!(budget_id.as_str(), BUDGETS[b]);
                        let used = model.spent[b] + model.reserved(b);
                        prop_assert_eq!(remaining_micros, setup.limits[b].saturating_sub(used));
                        prop_assert_eq!(window_end_ms, WINDOW.end_ms);
                    }
                    (expected, got) => {
                        return Err(TestCaseError::fail(format!(
                            "step {step}: expected refusal by {expected:?}, got {got:?}"
                        )));
                    }
                }
            }
            Op::Retry { pick } => {
                if model.made.is_empty() {
                    continue;
                }
                let (id, chain, amount, deadline) = model.made[pick % model.made.len()].clone();
                // Only a live, unexpired reservation is retried (the store sweeps when called,
                // so the model sweeps only then too).
                if model.live.contains_key(&id) && deadline >= now {
                    model.sweep(now);
                    let got = store
                        .reserve(&id, &chain_keys(&all, chain), amount, deadline, now)
                        .await
                        .map_err(fail)?;
                    prop_assert_eq!(got, Admission::Admitted, "a retry of a live reservation");
                }
            }
            Op::Settle { pick, .. } | Op::Cancel { pick } if !model.made.is_empty() => {
                let percent = if let Op::Settle { percent, .. } = op { *percent } else { 0 };
                let (id, _, amount, _) = model.made[pick % model.made.len()].clone();
                let actual = amount * percent / 100;
                let settled = store.settle(&id, actual).await.map_err(fail)?;
                match model.live.remove(&id) {
                    Some((chain, _, _)) => {
                        prop_assert!(settled, "step {}: live reservation {} did not settle", step, id);
                        for &b in CHAINS[chain] {
                            model.spent[b] += actual;
                            model.settled_total[b] += actual;
                        }
                    }
                    None => prop_assert!(!settled, "step {}: {} settled twice or after expiry", step, id),
                }
            }
            Op::Settle { .. } | Op::Cancel { .. } => {}
            Op::Expire { advance } => {
                now += advance;
                let released = store.expire(now).await.map_err(fail)?;
                prop_assert_eq!(released, model.sweep(now));
            }
            Op::SettleUnknown => {
                prop_assert!(!store.settle("never-reserved", 5).await.map_err(fail)?);
            }
        }
        check_counters(store, setup, &model, &all).await?;
    }
    // Finish: settle half of what is live, let the rest expire; nothing stays reserved and
    // spend is exactly the sum of what was settled.
    let live: Vec<(String, (usize, u64, i64))> = model.live.iter().map(|(k, v)| (k.clone(), *v)).collect();
    for (i, (id, (chain, amount, _))) in live.into_iter().enumerate() {
        if i % 2 == 0 {
            prop_assert!(store.settle(&id, amount).await.map_err(fail)?);
            model.live.remove(&id);
            for &b in CHAINS[chain] {
                model.spent[b] += amount;
                model.settled_total[b] += amount;
            }
        }
    }
    let released = store.expire(i64::MAX).await.map_err(fail)?;
    prop_assert_eq!(released, model.live.len() as u64);
    model.live.clear();
    check_counters(store, setup, &model, &all).await?;
    for (i, k) in all.iter().enumerate() {
        let state = store.state(k).await.map_err(fail)?;
        prop_assert_eq!(state.reserved_micros, 0);
        prop_assert_eq!(state.spent_micros, model.settled_total[i]);
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    #[test]
    fn memory_store_keeps_budgets_exact(setup in setup(), ops in prop::collection::vec(op(), 1..80)) {
        runtime().block_on(run(&CounterStore::memory(), &setup, &ops))?;
    }
}

#[test]
fn redis_store_keeps_budgets_exact() {
    let server = RedisServer::start();
    let rt = runtime();
    let mut runner = TestRunner::new(Config { cases: 48, failure_persistence: None, ..Config::default() });
    let case = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&(setup(), prop::collection::vec(op(), 1..60)), |(setup, ops)| {
        // Each case gets its own keys.
        let prefix = format!("props-{}:", case.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        rt.block_on(async {
            let store = CounterStore::Redis(
                RedisCounters::connect(&server.url(), &prefix, RedisCounters::DEFAULT_TIMEOUT)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?,
            );
            run(&store, &setup, &ops).await
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_admits_exactly_what_500_concurrent_requests_can_afford() {
    let store = Arc::new(CounterStore::memory());
    const COST: u64 = 777;
    let dev = key("dev", WINDOW, 50 * COST, true);
    let team = key("team", WINDOW, 70 * COST, true);
    let chain = Arc::new(vec![dev.clone(), team.clone()]);
    let mut tasks = Vec::new();
    for i in 0..500 {
        let store = Arc::clone(&store);
        let chain = Arc::clone(&chain);
        tasks.push(tokio::spawn(async move {
            let id = format!("req-{i}");
            // Yield first so the tasks really interleave across both worker threads.
            tokio::task::yield_now().await;
            let admission = store.reserve(&id, &chain, COST, i64::MAX, 0).await.unwrap();
            (id, admission)
        }));
    }
    let mut admitted = Vec::new();
    for t in tasks {
        if let (id, Admission::Admitted) = t.await.unwrap() {
            admitted.push(id);
        }
    }
    assert_eq!(admitted.len(), 50);
    let mut settles = Vec::new();
    for id in admitted {
        let store = Arc::clone(&store);
        settles.push(tokio::spawn(async move { store.settle(&id, COST).await.unwrap() }));
    }
    for s in settles {
        assert!(s.await.unwrap());
    }
    let state = store.state(&dev).await.unwrap();
    assert_eq!((state.spent_micros, state.reserved_micros), (50 * COST, 0));
    assert!(state.spent_micros <= dev.limit_micros);
    assert_eq!(store.state(&team).await.unwrap().spent_micros, 50 * COST);
}
