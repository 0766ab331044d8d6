//! Resources through the API: list, get, create, replace (apply), delete, and an IPToken's
//! write-only provider key. A write is validated like the CRD (the same typed parse with
//! field paths) and then with every other resource by `compile()`; only a change that
//! compiles is stored and applied. Resources from resource files are read-only here.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Request, State};
use axum::http::Uri;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tollgate_crds::load::LoadErrorKind;
use tollgate_crds::{LoadError, Resource, parse_documents};
use tollgate_dataplane::ApiError;
use tollgate_dataplane::http::read_body;

use super::{
    ApiResult, Caller, ControlPlane, List, MAX_BODY, Page, api_error, audit, body, paginate, query, respond,
    valid_name,
};
use crate::config::resource_id;
use crate::store::{Kind, StoredResource, WriteMode};

/// A resource as the API shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceView {
    /// `IPToken`, `Budget`, ...
    pub kind: Kind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `api` (stored, writable here) or `file` (from `--resources`, read-only here).
    pub source: &'static str,
    /// Changes so far (API resources; files: 0).
    pub generation: i64,
    /// The document.
    #[schemars(schema_with = "super::openapi::resource_document")]
    pub document: Value,
    /// IPTokens: whether a provider key was given to the API (never the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_key_set: Option<bool>,
    /// IPTokens: when the provider key was last set or rotated (RFC 3339), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_key_updated_at: Option<String>,
}

/// A deleted resource.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DeletedResource {
    /// What was deleted.
    pub deleted: ResourceId,
}

/// A resource's identity.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ResourceId {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// `PUT .../iptokens/{ns}/{name}/key`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeySet {
    /// Always true: the key is stored (and never returned).
    pub provider_key_set: bool,
}

