//! The server side of Sendspin 1.0 connections: telling encrypted clients
//! from cleartext v1 ones on one path, the Noise handshake, `server/hello`,
//! and who may play without pairing.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use crate::dialect::{Dialect, SendspinCodec, WireCodec};
use crate::noise::handshake::{self, PskChoice, ServerOptions};
use crate::noise::{Identity, PairingStore, PskCategory};

/// A server's keys and admission policy for encrypted clients.
#[derive(Clone, Debug)]
pub struct ServerKeys {
    pub identity: Identity,
    /// File of the server's pairing records (long-term PSKs by client).
    pub records_path: PathBuf,
    /// Also accept cleartext Sendspin v1 clients on the same path.
    pub accept_v1: bool,
    /// Give roles to every unpaired client that offers unpaired access.
    pub allow_unpaired: bool,
    /// Unpaired clients the operator approved, by `client_id`.
    pub approved: HashSet<String>,
}

/// An accepted connection ready for its session: dialect, codec and any
/// frame already read.
pub struct Opened {
    pub dialect: Dialect,
    pub codec: Box<dyn WireCodec>,
    /// A frame read to tell the dialects apart, for the session to handle
    /// first.
    pub first_frame: Option<WsMessage>,
}

/// Reads the first message of a new connection and opens it in the
/// dialect it speaks: a cleartext `client/hello` is Sendspin v1 (when
/// `keys.accept_v1`), anything else runs the 1.0 handshake. Returns `None`
/// after closing a connection that failed.
pub async fn open<S>(ws: &mut WebSocketStream<S>, peer: SocketAddr, keys: &ServerKeys, name: &str, timeout: Duration) -> Option<Opened>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = match tokio::time::timeout(timeout, next_data_frame(ws)).await {
        Ok(Some(frame)) => frame,
        Ok(None) => return None,
        Err(_) => {
            tracing::info!(%peer, ?timeout, "no first message; closing");
            let _ = ws.close(None).await;
            return None;
        }
    };
    let text = match &first {
        WsMessage::Text(text) => text.as_str().to_string(),
        _ => String::new(),
    };
    if is_client_hello(&text) {
        if keys.accept_v1 {
            return Some(Opened {
                dialect: Dialect::SendspinV1,
                codec: Dialect::SendspinV1.codec(),
                first_frame: Some(first),
            });
        }
        tracing::info!(%peer, "rejected a cleartext Sendspin v1 client; pass --accept-v1 to accept v1 clients next to Sendspin 1.0");
        let _ = ws.close(None).await;
        return None;
    }

    let records = match PairingStore::load(&keys.records_path) {
        Ok(records) => Some(records),
        Err(err) => {
            tracing::warn!(cause = %err, "cannot read the pairing records; admitting clients as unpaired");
            None
        }
    };
    let choose = |client_id: &str| {
        let record = records.as_ref().and_then(|store| store.record_of(client_id)).and_then(|r| r.psk_bytes());
        Some(match record {
            Some(psk) => PskChoice {
                psk,
                category: PskCategory::LongTerm,
            },
            None => PskChoice::sentinel(),
        })
    };
    let options = ServerOptions {
        identity: &keys.identity,
        timeout,
    };
    let init = (!text.is_empty()).then_some(text);
    let established = match handshake::accept(ws, init, options, choose).await {
        Ok(established) => established,
        Err(err) => {
            // Handshake failures are silent: no message, only the close.
            tracing::info!(%peer, cause = %err, "Sendspin 1.0 handshake failed");
            let _ = ws.close(None).await;
            return None;
        }
    };
    let mut channel = established.channel;
    let hello = json!({ "type": "server/hello", "payload": { "name": name } }).to_string();
    if let Err(err) = handshake::send_json(ws, &mut channel, &hello).await {
        tracing::info!(%peer, cause = %err, "sending server/hello failed");
        return None;
    }
    let client_id = established.peer_id;
    let admitted = established.category == PskCategory::LongTerm
        || (!established.credential_mismatch && (keys.allow_unpaired || keys.approved.contains(&client_id)));
    if established.credential_mismatch {
        tracing::warn!(%peer, client = %client_id, records = %keys.records_path.display(), "client could not use its pairing record, so it gets no roles until it pairs again or its record is removed from the file");
    } else if !admitted {
        tracing::warn!(%peer, client = %client_id, "unpaired client is not approved, so it gets no roles; approve it with --approve {client_id} or pass --allow-unpaired");
    }
    tracing::info!(%peer, client = %client_id, category = established.category.code(), suite = %established.suite, "Noise handshake done");
    let codec = SendspinCodec::server(channel, client_id, established.category).with_admission(admitted);
    Some(Opened {
        dialect: Dialect::Sendspin,
        codec: Box::new(codec),
        first_frame: None,
    })
}

/// Returns the next text or binary frame, or `None` when the connection ends.
async fn next_data_frame<S>(ws: &mut WebSocketStream<S>) -> Option<WsMessage>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match ws.next().await? {
            Ok(frame @ (WsMessage::Text(_) | WsMessage::Binary(_))) => return Some(frame),
            Ok(WsMessage::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

fn is_client_hello(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| value.get("type").and_then(|t| t.as_str()).map(|t| t == "client/hello"))
        .unwrap_or(false)
}
