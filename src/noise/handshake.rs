//! The cleartext init exchange and the Noise handshake over a WebSocket,
//! and the encrypted channel it yields.
//!
//! Order on the wire: `client/init` → `server/init` (or `server/error`)
//! → `noise/handshake` (message 1, server) → `noise/handshake` (message
//! 2, client), all JSON text messages. Everything after that is a binary
//! WebSocket message holding one Noise transport message. The prologue is
//! the exact bytes of `client/init` followed by those of `server/init`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;

use super::fragment::{self, FragmentError, Reassembler, TYPE_JSON};
use super::identity::{decode_key, encode_id, Identity, PairingStore, KEY_LEN};
use super::{psk_id, sentinel_psk, PskCategory, Suite, CORE_VERSION, PSK_LEN};

/// Largest Noise message in bytes.
const MAX_NOISE_MESSAGE: usize = 65535;

/// A handshake that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
    #[error("the peer closed the connection while this side waited for {what}")]
    Closed { what: &'static str },
    #[error("WebSocket error during the handshake: {0}")]
    WebSocket(#[from] WsError),
    #[error("the server rejected client/init with server/error reason {reason:?}")]
    Rejected { reason: String },
    #[error("client/init rejected with server/error reason {reason}: {detail}")]
    InitFailure {
        reason: &'static str,
        detail: String,
    },
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("{what} failed Noise authentication")]
    Authentication { what: &'static str },
    #[error("the server's psk_id {psk_id} names no PSK of category {category} held here")]
    UnknownPsk {
        psk_id: String,
        category: &'static str,
    },
    #[error("the pairing record of psk_id {psk_id} belongs to server {stored}, not to {actual}")]
    RecordMismatch {
        psk_id: String,
        stored: String,
        actual: String,
    },
    #[error("expected server_id {expected}, the server sent {actual}")]
    UnexpectedServer { expected: String, actual: String },
    #[error("the server refused client {client_id}: no PSK admits it")]
    Refused { client_id: String },
    #[error("Noise error: {0}")]
    Noise(#[from] snow::Error),
    #[error("another server is pairing with this client; sent pair/abort with reason concurrent_attempt")]
    ConcurrentPairing,
}

/// The PSK a server picks for a client, and its category.
#[derive(Clone, Debug)]
pub struct PskChoice {
    pub psk: [u8; PSK_LEN],
    pub category: PskCategory,
}

impl PskChoice {
    pub fn sentinel() -> PskChoice {
        PskChoice {
            psk: sentinel_psk(),
            category: PskCategory::Sentinel,
        }
    }
}

/// A finished handshake.
pub struct Established {
    pub channel: Channel,
    /// The peer's `client_id` (server side) or `server_id` (client side).
    pub peer_id: String,
    pub suite: Suite,
    /// The category of the PSK that keys the session.
    pub category: PskCategory,
    /// Whether the client could not use the PSK the server referenced and
    /// the Sentinel PSK admitted it instead.
    pub credential_mismatch: bool,
    /// The handshake hash `h`, the prologue of a re-handshake.
    pub handshake_hash: Vec<u8>,
}

impl std::fmt::Debug for Established {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Established")
            .field("peer_id", &self.peer_id)
            .field("suite", &self.suite)
            .field("category", &self.category)
            .field("credential_mismatch", &self.credential_mismatch)
            .finish_non_exhaustive()
    }
}

/// The encrypted channel of one connection: Noise transport state and the
/// reassembly buffer of incoming fragments.
pub struct Channel {
    transport: snow::TransportState,
    reassembler: Reassembler,
}

/// Both ends of a channel keyed by a Sentinel-PSK handshake run in memory,
/// for codec tests.
#[cfg(test)]
pub(crate) struct TestChannels {
    pub server: Channel,
    pub client: Channel,
    pub server_identity: Identity,
    pub client_identity: Identity,
    pub handshake_hash: Vec<u8>,
}

/// Runs a Sentinel-PSK handshake in memory and returns both ends.
#[cfg(test)]
pub(crate) fn channel_pair() -> TestChannels {
    let (server, client) = (Identity::generate(), Identity::generate());
    let params = || Suite::ChaChaPoly.noise_params();
    let sentinel = PskChoice::sentinel().psk;
    let mut initiator = snow::Builder::new(params())
        .local_private_key(server.private_key())
        .remote_public_key(client.public_key())
        .psk(2, &sentinel)
        .build_initiator()
        .unwrap();
    let mut responder = snow::Builder::new(params())
        .local_private_key(client.private_key())
        .remote_public_key(server.public_key())
        .psk(2, &sentinel)
        .build_responder()
        .unwrap();
    let (mut message, mut payload) = (vec![0u8; MAX_NOISE_MESSAGE], vec![0u8; MAX_NOISE_MESSAGE]);
    let len = initiator.write_message(&[], &mut message).unwrap();
    responder
        .read_message(&message[..len], &mut payload)
        .unwrap();
    let len = responder.write_message(&[], &mut message).unwrap();
    initiator
        .read_message(&message[..len], &mut payload)
        .unwrap();

    let handshake_hash = initiator.get_handshake_hash().to_vec();
    TestChannels {
        server: Channel::new(initiator.into_transport_mode().unwrap()),
        client: Channel::new(responder.into_transport_mode().unwrap()),
        server_identity: server,
        client_identity: client,
        handshake_hash,
    }
}

/// An incoming transport message that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("transport message failed Noise authentication")]
    Authentication,
    #[error(transparent)]
    Fragment(#[from] FragmentError),
}

impl Channel {
    fn new(transport: snow::TransportState) -> Channel {
        Channel {
            transport,
            reassembler: Reassembler::default(),
        }
    }

    /// Puts the keys of a finished re-handshake in place of the old ones.
    fn rekey(&mut self, transport: snow::TransportState) {
        self.transport = transport;
        self.reassembler = Reassembler::default();
    }

    /// Encrypts a type-prefixed plaintext into one or more binary messages,
    /// fragmenting it when it does not fit in one.
    pub fn seal(&mut self, plaintext: Vec<u8>) -> Vec<Vec<u8>> {
        fragment::split(plaintext)
            .into_iter()
            .map(|piece| {
                let mut out = vec![0u8; piece.len() + 16];
                let len = self
                    .transport
                    .write_message(&piece, &mut out)
                    .expect("fragments fit in one Noise message");
                out.truncate(len);
                out
            })
            .collect()
    }

    /// Encrypts one plaintext as one transport message, without
    /// fragmenting it or checking its type byte. Tests and `stress` use it
    /// to send fragment sequences the protocol forbids.
    pub fn seal_unchecked(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; plaintext.len() + 16];
        let len = self
            .transport
            .write_message(plaintext, &mut out)
            .expect("the plaintext fits in one Noise message");
        out.truncate(len);
        out
    }

    /// Encrypts a JSON message body (type 0).
    pub fn seal_json(&mut self, text: &str) -> Vec<Vec<u8>> {
        let mut plaintext = Vec::with_capacity(text.len() + 1);
        plaintext.push(TYPE_JSON);
        plaintext.extend_from_slice(text.as_bytes());
        self.seal(plaintext)
    }

    /// Decrypts one binary message. Returns the whole type-prefixed
    /// message, or `None` while a fragmented message is incomplete.
    pub fn open(&mut self, ciphertext: &[u8]) -> Result<Option<Vec<u8>>, ChannelError> {
        if ciphertext.len() > MAX_NOISE_MESSAGE {
            return Err(ChannelError::Authentication);
        }
        let mut plaintext = vec![0u8; ciphertext.len()];
        let len = self
            .transport
            .read_message(ciphertext, &mut plaintext)
            .map_err(|_| ChannelError::Authentication)?;
        plaintext.truncate(len);
        Ok(self.reassembler.push(plaintext)?)
    }
}

