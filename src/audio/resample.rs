//! Streaming sample-rate conversion that keeps output aligned with the input
//! timeline.
//!
//! [`StreamResampler`] wraps rubato's synchronous FFT resampler
//! ([`rubato::FftFixedInOut`]). It accepts interleaved input of any length,
//! buffers it into the fixed chunks rubato needs and trims rubato's delay, so
//! output frame `k` is the signal at input time `k / to_rate` seconds. After
//! `n` input frames and [`StreamResampler::flush`] the total output is
//! `round(n * to_rate / from_rate)` frames.
//!
//! Equal rates skip rubato and pass samples through unchanged.

use rubato::{FftFixedInOut, Resampler};
use thiserror::Error;

/// Input frames per rubato chunk that the chunk size is rounded up from.
/// About 21 ms at 48 kHz, which bounds the buffering latency for common rate
/// pairs.
const TARGET_CHUNK_FRAMES: usize = 1024;

/// Errors from creating a [`StreamResampler`].
#[derive(Debug, Error)]
pub enum ResampleError {
    /// A sample rate is zero.
    #[error("invalid sample rate {from_rate} Hz -> {to_rate} Hz; both rates must be above 0")]
    ZeroRate { from_rate: u32, to_rate: u32 },
    /// The channel count is zero.
    #[error("invalid channel count 0; the resampler needs at least 1 channel")]
    ZeroChannels,
    /// rubato rejected the configuration.
    #[error("failed to create resampler for {from_rate} Hz -> {to_rate} Hz: {source}")]
    Rubato {
        from_rate: u32,
        to_rate: u32,
        source: rubato::ResamplerConstructionError,
    },
}

/// Streaming resampler for interleaved `f32` audio.
///
/// Feed input of any length to [`process`](Self::process), then call
/// [`flush`](Self::flush) at the end of the stream. Output comes in chunks,
/// so `process` may return fewer frames than its input produces until more
/// input arrives or the stream is flushed.
pub struct StreamResampler {
    from_rate: u32,
    to_rate: u32,
    channels: usize,
    /// `None` when the rates are equal and samples pass through.
    engine: Option<FftEngine>,
    /// Interleaved input not yet resampled, including any partial frame.
    pending: Vec<f32>,
    /// Samples (not frames) received since the stream started.
    input_samples: u64,
    /// Frames returned since the stream started, after the delay trim.
    output_frames: u64,
}

/// rubato's resampler with its buffers and delay bookkeeping.
struct FftEngine {
    rubato: FftFixedInOut<f32>,
    chunk_in: usize,
    /// rubato's delay in output frames, trimmed from the start of each stream.
    delay: usize,
    /// Output frames still to drop before the trimmed stream begins.
    to_skip: usize,
    input_planes: Vec<Vec<f32>>,
    output_planes: Vec<Vec<f32>>,
}

impl StreamResampler {
    /// Creates a resampler from `from_rate` Hz to `to_rate` Hz for
    /// `channels` interleaved channels.
    ///
    /// The rubato chunk is a multiple of `from_rate / gcd(from_rate, to_rate)`
    /// input frames. For common rate pairs it is about 1024 frames, but for
    /// rates with a small common divisor (such as 44100 and 44101) it grows
    /// to two seconds of input, which is also the output latency then.
    pub fn new(from_rate: u32, to_rate: u32, channels: u16) -> Result<Self, ResampleError> {
        if from_rate == 0 || to_rate == 0 {
            return Err(ResampleError::ZeroRate { from_rate, to_rate });
        }
        if channels == 0 {
            return Err(ResampleError::ZeroChannels);
        }
        let engine = if from_rate == to_rate {
            None
        } else {
            Some(FftEngine::new(from_rate, to_rate, channels as usize)?)
        };
        Ok(StreamResampler {
            from_rate,
            to_rate,
            channels: channels as usize,
            engine,
            pending: Vec::new(),
            input_samples: 0,
            output_frames: 0,
        })
    }

