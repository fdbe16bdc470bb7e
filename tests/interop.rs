//! Sample-exact interop of `resonate` with other Sendspin v1 implementations,
//! over cleartext WebSocket on 127.0.0.1:
//!
//! - aiosendspin 10.2.1's server (`tests/peers/aiosendspin_server.py`) plays
//!   a WAV file to `resonate play`, which records what it plays to a WAV file;
//! - `resonate serve` streams a WAV file to aiosendspin 6.1.1's player client
//!   (`tests/peers/aiosendspin_client.py`), which records the PCM it receives;
//! - `resonate serve` streams a WAV file to the `sendspin` crate 0.3.8 client
//!   (`tests/support/sendspin_peer.rs`).
//!
//! Each test checks 16-bit and 24-bit stereo PCM at 48 kHz, with no
//! resampling, so the received PCM must equal the source byte for byte.
//! `resonate play` also decodes aiosendspin's FLAC, which must equal the
//! source too, and its Opus, which must match the source within an SNR at
//! the place its timestamps give. The `sendspin` crate's decoders check
//! `resonate serve`'s FLAC and Opus the same way. aiosendspin 6.1.1's
//! client hands FLAC bytes to its application undecoded and rejects Opus,
//! so it checks only PCM here.
//!
//! The Python peers run in the peers root (`tests/peers/README.md`), which
//! needs root privileges to enter. Without the root the two tests that use
//! them fail, unless `RESONATE_SKIP_PEERS=1` is set, in which case they print
//! why they skipped and pass. Every process is killed when its handle drops,
//! and every wait has a time limit.

mod support;

#[path = "support/peers.rs"]
mod peers;
#[path = "support/process.rs"]
mod process;
#[path = "support/sendspin_peer.rs"]
mod sendspin_peer;

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use peers::{peer_command, require_peers_root};
use process::{resonate, Proc};
use support::write_test_wav;

const RATE: u32 = 48_000;
const CHANNELS: u16 = 2;
const BIT_DEPTHS: [u16; 2] = [16, 24];

/// Length of the file that aiosendspin's server plays: 80 of its 25 ms
/// (1200-frame) chunks. The server never sends a final partial chunk, so a
/// file of whole chunks lets a player receive every frame.
const PEER_SERVER_SECONDS: f64 = 2.0;
const PEER_SERVER_CHUNK_FRAMES: usize = 1200;

/// Length of the file that `resonate serve` plays: 96600 frames, which is
/// 100 of its 20 ms (960-frame) chunks and a final partial chunk of 600
/// frames, so the tests also check that the last frames are sent.
const SERVE_SECONDS: f64 = 2.0125;
const SERVE_CHUNK_FRAMES: usize = 960;

/// Share of the source that `resonate play` must have played, in percent.
/// Its scheduler skips frames due before its clock has converged; the peer
/// sends the first chunk about 1 s ahead, and on a loaded machine the player
/// has lost up to 10% of this 2 s file that way. The exactness checks above
/// do not depend on this bound.
const MIN_PLAYED_PERCENT: usize = 50;

/// Time limits. The peer scripts also stop by themselves: the server after
/// `--timeout`, the client after `--seconds`.
const PEER_SERVER_TIMEOUT_S: u32 = 30;
const PEER_CLIENT_SECONDS: u32 = 20;
const RECORD_MAX: Duration = Duration::from_secs(20);
const LINE_TIMEOUT: Duration = Duration::from_secs(30);
const EVENT_PATIENCE: Duration = Duration::from_secs(30);

fn peers_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// Encodes samples as the little-endian signed PCM of a WAV data chunk.
fn pcm_bytes(samples: &[i32], bit_depth: u16) -> Vec<u8> {
    let width = usize::from(bit_depth / 8);
    let mut pcm = Vec::with_capacity(samples.len() * width);
    for sample in samples {
        pcm.extend_from_slice(&sample.to_le_bytes()[..width]);
    }
    pcm
}

fn frame_bytes(bit_depth: u16) -> usize {
    usize::from(CHANNELS) * usize::from(bit_depth / 8)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Returns the index of the first byte at which `a` and `b` differ. When one
/// is a prefix of the other, that is the shorter one's length.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    let common = a.iter().zip(b).position(|(x, y)| x != y);
    match common {
        Some(index) => Some(index),
        None if a.len() != b.len() => Some(a.len().min(b.len())),
        None => None,
    }
}

/// Returns the first source frame at which the recording's opening frames
/// (at most 64) occur, searching frame boundaries only.
fn search_offset_frames(source: &[u8], recorded: &[u8], frame_bytes: usize) -> Option<usize> {
    let probe_frames = (recorded.len() / frame_bytes).min(64);
    if probe_frames == 0 {
        return None;
    }
    let probe = &recorded[..probe_frames * frame_bytes];
    source
        .chunks_exact(frame_bytes)
        .enumerate()
        .map(|(frame, _)| frame)
        .find(|&frame| source[frame * frame_bytes..].starts_with(probe))
}

/// Asserts that `received` is exactly `expected`, reporting frame counts,
/// the first differing frame and both SHA-256 digests.
fn assert_same_pcm(label: &str, received: &[u8], expected: &[u8], frame_bytes: usize) {
    let difference = first_difference(received, expected);
    assert_eq!(
        difference.map(|byte| byte / frame_bytes),
        None,
        "{label}: received PCM differs from the source at this frame (byte {difference:?}); \
         received {} frames, expected {}",
        received.len() / frame_bytes,
        expected.len() / frame_bytes,
    );
    assert_eq!(
        sha256_hex(received),
        sha256_hex(expected),
        "{label}: SHA-256 of the received PCM differs from the source's"
    );
}