/// Options of the client side.
pub struct ClientOptions<'a> {
    pub identity: &'a Identity,
    pub suite: Suite,
    /// Long-term PSKs from earlier pairings.
    pub records: Option<&'a PairingStore>,
    /// A pairing PSK for this connection, from a pairing token.
    pub pairing_psk: Option<[u8; PSK_LEN]>,
    /// The expected `server_id`, if any.
    pub expected_server: Option<&'a str>,
    /// Time allowed for each message of the server.
    pub timeout: Duration,
}

/// Runs the client side (Noise responder) of the handshake on `ws`.
pub async fn connect<S>(
    ws: &mut WebSocketStream<S>,
    options: ClientOptions<'_>,
) -> Result<Established, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let client_init = envelope(
        "client/init",
        json!({ "client_id": options.identity.id(), "version": CORE_VERSION, "suite": options.suite.as_str() }),
    );
    ws.send(WsMessage::text(client_init.clone())).await?;

    let server_init = receive_text(ws, "server/init", options.timeout).await?;
    let server_id = parse_server_init(&server_init)?;
    if let Some(expected) = options.expected_server {
        if expected != server_id {
            return Err(HandshakeError::UnexpectedServer {
                expected: expected.to_string(),
                actual: server_id,
            });
        }
    }
    let server_key = decode_key(&server_id).map_err(|detail| malformed("server/init", detail))?;

    let prologue = [client_init.as_bytes(), server_init.as_bytes()].concat();
    let mut state = snow::Builder::new(options.suite.noise_params())
        .local_private_key(options.identity.private_key())
        .remote_public_key(&server_key)
        .prologue(&prologue)
        .build_responder()?;

    // Message 1: its payload names the PSK the server mixes in at message 2.
    let message_1 = receive_handshake(ws, "Noise message 1", options.timeout).await?;
    let mut payload = vec![0u8; message_1.len()];
    let len = state.read_message(&message_1, &mut payload).map_err(|_| {
        HandshakeError::Authentication {
            what: "Noise message 1",
        }
    })?;
    let (referenced_id, category) = parse_message_1(&payload[..len])?;

    let (psk, category, credential_mismatch) = match resolve_psk(
        &options,
        &referenced_id,
        category,
        &server_id,
    )? {
        Some(psk) => (psk, category, false),
        // Sentinel fallback: message 2 to a reference this client cannot use
        // is keyed with the Sentinel, so the session can carry a re-pairing.
        None => {
            tracing::warn!(server = %server_id, psk_id = %referenced_id, category = category.code(), "no PSK matches the server's psk_id; using the Sentinel PSK");
            (sentinel_psk(), PskCategory::Sentinel, true)
        }
    };
    state.set_psk(2, &psk)?;

    let mut message_2 = vec![0u8; MAX_NOISE_MESSAGE];
    let len = state.write_message(b"{}", &mut message_2)?;
    ws.send(WsMessage::text(handshake_message(&message_2[..len])))
        .await?;

    let handshake_hash = state.get_handshake_hash().to_vec();
    Ok(Established {
        channel: Channel::new(state.into_transport_mode()?),
        peer_id: server_id,
        suite: options.suite,
        category,
        credential_mismatch,
        handshake_hash,
    })
}

