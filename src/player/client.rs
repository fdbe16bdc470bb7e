//! The player's network side: connect, handshake, keep the clock in sync,
//! feed the scheduler, and reconnect with capped exponential backoff.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};
use tokio_util::task::TaskTracker;
use url::Url;

use super::decode::ChunkDecoder;
use super::roles::Roles;
use super::scheduler::{PlaybackState, PlaybackStatus, Scheduler};
use super::servers::{choose_server, Choice, LastPlayed, LastPlayedStore, ServerSide};
use crate::audio::AudioFormat;
use crate::clock::now_us;
use crate::dialect::{Dialect, Incoming};
use crate::protocol::GoodbyeReason;
use crate::protocol::{
    BinaryKind, ClientCommand, ClientHello, ClientState, ClientStateKind, ClientTime,
    ConnectionReason, ControllerCommand, DeviceInfo, GroupUpdate, Message,
    PlaybackState as GroupPlayback, PlayerFormatRequest, PlayerState, PlayerSupport, ServerCommand,
    ServerHello, ServerState, StreamRequestFormat, StreamStartPlayer, SupportedFormat,
    PROTOCOL_VERSION,
};
use crate::session::{self, CloseCause, EventKind, SessionEvent, SessionHandle, Side};
use crate::sync::filter::{ClockPublisher, FilterConfig, Measurement, TimeFilter};
use crate::sync::schedule::{ScheduleConfig, SyncSchedule};
use crate::sync::ClockSnapshot;
use crate::telemetry::{ClockView, PlayerReport, REPORT_KEY, REPORT_ROLE};
use crate::transport::{self, Limits, TransportError};

/// Interval at which playback state is checked for `client/state` changes.
const STATE_POLL: Duration = Duration::from_millis(100);

/// Reconnection timing.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Longest delay between retries.
    pub max: Duration,
    /// Connection attempts before giving up when no session has succeeded
    /// yet; after one has, the player retries until stopped.
    pub first_connect_attempts: u32,
    /// A session lasting this long resets the delay to `initial`.
    pub stable_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(10),
            first_connect_attempts: 5,
            stable_after: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug)]
pub struct PlayerConfig {
    pub url: Url,
    pub client_id: String,
    pub name: String,
    pub dialect: Dialect,
    /// Formats offered in `player@v1_support`, first preferred.
    pub formats: Vec<SupportedFormat>,
    /// Bytes of audio the player buffers ahead.
    pub buffer_capacity: u64,
    pub limits: Limits,
    pub backoff: Backoff,
    /// Initial volume, 0 to 100.
    pub volume: u8,
    pub muted: bool,
    /// A `stream/request-format` to send once per connection, this long
    /// after the connection's first `stream/start`.
    pub format_request: Option<(PlayerFormatRequest, Duration)>,
    /// Keys for Sendspin 1.0 connections; required when `dialect` is
    /// [`Dialect::Sendspin`].
    pub keys: Option<super::encrypted::ClientKeys>,
    /// Dial again in cleartext Sendspin v1 when the first server closes
    /// the connection before sending `server/init`: for a dialect the
    /// user did not choose.
    pub cleartext_fallback: bool,
}

