//! Who may call what. Every endpoint is declared once in [`ROUTES`] with its access level;
//! the router is built from the same table ([`super::router`]) and [`enforce`] checks the
//! caller's key and role before any handler runs, so an endpoint cannot exist without an
//! access rule. Handlers then narrow what they return to what the caller may see
//! ([`Caller::may_see_principal`], budget ownership).
//!
//! Roles: `admin` does everything; `superuser` reads the budgets they own (and the usage and
//! keys under them); `developer` reads their own usage, keys and budgets and sets their own
//! preferences.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tollgate_crds::Resource;
use tollgate_crds::budget::{OwnerKind, SubjectKind};
use tollgate_dataplane::auth::{KeyRecord, PrincipalKind, Role};
use tollgate_dataplane::{ApiError, ApiFormat, now_ms};

use super::ControlPlane;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no key (the OpenAPI document).
    Public,
    /// Any valid key; the handler shows only what the caller may see.
    Any,
    /// Admin keys only.
    Admin,
}

/// One endpoint.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// axum path pattern (`/api/v1/keys/{id}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    /// OpenAPI tag.
    pub tag: &'static str,
    /// The success response's schema.
    pub response: super::SchemaFn,
    /// Error statuses beyond those every route of its kind answers (a 404 on a path with no
    /// parameters, say), so the OpenAPI document lists every answer.
    pub also: &'static [u16],
}

/// Principals (`kind`, `name`) and teams a caller may see the usage and keys of.
pub type VisibleSubjects = (BTreeSet<(String, String)>, BTreeSet<String>);

/// The authenticated caller, with what their role lets them see.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Their key.
    pub key: Arc<KeyRecord>,
    /// Teams they belong to (the key's team and the directory's memberships).
    pub teams: BTreeSet<String>,
}

impl Caller {
    /// The caller's role.
    pub fn role(&self) -> Role {
        self.key.principal.role
    }

    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.role() == Role::Admin
    }

    /// `kind/name (key id)` for the audit log.
    pub fn actor(&self) -> String {
        let p = &self.key.principal;
        format!("{}/{} (key {})", p.kind.as_str(), p.name, self.key.id)
    }

    /// Whether the caller owns `budget` (superusers: named as an owner, or a member of an
    /// owning team).
    pub fn owns(&self, budget: &tollgate_crds::Budget) -> bool {
        let p = &self.key.principal;
        budget.spec.owners.iter().any(|o| match o.kind {
            OwnerKind::Developer => p.kind == PrincipalKind::Developer && o.name == p.name,
            OwnerKind::Team => self.teams.contains(&o.name),
        })
    }

    /// The budgets (`namespace/name`) the caller may see, given every Budget resource: all
    /// for admins; for others their own and their teams' budgets, and for superusers the
    /// budgets they own with every budget below them.
    pub fn visible_budgets(&self, resources: &[Resource]) -> BTreeSet<String> {
        let budgets: Vec<&tollgate_crds::Budget> = resources
            .iter()
            .filter_map(|r| match r {
                Resource::Budget(b) => Some(b),
                _ => None,
            })
            .collect();
        let id = |b: &tollgate_crds::Budget| {
            format!(
                "{}/{}",
                b.metadata.namespace.as_deref().unwrap_or("default"),
                b.metadata.name.as_deref().unwrap_or_default()
            )
        };
        if self.is_admin() {
            return budgets.iter().map(|b| id(b)).collect();
        }
        let p = &self.key.principal;
        let own_kind = match p.kind {
            PrincipalKind::Developer => SubjectKind::Developer,
            PrincipalKind::Team => SubjectKind::Team,
            PrincipalKind::Agent => SubjectKind::Agent,
        };
        let mut visible: BTreeSet<String> = budgets
            .iter()
            .filter(|b| {
                let s = &b.spec.subject;
                (s.kind == own_kind && s.name == p.name)
                    || (s.kind == SubjectKind::Team && self.teams.contains(&s.name))
            })
            .map(|b| id(b))
            .collect();
        if self.role() == Role::Superuser {
            let mut owned: BTreeSet<String> =
                budgets.iter().filter(|b| self.owns(b)).map(|b| id(b)).collect();
            // Budgets below an owned one (parent chains stay within a namespace).
            loop {
                let before = owned.len();
                for b in &budgets {
                    let ns = b.metadata.namespace.as_deref().unwrap_or("default");
                    if let Some(parent) = &b.spec.parent
                        && owned.contains(&format!("{ns}/{parent}"))
                    {
                        owned.insert(id(b));
                    }
                }
                if owned.len() == before {
                    break;
                }
            }
            visible.extend(owned);
        }
        visible
    }

    /// The principals (`kind`, `name`) and teams whose usage and keys the caller may see;
    /// `None` means everything (admins).
    pub fn visible_subjects(&self, resources: &[Resource]) -> Option<VisibleSubjects> {
        if self.is_admin() {
            return None;
        }
        let p = &self.key.principal;
        let mut principals = BTreeSet::from([(p.kind.as_str().to_owned(), p.name.clone())]);
        let mut teams = BTreeSet::new();
        if self.role() == Role::Superuser {
            let visible = self.visible_budgets(resources);
            for r in resources {
                let Resource::Budget(b) = r else { continue };
                let id = format!(
                    "{}/{}",
                    b.metadata.namespace.as_deref().unwrap_or("default"),
                    b.metadata.name.as_deref().unwrap_or_default()
                );
                if !visible.contains(&id) {
                    continue;
                }
                let s = &b.spec.subject;
                match s.kind {
                    SubjectKind::Developer => {
                        principals.insert(("developer".to_owned(), s.name.clone()));
                    }
                    SubjectKind::Agent => {
                        principals.insert(("agent".to_owned(), s.name.clone()));
                    }
                    SubjectKind::Team => {
                        principals.insert(("team".to_owned(), s.name.clone()));
                        teams.insert(s.name.clone());
                    }
                    SubjectKind::Namespace => {}
                }
            }
        }
        Some((principals, teams))
    }

    /// Whether the caller may see the usage and keys of a principal (in `team`).
    pub fn may_see_principal(
        &self,
        resources: &[Resource],
        kind: &str,
        name: &str,
        team: Option<&str>,
    ) -> bool {
        match self.visible_subjects(resources) {
            None => true,
            Some((principals, teams)) => {
                principals.contains(&(kind.to_owned(), name.to_owned()))
                    || team.is_some_and(|t| teams.contains(t))
            }
        }
    }
}

