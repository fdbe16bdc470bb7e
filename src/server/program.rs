//! A program: a group's queue decoded onto one timeline of fixed-length
//! chunks stamped on the server clock.
//!
//! The timeline takes the rate and channels of the first track it plays;
//! later tracks of other formats are converted to it, so the tracks follow
//! each other without a gap and every player stream goes on across them.

use std::collections::VecDeque;
use std::sync::Arc;

use super::queue::{Queue, QueueEntry};
use super::track::{TrackAudio, TrackFeed};

/// Length of one audio chunk in milliseconds. Every chunk but a source's
/// last holds exactly this much audio.
pub const CHUNK_MS: u32 = 20;

/// A chunk of the source timeline, in the source's rate and channels.
#[derive(Clone, Debug)]
pub struct SourceChunk {
    pub seq: u64,
    /// Frames of the timeline before this chunk.
    pub start_frame: u64,
    /// Server clock in microseconds of the chunk's first frame.
    pub timestamp_us: i64,
    pub frames: usize,
    pub samples: Arc<Vec<f32>>,
}

/// The start of one track on the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackSpan {
    /// Timeline frame of the span's first frame.
    pub start_frame: u64,
    /// Play-order position of the track in the queue.
    pub position: usize,
    /// Index of the track in the queue's entries.
    pub entry: usize,
    /// Track time at the span's first frame, in milliseconds: more than 0
    /// when playback resumed within the track.
    pub offset_ms: u64,
    /// Length of the whole track in milliseconds, when known.
    pub duration_ms: Option<u64>,
    /// Counts the spans of one program, so a track that repeats is a new span.
    pub serial: u64,
}

/// A decoded queue laid out on the server clock.
pub struct Program {
    /// The track being decoded; `None` once the queue has ended.
    feed: Option<TrackFeed>,
    pub sample_rate: u32,
    pub channels: u16,
    chunk_frames: usize,
    /// Start of each track, oldest first. Spans that ended before the
    /// oldest kept chunk are forgotten.
    spans: VecDeque<TrackSpan>,
    next_serial: u64,
    /// Tracks in a row that ended without a frame, to stop a queue of
    /// empty files from looping for ever.
    empty_tracks: usize,
    /// Server clock in microseconds of the timeline's first frame.
    start_us: i64,
    next_seq: u64,
    produced_frames: u64,
    chunks: VecDeque<SourceChunk>,
    ended: bool,
    /// Packets the decoder could not read.
    pub source_errors: u64,
}

impl Program {
    /// Starts a program at the queue's current track, `offset_ms` into it,
    /// whose first frame sounds at `start_us`. A track that cannot be
    /// opened is skipped; the error names the last one when none opens.
    pub fn start(queue: &mut Queue, offset_ms: u64, start_us: i64) -> Result<Program, String> {
        let mut last_error = String::new();
        let mut offset_ms = offset_ms;
        for _ in 0..queue.len() {
            let entry = queue.current().clone();
            match TrackAudio::open(&entry) {
                Ok(mut audio) => {
                    let rate = audio.sample_rate();
                    let channels = audio.channels();
                    let duration_ms = audio.duration_ms();
                    if offset_ms > 0 {
                        if let Err(err) = audio.skip(offset_ms * u64::from(rate) / 1000) {
                            tracing::warn!(entry = %entry.describe(), cause = %err, "cannot resume the track; skipping it");
                            last_error = err.to_string();
                            queue.skip_next();
                            offset_ms = 0;
                            continue;
                        }
                    }
                    let feed = TrackFeed::new(audio, rate, channels)?;
                    return Ok(Program::with_feed(
                        feed,
                        rate,
                        channels,
                        queue,
                        offset_ms,
                        duration_ms,
                        start_us,
                    ));
                }
                Err(err) => {
                    report_unplayable(queue, &entry, &err);
                    last_error = err;
                    queue.skip_next();
                    offset_ms = 0;
                }
            }
        }
        Err(last_error)
    }

