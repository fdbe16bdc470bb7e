//! Two `resonate play` processes with drifting simulated sound cards stay
//! in sync with each other, measured from their `--sync-log` files.
//!
//! The bounds are far above what a quiet machine shows (tens of
//! microseconds, see docs/benchmarks.md), so a loaded shared machine does
//! not fail them. They are far below the 15 ms re-anchor threshold, so a
//! player that stopped correcting drift fails them within seconds.

mod support;

#[path = "support/process.rs"]
mod process;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use process::{resonate, Proc};
use resonate::player::output::{read_sync_log, BlockRecord};
use resonate::player::scheduler::PlaybackState;
use support::write_test_wav;

/// Maximum skew between two players once both play, in microseconds.
const SKEW_BOUND_US: f64 = 1_000.0;

/// Playing time skipped at the start of each log while clocks and
/// positions settle, in microseconds.
const SETTLE_US: i64 = 2_000_000;

fn start_server(source: &Path, extra: &[&str]) -> (Proc, String) {
    let mut args = vec![
        "serve",
        "--dialect",
        "sendspin-v1",
        source.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--json",
    ];
    args.extend_from_slice(extra);
    let mut server = resonate(&args);
    let listening = server.wait_event("listening", Duration::from_secs(20));
    let addr = listening["addr"].as_str().unwrap().to_string();
    (server, addr)
}

fn start_player(addr: &str, id: &str, drift_ppm: &str, log: &Path, seconds: &str) -> Proc {
    let url = format!("ws://{addr}/sendspin");
    let log = log.to_str().unwrap();
    resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        &url,
        "--client-id",
        id,
        "--output",
        "null",
        "--sample-rate",
        "48000",
        "--sink-drift-ppm",
        drift_ppm,
        "--sync-log",
        log,
        "--duration",
        seconds,
        "--json",
    ])
}

/// Playing blocks as (host-monotonic time heard, content time minus that
/// time), in microseconds.
fn playing_points(records: &[BlockRecord]) -> Vec<(i64, i64)> {
    records
        .iter()
        .filter(|record| record.state == PlaybackState::Playing)
        .filter_map(|record| {
            let content = record.content_server_us?;
            Some((
                record.heard_monotonic_us,
                content - record.heard_monotonic_us,
            ))
        })
        .collect()
}

/// Skew of `first` against `second` at each block of `first` that
/// `second` covers within one block, in microseconds. The server's clock
/// cancels out, because both players play the same server timestamps.
fn skews(first: &[(i64, i64)], second: &[(i64, i64)]) -> Vec<(i64, f64)> {
    let mut skews = Vec::new();
    for &(time, lead) in first {
        let index = second.partition_point(|&(other, _)| other < time);
        if index == 0 || index >= second.len() {
            continue;
        }
        let (before_time, before_lead) = second[index - 1];
        let (after_time, after_lead) = second[index];
        if after_time - before_time > 20_000 {
            continue;
        }
        let fraction = (time - before_time) as f64 / (after_time - before_time) as f64;
        let other_lead = before_lead as f64 + fraction * (after_lead - before_lead) as f64;
        skews.push((time, lead as f64 - other_lead));
    }
    skews
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

/// Sorted magnitudes of the skews at or after `from_us`.
fn settled_magnitudes(skews: &[(i64, f64)], from_us: i64) -> Vec<f64> {
    let mut magnitudes: Vec<f64> = skews
        .iter()
        .filter(|(time, _)| *time >= from_us)
        .map(|(_, skew)| skew.abs())
        .collect();
    magnitudes.sort_by(f64::total_cmp);
    magnitudes
}

#[test]
fn opposite_drift_players_stay_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.wav");
    write_test_wav(&source, 48_000, 2, 16, 70.0);
    let (mut server, addr) = start_server(&source, &[]);

    let slow_log = dir.path().join("slow.jsonl");
    let fast_log = dir.path().join("fast.jsonl");
    let mut slow = start_player(&addr, "slow", "-200", &slow_log, "66");
    let mut fast = start_player(&addr, "fast", "200", &fast_log, "66");
    let slow_report = slow.wait_event("finished", Duration::from_secs(100));
    let fast_report = fast.wait_event("finished", Duration::from_secs(100));
    assert!(server.interrupt().success());

    let slow_points = playing_points(&read_sync_log(&slow_log).unwrap());
    let fast_points = playing_points(&read_sync_log(&fast_log).unwrap());
    let played_us = slow_points.last().unwrap().0 - slow_points[0].0;
    assert!(
        played_us >= 60_000_000,
        "slow player played only {played_us} us"
    );
    let from_us = slow_points[0].0.max(fast_points[0].0) + SETTLE_US;
    let skews = skews(&slow_points, &fast_points);
    let magnitudes = settled_magnitudes(&skews, from_us);
    assert!(
        magnitudes.len() > 5_000,
        "only {} comparable blocks",
        magnitudes.len()
    );
    let max = *magnitudes.last().unwrap();
    eprintln!(
        "skew over {} blocks: p50 {:.0} us, p99 {:.0} us, max {max:.0} us",
        magnitudes.len(),
        percentile(&magnitudes, 0.5),
        percentile(&magnitudes, 0.99)
    );
    assert!(max < SKEW_BOUND_US, "skew reached {max:.0} us");

    // 200 ppm of about 64 s at 48 kHz is about 610 frames each way.
    let dropped = slow_report["frames_dropped"].as_u64().unwrap();
    let inserted = fast_report["frames_inserted"].as_u64().unwrap();
    assert!(
        (400..=800).contains(&dropped),
        "slow player dropped {dropped} frames"
    );
    assert!(
        (400..=800).contains(&inserted),
        "fast player repeated {inserted} frames"
    );
    assert_eq!(slow_report["reanchors"], 0, "{slow_report}");
    assert_eq!(fast_report["reanchors"], 0, "{fast_report}");
}

