//! What `lppsp status` and `describe()` show of the balancer: the last
//! proposal, the last good fit, and the whole state as one serializable
//! [`Status`].

use lppsp_core::money::Price;
use serde::Serialize;

use crate::explore::Exploration;
use crate::model::Fit;
use crate::reason::{duration, Reason};
use crate::{MlBalancer, NAME};

/// The last proposal made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LastProposal {
    pub at_ms: u64,
    pub price: Price,
    /// An exploration probe rather than a clearing-price step.
    pub probe: bool,
    /// Whether a commit at this price has been seen since.
    pub committed: bool,
}

/// The last fit that passed every guard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GoodFit {
    pub fit: Fit,
    /// The `at_ms` of the sample it was made on.
    pub at_ms: u64,
    /// Kept samples since; it is trusted while this is below `window`.
    pub samples_since: u64,
}

/// The balancer's state for `lppsp status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub balancer: &'static str,
    /// The committed price as last seen.
    pub market: Option<Price>,
    /// Samples in the window.
    pub samples: usize,
    /// Of which usable in a fit.
    pub usable_samples: usize,
    /// Distinct prices among the usable samples.
    pub distinct_prices: usize,
    /// The fit on the current window, if one came out (poor ones too).
    pub fit: Option<Fit>,
    /// The last fit that passed every guard.
    pub last_good_fit: Option<GoodFit>,
    /// What the balancer concluded, in words.
    pub reason: Reason,
    pub last_proposal: Option<LastProposal>,
    pub exploration: Option<Exploration>,
    /// Commits seen (ours or other proposers').
    pub commits: u64,
}

impl MlBalancer {
    /// Everything `lppsp status` shows, serializable.
    pub fn status(&self) -> Status {
        Status {
            balancer: NAME,
            market: self.market,
            samples: self.window.len(),
            usable_samples: self.usable,
            distinct_prices: self.distinct,
            fit: self.fit,
            last_good_fit: self.last_good.map(|(fit, at_ms, kept)| GoodFit {
                fit,
                at_ms,
                samples_since: self.kept.saturating_sub(kept),
            }),
            reason: self.reason.clone(),
            last_proposal: self.last_proposal,
            exploration: self.exploration,
            commits: self.commits,
        }
    }

    /// The one-line state `describe()` gives.
    pub(crate) fn describe_line(&self) -> String {
        let market = self
            .market
            .map_or_else(|| "unknown".to_string(), |p| p.to_string());
        let fit = self.fit.map_or_else(
            || "no fit".to_string(),
            |f| {
                format!(
                    "fit e_d={:.3} (R^2 {:.2}) e_s={:.3} (R^2 {:.2}) p*={:.6}",
                    f.demand_elasticity,
                    f.demand_r2,
                    f.supply_elasticity,
                    f.supply_r2,
                    f.clearing_price
                )
            },
        );
        let mut extra = String::new();
        if let Some((good, at_ms, kept)) = self.last_good {
            if self.fit != Some(good) {
                extra.push_str(&format!(
                    "; last good fit p*={:.6} at t={}, {} samples ago",
                    good.clearing_price,
                    duration(at_ms),
                    self.kept.saturating_sub(kept)
                ));
            }
        }
        if let Some(ex) = self.exploration {
            extra.push_str(&format!(
                "; exploring around {} ({} probes)",
                ex.anchor, ex.probes
            ));
        }
        format!(
        "{NAME}: {}; market {market}; {} samples ({} usable, {} distinct price(s)); {fit}{extra}",
        self.reason,
        self.window.len(),
        self.usable,
        self.distinct
    )
    }
}
