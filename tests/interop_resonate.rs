//! Legacy Resonate interop with aioresonate 0.13.2 from the peers root (see
//! `tests/peers/README.md`). `resonate play --dialect resonate` plays from
//! its server, and `discover`'s probe talks to that server. `resonate serve
//! --legacy` streams to its client, alone, late, controlled by a legacy
//! `group/command`, and in one group with Sendspin v1 players. The peer
//! scripts connect or listen on 127.0.0.1 only and start no mDNS.

mod support;

#[path = "support/peers.rs"]
mod peers;
#[path = "support/process.rs"]
mod process;

use std::path::PathBuf;
use std::time::Duration;

use peers::{peer_command, require_peers_root};
use process::{resonate, spawn};
use support::{read_recording, write_test_wav};

const RATE: u32 = 48_000;
const CHANNELS: u16 = 2;
const SOURCE_SECONDS: f64 = 2.0;

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

#[test]
fn aioresonate_server_to_resonate_play() {
    let Some(root) = require_peers_root() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("source.wav");
    let source = write_test_wav(&wav, RATE, CHANNELS, 16, SOURCE_SECONDS);

    let peer = peer_command(&root, "venv-resonate", &peers_dir(), "python3");
    let peer = peer.as_std();
    let mut command = std::process::Command::new(peer.get_program());
    command.args(peer.get_args());
    command.args([
        "aioresonate_server.py",
        wav.to_str().unwrap(),
        "--timeout",
        "30",
        "--grace",
        "10",
    ]);
    let mut server = spawn(command);
    let listening = server.wait_event("listening", Duration::from_secs(30));
    let url = listening["url"]
        .as_str()
        .expect("listening event has a url")
        .to_string();
    assert!(url.ends_with("/resonate"), "unexpected url {url}");

    let recording_path = dir.path().join("played.wav");
    let output = format!("wav:{}", recording_path.display());
    let mut player = resonate(&[
        "play",
        "--dialect",
        "resonate",
        "--server",
        &url,
        "--output",
        &output,
        "--codec",
        "pcm",
        "--duration",
        "6",
        "--no-drift-correction",
    ]);
    server.wait_event("client", Duration::from_secs(15));
    let finished = server.wait_event("finished", Duration::from_secs(30));
    assert_eq!(finished["reason"], "end_of_file");
    let status = player.wait(Duration::from_secs(20));
    assert!(status.success(), "play exited with {status}");
    let status = server.wait(Duration::from_secs(20));
    assert!(
        status.success(),
        "the aioresonate server exited with {status}"
    );

    let recording = read_recording(&recording_path);
    assert_eq!(recording.spec.sample_rate, RATE);
    assert_eq!(recording.spec.channels, CHANNELS);
    assert_eq!(recording.spec.bits_per_sample, 16);
    let channels = CHANNELS as usize;
    // The recording starts at the first audible frame, which may lie after
    // the start of the source when the clock converged late.
    let probe = &recording.samples[..64 * channels];
    let offset = (0..source.len() / channels)
        .map(|frame| frame * channels)
        .find(|&start| source[start..].starts_with(probe))
        .expect("the first recorded frames occur in the source");
    let expected = &source[offset..];
    assert!(
        recording.samples.len() >= expected.len(),
        "the recording ends before the source"
    );
    assert_eq!(
        &recording.samples[..expected.len()],
        expected,
        "recorded PCM differs from the source"
    );
    let missed_frames = offset / channels;
    assert!(
        missed_frames < (RATE as usize) / 2,
        "the recording starts {missed_frames} frames into the source"
    );
}

