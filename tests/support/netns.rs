//! Network namespaces for tests that need multicast (mDNS).
//!
//! Each namespace has only a loopback interface, brought up with multicast
//! enabled and a 224.0.0.0/4 route, so mDNS traffic stays inside it and
//! never reaches the host's interfaces. Creating one needs root; tests skip
//! only when that fails, and say so.
//!
//! Include it with `#[path = "support/netns.rs"] mod netns;`.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A network namespace that is deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates a namespace, or returns `None` after printing why namespaces
    /// cannot be created here.
    pub fn create() -> Option<Netns> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "rsnt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(reason) = run(&["ip", "netns", "add", &name]) {
            let thread = std::thread::current();
            let test = thread.name().unwrap_or("mDNS test");
            eprintln!("skipping {test}: cannot create a network namespace ({reason}); mDNS tests need root and ip netns");
            return None;
        }
        let netns = Netns { name };
        for step in [
            &["ip", "link", "set", "lo", "up"][..],
            &["ip", "link", "set", "lo", "multicast", "on"],
            &["ip", "route", "add", "224.0.0.0/4", "dev", "lo"],
        ] {
            let mut args = vec!["ip", "netns", "exec", netns.name.as_str()];
            args.extend_from_slice(step);
            run(&args)
                .unwrap_or_else(|reason| panic!("setting up namespace {}: {reason}", netns.name));
        }
        Some(netns)
    }

    /// Returns a command that runs `program` inside this namespace. The
    /// child's pid is the program's, because `ip netns exec` execs it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Returns a command that runs the `resonate` binary inside this
    /// namespace with `args`.
    pub fn resonate(&self, args: &[&str]) -> Command {
        let mut command = self.command(env!("CARGO_BIN_EXE_resonate"));
        command.args(args);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

fn run(args: &[&str]) -> Result<(), String> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("{}: {err}", args[0]))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}
