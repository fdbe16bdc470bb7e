//! Sync accuracy of `serve` plus N players on loopback, and of the clock
//! filter alone against the Python reference filter.
//!
//! Run with `cargo bench --bench sync`; `docs/benchmarks.md` records the
//! figures and the machine. Options after `--`: `--seconds N` (default 60),
//! `--drifts PPM,PPM,...` (default -200,0,150), `--jitter-ms MS` (default
//! 2). `cargo test --all-targets` runs it without `--bench`, and then does a
//! 10-second smoke run whose figures mean nothing.
//!
//! Part 1, loopback: an in-process server streams a looping file to each
//! player, through a jitter proxy unless `--jitter-ms 0`. Every player has a simulated sound card
//! whose clock drifts by its own amount and logs every block (`--sync-log`
//! format). Server and players share this process's clock, so the true
//! offset is exactly 0 and each estimate's error is known.
//!
//! Part 2, filter replay: synthetic `client/time` exchanges with a known
//! offset, drift, queueing jitter, a clock step and a delay change go to
//! [`TimeFilter`] and, through `tests/peers/time_filter_replay.py`, to the
//! `SendspinTimeFilter` of aiosendspin 10.2.1 in the peers root. Both get
//! identical samples and are read at identical times. Set
//! `RESONATE_PEERS_RUN` to the peers root's `run` script (see
//! `tests/peers/README.md`) to include the Python filter.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use resonate::audio::wav::WavWriter;
use resonate::clock::now_us;
use resonate::dialect::Dialect;
use resonate::player::client::{Backoff, Player, PlayerConfig};
use resonate::player::output::{
    read_sync_log, BlockRecord, Output, OutputOptions, OutputSpec, SinkModel, SyncLog,
};
use resonate::player::scheduler::{PlaybackState, Scheduler};
use resonate::protocol::SupportedFormat;
use resonate::server::{Server, ServerConfig, SourcePlan};
use resonate::sync::{Measurement, SharedClock, TimeFilter};
use resonate::transport::{parse_ws_url, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

const RATE: u32 = 48_000;
/// Offset error below which a clock counts as settled, in microseconds.
const SETTLED_ERROR_US: f64 = 100.0;
/// How long the jitter proxy keeps one queueing delay.
const JITTER_PERIOD: Duration = Duration::from_millis(50);

struct Options {
    seconds: u64,
    drifts: Vec<f64>,
    jitter_ms: f64,
}

fn parse_options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|arg| arg == "--bench");
    let mut options = Options {
        seconds: if smoke { 10 } else { 60 },
        drifts: vec![-200.0, 0.0, 150.0],
        jitter_ms: 2.0,
    };
    let mut index = 1;
    while index < args.len() {
        let value = args.get(index + 1).cloned().unwrap_or_default();
        match args[index].as_str() {
            "--seconds" => options.seconds = value.parse().expect("--seconds takes whole seconds"),
            "--drifts" => {
                options.drifts = value
                    .split(',')
                    .map(|ppm| {
                        ppm.parse()
                            .expect("--drifts takes comma-separated ppm values")
                    })
                    .collect()
            }
            "--jitter-ms" => {
                options.jitter_ms = value.parse().expect("--jitter-ms takes milliseconds")
            }
            _ => {
                index += 1;
                continue;
            }
        }
        index += 2;
    }
    options
}

