//! The circuit breaker for one (IP token, model): stops calling an upstream that keeps
//! failing, and finds out with a few probe calls when it works again.
//!
//! States and transitions (all driven by the `now` the caller passes, never a clock of its
//! own):
//!
//! ```text
//!            N consecutive failures, or failure share ≥ rate over the window
//!  Closed ───────────────────────────────────────────────────────────────▶ Open { until }
//!    ▲                                                                       │ until passes
//!    │ `half_open_probes` probes succeeded                                   ▼
//!    └──────────────────────────────────────────────────────────────── HalfOpen
//!                      a probe failed, was slow, or missed its deadline ──▶ Open (longer)
//! ```
//!
//! The open period doubles with each trip that follows another without a recovery in
//! between (`open_base · 2^k`, capped at `open_max`) and starts again at `open_base` once
//! the breaker has closed.
//!
//! A 429 is not a failure: it starts a *cooldown* (no calls until `Retry-After` has passed)
//! in any state, without touching the failure counts. [`CircuitBreaker::state`] reports a
//! cooldown as [`CircuitState::Open`], because no call goes through.
//!
//! NB: reports are matched to the state they were issued in (a generation number in the
//! [`Permit`]). A call that started before a trip and finishes while the breaker is open or
//! half-open is not counted: only probes decide a half-open breaker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Number of buckets the sliding window is made of. The window slides by one bucket
/// (`window / 10`), so it covers between 90 % and 100 % of `window`.
const BUCKETS: usize = 10;

/// How a breaker decides. Defaults are listed on each field and in [`Default`].
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Trip after this many failures in a row. Default 5. 0 disables this rule.
    pub consecutive_failures: u32,
    /// Trip when at least this share of the calls in the window failed (0 < rate ≤ 1).
    /// Default 0.5. A value outside (0, 1] or NaN disables this rule.
    pub failure_rate: f64,
    /// The sliding window of the failure-rate rule. Default 30 s.
    pub window: Duration,
    /// The failure-rate rule applies only once the window holds this many calls. Default 20.
    pub min_requests: u32,
    /// How long the first trip keeps the breaker open. Default 5 s.
    pub open_base: Duration,
    /// The longest open period, however many trips in a row. Default 5 min.
    pub open_max: Duration,
    /// How many probe calls a half-open breaker lets through, and how many of them must
    /// succeed to close it. Default 1. 0 is taken as 1.
    pub half_open_probes: u32,
    /// A probe not reported within this time counts as failed. Default 30 s.
    pub probe_timeout: Duration,
    /// A success slower than this counts as a failure. Default `None` (no such rule).
    pub slow_call: Option<Duration>,
    /// The cooldown after a 429 without `Retry-After`. Default 1 s.
    pub cooldown_default: Duration,
}

impl Default for BreakerConfig {
    /// 5 consecutive failures, or ≥ 50 % failures over 30 s once 20 calls were seen; open
    /// 5 s, doubling per repeated trip up to 5 min; 1 probe with a 30 s deadline; no slow-call
    /// rule; 1 s cooldown after a 429 without `Retry-After`.
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: Duration::from_secs(30),
            min_requests: 20,
            open_base: Duration::from_secs(5),
            open_max: Duration::from_secs(300),
            half_open_probes: 1,
            probe_timeout: Duration::from_secs(30),
            slow_call: None,
            cooldown_default: Duration::from_secs(1),
        }
    }
}

/// What a breaker reports for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// No call goes through before `until` (a trip, or a 429 cooldown).
    Open {
        /// When calls (or probes) may go through again.
        until: Instant,
    },
    /// Only probe calls go through.
    HalfOpen,
}

