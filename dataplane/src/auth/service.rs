//! Key management over the store, keeping the in-memory cache in step.

use std::sync::Arc;

use http::HeaderMap;

use super::keys::{
    BOOTSTRAP_ADMIN, KeyCache, KeyRecord, NewKey, Principal, PrincipalKind, Role, generate_key, hash_key,
    record_for,
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

    /// The database the keys live in (also holding the data plane's other state, such as
    /// stored Responses API answers).
    pub fn store(&self) -> &Store {
        &self.store
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

    /// Revokes every active key of `kind`/`name` at once (a user deleted from the
    /// directory); the revoked keys' ids.
    pub async fn revoke_principal(
        &self,
        kind: PrincipalKind,
        name: &str,
        now_ms: i64,
    ) -> Result<Vec<String>> {
        let ids = self.store.revoke_keys_of(kind, name, now_ms).await?;
        for id in &ids {
            self.cache.revoke(id, now_ms);
        }
        Ok(ids)
    }

    /// Gives every key of `kind`/`name` the role `role` at once (a user's role changed in
    /// the directory); how many keys changed.
    pub async fn set_role(&self, kind: PrincipalKind, name: &str, role: Role) -> Result<u64> {
        let changed = self.store.set_role_of(kind, name, role).await?;
        if changed > 0 {
            self.reload().await?;
        }
        Ok(changed)
    }

    /// Issues a new bootstrap-admin key (`tollgate admin recover`); the secret is shown once.
    pub async fn recover_admin(&self, now_ms: i64) -> Result<NewKey> {
        self.create("admin (recovered)".into(), Principal::bootstrap_admin(), vec![], None, now_ms).await
    }

    /// Makes sure an admin key exists, so there is always a way in. With `preset` (from
    /// `TOLLGATE_ADMIN_KEY`) that key is registered if it is not yet, and made to work again
    /// if it was revoked, expired or demoted: starting with the same preset key restores
    /// access. Without one, if no active admin key exists, one is created. Returns a newly
    /// generated secret, to be printed once.
    pub async fn ensure_admin(&self, preset: Option<&str>, now_ms: i64) -> Result<Option<String>> {
        let adopted = self.store.adopt_bootstrap_admin(BOOTSTRAP_ADMIN).await?;
        if adopted > 0 {
            tracing::info!(
                keys = adopted,
                name = BOOTSTRAP_ADMIN,
                "bootstrap admin keys moved to their own identity"
            );
            self.reload().await?;
        }
        let admin = Principal::bootstrap_admin();
        if let Some(secret) = preset {
            match self.store.find_key_by_hash(&hash_key(secret)).await? {
                Some(existing) if existing.is_active_admin(now_ms) => {}
                Some(existing) => {
                    tracing::warn!(
                        key_id = %existing.id,
                        "TOLLGATE_ADMIN_KEY was revoked, expired or not an admin key; restoring it as the bootstrap admin"
                    );
                    self.store.restore_key(&existing.id, &admin).await?;
                    self.reload().await?;
                }
                None => {
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
            }
            return Ok(None);
        }
        let keys = self.store.list_keys().await?;
        if keys.iter().any(|k| k.is_active_admin(now_ms)) {
            return Ok(None);
        }
        let key = self.create("admin (first start)".into(), admin, vec![], None, now_ms).await?;
        Ok(Some(key.secret))
    }
}
