//! `resonate play` with the metadata role against aiosendspin 10.2.1's
//! server in cleartext transition mode (`tests/peers/aiosendspin_metadata_server.py`):
//! the track, progress, repeat and shuffle that play shows, as JSON events
//! and in its terminal UI, must be what the driver set.
//!
//! The Python peer runs in the peers root (`tests/peers/README.md`), which
//! needs root privileges to enter. Without the root the tests fail, unless
//! `RESONATE_SKIP_PEERS=1` is set, in which case they print why they
//! skipped and pass.

#[path = "support/peers.rs"]
mod peers;
#[path = "support/process.rs"]
mod process;
#[path = "support/tmux.rs"]
mod tmux;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use peers::{peer_command, require_peers_root};
use process::resonate;
use tmux::Tmux;

/// Time limits. The driver also exits by itself after `PEER_TIMEOUT_S`.
const PEER_TIMEOUT_S: u32 = 60;
const LINE_TIMEOUT: Duration = Duration::from_secs(30);
const EVENT_PATIENCE: Duration = Duration::from_secs(30);

/// The track the driver sets.
const TITLE: &str = "Blue in Green";
const ARTIST: &str = "Miles Davis";
const ALBUM_ARTIST: &str = "Miles Davis Sextet";
const ALBUM: &str = "Kind of Blue";
const YEAR: i64 = 1959;
const TRACK: i64 = 3;
const PROGRESS_MS: i64 = 42_000;
const DURATION_MS: i64 = 337_000;
const SPEED: i64 = 1000;

