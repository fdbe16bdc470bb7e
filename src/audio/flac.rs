//! FLAC encoding and decoding of one chunk at a time, for streams where
//! every binary audio chunk carries one FLAC frame.
//!
//! # Wire convention
//!
//! The `codec_header` of `stream/start` is the base64 of the bytes a FLAC
//! file starts with: the `fLaC` marker, then a STREAMINFO metadata block
//! flagged as the last block (header byte `0x80`, 24-bit length 34) and its
//! 34 bytes. Each audio chunk is one complete FLAC frame with the sample
//! rate and bit depth written into its header, so the concatenation of the
//! header and the chunks is a valid `.flac` file. The reference peers agree:
//!
//! - aiosendspin (`aiosendspin/audio/codecs.py`, `FlacEncoder`) builds the
//!   header as `fLaC` + `0x80` + 3-byte length + ffmpeg's STREAMINFO and sends
//!   each packet of ffmpeg's encoder as one chunk. Its decoder
//!   (`_AvDecoder._normalize_header`) strips the `fLaC` wrapper again and
//!   also accepts a bare STREAMINFO.
//! - The `sendspin` crate 0.3.8 (`src/audio/decode/flac.rs`,
//!   `FlacDecoder::with_header`) reads the header as `fLaC` + STREAMINFO and
//!   rejects frames whose header defers the sample rate or bit depth to
//!   STREAMINFO.
//!
//! # Block sizes
//!
//! [`FlacEncoder::new`] writes a fixed-block-size stream, as libFLAC and
//! ffmpeg do: every chunk has the block size except the last, and frame
//! headers carry frame numbers. The server's chunks have a fixed length only
//! when it does not resample. For resampled audio,
//! [`FlacEncoder::new_variable`] writes a variable-block-size stream
//! instead. Its chunks may have any length up to the block size, and its
//! frame headers carry the number of their first sample.
//!
//! Both kinds decode bit-exact with symphonia and the `sendspin` crate's
//! decoder, as the tests below check. A check by hand with aiosendspin's
//! `create_decoder` (ffmpeg through PyAV 19) decoded both bit-exact too.

use flacenc::bitsink::ByteSink;
use flacenc::component::{BitRepr, Frame, FrameOffset, Stream, StreamInfo};
use flacenc::config;
use flacenc::error::{Verified, Verify};
use flacenc::source::{Fill, FrameBuf};
use symphonia::core::audio::AudioBufferRef;
use symphonia::core::codecs::{CodecParameters, Decoder, DecoderOptions, CODEC_TYPE_FLAC};
use symphonia::core::formats::Packet;
use symphonia::default::codecs::FlacDecoder as SymphoniaFlacDecoder;

use super::convert::{f32_to_int, int_to_f32};
use super::CodecError;

/// Smallest block size in frames that [`FlacEncoder`] accepts, a limit of
/// flacenc 0.5.
pub const MIN_BLOCK_FRAMES: usize = 32;

/// Largest block size in frames that [`FlacEncoder`] accepts, a limit of
/// flacenc 0.5. FLAC itself allows 65535.
pub const MAX_BLOCK_FRAMES: usize = 32767;

/// Highest sample rate in Hz that [`FlacEncoder`] accepts, a limit of
/// flacenc 0.5. FLAC itself allows 655350 Hz.
pub const MAX_SAMPLE_RATE: u32 = 96_000;

/// Bit depths that [`FlacEncoder`] writes. flacenc 0.5 cannot encode 32-bit
/// samples, and aiosendspin also offers only 16 and 24 bits.
pub const BIT_DEPTHS: [u16; 2] = [16, 24];

/// Length in bytes of a STREAMINFO block's body.
const STREAMINFO_LEN: usize = 34;

/// Block size that [`FlacDecoder`] writes into the STREAMINFO it hands to
/// symphonia. symphonia 0.5 sizes its buffer from it and panics on a larger
/// frame, and 65535 is the largest block size a frame header can state.
const DECODER_MAX_BLOCK_FRAMES: u16 = u16::MAX;

/// Sample rates coded by a 4-bit code in a frame header, indexed by code.
/// 0 means "see STREAMINFO" and codes 12 to 14 store the rate after the
/// header, so the decoder checks only the rates in this table.
const FRAME_HEADER_RATES: [u32; 12] = [
    0, 88_200, 176_400, 192_000, 8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000,
];

/// Frame numbering scheme of a FLAC stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockStrategy {
    /// Every frame has the block size except the last one. Frame headers
    /// carry frame numbers.
    Fixed,
    /// Frames have any size up to the block size. Frame headers carry the
    /// number of the frame's first sample.
    Variable,
}

