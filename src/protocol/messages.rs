//! Typed JSON messages and their role objects.
//!
//! Every payload ignores fields it does not know, so newer peers can add
//! fields. Objects of application-specific roles (keys starting with `_`)
//! are kept in `extra` maps. Delta messages that clear a field by sending
//! `null` use `Option<Option<T>>`: `None` means "unchanged", `Some(None)`
//! means "cleared".

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Every message the engine understands, in either direction.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    ClientHello(ClientHello),
    ClientTime(ClientTime),
    ClientState(ClientState),
    ClientCommand(ClientCommand),
    ClientGoodbye(ClientGoodbye),
    StreamRequestFormat(StreamRequestFormat),
    ServerHello(ServerHello),
    ServerTime(ServerTime),
    ServerState(ServerState),
    ServerCommand(ServerCommand),
    StreamStart(StreamStart),
    StreamClear(StreamClear),
    StreamEnd(StreamEnd),
    GroupUpdate(GroupUpdate),
}

impl Message {
    /// The v1 `type` string of this message.
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::ClientHello(_) => "client/hello",
            Message::ClientTime(_) => "client/time",
            Message::ClientState(_) => "client/state",
            Message::ClientCommand(_) => "client/command",
            Message::ClientGoodbye(_) => "client/goodbye",
            Message::StreamRequestFormat(_) => "stream/request-format",
            Message::ServerHello(_) => "server/hello",
            Message::ServerTime(_) => "server/time",
            Message::ServerState(_) => "server/state",
            Message::ServerCommand(_) => "server/command",
            Message::StreamStart(_) => "stream/start",
            Message::StreamClear(_) => "stream/clear",
            Message::StreamEnd(_) => "stream/end",
            Message::GroupUpdate(_) => "group/update",
        }
    }
}

/// Deserializes a present field (even `null`) as `Some`, so a missing field
/// stays `None` through `#[serde(default)]`.
fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
}

