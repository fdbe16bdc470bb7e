//! Conformance checks a virtual client applies to every frame a server
//! sends it, and the record of what it found.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::dialect::Incoming;
use crate::protocol::{
    BinaryFrame, BinaryKind, Message, ServerHello, ServerTime, StreamStartPlayer,
};
use crate::telemetry::{Event, EventKind, Telemetry};

/// Maximum gap or overlap between consecutive audio chunks, in
/// microseconds, that counts as rounding rather than a violation.
const CONTINUITY_SLACK_US: i64 = 2;

/// Maximum time, in microseconds, that a joiner's first chunk may be
/// stamped before the client's hello without counting as late. It leaves
/// room for the error of the clock offset estimate.
const LATE_SLACK_US: i64 = 5_000;

/// Maximum number of sent `client/time` stamps remembered per connection.
const MAX_REMEMBERED_TIMES: usize = 65_536;

/// Maximum number of examples kept per kind of violation.
const EXAMPLES_PER_KIND: usize = 5;

/// Maximum length, in characters, of the message excerpt in an example.
const EXCERPT_CHARS: usize = 240;

/// A way in which a peer broke the protocol or the session lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// A frame that is not valid for the dialect (bad JSON, short binary).
    UndecodableFrame,
    /// A message or binary frame before `server/hello`.
    BeforeHello,
    /// A second `server/hello` on one connection.
    DuplicateHello,
    /// `server/hello` with a wrong version or roles the client never asked for.
    BadHello,
    /// A client message sent by the server.
    WrongDirection,
    /// No `server/hello` within the handshake bound.
    HelloTimeout,
    /// `server/time` echoing a `client/time` this connection never sent.
    ForeignTimeReply,
    /// `server/time` with `server_received` after `server_transmitted`, or
    /// with more time spent in the server than the whole round trip.
    TimeCausality,
    /// `server/time` whose server clock went backwards.
    TimeNotMonotonic,
    /// An audio chunk outside a player stream.
    AudioWithoutStream,
    /// `stream/end` with no stream running.
    EndWithoutStream,
    /// Consecutive audio chunks that leave a gap on the timeline.
    AudioGap,
    /// Consecutive audio chunks that overlap or repeat on the timeline.
    AudioOverlap,
    /// A joiner's first audio chunk stamped for a time already past.
    LateChunk,
    /// An audio chunk that arrived after its play time, on the server clock
    /// as the client's own time exchange measured it (fan-out).
    AudioLate,
    /// No audio within the bound after a player joined a playing group.
    NoAudio,
    /// A session the server should have closed that stayed open.
    NotClosed,
    /// A connection that ended without a WebSocket close frame where the
    /// server chose to end it.
    UncleanClose,
    /// Not exactly one survivor among sessions that share a `client_id`.
    SurvivorCount,
    /// A slow consumer the server did not drop within the bound.
    SlowConsumerKept,
    /// A session of a group disturbed by another member's failure.
    NeighbourDisturbed,
    /// Controllers or players disagree on the final group state.
    InconsistentState,
    /// Sessions, clients or tasks still open on the server after every
    /// client left.
    Leak,
    /// The server stopped accepting or responding to new sessions.
    Unresponsive,
    /// A Sendspin 1.0 Noise handshake that failed or stalled on a server
    /// that should admit unpaired clients.
    NoiseHandshake,
    /// A reply to a message the protocol makes fatal, such as `server/init`
    /// to an invalid `client/init`.
    AbuseAccepted,
}

