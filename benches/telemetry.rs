//! Cost of the telemetry feed to the process it monitors: one in-process
//! server with 1,000 controller sessions that exchange `client/time` once a
//! second, measured for the same time without telemetry and with a hub, a
//! WebSocket subscriber and a `/metrics` scrape every second.
//!
//! Run with `cargo bench --bench telemetry`; `docs/benchmarks.md` records
//! the figures and the machine. CPU time comes from /proc/self/stat (10 ms
//! ticks) for the whole process, clients included, so the difference
//! between the two runs is the feed's cost. The subscriber only counts the
//! bytes of each frame, so JSON parsing, which is the monitor's cost, is
//! not in it. `cargo test --all-targets` runs a short smoke run whose
//! figures mean nothing.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use resonate::server::{Server, ServerConfig, SourcePlan};
use resonate::telemetry::{feed, SourceInfo, Telemetry};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

#[path = "../tests/support/mod.rs"]
mod support;

const SESSIONS: usize = 1_000;
const MEASURE: Duration = Duration::from_secs(20);
const SMOKE_SESSIONS: usize = 20;
const SMOKE_MEASURE: Duration = Duration::from_secs(1);

/// Process CPU time (user plus system) in seconds, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Runs one controller client: hello, then `client/time` every second
/// until `stop`.
async fn client(url: String, n: usize, stop: CancellationToken) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
        eprintln!("client {n} could not connect");
        return;
    };
    let hello = json!({"type": "client/hello", "payload": {
        "client_id": format!("bench-{n}"), "name": format!("bench {n}"), "version": 1,
        "supported_roles": ["controller@v1"],
    }});
    if ws.send(WsMessage::text(hello.to_string())).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                let time = json!({"type": "client/time", "payload": {"client_transmitted": resonate::clock::now_us()}});
                if ws.send(WsMessage::text(time.to_string())).await.is_err() {
                    return;
                }
            }
            frame = ws.next() => if !matches!(frame, Some(Ok(_))) { return },
        }
    }
    let _ = ws.close(None).await;
}

/// Counts feed bytes without parsing them, until `stop`.
async fn subscriber(url: String, stop: CancellationToken) -> u64 {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
        panic!("connecting to the feed at {url} failed");
    };
    let mut bytes = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            frame = ws.next() => match frame {
                Some(Ok(frame)) => bytes += frame.len() as u64,
                _ => break,
            },
        }
    }
    bytes
}

fn scrape(addr: &str) -> usize {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = Vec::new();
    stream.read_to_end(&mut body).expect("read /metrics");
    body.len()
}

struct Run {
    cpu_seconds: f64,
    wall: Duration,
    feed_bytes: u64,
    scrapes: usize,
}

async fn run(
    sessions: usize,
    measure: Duration,
    with_telemetry: bool,
    tone: &std::path::Path,
) -> Run {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/sendspin", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let mut server = Server::new(ServerConfig::new(SourcePlan::file(
        tone.to_path_buf(),
        true,
    )));
    let stats = server.stats();
    let hub = Telemetry::new(SourceInfo {
        kind: "serve".into(),
        name: "bench".into(),
        ..Default::default()
    });
    let mut feed_addr = None;
    let mut feed_task = None;
    if with_telemetry {
        server = server.with_telemetry(hub.clone());
        let feed_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        feed_addr = Some(feed_listener.local_addr().unwrap().to_string());
        feed_task = Some(tokio::spawn(feed::serve(
            feed_listener,
            hub.clone(),
            stop.clone().cancelled_owned(),
        )));
    }
    let server_task = tokio::spawn(server.run(listener, stop.clone().cancelled_owned()));

    let clients_stop = CancellationToken::new();
    let clients: Vec<_> = (0..sessions)
        .map(|n| tokio::spawn(client(url.clone(), n, clients_stop.clone())))
        .collect();
    while stats.snapshot().clients_live < sessions as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let subscriber_task = feed_addr
        .as_ref()
        .map(|addr| tokio::spawn(subscriber(format!("ws://{addr}/"), clients_stop.clone())));
    // Let connection setup settle before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let cpu_start = cpu_seconds();
    let wall_start = Instant::now();
    let mut scrapes = 0;
    while wall_start.elapsed() < measure {
        tokio::time::sleep(Duration::from_secs(1).min(measure)).await;
        if let Some(addr) = feed_addr.clone() {
            tokio::task::spawn_blocking(move || scrape(&addr))
                .await
                .unwrap();
            scrapes += 1;
        }
    }
    let cpu = cpu_seconds() - cpu_start;
    let wall = wall_start.elapsed();

    clients_stop.cancel();
    let feed_bytes = match subscriber_task {
        Some(task) => task.await.unwrap(),
        None => 0,
    };
    for client in clients {
        let _ = client.await;
    }
    stop.cancel();
    let _ = server_task.await;
    if let Some(task) = feed_task {
        let _ = task.await;
    }
    Run {
        cpu_seconds: cpu,
        wall,
        feed_bytes,
        scrapes,
    }
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (sessions, measure) = if full {
        (SESSIONS, MEASURE)
    } else {
        (SMOKE_SESSIONS, SMOKE_MEASURE)
    };
    let dir = tempfile::tempdir().unwrap();
    let tone = dir.path().join("tone.wav");
    support::write_test_wav(&tone, 48_000, 2, 16, 2.0);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let without = runtime.block_on(run(sessions, measure, false, &tone));
    let with = runtime.block_on(run(sessions, measure, true, &tone));

    let share = |run: &Run| 100.0 * run.cpu_seconds / run.wall.as_secs_f64();
    println!(
        "telemetry feed cost with {sessions} sessions over {} s:",
        measure.as_secs()
    );
    println!("  without telemetry: {:.2}% of one core", share(&without));
    println!(
        "  with hub, subscriber and {} scrapes: {:.2}% of one core ({:.1} KiB/s of feed)",
        with.scrapes,
        share(&with),
        with.feed_bytes as f64 / 1024.0 / with.wall.as_secs_f64()
    );
    println!(
        "  difference: {:+.2}% of one core",
        share(&with) - share(&without)
    );
}