impl CircuitState {
    /// A bounded metric label: `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// The refusal of [`CircuitBreaker::acquire`]: no call may go to this upstream now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open; retry in {retry_in:?}")]
pub struct Open {
    /// When the breaker may let a call through again (a hint; another target may be free
    /// sooner).
    pub retry_in: Duration,
    /// The upstream is in a 429 cooldown rather than failing: when every target is, the
    /// caller answers 429 `rate_limited` (with `Retry-After`) rather than 503.
    pub rate_limited: bool,
}

/// How a call went, as the breaker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered (2xx). Slower than `slow_call` counts as a failure.
    Success {
        /// Time the call took (to the last byte, or to the first for streams: the caller's
        /// choice, as long as it is consistent with `slow_call`).
        latency: Duration,
    },
    /// 5xx, timeout, connection refused or reset: counts toward a trip.
    Failure,
    /// 429: a cooldown honouring `Retry-After` (capped at `open_max`); not a failure.
    RateLimited {
        /// The upstream's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Any other 4xx, or a call abandoned by the client: says nothing about the upstream.
    Ignored,
}

/// Leave to make one call, to be handed back with [`CircuitBreaker::record`]. Cheap (two
/// integers); dropping it unreported is fine for ordinary calls, and for probes the deadline
/// takes care of it.
#[derive(Debug)]
#[must_use = "report the call's outcome with CircuitBreaker::record"]
pub struct Permit {
    generation: u64,
    /// `Some(id)` for a half-open probe.
    probe: Option<u64>,
}

impl Permit {
    /// Whether this call is a half-open probe (for logs and metrics).
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }
}

/// A circuit breaker for one (IP token, model). Thread-safe; every method takes `&self`
/// and holds a small mutex for a few comparisons.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Bumped on every state change; reports from an earlier generation are ignored.
    generation: u64,
    /// Trips since the breaker last closed; sets the open period.
    trips: u32,
    consecutive: u32,
    window: Window,
    /// No calls before this (a 429 cooldown), whatever the state.
    cooldown_until: Option<Instant>,
    next_probe_id: u64,
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen(HalfOpen),
}

