//! The caller (`/me`), users and teams, the audit log and the scheduler's job table.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tollgate_dataplane::auth::Role;
use tollgate_dataplane::{ApiError, now_ms};

use super::{
    Caller, ControlPlane, Page, api_error, audit as record, body, page_json, query, respond, valid_name,
};
use crate::store::sql::{Preferences, UsageFilter};

fn month_start_ms(now: i64) -> i64 {
    use chrono::Datelike;
    chrono::DateTime::from_timestamp_millis(now)
        .and_then(|t| t.date_naive().with_day(1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

pub async fn me(State(cp): State<Arc<ControlPlane>>, Extension(caller): Extension<Caller>) -> Response {
    respond(
        async {
            let p = &caller.key.principal;
            let prefs = cp.sql.preferences(p.kind.as_str(), &p.name).await.map_err(api_error)?;
            let budgets = super::budgets::visible_views(&cp, &caller).await?;
            let now = now_ms();
            let filter = UsageFilter {
                from_ms: month_start_ms(now),
                to_ms: now + 1,
                principals: vec![(p.kind.as_str().to_owned(), p.name.clone())],
                ..UsageFilter::default()
            };
            let usage = cp.sql.usage(&filter, None).await.map_err(api_error)?;
            Ok(axum::Json(json!({
                "principal": p,
                "role": p.role,
                "keyId": caller.key.id,
                "teams": caller.teams,
                "allowedModels": caller.key.allowed_models,
                "preferences": prefs,
                "budgets": budgets,
                "usageThisMonth": usage.into_iter().next().unwrap_or_default(),
            }))
            .into_response())
        }
        .await,
    )
}

pub async fn put_preferences(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Response {
    let (parts, b) = request.into_parts();
    respond(
        async {
            let prefs: Preferences = body(&parts.headers, b).await?;
            let runtime = cp.gateway.shared().runtime.load_full();
            let key = &caller.key;
            if let Some(model) = &prefs.model {
                let route = runtime.route(model).ok_or_else(|| {
                    ApiError::invalid(format!("no model {model:?} is configured"), Some("model".into()))
                })?;
                if !key.allows_model(model) {
                    return Err(ApiError::invalid(
                        format!("your key may not use model {model:?}"),
                        Some("model".into()),
                    ));
                }
                // Budgets that restrict models restrict the preference too.
                let budgets = &runtime.config.budgets;
                for i in runtime.budget_index.applicable(budgets, &key.principal) {
                    if let Some(b) = budgets.get(i)
                        && !b.allowed_models.is_empty()
                        && !b.allowed_models.iter().any(|m| m == model)
                    {
                        return Err(ApiError::invalid(
                            format!("budget {} does not allow model {model:?}", b.id),
                            Some("model".into()),
                        ));
                    }
                }
                if let Some(provider) = &prefs.provider
                    && !route.targets.iter().any(|t| {
                        runtime.config.ip_tokens.get(t.ip_token).is_some_and(|c| {
                            &c.id == provider || c.id.strip_prefix("default/") == Some(provider.as_str())
                        })
                    })
                {
                    return Err(ApiError::invalid(
                        format!("provider {provider:?} does not serve model {model:?}"),
                        Some("provider".into()),
                    ));
                }
            } else if prefs.provider.is_some() {
                return Err(ApiError::invalid("a provider needs a model", Some("provider".into())));
            }
            let p = &key.principal;
            cp.sql.put_preferences(p.kind.as_str(), &p.name, &prefs, now_ms()).await.map_err(api_error)?;
            cp.push_preferences().await;
            Ok(axum::Json(json!({ "preferences": prefs })).into_response())
        }
        .await,
    )
}

/// `POST /api/v1/users`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    /// The developer name keys are issued for.
    pub name: String,
    /// `admin`, `superuser` or `developer` (default).
    #[serde(default)]
    pub role: Option<String>,
    /// For people.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Teams to add the user to (they must exist).
    #[serde(default)]
    pub teams: Vec<String>,
}

pub async fn users(State(cp): State<Arc<ControlPlane>>, uri: Uri) -> Response {
    respond(
        async {
            let page: Page = query(&uri)?;
            let users = cp.sql.users().await.map_err(api_error)?;
            let (items, next) = super::paginate(users, &page, |u| u.name.clone());
            Ok(axum::Json(page_json(&items, next)).into_response())
        }
        .await,
    )
}

pub async fn put_user(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Response {
    let (parts, b) = request.into_parts();
    respond(
        async {
            let u: NewUser = body(&parts.headers, b).await?;
            if !valid_name(&u.name) {
                return Err(ApiError::invalid(
                    "name must be a lower-case DNS-style name",
                    Some("name".into()),
                ));
            }
            let role = u.role.as_deref().unwrap_or("developer");
            if Role::parse(role).is_none() {
                return Err(ApiError::invalid(
                    "role must be admin, superuser or developer",
                    Some("role".into()),
                ));
            }
            if u.display_name.as_ref().is_some_and(|d| d.len() > 200 || d.chars().any(char::is_control)) {
                return Err(ApiError::invalid(
                    "displayName must be at most 200 printable characters",
                    Some("displayName".into()),
                ));
            }
            let before = cp.sql.users().await.map_err(api_error)?.into_iter().find(|x| x.name == u.name);
            cp.sql.put_user(&u.name, role, u.display_name.as_deref(), now_ms()).await.map_err(api_error)?;
            for t in &u.teams {
                cp.sql.add_member(t, &u.name).await.map_err(api_error)?;
            }
            let after = cp.sql.users().await.map_err(api_error)?.into_iter().find(|x| x.name == u.name);
            let (b, a) = (serde_json::to_value(&before).ok(), serde_json::to_value(&after).ok());
            record(
                &cp,
                &caller,
                if before.is_some() { "update" } else { "create" },
                &format!("user {}", u.name),
                b.as_ref().filter(|v| !v.is_null()),
                a.as_ref(),
            )
            .await;
            let status = if before.is_some() { StatusCode::OK } else { StatusCode::CREATED };
            Ok((status, axum::Json(json!(after))).into_response())
        }
        .await,
    )
}

pub async fn delete_user(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    respond(
        async {
            if !cp.sql.delete_user(&name).await.map_err(api_error)? {
                return Err(ApiError::not_found("user_not_found", format!("no user {name:?}")));
            }
            record(&cp, &caller, "delete", &format!("user {name}"), None, None).await;
            Ok(axum::Json(json!({ "deleted": name })).into_response())
        }
        .await,
    )
}

pub async fn teams(State(cp): State<Arc<ControlPlane>>, uri: Uri) -> Response {
    respond(
        async {
            let page: Page = query(&uri)?;
            let teams = cp.sql.teams().await.map_err(api_error)?;
            let (items, next) = super::paginate(teams, &page, |t| t.name.clone());
            Ok(axum::Json(page_json(&items, next)).into_response())
        }
        .await,
    )
}

/// `POST /api/v1/teams`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTeam {
    /// The team's name (budget subjects and keys refer to it).
    pub name: String,
}

pub async fn create_team(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Response {
    let (parts, b) = request.into_parts();
    respond(
        async {
            let t: NewTeam = body(&parts.headers, b).await?;
            if !valid_name(&t.name) {
                return Err(ApiError::invalid(
                    "name must be a lower-case DNS-style name",
                    Some("name".into()),
                ));
            }
            if cp.sql.teams().await.map_err(api_error)?.iter().any(|x| x.name == t.name) {
                return Err(api_error(crate::error::Error::Conflict(format!(
                    "team {:?} exists already",
                    t.name
                ))));
            }
            cp.sql.put_team(&t.name, now_ms()).await.map_err(api_error)?;
            record(&cp, &caller, "create", &format!("team {}", t.name), None, Some(&json!({"name": t.name})))
                .await;
            Ok((StatusCode::CREATED, axum::Json(json!({ "name": t.name, "members": [] }))).into_response())
        }
        .await,
    )
}

pub async fn delete_team(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    respond(
        async {
            if !cp.sql.delete_team(&name).await.map_err(api_error)? {
                return Err(ApiError::not_found("team_not_found", format!("no team {name:?}")));
            }
            record(&cp, &caller, "delete", &format!("team {name}"), None, None).await;
            Ok(axum::Json(json!({ "deleted": name })).into_response())
        }
        .await,
    )
}

pub async fn add_member(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    Path((team, user)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            cp.sql.add_member(&team, &user).await.map_err(api_error)?;
            record(&cp, &caller, "add-member", &format!("team {team}"), None, Some(&json!({"member": user})))
                .await;
            Ok(axum::Json(json!({ "team": team, "member": user })).into_response())
        }
        .await,
    )
}

pub async fn remove_member(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    Path((team, user)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            if !cp.sql.remove_member(&team, &user).await.map_err(api_error)? {
                return Err(ApiError::not_found(
                    "member_not_found",
                    format!("{user:?} is not in team {team:?}"),
                ));
            }
            record(
                &cp,
                &caller,
                "remove-member",
                &format!("team {team}"),
                Some(&json!({"member": user})),
                None,
            )
            .await;
            Ok(axum::Json(json!({ "team": team, "removed": user })).into_response())
        }
        .await,
    )
}

/// `GET /api/v1/audit?limit&cursor`: newest first; the cursor is the last id seen.
pub async fn audit(State(cp): State<Arc<ControlPlane>>, uri: Uri) -> Response {
    respond(
        async {
            let page: Page = query(&uri)?;
            let limit = page.limit.unwrap_or(100).clamp(1, 500);
            let before =
                match page.cursor.as_deref() {
                    None => None,
                    Some(c) => Some(c.parse::<i64>().map_err(|_| {
                        ApiError::invalid("cursor must be an entry id", Some("cursor".into()))
                    })?),
                };
            let limit_i = i64::try_from(limit).unwrap_or(100);
            let mut items = cp.sql.audit_log(limit_i + 1, before).await.map_err(api_error)?;
            let next = (items.len() > limit).then(|| items[limit - 1].id.to_string());
            items.truncate(limit);
            Ok(axum::Json(page_json(&items, next)).into_response())
        }
        .await,
    )
}

pub async fn jobs(State(cp): State<Arc<ControlPlane>>) -> Response {
    respond(
        async {
            let jobs = cp.sql.jobs().await.map_err(api_error)?;
            Ok(axum::Json(json!({ "items": jobs, "nextCursor": null })).into_response())
        }
        .await,
    )
}

pub async fn run_job(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    respond(
        async {
            let jobs = crate::scheduler::standard_jobs(
                std::time::Duration::from_secs(30),
                crate::scheduler::DEFAULT_RETENTION,
            );
            let job = jobs.iter().find(|j| j.name == name).ok_or_else(|| {
                ApiError::not_found(
                    "job_not_found",
                    format!(
                        "no job {name:?}; one of {}",
                        jobs.iter().map(|j| j.name).collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
            let mut status = cp
                .sql
                .jobs()
                .await
                .map_err(api_error)?
                .into_iter()
                .find(|j| j.name == name)
                .unwrap_or_default();
            let ok = crate::scheduler::run_once(&cp, job, &mut status).await;
            cp.sql.record_job(&status).await.map_err(api_error)?;
            record(&cp, &caller, "run-job", &format!("job {name}"), None, None).await;
            Ok(axum::Json(json!({ "ok": ok, "job": status })).into_response())
        }
        .await,
    )
}
