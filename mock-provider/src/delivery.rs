//! Turning an encoded response into a body: whole, or as a timed SSE stream, optionally
//! cut short by a stall or a reset.
//!
//! NB: the common case (no timing, no fault) is one contiguous buffer and no stream at all,
//! so that the mock adds as little as possible to benchmark baselines.

use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

use crate::Fault;
use crate::server::KillSwitch;

/// How long a reset waits after the last partial write, so that the bytes reach the wire
/// (HTTP/2 writes from another task) before the RST discards the send buffer.
const FLUSH_GRACE: Duration = Duration::from_millis(20);

/// How long `reset-before` holds the response back after pulling the kill switch; the
/// connection is gone long before, this only bounds the task.
const RESET_HOLD: Duration = Duration::from_secs(5);

/// Serializes plain response structs.
#[expect(
    clippy::expect_used,
    reason = "serializing derive(Serialize) structs with string keys into a Vec cannot fail"
)]
fn write_json<T: Serialize>(buf: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(buf, value).expect("response structs serialize");
}

pub(crate) fn json_bytes<T: Serialize>(value: &T) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    write_json(&mut buf, value);
    Bytes::from(buf)
}

/// How a body ends early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Stop sending, keep the connection open.
    Stall,
    /// Reset the connection.
    Reset,
}

impl Cut {
    pub(crate) fn of(fault: Option<&Fault>) -> Option<Self> {
        match fault {
            Some(Fault::Stall) => Some(Self::Stall),
            Some(Fault::ResetMidBody) => Some(Self::Reset),
            _ => None,
        }
    }
}

fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "mock fault: connection reset")
}

/// Pulls the connection's kill switch (a real RST under [`crate::serve`]) and returns
/// the error that ends the body (the whole emulation in-process).
async fn reset(kill: Option<&KillSwitch>) -> io::Error {
    if let Some(kill) = kill {
        tokio::time::sleep(FLUSH_GRACE).await;
        kill.fire();
    }
    reset_error()
}

/// The `reset-before` fault: no response byte. Under [`crate::serve`] the connection is
/// dropped while this waits; in-process the body errors before its first byte.
pub(crate) async fn reset_before(kill: Option<&KillSwitch>) -> Response {
    if let Some(kill) = kill {
        kill.fire();
        tokio::time::sleep(RESET_HOLD).await;
    }
    let body = futures::stream::once(async { Err::<Bytes, _>(reset_error()) });
    Body::from_stream(body).into_response()
}

/// A 200 JSON response, possibly cut: stalled (never answered) or reset after half the
/// body (with the full `content-length`, so clients see a truncated body).
pub(crate) async fn json(body: Bytes, cut: Option<Cut>, kill: Option<KillSwitch>) -> Response {
    let content_type = (CONTENT_TYPE, HeaderValue::from_static("application/json"));
    match cut {
        None => (StatusCode::OK, [content_type], body).into_response(),
        Some(Cut::Stall) => std::future::pending().await,
        Some(Cut::Reset) => {
            let len = HeaderValue::from(body.len());
            let half = body.slice(..body.len() / 2);
            let feed = Feed {
                events: vec![(Duration::ZERO, half)].into_iter(),
                until_cut: 1,
                cut: Some(Cut::Reset),
                kill,
                done: false,
            };
            (StatusCode::OK, [content_type, (CONTENT_LENGTH, len)], feed.into_body()).into_response()
        }
    }
}

/// Builds an SSE body event by event. `content` events are the ones carrying generated
/// output: the chunk gap separates them, and a cut comes after the first of them.
pub(crate) struct SseBuilder {
    /// False in the common case: everything goes into `buf`, sent in one piece.
    timed: bool,
    buf: Vec<u8>,
    events: Vec<(Duration, Bytes)>,
    ttft: Duration,
    gap: Duration,
    first_content_end: Option<usize>,
    cut: Option<Cut>,
}

impl SseBuilder {
    /// `ttft` delays the first event (as a real provider's first byte waits for the first
    /// token); `gap` delays every content event after the first.
    pub(crate) fn new(ttft: Duration, gap: Duration, cut: Option<Cut>) -> Self {
        let timed = !ttft.is_zero() || !gap.is_zero() || cut.is_some();
        Self {
            timed,
            buf: Vec::with_capacity(if timed { 256 } else { 2048 }),
            events: Vec::new(),
            ttft,
            gap,
            first_content_end: None,
            cut,
        }
    }

    /// An OpenAI-style `data: <json>` event.
    pub(crate) fn data<T: Serialize>(&mut self, content: bool, value: &T) {
        self.buf.extend_from_slice(b"data: ");
        write_json(&mut self.buf, value);
        self.buf.extend_from_slice(b"\n\n");
        self.end_event(content);
    }

    /// The OpenAI stream terminator.
    pub(crate) fn done(&mut self) {
        self.buf.extend_from_slice(b"data: [DONE]\n\n");
        self.end_event(false);
    }

    /// An Anthropic-style `event: <name>` + `data: <json>` event.
    pub(crate) fn event<T: Serialize>(&mut self, content: bool, name: &str, value: &T) {
        self.buf.extend_from_slice(b"event: ");
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b"\ndata: ");
        write_json(&mut self.buf, value);
        self.buf.extend_from_slice(b"\n\n");
        self.end_event(content);
    }

    fn end_event(&mut self, content: bool) {
        if !self.timed {
            return;
        }
        let pause = if self.events.is_empty() {
            self.ttft
        } else if content && self.first_content_end.is_some() {
            self.gap
        } else {
            Duration::ZERO
        };
        let bytes = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(256)));
        self.events.push((pause, bytes));
        if content && self.first_content_end.is_none() {
            self.first_content_end = Some(self.events.len());
        }
    }

    pub(crate) fn into_response(self, kill: Option<KillSwitch>) -> Response {
        let headers = [
            (CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ];
        if !self.timed {
            // NB: still a stream, so the body goes out chunked as real providers send SSE,
            // not with a content-length a gateway would never see in production.
            let whole = Bytes::from(self.buf);
            let body = Body::from_stream(futures::stream::once(async { Ok::<_, io::Error>(whole) }));
            return (StatusCode::OK, headers, body).into_response();
        }
        // NB: a cut must leave something unsent, so it never comes after the last event.
        let last = self.events.len().saturating_sub(1);
        let until_cut = self.first_content_end.unwrap_or(1).min(last);
        let feed = Feed { events: self.events.into_iter(), until_cut, cut: self.cut, kill, done: false };
        (StatusCode::OK, headers, feed.into_body()).into_response()
    }
}

/// The state of a timed body stream.
struct Feed {
    events: std::vec::IntoIter<(Duration, Bytes)>,
    /// Events still to send before `cut` applies.
    until_cut: usize,
    cut: Option<Cut>,
    kill: Option<KillSwitch>,
    done: bool,
}

impl Feed {
    fn into_body(self) -> Body {
        Body::from_stream(futures::stream::unfold(self, |mut feed| async move {
            if feed.done {
                return None;
            }
            if feed.until_cut == 0 {
                match feed.cut {
                    Some(Cut::Stall) => std::future::pending::<()>().await,
                    Some(Cut::Reset) => {
                        feed.done = true;
                        let err = reset(feed.kill.as_ref()).await;
                        return Some((Err(err), feed));
                    }
                    None => {}
                }
            }
            let (pause, bytes) = feed.events.next()?;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            feed.until_cut = feed.until_cut.saturating_sub(1);
            Some((Ok(bytes), feed))
        }))
    }
}
