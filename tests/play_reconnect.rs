//! `resonate play` reconnects after its server goes away and comes back.

mod support;

#[path = "support/process.rs"]
mod process;

use std::time::Duration;

use process::resonate;
use support::write_test_wav;

#[test]
fn player_reconnects_after_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.wav");
    write_test_wav(&source, 48_000, 2, 16, 10.0);
    let source = source.to_str().unwrap().to_string();

    // A port that was free a moment ago; the restarted server reuses it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let serve_args = [
        "serve",
        "--dialect",
        "sendspin-v1",
        source.as_str(),
        "--listen",
        listen.as_str(),
        "--no-mdns",
        "--json",
    ];

    let mut server = resonate(&serve_args);
    server.wait_event("listening", Duration::from_secs(20));
    let url = format!("ws://{listen}/sendspin");
    let mut player = resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        &url,
        "--client-id",
        "comeback",
        "--output",
        "null",
        "--json",
    ]);
    player.wait_event("connected", Duration::from_secs(20));

    assert!(server.interrupt().success());
    let disconnected = player.wait_event("disconnected", Duration::from_secs(20));
    assert_eq!(disconnected["cause"], "peer_closed", "{disconnected}");

    let mut restarted = resonate(&serve_args);
    restarted.wait_event("listening", Duration::from_secs(20));
    let joined = restarted.wait_event("client_joined", Duration::from_secs(30));
    assert_eq!(joined["client_id"], "comeback");
    player.wait_event("connected", Duration::from_secs(20));
    player.wait_event("stream_started", Duration::from_secs(20));

    assert!(player.interrupt().success());
    let closed = restarted.wait_event("session_closed", Duration::from_secs(20));
    assert_eq!(closed["cause"], "goodbye", "{closed}");
    assert!(restarted.interrupt().success());
}

#[test]
fn wrong_path_fails_at_once_with_404() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.wav");
    write_test_wav(&source, 48_000, 2, 16, 1.0);
    let mut server = resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        source.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--json",
    ]);
    let listening = server.wait_event("listening", Duration::from_secs(20));
    let addr = listening["addr"].as_str().unwrap().to_string();

    let wrong = format!("ws://{addr}/elsewhere");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args([
            "play",
            "--dialect",
            "sendspin-v1",
            "--server",
            &wrong,
            "--output",
            "null",
            "--connect-attempts",
            "50",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("has no endpoint at /elsewhere (HTTP 404)"),
        "{stderr}"
    );
    assert!(server.interrupt().success());
}

#[test]
fn player_replaced_by_same_id_stops() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.wav");
    write_test_wav(&source, 48_000, 2, 16, 5.0);
    let mut server = resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        source.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--json",
    ]);
    let url = server.wait_event("listening", Duration::from_secs(20))["url"]
        .as_str()
        .unwrap()
        .to_string();

    let play_args = [
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        url.as_str(),
        "--client-id",
        "twin",
        "--output",
        "null",
        "--json",
    ];
    let mut first = resonate(&play_args);
    first.wait_event("connected", Duration::from_secs(20));
    let mut second = resonate(&play_args);
    second.wait_event("connected", Duration::from_secs(20));

    // The replaced player stops with status 1 instead of replacing the
    // other one in turn.
    let status = first.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let replaced = server.wait_event("client_replaced", Duration::from_secs(20));
    assert_eq!(replaced["client_id"], "twin");
    let disconnected = first.wait_event("disconnected", Duration::from_secs(5));
    assert!(
        disconnected["detail"]
            .as_str()
            .unwrap()
            .contains("same client_id"),
        "{disconnected}"
    );

    // The newer player keeps its session.
    assert!(second.interrupt().success());
    let closed = server.wait_event("session_closed", Duration::from_secs(20));
    assert_eq!(closed["cause"], "replaced");
    let closed = server.wait_event("session_closed", Duration::from_secs(20));
    assert_eq!(closed["cause"], "goodbye");
    assert!(server.interrupt().success());
}
