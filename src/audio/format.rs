//! Audio formats as the protocol names them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Audio codec identifier on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Pcm,
    Flac,
    Opus,
}

impl Codec {
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Pcm => "pcm",
            Codec::Flac => "flac",
            Codec::Opus => "opus",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Codec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pcm" => Ok(Codec::Pcm),
            "flac" => Ok(Codec::Flac),
            "opus" => Ok(Codec::Opus),
            other => Err(format!(
                "unknown codec {other:?}; expected pcm, flac or opus"
            )),
        }
    }
}

/// A stream format: codec, sample rate in Hz, channel count and bits per
/// sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AudioFormat {
    pub codec: Codec,
    pub sample_rate: u32,
    pub channels: u16,
    pub bit_depth: u16,
}

impl AudioFormat {
    pub fn pcm(sample_rate: u32, channels: u16, bit_depth: u16) -> Self {
        AudioFormat {
            codec: Codec::Pcm,
            sample_rate,
            channels,
            bit_depth,
        }
    }

    /// Bytes of one PCM frame (one sample per channel) in this format.
    pub fn pcm_frame_bytes(&self) -> usize {
        self.channels as usize * self.bytes_per_sample()
    }

    /// Bytes of one PCM sample: 2 for 16-bit, 3 for packed 24-bit, 4 for
    /// 32-bit.
    pub fn bytes_per_sample(&self) -> usize {
        (self.bit_depth as usize).div_ceil(8)
    }

    /// Duration in microseconds of `frames` frames at this sample rate.
    pub fn frames_to_us(&self, frames: u64) -> i64 {
        (frames as i128 * 1_000_000 / self.sample_rate as i128) as i64
    }
}

impl fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} Hz {} ch {}-bit",
            self.codec, self.sample_rate, self.channels, self.bit_depth
        )
    }
}
