//! Session lifecycle of `serve`'s engine, seen from raw clients: the exact
//! events for replacement, abrupt ends, goodbyes and malformed frames, and
//! that a bystander session notices none of it.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use resonate::protocol::GoodbyeReason;
use resonate::server::ServerEvent;
use resonate::session::{CloseCause, SessionId};
use serde_json::json;
use support::{config_for, write_test_wav, RawClient, TestServer};
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn server() -> (TestServer, tempfile::TempDir) {
    server_with(|_| {}).await
}

async fn server_with(
    adjust: impl FnOnce(&mut resonate::server::ServerConfig),
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("source.wav");
    write_test_wav(&wav, 48_000, 2, 16, 1.0);
    let mut config = config_for(wav);
    adjust(&mut config);
    (TestServer::start(config).await, dir)
}

/// Connects a controller-only client (no audio) and completes the hello.
async fn controller(server: &mut TestServer, client_id: &str) -> (RawClient, SessionId) {
    let mut client = RawClient::connect(&server.url()).await;
    let session = server
        .next_event(|e| match e {
            ServerEvent::SessionOpened { session, .. } => Some(*session),
            _ => None,
        })
        .await;
    client.hello(client_id, &["controller@v1"], None).await;
    let hello = client.expect_type("server/hello").await;
    assert_eq!(hello["payload"]["active_roles"], json!(["controller@v1"]));
    (client, session)
}

async fn closed_event(server: &mut TestServer, id: SessionId) -> (Option<String>, CloseCause) {
    server
        .next_event(|e| match e {
            ServerEvent::SessionClosed {
                session,
                client_id,
                cause,
            } if *session == id => Some((client_id.clone(), cause.clone())),
            _ => None,
        })
        .await
}

/// Checks that a session still replies to `client/time`.
async fn assert_alive(client: &mut RawClient) {
    client
        .send_json(json!({"type": "client/time", "payload": {"client_transmitted": 42}}))
        .await;
    let reply = client.expect_type("server/time").await;
    assert_eq!(reply["payload"]["client_transmitted"], 42);
}

#[tokio::test]
async fn duplicate_client_id_replaces_old_session() {
    let (mut server, _dir) = server().await;
    let (mut first, first_id) = controller(&mut server, "same").await;
    let (mut second, second_id) = controller(&mut server, "same").await;

    let replaced = server
        .next_event(|e| match e {
            ServerEvent::ClientReplaced {
                client_id,
                old,
                new,
            } => Some((client_id.clone(), *old, *new)),
            _ => None,
        })
        .await;
    assert_eq!(replaced, ("same".to_string(), first_id, second_id));
    let (client_id, cause) = closed_event(&mut server, first_id).await;
    assert_eq!(client_id.as_deref(), Some("same"));
    assert_eq!(cause, CloseCause::Replaced);

    let (code, reason) = first
        .expect_close()
        .await
        .expect("old session gets a close frame");
    assert_eq!(code, 1000);
    assert!(reason.contains("replaced"), "{reason}");
    assert_alive(&mut second).await;
    server.stop().await;
}

#[tokio::test]
async fn abrupt_close_is_reported_once_as_reset() {
    let (mut server, _dir) = server().await;
    let (mut bystander, _) = controller(&mut server, "bystander").await;
    let (client, id) = controller(&mut server, "abrupt").await;
    drop(client);

    let (client_id, cause) = closed_event(&mut server, id).await;
    assert_eq!(client_id.as_deref(), Some("abrupt"));
    assert!(matches!(cause, CloseCause::PeerReset(_)), "{cause:?}");
    assert_alive(&mut bystander).await;

    // No second close report for the same session arrives.
    let (_, later) = controller(&mut server, "later").await;
    let next_close =
        tokio::time::timeout(Duration::from_millis(300), closed_event(&mut server, id)).await;
    assert!(next_close.is_err(), "a second Closed event for {id}");
    let _ = later;
    server.stop().await;
}

