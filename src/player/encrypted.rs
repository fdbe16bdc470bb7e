//! The client side of Sendspin 1.0 connections: the Noise handshake and
//! `server/hello` before the session starts, and the codec they yield.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

use futures_util::SinkExt;
use serde_json::{json, Value};

use crate::dialect::sendspin::ClientPairing;
use crate::dialect::sendspin::RekeyKeys;
use crate::dialect::{Dialect, Outgoing, SendspinCodec, WireCodec};

use crate::noise::cpace::{Cpace, Role};
use crate::noise::handshake::{self, ClientOptions, Established, HandshakeError};
use crate::noise::identity::encode_id;
use crate::noise::pairing_code::{self, PairingError, StaticCode, PSK_WRAP_LABEL};
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
    /// Taken while a pairing runs, and shared by the clones of these keys,
    /// so that a listening player pairs with one server at a time.
    pub pairing_slot: PairingSlot,
}

/// The right to run one pairing at a time. A listening player keeps one
/// pairing connection beside its playback connection, and rejects a second
/// pairing server with `pair/abort` (`concurrent_attempt`) while one runs.
#[derive(Clone, Debug, Default)]
pub struct PairingSlot(Arc<AtomicBool>);

impl PairingSlot {
    /// Takes the slot, or returns `None` when another pairing took it.
    /// The slot frees itself when the guard drops.
    pub fn try_take(&self) -> Option<PairingGuard> {
        self.0
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| PairingGuard(self.0.clone()))
    }
}

/// A taken [`PairingSlot`], freed on drop.
#[derive(Debug)]
pub struct PairingGuard(Arc<AtomicBool>);

impl Drop for PairingGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl ClientKeys {
    /// Returns the keys of a client that connects unpaired with `identity`:
    /// no pairing records, no pairing PSK, the ChaChaPoly suite. Probes,
    /// observers and stress clients use them.
    pub fn unpaired(identity: Identity) -> ClientKeys {
        ClientKeys {
            identity,
            records_path: PathBuf::new(),
            suite: Suite::ChaChaPoly,
            pairing: ClientPairing::default(),
            pairing_psk: None,
            pairing_slot: PairingSlot::default(),
        }
    }
}

