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
use crate::noise::fragment::MAX_PLAINTEXT;
use crate::noise::handshake::Channel;
use crate::noise::PskCategory;
use crate::protocol::binary::HEADER_LEN;
use crate::protocol::{BinaryFrame, BinaryKind, ClientStateKind, Message};

/// Length of the 1.0 player audio header: type, i64 timestamp and u32
/// `send_ahead` in microseconds.
pub const AUDIO_HEADER_LEN: usize = 13;

/// Artwork message flag of an announce, which carries an image's
/// timestamp and total size.
const ARTWORK_ANNOUNCE: u8 = 0b10;

/// Most image bytes in one artwork part: the part, with its type and flags
/// bytes, fits in one Noise transport message.
const ARTWORK_PART_DATA: usize = MAX_PLAINTEXT - 2;

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

/// A client's keys for responding to in-band re-handshakes, and the hash of
/// the last handshake, their prologue.
#[derive(Clone)]
pub struct RekeyKeys {
    pub identity: crate::noise::Identity,
    pub suite: crate::noise::Suite,
    /// File of the client's pairing records, read at each re-handshake.
    pub records_path: std::path::PathBuf,
    pub pairing_psk: Option<[u8; crate::noise::PSK_LEN]>,
    pub handshake_hash: Vec<u8>,
}

/// A server's keys for in-band re-handshakes that rotate a session's keys
/// at an interval, on the PSK that keys the session.
pub struct KeyRotation {
    pub identity: crate::noise::Identity,
    pub client_key: [u8; crate::noise::identity::KEY_LEN],
    pub suite: crate::noise::Suite,
    pub psk: crate::noise::PskChoice,
    /// The hash of the last handshake, the prologue of the next.
    pub handshake_hash: Vec<u8>,
    pub interval: std::time::Duration,
    /// Time the client has for Noise message 2.
    pub timeout: std::time::Duration,
}

/// The state of a server's key rotation.
struct Rotation {
    keys: KeyRotation,
    due: std::time::Instant,
    /// Message 1 went out: the handshake waiting for message 2, and the
    /// time by which it must come.
    pending: Option<(
        crate::noise::handshake::PendingRehandshake,
        std::time::Instant,
    )>,
    /// Plaintexts the engine sent while a re-handshake ran; they go out
    /// under the new keys, after the `server/activate` the spec puts first.
    held_plaintexts: Vec<Vec<u8>>,
    /// The `server/activate` of the session, sent again after each
    /// re-handshake.
    activation: Option<String>,
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
    /// The active roles and the `playback` activity of the last
    /// `server/activate` passed on (client side), to tell which later
    /// activations change them.
    activation: (Value, bool),
    /// The keys for responding to an in-band re-handshake; without them a
    /// re-handshake closes the session.
    rekey: Option<RekeyKeys>,
    /// Frames to send before any other, such as Noise message 2 of an
    /// in-band re-handshake; the session takes them after each decode.
    replies: Vec<WsMessage>,
    /// Frames encoded after the client responded to a re-handshake and
    /// before the server's next `server/activate`, which the spec holds back.
    held_frames: Option<Vec<WsMessage>>,
    /// Key rotation by in-band re-handshakes (server side).
    rotation: Option<Rotation>,
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
    /// What the server side has told the client in `server/state`, to turn
    /// the engine's v1 updates into 1.0 ones.
    state: StateShape,
    /// Whether the artwork channels of a 1.0 client are still to come in
    /// its `client/state` (server side). Until they do, the engine's
    /// `stream/start` of the stand-in channel is not sent.
    artwork_undeclared: bool,
    /// The timestamp of the last metadata object from the server (client
    /// side), for `repeat` and `shuffle` changes that come without one.
    metadata_timestamp: i64,
}

/// The server side's record of the `server/state` objects a 1.0 client
/// holds. In v1, metadata updates carry only changed fields and `repeat`
/// and `shuffle`; in 1.0 every metadata object is complete, and `repeat`
/// and `shuffle` belong to the controller object.
#[derive(Debug)]
struct StateShape {
    /// The complete metadata object, v1 fields included as the engine sent
    /// them (`timestamp` and `progress` as of the last update).
    metadata: Map<String, Value>,
    /// The last controller object the engine sent, without `repeat` and
    /// `shuffle`.
    controller: Option<Map<String, Value>>,
    repeat: Value,
    shuffle: Value,
    /// The client took the controller role without the metadata role: the
    /// engine sends it metadata anyway, so that its controller object
    /// carries `repeat` and `shuffle`, and the codec keeps that metadata to
    /// itself.
    hidden_metadata: bool,
}

impl Default for StateShape {
    fn default() -> Self {
        StateShape {
            metadata: Map::new(),
            controller: None,
            repeat: json!("off"),
            shuffle: json!(false),
            hidden_metadata: false,
        }
    }
}

