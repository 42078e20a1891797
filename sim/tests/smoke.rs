mod common;

#[test]
fn smoke() {
    let sc = lppsp_sim::Scenario::parse(common::SMALL).unwrap();
    let reg = common::registry();
    for s in 0..3 {
        let out = lppsp_sim::run_one(
            &sc,
            s,
            &reg,
            lppsp_sim::RunOptions {
                seed: 1,
                trace_node: Some(0),
                keep_receipts: true,
            },
            &|_| {},
        )
        .unwrap();
        let last = out.series.last().unwrap();
        eprintln!(
            "{s}: {:?} receipts={} trace={}",
            last,
            out.receipts.len(),
            out.trace.len()
        );
        eprintln!(
            "{}",
            lppsp_sim::output::series_csv(&out.series)
                .lines()
                .step_by(6)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
