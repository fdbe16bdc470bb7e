//! `resonate serve --dialect sendspin` and `resonate play --dialect
//! sendspin` over the encrypted Sendspin 1.0 transport, with cleartext v1
//! players on the same path, and the admission of unpaired clients.

mod support;

#[path = "support/process.rs"]
mod process;

use std::path::Path;
use std::time::Duration;

use process::{resonate, Proc};
use resonate::noise::{Identity, PairingStore};
use support::{read_recording, write_test_wav};

const RATE: u32 = 48_000;
const CHANNELS: u16 = 2;
const PATIENCE: Duration = Duration::from_secs(30);

/// Returns a new temporary directory with a `seconds` long source WAV
/// (48 kHz, 16-bit stereo) in it, and the WAV's path.
fn source_dir(seconds: f64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source.wav");
    write_test_wav(&source_path, RATE, CHANNELS, 16, seconds);
    (dir, source_path)
}

/// Returns the id (the public key) of the `player` or `server` identity in
/// `state_dir`, made now when it is missing.
fn key_id(state_dir: &Path, side: &str) -> String {
    Identity::load_or_create(&state_dir.join(format!("identity-{side}.json")))
        .unwrap()
        .id()
}

fn start_serve(source: &Path, state_dir: &Path, extra: &[&str]) -> (Proc, String) {
    let state_dir = state_dir.to_str().unwrap();
    let mut args = vec![
        "serve",
        source.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--start-delay-ms",
        "1500",
        "--json",
        "--dialect",
        "sendspin",
        "--state-dir",
        state_dir,
    ];
    args.extend(extra);
    let mut server = resonate(&args);
    let url = server.wait_event("listening", PATIENCE)["url"]
        .as_str()
        .unwrap()
        .to_string();
    (server, url)
}

fn start_encrypted_player(url: &str, state_dir: &Path, suite: &str, wav: &Path) -> Proc {
    let output = format!("wav:{}", wav.display());
    resonate(&[
        "play",
        "--server",
        url,
        "--dialect",
        "sendspin",
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--suite",
        suite,
        "--output",
        &output,
        "--sample-rate",
        "48000",
        "--bit-depth",
        "16",
        "--json",
        "--no-drift-correction",
    ])
}

/// Starts a player on the default suite that records to `out.wav` in
/// `out_dir`.
fn start_chacha_player(url: &str, state_dir: &Path, out_dir: &Path) -> Proc {
    let wav = out_dir.join("out.wav");
    start_encrypted_player(url, state_dir, "25519_ChaChaPoly_SHA256", &wav)
}

/// Waits for the `client_joined` event of `client_id` and returns its roles.
fn joined_roles(server: &mut Proc, client_id: &str) -> Vec<String> {
    loop {
        let joined = server.wait_event("client_joined", PATIENCE);
        if joined["client_id"] == client_id {
            return joined["active_roles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|role| role.as_str().unwrap().to_string())
                .collect();
        }
    }
}

#[test]
fn encrypted_and_cleartext_players_share_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source.wav");
    let source = write_test_wav(&source_path, RATE, CHANNELS, 16, 3.0);
    let (mut server, url) = start_serve(
        &source_path,
        &dir.path().join("server"),
        &["--accept-v1", "--allow-unpaired"],
    );

    let player_state = dir.path().join("player");
    let player_id = key_id(&player_state, "player");
    let encrypted_wav = dir.path().join("encrypted.wav");
    let cleartext_wav = dir.path().join("cleartext.wav");
    let mut encrypted =
        start_encrypted_player(&url, &player_state, "25519_AESGCM_SHA256", &encrypted_wav);
    let output = format!("wav:{}", cleartext_wav.display());
    let mut cleartext = resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        &url,
        "--client-id",
        "cleartext",
        "--output",
        &output,
        "--sample-rate",
        "48000",
        "--bit-depth",
        "16",
        "--json",
        "--no-drift-correction",
    ]);

    let started = server.wait_event("program_started", PATIENCE);
    let start_us = started["start_us"].as_i64().unwrap();
    server.wait_event("program_ended", PATIENCE);
    // The two players join in either order, before or after the start.
    let joined = server
        .seen
        .iter()
        .find(|event| event["event"] == "client_joined" && event["client_id"] == player_id.as_str())
        .unwrap_or_else(|| {
            panic!(
                "the encrypted player {player_id} never joined: {:?}",
                server.seen
            )
        })
        .clone();
    let roles = joined["active_roles"].as_array().unwrap();
    assert!(
        roles.iter().any(|role| role == "player@v1"),
        "encrypted player roles {roles:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    for (name, player) in [("encrypted", &mut encrypted), ("cleartext", &mut cleartext)] {
        let status = player.interrupt();
        assert!(status.success(), "{name} player exited with {status}");
    }
    assert!(server.interrupt().success(), "serve failed");

    for (name, wav) in [("encrypted", &encrypted_wav), ("cleartext", &cleartext_wav)] {
        assert_played_source(name, wav, &source, start_us);
    }
}

