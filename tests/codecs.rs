//! FLAC and Opus from `resonate serve` to `resonate play` processes that
//! record what they would play: FLAC must equal the source sample for
//! sample, Opus must come close, and players of different codecs must
//! play each frame at the same server time.

mod support;

#[path = "support/process.rs"]
mod process;

use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use process::{resonate, Proc};
use resonate::audio::flac::FlacEncoder;
use resonate::audio::opus::OpusEncoder;
use resonate::protocol::{BinaryFrame, BinaryKind};
use serde_json::{json, Value};
use support::{read_recording, write_test_wav, Recording};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Lowest SNR accepted for `serve`'s Opus at the libopus default bitrate
/// or more, in dB, on the test signal (a sine per channel at half scale
/// plus faint noise). Runs measured about 44 dB at 128 kbit/s.
const MIN_OPUS_SNR_DB: f64 = 30.0;

/// Starts `serve` on a loopback port and returns it with its URL.
fn start_server(source: &Path, extra: &[&str]) -> (Proc, String) {
    let mut args = vec![
        "serve",
        "--dialect",
        "sendspin-v1",
        source.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--start-delay-ms",
        "1500",
        "--json",
    ];
    args.extend_from_slice(extra);
    let mut server = resonate(&args);
    let listening = server.wait_event("listening", Duration::from_secs(20));
    let url = listening["url"].as_str().unwrap().to_string();
    (server, url)
}

/// Starts `play` recording to `wav`, with the given format flags.
fn start_player(url: &str, id: &str, wav: &Path, flags: &[&str]) -> Proc {
    let output = format!("wav:{}", wav.display());
    let mut args = vec![
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        url,
        "--client-id",
        id,
        "--output",
        &output,
        "--json",
        "--no-drift-correction",
    ];
    args.extend_from_slice(flags);
    resonate(&args)
}

/// Waits for the program to end, then stops the players and the server.
fn finish(server: &mut Proc, players: &mut [(&str, &mut Proc)]) {
    server.wait_event("program_ended", Duration::from_secs(40));
    std::thread::sleep(Duration::from_millis(500));
    for (name, player) in players.iter_mut() {
        let status = player.interrupt();
        assert!(status.success(), "{name} exited with {status}");
    }
    assert!(server.interrupt().success());
}

/// Frame of the source timeline that a recording's first frame maps to,
/// negative when it starts before the program.
fn first_frame(recording: &Recording, start_us: i64) -> i64 {
    let offset_us = recording.first_frame_server_us - start_us;
    // A frame lasts at least 10 us at the rates tested, so rounding whole
    // microseconds recovers the frame index.
    (offset_us as f64 * recording.spec.sample_rate as f64 / 1e6).round() as i64
}

/// Checks that `recording` is the source sample for sample from the
/// program's first frame, followed by nothing but silence.
fn assert_bit_exact(name: &str, recording: &Recording, source: &[i32], start_us: i64) {
    assert_eq!(
        first_frame(recording, start_us),
        0,
        "{name}: does not start at the program's first frame"
    );
    let played = &recording.samples[..recording.samples.len().min(source.len())];
    assert_eq!(
        played.len(),
        source.len(),
        "{name}: recorded {} of {} samples",
        played.len(),
        source.len()
    );
    let first_difference = played.iter().zip(source).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "{name}: differs from the source");
    let trailing = &recording.samples[played.len()..];
    assert!(
        trailing.iter().all(|&s| s == 0),
        "{name}: audio after the end of the source"
    );
}

/// SNR in dB of `recording` against `source` when recorded frame `k` is
/// source frame `k + offset`, over the source frames from `from_frame` on.
fn snr_db(recording: &Recording, source: &[i32], offset: i64, from_frame: usize) -> f64 {
    let channels = usize::from(recording.spec.channels);
    let mut signal = 0.0;
    let mut noise = 0.0;
    for (index, &sample) in recording.samples.iter().enumerate() {
        let source_index = index as i64 + offset * channels as i64;
        if source_index < (from_frame * channels) as i64 || source_index >= source.len() as i64 {
            continue;
        }
        let expected = source[source_index as usize] as f64;
        signal += expected * expected;
        noise += (sample as f64 - expected).powi(2);
    }
    assert!(
        signal > 0.0,
        "no overlap between the recording and the source"
    );
    10.0 * (signal / noise.max(1e-9)).log10()
}

