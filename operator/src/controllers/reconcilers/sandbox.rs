//! Sandbox → its NetworkPolicy and Pod; status (phase, start and finish time, exit code)
//! from the pod; the Sandbox deleted `ttlSecondsAfterFinished` after it finished.
//!
//! The NetworkPolicy is applied before the Pod, so the code never runs unisolated. A
//! finished run is never applied again: were its pod evicted or deleted, re-applying would
//! start the code a second time.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{Resource, ResourceExt};
use kube_client::api::{Api, DeleteParams};
use kube_runtime::controller::{Action, Controller};
use kube_runtime::watcher;
use tollgate_crds::Sandbox;
use tollgate_crds::sandbox::SandboxPhase;
use tollgate_crds::status::{
    ACCEPTED, ConditionStatus, PROGRAMMED, READY, reason, set_condition, set_refused,
};

use super::{Context, apply, drain, field_manager, measured, requeue_on_error, update_status};
use crate::controllers::Component;
use crate::controllers::sandbox::{delete_at, desired, observe};
use crate::error::{Error, Result};

/// The controller's name.
pub const CONTROLLER: &str = "sandbox";
/// How often a running Sandbox is looked at again without any change.
const RESYNC: Duration = Duration::from_secs(300);

fn finished(phase: Option<&SandboxPhase>) -> bool {
    matches!(phase, Some(SandboxPhase::Succeeded | SandboxPhase::Failed))
}

/// Reconciles one Sandbox.
#[tracing::instrument(skip_all, fields(sandbox = %sandbox.name_any(), namespace = sandbox.namespace().unwrap_or_default()))]
pub async fn reconcile(sandbox: Arc<Sandbox>, ctx: Arc<Context>) -> Result<Action> {
    let manager = field_manager(CONTROLLER);
    let generation = sandbox.meta().generation;
    let now = super::now();
    let before = sandbox.status.clone().unwrap_or_default();
    let mut status = before.clone();

    if !finished(before.phase.as_ref()) {
        match desired(&sandbox) {
            Ok(children) => {
                apply(&ctx.client, &manager, &children.network_policy).await?;
                let pod = apply(&ctx.client, &manager, &children.pod).await?;
                let seen = observe(Some(&pod));
                status.phase = seen.phase;
                status.start_time = seen.start_time;
                status.finish_time = seen.finish_time;
                status.exit_code = seen.exit_code;
                status.pod_name = Some(pod.name_any());
                set_condition(
                    &mut status.conditions,
                    ACCEPTED,
                    ConditionStatus::True,
                    reason::ACCEPTED,
                    "",
                    generation,
                    &now,
                );
                set_condition(
                    &mut status.conditions,
                    PROGRAMMED,
                    ConditionStatus::True,
                    reason::PROGRAMMED,
                    "",
                    generation,
                    &now,
                );
                let done = seen.reason == reason::COMPLETED;
                set_condition(
                    &mut status.conditions,
                    READY,
                    done.into(),
                    seen.reason,
                    &seen.message,
                    generation,
                    &now,
                );
            }
            Err(e) => {
                set_refused(
                    &mut status.conditions,
                    e.reason(),
                    &e.to_string(),
                    &[READY],
                    "not started",
                    generation,
                    &now,
                );
            }
        }
    }
    status.observed_generation = generation;
    update_status(&ctx, &manager, &*sandbox, &before, &status).await?;

    let Some(at) = delete_at(&status, sandbox.spec.ttl_seconds_after_finished) else {
        return Ok(Action::requeue(RESYNC));
    };
    let left = at.0.duration_since(now.0);
    if left.is_positive() {
        let wait = Duration::try_from(left).unwrap_or(RESYNC);
        return Ok(Action::requeue(wait + Duration::from_secs(1)));
    }
    let api: Api<Sandbox> = Api::namespaced(ctx.client.clone(), &sandbox.namespace().unwrap_or_default());
    match api.delete(&sandbox.name_any(), &DeleteParams::background()).await {
        Ok(_) => tracing::info!("sandbox deleted after its TTL"),
        Err(kube_client::Error::Api(s)) if s.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// Runs the controller: on Sandbox changes and their pods' changes.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let owned = watcher::Config::default()
        .labels(&format!("app.kubernetes.io/name={}", Component::Sandbox.app_name()));
    let controller = Controller::new(Api::<Sandbox>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client), owned);
    let stream = controller.run(
        |s, ctx| async move {
            let c = ctx.clone();
            measured(CONTROLLER, &c, reconcile(s, ctx)).await
        },
        |_s, e: &Error, ctx| requeue_on_error(CONTROLLER, &ctx, e),
        ctx,
    );
    drain(CONTROLLER, stream).await;
}