/// Reads JSON lines from a peer's stdout until one has `"event": expected`.
/// Returns every line read, that one last.
async fn read_until_event(
    peer: &str,
    lines: &mut Lines<BufReader<ChildStdout>>,
    expected: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut events = Vec::new();
    loop {
        let line = tokio::time::timeout(LINE_TIMEOUT, lines.next_line())
            .await
            .with_context(|| {
                format!("timed out waiting for the {peer}'s {expected:?} event; read {events:?}")
            })??;
        let Some(line) = line else {
            bail!("the {peer}'s stdout closed before its {expected:?} event; read {events:?}");
        };
        let event: Value = serde_json::from_str(&line)
            .with_context(|| format!("invalid JSON line from the {peer}: {line}"))?;
        let done = event["event"] == expected;
        events.push(event);
        if done {
            return Ok(events);
        }
    }
}

async fn wait_exit(peer: &str, child: &mut Child) -> anyhow::Result<ExitStatus> {
    tokio::time::timeout(LINE_TIMEOUT, child.wait())
        .await
        .with_context(|| format!("the {peer} did not exit within {LINE_TIMEOUT:?}"))?
        .with_context(|| format!("waiting for the {peer} failed"))
}

/// Lowest SNR accepted for Opus from aiosendspin and to the `sendspin`
/// crate, in dB, on the test signal (a sine per channel at half scale plus
/// faint noise). aiosendspin's Opus measured about 25 dB.
const MIN_OPUS_SNR_DB: f64 = 20.0;

/// Starts aiosendspin 10.2.1's server on a free port, playing `wav` once in
/// `codec`.
fn spawn_peer_server(
    root: &Path,
    wav: &Path,
    codec: &str,
    extra: &[&str],
) -> anyhow::Result<Child> {
    let mut command = peer_command(root, "venv-sendspin", &peers_dir(), "python3");
    command
        .arg("aiosendspin_server.py")
        .arg("--wav")
        .arg(wav)
        .args([
            "--port",
            "0",
            "--timeout",
            &PEER_SERVER_TIMEOUT_S.to_string(),
            "--codec",
            codec,
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    command.spawn().context(
        "starting the aiosendspin server in the peers root failed (entering the root needs root privileges)",
    )
}

/// Starts aiosendspin 6.1.1's player client, which offers only 48 kHz stereo
/// PCM at `bit_depth` and writes what it receives to `out`.
fn spawn_peer_client(
    root: &Path,
    url: &str,
    client_id: &str,
    bit_depth: u16,
    out: &Path,
) -> anyhow::Result<Child> {
    let mut command = peer_command(root, "venv-sendspin-v1", &peers_dir(), "python3");
    command
        .arg("aiosendspin_client.py")
        .args(["--url", url, "--client-id", client_id])
        .args([
            "--rate",
            &RATE.to_string(),
            "--channels",
            &CHANNELS.to_string(),
        ])
        .args(["--bit-depth", &bit_depth.to_string()])
        .args(["--seconds", &PEER_CLIENT_SECONDS.to_string()])
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    command.spawn().context(
        "starting the aiosendspin client in the peers root failed (entering the root needs root privileges)",
    )
}

/// Starts `resonate serve` on a free loopback port and returns it with its URL.
fn start_serve(wav: &Path) -> (Proc, String) {
    start_serve_with(wav, &[])
}

/// Starts `resonate serve` with `extra` flags and returns it with its URL.
/// It speaks cleartext v1 unless `extra` names a dialect.
fn start_serve_with(wav: &Path, extra: &[&str]) -> (Proc, String) {
    let wav = wav.to_str().expect("temporary paths are UTF-8");
    let mut args = vec![
        "serve",
        wav,
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--json",
    ];
    if !extra.contains(&"--dialect") {
        args.extend(["--dialect", "sendspin-v1"]);
    }
    args.extend(extra);
    let mut serve = resonate(&args);
    let listening = serve.wait_event("listening", EVENT_PATIENCE);
    let url = listening["url"]
        .as_str()
        .expect("the listening event has a url")
        .to_string();
    (serve, url)
}

/// Checks `resonate serve`'s events for one player's whole stream, then
/// stops it with SIGINT.
fn finish_serve(mut serve: Proc, client_id: &str, chunks_received: usize) {
    let ended = serve.wait_event("stream_ended", EVENT_PATIENCE);
    assert_eq!(
        ended["client_id"], client_id,
        "serve ended another player's stream"
    );
    assert_eq!(
        ended["chunks_sent"], chunks_received,
        "serve reports another chunk count than {client_id} received"
    );
    serve.wait_event("program_ended", EVENT_PATIENCE);
    let closed = serve.wait_event("session_closed", EVENT_PATIENCE);
    assert_eq!(closed["client_id"], client_id, "another session closed");
    let status = serve.interrupt();
    assert!(
        status.success(),
        "resonate serve exited with {status} after SIGINT"
    );
}

/// Writes a test WAV file of `seconds`, checks its frame count and returns
/// its PCM.
fn write_source(path: &Path, bit_depth: u16, seconds: f64) -> Vec<u8> {
    let samples = write_test_wav(path, RATE, CHANNELS, bit_depth, seconds);
    let expected_frames = (f64::from(RATE) * seconds).round() as usize;
    assert_eq!(
        samples.len(),
        expected_frames * usize::from(CHANNELS),
        "the test WAV has another length than {seconds} s"
    );
    pcm_bytes(&samples, bit_depth)
}

/// The WAV file that `resonate play` wrote, as PCM bytes.
struct PlayedWav {
    pcm: Vec<u8>,
    spec: hound::WavSpec,
    first_frame_server_us: i64,
}

fn read_played_wav(path: &Path) -> PlayedWav {
    let mut reader = hound::WavReader::open(path)
        .unwrap_or_else(|err| panic!("reading {} failed: {err}", path.display()));
    let spec = reader.spec();
    let samples: Vec<i32> = reader
        .samples::<i32>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|err| panic!("reading samples of {} failed: {err}", path.display()));
    let note = resonate::audio::wav::read_note(path)
        .unwrap_or_else(|err| panic!("reading the rsnt chunk of {} failed: {err}", path.display()))
        .unwrap_or_else(|| panic!("{} has no rsnt chunk", path.display()));
    let note: Value = serde_json::from_str(&note).expect("the rsnt chunk is JSON");
    let first_frame_server_us = note["first_frame_server_us"]
        .as_i64()
        .unwrap_or_else(|| panic!("the rsnt chunk has no first_frame_server_us: {note}"));
    PlayedWav {
        pcm: pcm_bytes(&samples, spec.bits_per_sample),
        spec,
        first_frame_server_us,
    }
}

/// SNR in dB of recorded 16-bit PCM against the source, when recorded frame
/// `k` is source frame `k + offset`, over source frames from 960 on (past
/// the codec's start-up).
fn opus_snr_db(source: &[u8], recorded: &[u8], offset: i64) -> f64 {
    let to_samples = |bytes: &[u8]| -> Vec<f64> {
        bytes
            .chunks_exact(2)
            .map(|pair| f64::from(i16::from_le_bytes([pair[0], pair[1]])))
            .collect()
    };
    let (source, recorded) = (to_samples(source), to_samples(recorded));
    let channels = i64::from(CHANNELS);
    let (mut signal, mut noise) = (0.0, 0.0);
    for (index, sample) in recorded.iter().enumerate() {
        let source_index = index as i64 + offset * channels;
        if source_index < 960 * channels || source_index >= source.len() as i64 {
            continue;
        }
        let expected = source[source_index as usize];
        signal += expected * expected;
        noise += (sample - expected).powi(2);
    }
    10.0 * (signal / noise.max(1e-9)).log10()
}

/// How `resonate play` connects to aiosendspin's server.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PlayDialect {
    /// Cleartext Sendspin v1, which the server accepts in its transition mode.
    V1,
    /// Sendspin 1.0 over Noise, unpaired: the client offers unpaired access
    /// and the server approves every client for it (`--trust-unpaired`).
    Encrypted,
    /// Sendspin 1.0 over Noise, paired first: the server has the player's
    /// pairing token (`--pair-token`) and pairs by pairing PSK.
    Paired,
    /// Sendspin 1.0 over Noise, unpaired, with the server dialing the
    /// player, which listens (`play --listen`).
    Listening,
}

