//! Codec cost of `resonate serve`: the encode time per player per codec, and
//! the most FLAC and Opus players one in-process server feeds in real time.
//!
//! Run with `cargo bench --bench codecs`; `docs/benchmarks.md` records the
//! figures and the machine. Plain std timing, no harness: each figure is
//! one run, so repeat it to see the spread. `cargo test --all-targets`
//! runs it too, without `--bench`; it then does a short smoke run (2 s of
//! audio, 4 players) whose figures mean nothing.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use resonate::audio::convert::encode_pcm;
use resonate::audio::flac::FlacEncoder;
use resonate::audio::opus::OpusEncoder;
use resonate::audio::Codec;
use resonate::clock::now_us;
use resonate::server::{Server, ServerConfig, SourcePlan};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[path = "../tests/support/mod.rs"]
mod support;

use support::write_test_wav;

const RATE: u32 = 48_000;
const CHANNELS: u16 = 2;
/// Frames in one 20 ms chunk at 48 kHz.
const CHUNK_FRAMES: usize = 960;
/// Audio encoded per codec in the encode-cost part, in seconds.
const ENCODE_SECONDS: usize = 30;
/// Audio encoded per codec in a smoke run, in seconds.
const SMOKE_ENCODE_SECONDS: usize = 2;
/// Length of the served file in the player-count part, in seconds.
const SERVE_SECONDS: f64 = 6.0;
/// A run passes when no chunk reached a player less than this far ahead of
/// its play time, in microseconds. The server sends 2000 ms ahead, so a
/// lead this low means it fell behind.
const MIN_LEAD_US: i64 = 250_000;
/// Player counts tried, in order; the search stops at the first failure.
const PLAYER_COUNTS: [usize; 9] = [4, 8, 16, 32, 48, 64, 96, 128, 192];
/// Player counts tried in a smoke run.
const SMOKE_PLAYER_COUNTS: [usize; 1] = [4];

/// Writes the test signal of the integration tests (a sine per channel
/// and a little noise) to `path` as a 16-bit WAV file and returns it as
/// `f32`.
fn test_signal(path: &Path, seconds: f64) -> Vec<f32> {
    let samples = write_test_wav(path, RATE, CHANNELS, 16, seconds);
    samples
        .iter()
        .map(|&sample| sample as f32 / 32768.0)
        .collect()
}

/// Encodes the test signal, `seconds` long, in 20 ms chunks with `encode`
/// and returns the wall time and bytes per second of audio, on one thread.
fn time_encoder(
    signal: &[f32],
    seconds: usize,
    mut encode: impl FnMut(&[f32]) -> usize,
) -> (Duration, usize) {
    let started = Instant::now();
    let mut bytes = 0;
    for chunk in signal.chunks(CHUNK_FRAMES * usize::from(CHANNELS)) {
        bytes += encode(chunk);
    }
    (started.elapsed() / seconds as u32, bytes / seconds)
}

fn encode_costs(dir: &Path, seconds: usize) {
    println!(
        "## Encode cost per player: 48 kHz stereo, 20 ms chunks, {seconds} s of audio, one thread"
    );
    println!();
    println!("| codec | time per second of audio | share of one core | bytes per second |");
    println!("|---|---|---|---|");
    let signal = test_signal(&dir.join("encode.wav"), seconds as f64);
    let mut rows: Vec<(&str, (Duration, usize))> = Vec::new();
    rows.push((
        "pcm 16-bit",
        time_encoder(&signal, seconds, |chunk| {
            let mut out = Vec::new();
            encode_pcm(chunk, 16, &mut out);
            out.len()
        }),
    ));
    for bits in [16, 24] {
        let mut encoder =
            FlacEncoder::new(RATE, CHANNELS, bits, CHUNK_FRAMES).expect("flac encoder");
        let label = if bits == 16 {
            "flac 16-bit"
        } else {
            "flac 24-bit"
        };
        rows.push((
            label,
            time_encoder(&signal, seconds, |chunk| {
                encoder.encode(chunk).expect("flac encode").len()
            }),
        ));
    }
    for (label, bitrate) in [
        ("opus, libopus default bitrate", None),
        ("opus 128 kbit/s", Some(128_000)),
        ("opus 256 kbit/s", Some(256_000)),
    ] {
        let mut encoder = OpusEncoder::new(RATE, CHANNELS, bitrate).expect("opus encoder");
        rows.push((
            label,
            time_encoder(&signal, seconds, |chunk| {
                encoder
                    .encode(chunk)
                    .expect("opus encode")
                    .iter()
                    .map(Vec::len)
                    .sum()
            }),
        ));
    }
    for (label, (per_second, bytes)) in rows {
        let share = per_second.as_secs_f64() * 100.0;
        println!(
            "| {label} | {:.2} ms | {share:.2}% | {bytes} |",
            per_second.as_secs_f64() * 1000.0
        );
    }
    println!();
}

