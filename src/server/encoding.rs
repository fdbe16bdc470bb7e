//! One format's encoding of a group's program, shared by every player of
//! the group that streams in that format.
//!
//! Channel mapping, resampling and encoding run once per format, not once
//! per player, so the cost of a group grows with its formats and the cost
//! per player is only copying and sending the encoded chunks.

use std::collections::VecDeque;

use crate::audio::convert::map_channels;
use crate::audio::resample::StreamResampler;
use crate::audio::AudioFormat;
use crate::protocol::{BinaryFrame, BinaryKind};

use super::encode::{ChunkEncoder, EncodedChunk, EncoderSettings};
use super::program::Program;

/// An encoded chunk, stamped on the server clock.
pub struct EncodedAudio {
    pub timestamp_us: i64,
    pub end_us: i64,
    /// The chunk as an audio frame, shared by every player that is sent it.
    pub frame: BinaryFrame,
    /// Source chunk whose encoding produced this chunk.
    pub source_seq: u64,
}

/// The pipeline of one format over a program, and the chunks it encoded
/// that are not yet heard.
pub struct SharedEncoding {
    pub format: AudioFormat,
    settings: EncoderSettings,
    resampler: StreamResampler,
    encoder: ChunkEncoder,
    source_channels: u16,
    /// Next source chunk to encode.
    next_seq: u64,
    /// Frames of the format's timeline (at its rate) before the next chunk.
    out_frames: u64,
    /// Whether the resampler's and encoder's last frames were encoded after
    /// the source ended.
    flushed: bool,
    /// Encoded chunks, oldest first.
    chunks: VecDeque<EncodedAudio>,
    /// Index of `chunks[0]` among every chunk this encoding produced.
    /// Players keep their place as such an index.
    first_index: u64,
    /// Source chunks the encoder failed on, each replaced by nothing.
    pub encode_errors: u64,
}

impl SharedEncoding {
    /// Creates an encoding whose first chunk comes from source chunk `seq`.
    pub fn new(
        format: AudioFormat,
        program: &Program,
        seq: u64,
        settings: EncoderSettings,
    ) -> Result<SharedEncoding, String> {
        let (resampler, encoder) = build_pipeline(format, program, settings)?;
        let mut encoding = SharedEncoding {
            format,
            settings,
            resampler,
            encoder,
            source_channels: program.channels,
            next_seq: 0,
            out_frames: 0,
            flushed: false,
            chunks: VecDeque::new(),
            first_index: 0,
            encode_errors: 0,
        };
        encoding.seek(program, seq);
        Ok(encoding)
    }

    /// Returns the codec header to announce in `stream/start`.
    pub fn codec_header(&self) -> Option<Vec<u8>> {
        self.encoder.header()
    }

    /// Index of the oldest chunk still kept.
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// Index the next encoded chunk gets.
    pub fn end_index(&self) -> u64 {
        self.first_index + self.chunks.len() as u64
    }

    /// Returns whether a player that starts with source chunk `seq` can take
    /// its chunks from this encoding: nothing from `seq` on has been dropped.
    pub fn covers(&self, seq: u64) -> bool {
        let front_seq = self
            .chunks
            .front()
            .map_or(self.next_seq, |chunk| chunk.source_seq);
        front_seq <= seq
    }

    /// Returns the index of the first chunk produced from source chunk
    /// `seq` or later, encoding ahead as needed, or `None` while the
    /// program has not produced that far.
    pub fn index_from_seq(&mut self, seq: u64, program: &Program) -> Option<u64> {
        loop {
            if let Some(position) = self.chunks.iter().position(|c| c.source_seq >= seq) {
                return Some(self.first_index + position as u64);
            }
            if !self.encode_next(program) {
                return None;
            }
        }
    }

