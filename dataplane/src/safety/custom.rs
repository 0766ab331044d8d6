//! A policy's own rules: regular expressions (one `RegexSet` pass says which match, then only
//! those are located) and term lists (one Aho-Corasick pass, ASCII case-insensitive, with
//! word-boundary checks; lists with non-ASCII terms use a Unicode case-insensitive regex).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexSet, RegexSetBuilder};
use tollgate_crds::safety::{REGEX_SIZE_LIMIT, RegexConfig, TermsConfig, build_regex};

use super::detectors::{Hit, Rule};
use super::{Result, SafetyError};

/// The custom rules of one stage of one policy.
#[derive(Debug, Default)]
pub(super) struct CustomScanner {
    set: Option<RegexSet>,
    regexes: Vec<Regex>,
    terms: Option<TermMatcher>,
}

#[derive(Debug)]
struct TermMatcher {
    ac: Option<AhoCorasick>,
    /// Automaton pattern → the term lists holding that term.
    lists: Vec<Vec<u16>>,
    /// Lists with non-ASCII terms: (list, regex of those terms).
    unicode: Vec<(u16, Regex)>,
    /// Every term, lower-cased and sorted, for the streaming hold-back.
    sorted: Vec<String>,
}

fn word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl CustomScanner {
    pub(super) fn new(
        policy: &str,
        path: &str,
        regex: &[RegexConfig],
        terms: &[TermsConfig],
    ) -> Result<Self> {
        let err =
            |p: String, message: String| SafetyError::Policy { policy: policy.to_owned(), path: p, message };
        let mut regexes = Vec::with_capacity(regex.len());
        for (i, r) in regex.iter().enumerate() {
            regexes.push(
                build_regex(&r.pattern).map_err(|m| err(format!("{path}.custom.regex[{i}].pattern"), m))?,
            );
        }
        let set = if regex.is_empty() {
            None
        } else {
            Some(
                RegexSetBuilder::new(regex.iter().map(|r| r.pattern.as_str()))
                    .size_limit(REGEX_SIZE_LIMIT.saturating_mul(regex.len().max(1)))
                    .dfa_size_limit(REGEX_SIZE_LIMIT * 4)
                    .build()
                    .map_err(|e| {
                        err(format!("{path}.custom.regex"), format!("the patterns together: {e}"))
                    })?,
            )
        };
        let terms = if terms.is_empty() {
            None
        } else {
            Some(TermMatcher::new(terms).map_err(|m| err(format!("{path}.custom.terms"), m))?)
        };
        Ok(Self { set, regexes, terms })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.set.is_none() && self.terms.is_none()
    }

    pub(super) fn has_regex(&self) -> bool {
        self.set.is_some()
    }

    pub(super) fn has_terms(&self) -> bool {
        self.terms.is_some()
    }

    /// Appends every custom match in `text`; `slot` is the policy's slot in its set.
    pub(super) fn scan(&self, slot: u16, text: &str, out: &mut Vec<Hit>) {
        if let Some(set) = &self.set {
            for i in set.matches(text).iter() {
                let Some(re) = self.regexes.get(i) else { continue };
                let idx = u16::try_from(i).unwrap_or(u16::MAX);
                for m in re.find_iter(text).filter(|m| !m.is_empty()) {
                    out.push(Hit {
                        rule: Rule::Regex(slot, idx),
                        start: m.start(),
                        end: m.end(),
                        redact_start: m.start(),
                        redact_end: m.end(),
                    });
                }
            }
        }
        if let Some(t) = &self.terms {
            t.scan(slot, text, out);
        }
    }

    /// The start of the longest suffix of `text` (beginning at a word start) that is a
    /// proper prefix of some term: text a stream must hold back, as the next chunk may
    /// complete the term.
    pub(super) fn term_prefix_start(&self, text: &str) -> Option<usize> {
        let t = self.terms.as_ref()?;
        let max = t.sorted.iter().map(String::len).max().unwrap_or(0);
        let mut from = text.len().saturating_sub(max);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        for (i, c) in text[from..].char_indices() {
            let at = from + i;
            let boundary = !word_char(c) || text[..at].chars().next_back().is_none_or(|p| !word_char(p));
            if !boundary {
                continue;
            }
            let tail = text[at..].to_lowercase();
            let k = t.sorted.partition_point(|s| s.as_str() < tail.as_str());
            if t.sorted.get(k).is_some_and(|s| s.len() > tail.len() && s.starts_with(&tail)) {
                return Some(at);
            }
        }
        None
    }
}

impl TermMatcher {
    fn new(lists: &[TermsConfig]) -> Result<Self, String> {
        let mut ascii: Vec<String> = Vec::new();
        let mut owners: Vec<Vec<u16>> = Vec::new();
        let mut unicode = Vec::new();
        let mut sorted = Vec::new();
        for (li, list) in lists.iter().enumerate() {
            let li = u16::try_from(li).map_err(|_| "too many term lists".to_owned())?;
            let mut non_ascii = Vec::new();
            for term in &list.terms {
                sorted.push(term.to_lowercase());
                if term.is_ascii() {
                    let lower = term.to_ascii_lowercase();
                    match ascii.iter().position(|t| *t == lower) {
                        Some(p) => owners[p].push(li),
                        None => {
                            ascii.push(lower);
                            owners.push(vec![li]);
                        }
                    }
                } else {
                    let edge = |c: Option<char>| if c.is_some_and(word_char) { r"\b" } else { "" };
                    non_ascii.push(format!(
                        "{}{}{}",
                        edge(term.chars().next()),
                        regex::escape(term),
                        edge(term.chars().next_back())
                    ));
                }
            }
            if !non_ascii.is_empty() {
                let re = regex::RegexBuilder::new(&format!("(?:{})", non_ascii.join("|")))
                    .case_insensitive(true)
                    .size_limit(REGEX_SIZE_LIMIT * 4)
                    .build()
                    .map_err(|e| format!("terms: {e}"))?;
                unicode.push((li, re));
            }
        }
        sorted.sort();
        sorted.dedup();
        let ac = if ascii.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&ascii)
                    .map_err(|e| format!("terms: {e}"))?,
            )
        };
        Ok(Self { ac, lists: owners, unicode, sorted })
    }

    fn scan(&self, slot: u16, text: &str, out: &mut Vec<Hit>) {
        if let Some(ac) = &self.ac {
            for m in ac.find_iter(text) {
                let (s, e) = (m.start(), m.end());
                let first = text[s..].chars().next();
                let last = text[..e].chars().next_back();
                let before = text[..s].chars().next_back();
                let after = text[e..].chars().next();
                let left_ok = !first.is_some_and(word_char) || !before.is_some_and(word_char);
                let right_ok = !last.is_some_and(word_char) || !after.is_some_and(word_char);
                if !(left_ok && right_ok) {
                    continue;
                }
                for li in self.lists.get(m.pattern().as_usize()).into_iter().flatten() {
                    out.push(Hit {
                        rule: Rule::Terms(slot, *li),
                        start: s,
                        end: e,
                        redact_start: s,
                        redact_end: e,
                    });
                }
            }
        }
        for (li, re) in &self.unicode {
            for m in re.find_iter(text) {
                out.push(Hit {
                    rule: Rule::Terms(slot, *li),
                    start: m.start(),
                    end: m.end(),
                    redact_start: m.start(),
                    redact_end: m.end(),
                });
            }
        }
    }
}
