//! Activation changes in the middle of a Sendspin 1.0 session, between
//! aiosendspin 10.2.1's server (`tests/peers/aiosendspin_server.py` with
//! `--stdin-commands`) and `resonate play`:
//!
//! - the server's operator approves an unpaired player at run time
//!   (`SendspinServer.trust_unpaired`), which sends a new `server/activate`
//!   with the player's roles: play reports `reactivated` and plays the file;
//! - the operator unpairs a paired player (`SendspinServer.unpair`), which
//!   sends `server/unpair`: play drops its pairing record, sends
//!   `client/goodbye` with reason `unpaired` and connects again unpaired.
//!
//! The peer runs in the peers root (`tests/peers/README.md`); without it
//! the tests print why they skipped, when `RESONATE_SKIP_PEERS=1` allows
//! skipping. Every process is killed when its handle drops, and every wait
//! has a time limit.

mod support;

#[path = "support/peers.rs"]
mod peers;
#[path = "support/process.rs"]
mod process;

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use peers::{peer_command, require_peers_root};
use process::{resonate, Proc};
use support::write_test_wav;

const RATE: u32 = 48_000;
const CHANNELS: u16 = 2;
const BIT_DEPTH: u16 = 16;
const FRAME_BYTES: usize = 4;

/// The driver's own limit; the tests kill it sooner when they are done.
const SERVER_TIMEOUT_S: u32 = 60;
const EVENT_PATIENCE: Duration = Duration::from_secs(30);

/// Share of the source that play must have recorded, in percent. Its
/// scheduler skips frames due before its clock has converged.
const MIN_PLAYED_PERCENT: usize = 50;

/// aiosendspin 10.2.1's server, started by the test, with its stdin open for
/// operator commands and its stdout JSON lines read as events.
struct PeerServer {
    /// Held so the driver is killed when the handle drops.
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<Value>,
    /// Indexes in `seen` of the events `wait_event` returned.
    returned: HashSet<usize>,
}