/// Streaming FLAC encoder that turns each chunk into one FLAC frame.
pub struct FlacEncoder {
    config: Verified<config::Encoder>,
    stream_info: StreamInfo,
    header: Vec<u8>,
    strategy: BlockStrategy,
    block_frames: usize,
    channels: u16,
    bit_depth: u16,
    frame_buf: FrameBuf,
    /// Integer samples of the chunk being encoded, reused between chunks.
    int_samples: Vec<i32>,
    /// FLAC frames written so far, the next frame number.
    frames_written: u64,
    /// Audio frames (samples per channel) encoded so far, the next sample
    /// number.
    samples_written: u64,
    /// Length of the short chunk that ended a fixed-block-size stream.
    ended_with: Option<usize>,
}

impl FlacEncoder {
    /// Creates an encoder of a fixed-block-size stream: `sample_rate` Hz,
    /// `channels` (1 to 8) interleaved channels of `bit_depth` bits (16 or
    /// 24), and `block_frames` frames in every chunk except the last, which
    /// may be shorter.
    pub fn new(
        sample_rate: u32,
        channels: u16,
        bit_depth: u16,
        block_frames: usize,
    ) -> Result<Self, CodecError> {
        Self::with_strategy(
            sample_rate,
            channels,
            bit_depth,
            block_frames,
            BlockStrategy::Fixed,
        )
    }

    /// Creates an encoder of a variable-block-size stream whose chunks may
    /// have 1 to `block_frames` frames each. The other arguments are as in
    /// [`new`](Self::new).
    ///
    /// NOTE: FLAC specifies blocks of at least 16 frames except the last.
    /// Shorter chunks encode and decode with symphonia, but strict decoders
    /// may reject them.
    pub fn new_variable(
        sample_rate: u32,
        channels: u16,
        bit_depth: u16,
        block_frames: usize,
    ) -> Result<Self, CodecError> {
        Self::with_strategy(
            sample_rate,
            channels,
            bit_depth,
            block_frames,
            BlockStrategy::Variable,
        )
    }

    /// Creates an encoder with the given [`BlockStrategy`].
    pub fn with_strategy(
        sample_rate: u32,
        channels: u16,
        bit_depth: u16,
        block_frames: usize,
        strategy: BlockStrategy,
    ) -> Result<Self, CodecError> {
        check_encoder_format(sample_rate, channels, bit_depth, block_frames)?;
        let stream_info =
            encoder_stream_info(sample_rate, channels, bit_depth, block_frames, strategy)?;
        let header = write_header(&stream_info)?;
        let config = config::Encoder::default()
            .into_verified()
            .map_err(|(_, err)| CodecError::FlacEncoder(err.to_string()))?;
        let frame_buf = FrameBuf::with_size(channels as usize, block_frames)
            .map_err(|err| CodecError::FlacEncoder(err.to_string()))?;
        Ok(FlacEncoder {
            config,
            stream_info,
            header,
            strategy,
            block_frames,
            channels,
            bit_depth,
            frame_buf,
            int_samples: Vec::new(),
            frames_written: 0,
            samples_written: 0,
            ended_with: None,
        })
    }

    /// Returns the codec header for `stream/start`: `fLaC`, then the
    /// STREAMINFO block. The total sample count and MD5 signature are 0,
    /// which FLAC defines as unknown.
    pub fn header(&self) -> Vec<u8> {
        self.header.clone()
    }

    /// Block strategy of the stream.
    pub fn strategy(&self) -> BlockStrategy {
        self.strategy
    }

    /// Largest chunk in frames, and for [`BlockStrategy::Fixed`] the length
    /// of every chunk but the last.
    pub fn block_frames(&self) -> usize {
        self.block_frames
    }

    /// Audio frames encoded so far.
    pub fn frames_encoded(&self) -> u64 {
        self.samples_written
    }

    /// Encodes one chunk of interleaved samples into one complete FLAC
    /// frame.
    ///
    /// The chunk has 1 to [`block_frames`](Self::block_frames) frames. In a
    /// fixed-block-size stream a chunk shorter than the block size ends the
    /// stream, and later calls fail with [`CodecError::FlacStreamEnded`].
    /// Samples outside [-1.0, 1.0) are clamped. A failed call encodes
    /// nothing, so the next chunk continues the stream.
    pub fn encode(&mut self, samples: &[f32]) -> Result<Vec<u8>, CodecError> {
        let frames = self.check_chunk(samples)?;
        self.int_samples.clear();
        self.int_samples.extend(
            samples
                .iter()
                .map(|&sample| f32_to_int(sample, self.bit_depth)),
        );
        self.frame_buf
            .fill_interleaved(&self.int_samples)
            .map_err(|err| CodecError::FlacEncoder(err.to_string()))?;

        let frame = self.encode_frame()?;
        let mut sink = ByteSink::with_capacity(frame.count_bits());
        frame
            .write(&mut sink)
            .map_err(|err| CodecError::FlacEncoder(err.to_string()))?;

        self.frames_written += 1;
        self.samples_written += frames as u64;
        if self.strategy == BlockStrategy::Fixed && frames < self.block_frames {
            self.ended_with = Some(frames);
        }
        Ok(sink.into_inner())
    }

