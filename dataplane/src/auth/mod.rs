//! Virtual keys: what developers and agents hold instead of provider credentials.
//!
//! A key is `tg-` followed by 192 random bits (base64url). Only its SHA-256 is stored, with a
//! short display prefix. Lookups go through [`KeyCache`], an in-memory index by hash that
//! [`KeyService`] updates on every create and revoke, so revocation takes effect at once.

mod keys;
mod service;

pub use keys::{
    KEY_PREFIX, KeyCache, KeyRecord, NewKey, Principal, PrincipalKind, Role, generate_key, hash_key,
    key_from_headers, record_for,
};
pub use service::KeyService;
