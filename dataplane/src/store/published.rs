//! The configuration the operator last published, shared through the database with every
//! gateway ([`crate::config_sync`]).

use sqlx::Row;

use super::Store;
use crate::error::Result;

impl Store {
    /// Records `config` (JSON) with its `hash` as the configuration in force.
    pub async fn publish_config(&self, hash: &str, config: &str, now_ms: i64) -> Result<()> {
        let sql = "INSERT INTO published_config (id, hash, config, published_at_ms) VALUES (1, $1, $2, $3) \
                   ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, config = excluded.config, \
                   published_at_ms = excluded.published_at_ms";
        with_pool!(self, pool => {
            sqlx::query(sql).bind(hash).bind(config).bind(now_ms).execute(pool).await?;
        });
        Ok(())
    }

    /// The hash of the published configuration, if any (cheap enough to ask every second).
    pub async fn published_config_hash(&self) -> Result<Option<String>> {
        let sql = "SELECT hash FROM published_config WHERE id = 1";
        Ok(with_pool!(self, pool => {
            match sqlx::query(sql).fetch_optional(pool).await? {
                Some(row) => Some(row.try_get("hash")?),
                None => None,
            }
        }))
    }

    /// The published configuration: its hash and JSON.
    pub async fn published_config(&self) -> Result<Option<(String, String)>> {
        let sql = "SELECT hash, config FROM published_config WHERE id = 1";
        Ok(with_pool!(self, pool => {
            match sqlx::query(sql).fetch_optional(pool).await? {
                Some(row) => Some((row.try_get("hash")?, row.try_get("config")?)),
                None => None,
            }
        }))
    }
}