/// Returns the PSK the reference names, `None` for a lookup miss, or an
/// error when a long-term record belongs to another server.
fn resolve_psk(
    options: &ClientOptions<'_>,
    referenced_id: &str,
    category: PskCategory,
    server_id: &str,
) -> Result<Option<[u8; PSK_LEN]>, HandshakeError> {
    match category {
        PskCategory::Sentinel => {
            let sentinel = sentinel_psk();
            Ok((psk_id(&sentinel) == referenced_id).then_some(sentinel))
        }
        PskCategory::Pairing => Ok(options
            .pairing_psk
            .filter(|psk| psk_id(psk) == referenced_id)),
        PskCategory::LongTerm => {
            let Some((record, psk)) = options
                .records
                .and_then(|store| store.find_long_term(referenced_id))
            else {
                return Ok(None);
            };
            if record.peer_id != server_id {
                return Err(HandshakeError::RecordMismatch {
                    psk_id: referenced_id.to_string(),
                    stored: record.peer_id.clone(),
                    actual: server_id.to_string(),
                });
            }
            Ok(Some(psk))
        }
    }
}

/// Options of the server side.
pub struct ServerOptions<'a> {
    pub identity: &'a Identity,
    /// Time allowed for each message of the client.
    pub timeout: Duration,
}

/// Runs the server side (Noise initiator) of the handshake on `ws`.
///
/// `client_init` is the first text message when the caller already read it
/// (to tell dialects apart). `choose_psk` picks the PSK for a `client_id`,
/// or `None` to refuse the client; a refusal closes without `server/init`.
pub async fn accept<S>(
    ws: &mut WebSocketStream<S>,
    client_init: Option<String>,
    options: ServerOptions<'_>,
    choose_psk: impl FnOnce(&str) -> Option<PskChoice>,
) -> Result<Established, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let client_init = match client_init {
        Some(text) => text,
        None => receive_text(ws, "client/init", options.timeout).await?,
    };
    let (client_id, suite, client_key) = match parse_client_init(&client_init) {
        Ok(parsed) => parsed,
        Err((reason, detail)) => {
            // An init failure is the one handshake failure that gets a reply.
            let error = envelope("server/error", json!({ "reason": reason }));
            let _ = ws.send(WsMessage::text(error)).await;
            return Err(HandshakeError::InitFailure { reason, detail });
        }
    };
    let Some(choice) = choose_psk(&client_id) else {
        return Err(HandshakeError::Refused { client_id });
    };

    let server_init = envelope(
        "server/init",
        json!({ "server_id": options.identity.id(), "version": CORE_VERSION }),
    );
    let prologue = [client_init.as_bytes(), server_init.as_bytes()].concat();
    // The ephemeral key is kept so that message 2 can be checked again under
    // the Sentinel PSK: that means replaying message 1 on the same ephemeral.
    let ephemeral = snow::Builder::new(suite.noise_params()).generate_keypair()?;
    let message_1_payload = serde_json::to_vec(
        &json!({ "psk_id": psk_id(&choice.psk), "psk_category": choice.category.code() }),
    )
    .expect("the message 1 payload serializes");
    let initiator = |psk: &[u8; PSK_LEN]| -> Result<(snow::HandshakeState, Vec<u8>), snow::Error> {
        let mut state = snow::Builder::new(suite.noise_params())
            .local_private_key(options.identity.private_key())
            .remote_public_key(&client_key)
            .prologue(&prologue)
            .psk(2, psk)
            .fixed_ephemeral_key_for_testing_only(&ephemeral.private)
            .build_initiator()?;
        let mut message = vec![0u8; MAX_NOISE_MESSAGE];
        let len = state.write_message(&message_1_payload, &mut message)?;
        message.truncate(len);
        Ok((state, message))
    };
    let (mut state, message_1) = initiator(&choice.psk)?;

    ws.send(WsMessage::text(server_init)).await?;
    ws.send(WsMessage::text(handshake_message(&message_1)))
        .await?;

    let message_2 = receive_handshake(ws, "Noise message 2", options.timeout).await?;
    let mut payload = vec![0u8; message_2.len()];
    let mut category = choice.category;
    let mut credential_mismatch = false;
    let len = match state.read_message(&message_2, &mut payload) {
        Ok(len) => len,
        Err(_) if choice.category != PskCategory::Sentinel => {
            // A message 2 valid under the Sentinel is the credential-mismatch
            // signal: the client's static key is authenticated, but it could
            // not use the referenced PSK.
            let (mut replay, replayed_1) = initiator(&sentinel_psk())?;
            debug_assert_eq!(replayed_1, message_1, "replaying message 1 changed it");
            let len = replay.read_message(&message_2, &mut payload).map_err(|_| {
                HandshakeError::Authentication {
                    what: "Noise message 2",
                }
            })?;
            state = replay;
            category = PskCategory::Sentinel;
            credential_mismatch = true;
            tracing::warn!(client = %client_id, "client could not use the referenced PSK; admitted on the Sentinel PSK");
            len
        }
        Err(_) => {
            return Err(HandshakeError::Authentication {
                what: "Noise message 2",
            })
        }
    };
    match serde_json::from_slice::<Value>(&payload[..len]) {
        Ok(Value::Object(_)) => {}
        _ => {
            return Err(malformed(
                "Noise message 2 payload",
                format!(
                    "{:?} is not a JSON object",
                    String::from_utf8_lossy(&payload[..len])
                ),
            ))
        }
    }

    let handshake_hash = state.get_handshake_hash().to_vec();
    Ok(Established {
        channel: Channel::new(state.into_transport_mode()?),
        peer_id: client_id,
        suite,
        category,
        credential_mismatch,
        handshake_hash,
    })
}

fn malformed(what: &'static str, detail: impl Into<String>) -> HandshakeError {
    HandshakeError::Malformed {
        what,
        detail: detail.into(),
    }
}

