//! The control plane's tables in the gateway's database (SQLite or PostgreSQL; migration
//! `0005_control_plane.sql`). Queries are written once with `$N` placeholders, which both
//! backends accept.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use tollgate_dataplane::secrets::SecretString;
use tollgate_dataplane::store::Store;

use super::{KeyState, Kind, ResourceStore, StoredResource, WriteMode};
use crate::error::{Error, Result};

/// Runs the same code against whichever pool the store holds.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

/// The control plane's state in the database.
#[derive(Debug, Clone)]
pub struct SqlStore {
    store: Store,
}

/// A user the admin registered: a developer identity whose role is their keys' role
/// (changing it changes what every key of theirs may do; deleting the user revokes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The developer name keys are issued for.
    pub name: String,
    /// `admin`, `superuser` or `developer`.
    pub role: String,
    /// For people.
    pub display_name: Option<String>,
    /// Teams the user belongs to.
    pub teams: Vec<String>,
}

/// A team and its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Team {
    /// The team's name (budget subjects and keys use it).
    pub name: String,
    /// Member user names.
    pub members: Vec<String>,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Increasing id (pagination cursor).
    pub id: i64,
    /// When (epoch ms).
    pub ts_ms: i64,
    /// Who: `kind/name (key id)`.
    pub actor: String,
    /// `create`, `update`, `delete`, `issue-key`, ...
    pub action: String,
    /// What: `Budget default/team-a`, `key 01J...`, `user alice`.
    pub target: String,
    /// The state before (secrets masked), if any.
    pub before: Option<Value>,
    /// The state after (secrets masked), if any.
    pub after: Option<Value>,
}

/// Which audit entries to read (absent: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Exactly this action (`create`, `issue-key`, ...).
    pub action: Option<String>,
    /// Actors containing this text.
    pub actor: Option<String>,
    /// Targets containing this text.
    pub target: Option<String>,
}

/// A developer's preferences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preferences {
    /// The model used when a request names none or `default`.
    #[serde(default)]
    pub model: Option<String>,
    /// The preferred inference provider (an IPToken name) among those serving the model.
    #[serde(default)]
    pub provider: Option<String>,
}

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

fn doc_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn kind_of(s: &str) -> Result<Kind> {
    Kind::parse(s).ok_or_else(|| Error::Conflict(format!("stored resource of unknown kind {s:?}")))
}

impl SqlStore {
    /// The control plane's tables in `store`'s database (migrated by `Store::connect`).
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The underlying database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    // --- provider secrets -------------------------------------------------------------

    /// Sets a provider key (write-only: there is no way to read one back over the API).
    pub async fn put_secret(&self, name: &str, key: &str, value: &str, now_ms: i64) -> Result<()> {
        let sql = "INSERT INTO provider_secrets (name, secret_key, secret_value, updated_at_ms) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (name, secret_key) DO UPDATE SET secret_value = EXCLUDED.secret_value, updated_at_ms = EXCLUDED.updated_at_ms";
        with_pool!(&self.store, pool => {
            sqlx::query(sql).bind(name).bind(key).bind(value).bind(now_ms).execute(pool).await?;
        });
        Ok(())
    }

    /// Every provider key given to the API, for the gateway's secret source.
    pub async fn secrets(&self) -> Result<BTreeMap<String, BTreeMap<String, SecretString>>> {
        let sql = "SELECT name, secret_key, secret_value FROM provider_secrets";
        let mut out: BTreeMap<String, BTreeMap<String, SecretString>> = BTreeMap::new();
        with_pool!(&self.store, pool => {
            for row in sqlx::query(sql).fetch_all(pool).await? {
                let (name, key, value): (String, String, String) =
                    (row.try_get("name")?, row.try_get("secret_key")?, row.try_get("secret_value")?);
                out.entry(name).or_default().insert(key, SecretString::new(value));
            }
        });
        Ok(out)
    }

    /// When a provider key was last set, if it is (never the value).
    pub async fn secret_updated_at(&self, name: &str, key: &str) -> Result<Option<i64>> {
        let sql = "SELECT updated_at_ms FROM provider_secrets WHERE name = $1 AND secret_key = $2";
        Ok(with_pool!(&self.store, pool => {
            match sqlx::query(sql).bind(name).bind(key).fetch_optional(pool).await? {
                Some(row) => Some(row.try_get("updated_at_ms")?),
                None => None,
            }
        }))
    }

    // --- users and teams --------------------------------------------------------------

