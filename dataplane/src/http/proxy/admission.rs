//! Budget admission: reserve the worst case on every budget that applies, settle once.
//! Tokens-per-minute windows are charged the estimate at admission and corrected at settle
//! when the answer used more.

use super::*;
use crate::budget::{Overrun, report_overrun};
use crate::observability::tracing::{attr, record_error, record_u64};

/// The window of every per-minute limit (as `check_rate` uses).
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// A tokens-per-minute window charged with a request's estimate: what to correct at settle.
#[derive(Debug, Clone)]
pub(super) struct TpmCharge {
    /// The limiter key (`key:{id}:tpm`, `ipt:{id}:tpm`).
    key: String,
    /// When it was charged: the correction goes to the same window.
    at_ms: i64,
    /// Tokens charged.
    tokens: u64,
}

/// Checks `tokens` against a tokens-per-minute limit at `key` (failing open, like every
/// rate limit); when admitted, also the charge to correct once the usage is known.
pub(super) async fn check_tpm(
    shared: &Shared,
    key: String,
    limit: u64,
    tokens: u64,
) -> Option<(RateDecision, Option<TpmCharge>)> {
    let at_ms = crate::now_ms();
    match shared.rate_limiter.check(&key, limit, tokens, RATE_WINDOW, at_ms).await {
        Ok(d) => {
            let charge = d.allowed.then_some(TpmCharge { key, at_ms, tokens });
            Some((d, charge))
        }
        Err(e) => {
            tracing::warn!(error = %e, "rate limiter unavailable; admitting");
            None
        }
    }
}

/// A request admitted against its budgets (or with none to answer to).
pub(super) struct Admitted {
    pub(super) reservation: Option<Reservation>,
    pub(super) prices: Option<PricesMicros>,
    /// Cost of the input alone: what a request broken after sending is charged.
    pub(super) input_micros: u64,
    pub(super) budgets: Vec<(BudgetConfig, BudgetKey)>,
    /// Estimated input tokens plus the output cap (tokens-per-minute limits charge this).
    pub(super) token_estimate: u64,
    /// The caller's key's tokens-per-minute window, when charged for this request.
    pub(super) key_tpm: Option<TpmCharge>,
    /// The serving IP token's tokens-per-minute window, when charged for this attempt.
    pub(super) upstream_tpm: Option<TpmCharge>,
    /// The output tokens the reservation covers, when one was made: a stream is cut once
    /// its output reaches this (see `stream::Pump::output_reached`).
    pub(super) reserved_output: Option<u64>,
}

impl Admitted {
    /// The most this request may be charged: its reserved worst case, when reserved.
    pub(super) fn cap(&self, cost: u64) -> u64 {
        self.reservation.as_ref().map_or(cost, |r| cost.min(r.reserved_micros))
    }
}

impl Admitted {
    /// Settles to the actual usage (in a `budget.settle` span) and corrects the
    /// tokens-per-minute windows this request was charged in; returns the cost.
    pub(super) async fn settle(&mut self, shared: &Shared, span: &RequestSpan, usage: TokenUsage) -> u64 {
        let cost = self.prices.map_or(0, |p| cost_micros(&p, &usage));
        let settle = span.settle();
        let mut overrun = None;
        async {
            if let Some(r) = self.reservation.take() {
                // NB: the true cost is charged even when it exceeds the reservation.
                overrun = Overrun::of(r.reserved_micros, cost);
                r.settle(cost).await;
            }
            self.correct_tpm(shared, usage).await;
        }
        .instrument(settle.clone())
        .await;
        record_u64(&settle, attr::TOLLGATE_COST_MICRO_USD, cost);
        if let Some(overrun) = overrun {
            report_overrun(
                Arc::clone(&shared.counters),
                shared.alerts.clone(),
                shared.client.clone(),
                shared.metrics.clone(),
                self.budgets.clone(),
                overrun,
            );
        }
        if cost > 0 && !self.budgets.is_empty() {
            check_alerts(
                Arc::clone(&shared.counters),
                shared.alerts.clone(),
                shared.client.clone(),
                self.budgets.clone(),
                cost,
            );
        }
        cost
    }