    /// Checks a chunk against the stream and returns its length in frames.
    fn check_chunk(&self, samples: &[f32]) -> Result<usize, CodecError> {
        let channels = self.channels as usize;
        if !samples.len().is_multiple_of(channels) {
            return Err(CodecError::PartialFrame {
                samples: samples.len(),
                channels: self.channels,
            });
        }
        let frames = samples.len() / channels;
        if frames == 0 {
            return Err(CodecError::EmptyChunk);
        }
        if frames > self.block_frames {
            return Err(CodecError::FlacChunkTooLong {
                frames,
                block_frames: self.block_frames,
            });
        }
        if let Some(short) = self.ended_with {
            return Err(CodecError::FlacStreamEnded {
                frames: short,
                block_frames: self.block_frames,
            });
        }
        Ok(frames)
    }

    /// Encodes the filled frame buffer with this stream's frame offset.
    fn encode_frame(&self) -> Result<Frame, CodecError> {
        let frame_number = usize::try_from(self.frames_written).unwrap_or(usize::MAX);
        let frame = flacenc::encode_fixed_size_frame(
            &self.config,
            &self.frame_buf,
            frame_number,
            &self.stream_info,
        )
        .map_err(|err| CodecError::FlacEncoder(err.to_string()))?;
        if self.strategy == BlockStrategy::Fixed {
            return Ok(frame);
        }
        let (mut header, subframes) = frame.into_parts();
        header.set_frame_offset(FrameOffset::StartSample(self.samples_written));
        Frame::new(header, subframes.into_iter())
            .map_err(|err| CodecError::FlacEncoder(err.to_string()))
    }
}

/// Checks the stream parameters of an encoder.
fn check_encoder_format(
    sample_rate: u32,
    channels: u16,
    bit_depth: u16,
    block_frames: usize,
) -> Result<(), CodecError> {
    if !BIT_DEPTHS.contains(&bit_depth) {
        return Err(CodecError::FlacBitDepth(bit_depth));
    }
    if !(1..=8).contains(&channels) {
        return Err(CodecError::FlacChannels(channels));
    }
    if !(1..=MAX_SAMPLE_RATE).contains(&sample_rate) {
        return Err(CodecError::FlacSampleRate(sample_rate));
    }
    if !(MIN_BLOCK_FRAMES..=MAX_BLOCK_FRAMES).contains(&block_frames) {
        return Err(CodecError::FlacBlockFrames(block_frames));
    }
    Ok(())
}

/// Builds the STREAMINFO an encoder announces. A fixed-block-size stream
/// states equal minimum and maximum block sizes. A variable one states 16,
/// the smallest FLAC allows, as the minimum, because decoders such as
/// symphonia tell the strategies apart by whether the two are equal.
fn encoder_stream_info(
    sample_rate: u32,
    channels: u16,
    bit_depth: u16,
    block_frames: usize,
    strategy: BlockStrategy,
) -> Result<StreamInfo, CodecError> {
    let mut info = StreamInfo::new(sample_rate as usize, channels as usize, bit_depth as usize)
        .map_err(|err| CodecError::FlacEncoder(err.to_string()))?;
    let min_block = match strategy {
        BlockStrategy::Fixed => block_frames,
        BlockStrategy::Variable => 16,
    };
    info.set_block_sizes(min_block, block_frames)
        .map_err(|err| CodecError::FlacEncoder(err.to_string()))?;
    Ok(info)
}

/// Writes `fLaC` and `info` as the last metadata block.
fn write_header(info: &StreamInfo) -> Result<Vec<u8>, CodecError> {
    let stream = Stream::with_stream_info(info.clone());
    let mut sink = ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|err| CodecError::FlacEncoder(err.to_string()))?;
    Ok(sink.into_inner())
}

/// Stream format from a STREAMINFO block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StreamFormat {
    sample_rate: u32,
    channels: u16,
    bit_depth: u16,
}

/// Decoder of single FLAC frames, one per chunk, with symphonia's FLAC
/// decoder.
///
/// Before decoding, each frame must start with a frame sync code, pass its
/// CRC-16 and match the stream's channel count, bit depth and sample rate.
/// The checks keep damaged or mismatched frames from decoding into noise.
/// FLAC frames do not depend on each other, so a rejected frame does not
/// affect the next one.
pub struct FlacDecoder {
    format: StreamFormat,
    decoder: SymphoniaFlacDecoder,
}

impl FlacDecoder {
    /// Creates a decoder from a codec header: `fLaC` followed by a
    /// STREAMINFO metadata block, or a bare 34-byte STREAMINFO body as
    /// aiosendspin also accepts.
    pub fn new(header: &[u8]) -> Result<Self, CodecError> {
        let body = streaminfo_body(header)?;
        let format = parse_streaminfo(body)?;
        Self::from_format(format.sample_rate, format.channels, format.bit_depth)
    }