/// Checks that the recording at `wav` holds at least half of `source`,
/// sample for sample, from where the program that started at `start_us`
/// (server clock) was when the recording began.
fn assert_played_source(name: &str, wav: &Path, source: &[i32], start_us: i64) {
    let recording = read_recording(wav);
    let offset_us = recording.first_frame_server_us - start_us;
    let frame = ((offset_us as f64) * f64::from(RATE) / 1e6).round() as usize;
    let start = frame * usize::from(CHANNELS);
    assert!(
        start < source.len(),
        "{name}: first frame {frame} is past the source"
    );
    let audible = recording.samples.len().min(source.len() - start);
    assert!(
        audible * 2 >= source.len(),
        "{name}: played {audible} of {} samples",
        source.len()
    );
    let first_difference = recording.samples[..audible]
        .iter()
        .zip(&source[start..])
        .position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "{name}: differs from the source (frame offset {frame})"
    );
}

/// `serve --rekey-interval` rotates the session keys with in-band
/// re-handshakes while it streams, and the player plays on without a gap.
#[test]
fn key_rotation_keeps_audio_exact() {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source.wav");
    let source = write_test_wav(&source_path, RATE, CHANNELS, 16, 4.0);
    let (mut server, url) = start_serve(
        &source_path,
        &dir.path().join("server"),
        &["--allow-unpaired", "--rekey-interval", "1"],
    );
    let wav = dir.path().join("rotated.wav");
    let mut player = start_encrypted_player(
        &url,
        &dir.path().join("player"),
        "25519_ChaChaPoly_SHA256",
        &wav,
    );
    let started = server.wait_event("program_started", PATIENCE);
    let start_us = started["start_us"].as_i64().unwrap();
    server.wait_event("program_ended", PATIENCE);
    std::thread::sleep(Duration::from_millis(500));
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());

    // The player's whole output is in `seen` once it exited: one session.
    let count = |name: &str| {
        player
            .seen
            .iter()
            .filter(|event| event["event"] == name)
            .count()
    };
    assert_eq!(count("connected"), 1, "{:?}", player.seen);
    assert_eq!(count("disconnected"), 0, "{:?}", player.seen);
    assert_played_source("rotated", &wav, &source, start_us);
}

#[test]
fn unpaired_client_needs_approval() {
    let (dir, source_path) = source_dir(1.0);
    let player_state = dir.path().join("player");
    let player_id = key_id(&player_state, "player");
    let wav = dir.path().join("out.wav");

    // Without approval the session opens, but with no roles.
    let (mut server, url) = start_serve(&source_path, &dir.path().join("server"), &[]);
    let mut player = start_encrypted_player(&url, &player_state, "25519_ChaChaPoly_SHA256", &wav);
    assert_eq!(
        joined_roles(&mut server, &player_id),
        Vec::<String>::new(),
        "roles without approval"
    );
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());

    // --approve names the client, which then gets the player role.
    let (mut server, url) = start_serve(
        &source_path,
        &dir.path().join("server"),
        &[&format!("--approve={player_id}")],
    );
    let mut player = start_encrypted_player(&url, &player_state, "25519_ChaChaPoly_SHA256", &wav);
    let roles = joined_roles(&mut server, &player_id);
    assert!(
        roles.contains(&"player@v1".to_string()),
        "roles with --approve: {roles:?}"
    );
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());
}

