//! Sample-accurate playback scheduling for a pull-model audio output.
//!
//! The network side pushes decoded chunks, each stamped with the server time
//! of its first frame, into a [`Scheduler`]. The output callback pulls audio
//! with [`Scheduler::fill`], naming the local time at which the first frame
//! of its buffer will be heard. The scheduler maps that time to the server
//! clock with a [`ClockSnapshot`] and returns the samples that belong there.
//!
//! # Timing rules
//!
//! * The frame of a chunk stamped `ts` plays at local time
//!   `clock.server_to_local(ts) + static_delay_us`. The output adds its own
//!   latency before it calls [`Scheduler::fill`].
//! * Before a stream is anchored, chunks whose last frame lies before the
//!   buffer are dropped and counted as late. The first chunk that reaches
//!   into the buffer anchors playback, with silence before it. If it started
//!   before the buffer, its late frames are skipped.
//! * Once anchored, chunks play back to back. The join between two chunks is
//!   placed by their timestamps, rounded to whole frames, so chunks whose
//!   timestamps differ by exactly their length stay contiguous sample for
//!   sample. A gap between them plays as silence of the gap's length, and an
//!   overlap skips the overlapping frames of the later chunk.
//! * Every fill compares the anchored position with the clock-mapped one,
//!   in fractions of a frame. This error grows when the sound card's sample
//!   clock runs faster or slower than the server timeline. Its smoothed
//!   value (see [`ERROR_SMOOTHING`]) is corrected one frame at a time: when
//!   it exceeds [`CORRECTION_THRESHOLD_FRAMES`], the fill drops one frame
//!   (playback is late) or repeats its last frame (playback is early) at
//!   the end of the buffer. At most one frame changes per fill, which
//!   follows drift of up to about 2000 ppm with 10 ms buffers.
//! * Beyond [`REANCHOR_THRESHOLD_US`] the error is gross, for example after
//!   a clock step, and single frames would take too long. After
//!   [`REANCHOR_CONFIRM_FILLS`] consecutive fills beyond it, playback jumps
//!   to the clock-mapped position: forward by dropping frames, backward by
//!   inserting silence.
//! * Buffered audio is bounded by duration (see [`DEFAULT_MAX_BUFFER_US`]).
//!   When a push exceeds the bound, the oldest queued chunks are evicted.
//! * Without a converged clock the output is silence and the anchor is
//!   released, so playback re-anchors once the clock converges.
//!
//! # Real-time behaviour
//!
//! One [`Mutex`] guards the state. The network side locks it only to move a
//! ready chunk in or out, never across I/O, so the audio callback waits at
//! most for a queue operation. [`Scheduler::fill`] does not allocate.
//! Finished chunks are parked and freed by the next call from the network
//! side, outside the lock.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crate::audio::AudioFormat;
use crate::sync::ClockSnapshot;

/// Maximum distance in microseconds between the played position and the
/// clock-mapped position that playback tolerates before it re-anchors.
///
/// 15 ms is an estimate that leaves room for a few milliseconds of jitter in
/// audio back-end timestamps and clock estimates, while staying below the
/// delay at which two rooms start to sound like an echo (about 20 ms).
pub const REANCHOR_THRESHOLD_US: i64 = 15_000;

/// Consecutive fills whose position error exceeds [`REANCHOR_THRESHOLD_US`]
/// before playback re-anchors, so one outlying timestamp causes no jump.
pub const REANCHOR_CONFIRM_FILLS: u32 = 3;

/// Smoothed position error, in frames, beyond which a fill drops or
/// repeats one frame. Under steady drift the error then swings over one
/// frame between about -0.5 - lag and 0.5 - lag, so its mean stays within
/// a frame of zero (about 21 µs at 48 kHz). A fresh anchor, rounded to
/// half a frame, may take one correction.
pub const CORRECTION_THRESHOLD_FRAMES: f64 = 0.5;

/// Weight of each fill's position error in the smoothed error. Jitter of
/// the output's timestamps averages out over about four fills, and with
/// 10 ms fills a sink drift of 200 ppm makes the smoothed error lag the
/// measured one by about 0.3 frames.
pub const ERROR_SMOOTHING: f64 = 0.25;

/// Default bound on queued audio in microseconds of stream time (10 s).
///
/// At 48 kHz stereo this is 3.8 MB of `f32` samples.
pub const DEFAULT_MAX_BUFFER_US: i64 = 10_000_000;

/// Initial capacity of the chunk queue, so pushes rarely reallocate under
/// the lock.
const QUEUE_CAPACITY: usize = 512;

/// Capacity of the list of finished chunks waiting to be freed outside the
/// audio callback.
const RETIRED_CAPACITY: usize = 64;

/// Playback state, as the client reports it to the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaybackState {
    /// No stream is active.
    #[default]
    Idle,
    /// A stream is active but audio is not playing: no chunk has reached the
    /// output yet, the buffer ran dry, or the clock has not converged.
    Buffering,
    /// Audio is anchored to the clock and playing.
    Playing,
}

/// Playback counters, either for one fill or accumulated since creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlaybackCounters {
    /// Frames taken from chunks, including frames zeroed by mute or volume 0.
    pub frames_played: u64,
    /// Frames of silence output while a stream was active: before the first
    /// chunk, across gaps, after an underrun or while the clock was not
    /// converged.
    pub silence_frames: u64,
    /// Chunks dropped because every frame was already late.
    pub late_chunks_dropped: u64,
    /// Chunks whose play time passed before the stream first started
    /// playing, while the clock converged or because the player joined a
    /// playing group. They are expected, so they are not counted as late.
    pub chunks_skipped_at_start: u64,
    /// Chunks evicted because the buffer exceeded its bound.
    pub overflow_chunks_dropped: u64,
    /// Jumps to the clock-mapped position after a sustained position error.
    pub reanchors: u64,
    /// Single frames repeated because playback ran early.
    pub frames_inserted: u64,
    /// Single frames skipped because playback ran late.
    pub frames_dropped: u64,
    /// Times the anchored playback ran out of queued audio.
    pub underruns: u64,
    /// Chunks that failed to decode and played as silence (or Opus
    /// concealment) instead.
    pub corrupt_chunks: u64,
}

impl PlaybackCounters {
    fn add(&mut self, other: &PlaybackCounters) {
        self.frames_played += other.frames_played;
        self.silence_frames += other.silence_frames;
        self.late_chunks_dropped += other.late_chunks_dropped;
        self.chunks_skipped_at_start += other.chunks_skipped_at_start;
        self.overflow_chunks_dropped += other.overflow_chunks_dropped;
        self.reanchors += other.reanchors;
        self.frames_inserted += other.frames_inserted;
        self.frames_dropped += other.frames_dropped;
        self.underruns += other.underruns;
        self.corrupt_chunks += other.corrupt_chunks;
    }
}

/// Outcome of one [`Scheduler::fill`] call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FillReport {
    /// State after this fill.
    pub state: PlaybackState,
    /// Whether the clock snapshot was converged. When false the buffer is
    /// silent.
    pub clock_converged: bool,
    /// Counters for this fill only.
    pub counters: PlaybackCounters,
    /// Index of the first frame in the buffer taken from a chunk, if any.
    pub first_audio_frame: Option<usize>,
    /// Server time in microseconds of that frame.
    pub first_audio_server_us: Option<i64>,
    /// Position error measured at the start of this fill: the played
    /// position minus the clock-mapped one, in frames. Positive means early.
    /// `None` while playback is not anchored.
    pub position_error_frames: Option<f64>,
    /// Format of the active stream, `None` when idle.
    pub format: Option<AudioFormat>,
    /// Stream generation, which changes when a stream starts after an end or
    /// with a new format.
    pub stream_generation: u64,
}

