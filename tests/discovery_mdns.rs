//! mDNS discovery end to end: `discover`, `serve` and `play --listen`, and
//! the Python reference peers, each test inside a network namespace of its
//! own so multicast never leaves it.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/peers.rs"]
mod peers;
#[path = "support/process.rs"]
mod process;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use netns::Netns;
use process::{spawn, Proc};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(20);

fn fixture() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sine440_mono_44100_16bit.flac");
    path.to_str().unwrap().to_string()
}

/// Runs `discover --json --probe` in `netns` and returns its endpoints once
/// `complete` accepts them. Browsing is a fixed window, so on a loaded
/// machine it runs up to three times before returning what it found for the
/// caller to report.
fn discover(netns: &Netns, complete: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut endpoints = Vec::new();
    for _ in 0..3 {
        let mut discover =
            spawn(netns.resonate(&["discover", "--json", "--probe", "--timeout", "4"]));
        let status = discover.wait(PATIENCE);
        assert!(status.success(), "discover exited with {status}");
        endpoints = discover.seen.clone();
        if complete(&endpoints) {
            break;
        }
    }
    endpoints
}

/// Returns whether `endpoints` hold one of each kind and dialect given.
fn holds(endpoints: &[Value], wanted: &[(&str, &str)]) -> bool {
    wanted.iter().all(|(kind, dialect)| {
        endpoints
            .iter()
            .any(|e| e["kind"] == *kind && e["dialect"] == *dialect)
    })
}

fn port_of(listening: &Value) -> u64 {
    let addr = listening["addr"].as_str().expect("listening addr");
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn start_listening_player(
    netns: &Netns,
    client_id: &str,
    name: &str,
    state: &std::path::Path,
) -> (Proc, u64) {
    let mut play = spawn(netns.resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--listen",
        "127.0.0.1:0",
        "--output",
        "null",
        "--client-id",
        client_id,
        "--name",
        name,
        "--state-file",
        state.to_str().unwrap(),
        "--json",
    ]));
    let port = port_of(&play.wait_event("listening", PATIENCE));
    (play, port)
}

#[test]
fn discover_lists_serve_and_listening_play() {
    let Some(netns) = Netns::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_play, play_port) = start_listening_player(
        &netns,
        "kitchen-1",
        "Kitchen",
        &dir.path().join("state.json"),
    );
    let mut serve = spawn(netns.resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        &fixture(),
        "--listen",
        "127.0.0.1:0",
        "--server-id",
        "living-room",
        "--name",
        "Living Room",
        "--json",
    ]));
    let serve_port = port_of(&serve.wait_event("listening", PATIENCE));

    let endpoints = discover(&netns, |found| {
        holds(found, &[("server", "sendspin"), ("client", "sendspin")])
    });
    let server = endpoints
        .iter()
        .find(|e| e["kind"] == "server")
        .unwrap_or_else(|| panic!("no server in {endpoints:?}"));
    assert_eq!(server["dialect"], "sendspin");
    assert_eq!(server["instance"], "living-room");
    assert_eq!(server["name"], "Living Room");
    assert_eq!(server["port"], serve_port);
    assert_eq!(server["path"], "/sendspin");
    assert_eq!(server["addresses"][0], "127.0.0.1");
    assert_eq!(server["probe"]["id"], "living-room");
    assert_eq!(server["probe"]["name"], "Living Room");
    assert!(server["probe"]["rtt_us"].as_i64().is_some(), "{server}");

    let client = endpoints
        .iter()
        .find(|e| e["kind"] == "client")
        .unwrap_or_else(|| panic!("no client in {endpoints:?}"));
    assert_eq!(client["dialect"], "sendspin");
    assert_eq!(client["instance"], "kitchen-1");
    assert_eq!(client["name"], "Kitchen");
    assert_eq!(client["port"], play_port);
    assert_eq!(client["path"], "/sendspin");
    assert_eq!(client["probe"]["id"], "kitchen-1");
    assert_eq!(client["probe"]["roles"][0], "player@v1");
    assert_eq!(
        client["probe"]["device_info"]["product_name"],
        "resonate play"
    );
}