    /// Settles at `cost` when the usage is not known (a stream that broke before it said),
    /// in a `budget.settle` span; tokens-per-minute windows keep the estimate.
    pub(super) async fn settle_unmetered(&mut self, span: &RequestSpan, cost: u64) {
        let settle = span.settle();
        if let Some(r) = self.reservation.take() {
            r.settle(cost).instrument(settle.clone()).await;
        }
        record_u64(&settle, attr::TOLLGATE_COST_MICRO_USD, cost);
    }

    /// Adds what the answer used beyond the estimate to every tokens-per-minute window this
    /// request was charged in, so a request that used more counts fully. NB: never a refund
    /// when it used less: providers count `max_tokens` against their own TPM the same way,
    /// and the upstream limits exist to stay under theirs.
    async fn correct_tpm(&self, shared: &Shared, usage: TokenUsage) {
        let actual = usage.input.saturating_add(usage.output);
        for charge in [&self.key_tpm, &self.upstream_tpm].into_iter().flatten() {
            let extra = actual.saturating_sub(charge.tokens);
            if extra == 0 {
                continue;
            }
            let extra = i64::try_from(extra).unwrap_or(i64::MAX);
            // Awaited, not spawned: the caller's next request must already see it.
            if let Err(e) = shared.rate_limiter.add(&charge.key, extra, RATE_WINDOW, charge.at_ms).await {
                tracing::warn!(error = %e, "rate limiter unavailable; tokens-per-minute not corrected");
            }
        }
    }

    /// Settles a request that failed before any answer: nothing consumed.
    pub(super) async fn release(&mut self) {
        if let Some(r) = self.reservation.take() {
            r.settle(0).await;
        }
    }

    /// Puts the cost and the charged budgets on a usage record.
    pub(super) fn fill(&self, record: &mut UsageRecord, cost: u64) {
        record.cost_micros = cost;
        record.charges = self
            .budgets
            .iter()
            .map(|(b, k)| Charge { budget_id: b.id.clone(), window_start_ms: k.window.start_ms })
            .collect();
    }
}

/// Why admission failed, and the model to downgrade to if the budget says so.
pub(super) struct Refusal {
    pub(super) error: ApiError,
    pub(super) downgrade: Option<String>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self { error, downgrade: None }
    }
}

/// Reserves the worst-case cost of this request on every budget that applies, in a
/// `budget.reserve` span that says what was reserved and how it ended.
#[expect(clippy::too_many_arguments, reason = "the request path's state, passed once")]
pub(super) async fn admit(
    shared: &Shared,
    runtime: &Runtime,
    ctx: &Ctx,
    principal: &crate::auth::Principal,
    model: &str,
    route: &ModelRoute,
    value: &mut Value,
    need_tokens: bool,
) -> Result<Admitted, Refusal> {
    let span = ctx.span.budget_reserve();
    let result = reserve(shared, runtime, ctx, principal, model, route, value, need_tokens)
        .instrument(span.clone())
        .await;
    let outcome = match &result {
        Ok(Admitted { reservation: Some(r), .. }) => {
            record_u64(&span, attr::TOLLGATE_RESERVED_MICRO_USD, r.reserved_micros);
            "admitted"
        }
        // Nothing to reserve on: no budget applies, or soft budgets on an unpriced model.
        Ok(Admitted { budgets, .. }) if budgets.is_empty() => "none",
        // Soft budgets while the counters cannot answer: admitted unchecked.
        Ok(_) => "unchecked",
        Err(refusal) => {
            if let Some((_, budget)) = refusal.error.headers.iter().find(|(n, _)| *n == "x-tollgate-budget") {
                span.record(attr::TOLLGATE_BUDGET_ID, budget.as_str());
            }
            if refusal.downgrade.is_some() {
                // Not a failure of the request: it goes on with the cheaper model.
                "downgraded"
            } else {
                record_error(&span, refusal.error.code);
                "refused"
            }
        }
    };
    span.record(attr::TOLLGATE_BUDGET_OUTCOME, outcome);
    result
}

