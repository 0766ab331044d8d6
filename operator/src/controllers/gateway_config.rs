//! Configuration delivery: what the gateway pods of one DataPlane mount.
//!
//! - a ConfigMap `NAME-config` with `config.json`, the compiled [`DataPlaneConfig`], and
//!   annotations naming its version (the config's content hash) and the SHA-256 of the
//!   exact bytes, so a reader can tell a complete, current document from anything else;
//! - a Secret `NAME-provider-keys` with `secrets.yaml` (`SECRET: {KEY: value}`), rendered
//!   from the Secrets the IP tokens reference — the format the gateway's `--secrets` file
//!   already reads.
//!
//! The kubelet swaps mounted ConfigMap and Secret files atomically (a symlink flip), and
//! the gateway keeps its last good configuration when a new one fails to load, so a gateway
//! never runs half a change. Keys never enter the ConfigMap: [`DataPlaneConfig`] holds
//! secret *references* only, and [`config_map`] refuses to publish a document in which
//! any provider key appears anyway (pasted into a URL, say).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use sha2::{Digest, Sha256};
use tollgate_crds::DataPlaneConfig;
use tollgate_crds::status::reason;

use super::dataplane::{
    CONFIG_FILE, PROVIDER_KEYS_HASH_ANNOTATION, SECRETS_FILE, config_map_name, provider_keys_secret_name,
};
use super::{Component, Owner, short_hash};
use crate::error::{Error, Result};

/// ConfigMap annotation: the configuration version (`DataPlaneConfig.hash`).
pub const CONFIG_VERSION_ANNOTATION: &str = "tollgate.dev/config-version";
/// ConfigMap annotation: SHA-256 (hex) of the bytes of `config.json`.
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "tollgate.dev/config-checksum";

/// The Secrets a controller read, by `(namespace, name)`, as their `data` maps. A Secret
/// missing from the map does not exist.
pub type SecretData = BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>;

/// Provider keys in the gateway's secrets-file shape: Secret name → key → value.
/// `Debug` prints names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProviderKeys(BTreeMap<String, BTreeMap<String, String>>);

impl fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> =
            self.0.iter().flat_map(|(n, keys)| keys.keys().map(move |k| format!("{n}/{k}"))).collect();
        f.debug_tuple("ProviderKeys").field(&names).finish()
    }
}

impl ProviderKeys {
    /// The secrets file (`NAME: {KEY: value}` YAML).
    pub fn to_yaml(&self) -> Result<String> {
        Ok(serde_yaml::to_string(&self.0)?)
    }

    /// Short hash of the whole set: changes whenever any key rotates.
    pub fn hash(&self) -> Result<String> {
        Ok(short_hash(self.to_yaml()?.as_bytes()))
    }

    /// The keys as the gateway library reads them, for a gateway running in this process
    /// (the test of configuration propagation; the control plane's own admin API).
    pub fn secret_source(&self) -> tollgate_dataplane::secrets::SecretSource {
        let file = self
            .0
            .iter()
            .map(|(name, keys)| {
                let keys = keys
                    .iter()
                    .map(|(k, v)| (k.clone(), tollgate_dataplane::secrets::SecretString::new(v.clone())))
                    .collect();
                (name.clone(), keys)
            })
            .collect();
        tollgate_dataplane::secrets::SecretSource::from_map(file)
    }

    fn values(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.0
            .iter()
            .flat_map(|(n, keys)| keys.iter().map(move |(k, v)| (n.as_str(), k.as_str(), v.as_str())))
    }
}

/// Why one IP token's key could not be delivered; becomes its `Accepted=False` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyProblem {
    /// The IP token (`namespace/name`).
    pub ip_token: String,
    /// A stable reason (`SecretNotFound`, `SecretKeyNotFound`, `InvalidSpec`).
    pub reason: &'static str,
    /// What to fix. Never contains a key.
    pub message: String,
}

/// The outcome of [`resolve_provider_keys`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedKeys {
    /// Keys of every IP token that had one.
    pub keys: ProviderKeys,
    /// IP tokens whose key is missing or unusable (the controller leaves them out of the
    /// published configuration so the gateways do not reject the whole document).
    pub problems: Vec<KeyProblem>,
    /// IP token id → short hash of its key, for `status.secretHash` (rotation is visible
    /// without revealing anything).
    pub secret_hashes: BTreeMap<String, String>,
}

