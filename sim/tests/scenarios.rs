//! The bundled scenarios parse, and a bad key is named with its file.

use std::path::Path;

#[test]
fn bundled_scenarios_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scenarios");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let sc = lppsp_sim::Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
            assert!(!sc.strategies.is_empty());
            n += 1;
        }
    }
    assert!(n >= 3, "found {n} scenarios in {}", dir.display());
}

#[test]
fn unknown_and_bad_keys_are_named_with_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.toml");
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scenarios/small.toml"),
    )
    .unwrap();
    std::fs::write(&path, base.replace("slots = 2", "slots = 2\nslotz = 3")).unwrap();
    let e = lppsp_sim::Scenario::load(&path).unwrap_err().to_string();
    assert!(e.contains("bad.toml") && e.contains("slotz"), "{e}");
    std::fs::write(&path, base.replace("loss = 0.01", "loss = 2.0")).unwrap();
    let e = lppsp_sim::Scenario::load(&path).unwrap_err().to_string();
    assert!(e.contains("bad.toml") && e.contains("links.loss"), "{e}");
    std::fs::write(&path, base.replace("count = 40", "count = \"many\"")).unwrap();
    let e = lppsp_sim::Scenario::load(&path).unwrap_err().to_string();
    assert!(e.contains("population.count"), "{e}");
}
