//! The server core: the single owner of sessions, the client registry and
//! the groups.

mod telemetry;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;

use super::artwork::{make_room, render, ArtChannel, ArtSource, MAX_CHANNELS};
use super::dial::{DialContext, DialRequest, DialSlots, Dialed};
use super::encrypted::{AccessChanges, AccessWatch};
use super::group::{EventSink, Group, Member, Pacing};
use super::metadata::MetadataView;
use super::negotiate::{answer_request, choose_format};
use super::queue::QueueEntry;
use super::volume::{group_muted, group_volume, set_group_volume};
use super::{Grouping, ServerConfig, ServerEvent, ServerStats};
use crate::audio::tags::{read_tags, TrackTags};
use crate::clock::now_us;
use crate::dialect::Outgoing;
use crate::dialect::{Dialect, Incoming};
use crate::protocol::{
    activate_roles, ClientCommand, ClientHello, ClientState, ConnectionReason, ControllerState,
    Message, PlayerCommand, ServerCommand, ServerHello, ServerState, StreamRequestFormat,
    PROTOCOL_VERSION,
};
use crate::protocol::{
    ArtworkChannelSupport, ArtworkFormatRequest, BinaryFrame, BinaryKind, ClientStateKind,
    RepeatMode, StreamStart, StreamStartArtwork,
};
use crate::session::{self, CloseCause, EventKind, SessionEvent, SessionHandle, SessionId, Side};
use crate::telemetry::{Telemetry, REPORT_ROLE};
pub(super) use telemetry::telemetry_event;
use telemetry::{SessionCounts, SessionTelemetry};

/// Roles this server activates. The last one lets `resonate` players
/// report their own clock and buffer state for telemetry. The visualizer
/// role is left out: the server has no visualization data to send.
const IMPLEMENTED_ROLES: [&str; 5] = [
    "player@v1",
    "controller@v1",
    "metadata@v1",
    "artwork@v1",
    REPORT_ROLE,
];

/// Controller commands this server carries out.
const CONTROLLER_COMMANDS: [&str; 13] = [
    "play",
    "pause",
    "stop",
    "next",
    "previous",
    "volume",
    "mute",
    "repeat_off",
    "repeat_one",
    "repeat_all",
    "shuffle",
    "unshuffle",
    "switch",
];

/// Controller commands that apply to a live stream.
const LIVE_COMMANDS: [&str; 5] = ["play", "stop", "volume", "mute", "switch"];

/// Interval at which groups produce and send audio.
const PUMP_INTERVAL: Duration = Duration::from_millis(10);

/// Interval at which a snapshot is published to an attached telemetry hub.
const TELEMETRY_INTERVAL: Duration = Duration::from_millis(500);

/// Interval between two reads of the approval and unpair files, which an
/// operator may change while the server runs.
const ACCESS_INTERVAL: Duration = Duration::from_secs(1);

/// Time allowed for sessions to close at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Largest `buffer_capacity` honoured, in bytes: 64 MiB is over 40 s of
/// 384 kHz 8-channel 32-bit audio, so larger claims only cost memory.
const MAX_BUFFER_CAPACITY: u64 = 64 << 20;

/// Longest `client_id` and `name` accepted, in bytes.
const MAX_ID_BYTES: usize = 256;

/// Maximum items in each list of a `client/hello` (roles, formats, commands).
/// Real clients list a handful; more only costs the server memory and time.
const MAX_HELLO_LIST_ITEMS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("accepting connections failed: {0}")]
    Accept(std::io::Error),
}

/// A session started on an accepted connection, for the core to register:
/// its handle and its dialect. The task that accepted the connection runs
/// the session, and sends this before the session reports anything.
type Accepted = (SessionHandle, Dialect);

struct SessionEntry {
    handle: SessionHandle,
    dialect: Dialect,
    client_id: Option<String>,
    /// Whether the client's hello offers its static pairing code, as a
    /// Sendspin 1.0 client in its pairing window does.
    offers_static_code: bool,
    /// For a session the server dialed: where its dial loop waits for the
    /// close cause.
    dial_loop: Option<oneshot::Sender<CloseCause>>,
    telemetry: SessionTelemetry,
}

/// A registered client: one per `client_id`, ever.
struct Client {
    session: SessionId,
    handle: SessionHandle,
    group: String,
    is_player: bool,
    is_controller: bool,
    /// Commands the player accepts (`volume`, `mute`).
    player_commands: Vec<String>,
    volume: u8,
    muted: bool,
    is_metadata: bool,
    /// Metadata last sent, the base of the next delta.
    metadata_sent: Option<MetadataView>,
    /// Artwork channels, for a client with the artwork role.
    artwork: Vec<ArtChannel>,
    /// Per artwork channel: the image last sent (`Some(None)` after a
    /// clear), or `None` before the first.
    artwork_sent: Vec<Option<Option<ArtKey>>>,
    /// The group a client left when it went to an external source, where
    /// `switch` takes it back first.
    previous_group: Option<String>,
}

/// Identity of the image on a channel: a queue entry's cover in one
/// channel configuration.
type ArtKey = (usize, ArtChannel);

/// Queue entries whose tags, covers included, the server keeps at once.
const CACHED_TAGS: usize = 16;

/// Rendered covers the server keeps at once, over all entries and channels.
const CACHED_ART: usize = 64;

pub(super) struct Core {
    config: ServerConfig,
    events: EventSink,
    tracker: TaskTracker,
    stats: ServerStats,
    session_events_tx: mpsc::Sender<SessionEvent>,
    session_events: mpsc::Receiver<SessionEvent>,
    /// Every open session, handshaking or active, with the `client_id` it
    /// said hello with.
    sessions: HashMap<SessionId, SessionEntry>,
    /// Registered clients by `client_id`.
    clients: HashMap<String, Client>,
    groups: HashMap<String, Group>,
    /// Controller state last sent to each group's controllers.
    controller_states: HashMap<String, ControllerState>,
    pacing: Pacing,
    /// Tags of queue entries by entry index, read once while cached.
    tags: HashMap<usize, Arc<TrackTags>>,
    /// Rendered covers, rendered once while cached; `None` where an entry
    /// has no cover or it cannot be rendered for that channel.
    art: HashMap<ArtKey, Option<Arc<Vec<u8>>>>,
    /// Dial loops by player address.
    dial_slots: DialSlots,
    session_counts: SessionCounts,
    /// WebSocket handshakes in progress, each holding one count until its
    /// task ends.
    pending_handshakes: Arc<AtomicUsize>,
}

