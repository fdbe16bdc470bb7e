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
use resonate::monitor::{self, Source, UPDATE_CHANNEL};

/// Returns whether the monitor prints plain text instead of drawing the UI.
fn plain_output(args: &MonitorArgs) -> bool {
    args.plain || !std::io::stdout().is_terminal()
}

/// Returns where the log goes: the terminal UI owns the terminal, so its
/// log goes to `--log-file` or nowhere.
pub fn log_destination(args: &MonitorArgs) -> Result<Destination, Failure> {
    match &args.log_file {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path).map_err(|err| {
                Failure::usage(anyhow!(
                    "cannot open log file {}: {err}; pick a writable path for --log-file",
                    path.display()
                ))
            })?;
            Ok(Destination::File(file))
        }
        None if plain_output(args) => Ok(Destination::Stderr),
        None => Ok(Destination::Discard),
    }
}

pub fn run(args: MonitorArgs) -> Result<(), Failure> {
    let source = parse_source(&args.url).map_err(Failure::usage)?;
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
                Err(err) => Err(Failure::usage(anyhow!(
                    "{err}; check that the process publishing telemetry runs and that {target} is its telemetry address"
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
    Ok(Source::Feed(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_url_needs_ws_host_and_port() {
        assert_eq!(parse_source("ws://127.0.0.1:9000").unwrap(), Source::Feed("ws://127.0.0.1:9000".into()));
        for bad in ["http://127.0.0.1:9000", "ws://127.0.0.1", "127.0.0.1:9000", "wss://127.0.0.1:9000"] {
            let err = parse_source(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
            assert!(err.contains("ws://HOST:PORT"), "{err}");
        }
    }
}
