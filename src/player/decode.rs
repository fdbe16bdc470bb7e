//! Decoding of a stream's binary audio chunks (PCM, FLAC or Opus, as
//! `stream/start` announced) to the interleaved `f32` samples the scheduler plays.

use base64::Engine as _;

use crate::audio::convert::decode_pcm;
use crate::audio::flac::FlacDecoder;
use crate::audio::opus::{self, OpusDecoder};
use crate::audio::{AudioFormat, Codec};
use crate::protocol::StreamStartPlayer;

/// Length in microseconds of the silence that replaces a corrupt chunk
/// before any chunk has decoded. It equals the length of a server chunk.
const DEFAULT_CHUNK_US: u64 = 20_000;

/// Decoder of one stream.
pub struct ChunkDecoder {
    format: AudioFormat,
    codec: CodecDecoder,
    /// Frame count of the last chunk that decoded, used as the length of
    /// the silence that replaces a corrupt chunk.
    last_chunk_frames: usize,
}

enum CodecDecoder {
    Pcm,
    Flac(Box<FlacDecoder>),
    Opus(OpusDecoder),
}

impl ChunkDecoder {
    /// Creates the decoder for a `stream/start`. Fails with the reason when
    /// the codec is unknown, the codec header is invalid or the codec cannot
    /// carry the announced format.
    pub fn new(start: &StreamStartPlayer) -> Result<ChunkDecoder, String> {
        let codec: Codec = start.codec.parse()?;
        let format = AudioFormat {
            codec,
            sample_rate: start.sample_rate,
            channels: start.channels,
            bit_depth: start.bit_depth,
        };
        let codec = match codec {
            Codec::Pcm => CodecDecoder::Pcm,
            Codec::Flac => CodecDecoder::Flac(Box::new(flac_decoder(start)?)),
            Codec::Opus => {
                if !opus::SAMPLE_RATES.contains(&start.sample_rate) {
                    return Err(format!(
                        "unsupported opus sample rate {} Hz: opus supports 48000, 24000, 16000, 12000 or 8000 Hz",
                        start.sample_rate
                    ));
                }
                let decoder = OpusDecoder::new(start.sample_rate, start.channels)
                    .map_err(|err| err.to_string())?;
                CodecDecoder::Opus(decoder)
            }
        };
        let default_frames =
            (u64::from(format.sample_rate) * DEFAULT_CHUNK_US / 1_000_000) as usize;
        Ok(ChunkDecoder {
            format,
            codec,
            last_chunk_frames: default_frames.max(1),
        })
    }

    /// Returns the stream's format as announced, with its codec.
    pub fn format(&self) -> AudioFormat {
        self.format
    }

    /// Returns the format of the decoded samples: PCM at the stream's rate,
    /// channel count and bit depth. A codec change that keeps it lets the scheduler
    /// play on without a break.
    pub fn output_format(&self) -> AudioFormat {
        AudioFormat::pcm(
            self.format.sample_rate,
            self.format.channels,
            self.format.bit_depth,
        )
    }

    /// Decodes one chunk and appends its samples to `out`.
    ///
    /// A corrupt chunk fails with the reason and leaves `out` unchanged.
    /// Call [`conceal`](Self::conceal) to fill its time.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<f32>) -> Result<usize, String> {
        let frames = match &mut self.codec {
            CodecDecoder::Pcm => {
                decode_pcm(payload, self.format.bit_depth, self.format.channels, out)
                    .map_err(|err| err.to_string())?
            }
            CodecDecoder::Flac(decoder) => decoder
                .decode(payload, out)
                .map_err(|err| err.to_string())?,
            CodecDecoder::Opus(decoder) => decoder
                .decode(payload, out)
                .map_err(|err| err.to_string())?,
        };
        if frames > 0 {
            self.last_chunk_frames = frames;
        }
        Ok(frames)
    }

    /// Appends the audio that plays in place of a corrupt chunk: as many
    /// frames as the last good chunk had, concealed by Opus, silent otherwise.
    pub fn conceal(&mut self, out: &mut Vec<f32>) -> usize {
        let frames = self.last_chunk_frames;
        let channels = usize::from(self.format.channels);
        if let CodecDecoder::Opus(decoder) = &mut self.codec {
            let before = out.len();
            if decoder.decode_lost(frames, out).is_ok() {
                return frames;
            }
            out.truncate(before);
        }
        out.resize(out.len() + frames * channels, 0.0);
        frames
    }
}

