//! The contents of a telemetry feed: snapshots of sessions and groups, and
//! events. These types are the JSON format of the feed (docs/telemetry.md)
//! and the data the monitor draws, so a process and a monitor of the same
//! version read the same fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the feed format, sent in the first message of every feed.
pub const FEED_VERSION: u32 = 1;

/// One message of a telemetry feed, as a JSON object with a `type` field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedMessage {
    /// First message of a feed: who publishes it.
    Hello(FeedHello),
    /// The full state at one moment; replaces the previous snapshot.
    Snapshot(Snapshot),
    /// Something that happened once.
    Event(Event),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedHello {
    pub version: u32,
    pub source: SourceInfo,
}

/// The process or server a snapshot describes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// `serve`, `play`, `stress`, or `server` for a server the monitor
    /// joined as a client.
    pub kind: String,
    /// Human-readable name: the server or player name.
    pub name: String,
    /// Location of the source: a listen address or a server URL.
    pub target: String,
    /// Wall-clock time at which the source started, in Unix milliseconds.
    pub started_unix_ms: u64,
}

/// The full state of a source at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub source: SourceInfo,
    /// Wall-clock time of the snapshot, in Unix milliseconds.
    pub taken_unix_ms: u64,
    pub sessions: Vec<SessionRow>,
    pub groups: Vec<GroupRow>,
    /// Named totals since the source started, such as `sessions_opened`
    /// or `closed.goodbye`.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// Named current values, such as `tasks_live`.
    #[serde(default)]
    pub gauges: BTreeMap<String, f64>,
    /// Limits of this source's view, in plain sentences, such as the
    /// limits of a foreign server seen from one of its clients.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Lifecycle phase of a session as the monitor shows it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the WebSocket is open: dialing or waiting to reconnect.
    Connecting,
    /// The WebSocket is open and the hello messages are not yet exchanged.
    #[default]
    Handshaking,
    Active,
    Closing,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Handshaking => "handshaking",
            Phase::Active => "active",
            Phase::Closing => "closing",
        }
    }
}

/// One session of a source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionRow {
    /// Session number within the source, such as `s12`.
    pub session: String,
    /// `client_id` from `client/hello`, or the server id seen by a player.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Remote address, `host:port`.
    pub peer: String,
    /// Wire dialect: `sendspin-v1` or `resonate`.
    pub dialect: String,
    /// Active roles, such as `player@v1`.
    #[serde(default)]
    pub roles: Vec<String>,
    pub phase: Phase,
    /// Group id the client belongs to.
    #[serde(default)]
    pub group: Option<String>,
    /// Audio format streamed to the player, such as `flac 48000 Hz 16-bit 2 ch`.
    #[serde(default)]
    pub format: Option<String>,
    /// The server's estimate of the client's clock, from its `client/time`
    /// exchanges and WebSocket ping round trips.
    #[serde(default)]
    pub server_clock: Option<ClockView>,
    /// The client's own clock filter state, as the client reports it
    /// (our players send it in a `_resonate` object of `client/state`).
    #[serde(default)]
    pub client_clock: Option<ClockView>,
    /// Audio buffered ahead of the play position, in milliseconds.
    #[serde(default)]
    pub buffer_ms: Option<f64>,
    /// Audio chunks that arrived after their play time.
    #[serde(default)]
    pub late_chunks: u64,
    /// Audio chunks dropped: corrupt, or pushed out of a full buffer.
    #[serde(default)]
    pub dropped_chunks: u64,
    /// Sessions this `client_id` had before this one.
    #[serde(default)]
    pub reconnects: u64,
    /// Wall-clock time at which the session opened, in Unix milliseconds.
    #[serde(default)]
    pub opened_unix_ms: u64,
}

/// Clock synchronization between a client and its server at one moment.
/// The sign follows the clock filter: server time minus client time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClockView {
    /// Server time minus client time, in microseconds.
    pub offset_us: f64,
    /// Rate of change of the offset in parts per million, when estimated.
    #[serde(default)]
    pub drift_ppm: Option<f64>,
    /// Standard deviation of the offset estimate in microseconds, when known.
    #[serde(default)]
    pub error_us: Option<f64>,
    /// Round-trip time in microseconds, when measured.
    #[serde(default)]
    pub rtt_us: Option<f64>,
    /// Measurements the estimate is built from.
    #[serde(default)]
    pub samples: u64,
    /// Whether the estimate is good enough to schedule audio, when the
    /// estimator decides that.
    #[serde(default)]
    pub converged: Option<bool>,
}

/// One group of players.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupRow {
    pub id: String,
    pub name: String,
    /// `client_id`s of the members.
    #[serde(default)]
    pub members: Vec<String>,
    /// `playing`, `paused` or `stopped`.
    pub playback: String,
    /// Group volume, 0 to 100, when the source has it.
    #[serde(default)]
    pub volume: Option<u8>,
    #[serde(default)]
    pub muted: Option<bool>,
    #[serde(default)]
    pub metadata: Option<TrackInfo>,
}