impl Core {
    pub(super) fn new(
        config: ServerConfig,
        events: broadcast::Sender<ServerEvent>,
        telemetry: Option<Telemetry>,
        tracker: TaskTracker,
        stats: ServerStats,
    ) -> Core {
        let (session_events_tx, session_events) = mpsc::channel(1024);
        let pacing = Pacing {
            lead_us: config.lead.as_micros() as i64,
            start_delay_us: config.start_delay.as_micros() as i64,
            join_margin_us: config.join_margin.as_micros() as i64,
            encoder: config.encoder,
        };
        Core {
            config,
            events: EventSink { events, telemetry },
            tracker,
            stats,
            session_events_tx,
            session_events,
            sessions: HashMap::new(),
            clients: HashMap::new(),
            groups: HashMap::new(),
            controller_states: HashMap::new(),
            pacing,
            tags: HashMap::new(),
            art: HashMap::new(),
            dial_slots: DialSlots::default(),
            session_counts: SessionCounts::default(),
            pending_handshakes: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub(super) async fn run(
        mut self,
        listener: TcpListener,
        mut dial_requests: mpsc::UnboundedReceiver<DialRequest>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), super::ServerError> {
        let (accepted_tx, mut accepted) = mpsc::channel::<Accepted>(64);
        let (dialed_tx, mut dialed) = mpsc::channel::<Dialed>(64);
        let dial_context = DialContext {
            limits: self.config.limits.clone(),
            backoff: self.config.dial_backoff,
            dialed: dialed_tx,
            events: self.events.clone(),
            encrypted: match (self.config.dialect, &self.config.keys) {
                (Dialect::Sendspin, Some(keys)) => Some((keys.clone(), self.config.name.clone())),
                _ => None,
            },
        };
        let mut pump = tokio::time::interval(PUMP_INTERVAL);
        pump.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut publish = tokio::time::interval(TELEMETRY_INTERVAL);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let publishing = self.events.telemetry.is_some();
        let mut access = self.config.keys.as_ref().and_then(AccessWatch::new);
        let mut access_check = tokio::time::interval(ACCESS_INTERVAL);
        access_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        tracing::info!(addr = ?listener.local_addr().ok(), path = %self.config.path, "server listening");

        let result = loop {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                connection = listener.accept() => match connection {
                    Ok((stream, peer)) => self.start_handshake(stream, peer, accepted_tx.clone()),
                    Err(err) if is_transient(&err) => tracing::warn!(cause = %err, "accept failed; continuing"),
                    Err(err) => break Err(super::ServerError::Accept(err)),
                },
                Some((handle, dialect)) = accepted.recv() => self.register_session(handle, dialect, None),
                Some(request) = dial_requests.recv() => self.dial_slots.apply(request, &dial_context, &self.tracker),
                Some(connection) = dialed.recv() => self.open_dialed(connection),
                Some(event) = self.session_events.recv() => {
                    // A session sends its handle to `accepted` before its
                    // first event, but select! reads the two channels in no
                    // set order. So the sessions waiting there are
                    // registered first.
                    if !self.sessions.contains_key(&event.session) {
                        while let Ok((handle, dialect)) = accepted.try_recv() {
                            self.register_session(handle, dialect, None);
                        }
                    }
                    self.on_session_event(event)
                }
                _ = pump.tick() => self.pump_groups(),
                _ = publish.tick(), if publishing => self.publish_telemetry(),
                _ = access_check.tick(), if access.is_some() => {
                    if let Some(watch) = access.as_mut() {
                        self.close_changed_access(&watch.changed());
                    }
                }
            }
        };
        // Sessions already started are registered, so shutdown closes them.
        // Loops and accept tasks that still try to hand over a connection
        // find their channel closed and end.
        while let Ok((handle, dialect)) = accepted.try_recv() {
            self.register_session(handle, dialect, None);
        }
        drop(accepted);
        drop(dialed);
        self.dial_slots.stop_all();
        self.shut_down().await;
        result
    }

    /// Closes the Sendspin 1.0 sessions of `client_ids`, whose access the
    /// operator changed, so that each connects again under the new terms.
    /// A static-code pairing request closes only a session that offers the
    /// code: the client connects again in its pairing window and pairs.
    fn close_changed_access(&self, changes: &AccessChanges) {
        for entry in self.sessions.values() {
            let Some(client_id) = &entry.client_id else {
                continue;
            };
            let changed = changes.access.contains(client_id)
                || (entry.offers_static_code && changes.code_requests.contains(client_id));
            if entry.dialect == Dialect::Sendspin && changed {
                tracing::info!(client = %client_id, "the operator changed this client's access; closing its session so that it connects again under the new terms");
                entry.handle.close(CloseCause::AccessChanged);
            }
        }
    }

    /// Runs the WebSocket handshake in a tracked task, which then runs the
    /// session too, so a connection costs one task. The task sends the
    /// session's handle to the core, which alone changes the registry.
    fn start_handshake(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        accepted: mpsc::Sender<Accepted>,
    ) {
        let Some(admission) = self.admit(stream, peer) else {
            return;
        };
        let (stream, _pending) = admission;
        let mut endpoints = vec![(self.config.path.clone(), self.config.dialect)];
        if let Some(legacy_path) = &self.config.legacy_path {
            endpoints.push((legacy_path.clone(), Dialect::Resonate));
        }
        // With legacy clients accepted too, a cleartext client's first
        // message decides its dialect, whichever path it chose.
        let sniff_dialect = endpoints.len() > 1;
        let limits = self.config.limits.clone();
        let keys = self.config.keys.clone();
        let name = self.config.name.clone();
        let stats = self.stats.clone();
        let events = self.session_events_tx.clone();
        crate::transport::prepare_server_socket(&stream, &limits);
        self.tracker.spawn(async move {
            let paths: Vec<&str> = endpoints.iter().map(|(path, _)| path.as_str()).collect();
            let (mut ws, index) = match crate::transport::accept_any(stream, &peer.to_string(), &paths, &limits).await {
                Ok(accepted) => accepted,
                Err(err) => {
                    let cause = match err {
                        crate::transport::TransportError::AcceptTimeout { .. } => "handshake_timeout",
                        _ => "handshake_failed",
                    };
                    stats.rejected(cause);
                    log_rejected_connection(peer, cause, &err.to_string());
                    return;
                }
            };
            let dialect = endpoints[index].1;
            let opened = match (&keys, index) {
                // The main path takes Sendspin 1.0 clients when the server
                // has keys.
                (Some(keys), 0) => super::encrypted::open(&mut ws, peer, keys, &name, limits.handshake_timeout).await,
                (None, _) if dialect.is_encrypted() => {
                    tracing::error!(%peer, "the server has no keys for Sendspin 1.0 (ServerConfig::keys); closing the connection");
                    let _ = ws.close(None).await;
                    None
                }
                _ if sniff_dialect => open_cleartext(&mut ws, peer, dialect, limits.handshake_timeout).await,
                _ => Some(super::encrypted::Opened {
                    dialect,
                    codec: dialect.codec(),
                    first_frame: None,
                }),
            };
            let Some(opened) = opened else {
                return;
            };
            let (handle, session) = session::create(
                ws,
                opened.first_frame,
                peer,
                Side::Server,
                opened.codec,
                limits,
                events,
            );
            // The connection counts as a pending handshake until the core
            // can take its handle. A core that has stopped drops the
            // handle, and the session never starts.
            let sent = accepted.send((handle, opened.dialect)).await.is_ok();
            drop(_pending);
            if sent {
                session.await;
            }
        });
    }

    /// Applies the limits on pending handshakes and sessions to a new
    /// connection. Returns the stream with its count among the pending
    /// handshakes, or `None` when the connection was rejected.
    fn admit(&self, stream: TcpStream, peer: SocketAddr) -> Option<(TcpStream, PendingHandshake)> {
        let limits = &self.config.limits;
        let pending = self.pending_handshakes.load(Ordering::Relaxed);
        if pending >= limits.max_pending_handshakes {
            // Dropping the stream closes the connection without a byte read.
            drop(stream);
            self.stats.rejected("max_pending_handshakes");
            let detail = format!("{pending} WebSocket handshakes in progress");
            log_rejected_connection(peer, "max_pending_handshakes", &detail);
            return None;
        }
        let guard = PendingHandshake::new(&self.pending_handshakes);
        let open = self.sessions.len() + pending;
        if open >= limits.max_sessions {
            self.stats.rejected("max_sessions");
            let detail = format!("{open} sessions open or in handshake");
            log_rejected_connection(peer, "max_sessions", &detail);
            let message = format!(
                "server is full: {} sessions at most; try again later",
                limits.max_sessions
            );
            let limits = limits.clone();
            self.tracker.spawn(async move {
                crate::transport::reject(stream, StatusCode::SERVICE_UNAVAILABLE, message, &limits)
                    .await;
                drop(guard);
            });
            return None;
        }
        Some((stream, guard))
    }

    /// Opens a session on a connection a dial loop made, unless a newer
    /// loop for the same address has replaced that loop.
    fn open_dialed(&mut self, connection: Dialed) {
        if !self
            .dial_slots
            .is_current(&connection.address, connection.generation)
        {
            tracing::debug!(address = %connection.address, "dropping a connection of a replaced dial loop");
            return;
        }
        // The dial loop ran the 1.0 handshake already; other dialects open
        // here.
        let opened = match connection.opened {
            Some(opened) => opened,
            None => {
                let dialect = match self.config.dialect {
                    Dialect::Sendspin => Dialect::SendspinV1,
                    other => other,
                };
                super::encrypted::Opened {
                    dialect,
                    codec: dialect.codec(),
                    first_frame: None,
                }
            }
        };
        self.open_session(
            connection.ws,
            connection.peer,
            opened,
            Some(connection.closed),
        );
    }

    fn open_session(
        &mut self,
        ws: WebSocketStream<TcpStream>,
        peer: SocketAddr,
        opened: super::encrypted::Opened,
        dial_loop: Option<oneshot::Sender<CloseCause>>,
    ) {
        let handle = session::spawn_with_first_frame(
            ws,
            opened.first_frame,
            peer,
            Side::Server,
            opened.codec,
            self.config.limits.clone(),
            self.session_events_tx.clone(),
            &self.tracker,
        );
        self.register_session(handle, opened.dialect, dial_loop);
    }

    /// Adds a started session to the registry and reports it opened.
    fn register_session(
        &mut self,
        handle: SessionHandle,
        dialect: Dialect,
        dial_loop: Option<oneshot::Sender<CloseCause>>,
    ) {
        self.events.emit(ServerEvent::SessionOpened {
            session: handle.id,
            peer: handle.peer,
        });
        let entry = SessionEntry {
            handle,
            dialect,
            client_id: None,
            offers_static_code: false,
            dial_loop,
            telemetry: SessionTelemetry::new(),
        };
        self.sessions.insert(entry.handle.id, entry);
        self.stats.session_opened();
    }

    fn on_session_event(&mut self, event: SessionEvent) {
        let id = event.session;
        match event.kind {
            EventKind::Received { incoming, .. } => self.on_incoming(id, incoming),
            EventKind::Closed(cause) => self.on_closed(id, cause),
            EventKind::TimeAnswered {
                client_transmitted,
                server_received,
                ..
            } => {
                if let Some(entry) = self.sessions.get_mut(&id) {
                    entry
                        .telemetry
                        .clock
                        .record_exchange(client_transmitted, server_received);
                }
            }
            EventKind::RoundTrip { rtt_us } => {
                if let Some(entry) = self.sessions.get_mut(&id) {
                    entry.telemetry.clock.record_round_trip(rtt_us);
                }
            }
            EventKind::Activated | EventKind::TimeSent { .. } => {}
        }
    }

    fn on_incoming(&mut self, id: SessionId, incoming: Incoming) {
        let Incoming::Message(message) = incoming else {
            if let Some(entry) = self.sessions.get(&id) {
                tracing::debug!(session = %id, peer = %entry.handle.peer, "ignoring binary frame from a client");
            }
            return;
        };
        match message {
            Message::ClientHello(hello) => self.on_hello(id, hello),
            Message::ClientState(state) => self.on_client_state(id, state),
            Message::ClientCommand(command) => self.on_client_command(id, command),
            Message::ClientTime(_) | Message::ClientGoodbye(_) => {}
            Message::StreamRequestFormat(request) => self.on_request_format(id, request),
            other => self.reject(id, format!("{} is a server message", other.type_name())),
        }
    }

    fn reject(&self, id: SessionId, reason: String) {
        if let Some(entry) = self.sessions.get(&id) {
            entry.handle.close(CloseCause::ProtocolError(reason));
        }
    }

    /// The `client_id` registered by session `id`, unless another session
    /// has replaced it.
    fn client_of(&self, id: SessionId) -> Option<&str> {
        let client_id = self.sessions.get(&id)?.client_id.as_deref()?;
        let client = self.clients.get(client_id)?;
        (client.session == id).then_some(client_id)
    }

    fn on_hello(&mut self, id: SessionId, hello: ClientHello) {
        let Some(entry) = self.sessions.get(&id) else {
            return;
        };
        let handle = entry.handle.clone();
        if entry.client_id.is_some() {
            handle.close(CloseCause::ProtocolError(
                "second client/hello on one connection".into(),
            ));
            return;
        }
        if let Err(reason) = validate_hello(&hello) {
            handle.close(CloseCause::ProtocolError(reason));
            return;
        }
        let mut activation = activate_roles(&hello.supported_roles, &IMPLEMENTED_ROLES);
        if !activation.unsupported.is_empty() {
            tracing::info!(client_id = %hello.client_id, roles = ?activation.unsupported, "client requests roles this server does not implement");
        }
        let artwork = if activation.active.iter().any(|r| r == "artwork@v1") {
            match artwork_channels(&hello) {
                Ok(channels) => channels,
                Err(reason) => {
                    tracing::warn!(client_id = %hello.client_id, %reason, "not activating the artwork role");
                    activation.active.retain(|r| r != "artwork@v1");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let is_player = activation.active.iter().any(|r| r == "player@v1");
        let is_controller = activation.active.iter().any(|r| r == "controller@v1");
        let is_metadata = activation.active.iter().any(|r| r == "metadata@v1");
        let player = if is_player {
            self.negotiate(&hello)
        } else {
            None
        };

        // Replace-and-evict in one step: the registry never holds two
        // sessions for one client_id.
        let client_id = hello.client_id.clone();
        let group_id = self.group_for(&client_id);
        if let Some(old) = self.clients.remove(&client_id) {
            old.handle.close(CloseCause::Replaced);
            if let Some(group) = self.groups.get_mut(&old.group) {
                group.leave(&client_id, &self.events);
            }
            self.events.emit(ServerEvent::ClientReplaced {
                client_id: client_id.clone(),
                old: old.session,
                new: id,
            });
        }
        let client = Client {
            session: id,
            handle: handle.clone(),
            group: group_id.clone(),
            is_player,
            is_controller,
            player_commands: hello
                .player_support
                .as_ref()
                .map(|s| s.supported_commands.clone())
                .unwrap_or_default(),
            volume: 100,
            muted: false,
            is_metadata,
            metadata_sent: None,
            artwork_sent: vec![None; artwork.len()],
            artwork,
            previous_group: None,
        };
        let has_artwork = !client.artwork.is_empty();
        self.clients.insert(client_id.clone(), client);
        self.stats.set_clients(self.clients.len());
        let reconnects = self.session_counts.record(&client_id);
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry.client_id = Some(client_id.clone());
            entry.offers_static_code = hello
                .extra
                .get("supported_pair_methods")
                .and_then(|methods| methods.get("static_pairing_code"))
                .is_some();
            entry.telemetry.name = Some(hello.name.clone());
            entry.telemetry.roles = activation.active.clone();
            entry.telemetry.reconnects = reconnects;
        }

        let server_hello = ServerHello {
            server_id: self.config.server_id.clone(),
            name: self.config.name.clone(),
            version: PROTOCOL_VERSION,
            active_roles: activation.active.clone(),
            connection_reason: self.connection_reason(&group_id),
        };
        let _ = handle.send_message(Message::ServerHello(server_hello));
        self.events.emit(ServerEvent::ClientJoined {
            session: id,
            client_id: client_id.clone(),
            active_roles: activation.active,
        });
        tracing::info!(session = %id, peer = %handle.peer, client_id, name = %hello.name, "client joined");

        let member = Member {
            client_id: client_id.clone(),
            handle,
            player,
        };
        let now = now_us();
        let group = self
            .groups
            .get_mut(&group_id)
            .expect("group_for creates the group");
        group.join(member, true, self.pacing, now, &self.events);
        if has_artwork {
            self.start_artwork_stream(&client_id);
        }
        if is_controller {
            self.send_controller_state_to(&client_id);
        }
        self.notify_group(&group_id);
    }

    /// Returns `playback` when the client's group is playing, so the client
    /// is needed for playback now, and `discovery` otherwise.
    fn connection_reason(&self, group_id: &str) -> ConnectionReason {
        match self.groups.get(group_id) {
            Some(group) if group.is_playing() => ConnectionReason::Playback,
            _ => ConnectionReason::Discovery,
        }
    }

    fn negotiate(&self, hello: &ClientHello) -> Option<(crate::audio::AudioFormat, u64)> {
        let Some(support) = &hello.player_support else {
            tracing::warn!(client_id = %hello.client_id, "player sent no player@v1_support; it gets no audio");
            return None;
        };
        match choose_format(&support.supported_formats, self.config.forced_codec) {
            Ok(format) => Some((format, support.buffer_capacity.min(MAX_BUFFER_CAPACITY))),
            Err(reason) => {
                tracing::warn!(client_id = %hello.client_id, %reason, "player gets no audio");
                None
            }
        }
    }

    /// Switches a player's stream to the format it requests, or to the
    /// closest format the server can produce.
    fn on_request_format(&mut self, id: SessionId, request: StreamRequestFormat) {
        let Some(client_id) = self.client_of(id).map(str::to_string) else {
            self.reject(id, "stream/request-format before client/hello".into());
            return;
        };
        if let Some(artwork) = &request.artwork {
            self.change_artwork_channel(&client_id, artwork);
        }
        let Some(wanted) = request.player else {
            return;
        };
        let client = &self.clients[&client_id];
        let Some(group) = self.groups.get_mut(&client.group) else {
            return;
        };
        let Some(current) = group.player_format(&client_id) else {
            tracing::info!(
                client_id,
                "ignoring stream/request-format from a client that gets no audio"
            );
            return;
        };
        let answer = answer_request(current, &wanted);
        if answer.adjusted {
            tracing::warn!(
                client_id,
                requested = ?wanted,
                answered = %answer.format,
                "requested format cannot be produced; streaming the closest one"
            );
        }
        if answer.format == current {
            tracing::info!(client_id, format = %current, "requested format is the current one");
            return;
        }
        group.change_format(
            &client_id,
            answer.format,
            self.pacing,
            now_us(),
            &self.events,
        );
    }

    /// Returns the group a new client joins, creating it when needed: the
    /// group `--group` places it in, else the shared group or its own.
    fn group_for(&mut self, client_id: &str) -> String {
        let placed = self
            .config
            .placements
            .iter()
            .find(|placement| placement.client_ids.iter().any(|id| id == client_id));
        let (id, name) = match (placed, self.config.grouping) {
            (Some(placement), _) => (placement.name.clone(), placement.name.clone()),
            (None, Grouping::Shared) => (SHARED_GROUP.to_string(), self.config.group_name.clone()),
            (None, Grouping::Solo) => solo_group(client_id),
        };
        self.ensure_group(&id, &name);
        id
    }

    fn ensure_group(&mut self, id: &str, name: &str) {
        if !self.groups.contains_key(id) {
            let group = Group::new(id.to_string(), name.to_string(), self.config.source.queue());
            self.groups.insert(id.to_string(), group);
        }
    }

    fn on_client_state(&mut self, id: SessionId, state: ClientState) {
        let Some(client_id) = self.client_of(id).map(str::to_string) else {
            self.reject(id, "client/state before client/hello".into());
            return;
        };
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry.telemetry.take_report(&state.extra, &client_id);
        }
        let client = self
            .clients
            .get_mut(&client_id)
            .expect("client_of found it");
        if let Some(player) = state.player {
            if let Some(volume) = player.volume {
                client.volume = volume.min(100);
            }
            if let Some(muted) = player.muted {
                client.muted = muted;
            }
        }
        if let Some(kind) = state.state {
            tracing::info!(client_id, state = ?kind, "client state");
        }
        let group = client.group.clone();
        if state.state == Some(ClientStateKind::ExternalSource) {
            self.to_external_source(&client_id);
        }
        if let Some(artwork) = state.extra.get("artwork") {
            self.declare_artwork_channels(&client_id, artwork);
        }
        self.send_controller_state(&group);
    }

    /// Applies the artwork channels a Sendspin 1.0 client declares in
    /// `client/state` (the `artwork` object, repeated in every state while
    /// the role is active): when they changed, announces them with
    /// `stream/start` and sends each channel its image.
    fn declare_artwork_channels(&mut self, client_id: &str, artwork: &serde_json::Value) {
        let Some(client) = self.clients.get_mut(client_id) else {
            return;
        };
        if client.artwork.is_empty() {
            tracing::info!(
                client_id,
                "ignoring artwork channels of a client without the artwork role"
            );
            return;
        }
        let declared = artwork
            .get("channels")
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if declared.is_empty() || declared.len() > MAX_CHANNELS {
            tracing::warn!(
                client_id,
                channels = declared.len(),
                "ignoring an artwork object that does not list 1 to {MAX_CHANNELS} channels"
            );
            return;
        }
        let channels = match declared
            .iter()
            .map(ArtChannel::parse_state)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(channels) => channels,
            Err(reason) => {
                tracing::warn!(client_id, %reason, "ignoring invalid artwork channels");
                return;
            }
        };
        if channels == client.artwork {
            return;
        }
        // NOTE: a channel turned off is not cleared with an empty image
        // before the new stream/start, which Sendspin 1.0 requires.
        client.artwork_sent = vec![None; channels.len()];
        client.artwork = channels;
        let group_id = client.group.clone();
        self.start_artwork_stream(client_id);
        let Some(group) = self.groups.get(&group_id) else {
            return;
        };
        let now = now_us();
        let playing = group.now_playing(now);
        let entry = group.queue.entries()[playing.entry].clone();
        let tags = self.tags_of(playing.entry, &entry);
        self.send_artwork(client_id, playing.entry, &tags, now);
    }

    /// Moves a client whose output an external source took over from a
    /// group it shares to a stopped solo group, and remembers the group it
    /// left. A client already alone in its group stops that group.
    fn to_external_source(&mut self, client_id: &str) {
        let Some(client) = self.clients.get(client_id) else {
            return;
        };
        let group_id = client.group.clone();
        let shared = self.groups.get(&group_id).is_some_and(|g| g.len() > 1);
        if shared {
            let (solo, name) = solo_group(client_id);
            self.move_client(client_id, &solo, &name, false);
            if let Some(client) = self.clients.get_mut(client_id) {
                client.previous_group = Some(group_id);
            }
        } else if let Some(group) = self.groups.get_mut(&group_id) {
            if group.stop(now_us(), &self.events) {
                self.notify_group(&group_id);
            }
        }
    }

    /// Moves a client from its group to group `target` (created with
    /// `name` when it does not exist). It ends its streams in the old group
    /// and gets `group/update`, and a stream when `target` plays, in the
    /// new one. A stopped `target` starts only with `autoplay`.
    fn move_client(&mut self, client_id: &str, target: &str, name: &str, autoplay: bool) {
        let Some(client) = self.clients.get(client_id) else {
            return;
        };
        let from = client.group.clone();
        if from == target {
            return;
        }
        let now = now_us();
        let Some(member) = self
            .groups
            .get_mut(&from)
            .and_then(|g| g.depart(client_id, &self.events))
        else {
            return;
        };
        self.after_departure(&from);
        self.ensure_group(target, name);
        if let Some(client) = self.clients.get_mut(client_id) {
            client.group = target.to_string();
            client.previous_group = None;
        }
        let group = self
            .groups
            .get_mut(target)
            .expect("ensure_group created it");
        group.join(member, autoplay, self.pacing, now, &self.events);
        tracing::info!(
            client_id,
            from,
            to = target,
            "client moved to another group"
        );
        if self.clients.get(client_id).is_some_and(|c| c.is_controller) {
            self.send_controller_state_to(client_id);
        }
        self.notify_group(&from);
        self.notify_group(target);
    }

    /// Stops a group without players and forgets an empty solo group.
    fn after_departure(&mut self, group_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        // A group without players stops. The next player to join starts
        // the current track from its beginning.
        if !group.has_players() {
            group.stop(now_us(), &self.events);
        }
        if group.is_empty() && group_id.starts_with(SOLO_PREFIX) {
            self.groups.remove(group_id);
            self.controller_states.remove(group_id);
        }
    }

    /// Moves a client to the next group of the switch cycle. The cycle goes
    /// back to the group the client left for an external source when it
    /// can, else to playing groups of several players, then to players
    /// playing alone, then (for a player) to a solo group of its own.
    fn switch(&mut self, client_id: &str) {
        let Some(client) = self.clients.get(client_id) else {
            return;
        };
        if let Some(previous) = client.previous_group.clone() {
            if let Some(name) = self.groups.get(&previous).map(|g| g.name.clone()) {
                self.move_client(client_id, &previous, &name, false);
                return;
            }
        }
        let cycle = self.switch_cycle(client_id);
        let current = &self.clients[client_id].group;
        let next = match cycle.iter().position(|(id, _)| id == current) {
            Some(index) => cycle[(index + 1) % cycle.len()].clone(),
            None => match cycle.first() {
                Some(first) => first.clone(),
                None => {
                    tracing::info!(client_id, "switch: no other group to switch to");
                    return;
                }
            },
        };
        self.move_client(client_id, &next.0, &next.1, false);
    }

    /// Lists the groups `switch` cycles through for `client_id`, in order,
    /// by id and name.
    fn switch_cycle(&self, client_id: &str) -> Vec<(String, String)> {
        let players = |group: &Group| -> Vec<String> {
            group
                .member_ids()
                .filter(|id| self.clients.get(*id).is_some_and(|c| c.is_player))
                .map(str::to_string)
                .collect()
        };
        let mut shared: Vec<(String, String)> = Vec::new();
        let mut alone: Vec<(String, String)> = Vec::new();
        for group in self.groups.values().filter(|g| g.is_playing()) {
            let members = players(group);
            let entry = (group.id.clone(), group.name.clone());
            if members.len() >= 2 {
                shared.push(entry);
            } else if members.len() == 1 && members[0] != client_id {
                alone.push(entry);
            }
        }
        shared.sort();
        alone.sort();
        let mut cycle = shared;
        cycle.extend(alone);
        if self.clients.get(client_id).is_some_and(|c| c.is_player) {
            let current = &self.clients[client_id].group;
            let own_solo = self.groups.get(current).is_some_and(|g| g.len() == 1);
            cycle.push(if own_solo {
                (current.clone(), self.groups[current].name.clone())
            } else {
                solo_group(client_id)
            });
        }
        cycle
    }

    fn on_client_command(&mut self, id: SessionId, command: ClientCommand) {
        let Some(client_id) = self.client_of(id).map(str::to_string) else {
            self.reject(id, "client/command before client/hello".into());
            return;
        };
        let Some(controller) = command.controller else {
            return;
        };
        let client = &self.clients[&client_id];
        if !client.is_controller {
            tracing::info!(
                client_id,
                "ignoring controller command from a client without the controller role"
            );
            return;
        }
        let group_id = client.group.clone();
        let command = controller.command.as_str();
        if !self.supported_commands(&group_id).contains(&command) {
            tracing::info!(
                client_id,
                command,
                "ignoring unsupported controller command"
            );
            return;
        }
        let now = now_us();
        let (pacing, events) = (self.pacing, self.events.clone());
        let Some(group) = self.groups.get_mut(&group_id) else {
            return;
        };
        match command {
            "volume" => match controller.volume {
                Some(volume) => self.set_group_volume(&group_id, volume.clamp(0, 100) as u8),
                None => tracing::info!(client_id, "ignoring volume command without volume"),
            },
            "mute" => match controller.mute {
                Some(mute) => self.set_group_mute(&group_id, mute),
                None => tracing::info!(client_id, "ignoring mute command without mute"),
            },
            "play" => {
                group.play(pacing, now, &events);
            }
            "pause" => {
                group.pause(now, &events);
            }
            "stop" => {
                group.stop(now, &events);
            }
            "next" => group.skip(true, pacing, now, &events),
            "previous" => group.skip(false, pacing, now, &events),
            "repeat_off" => group.queue.set_repeat(RepeatMode::Off),
            "repeat_one" => group.queue.set_repeat(RepeatMode::One),
            "repeat_all" => group.queue.set_repeat(RepeatMode::All),
            "shuffle" => group.queue.set_shuffle(true),
            "unshuffle" => group.queue.set_shuffle(false),
            "switch" => {
                self.switch(&client_id);
                return;
            }
            _ => unreachable!("CONTROLLER_COMMANDS lists every command handled here"),
        }
        self.notify_group(&group_id);
    }

    fn players_of(&self, group_id: &str) -> Vec<String> {
        let mut players: Vec<String> = self
            .clients
            .iter()
            .filter(|(_, c)| c.group == group_id && c.is_player)
            .map(|(id, _)| id.clone())
            .collect();
        players.sort();
        players
    }

    /// Returns the players of the group that accept `command`, or every
    /// player when none does. Players that cannot change their volume (a
    /// legacy player, or one listing no commands) would otherwise hold the
    /// group volume away from what a controller sets.
    fn players_accepting(&self, group_id: &str, command: &str) -> Vec<String> {
        let players = self.players_of(group_id);
        let accepting: Vec<String> = players
            .iter()
            .filter(|id| {
                self.clients[*id]
                    .player_commands
                    .iter()
                    .any(|c| c == command)
            })
            .cloned()
            .collect();
        if accepting.is_empty() {
            players
        } else {
            accepting
        }
    }

    fn set_group_volume(&mut self, group_id: &str, requested: u8) {
        let players = self.players_accepting(group_id, "volume");
        let current: Vec<u8> = players.iter().map(|id| self.clients[id].volume).collect();
        let target = set_group_volume(&current, requested);
        for (client_id, volume) in players.iter().zip(target) {
            let client = self
                .clients
                .get_mut(client_id)
                .expect("players_of lists clients");
            if client.volume == volume || !client.player_commands.iter().any(|c| c == "volume") {
                continue;
            }
            client.volume = volume;
            let command = PlayerCommand {
                command: "volume".into(),
                volume: Some(i64::from(volume)),
                mute: None,
            };
            let _ = client
                .handle
                .send_message(Message::ServerCommand(ServerCommand {
                    player: Some(command),
                    ..Default::default()
                }));
        }
    }

    fn set_group_mute(&mut self, group_id: &str, mute: bool) {
        for client_id in self.players_of(group_id) {
            let client = self
                .clients
                .get_mut(&client_id)
                .expect("players_of lists clients");
            if client.muted == mute || !client.player_commands.iter().any(|c| c == "mute") {
                continue;
            }
            client.muted = mute;
            let command = PlayerCommand {
                command: "mute".into(),
                volume: None,
                mute: Some(mute),
            };
            let _ = client
                .handle
                .send_message(Message::ServerCommand(ServerCommand {
                    player: Some(command),
                    ..Default::default()
                }));
        }
    }

    /// Sends the group's controller state to its controllers when it
    /// differs from what they were last sent.
    fn send_controller_state(&mut self, group_id: &str) {
        let state = self.controller_state(group_id);
        if self.controller_states.get(group_id) == Some(&state) {
            return;
        }
        self.controller_states
            .insert(group_id.to_string(), state.clone());
        for client in self
            .clients
            .values()
            .filter(|c| c.group == group_id && c.is_controller)
        {
            let message = Message::ServerState(ServerState {
                controller: Some(state.clone()),
                ..Default::default()
            });
            let _ = client.handle.send_message(message);
        }
    }

    /// Sends the group's controller state to one new controller.
    fn send_controller_state_to(&mut self, client_id: &str) {
        let Some(client) = self.clients.get(client_id) else {
            return;
        };
        let group_id = client.group.clone();
        let state = self.controller_state(&group_id);
        let message = Message::ServerState(ServerState {
            controller: Some(state.clone()),
            ..Default::default()
        });
        let _ = self.clients[client_id].handle.send_message(message);
        self.controller_states.entry(group_id).or_insert(state);
    }

    /// Lists the commands a group's controllers may send: all of them,
    /// except that a live stream cannot pause, skip, repeat or shuffle.
    fn supported_commands(&self, group_id: &str) -> Vec<&'static str> {
        let live = self
            .groups
            .get(group_id)
            .is_some_and(|g| g.queue.entries().iter().any(QueueEntry::is_live));
        CONTROLLER_COMMANDS
            .iter()
            .copied()
            .filter(|command| !live || LIVE_COMMANDS.contains(command))
            .collect()
    }