fn main() {
    let options = parse_options();
    let dir = tempfile::tempdir().expect("create a temporary directory");
    println!(
        "# sync benchmark: {} s, sink drifts {:?} ppm, jitter up to {} ms",
        options.seconds, options.drifts, options.jitter_ms
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the runtime");
    runtime.block_on(run_loopback(&options, dir.path()));
    run_filter_replay();
}

// ---------------------------------------------------------------------------
// Part 1: serve plus N players on loopback.

/// Clock samples of one player: (local µs since its start, offset error
/// µs, converged).
type ClockTrace = Vec<(i64, f64, bool)>;

struct BenchPlayer {
    drift_ppm: f64,
    scheduler: Arc<Scheduler>,
    clock: SharedClock,
    output: Output,
    log: PathBuf,
    started_us: i64,
}

async fn run_loopback(options: &Options, dir: &Path) {
    let tone = dir.join("tone.wav");
    write_tone(&tone, 20.0).expect("write the tone");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let server_addr = listener.local_addr().unwrap();
    let mut config = ServerConfig::new(SourcePlan::file(tone, true));
    config.server_id = "sync-bench".into();
    config.start_delay = Duration::from_millis(1000);
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(Server::new(config).run(listener, wait_for(stop_rx.clone())));

    let mut players = Vec::new();
    let mut tasks = Vec::new();
    for (index, &drift_ppm) in options.drifts.iter().enumerate() {
        // Without jitter the players connect directly, because the proxy's
        // own queueing delays the audio direction more than the other.
        let target = if options.jitter_ms > 0.0 {
            start_jitter_proxy(
                server_addr.to_string(),
                options.jitter_ms,
                index as u64,
                stop_rx.clone(),
            )
            .await
        } else {
            server_addr.to_string()
        };
        let url = parse_ws_url(&format!("ws://{target}/sendspin"), "/sendspin").unwrap();
        let log = dir.join(format!("player-{index}.jsonl"));
        let scheduler = Arc::new(Scheduler::new());
        let (publisher, clock) = SharedClock::channel();
        let output_options = OutputOptions {
            sink: SinkModel {
                drift_ppm,
                ..SinkModel::default()
            },
            sync_log: Some(SyncLog::create(&log).expect("create the sync log")),
        };
        let output = Output::start_with(
            &OutputSpec::Null,
            output_options,
            scheduler.clone(),
            clock.clone(),
        )
        .unwrap();
        let name = format!("bench-{index}");
        let config = PlayerConfig {
            url,
            client_id: name.clone(),
            name,
            dialect: Dialect::SendspinV1,
            formats: vec![SupportedFormat {
                codec: "pcm".into(),
                channels: 2,
                sample_rate: RATE,
                bit_depth: 16,
            }],
            buffer_capacity: 2_000_000,
            limits: Limits::default(),
            backoff: Backoff::default(),
            volume: 100,
            muted: false,
            format_request: None,
            keys: None,
            cleartext_fallback: false,
        };
        let started_us = now_us();
        let player = Player::new(config, scheduler.clone(), publisher);
        tasks.push(tokio::spawn(player.run(wait_for(stop_rx.clone()))));
        players.push(BenchPlayer {
            drift_ppm,
            scheduler,
            clock,
            output,
            log,
            started_us,
        });
    }

    // Sample every clock every 10 ms; the true offset is 0.
    let mut traces: Vec<ClockTrace> = vec![Vec::new(); players.len()];
    let end = Instant::now() + Duration::from_secs(options.seconds);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while Instant::now() < end {
        tick.tick().await;
        let now = now_us();
        for (player, trace) in players.iter().zip(traces.iter_mut()) {
            let snapshot = player.clock.snapshot();
            if snapshot.is_valid() {
                let error = (snapshot.local_to_server(now) - now) as f64;
                trace.push((now - player.started_us, error, snapshot.converged));
            }
        }
    }

    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let statuses: Vec<_> = players
        .iter()
        .map(|player| player.scheduler.status())
        .collect();
    let mut logs = Vec::new();
    for player in players.iter() {
        logs.push(player.log.clone());
    }
    let drifts: Vec<f64> = players.iter().map(|player| player.drift_ppm).collect();
    for player in players {
        let _ = player.output.stop();
    }
    let _ = server.await;

    let records: Vec<Vec<BlockRecord>> = logs
        .iter()
        .map(|path| read_sync_log(path).expect("read a sync log"))
        .collect();
    report_loopback(&drifts, &traces, &records, &statuses);
}

fn report_loopback(
    drifts: &[f64],
    traces: &[ClockTrace],
    records: &[Vec<BlockRecord>],
    statuses: &[resonate::player::scheduler::PlaybackStatus],
) {
    println!();
    println!("## loopback: filter offset error against the true offset 0, from 2 s after the converged flag");
    println!("| sink drift | converged flag after | error under {SETTLED_ERROR_US} µs for good after | p50 µs | p99 µs | max µs | corrections per minute | re-anchors | max discontinuity, frames |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut all_errors = Vec::new();
    for (index, trace) in traces.iter().enumerate() {
        let converged_at = trace
            .iter()
            .find(|(_, _, converged)| *converged)
            .map(|(time, _, _)| *time);
        let settled_at = settled_time(trace);
        let mut errors: Vec<f64> = trace
            .iter()
            .filter(|(time, _, _)| {
                converged_at.is_some_and(|converged| *time >= converged + 2_000_000)
            })
            .map(|(_, error, _)| error.abs())
            .collect();
        errors.sort_by(f64::total_cmp);
        all_errors.extend_from_slice(&errors);
        let totals = statuses[index].totals;
        let playing_minutes = totals.frames_played as f64 / f64::from(RATE) / 60.0;
        let corrections =
            (totals.frames_inserted + totals.frames_dropped) as f64 / playing_minutes.max(1e-9);
        let discontinuity = max_discontinuity(&records[index]);
        println!(
            "| {:+} ppm | {} | {} | {} | {} | {} | {:.0} | {} | {:.2} |",
            drifts[index],
            seconds(converged_at),
            seconds(settled_at),
            stat(&errors, 0.5),
            stat(&errors, 0.99),
            stat(&errors, 1.0),
            corrections,
            totals.reanchors,
            discontinuity,
        );
    }

    println!();
    println!("## loopback: inter-player skew (from the sync logs, 2 s after the later player starts playing)");
    println!("| pair | blocks | p50 µs | p99 µs | max µs |");
    println!("|---|---|---|---|---|");
    let mut all_skews = Vec::new();
    for first in 0..records.len() {
        for second in first + 1..records.len() {
            let mut skews = pair_skews(&records[first], &records[second]);
            skews.sort_by(f64::total_cmp);
            println!(
                "| {:+} / {:+} ppm | {} | {} | {} | {} |",
                drifts[first],
                drifts[second],
                skews.len(),
                stat(&skews, 0.5),
                stat(&skews, 0.99),
                stat(&skews, 1.0)
            );
            all_skews.extend(skews);
        }
    }
    all_skews.sort_by(f64::total_cmp);
    all_errors.sort_by(f64::total_cmp);
    println!(
        "| all pairs | {} | {} | {} | {} |",
        all_skews.len(),
        stat(&all_skews, 0.5),
        stat(&all_skews, 0.99),
        stat(&all_skews, 1.0)
    );
    println!(
        "\nall players' offset error from 2 s after the converged flag: p50 {} µs, p99 {} µs, max {} µs",
        stat(&all_errors, 0.5),
        stat(&all_errors, 0.99),
        stat(&all_errors, 1.0)
    );
}

/// Returns the first time after which every error stays under
/// [`SETTLED_ERROR_US`] with a converged clock.
fn settled_time(trace: &ClockTrace) -> Option<i64> {
    let last_bad = trace
        .iter()
        .rposition(|(_, error, converged)| !converged || error.abs() >= SETTLED_ERROR_US);
    match last_bad {
        None => trace.first().map(|(time, _, _)| *time),
        Some(index) => trace.get(index + 1).map(|(time, _, _)| *time),
    }
}

/// Largest jump of the played content between consecutive playing blocks
/// beyond what the block length and its one-frame correction explain, in
/// frames, after the player's first 2 s of playing.
fn max_discontinuity(records: &[BlockRecord]) -> f64 {
    let playing: Vec<&BlockRecord> = records
        .iter()
        .filter(|record| {
            record.state == PlaybackState::Playing && record.content_server_us.is_some()
        })
        .collect();
    let Some(first) = playing.first() else {
        return f64::NAN;
    };
    let from = first.heard_local_us + 2_000_000;
    let mut worst: f64 = 0.0;
    for pair in playing.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        if before.heard_local_us < from || after.block != before.block + 1 {
            continue;
        }
        let advanced_us =
            (after.content_server_us.unwrap() - before.content_server_us.unwrap()) as f64;
        let advanced_frames = advanced_us * f64::from(RATE) / 1e6;
        // A repeated frame advances the content by one frame less.
        let expected = before.frames as f64 - before.correction_frames as f64;
        worst = worst.max((advanced_frames - expected).abs());
    }
    worst
}

/// Skew magnitudes between two players at each playing block of `first`,
/// in microseconds, from 2 s after both play.
fn pair_skews(first: &[BlockRecord], second: &[BlockRecord]) -> Vec<f64> {
    let points = |records: &[BlockRecord]| -> Vec<(i64, i64)> {
        records
            .iter()
            .filter(|record| record.state == PlaybackState::Playing)
            .filter_map(|record| {
                Some((
                    record.heard_local_us,
                    record.content_server_us? - record.heard_local_us,
                ))
            })
            .collect()
    };
    let (first, second) = (points(first), points(second));
    let (Some(a), Some(b)) = (first.first(), second.first()) else {
        return Vec::new();
    };
    let from = a.0.max(b.0) + 2_000_000;
    let mut skews = Vec::new();
    for &(time, lead) in first.iter().filter(|(time, _)| *time >= from) {
        let index = second.partition_point(|&(other, _)| other < time);
        if index == 0 || index >= second.len() {
            continue;
        }
        let (t0, l0) = second[index - 1];
        let (t1, l1) = second[index];
        if t1 - t0 > 20_000 {
            continue;
        }
        let other = l0 as f64 + (time - t0) as f64 / (t1 - t0) as f64 * (l1 - l0) as f64;
        skews.push((lead as f64 - other).abs());
    }
    skews
}

fn stat(sorted: &[f64], fraction: f64) -> String {
    if sorted.is_empty() {
        return "n/a".into();
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    format!("{:.0}", sorted[index])
}

fn seconds(time_us: Option<i64>) -> String {
    time_us.map_or("never".into(), |time| format!("{:.2} s", time as f64 / 1e6))
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Starts a loopback TCP proxy to `target` that delays the bytes of each
/// direction by a queueing delay, keeping the byte order. Returns its
/// address.
///
/// The delay of each direction is drawn anew, uniformly from 0 to
/// `jitter_ms` milliseconds, every [`JITTER_PERIOD`], as a queue that fills
/// and drains would change it. Both directions have the same mean delay.
/// A fresh draw for every read would not: the many audio reads of the
/// server's direction would keep its bytes near the maximum delay, an
/// asymmetry that no `client/time` exchange can observe.
async fn start_jitter_proxy(
    target: String,
    jitter_ms: f64,
    seed: u64,
    stop: watch::Receiver<bool>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut connection = 0;
        loop {
            let mut stop = stop.clone();
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|stopped| *stopped) => return,
            };
            let Ok((client, _)) = accepted else { continue };
            let Ok(upstream) = TcpStream::connect(&target).await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (upstream_read, upstream_write) = upstream.into_split();
            connection += 2;
            let jitter_us = (jitter_ms * 1000.0) as u64;
            tokio::spawn(delay_copy(
                client_read,
                upstream_write,
                jitter_us,
                seed * 1000 + connection,
            ));
            tokio::spawn(delay_copy(
                upstream_read,
                client_write,
                jitter_us,
                seed * 1000 + connection + 1,
            ));
        }
    });
    addr
}

