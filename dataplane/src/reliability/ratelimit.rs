//! Rate limits: exact fixed-window counters for requests and tokens per minute, per
//! principal and per IP token, in memory (one replica) or in Redis (many replicas).
//!
//! A check admits `cost` units against `limit` per window, atomically: with limit N, the
//! first N unit-cost checks of a window are admitted and the N+1-th is refused, however many
//! callers (and, with Redis, gateways) race. Windows are aligned to the epoch
//! (`now_ms - now_ms % window`), so every replica agrees on them without coordination, and
//! a counter is keyed by (key, window start): a new window starts from zero with no reset.
//!
//! Tokens per minute are charged an estimate at admission ([`RateLimiter::check`] with
//! `cost` = estimated tokens) and, when the answer used more, corrected once the usage is
//! known ([`RateLimiter::add`] with actual − estimate, at the `now_ms` of the check so the
//! same window is corrected; the request path never refunds).
//!
//! NB: rate limits fail OPEN. A Redis error or timeout (≤ [`REDIS_TIMEOUT`]) is
//! [`RateLimitError::Unavailable`] and the caller admits the request (and logs and counts
//! it): a rate limit protects the upstream, it is not money. Budgets, which are, fail closed.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Client, Script};

/// The longest a Redis rate-limit operation may take before it counts as unavailable.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// Counts beyond this are clamped: Lua numbers are doubles, exact only up to 2^53.
const MAX_COUNT: u64 = (1 << 53) - 1;

/// How often the memory backend drops the counters of windows that have ended.
const PRUNE_EVERY_MS: i64 = 1000;

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request is admitted (and `cost` was charged).
    pub allowed: bool,
    /// The limit checked against.
    pub limit: u64,
    /// Units left in this window after this check.
    pub remaining: u64,
    /// When the window ends, in Unix milliseconds.
    pub reset_ms: i64,
    /// Time from the check to the end of the window.
    pub reset_in: Duration,
    /// Zero when admitted; otherwise the time until the window ends. NB: a request whose
    /// `cost` exceeds `limit` on its own is refused in every window; the caller may want to
    /// say so rather than ask to retry.
    pub retry_after: Duration,
}

impl RateDecision {
    /// `Retry-After` in whole seconds, rounded up (at least 1 when refused).
    pub fn retry_after_secs(&self) -> u64 {
        if self.allowed {
            return 0;
        }
        let ms = u64::try_from(self.retry_after.as_millis()).unwrap_or(u64::MAX);
        ms.div_ceil(1000).max(1)
    }
}

/// Which limit a [`RateDecision`] is about, for its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateKind {
    /// Requests per window: `x-ratelimit-*-requests`.
    Requests,
    /// Tokens per window: `x-ratelimit-*-tokens`.
    Tokens,
}

/// A rate-limit backend that could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    /// The Redis URL is not usable, or no Tokio runtime is running.
    #[error("rate limiter configuration: {0}")]
    Config(String),
    /// Redis failed or did not answer within [`REDIS_TIMEOUT`]. Callers fail open.
    #[error("rate limiter unavailable: {0}")]
    Unavailable(String),
}

/// The rate-limit counters of a gateway.
#[derive(Debug)]
pub enum RateLimiter {
    /// In this process: exact for one replica.
    Memory(MemoryRateLimiter),
    /// In Redis, shared by every replica.
    Redis(RedisRateLimiter),
}

impl RateLimiter {
    /// Counters in memory.
    pub fn memory() -> Self {
        Self::Memory(MemoryRateLimiter::default())
    }

    /// Counters in Redis at `url`, under keys starting with `prefix:rl:`. Connects lazily
    /// (and reconnects) on use, so a Redis that is down at start-up only makes checks fail
    /// open until it is back. Must be called within a Tokio runtime.
    pub fn redis(url: &str, prefix: &str) -> Result<Self, RateLimitError> {
        RedisRateLimiter::new(url, prefix, REDIS_TIMEOUT).map(Self::Redis)
    }

    /// Admits `cost` units against `limit` per `window` for `key` at `now_ms` (Unix ms), or
    /// refuses without charging anything. `cost` 0 only reads the counter.
    pub async fn check(
        &self,
        key: &str,
        limit: u64,
        cost: u64,
        window: Duration,
        now_ms: i64,
    ) -> Result<RateDecision, RateLimitError> {
        match self {
            Self::Memory(m) => Ok(m.check(key, limit, cost, window, now_ms)),
            Self::Redis(r) => r.check(key, limit, cost, window, now_ms).await,
        }
    }

