//! Defaults of a submitted job and of a node's settlement, shared by
//! `lppsp submit`, the node and the simulator's scenarios, so that a
//! scenario that leaves a field out behaves as a user's job that does.

/// Placements a task may fail before its job fails.
pub const MAX_ATTEMPTS: u32 = 3;
/// A placed task with no result after this long is placed again, s.
pub const TASK_TIMEOUT_S: u64 = 600;
/// Expected run time of one task before any has finished, ms: short, so
/// that a new job fills a node's pipeline until times are measured.
pub const EST_TASK_MS: u64 = 10;
/// Nodes that must agree on each input's result (1: no verification).
pub const VERIFY: u32 = 1;
/// Open meters are settled into receipts at least this often, ms.
pub const SETTLE_EVERY_MS: u64 = 10_000;

/// [`MAX_ATTEMPTS`], for serde's `default = "..."`.
#[must_use]
pub fn max_attempts() -> u32 {
    MAX_ATTEMPTS
}

/// [`TASK_TIMEOUT_S`], for serde's `default = "..."`.
#[must_use]
pub fn task_timeout_s() -> u64 {
    TASK_TIMEOUT_S
}

/// [`EST_TASK_MS`], for serde's `default = "..."`.
#[must_use]
pub fn est_task_ms() -> u64 {
    EST_TASK_MS
}

/// [`VERIFY`], for serde's `default = "..."`.
#[must_use]
pub fn verify() -> u32 {
    VERIFY
}
