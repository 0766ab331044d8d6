//! Agent → ServiceAccount, virtual-key Secret, Deployment, HPA, NetworkPolicy; status.
//!
//! The virtual key is issued here (an `agent` principal named after the Agent, in the
//! database the gateways authenticate against) and kept in the Secret from then on: a
//! reconcile reuses the Secret's key while the database still knows it, and issues a new
//! one (revoking strays of the same Agent) only when the Secret is gone or the key was
//! revoked. The key is external state, so this is the one controller with a finalizer:
//! deleting an Agent revokes its keys before the Agent disappears.
//!
//! A budget with `onExhausted: suspend-agents` that is exhausted (its status says
//! `BudgetExhausted`) scales the agent to zero; Budget changes trigger the agents that
//! name them, and the reconcile comes back at the budget's period end.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::{Resource, ResourceExt};
use kube_client::api::Api;
use kube_runtime::controller::{Action, Controller};
use kube_runtime::finalizer::{Event as Finalizer, finalizer};
use kube_runtime::reflector::ObjectRef;
use kube_runtime::watcher;
use tollgate_crds::agent::AgentStatus;
use tollgate_crds::safety::SafetyPolicy;
use tollgate_crds::status::{
    ACCEPTED, ConditionStatus, PROGRAMMED, READY, find_condition, reason, set_condition, set_refused,
};
use tollgate_crds::{Agent, Budget};
use tollgate_dataplane::auth::{Principal, PrincipalKind, Role, hash_key};

use super::{
    Context, apply, drain, field_manager, measured, now_ms, prune, read_secret, requeue_on_error,
    update_status,
};
use crate::controllers::agent::{API_KEY_SECRET_KEY, AgentInputs, desired, key_secret_name};
use crate::controllers::{Component, Owner};
use crate::error::{Error, Result};

/// The controller's name.
pub const CONTROLLER: &str = "agent";
/// The finalizer that revokes an Agent's virtual keys.
pub const FINALIZER: &str = "tollgate.dev/virtual-key";
/// How often a settled Agent is looked at again without any change.
const RESYNC: Duration = Duration::from_secs(300);

/// The name of an agent's virtual keys in the key store (what the admin API lists).
pub fn key_name(namespace: &str, agent: &str) -> String {
    format!("agent:{namespace}/{agent}")
}

/// The agent's key: the one in its Secret while the database knows it, it is not revoked
/// and it allows the models the Agent lists; a new one otherwise (the pods roll onto it:
/// the key's hash is part of the pod template's config hash).
async fn virtual_key(ctx: &Context, owner: &Owner, agent: &Agent) -> Result<(String, bool)> {
    let (Some(keys), Some(store)) = (&ctx.keys, &ctx.ledger) else { return Err(Error::NoDatabase) };
    let existing = read_secret(&ctx.client, &owner.namespace, &key_secret_name(&owner.name))
        .await?
        .and_then(|d| d.get(API_KEY_SECRET_KEY).cloned())
        .and_then(|v| String::from_utf8(v).ok());
    if let Some(secret) = existing
        && let Some(record) = store.find_key_by_hash(&hash_key(&secret)).await?
        && record.revoked_at_ms.is_none()
        // A key's allowed models are fixed when it is issued: a changed list needs a new key.
        && record.allowed_models == agent.spec.allowed_models
    {
        return Ok((secret, false));
    }
    let name = key_name(&owner.namespace, &owner.name);
    let now = now_ms();
    // Keys of this Agent nobody holds any more (a deleted Secret, a half-done reconcile).
    for stray in keys.list().await?.into_iter().filter(|k| k.name == name && k.revoked_at_ms.is_none()) {
        keys.revoke(&stray.id, now).await?;
    }
    let principal =
        Principal { kind: PrincipalKind::Agent, name: owner.name.clone(), role: Role::Developer, team: None };
    let issued = keys.create(name, principal, agent.spec.allowed_models.clone(), None, now).await?;
    tracing::info!(key_id = %issued.record.id, prefix = %issued.record.display_prefix, "virtual key issued");
    Ok((issued.secret, true))
}

