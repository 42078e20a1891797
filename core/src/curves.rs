//! The two sides of the market at a price: what a compute node offers (its
//! reserve price and slot curve) and whether a job buys (its maximum price).
//!
//! The node, its clients' schedulers, the market samples and the simulator
//! all ask these two questions through here, so that "supply at price p"
//! and "demand at price p" mean one thing everywhere (docs/balancers.md,
//! "Supply and demand").

use crate::money::Price;

/// Most steps a supply curve may have: each is one line of the config.
pub const MAX_STEPS: usize = 64;

/// One step of a supply curve: from `price` on, the node offers `slots`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSlots {
    pub price: Price,
    pub slots: u32,
}

/// What a compute node offers at each price: nothing below `reserve`, then
/// `slots`, raised by each step whose price the market reaches.
///
/// Built by [`SupplyCurve::new`], which checks it, so every curve in use
/// is one: reserve at or below the first step, step prices and slots
/// strictly increasing, no step above `slots`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SupplyCurve {
    reserve: Price,
    /// Slots offered from the reserve up to the first step.
    base: u32,
    steps: Vec<PriceSlots>,
}

/// Why a supply curve was refused: the config key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct CurveError {
    pub key: &'static str,
    pub message: String,
}

impl SupplyCurve {
    /// A node that offers `slots` at every price at or above `reserve`.
    #[must_use]
    pub fn flat(reserve: Price, slots: u32) -> Self {
        Self {
            reserve,
            base: slots,
            steps: Vec::new(),
        }
    }

    /// A node with `slots` task slots (`share.slots`), a reserve price
    /// (`share.min_price`) and optional steps (`share.price_slots`). With
    /// steps, the node offers nothing below the first step (or the
    /// reserve, if higher), and each step's slots from its price on; the
    /// steps are the whole curve. Without steps it offers all its slots
    /// from the reserve on.
    pub fn new(reserve: Price, slots: u32, steps: &[PriceSlots]) -> Result<Self, CurveError> {
        let err = |key: &'static str, message: String| CurveError { key, message };
        if steps.is_empty() {
            return Ok(Self::flat(reserve, slots));
        }
        if steps.len() > MAX_STEPS {
            return Err(err(
                "share.price_slots",
                format!("{} steps, at most {MAX_STEPS}", steps.len()),
            ));
        }
        let mut prev: Option<PriceSlots> = None;
        for (i, s) in steps.iter().enumerate() {
            if s.slots == 0 || s.slots > slots {
                return Err(err(
                    "share.price_slots",
                    format!(
                        "step {} (price {}): slots must be in 1..={slots} (share.slots)",
                        i + 1,
                        s.price
                    ),
                ));
            }
            if let Some(p) = prev {
                if s.price <= p.price || s.slots <= p.slots {
                    return Err(err(
                        "share.price_slots",
                        format!(
                            "step {} (price {}, {} slots): prices and slots must both rise \
                             from one step to the next (previous: price {}, {} slots)",
                            i + 1,
                            s.price,
                            s.slots,
                            p.price,
                            p.slots
                        ),
                    ));
                }
            }
            prev = Some(*s);
        }
        let Some(first) = steps.first().copied() else {
            return Ok(Self::flat(reserve, slots));
        };
        if reserve > first.price {
            return Err(err(
                "share.min_price",
                format!(
                    "{reserve} is above the first share.price_slots price {}: \
                     that step would never apply; lower min_price or remove the step",
                    first.price
                ),
            ));
        }
        Ok(Self {
            reserve: first.price,
            base: first.slots,
            steps: steps.get(1..).unwrap_or_default().to_vec(),
        })
    }

    /// The lowest price at which the node offers any slot.
    #[must_use]
    pub fn reserve(&self) -> Price {
        self.reserve
    }

    /// Slots offered at `price`: 0 below the reserve.
    #[must_use]
    pub fn slots_at(&self, price: Price) -> u32 {
        if price < self.reserve {
            return 0;
        }
        self.steps
            .iter()
            .take_while(|s| s.price <= price)
            .last()
            .map_or(self.base, |s| s.slots)
    }

