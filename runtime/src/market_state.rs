//! The committed market state (epoch, proposer, price) kept in
//! `data_dir/market.json`, so that a node started again holds the price
//! the pool agreed on instead of the configured initial price.
//!
//! The node writes it each time the price agreement commits a new state,
//! before it sends anything at the new price: the text is written to
//! `market.json.tmp`, synced, renamed over `market.json` and the folder
//! synced, so after a crash the file holds either the old state or the new
//! one, whole. A file that does not read as a state is an error naming the
//! file; the node then refuses to start rather than guess a price.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use lppsp_core::market::Committed;
use lppsp_core::money::Price;
use lppsp_core::NodeId;
use serde::{Deserialize, Serialize};

/// The file's name in data_dir.
pub const FILE_NAME: &str = "market.json";

/// The version of the file's layout this build writes and reads.
const VERSION: u32 = 1;

/// Largest file read: a state is well under 200 bytes.
const MAX_FILE_BYTES: u64 = 4096;

/// A stored state that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MarketStateError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: not a stored market state ({message}); move it away to start from \
         `market.initial_price` and take the pool's price from the members",
        path.display()
    )]
    Invalid { path: PathBuf, message: String },
}

/// The file's layout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredState {
    version: u32,
    epoch: u64,
    /// `None` only at epoch 0 (the configured initial price).
    proposer: Option<NodeId>,
    price: Price,
}

/// Where a node's committed state is kept.
#[derive(Debug, Clone)]
pub struct MarketStateFile {
    path: PathBuf,
}

impl MarketStateFile {
    /// The state file of `data_dir` (not read yet).
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored state; `None` when the node has never committed one.
    pub fn load(&self) -> Result<Option<Committed>, MarketStateError> {
        use std::io::Read as _;
        let io = |source| MarketStateError::Io {
            path: self.path.clone(),
            source,
        };
        let invalid = |message: String| MarketStateError::Invalid {
            path: self.path.clone(),
            message,
        };
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mut text = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(invalid(format!("longer than {MAX_FILE_BYTES} bytes")));
        }
        let stored: StoredState =
            serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        if stored.version != VERSION {
            return Err(invalid(format!(
                "version {} (this build reads {VERSION})",
                stored.version
            )));
        }
        match (stored.epoch, stored.proposer) {
            (0, Some(_)) => return Err(invalid("a proposer at epoch 0".into())),
            (1.., None) => {
                return Err(invalid(format!(
                    "no proposer for epoch {}; only epoch 0 has none",
                    stored.epoch
                )))
            }
            _ => {}
        }
        Ok(Some(Committed {
            epoch: stored.epoch,
            proposer: stored.proposer,
            price: stored.price,
        }))
    }

    /// Stores `state` durably: written aside, synced, renamed over the
    /// file, folder synced.
    pub fn save(&self, state: &Committed) -> Result<(), MarketStateError> {
        let io = |source| MarketStateError::Io {
            path: self.path.clone(),
            source,
        };
        let stored = StoredState {
            version: VERSION,
            epoch: state.epoch,
            proposer: state.proposer,
            price: state.price,
        };
        let mut text = serde_json::to_vec_pretty(&stored).map_err(|e| io(e.into()))?;
        text.push(b'\n');
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = crate::private::open(
            &tmp,
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true),
        )
        .map_err(io)?;
        file.write_all(&text).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(epoch: u64, units: u64) -> Committed {
        Committed {
            epoch,
            proposer: Some(NodeId::from_bytes([1, 2, 3, 4, 5, 6, 7, 8])),
            price: Price::from_units(units).unwrap(),
        }
    }

    #[test]
    fn a_saved_state_loads_back_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = MarketStateFile::new(dir.path());
        assert!(file.load().unwrap().is_none());
        file.save(&state(3, 4)).unwrap();
        file.save(&state(7, 5)).unwrap();
        assert_eq!(file.load().unwrap(), Some(state(7, 5)));
        // Nothing is left aside.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [FILE_NAME]);
    }

    #[test]
    fn a_bad_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = MarketStateFile::new(dir.path());
        let id = "0102030405060708";
        for (text, says) in [
            ("", "EOF"),
            ("{\"version\":1,\"epoch\":", "EOF"),
            ("\u{0}\u{1}garbage", "expected value"),
            (
                "{\"version\":2,\"epoch\":1,\"proposer\":\"0102030405060708\",\"price\":\"2\"}",
                "version 2",
            ),
            (
                "{\"version\":1,\"epoch\":3,\"proposer\":null,\"price\":\"2\"}",
                "no proposer",
            ),
            (
                &format!("{{\"version\":1,\"epoch\":0,\"proposer\":\"{id}\",\"price\":\"2\"}}"),
                "epoch 0",
            ),
            (
                &format!("{{\"version\":1,\"epoch\":1,\"proposer\":\"{id}\",\"price\":\"-2\"}}"),
                "DIGITS",
            ),
            (
                &format!("{{\"version\":1,\"epoch\":-1,\"proposer\":\"{id}\",\"price\":\"2\"}}"),
                "invalid value",
            ),
            (
                "{\"version\":1,\"epoch\":1,\"proposer\":\"XYZ\",\"price\":\"2\"}",
                "node id",
            ),
            (
                &format!(
                    "{{\"version\":1,\"epoch\":1,\"proposer\":\"{id}\",\"price\":\"2\",\"more\":1}}"
                ),
                "unknown field",
            ),
            (&" ".repeat(5000), "longer than"),
        ] {
            std::fs::write(file.path(), text).unwrap();
            let err = file.load().unwrap_err().to_string();
            assert!(
                err.contains(&file.path().display().to_string()) && err.contains(says),
                "{text:?}: {err}"
            );
        }
    }
}
