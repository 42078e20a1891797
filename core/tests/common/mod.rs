//! What the job tracker tests share: node ids and a job of W1 tasks.
#![allow(dead_code)]

use bytes::Bytes;
use lppsp_core::charge::Promise;
use lppsp_core::component::Constraints;
use lppsp_core::job::{JobSpec, JobTracker};
use lppsp_core::money::{Bounty, Price};
use lppsp_core::wire::{JobId, KernelName};
use lppsp_core::NodeId;

pub fn id(n: u8) -> NodeId {
    NodeId::from_bytes([0, 0, 0, 0, 0, 0, 0, n])
}

pub const CLIENT: u8 = 0xC0;

/// A job of `inputs` W1 inputs, each run on `verify` nodes; budget one
/// million, 3 attempts, 1 s task time-out.
pub fn tracker(inputs: u64, verify: u32) -> JobTracker {
    JobTracker::new(JobSpec {
        id: JobId(9),
        client: id(CLIENT),
        kernel: KernelName::new("w1-sum-squares").unwrap(),
        inputs: (0..inputs)
            .map(|i| Bytes::from(i.to_le_bytes().to_vec()))
            .collect(),
        budget: Bounty::from_units(1_000_000).unwrap(),
        constraints: Constraints::default(),
        max_attempts: 3,
        task_timeout_ms: 1000,
        est_task_micros: 1000,
        verify,
    })
}

/// The market price the tests place tasks at.
pub fn price() -> Price {
    Price::from_units(1).unwrap()
}

/// What every test node promised: 1000 MFLOPS, 4 slots.
pub fn promise(_: &NodeId) -> Promise {
    Promise {
        power: 1000,
        slots: 4,
    }
}
