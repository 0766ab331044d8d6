//! The stored side of the OpenAI Responses API: `GET /v1/responses/{id}`,
//! `DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`, answering in the
//! shapes the official `openai` clients parse (`responses.retrieve`, `responses.delete`,
//! `responses.input_items.list` with its cursor pages). Every answer is scoped to the
//! caller's principal: another principal's response is a 404, exactly like a missing one.
//!
//! Query parameters are checked by [`ListQuery::parse`] (pure) and paging is done by
//! [`page`] (pure); the handlers only authenticate, read the store and render.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Shared;
use crate::auth::KeyRecord;
use crate::error::{ApiError, ApiFormat};

/// How many responses of a conversation `input_items` reads back at most.
pub const MAX_INPUT_ITEMS_DEPTH: usize = 1000;

/// The caller's principal, or the error to answer with.
async fn caller(shared: &Shared, headers: &HeaderMap) -> Result<Arc<KeyRecord>, ApiError> {
    shared.keys.authenticate(headers, crate::now_ms()).await
}

/// The 404 of a response that is absent or another principal's (the same answer for both,
/// so ids of other principals cannot be probed).
fn not_found(id: &str) -> ApiError {
    let id: String = id.chars().take(200).filter(|c| !c.is_control()).collect();
    ApiError::not_found("not_found", format!("No response found with id '{id}'."))
}

/// A database failure: the caller may retry; never a 500.
fn unavailable(e: &crate::Error) -> ApiError {
    tracing::error!(error = %e, "stored responses unavailable");
    ApiError::unavailable("store_unavailable", "stored responses are unavailable; retry shortly")
}

fn response_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(id)| id).map_err(|_| ApiError::invalid("the response id in the path is not valid", None))
}

/// The query parameters as `(name, value)` pairs, percent-decoded.
fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    let query = uri.query().unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// `GET /v1/responses/{id}`: the stored Response object.
pub async fn retrieve(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let result = async {
        let key = caller(&shared, &headers).await?;
        let id = response_id(path)?;
        // NB: `include` and `starting_after` are accepted and have nothing to add; a stored
        // response is not replayed as a stream.
        for (name, value) in query_pairs(&uri) {
            if name == "stream" && value != "false" {
                return Err(ApiError::invalid("streaming a stored response is not supported", Some(name)));
            }
        }
        let (kind, name) = (key.principal.kind.as_str(), key.principal.name.as_str());
        match shared.keys.store().get_response(&id, kind, name).await {
            Ok(Some(stored)) => Ok(Json(stored.response).into_response()),
            Ok(None) => Err(not_found(&id)),
            Err(e) => Err(unavailable(&e)),
        }
    };
    result.await.unwrap_or_else(|e| e.into_response(ApiFormat::OpenAi))
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let key = caller(&shared, &headers).await?;
        let id = response_id(path)?;
        let (kind, name) = (key.principal.kind.as_str(), key.principal.name.as_str());
        match shared.keys.store().delete_response(&id, kind, name).await {
            Ok(true) => {
                Ok(Json(json!({ "id": id, "object": "response.deleted", "deleted": true })).into_response())
            }
            Ok(false) => Err(not_found(&id)),
            Err(e) => Err(unavailable(&e)),
        }
    };
    result.await.unwrap_or_else(|e| e.into_response(ApiFormat::OpenAi))
}

/// `GET /v1/responses/{id}/input_items`: the items the response was generated from
/// (earlier turns of its conversation, then its own input), as a cursor page.
pub async fn input_items(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let result = async {
        let key = caller(&shared, &headers).await?;
        let id = response_id(path)?;
        let query = ListQuery::parse(&query_pairs(&uri))?;
        let (kind, name) = (key.principal.kind.as_str(), key.principal.name.as_str());
        let items =
            match shared.keys.store().response_input_items(&id, kind, name, MAX_INPUT_ITEMS_DEPTH).await {
                Ok(Some(items)) => items,
                Ok(None) => return Err(not_found(&id)),
                Err(e) => return Err(unavailable(&e)),
            };
        let (data, has_more) = page(items, &query)?;
        let first_id = data.first().and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
        let last_id = data.last().and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
        Ok(Json(json!({
            "object": "list",
            "data": data,
            "first_id": first_id,
            "last_id": last_id,
            "has_more": has_more,
        }))
        .into_response())
    };
    result.await.unwrap_or_else(|e| e.into_response(ApiFormat::OpenAi))
}

/// The order of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Oldest first.
    Asc,
    /// Newest first (OpenAI's default).
    Desc,
}

/// The paging parameters of `input_items`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// 1 to 100.
    pub limit: usize,
    pub order: Order,
    /// Only items after this item id (in `order`).
    pub after: Option<String>,
    /// Only items before this item id (in `order`).
    pub before: Option<String>,
}

