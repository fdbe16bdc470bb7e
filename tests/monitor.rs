//! The monitor driven end to end: scripted telemetry and keys through the
//! draw loop on ratatui's `TestBackend`, compared with `insta` snapshots;
//! the telemetry feed read back over a loopback WebSocket; plain output.
//!
//! Every time is fixed: the source starts at `STARTED`, the clock reads
//! `NOW`, so uptime and event times in the snapshots never change.

use std::collections::BTreeMap;
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use resonate::monitor::plain::render_plain;
use resonate::monitor::{self, App, Update};
use resonate::telemetry::{
    feed, ClockView, Event, EventKind, FeedHello, FeedMessage, GroupRow, Phase, SessionRow,
    Snapshot, SourceInfo, Telemetry, TrackInfo, FEED_VERSION,
};

const STARTED: u64 = 1_700_000_000_000;
/// One hour, two minutes and three seconds after the source started.
const NOW: u64 = STARTED + 3_723_000;
const TARGET: &str = "ws://127.0.0.1:8930";

fn source() -> SourceInfo {
    SourceInfo {
        kind: "serve".into(),
        name: "kitchen".into(),
        target: "127.0.0.1:8927".into(),
        started_unix_ms: STARTED,
    }
}

/// Builds a player session; `n` varies its figures.
fn player(n: u64, name: &str) -> SessionRow {
    SessionRow {
        session: format!("s{n}"),
        client_id: Some(format!("player-{n}")),
        name: Some(name.into()),
        peer: format!("127.0.0.1:{}", 50_000 + n),
        dialect: "sendspin-v1".into(),
        roles: vec!["player@v1".into(), "metadata@v1".into()],
        phase: Phase::Active,
        group: Some("main".into()),
        format: Some("flac 48000 Hz 16-bit 2 ch".into()),
        server_clock: Some(ClockView {
            offset_us: 40.0 * n as f64 - 90.0,
            drift_ppm: None,
            error_us: Some(30.0),
            rtt_us: Some(300.0 + 50.0 * n as f64),
            samples: 20,
            converged: None,
        }),
        client_clock: None,
        buffer_ms: Some(1_800.0 + n as f64),
        late_chunks: n % 2,
        dropped_chunks: 0,
        reconnects: n / 3,
        opened_unix_ms: NOW - 65_000,
    }
}

/// Three players with the client's own clock view and one controller
/// without clock figures, so both markings show.
fn sessions(at: u64) -> Vec<SessionRow> {
    let wave = (at / 1_000 % 7) as f64;
    let mut kitchen = player(1, "Kitchen");
    kitchen.client_clock = Some(ClockView {
        offset_us: -12.0 + wave * 3.0,
        drift_ppm: Some(1.5),
        error_us: Some(8.0),
        rtt_us: Some(240.0 + wave * 10.0),
        samples: 120,
        converged: Some(true),
    });
    kitchen.buffer_ms = Some(1_500.0 + wave * 40.0);
    let mut hall = player(2, "Hall");
    hall.client_clock = Some(ClockView {
        offset_us: 2_500.0,
        drift_ppm: Some(-12.25),
        error_us: Some(15.0),
        rtt_us: Some(1_200.0),
        samples: 80,
        converged: Some(false),
    });
    let mut office = player(10, "Office");
    office.phase = Phase::Handshaking;
    office.group = None;
    office.format = None;
    let remote = SessionRow {
        session: "s3".into(),
        client_id: Some("phone".into()),
        name: Some("Remote".into()),
        peer: "127.0.0.1:50100".into(),
        dialect: "sendspin-v1".into(),
        roles: vec!["controller@v1".into()],
        phase: Phase::Closing,
        opened_unix_ms: NOW - 5_000,
        ..Default::default()
    };
    vec![kitchen, hall, remote, office]
}

fn groups() -> Vec<GroupRow> {
    vec![
        GroupRow {
            id: "main".into(),
            name: "Downstairs".into(),
            members: vec!["player-1".into(), "player-2".into()],
            playback: "playing".into(),
            volume: Some(40),
            muted: Some(false),
            metadata: Some(TrackInfo {
                title: Some("Blue in Green".into()),
                artist: Some("Miles Davis".into()),
                album: Some("Kind of Blue".into()),
                position_ms: Some(62_000),
                duration_ms: Some(337_000),
            }),
        },
        GroupRow {
            id: "g-10".into(),
            name: "g-10".into(),
            members: vec!["player-10".into()],
            playback: "stopped".into(),
            volume: None,
            muted: Some(true),
            metadata: None,
        },
    ]
}