    fn controller_state(&self, group_id: &str) -> ControllerState {
        let for_volume = self.players_accepting(group_id, "volume");
        let for_mute = self.players_accepting(group_id, "mute");
        let volumes: Vec<u8> = for_volume
            .iter()
            .map(|id| self.clients[id].volume)
            .collect();
        let muted: Vec<bool> = for_mute.iter().map(|id| self.clients[id].muted).collect();
        ControllerState {
            supported_commands: self
                .supported_commands(group_id)
                .iter()
                .map(|c| c.to_string())
                .collect(),
            volume: group_volume(&volumes),
            muted: group_muted(&muted),
        }
    }

    fn on_closed(&mut self, id: SessionId, cause: CloseCause) {
        let registered = self.client_of(id).is_some();
        let (client_id, dial_loop) = match self.sessions.remove(&id) {
            Some(entry) => (entry.client_id, entry.dial_loop),
            None => (None, None),
        };
        if let Some(dial_loop) = dial_loop {
            let _ = dial_loop.send(cause.clone());
        }
        // Only the registered session removes its client; a replaced session
        // was unregistered in the step that replaced it.
        if let (true, Some(client_id)) = (registered, &client_id) {
            if let Some(client) = self.clients.remove(client_id) {
                if let Some(group) = self.groups.get_mut(&client.group) {
                    group.leave(client_id, &self.events);
                }
                self.after_departure(&client.group);
                if self.groups.contains_key(&client.group) {
                    self.notify_group(&client.group);
                }
            }
        }
        self.stats.set_clients(self.clients.len());
        self.stats.session_closed(cause.label());
        if let Some(rejection) = cause.rejection() {
            self.stats.rejected(rejection);
        }
        self.events.emit(ServerEvent::SessionClosed {
            session: id,
            client_id,
            cause,
        });
    }

