//! Without --dialect, `serve` and `play` speak Sendspin 1.0, and `play`
//! dials a server that closes the 1.0 handshake before server/init again in
//! cleartext Sendspin v1.

mod support;

#[path = "support/process.rs"]
mod process;

use std::path::Path;
use std::time::Duration;

use process::{resonate, Proc};
use resonate::noise::Identity;
use support::write_test_wav;

const PATIENCE: Duration = Duration::from_secs(30);

/// Starts `serve` on a free loopback port with `flags` and no --dialect
/// unless `flags` has one; returns it with its `listening` event.
fn start_serve(source: &Path, state_dir: &Path, flags: &[&str]) -> (Proc, serde_json::Value) {
    let mut args = vec![
        "serve",
        source.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--loop",
        "--json",
        "--state-dir",
        state_dir.to_str().unwrap(),
    ];
    args.extend(flags);
    let mut server = resonate(&args);
    let listening = server.wait_event("listening", PATIENCE);
    (server, listening)
}

/// Starts `play` with no --dialect against `url`, into the null sink.
fn start_play(url: &str, state_dir: &Path) -> Proc {
    resonate(&[
        "play",
        "--server",
        url,
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--output",
        "null",
        "--json",
        "--duration",
        "60",
    ])
}

fn source(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("source.wav");
    write_test_wav(&path, 48_000, 2, 16, 2.0);
    path
}

#[test]
fn default_dialect_is_sendspin_1_0() {
    let dir = tempfile::tempdir().unwrap();
    let source = source(dir.path());
    let (mut server, listening) =
        start_serve(&source, &dir.path().join("server"), &["--allow-unpaired"]);
    assert_eq!(listening["dialect"], "sendspin", "{listening}");
    let server_identity =
        Identity::load_or_create(&dir.path().join("server/identity-server.json")).unwrap();
    assert_eq!(listening["server_id"], server_identity.id());

    let player_state = dir.path().join("player");
    let mut play = start_play(listening["url"].as_str().unwrap(), &player_state);
    let connected = play.wait_event("connected", PATIENCE);
    assert_eq!(connected["dialect"], "sendspin", "{connected}");
    assert_eq!(connected["server_id"], server_identity.id());
    let roles = connected["active_roles"].as_array().unwrap();
    assert!(roles.iter().any(|role| role == "player@v1"), "{connected}");
    play.wait_event("stream_started", PATIENCE);

    let player_id = Identity::load_or_create(&player_state.join("identity-player.json"))
        .unwrap()
        .id();
    loop {
        let joined = server.wait_event("client_joined", PATIENCE);
        if joined["client_id"] == player_id {
            break;
        }
    }
    assert!(
        !play.seen.iter().any(|event| event["event"] == "fell_back"),
        "a Sendspin 1.0 server must not make play fall back: {:?}",
        play.seen
    );
    play.interrupt();
    server.interrupt();
}

#[test]
fn v1_server_gets_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let source = source(dir.path());
    let (mut server, listening) = start_serve(
        &source,
        &dir.path().join("server"),
        &["--dialect", "sendspin-v1"],
    );
    assert_eq!(listening["dialect"], "sendspin-v1", "{listening}");

    let mut play = start_play(
        listening["url"].as_str().unwrap(),
        &dir.path().join("player"),
    );
    let fell_back = play.wait_event("fell_back", PATIENCE);
    assert_eq!(fell_back["dialect"], "sendspin-v1", "{fell_back}");
    let connected = play.wait_event("connected", PATIENCE);
    assert_eq!(connected["dialect"], "sendspin-v1", "{connected}");
    play.wait_event("stream_started", PATIENCE);
    play.interrupt();
    server.interrupt();
}

#[test]
fn chosen_sendspin_dialect_never_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let source = source(dir.path());
    let (mut server, listening) = start_serve(
        &source,
        &dir.path().join("server"),
        &["--dialect", "sendspin-v1"],
    );
    let mut play = resonate(&[
        "play",
        "--server",
        listening["url"].as_str().unwrap(),
        "--dialect",
        "sendspin",
        "--state-dir",
        dir.path().join("player").to_str().unwrap(),
        "--output",
        "null",
        "--json",
        "--duration",
        "60",
    ]);
    // Two refused handshakes in a row: the player retries in 1.0.
    play.wait_event("disconnected", PATIENCE);
    play.wait_event("disconnected", PATIENCE);
    play.interrupt();
    assert!(
        !play
            .seen
            .iter()
            .any(|event| event["event"] == "fell_back" || event["event"] == "connected"),
        "play --dialect sendspin must not fall back to cleartext: {:?}",
        play.seen
    );
    server.interrupt();
}

#[test]
fn unapproved_player_connects_without_roles() {
    let dir = tempfile::tempdir().unwrap();
    let source = source(dir.path());
    let (mut server, listening) = start_serve(&source, &dir.path().join("server"), &[]);
    let mut play = start_play(
        listening["url"].as_str().unwrap(),
        &dir.path().join("player"),
    );
    let connected = play.wait_event("connected", PATIENCE);
    assert_eq!(connected["dialect"], "sendspin", "{connected}");
    assert_eq!(
        connected["active_roles"],
        serde_json::json!([]),
        "{connected}"
    );
    play.interrupt();
    server.interrupt();
}

#[test]
fn stress_error_names_dialect() {
    let dir = tempfile::tempdir().unwrap();
    let source = source(dir.path());
    let (mut server, listening) = start_serve(&source, &dir.path().join("server"), &[]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args(["stress", "--server", listening["url"].as_str().unwrap()])
        .args([
            "--scenario",
            "handshake-storm",
            "--duration",
            "2",
            "--clients",
            "2",
        ])
        .output()
        .expect("run resonate stress");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("add --dialect sendspin"),
        "the error must name the dialect to use: {stderr}"
    );
    server.interrupt();
}