/// An approval is stored: it outlives the server until --revoke.
#[test]
fn approval_persists_until_revoked() {
    let (dir, source_path) = source_dir(1.0);
    let player_state = dir.path().join("player");
    let server_state = dir.path().join("server");
    let player_id = key_id(&player_state, "player");
    let wav = dir.path().join("out.wav");
    let roles_with = |extra: &[&str]| {
        let (mut server, url) = start_serve(&source_path, &server_state, extra);
        let mut player =
            start_encrypted_player(&url, &player_state, "25519_ChaChaPoly_SHA256", &wav);
        let roles = joined_roles(&mut server, &player_id);
        assert!(player.interrupt().success());
        assert!(server.interrupt().success());
        roles
    };

    let approved = roles_with(&[&format!("--approve={player_id}")]);
    assert!(
        approved.contains(&"player@v1".to_string()),
        "roles with --approve: {approved:?}"
    );
    let restarted = roles_with(&[]);
    assert!(
        restarted.contains(&"player@v1".to_string()),
        "roles after a restart: {restarted:?}"
    );
    let revoked = roles_with(&[&format!("--revoke={player_id}")]);
    assert_eq!(revoked, Vec::<String>::new(), "roles after --revoke");
    let after = roles_with(&[]);
    assert_eq!(
        after,
        Vec::<String>::new(),
        "roles after a restart that followed --revoke"
    );
}

/// `serve --dialect sendspin --client URL` dials a player that listens
/// in Sendspin 1.0, runs the handshake as the Noise initiator it always is,
/// and streams to it once approved.
#[test]
fn server_dials_listening_encrypted_player() {
    let (dir, source_path) = source_dir(1.0);
    let player_state = dir.path().join("player");
    let player_id = key_id(&player_state, "player");
    let wav = dir.path().join("out.wav");
    let output = format!("wav:{}", wav.display());
    let mut player = resonate(&[
        "play",
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--dialect",
        "sendspin",
        "--state-dir",
        player_state.to_str().unwrap(),
        "--output",
        &output,
        "--json",
    ]);
    let player_url = player.wait_event("listening", PATIENCE)["url"]
        .as_str()
        .unwrap()
        .to_string();

    let (mut server, _url) = start_serve(
        &source_path,
        &dir.path().join("server"),
        &["--client", &player_url, &format!("--approve={player_id}")],
    );
    let roles = joined_roles(&mut server, &player_id);
    assert!(
        roles.contains(&"player@v1".to_string()),
        "roles of the dialed player: {roles:?}"
    );
    let started = player.wait_event("stream_started", PATIENCE);
    assert_eq!(started["codec"], "pcm", "{started}");
    assert!(server.interrupt().success());
    assert!(player.interrupt().success());
}

#[test]
fn server_identity_persists_owner_only() {
    let (dir, source_path) = source_dir(1.0);
    let state = dir.path().join("server");
    for _ in 0..2 {
        let (mut server, _url) = start_serve(&source_path, &state, &[]);
        assert!(server.interrupt().success());
    }
    let path = state.join("identity-server.json");
    let first = Identity::load_or_create(&path).unwrap();
    assert_eq!(first.id().len(), 43);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "identity file mode");
    }
}