/// Starts the aioresonate 0.13.2 recording client (`aioresonate_client.py`)
/// as a player of one PCM format at `url`, writing raw PCM to `out`, with
/// `extra` arguments for the script.
fn start_legacy_client(
    root: &std::path::Path,
    url: &str,
    id: &str,
    out: &std::path::Path,
    bits: u16,
    extra: &[&str],
) -> process::Proc {
    let peer = peer_command(root, "venv-resonate", &peers_dir(), "python3");
    let peer = peer.as_std();
    let mut command = std::process::Command::new(peer.get_program());
    command.args(peer.get_args());
    let bits = bits.to_string();
    let rate = RATE.to_string();
    let channels = CHANNELS.to_string();
    command.args([
        "aioresonate_client.py",
        "--url",
        url,
        "--client-id",
        id,
        "--out",
        out.to_str().unwrap(),
        "--rate",
        &rate,
        "--channels",
        &channels,
        "--bit-depth",
        &bits,
        "--seconds",
        "20",
    ]);
    command.args(extra);
    spawn(command)
}

/// Decodes little-endian signed PCM of `bits` bits (16 or 24) into samples.
fn decode_pcm(bytes: &[u8], bits: u16) -> Vec<i32> {
    match bits {
        16 => bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as i32)
            .collect(),
        24 => bytes
            .chunks_exact(3)
            .map(|b| i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8)
            .collect(),
        other => panic!("no decoder for {other}-bit PCM"),
    }
}

/// A running `resonate serve --legacy` with the address it listens on and
/// the address of its telemetry feed.
struct LegacyServer {
    process: process::Proc,
    /// `host:port` of both paths, `/sendspin` and `/resonate`.
    addr: String,
    feed_addr: String,
}

/// Starts `resonate serve --legacy` with telemetry on free loopback ports.
fn start_legacy_server(source: &std::path::Path) -> LegacyServer {
    let mut process = resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        source.to_str().unwrap(),
        "--legacy",
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--start-delay-ms",
        "1500",
        "--json",
        "--telemetry",
        "127.0.0.1:0",
    ]);
    // serve prints the telemetry event before the listening event.
    let telemetry = process.wait_event("telemetry", Duration::from_secs(20));
    let feed_addr = telemetry["addr"]
        .as_str()
        .expect("telemetry event has an addr")
        .to_string();
    let listening = process.wait_event("listening", Duration::from_secs(20));
    let addr = listening["addr"]
        .as_str()
        .expect("listening event has an addr")
        .to_string();
    assert_eq!(listening["url"], format!("ws://{addr}/sendspin"));
    assert_eq!(listening["legacy_url"], format!("ws://{addr}/resonate"));
    LegacyServer {
        process,
        addr,
        feed_addr,
    }
}

/// Reads the telemetry feed at `addr` until a snapshot lists a session of
/// `client_id`, and returns that session's row.
fn session_row(addr: &str, client_id: &str) -> resonate::telemetry::SessionRow {
    use resonate::telemetry::{feed, FeedMessage};

    let url = format!("ws://{addr}/");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move { feed::read(&url, move |m| drop(tx.send(m))).await });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let row = loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(FeedMessage::Snapshot(snapshot))) => {
                    let found = snapshot
                        .sessions
                        .into_iter()
                        .find(|row| row.client_id.as_deref() == Some(client_id));
                    if let Some(row) = found {
                        break row;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("no telemetry snapshot listed {client_id} within 15 s"),
            }
        };
        reader.abort();
        row
    })
}

