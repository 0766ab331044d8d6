//! Budget counters in Redis, shared by every gateway replica.
//!
//! Each operation is one Lua script (`cost/lua/*.lua`, sent as EVALSHA), so reserve and
//! settle are one round trip each and atomic across replicas. Keys, all under the prefix
//! followed by `:` (added unless the prefix already ends with it, so `a` and `ab` never share
//! a key):
//!
//! - `b:{window start}:{budget id}`: hash `s` (spent), `r` (reserved); expires the window's
//!   length plus a week after it is created (never for `total`);
//! - `r:{reservation id}`: hash `a` (amount), `d` (deadline), `n` and `1..n` (its counters);
//! - `deadlines`: sorted set of live reservation ids by deadline, swept by every reserve;
//! - `a:{window start}:{percent}:{budget id}`: threshold alert claims (`SET NX`);
//! - `o:{window start}:{budget id}`: overrun alert claims (`SET NX`).
//!
//! Every call is bounded by a timeout and every failure is [`CostError::Unavailable`]; the
//! connection manager reconnects on its own, so service resumes when Redis is back.
//!
//! NB: Lua numbers are doubles. Amounts and limits are clamped to 2^53 - 1 micro-USD (about
//! nine billion dollars) before they reach a script, where every comparison is then exact.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{RedisError, Script, ScriptInvocation};

use super::CostError;
use super::counters::{Admission, BudgetKey, CounterState};
use super::period::Window;

/// Largest amount a Lua double holds exactly.
const MAX_EXACT_MICROS: u64 = (1 << 53) - 1;
/// How long counters stay after their window ends.
const RETAIN_AFTER_WINDOW_MS: i64 = 7 * 24 * 3_600_000;
/// Windows longer than this (ten years) keep their keys forever.
const LONGEST_EXPIRING_WINDOW_MS: i64 = 10 * 366 * 24 * 3_600_000;
/// Expired reservations released per script run (bounds the time one script holds Redis).
const SWEEP_LIMIT: u32 = 100;

struct Scripts {
    reserve: Script,
    settle: Script,
    expire: Script,
    set_spent: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    reserve: Script::new(concat!(include_str!("lua/common.lua"), include_str!("lua/reserve.lua"))),
    settle: Script::new(concat!(include_str!("lua/common.lua"), include_str!("lua/settle.lua"))),
    expire: Script::new(concat!(include_str!("lua/common.lua"), include_str!("lua/expire.lua"))),
    set_spent: Script::new(include_str!("lua/set_spent.lua")),
});

/// Budget counters in Redis. Cloning shares the connection.
#[derive(Clone)]
pub struct RedisCounters {
    conn: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounters").field("prefix", &self.prefix).field("timeout", &self.timeout).finish()
    }
}

impl RedisCounters {
    /// The default bound on every call.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// Connects to `url` with keys under `key_prefix`; every later call fails with
    /// [`CostError::Unavailable`] after `timeout`. Fails if Redis does not answer within
    /// `timeout` now.
    pub async fn connect(url: &str, key_prefix: &str, timeout: Duration) -> Result<Self, CostError> {
        let client =
            ::redis::Client::open(url).map_err(|e| CostError::Config(format!("invalid Redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Retry briefly, then fail: a failed reconnection is retried by the next call,
            // and callers never wait longer than `timeout` anyway.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let conn =
            match tokio::time::timeout(timeout, ConnectionManager::new_with_config(client, config)).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => return Err(unavailable(&e)),
                Err(_) => return Err(timed_out(timeout)),
            };
        let store = RedisCounters { conn, prefix: with_separator(key_prefix).into(), timeout };
        // Load the scripts now so the first requests do not pay a NOSCRIPT round trip.
        for script in [&SCRIPTS.reserve, &SCRIPTS.settle, &SCRIPTS.expire, &SCRIPTS.set_spent] {
            let mut conn = store.conn.clone();
            store.bounded(script.prepare_invoke().load_async(&mut conn)).await?;
        }
        Ok(store)
    }

    /// The key prefix, with its `:` separator.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    async fn bounded<T>(&self, call: impl Future<Output = Result<T, RedisError>>) -> Result<T, CostError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(&e)),
            Err(_) => Err(timed_out(self.timeout)),
        }
    }