    fn with_feed(
        feed: TrackFeed,
        sample_rate: u32,
        channels: u16,
        queue: &Queue,
        offset_ms: u64,
        duration_ms: Option<u64>,
        start_us: i64,
    ) -> Program {
        let chunk_frames = (sample_rate as usize * CHUNK_MS as usize / 1000).max(1);
        let span = TrackSpan {
            start_frame: 0,
            position: queue.position(),
            entry: queue.entry_index(queue.position()),
            offset_ms,
            duration_ms,
            serial: 0,
        };
        Program {
            feed: Some(feed),
            sample_rate,
            channels,
            chunk_frames,
            spans: VecDeque::from([span]),
            next_serial: 1,
            empty_tracks: 0,
            start_us,
            next_seq: 0,
            produced_frames: 0,
            chunks: VecDeque::new(),
            ended: false,
            source_errors: 0,
        }
    }

    /// Frames in every chunk but the source's last.
    pub fn chunk_frames(&self) -> usize {
        self.chunk_frames
    }

    /// Server time in microseconds of the timeline frame `frame`.
    pub fn frame_time_us(&self, frame: u64) -> i64 {
        self.start_us + (frame as i128 * 1_000_000 / self.sample_rate as i128) as i64
    }

    /// Server clock in microseconds of the timeline's first frame.
    pub fn start_us(&self) -> i64 {
        self.start_us
    }

    /// Frames of the timeline produced so far.
    pub fn produced_frames(&self) -> u64 {
        self.produced_frames
    }

    /// Server time at which everything produced so far has been heard.
    pub fn produced_until_us(&self) -> i64 {
        self.frame_time_us(self.produced_frames)
    }

    /// Whether the source has ended and every chunk has been produced.
    pub fn is_exhausted(&self) -> bool {
        self.ended
    }

    /// Returns the track audible at server time `time_us`, or the first
    /// one before the program starts.
    pub fn span_at(&self, time_us: i64) -> Option<&TrackSpan> {
        self.spans
            .iter()
            .rev()
            .find(|span| self.frame_time_us(span.start_frame) <= time_us)
            .or_else(|| self.spans.front())
    }

    /// Position in the track audible at `time_us`, in milliseconds.
    pub fn track_progress_ms(&self, time_us: i64) -> Option<u64> {
        let span = self.span_at(time_us)?;
        let since_us = (time_us - self.frame_time_us(span.start_frame)).max(0);
        Some(span.offset_ms + since_us as u64 / 1000)
    }

    /// Decodes chunks until the timeline reaches `horizon_us` or the queue
    /// ends, moving the queue on from track to track.
    pub fn produce_until(&mut self, queue: &mut Queue, horizon_us: i64) {
        while !self.ended && self.produced_until_us() < horizon_us {
            // A live stream is read only as far as its data has arrived.
            if self
                .feed
                .as_ref()
                .is_some_and(|feed| !feed.ready(self.chunk_frames))
            {
                break;
            }
            match self.read_chunk(queue) {
                Some(chunk) => self.chunks.push_back(chunk),
                None => self.ended = true,
            }
        }
    }

    /// Opens the track that follows the current one, as the queue's repeat
    /// mode sets. Returns false when the queue has ended.
    fn open_next_track(&mut self, queue: &mut Queue, start_frame: u64) -> bool {
        for _ in 0..queue.len() {
            let Some(position) = queue.after_end() else {
                return false;
            };
            queue.set_position(position);
            let entry = queue.current().clone();
            let opened = TrackAudio::open(&entry).and_then(|audio| {
                let duration_ms = audio.duration_ms();
                TrackFeed::new(audio, self.sample_rate, self.channels)
                    .map(|feed| (feed, duration_ms))
            });
            match opened {
                Ok((feed, duration_ms)) => {
                    self.feed = Some(feed);
                    self.spans.push_back(TrackSpan {
                        start_frame,
                        position,
                        entry: queue.entry_index(position),
                        offset_ms: 0,
                        duration_ms,
                        serial: self.next_serial,
                    });
                    self.next_serial += 1;
                    return true;
                }
                Err(err) => {
                    self.source_errors += 1;
                    report_unplayable(queue, &entry, &err);
                }
            }
        }
        false
    }

