//! Generated test signals: a steady sine and a click track.
//!
//! Both run at 48000 Hz in stereo without end. The click track has a
//! 1 ms click at the start of every second of its own timeline and silence
//! in between, so two players recording it show their offset as the
//! distance between clicks, to the frame.

/// Sample rate of every generated signal.
pub const TONE_RATE: u32 = 48_000;

/// Channels of every generated signal.
pub const TONE_CHANNELS: u16 = 2;

/// Frequency of the sine, in Hz.
pub const SINE_HZ: f64 = 440.0;

/// Peak level of the sine: -12 dBFS, loud enough to hear and far from
/// clipping after resampling.
const SINE_PEAK: f64 = 0.25;

/// Level of each click sample.
const CLICK_LEVEL: f32 = 0.8;

/// Frames of one click: 1 ms at 48000 Hz.
pub const CLICK_FRAMES: u64 = 48;

/// Kind of test signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ToneKind {
    /// A 440 Hz sine at -12 dBFS.
    Sine,
    /// A 1 ms click at the start of every second, silence otherwise.
    Click,
}

impl ToneKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ToneKind::Sine => "sine",
            ToneKind::Click => "click",
        }
    }

    /// Returns a title for metadata clients.
    pub fn title(self) -> &'static str {
        match self {
            ToneKind::Sine => "Sine 440 Hz",
            ToneKind::Click => "Click track, one click a second",
        }
    }
}

/// An endless generator of one test signal.
#[derive(Clone, Debug)]
pub struct ToneSource {
    kind: ToneKind,
    /// Frames generated so far.
    frame: u64,
}

impl ToneSource {
    pub fn new(kind: ToneKind) -> ToneSource {
        ToneSource { kind, frame: 0 }
    }

    pub fn kind(&self) -> ToneKind {
        self.kind
    }

    /// Skips `frames` frames, as if they had been read.
    pub fn skip(&mut self, frames: u64) {
        self.frame += frames;
    }

    /// Appends `frames` interleaved frames to `out`.
    pub fn read(&mut self, out: &mut Vec<f32>, frames: usize) -> usize {
        out.reserve(frames * TONE_CHANNELS as usize);
        for _ in 0..frames {
            let value = self.sample(self.frame);
            for _ in 0..TONE_CHANNELS {
                out.push(value);
            }
            self.frame += 1;
        }
        frames
    }

    fn sample(&self, frame: u64) -> f32 {
        match self.kind {
            ToneKind::Sine => {
                // The phase comes from the frame number modulo one period
                // of the pair (440 Hz, 48000 Hz), so precision does not
                // degrade as the frame count grows.
                let period = u64::from(TONE_RATE) / gcd(u64::from(TONE_RATE), SINE_HZ as u64);
                let within = (frame % period) as f64;
                (SINE_PEAK
                    * (2.0 * std::f64::consts::PI * SINE_HZ * within / f64::from(TONE_RATE)).sin())
                    as f32
            }
            ToneKind::Click => {
                if frame % u64::from(TONE_RATE) < CLICK_FRAMES {
                    CLICK_LEVEL
                } else {
                    0.0
                }
            }
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn click_sounds_for_one_millisecond_each_second() {
        let mut tone = ToneSource::new(ToneKind::Click);
        let mut samples = Vec::new();
        tone.read(&mut samples, 2 * TONE_RATE as usize);
        let loud: Vec<usize> = samples
            .chunks(2)
            .enumerate()
            .filter(|(_, frame)| frame[0] != 0.0)
            .map(|(index, _)| index)
            .collect();
        assert_eq!(loud.len(), 2 * CLICK_FRAMES as usize);
        assert_eq!(loud[0], 0);
        assert_eq!(loud[CLICK_FRAMES as usize], TONE_RATE as usize);
        assert!(samples.chunks(2).all(|frame| frame[0] == frame[1]));
    }

    #[test]
    fn sine_has_its_frequency_and_level() {
        let mut tone = ToneSource::new(ToneKind::Sine);
        let mut samples = Vec::new();
        tone.read(&mut samples, TONE_RATE as usize);
        let left: Vec<f32> = samples.chunks(2).map(|frame| frame[0]).collect();
        let rising_zero_crossings = left
            .windows(2)
            .filter(|pair| pair[0] < 0.0 && pair[1] >= 0.0)
            .count();
        assert!(
            (439..=441).contains(&rising_zero_crossings),
            "{rising_zero_crossings} crossings in 1 s"
        );
        let peak = left.iter().fold(0.0f32, |max, v| max.max(v.abs()));
        assert!((peak - SINE_PEAK as f32).abs() < 1e-3, "peak {peak}");
    }

    #[test]
    fn skipping_equals_reading() {
        let mut read = ToneSource::new(ToneKind::Sine);
        let mut skipped = ToneSource::new(ToneKind::Sine);
        let mut discard = Vec::new();
        read.read(&mut discard, 1234);
        skipped.skip(1234);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        read.read(&mut a, 100);
        skipped.read(&mut b, 100);
        assert_eq!(a, b);
    }
}
