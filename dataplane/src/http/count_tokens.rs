//! `POST /v1/messages/count_tokens`: the Anthropic SDKs' `messages.count_tokens`. The body
//! is a Messages request without `max_tokens`; it is validated like one and the model must
//! be one the caller's key may use. When the model's first target is an Anthropic IP token
//! the provider counts (the body sent as it is, with the upstream model name); otherwise, or
//! when that call fails, the answer is the gateway's own count (the one budgets reserve
//! by), marked `x-tollgate-token-count: estimate`. Never charged.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{parse_json, read_body_within, validate};
use crate::Shared;
use crate::cost::estimate_input_tokens;
use crate::error::{ApiError, ApiFormat};
use crate::providers::{Operation, Provider, Wire};

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
        let estimate = count(&shared, &key, &mut value)?;
        if let Some(exact) = provider_count(&shared, &parts.headers, value).await {
            return Ok(Json(json!({ "input_tokens": exact })).into_response());
        }
        let mut response = Json(json!({ "input_tokens": estimate })).into_response();
        response.headers_mut().insert("x-tollgate-token-count", http::HeaderValue::from_static("estimate"));
        Ok::<_, ApiError>(response)
    };
    result.await.unwrap_or_else(|e| e.into_response(ApiFormat::Anthropic))
}

/// The provider's own count, when the model is served by Anthropic first and it answers.
async fn provider_count(shared: &Shared, headers: &http::HeaderMap, mut body: Value) -> Option<u64> {
    let runtime = shared.runtime.load_full();
    let model = body.get("model")?.as_str()?.to_owned();
    let target = runtime.route(&model)?.targets.first()?;
    let upstream = runtime.upstreams.get(target.ip_token)?;
    if upstream.provider != Provider::Anthropic {
        return None;
    }
    if let Value::Object(obj) = &mut body {
        obj.remove("max_tokens");
        obj.insert("model".into(), json!(target.upstream_model));
    }
    let bytes = serde_json::to_vec(&body).ok()?;
    let request =
        upstream.request(Operation::CountTokens, &target.upstream_model, bytes.into(), headers).ok()?;
    let answer = async {
        let response = shared.client.send(upstream, request).await.ok()?;
        if !response.status().is_success() {
            tracing::debug!(status = %response.status(), "the provider did not count; answering the estimate");
            return None;
        }
        let body = axum::body::to_bytes(response.into_body(), 64 << 10).await.ok()?;
        serde_json::from_slice::<Value>(&body).ok()?.get("input_tokens")?.as_u64()
    };
    tokio::time::timeout(shared.options.response_timeout, answer).await.ok().flatten()
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