    fn read_chunk(&mut self, queue: &mut Queue) -> Option<SourceChunk> {
        let wanted = self.chunk_frames;
        let channels = self.channels as usize;
        let mut samples = Vec::with_capacity(wanted * channels);
        while samples.len() < wanted * channels {
            let Some(feed) = self.feed.as_mut() else {
                break;
            };
            let missing = wanted - samples.len() / channels;
            let before = samples.len();
            match feed.read(&mut samples, missing) {
                Ok(0) => {
                    self.feed = None;
                    self.empty_tracks += 1;
                    if self.empty_tracks > queue.len() {
                        tracing::error!(
                            "every queue entry ended without audio; ending the program"
                        );
                        break;
                    }
                    let start_frame = self.produced_frames + (samples.len() / channels) as u64;
                    if !self.open_next_track(queue, start_frame) {
                        break;
                    }
                }
                Ok(_) => self.empty_tracks = 0,
                Err(err) => {
                    self.source_errors += 1;
                    samples.truncate(before);
                    tracing::error!(cause = %err, "source read failed; going on with the next queue entry");
                    self.feed = None;
                    let start_frame = self.produced_frames + (samples.len() / channels) as u64;
                    if !self.open_next_track(queue, start_frame) {
                        break;
                    }
                }
            }
        }
        let frames = samples.len() / self.channels as usize;
        if frames == 0 {
            return None;
        }
        samples.truncate(frames * self.channels as usize);
        let chunk = SourceChunk {
            seq: self.next_seq,
            start_frame: self.produced_frames,
            timestamp_us: self.frame_time_us(self.produced_frames),
            frames,
            samples: Arc::new(samples),
        };
        self.next_seq += 1;
        self.produced_frames += frames as u64;
        Some(chunk)
    }

    pub fn chunk(&self, seq: u64) -> Option<&SourceChunk> {
        let first = self.chunks.front()?.seq;
        self.chunks.get(seq.checked_sub(first)? as usize)
    }

    /// Sequence number of the first kept chunk that starts at or after
    /// `time_us`, or of the next chunk to be produced.
    pub fn first_seq_from(&self, time_us: i64) -> u64 {
        self.chunks
            .iter()
            .find(|chunk| chunk.timestamp_us >= time_us)
            .map_or(self.next_seq, |chunk| chunk.seq)
    }

    /// Sequence number the next produced chunk will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Forgets chunks that have been heard completely by `now_us`: no
    /// player may receive them any more, and late joiners get only future
    /// chunks.
    pub fn discard_heard(&mut self, now_us: i64) {
        while let Some(front) = self.chunks.front() {
            let end = self.frame_time_us(front.start_frame + front.frames as u64);
            if end > now_us {
                break;
            }
            self.chunks.pop_front();
        }
        // Keep the span audible now and every later one.
        while self.spans.len() > 1 && self.frame_time_us(self.spans[1].start_frame) <= now_us {
            self.spans.pop_front();
        }
    }

    /// Sequence number of the oldest kept chunk.
    pub fn first_kept_seq(&self) -> u64 {
        self.chunks.front().map_or(self.next_seq, |chunk| chunk.seq)
    }
}

/// Logs that `entry`, the queue's current entry, cannot open and is
/// skipped: a warning the first time, and at debug level when the queue
/// comes round to it again, as it does with repeat all.
fn report_unplayable(queue: &mut Queue, entry: &QueueEntry, cause: &str) {
    if queue.mark_current_unplayable() {
        tracing::warn!(entry = %entry.describe(), cause, "cannot open a queue entry; skipping it");
    } else {
        tracing::debug!(entry = %entry.describe(), cause, "skipping a queue entry that failed to open before");
    }
}
