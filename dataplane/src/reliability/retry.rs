//! Retries: which upstream errors are worth another attempt, and how long to wait first.
//!
//! NB: a request may be retried (or sent to a fallback) only while nothing of its answer
//! has been sent to the client. Once the first byte is out, a failure ends the stream with
//! an error event instead. The caller enforces this; nothing here can see it.
//!
//! NB: a retried request is one request for budgets: the reservation is made once, and
//! settled once with the usage of the attempt that answered.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The largest `Retry-After` that is waited for; a longer one means "don't retry".
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How many attempts, and the backoff between them. Defaults: 3 attempts, 200 ms base,
/// 10 s maximum backoff, `Retry-After` honoured up to 60 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (3 = one call and two retries). 0 is taken
    /// as 1.
    pub max_attempts: u32,
    /// The backoff ceiling before the first retry; it doubles for each further one.
    pub base: Duration,
    /// The highest backoff ceiling.
    pub max_backoff: Duration,
    /// The longest `Retry-After` worth waiting for; beyond it the error goes to the caller
    /// (or to a fallback). Default [`MAX_RETRY_AFTER`].
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 200 ms base, 10 s maximum backoff, `Retry-After` up to 60 s.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_retry_after: MAX_RETRY_AFTER,
        }
    }
}

impl RetryPolicy {
    /// The wait before retrying after attempt number `attempt` (0 for the first call)
    /// failed: uniform in `[0, min(max_backoff, base · 2^attempt)]` ("full jitter"), but
    /// never less than `retry_after` (itself capped at `max_retry_after`).
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max_backoff);
        let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let jittered = Duration::from_nanos(rng.random_range(0..=ceiling_nanos));
        match retry_after {
            Some(after) => jittered.max(after.min(self.max_retry_after)),
            None => jittered,
        }
    }

    /// Whether to retry after attempt number `attempt` (0 for the first call) failed with
    /// `class`, and after how long. `None` when the error is not retryable, the attempts are
    /// used up, the upstream's `Retry-After` is longer than `max_retry_after`, or the wait
    /// would not fit in `remaining` (the rest of the request's total deadline, see
    /// [`Timeouts::remaining`](super::timeouts::Timeouts::remaining)).
    pub fn retry_delay(
        &self,
        attempt: u32,
        class: ErrorClass,
        retry_after: Option<Duration>,
        remaining: Duration,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if !class.retryable() || attempt.saturating_add(1) >= self.max_attempts.max(1) {
            return None;
        }
        if retry_after.is_some_and(|after| after > self.max_retry_after) {
            return None;
        }
        let delay = self.backoff(attempt, retry_after, rng);
        (delay < remaining).then_some(delay)
    }
}

/// What kind of failure an upstream call ended in; decides retries and fallbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorClass {
    /// 5xx (other than 504), connection refused or reset, an exhausted upstream quota.
    Unavailable,
    /// No answer in time: 408, 504, or one of our own timeouts.
    Timeout,
    /// 429 from the upstream (or our own upstream limit for that IP token).
    RateLimited,
    /// The prompt does not fit the model's context window.
    ContextLengthExceeded,
    /// The provider's content filter refused the prompt.
    ContentFiltered,
    /// Any other 4xx: the request itself is wrong; no other attempt would fare better.
    Client,
}

impl From<tollgate_crds::config::FallbackClass> for ErrorClass {
    /// The failure a configured `fallbackOn` class names. NB: exhaustive, so a class added
    /// to the configuration does not compile until it is mapped here.
    fn from(class: tollgate_crds::config::FallbackClass) -> Self {
        use tollgate_crds::config::FallbackClass as F;
        match class {
            F::Unavailable => Self::Unavailable,
            F::Timeout => Self::Timeout,
            F::RateLimited => Self::RateLimited,
            F::ContextLengthExceeded => Self::ContextLengthExceeded,
            F::ContentFiltered => Self::ContentFiltered,
        }
    }
}

impl ErrorClass {
    /// Whether another attempt at the same model may succeed.
    pub fn retryable(self) -> bool {
        matches!(self, Self::Unavailable | Self::Timeout | Self::RateLimited)
    }

    /// A bounded metric and log label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate_limited",
            Self::ContextLengthExceeded => "context_length_exceeded",
            Self::ContentFiltered => "content_filtered",
            Self::Client => "client",
        }
    }
}

