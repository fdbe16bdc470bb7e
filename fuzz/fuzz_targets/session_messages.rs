//! The session state machine fed any sequence of frames: it never panics,
//! and reports exactly one `Closed`, as its last event.
//!
//! Input: one byte choosing the side (server or client) and dialect, then
//! frames, each a kind byte (text, binary, ping, pong), a u16
//! little-endian length and the payload.
#![no_main]

use std::net::SocketAddr;

use futures_util::SinkExt;
use libfuzzer_sys::fuzz_target;
use resonate::dialect::Dialect;
use resonate::session::{self, EventKind, Side};
use resonate::transport::Limits;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;

fn frames(mut data: &[u8]) -> Vec<WsMessage> {
    let mut frames = Vec::new();
    while let Some((&kind, rest)) = data.split_first() {
        let Some((length, rest)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let length = usize::from(u16::from_le_bytes(*length)).min(rest.len());
        let (payload, rest) = rest.split_at(length);
        data = rest;
        frames.push(match kind % 4 {
            0 => WsMessage::text(String::from_utf8_lossy(payload).into_owned()),
            1 => WsMessage::binary(payload.to_vec()),
            2 => WsMessage::Ping(payload.to_vec().into()),
            _ => WsMessage::Pong(payload.to_vec().into()),
        });
    }
    frames
}

async fn run(side: Side, dialect: Dialect, frames: Vec<WsMessage>) {
    let (local, remote) = tokio::io::duplex(1 << 20);
    let limits = Limits::default();
    let local_role = if side == Side::Server { Role::Server } else { Role::Client };
    let remote_role = if side == Side::Server { Role::Client } else { Role::Server };
    let ws = WebSocketStream::from_raw_socket(local, local_role, Some(limits.websocket_config())).await;
    let mut peer_ws = WebSocketStream::from_raw_socket(remote, remote_role, None).await;
    let (events_tx, mut events) = mpsc::channel(1 << 14);
    let tracker = TaskTracker::new();
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let handle = session::spawn(ws, peer, side, dialect.codec(), limits, events_tx, &tracker);

    for frame in frames {
        if peer_ws.feed(frame).await.is_err() {
            break;
        }
    }
    let _ = peer_ws.flush().await;
    drop(peer_ws);

    let mut closed = 0;
    while let Some(event) = events.recv().await {
        assert_eq!(closed, 0, "an event after Closed: {:?}", event.kind);
        if matches!(event.kind, EventKind::Closed(_)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 1);
    drop(handle);
    tracker.close();
    tracker.wait().await;
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let side = if choice & 1 == 0 { Side::Server } else { Side::Client };
    let dialect = if choice & 2 == 0 { Dialect::SendspinV1 } else { Dialect::Resonate };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(run(side, dialect, frames(rest)));
});