impl StateShape {
    /// Rewrites the payload of one v1 `server/state` into its 1.0 form.
    /// Returns false when nothing in it is news to a 1.0 client.
    fn reshape(&mut self, payload: &mut Map<String, Value>) -> bool {
        let mut controller_changed = false;
        if let Some(Value::Object(update)) = payload.remove("metadata") {
            let mut metadata_changed = false;
            let timestamp = update.get("timestamp").cloned();
            let new_progress = update.contains_key("progress");
            for (key, value) in update {
                match key.as_str() {
                    "repeat" | "shuffle" => {
                        let known = if key == "repeat" {
                            &mut self.repeat
                        } else {
                            &mut self.shuffle
                        };
                        controller_changed |= *known != value;
                        *known = value;
                    }
                    "timestamp" => {}
                    _ => {
                        metadata_changed = true;
                        if value.is_null() {
                            self.metadata.remove(&key);
                        } else {
                            self.metadata.insert(key, value);
                        }
                    }
                }
            }
            if metadata_changed {
                if let Some(timestamp) = timestamp {
                    if !new_progress {
                        self.move_progress_to(&timestamp);
                    }
                    self.metadata.insert("timestamp".into(), timestamp);
                }
                if !self.hidden_metadata {
                    payload.insert("metadata".into(), Value::Object(self.metadata.clone()));
                }
            }
        }
        if let Some(Value::Object(controller)) = payload.remove("controller") {
            self.controller = Some(controller);
            controller_changed = true;
        }
        if controller_changed {
            if let Some(controller) = &self.controller {
                let mut controller = controller.clone();
                controller.insert("repeat".into(), self.repeat.clone());
                controller.insert("shuffle".into(), self.shuffle.clone());
                payload.insert("controller".into(), Value::Object(controller));
            }
        }
        !payload.is_empty()
    }

    /// Moves the kept progress on to `timestamp` at its playback speed,
    /// because a 1.0 metadata object states the position at its own
    /// timestamp and the engine resends progress only when it departs from
    /// that prediction.
    fn move_progress_to(&mut self, timestamp: &Value) {
        let (Some(then), Some(now)) = (
            self.metadata.get("timestamp").and_then(Value::as_i64),
            timestamp.as_i64(),
        ) else {
            return;
        };
        let Some(progress) = self
            .metadata
            .get_mut("progress")
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        let (Some(position), Some(speed)) = (
            progress.get("track_progress").and_then(Value::as_i64),
            progress.get("playback_speed").and_then(Value::as_i64),
        ) else {
            return;
        };
        let mut moved = position + (now - then) * speed / 1_000_000;
        if let Some(duration) = progress
            .get("track_duration")
            .and_then(Value::as_i64)
            .filter(|&d| d > 0)
        {
            moved = moved.min(duration);
        }
        progress.insert("track_progress".into(), json!(moved.max(0)));
    }
}

