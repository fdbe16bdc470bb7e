//! One queue entry opened for playback and converted to the format of the
//! timeline it joins.

use crate::audio::convert::map_channels;
use crate::audio::pipe::PipeReader;
use crate::audio::resample::StreamResampler;
use crate::audio::source::{SourceDecoder, SourceError};
use crate::audio::tone::{ToneSource, TONE_CHANNELS, TONE_RATE};

use super::queue::QueueEntry;

/// Source frames read per step while converting.
const READ_FRAMES: usize = 1024;

/// The decoded audio of one entry, in its own format.
pub enum TrackAudio {
    File(SourceDecoder),
    Tone(ToneSource),
    Pipe(PipeReader),
}

impl TrackAudio {
    pub fn open(entry: &QueueEntry) -> Result<TrackAudio, String> {
        Ok(match entry {
            QueueEntry::File(path) => {
                TrackAudio::File(SourceDecoder::open(path).map_err(|err| err.to_string())?)
            }
            QueueEntry::Tone(kind) => TrackAudio::Tone(ToneSource::new(*kind)),
            QueueEntry::Pipe(pipe) => TrackAudio::Pipe(
                pipe.0
                    .claim()
                    .ok_or("stdin already feeds another group; stop that group first")?,
            ),
        })
    }

    /// Whether `frames` frames can be read now: always, except for a live
    /// stream whose data has not arrived yet.
    pub fn ready(&self, frames: usize) -> bool {
        match self {
            TrackAudio::Pipe(reader) => reader.ready(frames),
            _ => true,
        }
    }

    pub fn sample_rate(&self) -> u32 {
        match self {
            TrackAudio::File(decoder) => decoder.info().sample_rate,
            TrackAudio::Tone(_) => TONE_RATE,
            TrackAudio::Pipe(reader) => reader.format().sample_rate,
        }
    }

    pub fn channels(&self) -> u16 {
        match self {
            TrackAudio::File(decoder) => decoder.info().channels,
            TrackAudio::Tone(_) => TONE_CHANNELS,
            TrackAudio::Pipe(reader) => reader.format().channels,
        }
    }

    /// Length in milliseconds, when known; a tone has none.
    pub fn duration_ms(&self) -> Option<u64> {
        match self {
            TrackAudio::File(decoder) => {
                let info = decoder.info();
                info.duration_frames
                    .map(|frames| frames * 1000 / u64::from(info.sample_rate.max(1)))
            }
            TrackAudio::Tone(_) | TrackAudio::Pipe(_) => None,
        }
    }

    fn read(&mut self, out: &mut Vec<f32>, max_frames: usize) -> Result<usize, SourceError> {
        match self {
            TrackAudio::File(decoder) => decoder.read(out, max_frames),
            TrackAudio::Tone(tone) => Ok(tone.read(out, max_frames)),
            TrackAudio::Pipe(reader) => Ok(reader.read(out, max_frames)),
        }
    }

    /// Skips the first `frames` frames; a file decodes and drops them.
    /// Returns the frames skipped, fewer when the track is shorter.
    pub fn skip(&mut self, frames: u64) -> Result<u64, SourceError> {
        match self {
            TrackAudio::Tone(tone) => {
                tone.skip(frames);
                Ok(frames)
            }
            TrackAudio::Pipe(reader) => {
                let mut scratch = Vec::new();
                Ok(reader.read(&mut scratch, frames as usize) as u64)
            }
            TrackAudio::File(decoder) => {
                let mut skipped = 0;
                let mut scratch = Vec::new();
                while skipped < frames {
                    scratch.clear();
                    let wanted = (frames - skipped).min(READ_FRAMES as u64 * 16) as usize;
                    let read = decoder.read(&mut scratch, wanted)?;
                    if read == 0 {
                        break;
                    }
                    skipped += read as u64;
                }
                Ok(skipped)
            }
        }
    }
}

/// A track's audio in the timeline's rate and channels.
pub struct TrackFeed {
    audio: TrackAudio,
    channels: u16,
    /// Converts the track's rate to the timeline's; `None` when they match.
    resampler: Option<StreamResampler>,
    /// Converted samples not yet returned.
    pending: Vec<f32>,
    ended: bool,
}

impl TrackFeed {
    pub fn new(audio: TrackAudio, rate: u32, channels: u16) -> Result<TrackFeed, String> {
        let resampler = if audio.sample_rate() == rate {
            None
        } else {
            Some(
                StreamResampler::new(audio.sample_rate(), rate, channels).map_err(|err| {
                    format!(
                        "cannot resample {} Hz to {rate} Hz: {err}",
                        audio.sample_rate()
                    )
                })?,
            )
        };
        Ok(TrackFeed {
            audio,
            channels,
            resampler,
            pending: Vec::new(),
            ended: false,
        })
    }

    /// Whether a chunk of `frames` frames can be read now.
    pub fn ready(&self, frames: usize) -> bool {
        self.audio.ready(frames)
    }

    /// Appends up to `max_frames` timeline frames to `out`; 0 at the end of
    /// the track.
    pub fn read(&mut self, out: &mut Vec<f32>, max_frames: usize) -> Result<usize, SourceError> {
        if self.resampler.is_none() && self.audio.channels() == self.channels {
            return self.audio.read(out, max_frames);
        }
        let channels = usize::from(self.channels);
        while self.pending.len() < max_frames * channels && !self.ended {
            let mut raw = Vec::new();
            let read = self.audio.read(&mut raw, READ_FRAMES)?;
            let mapped = if self.audio.channels() == self.channels {
                raw
            } else {
                map_channels(&raw, self.audio.channels(), self.channels)
            };
            let converted = match (&mut self.resampler, read) {
                (Some(resampler), 0) => {
                    self.ended = true;
                    resampler.flush()
                }
                (Some(resampler), _) => resampler.process(&mapped),
                (None, 0) => {
                    self.ended = true;
                    Vec::new()
                }
                (None, _) => mapped,
            };
            self.pending.extend_from_slice(&converted);
        }
        let take = (self.pending.len() / channels).min(max_frames);
        out.extend(self.pending.drain(..take * channels));
        Ok(take)
    }
}
