//! Smoke test of the `sendspin` crate recording helper against a real
//! server: aiosendspin 10.2.1 from the peers root, serving a generated WAV
//! file over cleartext Sendspin v1.
//!
//! The peers root is a Debian root with the Python reference peers in venvs,
//! at `$RESONATE_PEERS_ROOT` (default /opt/resonate-peers). Without it the
//! test fails, unless `RESONATE_SKIP_PEERS=1` is set, in which case it prints
//! why it skipped and passes. Entering the root needs root privileges, because
//! the test bind-mounts directories into it and chroots.

#[path = "support/peers.rs"]
mod peers;
#[path = "support/sendspin_peer.rs"]
mod sendspin_peer;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use peers::{peer_command, require_peers_root};

const SAMPLE_RATE: u32 = 48_000;
const CHANNELS: u16 = 2;
const BIT_DEPTH: u16 = 16;
/// Two seconds: a whole number of the server's 25 ms PCM chunks, so the
/// server sends every frame (it drops a shorter final chunk).
const FRAMES: usize = 96_000;

/// Time limits for the exchange. The server also exits by itself after its
/// `--timeout`, and a test that ends early kills it (`kill_on_drop`).
const SERVER_TIMEOUT_S: u32 = 30;
const RECORD_MAX: Duration = Duration::from_secs(20);
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes a 16-bit stereo WAV file: a 997 Hz sine on the left and seeded
/// xorshift noise on the right, so every frame differs from its neighbours.
/// Returns the interleaved PCM that the file contains.
fn write_test_wav(path: &Path) -> anyhow::Result<Vec<u8>> {
    let spec = hound::WavSpec {
        channels: CHANNELS,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: BIT_DEPTH,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec)
        .with_context(|| format!("creating {} failed", path.display()))?;
    let mut pcm = Vec::with_capacity(FRAMES * 4);
    let mut state: u32 = 1;
    for index in 0..FRAMES {
        let phase = 2.0 * std::f64::consts::PI * 997.0 * index as f64 / f64::from(SAMPLE_RATE);
        let left = (0.5 * f64::from(i16::MAX) * phase.sin()).round() as i16;
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let right = (state >> 18) as i16 - (1 << 13);
        for sample in [left, right] {
            writer.write_sample(sample)?;
            pcm.extend_from_slice(&sample.to_le_bytes());
        }
    }
    writer.finalize()?;
    Ok(pcm)
}

/// Reads JSON event lines from the server until one has `"event": expected`.
/// Returns every line read, that one last.
async fn read_until_event(
    lines: &mut Lines<BufReader<ChildStdout>>,
    expected: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut events = Vec::new();
    loop {
        let line = tokio::time::timeout(LINE_TIMEOUT, lines.next_line())
            .await
            .with_context(|| format!("timed out waiting for the server's {expected:?} event"))??;
        let Some(line) = line else {
            bail!("the server's stdout closed before its {expected:?} event; read {events:?}");
        };
        let event: Value = serde_json::from_str(&line)
            .with_context(|| format!("invalid JSON line from the server: {line}"))?;
        let done = event["event"] == expected;
        events.push(event);
        if done {
            return Ok(events);
        }
    }
}

fn spawn_server(root: &Path, wav: &Path) -> anyhow::Result<Child> {
    let peers_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let mut command = peer_command(root, "venv-sendspin", &peers_dir, "python3");
    command
        .arg("aiosendspin_server.py")
        .arg("--wav")
        .arg(wav)
        .args(["--port", "0", "--timeout", &SERVER_TIMEOUT_S.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    command
        .spawn()
        .context("starting the aiosendspin server in the peers root failed (entering the root needs root privileges)")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[tokio::test]
async fn sendspin_crate_records_aiosendspin_pcm() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    // The server reads the file from inside the root, which shares only /tmp
    // with the host, so the file must be under /tmp regardless of TMPDIR.
    let dir = tempfile::Builder::new()
        .prefix("sendspin-peer-smoke")
        .tempdir_in("/tmp")?;
    let wav = dir.path().join("tone.wav");
    let source_pcm = write_test_wav(&wav)?;

    let mut server = spawn_server(&root, &wav)?;
    let stdout = server.stdout.take().context("server stdout is not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let listening = read_until_event(&mut lines, "listening").await?;
    let port = listening
        .last()
        .and_then(|event| event["port"].as_u64())
        .context("the server's listening event has no port")?;
    let url = format!("ws://127.0.0.1:{port}/sendspin");

    let format = (SAMPLE_RATE, CHANNELS as u8, BIT_DEPTH as u8);
    let recording = sendspin_peer::record_pcm(&url, "rust-smoke", format, RECORD_MAX).await?;
    let events = read_until_event(&mut lines, "finished").await?;
    let status = tokio::time::timeout(LINE_TIMEOUT, server.wait()).await??;

    assert!(recording.stream_started, "no stream/start from {url}");
    assert!(
        recording.stream_ended,
        "no stream/end from {url} within {RECORD_MAX:?}"
    );
    assert_eq!(
        recording.format, format,
        "stream/start format differs from the one offered"
    );
    assert!(
        recording
            .chunks
            .windows(2)
            .all(|pair| pair[0].0 < pair[1].0),
        "chunk timestamps are not strictly increasing"
    );

    let recorded_pcm = recording.pcm();
    assert_eq!(
        recorded_pcm.len(),
        source_pcm.len(),
        "recorded byte count differs from the WAV's"
    );
    let first_difference = recorded_pcm
        .iter()
        .zip(&source_pcm)
        .position(|(recorded, source)| recorded != source);
    assert_eq!(
        first_difference, None,
        "recorded PCM differs from the WAV's PCM at this byte"
    );

    let sent = events
        .iter()
        .find(|event| event["event"] == "sent" && event["client_id"] == "rust-smoke")
        .with_context(|| format!("no \"sent\" event for rust-smoke in {events:?}"))?;
    assert_eq!(
        sent["sha256"],
        sha256_hex(&recorded_pcm),
        "server sent other bytes than recorded"
    );
    assert_eq!(
        sent["chunks"],
        recording.chunks.len(),
        "server sent another chunk count"
    );
    assert_eq!(
        sent["first_timestamp_us"],
        recording.first_timestamp_us().unwrap_or(-1),
        "server's first chunk timestamp differs from the recording's"
    );
    assert_eq!(
        events.last().map(|event| event["reason"].clone()),
        Some(Value::from("end_of_file")),
        "server did not finish at the end of the file"
    );
    assert!(status.success(), "server exited with {status}");
    Ok(())
}
