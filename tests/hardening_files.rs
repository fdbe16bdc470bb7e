//! Bad audio files: what the decoder makes of each kind, how `serve`
//! skips a bad track in a queue and goes on with the next, and how a bad
//! file given alone stops `serve` at start-up. Every bad file is made
//! inside the test, in a temporary directory.

#[path = "support/logs.rs"]
mod logs;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use logs::LogCapture;
use resonate::audio::convert::{f32_to_int, int_to_f32, map_channels};
use resonate::audio::flac::FlacEncoder;
use resonate::audio::source::{SourceDecoder, SourceError};
use resonate::protocol::{BinaryFrame, BinaryKind, RepeatMode};
use resonate::server::{QueueEntry, ServerConfig, SourcePlan};
use support::{write_test_wav, RawClient, TestServer, PATIENCE};
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Decodes every frame of `path`, failing the test on an error.
fn decode_all(path: &Path) -> (SourceDecoder, Vec<f32>) {
    let mut source =
        SourceDecoder::open(path).unwrap_or_else(|err| panic!("open {}: {err}", path.display()));
    let mut samples = Vec::new();
    while source
        .read(&mut samples, 4096)
        .unwrap_or_else(|err| panic!("decode {}: {err}", path.display()))
        > 0
    {}
    (source, samples)
}

/// Writes `bytes[..len]` of `source` to `target`.
fn write_cut(source: &Path, target: &Path, len: usize) {
    let bytes = std::fs::read(source).unwrap();
    std::fs::write(target, &bytes[..len]).unwrap();
}

/// Writes `source` to `target` with `count` bytes from the middle on
/// XORed with 0x5A.
fn write_damaged(source: &Path, target: &Path, count: usize) {
    let mut bytes = std::fs::read(source).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + count] {
        *byte ^= 0x5A;
    }
    std::fs::write(target, bytes).unwrap();
}