/// Checks the aioresonate client's "done" event and recording against the
/// source: every chunk arrived in order on the program's timeline from its
/// first sample. Returns the recorded samples.
fn assert_legacy_recording(
    done: &serde_json::Value,
    out: &std::path::Path,
    source: &[i32],
    bits: u16,
    start_us: i64,
) -> Vec<i32> {
    assert_eq!(done["ended_by"], "stream_end", "{done}");
    assert_eq!(done["format"]["bit_depth"], bits, "{done}");
    assert_eq!(done["format"]["sample_rate"], RATE, "{done}");
    let recorded = decode_pcm(
        &std::fs::read(out).expect("read the legacy recording"),
        bits,
    );
    assert_eq!(
        recorded.len(),
        source.len(),
        "the legacy client recorded a different length"
    );
    let first_difference = recorded.iter().zip(source).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "the legacy recording differs from the source"
    );

    // The client joined before the first sample sounded, so its first chunk
    // is the program's first frame.
    let first_us = done["first_timestamp_us"]
        .as_i64()
        .expect("first_timestamp_us");
    assert_eq!(
        first_us, start_us,
        "first chunk is not at the program start"
    );
    // The chunks have one size and tile the source, so the last one starts
    // that many frames before the source's end on the server timeline.
    let chunk_bytes = done["chunk_bytes"].as_array().expect("chunk_bytes");
    assert_eq!(chunk_bytes.len(), 1, "chunks of several sizes: {done}");
    let frame_bytes = CHANNELS as i64 * (bits as i64 / 8);
    let last_chunk_frames = chunk_bytes[0].as_i64().unwrap() / frame_bytes;
    let last_frame = (source.len() / CHANNELS as usize) as i64 - last_chunk_frames;
    let expected_last_us = start_us as f64 + last_frame as f64 * 1e6 / RATE as f64;
    let last_us = done["last_timestamp_us"]
        .as_i64()
        .expect("last_timestamp_us");
    assert!(
        (last_us as f64 - expected_last_us).abs() <= 1.0,
        "last chunk at {last_us} us, expected {expected_last_us}"
    );
    recorded
}

/// Streams to the aioresonate client connected at `path` of `serve
/// --legacy` and checks its recording, and that the server speaks legacy
/// Resonate to it whichever path it chose.
fn serve_legacy_to_aioresonate_client(bits: u16, path: &str) {
    let Some(root) = require_peers_root() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("source.wav");
    let source = write_test_wav(&wav, RATE, CHANNELS, bits, SOURCE_SECONDS);
    let LegacyServer {
        process: mut server,
        addr,
        feed_addr,
    } = start_legacy_server(&wav);

    let out = dir.path().join("legacy.pcm");
    let url = format!("ws://{addr}{path}");
    let mut client = start_legacy_client(&root, &url, "legacy-player", &out, bits, &[]);
    let joined = server.wait_event("client_joined", Duration::from_secs(30));
    assert_eq!(joined["client_id"], "legacy-player");
    assert_eq!(joined["active_roles"], serde_json::json!(["player@v1"]));
    let row = session_row(&feed_addr, "legacy-player");
    assert_eq!(row.dialect, "resonate", "{row:?}");

    let start_us = server.wait_event("program_started", Duration::from_secs(20))["start_us"]
        .as_i64()
        .unwrap();
    let done = client.wait_event("done", Duration::from_secs(30));
    let status = client.wait(Duration::from_secs(10));
    assert!(
        status.success(),
        "the aioresonate client exited with {status}"
    );
    assert!(server.interrupt().success());
    assert_legacy_recording(&done, &out, &source, bits, start_us);
}

#[test]
fn serve_legacy_to_aioresonate_client_16_bit() {
    serve_legacy_to_aioresonate_client(16, "/resonate");
}

/// A legacy client that dials the Sendspin path is recognized by its hello.
#[test]
fn serve_legacy_to_aioresonate_client_at_sendspin_path() {
    serve_legacy_to_aioresonate_client(16, "/sendspin");
}

#[test]
fn serve_legacy_to_aioresonate_client_24_bit() {
    serve_legacy_to_aioresonate_client(24, "/resonate");
}

