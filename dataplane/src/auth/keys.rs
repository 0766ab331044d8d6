use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// Prefix of every virtual key.
pub const KEY_PREFIX: &str = "tg-";
/// Random bytes in a key (192 bits).
const KEY_BYTES: usize = 24;

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A person.
    Developer,
    /// A team (shared key).
    Team,
    /// An agent workload.
    Agent,
}

impl PrincipalKind {
    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Developer => "developer",
            Self::Team => "team",
            Self::Agent => "agent",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "developer" => Some(Self::Developer),
            "team" => Some(Self::Team),
            "agent" => Some(Self::Agent),
            _ => None,
        }
    }
}

/// What a principal may do in the control plane.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only, own usage.
    Developer,
    /// Read-only over the budgets they own.
    Superuser,
    /// Everything.
    Admin,
}

impl Role {
    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Developer => "developer",
            Self::Superuser => "superuser",
            Self::Admin => "admin",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "developer" => Some(Self::Developer),
            "superuser" => Some(Self::Superuser),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// The longest principal (developer, team, agent) name.
pub const MAX_PRINCIPAL_NAME: usize = 128;

/// The bootstrap admin's principal name (the key from `TOLLGATE_ADMIN_KEY`, the first-start
/// key, `tollgate admin recover`). NB: `:` is outside [`check_principal_name`]'s character
/// set, so no key or user created through the API can share this identity (and with it the
/// admin's keys and request log).
pub const BOOTSTRAP_ADMIN: &str = "tollgate:admin";

/// Why `name` cannot name a principal (developer, team, agent, user), if it cannot: 1-128
/// characters, ASCII letters, digits, `.`, `-`, `_` and `@`, starting with a letter or digit.
/// No spaces or control characters, so a name reads the same in a log line, a CSV export
/// and a database of either kind.
pub fn check_principal_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_PRINCIPAL_NAME {
        return Err(format!("must be at most {MAX_PRINCIPAL_NAME} characters (got {})", name.len()));
    }
    if let Some(bad) =
        name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@')))
    {
        return Err(format!("may contain only letters, digits, '.', '-', '_' and '@' (found {bad:?})"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or a digit".into());
    }
    Ok(())
}

/// The identity a key maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// Developer, team or agent.
    pub kind: PrincipalKind,
    /// Its name (`alice`, `payments`, `support-bot`).
    pub name: String,
    /// Control-plane role.
    pub role: Role,
    /// The team it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

impl Principal {
    /// The bootstrap admin: an identity of its own ([`BOOTSTRAP_ADMIN`]).
    pub fn bootstrap_admin() -> Self {
        Self { kind: PrincipalKind::Developer, name: BOOTSTRAP_ADMIN.into(), role: Role::Admin, team: None }
    }

    /// Whether `other` is the same identity (kind and name; role and team aside).
    pub fn same_identity(&self, other: &Principal) -> bool {
        self.kind == other.kind && self.name == other.name
    }
}

/// A stored key, without the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    /// Stable id (UUID).
    pub id: String,
    /// A label for people.
    pub name: String,
    /// `tg-` and the first characters, for recognising a key in lists.
    pub display_prefix: String,
    /// Who it authenticates as.
    pub principal: Principal,
    /// Models it may use; empty means every configured model.
    pub allowed_models: Vec<String>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// Expiry, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// Revocation time, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<i64>,
    /// Requests per minute this key may make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens (input estimate + max output) per minute this key may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// SHA-256 of the key.
    #[serde(skip)]
    pub hash: [u8; 32],
}

impl KeyRecord {
    /// Whether the key may call `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.allowed_models.is_empty() || self.allowed_models.iter().any(|m| m == model)
    }

    /// Whether the key is an admin key that works at `now_ms`.
    pub fn is_active_admin(&self, now_ms: i64) -> bool {
        self.principal.role == Role::Admin && self.unusable_at(now_ms).is_none()
    }

    /// Why the key cannot be used at `now_ms`, if it cannot.
    pub fn unusable_at(&self, now_ms: i64) -> Option<ApiError> {
        if self.revoked_at_ms.is_some() {
            return Some(ApiError::unauthenticated("key_revoked", "this API key has been revoked"));
        }
        match self.expires_at_ms {
            Some(exp) if exp <= now_ms => {
                Some(ApiError::unauthenticated("key_expired", "this API key has expired"))
            }
            _ => None,
        }
    }
}

/// A freshly generated key: the secret (shown once) and its record.
#[derive(Debug)]
pub struct NewKey {
    /// The full key. Give it to the holder once; it is not stored.
    pub secret: String,
    /// What is stored.
    pub record: KeyRecord,
}

/// SHA-256 of a presented key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Generates a new key for `principal`.
pub fn generate_key(
    name: String,
    principal: Principal,
    allowed_models: Vec<String>,
    expires_at_ms: Option<i64>,
    now_ms: i64,
) -> NewKey {
    let mut bytes = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    record_for(secret, name, principal, allowed_models, expires_at_ms, now_ms)
}

/// Builds the record for a key chosen by the operator (e.g. `TOLLGATE_ADMIN_KEY`).
pub fn record_for(
    secret: String,
    name: String,
    principal: Principal,
    allowed_models: Vec<String>,
    expires_at_ms: Option<i64>,
    now_ms: i64,
) -> NewKey {
    let display_prefix: String = secret.chars().take(KEY_PREFIX.len() + 6).collect();
    let record = KeyRecord {
        id: uuid::Uuid::now_v7().to_string(),
        name,
        display_prefix,
        principal,
        allowed_models,
        created_at_ms: now_ms,
        expires_at_ms,
        revoked_at_ms: None,
        rpm: None,
        tpm: None,
        hash: hash_key(&secret),
    };
    NewKey { secret, record }
}