#[test]
fn serve_dials_player_found_over_mdns() {
    let Some(netns) = Netns::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (mut play, play_port) =
        start_listening_player(&netns, "den-1", "Den", &dir.path().join("state.json"));
    let mut serve = spawn(netns.resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        &fixture(),
        "--listen",
        "127.0.0.1:0",
        "--server-id",
        "srv-den",
        "--json",
    ]));

    let dial = serve.wait_event("dial_started", PATIENCE);
    assert_eq!(dial["url"], format!("ws://127.0.0.1:{play_port}/sendspin"));
    let joined = serve.wait_event("client_joined", PATIENCE);
    assert_eq!(joined["client_id"], "den-1");
    let connected = play.wait_event("connected", PATIENCE);
    assert_eq!(connected["server_id"], "srv-den");
    play.wait_event("stream_started", PATIENCE);
}

#[test]
fn discover_probes_legacy_serve_endpoint() {
    let Some(netns) = Netns::create() else { return };
    let mut serve = spawn(netns.resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        &fixture(),
        "--legacy",
        "--listen",
        "127.0.0.1:0",
        "--server-id",
        "both-dialects",
        "--name",
        "Both",
        "--json",
    ]));
    let serve_port = port_of(&serve.wait_event("listening", PATIENCE));

    let endpoints = discover(&netns, |found| {
        holds(found, &[("server", "resonate-legacy")])
    });
    let legacy = endpoints
        .iter()
        .find(|e| e["kind"] == "server" && e["dialect"] == "resonate-legacy")
        .unwrap_or_else(|| panic!("no legacy server in {endpoints:?}"));
    assert_eq!(legacy["port"], serve_port);
    assert_eq!(legacy["path"], "/resonate");
    // The probe completed a legacy handshake and clock exchanges.
    assert_eq!(legacy["probe"]["id"], "both-dialects", "{legacy}");
    assert_eq!(legacy["probe"]["name"], "Both");
    assert_eq!(
        legacy["probe"]["roles"],
        serde_json::json!(["controller@v1"])
    );
    assert_eq!(legacy["probe"]["samples"], 5);
    assert!(legacy["probe"]["rtt_us"].as_i64().is_some(), "{legacy}");

    let current = endpoints
        .iter()
        .find(|e| e["kind"] == "server" && e["dialect"] == "sendspin")
        .unwrap_or_else(|| panic!("no Sendspin server in {endpoints:?}"));
    assert_eq!(current["port"], serve_port);
    assert_eq!(current["probe"]["id"], "both-dialects", "{current}");
}

/// Builds a command that runs a peer driver from `venv` inside `netns`.
fn peer_in(netns: &Netns, root: &std::path::Path, venv: &str, args: &[&str]) -> Command {
    let workdir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let peer = peers::peer_command(root, venv, &workdir, "python3");
    let peer = peer.as_std();
    let mut command = netns.command(peer.get_program());
    command
        .args(peer.get_args())
        .arg("mdns_peers.py")
        .args(args);
    command
}

#[test]
fn aiosendspin_discovers_resonate_serve() {
    let Some(root) = peers::require_peers_root() else {
        return;
    };
    let Some(netns) = Netns::create() else { return };
    let mut serve = spawn(netns.resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        &fixture(),
        "--listen",
        "127.0.0.1:0",
        "--server-id",
        "srv-interop",
        "--json",
    ]));
    let serve_port = port_of(&serve.wait_event("listening", PATIENCE));

    let mut browse = spawn(peer_in(
        &netns,
        &root,
        "venv-sendspin",
        &[
            "browse-servers",
            "--expect",
            "srv-interop",
            "--timeout",
            "15",
        ],
    ));
    let found = browse.wait_event("server", PATIENCE);
    let status = browse.wait(PATIENCE);
    assert!(
        status.success(),
        "browse-servers exited with {status}; saw {:?}",
        browse.seen
    );
    assert_eq!(found["name"], "srv-interop");
    assert_eq!(
        found["url"],
        format!("ws://127.0.0.1:{serve_port}/sendspin")
    );
}

