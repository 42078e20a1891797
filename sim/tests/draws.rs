//! The jobs `lppsp sim --real` submits are the simulator's: under one
//! seed, `draws::all_jobs` lists exactly the arrivals and bursts the
//! simulator draws, in the same order.

mod common;

use lppsp_sim::draws;

#[test]
fn the_real_runner_faces_the_simulators_jobs() {
    let mut sc = common::small(600, &["none"]);
    // Without churn the clients never change, and without a max price no
    // submitter is deterred: every drawn job is submitted.
    sc.population.join_per_hour = 0.0;
    sc.population.leave_per_hour = 0.0;
    sc.population.fail_per_hour = 0.0;
    sc.jobs.max_price = None;
    let reg = common::registry();
    for seed in [1, 7] {
        let run = lppsp_sim::RunOptions {
            seed,
            trace_node: None,
            keep_receipts: false,
        };
        let out = lppsp_sim::run_one(&sc, 0, &reg, run, &|_| {}).unwrap();
        let jobs = draws::all_jobs(&sc, seed);
        let submitted = out.series.last().unwrap().jobs_submitted;
        assert_eq!(submitted, jobs.len() as u64, "seed {seed}");
        // The burst's ten jobs come at its time, among the arrivals.
        assert_eq!(jobs.iter().filter(|(at, _)| *at == 100_000).count(), 10);
        assert!(jobs.windows(2).all(|w| w[0].0 <= w[1].0));
    }
    // And the population is the simulator's: the same draws give the same
    // nodes.
    let mut a = draws::stream(3, draws::POPULATION_STREAM);
    let mut b = draws::stream(3, draws::POPULATION_STREAM);
    for _ in 0..40 {
        assert_eq!(
            draws::node(&mut a, &sc.population),
            draws::node(&mut b, &sc.population)
        );
    }
}
