//! Server-initiated connections: one dial loop per player address.
//!
//! Players that advertise `_sendspin._tcp` wait for servers to connect. The
//! core owns a map of dial slots keyed by address and changes it in one step
//! per request. However fast mDNS records flap, at most one loop per address
//! runs. A new loop first waits for the previous loop of its address to
//! finish, and a loop whose session is open waits for that session to close
//! before it ends. A loop only dials. The sockets it opens go to the
//! core, which alone creates sessions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{BoxStream, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};
use tokio_util::task::TaskTracker;
use url::Url;

use super::group::EventSink;
use super::ServerEvent;
use crate::discovery::{BrowseEvent, EndpointKind, Family};
use crate::session::CloseCause;
use crate::transport::{self, Limits, PlainStream};

/// Reconnection timing of dial loops.
#[derive(Clone, Copy, Debug)]
pub struct DialBackoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Maximum delay between retries.
    pub max: Duration,
    /// A session lasting this long resets the delay to `initial`.
    pub stable_after: Duration,
}

impl Default for DialBackoff {
    fn default() -> Self {
        DialBackoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
        }
    }
}

/// Request to the core to start or stop dialing one player.
#[derive(Clone, Debug)]
pub enum DialRequest {
    /// Dial this URL, and redial after every close cause for which the
    /// protocol allows reconnecting.
    Add(Url),
    /// Stop dialing this address because the player withdrew its record.
    Remove(String),
}

/// Handle that sends dial requests to a running server. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Dialer {
    pub(super) requests: mpsc::UnboundedSender<DialRequest>,
}

impl Dialer {
    /// Starts dialing `url`, unless a loop for its address already runs.
    pub fn add(&self, url: Url) {
        let _ = self.requests.send(DialRequest::Add(url));
    }

    /// Stops dialing the address of `url`. An open session stays open.
    pub fn remove(&self, url: &Url) {
        let _ = self.requests.send(DialRequest::Remove(address_key(url)));
    }
}

/// Returns the key of a dial slot: `host:port` of the URL.
pub fn address_key(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url
        .port_or_known_default()
        .unwrap_or(transport::DEFAULT_CLIENT_PORT);
    format!("{host}:{port}")
}

/// Connection that a dial loop opened, on its way to the core.
pub(super) struct Dialed {
    pub ws: PlainStream,
    pub peer: SocketAddr,
    /// The connection after the Sendspin 1.0 handshake; `None` for a
    /// cleartext one.
    pub opened: Option<super::encrypted::Opened>,
    pub address: String,
    pub generation: u64,
    /// Receives the session's close cause, which decides whether to redial.
    pub closed: oneshot::Sender<CloseCause>,
}

/// Core's record of the dial loop for one address.
struct Slot {
    generation: u64,
    /// Whether dialing the address is requested. False after its mDNS record was removed.
    requested: bool,
    /// Tells the running loop whether the address is still requested.
    requested_tx: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Settings and channels the loops share with the core.
pub(super) struct DialContext {
    pub limits: Limits,
    pub backoff: DialBackoff,
    pub dialed: mpsc::Sender<Dialed>,
    pub events: EventSink,
    /// Keys and server name of a Sendspin 1.0 server, whose dialed
    /// connections run the Noise handshake before the core gets them.
    pub encrypted: Option<(super::encrypted::ServerKeys, String)>,
}

/// Single owner of all dial loops, kept by the core.
#[derive(Default)]
pub(super) struct DialSlots {
    slots: HashMap<String, Slot>,
    next_generation: u64,
}

impl DialSlots {
    /// Returns the addresses (`host:port`) dialing is requested for.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.slots
            .iter()
            .filter(|(_, slot)| slot.requested)
            .map(|(address, _)| address.as_str())
    }

    /// Applies one request in one step.
    pub fn apply(&mut self, request: DialRequest, context: &DialContext, tracker: &TaskTracker) {
        self.slots
            .retain(|_, slot| slot.requested || !slot.task.is_finished());
        match request {
            DialRequest::Add(url) => self.add(url, context, tracker),
            DialRequest::Remove(address) => {
                if let Some(slot) = self.slots.get_mut(&address) {
                    slot.requested = false;
                    slot.requested_tx.send_replace(false);
                }
            }
        }
    }

