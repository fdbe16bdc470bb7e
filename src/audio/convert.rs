//! Sample conversion between the engine's `f32` samples and integer PCM
//! bytes, and channel-count mapping.
//!
//! An integer sample `i` of `bits` bits maps to `i / 2^(bits-1)` and back by
//! rounding and clamping. For 16 and 24 bits the round trip is exact because
//! an `f32` has a 24-bit significand. For 32 bits the `f32` keeps only the top
//! 24 significant bits, so 32-bit PCM loses its lowest bits.
//!
//! PCM bytes are little-endian signed integers: 2 bytes for 16-bit, 3 bytes
//! (packed) for 24-bit and 4 bytes for 32-bit samples.

use thiserror::Error;

/// Bit depths that [`encode_pcm`] and [`decode_pcm`] support.
pub const SUPPORTED_BIT_DEPTHS: [u16; 3] = [16, 24, 32];

/// Errors from decoding PCM bytes.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PcmError {
    /// The bit depth is not 16, 24 or 32.
    #[error("unsupported pcm bit depth {0}; use 16, 24 or 32")]
    UnsupportedBitDepth(u16),
    /// The channel count is zero.
    #[error("invalid channel count 0; a pcm stream needs at least 1 channel")]
    ZeroChannels,
    /// The byte length is not a whole number of frames.
    #[error(
        "pcm byte length {len} is not a multiple of the frame size {frame_bytes} \
         ({channels} channels of {bit_depth}-bit samples); the data is truncated \
         or the format is wrong"
    )]
    PartialFrame {
        len: usize,
        frame_bytes: usize,
        channels: u16,
        bit_depth: u16,
    },
}

/// Returns `Ok(())` when `bit_depth` is one of [`SUPPORTED_BIT_DEPTHS`].
pub fn check_bit_depth(bit_depth: u16) -> Result<(), PcmError> {
    if SUPPORTED_BIT_DEPTHS.contains(&bit_depth) {
        Ok(())
    } else {
        Err(PcmError::UnsupportedBitDepth(bit_depth))
    }
}

/// Converts an `f32` sample to a signed integer of `bits` bits (2 to 32).
///
/// Scales by `2^(bits-1)`, rounds half away from zero and clamps to the
/// integer range, so 1.0 becomes the maximum value. NaN becomes 0.
pub fn f32_to_int(sample: f32, bits: u16) -> i32 {
    debug_assert!((2..=32).contains(&bits), "bit depth {bits} out of range");
    let scale = (1u64 << (bits - 1)) as f64;
    let max = scale - 1.0;
    // An f64 represents every scaled value exactly, including 32-bit ones.
    (sample as f64 * scale).round().clamp(-scale, max) as i32
}

/// Converts a signed integer sample of `bits` bits (2 to 32) to `f32` by
/// dividing by `2^(bits-1)`. Exact for `bits` ≤ 24.
pub fn int_to_f32(value: i32, bits: u16) -> f32 {
    debug_assert!((2..=32).contains(&bits), "bit depth {bits} out of range");
    (value as f64 / (1u64 << (bits - 1)) as f64) as f32
}

/// Appends `samples` to `out` as little-endian signed PCM of `bit_depth`
/// bits: 2 bytes per 16-bit, 3 per 24-bit and 4 per 32-bit sample.
///
/// # Panics
///
/// Panics when `bit_depth` is not 16, 24 or 32. Call [`check_bit_depth`]
/// first on a depth that comes from outside the program.
pub fn encode_pcm(samples: &[f32], bit_depth: u16, out: &mut Vec<u8>) {
    if let Err(err) = check_bit_depth(bit_depth) {
        panic!("encode_pcm: {err}");
    }
    let bytes = bit_depth as usize / 8;
    out.reserve(samples.len() * bytes);
    for &sample in samples {
        let value = f32_to_int(sample, bit_depth);
        out.extend_from_slice(&value.to_le_bytes()[..bytes]);
    }
}

