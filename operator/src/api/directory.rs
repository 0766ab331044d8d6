//! The caller (`/me`), users and teams, the audit log and the scheduler's job table.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tollgate_dataplane::auth::{KeyRecord, PrincipalKind, Role};
use tollgate_dataplane::{ApiError, now_ms};

use super::keys::{keep_an_admin, principal_name};
use super::{Caller, ControlPlane, List, Page, api_error, audit as record, body, query, respond, storage};
use crate::store::sql::{AuditFilter, Preferences, UsageFilter};

fn month_start_ms(now: i64) -> i64 {
    use chrono::Datelike;
    chrono::DateTime::from_timestamp_millis(now)
        .and_then(|t| t.date_naive().with_day(1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

/// `GET /api/v1/me`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    /// Who the key authenticates as.
    pub principal: tollgate_dataplane::auth::Principal,
    /// The caller's role.
    pub role: Role,
    /// The key's id.
    pub key_id: String,
    /// Teams the caller belongs to.
    pub teams: Vec<String>,
    /// Models the key may use (empty: all).
    pub allowed_models: Vec<String>,
    /// The caller's preferred model and provider.
    pub preferences: Preferences,
    /// What the caller may choose as preferences.
    pub model_choices: Vec<ModelChoice>,
    /// The budgets the caller may see.
    pub budgets: Vec<super::budgets::BudgetView>,
    /// The caller's own usage since the start of the month (UTC).
    pub usage_this_month: crate::store::sql::UsageTotals,
}

/// A model the caller may prefer and the provider credentials (IPToken names) serving it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ModelChoice {
    /// The model's name.
    pub model: String,
    /// IPTokens serving it (`name`, or `namespace/name` outside `default`).
    pub providers: Vec<String>,
}

/// `PUT /api/v1/me/preferences`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PreferencesBody {
    /// The preferences now in force.
    pub preferences: Preferences,
}

/// A deleted user or team.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    /// Its name.
    pub deleted: String,
    /// A deleted user's keys, revoked with them (ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_keys: Vec<String>,
}

/// A membership added or removed.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Membership {
    /// The team.
    pub team: String,
    /// The member added, if that was the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The member removed, if that was the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<String>,
}

/// `POST /api/v1/scheduler/jobs/{name}/run`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct JobRun {
    /// Whether the run succeeded.
    pub ok: bool,
    /// The job's bookkeeping after the run.
    pub job: crate::store::sql::JobStatus,
}

/// The chat models `key` may prefer: allowed by the key and by every budget
/// that applies to it and restricts models, with the IPTokens serving each.
pub fn model_choices(runtime: &tollgate_dataplane::runtime::Runtime, key: &KeyRecord) -> Vec<ModelChoice> {
    let budgets = &runtime.config.budgets;
    let applicable = runtime.budget_index.applicable(budgets, &key.principal);
    runtime
        .config
        .models
        .iter()
        .filter(|(model, route)| {
            route.kind == tollgate_crds::iptoken::ModelKind::Chat && key.allows_model(model)
        })
        .filter(|(model, _)| {
            applicable
                .iter()
                .filter_map(|&i| budgets.get(i))
                .all(|b| b.allowed_models.is_empty() || b.allowed_models.iter().any(|m| m == *model))
        })
        .map(|(model, route)| ModelChoice {
            model: model.clone(),
            providers: route
                .targets
                .iter()
                .filter_map(|t| runtime.config.ip_tokens.get(t.ip_token))
                .map(|c| c.id.strip_prefix("default/").unwrap_or(&c.id).to_owned())
                .collect(),
        })
        .collect()
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
            let runtime = cp.gateway.shared().runtime.load_full();
            Ok(axum::Json(Me {
                principal: p.clone(),
                role: p.role,
                key_id: caller.key.id.clone(),
                teams: caller.teams.iter().cloned().collect(),
                allowed_models: caller.key.allowed_models.clone(),
                preferences: prefs,
                model_choices: model_choices(&runtime, &caller.key),
                budgets,
                usage_this_month: usage.into_iter().next().unwrap_or_default(),
            })
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
            check_preferences(&prefs, &runtime, key)?;
            let p = &key.principal;
            cp.sql.put_preferences(p.kind.as_str(), &p.name, &prefs, now_ms()).await.map_err(api_error)?;
            cp.push_preferences().await;
            Ok(axum::Json(PreferencesBody { preferences: prefs }).into_response())
        }
        .await,
    )
}

