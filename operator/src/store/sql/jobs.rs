//! Scheduler bookkeeping (`scheduler_jobs`): each job's last run, next run and last error.

use serde::Serialize;
use sqlx::Row;

use super::SqlStore;
use crate::error::Result;

/// A scheduler job's bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// The job.
    pub name: String,
    /// Last start (epoch ms).
    pub last_run_ms: Option<i64>,
    /// Last success (epoch ms).
    pub last_success_ms: Option<i64>,
    /// Next planned start (epoch ms).
    pub next_run_ms: Option<i64>,
    /// The last failure's message, cleared by a success.
    pub last_error: Option<String>,
    /// Runs so far.
    pub runs: i64,
    /// Failed runs so far.
    pub failures: i64,
}

impl SqlStore {
    /// Records a job's run.
    pub async fn record_job(&self, status: &JobStatus) -> Result<()> {
        let sql = "INSERT INTO scheduler_jobs (name, last_run_ms, last_success_ms, next_run_ms, last_error, runs, failures) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET last_run_ms = EXCLUDED.last_run_ms, \
                   last_success_ms = EXCLUDED.last_success_ms, next_run_ms = EXCLUDED.next_run_ms, last_error = EXCLUDED.last_error, \
                   runs = EXCLUDED.runs, failures = EXCLUDED.failures";
        with_pool!(&self.store, pool => {
            sqlx::query(sql)
                .bind(&status.name).bind(status.last_run_ms).bind(status.last_success_ms).bind(status.next_run_ms)
                .bind(&status.last_error).bind(status.runs).bind(status.failures)
                .execute(pool).await?;
        });
        Ok(())
    }

    /// Every job's bookkeeping.
    pub async fn jobs(&self) -> Result<Vec<JobStatus>> {
        let sql = "SELECT name, last_run_ms, last_success_ms, next_run_ms, last_error, runs, failures FROM scheduler_jobs ORDER BY name";
        Ok(with_pool!(&self.store, pool => {
            let mut out = Vec::new();
            for row in sqlx::query(sql).fetch_all(pool).await? {
                out.push(JobStatus {
                    name: row.try_get("name")?,
                    last_run_ms: row.try_get("last_run_ms")?,
                    last_success_ms: row.try_get("last_success_ms")?,
                    next_run_ms: row.try_get("next_run_ms")?,
                    last_error: row.try_get("last_error")?,
                    runs: row.try_get("runs")?,
                    failures: row.try_get("failures")?,
                });
            }
            out
        }))
    }
}
