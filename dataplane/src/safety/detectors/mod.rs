//! The built-in detectors, in one pass over the bytes. A 256-entry class table sorts each
//! byte: at the start of a word the first two letters index a small table of literal
//! anchors (`AKIA`, `sk-`, `ghp_`, `eyJ`, `bearer`, the injection trigger words, ...);
//! a few bytes are anchors wherever they appear (`@`, digits, `:`, `=`, `-----BEGIN`, `<|`,
//! ...). Only at an anchor does a hand-written verifier (or a small anchored regex, for
//! injection) look at the bytes around it: digit runs are classified by validators (Luhn,
//! IIN, SSN ranges, mod-97), `:`/`=` check for `<secret identifier> = <value>` and IPv6.
//!
//! This module is the scan core: the byte classes, the anchor tables, the scan loop that
//! dispatches to the verifiers, [`Hit`]/[`Rule`] and the dedupe of overlapping hits. The
//! verifiers live beside it: [`pii`] (addresses, numbers, IPv6) and [`secrets`] (keys,
//! tokens, private keys, `<secret identifier> = <value>`).
//!
//! NB: this replaced an Aho-Corasick automaton over the same anchors: a DFA pays a table
//! transition per byte (~2 ns here), the class table about a third of that, and anchors
//! are only ever wanted at word starts or at rare bytes.
//!
//! NB: every span produced starts and ends at an ASCII byte or at a regex match boundary,
//! so slicing the text there never splits a UTF-8 character.

use std::collections::HashMap;

use tollgate_crds::safety::Detector;

use super::injection::{self, InjectionPattern};
use super::{Result, SafetyError};

mod pii;
mod secrets;

use pii::{email, ipv6_at, number_at};
pub(super) use secrets::{SECRET_PREFIXES, jwt_char, pem_footer_end, pem_header_end, secret_ident};
use secrets::{
    assignment_at, aws, bearer, github, google, jwt, key_value, pem, sk_dash, slack, slack_webhook, stripe,
};

/// A set of built-in detectors, by [`Detector::index`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct DetectorMask(u32);

impl DetectorMask {
    pub(super) fn insert(&mut self, d: Detector) {
        self.0 |= 1 << d.index();
    }
    pub(super) fn has(self, d: Detector) -> bool {
        self.0 & (1 << d.index()) != 0
    }
    pub(super) fn is_empty(self) -> bool {
        self.0 == 0
    }
    fn any(self, ds: &[Detector]) -> bool {
        ds.iter().any(|d| self.has(*d))
    }
}

/// What matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Rule {
    /// A built-in detector.
    Builtin(Detector),
    /// An injection pattern (index into [`injection::PATTERNS`]).
    Injection(u16),
    /// A custom regex: (policy slot, rule index).
    Regex(u16, u16),
    /// A custom term list: (policy slot, rule index).
    Terms(u16, u16),
}

/// One match: the whole match and the part to redact (the value of `password=value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hit {
    pub rule: Rule,
    pub start: usize,
    pub end: usize,
    pub redact_start: usize,
    pub redact_end: usize,
}

impl Hit {
    fn new(rule: Rule, start: usize, end: usize) -> Self {
        Self { rule, start, end, redact_start: start, redact_end: end }
    }
    fn builtin(d: Detector, start: usize, end: usize) -> Self {
        Self::new(Rule::Builtin(d), start, end)
    }
}

/// What an anchor triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    Email,
    Aws,
    Github,
    Slack,
    SlackWebhook,
    SkDash,
    Google,
    Stripe,
    Pem,
    Jwt,
    Bearer,
    Injection(u16),
}

const NUMERIC: [Detector; 5] =
    [Detector::CreditCard, Detector::UsSsn, Detector::Phone, Detector::IpAddress, Detector::Iban];

