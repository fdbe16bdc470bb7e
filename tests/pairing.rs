//! Sendspin 1.0 pairing with `resonate serve pair` and `resonate play pair`:
//! by static code, by dynamic code typed on the server's terminal and by
//! pairing token, between the two commands and with aiosendspin 10.2.1.
//! Afterwards `serve` admits the paired player without approval.

#[path = "support/peers.rs"]
mod peers;
#[path = "support/process.rs"]
mod process;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use peers::{peer_command, require_peers_root};
use process::{resonate, spawn, Proc};
use resonate::noise::{ClientIdSet, PairingStore, APPROVALS};

const PATIENCE: Duration = Duration::from_secs(60);

fn path_text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Starts `serve pair` on a free loopback port and returns it with its URL.
fn start_serve_pair(state: &Path, extra: &[&str]) -> (Proc, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_resonate"));
    command
        .args([
            "serve",
            "pair",
            "--listen",
            "127.0.0.1:0",
            "--json",
            "--timeout",
            "60",
        ])
        .args(["--state-dir", path_text(state)])
        .args(extra)
        .stdin(Stdio::piped());
    let mut server = spawn(command);
    let url = server.wait_event("listening", PATIENCE)["url"]
        .as_str()
        .unwrap()
        .to_string();
    (server, url)
}

fn play_pair(state: &Path, url: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "play",
        "pair",
        "--server",
        url,
        "--json",
        "--window",
        "60",
        "--state-dir",
        path_text(state),
    ];
    args.extend(extra);
    resonate(&args)
}

fn records(path: &Path) -> Vec<String> {
    let store = PairingStore::load(path).unwrap();
    store
        .records()
        .iter()
        .map(|record| record.peer_id.clone())
        .collect()
}

#[test]
fn static_code_pairs_resonate_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (server_state, player_state) = (dir.path().join("server"), dir.path().join("player"));
    let (mut server, url) = start_serve_pair(&server_state, &["--code", "1357-2468"]);
    let mut player = play_pair(&player_state, &url, &["--code", "13572468"]);

    let secrets = player.wait_event("pairing_secrets", PATIENCE);
    assert_eq!(secrets["static_code"], "1357-2468");
    let client_id = secrets["client_id"].as_str().unwrap().to_string();
    let player_paired = player.wait_event("paired", PATIENCE);
    assert_eq!(player_paired["method"], "static_pairing_code");
    let server_paired = server.wait_event("paired", PATIENCE);
    assert_eq!(server_paired["client_id"], client_id.as_str());
    assert!(player.wait(PATIENCE).success());
    assert!(server.wait(PATIENCE).success());

    let server_id = player_paired["server_id"].as_str().unwrap();
    assert_eq!(
        records(&player_state.join("pairings-player.json")),
        vec![server_id.to_string()]
    );
    assert_eq!(
        records(&server_state.join("pairings-server.json")),
        vec![client_id.clone()]
    );
    assert_paired_player_is_admitted(&server_state, &player_state, &client_id);
}

#[test]
fn wrong_static_code_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (server_state, player_state) = (dir.path().join("server"), dir.path().join("player"));
    let (mut server, url) = start_serve_pair(&server_state, &["--code", "1111-2222"]);
    let mut player = play_pair(&player_state, &url, &["--code", "1111-2223"]);

    let player_status = player.wait(PATIENCE);
    let server_status = server.wait(PATIENCE);
    assert_eq!(player_status.code(), Some(1));
    assert_eq!(server_status.code(), Some(1));
    assert!(records(&player_state.join("pairings-player.json")).is_empty());
    assert!(records(&server_state.join("pairings-server.json")).is_empty());
}

#[test]
fn pairing_token_pairs_resonate_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (server_state, player_state) = (dir.path().join("server"), dir.path().join("player"));
    let output = Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args([
            "play",
            "pair",
            "--json",
            "--state-dir",
            path_text(&player_state),
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let secrets: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let token = secrets["token"].as_str().unwrap();
    assert!(token.starts_with("SP:0"), "{token}");

    // An approval the operator gave before pairing is discarded by it.
    let client_id = secrets["client_id"].as_str().unwrap();
    let approvals_path = server_state.join("approvals-server.json");
    ClientIdSet::load(&approvals_path, APPROVALS)
        .unwrap()
        .insert(client_id)
        .unwrap();

    let (mut server, url) = start_serve_pair(&server_state, &[&format!("--token={token}")]);
    let mut player = play_pair(&player_state, &url, &[]);
    let player_paired = player.wait_event("paired", PATIENCE);
    assert_eq!(player_paired["method"], "pairing_psk");
    let server_paired = server.wait_event("paired", PATIENCE);
    assert_eq!(server_paired["client_id"], secrets["client_id"]);
    assert!(player.wait(PATIENCE).success());
    assert!(server.wait(PATIENCE).success());
    assert!(!ClientIdSet::load(&approvals_path, APPROVALS)
        .unwrap()
        .contains(client_id));
    assert_paired_player_is_admitted(&server_state, &player_state, client_id);
}

/// Runs `serve --dialect sendspin` and `play --dialect sendspin` with the
/// paired state directories: the player gets its roles with no --approve.
fn assert_paired_player_is_admitted(server_state: &Path, player_state: &Path, client_id: &str) {
    let mut server = resonate(&[
        "serve",
        "--tone",
        "sine",
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--json",
        "--dialect",
        "sendspin",
        "--state-dir",
        path_text(server_state),
    ]);
    let url = server.wait_event("listening", PATIENCE)["url"]
        .as_str()
        .unwrap()
        .to_string();
    let mut player = resonate(&[
        "play",
        "--server",
        &url,
        "--dialect",
        "sendspin",
        "--state-dir",
        path_text(player_state),
        "--output",
        "null",
        "--json",
    ]);
    let joined = loop {
        let joined = server.wait_event("client_joined", PATIENCE);
        if joined["client_id"] == client_id {
            break joined;
        }
    };
    let roles: Vec<&str> = joined["active_roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        roles.contains(&"player@v1"),
        "roles of the paired player: {roles:?}"
    );
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());
}

