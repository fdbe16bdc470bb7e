//! `play` without the player role against a real `resonate serve`: a
//! controller and metadata client that opens no audio output, sends
//! controller commands and receives the group's changed state.

#[path = "support/process.rs"]
mod process;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use process::{resonate, Proc};
use resonate::dialect::Dialect;
use resonate::player::client::{Backoff, Player, PlayerConfig, PlayerEvent};
use resonate::player::roles::Roles;
use resonate::player::scheduler::Scheduler;
use resonate::protocol::{ControllerCommand, ControllerState};
use resonate::sync::SharedClock;
use resonate::transport::Limits;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/sine440_660_stereo_48000_24bit.flac"
);

/// Starts `serve` with one `play --output null` player in its group and
/// returns both and the server URL.
fn serve_with_player(player_id: &str) -> (Proc, Proc, String) {
    let mut serve = resonate(&[
        "serve",
        "--dialect",
        "sendspin-v1",
        FIXTURE,
        "--listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--loop",
        "--json",
    ]);
    let url = serve.wait_event("listening", Duration::from_secs(20))["url"]
        .as_str()
        .unwrap()
        .to_string();
    let mut player = resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        &url,
        "--output",
        "null",
        "--client-id",
        player_id,
        "--duration",
        "120",
        "--json",
    ]);
    player.wait_event("stream_started", Duration::from_secs(30));
    (serve, player, url)
}

/// Waits for the next controller state in `events`.
async fn next_controller(events: &mut mpsc::UnboundedReceiver<PlayerEvent>) -> ControllerState {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("no controller state within 20 s")
            .expect("the player stopped");
        if let PlayerEvent::ServerState(state) = event {
            if let Some(controller) = state.controller {
                return controller;
            }
        }
    }
}

/// Builds a controller and metadata client of `url` without audio.
fn remote_config(url: &str) -> PlayerConfig {
    PlayerConfig {
        url: url.parse().unwrap(),
        client_id: "remote".into(),
        name: "remote".into(),
        dialect: Dialect::SendspinV1,
        formats: Vec::new(),
        buffer_capacity: 1_000_000,
        limits: Limits::default(),
        backoff: Backoff::default(),
        volume: 100,
        muted: false,
        format_request: None,
        keys: None,
        cleartext_fallback: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_commands_change_group_state() {
    let (mut serve, mut player, url) = serve_with_player("kitchen");

    let config = remote_config(&url);
    let roles: Roles = "controller,metadata".parse().unwrap();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let (publisher, _clock) = SharedClock::channel();
    let remote = Player::new(config, Arc::new(Scheduler::new()), publisher)
        .with_roles(roles)
        .with_events(events_tx)
        .with_commands(commands_rx);
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(remote.run(async move {
        let _ = stopped.await;
    }));

    let Some(PlayerEvent::Connected { active_roles, .. }) = events.recv().await else {
        panic!("the first event is not a connection");
    };
    assert!(
        active_roles.iter().any(|r| r == "controller@v1"),
        "{active_roles:?}"
    );
    assert!(
        !active_roles.iter().any(|r| r == "player@v1"),
        "{active_roles:?}"
    );

    let initial = next_controller(&mut events).await;
    assert_eq!(initial.volume, 100);
    assert!(!initial.muted);
    assert!(
        initial.supported_commands.iter().any(|c| c == "mute"),
        "{:?}",
        initial.supported_commands
    );

    commands
        .send(ControllerCommand {
            command: "mute".into(),
            volume: None,
            mute: Some(true),
        })
        .unwrap();
    let mut state = next_controller(&mut events).await;
    while !state.muted {
        state = next_controller(&mut events).await;
    }

    commands
        .send(ControllerCommand {
            command: "volume".into(),
            volume: Some(40),
            mute: None,
        })
        .unwrap();
    let mut state = next_controller(&mut events).await;
    while state.volume != 40 {
        state = next_controller(&mut events).await;
    }
    assert!(state.muted, "the volume command unmuted the group");

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert!(player.interrupt().success());
    assert!(serve.interrupt().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_before_connection_are_dropped() {
    let (mut serve, mut player, url) = serve_with_player("porch");
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (commands, commands_rx) = mpsc::unbounded_channel();
    // A mute given before any session runs must not reach the server.
    commands
        .send(ControllerCommand {
            command: "mute".into(),
            volume: None,
            mute: Some(true),
        })
        .unwrap();
    let (publisher, _clock) = SharedClock::channel();
    let remote = Player::new(remote_config(&url), Arc::new(Scheduler::new()), publisher)
        .with_roles("controller".parse().unwrap())
        .with_events(events_tx)
        .with_commands(commands_rx);
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(remote.run(async move {
        let _ = stopped.await;
    }));

    assert!(!next_controller(&mut events).await.muted);
    // The server handles one client's commands in order, so the state
    // after this volume shows whether the mute went out before it.
    commands
        .send(ControllerCommand {
            command: "volume".into(),
            volume: Some(60),
            mute: None,
        })
        .unwrap();
    let mut state = next_controller(&mut events).await;
    while state.volume != 60 {
        assert!(
            !state.muted,
            "the mute given before the connection was sent"
        );
        state = next_controller(&mut events).await;
    }
    assert!(
        !state.muted,
        "the mute given before the connection was sent"
    );

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert!(player.interrupt().success());
    assert!(serve.interrupt().success());
}

#[test]
fn play_without_player_role_opens_no_output() {
    let (mut serve, mut player, url) = serve_with_player("hall");
    let mut remote = resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        &url,
        "--roles",
        "controller,metadata",
        "--json",
        "--duration",
        "60",
    ]);
    let connected = remote.wait_event("connected", Duration::from_secs(20));
    let roles = connected["active_roles"].as_array().unwrap();
    assert!(roles.iter().any(|r| r == "controller@v1"), "{roles:?}");
    assert!(!roles.iter().any(|r| r == "player@v1"), "{roles:?}");
    // The server sends the group before the controller state.
    let group = remote.wait_event("group", Duration::from_secs(20));
    assert_eq!(group["playback_state"], "playing");
    let controller = remote.wait_event("controller", Duration::from_secs(20));
    assert_eq!(controller["volume"], 100);
    assert_eq!(controller["muted"], false);

    assert!(remote.interrupt().success());
    assert!(
        !remote
            .seen
            .iter()
            .any(|event| event["event"] == "stream_started"),
        "a client without the player role got a stream: {:?}",
        remote.seen
    );
    assert!(player.interrupt().success());
    assert!(serve.interrupt().success());
}

#[test]
fn audio_options_need_the_player_role() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args([
            "play",
            "--dialect",
            "sendspin-v1",
            "--server",
            "ws://127.0.0.1:9/sendspin",
            "--roles",
            "metadata",
            "--output",
            "null",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--output needs the player role"),
        "{stderr}"
    );

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args([
            "play",
            "--dialect",
            "sendspin-v1",
            "--server",
            "ws://127.0.0.1:9/sendspin",
            "--roles",
            "player,visualizer",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown role \"visualizer\""), "{stderr}");
}

#[test]
fn unwritable_log_file_is_named() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args([
            "play",
            "--dialect",
            "sendspin-v1",
            "--server",
            "ws://127.0.0.1:9/sendspin",
            "--log-file",
            "/nonexistent-dir/play.log",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent-dir/play.log"), "{stderr}");
    assert!(stderr.contains("--log-file"), "{stderr}");
}