impl ViolationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationKind::UndecodableFrame => "undecodable_frame",
            ViolationKind::BeforeHello => "before_hello",
            ViolationKind::DuplicateHello => "duplicate_hello",
            ViolationKind::BadHello => "bad_hello",
            ViolationKind::WrongDirection => "wrong_direction",
            ViolationKind::HelloTimeout => "hello_timeout",
            ViolationKind::ForeignTimeReply => "foreign_time_reply",
            ViolationKind::TimeCausality => "time_causality",
            ViolationKind::TimeNotMonotonic => "time_not_monotonic",
            ViolationKind::AudioWithoutStream => "audio_without_stream",
            ViolationKind::EndWithoutStream => "end_without_stream",
            ViolationKind::AudioGap => "audio_gap",
            ViolationKind::AudioOverlap => "audio_overlap",
            ViolationKind::LateChunk => "late_chunk",
            ViolationKind::AudioLate => "audio_late",
            ViolationKind::NoAudio => "no_audio",
            ViolationKind::NotClosed => "not_closed",
            ViolationKind::UncleanClose => "unclean_close",
            ViolationKind::SurvivorCount => "survivor_count",
            ViolationKind::SlowConsumerKept => "slow_consumer_kept",
            ViolationKind::NeighbourDisturbed => "neighbour_disturbed",
            ViolationKind::InconsistentState => "inconsistent_state",
            ViolationKind::Leak => "leak",
            ViolationKind::Unresponsive => "unresponsive",
            ViolationKind::NoiseHandshake => "noise_handshake",
            ViolationKind::AbuseAccepted => "abuse_accepted",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One observed violation.
#[derive(Clone, Debug, Serialize)]
pub struct Violation {
    pub kind: ViolationKind,
    pub scenario: &'static str,
    /// The virtual client that saw it: scenario, number and `client_id`.
    pub session: String,
    /// Milliseconds since the run started.
    pub at_ms: u64,
    pub detail: String,
    /// The offending message, shortened, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Count and first few examples of one kind of violation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ViolationGroup {
    pub count: u64,
    pub examples: Vec<Violation>,
}

/// Shared record of the violations that every virtual client of a run found.
#[derive(Clone, Debug)]
pub struct Violations {
    started: Instant,
    groups: Arc<Mutex<BTreeMap<ViolationKind, ViolationGroup>>>,
    /// Hub that gets the first violations of each kind as they happen.
    telemetry: Option<Telemetry>,
}

impl Violations {
    pub fn new(started: Instant) -> Violations {
        Violations {
            started,
            groups: Arc::default(),
            telemetry: None,
        }
    }

    /// Logs the first [`LOGGED_PER_KIND`] violations of each kind to
    /// `telemetry` as they are recorded.
    pub fn with_telemetry(mut self, telemetry: Option<Telemetry>) -> Violations {
        self.telemetry = telemetry;
        self
    }

    pub fn record(
        &self,
        kind: ViolationKind,
        scenario: &'static str,
        session: &str,
        detail: String,
        message: Option<String>,
    ) {
        tracing::debug!(%kind, scenario, session, %detail, "violation");
        let violation = Violation {
            kind,
            scenario,
            session: session.to_string(),
            at_ms: self.started.elapsed().as_millis() as u64,
            detail,
            message: message.map(|m| excerpt(&m)),
        };
        let mut groups = self.groups.lock().expect("violations lock poisoned");
        let group = groups.entry(kind).or_default();
        group.count += 1;
        if let Some(telemetry) = &self.telemetry {
            log_violation(telemetry, &violation, group.count);
        }
        if group.examples.len() < EXAMPLES_PER_KIND {
            group.examples.push(violation);
        }
    }

    pub fn total(&self) -> u64 {
        self.groups
            .lock()
            .expect("violations lock poisoned")
            .values()
            .map(|g| g.count)
            .sum()
    }

    pub fn snapshot(&self) -> BTreeMap<ViolationKind, ViolationGroup> {
        self.groups
            .lock()
            .expect("violations lock poisoned")
            .clone()
    }
}

/// Violations of one kind logged to telemetry; later ones are only counted,
/// so a storm of one fault cannot flood the event log.
pub const LOGGED_PER_KIND: u64 = 20;

