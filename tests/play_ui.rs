//! The terminal UI of `play` driven by scripted player events on ratatui's
//! `TestBackend`, compared with `insta` snapshots, and its keys turned into
//! controller commands.
//!
//! Every figure is fixed: the clock snapshot maps local time `LOCAL_NOW`
//! to server time `SERVER_NOW`, so the progress bar never moves.

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use tokio::sync::mpsc;

use resonate::audio::AudioFormat;
use resonate::player::client::PlayerEvent;
use resonate::player::roles::Roles;
use resonate::player::scheduler::{PlaybackState as AudioState, PlaybackStatus};
use resonate::player::ui::input::{handle_key, VOLUME_STEP};
use resonate::player::ui::{self, Action, App, Live, PlayState};
use resonate::protocol::{
    ConnectionReason, ControllerCommand, ControllerState, GroupUpdate, Metadata, PlaybackState,
    RepeatMode, ServerState, TrackProgress,
};
use resonate::sync::ClockSnapshot;

const TARGET: &str = "ws://127.0.0.1:8927/sendspin";
const LOCAL_NOW: i64 = 50_000_000;
/// Server time at `LOCAL_NOW`: the server clock runs 7 s ahead.
const SERVER_NOW: i64 = LOCAL_NOW + 7_000_000;

fn clock() -> ClockSnapshot {
    ClockSnapshot {
        offset_us: (SERVER_NOW - LOCAL_NOW) as f64,
        drift: 0.0,
        reference_local_us: LOCAL_NOW,
        error_us: 150.0,
        rtt_us: 420,
        samples: 40,
        converged: true,
    }
}

fn live(player: bool) -> Live {
    Live {
        clock: clock(),
        local_now_us: LOCAL_NOW,
        playback: player.then(|| PlaybackStatus {
            state: AudioState::Playing,
            format: Some(AudioFormat::pcm(48_000, 2, 24)),
            buffered_us: 1_800_000,
            volume: 80,
            ..Default::default()
        }),
    }
}

fn connected(roles: &[&str]) -> PlayerEvent {
    PlayerEvent::Connected {
        server_id: "music-assistant".into(),
        server_name: "Living room".into(),
        active_roles: roles.iter().map(|r| r.to_string()).collect(),
        connection_reason: ConnectionReason::Discovery,
    }
}

fn controller(commands: &[&str], volume: u8, muted: bool) -> PlayerEvent {
    PlayerEvent::ServerState(ServerState {
        controller: Some(ControllerState {
            supported_commands: commands.iter().map(|c| c.to_string()).collect(),
            volume,
            muted,
        }),
        ..Default::default()
    })
}

fn group(playback: PlaybackState) -> PlayerEvent {
    PlayerEvent::GroupUpdate(GroupUpdate {
        playback_state: Some(Some(playback)),
        group_id: Some(Some("g-kitchen".into())),
        group_name: Some(Some("Kitchen".into())),
    })
}