/// Snapshot of the scheduler for status displays and `client/state`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PlaybackStatus {
    /// State after the latest fill or stream command.
    pub state: PlaybackState,
    /// Format of the active stream, `None` when idle.
    pub format: Option<AudioFormat>,
    /// Stream generation, as in [`FillReport::stream_generation`].
    pub stream_generation: u64,
    /// Queued audio in microseconds, excluding the chunk being played.
    pub buffered_us: i64,
    /// Counters accumulated since the scheduler was created.
    pub totals: PlaybackCounters,
    /// Volume from 0 to 100.
    pub volume: u8,
    /// Whether output is muted.
    pub muted: bool,
    /// User delay in microseconds. Positive values play later.
    pub static_delay_us: i64,
    /// Whether anchored playback ran out of queued audio and plays silence
    /// until the next chunk arrives.
    pub underrun: bool,
}

/// Errors from [`Scheduler`] calls on the network side.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchedulerError {
    /// A chunk arrived while no stream was active.
    #[error(
        "audio chunk at server time {server_ts_us} us arrived before stream/start; it was dropped"
    )]
    NoStream {
        /// Server time of the chunk's first frame in microseconds.
        server_ts_us: i64,
    },
    /// A chunk's sample count is not a multiple of the channel count.
    #[error("audio chunk of {samples} samples is not a whole number of {channels}-channel frames; it was dropped")]
    PartialFrame {
        /// Samples in the chunk.
        samples: usize,
        /// Channels of the active stream.
        channels: u16,
    },
    /// A stream format with zero sample rate or channels.
    #[error("invalid stream format {format}: sample rate and channel count must be nonzero")]
    InvalidFormat {
        /// The rejected format.
        format: AudioFormat,
    },
}

/// Converts a volume from 0 to 100 to a linear gain.
///
/// The curve is cubic, `gain = (volume / 100)^3`, which approximates
/// perceived loudness: volume 50 is -18 dB, volume 10 is -60 dB, 0 is silence
/// and 100 is exactly 1.0. Values above 100 count as 100.
pub fn volume_to_gain(volume: u8) -> f32 {
    let fraction = f32::from(volume.min(100)) / 100.0;
    fraction * fraction * fraction
}

/// Rounds a duration in microseconds to whole frames at `sample_rate` Hz,
/// halves away from zero.
fn us_to_frames(duration_us: i64, sample_rate: u32) -> i64 {
    let scaled = i128::from(duration_us) * i128::from(sample_rate);
    let half = 500_000_i128 * scaled.signum();
    ((scaled + half) / 1_000_000) as i64
}

/// Rounds a frame count at `sample_rate` Hz to microseconds.
fn frames_to_us(frames: i64, sample_rate: u32) -> i64 {
    let scaled = i128::from(frames) * 1_000_000;
    let rate = i128::from(sample_rate);
    let half = rate / 2 * scaled.signum();
    ((scaled + half) / rate) as i64
}

/// Parks a finished chunk's samples for the network side to free, without
/// allocating. When the list is full the samples are freed here.
fn retire_into(retired: &mut Vec<Vec<f32>>, chunk: Chunk) {
    if retired.len() < retired.capacity() {
        retired.push(chunk.samples);
    }
}

/// A decoded chunk of interleaved samples.
struct Chunk {
    /// Server time of the first frame in microseconds.
    server_ts_us: i64,
    samples: Vec<f32>,
}

/// The anchored playback position.
///
/// Frame indices count from the first frame of the chunk stamped
/// `ref_ts_us`, which is the current chunk or, after the queue ran dry, the
/// last chunk played.
struct Cursor {
    ref_ts_us: i64,
    /// Index of the frame that the next output frame plays. Indices before
    /// the current chunk, or past its end with nothing queued, play silence.
    next_frame: i64,
    /// Frames with a lower index were already played or skipped, so moving
    /// the cursor back over them plays silence instead of repeating them.
    available_from: i64,
    /// Whether the queue ran dry, so an underrun is counted only once.
    starved: bool,
    /// Consecutive fills with a position error above the threshold.
    fills_over_threshold: u32,
    /// Exponentially smoothed position error in frames, positive when
    /// playback runs early.
    smoothed_error_frames: f64,
    /// Frame correction that the current fill applies at its end.
    correction: Correction,
}

impl Cursor {
    /// Adds one measured error to the smoothed error and decides whether
    /// this fill drops or repeats a frame. A planned correction is counted
    /// in the smoothed error at once, so the next fill does not repeat it.
    fn plan_correction(&mut self, error_frames: f64) {
        self.smoothed_error_frames += ERROR_SMOOTHING * (error_frames - self.smoothed_error_frames);
        if self.smoothed_error_frames > CORRECTION_THRESHOLD_FRAMES {
            self.correction = Correction::Insert;
            self.smoothed_error_frames -= 1.0;
        } else if self.smoothed_error_frames < -CORRECTION_THRESHOLD_FRAMES {
            self.correction = Correction::Drop;
            self.smoothed_error_frames += 1.0;
        }
    }
}

/// A change of one frame that keeps playback on the clock-mapped position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Correction {
    None,
    /// Repeat the last frame of the buffer, because playback runs early.
    Insert,
    /// Skip the next frame, because playback runs late.
    Drop,
}

/// Everything behind the scheduler's lock.
struct State {
    format: Option<AudioFormat>,
    active: bool,
    generation: u64,
    playback_state: PlaybackState,
    queue: VecDeque<Chunk>,
    /// Frames in `queue`, excluding `current`.
    queued_frames: u64,
    /// The chunk that the cursor points into, taken out of the queue.
    current: Option<Chunk>,
    cursor: Option<Cursor>,
    volume: u8,
    muted: bool,
    gain: f32,
    static_delay_us: i64,
    /// Whether small position errors are corrected one frame at a time.
    drift_correction: bool,
    /// Whether playback anchored since the stream started or was cleared.
    anchored_once: bool,
    max_buffer_us: i64,
    totals: PlaybackCounters,
    /// Finished chunks, freed on the network side outside the lock.
    retired: Vec<Vec<f32>>,
}

