//! `serve` as a controlled server, seen from raw clients: the queue moves
//! from track to track, every controller command changes the group and
//! tells each member once, metadata arrives as deltas, artwork is scaled
//! and cleared, and clients move between groups with `switch`, `--group`
//! and `external_source`.

mod support;

use std::path::{Path, PathBuf};

use resonate::protocol::RepeatMode;
use resonate::server::{GroupPlacement, QueueEntry, ServerConfig, SourcePlan};
use serde_json::{json, Value};
use support::{write_test_wav, RawClient, TestServer};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Writes WAV files of the given names and lengths into `dir`.
fn write_tracks(dir: &Path, tracks: &[(&str, f64)]) -> Vec<PathBuf> {
    tracks
        .iter()
        .map(|(name, seconds)| {
            let path = dir.join(format!("{name}.wav"));
            write_test_wav(&path, 48_000, 2, 16, *seconds);
            path
        })
        .collect()
}

fn config_for_queue(paths: Vec<PathBuf>, repeat: RepeatMode) -> ServerConfig {
    let mut config = ServerConfig::new(SourcePlan {
        entries: paths.into_iter().map(QueueEntry::File).collect(),
        repeat,
        shuffle: false,
    });
    config.server_id = "test-server".into();
    config
}

async fn join(server: &TestServer, client_id: &str, roles: &[&str], player: bool) -> RawClient {
    let mut client = RawClient::connect(&server.url()).await;
    client
        .hello(client_id, roles, player.then_some((48_000, 2, 16)))
        .await;
    client.expect_type("server/hello").await;
    client
}

async fn command(client: &mut RawClient, command: Value) {
    client
        .send_json(json!({"type": "client/command", "payload": {"controller": command}}))
        .await;
}

/// Reads text messages until `fence` matches one, and returns those
/// before it, without `server/time`.
async fn until(client: &mut RawClient, fence: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message = client.next_json().await.expect("connection stays open");
        if fence(&message) {
            return seen;
        }
        if message["type"] != "server/time" {
            seen.push(message);
        }
    }
}

fn types(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["type"].as_str().unwrap_or("?"))
        .collect()
}

/// The players, the controller and metadata client, and the fence that
/// marks the end of one command's messages.
struct Room {
    players: Vec<RawClient>,
    remote: RawClient,
    fence_volume: i64,
}

impl Room {
    /// Sends a volume command as a fence and returns what each client got
    /// before the fence's own messages: the players' volume command and the
    /// remote's controller state.
    async fn collect(&mut self) -> (Vec<Vec<Value>>, Vec<Value>) {
        self.fence_volume = if self.fence_volume == 30 { 70 } else { 30 };
        let volume = self.fence_volume;
        command(
            &mut self.remote,
            json!({"command": "volume", "volume": volume}),
        )
        .await;
        let mut players = Vec::new();
        for player in &mut self.players {
            players.push(
                until(player, |m| {
                    m["type"] == "server/command" && m["payload"]["player"]["volume"] == volume
                })
                .await,
            );
        }
        let remote = until(&mut self.remote, |m| {
            m["type"] == "server/state" && m["payload"]["controller"]["volume"] == volume
        })
        .await;
        (players, remote)
    }
}