fn envelope(type_name: &str, payload: Value) -> String {
    json!({ "type": type_name, "payload": payload }).to_string()
}

fn handshake_message(noise: &[u8]) -> String {
    envelope("noise/handshake", json!({ "data": encode_id(noise) }))
}

/// Parses `client/init` by the failure rules of Sendspin 1.0. Anything that
/// is not the envelope is `malformed`. A `version` integer other than 1 is
/// `unsupported_version` whatever the other fields are. Then `suite` is
/// checked, then `client_id`.
fn parse_client_init(text: &str) -> Result<(String, Suite, [u8; KEY_LEN]), (&'static str, String)> {
    let malformed = |detail: String| ("malformed", detail);
    let value: Value =
        serde_json::from_str(text).map_err(|err| malformed(format!("not JSON: {err}")))?;
    let payload = match (
        value.get("type").and_then(Value::as_str),
        value.get("payload"),
    ) {
        (Some("client/init"), Some(Value::Object(payload))) => payload,
        _ => return Err(malformed("not a client/init envelope".into())),
    };
    let version = payload.get("version");
    match version {
        Some(Value::Number(number)) if number.is_u64() || number.is_i64() => {
            if number.as_u64() != Some(CORE_VERSION) {
                return Err(("unsupported_version", format!("version {number}")));
            }
        }
        Some(Value::Number(number))
            if number
                .to_string()
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-') =>
        {
            return Err(("unsupported_version", format!("version {number}")));
        }
        other => return Err(malformed(format!("version {other:?} is not an integer"))),
    }
    let suite_name = payload
        .get("suite")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("suite is missing or not a string".into()))?;
    let suite = Suite::from_name(suite_name)
        .ok_or(("unsupported_suite", format!("suite {suite_name:?}")))?;
    let client_id = payload
        .get("client_id")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("client_id is missing or not a string".into()))?;
    let key = decode_key(client_id).map_err(malformed)?;
    Ok((client_id.to_string(), suite, key))
}

fn parse_server_init(text: &str) -> Result<String, HandshakeError> {
    let value: Value =
        serde_json::from_str(text).map_err(|err| malformed("server/init", err.to_string()))?;
    let payload = value.get("payload").cloned().unwrap_or(Value::Null);
    match value.get("type").and_then(Value::as_str) {
        Some("server/init") => {}
        Some("server/error") => {
            let reason = payload
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("(none)");
            return Err(HandshakeError::Rejected {
                reason: reason.to_string(),
            });
        }
        other => return Err(malformed("server/init", format!("message type {other:?}"))),
    }
    match payload.get("version").and_then(Value::as_u64) {
        Some(CORE_VERSION) => {}
        other => {
            return Err(malformed(
                "server/init",
                format!("version {other:?}, expected {CORE_VERSION}"),
            ))
        }
    }
    payload
        .get("server_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| malformed("server/init", "server_id is missing"))
}

fn parse_message_1(payload: &[u8]) -> Result<(String, PskCategory), HandshakeError> {
    let what = "Noise message 1 payload";
    let value: Value =
        serde_json::from_slice(payload).map_err(|err| malformed(what, err.to_string()))?;
    let psk_id = value
        .get("psk_id")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(what, "psk_id is missing"))?;
    let code = value
        .get("psk_category")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(what, "psk_category is missing"))?;
    let category = PskCategory::from_code(code)
        .ok_or_else(|| malformed(what, format!("unknown psk_category {code:?}")))?;
    Ok((psk_id.to_string(), category))
}

/// Receives the next text message, skipping control frames.
async fn receive_text<S>(
    ws: &mut WebSocketStream<S>,
    what: &'static str,
    timeout: Duration,
) -> Result<String, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let receive = async {
        loop {
            match ws.next().await {
                None | Some(Ok(WsMessage::Close(_))) => {
                    return Err(HandshakeError::Closed { what })
                }
                Some(Err(err)) => return Err(HandshakeError::WebSocket(err)),
                Some(Ok(WsMessage::Text(text))) => return Ok(text.as_str().to_string()),
                Some(Ok(WsMessage::Binary(_))) => {
                    return Err(malformed(what, "a binary message instead of text"))
                }
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(timeout, receive)
        .await
        .map_err(|_| HandshakeError::Timeout { what, timeout })?
}

/// Receives a `noise/handshake` message and returns its Noise bytes.
async fn receive_handshake<S>(
    ws: &mut WebSocketStream<S>,
    what: &'static str,
    timeout: Duration,
) -> Result<Vec<u8>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let text = receive_text(ws, what, timeout).await?;
    let value: Value =
        serde_json::from_str(&text).map_err(|err| malformed(what, err.to_string()))?;
    if value.get("type").and_then(Value::as_str) != Some("noise/handshake") {
        return Err(malformed(
            what,
            format!("message type {:?}", value.get("type")),
        ));
    }
    handshake_data(&value, what)
}

/// Runs the server side of an in-band re-handshake on an encrypted
/// connection: Noise message 1 goes out as an encrypted `noise/handshake`,
/// message 2 comes back under the old keys, and `channel` then uses the new
/// keys. `prologue` is the handshake hash `h` of the handshake before.
/// Application messages that arrive before message 2 were sent under the old
/// keys before the client saw message 1, and are discarded. There is no
/// Sentinel fallback: a message 2 that fails fails the re-handshake.
/// Returns the new handshake hash.
#[allow(clippy::too_many_arguments)]
pub async fn rehandshake_server<S>(
    ws: &mut WebSocketStream<S>,
    channel: &mut Channel,
    identity: &Identity,
    client_key: &[u8; KEY_LEN],
    suite: Suite,
    prologue: &[u8],
    choice: &PskChoice,
    timeout: Duration,
) -> Result<Vec<u8>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (message_1, pending) =
        start_rehandshake(channel, identity, client_key, suite, prologue, choice)?;
    for frame in message_1 {
        ws.feed(WsMessage::binary(frame)).await?;
    }
    ws.flush().await?;

    let message_2 = loop {
        let message = receive_json(ws, channel, "Noise message 2", timeout).await?;
        if message.get("type").and_then(Value::as_str) == Some("noise/handshake") {
            break message;
        }
        tracing::debug!(message_type = ?message.get("type"), "discarding a message sent before the re-handshake");
    };
    pending.finish(channel, &message_2)
}

