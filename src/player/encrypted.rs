//! The client side of Sendspin 1.0 connections: the Noise handshake and
//! `server/hello` before the session starts, and the codec they yield.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

use crate::dialect::sendspin::ClientPairing;
use crate::dialect::{Dialect, SendspinCodec, WireCodec};
use crate::noise::handshake::{self, ClientOptions, HandshakeError};
use crate::noise::{Identity, PairingStore, Suite};
use crate::session::CloseCause;

/// A client's keys and pairing state for encrypted connections.
#[derive(Clone, Debug)]
pub struct ClientKeys {
    pub identity: Identity,
    /// File of this client's pairing records (long-term PSKs).
    pub records_path: PathBuf,
    pub suite: Suite,
    pub pairing: ClientPairing,
}

/// Returns the codec of a new connection: for Sendspin 1.0, after running
/// the handshake and receiving `server/hello` on `ws`; for a cleartext
/// dialect, right away.
pub async fn open_codec<S>(
    ws: &mut WebSocketStream<S>,
    dialect: Dialect,
    keys: Option<&ClientKeys>,
    timeout: Duration,
) -> Result<Box<dyn WireCodec>, CloseCause>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !dialect.is_encrypted() {
        return Ok(dialect.codec());
    }
    let Some(keys) = keys else {
        return Err(CloseCause::ProtocolError("no identity for an encrypted connection".into()));
    };
    match handshake_and_hello(ws, keys, timeout).await {
        Ok(codec) => Ok(Box::new(codec)),
        Err(err) => {
            // Handshake failures are silent: close without another message.
            let _ = futures_util::SinkExt::close(ws).await;
            tracing::warn!(cause = %err, "Sendspin 1.0 handshake failed");
            Err(match err {
                HandshakeError::Timeout { .. } => CloseCause::HandshakeTimeout,
                other => CloseCause::ProtocolError(other.to_string()),
            })
        }
    }
}

async fn handshake_and_hello<S>(ws: &mut WebSocketStream<S>, keys: &ClientKeys, timeout: Duration) -> Result<SendspinCodec, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let records = match PairingStore::load(&keys.records_path) {
        Ok(records) => Some(records),
        Err(err) => {
            tracing::warn!(cause = %err, "cannot read the pairing records; connecting without them");
            None
        }
    };
    let options = ClientOptions {
        identity: &keys.identity,
        suite: keys.suite,
        records: records.as_ref(),
        pairing_psk: None,
        expected_server: None,
        timeout,
    };
    let mut established = handshake::connect(ws, options).await?;
    let hello = handshake::receive_json(ws, &mut established.channel, "server/hello", timeout).await?;
    if hello.get("type").and_then(|t| t.as_str()) != Some("server/hello") {
        return Err(HandshakeError::Malformed {
            what: "server/hello",
            detail: format!("the first encrypted message is {:?}", hello.get("type")),
        });
    }
    let name = hello
        .pointer("/payload/name")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_string();
    tracing::info!(server_id = %established.peer_id, %name, category = established.category.code(), suite = %established.suite, "Noise handshake done");
    Ok(SendspinCodec::client(
        established.channel,
        established.peer_id,
        name,
        established.category,
        keys.pairing.clone(),
    ))
}