async fn delay_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    jitter_us: u64,
    seed: u64,
) {
    let (queue, mut queued) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((release, bytes)) = queued.recv().await {
            tokio::time::sleep_until(release).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut rng = StdRng::seed_from_u64(seed);
    let mut last_release = Instant::now();
    let mut delay = Duration::ZERO;
    let mut next_draw = Instant::now();
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let now = Instant::now();
        if now >= next_draw {
            delay = Duration::from_micros(rng.random_range(0..=jitter_us));
            next_draw = now + JITTER_PERIOD;
        }
        let release = (now + delay).max(last_release);
        last_release = release;
        if queue.send((release, buffer[..read].to_vec())).is_err() {
            break;
        }
    }
    drop(queue);
    let _ = writer.await;
}

/// Writes a 440 Hz stereo sine, 16-bit.
fn write_tone(path: &Path, seconds: f64) -> std::io::Result<()> {
    let mut writer = WavWriter::create(path, RATE, 2, 16)?;
    let frames = (f64::from(RATE) * seconds) as usize;
    let mut samples = Vec::with_capacity(frames * 2);
    for frame in 0..frames {
        let value = 0.25 * (frame as f32 / RATE as f32 * 440.0 * std::f32::consts::TAU).sin();
        samples.extend([value, value]);
    }
    writer.write(&samples)?;
    writer.finish()
}

