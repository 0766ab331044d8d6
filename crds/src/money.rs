//! Money is integer micro-USD everywhere. This module parses the decimal strings admins
//! write (`"12.50"`) exactly, with no floating point on the way.

/// One US dollar in micro-USD.
pub const MICROS_PER_USD: u64 = 1_000_000;

/// Why a decimal USD string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("empty amount")]
    Empty,
    #[error("{0:?} is not a decimal amount like \"12.50\"")]
    NotDecimal(String),
    #[error("{0:?} has more than 6 decimal places (the resolution is one micro-USD)")]
    TooPrecise(String),
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// Parses a non-negative decimal USD amount (`"0.15"`, `"100"`, `"2.500000"`) into micro-USD.
pub fn parse_usd_micros(text: &str) -> Result<u64, MoneyError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(MoneyError::Empty);
    }
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) {
        return Err(MoneyError::NotDecimal(text.to_owned()));
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > 6 {
        return Err(MoneyError::TooPrecise(text.to_owned()));
    }
    let overflow = || MoneyError::Overflow(text.to_owned());
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| overflow())? };
    let mut frac_micros: u64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        frac_micros += u64::from(b - b'0') * 10u64.pow(5 - i as u32);
    }
    whole.checked_mul(MICROS_PER_USD).and_then(|w| w.checked_add(frac_micros)).ok_or_else(overflow)
}

/// Formats micro-USD as a decimal USD string with six places (`"0.000150"`).
pub fn format_usd(micros: u64) -> String {
    format!("{}.{:06}", micros / MICROS_PER_USD, micros % MICROS_PER_USD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly() {
        assert_eq!(parse_usd_micros("12.50"), Ok(12_500_000));
        assert_eq!(parse_usd_micros("0.000001"), Ok(1));
        assert_eq!(parse_usd_micros("100"), Ok(100_000_000));
        assert_eq!(parse_usd_micros(".5"), Ok(500_000));
        assert_eq!(parse_usd_micros("2.5000000"), Ok(2_500_000));
    }

    #[test]
    fn refuses_bad_amounts() {
        assert_eq!(parse_usd_micros(""), Err(MoneyError::Empty));
        assert!(matches!(parse_usd_micros("-1"), Err(MoneyError::NotDecimal(_))));
        assert!(matches!(parse_usd_micros("1e3"), Err(MoneyError::NotDecimal(_))));
        assert!(matches!(parse_usd_micros("."), Err(MoneyError::NotDecimal(_))));
        assert!(matches!(parse_usd_micros("0.0000001"), Err(MoneyError::TooPrecise(_))));
        assert!(matches!(parse_usd_micros("99999999999999999999"), Err(MoneyError::Overflow(_))));
    }

    #[test]
    fn formats() {
        assert_eq!(format_usd(150), "0.000150");
        assert_eq!(format_usd(12_500_000), "12.500000");
    }
}
