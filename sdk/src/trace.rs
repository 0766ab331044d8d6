//! W3C trace context. The SDK creates no spans of its own: it forwards the caller's context
//! (`traceparent`, and `tracestate` when given) on every HTTP and gRPC call, so the gateway's
//! spans join the agent's trace.

/// A validated `traceparent` (version 00) and optional `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    traceparent: String,
    tracestate: Option<String>,
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl TraceContext {
    /// Parses a `traceparent` header value; `None` when it is not a valid version-00 value
    /// (all-zero trace or span ids are invalid, as the W3C specification says).
    pub fn parse(traceparent: &str) -> Option<Self> {
        let parts: Vec<&str> = traceparent.trim().split('-').collect();
        let [version, trace_id, span_id, flags] = parts.as_slice() else { return None };
        let valid = *version == "00"
            && is_lower_hex(trace_id, 32)
            && is_lower_hex(span_id, 16)
            && is_lower_hex(flags, 2)
            && trace_id.bytes().any(|b| b != b'0')
            && span_id.bytes().any(|b| b != b'0');
        valid.then(|| Self { traceparent: traceparent.trim().to_owned(), tracestate: None })
    }

    /// A new sampled root context (a fresh trace id and span id), for an agent run that has
    /// no tracer of its own but wants its calls grouped in one trace.
    pub fn new_root() -> Self {
        let trace: u128 = rand::random::<u128>().max(1);
        let span: u64 = rand::random::<u64>().max(1);
        Self { traceparent: format!("00-{trace:032x}-{span:016x}-01"), tracestate: None }
    }

    /// Adds vendor state (`tracestate`), sent as given.
    #[must_use]
    pub fn with_tracestate(mut self, tracestate: impl Into<String>) -> Self {
        self.tracestate = Some(tracestate.into());
        self
    }

    /// The `traceparent` value.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The `tracestate` value, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The trace id (32 hex digits).
    pub fn trace_id(&self) -> &str {
        self.traceparent.get(3..35).unwrap_or_default()
    }

    /// The headers to send.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        std::iter::once(("traceparent", self.traceparent.as_str()))
            .chain(self.tracestate.as_deref().map(|s| ("tracestate", s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_valid_version_00_values() {
        let t = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn new_roots_are_valid_and_distinct() {
        let (a, b) = (TraceContext::new_root(), TraceContext::new_root());
        assert_eq!(TraceContext::parse(a.traceparent()), Some(a.clone()));
        assert_ne!(a.trace_id(), b.trace_id());
        let with_state = a.with_tracestate("vendor=1");
        assert_eq!(with_state.headers().count(), 2);
    }
}