// ---------------------------------------------------------------------------
// Part 2: the filter alone, ours and aiosendspin's, on identical samples.

/// A synthetic link and clock pair with known truth.
struct Scenario {
    name: &'static str,
    seconds: f64,
    /// Server minus local time at local time 0, µs.
    offset_us: f64,
    /// Drift of the server clock against the local clock, ppm.
    drift_ppm: f64,
    /// Fixed one-way delay, µs, before and after `change_at_s`.
    base_delay_us: (f64, f64),
    /// Mean of the exponential queueing delay added to each direction, µs.
    jitter_mean_us: f64,
    /// Offset step and the local time at which it happens, µs and s.
    step: Option<(f64, f64)>,
    change_at_s: f64,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "loopback",
        seconds: 120.0,
        offset_us: 1_000_000.0,
        drift_ppm: 0.0,
        base_delay_us: (40.0, 40.0),
        jitter_mean_us: 20.0,
        step: None,
        change_at_s: f64::INFINITY,
    },
    Scenario {
        name: "jittery LAN, +40 ppm",
        seconds: 120.0,
        offset_us: -3_000_000.0,
        drift_ppm: 40.0,
        base_delay_us: (1_000.0, 1_000.0),
        jitter_mean_us: 2_000.0,
        step: None,
        change_at_s: f64::INFINITY,
    },
    Scenario {
        name: "clock step +5 ms at 60 s",
        seconds: 120.0,
        offset_us: 500_000.0,
        drift_ppm: -25.0,
        base_delay_us: (500.0, 500.0),
        jitter_mean_us: 300.0,
        step: Some((5_000.0, 60.0)),
        change_at_s: f64::INFINITY,
    },
    Scenario {
        name: "delay 0.5 -> 8 ms at 60 s",
        seconds: 120.0,
        offset_us: 0.0,
        drift_ppm: 10.0,
        base_delay_us: (500.0, 8_000.0),
        jitter_mean_us: 300.0,
        step: None,
        change_at_s: 60.0,
    },
];