#[test]
fn cleartext_client_rejected_without_accept_v1() {
    let (dir, source_path) = source_dir(1.0);
    let (mut server, url) = start_serve(
        &source_path,
        &dir.path().join("server"),
        &["--allow-unpaired"],
    );
    let mut player = resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        &url,
        "--client-id",
        "cleartext",
        "--output",
        "null",
        "--json",
    ]);
    let disconnected = player.wait_event("disconnected", PATIENCE);
    assert_eq!(disconnected["cause"], "peer_closed", "{disconnected}");
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());
}

/// Writes one pairing record with `psk` on each side, as a finished pairing
/// leaves them.
fn pair_by_records(server_state: &Path, player_state: &Path, psk: &[u8; 32]) -> (String, String) {
    let server_id = key_id(server_state, "server");
    let player_id = key_id(player_state, "player");
    let mut server_records =
        PairingStore::load(&server_state.join("pairings-server.json")).unwrap();
    server_records.insert(&player_id, psk).unwrap();
    let mut player_records =
        PairingStore::load(&player_state.join("pairings-player.json")).unwrap();
    player_records.insert(&server_id, psk).unwrap();
    (server_id, player_id)
}

#[test]
fn paired_client_plays_without_approval() {
    let (dir, source_path) = source_dir(1.0);
    let (server_state, player_state) = (dir.path().join("server"), dir.path().join("player"));
    let (_, player_id) = pair_by_records(&server_state, &player_state, &[0x5a; 32]);

    let (mut server, url) = start_serve(&source_path, &server_state, &[]);
    let mut player = start_chacha_player(&url, &player_state, dir.path());
    let roles = joined_roles(&mut server, &player_id);
    assert!(
        roles.contains(&"player@v1".to_string()),
        "paired client roles: {roles:?}"
    );
    server.wait_event("stream_started", PATIENCE);
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());
}

#[test]
fn lost_record_gets_no_roles() {
    let (dir, source_path) = source_dir(1.0);
    let (server_state, player_state) = (dir.path().join("server"), dir.path().join("player"));
    let (_, player_id) = pair_by_records(&server_state, &player_state, &[0x33; 32]);
    // The player loses its record; the server still references it, so the
    // player answers with the Sentinel PSK and the session stays roleless,
    // even though unpaired clients are allowed.
    std::fs::remove_file(player_state.join("pairings-player.json")).unwrap();

    let (mut server, url) = start_serve(&source_path, &server_state, &["--allow-unpaired"]);
    let mut player = start_chacha_player(&url, &player_state, dir.path());
    assert_eq!(
        joined_roles(&mut server, &player_id),
        Vec::<String>::new(),
        "roles after a credential mismatch"
    );
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());
}

/// Returns the pairing token that `play --pairing-token` prints for the
/// player of `state_dir`.
fn pairing_token(state_dir: &Path) -> String {
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args(["play", "--pairing-token", "--state-dir"])
        .arg(state_dir)
        .output()
        .unwrap();
    assert!(
        printed.status.success(),
        "play --pairing-token failed: {printed:?}"
    );
    let token = String::from_utf8(printed.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(token.starts_with("SP:0"), "token {token:?}");
    token
}

#[test]
fn pairing_token_pairs_and_persists_records() {
    let (dir, source_path) = source_dir(1.0);
    let (server_state, player_state) = (dir.path().join("server"), dir.path().join("player"));
    let token = pairing_token(&player_state);
    let player_id = key_id(&player_state, "player");

    // Pairing: no approval flag, only the token.
    let (mut server, url) = start_serve(&source_path, &server_state, &["--pair-token", &token]);
    let server_id = key_id(&server_state, "server");
    let mut player = start_chacha_player(&url, &player_state, dir.path());
    let roles = joined_roles(&mut server, &player_id);
    assert!(
        roles.contains(&"player@v1".to_string()),
        "roles after pairing: {roles:?}"
    );
    server.wait_event("stream_started", PATIENCE);
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());

    let server_records = PairingStore::load(&server_state.join("pairings-server.json")).unwrap();
    let player_records = PairingStore::load(&player_state.join("pairings-player.json")).unwrap();
    let server_record = server_records
        .record_of(&player_id)
        .expect("the server stored no record");
    let player_record = player_records
        .record_of(&server_id)
        .expect("the player stored no record");
    assert_eq!(
        server_record.psk, player_record.psk,
        "the two records hold different PSKs"
    );

    // The next connection is paired by the record alone.
    let (mut server, url) = start_serve(&source_path, &server_state, &[]);
    let mut player = start_encrypted_player(
        &url,
        &player_state,
        "25519_AESGCM_SHA256",
        &dir.path().join("again.wav"),
    );
    let roles = joined_roles(&mut server, &player_id);
    assert!(
        roles.contains(&"player@v1".to_string()),
        "roles on the paired reconnect: {roles:?}"
    );
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());
}

