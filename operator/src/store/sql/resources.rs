//! Tollgate resources (`resources`: one row per kind, namespace and name, with a generation
//! checked on every write) and the provider keys given to the API (`provider_secrets`,
//! write-only).

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::Row;
use tollgate_dataplane::secrets::SecretString;

use super::{SqlStore, doc_of};
use crate::error::{Error, Result};
use crate::store::{KeyState, Kind, ResourceStore, StoredResource, WriteMode};

fn kind_of(s: &str) -> Result<Kind> {
    Kind::parse(s).ok_or_else(|| Error::Conflict(format!("stored resource of unknown kind {s:?}")))
}

impl SqlStore {
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
