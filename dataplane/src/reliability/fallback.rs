//! Fallback chains: which model to try next when one failed in a way another may not.

use super::retry::ErrorClass;

/// An ordered chain of models to fall back to, and the error classes that move along it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackPolicy {
    /// Models in order of preference. The requested model may be in it (the chain then
    /// continues after it) or not (the chain is tried from the start).
    pub chain: Vec<String>,
    /// The error classes that trigger a fallback; any other error goes to the caller.
    pub on: Vec<ErrorClass>,
}

impl Default for FallbackPolicy {
    /// No chain; would fall back on unavailable, timeout and rate limited.
    fn default() -> Self {
        Self {
            chain: Vec::new(),
            on: vec![ErrorClass::Unavailable, ErrorClass::Timeout, ErrorClass::RateLimited],
        }
    }
}

impl FallbackPolicy {
    /// The next model to try after the models in `tried` (in the order tried; the first is
    /// the requested one) and the last of them failed with `class`, or `None`.
    ///
    /// The chain only moves forward: when the requested model is in the chain, only the
    /// models after it are candidates, so a chain `[big, small, other]` never sends a
    /// request for `small` up to `big`. A model already tried is never chosen again.
    pub fn next(&self, tried: &[String], class: ErrorClass) -> Option<&str> {
        if !self.on.contains(&class) {
            return None;
        }
        let start = tried
            .first()
            .and_then(|requested| self.chain.iter().position(|m| m == requested))
            .map_or(0, |at| at + 1);
        self.chain.iter().skip(start).find(|m| !tried.contains(m)).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(chain: &[&str], on: &[ErrorClass]) -> FallbackPolicy {
        FallbackPolicy { chain: chain.iter().map(|s| (*s).to_owned()).collect(), on: on.to_vec() }
    }

    fn tried(models: &[&str]) -> Vec<String> {
        models.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn walks_the_chain_in_order() {
        let p = policy(&["gpt-4o", "claude-sonnet", "gpt-4o-mini"], &[ErrorClass::Unavailable]);
        assert_eq!(p.next(&tried(&["gpt-4o"]), ErrorClass::Unavailable), Some("claude-sonnet"));
        assert_eq!(
            p.next(&tried(&["gpt-4o", "claude-sonnet"]), ErrorClass::Unavailable),
            Some("gpt-4o-mini")
        );
        assert_eq!(
            p.next(&tried(&["gpt-4o", "claude-sonnet", "gpt-4o-mini"]), ErrorClass::Unavailable),
            None
        );
    }

    #[test]
    fn a_chain_without_the_requested_model_starts_at_its_head() {
        let p = policy(&["a", "b"], &[ErrorClass::RateLimited]);
        assert_eq!(p.next(&tried(&["x"]), ErrorClass::RateLimited), Some("a"));
        assert_eq!(p.next(&tried(&["x", "a"]), ErrorClass::RateLimited), Some("b"));
        assert_eq!(p.next(&tried(&[]), ErrorClass::RateLimited), Some("a"));
    }

    #[test]
    fn only_moves_forward_and_never_repeats() {
        let p = policy(&["big", "small", "other", "small"], &[ErrorClass::Timeout]);
        assert_eq!(p.next(&tried(&["small"]), ErrorClass::Timeout), Some("other"));
        assert_eq!(p.next(&tried(&["small", "other"]), ErrorClass::Timeout), None);
    }

    #[test]
    fn only_the_configured_classes_fall_back() {
        let p = policy(&["a", "b"], &[ErrorClass::ContextLengthExceeded, ErrorClass::ContentFiltered]);
        assert_eq!(p.next(&tried(&["a"]), ErrorClass::ContextLengthExceeded), Some("b"));
        assert_eq!(p.next(&tried(&["a"]), ErrorClass::ContentFiltered), Some("b"));
        assert_eq!(p.next(&tried(&["a"]), ErrorClass::Unavailable), None);
        assert_eq!(p.next(&tried(&["a"]), ErrorClass::Client), None);
        let default = FallbackPolicy::default();
        assert_eq!(default.next(&tried(&["a"]), ErrorClass::Unavailable), None, "empty chain");
    }
}
