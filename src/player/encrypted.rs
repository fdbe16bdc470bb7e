//! The client side of Sendspin 1.0 connections: the Noise handshake and
//! `server/hello` before the session starts, and the codec they yield.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

use futures_util::SinkExt;
use serde_json::{json, Value};

use crate::dialect::sendspin::ClientPairing;
use crate::dialect::{Dialect, Outgoing, SendspinCodec, WireCodec};
use crate::noise::handshake::{self, ClientOptions, Established, HandshakeError};
use crate::noise::identity::encode_id;
use crate::noise::{Identity, PairingStore, PskCategory, Suite, PSK_LEN};
use crate::protocol::{ClientHello, Message};
use crate::session::CloseCause;

/// A client's keys and pairing state for encrypted connections.
#[derive(Clone, Debug)]
pub struct ClientKeys {
    pub identity: Identity,
    /// File of this client's pairing records (long-term PSKs).
    pub records_path: PathBuf,
    pub suite: Suite,
    pub pairing: ClientPairing,
    /// This client's pairing PSK, which a server holding its pairing token
    /// uses to pair with it.
    pub pairing_psk: Option<[u8; PSK_LEN]>,
}

/// Returns the codec of a new connection: for Sendspin 1.0, after running
/// the handshake and receiving `server/hello` on `ws`; for a cleartext
/// dialect, right away.
pub async fn open_codec<S>(
    ws: &mut WebSocketStream<S>,
    dialect: Dialect,
    keys: Option<&ClientKeys>,
    hello: &ClientHello,
    timeout: Duration,
) -> Result<Box<dyn WireCodec>, CloseCause>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !dialect.is_encrypted() {
        return Ok(dialect.codec());
    }
    let Some(keys) = keys else {
        return Err(CloseCause::ProtocolError(
            "no identity for an encrypted connection".into(),
        ));
    };
    match handshake_and_hello(ws, keys, hello, timeout).await {
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

async fn handshake_and_hello<S>(
    ws: &mut WebSocketStream<S>,
    keys: &ClientKeys,
    client_hello: &ClientHello,
    timeout: Duration,
) -> Result<SendspinCodec, HandshakeError>
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
        pairing_psk: keys.pairing_psk,
        expected_server: None,
        timeout,
    };
    let mut established = handshake::connect(ws, options).await?;
    let hello =
        handshake::receive_json(ws, &mut established.channel, "server/hello", timeout).await?;
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
    let Established {
        channel,
        peer_id,
        category,
        handshake_hash,
        ..
    } = established;
    let mut codec = SendspinCodec::client(
        channel,
        peer_id.clone(),
        name,
        category,
        keys.pairing.clone(),
    );
    if category == PskCategory::Pairing {
        pair_with_psk(
            ws,
            &mut codec,
            keys,
            client_hello,
            &peer_id,
            &handshake_hash,
            timeout,
        )
        .await?;
    }
    Ok(codec)
}

/// Runs the pairing PSK flow on a connection keyed with this client's
/// pairing PSK: `client/hello`, the pairing `server/activate`,
/// `client/pair-init` and `client/pair-finalize` with a new long-term PSK,
/// `server/pair-finalize`, then the record is stored and the server
/// re-handshakes to the new PSK. The activation that follows goes to the
/// session.
async fn pair_with_psk<S>(
    ws: &mut WebSocketStream<S>,
    codec: &mut SendspinCodec,
    keys: &ClientKeys,
    client_hello: &ClientHello,
    server_id: &str,
    handshake_hash: &[u8],
    timeout: Duration,
) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for frame in codec.encode_frames(&Outgoing::Message(Message::ClientHello(
        client_hello.clone(),
    ))) {
        ws.feed(frame).await?;
    }
    ws.flush().await?;
    codec.mark_hello_sent();

    let activation = receive_pairing_step(ws, codec, "server/activate", timeout).await?;
    let method = activation
        .pointer("/payload/pairing/method")
        .and_then(Value::as_str);
    if message_type(&activation) != Some("server/activate") || method != Some("pairing_psk") {
        return Err(HandshakeError::Malformed {
            what: "pairing server/activate",
            detail: format!("expected a pairing_psk activation, got {activation}"),
        });
    }
    let mut long_term = [0u8; PSK_LEN];
    rand::fill(&mut long_term);
    let init = json!({ "type": "client/pair-init", "payload": { "pairing_index": 1 } }).to_string();
    let finalize = json!({ "type": "client/pair-finalize", "payload": { "long_term_psk": encode_id(&long_term) } }).to_string();
    handshake::send_json(ws, codec.channel_mut(), &init).await?;
    handshake::send_json(ws, codec.channel_mut(), &finalize).await?;

    let finalized = receive_pairing_step(ws, codec, "server/pair-finalize", timeout).await?;
    if message_type(&finalized) != Some("server/pair-finalize") {
        return Err(HandshakeError::Malformed {
            what: "server/pair-finalize",
            detail: format!("got {finalized}"),
        });
    }
    let mut records =
        PairingStore::load(&keys.records_path).map_err(|err| HandshakeError::Malformed {
            what: "pairing record file",
            detail: err.to_string(),
        })?;
    records
        .insert(server_id, &long_term)
        .map_err(|err| HandshakeError::Malformed {
            what: "pairing record file",
            detail: err.to_string(),
        })?;
    tracing::info!(server_id, records = %keys.records_path.display(), "paired with the server; stored the pairing record");

    let message_1 = receive_pairing_step(ws, codec, "noise/handshake", timeout).await?;
    let options = ClientOptions {
        identity: &keys.identity,
        suite: keys.suite,
        records: Some(&records),
        pairing_psk: keys.pairing_psk,
        expected_server: Some(server_id),
        timeout,
    };
    handshake::rehandshake_client(
        ws,
        codec.channel_mut(),
        &message_1,
        options,
        server_id,
        handshake_hash,
    )
    .await?;
    Ok(())
}

/// Receives messages until one of type `expected` or `pair/abort` arrives.
/// Others, such as the `group/update` that aiosendspin 10.2.1 sends after
/// its pairing activation, are skipped.
async fn receive_pairing_step<S>(
    ws: &mut WebSocketStream<S>,
    codec: &mut SendspinCodec,
    expected: &'static str,
    timeout: Duration,
) -> Result<Value, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let message = handshake::receive_json(ws, codec.channel_mut(), expected, timeout).await?;
        match message_type(&message) {
            Some(found) if found == expected || found == "pair/abort" => return Ok(message),
            other => {
                tracing::debug!(message_type = ?other, expected, "skipping a message during pairing")
            }
        }
    }
}

fn message_type(message: &Value) -> Option<&str> {
    message.get("type").and_then(Value::as_str)
}