/// Writes a FLAC file with the project's encoder: the codec header, then
/// one encoded chunk per 4096 frames of `samples`.
fn write_flac(path: &Path, rate: u32, channels: u16, samples: &[f32]) {
    let mut encoder = FlacEncoder::new(rate, channels, 16, 4096).unwrap();
    let mut bytes = encoder.header();
    for chunk in samples.chunks(4096 * usize::from(channels)) {
        bytes.extend(encoder.encode(chunk).unwrap());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Returns `frames` frames of a different ramp per channel, as 16-bit
/// values converted to `f32`, so channel order shows.
fn ramps(frames: usize, channels: u16) -> Vec<f32> {
    let mut samples = Vec::with_capacity(frames * usize::from(channels));
    for frame in 0..frames {
        for channel in 0..channels {
            let value = ((frame * 7 + usize::from(channel) * 1000) % 20_000) as i32 - 10_000;
            samples.push(int_to_f32(value, 16));
        }
    }
    samples
}

fn write_wav_samples(path: &Path, rate: u32, channels: u16, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for &sample in samples {
        writer.write_sample(f32_to_int(sample, 16) as i16).unwrap();
    }
    writer.finalize().unwrap();
}

#[test]
fn truncated_flac_plays_what_remains() {
    let dir = tempfile::tempdir().unwrap();
    let full = fixture("sine440_mono_44100_16bit.flac");
    let (_, whole) = decode_all(&full);
    let cut = dir.path().join("cut.flac");
    let len = std::fs::metadata(&full).unwrap().len() as usize;
    write_cut(&full, &cut, len * 6 / 10);

    let (source, samples) = decode_all(&cut);
    assert!(!samples.is_empty(), "nothing decoded");
    assert!(
        samples.len() < whole.len(),
        "decoded {} frames",
        samples.len()
    );
    assert_eq!(
        samples[..],
        whole[..samples.len()],
        "decoded frames are the file's"
    );
    assert_eq!(source.info().duration_frames, Some(22050));
}

#[test]
fn flac_cut_inside_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("header.flac");
    // "fLaC", the STREAMINFO block header and 16 of its 34 bytes.
    write_cut(&fixture("sine440_mono_44100_16bit.flac"), &cut, 24);

    let err = SourceDecoder::open(&cut)
        .err()
        .expect("a FLAC cut inside its header opened without an error");
    assert!(matches!(err, SourceError::Corrupt { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("header.flac"), "{message}");
    assert!(message.contains("ends inside its header"), "{message}");
    assert!(message.contains("re-encode or replace"), "{message}");
}

#[test]
fn wrong_extension_is_probed_by_content() {
    let dir = tempfile::tempdir().unwrap();
    for (name, disguise) in [
        ("sine440_mono_44100_16bit.flac", "flac-named.mp3"),
        ("sine440_mono_44100.mp3", "mp3-named.wav"),
        ("sine440_mono_44100.ogg", "ogg-named.flac"),
    ] {
        let (_, expected) = decode_all(&fixture(name));
        let disguised = dir.path().join(disguise);
        std::fs::copy(fixture(name), &disguised).unwrap();
        let (_, samples) = decode_all(&disguised);
        assert_eq!(samples.len(), expected.len(), "{disguise} length");
        assert!(samples == expected, "{disguise} samples differ from {name}");
    }

    let text = dir.path().join("notes.wav");
    std::fs::write(&text, "These are meeting notes.\n".repeat(40)).unwrap();
    let err = SourceDecoder::open(&text)
        .err()
        .expect("a text file opened as audio");
    assert!(matches!(err, SourceError::NotAudio { .. }), "{err}");
}

/// Returns the offset of each Ogg page in `bytes`.
fn ogg_pages(bytes: &[u8]) -> Vec<usize> {
    bytes
        .windows(4)
        .enumerate()
        .filter(|(_, window)| *window == b"OggS")
        .map(|(offset, _)| offset)
        .collect()
}

#[test]
fn ogg_with_damaged_pages_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture("sine440_660_stereo_48000.ogg");
    let bytes = std::fs::read(&source).unwrap();
    // The fixture has three pages: the identification header, the comment
    // and setup headers, and all of the audio.
    let pages = ogg_pages(&bytes);
    assert_eq!(pages.len(), 3, "pages at {pages:?}");

    for (name, page) in [("setup.ogg", 1), ("audio.ogg", 2)] {
        let mut damaged = bytes.clone();
        let at = pages[page] + 100;
        for byte in &mut damaged[at..at + 50] {
            *byte ^= 0x5A;
        }
        let path = dir.path().join(name);
        std::fs::write(&path, damaged).unwrap();

        // symphonia drops an Ogg page that fails its CRC and reads on from
        // the next page, so with its only audio page gone nothing decodes.
        let err = SourceDecoder::open(&path)
            .err()
            .expect("an Ogg file without an intact audio page opened");
        assert!(matches!(err, SourceError::Corrupt { .. }), "{name}: {err}");
        let message = err.to_string();
        assert!(message.contains(name), "{message}");
        assert!(message.contains("crc mismatch"), "{message}");
    }
}

#[test]
fn flac_from_project_encoder_with_damage_skips_frames() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.flac");
    let samples = ramps(48_000, 2);
    write_flac(&clean, 48_000, 2, &samples);
    let (_, decoded) = decode_all(&clean);
    assert!(decoded == samples, "the clean file decodes to its samples");

    let damaged = dir.path().join("damaged.flac");
    write_damaged(&clean, &damaged, 64);
    let (source, decoded) = decode_all(&damaged);
    let frames = decoded.len() / 2;
    assert!(
        source.skipped_packets() >= 1,
        "skipped {}",
        source.skipped_packets()
    );
    assert!(frames >= 48_000 - 2 * 4096, "decoded {frames} frames");
    assert!(frames < 48_000, "decoded {frames} frames");
}

#[test]
fn channel_layouts_decode_with_every_channel() {
    let dir = tempfile::tempdir().unwrap();
    for channels in [1u16, 3, 6, 8, 10] {
        let samples = ramps(3000, channels);
        let wav = dir.path().join(format!("{channels}ch.wav"));
        write_wav_samples(&wav, 48_000, channels, &samples);
        let (source, decoded) = decode_all(&wav);
        assert_eq!(source.info().channels, channels, "{channels}-channel WAV");
        assert!(decoded == samples, "{channels}-channel WAV samples");

        // FLAC carries 1 to 8 channels.
        if channels <= 8 {
            let flac = dir.path().join(format!("{channels}ch.flac"));
            write_flac(&flac, 48_000, channels, &samples);
            let (source, decoded) = decode_all(&flac);
            assert_eq!(source.info().channels, channels, "{channels}-channel FLAC");
            assert!(decoded == samples, "{channels}-channel FLAC samples");
        }
    }
}

/// Starts a server on `entries`, played once in order.
async fn queue_server(entries: Vec<PathBuf>) -> TestServer {
    repeating_server(entries, RepeatMode::Off).await
}

/// Starts a server on `entries` in order, with `repeat`.
async fn repeating_server(entries: Vec<PathBuf>, repeat: RepeatMode) -> TestServer {
    let plan = SourcePlan {
        entries: entries.into_iter().map(QueueEntry::File).collect(),
        repeat,
        shuffle: false,
    };
    let mut config = ServerConfig::new(plan);
    config.server_id = "test-server".into();
    config.start_delay = Duration::from_millis(100);
    TestServer::start(config).await
}

/// Joins `server` as a player of 16-bit PCM at `rate` and `channels`, and
/// returns the 16-bit samples of the first `count` it receives.
async fn receive_samples(server: &TestServer, rate: u32, channels: u16, count: usize) -> Vec<i16> {
    let mut player = RawClient::connect(&server.url()).await;
    player
        .hello("listener", &["player@v1"], Some((rate, channels, 16)))
        .await;
    let mut samples = Vec::with_capacity(count);
    let receive = async {
        while samples.len() < count {
            let Some(frame) = player.next_frame().await else {
                panic!("the connection ended after {} samples", samples.len());
            };
            let WsMessage::Binary(bytes) = frame else {
                continue;
            };
            let frame = BinaryFrame::parse(&bytes).expect("a binary frame");
            if frame.kind != BinaryKind::Audio {
                continue;
            }
            samples.extend(
                frame
                    .payload()
                    .chunks_exact(2)
                    .map(|pair| i16::from_le_bytes([pair[0], pair[1]])),
            );
        }
    };
    tokio::time::timeout(PATIENCE * 3, receive)
        .await
        .unwrap_or_else(|_| panic!("received {} of {count} samples", samples.len()));
    samples
}

fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples.iter().map(|&s| f32_to_int(s, 16) as i16).collect()
}

