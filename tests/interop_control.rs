//! `resonate serve` against aiosendspin's client in the controller,
//! metadata and artwork roles: 6.1.1 over cleartext Sendspin v1
//! (`tests/peers/aiosendspin_controller.py`) and 10.2.1 over the encrypted
//! Sendspin 1.0 (`tests/peers/aiosendspin_encrypted_controller.py`). The
//! reference client gets the controller state, metadata and covers the
//! spec describes, and its commands move the server.
//!
//! The peer runs in the peers root (`tests/peers/README.md`); without it
//! the test prints why it skipped.

mod support;

#[path = "support/peers.rs"]
mod peers;

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use resonate::protocol::RepeatMode;
use resonate::server::encrypted::ServerKeys;
use resonate::server::{QueueEntry, ServerConfig, SourcePlan};
use serde_json::Value;
use support::{write_test_wav, RawClient, TestServer};
use tokio::io::{AsyncBufReadExt, BufReader};

use peers::{peer_command, require_peers_root};

/// Maximum wait for the peer to finish.
const PEER_PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiosendspin_controller_metadata_and_artwork_client() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    let dir = tempfile::Builder::new()
        .prefix("resonate-interop-control")
        .tempdir_in("/tmp")?;
    let album = dir.path().join("album");
    std::fs::create_dir(&album)?;
    let covered = album.join("covered.wav");
    write_test_wav(&covered, 48_000, 2, 16, 30.0);
    image::RgbImage::from_fn(600, 300, |x, _| image::Rgb([(x % 256) as u8, 90, 10]))
        .save(album.join("cover.png"))?;
    let bare = dir.path().join("bare.wav");
    write_test_wav(&bare, 48_000, 2, 16, 30.0);
    let mut config = ServerConfig::new(SourcePlan {
        entries: vec![QueueEntry::File(covered), QueueEntry::File(bare)],
        repeat: RepeatMode::Off,
        shuffle: false,
    });
    config.server_id = "interop-control".into();
    let server = TestServer::start(config).await;

    // A player at volume 80, so the group plays and has a volume to set.
    let mut player = RawClient::connect(&server.url()).await;
    player
        .hello("player", &["player@v1"], Some((48_000, 2, 16)))
        .await;
    player.expect_type("server/hello").await;
    player
        .send_json(serde_json::json!({"type": "client/state", "payload": {"state": "synchronized", "player": {"volume": 80, "muted": false}}}))
        .await;

    let peers_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let mut command = peer_command(&root, "venv-sendspin-v1", &peers_dir, "python3");
    command
        .arg("aiosendspin_controller.py")
        .args(["--url", &server.url()])
        .args([
            "--command",
            "repeat_all",
            "--command",
            "next",
            "--command",
            "volume:40",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut peer = command
        .spawn()
        .context("starting the aiosendspin controller in the peers root failed")?;
    let stdout = peer.stdout.take().context("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut events: Vec<Value> = Vec::new();
    tokio::time::timeout(PEER_PATIENCE, async {
        while let Some(line) = lines.next_line().await? {
            events.push(
                serde_json::from_str(&line).with_context(|| format!("invalid JSON line {line}"))?,
            );
        }
        anyhow::Ok(())
    })
    .await
    .context("the aiosendspin controller did not finish")??;
    let status = peer.wait().await?;
    assert!(
        status.success(),
        "the peer exited with {status}; events {events:?}"
    );
    let of = |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == kind).collect() };

    // The first metadata is complete; later ones carry only changes.
    let metadata = of("metadata");
    let first = &metadata[0]["metadata"];
    assert_eq!(first["title"], "covered", "{first}");
    assert_eq!(first["repeat"], "off");
    assert_eq!(first["shuffle"], false);
    assert_eq!(first["progress"]["playback_speed"], 1000);
    assert_eq!(first["progress"]["track_duration"], 30_000);
    assert!(
        metadata.iter().any(|m| m["metadata"]["repeat"] == "all"),
        "repeat_all: {metadata:?}"
    );
    assert!(
        metadata.iter().any(|m| m["metadata"]["title"] == "bare"),
        "next: {metadata:?}"
    );

    // Group volume: the mean of the one player, then what was set.
    let controller = of("controller");
    assert_eq!(controller[0]["controller"]["volume"], 80, "{controller:?}");
    let last = &controller.last().unwrap()["controller"];
    assert_eq!(last["volume"], 40);
    let supported = last["supported_commands"].as_array().unwrap();
    assert_eq!(supported.len(), 13, "{supported:?}");

    // The cover (600x300) fits 120x120 as JPEG and 64x64 as PNG; the next
    // track has none and both channels are cleared.
    let artwork = of("artwork");
    let on = |channel: u64| -> Vec<&Value> {
        artwork
            .iter()
            .copied()
            .filter(|a| a["channel"] == channel)
            .collect()
    };
    assert!(
        on(0)[0]["magic"].as_str().unwrap().starts_with("ffd8ff"),
        "{artwork:?}"
    );
    assert_eq!(
        (on(1)[0]["width"].as_u64(), on(1)[0]["height"].as_u64()),
        (Some(64), Some(32)),
        "{artwork:?}"
    );
    assert_eq!(on(0).last().unwrap()["bytes"], 0, "{artwork:?}");
    assert_eq!(on(1).last().unwrap()["bytes"], 0, "{artwork:?}");
    assert_eq!(of("done")[0]["ended_by"], "commands");
    server.stop().await;
    Ok(())
}

