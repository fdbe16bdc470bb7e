//! The real binary drawing the player UI in a terminal: `resonate play`
//! runs inside a detached tmux session against a real `serve`, the test
//! presses keys with send-keys and reads the screen with capture-pane.

#[path = "support/process.rs"]
mod process;
#[path = "support/tmux.rs"]
mod tmux;

use std::time::Duration;

use process::{resonate, Proc};
use tmux::Tmux;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/sine440_660_stereo_48000_24bit.flac"
);
const BIN: &str = env!("CARGO_BIN_EXE_resonate");

fn serve() -> (Proc, String) {
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
    (serve, url)
}

#[test]
fn play_ui_sends_keys_as_controller_commands() {
    let (mut serve, url) = serve();
    let mut player = resonate(&[
        "play",
        "--dialect",
        "sendspin-v1",
        "--server",
        &url,
        "--output",
        "null",
        "--client-id",
        "kitchen",
        "--duration",
        "120",
        "--json",
    ]);
    player.wait_event("stream_started", Duration::from_secs(30));

    let tmux = Tmux::start(
        "remote",
        &format!("{BIN} play --dialect sendspin-v1 --server {url} --roles controller,metadata --client-id remote"),
    );
    tmux.wait_for_line(&["connected to"], Duration::from_secs(20));
    tmux.wait_for_line(&["volume", "group 100%"], Duration::from_secs(20));
    tmux.wait_for_line(
        &["codec", "no audio: no player role"],
        Duration::from_secs(5),
    );
    tmux.wait_for_line(
        &["commands", "play pause stop next previous volume mute"],
        Duration::from_secs(5),
    );
    tmux.wait_for_line(&["↑/↓ volume", "m mute", "q quit"], Duration::from_secs(5));

    // The down arrow lowers the group volume by 5. The server applies it
    // to the player and sends the new group volume back.
    tmux.send_keys("Down");
    tmux.wait_for_line(&["volume", "group 95%"], Duration::from_secs(20));
    tmux.wait_for_line(&["sent volume 95"], Duration::from_secs(5));
    tmux.send_keys("m");
    tmux.wait_for_line(&["volume", "group 95%", "muted"], Duration::from_secs(20));
    // r moves repeat on from the server's "all" (the file loops) to "one",
    // and the metadata the server sends back shows it.
    tmux.wait_for_line(&["repeat all"], Duration::from_secs(5));
    tmux.send_keys("r");
    tmux.wait_for_line(&["repeat one"], Duration::from_secs(20));

    tmux.send_keys("q");
    assert!(
        tmux.wait_exit(Duration::from_secs(15)),
        "play did not quit on q:\n{}",
        tmux.screen()
    );
    assert!(player.interrupt().success());
    assert!(serve.interrupt().success());
}

#[test]
fn play_ui_shows_the_stream_and_sync() {
    let (mut serve, url) = serve();
    let tmux = Tmux::start(
        "player",
        &format!("{BIN} play --dialect sendspin-v1 --server {url} --output null --client-id porch"),
    );
    tmux.wait_for_line(
        &["roles player,controller,metadata", "player@v1"],
        Duration::from_secs(20),
    );
    tmux.wait_for_line(
        &["codec", "pcm 48000 Hz 2 ch 24-bit"],
        Duration::from_secs(30),
    );
    tmux.wait_for_line(
        &["sync", "clock synced", "audio in sync"],
        Duration::from_secs(30),
    );
    tmux.wait_for_line(&["group", "playing"], Duration::from_secs(10));
    tmux.wait_for_line(
        &["volume", "group 100%", "player 100%"],
        Duration::from_secs(10),
    );
    tmux.send_keys("q");
    assert!(
        tmux.wait_exit(Duration::from_secs(15)),
        "play did not quit on q:\n{}",
        tmux.screen()
    );
    assert!(serve.interrupt().success());
}