    fn add(&mut self, url: Url, context: &DialContext, tracker: &TaskTracker) {
        let address = address_key(&url);
        // A requested address keeps its loop, even after the loop ended on a
        // goodbye that forbids reconnecting. Only a record that went away and
        // came back starts a new one.
        if self.slots.get(&address).is_some_and(|slot| slot.requested) {
            return;
        }
        let previous = self.slots.remove(&address).map(|slot| slot.task);
        self.next_generation += 1;
        let (requested_tx, requested) = watch::channel(true);
        let dial_loop = DialLoop {
            url,
            address: address.clone(),
            generation: self.next_generation,
            requested,
            limits: context.limits.clone(),
            backoff: context.backoff,
            dialed: context.dialed.clone(),
            events: context.events.clone(),
            encrypted: context.encrypted.clone(),
        };
        let task = tracker.spawn(dial_loop.run(previous));
        let slot = Slot {
            generation: self.next_generation,
            requested: true,
            requested_tx,
            task,
        };
        self.slots.insert(address, slot);
    }

    /// Returns whether `generation` is the current loop of `address`.
    pub fn is_current(&self, address: &str, generation: u64) -> bool {
        self.slots
            .get(address)
            .is_some_and(|slot| slot.generation == generation)
    }

    /// Tells every loop to stop, for shutdown.
    pub fn stop_all(&mut self) {
        for slot in self.slots.values_mut() {
            slot.requested = false;
            slot.requested_tx.send_replace(false);
        }
    }
}

struct DialLoop {
    url: Url,
    address: String,
    generation: u64,
    requested: watch::Receiver<bool>,
    limits: Limits,
    backoff: DialBackoff,
    dialed: mpsc::Sender<Dialed>,
    events: EventSink,
    encrypted: Option<(super::encrypted::ServerKeys, String)>,
}

impl DialLoop {
    async fn run(mut self, previous: Option<JoinHandle<()>>) {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        // A loop whose record went away while it waited never starts.
        if !*self.requested.borrow() {
            return;
        }
        self.events.emit(ServerEvent::DialStarted {
            address: self.address.clone(),
            url: self.url.to_string(),
        });
        tracing::info!(url = %self.url, "dialing player");
        let reason = self.dial_until_done().await;
        tracing::info!(url = %self.url, %reason, "stopped dialing player");
        self.events.emit(ServerEvent::DialStopped {
            address: self.address.clone(),
            reason,
        });
    }

    /// Dials, hands each connection to the core and redials when the close
    /// cause allows it. Returns why it stopped.
    async fn dial_until_done(&mut self) -> String {
        let mut delays = RetryDelays::new(self.backoff);
        let mut attempt = 0u32;
        loop {
            if !*self.requested.borrow() {
                return "record removed".into();
            }
            let connecting = tokio::select! {
                result = transport::dial(&self.url, &self.limits) => Some(result),
                _ = self.requested.wait_for(|requested| !requested) => None,
            };
            let delay = match connecting {
                None => return "record removed".into(),
                Some(Ok(mut ws)) => {
                    let opened = match &self.encrypted {
                        Some((keys, name)) => {
                            let peer = ws.get_ref().peer_addr().ok();
                            let peer = peer.unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
                            match super::encrypted::open(
                                &mut ws,
                                peer,
                                keys,
                                name,
                                self.limits.handshake_timeout,
                            )
                            .await
                            {
                                Some(opened) => Some(opened),
                                None => {
                                    attempt += 1;
                                    let delay = delays.after_failure();
                                    tracing::info!(url = %self.url, attempt, ?delay, "the Sendspin 1.0 handshake with the player failed; retrying");
                                    tokio::select! {
                                        _ = sleep(delay) => {}
                                        _ = self.requested.wait_for(|requested| !requested) => return "record removed".into(),
                                    }
                                    continue;
                                }
                            }
                        }
                        None => None,
                    };
                    attempt = 0;
                    let started = Instant::now();
                    let cause = match self.hand_over(ws, opened).await {
                        Some(cause) => cause,
                        None => return "superseded or shutting down".into(),
                    };
                    if !cause.wants_reconnect() {
                        return format!("session closed: {cause}");
                    }
                    let delay = delays.after_session(started.elapsed());
                    tracing::info!(url = %self.url, %cause, ?delay, "session closed; redialing");
                    delay
                }
                Some(Err(err)) => {
                    attempt += 1;
                    let delay = delays.after_failure();
                    tracing::info!(url = %self.url, attempt, cause = %err, ?delay, "dial failed; retrying");
                    delay
                }
            };
            tokio::select! {
                _ = sleep(delay) => {}
                _ = self.requested.wait_for(|requested| !requested) => return "record removed".into(),
            }
        }
    }