    /// Every user with their teams.
    pub async fn users(&self) -> Result<Vec<User>> {
        let sql = "SELECT name, role, display_name FROM users ORDER BY name";
        let mut users: Vec<User> = with_pool!(&self.store, pool => {
            let mut out = Vec::new();
            for row in sqlx::query(sql).fetch_all(pool).await? {
                out.push(User {
                    name: row.try_get("name")?,
                    role: row.try_get("role")?,
                    display_name: row.try_get("display_name")?,
                    teams: Vec::new(),
                });
            }
            out
        });
        let memberships = self.memberships().await?;
        for u in &mut users {
            u.teams =
                memberships.iter().filter(|(_, user)| *user == u.name).map(|(t, _)| t.clone()).collect();
        }
        Ok(users)
    }

    async fn memberships(&self) -> Result<Vec<(String, String)>> {
        let sql = "SELECT team, user_name FROM team_members ORDER BY team, user_name";
        Ok(with_pool!(&self.store, pool => {
            let mut out = Vec::new();
            for row in sqlx::query(sql).fetch_all(pool).await? {
                out.push((row.try_get("team")?, row.try_get("user_name")?));
            }
            out
        }))
    }

    /// Creates or updates a user.
    pub async fn put_user(
        &self,
        name: &str,
        role: &str,
        display_name: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO users (name, role, display_name, created_at_ms) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, display_name = EXCLUDED.display_name";
        with_pool!(&self.store, pool => {
            sqlx::query(sql).bind(name).bind(role).bind(display_name).bind(now_ms).execute(pool).await?;
        });
        Ok(())
    }

    /// Deletes a user and their memberships; whether it existed.
    pub async fn delete_user(&self, name: &str) -> Result<bool> {
        let n = with_pool!(&self.store, pool => {
            sqlx::query("DELETE FROM team_members WHERE user_name = $1").bind(name).execute(pool).await?;
            sqlx::query("DELETE FROM users WHERE name = $1").bind(name).execute(pool).await?.rows_affected()
        });
        Ok(n > 0)
    }

    /// Every team with its members.
    pub async fn teams(&self) -> Result<Vec<Team>> {
        let names: Vec<String> = with_pool!(&self.store, pool => {
            let mut out = Vec::new();
            for row in sqlx::query("SELECT name FROM teams ORDER BY name").fetch_all(pool).await? {
                out.push(row.try_get("name")?);
            }
            out
        });
        let memberships = self.memberships().await?;
        Ok(names
            .into_iter()
            .map(|name| Team {
                members: memberships.iter().filter(|(t, _)| *t == name).map(|(_, u)| u.clone()).collect(),
                name,
            })
            .collect())
    }

    /// Creates a team (no-op when it exists).
    pub async fn put_team(&self, name: &str, now_ms: i64) -> Result<()> {
        let sql = "INSERT INTO teams (name, created_at_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
        with_pool!(&self.store, pool => { sqlx::query(sql).bind(name).bind(now_ms).execute(pool).await?; });
        Ok(())
    }

    /// Deletes a team and its memberships; whether it existed.
    pub async fn delete_team(&self, name: &str) -> Result<bool> {
        let n = with_pool!(&self.store, pool => {
            sqlx::query("DELETE FROM team_members WHERE team = $1").bind(name).execute(pool).await?;
            sqlx::query("DELETE FROM teams WHERE name = $1").bind(name).execute(pool).await?.rows_affected()
        });
        Ok(n > 0)
    }

    /// Adds a member (both must exist).
    pub async fn add_member(&self, team: &str, user: &str) -> Result<()> {
        let teams = self.teams().await?;
        if !teams.iter().any(|t| t.name == team) {
            return Err(Error::NotFound(format!("no team {team:?}")));
        }
        if !self.users().await?.iter().any(|u| u.name == user) {
            return Err(Error::NotFound(format!("no user {user:?}")));
        }
        let sql = "INSERT INTO team_members (team, user_name) VALUES ($1, $2) ON CONFLICT (team, user_name) DO NOTHING";
        with_pool!(&self.store, pool => { sqlx::query(sql).bind(team).bind(user).execute(pool).await?; });
        Ok(())
    }

    /// Removes a member; whether they were one.
    pub async fn remove_member(&self, team: &str, user: &str) -> Result<bool> {
        let sql = "DELETE FROM team_members WHERE team = $1 AND user_name = $2";
        let n = with_pool!(&self.store, pool => {
            sqlx::query(sql).bind(team).bind(user).execute(pool).await?.rows_affected()
        });
        Ok(n > 0)
    }

    /// The teams a user belongs to.
    pub async fn teams_of(&self, user: &str) -> Result<Vec<String>> {
        Ok(self.memberships().await?.into_iter().filter(|(_, u)| u == user).map(|(t, _)| t).collect())
    }

    // --- preferences ------------------------------------------------------------------