#[tokio::test]
async fn bad_tracks_are_skipped_and_the_next_streams() {
    let (logs, _guard) = LogCapture::start();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);

    let first = ramps(9600, 2);
    write_wav_samples(&path("first.wav"), 48_000, 2, &first);
    let second: Vec<f32> = ramps(14_400, 2).iter().map(|s| -s).collect();
    write_wav_samples(&path("second.wav"), 48_000, 2, &second);
    std::fs::write(path("empty.wav"), b"").unwrap();
    std::fs::write(path("notes.wav"), "meeting notes\n".repeat(40)).unwrap();
    write_cut(
        &fixture("sine440_mono_44100_16bit.flac"),
        &path("header.flac"),
        24,
    );
    let mut broken = std::fs::read(fixture("sine440_mono_44100_16bit.flac")).unwrap();
    let len = broken.len();
    for byte in &mut broken[len / 8..] {
        *byte ^= 0x5A;
    }
    std::fs::write(path("broken.flac"), broken).unwrap();

    let bad = ["empty.wav", "notes.wav", "header.flac", "broken.flac"];
    let server = queue_server(vec![
        path("empty.wav"),
        path("first.wav"),
        path("notes.wav"),
        path("header.flac"),
        path("broken.flac"),
        path("second.wav"),
    ])
    .await;

    let expected: Vec<i16> = to_i16(&first).into_iter().chain(to_i16(&second)).collect();
    let received = receive_samples(&server, 48_000, 2, expected.len()).await;
    assert_eq!(received.len(), expected.len());
    assert!(
        received == expected,
        "the player did not get the first track, then the second"
    );

    for name in bad {
        let lines = logs.matching(&["WARN", "skipping", name]);
        assert_eq!(lines.len(), 1, "warnings about {name}: {lines:#?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn repeated_bad_track_warns_once() {
    let (logs, _guard) = LogCapture::start();
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.wav");
    std::fs::write(&notes, "meeting notes\n".repeat(40)).unwrap();
    let good = dir.path().join("good.wav");
    let samples = ramps(4800, 2);
    write_wav_samples(&good, 48_000, 2, &samples);

    let server = repeating_server(vec![notes, good], RepeatMode::All).await;
    let once = to_i16(&samples);
    let received = receive_samples(&server, 48_000, 2, once.len() * 3).await;
    for (round, part) in received.chunks(once.len()).enumerate() {
        assert!(part == once, "round {round} is not the good track");
    }
    let warnings = logs.matching(&["WARN", "notes.wav"]);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let again = logs.matching(&["DEBUG", "notes.wav", "failed to open before"]);
    assert!(again.len() >= 2, "{:#?}", logs.lines());
    server.stop().await;
}

#[tokio::test]
async fn damaged_track_plays_its_decodable_part() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join("damaged.flac");
    write_damaged(&fixture("sine440_mono_44100_16bit.flac"), &damaged, 200);
    let (source, decodable) = decode_all(&damaged);
    assert!(source.skipped_packets() >= 1, "the damage hides no packet");
    let after = dir.path().join("after.wav");
    let next = ramps(8820, 1);
    write_wav_samples(&after, 44_100, 1, &next);

    // Logs from here on are the server's alone.
    let (logs, _guard) = LogCapture::start();
    let server = queue_server(vec![damaged.clone(), after]).await;
    let expected: Vec<i16> = to_i16(&decodable)
        .into_iter()
        .chain(to_i16(&next))
        .collect();
    let received = receive_samples(&server, 44_100, 1, expected.len()).await;
    assert!(
        received == expected,
        "the player did not get the decodable part, then the next track"
    );
    let lines = logs.matching(&["WARN", "damaged.flac"]);
    assert!(!lines.is_empty(), "no warning names the damaged file");
    let shorter = logs.matching(&["WARN", "damaged.flac", "damaged packets were skipped"]);
    assert_eq!(shorter.len(), 1, "{lines:#?}");
    let truncated = logs.matching(&["damaged.flac", "may be truncated"]);
    assert!(truncated.is_empty(), "{truncated:#?}");
    server.stop().await;
}