#[derive(Debug, Default)]
struct HalfOpen {
    /// Probes let through and not yet reported: (id, deadline).
    in_flight: Vec<(u64, Instant)>,
    succeeded: u32,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        let window = Window::new(config.window);
        Self {
            config,
            inner: Mutex::new(Inner {
                state: State::Closed,
                generation: 0,
                trips: 0,
                consecutive: 0,
                window,
                cooldown_until: None,
                next_probe_id: 0,
            }),
        }
    }

    /// The configuration this breaker runs with.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Leave to call the upstream now, or the time until the breaker may allow one.
    ///
    /// Closed: always (unless cooling down after a 429). Open: never, and without any side
    /// effect. Half-open: up to `half_open_probes` probes at a time; a probe past its
    /// deadline counts as failed, which re-opens the breaker for a longer period (so the
    /// next call after a hung probe is refused, not let through as another probe).
    pub fn acquire(&self, now: Instant) -> Result<Permit, Open> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        self.advance(inner, now);
        if let Some(until) = inner.cooldown_until {
            return Err(Open { retry_in: until.saturating_duration_since(now), rate_limited: true });
        }
        let generation = inner.generation;
        let probes = self.config.half_open_probes.max(1);
        let probe_timeout = self.config.probe_timeout;
        let next_id = inner.next_probe_id;
        match &mut inner.state {
            State::Closed => Ok(Permit { generation, probe: None }),
            State::Open { until } => {
                Err(Open { retry_in: until.saturating_duration_since(now), rate_limited: false })
            }
            State::HalfOpen(half) => {
                let issued = u32::try_from(half.in_flight.len()).unwrap_or(u32::MAX);
                if issued.saturating_add(half.succeeded) >= probes {
                    let retry_in = half
                        .in_flight
                        .iter()
                        .map(|(_, deadline)| deadline.saturating_duration_since(now))
                        .min()
                        .unwrap_or(probe_timeout);
                    return Err(Open { retry_in, rate_limited: false });
                }
                let deadline = now.checked_add(probe_timeout).unwrap_or(now);
                half.in_flight.push((next_id, deadline));
                inner.next_probe_id = next_id.wrapping_add(1);
                Ok(Permit { generation, probe: Some(next_id) })
            }
        }
    }

    /// Reports how the call made with `permit` went.
    pub fn record(&self, permit: Permit, outcome: Outcome, now: Instant) {
        let mut inner = self.lock();
        self.advance(&mut inner, now);
        let outcome = match outcome {
            Outcome::Success { latency } if self.config.slow_call.is_some_and(|slow| latency > slow) => {
                Outcome::Failure
            }
            other => other,
        };
        if let Outcome::RateLimited { retry_after } = outcome {
            // A cooldown applies whatever the generation: the upstream said so just now.
            let wait = retry_after.unwrap_or(self.config.cooldown_default).min(self.config.open_max);
            let until = now.checked_add(wait).unwrap_or(now);
            inner.cooldown_until = Some(inner.cooldown_until.map_or(until, |current| current.max(until)));
        }
        if permit.generation != inner.generation {
            return;
        }
        match (&mut inner.state, permit.probe) {
            (State::Closed, None) => match outcome {
                Outcome::Success { .. } => {
                    inner.consecutive = 0;
                    inner.window.add(now, false);
                    self.trip_if_due(&mut inner, now);
                }
                Outcome::Failure => {
                    inner.consecutive = inner.consecutive.saturating_add(1);
                    inner.window.add(now, true);
                    self.trip_if_due(&mut inner, now);
                }
                Outcome::RateLimited { .. } | Outcome::Ignored => {}
            },
            (State::HalfOpen(half), Some(id)) => {
                let Some(at) = half.in_flight.iter().position(|(probe, _)| *probe == id) else {
                    return;
                };
                half.in_flight.swap_remove(at);
                match outcome {
                    Outcome::Success { .. } => {
                        half.succeeded = half.succeeded.saturating_add(1);
                        if half.succeeded >= self.config.half_open_probes.max(1) {
                            Self::close(&mut inner);
                        }
                    }
                    Outcome::Failure => self.open(&mut inner, now),
                    // The slot is free again for another probe.
                    Outcome::RateLimited { .. } | Outcome::Ignored => {}
                }
            }
            // A permit of the current generation always matches the state it was issued in.
            _ => {}
        }
    }

    /// The state now, for metrics (time-driven transitions are applied first).
    pub fn state(&self, now: Instant) -> CircuitState {
        let mut inner = self.lock();
        self.advance(&mut inner, now);
        if let Some(until) = inner.cooldown_until {
            let until = match inner.state {
                State::Open { until: open_until } => open_until.max(until),
                _ => until,
            };
            return CircuitState::Open { until };
        }
        match inner.state {
            State::Closed => CircuitState::Closed,
            State::Open { until } => CircuitState::Open { until },
            State::HalfOpen(_) => CircuitState::HalfOpen,
        }
    }

    /// Whether a call could be let through now (not open, not cooling down), without
    /// taking a permit: for [`Candidate::available`](super::balance::Candidate).
    pub fn is_available(&self, now: Instant) -> bool {
        !matches!(self.state(now), CircuitState::Open { .. })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // NB: nothing panics while the lock is held, but a poisoned lock must not take the
        // gateway down with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies the transitions that only need time to pass.
    fn advance(&self, inner: &mut Inner, now: Instant) {
        if inner.cooldown_until.is_some_and(|until| now >= until) {
            inner.cooldown_until = None;
        }
        if let State::Open { until } = inner.state
            && now >= until
        {
            inner.state = State::HalfOpen(HalfOpen::default());
            inner.generation = inner.generation.wrapping_add(1);
        }
        if let State::HalfOpen(half) = &inner.state
            && half.in_flight.iter().any(|(_, deadline)| now >= *deadline)
        {
            self.open(inner, now);
        }
    }

    fn trip_if_due(&self, inner: &mut Inner, now: Instant) {
        let by_count =
            self.config.consecutive_failures > 0 && inner.consecutive >= self.config.consecutive_failures;
        let rate = self.config.failure_rate;
        let by_rate = rate > 0.0 && rate <= 1.0 && {
            let (total, failed) = inner.window.counts(now);
            total >= u64::from(self.config.min_requests.max(1)) && failed as f64 >= rate * total as f64
        };
        if by_count || by_rate {
            self.open(inner, now);
        }
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        let factor = 1u32.checked_shl(inner.trips).unwrap_or(u32::MAX);
        let period = self.config.open_base.saturating_mul(factor).min(self.config.open_max);
        inner.state = State::Open { until: now.checked_add(period).unwrap_or(now) };
        inner.trips = inner.trips.saturating_add(1);
        inner.generation = inner.generation.wrapping_add(1);
        inner.consecutive = 0;
        inner.window.clear();
    }

    fn close(inner: &mut Inner) {
        inner.state = State::Closed;
        inner.trips = 0;
        inner.generation = inner.generation.wrapping_add(1);
        inner.consecutive = 0;
        inner.window.clear();
    }
}

