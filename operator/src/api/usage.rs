//! Usage: totals and time series from the scheduler's rollups (never a scan of the raw
//! ledger), and the request log. Admins see everything; superusers the subjects of the
//! budgets they own; developers themselves.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tollgate_dataplane::store::{RequestOutcome, RequestQuery};
use tollgate_dataplane::{ApiError, now_ms};

use super::{Caller, ControlPlane, List, api_error, query, respond};
use crate::store::sql::{DAY_MS, GroupBy, UsageFilter, UsageTotals, Visible};

/// `GET /api/v1/usage` parameters.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    /// `principal`, `team`, `model`, `provider`, `day` or `hour` (absent: one total).
    by: Option<GroupBy>,
    /// Start, RFC 3339, a date or epoch ms (default: 30 days ago).
    from: Option<String>,
    /// End, exclusive (default: now).
    to: Option<String>,
    /// Only this principal, `kind/name` (or a developer's name).
    principal: Option<String>,
    /// Only this team.
    team: Option<String>,
    /// Only this model.
    model: Option<String>,
    /// Only this provider.
    provider: Option<String>,
    /// Only my own usage.
    me: Option<bool>,
}

/// `[from, to)` in epoch ms from the `from` and `to` parameters; by default the `span`
/// before `now`. A range that is empty or backwards is a 400 naming `from`.
pub(crate) fn time_range(
    from: Option<&str>,
    to: Option<&str>,
    now: i64,
    span: i64,
) -> Result<(i64, i64), ApiError> {
    let to_ms = time_param("to", to, now + 1)?;
    let from_ms = time_param("from", from, now - span)?;
    if from_ms >= to_ms {
        return Err(ApiError::invalid("from must be before to", Some("from".into())));
    }
    Ok((from_ms, to_ms))
}

fn time_param(name: &str, v: Option<&str>, default: i64) -> Result<i64, ApiError> {
    let Some(s) = v else { return Ok(default) };
    s.parse::<i64>()
        .ok()
        .or_else(|| chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis()))
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_millis())
        })
        .ok_or_else(|| {
            ApiError::invalid(format!("{name} must be epoch ms, a date or RFC 3339"), Some(name.into()))
        })
}

fn principal_param(s: &str) -> (String, String) {
    match s.split_once('/') {
        Some((k, n)) => (k.to_owned(), n.to_owned()),
        None => ("developer".to_owned(), s.to_owned()),
    }
}

/// The filter the caller asked for, narrowed to what they may see. A request for
/// something outside that is a 403, not an empty answer, so a superuser or developer
/// knows the difference between "nothing" and "not yours".
async fn scoped_filter(
    cp: &ControlPlane,
    caller: &Caller,
    q: &SummaryQuery,
) -> Result<UsageFilter, ApiError> {
    let now = now_ms();
    let (from_ms, to_ms) = time_range(q.from.as_deref(), q.to.as_deref(), now, 30 * DAY_MS)?;
    let mut filter = UsageFilter {
        from_ms,
        to_ms,
        model: q.model.clone(),
        provider: q.provider.clone(),
        ..UsageFilter::default()
    };
    let p = &caller.key.principal;
    let me = (p.kind.as_str().to_owned(), p.name.clone());
    if q.me == Some(true) {
        filter.principals = vec![me.clone()];
    }
    if let Some(pr) = &q.principal {
        filter.principals = vec![principal_param(pr)];
    }
    if let Some(t) = &q.team {
        filter.teams = vec![t.clone()];
    }
    let resources = if caller.is_admin() { Arc::default() } else { cp.all_resources().await? };
    let Some((principals, teams)) = caller.visible_subjects(&resources) else { return Ok(filter) };
    let denied = || ApiError::forbidden("not_visible", "that usage is not yours or under a budget you own");
    for asked in &filter.principals {
        if !principals.contains(asked) {
            return Err(denied());
        }
    }
    for asked in &filter.teams {
        if !teams.contains(asked) {
            return Err(denied());
        }
    }
    // Unfiltered: everything visible, which is the caller's own usage or that of a subject
    // of a budget they own (a team's budget covers every row charged to that team).
    // NB: one OR over both lists: `principals` AND `teams` would leave only rows matching
    // both, which for a superuser owning a team budget was nothing.
    if filter.principals.is_empty() && filter.teams.is_empty() {
        filter.within = Some(Visible {
            principals: principals.into_iter().collect(),
            teams: teams.into_iter().collect(),
        });
    }
    Ok(filter)
}

