//! Logging through tracing, set by -v/-q or RUST_LOG: to stderr, or to a
//! file while the monitor's terminal UI owns the terminal.

use std::fs::File;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Destination of log lines.
pub enum Destination {
    Stderr,
    /// A file opened for appending; lines are written without colors.
    File(File),
    /// Nowhere: the terminal UI owns stderr's terminal and no file was given.
    Discard,
}

pub fn init(verbose: u8, quiet: u8, destination: Destination) {
    let level = match (quiet, verbose) {
        (q, _) if q >= 2 => "off",
        (1, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // Dependencies stay silent unless -vvv requests everything, because
        // the errors they log (a decoder probing a bad file) reach the user
        // through our own messages.
        let deps = if verbose >= 3 { level } else { "off" };
        EnvFilter::new(format!("{deps},resonate={level}"))
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match destination {
        Destination::Stderr => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
        Destination::File(file) => builder
            .with_ansi(false)
            .with_writer(Mutex::new(file))
            .init(),
        Destination::Discard => builder.with_writer(std::io::sink).init(),
    }
}