fn log_violation(telemetry: &Telemetry, violation: &Violation, count: u64) {
    let event = match count {
        n if n <= LOGGED_PER_KIND => Event::now(
            EventKind::Violation,
            format!(
                "{} in {}: {}",
                violation.kind, violation.scenario, violation.detail
            ),
        )
        .with_session(&violation.session),
        n if n == LOGGED_PER_KIND + 1 => Event::now(
            EventKind::Info,
            format!(
                "further {} violations are counted in the report, not logged",
                violation.kind
            ),
        ),
        _ => return,
    };
    telemetry.emit(event);
}

fn excerpt(text: &str) -> String {
    if text.chars().count() <= EXCERPT_CHARS {
        return text.to_string();
    }
    let mut short: String = text.chars().take(EXCERPT_CHARS).collect();
    short.push('…');
    short
}

/// Kind of a checked frame, returned for the scenario to act on.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Seen {
    Message(Message),
    Audio,
    OtherBinary,
    Unknown,
}

/// The audio stream a connection is receiving.
#[derive(Debug)]
struct Track {
    /// Bytes per frame (all channels) of PCM, when the codec is PCM.
    pcm_frame_bytes: Option<u32>,
    sample_rate: u32,
    /// Timestamp the next chunk should carry, when known.
    next_us: Option<i64>,
    chunks: u64,
}

/// Per-connection protocol state and checks.
#[derive(Debug)]
pub struct Checker {
    requested_roles: Vec<String>,
    hello: Option<ServerHello>,
    /// Sent `client/time` stamps still awaiting a reply, with how many
    /// sends carried each stamp.
    sent_times: HashMap<i64, u32>,
    last_server_received: Option<i64>,
    /// Smallest round trip seen and the server clock offset measured with it.
    best_rtt: Option<(i64, i64)>,
    track: Option<Track>,
    /// Local time the `client/hello` was sent.
    hello_sent_us: Option<i64>,
    /// Timestamp of a stream's first chunk, until it has been judged.
    first_chunk_us: Option<i64>,
    /// Check that consecutive chunks neither gap nor overlap.
    pub check_continuity: bool,
    /// Check that the first chunk of each stream is not already late.
    pub check_first_chunk_future: bool,
    /// Check that every chunk arrives before its play time, once the clock
    /// offset is known.
    pub check_arrival: bool,
    /// Take a later `server/hello` of the same server as a change of the
    /// activation: Sendspin 1.0 servers may send `server/activate` again.
    pub reactivation_allowed: bool,
    /// Chunks judged against their play time by `check_arrival`.
    pub chunks_judged: u64,
    /// Chunks that arrived after their play time.
    pub chunks_late: u64,
    /// Smallest time from arrival to play time of a judged chunk, in
    /// microseconds; negative when a chunk was late.
    pub min_lead_us: Option<i64>,
}

/// A finding of the checker, before it is attributed to a session.
pub type Finding = (ViolationKind, String);

impl Checker {
    pub fn new(requested_roles: Vec<String>) -> Checker {
        Checker {
            requested_roles,
            hello: None,
            sent_times: HashMap::new(),
            last_server_received: None,
            best_rtt: None,
            track: None,
            hello_sent_us: None,
            first_chunk_us: None,
            check_continuity: false,
            check_first_chunk_future: false,
            check_arrival: false,
            reactivation_allowed: false,
            chunks_judged: 0,
            chunks_late: 0,
            min_lead_us: None,
        }
    }

    pub fn server_hello(&self) -> Option<&ServerHello> {
        self.hello.as_ref()
    }

    /// Smallest round trip measured so far, in microseconds.
    pub fn best_rtt_us(&self) -> Option<i64> {
        self.best_rtt.map(|(rtt, _)| rtt)
    }

    /// Server clock minus local clock, measured with the smallest round trip.
    pub fn offset_us(&self) -> Option<i64> {
        self.best_rtt.map(|(_, offset)| offset)
    }

