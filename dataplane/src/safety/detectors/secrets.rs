//! The secret verifiers the scan loop in [`super`] calls at an anchor: vendor keys by
//! their literal prefixes (AWS, GitHub, Slack, `sk-` for OpenAI and Anthropic, Google,
//! Stripe), PEM private keys from header to footer, JWTs, `Bearer <token>`, and
//! `<secret identifier> = <value>` at a `:` or `=` (or a JSON value under such a key).
//! Documentation placeholders and references (`$TOKEN`, `config.password`) are not secrets.
//! The streaming scanner uses the prefixes, the PEM and JWT shapes and [`secret_ident`] to
//! decide what to hold back at a chunk's end.

use tollgate_crds::safety::Detector;

use super::{DetectorMask, Hit, Rule, ieq, is_word, key_char, left_boundary, run_end, starts};

/// Literal prefixes of secrets, used by the streaming scanner to decide whether the trailing
/// word of a chunk could be the start of one (exact case).
pub(in crate::safety) const SECRET_PREFIXES: &[(&str, Detector)] = &[
    ("AKIA", Detector::AwsAccessKey),
    ("ASIA", Detector::AwsAccessKey),
    ("AGPA", Detector::AwsAccessKey),
    ("AIDA", Detector::AwsAccessKey),
    ("AROA", Detector::AwsAccessKey),
    ("AIPA", Detector::AwsAccessKey),
    ("ANPA", Detector::AwsAccessKey),
    ("ANVA", Detector::AwsAccessKey),
    ("ABIA", Detector::AwsAccessKey),
    ("ACCA", Detector::AwsAccessKey),
    ("ghp_", Detector::GithubToken),
    ("gho_", Detector::GithubToken),
    ("ghu_", Detector::GithubToken),
    ("ghs_", Detector::GithubToken),
    ("ghr_", Detector::GithubToken),
    ("github_pat_", Detector::GithubToken),
    ("xoxb-", Detector::SlackToken),
    ("xoxp-", Detector::SlackToken),
    ("xoxa-", Detector::SlackToken),
    ("xoxo-", Detector::SlackToken),
    ("xoxs-", Detector::SlackToken),
    ("xoxr-", Detector::SlackToken),
    ("xoxe-", Detector::SlackToken),
    ("xapp-", Detector::SlackToken),
    ("sk-", Detector::OpenaiKey),
    ("sk-ant-", Detector::AnthropicKey),
    ("AIza", Detector::GoogleApiKey),
    ("sk_live_", Detector::StripeKey),
    ("sk_test_", Detector::StripeKey),
    ("rk_live_", Detector::StripeKey),
    ("rk_test_", Detector::StripeKey),
    ("whsec_", Detector::StripeKey),
    ("eyJ", Detector::Jwt),
];

/// Documentation placeholders (`sk-xxxxxxxx...`, `AKIAXXXXXXXXXXXXXXXX`) have few distinct
/// characters; a real key drawn at random has many.
fn placeholder(body: &[u8]) -> bool {
    let mut seen = [false; 256];
    let mut distinct = 0;
    for c in body {
        if !seen[usize::from(*c)] {
            seen[usize::from(*c)] = true;
            distinct += 1;
        }
    }
    distinct < 6
}

fn b64_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'/' || c == b'+'
}

pub(super) fn aws(b: &[u8], at: usize, mask: DetectorMask, out: &mut Vec<Hit>) {
    let Some(key) = b.get(at..at + 20) else { return };
    if !key[..4].iter().all(u8::is_ascii_uppercase)
        || !key.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        || !left_boundary(b, at, |c| c.is_ascii_alphanumeric())
        || b.get(at + 20).is_some_and(u8::is_ascii_alphanumeric)
        || placeholder(&key[4..])
    {
        return;
    }
    if mask.has(Detector::AwsAccessKey) {
        out.push(Hit::builtin(Detector::AwsAccessKey, at, at + 20));
    }
    // The secret key usually sits right after its id (credentials files, env blocks).
    if mask.has(Detector::AwsSecretKey) {
        let window_end = (at + 20 + 256).min(b.len());
        let mut i = at + 20;
        while i < window_end {
            if b64_char(b[i]) && !b64_char(b[i - 1]) {
                let e = run_end(b, i, b64_char);
                if e - i == 40 && b.get(e) != Some(&b'=') && mixed_secret(&b[i..e]) {
                    out.push(Hit::builtin(Detector::AwsSecretKey, i, e));
                    return;
                }
                i = e;
            } else {
                i += 1;
            }
        }
    }
}

