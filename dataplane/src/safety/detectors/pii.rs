//! The PII verifiers the scan loop in [`super`] calls at an anchor: e-mail addresses at `@`
//! (internationalised ones whole), digit runs at their first digit (split into groups and
//! classified window by window: cards by printed grouping, IIN and Luhn; US SSNs by shape
//! or context and the SSA's ranges; phone numbers by E.164, NANP and national trunk-0
//! formats; IPv4 by octets and context), IBANs glued to their country code (registry
//! length and mod-97), and IPv6 around a `:`. Each appends [`Hit`]s; none allocates per
//! byte.

use tollgate_crds::safety::Detector;

use super::{DetectorMask, Hit, is_word, left_boundary, run_end};

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

pub(super) fn email(b: &[u8], at: usize, out: &mut Vec<Hit>) {
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
pub(super) fn number_at(b: &[u8], d: usize, mask: DetectorMask, out: &mut Vec<Hit>) -> usize {
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
pub(super) fn ipv6_at(text: &str, colon: usize, out: &mut Vec<Hit>) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::detectors::tests::{found, none, one};

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
}