/// Decodes little-endian signed PCM of `bit_depth` bits with `channels`
/// interleaved channels, appends the samples to `out` and returns the number
/// of frames decoded.
///
/// Fails when the depth is unsupported, `channels` is 0 or `bytes` is not a
/// whole number of frames. On error `out` is unchanged.
pub fn decode_pcm(
    bytes: &[u8],
    bit_depth: u16,
    channels: u16,
    out: &mut Vec<f32>,
) -> Result<usize, PcmError> {
    check_bit_depth(bit_depth)?;
    if channels == 0 {
        return Err(PcmError::ZeroChannels);
    }
    let sample_bytes = bit_depth as usize / 8;
    let frame_bytes = sample_bytes * channels as usize;
    if !bytes.len().is_multiple_of(frame_bytes) {
        return Err(PcmError::PartialFrame {
            len: bytes.len(),
            frame_bytes,
            channels,
            bit_depth,
        });
    }

    out.reserve(bytes.len() / sample_bytes);
    for chunk in bytes.chunks_exact(sample_bytes) {
        out.push(int_to_f32(read_le_signed(chunk), bit_depth));
    }
    Ok(bytes.len() / frame_bytes)
}

/// Reads a little-endian signed integer of 1 to 4 bytes, sign-extending it.
fn read_le_signed(bytes: &[u8]) -> i32 {
    let mut word = [0u8; 4];
    let offset = 4 - bytes.len();
    word[offset..].copy_from_slice(bytes);
    // The sample sits in the top bytes, so an arithmetic shift sign-extends it.
    i32::from_le_bytes(word) >> (8 * offset)
}

/// Maps interleaved audio from `from` channels to `to` channels.
///
/// - Equal counts: the input is copied.
/// - Mono to N channels: the mono sample goes to every channel.
/// - 3 to 8 channels to stereo or mono: a downmix (see [`downmix_weights`])
///   that keeps the centre and surround channels audible.
/// - Other counts to mono: the channels are averaged.
/// - Otherwise the first `min(from, to)` channels are copied in order and
///   any extra output channels are silent. So stereo to 5.1 fills front left
///   and right, and more than 8 channels, whose layout is unknown, keep
///   their first channels.
///
/// A trailing partial frame is dropped. Returns an empty vector when `from`
/// or `to` is 0.
pub fn map_channels(input: &[f32], from: u16, to: u16) -> Vec<f32> {
    if from == 0 || to == 0 {
        return Vec::new();
    }
    let weights = if to <= 2 { downmix_weights(from) } else { None };
    let (from, to) = (from as usize, to as usize);
    let frames = input.chunks_exact(from);
    let mut out = Vec::with_capacity(frames.len() * to);

    for frame in frames {
        if from == to {
            out.extend_from_slice(frame);
        } else if from == 1 {
            out.extend(std::iter::repeat_n(frame[0], to));
        } else if let Some(weights) = weights {
            let (left, right) = downmix_frame(frame, weights);
            if to == 2 {
                out.extend([left, right]);
            } else {
                out.push((left + right) / 2.0);
            }
        } else if to == 1 {
            out.push(frame.iter().sum::<f32>() / from as f32);
        } else {
            let copied = from.min(to);
            out.extend_from_slice(&frame[..copied]);
            out.extend(std::iter::repeat_n(0.0, to - copied));
        }
    }
    out
}

/// Gain of a centre or surround channel in a stereo downmix: -3 dB.
const SIDE_GAIN: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Returns the (left, right) weight of each channel in a stereo downmix
/// of `channels` channels, for 3 to 8 channels in the default order of
/// FLAC and of WAV files without a channel mask:
///
/// | channels | order |
/// |---|---|
/// | 3 | FL FR FC |
/// | 4 | FL FR BL BR |
/// | 5 | FL FR FC BL BR |
/// | 6 | FL FR FC LFE BL BR |
/// | 7 | FL FR FC LFE BC SL SR |
/// | 8 | FL FR FC LFE BL BR SL SR |
///
/// The centre and the surrounds join at -3 dB, a back centre at -6 dB on
/// each side, and the LFE channel is left out. Each side's weights are
/// then scaled to sum to 1, so the downmix never clips.
fn downmix_weights(channels: u16) -> Option<&'static [(f32, f32)]> {
    const C: (f32, f32) = (SIDE_GAIN, SIDE_GAIN);
    const L: (f32, f32) = (1.0, 0.0);
    const R: (f32, f32) = (0.0, 1.0);
    const SL: (f32, f32) = (SIDE_GAIN, 0.0);
    const SR: (f32, f32) = (0.0, SIDE_GAIN);
    const LFE: (f32, f32) = (0.0, 0.0);
    const BC: (f32, f32) = (0.5, 0.5);
    Some(match channels {
        3 => &[L, R, C],
        4 => &[L, R, SL, SR],
        5 => &[L, R, C, SL, SR],
        6 => &[L, R, C, LFE, SL, SR],
        7 => &[L, R, C, LFE, BC, SL, SR],
        8 => &[L, R, C, LFE, SL, SR, SL, SR],
        _ => return None,
    })
}

