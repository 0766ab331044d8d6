//! Provider keys. A [`SecretString`] cannot be printed or serialised, so it cannot leak into
//! logs, errors or responses by accident; [`SecretSource`] resolves `secretRef {name, key}`.
//!
//! Standalone mode looks in this order: the secrets file (YAML: `NAME: {KEY: value}`), then
//! the environment variable `TOLLGATE_SECRET_<NAME>_<KEY>` (upper-cased, every character
//! that is not a letter or digit replaced by `_`).

use std::collections::BTreeMap;
use std::fmt;

pub use secrecy::ExposeSecret;
use tollgate_crds::iptoken::SecretRef;

use crate::error::{Error, Result};

/// A secret value, held by the `secrecy` crate: zeroed when dropped, read only through
/// [`ExposeSecret::expose_secret`] (greppable: the one place that sends it is an upstream
/// request header), no `Display`, no `Serialize`. `Debug` prints `[redacted]`, the word
/// [`mask_secret`] writes.
///
/// NB: a newtype rather than `secrecy::SecretString` itself only to keep `new(String)`:
/// secrecy's `new` takes a `Box<str>`, and the operator's store builds these from `String`s.
#[derive(Clone)]
pub struct SecretString(secrecy::SecretString);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Self(value.into())
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl ExposeSecret<str> for SecretString {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Shortest prefix of a key that is masked where it appears alone: providers echo keys cut
/// short (`Incorrect API key provided: sk-proj-abc1****`).
pub const MASKED_PREFIX: usize = 8;

/// Replaces every appearance of `secret` in `text`, and of every prefix of it at least
/// [`MASKED_PREFIX`] bytes long, with `[redacted]`, whatever surrounds it (`key=sk-...`,
/// `Bearersk-...`, a tab, JSON quotes). The gateway knows each key's exact value, so this
/// needs no guess about what a key looks like.
pub fn mask_secret<'a>(text: &'a str, secret: &str) -> std::borrow::Cow<'a, str> {
    let s = secret.as_bytes();
    if s.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    // The probe: the secret's first MASKED_PREFIX bytes (all of it when shorter), ending at
    // a character boundary so it is a `str`.
    let mut probe_len = MASKED_PREFIX.min(s.len());
    while !secret.is_char_boundary(probe_len) {
        probe_len += 1;
    }
    let probe = &secret[..probe_len];
    let t = text.as_bytes();
    let mut out = String::new();
    let (mut last, mut from) = (0, 0);
    while let Some(i) = text.get(from..).and_then(|rest| rest.find(probe)) {
        let start = from + i;
        let mut end = start + probe_len;
        while end - start < s.len() && t.get(end) == s.get(end - start) {
            end += 1;
        }
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push_str(&text[last..start]);
        out.push_str("[redacted]");
        (last, from) = (end, end);
    }
    if last == 0 && out.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[last..]);
    std::borrow::Cow::Owned(out)
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

    /// Whether a secret of this name is known at all (some key of it is set), to tell a
    /// missing secret from a missing key. Environment variables name keys, not secrets, so
    /// only the file and the admin API's secrets count.
    pub fn has_secret(&self, name: &str) -> bool {
        self.file.get(name).is_some_and(|keys| !keys.is_empty())
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
    fn masks_a_key_wherever_and_however_it_appears() {
        let key = "sk-proj-Abc123Def456Ghi789";
        let table = [
            (
                "Incorrect API key provided: sk-proj-Abc123Def456Ghi789.",
                "Incorrect API key provided: [redacted].",
            ),
            ("key=sk-proj-Abc123Def456Ghi789&x=1", "key=[redacted]&x=1"),
            ("Bearersk-proj-Abc123Def456Ghi789", "Bearer[redacted]"),
            ("key\tsk-proj-Abc123Def456Ghi789\tend", "key\t[redacted]\tend"),
            ("{\"k\":\"sk-proj-Abc123Def456Ghi789\"}", "{\"k\":\"[redacted]\"}"),
            // Cut short by the provider, with its own stars.
            ("provided: sk-proj-Abc1****i789", "provided: [redacted]****i789"),
            // Twice, and glued to other text.
            ("xsk-proj-Abc123Def456Ghi789ysk-proj-Abc123Def456Ghi789", "x[redacted]y[redacted]"),
            // Seven characters are not a prefix worth masking; other text is untouched.
            ("sk-proj and sk-pro", "sk-proj and sk-pro"),
            ("nothing here", "nothing here"),
            ("naïve sk-proj-Abc123 ü", "naïve [redacted] ü"),
        ];
        for (text, want) in table {
            assert_eq!(mask_secret(text, key), want, "{text}");
        }
        assert_eq!(mask_secret("abc short abc", "short"), "abc [redacted] abc");
        assert_eq!(mask_secret("anything", ""), "anything");
        // A key with non-ASCII characters never splits one.
        assert_eq!(mask_secret("x ключ-секрет-длинный y", "ключ-секрет-длинный"), "x [redacted] y");
        assert_eq!(mask_secret("x ключ-се y", "ключ-секрет-длинный"), "x [redacted] y");
    }

    #[test]
    fn never_prints_the_value() {
        let s = SecretString::new("sk-very-secret".into());
        assert_eq!(format!("{s:?}"), "[redacted]");
        let source = SecretSource::from_map(BTreeMap::from([(
            "openai".to_owned(),
            BTreeMap::from([("api-key".to_owned(), s.clone())]),
        )]));
        assert!(!format!("{source:?}").contains("sk-very-secret"));
        assert_eq!(s.expose_secret(), "sk-very-secret");
        // No `Display`: `format!("{s}")` does not compile. Checked here by autoref
        // specialisation, which picks the `Display` arm only if the impl exists.
        use std::marker::PhantomData;
        struct Probe<T>(PhantomData<T>);
        trait ViaDisplay {
            fn displays(&self) -> bool {
                true
            }
        }
        impl<T: fmt::Display> ViaDisplay for Probe<T> {}
        trait ViaAnything {
            fn displays(&self) -> bool {
                false
            }
        }
        impl<T> ViaAnything for &Probe<T> {}
        let (secret, text) = (&Probe::<SecretString>(PhantomData), &Probe::<&str>(PhantomData));
        assert!(!secret.displays());
        assert!(text.displays());
    }

    #[test]
    fn env_names() {
        let r = SecretRef { name: "openai-main".into(), key: "api.key".into() };
        assert_eq!(env_var_name(&r), "TOLLGATE_SECRET_OPENAI_MAIN_API_KEY");
    }
}