/// `GET /api/v1/usage`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct UsageSummary {
    /// Start of the range (RFC 3339).
    pub from: Option<String>,
    /// End of the range, exclusive (RFC 3339).
    pub to: Option<String>,
    /// What the groups are by, if anything.
    pub by: Option<GroupBy>,
    /// One entry per group (`key`: the principal, team, model, provider, or the day's or
    /// hour's start in RFC 3339), largest cost first or in time order.
    pub groups: Vec<UsageTotals>,
    /// Everything in the range.
    pub total: UsageTotals,
}

pub async fn summary(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Response {
    respond(
        async {
            let q: SummaryQuery = query(&uri)?;
            let by = q.by;
            let filter = scoped_filter(&cp, &caller, &q).await?;
            let groups = cp.sql.usage(&filter, by).await.map_err(api_error)?;
            let total =
                cp.sql.usage(&filter, None).await.map_err(api_error)?.into_iter().next().unwrap_or_default();
            let groups: Vec<UsageTotals> = groups
                .into_iter()
                .map(|mut g| {
                    if matches!(by, Some(GroupBy::Day | GroupBy::Hour))
                        && let Some(t) =
                            g.key.parse::<i64>().ok().and_then(tollgate_dataplane::budget::rfc3339)
                    {
                        g.key = t;
                    }
                    g
                })
                .collect();
            Ok(axum::Json(UsageSummary {
                from: tollgate_dataplane::budget::rfc3339(filter.from_ms),
                to: tollgate_dataplane::budget::rfc3339(filter.to_ms),
                by: q.by,
                groups,
                total,
            })
            .into_response())
        }
        .await,
    )
}

/// `GET /api/v1/usage/requests` parameters.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestsQuery {
    /// Rows per page (1-500, default 100).
    #[schemars(range(min = 1, max = 500))]
    #[serde(default, deserialize_with = "super::page_limit")]
    limit: Option<usize>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
    /// Only this principal, `kind/name` (or a developer's name).
    principal: Option<String>,
    /// Only this model.
    model: Option<String>,
    /// `ok` (status below 400) or `error`.
    outcome: Option<RequestOutcome>,
}

pub async fn requests(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Response {
    respond(
        async {
            let q: RequestsQuery = query(&uri)?;
            let limit = q.limit.unwrap_or(100).clamp(1, 500);
            let before_id = match q.cursor.as_deref() {
                None => None,
                Some(c) => Some(c.parse::<i64>().map_err(|_| {
                    ApiError::invalid(
                        "cursor must be the nextCursor of a previous page",
                        Some("cursor".into()),
                    )
                })?),
            };
            let resources = if caller.is_admin() { Arc::default() } else { cp.all_resources().await? };
            let visible = caller.visible_subjects(&resources).map(|(principals, _)| principals);
            let asked = q.principal.as_deref().map(principal_param);
            let principals = match (asked, visible) {
                (Some(p), Some(v)) if !v.contains(&p) => {
                    return Err(ApiError::forbidden(
                        "not_visible",
                        "those requests are not yours or under a budget you own",
                    ));
                }
                (Some(p), _) => Some(vec![p]),
                (None, v) => v.map(|v| v.into_iter().collect()),
            };
            let request = RequestQuery {
                principals,
                model: q.model,
                outcome: q.outcome,
                before_id,
                limit: i64::try_from(limit).unwrap_or(100) + 1,
            };
            let mut items = cp.store.usage_page(&request).await.map_err(|e| super::storage(&e))?;
            let next = (items.len() > limit).then(|| items[limit - 1].id.to_string());
            items.truncate(limit);
            Ok(List::response(items, next))
        }
        .await,
    )
}
