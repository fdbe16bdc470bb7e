//! Encoding one player's audio into binary chunk payloads: PCM packing,
//! one FLAC frame per chunk, or one Opus packet per 20 ms.

use crate::audio::convert::encode_pcm;
use crate::audio::flac::{self, BlockStrategy, FlacEncoder};
use crate::audio::opus::OpusEncoder;
use crate::audio::{AudioFormat, Codec, CodecError};

/// Encoder settings that apply to every player of a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncoderSettings {
    /// Opus target bitrate in bits per second; `None` keeps the libopus
    /// default.
    pub opus_bitrate_bps: Option<u32>,
}

/// One encoded chunk: its payload and where its audio starts on the
/// player's timeline.
pub struct EncodedChunk {
    /// Frames of the player's timeline, at the player's rate, before the
    /// chunk's first input frame.
    pub start_frame: u64,
    /// Input frames the chunk carries.
    pub frames: usize,
    pub payload: Vec<u8>,
}

/// A player stream's encoder.
pub enum ChunkEncoder {
    Pcm { bit_depth: u16, channels: u16 },
    Flac { encoder: FlacEncoder, channels: usize },
    Opus(OpusEncoder),
}

impl ChunkEncoder {
    /// Creates the encoder for `format`. `chunk_frames` is the length of a
    /// full source chunk at the player's rate. `fixed_chunks` states that
    /// every chunk but the last has exactly that length, which holds when
    /// the server does not resample; FLAC then writes a fixed-block-size
    /// stream, and otherwise a variable one.
    pub fn new(
        format: AudioFormat,
        chunk_frames: usize,
        fixed_chunks: bool,
        settings: EncoderSettings,
    ) -> Result<ChunkEncoder, CodecError> {
        match format.codec {
            Codec::Pcm => Ok(ChunkEncoder::Pcm {
                bit_depth: format.bit_depth,
                channels: format.channels,
            }),
            Codec::Flac => {
                let (strategy, block_frames) = if fixed_chunks {
                    (BlockStrategy::Fixed, chunk_frames)
                } else {
                    // A resampler's output varies around the chunk length;
                    // twice that leaves room, and longer output is split.
                    (BlockStrategy::Variable, chunk_frames * 2)
                };
                let block_frames = block_frames.clamp(flac::MIN_BLOCK_FRAMES, flac::MAX_BLOCK_FRAMES);
                let encoder = FlacEncoder::with_strategy(
                    format.sample_rate,
                    format.channels,
                    format.bit_depth,
                    block_frames,
                    strategy,
                )?;
                Ok(ChunkEncoder::Flac {
                    encoder,
                    channels: usize::from(format.channels),
                })
            }
            Codec::Opus => Ok(ChunkEncoder::Opus(OpusEncoder::new(
                format.sample_rate,
                format.channels,
                settings.opus_bitrate_bps,
            )?)),
        }
    }

    /// Returns the codec header for `stream/start`: `fLaC` and STREAMINFO
    /// for FLAC, nothing for PCM and Opus.
    pub fn header(&self) -> Option<Vec<u8>> {
        match self {
            ChunkEncoder::Flac { encoder, .. } => Some(encoder.header()),
            ChunkEncoder::Pcm { .. } | ChunkEncoder::Opus(_) => None,
        }
    }

    /// Codec delay in microseconds. Each chunk is stamped this much earlier
    /// than its first input frame, so that the decoded input sounds at its
    /// timeline time.
    pub fn delay_us(&self) -> i64 {
        match self {
            ChunkEncoder::Opus(encoder) => encoder.delay_us(),
            ChunkEncoder::Pcm { .. } | ChunkEncoder::Flac { .. } => 0,
        }
    }

    /// Encodes `samples`, interleaved audio whose first frame is frame
    /// `start_frame` of the player's timeline, and appends the finished
    /// chunks to `out`. Opus keeps input shorter than a packet for the
    /// next call.
    pub fn encode(&mut self, samples: &[f32], start_frame: u64, out: &mut Vec<EncodedChunk>) -> Result<(), CodecError> {
        match self {
            ChunkEncoder::Pcm { bit_depth, channels } => {
                let frames = samples.len() / usize::from(*channels);
                let mut payload = Vec::with_capacity(samples.len() * usize::from(*bit_depth).div_ceil(8));
                encode_pcm(samples, *bit_depth, &mut payload);
                out.push(EncodedChunk {
                    start_frame,
                    frames,
                    payload,
                });
            }
            ChunkEncoder::Flac { encoder, channels } => {
                // Each FLAC frame holds at most one block, so longer input
                // becomes several chunks.
                let block_samples = encoder.block_frames() * *channels;
                let mut frame = start_frame;
                for piece in samples.chunks(block_samples) {
                    let payload = encoder.encode(piece)?;
                    let frames = piece.len() / *channels;
                    out.push(EncodedChunk {
                        start_frame: frame,
                        frames,
                        payload,
                    });
                    frame += frames as u64;
                }
            }
            ChunkEncoder::Opus(encoder) => {
                let pending_frames = opus_pending_frames(encoder, start_frame);
                let packets = encoder.encode(samples)?;
                push_opus_packets(encoder, packets, pending_frames, out);
            }
        }
        Ok(())
    }

    /// Ends the stream at timeline frame `end_frame`: Opus pads its
    /// buffered input and adds packets until every input frame has passed
    /// the codec delay. PCM and FLAC hold nothing back.
    pub fn flush(&mut self, end_frame: u64, out: &mut Vec<EncodedChunk>) -> Result<(), CodecError> {
        if let ChunkEncoder::Opus(encoder) = self {
            let first_frame = opus_pending_frames(encoder, end_frame);
            let packets = encoder.flush()?;
            push_opus_packets(encoder, packets, first_frame, out);
        }
        Ok(())
    }
}

/// Returns the timeline frame of the first input frame the Opus encoder
/// still holds, given that the next input starts at `next_frame`.
fn opus_pending_frames(encoder: &OpusEncoder, next_frame: u64) -> u64 {
    let buffered = encoder.pending_frames() as u64;
    next_frame.saturating_sub(buffered)
}

/// Appends Opus packets whose first input frame is `first_frame`, one
/// packet length apart.
fn push_opus_packets(encoder: &OpusEncoder, packets: Vec<Vec<u8>>, first_frame: u64, out: &mut Vec<EncodedChunk>) {
    let packet_frames = encoder.packet_frames();
    for (index, payload) in packets.into_iter().enumerate() {
        out.push(EncodedChunk {
            start_frame: first_frame + (index * packet_frames) as u64,
            frames: packet_frames,
            payload,
        });
    }
}
