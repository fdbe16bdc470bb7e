//! One player's stream: the group's timeline in the player's format, sent
//! ahead of time within the player's buffer capacity.

use std::collections::VecDeque;

use crate::audio::convert::{encode_pcm, map_channels};
use crate::audio::resample::StreamResampler;
use crate::audio::AudioFormat;
use crate::dialect::Outgoing;
use crate::protocol::{BinaryFrame, BinaryKind};
use crate::session::{SendError, SessionHandle};

use super::program::Program;

/// Audio of one player that has been sent but not yet heard.
struct InFlight {
    end_us: i64,
    bytes: usize,
}

pub struct PlayerStream {
    pub format: AudioFormat,
    resampler: StreamResampler,
    source_channels: u16,
    /// Next source chunk to encode.
    next_seq: u64,
    /// Frames of the player's timeline (at its rate) before the next chunk.
    out_frames: u64,
    /// An encoded chunk waiting for buffer room.
    pending: Option<(i64, Vec<u8>, i64)>,
    in_flight: VecDeque<InFlight>,
    in_flight_bytes: usize,
    /// Whether the resampler's last frames were sent after the source ended.
    flushed: bool,
    capacity: usize,
    warned_small_capacity: bool,
    /// Chunks sent, for reports.
    pub chunks_sent: u64,
}

impl PlayerStream {
    /// Creates a stream that begins with the first chunk starting at or
    /// after `from_us`.
    pub fn new(format: AudioFormat, capacity: u64, program: &Program, from_us: i64) -> Result<PlayerStream, String> {
        let resampler = StreamResampler::new(program.sample_rate, format.sample_rate, format.channels)
            .map_err(|err| format!("cannot resample {} Hz to {} Hz: {err}", program.sample_rate, format.sample_rate))?;
        let mut stream = PlayerStream {
            format,
            resampler,
            source_channels: program.channels,
            next_seq: 0,
            out_frames: 0,
            pending: None,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            flushed: false,
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            warned_small_capacity: false,
            chunks_sent: 0,
        };
        stream.seek(program, program.first_seq_from(from_us));
        Ok(stream)
    }

    /// Moves the stream to chunk `seq`, restarting the resampler there.
    fn seek(&mut self, program: &Program, seq: u64) {
        self.next_seq = seq;
        let start_frame = program.chunk(seq).map_or_else(|| program.produced_frames(), |c| c.start_frame);
        self.out_frames = (start_frame as u128 * self.format.sample_rate as u128 / program.sample_rate as u128) as u64;
        if !self.resampler.is_passthrough() {
            if let Ok(fresh) = StreamResampler::new(program.sample_rate, self.format.sample_rate, self.format.channels) {
                self.resampler = fresh;
            }
        }
        self.pending = None;
        self.flushed = false;
    }

    /// Whether every chunk of an exhausted program has been sent.
    pub fn is_drained(&self, program: &Program) -> bool {
        self.pending.is_none() && self.next_seq >= program.next_seq() && (self.flushed || self.resampler.is_passthrough())
    }

    /// Sends what fits: chunks up to `horizon_us`, bounded by the player's
    /// buffer capacity counted over audio not yet heard at `now_us`.
    pub fn pump(&mut self, program: &Program, handle: &SessionHandle, now_us: i64, horizon_us: i64) -> Result<(), SendError> {
        while let Some(front) = self.in_flight.front() {
            if front.end_us > now_us {
                break;
            }
            self.in_flight_bytes -= front.bytes;
            self.in_flight.pop_front();
        }
        if self.pending.is_none() && self.next_seq < program.first_kept_seq() {
            // The chunks in between were heard before they could be sent.
            self.seek(program, program.first_kept_seq());
        }
        loop {
            if self.pending.is_none() {
                self.pending = self.encode_next(program);
            }
            let Some((timestamp_us, payload, end_us)) = self.pending.take() else {
                return Ok(());
            };
            if timestamp_us > horizon_us || !self.has_room(payload.len()) || handle.queued_bytes() > self.queue_limit() {
                self.pending = Some((timestamp_us, payload, end_us));
                return Ok(());
            }
            let bytes = payload.len();
            let frame = BinaryFrame {
                kind: BinaryKind::Audio,
                timestamp_us,
                payload,
            };
            handle.send(Outgoing::Binary(frame))?;
            self.in_flight.push_back(InFlight { end_us, bytes });
            self.in_flight_bytes += bytes;
            self.chunks_sent += 1;
        }
    }

    /// Bytes that may wait in the session's queue before this stream holds
    /// back: half a second of audio in the player's format, at least 1 MiB.
    fn queue_limit(&self) -> usize {
        let half_second = self.format.sample_rate as usize * self.format.pcm_frame_bytes() / 2;
        half_second.max(1 << 20)
    }

    fn has_room(&mut self, bytes: usize) -> bool {
        if self.in_flight_bytes + bytes <= self.capacity {
            return true;
        }
        if self.in_flight.is_empty() {
            // The player cannot hold even one chunk. Sending one at a time
            // still lets it play; refusing would leave it silent for good.
            if !self.warned_small_capacity {
                self.warned_small_capacity = true;
                tracing::warn!(
                    buffer_capacity = self.capacity,
                    chunk_bytes = bytes,
                    "player buffer_capacity is smaller than one chunk; sending one chunk at a time"
                );
            }
            return true;
        }
        false
    }

    /// Encodes the next source chunk for this player: channel mapping,
    /// resampling and PCM packing. Returns timestamp, payload and end time.
    fn encode_next(&mut self, program: &Program) -> Option<(i64, Vec<u8>, i64)> {
        let samples = match program.chunk(self.next_seq) {
            Some(chunk) => {
                self.next_seq += 1;
                let mapped = if self.source_channels == self.format.channels {
                    None
                } else {
                    Some(map_channels(&chunk.samples, self.source_channels, self.format.channels))
                };
                let input: &[f32] = mapped.as_deref().unwrap_or(&chunk.samples);
                self.resampler.process(input)
            }
            // After the source's last chunk, the resampler still holds the
            // tail of the timeline.
            None if program.is_exhausted() && self.next_seq >= program.next_seq() && !self.flushed => {
                self.flushed = true;
                self.resampler.flush()
            }
            None => return None,
        };
        let frames = samples.len() / self.format.channels as usize;
        if frames == 0 {
            // A resampler may hold back a whole small chunk; try the next.
            return self.encode_next(program);
        }
        let timestamp_us = program.start_us() + self.format.frames_to_us(self.out_frames);
        self.out_frames += frames as u64;
        let end_us = program.start_us() + self.format.frames_to_us(self.out_frames);
        let mut payload = Vec::with_capacity(frames * self.format.pcm_frame_bytes());
        encode_pcm(&samples, self.format.bit_depth, &mut payload);
        Some((timestamp_us, payload, end_us))
    }
}