impl Scenario {
    /// True server time at local time `local_us`.
    fn server_at(&self, local_us: f64) -> f64 {
        let step = match self.step {
            Some((size, at_s)) if local_us >= at_s * 1e6 => size,
            _ => 0.0,
        };
        local_us + self.offset_us + self.drift_ppm * 1e-6 * local_us + step
    }

    /// Exchanges every 500 ms after a burst of 8 at 40 ms, the cadence of a
    /// player's first seconds, with T1 starting at 1 s.
    fn exchanges(&self, seed: u64) -> Vec<Measurement> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut exponential = move |mean: f64| -mean * (1.0 - rng.random::<f64>()).ln();
        let mut measurements = Vec::new();
        let mut t1 = 1_000_000.0;
        let mut index = 0;
        while t1 < self.seconds * 1e6 {
            let base = if t1 >= self.change_at_s * 1e6 {
                self.base_delay_us.1
            } else {
                self.base_delay_us.0
            };
            let forward = base + exponential(self.jitter_mean_us);
            let back = base + exponential(self.jitter_mean_us);
            let hold = 30.0;
            let t2 = self.server_at(t1 + forward);
            let t3 = t2 + hold;
            let t4 = t1 + forward + hold + back;
            measurements.push(Measurement {
                client_transmitted: t1.round() as i64,
                server_received: t2.round() as i64,
                server_transmitted: t3.round() as i64,
                client_received: t4.round() as i64,
            });
            index += 1;
            t1 = t4 + if index < 8 { 40_000.0 } else { 500_000.0 };
        }
        measurements
    }
}

/// Returns the peers root's `run` script from `RESONATE_PEERS_RUN`, if set.
fn peers_run() -> Option<String> {
    std::env::var("RESONATE_PEERS_RUN")
        .ok()
        .filter(|run| !run.is_empty())
}

fn run_filter_replay() {
    println!();
    println!("## filter replay: offset error against truth on identical samples, read every 10 ms");
    println!("Errors from 5 s on (and from 5 s after a step or delay change), µs.");
    println!("| scenario | filter | p50 | p99 | max | error under {SETTLED_ERROR_US} µs for good after |");
    println!("|---|---|---|---|---|---|");
    let python = peers_run();
    for (index, scenario) in SCENARIOS.iter().enumerate() {
        let measurements = scenario.exchanges(index as u64 + 7);
        let queries = query_times(scenario);
        let ours = replay_ours(&measurements, &queries);
        print_replay_row(scenario, "resonate TimeFilter", &queries, &ours);
        match python
            .as_deref()
            .map(|run| replay_python(run, &measurements, &queries))
        {
            Some(Ok(theirs)) => print_replay_row(scenario, "aiosendspin 10.2.1", &queries, &theirs),
            Some(Err(err)) => println!(
                "| {} | aiosendspin 10.2.1 | failed: {err} | | | |",
                scenario.name
            ),
            None => println!(
                "| {} | aiosendspin 10.2.1 | not run; set RESONATE_PEERS_RUN | | | |",
                scenario.name
            ),
        }
    }
}

