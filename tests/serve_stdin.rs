//! `resonate serve --stdin-format`: raw PCM written to the server's stdin
//! reaches a player unchanged, and controllers get only the commands a
//! live stream supports.

mod support;

#[path = "support/process.rs"]
mod process;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::RawClient;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test]
async fn stdin_pcm_reaches_player_unchanged() {
    // One second of 48 kHz stereo 16-bit PCM, every sample distinct.
    let frames = 48_000usize;
    let pcm: Vec<u8> = (0..frames * 2)
        .flat_map(|n| (((n * 7919) % 60_000) as i32 - 30_000).to_le_bytes()[..2].to_vec())
        .collect();
    let mut command = Command::new(env!("CARGO_BIN_EXE_resonate"));
    command
        .args([
            "serve",
            "--dialect",
            "sendspin-v1",
            "--stdin-format",
            "48000:2:16",
            "--listen",
            "127.0.0.1:0",
            "--no-mdns",
            "--json",
        ])
        .args(["--start-delay-ms", "300"])
        .stdin(Stdio::piped());
    let mut serve = process::spawn(command);
    let mut stdin = serve.child.stdin.take().unwrap();
    stdin.write_all(&pcm).unwrap();
    drop(stdin);
    let listening = serve.wait_event("listening", Duration::from_secs(10));
    let url = listening["url"].as_str().unwrap().to_string();

    let mut remote = RawClient::connect(&url).await;
    remote.hello("remote", &["controller@v1"], None).await;
    remote.expect_type("server/hello").await;
    let state = remote.expect_type("server/state").await;
    assert_eq!(
        state["payload"]["controller"]["supported_commands"],
        json!(["play", "stop", "volume", "mute", "switch"])
    );

    let mut player = RawClient::connect(&url).await;
    player
        .hello("player", &["player@v1"], Some((48_000, 2, 16)))
        .await;
    let mut received = Vec::new();
    loop {
        match player
            .next_frame()
            .await
            .expect("the server keeps the connection open")
        {
            WsMessage::Binary(bytes) if bytes[0] == 4 => received.extend_from_slice(&bytes[9..]),
            WsMessage::Text(text) if text.as_str().contains("\"stream/end\"") => break,
            _ => {}
        }
    }
    assert_eq!(received.len(), pcm.len());
    assert!(
        received == pcm,
        "the PCM differs from what was written to stdin"
    );
    serve.interrupt();
}
