//! Raw PCM from a byte stream such as stdin, read on a thread of its own.
//!
//! The reading thread decodes little-endian signed PCM into a bounded
//! buffer. When the buffer is full it stops reading, so a writer that
//! produces faster than the groups play blocks on the pipe. One consumer
//! at a time claims the pipe.

use std::collections::VecDeque;
use std::io::Read;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::convert::decode_pcm;

/// Maximum audio in the buffer before the reading thread waits, in seconds.
const BUFFER_SECONDS: usize = 10;

/// Bytes read from the stream per read call.
const READ_BYTES: usize = 16 * 1024;

/// Format of raw PCM: little-endian signed integers, interleaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PcmFormat {
    pub sample_rate: u32,
    pub channels: u16,
    pub bit_depth: u16,
}

impl FromStr for PcmFormat {
    type Err = String;

    /// Parses `RATE:CHANNELS:BITS`, such as `48000:2:16`.
    fn from_str(text: &str) -> Result<PcmFormat, String> {
        let usage = "write RATE:CHANNELS:BITS, such as 48000:2:16 (16, 24 or 32 bits, little-endian signed)";
        let parts: Vec<&str> = text.split(':').collect();
        let [rate, channels, bits] = parts[..] else {
            return Err(format!("invalid PCM format {text:?}; {usage}"));
        };
        let sample_rate: u32 = rate
            .parse()
            .map_err(|_| format!("invalid sample rate {rate:?}; {usage}"))?;
        let channels: u16 = channels
            .parse()
            .map_err(|_| format!("invalid channel count {channels:?}; {usage}"))?;
        let bit_depth: u16 = bits
            .parse()
            .map_err(|_| format!("invalid bit depth {bits:?}; {usage}"))?;
        if !(8_000..=384_000).contains(&sample_rate) {
            return Err(format!(
                "sample rate {sample_rate} Hz is outside 8000 to 384000 Hz; {usage}"
            ));
        }
        if !(1..=8).contains(&channels) {
            return Err(format!(
                "channel count {channels} is outside 1 to 8; {usage}"
            ));
        }
        if ![16, 24, 32].contains(&bit_depth) {
            return Err(format!(
                "bit depth {bit_depth} is not 16, 24 or 32; {usage}"
            ));
        }
        Ok(PcmFormat {
            sample_rate,
            channels,
            bit_depth,
        })
    }
}

#[derive(Default)]
struct Buffer {
    samples: VecDeque<f32>,
    /// The stream ended or failed; no more samples come.
    ended: bool,
}

/// A PCM stream decoded on a background thread.
pub struct PcmPipe {
    format: PcmFormat,
    buffer: Mutex<Buffer>,
    /// Wakes the reading thread when the consumer made room.
    room: Condvar,
    claimed: AtomicBool,
}

impl std::fmt::Debug for PcmPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcmPipe")
            .field("format", &self.format)
            .finish()
    }
}

impl PcmPipe {
    /// Starts a thread that decodes `reader` as `format` until it ends.
    pub fn spawn(format: PcmFormat, mut reader: impl Read + Send + 'static) -> Arc<PcmPipe> {
        let pipe = Arc::new(PcmPipe {
            format,
            buffer: Mutex::new(Buffer::default()),
            room: Condvar::new(),
            claimed: AtomicBool::new(false),
        });
        let writer = pipe.clone();
        std::thread::spawn(move || {
            let frame_bytes = usize::from(format.channels) * usize::from(format.bit_depth / 8);
            let limit = format.sample_rate as usize * usize::from(format.channels) * BUFFER_SECONDS;
            let mut bytes = vec![0u8; READ_BYTES];
            let mut carry: Vec<u8> = Vec::new();
            loop {
                let read = match reader.read(&mut bytes) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(err) => {
                        tracing::error!(cause = %err, "reading raw PCM failed; ending the stream");
                        break;
                    }
                };
                carry.extend_from_slice(&bytes[..read]);
                let whole = carry.len() / frame_bytes * frame_bytes;
                let mut samples = Vec::new();
                if decode_pcm(
                    &carry[..whole],
                    format.bit_depth,
                    format.channels,
                    &mut samples,
                )
                .is_err()
                {
                    break;
                }
                carry.drain(..whole);
                let mut buffer = writer.buffer.lock().expect("pipe buffer lock");
                while buffer.samples.len() >= limit {
                    buffer = writer.room.wait(buffer).expect("pipe buffer lock");
                }
                buffer.samples.extend(samples);
            }
            writer.buffer.lock().expect("pipe buffer lock").ended = true;
        });
        pipe
    }

    pub fn format(&self) -> PcmFormat {
        self.format
    }

    /// Claims the pipe for one reader. Returns `None` while another reader
    /// has it.
    pub fn claim(self: &Arc<Self>) -> Option<PipeReader> {
        if self.claimed.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(PipeReader { pipe: self.clone() })
    }
}