/// Looks up the key of every IP token in `config` among `secrets` (each token's Secret is in
/// the token's own namespace).
pub fn resolve_provider_keys(config: &DataPlaneConfig, secrets: &SecretData) -> ResolvedKeys {
    let mut out = ResolvedKeys::default();
    // Where each (name, key) came from, to catch two namespaces' Secrets of one name.
    let mut origin: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    for token in &config.ip_tokens {
        let Some(r) = &token.secret_ref else { continue };
        let namespace = token.id.split_once('/').map_or("default", |(ns, _)| ns).to_owned();
        let problem = |reason, message: String| KeyProblem { ip_token: token.id.clone(), reason, message };
        let Some(data) = secrets.get(&(namespace.clone(), r.name.clone())) else {
            out.problems
                .push(problem(reason::SECRET_NOT_FOUND, format!("Secret {namespace}/{} not found", r.name)));
            continue;
        };
        let Some(bytes) = data.get(&r.key) else {
            out.problems.push(problem(
                reason::SECRET_KEY_NOT_FOUND,
                format!("Secret {namespace}/{} has no key {:?}", r.name, r.key),
            ));
            continue;
        };
        let Ok(value) = std::str::from_utf8(bytes) else {
            out.problems.push(problem(
                reason::INVALID_SPEC,
                format!("Secret {namespace}/{} key {:?} is not UTF-8 text", r.name, r.key),
            ));
            continue;
        };
        // Keys are pasted by people: a trailing newline from `echo` is not part of them.
        let value = value.trim().to_owned();
        let slot = (r.name.clone(), r.key.clone());
        if let Some((first_ns, first_value)) = origin.get(&slot) {
            // NB: the secrets file is keyed by Secret name and key only; the same name in
            // two namespaces is fine while the values agree.
            if *first_value != value {
                out.problems.push(problem(
                    reason::INVALID_SPEC,
                    format!(
                        "Secret {:?} key {:?} differs between namespaces {first_ns} and {namespace}; the \
                         gateway's key file is keyed by Secret name, so give one of them another name",
                        r.name, r.key
                    ),
                ));
                continue;
            }
        } else {
            origin.insert(slot, (namespace.clone(), value.clone()));
        }
        out.secret_hashes.insert(token.id.clone(), short_hash(value.as_bytes()));
        out.keys.0.entry(r.name.clone()).or_default().insert(r.key.clone(), value);
    }
    out
}

/// The configuration document exactly as published (pretty JSON, stable key order).
pub fn config_json(config: &DataPlaneConfig) -> Result<String> {
    Ok(serde_json::to_string_pretty(config)?)
}

/// The ConfigMap of `owner`'s gateways for `config`. Refuses when a provider key appears in
/// the document.
pub fn config_map(owner: &Owner, config: &DataPlaneConfig, keys: &ProviderKeys) -> Result<ConfigMap> {
    let json = config_json(config)?;
    for (name, key, value) in keys.values() {
        // Also the JSON-escaped form, for keys with characters JSON escapes.
        let escaped = serde_json::to_string(value)?;
        let escaped = escaped.trim_matches('"');
        if !value.is_empty() && (json.contains(value) || json.contains(escaped)) {
            return Err(Error::SecretInConfig { name: name.to_owned(), key: key.to_owned() });
        }
    }
    let checksum: String = Sha256::digest(json.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let mut metadata = owner.child_meta(&config_map_name(&owner.name), Component::Gateway);
    metadata.annotations = Some(BTreeMap::from([
        (CONFIG_CHECKSUM_ANNOTATION.to_owned(), checksum),
        (CONFIG_VERSION_ANNOTATION.to_owned(), config.hash.clone()),
    ]));
    Ok(ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(CONFIG_FILE.to_owned(), json)])),
        ..ConfigMap::default()
    })
}

/// The provider-key Secret of `owner`'s gateways.
pub fn provider_keys_secret(owner: &Owner, keys: &ProviderKeys) -> Result<Secret> {
    let yaml = keys.to_yaml()?;
    let mut metadata = owner.child_meta(&provider_keys_secret_name(&owner.name), Component::Gateway);
    metadata.annotations = Some(BTreeMap::from([(PROVIDER_KEYS_HASH_ANNOTATION.to_owned(), keys.hash()?)]));
    Ok(Secret {
        metadata,
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(SECRETS_FILE.to_owned(), ByteString(yaml.into_bytes()))])),
        ..Secret::default()
    })
}
