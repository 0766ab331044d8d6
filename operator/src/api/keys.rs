//! Virtual keys: issue (shown once), list (prefix only), revoke, rotate.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tollgate_dataplane::auth::{KeyRecord, Principal, PrincipalKind, Role, check_principal_name};
use tollgate_dataplane::{ApiError, now_ms};

use super::{ApiResult, Caller, ControlPlane, List, Page, audit, body, paginate, query, respond, storage};

/// `POST /api/v1/keys`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewPrincipal {
    /// developer, team or agent.
    #[schemars(with = "String")]
    pub kind: PrincipalKind,
    /// Its name.
    pub name: String,
    /// admin, superuser or developer (default developer).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub role: Option<Role>,
    /// The team it belongs to.
    #[serde(default)]
    pub team: Option<String>,
}

/// `GET /api/v1/whoami`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    /// Who the key authenticates as.
    pub principal: Principal,
    /// The key's id.
    pub key_id: String,
    /// Models the key may use (empty: all).
    pub allowed_models: Vec<String>,
    /// Teams the caller belongs to.
    pub teams: Vec<String>,
}

/// A key just issued: the secret is in this answer only.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedKey {
    /// The key (`tg-...`); shown once, stored only as a hash.
    pub key: String,
    /// What is stored about it.
    pub record: KeyRecord,
    /// Rotation: the id of the key it replaced (revoked now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
}

/// `DELETE /api/v1/keys/{id}`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Revoked {
    /// The revoked key's id.
    pub revoked: String,
}

pub async fn whoami(Extension(caller): Extension<Caller>) -> Response {
    let key = &caller.key;
    axum::Json(WhoAmI {
        principal: key.principal.clone(),
        key_id: key.id.clone(),
        allowed_models: key.allowed_models.clone(),
        teams: caller.teams.iter().cloned().collect(),
    })
    .into_response()
}

pub async fn list(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Response {
    respond(
        async {
            let q: KeysQuery = query(&uri)?;
            let page = Page { limit: q.limit, cursor: q.cursor };
            let me = &caller.key.principal;
            let keys = cp.gateway.keys().list().await.map_err(|e| storage(&e))?;
            let keys = keys.into_iter().filter(|k| q.mine != Some(true) || principal_eq(&k.principal, me));
            let resources = if caller.is_admin() { Arc::default() } else { cp.all_resources().await? };
            // NB: admin keys are an admin's business only, whatever a principal is called.
            let visible: Vec<KeyRecord> = keys
                .filter(|k| caller.is_admin() || k.principal.role != Role::Admin)
                .filter(|k| {
                    let p = &k.principal;
                    caller.may_see_principal(&resources, p.kind.as_str(), &p.name, p.team.as_deref())
                })
                .collect();
            let (items, next) = paginate(visible, &page, |k| format!("{:020}/{}", k.created_at_ms, k.id));
            Ok(List::response(items, next))
        }
        .await,
    )
}

/// `GET /api/v1/keys` parameters.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysQuery {
    /// Keys per page (1-500, default 100).
    #[schemars(range(min = 1, max = 500))]
    #[serde(default, deserialize_with = "super::page_limit")]
    limit: Option<usize>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
    /// Only the caller's own keys (same principal kind and name).
    mine: Option<bool>,
}

fn principal_eq(a: &Principal, b: &Principal) -> bool {
    a.same_identity(b)
}

/// Refuses a name that cannot name a principal, naming the field.
pub(crate) fn principal_name(field: &str, value: &str) -> Result<(), ApiError> {
    check_principal_name(value).map_err(|why| ApiError::invalid(format!("{field} {why}"), Some(field.into())))
}

/// A 409 with its own code.
pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    let mut e = ApiError::invalid(message, None);
    e.status = StatusCode::CONFLICT;
    e.code = code;
    e
}

/// The role a new key of `principal` gets. One identity has one role: a developer in the
/// directory has the directory's role; otherwise an identity that already holds working keys
/// keeps their role; a requested role that differs is refused (409) rather than giving one
/// person two roles. Without either, the requested role (default developer).
async fn role_of_identity(
    cp: &ControlPlane,
    principal: &Principal,
    requested: Option<Role>,
    now: i64,
) -> Result<Role, ApiError> {
    let who = format!("{}/{}", principal.kind.as_str(), principal.name);
    if principal.kind == PrincipalKind::Developer
        && let Some(user) =
            cp.sql.users().await.map_err(|e| storage(&e))?.into_iter().find(|u| u.name == principal.name)
    {
        let role = Role::parse(&user.role).unwrap_or(Role::Developer);
        return match requested {
            Some(r) if r != role => Err(conflict(
                "role_conflict",
                format!(
                    "{who} is a {} in the directory; change the user's role (POST /api/v1/users) to change \
                     what all their keys may do",
                    role.as_str()
                ),
            )
            .with_param("principal.role")),
            _ => Ok(role),
        };
    }
    let keys = cp.gateway.keys().list().await.map_err(|e| storage(&e))?;
    let held = keys
        .iter()
        .filter(|k| k.principal.same_identity(principal) && k.unusable_at(now).is_none())
        .map(|k| k.principal.role)
        .max();
    match (held, requested) {
        (Some(h), Some(r)) if h != r => Err(conflict(
            "role_conflict",
            format!(
                "{who} already holds {} keys; one identity has one role: add them to the directory with the \
                 role they should have (POST /api/v1/users), or use another name",
                h.as_str()
            ),
        )
        .with_param("principal.role")),
        (Some(h), _) => Ok(h),
        (None, r) => Ok(r.unwrap_or(Role::Developer)),
    }
}

