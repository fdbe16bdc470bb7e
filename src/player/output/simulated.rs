//! A simulated sound card that runs on the local monotonic clock.
//!
//! The `wav:` and `null` outputs use it in place of hardware. Like a real
//! card it pulls fixed blocks of [`BLOCK_US`] (whole frames, so 480 frames at
//! 48 kHz and 441 at 44.1 kHz) and requests each block a latency before it
//! is heard ([`SIMULATED_LATENCY_US`] by default). Block times come from the
//! frame count since the card started, not from the thread's wake-ups, so
//! scheduling jitter changes only when a block is rendered, not what it
//! contains.
//!
//! A [`SinkModel`] gives the card's sample clock a drift: at +100 ppm it
//! plays 48 004.8 frames per second of local time at a nominal 48 kHz, as a
//! real card's crystal might. The scheduler must then drop frames to stay on
//! the server timeline, so drift correction can be tested without hardware.
//!
//! The card starts when a stream starts and restarts when the format
//! changes. It stops while no stream is active.

use std::sync::Arc;
use std::time::Duration;

use crate::audio::AudioFormat;
use crate::clock::now_us;
use crate::player::scheduler::{FillReport, Scheduler};

use super::recorder::Recorder;
use super::sync_log::{BlockRecord, SyncLog};
use super::{ClockSource, OutputError, OutputOptions, OutputSummary, OutputThread, StopFlag};

/// Duration of one simulated block in microseconds.
pub const BLOCK_US: i64 = 10_000;

/// Modelled output latency in microseconds: each block is rendered this long
/// before its first frame is heard, as with a card that queues two blocks.
pub const SIMULATED_LATENCY_US: i64 = 20_000;

/// Model of a simulated card's clock and latency.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SinkModel {
    /// Rate error of the card's sample clock against the local monotonic
    /// clock, in ppm. Positive plays faster.
    pub drift_ppm: f64,
    /// Time from a block's request until its first frame is heard, in µs.
    pub latency_us: i64,
}

impl Default for SinkModel {
    fn default() -> Self {
        SinkModel {
            drift_ppm: 0.0,
            latency_us: SIMULATED_LATENCY_US,
        }
    }
}

impl SinkModel {
    /// Local microseconds that `frames` frames last on this card.
    fn frames_to_local_us(&self, frames: u64, sample_rate: u32) -> i64 {
        let rate = f64::from(sample_rate) * (1.0 + self.drift_ppm * 1e-6);
        (frames as f64 * 1e6 / rate).round() as i64
    }

    /// Frames that the card plays in `local_us` microseconds.
    fn local_us_to_frames(&self, local_us: i64, sample_rate: u32) -> u64 {
        let rate = f64::from(sample_rate) * (1.0 + self.drift_ppm * 1e-6);
        (local_us.max(0) as f64 * rate / 1e6) as u64
    }
}

/// Lag in microseconds after which the card skips the blocks it missed, as a
/// real card does after an underrun, instead of rendering the backlog.
const MAX_LAG_US: i64 = 200_000;

/// Maximum wait between checks of the stop flag and the stream format, in
/// microseconds.
const POLL_US: i64 = 10_000;

/// The card's position within one stream format.
struct Timeline {
    format: AudioFormat,
    sink: SinkModel,
    /// Local time in microseconds at which the first block was requested.
    start_local_us: i64,
    frames_rendered: u64,
}

impl Timeline {
    fn block_frames(&self) -> usize {
        let frames = i64::from(self.format.sample_rate) * BLOCK_US / 1_000_000;
        frames.max(1) as usize
    }

    /// Local time in microseconds at which the next block is requested.
    fn next_request_us(&self) -> i64 {
        self.start_local_us
            + self
                .sink
                .frames_to_local_us(self.frames_rendered, self.format.sample_rate)
    }

    /// Moves the timeline to the last block boundary at or before `now_us`.
    fn skip_to(&mut self, now_us: i64) {
        let elapsed_frames = self
            .sink
            .local_us_to_frames(now_us - self.start_local_us, self.format.sample_rate);
        let block_frames = self.block_frames() as u64;
        self.frames_rendered = elapsed_frames / block_frames * block_frames;
    }
}