/// The key a request presents: `Authorization: Bearer`, Anthropic's `x-api-key`, or Azure's
/// `api-key`.
pub fn key_from_headers(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or(v);
        return Some(token.trim());
    }
    ["x-api-key", "api-key"].iter().find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok())).map(str::trim)
}

/// In-memory index of keys by hash.
#[derive(Debug, Default, Clone)]
pub struct KeyCache {
    inner: Arc<RwLock<HashMap<[u8; 32], Arc<KeyRecord>>>>,
}

impl KeyCache {
    /// Replaces the whole index (startup and periodic refresh).
    pub fn replace_all(&self, records: Vec<KeyRecord>) {
        let map = records.into_iter().map(|r| (r.hash, Arc::new(r))).collect();
        if let Ok(mut guard) = self.inner.write() {
            *guard = map;
        }
    }

    /// Adds or replaces one record (after create or revoke).
    pub fn upsert(&self, record: KeyRecord) {
        if let Ok(mut guard) = self.inner.write() {
            guard.insert(record.hash, Arc::new(record));
        }
    }

    /// Marks the key with this id revoked.
    pub fn revoke(&self, id: &str, at_ms: i64) {
        if let Ok(mut guard) = self.inner.write() {
            for record in guard.values_mut() {
                if record.id == id {
                    let mut updated = (**record).clone();
                    updated.revoked_at_ms = Some(at_ms);
                    *record = Arc::new(updated);
                }
            }
        }
    }

    /// Looks up a presented key. The map is indexed by the hash (which reveals nothing about
    /// the key); the final comparison is constant-time all the same.
    pub fn lookup(&self, presented: &str) -> Option<Arc<KeyRecord>> {
        let hash = hash_key(presented);
        let guard = self.inner.read().ok()?;
        let record = guard.get(&hash)?;
        bool::from(record.hash.ct_eq(&hash)).then(|| Arc::clone(record))
    }

    /// Authenticates a request's headers at `now_ms`.
    pub fn authenticate(&self, headers: &HeaderMap, now_ms: i64) -> Result<Arc<KeyRecord>, ApiError> {
        let presented = key_from_headers(headers).filter(|k| !k.is_empty()).ok_or_else(|| {
            ApiError::unauthenticated(
                "missing_api_key",
                "no API key: send `Authorization: Bearer tg-...` (or `x-api-key`)",
            )
        })?;
        let record = self
            .lookup(presented)
            .ok_or_else(|| ApiError::unauthenticated("invalid_api_key", "invalid API key"))?;
        match record.unusable_at(now_ms) {
            Some(err) => Err(err),
            None => Ok(record),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal { kind: PrincipalKind::Developer, name: "alice".into(), role: Role::Developer, team: None }
    }

    #[test]
    fn principal_names_are_bounded_and_printable() {
        for ok in ["alice", "Alice.Smith", "alice@example.com", "team_a-1", "7", &"a".repeat(128)] {
            assert_eq!(check_principal_name(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(129);
        let nul = "al\0ice";
        for (bad, why) in [
            ("", "empty"),
            (long.as_str(), "at most 128"),
            (nul, "'\\0'"),
            ("a\nb", "'\\n'"),
            ("a b", "' '"),
            ("a/b", "'/'"),
            (BOOTSTRAP_ADMIN, "':'"),
            ("-a", "start with"),
            ("élan", "'é'"),
        ] {
            let err = check_principal_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn keys_are_long_random_and_stored_hashed() {
        let a = generate_key("a".into(), alice(), vec![], None, 0);
        let b = generate_key("b".into(), alice(), vec![], None, 0);
        assert!(a.secret.starts_with("tg-"));
        assert_eq!(a.secret.len(), 3 + 32);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.record.hash, hash_key(&a.secret));
        assert_eq!(a.record.display_prefix.len(), 9);
        assert!(a.secret.starts_with(&a.record.display_prefix));
        let json = serde_json::to_string(&a.record).unwrap();
        assert!(!json.contains(&a.secret[9..]), "secret leaked into {json}");
    }

    #[test]
    fn authenticates_and_revokes_and_expires() {
        let cache = KeyCache::default();
        let k = generate_key("a".into(), alice(), vec!["m".into()], Some(1_000), 0);
        cache.upsert(k.record.clone());
        let mut headers = HeaderMap::new();
        assert_eq!(cache.authenticate(&headers, 0).unwrap_err().code, "missing_api_key");
        headers.insert("authorization", format!("Bearer {}", k.secret).parse().unwrap());
        let rec = cache.authenticate(&headers, 10).unwrap();
        assert!(rec.allows_model("m") && !rec.allows_model("n"));
        assert_eq!(cache.authenticate(&headers, 1_000).unwrap_err().code, "key_expired");
        cache.revoke(&k.record.id, 20);
        assert_eq!(cache.authenticate(&headers, 30).unwrap_err().code, "key_revoked");
        let mut other = HeaderMap::new();
        other.insert("x-api-key", "tg-nope".parse().unwrap());
        assert_eq!(cache.authenticate(&other, 0).unwrap_err().code, "invalid_api_key");
    }
}
