//! The admin REST API under `/api/v1`. Errors use the same JSON shape as the gateway
//! (`{"error": {"message", "type", "param", "code"}}`); lists take `limit` and `cursor` and
//! answer `{"items": [...], "nextCursor": ...}`.
//!
//! Data flow: request → [`access::enforce`] (key, role, per the [`ROUTES`] table) →
//! handler (narrows to what the caller may see) → the gateway's key service, the SQL
//! store, the resource store → for resource changes, `compile()` and the in-process
//! gateway's `apply_config` (a change that does not compile is refused, nothing stored).

pub mod access;
mod budgets;
mod directory;
mod keys;
pub mod openapi;
mod resources;
mod safety;
mod usage;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tollgate_crds::Resource;
use tollgate_dataplane::http::{parse_json, read_body};
use tollgate_dataplane::store::Store;
use tollgate_dataplane::{ApiError, ApiFormat, Gateway, now_ms};

pub use access::{Access, Caller, RouteSpec};

use crate::config::ConfigSource;
use crate::store::ResourceStore;
use crate::store::sql::SqlStore;

/// What the admin API works on.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    /// The in-process gateway (its key service is the one requests are checked against).
    pub gateway: Gateway,
    /// The database.
    pub store: Store,
    /// The control plane's tables in it.
    pub sql: SqlStore,
    /// Where resources written through the API live.
    pub resources: Arc<dyn ResourceStore>,
    /// Resource files and base secrets (standalone).
    pub config: Arc<ConfigSource>,
    /// The resources in force as last read, for deciding what a caller may see.
    cache: Arc<std::sync::Mutex<Option<CachedResources>>>,
    /// Bumped by every write: a read that started before one is not cached.
    writes: Arc<std::sync::atomic::AtomicU64>,
    /// Why the last [`ControlPlane::reconfigure`] could not apply the resources (`None`: it
    /// did), shown on the resources the gateway does not have yet.
    refusal: Arc<std::sync::Mutex<Option<String>>>,
}

/// When the resources were read, and what they were.
type CachedResources = (std::time::Instant, Arc<Vec<Resource>>);

