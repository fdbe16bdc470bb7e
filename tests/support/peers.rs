//! Launching the Python reference peers for interop tests.
//!
//! The peers live in venvs inside a Debian root at
//! `$RESONATE_PEERS_ROOT` (default /opt/resonate-peers). `tests/peers/README.md`
//! describes the root and the driver scripts.
//!
//! Include it with `#[path = "support/peers.rs"] mod peers;`.

use std::path::{Path, PathBuf};

use tokio::process::Command;

/// Returns the configured peers root, whether or not it exists.
pub fn peers_root() -> PathBuf {
    std::env::var_os("RESONATE_PEERS_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/resonate-peers"))
}

/// Returns the peers root, or None when it is missing and
/// `RESONATE_SKIP_PEERS=1` allows skipping.
///
/// Panics when the root is missing and skipping is not allowed.
pub fn require_peers_root() -> Option<PathBuf> {
    let root = peers_root();
    // The root's setup writes this marker last, once every venv is installed.
    if root.join(".ready-v2").is_file() {
        return Some(root);
    }
    let reason = format!(
        "the peers root {} is missing or unfinished (no .ready-v2 marker)",
        root.display()
    );
    if std::env::var("RESONATE_SKIP_PEERS").as_deref() == Ok("1") {
        // The test harness names each test's thread after the test.
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("peer interop test");
        eprintln!("skipping {test}: {reason}; RESONATE_SKIP_PEERS=1 is set");
        return None;
    }
    panic!(
        "{reason}. Build the peers root or point RESONATE_PEERS_ROOT at one, \
         or set RESONATE_SKIP_PEERS=1 to skip the peer interop tests"
    );
}

/// Builds a command that runs `program` from the root's `venv` inside the
/// peers root, with `workdir` as the working directory.
///
/// When `RESONATE_PEERS_RUN` names the root's launcher (`run VENV --cwd DIR
/// PROGRAM`), the command calls it. Otherwise it enters the root the same
/// way itself: a private mount namespace with the host's /dev, /proc and /tmp
/// and `workdir` mounted at its host path, then chroot. The network is the
/// host's. Both paths replace each shell with the next program through
/// `exec`, so the child's pid is the program's and killing the child kills
/// the program.
pub fn peer_command(root: &Path, venv: &str, workdir: &Path, program: &str) -> Command {
    const ENTER_ROOT: &str = r#"
        root=$1 dir=$2
        shift 2
        mkdir -p "$root$dir" "$root/proc" "$root/dev" "$root/tmp"
        mount --bind "$dir" "$root$dir"
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount --bind /tmp "$root/tmp"
        exec chroot "$root" sh -c 'cd "$0" && exec "$@"' "$dir" "$@"
    "#;
    if let Some(launcher) = std::env::var_os("RESONATE_PEERS_RUN") {
        let mut command = Command::new(launcher);
        command.arg(venv).arg("--cwd").arg(workdir).arg(program);
        return command;
    }
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            ENTER_ROOT,
            "sh",
        ])
        .arg(root)
        .arg(workdir)
        .args(["env", "PYTHONUNBUFFERED=1"])
        .arg(format!("/{venv}/bin/{program}"));
    command
}