async fn play_from_peer_server(root: &Path, bit_depth: u16, codec: &str) -> anyhow::Result<()> {
    play_from_peer_server_in(root, bit_depth, codec, PlayDialect::V1).await
}

async fn play_from_peer_server_in(
    root: &Path,
    bit_depth: u16,
    codec: &str,
    dialect: PlayDialect,
) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("resonate-interop")
        .tempdir_in("/tmp")?;
    let source_path = dir.path().join("source.wav");
    let source = write_source(&source_path, bit_depth, PEER_SERVER_SECONDS);
    let frame_bytes = frame_bytes(bit_depth);
    let source_frames = source.len() / frame_bytes;
    assert_eq!(
        source_frames % PEER_SERVER_CHUNK_FRAMES,
        0,
        "the file is not whole server chunks"
    );
    let encrypted = dialect != PlayDialect::V1;
    let label = format!(
        "aiosendspin server to resonate play{}, {codec} {bit_depth}-bit",
        match dialect {
            PlayDialect::V1 => "",
            PlayDialect::Encrypted => " over Sendspin 1.0",
            PlayDialect::Paired => " over Sendspin 1.0 after pairing",
            PlayDialect::Listening => " over Sendspin 1.0, dialed by the server",
        }
    );

    // A 1.0 client_id is the public key of the player's identity, created
    // here in the state directory that play then loads, with its pairing PSK.
    let state_dir = dir.path().join("state");
    let client_id = if encrypted {
        resonate::noise::Identity::load_or_create(&state_dir.join("identity-player.json"))?.id()
    } else {
        format!("resonate-play-{codec}-{bit_depth}")
    };
    let token = if dialect == PlayDialect::Paired {
        let identity =
            resonate::noise::Identity::load_or_create(&state_dir.join("identity-player.json"))?;
        let psk = resonate::noise::pairing::load_or_create_pairing_psk(
            &state_dir.join("pairing-psk-player.txt"),
        )?;
        resonate::noise::pairing::encode_token(identity.public_key(), &psk)
    } else {
        String::new()
    };
    let listen_addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.to_string()
    };
    let dial_url = format!("ws://{listen_addr}/sendspin");
    let server_flags: Vec<&str> = match dialect {
        PlayDialect::V1 => vec![],
        PlayDialect::Listening => vec!["--trust-unpaired", "--strict", "--dial", &dial_url],
        // --strict makes aiosendspin reject any deviation from the 1.0 spec
        // that it would otherwise tolerate and log.
        PlayDialect::Encrypted => vec!["--trust-unpaired", "--strict"],
        PlayDialect::Paired => vec!["--pair-token", &token, "--strict"],
    };
    let mut server = spawn_peer_server(root, &source_path, codec, &server_flags)?;
    let stdout = server
        .stdout
        .take()
        .context("the server's stdout is not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let head = read_until_event("aiosendspin server", &mut lines, "source").await?;
    let url = head
        .iter()
        .find(|event| event["event"] == "listening")
        .and_then(|event| event["url"].as_str())
        .with_context(|| {
            format!("the server reported no listening URL before its source line: {head:?}")
        })?
        .to_string();
    let source_event = head
        .last()
        .expect("read_until_event returns the source event");
    assert_eq!(
        source_event["sha256"],
        sha256_hex(&source),
        "{label}: the server read other PCM from the file than the test wrote"
    );

    let state_dir_text = state_dir
        .to_str()
        .expect("temporary paths are UTF-8")
        .to_string();
    let identity_args: Vec<&str> = if encrypted {
        vec!["--dialect", "sendspin", "--state-dir", &state_dir_text]
    } else {
        vec!["--dialect", "sendspin-v1", "--client-id", &client_id]
    };
    let played_path = dir.path().join("played.wav");
    let output = format!("wav:{}", played_path.display());
    let bits = bit_depth.to_string();
    let rate = RATE.to_string();
    let mut play_args = match dialect {
        PlayDialect::Listening => vec!["play", "--listen", &listen_addr, "--no-mdns"],
        _ => vec!["play", "--server", &url],
    };
    play_args.extend(identity_args);
    play_args.extend([
        "--output",
        &output,
        "--sample-rate",
        &rate,
        "--bit-depth",
        &bits,
        "--json",
        // The recording must equal the source sample for sample.
        "--no-drift-correction",
    ]);
    let mut play = resonate(&play_args);

    let events = read_until_event("aiosendspin server", &mut lines, "finished").await?;
    let status = wait_exit("aiosendspin server", &mut server).await?;
    assert!(
        status.success(),
        "{label}: the server exited with {status}; events {events:?}"
    );
    let finished = events
        .last()
        .expect("read_until_event returns the finished event");
    assert_eq!(
        finished["reason"], "end_of_file",
        "{label}: the server did not play to the end"
    );
    let sent = events
        .iter()
        .find(|event| event["event"] == "sent" && event["client_id"] == client_id.as_str())
        .with_context(|| format!("no \"sent\" event for {client_id} in {events:?}"))?;
    if codec == "pcm" {
        assert_eq!(
            sent["sha256"],
            sha256_hex(&source),
            "{label}: the server sent other PCM than the file's ({} of {} bytes)",
            sent["bytes"],
            source.len()
        );
    }
    assert_eq!(
        sent["format"]["codec"], codec,
        "{label}: the server streamed another codec"
    );
    // Source frame 0 sounds at the stream's start. aiosendspin stamps its
    // first Opus packet earlier by the encoder delay, so for Opus the first
    // chunk's timestamp is not the source's start.
    let first_chunk_us = events
        .iter()
        .find(|event| event["event"] == "stream_started")
        .and_then(|event| event["play_start_us"].as_i64())
        .with_context(|| format!("no stream_started event with play_start_us in {events:?}"))?;
    if codec != "opus" {
        assert_eq!(
            sent["first_timestamp_us"], first_chunk_us,
            "{label}: first chunk is not at the stream's start"
        );
    }
    // Frames on the wire, from the chunk timestamps: PCM chunks carry
    // 1200 frames and every FLAC chunk but the last is one 4608-frame
    // block. aiosendspin 10.2.1 sends no chunk for a final partial FLAC
    // block, so the source's last frames never reach the player.
    let sent_frames = match codec {
        "flac" => {
            let chunks = sent["chunks"]
                .as_i64()
                .context("the sent event has no chunk count")?;
            let last_us = sent["last_timestamp_us"]
                .as_i64()
                .context("the sent event has no last_timestamp_us")?;
            let span_frames =
                ((last_us - first_chunk_us) as f64 * f64::from(RATE) / 1e6).round() as i64;
            (span_frames + span_frames / (chunks - 1).max(1)) as usize
        }
        _ => source_frames,
    };

    // Play closes its WAV file at stream/end, which the server sent before
    // its "finished" line. SIGINT then makes play send client/goodbye and exit.
    let stream_started = play.wait_event("stream_started", EVENT_PATIENCE);
    assert_eq!(
        stream_started["codec"], codec,
        "{label}: play got another codec"
    );
    assert_eq!(
        stream_started["bit_depth"], bit_depth,
        "{label}: play got another format"
    );
    assert_eq!(
        stream_started["sample_rate"], RATE,
        "{label}: play got another format"
    );
    play.wait_event("stream_ended", EVENT_PATIENCE);
    let status = play.interrupt();
    assert!(
        status.success(),
        "{label}: resonate play exited with {status} after SIGINT"
    );
    if dialect == PlayDialect::Paired {
        let server_id = head
            .iter()
            .find(|event| event["event"] == "identity")
            .and_then(|event| event["server_id"].as_str())
            .with_context(|| format!("{label}: the server reported no identity: {head:?}"))?;
        let records = resonate::noise::PairingStore::load(&state_dir.join("pairings-player.json"))?;
        assert!(
            records.record_of(server_id).is_some(),
            "{label}: play stored no pairing record of server {server_id}: {:?}",
            records.records()
        );
    }

    let played = read_played_wav(&played_path);
    assert_eq!(played.spec.sample_rate, RATE, "{label}: WAV sample rate");
    assert_eq!(played.spec.channels, CHANNELS, "{label}: WAV channels");
    assert_eq!(
        played.spec.bits_per_sample, bit_depth,
        "{label}: WAV bit depth"
    );

    // The recording's place in the source comes from the timestamps, not
    // from a search: the first played frame's server time minus the server's
    // first chunk timestamp, which is the time of source frame 0. Play
    // truncates that time to whole microseconds, less than 1/20 of a frame
    // at 48 kHz, so rounding to the nearest frame recovers the frame.
    let offset_us = played.first_frame_server_us - first_chunk_us;
    if codec == "opus" {
        let rate = i128::from(RATE);
        let offset = (i128::from(offset_us) * rate / 1_000_000) as i64;
        let snr_at = |lag: i64| opus_snr_db(&source, &played.pcm, offset + lag);
        let best_lag = (-48..=48)
            .max_by(|&a, &b| snr_at(a).total_cmp(&snr_at(b)))
            .unwrap();
        let snr = snr_at(0);
        eprintln!(
            "{label}: first frame at {offset} frames, SNR {snr:.1} dB, best lag {best_lag} frames"
        );
        assert!(
            best_lag.abs() <= 1,
            "{label}: audio is {best_lag} frames away from where its timestamps put it"
        );
        assert!(
            snr >= MIN_OPUS_SNR_DB,
            "{label}: SNR {snr:.1} dB below {MIN_OPUS_SNR_DB} dB"
        );
        return Ok(());
    }
    assert!(
        offset_us >= 0,
        "{label}: the first played frame (server time {} us) is {} us before the first chunk ({first_chunk_us} us)",
        played.first_frame_server_us,
        -offset_us
    );
    let rate = i128::from(RATE);
    let start_frame = ((i128::from(offset_us) * rate + 500_000) / 1_000_000) as usize;
    assert!(
        start_frame < source_frames,
        "{label}: the first played frame maps to source frame {start_frame}, past the end ({source_frames} frames)"
    );

    // After the source's last frame, play keeps writing silence until
    // stream/end arrives; that silence is not part of the source.
    let recorded_frames = played.pcm.len() / frame_bytes;
    let audible_frames = recorded_frames.min(sent_frames.min(source_frames) - start_frame);
    let (audible, trailing) = played.pcm.split_at(audible_frames * frame_bytes);

    let expected = &source[start_frame * frame_bytes..(start_frame + audible_frames) * frame_bytes];
    let mut span = format!(
        "{label}, source frames {start_frame}..{} by timestamp",
        start_frame + audible_frames
    );
    if audible != expected {
        let found = search_offset_frames(&source, &played.pcm, frame_bytes);
        span.push_str(&format!(
            " (an exact search finds the first played frames at source frame {found:?})"
        ));
    }
    assert_same_pcm(&span, audible, expected, frame_bytes);

    let loud_trailing = trailing.iter().position(|&byte| byte != 0);
    assert_eq!(
        loud_trailing.map(|byte| audible_frames + byte / frame_bytes),
        None,
        "{label}: the WAV has audio at this frame, after the source's end ({} trailing frames)",
        trailing.len() / frame_bytes
    );
    assert!(
        audible_frames * 100 >= source_frames * MIN_PLAYED_PERCENT,
        "{label}: played {audible_frames} of {source_frames} source frames (from frame {start_frame}), \
         less than {MIN_PLAYED_PERCENT}%"
    );
    eprintln!(
        "{label}: played source frames {start_frame}..{} of {source_frames}, then {} frames of silence",
        start_frame + audible_frames,
        trailing.len() / frame_bytes
    );
    Ok(())
}