/// Schedules decoded audio chunks onto an output clock.
///
/// Share it as `Arc<Scheduler>` between the network task and the output.
/// Every method takes `&self`.
pub struct Scheduler {
    state: Mutex<State>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler {
    /// Creates an idle scheduler with volume 100, unmuted, no static delay
    /// and the [`DEFAULT_MAX_BUFFER_US`] buffer bound.
    pub fn new() -> Self {
        Self::with_max_buffer_us(DEFAULT_MAX_BUFFER_US)
    }

    /// Creates an idle scheduler that queues at most `max_buffer_us`
    /// microseconds of audio. The oldest chunks are evicted beyond that.
    pub fn with_max_buffer_us(max_buffer_us: i64) -> Self {
        let state = State {
            format: None,
            active: false,
            generation: 0,
            playback_state: PlaybackState::Idle,
            queue: VecDeque::with_capacity(QUEUE_CAPACITY),
            queued_frames: 0,
            current: None,
            cursor: None,
            volume: 100,
            muted: false,
            gain: 1.0,
            static_delay_us: 0,
            drift_correction: true,
            anchored_once: false,
            max_buffer_us: max_buffer_us.max(0),
            totals: PlaybackCounters::default(),
            retired: Vec::with_capacity(RETIRED_CAPACITY),
        };
        Scheduler {
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock is recovered, because an audio callback that
        // panics on every later buffer is worse than playing on.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a stream in `format`, as announced by `stream/start`.
    ///
    /// The same format on an active stream changes nothing. A new format, or
    /// any format after [`Scheduler::end_stream`], drops buffered audio and
    /// starts a new stream generation.
    // NOTE: audio buffered in the old format is dropped on a format change
    // instead of played out, because the output can switch format only
    // between buffers.
    pub fn start_stream(&self, format: AudioFormat) -> Result<(), SchedulerError> {
        if format.sample_rate == 0 || format.channels == 0 {
            return Err(SchedulerError::InvalidFormat { format });
        }
        let dropped = {
            let mut state = self.lock();
            if state.active && state.format == Some(format) {
                return Ok(());
            }
            let dropped = state.take_buffers();
            state.format = Some(format);
            state.active = true;
            state.generation += 1;
            state.playback_state = PlaybackState::Buffering;
            dropped
        };
        drop(dropped);
        Ok(())
    }

    /// Drops all buffered audio, as `stream/clear` requests. The stream stays
    /// active, and later chunks anchor anew.
    pub fn clear(&self) {
        let dropped = {
            let mut state = self.lock();
            let dropped = state.take_buffers();
            if state.active {
                state.playback_state = PlaybackState::Buffering;
            }
            dropped
        };
        drop(dropped);
    }

    /// Stops the stream and drops all buffered audio, as `stream/end`
    /// requests. Fills return silence until the next stream starts.
    pub fn end_stream(&self) {
        let dropped = {
            let mut state = self.lock();
            let dropped = state.take_buffers();
            state.active = false;
            state.playback_state = PlaybackState::Idle;
            dropped
        };
        drop(dropped);
    }

    /// Queues a chunk of interleaved samples in the active stream's format,
    /// whose first frame sounds at server time `server_ts_us`.
    ///
    /// Chunks are kept in timestamp order. When the queue then exceeds its
    /// bound, the oldest queued chunks are evicted and counted.
    pub fn push_chunk(&self, server_ts_us: i64, samples: Vec<f32>) -> Result<(), SchedulerError> {
        let mut spare = Vec::with_capacity(RETIRED_CAPACITY);
        let result = {
            let mut state = self.lock();
            std::mem::swap(&mut spare, &mut state.retired);
            state.push_chunk(server_ts_us, samples)
        };
        // `spare` now contains the finished chunks and is freed here, outside
        // the lock.
        drop(spare);
        result
    }

    /// Counts a chunk that failed to decode. The network side queues its
    /// replacement with [`push_chunk`](Self::push_chunk).
    pub fn record_corrupt_chunk(&self) {
        self.lock().totals.corrupt_chunks += 1;
    }

    /// Sets the volume from 0 to 100 (values above 100 count as 100), mapped
    /// to gain by [`volume_to_gain`].
    pub fn set_volume(&self, volume: u8) {
        let mut state = self.lock();
        state.volume = volume.min(100);
        state.gain = volume_to_gain(volume);
    }

    /// Mutes or unmutes the output. Muted audio still advances playback.
    pub fn set_muted(&self, muted: bool) {
        self.lock().muted = muted;
    }

    /// Sets the user delay in microseconds. Positive values play later.
    ///
    /// While playing, the change applies at the next fill: a longer delay
    /// inserts silence, a shorter one skips audio. It does not count as a
    /// re-anchor.
    pub fn set_static_delay_us(&self, delay_us: i64) {
        let mut state = self.lock();
        let change_us = delay_us - state.static_delay_us;
        state.static_delay_us = delay_us;
        let format = state.format;
        if let (Some(cursor), Some(format)) = (state.cursor.as_mut(), format) {
            cursor.next_frame -= us_to_frames(change_us, format.sample_rate);
        }
    }

    /// Turns the one-frame drift correction on (the default) or off. Off,
    /// chunks play back to back sample for sample, and only an error above
    /// [`REANCHOR_THRESHOLD_US`] moves playback.
    pub fn set_drift_correction(&self, enabled: bool) {
        self.lock().drift_correction = enabled;
    }

    /// Returns the format of the active stream, `None` when idle.
    pub fn format(&self) -> Option<AudioFormat> {
        self.lock().active_format()
    }

    /// Returns the current state, counters and settings.
    pub fn status(&self) -> PlaybackStatus {
        let state = self.lock();
        let buffered_us = match state.format {
            Some(format) => format.frames_to_us(state.queued_frames),
            None => 0,
        };
        PlaybackStatus {
            state: state.playback_state,
            format: state.active_format(),
            stream_generation: state.generation,
            buffered_us,
            totals: state.totals,
            volume: state.volume,
            muted: state.muted,
            static_delay_us: state.static_delay_us,
            underrun: state.cursor.as_ref().is_some_and(|cursor| cursor.starved),
        }
    }

    /// Fills `out` with the interleaved samples that should sound from local
    /// time `local_time_of_first_frame_us` on, in microseconds of
    /// [`crate::clock::now_us`].
    ///
    /// `out` contains whole frames in the active stream's format. The caller
    /// includes its output latency in the local time. The buffer is silent
    /// when no stream is active, when `out` is not a whole number of frames,
    /// or when `clock` is not converged.
    pub fn fill(
        &self,
        out: &mut [f32],
        local_time_of_first_frame_us: i64,
        clock: &ClockSnapshot,
    ) -> FillReport {
        self.lock()
            .fill(out, local_time_of_first_frame_us, clock, None)
    }

    /// Fills `out` like [`Scheduler::fill`] when the active stream is in
    /// `expected` format. Otherwise `out` is silent and nothing is consumed. Outputs opened for one format use it so that a format
    /// change between buffers never plays audio at the wrong rate.
    pub fn fill_expecting(
        &self,
        out: &mut [f32],
        local_time_of_first_frame_us: i64,
        clock: &ClockSnapshot,
        expected: &AudioFormat,
    ) -> FillReport {
        self.lock()
            .fill(out, local_time_of_first_frame_us, clock, Some(expected))
    }
}

impl State {
    fn active_format(&self) -> Option<AudioFormat> {
        if self.active {
            self.format
        } else {
            None
        }
    }

    /// Releases the anchor and moves all buffered chunks out, for the caller
    /// to free after unlocking.
    fn take_buffers(&mut self) -> (VecDeque<Chunk>, Option<Chunk>, Vec<Vec<f32>>) {
        self.cursor = None;
        self.anchored_once = false;
        self.queued_frames = 0;
        let queue = std::mem::take(&mut self.queue);
        let current = self.current.take();
        let retired = std::mem::take(&mut self.retired);
        (queue, current, retired)
    }

    fn retire(&mut self, chunk: Chunk) {
        retire_into(&mut self.retired, chunk);
    }

    fn push_chunk(&mut self, server_ts_us: i64, samples: Vec<f32>) -> Result<(), SchedulerError> {
        let format = match self.active_format() {
            Some(format) => format,
            None => return Err(SchedulerError::NoStream { server_ts_us }),
        };
        let channels = usize::from(format.channels);
        if !samples.len().is_multiple_of(channels) {
            return Err(SchedulerError::PartialFrame {
                samples: samples.len(),
                channels: format.channels,
            });
        }
        if samples.is_empty() {
            return Ok(());
        }

        self.queued_frames += (samples.len() / channels) as u64;
        // Chunks normally arrive in order, so the search starts at the back.
        let position = self
            .queue
            .iter()
            .rposition(|queued| queued.server_ts_us <= server_ts_us)
            .map_or(0, |index| index + 1);
        self.queue.insert(
            position,
            Chunk {
                server_ts_us,
                samples,
            },
        );
        self.evict_overflow(format);
        Ok(())
    }

    /// Evicts the oldest queued chunks while the queue exceeds its bound,
    /// keeping at least the newest chunk.
    fn evict_overflow(&mut self, format: AudioFormat) {
        let channels = usize::from(format.channels);
        let max_frames = us_to_frames(self.max_buffer_us, format.sample_rate).max(0) as u64;
        while self.queued_frames > max_frames && self.queue.len() > 1 {
            let Some(oldest) = self.queue.pop_front() else {
                break;
            };
            self.queued_frames -= (oldest.samples.len() / channels) as u64;
            self.totals.overflow_chunks_dropped += 1;
            self.retire(oldest);
        }
    }

    fn fill(
        &mut self,
        out: &mut [f32],
        local_time_us: i64,
        clock: &ClockSnapshot,
        expected: Option<&AudioFormat>,
    ) -> FillReport {
        out.fill(0.0);
        let mut report = FillReport {
            clock_converged: clock.converged && clock.is_valid(),
            format: self.active_format(),
            stream_generation: self.generation,
            ..FillReport::default()
        };

        let Some(format) = report.format else {
            self.playback_state = PlaybackState::Idle;
            report.state = PlaybackState::Idle;
            return report;
        };
        let channels = usize::from(format.channels);
        let frames = out.len() / channels;
        let format_matches = expected.is_none_or(|expected| *expected == format);
        if !format_matches || !out.len().is_multiple_of(channels) || !report.clock_converged {
            self.release_anchor();
            report.counters.silence_frames = frames as u64;
            self.finish_fill(PlaybackState::Buffering, &mut report);
            return report;
        }

        let server_time_us = clock.local_to_server(local_time_us - self.static_delay_us);
        if self.cursor.is_some() {
            self.correct_position(server_time_us, format.sample_rate, &mut report);
        } else if !self.anchor(server_time_us, frames, format, &mut report) {
            report.counters.silence_frames = frames as u64;
            self.finish_fill(PlaybackState::Buffering, &mut report);
            return report;
        }

        self.render(out, format, &mut report);
        let starved = self.cursor.as_ref().is_some_and(|cursor| cursor.starved);
        let state = if starved {
            PlaybackState::Buffering
        } else {
            PlaybackState::Playing
        };
        self.finish_fill(state, &mut report);
        report
    }

    fn finish_fill(&mut self, state: PlaybackState, report: &mut FillReport) {
        self.playback_state = state;
        report.state = state;
        self.totals.add(&report.counters);
    }

    /// Drops the anchor but keeps the chunk being played, so the next anchor
    /// skips whatever of it is late by then.
    fn release_anchor(&mut self) {
        if self.cursor.take().is_none() {
            return;
        }
        if let Some(current) = self.current.take() {
            let channels = self.format.map_or(1, |format| usize::from(format.channels));
            self.queued_frames += (current.samples.len() / channels) as u64;
            self.queue.push_front(current);
        }
    }

    /// Anchors playback on the first queued chunk that reaches into a buffer
    /// of `frames` frames starting at `server_time_us`, dropping chunks that
    /// end before it. Returns false when no chunk reaches into the buffer.
    fn anchor(
        &mut self,
        server_time_us: i64,
        frames: usize,
        format: AudioFormat,
        report: &mut FillReport,
    ) -> bool {
        let channels = usize::from(format.channels);
        while let Some(front) = self.queue.front() {
            let offset = us_to_frames(front.server_ts_us - server_time_us, format.sample_rate);
            let chunk_frames = (front.samples.len() / channels) as i64;
            if offset >= frames as i64 {
                return false;
            }
            let Some(chunk) = self.queue.pop_front() else {
                break;
            };
            self.queued_frames -= chunk_frames as u64;
            if offset + chunk_frames <= 0 {
                if self.anchored_once {
                    report.counters.late_chunks_dropped += 1;
                } else {
                    report.counters.chunks_skipped_at_start += 1;
                }
                self.retire(chunk);
                continue;
            }
            self.anchored_once = true;
            // A negative offset means the chunk started before the buffer, so
            // its first -offset frames are late and skipped.
            self.cursor = Some(Cursor {
                ref_ts_us: chunk.server_ts_us,
                next_frame: -offset,
                available_from: (-offset).max(0),
                starved: false,
                fills_over_threshold: 0,
                smoothed_error_frames: 0.0,
                correction: Correction::None,
            });
            self.current = Some(chunk);
            return true;
        }
        false
    }

    /// Compares the anchored position with the clock-mapped one. Plans a
    /// one-frame correction for small errors and re-anchors after a
    /// sustained error above the threshold.
    fn correct_position(&mut self, server_time_us: i64, sample_rate: u32, report: &mut FillReport) {
        let drift_correction = self.drift_correction;
        let Some(cursor) = self.cursor.as_mut() else {
            return;
        };
        cursor.correction = Correction::None;
        let clock_frame = us_to_frames(server_time_us - cursor.ref_ts_us, sample_rate);
        let exact_clock_frame =
            (server_time_us - cursor.ref_ts_us) as f64 * f64::from(sample_rate) / 1e6;
        let error_frames = cursor.next_frame as f64 - exact_clock_frame;
        let error_us = frames_to_us(cursor.next_frame - clock_frame, sample_rate);
        if error_us.abs() <= REANCHOR_THRESHOLD_US {
            cursor.fills_over_threshold = 0;
            report.position_error_frames = Some(error_frames);
            if drift_correction && !cursor.starved {
                cursor.plan_correction(error_frames);
            }
            return;
        }
        if cursor.starved {
            // Nothing audible depends on the position of a starved cursor, so
            // it follows the clock at once and no re-anchor is counted.
            cursor.next_frame = clock_frame;
            cursor.fills_over_threshold = 0;
            return;
        }
        cursor.fills_over_threshold += 1;
        if cursor.fills_over_threshold < REANCHOR_CONFIRM_FILLS {
            return;
        }
        // Moving forward skips frames. Moving back lands on frames that were
        // already played, which `available_from` turns into silence.
        cursor.next_frame = clock_frame;
        cursor.fills_over_threshold = 0;
        cursor.smoothed_error_frames = 0.0;
        report.counters.reanchors += 1;
    }

    /// Plays from the cursor into `out`, one run of silence or samples at a
    /// time, and applies the planned one-frame correction at the end.
    fn render(&mut self, out: &mut [f32], format: AudioFormat, report: &mut FillReport) {
        let channels = usize::from(format.channels);
        let correction = self
            .cursor
            .as_ref()
            .map_or(Correction::None, |cursor| cursor.correction);
        let mut frames = out.len() / channels;
        if correction == Correction::Insert && frames >= 2 {
            // The last frame repeats the one before it, so one frame less
            // is taken from the chunks.
            frames -= 1;
        }
        self.render_frames(&mut out[..frames * channels], format, report);
        match correction {
            Correction::Insert if frames < out.len() / channels => {
                out.copy_within(
                    (frames - 1) * channels..frames * channels,
                    frames * channels,
                );
                report.counters.frames_inserted += 1;
            }
            Correction::Drop => {
                if let Some(cursor) = self.cursor.as_mut() {
                    if !cursor.starved {
                        cursor.next_frame += 1;
                        report.counters.frames_dropped += 1;
                    }
                }
            }
            _ => {}
        }
        if let Some(cursor) = self.cursor.as_mut() {
            cursor.correction = Correction::None;
        }
    }

    fn render_frames(&mut self, out: &mut [f32], format: AudioFormat, report: &mut FillReport) {
        let channels = usize::from(format.channels);
        let frames = out.len() / channels;
        let mut written = 0;
        while written < frames {
            self.advance_chunks(format, report);
            let remaining = frames - written;
            let run = match self.current.as_ref() {
                None => self.play_starved(remaining, report),
                Some(_) => {
                    self.play_current(&mut out[written * channels..], format, written, report)
                }
            };
            written += run;
        }
    }

    /// Makes the chunk under the cursor current, rebasing the cursor from
    /// one chunk to the next by their timestamp distance in whole frames.
    fn advance_chunks(&mut self, format: AudioFormat, report: &mut FillReport) {
        let channels = usize::from(format.channels);
        let Some(cursor) = self.cursor.as_mut() else {
            return;
        };
        loop {
            if let Some(current) = self.current.as_ref() {
                if cursor.next_frame < (current.samples.len() / channels) as i64 {
                    return;
                }
            }
            let Some(next) = self.queue.pop_front() else {
                // The current chunk stays the reference, so a late chunk still
                // joins at the right frame.
                if let Some(finished) = self.current.take() {
                    retire_into(&mut self.retired, finished);
                }
                return;
            };
            let next_frames = (next.samples.len() / channels) as i64;
            self.queued_frames -= next_frames as u64;
            let distance = us_to_frames(next.server_ts_us - cursor.ref_ts_us, format.sample_rate);
            cursor.ref_ts_us = next.server_ts_us;
            cursor.next_frame -= distance;
            cursor.available_from = (cursor.available_from - distance).max(0);
            let skipped = cursor.next_frame >= next_frames;
            if let Some(finished) = self.current.replace(next) {
                retire_into(&mut self.retired, finished);
            }
            if skipped {
                report.counters.late_chunks_dropped += 1;
            }
        }
    }

    /// Plays silence for the rest of the buffer because nothing is queued,
    /// counting an underrun when the queue has just run dry.
    fn play_starved(&mut self, remaining: usize, report: &mut FillReport) -> usize {
        if let Some(cursor) = self.cursor.as_mut() {
            if !cursor.starved {
                cursor.starved = true;
                report.counters.underruns += 1;
            }
            cursor.next_frame += remaining as i64;
        }
        report.counters.silence_frames += remaining as u64;
        remaining
    }

    /// Plays one run from the current chunk into the start of `out`: silence
    /// up to the first available frame, or samples up to the chunk's end.
    /// `out_frame` is the run's frame index in the whole buffer. Returns the
    /// frames written.
    fn play_current(
        &mut self,
        out: &mut [f32],
        format: AudioFormat,
        out_frame: usize,
        report: &mut FillReport,
    ) -> usize {
        let channels = usize::from(format.channels);
        let remaining = out.len() / channels;
        let (Some(cursor), Some(current)) = (self.cursor.as_mut(), self.current.as_ref()) else {
            return remaining;
        };
        cursor.starved = false;
        let chunk_frames = (current.samples.len() / channels) as i64;

        let first_available = cursor.available_from.max(0);
        if cursor.next_frame < first_available {
            let run = ((first_available - cursor.next_frame) as usize).min(remaining);
            cursor.next_frame += run as i64;
            report.counters.silence_frames += run as u64;
            return run;
        }

        let start = cursor.next_frame as usize;
        let run = ((chunk_frames - cursor.next_frame) as usize).min(remaining);
        let source = &current.samples[start * channels..(start + run) * channels];
        let target = &mut out[..run * channels];
        if self.muted || self.gain == 0.0 {
            target.fill(0.0);
        } else if self.gain == 1.0 {
            target.copy_from_slice(source);
        } else {
            for (sample, value) in target.iter_mut().zip(source) {
                *sample = value * self.gain;
            }
        }

        if report.first_audio_frame.is_none() {
            report.first_audio_frame = Some(out_frame);
            let offset_us = frames_to_us(cursor.next_frame, format.sample_rate);
            report.first_audio_server_us = Some(cursor.ref_ts_us + offset_us);
        }
        cursor.next_frame += run as i64;
        cursor.available_from = cursor.next_frame;
        report.counters.frames_played += run as u64;
        run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;
    const CHANNELS: usize = 2;
    /// Server time minus local time in the test clock.
    const OFFSET_US: i64 = 1_000_000;

    fn format() -> AudioFormat {
        AudioFormat::pcm(RATE, CHANNELS as u16, 16)
    }

    fn clock_with_offset(offset_us: i64) -> ClockSnapshot {
        ClockSnapshot {
            offset_us: offset_us as f64,
            samples: 10,
            converged: true,
            ..ClockSnapshot::default()
        }
    }

    fn clock() -> ClockSnapshot {
        clock_with_offset(OFFSET_US)
    }

    /// Local time at which server time `server_us` plays with the test clock.
    fn local(server_us: i64) -> i64 {
        server_us - OFFSET_US
    }

    /// Distinct nonzero samples, so any shift, drop or repeat shows.
    fn ramp(first_sample: usize, frames: usize) -> Vec<f32> {
        (first_sample..first_sample + frames * CHANNELS)
            .map(|index| ((index % 60_000) as f32 + 1.0) / 65_536.0)
            .collect()
    }

    fn started() -> Scheduler {
        let scheduler = Scheduler::new();
        scheduler.start_stream(format()).unwrap();
        scheduler
    }

    /// Fills `blocks` buffers of `block_frames` frames back to back from
    /// local time `start_us` and returns the concatenated output and the
    /// per-fill reports.
    fn play(
        scheduler: &Scheduler,
        clock: &ClockSnapshot,
        start_us: i64,
        blocks: usize,
        block_frames: usize,
    ) -> (Vec<f32>, Vec<FillReport>) {
        let mut output = Vec::new();
        let mut reports = Vec::new();
        let mut buffer = vec![0.0; block_frames * CHANNELS];
        for block in 0..blocks {
            let offset_us = frames_to_us((block * block_frames) as i64, RATE);
            reports.push(scheduler.fill(&mut buffer, start_us + offset_us, clock));
            output.extend_from_slice(&buffer);
        }
        (output, reports)
    }

    fn total(reports: &[FillReport]) -> PlaybackCounters {
        let mut counters = PlaybackCounters::default();
        for report in reports {
            counters.add(&report.counters);
        }
        counters
    }

    /// Asserts equal sample slices, naming the first differing index instead
    /// of printing both slices.
    #[track_caller]
    fn assert_samples_eq(actual: &[f32], expected: &[f32]) {
        assert_eq!(actual.len(), expected.len(), "sample counts differ");
        let mismatch = actual
            .iter()
            .zip(expected)
            .position(|(a, e)| a.to_bits() != e.to_bits());
        if let Some(index) = mismatch {
            panic!(
                "sample {index} (frame {}) is {} but expected {}",
                index / CHANNELS,
                actual[index],
                expected[index]
            );
        }
    }

    fn frames(output: &[f32], first: usize, count: usize) -> &[f32] {
        &output[first * CHANNELS..(first + count) * CHANNELS]
    }

    /// Plays `seconds` of a contiguous ramp through a card whose sample
    /// clock runs `drift_ppm` off, in 480-frame blocks, and returns the
    /// output with the per-fill reports.
    fn play_drifting(drift_ppm: f64, seconds: usize) -> (Vec<f32>, Vec<FillReport>) {
        let scheduler = Scheduler::with_max_buffer_us(60_000_000);
        scheduler.start_stream(format()).unwrap();
        let chunk_frames = 1_200;
        let chunks = seconds * RATE as usize / chunk_frames + 20;
        for index in 0..chunks {
            let server_us = 100_000 + frames_to_us((index * chunk_frames) as i64, RATE);
            scheduler
                .push_chunk(
                    server_us,
                    ramp(index * chunk_frames * CHANNELS, chunk_frames),
                )
                .unwrap();
        }
        let block_frames = 480;
        let card_rate = f64::from(RATE) * (1.0 + drift_ppm * 1e-6);
        let mut output = Vec::new();
        let mut reports = Vec::new();
        let mut buffer = vec![0.0; block_frames * CHANNELS];
        for block in 0..seconds * 100 {
            let elapsed_us = ((block * block_frames) as f64 * 1e6 / card_rate).round() as i64;
            reports.push(scheduler.fill(&mut buffer, local(100_000) + elapsed_us, &clock()));
            output.extend_from_slice(&buffer);
        }
        (output, reports)
    }

    /// Returns the largest step between consecutive output frames, in
    /// frames of the ramp.
    fn max_ramp_step(output: &[f32]) -> f64 {
        let firsts: Vec<f64> = output
            .chunks(CHANNELS)
            .map(|frame| f64::from(frame[0]) * 65_536.0)
            .collect();
        let mut worst: f64 = 0.0;
        for pair in firsts.windows(2) {
            let mut step = pair[1] - pair[0];
            if step < -1_000.0 {
                // `ramp` wraps after 60 000 samples.
                step += 60_000.0;
            }
            worst = worst.max((step / CHANNELS as f64 - 1.0).abs());
        }
        worst
    }

    #[test]
    fn slow_card_drops_single_frames() {
        let (output, reports) = play_drifting(-200.0, 30);
        let counters = total(&reports);

        // 30 s at 200 ppm is 288 frames behind, caught up one at a time.
        assert!(
            (280..=296).contains(&counters.frames_dropped),
            "{counters:?}"
        );
        assert_eq!(counters.frames_inserted, 0);
        assert_eq!(counters.reanchors, 0);
        let worst = reports
            .iter()
            .filter_map(|r| r.position_error_frames)
            .map(f64::abs)
            .fold(0.0, f64::max);
        assert!(worst < 1.5, "position error reached {worst} frames");
        assert!(
            max_ramp_step(&output) <= 1.0 + 1e-6,
            "a jump of more than one frame"
        );
    }

    #[test]
    fn fast_card_repeats_single_frames() {
        let (output, reports) = play_drifting(150.0, 30);
        let counters = total(&reports);

        // 30 s at 150 ppm is 216 frames ahead.
        assert!(
            (208..=224).contains(&counters.frames_inserted),
            "{counters:?}"
        );
        assert_eq!(counters.frames_dropped, 0);
        assert_eq!(counters.reanchors, 0);
        let worst = reports
            .iter()
            .filter_map(|r| r.position_error_frames)
            .map(f64::abs)
            .fold(0.0, f64::max);
        assert!(worst < 1.5, "position error reached {worst} frames");
        assert!(
            max_ramp_step(&output) <= 1.0 + 1e-6,
            "a jump of more than one frame"
        );
    }

    #[test]
    fn disabled_correction_keeps_samples() {
        let scheduler = started();
        scheduler.set_drift_correction(false);
        let mut source = Vec::new();
        for index in 0..10 {
            let samples = ramp(source.len(), 480);
            source.extend_from_slice(&samples);
            scheduler
                .push_chunk(2_000_000 + index * 10_000, samples)
                .unwrap();
        }
        play(&scheduler, &clock(), local(2_000_000), 1, 480);

        let shifted = clock_with_offset(OFFSET_US + REANCHOR_THRESHOLD_US - 1_000);
        let (output, reports) = play(&scheduler, &shifted, local(2_010_000), 6, 480);

        let counters = total(&reports);
        assert_eq!(counters.frames_dropped, 0);
        assert_eq!(counters.reanchors, 0);
        assert_samples_eq(&output, frames(&source, 480, 2880));
    }

    #[test]
    fn exact_card_needs_no_correction() {
        let (_, reports) = play_drifting(0.0, 10);
        let counters = total(&reports);

        assert_eq!(counters.frames_inserted, 0);
        assert_eq!(counters.frames_dropped, 0);
    }

    #[test]
    fn contiguous_chunks_sample_identical() {
        let scheduler = started();
        // 1024-frame chunks last 21333.3 us, so their rounded timestamps do
        // not add up exactly and only the frame rounding keeps them joined.
        let chunk_frames = 1024;
        let base_us = 5_000_000;
        let mut source = Vec::new();
        for index in 0..20 {
            let ts = base_us + frames_to_us((index * chunk_frames) as i64, RATE);
            let samples = ramp(source.len(), chunk_frames);
            source.extend_from_slice(&samples);
            scheduler.push_chunk(ts, samples).unwrap();
        }

        let lead_frames = 480;
        let start = local(base_us) - frames_to_us(lead_frames as i64, RATE);
        let (output, reports) = play(&scheduler, &clock(), start, 90, 256);

        assert!(output[..lead_frames * CHANNELS].iter().all(|&s| s == 0.0));
        assert_samples_eq(frames(&output, lead_frames, 20 * chunk_frames), &source[..]);
        let counters = total(&reports);
        assert_eq!(counters.frames_played, (20 * chunk_frames) as u64);
        assert_eq!(counters.late_chunks_dropped, 0);
        assert_eq!(counters.reanchors, 0);
        assert_eq!(reports[0].first_audio_frame, None);
        assert_eq!(reports[1].first_audio_frame, Some(lead_frames - 256));
        assert_eq!(reports[1].first_audio_server_us, Some(base_us));
        assert_eq!(reports[1].state, PlaybackState::Playing);
    }

    #[test]
    fn expired_chunk_before_start_skipped() {
        let scheduler = started();
        let late = ramp(0, 480);
        let on_time = ramp(960, 480);
        scheduler.push_chunk(1_000_000, late).unwrap();
        scheduler.push_chunk(2_000_000, on_time.clone()).unwrap();

        let (output, reports) = play(&scheduler, &clock(), local(2_000_000), 1, 480);

        // Nothing played yet, so the expired chunk is not a late arrival.
        assert_eq!(reports[0].counters.chunks_skipped_at_start, 1);
        assert_eq!(reports[0].counters.late_chunks_dropped, 0);
        assert_samples_eq(&output, &on_time);
    }

    #[test]
    fn partly_late_chunk_skips_late_frames() {
        let scheduler = started();
        let chunk = ramp(0, 960);
        scheduler.push_chunk(2_000_000, chunk.clone()).unwrap();

        // The buffer starts 10 ms (480 frames) into the chunk.
        let (output, reports) = play(&scheduler, &clock(), local(2_010_000), 1, 480);

        assert_eq!(reports[0].counters.late_chunks_dropped, 0);
        assert_samples_eq(&output, frames(&chunk, 480, 480));
        assert_eq!(reports[0].first_audio_server_us, Some(2_010_000));
    }

    #[test]
    fn gap_plays_exact_silence() {
        let scheduler = started();
        let first = ramp(0, 480);
        let second = ramp(960, 480);
        scheduler.push_chunk(2_000_000, first.clone()).unwrap();
        // The second chunk starts 10 ms (480 frames) after the first ends.
        scheduler.push_chunk(2_020_000, second.clone()).unwrap();

        let (output, reports) = play(&scheduler, &clock(), local(2_000_000), 3, 480);

        assert_samples_eq(frames(&output, 0, 480), &first[..]);
        assert!(frames(&output, 480, 480).iter().all(|&s| s == 0.0));
        assert_samples_eq(frames(&output, 960, 480), &second[..]);
        let counters = total(&reports);
        assert_eq!(counters.silence_frames, 480);
        assert_eq!(counters.underruns, 0);
        assert_eq!(reports[1].state, PlaybackState::Playing);
    }

    #[test]
    fn static_delay_shifts_output() {
        let scheduler = started();
        scheduler.set_static_delay_us(5_000);
        let chunk = ramp(0, 480);
        scheduler.push_chunk(2_000_000, chunk.clone()).unwrap();

        let (output, _) = play(&scheduler, &clock(), local(2_000_000), 2, 480);

        // 5 ms at 48 kHz is 240 frames.
        assert!(frames(&output, 0, 240).iter().all(|&s| s == 0.0));
        assert_samples_eq(frames(&output, 240, 480), &chunk[..]);
    }

    #[test]
    fn static_delay_change_while_playing() {
        let scheduler = started();
        let chunk = ramp(0, 1920);
        scheduler.push_chunk(2_000_000, chunk.clone()).unwrap();
        let (first, _) = play(&scheduler, &clock(), local(2_000_000), 1, 480);
        assert_samples_eq(&first, frames(&chunk, 0, 480));

        scheduler.set_static_delay_us(5_000);
        let (longer, reports) = play(&scheduler, &clock(), local(2_010_000), 1, 480);
        assert!(frames(&longer, 0, 240).iter().all(|&s| s == 0.0));
        assert_samples_eq(frames(&longer, 240, 240), frames(&chunk, 480, 240));
        assert_eq!(reports[0].counters.reanchors, 0);

        scheduler.set_static_delay_us(0);
        let (shorter, _) = play(&scheduler, &clock(), local(2_020_000), 1, 480);
        assert_samples_eq(&shorter, frames(&chunk, 960, 480));
    }

    #[test]
    fn volume_and_mute() {
        let chunk = ramp(0, 480);
        let cases: [(u8, bool, f32); 4] = [
            (100, false, 1.0),
            (50, false, 0.125),
            (100, true, 0.0),
            (0, false, 0.0),
        ];
        for (volume, muted, gain) in cases {
            let scheduler = started();
            scheduler.set_volume(volume);
            scheduler.set_muted(muted);
            scheduler.push_chunk(2_000_000, chunk.clone()).unwrap();

            let (output, reports) = play(&scheduler, &clock(), local(2_000_000), 1, 480);

            let expected: Vec<f32> = chunk.iter().map(|sample| sample * gain).collect();
            assert_samples_eq(&output, &expected);
            assert_eq!(
                reports[0].counters.frames_played, 480,
                "volume {volume} muted {muted}"
            );
        }
    }

    #[test]
    fn volume_curve() {
        assert_eq!(volume_to_gain(100), 1.0);
        assert_eq!(volume_to_gain(0), 0.0);
        assert_eq!(volume_to_gain(50), 0.125);
        assert_eq!(volume_to_gain(250), 1.0);
        assert!(volume_to_gain(10) < volume_to_gain(11));
    }

    #[test]
    fn clear_drops_buffer_and_continues() {
        let scheduler = started();
        scheduler.push_chunk(2_000_000, ramp(0, 960)).unwrap();
        let (_, reports) = play(&scheduler, &clock(), local(2_000_000), 1, 480);
        assert_eq!(reports[0].state, PlaybackState::Playing);

        scheduler.clear();
        assert_eq!(scheduler.status().state, PlaybackState::Buffering);
        assert_eq!(scheduler.status().buffered_us, 0);
        let later = ramp(5_000, 480);
        scheduler.push_chunk(2_020_000, later.clone()).unwrap();
        let (output, reports) = play(&scheduler, &clock(), local(2_010_000), 2, 480);

        assert!(frames(&output, 0, 480).iter().all(|&s| s == 0.0));
        assert_samples_eq(frames(&output, 480, 480), &later[..]);
        assert_eq!(reports[1].stream_generation, 1);
    }

    #[test]
    fn end_stream_goes_idle() {
        let scheduler = started();
        scheduler.push_chunk(2_000_000, ramp(0, 960)).unwrap();
        play(&scheduler, &clock(), local(2_000_000), 1, 480);

        scheduler.end_stream();
        let (output, reports) = play(&scheduler, &clock(), local(2_010_000), 1, 480);

        assert!(output.iter().all(|&s| s == 0.0));
        assert_eq!(reports[0].state, PlaybackState::Idle);
        assert_eq!(reports[0].format, None);
        assert_eq!(
            scheduler.push_chunk(2_020_000, ramp(0, 480)),
            Err(SchedulerError::NoStream {
                server_ts_us: 2_020_000
            })
        );
        scheduler.start_stream(format()).unwrap();
        assert_eq!(scheduler.status().stream_generation, 2);
    }

    #[test]
    fn same_format_restart_keeps_buffer() {
        let scheduler = started();
        scheduler.push_chunk(2_000_000, ramp(0, 480)).unwrap();
        scheduler.start_stream(format()).unwrap();
        assert_eq!(scheduler.status().buffered_us, 10_000);
        assert_eq!(scheduler.status().stream_generation, 1);

        scheduler
            .start_stream(AudioFormat::pcm(44_100, 2, 16))
            .unwrap();
        assert_eq!(scheduler.status().buffered_us, 0);
        assert_eq!(scheduler.status().stream_generation, 2);
    }

    #[test]
    fn clock_jump_forward_reanchors() {
        let scheduler = started();
        let chunk_frames = 480;
        let mut source = Vec::new();
        for index in 0..20 {
            let samples = ramp(source.len(), chunk_frames);
            source.extend_from_slice(&samples);
            scheduler
                .push_chunk(2_000_000 + index * 10_000, samples)
                .unwrap();
        }
        play(&scheduler, &clock(), local(2_000_000), 2, 480);

        // The server clock jumps 50 ms ahead, so the content for local time t
        // is now 50 ms (2400 frames) further on.
        let jumped = clock_with_offset(OFFSET_US + 50_000);
        let start = local(2_020_000);
        let (output, reports) = play(&scheduler, &jumped, start, 4, 480);

        let counters = total(&reports);
        assert_eq!(counters.reanchors, 1);
        assert_eq!(reports[2].counters.reanchors, 1);
        // The first fills after the jump still play contiguously.
        assert_samples_eq(frames(&output, 0, 960), frames(&source, 960, 960));
        // The third fill re-anchors on the clock: local 2_040_000 is server
        // 2_090_000, frame 4320 of the source.
        assert_samples_eq(frames(&output, 960, 480), frames(&source, 4320, 480));
        // Chunks from frame 1920 up to frame 4320 were skipped.
        assert_eq!(counters.late_chunks_dropped, 5);
    }

    #[test]
    fn clock_jump_back_inserts_silence() {
        let scheduler = started();
        let mut source = Vec::new();
        for index in 0..20 {
            let samples = ramp(source.len(), 480);
            source.extend_from_slice(&samples);
            scheduler
                .push_chunk(2_000_000 + index * 10_000, samples)
                .unwrap();
        }
        play(&scheduler, &clock(), local(2_000_000), 2, 480);

        let jumped = clock_with_offset(OFFSET_US - 20_000);
        let (output, reports) = play(&scheduler, &jumped, local(2_020_000), 5, 480);

        assert_eq!(total(&reports).reanchors, 1);
        assert_samples_eq(frames(&output, 0, 960), frames(&source, 960, 960));
        // After two fills the cursor is at frame 1920, but the clock maps the
        // third fill to frame 960 (server 2_020_000), so 960 frames of
        // silence play before the cursor's frame.
        assert!(frames(&output, 960, 960).iter().all(|&s| s == 0.0));
        assert_eq!(reports[3].counters.silence_frames, 480);
        assert_samples_eq(frames(&output, 1920, 480), frames(&source, 1920, 480));
        assert_eq!(reports[4].first_audio_server_us, Some(2_040_000));
    }

    #[test]
    fn small_clock_error_corrected_frame_by_frame() {
        let scheduler = started();
        let mut source = Vec::new();
        for index in 0..10 {
            let samples = ramp(source.len(), 480);
            source.extend_from_slice(&samples);
            scheduler
                .push_chunk(2_000_000 + index * 10_000, samples)
                .unwrap();
        }
        play(&scheduler, &clock(), local(2_000_000), 1, 480);

        let shifted = clock_with_offset(OFFSET_US + REANCHOR_THRESHOLD_US - 1_000);
        let (output, reports) = play(&scheduler, &shifted, local(2_010_000), 6, 480);

        // Below the re-anchor threshold, each fill skips one frame at its
        // end and plays the rest unchanged.
        let counters = total(&reports);
        assert_eq!(counters.reanchors, 0);
        assert_eq!(counters.frames_dropped, 6);
        assert_samples_eq(frames(&output, 0, 480), frames(&source, 480, 480));
        assert_samples_eq(frames(&output, 480, 480), frames(&source, 961, 480));
        assert!(
            max_ramp_step(&output) <= 1.0 + 1e-6,
            "a jump of more than one frame"
        );
    }

    #[test]
    fn underrun_counted_once_then_joins() {
        let scheduler = started();
        let first = ramp(0, 480);
        scheduler.push_chunk(2_000_000, first.clone()).unwrap();
        let (output, reports) = play(&scheduler, &clock(), local(2_000_000), 3, 480);
        assert_samples_eq(frames(&output, 0, 480), &first[..]);
        assert_eq!(total(&reports).underruns, 1);
        assert_eq!(reports[2].state, PlaybackState::Buffering);
        assert!(
            scheduler.status().underrun,
            "an underrun is reported while starved"
        );

        // The next chunk arrives 20 ms after its start time: it joins at its
        // frame position, so its first 960 frames are skipped.
        let late = ramp(960, 1440);
        scheduler.push_chunk(2_010_000, late.clone()).unwrap();
        let (output, reports) = play(&scheduler, &clock(), local(2_030_000), 1, 480);

        assert_samples_eq(&output, frames(&late, 960, 480));
        assert_eq!(reports[0].state, PlaybackState::Playing);
        assert_eq!(reports[0].counters.underruns, 0);
        assert!(
            !scheduler.status().underrun,
            "the underrun ends once audio plays"
        );
    }

    #[test]
    fn starved_cursor_follows_clock() {
        let scheduler = started();
        scheduler.push_chunk(2_000_000, ramp(0, 480)).unwrap();
        play(&scheduler, &clock(), local(2_000_000), 2, 480);

        // The output skips 100 ms while starved, then a chunk arrives for the
        // new position.
        let next = ramp(960, 480);
        scheduler.push_chunk(2_120_000, next.clone()).unwrap();
        let (output, reports) = play(&scheduler, &clock(), local(2_120_000), 1, 480);

        assert_samples_eq(&output, &next);
        assert_eq!(reports[0].counters.reanchors, 0);
    }

    #[test]
    fn buffer_bound_evicts_oldest() {
        let scheduler = Scheduler::with_max_buffer_us(50_000);
        scheduler.start_stream(format()).unwrap();
        for index in 0..10 {
            scheduler
                .push_chunk(2_000_000 + index * 10_000, ramp(0, 480))
                .unwrap();
        }

        let status = scheduler.status();
        assert_eq!(status.buffered_us, 50_000);
        assert_eq!(status.totals.overflow_chunks_dropped, 5);

        // The oldest remaining chunk is the sixth.
        let (_, reports) = play(&scheduler, &clock(), local(2_000_000), 6, 480);
        assert_eq!(reports[4].first_audio_server_us, None);
        assert_eq!(reports[5].first_audio_server_us, Some(2_050_000));
    }

    #[test]
    fn unconverged_clock_plays_silence() {
        let scheduler = started();
        scheduler.push_chunk(2_000_000, ramp(0, 480)).unwrap();
        let unconverged = ClockSnapshot {
            converged: false,
            ..clock()
        };

        let (output, reports) = play(&scheduler, &unconverged, local(2_000_000), 1, 480);

        assert!(output.iter().all(|&s| s == 0.0));
        assert!(!reports[0].clock_converged);
        assert_eq!(reports[0].state, PlaybackState::Buffering);
        assert_eq!(reports[0].counters.silence_frames, 480);
        assert_eq!(scheduler.status().buffered_us, 10_000);
    }

    #[test]
    fn fill_expecting_other_format_is_silent() {
        let scheduler = started();
        scheduler.push_chunk(2_000_000, ramp(0, 480)).unwrap();
        let mut buffer = vec![1.0; 480 * CHANNELS];
        let other = AudioFormat::pcm(44_100, 2, 16);

        let report = scheduler.fill_expecting(&mut buffer, local(2_000_000), &clock(), &other);

        assert!(buffer.iter().all(|&s| s == 0.0));
        assert_eq!(report.counters.frames_played, 0);
        assert_eq!(scheduler.status().buffered_us, 10_000);
    }

    #[test]
    fn rejects_partial_frames_and_bad_format() {
        let scheduler = started();
        assert_eq!(
            scheduler.push_chunk(0, vec![0.0; 3]),
            Err(SchedulerError::PartialFrame {
                samples: 3,
                channels: 2
            })
        );
        let bad = AudioFormat::pcm(0, 2, 16);
        assert_eq!(
            scheduler.start_stream(bad),
            Err(SchedulerError::InvalidFormat { format: bad })
        );
    }

    #[test]
    fn out_of_order_chunk_sorted() {
        let scheduler = started();
        let first = ramp(0, 480);
        let second = ramp(960, 480);
        scheduler.push_chunk(2_010_000, second.clone()).unwrap();
        scheduler.push_chunk(2_000_000, first.clone()).unwrap();

        let (output, _) = play(&scheduler, &clock(), local(2_000_000), 2, 480);

        assert_samples_eq(frames(&output, 0, 480), &first[..]);
        assert_samples_eq(frames(&output, 480, 480), &second[..]);
    }

    #[test]
    fn frame_rounding() {
        assert_eq!(us_to_frames(10_000, 48_000), 480);
        assert_eq!(us_to_frames(-10_000, 48_000), -480);
        assert_eq!(us_to_frames(21_333, 48_000), 1024);
        assert_eq!(frames_to_us(1024, 48_000), 21_333);
        assert_eq!(frames_to_us(-1, 48_000), -21);
    }
}