/// Mixes one frame down to stereo with `weights`, scaled so each side's
/// weights sum to 1.
fn downmix_frame(frame: &[f32], weights: &[(f32, f32)]) -> (f32, f32) {
    let (mut left, mut right) = (0.0, 0.0);
    let (mut left_total, mut right_total) = (0.0, 0.0);
    for (&sample, &(to_left, to_right)) in frame.iter().zip(weights) {
        left += sample * to_left;
        right += sample * to_right;
        left_total += to_left;
        right_total += to_right;
    }
    (left / left_total, right / right_total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_16_bit_value() {
        for value in i16::MIN..=i16::MAX {
            let sample = int_to_f32(value as i32, 16);
            assert_eq!(f32_to_int(sample, 16), value as i32, "value {value}");
        }
    }

    #[test]
    fn round_trip_24_bit_sweep() {
        let min = -(1i32 << 23);
        let max = (1i32 << 23) - 1;
        let mut values: Vec<i32> = (min..=max).step_by(997).collect();
        values.extend([min, min + 1, -1, 0, 1, max - 1, max]);
        values.extend(-4096..4096);
        for value in values {
            let sample = int_to_f32(value, 24);
            assert_eq!(f32_to_int(sample, 24), value, "value {value}");
        }
    }

    #[test]
    fn float_to_int_clamps_full_scale() {
        assert_eq!(f32_to_int(1.0, 16), i16::MAX as i32);
        assert_eq!(f32_to_int(-1.0, 16), i16::MIN as i32);
        assert_eq!(f32_to_int(2.5, 24), (1 << 23) - 1);
        assert_eq!(f32_to_int(-2.5, 24), -(1 << 23));
        assert_eq!(f32_to_int(1.0, 32), i32::MAX);
        assert_eq!(f32_to_int(-1.0, 32), i32::MIN);
        assert_eq!(f32_to_int(f32::NAN, 16), 0);
    }

    #[test]
    fn float_to_int_rounds_to_nearest() {
        let half_step = 0.5 / 32768.0;
        assert_eq!(f32_to_int(half_step * 0.99, 16), 0);
        assert_eq!(f32_to_int(half_step * 1.01, 16), 1);
        assert_eq!(f32_to_int(-half_step * 1.01, 16), -1);
    }

    #[test]
    fn encode_16_bit_layout() {
        let mut out = Vec::new();
        encode_pcm(&[int_to_f32(0x1234, 16), -1.0], 16, &mut out);
        assert_eq!(out, [0x34, 0x12, 0x00, 0x80]);
    }

    #[test]
    fn encode_24_bit_packed_layout() {
        let mut out = Vec::new();
        encode_pcm(
            &[int_to_f32(0x123456, 24), int_to_f32(-2, 24)],
            24,
            &mut out,
        );
        assert_eq!(out, [0x56, 0x34, 0x12, 0xFE, 0xFF, 0xFF]);
    }

    #[test]
    fn encode_32_bit_layout() {
        let mut out = Vec::new();
        encode_pcm(&[0.5, -0.5], 32, &mut out);
        assert_eq!(out, [0, 0, 0, 0x40, 0, 0, 0, 0xC0]);
    }

    #[test]
    #[should_panic(expected = "unsupported pcm bit depth 12")]
    fn encode_rejects_12_bit() {
        encode_pcm(&[0.0], 12, &mut Vec::new());
    }

    #[test]
    fn decode_inverts_encode_bit_exact() {
        for bits in [16u16, 24] {
            let max = (1i32 << (bits - 1)) - 1;
            let samples: Vec<f32> = [-max - 1, -12345, -1, 0, 1, 777, max]
                .iter()
                .map(|&v| int_to_f32(v, bits))
                .collect();
            let mut bytes = Vec::new();
            encode_pcm(&samples, bits, &mut bytes);
            let mut decoded = Vec::new();
            let frames = decode_pcm(&bytes, bits, 1, &mut decoded).unwrap();
            assert_eq!(frames, samples.len(), "{bits}-bit frame count");
            assert_eq!(decoded, samples, "{bits}-bit samples");
        }
    }

    #[test]
    fn decode_32_bit_values() {
        let bytes = [0, 0, 0, 0x40, 0, 0, 0, 0x80];
        let mut out = Vec::new();
        assert_eq!(decode_pcm(&bytes, 32, 2, &mut out), Ok(1));
        assert_eq!(out, [0.5, -1.0]);
    }

    #[test]
    fn decode_appends_to_output() {
        let mut out = vec![0.25];
        decode_pcm(&[0x00, 0x40], 16, 1, &mut out).unwrap();
        assert_eq!(out, [0.25, 0.5]);
    }

    #[test]
    fn decode_rejects_partial_frame() {
        let mut out = Vec::new();
        let err = decode_pcm(&[0; 10], 24, 2, &mut out).unwrap_err();
        assert_eq!(
            err,
            PcmError::PartialFrame {
                len: 10,
                frame_bytes: 6,
                channels: 2,
                bit_depth: 24
            }
        );
        assert!(out.is_empty());
    }

    #[test]
    fn decode_rejects_bad_depth_and_channels() {
        let mut out = Vec::new();
        assert_eq!(
            decode_pcm(&[0; 4], 8, 1, &mut out),
            Err(PcmError::UnsupportedBitDepth(8))
        );
        assert_eq!(
            decode_pcm(&[0; 4], 16, 0, &mut out),
            Err(PcmError::ZeroChannels)
        );
    }

    #[test]
    fn map_mono_to_stereo_duplicates() {
        assert_eq!(map_channels(&[0.1, 0.2], 1, 2), [0.1, 0.1, 0.2, 0.2]);
    }

    #[test]
    fn map_stereo_to_mono_averages() {
        assert_eq!(map_channels(&[0.5, -0.25, 1.0, 0.0], 2, 1), [0.125, 0.5]);
    }

    #[test]
    fn map_stereo_to_six_silences_rest() {
        let out = map_channels(&[0.1, 0.2], 2, 6);
        assert_eq!(out, [0.1, 0.2, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn map_six_to_stereo_downmixes() {
        let total = 1.0 + 2.0 * SIDE_GAIN;
        // Front left alone, centre alone, LFE alone, back right alone.
        let input = [
            1.0, 0.0, 0.0, 0.0, 0.0, 0.0, //
            0.0, 0.0, 1.0, 0.0, 0.0, 0.0, //
            0.0, 0.0, 0.0, 1.0, 0.0, 0.0, //
            0.0, 0.0, 0.0, 0.0, 0.0, 1.0,
        ];
        let out = map_channels(&input, 6, 2);
        let expected = [
            1.0 / total,
            0.0,
            SIDE_GAIN / total,
            SIDE_GAIN / total,
            0.0,
            0.0,
            0.0,
            SIDE_GAIN / total,
        ];
        assert_eq!(out.len(), expected.len());
        for (index, (&got, &want)) in out.iter().zip(&expected).enumerate() {
            assert!((got - want).abs() < 1e-6, "sample {index}: {got} != {want}");
        }
    }

    #[test]
    fn downmix_of_full_scale_never_clips() {
        for channels in 3..=8u16 {
            let input = vec![1.0; channels as usize];
            for to in [1, 2] {
                for (index, &sample) in map_channels(&input, channels, to).iter().enumerate() {
                    assert!(
                        (sample - 1.0).abs() < 1e-6,
                        "{channels} to {to} channels, sample {index}: {sample}"
                    );
                }
            }
        }
    }

    #[test]
    fn map_unknown_layout_keeps_first_channels() {
        let input: Vec<f32> = (0..10).map(|n| n as f32 / 10.0).collect();
        assert_eq!(map_channels(&input, 10, 2), [0.0, 0.1]);
        assert_eq!(map_channels(&input[..6], 6, 4), [0.0, 0.1, 0.2, 0.3]);
    }

    #[test]
    fn map_same_count_copies() {
        let input = [0.1, 0.2, 0.3];
        assert_eq!(map_channels(&input, 3, 3), input);
    }

    #[test]
    fn map_drops_partial_frame_and_zero_counts() {
        assert_eq!(map_channels(&[0.1, 0.2, 0.3], 2, 1).len(), 1);
        assert!(map_channels(&[0.1], 0, 2).is_empty());
        assert!(map_channels(&[0.1], 1, 0).is_empty());
    }
}