/// Refuses to take away the last working admin key: `losing` are the keys that would stop
/// being admin keys. Without this, an admin can lock every admin out (recovery then needs
/// `tollgate admin recover` on the server's machine).
pub(crate) async fn keep_an_admin(cp: &ControlPlane, losing: &[String], now: i64) -> Result<(), ApiError> {
    let keys = cp.gateway.keys().list().await.map_err(|e| storage(&e))?;
    let active: Vec<&KeyRecord> = keys.iter().filter(|k| k.is_active_admin(now)).collect();
    let loses_one = active.iter().any(|k| losing.contains(&k.id));
    if loses_one && active.iter().all(|k| losing.contains(&k.id)) {
        return Err(conflict(
            "last_admin_key",
            "this would leave no working admin key and lock every admin out: issue another admin key \
             first (POST /api/v1/keys with role admin); if locked out, run `tollgate admin recover` on \
             the server's machine",
        ));
    }
    Ok(())
}

fn expiry(seconds: Option<u64>, now: i64) -> Result<Option<i64>, ApiError> {
    match seconds {
        Some(0) => {
            Err(ApiError::invalid("expiresInSeconds must be positive", Some("expiresInSeconds".into())))
        }
        Some(s) => i64::try_from(s)
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .and_then(|ms| now.checked_add(ms))
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid("expiresInSeconds is too large", Some("expiresInSeconds".into()))
            }),
        None => Ok(None),
    }
}

pub async fn create(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Response {
    let (parts, b) = request.into_parts();
    respond(
        async {
            let req: CreateKey = body(&parts.headers, b).await?;
            principal_name("principal.name", &req.principal.name)?;
            if let Some(team) = &req.principal.team {
                principal_name("principal.team", team)?;
            }
            if req.name.as_ref().is_some_and(|n| n.len() > 200 || n.chars().any(char::is_control)) {
                return Err(ApiError::invalid(
                    "name must be at most 200 printable characters",
                    Some("name".into()),
                ));
            }
            let now = now_ms();
            let expires_at_ms = expiry(req.expires_in_seconds, now)?;
            let mut principal = Principal {
                kind: req.principal.kind,
                name: req.principal.name,
                role: Role::Developer,
                team: req.principal.team,
            };
            principal.role = role_of_identity(&cp, &principal, req.principal.role, now).await?;
            let name = req.name.unwrap_or_else(|| principal.name.clone());
            let key = cp
                .gateway
                .keys()
                .create_limited(name, principal, req.models, expires_at_ms, (req.rpm, req.tpm), now)
                .await
                .map_err(|e| storage(&e))?;
            let record = serde_json::to_value(&key.record).unwrap_or_default();
            audit(&cp, &caller, "issue-key", &format!("key {}", key.record.id), None, Some(&record)).await;
            Ok((
                StatusCode::CREATED,
                axum::Json(IssuedKey { key: key.secret, record: key.record, revoked: None }),
            )
                .into_response())
        }
        .await,
    )
}

pub async fn revoke(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    respond(
        async {
            let now = now_ms();
            keep_an_admin(&cp, std::slice::from_ref(&id), now).await?;
            let existed = cp.gateway.keys().revoke(&id, now).await.map_err(|e| storage(&e))?;
            if !existed {
                return Err(ApiError::not_found("key_not_found", "no key with that id"));
            }
            audit(&cp, &caller, "revoke-key", &format!("key {id}"), None, None).await;
            Ok(axum::Json(Revoked { revoked: id }).into_response())
        }
        .await,
    )
}

pub async fn rotate(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    respond(rotate_inner(&cp, &caller, &id).await)
}

async fn rotate_inner(cp: &ControlPlane, caller: &Caller, id: &str) -> ApiResult {
    let keys = cp.gateway.keys();
    let now = now_ms();
    let old = keys
        .list()
        .await
        .map_err(|e| storage(&e))?
        .into_iter()
        .find(|k| k.id == id && k.revoked_at_ms.is_none())
        .ok_or_else(|| ApiError::not_found("key_not_found", "no active key with that id"))?;
    // The replacement keeps everything but the secret; issued before the old one is
    // revoked so the holder is never without a working key.
    let new = keys
        .create_limited(
            old.name.clone(),
            old.principal.clone(),
            old.allowed_models.clone(),
            old.expires_at_ms,
            (old.rpm, old.tpm),
            now,
        )
        .await
        .map_err(|e| storage(&e))?;
    keys.revoke(id, now).await.map_err(|e| storage(&e))?;
    let record = serde_json::to_value(&new.record).unwrap_or_default();
    audit(cp, caller, "rotate-key", &format!("key {id} -> {}", new.record.id), None, Some(&record)).await;
    let issued = IssuedKey { key: new.secret, record: new.record, revoked: Some(id.to_owned()) };
    Ok((StatusCode::CREATED, axum::Json(issued)).into_response())
}