    /// The same curve with no step above `slots` (the node's slots after
    /// the owner's `cpu_share_percent`).
    #[must_use]
    pub fn capped(mut self, slots: u32) -> Self {
        self.base = self.base.min(slots);
        for s in &mut self.steps {
            s.slots = s.slots.min(slots);
        }
        self
    }
}

/// Whether a node whose Hand names `reserve` offers anything at `price`:
/// the check a client's scheduler and the market samples make on a peer.
#[must_use]
pub fn offers_at(reserve: Price, price: Price) -> bool {
    reserve <= price
}

/// Whether a job with maximum price `max` buys at `price` (no maximum:
/// at any price). Its tasks wait while this is false, and are then no
/// demand at that price.
#[must_use]
pub fn buys_at(max: Option<Price>, price: Price) -> bool {
    max.is_none_or(|m| price <= m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Price {
        s.parse().unwrap()
    }

    #[test]
    fn a_flat_curve_offers_every_slot_from_its_reserve() {
        let c = SupplyCurve::flat(p("1.5"), 4);
        assert_eq!(c.slots_at(p("1.499999")), 0);
        assert_eq!(c.slots_at(p("1.5")), 4);
        assert_eq!(c.slots_at(p("100")), 4);
        assert_eq!(SupplyCurve::default().slots_at(Price::ZERO), 0);
        assert_eq!(SupplyCurve::flat(Price::ZERO, 2).slots_at(Price::ZERO), 2);
    }

    #[test]
    fn steps_offer_more_slots_at_higher_prices() {
        let steps = [
            PriceSlots {
                price: p("1"),
                slots: 1,
            },
            PriceSlots {
                price: p("2"),
                slots: 4,
            },
        ];
        let c = SupplyCurve::new(p("0.5"), 4, &steps).unwrap();
        assert_eq!(c.reserve(), p("1"));
        assert_eq!(c.slots_at(p("0.9")), 0);
        assert_eq!(c.slots_at(p("1")), 1);
        assert_eq!(c.slots_at(p("1.99")), 1);
        assert_eq!(c.slots_at(p("2")), 4);
        assert_eq!(c.capped(2).slots_at(p("3")), 2);
    }

    #[test]
    fn bad_curves_name_their_key() {
        let step = |price: &str, slots| PriceSlots {
            price: p(price),
            slots,
        };
        let e = SupplyCurve::new(p("3"), 4, &[step("2", 1)]).unwrap_err();
        assert_eq!(e.key, "share.min_price");
        let e = SupplyCurve::new(Price::ZERO, 4, &[step("2", 1), step("1", 2)]).unwrap_err();
        assert_eq!(e.key, "share.price_slots");
        assert!(e.message.contains("must both rise"), "{e}");
        let e = SupplyCurve::new(Price::ZERO, 4, &[step("1", 2), step("2", 2)]).unwrap_err();
        assert!(e.message.contains("must both rise"), "{e}");
        let e = SupplyCurve::new(Price::ZERO, 4, &[step("1", 5)]).unwrap_err();
        assert!(e.message.contains("1..=4"), "{e}");
        let e = SupplyCurve::new(Price::ZERO, 4, &[step("1", 0)]).unwrap_err();
        assert!(e.message.contains("1..=4"), "{e}");
        let many: Vec<PriceSlots> = (1..=65).map(|i| step(&i.to_string(), i)).collect();
        assert!(SupplyCurve::new(Price::ZERO, 100, &many).is_err());
    }

    #[test]
    fn a_job_buys_at_or_below_its_maximum() {
        assert!(buys_at(None, p("1000")));
        assert!(buys_at(Some(p("1")), p("1")));
        assert!(!buys_at(Some(p("1")), p("1.000001")));
        assert!(offers_at(p("1"), p("1")));
        assert!(!offers_at(p("1.000001"), p("1")));
    }
}
