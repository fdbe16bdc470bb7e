//! The real binary drawing the monitor in a terminal: `resonate monitor`
//! and `serve --tui` run inside a detached tmux session against a real
//! `serve` with players, and the test reads the screen with capture-pane.

#[path = "support/process.rs"]
mod process;
#[path = "support/tmux.rs"]
mod tmux;

use std::time::Duration;

use process::resonate;
use tmux::Tmux;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/sine440_660_stereo_48000_24bit.flac"
);
const BIN: &str = env!("CARGO_BIN_EXE_resonate");

/// Returns whether a sessions-table line shows a clock offset, a number with a unit.
fn has_offset(line: &str) -> bool {
    line.split_whitespace().any(|word| {
        word.trim_end_matches('*').ends_with("us") || word.trim_end_matches('*').ends_with("ms")
    })
}

#[test]
fn monitor_shows_sessions_of_a_real_server() {
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
        "--telemetry",
        "127.0.0.1:0",
    ]);
    let feed = serve.wait_event("telemetry", Duration::from_secs(20))["addr"]
        .as_str()
        .unwrap()
        .to_string();
    let url = serve.wait_event("listening", Duration::from_secs(20))["url"]
        .as_str()
        .unwrap()
        .to_string();
    let mut players: Vec<_> = ["kitchen", "hall"]
        .iter()
        .map(|name| {
            resonate(&[
                "play",
                "--dialect",
                "sendspin-v1",
                "--server",
                &url,
                "--output",
                "null",
                "--name",
                name,
                "--client-id",
                name,
                "--duration",
                "60",
                "--json",
            ])
        })
        .collect();

    let tmux = Tmux::start("feed", &format!("{BIN} monitor ws://{feed}/"));
    for name in ["kitchen", "hall"] {
        let line = tmux.wait_for_line(&[name, "active", "main"], Duration::from_secs(30));
        assert!(has_offset(&line), "no offset in {line:?}");
    }

    // The groups screen lists the group with both members.
    tmux.send_keys("2");
    tmux.wait_for_line(&["main", "playing"], Duration::from_secs(10));
    tmux.send_keys("q");
    assert!(
        tmux.wait_exit(Duration::from_secs(10)),
        "monitor did not quit on q:\n{}",
        tmux.screen()
    );

    for player in &mut players {
        assert!(player.interrupt().success());
    }
    assert!(serve.interrupt().success());
}

#[test]
fn serve_tui_draws_and_quits() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let tmux = Tmux::start(
        "serve",
        &format!("{BIN} serve --dialect sendspin-v1 {FIXTURE} --listen 127.0.0.1:{port} --no-mdns --loop --tui"),
    );
    tmux.wait_for_line(&["serve", "up"], Duration::from_secs(20));
    let url = format!("ws://127.0.0.1:{port}/sendspin");
    let mut player = resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        &url,
        "--output",
        "null",
        "--name",
        "porch",
        "--client-id",
        "porch",
        "--duration",
        "60",
        "--json",
    ]);
    let line = tmux.wait_for_line(&["porch", "active"], Duration::from_secs(30));
    assert!(has_offset(&line), "no offset in {line:?}");

    // Quitting the monitor stops the server, which closes the player's session.
    tmux.send_keys("q");
    assert!(
        tmux.wait_exit(Duration::from_secs(15)),
        "serve did not stop on q:\n{}",
        tmux.screen()
    );
    player.wait_event("disconnected", Duration::from_secs(15));
    assert!(player.interrupt().success());
}
