//! Issue #9: plugins. Real `lppsp` processes load real plugin libraries:
//! the example scheduler drives a 3-process cluster, the example balancer
//! runs the client's market, a panicking plugin is survived, and every way
//! a plugin can fail to load is an error that names the library's path.
//!
//! The plugin libraries are cdylibs of this workspace; `cargo test` does
//! not build cdylibs for a test of another package, so the first test that
//! needs them runs `cargo build -p <plugin packages>` with this test's
//! profile (a no-op when they are up to date, and it keeps a library from
//! being stale after its source changed).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

/// Plugin packages and their library names.
const FASTEST_FIRST: (&str, &str) = ("lppsp-plugin-fastest-first", "lppsp_plugin_fastest_first");
const PROPORTIONAL: (&str, &str) = ("lppsp-plugin-proportional", "lppsp_plugin_proportional");
const MISBEHAVING: (&str, &str) = (
    "lppsp-plugin-fixture-misbehaving",
    "lppsp_plugin_fixture_misbehaving",
);
const FOREIGN_LAYOUT: (&str, &str) = (
    "lppsp-plugin-fixture-foreign-layout",
    "lppsp_plugin_fixture_foreign_layout",
);
const NOT_A_PLUGIN: (&str, &str) = (
    "lppsp-plugin-fixture-not-a-plugin",
    "lppsp_plugin_fixture_not_a_plugin",
);
const ALL: [(&str, &str); 5] = [
    FASTEST_FIRST,
    PROPORTIONAL,
    MISBEHAVING,
    FOREIGN_LAYOUT,
    NOT_A_PLUGIN,
];

/// Builds the plugin libraries once per test run; returns their folder.
fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build_plugins(&ALL))
}

fn plugin(which: (&str, &str)) -> PathBuf {
    plugin_dir().join(lib_file(which.1))
}

/// Runs `lppsp` with `args` and `env`; returns (success, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config file holding `text` in a fresh folder.
struct Cfg {
    dir: tempfile::TempDir,
    path: PathBuf,
}

fn cfg(text: &str) -> Cfg {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, text).unwrap();
    Cfg { dir, path }
}

fn plugin_section(section: &str, lib: &Path) -> String {
    format!(
        "[{section}]\nkind = \"plugin\"\npath = \"{}\"\n",
        lib.display()
    )
}

/// `lppsp config check` on `c`: must fail, with one stderr line
/// `error: <config>: <section> plugin <rest>`; returns `<rest>`. (A
/// plugin that panics also has its panic message printed by the plugin's
/// panic hook, before that line.)
fn config_check_error(c: &Cfg, section: &str, env: &[(&str, &str)]) -> String {
    let (ok, out, err) = run(&["config", "check", c.path.to_str().unwrap()], env);
    assert!(!ok, "config check should fail:\n{out}");
    let prefix = format!("error: {}: {section} plugin ", c.path.display());
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert!(
        errors.len() == 1 && errors[0].starts_with(&prefix),
        "expected one line starting {prefix:?}, got:\n{err}"
    );
    errors[0][prefix.len()..].to_string()
}

// ------------------------------------------------------------ real nodes

