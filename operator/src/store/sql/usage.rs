//! Usage: the raw ledger (`usage_records`, `usage_charges`), its hourly and daily rollups
//! (`usage_rollups`) and the queries over them.

use serde::Serialize;
use sqlx::Row;

use super::SqlStore;
use crate::error::Result;

/// Usage sums for one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageTotals {
    /// The group's key (`alice`, `gpt-4o`, `2026-11-27`, ...); empty for the grand total.
    pub key: String,
    /// Requests.
    pub requests: i64,
    /// Requests that ended in an error.
    pub errors: i64,
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Cost, integer micro-USD.
    pub cost_micros: i64,
}

/// What a usage query groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// The principal (developer, team or agent name).
    Principal,
    /// The principal's team.
    Team,
    /// The model asked for.
    Model,
    /// The provider that served it.
    Provider,
    /// UTC day.
    Day,
    /// UTC hour.
    Hour,
}

/// Which usage a query covers. Empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    /// Inclusive start (epoch ms).
    pub from_ms: i64,
    /// Exclusive end (epoch ms).
    pub to_ms: i64,
    /// Only these principals (`kind`, `name`).
    pub principals: Vec<(String, String)>,
    /// Only these teams.
    pub teams: Vec<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only this provider.
    pub provider: Option<String>,
    /// Only what a caller may see. `None`: everything.
    pub within: Option<Visible>,
}

/// Rows of these principals *or* of these teams (either matches, unlike
/// [`UsageFilter::principals`] and [`UsageFilter::teams`], which must both hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visible {
    /// Principals (`kind`, `name`).
    pub principals: Vec<(String, String)>,
    /// Teams.
    pub teams: Vec<String>,
}

/// One hour and one day in ms.
pub const HOUR_MS: i64 = 3_600_000;
/// One day in ms.
pub const DAY_MS: i64 = 24 * HOUR_MS;

