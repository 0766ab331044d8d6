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

/// A journal line: a usage record with owned strings.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    request_id: String,
    ts_ms: i64,
    key_id: Option<String>,
    principal_kind: Option<String>,
    principal_name: Option<String>,
    endpoint: String,
    model: Option<String>,
    upstream_model: Option<String>,
    provider: Option<String>,
    ip_token: Option<String>,
    stream: bool,
    input_tokens: u64,
    output_tokens: u64,
    cached_input_tokens: u64,
    latency_ms: u64,
    status: u16,
    error_class: Option<String>,
    cost_micros: u64,
    downgraded_from: Option<String>,
    charges: Vec<Charge>,
}

impl From<&UsageRecord> for Entry {
    fn from(r: &UsageRecord) -> Self {
        Self {
            request_id: r.request_id.clone(),
            ts_ms: r.ts_ms,
            key_id: r.key_id.clone(),
            principal_kind: r.principal_kind.clone(),
            principal_name: r.principal_name.clone(),
            endpoint: r.endpoint.to_owned(),
            model: r.model.clone(),
            upstream_model: r.upstream_model.clone(),
            provider: r.provider.clone(),
            ip_token: r.ip_token.clone(),
            stream: r.stream,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cached_input_tokens: r.cached_input_tokens,
            latency_ms: r.latency_ms,
            status: r.status,
            error_class: r.error_class.map(str::to_owned),
            cost_micros: r.cost_micros,
            downgraded_from: r.downgraded_from.clone(),
            charges: r.charges.clone(),
        }
    }
}

/// Endpoint names and error classes are a small fixed vocabulary in the code; a replayed
/// record's strings are mapped back to it (anything else, from an older version, is kept
/// as `replayed`).
fn intern(s: &str, known: &HashSet<&'static str>) -> &'static str {
    known.get(s).copied().unwrap_or("replayed")
}

impl Entry {
    fn into_record(self, known: &HashSet<&'static str>) -> UsageRecord {
        UsageRecord {
            request_id: self.request_id,
            ts_ms: self.ts_ms,
            key_id: self.key_id,
            principal_kind: self.principal_kind,
            principal_name: self.principal_name,
            endpoint: intern(&self.endpoint, known),
            model: self.model,
            upstream_model: self.upstream_model,
            provider: self.provider,
            ip_token: self.ip_token,
            stream: self.stream,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cached_input_tokens,
            latency_ms: self.latency_ms,
            status: self.status,
            error_class: self.error_class.as_deref().map(|c| intern(c, known)),
            cost_micros: self.cost_micros,
            downgraded_from: self.downgraded_from,
            charges: self.charges,
        }
    }
}

/// Strings a usage record's `&'static str` fields can hold.
fn vocabulary() -> HashSet<&'static str> {
    [
        "chat.completions",
        "messages",
        "embeddings",
        "client_disconnected",
        "upstream_stream_error",
        "stream_idle_timeout",
        "stream_total_timeout",
        "upstream_invalid_response",
        "policy_violation",
        "upstream_connection_error",
        "upstream_error",
        "upstream_unavailable",
        "upstream_timeout",
        "upstream_rate_limited",
        "upstream_auth_failed",
        "upstream_not_found",
        "no_healthy_upstream",
        "budget_exceeded",
        "budget_unavailable",
        "rate_limited",
        "invalid_request",
        "model_not_allowed",
        "model_not_found",
        "no_upstream",
        "overloaded",
        "shutting_down",
        "request_too_large",
        "internal_error",
    ]
    .into_iter()
    .collect()
}

/// Inserts journaled records that are not in the database yet, then empties the journal.
/// Returns 0 (nothing left pending).
async fn replay(store: &Store, path: &std::path::Path) -> crate::Result<u64> {
    let Ok(file) = std::fs::File::open(path) else { return Ok(0) };
    let known = vocabulary();
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    for line in std::io::BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        // NB: a line cut short by a crash mid-write was never acknowledged: skip it.
        let Ok(entry) = serde_json::from_str::<Entry>(&line) else { continue };
        if !seen.insert((entry.request_id.clone(), entry.ts_ms)) {
            continue;
        }
        if !store.has_usage_at(&entry.request_id, entry.ts_ms).await? {
            missing.push(entry.into_record(&known));
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
            if serde_json::to_writer(&mut buf, &Entry::from(r)).is_ok() {
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
