//! The real binary drawing the monitor in a terminal: `resonate monitor`
//! and `serve --tui` run inside a detached tmux session against a real
//! `serve` with players, and the test reads the screen with capture-pane.

#[path = "support/process.rs"]
mod process;

use std::process::Command;
use std::time::{Duration, Instant};

use process::resonate;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sine440_660_stereo_48000_24bit.flac");
const BIN: &str = env!("CARGO_BIN_EXE_resonate");

/// A tmux server of its own, so tests never touch the user's sessions.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in a detached 120×30 session.
    fn start(name: &str, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("resonate-test-{}-{name}", std::process::id()),
        };
        let status = tmux
            .command()
            .args(["new-session", "-d", "-s", "test", "-x", "120", "-y", "30", command])
            .status()
            .expect("tmux is needed for this test; install it (the README's test command does)");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        command
    }

    fn screen(&self) -> String {
        let output = self.command().args(["capture-pane", "-p", "-t", "test"]).output().expect("run tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the screen has a line that contains every needle.
    fn wait_for_line(&self, needles: &[&str], patience: Duration) -> String {
        let deadline = Instant::now() + patience;
        loop {
            let screen = self.screen();
            if let Some(line) = screen.lines().find(|line| needles.iter().all(|n| line.contains(n))) {
                return line.to_string();
            }
            assert!(Instant::now() < deadline, "no line with {needles:?} within {patience:?}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn send_keys(&self, keys: &str) {
        let status = self.command().args(["send-keys", "-t", "test", keys]).status().expect("run tmux send-keys");
        assert!(status.success());
    }

    /// Waits until the program in the session has exited.
    fn wait_exit(&self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            let alive = self.command().args(["has-session", "-t", "test"]).output().is_ok_and(|o| o.status.success());
            if !alive {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

/// Returns whether a sessions-table line shows a clock offset, a number with a unit.
fn has_offset(line: &str) -> bool {
    line.split_whitespace()
        .any(|word| word.trim_end_matches('*').ends_with("us") || word.trim_end_matches('*').ends_with("ms"))
}

#[test]
fn monitor_shows_sessions_of_a_real_server() {
    let mut serve = resonate(&[
        "serve", FIXTURE, "--listen", "127.0.0.1:0", "--no-mdns", "--loop", "--json", "--telemetry", "127.0.0.1:0",
    ]);
    let feed = serve.wait_event("telemetry", Duration::from_secs(20))["addr"].as_str().unwrap().to_string();
    let url = serve.wait_event("listening", Duration::from_secs(20))["url"].as_str().unwrap().to_string();
    let mut players: Vec<_> = ["kitchen", "hall"]
        .iter()
        .map(|name| {
            resonate(&[
                "play", "--server", &url, "--output", "null", "--name", name, "--client-id", name, "--duration", "60", "--json",
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
    assert!(tmux.wait_exit(Duration::from_secs(10)), "monitor did not quit on q:\n{}", tmux.screen());

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
    let tmux = Tmux::start("serve", &format!("{BIN} serve {FIXTURE} --listen 127.0.0.1:{port} --no-mdns --loop --tui"));
    tmux.wait_for_line(&["serve", "up"], Duration::from_secs(20));
    let url = format!("ws://127.0.0.1:{port}/sendspin");
    let mut player = resonate(&[
        "play", "--server", &url, "--output", "null", "--name", "porch", "--client-id", "porch", "--duration", "60", "--json",
    ]);
    let line = tmux.wait_for_line(&["porch", "active"], Duration::from_secs(30));
    assert!(has_offset(&line), "no offset in {line:?}");

    // Quitting the monitor stops the server, which closes the player's session.
    tmux.send_keys("q");
    assert!(tmux.wait_exit(Duration::from_secs(15)), "serve did not stop on q:\n{}", tmux.screen());
    player.wait_event("disconnected", Duration::from_secs(15));
    assert!(player.interrupt().success());
}