    /// Creates a decoder for a stream without a codec header, from the
    /// `sample_rate` in Hz, `channels` and `bit_depth` of `stream/start`.
    /// FLAC frame headers usually state the format themselves, so no header
    /// is needed.
    pub fn from_format(
        sample_rate: u32,
        channels: u16,
        bit_depth: u16,
    ) -> Result<Self, CodecError> {
        let format = StreamFormat {
            sample_rate,
            channels,
            bit_depth,
        };
        check_decoder_format(format)?;
        let mut params = CodecParameters::new();
        params
            .for_codec(CODEC_TYPE_FLAC)
            .with_extra_data(decoder_streaminfo(format).into_boxed_slice());
        let decoder = SymphoniaFlacDecoder::try_new(&params, &DecoderOptions::default())
            .map_err(|err| CodecError::FlacHeader(err.to_string()))?;
        Ok(FlacDecoder { format, decoder })
    }

    /// Sample rate of the stream in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.format.sample_rate
    }

    /// Channel count of the stream.
    pub fn channels(&self) -> u16 {
        self.format.channels
    }

    /// Bits per sample of the stream.
    pub fn bit_depth(&self) -> u16 {
        self.format.bit_depth
    }

    /// Decodes one FLAC frame, appends its interleaved samples to `out` and
    /// returns the number of frames decoded.
    ///
    /// Fails with [`CodecError::FlacFrame`] on a damaged frame, on data
    /// that is not exactly one frame and on a frame in another format. On
    /// error `out` is unchanged.
    ///
    /// NOTE: a chunk holding several FLAC frames fails the CRC-16 check,
    /// although the `sendspin` crate accepts such chunks. Sendspin servers
    /// send one frame per chunk.
    pub fn decode(&mut self, frame: &[u8], out: &mut Vec<f32>) -> Result<usize, CodecError> {
        let invalid = |detail: String| CodecError::FlacFrame {
            len: frame.len(),
            detail,
        };
        check_frame(frame, self.format).map_err(invalid)?;
        let packet = Packet::new_from_slice(0, 0, 0, frame);
        let decoded = self
            .decoder
            .decode(&packet)
            .map_err(|err| invalid(err.to_string()))?;
        let AudioBufferRef::S32(buffer) = decoded else {
            return Err(invalid(
                "symphonia returned a sample format other than 32-bit".to_string(),
            ));
        };
        Ok(interleave_s32(&buffer, out))
    }
}

/// Checks the format a decoder is created with.
fn check_decoder_format(format: StreamFormat) -> Result<(), CodecError> {
    if !(1..=8).contains(&format.channels) {
        return Err(CodecError::FlacHeader(format!(
            "{} channels; flac has 1 to 8",
            format.channels
        )));
    }
    if !(4..=32).contains(&format.bit_depth) {
        return Err(CodecError::FlacHeader(format!(
            "{} bits per sample; flac has 4 to 32",
            format.bit_depth
        )));
    }
    if !(1..=655_350).contains(&format.sample_rate) {
        return Err(CodecError::FlacHeader(format!(
            "sample rate {} Hz; flac has 1 to 655350 Hz",
            format.sample_rate
        )));
    }
    Ok(())
}

/// Returns the 34-byte STREAMINFO body of a codec header.
fn streaminfo_body(header: &[u8]) -> Result<&[u8], CodecError> {
    let Some(blocks) = header.strip_prefix(b"fLaC") else {
        if header.len() == STREAMINFO_LEN {
            return Ok(header);
        }
        return Err(CodecError::FlacHeader(format!(
            "{} bytes that start with neither \"fLaC\" nor form a 34-byte STREAMINFO",
            header.len()
        )));
    };
    if blocks.len() < 4 + STREAMINFO_LEN {
        return Err(CodecError::FlacHeader(format!(
            "{} bytes, too short for \"fLaC\" and a STREAMINFO block",
            header.len()
        )));
    }
    let block_type = blocks[0] & 0x7F;
    let block_len = u32::from_be_bytes([0, blocks[1], blocks[2], blocks[3]]) as usize;
    if block_type != 0 || block_len < STREAMINFO_LEN {
        return Err(CodecError::FlacHeader(format!(
            "the first metadata block has type {block_type} and {block_len} bytes, \
             not STREAMINFO (type 0, 34 bytes)"
        )));
    }
    Ok(&blocks[4..4 + STREAMINFO_LEN])
}

/// Reads the stream format from a STREAMINFO body: after the block and
/// frame sizes (10 bytes) come 20 bits of sample rate, 3 bits of channels
/// minus 1 and 5 bits of bits per sample minus 1.
fn parse_streaminfo(body: &[u8]) -> Result<StreamFormat, CodecError> {
    let packed = u32::from_be_bytes([body[10], body[11], body[12], body[13]]);
    let format = StreamFormat {
        sample_rate: packed >> 12,
        channels: ((packed >> 9) & 0x7) as u16 + 1,
        bit_depth: ((packed >> 4) & 0x1F) as u16 + 1,
    };
    check_decoder_format(format)?;
    Ok(format)
}

