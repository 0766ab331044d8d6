//! The built-in detectors, in one pass over the bytes. A 256-entry class table sorts each
//! byte: at the start of a word the first two letters index a small table of literal
//! anchors (`AKIA`, `sk-`, `ghp_`, `eyJ`, `bearer`, the injection trigger words, ...);
//! a few bytes are anchors wherever they appear (`@`, digits, `:`, `=`, `-----BEGIN`, `<|`,
//! ...). Only at an anchor does a hand-written verifier (or a small anchored regex, for
//! injection) look at the bytes around it: digit runs are classified by validators (Luhn,
//! IIN, SSN ranges, mod-97), `:`/`=` check for `<secret identifier> = <value>` and IPv6.
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

/// Literal prefixes of secrets, used by the streaming scanner to decide whether the trailing
/// word of a chunk could be the start of one (exact case).
pub(super) const SECRET_PREFIXES: &[(&str, Detector)] = &[
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

// -------------------------------------------------------------------------------------
// PII
// -------------------------------------------------------------------------------------

fn local_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._%+-".contains(&c)
}

/// Whether the address-like text starting at `start` is the user part of a URL
/// (`https://token@github.com/...`), which is a credential, not an address.
fn url_userinfo(b: &[u8], start: usize) -> bool {
    let from = start.saturating_sub(100);
    let word_start = b[from..start].iter().rposition(u8::is_ascii_whitespace).map_or(from, |p| from + p + 1);
    b[word_start..start].windows(3).any(|w| w == b"://")
}

fn domain_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

const NOT_TLDS: &[&str] = &["png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tiff"];

/// The character ending at byte `end` of the UTF-8 text `b`, and where it starts.
fn char_before(b: &[u8], end: usize) -> Option<(char, usize)> {
    let mut start = end.checked_sub(1)?;
    while start > 0 && b[start] & 0xC0 == 0x80 {
        start -= 1;
    }
    let c = std::str::from_utf8(&b[start..end]).ok()?.chars().next()?;
    Some((c, start))
}

/// The character starting at byte `at` of the UTF-8 text `b`, and where it ends.
fn char_at(b: &[u8], at: usize) -> Option<(char, usize)> {
    let len = match *b.get(at)? {
        c if c < 0x80 => 1,
        c if c >= 0xF0 => 4,
        c if c >= 0xE0 => 3,
        _ => 2,
    };
    let c = std::str::from_utf8(b.get(at..at + len)?).ok()?.chars().next()?;
    Some((c, at + len))
}

/// Internationalised addresses (RFC 6531): letters and digits of any script count in the
/// local part and the domain, so `jürgen@bücher.de` is found whole, never in part.
fn unicode_word(c: char) -> bool {
    !c.is_ascii() && c.is_alphanumeric()
}

/// Scripts written without spaces between words (Han, Hiragana, Katakana, Thai, Lao,
/// Khmer): text in them runs straight into an ASCII address (`请发到zhang@example.com请`),
/// so a change between them and other characters ends an address.
fn unspaced_script(c: char) -> bool {
    matches!(u32::from(c),
        0x0E00..=0x0EFF | 0x1780..=0x17FF | 0x3040..=0x30FF | 0x31F0..=0x31FF
        | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0xFF66..=0xFF9F
        | 0x20000..=0x2FA1F)
}

/// Whether `c` continues an address part whose character next to the `@` is `first`.
fn address_char(c: char, first: char, ascii_class: fn(u8) -> bool) -> bool {
    let allowed = u8::try_from(c).is_ok_and(ascii_class) || unicode_word(c);
    // Separators (`.`, `-`, `+`, ...) belong to every script.
    let separator = c.is_ascii() && !c.is_ascii_alphanumeric();
    allowed && (separator || unspaced_script(c) == unspaced_script(first))
}

