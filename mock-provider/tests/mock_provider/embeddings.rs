//! Embeddings, in-process.

use base64::Engine;
use serde_json::{Value, json};
use tollgate_mock_provider::count_tokens;

use crate::support::{app, post, send};

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[tokio::test]
async fn float_vectors_default_to_16_unit_dimensions() {
    let body = json!({"model": "mock-embedding-1", "input": ["hello", "world!"]});
    let reply = send(&app(), post("/v1/embeddings", &[], &body)).await.json();
    assert_eq!(reply["object"], "list");
    assert_eq!(reply["model"], "mock-embedding-1");
    let data = reply["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let v = floats(&item["embedding"]);
        assert_eq!(v.len(), 16);
        assert!((norm(&v) - 1.0).abs() < 1e-5);
    }
    let tokens = count_tokens("hello") + count_tokens("world!");
    assert_eq!(reply["usage"], json!({"prompt_tokens": tokens, "total_tokens": tokens}));
}

#[tokio::test]
async fn base64_decodes_to_a_unit_vector_of_the_requested_dimensions() {
    let app = app();
    let body = json!({"model": "m", "input": "hello", "dimensions": 256, "encoding_format": "base64"});
    let reply = send(&app, post("/v1/embeddings", &[], &body)).await.json();
    let encoded = reply["data"][0]["embedding"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    assert_eq!(bytes.len(), 256 * 4);
    let v: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert!((norm(&v) - 1.0).abs() < 1e-5);

    // The same input as floats is the same vector.
    let body = json!({"model": "m", "input": "hello", "dimensions": 256});
    let reply = send(&app, post("/v1/embeddings", &[], &body)).await.json();
    assert_eq!(floats(&reply["data"][0]["embedding"]), v);
}

#[tokio::test]
async fn token_inputs_azure_path_and_bad_requests() {
    let app = app();
    let body = json!({"input": [[1, 2, 3], [4]]});
    let reply = send(&app, post("/openai/deployments/emb/embeddings", &[], &body)).await.json();
    assert_eq!(reply["model"], "emb");
    assert_eq!(reply["usage"]["prompt_tokens"], 4);

    for bad in [
        json!({"model": "m", "input": []}),
        json!({"model": "m", "input": "x", "dimensions": 0}),
        json!({"model": "m", "input": "x", "encoding_format": "int8"}),
        json!({"input": "x"}),
    ] {
        let reply = send(&app, post("/v1/embeddings", &[], &bad)).await;
        assert_eq!(reply.status, 400, "{bad}");
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    }
}