/// The failure of a connection to open.
#[derive(Debug)]
pub struct OpenFailure {
    pub cause: CloseCause,
    /// The server closed the connection before sending `server/init`,
    /// as servers that speak only cleartext dialects do.
    pub before_init: bool,
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
) -> Result<Box<dyn WireCodec>, OpenFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !dialect.is_encrypted() {
        return Ok(dialect.codec());
    }
    let Some(keys) = keys else {
        return Err(OpenFailure {
            cause: CloseCause::ProtocolError("no identity for an encrypted connection".into()),
            before_init: false,
        });
    };
    match handshake_and_hello(ws, keys, hello, timeout).await {
        Ok(codec) => Ok(Box::new(codec)),
        Err(err) => {
            // Handshake failures are silent: close without another message.
            let _ = futures_util::SinkExt::close(ws).await;
            tracing::warn!(cause = %err, "Sendspin 1.0 handshake failed");
            let before_init = matches!(
                err,
                HandshakeError::Closed {
                    what: "server/init"
                }
            );
            let cause = match err {
                HandshakeError::Timeout { .. } => CloseCause::HandshakeTimeout,
                other => CloseCause::ProtocolError(other.to_string()),
            };
            Err(OpenFailure { cause, before_init })
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
    let handshake_hash = if category == PskCategory::Pairing {
        pair_with_psk(
            ws,
            &mut codec,
            keys,
            client_hello,
            &peer_id,
            &handshake_hash,
            timeout,
        )
        .await?
    } else {
        handshake_hash
    };
    Ok(codec.with_rekey(RekeyKeys {
        identity: keys.identity.clone(),
        suite: keys.suite,
        records_path: keys.records_path.clone(),
        pairing_psk: keys.pairing_psk,
        handshake_hash,
    }))
}

/// Runs the pairing PSK flow on a connection keyed with this client's
/// pairing PSK: `client/hello`, the pairing `server/activate`,
/// `client/pair-init` and `client/pair-finalize` with a new long-term PSK,
/// `server/pair-finalize`, then the record is stored and the server
/// re-handshakes to the new PSK. The activation that follows goes to the
/// session. Returns the hash of that re-handshake.
async fn pair_with_psk<S>(
    ws: &mut WebSocketStream<S>,
    codec: &mut SendspinCodec,
    keys: &ClientKeys,
    client_hello: &ClientHello,
    server_id: &str,
    handshake_hash: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, HandshakeError>
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
    let Some(_pairing) = keys.pairing_slot.try_take() else {
        let abort = json!({ "type": "pair/abort", "payload": { "reason": "concurrent_attempt" } });
        handshake::send_json(ws, codec.channel_mut(), &abort.to_string()).await?;
        return Err(HandshakeError::ConcurrentPairing);
    };
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
    store_and_rehandshake(
        ws,
        codec,
        keys,
        server_id,
        &long_term,
        handshake_hash,
        timeout,
    )
    .await
}

/// Stores the pairing record with the new long-term PSK once the server
/// confirmed its own, then completes the server's re-handshake to that PSK.
/// Returns the new handshake hash.
async fn store_and_rehandshake<S>(
    ws: &mut WebSocketStream<S>,
    codec: &mut SendspinCodec,
    keys: &ClientKeys,
    server_id: &str,
    long_term: &[u8; PSK_LEN],
    handshake_hash: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut records =
        PairingStore::load(&keys.records_path).map_err(|err| HandshakeError::Malformed {
            what: "pairing record file",
            detail: err.to_string(),
        })?;
    records
        .insert(server_id, long_term)
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
    let (hash, category) = handshake::rehandshake_client(
        ws,
        codec.channel_mut(),
        &message_1,
        options,
        server_id,
        handshake_hash,
    )
    .await?;
    // The session is paired from here on, so a later server/unpair applies.
    codec.set_category(category);
    Ok(hash)
}

/// The outcome of a pairing run by `play pair`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paired {
    /// A new pairing record for this server, made with the method named.
    New {
        server_id: String,
        method: &'static str,
    },
    /// The connection used an existing record: nothing to pair.
    Already { server_id: String },
}