#[test]
fn unpair_drops_both_records() {
    let (dir, source_path) = source_dir(1.0);
    let (server_state, player_state) = (dir.path().join("server"), dir.path().join("player"));
    let (server_id, player_id) = pair_by_records(&server_state, &player_state, &[0x3c; 32]);

    let (mut server, url) = start_serve(&source_path, &server_state, &["--unpair", &player_id]);
    let mut player = start_chacha_player(&url, &player_state, dir.path());
    // The paired session carries server/unpair; the player says goodbye
    // and connects again, unpaired and not approved.
    let goodbye = player.wait_event("disconnected", PATIENCE);
    assert_eq!(goodbye["cause"], "local_goodbye", "{goodbye}");
    assert!(
        goodbye["detail"].as_str().unwrap().contains("unpaired"),
        "{goodbye}"
    );
    let again = player.wait_event("connected", PATIENCE);
    assert_eq!(again["active_roles"], serde_json::json!([]), "{again}");

    assert_records(&server_state, &player_id, &player_state, &server_id, false);
    let pending = resonate::noise::ClientIdSet::load(
        &server_state.join("unpairs-server.json"),
        resonate::noise::PENDING_UNPAIRS,
    )
    .unwrap();
    assert!(!pending.contains(&player_id), "the unpair stayed pending");
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());

    // A client without a record cannot be unpaired.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_resonate"))
        .arg("serve")
        .arg(&source_path)
        .args([
            "--no-mdns",
            "--listen",
            "127.0.0.1:0",
            "--unpair",
            &player_id,
        ])
        .arg("--state-dir")
        .arg(&server_state)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no pairing record"), "{stderr}");
}

/// Checks that the server's record of `player_id` and the player's record
/// of `server_id` both exist when `expected` is true, and both do not
/// otherwise.
fn assert_records(
    server_state: &Path,
    player_id: &str,
    player_state: &Path,
    server_id: &str,
    expected: bool,
) {
    let server_records = PairingStore::load(&server_state.join("pairings-server.json")).unwrap();
    let player_records = PairingStore::load(&player_state.join("pairings-player.json")).unwrap();
    let server_has = server_records.record_of(player_id).is_some();
    let player_has = player_records.record_of(server_id).is_some();
    assert_eq!(server_has, expected, "the server's record of the player");
    assert_eq!(player_has, expected, "the player's record of the server");
}

/// Runs `serve clients` on `state_dir` with `changes` and returns its JSON
/// listing.
fn serve_clients(state_dir: &Path, changes: &[&str]) -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args(["serve", "clients", "--json", "--state-dir"])
        .arg(state_dir)
        .args(changes)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "serve clients failed: {stderr}");
    serde_json::from_slice(&output.stdout).expect("serve clients prints JSON")
}

