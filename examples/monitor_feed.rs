//! A synthetic telemetry feed on a loopback port, for trying and measuring
//! `resonate monitor` without a real network.
//!
//! ```sh
//! cargo run --release --example monitor_feed -- 2000 30   # 2000 sessions for 30 s
//! resonate monitor ws://127.0.0.1:PORT                      # PORT as printed
//! ```
//!
//! It publishes a snapshot of SESSIONS sessions every second and 20 events
//! per second, so a monitor redraws at its full 10 frames per second, and
//! stops after SECONDS.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use resonate::telemetry::{
    feed, unix_ms_now, ClockView, Event, EventKind, GroupRow, Phase, SessionRow, Snapshot,
    SourceInfo, Telemetry,
};

fn snapshot(sessions: u64, step: u64) -> Snapshot {
    let rows = (0..sessions)
        .map(|n| {
            let wobble = ((n * 7 + step * 13) % 100) as f64;
            SessionRow {
                session: format!("s{n}"),
                client_id: Some(format!("client-{n}")),
                name: Some(format!("player {n}")),
                peer: format!("127.0.0.1:{}", 20_000 + n),
                dialect: "sendspin-v1".into(),
                roles: vec!["player@v1".into()],
                phase: Phase::Active,
                group: Some(format!("g{}", n % 10)),
                format: Some("opus 48000 Hz 16-bit 2 ch".into()),
                server_clock: Some(ClockView {
                    offset_us: wobble - 50.0,
                    rtt_us: Some(200.0 + wobble * 3.0),
                    samples: step,
                    ..Default::default()
                }),
                client_clock: (n % 2 == 0).then_some(ClockView {
                    offset_us: wobble / 2.0 - 25.0,
                    drift_ppm: Some(wobble / 50.0 - 1.0),
                    error_us: Some(5.0),
                    rtt_us: Some(180.0 + wobble * 2.0),
                    samples: step * 4,
                    converged: Some(true),
                }),
                buffer_ms: Some(1_500.0 + wobble * 4.0),
                opened_unix_ms: unix_ms_now(),
                ..Default::default()
            }
        })
        .collect();
    let groups = (0..10)
        .map(|g| GroupRow {
            id: format!("g{g}"),
            name: format!("group {g}"),
            members: (0..sessions)
                .filter(|n| n % 10 == g)
                .map(|n| format!("client-{n}"))
                .collect(),
            playback: "playing".into(),
            volume: Some(50),
            ..Default::default()
        })
        .collect();
    Snapshot {
        taken_unix_ms: unix_ms_now(),
        sessions: rows,
        groups,
        counters: [("sessions_opened".to_string(), sessions + step)].into(),
        notes: vec!["synthetic feed from examples/monitor_feed.rs".into()],
        ..Default::default()
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let sessions: u64 = args.next().map_or(2_000, |a| {
        a.parse()
            .expect("invalid SESSIONS: expected a whole number, such as 2000")
    });
    let seconds: u64 = args.next().map_or(30, |a| {
        a.parse()
            .expect("invalid SECONDS: expected a whole number, such as 30")
    });

    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("bound address");
    let telemetry = Telemetry::new(SourceInfo {
        kind: "serve".into(),
        name: "synthetic".into(),
        target: addr.to_string(),
        started_unix_ms: unix_ms_now(),
    });
    println!("ws://{addr}");

    let stop = CancellationToken::new();
    let server = tokio::spawn(feed::serve(
        listener,
        telemetry.clone(),
        stop.clone().cancelled_owned(),
    ));
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    for tick in 0..seconds * 20 {
        ticks.tick().await;
        if tick % 20 == 0 {
            telemetry.publish(snapshot(sessions, tick / 20));
        }
        let kind = if tick % 2 == 0 {
            EventKind::Connected
        } else {
            EventKind::Disconnected
        };
        telemetry.emit(
            Event::now(kind, format!("synthetic event {tick}"))
                .with_session(format!("s{}", tick % sessions.max(1))),
        );
    }
    stop.cancel();
    server.await.expect("feed server task");
}
