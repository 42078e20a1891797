//! Signed balances.

use std::fmt;

use lppsp_core::money::{Bounty, UNIT};

/// A node's balance in micro-units of bounty: the community grant plus
/// what it earned minus what it spent. Signed, because the ledger records
/// what was signed, not what was affordable, and wide enough that no sum of
/// 64-bit charges can overflow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Balance(i128);

impl Balance {
    pub const ZERO: Self = Self(0);

    pub const fn from_micros(micros: i128) -> Self {
        Self(micros)
    }
    /// The balance in millionths of a unit.
    pub const fn micros(self) -> i128 {
        self.0
    }
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }
    /// The balance as a [`Bounty`], when it is not negative and fits.
    pub fn to_bounty(self) -> Option<Bounty> {
        u64::try_from(self.0).ok().map(Bounty::from_micros)
    }
}

impl From<Bounty> for Balance {
    fn from(b: Bounty) -> Self {
        Self(i128::from(b.micros()))
    }
}

impl fmt::Display for Balance {
    /// Like [`Bounty`]'s text, with a leading `-` when negative.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let unit = u128::from(UNIT);
        let (whole, frac) = (abs / unit, abs % unit);
        if frac == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let digits = format!("{frac:06}");
            write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_bounty() {
        assert_eq!(Balance::from_micros(0).to_string(), "0");
        assert_eq!(Balance::from_micros(1_500_000).to_string(), "1.5");
        assert_eq!(Balance::from_micros(-1_500_000).to_string(), "-1.5");
        assert_eq!(Balance::from_micros(-1).to_string(), "-0.000001");
        assert_eq!(
            Balance::from_micros(i128::MIN).to_string(),
            "-170141183460469231731687303715884.105728"
        );
        let b: Bounty = "12.25".parse().unwrap();
        assert_eq!(Balance::from(b).to_string(), b.to_string());
        assert_eq!(Balance::from(b).to_bounty(), Some(b));
        assert_eq!(Balance::from_micros(-1).to_bounty(), None);
    }
}