    /// Gives an open connection to the core and waits until its session
    /// closes. Returns `None` when the core did not take it.
    async fn hand_over(
        &self,
        ws: PlainStream,
        opened: Option<super::encrypted::Opened>,
    ) -> Option<CloseCause> {
        let peer = ws.get_ref().peer_addr().ok()?;
        let (closed, close_cause) = oneshot::channel();
        let dialed = Dialed {
            ws,
            peer,
            opened,
            address: self.address.clone(),
            generation: self.generation,
            closed,
        };
        self.dialed.send(dialed).await.ok()?;
        close_cause.await.ok()
    }
}

/// Capped exponential retry delays. Each retry waits twice as long as the
/// one before, up to `max`. Only a session that lasted `stable_after`
/// starts over at `initial`.
struct RetryDelays {
    backoff: DialBackoff,
    next: Duration,
}

impl RetryDelays {
    fn new(backoff: DialBackoff) -> RetryDelays {
        RetryDelays {
            backoff,
            next: backoff.initial,
        }
    }

    /// Returns the delay before redialing after a failed dial.
    fn after_failure(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(self.backoff.max);
        delay
    }

    /// Returns the delay before redialing after a session that lasted
    /// `lasted`.
    fn after_session(&mut self, lasted: Duration) -> Duration {
        if lasted >= self.backoff.stable_after {
            self.next = self.backoff.initial;
        }
        self.after_failure()
    }
}

/// Dials every Sendspin player that `events` reports and stops dialing a
/// player when its record is removed. Returns when the stream ends.
pub async fn follow_players(mut events: BoxStream<'static, BrowseEvent>, dialer: Dialer) {
    // URLs by mDNS instance name, to map a removal back to an address.
    let mut urls: HashMap<String, Url> = HashMap::new();
    while let Some(event) = events.next().await {
        match event {
            BrowseEvent::Resolved(endpoint)
                if endpoint.kind == EndpointKind::Client && endpoint.family == Family::Sendspin =>
            {
                let Some(url) = endpoint.url() else {
                    continue;
                };
                if let Some(old) = urls.insert(endpoint.fullname.clone(), url.clone()) {
                    if address_key(&old) != address_key(&url) {
                        dialer.remove(&old);
                    }
                }
                dialer.add(url);
            }
            BrowseEvent::Resolved(_) => {}
            BrowseEvent::Removed { fullname, .. } => {
                if let Some(url) = urls.remove(&fullname) {
                    tracing::info!(%url, instance = %fullname, "player record removed");
                    dialer.remove(&url);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let backoff = DialBackoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            stable_after: Duration::from_secs(10),
        };
        let mut delays = RetryDelays::new(backoff);
        let waits: Vec<u64> = (0..5)
            .map(|_| delays.after_failure().as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);

        // A short session keeps the grown delay; a long one starts over.
        assert_eq!(
            delays.after_session(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        assert_eq!(
            delays.after_session(Duration::from_secs(10)),
            Duration::from_millis(100)
        );
        assert_eq!(delays.after_failure(), Duration::from_millis(200));
    }

    #[test]
    fn address_key_is_host_and_port() {
        let url = Url::parse("ws://192.0.2.1:9000/sendspin").unwrap();
        assert_eq!(address_key(&url), "192.0.2.1:9000");
        let url = Url::parse("ws://[2001:db8::1]/sendspin").unwrap();
        assert_eq!(address_key(&url), "[2001:db8::1]:80");
    }
}