/// `serve clients --approve` and `--revoke` change the roles of a player
/// connected to a running serve: its session is closed, and it connects
/// again under the new terms.
#[test]
fn approval_applies_to_a_connected_player() {
    let (dir, source_path) = source_dir(1.0);
    let (server_state, player_state) = (dir.path().join("server"), dir.path().join("player"));
    let player_id = key_id(&player_state, "player");
    let (mut server, url) = start_serve(&source_path, &server_state, &[]);
    let mut player = start_chacha_player(&url, &player_state, dir.path());
    assert_eq!(joined_roles(&mut server, &player_id), Vec::<String>::new());

    let listing = serve_clients(&server_state, &["--approve", &player_id]);
    assert_eq!(
        listing["approved"],
        serde_json::json!([player_id]),
        "{listing}"
    );
    let closed = player.wait_event("disconnected", PATIENCE);
    assert!(
        closed["detail"].as_str().unwrap().contains("access"),
        "{closed}"
    );
    let roles = joined_roles(&mut server, &player_id);
    assert!(
        roles.contains(&"player@v1".to_string()),
        "roles after approval: {roles:?}"
    );

    let listing = serve_clients(&server_state, &["--revoke", &player_id]);
    assert_eq!(listing["approved"], serde_json::json!([]), "{listing}");
    assert_eq!(
        joined_roles(&mut server, &player_id),
        Vec::<String>::new(),
        "roles after the revocation"
    );
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());
}

/// `serve clients --unpair` reaches a paired player that is connected:
/// its session is closed, and on its next connection both sides drop
/// their records.
#[test]
fn unpair_reaches_a_connected_player() {
    let (dir, source_path) = source_dir(1.0);
    let (server_state, player_state) = (dir.path().join("server"), dir.path().join("player"));
    let (server_id, player_id) = pair_by_records(&server_state, &player_state, &[0x6d; 32]);
    let (mut server, url) = start_serve(&source_path, &server_state, &[]);
    let mut player = start_chacha_player(&url, &player_state, dir.path());
    let roles = joined_roles(&mut server, &player_id);
    assert!(roles.contains(&"player@v1".to_string()), "{roles:?}");

    let listing = serve_clients(&server_state, &["--unpair", &player_id]);
    assert_eq!(
        listing["to_unpair"],
        serde_json::json!([player_id]),
        "{listing}"
    );
    assert_eq!(
        listing["paired"],
        serde_json::json!([player_id]),
        "{listing}"
    );
    let goodbye = loop {
        let disconnected = player.wait_event("disconnected", PATIENCE);
        if disconnected["cause"] == "local_goodbye" {
            break disconnected;
        }
    };
    assert!(
        goodbye["detail"].as_str().unwrap().contains("unpaired"),
        "{goodbye}"
    );
    assert_eq!(
        joined_roles(&mut server, &player_id),
        Vec::<String>::new(),
        "an unpaired player without approval has no roles"
    );
    assert_records(&server_state, &player_id, &player_state, &server_id, false);
    let listing = serve_clients(&server_state, &[]);
    assert_eq!(listing["paired"], serde_json::json!([]), "{listing}");
    assert_eq!(listing["to_unpair"], serde_json::json!([]), "{listing}");
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());
}

/// `serve clients --pair-token` pairs a player connected to a running
/// serve: its session is closed, and its next connection pairs by the
/// token.
#[test]
fn pair_token_reaches_a_connected_player() {
    let (dir, source_path) = source_dir(1.0);
    let (server_state, player_state) = (dir.path().join("server"), dir.path().join("player"));
    let token = pairing_token(&player_state);
    let player_id = key_id(&player_state, "player");
    let server_id = key_id(&server_state, "server");
    let (mut server, url) = start_serve(&source_path, &server_state, &[]);
    let mut player = start_chacha_player(&url, &player_state, dir.path());
    assert_eq!(joined_roles(&mut server, &player_id), Vec::<String>::new());

    let listing = serve_clients(&server_state, &["--pair-token", &token]);
    let requested = serde_json::json!([{ "client_id": player_id, "method": "pairing_psk" }]);
    assert_eq!(listing["to_pair"], requested, "{listing}");
    let roles = joined_roles(&mut server, &player_id);
    assert!(
        roles.contains(&"player@v1".to_string()),
        "roles after pairing: {roles:?}"
    );
    assert_records(&server_state, &player_id, &player_state, &server_id, true);
    let listing = serve_clients(&server_state, &[]);
    assert_eq!(listing["to_pair"], serde_json::json!([]), "{listing}");
    assert_eq!(
        listing["paired"],
        serde_json::json!([player_id]),
        "{listing}"
    );

    // A paired client cannot be paired again before it is unpaired.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args(["serve", "clients", "--pair-token", &token, "--state-dir"])
        .arg(&server_state)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("already paired"), "{stderr}");
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());
}