fn email(b: &[u8], at: usize, out: &mut Vec<Hit>) {
    let mut start = at;
    let first = char_before(b, at).map_or(' ', |(c, _)| c);
    while let Some((c, s)) = char_before(b, start) {
        if !address_char(c, first, local_char) || at - s > 64 {
            break;
        }
        start = s;
    }
    while start < at && b[start] == b'.' {
        start += 1;
    }
    if start == at
        || b[at - 1] == b'.'
        || b[start..at].windows(2).any(|w| w == b"..")
        || url_userinfo(b, start)
    {
        return;
    }
    let mut end = at + 1;
    let first = char_at(b, at + 1).map_or(' ', |(c, _)| c);
    while let Some((c, e)) = char_at(b, end) {
        if !address_char(c, first, domain_char) || e > at + 1 + 253 {
            break;
        }
        end = e;
    }
    while end > at + 1 && (b[end - 1] == b'.' || b[end - 1] == b'-') {
        end -= 1;
    }
    let domain = &b[at + 1..end];
    if domain.is_empty() || b.get(end) == Some(&b'@') {
        return;
    }
    // `git@github.com:org/repo.git` is an SSH remote, not an address.
    if b.get(end) == Some(&b':') && b.get(end + 1).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'/') {
        return;
    }
    let labels: Vec<&[u8]> = domain.split(|c| *c == b'.').collect();
    if labels.len() < 2 {
        return;
    }
    for l in &labels {
        if l.is_empty() || l.len() > 63 || l[0] == b'-' || l[l.len() - 1] == b'-' {
            return;
        }
    }
    let tld = labels[labels.len() - 1];
    let tld_ok = std::str::from_utf8(tld)
        .is_ok_and(|t| (2..=24).contains(&t.chars().count()) && t.chars().all(char::is_alphabetic));
    if !tld_ok {
        return;
    }
    if NOT_TLDS.iter().any(|t| tld.eq_ignore_ascii_case(t.as_bytes())) {
        return;
    }
    out.push(Hit::builtin(Detector::Email, start, end));
}

/// Most digit groups in one numeric run.
const MAX_GROUPS: usize = 12;

/// A digit group inside a numeric run.
#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
}

fn num_sep(c: u8) -> bool {
    matches!(c, b' ' | b'-' | b'.' | b'(' | b')' | b'/')
}

/// The run of digit groups starting at the digit `d` (`+1 (415) 555-0100`,
/// `4111 1111 1111 1111`, `10.0.0.1`): classifies each contiguous window of groups,
/// longest first. Returns where scanning resumes.
fn number_at(b: &[u8], d: usize, mask: DetectorMask, out: &mut Vec<Hit>) -> usize {
    let n = b.len();
    {
        // IBAN: two capital letters glued to the first digits.
        if mask.has(Detector::Iban)
            && d >= 2
            && b[d - 1].is_ascii_uppercase()
            && b[d - 2].is_ascii_uppercase()
            && left_boundary(b, d - 2, |c| c.is_ascii_alphanumeric())
            && let Some((end, valid)) = iban(b, d - 2)
        {
            // An IBAN-shaped run that fails its checksum is a mistyped IBAN: skip it whole
            // rather than find cards or phones in its digits.
            if valid {
                out.push(Hit::builtin(Detector::Iban, d - 2, end));
            }
            return end;
        }
        if !left_boundary(b, d, |c| is_word(c) || c == b'.')
            || (d > 1 && b[d - 1] == b'.' && is_word(b[d - 2]))
        {
            return run_end(b, d, |c| c.is_ascii_digit());
        }
        // A leading `+` or `(` belongs to the run.
        let mut prefix = None;
        if d > 0 && (b[d - 1] == b'+' || b[d - 1] == b'(') && left_boundary(b, d - 1, is_word) {
            prefix = Some(b[d - 1]);
        }
        let mut groups = [Group { start: 0, end: 0 }; MAX_GROUPS];
        let mut g = 0;
        let mut digits = 0;
        let mut longest = 0;
        let mut j = d;
        loop {
            let e = run_end(b, j, |c| c.is_ascii_digit());
            groups[g] = Group { start: j, end: e };
            g += 1;
            digits += e - j;
            longest = longest.max(e - j);
            // Up to two separator bytes, then a digit, continue the run.
            let s = run_end(b, e, num_sep);
            if s - e == 0 || s - e > 2 || s >= n || !b[s].is_ascii_digit() || g >= MAX_GROUPS {
                j = e;
                break;
            }
            j = s;
        }
        // A last group glued to letters (`1234abc`) is not a number.
        if b.get(j).is_some_and(|c| is_word(*c)) {
            g -= 1;
            digits -= groups[g].end - groups[g].start;
        }
        // Fast path: nothing we look for is this short, and no group is longer than 19.
        let short = digits < 4 || (g == 1 && digits < 8);
        if g > 0 && !short && longest <= 19 {
            classify_run(b, &groups[..g], prefix, mask, out);
        }
        j.max(d + 1)
    }
}

