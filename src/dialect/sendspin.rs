//! Sendspin 1.0: the v1 messages, reshaped where 1.0 changed them, inside
//! an encrypted Noise channel.
//!
//! The handshake (`src/noise/`) runs before the session starts, and this
//! codec then owns the channel. Every message is a binary WebSocket
//! message carrying one Noise transport message, JSON bodies have type 0,
//! and oversized messages travel as type 1 fragments.
//!
//! 1.0 sends `server/hello` first, before `client/hello`, and adds
//! `server/activate` after it. The code before the session exchanges
//! `server/hello`, and this codec maps the engine's v1 `server/hello` to
//! `server/activate` and back, so the session engine gets the v1 order on
//! both sides.

use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::sendspin_v1::{decode_text, encode_message};
use super::{DecodeError, Dialect, Incoming, Outgoing, WireCodec};
use crate::clock::now_us;
use crate::noise::handshake::Channel;
use crate::noise::PskCategory;
use crate::protocol::binary::HEADER_LEN;
use crate::protocol::{BinaryFrame, BinaryKind, ClientStateKind, Message};

/// Length of the 1.0 player audio header: type, i64 timestamp and u32
/// `send_ahead` in microseconds.
pub const AUDIO_HEADER_LEN: usize = 13;

/// The side of the connection a codec serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecSide {
    Client,
    Server,
}

/// The pairing fields of a client's `client/hello`.
#[derive(Clone, Debug)]
pub struct ClientPairing {
    /// `supported_pair_methods`, keyed by method.
    pub methods: Map<String, Value>,
    /// Whether the client admits unpaired access.
    pub unpaired_access: bool,
}

impl Default for ClientPairing {
    fn default() -> Self {
        let mut methods = Map::new();
        methods.insert("pairing_psk".into(), json!({}));
        ClientPairing {
            methods,
            unpaired_access: true,
        }
    }
}

/// The per-connection codec of Sendspin 1.0.
pub struct SendspinCodec {
    side: CodecSide,
    channel: Channel,
    /// The peer's id: the `server_id` a client reports in the v1
    /// `server/hello` it synthesizes, or the `client_id` a server puts in
    /// the client's hello.
    peer_id: String,
    /// The server's name from its `server/hello` (client side).
    server_name: String,
    category: PskCategory,
    pairing: ClientPairing,
    /// Whether the first `server/activate` has passed (client side).
    activated: bool,
    /// The last `available` value a client reported; 1.0 wants it in every
    /// `client/state`, v1 sends the state only when it changes.
    available: bool,
    /// Whether the client has reported `available: true` yet (server side).
    /// aiosendspin 10.2.1 players report `false` until their clock is
    /// synchronized, which is not an external source.
    ever_available: bool,
    /// The player commands a client accepts: in `client/hello` in v1, in
    /// every `client/state` player object in 1.0.
    player_commands: Value,
    /// Whether the server gives this client roles (server side): paired, or
    /// an unpaired client the operator approved. A client that is not
    /// admitted, or that offers no unpaired access on an unpaired session,
    /// gets no roles and no playback.
    admitted: bool,
    /// Whether `client/hello` already went out before the session (client
    /// side, after pairing); the session's hello is then left out.
    hello_sent: bool,
    /// A `client/hello` body read before the session (server side, during
    /// pairing), which the session receives as its first frame in a text
    /// message; only that one text message is accepted, once.
    replayed_hello: Option<String>,
}

impl SendspinCodec {
    /// Creates the client side's codec after `server/hello` arrived.
    pub fn client(channel: Channel, server_id: String, server_name: String, category: PskCategory, pairing: ClientPairing) -> Self {
        SendspinCodec {
            side: CodecSide::Client,
            channel,
            peer_id: server_id,
            server_name,
            category,
            pairing,
            activated: false,
            available: true,
            ever_available: false,
            player_commands: json!([]),
            admitted: true,
            hello_sent: false,
            replayed_hello: None,
        }
    }

    /// Creates the server side's codec after `server/hello` went out.
    pub fn server(channel: Channel, client_id: String, category: PskCategory) -> Self {
        SendspinCodec {
            side: CodecSide::Server,
            channel,
            peer_id: client_id,
            server_name: String::new(),
            category,
            pairing: ClientPairing::default(),
            activated: false,
            available: true,
            ever_available: false,
            player_commands: json!([]),
            admitted: true,
            hello_sent: false,
            replayed_hello: None,
        }
    }

    /// Sets whether the server gives this client roles.
    pub fn with_admission(mut self, admitted: bool) -> Self {
        self.admitted = admitted;
        self
    }

    /// Notes that `client/hello` went out before the session started.
    pub fn mark_hello_sent(&mut self) {
        self.hello_sent = true;
    }

    /// Hands the session `hello`, a `client/hello` body read before it
    /// started; the session passes it back as a text message first.
    pub fn with_replayed_hello(mut self, hello: String) -> Self {
        self.replayed_hello = Some(hello);
        self
    }

    /// Returns the encrypted channel, for messages exchanged outside the
    /// session (pairing).
    pub fn channel_mut(&mut self) -> &mut Channel {
        &mut self.channel
    }