/// A simulated sound card, driven by calls to [`SimulatedCard::render_due`].
pub struct SimulatedCard {
    timeline: Option<Timeline>,
    buffer: Vec<f32>,
    recorder: Option<Recorder>,
    sink: SinkModel,
    sync_log: Option<SyncLog>,
    blocks: u64,
}

impl SimulatedCard {
    /// Creates a stopped card without drift and with the default latency
    /// that passes played blocks to `recorder`, or discards them when it is
    /// `None`.
    pub fn new(recorder: Option<Recorder>) -> Self {
        Self::with_sink(recorder, SinkModel::default(), None)
    }

    /// Creates a stopped card with the clock and latency of `sink` that
    /// logs every block to `sync_log`.
    pub fn with_sink(
        recorder: Option<Recorder>,
        sink: SinkModel,
        sync_log: Option<SyncLog>,
    ) -> Self {
        SimulatedCard {
            timeline: None,
            buffer: Vec::new(),
            recorder,
            sink,
            sync_log,
            blocks: 0,
        }
    }

    /// Renders every block requested up to local time `now_us` and returns
    /// the local time of the next request, or `None` while no stream is
    /// active.
    pub fn render_due(
        &mut self,
        now_us: i64,
        scheduler: &Scheduler,
        clock: &dyn ClockSource,
    ) -> Option<i64> {
        let Some(format) = scheduler.format() else {
            self.timeline = None;
            // An idle report finishes the file of the ended stream.
            self.record(&[], &FillReport::default());
            return None;
        };
        let timeline = match self.timeline.as_mut() {
            Some(timeline) if timeline.format == format => timeline,
            _ => self.timeline.insert(Timeline {
                format,
                sink: self.sink,
                start_local_us: now_us,
                frames_rendered: 0,
            }),
        };

        loop {
            let request_us = timeline.next_request_us();
            if request_us > now_us {
                return Some(request_us);
            }
            if now_us - request_us > MAX_LAG_US {
                tracing::warn!(
                    lag_us = now_us - request_us,
                    "simulated output fell behind; skipping missed blocks"
                );
                timeline.skip_to(now_us);
                continue;
            }

            let samples = timeline.block_frames() * usize::from(format.channels);
            self.buffer.resize(samples, 0.0);
            let heard_at_us = request_us + self.sink.latency_us;
            let snapshot = clock.snapshot();
            let report =
                scheduler.fill_expecting(&mut self.buffer, heard_at_us, &snapshot, &format);
            timeline.frames_rendered += timeline.block_frames() as u64;
            if let Some(recorder) = self.recorder.as_mut() {
                recorder.record(&self.buffer, &report);
            }
            if let Some(log) = self.sync_log.as_mut() {
                let frames = timeline.block_frames();
                log.record(BlockRecord::new(
                    self.blocks,
                    heard_at_us,
                    frames,
                    &report,
                    &snapshot,
                ));
            }
            self.blocks += 1;
            if report.format != Some(format) {
                // The stream ended or changed format during this call.
                return Some(now_us);
            }
        }
    }

    fn record(&mut self, buffer: &[f32], report: &FillReport) {
        if let Some(recorder) = self.recorder.as_mut() {
            recorder.record(buffer, report);
        }
    }

    /// Stops the card and finishes its recording.
    pub fn finish(self) -> Result<OutputSummary, OutputError> {
        match self.recorder {
            Some(recorder) => recorder.finish(),
            None => Ok(OutputSummary::default()),
        }
    }
}

