//! One player's stream: the group's timeline in the player's format, sent
//! ahead of time within the player's buffer capacity.
//!
//! Every player has its own channel mapping, resampler and encoder over
//! the group's one timeline, so players in different formats stay in sync.

use std::collections::VecDeque;

use crate::audio::convert::map_channels;
use crate::audio::resample::StreamResampler;
use crate::audio::AudioFormat;
use crate::dialect::Outgoing;
use crate::protocol::{BinaryFrame, BinaryKind};
use crate::session::{SendError, SessionHandle};

use super::encode::{ChunkEncoder, EncodedChunk, EncoderSettings};
use super::program::Program;

/// Most chunks one stream sends per pump, 200 ms of audio. The server
/// pumps every 10 ms, so a stream still fills 20 times faster than real
/// time, and when a program starts every player gets its first chunks
/// before any player gets its whole lead.
const MAX_CHUNKS_PER_PUMP: usize = 10;

/// Audio of one player that has been sent but not yet heard.
struct InFlight {
    end_us: i64,
    bytes: usize,
}

/// An encoded chunk waiting to be sent.
struct OutgoingChunk {
    timestamp_us: i64,
    end_us: i64,
    payload: Vec<u8>,
    /// Source chunk whose encoding produced this chunk, where a format
    /// change restarts when this chunk is still unsent.
    source_seq: u64,
}

pub struct PlayerStream {
    pub format: AudioFormat,
    settings: EncoderSettings,
    resampler: StreamResampler,
    encoder: ChunkEncoder,
    source_channels: u16,
    /// Next source chunk to encode.
    next_seq: u64,
    /// Frames of the player's timeline (at its rate) before the next chunk.
    out_frames: u64,
    /// Encoded chunks waiting for buffer room.
    pending: VecDeque<OutgoingChunk>,
    in_flight: VecDeque<InFlight>,
    in_flight_bytes: usize,
    /// Whether the resampler's and encoder's last frames were sent after
    /// the source ended.
    flushed: bool,
    capacity: usize,
    warned_small_capacity: bool,
    /// Chunks the encoder failed on, each replaced by nothing.
    pub encode_errors: u64,
    /// Chunks sent, for reports.
    pub chunks_sent: u64,
}

impl PlayerStream {
    /// Creates a stream that begins with the first chunk starting at or
    /// after `from_us`.
    pub fn new(
        format: AudioFormat,
        capacity: u64,
        program: &Program,
        from_us: i64,
        settings: EncoderSettings,
    ) -> Result<PlayerStream, String> {
        let (resampler, encoder) = Self::build_pipeline(format, program, settings)?;
        let mut stream = PlayerStream {
            format,
            settings,
            resampler,
            encoder,
            source_channels: program.channels,
            next_seq: 0,
            out_frames: 0,
            pending: VecDeque::new(),
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            flushed: false,
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            warned_small_capacity: false,
            encode_errors: 0,
            chunks_sent: 0,
        };
        stream.seek(program, program.first_seq_from(from_us));
        Ok(stream)
    }

    /// Creates the resampler and encoder that turn the program's audio into
    /// `format`.
    fn build_pipeline(
        format: AudioFormat,
        program: &Program,
        settings: EncoderSettings,
    ) -> Result<(StreamResampler, ChunkEncoder), String> {
        let resampler =
            StreamResampler::new(program.sample_rate, format.sample_rate, format.channels)
                .map_err(|err| {
                    format!(
                        "cannot resample {} Hz to {} Hz: {err}",
                        program.sample_rate, format.sample_rate
                    )
                })?;
        let chunk_frames = (program.chunk_frames() as u64 * u64::from(format.sample_rate)
            / u64::from(program.sample_rate)) as usize;
        let encoder = ChunkEncoder::new(
            format,
            chunk_frames.max(1),
            resampler.is_passthrough(),
            settings,
        )
        .map_err(|err| format!("cannot encode {format}: {err}"))?;
        Ok((resampler, encoder))
    }

    /// Returns the codec header to announce in `stream/start`.
    pub fn codec_header(&self) -> Option<Vec<u8>> {
        self.encoder.header()
    }

    /// Switches the stream to `format` at a chunk boundary. On error the
    /// stream is unchanged.
    ///
    /// When the decoded audio keeps its rate, channels and bit depth, the
    /// first source chunk not yet sent is the first in the new format. The
    /// player then plays on without a gap, and audio already sent stays
    /// counted against its buffer capacity. Otherwise a player has to drop
    /// its buffered audio to change its output format, so the new format
    /// starts with the first chunk at or after `restart_us` and nothing
    /// sent before counts any more.
    pub fn switch_format(
        &mut self,
        format: AudioFormat,
        program: &Program,
        restart_us: i64,
    ) -> Result<(), String> {
        let (resampler, encoder) = Self::build_pipeline(format, program, self.settings)?;
        let keeps_output = (format.sample_rate, format.channels, format.bit_depth)
            == (
                self.format.sample_rate,
                self.format.channels,
                self.format.bit_depth,
            );
        let restart_seq = if keeps_output {
            self.pending
                .front()
                .map_or(self.next_seq, |chunk| chunk.source_seq)
        } else {
            self.in_flight.clear();
            self.in_flight_bytes = 0;
            program.first_seq_from(restart_us)
        };
        self.format = format;
        self.resampler = resampler;
        self.encoder = encoder;
        self.seek(program, restart_seq.max(program.first_kept_seq()));
        Ok(())
    }

