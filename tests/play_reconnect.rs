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
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let serve_args = ["serve", source.as_str(), "--listen", listen.as_str(), "--json"];

    let mut server = resonate(&serve_args);
    server.wait_event("listening", Duration::from_secs(20));
    let url = format!("ws://{listen}/sendspin");
    let mut player = resonate(&["play", "--server", &url, "--client-id", "comeback", "--output", "null", "--json"]);
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