/// Prepends an ID3v2.4 tag of UTF-8 text frames (`TIT2`, `TPE1` and so
/// on) to the file at `path`.
fn prepend_id3(path: &std::path::Path, frames: &[(&str, &str)]) -> anyhow::Result<()> {
    // ID3v2.4 sizes are "synchsafe": 7 bits per byte.
    let synchsafe = |size: usize| -> [u8; 4] {
        let size = u32::try_from(size).expect("test tags are small");
        [
            (size >> 21) as u8 & 0x7f,
            (size >> 14) as u8 & 0x7f,
            (size >> 7) as u8 & 0x7f,
            size as u8 & 0x7f,
        ]
    };
    let mut body = Vec::new();
    for (id, text) in frames {
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(&synchsafe(text.len() + 1));
        body.extend_from_slice(&[0, 0]);
        // Text encoding 3 is UTF-8.
        body.push(3);
        body.extend_from_slice(text.as_bytes());
    }
    let mut tagged = b"ID3\x04\x00\x00".to_vec();
    tagged.extend_from_slice(&synchsafe(body.len()));
    tagged.extend_from_slice(&body);
    tagged.extend_from_slice(&std::fs::read(path)?);
    std::fs::write(path, tagged)?;
    Ok(())
}

/// Runs `tests/peers/aiosendspin_encrypted_controller.py` against `url` with
/// `commands` and returns its event lines once it exits successfully.
async fn run_encrypted_controller(
    root: &std::path::Path,
    url: &str,
    commands: &[&str],
) -> anyhow::Result<Vec<Value>> {
    let peers_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let mut command = peer_command(root, "venv-sendspin", &peers_dir, "python3");
    command
        .arg("aiosendspin_encrypted_controller.py")
        .args(["--url", url]);
    for text in commands {
        command.args(["--command", text]);
    }
    // The second track's metadata and artwork clears may be scheduled a
    // moment after the last command's state.
    command
        .args(["--linger", "4"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut peer = command
        .spawn()
        .context("starting the aiosendspin 10.2.1 controller in the peers root failed")?;
    let stdout = peer.stdout.take().context("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut events: Vec<Value> = Vec::new();
    tokio::time::timeout(PEER_PATIENCE, async {
        while let Some(line) = lines.next_line().await? {
            events.push(
                serde_json::from_str(&line).with_context(|| format!("invalid JSON line {line}"))?,
            );
        }
        anyhow::Ok(())
    })
    .await
    .context("the aiosendspin 10.2.1 controller did not finish")??;
    let status = peer.wait().await?;
    assert!(
        status.success(),
        "the peer exited with {status}; events {events:?}"
    );
    Ok(events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiosendspin_encrypted_controller_metadata_and_artwork_client() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    let dir = tempfile::Builder::new()
        .prefix("resonate-interop-control")
        .tempdir_in("/tmp")?;
    let album = dir.path().join("album");
    std::fs::create_dir(&album)?;
    let covered = album.join("covered.wav");
    write_test_wav(&covered, 48_000, 2, 16, 30.0);
    let covered_tags = [
        ("TIT2", "First Song"),
        ("TPE1", "First Artist"),
        ("TPE2", "Album Band"),
        ("TALB", "First Album"),
        ("TDRC", "2019-05-03"),
        ("TRCK", "3/12"),
    ];
    prepend_id3(&covered, &covered_tags)?;
    image::RgbImage::from_fn(600, 300, |x, _| image::Rgb([(x % 256) as u8, 90, 10]))
        .save(album.join("cover.png"))?;
    let bare = dir.path().join("bare.wav");
    write_test_wav(&bare, 48_000, 2, 16, 30.0);
    prepend_id3(&bare, &[("TIT2", "Second Song"), ("TPE1", "Second Artist")])?;
    let mut config = ServerConfig::new(SourcePlan {
        entries: vec![QueueEntry::File(covered), QueueEntry::File(bare)],
        repeat: RepeatMode::Off,
        shuffle: false,
    });
    // What `serve --dialect sendspin --allow-unpaired` sets, plus cleartext
    // v1 on the same path for the raw player below.
    config.dialect = resonate::dialect::Dialect::Sendspin;
    config.keys = Some(ServerKeys {
        accept_v1: true,
        allow_unpaired: true,
        ..ServerKeys::new(
            resonate::noise::Identity::generate(),
            dir.path().join("pairings-server.json"),
        )
    });
    let server = TestServer::start(config).await;

    // A player at volume 80, so the group plays and has a volume to set.
    let mut player = RawClient::connect(&server.url()).await;
    player
        .hello("player", &["player@v1"], Some((48_000, 2, 16)))
        .await;
    player.expect_type("server/hello").await;
    player
        .send_json(serde_json::json!({"type": "client/state", "payload": {"state": "synchronized", "player": {"volume": 80, "muted": false}}}))
        .await;
    // The player reads what it gets while the peer runs, so the server does
    // not drop it as a slow consumer.
    let reader = tokio::spawn(async move { while player.next_frame().await.is_some() {} });

    let events =
        run_encrypted_controller(&root, &server.url(), &["repeat_all", "volume:40", "next"])
            .await?;
    reader.abort();
    let of = |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == kind).collect() };
    assert_eq!(of("done")[0]["ended_by"], "commands", "{events:?}");

    // The first metadata is complete: every tag, and progress.
    let metadata = of("metadata");
    let first = &metadata
        .first()
        .with_context(|| format!("no metadata: {events:?}"))?["metadata"];
    assert_eq!(first["title"], "First Song", "{first}");
    assert_eq!(first["artist"], "First Artist", "{first}");
    assert_eq!(first["album_artist"], "Album Band", "{first}");
    assert_eq!(first["album"], "First Album", "{first}");
    assert_eq!(first["year"], 2019, "{first}");
    assert_eq!(first["track"], 3, "{first}");
    assert!(first["timestamp"].is_i64(), "{first}");
    assert_eq!(first["progress"]["playback_speed"], 1000, "{first}");
    assert_eq!(first["progress"]["track_duration"], 30_000, "{first}");

    // next: the second track's metadata, complete in itself, so the tags
    // of the first track are gone.
    let second = metadata
        .iter()
        .map(|m| &m["metadata"])
        .find(|m| m["title"] == "Second Song")
        .with_context(|| format!("next brought no metadata of the second track: {metadata:?}"))?;
    assert_eq!(second["artist"], "Second Artist", "{second}");
    assert_eq!(second["album"], Value::Null, "{second}");
    assert_eq!(second["year"], Value::Null, "{second}");
    assert_eq!(second["progress"]["track_duration"], 30_000, "{second}");

    // Controller: the group volume is the mean of the one player, then what
    // was set; repeat is in the controller object in 1.0.
    let controller = of("controller");
    let initial = &controller
        .first()
        .with_context(|| format!("no controller state: {events:?}"))?["controller"];
    assert_eq!(initial["volume"], 80, "{initial}");
    assert_eq!(initial["muted"], false, "{initial}");
    assert_eq!(initial["repeat"], "off", "{initial}");
    assert_eq!(initial["shuffle"], false, "{initial}");
    let supported = initial["supported_commands"]
        .as_array()
        .context("supported_commands is a list")?;
    for command in [
        "play",
        "pause",
        "stop",
        "next",
        "previous",
        "volume",
        "mute",
        "repeat_off",
        "repeat_one",
        "repeat_all",
        "shuffle",
        "unshuffle",
        "switch",
    ] {
        assert!(
            supported.iter().any(|c| c == command),
            "{command} missing from {supported:?}"
        );
    }
    assert!(
        controller
            .iter()
            .any(|c| c["controller"]["repeat"] == "all"),
        "repeat_all: {controller:?}"
    );
    assert_eq!(
        controller.last().unwrap()["controller"]["volume"],
        40,
        "{controller:?}"
    );
    assert_eq!(
        controller.last().unwrap()["controller"]["repeat"],
        "all",
        "{controller:?}"
    );

    // Artwork: the stream/start echoes both channels; the cover (600x300)
    // arrives at each channel's exact size in its format, and the second
    // track, without a cover, clears both channels.
    let starts = of("stream_start");
    let channels = &starts
        .first()
        .with_context(|| format!("no artwork stream/start: {events:?}"))?["artwork"]["channels"];
    assert_eq!(channels[0]["format"], "jpeg", "{channels}");
    assert_eq!(
        (
            channels[0]["width"].as_u64(),
            channels[0]["height"].as_u64()
        ),
        (Some(120), Some(120)),
        "{channels}"
    );
    assert_eq!(channels[1]["format"], "png", "{channels}");
    assert_eq!(
        (
            channels[1]["width"].as_u64(),
            channels[1]["height"].as_u64()
        ),
        (Some(64), Some(64)),
        "{channels}"
    );
    let artwork = of("artwork");
    let on = |channel: u64| -> Vec<&Value> {
        artwork
            .iter()
            .copied()
            .filter(|a| a["channel"] == channel)
            .collect()
    };
    let (jpeg, png) = (on(0), on(1));
    assert!(
        !jpeg.is_empty(),
        "no artwork on the JPEG channel: {artwork:?}"
    );
    assert!(
        !png.is_empty(),
        "no artwork on the PNG channel: {artwork:?}"
    );
    assert_eq!(jpeg[0]["format"], "jpeg", "{artwork:?}");
    assert_eq!(
        (jpeg[0]["width"].as_u64(), jpeg[0]["height"].as_u64()),
        (Some(120), Some(120)),
        "{artwork:?}"
    );
    assert_eq!(png[0]["format"], "png", "{artwork:?}");
    assert_eq!(
        (png[0]["width"].as_u64(), png[0]["height"].as_u64()),
        (Some(64), Some(64)),
        "{artwork:?}"
    );
    assert_eq!(
        jpeg.last().unwrap()["bytes"],
        0,
        "channel 0 not cleared: {artwork:?}"
    );
    assert_eq!(
        png.last().unwrap()["bytes"],
        0,
        "channel 1 not cleared: {artwork:?}"
    );
    server.stop().await;
    Ok(())
}
