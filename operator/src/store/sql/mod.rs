//! The control plane's tables in the gateway's database (SQLite or PostgreSQL; migration
//! `0005_control_plane.sql`). Queries are written once with `$N` placeholders, which both
//! backends accept.
//!
//! One file per table group, each adding its methods to [`SqlStore`]: `resources`
//! (Tollgate resources and provider keys), `directory` (users, teams, preferences), `audit`
//! (the audit log), `usage` (the ledger and its hourly and daily rollups) and `jobs`
//! (scheduler bookkeeping).

use serde_json::Value;
use tollgate_dataplane::store::Store;

/// Runs the same code against whichever pool the store holds.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            ::tollgate_dataplane::store::Store::Sqlite($pool) => $body,
            ::tollgate_dataplane::store::Store::Postgres($pool) => $body,
        }
    };
}

mod audit;
mod directory;
mod jobs;
mod resources;
mod usage;

pub use audit::{AuditEntry, AuditFilter};
pub use directory::{Preferences, Team, User};
pub use jobs::JobStatus;
pub use usage::{DAY_MS, GroupBy, HOUR_MS, UsageFilter, UsageTotals, Visible};

/// The control plane's state in the database.
#[derive(Debug, Clone)]
pub struct SqlStore {
    store: Store,
}

fn doc_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

impl SqlStore {
    /// The control plane's tables in `store`'s database (migrated by `Store::connect`).
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The underlying database.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