/// Metadata sent 30 s of server time before `SERVER_NOW`, at 1:00 of a
/// 4:00 track, so the bar shows 1:30.
fn track() -> PlayerEvent {
    PlayerEvent::ServerState(ServerState {
        metadata: Some(Metadata {
            timestamp: SERVER_NOW - 30_000_000,
            title: Some(Some("Blue in Green".into())),
            artist: Some(Some("Miles Davis".into())),
            album: Some(Some("Kind of Blue".into())),
            year: Some(Some(1959)),
            track: Some(Some(3)),
            progress: Some(Some(TrackProgress {
                track_progress: 60_000,
                track_duration: 240_000,
                playback_speed: 1000,
            })),
            repeat: Some(Some(RepeatMode::All)),
            shuffle: Some(Some(false)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Runs the draw loop on a `width` x `height` test terminal with every
/// event queued and the event channel closed, which draws a last frame.
async fn draw(width: u16, height: u16, roles: Roles, events: Vec<PlayerEvent>) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let mut app = App::new(PlayState::new(TARGET, roles));
    let (sender, receiver) = mpsc::unbounded_channel();
    for event in events {
        sender.send(event).unwrap();
    }
    drop(sender);
    let no_keys = futures_util::stream::iter(Vec::<std::io::Result<TermEvent>>::new());
    let (commands, _) = mpsc::unbounded_channel();
    ui::run(&mut terminal, &mut app, receiver, no_keys, commands, || {
        live(roles.player)
    })
    .await
    .unwrap();
    terminal.backend().clone()
}

#[tokio::test]
async fn now_playing_screen() {
    let events = vec![
        connected(&["player@v1", "controller@v1", "metadata@v1"]),
        group(PlaybackState::Playing),
        controller(
            &[
                "play", "pause", "next", "previous", "volume", "mute", "switch",
            ],
            45,
            false,
        ),
        track(),
        PlayerEvent::StreamStarted {
            format: AudioFormat::pcm(48_000, 2, 24),
        },
    ];
    let screen = draw(80, 20, Roles::ALL, events).await;
    insta::assert_snapshot!(screen);
}

#[tokio::test]
async fn no_metadata_screen() {
    let events = vec![
        connected(&["player@v1", "controller@v1", "metadata@v1"]),
        group(PlaybackState::Stopped),
        controller(&["play", "stop", "volume", "mute"], 100, true),
    ];
    let screen = draw(80, 20, Roles::ALL, events).await;
    insta::assert_snapshot!(screen);
}

#[tokio::test]
async fn controller_only_screen() {
    let roles: Roles = "controller".parse().unwrap();
    let events = vec![
        connected(&["controller@v1"]),
        group(PlaybackState::Playing),
        controller(&["play", "stop", "volume", "mute"], 60, false),
    ];
    let screen = draw(80, 20, roles, events).await;
    insta::assert_snapshot!(screen);
}

#[tokio::test]
async fn metadata_null_clears_the_track() {
    let clear = PlayerEvent::ServerState(ServerState {
        metadata: Some(Metadata {
            timestamp: SERVER_NOW,
            title: Some(None),
            artist: Some(None),
            album: Some(None),
            year: Some(None),
            track: Some(None),
            progress: Some(None),
            repeat: Some(None),
            shuffle: Some(None),
            ..Default::default()
        }),
        ..Default::default()
    });
    let events = vec![connected(&["metadata@v1"]), track(), clear];
    let screen = draw(80, 20, "metadata".parse().unwrap(), events).await;
    let text = format!("{screen:?}");
    assert!(text.contains("no metadata from the server yet"), "{text}");
    assert!(!text.contains("Blue in Green"), "{text}");
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn sent(action: Action) -> ControllerCommand {
    match action {
        Action::Send(command) => command,
        other => panic!("expected a command, got {other:?}"),
    }
}

/// State after a connection with every command supported, a playing
/// group at volume 45 and the scripted track.
fn full_state() -> PlayState {
    let all = [
        "play",
        "pause",
        "stop",
        "next",
        "previous",
        "volume",
        "mute",
        "repeat_off",
        "repeat_one",
        "repeat_all",
        "shuffle",
        "unshuffle",
        "switch",
    ];
    let mut state = PlayState::new(TARGET, Roles::ALL);
    for event in [
        connected(&["player@v1", "controller@v1", "metadata@v1"]),
        group(PlaybackState::Playing),
        controller(&all, 45, false),
        track(),
    ] {
        state.apply(&event);
    }
    state
}

#[test]
fn keys_map_to_controller_commands() {
    let state = full_state();
    let cases = [
        (KeyCode::Char(' '), "pause"),
        (KeyCode::Right, "next"),
        (KeyCode::Left, "previous"),
        (KeyCode::Char('r'), "repeat_one"),
        (KeyCode::Char('x'), "shuffle"),
        (KeyCode::Char('g'), "switch"),
    ];
    for (code, expected) in cases {
        let command = sent(handle_key(&state, &key(code)));
        assert_eq!(command.command, expected, "key {code:?}");
        assert_eq!(command.volume, None, "key {code:?}");
        assert_eq!(command.mute, None, "key {code:?}");
    }

    let up = sent(handle_key(&state, &key(KeyCode::Up)));
    assert_eq!(
        (up.command.as_str(), up.volume),
        ("volume", Some(45 + VOLUME_STEP as i64))
    );
    let down = sent(handle_key(&state, &key(KeyCode::Down)));
    assert_eq!(
        (down.command.as_str(), down.volume),
        ("volume", Some(45 - VOLUME_STEP as i64))
    );
    let mute = sent(handle_key(&state, &key(KeyCode::Char('m'))));
    assert_eq!((mute.command.as_str(), mute.mute), ("mute", Some(true)));

    assert_eq!(handle_key(&state, &key(KeyCode::Char('q'))), Action::Quit);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(handle_key(&state, &ctrl_c), Action::Quit);
    assert_eq!(
        handle_key(&state, &key(KeyCode::Char('z'))),
        Action::Ignored
    );
}

#[test]
fn keys_follow_current_state() {
    let mut state = full_state();
    // Stopped group: space plays.
    state.apply(&group(PlaybackState::Stopped));
    assert_eq!(
        sent(handle_key(&state, &key(KeyCode::Char(' ')))).command,
        "play"
    );
    // Repeat one goes to off, shuffle on goes to unshuffle, muted unmutes,
    // and volume stays within 0 to 100.
    state.apply(&PlayerEvent::ServerState(ServerState {
        metadata: Some(Metadata {
            timestamp: SERVER_NOW,
            repeat: Some(Some(RepeatMode::One)),
            shuffle: Some(Some(true)),
            ..Default::default()
        }),
        ..Default::default()
    }));
    state.controller.as_mut().unwrap().muted = true;
    state.controller.as_mut().unwrap().volume = 98;
    assert_eq!(
        sent(handle_key(&state, &key(KeyCode::Char('r')))).command,
        "repeat_off"
    );
    assert_eq!(
        sent(handle_key(&state, &key(KeyCode::Char('x')))).command,
        "unshuffle"
    );
    assert_eq!(
        sent(handle_key(&state, &key(KeyCode::Char('m')))).mute,
        Some(false)
    );
    assert_eq!(
        sent(handle_key(&state, &key(KeyCode::Up))).volume,
        Some(100)
    );
    state.controller.as_mut().unwrap().volume = 2;
    assert_eq!(
        sent(handle_key(&state, &key(KeyCode::Down))).volume,
        Some(0)
    );
}

#[test]
fn unsupported_keys_send_nothing() {
    let mut state = PlayState::new(TARGET, Roles::ALL);
    state.apply(&connected(&["player@v1", "controller@v1", "metadata@v1"]));
    state.apply(&group(PlaybackState::Playing));
    state.apply(&controller(&["play", "stop", "volume", "mute"], 50, false));
    // Playing without pause support: space stops.
    assert_eq!(
        sent(handle_key(&state, &key(KeyCode::Char(' ')))).command,
        "stop"
    );
    for code in [
        KeyCode::Right,
        KeyCode::Left,
        KeyCode::Char('r'),
        KeyCode::Char('x'),
        KeyCode::Char('g'),
    ] {
        match handle_key(&state, &key(code)) {
            Action::Unavailable(reason) => {
                assert!(reason.contains("supported commands"), "{reason}")
            }
            other => panic!("key {code:?} gave {other:?}"),
        }
    }

    let mut no_controller = PlayState::new(TARGET, "metadata".parse().unwrap());
    no_controller.apply(&connected(&["metadata@v1"]));
    match handle_key(&no_controller, &key(KeyCode::Up)) {
        Action::Unavailable(reason) => assert!(reason.contains("--roles"), "{reason}"),
        other => panic!("volume without controller gave {other:?}"),
    }
}

#[tokio::test]
async fn draw_loop_sends_commands_for_keys() {
    let mut terminal = Terminal::new(TestBackend::new(80, 20)).unwrap();
    let mut app = App::new(PlayState::new(TARGET, Roles::ALL));
    let (events, receiver) = mpsc::unbounded_channel();
    events
        .send(connected(&["player@v1", "controller@v1", "metadata@v1"]))
        .unwrap();
    events
        .send(controller(&["play", "stop", "volume", "mute"], 30, false))
        .unwrap();
    let keys = futures_util::stream::iter(
        [
            KeyCode::Up,
            KeyCode::Right,
            KeyCode::Char('m'),
            KeyCode::Char('q'),
        ]
        .map(|code| Ok(TermEvent::Key(key(code)))),
    );
    let (commands, mut sent) = mpsc::unbounded_channel();
    ui::run(&mut terminal, &mut app, receiver, keys, commands, || {
        live(true)
    })
    .await
    .unwrap();
    let volume = sent.try_recv().expect("no command for the up arrow");
    assert_eq!(
        (volume.command.as_str(), volume.volume),
        ("volume", Some(35))
    );
    let mute = sent.try_recv().expect("no command for m");
    assert_eq!((mute.command.as_str(), mute.mute), ("mute", Some(true)));
    assert!(
        sent.try_recv().is_err(),
        "next was sent although the server does not support it"
    );
    assert_eq!(app.notice.as_deref(), Some("sent mute on"));
    drop(events);
}

#[tokio::test]
async fn listening_player_waits_for_servers() {
    let mut terminal = Terminal::new(TestBackend::new(80, 20)).unwrap();
    let mut state = PlayState::new("ws://0.0.0.0:8928/sendspin", Roles::ALL);
    state.listening = true;
    let mut app = App::new(state);
    let (sender, receiver) = mpsc::unbounded_channel::<PlayerEvent>();
    drop(sender);
    let no_keys = futures_util::stream::iter(Vec::<std::io::Result<TermEvent>>::new());
    let (commands, _) = mpsc::unbounded_channel();
    ui::run(
        &mut terminal,
        &mut app,
        receiver,
        no_keys,
        commands,
        Live::default,
    )
    .await
    .unwrap();
    let text = format!("{:?}", terminal.backend());
    assert!(
        text.contains("waiting for servers to connect to ws://0.0.0.0:8928/sendspin"),
        "{text}"
    );
    assert!(text.contains("clock not synced yet"), "{text}");
    assert!(text.contains("no metadata from the server yet"), "{text}");
}

#[tokio::test]
async fn tiny_terminal_draws_without_panic() {
    let events = vec![
        connected(&["player@v1", "controller@v1", "metadata@v1"]),
        group(PlaybackState::Playing),
        controller(&["play", "pause", "volume"], 45, false),
        track(),
    ];
    for (width, height) in [(1, 1), (12, 4), (30, 8)] {
        let screen = draw(width, height, Roles::ALL, events.clone()).await;
        assert_eq!(screen.buffer().area.width, width);
    }
}

#[tokio::test]
async fn every_command_fits_in_80_columns() {
    let all = [
        "play",
        "pause",
        "stop",
        "next",
        "previous",
        "volume",
        "mute",
        "repeat_off",
        "repeat_one",
        "repeat_all",
        "shuffle",
        "unshuffle",
        "switch",
    ];
    let events = vec![
        connected(&["controller@v1", "metadata@v1"]),
        controller(&all, 45, false),
        track(),
    ];
    let screen = draw(80, 20, "controller,metadata".parse().unwrap(), events).await;
    insta::assert_snapshot!(screen);
    let text = format!("{screen:?}");
    assert!(
        text.contains("switch"),
        "the commands row lost its end: {text}"
    );
    assert!(
        text.contains(" space play  ←/→ skip"),
        "the footer lost its start: {text}"
    );
    assert!(
        text.contains("g group  q quit"),
        "the footer lost its end: {text}"
    );
}