impl SendspinCodec {
    /// Creates the client side's codec after `server/hello` arrived.
    pub fn client(
        channel: Channel,
        server_id: String,
        server_name: String,
        category: PskCategory,
        pairing: ClientPairing,
    ) -> Self {
        SendspinCodec {
            side: CodecSide::Client,
            channel,
            peer_id: server_id,
            server_name,
            category,
            pairing,
            activated: false,
            activation: (Value::Null, false),
            rekey: None,
            replies: Vec::new(),
            held_frames: None,
            rotation: None,
            available: true,
            ever_available: false,
            player_commands: json!([]),
            admitted: true,
            hello_sent: false,
            replayed_hello: None,
            state: StateShape::default(),
            artwork_undeclared: false,
            metadata_timestamp: 0,
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
            activation: (Value::Null, false),
            rekey: None,
            replies: Vec::new(),
            held_frames: None,
            rotation: None,
            available: true,
            ever_available: false,
            player_commands: json!([]),
            admitted: true,
            hello_sent: false,
            replayed_hello: None,
            state: StateShape::default(),
            artwork_undeclared: false,
            metadata_timestamp: 0,
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

    /// Makes a server codec rotate the session keys at `keys.interval`. The
    /// first rotation comes one interval after the session's activation.
    pub fn with_key_rotation(mut self, keys: KeyRotation) -> Self {
        self.rotation = Some(Rotation {
            due: std::time::Instant::now() + keys.interval,
            keys,
            pending: None,
            held_plaintexts: Vec::new(),
            activation: None,
        });
        self
    }

    /// Lets a client codec respond to in-band re-handshakes with `keys`.
    pub fn with_rekey(mut self, keys: RekeyKeys) -> Self {
        self.rekey = Some(keys);
        self
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

    /// Records the PSK category that keys the session after an in-band
    /// re-handshake, such as the long-term PSK at the end of pairing.
    pub fn set_category(&mut self, category: PskCategory) {
        self.category = category;
    }

    /// Encodes `message` in its 1.0 form, or returns `None` when the
    /// message has nothing for a 1.0 client.
    fn message_text(&mut self, message: &Message) -> Option<String> {
        let text = encode_message(message);
        Some(match (self.side, message) {
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
                let playback =
                    hello.connection_reason == crate::protocol::ConnectionReason::Playback;
                let activities: Vec<&str> = if playback { vec!["playback"] } else { vec![] };
                let hidden_metadata = self.state.hidden_metadata;
                let active_roles: Vec<&String> = hello
                    .active_roles
                    .iter()
                    .filter(|role| !(hidden_metadata && role.as_str() == "metadata@v1"))
                    .collect();
                let activation = json!({
                    "type": "server/activate",
                    "payload": { "activities": activities, "active_roles": active_roles },
                })
                .to_string();
                if let Some(rotation) = self.rotation.as_mut() {
                    rotation.activation = Some(activation.clone());
                }
                activation
            }
            (CodecSide::Server, Message::ServerState(_)) => {
                let mut news = true;
                let text = reshape(&text, |payload| news = self.state.reshape(payload));
                if !news {
                    return None;
                }
                text
            }
            (CodecSide::Server, Message::StreamStart(start)) if self.artwork_undeclared => {
                let channels = start
                    .artwork
                    .as_ref()
                    .map(|artwork| artwork.channels.as_slice())
                    .unwrap_or_default();
                let artwork_only = start.player.is_none() && start.visualizer.is_none();
                if artwork_only && channels.iter().all(|channel| channel.source == "none") {
                    return None;
                }
                self.artwork_undeclared = false;
                return self.message_text(message);
            }
            (CodecSide::Server, Message::StreamStart(_)) => reshape(&text, |payload| {
                payload.insert("server_transmitted".into(), json!(now_us()));
                // A channel turned off carries no format or size in 1.0.
                let channels = payload
                    .get_mut("artwork")
                    .and_then(|a| a.get_mut("channels"))
                    .and_then(Value::as_array_mut);
                for channel in channels
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_object_mut)
                {
                    if channel.get("source").and_then(Value::as_str) == Some("none") {
                        channel.retain(|key, _| key == "source");
                    }
                }
            }),
            _ => text,
        })
    }

    /// Leaves out the v1 `client_id` and `version` (1.0 sends the id in
    /// `client/init`), moves the player commands to `client/state`, and adds
    /// the pairing fields.
    fn reshape_client_hello(&mut self, text: &str) -> String {
        let mut commands = None;
        let text = reshape(text, |payload| {
            payload.remove("client_id");
            payload.remove("version");
            if let Some(support) = payload
                .get_mut("player@v1_support")
                .and_then(Value::as_object_mut)
            {
                commands = support.remove("supported_commands");
            }
            payload.insert(
                "supported_pair_methods".into(),
                Value::Object(self.pairing.methods.clone()),
            );
            payload.insert(
                "unpaired_access".into(),
                json!({ "enabled": self.pairing.unpaired_access }),
            );
        });
        if let Some(commands) = commands {
            self.player_commands = commands;
        }
        text
    }

    /// Builds the plaintexts of one binary frame: one message, except for
    /// an image, which 1.0 sends as an announce and then parts.
    fn binary_plaintexts(&self, frame: &BinaryFrame) -> Vec<Vec<u8>> {
        match frame.kind {
            BinaryKind::Audio => vec![self.audio_plaintext(frame)],
            BinaryKind::Artwork(_) => artwork_messages(frame),
            _ => vec![frame.to_bytes().to_vec()],
        }
    }

    fn audio_plaintext(&self, frame: &BinaryFrame) -> Vec<u8> {
        let send_ahead = (frame.timestamp_us - now_us()).clamp(0, i64::from(u32::MAX)) as u32;
        let mut bytes = Vec::with_capacity(AUDIO_HEADER_LEN + frame.payload().len());
        bytes.push(frame.kind.type_byte());
        bytes.extend_from_slice(&frame.timestamp_us.to_be_bytes());
        bytes.extend_from_slice(&send_ahead.to_be_bytes());
        bytes.extend_from_slice(frame.payload());
        bytes
    }

    fn decode_json(&mut self, body: &[u8]) -> Result<Incoming, DecodeError> {
        let mut value: Value = serde_json::from_slice(body).map_err(DecodeError::InvalidJson)?;
        let type_name = value
            .get("type")
            .and_then(Value::as_str)
            .ok_or(DecodeError::MissingType)?
            .to_string();
        if let Some(Value::Null) | None = value.get("payload") {
            value["payload"] = json!({});
        }
        let payload =
            value["payload"]
                .as_object_mut()
                .ok_or_else(|| DecodeError::InvalidPayload {
                    type_name: type_name.clone(),
                    source: serde::de::Error::custom("payload is not an object"),
                })?;
        match (self.side, type_name.as_str()) {
            (CodecSide::Client, "server/activate") => {
                if let Some(held_frames) = self.held_frames.take() {
                    self.replies.extend(held_frames);
                }
                return self.on_activate(&type_name, payload);
            }
            (CodecSide::Client, "noise/handshake") => return self.respond_to_rehandshake(&value),
            (CodecSide::Server, "noise/handshake") => return self.finish_rotation(&value),
            (CodecSide::Client, "server/unpair") => {
                if self.category == PskCategory::LongTerm {
                    return Ok(Incoming::Unpaired);
                }
                // An unpaired session has no record to drop.
                tracing::debug!(server = %self.peer_id, "ignoring server/unpair on an unpaired session");
                return Ok(Incoming::Consumed);
            }
            (CodecSide::Server, "client/hello") => {
                payload.insert("client_id".into(), Value::String(self.peer_id.clone()));
                payload.insert("version".into(), json!(1));
                // NOTE: 1.0 players list their commands in client/state, which
                // the engine does not read them from; volume and mute are
                // assumed until it does.
                if let Some(support) = payload
                    .get_mut("player@v1_support")
                    .and_then(Value::as_object_mut)
                {
                    support
                        .entry("supported_commands")
                        .or_insert(json!(["volume", "mute"]));
                }
                self.adapt_hello_roles(payload);
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
            (CodecSide::Client, "server/state") => {
                state_for_engine(payload, &mut self.metadata_timestamp)
            }
            (CodecSide::Server, "client/state") => {
                if let Some(available) = payload.remove("available").and_then(|v| v.as_bool()) {
                    // Before the first `true`, `false` only means the
                    // player is not ready yet, so it leaves the state out.
                    if available || self.ever_available {
                        let state = if available {
                            "synchronized"
                        } else {
                            "external_source"
                        };
                        payload.insert("state".into(), json!(state));
                    }
                    self.ever_available |= available;
                }
            }
            _ => {}
        }
        decode_text(&value.to_string())
    }

    /// Prepares the roles of a 1.0 `client/hello` for the engine, which
    /// reads them as v1. A controller without the metadata role gets it
    /// hidden (see [`StateShape::hidden_metadata`]). An artwork client
    /// declares its channels in `client/state`, after the hello, so the
    /// engine first gets one channel turned off, whose `stream/start` is
    /// not sent, and the channels arrive with the client's first
    /// `client/state`.
    fn adapt_hello_roles(&mut self, payload: &mut Map<String, Value>) {
        let has_artwork_support = payload.contains_key("artwork@v1_support");
        let Some(roles) = payload
            .get_mut("supported_roles")
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        let has = |roles: &[Value], name: &str| roles.iter().any(|role| role == name);
        if has(roles, "controller@v1") && !has(roles, "metadata@v1") {
            roles.push(json!("metadata@v1"));
            self.state.hidden_metadata = true;
        }
        if has(roles, "artwork@v1") && !has_artwork_support {
            let off =
                json!({"source": "none", "format": "jpeg", "media_width": 1, "media_height": 1});
            payload.insert("artwork@v1_support".into(), json!({ "channels": [off] }));
            self.artwork_undeclared = true;
        }
    }

    /// Maps the first `server/activate` to a v1 `server/hello`; later ones
    /// change only the declared activities, which a dialing player does not
    /// act on.
    /// Responds to Noise message 1 of an in-band re-handshake: message 2 goes to
    /// the replies, and the channel takes the new keys. Until the server's
    /// next `server/activate`, encoded frames are held back.
    fn respond_to_rehandshake(&mut self, message_1: &Value) -> Result<Incoming, DecodeError> {
        let failed =
            |detail: String| DecodeError::Transport(format!("re-handshake failed: {detail}"));
        let Some(keys) = self.rekey.as_mut() else {
            return Err(failed(
                "this connection has no keys for a re-handshake".into(),
            ));
        };
        let records = match crate::noise::PairingStore::load(&keys.records_path) {
            Ok(records) => Some(records),
            Err(err) => {
                tracing::warn!(cause = %err, "cannot read the pairing records for a re-handshake");
                None
            }
        };
        let options = crate::noise::handshake::ClientOptions {
            identity: &keys.identity,
            suite: keys.suite,
            records: records.as_ref(),
            pairing_psk: keys.pairing_psk,
            expected_server: None,
            timeout: std::time::Duration::ZERO,
        };
        let response = crate::noise::handshake::respond_to_rehandshake(
            &mut self.channel,
            message_1,
            options,
            &self.peer_id,
            &keys.handshake_hash,
        )
        .map_err(|err| failed(err.to_string()))?;

        tracing::info!(server = %self.peer_id, category = response.category.code(), "responded to an in-band re-handshake");
        keys.handshake_hash = response.handshake_hash;
        self.category = response.category;
        self.replies
            .extend(response.frames.into_iter().map(WsMessage::binary));
        self.held_frames.get_or_insert_with(Vec::new);
        Ok(Incoming::Consumed)
    }

    /// Starts a key rotation when one is due and the session is active:
    /// returns Noise message 1 sealed under the current keys. Returns
    /// `None` when no rotation starts.
    fn start_rotation(&mut self) -> Option<Vec<WsMessage>> {
        let rotation = self.rotation.as_mut()?;
        let now = std::time::Instant::now();
        if rotation.pending.is_some() || rotation.activation.is_none() || now < rotation.due {
            return None;
        }
        let keys = &rotation.keys;
        let started = crate::noise::handshake::start_rehandshake(
            &mut self.channel,
            &keys.identity,
            &keys.client_key,
            keys.suite,
            &keys.handshake_hash,
            &keys.psk,
        );
        match started {
            Ok((message_1, pending)) => {
                tracing::debug!(client = %self.peer_id, "rotating the session keys");
                rotation.pending = Some((pending, now + keys.timeout));
                Some(message_1.into_iter().map(WsMessage::binary).collect())
            }
            Err(err) => {
                tracing::warn!(client = %self.peer_id, cause = %err, "cannot start a key rotation; keeping the session keys");
                self.rotation = None;
                None
            }
        }
    }

    /// Takes Noise message 2 of a key rotation: puts the new keys in place,
    /// then queues the session's `server/activate` and the held plaintexts
    /// under them.
    fn finish_rotation(&mut self, message_2: &Value) -> Result<Incoming, DecodeError> {
        let unexpected = || {
            DecodeError::Transport("noise/handshake from the client outside a re-handshake".into())
        };
        let rotation = self.rotation.as_mut().ok_or_else(unexpected)?;
        let (pending, _) = rotation.pending.take().ok_or_else(unexpected)?;
        let hash = pending
            .finish(&mut self.channel, message_2)
            .map_err(|err| DecodeError::Transport(format!("key rotation failed: {err}")))?;
        rotation.keys.handshake_hash = hash;
        rotation.due = std::time::Instant::now() + rotation.keys.interval;
        let activation = rotation.activation.clone().unwrap_or_default();
        let mut plaintexts = vec![json_plaintext(&activation)];
        plaintexts.append(&mut rotation.held_plaintexts);
        let frames: Vec<WsMessage> = plaintexts
            .into_iter()
            .flat_map(|plaintext| self.channel.seal(plaintext))
            .map(WsMessage::binary)
            .collect();
        self.replies.extend(frames);
        Ok(Incoming::Consumed)
    }

    fn on_activate(
        &mut self,
        type_name: &str,
        payload: &Map<String, Value>,
    ) -> Result<Incoming, DecodeError> {
        let invalid = |detail: &str| DecodeError::InvalidPayload {
            type_name: type_name.to_string(),
            source: serde::de::Error::custom(detail),
        };
        let activities = payload
            .get("activities")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("activities is missing or not a list"))?;
        let playback = activities.iter().any(|activity| activity == "playback");
        // A later server/activate may leave active_roles out, which keeps the
        // roles of the one before it: aiosendspin 10.2.1 sends only
        // activities when its group starts or stops playing.
        let active_roles = match payload.get("active_roles") {
            Some(roles) => roles.clone(),
            None if self.activated => self.activation.0.clone(),
            None => json!([]),
        };
        let activation = (active_roles.clone(), playback);
        if self.activated && activation == self.activation {
            tracing::debug!(server = %self.peer_id, playback, "server changed its activities");
            return Ok(Incoming::Consumed);
        }
        // A later activation that changes the roles or the playback activity,
        // such as one that approves an unpaired client, reaches the session as
        // another server/hello.
        self.activated = true;
        self.activation = activation;
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
                    return Err(DecodeError::ShortBinary(
                        crate::protocol::binary::ShortFrame(plaintext.len()),
                    ));
                }
                let mut timestamp = [0u8; 8];
                timestamp.copy_from_slice(&plaintext[1..HEADER_LEN]);
                Ok(Incoming::Binary(BinaryFrame::new(
                    BinaryKind::from_type(plaintext[0]),
                    i64::from_be_bytes(timestamp),
                    plaintext[AUDIO_HEADER_LEN..].to_vec(),
                )))
            }
            _ => Ok(Incoming::Binary(BinaryFrame::parse(&plaintext)?)),
        }
    }
}

