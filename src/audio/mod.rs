//! Audio: formats, decoding of source files, sample conversion, resampling,
//! WAV output and the FLAC and Opus codecs of the wire protocol.
//!
//! Inside the engine audio is interleaved `f32` in the range [-1.0, 1.0).
//! Integer samples of 16 and 24 bits convert to `f32` and back without loss,
//! so PCM passes through sample for sample when no resampling is needed.

pub mod convert;
pub mod flac;
pub mod format;
pub mod opus;
pub mod pipe;
pub mod resample;
pub mod source;
pub mod tags;
pub mod tone;
pub mod wav;

pub use format::{AudioFormat, Codec};

use thiserror::Error;

/// Errors from the FLAC and Opus encoders and decoders in [`flac`] and
/// [`opus`].
///
/// Configuration errors name the rejected value and the values that work.
/// Errors on a single chunk leave the encoder or decoder usable, so a player
/// can count the chunk, play silence in its place and go on.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The sample buffer is not a whole number of interleaved frames.
    #[error(
        "{samples} samples are not a whole number of {channels}-channel frames; \
         pass interleaved audio made of complete frames"
    )]
    PartialFrame { samples: usize, channels: u16 },
    /// A chunk to encode has no frames.
    #[error("cannot encode an empty chunk; pass at least 1 frame")]
    EmptyChunk,

    /// FLAC cannot store the bit depth.
    #[error("flac encoding supports 16 or 24 bits, not {0}; use 24 for deeper sources")]
    FlacBitDepth(u16),
    /// FLAC cannot store the channel count.
    #[error("flac supports 1 to 8 channels, not {0}; map the audio to 8 or fewer channels")]
    FlacChannels(u16),
    /// The FLAC encoder does not support the sample rate.
    #[error(
        "flac encoding supports 1 to {max} Hz, not {0} Hz; resample to 96000 Hz or lower",
        max = flac::MAX_SAMPLE_RATE
    )]
    FlacSampleRate(u32),
    /// The FLAC block size is outside what the encoder supports.
    #[error(
        "flac block size {0} frames is out of range; use {min} to {max} frames \
         (20 ms is 960 frames at 48000 Hz)",
        min = flac::MIN_BLOCK_FRAMES,
        max = flac::MAX_BLOCK_FRAMES
    )]
    FlacBlockFrames(usize),
    /// A chunk has more frames than the stream's block size.
    #[error(
        "flac chunk of {frames} frames exceeds the block size of {block_frames} frames; \
         split the chunk or create the encoder with a larger block size"
    )]
    FlacChunkTooLong { frames: usize, block_frames: usize },
    /// A fixed-block-size stream already ended with a short block.
    #[error(
        "flac stream already ended with a short chunk of {frames} frames; only the last \
         chunk may be shorter than {block_frames} frames, so use FlacEncoder::new_variable \
         for chunks of varying length"
    )]
    FlacStreamEnded { frames: usize, block_frames: usize },
    /// flacenc rejected the input or the configuration.
    #[error("flac encoder failed: {0}")]
    FlacEncoder(String),
    /// The FLAC codec header is not `fLaC` with a STREAMINFO block.
    #[error(
        "invalid flac codec header: {0}; codec_header must be the base64 of \"fLaC\" \
         followed by the STREAMINFO metadata block"
    )]
    FlacHeader(String),
    /// A FLAC frame is damaged or does not match the stream.
    #[error("invalid flac frame of {len} bytes: {detail}; drop the chunk and play silence")]
    FlacFrame { len: usize, detail: String },

    /// Opus cannot run at the sample rate.
    #[error("opus does not support {0} Hz; use 48000, 24000, 16000, 12000 or 8000")]
    OpusSampleRate(u32),
    /// Opus cannot carry the channel count in one stream.
    #[error("opus supports 1 or 2 channels, not {0}; map the audio to mono or stereo")]
    OpusChannels(u16),
    /// The Opus bitrate is outside what libopus accepts.
    #[error(
        "opus bitrate {0} bit/s is out of range; use {min} to {max} bit/s, \
         such as 128000 for stereo music",
        min = opus::MIN_BITRATE_BPS,
        max = opus::MAX_BITRATE_BPS
    )]
    OpusBitrate(u32),
    /// A chunk carries no Opus packet.
    #[error("empty opus packet; treat the chunk as lost and call decode_lost")]
    OpusEmptyPacket,
    /// libopus rejected a packet.
    #[error(
        "invalid opus packet of {len} bytes: {source}; treat the chunk as lost and call \
         decode_lost"
    )]
    OpusPacket { len: usize, source: ::opus::Error },
    /// Another libopus call failed.
    #[error("libopus {operation} failed: {source}")]
    Opus {
        operation: &'static str,
        source: ::opus::Error,
    },
}
