//! Encoding one player's audio into binary chunk payloads: PCM packing,
//! one FLAC frame per chunk, or one Opus packet per 20 ms.

use crate::audio::convert::encode_pcm;
use crate::audio::flac::{self, BlockStrategy, FlacEncoder};
use crate::audio::opus::OpusEncoder;
use crate::audio::{AudioFormat, Codec, CodecError};

/// Encoder settings that apply to every player of a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncoderSettings {
    /// Opus target bitrate in bits per second. `None` keeps the libopus
    /// default.
    pub opus_bitrate_bps: Option<u32>,
}

/// Encoded chunk: its payload and the position of its audio on the
/// player's timeline.
pub struct EncodedChunk {
    /// Frames of the player's timeline, at the player's rate, before the
    /// chunk's first input frame.
    pub start_frame: u64,
    /// Input frames the chunk carries.
    pub frames: usize,
    pub payload: Vec<u8>,
}

/// Encoder of one player stream.
pub enum ChunkEncoder {
    Pcm {
        bit_depth: u16,
        channels: u16,
    },
    Flac {
        encoder: Box<FlacEncoder>,
        channels: usize,
    },
    Opus(OpusEncoder),
}

impl ChunkEncoder {
    /// Creates the encoder for `format`. `chunk_frames` is the length of a
    /// full source chunk at the player's rate. `fixed_chunks` states that
    /// every chunk but the last has exactly that length, which holds when
    /// the server does not resample. FLAC then writes a fixed-block-size
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
                    // A resampler's output varies around the chunk length, so
                    // blocks get twice that, and longer output is split.
                    (BlockStrategy::Variable, chunk_frames * 2)
                };
                let block_frames =
                    block_frames.clamp(flac::MIN_BLOCK_FRAMES, flac::MAX_BLOCK_FRAMES);
                let encoder = FlacEncoder::with_strategy(
                    format.sample_rate,
                    format.channels,
                    format.bit_depth,
                    block_frames,
                    strategy,
                )?;
                Ok(ChunkEncoder::Flac {
                    encoder: Box::new(encoder),
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
    pub fn encode(
        &mut self,
        samples: &[f32],
        start_frame: u64,
        out: &mut Vec<EncodedChunk>,
    ) -> Result<(), CodecError> {
        match self {
            ChunkEncoder::Pcm {
                bit_depth,
                channels,
            } => {
                let frames = samples.len() / usize::from(*channels);
                let mut payload =
                    Vec::with_capacity(samples.len() * usize::from(*bit_depth).div_ceil(8));
                encode_pcm(samples, *bit_depth, &mut payload);
                out.push(EncodedChunk {
                    start_frame,
                    frames,
                    payload,
                });
            }
            ChunkEncoder::Flac { encoder, channels } => {
                // Each FLAC frame contains at most one block, so longer input
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

    /// Ends the stream at timeline frame `end_frame`. Opus pads its
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

/// Returns the timeline frame of the first input frame still buffered in
/// the Opus encoder, given that the next input starts at `next_frame`.
fn opus_pending_frames(encoder: &OpusEncoder, next_frame: u64) -> u64 {
    let buffered = encoder.pending_frames() as u64;
    next_frame.saturating_sub(buffered)
}

/// Appends Opus packets whose first input frame is `first_frame`, one
/// packet length apart.
fn push_opus_packets(
    encoder: &OpusEncoder,
    packets: Vec<Vec<u8>>,
    first_frame: u64,
    out: &mut Vec<EncodedChunk>,
) {
    let packet_frames = encoder.packet_frames();
    for (index, payload) in packets.into_iter().enumerate() {
        out.push(EncodedChunk {
            start_frame: first_frame + (index * packet_frames) as u64,
            frames: packet_frames,
            payload,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frames: usize, channels: usize) -> Vec<f32> {
        (0..frames * channels)
            .map(|i| ((i / channels) as f32 * 0.03).sin() * 0.4)
            .collect()
    }

    #[test]
    fn flac_splits_input_longer_than_a_block() {
        let format = AudioFormat {
            codec: Codec::Flac,
            sample_rate: 48_000,
            channels: 2,
            bit_depth: 16,
        };
        // A variable-block-size stream gets blocks of twice the chunk.
        let mut encoder =
            ChunkEncoder::new(format, 100, false, EncoderSettings::default()).unwrap();
        let mut out = Vec::new();
        encoder.encode(&tone(450, 2), 1_000, &mut out).unwrap();
        let placed: Vec<(u64, usize)> = out
            .iter()
            .map(|chunk| (chunk.start_frame, chunk.frames))
            .collect();
        assert_eq!(placed, vec![(1_000, 200), (1_200, 200), (1_400, 50)]);
        assert!(encoder
            .header()
            .is_some_and(|header| header.starts_with(b"fLaC")));
        assert_eq!(encoder.delay_us(), 0);
    }

    #[test]
    fn opus_packets_keep_timeline_positions() {
        let format = AudioFormat {
            codec: Codec::Opus,
            sample_rate: 48_000,
            channels: 1,
            bit_depth: 16,
        };
        let mut encoder =
            ChunkEncoder::new(format, 960, false, EncoderSettings::default()).unwrap();
        let mut out = Vec::new();
        // Chunks of a resampled stream do not line up with 960-frame packets.
        encoder.encode(&tone(700, 1), 5_000, &mut out).unwrap();
        assert!(out.is_empty(), "a packet before 960 frames arrived");
        encoder.encode(&tone(700, 1), 5_700, &mut out).unwrap();
        encoder.encode(&tone(700, 1), 6_400, &mut out).unwrap();
        let starts: Vec<u64> = out.iter().map(|chunk| chunk.start_frame).collect();
        assert_eq!(starts, vec![5_000, 5_960]);

        // The flush pads the last 180 frames and covers the codec delay.
        encoder.flush(7_100, &mut out).unwrap();
        let starts: Vec<u64> = out.iter().map(|chunk| chunk.start_frame).collect();
        assert_eq!(starts, vec![5_000, 5_960, 6_920]);
        assert!(encoder.header().is_none());
        assert_eq!(encoder.delay_us(), 6_500, "libopus 1.3 lookahead at 48 kHz");
    }

    #[test]
    fn pcm_chunk_is_one_payload() {
        let mut encoder = ChunkEncoder::new(
            AudioFormat::pcm(44_100, 2, 24),
            882,
            true,
            EncoderSettings::default(),
        )
        .unwrap();
        let mut out = Vec::new();
        encoder.encode(&tone(882, 2), 0, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].frames, 882);
        assert_eq!(out[0].payload.len(), 882 * 2 * 3);
    }
}