    fn publish_telemetry(&self) {
        if let Some(telemetry) = &self.events.telemetry {
            telemetry.publish(self.telemetry_snapshot());
        }
    }

    fn pump_groups(&mut self) {
        let now = now_us();
        let mut changed = Vec::new();
        for group in self.groups.values_mut() {
            group.pump(self.pacing, now, &self.events);
            if group.take_track_change(now) {
                changed.push(group.id.clone());
            }
        }
        for group_id in changed {
            self.notify_group(&group_id);
        }
    }

    /// Brings the group's controllers, metadata clients and artwork
    /// clients up to date: each gets a message only when what it shows
    /// changed.
    fn notify_group(&mut self, group_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        // The change is reported here, so the pump does not report it again.
        let now = now_us();
        group.take_track_change(now);
        self.send_controller_state(group_id);
        let group = &self.groups[group_id];
        // Only metadata and artwork clients get anything here, so the ids
        // of the others (controllers, plain players) are not copied.
        let members: Vec<String> = group
            .member_ids()
            .filter(|id| {
                self.clients
                    .get(*id)
                    .is_some_and(|c| c.is_metadata || !c.artwork.is_empty())
            })
            .map(str::to_string)
            .collect();
        if members.is_empty() {
            return;
        }
        let playing = group.now_playing(now);
        let entry = group.queue.entries()[playing.entry].clone();
        let (repeat, shuffle) = (group.queue.repeat(), group.queue.is_shuffled());
        let tags = self.tags_of(playing.entry, &entry);
        let view = MetadataView::of(&entry, &tags, &playing, repeat, shuffle);
        for client_id in &members {
            let Some(client) = self.clients.get_mut(client_id) else {
                continue;
            };
            if client.is_metadata {
                if let Some(delta) = view.delta_from(client.metadata_sent.as_ref()) {
                    let message = Message::ServerState(ServerState {
                        metadata: Some(delta),
                        ..Default::default()
                    });
                    let _ = client.handle.send_message(message);
                    client.metadata_sent = Some(view.clone());
                }
            }
            if !client.artwork.is_empty() {
                self.send_artwork(client_id, playing.entry, &tags, now);
            }
        }
    }