/// How long a read of every resource serves visibility decisions. Writes through this API
/// clear it at once; changes made elsewhere (kubectl, resource files) show within this.
const RESOURCE_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl ControlPlane {
    /// A standalone control plane: resources in the database next to the ledger.
    pub fn standalone(gateway: Gateway, store: Store) -> Self {
        let sql = SqlStore::new(store.clone());
        Self {
            gateway,
            store,
            resources: Arc::new(sql.clone()),
            sql,
            config: Arc::new(ConfigSource::default()),
            cache: Arc::default(),
            writes: Arc::default(),
            refusal: Arc::default(),
        }
    }

    /// This control plane with resources kept elsewhere (in Kubernetes: the custom
    /// resources, [`crate::store::kube::KubeStore`]).
    #[must_use]
    pub fn with_resources(mut self, resources: Arc<dyn ResourceStore>) -> Self {
        self.resources = resources;
        self
    }

    /// Every resource in force (files and API), read at most every
    /// [`RESOURCE_CACHE_TTL`] (each non-admin request decides visibility from it).
    pub async fn all_resources(&self) -> Result<Arc<Vec<Resource>>, ApiError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((at, resources)) = cache.as_ref()
            && at.elapsed() < RESOURCE_CACHE_TTL
        {
            return Ok(Arc::clone(resources));
        }
        let generation = self.writes.load(std::sync::atomic::Ordering::Acquire);
        let all = Arc::new(self.current_resources().await?);
        if let Ok(mut cache) = self.cache.lock()
            && self.writes.load(std::sync::atomic::Ordering::Acquire) == generation
        {
            *cache = Some((std::time::Instant::now(), Arc::clone(&all)));
        }
        Ok(all)
    }

    /// Every resource in force, read now (for writes, which must not decide on a stale set).
    pub async fn current_resources(&self) -> Result<Vec<Resource>, ApiError> {
        self.config.all(self.resources.as_ref()).await.map_err(|e| {
            tracing::error!(error = %e, "cannot read the stored resources");
            ApiError::unavailable("storage_unavailable", "the resource store is unavailable; retry shortly")
        })
    }

    /// Forgets the resources read for [`ControlPlane::all_resources`].
    fn forget_resources(&self) {
        self.writes.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if let Ok(mut cache) = self.cache.lock() {
            *cache = None;
        }
    }

    /// Hands every preferred model to the in-process gateway.
    pub async fn push_preferences(&self) {
        match self.sql.preferred_models().await {
            Ok(m) => self.gateway.set_preferred_models(m),
            Err(e) => {
                tracing::error!(error = %e, "cannot read preferences; the gateway keeps the previous ones")
            }
        }
    }

    /// Compiles every resource in force and applies it to the in-process gateway. On error
    /// the configuration in force stays and the error says why (also on the resources not
    /// applied, [`ControlPlane::refusal`]). An IP token whose key is not set does not fail
    /// it: the gateway keeps that token out of service and applies the rest.
    pub async fn reconfigure(&self) -> Result<(), String> {
        self.forget_resources();
        let result = self.apply_resources().await;
        if let Ok(mut refusal) = self.refusal.lock() {
            *refusal = result.as_ref().err().cloned();
        }
        result
    }

    async fn apply_resources(&self) -> Result<(), String> {
        let all = self.config.all(self.resources.as_ref()).await?;
        let config = crate::config::check(&all)?;
        let stored = self.sql.secrets().await.map_err(|e| e.to_string())?;
        let secrets = self.config.base_secrets().layered(stored);
        // NB: the same hash with other keys (one set or rotated) is applied too.
        if self.gateway.is_current(&config, &secrets) {
            return Ok(());
        }
        self.gateway.apply_config(config, &secrets).map_err(|e| e.to_string())
    }

    /// Why the last [`ControlPlane::reconfigure`] left the configuration in force as it was.
    pub fn refusal(&self) -> Option<String> {
        self.refusal.lock().ok().and_then(|r| r.clone())
    }
}

/// Largest admin request body.
pub const MAX_BODY: usize = 256 << 10;

/// Declares every endpoint once: the [`ROUTES`] table (access rules, OpenAPI) and the
/// router are both generated from it.
macro_rules! api {
    ($( $method:ident $path:literal => $handler:path, $access:ident, $tag:literal, $resp:ty, $summary:literal
        $(, also [$($also:literal),*])?; )*) => {
        /// Every endpoint of the admin API with who may call it.
        pub const ROUTES: &[RouteSpec] = &[
            $( RouteSpec {
                method: api!(@upper $method),
                path: $path,
                access: Access::$access,
                summary: $summary,
                tag: $tag,
                response: schema_of::<$resp>,
                also: &[$($($also),*)?],
            }, )*
        ];

        fn routes() -> Router<Arc<ControlPlane>> {
            let mut r = Router::new();
            $( r = r.route($path, axum::routing::$method($handler)); )*
            // NB: after every route: axum sets it on the routes that exist when called.
            r.method_not_allowed_fallback(method_not_allowed)
        }
    };
    (@upper get) => { "GET" };
    (@upper post) => { "POST" };
    (@upper put) => { "PUT" };
    (@upper delete) => { "DELETE" };
}