/// Outcome counts over a sliding window, in [`BUCKETS`] buckets.
#[derive(Debug)]
struct Window {
    bucket_nanos: u128,
    /// Bucket numbers are counted from the first `now` seen.
    origin: Option<Instant>,
    buckets: [Bucket; BUCKETS],
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    total: u32,
    failed: u32,
}

impl Window {
    fn new(window: Duration) -> Self {
        let bucket_nanos = (window.as_nanos() / BUCKETS as u128).max(1);
        Self { bucket_nanos, origin: None, buckets: [Bucket::default(); BUCKETS] }
    }

    fn epoch(&mut self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        let elapsed = now.saturating_duration_since(origin).as_nanos() / self.bucket_nanos;
        // Epoch 0 is kept for empty buckets.
        u64::try_from(elapsed).unwrap_or(u64::MAX - 1).saturating_add(1)
    }

    fn add(&mut self, now: Instant, failed: bool) {
        let epoch = self.epoch(now);
        let bucket = &mut self.buckets[(epoch % BUCKETS as u64) as usize];
        if bucket.epoch != epoch {
            *bucket = Bucket { epoch, total: 0, failed: 0 };
        }
        bucket.total = bucket.total.saturating_add(1);
        if failed {
            bucket.failed = bucket.failed.saturating_add(1);
        }
    }

    /// (calls, failures) in the window ending now.
    fn counts(&mut self, now: Instant) -> (u64, u64) {
        let epoch = self.epoch(now);
        self.buckets
            .iter()
            .filter(|b| b.epoch != 0 && b.epoch <= epoch && epoch - b.epoch < BUCKETS as u64)
            .fold((0, 0), |(total, failed), b| (total + u64::from(b.total), failed + u64::from(b.failed)))
    }

    fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

/// The breakers of a gateway, one per (IP token, model), created on first use and kept
/// across configuration reloads (a reload must not close an open breaker).
#[derive(Debug, Default)]
pub struct Breakers {
    config: BreakerConfig,
    by_token: Mutex<HashMap<String, HashMap<String, Arc<CircuitBreaker>>>>,
}

impl Breakers {
    /// An empty set whose breakers will use `config`.
    pub fn new(config: BreakerConfig) -> Self {
        Self { config, by_token: Mutex::new(HashMap::new()) }
    }

    /// The breaker of (`ip_token`, `model`), created closed if there is none yet.
    pub fn get(&self, ip_token: &str, model: &str) -> Arc<CircuitBreaker> {
        let mut map = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(breaker) = map.get(ip_token).and_then(|models| models.get(model)) {
            return Arc::clone(breaker);
        }
        let breaker = Arc::new(CircuitBreaker::new(self.config.clone()));
        map.entry(ip_token.to_owned()).or_default().insert(model.to_owned(), Arc::clone(&breaker));
        breaker
    }

    /// Every breaker's state, as (IP token, model, state), for the metrics scrape.
    pub fn states(&self, now: Instant) -> Vec<(String, String, CircuitState)> {
        let breakers: Vec<(String, String, Arc<CircuitBreaker>)> = {
            let map = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
            map.iter()
                .flat_map(|(token, models)| {
                    models.iter().map(move |(model, b)| (token.clone(), model.clone(), Arc::clone(b)))
                })
                .collect()
        };
        breakers.into_iter().map(|(token, model, b)| (token, model, b.state(now))).collect()
    }