/// Refuses a preference outside [`model_choices`], naming the field.
fn check_preferences(
    prefs: &Preferences,
    runtime: &tollgate_dataplane::runtime::Runtime,
    key: &KeyRecord,
) -> Result<(), ApiError> {
    let Some(model) = &prefs.model else {
        return match prefs.provider {
            Some(_) => Err(ApiError::invalid("a provider needs a model", Some("provider".into()))),
            None => Ok(()),
        };
    };
    if runtime.route(model).is_none() {
        return Err(ApiError::invalid(format!("no model {model:?} is configured"), Some("model".into())));
    }
    let choices = model_choices(runtime, key);
    let Some(choice) = choices.iter().find(|c| &c.model == model) else {
        return Err(ApiError::invalid(
            format!("your key or budgets do not allow model {model:?}"),
            Some("model".into()),
        ));
    };
    if let Some(provider) = &prefs.provider
        && !choice.providers.iter().any(|p| p == provider || format!("default/{p}") == *provider)
    {
        return Err(ApiError::invalid(
            format!("provider {provider:?} does not serve model {model:?}"),
            Some("provider".into()),
        ));
    }
    Ok(())
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
            Ok(List::response(items, next))
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
            principal_name("name", &u.name)?;
            for (i, t) in u.teams.iter().enumerate() {
                principal_name(&format!("teams[{i}]"), t)?;
            }
            let Some(role) = Role::parse(u.role.as_deref().unwrap_or("developer")) else {
                return Err(ApiError::invalid(
                    "role must be admin, superuser or developer",
                    Some("role".into()),
                ));
            };
            if u.display_name.as_ref().is_some_and(|d| d.len() > 200 || d.chars().any(char::is_control)) {
                return Err(ApiError::invalid(
                    "displayName must be at most 200 printable characters",
                    Some("displayName".into()),
                ));
            }
            let now = now_ms();
            let before = cp.sql.users().await.map_err(api_error)?.into_iter().find(|x| x.name == u.name);
            // The directory's role is the user's keys' role: a demotion must not take away
            // the last working admin key.
            if role != Role::Admin {
                keep_an_admin(&cp, &key_ids_of(&cp, &u.name).await?, now).await?;
            }
            cp.sql
                .put_user(&u.name, role.as_str(), u.display_name.as_deref(), now)
                .await
                .map_err(api_error)?;
            cp.gateway
                .keys()
                .set_role(PrincipalKind::Developer, &u.name, role)
                .await
                .map_err(|e| storage(&e))?;
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
            Ok((status, axum::Json(after)).into_response())
        }
        .await,
    )
}

/// The answer to deleting the `what` (`user`, `team`) called `name`: audited when it
/// existed, a 404 (`user_not_found`, ...) when it did not.
async fn answer_deleted(
    cp: &ControlPlane,
    caller: &Caller,
    what: &'static str,
    name: String,
    existed: bool,
    revoked_keys: Vec<String>,
) -> super::ApiResult {
    if !existed {
        let code = if what == "user" { "user_not_found" } else { "team_not_found" };
        return Err(ApiError::not_found(code, format!("no {what} {name:?}")));
    }
    let after = (!revoked_keys.is_empty()).then(|| json!({"revokedKeys": revoked_keys}));
    record(cp, caller, "delete", &format!("{what} {name}"), None, after.as_ref()).await;
    Ok(axum::Json(Deleted { deleted: name, revoked_keys }).into_response())
}

/// The ids of every key of the developer `name`.
async fn key_ids_of(cp: &ControlPlane, name: &str) -> Result<Vec<String>, ApiError> {
    let keys = cp.gateway.keys().list().await.map_err(|e| storage(&e))?;
    Ok(keys
        .into_iter()
        .filter(|k| k.principal.kind == PrincipalKind::Developer && k.principal.name == name)
        .map(|k| k.id)
        .collect())
}