fn kind_param(s: &str) -> Result<Kind, ApiError> {
    Kind::parse(s).ok_or_else(|| {
        ApiError::not_found(
            "unknown_kind",
            format!(
                "no resource kind {s:?}; one of {}",
                Kind::ALL.iter().map(|k| k.plural()).collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

fn document_of(r: &Resource) -> Value {
    let v = match r {
        Resource::IpToken(x) => serde_json::to_value(x),
        Resource::Budget(x) => serde_json::to_value(x),
        Resource::SafetyPolicy(x) => serde_json::to_value(x),
        Resource::Agent(x) => serde_json::to_value(x),
        Resource::Sandbox(x) => serde_json::to_value(x),
        Resource::DataPlane(x) => serde_json::to_value(x),
    };
    v.unwrap_or(Value::Null)
}

async fn views(cp: &ControlPlane, kind: Option<Kind>) -> Result<Vec<ResourceView>, ApiError> {
    let mut out = Vec::new();
    for r in cp.config.files() {
        if kind.is_none_or(|want| want == resource_id(&r).0) {
            out.push(file_view(&r));
        }
    }
    for s in cp.resources.list(kind).await.map_err(api_error)? {
        if cp.config.from_file(s.kind, &s.namespace, &s.name) {
            continue;
        }
        out.push(stored_view(cp, s).await?);
    }
    with_status(cp, &mut out).await?;
    Ok(out)
}

/// Fills each view's `document.status`: what the in-process gateway makes of it
/// ([`crate::resource_status`]).
async fn with_status(cp: &ControlPlane, views: &mut [ResourceView]) -> Result<(), ApiError> {
    let all = cp.all_resources().await?;
    let runtime = cp.gateway.shared().runtime.load_full();
    let out_of_service: Vec<_> = runtime.out_of_service.values().cloned().collect();
    let refusal = cp.refusal();
    let in_force = crate::resource_status::InForce {
        config: &runtime.config,
        out_of_service: &out_of_service,
        applied_at_ms: runtime.built_at_ms,
        refusal: refusal.as_deref(),
    };
    let known = crate::resource_status::known(&all);
    let by_id: std::collections::HashMap<_, _> = all.iter().map(|r| (resource_id(r), r)).collect();
    for view in views {
        let id = (view.kind, view.namespace.clone(), view.name.clone());
        let Some(resource) = by_id.get(&id) else { continue };
        let status = crate::resource_status::status(resource, &known, &in_force, view.generation);
        if let Some(obj) = view.document.as_object_mut() {
            obj.insert("status".into(), status);
        }
    }
    Ok(())
}

/// A resource from a resource file (read-only here; its keys come from the secrets file).
fn file_view(r: &Resource) -> ResourceView {
    let (kind, namespace, name) = resource_id(r);
    ResourceView {
        kind,
        namespace,
        name,
        source: "file",
        generation: 0,
        document: document_of(r),
        provider_key_set: None,
        provider_key_updated_at: None,
    }
}

async fn stored_view(cp: &ControlPlane, s: StoredResource) -> Result<ResourceView, ApiError> {
    let key = match s.kind {
        Kind::IpToken => match secret_ref(&s.document) {
            Some((name, key)) => {
                Some(cp.resources.provider_key(&s.namespace, &name, &key).await.map_err(api_error)?)
            }
            None => None,
        },
        _ => None,
    };
    let provider_key_set = key.map(|k| k.is_some());
    let provider_key_updated_at =
        key.flatten().and_then(|k| k.updated_at_ms).and_then(tollgate_dataplane::budget::rfc3339);
    Ok(ResourceView {
        kind: s.kind,
        namespace: s.namespace,
        name: s.name,
        source: "api",
        generation: s.generation,
        document: s.document,
        provider_key_set,
        provider_key_updated_at,
    })
}

/// One resource by name: a file's, else the store's (one lookup, not a listing).
async fn find(
    cp: &ControlPlane,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Result<Option<ResourceView>, ApiError> {
    if let Some(r) = cp
        .config
        .files()
        .into_iter()
        .find(|r| resource_id(r) == (kind, namespace.to_owned(), name.to_owned()))
    {
        return Ok(Some(file_view(&r)));
    }
    match cp.resources.get(kind, namespace, name).await.map_err(api_error)? {
        Some(s) => Ok(Some(stored_view(cp, s).await?)),
        None => Ok(None),
    }
}

fn secret_ref(document: &Value) -> Option<(String, String)> {
    let r = document.pointer("/spec/secretRef")?;
    Some((r.get("name")?.as_str()?.to_owned(), r.get("key")?.as_str()?.to_owned()))
}

pub async fn list_all(State(cp): State<Arc<ControlPlane>>, uri: Uri) -> Response {
    respond(list_inner(&cp, None, &uri).await)
}

pub async fn list(State(cp): State<Arc<ControlPlane>>, Path(kind): Path<String>, uri: Uri) -> Response {
    respond(
        async {
            let kind = kind_param(&kind)?;
            list_inner(&cp, Some(kind), &uri).await
        }
        .await,
    )
}

/// `?namespace=` filter plus paging.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    namespace: Option<String>,
    #[serde(default, deserialize_with = "super::page_limit")]
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list_inner(cp: &ControlPlane, kind: Option<Kind>, uri: &Uri) -> ApiResult {
    let q: ListQuery = query(uri)?;
    let mut items = views(cp, kind).await?;
    if let Some(ns) = &q.namespace {
        items.retain(|v| &v.namespace == ns);
    }
    let page = Page { limit: q.limit, cursor: q.cursor };
    let (items, next) = paginate(items, &page, |v| format!("{}/{}/{}", v.kind.as_str(), v.namespace, v.name));
    Ok(List::response(items, next))
}

pub async fn get(
    State(cp): State<Arc<ControlPlane>>,
    Path((kind, namespace, name)): Path<(String, String, String)>,
) -> Response {
    respond(
        async {
            let kind = kind_param(&kind)?;
            let found = views(&cp, Some(kind))
                .await?
                .into_iter()
                .find(|v| v.namespace == namespace && v.name == name);
            match found {
                Some(v) => Ok(axum::Json(v).into_response()),
                None => Err(ApiError::not_found(
                    "resource_not_found",
                    format!("no {} {namespace}/{name}", kind.as_str()),
                )),
            }
        }
        .await,
    )
}

/// Parses a body (JSON, or YAML with a YAML content type) into one resource of `kind`.
async fn parse_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    kind: Kind,
) -> Result<(Resource, Value), ApiError> {
    let bytes = read_body(headers, body, MAX_BODY).await?;
    let text =
        String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::invalid("the body is not UTF-8", None))?;
    // NB: off the async workers: even within the limits a YAML parse can take a while, and
    // it must not hold up other requests meanwhile.
    let parsed = tokio::task::spawn_blocking(move || parse_documents("request body", &text))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the resource parser failed");
            ApiError::internal("the request could not be parsed")
        })?
        .map_err(load_error)?;
    let mut resources = parsed.resources.into_iter();
    let (Some(resource), None) = (resources.next(), resources.next()) else {
        return Err(ApiError::invalid(
            "the body must hold exactly one Tollgate resource (apiVersion tollgate.dev/v1alpha1)",
            None,
        ));
    };
    let (k, namespace, name) = resource_id(&resource);
    if k != kind {
        return Err(ApiError::invalid(
            format!("the body is a {}, the path says {}", k.as_str(), kind.as_str()),
            Some("kind".into()),
        ));
    }
    if !valid_name(&name) {
        return Err(ApiError::invalid(
            "metadata.name must be a lower-case DNS-style name (1-253 of a-z 0-9 . - _)",
            Some("metadata.name".into()),
        ));
    }
    if !valid_name(&namespace) || namespace.len() > 63 {
        return Err(ApiError::invalid(
            "metadata.namespace must be a DNS label",
            Some("metadata.namespace".into()),
        ));
    }
    let mut document = document_of(&resource);
    // Only what the resource is: status and server-side fields are not stored.
    if let Some(obj) = document.as_object_mut() {
        obj.remove("status");
    }
    if let Some(meta) = document.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("namespace".into(), Value::String(namespace));
        for server_side in ["uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"] {
            meta.remove(server_side);
        }
    }
    Ok((resource, document))
}

/// A body that did not load, in the API's terms: too big is a 413, too deep or invalid a
/// 400 naming the field (`.` for the whole document).
fn load_error(e: LoadError) -> ApiError {
    let mut error = ApiError::invalid(e.message, Some(e.path));
    match e.kind {
        LoadErrorKind::TooLarge => {
            error.status = StatusCode::PAYLOAD_TOO_LARGE;
            error.code = "request_too_large";
        }
        LoadErrorKind::TooDeep => error.code = "too_deep",
        LoadErrorKind::Invalid => {}
    }
    error
}

/// The set in force (read now, not cached) with `resource` replacing (or added to) its
/// namesake, or removed.
async fn candidate(
    cp: &ControlPlane,
    id: &(Kind, String, String),
    with: Option<Resource>,
) -> Result<Vec<Resource>, ApiError> {
    let mut all: Vec<Resource> =
        cp.current_resources().await?.into_iter().filter(|r| &resource_id(r) != id).collect();
    all.extend(with);
    Ok(all)
}

/// Compiles the resources a change would leave in force. A failure is a 422 listing every
/// problem, with `param` the field of the first problem in the resource being written
/// (else the first problem's), so a form can show it on that field.
fn compiles(all: &[Resource], id: &(Kind, String, String)) -> Result<(), ApiError> {
    let Err(errors) = tollgate_crds::compile(all) else { return Ok(()) };
    let message = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    let own = format!("{}/{}/{}", id.0.as_str(), id.1, id.2);
    let param = errors
        .iter()
        .find(|e| e.resource == own)
        .or(errors.first())
        .map(|e| e.path.clone())
        .filter(|p| !p.is_empty());
    let mut e =
        ApiError::invalid(format!("the change does not compile with the other resources:\n{message}"), param);
    e.status = StatusCode::UNPROCESSABLE_ENTITY;
    e.code = "invalid_resource";
    Err(e)
}

fn read_only(kind: Kind, namespace: &str, name: &str) -> ApiError {
    let mut e = ApiError::invalid(
        format!("{} {namespace}/{name} comes from a resource file; change it there", kind.as_str()),
        None,
    );
    e.status = StatusCode::CONFLICT;
    e.code = "managed_by_file";
    e
}

async fn write(
    cp: &ControlPlane,
    caller: &Caller,
    kind: Kind,
    request: Request,
    mode: WriteMode,
    path_id: Option<(String, String)>,
) -> ApiResult {
    let (parts, b) = request.into_parts();
    let (resource, document) = parse_body(&parts.headers, b, kind).await?;
    let id = resource_id(&resource);
    if let Some((ns, name)) = &path_id
        && (ns != &id.1 || name != &id.2)
    {
        return Err(ApiError::invalid(
            format!("the body names {}/{}, the path {ns}/{name}", id.1, id.2),
            Some("metadata.name".into()),
        ));
    }
    if cp.config.from_file(kind, &id.1, &id.2) {
        return Err(read_only(kind, &id.1, &id.2));
    }
    let mode = match (mode, parts.headers.get(http::header::IF_MATCH)) {
        (WriteMode::Apply, Some(v)) => {
            let g =
                v.to_str().ok().map(|s| s.trim_matches('"')).and_then(|s| s.parse::<i64>().ok()).ok_or_else(
                    || ApiError::invalid("If-Match must be a generation number", Some("If-Match".into())),
                )?;
            WriteMode::Replace(Some(g))
        }
        (m, _) => m,
    };
    compiles(&candidate(cp, &id, Some(resource)).await?, &id)?;
    let before = cp.resources.get(kind, &id.1, &id.2).await.map_err(api_error)?;
    let stored = cp.resources.put(kind, &id.1, &id.2, document, mode).await.map_err(api_error)?;
    if let Err(e) = cp.reconfigure().await {
        // Validated above; only a concurrent change can make this fail.
        tracing::error!(error = %e, "stored a resource the gateway could not apply");
    }
    let action = if before.is_some() { "update" } else { "create" };
    let target = format!("{} {}/{}", kind.as_str(), id.1, id.2);
    audit(cp, caller, action, &target, before.as_ref().map(|b| &b.document), Some(&stored.document)).await;
    let status = if before.is_some() { StatusCode::OK } else { StatusCode::CREATED };
    let mut view = [stored_view(cp, stored).await?];
    with_status(cp, &mut view).await?;
    let [view] = view;
    Ok((status, axum::Json(view)).into_response())
}

pub async fn create(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    Path(kind): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let kind = kind_param(&kind)?;
            write(&cp, &caller, kind, request, WriteMode::Create, None).await
        }
        .await,
    )
}

