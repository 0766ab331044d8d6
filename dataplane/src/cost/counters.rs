//! Budget counters: reserve before a call, settle after, across a chain of budgets.
//!
//! [`CounterStore`] is one enum over the two backends, matched exhaustively, so adding a
//! backend is a compile error until every operation handles it. Both keep the same model:
//!
//! - a counter per (budget id, window start) holding `spent` and `reserved` micro-USD;
//! - a reservation per id holding its amount, its deadline and the counters it was made on
//!   (so settling after a period rolled over charges the window it was reserved in);
//! - admission is atomic over the whole chain: a hard budget refuses when
//!   `spent + reserved + amount > limit`, and then nothing is reserved anywhere;
//! - reservations past their deadline are released by `expire`, and also by `reserve`
//!   itself, so correctness never depends on a background job.

use super::CostError;
use super::memory::MemoryCounters;
use super::period::Window;
use super::redis_store::RedisCounters;

/// One budget of a chain, in the window that applies now.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BudgetKey {
    /// The budget's stable id (its resource name).
    pub id: String,
    /// The period window the charge falls in.
    pub window: Window,
    /// The budget's limit in micro-USD.
    pub limit_micros: u64,
    /// Whether the limit refuses requests (hard) or only alerts (soft).
    pub hard: bool,
}

/// The answer to a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Reserved on every budget of the chain.
    Admitted,
    /// A hard budget has no room; nothing was reserved.
    Refused {
        /// The first hard budget of the chain without room.
        budget_id: String,
        /// What is left of it: `limit - spent - reserved`, at least zero.
        remaining_micros: u64,
        /// When its window ends (the budget starts again from zero).
        window_end_ms: i64,
    },
}

/// A budget-window's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterState {
    /// Charged by settled calls (or set by a rebuild).
    pub spent_micros: u64,
    /// Held by calls in flight.
    pub reserved_micros: u64,
}

/// Where budget counters live.
#[derive(Debug, Clone)]
pub enum CounterStore {
    /// In this process (standalone, one replica).
    Memory(MemoryCounters),
    /// In Redis, shared by every replica.
    Redis(RedisCounters),
}

impl CounterStore {
    /// Counters in this process.
    pub fn memory() -> Self {
        CounterStore::Memory(MemoryCounters::new())
    }

    /// Redis when a URL and key prefix are given (counters shared by every replica),
    /// memory otherwise.
    pub async fn from_options(redis: Option<&(String, String)>) -> Result<Self, CostError> {
        match redis {
            Some((url, prefix)) => Self::redis(url, prefix).await,
            None => Ok(Self::memory()),
        }
    }

    /// Counters in Redis at `url` (`redis://host:port/db`), every key starting with
    /// `key_prefix`. Each call gives up after one second with [`CostError::Unavailable`].
    /// Fails with `Unavailable` if Redis does not answer now; once built, the connection is
    /// re-established by itself whenever Redis comes back.
    pub async fn redis(url: &str, key_prefix: &str) -> Result<Self, CostError> {
        Ok(CounterStore::Redis(
            RedisCounters::connect(url, key_prefix, RedisCounters::DEFAULT_TIMEOUT).await?,
        ))
    }

    /// Short name of the backend (`memory`, `redis`), for logs and status.
    pub fn backend(&self) -> &'static str {
        match self {
            CounterStore::Memory(_) => "memory",
            CounterStore::Redis(_) => "redis",
        }
    }

    /// Reserve `amount_micros` on every budget in `chain` (the subject's budget and all its
    /// ancestors) atomically: if any hard budget would have `spent + reserved + amount >
    /// limit`, nothing is reserved and [`Admission::Refused`] names the first such budget.
    /// Soft budgets are reserved but never refuse. The reservation remembers its chain (with
    /// windows) and amount, and is released at `deadline_ms` if never settled. Idempotent per
    /// `reservation_id` while the reservation is live: repeating it (a retry) answers
    /// `Admitted` again without counting twice. Expired reservations of any budget are
    /// released first.
    pub async fn reserve(
        &self,
        reservation_id: &str,
        chain: &[BudgetKey],
        amount_micros: u64,
        deadline_ms: i64,
        now_ms: i64,
    ) -> Result<Admission, CostError> {
        match self {
            CounterStore::Memory(m) => {
                Ok(m.reserve(reservation_id, chain, amount_micros, deadline_ms, now_ms))
            }
            CounterStore::Redis(r) => {
                r.reserve(reservation_id, chain, amount_micros, deadline_ms, now_ms).await
            }
        }
    }

    /// Settle exactly once: release the reserved amount and add `actual_micros` to spent on
    /// every budget of the reservation's chain, in the windows it was reserved in (even if
    /// the period has rolled over since). Returns `false`, changing nothing, if the
    /// reservation is unknown, already settled, or was released as expired.
    ///
    /// NB: a reservation past its deadline that no sweep has released yet still settles;
    /// its amount was held until now, so the limits still hold.
    pub async fn settle(&self, reservation_id: &str, actual_micros: u64) -> Result<bool, CostError> {
        match self {
            CounterStore::Memory(m) => Ok(m.settle(reservation_id, actual_micros)),
            CounterStore::Redis(r) => r.settle(reservation_id, actual_micros).await,
        }
    }

    /// Release every reservation whose deadline is before `now_ms`. Returns how many.
    pub async fn expire(&self, now_ms: i64) -> Result<u64, CostError> {
        match self {
            CounterStore::Memory(m) => Ok(m.expire(now_ms)),
            CounterStore::Redis(r) => r.expire(now_ms).await,
        }
    }

    /// The counters of one budget-window (zero if never touched).
    pub async fn state(&self, key: &BudgetKey) -> Result<CounterState, CostError> {
        match self {
            CounterStore::Memory(m) => Ok(m.state(key)),
            CounterStore::Redis(r) => r.state(key).await,
        }
    }

    /// The counters of one budget-window as of `now_ms`: reservations whose deadline has
    /// passed (a replica killed mid-request never settles its own) are released first, so
    /// `reserved` counts only calls that may still be in flight. Status reads use this.
    pub async fn state_at(&self, key: &BudgetKey, now_ms: i64) -> Result<CounterState, CostError> {
        match self {
            CounterStore::Memory(m) => Ok(m.state_at(key, now_ms)),
            CounterStore::Redis(r) => r.state_at(key, now_ms).await,
        }
    }

    /// Rebuild: set a budget-window's spent from the ledger (a SET, never an increment, so
    /// repeating a rebuild cannot double count). Reservations are left as they are.
    pub async fn set_spent(&self, key: &BudgetKey, spent_micros: u64) -> Result<(), CostError> {
        match self {
            CounterStore::Memory(m) => {
                m.set_spent(key, spent_micros);
                Ok(())
            }
            CounterStore::Redis(r) => r.set_spent(key, spent_micros).await,
        }
    }

    /// True the first time an alert for (budget, window, `threshold_percent`) is claimed,
    /// false afterwards: across replicas for Redis. Any percentage (`u8`, `u32`) is accepted.
    pub async fn claim_alert(
        &self,
        key: &BudgetKey,
        threshold_percent: impl Into<u32>,
    ) -> Result<bool, CostError> {
        let threshold_percent = threshold_percent.into();
        match self {
            CounterStore::Memory(m) => Ok(m.claim_alert(key, threshold_percent)),
            CounterStore::Redis(r) => r.claim_alert(key, threshold_percent).await,
        }
    }

    /// True the first time an overrun alert (a settle charged more than was reserved) is
    /// claimed for this budget-window, false afterwards: across replicas for Redis.
    pub async fn claim_overrun_alert(&self, key: &BudgetKey) -> Result<bool, CostError> {
        match self {
            CounterStore::Memory(m) => Ok(m.claim_overrun_alert(key)),
            CounterStore::Redis(r) => r.claim_overrun_alert(key).await,
        }
    }
}

