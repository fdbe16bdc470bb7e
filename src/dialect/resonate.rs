//! Legacy Resonate, as spoken by aioresonate 0.13.2: `{"type", "payload"}`
//! JSON with unversioned roles and flat `player_support` lists, and binary
//! frames of a type byte (1 = audio) plus a u64 big-endian timestamp.
//!
//! The codec translates to and from the engine's v1 [`Message`]s. A legacy
//! `group/command` is a v1 controller `client/command`. Legacy messages
//! without a v1 counterpart (the other `group/*` messages, `stream/update`
//! without a preceding `stream/start`) decode as [`Incoming::Unknown`]. The codec is
//! stateful because some legacy messages carry what v1 spreads over several:
//! `player/update` needs the full volume, mute and stream state, and
//! `server/hello` names no active roles.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::sendspin_v1::encode_message as encode_v1_message;
use super::sendspin_v1::envelope;
use super::{DecodeError, Dialect, Incoming, Outgoing, WireCodec};
use crate::protocol::binary::ShortFrame;
use crate::protocol::{
    BinaryFrame, BinaryKind, ClientCommand, ClientHello, ClientState, ClientStateKind,
    ConnectionReason, ControllerCommand, ControllerState, GroupUpdate, Message, PlaybackState,
    PlayerFormatRequest, PlayerState, PlayerSupport, ServerHello, ServerState, StreamEnd,
    StreamRequestFormat, StreamStart, StreamStartPlayer, SupportedFormat,
};

/// Bytes in front of a legacy binary payload: a type byte and a u64
/// big-endian timestamp in microseconds on the server clock.
const LEGACY_HEADER_LEN: usize = 9;

/// Role families that exist in the legacy dialect without a version suffix.
const LEGACY_ROLES: [&str; 4] = ["player", "controller", "metadata", "visualizer"];

/// Roles the codec forwards in a legacy `client/hello`. aioresonate rejects a
/// hello that lists `metadata` or `visualizer` without its support object,
/// and the engine has no legacy form of those objects yet.
const FORWARDED_ROLES: [&str; 2] = ["player", "controller"];

/// Volume and mute reported before the engine has sent any player state.
const DEFAULT_VOLUME: u8 = 100;