    /// Input sample rate in Hz.
    pub fn from_rate(&self) -> u32 {
        self.from_rate
    }

    /// Output sample rate in Hz.
    pub fn to_rate(&self) -> u32 {
        self.to_rate
    }

    /// Channel count of input and output.
    pub fn channels(&self) -> u16 {
        self.channels as u16
    }

    /// Returns whether samples pass through unchanged because the rates are
    /// equal.
    pub fn is_passthrough(&self) -> bool {
        self.engine.is_none()
    }

    /// Resamples interleaved `input` and returns the interleaved output
    /// that is ready.
    ///
    /// `input` need not be whole frames or match rubato's chunk size, because
    /// the remainder is kept for the next call.
    pub fn process(&mut self, input: &[f32]) -> Vec<f32> {
        self.input_samples += input.len() as u64;
        self.pending.extend_from_slice(input);

        let mut output = Vec::new();
        match self.engine.as_mut() {
            None => take_whole_frames(&mut self.pending, self.channels, &mut output),
            Some(engine) => {
                let chunk_samples = engine.chunk_in * self.channels;
                let mut start = 0;
                while self.pending.len() - start >= chunk_samples {
                    engine.run_chunk(&self.pending[start..], self.channels, &mut output);
                    start += chunk_samples;
                }
                self.pending.drain(..start);
            }
        }
        self.output_frames += (output.len() / self.channels) as u64;
        output
    }

    /// Ends the stream: returns the remaining output so that the stream's
    /// total is `round(n * to_rate / from_rate)` frames for `n` input frames.
    ///
    /// A trailing partial frame of input is dropped. Afterwards the
    /// resampler is reset and ready for a new stream.
    pub fn flush(&mut self) -> Vec<f32> {
        let mut output = Vec::new();
        if let Some(engine) = self.engine.as_mut() {
            let input_frames = self.input_samples / self.channels as u64;
            let target = scaled_frame_count(input_frames, self.from_rate, self.to_rate);
            let missing = target.saturating_sub(self.output_frames) as usize;
            let chunk_samples = engine.chunk_in * self.channels;
            let whole_frames = self.pending.len() / self.channels * self.channels;
            self.pending.truncate(whole_frames);

            while output.len() < missing * self.channels {
                self.pending.resize(chunk_samples, 0.0);
                engine.run_chunk(&self.pending, self.channels, &mut output);
                self.pending.clear();
            }
            output.truncate(missing * self.channels);
            engine.reset();
        }
        self.pending.clear();
        self.input_samples = 0;
        self.output_frames = 0;
        output
    }
}

impl FftEngine {
    fn new(from_rate: u32, to_rate: u32, channels: usize) -> Result<Self, ResampleError> {
        let chunk_in = chunk_frames(from_rate, to_rate);
        let rubato =
            FftFixedInOut::<f32>::new(from_rate as usize, to_rate as usize, chunk_in, channels)
                .map_err(|source| ResampleError::Rubato {
                    from_rate,
                    to_rate,
                    source,
                })?;
        debug_assert_eq!(rubato.input_frames_next(), chunk_in);

        // rubato's filter is symmetric around input sample chunk_in / 2, so
        // its delay is output_frames_next / 2 output frames. chunk_frames
        // makes both chunk sizes even, so this delay is a whole frame.
        let delay = rubato.output_delay();
        let input_planes = vec![vec![0.0; chunk_in]; channels];
        let output_planes = rubato.output_buffer_allocate(true);
        Ok(FftEngine {
            rubato,
            chunk_in,
            delay,
            to_skip: delay,
            input_planes,
            output_planes,
        })
    }

    /// Resamples the first `chunk_in` frames of interleaved `input` and
    /// appends the output, minus any delay still to skip, to `output`.
    fn run_chunk(&mut self, input: &[f32], channels: usize, output: &mut Vec<f32>) {
        deinterleave(&input[..self.chunk_in * channels], &mut self.input_planes);
        let (_, produced) = self
            .rubato
            .process_into_buffer(&self.input_planes, &mut self.output_planes, None)
            .expect("buffers are sized from the resampler's own chunk sizes");

        let skipped = self.to_skip.min(produced);
        self.to_skip -= skipped;
        interleave(&self.output_planes, skipped..produced, output);
    }

