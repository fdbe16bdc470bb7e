//! A log of where each output block sits on the server timeline.
//!
//! Every block an output renders becomes one [`BlockRecord`], written as
//! one JSON line by a writer thread, so the output never waits for the
//! disk. The format is described in `docs/sync.md`. Two players on one host
//! log `heard_monotonic_us` on the same clock, so the skew between them is
//! the difference of `content_server_us - heard_monotonic_us` at equal
//! `heard_monotonic_us`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::clock::to_system_monotonic_us;
use crate::player::scheduler::{FillReport, PlaybackState};
use crate::sync::ClockSnapshot;

/// Records queued for the writer thread before new ones are dropped and
/// counted, about 40 s of 10 ms blocks.
const QUEUE_RECORDS: usize = 4_096;

/// One output block, as logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// Blocks rendered by this output before this one.
    pub block: u64,
    /// Local time at which the block's first frame is heard, in µs of the
    /// player's process clock.
    pub heard_local_us: i64,
    /// The same instant on the host's `CLOCK_MONOTONIC`, in µs, comparable
    /// between processes on one host.
    pub heard_monotonic_us: i64,
    /// The same instant mapped to the server timeline by the player's clock
    /// estimate, in µs: the server time at which the first frame sounds.
    pub heard_server_us: i64,
    /// Server timestamp of the audio in the block's first frame, in µs,
    /// extrapolated from the first frame taken from a chunk. `None` when
    /// the block contains no audio from a chunk.
    pub content_server_us: Option<i64>,
    /// Frames in the block.
    pub frames: usize,
    /// Sample rate of the block in Hz, 0 when no stream is active.
    pub sample_rate: u32,
    /// Playback state after the block: `idle`, `buffering` or `playing`.
    pub state: PlaybackState,
    /// Position error measured before the block, in frames; positive means
    /// the player was early. `None` while playback is not anchored.
    pub position_error_frames: Option<f64>,
    /// Frames repeated (positive) or skipped (negative) at the block's end
    /// to correct drift.
    pub correction_frames: i64,
    /// Jumps to the clock-mapped position in this block.
    pub reanchors: u64,
    /// Clock estimate used for the block.
    pub clock: ClockRecord,
}

/// The fields of a [`ClockSnapshot`] that a log reader needs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockRecord {
    /// Server minus local time at the heard instant, in µs.
    pub offset_us: f64,
    /// Drift in ppm.
    pub drift_ppm: f64,
    /// Standard deviation of the offset estimate in µs.
    pub error_us: f64,
    /// Round trip of the latest accepted exchange in µs.
    pub rtt_us: i64,
    /// Exchanges accepted since the filter started.
    pub samples: u64,
    /// Whether the estimate was good enough to play.
    pub converged: bool,
}

impl BlockRecord {
    /// Builds the record of a block of `frames` frames whose first frame is
    /// heard at `heard_local_us`.
    pub fn new(
        block: u64,
        heard_local_us: i64,
        frames: usize,
        report: &FillReport,
        clock: &ClockSnapshot,
    ) -> Self {
        let sample_rate = report.format.map_or(0, |format| format.sample_rate);
        let content_server_us = match (report.first_audio_frame, report.first_audio_server_us) {
            (Some(frame), Some(server_us)) if sample_rate > 0 => {
                Some(server_us - (frame as i64 * 1_000_000 / i64::from(sample_rate)))
            }
            _ => None,
        };
        let heard_server_us = clock.local_to_server(heard_local_us);
        let counters = &report.counters;
        BlockRecord {
            block,
            heard_local_us,
            heard_monotonic_us: to_system_monotonic_us(heard_local_us),
            heard_server_us,
            content_server_us,
            frames,
            sample_rate,
            state: report.state,
            position_error_frames: report.position_error_frames,
            correction_frames: counters.frames_inserted as i64 - counters.frames_dropped as i64,
            reanchors: counters.reanchors,
            clock: ClockRecord {
                offset_us: (heard_server_us - heard_local_us) as f64,
                drift_ppm: clock.drift_ppm(),
                error_us: if clock.error_us.is_finite() {
                    clock.error_us
                } else {
                    -1.0
                },
                rtt_us: clock.rtt_us,
                samples: clock.samples,
                converged: clock.converged,
            },
        }
    }
}

