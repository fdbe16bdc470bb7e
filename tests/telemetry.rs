//! The telemetry feed of the real binary: `serve --telemetry` and
//! `play --telemetry` publish sessions, clocks and events that a feed
//! reader and a Prometheus scraper both see.

#[path = "support/process.rs"]
mod process;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use process::resonate;
use resonate::telemetry::{feed, EventKind, FeedMessage, Snapshot};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/sine440_660_stereo_48000_24bit.flac"
);

/// Reads the feed at `url` until `done` returns true for the messages seen
/// so far, or `patience` runs out; returns every message read.
async fn read_feed_until(
    url: &str,
    patience: Duration,
    done: impl Fn(&[FeedMessage]) -> bool,
) -> Vec<FeedMessage> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let url = url.to_string();
    let reader = tokio::spawn(async move { feed::read(&url, move |m| drop(tx.send(m))).await });
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + patience;
    while !done(&seen) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(message)) => seen.push(message),
            _ => break,
        }
    }
    reader.abort();
    seen
}

fn snapshots(messages: &[FeedMessage]) -> impl Iterator<Item = &Snapshot> {
    messages.iter().filter_map(|m| match m {
        FeedMessage::Snapshot(s) => Some(s),
        _ => None,
    })
}

/// Returns whether a snapshot shows the player with both clock views.
fn shows_both_clocks(snapshot: &Snapshot, client_id: &str) -> bool {
    snapshot.sessions.iter().any(|row| {
        row.client_id.as_deref() == Some(client_id)
            && row.server_clock.is_some()
            && row.client_clock.is_some()
    })
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the telemetry address");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the HTTP response");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_play_publish_telemetry() {
    let mut serve = resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        FIXTURE,
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--loop",
        "--json",
        "--telemetry",
        "127.0.0.1:0",
    ]);
    let serve_feed = serve.wait_event("telemetry", Duration::from_secs(20))["addr"]
        .as_str()
        .unwrap()
        .to_string();
    let server_url = serve.wait_event("listening", Duration::from_secs(20))["url"]
        .as_str()
        .unwrap()
        .to_string();

    let mut play = resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        &server_url,
        "--output",
        "null",
        "--client-id",
        "telemetry-player",
        "--duration",
        "30",
        "--json",
        "--telemetry",
        "127.0.0.1:0",
    ]);
    let play_feed = play.wait_event("telemetry", Duration::from_secs(20))["addr"]
        .as_str()
        .unwrap()
        .to_string();

    // The server shows the player with its own estimate and with the
    // player's report, and the two agree on loopback.
    let messages = read_feed_until(
        &format!("ws://{serve_feed}/"),
        Duration::from_secs(30),
        |seen| snapshots(seen).any(|s| shows_both_clocks(s, "telemetry-player")),
    )
    .await;
    assert!(
        matches!(messages.first(), Some(FeedMessage::Hello(hello)) if hello.source.kind == "serve"),
        "the feed starts with hello: {:?}",
        messages.first()
    );
    let snapshot = snapshots(&messages).last().expect("a snapshot");
    let row = snapshot
        .sessions
        .iter()
        .find(|row| row.client_id.as_deref() == Some("telemetry-player"))
        .unwrap_or_else(|| panic!("player row missing: {snapshot:?}"));
    assert_eq!(row.phase, resonate::telemetry::Phase::Active);
    assert!(
        row.roles.iter().any(|r| r == "player@v1"),
        "{:?}",
        row.roles
    );
    assert_eq!(row.group.as_deref(), Some("main"));
    assert!(row.format.is_some(), "{row:?}");
    let server_view = row.server_clock.expect("server estimate");
    let client_view = row.client_clock.expect("player report");
    let disagreement = (server_view.offset_us - client_view.offset_us).abs();
    assert!(
        disagreement < 20_000.0,
        "server {server_view:?} and player {client_view:?} disagree by {disagreement} µs"
    );
    let group = snapshot
        .groups
        .iter()
        .find(|g| g.id == "main")
        .expect("main group");
    assert!(
        group.members.iter().any(|m| m == "telemetry-player"),
        "{group:?}"
    );
    assert_eq!(group.playback, "playing");
    let track = group
        .metadata
        .as_ref()
        .unwrap_or_else(|| panic!("no track in {group:?}"));
    let stem = std::path::Path::new(FIXTURE)
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap();
    // The fixture has no tags, so the title is the file name.
    assert_eq!(track.title.as_deref(), Some(stem), "{track:?}");
    let joined = messages.iter().any(|m| {
        matches!(m, FeedMessage::Event(e) if e.kind == EventKind::Connected && e.client_id.as_deref() == Some("telemetry-player"))
    });
    assert!(joined, "no connected event in {messages:?}");

    // The player's own feed shows its connection and clock.
    let messages = read_feed_until(
        &format!("ws://{play_feed}/"),
        Duration::from_secs(20),
        |seen| {
            snapshots(seen).any(|s| {
                s.sessions
                    .iter()
                    .any(|row| row.client_clock.is_some() && row.format.is_some())
            })
        },
    )
    .await;
    let snapshot = snapshots(&messages).last().expect("a player snapshot");
    assert_eq!(snapshot.source.kind, "play");
    assert_eq!(snapshot.sessions.len(), 1, "{snapshot:?}");
    assert!(snapshot.sessions[0].client_clock.is_some(), "{snapshot:?}");

    // Prometheus text from both.
    let metrics = http_get(&serve_feed, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    assert!(
        metrics.contains("resonate_clock_offset_microseconds{session="),
        "{metrics}"
    );
    assert!(
        metrics.contains("client_id=\"telemetry-player\",estimate=\"client_report\""),
        "{metrics}"
    );
    let metrics = http_get(&play_feed, "/metrics");
    assert!(
        metrics.contains("resonate_frames_played_total"),
        "{metrics}"
    );
    let missing = http_get(&serve_feed, "/nothing");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    // A goodbye shows in the server's event log with its reason.
    let watcher = tokio::spawn({
        let url = format!("ws://{serve_feed}/");
        async move {
            read_feed_until(&url, Duration::from_secs(30), |seen| {
                seen.iter().any(
                    |m| matches!(m, FeedMessage::Event(e) if e.kind == EventKind::Disconnected),
                )
            })
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(play.interrupt().success());
    let messages = watcher.await.unwrap();
    let goodbye = messages.iter().find_map(|m| match m {
        FeedMessage::Event(e) if e.kind == EventKind::Disconnected => Some(e),
        _ => None,
    });
    let goodbye = goodbye.unwrap_or_else(|| panic!("no disconnected event in {messages:?}"));
    assert_eq!(goodbye.client_id.as_deref(), Some("telemetry-player"));
    assert!(goodbye.detail.contains("goodbye"), "{}", goodbye.detail);
    assert!(serve.interrupt().success());
}

/// Reads the hub's snapshots until `done` accepts one or `patience` runs out.
async fn wait_snapshot(
    hub: &resonate::telemetry::Telemetry,
    patience: Duration,
    done: impl Fn(&Snapshot) -> bool,
) -> std::sync::Arc<Snapshot> {
    let mut snapshots = hub.subscribe().snapshots;
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let latest = snapshots.borrow_and_update().clone();
        if done(&latest) {
            return latest;
        }
        if tokio::time::timeout_at(deadline, snapshots.changed())
            .await
            .is_err()
        {
            return latest;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_shows_a_server_from_outside() {
    use resonate::telemetry::observer::{observe, ObserverConfig};

    let mut serve = resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        FIXTURE,
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--loop",
        "--json",
    ]);
    let server_url = serve.wait_event("listening", Duration::from_secs(20))["url"]
        .as_str()
        .unwrap()
        .to_string();
    let mut play = resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        &server_url,
        "--output",
        "null",
        "--client-id",
        "observed-player",
        "--duration",
        "30",
        "--json",
    ]);
    play.wait_event("stream_started", Duration::from_secs(20));

    let hub = resonate::telemetry::Telemetry::new(Default::default());
    let config = ObserverConfig {
        url: url::Url::parse(&server_url).unwrap(),
        dialect: resonate::dialect::Dialect::SendspinV1,
        client_id: "observer-test".into(),
        name: "observer test".into(),
        limits: Default::default(),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let observer = tokio::spawn(observe(config, hub.clone(), stop.clone().cancelled_owned()));

    let snapshot = wait_snapshot(&hub, Duration::from_secs(30), |s| {
        s.groups
            .iter()
            .any(|g| g.playback == "playing" && g.volume.is_some())
            && s.sessions
                .iter()
                .any(|r| r.client_clock.and_then(|c| c.converged) == Some(true))
    })
    .await;
    let row = &snapshot.sessions[0];
    assert_eq!(
        row.phase,
        resonate::telemetry::Phase::Active,
        "{snapshot:?}"
    );
    assert!(
        row.roles.iter().any(|r| r == "controller@v1"),
        "{:?}",
        row.roles
    );
    let clock = row.client_clock.expect("the observer's own clock");
    assert_eq!(clock.converged, Some(true), "{clock:?}");
    assert!(
        clock.rtt_us.is_some_and(|rtt| rtt < 1_000_000.0),
        "{clock:?}"
    );
    let group = snapshot
        .groups
        .first()
        .unwrap_or_else(|| panic!("no group in {snapshot:?}"));
    assert_eq!(group.id, "main");
    assert_eq!(group.playback, "playing");
    assert_eq!(group.volume, Some(100));
    assert!(!snapshot.notes.is_empty());

    // The observer's goodbye is a clean one for the server.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), observer)
        .await
        .expect("observer stops")
        .unwrap()
        .expect("observer ends cleanly");
    assert!(play.interrupt().success());
    assert!(serve.interrupt().success());
}

/// The observer over Sendspin 1.0, against a server that admits unpaired
/// clients: it runs the Noise handshake, gets its roles and follows the
/// group and its own clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_joins_an_encrypted_server() {
    use resonate::telemetry::observer::{observe, ObserverConfig};

    let state = tempfile::tempdir().unwrap();
    let mut serve = resonate(&[
        "serve",
        FIXTURE,
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--loop",
        "--json",
        "--dialect",
        "sendspin",
        "--allow-unpaired",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    let server_url = serve.wait_event("listening", Duration::from_secs(20))["url"]
        .as_str()
        .unwrap()
        .to_string();

    let hub = resonate::telemetry::Telemetry::new(Default::default());
    let config = ObserverConfig {
        url: url::Url::parse(&server_url).unwrap(),
        dialect: resonate::dialect::Dialect::Sendspin,
        client_id: "observer-test".into(),
        name: "observer test".into(),
        limits: Default::default(),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let observer = tokio::spawn(observe(config, hub.clone(), stop.clone().cancelled_owned()));

    let snapshot = wait_snapshot(&hub, Duration::from_secs(30), |s| {
        s.sessions.iter().any(|r| {
            r.phase == resonate::telemetry::Phase::Active
                && r.client_clock.and_then(|c| c.converged) == Some(true)
        })
    })
    .await;
    let row = &snapshot.sessions[0];
    assert!(
        row.roles.iter().any(|r| r == "controller@v1"),
        "{:?}",
        row.roles
    );
    assert!(!snapshot.groups.is_empty(), "{snapshot:?}");

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), observer)
        .await
        .expect("observer stops")
        .unwrap()
        .expect("observer ends cleanly");
    assert!(serve.interrupt().success());
}

/// Returns a loopback address with a port that was free a moment ago.
fn free_loopback_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_publishes_markers_and_sessions() {
    let addr = free_loopback_addr();
    let mut stress = resonate(&[
        "stress",
        "--scenario",
        "churn",
        "--duration",
        "4",
        "--clients",
        "4",
        "--seed",
        "7",
        "--json",
        "--telemetry",
        &addr,
    ]);
    let url = format!("ws://{addr}/");

    // The feed opens once the embedded server runs; retry until then.
    let mut messages = Vec::new();
    for _ in 0..100 {
        messages = read_feed_until(&url, Duration::from_secs(30), |seen| {
            seen.iter().any(|m| matches!(m, FeedMessage::Event(e) if e.kind == EventKind::Marker && e.detail.contains("ended")))
        })
        .await;
        if !messages.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stress.wait(Duration::from_secs(60)).success(),
        "stress failed: {:?}",
        stress.seen
    );

    let markers: Vec<&str> = messages
        .iter()
        .filter_map(|m| match m {
            FeedMessage::Event(e) if e.kind == EventKind::Marker => Some(e.detail.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        markers.iter().any(|m| m.contains("churn started")),
        "{markers:?}"
    );
    assert!(
        markers.iter().any(|m| m.contains("churn ended")),
        "{markers:?}"
    );
    let busiest = snapshots(&messages)
        .max_by_key(|s| s.sessions.len())
        .expect("a snapshot");
    assert!(
        !busiest.sessions.is_empty(),
        "the embedded server's sessions show"
    );
    let last = snapshots(&messages).last().unwrap();
    assert!(
        last.counters.get("stress.opened").copied().unwrap_or(0) > 0,
        "{:?}",
        last.counters
    );
    assert_eq!(
        last.counters.get("stress.violations"),
        Some(&0),
        "{:?}",
        last.counters
    );
    assert_eq!(last.source.kind, "stress");
}

/// Runs `stress` against `server_url`, reading counters from `feed_addr`,
/// and returns its exit status and JSON report.
fn stress_with_feed(
    server_url: &str,
    feed_addr: &str,
) -> (std::process::ExitStatus, serde_json::Value) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args([
            "stress",
            "--server",
            server_url,
            "--server-telemetry",
            &format!("ws://{feed_addr}/"),
        ])
        .args([
            "--scenario",
            "handshake-storm",
            "--duration",
            "1",
            "--clients",
            "4",
            "--seed",
            "5",
            "--json",
        ])
        .output()
        .expect("run stress");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "no JSON report ({err}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_reads_server_counters_from_its_feed() {
    let mut serve = resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        FIXTURE,
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--loop",
        "--json",
        "--telemetry",
        "127.0.0.1:0",
    ]);
    let feed_addr = serve.wait_event("telemetry", Duration::from_secs(20))["addr"]
        .as_str()
        .unwrap()
        .to_string();
    let server_url = serve.wait_event("listening", Duration::from_secs(20))["url"]
        .as_str()
        .unwrap()
        .to_string();

    let (status, report) =
        tokio::task::spawn_blocking(move || stress_with_feed(&server_url, &feed_addr))
            .await
            .unwrap();
    assert!(status.success(), "{report:#}");
    let server = &report["scenarios"][0]["server"];
    assert!(server["sessions_opened"].as_u64().unwrap() > 0, "{server}");
    assert_eq!(server["sessions_live"], 0, "{server}");
    assert_eq!(server["clients_live"], 0, "{server}");
    assert_eq!(server["tasks_live"], 0, "{server}");
    assert!(serve.interrupt().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_reports_a_leak_the_feed_shows() {
    use resonate::telemetry::{Phase, SessionRow, SourceInfo, Telemetry};

    let mut serve = resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        FIXTURE,
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--loop",
        "--json",
    ]);
    let server_url = serve.wait_event("listening", Duration::from_secs(20))["url"]
        .as_str()
        .unwrap()
        .to_string();

    // A feed that keeps showing one open session and client, as a server
    // that leaks them would.
    let hub = Telemetry::new(SourceInfo::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let feed_addr = listener.local_addr().unwrap().to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    let feed = tokio::spawn(feed::serve(
        listener,
        hub.clone(),
        stop.clone().cancelled_owned(),
    ));
    let publisher = tokio::spawn({
        let hub = hub.clone();
        async move {
            loop {
                hub.publish(Snapshot {
                    taken_unix_ms: resonate::telemetry::unix_ms_now(),
                    sessions: vec![SessionRow {
                        session: "s1".into(),
                        phase: Phase::Active,
                        ..Default::default()
                    }],
                    gauges: [("clients_live".to_string(), 1.0)].into(),
                    ..Default::default()
                });
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });

    let (status, report) =
        tokio::task::spawn_blocking(move || stress_with_feed(&server_url, &feed_addr))
            .await
            .unwrap();
    publisher.abort();
    stop.cancel();
    feed.await.unwrap();
    assert_eq!(status.code(), Some(1), "{report:#}");
    let leak = &report["scenarios"][0]["violations"]["leak"];
    assert_eq!(leak["count"], 1, "{report:#}");
    let detail = leak["examples"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("1 sessions, 1 clients"), "{detail}");
    assert!(serve.interrupt().success());
}