    pub fn audio_chunks(&self) -> u64 {
        self.track.as_ref().map_or(0, |t| t.chunks)
    }

    /// Notes when the `client/hello` was sent.
    pub fn sent_hello(&mut self, at_us: i64) {
        self.hello_sent_us = Some(at_us);
    }

    /// Notes a `client/time` this connection sent.
    pub fn sent_time(&mut self, client_transmitted: i64) {
        if self.sent_times.len() >= MAX_REMEMBERED_TIMES {
            self.sent_times.clear();
        }
        *self.sent_times.entry(client_transmitted).or_insert(0) += 1;
    }

    /// Checks one decoded frame received at local time `received_us`.
    pub fn observe(
        &mut self,
        incoming: Incoming,
        received_us: i64,
        findings: &mut Vec<Finding>,
    ) -> Seen {
        match incoming {
            Incoming::Message(message) => {
                self.observe_message(&message, received_us, findings);
                Seen::Message(message)
            }
            Incoming::Binary(frame) => {
                if self.hello.is_none() {
                    findings.push((
                        ViolationKind::BeforeHello,
                        "binary frame before server/hello".into(),
                    ));
                }
                if frame.kind == BinaryKind::Audio {
                    self.observe_audio(&frame, findings);
                    if self.check_arrival {
                        self.judge_arrival(frame.timestamp_us, received_us, findings);
                    }
                    Seen::Audio
                } else {
                    Seen::OtherBinary
                }
            }
            // Stress clients connect unpaired, so the codec never
            // reports an unpairing to them.
            Incoming::Unknown { .. } | Incoming::Consumed | Incoming::Unpaired => Seen::Unknown,
        }
    }

    fn observe_message(
        &mut self,
        message: &Message,
        received_us: i64,
        findings: &mut Vec<Finding>,
    ) {
        let is_hello = matches!(message, Message::ServerHello(_));
        if self.hello.is_none() && !is_hello {
            findings.push((
                ViolationKind::BeforeHello,
                format!("{} before server/hello", message.type_name()),
            ));
        }
        match message {
            Message::ServerHello(hello) => self.observe_hello(hello, findings),
            Message::ServerTime(time) => self.observe_time(time, received_us, findings),
            Message::StreamStart(start) => {
                if let Some(player) = &start.player {
                    self.start_track(player);
                }
            }
            Message::StreamClear(_) => {
                if let Some(track) = &mut self.track {
                    track.next_us = None;
                }
            }
            Message::StreamEnd(end) => {
                let ends_player = end
                    .roles
                    .as_ref()
                    .is_none_or(|roles| roles.iter().any(|r| r.starts_with("player")));
                if ends_player {
                    if self.track.is_none() && self.is_active("player") {
                        findings.push((
                            ViolationKind::EndWithoutStream,
                            "stream/end for the player with no stream running".into(),
                        ));
                    }
                    self.track = None;
                }
            }
            Message::ClientHello(_)
            | Message::ClientTime(_)
            | Message::ClientState(_)
            | Message::ClientCommand(_)
            | Message::ClientGoodbye(_)
            | Message::StreamRequestFormat(_) => {
                findings.push((
                    ViolationKind::WrongDirection,
                    format!("server sent the client message {}", message.type_name()),
                ));
            }
            Message::ServerState(_) | Message::ServerCommand(_) | Message::GroupUpdate(_) => {}
        }
    }

    fn is_active(&self, family: &str) -> bool {
        self.hello.as_ref().is_some_and(|h| {
            h.active_roles
                .iter()
                .any(|r| r.split('@').next() == Some(family))
        })
    }

