//! DataPlane → its configuration (ConfigMap + provider-key Secret, compiled from every
//! IPToken, Budget and SafetyPolicy) and its gateway workload; status with
//! `observedGeneration`, `configHash` and `Accepted`/`Programmed`/`Ready`.
//!
//! Every DataPlane gets the same cluster-wide configuration. When it cannot be compiled the
//! ConfigMap is left untouched (the gateways keep the last good version), `Programmed` says
//! why, and the workload is still applied with the provider-key hash already in force, so a
//! broken SafetyPolicy does not hold back a change to the DataPlane itself.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Resource, ResourceExt};
use kube_client::api::Api;
use kube_runtime::controller::{Action, Config, Controller};
use kube_runtime::watcher;
use tollgate_crds::DataPlane;
use tollgate_crds::dataplane::DataPlaneStatus;
use tollgate_crds::status::{
    ACCEPTED, ConditionStatus, PROGRAMMED, READY, reason, set_condition, set_refused,
};

use super::{
    Context, apply, drain, field_manager, measured, on_change, prune, read_secret, requeue_on_error,
    update_status,
};
use crate::controllers::configuration::{ConfigOutcome, compile_cluster, referenced_secrets, short};
use crate::controllers::dataplane::{
    DataPlaneInputs, PROVIDER_KEYS_HASH_ANNOTATION, config_map_name, desired, provider_keys_secret_name,
};
use crate::controllers::gateway_config::{
    CONFIG_VERSION_ANNOTATION, SecretData, config_map, provider_keys_secret,
};
use crate::controllers::{Component, Owner};
use crate::error::{Error, Result};

/// The controller's name (metrics label, field manager suffix).
pub const CONTROLLER: &str = "dataplane";

/// How often a settled DataPlane is looked at again without any change (drift repair).
const RESYNC: Duration = Duration::from_secs(300);

