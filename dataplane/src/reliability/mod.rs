//! Reliability: keeping agents working while providers fail, throttle and stall, without
//! ever letting a request hang or queue without bound.
//!
//! Every piece is a pure decision (or a thin, thread-safe state holder) that takes the time
//! from its caller, so the request path drives it and tests control the clock. Where each
//! one sits on the request path (`http/proxy/`, ARCHITECTURE §5):
//!
//! 1. Once the body is read (within the body timeouts, `http::BodyTimeouts`):
//!    [`overload::InFlight::try_enter`] — beyond the cap, 503 with `Retry-After` at once —
//!    and [`overload::PerKeyInFlight::try_enter`] — beyond the key's cap, 429. The guards
//!    live until the last byte of the response (moved into the streaming body). On
//!    SIGTERM, [`overload::InFlight::close`] then [`overload::InFlight::wait_idle`] under
//!    the shutdown deadline.
//! 2. After authentication: [`ratelimit::RateLimiter::check`] for the principal's requests
//!    per minute (cost 1) and tokens per minute (cost = estimated tokens); refused → 429
//!    `rate_limited` with `Retry-After` ([`ratelimit::RateDecision::retry_after_secs`]) and
//!    [`ratelimit::headers`]. `Unavailable` → admit (rate limits fail open).
//! 3. Per attempt, after budget reserve: choose the IP token with [`balance::pick`] over the
//!    targets serving the model (`available` from [`breaker::CircuitBreaker::is_available`],
//!    `outstanding` from [`balance::Outstanding`]); check the IP token's upstream limits
//!    ([`ratelimit`] again) so Tollgate throttles before the provider does; take a
//!    [`breaker::Permit`] with [`breaker::CircuitBreaker::acquire`] (from
//!    [`breaker::Breakers::get`]); call with [`timeouts::Timeouts`] (connect, first byte,
//!    then idle between chunks, all capped by the remaining total).
//! 4. After the attempt: [`breaker::CircuitBreaker::record`] with its
//!    [`breaker::Outcome`]; on failure [`retry::classify_status`] gives the
//!    [`retry::ErrorClass`], [`retry::RetryPolicy::retry_delay`] says whether and when to
//!    retry, and [`fallback::FallbackPolicy::next`] which model to try once retries are
//!    exhausted or pointless. Only while no byte has reached the client.
//! 5. At settle: when the answer used more tokens than its estimate,
//!    [`ratelimit::RateLimiter::add`] adds actual − estimate to the key's and the serving IP
//!    token's tokens-per-minute windows (never a refund: providers count `max_tokens` the
//!    same way). Budgets settle once, whatever the number of attempts.

pub mod balance;
pub mod breaker;
pub mod fallback;
pub mod overload;
pub mod ratelimit;
pub mod retry;
pub mod timeouts;

pub use balance::{Candidate, Outstanding, OutstandingGuard, pick};
pub use breaker::{BreakerConfig, Breakers, CircuitBreaker, CircuitState, Open, Outcome, Permit};
pub use fallback::FallbackPolicy;
pub use overload::{InFlight, InFlightGuard, PerKeyGuard, PerKeyInFlight};
pub use ratelimit::{RateDecision, RateKind, RateLimitError, RateLimiter, headers};
pub use retry::{ErrorClass, RetryPolicy, classify_status};
pub use timeouts::Timeouts;

#[cfg(test)]
mod tests {
    //! The pieces together, the way the request path will drive them, on a simulated clock.

    use std::time::{Duration, Instant};

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    /// One request at `clock` (which it moves on): pick a target, take a permit, "call" it
    /// (50 ms), report, and retry on another target after the backoff (the targets tried are
    /// left out while any other is available). Returns the target that answered, if any.
    fn request(
        breakers: &[CircuitBreaker],
        healthy: &[bool],
        calls: &mut [u32],
        clock: &mut Instant,
        rng: &mut StdRng,
    ) -> Option<usize> {
        let policy = RetryPolicy::default();
        let mut tried = vec![false; breakers.len()];
        for attempt in 0..policy.max_attempts {
            let mut candidates: Vec<Candidate> = breakers
                .iter()
                .map(|b| Candidate { weight: 1, outstanding: 0, available: b.is_available(*clock) })
                .collect();
            if candidates.iter().zip(&tried).any(|(c, t)| c.available && !t) {
                for (c, t) in candidates.iter_mut().zip(&tried) {
                    c.available &= !t;
                }
            }
            let target = pick(&candidates, rng)?;
            tried[target] = true;
            let Ok(permit) = breakers[target].acquire(*clock) else { continue };
            calls[target] += 1;
            *clock += Duration::from_millis(50);
            if healthy[target] {
                breakers[target].record(
                    permit,
                    Outcome::Success { latency: Duration::from_millis(50) },
                    *clock,
                );
                return Some(target);
            }
            breakers[target].record(permit, Outcome::Failure, *clock);
            *clock +=
                policy.retry_delay(attempt, classify_status(503, ""), None, Duration::from_secs(60), rng)?;
        }
        None
    }

    #[test]
    fn a_failing_target_is_cut_off_and_found_again() {
        let config = BreakerConfig { failure_rate: 0.0, ..BreakerConfig::default() };
        let breakers = [CircuitBreaker::new(config.clone()), CircuitBreaker::new(config)];
        let mut healthy = [true, false];
        let mut calls = [0, 0];
        let mut rng = StdRng::seed_from_u64(5);
        let start = Instant::now();
        let mut clock = start;
        while clock - start < Duration::from_secs(4) {
            assert_eq!(request(&breakers, &healthy, &mut calls, &mut clock, &mut rng), Some(0));
        }
        assert_eq!(calls[1], 5, "exactly the five failures that trip it, then nothing");
        let CircuitState::Open { until } = breakers[1].state(clock) else { panic!("not open") };

        // It recovers; the first probe after the open period finds out and closes it.
        healthy[1] = true;
        let closed = loop {
            assert!(request(&breakers, &healthy, &mut calls, &mut clock, &mut rng).is_some());
            if breakers[1].state(clock) == CircuitState::Closed {
                break clock;
            }
            assert!(clock < until + Duration::from_secs(2), "not recovered");
        };
        assert!(closed >= until && closed - until < Duration::from_secs(1), "{:?}", closed - until);
        assert_eq!(calls[1], 6, "one probe closed it");
    }

    #[test]
    fn fallback_follows_a_non_retryable_class() {
        let policy = FallbackPolicy {
            chain: vec!["small-context".into(), "big-context".into()],
            on: vec![ErrorClass::ContextLengthExceeded],
        };
        let class = classify_status(400, r#"{"error":{"code":"context_length_exceeded"}}"#);
        assert!(!class.retryable());
        assert_eq!(policy.next(&["small-context".into()], class), Some("big-context"));
    }
}