    async fn invoke<T: ::redis::FromRedisValue>(&self, inv: &ScriptInvocation<'_>) -> Result<T, CostError> {
        let mut conn = self.conn.clone();
        self.bounded(inv.invoke_async(&mut conn)).await
    }

    fn counter_key(&self, key: &BudgetKey) -> String {
        format!("{}b:{}:{}", self.prefix, key.window.start_ms, key.id)
    }

    fn reservation_prefix(&self) -> String {
        format!("{}r:", self.prefix)
    }

    fn deadlines_key(&self) -> String {
        format!("{}deadlines", self.prefix)
    }

    /// See [`CounterStore::reserve`](super::CounterStore::reserve).
    pub async fn reserve(
        &self,
        id: &str,
        chain: &[BudgetKey],
        amount: u64,
        deadline_ms: i64,
        now_ms: i64,
    ) -> Result<Admission, CostError> {
        // A budget listed twice is charged once.
        let mut unique: Vec<&BudgetKey> = Vec::with_capacity(chain.len());
        for k in chain {
            if !unique.iter().any(|u| u.id == k.id && u.window.start_ms == k.window.start_ms) {
                unique.push(k);
            }
        }
        let rprefix = self.reservation_prefix();
        let mut inv = SCRIPTS.reserve.prepare_invoke();
        inv.key(format!("{rprefix}{id}")).key(self.deadlines_key());
        for k in &unique {
            inv.key(self.counter_key(k));
        }
        inv.arg(id).arg(exact(amount)).arg(deadline_ms).arg(now_ms).arg(&rprefix).arg(SWEEP_LIMIT);
        for k in &unique {
            inv.arg(exact(k.limit_micros)).arg(if k.hard { "1" } else { "0" }).arg(time_to_live(k.window));
        }
        let reply: Vec<i64> = self.invoke(&inv).await?;
        match reply.as_slice() {
            [1] | [2] => Ok(Admission::Admitted),
            [0, index, remaining] => {
                let refused =
                    usize::try_from(*index - 1).ok().and_then(|i| unique.get(i)).ok_or_else(|| {
                        CostError::Unavailable(format!(
                            "reserve script named budget #{index} of {}",
                            unique.len()
                        ))
                    })?;
                Ok(Admission::Refused {
                    budget_id: refused.id.clone(),
                    remaining_micros: u64::try_from(*remaining).unwrap_or(0),
                    window_end_ms: refused.window.end_ms,
                })
            }
            other => {
                Err(CostError::Unavailable(format!("unexpected reply from the reserve script: {other:?}")))
            }
        }
    }

    /// See [`CounterStore::settle`](super::CounterStore::settle).
    pub async fn settle(&self, id: &str, actual: u64) -> Result<bool, CostError> {
        let mut inv = SCRIPTS.settle.prepare_invoke();
        inv.key(format!("{}r:{id}", self.prefix)).key(self.deadlines_key()).arg(id).arg(exact(actual));
        let settled: i64 = self.invoke(&inv).await?;
        Ok(settled == 1)
    }

    /// See [`CounterStore::expire`](super::CounterStore::expire).
    pub async fn expire(&self, now_ms: i64) -> Result<u64, CostError> {
        let mut total = 0;
        loop {
            let mut inv = SCRIPTS.expire.prepare_invoke();
            inv.key(self.deadlines_key()).arg(self.reservation_prefix()).arg(now_ms).arg(SWEEP_LIMIT);
            let released: u64 = self.invoke(&inv).await?;
            total += released;
            if released < u64::from(SWEEP_LIMIT) {
                return Ok(total);
            }
        }
    }