/// What happened to the configuration in this reconcile.
struct Publication {
    /// The version the gateways run (new or kept).
    in_force: Option<String>,
    /// Hash of the provider-key Secret in force.
    keys_hash: String,
    /// Why nothing new was published.
    withheld: Option<(&'static str, String)>,
}

/// Writes `config` as the published configuration in the database the gateways share
/// (once per hash: every DataPlane publishes the same document).
async fn publish_to_ledger(
    ledger: &tollgate_dataplane::store::Store,
    config: &tollgate_crds::DataPlaneConfig,
) -> Result<()> {
    if ledger.published_config_hash().await.ok().flatten().as_deref() == Some(config.hash.as_str()) {
        return Ok(());
    }
    let json = crate::controllers::gateway_config::config_json(config)?;
    Ok(ledger.publish_config(&config.hash, &json, tollgate_dataplane::now_ms()).await?)
}

/// Compiles everything and writes this DataPlane's ConfigMap and provider-key Secret, or
/// keeps the ones in force when the compile failed.
async fn publish(ctx: &Context, owner: &Owner, manager: &str) -> Result<Publication> {
    let resources = ctx.resources.snapshot();
    let mut secrets = SecretData::new();
    for (namespace, name) in referenced_secrets(&resources) {
        if let Some(data) = read_secret(&ctx.client, &namespace, &name).await? {
            secrets.insert((namespace, name), data);
        }
    }
    let compiled = compile_cluster(&resources, &secrets);
    let rendered = compiled.config.as_ref().map(|config| {
        Ok::<_, Error>((
            config,
            config_map(owner, config, &compiled.keys)?,
            provider_keys_secret(owner, &compiled.keys)?,
        ))
    });
    let publication = match rendered {
        Some(Ok((config, map, keys_secret))) => {
            // Keys first: a gateway started from the new ConfigMap must find its keys.
            apply(&ctx.client, manager, &keys_secret).await?;
            apply(&ctx.client, manager, &map).await?;
            // The same document for the gateways sharing the ledger, which read it every
            // second (the mounted ConfigMap follows on the kubelet's sync).
            if let Some(ledger) = &ctx.ledger
                && let Err(e) = publish_to_ledger(ledger, config).await
            {
                tracing::warn!(
                    error = %e,
                    "configuration not written to the database; gateways following it keep the previous one until the next publish"
                );
            }
            let keys = compiled.keys.secret_source();
            if let Some(gateway) = &ctx.control_plane
                && !gateway.is_current(config, &keys)
                && let Err(e) = gateway.apply_config(config.clone(), &keys)
            {
                tracing::warn!(error = %e, "the control plane's own gateway keeps its previous configuration");
            }
            Publication {
                in_force: Some(config.hash.clone()),
                keys_hash: compiled.keys.hash()?,
                withheld: None,
            }
        }
        Some(Err(e)) => kept(ctx, owner, (e.reason(), e.to_string())).await?,
        None => {
            let mut names: Vec<String> = compiled
                .problems
                .iter()
                .map(|(resource, problems)| {
                    let first = problems.first().map(|p| p.message.as_str()).unwrap_or("");
                    format!("{resource} ({first})")
                })
                .collect();
            let total = names.len();
            names.truncate(3);
            let message = format!("{total} invalid resource(s): {}", names.join("; "));
            let why = compiled.problems.values().flatten().next().map_or(reason::INVALID_SPEC, |p| p.reason);
            kept(ctx, owner, (why, message)).await?
        }
    };
    let outcome = Arc::new(ConfigOutcome::of(&compiled, publication.in_force.clone()));
    ctx.outcome.send_if_modified(|current| {
        let changed = **current != *outcome;
        if changed {
            *current = outcome.clone();
        }
        changed
    });
    Ok(publication)
}

/// The ConfigMap and Secret in force stay; reads their versions for the status and the
/// pod template.
async fn kept(ctx: &Context, owner: &Owner, withheld: (&'static str, String)) -> Result<Publication> {
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let annotation = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str| {
        meta.annotations.as_ref().and_then(|a| a.get(key).cloned())
    };
    let in_force = maps
        .get_opt(&config_map_name(&owner.name))
        .await?
        .and_then(|m| annotation(&m.metadata, CONFIG_VERSION_ANNOTATION));
    let keys_hash = secrets
        .get_opt(&provider_keys_secret_name(&owner.name))
        .await?
        .and_then(|s| annotation(&s.metadata, PROVIDER_KEYS_HASH_ANNOTATION))
        .unwrap_or_default();
    tracing::warn!(reason = withheld.0, message = %withheld.1, "configuration not published; the one in force stays");
    Ok(Publication { in_force, keys_hash, withheld: Some(withheld) })
}

/// Reconciles one DataPlane.
#[tracing::instrument(skip_all, fields(dataplane = %dp.name_any(), namespace = dp.namespace().unwrap_or_default()))]
pub async fn reconcile(dp: Arc<DataPlane>, ctx: Arc<Context>) -> Result<Action> {
    let manager = field_manager(CONTROLLER);
    let owner = Owner::of(&*dp)?;
    let generation = dp.meta().generation;
    let before = dp.status.clone().unwrap_or_default();
    let mut status = DataPlaneStatus { conditions: before.conditions.clone(), ..DataPlaneStatus::default() };
    let now = super::now();

    let publication = publish(&ctx, &owner, &manager).await?;
    status.config_hash = publication.in_force.clone();
    match &publication.withheld {
        None => set_condition(
            &mut status.conditions,
            PROGRAMMED,
            ConditionStatus::True,
            reason::PROGRAMMED,
            &format!("configuration {} published", short(publication.in_force.as_deref().unwrap_or(""))),
            generation,
            &now,
        ),
        Some((why, message)) => {
            let kept = match &publication.in_force {
                Some(v) => format!("configuration {} stays in force", short(v)),
                None => "no configuration has been published yet".to_owned(),
            };
            set_condition(
                &mut status.conditions,
                PROGRAMMED,
                ConditionStatus::False,
                why,
                &format!("{message}; {kept}"),
                generation,
                &now,
            )
        }
    };

    let inputs =
        DataPlaneInputs { default_image: &ctx.gateway_image, provider_keys_hash: &publication.keys_hash };
    match desired(&dp, &inputs) {
        Ok(children) => {
            set_condition(
                &mut status.conditions,
                ACCEPTED,
                ConditionStatus::True,
                reason::ACCEPTED,
                "",
                generation,
                &now,
            );
            apply(&ctx.client, &manager, &children.service_account).await?;
            apply(&ctx.client, &manager, &children.role).await?;
            apply(&ctx.client, &manager, &children.role_binding).await?;
            let deployment = apply(&ctx.client, &manager, &children.deployment).await?;
            apply(&ctx.client, &manager, &children.service).await?;
            match &children.hpa {
                Some(hpa) => {
                    apply(&ctx.client, &manager, hpa).await?;
                }
                None => {
                    prune::<HorizontalPodAutoscaler>(&ctx.client, &owner, Component::Gateway, &[]).await?;
                }
            }
            apply(&ctx.client, &manager, &children.pod_disruption_budget).await?;
            let ready = deployment.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
            status.ready_replicas = Some(ready);
            let want = dp.spec.replicas.min.max(1);
            let (ok, why, message) = if ready >= want {
                (true, reason::READY, format!("{ready} gateway(s) ready"))
            } else {
                (false, reason::PENDING, format!("{ready} of {want} gateway(s) ready"))
            };
            set_condition(&mut status.conditions, READY, ok.into(), why, &message, generation, &now);
        }
        Err(e) => {
            // The user's to fix: say so in the status, and wait for the next change.
            set_refused(
                &mut status.conditions,
                e.reason(),
                &e.to_string(),
                &[READY],
                "not deployed",
                generation,
                &now,
            );
        }
    }
    status.observed_generation = generation;
    update_status(&ctx, &manager, &*dp, &before, &status).await?;
    Ok(Action::requeue(RESYNC))
}

/// Logs, counts and requeues.
pub fn error_policy(_dp: Arc<DataPlane>, error: &Error, ctx: Arc<Context>) -> Action {
    requeue_on_error(CONTROLLER, &ctx, error)
}

/// Runs the controller: on DataPlane changes, on its gateway Deployments' changes, and on
/// every change to what compiles into the configuration.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let owned = watcher::Config::default()
        .labels(&format!("app.kubernetes.io/name={}", Component::Gateway.app_name()));
    let controller = Controller::new(Api::<DataPlane>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Deployment>::all(client), owned)
        .reconcile_all_on(on_change(ctx.changes.subscribe()))
        // Coalesces a burst (kubectl apply -f of a folder) into one compile per DataPlane.
        .with_config(Config::default().debounce(Duration::from_millis(200)));
    let stream = controller.run(
        |dp, ctx| async move {
            let c = ctx.clone();
            measured(CONTROLLER, &c, reconcile(dp, ctx)).await
        },
        error_policy,
        ctx,
    );
    drain(CONTROLLER, stream).await;
}
