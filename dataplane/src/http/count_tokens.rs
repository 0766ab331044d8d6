//! `POST /v1/messages/count_tokens`: the Anthropic SDKs' `messages.count_tokens`. The body
//! is a Messages request without `max_tokens`; it is validated like one, the model must be
//! one the caller's key may use, and the answer is the gateway's own input-token count for
//! it (the count budgets reserve against), in Anthropic's shape: `{"input_tokens": n}`.
//! Nothing is sent upstream and nothing is charged.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{parse_json, read_body_within, validate};
use crate::Shared;
use crate::cost::estimate_input_tokens;
use crate::error::{ApiError, ApiFormat};
use crate::providers::Wire;

pub async fn count_tokens(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let result = async {
        let (parts, body) = request.into_parts();
        let key = shared.keys.authenticate(&parts.headers, crate::now_ms()).await?;
        let bytes = read_body_within(
            &parts.headers,
            body,
            shared.options.max_body_bytes,
            shared.options.body_timeouts,
        )
        .await?;
        let mut value = parse_json(&bytes)?;
        let input_tokens = count(&shared, &key, &mut value)?;
        Ok::<_, ApiError>(Json(json!({ "input_tokens": input_tokens })).into_response())
    };
    result.await.unwrap_or_else(|e| e.into_response(ApiFormat::Anthropic))
}

/// Validates `body` (a Messages request that may leave out `max_tokens`) and counts it.
fn count(shared: &Shared, key: &crate::auth::KeyRecord, body: &mut Value) -> Result<u64, ApiError> {
    if let Value::Object(obj) = body {
        if obj.contains_key("stream") {
            return Err(ApiError::invalid("`stream` is not a count_tokens parameter", Some("stream".into())));
        }
        // NB: `max_tokens` does not change the input count; count_tokens bodies omit it.
        obj.entry("max_tokens").or_insert(json!(1));
    }
    let info = validate::messages(body)?;
    let model = &info.model;
    if shared.runtime.load().route(model).is_none() {
        return Err(ApiError::not_found("model_not_found", format!("model {model:?} does not exist"))
            .with_param("model"));
    }
    if !key.allows_model(model) {
        return Err(ApiError::forbidden(
            "model_not_allowed",
            format!("this key may not use model {model:?}"),
        )
        .with_param("model"));
    }
    Ok(estimate_input_tokens(model, body, Wire::Anthropic))
}