    fn observe_hello(&mut self, hello: &ServerHello, findings: &mut Vec<Finding>) {
        let same_server = self
            .hello
            .as_ref()
            .is_some_and(|first| first.server_id == hello.server_id);
        if self.reactivation_allowed && same_server {
            self.hello = Some(hello.clone());
            return;
        }
        if self.hello.is_some() {
            findings.push((
                ViolationKind::DuplicateHello,
                "second server/hello on one connection".into(),
            ));
            return;
        }
        if hello.version != crate::protocol::PROTOCOL_VERSION {
            findings.push((
                ViolationKind::BadHello,
                format!("server/hello version {}", hello.version),
            ));
        }
        let foreign: Vec<&String> = hello
            .active_roles
            .iter()
            .filter(|role| !self.requested_roles.contains(role))
            .collect();
        if !foreign.is_empty() {
            findings.push((
                ViolationKind::BadHello,
                format!("activated roles the client did not request: {foreign:?}"),
            ));
        }
        self.hello = Some(hello.clone());
    }

    fn observe_time(&mut self, time: &ServerTime, received_us: i64, findings: &mut Vec<Finding>) {
        let awaited = match self.sent_times.entry(time.client_transmitted) {
            Entry::Occupied(mut entry) => {
                if *entry.get() > 1 {
                    *entry.get_mut() -= 1;
                } else {
                    entry.remove();
                }
                true
            }
            Entry::Vacant(_) => false,
        };
        if !awaited {
            findings.push((
                ViolationKind::ForeignTimeReply,
                format!(
                    "server/time echoes client_transmitted {} that this connection did not send",
                    time.client_transmitted
                ),
            ));
            return;
        }
        let in_server = time.server_transmitted - time.server_received;
        let round_trip = received_us - time.client_transmitted;
        if in_server < 0 {
            findings.push((
                ViolationKind::TimeCausality,
                format!(
                    "server_transmitted is {} µs before server_received",
                    -in_server
                ),
            ));
        } else if in_server > round_trip {
            findings.push((
                ViolationKind::TimeCausality,
                format!("server spent {in_server} µs on a reply whose whole round trip took {round_trip} µs"),
            ));
        }
        if let Some(last) = self.last_server_received {
            if time.server_received < last {
                findings.push((
                    ViolationKind::TimeNotMonotonic,
                    format!(
                        "server_received went back {} µs",
                        last - time.server_received
                    ),
                ));
            }
        }
        self.last_server_received = Some(time.server_received);
        let rtt = (round_trip - in_server).max(0);
        let offset = ((time.server_received - time.client_transmitted)
            + (time.server_transmitted - received_us))
            / 2;
        if self.best_rtt.is_none_or(|(best, _)| rtt < best) {
            self.best_rtt = Some((rtt, offset));
        }
        self.judge_first_chunk(findings);
    }

    fn start_track(&mut self, player: &StreamStartPlayer) {
        let pcm_frame_bytes = (player.codec == "pcm")
            .then(|| u32::from(player.channels) * u32::from(player.bit_depth.div_ceil(8)));
        self.track = Some(Track {
            pcm_frame_bytes: pcm_frame_bytes.filter(|b| *b > 0),
            sample_rate: player.sample_rate.max(1),
            next_us: None,
            chunks: 0,
        });
    }

    fn observe_audio(&mut self, frame: &BinaryFrame, findings: &mut Vec<Finding>) {
        let Some(track) = &mut self.track else {
            findings.push((
                ViolationKind::AudioWithoutStream,
                format!("audio chunk at {} µs outside a stream", frame.timestamp_us),
            ));
            return;
        };
        let first = track.chunks == 0;
        track.chunks += 1;
        if first && self.check_first_chunk_future {
            self.first_chunk_us = Some(frame.timestamp_us);
        }
        if let (true, Some(expected)) = (self.check_continuity, track.next_us) {
            let error = frame.timestamp_us - expected;
            if error > CONTINUITY_SLACK_US {
                findings.push((
                    ViolationKind::AudioGap,
                    format!("chunk at {} µs leaves a {error} µs gap", frame.timestamp_us),
                ));
            } else if error < -CONTINUITY_SLACK_US {
                findings.push((
                    ViolationKind::AudioOverlap,
                    format!(
                        "chunk at {} µs overlaps the previous one by {} µs",
                        frame.timestamp_us, -error
                    ),
                ));
            }
        }
        track.next_us = track.pcm_frame_bytes.map(|frame_bytes| {
            let frames = frame.payload().len() as i64 / i64::from(frame_bytes);
            frame.timestamp_us + frames * 1_000_000 / i64::from(track.sample_rate)
        });
        self.judge_first_chunk(findings);
    }