#[test]
fn discover_lists_aiosendspin_server() {
    let Some(root) = peers::require_peers_root() else {
        return;
    };
    let Some(netns) = Netns::create() else { return };
    // The namespace is private, so the default port is free.
    let mut server = spawn(peer_in(
        &netns,
        &root,
        "venv-sendspin",
        &[
            "serve",
            "--port",
            "8927",
            "--timeout",
            "30",
            "--name",
            "Py Server",
        ],
    ));
    let listening = server.wait_event("listening", PATIENCE);

    let endpoints = discover(&netns, |found| {
        found.iter().any(|e| e["name"] == "Py Server")
    });
    let found = endpoints
        .iter()
        .find(|e| e["name"] == "Py Server")
        .unwrap_or_else(|| panic!("aiosendspin server missing from {endpoints:?}"));
    assert_eq!(found["kind"], "server");
    assert_eq!(found["dialect"], "sendspin");
    assert_eq!(found["instance"], listening["id"]);
    assert_eq!(found["port"], 8927);
    assert_eq!(found["path"], "/sendspin");
    assert_eq!(found["probe"]["id"], listening["id"]);
    assert_eq!(found["probe"]["version"], 1);
}

#[test]
fn play_prefers_last_played_server_over_mdns() {
    let Some(netns) = Netns::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut serves = Vec::new();
    for server_id in ["srv-one", "srv-two"] {
        let mut serve = spawn(netns.resonate(&[
            "serve",
            "--dialect",
            "sendspin-v1",
            &fixture(),
            "--listen",
            "127.0.0.1:0",
            "--server-id",
            server_id,
            "--json",
        ]));
        serve.wait_event("listening", PATIENCE);
        serves.push(serve);
    }

    // With srv-two stored as the last-played server, play picks it.
    let state = dir.path().join("state.json");
    std::fs::write(&state, r#"{"server_id": "srv-two"}"#).unwrap();
    let mut play = spawn(netns.resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--output",
        "null",
        "--client-id",
        "finder",
        "--state-file",
        state.to_str().unwrap(),
        "--json",
    ]));
    let connected = play.wait_event("connected", PATIENCE);
    assert_eq!(connected["server_id"], "srv-two");
    assert!(play.interrupt().success());

    // Without a last-played server, it takes the first by instance name.
    let empty = dir.path().join("empty.json");
    let mut play = spawn(netns.resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--output",
        "null",
        "--client-id",
        "finder-2",
        "--state-file",
        empty.to_str().unwrap(),
        "--json",
    ]));
    let connected = play.wait_event("connected", PATIENCE);
    assert_eq!(connected["server_id"], "srv-one");
    assert!(play.interrupt().success());
}

#[test]
fn play_picks_dialect_from_service_type() {
    let Some(netns) = Netns::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    // One server advertised twice: as Sendspin and as legacy Resonate.
    let mut serve = spawn(netns.resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        &fixture(),
        "--legacy",
        "--loop",
        "--listen",
        "127.0.0.1:0",
        "--server-id",
        "two-faced",
        "--json",
    ]));
    serve.wait_event("listening", PATIENCE);
    let state = dir.path().join("state.json");

    // Without --dialect, the Sendspin record wins. Play tries Sendspin 1.0
    // first, and this cleartext server makes it fall back to v1.
    let mut play = spawn(netns.resonate(&[
        "play",
        "--output",
        "null",
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--state-file",
        state.to_str().unwrap(),
        "--json",
    ]));
    let fell_back = play.wait_event("fell_back", PATIENCE);
    assert_eq!(fell_back["dialect"], "sendspin-v1", "{fell_back}");
    let connected = play.wait_event("connected", PATIENCE);
    assert_eq!(connected["dialect"], "sendspin-v1", "{connected}");
    assert!(play.interrupt().success());

    // --dialect resonate looks only for legacy servers, and plays from one.
    let mut play = spawn(netns.resonate(&[
        "play",
        "--dialect",
        "resonate",
        "--output",
        "null",
        "--client-id",
        "legacy",
        "--state-file",
        state.to_str().unwrap(),
        "--json",
    ]));
    let connected = play.wait_event("connected", PATIENCE);
    assert_eq!(connected["dialect"], "resonate", "{connected}");
    assert_eq!(connected["server_id"], "two-faced");
    play.wait_event("stream_started", PATIENCE);
    assert!(play.interrupt().success());
    assert!(serve.interrupt().success());
}

