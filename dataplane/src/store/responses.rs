//! Conversation state of the OpenAI Responses API: each stored answer (`store: true`) with
//! the input items of its request, scoped to the principal that created it. A conversation
//! is the chain of `previous_response_id` links, read back in one recursive query; another
//! principal's response is treated as absent everywhere (reads, deletes, chains). Old
//! answers are pruned by the control plane's scheduler.

use serde_json::Value;
use sqlx::Row;

use super::Store;
use crate::error::{Error, Result};

/// One stored Responses API answer, scoped to the principal that created it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub id: String,
    pub principal_kind: String,
    pub principal_name: String,
    pub created_at_ms: i64,
    pub previous_response_id: Option<String>,
    pub model: String,
    /// This request's own input items (JSON array of item objects, each with an `id`).
    pub input_items: serde_json::Value,
    /// The whole Response object as returned to the client.
    pub response: serde_json::Value,
}

impl StoredResponse {
    /// This request's input items (a non-array value counts as one item, `null` as none).
    fn inputs(&self) -> impl Iterator<Item = &Value> {
        items(&self.input_items)
    }

    /// The items the model produced (`response.output`).
    fn outputs(&self) -> impl Iterator<Item = &Value> {
        items(self.response.get("output").unwrap_or(&Value::Null))
    }
}

fn items(v: &Value) -> impl Iterator<Item = &Value> {
    let slice: &[Value] = match v {
        Value::Array(a) => a,
        Value::Null => &[],
        other => std::slice::from_ref(other),
    };
    slice.iter()
}

/// A chain of responses read from the database, oldest first.
struct Chain {
    links: Vec<StoredResponse>,
    /// Whether the chain reaches its first response, or stops at `max_depth`: `false` when
    /// an ancestor is gone (deleted, pruned) or another principal's.
    whole: bool,
}

const COLUMNS: &str =
    "id, principal_kind, principal_name, created_at_ms, previous_response_id, model, input_items, response";

/// Decodes a `responses` row (a macro because the row type differs per backend).
macro_rules! response_from_row {
    ($row:expr) => {{
        let row = $row;
        (|| -> Result<StoredResponse> {
            let id: String = row.try_get("id")?;
            let json = |column: &str, text: String| {
                serde_json::from_str::<Value>(&text).map_err(|e| {
                    Error::Config(format!("stored response {id:?} has invalid JSON in {column}: {e}"))
                })
            };
            Ok(StoredResponse {
                principal_kind: row.try_get("principal_kind")?,
                principal_name: row.try_get("principal_name")?,
                created_at_ms: row.try_get("created_at_ms")?,
                previous_response_id: row.try_get("previous_response_id")?,
                model: row.try_get("model")?,
                input_items: json("input_items", row.try_get("input_items")?)?,
                response: json("response", row.try_get("response")?)?,
                id,
            })
        })()
    }};
}