impl PeerServer {
    /// Starts the driver on a free port, playing `wav` once as PCM, with
    /// `--strict` so aiosendspin rejects any deviation from the 1.0 spec.
    fn start(root: &Path, wav: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let peers_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
        let mut command = peer_command(root, "venv-sendspin", &peers_dir, "python3");
        command
            .arg("aiosendspin_server.py")
            .arg("--wav")
            .arg(wav)
            .args(["--port", "0", "--timeout", &SERVER_TIMEOUT_S.to_string()])
            .args(["--codec", "pcm", "--strict", "--stdin-commands"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().context(
            "starting the aiosendspin server in the peers root failed (entering the root needs root privileges)",
        )?;
        let stdin = child
            .stdin
            .take()
            .context("the server's stdin is not piped")?;
        let stdout = child
            .stdout
            .take()
            .context("the server's stdout is not piped")?;
        Ok(PeerServer {
            _child: child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
            returned: HashSet::new(),
        })
    }

    /// Returns the first event named `name` that this method has not
    /// returned yet, reading stdout until one arrives. Events keep their
    /// place, so a later wait can return one that arrived earlier.
    async fn wait_event(&mut self, name: &str) -> anyhow::Result<Value> {
        loop {
            let found = (0..self.seen.len())
                .find(|index| !self.returned.contains(index) && self.seen[*index]["event"] == name);
            if let Some(index) = found {
                self.returned.insert(index);
                return Ok(self.seen[index].clone());
            }
            let line = tokio::time::timeout(EVENT_PATIENCE, self.lines.next_line())
                .await
                .with_context(|| {
                    format!(
                        "no {name:?} event from the aiosendspin server within {EVENT_PATIENCE:?}; read {:?}",
                        self.seen
                    )
                })??;
            let Some(line) = line else {
                bail!(
                    "the aiosendspin server's stdout closed before its {name:?} event; read {:?}",
                    self.seen
                );
            };
            let event: Value = serde_json::from_str(&line).with_context(|| {
                format!("invalid JSON line from the aiosendspin server: {line}")
            })?;
            self.seen.push(event);
        }
    }

    /// Sends one operator command line.
    async fn command(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .with_context(|| format!("writing the command {line:?} to the server failed"))?;
        self.stdin.flush().await?;
        Ok(())
    }

    fn events_named(&self, name: &str) -> Vec<&Value> {
        self.seen
            .iter()
            .filter(|event| event["event"] == name)
            .collect()
    }
}

/// Writes a test WAV file of `seconds` and returns its PCM bytes.
fn write_source(path: &Path, seconds: f64) -> Vec<u8> {
    let samples = write_test_wav(path, RATE, CHANNELS, BIT_DEPTH, seconds);
    samples
        .iter()
        .flat_map(|sample| (*sample as i16).to_le_bytes())
        .collect()
}

fn roles_of(event: &Value) -> Vec<&str> {
    event["active_roles"]
        .as_array()
        .map(|roles| roles.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Starts `resonate play` against `url` over Sendspin 1.0, with its identity
/// in `state_dir`, recording 48 kHz 16-bit stereo to `played`.
fn start_play(url: &str, state_dir: &Path, played: &Path) -> Proc {
    let state_dir = state_dir.to_str().expect("temporary paths are UTF-8");
    let output = format!("wav:{}", played.display());
    resonate(&[
        "play",
        "--server",
        url,
        "--dialect",
        "sendspin",
        "--state-dir",
        state_dir,
        "--output",
        &output,
        "--sample-rate",
        &RATE.to_string(),
        "--bit-depth",
        &BIT_DEPTH.to_string(),
        "--json",
        // The recording must equal the source sample for sample.
        "--no-drift-correction",
    ])
}

/// Reads what play recorded: its PCM bytes and the server time of its first
/// frame, from the `rsnt` chunk play writes.
fn read_played_wav(path: &Path) -> (Vec<u8>, i64) {
    let mut reader = hound::WavReader::open(path)
        .unwrap_or_else(|err| panic!("reading {} failed: {err}", path.display()));
    let spec = reader.spec();
    assert_eq!(spec.sample_rate, RATE, "WAV sample rate");
    assert_eq!(spec.channels, CHANNELS, "WAV channels");
    assert_eq!(spec.bits_per_sample, BIT_DEPTH, "WAV bit depth");
    let pcm: Vec<u8> = reader
        .samples::<i16>()
        .flat_map(|sample| sample.expect("a readable sample").to_le_bytes())
        .collect();
    let note = resonate::audio::wav::read_note(path)
        .unwrap_or_else(|err| panic!("reading the rsnt chunk of {} failed: {err}", path.display()))
        .unwrap_or_else(|| panic!("{} has no rsnt chunk", path.display()));
    let note: Value = serde_json::from_str(&note).expect("the rsnt chunk is JSON");
    let first_frame_server_us = note["first_frame_server_us"]
        .as_i64()
        .unwrap_or_else(|| panic!("the rsnt chunk has no first_frame_server_us: {note}"));
    (pcm, first_frame_server_us)
}

/// Returns the first source frame at which the recording's opening frames
/// (at most 64) occur, for a failure message.
fn search_offset_frames(source: &[u8], recorded: &[u8]) -> Option<usize> {
    let probe_frames = (recorded.len() / FRAME_BYTES).min(64);
    if probe_frames == 0 {
        return None;
    }
    let probe = &recorded[..probe_frames * FRAME_BYTES];
    (0..source.len() / FRAME_BYTES).find(|&frame| source[frame * FRAME_BYTES..].starts_with(probe))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_at_run_time_starts_playback() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    let dir = tempfile::Builder::new()
        .prefix("resonate-interop-reactivate")
        .tempdir_in("/tmp")?;
    let source_path = dir.path().join("source.wav");
    // 80 of aiosendspin's 25 ms chunks, so every frame reaches the player.
    let source = write_source(&source_path, 2.0);
    let source_frames = source.len() / FRAME_BYTES;

    // Without --trust-unpaired the server gives the unpaired player no roles.
    let mut server = PeerServer::start(&root, &source_path, &[])?;
    let listening = server.wait_event("listening").await?;
    let url = listening["url"]
        .as_str()
        .context("the listening event has no url")?
        .to_string();
    server.wait_event("source").await?;

    let state_dir = dir.path().join("state");
    let client_id =
        resonate::noise::Identity::load_or_create(&state_dir.join("identity-player.json"))?.id();
    let played_path = dir.path().join("played.wav");
    let mut play = start_play(&url, &state_dir, &played_path);

    let connected = play.wait_event("connected", EVENT_PATIENCE);
    assert_eq!(
        roles_of(&connected),
        Vec::<&str>::new(),
        "an unapproved unpaired player got roles: {connected}"
    );
    let client = server.wait_event("client").await?;
    assert_eq!(client["client_id"], client_id.as_str(), "{client}");
    assert_eq!(client["active_roles"], serde_json::json!([]), "{client}");

    server.command(&format!("trust {client_id}")).await?;
    let trusted = server.wait_event("trusted").await?;
    assert_eq!(trusted["connected"], true, "{trusted}");
    assert!(
        roles_of(&trusted).contains(&"player@v1"),
        "the server activated no player role: {trusted}"
    );

    let reactivated = play.wait_event("reactivated", EVENT_PATIENCE);
    assert!(
        roles_of(&reactivated).contains(&"player@v1"),
        "play reported no player role after the approval: {reactivated}"
    );
    let stream_started = play.wait_event("stream_started", EVENT_PATIENCE);
    assert_eq!(stream_started["codec"], "pcm", "{stream_started}");
    assert_eq!(stream_started["bit_depth"], BIT_DEPTH, "{stream_started}");

    let started = server.wait_event("stream_started").await?;
    let play_start_us = started["play_start_us"]
        .as_i64()
        .with_context(|| format!("stream_started has no play_start_us: {started}"))?;
    let finished = server.wait_event("finished").await?;
    assert_eq!(finished["reason"], "end_of_file", "{finished}");
    let sent = server.wait_event("sent").await?;
    assert_eq!(sent["client_id"], client_id.as_str(), "{sent}");
    assert_eq!(sent["format"]["bit_depth"], BIT_DEPTH, "{sent}");
    assert!(
        server.events_named("command_failed").is_empty(),
        "a command failed: {:?}",
        server.seen
    );

    play.wait_event("stream_ended", EVENT_PATIENCE);
    let status = play.interrupt();
    assert!(status.success(), "resonate play exited with {status}");

    // aiosendspin sends a later server/activate with activities only when
    // the stream starts. It keeps the player's roles, and play must report them.
    let reactivations: Vec<&Value> = play
        .seen
        .iter()
        .filter(|event| event["event"] == "reactivated")
        .collect();
    for event in &reactivations {
        assert!(
            roles_of(event).contains(&"player@v1"),
            "play reported a reactivation without the player role: {reactivations:?}"
        );
    }

    // The recording's place in the source comes from the timestamps: the
    // first recorded frame's server time minus the time of source frame 0.
    let (recorded, first_frame_server_us) = read_played_wav(&played_path);
    let offset_us = first_frame_server_us - play_start_us;
    assert!(
        offset_us >= 0,
        "the first recorded frame (server time {first_frame_server_us} us) is before the stream's start ({play_start_us} us)"
    );
    let start_frame = ((i128::from(offset_us) * i128::from(RATE) + 500_000) / 1_000_000) as usize;
    assert!(
        start_frame < source_frames,
        "the first recorded frame maps to source frame {start_frame}, past the end ({source_frames} frames)"
    );
    // After the source's last frame, play writes silence until stream/end.
    let audible_frames = (recorded.len() / FRAME_BYTES).min(source_frames - start_frame);
    let audible = &recorded[..audible_frames * FRAME_BYTES];
    let expected = &source[start_frame * FRAME_BYTES..(start_frame + audible_frames) * FRAME_BYTES];
    let difference = audible.iter().zip(expected).position(|(a, b)| a != b);
    assert_eq!(
        difference.map(|byte| byte / FRAME_BYTES),
        None,
        "the recording differs from source frames {start_frame}.. at this frame; \
         a search finds its first frames at source frame {:?}",
        search_offset_frames(&source, &recorded)
    );
    assert!(
        audible_frames * 100 >= source_frames * MIN_PLAYED_PERCENT,
        "played {audible_frames} of {source_frames} source frames (from frame {start_frame}), \
         less than {MIN_PLAYED_PERCENT}%"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpair_mid_session_drops_pairing() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    let dir = tempfile::Builder::new()
        .prefix("resonate-interop-unpair")
        .tempdir_in("/tmp")?;
    let source_path = dir.path().join("source.wav");
    // Long enough that the server still runs when play connects again.
    write_source(&source_path, 30.0);

    // The server has the player's pairing token and pairs by pairing PSK.
    let state_dir = dir.path().join("state");
    let identity =
        resonate::noise::Identity::load_or_create(&state_dir.join("identity-player.json"))?;
    let client_id = identity.id();
    let psk = resonate::noise::pairing::load_or_create_pairing_psk(
        &state_dir.join("pairing-psk-player.txt"),
    )?;
    let token = resonate::noise::pairing::encode_token(identity.public_key(), &psk);
    let mut server = PeerServer::start(&root, &source_path, &["--pair-token", &token])?;
    let server_id = server.wait_event("identity").await?["server_id"]
        .as_str()
        .context("the identity event has no server_id")?
        .to_string();
    let listening = server.wait_event("listening").await?;
    let url = listening["url"]
        .as_str()
        .context("the listening event has no url")?
        .to_string();

    let records_path = state_dir.join("pairings-player.json");
    let mut play = start_play(&url, &state_dir, &dir.path().join("played.wav"));
    let connected = play.wait_event("connected", EVENT_PATIENCE);
    assert!(
        roles_of(&connected).contains(&"player@v1"),
        "the paired player got no player role: {connected}"
    );
    let records = resonate::noise::PairingStore::load(&records_path)?;
    assert!(
        records.record_of(&server_id).is_some(),
        "play stored no pairing record of server {server_id}: {:?}",
        records.records()
    );
    let client = server.wait_event("client").await?;
    assert_eq!(client["client_id"], client_id.as_str(), "{client}");

    server.command(&format!("unpair {client_id}")).await?;
    let unpaired = server.wait_event("unpaired").await?;
    assert_eq!(unpaired["client_id"], client_id.as_str(), "{unpaired}");

    let disconnected = play.wait_event("disconnected", EVENT_PATIENCE);
    assert_eq!(disconnected["cause"], "local_goodbye", "{disconnected}");
    let detail = disconnected["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("unpaired"), "{disconnected}");
    let left = server.wait_event("client_disconnected").await?;
    assert_eq!(left["client_id"], client_id.as_str(), "{left}");
    assert_eq!(left["goodbye_reason"], "unpaired", "{left}");

    let records = resonate::noise::PairingStore::load(&records_path)?;
    assert!(
        records.record_of(&server_id).is_none(),
        "play kept its pairing record of server {server_id}: {:?}",
        records.records()
    );

    let reconnected = play.wait_event("connected", EVENT_PATIENCE);
    assert_eq!(
        reconnected["server_id"],
        server_id.as_str(),
        "{reconnected}"
    );
    assert_eq!(
        roles_of(&reconnected),
        Vec::<&str>::new(),
        "the unpaired player got roles again: {reconnected}"
    );
    assert!(
        server.events_named("command_failed").is_empty(),
        "a command failed: {:?}",
        server.seen
    );
    let status = play.interrupt();
    assert!(status.success(), "resonate play exited with {status}");
    Ok(())
}
