//! Limits of `serve` against peers that misbehave: each limit trips with
//! its documented close, log line and `rejected` counter, and a bystander
//! session notices none of it.

#[path = "support/logs.rs"]
mod logs;
mod support;

use std::time::Duration;

use logs::LogCapture;
use resonate::server::{ServerConfig, ServerEvent, ServerStats};
use resonate::session::{CloseCause, SessionId};
use serde_json::json;
use support::{config_for, write_test_wav, RawClient, TestServer, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::MaybeTlsStream;

async fn server_with(adjust: impl FnOnce(&mut ServerConfig)) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("source.wav");
    write_test_wav(&wav, 48_000, 2, 16, 2.0);
    let mut config = config_for(wav);
    adjust(&mut config);
    (TestServer::start(config).await, dir)
}

async fn opened(server: &mut TestServer) -> SessionId {
    server
        .next_event(|e| match e {
            ServerEvent::SessionOpened { session, .. } => Some(*session),
            _ => None,
        })
        .await
}

async fn controller(server: &mut TestServer, client_id: &str) -> (RawClient, SessionId) {
    let mut client = RawClient::connect(&server.url()).await;
    let session = opened(server).await;
    client.hello(client_id, &["controller@v1"], None).await;
    client.expect_type("server/hello").await;
    (client, session)
}

async fn closed_cause(server: &mut TestServer, id: SessionId) -> CloseCause {
    server
        .next_event(|e| match e {
            ServerEvent::SessionClosed { session, cause, .. } if *session == id => {
                Some(cause.clone())
            }
            _ => None,
        })
        .await
}

async fn assert_alive(client: &mut RawClient) {
    client
        .send_json(json!({"type": "client/time", "payload": {"client_transmitted": 42}}))
        .await;
    let reply = client.expect_type("server/time").await;
    assert_eq!(reply["payload"]["client_transmitted"], 42);
}

/// Waits until the server has counted `count` rejections of `cause`.
async fn wait_rejected(stats: &ServerStats, cause: &str, count: u64) {
    let wait = async {
        loop {
            if stats
                .snapshot()
                .rejected_by_cause
                .get(cause)
                .copied()
                .unwrap_or(0)
                >= count
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no {cause} rejection counted: {:?}",
                stats.snapshot().rejected_by_cause
            )
        });
}

fn rejected(stats: &ServerStats, cause: &str) -> u64 {
    stats
        .snapshot()
        .rejected_by_cause
        .get(cause)
        .copied()
        .unwrap_or(0)
}

fn local_addr(client: &RawClient) -> String {
    match client.ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap().to_string(),
        _ => unreachable!("tests connect over plain TCP"),
    }
}

/// Builds a `client/time` message padded with trailing spaces to `size` bytes.
fn time_message_of_size(size: usize) -> WsMessage {
    let mut text =
        json!({"type": "client/time", "payload": {"client_transmitted": 42}}).to_string();
    assert!(text.len() <= size);
    text.extend(std::iter::repeat_n(' ', size - text.len()));
    WsMessage::text(text)
}

/// Checks that a session rejected for `rejection` was logged once, with
/// its session id and peer.
fn assert_rejection_logged(logs: &LogCapture, session: SessionId, peer: &str, rejection: &str) {
    let session_field = format!("session={session}");
    let peer_field = format!("peer={peer}");
    let lines = logs.matching(&["session rejected", &session_field, &peer_field, rejection]);
    assert_eq!(
        lines.len(),
        1,
        "log lines of the rejection: {lines:?}\nall: {:#?}",
        logs.lines()
    );
}

#[tokio::test]
async fn frame_one_byte_over_limit_closes_with_1009() {
    let (logs, _guard) = LogCapture::start();
    let (mut server, _dir) = server_with(|config| config.limits.max_frame_bytes = 4096).await;
    let (mut bystander, _) = controller(&mut server, "bystander").await;
    let (mut client, id) = controller(&mut server, "big-frames").await;

    client.send_raw(time_message_of_size(4096)).await;
    let reply = client.expect_type("server/time").await;
    assert_eq!(reply["payload"]["client_transmitted"], 42);

    client.send_raw(time_message_of_size(4097)).await;
    let (code, reason) = client.expect_close().await.expect("close frame");
    assert_eq!(code, 1009);
    assert!(reason.contains("max_frame_bytes"), "{reason}");
    let cause = closed_cause(&mut server, id).await;
    assert!(
        matches!(
            cause,
            CloseCause::LimitExceeded {
                limit: "max_frame_bytes",
                ..
            }
        ),
        "{cause:?}"
    );
    assert_eq!(rejected(&server.stats, "max_frame_bytes"), 1);
    assert_rejection_logged(&logs, id, &local_addr(&client), "max_frame_bytes");
    assert_alive(&mut bystander).await;
    server.stop().await;
}

