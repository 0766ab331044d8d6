//! `Budget`: money allocated to a developer, team, agent or namespace, enforced by the
//! gateway on every request (reserve the worst case, settle the actual cost).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Money allocated to a subject for a period.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tollgate.dev",
    version = "v1alpha1",
    kind = "Budget",
    namespaced,
    status = "BudgetStatus",
    shortname = "bud",
    category = "tollgate",
    doc = "Money allocated to a developer, team, agent or namespace for a period, enforced by every gateway.",
    printcolumn = r#"{"name":"Subject","type":"string","jsonPath":".spec.subject.name"}"#,
    printcolumn = r#"{"name":"Spent","type":"string","jsonPath":".status.spent"}"#,
    printcolumn = r#"{"name":"Limit","type":"string","jsonPath":".spec.limit"}"#,
    printcolumn = r#"{"name":"Period","type":"string","jsonPath":".spec.period"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetSpec {
    /// Who the money is for.
    pub subject: BudgetSubject,
    /// The limit in USD as a decimal string (`"250"`, `"12.50"`); exact to one micro-USD.
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)$"))]
    pub limit: String,
    /// `daily`, `weekly` (ISO weeks, from Monday), `monthly`, `total` (never resets), or a
    /// duration such as `6h`, `30m`, `2d`, `1w` (windows aligned to the Unix epoch).
    #[schemars(length(min = 1, max = 16), regex(pattern = r"^(daily|weekly|monthly|total|[0-9]+[smhdw])$"))]
    pub period: String,
    /// IANA time zone the calendar periods follow (default `UTC`), e.g. `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// `hard` refuses requests that could exceed the limit; `soft` lets them through and
    /// raises an alert.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// Percentages of the limit at which an alert is raised, once per period each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10), inner(range(min = 1, max = 1000)))]
    pub alert_thresholds: Vec<u32>,
    /// Name of the parent Budget in the same namespace: every charge also counts against
    /// the parent and its ancestors, and a request is admitted only if all have room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub parent: Option<String>,
    /// Models the subject may use under this budget (empty: no restriction).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub allowed_models: Vec<String>,
    /// What happens when the limit is reached: `block` (429), `downgrade:<model>` (serve a
    /// cheaper model instead, said in a response header) or `suspend-agents` (block, and in
    /// Kubernetes scale the subject's agents to zero until the next period).
    #[serde(default = "default_on_exhausted")]
    #[schemars(length(max = 270), regex(pattern = r"^(block|suspend-agents|downgrade:[^\s].*)$"))]
    pub on_exhausted: String,
    /// Who may see this budget, the budgets under it and their usage and keys (superusers):
    /// developers by name, or every member of a team.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub owners: Vec<BudgetOwner>,
}

/// A budget owner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetOwner {
    /// `developer` (one person) or `team` (every member).
    pub kind: OwnerKind,
    /// The developer's or team's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What kind of principal owns a budget.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OwnerKind {
    /// One developer (a superuser key with this name).
    Developer,
    /// Every member of the team.
    Team,
}

fn default_on_exhausted() -> String {
    "block".to_owned()
}

/// Who a budget is for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetSubject {
    /// `developer`, `team`, `agent` or `namespace`.
    pub kind: SubjectKind,
    /// The developer's, team's, agent's or namespace's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Kinds of budget subjects.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// A person.
    Developer,
    /// A team: its own key and every member's requests.
    Team,
    /// An agent workload.
    Agent,
    /// Every agent in a Kubernetes namespace.
    Namespace,
}

impl SubjectKind {
    /// The name used in resources.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Developer => "developer",
            Self::Team => "team",
            Self::Agent => "agent",
            Self::Namespace => "namespace",
        }
    }
}

/// Hard or soft.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Never exceeded: requests that could exceed it are refused.
    #[default]
    Hard,
    /// Alerts only.
    Soft,
}

/// Observed state of a budget.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// USD spent in the current period (settled charges), as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub spent: Option<String>,
    /// USD held by requests in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub reserved: Option<String>,
    /// USD left in the current period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub remaining: Option<String>,
    /// Start of the current period (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub period_start: Option<String>,
    /// End of the current period (RFC 3339), absent for `total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub period_end: Option<String>,
    /// Standard conditions: `Accepted` (valid, parent found), `Programmed` (in the published
    /// configuration), `Ready` (`False` with reason `BudgetExhausted` at the limit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A budget period, parsed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum BudgetPeriod {
    /// Calendar day.
    Daily,
    /// ISO week from Monday.
    Weekly,
    /// Calendar month.
    Monthly,
    /// Never resets.
    Total,
    /// Fixed windows of this many seconds, aligned to the Unix epoch.
    EverySeconds(u64),
}

const EXPECTED: &str = "expected daily, weekly, monthly, total, or a duration such as \"90s\", \"30m\", \"6h\", \"2d\" or \"1w\"";

