//! `GET /v1/models`: only the models the caller's key may use, in OpenAI's shape, or in
//! Anthropic's when the caller is an Anthropic client (it sends `anthropic-version`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Shared;
use crate::error::{ApiError, ApiFormat};

fn model_object(name: &str, owner: &str) -> Value {
    json!({ "id": name, "object": "model", "created": 0, "owned_by": owner })
}

/// Anthropic's model object (`anthropic.types.ModelInfo`).
fn anthropic_model_object(name: &str) -> Value {
    json!({ "type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z" })
}

/// The API shape the caller speaks: the Anthropic SDKs send `anthropic-version` on every call.
fn format_of(headers: &HeaderMap) -> ApiFormat {
    if headers.contains_key("anthropic-version") { ApiFormat::Anthropic } else { ApiFormat::OpenAi }
}

fn owner(shared: &Shared, name: &str) -> String {
    let runtime = shared.runtime.load();
    runtime
        .route(name)
        .and_then(|r| r.targets.first())
        .and_then(|t| runtime.config.ip_tokens.get(t.ip_token))
        .map_or_else(|| "tollgate".to_owned(), |t| t.provider.as_str().to_owned())
}

pub async fn list(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let format = format_of(request.headers());
    let key = match shared.keys.authenticate(request.headers(), crate::now_ms()).await {
        Ok(k) => k,
        Err(e) => return e.into_response(format),
    };
    let runtime = shared.runtime.load();
    let names: Vec<&String> = runtime.config.models.keys().filter(|m| key.allows_model(m)).collect();
    if format == ApiFormat::Anthropic {
        let data: Vec<Value> = names.iter().map(|m| anthropic_model_object(m)).collect();
        return Json(json!({
            "data": data,
            "has_more": false,
            "first_id": names.first(),
            "last_id": names.last(),
        }))
        .into_response();
    }
    let data: Vec<Value> = names.iter().map(|m| model_object(m, &owner(&shared, m))).collect();
    Json(json!({ "object": "list", "data": data })).into_response()
}

pub async fn get_one(
    State(shared): State<Arc<Shared>>,
    Path(model): Path<String>,
    request: Request,
) -> Response {
    let format = format_of(request.headers());
    let key = match shared.keys.authenticate(request.headers(), crate::now_ms()).await {
        Ok(k) => k,
        Err(e) => return e.into_response(format),
    };
    let exists = shared.runtime.load().route(&model).is_some();
    if !exists || !key.allows_model(&model) {
        return ApiError::not_found(
            "model_not_found",
            format!("model {model:?} does not exist or is not available to this key"),
        )
        .with_param("model")
        .into_response(format);
    }
    if format == ApiFormat::Anthropic {
        return Json(anthropic_model_object(&model)).into_response();
    }
    Json(model_object(&model, &owner(&shared, &model))).into_response()
}