/// Runs `play pair` against `url` with the static code `code` set on the
/// player of `state_dir`.
fn play_pair_by_code(url: &str, state_dir: &Path, code: &str) -> Proc {
    resonate(&[
        "play",
        "pair",
        "--server",
        url,
        "--json",
        "--window",
        "30",
        "--code",
        code,
        "--state-dir",
        state_dir.to_str().unwrap(),
    ])
}

/// `serve clients --pair-code` makes a running serve pair a player by its
/// static code when `play pair` connects; a wrong code drops the request
/// and stores nothing.
#[test]
fn pair_code_pairs_in_a_running_serve() {
    let (dir, source_path) = source_dir(1.0);
    let (server_state, player_state) = (dir.path().join("server"), dir.path().join("player"));
    let player_id = key_id(&player_state, "player");
    let server_id = key_id(&server_state, "server");
    let (mut server, url) = start_serve(&source_path, &server_state, &[]);

    let request = format!("{player_id}=2468-1357");
    let listing = serve_clients(&server_state, &["--pair-code", &request]);
    let requested =
        serde_json::json!([{ "client_id": player_id, "method": "static_pairing_code" }]);
    assert_eq!(listing["to_pair"], requested, "{listing}");
    let mut pairing = play_pair_by_code(&url, &player_state, "24681357");
    let paired = pairing.wait_event("paired", PATIENCE);
    assert_eq!(paired["method"], "static_pairing_code", "{paired}");
    assert_eq!(paired["server_id"], server_id.as_str(), "{paired}");
    assert!(pairing.wait(PATIENCE).success());
    assert_records(&server_state, &player_id, &player_state, &server_id, true);
    let listing = serve_clients(&server_state, &[]);
    assert_eq!(listing["to_pair"], serde_json::json!([]), "{listing}");

    let other_state = dir.path().join("other");
    let other_id = key_id(&other_state, "player");
    let request = format!("{other_id}=1111-2222");
    serve_clients(&server_state, &["--pair-code", &request]);
    let mut pairing = play_pair_by_code(&url, &other_state, "11112223");
    assert_eq!(pairing.wait(PATIENCE).code(), Some(1));
    let server_records = PairingStore::load(&server_state.join("pairings-server.json")).unwrap();
    assert!(server_records.record_of(&other_id).is_none());
    let listing = serve_clients(&server_state, &[]);
    assert_eq!(listing["to_pair"], serde_json::json!([]), "{listing}");
    assert!(server.interrupt().success());
}

/// A `serve clients` run that fails on one file writes nothing to the
/// others.
#[test]
fn failed_clients_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server_state = dir.path().join("server");
    let approved = key_id(&dir.path().join("a"), "player");
    let paired = key_id(&dir.path().join("b"), "player");
    std::fs::create_dir_all(&server_state).unwrap();
    std::fs::write(server_state.join("unpairs-server.json"), "{bad").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args([
            "serve",
            "clients",
            "--approve",
            &approved,
            "--unpair",
            &paired,
        ])
        .arg("--state-dir")
        .arg(&server_state)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unpairs-server.json"), "{stderr}");

    let approvals = resonate::noise::ClientIdSet::load(
        &server_state.join("approvals-server.json"),
        resonate::noise::APPROVALS,
    )
    .unwrap();
    assert!(
        !approvals.contains(&approved),
        "the failed run stored an approval"
    );
}

