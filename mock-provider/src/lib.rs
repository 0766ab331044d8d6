//! Tollgate's mock LLM provider: a deterministic OpenAI- and Anthropic-compatible server
//! with fault injection, used by the gateway's tests and benchmarks and by `tollgate up`.
//!
//! Data flow for one request:
//! 1. [`router`] stamps every request with a serial number and, on the way out, stamps the
//!    response with `x-mock-request-id`, `x-mock-auth` and (on request)
//!    `x-mock-seen-headers` (`stamp`).
//! 2. The endpoint handler (`openai`, `responses`, `anthropic`, `embeddings`) parses the `x-mock-*`
//!    control headers (`control`) and the JSON body, waits the configured latency, and
//!    decides whether a [`Fault`] applies (header first, then [`MockConfig`]).
//! 3. The reply is computed deterministically from the request (`reply`): same request,
//!    same text, same token counts.
//! 4. `delivery` turns the encoded response into a body: all at once, or as a timed SSE
//!    stream, optionally cut short by a stall or a reset.
//!
//! Resets need a real socket: [`serve`] runs its own accept loop and gives every request a
//! handle that kills its connection with a TCP RST. Served in-process through
//! [`router`] alone (no socket), a reset is emulated by a response body that errors.

mod anthropic;
mod control;
mod delivery;
mod embeddings;
mod exchange;
mod fault;
mod flavor;
mod openai;
mod reply;
mod responses;
mod server;
mod stamp;
mod structured;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use crate::fault::Fault;
pub use crate::reply::count_tokens;
pub use crate::server::serve;

/// Errors of this crate's public API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A fault spec (`x-mock-fault` header or `--fault` flag) did not parse.
    #[error("invalid fault spec {spec:?}: {reason}")]
    InvalidFault {
        /// The spec as given.
        spec: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// Server-wide behaviour; per-request `x-mock-*` headers override it.
#[derive(Clone, Debug, Default)]
pub struct MockConfig {
    /// Probability (0..=1) that a request without fault headers gets `default_fault`.
    pub fault_rate: f64,
    /// The fault applied at `fault_rate`; `status:500` when unset.
    pub default_fault: Option<Fault>,
    /// Latency added before the response headers of every request.
    pub latency: Duration,
    /// Seed for the fault dice, so a run's sequence of injected faults is reproducible.
    pub seed: Option<u64>,
}

/// State shared by all requests of one router.
pub(crate) struct Shared {
    config: MockConfig,
    /// `None` without a seed: the thread-local RNG then avoids a lock per roll.
    seeded_rng: Option<Mutex<StdRng>>,
    serial: AtomicU64,
    id_salt: u64,
}

impl Shared {
    fn new(config: MockConfig) -> Self {
        let seeded_rng = config.seed.map(|seed| Mutex::new(StdRng::seed_from_u64(seed)));
        let id_salt = config.seed.unwrap_or(0x746f_6c6c_6761_7465);
        Self { config, seeded_rng, serial: AtomicU64::new(0), id_salt }
    }

    pub(crate) fn config(&self) -> &MockConfig {
        &self.config
    }

    /// True with probability `p`.
    pub(crate) fn roll(&self, p: f64) -> bool {
        if p <= 0.0 || p.is_nan() {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        let x: f64 = match &self.seeded_rng {
            Some(rng) => rng.lock().unwrap_or_else(PoisonError::into_inner).random(),
            None => rand::rng().random(),
        };
        x < p
    }

    /// A fresh, deterministic request tag, used for response ids.
    fn next_tag(&self) -> RequestTag {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        RequestTag(splitmix64(n.wrapping_add(self.id_salt)))
    }
}

/// Per-request tag from which the response ids derive; in the request extensions.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RequestTag(pub(crate) u64);

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub(crate) type AppState = Arc<Shared>;

/// The mock provider's HTTP API; works in-process (e.g. via `tower::ServiceExt::oneshot`).
///
/// Connection resets are emulated in-process by a body that errors; [`serve`] turns them
/// into real TCP resets.
pub fn router(config: MockConfig) -> Router {
    let state: AppState = Arc::new(Shared::new(config));
    Router::new()
        .route("/v1/chat/completions", post(openai::chat))
        .route("/openai/deployments/{deployment}/chat/completions", post(openai::azure_chat))
        .route("/v1/embeddings", post(embeddings::openai))
        .route("/openai/deployments/{deployment}/embeddings", post(embeddings::azure))
        .route("/v1/responses", post(responses::responses))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/models", get(openai::models))
        .route("/healthz", get(healthz))
        .fallback(flavor::not_found)
        .method_not_allowed_fallback(flavor::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), stamp::stamp))
        .with_state(state)
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok").into_response()
}