/// Builds the STREAMINFO body handed to symphonia. It states the largest
/// block size FLAC allows, so symphonia's buffer fits every frame.
fn decoder_streaminfo(format: StreamFormat) -> Vec<u8> {
    let mut body = Vec::with_capacity(STREAMINFO_LEN);
    body.extend_from_slice(&16u16.to_be_bytes());
    body.extend_from_slice(&DECODER_MAX_BLOCK_FRAMES.to_be_bytes());
    // Minimum and maximum frame sizes of 0 mean unknown.
    body.extend_from_slice(&[0; 6]);
    let packed = (format.sample_rate << 12)
        | (u32::from(format.channels - 1) << 9)
        | (u32::from(format.bit_depth - 1) << 4);
    body.extend_from_slice(&packed.to_be_bytes());
    // The rest of the total sample count, then the MD5 signature: 0 is
    // unknown for both.
    body.resize(STREAMINFO_LEN, 0);
    body
}

/// Checks that `frame` is one intact FLAC frame in `format`.
fn check_frame(frame: &[u8], format: StreamFormat) -> Result<(), String> {
    // Sync code (2 bytes), coded fields (2 bytes), at least 1 byte of frame
    // or sample number, CRC-8 and CRC-16.
    if frame.len() < 7 {
        return Err("too short for a frame header".to_string());
    }
    if frame[0] != 0xFF || frame[1] & 0xFE != 0xF8 {
        return Err("the chunk does not start with a frame sync code".to_string());
    }
    let (body, crc) = frame.split_at(frame.len() - 2);
    let stated = u16::from_be_bytes([crc[0], crc[1]]);
    let computed = crc16(body);
    if stated != computed {
        return Err(format!(
            "crc-16 is {computed:#06x} but the frame states {stated:#06x}, so the data is damaged"
        ));
    }
    check_frame_format(frame[2], frame[3], format)
}

/// Checks the channel count, bit depth and table-coded sample rate in the
/// third and fourth bytes of a frame header.
fn check_frame_format(rate_byte: u8, format_byte: u8, format: StreamFormat) -> Result<(), String> {
    let channels = match format_byte >> 4 {
        code @ 0..=7 => u16::from(code) + 1,
        8..=10 => 2,
        code => return Err(format!("reserved channel assignment {code}")),
    };
    if channels != format.channels {
        return Err(format!(
            "the frame has {channels} channels but the stream has {}",
            format.channels
        ));
    }
    let bit_depth = match (format_byte >> 1) & 0x7 {
        0 => None,
        1 => Some(8),
        2 => Some(12),
        4 => Some(16),
        5 => Some(20),
        6 => Some(24),
        7 => Some(32),
        code => return Err(format!("reserved sample size code {code}")),
    };
    if bit_depth.is_some_and(|bits| bits != format.bit_depth) {
        return Err(format!(
            "the frame has {}-bit samples but the stream has {}-bit",
            bit_depth.unwrap_or_default(),
            format.bit_depth
        ));
    }
    let rate_code = usize::from(rate_byte & 0x0F);
    if let Some(&rate) = FRAME_HEADER_RATES.get(rate_code) {
        if rate != 0 && rate != format.sample_rate {
            return Err(format!(
                "the frame is at {rate} Hz but the stream is at {} Hz",
                format.sample_rate
            ));
        }
    }
    Ok(())
}