    /// Drops the breakers of IP tokens that are no longer configured.
    pub fn retain_tokens(&self, keep: impl Fn(&str) -> bool) {
        let mut map = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|token, _| keep(token));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SEC: Duration = Duration::from_secs(1);

    fn ok(latency: Duration) -> Outcome {
        Outcome::Success { latency }
    }

    fn call(b: &CircuitBreaker, outcome: Outcome, now: Instant) {
        let permit = b.acquire(now).unwrap();
        b.record(permit, outcome, now);
    }

    fn no_rate() -> BreakerConfig {
        BreakerConfig { failure_rate: 0.0, ..BreakerConfig::default() }
    }

    #[test]
    fn trips_exactly_at_the_consecutive_threshold() {
        let b = CircuitBreaker::new(no_rate());
        let t0 = Instant::now();
        for _ in 0..4 {
            call(&b, Outcome::Failure, t0);
        }
        assert_eq!(b.state(t0), CircuitState::Closed);
        // A success in between resets the run.
        call(&b, ok(MS), t0);
        for _ in 0..4 {
            call(&b, Outcome::Failure, t0);
        }
        assert_eq!(b.state(t0), CircuitState::Closed);
        call(&b, Outcome::Failure, t0);
        assert_eq!(b.state(t0), CircuitState::Open { until: t0 + 5 * SEC });
    }

    #[test]
    fn trips_exactly_at_the_failure_rate_once_min_requests_is_reached() {
        let b = CircuitBreaker::new(BreakerConfig { consecutive_failures: 0, ..BreakerConfig::default() });
        let t0 = Instant::now();
        // 18 calls, 9 failed: 50 % but below min_requests.
        for i in 0..18 {
            call(&b, if i % 2 == 0 { Outcome::Failure } else { ok(MS) }, t0);
        }
        assert_eq!(b.state(t0), CircuitState::Closed);
        call(&b, ok(MS), t0); // 19 calls, 9 failed
        assert_eq!(b.state(t0), CircuitState::Closed);
        call(&b, Outcome::Failure, t0); // 20 calls, 10 failed: 50 %
        assert!(matches!(b.state(t0), CircuitState::Open { .. }));
    }

    #[test]
    fn failure_rate_below_threshold_does_not_trip_and_old_calls_slide_out() {
        let b = CircuitBreaker::new(BreakerConfig { consecutive_failures: 0, ..BreakerConfig::default() });
        let t0 = Instant::now();
        for _ in 0..12 {
            call(&b, ok(MS), t0);
        }
        for _ in 0..11 {
            call(&b, Outcome::Failure, t0);
        }
        // 23 calls, 11 failed: 47.8 % (and 40 %, 43 %, 45 % on the way there).
        assert_eq!(b.state(t0), CircuitState::Closed);
        // 31 s later the old calls are out of the window: 9 failures of 9 calls is below
        // min_requests...
        let t1 = t0 + 31 * SEC;
        for _ in 0..9 {
            call(&b, Outcome::Failure, t1);
        }
        assert_eq!(b.state(t1), CircuitState::Closed);
        // ...and 20 calls with 11 failures is over it.
        for _ in 0..9 {
            call(&b, ok(MS), t1);
        }
        call(&b, Outcome::Failure, t1);
        call(&b, Outcome::Failure, t1);
        assert!(matches!(b.state(t1), CircuitState::Open { .. }));
    }

    #[test]
    fn no_permit_while_open_and_acquire_has_no_side_effect() {
        let b = CircuitBreaker::new(no_rate());
        let t0 = Instant::now();
        for _ in 0..5 {
            call(&b, Outcome::Failure, t0);
        }
        for i in 0..1000 {
            let err = b.acquire(t0 + i * MS).unwrap_err();
            assert_eq!(err, Open { retry_in: 5 * SEC - i * MS, rate_limited: false });
        }
        assert_eq!(b.state(t0 + SEC), CircuitState::Open { until: t0 + 5 * SEC });
        // Still exactly one probe once the open period is over.
        let probe = b.acquire(t0 + 5 * SEC).unwrap();
        assert!(probe.is_probe());
        assert!(b.acquire(t0 + 5 * SEC).is_err());
    }

