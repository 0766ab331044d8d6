//! Status of the resources that compile into the gateway configuration: IPToken and
//! SafetyPolicy. (Budget has its own controller: its status also carries money.)
//!
//! `Accepted` is decided per resource — an IP token's Secret and key exist, a policy's
//! patterns compile — plus whatever the last cluster-wide compile found wrong with it;
//! `Programmed` says whether it is in the published configuration; `Ready` is both. The
//! controllers run again whenever the published configuration changes.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{Resource, ResourceExt};
use kube_client::api::Api;
use kube_runtime::controller::{Action, Controller};
use kube_runtime::watcher;
use tollgate_crds::iptoken::IpTokenStatus;
use tollgate_crds::safety::{SafetyPolicy, SafetyPolicyStatus, compile_safety};
use tollgate_crds::status::{ACCEPTED, ConditionStatus, PROGRAMMED, READY, reason, set_condition};
use tollgate_crds::{IpToken, Resource as TollgateResource, compile};

use super::{
    Context, drain, field_manager, measured, on_change, read_secret, requeue_on_error, update_status,
};
use crate::controllers::configuration::{
    ConfigOutcome, Problem, compile_error_reason, ip_token_key, safety_policy_key,
};
use crate::controllers::gateway_config::{SecretData, resolve_provider_keys};
use crate::error::{Error, Result};

/// The IPToken controller's name.
pub const IP_TOKEN_CONTROLLER: &str = "iptoken";
/// The SafetyPolicy controller's name.
pub const SAFETY_POLICY_CONTROLLER: &str = "safetypolicy";

/// Sets `Accepted`, `Programmed` and `Ready` from the resource's own problems and the
/// published configuration.
pub fn set_resource_conditions(
    conditions: &mut Vec<Condition>,
    problems: &[Problem],
    outcome: &ConfigOutcome,
    key: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let accepted = match problems.first() {
        None => {
            set_condition(conditions, ACCEPTED, ConditionStatus::True, reason::ACCEPTED, "", generation, now);
            true
        }
        Some(first) => {
            let message: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
            set_condition(
                conditions,
                ACCEPTED,
                ConditionStatus::False,
                first.reason,
                &message.join("; "),
                generation,
                now,
            );
            false
        }
    };
    let (programmed, why, message) = outcome.programmed(key);
    set_condition(conditions, PROGRAMMED, programmed.into(), why, &message, generation, now);
    let (ready, why, message) = match (accepted, programmed, problems.first()) {
        (true, true, _) => (true, reason::READY, "in force on the gateways".to_owned()),
        (false, _, Some(first)) => {
            (false, first.reason, problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "))
        }
        _ => (false, why, message),
    };
    set_condition(conditions, READY, ready.into(), why, &message, generation, now);
}

/// Problems with one IP token's spec and its key; `secretHash` when the key exists.
async fn check_ip_token(ctx: &Context, token: &IpToken) -> Result<(Vec<Problem>, Option<String>)> {
    let config = match compile(&[TollgateResource::IpToken(token.clone())]) {
        Ok(config) => config,
        Err(errors) => {
            let problems = errors
                .into_iter()
                .map(|e| Problem {
                    reason: compile_error_reason(&e),
                    message: format!("{}: {}", e.path, e.message),
                })
                .collect();
            return Ok((problems, None));
        }
    };
    let Some(secret_ref) = &token.spec.secret_ref else { return Ok((Vec::new(), None)) };
    let namespace = token.namespace().unwrap_or_else(|| "default".to_owned());
    let mut secrets = SecretData::new();
    if let Some(data) = read_secret(&ctx.client, &namespace, &secret_ref.name).await? {
        secrets.insert((namespace, secret_ref.name.clone()), data);
    }
    let resolved = resolve_provider_keys(&config, &secrets);
    let problems =
        resolved.problems.into_iter().map(|p| Problem { reason: p.reason, message: p.message }).collect();
    Ok((problems, resolved.secret_hashes.into_values().next()))
}

/// Reconciles one IPToken's status.
#[tracing::instrument(skip_all, fields(iptoken = %token.name_any(), namespace = token.namespace().unwrap_or_default()))]
pub async fn reconcile_ip_token(token: Arc<IpToken>, ctx: Arc<Context>) -> Result<Action> {
    let key = ip_token_key(&token);
    let outcome = ctx.outcome.borrow().clone();
    let (mut problems, secret_hash) = check_ip_token(&ctx, &token).await?;
    if problems.is_empty() {
        // What only the whole cluster shows (two namespaces' Secrets of one name, ...).
        problems = outcome.problems.get(&key).cloned().unwrap_or_default();
    }
    let before = token.status.clone().unwrap_or_default();
    let generation = token.meta().generation;
    let mut status = IpTokenStatus { conditions: before.conditions.clone(), ..IpTokenStatus::default() };
    set_resource_conditions(&mut status.conditions, &problems, &outcome, &key, generation, &super::now());
    status.observed_generation = generation;
    status.secret_hash = secret_hash;
    let wrote = update_status(&ctx, &field_manager(IP_TOKEN_CONTROLLER), &*token, &before, &status).await?;
    if wrote
        && before.secret_hash.is_some()
        && status.secret_hash.is_some()
        && before.secret_hash != status.secret_hash
    {
        let note = "the provider key changed; gateways roll onto it one at a time".to_owned();
        ctx.event(&token.object_ref(&()), false, "SecretRotated", "Rotate", note).await;
    }
    Ok(Action::await_change())
}

/// Reconciles one SafetyPolicy's status.
#[tracing::instrument(skip_all, fields(safetypolicy = %policy.name_any(), namespace = policy.namespace().unwrap_or_default()))]
pub async fn reconcile_safety_policy(policy: Arc<SafetyPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let key = safety_policy_key(&policy);
    let outcome = ctx.outcome.borrow().clone();
    let mut problems: Vec<Problem> = match compile_safety(std::slice::from_ref(&*policy)) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| Problem {
                reason: compile_error_reason(&e),
                message: format!("{}: {}", e.path, e.message),
            })
            .collect(),
    };
    if problems.is_empty() {
        problems = outcome.problems.get(&key).cloned().unwrap_or_default();
    }
    let before = policy.status.clone().unwrap_or_default();
    let generation = policy.meta().generation;
    let mut status =
        SafetyPolicyStatus { conditions: before.conditions.clone(), ..SafetyPolicyStatus::default() };
    set_resource_conditions(&mut status.conditions, &problems, &outcome, &key, generation, &super::now());
    status.observed_generation = generation;
    update_status(&ctx, &field_manager(SAFETY_POLICY_CONTROLLER), &*policy, &before, &status).await?;
    Ok(Action::await_change())
}

