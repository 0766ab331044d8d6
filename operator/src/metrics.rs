//! Prometheus metrics of the controllers, served on `/metrics` of the metrics port:
//!
//! - `tollgate_operator_reconciliations_total{controller, result}` (`result` is `ok` or
//!   `error`),
//! - `tollgate_operator_reconcile_duration_seconds{controller}` (histogram),
//! - `tollgate_operator_reconcile_errors_total{controller, error}` (`error` is
//!   [`Error::metric_label`]),
//! - `tollgate_operator_leader` (1 while this replica holds the lease).
//!
//! Every label value is a `&'static str` from the code, so no resource name or message can
//! create a series.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::error::Error;

/// Buckets (seconds): a reconcile is a few API calls, or a compile of everything.
const DURATION_BUCKETS: [f64; 12] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: &'static str,
    error: &'static str,
}

/// The operator's metrics (cheap to clone: the registry is shared).
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciliations: Family<ResultLabels, Counter>,
    durations: Family<ControllerLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tollgate_operator");
        let reconciliations = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciliations",
            "Reconciliations by controller and result",
            reconciliations.clone(),
        );
        let durations = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(DURATION_BUCKETS.iter().copied())
        });
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconciliation took",
            Unit::Seconds,
            durations.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by controller and error",
            errors.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the leader lease", leader.clone());
        Self { registry: Arc::new(registry), reconciliations, durations, errors, leader }
    }

    /// Records one reconciliation of `controller`.
    pub fn reconciled(&self, controller: &'static str, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.reconciliations.get_or_create(&ResultLabels { controller, result }).inc();
        self.durations.get_or_create(&ControllerLabels { controller }).observe(took.as_secs_f64());
    }

    /// Counts a failed reconciliation by its error's label.
    pub fn failed(&self, controller: &'static str, error: &Error) {
        self.errors.get_or_create(&ErrorLabels { controller, error: error.metric_label() }).inc();
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // NB: writing into a String cannot fail; an error would mean a broken registry.
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_controller_result_and_error() {
        let m = Metrics::new();
        m.reconciled("dataplane", true, Duration::from_millis(3));
        m.reconciled("dataplane", false, Duration::from_millis(3));
        m.failed("dataplane", &Error::AutoscalingWithoutCpuRequest);
        m.set_leader(true);
        let text = m.encode();
        assert!(
            text.contains(r#"tollgate_operator_reconciliations_total{controller="dataplane",result="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"tollgate_operator_reconcile_errors_total{controller="dataplane",error="autoscaling_without_cpu_request"} 1"#
        ));
        assert!(text.contains("tollgate_operator_reconcile_duration_seconds_bucket"));
        assert!(text.contains("tollgate_operator_leader 1"));
    }
}
