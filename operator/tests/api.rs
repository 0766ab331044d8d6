#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! The admin API against SQLite and against PostgreSQL (the same tests run on both; each
//! PostgreSQL test gets its own database): the authorization matrix generated from the
//! route table, scoping for superusers and developers, resources with validation and
//! write-only provider keys, users and teams, the audit log, usage rollups, preferences
//! and the `default` model alias, and the OpenAPI document.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_dataplane::auth::{Principal, PrincipalKind, Role};
use tollgate_dataplane::now_ms;
use tollgate_operator::api::{Access, ROUTES};
use tollgate_operator::{ControlPlane, router};
use tollgate_testkit::{ScratchDb, TestGateway};
use tower::ServiceExt;

const BASE: &str = r#"
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models:
    - name: mock-1
    - {name: mock-2, prices: {inputPerMtok: "1", outputPerMtok: "2"}}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: platform}
spec:
  subject: {kind: team, name: platform}
  limit: "1000"
  period: monthly
  owners: [{kind: developer, name: sam}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: alice}
spec:
  subject: {kind: developer, name: alice}
  limit: "100"
  period: monthly
  parent: platform
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: bob}
spec:
  subject: {kind: developer, name: bob}
  limit: "100"
  period: monthly
"#;

struct App {
    router: Router,
    cp: ControlPlane,
    keys: BTreeMap<&'static str, String>,
    /// A SQLite file, or a fresh PostgreSQL database (dropped with the `App`).
    _db: ScratchDb,
}

async fn app(postgres: bool) -> App {
    let db = ScratchDb::open(postgres, "tollgate_api").await;
    let TestGateway { gateway, keys, store } = TestGateway::builder(db.connect().await).start().await;
    let now = now_ms();
    let mut issued = BTreeMap::new();
    let people: [(&str, PrincipalKind, &str, Role, Option<&str>); 5] = [
        ("admin", PrincipalKind::Developer, "root", Role::Admin, None),
        ("superuser", PrincipalKind::Developer, "sam", Role::Superuser, None),
        ("developer", PrincipalKind::Developer, "alice", Role::Developer, Some("platform")),
        ("other", PrincipalKind::Developer, "bob", Role::Developer, None),
        ("agent", PrincipalKind::Agent, "bot", Role::Developer, Some("platform")),
    ];
    for (label, kind, name, role, team) in people {
        let p = Principal { kind, name: name.into(), role, team: team.map(str::to_owned) };
        issued.insert(label, keys.create(label.into(), p, vec![], None, now).await.unwrap().secret);
    }
    let p = Principal { kind: PrincipalKind::Developer, name: "rita".into(), role: Role::Admin, team: None };
    let revoked = keys.create("revoked".into(), p.clone(), vec![], None, now).await.unwrap();
    keys.revoke(&revoked.record.id, now).await.unwrap();
    issued.insert("revoked", revoked.secret);
    let expired = keys.create("expired".into(), p, vec![], Some(now + 50), now).await.unwrap();
    issued.insert("expired", expired.secret);
    let cp = ControlPlane::standalone(gateway, store);
    cp.config.set_files(tollgate_crds::parse_documents("base", BASE).unwrap().resources);
    cp.reconfigure().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(60)).await; // the expired key's expiry
    App { router: router(cp.clone()), cp, keys: issued, _db: db }
}

async fn call(
    app: &App,
    who: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(w) = who {
        req = req.header("authorization", format!("Bearer {}", app.keys[w]));
    }
    let req = match body {
        Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let response = app.router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Runs a test body on SQLite and on PostgreSQL.
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let f: fn(App) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = $body;
                f(app(false).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let f: fn(App) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = $body;
                f(app(true).await).await;
            }
        }
    };
}

fn fill(path: &str) -> String {
    path.replace("{kind}", "budgets")
        .replace("{namespace}", "default")
        .replace("{name}", "nothing-here")
        .replace("{id}", "no-such-key")
        .replace("{user}", "nobody")
}

both!(authorization_matrix_covers_every_route, |app| Box::pin(async move {
    assert!(ROUTES.len() >= 30, "the table lists every endpoint");
    let doc = tollgate_operator::api::openapi::document();
    for r in ROUTES {
        let path = fill(r.path);
        let body = matches!(r.method, "POST" | "PUT").then(|| json!({}));
        for who in [
            None,
            Some("revoked"),
            Some("expired"),
            Some("developer"),
            Some("superuser"),
            Some("agent"),
            Some("admin"),
        ] {
            let (status, answer) = call(&app, who, r.method, &path, body.clone()).await;
            let allowed = match (r.access, who) {
                (Access::Public, _) => true,
                (_, None | Some("revoked" | "expired")) => false,
                (Access::Any, _) => true,
                (Access::Admin, Some(w)) => w == "admin",
            };
            let denied = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
            assert!(
                allowed != denied
                    || (allowed
                        && status == StatusCode::FORBIDDEN
                        && answer["error"]["code"] == "not_visible"),
                "{} {} as {who:?}: expected {}, got {status} {answer}",
                r.method,
                r.path,
                if allowed { "allowed" } else { "denied" }
            );
            if !allowed {
                let expected = if matches!(who, None | Some("revoked" | "expired")) { 401 } else { 403 };
                assert_eq!(status.as_u16(), expected, "{} {} as {who:?}: {answer}", r.method, r.path);
                assert!(answer["error"]["message"].is_string(), "errors keep the API's format");
            }
            assert!(
                status.as_u16() < 500 || status == StatusCode::SERVICE_UNAVAILABLE,
                "{} {}: {status}",
                r.method,
                r.path
            );
            let documented = &doc["paths"][r.path][r.method.to_ascii_lowercase()]["responses"];
            assert!(
                documented[status.as_str()].is_object(),
                "{} {} as {who:?} answered {status}, which its OpenAPI document does not list: {answer}",
                r.method,
                r.path
            );
        }
    }
}));