#[tokio::test]
async fn controller_commands_notify_each_member_once() {
    let dir = tempfile::tempdir().unwrap();
    let tracks = write_tracks(dir.path(), &[("first", 30.0), ("second", 30.0)]);
    let server = TestServer::start(config_for_queue(tracks, RepeatMode::Off)).await;
    let players = vec![
        join(&server, "p1", &["player@v1"], true).await,
        join(&server, "p2", &["player@v1"], true).await,
    ];
    let remote = join(&server, "remote", &["controller@v1", "metadata@v1"], false).await;
    let mut room = Room {
        players,
        remote,
        fence_volume: 70,
    };
    let (_, remote) = room.collect().await;
    let state = remote
        .iter()
        .find(|m| m["payload"]["controller"].is_object())
        .expect("controller state on join");
    let supported: Vec<&str> = state["payload"]["controller"]["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for expected in [
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
            supported.contains(&expected),
            "{expected} missing from {supported:?}"
        );
    }
    let metadata = remote
        .iter()
        .find(|m| m["payload"]["metadata"].is_object())
        .expect("metadata on join");
    assert_eq!(metadata["payload"]["metadata"]["title"], "first");

    // Each case: the command, what each player gets, what the remote gets.
    let cases: Vec<(Value, Vec<&str>, Vec<&str>)> = vec![
        (
            json!({"command": "pause"}),
            vec!["stream/end", "group/update"],
            vec!["group/update", "server/state"],
        ),
        (json!({"command": "pause"}), vec![], vec![]),
        (
            json!({"command": "play"}),
            vec!["group/update", "stream/start"],
            vec!["group/update", "server/state"],
        ),
        (
            json!({"command": "next"}),
            vec!["stream/clear"],
            vec!["server/state"],
        ),
        (
            json!({"command": "previous"}),
            vec!["stream/clear"],
            vec!["server/state"],
        ),
        (
            json!({"command": "repeat_all"}),
            vec![],
            vec!["server/state"],
        ),
        (
            json!({"command": "repeat_one"}),
            vec![],
            vec!["server/state"],
        ),
        (
            json!({"command": "repeat_off"}),
            vec![],
            vec!["server/state"],
        ),
        (json!({"command": "shuffle"}), vec![], vec!["server/state"]),
        (
            json!({"command": "unshuffle"}),
            vec![],
            vec!["server/state"],
        ),
        (
            json!({"command": "mute", "mute": true}),
            vec!["server/command"],
            vec!["server/state"],
        ),
        (
            json!({"command": "volume", "volume": 50}),
            vec!["server/command"],
            vec!["server/state"],
        ),
        (
            json!({"command": "stop"}),
            vec!["stream/end", "group/update"],
            vec!["group/update", "server/state"],
        ),
        (json!({"command": "stop"}), vec![], vec![]),
        (
            json!({"command": "play"}),
            vec!["group/update", "stream/start"],
            vec!["group/update", "server/state"],
        ),
        (json!({"command": "no_such_command"}), vec![], vec![]),
    ];
    for (sent, for_players, for_remote) in cases {
        command(&mut room.remote, sent.clone()).await;
        let (players, remote) = room.collect().await;
        for got in &players {
            assert_eq!(types(got), for_players, "players after {sent}: {got:?}");
        }
        assert_eq!(
            types(&remote),
            for_remote,
            "remote after {sent}: {remote:?}"
        );
        let name = sent["command"].as_str().unwrap();
        let payload = remote
            .last()
            .map(|m| m["payload"].clone())
            .unwrap_or(Value::Null);
        match name {
            "pause" if !remote.is_empty() => {
                assert_eq!(remote[0]["payload"]["playback_state"], "stopped");
                assert_eq!(payload["metadata"]["progress"]["playback_speed"], 0);
            }
            "play" => {
                assert_eq!(remote[0]["payload"]["playback_state"], "playing");
                assert_eq!(payload["metadata"]["progress"]["playback_speed"], 1000);
            }
            "next" => assert_eq!(payload["metadata"]["title"], "second"),
            "previous" => assert_eq!(payload["metadata"]["title"], "first"),
            "repeat_all" => assert_eq!(payload["metadata"]["repeat"], "all"),
            "repeat_one" => assert_eq!(payload["metadata"]["repeat"], "one"),
            "repeat_off" => assert_eq!(payload["metadata"]["repeat"], "off"),
            "shuffle" => assert_eq!(payload["metadata"]["shuffle"], true),
            "unshuffle" => assert_eq!(payload["metadata"]["shuffle"], false),
            "mute" => {
                assert_eq!(payload["controller"]["muted"], true);
                assert_eq!(
                    players[0][0]["payload"]["player"],
                    json!({"command": "mute", "mute": true})
                );
            }
            "volume" => {
                assert_eq!(payload["controller"]["volume"], 50);
                assert_eq!(
                    players[0][0]["payload"]["player"],
                    json!({"command": "volume", "volume": 50})
                );
            }
            "stop" if !remote.is_empty() => {
                assert_eq!(remote[0]["payload"]["playback_state"], "stopped");
                let progress = &payload["metadata"]["progress"];
                assert_eq!(
                    (
                        progress["track_progress"].as_i64(),
                        progress["playback_speed"].as_i64()
                    ),
                    (Some(0), Some(0))
                );
            }
            _ => {}
        }
        // Metadata deltas carry the timestamp and only what changed.
        if let Some(metadata) = payload.get("metadata") {
            assert!(metadata["timestamp"].is_i64(), "{metadata}");
            let fields = metadata.as_object().unwrap().len();
            assert!(
                fields <= 3,
                "a delta of {fields} fields after {sent}: {metadata}"
            );
        }
    }
}

