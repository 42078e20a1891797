//! Module identities and the kernel names that carry them.

use std::fmt;
use std::str::FromStr;

use lppsp_core::wire::KernelName;
use sha2::{Digest, Sha256};

/// What every WASM kernel name starts with; the SHA-256 in lowercase hex
/// follows (PROTOCOL.md 2.2: `"wasm:" and the module's SHA-256 in hex`).
pub const KERNEL_PREFIX: &str = "wasm:";

/// A module's identity: the SHA-256 of its bytes exactly as given to
/// [`crate::WasmExecutor::load`] (the `.wasm` binary, or the WAT text when
/// text was given).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleId([u8; 32]);

impl ModuleId {
    /// The identity of `bytes` (no parsing: any bytes have one).
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Wraps a digest.
    pub fn from_bytes(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest in lowercase hex (64 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleId({})", self.to_hex())
    }
}

impl FromStr for ModuleId {
    type Err = String;

    /// Reads 64 lowercase hex digits (the form kernel names carry).
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!("{s:?} is not 64 lowercase hex digits"));
        }
        let mut digest = [0u8; 32];
        hex::decode_to_slice(s, &mut digest).map_err(|e| e.to_string())?;
        Ok(Self(digest))
    }
}

/// The kernel name jobs use for module `id`: `wasm:` and 64 hex digits
/// (69 characters, within [`KernelName::MAX_LEN`]).
pub fn kernel_name(id: &ModuleId) -> KernelName {
    // Always valid: a fixed prefix of name characters and 64 hex digits,
    // 69 bytes in all (the unit tests check the rules hold).
    KernelName::new(format!("{KERNEL_PREFIX}{id}")).expect("wasm:<64 hex> is a valid kernel name")
}

/// The module a kernel name refers to, if it is a WASM kernel name
/// (`wasm:` and exactly 64 lowercase hex digits).
pub fn parse_kernel_name(kernel: &KernelName) -> Option<ModuleId> {
    kernel
        .as_str()
        .strip_prefix(KERNEL_PREFIX)
        .and_then(|hex| hex.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_round_trip() {
        let id = ModuleId::of(b"(module)");
        let name = kernel_name(&id);
        assert_eq!(name.as_str().len(), 69);
        assert!(name.as_str().len() <= KernelName::MAX_LEN);
        assert!(name.as_str().starts_with("wasm:"));
        assert_eq!(parse_kernel_name(&name), Some(id));
    }

    #[test]
    fn other_names_are_not_modules() {
        for s in [
            "w2-monte-carlo-pi",
            "wasm:",
            "wasm:00",
            "wasm-0000000000000000000000000000000000000000000000000000000000000000",
            "wasm:000000000000000000000000000000000000000000000000000000000000000A",
            "wasm:00000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let k = KernelName::new(s).unwrap();
            assert_eq!(parse_kernel_name(&k), None, "{s}");
        }
    }

    #[test]
    fn ids_are_sha256_of_the_bytes() {
        // SHA-256 of the empty string.
        assert_eq!(
            ModuleId::of(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
