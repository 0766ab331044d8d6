//! Key management over the store, keeping the in-memory cache in step.

use std::sync::Arc;

use http::HeaderMap;

use super::keys::{
    KeyCache, KeyRecord, NewKey, Principal, PrincipalKind, Role, generate_key, hash_key, record_for,
};
use crate::error::{ApiError, Result};
use crate::store::Store;

/// Creates, lists, revokes and authenticates virtual keys.
#[derive(Debug, Clone)]
pub struct KeyService {
    store: Store,
    cache: KeyCache,
}

impl KeyService {
    /// Loads every key from the store into the cache.
    pub async fn load(store: Store) -> Result<Self> {
        let cache = KeyCache::default();
        cache.replace_all(store.list_keys().await?);
        Ok(Self { store, cache })
    }

    /// Re-reads every key (picks up keys and revocations made by other replicas).
    pub async fn reload(&self) -> Result<()> {
        self.cache.replace_all(self.store.list_keys().await?);
        Ok(())
    }

    /// Authenticates a request. A cache miss consults the database once (a key created by
    /// another replica); a database failure is a 503, never a pass.
    pub async fn authenticate(&self, headers: &HeaderMap, now_ms: i64) -> Result<Arc<KeyRecord>, ApiError> {
        match self.cache.authenticate(headers, now_ms) {
            Err(e) if e.code == "invalid_api_key" => {}
            other => return other,
        }
        let presented = super::key_from_headers(headers).unwrap_or_default();
        if !presented.starts_with(super::keys::KEY_PREFIX) {
            return Err(ApiError::unauthenticated("invalid_api_key", "invalid API key"));
        }
        match self.store.find_key_by_hash(&hash_key(presented)).await {
            Ok(Some(record)) => {
                self.cache.upsert(record);
                self.cache.authenticate(headers, now_ms)
            }
            Ok(None) => Err(ApiError::unauthenticated("invalid_api_key", "invalid API key")),
            Err(e) => {
                tracing::error!(error = %e, "key lookup failed");
                Err(ApiError::unavailable("auth_unavailable", "authentication is unavailable; retry shortly"))
            }
        }
    }

    /// Creates a key and returns it (the secret is not stored).
    pub async fn create(
        &self,
        name: String,
        principal: Principal,
        allowed_models: Vec<String>,
        expires_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<NewKey> {
        self.create_limited(name, principal, allowed_models, expires_at_ms, (None, None), now_ms).await
    }

    /// Creates a key with per-minute request and token limits.
    pub async fn create_limited(
        &self,
        name: String,
        principal: Principal,
        allowed_models: Vec<String>,
        expires_at_ms: Option<i64>,
        (rpm, tpm): (Option<u64>, Option<u64>),
        now_ms: i64,
    ) -> Result<NewKey> {
        let mut key = generate_key(name, principal, allowed_models, expires_at_ms, now_ms);
        key.record.rpm = rpm;
        key.record.tpm = tpm;
        self.store.insert_key(&key.record).await?;
        self.cache.upsert(key.record.clone());
        Ok(key)
    }

    /// Every key (metadata only).
    pub async fn list(&self) -> Result<Vec<KeyRecord>> {
        self.store.list_keys().await
    }

    /// Revokes a key at once. Returns whether it existed.
    pub async fn revoke(&self, id: &str, now_ms: i64) -> Result<bool> {
        let existed = self.store.revoke_key(id, now_ms).await?;
        if existed {
            self.cache.revoke(id, now_ms);
        }
        Ok(existed)
    }

    /// Makes sure an admin key exists. With `preset` (from `TOLLGATE_ADMIN_KEY`) that key is
    /// registered if it is not yet; otherwise, if no active admin key exists, one is created.
    /// Returns a newly generated secret, to be printed once.
    pub async fn ensure_admin(&self, preset: Option<&str>, now_ms: i64) -> Result<Option<String>> {
        let admin =
            Principal { kind: PrincipalKind::Developer, name: "admin".into(), role: Role::Admin, team: None };
        if let Some(secret) = preset {
            if self.store.find_key_by_hash(&hash_key(secret)).await?.is_none() {
                let key = record_for(
                    secret.to_owned(),
                    "admin (TOLLGATE_ADMIN_KEY)".into(),
                    admin,
                    vec![],
                    None,
                    now_ms,
                );
                if let Err(e) = self.store.insert_key(&key.record).await {
                    // Another replica starting at the same time may have registered it.
                    if self.store.find_key_by_hash(&key.record.hash).await?.is_none() {
                        return Err(e);
                    }
                }
                self.reload().await?;
            }
            return Ok(None);
        }
        let keys = self.store.list_keys().await?;
        let has_admin =
            keys.iter().any(|k| k.principal.role == Role::Admin && k.unusable_at(now_ms).is_none());
        if has_admin {
            return Ok(None);
        }
        let key = self.create("admin (first start)".into(), admin, vec![], None, now_ms).await?;
        Ok(Some(key.secret))
    }
}