#[expect(clippy::too_many_arguments, reason = "the request path's state, passed once")]
async fn reserve(
    shared: &Shared,
    runtime: &Runtime,
    ctx: &Ctx,
    principal: &crate::auth::Principal,
    model: &str,
    route: &ModelRoute,
    value: &mut Value,
    need_tokens: bool,
) -> Result<Admitted, Refusal> {
    let prices = route_prices(route, model);
    let indices = runtime.budget_index.applicable(&runtime.config.budgets, principal);
    let wire = ctx.endpoint.wire();
    let upstream_model = route.targets.first().map_or(model, |t| t.upstream_model.as_str());
    let first_provider =
        route.targets.first().and_then(|t| runtime.upstreams.get(t.ip_token)).map(|u| u.provider);
    let input_tokens = |value: &Value| tokens::estimate_input_tokens(upstream_model, value, wire);
    if indices.is_empty() {
        if !need_tokens {
            // No budget and no token limit: nothing needs the estimate.
            return Ok(Admitted {
                reservation: None,
                prices,
                input_micros: 0,
                budgets: Vec::new(),
                token_estimate: 0,
                key_tpm: None,
                upstream_tpm: None,
                reserved_output: None,
            });
        }
        let input = input_tokens(value);
        let max_output = tokens::max_output_tokens(value, wire).unwrap_or(shared.options.default_max_tokens);
        let input_micros = prices.map_or(0, |p| worst_case_micros(&p, input, 0));
        return Ok(Admitted {
            reservation: None,
            prices,
            input_micros,
            budgets: Vec::new(),
            token_estimate: input.saturating_add(max_output),
            key_tpm: None,
            upstream_tpm: None,
            reserved_output: None,
        });
    }
    let budgets: Vec<&BudgetConfig> = indices.iter().filter_map(|&i| runtime.config.budgets.get(i)).collect();
    for b in &budgets {
        if !b.allowed_models.is_empty() && !b.allowed_models.iter().any(|m| m == model) {
            return Err(ApiError::forbidden(
                "model_not_allowed",
                format!("budget {} does not allow model {model:?}", b.id),
            )
            .with_param("model")
            .into());
        }
    }
    let any_hard = budgets.iter().any(|b| b.hard);
    let Some(prices) = prices else {
        if any_hard {
            return Err(ApiError::invalid(
                format!(
                    "model {model:?} has no known price, so it cannot be used under a hard budget; \
                     set prices on its IPToken"
                ),
                Some("model".into()),
            )
            .into());
        }
        let token_estimate = input_tokens(value);
        return Ok(Admitted {
            reservation: None,
            prices: None,
            input_micros: 0,
            budgets: Vec::new(),
            token_estimate,
            key_tpm: None,
            upstream_tpm: None,
            reserved_output: None,
        });
    };
    let max_output = match (ctx.endpoint, tokens::max_output_tokens(value, wire)) {
        (Endpoint::Embeddings, _) => 0,
        (_, Some(n)) => n,
        (_, None) => {
            // Bound the worst case: without a cap the provider may generate up to the
            // model's limit. The cap is sent upstream so the reservation really covers it.
            let cap = shared.options.default_max_tokens;
            if any_hard && let Some(obj) = value.as_object_mut() {
                let field = match first_provider {
                    Some(Provider::OpenAi | Provider::AzureOpenAi) => "max_completion_tokens",
                    _ => "max_tokens",
                };
                obj.insert(field.into(), Value::from(cap));
            }
            cap
        }
    };
    let input = input_tokens(value);
    let worst = worst_case_micros(&prices, input, max_output);
    let input_micros = worst_case_micros(&prices, input, 0);
    let now = crate::now_ms();
    let keyed: Vec<(BudgetConfig, BudgetKey)> =
        budgets.iter().map(|b| ((*b).clone(), key_for(b, now))).collect();
    let keys: Vec<BudgetKey> = keyed.iter().map(|(_, k)| k.clone()).collect();
    let id = format!("{}:{}", ctx.request_id, uuid::Uuid::new_v4().simple());
    let ttl = shared.options.response_timeout + Duration::from_secs(60);
    let deadline = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    match shared.counters.reserve(&id, &keys, worst, deadline, now).await {
        Ok(Admission::Admitted) => Ok(Admitted {
            reservation: Some(Reservation::new(Arc::clone(&shared.counters), id, keys, worst, input_micros)),
            prices: Some(prices),
            input_micros,
            budgets: keyed,
            token_estimate: input.saturating_add(max_output),
            key_tpm: None,
            upstream_tpm: None,
            reserved_output: Some(max_output),
        }),
        Ok(Admission::Refused { budget_id, remaining_micros, window_end_ms }) => {
            let budget = budgets.iter().find(|b| b.id == budget_id);
            let downgrade = budget.and_then(|b| match &b.on_exhausted {
                OnExhausted::Downgrade(m) => Some(m.clone()),
                OnExhausted::Block | OnExhausted::SuspendAgents => None,
            });
            Err(Refusal {
                error: budget_exceeded(&budget_id, remaining_micros, window_end_ms, worst, now),
                downgrade,
            })
        }
        Err(e) if any_hard => {
            tracing::error!(error = %e, "budget counters unavailable; refusing (hard budgets fail closed)");
            Err(ApiError {
                retry_after: Some(1),
                ..ApiError::unavailable(
                    "budget_unavailable",
                    "budgets cannot be checked right now, so requests under a hard budget are refused; retry shortly",
                )
            }
            .into())
        }
        Err(e) => {
            tracing::warn!(error = %e, "budget counters unavailable; soft budgets only, admitting");
            Ok(Admitted {
                reservation: None,
                prices: Some(prices),
                input_micros,
                budgets: keyed,
                token_estimate: input.saturating_add(max_output),
                key_tpm: None,
                upstream_tpm: None,
                reserved_output: None,
            })
        }
    }
}