    /// Moves the stream to chunk `seq`, restarting the resampler and the
    /// encoder there.
    fn seek(&mut self, program: &Program, seq: u64) {
        self.next_seq = seq;
        let start_frame = program
            .chunk(seq)
            .map_or_else(|| program.produced_frames(), |c| c.start_frame);
        self.out_frames = (start_frame as u128 * self.format.sample_rate as u128
            / program.sample_rate as u128) as u64;
        if let Ok((resampler, encoder)) = Self::build_pipeline(self.format, program, self.settings)
        {
            self.resampler = resampler;
            // A fresh encoder drops input buffered before the jump, and a
            // FLAC header stays the same for the same format.
            self.encoder = encoder;
        }
        self.pending.clear();
        self.flushed = false;
    }

    /// Audio sent and not yet due at `now_us`, in microseconds: what the
    /// player holds if it received everything.
    pub fn sent_ahead_us(&self, now_us: i64) -> i64 {
        self.in_flight
            .back()
            .map_or(0, |last| (last.end_us - now_us).max(0))
    }

    /// Whether every chunk of an exhausted program has been sent.
    pub fn is_drained(&self, program: &Program) -> bool {
        self.pending.is_empty() && self.next_seq >= program.next_seq() && self.flushed
    }

    /// Sends what fits: chunks up to `horizon_us`, bounded by the player's
    /// buffer capacity counted over audio not yet heard at `now_us`.
    pub fn pump(
        &mut self,
        program: &Program,
        handle: &SessionHandle,
        now_us: i64,
        horizon_us: i64,
    ) -> Result<(), SendError> {
        while let Some(front) = self.in_flight.front() {
            if front.end_us > now_us {
                break;
            }
            self.in_flight_bytes -= front.bytes;
            self.in_flight.pop_front();
        }
        if self.pending.is_empty() && self.next_seq < program.first_kept_seq() {
            // The chunks in between were heard before they could be sent.
            self.seek(program, program.first_kept_seq());
        }
        for _ in 0..MAX_CHUNKS_PER_PUMP {
            if self.pending.is_empty() && !self.encode_next(program) {
                return Ok(());
            }
            let Some(chunk) = self.pending.front() else {
                continue;
            };
            let bytes = chunk.payload.len();
            if chunk.timestamp_us > horizon_us
                || !self.has_room(bytes)
                || handle.queued_bytes() > self.queue_limit()
            {
                return Ok(());
            }
            let Some(chunk) = self.pending.pop_front() else {
                return Ok(());
            };
            let frame = BinaryFrame {
                kind: BinaryKind::Audio,
                timestamp_us: chunk.timestamp_us,
                payload: chunk.payload,
            };
            handle.send(Outgoing::Binary(frame))?;
            self.in_flight.push_back(InFlight {
                end_us: chunk.end_us,
                bytes,
            });
            self.in_flight_bytes += bytes;
            self.chunks_sent += 1;
        }
        Ok(())
    }

    /// Bytes that may wait in the session's queue before this stream holds
    /// back: half a second of audio as PCM in the player's format, at least
    /// 1 MiB.
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

    /// Encodes source chunks for this player (channel mapping, resampling,
    /// encoding) until at least one chunk is pending. Returns false when
    /// the program has nothing more to encode yet.
    fn encode_next(&mut self, program: &Program) -> bool {
        while self.pending.is_empty() {
            let source_seq = self.next_seq;
            let mut encoded = Vec::new();
            let result = match program.chunk(self.next_seq) {
                Some(chunk) => {
                    self.next_seq += 1;
                    let mapped = if self.source_channels == self.format.channels {
                        None
                    } else {
                        Some(map_channels(
                            &chunk.samples,
                            self.source_channels,
                            self.format.channels,
                        ))
                    };
                    let input: &[f32] = mapped.as_deref().unwrap_or(&chunk.samples);
                    let samples = self.resampler.process(input);
                    self.encode_samples(&samples, &mut encoded)
                }
                // After the source's last chunk, the resampler and the
                // encoder still hold the tail of the timeline.
                None if program.is_exhausted()
                    && self.next_seq >= program.next_seq()
                    && !self.flushed =>
                {
                    self.flushed = true;
                    let tail = self.resampler.flush();
                    self.encode_samples(&tail, &mut encoded)
                        .and_then(|()| self.encoder.flush(self.out_frames, &mut encoded))
                }
                None => return false,
            };
            if let Err(err) = result {
                // The chunk's audio is lost for this player only; the
                // encoders leave their state usable for the next chunk.
                self.encode_errors += 1;
                tracing::error!(format = %self.format, seq = source_seq, cause = %err, "encoding a chunk failed; skipping it");
            }
            for chunk in encoded {
                self.queue_encoded(program, chunk, source_seq);
            }
        }
        true
    }

    /// Encodes resampled samples that continue the player's timeline.
    fn encode_samples(
        &mut self,
        samples: &[f32],
        out: &mut Vec<EncodedChunk>,
    ) -> Result<(), crate::audio::CodecError> {
        let frames = samples.len() / usize::from(self.format.channels);
        if frames == 0 {
            // A resampler may hold back a whole small chunk.
            return Ok(());
        }
        let start_frame = self.out_frames;
        self.out_frames += frames as u64;
        self.encoder.encode(samples, start_frame, out)
    }

    /// Stamps an encoded chunk on the server clock and queues it.
    fn queue_encoded(&mut self, program: &Program, chunk: EncodedChunk, source_seq: u64) {
        let start_us = program.start_us() + self.format.frames_to_us(chunk.start_frame);
        let end_us = program.start_us()
            + self
                .format
                .frames_to_us(chunk.start_frame + chunk.frames as u64);
        self.pending.push_back(OutgoingChunk {
            timestamp_us: start_us - self.encoder.delay_us(),
            end_us,
            payload: chunk.payload,
            source_seq,
        });
    }
}