/// CPU time this process has used, from `/proc/self/stat` (Linux), with
/// the usual 100 ticks per second.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Observations of the simulated players.
#[derive(Default)]
struct Observed {
    /// Smallest lead of any chunk at arrival, in microseconds.
    min_lead_us: AtomicI64,
    chunks: AtomicU64,
    /// Players that saw stream/end.
    ended: AtomicU64,
}

/// Runs one simulated player: it offers only `codec`, reads every frame
/// and records each chunk's lead until stream/end.
async fn run_player(url: String, index: usize, codec: Codec, observed: Arc<Observed>) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
        return;
    };
    let hello = json!({"type": "client/hello", "payload": {
        "client_id": format!("bench-{index}"), "name": "bench", "version": 1, "supported_roles": ["player@v1"],
        "player@v1_support": {
            "supported_formats": [{"codec": codec.as_str(), "sample_rate": RATE, "channels": CHANNELS, "bit_depth": 16}],
            "buffer_capacity": 100_000_000, "supported_commands": []}}});
    if ws.send(WsMessage::text(hello.to_string())).await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(SERVE_SECONDS + 20.0);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, ws.next()).await {
        match frame {
            WsMessage::Binary(bytes) if bytes.len() > 9 => {
                let timestamp = i64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
                observed
                    .min_lead_us
                    .fetch_min(timestamp - now_us(), Ordering::Relaxed);
                observed.chunks.fetch_add(1, Ordering::Relaxed);
            }
            WsMessage::Text(text) if text.as_str().contains("\"stream/end\"") => {
                observed.ended.fetch_add(1, Ordering::Relaxed);
                break;
            }
            _ => {}
        }
    }
    let _ = ws.close(None).await;
}

/// Serves the test file to `players` simulated players of `codec` and
/// returns the smallest lead, the players that reached stream/end and the
/// process CPU time per second of audio.
async fn serve_players(source: &Path, codec: Codec, players: usize) -> (i64, u64, f64) {
    let mut config = ServerConfig::new(SourcePlan::file(source.to_path_buf(), false));
    config.forced_codec = Some(codec);
    config.start_delay = Duration::from_millis(1500);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!(
        "ws://{}/sendspin",
        listener.local_addr().expect("local address")
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(Server::new(config).run(listener, async {
        let _ = stopped.await;
    }));

    let observed = Arc::new(Observed {
        min_lead_us: AtomicI64::new(i64::MAX),
        ..Default::default()
    });
    let cpu_before = process_cpu();
    let clients: Vec<_> = (0..players)
        .map(|index| tokio::spawn(run_player(url.clone(), index, codec, observed.clone())))
        .collect();
    for client in clients {
        let _ = client.await;
    }
    let cpu = process_cpu().saturating_sub(cpu_before);
    let _ = stop.send(());
    let _ = server.await;
    let per_audio_second = cpu.as_secs_f64() / SERVE_SECONDS;
    (
        observed.min_lead_us.load(Ordering::Relaxed),
        observed.ended.load(Ordering::Relaxed),
        per_audio_second,
    )
}

fn max_players(source: &Path, counts: &[usize]) {
    println!(
        "## Players fed in real time: in-process server and simulated players, 2 worker threads"
    );
    println!();
    println!("| codec | players | smallest lead | reached stream/end | process CPU per second of audio | verdict |");
    println!("|---|---|---|---|---|---|");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    for codec in [Codec::Flac, Codec::Opus] {
        for &players in counts {
            let (min_lead_us, ended, cpu) = runtime.block_on(serve_players(source, codec, players));
            let kept_up = min_lead_us >= MIN_LEAD_US && ended == players as u64;
            let verdict = if kept_up { "real time" } else { "fell behind" };
            println!(
                "| {codec} | {players} | {:.0} ms | {ended} | {cpu:.2} s | {verdict} |",
                min_lead_us as f64 / 1000.0
            );
            if !kept_up {
                break;
            }
        }
    }
    println!();
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter selects one part.
    let full = std::env::args().any(|arg| arg == "--bench");
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with("--"));
    let selected = |part: &str| filter.as_deref().is_none_or(|f| part.contains(f));
    let dir = tempfile::tempdir().expect("temporary directory");
    if selected("encode") {
        let seconds = if full {
            ENCODE_SECONDS
        } else {
            SMOKE_ENCODE_SECONDS
        };
        encode_costs(dir.path(), seconds);
    }
    if selected("players") {
        let source = dir.path().join("serve.wav");
        test_signal(&source, SERVE_SECONDS);
        let counts: &[usize] = if full {
            &PLAYER_COUNTS
        } else {
            &SMOKE_PLAYER_COUNTS
        };
        max_players(&source, counts);
    }
}
