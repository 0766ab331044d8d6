//! Model prices and what a call costs.
//!
//! The built-in table is `dataplane/prices/prices.yaml`, compiled into the binary. An IP
//! token's per-model prices (already in the configuration) override it; the caller picks
//! the override first and falls back to [`PriceTable::lookup`].

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::Deserialize;
use tollgate_crds::config::PricesMicros;
use tollgate_crds::money::parse_usd_micros;

use super::CostError;
use crate::translate::TokenUsage;

/// The built-in table's source text.
const BUILTIN_YAML: &str = include_str!("../../prices/prices.yaml");

/// Tokens per price unit: prices are per million tokens.
const TOKENS_PER_PRICE_UNIT: u128 = 1_000_000;

/// Prices per model, in micro-USD per million tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    version: u32,
    as_of: String,
    sources: Vec<PriceSource>,
    models: HashMap<String, PricesMicros>,
}

/// Where a table's prices come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSource {
    /// `openai`, `anthropic`, ...
    pub provider: String,
    /// The provider's public pricing page.
    pub url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    version: u32,
    as_of: String,
    sources: Vec<PriceSource>,
    models: BTreeMap<String, RawPrices>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrices {
    input: String,
    output: String,
    #[serde(default)]
    cached_input: Option<String>,
}

impl PriceTable {
    /// The table shipped with Tollgate, parsed once.
    ///
    /// NB: a unit test parses the shipped file, so the fallback (an empty table: every model
    /// unknown, refused under hard budgets) cannot happen in a tested build; it exists only
    /// so this never panics.
    pub fn builtin() -> &'static PriceTable {
        static BUILTIN: OnceLock<PriceTable> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            PriceTable::from_yaml(BUILTIN_YAML).unwrap_or_else(|e| {
                tracing::error!(error = %e, "built-in price table does not load; every model is unpriced");
                PriceTable { version: 0, as_of: String::new(), sources: Vec::new(), models: HashMap::new() }
            })
        })
    }

    /// Parses a table in the format of `prices/prices.yaml`.
    pub fn from_yaml(text: &str) -> Result<PriceTable, CostError> {
        let raw: RawTable = serde_yaml::from_str(text).map_err(|e| CostError::PriceTable(e.to_string()))?;
        let mut models = HashMap::with_capacity(raw.models.len());
        for (name, p) in raw.models {
            let parse = |field: &str, v: &str| {
                parse_usd_micros(v).map_err(|e| CostError::PriceTable(format!("models.{name}.{field}: {e}")))
            };
            let input_per_mtok = parse("input", &p.input)?;
            let output_per_mtok = parse("output", &p.output)?;
            let cached_input_per_mtok = match &p.cached_input {
                Some(c) => parse("cached_input", c)?,
                None => input_per_mtok,
            };
            if name.is_empty() || name != name.trim() || name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(CostError::PriceTable(format!(
                    "models.{name:?}: model names are lower case with no surrounding spaces"
                )));
            }
            models.insert(name, PricesMicros { input_per_mtok, output_per_mtok, cached_input_per_mtok });
        }
        Ok(PriceTable { version: raw.version, as_of: raw.as_of, sources: raw.sources, models })
    }

    /// The table's version (bumped on every price change).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The date the prices were taken from the sources (`YYYY-MM-DD`).
    pub fn as_of(&self) -> &str {
        &self.as_of
    }

    /// The pricing pages the prices come from.
    pub fn sources(&self) -> &[PriceSource] {
        &self.sources
    }

    /// Number of models priced.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether no model is priced.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Every model and its prices, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, PricesMicros)> {
        self.models.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The prices of `model`, or `None` if it is unknown (the caller refuses the request
    /// under a hard budget rather than charging zero).
    ///
    /// Tried in order: the exact name (case-insensitively); the name without a routing
    /// prefix (`openai/`, `anthropic.`) and without a date suffix (`-2024-08-06`,
    /// `-20241022`, `@20241022`); then the longest table name that is a prefix of it ending
    /// at a `-` (`claude-3-7-sonnet-latest` → `claude-3-7-sonnet`). NB: only `-` counts as
    /// a boundary, so an unlisted `gpt-5.9` is unknown rather than priced as `gpt-5`.
    pub fn lookup(&self, model: &str) -> Option<PricesMicros> {
        let lowered;
        let mut name = model.trim();
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            name = &lowered;
        }
        if let Some(p) = self.models.get(name) {
            return Some(*p);
        }
        let name = strip_date_suffix(strip_routing_prefix(name));
        if let Some(p) = self.models.get(name) {
            return Some(*p);
        }
        self.models
            .iter()
            .filter(|(known, _)| {
                name.len() > known.len()
                    && name.starts_with(known.as_str())
                    && name.as_bytes()[known.len()] == b'-'
            })
            .max_by_key(|(known, _)| known.len())
            .map(|(_, p)| *p)
    }
}