/// Spawns the thread that runs a simulated card until `stop` is set.
pub(super) fn spawn(
    recorder: Option<Recorder>,
    options: OutputOptions,
    scheduler: Arc<Scheduler>,
    clock: Arc<dyn ClockSource>,
    stop: StopFlag,
) -> Result<OutputThread, OutputError> {
    let run = move || {
        let mut card = SimulatedCard::with_sink(recorder, options.sink, options.sync_log);
        while !stop.is_set() {
            let next_request_us = card.render_due(now_us(), &scheduler, clock.as_ref());
            let wait_us = match next_request_us {
                Some(request_us) => (request_us - now_us()).clamp(0, POLL_US),
                None => POLL_US,
            };
            if wait_us > 0 {
                std::thread::park_timeout(Duration::from_micros(wait_us as u64));
            }
        }
        card.finish()
    };
    std::thread::Builder::new()
        .name("simulated-output".into())
        .spawn(run)
        .map_err(|err| {
            OutputError::Thread(format!(
                "failed to spawn the simulated output thread: {err}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::ClockSnapshot;

    fn clock() -> ClockSnapshot {
        ClockSnapshot {
            samples: 10,
            converged: true,
            ..ClockSnapshot::default()
        }
    }

    /// 16-bit-exact samples, so a WAV round trip returns them unchanged.
    fn ramp(first: usize, count: usize) -> Vec<f32> {
        (first..first + count)
            .map(|index| ((index % 30_000) as f32 + 1.0) / 32_768.0)
            .collect()
    }

    fn to_i16(samples: &[f32]) -> Vec<i16> {
        samples
            .iter()
            .map(|&sample| (sample * 32_768.0) as i16)
            .collect()
    }

    fn read_samples(path: &std::path::Path) -> (hound::WavSpec, Vec<i16>) {
        let mut reader = hound::WavReader::open(path).unwrap();
        let spec = reader.spec();
        let samples = reader.samples::<i16>().map(Result::unwrap).collect();
        (spec, samples)
    }

    #[test]
    fn card_renders_blocks_on_schedule() {
        let scheduler = Scheduler::new();
        scheduler
            .start_stream(AudioFormat::pcm(44_100, 2, 16))
            .unwrap();
        let mut card = SimulatedCard::new(None);

        assert_eq!(
            card.render_due(1_000_000, &scheduler, &clock()),
            Some(1_010_000)
        );
        // 441 frames per block; 10 blocks later the schedule is still exact.
        assert_eq!(
            card.render_due(1_095_000, &scheduler, &clock()),
            Some(1_100_000)
        );
        assert_eq!(scheduler.status().totals.silence_frames, 10 * 441);

        scheduler.end_stream();
        assert_eq!(card.render_due(1_100_000, &scheduler, &clock()), None);
    }

    #[test]
    fn drifting_card_requests_blocks_early() {
        let scheduler = Scheduler::new();
        scheduler
            .start_stream(AudioFormat::pcm(48_000, 2, 16))
            .unwrap();
        let sink = SinkModel {
            drift_ppm: 1_000.0,
            latency_us: 5_000,
        };
        let mut card = SimulatedCard::with_sink(None, sink, None);
        let mut next = card.render_due(0, &scheduler, &clock());
        while let Some(request_us) = next.filter(|&request_us| request_us <= 998_000) {
            next = card.render_due(request_us, &scheduler, &clock());
        }

        // 100 blocks of 480 frames at 48 048 Hz last 999 001 µs.

        assert_eq!(next, Some(999_001));
        assert_eq!(scheduler.status().totals.silence_frames, 100 * 480);
    }

    #[test]
    fn sync_log_includes_sink_latency() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocks.jsonl");
        let scheduler = Scheduler::new();
        scheduler
            .start_stream(AudioFormat::pcm(48_000, 2, 16))
            .unwrap();
        let sink = SinkModel {
            drift_ppm: 0.0,
            latency_us: 35_000,
        };
        let log = SyncLog::create(&path).unwrap();
        let mut card = SimulatedCard::with_sink(None, sink, Some(log));
        card.render_due(1_000_000, &scheduler, &clock());
        card.render_due(1_010_000, &scheduler, &clock());
        drop(card);

        let records = super::super::read_sync_log(&path).unwrap();

        assert_eq!(records.len(), 2);
        assert_eq!(records[0].heard_local_us, 1_035_000);
        assert_eq!(records[1].heard_local_us, 1_045_000);
        assert_eq!(records[1].block, 1);
        assert_eq!(records[1].frames, 480);
    }

    #[test]
    fn card_skips_after_long_stall() {
        let scheduler = Scheduler::new();
        scheduler
            .start_stream(AudioFormat::pcm(48_000, 1, 16))
            .unwrap();
        let mut card = SimulatedCard::new(None);
        card.render_due(0, &scheduler, &clock());

        let next = card.render_due(1_000_000, &scheduler, &clock());

        assert_eq!(next, Some(1_010_000));
        // One block at 0, then one at the skip target 1_000_000.
        assert_eq!(scheduler.status().totals.silence_frames, 2 * 480);
    }

    #[test]
    fn simulated_wav_matches_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.wav");
        let format = AudioFormat::pcm(48_000, 2, 16);
        let scheduler = Scheduler::new();
        scheduler.start_stream(format).unwrap();
        let mut card = SimulatedCard::new(Some(Recorder::new(path.clone())));

        // Chunks of 1000 frames from server time 100_000 on, with the server
        // clock equal to the local clock.
        let mut source = Vec::new();
        for index in 0..10 {
            let samples = ramp(source.len(), 2_000);
            source.extend_from_slice(&samples);
            let server_us = 100_000 + format.frames_to_us(index * 1_000);
            scheduler.push_chunk(server_us, samples).unwrap();
        }
        let mut now = 0;
        while now < 400_000 {
            now = card.render_due(now, &scheduler, &clock()).unwrap();
        }
        scheduler.end_stream();
        card.render_due(now, &scheduler, &clock());
        let summary = card.finish().unwrap();

        assert_eq!(summary.files, vec![path.clone()]);
        let (spec, samples) = read_samples(&path);
        assert_eq!(
            (spec.sample_rate, spec.channels, spec.bits_per_sample),
            (48_000, 2, 16)
        );
        assert!(
            samples.len() >= source.len(),
            "{} samples written",
            samples.len()
        );
        assert_eq!(samples[..source.len()], to_i16(&source)[..]);
        assert!(samples[source.len()..].iter().all(|&sample| sample == 0));
        let note = crate::audio::wav::read_note(&path).unwrap().unwrap();
        let note: serde_json::Value = serde_json::from_str(&note).unwrap();
        assert_eq!(note["first_frame_server_us"], 100_000);
    }

    /// Waits until the scheduler has played `frames` frames. Fails after
    /// 10 s so that a broken output cannot hang the test run.
    fn wait_for_frames_played(scheduler: &Scheduler, frames: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while scheduler.status().totals.frames_played < frames {
            assert!(
                std::time::Instant::now() < deadline,
                "output stopped before playing {frames} frames"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn wav_output_records_real_time_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.wav");
        let first_format = AudioFormat::pcm(48_000, 2, 16);
        let second_format = AudioFormat::pcm(44_100, 1, 16);
        let scheduler = Arc::new(Scheduler::new());
        let spec = super::super::OutputSpec::Wav(path.clone());
        let output = super::super::Output::start(&spec, scheduler.clone(), clock()).unwrap();

        // 300 ms of audio that starts 200 ms from now. The lead keeps the
        // first chunk on time on a loaded machine.
        scheduler.start_stream(first_format).unwrap();
        let start_us = now_us() + 200_000;
        let mut first_source = Vec::new();
        for index in 0..30 {
            let samples = ramp(first_source.len(), 960);
            first_source.extend_from_slice(&samples);
            scheduler
                .push_chunk(start_us + index * 10_000, samples)
                .unwrap();
        }
        wait_for_frames_played(&scheduler, 30 * 480);

        // A format change continues in a second file.
        scheduler.start_stream(second_format).unwrap();
        let restart_us = now_us() + 200_000;
        let second_source = ramp(0, 4_410);
        scheduler
            .push_chunk(restart_us, second_source.clone())
            .unwrap();
        wait_for_frames_played(&scheduler, 30 * 480 + 4_410);
        scheduler.end_stream();
        let summary = output.stop().unwrap();

        let second_path = dir.path().join("live.1.wav");
        assert_eq!(summary.files, vec![path.clone(), second_path.clone()]);
        let (spec, samples) = read_samples(&path);
        assert_eq!((spec.sample_rate, spec.channels), (48_000, 2));
        assert_eq!(samples[..first_source.len()], to_i16(&first_source)[..]);
        assert!(samples[first_source.len()..]
            .iter()
            .all(|&sample| sample == 0));
        let (spec, samples) = read_samples(&second_path);
        assert_eq!((spec.sample_rate, spec.channels), (44_100, 1));
        assert_eq!(samples[..second_source.len()], to_i16(&second_source)[..]);
        let note = crate::audio::wav::read_note(&second_path).unwrap().unwrap();
        let note: serde_json::Value = serde_json::from_str(&note).unwrap();
        assert_eq!(note["first_frame_server_us"], restart_us);
    }
}