#[tokio::test]
async fn every_goodbye_reason_closes_with_that_reason() {
    let (mut server, _dir) = server().await;
    for reason in GoodbyeReason::ALL {
        let (mut client, id) = controller(&mut server, reason.as_str()).await;
        client
            .send_json(json!({"type": "client/goodbye", "payload": {"reason": reason.as_str()}}))
            .await;
        let (client_id, cause) = closed_event(&mut server, id).await;
        assert_eq!(client_id.as_deref(), Some(reason.as_str()));
        assert_eq!(cause, CloseCause::Goodbye(reason));
        assert_eq!(cause.wants_reconnect(), reason == GoodbyeReason::Restart);
        let (code, _) = client
            .expect_close()
            .await
            .expect("server closes after goodbye");
        assert_eq!(code, 1000);
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_frames_close_only_their_session() {
    let (mut server, _dir) =
        server_with(|config| config.limits.max_message_bytes = 64 * 1024).await;
    let (mut bystander, _) = controller(&mut server, "bystander").await;

    let cases: Vec<(&str, WsMessage, &str)> = vec![
        (
            "garbage",
            WsMessage::text("this is not json"),
            "not valid JSON",
        ),
        (
            "no type",
            WsMessage::text(r#"{"payload": {}}"#),
            "no string \"type\"",
        ),
        (
            "binary first",
            WsMessage::binary(vec![4u8; 20]),
            "expected client/hello first, got a binary frame",
        ),
        (
            "time first",
            WsMessage::text(r#"{"type":"client/time","payload":{"client_transmitted":1}}"#),
            "expected client/hello first, got client/time",
        ),
        (
            "wrong field type",
            WsMessage::text(r#"{"type":"client/hello","payload":{"client_id":5}}"#),
            "invalid payload of client/hello",
        ),
    ];
    for (name, frame, expected) in cases {
        let mut client = RawClient::connect(&server.url()).await;
        let id = server
            .next_event(|e| match e {
                ServerEvent::SessionOpened { session, .. } => Some(*session),
                _ => None,
            })
            .await;
        client.send_raw(frame).await;
        let (client_id, cause) = closed_event(&mut server, id).await;
        assert_eq!(client_id, None, "{name}");
        match &cause {
            CloseCause::ProtocolError(detail) => {
                assert!(detail.contains(expected), "{name}: {detail}")
            }
            other => panic!("{name}: expected a protocol error, got {other:?}"),
        }
        assert_alive(&mut bystander).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn wrong_message_after_hello_is_a_protocol_error() {
    let (mut server, _dir) = server().await;
    let (mut client, id) = controller(&mut server, "confused").await;
    client
        .send_json(json!({"type": "server/time", "payload": {"client_transmitted": 1, "server_received": 2, "server_transmitted": 3}}))
        .await;
    let (_, cause) = closed_event(&mut server, id).await;
    assert_eq!(
        cause,
        CloseCause::ProtocolError("server/time is a server message".into())
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_message_type_is_ignored() {
    let (mut server, _dir) = server().await;
    let (mut client, _) = controller(&mut server, "future").await;
    client
        .send_json(json!({"type": "client/dance", "payload": {"style": "waltz"}}))
        .await;
    assert_alive(&mut client).await;
    server.stop().await;
}

#[tokio::test]
async fn silent_connection_times_out_in_handshake() {
    let (mut server, _dir) =
        server_with(|config| config.limits.handshake_timeout = Duration::from_millis(300)).await;
    let mut client = RawClient::connect(&server.url()).await;
    let id = server
        .next_event(|e| match e {
            ServerEvent::SessionOpened { session, .. } => Some(*session),
            _ => None,
        })
        .await;
    let (_, cause) = closed_event(&mut server, id).await;
    assert_eq!(cause, CloseCause::HandshakeTimeout);
    let (code, _) = client.expect_close().await.expect("close frame");
    assert_eq!(code, 1008);
    server.stop().await;
}

#[tokio::test]
async fn server_time_stamps_are_ordered() {
    let (mut server, _dir) = server().await;
    let (mut client, _) = controller(&mut server, "timer").await;
    client
        .send_json(json!({"type": "client/time", "payload": {"client_transmitted": 7}}))
        .await;
    let reply = client.expect_type("server/time").await;
    let received = reply["payload"]["server_received"].as_i64().unwrap();
    let transmitted = reply["payload"]["server_transmitted"].as_i64().unwrap();
    assert!(received > 0);
    assert!(
        transmitted >= received,
        "T3 {transmitted} before T2 {received}"
    );
    server.stop().await;
}

#[tokio::test]
async fn wrong_path_is_rejected_with_404() {
    let (server, _dir) = server().await;
    let url = format!("ws://{}/elsewhere", server.addr);
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn peer_that_stops_answering_pings_times_out() {
    let (mut server, _dir) = server_with(|config| {
        config.limits.ping_interval = Duration::from_millis(100);
        config.limits.idle_timeout = Duration::from_millis(500);
    })
    .await;
    let (mut bystander, _) = controller(&mut server, "bystander").await;
    let (silent, id) = controller(&mut server, "silent").await;
    // The silent client keeps its socket open but never reads, so it never
    // sends a pong.
    // The bystander reads, and so replies to pings, for three idle timeouts.
    let keep_alive = tokio::spawn(async move {
        let reading = async {
            while let Some(frame) = bystander.ws.next().await {
                if matches!(frame, Ok(WsMessage::Close(_)) | Err(_)) {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_millis(1500), reading)
            .await
            .is_err()
    });
    let (client_id, cause) = closed_event(&mut server, id).await;
    assert_eq!(client_id.as_deref(), Some("silent"));
    assert_eq!(cause, CloseCause::IdleTimeout);
    drop(silent);
    let bystander_still_open = keep_alive.await.unwrap();
    assert!(bystander_still_open, "the bystander was closed too");
    server.stop().await;
}

/// Connects a player (16-bit stereo PCM) and completes the hello.
async fn player(server: &mut TestServer, client_id: &str) -> RawClient {
    let mut client = RawClient::connect(&server.url()).await;
    client
        .hello(client_id, &["player@v1"], Some((48_000, 2, 16)))
        .await;
    client.expect_type("server/hello").await;
    client
}

#[tokio::test]
async fn shared_grouping_puts_players_in_one_group() {
    let (mut server, _dir) = server().await;
    let mut first = player(&mut server, "one").await;
    let mut second = player(&mut server, "two").await;
    let first_group = first.expect_type("group/update").await;
    let second_group = second.expect_type("group/update").await;
    assert_eq!(
        first_group["payload"]["group_id"],
        second_group["payload"]["group_id"]
    );
    assert_eq!(second_group["payload"]["playback_state"], "playing");
    server.stop().await;
}

#[tokio::test]
async fn solo_grouping_gives_each_client_its_group() {
    let (mut server, _dir) =
        server_with(|config| config.grouping = resonate::server::Grouping::Solo).await;
    let mut first = player(&mut server, "one").await;
    let mut second = player(&mut server, "two").await;
    let first_group = first.expect_type("group/update").await;
    let second_group = second.expect_type("group/update").await;
    assert_ne!(
        first_group["payload"]["group_id"],
        second_group["payload"]["group_id"]
    );
    assert_eq!(first_group["payload"]["playback_state"], "playing");
    server.stop().await;
}

#[tokio::test]
async fn group_volume_command_spreads_delta_over_players() {
    let (mut server, _dir) = server().await;
    let mut quiet = player(&mut server, "quiet").await;
    let mut loud = player(&mut server, "loud").await;
    quiet.send_json(json!({"type": "client/state", "payload": {"state": "synchronized", "player": {"volume": 20, "muted": false}}})).await;
    loud.send_json(json!({"type": "client/state", "payload": {"state": "synchronized", "player": {"volume": 40, "muted": false}}})).await;

    let mut remote = RawClient::connect(&server.url()).await;
    remote.hello("remote", &["controller@v1"], None).await;
    remote.expect_type("server/hello").await;
    // Wait until the controller sees both players' volumes (mean 30).
    loop {
        let state = remote.expect_type("server/state").await;
        if state["payload"]["controller"]["volume"] == 30 {
            break;
        }
    }
    remote
        .send_json(json!({"type": "client/command", "payload": {"controller": {"command": "volume", "volume": 50}}}))
        .await;

    let quiet_command = quiet.expect_type("server/command").await;
    let loud_command = loud.expect_type("server/command").await;
    assert_eq!(
        quiet_command["payload"]["player"],
        json!({"command": "volume", "volume": 40})
    );
    assert_eq!(
        loud_command["payload"]["player"],
        json!({"command": "volume", "volume": 60})
    );
    server.stop().await;
}

#[tokio::test]
async fn fixed_volume_player_stays_out_of_group_volume() {
    let (mut server, _dir) = server().await;
    let mut adjustable = player(&mut server, "adjustable").await;
    adjustable
        .send_json(json!({"type": "client/state", "payload": {"state": "synchronized", "player": {"volume": 20, "muted": false}}}))
        .await;
    // A player that lists no commands, as legacy players do, at volume 100.
    let mut fixed = RawClient::connect(&server.url()).await;
    fixed
        .send_json(json!({"type": "client/hello", "payload": {
            "client_id": "fixed", "name": "fixed", "version": 1, "supported_roles": ["player@v1"],
            "player@v1_support": {
                "supported_formats": [{"codec": "pcm", "sample_rate": 48000, "channels": 2, "bit_depth": 16}],
                "buffer_capacity": 10_000_000, "supported_commands": [],
            },
        }}))
        .await;
    fixed.expect_type("server/hello").await;

    let mut remote = RawClient::connect(&server.url()).await;
    remote.hello("remote", &["controller@v1"], None).await;
    remote.expect_type("server/hello").await;
    // The group volume is the adjustable player's alone, not the mean of 20 and 100.
    loop {
        let state = remote.expect_type("server/state").await;
        if state["payload"]["controller"]["volume"] == 20 {
            break;
        }
        assert_ne!(
            state["payload"]["controller"]["volume"], 60,
            "the fixed player counted: {state}"
        );
    }
    remote
        .send_json(json!({"type": "client/command", "payload": {"controller": {"command": "volume", "volume": 50}}}))
        .await;
    let command = adjustable.expect_type("server/command").await;
    assert_eq!(
        command["payload"]["player"],
        json!({"command": "volume", "volume": 50})
    );
    let state = loop {
        let state = remote.expect_type("server/state").await;
        if state["payload"]["controller"]["volume"] != 20 {
            break state;
        }
    };
    assert_eq!(state["payload"]["controller"]["volume"], 50);
    server.stop().await;
}

#[tokio::test]
async fn group_mute_command_mutes_every_player() {
    let (mut server, _dir) = server().await;
    let mut first = player(&mut server, "one").await;
    let mut second = player(&mut server, "two").await;
    let mut remote = RawClient::connect(&server.url()).await;
    remote.hello("remote", &["controller@v1"], None).await;
    remote.expect_type("server/hello").await;
    remote
        .send_json(json!({"type": "client/command", "payload": {"controller": {"command": "mute", "mute": true}}}))
        .await;
    for client in [&mut first, &mut second] {
        let command = client.expect_type("server/command").await;
        assert_eq!(
            command["payload"]["player"],
            json!({"command": "mute", "mute": true})
        );
    }
    let state = loop {
        let state = remote.expect_type("server/state").await;
        if state["payload"]["controller"]["muted"] == true {
            break state;
        }
    };
    assert_eq!(state["payload"]["controller"]["muted"], true);
    server.stop().await;
}

#[tokio::test]
async fn messages_right_after_hello_are_kept() {
    let (server, _dir) = server().await;
    let mut client = RawClient::connect(&server.url()).await;
    // No wait for server/hello: the state and time request follow the hello
    // at once and must be processed in order, not rejected.
    client
        .hello("eager", &["player@v1"], Some((48_000, 2, 16)))
        .await;
    client
        .send_json(json!({"type": "client/state", "payload": {"state": "synchronized", "player": {"volume": 50, "muted": false}}}))
        .await;
    client
        .send_json(json!({"type": "client/time", "payload": {"client_transmitted": 9}}))
        .await;
    client.expect_type("server/hello").await;
    let reply = client.expect_type("server/time").await;
    assert_eq!(reply["payload"]["client_transmitted"], 9);
    server.stop().await;
}

#[tokio::test]
async fn peer_close_frame_gets_a_reply() {
    let (mut server, _dir) = server().await;
    let (mut client, id) = controller(&mut server, "polite").await;
    client.send_raw(WsMessage::Close(None)).await;
    let reply = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match client.ws.next().await {
                Some(Ok(WsMessage::Close(_))) => return true,
                Some(Ok(_)) => continue,
                _ => return false,
            }
        }
    })
    .await;
    assert_eq!(reply, Ok(true), "no close frame came back");
    let (_, cause) = closed_event(&mut server, id).await;
    assert!(matches!(cause, CloseCause::PeerClosed { .. }), "{cause:?}");
    server.stop().await;
}