/// Writes [`BlockRecord`]s as JSON lines to a file on its own thread.
///
/// Dropping the log flushes and closes the file.
pub struct SyncLog {
    path: PathBuf,
    sender: Option<SyncSender<BlockRecord>>,
    writer: Option<JoinHandle<std::io::Result<()>>>,
    dropped: u64,
}

impl SyncLog {
    /// Creates or truncates the file at `path` and starts the writer.
    pub fn create(path: &Path) -> std::io::Result<SyncLog> {
        let file = File::create(path)?;
        let (sender, receiver) = sync_channel::<BlockRecord>(QUEUE_RECORDS);
        let writer = std::thread::Builder::new()
            .name("sync-log".into())
            .spawn(move || {
                let mut out = BufWriter::new(file);
                for record in receiver {
                    serde_json::to_writer(&mut out, &record)?;
                    out.write_all(b"\n")?;
                }
                out.flush()
            })?;
        Ok(SyncLog {
            path: path.to_path_buf(),
            sender: Some(sender),
            writer: Some(writer),
            dropped: 0,
        })
    }

    /// Queues one record without blocking. A full queue drops it.
    pub fn record(&mut self, record: BlockRecord) {
        let Some(sender) = self.sender.as_ref() else {
            return;
        };
        match sender.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped == 1 {
                    tracing::warn!(path = %self.path.display(), "sync log writer fell behind; dropping records");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!(path = %self.path.display(), "sync log writer stopped; no more records are written");
                self.sender = None;
            }
        }
    }

    fn finish(&mut self) {
        self.sender = None;
        let Some(writer) = self.writer.take() else {
            return;
        };
        match writer.join() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::error!(path = %self.path.display(), error = %err, "failed to write the sync log")
            }
            Err(_) => tracing::error!(path = %self.path.display(), "sync log writer panicked"),
        }
        if self.dropped > 0 {
            tracing::warn!(path = %self.path.display(), dropped = self.dropped, "sync log records dropped");
        }
    }
}

impl Drop for SyncLog {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Reads a sync log written by [`SyncLog`].
pub fn read_sync_log(path: &Path) -> std::io::Result<Vec<BlockRecord>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).map_err(std::io::Error::other))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::AudioFormat;

    #[test]
    fn record_extrapolates_content_time() {
        let report = FillReport {
            state: PlaybackState::Playing,
            format: Some(AudioFormat::pcm(48_000, 2, 16)),
            first_audio_frame: Some(48),
            first_audio_server_us: Some(2_001_000),
            ..FillReport::default()
        };
        let clock = ClockSnapshot {
            offset_us: 500.0,
            samples: 3,
            converged: true,
            ..ClockSnapshot::default()
        };

        let record = BlockRecord::new(7, 1_000_000, 480, &report, &clock);

        assert_eq!(record.content_server_us, Some(2_000_000));
        assert_eq!(record.heard_server_us, 1_000_500);
        assert_eq!(record.clock.offset_us, 500.0);
        assert_eq!(record.state, PlaybackState::Playing);
        let line = serde_json::to_value(&record).unwrap();
        assert_eq!(line["state"], "playing");
    }

    #[test]
    fn log_round_trips_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.jsonl");
        let report = FillReport::default();
        let clock = ClockSnapshot::default();
        let mut log = SyncLog::create(&path).unwrap();
        for block in 0..3 {
            log.record(BlockRecord::new(
                block,
                block as i64 * 10_000,
                480,
                &report,
                &clock,
            ));
        }
        drop(log);

        let records = read_sync_log(&path).unwrap();

        assert_eq!(records.len(), 3);
        assert_eq!(records[2].block, 2);
        assert_eq!(records[2].heard_local_us, 20_000);
        assert_eq!(records[0].content_server_us, None);
    }
}