/// `openai/gpt-4o` → `gpt-4o`; `us.anthropic.claude-3-5-sonnet-...` → `claude-3-5-sonnet-...`.
fn strip_routing_prefix(name: &str) -> &str {
    let name = name.rsplit('/').next().unwrap_or(name);
    match name.find("anthropic.") {
        Some(i) => &name[i + "anthropic.".len()..],
        None => name,
    }
}

/// Removes a trailing `-YYYY-MM-DD`, `-YYYYMMDD` or `@YYYYMMDD`.
fn strip_date_suffix(name: &str) -> &str {
    let b = name.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let n = b.len();
    // -YYYY-MM-DD
    if n > 11 && b[n - 11] == b'-' && b[n - 6] == b'-' && b[n - 3] == b'-' {
        let (y, m, d) = (&b[n - 10..n - 6], &b[n - 5..n - 3], &b[n - 2..]);
        if digits(y) && digits(m) && digits(d) {
            return &name[..n - 11];
        }
    }
    // -YYYYMMDD or @YYYYMMDD
    if n > 9
        && matches!(b[n - 9], b'-' | b'@')
        && digits(&b[n - 8..])
        && matches!(&b[n - 8..n - 6], b"19" | b"20")
    {
        return &name[..n - 9];
    }
    name
}

/// What `usage` costs at `prices`, in micro-USD, rounded up (never undercharge).
///
/// NB: `usage.input` counts every prompt token, cached ones included; `cached_input` is the
/// part of it billed at the cached price. A `cached_input` larger than `input` (a provider
/// oddity) is capped at `input` so no token is billed below its price. Saturates at
/// `u64::MAX` instead of overflowing.
pub fn cost_micros(prices: &PricesMicros, usage: &TokenUsage) -> u64 {
    let cached = usage.cached_input.min(usage.input);
    let uncached = usage.input - cached;
    // Each product fits in u128 (u64 × u64); their sum may not.
    let total = (u128::from(uncached) * u128::from(prices.input_per_mtok))
        .saturating_add(u128::from(cached) * u128::from(prices.cached_input_per_mtok))
        .saturating_add(u128::from(usage.output) * u128::from(prices.output_per_mtok));
    div_ceil_saturating(total)
}

