//! Decimal token amounts to and from raw `U256` units, exactly, with no float anywhere.

use alloy::primitives::U256;

/// Why an amount string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Empty string.
    #[error("amount must not be empty")]
    Empty,
    /// A leading minus sign.
    #[error("amount must be positive")]
    Negative,
    /// Not a plain decimal number.
    #[error("amount must be a decimal string such as \"12.5\"")]
    Malformed,
    /// More fractional digits than the asset has.
    #[error("amount has more than {0} decimal places")]
    TooManyDecimals(u8),
    /// Zero.
    #[error("amount must be greater than zero")]
    Zero,
    /// Above 2^256-1 raw units.
    #[error("amount is too large")]
    Overflow,
}

/// Parses a positive decimal string (`"12.5"`) into raw units for an asset with `decimals`.
pub fn parse_units(s: &str, decimals: u8) -> Result<U256, AmountError> {
    if s.is_empty() {
        return Err(AmountError::Empty);
    }
    if s.starts_with('-') {
        return Err(AmountError::Negative);
    }
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let digits_only = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty())
        || !digits_only(int)
        || !digits_only(frac)
        || (s.contains('.') && frac.is_empty())
        || int.is_empty()
    {
        return Err(AmountError::Malformed);
    }
    if frac.len() > decimals as usize {
        return Err(AmountError::TooManyDecimals(decimals));
    }
    // Guard against absurdly long inputs before any arithmetic.
    if int.trim_start_matches('0').len() + decimals as usize > 78 {
        return Err(AmountError::Overflow);
    }
    let mut all = String::with_capacity(int.len() + decimals as usize);
    all.push_str(int);
    all.push_str(frac);
    for _ in frac.len()..decimals as usize {
        all.push('0');
    }
    let v = U256::from_str_radix(&all, 10).map_err(|_| AmountError::Overflow)?;
    if v.is_zero() {
        return Err(AmountError::Zero);
    }
    Ok(v)
}

/// Formats raw units as a decimal string without trailing zeros (`12500000`, 6 → `"12.5"`).
pub fn format_units(v: U256, decimals: u8) -> String {
    let digits = v.to_string();
    let d = decimals as usize;
    if d == 0 {
        return digits;
    }
    let (int, frac) = if digits.len() > d {
        let (i, f) = digits.split_at(digits.len() - d);
        (i.to_string(), f.to_string())
    } else {
        ("0".to_string(), format!("{digits:0>d$}"))
    };
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int
    } else {
        format!("{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse_units("12.5", 6), Ok(U256::from(12_500_000u64)));
        assert_eq!(
            parse_units("1", 18),
            Ok(U256::from(10u64).pow(U256::from(18)))
        );
        assert_eq!(parse_units("0.000001", 6), Ok(U256::from(1u64)));
        assert_eq!(parse_units("007", 0), Ok(U256::from(7u64)));
        assert_eq!(format_units(U256::from(12_500_000u64), 6), "12.5");
        assert_eq!(format_units(U256::from(1u64), 6), "0.000001");
        assert_eq!(format_units(U256::from(5_000_000u64), 6), "5");
        assert_eq!(format_units(U256::ZERO, 18), "0");
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(parse_units("", 6), Err(AmountError::Empty));
        assert_eq!(parse_units("0", 6), Err(AmountError::Zero));
        assert_eq!(parse_units("0.000", 6), Err(AmountError::Zero));
        assert_eq!(parse_units("-1", 6), Err(AmountError::Negative));
        assert_eq!(
            parse_units("1.0000001", 6),
            Err(AmountError::TooManyDecimals(6))
        );
        for bad in [
            "abc", "1.", ".5", "1e5", " 1", "1,5", "+1", "0x10", "1.2.3", "١",
        ] {
            assert_eq!(parse_units(bad, 6), Err(AmountError::Malformed), "{bad}");
        }
    }

    #[test]
    fn max_round_trips_and_one_more_overflows() {
        let max = U256::MAX.to_string();
        assert_eq!(parse_units(&max, 0), Ok(U256::MAX));
        assert_eq!(format_units(U256::MAX, 0), max);
        let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert_eq!(parse_units(over, 0), Err(AmountError::Overflow));
        assert_eq!(parse_units(&"9".repeat(500), 0), Err(AmountError::Overflow));
        let f = format_units(U256::MAX, 18);
        assert_eq!(parse_units(&f, 18), Ok(U256::MAX));
    }
}