/// What the player reports as it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum PlayerEvent {
    Connected {
        server_id: String,
        server_name: String,
        active_roles: Vec<String>,
        connection_reason: ConnectionReason,
    },
    /// A server that connected while another was current lost the choice
    /// and got `client/goodbye` with `another_server`.
    ServerRejected {
        server_id: String,
        connection_reason: ConnectionReason,
    },
    /// The current server lost the choice to a newly connected one and got
    /// `client/goodbye` with `another_server`.
    ServerSwitched {
        from: String,
        to: String,
    },
    /// A later `server/activate` of the current server changed this
    /// client's active roles or the `playback` activity.
    Reactivated {
        active_roles: Vec<String>,
        connection_reason: ConnectionReason,
    },
    StreamStarted {
        format: AudioFormat,
    },
    StreamEnded,
    Disconnected {
        cause: CloseCause,
    },
    Retrying {
        attempt: u32,
        delay: Duration,
        error: String,
    },
    /// A `server/state` as received: a delta of the metadata and
    /// controller state, merged by the receiver in arrival order.
    ServerState(ServerState),
    /// A `group/update` as received, a delta of the player's group.
    GroupUpdate(GroupUpdate),
    /// The server closed the Sendspin 1.0 handshake before `server/init`, and the
    /// player dials it again in this dialect.
    FellBack {
        dialect: Dialect,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PlayerError {
    #[error("cannot reach the server at {url} after {attempts} attempt(s): {last}; check that the server runs and that the URL and path are right")]
    Unreachable {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("the server at {url} has no endpoint at {path} (HTTP 404); check the path in the server URL (servers use /sendspin by default)")]
    NoEndpoint { url: String, path: String },
    #[error("another player connected with the same client_id {client_id:?} and replaced this one; give each player its own --state-dir (Sendspin 1.0) or --client-id (v1)")]
    Replaced { client_id: String },
}

/// A running player's network side.
pub struct Player {
    config: PlayerConfig,
    scheduler: Arc<Scheduler>,
    clock: ClockPublisher,
    events: Option<mpsc::UnboundedSender<PlayerEvent>>,
    last_played: Option<LastPlayedStore>,
    /// The stored last-played server id, read once and kept in step with
    /// the file.
    last_played_id: std::sync::Mutex<Option<String>>,
    /// Whether servers dial this player (`run_listening`).
    listening: bool,
    /// Roles listed in `client/hello`.
    roles: Roles,
    /// Controller commands to send to the current server. The session
    /// that runs holds the lock, and only one runs at a time.
    commands: Option<tokio::sync::Mutex<mpsc::UnboundedReceiver<ControllerCommand>>>,
}

/// Why one session ended, as the reconnect loop sees it.
enum SessionEnd {
    Closed(CloseCause),
    /// The server closed the connection before sending `server/init`.
    ClosedBeforeInit(CloseCause),
    Shutdown,
    /// A newly connected server won the choice; the old session is closed.
    /// Boxed because a candidate carries a whole `server/hello`.
    Switched(Box<Candidate>),
}

/// A server-initiated session whose handshake is done, waiting for the
/// player to choose it or reject it.
struct Candidate {
    handle: SessionHandle,
    events: mpsc::Receiver<SessionEvent>,
    hello: ServerHello,
    /// The `server/hello` event, replayed to the session state on adoption.
    hello_event: SessionEvent,
}

impl Player {
    pub fn new(config: PlayerConfig, scheduler: Arc<Scheduler>, clock: ClockPublisher) -> Player {
        scheduler.set_volume(config.volume.min(100));
        scheduler.set_muted(config.muted);
        Player {
            config,
            scheduler,
            clock,
            events: None,
            last_played: None,
            last_played_id: std::sync::Mutex::new(None),
            listening: false,
            roles: Roles::PLAYER,
            commands: None,
        }
    }

    /// Lists `roles` in `client/hello` instead of the player role alone.
    /// Without the player role the session plays no audio.
    pub fn with_roles(mut self, roles: Roles) -> Player {
        self.roles = roles;
        self
    }

    /// Sends each command from `commands` to the connected server as a
    /// `client/command`. Commands that arrive while no session with the
    /// controller role runs are dropped.
    pub fn with_commands(mut self, commands: mpsc::UnboundedReceiver<ControllerCommand>) -> Player {
        self.commands = Some(tokio::sync::Mutex::new(commands));
        self
    }

    /// Keeps the server that last played in `store`, and prefers it when
    /// two servers connect for discovery.
    pub fn with_last_played(mut self, store: LastPlayedStore) -> Player {
        *self.last_played_id.lock().expect("last-played lock") =
            store.load().map(|last| last.server_id);
        self.last_played = Some(store);
        self
    }

    fn last_played_id(&self) -> Option<String> {
        self.last_played_id
            .lock()
            .expect("last-played lock")
            .clone()
    }

    /// Stores `server_id` as the last-played server when it changed.
    fn remember_played(&self, server_id: &str, url: Option<String>) {
        let Some(store) = &self.last_played else {
            return;
        };
        let mut cached = self.last_played_id.lock().expect("last-played lock");
        if cached.as_deref() == Some(server_id) {
            return;
        }
        let last = LastPlayed {
            server_id: server_id.to_string(),
            url,
        };
        match store.save(&last) {
            Ok(()) => *cached = Some(server_id.to_string()),
            Err(err) => {
                tracing::warn!(path = %store.path().display(), cause = %err, "cannot store the last-played server")
            }
        }
    }

    /// Sends player events to `events` as they happen.
    pub fn with_events(mut self, events: mpsc::UnboundedSender<PlayerEvent>) -> Player {
        self.events = Some(events);
        self
    }

    fn report(&self, event: PlayerEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    /// Plays until `shutdown` completes, reconnecting as needed. Returns an
    /// error only when the server cannot be reached at all.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), PlayerError> {
        tokio::pin!(shutdown);
        let backoff = self.config.backoff;
        let mut delay = backoff.initial;
        let mut failures = 0u32;
        let mut ever_connected = false;
        // Whether any server sent server/init: only before that may a closed
        // handshake mean a cleartext-only server.
        let mut init_received = false;
        loop {
            let attempt = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                attempt = transport::connect(&self.config.url, &self.config.limits) => attempt,
            };
            match attempt {
                Ok(ws) => {
                    failures = 0;
                    ever_connected = true;
                    let started = Instant::now();
                    let peer = peer_addr(&ws);
                    match self.run_session(ws, peer, &mut shutdown).await {
                        // A dialing player has no candidates to switch to.
                        SessionEnd::Shutdown | SessionEnd::Switched(_) => return Ok(()),
                        SessionEnd::ClosedBeforeInit(cause) => {
                            if self.config.cleartext_fallback && !init_received {
                                self.fall_back();
                                continue;
                            }
                            self.report(PlayerEvent::Disconnected { cause });
                        }
                        SessionEnd::Closed(cause) => {
                            init_received = true;
                            if was_replaced(&cause) {
                                self.report(PlayerEvent::Disconnected { cause });
                                return Err(PlayerError::Replaced {
                                    client_id: self.config.client_id.clone(),
                                });
                            }
                            if started.elapsed() >= backoff.stable_after {
                                delay = backoff.initial;
                            }
                            self.report(PlayerEvent::Disconnected { cause });
                        }
                    }
                }
                Err(err) if is_not_found(&err) => {
                    return Err(PlayerError::NoEndpoint {
                        url: self.config.url.to_string(),
                        path: self.config.url.path().to_string(),
                    });
                }
                Err(err) => {
                    failures += 1;
                    if !ever_connected && failures >= backoff.first_connect_attempts {
                        return Err(unreachable(&self.config.url, failures, &err));
                    }
                    tracing::warn!(url = %self.config.url, attempt = failures, cause = %err, ?delay, "connection failed; retrying");
                    self.report(PlayerEvent::Retrying {
                        attempt: failures,
                        delay,
                        error: err.to_string(),
                    });
                }
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = sleep(delay) => {}
            }
            delay = (delay * 2).min(backoff.max);
        }
    }

    /// Switches to cleartext Sendspin v1 for every later connection.
    fn fall_back(&mut self) {
        let dialect = Dialect::SendspinV1;
        tracing::warn!(url = %self.config.url, "the server closed the connection before sending server/init of the Sendspin 1.0 handshake; dialing again in cleartext Sendspin v1 (pass --dialect sendspin to insist on 1.0)");
        self.config.dialect = dialect;
        self.report(PlayerEvent::FellBack { dialect });
    }

    async fn run_session(
        &self,
        mut ws: transport::ClientStream,
        peer: SocketAddr,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> SessionEnd {
        let tracker = TaskTracker::new();
        let (events_tx, events) = mpsc::channel(1024);
        let hello = self.hello();
        let opening = super::encrypted::open_codec(
            &mut ws,
            self.config.dialect,
            self.config.keys.as_ref(),
            &hello,
            self.config.limits.handshake_timeout,
        );
        let codec = tokio::select! {
            _ = shutdown.as_mut() => return SessionEnd::Shutdown,
            codec = opening => match codec {
                Ok(codec) => codec,
                Err(failure) if failure.before_init => return SessionEnd::ClosedBeforeInit(failure.cause),
                Err(failure) => return SessionEnd::Closed(failure.cause),
            },
        };
        let handle = session::spawn(
            ws,
            peer,
            Side::Client,
            codec,
            self.config.limits.clone(),
            events_tx,
            &tracker,
        );
        tracker.close();
        let _ = handle.send_message(Message::ClientHello(self.hello()));
        let end = self.drive(handle, events, None, shutdown, None).await;
        tracker.wait().await;
        end
    }

    /// Runs one session until it closes, `shutdown` completes or, with
    /// `candidates`, a newly connected server wins the choice.
    async fn drive(
        &self,
        handle: SessionHandle,
        mut events: mpsc::Receiver<SessionEvent>,
        replay: Option<SessionEvent>,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        mut candidates: Option<&mut mpsc::Receiver<Candidate>>,
    ) -> SessionEnd {
        let mut state = SessionState::new(self, handle.clone());
        if let Some(event) = replay {
            state.on_event(event);
        }
        let mut poll = tokio::time::interval(STATE_POLL);
        let mut commands = match &self.commands {
            Some(commands) => Some(commands.lock().await),
            None => None,
        };
        // Commands given while no session ran were meant for a state the
        // new session may not have, so they are dropped.
        if let Some(commands) = commands.as_mut() {
            let mut stale = 0;
            while commands.try_recv().is_ok() {
                stale += 1;
            }
            if stale > 0 {
                tracing::warn!(
                    count = stale,
                    "dropping controller commands given while disconnected"
                );
            }
        }
        let end = loop {
            let next_time_request = state.next_time_request();
            let format_request = state.format_request_delay();
            tokio::select! {
                _ = shutdown.as_mut() => {
                    handle.close(CloseCause::LocalGoodbye(GoodbyeReason::UserRequest));
                    break SessionEnd::Shutdown;
                }
                event = events.recv() => match event {
                    Some(SessionEvent { kind: EventKind::Closed(cause), .. }) => break SessionEnd::Closed(cause),
                    Some(event) => state.on_event(event),
                    None => break SessionEnd::Closed(CloseCause::Shutdown),
                },
                candidate = next_candidate(&mut candidates) => {
                    if let Some(end) = self.choose(&state, candidate) {
                        handle.close(CloseCause::LocalGoodbye(GoodbyeReason::AnotherServer));
                        break end;
                    }
                }
                _ = sleep(next_time_request) => state.on_time_request_due(),
                _ = sleep(format_request) => state.send_format_request(),
                _ = poll.tick() => state.poll_playback(),
                command = next_command(&mut commands) => state.send_command(command),
            }
        };
        if !matches!(end, SessionEnd::Closed(_)) {
            // Drain until the one Closed event, so the goodbye goes out.
            while let Some(event) = events.recv().await {
                if matches!(event.kind, EventKind::Closed(_)) {
                    break;
                }
            }
        }
        self.scheduler.end_stream();
        end
    }

    /// Applies the multiple-server rules to the current session and a new
    /// candidate. Returns the end of the current session when the candidate
    /// wins, and otherwise closes the candidate with `another_server`.
    fn choose(&self, state: &SessionState<'_>, candidate: Candidate) -> Option<SessionEnd> {
        let new = ServerSide {
            server_id: &candidate.hello.server_id,
            reason: candidate.hello.connection_reason,
        };
        let last_played = self.last_played_id();
        let choice = match &state.server {
            Some((server_id, reason)) => {
                let current = ServerSide {
                    server_id,
                    reason: *reason,
                };
                choose_server(current, new, last_played.as_deref())
            }
            // The current session has not finished its handshake.
            None => Choice::SwitchToNew,
        };
        match choice {
            Choice::SwitchToNew => {
                let from = state
                    .server
                    .as_ref()
                    .map(|(id, _)| id.clone())
                    .unwrap_or_default();
                tracing::info!(%from, to = %candidate.hello.server_id, "switching to a newly connected server");
                self.report(PlayerEvent::ServerSwitched {
                    from,
                    to: candidate.hello.server_id.clone(),
                });
                Some(SessionEnd::Switched(Box::new(candidate)))
            }
            Choice::KeepCurrent => {
                // Sendspin 1.0 gives a rejected incoming server the reason
                // concurrent_attempt; v1 has only another_server.
                let reason = if self.config.dialect.is_encrypted() {
                    GoodbyeReason::ConcurrentAttempt
                } else {
                    GoodbyeReason::AnotherServer
                };
                tracing::info!(server_id = %candidate.hello.server_id, reason = reason.as_str(), "keeping the current server; saying goodbye to the new one");
                self.report(PlayerEvent::ServerRejected {
                    server_id: candidate.hello.server_id.clone(),
                    connection_reason: candidate.hello.connection_reason,
                });
                candidate.handle.close(CloseCause::LocalGoodbye(reason));
                None
            }
        }
    }

    /// Waits for servers to connect on `listener` (server-initiated
    /// connections) and plays from the one the multiple-server rules pick,
    /// until `shutdown` completes. Never dials out.
    pub async fn run_listening(
        mut self,
        listener: TcpListener,
        path: String,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), PlayerError> {
        self.listening = true;
        tokio::pin!(shutdown);
        let tracker = TaskTracker::new();
        let (candidates_tx, mut candidates) = mpsc::channel::<Candidate>(8);
        let acceptor = Acceptor {
            handshake: Handshake {
                path,
                limits: self.config.limits.clone(),
                dialect: self.config.dialect,
                keys: self.config.keys.clone(),
                hello: self.hello(),
                candidates: candidates_tx,
                tracker: tracker.clone(),
            },
        };
        let accepting = tracker.spawn(acceptor.run(listener));
        let mut next: Option<Candidate> = None;
        loop {
            let candidate = match next.take() {
                Some(candidate) => candidate,
                None => tokio::select! {
                    _ = &mut shutdown => break,
                    Some(candidate) = candidates.recv() => candidate,
                },
            };
            let Candidate {
                handle,
                events,
                hello_event,
                ..
            } = candidate;
            match self
                .drive(
                    handle.clone(),
                    events,
                    Some(hello_event),
                    &mut shutdown,
                    Some(&mut candidates),
                )
                .await
            {
                SessionEnd::Shutdown => break,
                SessionEnd::Switched(candidate) => next = Some(*candidate),
                SessionEnd::Closed(cause) | SessionEnd::ClosedBeforeInit(cause) => {
                    self.report(PlayerEvent::Disconnected { cause })
                }
            }
        }

        accepting.abort();
        candidates.close();
        while let Ok(candidate) = candidates.try_recv() {
            candidate
                .handle
                .close(CloseCause::LocalGoodbye(GoodbyeReason::Shutdown));
        }
        tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(3), tracker.wait()).await;
        Ok(())
    }

    /// Returns the URL this player dials, or `None` when servers dial it.
    fn dialed_url(&self) -> Option<String> {
        if self.listening {
            None
        } else {
            Some(self.config.url.to_string())
        }
    }

    fn hello(&self) -> ClientHello {
        ClientHello {
            client_id: self.config.client_id.clone(),
            name: self.config.name.clone(),
            device_info: Some(DeviceInfo {
                product_name: Some("resonate play".into()),
                manufacturer: None,
                software_version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            version: PROTOCOL_VERSION,
            supported_roles: self
                .roles
                .versioned()
                .into_iter()
                .chain([REPORT_ROLE.to_string()])
                .collect(),
            player_support: self.roles.player.then(|| PlayerSupport {
                supported_formats: self.config.formats.clone(),
                buffer_capacity: self.config.buffer_capacity,
                supported_commands: vec!["volume".into(), "mute".into()],
            }),
            artwork_support: None,
            visualizer_support: None,
            extra: Default::default(),
        }
    }
}

/// Waits for the next controller command, or forever without a command
/// source.
async fn next_command(
    commands: &mut Option<tokio::sync::MutexGuard<'_, mpsc::UnboundedReceiver<ControllerCommand>>>,
) -> ControllerCommand {
    match commands {
        Some(receiver) => match receiver.recv().await {
            Some(command) => command,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Waits for the next candidate, or forever without a candidate source.
async fn next_candidate(candidates: &mut Option<&mut mpsc::Receiver<Candidate>>) -> Candidate {
    match candidates {
        Some(receiver) => match receiver.recv().await {
            Some(candidate) => candidate,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Accepts server-initiated connections and hands each one, once its
/// handshake is done, to the player as a [`Candidate`].
struct Acceptor {
    /// The handshake each accepted connection runs a copy of.
    handshake: Handshake,
}

impl Acceptor {
    async fn run(self, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(cause = %err, "accepting a server connection failed; continuing");
                    sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let handshake = self.handshake.clone();
            self.handshake.tracker.spawn(handshake.run(stream, peer));
        }
    }
}

/// The handshake of one server-initiated connection: the WebSocket upgrade,
/// `client/hello` out and `server/hello` in.
#[derive(Clone)]
struct Handshake {
    path: String,
    limits: Limits,
    dialect: Dialect,
    keys: Option<super::encrypted::ClientKeys>,
    hello: ClientHello,
    candidates: mpsc::Sender<Candidate>,
    tracker: TaskTracker,
}

impl Handshake {
    async fn run(self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let mut ws =
            match transport::accept(stream, &peer.to_string(), &self.path, &self.limits).await {
                Ok(ws) => ws,
                Err(err) => {
                    tracing::info!(%peer, cause = %err, "server connection rejected");
                    return;
                }
            };
        let (events_tx, mut events) = mpsc::channel(1024);
        let codec = match super::encrypted::open_codec(
            &mut ws,
            self.dialect,
            self.keys.as_ref(),
            &self.hello,
            self.limits.handshake_timeout,
        )
        .await
        {
            Ok(codec) => codec,
            Err(failure) => {
                tracing::info!(%peer, cause = %failure.cause, "server connection failed its handshake");
                return;
            }
        };
        let handle = session::spawn(
            ws,
            peer,
            Side::Client,
            codec,
            self.limits,
            events_tx,
            &self.tracker,
        );
        let _ = handle.send_message(Message::ClientHello(self.hello));
        // The session closes itself when the handshake times out.
        while let Some(event) = events.recv().await {
            match event.kind {
                EventKind::Received {
                    incoming: Incoming::Message(Message::ServerHello(hello)),
                    received_us,
                } => {
                    let hello_event = SessionEvent {
                        session: event.session,
                        kind: EventKind::Received {
                            incoming: Incoming::Message(Message::ServerHello(hello.clone())),
                            received_us,
                        },
                    };
                    let candidate = Candidate {
                        handle,
                        events,
                        hello,
                        hello_event,
                    };
                    if let Err(refused) = self.candidates.send(candidate).await {
                        refused
                            .0
                            .handle
                            .close(CloseCause::LocalGoodbye(GoodbyeReason::Shutdown));
                    }
                    return;
                }
                EventKind::Closed(cause) => {
                    tracing::info!(%peer, %cause, "server connection closed during the handshake");
                    return;
                }
                _ => {}
            }
        }
    }
}

fn peer_addr(ws: &transport::ClientStream) -> SocketAddr {
    use tokio_tungstenite::MaybeTlsStream;
    match ws.get_ref() {
        MaybeTlsStream::Plain(stream) => stream
            .peer_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into()),
        _ => ([0, 0, 0, 0], 0).into(),
    }
}

/// Whether a server closed the session because another session with the
/// same `client_id` replaced it. Reconnecting would replace the other player
/// in turn, forever, so the player stops instead. The protocol has no code
/// for this; servers of this project say so in the close reason.
fn was_replaced(cause: &CloseCause) -> bool {
    matches!(cause, CloseCause::PeerClosed { reason, .. } if reason.contains("same client_id"))
}

/// Whether the WebSocket upgrade was answered with 404: the host runs a
/// server, but not at this path, so retrying cannot help.
fn is_not_found(err: &TransportError) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    matches!(err, TransportError::Connect { cause: WsError::Http(response), .. } if response.status() == 404)
}

fn unreachable(url: &Url, attempts: u32, err: &TransportError) -> PlayerError {
    PlayerError::Unreachable {
        url: url.to_string(),
        attempts,
        last: err.to_string(),
    }
}

/// State of one connection, owned by the player task.
struct SessionState<'a> {
    player: &'a Player,
    handle: SessionHandle,
    active: bool,
    filter: TimeFilter,
    schedule: SyncSchedule,
    /// When the outstanding `client/time` was queued, for the reply timeout.
    request_queued: Option<Instant>,
    /// Decoder of the active stream, `None` until a valid `stream/start`.
    decoder: Option<ChunkDecoder>,
    reported: Option<ClientStateKind>,
    rejected_chunks: u64,
    /// When the configured `stream/request-format` is due.
    format_request_due: Option<Instant>,
    format_request_sent: bool,
    /// The server's id and connection reason, from `server/hello`.
    server: Option<(String, ConnectionReason)>,
    /// When the latest `_resonate` report went out, while the server has
    /// activated the report role.
    report_sent: Option<Option<Instant>>,
    /// Roles the server activated in `server/hello`.
    activated_roles: Vec<String>,
}

impl<'a> SessionState<'a> {
    fn new(player: &'a Player, handle: SessionHandle) -> SessionState<'a> {
        SessionState {
            player,
            handle,
            active: false,
            filter: TimeFilter::new(FilterConfig::default()),
            schedule: SyncSchedule::new(ScheduleConfig::default()),
            request_queued: None,
            decoder: None,
            reported: None,
            rejected_chunks: 0,
            format_request_due: None,
            format_request_sent: false,
            server: None,
            report_sent: None,
            activated_roles: Vec::new(),
        }
    }

    /// Time until the configured `stream/request-format` is due.
    fn format_request_delay(&self) -> Duration {
        match self.format_request_due {
            Some(due) if !self.format_request_sent => due.saturating_duration_since(Instant::now()),
            _ => Duration::from_secs(3600),
        }
    }

    fn send_format_request(&mut self) {
        if self.format_request_sent
            || self
                .format_request_due
                .is_none_or(|due| due > Instant::now())
        {
            return;
        }
        let Some((request, _)) = &self.player.config.format_request else {
            return;
        };
        self.format_request_sent = true;
        tracing::info!(?request, "requesting a stream format");
        let message = Message::StreamRequestFormat(StreamRequestFormat {
            player: Some(request.clone()),
            ..Default::default()
        });
        let _ = self.handle.send_message(message);
    }

    /// Time until the next `client/time` is due or the outstanding one
    /// times out.
    fn next_time_request(&self) -> Duration {
        if !self.active {
            return Duration::from_secs(3600);
        }
        match self.request_queued {
            Some(queued) => self
                .schedule
                .config()
                .reply_timeout
                .saturating_sub(queued.elapsed()),
            None => self.schedule.send_delay(now_us()),
        }
    }

    fn on_time_request_due(&mut self) {
        if !self.active {
            return;
        }
        if self.request_queued.is_some() {
            let outcome = self.schedule.record_timeout(now_us(), &mut self.filter);
            tracing::debug!(?outcome, "client/time reply timed out");
            self.request_queued = None;
            self.publish_clock();
            return;
        }
        // T1 is stamped by the session right before the write; the schedule
        // learns it from the TimeSent event.
        let request = Message::ClientTime(ClientTime {
            client_transmitted: 0,
        });
        if self.handle.send_message(request).is_ok() {
            self.request_queued = Some(Instant::now());
        }
    }

    fn publish_clock(&self) {
        self.player.clock.publish(self.filter.snapshot());
    }

    fn on_event(&mut self, event: SessionEvent) {
        match event.kind {
            EventKind::TimeSent { client_transmitted } => {
                self.schedule.record_sent(client_transmitted)
            }
            EventKind::Received {
                incoming,
                received_us,
            } => self.on_incoming(incoming, received_us),
            EventKind::Activated
            | EventKind::TimeAnswered { .. }
            | EventKind::RoundTrip { .. }
            | EventKind::Closed(_) => {}
        }
    }

    fn on_incoming(&mut self, incoming: Incoming, received_us: i64) {
        match incoming {
            Incoming::Message(message) => self.on_message(message, received_us),
            Incoming::Binary(frame) => match frame.kind {
                BinaryKind::Audio => self.on_audio(frame.timestamp_us, frame.payload()),
                other => {
                    tracing::debug!(kind = ?other, "ignoring binary frame for a role this player lacks")
                }
            },
            Incoming::Unpaired => self.on_unpaired(),
            Incoming::Unknown { .. } | Incoming::Consumed => {}
        }
    }

    /// Removes the pairing record of the server that unpaired this client
    /// and closes the session with the goodbye reason `unpaired`. The next
    /// connection to that server is unpaired.
    fn on_unpaired(&mut self) {
        let server_id = self.server.as_ref().map(|(id, _)| id.clone());
        let keys = self.player.config.keys.as_ref();
        if let (Some(server_id), Some(keys)) = (&server_id, keys) {
            let removed = crate::noise::PairingStore::load(&keys.records_path)
                .and_then(|mut records| records.remove(server_id));
            match removed {
                Ok(_) => {
                    tracing::warn!(server = %server_id, records = %keys.records_path.display(), "the server unpaired this client; removed its pairing record")
                }
                Err(err) => {
                    tracing::warn!(server = %server_id, cause = %err, "the server unpaired this client, but its pairing record could not be removed")
                }
            }
        }
        self.handle
            .close(CloseCause::LocalGoodbye(GoodbyeReason::Unpaired));
    }

    /// Returns whether this client keeps a pairing record of `server_id`.
    fn paired_with(&self, server_id: &str) -> bool {
        self.player.config.keys.as_ref().is_some_and(|keys| {
            crate::noise::PairingStore::load(&keys.records_path)
                .is_ok_and(|records| records.record_of(server_id).is_some())
        })
    }

    fn on_message(&mut self, message: Message, received_us: i64) {
        match message {
            Message::ServerHello(hello) if self.active => {
                tracing::info!(server_id = %hello.server_id, roles = ?hello.active_roles, reason = ?hello.connection_reason, "the server changed this client's activation");
                self.server = Some((hello.server_id.clone(), hello.connection_reason));
                if hello.active_roles.iter().any(|role| role == REPORT_ROLE) {
                    self.report_sent.get_or_insert(None);
                }
                self.activated_roles = hello.active_roles.clone();
                self.player.report(PlayerEvent::Reactivated {
                    active_roles: hello.active_roles,
                    connection_reason: hello.connection_reason,
                });
                self.send_full_state();
            }
            Message::ServerHello(hello) => {
                self.active = true;
                tracing::info!(server_id = %hello.server_id, name = %hello.name, roles = ?hello.active_roles, reason = ?hello.connection_reason, "connected");
                self.server = Some((hello.server_id.clone(), hello.connection_reason));
                if hello.active_roles.iter().any(|role| role == REPORT_ROLE) {
                    self.report_sent = Some(None);
                }
                if hello.active_roles.is_empty() && self.player.config.dialect.is_encrypted() {
                    if self.paired_with(&hello.server_id) {
                        tracing::info!(server = %hello.name, client_id = %self.player.config.client_id, "the server gave this paired client no roles; it may be about to unpair it, or its operator keeps it idle");
                    } else {
                        tracing::warn!(server = %hello.name, client_id = %self.player.config.client_id, "the server gave this client no roles: it is neither paired with the server nor approved by its operator; pair it (resonate play pair --server URL, with resonate serve pair or serve clients --pair-code on the server), or have the operator approve this client_id (resonate serve clients --approve CLIENT_ID)");
                    }
                }
                self.activated_roles = hello.active_roles.clone();
                self.player.report(PlayerEvent::Connected {
                    server_id: hello.server_id,
                    server_name: hello.name,
                    active_roles: hello.active_roles,
                    connection_reason: hello.connection_reason,
                });
                self.send_full_state();
            }
            Message::ServerTime(time) => {
                self.request_queued = None;
                let measurement = Measurement {
                    client_transmitted: time.client_transmitted,
                    server_received: time.server_received,
                    server_transmitted: time.server_transmitted,
                    client_received: received_us,
                };
                let outcome = self.schedule.record_reply(measurement, &mut self.filter);
                tracing::trace!(?outcome, "clock sample");
                self.publish_clock();
            }
            Message::StreamStart(start) => {
                if let Some(player) = start.player {
                    self.start_stream(&player);
                }
            }
            Message::StreamClear(clear) => {
                if roles_include(&clear.roles, "player") {
                    self.player.scheduler.clear();
                }
            }
            Message::StreamEnd(end) => {
                if roles_include(&end.roles, "player") {
                    self.decoder = None;
                    self.player.scheduler.end_stream();
                    self.player.report(PlayerEvent::StreamEnded);
                }
            }
            Message::ServerCommand(command) => self.on_server_command(command),
            Message::GroupUpdate(update) => {
                tracing::info!(?update, "group update");
                self.player.report(PlayerEvent::GroupUpdate(update.clone()));
                if update.playback_state == Some(Some(GroupPlayback::Playing)) {
                    if let Some((server_id, _)) = &self.server {
                        self.player
                            .remember_played(server_id, self.player.dialed_url());
                    }
                }
            }
            Message::ServerState(state) => self.player.report(PlayerEvent::ServerState(state)),
            other => tracing::debug!(
                type_name = other.type_name(),
                "ignoring a client message sent by the server"
            ),
        }
    }

    /// Starts a stream or changes its format. A new codec whose decoded
    /// samples have the same rate, channels and bit depth keeps the
    /// scheduler's stream, so the audio already buffered plays on and the
    /// new chunks continue it without a break.
    fn start_stream(&mut self, player: &StreamStartPlayer) {
        let decoder = match ChunkDecoder::new(player) {
            Ok(decoder) => decoder,
            Err(reason) => {
                tracing::error!(codec = %player.codec, %reason, "rejecting stream/start; this player plays no audio until a valid stream starts");
                self.decoder = None;
                self.player.scheduler.end_stream();
                return;
            }
        };
        let format = decoder.format();
        if let Err(reason) = check_stream_format(&decoder.output_format()) {
            tracing::error!(%format, %reason, "rejecting stream/start; this player plays no audio until a valid stream starts");
            self.decoder = None;
            self.player.scheduler.end_stream();
            return;
        }
        match self.player.scheduler.start_stream(decoder.output_format()) {
            Ok(()) => {
                tracing::info!(%format, "stream started");
                self.decoder = Some(decoder);
                if self.format_request_due.is_none() {
                    if let Some((_, after)) = &self.player.config.format_request {
                        self.format_request_due = Some(Instant::now() + *after);
                    }
                }
                self.player.report(PlayerEvent::StreamStarted { format });
            }
            Err(err) => {
                tracing::error!(cause = %err, "cannot start the stream");
                self.decoder = None;
            }
        }
    }

    fn on_audio(&mut self, timestamp_us: i64, payload: &[u8]) {
        if !(-MAX_TIMESTAMP_US..=MAX_TIMESTAMP_US).contains(&timestamp_us) {
            self.rejected_chunks += 1;
            tracing::debug!(
                timestamp_us,
                "dropping an audio chunk with an impossible timestamp"
            );
            return;
        }
        let Some(decoder) = self.decoder.as_mut() else {
            self.rejected_chunks += 1;
            if self.rejected_chunks == 1 {
                tracing::warn!(
                    "audio chunk before stream/start; rejecting audio until a stream starts"
                );
            }
            return;
        };
        let mut samples = Vec::with_capacity(payload.len());
        if let Err(reason) = decoder.decode(payload, &mut samples) {
            // A corrupt chunk plays as silence so the chunks after it keep
            // their place.
            self.player.scheduler.record_corrupt_chunk();
            tracing::warn!(timestamp_us, bytes = payload.len(), %reason, "corrupt audio chunk; playing silence in its place");
            decoder.conceal(&mut samples);
        }
        if let Err(err) = self.player.scheduler.push_chunk(timestamp_us, samples) {
            tracing::debug!(cause = %err, "chunk not scheduled");
        }
    }

    fn on_server_command(&mut self, command: ServerCommand) {
        let Some(player) = command.player else { return };
        let scheduler = &self.player.scheduler;
        let mut delta = PlayerState::default();
        match player.command.as_str() {
            "volume" => {
                if let Some(volume) = player.volume {
                    let volume = volume.clamp(0, 100) as u8;
                    scheduler.set_volume(volume);
                    delta.volume = Some(volume);
                }
            }
            "mute" => {
                if let Some(muted) = player.mute {
                    scheduler.set_muted(muted);
                    delta.muted = Some(muted);
                }
            }
            other => tracing::debug!(command = other, "ignoring unsupported player command"),
        }
        if delta != PlayerState::default() {
            let state = ClientState {
                player: Some(delta),
                ..Default::default()
            };
            let _ = self.handle.send_message(Message::ClientState(state));
        }
    }

    /// Sends the complete state right after `server/hello`.
    fn send_full_state(&mut self) {
        let status = self.player.scheduler.status();
        self.reported = Some(ClientStateKind::Synchronized);
        let state = ClientState {
            state: Some(ClientStateKind::Synchronized),
            player: self.player.roles.player.then_some(PlayerState {
                volume: Some(status.volume),
                muted: Some(status.muted),
            }),
            extra: Default::default(),
        };
        let _ = self.handle.send_message(Message::ClientState(state));
    }

    /// Sends a controller command while the server has activated the
    /// controller role.
    fn send_command(&mut self, command: ControllerCommand) {
        let controller = self
            .activated_roles
            .iter()
            .any(|role| role.split('@').next() == Some("controller"));
        if !controller {
            tracing::warn!(command = %command.command, "dropping a controller command: no server has activated the controller role");
            return;
        }
        tracing::info!(command = %command.command, volume = ?command.volume, mute = ?command.mute, "sending a controller command");
        let message = Message::ClientCommand(ClientCommand {
            controller: Some(command),
            ..Default::default()
        });
        let _ = self.handle.send_message(message);
    }

    /// Reports `error` while a stream cannot play in sync and
    /// `synchronized` once it can again.
    fn poll_playback(&mut self) {
        if !self.active {
            return;
        }
        let status = self.player.scheduler.status();
        let clock = self.player.clock.shared().snapshot();
        // Audio waiting for a clock, or anchored playback that ran dry, is
        // out of sync. The scheduler plays silence meanwhile and keeps
        // queueing chunks.
        let waiting_for_clock =
            status.state == PlaybackState::Buffering && status.buffered_us > 0 && !clock.converged;
        let failing = self.decoder.is_some() && (waiting_for_clock || status.underrun);
        let wanted = if failing {
            ClientStateKind::Error
        } else {
            ClientStateKind::Synchronized
        };
        if self.reported != Some(wanted) {
            self.reported = Some(wanted);
            let state = ClientState {
                state: Some(wanted),
                ..Default::default()
            };
            let _ = self.handle.send_message(Message::ClientState(state));
        }
        if let Some(sent) = self.report_sent {
            if sent.is_none_or(|at| at.elapsed() >= REPORT_INTERVAL) {
                self.report_sent = Some(Some(Instant::now()));
                self.send_report(&status, &clock);
            }
        }
    }

    /// Sends the player's own clock and buffer state in the `_resonate`
    /// object of `client/state`, for the server's telemetry.
    fn send_report(&self, status: &PlaybackStatus, clock: &ClockSnapshot) {
        let report = PlayerReport {
            clock: clock.is_valid().then(|| clock_view(clock)),
            buffer_ms: status.format.map(|_| status.buffered_us as f64 / 1000.0),
            late_chunks: status.totals.late_chunks_dropped,
            dropped_chunks: status.totals.overflow_chunks_dropped
                + status.totals.corrupt_chunks
                + self.rejected_chunks,
        };
        let Ok(value) = serde_json::to_value(&report) else {
            return;
        };
        let mut state = ClientState::default();
        state.extra.insert(REPORT_KEY.to_string(), value);
        let _ = self.handle.send_message(Message::ClientState(state));
    }
}

/// Interval between two `_resonate` reports.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Converts a filter snapshot to the telemetry form.
pub fn clock_view(clock: &ClockSnapshot) -> ClockView {
    ClockView {
        offset_us: clock.offset_us,
        drift_ppm: Some(clock.drift_ppm()),
        error_us: Some(clock.error_us),
        rtt_us: Some(clock.rtt_us as f64),
        samples: clock.samples,
        converged: Some(clock.converged),
    }
}

/// Highest channel count a player accepts in `stream/start`.
const MAX_STREAM_CHANNELS: u16 = 32;

/// Sample rates a player accepts in `stream/start`, in Hz.
const STREAM_RATES: std::ops::RangeInclusive<u32> = 1_000..=768_000;

/// Rejects formats no sound card plays, which would otherwise size buffers
/// from hostile values.
fn check_stream_format(format: &AudioFormat) -> Result<(), String> {
    if !STREAM_RATES.contains(&format.sample_rate) {
        return Err(format!(
            "sample rate {} Hz is outside 1000 to 768000 Hz",
            format.sample_rate
        ));
    }
    if !(1..=MAX_STREAM_CHANNELS).contains(&format.channels) {
        return Err(format!(
            "{} channels is outside 1 to {MAX_STREAM_CHANNELS}",
            format.channels
        ));
    }
    if crate::audio::convert::check_bit_depth(format.bit_depth).is_err() {
        return Err(format!(
            "bit depth {} is not 16, 24 or 32",
            format.bit_depth
        ));
    }
    Ok(())
}

/// Timestamps further from zero than this are treated as corrupt: about
/// 292 000 years of microseconds, far from any clock, and far enough from
/// the i64 limits that schedule arithmetic cannot overflow.
const MAX_TIMESTAMP_US: i64 = i64::MAX / 1024;

fn roles_include(roles: &Option<Vec<String>>, role: &str) -> bool {
    roles
        .as_ref()
        .is_none_or(|roles| roles.iter().any(|r| r == role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_format_check_rejects_hostile_values() {
        let good = AudioFormat::pcm(48_000, 2, 24);
        assert!(check_stream_format(&good).is_ok());
        let hostile = [
            AudioFormat::pcm(4_000_000_000, 2, 16),
            AudioFormat::pcm(0, 2, 16),
            AudioFormat::pcm(48_000, 0, 16),
            AudioFormat::pcm(48_000, 65_535, 16),
            AudioFormat::pcm(48_000, 2, 7),
            AudioFormat::pcm(48_000, 2, 64),
        ];
        for format in hostile {
            let reason = check_stream_format(&format).expect_err("hostile format accepted");
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn replaced_close_is_recognized() {
        let replaced = CloseCause::PeerClosed {
            code: 1000,
            reason: CloseCause::Replaced.to_string(),
        };
        assert!(was_replaced(&replaced));
        let other = CloseCause::PeerClosed {
            code: 1001,
            reason: "going away".into(),
        };
        assert!(!was_replaced(&other));
    }
}
