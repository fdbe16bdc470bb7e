//! `resonate serve --demo`: a server and players in one process on
//! loopback, with a generated tone and null outputs, and a report of how
//! well the players kept in sync.
//!
//! Server and players share this process's monotonic clock, so the true
//! clock offset between them is exactly zero and each player's estimate can
//! be checked against it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Failure;
use resonate::audio::wav::WavWriter;
use resonate::dialect::Dialect;
use resonate::player::client::{Backoff, Player, PlayerConfig};
use resonate::player::output::{Output, OutputSpec};
use resonate::player::scheduler::Scheduler;
use resonate::protocol::SupportedFormat;
use resonate::server::{Server, ServerConfig, SourcePlan};
use resonate::sync::SharedClock;
use resonate::transport::{parse_ws_url, Limits};

const RATE: u32 = 48_000;
const CHANNELS: u16 = 2;
const BITS: u16 = 16;

/// One in-process player and what the report reads from it.
struct DemoPlayer {
    name: String,
    scheduler: Arc<Scheduler>,
    clock: SharedClock,
    output: Output,
}

pub fn run(seconds: u64, players: usize, as_json: bool) -> Result<(), Failure> {
    let dir = tempdir("demo")?;
    let tone = dir.join("tone.wav");
    write_tone(&tone, seconds as f64 + 2.0)
        .with_context(|| format!("failed to write the demo tone to {}", tone.display()))?;

    let runtime = crate::runtime()?;
    let result = runtime.block_on(run_async(&tone, seconds, players, as_json));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_async(
    tone: &std::path::Path,
    seconds: u64,
    count: usize,
    as_json: bool,
) -> Result<(), Failure> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind a loopback port")?;
    let addr = listener.local_addr().context("listener has no address")?;
    let mut config = ServerConfig::new(SourcePlan::file(tone.to_path_buf(), true));
    config.server_id = "resonate-demo".into();
    config.name = "resonate demo".into();
    config.start_delay = Duration::from_millis(1000);
    let server = Server::new(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let server_task = tokio::spawn(server.run(listener, wait_for(stop_rx.clone())));
    let url = parse_ws_url(&format!("ws://{addr}/sendspin"), "/sendspin").context("demo URL")?;
    crate::status(&format!(
        "demo server on {url}; {count} players with null outputs for {seconds} s"
    ));

    let mut players = Vec::new();
    let mut tasks = Vec::new();
    for index in 0..count {
        let name = format!("demo-player-{}", index + 1);
        let scheduler = Arc::new(Scheduler::new());
        let (publisher, clock) = SharedClock::channel();
        let output = Output::start(&OutputSpec::Null, scheduler.clone(), clock.clone())
            .map_err(Failure::from)?;
        let config = PlayerConfig {
            url: url.clone(),
            client_id: name.clone(),
            name: name.clone(),
            dialect: Dialect::SendspinV1,
            formats: vec![SupportedFormat {
                codec: "pcm".into(),
                channels: CHANNELS,
                sample_rate: RATE,
                bit_depth: BITS,
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
        let player = Player::new(config, scheduler.clone(), publisher);
        tasks.push(tokio::spawn(player.run(wait_for(stop_rx.clone()))));
        players.push(DemoPlayer {
            name,
            scheduler,
            clock,
            output,
        });
    }

    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
        _ = crate::interrupted() => crate::status("interrupted; reporting what ran"),
    }
    if as_json {
        print_json_report(&players);
    } else {
        print_report(&players);
    }

    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    for player in players {
        let _ = player.output.stop();
    }
    match server_task.await {
        Ok(result) => result.map_err(Failure::from),
        Err(err) => Err(Failure::from(anyhow::anyhow!(
            "demo server task failed: {err}"
        ))),
    }
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Prints one JSON object per player, with the same fields as the table.
fn print_json_report(players: &[DemoPlayer]) {
    for player in players {
        let status = player.scheduler.status();
        let clock = player.clock.snapshot();
        let row = serde_json::json!({
            "event": "demo_player",
            "player": player.name,
            "state": format!("{:?}", status.state).to_lowercase(),
            "played_s": status.totals.frames_played as f64 / RATE as f64,
            "late_chunks_dropped": status.totals.late_chunks_dropped,
            "reanchors": status.totals.reanchors,
            "offset_us": clock.offset_us,
            "error_us": clock.error_us,
            "rtt_us": clock.rtt_us,
            "converged": clock.converged,
        });
        println!("{row}");
    }
}

fn print_report(players: &[DemoPlayer]) {
    println!(
        "{:<16} {:>9} {:>12} {:>10} {:>10} {:>9} {:>8} {:>6} {:>9}",
        "player",
        "state",
        "played (s)",
        "late drop",
        "reanchors",
        "offset us",
        "error us",
        "rtt us",
        "converged"
    );
    for player in players {
        let status = player.scheduler.status();
        let clock = player.clock.snapshot();
        let played = status.totals.frames_played as f64 / RATE as f64;
        println!(
            "{:<16} {:>9} {:>12.2} {:>10} {:>10} {:>9.0} {:>8.0} {:>6} {:>9}",
            player.name,
            format!("{:?}", status.state).to_lowercase(),
            played,
            status.totals.late_chunks_dropped,
            status.totals.reanchors,
            clock.offset_us,
            clock.error_us,
            clock.rtt_us,
            clock.converged
        );
    }
    println!(
        "offset us is each player's estimate of server minus local time; server and players share one clock here, so the true value is 0."
    );
}

/// Creates a private temporary folder named after `purpose` and this process.
pub(crate) fn tempdir(purpose: &str) -> Result<std::path::PathBuf, Failure> {
    let dir = std::env::temp_dir().join(format!("resonate-{purpose}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Writes a 440 Hz sine with a short click every second, for sync checks by
/// ear on a real output.
pub(crate) fn write_tone(path: &std::path::Path, seconds: f64) -> std::io::Result<()> {
    let mut writer = WavWriter::create(path, RATE, CHANNELS, BITS)?;
    let frames = (RATE as f64 * seconds) as usize;
    let mut samples = Vec::with_capacity(frames * CHANNELS as usize);
    for frame in 0..frames {
        let t = frame as f32 / RATE as f32;
        let click = if frame % (RATE as usize) < 48 {
            0.5
        } else {
            0.0
        };
        let value = 0.25 * (t * 440.0 * std::f32::consts::TAU).sin() + click;
        samples.extend(std::iter::repeat_n(value, CHANNELS as usize));
    }
    writer.write(&samples)?;
    writer.finish()
}