    /// See [`CounterStore::state`](super::CounterStore::state).
    pub async fn state(&self, key: &BudgetKey) -> Result<CounterState, CostError> {
        let mut conn = self.conn.clone();
        let mut cmd = ::redis::cmd("HMGET");
        cmd.arg(self.counter_key(key)).arg("s").arg("r");
        let (spent, reserved): (Option<u64>, Option<u64>) = self.bounded(cmd.query_async(&mut conn)).await?;
        Ok(CounterState { spent_micros: spent.unwrap_or(0), reserved_micros: reserved.unwrap_or(0) })
    }

    /// See [`CounterStore::state_at`](super::CounterStore::state_at).
    pub async fn state_at(&self, key: &BudgetKey, now_ms: i64) -> Result<CounterState, CostError> {
        self.expire(now_ms).await?;
        self.state(key).await
    }

    /// See [`CounterStore::set_spent`](super::CounterStore::set_spent).
    pub async fn set_spent(&self, key: &BudgetKey, spent: u64) -> Result<(), CostError> {
        let mut inv = SCRIPTS.set_spent.prepare_invoke();
        inv.key(self.counter_key(key)).arg(exact(spent)).arg(time_to_live(key.window));
        let _: i64 = self.invoke(&inv).await?;
        Ok(())
    }

    /// See [`CounterStore::claim_alert`](super::CounterStore::claim_alert).
    pub async fn claim_alert(&self, key: &BudgetKey, threshold_percent: u32) -> Result<bool, CostError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(format!("{}a:{}:{}:{}", self.prefix, key.window.start_ms, threshold_percent, key.id))
            .arg(1)
            .arg("NX");
        self.claim(cmd, time_to_live(key.window)).await
    }

    /// See [`CounterStore::claim_overrun_alert`](super::CounterStore::claim_overrun_alert).
    pub async fn claim_overrun_alert(&self, key: &BudgetKey) -> Result<bool, CostError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(format!("{}o:{}:{}", self.prefix, key.window.start_ms, key.id)).arg(1).arg("NX");
        self.claim(cmd, time_to_live(key.window)).await
    }

    /// Runs a `SET key 1 NX` (expiring after `ttl` ms unless 0): true if it set the key.
    async fn claim(&self, mut cmd: ::redis::Cmd, ttl: i64) -> Result<bool, CostError> {
        let mut conn = self.conn.clone();
        if ttl != 0 {
            cmd.arg("PX").arg(ttl);
        }
        let reply: Option<String> = self.bounded(cmd.query_async(&mut conn)).await?;
        Ok(reply.is_some())
    }
}

/// `prefix` followed by the `:` separator (unless it already ends with one; an empty prefix
/// stays empty). NB: before this, keys were the prefix glued to the key name (`tollgateb:...`),
/// so prefixes `a` and `ab` could name the same key; a prefix that already ended with `:`
/// names exactly the keys it did before.
fn with_separator(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with(':') { prefix.to_owned() } else { format!("{prefix}:") }
}

/// Clamps an amount to what a Lua number holds exactly.
fn exact(micros: u64) -> u64 {
    micros.min(MAX_EXACT_MICROS)
}

/// How long a window's keys live once created (ms), or 0 for ever (`total`, and windows over
/// ten years). A key is created inside its window, so it outlives the window by at least a
/// week. NB: relative, not `PEXPIREAT window end`: callers with a controlled clock (tests,
/// replays) must not see counters vanish because their "now" is Redis' past.
fn time_to_live(window: Window) -> i64 {
    match window.len_ms() {
        len if len <= 0 || len > LONGEST_EXPIRING_WINDOW_MS => 0,
        len => len + RETAIN_AFTER_WINDOW_MS,
    }
}

fn unavailable(e: &RedisError) -> CostError {
    CostError::Unavailable(format!("redis: {e}"))
}

fn timed_out(timeout: Duration) -> CostError {
    CostError::Unavailable(format!("redis did not answer within {} ms", timeout.as_millis()))
}