/// `player_support` of a legacy `client/hello`: one list per format field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct LegacyPlayerSupport {
    support_codecs: Vec<String>,
    support_channels: Vec<u16>,
    support_sample_rates: Vec<u32>,
    support_bit_depth: Vec<u16>,
    buffer_capacity: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct LegacyClientHello {
    client_id: String,
    name: String,
    version: u32,
    supported_roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    player_support: Option<LegacyPlayerSupport>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct LegacyServerHello {
    server_id: String,
    name: String,
    version: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LegacyPlayerState {
    Playing,
    Idle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LegacyPlayerUpdate {
    state: LegacyPlayerState,
    volume: u8,
    muted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LegacyPlaybackState {
    Playing,
    Paused,
    Stopped,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct LegacySessionUpdate {
    group_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    playback_state: Option<LegacyPlaybackState>,
}

/// The controller part of a legacy `group/update`; its member list and
/// session id have no place in the v1 controller state.
#[derive(Clone, Debug, PartialEq, Deserialize)]
struct LegacyGroupUpdate {
    supported_commands: Vec<String>,
    volume: i64,
    muted: bool,
}

/// The delta of a legacy `stream/update` player object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct LegacyStreamUpdatePlayer {
    #[serde(default)]
    codec: Option<String>,
    #[serde(default)]
    sample_rate: Option<u32>,
    #[serde(default)]
    channels: Option<u16>,
    #[serde(default)]
    bit_depth: Option<u16>,
    #[serde(default)]
    codec_header: Option<String>,
}

/// The codec of the legacy Resonate dialect, one per connection.
#[derive(Clone, Debug, Default)]
pub struct ResonateCodec {
    /// v1 roles of the last `client/hello` encoded or decoded that the
    /// legacy hello carried, reported as active when the legacy
    /// `server/hello` arrives.
    hello_roles: Vec<String>,
    /// Last volume and mute of the player, to fill the complete legacy
    /// `player/update` from v1 `client/state` deltas.
    player: PlayerState,
    /// Format of the running player stream, to apply `stream/update` deltas.
    stream: Option<StreamStartPlayer>,
    /// Group id of the last `session/update`, since legacy requires one.
    group_id: Option<String>,
}

impl WireCodec for ResonateCodec {
    fn dialect(&self) -> Dialect {
        Dialect::Resonate
    }

    fn encode(&mut self, outgoing: &Outgoing) -> Option<WsMessage> {
        match outgoing {
            Outgoing::Message(message) => self.encode_message(message).map(WsMessage::text),
            Outgoing::Binary(frame) => Some(WsMessage::binary(encode_binary(frame))),
        }
    }

    fn decode(&mut self, frame: WsMessage) -> Result<Incoming, DecodeError> {
        match frame {
            WsMessage::Text(text) => self.decode_text(text.as_str()),
            WsMessage::Binary(bytes) => Ok(Incoming::Binary(decode_binary(&bytes)?)),
            // Control frames are handled by the transport.
            _ => Ok(Incoming::Unknown {
                type_name: "control frame".to_string(),
            }),
        }
    }
}

fn payload<T: DeserializeOwned>(type_name: &str, payload: Value) -> Result<T, DecodeError> {
    serde_json::from_value(payload).map_err(|source| DecodeError::InvalidPayload {
        type_name: type_name.to_string(),
        source,
    })
}

/// Strips the version from a v1 role, or returns `None` for roles the
/// legacy dialect does not forward.
fn legacy_role(role: &str) -> Option<&'static str> {
    let family = role.split('@').next().unwrap_or(role);
    FORWARDED_ROLES
        .iter()
        .copied()
        .find(|known| *known == family)
}

/// Adds `@v1` to a legacy role; unknown roles are kept as they are.
fn v1_role(role: &str) -> String {
    if LEGACY_ROLES.contains(&role) {
        format!("{role}@v1")
    } else {
        role.to_string()
    }
}

/// Pushes `value` unless the list already contains it, keeping first-seen order.
fn push_unique<T: PartialEq>(list: &mut Vec<T>, value: T) {
    if !list.contains(&value) {
        list.push(value);
    }
}

/// Flattens v1 formats into the legacy per-field lists, each in the order
/// of first appearance. Legacy servers combine the lists freely, so a
/// player must support every combination of the values it lists.
fn legacy_player_support(support: &PlayerSupport) -> LegacyPlayerSupport {
    let mut legacy = LegacyPlayerSupport {
        support_codecs: Vec::new(),
        support_channels: Vec::new(),
        support_sample_rates: Vec::new(),
        support_bit_depth: Vec::new(),
        buffer_capacity: support.buffer_capacity,
    };
    for format in &support.supported_formats {
        push_unique(&mut legacy.support_codecs, format.codec.clone());
        push_unique(&mut legacy.support_channels, format.channels);
        push_unique(&mut legacy.support_sample_rates, format.sample_rate);
        push_unique(&mut legacy.support_bit_depth, format.bit_depth);
    }
    legacy
}

/// Expands the legacy lists into every combination, codec first, each list
/// in its priority order.
fn v1_player_support(legacy: LegacyPlayerSupport) -> PlayerSupport {
    let mut supported_formats = Vec::new();
    for codec in &legacy.support_codecs {
        for &channels in &legacy.support_channels {
            for &sample_rate in &legacy.support_sample_rates {
                for &bit_depth in &legacy.support_bit_depth {
                    supported_formats.push(SupportedFormat {
                        codec: codec.clone(),
                        channels,
                        sample_rate,
                        bit_depth,
                    });
                }
            }
        }
    }
    PlayerSupport {
        supported_formats,
        buffer_capacity: legacy.buffer_capacity,
        // aioresonate 0.13.2 defines no server-to-player command, so a
        // server cannot change a legacy player's volume or mute.
        supported_commands: Vec::new(),
    }
}

impl ResonateCodec {
    fn encode_message(&mut self, message: &Message) -> Option<String> {
        let text = match message {
            Message::ClientHello(hello) => {
                let mut supported_roles = Vec::new();
                for role in &hello.supported_roles {
                    if let Some(legacy) = legacy_role(role) {
                        push_unique(&mut supported_roles, legacy.to_string());
                    }
                }
                // A legacy server can activate only the roles it was sent.
                self.hello_roles = supported_roles.iter().map(|role| v1_role(role)).collect();
                let legacy = LegacyClientHello {
                    client_id: hello.client_id.clone(),
                    name: hello.name.clone(),
                    version: hello.version,
                    supported_roles,
                    player_support: hello.player_support.as_ref().map(legacy_player_support),
                };
                envelope("client/hello", &legacy)
            }
            Message::ClientState(state) => {
                if let Some(player) = state.player {
                    if player.volume.is_some() {
                        self.player.volume = player.volume;
                    }
                    if player.muted.is_some() {
                        self.player.muted = player.muted;
                    }
                }
                let update = LegacyPlayerUpdate {
                    state: if self.stream.is_some() {
                        LegacyPlayerState::Playing
                    } else {
                        LegacyPlayerState::Idle
                    },
                    volume: self.player.volume.unwrap_or(DEFAULT_VOLUME),
                    muted: self.player.muted.unwrap_or(false),
                };
                envelope("player/update", &update)
            }
            Message::StreamRequestFormat(request) => {
                let player = request.player.clone().unwrap_or_default();
                envelope("stream/request-format", &player)
            }
            Message::ServerHello(hello) => {
                let legacy = LegacyServerHello {
                    server_id: hello.server_id.clone(),
                    name: hello.name.clone(),
                    version: hello.version,
                };
                envelope("server/hello", &legacy)
            }
            Message::StreamStart(start) => {
                self.stream = start.player.clone();
                let mut legacy = Map::new();
                if let Some(player) = &start.player {
                    legacy.insert(
                        "player".into(),
                        serde_json::to_value(player).expect("formats serialize"),
                    );
                }
                envelope("stream/start", &legacy)
            }
            Message::StreamEnd(_) => {
                self.stream = None;
                json!({ "type": "stream/end" }).to_string()
            }
            Message::GroupUpdate(update) => {
                if let Some(group_id) = &update.group_id {
                    self.group_id = group_id.clone();
                }
                let playback_state = match update.playback_state {
                    Some(Some(PlaybackState::Playing)) => Some(LegacyPlaybackState::Playing),
                    Some(Some(PlaybackState::Stopped)) => Some(LegacyPlaybackState::Stopped),
                    Some(None) | None => None,
                };
                let legacy = LegacySessionUpdate {
                    group_id: self.group_id.clone().unwrap_or_default(),
                    playback_state,
                };
                envelope("session/update", &legacy)
            }
            // `client/time` and `server/time` have the same shape in both
            // dialects.
            Message::ClientTime(_) | Message::ServerTime(_) => encode_v1_message(message),
            // A legacy `group/command` payload has the fields of the v1
            // controller command.
            Message::ClientCommand(ClientCommand {
                controller: Some(controller),
                ..
            }) => envelope("group/command", controller),
            // aioresonate 0.13.2 has no goodbye, no player commands, no
            // server state and no stream/clear. Its peers would log a parse
            // error for each, so they are left out.
            Message::ClientGoodbye(_)
            | Message::ClientCommand(_)
            | Message::ServerState(_)
            | Message::ServerCommand(_)
            | Message::StreamClear(_) => return None,
        };
        Some(text)
    }

    fn decode_text(&mut self, text: &str) -> Result<Incoming, DecodeError> {
        let mut value: Value = serde_json::from_str(text).map_err(DecodeError::InvalidJson)?;
        let Some(type_name) = value
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return Err(DecodeError::MissingType);
        };
        // `stream/end` has no payload in legacy, so a missing one is empty.
        let body = match value.get_mut("payload").map(Value::take) {
            Some(Value::Null) | None => Value::Object(Default::default()),
            Some(body) => body,
        };
        let t = type_name.as_str();
        let message = match t {
            "client/hello" => {
                let legacy: LegacyClientHello = payload(t, body)?;
                let hello = ClientHello {
                    client_id: legacy.client_id,
                    name: legacy.name,
                    device_info: None,
                    version: legacy.version,
                    supported_roles: legacy
                        .supported_roles
                        .iter()
                        .map(|role| v1_role(role))
                        .collect(),
                    player_support: legacy.player_support.map(v1_player_support),
                    artwork_support: None,
                    visualizer_support: None,
                    extra: Map::new(),
                };
                self.hello_roles = hello.supported_roles.clone();
                Message::ClientHello(hello)
            }
            "client/time" => Message::ClientTime(payload(t, body)?),
            "player/update" => {
                let legacy: LegacyPlayerUpdate = payload(t, body)?;
                self.player = PlayerState {
                    volume: Some(legacy.volume),
                    muted: Some(legacy.muted),
                };
                Message::ClientState(ClientState {
                    state: Some(ClientStateKind::Synchronized),
                    player: Some(self.player),
                    extra: Map::new(),
                })
            }
            "stream/request-format" => Message::StreamRequestFormat(StreamRequestFormat {
                player: Some(payload::<PlayerFormatRequest>(t, body)?),
                artwork: None,
                extra: Map::new(),
            }),
            "server/hello" => {
                let legacy: LegacyServerHello = payload(t, body)?;
                // The legacy hello names no active roles, so the roles this
                // codec forwarded in `client/hello` are reported as active.
                // NOTE: a legacy server that ignores one of them is not detected.
                let active_roles = self
                    .hello_roles
                    .iter()
                    .filter(|role| legacy_role(role).is_some())
                    .cloned()
                    .collect();
                Message::ServerHello(ServerHello {
                    server_id: legacy.server_id,
                    name: legacy.name,
                    version: legacy.version,
                    active_roles,
                    connection_reason: ConnectionReason::Playback,
                })
            }
            "server/time" => Message::ServerTime(payload(t, body)?),
            "stream/start" => {
                #[derive(Deserialize)]
                struct LegacyStreamStart {
                    #[serde(default)]
                    player: Option<StreamStartPlayer>,
                }
                let legacy: LegacyStreamStart = payload(t, body)?;
                self.stream = legacy.player.clone();
                Message::StreamStart(StreamStart {
                    player: legacy.player,
                    ..StreamStart::default()
                })
            }
            "stream/update" => {
                #[derive(Deserialize)]
                struct LegacyStreamUpdate {
                    #[serde(default)]
                    player: Option<LegacyStreamUpdatePlayer>,
                }
                let legacy: LegacyStreamUpdate = payload(t, body)?;
                let (Some(delta), Some(current)) = (legacy.player, self.stream.as_mut()) else {
                    return Ok(Incoming::Unknown { type_name });
                };
                // A format change is a new `stream/start` in v1.
                apply_stream_delta(current, delta);
                Message::StreamStart(StreamStart {
                    player: Some(current.clone()),
                    ..StreamStart::default()
                })
            }
            "group/command" => Message::ClientCommand(ClientCommand {
                controller: Some(payload::<ControllerCommand>(t, body)?),
                extra: Map::new(),
            }),
            "stream/end" => {
                self.stream = None;
                Message::StreamEnd(StreamEnd { roles: None })
            }
            "session/update" => {
                let legacy: LegacySessionUpdate = payload(t, body)?;
                let playback_state = legacy.playback_state.map(|state| match state {
                    LegacyPlaybackState::Playing => PlaybackState::Playing,
                    LegacyPlaybackState::Paused | LegacyPlaybackState::Stopped => {
                        PlaybackState::Stopped
                    }
                });
                self.group_id = Some(legacy.group_id.clone());
                Message::GroupUpdate(GroupUpdate {
                    playback_state: playback_state.map(Some),
                    group_id: Some(Some(legacy.group_id)),
                    group_name: None,
                })
            }
            "group/update" => {
                let legacy: LegacyGroupUpdate = payload(t, body)?;
                Message::ServerState(ServerState {
                    controller: Some(ControllerState {
                        supported_commands: legacy.supported_commands,
                        volume: legacy.volume.clamp(0, 100) as u8,
                        muted: legacy.muted,
                    }),
                    ..ServerState::default()
                })
            }
            _ => return Ok(Incoming::Unknown { type_name }),
        };
        Ok(Incoming::Message(message))
    }
}

fn apply_stream_delta(current: &mut StreamStartPlayer, delta: LegacyStreamUpdatePlayer) {
    if let Some(codec) = delta.codec {
        current.codec = codec;
    }
    if let Some(sample_rate) = delta.sample_rate {
        current.sample_rate = sample_rate;
    }
    if let Some(channels) = delta.channels {
        current.channels = channels;
    }
    if let Some(bit_depth) = delta.bit_depth {
        current.bit_depth = bit_depth;
    }
    if delta.codec_header.is_some() {
        current.codec_header = delta.codec_header;
    }
}

/// Maps a legacy binary type byte: 1 audio, 2 media art, 3 visualization.
fn binary_kind(byte: u8) -> BinaryKind {
    match byte {
        1 => BinaryKind::Audio,
        2 => BinaryKind::Artwork(0),
        3 => BinaryKind::Visualizer(0),
        other => BinaryKind::Reserved(other),
    }
}

fn binary_type_byte(kind: BinaryKind) -> u8 {
    match kind {
        BinaryKind::Audio => 1,
        BinaryKind::Artwork(_) => 2,
        BinaryKind::Visualizer(_) => 3,
        BinaryKind::Application(byte) | BinaryKind::Reserved(byte) => byte,
    }
}

fn decode_binary(bytes: &[u8]) -> Result<BinaryFrame, ShortFrame> {
    if bytes.len() < LEGACY_HEADER_LEN {
        return Err(ShortFrame(bytes.len()));
    }
    let mut timestamp = [0u8; 8];
    timestamp.copy_from_slice(&bytes[1..LEGACY_HEADER_LEN]);
    // NOTE: timestamps at or above 2^63 µs (about 292,000 years) wrap to
    // negative values.
    Ok(BinaryFrame::new(
        binary_kind(bytes[0]),
        u64::from_be_bytes(timestamp) as i64,
        bytes[LEGACY_HEADER_LEN..].to_vec(),
    ))
}

fn encode_binary(frame: &BinaryFrame) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(LEGACY_HEADER_LEN + frame.payload().len());
    bytes.push(binary_type_byte(frame.kind));
    // Legacy timestamps are unsigned, so times before the server's epoch
    // are sent as 0.
    bytes.extend_from_slice(&(frame.timestamp_us.max(0) as u64).to_be_bytes());
    bytes.extend_from_slice(frame.payload());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientTime, ServerTime};

    #[test]
    fn messages_without_legacy_form_are_left_out() {
        use crate::protocol::{ClientGoodbye, GoodbyeReason, ServerState};
        let mut codec = ResonateCodec::default();
        let goodbye = Message::ClientGoodbye(ClientGoodbye {
            reason: GoodbyeReason::Shutdown,
        });
        assert!(codec.encode(&Outgoing::Message(goodbye)).is_none());
        assert!(codec
            .encode(&Outgoing::Message(Message::ServerState(
                ServerState::default()
            )))
            .is_none());
    }

    fn text_json(frame: Option<WsMessage>) -> Value {
        match frame.expect("the legacy dialect has this message") {
            WsMessage::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    fn decode_message(codec: &mut ResonateCodec, sample: &Value) -> Message {
        match codec.decode(WsMessage::text(sample.to_string())).unwrap() {
            Incoming::Message(message) => message,
            other => panic!("expected a message from {sample}, got {other:?}"),
        }
    }

    /// Decodes a legacy sample, encodes the result again and checks that the
    /// JSON is unchanged.
    fn assert_round_trip(codec: &mut ResonateCodec, sample: Value) -> Message {
        let message = decode_message(codec, &sample);
        let back = text_json(codec.encode(&Outgoing::Message(message.clone())));
        assert_eq!(back, sample, "decoded as {message:?}");
        message
    }

    fn client_hello_sample() -> Value {
        json!({"type": "client/hello", "payload": {
            "client_id": "kitchen", "name": "Kitchen", "version": 1,
            "supported_roles": ["player", "controller"],
            "player_support": {
                "support_codecs": ["pcm", "flac"],
                "support_channels": [2, 1],
                "support_sample_rates": [48000, 44100],
                "support_bit_depth": [16],
                "buffer_capacity": 1048576
            }
        }})
    }

    #[test]
    fn client_hello_round_trips() {
        let message = assert_round_trip(&mut ResonateCodec::default(), client_hello_sample());
        let Message::ClientHello(hello) = message else {
            panic!("expected client/hello, got {message:?}");
        };
        assert_eq!(hello.supported_roles, ["player@v1", "controller@v1"]);
        let support = hello.player_support.unwrap();
        assert_eq!(support.buffer_capacity, 1048576);
        assert_eq!(support.supported_formats.len(), 8);
        assert_eq!(
            support.supported_formats[0],
            SupportedFormat {
                codec: "pcm".into(),
                channels: 2,
                sample_rate: 48000,
                bit_depth: 16
            }
        );
        assert_eq!(support.supported_formats[7].codec, "flac");
        assert_eq!(support.supported_formats[7].sample_rate, 44100);
        assert!(
            support.supported_commands.is_empty(),
            "{:?}",
            support.supported_commands
        );
    }

    #[test]
    fn client_hello_drops_roles_without_legacy_form() {
        let hello = ClientHello {
            client_id: "c".into(),
            name: "C".into(),
            device_info: None,
            version: 1,
            supported_roles: vec![
                "player@v2".into(),
                "player@v1".into(),
                "artwork@v1".into(),
                "_x@v1".into(),
            ],
            player_support: None,
            artwork_support: None,
            visualizer_support: None,
            extra: Map::new(),
        };
        let json = text_json(
            ResonateCodec::default().encode(&Outgoing::Message(Message::ClientHello(hello))),
        );
        assert_eq!(json["payload"]["supported_roles"], json!(["player"]));
        assert!(json["payload"].get("player_support").is_none());
    }

    #[test]
    fn server_hello_round_trips_with_roles_of_the_hello() {
        let mut codec = ResonateCodec::default();
        decode_message(&mut codec, &client_hello_sample());
        let sample = json!({"type": "server/hello", "payload": {
            "server_id": "ma", "name": "Music Assistant", "version": 1
        }});
        let message = assert_round_trip(&mut codec, sample);
        let Message::ServerHello(hello) = message else {
            panic!("expected server/hello, got {message:?}");
        };
        assert_eq!(hello.active_roles, ["player@v1", "controller@v1"]);
        assert_eq!(hello.connection_reason, ConnectionReason::Playback);
    }

    #[test]
    fn server_hello_activates_only_forwarded_roles() {
        let hello = ClientHello {
            client_id: "probe".into(),
            name: "Probe".into(),
            device_info: None,
            version: 1,
            supported_roles: vec![
                "controller@v2".into(),
                "controller@v1".into(),
                "metadata@v1".into(),
            ],
            player_support: None,
            artwork_support: None,
            visualizer_support: None,
            extra: Map::new(),
        };
        let mut codec = ResonateCodec::default();
        let json = text_json(codec.encode(&Outgoing::Message(Message::ClientHello(hello))));
        assert_eq!(json["payload"]["supported_roles"], json!(["controller"]));
        let reply = json!({"type": "server/hello", "payload": {"server_id": "s", "name": "S", "version": 1}});
        let Message::ServerHello(server_hello) = decode_message(&mut codec, &reply) else {
            panic!("expected server/hello");
        };
        assert_eq!(server_hello.active_roles, ["controller@v1"]);
    }

    #[test]
    fn time_messages_round_trip() {
        let mut codec = ResonateCodec::default();
        let message = assert_round_trip(
            &mut codec,
            json!({"type": "client/time", "payload": {"client_transmitted": 123456789}}),
        );
        assert_eq!(
            message,
            Message::ClientTime(ClientTime {
                client_transmitted: 123456789
            })
        );
        let message = assert_round_trip(
            &mut codec,
            json!({"type": "server/time", "payload": {
                "client_transmitted": 1, "server_received": 20, "server_transmitted": 30
            }}),
        );
        assert_eq!(
            message,
            Message::ServerTime(ServerTime {
                client_transmitted: 1,
                server_received: 20,
                server_transmitted: 30
            })
        );
    }

    #[test]
    fn stream_start_and_end_round_trip() {
        let mut codec = ResonateCodec::default();
        let start = json!({"type": "stream/start", "payload": {"player": {
            "codec": "pcm", "sample_rate": 48000, "channels": 2, "bit_depth": 16
        }}});
        let message = assert_round_trip(&mut codec, start);
        let Message::StreamStart(start) = message else {
            panic!("expected stream/start, got {message:?}");
        };
        assert_eq!(start.player.unwrap().sample_rate, 48000);
        let message = assert_round_trip(&mut codec, json!({"type": "stream/end"}));
        assert_eq!(message, Message::StreamEnd(StreamEnd { roles: None }));
    }

    #[test]
    fn stream_start_ignores_metadata_object() {
        let sample = json!({"type": "stream/start", "payload": {
            "player": {"codec": "flac", "sample_rate": 44100, "channels": 2, "bit_depth": 24,
                       "codec_header": "ZkxhQw=="},
            "metadata": {"art_format": "jpeg"}
        }});
        let message = decode_message(&mut ResonateCodec::default(), &sample);
        let Message::StreamStart(start) = message else {
            panic!("expected stream/start, got {message:?}");
        };
        assert_eq!(
            start.player.unwrap().codec_header.as_deref(),
            Some("ZkxhQw==")
        );
        assert!(start.extra.is_empty());
    }

    #[test]
    fn stream_update_becomes_stream_start() {
        let mut codec = ResonateCodec::default();
        let update =
            json!({"type": "stream/update", "payload": {"player": {"sample_rate": 44100}}});
        let before_start = codec.decode(WsMessage::text(update.to_string())).unwrap();
        assert_eq!(
            before_start,
            Incoming::Unknown {
                type_name: "stream/update".into()
            }
        );
        decode_message(
            &mut codec,
            &json!({"type": "stream/start", "payload": {"player": {
                "codec": "pcm", "sample_rate": 48000, "channels": 2, "bit_depth": 16
            }}}),
        );
        let message = decode_message(&mut codec, &update);
        let Message::StreamStart(start) = message else {
            panic!("expected stream/start, got {message:?}");
        };
        let player = start.player.unwrap();
        assert_eq!(player.sample_rate, 44100);
        assert_eq!(player.channels, 2);
        assert_eq!(player.codec, "pcm");
    }

    #[test]
    fn player_update_round_trips_with_stream_state() {
        let idle = json!({"type": "player/update", "payload": {"state": "idle", "volume": 40, "muted": true}});
        let message = assert_round_trip(&mut ResonateCodec::default(), idle);
        let Message::ClientState(state) = message else {
            panic!("expected client/state, got {message:?}");
        };
        assert_eq!(
            state.player,
            Some(PlayerState {
                volume: Some(40),
                muted: Some(true)
            })
        );

        let mut codec = ResonateCodec::default();
        decode_message(
            &mut codec,
            &json!({"type": "stream/start", "payload": {"player": {
                "codec": "pcm", "sample_rate": 48000, "channels": 2, "bit_depth": 16
            }}}),
        );
        let playing = json!({"type": "player/update", "payload": {"state": "playing", "volume": 75, "muted": false}});
        assert_round_trip(&mut codec, playing);
    }

    #[test]
    fn client_state_delta_fills_full_player_update() {
        let mut codec = ResonateCodec::default();
        let first = ClientState {
            state: Some(ClientStateKind::Synchronized),
            player: Some(PlayerState {
                volume: Some(30),
                muted: Some(false),
            }),
            extra: Map::new(),
        };
        codec.encode(&Outgoing::Message(Message::ClientState(first)));
        let delta = ClientState {
            state: None,
            player: Some(PlayerState {
                volume: None,
                muted: Some(true),
            }),
            extra: Map::new(),
        };
        let json = text_json(codec.encode(&Outgoing::Message(Message::ClientState(delta))));
        assert_eq!(
            json,
            json!({"type": "player/update", "payload": {"state": "idle", "volume": 30, "muted": true}})
        );
    }

    #[test]
    fn stream_request_format_round_trips() {
        assert_round_trip(
            &mut ResonateCodec::default(),
            json!({"type": "stream/request-format", "payload": {"codec": "pcm", "sample_rate": 44100}}),
        );
    }

    #[test]
    fn session_update_maps_to_group_update() {
        let mut codec = ResonateCodec::default();
        let sample = json!({"type": "session/update", "payload": {"group_id": "g1", "playback_state": "playing"}});
        let message = assert_round_trip(&mut codec, sample);
        assert_eq!(
            message,
            Message::GroupUpdate(GroupUpdate {
                playback_state: Some(Some(PlaybackState::Playing)),
                group_id: Some(Some("g1".into())),
                group_name: None,
            })
        );
        let paused = json!({"type": "session/update", "payload": {"group_id": "g1", "playback_state": "paused"}});
        let Message::GroupUpdate(update) = decode_message(&mut codec, &paused) else {
            panic!("expected group/update");
        };
        assert_eq!(update.playback_state, Some(Some(PlaybackState::Stopped)));
    }

    #[test]
    fn group_update_maps_to_controller_state() {
        let mut codec = ResonateCodec::default();
        let update = json!({"type": "group/update", "payload": {
            "supported_commands": ["play", "volume", "mute"],
            "members": [{"client_id": "kitchen", "name": "Kitchen"}],
            "session_id": null, "volume": 130, "muted": true}});
        let Message::ServerState(state) = decode_message(&mut codec, &update) else {
            panic!("expected server/state");
        };
        let controller = state.controller.expect("controller state");
        assert_eq!(controller.supported_commands, ["play", "volume", "mute"]);
        assert_eq!(controller.volume, 100, "a volume above 100 is clamped");
        assert!(controller.muted);
    }

    #[test]
    fn group_command_maps_to_controller_command() {
        let mut codec = ResonateCodec::default();
        let volume =
            json!({"type": "group/command", "payload": {"command": "volume", "volume": 30}});
        let message = assert_round_trip(&mut codec, volume);
        assert_eq!(
            message,
            Message::ClientCommand(ClientCommand {
                controller: Some(ControllerCommand {
                    command: "volume".into(),
                    volume: Some(30),
                    mute: None,
                }),
                extra: Map::new(),
            })
        );
        assert_round_trip(
            &mut codec,
            json!({"type": "group/command", "payload": {"command": "mute", "mute": true}}),
        );
        assert_round_trip(
            &mut codec,
            json!({"type": "group/command", "payload": {"command": "play"}}),
        );
    }

    #[test]
    fn client_command_without_controller_is_left_out() {
        let command = Message::ClientCommand(ClientCommand::default());
        assert!(ResonateCodec::default()
            .encode(&Outgoing::Message(command))
            .is_none());
    }

    #[test]
    fn group_messages_are_unknown() {
        let incoming = ResonateCodec::default()
            .decode(WsMessage::text(
                r#"{"type": "group/list", "payload": {"groups": []}}"#,
            ))
            .unwrap();
        assert_eq!(
            incoming,
            Incoming::Unknown {
                type_name: "group/list".into()
            }
        );
    }

    #[test]
    fn audio_frame_round_trips() {
        let timestamp: u64 = 1_700_000_000_000_000;
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&timestamp.to_be_bytes());
        bytes.extend_from_slice(&[9, 8, 7, 6]);
        let mut codec = ResonateCodec::default();
        let Incoming::Binary(frame) = codec.decode(WsMessage::binary(bytes.clone())).unwrap()
        else {
            panic!("expected a binary frame");
        };
        assert_eq!(frame.kind, BinaryKind::Audio);
        assert_eq!(frame.timestamp_us, timestamp as i64);
        assert_eq!(frame.payload(), [9, 8, 7, 6]);
        match codec.encode(&Outgoing::Binary(frame)) {
            Some(WsMessage::Binary(back)) => assert_eq!(back.to_vec(), bytes),
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    #[test]
    fn binary_types_map_to_kinds() {
        assert_eq!(binary_kind(2), BinaryKind::Artwork(0));
        assert_eq!(binary_kind(3), BinaryKind::Visualizer(0));
        assert_eq!(binary_kind(4), BinaryKind::Reserved(4));
    }

    #[test]
    fn short_binary_is_an_error() {
        let result = ResonateCodec::default().decode(WsMessage::binary(vec![1u8, 0, 0]));
        assert!(matches!(
            result,
            Err(DecodeError::ShortBinary(ShortFrame(3)))
        ));
    }
}