#[tokio::test]
async fn queue_plays_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let tracks = write_tracks(dir.path(), &[("one", 0.5), ("two", 0.5)]);
    let mut config = config_for_queue(tracks, RepeatMode::Off);
    config.start_delay = std::time::Duration::from_millis(200);
    let server = TestServer::start(config).await;
    let mut remote = join(&server, "remote", &["metadata@v1"], false).await;
    let _player = join(&server, "p1", &["player@v1"], true).await;
    let mut titles = Vec::new();
    let mut speeds = Vec::new();
    while titles.len() < 3 || speeds.last() != Some(&0) {
        let message = remote.expect_type("server/state").await;
        let metadata = &message["payload"]["metadata"];
        if let Some(title) = metadata["title"].as_str() {
            titles.push(title.to_string());
        }
        if let Some(speed) = metadata["progress"]["playback_speed"].as_i64() {
            speeds.push(speed);
        }
    }
    // The queue starts at one, moves to two, and after the end goes back
    // to one, stopped.
    assert_eq!(titles, vec!["one", "two", "one"]);
    assert_eq!(speeds.last(), Some(&0));
}

/// Reads frames until an artwork image for `channel` arrives.
async fn artwork_on(client: &mut RawClient, channel: u8) -> Vec<u8> {
    loop {
        match client.next_frame().await.expect("connection stays open") {
            WsMessage::Binary(bytes) if bytes[0] == 8 + channel => return bytes[9..].to_vec(),
            _ => continue,
        }
    }
}

fn write_cover(path: &Path, width: u32, height: u32) {
    let image =
        image::RgbImage::from_fn(width, height, |x, _| image::Rgb([(x % 256) as u8, 40, 200]));
    image.save(path).unwrap();
}

#[tokio::test]
async fn artwork_scaled_and_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let album = dir.path().join("album");
    std::fs::create_dir(&album).unwrap();
    let mut tracks = write_tracks(&album, &[("covered", 30.0)]);
    write_cover(&album.join("cover.png"), 600, 300);
    tracks.extend(write_tracks(dir.path(), &[("bare", 30.0)]));
    let server = TestServer::start(config_for_queue(tracks, RepeatMode::Off)).await;
    let _player = join(&server, "p1", &["player@v1"], true).await;

    let mut art = RawClient::connect(&server.url()).await;
    art.send_json(json!({"type": "client/hello", "payload": {
        "client_id": "frame", "name": "frame", "version": 1,
        "supported_roles": ["artwork@v1", "controller@v1", "visualizer@v1"],
        "artwork@v1_support": {"channels": [
            {"source": "album", "format": "jpeg", "media_width": 300, "media_height": 300},
            {"source": "album", "format": "bmp", "media_width": 100, "media_height": 40},
            {"source": "artist", "format": "png", "media_width": 64, "media_height": 64},
        ]},
        "visualizer@v1_support": {"buffer_capacity": 1000},
    }}))
    .await;
    let hello = art.expect_type("server/hello").await;
    assert_eq!(
        hello["payload"]["active_roles"],
        json!(["artwork@v1", "controller@v1"]),
        "no visualizer without data"
    );
    let start = art.expect_type("stream/start").await;
    assert_eq!(
        start["payload"]["artwork"]["channels"][1],
        json!({"source": "album", "format": "bmp", "width": 100, "height": 40})
    );

    let large = artwork_on(&mut art, 0).await;
    assert_eq!(
        image::guess_format(&large).unwrap(),
        image::ImageFormat::Jpeg
    );
    let decoded = image::load_from_memory(&large).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (300, 150));
    let small = artwork_on(&mut art, 1).await;
    assert_eq!(
        image::guess_format(&small).unwrap(),
        image::ImageFormat::Bmp
    );
    let decoded = image::load_from_memory(&small).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (80, 40));
    // The artist channel has nothing to show and is cleared.
    assert!(artwork_on(&mut art, 2).await.is_empty());

    // A request for another format and size on channel 0 is announced and
    // answered with the cover in that format.
    art.send_json(json!({"type": "stream/request-format", "payload": {
        "artwork": {"channel": 0, "format": "png", "media_width": 100, "media_height": 100},
    }}))
    .await;
    let start = art.expect_type("stream/start").await;
    assert_eq!(
        start["payload"]["artwork"]["channels"][0],
        json!({"source": "album", "format": "png", "width": 100, "height": 100})
    );
    let requested = artwork_on(&mut art, 0).await;
    assert_eq!(
        image::guess_format(&requested).unwrap(),
        image::ImageFormat::Png
    );
    let decoded = image::load_from_memory(&requested).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (100, 50));

    // The next track has no cover: both album channels are cleared.
    command(&mut art, json!({"command": "next"})).await;
    assert!(artwork_on(&mut art, 0).await.is_empty());
    assert!(artwork_on(&mut art, 1).await.is_empty());
}

