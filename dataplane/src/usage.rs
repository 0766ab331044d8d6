//! The usage ledger: one record per request, with its cost and the budgets it was charged
//! to. The request path waits for its record's acknowledgement before the last byte of a
//! response, so a response the caller received complete always has a durable record, even
//! if the process is killed right after.
//!
//! Two ways to be durable:
//! - [`UsageSink::start`]: acknowledged after the database commit (group commit: every
//!   record queued while a statement runs goes into the next one). Used with PostgreSQL.
//! - [`UsageSink::open`] on SQLite: a local journal next to the database file. Records are
//!   appended to it (one `write` per batch) and acknowledged at once — the kernel holds
//!   them, so they survive the process being killed, the same guarantee as SQLite's WAL with
//!   `synchronous=NORMAL` — then inserted into the database by a second task. The journal
//!   is emptied whenever everything appended is committed, and replayed at start (records
//!   not yet in the database are inserted) before budgets are rebuilt from the ledger.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::store::Store;

/// A charge of one request against one budget window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// `namespace/name` of the budget.
    pub budget_id: String,
    /// Start of the budget window charged (Unix ms).
    pub window_start_ms: i64,
}

/// What one request used and how it ended. Serialised as it is into the SQLite journal.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageRecord {
    pub request_id: String,
    pub ts_ms: i64,
    pub key_id: Option<String>,
    pub principal_kind: Option<String>,
    pub principal_name: Option<String>,
    /// `chat.completions`, `messages`, `embeddings`.
    pub endpoint: Cow<'static, str>,
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
    pub error_class: Option<Cow<'static, str>>,
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

    /// The ledger for `store`, with a local journal when the store is a SQLite file
    /// (replayed now, before anything reads the ledger).
    pub async fn open(store: Store) -> crate::Result<Self> {
        let Some(path) = store.sqlite_file().map(|f| {
            let mut p = f.into_os_string();
            p.push(".journal");
            PathBuf::from(p)
        }) else {
            return Ok(Self::start(store));
        };
        let pending = replay(&store, &path).await?;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let committed = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(QUEUE);
        let (to_db, from_journal) = mpsc::channel(QUEUE);
        tokio::spawn(journal_loop(file, pending, Arc::clone(&committed), rx, to_db));
        tokio::spawn(commit_loop(store, committed, from_journal));
        Ok(Self { tx })
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
        let ok = insert_with_retries(&store, &records).await;
        for (_, ack) in batch.drain(..) {
            if let Some(ack) = ack {
                let _ = ack.send(ok);
            }
        }
    }
}

/// Inserts journaled records that are not in the database yet, then empties the journal.
/// Returns 0 (nothing left pending).
async fn replay(store: &Store, path: &std::path::Path) -> crate::Result<u64> {
    let Ok(file) = std::fs::File::open(path) else { return Ok(0) };
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    for line in std::io::BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        // NB: a line cut short by a crash mid-write was never acknowledged: skip it.
        let Ok(record) = serde_json::from_str::<UsageRecord>(&line) else { continue };
        if !seen.insert((record.request_id.clone(), record.ts_ms)) {
            continue;
        }
        if !store.has_usage_at(&record.request_id, record.ts_ms).await? {
            missing.push(record);
        }
    }
    for chunk in missing.chunks(500) {
        store.insert_usage(chunk).await?;
    }
    if !missing.is_empty() {
        tracing::warn!(
            records = missing.len(),
            "usage records replayed from the journal after an unclean stop"
        );
    }
    std::fs::OpenOptions::new().write(true).truncate(true).open(path)?;
    Ok(0)
}

/// Stage one: append each batch to the journal, acknowledge it, hand it to the committer.
async fn journal_loop(
    mut file: std::fs::File,
    mut appended: u64,
    committed: Arc<AtomicU64>,
    mut rx: mpsc::Receiver<Item>,
    to_db: mpsc::Sender<(Vec<UsageRecord>, Vec<oneshot::Sender<bool>>, bool)>,
) {
    let mut batch: Vec<Item> = Vec::with_capacity(BATCH);
    let mut buf = Vec::with_capacity(64 << 10);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if appended == committed.load(Ordering::Acquire) && appended > 0 {
            // Everything journaled is in the database: start the journal afresh.
            if file.set_len(0).is_ok() {
                appended = 0;
                committed.store(0, Ordering::Release);
            }
        }
        buf.clear();
        for (r, _) in &batch {
            if serde_json::to_writer(&mut buf, r).is_ok() {
                buf.push(b'\n');
            }
        }
        let journaled = file.write_all(&buf).is_ok();
        let mut waiting = Vec::new();
        let records: Vec<UsageRecord> = batch
            .drain(..)
            .map(|(r, ack)| {
                if let Some(ack) = ack {
                    if journaled {
                        let _ = ack.send(true);
                    } else {
                        waiting.push(ack);
                    }
                }
                r
            })
            .collect();
        if journaled {
            appended += records.len() as u64;
        } else {
            tracing::error!("usage journal write failed; acknowledging after the database commit instead");
        }
        if to_db.send((records, waiting, journaled)).await.is_err() {
            return;
        }
    }
}

/// Stage two: insert into the database (retrying), then count what is committed.
async fn commit_loop(
    store: Store,
    committed: Arc<AtomicU64>,
    mut rx: mpsc::Receiver<(Vec<UsageRecord>, Vec<oneshot::Sender<bool>>, bool)>,
) {
    while let Some((records, waiting, journaled)) = rx.recv().await {
        let ok = insert_with_retries(&store, &records).await;
        if ok && journaled {
            committed.fetch_add(records.len() as u64, Ordering::AcqRel);
        }
        for ack in waiting {
            let _ = ack.send(ok);
        }
    }
}

async fn insert_with_retries(store: &Store, records: &[UsageRecord]) -> bool {
    let mut attempt = 0u32;
    loop {
        match store.insert_usage(records).await {
            Ok(()) => return true,
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, records = records.len(), "usage write failed; retrying");
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, records = records.len(), "usage records not written after retries; they stay in the journal when there is one");
                return false;
            }
        }
    }
}