/// Creates a FLAC decoder from the base64 codec header, or from the
/// announced format when the header is missing.
fn flac_decoder(start: &StreamStartPlayer) -> Result<FlacDecoder, String> {
    let Some(encoded) = &start.codec_header else {
        return FlacDecoder::from_format(start.sample_rate, start.channels, start.bit_depth)
            .map_err(|err| err.to_string());
    };
    let header = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|err| format!("flac codec_header is not valid base64: {err}"))?;
    let decoder = FlacDecoder::new(&header).map_err(|err| err.to_string())?;
    let from_header = (
        decoder.sample_rate(),
        decoder.channels(),
        decoder.bit_depth(),
    );
    let announced = (start.sample_rate, start.channels, start.bit_depth);
    if from_header != announced {
        return Err(format!(
            "flac codec_header states {} Hz, {} channels, {} bits but stream/start announces {} Hz, {} channels, {} bits",
            from_header.0, from_header.1, from_header.2, announced.0, announced.1, announced.2
        ));
    }
    Ok(decoder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::flac::FlacEncoder;
    use crate::audio::opus::OpusEncoder;

    fn start(
        codec: &str,
        rate: u32,
        channels: u16,
        bits: u16,
        header: Option<&[u8]>,
    ) -> StreamStartPlayer {
        StreamStartPlayer {
            codec: codec.into(),
            sample_rate: rate,
            channels,
            bit_depth: bits,
            codec_header: header.map(|h| base64::engine::general_purpose::STANDARD.encode(h)),
        }
    }

    fn ramp(frames: usize, channels: usize) -> Vec<f32> {
        (0..frames * channels)
            .map(|i| ((i % 2000) as f32 / 2000.0) - 0.5)
            .collect()
    }

    #[test]
    fn flac_chunk_decodes_bit_exact() {
        let mut encoder = FlacEncoder::new(48_000, 2, 16, 960).unwrap();
        let input: Vec<f32> = ramp(960, 2)
            .iter()
            .map(|s| (s * 32768.0).round() / 32768.0)
            .collect();
        let frame = encoder.encode(&input).unwrap();
        let mut decoder =
            ChunkDecoder::new(&start("flac", 48_000, 2, 16, Some(&encoder.header()))).unwrap();
        let mut out = Vec::new();
        assert_eq!(decoder.decode(&frame, &mut out).unwrap(), 960);
        assert_eq!(out, input);
        assert_eq!(decoder.output_format(), AudioFormat::pcm(48_000, 2, 16));
    }

    #[test]
    fn corrupt_flac_chunk_is_concealed_with_silence() {
        let mut encoder = FlacEncoder::new(48_000, 1, 24, 480).unwrap();
        let good = encoder.encode(&ramp(480, 1)).unwrap();
        let mut decoder =
            ChunkDecoder::new(&start("flac", 48_000, 1, 24, Some(&encoder.header()))).unwrap();
        let mut out = Vec::new();
        decoder.decode(&good, &mut out).unwrap();
        let mut damaged = encoder.encode(&ramp(480, 1)).unwrap();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x5A;
        let before = out.len();
        assert!(decoder.decode(&damaged, &mut out).is_err());
        assert_eq!(out.len(), before, "a failed decode appended samples");
        assert_eq!(decoder.conceal(&mut out), 480);
        assert!(out[before..].iter().all(|&s| s == 0.0));
    }

    #[test]
    fn flac_header_must_match_stream_start() {
        let encoder = FlacEncoder::new(44_100, 2, 16, 882).unwrap();
        let err = ChunkDecoder::new(&start("flac", 48_000, 2, 16, Some(&encoder.header())))
            .err()
            .unwrap();
        assert!(err.contains("44100 Hz"), "{err}");
        let err = ChunkDecoder::new(&start("flac", 48_000, 2, 16, Some(b"not flac")))
            .err()
            .unwrap();
        assert!(err.contains("flac"), "{err}");
    }

    #[test]
    fn opus_packet_decodes_and_garbage_is_concealed() {
        let mut encoder = OpusEncoder::new(48_000, 2, None).unwrap();
        let packets = encoder.encode(&ramp(960, 2)).unwrap();
        let mut decoder = ChunkDecoder::new(&start("opus", 48_000, 2, 16, None)).unwrap();
        let mut out = Vec::new();
        assert_eq!(decoder.decode(&packets[0], &mut out).unwrap(), 960);
        assert!(decoder.decode(&[], &mut out).is_err());
        assert_eq!(decoder.conceal(&mut out), 960);
        assert_eq!(out.len(), 2 * 960 * 2);
    }

    #[test]
    fn opus_at_44100_is_rejected() {
        let err = ChunkDecoder::new(&start("opus", 44_100, 2, 16, None))
            .err()
            .unwrap();
        assert!(err.contains("44100"), "{err}");
    }

    #[test]
    fn unknown_codec_is_rejected() {
        let err = ChunkDecoder::new(&start("aac", 48_000, 2, 16, None))
            .err()
            .unwrap();
        assert!(err.contains("aac"), "{err}");
    }
}
