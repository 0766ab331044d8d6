//! Any body a caller can send: parsed with the gateway's limits, validated for both
//! wires, translated both ways, and the translations' answers and streams fed back. Nothing
//! may panic; whatever is accepted must translate to JSON that parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tollgate_dataplane::http::{parse_json, validate};
use tollgate_dataplane::translate::{
    AnthropicToOpenAiStream, OpenAiToAnthropicStream, anthropic_request_to_openai, anthropic_response_to_openai,
    openai_request_to_anthropic, openai_response_to_anthropic,
};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_json(data) else { return };
    let _ = validate::chat_completions(&body);
    let _ = validate::messages(&body);
    let _ = validate::embeddings(&body);
    if let Ok(v) = openai_request_to_anthropic(&body, "m", 4096) {
        assert!(serde_json::from_str::<Value>(&v.to_string()).is_ok());
    }
    if let Ok(v) = anthropic_request_to_openai(&body, "m") {
        assert!(serde_json::from_str::<Value>(&v.to_string()).is_ok());
    }
    let _ = openai_response_to_anthropic(&body, "m");
    let _ = anthropic_response_to_openai(&body, "m");
    let mut a2o = AnthropicToOpenAiStream::new("m", true);
    let _ = a2o.on_event("message_start", &body);
    let _ = a2o.on_event("content_block_delta", &body);
    let _ = a2o.finish();
    let mut o2a = OpenAiToAnthropicStream::new("m");
    let _ = o2a.on_chunk(&body);
    let _ = o2a.finish();
});