/// Anchors of the secret detectors (lower case: the automaton ignores ASCII case; the
/// verifiers check the exact case where it matters).
const SECRET_ANCHORS: &[(&str, Handler)] = &[
    ("@", Handler::Email),
    ("akia", Handler::Aws),
    ("asia", Handler::Aws),
    ("agpa", Handler::Aws),
    ("aida", Handler::Aws),
    ("aroa", Handler::Aws),
    ("aipa", Handler::Aws),
    ("anpa", Handler::Aws),
    ("anva", Handler::Aws),
    ("abia", Handler::Aws),
    ("acca", Handler::Aws),
    ("ghp_", Handler::Github),
    ("gho_", Handler::Github),
    ("ghu_", Handler::Github),
    ("ghs_", Handler::Github),
    ("ghr_", Handler::Github),
    ("github_pat_", Handler::Github),
    ("xox", Handler::Slack),
    ("xapp-", Handler::Slack),
    ("hooks.slack.com/services/", Handler::SlackWebhook),
    ("sk-", Handler::SkDash),
    ("aiza", Handler::Google),
    ("sk_live_", Handler::Stripe),
    ("sk_test_", Handler::Stripe),
    ("rk_live_", Handler::Stripe),
    ("rk_test_", Handler::Stripe),
    ("whsec_", Handler::Stripe),
    ("-----begin", Handler::Pem),
    ("eyj", Handler::Jwt),
    ("bearer", Handler::Bearer),
];

/// Byte classes of the scan loop.
const OTHER: u8 = 0;
const LETTER: u8 = 1;
const TRIGGER: u8 = 2;
const DIGIT: u8 = 3;
const COLON: u8 = 4;
const EQUALS: u8 = 5;
/// Classes of an anchor's second byte: a–z, 0–9, `_`, `-`, space, anything else.
const SECOND: usize = 40;

fn second_class(c: Option<&u8>) -> usize {
    match c.map(u8::to_ascii_lowercase) {
        Some(c @ b'a'..=b'z') => usize::from(c - b'a'),
        Some(c @ b'0'..=b'9') => 26 + usize::from(c - b'0'),
        Some(b'_') => 36,
        Some(b'-') => 37,
        Some(b' ') => 38,
        _ => 39,
    }
}

#[derive(Debug)]
struct Anchor {
    /// Lower case; compared ignoring ASCII case.
    bytes: Vec<u8>,
    handlers: Vec<Handler>,
    /// The first (up to) four bytes packed, and the mask of those present: a one-compare
    /// rejection of most candidates.
    head: u32,
    head_mask: u32,
}

/// Up to four bytes at `at`, ASCII-lower-cased and packed little-endian.
#[inline]
fn head4(b: &[u8], at: usize) -> u32 {
    let mut v = 0u32;
    for k in 0..4 {
        if let Some(c) = b.get(at + k) {
            v |= u32::from(c.to_ascii_lowercase()) << (8 * k);
        }
    }
    v
}

/// The built-in detectors, compiled once per engine.
#[derive(Debug)]
pub(super) struct Builtins {
    anchors: Vec<Anchor>,
    class: [u8; 256],
    /// Letter-initial anchors by (first letter, class of the second byte): checked at word
    /// starts. Each entry is a range of `bucket_list`.
    buckets: Vec<(u32, u32)>,
    bucket_list: Vec<u16>,
    /// Other anchors by first byte: checked wherever the byte appears.
    by_byte: Vec<Vec<u16>>,
    pub(super) injection: Vec<InjectionPattern>,
}