pub(super) fn budget_exceeded(
    budget_id: &str,
    remaining: u64,
    window_end_ms: i64,
    needed: u64,
    now_ms: i64,
) -> ApiError {
    let resets = (window_end_ms < i64::MAX).then(|| {
        chrono::DateTime::from_timestamp_millis(window_end_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    });
    let when =
        resets.as_deref().map_or_else(|| "it does not reset".to_owned(), |t| format!("it resets at {t}"));
    let mut error = ApiError::rate_limited(
        "budget_exceeded",
        format!(
            "budget {budget_id} is exhausted: ${} remaining, this request may cost up to ${}; {when}",
            format_usd(remaining),
            format_usd(needed)
        ),
        resets.as_ref().map(|_| u64::try_from((window_end_ms - now_ms).max(0) / 1000 + 1).unwrap_or(1)),
    );
    // Retrying cannot help before the reset: tell OpenAI's and Anthropic's clients (which
    // retry 429s by default) not to.
    error.headers.push(("x-should-retry", "false".to_owned()));
    error.headers.push(("x-tollgate-budget", budget_id.to_owned()));
    error.headers.push(("x-tollgate-budget-remaining-usd", format_usd(remaining)));
    error.headers.push(("x-tollgate-budget-remaining-micros", remaining.to_string()));
    if let Some(t) = resets {
        error.headers.push(("x-tollgate-budget-reset", t));
    }
    error
}

/// The prices a request on this route is reserved at: the highest of its targets (a
/// target's own override, else the built-in table), so whichever target serves it, the
/// reservation covers it.
pub(super) fn route_prices(route: &ModelRoute, model: &str) -> Option<PricesMicros> {
    let table = PriceTable::builtin();
    let mut best: Option<PricesMicros> = None;
    for t in &route.targets {
        let Some(p) = t.prices.or_else(|| table.lookup(&t.upstream_model)).or_else(|| table.lookup(model))
        else {
            // One unpriced target makes the route unpriced: it could serve the request.
            return None;
        };
        best = Some(match best {
            None => p,
            Some(b) => PricesMicros {
                input_per_mtok: b.input_per_mtok.max(p.input_per_mtok),
                output_per_mtok: b.output_per_mtok.max(p.output_per_mtok),
                cached_input_per_mtok: b.cached_input_per_mtok.max(p.cached_input_per_mtok),
            },
        });
    }
    best
}
