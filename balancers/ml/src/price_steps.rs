//! Integer arithmetic on prices: the fitted clearing price rounded to a
//! [`Price`] once, then the step limit and the deadband every proposal
//! goes through.

use lppsp_core::money::{Price, UNIT};

/// `p` whole units as a [`Price`], rounded to the nearest micro-unit (half
/// away from zero). NaN and negatives give 0 and values beyond the type
/// saturate; the bounds clamp both afterwards.
pub fn price_from_units(p: f64) -> Price {
    let micros = (p * UNIT as f64).round();
    if micros.is_nan() || micros <= 0.0 {
        Price::ZERO
    } else if micros >= u64::MAX as f64 {
        Price::from_micros(u64::MAX)
    } else {
        // In range and integral, so the cast is exact.
        Price::from_micros(micros as u64)
    }
}

/// Moves from `market` towards `target` by at most `max_step_milli`/1000
/// of `market`, and by at least one micro-unit so that tiny prices are not
/// stuck. Integer arithmetic: the up limit rounds down and the down limit
/// up, so the step never exceeds the maximum (beyond that one micro-unit).
pub fn limit_step(market: Price, target: Price, max_step_milli: u64) -> Price {
    let m = u128::from(market.micros());
    let step = u128::from(max_step_milli.min(1000));
    let up = (m * (1000 + step) / 1000).max(m + 1);
    let down = (m * (1000 - step)).div_ceil(1000).min(m.saturating_sub(1));
    let t = u128::from(target.micros()).clamp(down, up);
    Price::from_micros(u64::try_from(t).unwrap_or(u64::MAX))
}

/// Whether `target` is within `deadband_milli`/1000 of `market` (or equal).
pub fn in_deadband(market: Price, target: Price, deadband_milli: u64) -> bool {
    let diff = u128::from(market.micros().abs_diff(target.micros()));
    diff == 0 || diff * 1000 < u128::from(deadband_milli) * u128::from(market.micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_conversion_rounds_to_nearest_micro() {
        assert_eq!(price_from_units(1.5), Price::from_micros(1_500_000));
        assert_eq!(price_from_units(0.0000004), Price::ZERO);
        assert_eq!(price_from_units(0.0000005), Price::from_micros(1));
        assert_eq!(price_from_units(-3.0), Price::ZERO);
        assert_eq!(price_from_units(f64::NAN), Price::ZERO);
        assert_eq!(
            price_from_units(f64::INFINITY),
            Price::from_micros(u64::MAX)
        );
        assert_eq!(price_from_units(1e300), Price::from_micros(u64::MAX));
    }

    #[test]
    fn step_limit_is_integer_and_moves_tiny_prices() {
        let p = Price::from_micros;
        assert_eq!(limit_step(p(10_000_000), p(20_000_000), 100), p(11_000_000));
        assert_eq!(limit_step(p(10_000_000), p(1_000_000), 100), p(9_000_000));
        assert_eq!(limit_step(p(10_000_000), p(10_500_000), 100), p(10_500_000));
        // 10% of 5 micro-units rounds to nothing; one micro-unit still moves.
        assert_eq!(limit_step(p(5), p(100), 100), p(6));
        assert_eq!(limit_step(p(5), p(0), 100), p(4));
        assert_eq!(limit_step(p(0), p(100), 100), p(1));
        assert_eq!(limit_step(p(0), p(0), 100), p(0));
        assert_eq!(limit_step(p(u64::MAX), p(u64::MAX), 1000), p(u64::MAX));
    }

    #[test]
    fn deadband_arithmetic() {
        let p = Price::from_micros;
        assert!(in_deadband(p(1_000_000), p(1_000_000), 0));
        assert!(in_deadband(p(1_000_000), p(1_009_999), 10));
        assert!(!in_deadband(p(1_000_000), p(1_010_000), 10));
        assert!(!in_deadband(p(0), p(1), 10));
    }
}