/// CRC-16 of FLAC frames: polynomial 0x8005, initial value 0, no bit
/// reflection, computed over the whole frame before the CRC itself.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x8005
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Appends symphonia's planar samples, which it scales to the full `i32`
/// range, to `out` as interleaved `f32` and returns the frame count. The
/// scaling is exact for up to 24 significant bits.
fn interleave_s32(buffer: &symphonia::core::audio::AudioBuffer<i32>, out: &mut Vec<f32>) -> usize {
    use symphonia::core::audio::Signal;

    let frames = buffer.frames();
    let channels = buffer.spec().channels.count();
    out.reserve(frames * channels);
    for frame in 0..frames {
        for channel in 0..channels {
            out.push(int_to_f32(buffer.chan(channel)[frame], 32));
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::source::SourceDecoder;

    /// Deterministic test signal of `frames` frames at `bits` bits: a
    /// different sine per channel plus pseudo-random noise, quantized to
    /// the integer grid so a lossless round trip is bit-exact.
    fn test_signal(frames: usize, channels: u16, bits: u16, rate: u32) -> Vec<f32> {
        let mut state: u32 = 0x1234_5678;
        let mut samples = Vec::with_capacity(frames * channels as usize);
        for i in 0..frames {
            let t = i as f64 / rate as f64;
            for channel in 0..channels {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let noise = (state as f64 / u32::MAX as f64 - 0.5) * 0.05;
                let tone =
                    0.6 * (2.0 * std::f64::consts::PI * (440.0 + 110.0 * channel as f64) * t).sin();
                let value = f32_to_int((tone + noise) as f32, bits);
                samples.push(int_to_f32(value, bits));
            }
        }
        samples
    }

    /// Splits `signal` into chunks of `chunk_frames` frames with a shorter
    /// last chunk, encodes each and returns the FLAC frames.
    fn encode_chunks(
        encoder: &mut FlacEncoder,
        signal: &[f32],
        chunk_frames: usize,
        channels: u16,
    ) -> Vec<Vec<u8>> {
        signal
            .chunks(chunk_frames * channels as usize)
            .map(|chunk| encoder.encode(chunk).unwrap())
            .collect()
    }

    #[test]
    fn round_trip_bit_exact_formats() {
        let cases = [(44_100u32, 882usize), (48_000, 960), (96_000, 1920)];
        for (rate, chunk_frames) in cases {
            for bits in BIT_DEPTHS {
                for channels in [1u16, 2] {
                    let case = format!("{rate} Hz {bits}-bit {channels} ch");
                    // Ten chunks and a short last one of 123 frames.
                    let signal = test_signal(chunk_frames * 10 + 123, channels, bits, rate);
                    let mut encoder = FlacEncoder::new(rate, channels, bits, chunk_frames).unwrap();
                    let frames = encode_chunks(&mut encoder, &signal, chunk_frames, channels);
                    assert_eq!(frames.len(), 11, "{case}: frame count");

                    let mut decoder = FlacDecoder::new(&encoder.header()).unwrap();
                    let mut decoded = Vec::new();
                    for (index, frame) in frames.iter().enumerate() {
                        let expected = if index == 10 { 123 } else { chunk_frames };
                        assert_eq!(
                            decoder.decode(frame, &mut decoded).unwrap(),
                            expected,
                            "{case}: chunk {index}"
                        );
                    }
                    assert!(decoded == signal, "{case}: decoded samples differ");
                }
            }
        }
    }

    #[test]
    fn variable_round_trip_uneven_chunks() {
        let (rate, channels, bits) = (48_000, 2, 24);
        let signal = test_signal(5000, channels, bits, rate);
        let mut encoder = FlacEncoder::new_variable(rate, channels, bits, 1024).unwrap();
        let mut decoder = FlacDecoder::new(&encoder.header()).unwrap();
        let mut decoded = Vec::new();
        let mut offset = 0;
        for frames in [960, 1024, 17, 700, 1024, 1000, 275] {
            let chunk = &signal[offset * 2..(offset + frames) * 2];
            let frame = encoder.encode(chunk).unwrap();
            assert_eq!(decoder.decode(&frame, &mut decoded).unwrap(), frames);
            offset += frames;
        }
        assert_eq!(offset, 5000);
        assert!(decoded == signal, "decoded samples differ");
    }

    #[test]
    fn header_layout() {
        let encoder = FlacEncoder::new(44_100, 2, 16, 882).unwrap();
        let header = encoder.header();
        assert_eq!(header.len(), 42);
        assert_eq!(&header[..4], b"fLaC");
        // Last metadata block, type STREAMINFO, 34 bytes.
        assert_eq!(header[4..8], [0x80, 0, 0, 34]);
        // Minimum and maximum block sizes.
        assert_eq!(header[8..12], [0x03, 0x72, 0x03, 0x72]);
        let format = parse_streaminfo(&header[8..]).unwrap();
        assert_eq!(
            format,
            StreamFormat {
                sample_rate: 44_100,
                channels: 2,
                bit_depth: 16
            }
        );

        let variable = FlacEncoder::new_variable(48_000, 1, 24, 1920).unwrap();
        assert_eq!(variable.header()[8..12], [0x00, 0x10, 0x07, 0x80]);
    }

    /// Writes the header and frames as a `.flac` file and decodes it with
    /// symphonia's file reader.
    fn decode_as_file(header: &[u8], frames: &[Vec<u8>]) -> (Vec<f32>, u32, u16, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stream.flac");
        let mut file = header.to_vec();
        for frame in frames {
            file.extend_from_slice(frame);
        }
        std::fs::write(&path, file).unwrap();

        let mut source = SourceDecoder::open(&path).unwrap();
        let mut decoded = Vec::new();
        while source.read(&mut decoded, 4096).unwrap() > 0 {}
        let info = source.info().clone();
        (
            decoded,
            info.sample_rate,
            info.channels,
            source.skipped_packets(),
        )
    }

    #[test]
    fn file_decodes_with_source_decoder() {
        for strategy in [BlockStrategy::Fixed, BlockStrategy::Variable] {
            let (rate, channels, bits, chunk_frames) = (44_100, 2, 16, 882);
            let signal = test_signal(chunk_frames * 20 + 300, channels, bits, rate);
            let mut encoder =
                FlacEncoder::with_strategy(rate, channels, bits, chunk_frames, strategy).unwrap();
            let frames = encode_chunks(&mut encoder, &signal, chunk_frames, channels);

            let (decoded, file_rate, file_channels, skipped) =
                decode_as_file(&encoder.header(), &frames);
            assert_eq!(file_rate, rate, "{strategy:?}: sample rate");
            assert_eq!(file_channels, channels, "{strategy:?}: channels");
            assert_eq!(skipped, 0, "{strategy:?}: skipped packets");
            assert!(decoded == signal, "{strategy:?}: decoded samples differ");
        }
    }

    #[test]
    fn variable_file_with_uneven_chunks() {
        let (rate, channels, bits) = (48_000, 1, 24);
        let signal = test_signal(4000, channels, bits, rate);
        let mut encoder = FlacEncoder::new_variable(rate, channels, bits, 1100).unwrap();
        let mut frames = Vec::new();
        let mut offset = 0;
        for length in [1100, 960, 64, 1050, 826] {
            frames.push(encoder.encode(&signal[offset..offset + length]).unwrap());
            offset += length;
        }
        let (decoded, _, _, skipped) = decode_as_file(&encoder.header(), &frames);
        assert_eq!(skipped, 0);
        assert!(decoded == signal, "decoded samples differ");
    }

    #[test]
    fn corrupt_frame_errors_then_next_decodes() {
        let (rate, channels, bits) = (48_000, 2, 16);
        let signal = test_signal(960 * 3, channels, bits, rate);
        let mut encoder = FlacEncoder::new(rate, channels, bits, 960).unwrap();
        let frames = encode_chunks(&mut encoder, &signal, 960, channels);
        let mut decoder = FlacDecoder::new(&encoder.header()).unwrap();

        let mut damaged = frames[1].clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x5A;
        let mut decoded = Vec::new();
        let err = decoder.decode(&damaged, &mut decoded).unwrap_err();
        assert!(matches!(err, CodecError::FlacFrame { .. }), "{err}");
        assert!(err.to_string().contains("crc-16"), "{err}");
        assert!(decoded.is_empty(), "output changed on error");

        let truncated = &frames[1][..frames[1].len() - 10];
        assert!(
            decoder.decode(truncated, &mut decoded).is_err(),
            "truncated frame decoded"
        );
        let mut shifted = vec![0u8; 3];
        shifted.extend_from_slice(&frames[1]);
        assert!(
            decoder.decode(&shifted, &mut decoded).is_err(),
            "frame after junk decoded"
        );
        assert!(
            decoder.decode(&[], &mut decoded).is_err(),
            "empty chunk decoded"
        );

        assert_eq!(decoder.decode(&frames[2], &mut decoded).unwrap(), 960);
        assert!(
            decoded[..] == signal[960 * 2 * 2..],
            "frame after the corrupt one differs"
        );
    }

    #[test]
    fn decoder_rejects_other_format() {
        let signal = test_signal(960, 2, 16, 48_000);
        let mut stereo = FlacEncoder::new(48_000, 2, 16, 960).unwrap();
        let frame = stereo.encode(&signal).unwrap();
        let mut decoded = Vec::new();

        let mut mono = FlacDecoder::from_format(48_000, 1, 16).unwrap();
        let err = mono.decode(&frame, &mut decoded).unwrap_err();
        assert!(err.to_string().contains("2 channels"), "{err}");
        let mut deeper = FlacDecoder::from_format(48_000, 2, 24).unwrap();
        let err = deeper.decode(&frame, &mut decoded).unwrap_err();
        assert!(err.to_string().contains("16-bit"), "{err}");
        let mut slower = FlacDecoder::from_format(44_100, 2, 16).unwrap();
        let err = slower.decode(&frame, &mut decoded).unwrap_err();
        assert!(err.to_string().contains("48000 Hz"), "{err}");
        assert!(decoded.is_empty());

        let mut matching = FlacDecoder::from_format(48_000, 2, 16).unwrap();
        assert_eq!(matching.decode(&frame, &mut decoded).unwrap(), 960);
    }

    #[test]
    fn decoder_accepts_bare_streaminfo() {
        let encoder = FlacEncoder::new(96_000, 1, 24, 1920).unwrap();
        let header = encoder.header();
        let decoder = FlacDecoder::new(&header[8..]).unwrap();
        assert_eq!(
            (
                decoder.sample_rate(),
                decoder.channels(),
                decoder.bit_depth()
            ),
            (96_000, 1, 24)
        );
    }

    #[test]
    fn decoder_rejects_bad_headers() {
        let header = FlacEncoder::new(48_000, 2, 16, 960).unwrap().header();
        assert!(FlacDecoder::new(&[]).is_err());
        assert!(FlacDecoder::new(b"not a flac header").is_err());
        assert!(FlacDecoder::new(&header[..20]).is_err());
        let mut wrong_type = header.clone();
        wrong_type[4] = 0x84;
        let err = FlacDecoder::new(&wrong_type).err().unwrap();
        assert!(err.to_string().contains("type 4"), "{err}");
    }

    #[test]
    fn fixed_stream_ends_after_short_chunk() {
        let mut encoder = FlacEncoder::new(48_000, 1, 16, 960).unwrap();
        encoder.encode(&[0.0; 960]).unwrap();
        encoder.encode(&[0.0; 100]).unwrap();
        let err = encoder.encode(&[0.0; 960]).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::FlacStreamEnded {
                    frames: 100,
                    block_frames: 960
                }
            ),
            "{err}"
        );
        assert_eq!(encoder.frames_encoded(), 1060);
    }

    #[test]
    fn encoder_rejects_bad_chunks() {
        let mut encoder = FlacEncoder::new_variable(48_000, 2, 16, 960).unwrap();
        assert!(matches!(
            encoder.encode(&[0.0; 3]),
            Err(CodecError::PartialFrame {
                samples: 3,
                channels: 2
            })
        ));
        assert!(matches!(encoder.encode(&[]), Err(CodecError::EmptyChunk)));
        assert!(matches!(
            encoder.encode(&[0.0; 961 * 2]),
            Err(CodecError::FlacChunkTooLong {
                frames: 961,
                block_frames: 960
            })
        ));
        assert_eq!(encoder.frames_encoded(), 0);
        encoder.encode(&[0.0; 10 * 2]).unwrap();
        encoder.encode(&[0.0; 960 * 2]).unwrap();
        assert_eq!(encoder.frames_encoded(), 970);
    }

    #[test]
    fn encoder_rejects_bad_formats() {
        let err = FlacEncoder::new(48_000, 2, 32, 960).err().unwrap();
        assert_eq!(
            err.to_string(),
            "flac encoding supports 16 or 24 bits, not 32; use 24 for deeper sources"
        );
        assert!(matches!(
            FlacEncoder::new(48_000, 9, 16, 960),
            Err(CodecError::FlacChannels(9))
        ));
        assert!(matches!(
            FlacEncoder::new(48_000, 0, 16, 960),
            Err(CodecError::FlacChannels(0))
        ));
        assert!(matches!(
            FlacEncoder::new(0, 2, 16, 960),
            Err(CodecError::FlacSampleRate(0))
        ));
        assert!(matches!(
            FlacEncoder::new(96_001, 2, 16, 960),
            Err(CodecError::FlacSampleRate(96_001))
        ));
        assert!(FlacEncoder::new(96_000, 2, 16, 960).is_ok());
        assert!(FlacEncoder::new(1, 2, 16, 960).is_ok());
        assert!(matches!(
            FlacEncoder::new(48_000, 2, 16, 31),
            Err(CodecError::FlacBlockFrames(31))
        ));
        assert!(matches!(
            FlacEncoder::new(48_000, 2, 16, 32_768),
            Err(CodecError::FlacBlockFrames(32_768))
        ));
    }

    #[test]
    fn encoder_clamps_full_scale() {
        let mut encoder = FlacEncoder::new(48_000, 1, 16, 32).unwrap();
        let mut input = vec![0.0f32; 32];
        input[0] = 1.0;
        input[1] = -1.0;
        input[2] = 3.0;
        let frame = encoder.encode(&input).unwrap();
        let mut decoder = FlacDecoder::new(&encoder.header()).unwrap();
        let mut decoded = Vec::new();
        decoder.decode(&frame, &mut decoded).unwrap();
        assert_eq!(decoded[0], int_to_f32(i16::MAX as i32, 16));
        assert_eq!(decoded[1], -1.0);
        assert_eq!(decoded[2], int_to_f32(i16::MAX as i32, 16));
    }

    #[test]
    fn sendspin_crate_decodes_frames() {
        use sendspin::audio::decode::{Decoder as _, FlacDecoder as PeerDecoder};

        for strategy in [BlockStrategy::Fixed, BlockStrategy::Variable] {
            let (rate, channels, bits, chunk_frames) = (48_000, 2, 24, 960);
            let signal = test_signal(chunk_frames * 5 + 77, channels, bits, rate);
            let mut encoder =
                FlacEncoder::with_strategy(rate, channels, bits, chunk_frames, strategy).unwrap();
            let frames = encode_chunks(&mut encoder, &signal, chunk_frames, channels);

            let peer = PeerDecoder::with_header(&encoder.header()).unwrap();
            let mut decoded = Vec::new();
            for frame in &frames {
                decoded.extend_from_slice(&peer.decode(frame).unwrap());
            }
            // The sendspin crate scales samples to the full i32 range.
            let expected: Vec<i32> = signal
                .iter()
                .map(|&sample| f32_to_int(sample, bits) << (32 - bits))
                .collect();
            assert!(decoded == expected, "{strategy:?}: decoded samples differ");
        }
    }

    #[test]
    fn encoder_and_decoder_are_send() {
        fn assert_send<T: Send>() {}
        assert_send::<FlacEncoder>();
        assert_send::<FlacDecoder>();
    }

    #[test]
    fn crc16_matches_reference_value() {
        // CRC-16/UMTS (the FLAC frame CRC) check value of "123456789".
        assert_eq!(crc16(b"123456789"), 0xFEE8);
    }
}
