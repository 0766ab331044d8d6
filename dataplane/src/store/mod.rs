//! The database: virtual keys and usage records, on SQLite (standalone) or PostgreSQL
//! (production). One migration set per backend; queries are written once with `$N`
//! placeholders, which both backends accept.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::auth::{KeyRecord, Principal, PrincipalKind, Role};
use crate::error::{Error, Result};
use crate::usage::UsageRecord;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A connection pool to one of the supported databases.
#[derive(Debug, Clone)]
pub enum Store {
    /// A SQLite file (WAL mode).
    Sqlite(SqlitePool),
    /// A PostgreSQL server.
    Postgres(PgPool),
}

/// Runs the same code against whichever pool the store holds.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

mod breakers;
mod findings;
mod published;
mod responses;
pub use breakers::BreakerRow;
pub use findings::FindingQuery;
pub use responses::StoredResponse;

/// Decodes a `virtual_keys` row (a macro because the row type differs per backend).
macro_rules! key_from_row {
    ($row:expr) => {{
        let row = $row;
        (|| -> Result<KeyRecord> {
            let hash: Vec<u8> = row.try_get("key_hash")?;
            let models: String = row.try_get("allowed_models")?;
            let kind: String = row.try_get("principal_kind")?;
            let role: String = row.try_get("role")?;
            let bad = |what: &str, v: &str| Error::Config(format!("stored key has an unknown {what} {v:?}"));
            Ok(KeyRecord {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                display_prefix: row.try_get("display_prefix")?,
                principal: Principal {
                    kind: PrincipalKind::parse(&kind).ok_or_else(|| bad("principal kind", &kind))?,
                    name: row.try_get("principal_name")?,
                    role: Role::parse(&role).ok_or_else(|| bad("role", &role))?,
                    team: row.try_get("team")?,
                },
                allowed_models: serde_json::from_str(&models).unwrap_or_default(),
                created_at_ms: row.try_get("created_at_ms")?,
                expires_at_ms: row.try_get("expires_at_ms")?,
                revoked_at_ms: row.try_get("revoked_at_ms")?,
                rpm: row.try_get::<Option<i64>, _>("rpm")?.map(|v| u64::try_from(v).unwrap_or(0)),
                tpm: row.try_get::<Option<i64>, _>("tpm")?.map(|v| u64::try_from(v).unwrap_or(0)),
                hash: hash.try_into().map_err(|_| bad("hash length", ""))?,
            })
        })()
    }};
}

const KEY_COLUMNS: &str = "id, key_hash, display_prefix, name, principal_kind, principal_name, role, team, \
     allowed_models, created_at_ms, expires_at_ms, revoked_at_ms, rpm, tpm";

