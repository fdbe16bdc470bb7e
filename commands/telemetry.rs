//! `--telemetry ADDR` of serve, play and stress: a loopback listener that
//! publishes the command's telemetry hub to monitors and scrapers.

use std::net::SocketAddr;

use anyhow::Context;
use resonate::telemetry::{self, unix_ms_now, SourceInfo, Telemetry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Failure;

/// A running telemetry feed; dropping it stops the feed.
pub struct Feed {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Feed {
    /// Stops the feed and waits for its subscribers to be closed.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Creates the hub for a command of `kind` (`serve`, `play`, `stress`).
pub fn hub(kind: &str, name: &str, target: &str) -> Telemetry {
    Telemetry::new(SourceInfo {
        kind: kind.to_string(),
        name: name.to_string(),
        target: target.to_string(),
        started_unix_ms: unix_ms_now(),
    })
}

/// Binds `addr` and serves the feed of `telemetry` on it. Must run inside
/// the runtime.
pub async fn start(addr: SocketAddr, telemetry: &Telemetry) -> Result<Feed, Failure> {
    telemetry::feed::check_loopback(addr).map_err(Failure::usage)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| {
            format!("cannot listen for telemetry on {addr}; choose another --telemetry port")
        })
        .map_err(Failure::usage)?;
    let addr = listener
        .local_addr()
        .context("telemetry listener has no local address")?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(telemetry::feed::serve(
        listener,
        telemetry.clone(),
        stop.clone().cancelled_owned(),
    ));
    crate::status(&format!(
        "telemetry feed on ws://{addr}/ and metrics on http://{addr}/metrics"
    ));
    Ok(Feed { addr, stop, task })
}
