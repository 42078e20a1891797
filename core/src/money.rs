//! Exact fixed-point money: prices and bounty amounts.
//!
//! Both are integers counting millionths of a unit, so that every charge is
//! computed exactly and every node computes the same balance from the same
//! receipts. There are no floats anywhere on the money path.
//!
//! Text form (wire and config): `DIGITS [ "." 1*6DIGIT ]`, no sign, no
//! exponent, no leading zeros except a lone `0` before the point. The
//! canonical form written by this crate drops trailing fractional zeros
//! (`1.5`, `12`, `0.000001`).

use std::fmt;
use std::str::FromStr;

/// Number of fractional decimal digits kept.
pub const SCALE_DIGITS: u32 = 6;
/// One whole unit, in micro-units.
pub const UNIT: u64 = 1_000_000;

/// Error parsing a fixed-point amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("empty amount")]
    Empty,
    #[error("amount {0:?} is not DIGITS[.DIGITS]")]
    Syntax(String),
    #[error("amount {0:?} has more than 6 fractional digits")]
    TooPrecise(String),
    #[error("amount {0:?} has a leading zero")]
    LeadingZero(String),
    #[error("amount {0:?} is too large")]
    Overflow(String),
}

fn parse_micros(s: &str) -> Result<u64, AmountError> {
    if s.is_empty() {
        return Err(AmountError::Empty);
    }
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AmountError::Syntax(s.to_string()));
    }
    if whole.len() > 1 && whole.starts_with('0') {
        return Err(AmountError::LeadingZero(s.to_string()));
    }
    let mut micros: u64 = 0;
    for b in whole.bytes() {
        micros = micros
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| AmountError::Overflow(s.to_string()))?;
    }
    micros = micros
        .checked_mul(UNIT)
        .ok_or_else(|| AmountError::Overflow(s.to_string()))?;
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::Syntax(s.to_string()));
        }
        if frac.len() > SCALE_DIGITS as usize {
            return Err(AmountError::TooPrecise(s.to_string()));
        }
        let mut f: u64 = 0;
        for b in frac.bytes() {
            f = f * 10 + u64::from(b - b'0');
        }
        // frac.len() <= 6, so the exponent is in 0..=6.
        f *= 10u64.pow(SCALE_DIGITS - frac.len() as u32);
        micros = micros
            .checked_add(f)
            .ok_or_else(|| AmountError::Overflow(s.to_string()))?;
    }
    Ok(micros)
}

fn fmt_micros(micros: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let whole = micros / UNIT;
    let frac = micros % UNIT;
    if frac == 0 {
        write!(f, "{whole}")
    } else {
        let digits = format!("{frac:06}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

macro_rules! fixed_point {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(u64);

        impl $name {
            /// Zero.
            pub const ZERO: Self = Self(0);
            /// From a count of millionths.
            pub const fn from_micros(micros: u64) -> Self {
                Self(micros)
            }
            /// From a whole number of units; `None` on overflow.
            pub const fn from_units(units: u64) -> Option<Self> {
                match units.checked_mul(UNIT) {
                    Some(m) => Some(Self(m)),
                    None => None,
                }
            }
            /// The amount in millionths.
            pub const fn micros(self) -> u64 {
                self.0
            }
            /// `self + other`, `None` on overflow.
            pub fn checked_add(self, other: Self) -> Option<Self> {
                self.0.checked_add(other.0).map(Self)
            }
            /// `self - other`, `None` below zero.
            pub fn checked_sub(self, other: Self) -> Option<Self> {
                self.0.checked_sub(other.0).map(Self)
            }
            /// `self - other`, clamped at zero.
            pub fn saturating_sub(self, other: Self) -> Self {
                Self(self.0.saturating_sub(other.0))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_micros(self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = AmountError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_micros(s).map(Self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a fixed-point amount such as \"12\" or \"0.25\" (at most 6 decimals)")
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$name, E> {
                        $name::from_units(v).ok_or_else(|| E::custom("amount too large"))
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$name, E> {
                        let v = u64::try_from(v).map_err(|_| E::custom("amount must not be negative"))?;
                        self.visit_u64(v)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

fixed_point!(
    /// The market price: bounty per MFLOPS of processing power per second.
    Price
);
fixed_point!(
    /// An amount of bounty, the community's currency.
    Bounty
);

impl Price {
    /// The FSM balancer's step: one whole unit (RFC 1.4 a, "plus 1").
    pub fn plus_one(self) -> Option<Self> {
        self.checked_add(Self(UNIT))
    }
}

/// Error computing a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("charge overflows: price {price} x {power} MFLOPS x {micros} us")]
pub struct ChargeOverflow {
    pub price: Price,
    pub power: u64,
    pub micros: u64,
}

/// Bounty owed for `power` MFLOPS used for `micros` microseconds at `price`
/// (RFC 1.3: bounty = price x processing power x computing time).
///
/// Rounded down to the micro-unit, so a payer is never charged for time it
/// did not use; each task is charged on its own so rounding cannot drift
/// between nodes that add the same receipts.
pub fn charge(price: Price, power: u64, micros: u64) -> Result<Bounty, ChargeOverflow> {
    let err = ChargeOverflow {
        price,
        power,
        micros,
    };
    let v = u128::from(price.micros())
        .checked_mul(u128::from(power))
        .and_then(|v| v.checked_mul(u128::from(micros)))
        .ok_or(err)?
        / u128::from(UNIT);
    u64::try_from(v).map(Bounty::from_micros).map_err(|_| err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonical_forms() {
        for (text, micros) in [
            ("0", 0),
            ("1", UNIT),
            ("1.5", 1_500_000),
            ("12.000001", 12_000_001),
            ("0.25", 250_000),
        ] {
            let p: Price = text.parse().unwrap();
            assert_eq!(p.micros(), micros);
            assert_eq!(p.to_string(), text);
        }
        assert_eq!("1.50".parse::<Price>().unwrap().to_string(), "1.5");
    }

    #[test]
    fn rejects_malformed_amounts() {
        assert_eq!("".parse::<Price>(), Err(AmountError::Empty));
        for bad in ["-1", "+1", "1.", ".5", "1e3", "0x1", " 1", "1 "] {
            assert!(
                matches!(bad.parse::<Price>(), Err(AmountError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "01".parse::<Price>(),
            Err(AmountError::LeadingZero(_))
        ));
        assert!(matches!(
            "1.0000001".parse::<Price>(),
            Err(AmountError::TooPrecise(_))
        ));
        assert!(matches!(
            "18446744073710".parse::<Price>(),
            Err(AmountError::Overflow(_))
        ));
    }

    #[test]
    fn charge_is_exact() {
        let price: Price = "1.5".parse().unwrap();
        // 1.5 x 2000 MFLOPS x 0.25 s = 750
        assert_eq!(
            charge(price, 2000, 250_000).unwrap(),
            Bounty::from_units(750).unwrap()
        );
        // Rounds down to the micro-unit.
        assert_eq!(charge(Price::from_micros(1), 1, 1).unwrap(), Bounty::ZERO);
        assert!(charge(Price::from_micros(u64::MAX), u64::MAX, u64::MAX).is_err());
    }
}
