//! Background jobs of the control plane, run by the leader only: usage rollups (hourly and
//! daily, so the dashboard and `tollgate usage` read aggregates), key expiry, ledger
//! retention and budget status. Each job runs in its own task on its own interval; a job
//! that fails is retried with exponential backoff and never delays the others. Each run is
//! recorded (last run, next run, last error) for `GET /api/v1/scheduler/jobs`.
//!
//! Leadership: standalone with SQLite is trivially the leader; on PostgreSQL a session
//! advisory lock held on one dedicated connection decides, so of several control-plane
//! processes sharing a database exactly one runs the jobs, and another takes over when its
//! connection goes away. (In Kubernetes every operator replica starts the scheduler and
//! this lock, not the controllers' Lease, picks the one that runs the jobs.)

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tollgate_dataplane::now_ms;
use tollgate_dataplane::store::Store;

use crate::api::ControlPlane;
use crate::error::Error;
use crate::store::sql::{DAY_MS, HOUR_MS, JobStatus};

/// What a job does; `Ok` carries a line for the log.
pub type JobFn = Arc<dyn Fn(ControlPlane) -> BoxFuture<'static, Result<String, JobError>> + Send + Sync>;

/// Why a run of a job failed: the step, and what it ran into. Its text is the job's
/// `lastError` in `GET /api/v1/scheduler/jobs`.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The scheduler's own records (last success of a job) cannot be read.
    #[error("reading the job records: {0}")]
    JobRecords(#[source] Error),
    /// Rolling the ledger up into `granularity` buckets failed.
    #[error("rolling up usage by {granularity}: {source}")]
    Rollup {
        /// `hour` or `day`.
        granularity: &'static str,
        /// What failed.
        source: Error,
    },
    /// The virtual keys cannot be listed.
    #[error("listing the virtual keys: {0}")]
    ListKeys(#[source] tollgate_dataplane::Error),
    /// An expired key cannot be revoked.
    #[error("revoking expired key {id}: {source}")]
    RevokeKey {
        /// The key's id.
        id: String,
        /// What failed.
        source: tollgate_dataplane::Error,
    },
    /// Old ledger rows cannot be deleted.
    #[error("pruning the usage ledger: {0}")]
    PruneLedger(#[source] Error),
    /// Old safety findings cannot be deleted.
    #[error("pruning safety findings: {0}")]
    PruneFindings(#[source] tollgate_dataplane::Error),
    /// Old stored Responses API answers cannot be deleted.
    #[error("pruning stored responses: {0}")]
    PruneResponses(#[source] tollgate_dataplane::Error),
    /// A budget's counters cannot be read.
    #[error("reading the counters of budget {budget}: {source}")]
    BudgetCounters {
        /// The budget's id.
        budget: String,
        /// What failed.
        source: tollgate_dataplane::cost::CostError,
    },
    /// The job panicked (a bug); the scheduler carries on.
    #[error("the job panicked: {0}")]
    Panicked(#[source] tokio::task::JoinError),
}

/// One job.
#[derive(Clone)]
pub struct Job {
    /// Its name (`usage-rollups`, ...).
    pub name: &'static str,
    /// How often it runs when it succeeds.
    pub every: Duration,
    /// What it does.
    pub run: JobFn,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("name", &self.name).field("every", &self.every).finish()
    }
}

/// The advisory-lock key the control plane's leader holds on PostgreSQL.
pub const LEADER_LOCK_KEY: i64 = 0x746f_6c6c_6761_7465; // "tollgate"

/// How long ledger rows are kept after they are rolled up.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

/// Delay before retry number `failures` (1, 2, 4, ... seconds, capped at the interval).
pub fn backoff(failures: u32, every: Duration) -> Duration {
    let secs = 1u64.checked_shl(failures.saturating_sub(1).min(16)).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(every).max(Duration::from_millis(200))
}

fn job(
    name: &'static str,
    every: Duration,
    f: fn(ControlPlane) -> BoxFuture<'static, Result<String, JobError>>,
) -> Job {
    Job { name, every, run: Arc::new(f) }
}

/// The standard jobs.
pub fn standard_jobs(rollup_every: Duration, retention: Duration) -> Vec<Job> {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    vec![
        job("usage-rollups", rollup_every, |cp| Box::pin(rollups(cp))),
        job("key-expiry", Duration::from_secs(60), |cp| Box::pin(key_expiry(cp))),
        Job {
            name: "ledger-retention",
            every: Duration::from_secs(3600),
            run: Arc::new(move |cp| Box::pin(retention_job(cp, retention_ms))),
        },
        job("budget-status", Duration::from_secs(30), |cp| Box::pin(budget_status(cp))),
    ]
}

/// Recomputes the hourly and daily rollups that can have changed: everything on the first
/// run, then the buckets since two hours before the last success (late ledger writes land
/// in them).
async fn rollups(cp: ControlPlane) -> Result<String, JobError> {
    let now = now_ms();
    let last =
        cp.sql.jobs().await.map_err(JobError::JobRecords)?.into_iter().find(|j| j.name == "usage-rollups");
    let from = match last.and_then(|j| j.last_success_ms) {
        Some(t) => t - 2 * HOUR_MS,
        None => 0,
    };
    let rollup = |granularity| move |source| JobError::Rollup { granularity, source };
    let hours = cp.sql.rollup("hour", from, now + HOUR_MS).await.map_err(rollup("hour"))?;
    let days = cp.sql.rollup("day", from - DAY_MS, now + DAY_MS).await.map_err(rollup("day"))?;
    Ok(format!("{hours} hourly and {days} daily groups"))
}

/// Revokes keys past their expiry (they are refused already; this makes lists and the
/// audit log say so) and drops them from the key cache.
async fn key_expiry(cp: ControlPlane) -> Result<String, JobError> {
    let now = now_ms();
    let keys = cp.gateway.keys().list().await.map_err(JobError::ListKeys)?;
    let mut n = 0;
    for k in keys.iter().filter(|k| k.revoked_at_ms.is_none() && k.expires_at_ms.is_some_and(|e| e <= now)) {
        cp.gateway
            .keys()
            .revoke(&k.id, now)
            .await
            .map_err(|source| JobError::RevokeKey { id: k.id.clone(), source })?;
        let _ = cp.sql.audit("scheduler", "expire-key", &format!("key {}", k.id), None, None, now).await;
        n += 1;
    }
    Ok(format!("{n} keys expired"))
}

/// Deletes safety findings and stored Responses API answers older than the retention, and
/// ledger rows older than the retention but never newer than what the rollups cover (none
/// before the first rollup).
async fn retention_job(cp: ControlPlane, retention_ms: i64) -> Result<String, JobError> {
    let before = now_ms().saturating_sub(retention_ms);
    let findings = cp.store.prune_findings(before).await.map_err(JobError::PruneFindings)?;
    let responses = cp.store.prune_responses(before).await.map_err(JobError::PruneResponses)?;
    let pruned = format!("{findings} safety findings and {responses} stored responses pruned");
    let jobs = cp.sql.jobs().await.map_err(JobError::JobRecords)?;
    let Some(rolled) = jobs.iter().find(|j| j.name == "usage-rollups").and_then(|j| j.last_success_ms) else {
        return Ok(format!("nothing rolled up yet, no ledger rows pruned; {pruned}"));
    };
    let cutoff = before.min(rolled - DAY_MS).div_euclid(DAY_MS) * DAY_MS;
    let n = cp.sql.prune_ledger(cutoff).await.map_err(JobError::PruneLedger)?;
    Ok(format!("{n} ledger rows before {cutoff}; {pruned}"))
}

/// Publishes every budget's remaining amount as a metric (the gateway's counters are the
/// truth; in Kubernetes the operator also writes Budget.status).
async fn budget_status(cp: ControlPlane) -> Result<String, JobError> {
    let shared = cp.gateway.shared();
    let runtime = shared.runtime.load_full();
    let budgets = &runtime.config.budgets;
    let now = now_ms();
    for (i, budget) in budgets.iter().enumerate() {
        if let Some(s) = tollgate_dataplane::budget::status(&shared.counters, budgets, i, now)
            .await
            .map_err(|source| JobError::BudgetCounters { budget: budget.id.clone(), source })?
        {
            let remaining = i64::try_from(s.limit_micros).unwrap_or(i64::MAX)
                - i64::try_from(s.spent_micros).unwrap_or(i64::MAX);
            shared.metrics.budget_remaining(&s.id, remaining);
        }
    }
    Ok(format!("{} budgets", budgets.len()))
}

/// Runs `job` once and records the result; returns whether it succeeded.
pub async fn run_once(cp: &ControlPlane, job: &Job, status: &mut JobStatus) -> bool {
    let started = now_ms();
    status.name = job.name.to_owned();
    status.last_run_ms = Some(started);
    status.runs += 1;
    // NB: a panicking job must not take the scheduler down with it.
    let fut = (job.run)(cp.clone());
    let result = match tokio::spawn(fut).await {
        Ok(r) => r,
        Err(e) => Err(JobError::Panicked(e)),
    };
    match result {
        Ok(line) => {
            tracing::debug!(job = job.name, result = %line, "scheduler job done");
            status.last_success_ms = Some(started);
            status.last_error = None;
            true
        }
        Err(e) => {
            tracing::warn!(job = job.name, error = %e, "scheduler job failed; retrying with backoff");
            status.failures += 1;
            status.last_error = Some(e.to_string());
            false
        }
    }
}

/// Loops one job forever: run, record, sleep (interval, or backoff after failures).
async fn job_loop(cp: ControlPlane, job: Job) {
    let mut status = cp
        .sql
        .jobs()
        .await
        .ok()
        .and_then(|jobs| jobs.into_iter().find(|j| j.name == job.name))
        .unwrap_or_default();
    let mut consecutive = 0u32;
    loop {
        let ok = run_once(&cp, &job, &mut status).await;
        consecutive = if ok { 0 } else { consecutive + 1 };
        let wait = if ok { job.every } else { backoff(consecutive, job.every) };
        status.next_run_ms = Some(now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        if let Err(e) = cp.sql.record_job(&status).await {
            tracing::warn!(job = job.name, error = %e, "cannot record the job's run");
        }
        tokio::time::sleep(wait).await;
    }
}

/// Runs `jobs` while this process is the leader (forever).
pub async fn run(cp: ControlPlane, jobs: Vec<Job>) {
    match cp.store.clone() {
        Store::Sqlite(_) => run_jobs(cp, jobs).await,
        Store::Postgres(pool) => loop {
            match acquire_leadership(&pool).await {
                Ok(conn) => {
                    tracing::info!("this control plane is the scheduler's leader");
                    let tasks = spawn_jobs(&cp, &jobs);
                    // Hold the lock's connection; losing it ends the leadership.
                    watch_connection(conn).await;
                    tracing::warn!("lost the scheduler's leader lock; stopping jobs");
                    drop(tasks);
                }
                Err(e) => tracing::warn!(error = %e, "cannot try the scheduler's leader lock"),
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        },
    }
}

async fn run_jobs(cp: ControlPlane, jobs: Vec<Job>) {
    let mut tasks = spawn_jobs(&cp, &jobs);
    while tasks.join_next().await.is_some() {}
}

/// The job loops, stopped together when the set is dropped (leadership lost, or the
/// scheduler's own task cancelled).
fn spawn_jobs(cp: &ControlPlane, jobs: &[Job]) -> tokio::task::JoinSet<()> {
    let mut set = tokio::task::JoinSet::new();
    for j in jobs {
        set.spawn(job_loop(cp.clone(), j.clone()));
    }
    set
}

/// Waits until this process holds the advisory lock; returns the connection holding it.
pub async fn acquire_leadership(
    pool: &sqlx::PgPool,
) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, sqlx::Error> {
    loop {
        let mut conn = pool.acquire().await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await?;
        if got {
            return Ok(conn);
        }
        drop(conn);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn watch_connection(mut conn: sqlx::pool::PoolConnection<sqlx::Postgres>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if sqlx::query("SELECT 1").execute(&mut *conn).await.is_err() {
            // NB: the session is gone, and the lock with it; close rather than return it.
            conn.close_on_drop();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let every = Duration::from_secs(30);
        let got: Vec<u64> = (1..=7).map(|n| backoff(n, every).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(100, every), every);
    }
}
