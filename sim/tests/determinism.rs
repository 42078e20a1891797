//! One seed, one output: the same seed writes the same bytes, another seed
//! writes other ones.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(name, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_same_bytes_other_seed_other_series() {
    let sc = common::small(240, &["fsm", "none"]);
    let reg = common::registry();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    // Two threads for the first run, one for the second: scheduling of
    // runs on threads must not show in the output either.
    lppsp_sim::run_experiment(&sc, &reg, &[7], &a, 2, &|_| {}).unwrap();
    lppsp_sim::run_experiment(&sc, &reg, &[7], &b, 1, &|_| {}).unwrap();
    lppsp_sim::run_experiment(&sc, &reg, &[8], &c, 1, &|_| {}).unwrap();
    let (fa, fb, fc) = (files(&a), files(&b), files(&c));
    assert!(fa.contains_key("fsm/series-seed7.csv"), "{:?}", fa.keys());
    assert!(fa.contains_key("none/earnings-seed7.csv"));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        assert!(
            fb.get(name) == Some(bytes),
            "{name} differs between two runs of seed 7"
        );
    }
    let series7 = fa.get("fsm/series-seed7.jsonl").unwrap();
    let series8 = fc.get("fsm/series-seed8.jsonl").unwrap();
    assert_ne!(series7, series8, "seeds 7 and 8 gave the same series");
    // Something happened: jobs ran and money moved.
    let text = String::from_utf8(series7.clone()).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(last["jobs_done"].as_u64().unwrap() > 0, "{last}");
    assert!(last["receipts"].as_u64().unwrap() > 0, "{last}");
}