    /// A principal's preferences (defaults when unset).
    pub async fn preferences(&self, kind: &str, name: &str) -> Result<Preferences> {
        let sql = "SELECT model, provider FROM preferences WHERE principal_kind = $1 AND principal_name = $2";
        Ok(with_pool!(&self.store, pool => {
            match sqlx::query(sql).bind(kind).bind(name).fetch_optional(pool).await? {
                Some(row) => Preferences { model: row.try_get("model")?, provider: row.try_get("provider")? },
                None => Preferences::default(),
            }
        }))
    }

    /// Every preferred model, keyed `kind/name` (for the gateway).
    pub async fn preferred_models(&self) -> Result<std::collections::HashMap<String, String>> {
        let sql = "SELECT principal_kind, principal_name, model FROM preferences WHERE model IS NOT NULL";
        Ok(with_pool!(&self.store, pool => {
            let mut out = std::collections::HashMap::new();
            for row in sqlx::query(sql).fetch_all(pool).await? {
                let (kind, name, model): (String, String, String) =
                    (row.try_get("principal_kind")?, row.try_get("principal_name")?, row.try_get("model")?);
                out.insert(format!("{kind}/{name}"), model);
            }
            out
        }))
    }

    /// Sets a principal's preferences.
    pub async fn put_preferences(&self, kind: &str, name: &str, p: &Preferences, now_ms: i64) -> Result<()> {
        let sql = "INSERT INTO preferences (principal_kind, principal_name, model, provider, updated_at_ms) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (principal_kind, principal_name) DO UPDATE SET \
                   model = EXCLUDED.model, provider = EXCLUDED.provider, updated_at_ms = EXCLUDED.updated_at_ms";
        with_pool!(&self.store, pool => {
            sqlx::query(sql).bind(kind).bind(name).bind(&p.model).bind(&p.provider).bind(now_ms).execute(pool).await?;
        });
        Ok(())
    }

    // --- audit ------------------------------------------------------------------------