/// The server's side of an in-band re-handshake after Noise message 1 went
/// out, waiting for message 2.
pub struct PendingRehandshake {
    state: snow::HandshakeState,
}

/// Starts the server side of an in-band re-handshake without I/O: returns
/// Noise message 1 as a `noise/handshake` sealed under the current keys,
/// and the state that takes message 2.
pub fn start_rehandshake(
    channel: &mut Channel,
    identity: &Identity,
    client_key: &[u8; KEY_LEN],
    suite: Suite,
    prologue: &[u8],
    choice: &PskChoice,
) -> Result<(Vec<Vec<u8>>, PendingRehandshake), HandshakeError> {
    let mut state = snow::Builder::new(suite.noise_params())
        .local_private_key(identity.private_key())
        .remote_public_key(client_key)
        .prologue(prologue)
        .psk(2, &choice.psk)
        .build_initiator()?;
    let payload = serde_json::to_vec(
        &json!({ "psk_id": psk_id(&choice.psk), "psk_category": choice.category.code() }),
    )
    .expect("the message 1 payload serializes");
    let mut message_1 = vec![0u8; MAX_NOISE_MESSAGE];
    let len = state.write_message(&payload, &mut message_1)?;
    let frames = channel.seal_json(&handshake_message(&message_1[..len]));
    Ok((frames, PendingRehandshake { state }))
}

impl PendingRehandshake {
    /// Reads Noise message 2, the client's `noise/handshake`, and puts the
    /// new keys in place in `channel`. Returns the new handshake hash.
    pub fn finish(
        self,
        channel: &mut Channel,
        message_2: &Value,
    ) -> Result<Vec<u8>, HandshakeError> {
        let mut state = self.state;
        let message_2 = handshake_data(message_2, "Noise message 2")?;
        let mut payload = vec![0u8; message_2.len()];
        state.read_message(&message_2, &mut payload).map_err(|_| {
            HandshakeError::Authentication {
                what: "Noise message 2",
            }
        })?;
        let hash = state.get_handshake_hash().to_vec();
        channel.rekey(state.into_transport_mode()?);
        Ok(hash)
    }
}

/// Runs the client side of an in-band re-handshake after `message_1`, the
/// encrypted `noise/handshake` the server sent, arrived. Message 2 goes out
/// under the old keys, and `channel` then uses the new ones. A `psk_id`
/// this client holds no PSK for fails, as the Sentinel fallback applies only
/// to the first handshake. Returns the new handshake hash and the category of
/// the PSK that now keys the session.
pub async fn rehandshake_client<S>(
    ws: &mut WebSocketStream<S>,
    channel: &mut Channel,
    message_1: &Value,
    options: ClientOptions<'_>,
    server_id: &str,
    prologue: &[u8],
) -> Result<(Vec<u8>, PskCategory), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let response = respond_to_rehandshake(channel, message_1, options, server_id, prologue)?;
    for frame in response.frames {
        ws.feed(WsMessage::binary(frame)).await?;
    }
    ws.flush().await?;
    Ok((response.handshake_hash, response.category))
}

/// The client's response to an in-band re-handshake.
pub struct RehandshakeResponse {
    /// Noise message 2 as a `noise/handshake`, sealed under the old keys:
    /// the frames to send before anything else.
    pub frames: Vec<Vec<u8>>,
    /// The new handshake hash, the prologue of the next re-handshake.
    pub handshake_hash: Vec<u8>,
    /// The category of the PSK that now keys the channel.
    pub category: PskCategory,
}

/// Responds to Noise message 1 of an in-band re-handshake without I/O: seals
/// message 2 under the old keys, then puts the new keys in place in
/// `channel`. The caller sends the returned frames before any other.
pub fn respond_to_rehandshake(
    channel: &mut Channel,
    message_1: &Value,
    options: ClientOptions<'_>,
    server_id: &str,
    prologue: &[u8],
) -> Result<RehandshakeResponse, HandshakeError> {
    let server_key = decode_key(server_id).map_err(|detail| malformed("server_id", detail))?;
    let mut state = snow::Builder::new(options.suite.noise_params())
        .local_private_key(options.identity.private_key())
        .remote_public_key(&server_key)
        .prologue(prologue)
        .build_responder()?;
    let message_1 = handshake_data(message_1, "Noise message 1")?;
    let mut payload = vec![0u8; message_1.len()];
    let len = state.read_message(&message_1, &mut payload).map_err(|_| {
        HandshakeError::Authentication {
            what: "Noise message 1",
        }
    })?;
    let (referenced_id, category) = parse_message_1(&payload[..len])?;
    let Some(psk) = resolve_psk(&options, &referenced_id, category, server_id)? else {
        return Err(HandshakeError::UnknownPsk {
            psk_id: referenced_id,
            category: category.code(),
        });
    };
    state.set_psk(2, &psk)?;
    let mut message_2 = vec![0u8; MAX_NOISE_MESSAGE];
    let len = state.write_message(b"{}", &mut message_2)?;
    let frames = channel.seal_json(&handshake_message(&message_2[..len]));
    let handshake_hash = state.get_handshake_hash().to_vec();
    channel.rekey(state.into_transport_mode()?);
    Ok(RehandshakeResponse {
        frames,
        handshake_hash,
        category,
    })
}