api! {
    get "/api/v1/openapi.json" => openapi::serve, Public, "meta", Value, "This API's OpenAPI 3 document";
    get "/api/v1/whoami" => keys::whoami, Any, "me", keys::WhoAmI, "The caller's principal and key";
    get "/api/v1/me" => directory::me, Any, "me", directory::Me, "The caller: role, teams, preferences, budgets and this month's usage";
    put "/api/v1/me/preferences" => directory::put_preferences, Any, "me", directory::PreferencesBody, "Set the caller's preferred model and provider";
    get "/api/v1/keys" => keys::list, Any, "keys", List<tollgate_dataplane::auth::KeyRecord>, "Virtual keys (prefix only): all for admins, those under owned budgets for superusers, own for developers";
    post "/api/v1/keys" => keys::create, Admin, "keys", keys::IssuedKey, "Issue a virtual key (shown once)";
    delete "/api/v1/keys/{id}" => keys::revoke, Admin, "keys", keys::Revoked, "Revoke a key (refused at once)";
    post "/api/v1/keys/{id}/rotate" => keys::rotate, Admin, "keys", keys::IssuedKey, "Issue a replacement key (shown once) and revoke the old one";
    get "/api/v1/budgets" => budgets::list, Any, "budgets", budgets::BudgetList, "Budget state in the current period, as far as the caller may see";
    get "/api/v1/budgets/{name}" => budgets::get_one, Any, "budgets", budgets::BudgetView, "One budget in namespace default";
    get "/api/v1/budgets/{namespace}/{name}" => budgets::get_namespaced, Any, "budgets", budgets::BudgetView, "One budget";
    get "/api/v1/usage" => usage::summary, Any, "usage", usage::UsageSummary, "Usage totals from the rollups, grouped and filtered";
    get "/api/v1/usage/requests" => usage::requests, Any, "usage", List<tollgate_dataplane::store::UsageRow>, "The request log (metadata only), newest first";
    post "/api/v1/safety/check" => safety::check, Any, "safety", safety::CheckResult, "A safety policy's verdict on a text (admins: any policy; others: the policies that apply to them)", also [404];
    get "/api/v1/resources" => resources::list_all, Admin, "resources", List<resources::ResourceView>, "Every resource (files and API)";
    get "/api/v1/resources/{kind}" => resources::list, Admin, "resources", List<resources::ResourceView>, "Resources of one kind";
    post "/api/v1/resources/{kind}" => resources::create, Admin, "resources", resources::ResourceView, "Create a resource (validated like the CRD)";
    get "/api/v1/resources/{kind}/{namespace}/{name}" => resources::get, Admin, "resources", resources::ResourceView, "One resource";
    put "/api/v1/resources/{kind}/{namespace}/{name}" => resources::put, Admin, "resources", resources::ResourceView, "Create or replace a resource (If-Match: generation)";
    delete "/api/v1/resources/{kind}/{namespace}/{name}" => resources::delete, Admin, "resources", resources::DeletedResource, "Delete a resource";
    put "/api/v1/resources/{kind}/{namespace}/{name}/key" => resources::put_key, Admin, "resources", resources::KeySet, "Set an IPToken's provider key (write-only)";
    get "/api/v1/users" => directory::users, Admin, "directory", List<crate::store::sql::User>, "Users and their teams";
    post "/api/v1/users" => directory::put_user, Admin, "directory", crate::store::sql::User, "Create or update a user";
    delete "/api/v1/users/{name}" => directory::delete_user, Admin, "directory", directory::Deleted, "Delete a user";
    get "/api/v1/teams" => directory::teams, Admin, "directory", List<crate::store::sql::Team>, "Teams and their members";
    post "/api/v1/teams" => directory::create_team, Admin, "directory", crate::store::sql::Team, "Create a team";
    delete "/api/v1/teams/{name}" => directory::delete_team, Admin, "directory", directory::Deleted, "Delete a team";
    put "/api/v1/teams/{name}/members/{user}" => directory::add_member, Admin, "directory", directory::Membership, "Add a member";
    delete "/api/v1/teams/{name}/members/{user}" => directory::remove_member, Admin, "directory", directory::Membership, "Remove a member";
    get "/api/v1/audit" => directory::audit, Admin, "audit", List<crate::store::sql::AuditEntry>, "Who changed what, when, before and after (secrets masked)";
    get "/api/v1/safety/violations" => safety::violations, Any, "safety", safety::Violations, "Recent safety findings and counts per hour, as far as the caller may see";
    get "/api/v1/breakers" => safety::breakers, Any, "health", safety::BreakerList, "Circuit breaker state per provider credential and model";
    get "/api/v1/scheduler/jobs" => directory::jobs, Admin, "scheduler", List<crate::store::sql::JobStatus>, "Each job's last run, next run and last error";
    post "/api/v1/scheduler/jobs/{name}/run" => directory::run_job, Admin, "scheduler", directory::JobRun, "Run a job now (rollups before reading usage, say)";
}