#[tokio::test]
async fn surround_file_is_downmixed_for_stereo_player() {
    let dir = tempfile::tempdir().unwrap();
    let surround = dir.path().join("surround.wav");
    let samples = ramps(4800, 6);
    write_wav_samples(&surround, 48_000, 6, &samples);

    let server = queue_server(vec![surround]).await;
    let received = receive_samples(&server, 48_000, 2, 4800 * 2).await;
    let expected = to_i16(&map_channels(&samples, 6, 2));
    assert!(
        received == expected,
        "the player did not get the stereo downmix"
    );
    // The centre channel is in the mix: front left alone differs.
    let front_left: Vec<f32> = samples.chunks_exact(6).map(|frame| frame[0]).collect();
    assert_ne!(received[0], to_i16(&front_left)[0]);
    server.stop().await;
}

#[tokio::test]
async fn more_channels_than_pcm_carries_still_play() {
    let dir = tempfile::tempdir().unwrap();
    let wide = dir.path().join("ten.wav");
    let samples = ramps(4800, 10);
    write_wav_samples(&wide, 48_000, 10, &samples);

    let server = queue_server(vec![wide]).await;
    let received = receive_samples(&server, 48_000, 2, 4800 * 2).await;
    // Front left and right are the first two channels of a WAV file.
    let front: Vec<f32> = samples
        .chunks_exact(10)
        .flat_map(|frame| [frame[0], frame[1]])
        .collect();
    assert!(
        received == to_i16(&front),
        "the player did not get front left and right"
    );
    server.stop().await;
}

/// Runs `resonate serve ARGS` and returns its exit code and stderr.
fn serve_and_wait(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args(["serve", "--dialect", "sendspin-v1"])
        .args(args)
        .args(["--no-mdns", "--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run resonate");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn single_bad_file_stops_serve_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let notes = dir.path().join("notes.wav");
    std::fs::write(&notes, "meeting notes\n".repeat(40)).unwrap();
    let header = dir.path().join("header.flac");
    write_cut(&fixture("sine440_mono_44100_16bit.flac"), &header, 24);
    let wav_header = dir.path().join("header.wav");
    write_test_wav(&wav_header, 48_000, 2, 16, 0.1);
    let bytes = std::fs::read(&wav_header).unwrap();
    std::fs::write(&wav_header, &bytes[..30]).unwrap();

    for (path, cause, fix) in [
        (&empty, "empty (0 bytes)", "pass a file that contains audio"),
        (&notes, "not a recognized audio file", "convert the file"),
        (&header, "ends inside its header", "re-encode or replace"),
        (
            &wav_header,
            "ends inside its header",
            "re-encode or replace",
        ),
    ] {
        let name = path.to_str().unwrap();
        let (code, stderr) = serve_and_wait(&[name]);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stderr.contains(name), "{name} missing from {stderr}");
        assert!(stderr.contains(cause), "{cause:?} missing from {stderr}");
        assert!(stderr.contains(fix), "{fix:?} missing from {stderr}");
    }
}

#[test]
fn bad_first_file_is_skipped_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.wav");
    std::fs::write(&notes, "meeting notes\n".repeat(40)).unwrap();
    let good = dir.path().join("good.wav");
    write_test_wav(&good, 48_000, 2, 16, 0.5);

    let mut child = Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args([
            "serve",
            "--dialect",
            "sendspin-v1",
            notes.to_str().unwrap(),
            good.to_str().unwrap(),
        ])
        .args(["--no-mdns", "--listen", "127.0.0.1:0", "--json"])
        .env("RUST_LOG", "resonate=warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start resonate serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let first = lines
        .next()
        .expect("serve printed a line")
        .expect("read stdout");
    let listening: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(listening["event"], "listening", "{first}");

    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("notes.wav"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("skipping"), "{stderr}");
    assert!(
        warnings[0].contains("not a recognized audio file"),
        "{stderr}"
    );
}