/// Starts aiosendspin 10.2.1's encrypted player client with a new identity,
/// offering only 48 kHz stereo PCM at `bit_depth`, over `suite`.
fn spawn_encrypted_peer_client(
    root: &Path,
    url: &str,
    suite: &str,
    bit_depth: u16,
    out: &Path,
    extra: &[String],
) -> anyhow::Result<Child> {
    let mut command = peer_command(root, "venv-sendspin", &peers_dir(), "python3");
    command
        .arg("aiosendspin_encrypted_client.py")
        .args(["--url", url, "--suite", suite])
        .args(extra)
        .args([
            "--rate",
            &RATE.to_string(),
            "--channels",
            &CHANNELS.to_string(),
        ])
        .args(["--bit-depth", &bit_depth.to_string()])
        .args(["--seconds", &PEER_CLIENT_SECONDS.to_string()])
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    command.spawn().context(
        "starting the aiosendspin 10.2.1 client in the peers root failed (entering the root needs root privileges)",
    )
}

async fn serve_to_peer_client(root: &Path, bit_depth: u16) -> anyhow::Result<()> {
    serve_to_peer_client_over(root, bit_depth, None, false, &[]).await
}

/// Streams to aiosendspin's client: 6.1.1 over cleartext v1 when `suite` is
/// `None`, else 10.2.1 over Sendspin 1.0 with that cipher suite, admitted
/// unpaired by `serve --allow-unpaired`.
///
/// With `pair`, the client gets a known key and pairing PSK, and `serve`
/// gets their pairing token instead of `--allow-unpaired`, so the two pair
/// by pairing PSK before the stream. `serve_extra` goes to `serve` as well.
async fn serve_to_peer_client_over(
    root: &Path,
    bit_depth: u16,
    suite: Option<&str>,
    pair: bool,
    serve_extra: &[&str],
) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("resonate-interop")
        .tempdir_in("/tmp")?;
    let source_path = dir.path().join("source.wav");
    let source = write_source(&source_path, bit_depth, SERVE_SECONDS);
    let frame_bytes = frame_bytes(bit_depth);
    assert_ne!(
        (source.len() / frame_bytes) % SERVE_CHUNK_FRAMES,
        0,
        "the file should end in a partial chunk"
    );
    let label = match suite {
        Some(suite) => format!("resonate serve to aiosendspin 10.2.1 client over Sendspin 1.0 ({suite}), {bit_depth}-bit"),
        None => format!("resonate serve to aiosendspin client, {bit_depth}-bit"),
    };

    let state_path = dir.path().join("state");
    let state_dir = state_path.to_str().expect("temporary paths are UTF-8");
    let client_key = resonate::noise::Identity::generate();
    let pairing_psk = [0x42u8; 32];
    let token = resonate::noise::pairing::encode_token(client_key.public_key(), &pairing_psk);
    let mut serve_flags = vec!["--dialect", "sendspin", "--state-dir", state_dir];
    if pair {
        serve_flags.extend(["--pair-token", token.as_str()]);
    } else {
        serve_flags.push("--allow-unpaired");
    }
    serve_flags.extend(serve_extra);
    let (mut serve, url) = match suite {
        Some(_) => start_serve_with(&source_path, &serve_flags),
        None => start_serve(&source_path),
    };
    let client_flags: Vec<String> = if pair {
        // One argument each: base64url may start with '-', which argparse
        // would read as an option.
        vec![
            format!(
                "--private-key={}",
                resonate::noise::identity::encode_id(client_key.private_key())
            ),
            format!(
                "--pairing-psk={}",
                resonate::noise::identity::encode_id(&pairing_psk)
            ),
        ]
    } else {
        Vec::new()
    };
    let mut client_id = format!("aiosendspin-client-{bit_depth}");
    let recording_path = dir.path().join("received.pcm");
    let mut client = match suite {
        Some(suite) => spawn_encrypted_peer_client(
            root,
            &url,
            suite,
            bit_depth,
            &recording_path,
            &client_flags,
        )?,
        None => spawn_peer_client(root, &url, &client_id, bit_depth, &recording_path)?,
    };
    let stdout = client
        .stdout
        .take()
        .context("the client's stdout is not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let events = read_until_event("aiosendspin client", &mut lines, "done").await?;
    let status = wait_exit("aiosendspin client", &mut client).await?;
    let done = events
        .last()
        .expect("read_until_event returns the done event");
    if suite.is_some() {
        client_id = events
            .iter()
            .find(|event| event["event"] == "identity")
            .and_then(|event| event["client_id"].as_str())
            .with_context(|| format!("{label}: the client reported no identity: {events:?}"))?
            .to_string();
        assert_eq!(
            client_id.len(),
            43,
            "{label}: client_id {client_id:?} is not a base64url key"
        );
    }
    assert_eq!(
        done["ended_by"], "stream_end",
        "{label}: the recording did not end at stream/end; events {events:?}"
    );
    assert!(status.success(), "{label}: the client exited with {status}");
    assert_eq!(
        done["format"]["codec"], "pcm",
        "{label}: stream/start format {}",
        done["format"]
    );
    assert_eq!(
        done["format"]["sample_rate"], RATE,
        "{label}: stream/start format {}",
        done["format"]
    );
    assert_eq!(
        done["format"]["bit_depth"], bit_depth,
        "{label}: stream/start format {}",
        done["format"]
    );

    let started = serve.wait_event("program_started", EVENT_PATIENCE);
    assert_eq!(
        done["first_timestamp_us"], started["start_us"],
        "{label}: the first chunk's timestamp is not the program start"
    );

    let received = std::fs::read(&recording_path)
        .with_context(|| format!("reading {} failed", recording_path.display()))?;
    assert_same_pcm(&label, &received, &source, frame_bytes);

    let chunks = done["chunks"]
        .as_u64()
        .context("the done event has no chunk count")?;
    finish_serve(serve, &client_id, chunks as usize);
    if pair {
        let records =
            resonate::noise::PairingStore::load(&state_path.join("pairings-server.json"))?;
        assert!(
            records.record_of(&client_id).is_some(),
            "{label}: serve stored no pairing record of {client_id}: {:?}",
            records.records()
        );
    }
    Ok(())
}