    /// Returns the tags of queue entry `index`, read from its file when
    /// they are not cached.
    fn tags_of(&mut self, index: usize, entry: &QueueEntry) -> Arc<TrackTags> {
        make_room(&mut self.tags, &index, CACHED_TAGS);
        self.tags
            .entry(index)
            .or_insert_with(|| match entry {
                QueueEntry::File(path) => Arc::new(read_tags(path)),
                QueueEntry::Tone(_) | QueueEntry::Pipe(_) => Arc::new(TrackTags::default()),
            })
            .clone()
    }

    /// Changes one artwork channel as `stream/request-format` requests, then
    /// announces the channels again and sends the channel its image.
    fn change_artwork_channel(&mut self, client_id: &str, request: &ArtworkFormatRequest) {
        let Some(client) = self.clients.get_mut(client_id) else {
            return;
        };
        let index = usize::from(request.channel);
        let Some(current) = client.artwork.get(index).copied() else {
            tracing::info!(
                client_id,
                channel = request.channel,
                "ignoring an artwork request for a channel the client did not declare"
            );
            return;
        };
        let support = ArtworkChannelSupport {
            source: request
                .source
                .clone()
                .unwrap_or_else(|| current.announce().source),
            format: request
                .format
                .clone()
                .unwrap_or_else(|| current.format.as_str().to_string()),
            media_width: request.media_width.unwrap_or(current.max_width),
            media_height: request.media_height.unwrap_or(current.max_height),
        };
        match ArtChannel::parse(&support) {
            Ok(channel) => {
                client.artwork[index] = channel;
                client.artwork_sent[index] = None;
            }
            Err(reason) => {
                tracing::warn!(client_id, channel = request.channel, %reason, "ignoring an invalid artwork request");
                return;
            }
        }
        let group_id = client.group.clone();
        self.start_artwork_stream(client_id);
        let Some(group) = self.groups.get(&group_id) else {
            return;
        };
        let now = now_us();
        let playing = group.now_playing(now);
        let entry = group.queue.entries()[playing.entry].clone();
        let tags = self.tags_of(playing.entry, &entry);
        self.send_artwork(client_id, playing.entry, &tags, now);
    }