/// Returns the lag in frames, within `radius`, at which the recording best matches
/// the source around where its timestamp places it.
fn best_lag(recording: &Recording, source: &[i32], placed_at: i64, radius: i64) -> i64 {
    (-radius..=radius)
        .max_by(|&a, &b| {
            let snr_a = snr_db(recording, source, placed_at + a, 960);
            let snr_b = snr_db(recording, source, placed_at + b, 960);
            snr_a.total_cmp(&snr_b)
        })
        .unwrap()
}

/// Codec delay of libopus at `rate` Hz, in frames.
fn opus_pre_skip(rate: u32, channels: u16) -> i64 {
    OpusEncoder::new(rate, channels, None).unwrap().pre_skip() as i64
}

/// Returns the formats `serve` announced to `client_id`, in order.
fn announced(server: &Proc, client_id: &str) -> Vec<(String, u64, u64, u64)> {
    server
        .seen
        .iter()
        .filter(|event| event["event"] == "stream_started" && event["client_id"] == client_id)
        .map(|event| {
            (
                event["codec"].as_str().unwrap().to_string(),
                event["sample_rate"].as_u64().unwrap(),
                event["channels"].as_u64().unwrap(),
                event["bit_depth"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn flac_round_trip_bit_exact() {
    let cases: [(u32, u16, u16); 3] = [(44_100, 2, 16), (48_000, 1, 24), (96_000, 2, 24)];
    for (rate, channels, bits) in cases {
        let name = format!("flac {rate} Hz {channels} ch {bits}-bit");
        let dir = tempfile::tempdir().unwrap();
        let source_path = dir.path().join("source.wav");
        let source = write_test_wav(&source_path, rate, channels, bits, 1.5);
        let (mut server, url) = start_server(&source_path, &[]);
        let wav = dir.path().join("flac.wav");
        let (rate_arg, channels_arg, bits_arg) =
            (rate.to_string(), channels.to_string(), bits.to_string());
        let flags = [
            "--codec",
            "flac",
            "--sample-rate",
            &rate_arg,
            "--channels",
            &channels_arg,
            "--bit-depth",
            &bits_arg,
        ];
        let mut player = start_player(&url, "flac", &wav, &flags);
        let start_us = server.wait_event("program_started", Duration::from_secs(20))["start_us"]
            .as_i64()
            .unwrap();
        finish(&mut server, &mut [("player", &mut player)]);

        let expected = vec![(
            "flac".to_string(),
            u64::from(rate),
            u64::from(channels),
            u64::from(bits),
        )];
        assert_eq!(announced(&server, "flac"), expected, "{name}");
        let recording = read_recording(&wav);
        assert_eq!(recording.spec.sample_rate, rate, "{name}");
        assert_eq!(recording.spec.channels, channels, "{name}");
        assert_eq!(recording.spec.bits_per_sample, bits, "{name}");
        assert_bit_exact(&name, &recording, &source, start_us);
    }
}

#[test]
fn opus_round_trip_within_snr() {
    for (rate, channels) in [(48_000u32, 2u16), (48_000, 1), (24_000, 2)] {
        let name = format!("opus {rate} Hz {channels} ch");
        let dir = tempfile::tempdir().unwrap();
        let source_path = dir.path().join("source.wav");
        let source = write_test_wav(&source_path, rate, channels, 16, 1.5);
        let (mut server, url) = start_server(&source_path, &["--opus-bitrate", "128000"]);
        let wav = dir.path().join("opus.wav");
        let (rate_arg, channels_arg) = (rate.to_string(), channels.to_string());
        let flags = [
            "--codec",
            "opus",
            "--sample-rate",
            &rate_arg,
            "--channels",
            &channels_arg,
            "--bit-depth",
            "16",
        ];
        let mut player = start_player(&url, "opus", &wav, &flags);
        let start_us = server.wait_event("program_started", Duration::from_secs(20))["start_us"]
            .as_i64()
            .unwrap();
        finish(&mut server, &mut [("player", &mut player)]);

        assert_eq!(
            announced(&server, "opus"),
            vec![("opus".to_string(), u64::from(rate), u64::from(channels), 16)],
            "{name}"
        );
        let recording = read_recording(&wav);
        // The encoder's warm-up plays just before the program starts, so
        // the first source frame lands at the program's start.
        let placed_at = first_frame(&recording, start_us);
        assert_eq!(
            placed_at,
            -opus_pre_skip(rate, channels),
            "{name}: first frame"
        );
        let snr = snr_db(&recording, &source, placed_at, 960);
        eprintln!("{name}: first frame at {placed_at} frames, SNR {snr:.1} dB");
        assert!(
            snr >= MIN_OPUS_SNR_DB,
            "{name}: SNR {snr:.1} dB below {MIN_OPUS_SNR_DB} dB"
        );
        let frames = recording.samples.len() as i64 / i64::from(channels);
        assert!(
            frames + placed_at >= (source.len() / usize::from(channels)) as i64,
            "{name}: ends early"
        );
    }
}

#[test]
fn mixed_codec_group_stays_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source.wav");
    let source = write_test_wav(&source_path, 48_000, 2, 16, 3.0);
    let (mut server, url) = start_server(&source_path, &[]);
    let wavs: Vec<_> = ["pcm", "flac", "opus"]
        .iter()
        .map(|codec| dir.path().join(format!("{codec}.wav")))
        .collect();
    let common = ["--sample-rate", "48000", "--bit-depth", "16"];
    let mut players: Vec<Proc> = ["pcm", "flac", "opus"]
        .iter()
        .zip(&wavs)
        .map(|(codec, wav)| {
            let mut flags = vec!["--codec", codec];
            flags.extend_from_slice(&common);
            start_player(&url, codec, wav, &flags)
        })
        .collect();
    let start_us = server.wait_event("program_started", Duration::from_secs(20))["start_us"]
        .as_i64()
        .unwrap();
    let [pcm, flac, opus] = &mut players[..] else {
        unreachable!()
    };
    finish(
        &mut server,
        &mut [("pcm", pcm), ("flac", flac), ("opus", opus)],
    );

    for codec in ["pcm", "flac", "opus"] {
        assert_eq!(
            announced(&server, codec),
            vec![(codec.to_string(), 48_000, 2, 16)],
            "{codec}"
        );
    }
    assert_bit_exact("pcm", &read_recording(&wavs[0]), &source, start_us);
    assert_bit_exact("flac", &read_recording(&wavs[1]), &source, start_us);

    // Opus is lossy, so its alignment is where it matches the source best.
    let opus = read_recording(&wavs[2]);
    let placed_at = first_frame(&opus, start_us);
    assert_eq!(placed_at, -opus_pre_skip(48_000, 2), "opus first frame");
    assert_eq!(
        best_lag(&opus, &source, placed_at, 48),
        0,
        "opus is not aligned with pcm and flac"
    );
    let snr = snr_db(&opus, &source, placed_at, 960);
    assert!(snr >= MIN_OPUS_SNR_DB, "opus SNR {snr:.1} dB");
}

/// Returns the largest number of consecutive zero frames in `samples` within the
/// first `frames` frames.
fn longest_silence(samples: &[i32], channels: usize, frames: usize) -> usize {
    let mut longest = 0;
    let mut current = 0;
    for frame in samples.chunks(channels).take(frames) {
        if frame.iter().all(|&s| s == 0) {
            current += 1;
            longest = longest.max(current);
        } else {
            current = 0;
        }
    }
    longest
}

#[test]
fn request_format_switches_one_player() {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source.wav");
    let source = write_test_wav(&source_path, 48_000, 2, 16, 4.0);
    let (mut server, url) = start_server(&source_path, &[]);
    let common = [
        "--codec",
        "pcm",
        "--sample-rate",
        "48000",
        "--bit-depth",
        "16",
    ];
    let request = |spec: &'static str| {
        let mut flags = common.to_vec();
        flags.extend_from_slice(&["--request-format", spec, "--request-format-after", "1.5"]);
        flags
    };
    let steady_wav = dir.path().join("steady.wav");
    let to_flac_wav = dir.path().join("to-flac.wav");
    let to_opus_wav = dir.path().join("to-opus.wav");
    let mut steady = start_player(&url, "steady", &steady_wav, &common);
    let mut to_flac = start_player(&url, "to-flac", &to_flac_wav, &request("flac"));
    // Opus has no 44100 Hz, so the server streams 48000 Hz instead.
    let mut to_opus = start_player(&url, "to-opus", &to_opus_wav, &request("opus:44100"));
    let start_us = server.wait_event("program_started", Duration::from_secs(20))["start_us"]
        .as_i64()
        .unwrap();
    finish(
        &mut server,
        &mut [
            ("steady", &mut steady),
            ("to-flac", &mut to_flac),
            ("to-opus", &mut to_opus),
        ],
    );

    let pcm = ("pcm".to_string(), 48_000, 2, 16);
    assert_eq!(announced(&server, "steady"), vec![pcm.clone()]);
    assert_eq!(
        announced(&server, "to-flac"),
        vec![pcm.clone(), ("flac".to_string(), 48_000, 2, 16)]
    );
    assert_eq!(
        announced(&server, "to-opus"),
        vec![pcm, ("opus".to_string(), 48_000, 2, 16)]
    );

    // The decoded format stays the same, so each player plays on into one
    // file: a second file would mean a break.
    for path in [&steady_wav, &to_flac_wav, &to_opus_wav] {
        let next_segment = resonate::player::output::recorder::segment_path(path, 1);
        assert!(!next_segment.exists(), "{} exists", next_segment.display());
    }
    assert_bit_exact("steady", &read_recording(&steady_wav), &source, start_us);
    // FLAC is lossless, so the switch leaves no trace at all.
    assert_bit_exact("to-flac", &read_recording(&to_flac_wav), &source, start_us);

    let opus = read_recording(&to_opus_wav);
    assert_eq!(
        first_frame(&opus, start_us),
        0,
        "to-opus starts in pcm at the program's start"
    );
    let switched_at = opus
        .samples
        .iter()
        .zip(&source)
        .position(|(a, b)| a != b)
        .expect("audio changed after the switch")
        / 2;
    assert!(
        switched_at > 48_000 / 2,
        "to-opus switched after only {switched_at} frames"
    );
    let source_frames = source.len() / 2;
    assert!(
        opus.samples.len() / 2 >= source_frames,
        "to-opus ends early"
    );
    // The test signal never rests, so 2 ms of silence would be a gap.
    let silence = longest_silence(&opus.samples, 2, source_frames);
    assert!(silence < 96, "to-opus has {silence} silent frames in a row");
    let snr = snr_db(&opus, &source, 0, switched_at + 960);
    assert!(
        snr >= MIN_OPUS_SNR_DB,
        "to-opus SNR after the switch {snr:.1} dB"
    );
}

/// Chunks a fake server sends, and how many of them are corrupt.
struct Broadcast {
    stream_start: Value,
    chunks: Vec<Vec<u8>>,
    corrupt: usize,
}

/// 20 ms of a stereo tone at 48 kHz.
fn tone_chunk() -> Vec<f32> {
    (0..960 * 2)
        .map(|i| ((i / 2) as f32 * 0.05).sin() * 0.25)
        .collect()
}

fn flac_broadcast() -> Broadcast {
    use base64::Engine as _;
    let mut encoder = FlacEncoder::new(48_000, 2, 16, 960).unwrap();
    let mut chunks: Vec<Vec<u8>> = (0..40)
        .map(|_| encoder.encode(&tone_chunk()).unwrap())
        .collect();
    chunks[10][20] ^= 0xFF;
    chunks[20].truncate(5);
    chunks[30].clear();
    let header = base64::engine::general_purpose::STANDARD.encode(encoder.header());
    Broadcast {
        stream_start: json!({"codec": "flac", "sample_rate": 48_000, "channels": 2, "bit_depth": 16, "codec_header": header}),
        chunks,
        corrupt: 3,
    }
}

fn opus_broadcast() -> Broadcast {
    let mut encoder = OpusEncoder::new(48_000, 2, None).unwrap();
    let mut chunks: Vec<Vec<u8>> = (0..40)
        .flat_map(|_| encoder.encode(&tone_chunk()).unwrap())
        .collect();
    chunks[10].clear();
    // Code 3 (an arbitrary frame count) with a count of 0 is invalid.
    chunks[20] = vec![0x03, 0x00];
    Broadcast {
        stream_start: json!({"codec": "opus", "sample_rate": 48_000, "channels": 2, "bit_depth": 16}),
        chunks,
        corrupt: 2,
    }
}

/// Serves one connection: replies to the hello, starts the stream and sends
/// the chunks 20 ms apart, stamped from 1 s ahead; then waits for the close.
async fn fake_server(listener: tokio::net::TcpListener, broadcast: Broadcast) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let send_text = |value: Value| WsMessage::text(value.to_string());
    while let Some(Ok(frame)) = ws.next().await {
        let WsMessage::Text(text) = frame else {
            continue;
        };
        let message: Value = serde_json::from_str(text.as_str()).unwrap();
        if message["type"] == "client/hello" {
            break;
        }
    }
    let hello = json!({"type": "server/hello", "payload": {
        "server_id": "fake", "name": "fake", "version": 1, "active_roles": ["player@v1"], "connection_reason": "playback"}});
    ws.send(send_text(hello)).await.unwrap();
    ws.send(send_text(
        json!({"type": "stream/start", "payload": {"player": broadcast.stream_start}}),
    ))
    .await
    .unwrap();
    let first_us = resonate::clock::now_us() + 1_000_000;
    for (index, payload) in broadcast.chunks.into_iter().enumerate() {
        let frame = BinaryFrame::new(BinaryKind::Audio, first_us + index as i64 * 20_000, payload);
        ws.send(WsMessage::binary(frame.to_bytes())).await.unwrap();
    }
    while let Some(Ok(frame)) = ws.next().await {
        if frame.is_close() {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_chunks_are_counted_not_fatal() {
    for (codec, broadcast) in [("flac", flac_broadcast()), ("opus", opus_broadcast())] {
        let corrupt = broadcast.corrupt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/sendspin", listener.local_addr().unwrap());
        let server = tokio::spawn(fake_server(listener, broadcast));
        let mut player = resonate(&[
            "play",
            "--dialect",
            "sendspin-v1",
            "--server",
            &url,
            "--output",
            "null",
            "--json",
            "--duration",
            "2",
        ]);
        let player = tokio::task::spawn_blocking(move || {
            let status = player.wait(Duration::from_secs(20));
            (status, player)
        });
        let (status, mut player) = player.await.unwrap();
        assert!(status.success(), "{codec}: play exited with {status}");
        let started = player.wait_event("stream_started", Duration::from_secs(1));
        assert_eq!(started["codec"], codec);
        let finished = player.wait_event("finished", Duration::from_secs(1));
        assert_eq!(finished["corrupt_chunks"], corrupt, "{codec}: {finished}");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("fake server ends")
            .unwrap();
    }
}

#[test]
fn serve_codec_flag_forces_codec() {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source.wav");
    let source = write_test_wav(&source_path, 48_000, 2, 16, 1.5);
    let (mut server, url) = start_server(&source_path, &["--codec", "flac"]);
    let wav = dir.path().join("pcm-only.wav");
    let flags = [
        "--codec",
        "pcm",
        "--sample-rate",
        "48000",
        "--bit-depth",
        "16",
    ];
    let mut player = start_player(&url, "pcm-only", &wav, &flags);
    let start_us = server.wait_event("program_started", Duration::from_secs(20))["start_us"]
        .as_i64()
        .unwrap();
    finish(&mut server, &mut [("player", &mut player)]);

    assert_eq!(
        announced(&server, "pcm-only"),
        vec![("flac".to_string(), 48_000, 2, 16)]
    );
    assert_bit_exact("pcm-only", &read_recording(&wav), &source, start_us);
}

#[test]
fn resampled_source_codecs_match_pcm() {
    // A 44.1 kHz source reaches 48 kHz players through the resampler, so
    // chunks vary in length: FLAC uses variable block sizes and Opus
    // packets no longer line up with chunks.
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source.wav");
    write_test_wav(&source_path, 44_100, 2, 16, 2.0);
    let (mut server, url) = start_server(&source_path, &[]);
    let wavs: Vec<_> = ["pcm", "flac", "opus"]
        .iter()
        .map(|codec| dir.path().join(format!("{codec}.wav")))
        .collect();
    let mut players: Vec<Proc> = ["pcm", "flac", "opus"]
        .iter()
        .zip(&wavs)
        .map(|(codec, wav)| {
            start_player(
                &url,
                codec,
                wav,
                &[
                    "--codec",
                    codec,
                    "--sample-rate",
                    "48000",
                    "--bit-depth",
                    "16",
                ],
            )
        })
        .collect();
    let start_us = server.wait_event("program_started", Duration::from_secs(20))["start_us"]
        .as_i64()
        .unwrap();
    let [pcm, flac, opus] = &mut players[..] else {
        unreachable!()
    };
    finish(
        &mut server,
        &mut [("pcm", pcm), ("flac", flac), ("opus", opus)],
    );

    // Every player resamples the same way, so the PCM player's recording
    // is the reference for the others.
    let pcm = read_recording(&wavs[0]);
    assert_eq!(first_frame(&pcm, start_us), 0, "pcm first frame");
    let timeline_frames = 2 * 48_000;
    assert!(
        pcm.samples.len() >= timeline_frames * 2,
        "pcm recorded {} samples",
        pcm.samples.len()
    );
    let reference = &pcm.samples[..timeline_frames * 2];
    let flac = read_recording(&wavs[1]);
    assert_eq!(first_frame(&flac, start_us), 0, "flac first frame");
    // Both recordings go on with the resampler's tail and silence until
    // stream/end arrives, which may differ in length.
    let common = flac.samples.len().min(pcm.samples.len());
    assert!(
        common >= reference.len(),
        "flac recorded {} samples",
        flac.samples.len()
    );
    let first_difference = flac.samples[..common]
        .iter()
        .zip(&pcm.samples)
        .position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "flac differs from pcm");

    let opus = read_recording(&wavs[2]);
    let placed_at = first_frame(&opus, start_us);
    assert_eq!(placed_at, -opus_pre_skip(48_000, 2), "opus first frame");
    assert_eq!(
        best_lag(&opus, reference, placed_at, 48),
        0,
        "opus is not aligned with pcm"
    );
    let snr = snr_db(&opus, reference, placed_at, 960);
    assert!(snr >= MIN_OPUS_SNR_DB, "opus SNR {snr:.1} dB");
}

#[test]
fn request_format_rate_change_restarts_soon() {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source.wav");
    let seconds = 4.0;
    let source = write_test_wav(&source_path, 48_000, 2, 16, seconds);
    let (mut server, url) = start_server(&source_path, &[]);
    let wav = dir.path().join("to-44100.wav");
    let flags = [
        "--codec",
        "pcm",
        "--bit-depth",
        "16",
        "--request-format",
        "pcm:44100",
        "--request-format-after",
        "1.5",
    ];
    let mut player = start_player(&url, "to-44100", &wav, &flags);
    let start_us = server.wait_event("program_started", Duration::from_secs(20))["start_us"]
        .as_i64()
        .unwrap();
    finish(&mut server, &mut [("player", &mut player)]);

    let expected = vec![
        ("pcm".to_string(), 48_000, 2, 16),
        ("pcm".to_string(), 44_100, 2, 16),
    ];
    assert_eq!(announced(&server, "to-44100"), expected);

    // The player drops its buffered 48 kHz audio to change its output, so
    // the recording continues in a second file at 44.1 kHz.
    let before = read_recording(&wav);
    let after = read_recording(&resonate::player::output::recorder::segment_path(&wav, 1));
    assert_eq!(before.spec.sample_rate, 48_000);
    assert_eq!(after.spec.sample_rate, 44_100);
    assert_eq!(
        first_frame(&before, start_us),
        0,
        "the first file does not start at the program's start"
    );
    let first_difference = before.samples.iter().zip(&source).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "the first file differs from the source"
    );

    // The server restarts the stream just ahead of its clock instead of
    // after the 2 s of audio it had sent ahead, so the break is short.
    let before_end_us =
        before.first_frame_server_us + (before.samples.len() as i64 / 2) * 1_000_000 / 48_000;
    let gap_us = after.first_frame_server_us - before_end_us;
    assert!(gap_us > -1_000, "the files overlap by {} us", -gap_us);
    assert!(
        gap_us < 1_000_000,
        "{gap_us} us of silence between the formats"
    );

    let after_end_us =
        after.first_frame_server_us + (after.samples.len() as i64 / 2) * 1_000_000 / 44_100;
    let program_end_us = start_us + (seconds * 1e6) as i64;
    assert!(
        after_end_us >= program_end_us,
        "the second file ends {} us early",
        program_end_us - after_end_us
    );
}
