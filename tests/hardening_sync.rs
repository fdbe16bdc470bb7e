//! A thousand malformed messages from one client reach `resonate serve`
//! while two `resonate play` processes play: both still write the source
//! sample for sample at the place the server timeline puts it, and the
//! server counts every rejection.

mod support;

#[path = "support/process.rs"]
mod process;

use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use process::{resonate, Proc};
use serde_json::json;
use support::{read_recording, write_test_wav, Recording};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const RATE: u32 = 48_000;
const CHANNELS: u16 = 2;

/// Malformed messages the abusive client sends, one connection each.
const MALFORMED: usize = 1000;

/// Connections the abusive client keeps open at once.
const ABUSERS: usize = 8;

fn start_player(url: &str, id: &str, wav: &Path) -> Proc {
    let output = format!("wav:{}", wav.display());
    resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        url,
        "--client-id",
        id,
        "--output",
        &output,
        "--sample-rate",
        "48000",
        "--bit-depth",
        "16",
        "--json",
        "--no-drift-correction",
    ])
}

/// Checks that `recording` is the source from the frame its timestamp
/// maps to, and returns that frame.
fn assert_matches_source(
    name: &str,
    recording: &Recording,
    source: &[i32],
    start_us: i64,
) -> usize {
    let offset_us = recording.first_frame_server_us - start_us;
    assert!(
        offset_us >= 0,
        "{name}: starts {offset_us} us before the program"
    );
    let frame = ((offset_us as f64) * RATE as f64 / 1e6).round() as usize;
    let start = frame * CHANNELS as usize;
    let audible = recording
        .samples
        .len()
        .min(source.len().saturating_sub(start));
    let played = &recording.samples[..audible];
    assert!(!played.is_empty(), "{name}: wrote no audio");
    let expected = &source[start..start + played.len()];
    let first_difference = played.iter().zip(expected).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "{name}: differs from the source (frame offset {frame})"
    );
    frame
}

/// Returns malformed message number `n`: what to send after an optional
/// valid hello.
fn malformed(n: usize) -> (bool, WsMessage) {
    let hello = |payload: serde_json::Value| {
        WsMessage::text(json!({"type": "client/hello", "payload": payload}).to_string())
    };
    match n % 7 {
        0 => (false, WsMessage::text("this is not json")),
        1 => (false, WsMessage::binary(vec![4u8; 20])),
        2 => (
            false,
            WsMessage::text(r#"{"type":"client/time","payload":{"client_transmitted":1}}"#),
        ),
        3 => (false, hello(json!({"client_id": 5}))),
        4 => (
            false,
            hello(
                json!({"client_id": format!("bad-{n}"), "name": "x", "version": 99, "supported_roles": []}),
            ),
        ),
        5 => (
            true,
            WsMessage::text("{\"type\": \"client/state\", \"payload\": "),
        ),
        _ => (
            true,
            WsMessage::text(r#"{"type":"client/command","payload":{"controller":{"command":7}}}"#),
        ),
    }
}

/// Sends malformed message `n` on a new connection and waits until the
/// server closes it. Returns whether it did.
async fn send_malformed(url: &str, n: usize) -> bool {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect to serve");
    let (with_hello, message) = malformed(n);
    if with_hello {
        let hello = json!({"type": "client/hello", "payload": {
            "client_id": format!("abuser-{n}"), "name": "abuser", "version": 1, "supported_roles": ["controller@v1"],
        }});
        ws.send(WsMessage::text(hello.to_string()))
            .await
            .expect("send hello");
    }
    ws.send(message).await.expect("send malformed message");
    let closed = async {
        while let Some(frame) = ws.next().await {
            if matches!(frame, Ok(WsMessage::Close(_)) | Err(_)) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .is_ok()
}

async fn abuse(url: String) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..ABUSERS {
        let url = url.clone();
        tasks.spawn(async move {
            let mut closed = 0;
            for n in (worker..MALFORMED).step_by(ABUSERS) {
                if send_malformed(&url, n).await {
                    closed += 1;
                }
            }
            closed
        });
    }
    let mut closed = 0;
    while let Some(result) = tasks.join_next().await {
        closed += result.expect("abuser task");
    }
    closed
}

/// Returns the sum of the server's `rejected` counters, read from its
/// Prometheus text at `telemetry_addr`.
async fn rejected_total(telemetry_addr: &str) -> u64 {
    let mut tcp = tokio::net::TcpStream::connect(telemetry_addr)
        .await
        .expect("connect to telemetry");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tcp.read_to_string(&mut body).await.unwrap();
    body.lines()
        .filter(|line| line.starts_with("resonate_rejected_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn thousand_malformed_messages_leave_players_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source.wav");
    let source = write_test_wav(&source_path, RATE, CHANNELS, 16, 6.0);

    let source_arg = source_path.to_str().unwrap();
    let mut server = resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        source_arg,
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--start-delay-ms",
        "1500",
        "--json",
        "--telemetry",
        "127.0.0.1:0",
    ]);
    let telemetry = server.wait_event("telemetry", Duration::from_secs(20));
    let telemetry_addr = telemetry["addr"].as_str().unwrap().to_string();
    let listening = server.wait_event("listening", Duration::from_secs(20));
    let url = listening["url"].as_str().unwrap().to_string();

    let first_wav = dir.path().join("first.wav");
    let second_wav = dir.path().join("second.wav");
    let mut first = start_player(&url, "first", &first_wav);
    let started = server.wait_event("program_started", Duration::from_secs(20));
    let start_us = started["start_us"].as_i64().unwrap();
    let mut second = start_player(&url, "second", &second_wav);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let closed = runtime.block_on(abuse(url.clone()));
    assert_eq!(
        closed, MALFORMED,
        "the server left connections with malformed messages open"
    );

    server.wait_event("program_ended", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    for (name, player) in [("first", &mut first), ("second", &mut second)] {
        let status = player.interrupt();
        assert!(status.success(), "{name} exited with {status}");
    }

    // The telemetry snapshot is published every 500 ms.
    let counted = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let total = rejected_total(&telemetry_addr).await;
            if total >= MALFORMED as u64 || tokio::time::Instant::now() > deadline {
                return total;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(counted, MALFORMED as u64);
    assert!(server.interrupt().success());

    let first = read_recording(&first_wav);
    let second = read_recording(&second_wav);
    let first_frame = assert_matches_source("first", &first, &source, start_us);
    let second_frame = assert_matches_source("second", &second, &source, start_us);
    assert_eq!(first_frame, 0, "first player missed the start");
    assert_eq!(second_frame, 0, "second player missed the start");
    assert!(
        first.samples.len() >= source.len(),
        "first player did not play everything"
    );
    assert!(
        second.samples.len() >= source.len(),
        "second player did not play everything"
    );
}