/// Connects as `play pair` does: runs the handshake, sends `hello`, and
/// pairs by whichever method the server starts, the pairing PSK (when the
/// server has this client's pairing token) or `code`. Waits up to
/// `window` for the server to start, as the client's pairing window.
pub async fn pair<S>(
    ws: &mut WebSocketStream<S>,
    keys: &ClientKeys,
    hello: &ClientHello,
    code: &StaticCode,
    window: Duration,
    timeout: Duration,
) -> Result<Paired, PairingError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let options = ClientOptions {
        identity: &keys.identity,
        suite: keys.suite,
        records: None,
        pairing_psk: keys.pairing_psk,
        expected_server: None,
        timeout,
    };
    let mut established = handshake::connect(ws, options).await?;
    let server_hello =
        handshake::receive_json(ws, &mut established.channel, "server/hello", timeout).await?;
    if message_type(&server_hello) != Some("server/hello") {
        return Err(PairingError::Protocol(format!(
            "the first encrypted message is {server_hello}, expected server/hello"
        )));
    }
    let Established {
        channel,
        peer_id: server_id,
        category,
        handshake_hash,
        ..
    } = established;
    let mut codec = SendspinCodec::client(
        channel,
        server_id.clone(),
        String::new(),
        category,
        keys.pairing.clone(),
    );
    match category {
        PskCategory::Pairing => {
            pair_with_psk(
                ws,
                &mut codec,
                keys,
                hello,
                &server_id,
                &handshake_hash,
                timeout,
            )
            .await?;
            leave_after_pairing(ws, &mut codec, timeout).await;
            return Ok(Paired::New {
                server_id,
                method: "pairing_psk",
            });
        }
        PskCategory::LongTerm => return Ok(Paired::Already { server_id }),
        PskCategory::Sentinel => {}
    }
    for frame in codec.encode_frames(&Outgoing::Message(Message::ClientHello(hello.clone()))) {
        ws.feed(frame).await.map_err(HandshakeError::from)?;
    }
    ws.flush().await.map_err(HandshakeError::from)?;
    codec.mark_hello_sent();

    // The pairing window: wait for a static-code pairing activation.
    let deadline = tokio::time::Instant::now() + window;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(PairingError::NotStarted(window));
        }
        let activation = match receive_pairing_step(ws, &mut codec, "server/activate", left).await {
            Err(HandshakeError::Timeout { .. }) => return Err(PairingError::NotStarted(window)),
            other => other?,
        };
        if message_type(&activation) == Some("pair/abort") {
            tracing::info!(%activation, "the server aborted a pairing attempt; waiting for the next");
            continue;
        }
        match activation
            .pointer("/payload/pairing/method")
            .and_then(Value::as_str)
        {
            Some("static_pairing_code") => break,
            Some(other) => {
                let abort = json!({ "type": "pair/abort", "payload": { "reason": "method_not_supported" } });
                handshake::send_json(ws, codec.channel_mut(), &abort.to_string())
                    .await
                    .map_err(HandshakeError::from)?;
                tracing::warn!(
                    method = other,
                    "the server started a pairing method this client does not offer"
                );
            }
            None => tracing::info!(
                "the server activated the connection without pairing; waiting for a pairing"
            ),
        }
    }
    pair_with_static_code(
        ws,
        &mut codec,
        keys,
        &server_id,
        &handshake_hash,
        code,
        timeout,
    )
    .await?;
    leave_after_pairing(ws, &mut codec, timeout).await;
    Ok(Paired::New {
        server_id,
        method: "static_pairing_code",
    })
}

/// Waits for the `server/activate` that ends the pairing activity, then
/// sends `client/goodbye`: `play pair` only pairs, so it leaves instead of
/// playing.
async fn leave_after_pairing<S>(
    ws: &mut WebSocketStream<S>,
    codec: &mut SendspinCodec,
    timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match receive_pairing_step(ws, codec, "server/activate", timeout).await {
        Ok(activation) => tracing::debug!(%activation, "pairing ended"),
        Err(err) => {
            tracing::info!(cause = %err, "no server/activate after pairing; leaving anyway")
        }
    }
    let goodbye = json!({ "type": "client/goodbye", "payload": { "reason": "shutdown" } });
    if let Err(err) = handshake::send_json(ws, codec.channel_mut(), &goodbye.to_string()).await {
        tracing::info!(cause = %err, "the server left before client/goodbye");
    }
}