#[test]
fn serve_legacy_mixed_group_in_sync() {
    let Some(root) = require_peers_root() else {
        return;
    };
    let bits = 16;
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("source.wav");
    let source = write_test_wav(&wav, RATE, CHANNELS, bits, SOURCE_SECONDS);
    let LegacyServer {
        process: mut server,
        addr,
        feed_addr,
    } = start_legacy_server(&wav);

    let legacy_out = dir.path().join("legacy.pcm");
    let mut legacy = start_legacy_client(
        &root,
        &format!("ws://{addr}/resonate"),
        "legacy-player",
        &legacy_out,
        bits,
        &[],
    );
    let joined = server.wait_event("client_joined", Duration::from_secs(30));
    assert_eq!(joined["client_id"], "legacy-player");
    // The first player to join starts the program.
    let start_us = server.wait_event("program_started", Duration::from_secs(20))["start_us"]
        .as_i64()
        .unwrap();
    let played_wav = dir.path().join("played.wav");
    let output = format!("wav:{}", played_wav.display());
    let url = format!("ws://{addr}/sendspin");
    let mut player = resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        &url,
        "--client-id",
        "v1-player",
        "--output",
        &output,
        "--sample-rate",
        "48000",
        "--bit-depth",
        "16",
        "--json",
        "--no-drift-correction",
    ]);
    let joined = server.wait_event("client_joined", Duration::from_secs(20));
    assert_eq!(joined["client_id"], "v1-player");
    assert_eq!(session_row(&feed_addr, "legacy-player").dialect, "resonate");
    assert_eq!(session_row(&feed_addr, "v1-player").dialect, "sendspin-v1");

    let done = legacy.wait_event("done", Duration::from_secs(30));
    assert!(
        legacy.wait(Duration::from_secs(10)).success(),
        "the aioresonate client failed"
    );
    server.wait_event("program_ended", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let status = player.interrupt();
    assert!(status.success(), "play exited with {status}");
    assert!(server.interrupt().success());

    // Both players joined the shared group, so exactly one program started.
    let groups: Vec<_> = server
        .seen
        .iter()
        .filter(|e| e["event"] == "program_started")
        .map(|e| e["group_id"].clone())
        .collect();
    assert_eq!(groups.len(), 1, "more than one program started: {groups:?}");

    let legacy_samples = assert_legacy_recording(&done, &legacy_out, &source, bits, start_us);
    let legacy_first_us = done["first_timestamp_us"].as_i64().unwrap();
    let played = read_recording(&played_wav);
    assert_eq!(played.spec.bits_per_sample, bits);

    // The frame the v1 player wrote first sits at this index of the legacy
    // recording when both follow one server timeline. Timestamps are whole
    // microseconds and a frame lasts about 20.8 us, so rounding is exact.
    let offset_us = played.first_frame_server_us - legacy_first_us;
    assert!(
        offset_us >= 0,
        "the v1 player starts {offset_us} us before the legacy one"
    );
    let frame = ((offset_us as f64) * RATE as f64 / 1e6).round() as usize;
    let start = frame * CHANNELS as usize;
    assert!(
        start < legacy_samples.len(),
        "the recordings do not overlap (frame {frame})"
    );
    let overlap = (legacy_samples.len() - start).min(played.samples.len());
    assert!(
        overlap >= source.len() / 2,
        "the recordings overlap in only {overlap} samples"
    );
    let first_difference = legacy_samples[start..start + overlap]
        .iter()
        .zip(&played.samples[..overlap])
        .position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "the players differ at the same server time (v1 starts at legacy frame {frame})"
    );
}