/// Upper case, lower case and a digit: what a random 40-character key has and a hex hash or
/// a word does not.
fn mixed_secret(s: &[u8]) -> bool {
    s.iter().any(u8::is_ascii_uppercase)
        && s.iter().any(u8::is_ascii_lowercase)
        && s.iter().any(u8::is_ascii_digit)
}

pub(super) fn github(b: &[u8], at: usize, out: &mut Vec<Hit>) {
    if !left_boundary(b, at, is_word) {
        return;
    }
    if starts(b, at, "github_pat_") {
        let e = run_end(b, at + 11, is_word);
        if (22..=255).contains(&(e - at - 11)) && !placeholder(&b[at + 11..e]) {
            out.push(Hit::builtin(Detector::GithubToken, at, e));
        }
        return;
    }
    if !(starts(b, at, "ghp_")
        || starts(b, at, "gho_")
        || starts(b, at, "ghu_")
        || starts(b, at, "ghs_")
        || starts(b, at, "ghr_"))
    {
        return;
    }
    let e = run_end(b, at + 4, |c| c.is_ascii_alphanumeric());
    if (30..=251).contains(&(e - at - 4))
        && !b.get(e).is_some_and(|c| is_word(*c))
        && !placeholder(&b[at + 4..e])
    {
        out.push(Hit::builtin(Detector::GithubToken, at, e));
    }
}

pub(super) fn slack(b: &[u8], at: usize, out: &mut Vec<Hit>) {
    if !left_boundary(b, at, is_word) {
        return;
    }
    let xox = starts(b, at, "xox")
        && b.get(at + 3).is_some_and(|c| b"abposre".contains(c))
        && b.get(at + 4) == Some(&b'-');
    if !(xox || starts(b, at, "xapp-")) {
        return;
    }
    let body = at + 5;
    let e = run_end(b, body, |c| c.is_ascii_alphanumeric() || c == b'-');
    if e - body >= 10 && b[body..e].iter().any(u8::is_ascii_digit) && !placeholder(&b[body..e]) {
        out.push(Hit::builtin(Detector::SlackToken, at, e));
    }
}

pub(super) fn slack_webhook(b: &[u8], at: usize, out: &mut Vec<Hit>) {
    let body = at + "hooks.slack.com/services/".len();
    let e = run_end(b, body, |c| c.is_ascii_alphanumeric() || c == b'/');
    if e - body < 20 || !starts(b, body, "T") {
        return;
    }
    let start = if at >= 8 && ieq(b, at - 8, "https://") { at - 8 } else { at };
    out.push(Hit::builtin(Detector::SlackToken, start, e));
}

pub(super) fn sk_dash(b: &[u8], at: usize, mask: DetectorMask, out: &mut Vec<Hit>) {
    if !starts(b, at, "sk-") || !left_boundary(b, at, key_char) {
        return;
    }
    let e = run_end(b, at + 3, key_char);
    let body = &b[at + 3..e];
    if placeholder(body) {
        return;
    }
    if starts(b, at, "sk-ant-") {
        if mask.has(Detector::AnthropicKey) && body.len() >= 4 + 32 {
            out.push(Hit::builtin(Detector::AnthropicKey, at, e));
        }
        return;
    }
    let digits = body.iter().any(u8::is_ascii_digit);
    let letters = body.iter().any(u8::is_ascii_alphabetic);
    if mask.has(Detector::OpenaiKey) && body.len() >= 20 && digits && letters {
        out.push(Hit::builtin(Detector::OpenaiKey, at, e));
    }
}