/// Whether the agent's budget suspends it, and until when (RFC 3339).
struct Suspension {
    suspended: bool,
    until: Option<String>,
}

async fn references(ctx: &Context, agent: &Agent, ns: &str) -> Result<(Vec<String>, Suspension)> {
    let mut missing = Vec::new();
    let mut suspension = Suspension { suspended: false, until: None };
    if let Some(r) = &agent.spec.budget_ref {
        match Api::<Budget>::namespaced(ctx.client.clone(), ns).get_opt(&r.name).await? {
            None => missing.push(format!("Budget {ns}/{}", r.name)),
            Some(budget) => {
                let status = budget.status.unwrap_or_default();
                let exhausted = find_condition(&status.conditions, READY)
                    .is_some_and(|c| c.status == "False" && c.reason == reason::BUDGET_EXHAUSTED);
                if exhausted && budget.spec.on_exhausted.trim() == "suspend-agents" {
                    suspension = Suspension { suspended: true, until: status.period_end };
                }
            }
        }
    }
    if let Some(r) = &agent.spec.safety_policy_ref
        && Api::<SafetyPolicy>::namespaced(ctx.client.clone(), ns).get_opt(&r.name).await?.is_none()
    {
        missing.push(format!("SafetyPolicy {ns}/{}", r.name));
    }
    Ok((missing, suspension))
}

async fn apply_agent(agent: Arc<Agent>, ctx: Arc<Context>) -> Result<Action> {
    let manager = field_manager(CONTROLLER);
    let owner = Owner::of(&*agent)?;
    let generation = agent.meta().generation;
    let now = super::now();
    let before = agent.status.clone().unwrap_or_default();
    let mut status = AgentStatus { conditions: before.conditions.clone(), ..AgentStatus::default() };

    let (missing, suspension) = references(&ctx, &agent, &owner.namespace).await?;
    if missing.is_empty() {
        set_condition(
            &mut status.conditions,
            ACCEPTED,
            ConditionStatus::True,
            reason::ACCEPTED,
            "",
            generation,
            &now,
        );
    } else {
        let message = format!("{} not found; deployed without it", missing.join(", "));
        set_condition(
            &mut status.conditions,
            ACCEPTED,
            ConditionStatus::False,
            reason::REFERENCE_NOT_FOUND,
            &message,
            generation,
            &now,
        );
    }

    let (key, issued) = virtual_key(&ctx, &owner, &agent).await?;
    let inputs = AgentInputs { virtual_key: &key, suspended: suspension.suspended };
    let mut requeue = RESYNC;
    match desired(&agent, &inputs) {
        Ok(children) => {
            apply(&ctx.client, &manager, &children.service_account).await?;
            apply(&ctx.client, &manager, &children.key_secret).await?;
            let deployment = apply(&ctx.client, &manager, &children.deployment).await?;
            match &children.hpa {
                Some(hpa) => {
                    apply(&ctx.client, &manager, hpa).await?;
                }
                None => {
                    prune::<HorizontalPodAutoscaler>(&ctx.client, &owner, Component::Agent, &[]).await?;
                }
            }
            apply(&ctx.client, &manager, &children.network_policy).await?;
            set_condition(
                &mut status.conditions,
                PROGRAMMED,
                ConditionStatus::True,
                reason::PROGRAMMED,
                "",
                generation,
                &now,
            );
            let ready = deployment.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
            status.ready_replicas = Some(ready);
            let want = agent.spec.replicas.min.max(1);
            let (ok, why, message) = if suspension.suspended {
                let until = suspension.until.as_deref().map_or(String::new(), |u| format!(" until {u}"));
                (false, reason::SUSPENDED, format!("budget exhausted: scaled to zero{until}"))
            } else if ready >= want {
                (true, reason::READY, format!("{ready} pod(s) ready"))
            } else {
                (false, reason::PENDING, format!("{ready} of {want} pod(s) ready"))
            };
            set_condition(&mut status.conditions, READY, ok.into(), why, &message, generation, &now);
            if let Some(end) =
                suspension.until.as_deref().and_then(|u| chrono::DateTime::parse_from_rfc3339(u).ok())
            {
                let left = end.timestamp_millis().saturating_sub(now_ms());
                requeue = requeue
                    .min(Duration::from_millis(u64::try_from(left).unwrap_or(0)) + Duration::from_secs(1));
            }
        }
        Err(e) => {
            set_refused(
                &mut status.conditions,
                e.reason(),
                &e.to_string(),
                &[PROGRAMMED, READY],
                "not deployed",
                generation,
                &now,
            );
        }
    }
    status.observed_generation = generation;
    status.key_secret_name = Some(key_secret_name(&owner.name));
    status.suspended = Some(suspension.suspended);
    update_status(&ctx, &manager, &*agent, &before, &status).await?;
    if issued {
        let note = format!("virtual key issued into Secret {}", key_secret_name(&owner.name));
        ctx.event(&agent.object_ref(&()), false, "VirtualKeyIssued", "Issue", note).await;
    }
    Ok(Action::requeue(requeue))
}