pub async fn delete_user(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    respond(
        async {
            let now = now_ms();
            if !cp.sql.users().await.map_err(api_error)?.iter().any(|u| u.name == name) {
                return answer_deleted(&cp, &caller, "user", name, false, Vec::new()).await;
            }
            keep_an_admin(&cp, &key_ids_of(&cp, &name).await?, now).await?;
            let deleted = cp.sql.delete_user(&name).await.map_err(api_error)?;
            // A deleted user's keys stop working at once (not at their expiry).
            let revoked = cp
                .gateway
                .keys()
                .revoke_principal(PrincipalKind::Developer, &name, now)
                .await
                .map_err(|e| storage(&e))?;
            answer_deleted(&cp, &caller, "user", name, deleted, revoked).await
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
            Ok(List::response(items, next))
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
            principal_name("name", &t.name)?;
            if cp.sql.teams().await.map_err(api_error)?.iter().any(|x| x.name == t.name) {
                return Err(api_error(crate::error::Error::Conflict(format!(
                    "team {:?} exists already",
                    t.name
                ))));
            }
            cp.sql.put_team(&t.name, now_ms()).await.map_err(api_error)?;
            record(&cp, &caller, "create", &format!("team {}", t.name), None, Some(&json!({"name": t.name})))
                .await;
            let team = crate::store::sql::Team { name: t.name, members: Vec::new() };
            Ok((StatusCode::CREATED, axum::Json(team)).into_response())
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
            let deleted = cp.sql.delete_team(&name).await.map_err(api_error)?;
            answer_deleted(&cp, &caller, "team", name, deleted, Vec::new()).await
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
            Ok(axum::Json(Membership { team, member: Some(user), removed: None }).into_response())
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
            Ok(axum::Json(Membership { team, member: None, removed: Some(user) }).into_response())
        }
        .await,
    )
}

/// `GET /api/v1/audit` parameters.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries per page (1-500, default 100).
    #[schemars(range(min = 1, max = 500))]
    #[serde(default, deserialize_with = "super::page_limit")]
    pub limit: Option<usize>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Only this action (`create`, `update`, `delete`, `issue-key`, `revoke-key`, ...).
    pub action: Option<String>,
    /// Only actors containing this text.
    pub actor: Option<String>,
    /// Only targets containing this text.
    pub target: Option<String>,
}

/// `GET /api/v1/audit?limit&cursor&action&actor&target`: newest first; the cursor is the
/// last id seen.
pub async fn audit(State(cp): State<Arc<ControlPlane>>, uri: Uri) -> Response {
    respond(
        async {
            let page: AuditQuery = query(&uri)?;
            let filter = AuditFilter {
                action: page.action.clone().filter(|s| !s.is_empty()),
                actor: page.actor.clone().filter(|s| !s.is_empty()),
                target: page.target.clone().filter(|s| !s.is_empty()),
            };
            let limit = page.limit.unwrap_or(100).clamp(1, 500);
            let before =
                match page.cursor.as_deref() {
                    None => None,
                    Some(c) => Some(c.parse::<i64>().map_err(|_| {
                        ApiError::invalid("cursor must be an entry id", Some("cursor".into()))
                    })?),
                };
            let limit_i = i64::try_from(limit).unwrap_or(100);
            let mut items = cp.sql.audit_log(limit_i + 1, before, &filter).await.map_err(api_error)?;
            let next = (items.len() > limit).then(|| items[limit - 1].id.to_string());
            items.truncate(limit);
            Ok(List::response(items, next))
        }
        .await,
    )
}

pub async fn jobs(State(cp): State<Arc<ControlPlane>>) -> Response {
    respond(
        async {
            let jobs = cp.sql.jobs().await.map_err(api_error)?;
            Ok(List::response(jobs, None))
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
            Ok(axum::Json(JobRun { ok, job: status }).into_response())
        }
        .await,
    )
}