/// Starts the aiosendspin 10.2.1 pairing client driver against `url`.
fn aiosendspin_pairing_client(root: &Path, url: &str, method: &[&str]) -> Proc {
    let peers_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let mut command = peer_command(root, "venv-sendspin", &peers_dir, "python3");
    command
        .args([
            "aiosendspin_pairing_client.py",
            "--url",
            url,
            "--seconds",
            "45",
        ])
        .args(method);
    spawn(command.into_std())
}

#[test]
fn aiosendspin_client_pairs_by_static_code() {
    let Some(root) = require_peers_root() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server_state = dir.path().join("server");
    let (mut server, url) = start_serve_pair(&server_state, &["--code", "2468-1357"]);
    let mut client = aiosendspin_pairing_client(&root, &url, &["--static-code", "24681357"]);

    let client_id = client.wait_event("identity", PATIENCE)["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let server_paired = server.wait_event("paired", PATIENCE);
    assert_eq!(server_paired["client_id"], client_id.as_str());
    assert_eq!(server_paired["method"], "static_pairing_code");
    let client_paired = client.wait_event("paired", PATIENCE);
    assert_eq!(client_paired["server_id"], server.seen[0]["server_id"]);
    assert!(client.wait(PATIENCE).success());
    assert!(server.wait(PATIENCE).success());
    assert_eq!(
        records(&server_state.join("pairings-server.json")),
        vec![client_id]
    );
}

#[test]
fn aiosendspin_client_pairs_by_dynamic_code() {
    let Some(root) = require_peers_root() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server_state = dir.path().join("server");
    let (mut server, url) = start_serve_pair(&server_state, &[]);
    let mut client = aiosendspin_pairing_client(&root, &url, &["--dynamic"]);

    let client_id = client.wait_event("identity", PATIENCE)["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let displayed = client.wait_event("pairing_code", PATIENCE);
    let grouped = displayed["grouped"].as_str().unwrap().to_string();
    assert_eq!(grouped.len(), 7, "{grouped}");
    let prompt = server.wait_event("code_wanted", PATIENCE);
    assert_eq!(prompt["round"], 1);

    // A typo first: the server prompts again without starting a round.
    let mut stdin = server.child.stdin.take().unwrap();
    writeln!(stdin, "12-34").unwrap();
    let again = server.wait_event("code_wanted", PATIENCE);
    assert_eq!(again["round"], 1);
    writeln!(stdin, "{grouped}").unwrap();

    let server_paired = server.wait_event("paired", PATIENCE);
    assert_eq!(server_paired["client_id"], client_id.as_str());
    assert_eq!(server_paired["method"], "dynamic_pairing_code");
    client.wait_event("paired", PATIENCE);
    assert!(client.wait(PATIENCE).success());
    assert!(server.wait(PATIENCE).success());
    assert_eq!(
        records(&server_state.join("pairings-server.json")),
        vec![client_id]
    );
}

#[test]
fn aiosendspin_client_retries_wrong_dynamic_code() {
    let Some(root) = require_peers_root() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server_state = dir.path().join("server");
    let (mut server, url) = start_serve_pair(&server_state, &[]);
    let mut client = aiosendspin_pairing_client(&root, &url, &["--dynamic"]);

    let displayed = client.wait_event("pairing_code", PATIENCE);
    let code = displayed["code"].as_str().unwrap().to_string();
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let mut stdin = server.child.stdin.take().unwrap();
    server.wait_event("code_wanted", PATIENCE);
    writeln!(stdin, "{wrong}").unwrap();

    // The client does not verify the server's tag and requests a round 2,
    // where the same code is shown again.
    let again = server.wait_event("code_wanted", PATIENCE);
    assert_eq!(again["round"], 2);
    writeln!(stdin, "{code}").unwrap();
    server.wait_event("paired", PATIENCE);
    client.wait_event("paired", PATIENCE);
    assert!(client.wait(PATIENCE).success());
    assert!(server.wait(PATIENCE).success());
}

#[test]
fn play_pair_with_aiosendspin_server() {
    let Some(root) = require_peers_root() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let player_state = dir.path().join("player");
    let peers_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let mut command = peer_command(&root, "venv-sendspin", &peers_dir, "python3");
    command.args([
        "aiosendspin_pairing_server.py",
        "--static-code",
        "11223344",
        "--timeout",
        "45",
    ]);
    let mut server = spawn(command.into_std());
    let server_id = server.wait_event("identity", PATIENCE)["server_id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = server.wait_event("listening", PATIENCE)["url"]
        .as_str()
        .unwrap()
        .to_string();

    let mut player = play_pair(&player_state, &url, &["--code", "1122-3344"]);
    let client_id = player.wait_event("pairing_secrets", PATIENCE)["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let player_paired = player.wait_event("paired", PATIENCE);
    assert_eq!(player_paired["server_id"], server_id.as_str());
    assert_eq!(player_paired["method"], "static_pairing_code");
    let server_paired = server.wait_event("paired", PATIENCE);
    assert_eq!(server_paired["client_id"], client_id.as_str());
    assert!(player.wait(PATIENCE).success());
    assert!(server.wait(PATIENCE).success());
    assert_eq!(
        records(&player_state.join("pairings-player.json")),
        vec![server_id]
    );
}
