//! Sources of the monitor's [`Update`]s: a telemetry feed over WebSocket,
//! with reconnection, or a [`Telemetry`] hub in the same process.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use url::Url;

use crate::dialect::Dialect;
use crate::telemetry::feed::{self, FeedError};
use crate::telemetry::observer::{observe, ObserverConfig};
use crate::telemetry::Telemetry;
use crate::telemetry::{unix_ms_now, Phase, SourceInfo};
use crate::transport::{Limits, TransportError};

use super::Update;

/// First wait before reconnecting to a feed that dropped.
const RETRY_FIRST: Duration = Duration::from_millis(500);

/// Maximum wait between reconnection attempts.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Source of the telemetry the monitor shows. Each variant is one way to
/// get [`Update`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A telemetry feed, `ws://HOST:PORT`, published by `serve`, `play` or
    /// `stress`.
    Feed(String),
    /// Any server, ours or not, joined as a controller and metadata client
    /// that shows what one client can see.
    Server { url: Url, dialect: Dialect },
}

/// The reason a source could not connect the first time.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error(transparent)]
    Server(#[from] TransportError),
}

impl Source {
    /// Returns the text the header shows as the monitor's target.
    pub fn target(&self) -> &str {
        match self {
            Source::Feed(url) => url,
            Source::Server { url, .. } => url.as_str(),
        }
    }

    /// Sends updates from this source to `updates` until `stop` is
    /// cancelled or the receiver is dropped. Fails only when the first
    /// connection attempt fails, so a wrong address is reported at once.
    pub async fn follow(
        self,
        updates: mpsc::Sender<Update>,
        stop: CancellationToken,
    ) -> Result<(), SourceError> {
        match self {
            Source::Feed(url) => Ok(follow_feed(&url, updates, stop).await?),
            Source::Server { url, dialect } => {
                Ok(follow_server(url, dialect, updates, stop).await?)
            }
        }
    }
}

/// Joins the server at `url` with an observer and forwards what it
/// publishes to `updates`.
async fn follow_server(
    url: Url,
    dialect: Dialect,
    updates: mpsc::Sender<Update>,
    stop: CancellationToken,
) -> Result<(), TransportError> {
    let hub = Telemetry::new(SourceInfo {
        kind: "server".into(),
        name: "joined as a client".into(),
        target: url.to_string(),
        started_unix_ms: unix_ms_now(),
    });
    let config = ObserverConfig {
        url,
        dialect,
        client_id: format!("resonate-monitor-{}", std::process::id()),
        name: "resonate monitor".into(),
        limits: Limits::default(),
    };
    let _ = updates.send(Update::Status("connecting".into())).await;
    let observing = observe(config, hub.clone(), stop.clone().cancelled_owned());
    let forwarding = async {
        forward_hub(hub.clone(), updates.clone(), stop.clone()).await;
        std::future::pending::<()>().await
    };
    // The header's status follows the observer's one session.
    let reporting = async {
        let mut snapshots = hub.subscribe().snapshots;
        let mut last = None;
        while snapshots.changed().await.is_ok() {
            let phase = snapshots
                .borrow_and_update()
                .sessions
                .first()
                .map(|row| row.phase);
            if phase != last {
                last = phase;
                let status = match phase {
                    Some(Phase::Active) => "connected".to_string(),
                    Some(phase) => phase.as_str().to_string(),
                    None => continue,
                };
                if updates.send(Update::Status(status)).await.is_err() {
                    break;
                }
            }
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        observed = observing => observed,
        _ = forwarding => Ok(()),
        _ = reporting => Ok(()),
    }
}

/// Reads the feed at `url` into `updates`, reconnecting with a backoff of
/// 0.5 s doubling to 10 s whenever it drops, and reporting each step as an
/// [`Update::Status`]. Returns an error only when the first attempt cannot
/// connect; returns `Ok` when `stop` is cancelled or `updates` is closed.
pub async fn follow_feed(
    url: &str,
    updates: mpsc::Sender<Update>,
    stop: CancellationToken,
) -> Result<(), FeedError> {
    let mut retry = RETRY_FIRST;
    let mut first_attempt = true;
    if updates
        .send(Update::Status("connecting".into()))
        .await
        .is_err()
    {
        return Ok(());
    }
    loop {
        let mut received = false;
        let mut dropped = 0u64;
        let sender = updates.clone();
        let read = feed::read(url, |message| {
            if !received {
                received = true;
                let _ = sender.try_send(Update::Status("connected".into()));
            }
            // A full channel means the monitor is behind; a later snapshot
            // replaces a lost one, and lost events are counted below.
            if sender.try_send(Update::Feed(message)).is_err() {
                dropped += 1;
            }
        });
        let result = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = updates.closed() => return Ok(()),
            result = read => result,
        };

        if dropped > 0 {
            tracing::warn!(%url, dropped, "monitor fell behind the feed");
            let _ = updates.try_send(Update::Status(format!(
                "monitor fell behind; {dropped} feed messages were skipped"
            )));
        }
        if first_attempt && !received {
            if let Err(err) = result {
                return Err(err);
            }
        }
        first_attempt = false;
        if received {
            retry = RETRY_FIRST;
        }

        let cause = match result {
            Ok(()) => "the feed closed".to_string(),
            Err(err) => err.to_string(),
        };
        tracing::info!(%url, %cause, retry_ms = retry.as_millis() as u64, "telemetry feed lost; reconnecting");
        let status = format!("retry in {:.1} s: {cause}", retry.as_secs_f64());
        if updates.send(Update::Status(status)).await.is_err() {
            return Ok(());
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(RETRY_MAX);
        if updates
            .send(Update::Status("connecting".into()))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

/// Sends what `telemetry` publishes to `updates`: a hello, the recent
/// events, the current snapshot, then each new snapshot and event, until
/// `stop` is cancelled or the receiver is dropped. For a monitor drawn in
/// the same process as the source (`serve`, `stress`).
pub async fn forward_hub(
    telemetry: Telemetry,
    updates: mpsc::Sender<Update>,
    stop: CancellationToken,
) {
    let mut subscription = telemetry.subscribe();
    for message in subscription.opening_messages() {
        if updates.send(Update::Feed(message)).await.is_err() {
            return;
        }
    }

    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => return,
            message = subscription.next_message() => match message {
                Some(message) => message,
                None => return,
            },
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            sent = updates.send(Update::Feed(message)) => if sent.is_err() { return },
        }
    }
}