pub(super) fn google(b: &[u8], at: usize, out: &mut Vec<Hit>) {
    if !starts(b, at, "AIza") || !left_boundary(b, at, key_char) {
        return;
    }
    let e = run_end(b, at + 4, key_char);
    if e - at == 39 && !placeholder(&b[at + 4..e]) {
        out.push(Hit::builtin(Detector::GoogleApiKey, at, e));
    }
}

pub(super) fn stripe(b: &[u8], at: usize, out: &mut Vec<Hit>) {
    if !left_boundary(b, at, is_word) {
        return;
    }
    let (body, min) = if starts(b, at, "whsec_") {
        (at + 6, 24)
    } else if starts(b, at, "sk_live_")
        || starts(b, at, "sk_test_")
        || starts(b, at, "rk_live_")
        || starts(b, at, "rk_test_")
    {
        (at + 8, 16)
    } else {
        return;
    };
    let e = run_end(b, body, |c| c.is_ascii_alphanumeric());
    if e - body >= min && !b.get(e).is_some_and(|c| is_word(*c)) && !placeholder(&b[body..e]) {
        out.push(Hit::builtin(Detector::StripeKey, at, e));
    }
}

/// The end of a PEM private-key header starting at `at` (`-----BEGIN RSA PRIVATE KEY-----`).
pub(in crate::safety) fn pem_header_end(b: &[u8], at: usize) -> Option<usize> {
    if !starts(b, at, "-----BEGIN ") {
        return None;
    }
    let rest = b.get(at + 11..(at + 11 + 48).min(b.len()))?;
    let close = rest.windows(5).position(|w| w == b"-----")?;
    let label = &rest[..close];
    let ok = label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK");
    (ok && label.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b' '))
        .then_some(at + 11 + close + 5)
}

/// The end of the footer (`-----END ... -----`) after `from`, if present.
pub(in crate::safety) fn pem_footer_end(b: &[u8], from: usize) -> Option<usize> {
    let rest = &b[from..];
    let pos = rest.windows(9).position(|w| w == b"-----END ")?;
    let after = from + pos + 9;
    let tail = &b[after..(after + 48).min(b.len())];
    let close = tail.windows(5).position(|w| w == b"-----")?;
    Some(after + close + 5)
}

/// A private key from its header to its footer (or to the end of the text when the footer
/// is missing). NB: headers before `reach` lie inside the key found last and are skipped,
/// so a text of headers without footers costs one search for a footer, not one per header.
pub(super) fn pem(b: &[u8], at: usize, reach: &mut usize, out: &mut Vec<Hit>) {
    let Some(header_end) = pem_header_end(b, at) else { return };
    let end = pem_footer_end(b, header_end).unwrap_or(b.len());
    *reach = end;
    out.push(Hit::builtin(Detector::PrivateKey, at, end));
}

pub(in crate::safety) fn jwt_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

pub(super) fn jwt(b: &[u8], at: usize, out: &mut Vec<Hit>) {
    if !starts(b, at, "eyJ") || !left_boundary(b, at, |c| jwt_char(c) || c == b'.') {
        return;
    }
    let h = run_end(b, at, jwt_char);
    if h - at < 10 || b.get(h) != Some(&b'.') || !starts(b, h + 1, "ey") {
        return;
    }
    let p = run_end(b, h + 1, jwt_char);
    if p - h - 1 < 10 {
        return;
    }
    let mut e = p;
    if b.get(p) == Some(&b'.') {
        e = run_end(b, p + 1, jwt_char);
    }
    if b.get(e).is_some_and(|c| *c == b'.' && b.get(e + 1).is_some_and(|c| jwt_char(*c))) {
        return;
    }
    out.push(Hit::builtin(Detector::Jwt, at, e));
}

