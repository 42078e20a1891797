//! The FSM balancer's options, read from the `[balancer] options` table.

use lppsp_core::money::{Price, UNIT};
pub use lppsp_core::registry::OptionError;
use lppsp_core::registry::{parse_options, Options};
use serde::Deserialize;

/// Parameters of the FSM balancer.
///
/// Built from the component options map with [`FsmConfig::from_options`];
/// every field has a default, so an empty map gives the RFC's behaviour
/// (threshold 2.0, 5-minute windows, no decay).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FsmConfig {
    /// Task queue pressure x 1000 at or above which the balancer starts
    /// raising the price. Default 2000 (pressure 2.0: two tasks per node).
    pub threshold_milli: u64,
    /// The observation window in milliseconds. Default 300 000 (the RFC's
    /// 5 minutes).
    pub window_ms: u64,
    /// Our addition, not in the RFC: lower the price by 1 (down to
    /// `floor`) after pressure has stayed below `decay_below_milli` for a
    /// whole window while idle. Default off, which follows the RFC to the
    /// letter (it never lowers the price).
    pub decay: bool,
    /// Pressure x 1000 below which the market counts as slack for decay.
    /// Default 1000 (pressure 1.0: fewer tasks than nodes, so some nodes
    /// sit idle). Must not exceed `threshold_milli` when decay is on.
    pub decay_below_milli: u64,
    /// The lowest price decay proposes. Default 1.
    pub floor: Price,
}

impl Default for FsmConfig {
    fn default() -> Self {
        Self {
            threshold_milli: 2000,
            window_ms: 300_000,
            decay: false,
            decay_below_milli: 1000,
            floor: Price::from_micros(UNIT),
        }
    }
}

/// The option names [`FsmConfig`] accepts, for error messages.
pub const OPTION_KEYS: [&str; 5] = [
    "threshold_milli",
    "window_ms",
    "decay",
    "decay_below_milli",
    "floor",
];

impl FsmConfig {
    /// Reads and checks the options; the error names the bad key.
    pub fn from_options(options: &Options) -> Result<Self, String> {
        Self::parse_options(options).map_err(|e| e.to_string())
    }

    /// As [`FsmConfig::from_options`], with a structured error.
    pub fn parse_options(options: &Options) -> Result<Self, OptionError> {
        let cfg: FsmConfig = parse_options(options, &OPTION_KEYS)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), OptionError> {
        if self.threshold_milli == 0 {
            return Err(OptionError::new(
                "threshold_milli",
                "must be above 0 (pressure is never below 0, so the price would rise forever)",
            ));
        }
        if self.window_ms == 0 {
            return Err(OptionError::new("window_ms", "must be above 0"));
        }
        if self.decay {
            if self.decay_below_milli == 0 {
                return Err(OptionError::new(
                    "decay_below_milli",
                    "must be above 0 when decay is on (pressure is never below 0)",
                ));
            }
            if self.decay_below_milli > self.threshold_milli {
                return Err(OptionError::new(
                    "decay_below_milli",
                    format!(
                        "must not exceed threshold_milli ({}) when decay is on",
                        self.threshold_milli
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, toml::Value)]) -> Options {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn empty_options_give_the_defaults() {
        let cfg = FsmConfig::from_options(&Options::new()).unwrap();
        assert_eq!(cfg, FsmConfig::default());
        assert_eq!(cfg.threshold_milli, 2000);
        assert_eq!(cfg.window_ms, 300_000);
        assert!(!cfg.decay);
    }

    #[test]
    fn all_options_are_read() {
        let cfg = FsmConfig::from_options(&opts(&[
            ("threshold_milli", toml::Value::Integer(2500)),
            ("window_ms", toml::Value::Integer(60_000)),
            ("decay", toml::Value::Boolean(true)),
            ("decay_below_milli", toml::Value::Integer(800)),
            ("floor", toml::Value::String("0.5".into())),
        ]))
        .unwrap();
        assert_eq!(
            cfg,
            FsmConfig {
                threshold_milli: 2500,
                window_ms: 60_000,
                decay: true,
                decay_below_milli: 800,
                floor: "0.5".parse().unwrap(),
            }
        );
        // A whole-number floor may be written as an integer.
        let cfg = FsmConfig::from_options(&opts(&[("floor", toml::Value::Integer(2))])).unwrap();
        assert_eq!(cfg.floor, Price::from_units(2).unwrap());
    }

    #[test]
    fn options_errors_name_the_key() {
        let cases: Vec<(Options, &str)> = vec![
            (
                opts(&[("treshold_milli", toml::Value::Integer(1))]),
                "treshold_milli",
            ),
            (
                opts(&[("threshold_milli", toml::Value::String("2.0".into()))]),
                "threshold_milli",
            ),
            (
                opts(&[("threshold_milli", toml::Value::Float(2.0))]),
                "threshold_milli",
            ),
            (
                opts(&[("threshold_milli", toml::Value::Integer(-1))]),
                "threshold_milli",
            ),
            (
                opts(&[("threshold_milli", toml::Value::Integer(0))]),
                "threshold_milli",
            ),
            (opts(&[("window_ms", toml::Value::Integer(0))]), "window_ms"),
            (
                opts(&[("window_ms", toml::Value::String("5m".into()))]),
                "window_ms",
            ),
            (opts(&[("decay", toml::Value::Integer(1))]), "decay"),
            (
                opts(&[("floor", toml::Value::String("-1".into()))]),
                "floor",
            ),
            (
                opts(&[("floor", toml::Value::String("0.0000001".into()))]),
                "floor",
            ),
            (
                opts(&[
                    ("decay", toml::Value::Boolean(true)),
                    ("decay_below_milli", toml::Value::Integer(3000)),
                ]),
                "decay_below_milli",
            ),
            (
                opts(&[
                    ("decay", toml::Value::Boolean(true)),
                    ("decay_below_milli", toml::Value::Integer(0)),
                ]),
                "decay_below_milli",
            ),
        ];
        for (options, key) in cases {
            let err = FsmConfig::parse_options(&options).unwrap_err();
            assert_eq!(err.key, key, "{err}");
            let text = FsmConfig::from_options(&options).unwrap_err();
            assert!(text.contains(&format!("`{key}`")), "{text}");
        }
    }

    #[test]
    fn decay_bounds_are_only_checked_when_decay_is_on() {
        // A low threshold with decay off must not trip over the decay
        // default the user never set.
        let cfg = FsmConfig::from_options(&opts(&[("threshold_milli", toml::Value::Integer(500))]))
            .unwrap();
        assert_eq!(cfg.threshold_milli, 500);
        assert!(cfg.decay_below_milli > cfg.threshold_milli);
    }
}