    /// Adds `amount` (negative to refund) to the counter of the window that holds `now_ms`;
    /// the counter never goes below zero. Does nothing when that window has no counter
    /// (nothing was admitted in it, or it has ended and been dropped): pass the `now_ms` of
    /// the check being corrected.
    pub async fn add(
        &self,
        key: &str,
        amount: i64,
        window: Duration,
        now_ms: i64,
    ) -> Result<(), RateLimitError> {
        match self {
            Self::Memory(m) => {
                m.add(key, amount, window, now_ms);
                Ok(())
            }
            Self::Redis(r) => r.add(key, amount, window, now_ms).await,
        }
    }
}

/// OpenAI-style headers for one decision: `x-ratelimit-limit-{kind}`,
/// `x-ratelimit-remaining-{kind}` and `x-ratelimit-reset-{kind}` (time until the window
/// ends, as `850ms`, `12s`, `1m0s`, `1h0m0s`).
pub fn headers(decision: &RateDecision, kind: RateKind) -> Vec<(&'static str, String)> {
    let (limit, remaining, reset) = match kind {
        RateKind::Requests => {
            ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
        }
        RateKind::Tokens => {
            ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")
        }
    };
    vec![
        (limit, decision.limit.to_string()),
        (remaining, decision.remaining.to_string()),
        (reset, format_reset(decision.reset_in)),
    ]
}

/// Go-style durations as OpenAI sends them: milliseconds below a second, else whole
/// seconds rounded up with minutes and hours.
fn format_reset(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms.div_ceil(1000);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// The window holding `now_ms`: (window length in ms ≥ 1, start, end), all in Unix ms.
fn window_at(window: Duration, now_ms: i64) -> (i64, i64, i64) {
    let len = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
    let start = now_ms.saturating_sub(now_ms.rem_euclid(len));
    (len, start, start.saturating_add(len))
}

fn decision(allowed: bool, limit: u64, used: u64, end: i64, now_ms: i64) -> RateDecision {
    let reset_in = Duration::from_millis(u64::try_from(end.saturating_sub(now_ms)).unwrap_or(0));
    RateDecision {
        allowed,
        limit,
        remaining: limit.saturating_sub(used),
        reset_ms: end,
        reset_in,
        retry_after: if allowed { Duration::ZERO } else { reset_in },
    }
}

/// In-process counters keyed by (key, window length, window start).
#[derive(Debug, Default)]
pub struct MemoryRateLimiter {
    inner: Mutex<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    counters: HashMap<(String, i64, i64), u64>,
    last_prune_ms: i64,
}

impl MemoryRateLimiter {
    fn check(&self, key: &str, limit: u64, cost: u64, window: Duration, now_ms: i64) -> RateDecision {
        let (len, start, end) = window_at(window, now_ms);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if now_ms.saturating_sub(inner.last_prune_ms) >= PRUNE_EVERY_MS || now_ms < inner.last_prune_ms {
            // Only windows that have ended by `now_ms` are dropped.
            inner.counters.retain(|(_, len, start), _| start.saturating_add(*len) > now_ms);
            inner.last_prune_ms = now_ms;
        }
        let used = inner.counters.get(&(key.to_owned(), len, start)).copied().unwrap_or(0);
        if used.saturating_add(cost) > limit {
            return decision(false, limit, used, end, now_ms);
        }
        let used = used.saturating_add(cost);
        inner.counters.insert((key.to_owned(), len, start), used);
        decision(true, limit, used, end, now_ms)
    }

    fn add(&self, key: &str, amount: i64, window: Duration, now_ms: i64) {
        let (len, start, _) = window_at(window, now_ms);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(used) = inner.counters.get_mut(&(key.to_owned(), len, start)) {
            *used = used.saturating_add_signed(amount);
        }
    }

    /// The number of live counters (for tests and metrics).
    pub fn counters(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).counters.len()
    }
}

/// Admits `ARGV[1]` (cost) against `ARGV[2]` (limit); the key expires `ARGV[3]` ms from
/// now (the end of its window). Returns {admitted 0/1, count after}.
///
/// NB: it reads before it increments instead of incrementing and rolling back, so a refused
/// check writes nothing (and cannot overflow the counter).
const CHECK: &str = r"
local cost = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + cost > limit then
  return {0, used}
end
used = redis.call('INCRBY', KEYS[1], cost)
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {1, used}
";

/// Adds `ARGV[1]` to an existing counter, not below zero; an absent one stays absent (an
/// ended window must not come back without an expiry).
const ADD: &str = r"
local used = tonumber(redis.call('GET', KEYS[1]))
if not used then
  return 0
end
local amount = tonumber(ARGV[1])
if used + amount < 0 then
  amount = -used
end
return redis.call('INCRBY', KEYS[1], amount)
";

