//! One player's stream: its place in the group's shared encoding of its
//! format, sent ahead of time within the player's buffer capacity.
//!
//! Players of one format share one encoding (see [`SharedEncoding`]), so
//! every player stays on the group's one timeline whatever its format.

use std::collections::VecDeque;

use crate::audio::AudioFormat;
use crate::dialect::Outgoing;
use crate::session::{SendError, SessionHandle};

use super::encoding::SharedEncoding;
use super::program::Program;

/// Most chunks one stream sends per pump, 200 ms of audio. The server
/// pumps every 10 ms, so a stream still fills 20 times faster than real
/// time, and when a program starts every player gets its first chunks
/// before any player gets its whole lead.
const MAX_CHUNKS_PER_PUMP: usize = 10;

/// Audio of one player that has been sent but not yet heard.
struct InFlight {
    end_us: i64,
    bytes: usize,
}

/// A player's position in its encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cursor {
    /// At the first chunk produced from this source chunk or later, which
    /// may not be encoded yet.
    FromSeq(u64),
    /// At this chunk index of the encoding.
    Index(u64),
}

pub struct PlayerStream {
    pub format: AudioFormat,
    /// Id of the group's encoding this stream reads.
    pub encoding: u64,
    cursor: Cursor,
    in_flight: VecDeque<InFlight>,
    in_flight_bytes: usize,
    capacity: usize,
    warned_small_capacity: bool,
    /// Chunks sent, for reports.
    pub chunks_sent: u64,
}

impl PlayerStream {
    /// Creates a stream that reads `encoding` (id `encoding_id`) from the
    /// first chunk produced from source chunk `seq` or later.
    pub fn new(
        encoding_id: u64,
        encoding: &SharedEncoding,
        capacity: u64,
        seq: u64,
    ) -> PlayerStream {
        PlayerStream {
            format: encoding.format,
            encoding: encoding_id,
            cursor: Cursor::FromSeq(seq),
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            warned_small_capacity: false,
            chunks_sent: 0,
        }
    }

    /// Returns the source chunk of the first chunk not yet sent.
    pub fn next_source_seq(&self, encoding: &SharedEncoding) -> u64 {
        match self.cursor {
            Cursor::FromSeq(seq) => seq,
            Cursor::Index(index) => encoding.source_seq_at(index),
        }
    }

    /// Moves the stream to `encoding` (id `encoding_id`), from the first
    /// chunk produced from source chunk `seq` or later.
    ///
    /// With `keeps_output`, the decoded audio keeps its rate, channels and
    /// bit depth: the player plays on without a gap, and audio already sent
    /// stays counted against its buffer capacity. Otherwise a player drops
    /// its buffered audio to change its output format, so nothing sent
    /// before counts any more.
    pub fn switch_to(
        &mut self,
        encoding_id: u64,
        encoding: &SharedEncoding,
        seq: u64,
        keeps_output: bool,
    ) {
        if !keeps_output {
            self.in_flight.clear();
            self.in_flight_bytes = 0;
        }
        self.format = encoding.format;
        self.encoding = encoding_id;
        self.cursor = Cursor::FromSeq(seq);
    }

    /// Audio sent and not yet due at `now_us`, in microseconds: what the
    /// player holds if it received everything.
    pub fn sent_ahead_us(&self, now_us: i64) -> i64 {
        self.in_flight
            .back()
            .map_or(0, |last| (last.end_us - now_us).max(0))
    }

    /// Whether every chunk of an exhausted program has been sent.
    pub fn is_drained(&self, encoding: &SharedEncoding, program: &Program) -> bool {
        match self.cursor {
            Cursor::FromSeq(_) => false,
            Cursor::Index(index) => encoding.is_drained(index, program),
        }
    }

    /// Sends what fits: chunks up to `horizon_us`, bounded by the player's
    /// buffer capacity counted over audio not yet heard at `now_us`.
    pub fn pump(
        &mut self,
        program: &Program,
        encoding: &mut SharedEncoding,
        handle: &SessionHandle,
        now_us: i64,
        horizon_us: i64,
    ) -> Result<(), SendError> {
        while let Some(front) = self.in_flight.front() {
            if front.end_us > now_us {
                break;
            }
            self.in_flight_bytes -= front.bytes;
            self.in_flight.pop_front();
        }
        let mut index = match self.cursor {
            Cursor::Index(index) => index,
            Cursor::FromSeq(seq) => match encoding.index_from_seq(seq, program) {
                Some(index) => index,
                None => return Ok(()),
            },
        };
        // Chunks dropped from the encoding were heard before they could be
        // sent to this player.
        index = index.max(encoding.first_index());
        self.cursor = Cursor::Index(index);
        for _ in 0..MAX_CHUNKS_PER_PUMP {
            let Some(chunk) = encoding.chunk(index, program) else {
                return Ok(());
            };
            let bytes = chunk.frame.payload().len();
            if chunk.timestamp_us > horizon_us
                || !has_room(
                    &mut self.warned_small_capacity,
                    self.in_flight.is_empty(),
                    self.in_flight_bytes + bytes <= self.capacity,
                    self.capacity,
                    bytes,
                )
                || handle.queued_bytes() > self.queue_limit()
            {
                return Ok(());
            }
            // A clone shares the encoded bytes: no per-player copy.
            let frame = chunk.frame.clone();
            let end_us = chunk.end_us;
            handle.send(Outgoing::Binary(frame))?;
            index += 1;
            self.cursor = Cursor::Index(index);
            self.in_flight.push_back(InFlight { end_us, bytes });
            self.in_flight_bytes += bytes;
            self.chunks_sent += 1;
        }
        Ok(())
    }

    /// Bytes that may wait in the session's queue before this stream holds
    /// back: half a second of audio as PCM in the player's format, at least
    /// 1 MiB.
    fn queue_limit(&self) -> usize {
        let half_second = self.format.sample_rate as usize * self.format.pcm_frame_bytes() / 2;
        half_second.max(1 << 20)
    }
}

/// Returns whether a chunk of `bytes` may be sent: it `fits` the player's
/// buffer capacity, or nothing is in flight. Warns once per stream when the
/// capacity is smaller than one chunk.
fn has_room(
    warned_small_capacity: &mut bool,
    nothing_in_flight: bool,
    fits: bool,
    capacity: usize,
    bytes: usize,
) -> bool {
    if fits {
        return true;
    }
    if nothing_in_flight {
        // The player cannot hold even one chunk. Sending one at a time
        // still lets it play; refusing would leave it silent for good.
        if !*warned_small_capacity {
            *warned_small_capacity = true;
            tracing::warn!(
                buffer_capacity = capacity,
                chunk_bytes = bytes,
                "player buffer_capacity is smaller than one chunk; sending one chunk at a time"
            );
        }
        return true;
    }
    false
}