fn snapshot(at: u64, notes: Vec<String>) -> Update {
    let counters = BTreeMap::from([("sessions_opened".to_string(), 4 + (at - STARTED) / 10_000)]);
    // The source is set afterwards, so fields that the feed format gains
    // later keep their defaults here.
    let mut snapshot = Snapshot {
        taken_unix_ms: at,
        sessions: sessions(at),
        groups: groups(),
        counters,
        notes,
        ..Snapshot::default()
    };
    snapshot.source = source();
    Update::Feed(FeedMessage::Snapshot(snapshot))
}

fn event(at: u64, kind: EventKind, session: &str, detail: &str) -> Update {
    Update::Feed(FeedMessage::Event(Event {
        unix_ms: at,
        kind,
        session: Some(session.into()),
        client_id: None,
        detail: detail.into(),
    }))
}

/// Builds a hello, 60 snapshots one second apart ending at `NOW`, and a few events.
fn script(notes: &[&str]) -> Vec<Update> {
    let mut updates = vec![
        Update::Status("connected".into()),
        Update::Feed(FeedMessage::Hello(FeedHello {
            version: FEED_VERSION,
            source: source(),
        })),
    ];
    let kinds = [
        (
            EventKind::Connected,
            "s1",
            "client player-1 completed its handshake",
        ),
        (EventKind::Marker, "-", "scenario churn started"),
        (
            EventKind::Disconnected,
            "s4",
            "peer said goodbye (shutdown)",
        ),
        (
            EventKind::Replaced,
            "s5",
            "replaced by s2 with the same client_id",
        ),
        (
            EventKind::Violation,
            "s6",
            "binary frame before client/hello",
        ),
    ];
    for step in 0..60u64 {
        let at = NOW - (59 - step) * 1_000;
        let notes = notes.iter().map(|n| n.to_string()).collect();
        updates.push(snapshot(at, notes));
        let (kind, session, detail) = kinds[step as usize % kinds.len()];
        updates.push(event(at + 1, kind, session, &format!("{detail} #{step}")));
    }
    updates
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn keys_of(text: &str) -> Vec<KeyEvent> {
    text.chars().map(|c| key(KeyCode::Char(c))).collect()
}

/// Runs the draw loop on a `width` x `height` test terminal with every
/// update queued, then once per key, as a person typing gets a frame after
/// each key. Returns the screen after the last frame.
async fn drive(
    width: u16,
    height: u16,
    updates: Vec<Update>,
    keys: Vec<KeyEvent>,
) -> (TestBackend, App) {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let mut app = App::new(TARGET, NOW);
    let (sender, receiver) = mpsc::channel(updates.len() + 1);
    for update in updates {
        sender.send(update).await.unwrap();
    }
    drop(sender);
    let no_keys = futures_util::stream::iter(Vec::<std::io::Result<TermEvent>>::new());
    monitor::run(&mut terminal, &mut app, receiver, no_keys, || NOW)
        .await
        .unwrap();

    for key in keys {
        let (_, closed) = mpsc::channel(1);
        let one_key = futures_util::stream::iter([Ok(TermEvent::Key(key))]);
        monitor::run(&mut terminal, &mut app, closed, one_key, || NOW)
            .await
            .unwrap();
    }
    (terminal.backend().clone(), app)
}

#[tokio::test]
async fn sessions_small_terminal() {
    let (screen, _) = drive(80, 24, script(&[]), vec![]).await;
    insta::assert_snapshot!(screen);
}

#[tokio::test]
async fn sessions_wide_terminal() {
    let (screen, _) = drive(160, 30, script(&[]), vec![]).await;
    insta::assert_snapshot!(screen);
}

#[tokio::test]
async fn sessions_sorted_by_offset_descending() {
    // From `id`, five presses of `s` reach `|offset|`; `S` reverses.
    let mut keys = keys_of("sssss");
    keys.push(key(KeyCode::Char('S')));
    let (screen, app) = drive(120, 24, script(&[]), keys).await;
    let order: Vec<&str> = app
        .order
        .iter()
        .map(|&i| app.shown.sessions[i].session.as_str())
        .collect();
    assert_eq!(order, ["s2", "s10", "s1", "s3"]);
    insta::assert_snapshot!(screen);
}

#[tokio::test]
async fn sessions_filtered() {
    let mut keys = keys_of("/");
    keys.extend(keys_of("hall"));
    keys.push(key(KeyCode::Enter));
    let (screen, app) = drive(80, 24, script(&[]), keys).await;
    assert_eq!(app.order.len(), 1);
    insta::assert_snapshot!(screen);
}

#[tokio::test]
async fn details_with_sparklines() {
    // Down once selects s2 in id order (s1, s2, s3, s10); Up returns to s1.
    let keys = vec![key(KeyCode::Down), key(KeyCode::Up), key(KeyCode::Enter)];
    let (screen, app) = drive(100, 30, script(&[]), keys).await;
    assert!(app.details);
    assert_eq!(app.selected_row().unwrap().session, "s1");
    insta::assert_snapshot!(screen);
}

#[tokio::test]
async fn selected_row_is_reversed() {
    let (screen, app) = drive(80, 24, script(&[]), vec![key(KeyCode::Down)]).await;
    assert_eq!(app.selected_row().unwrap().session, "s2");
    // Rows start below the header (2 lines), the tabs, the title and the
    // column names; s1 is on line 5 and s2 on line 6.
    let buffer = screen.buffer();
    let reversed = |y: u16| {
        buffer[(0, y)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED)
    };
    assert!(!reversed(5));
    assert!(reversed(6));
    assert_eq!(buffer[(0, 6)].symbol(), "s");
    assert_eq!(buffer[(1, 6)].symbol(), "2");
}

#[tokio::test]
async fn details_small_terminal() {
    let keys = vec![key(KeyCode::Down), key(KeyCode::Enter)];
    let (screen, _) = drive(80, 24, script(&[]), keys).await;
    insta::assert_snapshot!(screen);
}

#[tokio::test]
async fn groups_screen() {
    let (screen, _) = drive(100, 24, script(&[]), vec![key(KeyCode::Tab)]).await;
    insta::assert_snapshot!(screen);
}

#[tokio::test]
async fn event_log_scrolled_back() {
    // The log shows 19 lines at 80x24, so Page Up moves 18 and Up one more.
    let keys = vec![
        key(KeyCode::Char('3')),
        key(KeyCode::PageUp),
        key(KeyCode::Up),
    ];
    let (screen, app) = drive(80, 24, script(&[]), keys).await;
    assert_eq!(app.event_scroll, 19);
    insta::assert_snapshot!(screen);
}

#[tokio::test]
async fn paused_view_stays_frozen() {
    // Pause after the script's first half, then let the second half in.
    let mut updates = script(&[]);
    let later = updates.split_off(62);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut app = App::new(TARGET, NOW);
    for update in updates {
        app.apply(update);
    }
    app.toggle_pause();
    let shown_at_pause = app.shown.taken_unix_ms;
    let (sender, receiver) = mpsc::channel(later.len());
    for update in later {
        sender.send(update).await.unwrap();
    }
    drop(sender);
    let events = futures_util::stream::iter(Vec::<std::io::Result<TermEvent>>::new());
    monitor::run(&mut terminal, &mut app, receiver, events, || NOW)
        .await
        .unwrap();
    assert_eq!(app.shown.taken_unix_ms, shown_at_pause);
    assert_eq!(app.live.taken_unix_ms, NOW);
    // History kept growing while paused.
    assert_eq!(app.histories["s1"].samples.len(), 60);
    insta::assert_snapshot!(terminal.backend());
}

#[tokio::test]
async fn notes_are_shown() {
    let notes = [
        "a foreign server does not report its clients' clock filters; offsets are this monitor's own estimates",
        "buffer fill is unknown for players of a foreign server",
    ];
    let (screen, _) = drive(80, 24, script(&notes), vec![]).await;
    insta::assert_snapshot!(screen);
}

#[tokio::test]
async fn quit_key_ends_loop_with_updates_open() {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let (_sender, receiver) = mpsc::channel::<Update>(1);
    let events = futures_util::stream::iter(vec![Ok(TermEvent::Key(key(KeyCode::Char('q'))))]);
    let mut app = App::new(TARGET, NOW);
    let run = monitor::run(&mut terminal, &mut app, receiver, events, || NOW);
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("q ends the loop")
        .unwrap();
}

#[test]
fn plain_report_lists_rows_and_new_events_once() {
    let mut app = App::new(TARGET, NOW);
    for update in script(&["buffer fill is unknown for players of a foreign server"]) {
        app.apply(update);
    }
    let mut printed = 55;
    let first = render_plain(&app, &mut printed);
    insta::assert_snapshot!(first);
    assert_eq!(printed, 60);
    let second = render_plain(&app, &mut printed);
    assert!(!second.contains("#59"), "{second}");
}

#[tokio::test]
async fn plain_run_prints_last_report_when_updates_end() {
    let (sender, receiver) = mpsc::channel(256);
    for update in script(&[]) {
        sender.send(update).await.unwrap();
    }
    drop(sender);
    let mut out = Vec::new();
    monitor::run_plain(TARGET, receiver, &mut out, Duration::from_secs(3_600))
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("4 sessions"), "{text}");
    assert!(text.contains("Kitchen"), "{text}");
    assert!(text.contains("scenario churn started #1"), "{text}");
    assert_eq!(text.matches("== ").count(), 1, "{text}");
}

