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

/// Audio, in microseconds, that a player already holding almost its whole
/// lead waits to accumulate before it is sent more. Its chunks then go out
/// about five at a time in one write, where topping up every 10 ms pump
/// sent them one by one, which cost a task wakeup and a socket write per
/// chunk and player. Such a player keeps between the lead minus this and
/// the lead.
const TOP_UP_US: i64 = 100_000;

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
        if !self.in_flight.is_empty() {
            let Some(next) = encoding.chunk(index, program) else {
                return Ok(());
            };
            if next.timestamp_us > horizon_us - TOP_UP_US {
                return Ok(());
            }
        }
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::DuplexStream;
    use tokio::sync::mpsc;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::WebSocketStream;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::audio::tone::ToneKind;
    use crate::audio::Codec;
    use crate::dialect::Dialect;
    use crate::protocol::RepeatMode;
    use crate::server::queue::{Queue, QueueEntry};
    use crate::session::{SessionEvent, Side};
    use crate::transport::Limits;

    const LEAD_US: i64 = 2_000_000;

    /// Returns a looping sine program starting at 0 µs with `until_us`
    /// of it produced.
    fn program(until_us: i64) -> Program {
        let mut queue = Queue::new(
            vec![QueueEntry::Tone(ToneKind::Sine)],
            RepeatMode::All,
            false,
        );
        let mut program = Program::start(&mut queue, 0, 0).unwrap();
        program.produce_until(&mut queue, until_us);
        program
    }

    /// Starts a session whose peer never reads, over an in-memory pipe
    /// large enough for everything the test sends. The session lasts as
    /// long as the returned pipe end and event receiver.
    async fn session() -> (SessionHandle, DuplexStream, mpsc::Receiver<SessionEvent>) {
        let (server_end, client_end) = tokio::io::duplex(8 << 20);
        let ws = WebSocketStream::from_raw_socket(server_end, Role::Server, None).await;
        let (events_tx, events) = mpsc::channel(64);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let handle = crate::session::spawn(
            ws,
            peer,
            Side::Server,
            Dialect::SendspinV1.codec(),
            Limits::default(),
            events_tx,
            &TaskTracker::new(),
        );
        (handle, client_end, events)
    }

    #[tokio::test]
    async fn full_player_is_topped_up_in_batches() {
        let program = program(3_000_000);
        let format = AudioFormat {
            codec: Codec::Pcm,
            sample_rate: 48_000,
            channels: 2,
            bit_depth: 16,
        };
        let mut encoding = SharedEncoding::new(format, &program, 0, Default::default()).unwrap();
        let (handle, _peer, _events) = session().await;
        let mut stream = PlayerStream::new(0, &encoding, u64::MAX, 0);

        // At most 10 chunks (200 ms) go out per pump until the player has
        // the lead minus 100 ms.
        for _ in 0..20 {
            stream
                .pump(&program, &mut encoding, &handle, 0, LEAD_US)
                .unwrap();
        }
        let full = stream.chunks_sent;
        assert_eq!(full, 100, "20 ms chunks from 0 µs to 1.98 s");
        assert_eq!(stream.sent_ahead_us(0), LEAD_US);

        // A player holding nearly its lead is sent nothing every 10 ms...
        for now_us in [10_000, 40_000, 80_000, 99_000] {
            stream
                .pump(&program, &mut encoding, &handle, now_us, now_us + LEAD_US)
                .unwrap();
            assert_eq!(stream.chunks_sent, full, "at {now_us} µs");
        }
        // ...until 100 ms of audio is due, which goes out at once.
        stream
            .pump(&program, &mut encoding, &handle, 100_000, 100_000 + LEAD_US)
            .unwrap();
        assert_eq!(stream.chunks_sent, full + 6, "chunks from 2.0 s to 2.1 s");
        assert_eq!(stream.sent_ahead_us(100_000), LEAD_US + 20_000);
    }

    #[tokio::test]
    async fn empty_player_is_sent_at_once() {
        let program = program(3_000_000);
        let format = AudioFormat {
            codec: Codec::Pcm,
            sample_rate: 48_000,
            channels: 2,
            bit_depth: 16,
        };
        let mut encoding = SharedEncoding::new(format, &program, 0, Default::default()).unwrap();
        let (handle, _peer, _events) = session().await;
        // A late joiner starts with nothing in flight, close to the horizon.
        let mut stream = PlayerStream::new(0, &encoding, u64::MAX, 99);
        stream
            .pump(&program, &mut encoding, &handle, 0, LEAD_US)
            .unwrap();
        assert_eq!(stream.chunks_sent, 2, "chunks at 1.98 s and 2.0 s");
    }
}