/// Splits an image into the 1.0 artwork messages: an announce with its
/// display time and total size, then parts of at most
/// [`ARTWORK_PART_DATA`] bytes. An empty image, which clears the channel,
/// is the announce alone. The session writes them back to back, so no
/// other transfer starts while this one is in flight.
fn artwork_messages(frame: &BinaryFrame) -> Vec<Vec<u8>> {
    let type_byte = frame.kind.type_byte();
    let total =
        u32::try_from(frame.payload().len()).expect("rendered images are far smaller than 4 GiB");
    let mut announce = Vec::with_capacity(14);
    announce.extend_from_slice(&[type_byte, ARTWORK_ANNOUNCE]);
    announce.extend_from_slice(&frame.timestamp_us.to_be_bytes());
    announce.extend_from_slice(&total.to_be_bytes());
    let mut messages = vec![announce];
    for data in frame.payload().chunks(ARTWORK_PART_DATA) {
        let mut part = Vec::with_capacity(2 + data.len());
        part.extend_from_slice(&[type_byte, 0]);
        part.extend_from_slice(data);
        messages.push(part);
    }
    messages
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
        let rotating = self.rotation.as_ref().is_some_and(|r| r.pending.is_some());
        if self.held_frames.is_some() || rotating {
            // Held frames carry the first nonces of the new keys, so nothing
            // may overtake them. The spec also keeps messages back meanwhile.
            tracing::debug!("leaving out a message while a re-handshake completes");
            return None;
        }
        let plaintexts = self.plaintexts_of(outgoing);
        let mut frames = self.seal(plaintexts);
        if frames.len() != 1 {
            // Only small messages go through this path (goodbye,
            // server/time); every other write uses encode_frames.
            tracing::error!(
                frames = frames.len(),
                "a message needing fragmentation was encoded as one frame"
            );
            return None;
        }
        frames.pop()
    }

    fn encode_frames(&mut self, outgoing: &Outgoing) -> Vec<WsMessage> {
        // A rotation starts only after the activation went out, so that
        // message is never held.
        let message_1 = self.start_rotation();
        let plaintexts = self.plaintexts_of(outgoing);
        if let Some(message_1) = message_1 {
            self.hold(plaintexts);
            return message_1;
        }
        if plaintexts.is_empty() {
            return Vec::new();
        }
        if let Some(rotation) = self.rotation.as_mut().filter(|r| r.pending.is_some()) {
            rotation.held_plaintexts.extend(plaintexts);
            return Vec::new();
        }
        let frames = self.seal(plaintexts);
        match self.held_frames.as_mut() {
            Some(pending_frames) => {
                pending_frames.extend(frames);
                Vec::new()
            }
            None => frames,
        }
    }

    fn check_timers(&mut self) -> Result<(), DecodeError> {
        let Some(rotation) = &self.rotation else {
            return Ok(());
        };
        match &rotation.pending {
            Some((_, deadline)) if std::time::Instant::now() > *deadline => {
                Err(DecodeError::Transport(format!(
                    "the client sent no Noise message 2 of a key rotation within {:?}",
                    rotation.keys.timeout
                )))
            }
            _ => Ok(()),
        }
    }

    fn take_replies(&mut self) -> Vec<WsMessage> {
        std::mem::take(&mut self.replies)
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
            WsMessage::Text(_) => Err(DecodeError::Transport(
                "cleartext message after the Noise handshake".into(),
            )),
            _ => Ok(Incoming::Unknown {
                type_name: "control frame".to_string(),
            }),
        }
    }
}

