//! OpenAI embeddings (also under Azure's deployment path): deterministic unit vectors
//! derived from SHA-256 of each input.

use std::convert::identity;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::delivery::{self, json_bytes};
use crate::exchange::Exchange;
use crate::flavor::Flavor;
use crate::reply::count_tokens;

const DEFAULT_DIMENSIONS: usize = 16;
const MAX_DIMENSIONS: usize = 8192;

#[derive(Deserialize)]
struct EmbeddingsRequest {
    #[serde(default)]
    model: Option<String>,
    input: Value,
    #[serde(default)]
    dimensions: Option<u64>,
    #[serde(default)]
    encoding_format: Option<String>,
}

/// One input to embed: text, or pre-tokenized ids.
enum Input<'a> {
    Text(&'a str),
    Tokens(Vec<u64>),
}

impl Input<'_> {
    fn tokens(&self) -> u64 {
        match self {
            Self::Text(text) => count_tokens(text),
            Self::Tokens(ids) => ids.len() as u64,
        }
    }

    /// A deterministic unit vector: components drawn from SHA-256 in counter mode, seeded
    /// with the input's own hash.
    fn vector(&self, dimensions: usize) -> Vec<f32> {
        let mut hasher = Sha256::new();
        match self {
            Self::Text(text) => hasher.update(text.as_bytes()),
            Self::Tokens(ids) => {
                hasher.update(b"tokens:");
                for id in ids {
                    hasher.update(id.to_le_bytes());
                }
            }
        }
        let seed = hasher.finalize();
        let mut raw = Vec::with_capacity(dimensions);
        let mut block = 0u32;
        while raw.len() < dimensions {
            let digest = Sha256::new().chain_update(seed).chain_update(block.to_le_bytes()).finalize();
            for word in digest.chunks_exact(4) {
                if raw.len() == dimensions {
                    break;
                }
                let x = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                raw.push(f64::from(x) / f64::from(u32::MAX) * 2.0 - 1.0);
            }
            block += 1;
        }
        let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            let mut unit = vec![0.0; dimensions];
            unit[0] = 1.0;
            return unit;
        }
        // NB: computed in f64, sent as f32 (what the wire format carries).
        raw.iter().map(|x| (x / norm) as f32).collect()
    }
}

/// Parses OpenAI's `input`: a string, an array of strings, an array of token ids, or an
/// array of token-id arrays.
fn inputs(input: &Value) -> Result<Vec<Input<'_>>, String> {
    fn token_ids(items: &[Value]) -> Option<Vec<u64>> {
        items.iter().map(Value::as_u64).collect()
    }
    match input {
        Value::String(text) => Ok(vec![Input::Text(text)]),
        Value::Array(items) if items.is_empty() => Err("'input' must not be empty".to_owned()),
        Value::Array(items) => match &items[0] {
            Value::String(_) => items
                .iter()
                .map(|item| item.as_str().map(Input::Text))
                .collect::<Option<_>>()
                .ok_or_else(|| "'input' mixes strings with other values".to_owned()),
            Value::Number(_) => token_ids(items)
                .map(|ids| vec![Input::Tokens(ids)])
                .ok_or_else(|| "'input' token ids must be non-negative integers".to_owned()),
            Value::Array(_) => items
                .iter()
                .map(|item| item.as_array().and_then(|ids| token_ids(ids)).map(Input::Tokens))
                .collect::<Option<_>>()
                .ok_or_else(|| "'input' token arrays must hold non-negative integers".to_owned()),
            _ => Err("'input' must be a string, strings, or token ids".to_owned()),
        },
        _ => Err("'input' must be a string, strings, or token ids".to_owned()),
    }
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<Embedding>,
    model: &'a str,
    usage: Usage,
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: usize,
    embedding: Encoded,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Encoded {
    Float(Vec<f32>),
    /// Little-endian f32 bytes, standard base64: what the official clients ask for.
    Base64(String),
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

pub(crate) async fn openai(State(state): State<AppState>, req: Request) -> Response {
    respond(&state, None, req).await.unwrap_or_else(identity)
}

/// Azure OpenAI: the deployment in the path is the model.
pub(crate) async fn azure(
    State(state): State<AppState>,
    Path(deployment): Path<String>,
    req: Request,
) -> Response {
    respond(&state, Some(deployment), req).await.unwrap_or_else(identity)
}

async fn respond(state: &AppState, deployment: Option<String>, req: Request) -> Result<Response, Response> {
    let ex = Exchange::receive(Flavor::OpenAi, req).await?;
    let request: EmbeddingsRequest = ex.parse()?;
    let bad = |message: &str| ex.flavor.bad_request(message);
    let model = deployment.or(request.model).ok_or_else(|| bad("you must provide a model parameter"))?;
    let inputs = inputs(&request.input).map_err(|m| bad(&m))?;
    let dimensions = match request.dimensions {
        None => DEFAULT_DIMENSIONS,
        Some(d) => usize::try_from(d)
            .ok()
            .filter(|d| (1..=MAX_DIMENSIONS).contains(d))
            .ok_or_else(|| bad(&format!("'dimensions' must be in 1..={MAX_DIMENSIONS}")))?,
    };
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(bad(&format!("'encoding_format' must be \"float\" or \"base64\", not {other:?}")));
        }
    };
    let cut = ex.prepare(state).await?;

    let prompt_tokens = inputs.iter().map(Input::tokens).sum();
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let vector = input.vector(dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Encoded::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Encoded::Float(vector)
            };
            Embedding { object: "embedding", index, embedding }
        })
        .collect();
    let body = json_bytes(&EmbeddingList {
        object: "list",
        data,
        model: &model,
        usage: Usage { prompt_tokens, total_tokens: prompt_tokens },
    });
    Ok(delivery::json(body, cut, ex.kill).await)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_vectors() {
        for dims in [1, 7, 16, 1536] {
            let v = Input::Text("hello").vector(dims);
            assert_eq!(v.len(), dims);
            let norm: f64 = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{norm}");
            assert_eq!(v, Input::Text("hello").vector(dims));
        }
        assert_ne!(Input::Text("a").vector(8), Input::Text("b").vector(8));
    }

    #[test]
    fn parses_every_input_shape() {
        let parse = |v: Value| inputs(&v).map(|i| i.iter().map(Input::tokens).collect::<Vec<_>>());
        assert_eq!(parse(serde_json::json!("abcde")).unwrap(), [2]);
        assert_eq!(parse(serde_json::json!(["a", "bcdef"])).unwrap(), [1, 2]);
        assert_eq!(parse(serde_json::json!([1, 2, 3])).unwrap(), [3]);
        assert_eq!(parse(serde_json::json!([[1], [2, 3]])).unwrap(), [1, 2]);
        assert!(parse(serde_json::json!([])).is_err());
        assert!(parse(serde_json::json!(["a", 1])).is_err());
        assert!(parse(serde_json::json!([-1])).is_err());
        assert!(parse(serde_json::json!({"a": 1})).is_err());
    }
}
