//! NodeConfig::load / load_with_env against real files: the shipped example,
//! defaults, the errors a person meets (unknown key, bad value, missing
//! file), environment overrides and path resolution.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lppsp_core::access::{Grant, Grants};
use lppsp_core::config::{
    ConfigError, ControlSection, DashboardSection, Discovery, MarketSection, NetworkSection,
    NodeConfig, Role, ShareSection,
};
use lppsp_core::wire::Limits;
use lppsp_core::{Bounty, Price};
use tempfile::TempDir;

/// A tempdir holding `node.toml` with `text`.
fn config_file(text: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(text: &str, vars: &[(&str, &str)]) -> (TempDir, PathBuf, Result<NodeConfig, ConfigError>) {
    let (dir, path) = config_file(text);
    let result = NodeConfig::load_with_env(&path, env(vars));
    (dir, path, result)
}

fn load_ok(text: &str, vars: &[(&str, &str)]) -> (TempDir, NodeConfig) {
    let (dir, path, result) = load(text, vars);
    match result {
        Ok(cfg) => (dir, cfg),
        Err(e) => panic!("{} should load: {e}", path.display()),
    }
}

/// Asserts that `text` (with `vars`) fails with a Key error naming `key`,
/// and that the message shows both the key and the file. Returns the message.
#[track_caller]
fn key_error(text: &str, vars: &[(&str, &str)], key: &str) -> String {
    let (_dir, path, result) = load(text, vars);
    let err = match result {
        Ok(cfg) => panic!("{text:?} should fail on {key}, loaded {cfg:?}"),
        Err(e) => e,
    };
    let shown = err.to_string();
    match &err {
        ConfigError::Key { file, key: got, .. } => {
            assert_eq!(got, key, "wrong key in {shown}");
            assert_eq!(file, &path, "wrong file in {shown}");
        }
        other => panic!("{text:?}: expected a Key error for {key}, got {other:?}"),
    }
    assert!(shown.contains(key), "message does not name {key}: {shown}");
    assert!(
        shown.contains(&path.display().to_string()),
        "message does not name the file: {shown}"
    );
    shown
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node.toml")
}

fn assert_default_sections(cfg: &NodeConfig) {
    assert_eq!(cfg.node.name, "lppsp-node");
    assert_eq!(cfg.node.role, Role::Both);
    assert_eq!(cfg.network, NetworkSection::default());
    assert_eq!(cfg.share, ShareSection::default());
    assert_eq!(cfg.market, MarketSection::default());
    // The socket's default path is resolved against data_dir.
    assert_eq!(
        cfg.control,
        ControlSection {
            socket: cfg.node.data_dir.join("control.sock"),
            ..ControlSection::default()
        }
    );
    assert_eq!(cfg.dashboard, DashboardSection::default());
    assert_eq!(cfg.limits, Limits::default());
    assert_eq!(cfg.sharing, lppsp_core::sharing::SharingSection::default());
    assert_eq!(cfg.ca, lppsp_core::config::CaSection::default());
    for (section, kind) in [
        (&cfg.transport, "tls-tcp"),
        (&cfg.scheduler, "price-aware"),
        (&cfg.balancer, "fsm"),
        (&cfg.executor, "standard"),
    ] {
        assert_eq!(section.kind, kind);
        assert!(section.options.is_empty(), "{kind} options: {section:?}");
    }
}

fn assert_paths_under(cfg: &NodeConfig, base: &Path) {
    assert_eq!(cfg.identity.ca_cert, base.join("ca.pem"));
    assert_eq!(cfg.identity.cert, base.join("node.pem"));
    assert_eq!(cfg.identity.key, base.join("node.key"));
    assert_eq!(cfg.node.data_dir, base.join("data"));
}

#[test]
fn empty_file_gives_all_defaults() {
    let (dir, cfg) = load_ok("", &[]);
    assert_default_sections(&cfg);
    assert_paths_under(&cfg, dir.path());
    // The documented figures, not just "whatever Default says".
    assert_eq!(cfg.network.listen, "0.0.0.0:47101".parse().unwrap());
    assert_eq!(cfg.network.beacon_listen, "0.0.0.0:47100".parse().unwrap());
    assert_eq!(cfg.network.discovery, Discovery::Broadcast);
    assert_eq!(cfg.network.tick_ms, 1000);
    assert_eq!(cfg.network.expire_ticks, 3);
    assert_eq!(cfg.share.slots, 1);
    assert_eq!(cfg.market.initial_price, "1".parse::<Price>().unwrap());
    assert_eq!(cfg.market.grant, "1000000".parse::<Bounty>().unwrap());
    assert_eq!(
        cfg.control.socket,
        dir.path().join("data").join("control.sock")
    );
    assert_eq!(cfg.control.group, None);
    assert!(cfg.dashboard.enabled);
    assert_eq!(cfg.dashboard.listen, "127.0.0.1:47180".parse().unwrap());
}

#[test]
fn example_file_loads_and_states_the_defaults() {
    let path = example_path();
    let cfg = NodeConfig::load_with_env(&path, env(&[]))
        .unwrap_or_else(|e| panic!("examples/node.toml should load: {e}"));
    // Every value written in the example is the default, as its comments say.
    assert_default_sections(&cfg);
    assert_paths_under(&cfg, path.parent().unwrap());
}

#[test]
fn example_file_commented_out_keys_are_valid() {
    let text = std::fs::read_to_string(example_path()).expect("read example");
    let mut uncommented = 0;
    let text: String = text
        .lines()
        .map(|line| {
            for key in [
                "advertise",
                "multicast_interface",
                "max_mflops",
                "dir",
                "owner_idle_minutes",
                "max_other_cpu_percent",
                "cpu_share_percent",
                "group",
                "group_may",
                "token_file",
            ] {
                if let Some(rest) = line.strip_prefix(&format!("# {key} = ")) {
                    uncommented += 1;
                    return format!("{key} = {rest}\n");
                }
            }
            format!("{line}\n")
        })
        .collect();
    assert_eq!(
        uncommented, 10,
        "the example should show the ten optional keys"
    );
    let (dir, cfg) = load_ok(&text, &[]);
    assert!(cfg.network.advertise.is_some());
    assert!(cfg.network.multicast_interface.is_some());
    assert!(cfg.share.max_mflops.is_some());
    assert_eq!(cfg.ca.dir, Some(dir.path().join("ca")));
    assert!(cfg.sharing.owner_idle_minutes.is_some());
    assert!(cfg.sharing.max_other_cpu_percent.is_some());
    assert!(cfg.sharing.cpu_share_percent.is_some());
    assert!(cfg.control.group.is_some());
    assert!(cfg.control.group_may.is_some());
    assert_eq!(
        cfg.dashboard.token_file,
        Some(dir.path().join("dashboard.token"))
    );
}

#[test]
fn sharing_windows_and_ranges_are_checked_naming_the_key() {
    let (_dir, cfg) = load_ok(
        "[sharing]\nowner_idle_minutes = 0.5\nwindows = [\"22:00-07:00\", \"Sat 00:00-24:00\"]\n",
        &[],
    );
    assert_eq!(cfg.sharing.windows.len(), 2);
    let shown = key_error(
        "[sharing]\nwindows = [\"25:00-07:00\"]\n",
        &[],
        "sharing.windows",
    );
    assert!(shown.contains("25:00-07:00"), "{shown}");
    for (text, key) in [
        ("[sharing]\nwindows = [\"nope\"]\n", "sharing.windows"),
        (
            "[sharing]\nmax_other_cpu_percent = 120\n",
            "sharing.max_other_cpu_percent",
        ),
        (
            "[sharing]\ncpu_share_percent = 0\n",
            "sharing.cpu_share_percent",
        ),
        ("[ca]\nmax_pending = 0\n", "ca.max_pending"),
    ] {
        key_error(text, &[], key);
    }
}

#[test]
fn every_key_can_be_set() {
    let text = r#"
[node]
name = "lab-3"
role = "compute"
data_dir = "/var/lib/lppsp"

[identity]
ca_cert = "/etc/lppsp/ca.pem"
cert = "/etc/lppsp/node.pem"
key = "/etc/lppsp/node.key"

[network]
listen = "0.0.0.0:48101"
advertise = "192.168.1.20:48101"
beacon_listen = "0.0.0.0:48100"
discovery = "static"
broadcast_to = "192.168.1.255:48100"
multicast_group = "239.1.2.3:48100"
multicast_interface = "192.168.1.20"
static_peers = ["192.168.1.21:48100", "192.168.1.22:48100"]
tick_ms = 500
expire_ticks = 5
max_clock_skew_s = 10

[share]
slots = 4
max_mflops = 2000
task_timeout_s = 60
max_input_bytes = 1048576

[market]
initial_price = "0.25"
grant = 5000

[control]
socket = "/run/lppsp/control.sock"
group = "lab"
group_may = ["status"]

[dashboard]
enabled = false
listen = "127.0.0.1:48180"
token_file = "/etc/lppsp/dashboard.token"

[limits]
max_line = 4096
max_headers = 16
max_chunk = 65536
max_body = 1048576
max_chunks = 64

[transport]
kind = "memory"

[scheduler]
kind = "round-robin"
[scheduler.options]
spread = 3

[balancer]
kind = "fsm"
[balancer.options]
window_s = 60

[executor]
kind = "builtin"
"#;
    let (_dir, cfg) = load_ok(text, &[]);
    assert_eq!(cfg.node.name, "lab-3");
    assert_eq!(cfg.node.role, Role::Compute);
    assert_eq!(cfg.node.data_dir, PathBuf::from("/var/lib/lppsp"));
    assert_eq!(cfg.identity.key, PathBuf::from("/etc/lppsp/node.key"));
    assert_eq!(cfg.network.listen, "0.0.0.0:48101".parse().unwrap());
    assert_eq!(
        cfg.network.advertise,
        Some("192.168.1.20:48101".parse().unwrap())
    );
    assert_eq!(cfg.network.discovery, Discovery::Static);
    assert_eq!(cfg.network.static_peers.len(), 2);
    assert_eq!(
        cfg.network.multicast_interface,
        Some("192.168.1.20".parse().unwrap())
    );
    assert_eq!(cfg.network.tick_ms, 500);
    assert_eq!(cfg.network.expire_ticks, 5);
    assert_eq!(cfg.network.max_clock_skew_s, 10);
    assert_eq!(cfg.share.slots, 4);
    assert_eq!(cfg.share.max_mflops, Some(2000));
    assert_eq!(cfg.share.task_timeout_s, 60);
    assert_eq!(cfg.share.max_input_bytes, 1048576);
    assert_eq!(cfg.market.initial_price, Price::from_micros(250_000));
    assert_eq!(cfg.market.grant, Bounty::from_units(5000).unwrap());
    assert_eq!(cfg.control.socket, PathBuf::from("/run/lppsp/control.sock"));
    assert_eq!(cfg.control.group.as_deref(), Some("lab"));
    assert_eq!(cfg.control.group_grants(), Grants::of(&[Grant::Status]));
    assert!(!cfg.dashboard.enabled);
    assert_eq!(cfg.dashboard.listen, "127.0.0.1:48180".parse().unwrap());
    assert_eq!(
        cfg.dashboard.token_file,
        Some(PathBuf::from("/etc/lppsp/dashboard.token"))
    );
    assert_eq!(
        cfg.limits,
        Limits {
            max_line: 4096,
            max_headers: 16,
            max_chunk: 65536,
            max_body: 1048576,
            max_chunks: 64,
        }
    );
    assert_eq!(cfg.transport.kind, "memory");
    assert_eq!(cfg.scheduler.kind, "round-robin");
    assert_eq!(
        cfg.scheduler.options.get("spread"),
        Some(&toml::Value::Integer(3))
    );
    assert_eq!(
        cfg.balancer.options.get("window_s"),
        Some(&toml::Value::Integer(60))
    );
}

#[test]
fn unknown_key_names_key_and_file() {
    let msg = key_error(
        "[network]\nlisen = \"0.0.0.0:47101\"\n",
        &[],
        "network.lisen",
    );
    assert!(msg.contains("listen"), "should list the known keys: {msg}");
    key_error("[share]\nslots = 2\nslot = 3\n", &[], "share.slot");
    key_error("[limits]\nmax_lines = 300\n", &[], "limits.max_lines");
    key_error(
        "[scheduler]\nkind = \"round-robin\"\npath = \"x.so\"\n",
        &[],
        "scheduler.path",
    );
}

#[test]
fn unknown_section_names_it() {
    key_error("[netwrok]\nlisten = \"0.0.0.0:47101\"\n", &[], "netwrok");
    key_error("verbose = true\n", &[], "verbose");
}

#[test]
fn bad_values_name_the_key() {
    let msg = key_error("[network]\nlisten = \"nonsense\"\n", &[], "network.listen");
    assert!(msg.contains("socket address"), "{msg}");
    key_error("[network]\ntick_ms = 0\n", &[], "network.tick_ms");
    key_error("[network]\nexpire_ticks = 0\n", &[], "network.expire_ticks");
    let msg = key_error(
        "[network]\ndiscovery = \"carrier-pigeon\"\n",
        &[],
        "network.discovery",
    );
    assert!(msg.contains("carrier-pigeon"), "{msg}");
    key_error("[node]\nrole = \"boss\"\n", &[], "node.role");
    key_error(
        "[network]\nadvertise = \"somewhere\"\n",
        &[],
        "network.advertise",
    );
    key_error(
        "[network]\nstatic_peers = [\"10.0.0.2:47100\", \"nope\"]\n",
        &[],
        "network.static_peers[1]",
    );
    key_error("[share]\nslots = -1\n", &[], "share.slots");
    key_error("[share]\nslots = \"many\"\n", &[], "share.slots");
}

#[test]
fn money_is_fixed_point_not_float() {
    let msg = key_error(
        "[market]\ninitial_price = 1.5\n",
        &[],
        "market.initial_price",
    );
    assert!(msg.contains("floating point"), "{msg}");
    let msg = key_error(
        "[market]\ninitial_price = \"1.0000001\"\n",
        &[],
        "market.initial_price",
    );
    assert!(msg.contains("6"), "{msg}");
    key_error(
        "[market]\ninitial_price = -2\n",
        &[],
        "market.initial_price",
    );
    key_error("[market]\ngrant = \"01\"\n", &[], "market.grant");
    key_error("[market]\ngrant = \"1e6\"\n", &[], "market.grant");
    // Strings with up to 6 decimals and bare whole numbers are fine.
    let (_dir, cfg) = load_ok("[market]\ninitial_price = \"0.000001\"\ngrant = 7\n", &[]);
    assert_eq!(cfg.market.initial_price, Price::from_micros(1));
    assert_eq!(cfg.market.grant, Bounty::from_units(7).unwrap());
}

#[test]
fn cross_key_rules_name_a_key() {
    key_error(
        "[network]\ndiscovery = \"static\"\n",
        &[],
        "network.static_peers",
    );
    key_error(
        "[network]\nmulticast_group = \"10.0.0.1:47100\"\n",
        &[],
        "network.multicast_group",
    );
    key_error("[share]\nslots = 0\n", &[], "share.slots");
    // A client-only node needs no slot.
    let (_dir, cfg) = load_ok("[node]\nrole = \"client\"\n[share]\nslots = 0\n", &[]);
    assert_eq!(cfg.share.slots, 0);
    key_error("[limits]\nmax_line = 255\n", &[], "limits.max_line");
    key_error("[limits]\nmax_chunk = 0\n", &[], "limits.max_body");
    key_error(
        "[limits]\nmax_chunk = 2048\nmax_body = 1024\n",
        &[],
        "limits.max_body",
    );
}

#[test]
fn control_and_dashboard_access_rules_name_the_key() {
    let gone = key_error(
        "[control]\nlisten = \"127.0.0.1:47102\"\n",
        &[],
        "control.listen",
    );
    assert!(gone.contains("Unix socket"), "{gone}");
    key_error(
        "[control]\ngroup_may = [\"status\"]\n",
        &[],
        "control.group_may",
    );
    key_error("[control]\ngroup = \"\"\n", &[], "control.group");
    key_error(
        "[control]\ngroup = \"lab\"\ngroup_may = [\"root\"]\n",
        &[],
        "control.group_may[0]",
    );
    key_error("[control]\nsocket = \"\"\n", &[], "control.socket");
    // A group alone may read the status and submit, not administer.
    let (_dir, cfg) = load_ok("[control]\ngroup = \"lab\"\n", &[]);
    assert_eq!(
        cfg.control.group_grants(),
        Grants::of(&[Grant::Status, Grant::Submit])
    );
    let (_dir, cfg) = load_ok("[control]\ngroup = \"lab\"\ngroup_may = []\n", &[]);
    assert_eq!(cfg.control.group_grants(), Grants::NONE);

    let open = key_error(
        "[dashboard]\nlisten = \"0.0.0.0:47180\"\n",
        &[],
        "dashboard.token_file",
    );
    assert!(open.contains("0.0.0.0:47180"), "{open}");
    // With a token, or switched off, it may listen anywhere.
    load_ok(
        "[dashboard]\nlisten = \"0.0.0.0:47180\"\ntoken_file = \"t\"\n",
        &[],
    );
    load_ok(
        "[dashboard]\nenabled = false\nlisten = \"0.0.0.0:47180\"\n",
        &[],
    );
}

#[test]
fn component_section_needs_kind() {
    key_error("[balancer.options]\nwindow_s = 60\n", &[], "balancer");
}

#[test]
fn missing_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let err = NodeConfig::load_with_env(&path, env(&[])).unwrap_err();
    match &err {
        ConfigError::Read { file, .. } => assert_eq!(file, &path),
        other => panic!("expected a Read error, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn toml_syntax_error_names_the_file_and_line() {
    let (_dir, path, result) = load("[network\nlisten = 1\n", &[]);
    let err = result.unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("line 1"), "{msg}");
}

#[test]
fn env_overrides_apply() {
    let (_dir, cfg) = load_ok(
        "[network]\nlisten = \"0.0.0.0:47101\"\n[share]\nslots = 2\n",
        &[
            ("LPPSP_NETWORK__LISTEN", "127.0.0.1:5000"),
            ("LPPSP_SHARE__SLOTS", "4"),
            ("LPPSP_LOG", "debug"),
            ("PATH", "/usr/bin"),
        ],
    );
    let listen: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    assert_eq!(cfg.network.listen, listen);
    assert_eq!(cfg.share.slots, 4);
    // Everything else is untouched.
    assert_eq!(
        cfg.network.beacon_listen,
        NetworkSection::default().beacon_listen
    );
}

#[test]
fn env_log_variable_is_not_a_key() {
    // LPPSP_LOG has no "__": it is not an override, so not an unknown key.
    let (_dir, cfg) = load_ok("", &[("LPPSP_LOG", "lppsp=trace"), ("LPPSP_X", "1")]);
    assert_default_sections(&cfg);
}

#[test]
fn env_static_peers_is_a_comma_separated_list() {
    let (_dir, cfg) = load_ok(
        "",
        &[
            ("LPPSP_NETWORK__DISCOVERY", "static"),
            (
                "LPPSP_NETWORK__STATIC_PEERS",
                "10.0.0.2:47100,10.0.0.3:47100",
            ),
        ],
    );
    assert_eq!(cfg.network.discovery, Discovery::Static);
    assert_eq!(
        cfg.network.static_peers,
        vec![
            "10.0.0.2:47100".parse::<SocketAddr>().unwrap(),
            "10.0.0.3:47100".parse().unwrap()
        ]
    );
    let (_dir, cfg) = load_ok("", &[("LPPSP_NETWORK__STATIC_PEERS", "10.0.0.9:47100")]);
    assert_eq!(cfg.network.static_peers.len(), 1);
    let (_dir, cfg) = load_ok(
        "",
        &[
            ("LPPSP_CONTROL__GROUP", "lab"),
            ("LPPSP_CONTROL__GROUP_MAY", "status,admin"),
        ],
    );
    assert_eq!(
        cfg.control.group_grants(),
        Grants::of(&[Grant::Status, Grant::Admin])
    );
}

#[test]
fn env_values_keep_their_text() {
    // A decimal price is text to the price parser, not a float.
    let (_dir, cfg) = load_ok(
        "",
        &[
            ("LPPSP_MARKET__INITIAL_PRICE", "0.5"),
            ("LPPSP_NODE__NAME", "007"),
            ("LPPSP_SHARE__MAX_MFLOPS", "1500"),
            ("LPPSP_NODE__ROLE", "client"),
        ],
    );
    assert_eq!(cfg.market.initial_price, Price::from_micros(500_000));
    assert_eq!(cfg.node.name, "007");
    assert_eq!(cfg.share.max_mflops, Some(1500));
    assert_eq!(cfg.node.role, Role::Client);
}

#[test]
fn env_can_choose_a_component() {
    let (_dir, cfg) = load_ok(
        "",
        &[
            ("LPPSP_SCHEDULER__KIND", "round-robin"),
            ("LPPSP_BALANCER__KIND", "fsm"),
            ("LPPSP_BALANCER__OPTIONS__WINDOW_MS", "60000"),
        ],
    );
    assert_eq!(cfg.scheduler.kind, "round-robin");
    assert_eq!(
        cfg.balancer.options.get("window_ms"),
        Some(&toml::Value::Integer(60000))
    );
    // Options alone leave the section without its kind.
    key_error(
        "",
        &[("LPPSP_BALANCER__OPTIONS__WINDOW_MS", "60000")],
        "balancer",
    );
}

#[test]
fn env_prefix_must_be_capitals_but_keys_are_not_case_sensitive() {
    let (_dir, cfg) = load_ok(
        "",
        &[
            ("lppsp_share__slots", "7"),
            ("LPPSP_Share__Task_Timeout_S", "9"),
        ],
    );
    assert_eq!(cfg.share.slots, 1, "a lowercase prefix is not an override");
    assert_eq!(cfg.share.task_timeout_s, 9);
}

#[test]
fn env_errors_name_the_key() {
    let msg = key_error("", &[("LPPSP_SHARE__SLOTS", "many")], "share.slots");
    assert!(msg.contains("environment"), "{msg}");
    key_error(
        "",
        &[("LPPSP_NETWORK__LISEN", "0.0.0.0:1")],
        "network.lisen",
    );
    key_error(
        "",
        &[("LPPSP_MARKET__INITIAL_PRICE", "1.0000001")],
        "market.initial_price",
    );
    key_error("", &[("LPPSP_NETWORK__TICK_MS", "0")], "network.tick_ms");
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("site").join("node-a");
    std::fs::create_dir_all(&sub).unwrap();
    let path = sub.join("node.toml");
    std::fs::write(
        &path,
        "[node]\ndata_dir = \"state\"\n\
         [identity]\nca_cert = \"../ca.pem\"\ncert = \"certs/node.pem\"\nkey = \"/etc/lppsp/node.key\"\n",
    )
    .unwrap();
    let cfg = NodeConfig::load_with_env(&path, env(&[])).unwrap();
    assert_eq!(cfg.identity.ca_cert, sub.join("../ca.pem"));
    assert_eq!(cfg.identity.cert, sub.join("certs/node.pem"));
    assert_eq!(cfg.identity.key, PathBuf::from("/etc/lppsp/node.key"));
    assert_eq!(cfg.node.data_dir, sub.join("state"));
    // The control socket is relative to data_dir.
    assert_eq!(cfg.control.socket, sub.join("state").join("control.sock"));

    // An override from the environment resolves the same way.
    let cfg =
        NodeConfig::load_with_env(&path, env(&[("LPPSP_IDENTITY__CERT", "other.pem")])).unwrap();
    assert_eq!(cfg.identity.cert, sub.join("other.pem"));
}

#[test]
fn env_component_options_are_typed_as_toml_would() {
    let (_dir, cfg) = load_ok(
        "[balancer]\nkind = \"fsm\"\n[balancer.options]\nwindow_ms = 300000\n",
        &[
            ("LPPSP_BALANCER__OPTIONS__WINDOW_MS", "60000"),
            ("LPPSP_BALANCER__OPTIONS__DECAY", "true"),
            ("LPPSP_BALANCER__OPTIONS__STEP", "0.5"),
            ("LPPSP_BALANCER__OPTIONS__LABEL", "lab"),
        ],
    );
    let opts = &cfg.balancer.options;
    assert_eq!(opts.get("window_ms"), Some(&toml::Value::Integer(60000)));
    assert_eq!(opts.get("decay"), Some(&toml::Value::Boolean(true)));
    assert_eq!(opts.get("step"), Some(&toml::Value::Float(0.5)));
    assert_eq!(
        opts.get("label"),
        Some(&toml::Value::String("lab".to_string()))
    );
}

/// docs/config.md, "What is not an error": the loader converts between
/// scalar types. Pinned here so that the document stays true; if the loader
/// becomes strict, change both.
#[test]
fn documented_scalar_conversions() {
    let (_dir, cfg) = load_ok(
        "[node]\nname = 5\n[network]\ntick_ms = 1.5\nexpire_ticks = \"4\"\n[share]\nslots = \"yes\"\ntask_timeout_s = true\n",
        &[],
    );
    assert_eq!(cfg.node.name, "5");
    assert_eq!(cfg.network.tick_ms, 2);
    assert_eq!(cfg.network.expire_ticks, 4);
    assert_eq!(cfg.share.slots, 1);
    assert_eq!(cfg.share.task_timeout_s, 1);
    let (_dir, cfg) = load_ok("[node]\nname = true\n", &[]);
    assert_eq!(cfg.node.name, "true");
}

#[test]
fn reserve_price_and_supply_curve() {
    let (_dir, cfg) = load_ok(
        "[share]\nslots = 4\nmin_price = \"1.5\"\n\n[[share.price_slots]]\nprice = \"1.5\"\nslots = 1\n\n[[share.price_slots]]\nprice = \"2\"\nslots = 4\n",
        &[],
    );
    let curve = cfg.share.supply_curve().unwrap();
    assert_eq!(curve.reserve().to_string(), "1.5");
    assert_eq!(curve.slots_at("1.4".parse().unwrap()), 0);
    assert_eq!(curve.slots_at("1.9".parse().unwrap()), 1);
    assert_eq!(curve.slots_at("2".parse().unwrap()), 4);
    let (_dir, cfg) = load_ok("", &[]);
    assert_eq!(cfg.share.min_price, lppsp_core::Price::ZERO);
    key_error("[share]\nmin_price = \"-1\"\n", &[], "share.min_price");
    key_error(
        "[share]\nmin_price = \"1.0000001\"\n",
        &[],
        "share.min_price",
    );
    let msg = key_error(
        "[share]\nslots = 2\n[[share.price_slots]]\nprice = \"1\"\nslots = 3\n",
        &[],
        "share.price_slots",
    );
    assert!(msg.contains("1..=2"), "{msg}");
    key_error(
        "[share]\nslots = 4\n[[share.price_slots]]\nprice = \"2\"\nslots = 2\n[[share.price_slots]]\nprice = \"1\"\nslots = 3\n",
        &[],
        "share.price_slots",
    );
    key_error(
        "[share]\nslots = 4\nmin_price = \"3\"\n[[share.price_slots]]\nprice = \"2\"\nslots = 2\n",
        &[],
        "share.min_price",
    );
    key_error(
        "[share]\n[[share.price_slots]]\nprice = \"1\"\nslot = 1\n",
        &[],
        "share.price_slots[0].slot",
    );
}