impl SendspinCodec {
    /// Encodes `outgoing` into the plaintexts that carry it, each with its
    /// type byte.
    fn plaintexts_of(&mut self, outgoing: &Outgoing) -> Vec<Vec<u8>> {
        if self.hello_sent && matches!(outgoing, Outgoing::Message(Message::ClientHello(_))) {
            return Vec::new();
        }
        match outgoing {
            Outgoing::Message(message) => match self.message_text(message) {
                Some(text) => vec![json_plaintext(&text)],
                None => Vec::new(),
            },
            Outgoing::Binary(frame) => self.binary_plaintexts(frame),
        }
    }

    /// Seals plaintexts into the frames that carry them.
    fn seal(&mut self, plaintexts: Vec<Vec<u8>>) -> Vec<WsMessage> {
        plaintexts
            .into_iter()
            .flat_map(|plaintext| self.channel.seal(plaintext))
            .map(WsMessage::binary)
            .collect()
    }

    /// Holds plaintexts back until the running key rotation ends.
    fn hold(&mut self, plaintexts: Vec<Vec<u8>>) {
        if let Some(rotation) = self.rotation.as_mut() {
            rotation.held_plaintexts.extend(plaintexts);
        }
    }
}

/// Returns the type-0 plaintext of a JSON message.
fn json_plaintext(text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.push(0);
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

/// Metadata fields of v1 that a 1.0 metadata object leaves out when they
/// have no value.
const METADATA_FIELDS: [&str; 8] = [
    "title",
    "artist",
    "album_artist",
    "album",
    "artwork_url",
    "year",
    "track",
    "progress",
];

/// Rewrites a 1.0 `server/state` into the v1 form the engine reads. A 1.0
/// metadata object is complete, so a field it leaves out is cleared (null
/// in v1). `repeat` and `shuffle` move from the controller object to the
/// metadata object, where v1 keeps them.
fn state_for_engine(payload: &mut Map<String, Value>, metadata_timestamp: &mut i64) {
    if let Some(Value::Object(metadata)) = payload.get_mut("metadata") {
        for field in METADATA_FIELDS {
            metadata.entry(field).or_insert(Value::Null);
        }
        if let Some(timestamp) = metadata.get("timestamp").and_then(Value::as_i64) {
            *metadata_timestamp = timestamp;
        }
    }
    let moved: Vec<(String, Value)> = match payload.get_mut("controller") {
        Some(Value::Object(controller)) => ["repeat", "shuffle"]
            .into_iter()
            .filter_map(|key| Some((key.to_string(), controller.remove(key)?)))
            .collect(),
        _ => Vec::new(),
    };
    if moved.is_empty() {
        return;
    }
    if !matches!(payload.get("metadata"), Some(Value::Object(_))) {
        payload.insert(
            "metadata".into(),
            json!({ "timestamp": *metadata_timestamp }),
        );
    }
    if let Some(Value::Object(metadata)) = payload.get_mut("metadata") {
        metadata.extend(moved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::protocol::ConnectionReason;

    /// Seals `message` as the server and decodes it with the client codec.
    fn deliver(server: &mut Channel, client: &mut SendspinCodec, message: Value) -> Incoming {
        let mut incoming = Incoming::Consumed;
        for frame in server.seal_json(&message.to_string()) {
            incoming = client.decode(WsMessage::binary(frame)).unwrap();
        }
        incoming
    }

    /// Returns the server's end of a channel and a client codec on the other
    /// end, keyed by a PSK of `category`.
    fn client_codec(category: PskCategory) -> (Channel, SendspinCodec) {
        let channels = crate::noise::handshake::channel_pair();
        let client = SendspinCodec::client(
            channels.client,
            "server-id".into(),
            "server".into(),
            category,
            ClientPairing::default(),
        );
        (channels.server, client)
    }

    fn activation(roles: Value, activities: Value) -> Value {
        json!({ "type": "server/activate", "payload": { "activities": activities, "active_roles": roles } })
    }

    #[test]
    fn later_activation_reaches_session_when_roles_change() {
        let (mut server, mut client) = client_codec(PskCategory::Sentinel);
        let roles_of = |incoming: Incoming| match incoming {
            Incoming::Message(Message::ServerHello(hello)) => {
                Some((hello.active_roles, hello.connection_reason))
            }
            _ => None,
        };
        let first = deliver(&mut server, &mut client, activation(json!([]), json!([])));
        assert_eq!(roles_of(first), Some((vec![], ConnectionReason::Discovery)));
        let same = deliver(&mut server, &mut client, activation(json!([]), json!([])));
        assert_eq!(same, Incoming::Consumed, "an unchanged activation");

        let approved = activation(json!(["player@v1"]), json!(["playback"]));
        let approved = deliver(&mut server, &mut client, approved);
        assert_eq!(
            roles_of(approved),
            Some((vec!["player@v1".to_string()], ConnectionReason::Playback))
        );
        let again = activation(json!(["player@v1"]), json!(["playback"]));
        assert_eq!(deliver(&mut server, &mut client, again), Incoming::Consumed);
    }

    #[test]
    fn unpair_after_pairing_reaches_session() {
        let (mut server, mut client) = client_codec(PskCategory::Pairing);
        let unpair = json!({ "type": "server/unpair", "payload": {} });
        assert_eq!(
            deliver(&mut server, &mut client, unpair.clone()),
            Incoming::Consumed,
            "server/unpair before the session is paired"
        );

        client.set_category(PskCategory::LongTerm);
        assert_eq!(
            deliver(&mut server, &mut client, unpair),
            Incoming::Unpaired
        );
    }

    #[test]
    fn later_activation_without_roles_keeps_them() {
        let (mut server, mut client) = client_codec(PskCategory::Sentinel);
        let first = deliver(
            &mut server,
            &mut client,
            activation(json!(["player@v1", "controller@v1"]), json!([])),
        );
        assert!(
            matches!(first, Incoming::Message(Message::ServerHello(_))),
            "the first activation: {first:?}"
        );

        let playback =
            json!({ "type": "server/activate", "payload": { "activities": ["playback"] } });
        let Incoming::Message(Message::ServerHello(hello)) =
            deliver(&mut server, &mut client, playback)
        else {
            panic!("a change of activities reaches the session");
        };
        assert_eq!(hello.active_roles, ["player@v1", "controller@v1"]);
        assert_eq!(hello.connection_reason, ConnectionReason::Playback);

        let same = activation(json!(["player@v1", "controller@v1"]), json!(["playback"]));
        assert_eq!(
            deliver(&mut server, &mut client, same),
            Incoming::Consumed,
            "the same roles, now stated"
        );
    }

    #[test]
    fn complete_metadata_clears_left_out_fields() {
        let mut timestamp = 0;
        let mut payload = json!({"metadata": {"timestamp": 5_000, "title": "Two"}})
            .as_object()
            .unwrap()
            .clone();
        state_for_engine(&mut payload, &mut timestamp);
        assert_eq!(payload["metadata"]["title"], "Two");
        assert_eq!(payload["metadata"]["artist"], Value::Null);
        assert_eq!(payload["metadata"]["progress"], Value::Null);
        assert_eq!(timestamp, 5_000);
        let state: crate::protocol::ServerState =
            serde_json::from_value(Value::Object(payload)).unwrap();
        assert_eq!(
            state.metadata.unwrap().artist,
            Some(None),
            "v1 reads null as cleared"
        );
    }

    #[test]
    fn controller_repeat_and_shuffle_reach_metadata() {
        let mut timestamp = 7_000;
        let mut payload = json!({"controller": {
            "supported_commands": ["play"], "volume": 50, "muted": false, "repeat": "all", "shuffle": true,
        }})
        .as_object()
        .unwrap()
        .clone();
        state_for_engine(&mut payload, &mut timestamp);
        assert_eq!(payload["controller"].get("repeat"), None);
        assert_eq!(payload["metadata"]["repeat"], "all");
        assert_eq!(payload["metadata"]["shuffle"], true);
        assert_eq!(payload["metadata"]["timestamp"], 7_000);
        assert_eq!(
            payload["metadata"].get("title"),
            None,
            "no metadata object came, so nothing is cleared"
        );
        let state: crate::protocol::ServerState =
            serde_json::from_value(Value::Object(payload)).unwrap();
        assert_eq!(state.metadata.unwrap().shuffle, Some(Some(true)));
    }

    fn shape(state: &mut StateShape, payload: Value) -> Option<Value> {
        let mut payload = payload.as_object().unwrap().clone();
        state
            .reshape(&mut payload)
            .then_some(Value::Object(payload))
    }

    #[test]
    fn metadata_updates_become_complete_objects() {
        let mut state = StateShape::default();
        let first = json!({"metadata": {
            "timestamp": 1_000_000, "title": "One", "artist": "A", "repeat": "off", "shuffle": false,
            "progress": {"track_progress": 0, "track_duration": 30_000, "playback_speed": 1000},
        }});
        let sent = shape(&mut state, first).unwrap();
        assert_eq!(sent["metadata"]["title"], "One");
        assert_eq!(
            sent["metadata"].get("repeat"),
            None,
            "repeat belongs to the controller in 1.0"
        );

        // Two seconds later only the artist changes: the object is complete
        // and its progress is moved on to the new timestamp.
        let sent = shape(
            &mut state,
            json!({"metadata": {"timestamp": 3_000_000, "artist": null, "album": "B"}}),
        )
        .unwrap();
        assert_eq!(sent["metadata"]["title"], "One");
        assert_eq!(sent["metadata"].get("artist"), None);
        assert_eq!(sent["metadata"]["album"], "B");
        assert_eq!(sent["metadata"]["timestamp"], 3_000_000);
        assert_eq!(sent["metadata"]["progress"]["track_progress"], 2000);
    }

    #[test]
    fn repeat_and_shuffle_go_to_the_controller() {
        let mut state = StateShape::default();
        let controller =
            json!({"controller": {"supported_commands": ["next"], "volume": 50, "muted": false}});
        let sent = shape(&mut state, controller).unwrap();
        assert_eq!(sent["controller"]["repeat"], "off");
        assert_eq!(sent["controller"]["shuffle"], false);

        // A repeat change alone is controller news, not metadata news.
        let sent = shape(
            &mut state,
            json!({"metadata": {"timestamp": 5, "repeat": "all"}}),
        )
        .unwrap();
        assert_eq!(sent.get("metadata"), None);
        assert_eq!(sent["controller"]["repeat"], "all");
        assert_eq!(sent["controller"]["volume"], 50);
        assert_eq!(
            shape(
                &mut state,
                json!({"metadata": {"timestamp": 6, "repeat": "all"}})
            ),
            None,
            "nothing changed"
        );
    }

    #[test]
    fn hidden_metadata_is_not_sent() {
        let mut state = StateShape {
            hidden_metadata: true,
            ..StateShape::default()
        };
        assert_eq!(
            shape(
                &mut state,
                json!({"metadata": {"timestamp": 1, "title": "One"}})
            ),
            None
        );
        shape(&mut state, json!({"controller": {"volume": 50}})).unwrap();
        let sent = shape(
            &mut state,
            json!({"metadata": {"timestamp": 2, "title": "Two", "shuffle": true}}),
        )
        .unwrap();
        assert_eq!(sent.get("metadata"), None);
        assert_eq!(sent["controller"]["shuffle"], true);
    }

    #[test]
    fn images_become_an_announce_and_parts() {
        let image: Vec<u8> = (0..ARTWORK_PART_DATA + 10).map(|i| i as u8).collect();
        let frame = BinaryFrame::new(BinaryKind::Artwork(1), 0x0102_0304_0506_0708, image.clone());
        let messages = artwork_messages(&frame);
        assert_eq!(messages.len(), 3);
        let announce = &messages[0];
        assert_eq!(announce.len(), 14);
        assert_eq!(announce[..2], [9, ARTWORK_ANNOUNCE]);
        assert_eq!(announce[2..10], 0x0102_0304_0506_0708i64.to_be_bytes());
        assert_eq!(announce[10..], (image.len() as u32).to_be_bytes());
        assert!(messages[1..]
            .iter()
            .all(|part| part[..2] == [9, 0] && part.len() <= MAX_PLAINTEXT));
        let joined: Vec<u8> = messages[1..]
            .iter()
            .flat_map(|part| part[2..].to_vec())
            .collect();
        assert_eq!(joined, image);

        let clear = BinaryFrame::new(BinaryKind::Artwork(0), 5, Vec::new());
        let messages = artwork_messages(&clear);
        assert_eq!(messages.len(), 1, "an empty image is the announce alone");
        assert_eq!(messages[0][10..], [0, 0, 0, 0]);
    }

    #[test]
    fn key_rotation_round_trip() {
        use crate::noise::{PskChoice, Suite};
        use crate::protocol::{ServerHello, ServerTime};

        let channels = crate::noise::handshake::channel_pair();
        let rekey = RekeyKeys {
            identity: channels.client_identity.clone(),
            suite: Suite::ChaChaPoly,
            records_path: std::path::PathBuf::from("/nonexistent/pairings-player.json"),
            pairing_psk: None,
            handshake_hash: channels.handshake_hash.clone(),
        };
        let rotation = KeyRotation {
            identity: channels.server_identity.clone(),
            client_key: *channels.client_identity.public_key(),
            suite: Suite::ChaChaPoly,
            psk: PskChoice::sentinel(),
            handshake_hash: channels.handshake_hash.clone(),
            interval: std::time::Duration::ZERO,
            timeout: std::time::Duration::from_secs(10),
        };
        let client_id = channels.client_identity.id();
        let mut server = SendspinCodec::server(channels.server, client_id, PskCategory::Sentinel)
            .with_key_rotation(rotation);
        let mut client = SendspinCodec::client(
            channels.client,
            channels.server_identity.id(),
            "server".into(),
            PskCategory::Sentinel,
            ClientPairing::default(),
        )
        .with_rekey(rekey);
        let deliver_all = |frames: Vec<WsMessage>, to: &mut SendspinCodec| -> Vec<Incoming> {
            frames
                .into_iter()
                .map(|frame| to.decode(frame).unwrap())
                .filter(|incoming| *incoming != Incoming::Consumed)
                .collect()
        };

        // The activation goes out as usual, and arms the rotation.
        let hello = Outgoing::Message(Message::ServerHello(ServerHello {
            server_id: "server".into(),
            name: "server".into(),
            version: 1,
            active_roles: vec!["player@v1".into()],
            connection_reason: ConnectionReason::Playback,
        }));
        let activation = server.encode_frames(&hello);
        assert_eq!(deliver_all(activation, &mut client).len(), 1);

        // The next message starts a rotation: message 1 goes out, and the
        // message waits for the new keys.
        let time = Outgoing::Message(Message::ServerTime(ServerTime {
            client_transmitted: 1,
            server_received: 2,
            server_transmitted: 3,
        }));
        let message_1 = server.encode_frames(&time);
        assert_eq!(message_1.len(), 1);
        assert!(
            server.encode_frames(&time).is_empty(),
            "held during the rotation"
        );
        assert_eq!(deliver_all(message_1, &mut client), []);
        let message_2 = client.take_replies();
        assert_eq!(message_2.len(), 1);

        // Message 2 switches the server's keys; the activation comes first
        // under them, then the two held messages.
        assert_eq!(deliver_all(message_2, &mut server), []);
        let after = server.take_replies();
        assert_eq!(after.len(), 3);
        let received = deliver_all(after, &mut client);
        assert!(
            matches!(
                received.as_slice(),
                [
                    Incoming::Message(Message::ServerTime(_)),
                    Incoming::Message(Message::ServerTime(_))
                ]
            ),
            "{received:?}"
        );
        assert!(server.check_timers().is_ok());
    }
}