#[test]
fn play_waits_for_a_server_that_appears_late() {
    let Some(netns) = Netns::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut play = spawn(netns.resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--output",
        "null",
        "--client-id",
        "patient",
        "--state-file",
        state.to_str().unwrap(),
        "--search-timeout",
        "60",
        "--json",
    ]));

    // Past the 3 s in which play gathers responses, so only the first
    // response that comes later can end its search.
    std::thread::sleep(Duration::from_secs(4));
    let mut serve = spawn(netns.resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        &fixture(),
        "--loop",
        "--listen",
        "127.0.0.1:0",
        "--server-id",
        "latecomer",
        "--json",
    ]));
    serve.wait_event("listening", PATIENCE);

    let connected = play.wait_event("connected", PATIENCE);
    assert_eq!(connected["server_id"], "latecomer", "{connected}");
    assert!(play.interrupt().success());
    assert!(serve.interrupt().success());
}

#[test]
fn play_without_server_reports_none_found() {
    let Some(netns) = Netns::create() else { return };
    let output = netns
        .resonate(&[
            "play",
            "--dialect",
            "sendspin-v1",
            "--output",
            "null",
            "--client-id",
            "alone",
            "--state-file",
            "/nonexistent/state.json",
            "--search-timeout",
            "1.5",
        ])
        .output()
        .expect("run play");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no Sendspin server responded over mDNS within 1.5 s"),
        "{stderr}"
    );
    assert!(stderr.contains("--server"), "{stderr}");
}

/// Counts items running at once per key from start and stop events.
#[derive(Default)]
struct Gauge {
    running: std::collections::HashMap<String, i64>,
    max: i64,
}

impl Gauge {
    fn change(&mut self, key: &str, delta: i64) {
        let count = self.running.entry(key.to_string()).or_default();
        *count += delta;
        self.max = self.max.max(*count);
    }
}

#[test]
fn flapping_mdns_record_leaves_one_dial_loop() {
    let Some(root) = peers::require_peers_root() else {
        return;
    };
    let Some(netns) = Netns::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    // The player waits for servers without advertising, and the peer
    // announces and withdraws its record instead. It flaps 300 times 5 ms
    // apart, which browsers see as few changes because they keep a withdrawn
    // record for a second, then 3 times 1.5 s apart, which they see as
    // removals.
    let mut play = spawn(netns.resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--output",
        "null",
        "--client-id",
        "flapper",
        "--state-file",
        state.to_str().unwrap(),
        "--json",
    ]));
    let play_port = port_of(&play.wait_event("listening", PATIENCE)).to_string();
    let mut serve = spawn(netns.resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        &fixture(),
        "--listen",
        "127.0.0.1:0",
        "--server-id",
        "srv-flap",
        "--json",
    ]));
    serve.wait_event("listening", PATIENCE);

    let mut flapper = spawn(peer_in(
        &netns,
        &root,
        "venv-sendspin",
        &[
            "flap",
            "--port",
            &play_port,
            "--instance",
            "flapper",
            "--times",
            "300",
            "--gap",
            "0.005",
            "--slow",
            "3",
            "--slow-gap",
            "1.5",
            "--timeout",
            "40",
        ],
    ));
    flapper.wait_event("flapped", PATIENCE);
    let joined = serve.wait_event("client_joined", PATIENCE);
    assert_eq!(joined["client_id"], "flapper");
    play.wait_event("connected", PATIENCE);
    assert!(serve.interrupt().success());

    let address = format!("127.0.0.1:{play_port}");
    let mut loops = Gauge::default();
    let mut sessions = Gauge::default();
    let mut peers_by_session = std::collections::HashMap::new();
    let dials = serve
        .seen
        .iter()
        .filter(|event| event["event"] == "dial_started")
        .count();
    eprintln!("the server started {dials} dial loops while the record flapped");
    for event in &serve.seen {
        match event["event"].as_str().unwrap_or_default() {
            "dial_started" if event["address"] == address.as_str() => loops.change(&address, 1),
            "dial_stopped" if event["address"] == address.as_str() => loops.change(&address, -1),
            "session_opened" => {
                let peer = event["peer"].as_str().unwrap().to_string();
                peers_by_session.insert(event["session"].to_string(), peer.clone());
                sessions.change(&peer, 1);
            }
            "session_closed" => {
                if let Some(peer) = peers_by_session.get(&event["session"].to_string()) {
                    sessions.change(&peer.clone(), -1);
                }
            }
            _ => {}
        }
    }
    assert!(
        loops.max <= 1,
        "{} dial loops ran at once for {address}",
        loops.max
    );
    assert_eq!(sessions.max, 1, "sessions open at once for {address}");
}

