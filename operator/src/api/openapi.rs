//! The OpenAPI 3 document of the admin API, generated from the code: paths, methods,
//! summaries and access rules from [`super::ROUTES`] (the same table the router is built
//! from), request schemas from the request types and the CRD types via schemars. Committed
//! as `operator/openapi.json`; a test fails when it is stale (`TOLLGATE_UPDATE_GENERATED=1`
//! rewrites it).
//!
//! NB: schemars (already used for the CRDs) rather than utoipa: one schema source for the
//! CRDs and the API, and no second derive on every type.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::{Access, ROUTES};

/// The document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut bodies: Map<String, Value> = Map::new();
    let mut body = |name: &str, schema: schemars::Schema| {
        bodies.insert(name.to_owned(), schema.to_value());
    };
    body("CreateKey", generator.subschema_for::<super::keys::CreateKey>());
    body("NewUser", generator.subschema_for::<super::directory::NewUser>());
    body("NewTeam", generator.subschema_for::<super::directory::NewTeam>());
    body("ProviderKey", generator.subschema_for::<super::resources::ProviderKey>());
    body("Preferences", generator.subschema_for::<crate::store::sql::Preferences>());
    body("SafetyCheck", generator.subschema_for::<super::safety::CheckRequest>());
    body("IPToken", generator.subschema_for::<tollgate_crds::IpToken>());
    body("Budget", generator.subschema_for::<tollgate_crds::Budget>());
    body("SafetyPolicy", generator.subschema_for::<tollgate_crds::safety::SafetyPolicy>());
    body("Agent", generator.subschema_for::<tollgate_crds::Agent>());
    body("Sandbox", generator.subschema_for::<tollgate_crds::Sandbox>());
    body("DataPlane", generator.subschema_for::<tollgate_crds::DataPlane>());
    let responses: Vec<Value> = ROUTES.iter().map(|r| (r.response)(&mut generator).to_value()).collect();
    let mut schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    // The CRD types' schemas describe spec and status (the API server adds the rest);
    // documents sent to and returned by this API carry apiVersion, kind and metadata too.
    for kind in KINDS {
        if let Some(props) = schemas.get_mut(kind).and_then(|s| s.as_object_mut()) {
            if let Some(p) = props.get_mut("properties").and_then(Value::as_object_mut) {
                p.insert(
                    "apiVersion".into(),
                    json!({"type": "string", "enum": [tollgate_crds::API_VERSION]}),
                );
                p.insert("kind".into(), json!({"type": "string", "enum": [kind]}));
                p.insert("metadata".into(), json!({"$ref": "#/components/schemas/ResourceMeta"}));
            }
            props.insert("required".into(), json!(["apiVersion", "kind", "metadata", "spec"]));
        }
    }
    schemas.insert(
        "ResourceMeta".into(),
        json!({
            "type": "object",
            "description": "The resource's name and namespace (Kubernetes object metadata; other fields are kept as sent).",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "maxLength": 253, "description": "Lower-case DNS-style name"},
                "namespace": {"type": "string", "maxLength": 63, "description": "Default: `default`"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        }),
    );
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": "string", "nullable": true},
                    "code": {"type": "string", "nullable": true}
                }
            }}
        }),
    );

    let mut paths: Map<String, Value> = Map::new();
    for (r, response) in ROUTES.iter().zip(responses) {
        let mut op = Map::new();
        op.insert("summary".into(), json!(r.summary));
        op.insert("tags".into(), json!([r.tag]));
        op.insert(
            "operationId".into(),
            json!(format!("{}{}", r.method.to_ascii_lowercase(), r.path.replace(['/', '{', '}', '.'], "_"))),
        );
        let mut params: Vec<Value> = path_params(r.path)
            .into_iter()
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if r.method == "GET" {
            params.extend(query_params(r.path));
        }
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        let has_body = request_body(r.method, r.path, &bodies).inspect(|schema| {
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": schema}}}),
            );
        });
        let mut responses = Map::new();
        // POST creates (201), except actions (`/check`, `/run`), which answer 200.
        let action = r.path.ends_with("/check") || r.path.ends_with("/run");
        let ok = if r.method == "POST" && !action { "201" } else { "200" };
        let success =
            json!({"description": "Success", "content": {"application/json": {"schema": response}}});
        // Create-or-replace endpoints answer 201 for a new item and 200 for a replaced one.
        if matches!(
            (r.method, r.path),
            ("PUT", "/api/v1/resources/{kind}/{namespace}/{name}") | ("POST", "/api/v1/users")
        ) {
            responses.insert("200".into(), success.clone());
            responses.insert("201".into(), success);
        } else {
            responses.insert(ok.into(), success);
        }
        let error = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        responses.insert("400".into(), error("Malformed input (the field is named in `param`)"));
        if r.access != Access::Public {
            responses.insert("401".into(), error("No key, or an unknown, revoked or expired one"));
            responses.insert("403".into(), error("The caller's role may not do this"));
        }
        if !path_params(r.path).is_empty() {
            responses.insert("404".into(), error("Not found (or not visible to the caller)"));
        }
        if matches!(r.method, "POST" | "PUT" | "DELETE") {
            responses.insert("409".into(), error("Conflicts with what is stored"));
        }
        if has_body.is_some() {
            responses.insert("408".into(), error("The body did not arrive in time"));
            responses.insert("413".into(), error("The body is larger than this endpoint takes"));
        }
        for status in r.also {
            let description = match status {
                404 => "Not found (or not visible to the caller)",
                _ => "See the error's message",
            };
            responses.insert(status.to_string(), error(description));
        }
        if r.path.starts_with("/api/v1/resources") && r.method != "GET" {
            responses
                .insert("422".into(), error("Valid alone, but does not compile with the other resources"));
        }
        responses.insert("503".into(), error("The database is unavailable; retry"));
        op.insert("responses".into(), Value::Object(responses));
        if r.access != Access::Public {
            op.insert("security".into(), json!([{"bearer": []}]));
            op.insert(
                "x-tollgate-access".into(),
                json!(if r.access == Access::Admin { "admin" } else { "any role, scoped" }),
            );
        } else {
            op.insert("security".into(), json!([]));
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(r.method.to_ascii_lowercase(), Value::Object(op));
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Tollgate admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Resources, virtual keys, users and teams, usage and the audit log. \
                Errors: {\"error\": {\"message\", \"type\", \"param\", \"code\"}}. Lists take limit and cursor."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "A Tollgate virtual key (tg-...)"}}
        }
    })
}