#[tokio::test]
async fn message_one_byte_over_limit_closes_with_1009() {
    let (logs, _guard) = LogCapture::start();
    let (mut server, _dir) = server_with(|config| config.limits.max_message_bytes = 4096).await;
    let (mut client, id) = controller(&mut server, "big-messages").await;

    client.send_raw(time_message_of_size(4096)).await;
    client.expect_type("server/time").await;

    client.send_raw(time_message_of_size(4097)).await;
    let (code, _) = client.expect_close().await.expect("close frame");
    assert_eq!(code, 1009);
    let cause = closed_cause(&mut server, id).await;
    assert!(
        matches!(
            cause,
            CloseCause::LimitExceeded {
                limit: "max_message_bytes",
                ..
            }
        ),
        "{cause:?}"
    );
    assert_eq!(rejected(&server.stats, "max_message_bytes"), 1);
    assert_rejection_logged(&logs, id, &local_addr(&client), "max_message_bytes");
    server.stop().await;
}

#[tokio::test]
async fn stalled_http_upgrade_times_out() {
    let (logs, _guard) = LogCapture::start();
    let (server, _dir) =
        server_with(|config| config.limits.handshake_timeout = Duration::from_millis(300)).await;
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    let peer = stalled.local_addr().unwrap().to_string();

    // The server closes the connection without a byte once the timeout passes.
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, stalled.read(&mut buffer))
        .await
        .expect("server closes");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    wait_rejected(&server.stats, "handshake_timeout", 1).await;
    let lines = logs.matching(&[
        "connection rejected",
        "handshake_timeout",
        &format!("peer={peer}"),
    ]);
    assert_eq!(lines.len(), 1, "{:#?}", logs.lines());
    server.stop().await;
}

#[tokio::test]
async fn stalled_hello_times_out() {
    let (logs, _guard) = LogCapture::start();
    let (mut server, _dir) =
        server_with(|config| config.limits.handshake_timeout = Duration::from_millis(300)).await;
    let mut client = RawClient::connect(&server.url()).await;
    let id = opened(&mut server).await;

    let (code, _) = client.expect_close().await.expect("close frame");
    assert_eq!(code, 1008);
    assert_eq!(
        closed_cause(&mut server, id).await,
        CloseCause::HandshakeTimeout
    );
    assert_eq!(rejected(&server.stats, "handshake_timeout"), 1);
    assert_rejection_logged(&logs, id, &local_addr(&client), "handshake_timeout");
    server.stop().await;
}

#[tokio::test]
async fn consumer_that_stops_reading_is_closed() {
    let (logs, _guard) = LogCapture::start();
    let (mut server, _dir) = server_with(|config| {
        config.limits.outbound_queue = 16;
        config.limits.socket_send_buffer = Some(4096);
        config.start_delay = Duration::from_millis(100);
    })
    .await;
    let (mut bystander, _) = controller(&mut server, "bystander").await;
    // A small receive buffer, so the kernel cannot hide the backlog.
    let (player, id, peer) = stalled_player(&mut server, "stops-reading").await;

    let cause = closed_cause(&mut server, id).await;
    assert!(matches!(cause, CloseCause::SlowConsumer(_)), "{cause:?}");
    assert_eq!(rejected(&server.stats, "slow_consumer"), 1);
    assert_rejection_logged(&logs, id, &peer, "slow_consumer");
    assert_alive(&mut bystander).await;
    drop(player);
    server.stop().await;
}

/// Connects a player with a 4 KiB receive buffer, sends its hello and
/// never reads again. Returns the client, its session and its address.
async fn stalled_player(
    server: &mut TestServer,
    client_id: &str,
) -> (RawClient, SessionId, String) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let peer = tcp.local_addr().unwrap().to_string();
    let (ws, _) = tokio_tungstenite::client_async(server.url(), MaybeTlsStream::Plain(tcp))
        .await
        .unwrap();
    let mut player = RawClient { ws };
    let id = opened(server).await;
    player
        .hello(client_id, &["player@v1"], Some((48_000, 2, 16)))
        .await;
    (player, id, peer)
}