async fn serve_to_sendspin_crate(bit_depth: u16) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("resonate-interop")
        .tempdir()?;
    let source_path = dir.path().join("source.wav");
    let source = write_source(&source_path, bit_depth, SERVE_SECONDS);
    let frame_bytes = frame_bytes(bit_depth);
    assert_ne!(
        (source.len() / frame_bytes) % SERVE_CHUNK_FRAMES,
        0,
        "the file should end in a partial chunk"
    );
    let label = format!("resonate serve to sendspin crate, {bit_depth}-bit");

    let (mut serve, url) = start_serve(&source_path);
    let client_id = format!("sendspin-crate-{bit_depth}");
    let format = (RATE, CHANNELS as u8, bit_depth as u8);
    let recording = sendspin_peer::record_pcm(&url, &client_id, format, RECORD_MAX).await?;
    assert!(
        recording.stream_started,
        "{label}: no stream/start from {url}"
    );
    assert!(
        recording.stream_ended,
        "{label}: no stream/end from {url} within {RECORD_MAX:?}"
    );
    assert_eq!(
        recording.format, format,
        "{label}: stream/start format differs from the one offered"
    );

    // Each chunk's timestamp must be the server time of its first frame:
    // the program start plus the frames before it at the nominal rate.
    let started = serve.wait_event("program_started", EVENT_PATIENCE);
    let start_us = started["start_us"]
        .as_i64()
        .context("program_started has no start_us")?;
    let mut frames_before = 0i64;
    for (index, (timestamp_us, payload)) in recording.chunks.iter().enumerate() {
        let expected_us = start_us + frames_before * 1_000_000 / i64::from(RATE);
        assert_eq!(
            *timestamp_us, expected_us,
            "{label}: chunk {index} (after {frames_before} frames) has another timestamp than its frame's server time"
        );
        frames_before += (payload.len() / frame_bytes) as i64;
    }

    assert_same_pcm(&label, &recording.pcm(), &source, frame_bytes);
    finish_serve(serve, &client_id, recording.chunks.len());
    Ok(())
}

