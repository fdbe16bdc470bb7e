//! Ctrl-C and SIGTERM end a subcommand cleanly however soon they come after
//! it reports that it is ready.

#[path = "support/process.rs"]
mod process;

use std::time::Duration;

use process::resonate;

const PATIENCE: Duration = Duration::from_secs(30);
/// Enough rounds to catch a signal handler installed after the readiness
/// line: before handlers were installed eagerly, about a third of the rounds
/// of `serve` died of the signal.
const ROUNDS: usize = 20;

#[test]
fn serve_exits_cleanly_on_early_sigint() {
    for round in 0..ROUNDS {
        let mut server = resonate(&[
            "serve",
            "--dialect",
            "sendspin-v1",
            "--tone",
            "sine",
            "--listen",
            "127.0.0.1:0",
            "--no-mdns",
            "--json",
        ]);
        server.wait_event("listening", PATIENCE);
        let status = server.interrupt();
        assert!(status.success(), "round {round}: serve ended with {status}");
    }
}

#[test]
fn listening_player_exits_cleanly_on_early_sigint() {
    for round in 0..ROUNDS {
        let mut player = resonate(&[
            "play",
            "--dialect",
            "sendspin-v1",
            "--listen",
            "127.0.0.1:0",
            "--no-mdns",
            "--output",
            "null",
            "--json",
        ]);
        player.wait_event("listening", PATIENCE);
        let status = player.interrupt();
        assert!(status.success(), "round {round}: play ended with {status}");
    }
}
