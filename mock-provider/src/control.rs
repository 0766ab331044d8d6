//! The per-request `x-mock-*` control headers, and the fault decision they feed.

use std::time::Duration;

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{Fault, Shared};

/// A tool call the reply must make (`x-mock-tool-calls`).
#[derive(Debug)]
pub(crate) struct ToolCallSpec {
    pub(crate) name: String,
    /// A JSON object, kept byte-for-byte as sent so tests can compare it verbatim.
    pub(crate) arguments: Box<RawValue>,
}

/// What the `x-mock-fault` header asked for.
#[derive(Debug, Default)]
pub(crate) enum FaultHeader {
    #[default]
    Absent,
    /// `x-mock-fault: none`: no fault for this request, whatever the config says.
    Disabled,
    Set(Fault),
}

/// Parsed control headers of one request.
#[derive(Debug, Default)]
pub(crate) struct Control {
    pub(crate) reply: Option<String>,
    pub(crate) tool_calls: Option<Vec<ToolCallSpec>>,
    /// `x-mock-tool-rounds`: make the tool calls only while the conversation holds fewer
    /// tool results than this (an agent loop then ends with a text answer).
    pub(crate) tool_rounds: Option<usize>,
    pub(crate) latency: Option<Duration>,
    pub(crate) ttft: Duration,
    pub(crate) chunk_gap: Duration,
    pub(crate) chunks: Option<usize>,
    pub(crate) fault: FaultHeader,
    pub(crate) fault_rate: Option<f64>,
}

impl Control {
    /// Parses the control headers; the error names the offending header.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, String> {
        let mut control = Self::default();
        // NB: most requests carry no control header; skip the lookups for them.
        if !headers.keys().any(|k| k.as_str().starts_with("x-mock-")) {
            return Ok(control);
        }
        control.reply = text(headers, "x-mock-reply")?.map(str::to_owned);
        if let Some(raw) = text(headers, "x-mock-tool-calls")? {
            control.tool_calls = Some(parse_tool_calls(raw).map_err(|e| invalid("x-mock-tool-calls", &e))?);
        }
        if let Some(raw) = text(headers, "x-mock-tool-rounds")? {
            control.tool_rounds =
                Some(raw.trim().parse().map_err(|_| invalid("x-mock-tool-rounds", "expected an integer"))?);
        }
        control.latency = millis(headers, "x-mock-latency-ms")?;
        control.ttft = millis(headers, "x-mock-ttft-ms")?.unwrap_or_default();
        control.chunk_gap = millis(headers, "x-mock-chunk-gap-ms")?.unwrap_or_default();
        if let Some(raw) = text(headers, "x-mock-chunks")? {
            match raw.trim().parse::<usize>() {
                Ok(n) if n > 0 => control.chunks = Some(n),
                _ => return Err(invalid("x-mock-chunks", "expected a positive integer")),
            }
        }
        if let Some(raw) = text(headers, "x-mock-fault")? {
            control.fault = if raw.trim().eq_ignore_ascii_case("none") {
                FaultHeader::Disabled
            } else {
                FaultHeader::Set(
                    raw.parse().map_err(|e: crate::Error| invalid("x-mock-fault", &e.to_string()))?,
                )
            };
        }
        if let Some(raw) = text(headers, "x-mock-fault-rate")? {
            match raw.trim().parse::<f64>() {
                Ok(rate) if (0.0..=1.0).contains(&rate) => control.fault_rate = Some(rate),
                _ => {
                    return Err(invalid("x-mock-fault-rate", "expected a probability between 0 and 1"));
                }
            }
        }
        Ok(control)
    }

    /// The fault this request gets, if any: the header's, at the header's rate (default 1);
    /// else the config's `default_fault` at the config's `fault_rate`.
    pub(crate) fn fault(&self, shared: &Shared) -> Option<Fault> {
        let config = shared.config();
        let header_fault = match &self.fault {
            FaultHeader::Disabled => return None,
            FaultHeader::Set(fault) => Some(fault),
            FaultHeader::Absent => None,
        };
        let fallback = || config.default_fault.clone().unwrap_or(Fault::Status(500));
        match (header_fault, self.fault_rate) {
            (Some(fault), rate) => shared.roll(rate.unwrap_or(1.0)).then(|| fault.clone()),
            (None, Some(rate)) => shared.roll(rate).then(fallback),
            (None, None) => shared.roll(config.fault_rate).then(fallback),
        }
    }

    /// The latency before the response headers: the header's, else the config's.
    pub(crate) fn latency(&self, shared: &Shared) -> Duration {
        self.latency.unwrap_or(shared.config().latency)
    }
}

