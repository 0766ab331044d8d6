#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test set-up: a step that fails panics with what it was doing, failing the test loudly"
)]
//! Test set-up shared by Tollgate's integration tests and benchmarks (a dev-dependency
//! only; never published):
//!
//! - [`ScratchDb`]: a database of a test's own, SQLite in a temporary folder or a fresh
//!   PostgreSQL database (server from `TOLLGATE_TEST_POSTGRES_URL`), removed on drop.
//! - [`TestGateway`]: an in-process data plane over a store, with resources from YAML
//!   applied, served on `127.0.0.1:0` when a test needs a socket, and keys issued on it.

mod db;
mod gateway;

pub use db::{ScratchDb, postgres_admin_url};
pub use gateway::{TestGateway, TestGatewayBuilder, agent, config, developer};