    /// Source chunk of the chunk at `index`, or the next source chunk to
    /// encode when that chunk is not encoded yet.
    pub fn source_seq_at(&self, index: u64) -> u64 {
        index
            .checked_sub(self.first_index)
            .and_then(|offset| self.chunks.get(offset as usize))
            .map_or(self.next_seq, |chunk| chunk.source_seq)
    }

    /// Returns the chunk at `index`, encoding ahead as needed, or `None`
    /// while the program has nothing more to encode. An index before
    /// [`first_index`](Self::first_index) also gets `None`.
    pub fn chunk(&mut self, index: u64, program: &Program) -> Option<&EncodedAudio> {
        let offset = index.checked_sub(self.first_index)? as usize;
        while offset >= self.chunks.len() {
            if !self.encode_next(program) {
                return None;
            }
        }
        self.chunks.get(offset)
    }

    /// Returns whether the program is exhausted and a player at `index` has
    /// been sent every chunk.
    pub fn is_drained(&self, index: u64, program: &Program) -> bool {
        index >= self.end_index() && self.next_seq >= program.next_seq() && self.flushed
    }

    /// Drops the chunks of source chunks the program has dropped as heard.
    pub fn discard_heard(&mut self, program: &Program) {
        let first_kept = program.first_kept_seq();
        while self
            .chunks
            .front()
            .is_some_and(|chunk| chunk.source_seq < first_kept)
        {
            self.chunks.pop_front();
            self.first_index += 1;
        }
    }

    /// Moves the encoding to source chunk `seq`, restarting the resampler
    /// and the encoder there. Chunks already encoded stay.
    fn seek(&mut self, program: &Program, seq: u64) {
        self.next_seq = seq;
        let start_frame = program
            .chunk(seq)
            .map_or_else(|| program.produced_frames(), |c| c.start_frame);
        self.out_frames = (start_frame as u128 * self.format.sample_rate as u128
            / program.sample_rate as u128) as u64;
        if let Ok((resampler, encoder)) = build_pipeline(self.format, program, self.settings) {
            self.resampler = resampler;
            // A fresh encoder drops input buffered before the jump, and a
            // FLAC header stays the same for the same format.
            self.encoder = encoder;
        }
        self.flushed = false;
    }

    /// Encodes the next source chunk (channel mapping, resampling,
    /// encoding), or the tail after the source's last chunk. Returns false
    /// when the program has nothing more to encode yet. A resampler may
    /// hold back a whole small chunk, so a call can add no chunk.
    fn encode_next(&mut self, program: &Program) -> bool {
        if self.next_seq < program.first_kept_seq() {
            // The chunks in between were heard before any player needed them.
            self.seek(program, program.first_kept_seq());
        }
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
            // After the source's last chunk, the resampler and the encoder
            // still hold the tail of the timeline.
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
            // The chunk's audio is lost for this format only; the encoders
            // leave their state usable for the next chunk.
            self.encode_errors += 1;
            tracing::error!(format = %self.format, seq = source_seq, cause = %err, "encoding a chunk failed; skipping it");
        }
        for chunk in encoded {
            self.push_encoded(program, chunk, source_seq);
        }
        true
    }

    /// Encodes resampled samples that continue the format's timeline.
    fn encode_samples(
        &mut self,
        samples: &[f32],
        out: &mut Vec<EncodedChunk>,
    ) -> Result<(), crate::audio::CodecError> {
        let frames = samples.len() / usize::from(self.format.channels);
        if frames == 0 {
            return Ok(());
        }
        let start_frame = self.out_frames;
        self.out_frames += frames as u64;
        self.encoder.encode(samples, start_frame, out)
    }

    /// Stamps an encoded chunk on the server clock and keeps it.
    fn push_encoded(&mut self, program: &Program, chunk: EncodedChunk, source_seq: u64) {
        let start_us = program.start_us() + self.format.frames_to_us(chunk.start_frame);
        let end_us = program.start_us()
            + self
                .format
                .frames_to_us(chunk.start_frame + chunk.frames as u64);
        let timestamp_us = start_us - self.encoder.delay_us();
        self.chunks.push_back(EncodedAudio {
            timestamp_us,
            end_us,
            frame: BinaryFrame::with_v1_layout(BinaryKind::Audio, timestamp_us, &chunk.payload),
            source_seq,
        });
    }
}