/// Words an identifier must contain to name a secret (compared without `_`, `-`, `.`).
const SECRET_STEMS: &[&[u8]] = &[
    b"pass",
    b"pwd",
    b"secret",
    b"apikey",
    b"token",
    b"privatekey",
    b"accesskey",
    b"credential",
    b"encryptionkey",
    b"signingkey",
    b"masterkey",
    b"authkey",
];
/// ...and end with.
const SECRET_SUFFIXES: &[&[u8]] = &[
    b"key",
    b"token",
    b"secret",
    b"password",
    b"passwd",
    b"pwd",
    b"pass",
    b"passphrase",
    b"credential",
    b"credentials",
];
const PLACEHOLDERS: &[&str] = &[
    "string",
    "str",
    "none",
    "null",
    "nil",
    "undefined",
    "true",
    "false",
    "required",
    "optional",
    "password",
    "passwd",
    "secret",
    "token",
    "redacted",
    "example",
    "placeholder",
    "your_password",
    "yourpassword",
    "your-password",
    "your_api_key",
    "your-api-key",
    "your_token",
    "api_key",
    "apikey",
    "changeit",
    "dummy",
    "sample",
    "hidden",
    "masked",
    "unknown",
    "default",
    "number",
    "boolean",
    "integer",
    "object",
    "empty",
];

fn ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.'
}

/// Whether an identifier (`db_password`, `secretAccessKey`, `GITHUB_TOKEN`) names a secret:
/// it contains a secret word and ends with one (`password_hash` and `tokenizer` do not).
pub(in crate::safety) fn secret_ident(ident: &[u8]) -> bool {
    let mut buf = [0u8; 64];
    let mut k = 0;
    for c in ident.iter().filter(|c| c.is_ascii_alphanumeric()) {
        if k == buf.len() {
            return false;
        }
        buf[k] = c.to_ascii_lowercase();
        k += 1;
    }
    let id = &buf[..k];
    SECRET_SUFFIXES.iter().any(|s| id.ends_with(s)) && SECRET_STEMS.iter().any(|s| contains(id, s))
}

/// At a `:` or `=`: whether the identifier before it names a secret
/// (`DB_PASSWORD=`, `"api_key": `, `secretAccessKey:`) and a plausible value follows.
pub(super) fn assignment_at(b: &[u8], p: usize, mask: DetectorMask, out: &mut Vec<Hit>) {
    let prev = if p > 0 { b[p - 1] } else { b' ' };
    let next = b.get(p + 1).copied().unwrap_or(b' ');
    // Comparisons and compound operators are not assignments; `:=` is handled at the `:`.
    if (b[p] == b'=' && (b"=!<>:+-*/|&^%".contains(&prev) || next == b'='))
        || (b[p] == b':' && (next == b':' || prev == b':'))
    {
        return;
    }
    let mut i = p;
    let mut n = 0;
    while i > 0 && n < 4 && (b[i - 1] == b' ' || b[i - 1] == b'\t') {
        i -= 1;
        n += 1;
    }
    if i > 0 && matches!(b[i - 1], b'"' | b'\'') {
        i -= 1;
        if i > 0 && b[i - 1] == b'\\' {
            i -= 1;
        }
    }
    let ident_end = i;
    while i > 0 && ident_end - i < 64 && ident_char(b[i - 1]) {
        i -= 1;
    }
    if i == ident_end || (i > 0 && ident_char(b[i - 1])) || !secret_ident(&b[i..ident_end]) {
        return;
    }
    let at = i;
    let Some((vs, ve, quoted, colon)) = assignment_value(b, ident_end) else { return };
    let value = &b[vs..ve];
    let mut compact = [0u8; 64];
    let mut k = 0;
    for c in b[at..ident_end].iter().filter(|c| c.is_ascii_alphanumeric()) {
        compact[k] = c.to_ascii_lowercase();
        k += 1;
    }
    let compact = &compact[..k];
    // AWS secret access keys: `aws_secret_access_key = ...`, `"SecretAccessKey": "..."`.
    if mask.has(Detector::AwsSecretKey)
        && aws_secret_ident(compact)
        && value.len() == 40
        && value.iter().all(|c| b64_char(*c))
    {
        out.push(Hit {
            rule: Rule::Builtin(Detector::AwsSecretKey),
            start: at,
            end: ve,
            redact_start: vs,
            redact_end: ve,
        });
        return;
    }
    if mask.has(Detector::GenericAssignment)
        && plausible_secret_value(value, quoted, colon, password_ident(compact))
    {
        out.push(Hit {
            rule: Rule::Builtin(Detector::GenericAssignment),
            start: at,
            end: ve,
            redact_start: vs,
            redact_end: ve,
        });
    }
}

