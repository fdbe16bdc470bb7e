//! Running the real `resonate` binary from tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A child process whose stdout JSON lines are collected by a thread.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
    /// Events in `seen` before this index were returned by `wait_event`.
    consumed: usize,
}

pub fn resonate(args: &[&str]) -> Proc {
    let mut command = Command::new(env!("CARGO_BIN_EXE_resonate"));
    command.args(args);
    spawn(command)
}

/// Starts `command` with its stdout JSON lines collected.
pub fn spawn(mut command: Command) -> Proc {
    let mut child = command
        .env("RUST_LOG", "resonate=warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start a test process");
    let stdout = child.stdout.take().unwrap();
    Proc {
        child,
        lines: spawn_reader(stdout),
        seen: Vec::new(),
        consumed: 0,
    }
}

fn spawn_reader(stdout: ChildStdout) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                if tx.send(value).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

impl Proc {
    /// Waits up to `patience` for the next JSON line whose `event` is
    /// `name`, after the last one this method returned.
    pub fn wait_event(&mut self, name: &str, patience: Duration) -> Value {
        if let Some(offset) = self.seen[self.consumed..]
            .iter()
            .position(|v| v["event"] == name)
        {
            self.consumed += offset + 1;
            return self.seen[self.consumed - 1].clone();
        }
        let deadline = Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(value) => {
                    self.seen.push(value.clone());
                    if value["event"] == name {
                        self.consumed = self.seen.len();
                        return value;
                    }
                }
                Err(_) => panic!("no {name:?} event within {patience:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Sends SIGINT, as Ctrl-C does, and waits for the exit status.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT failed");
        self.wait(Duration::from_secs(15))
    }

    pub fn wait(&mut self, patience: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                while let Ok(value) = self.lines.try_recv() {
                    self.seen.push(value);
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "process {} did not exit within {patience:?}",
                    self.child.id()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