/// Creates the resampler and encoder that turn the program's audio into
/// `format`.
fn build_pipeline(
    format: AudioFormat,
    program: &Program,
    settings: EncoderSettings,
) -> Result<(StreamResampler, ChunkEncoder), String> {
    let resampler = StreamResampler::new(program.sample_rate, format.sample_rate, format.channels)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::tone::ToneKind;
    use crate::audio::Codec;
    use crate::protocol::RepeatMode;
    use crate::server::queue::{Queue, QueueEntry};

    fn format(codec: Codec) -> AudioFormat {
        AudioFormat {
            codec,
            sample_rate: 48_000,
            channels: 2,
            bit_depth: 16,
        }
    }

    /// Returns a looping sine program starting at 0 µs with its first
    /// second produced.
    fn program() -> Program {
        let mut queue = Queue::new(
            vec![QueueEntry::Tone(ToneKind::Sine)],
            RepeatMode::All,
            false,
        );
        let mut program = Program::start(&mut queue, 0, 0).unwrap();
        program.produce_until(&mut queue, 1_000_000);
        program
    }

    #[test]
    fn late_reader_matches_own_encoding() {
        let program = program();
        let mut shared =
            SharedEncoding::new(format(Codec::Pcm), &program, 0, Default::default()).unwrap();
        for index in 0..10 {
            assert!(shared.chunk(index, &program).is_some());
        }
        // A player joining at source chunk 5 reads the shared chunks; a
        // private encoding started there produces the same PCM.
        let mut own =
            SharedEncoding::new(format(Codec::Pcm), &program, 5, Default::default()).unwrap();
        let shared_start = shared.index_from_seq(5, &program).unwrap();
        let own_start = own.index_from_seq(5, &program).unwrap();
        assert_eq!(own_start, 0);
        for step in 0..5 {
            let expected = own
                .chunk(own_start + step, &program)
                .map(|c| (c.timestamp_us, c.frame.payload().to_vec()));
            let got = shared
                .chunk(shared_start + step, &program)
                .map(|c| (c.timestamp_us, c.frame.payload().to_vec()));
            assert!(expected.is_some());
            assert_eq!(got, expected, "chunk {step} after source chunk 5");
        }
    }

    #[test]
    fn heard_chunks_are_dropped() {
        let mut program = program();
        let mut shared =
            SharedEncoding::new(format(Codec::Pcm), &program, 0, Default::default()).unwrap();
        for index in 0..10 {
            assert!(shared.chunk(index, &program).is_some());
        }
        let fourth_end = shared.chunk(3, &program).unwrap().end_us;
        program.discard_heard(fourth_end);
        shared.discard_heard(&program);

        assert_eq!(shared.first_index(), 4);
        assert_eq!(shared.end_index(), 10);
        assert!(shared.chunk(3, &program).is_none());
        assert!(!shared.covers(3));
        assert!(shared.covers(4));
        assert!(shared.covers(20));
    }

    #[test]
    fn flac_chunks_continue_timeline() {
        let program = program();
        let mut shared =
            SharedEncoding::new(format(Codec::Flac), &program, 0, Default::default()).unwrap();
        assert!(shared
            .codec_header()
            .is_some_and(|h| h.starts_with(b"fLaC")));
        let mut previous_end = None;
        for index in 0..20 {
            let chunk = shared.chunk(index, &program).unwrap();
            assert!(!chunk.frame.payload().is_empty());
            if let Some(end) = previous_end {
                assert_eq!(
                    chunk.timestamp_us, end,
                    "chunk {index} leaves a gap or overlaps"
                );
            }
            previous_end = Some(chunk.end_us);
        }
    }
}
