//! Provider keys. A [`SecretString`] cannot be printed or serialised, so it cannot leak into
//! logs, errors or responses by accident; [`SecretSource`] resolves `secretRef {name, key}`.
//!
//! Standalone mode looks in this order: the secrets file (YAML: `NAME: {KEY: value}`), then
//! the environment variable `TOLLGATE_SECRET_<NAME>_<KEY>` (upper-cased, every character
//! that is not a letter or digit replaced by `_`).

use std::collections::BTreeMap;
use std::fmt;

use tollgate_crds::iptoken::SecretRef;

use crate::error::{Error, Result};

/// A secret value. `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for the one place that must send it (an upstream request header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where secrets come from in standalone mode.
#[derive(Debug, Clone, Default)]
pub struct SecretSource {
    file: BTreeMap<String, BTreeMap<String, SecretString>>,
}

/// The environment variable consulted for a secret reference.
pub fn env_var_name(r: &SecretRef) -> String {
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
    };
    format!("TOLLGATE_SECRET_{}_{}", clean(&r.name), clean(&r.key))
}

impl SecretSource {
    /// Reads the secrets file (YAML mapping of secret name → key → value).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let err = |message: String| Error::SecretsFile { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let raw: BTreeMap<String, BTreeMap<String, String>> =
            serde_yaml::from_str(&text).map_err(|e| err(format!("expected `NAME: {{KEY: value}}`: {e}")))?;
        let file = raw
            .into_iter()
            .map(|(n, keys)| (n, keys.into_iter().map(|(k, v)| (k, SecretString::new(v))).collect()))
            .collect();
        Ok(Self { file })
    }

    /// A source with given values (tests).
    pub fn from_map(file: BTreeMap<String, BTreeMap<String, SecretString>>) -> Self {
        Self { file }
    }

    /// This source with `extra` consulted first (secrets given to the admin API).
    pub fn layered(&self, extra: BTreeMap<String, BTreeMap<String, SecretString>>) -> Self {
        let mut file = self.file.clone();
        for (name, keys) in extra {
            file.entry(name).or_default().extend(keys);
        }
        Self { file }
    }

    /// Resolves a reference.
    pub fn resolve(&self, r: &SecretRef) -> Result<SecretString> {
        if let Some(v) = self.file.get(&r.name).and_then(|keys| keys.get(&r.key)) {
            return Ok(v.clone());
        }
        let var = env_var_name(r);
        match std::env::var(&var) {
            Ok(v) if !v.is_empty() => Ok(SecretString::new(v)),
            _ => Err(Error::SecretMissing {
                name: r.name.clone(),
                key: r.key.clone(),
                hint: format!("put it in the secrets file or set {var}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = SecretString::new("sk-very-secret".into());
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
    }

    #[test]
    fn env_names() {
        let r = SecretRef { name: "openai-main".into(), key: "api.key".into() };
        assert_eq!(env_var_name(&r), "TOLLGATE_SECRET_OPENAI_MAIN_API_KEY");
    }
}
