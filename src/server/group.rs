//! Groups: members, a queue, one program, and one stream per member player.

use std::collections::HashMap;

use base64::Engine as _;

use crate::audio::AudioFormat;
use crate::protocol::{
    GroupUpdate, Message, PlaybackState, StreamClear, StreamEnd, StreamStart, StreamStartPlayer,
};
use crate::session::SessionHandle;

use super::encode::EncoderSettings;
use super::encoding::SharedEncoding;
use super::program::{Program, TrackSpan};
use super::queue::Queue;
use super::stream::PlayerStream;
use super::ServerEvent;

/// A `previous` command later than this into a track starts the track
/// again instead of going back one track, in milliseconds.
pub const RESTART_TRACK_AFTER_MS: u64 = 3000;

/// The audible track and its position, for metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NowPlaying {
    /// Index of the track in the queue's entries.
    pub entry: usize,
    /// Track time in milliseconds at `at_us`.
    pub progress_ms: u64,
    /// Server time in microseconds at which `progress_ms` holds.
    pub at_us: i64,
    pub duration_ms: Option<u64>,
    pub playing: bool,
}

/// A member as its group needs it.
pub struct Member {
    pub client_id: String,
    pub handle: SessionHandle,
    /// The negotiated player format and buffer capacity, for players.
    pub player: Option<(AudioFormat, u64)>,
}

pub struct Group {
    pub id: String,
    pub name: String,
    members: Vec<Member>,
    pub queue: Queue,
    /// Track time in milliseconds where the next program starts: where a
    /// pause left the current track, else 0.
    resume_ms: u64,
    /// Length of the track a pause stopped in, for metadata.
    paused_duration_ms: Option<u64>,
    program: Option<Program>,
    streams: HashMap<String, PlayerStream>,
    /// Encodings of the program by id, one for each format players stream
    /// in (sometimes more, see [`encoding_for`]).
    encodings: HashMap<u64, SharedEncoding>,
    next_encoding_id: u64,
    /// The span last reported by [`take_track_change`](Self::take_track_change).
    announced: Option<(u64, u64)>,
    /// Counts programs, so a new program's first span is a change.
    programs: u64,
}

/// Timing of a group's streaming, from the server configuration.
#[derive(Clone, Copy, Debug)]
pub struct Pacing {
    /// How far ahead of real time audio is sent, in microseconds.
    pub lead_us: i64,
    /// Delay from program start until its first frame sounds, in
    /// microseconds, so the first players can sync their clocks.
    pub start_delay_us: i64,
    /// Late joiners start with the first chunk at least this far in the
    /// future, in microseconds, so it arrives before it is due.
    pub join_margin_us: i64,
    /// Encoder settings for every player stream.
    pub encoder: EncoderSettings,
}