impl Builtins {
    pub(super) fn new() -> Result<Self> {
        let injection = injection::compile()?;
        let mut anchors: Vec<Anchor> = Vec::new();
        let mut add = |anchor: &[u8], h: Handler| {
            let bytes = anchor.to_ascii_lowercase();
            match anchors.iter_mut().find(|a| a.bytes == bytes) {
                Some(a) => {
                    if !a.handlers.contains(&h) {
                        a.handlers.push(h)
                    }
                }
                None => {
                    let head = head4(&bytes, 0);
                    let n = bytes.len().min(4);
                    let head_mask = if n == 4 { u32::MAX } else { (1u32 << (8 * n)) - 1 };
                    anchors.push(Anchor { bytes, handlers: vec![h], head, head_mask })
                }
            }
        };
        for (a, h) in SECRET_ANCHORS {
            add(a.as_bytes(), *h);
        }
        for (i, p) in injection.iter().enumerate() {
            let idx = u16::try_from(i).map_err(|_| SafetyError::Internal("too many patterns".into()))?;
            for a in p.anchors {
                add(a, Handler::Injection(idx));
            }
        }
        let too_many = || SafetyError::Internal("too many anchors".into());
        let mut class = [OTHER; 256];
        for c in b'a'..=b'z' {
            class[usize::from(c)] = LETTER;
            class[usize::from(c.to_ascii_uppercase())] = LETTER;
        }
        // NB: digits, `:` and `=` have classes of their own (no anchor lookup).
        for d in b'0'..=b'9' {
            class[usize::from(d)] = DIGIT;
        }
        class[usize::from(b':')] = COLON;
        class[usize::from(b'=')] = EQUALS;
        let mut by_byte: Vec<Vec<u16>> = vec![Vec::new(); 256];
        let mut grouped: Vec<Vec<u16>> = vec![Vec::new(); 26 * SECOND];
        for (i, a) in anchors.iter().enumerate() {
            let i = u16::try_from(i).map_err(|_| too_many())?;
            let Some(&first) = a.bytes.first() else { continue };
            if first.is_ascii_lowercase() {
                grouped[usize::from(first - b'a') * SECOND + second_class(a.bytes.get(1))].push(i);
            } else {
                by_byte[usize::from(first)].push(i);
                class[usize::from(first)] = TRIGGER;
                class[usize::from(first.to_ascii_uppercase())] = TRIGGER;
            }
        }
        let mut buckets = Vec::with_capacity(grouped.len());
        let mut bucket_list = Vec::new();
        for g in grouped {
            let start = u32::try_from(bucket_list.len()).map_err(|_| too_many())?;
            bucket_list.extend(g);
            let end = u32::try_from(bucket_list.len()).map_err(|_| too_many())?;
            buckets.push((start, end));
        }
        Ok(Self { anchors, class, buckets, bucket_list, by_byte, injection })
    }

    #[inline]
    fn anchor_at(&self, b: &[u8], at: usize, head: u32, i: u16) -> Option<&Anchor> {
        let a = self.anchors.get(usize::from(i))?;
        if head & a.head_mask != a.head {
            return None;
        }
        (a.bytes.len() <= 4
            || b.get(at..at + a.bytes.len()).is_some_and(|s| s.eq_ignore_ascii_case(&a.bytes)))
        .then_some(a)
    }

    /// Finds every enabled built-in match in `text`, appending to `out`. `key` is the JSON
    /// object key the text is the value of, if any (`"password": "..."`).
    pub(super) fn scan(
        &self,
        text: &str,
        mask: DetectorMask,
        injection: bool,
        key: Option<&str>,
        out: &mut Vec<Hit>,
    ) {
        let first = out.len();
        let b = text.as_bytes();
        let n = b.len();
        let numeric = mask.any(&NUMERIC);
        let ipv6 = mask.has(Detector::IpAddress);
        let assignments = mask.any(&[Detector::GenericAssignment, Detector::AwsSecretKey]);
        let mut i = if mask.is_empty() && !injection { n } else { 0 };
        let mut prev_alnum = false;
        // Where the last private key found ends: headers inside it are part of it.
        let mut pem_reach = 0;
        while i < n {
            let c = b[i];
            match self.class[usize::from(c)] {
                LETTER => {
                    if !prev_alnum {
                        let k =
                            usize::from(c.to_ascii_lowercase() - b'a') * SECOND + second_class(b.get(i + 1));
                        if let Some(&(s, e)) = self.buckets.get(k)
                            && s < e
                        {
                            let head = head4(b, i);
                            for &ai in self.bucket_list.get(s as usize..e as usize).unwrap_or(&[]) {
                                if let Some(a) = self.anchor_at(b, i, head, ai) {
                                    for h in &a.handlers {
                                        self.verify(*h, text, i, mask, injection, &mut pem_reach, out);
                                    }
                                }
                            }
                        }
                    }
                    prev_alnum = true;
                    i += 1;
                }
                DIGIT => {
                    i = if numeric {
                        number_at(b, i, mask, out)
                    } else {
                        run_end(b, i, |c| c.is_ascii_digit())
                    };
                    prev_alnum = b[i - 1].is_ascii_alphanumeric();
                }
                COLON => {
                    if assignments {
                        assignment_at(b, i, mask, out);
                    }
                    i = if ipv6 { ipv6_at(text, i, out) } else { i + 1 };
                    prev_alnum = b[i - 1].is_ascii_alphanumeric();
                }
                EQUALS => {
                    if assignments {
                        assignment_at(b, i, mask, out);
                    }
                    prev_alnum = false;
                    i += 1;
                }
                TRIGGER => {
                    let head = head4(b, i);
                    for &ai in &self.by_byte[usize::from(c)] {
                        if let Some(a) = self.anchor_at(b, i, head, ai) {
                            for h in &a.handlers {
                                self.verify(*h, text, i, mask, injection, &mut pem_reach, out);
                            }
                        }
                    }
                    prev_alnum = false;
                    i += 1;
                }
                _ => {
                    prev_alnum = false;
                    i += 1;
                }
            }
        }
        if let Some(key) = key
            && mask.any(&[Detector::GenericAssignment, Detector::AwsSecretKey])
        {
            key_value(key, text, mask, out);
        }
        dedupe(out, first);
    }