    /// Announces an artwork client's channels with `stream/start`.
    fn start_artwork_stream(&mut self, client_id: &str) {
        let Some(client) = self.clients.get(client_id) else {
            return;
        };
        let start = StreamStart {
            artwork: Some(StreamStartArtwork {
                channels: client.artwork.iter().map(ArtChannel::announce).collect(),
            }),
            ..Default::default()
        };
        let _ = client.handle.send_message(Message::StreamStart(start));
    }

    /// Sends each artwork channel of `client_id` the cover of entry
    /// `entry`, or an empty image that clears it, where the channel shows
    /// something else.
    fn send_artwork(&mut self, client_id: &str, entry: usize, tags: &TrackTags, now: i64) {
        let channels = self.clients[client_id].artwork.clone();
        for (index, channel) in channels.iter().enumerate() {
            let image = match channel.source {
                ArtSource::Album => self.rendered_art(entry, *channel, tags),
                ArtSource::Artist | ArtSource::None => None,
            };
            let displayed = image.as_ref().map(|_| (entry, *channel));
            let client = self
                .clients
                .get_mut(client_id)
                .expect("checked by the caller");
            if channel.source == ArtSource::None || client.artwork_sent[index] == Some(displayed) {
                continue;
            }
            client.artwork_sent[index] = Some(displayed);
            let payload = image.map(|bytes| bytes.to_vec()).unwrap_or_default();
            let frame = BinaryFrame::new(BinaryKind::Artwork(index as u8), now, payload);
            let _ = client.handle.send(Outgoing::Binary(frame));
        }
    }

