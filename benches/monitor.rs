//! Cost of the monitor's frames with 2,000 sessions.
//!
//! Run with `cargo bench --bench monitor`; `docs/benchmarks.md` records the
//! figures. `cargo test --all-targets` runs it too, without `--bench`; it
//! then draws a few frames only, as a smoke run whose figures mean nothing.
//!
//! Each case runs on one thread and reports wall time per frame, which is
//! also its CPU time because nothing else runs in it. At 10 frames per
//! second one frame may take 100 ms of one core, so the share of a core is
//! the time per frame divided by 100 ms.

use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use ratatui::backend::{CrosstermBackend, TestBackend};
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};

use resonate::monitor::state::{App, Screen, HISTORY_SAMPLES, HISTORY_STEP_MS};
use resonate::monitor::{view, Update};
use resonate::telemetry::{
    ClockView, Event, EventKind, FeedMessage, GroupRow, Phase, SessionRow, Snapshot, SourceInfo,
};

const SESSIONS: u64 = 2_000;
const WIDTH: u16 = 200;
const HEIGHT: u16 = 60;
const START: u64 = 1_700_000_000_000;

/// Builds a snapshot of `SESSIONS` sessions at `step` seconds after `START`,
/// with figures that move from step to step.
fn snapshot(step: u64) -> Snapshot {
    let sessions = (0..SESSIONS)
        .map(|n| {
            let wobble = ((n * 7 + step * 13) % 100) as f64;
            SessionRow {
                session: format!("s{n}"),
                client_id: Some(format!("stress-client-{n}")),
                name: Some(format!("virtual player {n}")),
                peer: format!("127.0.0.1:{}", 20_000 + n),
                dialect: "sendspin-v1".into(),
                roles: vec!["player@v1".into(), "metadata@v1".into()],
                phase: if n % 50 == 0 {
                    Phase::Handshaking
                } else {
                    Phase::Active
                },
                group: Some(format!("g{}", n % 20)),
                format: Some("opus 48000 Hz 16-bit 2 ch".into()),
                server_clock: Some(ClockView {
                    offset_us: wobble - 50.0,
                    drift_ppm: None,
                    error_us: Some(20.0 + wobble / 10.0),
                    rtt_us: Some(200.0 + wobble * 3.0),
                    samples: step,
                    converged: None,
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
                late_chunks: n % 3,
                dropped_chunks: 0,
                reconnects: n % 5,
                opened_unix_ms: START,
            }
        })
        .collect();
    let groups = (0..20)
        .map(|g| GroupRow {
            id: format!("g{g}"),
            name: format!("group {g}"),
            members: (0..SESSIONS)
                .filter(|n| n % 20 == g)
                .map(|n| format!("stress-client-{n}"))
                .collect(),
            playback: "playing".into(),
            volume: Some(50),
            muted: Some(false),
            metadata: None,
        })
        .collect();
    Snapshot {
        source: SourceInfo {
            kind: "stress".into(),
            name: "bench".into(),
            target: "127.0.0.1:8927".into(),
            started_unix_ms: START,
        },
        taken_unix_ms: START + step * HISTORY_STEP_MS,
        sessions,
        groups,
        counters: [("sessions_opened".to_string(), SESSIONS + step)].into(),
        ..Snapshot::default()
    }
}

/// Builds an app with full history for every session and a full event log.
fn loaded_app() -> (App, u64) {
    let steps = HISTORY_SAMPLES as u64;
    let mut app = App::new("ws://127.0.0.1:8930", START);
    for step in 0..steps {
        app.apply(Update::Feed(FeedMessage::Snapshot(snapshot(step))));
    }
    for n in 0..5_000u64 {
        app.apply(Update::Feed(FeedMessage::Event(Event {
            unix_ms: START + n * 50,
            kind: if n % 2 == 0 {
                EventKind::Connected
            } else {
                EventKind::Disconnected
            },
            session: Some(format!("s{}", n % SESSIONS)),
            client_id: None,
            detail: "peer closed the connection without goodbye".into(),
        })));
    }
    app.now_unix_ms = START + steps * HISTORY_STEP_MS;
    (app, steps)
}

/// Runs `frame` `count` times and prints the time per frame and the share
/// of one core at 10 frames per second.
fn measure(name: &str, count: u32, mut frame: impl FnMut(u32)) {
    frame(0);
    let started = Instant::now();
    for i in 0..count {
        frame(i);
    }
    let per_frame = started.elapsed() / count;
    println!(
        "{name:<58} {:>8.3} ms/frame  {:>5.1}% of one core at 10 fps",
        ms(per_frame),
        ms(per_frame) / 100.0 * 100.0
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let frames = if full { 300 } else { 3 };

    let started = Instant::now();
    let (mut app, steps) = loaded_app();
    println!(
        "{SESSIONS} sessions, {} history samples each, {} events; setup took {:.1} s; {WIDTH}x{HEIGHT} cells",
        HISTORY_SAMPLES,
        app.events.len(),
        started.elapsed().as_secs_f64()
    );

    // Fresh snapshots to apply, prepared ahead so building them is not timed.
    let fresh: Vec<Snapshot> = (0..frames.min(30))
        .map(|i| snapshot(steps + u64::from(i)))
        .collect();

    let mut test_terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).unwrap();
    measure("sessions table, TestBackend", frames, |_| {
        test_terminal
            .draw(|frame| view::render(frame, &app))
            .unwrap();
    });

    // A real terminal backend: the diff against the previous frame is
    // turned into escape sequences, written to a sink. A fixed viewport
    // skips the size query before each frame, which without a terminal
    // falls back to running `tput` and would dominate the figures.
    let viewport = Viewport::Fixed(Rect::new(0, 0, WIDTH, HEIGHT));
    let mut sink_terminal = Terminal::with_options(
        CrosstermBackend::new(io::sink()),
        TerminalOptions { viewport },
    )
    .unwrap();
    measure("sessions table, crossterm to a sink", frames, |_| {
        sink_terminal
            .draw(|frame| view::render(frame, &app))
            .unwrap();
    });

    // Worst case: every frame brings a new snapshot (history, rates and
    // sort), and the selection moves so the drawn rows change.
    let mut i = 0usize;
    measure(
        "new snapshot + sessions frame, crossterm to a sink",
        frames,
        |_| {
            let mut snapshot = fresh[i % fresh.len()].clone();
            snapshot.taken_unix_ms +=
                (i as u64 / fresh.len() as u64) * fresh.len() as u64 * HISTORY_STEP_MS;
            app.apply(Update::Feed(FeedMessage::Snapshot(snapshot)));
            app.move_by(1);
            sink_terminal
                .draw(|frame| view::render(frame, &app))
                .unwrap();
            i += 1;
        },
    );

    // Only applying a snapshot, without drawing.
    let mut j = 0usize;
    measure("apply a 2,000-session snapshot (no frame)", frames, |_| {
        let snapshot = fresh[j % fresh.len()].clone();
        app.apply(Update::Feed(FeedMessage::Snapshot(black_box(snapshot))));
        j += 1;
    });

    app.next_sort();
    for _ in 0..4 {
        app.next_sort();
    }
    for c in "player 1".chars() {
        app.filter_push(c);
    }
    measure(
        "sessions sorted by |offset|, filter \"player 1\"",
        frames,
        |_| {
            sink_terminal
                .draw(|frame| view::render(frame, &app))
                .unwrap();
        },
    );
    app.end_filter(false);

    app.toggle_details();
    measure("details with sparklines", frames, |_| {
        sink_terminal
            .draw(|frame| view::render(frame, &app))
            .unwrap();
    });
    app.details = false;

    app.show_screen(Screen::Groups);
    measure("groups", frames, |_| {
        sink_terminal
            .draw(|frame| view::render(frame, &app))
            .unwrap();
    });

    app.show_screen(Screen::Events);
    measure("event log (5,000 lines)", frames, |_| {
        sink_terminal
            .draw(|frame| view::render(frame, &app))
            .unwrap();
    });
}
