//! A program: one source decoded onto one timeline of fixed-length chunks
//! stamped on the server clock.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::audio::source::SourceDecoder;

/// Length of one audio chunk in milliseconds. Every chunk but a source's
/// last holds exactly this much audio.
pub const CHUNK_MS: u32 = 20;

/// A chunk of the source timeline, in the source's rate and channels.
#[derive(Clone, Debug)]
pub struct SourceChunk {
    pub seq: u64,
    /// Frames of the timeline before this chunk.
    pub start_frame: u64,
    /// Server clock in microseconds of the chunk's first frame.
    pub timestamp_us: i64,
    pub frames: usize,
    pub samples: Arc<Vec<f32>>,
}

/// A decoded source laid out on the server clock.
pub struct Program {
    decoder: SourceDecoder,
    pub sample_rate: u32,
    pub channels: u16,
    looping: bool,
    chunk_frames: usize,
    /// Server clock in microseconds of the timeline's first frame.
    start_us: i64,
    next_seq: u64,
    produced_frames: u64,
    chunks: VecDeque<SourceChunk>,
    ended: bool,
    /// Packets the decoder could not read.
    pub source_errors: u64,
}

impl Program {
    /// Starts a program whose first frame sounds at `start_us`.
    pub fn new(decoder: SourceDecoder, looping: bool, start_us: i64) -> Program {
        let info = decoder.info().clone();
        let chunk_frames = (info.sample_rate as usize * CHUNK_MS as usize / 1000).max(1);
        Program {
            decoder,
            sample_rate: info.sample_rate,
            channels: info.channels,
            looping,
            chunk_frames,
            start_us,
            next_seq: 0,
            produced_frames: 0,
            chunks: VecDeque::new(),
            ended: false,
            source_errors: 0,
        }
    }

    /// Frames in every chunk but the source's last.
    pub fn chunk_frames(&self) -> usize {
        self.chunk_frames
    }

    /// Server time in microseconds of the timeline frame `frame`.
    pub fn frame_time_us(&self, frame: u64) -> i64 {
        self.start_us + (frame as i128 * 1_000_000 / self.sample_rate as i128) as i64
    }

    /// Server clock in microseconds of the timeline's first frame.
    pub fn start_us(&self) -> i64 {
        self.start_us
    }

    /// Frames of the timeline produced so far.
    pub fn produced_frames(&self) -> u64 {
        self.produced_frames
    }

    /// Server time at which everything produced so far has been heard.
    pub fn produced_until_us(&self) -> i64 {
        self.frame_time_us(self.produced_frames)
    }

    /// Whether the source has ended and every chunk has been produced.
    pub fn is_exhausted(&self) -> bool {
        self.ended
    }

    /// Decodes chunks until the timeline reaches `horizon_us` or the source
    /// ends.
    pub fn produce_until(&mut self, horizon_us: i64) {
        while !self.ended && self.produced_until_us() < horizon_us {
            match self.read_chunk() {
                Some(chunk) => self.chunks.push_back(chunk),
                None => self.ended = true,
            }
        }
    }

    fn read_chunk(&mut self) -> Option<SourceChunk> {
        let wanted = self.chunk_frames;
        let mut samples = Vec::with_capacity(wanted * self.channels as usize);
        let mut rewound = false;
        while samples.len() < wanted * self.channels as usize {
            let missing = wanted - samples.len() / self.channels as usize;
            match self.decoder.read(&mut samples, missing) {
                Ok(0) if self.looping && !rewound => {
                    rewound = true;
                    if let Err(err) = self.decoder.rewind() {
                        tracing::error!(cause = %err, "cannot rewind the source to loop it");
                        break;
                    }
                }
                Ok(0) => break,
                Ok(_) => rewound = false,
                Err(err) => {
                    self.source_errors += 1;
                    tracing::error!(cause = %err, "source read failed; ending the program");
                    break;
                }
            }
        }
        let frames = samples.len() / self.channels as usize;
        if frames == 0 {
            return None;
        }
        samples.truncate(frames * self.channels as usize);
        let chunk = SourceChunk {
            seq: self.next_seq,
            start_frame: self.produced_frames,
            timestamp_us: self.frame_time_us(self.produced_frames),
            frames,
            samples: Arc::new(samples),
        };
        self.next_seq += 1;
        self.produced_frames += frames as u64;
        Some(chunk)
    }

    pub fn chunk(&self, seq: u64) -> Option<&SourceChunk> {
        let first = self.chunks.front()?.seq;
        self.chunks.get(seq.checked_sub(first)? as usize)
    }

    /// Sequence number of the first kept chunk that starts at or after
    /// `time_us`, or of the next chunk to be produced.
    pub fn first_seq_from(&self, time_us: i64) -> u64 {
        self.chunks
            .iter()
            .find(|chunk| chunk.timestamp_us >= time_us)
            .map_or(self.next_seq, |chunk| chunk.seq)
    }

    /// Sequence number the next produced chunk will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Forgets chunks that have been heard completely by `now_us`: no
    /// player may receive them any more, and late joiners get only future
    /// chunks.
    pub fn discard_heard(&mut self, now_us: i64) {
        while let Some(front) = self.chunks.front() {
            let end = self.frame_time_us(front.start_frame + front.frames as u64);
            if end > now_us {
                break;
            }
            self.chunks.pop_front();
        }
    }

    /// Sequence number of the oldest kept chunk.
    pub fn first_kept_seq(&self) -> u64 {
        self.chunks.front().map_or(self.next_seq, |chunk| chunk.seq)
    }
}
