//! Timeouts of one upstream call, per model, and the remaining budget of its total
//! deadline.

use std::time::{Duration, Instant};

/// How long each phase of a call may take. The total covers every attempt, retry waits and
/// fallbacks included, and the whole stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS connect to the upstream. Default 10 s.
    pub connect: Duration,
    /// From sending the request to the first byte of the answer (status and headers, then
    /// the first body chunk). Default 60 s: long prompts take a while to prefill.
    pub first_byte: Duration,
    /// Longest silence between two chunks of a streamed answer. Default 30 s.
    pub idle_between_chunks: Duration,
    /// The whole request, from its arrival to its last byte. Default 600 s.
    pub total: Duration,
}

impl Default for Timeouts {
    /// Connect 10 s, first byte 60 s, 30 s between stream chunks, 600 s in all.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(60),
            idle_between_chunks: Duration::from_secs(30),
            total: Duration::from_secs(600),
        }
    }
}

impl Timeouts {
    /// What is left of the total deadline of a request that started at `started`.
    pub fn remaining(&self, started: Instant, now: Instant) -> Duration {
        self.total.saturating_sub(now.saturating_duration_since(started))
    }

    /// Whether the total deadline has passed.
    pub fn expired(&self, started: Instant, now: Instant) -> bool {
        self.remaining(started, now).is_zero()
    }

    /// The timeout for one phase (`self.connect`, `self.first_byte`, …) starting now: the
    /// phase's own limit, or what is left of the total if that is less. A caller wraps each
    /// phase's future in `tokio::time::timeout` with it.
    pub fn phase(&self, limit: Duration, started: Instant, now: Instant) -> Duration {
        limit.min(self.remaining(started, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn remaining_budget_of_the_total() {
        let t = Timeouts::default();
        let start = Instant::now();
        assert_eq!(t.remaining(start, start), 600 * SEC);
        assert_eq!(t.remaining(start, start + 100 * SEC), 500 * SEC);
        assert_eq!(t.remaining(start, start + 700 * SEC), Duration::ZERO);
        assert!(!t.expired(start, start + 599 * SEC));
        assert!(t.expired(start, start + 600 * SEC));
        // A clock that appears to go back gives the whole budget, not a panic.
        assert_eq!(t.remaining(start + SEC, start), 600 * SEC);
    }

    #[test]
    fn phases_are_capped_by_the_total() {
        let t = Timeouts { total: 90 * SEC, ..Timeouts::default() };
        let start = Instant::now();
        assert_eq!(t.phase(t.first_byte, start, start), 60 * SEC);
        assert_eq!(t.phase(t.first_byte, start, start + 50 * SEC), 40 * SEC);
        assert_eq!(t.phase(t.idle_between_chunks, start, start + 85 * SEC), 5 * SEC);
        assert_eq!(t.phase(t.connect, start, start + 100 * SEC), Duration::ZERO);
    }
}
