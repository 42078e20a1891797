//! The random draws of a scenario: who the nodes are and which jobs arrive
//! when. The simulator and the real-node runner (`lppsp sim --real`) both
//! draw through here, from the same seeded streams in the same order, so
//! under one seed they face the same population and the same jobs.

use lppsp_core::money::Price;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{ArchShare, Dist, Jobs, Population, Scenario};

/// The stream job arrivals draw from.
pub const ARRIVALS_STREAM: u64 = 1;
/// The stream churn draws from.
pub const CHURN_STREAM: u64 = 2;
/// The stream simulated links draw from.
pub const LINKS_STREAM: u64 = 3;
/// The stream the population draws from.
pub const POPULATION_STREAM: u64 = 4;

/// The generator of one random process under `seed`.
#[must_use]
pub fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// A uniform number in [0, 1).
pub fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// One value of `d`.
pub fn draw(rng: &mut ChaCha8Rng, d: &Dist) -> f64 {
    match *d {
        Dist::Fixed { value } => value,
        Dist::Uniform { min, max } => min + unit(rng) * (max - min),
        Dist::Lognormal { median, sigma } => {
            let u1 = unit(rng).max(f64::MIN_POSITIVE);
            let u2 = unit(rng);
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            median * (sigma * z).exp()
        }
    }
}

/// A price from a drawn value, in whole micro-units.
#[must_use]
pub fn price_of(v: f64) -> Price {
    Price::from_micros((v.max(0.0) * 1e6).round().min(9e18) as u64)
}

/// An architecture by weight; `None` when no weight is set.
fn pick_arch(rng: &mut ChaCha8Rng, shares: &[ArchShare]) -> Option<String> {
    let total: u32 = shares.iter().map(|a| a.weight).sum();
    let mut pick = (unit(rng) * f64::from(total)) as u32;
    for a in shares {
        if pick < a.weight {
            return Some(a.name.clone());
        }
        pick -= a.weight;
    }
    None
}

/// One node of the population.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDraw {
    /// Processing power, MFLOPS.
    pub power: u64,
    pub arch: String,
    /// The owner's reserve price: below it the node offers nothing.
    pub reserve: Price,
    /// Whether the node submits jobs.
    pub is_client: bool,
}

/// The next node of the population.
pub fn node(rng: &mut ChaCha8Rng, pop: &Population) -> NodeDraw {
    let power = draw(rng, &pop.power).round().max(1.0) as u64;
    let arch = pick_arch(rng, &pop.architectures).unwrap_or_else(|| "x86_64".to_string());
    let reserve = pop
        .reserve_price
        .as_ref()
        .map(|d| price_of(draw(rng, d)))
        .unwrap_or(Price::ZERO);
    let is_client = unit(rng) < pop.clients;
    NodeDraw {
        power,
        arch,
        reserve,
        is_client,
    }
}

/// One job as it arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDraw {
    /// Work of each task, MFLOP.
    pub works: Vec<u64>,
    /// The most its submitter pays per unit of power and time.
    pub max_price: Option<Price>,
    /// The architecture its tasks need, if any.
    pub arch: Option<String>,
    /// Which client submits it: a uniform number in [0, 1) that picks
    /// among the clients alive at the time.
    pub client_pick: f64,
}

/// The client of `clients` (node indices) a job's `client_pick` names.
#[must_use]
pub fn pick_client(client_pick: f64, clients: &[usize]) -> Option<usize> {
    clients
        .get((client_pick * clients.len() as f64) as usize)
        .copied()
}

/// The contents of the next job.
pub fn job(rng: &mut ChaCha8Rng, jobs: &Jobs, pop: &Population) -> JobDraw {
    let tasks = draw(rng, &jobs.tasks).round().max(1.0) as u64;
    let works: Vec<u64> = (0..tasks)
        .map(|_| draw(rng, &jobs.task_mflop).round().max(1.0) as u64)
        .collect();
    let max_price = jobs.max_price.as_ref().map(|d| price_of(draw(rng, d)));
    let arch = if unit(rng) < jobs.arch_constrained {
        pick_arch(rng, &pop.architectures)
    } else {
        None
    };
    let client_pick = unit(rng);
    JobDraw {
        works,
        max_price,
        arch,
        client_pick,
    }
}

/// The time of the next arrival after `now_ms` (a Poisson process at
/// `rate_per_s`, times the surge factor during the surge, by thinning),
/// or `None` when it falls after the end.
pub fn next_arrival_ms(
    rng: &mut ChaCha8Rng,
    jobs: &Jobs,
    duration_s: u64,
    now_ms: u64,
) -> Option<u64> {
    let peak = jobs.surge.as_ref().map_or(1.0, |s| s.factor.max(1.0));
    let max_rate = jobs.rate_per_s * peak;
    if max_rate <= 0.0 {
        return None;
    }
    let mut t = now_ms as f64;
    loop {
        let u = unit(rng);
        t += -(1.0 - u).ln() / max_rate * 1000.0;
        if t > (duration_s * 1000) as f64 {
            return None;
        }
        let at_s = t / 1000.0;
        let rate = match &jobs.surge {
            Some(s) if at_s >= s.at_s as f64 && at_s < s.until_s as f64 => {
                jobs.rate_per_s * s.factor
            }
            _ => jobs.rate_per_s,
        };
        if unit(rng) * max_rate < rate {
            return Some(t.ceil() as u64);
        }
    }
}

/// Every job of a scenario under one seed, in the order the simulator
/// draws them: Poisson arrivals, and bursts at their times (a burst
/// before an arrival at the same moment). For runs without churn, where
/// the clients never change.
#[must_use]
pub fn all_jobs(sc: &Scenario, seed: u64) -> Vec<(u64, JobDraw)> {
    let mut rng = stream(seed, ARRIVALS_STREAM);
    let mut bursts: Vec<(u64, u32)> = sc
        .jobs
        .bursts
        .iter()
        .map(|b| (b.at_s.saturating_mul(1000), b.jobs))
        .collect();
    bursts.sort_by_key(|b| b.0);
    let mut bursts = bursts.into_iter().peekable();
    let end_ms = sc.duration_s.saturating_mul(1000);
    let mut out = Vec::new();
    let mut next = next_arrival_ms(&mut rng, &sc.jobs, sc.duration_s, 0);
    loop {
        let burst = bursts
            .peek()
            .copied()
            .filter(|&(at, _)| at <= end_ms && next.is_none_or(|a| at <= a));
        if let Some((at, n)) = burst {
            bursts.next();
            for _ in 0..n {
                out.push((at, job(&mut rng, &sc.jobs, &sc.population)));
            }
        } else if let Some(at) = next {
            out.push((at, job(&mut rng, &sc.jobs, &sc.population)));
            next = next_arrival_ms(&mut rng, &sc.jobs, sc.duration_s, at);
        } else {
            break;
        }
    }
    out
}
