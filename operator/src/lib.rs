//! Tollgate's control plane. In standalone mode (`tollgate up`) it runs in the same process
//! as the gateway: the admin API below manages virtual keys and reads usage. In Kubernetes
//! ([`serve`]) the replica holding the leader lease also runs the controllers, which
//! compile resources into the gateways' configuration; the scheduler's jobs run on the one
//! replica that holds the database's advisory lock.
//!
//! Data flow: admin request → [`api::router`] (authenticated by virtual key, role-checked)
//! → the gateway's key service and the store. In Kubernetes: a resource →
//! [`controllers`] (pure desired-state functions) → the children the controllers apply.

pub mod api;
pub mod config;
pub mod controllers;
pub mod dashboard;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod resource_status;
pub mod scheduler;
pub mod serve;
pub mod store;

pub use api::{ControlPlane, router};
