//! Server-initiated connections: dial loops, goodbye reasons, mDNS-style
//! record flaps and the multiple-server rules, on loopback without mDNS.

#[path = "support/process.rs"]
mod process;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use resonate::protocol::GoodbyeReason;
use resonate::server::{DialBackoff, ServerEvent};
use resonate::session::CloseCause;
use serde_json::{json, Value};
use support::{config_for, write_test_wav, TestServer, PATIENCE};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use url::Url;

/// A player that waits for servers: a WebSocket listener speaking raw JSON.
struct WaitingPlayer {
    listener: TcpListener,
    url: Url,
}

impl WaitingPlayer {
    async fn bind() -> WaitingPlayer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = Url::parse(&format!("ws://{}/sendspin", listener.local_addr().unwrap())).unwrap();
        WaitingPlayer { listener, url }
    }

    fn address(&self) -> String {
        self.url.host_str().unwrap().to_string() + ":" + &self.url.port().unwrap().to_string()
    }

    /// Accepts the next server connection and completes the handshake as
    /// `client_id`. Returns the socket and the `server/hello` payload.
    async fn accept(&self, client_id: &str) -> (WebSocketStream<TcpStream>, Value) {
        let accepting = async {
            loop {
                if let Some(accepted) = self.try_accept(client_id).await {
                    return accepted;
                }
            }
        };
        tokio::time::timeout(PATIENCE, accepting)
            .await
            .expect("no server connected in time")
    }

    /// Accepts one connection and tries the handshake. Returns `None` when
    /// the server dropped the connection first, as a cancelled dial does.
    async fn try_accept(&self, client_id: &str) -> Option<(WebSocketStream<TcpStream>, Value)> {
        let (stream, _) = self.listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(stream).await.ok()?;
        let hello = json!({"type": "client/hello", "payload": {
            "client_id": client_id, "name": client_id, "version": 1, "supported_roles": ["player@v1"],
            "player@v1_support": {"supported_formats": [{"codec": "pcm", "sample_rate": 48000, "channels": 2, "bit_depth": 16}],
                "buffer_capacity": 1_000_000, "supported_commands": []},
        }});
        ws.send(WsMessage::text(hello.to_string())).await.ok()?;
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(text))) => {
                    let message: Value = serde_json::from_str(text.as_str()).unwrap();
                    if message["type"] == "server/hello" {
                        return Some((ws, message["payload"].clone()));
                    }
                }
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    }
}

fn fast_config(dir: &std::path::Path, server_id: &str) -> resonate::server::ServerConfig {
    let wav = dir.join(format!("{server_id}.wav"));
    write_test_wav(&wav, 48_000, 2, 16, 1.0);
    let mut config = config_for(wav);
    config.server_id = server_id.into();
    config.start_delay = Duration::from_millis(200);
    config.dial_backoff = DialBackoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        stable_after: Duration::from_secs(60),
    };
    config
}

async fn say_goodbye(ws: &mut WebSocketStream<TcpStream>, reason: &str) {
    let goodbye = json!({"type": "client/goodbye", "payload": {"reason": reason}});
    ws.send(WsMessage::text(goodbye.to_string()))
        .await
        .expect("send goodbye");
    // The server closes the connection after a goodbye.
    while let Some(Ok(frame)) = ws.next().await {
        if matches!(frame, WsMessage::Close(_)) {
            break;
        }
    }
}

#[tokio::test]
async fn restart_goodbye_and_lost_connection_redial() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(fast_config(dir.path(), "redial")).await;
    let player = WaitingPlayer::bind().await;
    server.dialer.add(player.url.clone());

    let (mut ws, hello) = player.accept("p-restart").await;
    assert_eq!(hello["server_id"], "redial");
    say_goodbye(&mut ws, "restart").await;
    drop(ws);
    let (ws, _) = player.accept("p-restart").await;

    // A connection that ends without a goodbye is redialed as well.
    drop(ws);
    let (_ws, hello) = player.accept("p-restart").await;
    assert_eq!(hello["server_id"], "redial");
    server.stop().await;
}

#[tokio::test]
async fn final_goodbyes_stop_the_dial_loop() {
    for reason in [
        GoodbyeReason::Shutdown,
        GoodbyeReason::UserRequest,
        GoodbyeReason::AnotherServer,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut server = TestServer::start(fast_config(dir.path(), "final")).await;
        let player = WaitingPlayer::bind().await;
        server.dialer.add(player.url.clone());
        let (mut ws, _) = player.accept("p-final").await;
        say_goodbye(&mut ws, reason.as_str()).await;

        let cause = server
            .next_event(|event| match event {
                ServerEvent::SessionClosed { cause, .. } => Some(cause.clone()),
                _ => None,
            })
            .await;
        assert_eq!(cause, CloseCause::Goodbye(reason));
        let address = player.address();
        let stopped = server
            .next_event(|event| match event {
                ServerEvent::DialStopped {
                    address: stopped,
                    reason,
                } if *stopped == address => Some(reason.clone()),
                ServerEvent::SessionOpened { .. } => {
                    panic!("the server redialed after goodbye {}", reason.as_str())
                }
                _ => None,
            })
            .await;
        assert!(stopped.contains(reason.as_str()), "{stopped}");
        server.stop().await;
    }
}

/// Counts running items by key from start and stop events, and records the
/// largest count seen for any key.
#[derive(Default)]
struct Gauge {
    running: HashMap<String, i64>,
    max: i64,
}

