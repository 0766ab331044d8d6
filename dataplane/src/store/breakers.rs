//! Circuit-breaker states reported by each gateway ([`crate::Gateway::report_breakers`]),
//! read by the control plane.

use sqlx::Row;

use super::Store;
use crate::error::Result;

/// One breaker as a gateway reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerRow {
    /// The reporting gateway (pod name or a per-process id).
    pub instance: String,
    /// The IP token (`namespace/name`).
    pub ip_token: String,
    /// The model.
    pub model: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// When it was reported (epoch ms).
    pub updated_at_ms: i64,
}

/// Rows older than this are deleted when a gateway reports.
const KEEP_MS: i64 = 86_400_000;

impl Store {
    /// Replaces `instance`'s rows with `states` (IP token, model, state), in one
    /// transaction, and prunes rows nobody has refreshed for a day.
    pub async fn report_breakers(
        &self,
        instance: &str,
        states: &[(String, String, &str)],
        now_ms: i64,
    ) -> Result<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM breaker_states WHERE instance = $1 OR updated_at_ms < $2")
                .bind(instance)
                .bind(now_ms - KEEP_MS)
                .execute(&mut *tx)
                .await?;
            for chunk in states.chunks(500) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO breaker_states (instance, ip_token, model, state, updated_at_ms) ",
                );
                q.push_values(chunk, |mut b, (token, model, state)| {
                    b.push_bind(instance).push_bind(token).push_bind(model).push_bind(*state).push_bind(now_ms);
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Every row reported at or after `since_ms`.
    pub async fn breaker_states(&self, since_ms: i64) -> Result<Vec<BreakerRow>> {
        let sql = "SELECT instance, ip_token, model, state, updated_at_ms FROM breaker_states \
                   WHERE updated_at_ms >= $1 ORDER BY ip_token, model, instance";
        with_pool!(self, pool => {
            let rows = sqlx::query(sql).bind(since_ms).fetch_all(pool).await?;
            rows.iter()
                .map(|row| -> Result<BreakerRow> {
                    Ok(BreakerRow {
                        instance: row.try_get("instance")?,
                        ip_token: row.try_get("ip_token")?,
                        model: row.try_get("model")?,
                        state: row.try_get("state")?,
                        updated_at_ms: row.try_get("updated_at_ms")?,
                    })
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_gateway_replaces_its_own_rows_and_old_rows_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
        let s = |t: &str, m: &str, st: &'static str| (t.to_owned(), m.to_owned(), st);
        store
            .report_breakers("a", &[s("default/x", "m", "open"), s("default/y", "m", "closed")], 1_000)
            .await
            .unwrap();
        store.report_breakers("b", &[s("default/x", "m", "closed")], 2_000).await.unwrap();
        store.report_breakers("a", &[s("default/x", "m", "half_open")], 3_000).await.unwrap();
        let rows = store.breaker_states(0).await.unwrap();
        let got: Vec<(&str, &str, &str)> =
            rows.iter().map(|r| (r.instance.as_str(), r.ip_token.as_str(), r.state.as_str())).collect();
        assert_eq!(got, [("a", "default/x", "half_open"), ("b", "default/x", "closed")]);
        assert_eq!(store.breaker_states(2_500).await.unwrap().len(), 1, "only recent reports");
        // A day later the silent gateway's rows are pruned by the next report.
        store.report_breakers("a", &[], 3_000 + KEEP_MS).await.unwrap();
        assert!(store.breaker_states(0).await.unwrap().is_empty());
    }
}