/// Classifies an upstream error answer by its status and (a prefix of) its body.
///
/// Recognised hints, case-insensitive, on 4xx answers: OpenAI's `context_length_exceeded`
/// and "maximum context length", Anthropic's "prompt is too long"; `content_filter` and
/// `content_policy` (OpenAI, Azure). A 429 saying `insufficient_quota` is
/// [`ErrorClass::Unavailable`]: the IP token is out of credit, which waiting will not fix
/// but another target may. A status that is not an error at all is `Unavailable` too: the
/// upstream misbehaved.
pub fn classify_status(status: u16, body_hint: &str) -> ErrorClass {
    const HINT_BYTES: usize = 64 * 1024;
    let hint = &body_hint.as_bytes()[..body_hint.len().min(HINT_BYTES)];
    let has = |needle: &str| contains_ignore_ascii_case(hint, needle.as_bytes());
    match status {
        408 | 504 => ErrorClass::Timeout,
        429 if has("insufficient_quota") => ErrorClass::Unavailable,
        429 => ErrorClass::RateLimited,
        400..=499
            if has("context_length_exceeded")
                || has("maximum context length")
                || has("prompt is too long")
                || has("context window") =>
        {
            ErrorClass::ContextLengthExceeded
        }
        400..=499 if has("content_filter") || has("content_policy") => ErrorClass::ContentFiltered,
        400..=499 => ErrorClass::Client,
        _ => ErrorClass::Unavailable,
    }
}

fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_stays_within_the_exponential_ceiling() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for (attempt, ceiling) in [(0, 200), (1, 400), (2, 800), (5, 6400), (6, 10_000), (40, 10_000)] {
            let mut max = Duration::ZERO;
            for _ in 0..2000 {
                let d = policy.backoff(attempt, None, &mut rng);
                assert!(d <= ceiling * MS, "attempt {attempt}: {d:?}");
                max = max.max(d);
            }
            // Full jitter reaches close to the ceiling.
            assert!(max >= ceiling * MS * 95 / 100, "attempt {attempt}: max {max:?}");
        }
    }

    #[test]
    fn jitter_is_uniform_over_the_range() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(42);
        let n = 20_000;
        let mut deciles = [0u32; 10];
        let mut sum = Duration::ZERO;
        for _ in 0..n {
            let d = policy.backoff(2, None, &mut rng);
            sum += d;
            let decile = (d.as_nanos() * 10 / (800 * MS).as_nanos()).min(9) as usize;
            deciles[decile] += 1;
        }
        let mean = sum / n;
        assert!(mean > 380 * MS && mean < 420 * MS, "mean {mean:?}");
        for count in deciles {
            // 2000 expected per decile; a generous band for a seeded check.
            assert!((1800..=2200).contains(&count), "{deciles:?}");
        }
    }

    #[test]
    fn retry_after_is_a_floor_and_is_capped() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..500 {
            let d = policy.backoff(0, Some(Duration::from_secs(3)), &mut rng);
            assert_eq!(d, Duration::from_secs(3), "3 s is above the 200 ms ceiling");
            let d = policy.backoff(6, Some(Duration::from_secs(1)), &mut rng);
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(10));
            let d = policy.backoff(0, Some(Duration::from_secs(3600)), &mut rng);
            assert_eq!(d, MAX_RETRY_AFTER);
        }
    }

    #[test]
    fn retry_delay_decides_when_to_stop() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(3);
        let plenty = Duration::from_secs(600);
        assert!(policy.retry_delay(0, ErrorClass::Unavailable, None, plenty, &mut rng).is_some());
        assert!(policy.retry_delay(1, ErrorClass::Timeout, None, plenty, &mut rng).is_some());
        // Three attempts in all: no retry after the third.
        assert!(policy.retry_delay(2, ErrorClass::Unavailable, None, plenty, &mut rng).is_none());
        assert!(policy.retry_delay(0, ErrorClass::Client, None, plenty, &mut rng).is_none());
        assert!(policy.retry_delay(0, ErrorClass::ContextLengthExceeded, None, plenty, &mut rng).is_none());
        assert!(policy.retry_delay(0, ErrorClass::ContentFiltered, None, plenty, &mut rng).is_none());
        let after = Some(Duration::from_secs(5));
        assert_eq!(
            policy.retry_delay(0, ErrorClass::RateLimited, after, plenty, &mut rng),
            Some(Duration::from_secs(5))
        );
        // Too long a Retry-After, or a wait past the total deadline: give up now.
        let long = Some(Duration::from_secs(61));
        assert!(policy.retry_delay(0, ErrorClass::RateLimited, long, plenty, &mut rng).is_none());
        let short = Duration::from_secs(4);
        assert!(policy.retry_delay(0, ErrorClass::RateLimited, after, short, &mut rng).is_none());
        assert!(policy.retry_delay(0, ErrorClass::Unavailable, None, Duration::ZERO, &mut rng).is_none());
        let once = RetryPolicy { max_attempts: 0, ..RetryPolicy::default() };
        assert!(once.retry_delay(0, ErrorClass::Unavailable, None, plenty, &mut rng).is_none());
    }

    #[test]
    fn extreme_policies_do_not_panic() {
        let policy = RetryPolicy {
            max_attempts: u32::MAX,
            base: Duration::MAX,
            max_backoff: Duration::MAX,
            max_retry_after: Duration::MAX,
        };
        let mut rng = StdRng::seed_from_u64(9);
        for attempt in [0, 1, 31, 32, 63, 64, u32::MAX] {
            let _ = policy.backoff(attempt, Some(Duration::MAX), &mut rng);
            let _ = policy.retry_delay(attempt, ErrorClass::Unavailable, None, Duration::MAX, &mut rng);
        }
        let zero = RetryPolicy { base: Duration::ZERO, ..RetryPolicy::default() };
        assert_eq!(zero.backoff(3, None, &mut rng), Duration::ZERO);
    }

    #[test]
    fn classifies_provider_errors() {
        let cases = [
            (500, "", ErrorClass::Unavailable),
            (502, "bad gateway", ErrorClass::Unavailable),
            (503, "", ErrorClass::Unavailable),
            (529, r#"{"type":"error","error":{"type":"overloaded_error"}}"#, ErrorClass::Unavailable),
            (504, "", ErrorClass::Timeout),
            (408, "", ErrorClass::Timeout),
            (429, r#"{"error":{"code":"rate_limit_exceeded"}}"#, ErrorClass::RateLimited),
            (429, r#"{"error":{"type":"insufficient_quota"}}"#, ErrorClass::Unavailable),
            (
                400,
                r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","code":"context_length_exceeded"}}"#,
                ErrorClass::ContextLengthExceeded,
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
                ErrorClass::ContextLengthExceeded,
            ),
            (413, "Prompt Is Too Long", ErrorClass::ContextLengthExceeded),
            (400, r#"{"error":{"code":"content_filter"}}"#, ErrorClass::ContentFiltered),
            (400, r#"{"error":{"code":"content_policy_violation"}}"#, ErrorClass::ContentFiltered),
            (400, r#"{"error":{"message":"invalid temperature"}}"#, ErrorClass::Client),
            (401, "", ErrorClass::Client),
            (404, "model not found", ErrorClass::Client),
            (422, "", ErrorClass::Client),
            (200, "", ErrorClass::Unavailable),
            (0, "", ErrorClass::Unavailable),
            (u16::MAX, "", ErrorClass::Unavailable),
            // A hint on a 5xx does not make it a client problem.
            (500, "context_length_exceeded", ErrorClass::Unavailable),
        ];
        for (status, body, class) in cases {
            assert_eq!(classify_status(status, body), class, "{status} {body}");
        }
        assert!(ErrorClass::RateLimited.retryable());
        assert!(!ErrorClass::Client.retryable());
        // A multi-byte body cut at the hint limit is fine.
        let long = "é".repeat(70_000);
        assert_eq!(classify_status(400, &long), ErrorClass::Client);
    }

    #[test]
    fn error_classes_read_from_config() {
        let classes: Vec<ErrorClass> = serde_json::from_str(
            r#"["unavailable","rateLimited","contextLengthExceeded","contentFiltered"]"#,
        )
        .unwrap();
        assert_eq!(classes[1], ErrorClass::RateLimited);
        assert_eq!(ErrorClass::ContextLengthExceeded.as_str(), "context_length_exceeded");
    }
}