    /// Appends an audit entry. `before`/`after` must already have secrets masked.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        before: Option<&Value>,
        after: Option<&Value>,
        now_ms: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO audit_log (ts_ms, actor, action, target, before_doc, after_doc) VALUES ($1, $2, $3, $4, $5, $6)";
        let (b, a) = (before.map(Value::to_string), after.map(Value::to_string));
        with_pool!(&self.store, pool => {
            sqlx::query(sql).bind(now_ms).bind(actor).bind(action).bind(target).bind(b).bind(a).execute(pool).await?;
        });
        Ok(())
    }

    /// Audit entries newest first, older than `before_id` when given.
    pub async fn audit_log(
        &self,
        limit: i64,
        before_id: Option<i64>,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEntry>> {
        // An empty filter value matches everything: `$3 = ''` short-circuits.
        let sql = "SELECT id, ts_ms, actor, action, target, before_doc, after_doc FROM audit_log \
                   WHERE id < $1 AND ($3 = '' OR action = $3) AND ($4 = '' OR LOWER(actor) LIKE LOWER($5) ESCAPE '\\') \
                   AND ($6 = '' OR LOWER(target) LIKE LOWER($7) ESCAPE '\\') ORDER BY id DESC LIMIT $2";
        let like = |s: &Option<String>| {
            s.as_deref().map_or(String::new(), |s| {
                format!("%{}%", s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
            })
        };
        let (action, actor, target) = (
            filter.action.clone().unwrap_or_default(),
            filter.actor.clone().unwrap_or_default(),
            filter.target.clone().unwrap_or_default(),
        );
        Ok(with_pool!(&self.store, pool => {
            let mut out = Vec::new();
            let rows = sqlx::query(sql)
                .bind(before_id.unwrap_or(i64::MAX))
                .bind(limit)
                .bind(&action)
                .bind(&actor)
                .bind(like(&filter.actor))
                .bind(&target)
                .bind(like(&filter.target))
                .fetch_all(pool)
                .await?;
            for row in rows {
                let before: Option<String> = row.try_get("before_doc")?;
                let after: Option<String> = row.try_get("after_doc")?;
                out.push(AuditEntry {
                    id: row.try_get("id")?,
                    ts_ms: row.try_get("ts_ms")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    before: before.as_deref().map(doc_of),
                    after: after.as_deref().map(doc_of),
                });
            }
            out
        }))
    }

    // --- usage rollups ----------------------------------------------------------------

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

    // --- scheduler bookkeeping --------------------------------------------------------

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

#[async_trait::async_trait]
impl ResourceStore for SqlStore {
    async fn list(&self, kind: Option<Kind>) -> Result<Vec<StoredResource>> {
        let sql = "SELECT kind, namespace, name, generation, document, created_at_ms, updated_at_ms FROM resources \
                   WHERE ($1 = '' OR kind = $1) ORDER BY kind, namespace, name";
        let filter = kind.map(Kind::as_str).unwrap_or("");
        let mut out = with_pool!(&self.store, pool => {
            let mut out = Vec::new();
            for row in sqlx::query(sql).bind(filter).fetch_all(pool).await? {
                let kind: String = row.try_get("kind")?;
                let document: String = row.try_get("document")?;
                out.push(StoredResource {
                    kind: kind_of(&kind)?,
                    namespace: row.try_get("namespace")?,
                    name: row.try_get("name")?,
                    generation: row.try_get("generation")?,
                    document: doc_of(&document),
                    created_at_ms: row.try_get("created_at_ms")?,
                    updated_at_ms: row.try_get("updated_at_ms")?,
                });
            }
            out
        });
        out.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
        Ok(out)
    }

    async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<StoredResource>> {
        let sql = "SELECT generation, document, created_at_ms, updated_at_ms FROM resources \
                   WHERE kind = $1 AND namespace = $2 AND name = $3";
        Ok(with_pool!(&self.store, pool => {
            match sqlx::query(sql).bind(kind.as_str()).bind(namespace).bind(name).fetch_optional(pool).await? {
                None => None,
                Some(row) => {
                    let document: String = row.try_get("document")?;
                    Some(StoredResource {
                        kind,
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        generation: row.try_get("generation")?,
                        document: doc_of(&document),
                        created_at_ms: row.try_get("created_at_ms")?,
                        updated_at_ms: row.try_get("updated_at_ms")?,
                    })
                }
            }
        }))
    }

    async fn put(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        document: Value,
        mode: WriteMode,
    ) -> Result<StoredResource> {
        let now = tollgate_dataplane::now_ms();
        let existing = self.get(kind, namespace, name).await?;
        let what = format!("{} {namespace}/{name}", kind.as_str());
        let text = document.to_string();
        let generation = match (&existing, mode) {
            (Some(_), WriteMode::Create) => return Err(Error::Conflict(format!("{what} exists already"))),
            (None, WriteMode::Replace(_)) => return Err(Error::NotFound(format!("no {what}"))),
            (Some(e), WriteMode::Replace(Some(g))) if e.generation != g => {
                return Err(Error::Conflict(format!(
                    "{what} changed since generation {g} (it is at {}); read it again",
                    e.generation
                )));
            }
            (Some(e), _) => e.generation + 1,
            (None, _) => 1,
        };
        // NB: the generation check is repeated in the UPDATE itself so two concurrent
        // writers cannot both succeed.
        let affected = match &existing {
            None => {
                let sql = "INSERT INTO resources (kind, namespace, name, generation, document, created_at_ms, updated_at_ms) \
                           VALUES ($1, $2, $3, 1, $4, $5, $5) ON CONFLICT (kind, namespace, name) DO NOTHING";
                with_pool!(&self.store, pool => {
                    sqlx::query(sql).bind(kind.as_str()).bind(namespace).bind(name).bind(&text).bind(now)
                        .execute(pool).await?.rows_affected()
                })
            }
            Some(e) => {
                let sql = "UPDATE resources SET generation = $1, document = $2, updated_at_ms = $3 \
                           WHERE kind = $4 AND namespace = $5 AND name = $6 AND generation = $7";
                with_pool!(&self.store, pool => {
                    sqlx::query(sql).bind(generation).bind(&text).bind(now).bind(kind.as_str()).bind(namespace)
                        .bind(name).bind(e.generation).execute(pool).await?.rows_affected()
                })
            }
        };
        if affected == 0 {
            return Err(Error::Conflict(format!("{what} was changed concurrently; read it again")));
        }
        Ok(StoredResource {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            generation,
            document,
            created_at_ms: existing.as_ref().map_or(now, |e| e.created_at_ms),
            updated_at_ms: now,
        })
    }

    async fn put_provider_key(&self, _namespace: &str, secret: &str, key: &str, value: &str) -> Result<()> {
        // NB: standalone secrets are not namespaced (the secrets file and the
        // TOLLGATE_SECRET_<NAME>_<KEY> variables are not either).
        self.put_secret(secret, key, value, tollgate_dataplane::now_ms()).await
    }

    async fn provider_key(&self, _namespace: &str, secret: &str, key: &str) -> Result<Option<KeyState>> {
        Ok(self.secret_updated_at(secret, key).await?.map(|at| KeyState { updated_at_ms: Some(at) }))
    }

    async fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<StoredResource>> {
        let Some(existing) = self.get(kind, namespace, name).await? else { return Ok(None) };
        let sql = "DELETE FROM resources WHERE kind = $1 AND namespace = $2 AND name = $3";
        with_pool!(&self.store, pool => {
            sqlx::query(sql).bind(kind.as_str()).bind(namespace).bind(name).execute(pool).await?;
        });
        Ok(Some(existing))
    }
}