/// Streams `codec` from `resonate serve` to the `sendspin` crate's client
/// and decodes the chunks with the crate's own decoder: FLAC must equal the
/// source, Opus must match it within an SNR where its timestamps put it.
async fn serve_codec_to_sendspin_crate(bit_depth: u16, codec: &str) -> anyhow::Result<()> {
    use base64::Engine as _;
    use sendspin::audio::decode::{Decoder, FlacDecoder, OpusDecoder};

    let dir = tempfile::Builder::new()
        .prefix("resonate-interop")
        .tempdir()?;
    let source_path = dir.path().join("source.wav");
    let source = write_source(&source_path, bit_depth, SERVE_SECONDS);
    let label = format!("resonate serve to sendspin crate, {codec} {bit_depth}-bit");

    let (mut serve, url) = start_serve(&source_path);
    let client_id = format!("sendspin-crate-{codec}-{bit_depth}");
    let format = (RATE, CHANNELS as u8, bit_depth as u8);
    let recording = sendspin_peer::record(&url, &client_id, codec, format, RECORD_MAX).await?;
    assert!(
        recording.stream_ended,
        "{label}: no stream/end from {url} within {RECORD_MAX:?}"
    );
    assert_eq!(
        recording.format, format,
        "{label}: stream/start format differs from the one offered"
    );
    let started = serve.wait_event("program_started", EVENT_PATIENCE);
    let start_us = started["start_us"]
        .as_i64()
        .context("program_started has no start_us")?;

    let decoder: Box<dyn Decoder> = match codec {
        "flac" => {
            let header = recording
                .codec_header
                .as_deref()
                .context("no codec_header for flac")?;
            let header = base64::engine::general_purpose::STANDARD.decode(header)?;
            Box::new(FlacDecoder::with_header(&header).map_err(|err| anyhow::anyhow!("{err}"))?)
        }
        _ => Box::new(
            OpusDecoder::new(RATE, CHANNELS as u8).map_err(|err| anyhow::anyhow!("{err}"))?,
        ),
    };
    // The crate widens every sample to full-scale i32.
    let shift = 32 - u32::from(if codec == "opus" { 16 } else { bit_depth });
    let mut decoded: Vec<i32> = Vec::new();
    for (index, (_, payload)) in recording.chunks.iter().enumerate() {
        let samples = decoder
            .decode(payload)
            .map_err(|err| anyhow::anyhow!("{label}: chunk {index}: {err}"))?;
        decoded.extend(
            samples
                .iter()
                .map(|&sample| ((i64::from(sample) + (1 << (shift - 1))) >> shift) as i32),
        );
    }
    let first_us = recording.first_timestamp_us().context("no audio chunks")?;
    let decoded_pcm = pcm_bytes(&decoded, if codec == "opus" { 16 } else { bit_depth });

    if codec == "flac" {
        assert_eq!(
            first_us, start_us,
            "{label}: first chunk is not at the program start"
        );
        assert_same_pcm(&label, &decoded_pcm, &source, frame_bytes(bit_depth));
    } else {
        // The first packet is stamped before the program start by the
        // encoder delay, and the crate plays every decoded frame.
        let offset = ((first_us - start_us) as f64 * f64::from(RATE) / 1e6).round() as i64;
        let snr_at = |lag: i64| opus_snr_db(&source, &decoded_pcm, offset + lag);
        let best_lag = (-48..=48)
            .max_by(|&a, &b| snr_at(a).total_cmp(&snr_at(b)))
            .unwrap();
        let snr = snr_at(0);
        eprintln!(
            "{label}: first frame at {offset} frames, SNR {snr:.1} dB, best lag {best_lag} frames"
        );
        assert!(
            offset < 0,
            "{label}: first packet not stamped before the program start"
        );
        assert_eq!(
            best_lag, 0,
            "{label}: audio is {best_lag} frames away from where its timestamps put it"
        );
        assert!(
            snr >= MIN_OPUS_SNR_DB,
            "{label}: SNR {snr:.1} dB below {MIN_OPUS_SNR_DB} dB"
        );
    }
    finish_serve(serve, &client_id, recording.chunks.len());
    Ok(())
}