impl Group {
    pub fn new(id: String, name: String, queue: Queue) -> Group {
        Group {
            id,
            name,
            members: Vec::new(),
            queue,
            resume_ms: 0,
            paused_duration_ms: None,
            program: None,
            streams: HashMap::new(),
            encodings: HashMap::new(),
            next_encoding_id: 0,
            announced: None,
            programs: 0,
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Returns the track audible at `now_us`, or the stopped group's position.
    pub fn now_playing(&self, now_us: i64) -> NowPlaying {
        match &self.program {
            Some(program) if program.span_at(now_us).is_some() => {
                let span = program.span_at(now_us).expect("checked above");
                // Before the track sounds, its progress is stated as of the
                // moment it starts.
                let at_us = now_us.max(program.frame_time_us(span.start_frame));
                NowPlaying {
                    entry: span.entry,
                    progress_ms: program.track_progress_ms(at_us).unwrap_or(0),
                    at_us,
                    duration_ms: span.duration_ms,
                    playing: true,
                }
            }
            _ => NowPlaying {
                entry: self.queue.entry_index(self.queue.position()),
                progress_ms: self.resume_ms,
                at_us: now_us,
                duration_ms: self.paused_duration_ms.filter(|_| self.resume_ms > 0),
                playing: false,
            },
        }
    }

    /// Returns true once each time the audible track changes: a new
    /// program, the timeline reaching the next track, or the end of
    /// playback.
    pub fn take_track_change(&mut self, now_us: i64) -> bool {
        let current = self
            .program
            .as_ref()
            .and_then(|p| p.span_at(now_us))
            .map(|span| (self.programs, span.serial));
        if current != self.announced {
            self.announced = current;
            return true;
        }
        false
    }

    /// Returns the audible span at `now_us`, while playing.
    fn audible_span(&self, now_us: i64) -> Option<TrackSpan> {
        self.program.as_ref()?.span_at(now_us).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn has_players(&self) -> bool {
        self.members.iter().any(|m| m.player.is_some())
    }

    /// Returns the negotiated format of member `client_id`, if it is a
    /// player.
    pub fn player_format(&self, client_id: &str) -> Option<AudioFormat> {
        let member = self.members.iter().find(|m| m.client_id == client_id)?;
        member.player.map(|(format, _)| format)
    }

    pub fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.client_id.as_str())
    }

    /// Returns how much audio member `client_id` has been sent ahead of
    /// `now_us`, in microseconds, if it gets a stream.
    pub fn sent_ahead_us(&self, client_id: &str, now_us: i64) -> Option<i64> {
        self.streams
            .get(client_id)
            .map(|stream| stream.sent_ahead_us(now_us))
    }

    pub fn is_playing(&self) -> bool {
        self.program.is_some()
    }

    fn playback_state(&self) -> PlaybackState {
        if self.is_playing() {
            PlaybackState::Playing
        } else {
            PlaybackState::Stopped
        }
    }

    /// Adds a member, sends it `group/update`, and starts its stream (and
    /// the program, when the group is stopped and the member is a player).
    /// Starts a stopped group only with `autoplay`.
    pub fn join(
        &mut self,
        member: Member,
        autoplay: bool,
        pacing: Pacing,
        now_us: i64,
        events: &EventSink,
    ) {
        let is_player = member.player.is_some();
        let handle = member.handle.clone();
        let client_id = member.client_id.clone();
        self.members.retain(|m| m.client_id != client_id);
        // The program starts before the joiner is a member, so the joiner
        // gets one complete group/update below and no partial one.
        if is_player && autoplay && self.program.is_none() {
            self.start_program(pacing.start_delay_us, pacing, now_us, events);
        }
        self.members.push(member);
        let update = GroupUpdate {
            playback_state: Some(Some(self.playback_state())),
            group_id: Some(Some(self.id.clone())),
            group_name: Some(Some(self.name.clone())),
        };
        let _ = handle.send_message(Message::GroupUpdate(update));
        if is_player && self.program.is_some() {
            self.start_stream(
                &client_id,
                now_us + pacing.join_margin_us,
                pacing.encoder,
                events,
            );
        }
    }

    /// Removes a member; its stream ends with a `stream/end` if its session
    /// is still open.
    pub fn leave(&mut self, client_id: &str, events: &EventSink) {
        if let Some(stream) = self.streams.remove(client_id) {
            events.emit(ServerEvent::StreamEnded {
                client_id: client_id.to_string(),
                chunks_sent: stream.chunks_sent,
            });
        }
        self.members.retain(|m| m.client_id != client_id);
    }

    /// Removes a member that moves to another group: a streaming player
    /// gets `stream/end`. Returns the member, for its new group.
    pub fn depart(&mut self, client_id: &str, events: &EventSink) -> Option<Member> {
        let index = self.members.iter().position(|m| m.client_id == client_id)?;
        let member = self.members.remove(index);
        if let Some(stream) = self.streams.remove(client_id) {
            let _ = member
                .handle
                .send_message(Message::StreamEnd(StreamEnd::default()));
            events.emit(ServerEvent::StreamEnded {
                client_id: client_id.to_string(),
                chunks_sent: stream.chunks_sent,
            });
        }
        Some(member)
    }

    /// Starts the program if the group is stopped and has a player,
    /// where a pause left it or else at the current track's start.
    /// Returns whether it started.
    pub fn play(&mut self, pacing: Pacing, now_us: i64, events: &EventSink) -> bool {
        if self.program.is_none() && self.has_players() {
            // The players are in sync already; a short delay is enough.
            self.start_program(pacing.join_margin_us * 3, pacing, now_us, events);
            return self.program.is_some();
        }
        false
    }

    fn start_program(&mut self, delay_us: i64, pacing: Pacing, now_us: i64, events: &EventSink) {
        let start_us = now_us + delay_us;
        let program = match Program::start(&mut self.queue, self.resume_ms, start_us) {
            Ok(program) => program,
            Err(err) => {
                tracing::error!(group = %self.id, cause = %err, "cannot start the program");
                return;
            }
        };
        self.resume_ms = 0;
        self.programs += 1;
        self.program = Some(program);
        self.encodings.clear();
        events.emit(ServerEvent::ProgramStarted {
            group_id: self.id.clone(),
            start_us,
        });
        let members: Vec<(String, bool)> = self
            .members
            .iter()
            .map(|m| (m.client_id.clone(), m.player.is_some()))
            .collect();
        for (client_id, is_player) in members {
            self.send_group_state(&client_id);
            if is_player {
                self.start_stream(&client_id, start_us, pacing.encoder, events);
            }
        }
    }

    fn send_group_state(&self, client_id: &str) {
        if let Some(member) = self.members.iter().find(|m| m.client_id == client_id) {
            let update = GroupUpdate {
                playback_state: Some(Some(self.playback_state())),
                ..Default::default()
            };
            let _ = member.handle.send_message(Message::GroupUpdate(update));
        }
    }

    fn start_stream(
        &mut self,
        client_id: &str,
        from_us: i64,
        encoder: EncoderSettings,
        events: &EventSink,
    ) {
        let (Some(program), Some(member)) = (
            self.program.as_mut(),
            self.members.iter().find(|m| m.client_id == client_id),
        ) else {
            return;
        };
        let Some((format, capacity)) = member.player else {
            return;
        };
        // Chunks from `from_us` on must exist before the stream can pick one.
        program.produce_until(&mut self.queue, from_us + 1);
        let seq = program.first_seq_from(from_us);
        let encoding_id = match encoding_for(
            &mut self.encodings,
            &mut self.next_encoding_id,
            program,
            format,
            seq,
            encoder,
        ) {
            Ok(id) => id,
            Err(err) => {
                tracing::error!(client_id, cause = %err, "cannot stream to player");
                return;
            }
        };
        let encoding = &self.encodings[&encoding_id];
        let stream = PlayerStream::new(encoding_id, encoding, capacity, seq);
        let start = stream_start(encoding);
        if member
            .handle
            .send_message(Message::StreamStart(start))
            .is_ok()
        {
            events.emit(ServerEvent::StreamStarted {
                client_id: client_id.to_string(),
                format,
            });
            self.streams.insert(client_id.to_string(), stream);
        }
    }

    /// Switches the stream of player `client_id` to `format` at a chunk
    /// boundary, as [`PlayerStream::switch_format`] explains, and announces
    /// it with a new `stream/start`. A change that needs a new output
    /// format restarts the stream `pacing.join_margin_us` after `now_us`,
    /// as for a late joiner. Other players' streams are not touched. A
    /// stopped group only records the format for the player's next stream.
    pub fn change_format(
        &mut self,
        client_id: &str,
        format: AudioFormat,
        pacing: Pacing,
        now_us: i64,
        events: &EventSink,
    ) {
        let Some(member) = self.members.iter_mut().find(|m| m.client_id == client_id) else {
            return;
        };
        let Some((current, capacity)) = member.player else {
            return;
        };
        let (Some(program), Some(stream)) =
            (self.program.as_ref(), self.streams.get_mut(client_id))
        else {
            member.player = Some((format, capacity));
            return;
        };
        // When the decoded audio keeps its rate, channels and bit depth, the
        // first source chunk not yet sent is the first in the new format.
        // Otherwise the new format starts as for a late joiner.
        let keeps_output = (format.sample_rate, format.channels, format.bit_depth)
            == (current.sample_rate, current.channels, current.bit_depth);
        let seq = match self.encodings.get(&stream.encoding) {
            Some(encoding) if keeps_output => stream.next_source_seq(encoding),
            _ => program.first_seq_from(now_us + pacing.join_margin_us),
        }
        .max(program.first_kept_seq());
        let encoding_id = match encoding_for(
            &mut self.encodings,
            &mut self.next_encoding_id,
            program,
            format,
            seq,
            pacing.encoder,
        ) {
            Ok(id) => id,
            Err(err) => {
                tracing::error!(client_id, from = %current, to = %format, cause = %err, "cannot change the stream format; keeping the current one");
                return;
            }
        };
        let encoding = &self.encodings[&encoding_id];
        stream.switch_to(encoding_id, encoding, seq, keeps_output);
        member.player = Some((format, capacity));
        if member
            .handle
            .send_message(Message::StreamStart(stream_start(encoding)))
            .is_ok()
        {
            tracing::info!(client_id, from = %current, to = %format, "stream format changed");
            events.emit(ServerEvent::StreamStarted {
                client_id: client_id.to_string(),
                format,
            });
        }
    }

    /// Produces audio up to the lead and sends each player what fits; ends
    /// the program once its last chunk has been heard.
    // NOTE: encoding runs here, in the server core's one task, once per
    // format in the group. Queueing every player's chunks runs here too,
    // and docs/benchmarks.md has the player counts this allows.
    pub fn pump(&mut self, pacing: Pacing, now_us: i64, events: &EventSink) {
        let Some(program) = self.program.as_mut() else {
            return;
        };
        let horizon_us = now_us + pacing.lead_us;
        program.produce_until(&mut self.queue, horizon_us);
        for member in &self.members {
            let Some(stream) = self.streams.get_mut(&member.client_id) else {
                continue;
            };
            let Some(encoding) = self.encodings.get_mut(&stream.encoding) else {
                continue;
            };
            // A failed send has already closed the session as a slow
            // consumer; its Closed event removes the member.
            let _ = stream.pump(program, encoding, &member.handle, now_us, horizon_us);
        }
        program.discard_heard(now_us);
        let streams = &self.streams;
        self.encodings
            .retain(|id, _| streams.values().any(|stream| stream.encoding == *id));
        for encoding in self.encodings.values_mut() {
            encoding.discard_heard(program);
        }
        let encodings = &self.encodings;
        let finished = program.is_exhausted()
            && program.produced_until_us() <= now_us
            && self.streams.values().all(|s| {
                encodings
                    .get(&s.encoding)
                    .is_none_or(|encoding| s.is_drained(encoding, program))
            });
        if finished {
            // The queue ended: the next play starts it from the beginning.
            self.end_program(events);
            self.queue.set_position(0);
            self.resume_ms = 0;
        }
    }

    /// Stops playback and goes back to the start of the audible track.
    /// Returns whether the group was playing.
    pub fn stop(&mut self, now_us: i64, events: &EventSink) -> bool {
        if let Some(span) = self.audible_span(now_us) {
            self.queue.set_position(self.queue.position_of(span.entry));
        }
        let changed = self.resume_ms != 0 || self.program.is_some();
        self.resume_ms = 0;
        self.end_program(events);
        changed
    }

    /// Stops playback and keeps the position in the audible track for the
    /// next `play`. Returns whether the group was playing.
    pub fn pause(&mut self, now_us: i64, events: &EventSink) -> bool {
        let Some(span) = self.audible_span(now_us) else {
            return false;
        };
        let progress = self
            .program
            .as_ref()
            .and_then(|p| p.track_progress_ms(now_us))
            .unwrap_or(0);
        self.queue.set_position(self.queue.position_of(span.entry));
        self.end_program(events);
        self.resume_ms = progress;
        self.paused_duration_ms = span.duration_ms;
        true
    }

    /// Skips to the next track (`forward`) or back to the previous one, or
    /// to the start of the audible track when it has played for longer
    /// than [`RESTART_TRACK_AFTER_MS`]. A playing group goes on playing the
    /// new track after a short delay; players drop what they buffered.
    pub fn skip(&mut self, forward: bool, pacing: Pacing, now_us: i64, events: &EventSink) {
        let playing = self.program.is_some();
        let (position, progress_ms) = match self.audible_span(now_us) {
            Some(span) => (
                self.queue.position_of(span.entry),
                self.program
                    .as_ref()
                    .and_then(|p| p.track_progress_ms(now_us))
                    .unwrap_or(0),
            ),
            None => (self.queue.position(), self.resume_ms),
        };
        self.queue.set_position(position);
        self.resume_ms = 0;
        let ended = if forward {
            !self.queue.skip_next()
        } else {
            if progress_ms <= RESTART_TRACK_AFTER_MS {
                self.queue.skip_previous();
            }
            false
        };
        if !playing {
            return;
        }
        if ended {
            self.end_program(events);
            return;
        }
        self.restart_program(pacing, now_us, events);
    }

    /// Replaces a playing program with one that starts at the queue's
    /// current track shortly after `now_us`. Players keep their streams
    /// and formats: `stream/clear` drops what they buffered of the old
    /// program.
    fn restart_program(&mut self, pacing: Pacing, now_us: i64, events: &EventSink) {
        let start_us = now_us + pacing.join_margin_us * 3;
        let program = match Program::start(&mut self.queue, 0, start_us) {
            Ok(program) => program,
            Err(err) => {
                tracing::error!(group = %self.id, cause = %err, "cannot start the next track");
                self.end_program(events);
                return;
            }
        };
        self.programs += 1;
        let program = self.program.insert(program);
        self.encodings.clear();
        program.produce_until(&mut self.queue, start_us + 1);
        let seq = program.first_seq_from(start_us);
        for member in &self.members {
            let Some(stream) = self.streams.get_mut(&member.client_id) else {
                continue;
            };
            let Some((format, capacity)) = member.player else {
                continue;
            };
            match encoding_for(
                &mut self.encodings,
                &mut self.next_encoding_id,
                program,
                format,
                seq,
                pacing.encoder,
            ) {
                Ok(encoding_id) => {
                    let fresh = PlayerStream::new(
                        encoding_id,
                        &self.encodings[&encoding_id],
                        capacity,
                        seq,
                    );
                    let chunks_sent = stream.chunks_sent;
                    *stream = fresh;
                    stream.chunks_sent = chunks_sent;
                    let clear = StreamClear {
                        roles: Some(vec!["player".to_string()]),
                    };
                    let _ = member.handle.send_message(Message::StreamClear(clear));
                }
                Err(err) => {
                    tracing::error!(client_id = %member.client_id, cause = %err, "cannot stream the next track")
                }
            }
        }
    }

    /// Ends the program: every streaming player gets `stream/end`, every
    /// member learns that the group stopped.
    fn end_program(&mut self, events: &EventSink) {
        if self.program.take().is_none() {
            return;
        }
        self.encodings.clear();
        for member in &self.members {
            if let Some(stream) = self.streams.remove(&member.client_id) {
                let _ = member
                    .handle
                    .send_message(Message::StreamEnd(StreamEnd::default()));
                events.emit(ServerEvent::StreamEnded {
                    client_id: member.client_id.clone(),
                    chunks_sent: stream.chunks_sent,
                });
            }
        }
        for member in &self.members {
            self.send_group_state(&member.client_id);
        }
        events.emit(ServerEvent::ProgramEnded {
            group_id: self.id.clone(),
        });
    }
}

/// Returns the id of an encoding of `format` that a player starting with
/// source chunk `seq` can read, creating one when none can. An encoding
/// that has already dropped chunks from `seq` on cannot serve such a
/// player, so a group may then have two encodings of one format.
fn encoding_for(
    encodings: &mut HashMap<u64, SharedEncoding>,
    next_id: &mut u64,
    program: &Program,
    format: AudioFormat,
    seq: u64,
    settings: EncoderSettings,
) -> Result<u64, String> {
    let shared = encodings
        .iter()
        .filter(|(_, encoding)| encoding.format == format && encoding.covers(seq))
        .map(|(id, _)| *id)
        .min();
    if let Some(id) = shared {
        return Ok(id);
    }
    let encoding = SharedEncoding::new(format, program, seq, settings)?;
    let id = *next_id;
    *next_id += 1;
    encodings.insert(id, encoding);
    Ok(id)
}

/// Builds the `stream/start` that announces `encoding`'s format and codec
/// header.
fn stream_start(encoding: &SharedEncoding) -> StreamStart {
    let format = encoding.format;
    let codec_header = encoding
        .codec_header()
        .map(|header| base64::engine::general_purpose::STANDARD.encode(header));
    StreamStart {
        player: Some(StreamStartPlayer {
            codec: format.codec.as_str().to_string(),
            sample_rate: format.sample_rate,
            channels: format.channels,
            bit_depth: format.bit_depth,
            codec_header,
        }),
        ..Default::default()
    }
}

/// Destination of the server's events: the event channel, and the
/// telemetry hub when one is attached.
#[derive(Clone)]
pub struct EventSink {
    pub events: tokio::sync::broadcast::Sender<ServerEvent>,
    pub telemetry: Option<crate::telemetry::Telemetry>,
}

impl EventSink {
    pub fn emit(&self, event: ServerEvent) {
        if let Some(telemetry) = &self.telemetry {
            if let Some(line) = super::core::telemetry_event(&event) {
                telemetry.emit(line);
            }
        }
        // An event with no subscriber is dropped on purpose.
        let _ = self.events.send(event);
    }
}
