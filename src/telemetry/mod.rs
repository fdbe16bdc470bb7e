//! Telemetry: what `serve`, `play` and `stress` publish about themselves
//! for `monitor` and for Prometheus scrapers.
//!
//! A source owns a [`Telemetry`] hub. It publishes a whole [`Snapshot`]
//! now and then and an [`Event`] whenever something happens once. Readers
//! subscribe to the hub: the in-process monitor directly, remote monitors
//! through the WebSocket feed in [`feed`], scrapers through `/metrics`.

pub mod feed;
pub mod metrics;
mod model;
pub mod observer;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};

pub use model::{
    unix_ms_now, ClockView, Event, EventKind, FeedHello, FeedMessage, GroupRow, Phase,
    PlayerReport, SessionRow, Snapshot, SourceInfo, TrackInfo, FEED_VERSION, OFFSET_NOTE,
    REPORT_KEY, REPORT_ROLE,
};

/// Events kept for subscribers that join late, so a new monitor shows
/// what just happened.
const BACKLOG_EVENTS: usize = 256;

/// Events a slow subscriber may fall behind before it misses some.
const EVENT_CHANNEL: usize = 4096;

/// Shareable handle to a source's telemetry. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    source: SourceInfo,
    snapshot: watch::Sender<Arc<Snapshot>>,
    events: broadcast::Sender<Event>,
    /// The latest events, oldest first. Emitting and subscribing both lock
    /// it, so a subscriber sees each event either in its backlog or on its
    /// channel, never both and never neither.
    backlog: Mutex<VecDeque<Event>>,
}

/// A reader of a hub: the events before it subscribed, then live updates.
pub struct Subscription {
    pub source: SourceInfo,
    /// Events emitted before the subscription, oldest first.
    pub backlog: Vec<Event>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub events: broadcast::Receiver<Event>,
}

impl Subscription {
    /// Returns the messages a new reader gets first: a `hello`, the
    /// backlog of events and the current snapshot.
    pub fn opening_messages(&mut self) -> Vec<FeedMessage> {
        let mut messages = vec![FeedMessage::Hello(FeedHello {
            version: FEED_VERSION,
            source: self.source.clone(),
        })];
        messages.extend(self.backlog.drain(..).map(FeedMessage::Event));
        let snapshot = self.snapshots.borrow_and_update().as_ref().clone();
        messages.push(FeedMessage::Snapshot(snapshot));
        messages
    }

    /// Waits for the next new snapshot or event. A reader that fell so far
    /// behind that events were lost gets an `info` event with their count.
    /// Returns `None` once the hub is gone.
    pub async fn next_message(&mut self) -> Option<FeedMessage> {
        tokio::select! {
            changed = self.snapshots.changed() => {
                changed.ok()?;
                Some(FeedMessage::Snapshot(self.snapshots.borrow_and_update().as_ref().clone()))
            }
            event = self.events.recv() => match event {
                Ok(event) => Some(FeedMessage::Event(event)),
                Err(broadcast::error::RecvError::Lagged(missed)) => Some(FeedMessage::Event(Event::now(
                    EventKind::Info,
                    format!("reader fell behind; {missed} events were not delivered"),
                ))),
                Err(broadcast::error::RecvError::Closed) => None,
            },
        }
    }
}

impl Telemetry {
    pub fn new(source: SourceInfo) -> Telemetry {
        let first = Snapshot {
            source: source.clone(),
            taken_unix_ms: unix_ms_now(),
            ..Default::default()
        };
        let (snapshot, _) = watch::channel(Arc::new(first));
        let (events, _) = broadcast::channel(EVENT_CHANNEL);
        Telemetry {
            inner: Arc::new(Inner {
                source,
                snapshot,
                events,
                backlog: Mutex::new(VecDeque::with_capacity(BACKLOG_EVENTS)),
            }),
        }
    }

    pub fn source(&self) -> &SourceInfo {
        &self.inner.source
    }

    /// Replaces the current snapshot; its `source` is set to the hub's.
    pub fn publish(&self, mut snapshot: Snapshot) {
        snapshot.source = self.inner.source.clone();
        self.inner.snapshot.send_replace(Arc::new(snapshot));
    }

    /// Returns the latest snapshot.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.inner.snapshot.borrow().clone()
    }

    /// Records an event and sends it to every subscriber.
    pub fn emit(&self, event: Event) {
        let mut backlog = self
            .inner
            .backlog
            .lock()
            .expect("telemetry backlog lock poisoned");
        if backlog.len() == BACKLOG_EVENTS {
            backlog.pop_front();
        }
        backlog.push_back(event.clone());
        // No subscriber is not an error: the backlog keeps the event.
        let _ = self.inner.events.send(event);
    }

    pub fn subscribe(&self) -> Subscription {
        let backlog = self
            .inner
            .backlog
            .lock()
            .expect("telemetry backlog lock poisoned");
        Subscription {
            source: self.inner.source.clone(),
            backlog: backlog.iter().cloned().collect(),
            snapshots: self.inner.snapshot.subscribe(),
            events: self.inner.events.subscribe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Telemetry {
        Telemetry::new(SourceInfo {
            kind: "serve".into(),
            name: "test".into(),
            target: "127.0.0.1:1".into(),
            started_unix_ms: 1,
        })
    }

    #[test]
    fn subscriber_gets_backlog_then_live_events() {
        let telemetry = hub();
        telemetry.emit(Event::now(EventKind::Connected, "first"));
        let mut subscription = telemetry.subscribe();
        telemetry.emit(Event::now(EventKind::Disconnected, "second"));

        let backlog: Vec<&str> = subscription
            .backlog
            .iter()
            .map(|e| e.detail.as_str())
            .collect();
        assert_eq!(backlog, ["first"]);
        let live = subscription.events.try_recv().unwrap();
        assert_eq!(live.detail, "second");
        assert!(subscription.events.try_recv().is_err());
    }

    #[test]
    fn backlog_keeps_only_the_latest_events() {
        let telemetry = hub();
        for n in 0..BACKLOG_EVENTS + 10 {
            telemetry.emit(Event::now(EventKind::Info, n.to_string()));
        }
        let backlog = telemetry.subscribe().backlog;
        assert_eq!(backlog.len(), BACKLOG_EVENTS);
        assert_eq!(backlog[0].detail, "10");
    }

    #[test]
    fn publish_stamps_the_hub_source() {
        let telemetry = hub();
        let mut snapshots = telemetry.subscribe().snapshots;
        telemetry.publish(Snapshot::default());
        assert!(snapshots.has_changed().unwrap());
        assert_eq!(snapshots.borrow_and_update().source.name, "test");
    }
}
