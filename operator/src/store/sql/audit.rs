//! The audit log (`audit_log`): who changed what, when, before and after.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::{SqlStore, doc_of};
use crate::error::Result;

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

impl SqlStore {
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
}
