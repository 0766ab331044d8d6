//! Virtual keys: what developers and agents hold instead of provider credentials.
//!
//! A key is `tg-` followed by 192 random bits (base64url). Only its SHA-256 is stored, with a
//! short display prefix. Lookups go through [`KeyCache`], an in-memory index by hash that
//! [`KeyService`] updates on every create and revoke, so revocation takes effect at once.
//!
//! A principal is an identity, its kind and name, the name checked by
//! [`check_principal_name`]. The bootstrap admin's name ([`BOOTSTRAP_ADMIN`]) is outside that
//! set, so no key issued through the API shares its identity; [`KeyService::ensure_admin`]
//! restores the preset admin key at every start, so there is always a way back in.

mod keys;
mod service;

pub use keys::{
    BOOTSTRAP_ADMIN, KEY_PREFIX, KeyCache, KeyRecord, MAX_PRINCIPAL_NAME, NewKey, Principal, PrincipalKind,
    Role, check_principal_name, generate_key, hash_key, key_from_headers, record_for,
};
pub use service::KeyService;