    /// Returns the cover of entry `entry` rendered for `channel`, and
    /// renders each pair only once while it stays cached.
    fn rendered_art(
        &mut self,
        entry: usize,
        channel: ArtChannel,
        tags: &TrackTags,
    ) -> Option<Arc<Vec<u8>>> {
        make_room(&mut self.art, &(entry, channel), CACHED_ART);
        self.art
            .entry((entry, channel))
            .or_insert_with(|| {
                let cover = tags.cover.as_ref()?;
                match render(cover, &channel) {
                    Ok(bytes) => Some(Arc::new(bytes)),
                    Err(reason) => {
                        tracing::warn!(entry, %reason, "cannot send the cover");
                        None
                    }
                }
            })
            .clone()
    }

    async fn shut_down(mut self) {
        for entry in self.sessions.values() {
            entry.handle.close(CloseCause::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !self.sessions.is_empty() {
            match tokio::time::timeout_at(deadline, self.session_events.recv()).await {
                Ok(Some(event)) => self.on_session_event(event),
                Ok(None) | Err(_) => break,
            }
        }
        self.tracker.close();
        drop(self.session_events);
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.sessions.len(),
                "sessions still open at shutdown"
            );
        }
        tracing::info!("server stopped");
    }
}

/// Id of the shared group.
const SHARED_GROUP: &str = "main";