/// Returns the Noise bytes in the `data` of a `noise/handshake` message.
fn handshake_data(message: &Value, what: &'static str) -> Result<Vec<u8>, HandshakeError> {
    let data = message
        .pointer("/payload/data")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(what, "payload.data is missing"))?;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(data)
        .map_err(|err| malformed(what, format!("data is not base64url: {err}")))?;
    if bytes.len() > MAX_NOISE_MESSAGE {
        return Err(malformed(what, "longer than a Noise message"));
    }
    Ok(bytes)
}

/// Sends one JSON message over the encrypted channel.
pub async fn send_json<S>(
    ws: &mut WebSocketStream<S>,
    channel: &mut Channel,
    text: &str,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for frame in channel.seal_json(text) {
        ws.feed(WsMessage::binary(frame)).await?;
    }
    ws.flush().await
}

/// Receives the next JSON message over the encrypted channel.
pub async fn receive_json<S>(
    ws: &mut WebSocketStream<S>,
    channel: &mut Channel,
    what: &'static str,
    timeout: Duration,
) -> Result<Value, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let receive = async {
        loop {
            let bytes = match ws.next().await {
                None | Some(Ok(WsMessage::Close(_))) => {
                    return Err(HandshakeError::Closed { what })
                }
                Some(Err(err)) => return Err(HandshakeError::WebSocket(err)),
                Some(Ok(WsMessage::Binary(bytes))) => bytes,
                Some(Ok(WsMessage::Text(_))) => {
                    return Err(malformed(what, "a cleartext message after the handshake"))
                }
                Some(Ok(_)) => continue,
            };
            let message = match channel.open(&bytes) {
                Ok(Some(message)) => message,
                Ok(None) => continue,
                Err(err) => return Err(malformed(what, err.to_string())),
            };
            if message.first() != Some(&TYPE_JSON) {
                return Err(malformed(
                    what,
                    format!("binary message of type {} before it", message[0]),
                ));
            }
            return serde_json::from_slice(&message[1..])
                .map_err(|err| malformed(what, err.to_string()));
        }
    };
    tokio::time::timeout(timeout, receive)
        .await
        .map_err(|_| HandshakeError::Timeout { what, timeout })?
}

#[cfg(test)]
mod tests {
    use tokio::io::DuplexStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    async fn pair() -> (WebSocketStream<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let client = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
        let server = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
        (client, server)
    }