impl ListQuery {
    /// Reads `limit`, `order`, `after` and `before`; other parameters (`include`, ...) are
    /// accepted and ignored. A parameter given twice or out of range is a 400 naming it.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut q = Self { limit: 20, order: Order::Desc, after: None, before: None };
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in pairs {
            let name = name.as_str();
            if matches!(name, "limit" | "order" | "after" | "before") {
                if seen.contains(&name) {
                    return Err(ApiError::invalid(
                        format!("the parameter {name} is given twice"),
                        Some(name.into()),
                    ));
                }
                seen.push(name);
            }
            match name {
                "limit" => {
                    q.limit =
                        value.parse::<usize>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
                            ApiError::invalid("limit must be an integer from 1 to 100", Some("limit".into()))
                        })?;
                }
                "order" => {
                    q.order = match value.as_str() {
                        "asc" => Order::Asc,
                        "desc" => Order::Desc,
                        _ => {
                            return Err(ApiError::invalid("order must be asc or desc", Some("order".into())));
                        }
                    };
                }
                "after" => q.after = Some(value.clone()),
                "before" => q.before = Some(value.clone()),
                _ => {}
            }
        }
        Ok(q)
    }
}

/// One page of `items` (oldest first) under `q`, and whether more items lie beyond it in
/// the direction of paging: after `after` (or from the start), the first `limit` items;
/// with only `before`, the `limit` items just before it. A cursor that names no item of
/// the list is a 400.
pub fn page(mut items: Vec<Value>, q: &ListQuery) -> Result<(Vec<Value>, bool), ApiError> {
    if q.order == Order::Desc {
        items.reverse();
    }
    let position = |cursor: &str, param: &str| {
        items.iter().position(|i| i.get("id").and_then(Value::as_str) == Some(cursor)).ok_or_else(|| {
            let cursor: String = cursor.chars().take(200).filter(|c| !c.is_control()).collect();
            ApiError::invalid(
                format!("no item with id '{cursor}' in this response's input items"),
                Some(param.into()),
            )
        })
    };
    let start = q.after.as_deref().map(|c| position(c, "after")).transpose()?.map_or(0, |p| p + 1);
    let end = q.before.as_deref().map(|c| position(c, "before")).transpose()?.unwrap_or(items.len());
    if start >= end {
        return Ok((Vec::new(), false));
    }
    let (from, to, has_more) = if q.before.is_some() && q.after.is_none() {
        let from = end.saturating_sub(q.limit).max(start);
        (from, end, from > start)
    } else {
        let to = (start + q.limit).min(end);
        (start, to, to < end)
    };
    Ok((items.drain(from..to).collect(), has_more))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<ListQuery, ApiError> {
        let pairs: Vec<_> = pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
        ListQuery::parse(&pairs)
    }

    fn ids(page: &(Vec<Value>, bool)) -> (Vec<&str>, bool) {
        (page.0.iter().map(|i| i["id"].as_str().unwrap_or("?")).collect(), page.1)
    }

    fn five() -> Vec<Value> {
        (1..=5).map(|i| json!({ "id": format!("i{i}") })).collect()
    }

    #[test]
    fn query_defaults_and_errors() {
        assert_eq!(q(&[]).unwrap(), ListQuery { limit: 20, order: Order::Desc, after: None, before: None });
        let parsed = q(&[("limit", "100"), ("order", "asc"), ("after", "a"), ("include[]", "x")]).unwrap();
        assert_eq!((parsed.limit, parsed.order, parsed.after.as_deref()), (100, Order::Asc, Some("a")));
        for bad in [("limit", "0"), ("limit", "101"), ("limit", "-1"), ("limit", "x"), ("order", "up")] {
            let e = q(&[bad]).unwrap_err();
            assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some(bad.0)), "{bad:?}");
        }
        assert_eq!(q(&[("limit", "1"), ("limit", "2")]).unwrap_err().param.as_deref(), Some("limit"));
    }

    #[test]
    fn pages_forward_in_either_order() {
        let asc = |extra: &[(&str, &str)]| {
            let mut p = vec![("order", "asc"), ("limit", "2")];
            p.extend_from_slice(extra);
            page(five(), &q(&p).unwrap()).unwrap()
        };
        assert_eq!(ids(&asc(&[])), (vec!["i1", "i2"], true));
        assert_eq!(ids(&asc(&[("after", "i2")])), (vec!["i3", "i4"], true));
        assert_eq!(ids(&asc(&[("after", "i4")])), (vec!["i5"], false));
        assert_eq!(ids(&asc(&[("after", "i5")])), (vec![], false));
        assert_eq!(ids(&asc(&[("before", "i4")])), (vec!["i2", "i3"], true));
        assert_eq!(ids(&asc(&[("before", "i2")])), (vec!["i1"], false));
        assert_eq!(ids(&asc(&[("after", "i1"), ("before", "i5")])), (vec!["i2", "i3"], true));
        assert_eq!(ids(&asc(&[("after", "i4"), ("before", "i2")])), (vec![], false));
        let desc = page(five(), &q(&[("limit", "2")]).unwrap()).unwrap();
        assert_eq!(ids(&desc), (vec!["i5", "i4"], true));
        let desc = page(five(), &q(&[("limit", "2"), ("after", "i4")]).unwrap()).unwrap();
        assert_eq!(ids(&desc), (vec!["i3", "i2"], true));
        let all = page(five(), &q(&[]).unwrap()).unwrap();
        assert_eq!(ids(&all), (vec!["i5", "i4", "i3", "i2", "i1"], false));
    }

    #[test]
    fn an_unknown_cursor_is_a_400_naming_it() {
        let e = page(five(), &q(&[("after", "nope")]).unwrap()).unwrap_err();
        assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some("after")));
        let e = page(five(), &q(&[("before", "nope")]).unwrap()).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("before"));
    }
}