/// Start of the id of a client's own group.
const SOLO_PREFIX: &str = "solo-";

/// Id and name of `client_id`'s own group.
fn solo_group(client_id: &str) -> (String, String) {
    (format!("{SOLO_PREFIX}{client_id}"), client_id.to_string())
}

/// Validates and returns the artwork channels of a hello.
fn artwork_channels(hello: &ClientHello) -> Result<Vec<ArtChannel>, String> {
    let support = hello
        .artwork_support
        .as_ref()
        .ok_or("artwork@v1_support is missing")?;
    if support.channels.is_empty() || support.channels.len() > MAX_CHANNELS {
        return Err(format!(
            "artwork@v1_support lists {} channels; 1 to {MAX_CHANNELS} are allowed",
            support.channels.len()
        ));
    }
    support.channels.iter().map(ArtChannel::parse).collect()
}

fn validate_hello(hello: &ClientHello) -> Result<(), String> {
    if hello.version != PROTOCOL_VERSION {
        return Err(format!(
            "client/hello version {} is not supported; this server speaks version {PROTOCOL_VERSION}",
            hello.version
        ));
    }
    if hello.client_id.is_empty() || hello.client_id.len() > MAX_ID_BYTES {
        return Err(format!(
            "client_id must be 1 to {MAX_ID_BYTES} bytes, got {}",
            hello.client_id.len()
        ));
    }
    if hello.name.len() > MAX_ID_BYTES {
        return Err(format!(
            "name must be at most {MAX_ID_BYTES} bytes, got {}",
            hello.name.len()
        ));
    }
    check_list(
        "supported_roles",
        &hello.supported_roles,
        MAX_HELLO_LIST_ITEMS,
    )?;
    if let Some(support) = &hello.player_support {
        if support.supported_formats.len() > MAX_HELLO_LIST_ITEMS {
            return Err(format!(
                "player@v1_support.supported_formats must list at most {MAX_HELLO_LIST_ITEMS} formats, got {}",
                support.supported_formats.len()
            ));
        }
        check_list(
            "player@v1_support.supported_commands",
            &support.supported_commands,
            MAX_HELLO_LIST_ITEMS,
        )?;
    }
    Ok(())
}

/// Checks the item count and item lengths of a list of names in a hello.
fn check_list(field: &str, items: &[String], max_items: usize) -> Result<(), String> {
    if items.len() > max_items {
        return Err(format!(
            "{field} must list at most {max_items} items, got {}",
            items.len()
        ));
    }
    if let Some(long) = items.iter().find(|item| item.len() > MAX_ID_BYTES) {
        return Err(format!(
            "{field} items must be at most {MAX_ID_BYTES} bytes, got one of {}",
            long.len()
        ));
    }
    Ok(())
}

/// One count among the pending WebSocket handshakes, given back on drop.
struct PendingHandshake(Arc<AtomicUsize>);

impl PendingHandshake {
    fn new(count: &Arc<AtomicUsize>) -> PendingHandshake {
        count.fetch_add(1, Ordering::Relaxed);
        PendingHandshake(count.clone())
    }
}

impl Drop for PendingHandshake {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Logs a connection rejected before it became a session, within the
/// process-wide budget of rejection log lines.
fn log_rejected_connection(peer: SocketAddr, rejection: &'static str, detail: &str) {
    match crate::session::RejectLog::permit() {
        Some(0) => tracing::warn!(%peer, rejection, cause = detail, "connection rejected"),
        Some(suppressed) => tracing::warn!(
            %peer,
            rejection,
            cause = detail,
            suppressed,
            "connection rejected; suppressed log lines of earlier rejections"
        ),
        None => tracing::debug!(%peer, rejection, cause = detail, "connection rejected"),
    }
}

/// Accept errors that affect one connection, not the listener.
fn is_transient(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || err.raw_os_error() == Some(24) // EMFILE: too many open files, may clear
}

/// Reads a cleartext client's first message and opens the connection in
/// the dialect that message is written in: a `client/hello` with versioned
/// roles is Sendspin v1, one with bare roles legacy Resonate. Anything else
/// keeps `path_dialect`, the dialect of the path the client chose. Returns
/// `None` after closing a connection that sent nothing in time.
async fn open_cleartext(
    ws: &mut WebSocketStream<TcpStream>,
    peer: SocketAddr,
    path_dialect: Dialect,
    timeout: Duration,
) -> Option<super::encrypted::Opened> {
    let first = match tokio::time::timeout(timeout, super::encrypted::next_data_frame(ws)).await {
        Ok(Some(frame)) => frame,
        Ok(None) => {
            // A client that closed before its hello still gets the reply
            // to its close frame, which tungstenite queued when it read it.
            let _ = futures_util::SinkExt::flush(ws).await;
            return None;
        }
        Err(_) => {
            tracing::info!(%peer, ?timeout, "no first message; closing");
            let _ = ws.close(None).await;
            return None;
        }
    };
    let spoken = match &first {
        WsMessage::Text(text) => crate::dialect::dialect_of_hello(text.as_str()),
        _ => None,
    };
    let dialect = spoken.unwrap_or(path_dialect);
    if dialect != path_dialect {
        tracing::info!(%peer, path = %path_dialect, spoken = %dialect, "client speaks another dialect than its path's; following its hello");
    }
    Some(super::encrypted::Opened {
        dialect,
        codec: dialect.codec(),
        first_frame: Some(first),
    })
}