    #[test]
    fn recovers_through_half_open() {
        let b = CircuitBreaker::new(no_rate());
        let t0 = Instant::now();
        for _ in 0..5 {
            call(&b, Outcome::Failure, t0);
        }
        let t1 = t0 + 5 * SEC;
        assert_eq!(b.state(t1), CircuitState::HalfOpen);
        let probe = b.acquire(t1).unwrap();
        assert_eq!(b.acquire(t1).unwrap_err().retry_in, 30 * SEC, "one probe at a time");
        b.record(probe, ok(MS), t1 + 100 * MS);
        assert_eq!(b.state(t1 + 100 * MS), CircuitState::Closed);
        // Closed again with fresh counts: it takes five new failures to trip.
        for _ in 0..4 {
            call(&b, Outcome::Failure, t1 + SEC);
        }
        assert_eq!(b.state(t1 + SEC), CircuitState::Closed);
        call(&b, Outcome::Failure, t1 + SEC);
        // And the backoff started from the base again.
        assert_eq!(b.state(t1 + SEC), CircuitState::Open { until: t1 + 6 * SEC });
    }

    #[test]
    fn a_failed_probe_reopens_with_exponential_backoff_up_to_the_cap() {
        let b = CircuitBreaker::new(no_rate());
        let mut now = Instant::now();
        for _ in 0..5 {
            call(&b, Outcome::Failure, now);
        }
        let mut expected = 5 * SEC;
        for _ in 0..10 {
            let CircuitState::Open { until } = b.state(now) else { panic!("not open") };
            assert_eq!(until - now, expected);
            now = until;
            let probe = b.acquire(now).unwrap();
            b.record(probe, Outcome::Failure, now);
            expected = (expected * 2).min(300 * SEC);
        }
        assert_eq!(expected, 300 * SEC);
    }

    #[test]
    fn a_hung_probe_reopens_the_breaker_at_its_deadline() {
        let b = CircuitBreaker::new(no_rate());
        let t0 = Instant::now();
        for _ in 0..5 {
            call(&b, Outcome::Failure, t0);
        }
        let t1 = t0 + 5 * SEC;
        let hung = b.acquire(t1).unwrap();
        assert_eq!(b.state(t1 + 29 * SEC), CircuitState::HalfOpen);
        assert!(b.acquire(t1 + 29 * SEC).is_err());
        // At the deadline the probe counts as failed: open again, for twice as long.
        let t2 = t1 + 30 * SEC;
        assert_eq!(b.acquire(t2).unwrap_err().retry_in, 10 * SEC);
        assert_eq!(b.state(t2), CircuitState::Open { until: t2 + 10 * SEC });
        // The late report of the hung probe changes nothing.
        b.record(hung, ok(MS), t2 + SEC);
        assert_eq!(b.state(t2 + SEC), CircuitState::Open { until: t2 + 10 * SEC });
        // The next probe goes through after the longer period and can close it.
        let t3 = t2 + 10 * SEC;
        let probe = b.acquire(t3).unwrap();
        b.record(probe, ok(MS), t3);
        assert_eq!(b.state(t3), CircuitState::Closed);
    }

    #[test]
    fn several_probes_must_all_succeed() {
        let b = CircuitBreaker::new(BreakerConfig { half_open_probes: 3, ..no_rate() });
        let t0 = Instant::now();
        for _ in 0..5 {
            call(&b, Outcome::Failure, t0);
        }
        let t1 = t0 + 5 * SEC;
        let probes: Vec<Permit> = (0..3).map(|_| b.acquire(t1).unwrap()).collect();
        assert!(b.acquire(t1).is_err());
        let mut probes = probes.into_iter();
        b.record(probes.next().unwrap(), ok(MS), t1);
        // A 4xx frees its slot without deciding anything.
        b.record(probes.next().unwrap(), Outcome::Ignored, t1);
        assert_eq!(b.state(t1), CircuitState::HalfOpen);
        let again = b.acquire(t1).unwrap();
        assert!(b.acquire(t1).is_err(), "one success plus two in flight is the limit");
        b.record(probes.next().unwrap(), ok(MS), t1);
        assert_eq!(b.state(t1), CircuitState::HalfOpen);
        b.record(again, ok(MS), t1);
        assert_eq!(b.state(t1), CircuitState::Closed);
    }