#[test]
fn discover_watch_reports_added_and_removed() {
    let Some(netns) = Netns::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut watch = spawn(netns.resonate(&["discover", "--watch", "--json", "--timeout", "30"]));
    let (mut play, play_port) =
        start_listening_player(&netns, "watched-1", "Hall", &dir.path().join("state.json"));

    let added = watch.wait_event("added", PATIENCE);
    assert_eq!(added["kind"], "client");
    assert_eq!(added["instance"], "watched-1");
    assert_eq!(added["name"], "Hall");
    assert_eq!(added["port"], play_port);

    // Ctrl-C withdraws the record, which browsers see as a removal.
    assert!(play.interrupt().success());
    let removed = watch.wait_event("removed", PATIENCE);
    assert_eq!(removed["instance"], "watched-1");
}

#[test]
fn discover_reports_legacy_and_failed_probes() {
    let Some(root) = peers::require_peers_root() else {
        return;
    };
    let Some(netns) = Netns::create() else { return };
    let mut advertiser = spawn(peer_in(
        &netns,
        &root,
        "venv-sendspin",
        &[
            "flap",
            "--service-type",
            "_resonate-server._tcp.local.",
            "--path",
            "/resonate",
            "--instance",
            "old-server",
            "--port",
            "8927",
            "--times",
            "0",
            "--timeout",
            "30",
        ],
    ));
    advertiser.wait_event("flapped", PATIENCE);
    // A server record whose port has no listener: its probe must fail.
    let mut dead = spawn(peer_in(
        &netns,
        &root,
        "venv-sendspin",
        &[
            "flap",
            "--service-type",
            "_sendspin-server._tcp.local.",
            "--instance",
            "dead-server",
            "--port",
            "9",
            "--times",
            "0",
            "--timeout",
            "30",
        ],
    ));
    dead.wait_event("flapped", PATIENCE);

    let endpoints = discover(&netns, |found| {
        ["dead-server", "old-server"]
            .iter()
            .all(|instance| found.iter().any(|e| e["instance"] == *instance))
    });
    let unreachable = endpoints
        .iter()
        .find(|e| e["instance"] == "dead-server")
        .unwrap_or_else(|| panic!("dead server missing from {endpoints:?}"));
    let error = unreachable["probe_error"].as_str().expect("probe_error");
    assert!(error.contains("ws://127.0.0.1:9/sendspin"), "{error}");
    assert!(error.contains("failed"), "{error}");
    let legacy = endpoints
        .iter()
        .find(|e| e["instance"] == "old-server")
        .unwrap_or_else(|| panic!("legacy server missing from {endpoints:?}"));
    assert_eq!(legacy["kind"], "server");
    assert_eq!(legacy["dialect"], "resonate-legacy");
    assert_eq!(legacy["port"], 8927);
    assert_eq!(legacy["path"], "/resonate");
    // Nothing listens behind the record, so the probe, made in the legacy
    // dialect, fails to connect to the legacy path.
    let error = legacy["probe_error"].as_str().expect("probe_error");
    assert!(error.contains("ws://127.0.0.1:8927/resonate"), "{error}");
    assert!(error.contains("failed"), "{error}");
}