/// The resource kinds, as their schemas are named.
const KINDS: [&str; 6] = ["IPToken", "Budget", "SafetyPolicy", "Agent", "Sandbox", "DataPlane"];

/// The schema of a stored resource document: one of the resource kinds.
pub fn resource_document(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let kinds = [
        generator.subschema_for::<tollgate_crds::IpToken>(),
        generator.subschema_for::<tollgate_crds::Budget>(),
        generator.subschema_for::<tollgate_crds::safety::SafetyPolicy>(),
        generator.subschema_for::<tollgate_crds::Agent>(),
        generator.subschema_for::<tollgate_crds::Sandbox>(),
        generator.subschema_for::<tollgate_crds::DataPlane>(),
    ];
    schemars::json_schema!({ "oneOf": kinds })
}

fn path_params(path: &str) -> Vec<&str> {
    path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
}

/// The query parameters of `GET path`, from the type its handler parses them into.
fn query_params(path: &str) -> Vec<Value> {
    fn of<T: schemars::JsonSchema>() -> Vec<Value> {
        let schema = SchemaSettings::openapi3()
            .with(|s| s.inline_subschemas = true)
            .into_generator()
            .into_root_schema_for::<T>()
            .to_value();
        let Some(props) = schema.get("properties").and_then(Value::as_object) else { return Vec::new() };
        props
            .iter()
            .map(|(name, p)| {
                let mut p = p.clone();
                let description = p.as_object_mut().and_then(|o| o.remove("description"));
                if let Some(o) = p.as_object_mut() {
                    o.remove("nullable");
                    // An absent parameter is not a null one (`limit` defaults to None in
                    // Rust, to 100 in effect).
                    if o.get("default").is_some_and(Value::is_null) {
                        o.remove("default");
                    }
                }
                let mut param = json!({"name": name, "in": "query", "schema": p});
                if let Some(d) = description {
                    param["description"] = d;
                }
                param
            })
            .collect()
    }
    match path {
        "/api/v1/resources" | "/api/v1/resources/{kind}" | "/api/v1/users" | "/api/v1/teams" => {
            of::<super::Page>()
        }
        "/api/v1/keys" => of::<super::keys::KeysQuery>(),
        "/api/v1/audit" => of::<super::directory::AuditQuery>(),
        "/api/v1/usage" => of::<super::usage::SummaryQuery>(),
        "/api/v1/usage/requests" => of::<super::usage::RequestsQuery>(),
        "/api/v1/safety/violations" => of::<super::safety::ViolationsQuery>(),
        _ => Vec::new(),
    }
}

fn request_body(method: &str, path: &str, bodies: &Map<String, Value>) -> Option<Value> {
    let name = match (method, path) {
        ("POST", "/api/v1/keys") => "CreateKey",
        ("POST", "/api/v1/users") => "NewUser",
        ("POST", "/api/v1/teams") => "NewTeam",
        ("PUT", "/api/v1/me/preferences") => "Preferences",
        ("POST", "/api/v1/safety/check") => "SafetyCheck",
        ("PUT", "/api/v1/resources/{kind}/{namespace}/{name}/key") => "ProviderKey",
        ("POST", "/api/v1/resources/{kind}") | ("PUT", "/api/v1/resources/{kind}/{namespace}/{name}") => {
            let kinds: Vec<Value> = KINDS.iter().filter_map(|k| bodies.get(*k).cloned()).collect();
            return Some(json!({"oneOf": kinds}));
        }
        _ => return None,
    };
    bodies.get(name).cloned()
}

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> Response {
    static DOC: OnceLock<Value> = OnceLock::new();
    axum::Json(DOC.get_or_init(document).clone()).into_response()
}