#[test]
fn probe_aioresonate_server_in_legacy_dialect() {
    use resonate::discovery::probe::probe;
    use resonate::discovery::{Endpoint, EndpointKind, Family};

    let Some(root) = require_peers_root() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("source.wav");
    write_test_wav(&wav, RATE, CHANNELS, 16, SOURCE_SECONDS);
    let peer = peer_command(&root, "venv-resonate", &peers_dir(), "python3");
    let peer = peer.as_std();
    let mut command = std::process::Command::new(peer.get_program());
    command.args(peer.get_args());
    command.args([
        "aioresonate_server.py",
        wav.to_str().unwrap(),
        "--timeout",
        "30",
    ]);
    let mut server = spawn(command);
    let listening = server.wait_event("listening", Duration::from_secs(30));
    let port = listening["port"]
        .as_u64()
        .expect("listening event has a port") as u16;

    let endpoint = Endpoint {
        kind: EndpointKind::Server,
        family: Family::ResonateLegacy,
        instance: "aioresonate-peer".into(),
        fullname: "aioresonate-peer._resonate-server._tcp.local.".into(),
        name: None,
        host: "localhost.local.".into(),
        addresses: vec![std::net::Ipv4Addr::LOCALHOST.into()],
        port,
        path: "/resonate".into(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(probe(&endpoint, Duration::from_secs(10)));
    // The script plays to the first client until its timeout, so end it here.
    server.child.kill().expect("stop the aioresonate server");
    server.wait(Duration::from_secs(10));

    let report =
        report.unwrap_or_else(|err| panic!("probing the aioresonate server failed: {err}"));
    assert_eq!(report.id, "aioresonate-peer");
    assert_eq!(report.name, "aioresonate peer");
    assert_eq!(report.version, 1);
    assert_eq!(report.roles, ["controller@v1"]);
    assert_eq!(report.samples, 5);
    let rtt_us = report.rtt_us.expect("a round trip");
    assert!(
        (0..1_000_000).contains(&rtt_us),
        "round trip of {rtt_us} us on loopback"
    );
}

#[test]
fn serve_legacy_late_joiner_gets_future_chunks() {
    let Some(root) = require_peers_root() else {
        return;
    };
    let bits = 16;
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("source.wav");
    let source = write_test_wav(&wav, RATE, CHANNELS, bits, 4.0);
    let LegacyServer {
        process: mut server,
        addr,
        ..
    } = start_legacy_server(&wav);

    // A Sendspin player starts the program, and the legacy player joins
    // while it plays.
    let played_wav = dir.path().join("played.wav");
    let output = format!("wav:{}", played_wav.display());
    let mut player = resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        &format!("ws://{addr}/sendspin"),
        "--client-id",
        "v1-player",
        "--output",
        &output,
        "--sample-rate",
        "48000",
        "--bit-depth",
        "16",
        "--json",
        "--no-drift-correction",
    ]);
    let start_us = server.wait_event("program_started", Duration::from_secs(20))["start_us"]
        .as_i64()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let legacy_out = dir.path().join("legacy.pcm");
    let mut legacy = start_legacy_client(
        &root,
        &format!("ws://{addr}/resonate"),
        "late-legacy",
        &legacy_out,
        bits,
        &[],
    );
    let done = legacy.wait_event("done", Duration::from_secs(30));
    assert!(
        legacy.wait(Duration::from_secs(10)).success(),
        "the aioresonate client failed"
    );
    let status = player.interrupt();
    assert!(status.success(), "play exited with {status}");
    assert!(server.interrupt().success());

    assert_eq!(done["ended_by"], "stream_end", "{done}");
    let first_us = done["first_timestamp_us"]
        .as_i64()
        .expect("the late joiner recorded chunks");
    // 2.5 s after the program started is 1 s into the timeline, because the
    // first sample sounds 1.5 s after the start.
    let first_frame = (((first_us - start_us) as f64) * RATE as f64 / 1e6).round() as usize;
    assert!(
        first_frame >= RATE as usize,
        "the late joiner starts at frame {first_frame}"
    );
    let recorded = decode_pcm(
        &std::fs::read(&legacy_out).expect("read the legacy recording"),
        bits,
    );
    let expected = &source[first_frame * CHANNELS as usize..];
    assert_eq!(
        recorded.len(),
        expected.len(),
        "the late joiner did not record to the end of the source"
    );
    let first_difference = recorded.iter().zip(expected).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "the late joiner's PCM differs from the source at its server timestamps"
    );
}

