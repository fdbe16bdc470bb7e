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
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;

use super::dial::{DialContext, DialRequest, DialSlots, Dialed};
use super::group::{EventSink, Group, Member, Pacing};
use super::negotiate::{answer_request, choose_format};
use super::volume::{group_muted, group_volume, set_group_volume};
use super::{Grouping, ServerConfig, ServerEvent, ServerStats};
use crate::clock::now_us;
use crate::dialect::{Dialect, Incoming};
use crate::protocol::{
    activate_roles, ClientCommand, ClientHello, ClientState, ConnectionReason, ControllerState, Message, PlayerCommand,
    ServerCommand, ServerHello, ServerState, StreamRequestFormat, PROTOCOL_VERSION,
};
use crate::session::{self, CloseCause, EventKind, SessionEvent, SessionHandle, SessionId, Side};
use crate::telemetry::{Telemetry, REPORT_ROLE};
use telemetry::{SessionCounts, SessionTelemetry};
pub(super) use telemetry::telemetry_event;

/// Roles this server activates. The last one lets `resonate` players
/// report their own clock and buffer state for telemetry.
const IMPLEMENTED_ROLES: [&str; 3] = ["player@v1", "controller@v1", REPORT_ROLE];

/// Controller commands this server carries out.
const CONTROLLER_COMMANDS: [&str; 4] = ["play", "stop", "volume", "mute"];

/// Interval at which groups produce and send audio.
const PUMP_INTERVAL: Duration = Duration::from_millis(10);

/// Interval at which a snapshot is published to an attached telemetry hub.
const TELEMETRY_INTERVAL: Duration = Duration::from_millis(500);

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

/// An accepted WebSocket with its peer and the dialect of the path it used.
type Accepted = (WebSocketStream<TcpStream>, SocketAddr, Dialect);