    fn client_options<'a>(
        identity: &'a Identity,
        suite: Suite,
        records: Option<&'a PairingStore>,
    ) -> ClientOptions<'a> {
        ClientOptions {
            identity,
            suite,
            records,
            pairing_psk: None,
            expected_server: None,
            timeout: TIMEOUT,
        }
    }

    /// Runs both sides; the server picks `choice` for every client.
    async fn run(
        client_identity: &Identity,
        server_identity: &Identity,
        suite: Suite,
        records: Option<&PairingStore>,
        choice: Option<PskChoice>,
    ) -> (
        Result<Established, HandshakeError>,
        Result<Established, HandshakeError>,
    ) {
        let (mut client_ws, mut server_ws) = pair().await;
        // A failing side closes its socket, as the callers of both functions do.
        let server = async {
            let result = accept(
                &mut server_ws,
                None,
                ServerOptions {
                    identity: server_identity,
                    timeout: TIMEOUT,
                },
                |_| choice,
            )
            .await;
            if result.is_err() {
                let _ = server_ws.close(None).await;
            }
            result
        };
        let client = async {
            let result = connect(
                &mut client_ws,
                client_options(client_identity, suite, records),
            )
            .await;
            if result.is_err() {
                let _ = client_ws.close(None).await;
            }
            result
        };
        tokio::join!(client, server)
    }

    fn exchange(client: &mut Established, server: &mut Established) {
        for len in [3usize, 70_000] {
            let body = "x".repeat(len);
            let frames = server.channel.seal_json(&body);
            let mut received = None;
            for frame in frames {
                received = client.channel.open(&frame).unwrap();
            }
            let received = received.expect("the last fragment completes the message");
            assert_eq!(received[0], TYPE_JSON);
            assert_eq!(received.len(), len + 1);
            let frames = client.channel.seal(vec![4, 1, 2, 3]);
            assert_eq!(
                server.channel.open(&frames[0]).unwrap(),
                Some(vec![4, 1, 2, 3])
            );
        }
    }

    #[tokio::test]
    async fn sentinel_handshake_in_both_suites() {
        let client_identity = Identity::generate();
        let server_identity = Identity::generate();
        for suite in Suite::ALL {
            let (client, server) = run(
                &client_identity,
                &server_identity,
                suite,
                None,
                Some(PskChoice::sentinel()),
            )
            .await;
            let (mut client, mut server) = (client.unwrap(), server.unwrap());
            assert_eq!(client.peer_id, server_identity.id(), "{suite}");
            assert_eq!(server.peer_id, client_identity.id(), "{suite}");
            assert_eq!(client.category, PskCategory::Sentinel);
            assert_eq!(server.category, PskCategory::Sentinel);
            assert!(!client.credential_mismatch, "client side");
            assert!(!server.credential_mismatch, "server side");
            assert_eq!(client.handshake_hash, server.handshake_hash);
            exchange(&mut client, &mut server);
        }
    }

    #[tokio::test]
    async fn long_term_psk_is_selected_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let client_identity = Identity::generate();
        let server_identity = Identity::generate();
        let psk = [42u8; PSK_LEN];
        let mut records = PairingStore::load(&dir.path().join("pairings.json")).unwrap();
        records
            .insert(&Identity::generate().id(), &[1u8; PSK_LEN])
            .unwrap();
        records.insert(&server_identity.id(), &psk).unwrap();
        let choice = PskChoice {
            psk,
            category: PskCategory::LongTerm,
        };
        let (client, server) = run(
            &client_identity,
            &server_identity,
            Suite::AesGcm,
            Some(&records),
            Some(choice),
        )
        .await;
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        assert_eq!(client.category, PskCategory::LongTerm);
        assert_eq!(server.category, PskCategory::LongTerm);
        exchange(&mut client, &mut server);
    }

    #[tokio::test]
    async fn lost_record_falls_back_to_sentinel() {
        let client_identity = Identity::generate();
        let server_identity = Identity::generate();
        let choice = PskChoice {
            psk: [9u8; PSK_LEN],
            category: PskCategory::LongTerm,
        };
        let (client, server) = run(
            &client_identity,
            &server_identity,
            Suite::ChaChaPoly,
            None,
            Some(choice),
        )
        .await;
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        assert!(client.credential_mismatch, "client side");
        assert!(server.credential_mismatch, "server side");
        assert_eq!(server.category, PskCategory::Sentinel);
        exchange(&mut client, &mut server);
    }

    #[tokio::test]
    async fn record_of_another_server_fails() {
        let dir = tempfile::tempdir().unwrap();
        let psk = [5u8; PSK_LEN];
        let mut records = PairingStore::load(&dir.path().join("pairings.json")).unwrap();
        records.insert(&Identity::generate().id(), &psk).unwrap();
        let choice = PskChoice {
            psk,
            category: PskCategory::LongTerm,
        };
        let (client, server) = run(
            &Identity::generate(),
            &Identity::generate(),
            Suite::ChaChaPoly,
            Some(&records),
            Some(choice),
        )
        .await;
        assert!(
            matches!(client, Err(HandshakeError::RecordMismatch { .. })),
            "{client:?}"
        );
        assert!(server.is_err(), "the server completed without message 2");
    }

    #[tokio::test]
    async fn wrong_server_key_fails_authentication() {
        // The client expects the key of the server's init message; a server
        // using another private key cannot produce a valid message 1.
        let (mut client_ws, mut server_ws) = pair().await;
        let client_identity = Identity::generate();
        let server_identity = Identity::generate();
        let impostor = Identity::generate();
        let server = async {
            let init = receive_text(&mut server_ws, "client/init", TIMEOUT)
                .await
                .unwrap();
            let (_, suite, client_key) = parse_client_init(&init).unwrap();
            let server_init = envelope(
                "server/init",
                json!({ "server_id": server_identity.id(), "version": 1 }),
            );
            let prologue = [init.as_bytes(), server_init.as_bytes()].concat();
            let mut state = snow::Builder::new(suite.noise_params())
                .local_private_key(impostor.private_key())
                .remote_public_key(&client_key)
                .prologue(&prologue)
                .psk(2, &sentinel_psk())
                .build_initiator()
                .unwrap();
            let mut message = vec![0u8; 1024];
            let len = state
                .write_message(b"{\"psk_id\":\"x\",\"psk_category\":\"sn\"}", &mut message)
                .unwrap();
            server_ws.send(WsMessage::text(server_init)).await.unwrap();
            server_ws
                .send(WsMessage::text(handshake_message(&message[..len])))
                .await
                .unwrap();
            server_ws
        };
        let client = connect(
            &mut client_ws,
            client_options(&client_identity, Suite::ChaChaPoly, None),
        );
        let (client, _server) = tokio::join!(client, server);
        assert!(
            matches!(client, Err(HandshakeError::Authentication { .. })),
            "{client:?}"
        );
    }

    #[tokio::test]
    async fn init_failures_get_server_error() {
        let id = Identity::generate().id();
        let cases = [
            ("not json".to_string(), "malformed"),
            (json!({"type": "client/hello", "payload": {}}).to_string(), "malformed"),
            (json!({"type": "client/init", "payload": {"version": 2, "suite": 7}}).to_string(), "unsupported_version"),
            (json!({"type": "client/init", "payload": {"version": true, "suite": "x", "client_id": id}}).to_string(), "malformed"),
            (json!({"type": "client/init", "payload": {"version": 1, "suite": "25519_AESGCM_BLAKE2s", "client_id": id}}).to_string(), "unsupported_suite"),
            (json!({"type": "client/init", "payload": {"version": 1, "suite": "25519_AESGCM_SHA256", "client_id": "short"}}).to_string(), "malformed"),
        ];
        let server_identity = Identity::generate();
        for (init, reason) in cases {
            let (mut client_ws, mut server_ws) = pair().await;
            client_ws.send(WsMessage::text(init.clone())).await.unwrap();
            let result = accept(
                &mut server_ws,
                None,
                ServerOptions {
                    identity: &server_identity,
                    timeout: TIMEOUT,
                },
                |_| Some(PskChoice::sentinel()),
            )
            .await;
            assert!(
                matches!(result, Err(HandshakeError::InitFailure { reason: r, .. }) if r == reason),
                "{init}: {result:?}"
            );
            let reply = receive_text(&mut client_ws, "server/error", TIMEOUT)
                .await
                .unwrap();
            let reply: Value = serde_json::from_str(&reply).unwrap();
            assert_eq!(reply["type"], "server/error", "{init}");
            assert_eq!(reply["payload"]["reason"], reason, "{init}");
        }
    }

    #[tokio::test]
    async fn client_reports_server_error() {
        let (mut client_ws, mut server_ws) = pair().await;
        let client_identity = Identity::generate();
        let server = async {
            receive_text(&mut server_ws, "client/init", TIMEOUT)
                .await
                .unwrap();
            let error = envelope("server/error", json!({ "reason": "unsupported_suite" }));
            server_ws.send(WsMessage::text(error)).await.unwrap();
            server_ws
        };
        let client = connect(
            &mut client_ws,
            client_options(&client_identity, Suite::AesGcm, None),
        );
        let (client, _server) = tokio::join!(client, server);
        assert!(
            matches!(&client, Err(HandshakeError::Rejected { reason }) if reason == "unsupported_suite"),
            "{client:?}"
        );
    }

    #[tokio::test]
    async fn refused_client_gets_no_server_init() {
        let (client, server) = run(
            &Identity::generate(),
            &Identity::generate(),
            Suite::AesGcm,
            None,
            None,
        )
        .await;
        assert!(
            matches!(server, Err(HandshakeError::Refused { .. })),
            "{server:?}"
        );
        assert!(client.is_err(), "the client completed a refused handshake");
    }

    /// Runs a first handshake on the Sentinel, then an in-band re-handshake
    /// to `choice`, with the client holding `records`.
    async fn rehandshake(
        choice: PskChoice,
        records: Option<&PairingStore>,
        server_identity: &Identity,
        client_identity: &Identity,
    ) -> (
        Result<Vec<u8>, HandshakeError>,
        Result<(Vec<u8>, PskCategory), HandshakeError>,
        Established,
        Established,
        WebSocketStream<DuplexStream>,
        WebSocketStream<DuplexStream>,
    ) {
        let (mut client_ws, mut server_ws) = pair().await;
        let server = accept(
            &mut server_ws,
            None,
            ServerOptions {
                identity: server_identity,
                timeout: TIMEOUT,
            },
            |_| Some(PskChoice::sentinel()),
        );
        let client = connect(
            &mut client_ws,
            client_options(client_identity, Suite::AesGcm, records),
        );
        let (client, server) = tokio::join!(client, server);
        let (mut client, mut server) = (client.unwrap(), server.unwrap());

        // An application message the client sent before message 1 reached it.
        send_json(
            &mut client_ws,
            &mut client.channel,
            "{\"type\":\"client/time\",\"payload\":{}}",
        )
        .await
        .unwrap();
        let server_side = async {
            let result = rehandshake_server(
                &mut server_ws,
                &mut server.channel,
                server_identity,
                client_identity.public_key(),
                Suite::AesGcm,
                &server.handshake_hash,
                &choice,
                TIMEOUT,
            )
            .await;
            if result.is_err() {
                let _ = server_ws.close(None).await;
            }
            result
        };
        let client_side = async {
            let message_1 = receive_json(
                &mut client_ws,
                &mut client.channel,
                "Noise message 1",
                TIMEOUT,
            )
            .await
            .unwrap();
            let options = client_options(client_identity, Suite::AesGcm, records);
            let server_id = server_identity.id();
            let result = rehandshake_client(
                &mut client_ws,
                &mut client.channel,
                &message_1,
                options,
                &server_id,
                &client.handshake_hash,
            )
            .await;
            if result.is_err() {
                let _ = client_ws.close(None).await;
            }
            result
        };
        let (server_result, client_result) = tokio::join!(server_side, client_side);
        (
            server_result,
            client_result,
            client,
            server,
            client_ws,
            server_ws,
        )
    }

    #[tokio::test]
    async fn rehandshake_switches_to_long_term_psk() {
        let dir = tempfile::tempdir().unwrap();
        let server_identity = Identity::generate();
        let client_identity = Identity::generate();
        let psk = [77u8; PSK_LEN];
        let mut records = PairingStore::load(&dir.path().join("pairings.json")).unwrap();
        records.insert(&server_identity.id(), &psk).unwrap();
        let choice = PskChoice {
            psk,
            category: PskCategory::LongTerm,
        };
        let (server_result, client_result, mut client, mut server, _client_ws, _server_ws) =
            rehandshake(choice, Some(&records), &server_identity, &client_identity).await;
        let server_hash = server_result.unwrap();
        let (client_hash, category) = client_result.unwrap();
        assert_eq!(server_hash, client_hash, "handshake hashes");
        assert_eq!(category, PskCategory::LongTerm, "the new PSK's category");
        assert_ne!(
            server_hash, server.handshake_hash,
            "the re-handshake kept the old hash"
        );
        exchange(&mut client, &mut server);
    }

    #[tokio::test]
    async fn rehandshake_miss_fails_without_fallback() {
        let choice = PskChoice {
            psk: [3u8; PSK_LEN],
            category: PskCategory::LongTerm,
        };
        let (server_result, client_result, ..) =
            rehandshake(choice, None, &Identity::generate(), &Identity::generate()).await;
        assert!(
            matches!(client_result, Err(HandshakeError::UnknownPsk { .. })),
            "{client_result:?}"
        );
        assert!(
            server_result.is_err(),
            "the server completed a failed re-handshake"
        );
    }

    #[tokio::test]
    async fn tampered_transport_message_fails() {
        let (client, server) = run(
            &Identity::generate(),
            &Identity::generate(),
            Suite::ChaChaPoly,
            None,
            Some(PskChoice::sentinel()),
        )
        .await;
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        let mut frame = server.channel.seal_json("{}").remove(0);
        frame[0] ^= 1;
        assert!(matches!(
            client.channel.open(&frame),
            Err(ChannelError::Authentication)
        ));
    }
}