impl Store {
    /// Connects to `url` (`sqlite://PATH` creates the file; `postgres://...`) and migrates.
    pub async fn connect(url: &str) -> Result<Self> {
        let store = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                // NB: SQLite's automatic checkpoint runs inside the COMMIT that crosses the
                // threshold, stalling every request waiting on that commit. A background
                // task checkpoints instead (`checkpoint_loop`).
                .pragma("wal_autocheckpoint", "0");
            let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
            SQLITE_MIGRATIONS.run(&pool).await?;
            tokio::spawn(checkpoint_loop(pool.clone()));
            Self::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            Self::Postgres(pool)
        } else {
            return Err(Error::DatabaseUrl(url.to_owned()));
        };
        Ok(store)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.is_ok())
    }

    /// Stores a new key record.
    pub async fn insert_key(&self, record: &KeyRecord) -> Result<()> {
        let models = serde_json::to_string(&record.allowed_models).unwrap_or_else(|_| "[]".into());
        let sql = format!(
            "INSERT INTO virtual_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        );
        with_pool!(self, pool => {
            sqlx::query(&sql)
                .bind(&record.id)
                .bind(record.hash.as_slice())
                .bind(&record.display_prefix)
                .bind(&record.name)
                .bind(record.principal.kind.as_str())
                .bind(&record.principal.name)
                .bind(record.principal.role.as_str())
                .bind(&record.principal.team)
                .bind(&models)
                .bind(record.created_at_ms)
                .bind(record.expires_at_ms)
                .bind(record.revoked_at_ms)
                .bind(record.rpm.map(clamp_i64))
                .bind(record.tpm.map(clamp_i64))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM virtual_keys ORDER BY created_at_ms, id");
        with_pool!(self, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            rows.iter().map(|row| key_from_row!(row)).collect()
        })
    }

    /// Finds one key by its hash (a cache miss).
    pub async fn find_key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM virtual_keys WHERE key_hash = $1");
        with_pool!(self, pool => {
            let row = sqlx::query(&sql).bind(hash.as_slice()).fetch_optional(pool).await?;
            row.as_ref().map(|row| key_from_row!(row)).transpose()
        })
    }

    /// Marks a key revoked. Returns whether a key with that id existed.
    pub async fn revoke_key(&self, id: &str, at_ms: i64) -> Result<bool> {
        let sql = "UPDATE virtual_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $1) WHERE id = $2";
        let affected = with_pool!(self, pool => {
            sqlx::query(sql).bind(at_ms).bind(id).execute(pool).await?.rows_affected()
        });
        Ok(affected > 0)
    }

    /// Revokes every active key of the principal `kind`/`name` (a deleted user); the ids.
    pub async fn revoke_keys_of(&self, kind: PrincipalKind, name: &str, at_ms: i64) -> Result<Vec<String>> {
        let select = "SELECT id FROM virtual_keys WHERE principal_kind = $1 AND principal_name = $2 \
                      AND revoked_at_ms IS NULL ORDER BY created_at_ms, id";
        let update = "UPDATE virtual_keys SET revoked_at_ms = $1 WHERE principal_kind = $2 \
                      AND principal_name = $3 AND revoked_at_ms IS NULL";
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut ids = Vec::new();
            for row in sqlx::query(select).bind(kind.as_str()).bind(name).fetch_all(&mut *tx).await? {
                ids.push(row.try_get::<String, _>("id")?);
            }
            sqlx::query(update).bind(at_ms).bind(kind.as_str()).bind(name).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(ids)
        })
    }

    /// Gives every key of the principal `kind`/`name` the role `role` (a user's role changed
    /// in the directory); how many keys changed.
    pub async fn set_role_of(&self, kind: PrincipalKind, name: &str, role: Role) -> Result<u64> {
        let sql = "UPDATE virtual_keys SET role = $1 WHERE principal_kind = $2 AND principal_name = $3 AND role <> $1";
        Ok(with_pool!(self, pool => {
            sqlx::query(sql).bind(role.as_str()).bind(kind.as_str()).bind(name).execute(pool).await?.rows_affected()
        }))
    }

    /// Makes the key `id` a working key of `principal` again: not revoked, not expiring
    /// (the preset `TOLLGATE_ADMIN_KEY` at start).
    pub async fn restore_key(&self, id: &str, principal: &Principal) -> Result<()> {
        let sql = "UPDATE virtual_keys SET revoked_at_ms = NULL, expires_at_ms = NULL, principal_kind = $1, \
                   principal_name = $2, role = $3, team = $4 WHERE id = $5";
        with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(principal.kind.as_str())
                .bind(&principal.name)
                .bind(principal.role.as_str())
                .bind(&principal.team)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Moves the bootstrap admin keys of databases written before the bootstrap admin had an
    /// identity of its own (`developer/admin`, which any developer key named `admin` shared)
    /// to `new_name`, with their ledger rows. Only keys Tollgate itself issued (named
    /// `admin (first start)` or `admin (TOLLGATE_ADMIN_KEY)`, admin role) move. Idempotent.
    pub async fn adopt_bootstrap_admin(&self, new_name: &str) -> Result<u64> {
        let owned = "principal_kind = 'developer' AND principal_name = 'admin' AND role = 'admin' \
                     AND name IN ('admin (first start)', 'admin (TOLLGATE_ADMIN_KEY)')";
        let usage = format!(
            "UPDATE usage_records SET principal_name = $1 WHERE principal_kind = 'developer' \
             AND principal_name = 'admin' AND key_id IN (SELECT id FROM virtual_keys WHERE {owned})"
        );
        let keys = format!("UPDATE virtual_keys SET principal_name = $1 WHERE {owned}");
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(&usage).bind(new_name).execute(&mut *tx).await?;
            let moved = sqlx::query(&keys).bind(new_name).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok(moved)
        })
    }

    /// Writes a batch of usage records (and their budget charges) in one transaction.
    pub async fn insert_usage(&self, records: &[UsageRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // One multi-row statement per table per batch: a batch costs four round trips to
        // the database whatever its size. Chunked to stay under the bind-parameter limits.
        // NB: one statement in autocommit is atomic on its own: a batch of up to 500
        // records, charges included (a trigger fans them out), is one round trip.
        if records.len() <= 500 {
            with_pool!(self, pool => {
                usage_insert(records).build().execute(pool).await?;
            });
            return Ok(());
        }
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for chunk in records.chunks(500) {
                usage_insert(chunk).build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Total charged to a budget window, from the ledger (rebuilds and status).
    pub async fn budget_spent(&self, budget_id: &str, window_start_ms: i64) -> Result<u64> {
        let sql = "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS spent FROM usage_charges \
             WHERE budget_id = $1 AND window_start_ms = $2";
        let spent: i64 = with_pool!(self, pool => {
            // NB: SUM over BIGINT is NUMERIC in PostgreSQL, hence the CAST.
            sqlx::query(sql).bind(budget_id).bind(window_start_ms).fetch_one(pool).await?.try_get("spent")?
        });
        Ok(u64::try_from(spent).unwrap_or(0))
    }

    /// The SQLite database file, when the store is one.
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        match self {
            Self::Sqlite(pool) => {
                let f = pool.connect_options().get_filename().to_path_buf();
                (!f.as_os_str().is_empty() && f.as_os_str() != ":memory:").then_some(f)
            }
            Self::Postgres(_) => None,
        }
    }

    /// Whether the usage record of this request at this time exists (journal replay).
    pub async fn has_usage_at(&self, request_id: &str, ts_ms: i64) -> Result<bool> {
        let sql = "SELECT COUNT(*) AS n FROM usage_records WHERE request_id = $1 AND ts_ms = $2";
        let n: i64 = with_pool!(self, pool => {
            sqlx::query(sql).bind(request_id).bind(ts_ms).fetch_one(pool).await?.try_get("n")?
        });
        Ok(n > 0)
    }

    /// Whether a usage record with this request id exists (crash-recovery checks).
    pub async fn has_usage(&self, request_id: &str) -> Result<bool> {
        let sql = "SELECT COUNT(*) AS n FROM usage_records WHERE request_id = $1";
        let n: i64 = with_pool!(self, pool => {
            sqlx::query(sql).bind(request_id).fetch_one(pool).await?.try_get("n")?
        });
        Ok(n > 0)
    }

    /// Usage records, newest first (for tests and the admin API).
    /// The request log, newest first: at most `q.limit` rows with an id below
    /// `q.before_id`, narrowed in SQL to the principals, model and outcome asked for.
    pub async fn usage_page(&self, q: &RequestQuery) -> Result<Vec<UsageRow>> {
        let mut sql = String::from(
            "SELECT id, request_id, ts_ms, principal_kind, principal_name, endpoint, model, provider, \
             ip_token, stream, input_tokens, output_tokens, latency_ms, status, error_class, cost_micros, \
             downgraded_from FROM usage_records WHERE 1=1",
        );
        let mut binds: Vec<String> = Vec::new();
        let mut bind = |sql: &mut String, v: &str| {
            binds.push(v.to_owned());
            sql.push_str(&format!("${}", binds.len()));
        };
        if let Some(principals) = &q.principals {
            if principals.is_empty() {
                return Ok(Vec::new());
            }
            sql.push_str(" AND (");
            for (i, (kind, name)) in principals.iter().enumerate() {
                sql.push_str(if i == 0 { "(principal_kind = " } else { " OR (principal_kind = " });
                bind(&mut sql, kind);
                sql.push_str(" AND principal_name = ");
                bind(&mut sql, name);
                sql.push(')');
            }
            sql.push(')');
        }
        if let Some(model) = &q.model {
            sql.push_str(" AND model = ");
            bind(&mut sql, model);
        }
        match q.outcome {
            Some(RequestOutcome::Ok) => sql.push_str(" AND status < 400"),
            Some(RequestOutcome::Error) => sql.push_str(" AND status >= 400"),
            None => {}
        }
        if let Some(before) = q.before_id {
            sql.push_str(&format!(" AND id < {before}"));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", q.limit.clamp(1, 1000)));
        with_pool!(self, pool => {
            let mut query = sqlx::query(&sql);
            for b in &binds {
                query = query.bind(b);
            }
            let rows = query.fetch_all(pool).await?;
            rows.iter()
                .map(|row| -> Result<UsageRow> {
                    Ok(UsageRow {
                        id: row.try_get("id")?,
                        request_id: row.try_get("request_id")?,
                        ts_ms: row.try_get("ts_ms")?,
                        principal_kind: row.try_get("principal_kind")?,
                        principal_name: row.try_get("principal_name")?,
                        endpoint: row.try_get("endpoint")?,
                        model: row.try_get("model")?,
                        provider: row.try_get("provider")?,
                        ip_token: row.try_get("ip_token")?,
                        stream: row.try_get("stream")?,
                        input_tokens: row.try_get("input_tokens")?,
                        output_tokens: row.try_get("output_tokens")?,
                        latency_ms: row.try_get("latency_ms")?,
                        status: row.try_get("status")?,
                        error_class: row.try_get("error_class")?,
                        cost_micros: row.try_get("cost_micros")?,
                        downgraded_from: row.try_get("downgraded_from")?,
                    })
                })
                .collect()
        })
    }

    /// The newest `limit` usage records, newest first.
    pub async fn recent_usage(&self, limit: i64) -> Result<Vec<UsageRow>> {
        self.usage_page(&RequestQuery { limit: limit.clamp(1, 1000), ..RequestQuery::default() }).await
    }
}

/// A multi-row INSERT of usage records (at most 500 rows: 20 binds each stays under the
/// backends' parameter limits).
fn usage_insert<'a, DB>(records: &'a [UsageRecord]) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i32: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut q = sqlx::QueryBuilder::new(
        "INSERT INTO usage_records (request_id, ts_ms, key_id, principal_kind, principal_name, \
         endpoint, model, upstream_model, provider, ip_token, stream, input_tokens, output_tokens, \
         cached_input_tokens, latency_ms, status, error_class, cost_micros, downgraded_from, charges) ",
    );
    q.push_values(records, |mut b, r| {
        let charges = (!r.charges.is_empty()).then(|| {
            let list: Vec<serde_json::Value> = r
                .charges
                .iter()
                .map(|c| serde_json::json!({ "b": c.budget_id, "w": c.window_start_ms }))
                .collect();
            serde_json::Value::Array(list).to_string()
        });
        b.push_bind(r.request_id.clone())
            .push_bind(r.ts_ms)
            .push_bind(r.key_id.clone())
            .push_bind(r.principal_kind.clone())
            .push_bind(r.principal_name.clone())
            .push_bind(r.endpoint.as_ref())
            .push_bind(r.model.clone())
            .push_bind(r.upstream_model.clone())
            .push_bind(r.provider.clone())
            .push_bind(r.ip_token.clone())
            .push_bind(r.stream)
            .push_bind(clamp_i64(r.input_tokens))
            .push_bind(clamp_i64(r.output_tokens))
            .push_bind(clamp_i64(r.cached_input_tokens))
            .push_bind(clamp_i64(r.latency_ms))
            .push_bind(i32::from(r.status))
            .push_bind(r.error_class.as_deref())
            .push_bind(clamp_i64(r.cost_micros))
            .push_bind(r.downgraded_from.clone())
            .push_bind(charges);
    });
    q
}

