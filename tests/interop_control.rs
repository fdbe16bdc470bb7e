//! `resonate serve` against aiosendspin 6.1.1's client in the controller,
//! metadata and artwork roles (`tests/peers/aiosendspin_controller.py`):
//! the reference client gets the controller state, metadata and covers the
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
    let dir = tempfile::Builder::new().prefix("resonate-interop-control").tempdir_in("/tmp")?;
    let album = dir.path().join("album");
    std::fs::create_dir(&album)?;
    let covered = album.join("covered.wav");
    write_test_wav(&covered, 48_000, 2, 16, 30.0);
    image::RgbImage::from_fn(600, 300, |x, _| image::Rgb([(x % 256) as u8, 90, 10])).save(album.join("cover.png"))?;
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
    player.hello("player", &["player@v1"], Some((48_000, 2, 16))).await;
    player.expect_type("server/hello").await;
    player
        .send_json(serde_json::json!({"type": "client/state", "payload": {"state": "synchronized", "player": {"volume": 80, "muted": false}}}))
        .await;

    let peers_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let mut command = peer_command(&root, "venv-sendspin-v1", &peers_dir, "python3");
    command
        .arg("aiosendspin_controller.py")
        .args(["--url", &server.url()])
        .args(["--command", "repeat_all", "--command", "next", "--command", "volume:40"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut peer = command.spawn().context("starting the aiosendspin controller in the peers root failed")?;
    let stdout = peer.stdout.take().context("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut events: Vec<Value> = Vec::new();
    tokio::time::timeout(PEER_PATIENCE, async {
        while let Some(line) = lines.next_line().await? {
            events.push(serde_json::from_str(&line).with_context(|| format!("invalid JSON line {line}"))?);
        }
        anyhow::Ok(())
    })
    .await
    .context("the aiosendspin controller did not finish")??;
    let status = peer.wait().await?;
    assert!(status.success(), "the peer exited with {status}; events {events:?}");
    let of = |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == kind).collect() };

    // The first metadata is complete; later ones carry only changes.
    let metadata = of("metadata");
    let first = &metadata[0]["metadata"];
    assert_eq!(first["title"], "covered", "{first}");
    assert_eq!(first["repeat"], "off");
    assert_eq!(first["shuffle"], false);
    assert_eq!(first["progress"]["playback_speed"], 1000);
    assert_eq!(first["progress"]["track_duration"], 30_000);
    assert!(metadata.iter().any(|m| m["metadata"]["repeat"] == "all"), "repeat_all: {metadata:?}");
    assert!(metadata.iter().any(|m| m["metadata"]["title"] == "bare"), "next: {metadata:?}");

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
    let on = |channel: u64| -> Vec<&Value> { artwork.iter().copied().filter(|a| a["channel"] == channel).collect() };
    assert!(on(0)[0]["magic"].as_str().unwrap().starts_with("ffd8ff"), "{artwork:?}");
    assert_eq!((on(1)[0]["width"].as_u64(), on(1)[0]["height"].as_u64()), (Some(64), Some(32)), "{artwork:?}");
    assert_eq!(on(0).last().unwrap()["bytes"], 0, "{artwork:?}");
    assert_eq!(on(1).last().unwrap()["bytes"], 0, "{artwork:?}");
    assert_eq!(of("done")[0]["ended_by"], "commands");
    server.stop().await;
    Ok(())
}