/// First message of a client: who it is and which roles it supports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientHello {
    pub client_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_info: Option<DeviceInfo>,
    pub version: u32,
    /// Versioned roles in priority order, most preferred first.
    pub supported_roles: Vec<String>,
    #[serde(
        rename = "player@v1_support",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub player_support: Option<PlayerSupport>,
    #[serde(
        rename = "artwork@v1_support",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artwork_support: Option<ArtworkSupport>,
    #[serde(
        rename = "visualizer@v1_support",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub visualizer_support: Option<Value>,
    /// Support objects of other roles and versions, by key.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One audio format a player can play.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportedFormat {
    /// `pcm`, `flac` or `opus`; other strings are kept so a newer codec
    /// name does not reject the whole hello.
    pub codec: String,
    pub channels: u16,
    pub sample_rate: u32,
    pub bit_depth: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlayerSupport {
    /// Formats in priority order, first preferred.
    pub supported_formats: Vec<SupportedFormat>,
    /// Maximum bytes of audio payload the player buffers ahead of playback.
    pub buffer_capacity: u64,
    /// Subset of `volume`, `mute`.
    #[serde(default)]
    pub supported_commands: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtworkChannelSupport {
    pub source: String,
    pub format: String,
    pub media_width: u32,
    pub media_height: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArtworkSupport {
    pub channels: Vec<ArtworkChannelSupport>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientTime {
    /// Client clock in microseconds when the message was sent (T1).
    pub client_transmitted: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerTime {
    /// T1, echoed from `client/time`.
    pub client_transmitted: i64,
    /// Server clock in microseconds when `client/time` was read (T2).
    pub server_received: i64,
    /// Server clock in microseconds just before this reply was written (T3).
    pub server_transmitted: i64,
}

/// Operational state a client reports in `client/state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientStateKind {
    Synchronized,
    Error,
    ExternalSource,
    /// A state this engine does not know.
    #[serde(other)]
    Unknown,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted: Option<bool>,
}

/// A client's state, complete in the first message and a delta afterwards.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ClientStateKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub player: Option<PlayerState>,
    /// Objects of application-specific roles, such as `_resonate`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControllerCommand {
    /// One of the commands the server listed in `supported_commands`.
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientCommand {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<ControllerCommand>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a client leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoodbyeReason {
    /// Switching to another server: do not reconnect.
    AnotherServer,
    /// Shutting down: do not reconnect.
    Shutdown,
    /// Restarting: reconnect.
    Restart,
    /// The user disconnected: do not reconnect.
    UserRequest,
    /// Sendspin 1.0: the server declared activities or roles the client
    /// does not authorize; do not reconnect with the same ones.
    Unauthorized,
    /// Sendspin 1.0: the client admits no unpaired access; pair first.
    PairingRequired,
    /// Sendspin 1.0: the client refused the connection under the
    /// multiple-server rules; retrying later is allowed.
    ConcurrentAttempt,
    /// Sendspin 1.0: the client processed `server/unpair`; do not reconnect.
    Unpaired,
}

impl GoodbyeReason {
    /// The reasons of Sendspin v1, which every dialect can carry.
    pub const ALL: [GoodbyeReason; 4] = [
        GoodbyeReason::AnotherServer,
        GoodbyeReason::Shutdown,
        GoodbyeReason::Restart,
        GoodbyeReason::UserRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GoodbyeReason::AnotherServer => "another_server",
            GoodbyeReason::Shutdown => "shutdown",
            GoodbyeReason::Restart => "restart",
            GoodbyeReason::UserRequest => "user_request",
            GoodbyeReason::Unauthorized => "unauthorized",
            GoodbyeReason::PairingRequired => "pairing_required",
            GoodbyeReason::ConcurrentAttempt => "concurrent_attempt",
            GoodbyeReason::Unpaired => "unpaired",
        }
    }

    /// Whether a server should dial a server-initiated client again.
    pub fn wants_reconnect(self) -> bool {
        self == GoodbyeReason::Restart
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientGoodbye {
    pub reason: GoodbyeReason,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerFormatRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_depth: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtworkFormatRequest {
    pub channel: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_height: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamRequestFormat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub player: Option<PlayerFormatRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artwork: Option<ArtworkFormatRequest>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a server opened a server-initiated connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionReason {
    Discovery,
    Playback,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerHello {
    pub server_id: String,
    pub name: String,
    pub version: u32,
    /// One activated role per family, from the client's list.
    pub active_roles: Vec<String>,
    pub connection_reason: ConnectionReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackProgress {
    /// Position in milliseconds since the start of the track.
    pub track_progress: i64,
    /// Track length in milliseconds, 0 when unknown or unlimited.
    pub track_duration: i64,
    /// Playback speed times 1000; 0 is paused.
    pub playback_speed: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepeatMode {
    Off,
    One,
    All,
}

/// Track metadata as a delta: absent fields are unchanged, `null` clears.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Server clock in microseconds at which this metadata is valid.
    pub timestamp: i64,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub title: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub artist: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub album_artist: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub album: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub artwork_url: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub year: Option<Option<i32>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub track: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub progress: Option<Option<TrackProgress>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub repeat: Option<Option<RepeatMode>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub shuffle: Option<Option<bool>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerState {
    pub supported_commands: Vec<String>,
    /// Group volume, the mean of the players' volumes, 0 to 100.
    pub volume: u8,
    /// True only when every player of the group is muted.
    pub muted: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<ControllerState>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerCommand {
    /// `volume` or `mute`.
    pub command: String,
    /// 0 to 100; wider values are accepted here and clamped by the player.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerCommand {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub player: Option<PlayerCommand>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Format of a player stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStartPlayer {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub bit_depth: u16,
    /// Base64 codec header, when the codec needs one (FLAC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec_header: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtworkChannelFormat {
    pub source: String,
    pub format: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStartArtwork {
    pub channels: Vec<ArtworkChannelFormat>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamStart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub player: Option<StreamStartPlayer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artwork: Option<StreamStartArtwork>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visualizer: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Clears buffers of the listed roles (all when absent) without ending
/// their streams.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamClear {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// Ends the streams of the listed roles (all when absent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEnd {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaybackState {
    Playing,
    Stopped,
}

/// The client's group, as a delta.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupUpdate {
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub playback_state: Option<Option<PlaybackState>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_id: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_name: Option<Option<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_ignores_unknown_fields_and_keeps_role_objects() {
        let json = r#"{
            "client_id": "a", "name": "A", "version": 1,
            "supported_roles": ["player@v1", "_x@v1"],
            "player@v1_support": {"supported_formats": [{"codec": "pcm", "channels": 2,
                "sample_rate": 48000, "bit_depth": 16}], "buffer_capacity": 1000,
                "supported_commands": ["volume"], "future": true},
            "_x@v1_support": {"k": 1}
        }"#;
        let hello: ClientHello = serde_json::from_str(json).unwrap();
        let support = hello.player_support.unwrap();
        assert_eq!(support.buffer_capacity, 1000);
        assert_eq!(support.supported_formats[0].codec, "pcm");
        assert!(hello.extra.contains_key("_x@v1_support"));
    }

    #[test]
    fn metadata_distinguishes_null_from_absent() {
        let metadata: Metadata =
            serde_json::from_str(r#"{"timestamp": 5, "title": null, "artist": "B"}"#).unwrap();
        assert_eq!(metadata.title, Some(None));
        assert_eq!(metadata.artist, Some(Some("B".to_string())));
        assert_eq!(metadata.album, None);
        let back = serde_json::to_value(&metadata).unwrap();
        assert_eq!(back["title"], Value::Null);
        assert!(back.get("album").is_none());
    }

    #[test]
    fn unknown_client_state_is_kept_as_unknown() {
        let state: ClientState = serde_json::from_str(r#"{"state": "dreaming"}"#).unwrap();
        assert_eq!(state.state, Some(ClientStateKind::Unknown));
    }
}
