//! `resonate monitor URL`: the terminal UI, or plain-text tables, of a
//! telemetry feed.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::anyhow;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::cli::MonitorArgs;
use crate::logging::Destination;
use crate::Failure;
use resonate::dialect::Dialect;
use resonate::monitor::{self, Source, SourceError, UPDATE_CHANNEL};
use resonate::transport::parse_ws_url;

/// Returns whether the monitor prints plain text instead of drawing the UI.
fn plain_output(args: &MonitorArgs) -> bool {
    args.plain || !std::io::stdout().is_terminal()
}

/// Returns where the log goes: the terminal UI owns the terminal, so its
/// log goes to `--log-file` or nowhere.
pub fn log_destination(args: &MonitorArgs) -> Result<Destination, Failure> {
    match &args.log_file {
        Some(path) => open_log_file(path),
        None if plain_output(args) => Ok(Destination::Stderr),
        None => Ok(Destination::Discard),
    }
}

/// Opens `--log-file` for appending.
pub fn open_log_file(path: &std::path::Path) -> Result<Destination, Failure> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|err| {
            Failure::usage(anyhow!(
                "cannot open log file {}: {err}; pick a writable path for --log-file",
                path.display()
            ))
        })?;
    Ok(Destination::File(file))
}

/// Returns where the log goes while `serve --tui` or `stress --tui` draws
/// the monitor: `log_file`, or nowhere. Fails when stdout is not a
/// terminal, since the monitor then cannot be drawn.
pub fn tui_log_destination(log_file: Option<&std::path::Path>) -> Result<Destination, Failure> {
    if !std::io::stdout().is_terminal() {
        return Err(Failure::usage(anyhow!(
            "--tui needs a terminal on stdout; use --telemetry 127.0.0.1:PORT and `resonate monitor --plain ws://127.0.0.1:PORT` instead"
        )));
    }
    match log_file {
        Some(path) => open_log_file(path),
        None => Ok(Destination::Discard),
    }
}

pub fn run(args: MonitorArgs) -> Result<(), Failure> {
    let source = match (&args.url, &args.server) {
        (Some(url), _) => parse_source(url).map_err(Failure::usage)?,
        (None, Some(server)) => {
            let dialect: Dialect = args
                .dialect
                .parse()
                .map_err(|e: String| Failure::usage(anyhow!(e)))?;
            let url = parse_ws_url(server, dialect.default_path()).map_err(Failure::usage)?;
            Source::Server { url, dialect }
        }
        (None, None) => unreachable!("clap requires URL or --server"),
    };
    if !(args.interval.is_finite() && (0.1..=3_600.0).contains(&args.interval)) {
        return Err(Failure::usage(anyhow!(
            "invalid --interval {}: expected seconds between 0.1 and 3600, such as 2",
            args.interval
        )));
    }
    let plain = plain_output(&args);
    let interval = Duration::from_secs_f64(args.interval);
    let target = source.target().to_string();

    crate::runtime()?.block_on(async move {
        let stop = CancellationToken::new();
        let (updates, receiver) = mpsc::channel(UPDATE_CHANNEL);
        let follow = source.follow(updates, stop.clone());
        let draw = async {
            if plain {
                monitor::run_plain(&target, receiver, std::io::stdout().lock(), interval).await
            } else {
                monitor::run_terminal(&target, receiver).await
            }
        };

        // The source fails only when its first connection fails; the draw
        // loop ends when the operator quits. Either way the other side is
        // dropped, which restores the terminal before the error is printed.
        let result = tokio::select! {
            followed = follow => match followed {
                Ok(()) => Ok(()),
                Err(err @ SourceError::Feed(_)) => Err(Failure::usage(anyhow!(
                    "{err}; check that the process publishing telemetry runs and that {target} is its telemetry address"
                ))),
                Err(err @ SourceError::Server(_)) => Err(Failure::usage(anyhow!(
                    "{err}; check that a Sendspin server listens at {target}"
                ))),
            },
            drawn = draw => drawn.map_err(|err| Failure::from(anyhow!("monitor output failed: {err}"))),
            _ = crate::interrupted() => Ok(()),
        };
        stop.cancel();
        result
    })
}

/// Parses the monitor's target: a `ws://HOST:PORT` telemetry feed URL.
fn parse_source(text: &str) -> anyhow::Result<Source> {
    let url = Url::parse(text).map_err(|err| {
        anyhow!("invalid feed URL {text:?}: {err}; expected ws://HOST:PORT, such as ws://127.0.0.1:8930")
    })?;
    if url.scheme() != "ws" {
        return Err(anyhow!(
            "invalid feed URL {text:?}: the scheme must be ws (the telemetry feed is a plain WebSocket); expected ws://HOST:PORT, such as ws://127.0.0.1:8930"
        ));
    }
    if url.host_str().is_none() || url.port().is_none() {
        return Err(anyhow!(
            "invalid feed URL {text:?}: missing host or port; expected ws://HOST:PORT, such as ws://127.0.0.1:8930"
        ));
    }
    if !matches!(url.path(), "" | "/") {
        return Err(anyhow!(
            "invalid feed URL {text:?}: a telemetry feed is at /, not {}; to watch a Sendspin server itself, use `resonate monitor --server {text}`",
            url.path()
        ));
    }
    Ok(Source::Feed(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_url_needs_ws_host_and_port() {
        assert_eq!(
            parse_source("ws://127.0.0.1:9000").unwrap(),
            Source::Feed("ws://127.0.0.1:9000".into())
        );
        let err = parse_source("ws://127.0.0.1:8927/sendspin")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--server ws://127.0.0.1:8927/sendspin"),
            "{err}"
        );
        for bad in [
            "http://127.0.0.1:9000",
            "ws://127.0.0.1",
            "127.0.0.1:9000",
            "wss://127.0.0.1:9000",
        ] {
            let err = parse_source(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
            assert!(err.contains("ws://HOST:PORT"), "{err}");
        }
    }
}