impl Store {
    /// Stores a response (ids are unique: storing one twice is a database error).
    pub async fn put_response(&self, r: &StoredResponse) -> Result<()> {
        let sql = format!("INSERT INTO responses ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
        let input_items = r.input_items.to_string();
        let response = r.response.to_string();
        with_pool!(self, pool => {
            sqlx::query(&sql)
                .bind(&r.id)
                .bind(&r.principal_kind)
                .bind(&r.principal_name)
                .bind(r.created_at_ms)
                .bind(&r.previous_response_id)
                .bind(&r.model)
                .bind(&input_items)
                .bind(&response)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// None when absent or owned by another principal.
    pub async fn get_response(
        &self,
        id: &str,
        principal_kind: &str,
        principal_name: &str,
    ) -> Result<Option<StoredResponse>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM responses WHERE id = $1 AND principal_kind = $2 AND principal_name = $3"
        );
        with_pool!(self, pool => {
            let row = sqlx::query(&sql)
                .bind(id)
                .bind(principal_kind)
                .bind(principal_name)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(|row| response_from_row!(row)).transpose()
        })
    }

    /// false when absent or another principal's.
    pub async fn delete_response(
        &self,
        id: &str,
        principal_kind: &str,
        principal_name: &str,
    ) -> Result<bool> {
        let sql = "DELETE FROM responses WHERE id = $1 AND principal_kind = $2 AND principal_name = $3";
        let deleted = with_pool!(self, pool => {
            sqlx::query(sql).bind(id).bind(principal_kind).bind(principal_name).execute(pool).await?.rows_affected()
        });
        Ok(deleted > 0)
    }

    /// The conversation up to and including `id`, oldest first: for each response in the
    /// previous_response_id chain, its input items then its output items (`response.output`).
    /// None when `id` (or an ancestor) is absent or another principal's. At most `max_depth` links.
    ///
    /// NB: `max_depth` counts responses, `id` included (0 counts as 1); a longer chain is cut
    /// to its newest `max_depth` responses rather than refused, so a long conversation keeps
    /// going with its recent context.
    pub async fn conversation(
        &self,
        id: &str,
        principal_kind: &str,
        principal_name: &str,
        max_depth: usize,
    ) -> Result<Option<Vec<serde_json::Value>>> {
        let chain = self.chain(id, principal_kind, principal_name, max_depth).await?;
        if chain.links.is_empty() || !chain.whole {
            return Ok(None);
        }
        Ok(Some(chain.links.iter().flat_map(|r| r.inputs().chain(r.outputs())).cloned().collect()))
    }

    /// The items the response `id` was generated from, oldest first (what
    /// `GET /v1/responses/{id}/input_items` lists): its ancestors' input and output items,
    /// then its own input items. An ancestor that is gone ends the history there (the items
    /// after it are still listed). None when `id` is absent or another principal's.
    pub async fn response_input_items(
        &self,
        id: &str,
        principal_kind: &str,
        principal_name: &str,
        max_depth: usize,
    ) -> Result<Option<Vec<serde_json::Value>>> {
        let chain = self.chain(id, principal_kind, principal_name, max_depth).await?;
        let Some((last, ancestors)) = chain.links.split_last() else {
            return Ok(None);
        };
        let history = ancestors.iter().flat_map(|r| r.inputs().chain(r.outputs()));
        Ok(Some(history.chain(last.inputs()).cloned().collect()))
    }

    /// Deletes responses created before `before_ms`; returns how many.
    pub async fn prune_responses(&self, before_ms: i64) -> Result<u64> {
        let sql = "DELETE FROM responses WHERE created_at_ms < $1";
        Ok(with_pool!(self, pool => sqlx::query(sql).bind(before_ms).execute(pool).await?.rows_affected()))
    }

    /// `id` and up to `max_depth - 1` of its ancestors owned by the same principal, oldest
    /// first, in one recursive query.
    async fn chain(
        &self,
        id: &str,
        principal_kind: &str,
        principal_name: &str,
        max_depth: usize,
    ) -> Result<Chain> {
        let max_depth = i64::try_from(max_depth.max(1)).unwrap_or(i64::MAX);
        // NB: the owner is checked on every link, so another principal's response ends the
        // chain as if it were absent; the depth bound also ends a (never written) cycle.
        let sql = format!(
            "WITH RECURSIVE chain (depth, {COLUMNS}) AS ( \
               SELECT CAST(1 AS BIGINT), {COLUMNS} FROM responses \
               WHERE id = $1 AND principal_kind = $2 AND principal_name = $3 \
             UNION ALL \
               SELECT c.depth + 1, r.id, r.principal_kind, r.principal_name, r.created_at_ms, \
                      r.previous_response_id, r.model, r.input_items, r.response \
               FROM responses r JOIN chain c ON r.id = c.previous_response_id \
               WHERE r.principal_kind = $2 AND r.principal_name = $3 AND c.depth < $4 \
             ) SELECT {COLUMNS} FROM chain ORDER BY depth DESC"
        );
        let links: Vec<StoredResponse> = with_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(id)
                .bind(principal_kind)
                .bind(principal_name)
                .bind(max_depth)
                .fetch_all(pool)
                .await?;
            rows.iter().map(|row| response_from_row!(row)).collect::<Result<_>>()?
        });
        let whole = match links.first() {
            None => false,
            Some(oldest) => {
                oldest.previous_response_id.is_none()
                    || i64::try_from(links.len()).unwrap_or(i64::MAX) >= max_depth
            }
        };
        Ok(Chain { links, whole })
    }
}