/// Runs the IPToken controller: on IPToken changes, on changes to the Secrets they name,
/// and whenever the published configuration changes.
pub async fn run_ip_tokens(ctx: Arc<Context>) {
    let api = Api::<IpToken>::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default())
        .reconcile_all_on(on_change(ctx.outcome.subscribe()))
        .reconcile_all_on(on_change(ctx.changes.subscribe()));
    let stream = controller.run(
        |t, ctx| async move {
            let c = ctx.clone();
            measured(IP_TOKEN_CONTROLLER, &c, reconcile_ip_token(t, ctx)).await
        },
        |_t, e: &Error, ctx| requeue_on_error(IP_TOKEN_CONTROLLER, &ctx, e),
        ctx,
    );
    drain(IP_TOKEN_CONTROLLER, stream).await;
}

/// Runs the SafetyPolicy controller: on SafetyPolicy changes and whenever the published
/// configuration changes.
pub async fn run_safety_policies(ctx: Arc<Context>) {
    let api = Api::<SafetyPolicy>::all(ctx.client.clone());
    let controller =
        Controller::new(api, watcher::Config::default()).reconcile_all_on(on_change(ctx.outcome.subscribe()));
    let stream = controller.run(
        |p, ctx| async move {
            let c = ctx.clone();
            measured(SAFETY_POLICY_CONTROLLER, &c, reconcile_safety_policy(p, ctx)).await
        },
        |_p, e: &Error, ctx| requeue_on_error(SAFETY_POLICY_CONTROLLER, &ctx, e),
        ctx,
    );
    drain(SAFETY_POLICY_CONTROLLER, stream).await;
}