/// The spec's spelling: `daily`, `weekly`, `monthly`, `total`, or a duration in the
/// largest unit that divides it (`6h`, `90s`, `1w`); parses back to the same period.
impl std::fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Daily => f.write_str("daily"),
            Self::Weekly => f.write_str("weekly"),
            Self::Monthly => f.write_str("monthly"),
            Self::Total => f.write_str("total"),
            Self::EverySeconds(s) => {
                let (n, unit) = [(604_800, "w"), (86_400, "d"), (3_600, "h"), (60, "m")]
                    .iter()
                    .find(|(size, _)| s % size == 0)
                    .map_or((*s, "s"), |(size, unit)| (s / size, *unit));
                write!(f, "{n}{unit}")
            }
        }
    }
}

impl std::str::FromStr for BudgetPeriod {
    type Err = String;

    /// Parses `daily`, `weekly`, `monthly`, `total`, or a duration of at least a minute: a
    /// positive whole number and one unit, `s`, `m`, `h`, `d` or `w` (`90s`, `6h`, `1w`).
    /// The error says what to write instead.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "daily" => return Ok(Self::Daily),
            "weekly" => return Ok(Self::Weekly),
            "monthly" => return Ok(Self::Monthly),
            "total" => return Ok(Self::Total),
            "" => return Err(EXPECTED.to_owned()),
            _ => {}
        }
        let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(digits_end);
        if number.is_empty() {
            return Err(if text.trim() != text {
                "remove the surrounding spaces".to_owned()
            } else if ["daily", "weekly", "monthly", "total"].contains(&text.to_ascii_lowercase().as_str()) {
                format!("write it in lower case ({:?})", text.to_ascii_lowercase())
            } else {
                EXPECTED.to_owned()
            });
        }
        let seconds_per_unit: u64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 604_800,
            "" => {
                return Err(format!("missing unit after {number}: add s, m, h, d or w (e.g. \"{number}h\")"));
            }
            other => return Err(format!("unknown unit {other:?}: use s, m, h, d or w (e.g. \"6h\")")),
        };
        let count: u64 = number.parse().map_err(|_| format!("{number} is too large"))?;
        if count == 0 {
            return Err("the duration must be longer than zero".to_owned());
        }
        let seconds = count
            .checked_mul(seconds_per_unit)
            .filter(|s| s.checked_mul(1_000).is_some_and(|ms| i64::try_from(ms).is_ok()))
            .ok_or_else(|| format!("{number}{unit} is too long"))?;
        if seconds < 60 {
            return Err(format!("{text}: a duration period must be at least one minute"));
        }
        Ok(Self::EverySeconds(seconds))
    }
}

/// What happens at the limit, parsed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum OnExhausted {
    /// Refuse with 429.
    Block,
    /// Serve this model instead.
    Downgrade(String),
    /// Refuse, and scale the subject's agents to zero until the next period.
    SuspendAgents,
}

impl std::str::FromStr for OnExhausted {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "block" => Ok(Self::Block),
            "suspend-agents" => Ok(Self::SuspendAgents),
            other => match other.strip_prefix("downgrade:") {
                Some(model) if !model.trim().is_empty() => Ok(Self::Downgrade(model.trim().to_owned())),
                Some(_) => Err("downgrade needs a model: `downgrade:<model>`".to_owned()),
                None => Err(format!("{other:?}: expected block, downgrade:<model> or suspend-agents")),
            },
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn periods_display_as_the_spec_writes_them_and_parse_back() {
        for text in ["daily", "weekly", "monthly", "total", "6h", "90s", "1w", "2d", "30m"] {
            let p: BudgetPeriod = text.parse().unwrap();
            assert_eq!(p.to_string(), text);
        }
        assert_eq!(BudgetPeriod::EverySeconds(7_200).to_string(), "2h");
    }

    use super::*;

    #[test]
    fn periods_parse() {
        assert_eq!("daily".parse::<BudgetPeriod>(), Ok(BudgetPeriod::Daily));
        assert_eq!("6h".parse::<BudgetPeriod>(), Ok(BudgetPeriod::EverySeconds(21_600)));
        assert_eq!("1w".parse::<BudgetPeriod>(), Ok(BudgetPeriod::EverySeconds(604_800)));
        assert!("30s".parse::<BudgetPeriod>().is_err());
        assert!("yearly".parse::<BudgetPeriod>().is_err());
        assert!("h".parse::<BudgetPeriod>().is_err());
    }

    #[test]
    fn on_exhausted_parses() {
        assert_eq!("downgrade:mock-1".parse::<OnExhausted>(), Ok(OnExhausted::Downgrade("mock-1".into())));
        assert!("downgrade:".parse::<OnExhausted>().is_err());
        assert!("explode".parse::<OnExhausted>().is_err());
    }
}