/// The one reader of a [`PcmPipe`]; dropping it frees the pipe.
pub struct PipeReader {
    pipe: Arc<PcmPipe>,
}

impl PipeReader {
    pub fn format(&self) -> PcmFormat {
        self.pipe.format
    }

    /// Checks whether `frames` frames can be read without waiting: they are
    /// buffered, or the stream has ended.
    pub fn ready(&self, frames: usize) -> bool {
        let buffer = self.pipe.buffer.lock().expect("pipe buffer lock");
        buffer.ended || buffer.samples.len() >= frames * usize::from(self.pipe.format.channels)
    }

    /// Appends up to `max_frames` buffered frames to `out` and returns how
    /// many; 0 means the stream has ended or nothing is buffered yet.
    pub fn read(&mut self, out: &mut Vec<f32>, max_frames: usize) -> usize {
        let channels = usize::from(self.pipe.format.channels);
        let mut buffer = self.pipe.buffer.lock().expect("pipe buffer lock");
        let frames = (buffer.samples.len() / channels).min(max_frames);
        out.extend(buffer.samples.drain(..frames * channels));
        drop(buffer);
        self.pipe.room.notify_one();
        frames
    }

    /// Checks whether the stream has ended and every frame was read.
    pub fn is_finished(&self) -> bool {
        let buffer = self.pipe.buffer.lock().expect("pipe buffer lock");
        buffer.ended && buffer.samples.is_empty()
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        self.pipe.claimed.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_bad_ones_are_named() {
        assert_eq!(
            "44100:1:24".parse::<PcmFormat>(),
            Ok(PcmFormat {
                sample_rate: 44_100,
                channels: 1,
                bit_depth: 24
            })
        );
        assert!("48000:2"
            .parse::<PcmFormat>()
            .unwrap_err()
            .contains("RATE:CHANNELS:BITS"));
        assert!("48000:2:8"
            .parse::<PcmFormat>()
            .unwrap_err()
            .contains("bit depth 8"));
        assert!("fast:2:16"
            .parse::<PcmFormat>()
            .unwrap_err()
            .contains("\"fast\""));
    }

    #[test]
    fn pipe_decodes_and_one_reader_claims_it() {
        let bytes: Vec<u8> = [1000i16, -1000, 2000, -2000, 3000]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let format = PcmFormat {
            sample_rate: 48_000,
            channels: 2,
            bit_depth: 16,
        };
        let pipe = PcmPipe::spawn(format, std::io::Cursor::new(bytes));
        let mut reader = pipe.claim().unwrap();
        assert!(
            pipe.claim().is_none(),
            "a second reader while the first holds it"
        );
        while !reader.ready(10) {
            std::thread::yield_now();
        }
        let mut out = Vec::new();
        assert_eq!(
            reader.read(&mut out, 10),
            2,
            "the trailing half frame is dropped"
        );
        assert_eq!(
            out,
            vec![
                1000.0 / 32768.0,
                -1000.0 / 32768.0,
                2000.0 / 32768.0,
                -2000.0 / 32768.0
            ]
        );
        assert!(reader.is_finished());
        drop(reader);
        assert!(pipe.claim().is_some());
    }
}