/// Runs the static pairing code flow after its `server/activate`:
/// `client/pair-init`, the CPace round with the code, key confirmation,
/// and the new long-term PSK sealed under the CPace output.
async fn pair_with_static_code<S>(
    ws: &mut WebSocketStream<S>,
    codec: &mut SendspinCodec,
    keys: &ClientKeys,
    server_id: &str,
    handshake_hash: &[u8],
    code: &StaticCode,
    timeout: Duration,
) -> Result<(), PairingError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    const PAIRING_INDEX: u32 = 1;
    let send = |message: Value| message.to_string();
    let init = json!({ "type": "client/pair-init", "payload": { "pairing_index": PAIRING_INDEX } });
    handshake::send_json(ws, codec.channel_mut(), &send(init))
        .await
        .map_err(HandshakeError::from)?;

    let auth = expect_step(ws, codec, "server/pair-auth", timeout).await?;
    let server_share = pairing_code::payload_field(&auth, "pake_msg_1")?;
    let sid = pairing_code::pake_sid(handshake_hash, PAIRING_INDEX, 1);
    let pake = Cpace::start(
        Role::Responder,
        code.digits().as_bytes(),
        b"",
        &sid,
        b"client",
    )
    .map_err(|err| PairingError::Protocol(err.to_string()))?;
    let own_share = pake.share();
    let reply =
        json!({ "type": "client/pair-auth", "payload": { "pake_msg_2": encode_id(&own_share) } });
    handshake::send_json(ws, codec.channel_mut(), &send(reply))
        .await
        .map_err(HandshakeError::from)?;
    let pake_keys = pake
        .finish(&server_share, b"server")
        .map_err(|err| PairingError::Protocol(err.to_string()))?;

    let confirm = expect_step(ws, codec, "server/pair-confirm", timeout).await?;
    let server_tag = pairing_code::payload_field(&confirm, "server_kc")?;
    if !pake_keys.verify_peer_tag(&server_tag) {
        let abort =
            json!({ "type": "pair/abort", "payload": { "reason": "pairing_code_mismatch" } });
        handshake::send_json(ws, codec.channel_mut(), &send(abort))
            .await
            .map_err(HandshakeError::from)?;
        return Err(PairingError::CodeMismatch);
    }
    let long_term: [u8; PSK_LEN] = rand::random();
    let key = pairing_code::wrap_key(PSK_WRAP_LABEL, &sid, pake_keys.isk());
    let sealed = pairing_code::seal(keys.suite, &key, &long_term);
    let confirm = json!({ "type": "client/pair-confirm", "payload": { "client_kc": encode_id(&pake_keys.own_tag()) } });
    let finalize =
        json!({ "type": "client/pair-finalize", "payload": { "wrapped_psk": encode_id(&sealed) } });
    handshake::send_json(ws, codec.channel_mut(), &send(confirm))
        .await
        .map_err(HandshakeError::from)?;
    handshake::send_json(ws, codec.channel_mut(), &send(finalize))
        .await
        .map_err(HandshakeError::from)?;

    expect_step(ws, codec, "server/pair-finalize", timeout).await?;
    store_and_rehandshake(
        ws,
        codec,
        keys,
        server_id,
        &long_term,
        handshake_hash,
        timeout,
    )
    .await?;
    Ok(())
}

/// Receives the pairing step `expected`; a `pair/abort` ends the attempt.
async fn expect_step<S>(
    ws: &mut WebSocketStream<S>,
    codec: &mut SendspinCodec,
    expected: &'static str,
    timeout: Duration,
) -> Result<Value, PairingError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let message = receive_pairing_step(ws, codec, expected, timeout).await?;
    if message_type(&message) == Some("pair/abort") {
        let reason = message
            .pointer("/payload/reason")
            .and_then(Value::as_str)
            .unwrap_or("none given");
        return Err(PairingError::Aborted {
            reason: reason.to_string(),
        });
    }
    Ok(message)
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

#[cfg(test)]
mod tests {
    use tokio::io::DuplexStream;
    use tokio_tungstenite::tungstenite::protocol::Role as WsRole;

    use super::*;
    use crate::noise::handshake::{accept, Channel, PskChoice, ServerOptions};

    const TIMEOUT: Duration = Duration::from_secs(10);

    async fn ws_pair() -> (WebSocketStream<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let client = WebSocketStream::from_raw_socket(a, WsRole::Client, None).await;
        let server = WebSocketStream::from_raw_socket(b, WsRole::Server, None).await;
        (client, server)
    }

    fn player_hello(client_id: &str) -> ClientHello {
        ClientHello {
            client_id: client_id.to_string(),
            name: "test player".into(),
            device_info: None,
            version: 1,
            supported_roles: vec!["player@v1".into()],
            player_support: None,
            artwork_support: None,
            visualizer_support: None,
            extra: Default::default(),
        }
    }

