//! The deterministic reply: what the mock "generates" for a request, its token counts, and
//! how it is cut into stream chunks.

use crate::control::{Control, ToolCallSpec};

/// The mock's deterministic token count: `ceil(utf8 bytes / 4)`, so 0 only for "".
pub fn count_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// How many characters of the last user message the default reply quotes.
const QUOTE_CHARS: usize = 200;

/// Why generation stopped, in neutral terms; each API names it its own way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    Length,
    ToolCalls,
}

/// A computed reply: either text or tool calls (never both).
#[derive(Debug)]
pub(crate) struct Reply<'c> {
    pub(crate) text: String,
    pub(crate) tool_calls: &'c [ToolCallSpec],
    pub(crate) completion_tokens: u64,
    pub(crate) finish: Finish,
}

impl<'c> Reply<'c> {
    /// The reply to a conversation whose last user message reads `last_user_text` and which
    /// holds `tool_results` tool results.
    ///
    /// `x-mock-tool-calls` (while fewer than `x-mock-tool-rounds` tool results came back)
    /// wins over `x-mock-reply`, which wins over the default `Mock reply to: <quote>`. Tool
    /// calls are never truncated by `max_tokens`.
    pub(crate) fn compose(
        control: &'c Control,
        last_user_text: &str,
        tool_results: usize,
        max_tokens: Option<u64>,
    ) -> Self {
        Self::compose_structured(control, last_user_text, None, tool_results, max_tokens)
    }