/// Approvals and pairing tokens given to `serve` at start are kept in the
/// state directory, so `serve clients` can undo them while it runs.
#[test]
fn serve_flags_yield_to_clients_changes() {
    let (dir, source_path) = source_dir(1.0);
    let (server_state, player_state) = (dir.path().join("server"), dir.path().join("player"));
    let player_id = key_id(&player_state, "player");
    let approve = format!("--approve={player_id}");
    let (mut server, url) = start_serve(&source_path, &server_state, &[&approve]);
    let mut player = start_chacha_player(&url, &player_state, dir.path());
    let roles = joined_roles(&mut server, &player_id);
    assert!(roles.contains(&"player@v1".to_string()), "{roles:?}");
    serve_clients(&server_state, &["--revoke", &player_id]);
    assert_eq!(
        joined_roles(&mut server, &player_id),
        Vec::<String>::new(),
        "roles after serve clients --revoke"
    );
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());

    // A pairing token given at start pairs once; an unpair then sticks.
    let other_state = dir.path().join("other");
    let token = pairing_token(&other_state);
    let other_id = key_id(&other_state, "player");
    let server_id = key_id(&server_state, "server");
    let (mut server, url) = start_serve(&source_path, &server_state, &["--pair-token", &token]);
    let mut player = start_chacha_player(&url, &other_state, dir.path());
    let roles = joined_roles(&mut server, &other_id);
    assert!(roles.contains(&"player@v1".to_string()), "{roles:?}");
    serve_clients(&server_state, &["--unpair", &other_id]);
    assert_eq!(
        joined_roles(&mut server, &other_id),
        Vec::<String>::new(),
        "roles after the unpair"
    );
    assert_records(&server_state, &other_id, &other_state, &server_id, false);
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());
}

/// A pairing token that no longer matches the client's pairing PSK leaves
/// it an ordinary unpaired client, which an approval admits. The request
/// can be cancelled.
#[test]
fn stale_pairing_token_can_be_cancelled() {
    let (dir, source_path) = source_dir(1.0);
    let (server_state, player_state) = (dir.path().join("server"), dir.path().join("player"));
    let stale = pairing_token(&player_state);
    std::fs::remove_file(player_state.join("pairing-psk-player.txt")).unwrap();
    let player_id = key_id(&player_state, "player");
    serve_clients(
        &server_state,
        &["--pair-token", &stale, "--approve", &player_id],
    );

    let (mut server, url) = start_serve(&source_path, &server_state, &[]);
    let mut player = start_chacha_player(&url, &player_state, dir.path());
    let roles = joined_roles(&mut server, &player_id);
    assert!(
        roles.contains(&"player@v1".to_string()),
        "an approved client with a stale token: {roles:?}"
    );
    let listing = serve_clients(&server_state, &["--cancel-pairing", &player_id]);
    assert_eq!(listing["to_pair"], serde_json::json!([]), "{listing}");
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());
}

/// `play pair` that is already connected when the operator requests the
/// pairing connects again and pairs.
#[test]
fn pair_code_reaches_waiting_play_pair() {
    let (dir, source_path) = source_dir(1.0);
    let (server_state, player_state) = (dir.path().join("server"), dir.path().join("player"));
    let player_id = key_id(&player_state, "player");
    let (mut server, url) = start_serve(&source_path, &server_state, &[]);
    let mut pairing = play_pair_by_code(&url, &player_state, "36925814");
    pairing.wait_event("waiting", PATIENCE);
    joined_roles(&mut server, &player_id);
    let request = format!("{player_id}=3692-5814");
    serve_clients(&server_state, &["--pair-code", &request]);
    let paired = pairing.wait_event("paired", PATIENCE);
    assert_eq!(paired["method"], "static_pairing_code", "{paired}");
    assert!(pairing.wait(PATIENCE).success());
    assert!(server.interrupt().success());
}