fn aws_secret_ident(compact: &[u8]) -> bool {
    contains(compact, b"secretaccesskey") || (contains(compact, b"aws") && compact.ends_with(b"secretkey"))
}

fn password_ident(compact: &[u8]) -> bool {
    [&b"password"[..], b"passwd", b"pwd", b"passphrase", b"pass"].iter().any(|w| compact.ends_with(w))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Parses `["']? \s* (=|:|:=|=>) \s* ["']? value ["']?` after an identifier; returns the value
/// span, whether it was quoted, and whether the separator was a colon.
pub(super) fn assignment_value(b: &[u8], mut i: usize) -> Option<(usize, usize, bool, bool)> {
    let skip_ws = |i: &mut usize| {
        let mut n = 0;
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') && n < 4 {
            *i += 1;
            n += 1;
        }
    };
    if b.get(i) == Some(&b'\\') && matches!(b.get(i + 1), Some(b'"')) {
        i += 2;
    } else if matches!(b.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    skip_ws(&mut i);
    let colon;
    match (b.get(i), b.get(i + 1)) {
        (Some(b':'), Some(b'=')) | (Some(b'='), Some(b'>')) => {
            colon = false;
            i += 2;
        }
        (Some(b'='), Some(b'=')) => return None,
        (Some(b'='), _) => {
            colon = false;
            i += 1;
        }
        (Some(b':'), _) => {
            colon = true;
            i += 1;
        }
        _ => return None,
    }
    skip_ws(&mut i);
    let (quote, escaped) = match (b.get(i), b.get(i + 1)) {
        (Some(b'\\'), Some(b'"')) => {
            i += 2;
            (Some(b'"'), true)
        }
        (Some(q @ (b'"' | b'\'' | b'`')), _) => {
            i += 1;
            (Some(*q), false)
        }
        _ => (None, false),
    };
    let start = i;
    let limit = (start + 200).min(b.len());
    let end = match quote {
        Some(q) => {
            let e = (start..limit).find(|&k| b[k] == q || b[k] == b'\n' || (escaped && b[k] == b'\\'))?;
            if b[e] == b'\n' {
                return None;
            }
            e
        }
        None => (start..limit)
            .find(|&k| b[k].is_ascii_whitespace() || b"\"'`,;\\".contains(&b[k]))
            .unwrap_or(limit),
    };
    (end > start).then_some((start, end, quote.is_some(), colon))
}

pub(super) fn plausible_secret_value(v: &[u8], quoted: bool, colon: bool, password_like: bool) -> bool {
    if v.len() < 6 || v.len() > 200 {
        return false;
    }
    let lower = String::from_utf8_lossy(v).to_ascii_lowercase();
    if PLACEHOLDERS.contains(&lower.as_str()) || lower.starts_with("[redacted") || lower.contains("://") {
        return false;
    }
    if v.iter().all(|c| *c == v[0]) || v.iter().any(|c| b"()[]{}<>".contains(c)) {
        return false;
    }
    if matches!(v[0], b'$' | b'%' | b'/' | b'~' | b'#' | b'@') || v.starts_with(b"./") {
        return false;
    }
    if lower.starts_with("your")
        || lower.starts_with("xxx")
        || lower.starts_with("***")
        || lower.starts_with("...")
    {
        return false;
    }
    if v.iter().all(u8::is_ascii_digit) && !password_like {
        return false;
    }
    if !quoted {
        // Dotted identifiers (`config.password`, `process.env.TOKEN`) and env-var names are
        // references, not values.
        // (A part mixing letters and digits, as in `ya29.a0Af...`, is a token, not a name.)
        let dotted = v.contains(&b'.')
            && v.split(|c| *c == b'.').all(|p| {
                !p.is_empty()
                    && p.iter().all(|c| is_word(*c))
                    && !p[0].is_ascii_digit()
                    && (!p.iter().any(u8::is_ascii_digit) || !p.iter().any(u8::is_ascii_alphabetic))
            });
        let env_name =
            v.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_') && v.contains(&b'_');
        if dotted || env_name {
            return false;
        }
        if colon {
            // `secret: always be kind` is prose; demand something a word does not have.
            let symbol = v.iter().any(|c| !c.is_ascii_alphabetic());
            let mixed = v[1..].iter().any(u8::is_ascii_uppercase) && v.iter().any(u8::is_ascii_lowercase);
            if v.len() < 8 || !(symbol || mixed) {
                return false;
            }
        }
    }
    true
}

/// `Bearer <token>` (an Authorization header pasted into a prompt).
pub(super) fn bearer(b: &[u8], at: usize, out: &mut Vec<Hit>) {
    if !left_boundary(b, at, is_word) || b.get(at + 6) != Some(&b' ') {
        return;
    }
    let vs = at + 7;
    let ve = run_end(b, vs, |c| c.is_ascii_alphanumeric() || b"._~+/=-".contains(&c));
    let v = &b[vs..ve];
    if v.len() >= 16 && v.iter().any(u8::is_ascii_digit) && v.iter().any(u8::is_ascii_alphabetic) {
        out.push(Hit {
            rule: Rule::Builtin(Detector::GenericAssignment),
            start: at,
            end: ve,
            redact_start: vs,
            redact_end: ve,
        });
    }
}

/// A JSON string value under a key that names a secret (`{"password": "hunter22"}`).
pub(super) fn key_value(key: &str, text: &str, mask: DetectorMask, out: &mut Vec<Hit>) {
    let compact: Vec<u8> =
        key.bytes().filter(u8::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    let v = text.as_bytes();
    if mask.has(Detector::AwsSecretKey)
        && aws_secret_ident(&compact)
        && v.len() == 40
        && v.iter().all(|c| b64_char(*c))
    {
        out.push(Hit::builtin(Detector::AwsSecretKey, 0, v.len()));
        return;
    }
    if mask.has(Detector::GenericAssignment)
        && secret_ident(key.as_bytes())
        && plausible_secret_value(v, true, false, password_ident(&compact))
    {
        out.push(Hit::builtin(Detector::GenericAssignment, 0, v.len()));
    }
}

#[cfg(test)]
mod tests {
    use crate::safety::detectors::Builtins;
    use crate::safety::detectors::tests::{all, none, one};

    #[test]
    fn secrets() {
        one("key AKIAIOSFODNN7EXAMPLE here", "secrets.aws_access_key", "AKIAIOSFODNN7EXAMPLE");
        one(
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "secrets.aws_secret_key",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        );
        one(
            "ghp_1234567890abcdefghijABCDEFGHIJ123456",
            "secrets.github_token",
            "ghp_1234567890abcdefghijABCDEFGHIJ123456",
        );
        one(
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "secrets.slack_token",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        );
        one(
            "sk-proj-abc123DEF456ghi789JKL012mno345",
            "secrets.openai_key",
            "sk-proj-abc123DEF456ghi789JKL012mno345",
        );
        one(
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789ABCD",
            "secrets.anthropic_key",
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789ABCD",
        );
        one(
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "secrets.google_api_key",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
        );
        one("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "secrets.stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc");
        one(
            "x -----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- y",
            "secrets.private_key",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
        );
        one(
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "secrets.jwt",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        );
        one("DB_PASSWORD=hunter22", "secrets.generic_assignment", "hunter22");
        one("\"api_key\": \"f00ba4-secret-value\"", "secrets.generic_assignment", "f00ba4-secret-value");
        one(
            "Authorization: Bearer abcdef0123456789abcdef",
            "secrets.generic_assignment",
            "abcdef0123456789abcdef",
        );
        none(
            "max_tokens: 1000000, tokenizer: gpt2-tokenizer, password: string, password = os.environ[\"PW\"]",
        );
        none("the secret: always be kind; if password == \"x\"; token_count=123456");
        none("task-management-system-architecture-2024 and sk-learn");
    }

    #[test]
    fn json_key_context() {
        let b = Builtins::new().unwrap();
        let mut out = Vec::new();
        b.scan("hunter22!", all(), false, Some("password"), &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        b.scan("hunter22!", all(), false, Some("username"), &mut out);
        assert!(out.is_empty());
    }
}
