//! `resonate serve` streaming a real file to `resonate play` processes
//! that write what they would play to WAV files: the PCM must equal the
//! source sample for sample, placed where the server timeline puts it.

mod support;

#[path = "support/process.rs"]
mod process;

use std::path::Path;
use std::time::Duration;

use process::{resonate, Proc};
use support::{read_recording, write_test_wav, Recording};

const RATE: u32 = 48_000;
const CHANNELS: u16 = 2;

fn start_player(url: &str, id: &str, wav: &Path, bits: u16) -> Proc {
    let output = format!("wav:{}", wav.display());
    let bits = bits.to_string();
    resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        url,
        "--client-id",
        id,
        "--output",
        &output,
        "--sample-rate",
        "48000",
        "--bit-depth",
        &bits,
        "--json",
        "--no-drift-correction",
    ])
}

/// Checks that `recording` is the source from the frame its timestamp maps
/// to, and returns that frame.
fn assert_matches_source(
    name: &str,
    recording: &Recording,
    source: &[i32],
    start_us: i64,
) -> usize {
    let offset_us = recording.first_frame_server_us - start_us;
    assert!(
        offset_us >= 0,
        "{name}: starts {offset_us} us before the program"
    );
    // Timestamps are whole microseconds and a frame lasts about 20.8 us, so
    // rounding recovers the frame index exactly.
    let frame = ((offset_us as f64) * RATE as f64 / 1e6).round() as usize;
    let start = frame * CHANNELS as usize;
    // The output plays silence from the end of the source until stream/end
    // arrives; that silence is not part of the source.
    let audible = recording
        .samples
        .len()
        .min(source.len().saturating_sub(start));
    let (played, trailing) = recording.samples.split_at(audible);
    assert!(
        trailing.iter().all(|&s| s == 0),
        "{name}: audio after the end of the source"
    );
    assert!(
        trailing.len() < (RATE as usize / 5) * CHANNELS as usize,
        "{name}: {} samples of trailing silence",
        trailing.len()
    );
    assert!(!played.is_empty(), "{name}: wrote no audio");
    let expected = &source[start..start + played.len()];
    let first_difference = played.iter().zip(expected).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "{name}: differs from the source (frame offset {frame})"
    );
    frame
}

fn run_sync_test(bits: u16) {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source.wav");
    let source = write_test_wav(&source_path, RATE, CHANNELS, bits, 4.0);

    let source_arg = source_path.to_str().unwrap();
    let mut server = resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        source_arg,
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--start-delay-ms",
        "1500",
        "--json",
    ]);
    let listening = server.wait_event("listening", Duration::from_secs(20));
    let url = listening["url"].as_str().unwrap().to_string();

    let first_wav = dir.path().join("first.wav");
    let second_wav = dir.path().join("second.wav");
    let late_wav = dir.path().join("late.wav");
    let mut first = start_player(&url, "first", &first_wav, bits);
    let started = server.wait_event("program_started", Duration::from_secs(20));
    let start_us = started["start_us"].as_i64().unwrap();
    let mut second = start_player(&url, "second", &second_wav, bits);

    // The late joiner connects well after the first sample sounded.
    std::thread::sleep(Duration::from_millis(3000));
    let mut late = start_player(&url, "late", &late_wav, bits);

    server.wait_event("program_ended", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    for (name, player) in [
        ("first", &mut first),
        ("second", &mut second),
        ("late", &mut late),
    ] {
        let status = player.interrupt();
        assert!(status.success(), "{name} exited with {status}");
    }
    assert!(server.interrupt().success());

    let first = read_recording(&first_wav);
    let second = read_recording(&second_wav);
    let late = read_recording(&late_wav);
    let first_frame = assert_matches_source("first", &first, &source, start_us);
    let second_frame = assert_matches_source("second", &second, &source, start_us);
    let late_frame = assert_matches_source("late", &late, &source, start_us);

    // The first players start at the program's start and play it to the end.
    assert_eq!(first_frame, 0, "first player missed the start");
    assert_eq!(second_frame, 0, "second player missed the start");
    assert!(
        first.samples.len() >= source.len(),
        "first player did not play everything"
    );
    assert!(
        second.samples.len() >= source.len(),
        "second player did not play everything"
    );
    // The late joiner connected 3 s after the program started, which is
    // 1.5 s into the timeline; it got only chunks after that point.
    assert!(
        late_frame as u32 > RATE,
        "late joiner starts at frame {late_frame}"
    );
    assert!(
        late_frame * CHANNELS as usize + late.samples.len() >= source.len(),
        "late joiner stopped early"
    );
}

#[test]
fn two_players_and_late_joiner_match_source_16_bit() {
    run_sync_test(16);
}

#[test]
fn two_players_and_late_joiner_match_source_24_bit() {
    run_sync_test(24);
}

/// Counts sign changes of one channel of interleaved samples.
fn zero_crossings(samples: &[i32], channels: usize, channel: usize) -> usize {
    let signal: Vec<i32> = samples
        .iter()
        .skip(channel)
        .step_by(channels)
        .copied()
        .collect();
    signal
        .windows(2)
        .filter(|pair| (pair[0] < 0) != (pair[1] < 0))
        .count()
}

#[test]
fn player_rate_differs_so_server_resamples() {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source_44100.wav");
    let seconds = 2.0;
    write_test_wav(&source_path, 44_100, CHANNELS, 16, seconds);

    let mut server = resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        source_path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--start-delay-ms",
        "1500",
        "--json",
    ]);
    let url = server.wait_event("listening", Duration::from_secs(20))["url"]
        .as_str()
        .unwrap()
        .to_string();
    let wav = dir.path().join("resampled.wav");
    let mut player = start_player(&url, "resampled", &wav, 16);
    let started = server.wait_event("stream_started", Duration::from_secs(20));
    assert_eq!(started["sample_rate"], 48_000);
    server.wait_event("program_ended", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    assert!(player.interrupt().success());
    assert!(server.interrupt().success());

    let spec = hound::WavReader::open(&wav).unwrap().spec();
    assert_eq!(spec.sample_rate, 48_000);
    let recording = read_recording(&wav);
    let frames = recording.samples.len() / CHANNELS as usize;
    let expected_frames = (seconds * 48_000.0) as usize;
    // The whole timeline arrives, followed by at most 200 ms of silence
    // before stream/end.
    assert!(
        frames >= expected_frames - 1,
        "{frames} frames, expected {expected_frames}"
    );
    assert!(
        frames < expected_frames + 9_600,
        "{frames} frames, expected {expected_frames}"
    );

    // The test signal's first channel is a 440 Hz sine: 880 sign changes
    // per second at any rate, if the resampler kept the pitch.
    let audible = &recording.samples[..expected_frames * CHANNELS as usize];
    let crossings = zero_crossings(audible, CHANNELS as usize, 0);
    let expected_crossings = (880.0 * seconds) as usize;
    assert!(
        crossings.abs_diff(expected_crossings) <= 4,
        "{crossings} sign changes, expected about {expected_crossings}"
    );
}