fn query_times(scenario: &Scenario) -> Vec<i64> {
    (0..)
        .map(|step| 1_000_000 + step * 10_000)
        .take_while(|&time| (time as f64) < scenario.seconds * 1e6)
        .collect()
}

/// Applies each measurement once its reply has arrived (at T4) and reads
/// the estimate at each query time. Returns the estimated server time per
/// query, `None` before the first sample.
fn replay_ours(measurements: &[Measurement], queries: &[i64]) -> Vec<Option<i64>> {
    let mut filter = TimeFilter::default();
    let mut next = 0;
    let mut estimates = Vec::with_capacity(queries.len());
    for &query in queries {
        while next < measurements.len() && measurements[next].client_received <= query {
            let _ = filter.update(measurements[next]);
            next += 1;
        }
        let snapshot = filter.snapshot();
        estimates.push(snapshot.is_valid().then(|| snapshot.local_to_server(query)));
    }
    estimates
}

/// Feeds the same measurements and queries to aiosendspin's filter through
/// `tests/peers/time_filter_replay.py` in the peers root.
fn replay_python(
    run: &str,
    measurements: &[Measurement],
    queries: &[i64],
) -> Result<Vec<Option<i64>>, String> {
    // The peers root mounts only the directory given to --cwd.
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let mut child = Command::new(run)
        .args(["venv-sendspin", "--cwd"])
        .arg(&scripts)
        .args(["python3", "time_filter_replay.py"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|err| format!("cannot start {run}: {err}"))?;
    let mut input = String::new();
    let mut next = 0;
    for &query in queries {
        while next < measurements.len() && measurements[next].client_received <= query {
            let m = measurements[next];
            input.push_str(&format!(
                "{{\"t1\":{},\"t2\":{},\"t3\":{},\"t4\":{}}}\n",
                m.client_transmitted, m.server_received, m.server_transmitted, m.client_received
            ));
            next += 1;
        }
        input.push_str(&format!("{{\"query\":{query}}}\n"));
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut estimates = Vec::with_capacity(queries.len());
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.map_err(|err| err.to_string())?;
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|err| format!("invalid line {line:?}: {err}"))?;
        estimates.push(value["server"].as_i64());
    }
    writer
        .join()
        .map_err(|_| "stdin writer panicked".to_string())?
        .map_err(|err| err.to_string())?;
    let status = child.wait().map_err(|err| err.to_string())?;
    if !status.success() || estimates.len() != queries.len() {
        return Err(format!(
            "driver exited with {status} after {} of {} answers",
            estimates.len(),
            queries.len()
        ));
    }
    Ok(estimates)
}

fn print_replay_row(scenario: &Scenario, filter: &str, queries: &[i64], estimates: &[Option<i64>]) {
    // Errors count from 5 s on, except in the 5 s after a step or a delay
    // change, which the settled time covers instead.
    let counted = |time: f64| {
        let after = |at_s: f64| time >= at_s * 1e6 && time < at_s * 1e6 + 5e6;
        let disturbed =
            scenario.step.is_some_and(|(_, at_s)| after(at_s)) || after(scenario.change_at_s);
        time >= 5e6 && !disturbed
    };
    let mut errors = Vec::new();
    let mut trace = Vec::new();
    for (&query, estimate) in queries.iter().zip(estimates) {
        let Some(estimate) = estimate else { continue };
        let error = *estimate as f64 - scenario.server_at(query as f64);
        trace.push((query - 1_000_000, error, true));
        if counted(query as f64) {
            errors.push(error.abs());
        }
    }
    errors.sort_by(f64::total_cmp);
    println!(
        "| {} | {filter} | {} | {} | {} | {} |",
        scenario.name,
        stat(&errors, 0.5),
        stat(&errors, 0.99),
        stat(&errors, 1.0),
        seconds(settled_time(&trace)),
    );
}