both!(superusers_and_developers_see_only_what_is_theirs, |app| Box::pin(async move {
    // Superuser sam owns `platform`, so sees it and `alice` below it, never `bob`.
    let (s, v) = call(&app, Some("superuser"), "GET", "/api/v1/budgets", None).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> =
        v["budgets"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default/alice", "default/platform"]);
    let (s, _) = call(&app, Some("superuser"), "GET", "/api/v1/budgets/bob", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a budget they do not own is not there for them");
    // A developer sees their own and their team's budgets only.
    let (_, v) = call(&app, Some("developer"), "GET", "/api/v1/budgets", None).await;
    let names: Vec<&str> =
        v["budgets"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default/alice", "default/platform"]);
    let (_, v) = call(&app, Some("other"), "GET", "/api/v1/budgets", None).await;
    assert_eq!(v["budgets"].as_array().unwrap().len(), 1);
    // Usage: another developer's is refused, one's own is fine.
    let (s, v) = call(&app, Some("developer"), "GET", "/api/v1/usage?principal=bob", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("not_visible")));
    let (s, _) = call(&app, Some("developer"), "GET", "/api/v1/usage?principal=alice", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&app, Some("superuser"), "GET", "/api/v1/usage?principal=developer/bob", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(&app, Some("superuser"), "GET", "/api/v1/usage?principal=developer/alice", None).await;
    assert_eq!(s, StatusCode::OK, "alice's budget is under the one sam owns");
    // Keys: developers see their own, superusers those under their budgets.
    let (_, v) = call(&app, Some("developer"), "GET", "/api/v1/keys", None).await;
    let names: Vec<&str> =
        v["items"].as_array().unwrap().iter().map(|k| k["principal"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice"]);
    let (_, v) = call(&app, Some("superuser"), "GET", "/api/v1/keys", None).await;
    let mut names: Vec<&str> =
        v["items"].as_array().unwrap().iter().map(|k| k["principal"]["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["alice", "bot", "sam"], "the platform team's members, alice's budget, their own");
    assert!(!v.to_string().contains("keyHash"), "no hash in a key list");
}));

both!(resources_are_validated_stored_applied_and_audited, |app| Box::pin(async move {
    let token = json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "IPToken",
        "metadata": {"name": "openai-main"},
        "spec": {"provider": "openai-compatible", "baseUrl": "http://127.0.0.1:9/v1",
                 "secretRef": {"name": "openai-main", "key": "api-key"}, "models": [{"name": "gpt-x"}]}});
    let (s, v) = call(&app, Some("admin"), "POST", "/api/v1/resources/iptokens", Some(token.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["generation"].as_i64(), v["source"].as_str(), v["providerKeySet"].as_bool()),
        (Some(1), Some("api"), Some(false))
    );
    let (s, _) = call(&app, Some("admin"), "POST", "/api/v1/resources/iptokens", Some(token.clone())).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // The provider key is write-only: stored, applied, never returned (canary).
    let canary = "sk-canary-7f3a9c1e5b";
    let (s, v) = call(
        &app,
        Some("admin"),
        "PUT",
        "/api/v1/resources/iptokens/default/openai-main/key",
        Some(json!({"value": canary})),
    )
    .await;
    assert_eq!((s, v["providerKeySet"].as_bool()), (StatusCode::OK, Some(true)));
    assert!(app.cp.gateway.shared().runtime.load().route("gpt-x").is_some(), "applied to the gateway");
    for path in
        ["/api/v1/resources", "/api/v1/resources/iptokens/default/openai-main", "/api/v1/audit", "/api/v1/me"]
    {
        let (_, v) = call(&app, Some("admin"), "GET", path, None).await;
        assert!(!v.to_string().contains(canary), "{path} leaks the provider key");
    }

    // Precise errors: a field path, an unknown kind, a mismatch, a file resource.
    let mut bad = token.clone();
    bad["spec"]["provider"] = json!("not-a-provider");
    let (s, v) =
        call(&app, Some("admin"), "PUT", "/api/v1/resources/iptokens/default/openai-main", Some(bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["param"], "spec.provider", "{v}");
    let (s, _) = call(&app, Some("admin"), "GET", "/api/v1/resources/widgets", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = call(&app, Some("admin"), "PUT", "/api/v1/resources/budgets/default/bob",
        Some(json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "Budget", "metadata": {"name": "bob"},
                    "spec": {"subject": {"kind": "developer", "name": "bob"}, "limit": "1", "period": "daily"}}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("managed_by_file")));

    // Valid alone but not with the rest: a parent that does not exist → 422, nothing stored.
    let orphan = json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "Budget", "metadata": {"name": "orphan"},
        "spec": {"subject": {"kind": "team", "name": "x"}, "limit": "5", "period": "daily", "parent": "missing"}});
    let (s, v) = call(&app, Some("admin"), "POST", "/api/v1/resources/budgets", Some(orphan)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["param"], "spec.parent", "the field is named for forms: {v}");
    let (s, _) = call(&app, Some("admin"), "GET", "/api/v1/resources/budgets/default/orphan", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Optimistic concurrency on replace.
    let team = json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "Budget", "metadata": {"name": "research"},
        "spec": {"subject": {"kind": "team", "name": "research"}, "limit": "50", "period": "monthly"}});
    let (s, _) =
        call(&app, Some("admin"), "PUT", "/api/v1/resources/budgets/default/research", Some(team.clone()))
            .await;
    assert_eq!(s, StatusCode::CREATED);
    let mut changed = team.clone();
    changed["spec"]["limit"] = json!("60");
    let req = Request::put("/api/v1/resources/budgets/default/research")
        .header("authorization", format!("Bearer {}", app.keys["admin"]))
        .header("if-match", "7")
        .body(Body::from(changed.to_string()))
        .unwrap();
    assert_eq!(app.router.clone().oneshot(req).await.unwrap().status(), StatusCode::CONFLICT);
    let (s, v) =
        call(&app, Some("admin"), "PUT", "/api/v1/resources/budgets/default/research", Some(changed)).await;
    assert_eq!((s, v["generation"].as_i64()), (StatusCode::OK, Some(2)));
    assert!(
        app.cp
            .gateway
            .shared()
            .runtime
            .load()
            .config
            .budgets
            .iter()
            .any(|b| b.id == "default/research" && b.limit_micros == 60_000_000)
    );

    // Listing pages through files and API resources alike.
    let (_, p1) = call(&app, Some("admin"), "GET", "/api/v1/resources?limit=2", None).await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    let cursor = p1["nextCursor"].as_str().unwrap().to_owned();
    let (_, p2) = call(
        &app,
        Some("admin"),
        "GET",
        &format!("/api/v1/resources?limit=2&cursor={}", cursor.replace('/', "%2F")),
        None,
    )
    .await;
    assert_ne!(p1["items"][0], p2["items"][0]);
    let (s, _) = call(&app, Some("admin"), "GET", "/api/v1/resources?limit=abc", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Delete; the audit log has before and after.
    let (s, _) =
        call(&app, Some("admin"), "DELETE", "/api/v1/resources/budgets/default/research", None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, log) = call(&app, Some("admin"), "GET", "/api/v1/audit", None).await;
    let actions: Vec<&str> =
        log["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions[..5], ["delete", "update", "create", "set-provider-key", "create"]);
    let update = &log["items"][1];
    assert_eq!(
        (update["before"]["spec"]["limit"].as_str(), update["after"]["spec"]["limit"].as_str()),
        (Some("50"), Some("60"))
    );
    assert!(update["actor"].as_str().unwrap().starts_with("developer/root"));
}));

both!(users_teams_membership_and_superuser_ownership_through_teams, |app| Box::pin(async move {
    let (s, _) =
        call(&app, Some("admin"), "POST", "/api/v1/users", Some(json!({"name": "sam", "role": "superuser"})))
            .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = call(&app, Some("admin"), "POST", "/api/v1/users", Some(json!({"name": "Not Valid"}))).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("name")));
    let (s, _) = call(&app, Some("admin"), "POST", "/api/v1/teams", Some(json!({"name": "finance"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(&app, Some("admin"), "POST", "/api/v1/teams", Some(json!({"name": "finance"}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = call(&app, Some("admin"), "PUT", "/api/v1/teams/finance/members/nobody", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&app, Some("admin"), "PUT", "/api/v1/teams/finance/members/sam", None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = call(&app, Some("admin"), "GET", "/api/v1/teams", None).await;
    assert_eq!(v["items"][0], json!({"name": "finance", "members": ["sam"]}));
    // A budget owned by team finance is now visible to sam.
    let b = json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "Budget", "metadata": {"name": "fin"},
        "spec": {"subject": {"kind": "team", "name": "finance"}, "limit": "10", "period": "daily", "owners": [{"kind": "team", "name": "finance"}]}});
    let (s, v) = call(&app, Some("admin"), "POST", "/api/v1/resources/budgets", Some(b)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, v) = call(&app, Some("superuser"), "GET", "/api/v1/budgets/fin", None).await;
    assert_eq!(v["name"], "default/fin");
    let (_, me) = call(&app, Some("superuser"), "GET", "/api/v1/me", None).await;
    assert_eq!(me["teams"], json!(["finance"]));
    assert_eq!(me["role"], "superuser");
}));

both!(usage_rollups_equal_the_ledger_and_answer_grouped_queries, |app| Box::pin(async move {
    // Real requests through the gateway, by two principals.
    let gw = app.cp.gateway.router();
    for (who, model, n) in [("developer", "mock-1", 3), ("other", "mock-2", 2)] {
        for _ in 0..n {
            let req = Request::post("/v1/chat/completions")
                .header("authorization", format!("Bearer {}", app.keys[who]))
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]})
                        .to_string(),
                ))
                .unwrap();
            assert_eq!(gw.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
        }
    }
    // Older traffic, so whole days come from the daily rollups and the edges from hours.
    let day = 86_400_000;
    let old: Vec<tollgate_dataplane::usage::UsageRecord> = (0..24)
        .map(|i| tollgate_dataplane::usage::UsageRecord {
            request_id: format!("old-{i}"),
            ts_ms: now_ms() - 3 * day - i * 3_600_000,
            principal_kind: Some("developer".into()),
            principal_name: Some("carol".into()),
            endpoint: "chat.completions".into(),
            model: Some("mock-1".into()),
            input_tokens: 10,
            output_tokens: 5,
            status: if i % 6 == 0 { 502 } else { 200 },
            cost_micros: 7,
            ..Default::default()
        })
        .collect();
    app.cp.store.insert_usage(&old).await.unwrap();
    let (s, v) = call(&app, Some("admin"), "POST", "/api/v1/scheduler/jobs/usage-rollups/run", None).await;
    assert_eq!((s, v["ok"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    let raw = app.cp.sql.raw_usage_totals(0, now_ms() + 1).await.unwrap();
    // Any window, whole days or not, equals the raw ledger over the same hours.
    for (from, to) in
        [(now_ms() - 10 * day, now_ms() + 1), (now_ms() - 4 * day + 5_400_000, now_ms() - 2 * day - 1)]
    {
        let hour = 3_600_000;
        let f = tollgate_operator::store::sql::UsageFilter {
            from_ms: from.div_euclid(hour) * hour,
            to_ms: (to / hour + 1) * hour,
            ..Default::default()
        };
        let rolled = app.cp.sql.usage(&f, None).await.unwrap().into_iter().next().unwrap_or_default();
        let exact = app.cp.sql.raw_usage_totals(f.from_ms, f.to_ms).await.unwrap();
        assert_eq!(
            (rolled.requests, rolled.errors, rolled.cost_micros),
            (exact.requests, exact.errors, exact.cost_micros),
            "{from}..{to}"
        );
        let by_day = app.cp.sql.usage(&f, Some(tollgate_operator::store::sql::GroupBy::Day)).await.unwrap();
        assert_eq!(by_day.iter().map(|g| g.requests).sum::<i64>(), exact.requests);
    }
    let (_, v) = call(&app, Some("admin"), "GET", "/api/v1/usage", None).await;
    assert_eq!(v["total"]["requests"].as_i64(), Some(raw.requests));
    assert_eq!(v["total"]["inputTokens"].as_i64(), Some(raw.input_tokens));
    assert_eq!(v["total"]["outputTokens"].as_i64(), Some(raw.output_tokens));
    assert_eq!(raw.requests, 5 + 24);
    let (_, v) = call(&app, Some("admin"), "GET", "/api/v1/usage?by=model", None).await;
    let by: BTreeMap<String, i64> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["key"].as_str().unwrap().to_owned(), g["requests"].as_i64().unwrap()))
        .collect();
    assert_eq!(by, BTreeMap::from([("mock-1".into(), 3 + 24), ("mock-2".into(), 2)]));
    let (_, v) = call(&app, Some("admin"), "GET", "/api/v1/usage?by=team", None).await;
    assert!(
        v["groups"].as_array().unwrap().iter().any(|g| g["key"] == "platform" && g["requests"] == 3),
        "{v}"
    );
    let (_, v) = call(&app, Some("developer"), "GET", "/api/v1/usage?by=day", None).await;
    assert_eq!(v["total"]["requests"].as_i64(), Some(3), "a developer's own usage only");
    assert!(v["groups"][0]["key"].as_str().unwrap().ends_with("T00:00:00Z"));
    // Rerunning changes nothing (idempotent).
    call(&app, Some("admin"), "POST", "/api/v1/scheduler/jobs/usage-rollups/run", None).await;
    let (_, again) = call(&app, Some("admin"), "GET", "/api/v1/usage", None).await;
    assert_eq!(again["total"]["requests"].as_i64(), Some(5 + 24));
    let (_, jobs) = call(&app, Some("admin"), "GET", "/api/v1/scheduler/jobs", None).await;
    let job = &jobs["items"][0];
    assert_eq!(
        (job["name"].as_str(), job["runs"].as_i64(), job["lastError"].as_str()),
        (Some("usage-rollups"), Some(2), None)
    );
    // The request log: metadata only, scoped.
    let (_, log) = call(&app, Some("other"), "GET", "/api/v1/usage/requests", None).await;
    assert_eq!(log["items"].as_array().unwrap().len(), 2);
    let (s, v) = call(&app, Some("admin"), "GET", "/api/v1/usage?by=colour", None).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("by")));
    let (s, _) = call(&app, Some("admin"), "GET", "/api/v1/usage?from=yesterday", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}));

both!(preferences_pick_the_model_for_default, |app| Box::pin(async move {
    let gw = app.cp.gateway.router();
    let ask = |model: Value| {
        Request::post("/v1/chat/completions")
            .header("authorization", format!("Bearer {}", app.keys["developer"]))
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
            ))
            .unwrap()
    };
    let r = gw.clone().oneshot(ask(json!("default"))).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no preference yet");
    let (s, v) =
        call(&app, Some("developer"), "PUT", "/api/v1/me/preferences", Some(json!({"model": "nope"}))).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("model")));
    let (s, v) = call(
        &app,
        Some("developer"),
        "PUT",
        "/api/v1/me/preferences",
        Some(json!({"model": "mock-2", "provider": "mock"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = call(
        &app,
        Some("developer"),
        "PUT",
        "/api/v1/me/preferences",
        Some(json!({"model": "mock-2", "provider": "elsewhere"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    for model in [json!("default"), Value::Null] {
        let r = gw.clone().oneshot(ask(model)).await.unwrap();
        let status = r.status();
        assert_eq!(status, StatusCode::OK, "{:?}", r.into_body().collect().await.unwrap().to_bytes());
        let r = gw.clone().oneshot(ask(json!("default"))).await.unwrap();
        let body: Value = serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["model"], "mock-2");
    }
    let (_, me) = call(&app, Some("developer"), "GET", "/api/v1/me", None).await;
    assert_eq!(me["preferences"], json!({"model": "mock-2", "provider": "mock"}));
}));

/// Sends a chat request through the in-process gateway as `who`; returns the status.
async fn chat(app: &App, who: &str, model: &str, content: &str) -> StatusCode {
    let req = Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {}", app.keys[who]))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"model": model, "messages": [{"role": "user", "content": content}]}).to_string(),
        ))
        .unwrap();
    app.cp.gateway.router().oneshot(req).await.unwrap().status()
}

/// Waits until the ledger holds `n` rows (the usage writer is asynchronous).
async fn ledger_rows(app: &App, n: usize) {
    for _ in 0..200 {
        if app.cp.store.recent_usage(1000).await.unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the ledger never held {n} rows");
}

both!(request_log_filters_pages_and_scopes_in_sql, |app| Box::pin(async move {
    for (who, model) in
        [("developer", "mock-1"), ("developer", "mock-2"), ("other", "mock-1"), ("agent", "mock-1")]
    {
        assert_eq!(chat(&app, who, model, "hello").await, StatusCode::OK);
    }
    assert_eq!(chat(&app, "developer", "no-such-model", "hello").await, StatusCode::NOT_FOUND);
    ledger_rows(&app, 4).await;
    // Admins page through everything, newest first, by id.
    let (s, v) = call(&app, Some("admin"), "GET", "/api/v1/usage/requests?limit=2", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let first: Vec<i64> = v["items"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(first.len(), 2);
    assert!(first[0] > first[1]);
    let cursor = v["nextCursor"].as_str().unwrap().to_owned();
    let (_, v) =
        call(&app, Some("admin"), "GET", &format!("/api/v1/usage/requests?limit=2&cursor={cursor}"), None)
            .await;
    let second: Vec<i64> = v["items"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(second.iter().all(|id| *id < first[1]), "{first:?} then {second:?}");
    // Filters: principal (kind/name), model, outcome.
    let (_, v) = call(
        &app,
        Some("admin"),
        "GET",
        "/api/v1/usage/requests?principal=developer/alice&model=mock-2",
        None,
    )
    .await;
    let rows = v["items"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(
        (rows[0]["principalKind"].as_str(), rows[0]["model"].as_str()),
        (Some("developer"), Some("mock-2"))
    );
    let (_, v) = call(&app, Some("admin"), "GET", "/api/v1/usage/requests?outcome=error", None).await;
    assert!(v["items"].as_array().unwrap().iter().all(|r| r["status"].as_i64().unwrap() >= 400), "{v}");
    let (s, v) = call(&app, Some("admin"), "GET", "/api/v1/usage/requests?outcome=maybe", None).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("outcome")));
    let (s, v) = call(&app, Some("admin"), "GET", "/api/v1/usage/requests?cursor=abc", None).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("cursor")));
    // A developer sees only their own rows and may not ask for someone else's.
    let (_, v) = call(&app, Some("developer"), "GET", "/api/v1/usage/requests", None).await;
    let names: std::collections::BTreeSet<&str> =
        v["items"].as_array().unwrap().iter().map(|r| r["principalName"].as_str().unwrap()).collect();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["alice"], "{v}");
    let (s, _) = call(&app, Some("developer"), "GET", "/api/v1/usage/requests?principal=bob", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The agent `bot` shares nothing with a developer of another name.
    let (_, v) = call(&app, Some("other"), "GET", "/api/v1/usage/requests", None).await;
    assert!(v["items"].as_array().unwrap().iter().all(|r| r["principalName"] == "bob"), "{v}");
}));

both!(violations_breakers_and_model_choices_are_scoped, |app| Box::pin(async move {
    let policy = json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "SafetyPolicy",
        "metadata": {"name": "no-email"},
        "spec": {"input": {"detectors": [{"id": "pii.email", "action": "block"}]}}
    });
    let (s, v) = call(&app, Some("admin"), "POST", "/api/v1/resources/safetypolicies", Some(policy)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(chat(&app, "developer", "mock-1", "write to jo@example.com").await, StatusCode::BAD_REQUEST);
    assert_eq!(chat(&app, "other", "mock-1", "mail bob@example.org now").await, StatusCode::BAD_REQUEST);
    // Findings are written off the request path: wait for both.
    let mut v = Value::Null;
    for _ in 0..200 {
        let (s, answer) = call(&app, Some("admin"), "GET", "/api/v1/safety/violations", None).await;
        assert_eq!(s, StatusCode::OK, "{answer}");
        v = answer;
        // NB: the count and the page are two reads; the batch of findings may land between
        // them, so wait until both see it.
        if v["total"] == 2 && v["items"].as_array().is_some_and(|i| i.len() == 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(v["byHour"].as_array().unwrap().iter().map(|h| h["count"].as_u64().unwrap()).sum::<u64>(), 2);
    let first = &v["items"][0];
    assert_eq!((first["rule"].as_str(), first["action"].as_str()), (Some("pii.email"), Some("block")));
    assert!(!v.to_string().contains("example"), "no matched text in the log: {v}");
    let (_, v) = call(&app, Some("developer"), "GET", "/api/v1/safety/violations", None).await;
    assert_eq!(v["total"], 1, "a developer sees their own: {v}");
    assert_eq!(v["items"][0]["principalName"], "alice");
    let (s, v) = call(&app, Some("admin"), "GET", "/api/v1/safety/violations?from=tomorrow", None).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("from")));

    // A breaker appears once its upstream has been called.
    assert_eq!(chat(&app, "developer", "mock-1", "hello").await, StatusCode::OK);
    let (s, v) = call(&app, Some("developer"), "GET", "/api/v1/breakers", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v["items"].as_array().unwrap().iter().any(|b| b["model"] == "mock-1" && b["state"] == "closed"),
        "{v}"
    );
    // Another gateway sharing the database reports the same upstream open: the worst wins,
    // and a report older than 30 s is left out.
    let open = [("default/mock".to_owned(), "mock-1".to_owned(), "open")];
    app.cp.store.report_breakers("gateway-b", &open, now_ms()).await.unwrap();
    app.cp.store.report_breakers("gateway-gone", &open, now_ms() - 60_000).await.unwrap();
    let (_, v) = call(&app, Some("admin"), "GET", "/api/v1/breakers", None).await;
    let mock1 = v["items"].as_array().unwrap().iter().find(|b| b["model"] == "mock-1").unwrap().clone();
    assert_eq!(
        (mock1["state"].as_str(), mock1["gateways"].as_u64(), mock1["notClosed"].as_u64()),
        (Some("open"), Some(2), Some(1)),
        "{v}"
    );

    // Choices: chat models the key may use, with the IPTokens serving them.
    let (_, me) = call(&app, Some("developer"), "GET", "/api/v1/me", None).await;
    assert_eq!(
        me["modelChoices"],
        json!([{"model": "mock-1", "providers": ["mock"]}, {"model": "mock-2", "providers": ["mock"]}])
    );
    // Budgets carry thresholds, the level reached and owners.
    let (_, v) = call(&app, Some("admin"), "GET", "/api/v1/budgets/platform", None).await;
    assert_eq!(v["owners"], json!([{"kind": "developer", "name": "sam"}]), "{v}");
    assert!(v["alertThresholds"].is_array() && v["alertLevel"].is_null(), "{v}");
}));

both!(audit_log_filters_by_action_actor_and_target, |app| Box::pin(async move {
    for name in ["team-a", "team_b"] {
        let (s, _) = call(&app, Some("admin"), "POST", "/api/v1/teams", Some(json!({"name": name}))).await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (s, _) = call(&app, Some("admin"), "DELETE", "/api/v1/teams/team-a", None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = call(&app, Some("admin"), "GET", "/api/v1/audit?action=delete", None).await;
    let targets: Vec<&str> =
        v["items"].as_array().unwrap().iter().map(|e| e["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["team team-a"]);
    // `_` and `%` are literal, not wildcards.
    let (_, v) = call(&app, Some("admin"), "GET", "/api/v1/audit?target=m_b", None).await;
    let targets: Vec<&str> =
        v["items"].as_array().unwrap().iter().map(|e| e["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["team team_b"]);
    let (_, v) = call(&app, Some("admin"), "GET", "/api/v1/audit?target=%25", None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 0, "{v}");
    let (_, v) = call(&app, Some("admin"), "GET", "/api/v1/audit?actor=ROOT&action=create", None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2, "case does not matter, on either database: {v}");
    // Control characters (PostgreSQL refuses NUL) are a 400 naming the parameter, not a 503.
    for path in ["/api/v1/audit?actor=%00", "/api/v1/usage/requests?model=a%00b", "/api/v1/usage?team=%07"] {
        let (s, v) = call(&app, Some("admin"), "GET", path, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert!(v["error"]["param"].is_string(), "{v}");
    }
    let (s, v) = call(&app, Some("admin"), "GET", "/api/v1/audit?colour=red", None).await;
    assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("colour")), "{v}");
}));

fn key_body(name: &str, role: Option<&str>, team: Option<&str>) -> Value {
    let mut p = json!({"kind": "developer", "name": name});
    if let Some(r) = role {
        p["role"] = json!(r);
    }
    if let Some(t) = team {
        p["team"] = json!(t);
    }
    json!({"principal": p})
}

/// Issues a key through the API as `admin`; its id and secret.
async fn issue(app: &App, name: &str, role: Option<&str>) -> (String, String) {
    let (s, v) = call(app, Some("admin"), "POST", "/api/v1/keys", Some(key_body(name, role, None))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (v["record"]["id"].as_str().unwrap().to_owned(), v["key"].as_str().unwrap().to_owned())
}

/// `method path` with the key `secret`: status and body.
async fn call_with(app: &App, secret: &str, method: &str, path: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {secret}"))
        .body(Body::empty())
        .unwrap();
    let response = app.router.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

both!(principal_names_and_teams_are_bounded_printable_identities, |app| Box::pin(async move {
    let huge = "t".repeat(50_000);
    let refused: [(Value, &str); 7] = [
        (key_body("alice", None, Some(&huge)), "principal.team"),
        (key_body("alice", None, Some("pay\0ments")), "principal.team"),
        (key_body("alice", None, Some("pay\nments")), "principal.team"),
        (key_body("al\nice", None, None), "principal.name"),
        (key_body(&"a".repeat(129), None, None), "principal.name"),
        (key_body(" alice", None, None), "principal.name"),
        (key_body("tollgate:admin", Some("admin"), None), "principal.name"),
    ];
    for (body, field) in refused {
        let (s, v) = call(&app, Some("admin"), "POST", "/api/v1/keys", Some(body.clone())).await;
        assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().starts_with(field), "{v}");
    }
    let (s, v) = call(
        &app,
        Some("admin"),
        "POST",
        "/api/v1/keys",
        Some(key_body("Alice.Smith@example.com", None, Some("team_a-1"))),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for (path, body, field) in [
        ("/api/v1/users", json!({"name": "eve\0"}), "name"),
        ("/api/v1/users", json!({"name": "x".repeat(129)}), "name"),
        ("/api/v1/users", json!({"name": "eve", "teams": ["a\nb"]}), "teams[0]"),
        ("/api/v1/teams", json!({"name": "t".repeat(50_000)}), "name"),
        ("/api/v1/teams", json!({"name": "fin\r\nance"}), "name"),
    ] {
        let (s, v) = call(&app, Some("admin"), "POST", path, Some(body)).await;
        assert_eq!((s, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{path}: {v}");
    }
    // Nothing refused was stored.
    let (_, v) = call(&app, Some("admin"), "GET", "/api/v1/teams", None).await;
    assert_eq!(v["items"], json!([]));
    let (_, v) = call(&app, Some("admin"), "GET", "/api/v1/keys", None).await;
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["principal"]["team"].as_str().is_none_or(|t| t.len() < 20))
    );
}));

both!(the_directory_role_governs_a_users_keys_and_deleting_a_user_revokes_them, |app| Box::pin(async move {
    // Carol is an admin in the directory: her keys are admin keys, whatever was asked.
    let (s, _) =
        call(&app, Some("admin"), "POST", "/api/v1/users", Some(json!({"name": "carol", "role": "admin"})))
            .await;
    assert_eq!(s, StatusCode::CREATED);
    let (carol_id, carol) = issue(&app, "carol", None).await;
    assert_eq!(call_with(&app, &carol, "GET", "/api/v1/users").await.0, StatusCode::OK);
    let (s, v) =
        call(&app, Some("admin"), "POST", "/api/v1/keys", Some(key_body("carol", Some("developer"), None)))
            .await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("role_conflict")), "{v}");
    // Demoted: the same key may no longer administer, at once.
    let (s, _) = call(
        &app,
        Some("admin"),
        "POST",
        "/api/v1/users",
        Some(json!({"name": "carol", "role": "developer"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call_with(&app, &carol, "GET", "/api/v1/users").await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("admin_required")));
    assert_eq!(call_with(&app, &carol, "GET", "/api/v1/whoami").await.1["principal"]["role"], "developer");
    // A user added to the directory after their keys were issued: the directory's role wins.
    let (_, dan) = issue(&app, "dan", Some("superuser")).await;
    let (s, _) = call(&app, Some("admin"), "POST", "/api/v1/users", Some(json!({"name": "dan"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(call_with(&app, &dan, "GET", "/api/v1/me").await.1["role"], "developer");
    // Deleted: every key of theirs stops working at once, and the answer says which.
    let (s, v) = call(&app, Some("admin"), "DELETE", "/api/v1/users/carol", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["revokedKeys"], json!([carol_id]));
    let (s, v) = call_with(&app, &carol, "GET", "/api/v1/whoami").await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("key_revoked")));
    let chat = Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {carol}"))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        ))
        .unwrap();
    assert_eq!(app.cp.gateway.router().oneshot(chat).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // Outside the directory one identity has one role too: no second role under one name.
    issue(&app, "erin", Some("superuser")).await;
    let (s, v) =
        call(&app, Some("admin"), "POST", "/api/v1/keys", Some(key_body("erin", Some("admin"), None))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("role_conflict")), "{v}");
    let (_, v) = call(&app, Some("admin"), "POST", "/api/v1/keys", Some(key_body("erin", None, None))).await;
    assert_eq!(v["record"]["principal"]["role"], "superuser");
}));

both!(a_developer_named_like_the_bootstrap_admin_sees_nothing_of_the_admins, |app| Box::pin(async move {
    // A database from before the bootstrap admin had an identity of its own: its key is
    // `developer/admin`, and it has made a request.
    let mut app = app;
    let keys = app.cp.gateway.keys().clone();
    let now = now_ms();
    let old =
        Principal { kind: PrincipalKind::Developer, name: "admin".into(), role: Role::Admin, team: None };
    let old = keys.create("admin (first start)".into(), old, vec![], None, now).await.unwrap();
    app.keys.insert("bootstrap", old.secret.clone());
    assert_eq!(chat(&app, "bootstrap", "mock-1", "hello").await, StatusCode::OK);
    ledger_rows(&app, 1).await;
    // The next start moves it, with its ledger rows, to the bootstrap identity.
    let preset = "tg-preset-bootstrap-admin-key-0001";
    assert_eq!(keys.ensure_admin(Some(preset), now_ms()).await.unwrap(), None);
    let (_, me) = call_with(&app, &old.secret, "GET", "/api/v1/whoami").await;
    assert_eq!(me["principal"]["name"], tollgate_dataplane::auth::BOOTSTRAP_ADMIN);
    let (_, me) = call_with(&app, preset, "GET", "/api/v1/whoami").await;
    assert_eq!(
        (me["principal"]["name"].as_str(), me["principal"]["role"].as_str()),
        (Some("tollgate:admin"), Some("admin"))
    );
    // A developer called `admin` is someone else.
    let (_, dev) = issue(&app, "admin", None).await;
    let (s, v) = call_with(&app, &dev, "GET", "/api/v1/keys").await;
    assert_eq!(s, StatusCode::OK);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "only their own key: {v}");
    assert_eq!(items[0]["principal"]["role"], "developer");
    let (_, v) = call_with(&app, &dev, "GET", "/api/v1/keys?mine=true").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    let (s, v) = call_with(&app, &dev, "GET", "/api/v1/usage/requests").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["items"], json!([]), "the admin's requests are not theirs: {v}");
    let (s, _) =
        call_with(&app, &dev, "GET", "/api/v1/usage/requests?principal=developer/tollgate:admin").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The admin still sees its own request under its own identity.
    let (_, v) = call(&app, Some("bootstrap"), "GET", "/api/v1/usage/requests", None).await;
    assert!(v["items"].as_array().unwrap().iter().any(|r| r["principalName"] == "tollgate:admin"), "{v}");
}));

both!(the_last_admin_key_stays_and_the_preset_key_always_gets_back_in, |app| Box::pin(async move {
    // `admin` (root) is the only working admin key (rita's are revoked and expired).
    let (_, me) = call(&app, Some("admin"), "GET", "/api/v1/whoami", None).await;
    let root_id = me["keyId"].as_str().unwrap().to_owned();
    let (s, v) = call(&app, Some("admin"), "DELETE", &format!("/api/v1/keys/{root_id}"), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("last_admin_key")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("tollgate admin recover"), "{v}");
    assert_eq!(call(&app, Some("admin"), "GET", "/api/v1/users", None).await.0, StatusCode::OK);
    // Nor may the directory demote or delete the last admin.
    let (s, v) = call(&app, Some("admin"), "POST", "/api/v1/users", Some(json!({"name": "root"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("last_admin_key")), "{v}");
    let (s, _) =
        call(&app, Some("admin"), "POST", "/api/v1/users", Some(json!({"name": "root", "role": "admin"})))
            .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(&app, Some("admin"), "DELETE", "/api/v1/users/root", None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // With the preset key registered, root may go; the preset key then may not.
    let keys = app.cp.gateway.keys();
    let preset = "tg-preset-admin-key-for-recovery-01";
    keys.ensure_admin(Some(preset), now_ms()).await.unwrap();
    let (s, _) = call(&app, Some("admin"), "DELETE", &format!("/api/v1/keys/{root_id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, me) = call_with(&app, preset, "GET", "/api/v1/whoami").await;
    let preset_id = me["keyId"].as_str().unwrap().to_owned();
    let (s, _) = call_with(&app, preset, "DELETE", &format!("/api/v1/keys/{preset_id}")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Revoked anyway (another admin, since gone): a start with the same key restores it.
    let (_, other) = issue_as(&app, preset, "ops", "admin").await;
    assert_eq!(
        call_with(&app, &other, "DELETE", &format!("/api/v1/keys/{preset_id}")).await.0,
        StatusCode::OK
    );
    assert_eq!(call_with(&app, preset, "GET", "/api/v1/whoami").await.0, StatusCode::UNAUTHORIZED);
    keys.ensure_admin(Some(preset), now_ms()).await.unwrap();
    let (s, me) = call_with(&app, preset, "GET", "/api/v1/whoami").await;
    assert_eq!((s, me["principal"]["role"].as_str()), (StatusCode::OK, Some("admin")), "{me}");
    // And `tollgate admin recover`'s way: a new bootstrap admin key, straight from the database.
    let recovered = keys.recover_admin(now_ms()).await.unwrap();
    let (s, me) = call_with(&app, &recovered.secret, "GET", "/api/v1/whoami").await;
    assert_eq!((s, me["principal"]["name"].as_str()), (StatusCode::OK, Some("tollgate:admin")));
}));

/// Issues an admin key for `name` with the key `secret`.
async fn issue_as(app: &App, secret: &str, name: &str, role: &str) -> (String, String) {
    let req = Request::post("/api/v1/keys")
        .header("authorization", format!("Bearer {secret}"))
        .header("content-type", "application/json")
        .body(Body::from(key_body(name, Some(role), None).to_string()))
        .unwrap();
    let response = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let v: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    (v["record"]["id"].as_str().unwrap().to_owned(), v["key"].as_str().unwrap().to_owned())
}

both!(key_rotation_issues_a_new_key_and_revokes_the_old, |app| Box::pin(async move {
    let (s, v) = call(
        &app,
        Some("admin"),
        "POST",
        "/api/v1/keys",
        Some(json!({"principal": {"kind": "developer", "name": "zoe"}, "models": ["mock-1"], "rpm": 5})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (old_id, old_key) =
        (v["record"]["id"].as_str().unwrap().to_owned(), v["key"].as_str().unwrap().to_owned());
    let (s, v) = call(&app, Some("admin"), "POST", &format!("/api/v1/keys/{old_id}/rotate"), None).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        (v["record"]["allowedModels"].clone(), v["record"]["rpm"].clone()),
        (json!(["mock-1"]), json!(5))
    );
    let new_key = v["key"].as_str().unwrap();
    assert_ne!(new_key, old_key);
    let whoami = |k: &str| {
        Request::get("/api/v1/whoami")
            .header("authorization", format!("Bearer {k}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        app.router.clone().oneshot(whoami(&old_key)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.router.clone().oneshot(whoami(new_key)).await.unwrap().status(), StatusCode::OK);
    let (s, _) = call(&app, Some("admin"), "POST", &format!("/api/v1/keys/{old_id}/rotate"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a revoked key cannot be rotated");
}));

both!(deep_yaml_is_refused_fast_without_stalling_others, |app| Box::pin(async move {
    let post = |body: String| {
        Request::post("/api/v1/resources/budgets")
            .header("authorization", format!("Bearer {}", app.keys["admin"]))
            .header("content-type", "application/yaml")
            .body(Body::from(body))
            .unwrap()
    };
    // 200 KB of nesting: libyaml took 27 s of CPU on this, holding an async worker.
    let head = "apiVersion: tollgate.dev/v1alpha1\nkind: Budget\nmetadata: {name: deep}\nspec: ";
    let attacks = [
        "[".repeat(200_000),
        format!("{head}{}", "{a: ".repeat(50_000)),
        format!("{head}\n  subject: {}", "[x, ".repeat(50_000)),
    ];
    let started = std::time::Instant::now();
    let mut running = Vec::new();
    for attack in attacks.iter().cycle().take(6) {
        let router = app.router.clone();
        let request = post(attack.clone());
        running.push(tokio::spawn(async move { router.oneshot(request).await.unwrap() }));
    }
    // Meanwhile other callers are answered.
    let (s, _) = call(&app, Some("developer"), "GET", "/api/v1/whoami", None).await;
    assert_eq!(s, StatusCode::OK);
    for r in running {
        let response = r.await.unwrap();
        let status = response.status();
        let v: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(
            (v["error"]["code"].as_str(), v["error"]["param"].as_str()),
            (Some("too_deep"), Some("."))
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains("nesting deeper than 64 levels at line"),
            "{v}"
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    // Bigger than the body limit: 413 in the API's format.
    let response = app.router.clone().oneshot(post("[".repeat(300_000))).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // An ordinary YAML document is still taken.
    let budget = format!(
        "{head}\n  subject: {{kind: team, name: deep}}\n  limit: \"5\"\n  period: daily\n  allowedModels: [mock-1]\n"
    );
    let response = app.router.clone().oneshot(post(budget)).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}));

both!(safety_check_tries_only_the_callers_own_policies, |app| Box::pin(async move {
    let policy = |name: &str, subjects: Value| {
        json!({"apiVersion": "tollgate.dev/v1alpha1", "kind": "SafetyPolicy", "metadata": {"name": name},
            "spec": {"selector": {"subjects": subjects},
                     "input": {"detectors": [{"id": "pii.email", "action": "block"}]}}})
    };
    for (name, subjects) in [
        ("platform-only", json!([{"kind": "team", "name": "platform"}])),
        ("bob-only", json!([{"kind": "developer", "name": "bob"}])),
        ("everyone", json!([])),
    ] {
        let (s, v) = call(
            &app,
            Some("admin"),
            "POST",
            "/api/v1/resources/safetypolicies",
            Some(policy(name, subjects)),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let check = |who: &'static str, policy: &'static str| {
        let app = &app;
        async move {
            call(
                app,
                Some(who),
                "POST",
                "/api/v1/safety/check",
                Some(json!({"policy": policy, "text": "mail jo@example.com"})),
            )
            .await
        }
    };
    let (_, missing) = check("developer", "no-such-policy").await;
    let hidden = |v: &Value, id: &str| {
        // Exactly the answer for a policy that does not exist, but for the name asked.
        let mut expected = missing.clone();
        expected["error"]["message"] = json!(format!("no SafetyPolicy \"default/{id}\""));
        assert_eq!(v, &expected);
    };
    for (who, policy, applies) in [
        ("developer", "platform-only", true), // alice's key is in team platform
        ("developer", "bob-only", false),
        ("developer", "everyone", true),
        ("agent", "platform-only", true),
        ("agent", "bob-only", false),
        ("other", "bob-only", true),
        ("other", "platform-only", false),
        ("superuser", "platform-only", false), // owning a budget is not being the team
        ("superuser", "everyone", true),
        ("admin", "platform-only", true),
        ("admin", "bob-only", true),
    ] {
        let (s, v) = check(who, policy).await;
        if applies {
            assert_eq!((s, v["outcome"].as_str()), (StatusCode::OK, Some("block")), "{who} {policy}: {v}");
        } else {
            assert_eq!(s, StatusCode::NOT_FOUND, "{who} {policy}: {v}");
            hidden(&v, policy);
        }
    }
    // A team membership in the directory counts like the key's team.
    let (s, _) = call(&app, Some("admin"), "POST", "/api/v1/users", Some(json!({"name": "bob"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(&app, Some("admin"), "POST", "/api/v1/teams", Some(json!({"name": "platform"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(&app, Some("admin"), "PUT", "/api/v1/teams/platform/members/bob", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = check("other", "platform-only").await;
    assert_eq!(s, StatusCode::OK, "{v}");
}));

both!(superuser_unfiltered_usage_covers_every_owned_budget, |app| Box::pin(async move {
    // alice and the agent bot charge team platform (sam owns its budget); bob does not.
    for (who, n) in [("developer", 2), ("agent", 3), ("other", 4)] {
        for _ in 0..n {
            assert_eq!(chat(&app, who, "mock-1", "hello").await, StatusCode::OK);
        }
    }
    ledger_rows(&app, 9).await;
    let (s, v) = call(&app, Some("admin"), "POST", "/api/v1/scheduler/jobs/usage-rollups/run", None).await;
    assert_eq!((s, v["ok"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    let (s, v) = call(&app, Some("superuser"), "GET", "/api/v1/usage?by=principal", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["total"]["requests"].as_i64(), Some(5), "alice's and bot's, never bob's: {v}");
    let by: BTreeMap<String, i64> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["key"].as_str().unwrap().to_owned(), g["requests"].as_i64().unwrap()))
        .collect();
    assert_eq!(by, BTreeMap::from([("agent/bot".into(), 3), ("developer/alice".into(), 2)]));
    // Filtered the same way, and others unchanged.
    let (_, v) = call(&app, Some("superuser"), "GET", "/api/v1/usage?team=platform", None).await;
    assert_eq!(v["total"]["requests"].as_i64(), Some(5), "{v}");
    let (_, v) = call(&app, Some("other"), "GET", "/api/v1/usage", None).await;
    assert_eq!(v["total"]["requests"].as_i64(), Some(4), "{v}");
    let (_, v) = call(&app, Some("admin"), "GET", "/api/v1/usage", None).await;
    assert_eq!(v["total"]["requests"].as_i64(), Some(9), "{v}");
}));

both!(errors_keep_the_api_format_and_the_documented_statuses, |app| Box::pin(async move {
    // A method a path does not serve: 405 with the JSON error body and an Allow header.
    let req = Request::patch("/api/v1/keys")
        .header("authorization", format!("Bearer {}", app.keys["admin"]))
        .body(Body::empty())
        .unwrap();
    let response = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let v: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
    assert!(v["error"]["message"].is_string() && v["error"]["type"].is_string(), "{v}");
    // `limit` is 1-500 as the schema says, on every list that takes it.
    let lists = [
        "/api/v1/keys",
        "/api/v1/resources",
        "/api/v1/resources/budgets",
        "/api/v1/users",
        "/api/v1/teams",
        "/api/v1/audit",
        "/api/v1/usage/requests",
        "/api/v1/safety/violations",
    ];
    for path in lists {
        for bad in ["0", "501", "-1"] {
            let (s, v) = call(&app, Some("admin"), "GET", &format!("{path}?limit={bad}"), None).await;
            assert_eq!(
                (s, v["error"]["param"].as_str()),
                (StatusCode::BAD_REQUEST, Some("limit")),
                "{path} {v}"
            );
        }
        let (s, v) = call(&app, Some("admin"), "GET", &format!("{path}?limit=1"), None).await;
        assert_eq!(s, StatusCode::OK, "{path} {v}");
    }
    // Bodies are JSON objects: an array is not a set of preferences.
    for body in [json!([]), json!(["mock-1"]), json!("mock-1"), json!(null)] {
        let (s, v) = call(&app, Some("developer"), "PUT", "/api/v1/me/preferences", Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    let (s, _) = call(&app, Some("admin"), "POST", "/api/v1/teams", Some(json!([{"name": "x"}]))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The safety check's 404 is in the document.
    let (s, _) = call(
        &app,
        Some("admin"),
        "POST",
        "/api/v1/safety/check",
        Some(json!({"policy": "nothing-here", "text": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let doc = tollgate_operator::api::openapi::document();
    assert!(doc["paths"]["/api/v1/safety/check"]["post"]["responses"]["404"].is_object());
}));

#[test]
fn openapi_document_is_committed_and_current() {
    let doc = tollgate_operator::api::openapi::document();
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    if std::env::var_os("TOLLGATE_UPDATE_GENERATED").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "operator/openapi.json is stale: TOLLGATE_UPDATE_GENERATED=1 cargo test -p tollgate-operator --test api"
    );
    // Every route is in it, with its security.
    for r in ROUTES {
        let op = &doc["paths"][r.path][r.method.to_ascii_lowercase()];
        assert!(op.is_object(), "{} {} missing", r.method, r.path);
        assert_eq!(op["security"].as_array().unwrap().is_empty(), r.access == Access::Public);
    }
}

#[tokio::test]
async fn openapi_is_served_without_a_key() {
    let app = app(false).await;
    let (s, v) = call(&app, None, "GET", "/api/v1/openapi.json", None).await;
    assert_eq!((s, v["openapi"].as_str()), (StatusCode::OK, Some("3.0.3")));
    let _ = Arc::new(()); // keep the Arc import used in both modes
}
