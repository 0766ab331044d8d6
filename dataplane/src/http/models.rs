//! `GET /v1/models`: only the models the caller's key may use.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Shared;
use crate::error::{ApiError, ApiFormat};

fn model_object(name: &str, owner: &str) -> Value {
    json!({ "id": name, "object": "model", "created": 0, "owned_by": owner })
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
    let key = match shared.keys.authenticate(request.headers(), crate::now_ms()).await {
        Ok(k) => k,
        Err(e) => return e.into_response(ApiFormat::OpenAi),
    };
    let runtime = shared.runtime.load();
    let data: Vec<Value> = runtime
        .config
        .models
        .keys()
        .filter(|m| key.allows_model(m))
        .map(|m| model_object(m, &owner(&shared, m)))
        .collect();
    Json(json!({ "object": "list", "data": data })).into_response()
}

pub async fn get_one(
    State(shared): State<Arc<Shared>>,
    Path(model): Path<String>,
    request: Request,
) -> Response {
    let key = match shared.keys.authenticate(request.headers(), crate::now_ms()).await {
        Ok(k) => k,
        Err(e) => return e.into_response(ApiFormat::OpenAi),
    };
    let exists = shared.runtime.load().route(&model).is_some();
    if !exists || !key.allows_model(&model) {
        return ApiError::not_found(
            "model_not_found",
            format!("model {model:?} does not exist or is not available to this key"),
        )
        .with_param("model")
        .into_response(ApiFormat::OpenAi);
    }
    Json(model_object(&model, &owner(&shared, &model))).into_response()
}