fn classify_run(b: &[u8], groups: &[Group], prefix: Option<u8>, mask: DetectorMask, out: &mut Vec<Hit>) {
    let g = groups.len();
    let mut gi = 0;
    while gi < g {
        // A window may only start after a space (or at the run start).
        if gi > 0 && b[groups[gi - 1].end..groups[gi].start].first() != Some(&b' ') {
            gi += 1;
            continue;
        }
        let mut found = None;
        let max_j = (gi + 8).min(g);
        for gj in (gi..max_j).rev() {
            if gj + 1 < g && b[groups[gj].end] != b' ' {
                continue;
            }
            let start = if gi == 0 {
                prefix.map_or(groups[0].start, |_| groups[0].start - 1)
            } else if b[groups[gi].start - 1] == b'(' {
                groups[gi].start - 1
            } else {
                groups[gi].start
            };
            let lead = b[start];
            if let Some(d) = classify(b, &groups[gi..=gj], start, lead, mask) {
                let mut end = groups[gj].end;
                if b.get(end) == Some(&b')') && lead == b'(' && gj == gi {
                    end += 1;
                }
                found = Some((d, start, end, gj));
                break;
            }
        }
        match found {
            Some((d, start, end, gj)) => {
                out.push(Hit::builtin(d, start, end));
                gi = gj + 1;
            }
            None => gi += 1,
        }
    }
}

/// Lower-cased text of up to `n` bytes before `at`.
fn before_lower(b: &[u8], at: usize, n: usize) -> String {
    let s = at.saturating_sub(n);
    String::from_utf8_lossy(&b[s..at]).to_lowercase()
}

fn classify(b: &[u8], groups: &[Group], start: usize, lead: u8, mask: DetectorMask) -> Option<Detector> {
    // NB: stack arrays; this runs for every candidate window of every number.
    let mut digit_buf = [0u8; MAX_GROUPS * 19];
    let mut lens_buf = [0usize; MAX_GROUPS];
    let mut seps_buf: [&[u8]; MAX_GROUPS] = [&[]; MAX_GROUPS];
    let mut nd = 0;
    for (k, g) in groups.iter().enumerate() {
        let part = &b[g.start..g.end];
        digit_buf[nd..nd + part.len()].copy_from_slice(part);
        nd += part.len();
        lens_buf[k] = part.len();
        if k > 0 {
            seps_buf[k - 1] = &b[groups[k - 1].end..g.start];
        }
    }
    let digits = &digit_buf[..nd];
    let lens = &lens_buf[..groups.len()];
    let sep_list = &seps_buf[..groups.len() - 1];
    let plain = lead.is_ascii_digit();
    if mask.has(Detector::CreditCard) && plain && is_card(digits, lens, sep_list) {
        return Some(Detector::CreditCard);
    }
    if mask.has(Detector::UsSsn) && plain && is_ssn(b, start, digits, lens, sep_list) {
        return Some(Detector::UsSsn);
    }
    if mask.has(Detector::Phone) && is_phone(b, start, lead, digits, lens, sep_list) {
        return Some(Detector::Phone);
    }
    if mask.has(Detector::IpAddress) && plain && is_ipv4(b, start, digits, lens, sep_list) {
        return Some(Detector::IpAddress);
    }
    None
}