    /// Runs a server's side of a connection keyed with the client's pairing
    /// PSK up to its pairing activation, and returns the channel.
    async fn start_pairing(
        ws: &mut WebSocketStream<DuplexStream>,
        identity: &Identity,
        pairing_psk: [u8; PSK_LEN],
    ) -> Channel {
        let options = ServerOptions {
            identity,
            timeout: TIMEOUT,
        };
        let choice = PskChoice {
            psk: pairing_psk,
            category: PskCategory::Pairing,
        };
        let established = accept(ws, None, options, |_| Some(choice)).await.unwrap();
        let mut channel = established.channel;
        let hello = json!({ "type": "server/hello", "payload": { "name": "pairing server" } });
        handshake::send_json(ws, &mut channel, &hello.to_string())
            .await
            .unwrap();
        let client_hello = handshake::receive_json(ws, &mut channel, "client/hello", TIMEOUT)
            .await
            .unwrap();
        assert_eq!(message_type(&client_hello), Some("client/hello"));
        let activation = json!({
            "type": "server/activate",
            "payload": { "activities": ["pairing"], "active_roles": [], "pairing": { "method": "pairing_psk" } },
        });
        handshake::send_json(ws, &mut channel, &activation.to_string())
            .await
            .unwrap();
        channel
    }

    /// Waits for the next message event of a session, skipping others.
    async fn next_message(
        events: &mut tokio::sync::mpsc::Receiver<crate::session::SessionEvent>,
    ) -> crate::protocol::Message {
        use crate::session::EventKind;
        loop {
            let event = tokio::time::timeout(TIMEOUT, events.recv())
                .await
                .expect("a session event in time")
                .expect("the session is open");
            match event.kind {
                EventKind::Received {
                    incoming: crate::dialect::Incoming::Message(message),
                    ..
                } => return message,
                EventKind::Closed(cause) => panic!("the session closed: {cause}"),
                _ => {}
            }
        }
    }

    /// Receives the next message of `expected` type on the server side,
    /// skipping others.
    async fn receive_type(
        ws: &mut WebSocketStream<DuplexStream>,
        channel: &mut Channel,
        expected: &'static str,
    ) -> Value {
        loop {
            let message = handshake::receive_json(ws, channel, expected, TIMEOUT)
                .await
                .unwrap();
            if message_type(&message) == Some(expected) {
                return message;
            }
        }
    }