    /// [`Self::compose`] for a request that asked for structured output: `structured` (see
    /// `crate::structured`) replaces the default quote, below `x-mock-reply`.
    pub(crate) fn compose_structured(
        control: &'c Control,
        last_user_text: &str,
        structured: Option<String>,
        tool_results: usize,
        max_tokens: Option<u64>,
    ) -> Self {
        let calls_due = control.tool_rounds.is_none_or(|rounds| tool_results < rounds);
        if let Some(calls) = control.tool_calls.as_deref().filter(|_| calls_due) {
            let argument_bytes: usize = calls.iter().map(|c| c.arguments.get().len()).sum();
            return Self {
                text: String::new(),
                tool_calls: calls,
                completion_tokens: (argument_bytes as u64).div_ceil(4),
                finish: Finish::ToolCalls,
            };
        }
        let mut text = match (&control.reply, structured) {
            (Some(reply), _) => reply.clone(),
            (None, Some(json)) => json,
            (None, None) if last_user_text.is_empty() => "Mock reply.".to_owned(),
            (None, None) => {
                let quote = match last_user_text.char_indices().nth(QUOTE_CHARS) {
                    Some((end, _)) => &last_user_text[..end],
                    None => last_user_text,
                };
                let mut text = String::with_capacity(15 + quote.len());
                text.push_str("Mock reply to: ");
                text.push_str(quote);
                text
            }
        };
        let tokens = count_tokens(&text);
        match max_tokens {
            Some(max) if max < tokens => {
                let limit = usize::try_from(max.saturating_mul(4)).unwrap_or(usize::MAX);
                text.truncate(floor_char_boundary(&text, limit));
                Self { text, tool_calls: &[], completion_tokens: max, finish: Finish::Length }
            }
            _ => Self { text, tool_calls: &[], completion_tokens: tokens, finish: Finish::Stop },
        }
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// The stream pieces of a reply's text: `chunks` roughly equal pieces when forced, else
/// one piece per word (each keeping its trailing whitespace). Never yields "".
pub(crate) fn text_pieces(text: &str, chunks: Option<usize>) -> Vec<&str> {
    match chunks {
        Some(n) => split_even(text, n),
        None => split_words(text),
    }
}

/// The stream fragments of a tool call's JSON arguments: `chunks` roughly equal pieces
/// when forced, else pieces of at most 16 characters. Never yields "".
pub(crate) fn argument_fragments(arguments: &str, chunks: Option<usize>) -> Vec<&str> {
    let n = chunks.unwrap_or_else(|| arguments.chars().count().div_ceil(16));
    split_even(arguments, n)
}

fn split_words(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut after_space = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            after_space = true;
        } else if after_space {
            pieces.push(&text[start..i]);
            start = i;
            after_space = false;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

fn split_even(text: &str, n: usize) -> Vec<&str> {
    let total = text.chars().count();
    if total == 0 {
        return Vec::new();
    }
    let n = n.clamp(1, total);
    let mut pieces = Vec::with_capacity(n);
    let mut start = 0;
    let mut next = 1;
    for (ci, (bi, _)) in text.char_indices().enumerate() {
        // NB: n <= total, so the boundaries next*total/n are strictly increasing and each
        // is met exactly once.
        if next < n && ci == next * total / n {
            pieces.push(&text[start..bi]);
            start = bi;
            next += 1;
        }
    }
    pieces.push(&text[start..]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_tokens_is_ceil_bytes_over_four() {
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("a"), 1);
        assert_eq!(count_tokens("abcd"), 1);
        assert_eq!(count_tokens("abcde"), 2);
        assert_eq!(count_tokens("é"), 1);
        assert_eq!(count_tokens("ééé"), 2);
    }

    #[test]
    fn tool_rounds_end_the_calls_once_enough_results_came_back() {
        let control = Control {
            tool_calls: Some(vec![ToolCallSpec {
                name: "f".into(),
                arguments: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            }]),
            tool_rounds: Some(1),
            ..Control::default()
        };
        assert_eq!(Reply::compose(&control, "q", 0, None).finish, Finish::ToolCalls);
        let after = Reply::compose(&control, "q", 1, None);
        assert_eq!((after.finish, after.text.as_str()), (Finish::Stop, "Mock reply to: q"));
        let unlimited = Control { tool_rounds: None, ..control };
        assert_eq!(Reply::compose(&unlimited, "q", 5, None).finish, Finish::ToolCalls);
    }

    #[test]
    fn default_reply_quotes_200_chars() {
        let control = Control::default();
        let long = "ж".repeat(300);
        let reply = Reply::compose(&control, &long, 0, None);
        assert_eq!(reply.text, format!("Mock reply to: {}", "ж".repeat(200)));
        assert_eq!(reply.finish, Finish::Stop);
        assert_eq!(Reply::compose(&control, "", 0, None).text, "Mock reply.");
    }

    #[test]
    fn max_tokens_truncates_at_a_char_boundary() {
        let control = Control { reply: Some("ab€defghij".to_owned()), ..Control::default() };
        // 12 bytes = 3 tokens; max 1 => 4 bytes, but byte 4 is inside '€' (bytes 2..5).
        let reply = Reply::compose(&control, "", 0, Some(1));
        assert_eq!(reply.text, "ab");
        assert_eq!(reply.completion_tokens, 1);
        assert_eq!(reply.finish, Finish::Length);
        let untouched = Reply::compose(&control, "", 0, Some(3));
        assert_eq!(untouched.text, "ab€defghij");
        assert_eq!(untouched.finish, Finish::Stop);
    }

    #[test]
    fn pieces_concatenate_to_the_text() {
        let text = "Mock reply to:  héllo wörld \n bye";
        let words = text_pieces(text, None);
        assert_eq!(words, ["Mock ", "reply ", "to:  ", "héllo ", "wörld \n ", "bye"]);
        for n in 1..=40 {
            let pieces = text_pieces(text, Some(n));
            assert_eq!(pieces.concat(), text);
            assert_eq!(pieces.len(), n.min(text.chars().count()));
            assert!(pieces.iter().all(|p| !p.is_empty()));
        }
        assert!(text_pieces("", None).is_empty());
        assert!(text_pieces("", Some(3)).is_empty());
        let args = r#"{"city":"Paris","unit":"celsius"}"#;
        assert_eq!(argument_fragments(args, None).concat(), args);
        assert_eq!(argument_fragments(args, None).len(), 3);
    }
}
