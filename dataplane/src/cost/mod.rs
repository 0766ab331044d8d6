//! The cost engine: what a call may cost before it runs, what it did cost after, and the
//! counters that keep budgets from being overspent.
//!
//! Data flow on the request path:
//!
//! 1. [`prices::PriceTable::lookup`] (or an IP token's override) gives the model's
//!    [`PricesMicros`](tollgate_crds::config::PricesMicros); no price under a hard budget
//!    means the caller refuses.
//! 2. [`tokens::estimate_input_tokens`] and [`tokens::max_output_tokens`] bound the call's
//!    size; [`tokens::worst_case_micros`] turns that into the amount to reserve.
//! 3. [`period::window_at`] places "now" in each budget's period window, giving one
//!    [`BudgetKey`] per budget of the subject's chain (the subject and every ancestor).
//! 4. [`CounterStore::reserve`] holds the worst case on every budget of the chain at once,
//!    or refuses naming the first hard budget without room.
//! 5. After the call, [`prices::cost_micros`] prices the provider's reported usage and
//!    [`CounterStore::settle`] charges exactly that and releases the rest, once.
//!    Reservations that are never settled are released at their deadline.
//! 6. [`crossed_thresholds`] and [`CounterStore::claim_alert`] decide which alert fires,
//!    once per budget, window and threshold.
//!
//! Counters live in memory (one replica) or in Redis (many replicas; one Lua script per
//! operation). They are keyed by (budget, window start), so a new period starts from zero
//! without a reset job. Money is integer micro-USD throughout. See `cost/README.md` for the
//! design and why the estimates are conservative.

mod counters;
mod memory;
pub mod period;
pub mod prices;
mod redis_store;
pub mod tokens;

pub use counters::{Admission, BudgetKey, CounterState, CounterStore, crossed_thresholds};
pub use memory::MemoryCounters;
pub use period::{Period, Window, window_at};
pub use prices::{PriceTable, cost_micros};
pub use redis_store::RedisCounters;
pub use tokens::{estimate_input_tokens, max_output_tokens, worst_case_micros};

/// Everything that can go wrong in the cost engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    /// A budget period that cannot be read.
    #[error("invalid period {input:?}: {reason}")]
    InvalidPeriod {
        /// The text as written.
        input: String,
        /// What is wrong with it and what would be accepted.
        reason: String,
    },
    /// A price table that cannot be read.
    #[error("price table: {0}")]
    PriceTable(String),
    /// A counter store that cannot be configured (a bad Redis URL).
    #[error("counter store configuration: {0}")]
    Config(String),
    /// The counter store did not answer in time or failed. Callers fail closed (503).
    #[error("budget counters unavailable: {0}")]
    Unavailable(String),
}