#[tokio::test]
async fn late_audio_limit_closes_stalled_player() {
    let (logs, _guard) = LogCapture::start();
    // Only the late-audio limit can trip: the queue and the write timeout
    // are far larger than the test runs.
    let (mut server, _dir) = server_with(|config| {
        config.limits.outbound_queue = 1_000_000;
        config.limits.write_timeout = Duration::from_secs(600);
        config.limits.audio_late_limit = Duration::from_millis(200);
        config.limits.socket_send_buffer = Some(4096);
        config.start_delay = Duration::from_millis(100);
    })
    .await;
    let (mut bystander, _) = controller(&mut server, "bystander").await;
    let (player, id, peer) = stalled_player(&mut server, "late-audio").await;

    let cause = closed_cause(&mut server, id).await;
    let CloseCause::SlowConsumer(detail) = &cause else {
        panic!("expected a slow consumer, got {cause:?}");
    };
    assert!(detail.contains("after its play time"), "{detail}");
    assert!(detail.contains("200 ms"), "{detail}");
    assert_eq!(rejected(&server.stats, "slow_consumer"), 1);
    assert_rejection_logged(&logs, id, &peer, "slow_consumer");
    assert_alive(&mut bystander).await;
    drop(player);
    server.stop().await;
}

#[tokio::test]
async fn write_timeout_closes_stalled_player() {
    let (logs, _guard) = LogCapture::start();
    // Only the write timeout can trip: audio may be ten minutes late and
    // the queue is far larger than the test runs.
    let (mut server, _dir) = server_with(|config| {
        config.limits.outbound_queue = 1_000_000;
        config.limits.write_timeout = Duration::from_millis(300);
        config.limits.audio_late_limit = Duration::from_secs(600);
        config.limits.socket_send_buffer = Some(4096);
        config.start_delay = Duration::from_millis(100);
    })
    .await;
    let (mut bystander, _) = controller(&mut server, "bystander").await;
    let (player, id, peer) = stalled_player(&mut server, "write-timeout").await;

    let cause = closed_cause(&mut server, id).await;
    let CloseCause::SlowConsumer(detail) = &cause else {
        panic!("expected a slow consumer, got {cause:?}");
    };
    assert!(detail.contains("a write timed out after 300ms"), "{detail}");
    assert_eq!(rejected(&server.stats, "slow_consumer"), 1);
    assert_rejection_logged(&logs, id, &peer, "slow_consumer");
    assert_alive(&mut bystander).await;
    drop(player);
    server.stop().await;
}

/// Starts `resonate serve` on `wav` with `flags`, and returns the process,
/// its stderr lines as they arrive, and its WebSocket URL.
fn spawn_serve(
    wav: &std::path::Path,
    flags: &[&str],
) -> (
    std::process::Child,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    String,
) {
    use std::io::BufRead;

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args(["serve", "--dialect", "sendspin-v1"])
        .arg(wav)
        .args(["--no-mdns", "--listen", "127.0.0.1:0", "--json"])
        .args(flags)
        .env("RUST_LOG", "resonate=warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start resonate serve");
    let stderr = child.stderr.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let collected = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            collected.lock().unwrap().push(line);
        }
    });
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("read the listening line");
    let listening: serde_json::Value = serde_json::from_str(&first).expect("a JSON line");
    let url = listening["url"].as_str().expect("a url").to_string();
    (child, lines, url)
}