/// A method a path does not serve: 405 in the API's error format (axum's own has no body);
/// axum adds the `Allow` header.
async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response(ApiFormat::OpenAi)
}

/// The schema of a response body, for the OpenAPI document.
pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

fn schema_of<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

/// One page of a list: `{"items": [...], "nextCursor": ...}`.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "{T}List")]
pub struct List<T> {
    /// This page.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

impl<T: serde::Serialize> List<T> {
    /// The page as a response.
    pub(crate) fn response(items: Vec<T>, next_cursor: Option<String>) -> Response {
        axum::response::IntoResponse::into_response(axum::Json(Self { items, next_cursor }))
    }
}

/// Routes under `/api/v1`.
pub fn router(cp: ControlPlane) -> Router {
    let cp = Arc::new(cp);
    routes()
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&cp), access::enforce))
        .with_state(cp)
}

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn respond(result: ApiResult) -> Response {
    result.unwrap_or_else(|e| e.into_response(ApiFormat::OpenAi))
}

/// The storage error every handler answers when the database fails.
pub(crate) fn storage(e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "admin API storage error");
    ApiError::unavailable("storage_unavailable", "the database is unavailable; retry shortly")
}

/// Maps the operator's errors to API errors.
pub(crate) fn api_error(e: crate::error::Error) -> ApiError {
    match e {
        crate::error::Error::Conflict(m) => {
            let mut e = ApiError::invalid(m, None);
            e.status = http::StatusCode::CONFLICT;
            e.code = "conflict";
            e
        }
        crate::error::Error::NotFound(m) => ApiError::not_found("not_found", m),
        other => storage(&other),
    }
}

/// Reads and deserialises a JSON body; errors name the field.
pub(crate) async fn body<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, ApiError> {
    let bytes = read_body(headers, body, MAX_BODY).await?;
    let value = json_object(&bytes)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::invalid(e.into_inner().to_string(), Some(path))
    })
}

/// Parses a JSON body that must be an object, as every admin API body is (serde would
/// otherwise take an array for a struct, field by field).
pub(crate) fn json_object(bytes: &[u8]) -> Result<Value, ApiError> {
    let value = parse_json(bytes)?;
    if !value.is_object() {
        return Err(ApiError::invalid("the request body must be a JSON object", None));
    }
    Ok(value)
}

/// A name for users, teams and resources: 1-253 characters of `[a-z0-9.-_]`, starting and
/// ending alphanumeric (DNS-subdomain-like, as Kubernetes names are).
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// `limit` and `cursor` of a list request.
#[derive(Debug, Clone, Default, serde::Deserialize, schemars::JsonSchema)]
pub struct Page {
    /// Items per page (1-500, default 100).
    #[schemars(range(min = 1, max = 500))]
    #[serde(default, deserialize_with = "page_limit")]
    pub limit: Option<usize>,
    /// Where the previous page ended (`nextCursor` of the previous answer).
    pub cursor: Option<String>,
}

/// Largest page any list answers.
pub const MAX_PAGE: usize = 500;

/// Reads a `limit` query parameter: 1 to [`MAX_PAGE`], as the OpenAPI document says. Out of
/// range is an error (a 400 naming `limit`), not silently clamped, so a client learns its
/// request was not what it got.
pub(crate) fn page_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let limit = <Option<usize> as serde::Deserialize>::deserialize(d)?;
    match limit {
        Some(n) if !(1..=MAX_PAGE).contains(&n) => {
            Err(serde::de::Error::custom(format!("must be between 1 and {MAX_PAGE}, not {n}")))
        }
        other => Ok(other),
    }
}