/// Revokes every key of the agent. Runs before Kubernetes deletes the Agent (and with it,
/// through owner references, its Secret and pods).
async fn cleanup(agent: Arc<Agent>, ctx: Arc<Context>) -> Result<Action> {
    let Some(keys) = &ctx.keys else { return Err(Error::NoDatabase) };
    let name = key_name(&agent.namespace().unwrap_or_default(), &agent.name_any());
    let now = now_ms();
    let mut revoked = 0;
    for key in keys.list().await?.into_iter().filter(|k| k.name == name && k.revoked_at_ms.is_none()) {
        keys.revoke(&key.id, now).await?;
        revoked += 1;
    }
    tracing::info!(revoked, "agent deleted: virtual keys revoked");
    let note = format!("{revoked} virtual key(s) revoked");
    ctx.event(&agent.object_ref(&()), false, "VirtualKeyRevoked", "Revoke", note).await;
    Ok(Action::await_change())
}

/// Reconciles one Agent (through the finalizer: apply, or clean up on deletion).
#[tracing::instrument(skip_all, fields(agent = %agent.name_any(), namespace = agent.namespace().unwrap_or_default()))]
pub async fn reconcile(agent: Arc<Agent>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<Agent> = Api::namespaced(ctx.client.clone(), &agent.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, agent, |event| async {
        match event {
            Finalizer::Apply(a) => apply_agent(a, ctx.clone()).await,
            Finalizer::Cleanup(a) => cleanup(a, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Runs the controller: on Agent changes, its Deployments' changes, and changes to the
/// Budgets agents name.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/name={}", Component::Agent.app_name()));
    let controller = Controller::new(Api::<Agent>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Deployment>::all(client.clone()), owned);
    let agents = controller.store();
    let controller =
        controller.watches(Api::<Budget>::all(client), watcher::Config::default(), move |budget| {
            let (ns, name) = (budget.namespace(), budget.name_any());
            agents
                .state()
                .into_iter()
                .filter(|a| a.namespace() == ns && a.spec.budget_ref.as_ref().is_some_and(|r| r.name == name))
                .map(|a| ObjectRef::from_obj(&*a))
                .collect::<Vec<_>>()
        });
    let stream = controller.run(
        |a, ctx| async move {
            let c = ctx.clone();
            measured(CONTROLLER, &c, reconcile(a, ctx)).await
        },
        |_a, e: &Error, ctx| requeue_on_error(CONTROLLER, &ctx, e),
        ctx,
    );
    drain(CONTROLLER, stream).await;
}