    /// Returns the category of the PSK that keys the session.
    pub fn category(&self) -> PskCategory {
        self.category
    }

    fn message_text(&mut self, message: &Message) -> String {
        let text = encode_message(message);
        match (self.side, message) {
            (CodecSide::Client, Message::ClientHello(_)) => self.reshape_client_hello(&text),
            (CodecSide::Client, Message::ClientState(state)) => {
                let commands = self.player_commands.clone();
                // 1.0 has no error state: `available: false` means an
                // external source uses the output, and makes the server
                // move the client out of its group.
                if let Some(kind) = state.state {
                    self.available = kind != ClientStateKind::ExternalSource;
                }
                reshape(&text, |payload| {
                    payload.remove("state");
                    payload.insert("available".into(), Value::Bool(self.available));
                    // 1.0 wants these in every player object.
                    // NOTE: the player applies --static-delay-ms itself and
                    // reports no output delay or timing needs.
                    if let Some(player) = payload.get_mut("player").and_then(Value::as_object_mut) {
                        player.insert("supported_commands".into(), commands);
                        player.entry("output_delay_ms").or_insert(json!(0));
                        player.entry("required_lead_time_ms").or_insert(json!(0));
                        player.entry("min_buffer_ms").or_insert(json!(0));
                    }
                })
            }
            (CodecSide::Server, Message::ServerHello(hello)) => {
                let playback = hello.connection_reason == crate::protocol::ConnectionReason::Playback;
                let activities: Vec<&str> = if playback { vec!["playback"] } else { vec![] };
                json!({
                    "type": "server/activate",
                    "payload": { "activities": activities, "active_roles": hello.active_roles },
                })
                .to_string()
            }
            (CodecSide::Server, Message::StreamStart(_)) => reshape(&text, |payload| {
                payload.insert("server_transmitted".into(), json!(now_us()));
            }),
            _ => text,
        }
    }

    /// Leaves out the v1 `client_id` and `version` (1.0 sends the id in
    /// `client/init`), moves the player commands to `client/state`, and adds
    /// the pairing fields.
    fn reshape_client_hello(&mut self, text: &str) -> String {
        let mut commands = None;
        let text = reshape(text, |payload| {
            payload.remove("client_id");
            payload.remove("version");
            if let Some(support) = payload.get_mut("player@v1_support").and_then(Value::as_object_mut) {
                commands = support.remove("supported_commands");
            }
            payload.insert("supported_pair_methods".into(), Value::Object(self.pairing.methods.clone()));
            payload.insert("unpaired_access".into(), json!({ "enabled": self.pairing.unpaired_access }));
        });
        if let Some(commands) = commands {
            self.player_commands = commands;
        }
        text
    }

    fn binary_plaintext(&self, frame: &BinaryFrame) -> Vec<u8> {
        if frame.kind != BinaryKind::Audio {
            return frame.to_bytes();
        }
        let send_ahead = (frame.timestamp_us - now_us()).clamp(0, i64::from(u32::MAX)) as u32;
        let mut bytes = Vec::with_capacity(AUDIO_HEADER_LEN + frame.payload.len());
        bytes.push(frame.kind.type_byte());
        bytes.extend_from_slice(&frame.timestamp_us.to_be_bytes());
        bytes.extend_from_slice(&send_ahead.to_be_bytes());
        bytes.extend_from_slice(&frame.payload);
        bytes
    }

