//! The admin REST API under `/api/v1`. Errors use the same JSON shape as the gateway
//! (`{"error": {"message", "type", "param", "code"}}`).

mod budgets;
mod safety;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::json;
use tollgate_dataplane::auth::{KeyRecord, Principal, PrincipalKind, Role};
use tollgate_dataplane::http::{parse_json, read_body};
use tollgate_dataplane::store::Store;
use tollgate_dataplane::{ApiError, ApiFormat, Gateway, now_ms};

/// What the admin API works on.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    /// The in-process gateway (its key service is the one requests are checked against).
    pub gateway: Gateway,
    /// The database.
    pub store: Store,
}

/// Largest admin request body.
const MAX_BODY: usize = 64 << 10;

/// Routes under `/api/v1`.
pub fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/keys", get(list_keys).post(create_key))
        .route("/api/v1/keys/{id}", delete(revoke_key))
        .route("/api/v1/usage", get(recent_usage))
        .route("/api/v1/safety/check", axum::routing::post(safety::check))
        .route("/api/v1/budgets", get(budgets::list))
        .route("/api/v1/budgets/{name}", get(budgets::get_one))
        .route("/api/v1/budgets/{namespace}/{name}", get(budgets::get_namespaced))
        .with_state(Arc::new(cp))
}

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn respond(result: ApiResult) -> Response {
    result.unwrap_or_else(|e| e.into_response(ApiFormat::OpenAi))
}

pub(crate) async fn caller(cp: &ControlPlane, headers: &HeaderMap) -> Result<Arc<KeyRecord>, ApiError> {
    cp.gateway.keys().authenticate(headers, now_ms()).await
}

async fn admin(cp: &ControlPlane, headers: &HeaderMap) -> Result<Arc<KeyRecord>, ApiError> {
    let key = caller(cp, headers).await?;
    if key.principal.role != Role::Admin {
        return Err(ApiError::forbidden("admin_required", "this action needs the admin role"));
    }
    Ok(key)
}

fn internal(e: &tollgate_dataplane::Error) -> ApiError {
    tracing::error!(error = %e, "admin API storage error");
    ApiError::unavailable("storage_unavailable", "the database is unavailable; retry shortly")
}

async fn whoami(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap) -> Response {
    respond(
        async {
            let key = caller(&cp, &headers).await?;
            Ok(axum::Json(
                json!({ "principal": key.principal, "keyId": key.id, "allowedModels": key.allowed_models }),
            )
            .into_response())
        }
        .await,
    )
}

async fn list_keys(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap) -> Response {
    respond(
        async {
            admin(&cp, &headers).await?;
            let keys = cp.gateway.keys().list().await.map_err(|e| internal(&e))?;
            Ok(axum::Json(json!({ "keys": keys })).into_response())
        }
        .await,
    )
}

/// `POST /api/v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKey {
    /// A label.
    #[serde(default)]
    pub name: Option<String>,
    /// Who the key authenticates as.
    pub principal: NewPrincipal,
    /// Models it may use (empty or absent: all).
    #[serde(default)]
    pub models: Vec<String>,
    /// Lifetime in seconds from now.
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
    /// Requests per minute the key may make.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens per minute the key may use.
    #[serde(default)]
    pub tpm: Option<u64>,
}

/// The principal of a new key.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewPrincipal {
    /// developer, team or agent.
    pub kind: PrincipalKind,
    /// Its name.
    pub name: String,
    /// admin, superuser or developer (default developer).
    #[serde(default)]
    pub role: Option<Role>,
    /// The team it belongs to.
    #[serde(default)]
    pub team: Option<String>,
}

async fn create_key(State(cp): State<Arc<ControlPlane>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    respond(create_key_inner(&cp, &parts.headers, body).await)
}

async fn create_key_inner(cp: &ControlPlane, headers: &HeaderMap, body: Body) -> ApiResult {
    admin(cp, headers).await?;
    let bytes = read_body(headers, body, MAX_BODY).await?;
    let value = parse_json(&bytes)?;
    let req: CreateKey = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::invalid(e.into_inner().to_string(), Some(path))
    })?;
    let name_ok = |s: &str| !s.trim().is_empty() && s.len() <= 128 && !s.chars().any(char::is_control);
    if !name_ok(&req.principal.name) {
        return Err(ApiError::invalid(
            "principal.name must be 1-128 printable characters",
            Some("principal.name".into()),
        ));
    }
    let now = now_ms();
    let expires_at_ms = match req.expires_in_seconds {
        Some(0) => {
            return Err(ApiError::invalid(
                "expiresInSeconds must be positive",
                Some("expiresInSeconds".into()),
            ));
        }
        Some(s) => Some(
            i64::try_from(s)
                .ok()
                .and_then(|s| s.checked_mul(1000))
                .and_then(|ms| now.checked_add(ms))
                .ok_or_else(|| {
                    ApiError::invalid("expiresInSeconds is too large", Some("expiresInSeconds".into()))
                })?,
        ),
        None => None,
    };
    let principal = Principal {
        kind: req.principal.kind,
        name: req.principal.name.trim().to_owned(),
        role: req.principal.role.unwrap_or(Role::Developer),
        team: req.principal.team,
    };
    let name = req.name.unwrap_or_else(|| principal.name.clone());
    let key = cp
        .gateway
        .keys()
        .create_limited(name, principal, req.models, expires_at_ms, (req.rpm, req.tpm), now)
        .await
        .map_err(|e| internal(&e))?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "key": key.secret, "record": key.record }))).into_response())
}

async fn revoke_key(
    State(cp): State<Arc<ControlPlane>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            admin(&cp, &headers).await?;
            let existed = cp.gateway.keys().revoke(&id, now_ms()).await.map_err(|e| internal(&e))?;
            if !existed {
                return Err(ApiError::not_found("key_not_found", "no key with that id"));
            }
            Ok(axum::Json(json!({ "revoked": id })).into_response())
        }
        .await,
    )
}

/// `GET /api/v1/usage?limit=N`.
#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    /// How many records, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

async fn recent_usage(
    State(cp): State<Arc<ControlPlane>>,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            admin(&cp, &headers).await?;
            let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text(), Some("limit".into())))?;
            let limit = q.limit.unwrap_or(100).clamp(1, 1000);
            let rows = cp.store.recent_usage(limit).await.map_err(|e| internal(&e))?;
            Ok(axum::Json(json!({ "usage": rows })).into_response())
        }
        .await,
    )
}
