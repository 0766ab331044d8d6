//! Fault injection: the `Fault` vocabulary shared by the `x-mock-fault` header, the
//! `--fault` flag and [`crate::MockConfig::default_fault`].

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A failure the mock provider can inject into a response.
///
/// Parsed from (and displayed as) the `x-mock-fault` header syntax: `status:<code>`,
/// `429:<retry-after-secs>`, `reset-before`, `reset-mid`, `stall`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Respond with this HTTP status and a provider-shaped error body.
    Status(u16),
    /// Respond 429 with a `retry-after` header and a `rate_limit_error` body.
    RateLimited {
        /// Value of the `retry-after` header, in seconds.
        retry_after_secs: u64,
    },
    /// Reset the TCP connection before any response byte is sent.
    ResetBeforeBody,
    /// Send the headers and part of the body, then reset the connection.
    ResetMidBody,
    /// Streams: send the first chunks, then nothing more. Non-streaming: never respond.
    Stall,
}

impl FromStr for Fault {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let spec = spec.trim();
        let invalid = |reason: &str| Error::InvalidFault { spec: spec.to_owned(), reason: reason.to_owned() };
        if spec.eq_ignore_ascii_case("reset-before") {
            return Ok(Self::ResetBeforeBody);
        }
        if spec.eq_ignore_ascii_case("reset-mid") {
            return Ok(Self::ResetMidBody);
        }
        if spec.eq_ignore_ascii_case("stall") {
            return Ok(Self::Stall);
        }
        let Some((kind, arg)) = spec.split_once(':') else {
            return Err(invalid(
                "expected status:<code>, 429:<retry-after-secs>, reset-before, reset-mid or stall",
            ));
        };
        let arg = arg.trim();
        match kind.trim() {
            k if k.eq_ignore_ascii_case("status") => {
                let code: u16 = arg.parse().map_err(|_| invalid("status code must be a number"))?;
                // NB: only error statuses: a 1xx would be taken for an interim response and a
                // 2xx/3xx "fault" is not a fault.
                if !(400..=599).contains(&code) {
                    return Err(invalid("status code must be in 400..=599"));
                }
                Ok(Self::Status(code))
            }
            "429" => {
                let retry_after_secs =
                    arg.parse().map_err(|_| invalid("retry-after must be a whole number of seconds"))?;
                Ok(Self::RateLimited { retry_after_secs })
            }
            _ => Err(invalid("unknown fault kind")),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(code) => write!(f, "status:{code}"),
            Self::RateLimited { retry_after_secs } => write!(f, "429:{retry_after_secs}"),
            Self::ResetBeforeBody => f.write_str("reset-before"),
            Self::ResetMidBody => f.write_str("reset-mid"),
            Self::Stall => f.write_str("stall"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spec_and_round_trips() {
        let cases = [
            ("status:503", Fault::Status(503)),
            ("STATUS: 500", Fault::Status(500)),
            ("429:7", Fault::RateLimited { retry_after_secs: 7 }),
            ("reset-before", Fault::ResetBeforeBody),
            (" reset-mid ", Fault::ResetMidBody),
            ("stall", Fault::Stall),
        ];
        for (spec, want) in cases {
            let got: Fault = spec.parse().unwrap();
            assert_eq!(got, want, "{spec}");
            assert_eq!(got.to_string().parse::<Fault>().unwrap(), want);
        }
    }

    #[test]
    fn rejects_bad_specs() {
        for spec in ["", "status", "status:abc", "status:42", "status:200", "429:x", "boom:1", "reset"] {
            assert!(spec.parse::<Fault>().is_err(), "{spec}");
        }
    }
}