    #[expect(clippy::too_many_arguments, reason = "the scan loop's state, passed down to one verifier")]
    fn verify(
        &self,
        h: Handler,
        text: &str,
        at: usize,
        mask: DetectorMask,
        injection: bool,
        pem_reach: &mut usize,
        out: &mut Vec<Hit>,
    ) {
        let b = text.as_bytes();
        let on = |d: Detector| mask.has(d);
        match h {
            Handler::Email if on(Detector::Email) => email(b, at, out),
            Handler::Aws if on(Detector::AwsAccessKey) || on(Detector::AwsSecretKey) => aws(b, at, mask, out),
            Handler::Github if on(Detector::GithubToken) => github(b, at, out),
            Handler::Slack if on(Detector::SlackToken) => slack(b, at, out),
            Handler::SlackWebhook if on(Detector::SlackToken) => slack_webhook(b, at, out),
            Handler::SkDash if on(Detector::OpenaiKey) || on(Detector::AnthropicKey) => {
                sk_dash(b, at, mask, out)
            }
            Handler::Google if on(Detector::GoogleApiKey) => google(b, at, out),
            Handler::Stripe if on(Detector::StripeKey) => stripe(b, at, out),
            Handler::Pem if on(Detector::PrivateKey) && at >= *pem_reach => pem(b, at, pem_reach, out),
            Handler::Jwt if on(Detector::Jwt) => jwt(b, at, out),
            Handler::Bearer if on(Detector::GenericAssignment) => bearer(b, at, out),
            Handler::Injection(i) if injection => {
                if let Some(p) = self.injection.get(usize::from(i))
                    && let Some(end) = p.matches(text, at)
                {
                    out.push(Hit::new(Rule::Injection(i), at, end));
                }
            }
            _ => {}
        }
    }
}