#[tokio::test]
async fn switch_cycle_order() {
    let dir = tempfile::tempdir().unwrap();
    let tracks = write_tracks(dir.path(), &[("song", 30.0)]);
    let mut config = config_for_queue(tracks, RepeatMode::Off);
    config.placements = vec![
        "den=d1,d2".parse::<GroupPlacement>().unwrap(),
        "kitchen=k1".parse::<GroupPlacement>().unwrap(),
        "porch=walker".parse::<GroupPlacement>().unwrap(),
    ];
    let server = TestServer::start(config).await;
    let mut clients = Vec::new();
    let mut groups = Vec::new();
    for id in ["d1", "d2", "k1"] {
        let mut client = join(&server, id, &["player@v1"], true).await;
        groups.push(next_group(&mut client).await);
        clients.push(client);
    }
    assert_eq!(groups, vec!["den", "den", "kitchen"]);

    let mut walker = join(&server, "walker", &["player@v1", "controller@v1"], true).await;
    let first = walker.expect_type("group/update").await;
    assert_eq!(first["payload"]["group_id"], "porch");
    // Porch plays alone; the cycle is den (shared, playing), kitchen
    // (another player alone), then the walker's own solo group.
    let mut visited = Vec::new();
    for _ in 0..4 {
        command(&mut walker, json!({"command": "switch"})).await;
        visited.push(next_group(&mut walker).await);
    }
    assert_eq!(visited, vec!["den", "kitchen", "solo-walker", "den"]);
}

/// Reads messages until a `group/update` names a group, and returns its id.
async fn next_group(client: &mut RawClient) -> String {
    loop {
        let update = client.expect_type("group/update").await;
        if let Some(id) = update["payload"]["group_id"].as_str() {
            return id.to_string();
        }
    }
}

#[tokio::test]
async fn external_source_moves_to_solo_group() {
    let dir = tempfile::tempdir().unwrap();
    let tracks = write_tracks(dir.path(), &[("song", 30.0)]);
    let server = TestServer::start(config_for_queue(tracks, RepeatMode::Off)).await;
    let mut stay = join(&server, "stay", &["player@v1"], true).await;
    let mut tv = join(&server, "tv", &["player@v1", "controller@v1"], true).await;
    assert_eq!(next_group(&mut tv).await, "main");
    tv.expect_type("stream/start").await;

    tv.send_json(json!({"type": "client/state", "payload": {"state": "external_source"}}))
        .await;
    let before = until(&mut tv, |m| {
        m["type"] == "group/update" && m["payload"]["group_id"] == "solo-tv"
    })
    .await;
    assert!(
        types(&before).contains(&"stream/end"),
        "the stream ends first: {before:?}"
    );
    // The group left behind plays on for the other player.
    stay.expect_type("stream/start").await;

    command(&mut tv, json!({"command": "switch"})).await;
    assert_eq!(next_group(&mut tv).await, "main");
    tv.expect_type("stream/start").await;

    // Alone in its group, a client going to an external source stops the
    // group and stays in it. The group volume shows when the other player
    // has left: 60 with both, 100 with the client alone.
    stay.send_json(
        json!({"type": "client/state", "payload": {"player": {"volume": 20, "muted": false}}}),
    )
    .await;
    until(&mut tv, |m| {
        m["type"] == "server/state" && m["payload"]["controller"]["volume"] == 60
    })
    .await;
    drop(stay);
    until(&mut tv, |m| {
        m["type"] == "server/state" && m["payload"]["controller"]["volume"] == 100
    })
    .await;
    tv.send_json(json!({"type": "client/state", "payload": {"state": "external_source"}}))
        .await;
    let before = until(&mut tv, |m| m["type"] == "stream/end").await;
    assert!(!types(&before).contains(&"group/update"), "{before:?}");
    let update = tv.expect_type("group/update").await;
    assert_eq!(update["payload"], json!({"playback_state": "stopped"}));
}