    #[test]
    fn stale_reports_from_before_a_trip_are_ignored() {
        let b = CircuitBreaker::new(no_rate());
        let t0 = Instant::now();
        let slow: Vec<Permit> = (0..3).map(|_| b.acquire(t0).unwrap()).collect();
        for _ in 0..5 {
            call(&b, Outcome::Failure, t0);
        }
        let t1 = t0 + 5 * SEC;
        let probe = b.acquire(t1).unwrap();
        for permit in slow {
            b.record(permit, ok(MS), t1);
        }
        assert_eq!(b.state(t1), CircuitState::HalfOpen, "only the probe decides");
        b.record(probe, Outcome::Failure, t1);
        assert!(matches!(b.state(t1), CircuitState::Open { .. }));
    }

    #[test]
    fn a_429_cools_down_for_retry_after_without_counting_toward_a_trip() {
        let b = CircuitBreaker::new(no_rate());
        let t0 = Instant::now();
        for _ in 0..4 {
            call(&b, Outcome::Failure, t0);
        }
        call(&b, Outcome::RateLimited { retry_after: Some(7 * SEC) }, t0);
        assert_eq!(b.state(t0), CircuitState::Open { until: t0 + 7 * SEC });
        assert_eq!(b.acquire(t0 + 2 * SEC).unwrap_err(), Open { retry_in: 5 * SEC, rate_limited: true });
        assert!(b.acquire(t0 + 7 * SEC - MS).is_err());
        let t1 = t0 + 7 * SEC;
        assert_eq!(b.state(t1), CircuitState::Closed);
        // The four failures before still count; the 429 was not the fifth.
        call(&b, Outcome::Failure, t1);
        assert!(matches!(b.state(t1), CircuitState::Open { .. }));
    }

    #[test]
    fn cooldown_without_retry_after_uses_the_default_and_a_huge_one_is_capped() {
        let b = CircuitBreaker::new(BreakerConfig::default());
        let t0 = Instant::now();
        call(&b, Outcome::RateLimited { retry_after: None }, t0);
        assert_eq!(b.state(t0), CircuitState::Open { until: t0 + SEC });
        let t1 = t0 + SEC;
        call(&b, Outcome::RateLimited { retry_after: Some(Duration::from_secs(86_400)) }, t1);
        assert_eq!(b.state(t1), CircuitState::Open { until: t1 + 300 * SEC });
    }

    #[test]
    fn a_later_shorter_retry_after_does_not_shorten_the_cooldown() {
        let b = CircuitBreaker::new(BreakerConfig::default());
        let t0 = Instant::now();
        let (first, second) = (b.acquire(t0).unwrap(), b.acquire(t0).unwrap());
        b.record(first, Outcome::RateLimited { retry_after: Some(10 * SEC) }, t0);
        b.record(second, Outcome::RateLimited { retry_after: Some(2 * SEC) }, t0 + SEC);
        assert_eq!(b.state(t0 + SEC), CircuitState::Open { until: t0 + 10 * SEC });
        assert!(b.acquire(t0 + 9 * SEC).is_err());
        assert!(b.acquire(t0 + 10 * SEC).is_ok());
    }

    #[test]
    fn a_429_to_a_probe_frees_the_slot_and_cools_down() {
        let b = CircuitBreaker::new(no_rate());
        let t0 = Instant::now();
        for _ in 0..5 {
            call(&b, Outcome::Failure, t0);
        }
        let t1 = t0 + 5 * SEC;
        let probe = b.acquire(t1).unwrap();
        b.record(probe, Outcome::RateLimited { retry_after: Some(2 * SEC) }, t1);
        assert_eq!(b.acquire(t1 + SEC).unwrap_err().retry_in, SEC);
        let probe = b.acquire(t1 + 2 * SEC).unwrap();
        assert!(probe.is_probe());
        b.record(probe, ok(MS), t1 + 2 * SEC);
        assert_eq!(b.state(t1 + 2 * SEC), CircuitState::Closed);
    }