/// Checkpoints the WAL off the request path, once a second (PASSIVE: never waits for
/// readers or writers).
async fn checkpoint_loop(pool: SqlitePool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::debug!(error = %e, "WAL checkpoint failed; retrying next second");
        }
    }
}

/// Which requests [`Store::usage_page`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestQuery {
    /// Only these principals (`kind`, `name`); `None`: everyone.
    pub principals: Option<Vec<(String, String)>>,
    /// Only this model.
    pub model: Option<String>,
    /// Only successes or only errors.
    pub outcome: Option<RequestOutcome>,
    /// Only rows older than this id (the previous page's last).
    pub before_id: Option<i64>,
    /// Rows at most (1-1000).
    pub limit: i64,
}

impl Default for RequestQuery {
    fn default() -> Self {
        Self { principals: None, model: None, outcome: None, before_id: None, limit: 100 }
    }
}

/// A request's outcome, for filtering the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestOutcome {
    /// Status below 400.
    Ok,
    /// Status 400 and above.
    Error,
}

/// A usage record as read back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageRow {
    /// Position in the ledger (the request log's cursor).
    pub id: i64,
    pub request_id: String,
    pub ts_ms: i64,
    pub principal_kind: Option<String>,
    pub principal_name: Option<String>,
    pub endpoint: String,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub ip_token: Option<String>,
    pub stream: bool,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub latency_ms: i64,
    pub status: i32,
    pub error_class: Option<String>,
    pub cost_micros: i64,
    pub downgraded_from: Option<String>,
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