/// The access rule of a matched route.
pub fn access_of(method: &str, path: &str) -> Option<Access> {
    super::ROUTES.iter().find(|r| r.method == method && r.path == path).map(|r| r.access)
}

/// Authenticates and authorizes before the handler runs; puts the [`Caller`] into the
/// request's extensions.
pub async fn enforce(State(cp): State<Arc<ControlPlane>>, mut request: Request, next: Next) -> Response {
    let Some(path) = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()) else {
        return next.run(request).await;
    };
    let method = request.method().as_str().to_owned();
    // NB: HEAD is answered by GET handlers; it needs the same rule.
    let method = if method == "HEAD" { "GET".to_owned() } else { method };
    let access = access_of(&method, &path).unwrap_or(Access::Admin);
    if access == Access::Public {
        return next.run(request).await;
    }
    let key = match cp.gateway.keys().authenticate(request.headers(), now_ms()).await {
        Ok(k) => k,
        Err(e) => return e.into_response(ApiFormat::OpenAi),
    };
    if access == Access::Admin && key.principal.role != Role::Admin {
        return ApiError::forbidden("admin_required", "this action needs the admin role")
            .into_response(ApiFormat::OpenAi);
    }
    let mut teams: BTreeSet<String> = key.principal.team.iter().cloned().collect();
    if key.principal.kind == PrincipalKind::Developer {
        match cp.sql.teams_of(&key.principal.name).await {
            Ok(t) => teams.extend(t),
            Err(e) => {
                tracing::error!(error = %e, "cannot read team memberships");
                return ApiError::unavailable(
                    "storage_unavailable",
                    "the database is unavailable; retry shortly",
                )
                .into_response(ApiFormat::OpenAi);
            }
        }
    }
    request.extensions_mut().insert(Caller { key, teams });
    next.run(request).await
}
