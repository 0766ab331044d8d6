//! Budget status: `spent` from the usage ledger (the database every gateway writes; the
//! sum of the charges in the current window), `reserved` from the shared counters when the
//! operator has them (Redis), `remaining`, the period window, `Accepted`/`Programmed`, and
//! `Ready=False` with reason `BudgetExhausted` at the limit. An Event marks each alert
//! threshold the first time it is crossed in a period.
//!
//! Spending happens on the gateways, not in the API server, so nothing can watch it: the
//! status is refreshed every [`REFRESH`] (and at the period's end), besides on every change
//! to the Budget or to the published configuration.

use std::sync::Arc;
use std::time::Duration;

use kube::{Resource, ResourceExt};
use kube_client::api::Api;
use kube_runtime::controller::{Action, Controller};
use kube_runtime::watcher;
use tollgate_crds::budget::BudgetStatus;
use tollgate_crds::money::{format_usd, parse_usd_micros};
use tollgate_crds::status::{ConditionStatus, READY, reason, set_condition};
use tollgate_crds::{Budget, Resource as TollgateResource, compile};
use tollgate_dataplane::budget::key_for;

use super::resources::set_resource_conditions;
use super::{Context, drain, field_manager, measured, now_ms, on_change, requeue_on_error, update_status};
use crate::controllers::configuration::{
    BudgetFigures, Problem, budget_key, compile_error_reason, crossed_thresholds,
};
use crate::error::{Error, Result};

/// The controller's name.
pub const CONTROLLER: &str = "budget";

/// How often spending is read from the ledger.
pub const REFRESH: Duration = Duration::from_secs(30);

/// Reconciles one Budget's status.
#[tracing::instrument(skip_all, fields(budget = %budget.name_any(), namespace = budget.namespace().unwrap_or_default()))]
pub async fn reconcile(budget: Arc<Budget>, ctx: Arc<Context>) -> Result<Action> {
    let key = budget_key(&budget);
    let outcome = ctx.outcome.borrow().clone();
    // Alone, without its parent: the parent's existence is the cluster-wide compile's
    // business (it reports it under this budget's key).
    let mut alone = (*budget).clone();
    alone.spec.parent = None;
    let (config, mut problems) = match compile(&[TollgateResource::Budget(alone)]) {
        Ok(c) => (c.budgets.into_iter().next(), Vec::new()),
        Err(errors) => (
            None,
            errors
                .into_iter()
                .map(|e| Problem {
                    reason: compile_error_reason(&e),
                    message: format!("{}: {}", e.path, e.message),
                })
                .collect(),
        ),
    };
    if problems.is_empty() {
        problems = outcome.problems.get(&key).cloned().unwrap_or_default();
    }
    let before = budget.status.clone().unwrap_or_default();
    let generation = budget.meta().generation;
    let now = super::now();
    let mut status = BudgetStatus { conditions: before.conditions.clone(), ..BudgetStatus::default() };
    set_resource_conditions(&mut status.conditions, &problems, &outcome, &key, generation, &now);
    status.observed_generation = generation;

    let mut requeue = REFRESH;
    let mut crossed = Vec::new();
    if let (Some(config), Some(ledger)) = (&config, &ctx.ledger) {
        let at = now_ms();
        let counter_key = key_for(config, at);
        let window = (counter_key.window.start_ms, counter_key.window.end_ms);
        let spent = ledger.budget_spent(&config.id, window.0).await?;
        let reserved = match &ctx.counters {
            // NB: reservations past their deadline (a killed replica's) no longer count.
            Some(counters) => Some(counters.state_at(&counter_key, at).await?.reserved_micros),
            None => None,
        };
        let figures = BudgetFigures::new(config, window, spent, reserved);
        // Thresholds fire once per period: a new period starts from nothing.
        let spent_before = if before.period_start == figures.period_start {
            before.spent.as_deref().and_then(|s| parse_usd_micros(s).ok()).unwrap_or(0)
        } else {
            0
        };
        crossed = crossed_thresholds(config, spent_before, spent);
        status.spent = Some(figures.spent());
        status.reserved = figures.reserved_micros.map(format_usd);
        status.remaining = Some(format_usd(figures.remaining_micros));
        status.period_start = figures.period_start.clone();
        status.period_end = figures.period_end.clone();
        if figures.exhausted {
            let resets = figures
                .period_end
                .as_deref()
                .map_or("never (period total)".to_owned(), |e| format!("at {e}"));
            let message = format!(
                "spent ${} of ${} ({}); resets {resets}",
                figures.spent(),
                format_usd(config.limit_micros),
                if config.hard { "requests are refused" } else { "soft: requests still pass" }
            );
            set_condition(
                &mut status.conditions,
                READY,
                ConditionStatus::False,
                reason::BUDGET_EXHAUSTED,
                &message,
                generation,
                &now,
            );
        }
        if let Some(end) = figures.period_end_ms {
            let until_end = u64::try_from(end.saturating_sub(at)).unwrap_or(0);
            // +1 s so the refresh lands inside the new period.
            requeue = requeue.min(Duration::from_millis(until_end) + Duration::from_secs(1));
        }
    }

    update_status(&ctx, &field_manager(CONTROLLER), &*budget, &before, &status).await?;
    if let Some(config) = &config {
        for pct in crossed {
            let note = format!(
                "{pct}% of the {} limit reached: ${} spent of ${}",
                budget.spec.period,
                status.spent.as_deref().unwrap_or("0"),
                format_usd(config.limit_micros)
            );
            // One action per threshold: the recorder folds equal (reason, action) pairs into a
            // series, which would hide the second threshold's message.
            let action = format!("Alert{pct}");
            ctx.event(&budget.object_ref(&()), true, "BudgetThresholdReached", &action, note).await;
        }
    }
    Ok(Action::requeue(requeue))
}

/// Runs the controller.
pub async fn run(ctx: Arc<Context>) {
    let api = Api::<Budget>::all(ctx.client.clone());
    let controller =
        Controller::new(api, watcher::Config::default()).reconcile_all_on(on_change(ctx.outcome.subscribe()));
    let stream = controller.run(
        |b, ctx| async move {
            let c = ctx.clone();
            measured(CONTROLLER, &c, reconcile(b, ctx)).await
        },
        |_b, e: &Error, ctx| requeue_on_error(CONTROLLER, &ctx, e),
        ctx,
    );
    drain(CONTROLLER, stream).await;
}