#[test]
fn serve_legacy_group_command_stops_group() {
    let Some(root) = require_peers_root() else {
        return;
    };
    let bits = 16;
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("source.wav");
    let source = write_test_wav(&wav, RATE, CHANNELS, bits, 6.0);
    let LegacyServer {
        process: mut server,
        addr,
        ..
    } = start_legacy_server(&wav);

    let out = dir.path().join("legacy.pcm");
    let url = format!("ws://{addr}/resonate");
    let command = ["--group-command", "stop", "--group-command-after", "1"];
    let mut client = start_legacy_client(&root, &url, "legacy-controller", &out, bits, &command);
    let joined = server.wait_event("client_joined", Duration::from_secs(30));
    assert_eq!(
        joined["active_roles"],
        serde_json::json!(["player@v1", "controller@v1"])
    );
    let sent = client.wait_event("group_command", Duration::from_secs(20));
    assert_eq!(sent["command"], "stop");

    // The stop ends the program long before the 6 s source and the 2 s
    // send-ahead would.
    let ended = server.wait_event("stream_ended", Duration::from_secs(5));
    assert_eq!(ended["client_id"], "legacy-controller");
    let chunks_sent = ended["chunks_sent"].as_u64().unwrap();
    assert!(
        chunks_sent < 250,
        "the server sent {chunks_sent} chunks of the 300 in the source"
    );
    server.wait_event("program_ended", Duration::from_secs(5));
    let done = client.wait_event("done", Duration::from_secs(20));
    assert!(
        client.wait(Duration::from_secs(10)).success(),
        "the aioresonate client failed"
    );
    assert!(server.interrupt().success());

    assert_eq!(done["ended_by"], "stream_end", "{done}");
    let recorded = decode_pcm(
        &std::fs::read(&out).expect("read the legacy recording"),
        bits,
    );
    assert!(
        !recorded.is_empty(),
        "the client recorded nothing before the stop"
    );
    assert!(
        recorded.len() < source.len(),
        "the client recorded the whole source despite the stop"
    );
    assert_eq!(
        recorded,
        source[..recorded.len()],
        "the PCM before the stop differs from the source"
    );
}

#[test]
fn serve_legacy_mixed_group_of_reference_clients() {
    let Some(root) = require_peers_root() else {
        return;
    };
    let bits = 16;
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("source.wav");
    let source = write_test_wav(&wav, RATE, CHANNELS, bits, SOURCE_SECONDS);
    let LegacyServer {
        process: mut server,
        addr,
        ..
    } = start_legacy_server(&wav);

    let legacy_out = dir.path().join("legacy.pcm");
    let mut legacy = start_legacy_client(
        &root,
        &format!("ws://{addr}/resonate"),
        "legacy-player",
        &legacy_out,
        bits,
        &[],
    );
    server.wait_event("client_joined", Duration::from_secs(30));

    // aiosendspin 6.1.1's client on the Sendspin path of the same server.
    let v1_out = dir.path().join("v1.pcm");
    let peer = peer_command(&root, "venv-sendspin-v1", &peers_dir(), "python3");
    let peer = peer.as_std();
    let mut command = std::process::Command::new(peer.get_program());
    command.args(peer.get_args());
    command.args([
        "aiosendspin_client.py",
        "--url",
        &format!("ws://{addr}/sendspin"),
        "--client-id",
        "v1-player",
        "--out",
        v1_out.to_str().unwrap(),
        "--bit-depth",
        "16",
        "--seconds",
        "20",
    ]);
    let mut v1 = spawn(command);
    let joined = server.wait_event("client_joined", Duration::from_secs(30));
    assert_eq!(joined["client_id"], "v1-player");
    let start_us = server
        .seen
        .iter()
        .find(|e| e["event"] == "program_started")
        .expect("a program started")["start_us"]
        .as_i64()
        .unwrap();

    let legacy_done = legacy.wait_event("done", Duration::from_secs(30));
    let v1_done = v1.wait_event("done", Duration::from_secs(30));
    assert!(
        legacy.wait(Duration::from_secs(10)).success(),
        "the aioresonate client failed"
    );
    assert!(
        v1.wait(Duration::from_secs(10)).success(),
        "the aiosendspin client failed"
    );
    assert!(server.interrupt().success());

    assert_legacy_recording(&legacy_done, &legacy_out, &source, bits, start_us);
    // Both reference clients joined before the first sample sounded, so
    // both recorded the whole program with the same chunk timestamps.
    assert_eq!(v1_done["ended_by"], "stream_end", "{v1_done}");
    assert_eq!(
        v1_done["first_timestamp_us"],
        legacy_done["first_timestamp_us"]
    );
    assert_eq!(
        v1_done["last_timestamp_us"],
        legacy_done["last_timestamp_us"]
    );
    assert_eq!(v1_done["chunks"], legacy_done["chunks"]);
    assert_eq!(
        v1_done["sha256"], legacy_done["sha256"],
        "the two clients recorded different PCM"
    );
}