/// The track the group plays, as far as the source can tell.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackInfo {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub artist: Option<String>,
    #[serde(default)]
    pub album: Option<String>,
    /// Play position in milliseconds at `taken_unix_ms` of the snapshot.
    #[serde(default)]
    pub position_ms: Option<u64>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// Kind of an [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A session opened or a client completed its handshake.
    Connected,
    /// A session closed; the detail gives the cause and goodbye reason.
    Disconnected,
    /// A newer session with the same `client_id` replaced an older one.
    Replaced,
    /// A peer broke the protocol or a lifecycle rule.
    Violation,
    /// A stress scenario started or ended.
    Marker,
    /// Playback or streaming started, stopped or changed format.
    Stream,
    /// Anything else worth a line in the log.
    Info,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Connected => "connected",
            EventKind::Disconnected => "disconnected",
            EventKind::Replaced => "replaced",
            EventKind::Violation => "violation",
            EventKind::Marker => "marker",
            EventKind::Stream => "stream",
            EventKind::Info => "info",
        }
    }
}

/// Something that happened once in a source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time in Unix milliseconds.
    pub unix_ms: u64,
    pub kind: EventKind,
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// One line for the event log, such as the close cause.
    pub detail: String,
}

impl Event {
    /// Creates an event stamped with the current wall-clock time.
    pub fn now(kind: EventKind, detail: impl Into<String>) -> Event {
        Event {
            unix_ms: unix_ms_now(),
            kind,
            session: None,
            client_id: None,
            detail: detail.into(),
        }
    }

    pub fn with_session(mut self, session: impl ToString) -> Event {
        self.session = Some(session.to_string());
        self
    }

    pub fn with_client(mut self, client_id: Option<impl Into<String>>) -> Event {
        self.client_id = client_id.map(Into::into);
        self
    }
}

/// Application-specific role of `resonate` players: a client that lists
/// it and has it activated reports its own state in `client/state`.
pub const REPORT_ROLE: &str = "_resonate@v1";

/// Key of the report object in `client/state`.
pub const REPORT_KEY: &str = "_resonate";

/// The state a `resonate` player reports about itself in the `_resonate` object
/// of `client/state`, so its server can show the player's own view.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlayerReport {
    /// The player's clock filter state.
    #[serde(default)]
    pub clock: Option<ClockView>,
    /// Audio buffered ahead of the play position, in milliseconds.
    #[serde(default)]
    pub buffer_ms: Option<f64>,
    #[serde(default)]
    pub late_chunks: u64,
    #[serde(default)]
    pub dropped_chunks: u64,
}

/// Note shown with every clock offset. The size of an offset tells nothing
/// about sync, because each clock counts from its own origin.
pub const OFFSET_NOTE: &str =
    "an offset compares two clocks that count from different origins (often each process's start), so its size is not an error; error and drift show sync quality";

/// Current wall-clock time in Unix milliseconds.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_message_round_trips_as_json() {
        let snapshot = Snapshot {
            source: SourceInfo {
                kind: "serve".into(),
                name: "kitchen".into(),
                target: "127.0.0.1:8927".into(),
                started_unix_ms: 1_700_000_000_000,
            },
            taken_unix_ms: 1_700_000_001_000,
            sessions: vec![SessionRow {
                session: "s1".into(),
                client_id: Some("player-1".into()),
                peer: "127.0.0.1:50000".into(),
                dialect: "sendspin-v1".into(),
                roles: vec!["player@v1".into()],
                phase: Phase::Active,
                server_clock: Some(ClockView {
                    offset_us: -12.5,
                    rtt_us: Some(80.0),
                    samples: 3,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            groups: vec![GroupRow {
                id: "main".into(),
                name: "Resonate".into(),
                members: vec!["player-1".into()],
                playback: "playing".into(),
                volume: Some(40),
                ..Default::default()
            }],
            counters: BTreeMap::from([("sessions_opened".to_string(), 1)]),
            gauges: BTreeMap::from([("tasks_live".to_string(), 2.0)]),
            notes: vec![],
        };
        let messages = [
            FeedMessage::Hello(FeedHello {
                version: FEED_VERSION,
                source: snapshot.source.clone(),
            }),
            FeedMessage::Snapshot(snapshot),
            FeedMessage::Event(
                Event::now(EventKind::Disconnected, "peer said goodbye (shutdown)")
                    .with_session("s1"),
            ),
        ];
        for message in messages {
            let json = serde_json::to_string(&message).unwrap();
            let back: FeedMessage = serde_json::from_str(&json).unwrap();
            assert_eq!(back, message, "{json}");
        }
    }

    #[test]
    fn snapshot_type_tag_and_phase_names() {
        let json = serde_json::to_value(FeedMessage::Snapshot(Snapshot::default())).unwrap();
        assert_eq!(json["type"], "snapshot");
        let phase = serde_json::to_value(Phase::Handshaking).unwrap();
        assert_eq!(phase, "handshaking");
    }

    #[test]
    fn missing_optional_fields_default() {
        let json = r#"{"type":"event","unix_ms":5,"kind":"marker","detail":"scenario handshake-storm started"}"#;
        let FeedMessage::Event(event) = serde_json::from_str(json).unwrap() else {
            panic!("expected an event");
        };
        assert_eq!(event.kind, EventKind::Marker);
        assert_eq!(event.session, None);
    }
}
