//! Safety findings in the database: written in batches by [`crate::safety::log`]'s writer,
//! read by the control plane (recent findings, counts per hour), pruned with the ledger.

use sqlx::Row;

use super::Store;
use crate::error::{Error, Result};
use crate::safety::log::FindingEvent;

/// Which findings to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingQuery {
    /// Inclusive start (epoch ms).
    pub from_ms: i64,
    /// Exclusive end (epoch ms).
    pub to_ms: i64,
    /// Only these principals (`kind`, `name`); `None`: everyone.
    pub principals: Option<Vec<(String, String)>>,
}

impl FindingQuery {
    /// The WHERE clause (from `$1`) and its text binds after the two time bounds.
    fn filter(&self) -> (String, Vec<String>) {
        let mut sql = String::from(" WHERE ts_ms >= $1 AND ts_ms < $2");
        let mut binds = Vec::new();
        if let Some(principals) = &self.principals {
            if principals.is_empty() {
                sql.push_str(" AND 1=0");
            } else {
                sql.push_str(" AND (");
                for (i, (kind, name)) in principals.iter().enumerate() {
                    if i > 0 {
                        sql.push_str(" OR ");
                    }
                    binds.push(kind.clone());
                    binds.push(name.clone());
                    sql.push_str(&format!(
                        "(principal_kind = ${} AND principal_name = ${})",
                        binds.len() + 1,
                        binds.len() + 2
                    ));
                }
                sql.push(')');
            }
        }
        (sql, binds)
    }
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, s: String) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.clone()))
        .map_err(|_| Error::Config(format!("stored finding has an unknown {what} {s:?}")))
}

impl Store {
    /// Writes findings in one statement per 500.
    pub async fn insert_findings(&self, events: &[FindingEvent]) -> Result<()> {
        for chunk in events.chunks(500) {
            with_pool!(self, pool => {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO safety_findings (ts_ms, request_id, principal_kind, principal_name, \
                     policy, rule, category, stage, action, audit) ",
                );
                q.push_values(chunk, |mut b, e| {
                    b.push_bind(e.ts_ms)
                        .push_bind(&e.request_id)
                        .push_bind(&e.principal_kind)
                        .push_bind(&e.principal_name)
                        .push_bind(&e.policy)
                        .push_bind(&e.rule)
                        .push_bind(e.category.as_str())
                        .push_bind(e.stage.as_str())
                        .push_bind(e.action.as_str())
                        .push_bind(e.audit);
                });
                q.build().execute(pool).await?;
            });
        }
        Ok(())
    }

    /// The newest `limit` findings matching `q`, newest first.
    pub async fn findings(&self, q: &FindingQuery, limit: i64) -> Result<Vec<FindingEvent>> {
        let (filter, binds) = q.filter();
        let sql = format!(
            "SELECT ts_ms, request_id, principal_kind, principal_name, policy, rule, category, stage, \
             action, audit FROM safety_findings{filter} ORDER BY ts_ms DESC, id DESC LIMIT {}",
            limit.clamp(1, 10_000)
        );
        with_pool!(self, pool => {
            let mut query = sqlx::query(&sql).bind(q.from_ms).bind(q.to_ms);
            for b in &binds {
                query = query.bind(b);
            }
            let rows = query.fetch_all(pool).await?;
            rows.iter()
                .map(|row| -> Result<FindingEvent> {
                    Ok(FindingEvent {
                        ts_ms: row.try_get("ts_ms")?,
                        request_id: row.try_get("request_id")?,
                        principal_kind: row.try_get("principal_kind")?,
                        principal_name: row.try_get("principal_name")?,
                        policy: row.try_get("policy")?,
                        rule: row.try_get("rule")?,
                        category: parse("category", row.try_get("category")?)?,
                        stage: parse("stage", row.try_get("stage")?)?,
                        action: parse("action", row.try_get("action")?)?,
                        audit: row.try_get("audit")?,
                    })
                })
                .collect()
        })
    }

    /// Findings matching `q` per hour (`hour start ms`, count), oldest first; hours without
    /// any are left out.
    pub async fn finding_counts(&self, q: &FindingQuery) -> Result<Vec<(i64, i64)>> {
        let (filter, binds) = q.filter();
        // NB: integer division truncates on both backends; timestamps are positive.
        let sql = format!(
            "SELECT (ts_ms / 3600000) * 3600000 AS hour, CAST(COUNT(*) AS BIGINT) AS n \
             FROM safety_findings{filter} GROUP BY (ts_ms / 3600000) ORDER BY 1"
        );
        with_pool!(self, pool => {
            let mut query = sqlx::query(&sql).bind(q.from_ms).bind(q.to_ms);
            for b in &binds {
                query = query.bind(b);
            }
            let rows = query.fetch_all(pool).await?;
            rows.iter().map(|row| Ok((row.try_get("hour")?, row.try_get("n")?))).collect()
        })
    }

    /// Deletes findings older than `before_ms`; returns how many.
    pub async fn prune_findings(&self, before_ms: i64) -> Result<u64> {
        let sql = "DELETE FROM safety_findings WHERE ts_ms < $1";
        Ok(with_pool!(self, pool => sqlx::query(sql).bind(before_ms).execute(pool).await?.rows_affected()))
    }
}
