//! Usage records: one per request, written to the database in batches by a background task
//! so the request path never waits on a commit.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::store::Store;

/// What one request used and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// Hands usage records to the background writer.
#[derive(Debug, Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<UsageRecord>,
}

/// Records buffered before senders wait.
const QUEUE: usize = 65_536;
/// Records written per transaction at most.
const BATCH: usize = 512;

impl UsageSink {
    /// Starts the writer task on `store`.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(store, rx));
        Self { tx }
    }

    /// A sink that drops everything (tests of pure handlers).
    pub fn discard() -> Self {
        let (tx, mut rx) = mpsc::channel::<UsageRecord>(QUEUE);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        Self { tx }
    }

    /// Queues a record; waits only if the writer is far behind.
    pub async fn record(&self, record: UsageRecord) {
        if self.tx.send(record).await.is_err() {
            tracing::error!("usage writer has stopped; a usage record was lost");
        }
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<UsageRecord>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut attempt = 0u32;
        loop {
            match store.insert_usage(&batch).await {
                Ok(()) => break,
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, records = batch.len(), "usage write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, records = batch.len(), "usage records dropped after retries");
                    break;
                }
            }
        }
        batch.clear();
    }
}