/// Cuts one page out of `items`, sorted by `key`: those after `cursor`, at most `limit`.
pub fn paginate<T>(items: Vec<T>, page: &Page, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let limit = page.limit.unwrap_or(100).clamp(1, 500);
    let mut keyed: Vec<(String, T)> = items.into_iter().map(|t| (key(&t), t)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let start = page.cursor.as_ref().map_or(0, |c| keyed.partition_point(|(k, _)| k <= c));
    let rest: Vec<(String, T)> = keyed.into_iter().skip(start).collect();
    let next = (rest.len() > limit).then(|| rest[limit - 1].0.clone());
    (rest.into_iter().take(limit).map(|(_, t)| t).collect(), next)
}

/// A query string parsed into `T`; a bad one is a 400 naming the parameter.
pub(crate) fn query<T: DeserializeOwned>(uri: &http::Uri) -> Result<T, ApiError> {
    let q = uri.query().unwrap_or("");
    // No filter names anything with control characters (PostgreSQL refuses NUL outright).
    if let Some((name, _)) =
        form_urlencoded::parse(q.as_bytes()).find(|(_, v)| v.chars().any(char::is_control))
    {
        let name = name.chars().filter(|c| !c.is_control()).take(64).collect::<String>();
        return Err(ApiError::invalid(
            format!("query parameter {name} contains a control character"),
            Some(name),
        ));
    }
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let param = e.path().to_string();
        ApiError::invalid(format!("query parameter {param}: {}", e.into_inner()), Some(param))
    })
}

/// Records an audit entry; a failure to record is logged, never hides the change.
pub(crate) async fn audit(
    cp: &ControlPlane,
    caller: &Caller,
    action: &str,
    target: &str,
    before: Option<&Value>,
    after: Option<&Value>,
) {
    if let Err(e) = cp.sql.audit(&caller.actor(), action, target, before, after, now_ms()).await {
        tracing::error!(error = %e, action, target, "cannot write the audit log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_cursor() {
        let items: Vec<u32> = (0..7).collect();
        let page = Page { limit: Some(3), cursor: None };
        let (a, next) = paginate(items.clone(), &page, |i| format!("{i:03}"));
        assert_eq!((a, next.as_deref()), (vec![0, 1, 2], Some("002")));
        let (b, next) =
            paginate(items.clone(), &Page { limit: Some(3), cursor: next }, |i| format!("{i:03}"));
        assert_eq!((b, next.as_deref()), (vec![3, 4, 5], Some("005")));
        let (c, next) = paginate(items, &Page { limit: Some(3), cursor: next }, |i| format!("{i:03}"));
        assert_eq!((c, next), (vec![6], None));
    }

    #[test]
    fn names_are_kubernetes_like() {
        for ok in ["alice", "team-a", "a.b_c", "x1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "Alice", "a b", "a/b", &"a".repeat(254)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn query_strings_decode_and_errors_name_the_parameter() {
        let uri: http::Uri = "/x?limit=10&cursor=developer%2Falice".parse().unwrap();
        let page: Page = query(&uri).unwrap();
        assert_eq!((page.limit, page.cursor.as_deref()), (Some(10), Some("developer/alice")));
        let uri: http::Uri = "/x?limit=ten".parse().unwrap();
        let e = query::<Page>(&uri).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("limit"));
        for bad in ["0", "501"] {
            let uri: http::Uri = format!("/x?limit={bad}").parse().unwrap();
            let e = query::<Page>(&uri).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("limit"), "{bad}");
            assert!(e.message.contains("between 1 and 500"), "{}", e.message);
        }
        let uri: http::Uri = "/x?limit=500".parse().unwrap();
        assert_eq!(query::<Page>(&uri).unwrap().limit, Some(500));
        let uri: http::Uri = "/x".parse().unwrap();
        assert_eq!(query::<Page>(&uri).unwrap().limit, None);
    }

    #[test]
    fn every_route_is_unique_and_versioned() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTES {
            assert!(r.path.starts_with("/api/v1/"), "{}", r.path);
            assert!(seen.insert((r.method, r.path)), "duplicate {} {}", r.method, r.path);
        }
    }
}