fn same_single_sep(seps: &[&[u8]], allowed: &[u8]) -> Option<u8> {
    let first = *seps.first()?;
    if first.len() != 1 || !allowed.contains(&first[0]) {
        return None;
    }
    seps.iter().all(|s| *s == first).then_some(first[0])
}

pub(super) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d.wrapping_sub(b'0'));
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn prefix_num(digits: &[u8], n: usize) -> u32 {
    digits.iter().take(n).fold(0, |acc, d| acc * 10 + u32::from(d.wrapping_sub(b'0')))
}

/// Issuer identification: Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro, Mir.
fn known_issuer(d: &[u8]) -> bool {
    let p1 = prefix_num(d, 1);
    let p2 = prefix_num(d, 2);
    let p3 = prefix_num(d, 3);
    let p4 = prefix_num(d, 4);
    p1 == 4
        || (51..=55).contains(&p2)
        || (2221..=2720).contains(&p4)
        || p2 == 34
        || p2 == 37
        || p4 == 6011
        || p2 == 65
        || (644..=649).contains(&p3)
        || (3528..=3589).contains(&p4)
        || (300..=305).contains(&p3)
        || p2 == 36
        || p2 == 38
        || p2 == 39
        || p2 == 62
        || p2 == 50
        || (56..=58).contains(&p2)
        || p2 == 67
        || p4 == 6304
        || (2200..=2204).contains(&p4)
}

fn is_card(digits: &[u8], lens: &[usize], seps: &[&[u8]]) -> bool {
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    // Printed groupings: 4-4-4-4 (most), 4-4-4-4-3 (19 digits), 4-6-5 (Amex), 4-6-4 (Diners).
    const GROUPINGS: &[&[usize]] = &[&[4, 4, 4, 4], &[4, 4, 4, 4, 3], &[4, 6, 5], &[4, 6, 4]];
    if lens.len() > 1 && (same_single_sep(seps, b" -").is_none() || !GROUPINGS.contains(&lens)) {
        return false;
    }
    if digits.iter().all(|d| *d == digits[0]) {
        return false;
    }
    known_issuer(digits) && luhn(digits)
}