    fn reset(&mut self) {
        self.rubato.reset();
        self.to_skip = self.delay;
    }
}

/// Picks the rubato input chunk in frames: an even multiple of the smallest
/// chunk `from_rate / gcd` with at least [`TARGET_CHUNK_FRAMES`] frames.
///
/// An even multiple makes both the input and output chunk even, which puts
/// the centre of rubato's filter on a whole output frame.
fn chunk_frames(from_rate: u32, to_rate: u32) -> usize {
    let min_chunk = (from_rate / gcd(from_rate, to_rate)) as usize;
    let multiple = TARGET_CHUNK_FRAMES.div_ceil(min_chunk).max(2);
    min_chunk * multiple.next_multiple_of(2)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Returns `round(frames * to_rate / from_rate)`, rounding halves up.
fn scaled_frame_count(frames: u64, from_rate: u32, to_rate: u32) -> u64 {
    let numerator = frames as u128 * to_rate as u128 + from_rate as u128 / 2;
    (numerator / from_rate as u128) as u64
}

/// Moves the whole frames at the front of `pending` to `output`.
fn take_whole_frames(pending: &mut Vec<f32>, channels: usize, output: &mut Vec<f32>) {
    let whole = pending.len() / channels * channels;
    output.extend(pending.drain(..whole));
}

fn deinterleave(input: &[f32], planes: &mut [Vec<f32>]) {
    let channels = planes.len();
    for (channel, plane) in planes.iter_mut().enumerate() {
        for (slot, frame) in plane.iter_mut().zip(input.chunks_exact(channels)) {
            *slot = frame[channel];
        }
    }
}

fn interleave(planes: &[Vec<f32>], frames: std::ops::Range<usize>, output: &mut Vec<f32>) {
    output.reserve(frames.len() * planes.len());
    for frame in frames {
        output.extend(planes.iter().map(|plane| plane[frame]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::TAU;

    fn sine(frequency: f64, rate: u32, frames: usize, channels: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(frames * channels);
        for n in 0..frames {
            let value = 0.5 * (TAU * frequency * n as f64 / rate as f64).sin();
            out.extend(std::iter::repeat_n(value as f32, channels));
        }
        out
    }

    fn resample_all(from: u32, to: u32, channels: u16, input: &[f32]) -> Vec<f32> {
        let mut resampler = StreamResampler::new(from, to, channels).unwrap();
        let mut out = resampler.process(input);
        out.extend(resampler.flush());
        out
    }

    /// Largest difference between `output` (one channel of `channels`) and
    /// the ideal tone, over the frames away from both ends.
    fn max_tone_error(
        output: &[f32],
        channels: usize,
        channel: usize,
        rate: u32,
        frequency: f64,
    ) -> f32 {
        let frames = output.len() / channels;
        let margin = rate as usize / 20;
        (margin..frames - margin)
            .map(|k| {
                let ideal = 0.5 * (TAU * frequency * k as f64 / rate as f64).sin();
                (output[k * channels + channel] - ideal as f32).abs()
            })
            .fold(0.0, f32::max)
    }

    #[test]
    fn sine_44100_to_48000_aligned() {
        let input = sine(1000.0, 44100, 44100, 1);
        let output = resample_all(44100, 48000, 1, &input);

        assert_eq!(output.len(), 48000);
        let error = max_tone_error(&output, 1, 0, 48000, 1000.0);
        assert!(
            error < 1e-4,
            "max error {error} against the ideal 1 kHz tone"
        );
    }

    #[test]
    fn high_tone_phase_at_known_time() {
        // At 7 kHz a one-frame offset at 48 kHz shifts the phase by 0.92 rad.
        let input = sine(7000.0, 44100, 22050, 1);
        let output = resample_all(44100, 48000, 1, &input);

        let k = 12000; // 0.25 s
        let ideal = 0.5 * (TAU * 7000.0 * k as f64 / 48000.0).sin();
        assert!((output[k] as f64 - ideal).abs() < 1e-4, "sample {k}");
        let error = max_tone_error(&output, 1, 0, 48000, 7000.0);
        assert!(
            error < 1e-4,
            "max error {error} against the ideal 7 kHz tone"
        );
    }

    #[test]
    fn downsample_48000_to_44100_aligned() {
        let input = sine(3000.0, 48000, 24000, 2);
        let output = resample_all(48000, 44100, 2, &input);

        assert_eq!(output.len(), 22050 * 2);
        for channel in 0..2 {
            let error = max_tone_error(&output, 2, channel, 44100, 3000.0);
            assert!(error < 1e-4, "channel {channel}: max error {error}");
        }
    }

    #[test]
    fn frame_counts_match_rate_ratio() {
        let cases = [
            (44100, 48000, 1),
            (44100, 48000, 1000),
            (44100, 48000, 4410),
            (48000, 44100, 12345),
            (48000, 16000, 999),
            (8000, 48000, 7),
            (11025, 8000, 5000),
            (96000, 44100, 100),
        ];
        for (from, to, frames) in cases {
            let input = vec![0.1; frames];
            let output = resample_all(from, to, 1, &input);
            let expected = scaled_frame_count(frames as u64, from, to) as usize;
            assert_eq!(output.len(), expected, "{frames} frames {from} -> {to}");
        }
    }

    #[test]
    fn chunked_input_matches_one_block() {
        let input = sine(440.0, 44100, 10000, 2);
        let whole = resample_all(44100, 48000, 2, &input);

        let mut resampler = StreamResampler::new(44100, 48000, 2).unwrap();
        let mut chunked = Vec::new();
        let sizes = [1usize, 7, 333, 1, 2048, 5, 999, 3];
        let mut start = 0;
        for size in sizes.iter().cycle() {
            if start == input.len() {
                break;
            }
            let end = (start + size).min(input.len());
            chunked.extend(resampler.process(&input[start..end]));
            start = end;
        }
        chunked.extend(resampler.flush());

        assert_eq!(chunked.len(), whole.len());
        assert_eq!(chunked, whole);
    }

    #[test]
    fn flush_resets_for_next_stream() {
        let input = sine(1000.0, 44100, 5000, 1);
        let first = resample_all(44100, 48000, 1, &input);

        let mut resampler = StreamResampler::new(44100, 48000, 1).unwrap();
        resampler.process(&vec![0.3; 777]);
        resampler.flush();
        let mut second = resampler.process(&input);
        second.extend(resampler.flush());

        assert_eq!(second, first);
    }

    #[test]
    fn equal_rates_pass_through() {
        let mut resampler = StreamResampler::new(48000, 48000, 2).unwrap();
        assert!(resampler.is_passthrough());

        let input = [0.1, 0.2, 0.3, 0.4, 0.5];
        assert_eq!(resampler.process(&input), [0.1, 0.2, 0.3, 0.4]);
        assert_eq!(resampler.process(&[0.6]), [0.5, 0.6]);
        assert!(resampler.flush().is_empty());
    }

    #[test]
    fn new_rejects_zero_rate_and_channels() {
        assert!(matches!(
            StreamResampler::new(0, 48000, 2),
            Err(ResampleError::ZeroRate { .. })
        ));
        assert!(matches!(
            StreamResampler::new(44100, 48000, 0),
            Err(ResampleError::ZeroChannels)
        ));
    }

    #[test]
    fn chunk_frames_are_even_multiples() {
        assert_eq!(chunk_frames(44100, 48000), 147 * 8);
        assert_eq!(chunk_frames(48000, 44100), 160 * 8);
        assert_eq!(chunk_frames(44100, 44101), 44100 * 2);
        assert_eq!(chunk_frames(8000, 48000), 1024);
    }
}
