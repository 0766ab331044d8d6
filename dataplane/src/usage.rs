//! The usage ledger: one record per request, with its cost and the budgets it was charged
//! to. Records are written by a background task with group commit: every record queued
//! while a transaction is being written goes into the next one, and each caller is told
//! when its record is committed. The request path waits for that acknowledgement before the
//! last byte of a response, so a response the caller received complete always has a durable
//! record, even if the process is killed right after.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::store::Store;

/// A charge of one request against one budget window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// `namespace/name` of the budget.
    pub budget_id: String,
    /// Start of the budget window charged (Unix ms).
    pub window_start_ms: i64,
}

/// What one request used and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageRecord {
    pub request_id: String,
    pub ts_ms: i64,
    pub key_id: Option<String>,
    pub principal_kind: Option<String>,
    pub principal_name: Option<String>,
    /// `chat.completions`, `messages`, `embeddings`.
    pub endpoint: &'static str,
    pub model: Option<String>,
    pub upstream_model: Option<String>,
    pub provider: Option<String>,
    pub ip_token: Option<String>,
    pub stream: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub latency_ms: u64,
    /// HTTP status the caller received (for a stream broken mid-way: the status sent, with
    /// `error_class` set).
    pub status: u16,
    pub error_class: Option<&'static str>,
    /// What the request cost, in micro-USD.
    pub cost_micros: u64,
    /// The model the caller asked for, when a budget downgraded it.
    pub downgraded_from: Option<String>,
    /// The budgets charged (`cost_micros` each).
    pub charges: Vec<Charge>,
}

type Item = (UsageRecord, Option<oneshot::Sender<bool>>);

/// Hands usage records to the ledger writer.
#[derive(Debug, Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<Item>,
}

/// Records buffered before senders wait.
const QUEUE: usize = 65_536;
/// Records written per transaction at most.
const BATCH: usize = 1024;

impl UsageSink {
    /// Starts the writer task on `store`.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(store, rx));
        Self { tx }
    }

    /// A sink that drops everything (tests of pure handlers).
    pub fn discard() -> Self {
        let (tx, mut rx) = mpsc::channel::<Item>(QUEUE);
        tokio::spawn(async move {
            while let Some((_, ack)) = rx.recv().await {
                if let Some(ack) = ack {
                    let _ = ack.send(true);
                }
            }
        });
        Self { tx }
    }

    /// Queues a record without waiting for its commit (failed requests).
    pub async fn record(&self, record: UsageRecord) {
        if self.tx.send((record, None)).await.is_err() {
            tracing::error!("usage writer has stopped; a usage record was lost");
        }
    }

    /// Queues a record and waits until it is committed. Returns false if it could not be
    /// written (the caller still answers; the failure is logged loudly).
    pub async fn record_durable(&self, record: UsageRecord) -> bool {
        let (ack, done) = oneshot::channel();
        if self.tx.send((record, Some(ack))).await.is_err() {
            tracing::error!("usage writer has stopped; a usage record was lost");
            return false;
        }
        done.await.unwrap_or(false)
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Item>) {
    let mut batch: Vec<Item> = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let records: Vec<UsageRecord> = batch.iter().map(|(r, _)| r.clone()).collect();
        let mut attempt = 0u32;
        let ok = loop {
            match store.insert_usage(&records).await {
                Ok(()) => break true,
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, records = records.len(), "usage write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, records = records.len(), "usage records dropped after retries");
                    break false;
                }
            }
        };
        for (_, ack) in batch.drain(..) {
            if let Some(ack) = ack {
                let _ = ack.send(ok);
            }
        }
    }
}