pub async fn put(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    Path((kind, namespace, name)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    respond(
        async {
            let kind = kind_param(&kind)?;
            write(&cp, &caller, kind, request, WriteMode::Apply, Some((namespace, name))).await
        }
        .await,
    )
}

pub async fn delete(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    Path((kind, namespace, name)): Path<(String, String, String)>,
) -> Response {
    respond(
        async {
            let kind = kind_param(&kind)?;
            if cp.config.from_file(kind, &namespace, &name) {
                return Err(read_only(kind, &namespace, &name));
            }
            let id = (kind, namespace.clone(), name.clone());
            if cp.resources.get(kind, &namespace, &name).await.map_err(api_error)?.is_none() {
                return Err(ApiError::not_found(
                    "resource_not_found",
                    format!("no {} {namespace}/{name}", kind.as_str()),
                ));
            }
            // A Budget that others name as parent, or a token a model needs, cannot go.
            compiles(&candidate(&cp, &id, None).await?, &id)?;
            let deleted = cp.resources.delete(kind, &namespace, &name).await.map_err(api_error)?;
            if let Err(e) = cp.reconfigure().await {
                tracing::error!(error = %e, "deleted a resource but the gateway could not apply the rest");
            }
            audit(
                &cp,
                &caller,
                "delete",
                &format!("{} {namespace}/{name}", kind.as_str()),
                deleted.as_ref().map(|d| &d.document),
                None,
            )
            .await;
            Ok(axum::Json(DeletedResource { deleted: ResourceId { kind, namespace, name } }).into_response())
        }
        .await,
    )
}

/// `PUT .../iptokens/{ns}/{name}/key`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderKey {
    /// The provider's API key. Stored for the gateway; never returned by any endpoint.
    pub value: String,
}