/// Drops overlapping duplicates among the built-in hits from `first` on: a generic
/// assignment that overlaps a specific secret, and overlapping hits of one detector (the
/// one that starts first, or the longer of two that start together, stays).
///
/// O(h log h) in the number of hits: a text made of nothing but matches (a megabyte of
/// `a.b@c.de `) has hundreds of thousands of them, so no pair of hits is ever compared.
fn dedupe(out: &mut Vec<Hit>, first: usize) {
    let hits = &mut out[first..];
    if hits.len() < 2 {
        return;
    }
    hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
    let specific =
        |h: &Hit| matches!(h.rule, Rule::Builtin(d) if d != Detector::GenericAssignment && !d.is_pii());
    let mut keep = vec![true; hits.len()];
    // Same detector: a hit overlapping an earlier kept hit of its detector goes. Hits are
    // sorted by start, so the earlier kept hits it can overlap are the ones whose redacted
    // part ends after its own starts: the furthest end per detector says it.
    let same_detector_pass = |keep: &mut [bool], only_generic: bool| {
        let mut reach: HashMap<Detector, usize> = HashMap::new();
        for (i, h) in hits.iter().enumerate() {
            let Rule::Builtin(d) = h.rule else { continue };
            if !keep[i] || (d == Detector::GenericAssignment) != only_generic {
                continue;
            }
            let end = reach.entry(d).or_insert(0);
            if h.redact_start < *end {
                keep[i] = false;
            } else {
                *end = (*end).max(h.redact_end);
            }
        }
    };
    same_detector_pass(&mut keep, false);
    // Generic assignments overlapping a kept specific secret go: the kept secrets' redacted
    // parts sorted by start with a running maximum of their ends answer "does any of them
    // overlap [s, e)" by one binary search.
    let mut secrets: Vec<(usize, usize)> = hits
        .iter()
        .zip(&keep)
        .filter(|(h, k)| **k && specific(h))
        .map(|(h, _)| (h.redact_start, h.redact_end))
        .collect();
    if !secrets.is_empty() {
        secrets.sort_unstable();
        let mut furthest = 0;
        for s in &mut secrets {
            furthest = furthest.max(s.1);
            s.1 = furthest;
        }
        for (i, h) in hits.iter().enumerate() {
            if h.rule != Rule::Builtin(Detector::GenericAssignment) {
                continue;
            }
            let before_end = secrets.partition_point(|s| s.0 < h.redact_end);
            if before_end > 0 && secrets[before_end - 1].1 > h.redact_start {
                keep[i] = false;
            }
        }
    }
    same_detector_pass(&mut keep, true);
    let mut k = keep.into_iter();
    let tail: Vec<Hit> = out.drain(first..).filter(|_| k.next().unwrap_or(false)).collect();
    out.extend(tail);
}

// -------------------------------------------------------------------------------------
// Byte classes and helpers
// -------------------------------------------------------------------------------------

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether the byte before `at` ends a word (or there is none).
fn left_boundary(b: &[u8], at: usize, class: impl Fn(u8) -> bool) -> bool {
    at == 0 || b.get(at - 1).is_none_or(|c| !class(*c))
}

/// The end of the run of `class` bytes starting at `from`.
fn run_end(b: &[u8], from: usize, class: impl Fn(u8) -> bool) -> usize {
    let mut i = from;
    while i < b.len() && class(b[i]) {
        i += 1;
    }
    i
}

fn key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn ieq(b: &[u8], at: usize, lit: &str) -> bool {
    b.get(at..at + lit.len()).is_some_and(|s| s.eq_ignore_ascii_case(lit.as_bytes()))
}

fn starts(b: &[u8], at: usize, lit: &str) -> bool {
    b.get(at..at + lit.len()).is_some_and(|s| s == lit.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn all() -> DetectorMask {
        let mut m = DetectorMask::default();
        for d in Detector::ALL {
            m.insert(d);
        }
        m
    }

    pub(super) fn found(text: &str) -> Vec<(&'static str, String)> {
        let b = Builtins::new().unwrap();
        let mut out = Vec::new();
        b.scan(text, all(), false, None, &mut out);
        out.iter()
            .filter_map(|h| match h.rule {
                Rule::Builtin(d) => Some((d.as_str(), text[h.redact_start..h.redact_end].to_owned())),
                _ => None,
            })
            .collect()
    }

    pub(super) fn one(text: &str, id: &str, expected: &str) {
        let f = found(text);
        assert!(
            f.iter().any(|(d, s)| *d == id && s == expected),
            "{text:?}: expected {id} {expected:?}, got {f:?}"
        );
    }

    pub(super) fn none(text: &str) {
        let f = found(text);
        assert!(f.is_empty(), "{text:?}: expected nothing, got {f:?}");
    }

    #[test]
    fn specific_secret_wins_over_generic() {
        let f = found("OPENAI_API_KEY=sk-proj-abc123DEF456ghi789JKL012mno345");
        assert_eq!(f, vec![("secrets.openai_key", "sk-proj-abc123DEF456ghi789JKL012mno345".to_owned())]);
    }
}