    fn decode_json(&mut self, body: &[u8]) -> Result<Incoming, DecodeError> {
        let mut value: Value = serde_json::from_slice(body).map_err(DecodeError::InvalidJson)?;
        let type_name = value.get("type").and_then(Value::as_str).ok_or(DecodeError::MissingType)?.to_string();
        if let Some(Value::Null) | None = value.get("payload") {
            value["payload"] = json!({});
        }
        let payload = value["payload"].as_object_mut().ok_or_else(|| DecodeError::InvalidPayload {
            type_name: type_name.clone(),
            source: serde::de::Error::custom("payload is not an object"),
        })?;
        match (self.side, type_name.as_str()) {
            (CodecSide::Client, "server/activate") => return self.on_activate(&type_name, payload),
            (CodecSide::Server, "client/hello") => {
                payload.insert("client_id".into(), Value::String(self.peer_id.clone()));
                payload.insert("version".into(), json!(1));
                // NOTE: 1.0 players list their commands in client/state, which
                // the engine does not read them from; volume and mute are
                // assumed until it does.
                if let Some(support) = payload.get_mut("player@v1_support").and_then(Value::as_object_mut) {
                    support.entry("supported_commands").or_insert(json!(["volume", "mute"]));
                }
                let unpaired_access = payload
                    .get("unpaired_access")
                    .and_then(|access| access.get("enabled"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let paired = self.category == PskCategory::LongTerm;
                if !self.admitted || (!paired && !unpaired_access) {
                    // No roles: server/activate then declares no activities
                    // and no active roles, which every PSK category allows.
                    tracing::info!(client = %self.peer_id, admitted = self.admitted, unpaired_access, "activating no roles for an unpaired client");
                    payload.insert("supported_roles".into(), json!([]));
                }
            }
            (CodecSide::Server, "client/state") => {
                if let Some(available) = payload.remove("available").and_then(|v| v.as_bool()) {
                    // Before the first `true`, `false` only means the
                    // player is not ready yet, so it leaves the state out.
                    if available || self.ever_available {
                        let state = if available { "synchronized" } else { "external_source" };
                        payload.insert("state".into(), json!(state));
                    }
                    self.ever_available |= available;
                }
            }
            _ => {}
        }
        decode_text(&value.to_string())
    }

    /// Maps the first `server/activate` to a v1 `server/hello`; later ones
    /// change only the declared activities, which a dialing player does not
    /// act on.
    fn on_activate(&mut self, type_name: &str, payload: &Map<String, Value>) -> Result<Incoming, DecodeError> {
        let invalid = |detail: &str| DecodeError::InvalidPayload {
            type_name: type_name.to_string(),
            source: serde::de::Error::custom(detail),
        };
        let activities = payload
            .get("activities")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("activities is missing or not a list"))?;
        let playback = activities.iter().any(|activity| activity == "playback");
        if self.activated {
            tracing::debug!(server = %self.peer_id, playback, "server changed its activities");
            return Ok(Incoming::Consumed);
        }
        self.activated = true;
        let active_roles = payload.get("active_roles").cloned().unwrap_or_else(|| json!([]));
        let hello = json!({
            "type": "server/hello",
            "payload": {
                "server_id": self.peer_id,
                "name": self.server_name,
                "version": 1,
                "active_roles": active_roles,
                "connection_reason": if playback { "playback" } else { "discovery" },
            },
        });
        decode_text(&hello.to_string())
    }

    fn decode_binary(&mut self, plaintext: Vec<u8>) -> Result<Incoming, DecodeError> {
        match plaintext.first() {
            Some(&0) => self.decode_json(&plaintext[1..]),
            Some(4..=7) => {
                if plaintext.len() < AUDIO_HEADER_LEN {
                    return Err(DecodeError::ShortBinary(crate::protocol::binary::ShortFrame(plaintext.len())));
                }
                let mut timestamp = [0u8; 8];
                timestamp.copy_from_slice(&plaintext[1..HEADER_LEN]);
                Ok(Incoming::Binary(BinaryFrame {
                    kind: BinaryKind::from_type(plaintext[0]),
                    timestamp_us: i64::from_be_bytes(timestamp),
                    payload: plaintext[AUDIO_HEADER_LEN..].to_vec(),
                }))
            }
            _ => Ok(Incoming::Binary(BinaryFrame::parse(&plaintext)?)),
        }
    }
}

/// Applies `change` to the payload object of a JSON envelope.
fn reshape(text: &str, change: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut value: Value = serde_json::from_str(text).expect("encoded messages are JSON");
    if let Some(payload) = value.get_mut("payload").and_then(Value::as_object_mut) {
        change(payload);
    }
    value.to_string()
}

impl WireCodec for SendspinCodec {
    fn dialect(&self) -> Dialect {
        Dialect::Sendspin
    }

    fn encode(&mut self, outgoing: &Outgoing) -> Option<WsMessage> {
        let mut frames = self.encode_frames(outgoing);
        if frames.len() != 1 {
            // Only small messages go through this path (goodbye,
            // server/time); every other write uses encode_frames.
            tracing::error!(frames = frames.len(), "a message needing fragmentation was encoded as one frame");
            return None;
        }
        frames.pop()
    }

    fn encode_frames(&mut self, outgoing: &Outgoing) -> Vec<WsMessage> {
        if self.hello_sent && matches!(outgoing, Outgoing::Message(Message::ClientHello(_))) {
            return Vec::new();
        }
        let plaintext = match outgoing {
            Outgoing::Message(message) => {
                let text = self.message_text(message);
                let mut bytes = Vec::with_capacity(text.len() + 1);
                bytes.push(0);
                bytes.extend_from_slice(text.as_bytes());
                bytes
            }
            Outgoing::Binary(frame) => self.binary_plaintext(frame),
        };
        self.channel.seal(plaintext).into_iter().map(WsMessage::binary).collect()
    }

    fn decode(&mut self, frame: WsMessage) -> Result<Incoming, DecodeError> {
        match frame {
            WsMessage::Binary(bytes) => match self.channel.open(&bytes) {
                Ok(Some(plaintext)) => self.decode_binary(plaintext),
                Ok(None) => Ok(Incoming::Consumed),
                Err(err) => Err(DecodeError::Transport(err.to_string())),
            },
            WsMessage::Text(text) if self.replayed_hello.as_deref() == Some(text.as_str()) => {
                self.replayed_hello = None;
                self.decode_json(text.as_bytes())
            }
            WsMessage::Text(_) => Err(DecodeError::Transport("cleartext message after the Noise handshake".into())),
            _ => Ok(Incoming::Unknown {
                type_name: "control frame".to_string(),
            }),
        }
    }
}