    /// Compares a chunk's play time with its local arrival time on the
    /// server clock. Chunks that arrive before the clock offset is known
    /// are not judged.
    fn judge_arrival(&mut self, timestamp_us: i64, received_us: i64, findings: &mut Vec<Finding>) {
        let Some(offset) = self.offset_us() else {
            return;
        };
        let lead_us = timestamp_us - (received_us + offset);
        self.chunks_judged += 1;
        self.min_lead_us = Some(self.min_lead_us.map_or(lead_us, |min| min.min(lead_us)));
        if lead_us < 0 {
            self.chunks_late += 1;
            findings.push((
                ViolationKind::AudioLate,
                format!(
                    "chunk at {timestamp_us} µs arrived {} µs after its play time",
                    -lead_us
                ),
            ));
        }
    }

    /// Checks the first chunk of a stream once the clock offset is known.
    ///
    /// The server cannot have sent the chunk before the client sent its hello,
    /// so a chunk stamped earlier was late when it left. Timing against its
    /// arrival instead would blame the server for a busy client.
    fn judge_first_chunk(&mut self, findings: &mut Vec<Finding>) {
        let (Some(timestamp_us), Some(offset), Some(hello_sent_us)) =
            (self.first_chunk_us, self.offset_us(), self.hello_sent_us)
        else {
            return;
        };
        self.first_chunk_us = None;
        let late_by = hello_sent_us + offset - timestamp_us;
        if late_by > LATE_SLACK_US {
            findings.push((
                ViolationKind::LateChunk,
                format!("first chunk of the stream is stamped {late_by} µs before the client sent its hello"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ConnectionReason, StreamEnd, StreamStart};

    fn hello() -> Message {
        Message::ServerHello(ServerHello {
            server_id: "s".into(),
            name: "s".into(),
            version: 1,
            active_roles: vec!["player@v1".into()],
            connection_reason: ConnectionReason::Playback,
        })
    }

    fn audio(timestamp_us: i64, frames: usize) -> Incoming {
        Incoming::Binary(BinaryFrame::new(
            BinaryKind::Audio,
            timestamp_us,
            vec![0; frames * 4],
        ))
    }

    fn start() -> Message {
        Message::StreamStart(StreamStart {
            player: Some(StreamStartPlayer {
                codec: "pcm".into(),
                sample_rate: 48_000,
                channels: 2,
                bit_depth: 16,
                codec_header: None,
            }),
            ..Default::default()
        })
    }

    fn kinds(findings: &[Finding]) -> Vec<ViolationKind> {
        findings.iter().map(|(kind, _)| *kind).collect()
    }

    #[test]
    fn in_order_session_has_no_findings() {
        let mut checker = Checker::new(vec!["player@v1".into()]);
        checker.check_continuity = true;
        let mut findings = Vec::new();
        checker.observe(Incoming::Message(hello()), 0, &mut findings);
        checker.observe(Incoming::Message(start()), 0, &mut findings);
        checker.observe(audio(1_000_000, 960), 0, &mut findings);
        checker.observe(audio(1_020_000, 960), 0, &mut findings);
        checker.observe(
            Incoming::Message(Message::StreamEnd(StreamEnd::default())),
            0,
            &mut findings,
        );
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(checker.audio_chunks(), 0, "stream/end ends the track");
    }

    #[test]
    fn gaps_overlaps_and_stray_frames_found() {
        let mut checker = Checker::new(vec!["player@v1".into()]);
        checker.check_continuity = true;
        let mut findings = Vec::new();
        checker.observe(audio(0, 960), 0, &mut findings);
        checker.observe(Incoming::Message(hello()), 0, &mut findings);
        checker.observe(Incoming::Message(hello()), 0, &mut findings);
        checker.observe(Incoming::Message(start()), 0, &mut findings);
        checker.observe(audio(1_000_000, 960), 0, &mut findings);
        checker.observe(audio(1_040_000, 960), 0, &mut findings);
        checker.observe(audio(1_050_000, 960), 0, &mut findings);
        checker.observe(
            Incoming::Message(Message::StreamEnd(StreamEnd::default())),
            0,
            &mut findings,
        );
        checker.observe(
            Incoming::Message(Message::StreamEnd(StreamEnd::default())),
            0,
            &mut findings,
        );
        assert_eq!(
            kinds(&findings),
            [
                ViolationKind::BeforeHello,
                ViolationKind::AudioWithoutStream,
                ViolationKind::DuplicateHello,
                ViolationKind::AudioGap,
                ViolationKind::AudioOverlap,
                ViolationKind::EndWithoutStream,
            ]
        );
    }

    #[test]
    fn reactivation_by_same_server_allowed_in_1_0() {
        let other_server = Message::ServerHello(ServerHello {
            server_id: "another".into(),
            ..match hello() {
                Message::ServerHello(hello) => hello,
                _ => unreachable!(),
            }
        });
        let mut checker = Checker::new(vec!["player@v1".into()]);
        checker.reactivation_allowed = true;
        let mut findings = Vec::new();
        checker.observe(Incoming::Message(hello()), 0, &mut findings);
        checker.observe(Incoming::Message(hello()), 0, &mut findings);
        assert!(findings.is_empty(), "{findings:?}");
        checker.observe(Incoming::Message(other_server), 0, &mut findings);
        assert_eq!(kinds(&findings), [ViolationKind::DuplicateHello]);
    }

    #[test]
    fn time_replies_checked_against_sent() {
        let mut checker = Checker::new(vec!["player@v1".into()]);
        let mut findings = Vec::new();
        checker.observe(Incoming::Message(hello()), 0, &mut findings);
        checker.sent_time(100);
        checker.sent_time(200);
        let reply = |t1, t2, t3| {
            Incoming::Message(Message::ServerTime(ServerTime {
                client_transmitted: t1,
                server_received: t2,
                server_transmitted: t3,
            }))
        };
        checker.observe(reply(100, 5_000, 5_010), 300, &mut findings);
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(checker.best_rtt_us(), Some(190));
        assert_eq!(checker.offset_us(), Some(4_805));
        checker.observe(reply(100, 5_000, 5_010), 300, &mut findings);
        checker.observe(reply(200, 4_000, 4_500), 400, &mut findings);
        assert_eq!(
            kinds(&findings),
            [
                ViolationKind::ForeignTimeReply,
                ViolationKind::TimeCausality,
                ViolationKind::TimeNotMonotonic
            ]
        );
    }

    #[test]
    fn time_replies_to_shared_stamp_accepted() {
        let mut checker = Checker::new(vec!["player@v1".into()]);
        let mut findings = Vec::new();
        checker.observe(Incoming::Message(hello()), 0, &mut findings);
        // Two sends within one microsecond carry the same stamp.
        checker.sent_time(100);
        checker.sent_time(100);
        let reply = Incoming::Message(Message::ServerTime(ServerTime {
            client_transmitted: 100,
            server_received: 150,
            server_transmitted: 160,
        }));
        checker.observe(reply, 300, &mut findings);
        let reply = Incoming::Message(Message::ServerTime(ServerTime {
            client_transmitted: 100,
            server_received: 170,
            server_transmitted: 180,
        }));
        checker.observe(reply, 310, &mut findings);
        assert!(findings.is_empty(), "{findings:?}");

        let third = Incoming::Message(Message::ServerTime(ServerTime {
            client_transmitted: 100,
            server_received: 190,
            server_transmitted: 200,
        }));
        checker.observe(third, 320, &mut findings);
        assert_eq!(kinds(&findings), [ViolationKind::ForeignTimeReply]);
    }

    #[test]
    fn late_first_chunk_is_found() {
        let mut checker = Checker::new(vec!["player@v1".into()]);
        checker.check_first_chunk_future = true;
        checker.sent_hello(1_000_000);
        let mut findings = Vec::new();
        checker.observe(Incoming::Message(hello()), 0, &mut findings);
        checker.sent_time(0);
        checker.observe(
            Incoming::Message(Message::ServerTime(ServerTime {
                client_transmitted: 0,
                server_received: 500,
                server_transmitted: 500,
            })),
            1_000,
            &mut findings,
        );
        checker.observe(Incoming::Message(start()), 2_000, &mut findings);
        // Stamped after the hello (offset 0): fine however late it is read.
        checker.observe(audio(1_000_000, 960), 9_000_000, &mut findings);
        assert!(findings.is_empty(), "{findings:?}");
        checker.observe(Incoming::Message(start()), 2_000, &mut findings);
        checker.observe(audio(990_000, 960), 1_000_000, &mut findings);
        assert_eq!(kinds(&findings), [ViolationKind::LateChunk]);

        // A first chunk read before any time reply is judged at the reply.
        let mut checker = Checker::new(vec!["player@v1".into()]);
        checker.check_first_chunk_future = true;
        checker.sent_hello(1_000_000);
        let mut findings = Vec::new();
        checker.observe(Incoming::Message(hello()), 0, &mut findings);
        checker.observe(Incoming::Message(start()), 0, &mut findings);
        checker.observe(audio(900_000, 960), 0, &mut findings);
        assert!(findings.is_empty());
        checker.sent_time(1_000_000);
        let reply = ServerTime {
            client_transmitted: 1_000_000,
            server_received: 1_000_100,
            server_transmitted: 1_000_100,
        };
        checker.observe(
            Incoming::Message(Message::ServerTime(reply)),
            1_000_200,
            &mut findings,
        );
        assert_eq!(kinds(&findings), [ViolationKind::LateChunk]);
    }

    #[test]
    fn late_arrival_is_found() {
        let mut checker = Checker::new(vec!["player@v1".into()]);
        checker.check_arrival = true;
        let mut findings = Vec::new();
        checker.observe(Incoming::Message(hello()), 0, &mut findings);
        checker.observe(Incoming::Message(start()), 0, &mut findings);
        // Read before the clock offset is known: not judged.
        checker.observe(audio(10, 960), 1_000, &mut findings);
        assert_eq!(checker.chunks_judged, 0);

        // The server clock is 5,000 µs ahead of the local clock.
        checker.sent_time(2_000);
        let reply = ServerTime {
            client_transmitted: 2_000,
            server_received: 7_050,
            server_transmitted: 7_050,
        };
        checker.observe(
            Incoming::Message(Message::ServerTime(reply)),
            2_100,
            &mut findings,
        );
        assert_eq!(checker.offset_us(), Some(5_000));

        // Due at server time 100,000, read at local 90,000 (server 95,000).
        checker.observe(audio(100_000, 960), 90_000, &mut findings);
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(checker.min_lead_us, Some(5_000));

        // Due at server time 120,000, read at local 116,000 (server 121,000).
        checker.observe(audio(120_000, 960), 116_000, &mut findings);
        assert_eq!(kinds(&findings), [ViolationKind::AudioLate]);
        assert_eq!(checker.chunks_judged, 2);
        assert_eq!(checker.chunks_late, 1);
        assert_eq!(checker.min_lead_us, Some(-1_000));
    }
}