pub async fn put_key(
    State(cp): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
    Path((kind, namespace, name)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let (parts, b) = request.into_parts();
    respond(
        async {
            if kind_param(&kind)? != Kind::IpToken {
                return Err(ApiError::not_found("unknown_url", "only IPTokens have a provider key"));
            }
            let key: ProviderKey = body(&parts.headers, b).await?;
            let value = key.value.trim();
            if value.is_empty() || value.len() > 4096 || value.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "value must be 1-4096 printable characters",
                    Some("value".into()),
                ));
            }
            let token = find(&cp, Kind::IpToken, &namespace, &name).await?.ok_or_else(|| {
                ApiError::not_found("resource_not_found", format!("no IPToken {namespace}/{name}"))
            })?;
            let (secret, secret_key) = secret_ref(&token.document).ok_or_else(|| {
                let mut e = ApiError::invalid(
                    format!("IPToken {namespace}/{name} has no spec.secretRef to keep a key under"),
                    Some("spec.secretRef".into()),
                );
                e.status = StatusCode::CONFLICT;
                e
            })?;
            cp.resources
                .put_provider_key(&namespace, &secret, &secret_key, value)
                .await
                .map_err(api_error)?;
            if let Err(e) = cp.reconfigure().await {
                tracing::warn!(error = %e, "provider key stored; the configuration does not compile yet");
            }
            // NB: the audit entry names the secret, never its value.
            let target = format!("IPToken {namespace}/{name}");
            audit(
                &cp,
                &caller,
                "set-provider-key",
                &target,
                None,
                Some(&json!({"secretRef": {"name": secret, "key": secret_key}})),
            )
            .await;
            Ok(axum::Json(KeySet { provider_key_set: true }).into_response())
        }
        .await,
    )
}