fn spawn_driver(root: &std::path::Path) -> anyhow::Result<(Child, Lines<BufReader<ChildStdout>>)> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let mut command = peer_command(root, "venv-sendspin", &dir, "python3");
    command
        .arg("aiosendspin_metadata_server.py")
        .args(["--port", "0", "--timeout", &PEER_TIMEOUT_S.to_string()])
        .args([
            "--title",
            TITLE,
            "--artist",
            ARTIST,
            "--album-artist",
            ALBUM_ARTIST,
            "--album",
            ALBUM,
        ])
        .args(["--year", &YEAR.to_string(), "--track", &TRACK.to_string()])
        .args([
            "--progress-ms",
            &PROGRESS_MS.to_string(),
            "--duration-ms",
            &DURATION_MS.to_string(),
        ])
        .args([
            "--speed",
            &SPEED.to_string(),
            "--repeat",
            "all",
            "--shuffle",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .context("starting the aiosendspin metadata server in the peers root failed (entering the root needs root privileges)")?;
    let stdout = child
        .stdout
        .take()
        .context("the driver's stdout is not piped")?;
    Ok((child, BufReader::new(stdout).lines()))
}

/// Reads the driver's JSON lines until one with `event` == `expected`.
async fn next_event(
    lines: &mut Lines<BufReader<ChildStdout>>,
    expected: &str,
) -> anyhow::Result<Value> {
    let mut read = Vec::new();
    loop {
        let line = tokio::time::timeout(LINE_TIMEOUT, lines.next_line())
            .await
            .with_context(|| {
                format!("timed out waiting for the driver's {expected:?} event; read {read:?}")
            })??;
        let Some(line) = line else {
            bail!("the driver's stdout closed before its {expected:?} event; read {read:?}");
        };
        let event: Value =
            serde_json::from_str(&line).with_context(|| format!("invalid JSON line: {line}"))?;
        if event["event"] == expected {
            return Ok(event);
        }
        read.push(event);
    }
}

/// Checks a `metadata` event of play against what the driver set.
fn assert_track(shown: &Value, set: &Value) {
    assert_eq!(shown["title"], TITLE, "{shown}");
    assert_eq!(shown["artist"], ARTIST, "{shown}");
    assert_eq!(shown["album_artist"], ALBUM_ARTIST, "{shown}");
    assert_eq!(shown["album"], ALBUM, "{shown}");
    assert_eq!(shown["year"], YEAR, "{shown}");
    assert_eq!(shown["track"], TRACK, "{shown}");
    assert_eq!(shown["repeat"], "all", "{shown}");
    assert_eq!(shown["shuffle"], true, "{shown}");

    let progress = &shown["progress"];
    assert_eq!(progress["track_duration"], DURATION_MS, "{shown}");
    assert_eq!(progress["playback_speed"], SPEED, "{shown}");
    // The server may restate the progress at a later timestamp, so the
    // position it sends must be the set one moved on at the set speed.
    let set_at = set["timestamp_us"]
        .as_i64()
        .expect("metadata_set has timestamp_us");
    let shown_at = shown["progress_timestamp_us"]
        .as_i64()
        .expect("metadata has progress_timestamp_us");
    assert!(
        shown_at >= set_at,
        "progress stamped {shown_at} us, before the driver set it at {set_at} us"
    );
    let expected = PROGRESS_MS + (shown_at - set_at) * SPEED / 1_000_000;
    let track_progress = progress["track_progress"]
        .as_i64()
        .expect("track_progress is a number");
    assert!(
        (track_progress - expected).abs() <= 1,
        "track_progress {track_progress} ms at {shown_at} us; the driver set {PROGRESS_MS} ms at {set_at} us"
    );
}

async fn play_shows_driver_metadata(roles: &str) -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    let (mut driver, mut lines) = spawn_driver(&root)?;
    let listening = next_event(&mut lines, "listening").await?;
    let url = listening["url"]
        .as_str()
        .context("listening has no url")?
        .to_string();

    let mut play = resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        &url,
        "--roles",
        roles,
        "--json",
        "--duration",
        "60",
    ]);
    let connected = play.wait_event("connected", EVENT_PATIENCE);
    let active = connected["active_roles"]
        .as_array()
        .context("connected has no active_roles")?;
    assert!(
        active.iter().any(|r| r == "metadata@v1"),
        "metadata not activated: {active:?}"
    );
    assert!(
        !active.iter().any(|r| r == "player@v1"),
        "player activated without being asked for: {active:?}"
    );

    let set = next_event(&mut lines, "metadata_set").await?;
    // The server may send the track in several deltas, and the merged state
    // must reach what the driver set.
    let mut shown = play.wait_event("metadata", EVENT_PATIENCE);
    while shown["title"] != TITLE
        || shown["shuffle"] != true
        || shown["repeat"] != "all"
        || shown["progress"].is_null()
    {
        shown = play.wait_event("metadata", EVENT_PATIENCE);
    }
    assert_track(&shown, &set);

    assert!(play.interrupt().success());
    driver.kill().await.ok();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_client_shows_aiosendspin_track() -> anyhow::Result<()> {
    play_shows_driver_metadata("metadata").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_metadata_client_shows_aiosendspin_track() -> anyhow::Result<()> {
    play_shows_driver_metadata("controller,metadata").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_ui_shows_aiosendspin_track() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    let (mut driver, mut lines) = spawn_driver(&root)?;
    let listening = next_event(&mut lines, "listening").await?;
    let url = listening["url"]
        .as_str()
        .context("listening has no url")?
        .to_string();

    let bin = env!("CARGO_BIN_EXE_resonate");
    let tmux = Tmux::start(
        "interop-metadata",
        &format!("{bin} play --dialect sendspin-v1 --server {url} --roles metadata"),
    );
    next_event(&mut lines, "metadata_set").await?;
    let patience = EVENT_PATIENCE;
    tmux.wait_for_line(&[TITLE], patience);
    tmux.wait_for_line(&[ARTIST], patience);
    tmux.wait_for_line(&[&format!("{ALBUM} ({YEAR})  track {TRACK}")], patience);
    tmux.wait_for_line(&["repeat all  shuffle on"], patience);
    // The bar ends with the position and the track length, 5:37.
    tmux.wait_for_line(&["━", " / 5:37"], patience);
    tmux.send_keys("q");
    assert!(
        tmux.wait_exit(Duration::from_secs(15)),
        "play did not quit on q:\n{}",
        tmux.screen()
    );
    driver.kill().await.ok();
    Ok(())
}