    #[tokio::test]
    async fn session_survives_in_band_rehandshake() {
        use crate::session::{self, Side};

        let dir = tempfile::tempdir().unwrap();
        let keys = ClientKeys {
            records_path: dir.path().join("pairings-player.json"),
            ..ClientKeys::unpaired(Identity::generate())
        };
        let client_key = *keys.identity.public_key();
        let server_identity = Identity::generate();
        let (mut client_ws, mut server_ws) = ws_pair().await;

        let server_side = async {
            let options = ServerOptions {
                identity: &server_identity,
                timeout: TIMEOUT,
            };
            let established = accept(&mut server_ws, None, options, |_| {
                Some(PskChoice::sentinel())
            })
            .await
            .unwrap();
            let mut channel = established.channel;
            let hello = json!({ "type": "server/hello", "payload": { "name": "rekeying server" } });
            handshake::send_json(&mut server_ws, &mut channel, &hello.to_string())
                .await
                .unwrap();
            (channel, established.handshake_hash)
        };
        let hello = player_hello(&keys.identity.id());
        let client_side = open_codec(
            &mut client_ws,
            Dialect::Sendspin,
            Some(&keys),
            &hello,
            TIMEOUT,
        );
        let ((mut channel, hash), codec) = tokio::join!(server_side, client_side);
        let codec = codec.map_err(|failure| failure.cause).unwrap();

        let tracker = tokio_util::task::TaskTracker::new();
        let (events_tx, mut events) = tokio::sync::mpsc::channel(64);
        let peer = "127.0.0.1:9".parse().unwrap();
        let limits = crate::transport::Limits::default();
        let handle = session::spawn(
            client_ws,
            peer,
            Side::Client,
            codec,
            limits,
            events_tx,
            &tracker,
        );
        handle.send_message(Message::ClientHello(hello)).unwrap();
        receive_type(&mut server_ws, &mut channel, "client/hello").await;
        let none = json!({ "type": "server/activate", "payload": { "activities": [], "active_roles": [] } });
        handshake::send_json(&mut server_ws, &mut channel, &none.to_string())
            .await
            .unwrap();
        assert!(matches!(
            next_message(&mut events).await,
            Message::ServerHello(_)
        ));

        // New keys on the same PSK, then an activation that gives a role.
        let new_hash = handshake::rehandshake_server(
            &mut server_ws,
            &mut channel,
            &server_identity,
            &client_key,
            Suite::ChaChaPoly,
            &hash,
            &PskChoice::sentinel(),
            TIMEOUT,
        )
        .await
        .unwrap();
        assert_ne!(new_hash, hash);
        handle
            .send_message(Message::ClientState(crate::protocol::ClientState {
                state: Some(crate::protocol::ClientStateKind::Synchronized),
                player: None,
                extra: Default::default(),
            }))
            .unwrap();
        let player = json!({ "type": "server/activate", "payload": { "activities": ["playback"], "active_roles": ["player@v1"] } });
        handshake::send_json(&mut server_ws, &mut channel, &player.to_string())
            .await
            .unwrap();
        match next_message(&mut events).await {
            Message::ServerHello(hello) => assert_eq!(hello.active_roles, ["player@v1"]),
            other => panic!("expected the new activation, got {other:?}"),
        }
        // The client's messages after the re-handshake use the new keys.
        let state = receive_type(&mut server_ws, &mut channel, "client/state").await;
        assert_eq!(state["payload"]["available"], true, "{state}");
        handle.close(crate::session::CloseCause::Shutdown);
        tracker.close();
        tracker.wait().await;
    }

    #[tokio::test]
    async fn second_pairing_server_gets_concurrent_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let pairing_psk = [0x42; PSK_LEN];
        let keys = ClientKeys {
            records_path: dir.path().join("pairings-player.json"),
            pairing_psk: Some(pairing_psk),
            ..ClientKeys::unpaired(Identity::generate())
        };
        let hello = player_hello(&keys.identity.id());

        // The first server starts pairing and stalls after client/pair-init,
        // so the player's pairing slot stays taken.
        let (mut client_a, mut server_a) = ws_pair().await;
        let (keys_a, hello_a) = (keys.clone(), hello.clone());
        let first = tokio::spawn(async move {
            handshake_and_hello(&mut client_a, &keys_a, &hello_a, TIMEOUT).await
        });
        let mut channel_a = start_pairing(&mut server_a, &Identity::generate(), pairing_psk).await;
        let init =
            handshake::receive_json(&mut server_a, &mut channel_a, "client/pair-init", TIMEOUT)
                .await
                .unwrap();
        assert_eq!(message_type(&init), Some("client/pair-init"));

        // A second server that starts pairing meanwhile is turned away.
        let (mut client_b, mut server_b) = ws_pair().await;
        let keys_b = keys.clone();
        let second = tokio::spawn(async move {
            handshake_and_hello(&mut client_b, &keys_b, &hello, TIMEOUT).await
        });
        let mut channel_b = start_pairing(&mut server_b, &Identity::generate(), pairing_psk).await;
        let abort = handshake::receive_json(&mut server_b, &mut channel_b, "pair/abort", TIMEOUT)
            .await
            .unwrap();
        assert_eq!(message_type(&abort), Some("pair/abort"));
        assert_eq!(abort["payload"]["reason"], "concurrent_attempt");
        let second = second.await.unwrap();
        assert!(
            matches!(second, Err(HandshakeError::ConcurrentPairing)),
            "{:?}",
            second.err()
        );

        // When the first pairing ends, the slot is free again.
        drop(server_a);
        assert!(first.await.unwrap().is_err());
        assert!(keys.pairing_slot.try_take().is_some());
    }
}
