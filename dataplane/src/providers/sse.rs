//! An incremental Server-Sent Events parser for upstream streams: feed it bytes as they
//! arrive, take complete events out. Handles `\n`, `\r\n` and `\r` line ends, comments,
//! multi-line `data`, and events split anywhere across reads.

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, empty when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Parser state.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    last_was_cr: bool,
    /// Bytes held in the current event, to bound memory against a hostile upstream.
    held: usize,
}

/// The largest event accepted from an upstream (a single chunk; 8 MiB).
pub const MAX_EVENT_BYTES: usize = 8 << 20;

/// The upstream sent an event larger than [`MAX_EVENT_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("upstream sent a stream event larger than {MAX_EVENT_BYTES} bytes")]
pub struct EventTooLarge;

impl SseParser {
    /// Feeds bytes; pushes every completed event to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        for &b in bytes {
            match b {
                b'\n' if self.last_was_cr => self.last_was_cr = false,
                b'\n' | b'\r' => {
                    self.last_was_cr = b == b'\r';
                    self.end_line(out);
                }
                _ => {
                    self.last_was_cr = false;
                    self.held += 1;
                    if self.held > MAX_EVENT_BYTES {
                        return Err(EventTooLarge);
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    /// The stream ended: an event not terminated by a blank line is still delivered.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.line.is_empty() {
            self.end_line(out);
        }
        self.dispatch(out);
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        if self.line.is_empty() {
            self.dispatch(out);
            return;
        }
        let line = String::from_utf8_lossy(&self.line);
        if !line.starts_with(':') {
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                "event" => self.event = value.to_owned(),
                "data" => {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        self.line.clear();
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(SseEvent {
                event: std::mem::take(&mut self.event),
                data: std::mem::take(&mut self.data),
            });
        }
        self.event.clear();
        self.has_data = false;
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &str, piece: usize) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for chunk in input.as_bytes().chunks(piece) {
            p.feed(chunk, &mut out).unwrap();
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn parses_events_split_anywhere() {
        let input = ": comment\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\ndata: x\ndata: y\n\ndata: [DONE]\n\n";
        for piece in 1..input.len() {
            let events = parse_in_pieces(input, piece);
            assert_eq!(events.len(), 3, "piece {piece}");
            assert_eq!(events[0].event, "message_start");
            assert_eq!(events[0].data, "{\"a\":1}");
            assert_eq!(events[1].data, "x\ny");
            assert_eq!(events[2].data, "[DONE]");
        }
    }

    #[test]
    fn delivers_an_unterminated_last_event_and_bounds_size() {
        assert_eq!(parse_in_pieces("data: tail", 3)[0].data, "tail");
        let mut p = SseParser::default();
        let big = vec![b'a'; MAX_EVENT_BYTES + 1];
        assert_eq!(p.feed(&big, &mut Vec::new()), Err(EventTooLarge));
    }
}
