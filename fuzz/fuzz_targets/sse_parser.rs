//! Any bytes an upstream can stream, cut into chunks at the positions the first bytes
//! choose: the parser never panics, and the events do not depend on how the bytes were cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_dataplane::providers::sse::{SseEvent, SseParser};

fn parse(chunks: &[&[u8]]) -> Option<Vec<(String, String)>> {
    let mut parser = SseParser::default();
    let mut out: Vec<SseEvent> = Vec::new();
    for c in chunks {
        parser.feed(c, &mut out).ok()?;
    }
    parser.finish(&mut out);
    Some(out.into_iter().map(|e| (e.event, e.data)).collect())
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let whole = parse(&[rest]);
    let at = usize::from(cut) % (rest.len() + 1);
    let (a, b) = rest.split_at(at);
    let split = parse(&[a, b]);
    let bytes: Vec<&[u8]> = rest.chunks(1).collect();
    let one_by_one = parse(&bytes);
    if let (Some(w), Some(s), Some(o)) = (&whole, &split, &one_by_one) {
        assert_eq!(w, s, "cut at {at}");
        assert_eq!(w, o, "byte by byte");
    }
});