impl Gauge {
    fn change(&mut self, key: &str, delta: i64) {
        let count = self.running.entry(key.to_string()).or_default();
        *count += delta;
        self.max = self.max.max(*count);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_record_leaves_one_loop_and_one_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(fast_config(dir.path(), "flap")).await;
    let player = WaitingPlayer::bind().await;
    let sentinel = WaitingPlayer::bind().await;

    // The player completes the handshake on every connection the server
    // makes, so a second dial loop would show as a second session.
    let address = player.address();
    let answering = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            if let Some((ws, _)) = player.try_accept("flapper").await {
                open.push(ws);
            }
        }
    });

    for _ in 0..1000 {
        server
            .dialer
            .add(Url::parse(&format!("ws://{address}/sendspin")).unwrap());
        server
            .dialer
            .remove(&Url::parse(&format!("ws://{address}/sendspin")).unwrap());
    }
    server
        .dialer
        .add(Url::parse(&format!("ws://{address}/sendspin")).unwrap());
    // The core applies requests in order, so once the sentinel's loop runs,
    // every flap request has been applied.
    server.dialer.add(sentinel.url.clone());

    let mut loops = Gauge::default();
    let mut sessions = Gauge::default();
    let mut session_peers = HashMap::new();
    let mut joined = false;
    let mut sentinel_started = false;
    let sentinel_address = sentinel.address();
    while !(joined && sentinel_started) {
        let event = server.next_event(|event| Some(event.clone())).await;
        match event {
            ServerEvent::DialStarted {
                address: started, ..
            } if started == address => loops.change(&address, 1),
            ServerEvent::DialStopped {
                address: stopped, ..
            } if stopped == address => loops.change(&address, -1),
            ServerEvent::DialStarted {
                address: started, ..
            } if started == sentinel_address => sentinel_started = true,
            ServerEvent::SessionOpened { session, peer } => {
                session_peers.insert(session, peer.to_string());
                sessions.change(&peer.to_string(), 1);
            }
            ServerEvent::SessionClosed { session, .. } => {
                if let Some(peer) = session_peers.get(&session) {
                    sessions.change(&peer.clone(), -1);
                }
            }
            ServerEvent::ClientJoined { client_id, .. } if client_id == "flapper" => joined = true,
            _ => {}
        }
    }
    assert!(
        loops.max <= 1,
        "{} dial loops ran at once for one address",
        loops.max
    );
    assert!(loops.running[&address] <= 1);
    assert_eq!(sessions.max, 1, "sessions open at once for one address");
    assert_eq!(sessions.running.get(&address).copied().unwrap_or(1), 1);
    answering.abort();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_server_takes_over_a_discovery_player() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("last-played.json");
    let mut play = process::resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--output",
        "null",
        "--client-id",
        "taken",
        "--state-file",
        state.to_str().unwrap(),
        "--json",
    ]);
    let listening = tokio::task::block_in_place(|| play.wait_event("listening", PATIENCE));
    let url = Url::parse(listening["url"].as_str().unwrap()).unwrap();

    // Server A has no player yet, so it connects for discovery.
    let mut server_a = TestServer::start(fast_config(dir.path(), "server-a")).await;
    server_a.dialer.add(url.clone());
    let connected = tokio::task::block_in_place(|| play.wait_event("connected", PATIENCE));
    assert_eq!(connected["server_id"], "server-a");
    assert_eq!(connected["connection_reason"], "discovery");

    // Server B is playing to another player, so it connects for playback.
    let server_b = TestServer::start(fast_config(dir.path(), "server-b")).await;
    let mut listener = support::RawClient::connect(&server_b.url()).await;
    listener
        .hello("b-listener", &["player@v1"], Some((48_000, 2, 16)))
        .await;
    listener.expect_type("stream/start").await;
    server_b.dialer.add(url.clone());

    let switched = tokio::task::block_in_place(|| play.wait_event("server_switched", PATIENCE));
    assert_eq!(switched["from"], "server-a");
    assert_eq!(switched["to"], "server-b");
    let connected = tokio::task::block_in_place(|| play.wait_event("connected", PATIENCE));
    assert_eq!(connected["server_id"], "server-b");
    assert_eq!(connected["connection_reason"], "playback");
    let cause = server_a
        .next_event(|event| match event {
            ServerEvent::SessionClosed {
                client_id: Some(id),
                cause,
                ..
            } if id == "taken" => Some(cause.clone()),
            _ => None,
        })
        .await;
    assert_eq!(cause, CloseCause::Goodbye(GoodbyeReason::AnotherServer));
    let stopped = server_a
        .next_event(|event| match event {
            ServerEvent::DialStopped { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(stopped.contains("another_server"), "{stopped}");

    // A third server connecting for discovery loses to B's playback.
    let mut server_c = TestServer::start(fast_config(dir.path(), "server-c")).await;
    server_c.dialer.add(url.clone());
    let rejected = tokio::task::block_in_place(|| play.wait_event("server_rejected", PATIENCE));
    assert_eq!(rejected["server_id"], "server-c");
    let cause = server_c
        .next_event(|event| match event {
            ServerEvent::SessionClosed { cause, .. } => Some(cause.clone()),
            _ => None,
        })
        .await;
    assert_eq!(cause, CloseCause::Goodbye(GoodbyeReason::AnotherServer));

    let status = tokio::task::block_in_place(|| play.interrupt());
    assert!(status.success(), "play exited with {status}");
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("last-played file")).unwrap();
    assert_eq!(
        stored["server_id"], "server-b",
        "the last server that played is stored"
    );
    server_a.stop().await;
    server_b.stop().await;
    server_c.stop().await;
}
