//! `resonate play --dialect resonate` against an aioresonate 0.13.2 server
//! from the peers root (see `tests/peers/README.md`). The server script
//! listens on 127.0.0.1 only and starts no mDNS.

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
    command.args(["aioresonate_server.py", wav.to_str().unwrap(), "--timeout", "30", "--grace", "10"]);
    let mut server = spawn(command);
    let listening = server.wait_event("listening", Duration::from_secs(30));
    let url = listening["url"].as_str().expect("listening event has a url").to_string();
    assert!(url.ends_with("/resonate"), "unexpected url {url}");

    let recording_path = dir.path().join("played.wav");
    let output = format!("wav:{}", recording_path.display());
    let mut player = resonate(&[
        "play", "--dialect", "resonate", "--server", &url, "--output", &output, "--codec", "pcm", "--duration", "6", "--no-drift-correction",
    ]);
    server.wait_event("client", Duration::from_secs(15));
    let finished = server.wait_event("finished", Duration::from_secs(30));
    assert_eq!(finished["reason"], "end_of_file");
    let status = player.wait(Duration::from_secs(20));
    assert!(status.success(), "play exited with {status}");
    let status = server.wait(Duration::from_secs(20));
    assert!(status.success(), "the aioresonate server exited with {status}");

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
    assert!(recording.samples.len() >= expected.len(), "the recording ends before the source");
    assert_eq!(&recording.samples[..expected.len()], expected, "recorded PCM differs from the source");
    let missed_frames = offset / channels;
    assert!(
        missed_frames < (RATE as usize) / 2,
        "the recording starts {missed_frames} frames into the source"
    );
}