/// A loopback TCP forwarder whose connections can be cut on demand.
struct CuttableProxy {
    addr: String,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl CuttableProxy {
    fn start(target: &str) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let target = target.to_string();
        let accept = {
            let connections = connections.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    client.set_nonblocking(false).unwrap();
                    client.set_nodelay(true).unwrap();
                    let upstream = TcpStream::connect(&target).unwrap();
                    upstream.set_nodelay(true).unwrap();
                    let mut list = connections.lock().unwrap();
                    list.push(client.try_clone().unwrap());
                    list.push(upstream.try_clone().unwrap());
                    forward(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    forward(upstream, client);
                }
            })
        };
        CuttableProxy {
            addr,
            connections,
            stop,
            accept: Some(accept),
        }
    }

    /// Closes every forwarded connection in both directions.
    fn cut(&self) {
        for stream in self.connections.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.cut();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Copies bytes from `from` to `to` on a thread that ends with either
/// stream.
fn forward(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buffer = [0_u8; 16 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    if to.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

#[test]
fn reconnect_mid_stream_resumes_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.wav");
    write_test_wav(&source, 48_000, 2, 16, 30.0);
    let (mut server, addr) = start_server(&source, &[]);
    let proxy = CuttableProxy::start(&addr);

    let steady_log = dir.path().join("steady.jsonl");
    let cut_log = dir.path().join("cut.jsonl");
    let mut steady = start_player(&addr, "steady", "100", &steady_log, "24");
    let mut cut = start_player(&proxy.addr, "cut", "-100", &cut_log, "24");
    cut.wait_event("stream_started", Duration::from_secs(20));
    let cut_at = Instant::now() + Duration::from_secs(8);
    std::thread::sleep(cut_at.saturating_duration_since(Instant::now()));
    proxy.cut();
    let cut_us = resonate::clock::to_system_monotonic_us(resonate::clock::now_us());
    cut.wait_event("disconnected", Duration::from_secs(10));
    cut.wait_event("connected", Duration::from_secs(20));
    steady.wait_event("finished", Duration::from_secs(60));
    let cut_report = cut.wait_event("finished", Duration::from_secs(60));
    assert!(server.interrupt().success());
    drop(proxy);

    let steady_points = playing_points(&read_sync_log(&steady_log).unwrap());
    let cut_points = playing_points(&read_sync_log(&cut_log).unwrap());
    let resumed_us = cut_points
        .iter()
        .map(|&(time, _)| time)
        .find(|&time| time > cut_us + 500_000)
        .expect("the reconnected player never played again");
    let magnitudes =
        settled_magnitudes(&skews(&cut_points, &steady_points), resumed_us + SETTLE_US);
    assert!(
        magnitudes.len() > 500,
        "only {} comparable blocks after the reconnect",
        magnitudes.len()
    );
    let max = *magnitudes.last().unwrap();
    eprintln!(
        "skew after the reconnect: p99 {:.0} us, max {max:.0} us",
        percentile(&magnitudes, 0.99)
    );
    assert!(
        max < SKEW_BOUND_US,
        "skew after the reconnect reached {max:.0} us"
    );
    assert_eq!(cut_report["event"], "finished");
}
