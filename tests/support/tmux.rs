//! A tmux server of its own for tests that run the real binary in a
//! terminal and read the screen with capture-pane.

#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of its own, so tests never touch the user's sessions.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in a detached 120×30 session.
    pub fn start(name: &str, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("resonate-test-{}-{name}", std::process::id()),
        };
        let status = tmux
            .command()
            .args([
                "new-session",
                "-d",
                "-s",
                "test",
                "-x",
                "120",
                "-y",
                "30",
                command,
            ])
            .status()
            .expect("tmux is needed for this test; install it (the README's test command does)");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        command
    }

    pub fn screen(&self) -> String {
        let output = self
            .command()
            .args(["capture-pane", "-p", "-t", "test"])
            .output()
            .expect("run tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the screen has a line that contains every needle.
    pub fn wait_for_line(&self, needles: &[&str], patience: Duration) -> String {
        let deadline = Instant::now() + patience;
        loop {
            let screen = self.screen();
            if let Some(line) = screen
                .lines()
                .find(|line| needles.iter().all(|n| line.contains(n)))
            {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needles:?} within {patience:?}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn send_keys(&self, keys: &str) {
        let status = self
            .command()
            .args(["send-keys", "-t", "test", keys])
            .status()
            .expect("run tmux send-keys");
        assert!(status.success());
    }

    /// Waits until the program in the session has exited.
    pub fn wait_exit(&self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            let alive = self
                .command()
                .args(["has-session", "-t", "test"])
                .output()
                .is_ok_and(|o| o.status.success());
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