/// The thresholds (percent of `limit_micros`) that spending crossed going from
/// `before_micros` to `after_micros`: those with `before < t% × limit <= after`, ascending,
/// each once. A zero limit counts as crossed at every threshold by the first spend.
/// Thresholds may be any unsigned integer type (`u8`, `u32`, ...), and above 100.
pub fn crossed_thresholds<T>(
    before_micros: u64,
    after_micros: u64,
    limit_micros: u64,
    thresholds: &[T],
) -> Vec<T>
where
    T: Copy + Ord + Into<u64>,
{
    let mut crossed: Vec<T> = thresholds
        .iter()
        .copied()
        .filter(|&t| {
            let t: u64 = t.into();
            if limit_micros == 0 {
                return before_micros == 0 && after_micros > 0 && t > 0;
            }
            // before/limit < t/100 <= after/limit, in integers.
            let mark = u128::from(t) * u128::from(limit_micros);
            u128::from(before_micros) * 100 < mark && mark <= u128::from(after_micros) * 100
        })
        .collect();
    crossed.sort_unstable();
    crossed.dedup();
    crossed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_fire_when_crossed() {
        let t = [50u8, 80, 100];
        assert_eq!(crossed_thresholds(0, 10, 100, &t), Vec::<u8>::new());
        assert_eq!(crossed_thresholds(0, 50, 100, &t), vec![50]);
        assert_eq!(crossed_thresholds(49, 81, 100, &t), vec![50, 80]);
        assert_eq!(crossed_thresholds(50, 81, 100, &t), vec![80], "50% was reached before");
        assert_eq!(crossed_thresholds(10, 500, 100, &t), vec![50, 80, 100]);
        assert_eq!(crossed_thresholds(100, 500, 100, &t), Vec::<u8>::new());
        assert_eq!(crossed_thresholds(60, 40, 100, &t), Vec::<u8>::new(), "going down crosses nothing");
    }

    #[test]
    fn thresholds_are_exact_with_odd_limits() {
        // 80% of 3 micro-USD is 2.4: 2 has not reached it, 3 has.
        assert_eq!(crossed_thresholds(0, 2, 3, &[80u8]), Vec::<u8>::new());
        assert_eq!(crossed_thresholds(2, 3, 3, &[80u8]), vec![80]);
        // Unsorted and repeated thresholds, and thresholds above 100 for soft budgets.
        assert_eq!(crossed_thresholds(0, 300, 100, &[150u8, 50, 50, 250]), vec![50, 150, 250]);
        // Huge values do not overflow.
        assert_eq!(crossed_thresholds(0, u64::MAX, u64::MAX, &[100u8, 255]), vec![100]);
        // Wider integer types work the same (e.g. thresholds up to 1000% as u32).
        let wide: Vec<u32> = vec![500, 1000, 300];
        assert_eq!(crossed_thresholds(0, 600, 100, &wide), vec![300, 500]);
    }

    #[test]
    fn zero_limit_fires_once_on_first_spend() {
        assert_eq!(crossed_thresholds(0, 1, 0, &[50u8, 100]), vec![50, 100]);
        assert_eq!(crossed_thresholds(1, 2, 0, &[50u8, 100]), Vec::<u8>::new());
        assert_eq!(crossed_thresholds(0, 0, 0, &[50u8, 100]), Vec::<u8>::new());
    }
}