/// Converts token·(micro-USD per million tokens) into micro-USD, rounding up.
pub(crate) fn div_ceil_saturating(token_price_product: u128) -> u64 {
    u64::try_from(token_price_product.div_ceil(TOKENS_PER_PRICE_UNIT)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, cached_input: u64, output: u64) -> TokenUsage {
        TokenUsage { input, output, cached_input }
    }

    fn p(input: u64, cached: u64, output: u64) -> PricesMicros {
        PricesMicros { input_per_mtok: input, output_per_mtok: output, cached_input_per_mtok: cached }
    }

    #[test]
    fn builtin_table_loads_with_its_provenance() {
        let t = PriceTable::builtin();
        assert!(t.version() >= 1);
        assert_eq!(t.as_of().len(), 10, "as_of is a YYYY-MM-DD date");
        assert!(t.sources().iter().any(|s| s.provider == "openai" && s.url.starts_with("https://")));
        assert!(t.sources().iter().any(|s| s.provider == "anthropic" && s.url.starts_with("https://")));
        assert!(t.len() > 40);
        for required in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "o1",
            "o3",
            "o3-mini",
            "o4-mini",
            "gpt-5",
            "gpt-5-mini",
            "gpt-5-nano",
            "text-embedding-3-small",
            "text-embedding-3-large",
            "claude-opus-4-1",
            "claude-sonnet-4-5",
            "claude-haiku-4-5",
            "claude-3-7-sonnet",
            "claude-3-5-sonnet",
            "claude-3-5-haiku",
            "mock-1",
            "mock-embedding-1",
        ] {
            assert!(t.models.contains_key(required), "{required} missing from prices.yaml");
        }
        for (name, prices) in t.iter() {
            assert!(prices.input_per_mtok > 0, "{name} has no input price");
            assert!(
                prices.cached_input_per_mtok <= prices.input_per_mtok,
                "{name}: cached dearer than input"
            );
        }
    }

    #[test]
    fn known_prices_are_exact() {
        let t = PriceTable::builtin();
        assert_eq!(t.lookup("gpt-4o"), Some(p(2_500_000, 1_250_000, 10_000_000)));
        assert_eq!(t.lookup("gpt-4o-mini"), Some(p(150_000, 75_000, 600_000)));
        assert_eq!(t.lookup("claude-sonnet-4-5"), Some(p(3_000_000, 300_000, 15_000_000)));
        assert_eq!(t.lookup("text-embedding-3-small"), Some(p(20_000, 20_000, 0)));
        // No cached price listed: cached tokens cost the full input price.
        assert_eq!(t.lookup("gpt-5-pro"), Some(p(15_000_000, 15_000_000, 120_000_000)));
        let mock = t.lookup("mock-1").unwrap();
        assert!(mock.input_per_mtok > 0 && mock.output_per_mtok > 0);
        assert!(t.lookup("mock-embedding-1").unwrap().input_per_mtok > 0);
    }

    #[test]
    fn lookup_normalises_names() {
        let t = PriceTable::builtin();
        let get = |m: &str| t.lookup(m);
        // Date suffixes.
        assert_eq!(get("gpt-4o-2024-08-06"), get("gpt-4o"));
        assert_eq!(get("gpt-4o-mini-2024-07-18"), get("gpt-4o-mini"));
        assert_eq!(get("claude-3-5-sonnet-20241022"), get("claude-3-5-sonnet"));
        assert_eq!(get("claude-sonnet-4-5-20250929"), get("claude-sonnet-4-5"));
        assert_eq!(get("claude-3-5-sonnet@20240620"), get("claude-3-5-sonnet"));
        // An exact dated entry wins over stripping its date.
        assert_eq!(get("gpt-4o-2024-05-13"), Some(p(5_000_000, 5_000_000, 15_000_000)));
        // Longest prefix at a '-' boundary.
        assert_eq!(get("claude-3-7-sonnet-latest"), get("claude-3-7-sonnet"));
        assert_eq!(get("claude-opus-4-0"), get("claude-opus-4"));
        assert_eq!(get("claude-opus-4-20250514"), get("claude-opus-4"));
        assert_eq!(get("gpt-4o-mini-search-preview"), get("gpt-4o-mini"));
        assert_eq!(get("o1-preview"), get("o1"));
        assert_eq!(get("gpt-4-0613"), get("gpt-4"));
        assert_eq!(get("gpt-3.5-turbo-0125"), get("gpt-3.5-turbo"));
        assert_eq!(get("claude-3-5-sonnet-20241022-v2:0"), get("claude-3-5-sonnet"));
        assert_ne!(get("gpt-3.5-turbo-instruct"), get("gpt-3.5-turbo"));
        // Routing prefixes and case.
        assert_eq!(get("openai/gpt-4.1"), get("gpt-4.1"));
        assert_eq!(get("us.anthropic.claude-3-5-haiku-20241022-v1:0"), get("claude-3-5-haiku"));
        assert_eq!(get("GPT-4o"), get("gpt-4o"));
        assert_eq!(get(" gpt-4o "), get("gpt-4o"));
        // Unknown: nothing, never a guess across a non '-' boundary.
        assert_eq!(get("llama-3-70b"), None);
        assert_eq!(get("gpt-5.9"), None);
        assert_eq!(get("gpt-4oo"), None);
        assert_eq!(get("o10"), None);
        assert_eq!(get(""), None);
        assert_eq!(get("-"), None);
    }

    #[test]
    fn date_suffix_stripping() {
        assert_eq!(strip_date_suffix("gpt-4o-2024-08-06"), "gpt-4o");
        assert_eq!(strip_date_suffix("claude-3-haiku-20240307"), "claude-3-haiku");
        assert_eq!(strip_date_suffix("model-12345678"), "model-12345678", "not a plausible year");
        assert_eq!(strip_date_suffix("gpt-4-0613"), "gpt-4-0613");
        assert_eq!(strip_date_suffix("2024-08-06"), "2024-08-06");
        assert_eq!(strip_date_suffix("x-2024-8-06"), "x-2024-8-06");
        assert_eq!(strip_date_suffix("é-2024-08-06"), "é");
    }

    #[test]
    fn cost_rounds_up_and_prices_cached_tokens_separately() {
        let gpt4o = p(2_500_000, 1_250_000, 10_000_000);
        // 1000 input (400 cached) + 500 output:
        // 600*2.5 + 400*1.25 + 500*10 = 1500 + 500 + 5000 = 7000 micro-USD.
        assert_eq!(cost_micros(&gpt4o, &usage(1_000, 400, 500)), 7_000);
        // One token at $0.15/M is 0.15 micro-USD: rounds up to 1.
        let mini = p(150_000, 75_000, 600_000);
        assert_eq!(cost_micros(&mini, &usage(1, 0, 0)), 1);
        assert_eq!(cost_micros(&mini, &usage(0, 0, 0)), 0);
        // Exactly representable amounts are not rounded.
        assert_eq!(cost_micros(&mini, &usage(20, 0, 0)), 3);
        assert_eq!(cost_micros(&mini, &usage(21, 0, 0)), 4);
        // Cached larger than input is capped at input.
        assert_eq!(cost_micros(&gpt4o, &usage(100, 500, 0)), cost_micros(&gpt4o, &usage(100, 100, 0)));
        // Saturates rather than overflowing.
        let dear = p(u64::MAX, u64::MAX, u64::MAX);
        assert_eq!(cost_micros(&dear, &usage(u64::MAX, 0, u64::MAX)), u64::MAX);
    }

    #[test]
    fn table_errors_name_the_field() {
        let bad = "version: 1\nas_of: \"2025-01-01\"\nsources: []\nmodels:\n  m: { input: \"1.2345678\", output: \"1\" }\n";
        let err = PriceTable::from_yaml(bad).unwrap_err().to_string();
        assert!(err.contains("models.m.input") && err.contains("more than 6 decimal places"), "{err}");
        // An unquoted number is read from its text, never through a float.
        let plain =
            "version: 1\nas_of: \"2025-01-01\"\nsources: []\nmodels:\n  m: { input: 0.10, output: 2 }\n";
        assert_eq!(PriceTable::from_yaml(plain).unwrap().lookup("m"), Some(p(100_000, 100_000, 2_000_000)));
        let exponent =
            "version: 1\nas_of: \"2025-01-01\"\nsources: []\nmodels:\n  m: { input: 1e-3, output: \"1\" }\n";
        assert!(PriceTable::from_yaml(exponent).unwrap_err().to_string().contains("models.m.input"));
        let upper = "version: 1\nas_of: \"2025-01-01\"\nsources: []\nmodels:\n  GPT: { input: \"1\", output: \"1\" }\n";
        assert!(PriceTable::from_yaml(upper).unwrap_err().to_string().contains("lower case"));
        let unknown = "version: 1\nas_of: \"x\"\nsources: []\nmodels: {}\nextra: 1\n";
        assert!(PriceTable::from_yaml(unknown).is_err());
    }
}