#[test]
fn the_fastest_first_plugin_places_every_task_on_the_most_powerful_node() {
    let community = Community::new();
    let fastest = plugin(FASTEST_FIRST);
    let proportional = plugin(PROPORTIONAL);
    let nodes = [
        ("client", "client"),
        ("fast", "compute"),
        ("slow", "compute"),
    ];
    let mut procs = start_cluster_with(&community, &nodes, |i, _| match i {
        // max_nodes = 1: only the most powerful node, so that every task
        // shows where the policy sent it. The built-in price-aware would
        // rank the 1-MFLOPS node first (cheapest per task before any
        // measurement), round-robin would spread the tasks.
        0 => format!(
            "{}[scheduler.options]\nmax_nodes = 1\n{}",
            plugin_section("scheduler", &fastest),
            plugin_section("balancer", &proportional)
        ),
        2 => "[share]\nmax_mflops = 1\n".to_string(),
        _ => String::new(),
    });
    let slow = procs.pop().unwrap();
    let fast = procs.pop().unwrap();
    let client = procs.pop().unwrap();
    let (fast_id, slow_id) = (fast.id(), slow.id());
    let powers = || -> Vec<(String, u64)> {
        client.status()["peers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["slots"].as_u64() > Some(0))
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_string(),
                    p["power"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    wait_for(Duration::from_secs(10), || powers().len() == 2)
        .expect("the client sees both compute nodes");
    let power_of = |id: &str| powers().into_iter().find(|(p, _)| p == id).unwrap().1;
    assert_eq!(power_of(&slow_id), 1);
    assert!(power_of(&fast_id) > 1, "{:?}", powers());
    assert!(
        client.log_text().contains("plugin component built"),
        "{}",
        client.log_text()
    );

    let control = client.ports.control_addr().to_string();
    let out = submit_command(&control)
        .args(["--kernel", "w1-sum-squares", "--range", "0..400"])
        .output()
        .unwrap();
    let events: Vec<serde_json::Value> = json_events(&out.stdout);
    let last = events.last().expect("submit printed events");
    assert!(out.status.success(), "{last}\n{}", client.log_text());
    assert_eq!(last["event"], "done", "{last}");
    // The per-node tallies of the final event: all 400 on the fast node.
    let tallies = last["nodes"].as_object().unwrap();
    assert_eq!(tallies[&fast_id]["tasks_done"], 400, "{last}");
    assert!(
        tallies
            .get(&slow_id)
            .is_none_or(|t| t["tasks_done"].as_u64() == Some(0)),
        "{last}"
    );
    // And the nodes' own counters agree.
    assert_eq!(fast.status()["compute"]["tasks_done"], 400);
    assert_eq!(slow.status()["compute"]["tasks_done"], 0);
    // The balancer plugin runs the client's market view.
    let described = client.status()["market"]["balancer"].to_string();
    assert!(
        described.contains("proportional: target pressure 1"),
        "{described}"
    );
}

#[test]
fn a_panicking_plugin_call_fails_that_call_and_the_node_keeps_running() {
    let community = Community::new();
    let fixture = plugin(MISBEHAVING);
    let nodes = [("client", "client"), ("compute", "compute")];
    let mut procs = start_cluster_with(&community, &nodes, |i, _| {
        if i == 0 {
            format!(
                "{}[scheduler.options]\npanic = \"place\"\n",
                plugin_section("scheduler", &fixture)
            )
        } else {
            String::new()
        }
    });
    let compute = procs.pop().unwrap();
    let mut client = procs.pop().unwrap();
    let compute_id = compute.id();
    wait_for(Duration::from_secs(10), || {
        client.status()["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == compute_id.as_str() && p["slots"].as_u64() > Some(0))
    })
    .expect("the client sees the compute node");
    let control = client.ports.control_addr().to_string();
    let out = submit_command(&control)
        .args(["--kernel", "sha256", "--input", "abc"])
        .output()
        .unwrap();
    let last = json_events(&out.stdout)
        .pop()
        .expect("submit printed events");
    assert!(out.status.success(), "{last}\n{}", client.log_text());
    assert_eq!(last["event"], "done");
    assert_eq!(
        last["result"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let log = client.log_text();
    assert!(log.contains("plugin call failed"), "{log}");
    assert!(
        log.contains("panicked in place: fixture told to panic in place"),
        "{log}"
    );
    // Still running and answering.
    assert!(client.child.as_mut().unwrap().try_wait().unwrap().is_none());
    assert_eq!(client.status()["node"]["name"], "client");
}

#[test]
fn a_node_whose_plugin_does_not_load_does_not_start() {
    let c = cfg(&plugin_section("scheduler", Path::new("gone/libgone.so")));
    let (ok, _, err) = run(&["node", "--config", c.path.to_str().unwrap()], &[]);
    assert!(!ok);
    let missing = c.dir.path().join("gone/libgone.so");
    assert!(
        err.contains(&format!(
            "scheduler plugin {}: no such file",
            missing.display()
        )),
        "{err}"
    );
}

// ---------------------------------------------------------- plugin check

#[test]
fn plugin_check_prints_name_version_kind_and_abi() {
    let lib = plugin(FASTEST_FIRST);
    let (ok, out, err) = run(&["plugin", "check", lib.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        out,
        format!(
            "path:        {}\nname:        fastest-first\nversion:     {version}\nkind:        scheduler\n\
             description: each task on the most powerful suitable node with a free slot\n\
             abi:         version 1 (lppsp-plugin-abi {version})\n",
            std::fs::canonicalize(&lib).unwrap().display()
        )
    );
    let (ok, out, err) = run(
        &["plugin", "check", plugin(PROPORTIONAL).to_str().unwrap()],
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.contains("name:        proportional\n"), "{out}");
    assert!(out.contains("kind:        balancer\n"), "{out}");
}

#[test]
fn plugin_check_reports_a_missing_file_with_its_path() {
    let (ok, _, err) = run(&["plugin", "check", "/no/such/libplugin.so"], &[]);
    assert!(!ok);
    assert_eq!(err, "error: /no/such/libplugin.so: no such file\n");
}

// ------------------------------------------- failures, through the config

#[test]
fn a_missing_plugin_file_is_named() {
    let c = cfg(&plugin_section("scheduler", Path::new("libnowhere.so")));
    let rest = config_check_error(&c, "scheduler", &[]);
    // Relative to the config file's folder.
    let path = c.dir.path().join("libnowhere.so");
    assert_eq!(rest, format!("{}: no such file", path.display()));
}

#[test]
fn a_file_that_is_not_a_library_is_named() {
    let c = cfg(&plugin_section("executor", Path::new("libfake.so")));
    std::fs::write(c.dir.path().join("libfake.so"), "#!/bin/sh\necho not ELF\n").unwrap();
    let rest = config_check_error(&c, "executor", &[]);
    let path = c.dir.path().join("libfake.so");
    assert!(
        rest.starts_with(&format!("{}: not a loadable library: ", path.display())),
        "{rest}"
    );
}

#[test]
fn a_library_that_is_not_a_plugin_is_named() {
    let lib = plugin(NOT_A_PLUGIN);
    let c = cfg(&plugin_section("scheduler", &lib));
    let rest = config_check_error(&c, "scheduler", &[]);
    assert_eq!(
        rest,
        format!(
            "{}: not an lppsp plugin: the library exports no plugin root module \
             (a plugin exports one with lppsp_plugin_abi::export_scheduler!, \
             export_balancer! or export_executor!)",
            lib.display()
        )
    );
}

#[test]
fn a_plugin_of_the_wrong_kind_is_named() {
    let balancer = plugin(PROPORTIONAL);
    let c = cfg(&plugin_section("scheduler", &balancer));
    assert_eq!(
        config_check_error(&c, "scheduler", &[]),
        format!(
            "{}: plugin \"proportional\" is a balancer plugin, not a scheduler plugin",
            balancer.display()
        )
    );
    let scheduler = plugin(FASTEST_FIRST);
    let c = cfg(&plugin_section("balancer", &scheduler));
    assert_eq!(
        config_check_error(&c, "balancer", &[]),
        format!(
            "{}: plugin \"fastest-first\" is a scheduler plugin, not a balancer plugin",
            scheduler.display()
        )
    );
}

#[test]
fn a_plugin_built_for_another_abi_version_is_named() {
    let lib = plugin(MISBEHAVING);
    let c = cfg(&plugin_section("scheduler", &lib));
    let rest = config_check_error(&c, "scheduler", &[("LPPSP_FIXTURE_ABI_VERSION", "2")]);
    assert_eq!(
        rest,
        format!(
            "{}: plugin ABI version mismatch: the plugin declares ABI version 2, \
             this node speaks ABI version 1; rebuild it against lppsp-plugin-abi {}",
            lib.display(),
            env!("CARGO_PKG_VERSION")
        )
    );
    // The same library with its own ABI version loads.
    let (ok, out, err) = run(&["config", "check", c.path.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    assert!(out.ends_with(": ok\n"), "{out}");
}

#[test]
fn a_plugin_with_another_layout_is_named() {
    let lib = plugin(FOREIGN_LAYOUT);
    let c = cfg(&plugin_section("scheduler", &lib));
    let rest = config_check_error(&c, "scheduler", &[]);
    let expected = format!(
        "{}: layout mismatch: the types it exchanges with the node differ from this node's \
         lppsp-plugin-abi {}; rebuild it against that version (",
        lib.display(),
        env!("CARGO_PKG_VERSION")
    );
    assert!(rest.starts_with(&expected), "{rest}");
    assert!(rest.contains("mismatched package"), "{rest}");
}

#[test]
fn a_panic_in_a_plugin_constructor_is_an_error() {
    let lib = plugin(MISBEHAVING);
    let c = cfg(&format!(
        "{}[scheduler.options]\npanic = \"new\"\n",
        plugin_section("scheduler", &lib)
    ));
    assert_eq!(
        config_check_error(&c, "scheduler", &[]),
        format!(
            "{}: plugin \"misbehaving\" could not be built: panicked in new: \
             fixture told to panic in new",
            lib.display()
        )
    );
}

#[test]
fn plugin_options_are_checked_by_the_plugin() {
    let lib = plugin(FASTEST_FIRST);
    let c = cfg(&format!(
        "{}[scheduler.options]\nmax_node = 1\n",
        plugin_section("scheduler", &lib)
    ));
    let rest = config_check_error(&c, "scheduler", &[]);
    assert!(
        rest.starts_with(&format!(
            "{}: plugin \"fastest-first\" could not be built: unknown field `max_node`",
            lib.display()
        )),
        "{rest}"
    );
}

#[test]
fn plugin_keys_are_checked_with_the_config() {
    let check = |text: &str| {
        let c = cfg(text);
        let (ok, _, err) = run(&["config", "check", c.path.to_str().unwrap()], &[]);
        assert!(!ok);
        (c, err)
    };
    let (c, err) = check("[scheduler]\nkind = \"plugin\"\n");
    assert_eq!(
        err,
        format!(
            "error: {}: key `scheduler.path`: kind = \"plugin\" needs the path of the plugin library\n",
            c.path.display()
        )
    );
    let (c, err) = check("[balancer]\nkind = \"fsm\"\npath = \"libx.so\"\n");
    assert_eq!(
        err,
        format!(
            "error: {}: key `balancer.path`: only used with kind = \"plugin\"\n",
            c.path.display()
        )
    );
    let (c, err) = check("[transport]\nkind = \"plugin\"\npath = \"libx.so\"\n");
    assert_eq!(
        err,
        format!(
            "error: {}: key `transport.kind`: a transport cannot be a plugin (it is async; see docs/plugins.md)\n",
            c.path.display()
        )
    );
    // An unknown kind lists `plugin` among the names it knows.
    let (_, err) = check("[executor]\nkind = \"magic\"\n");
    assert!(
        err.contains("no executor named \"magic\"; known: "),
        "{err}"
    );
    assert!(err.trim_end().ends_with(", plugin"), "{err}");
}