struct SessionEntry {
    handle: SessionHandle,
    dialect: Dialect,
    client_id: Option<String>,
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
}

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
        };
        let mut pump = tokio::time::interval(PUMP_INTERVAL);
        pump.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut publish = tokio::time::interval(TELEMETRY_INTERVAL);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let publishing = self.events.telemetry.is_some();
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
                Some((ws, peer, dialect)) = accepted.recv() => self.open_session(ws, peer, dialect, None),
                Some(request) = dial_requests.recv() => self.dial_slots.apply(request, &dial_context, &self.tracker),
                Some(connection) = dialed.recv() => self.open_dialed(connection),
                Some(event) = self.session_events.recv() => self.on_session_event(event),
                _ = pump.tick() => self.pump_groups(),
                _ = publish.tick(), if publishing => self.publish_telemetry(),
            }
        };
        // Loops that still try to hand over a connection find the channel
        // closed and end.
        drop(dialed);
        self.dial_slots.stop_all();
        self.shut_down().await;
        result
    }

    /// Runs the WebSocket handshake in a tracked task; the open stream comes
    /// back to the core, which alone creates sessions.
    fn start_handshake(&self, stream: TcpStream, peer: SocketAddr, accepted: mpsc::Sender<Accepted>) {
        let Some(admission) = self.admit(stream, peer) else {
            return;
        };
        let (stream, _pending) = admission;
        let mut endpoints = vec![(self.config.path.clone(), self.config.dialect)];
        if let Some(legacy_path) = &self.config.legacy_path {
            endpoints.push((legacy_path.clone(), Dialect::Resonate));
        }
        let limits = self.config.limits.clone();
        let stats = self.stats.clone();
        crate::transport::prepare_server_socket(&stream, &limits);
        self.tracker.spawn(async move {
            let paths: Vec<&str> = endpoints.iter().map(|(path, _)| path.as_str()).collect();
            match crate::transport::accept_any(stream, &peer.to_string(), &paths, &limits).await {
                Ok((ws, index)) => {
                    let _ = accepted.send((ws, peer, endpoints[index].1)).await;
                }
                Err(err) => {
                    let cause = match err {
                        crate::transport::TransportError::AcceptTimeout { .. } => "handshake_timeout",
                        _ => "handshake_failed",
                    };
                    stats.rejected(cause);
                    log_rejected_connection(peer, cause, &err.to_string());
                }
            }
            drop(_pending);
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
            let message = format!("server is full: {} sessions at most; try again later", limits.max_sessions);
            let limits = limits.clone();
            self.tracker.spawn(async move {
                crate::transport::reject(stream, StatusCode::SERVICE_UNAVAILABLE, message, &limits).await;
                drop(guard);
            });
            return None;
        }
        Some((stream, guard))
    }

    /// Opens a session on a connection a dial loop made, unless a newer
    /// loop for the same address has replaced that loop.
    fn open_dialed(&mut self, connection: Dialed) {
        if !self.dial_slots.is_current(&connection.address, connection.generation) {
            tracing::debug!(address = %connection.address, "dropping a connection of a replaced dial loop");
            return;
        }
        let dialect = self.config.dialect;
        self.open_session(connection.ws, connection.peer, dialect, Some(connection.closed));
    }

    fn open_session(
        &mut self,
        ws: WebSocketStream<TcpStream>,
        peer: SocketAddr,
        dialect: Dialect,
        dial_loop: Option<oneshot::Sender<CloseCause>>,
    ) {
        let handle = session::spawn(
            ws,
            peer,
            Side::Server,
            dialect.codec(),
            self.config.limits.clone(),
            self.session_events_tx.clone(),
            &self.tracker,
        );
        self.events.emit(ServerEvent::SessionOpened { session: handle.id, peer });
        let entry = SessionEntry {
            handle,
            dialect,
            client_id: None,
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
                    entry.telemetry.clock.record_exchange(client_transmitted, server_received);
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
            handle.close(CloseCause::ProtocolError("second client/hello on one connection".into()));
            return;
        }
        if let Err(reason) = validate_hello(&hello) {
            handle.close(CloseCause::ProtocolError(reason));
            return;
        }
        let activation = activate_roles(&hello.supported_roles, &IMPLEMENTED_ROLES);
        if !activation.unsupported.is_empty() {
            tracing::info!(client_id = %hello.client_id, roles = ?activation.unsupported, "client requests roles this server does not implement");
        }
        let is_player = activation.active.iter().any(|r| r == "player@v1");
        let is_controller = activation.active.iter().any(|r| r == "controller@v1");
        let player = if is_player { self.negotiate(&hello) } else { None };

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
            player_commands: hello.player_support.as_ref().map(|s| s.supported_commands.clone()).unwrap_or_default(),
            volume: 100,
            muted: false,
        };
        self.clients.insert(client_id.clone(), client);
        self.stats.set_clients(self.clients.len());
        let reconnects = self.session_counts.record(&client_id);
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry.client_id = Some(client_id.clone());
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
        let group = self.groups.get_mut(&group_id).expect("group_for creates the group");
        group.join(member, &self.config.source, self.pacing, now, &self.events);
        if is_controller {
            self.send_controller_state_to(&client_id);
        }
        if is_player {
            self.send_controller_state(&group_id);
        }
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
        let Some(wanted) = request.player else {
            tracing::debug!(client_id, "ignoring stream/request-format without a player part");
            return;
        };
        let client = &self.clients[&client_id];
        let Some(group) = self.groups.get_mut(&client.group) else {
            return;
        };
        let Some(current) = group.player_format(&client_id) else {
            tracing::info!(client_id, "ignoring stream/request-format from a client that gets no audio");
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
        group.change_format(&client_id, answer.format, self.pacing, now_us(), &self.events);
    }

    /// Returns the group a new client joins, creating it when needed.
    fn group_for(&mut self, client_id: &str) -> String {
        let (id, name) = match self.config.grouping {
            Grouping::Shared => ("main".to_string(), self.config.group_name.clone()),
            Grouping::Solo => (format!("solo-{client_id}"), client_id.to_string()),
        };
        self.groups
            .entry(id.clone())
            .or_insert_with(|| Group::new(id.clone(), name));
        id
    }

    fn on_client_state(&mut self, id: SessionId, state: ClientState) {
        let Some(client_id) = self.client_of(id).map(str::to_string) else {
            self.reject(id, "client/state before client/hello".into());
            return;
        };
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry.telemetry.take_report(&state.extra, &client_id);
        }
        let client = self.clients.get_mut(&client_id).expect("client_of found it");
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
        self.send_controller_state(&group);
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
            tracing::info!(client_id, "ignoring controller command from a client without the controller role");
            return;
        }
        let group_id = client.group.clone();
        match controller.command.as_str() {
            "volume" => match controller.volume {
                Some(volume) => self.set_group_volume(&group_id, volume.clamp(0, 100) as u8),
                None => tracing::info!(client_id, "ignoring volume command without volume"),
            },
            "mute" => match controller.mute {
                Some(mute) => self.set_group_mute(&group_id, mute),
                None => tracing::info!(client_id, "ignoring mute command without mute"),
            },
            "play" => self.play(&group_id),
            "stop" => {
                if let Some(group) = self.groups.get_mut(&group_id) {
                    group.stop(&self.events);
                }
            }
            other => tracing::info!(client_id, command = other, "ignoring unsupported controller command"),
        }
        self.send_controller_state(&group_id);
    }

    /// Starts a stopped group's program with every player in it.
    fn play(&mut self, group_id: &str) {
        if let Some(group) = self.groups.get_mut(group_id) {
            group.play(&self.config.source, self.pacing, now_us(), &self.events);
        }
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
            .filter(|id| self.clients[*id].player_commands.iter().any(|c| c == command))
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
            let client = self.clients.get_mut(client_id).expect("players_of lists clients");
            if client.volume == volume || !client.player_commands.iter().any(|c| c == "volume") {
                continue;
            }
            client.volume = volume;
            let command = PlayerCommand {
                command: "volume".into(),
                volume: Some(i64::from(volume)),
                mute: None,
            };
            let _ = client.handle.send_message(Message::ServerCommand(ServerCommand {
                player: Some(command),
                ..Default::default()
            }));
        }
    }

    fn set_group_mute(&mut self, group_id: &str, mute: bool) {
        for client_id in self.players_of(group_id) {
            let client = self.clients.get_mut(&client_id).expect("players_of lists clients");
            if client.muted == mute || !client.player_commands.iter().any(|c| c == "mute") {
                continue;
            }
            client.muted = mute;
            let command = PlayerCommand {
                command: "mute".into(),
                volume: None,
                mute: Some(mute),
            };
            let _ = client.handle.send_message(Message::ServerCommand(ServerCommand {
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
        self.controller_states.insert(group_id.to_string(), state.clone());
        for client in self.clients.values().filter(|c| c.group == group_id && c.is_controller) {
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

    fn controller_state(&self, group_id: &str) -> ControllerState {
        let for_volume = self.players_accepting(group_id, "volume");
        let for_mute = self.players_accepting(group_id, "mute");
        let volumes: Vec<u8> = for_volume.iter().map(|id| self.clients[id].volume).collect();
        let muted: Vec<bool> = for_mute.iter().map(|id| self.clients[id].muted).collect();
        ControllerState {
            supported_commands: CONTROLLER_COMMANDS.iter().map(|c| c.to_string()).collect(),
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
                    // A group nobody listens to stops; the next player to
                    // join starts the source from the beginning.
                    if !group.has_players() {
                        group.stop(&self.events);
                    }
                    if group.is_empty() && self.config.grouping == Grouping::Solo {
                        self.groups.remove(&client.group);
                        self.controller_states.remove(&client.group);
                    }
                }
                if client.is_player {
                    self.send_controller_state(&client.group);
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
        for group in self.groups.values_mut() {
            group.pump(self.pacing, now, &self.events);
        }
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
        if tokio::time::timeout_at(deadline, self.tracker.wait()).await.is_err() {
            tracing::warn!(open = self.sessions.len(), "sessions still open at shutdown");
        }
        tracing::info!("server stopped");
    }
}

fn validate_hello(hello: &ClientHello) -> Result<(), String> {
    if hello.version != PROTOCOL_VERSION {
        return Err(format!(
            "client/hello version {} is not supported; this server speaks version {PROTOCOL_VERSION}",
            hello.version
        ));
    }
    if hello.client_id.is_empty() || hello.client_id.len() > MAX_ID_BYTES {
        return Err(format!("client_id must be 1 to {MAX_ID_BYTES} bytes, got {}", hello.client_id.len()));
    }
    if hello.name.len() > MAX_ID_BYTES {
        return Err(format!("name must be at most {MAX_ID_BYTES} bytes, got {}", hello.name.len()));
    }
    check_list("supported_roles", &hello.supported_roles, MAX_HELLO_LIST_ITEMS)?;
    if let Some(support) = &hello.player_support {
        if support.supported_formats.len() > MAX_HELLO_LIST_ITEMS {
            return Err(format!(
                "player@v1_support.supported_formats must list at most {MAX_HELLO_LIST_ITEMS} formats, got {}",
                support.supported_formats.len()
            ));
        }
        check_list("player@v1_support.supported_commands", &support.supported_commands, MAX_HELLO_LIST_ITEMS)?;
    }
    Ok(())
}

/// Checks the item count and item lengths of a list of names in a hello.
fn check_list(field: &str, items: &[String], max_items: usize) -> Result<(), String> {
    if items.len() > max_items {
        return Err(format!("{field} must list at most {max_items} items, got {}", items.len()));
    }
    if let Some(long) = items.iter().find(|item| item.len() > MAX_ID_BYTES) {
        return Err(format!("{field} items must be at most {MAX_ID_BYTES} bytes, got one of {}", long.len()));
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
    matches!(err.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
        || err.raw_os_error() == Some(24) // EMFILE: too many open files, may clear
}
