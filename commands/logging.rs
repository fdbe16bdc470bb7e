//! Logging to stderr through tracing, set by -v/-q or RUST_LOG.

use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8, quiet: u8) {
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