#[tokio::test]
async fn late_audio_flag_reaches_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("source.wav");
    write_test_wav(&wav, 48_000, 2, 16, 5.0);
    let (mut child, lines, url) = spawn_serve(
        &wav,
        &[
            "--late-audio-ms",
            "50",
            "--write-timeout-ms",
            "600000",
            "--outbound-queue",
            "1000000",
            "--send-buffer-bytes",
            "4096",
        ],
    );

    let addr: std::net::SocketAddr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(url.as_str(), MaybeTlsStream::Plain(tcp))
        .await
        .unwrap();
    let mut player = RawClient { ws };
    player
        .hello("late-audio-flag", &["player@v1"], Some((48_000, 2, 16)))
        .await;

    // The player never reads again, so the server must log the close.
    let rejection = async {
        loop {
            let found = lines
                .lock()
                .unwrap()
                .iter()
                .find(|line| line.contains("session rejected"))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let line = tokio::time::timeout(PATIENCE, rejection)
        .await
        .unwrap_or_else(|_| panic!("no rejection logged: {:#?}", lines.lock().unwrap()));
    assert!(line.contains("slow_consumer"), "{line}");
    assert!(line.contains("within 50 ms after its play time"), "{line}");

    drop(player);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn flood_above_rate_closes_with_1008() {
    let (logs, _guard) = LogCapture::start();
    let (mut server, _dir) = server_with(|config| config.limits.max_messages_per_second = 20).await;
    let (mut bystander, _) = controller(&mut server, "bystander").await;
    let (mut client, id) = controller(&mut server, "flooder").await;

    // Within the burst, the server replies to every message.
    for _ in 0..10 {
        assert_alive(&mut client).await;
    }

    for n in 0..100 {
        client
            .send_json(json!({"type": "client/time", "payload": {"client_transmitted": n}}))
            .await;
    }
    let (code, reason) = client.expect_close().await.expect("close frame");
    assert_eq!(code, 1008);
    assert!(reason.contains("max_messages_per_second"), "{reason}");
    let cause = closed_cause(&mut server, id).await;
    assert!(
        matches!(
            cause,
            CloseCause::LimitExceeded {
                limit: "max_messages_per_second",
                ..
            }
        ),
        "{cause:?}"
    );
    assert_eq!(rejected(&server.stats, "max_messages_per_second"), 1);
    assert_rejection_logged(&logs, id, &local_addr(&client), "max_messages_per_second");
    assert_alive(&mut bystander).await;
    server.stop().await;
}

#[tokio::test]
async fn sessions_past_limit_get_503() {
    let (logs, _guard) = LogCapture::start();
    let (mut server, _dir) = server_with(|config| config.limits.max_sessions = 2).await;
    let (mut first, _) = controller(&mut server, "first").await;
    let (mut second, second_id) = controller(&mut server, "second").await;

    let refused = tokio_tungstenite::connect_async(server.url()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    wait_rejected(&server.stats, "max_sessions", 1).await;
    assert_eq!(
        logs.matching(&["connection rejected", "max_sessions"])
            .len(),
        1,
        "{:#?}",
        logs.lines()
    );
    assert_alive(&mut first).await;

    // A freed place takes a new session.
    second
        .send_json(json!({"type": "client/goodbye", "payload": {"reason": "shutdown"}}))
        .await;
    closed_cause(&mut server, second_id).await;
    let (mut third, _) = controller(&mut server, "third").await;
    assert_alive(&mut third).await;
    server.stop().await;
}

#[tokio::test]
async fn handshakes_past_limit_are_closed_unread() {
    let (logs, _guard) = LogCapture::start();
    let (mut server, _dir) = server_with(|config| config.limits.max_pending_handshakes = 1).await;
    let stalled = TcpStream::connect(server.addr).await.unwrap();

    let mut refused = TcpStream::connect(server.addr).await.unwrap();
    let peer = refused.local_addr().unwrap().to_string();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, refused.read(&mut buffer))
        .await
        .expect("server closes");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    wait_rejected(&server.stats, "max_pending_handshakes", 1).await;
    let lines = logs.matching(&[
        "connection rejected",
        "max_pending_handshakes",
        &format!("peer={peer}"),
    ]);
    assert_eq!(lines.len(), 1, "{:#?}", logs.lines());

    // Once the stalled handshake ends, handshakes are accepted again.
    drop(stalled);
    wait_rejected(&server.stats, "handshake_failed", 1).await;
    let (mut client, _) = controller(&mut server, "after").await;
    assert_alive(&mut client).await;
    server.stop().await;
}

#[tokio::test]
async fn garbage_before_handshake_is_rejected() {
    let (logs, _guard) = LogCapture::start();
    let (mut server, _dir) = server_with(|_| {}).await;
    let (mut bystander, _) = controller(&mut server, "bystander").await;

    let garbage: [&[u8]; 3] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
        b"GET /sendspin HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\xff\xfe\xfd\r\n\r\n",
    ];
    for (n, bytes) in garbage.iter().enumerate() {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        let peer = tcp.local_addr().unwrap().to_string();
        tcp.write_all(bytes).await.unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut reply))
            .await
            .expect("server closes");
        wait_rejected(&server.stats, "handshake_failed", n as u64 + 1).await;
        let lines = logs.matching(&[
            "connection rejected",
            "handshake_failed",
            &format!("peer={peer}"),
        ]);
        assert_eq!(lines.len(), 1, "case {n}: {:#?}", logs.lines());
    }
    assert_eq!(server.stats.snapshot().sessions_opened, 1);
    assert_alive(&mut bystander).await;
    server.stop().await;
}