/// Counters in Redis: one Lua script per operation, keys
/// `{prefix}:rl:{key}:{window ms}:{window start}` expiring when their window ends.
pub struct RedisRateLimiter {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    check: Script,
    add: Script,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // NB: not the URL, which may hold a password.
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisRateLimiter {
    /// A limiter on Redis at `url`, giving up on any operation after `timeout` (at most
    /// [`REDIS_TIMEOUT`] is sensible on the request path). Connects lazily; must be called
    /// within a Tokio runtime.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, RateLimitError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RateLimitError::Config("no Tokio runtime to run the Redis connection on".into()));
        }
        let client = Client::open(url)
            .map_err(|e| RateLimitError::Config(format!("invalid Redis URL ({:?})", e.kind())))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| RateLimitError::Config(format!("Redis connection: {e}")))?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            timeout,
            check: Script::new(CHECK),
            add: Script::new(ADD),
        })
    }

    fn key(&self, key: &str, len: i64, start: i64) -> String {
        format!("{}:rl:{key}:{len}:{start}", self.prefix)
    }

    async fn check(
        &self,
        key: &str,
        limit: u64,
        cost: u64,
        window: Duration,
        now_ms: i64,
    ) -> Result<RateDecision, RateLimitError> {
        let (len, start, end) = window_at(window, now_ms);
        let ttl = end.saturating_sub(now_ms).max(1);
        let (limit_arg, cost_arg) = (limit.min(MAX_COUNT), cost.min(MAX_COUNT));
        let mut connection = self.connection.clone();
        let mut invocation = self.check.key(self.key(key, len, start));
        invocation.arg(cost_arg).arg(limit_arg).arg(ttl);
        let (admitted, used): (i64, i64) =
            tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| RateLimitError::Unavailable(format!("no answer within {:?}", self.timeout)))?
                .map_err(|e| RateLimitError::Unavailable(e.to_string()))?;
        Ok(decision(admitted == 1, limit, u64::try_from(used).unwrap_or(0), end, now_ms))
    }

    async fn add(&self, key: &str, amount: i64, window: Duration, now_ms: i64) -> Result<(), RateLimitError> {
        let (len, start, _) = window_at(window, now_ms);
        let amount = amount.clamp(-(MAX_COUNT as i64), MAX_COUNT as i64);
        let mut connection = self.connection.clone();
        let mut invocation = self.add.key(self.key(key, len, start));
        invocation.arg(amount);
        let _: i64 = tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection))
            .await
            .map_err(|_| RateLimitError::Unavailable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| RateLimitError::Unavailable(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    /// 2026-01-01T00:00:00Z, a minute boundary.
    const T0: i64 = 1_767_225_600_000;

    #[tokio::test]
    async fn admits_exactly_the_limit_per_window() {
        let rl = RateLimiter::memory();
        for i in 0..10 {
            let d = rl.check("p:alice:rpm", 10, 1, MIN, T0 + i * 1000).await.unwrap();
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 9 - i as u64);
            assert_eq!(d.reset_ms, T0 + 60_000);
        }
        let d = rl.check("p:alice:rpm", 10, 1, MIN, T0 + 15_000).await.unwrap();
        assert!(!d.allowed);
        assert_eq!((d.remaining, d.retry_after, d.retry_after_secs()), (0, Duration::from_secs(45), 45));
        // Another key has its own counter.
        assert!(rl.check("p:bob:rpm", 10, 1, MIN, T0 + 15_000).await.unwrap().allowed);
        // The last millisecond of the window is still in it; the next one starts afresh.
        assert!(!rl.check("p:alice:rpm", 10, 1, MIN, T0 + 59_999).await.unwrap().allowed);
        let d = rl.check("p:alice:rpm", 10, 1, MIN, T0 + 60_000).await.unwrap();
        assert!(d.allowed);
        assert_eq!((d.remaining, d.reset_ms), (9, T0 + 120_000));
    }

    #[tokio::test]
    async fn exact_under_concurrency() {
        let rl = Arc::new(RateLimiter::memory());
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let rl = Arc::clone(&rl);
                tokio::spawn(async move { rl.check("k", 50, 1, MIN, T0).await.unwrap().allowed })
            })
            .collect();
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap());
        }
        assert_eq!(admitted, 50);
    }

    #[tokio::test]
    async fn token_costs_and_corrections() {
        let rl = RateLimiter::memory();
        // An estimate of 600 tokens of a 1000-token minute...
        assert_eq!(rl.check("t", 1000, 600, MIN, T0).await.unwrap().remaining, 400);
        // ...a second one does not fit; nothing is charged for it.
        let refused = rl.check("t", 1000, 600, MIN, T0 + 1).await.unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 400);
        // The first used only 100: refund 500, and the second now fits.
        rl.add("t", -500, MIN, T0).await.unwrap();
        assert_eq!(rl.check("t", 1000, 600, MIN, T0 + 2).await.unwrap().remaining, 300);
        // It used 900 in fact: charge 300 more, the window is full.
        rl.add("t", 300, MIN, T0).await.unwrap();
        assert_eq!(rl.check("t", 1000, 0, MIN, T0 + 3).await.unwrap().remaining, 0);
        assert!(!rl.check("t", 1000, 1, MIN, T0 + 3).await.unwrap().allowed);
        // A refund larger than the counter stops at zero.
        rl.add("t", -1_000_000, MIN, T0).await.unwrap();
        assert_eq!(rl.check("t", 1000, 0, MIN, T0 + 4).await.unwrap().remaining, 1000);
        // A correction for a window with no counter creates none.
        rl.add("t", 5000, MIN, T0 + 60_000).await.unwrap();
        assert_eq!(rl.check("t", 1000, 0, MIN, T0 + 60_000).await.unwrap().remaining, 1000);
        // More than the limit on its own never fits.
        assert!(!rl.check("t", 1000, 1001, MIN, T0 + 60_000).await.unwrap().allowed);
    }

    #[tokio::test]
    async fn ended_windows_are_pruned() {
        let RateLimiter::Memory(m) = RateLimiter::memory() else { unreachable!() };
        for i in 0..100 {
            m.check(&format!("k{i}"), 10, 1, MIN, T0);
        }
        assert_eq!(m.counters(), 100);
        m.check("k0", 10, 1, MIN, T0 + 60_000);
        assert_eq!(m.counters(), 1);
    }

    #[tokio::test]
    async fn odd_inputs_do_not_panic() {
        let rl = RateLimiter::memory();
        for (limit, cost, window, now) in [
            (0, 1, MIN, T0),
            (u64::MAX, u64::MAX, Duration::ZERO, i64::MIN),
            (1, 0, Duration::MAX, i64::MAX),
            (5, 1, Duration::from_micros(10), -1),
            (5, 1, MIN, i64::MIN + 5),
            (5, 1, Duration::from_millis(7), i64::MIN),
        ] {
            let d = rl.check("x", limit, cost, window, now).await.unwrap();
            let _ = headers(&d, RateKind::Tokens);
            rl.add("x", i64::MIN, window, now).await.unwrap();
            rl.add("x", i64::MAX, window, now).await.unwrap();
        }
        assert!(!rl.check("zero", 0, 1, MIN, T0).await.unwrap().allowed);
        assert!(rl.check("zero", 0, 0, MIN, T0).await.unwrap().allowed);
    }

    #[test]
    fn headers_are_openai_style() {
        let d = decision(true, 60, 12, T0 + 60_000, T0 + 48_000);
        assert_eq!(
            headers(&d, RateKind::Requests),
            vec![
                ("x-ratelimit-limit-requests", "60".to_owned()),
                ("x-ratelimit-remaining-requests", "48".to_owned()),
                ("x-ratelimit-reset-requests", "12s".to_owned()),
            ]
        );
        let d = decision(false, 1000, 1000, T0 + 60_000, T0 + 59_150);
        let h = headers(&d, RateKind::Tokens);
        assert_eq!(h[0], ("x-ratelimit-limit-tokens", "1000".to_owned()));
        assert_eq!(h[1], ("x-ratelimit-remaining-tokens", "0".to_owned()));
        assert_eq!(h[2], ("x-ratelimit-reset-tokens", "850ms".to_owned()));
        assert_eq!(d.retry_after_secs(), 1);
        assert_eq!(format_reset(Duration::from_secs(60)), "1m0s");
        assert_eq!(format_reset(Duration::from_millis(61_001)), "1m2s");
        assert_eq!(format_reset(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_reset(Duration::ZERO), "0ms");
    }

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        assert_eq!(window_at(MIN, T0 + 1), (60_000, T0, T0 + 60_000));
        assert_eq!(window_at(MIN, -1), (60_000, -60_000, 0));
        assert_eq!(window_at(Duration::ZERO, 7), (1, 7, 8));
    }

    #[test]
    fn redis_limiter_needs_a_runtime_and_a_valid_url() {
        assert!(matches!(RateLimiter::redis("redis://127.0.0.1:1", "t"), Err(RateLimitError::Config(_))));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            assert!(matches!(RateLimiter::redis("not a url", "t"), Err(RateLimitError::Config(_))));
            assert!(RateLimiter::redis("redis://127.0.0.1:1", "t").is_ok());
        });
    }
}