impl SqlStore {
    /// Recomputes the `granularity` rollups (`hour` or `day`) of the buckets overlapping
    /// `[from_ms, to_ms)` from the ledger: delete and re-insert in one transaction, so a
    /// rerun is idempotent and a rollup always equals the raw sums of its bucket.
    pub async fn rollup(&self, granularity: &str, from_ms: i64, to_ms: i64) -> Result<u64> {
        let size = if granularity == "day" { DAY_MS } else { HOUR_MS };
        let start = from_ms.div_euclid(size) * size;
        let end = to_ms.div_euclid(size) * size + if to_ms.rem_euclid(size) == 0 { 0 } else { size };
        let insert = "INSERT INTO usage_rollups (granularity, bucket_start_ms, principal_kind, principal_name, team, model, provider, \
                      requests, errors, input_tokens, output_tokens, cost_micros) \
                      SELECT $1, (u.ts_ms / $2) * $2, COALESCE(u.principal_kind, ''), COALESCE(u.principal_name, ''), \
                      COALESCE(k.team, ''), COALESCE(u.model, ''), COALESCE(u.provider, ''), \
                      COUNT(*), CAST(SUM(CASE WHEN u.status >= 400 THEN 1 ELSE 0 END) AS BIGINT), CAST(SUM(u.input_tokens) AS BIGINT), CAST(SUM(u.output_tokens) AS BIGINT), CAST(SUM(u.cost_micros) AS BIGINT) \
                      FROM usage_records u LEFT JOIN virtual_keys k ON k.id = u.key_id \
                      WHERE u.ts_ms >= $3 AND u.ts_ms < $4 \
                      GROUP BY (u.ts_ms / $2) * $2, COALESCE(u.principal_kind, ''), COALESCE(u.principal_name, ''), \
                      COALESCE(k.team, ''), COALESCE(u.model, ''), COALESCE(u.provider, '')";
        let delete = "DELETE FROM usage_rollups WHERE granularity = $1 AND bucket_start_ms >= $2 AND bucket_start_ms < $3";
        let n = with_pool!(&self.store, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(delete).bind(granularity).bind(start).bind(end).execute(&mut *tx).await?;
            let n = sqlx::query(insert).bind(granularity).bind(size).bind(start).bind(end).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            n
        });
        Ok(n)
    }

    /// Usage totals from the rollups, grouped by `by` (or one grand total), largest cost
    /// first for non-time groups, in time order for `day`/`hour`. Whole days in the range
    /// are read from the daily rollups and the partial days at its ends from the hourly
    /// ones, so a month is ~30 rows per group rather than ~720 (exact to the hour).
    pub async fn usage(&self, filter: &UsageFilter, by: Option<GroupBy>) -> Result<Vec<UsageTotals>> {
        let key = match by {
            None => "''".to_owned(),
            Some(GroupBy::Principal) => "principal_kind || '/' || principal_name".to_owned(),
            Some(GroupBy::Team) => "team".to_owned(),
            Some(GroupBy::Model) => "model".to_owned(),
            Some(GroupBy::Provider) => "provider".to_owned(),
            Some(GroupBy::Day) => format!("CAST((bucket_start_ms / {DAY_MS}) * {DAY_MS} AS TEXT)"),
            Some(GroupBy::Hour) => "CAST(bucket_start_ms AS TEXT)".to_owned(),
        };
        // Whole days [d1, d2) from the daily rollups; hourly grouping reads hours only.
        let (d1, d2) = if by == Some(GroupBy::Hour) {
            (filter.to_ms, filter.to_ms)
        } else {
            let d1 = filter.from_ms.div_euclid(DAY_MS) * DAY_MS
                + if filter.from_ms.rem_euclid(DAY_MS) == 0 { 0 } else { DAY_MS };
            let d2 = filter.to_ms.div_euclid(DAY_MS) * DAY_MS;
            if d1 < d2 { (d1, d2) } else { (filter.to_ms, filter.to_ms) }
        };
        let (from, to) = (filter.from_ms, filter.to_ms);
        let mut sql = format!(
            "SELECT {key} AS k, CAST(SUM(requests) AS BIGINT) AS requests, CAST(SUM(errors) AS BIGINT) AS errors, CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
             CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, CAST(SUM(cost_micros) AS BIGINT) AS cost_micros FROM ( \
             SELECT * FROM usage_rollups WHERE granularity = 'day' AND bucket_start_ms >= {d1} AND bucket_start_ms < {d2} \
             UNION ALL SELECT * FROM usage_rollups WHERE granularity = 'hour' AND bucket_start_ms >= {from} AND bucket_start_ms < {d1} \
             UNION ALL SELECT * FROM usage_rollups WHERE granularity = 'hour' AND bucket_start_ms >= {d2} AND bucket_start_ms < {to} \
             ) r WHERE 1 = 1"
        );
        // NB: the time bounds are integers this function computed, written into the SQL so
        // PostgreSQL plans an index range scan for them (a generic plan over bound
        // parameters scanned the whole table). Names from the caller are bound parameters
        // only and never become SQL.
        let mut binds: Vec<String> = Vec::new();
        let mut next = 1;
        if !filter.principals.is_empty() {
            let mut ors = Vec::new();
            for (kind, name) in &filter.principals {
                ors.push(format!("(principal_kind = ${} AND principal_name = ${})", next, next + 1));
                next += 2;
                binds.push(kind.clone());
                binds.push(name.clone());
            }
            sql.push_str(&format!(" AND ({})", ors.join(" OR ")));
        }
        if !filter.teams.is_empty() {
            let params: Vec<String> = filter
                .teams
                .iter()
                .map(|t| {
                    binds.push(t.clone());
                    next += 1;
                    format!("${}", next - 1)
                })
                .collect();
            sql.push_str(&format!(" AND team IN ({})", params.join(", ")));
        }
        if let Some(Visible { principals, teams }) = &filter.within {
            let mut ors = Vec::new();
            for (kind, name) in principals {
                ors.push(format!("(principal_kind = ${} AND principal_name = ${})", next, next + 1));
                next += 2;
                binds.push(kind.clone());
                binds.push(name.clone());
            }
            for team in teams {
                ors.push(format!("team = ${next}"));
                next += 1;
                binds.push(team.clone());
            }
            // Nothing visible matches no row (never "no filter").
            if ors.is_empty() {
                ors.push("1 = 0".to_owned());
            }
            sql.push_str(&format!(" AND ({})", ors.join(" OR ")));
        }
        for (column, value) in [("model", &filter.model), ("provider", &filter.provider)] {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} = ${next}"));
                next += 1;
                binds.push(v.clone());
            }
        }
        sql.push_str(" GROUP BY k");
        sql.push_str(match by {
            Some(GroupBy::Day | GroupBy::Hour) => " ORDER BY MIN(bucket_start_ms)",
            _ => " ORDER BY SUM(cost_micros) DESC, k",
        });
        let sum = |row: &dyn Fn(&str) -> std::result::Result<Option<i64>, sqlx::Error>,
                   c: &str|
         -> Result<i64> { Ok(row(c)?.unwrap_or(0)) };
        let rows = with_pool!(&self.store, pool => {
            let mut q = sqlx::query(&sql);
            for b in &binds {
                q = q.bind(b);
            }
            let mut out = Vec::new();
            for row in q.fetch_all(pool).await? {
                let get = |c: &str| row.try_get::<Option<i64>, _>(c);
                let totals = UsageTotals {
                    key: row.try_get::<Option<String>, _>("k")?.unwrap_or_default(),
                    requests: sum(&get, "requests")?,
                    errors: sum(&get, "errors")?,
                    input_tokens: sum(&get, "input_tokens")?,
                    output_tokens: sum(&get, "output_tokens")?,
                    cost_micros: sum(&get, "cost_micros")?,
                };
                if by.is_some() || totals.requests > 0 {
                    out.push(totals);
                }
            }
            out
        });
        Ok(rows)
    }

    /// The raw ledger's totals over `[from_ms, to_ms)` (what rollups must equal).
    pub async fn raw_usage_totals(&self, from_ms: i64, to_ms: i64) -> Result<UsageTotals> {
        let sql = "SELECT COUNT(*) AS requests, CAST(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS BIGINT) AS errors, \
                   CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, CAST(SUM(cost_micros) AS BIGINT) AS cost_micros \
                   FROM usage_records WHERE ts_ms >= $1 AND ts_ms < $2";
        Ok(with_pool!(&self.store, pool => {
            let row = sqlx::query(sql).bind(from_ms).bind(to_ms).fetch_one(pool).await?;
            let get = |c: &str| -> Result<i64> { Ok(row.try_get::<Option<i64>, _>(c)?.unwrap_or(0)) };
            UsageTotals {
                key: String::new(),
                requests: get("requests")?,
                errors: get("errors")?,
                input_tokens: get("input_tokens")?,
                output_tokens: get("output_tokens")?,
                cost_micros: get("cost_micros")?,
            }
        }))
    }

    /// Deletes ledger rows older than `before_ms` whose hour and day are rolled up.
    pub async fn prune_ledger(&self, before_ms: i64) -> Result<u64> {
        Ok(with_pool!(&self.store, pool => {
            let charges = sqlx::query("DELETE FROM usage_charges WHERE ts_ms < $1").bind(before_ms).execute(pool).await?;
            let records = sqlx::query("DELETE FROM usage_records WHERE ts_ms < $1").bind(before_ms).execute(pool).await?;
            charges.rows_affected() + records.rows_affected()
        }))
    }
}