/// Starts a feed server for `telemetry` on a loopback port.
async fn serve_feed(
    telemetry: Telemetry,
    stop: CancellationToken,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server =
        tokio::spawn(async move { feed::serve(listener, telemetry, stop.cancelled_owned()).await });
    (url, server)
}

/// Applies updates from `receiver` to `app` until `done` holds, or fails after 10 s.
async fn apply_until(
    app: &mut App,
    receiver: &mut mpsc::Receiver<Update>,
    done: impl Fn(&App) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(app) {
        let update = tokio::time::timeout_at(deadline, receiver.recv())
            .await
            .expect("the expected updates arrive within 10 s")
            .expect("the source keeps running");
        app.apply(update);
    }
}

#[tokio::test]
async fn feed_round_trip_into_app() {
    let telemetry = Telemetry::new(source());
    telemetry.emit(Event::now(EventKind::Connected, "before the monitor").with_session("s1"));
    let server_stop = CancellationToken::new();
    let (url, server) = serve_feed(telemetry.clone(), server_stop.clone()).await;

    let (sender, mut receiver) = mpsc::channel(64);
    let monitor_stop = CancellationToken::new();
    let follow = {
        let (url, stop) = (url.clone(), monitor_stop.clone());
        tokio::spawn(async move { monitor::follow_feed(&url, sender, stop).await })
    };
    let mut app = App::new(url.clone(), NOW);

    // The backlog event and the hub's first snapshot come with the hello.
    apply_until(&mut app, &mut receiver, |app| {
        app.source.is_some() && app.events_total >= 1
    })
    .await;
    assert_eq!(app.source.as_ref().unwrap().name, "kitchen");
    assert_eq!(app.events[0].event.detail, "before the monitor");

    telemetry.publish(Snapshot {
        taken_unix_ms: NOW,
        sessions: sessions(NOW),
        groups: groups(),
        notes: vec!["a note".into()],
        ..Default::default()
    });
    telemetry.emit(Event::now(EventKind::Violation, "oversized frame").with_session("s2"));
    apply_until(&mut app, &mut receiver, |app| {
        app.live.sessions.len() == 4 && app.events_total >= 2
    })
    .await;
    assert_eq!(app.shown.groups.len(), 2);
    assert_eq!(app.shown.notes, ["a note"]);
    assert_eq!(app.events[1].event.kind, EventKind::Violation);
    assert_eq!(app.status.as_deref(), Some("connected"));

    // When the feed goes away, the status reports it and a planned retry.
    server_stop.cancel();
    server.await.unwrap();
    apply_until(&mut app, &mut receiver, |app| {
        app.status
            .as_deref()
            .is_some_and(|s| s.contains("retry in"))
    })
    .await;

    monitor_stop.cancel();
    follow.await.unwrap().unwrap();
}

#[tokio::test]
async fn unreachable_feed_fails_at_first_attempt() {
    // Bind and drop a listener to find a loopback port with no listener.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}");
    let (sender, _receiver) = mpsc::channel(8);
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        monitor::follow_feed(&url, sender, CancellationToken::new()),
    )
    .await
    .expect("the first attempt fails quickly");
    let err = result.unwrap_err().to_string();
    assert!(err.contains(&url), "{err}");
}

#[tokio::test]
async fn hub_forwarding_into_app() {
    let telemetry = Telemetry::new(source());
    telemetry.publish(Snapshot {
        taken_unix_ms: NOW,
        sessions: sessions(NOW),
        ..Default::default()
    });
    let (sender, mut receiver) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let forward = tokio::spawn(monitor::forward_hub(
        telemetry.clone(),
        sender,
        stop.clone(),
    ));
    let mut app = App::new("in process", NOW);
    apply_until(&mut app, &mut receiver, |app| app.live.sessions.len() == 4).await;
    telemetry.emit(Event::now(EventKind::Marker, "scenario churn ended"));
    apply_until(&mut app, &mut receiver, |app| app.events_total == 1).await;
    stop.cancel();
    forward.await.unwrap();
}