    #[test]
    fn slow_successes_count_as_failures() {
        let b = CircuitBreaker::new(BreakerConfig { slow_call: Some(2 * SEC), ..no_rate() });
        let t0 = Instant::now();
        for _ in 0..4 {
            call(&b, ok(3 * SEC), t0);
        }
        call(&b, ok(2 * SEC), t0); // exactly at the limit is not slow
        for _ in 0..4 {
            call(&b, ok(3 * SEC), t0);
        }
        assert_eq!(b.state(t0), CircuitState::Closed);
        call(&b, ok(3 * SEC), t0);
        assert!(matches!(b.state(t0), CircuitState::Open { .. }));
        // A slow probe fails too.
        let t1 = t0 + 5 * SEC;
        let probe = b.acquire(t1).unwrap();
        b.record(probe, ok(10 * SEC), t1);
        assert_eq!(b.state(t1), CircuitState::Open { until: t1 + 10 * SEC });
    }

    #[test]
    fn client_errors_are_not_failures() {
        let b = CircuitBreaker::new(BreakerConfig { min_requests: 1, ..BreakerConfig::default() });
        let t0 = Instant::now();
        for _ in 0..100 {
            call(&b, Outcome::Ignored, t0);
        }
        assert_eq!(b.state(t0), CircuitState::Closed);
    }

    #[test]
    fn odd_configurations_do_not_panic() {
        let t0 = Instant::now();
        for config in [
            BreakerConfig {
                consecutive_failures: 0,
                failure_rate: f64::NAN,
                window: Duration::ZERO,
                min_requests: 0,
                open_base: Duration::MAX,
                open_max: Duration::MAX,
                half_open_probes: 0,
                probe_timeout: Duration::MAX,
                slow_call: Some(Duration::ZERO),
                cooldown_default: Duration::MAX,
            },
            BreakerConfig {
                failure_rate: 2.0,
                window: Duration::MAX,
                open_base: Duration::ZERO,
                ..no_rate()
            },
        ] {
            let b = CircuitBreaker::new(config);
            for i in 0..50u32 {
                let now = t0 + i * MS;
                if let Ok(p) = b.acquire(now) {
                    let outcome = match i % 4 {
                        0 => Outcome::Failure,
                        1 => ok(MS),
                        2 => Outcome::RateLimited { retry_after: Some(Duration::MAX) },
                        _ => Outcome::Ignored,
                    };
                    b.record(p, outcome, now);
                }
                let _ = b.state(now);
                // Time going backwards is tolerated too.
                let _ = b.acquire(t0);
            }
        }
    }

    #[test]
    fn breakers_are_per_token_and_model_and_survive_lookups() {
        let set = Breakers::new(no_rate());
        let t0 = Instant::now();
        let a = set.get("tok-a", "m");
        for _ in 0..5 {
            call(&a, Outcome::Failure, t0);
        }
        assert!(!set.get("tok-a", "m").is_available(t0));
        assert!(set.get("tok-a", "other").is_available(t0));
        assert!(set.get("tok-b", "m").is_available(t0));
        let mut states = set.states(t0);
        states.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
        assert_eq!(states.len(), 3);
        assert_eq!(states[0].2.as_str(), "open");
        set.retain_tokens(|t| t != "tok-a");
        assert!(set.get("tok-a", "m").is_available(t0), "a dropped token starts afresh");
    }

    #[test]
    fn thread_safe_under_concurrent_use() {
        let b = Arc::new(CircuitBreaker::new(BreakerConfig { consecutive_failures: 1000, ..no_rate() }));
        let t0 = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        call(&b, Outcome::Failure, t0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(matches!(b.state(t0), CircuitState::Open { .. }), "exactly 1000 failures trip it");
    }
}