#[tokio::test]
async fn garbage_after_handshake_is_a_protocol_error() {
    let (logs, _guard) = LogCapture::start();
    let (mut server, _dir) = server_with(|_| {}).await;
    let (mut bystander, _) = controller(&mut server, "bystander").await;

    // Reserved bits set, an unmasked client frame, a reserved opcode, and a
    // frame header that claims about 2^61 bytes.
    let garbage: [(&[u8], &str); 4] = [
        (b"\xf1\x85\x00\x00\x00\x00hello", "protocol_error"),
        (b"\x81\x05hello", "protocol_error"),
        (b"\x8f\x80\x00\x00\x00\x00", "protocol_error"),
        (b"\x82\xff garbage\x00\x00\x00\x00", "max_frame_bytes"),
    ];
    for (n, (bytes, rejection)) in garbage.iter().enumerate() {
        let (mut client, id) = controller(&mut server, &format!("garbage-{n}")).await;
        let peer = local_addr(&client);
        match client.ws.get_mut() {
            MaybeTlsStream::Plain(tcp) => tcp.write_all(bytes).await.unwrap(),
            _ => unreachable!("tests connect over plain TCP"),
        }
        let cause = closed_cause(&mut server, id).await;
        assert_eq!(cause.rejection(), Some(*rejection), "case {n}: {cause:?}");
        assert_rejection_logged(&logs, id, &peer, rejection);
    }
    assert_eq!(rejected(&server.stats, "protocol_error"), 3);
    assert_eq!(rejected(&server.stats, "max_frame_bytes"), 1);
    assert_alive(&mut bystander).await;
    server.stop().await;
}

#[tokio::test]
async fn oversized_hello_lists_are_rejected() {
    let (mut server, _dir) = server_with(|_| {}).await;
    let roles: Vec<String> = (0..65).map(|n| format!("role{n}@v1")).collect();
    let long_command = "x".repeat(257);
    let hellos = [
        (
            json!({"client_id": "a", "name": "a", "version": 1, "supported_roles": roles}),
            "supported_roles must list at most 64",
        ),
        (
            json!({"client_id": "b", "name": "b", "version": 1, "supported_roles": ["player@v1"],
                   "player@v1_support": {"supported_formats": [], "buffer_capacity": 1000, "supported_commands": [long_command]}}),
            "supported_commands items must be at most 256 bytes",
        ),
    ];
    for (n, (payload, expected)) in hellos.into_iter().enumerate() {
        let mut client = RawClient::connect(&server.url()).await;
        let id = opened(&mut server).await;
        client
            .send_json(json!({"type": "client/hello", "payload": payload}))
            .await;
        match closed_cause(&mut server, id).await {
            CloseCause::ProtocolError(detail) => {
                assert!(detail.contains(expected), "case {n}: {detail}")
            }
            other => panic!("case {n}: expected a protocol error, got {other:?}"),
        }
    }
    assert_eq!(rejected(&server.stats, "protocol_error"), 2);
    server.stop().await;
}

#[tokio::test]
async fn silent_peer_is_closed_as_idle() {
    let (logs, _guard) = LogCapture::start();
    let (mut server, _dir) = server_with(|config| {
        config.limits.ping_interval = Duration::from_millis(100);
        config.limits.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let (client, id) = controller(&mut server, "silent").await;
    let peer = local_addr(&client);

    // The client reads nothing from now on, so it answers no ping.
    assert_eq!(closed_cause(&mut server, id).await, CloseCause::IdleTimeout);
    assert_eq!(rejected(&server.stats, "idle_timeout"), 1);
    assert_rejection_logged(&logs, id, &peer, "idle_timeout");
    drop(client);
    server.stop().await;
}