// The helpers in `process` block their thread while they wait, so these
// tests run on a multi-threaded runtime with a second worker.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiosendspin_server_to_resonate_play() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    for bit_depth in BIT_DEPTHS {
        play_from_peer_server(&root, bit_depth, "pcm").await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiosendspin_server_flac_and_opus_to_resonate_play() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    for bit_depth in BIT_DEPTHS {
        play_from_peer_server(&root, bit_depth, "flac").await?;
    }
    // aiosendspin encodes Opus from 16-bit PCM.
    play_from_peer_server(&root, 16, "opus").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiosendspin_server_to_resonate_play_encrypted() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    for bit_depth in BIT_DEPTHS {
        play_from_peer_server_in(&root, bit_depth, "pcm", PlayDialect::Encrypted).await?;
    }
    play_from_peer_server_in(&root, 24, "flac", PlayDialect::Encrypted).await?;
    Ok(())
}

/// aiosendspin's server dials `resonate play --listen --dialect sendspin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiosendspin_server_dials_resonate_play_encrypted() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    play_from_peer_server_in(&root, 16, "pcm", PlayDialect::Listening).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiosendspin_server_pairs_resonate_play() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    play_from_peer_server_in(&root, 16, "pcm", PlayDialect::Paired).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resonate_serve_to_aiosendspin_client() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    for bit_depth in BIT_DEPTHS {
        serve_to_peer_client(&root, bit_depth).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resonate_serve_to_aiosendspin_encrypted_client() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    serve_to_peer_client_over(&root, 16, Some("25519_ChaChaPoly_SHA256"), false, &[]).await?;
    serve_to_peer_client_over(&root, 24, Some("25519_AESGCM_SHA256"), false, &[]).await?;
    Ok(())
}