fn invalid(header: &str, reason: &str) -> String {
    format!("invalid {header} header: {reason}")
}

/// A header's value as UTF-8 (header values are bytes; replies may be any text).
fn text<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Option<&'h str>, String> {
    headers
        .get(name)
        .map(|v| std::str::from_utf8(v.as_bytes()).map_err(|_| invalid(name, "not UTF-8")))
        .transpose()
}

fn millis(headers: &HeaderMap, name: &'static str) -> Result<Option<Duration>, String> {
    text(headers, name)?
        .map(|raw| {
            raw.trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| invalid(name, "expected a whole number of milliseconds"))
        })
        .transpose()
}

fn parse_tool_calls(raw: &str) -> Result<Vec<ToolCallSpec>, String> {
    #[derive(Deserialize)]
    struct Wire {
        name: String,
        #[serde(default)]
        arguments: Option<Box<RawValue>>,
    }
    let wire: Vec<Wire> = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    if wire.is_empty() {
        return Err("expected at least one tool call".to_owned());
    }
    wire.into_iter()
        .map(|call| {
            let arguments = match call.arguments {
                Some(args) if args.get().starts_with('{') => args,
                Some(_) => return Err(format!("arguments of {:?} must be an object", call.name)),
                None => RawValue::from_string("{}".to_owned()).map_err(|e| e.to_string())?,
            };
            Ok(ToolCallSpec { name: call.name, arguments })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::MockConfig;

    fn control(pairs: &[(&'static str, &'static str)]) -> Result<Control, String> {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        Control::from_headers(&map)
    }

    #[test]
    fn parses_tool_calls_keeping_arguments_verbatim() {
        let c = control(&[(
            "x-mock-tool-calls",
            r#"[{"name":"get_weather","arguments":{"city": "Paris"}},{"name":"noop"}]"#,
        )])
        .unwrap();
        let calls = c.tool_calls.unwrap();
        assert_eq!(calls[0].name, "get_weather");
        assert_eq!(calls[0].arguments.get(), r#"{"city": "Paris"}"#);
        assert_eq!(calls[1].arguments.get(), "{}");
    }

    #[test]
    fn rejects_bad_values_naming_the_header() {
        for (name, value) in [
            ("x-mock-latency-ms", "soon"),
            ("x-mock-chunks", "0"),
            ("x-mock-fault", "explode"),
            ("x-mock-fault-rate", "1.5"),
            ("x-mock-tool-calls", r#"[{"name":"f","arguments":[1]}]"#),
            ("x-mock-tool-calls", "[]"),
        ] {
            let err = control(&[(name, value)]).unwrap_err();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn fault_precedence() {
        let always = Shared::new(MockConfig {
            fault_rate: 1.0,
            default_fault: Some(Fault::Stall),
            ..MockConfig::default()
        });
        let never = Shared::new(MockConfig::default());

        assert_eq!(control(&[]).unwrap().fault(&always), Some(Fault::Stall));
        assert_eq!(control(&[]).unwrap().fault(&never), None);
        let disabled = control(&[("x-mock-fault", "none")]).unwrap();
        assert_eq!(disabled.fault(&always), None);
        let header = control(&[("x-mock-fault", "status:503")]).unwrap();
        assert_eq!(header.fault(&always), Some(Fault::Status(503)));
        assert_eq!(header.fault(&never), Some(Fault::Status(503)));
        let zero_rate = control(&[("x-mock-fault", "stall"), ("x-mock-fault-rate", "0")]).unwrap();
        assert_eq!(zero_rate.fault(&always), None);
        let rate_only = control(&[("x-mock-fault-rate", "1")]).unwrap();
        assert_eq!(rate_only.fault(&never), Some(Fault::Status(500)));
        assert_eq!(rate_only.fault(&always), Some(Fault::Stall));
    }

    #[test]
    fn seeded_fault_rate_is_reproducible_and_roughly_right() {
        let run = || {
            let shared = Shared::new(MockConfig { fault_rate: 0.3, seed: Some(7), ..MockConfig::default() });
            let c = Control::default();
            (0..1000).map(|_| c.fault(&shared).is_some()).collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        let hits = first.iter().filter(|hit| **hit).count();
        assert!((200..400).contains(&hits), "{hits}");
    }
}