pub(super) fn valid_ssn(area: u32, group: u32, serial: u32) -> bool {
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn is_ssn(b: &[u8], start: usize, digits: &[u8], lens: &[usize], seps: &[&[u8]]) -> bool {
    if digits.len() != 9 {
        return false;
    }
    let shaped = lens == [3, 2, 4] && same_single_sep(seps, b"- ").is_some();
    let bare_in_context = lens == [9] && {
        let ctx = before_lower(b, start, 32);
        ctx.contains("ssn") || ctx.contains("social security")
    };
    if !(shaped || bare_in_context) {
        return false;
    }
    valid_ssn(prefix_num(digits, 3), prefix_num(&digits[3..], 2), prefix_num(&digits[5..], 4))
}

const PHONE_WORDS: &[&str] = &["phone", "tel", "call", "mobile", "cell", "fax", "whatsapp", "sms", "text me"];

fn is_phone(b: &[u8], start: usize, lead: u8, digits: &[u8], lens: &[usize], seps: &[&[u8]]) -> bool {
    let n = digits.len();
    if seps.iter().any(|s| s.contains(&b'/')) {
        return false;
    }
    if lead == b'+' {
        return (8..=15).contains(&n) && lens.len() <= 6 && (lens.len() == 1 || lens[0] <= 4);
    }
    let nanp = |d: &[u8]| d.len() == 10 && (b'2'..=b'9').contains(&d[0]) && (b'2'..=b'9').contains(&d[3]);
    // (415) 555-0100, 415-555-0100, 415.555.0100, 415 555 0100, 1-800-555-0199
    if lens == [3, 3, 4] && nanp(digits) {
        let s0 = seps[0];
        let paren = lead == b'(' && (s0 == b") " || s0 == b")" || s0 == b")-");
        let plain = lead.is_ascii_digit() && s0.len() == 1 && seps[1] == s0;
        if (paren && seps[1].len() == 1 && b" -.".contains(&seps[1][0])) || plain {
            return true;
        }
    }
    if lens == [1, 3, 3, 4]
        && digits[0] == b'1'
        && nanp(&digits[1..])
        && same_single_sep(seps, b" -.").is_some()
    {
        return true;
    }
    // National formats with a trunk 0: 020 7946 0958, 07700 900123, 01 23 45 67 89.
    if (9..=12).contains(&n)
        && digits[0] == b'0'
        && digits[1] != b'0'
        && lead == b'0'
        && lens.len() >= 2
        && lens.len() <= 5
    {
        let sep_ok = same_single_sep(seps, b" -").is_some()
            || (lens.len() >= 4 && same_single_sep(seps, b".").is_some());
        if sep_ok && lens[0] <= 5 && lens.iter().all(|l| (2..=8).contains(l)) {
            return true;
        }
    }
    // Bare digits after a word that says it is a phone number.
    if lens.len() == 1 && (10..=11).contains(&n) && lead.is_ascii_digit() {
        let ctx = before_lower(b, start, 24);
        if PHONE_WORDS.iter().any(|w| ctx.contains(w))
            && (nanp(digits) || (n == 11 && digits[0] == b'1' && nanp(&digits[1..])) || digits[0] == b'0')
        {
            return true;
        }
    }
    false
}

fn is_ipv4(b: &[u8], start: usize, digits: &[u8], lens: &[usize], seps: &[&[u8]]) -> bool {
    if lens.len() != 4 || same_single_sep(seps, b".").is_none() || lens.iter().any(|l| *l > 3) {
        return false;
    }
    let mut octets = [0u32; 4];
    let mut k = 0;
    for (i, l) in lens.iter().enumerate() {
        let part = &digits[k..k + l];
        if *l > 1 && part[0] == b'0' {
            return false;
        }
        octets[i] = prefix_num(part, *l);
        if octets[i] > 255 {
            return false;
        }
        k += l;
    }
    // Loopback, unspecified, broadcast and netmasks are not anyone's address.
    if octets[0] == 127 || octets == [0, 0, 0, 0] || octets[0] == 255 {
        return false;
    }
    let ctx = before_lower(b, start, 16);
    !(ctx.contains("version") || ctx.contains("release") || ctx.contains("build") || ctx.ends_with("v "))
}

fn ipv6_char(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b':' || c == b'.'
}

/// An IPv6 address around the colon at `colon`; returns where scanning resumes.
fn ipv6_at(text: &str, colon: usize, out: &mut Vec<Hit>) -> usize {
    let b = text.as_bytes();
    let mut s = colon;
    while s > 0 && colon - s < 45 && ipv6_char(b[s - 1]) {
        s -= 1;
    }
    let mut e = run_end(b, colon, ipv6_char);
    let resume = e.max(colon + 1);
    while e > s && (b[e - 1] == b'.' || (b[e - 1] == b':' && !(e >= 2 && b[e - 2] == b':'))) {
        e -= 1;
    }
    if !left_boundary(b, s, is_word) || b.get(e).is_some_and(|c| is_word(*c)) || e - s > 45 {
        return resume;
    }
    let cand = &text[s..e];
    if cand.bytes().filter(|c| *c == b':').count() < 2 || !cand.bytes().any(|c| c.is_ascii_digit()) {
        return resume;
    }
    if let Ok(addr) = cand.parse::<std::net::Ipv6Addr>()
        && !addr.is_loopback()
        && !addr.is_unspecified()
    {
        out.push(Hit::builtin(Detector::IpAddress, s, e));
    }
    resume
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

pub(super) fn iban_mod97(chars: &[u8]) -> bool {
    let mut rem = 0u32;
    for c in chars[4..].iter().chain(&chars[..4]) {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c.to_ascii_uppercase() - b'A') + 10
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// An IBAN-shaped run starting at `at` (country code), printed compact or in groups of
/// four: its end and whether the checksum holds.
fn iban(b: &[u8], at: usize) -> Option<(usize, bool)> {
    let country = b.get(at..at + 2)?;
    let len = IBAN_LENGTHS.iter().find(|(c, _)| c.as_slice() == country)?.1;
    let mut chars = Vec::with_capacity(34);
    let mut i = at;
    while i < b.len() && chars.len() < len {
        let c = b[i];
        if c.is_ascii_uppercase() || c.is_ascii_digit() {
            chars.push(c);
            i += 1;
        } else if c == b' ' && chars.len() % 4 == 0 && b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) {
            i += 1;
        } else {
            break;
        }
    }
    if chars.len() != len || b.get(i).is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    if !chars[2].is_ascii_digit() || !chars[3].is_ascii_digit() {
        return None;
    }
    Some((i, iban_mod97(&chars)))
}

// -------------------------------------------------------------------------------------
// Secrets
// -------------------------------------------------------------------------------------

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

fn aws(b: &[u8], at: usize, mask: DetectorMask, out: &mut Vec<Hit>) {
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

fn github(b: &[u8], at: usize, out: &mut Vec<Hit>) {
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

fn slack(b: &[u8], at: usize, out: &mut Vec<Hit>) {
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

fn slack_webhook(b: &[u8], at: usize, out: &mut Vec<Hit>) {
    let body = at + "hooks.slack.com/services/".len();
    let e = run_end(b, body, |c| c.is_ascii_alphanumeric() || c == b'/');
    if e - body < 20 || !starts(b, body, "T") {
        return;
    }
    let start = if at >= 8 && ieq(b, at - 8, "https://") { at - 8 } else { at };
    out.push(Hit::builtin(Detector::SlackToken, start, e));
}

fn sk_dash(b: &[u8], at: usize, mask: DetectorMask, out: &mut Vec<Hit>) {
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

fn google(b: &[u8], at: usize, out: &mut Vec<Hit>) {
    if !starts(b, at, "AIza") || !left_boundary(b, at, key_char) {
        return;
    }
    let e = run_end(b, at + 4, key_char);
    if e - at == 39 && !placeholder(&b[at + 4..e]) {
        out.push(Hit::builtin(Detector::GoogleApiKey, at, e));
    }
}

fn stripe(b: &[u8], at: usize, out: &mut Vec<Hit>) {
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
pub(super) fn pem_header_end(b: &[u8], at: usize) -> Option<usize> {
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
pub(super) fn pem_footer_end(b: &[u8], from: usize) -> Option<usize> {
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
fn pem(b: &[u8], at: usize, reach: &mut usize, out: &mut Vec<Hit>) {
    let Some(header_end) = pem_header_end(b, at) else { return };
    let end = pem_footer_end(b, header_end).unwrap_or(b.len());
    *reach = end;
    out.push(Hit::builtin(Detector::PrivateKey, at, end));
}

pub(super) fn jwt_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn jwt(b: &[u8], at: usize, out: &mut Vec<Hit>) {
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
pub(super) fn secret_ident(ident: &[u8]) -> bool {
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
fn assignment_at(b: &[u8], p: usize, mask: DetectorMask, out: &mut Vec<Hit>) {
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
fn bearer(b: &[u8], at: usize, out: &mut Vec<Hit>) {
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
fn key_value(key: &str, text: &str, mask: DetectorMask, out: &mut Vec<Hit>) {
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
    use super::*;

    fn all() -> DetectorMask {
        let mut m = DetectorMask::default();
        for d in Detector::ALL {
            m.insert(d);
        }
        m
    }

    fn found(text: &str) -> Vec<(&'static str, String)> {
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

    fn one(text: &str, id: &str, expected: &str) {
        let f = found(text);
        assert!(
            f.iter().any(|(d, s)| *d == id && s == expected),
            "{text:?}: expected {id} {expected:?}, got {f:?}"
        );
    }

    fn none(text: &str) {
        let f = found(text);
        assert!(f.is_empty(), "{text:?}: expected nothing, got {f:?}");
    }

    #[test]
    fn emails() {
        one(
            "write to alice.smith+tag@mail.example.co.uk.",
            "pii.email",
            "alice.smith+tag@mail.example.co.uk",
        );
        one("<bob@example.org>", "pii.email", "bob@example.org");
        none("follow @rustlang and @user on social");
        none("git@github.com:org/repo.git");
        none("icon@2x.png and user@localhost and pkg@1.2.3");
        // Internationalised addresses are found whole: no part of them is left out.
        one("schreib an jürgen@example.com bitte", "pii.email", "jürgen@example.com");
        one("mail “zoë@bücher.de” now", "pii.email", "zoë@bücher.de");
        one("почта: иван@пример.рф", "pii.email", "иван@пример.рф");
        // Scripts without spaces run into the address; it still ends where they start.
        one("请发邮件到zhang@example.com请在3天内回复", "pii.email", "zhang@example.com");
        one(&format!("zhang@example.com{}", "请".repeat(30)), "pii.email", "zhang@example.com");
        one("連絡先はtaro@example.comまで", "pii.email", "taro@example.com");
        one("宛先: 太郎@例え.テスト", "pii.email", "太郎@例え.テスト");
        // The 64-byte local-part limit never cuts a character in two.
        let long = format!("{}@example.com", "ü".repeat(40));
        assert!(!found(&long).is_empty(), "found, and sliced on character boundaries");
    }

    #[test]
    fn phones() {
        one("call +1 (415) 555-0100 now", "pii.phone", "+1 (415) 555-0100");
        one("+447911123456", "pii.phone", "+447911123456");
        one("office: (415) 555-0100", "pii.phone", "(415) 555-0100");
        one("ring 415.555.0100", "pii.phone", "415.555.0100");
        one("London 020 7946 0958", "pii.phone", "020 7946 0958");
        one("tel 4155550100", "pii.phone", "4155550100");
        one("1-800-555-0199", "pii.phone", "1-800-555-0199");
        none("the year 2024-01-15 had 365 days and 1,234,567 people");
        none("order 4155550100 shipped");
    }

    #[test]
    fn cards() {
        one("card 4111 1111 1111 1111 exp 12/29", "pii.credit_card", "4111 1111 1111 1111");
        one("amex 3782-822463-10005", "pii.credit_card", "3782-822463-10005");
        one("5555555555554444", "pii.credit_card", "5555555555554444");
        none("4111 1111 1111 1112");
        none("ISBN 978-3-16-148410-0 and 9783161484100");
        none("0000 0000 0000 0000");
    }

    #[test]
    fn ssns() {
        one("SSN 123-45-6789", "pii.us_ssn", "123-45-6789");
        one("ssn: 219099999", "pii.us_ssn", "219099999");
        none("000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000");
        none("id 219099999");
    }

    #[test]
    fn ibans() {
        one("IBAN DE89 3704 0044 0532 0130 00.", "pii.iban", "DE89 3704 0044 0532 0130 00");
        one("GB82WEST12345698765432", "pii.iban", "GB82WEST12345698765432");
        none("DE89 3704 0044 0532 0130 01");
        assert!(iban_mod97(b"GB82WEST12345698765432"));
    }

    #[test]
    fn ip_addresses() {
        one("host 192.168.1.20 is up", "pii.ip_address", "192.168.1.20");
        one("[2001:db8::8a2e:370:7334]:443", "pii.ip_address", "2001:db8::8a2e:370:7334");
        one("fe80::1ff:fe23:4567:890a%eth0", "pii.ip_address", "fe80::1ff:fe23:4567:890a");
        none("127.0.0.1 ::1 0.0.0.0 255.255.255.0 999.1.1.1 v1.2.3.4 version 10.0.19041.1");
        none("std::vector Add::add 12:30:45 00:1A:2B:3C:4D:5E 1.2.3.4.5");
    }

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
    fn specific_secret_wins_over_generic() {
        let f = found("OPENAI_API_KEY=sk-proj-abc123DEF456ghi789JKL012mno345");
        assert_eq!(f, vec![("secrets.openai_key", "sk-proj-abc123DEF456ghi789JKL012mno345".to_owned())]);
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