/// `serve --rekey-interval 1` rotates the session keys of aiosendspin's
/// client several times while it streams, and the PCM still arrives exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resonate_serve_rotates_keys_of_aiosendspin_client() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    let rotate = ["--rekey-interval", "1"];
    serve_to_peer_client_over(&root, 16, Some("25519_ChaChaPoly_SHA256"), false, &rotate).await?;
    serve_to_peer_client_over(&root, 16, Some("25519_AESGCM_SHA256"), true, &rotate).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resonate_serve_pairs_aiosendspin_client() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    serve_to_peer_client_over(&root, 16, Some("25519_ChaChaPoly_SHA256"), true, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resonate_serve_to_sendspin_crate() -> anyhow::Result<()> {
    // The sendspin crate is a dev-dependency, so this test needs no peers
    // root and never skips.
    for bit_depth in BIT_DEPTHS {
        serve_to_sendspin_crate(bit_depth).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resonate_serve_flac_and_opus_to_sendspin_crate() -> anyhow::Result<()> {
    for bit_depth in BIT_DEPTHS {
        serve_codec_to_sendspin_crate(bit_depth, "flac").await?;
    }
    serve_codec_to_sendspin_crate(16, "opus").await?;
    Ok(())
}

/// The monitor's observer joins aiosendspin 10.2.1's server as a controller
/// and metadata client and syncs its own clock to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_joins_aiosendspin_server() -> anyhow::Result<()> {
    use resonate::telemetry::observer::{observe, ObserverConfig};
    use resonate::telemetry::{Phase, Telemetry};

    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    let dir = tempfile::Builder::new()
        .prefix("resonate-interop")
        .tempdir_in("/tmp")?;
    let source_path = dir.path().join("source.wav");
    write_source(&source_path, 16, PEER_SERVER_SECONDS);
    let mut server = spawn_peer_server(&root, &source_path, "pcm", &[])?;
    let stdout = server
        .stdout
        .take()
        .context("the server's stdout is not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let head = read_until_event("aiosendspin server", &mut lines, "source").await?;
    let url = head
        .iter()
        .find_map(|event| {
            (event["event"] == "listening")
                .then(|| event["url"].as_str())
                .flatten()
        })
        .with_context(|| format!("the server reported no listening URL: {head:?}"))?
        .to_string();

    let hub = Telemetry::new(Default::default());
    let config = ObserverConfig {
        url: url::Url::parse(&url)?,
        dialect: resonate::dialect::Dialect::SendspinV1,
        client_id: "resonate-observer".into(),
        name: "resonate observer".into(),
        limits: Default::default(),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let observer = tokio::spawn(observe(config, hub.clone(), stop.clone().cancelled_owned()));

    let mut snapshots = hub.subscribe().snapshots;
    let deadline = tokio::time::Instant::now() + EVENT_PATIENCE;
    let converged = |s: &resonate::telemetry::Snapshot| {
        s.sessions.iter().any(|r| {
            r.phase == Phase::Active && r.client_clock.and_then(|c| c.converged) == Some(true)
        })
    };
    while !converged(&snapshots.borrow_and_update()) {
        if tokio::time::timeout_at(deadline, snapshots.changed())
            .await
            .is_err()
        {
            break;
        }
    }
    let snapshot = snapshots.borrow().clone();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), observer)
        .await??
        .context("observer failed")?;

    let row = snapshot
        .sessions
        .first()
        .with_context(|| format!("no session row: {snapshot:?}"))?;
    assert_eq!(row.phase, Phase::Active, "{snapshot:?}");
    assert_eq!(
        row.name.as_deref(),
        Some("resonate interop server"),
        "{row:?}"
    );
    assert!(
        row.roles.iter().any(|r| r == "controller@v1"),
        "controller not activated: {:?}",
        row.roles
    );
    assert!(
        row.roles.iter().any(|r| r == "metadata@v1"),
        "metadata not activated: {:?}",
        row.roles
    );
    let clock = row
        .client_clock
        .with_context(|| format!("no clock estimate: {row:?}"))?;
    assert_eq!(clock.converged, Some(true), "{clock:?}");
    assert!(!snapshot.notes.is_empty());
    Ok(())
}
