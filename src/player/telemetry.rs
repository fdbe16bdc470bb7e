//! Telemetry of a player: its one connection to a server, with its own
//! clock filter state and buffer, as a snapshot for `monitor`.

use std::sync::{Arc, Mutex};

use super::client::{clock_view, PlayerEvent};
use super::scheduler::Scheduler;
use crate::dialect::Dialect;
use crate::sync::SharedClock;
use crate::telemetry::{unix_ms_now, Event, EventKind, Phase, SessionRow, Snapshot, Telemetry};

/// Feeds a telemetry hub from a player's events, scheduler and clock.
#[derive(Clone)]
pub struct PlayerTelemetry {
    hub: Telemetry,
    scheduler: Arc<Scheduler>,
    clock: SharedClock,
    connection: Arc<Mutex<Connection>>,
}

/// State of the player's current connection, from its events.
#[derive(Debug, Default)]
struct Connection {
    phase: Phase,
    dialect: &'static str,
    server_id: Option<String>,
    server_name: Option<String>,
    roles: Vec<String>,
    format: Option<String>,
    connected_unix_ms: u64,
    /// Connections made before the current one.
    reconnects: u64,
    connections: u64,
}

impl PlayerTelemetry {
    pub fn new(
        hub: Telemetry,
        dialect: Dialect,
        scheduler: Arc<Scheduler>,
        clock: SharedClock,
    ) -> PlayerTelemetry {
        let connection = Connection {
            phase: Phase::Connecting,
            dialect: dialect.as_str(),
            ..Default::default()
        };
        PlayerTelemetry {
            hub,
            scheduler,
            clock,
            connection: Arc::new(Mutex::new(connection)),
        }
    }

    /// Updates the connection state from a player event and logs it.
    pub fn on_event(&self, event: &PlayerEvent) {
        let mut connection = self
            .connection
            .lock()
            .expect("player telemetry lock poisoned");
        let line = match event {
            PlayerEvent::Connected {
                server_id,
                server_name,
                active_roles,
                ..
            } => {
                connection.phase = Phase::Active;
                connection.reconnects = connection.connections;
                connection.connections += 1;
                connection.server_id = Some(server_id.clone());
                connection.server_name = Some(server_name.clone());
                connection.roles = active_roles.clone();
                connection.connected_unix_ms = unix_ms_now();
                Event::now(
                    EventKind::Connected,
                    format!("connected to {server_name:?}"),
                )
                .with_client(Some(server_id.as_str()))
            }
            PlayerEvent::ServerRejected { server_id, .. } => Event::now(
                EventKind::Info,
                format!("kept the current server over {server_id}"),
            ),
            PlayerEvent::ServerSwitched { from, to } => Event::now(
                EventKind::Replaced,
                format!("switched from server {from} to {to}"),
            ),
            PlayerEvent::Reactivated { active_roles, .. } => {
                connection.roles = active_roles.clone();
                Event::now(
                    EventKind::Info,
                    format!("the server changed this client's roles to {active_roles:?}"),
                )
                .with_client(connection.server_id.as_deref())
            }
            PlayerEvent::StreamStarted { format } => {
                connection.format = Some(format.to_string());
                Event::now(EventKind::Stream, format!("stream started: {format}"))
            }
            PlayerEvent::StreamEnded => {
                connection.format = None;
                Event::now(EventKind::Stream, "stream ended")
            }
            PlayerEvent::Disconnected { cause } => {
                connection.phase = Phase::Connecting;
                connection.format = None;
                Event::now(EventKind::Disconnected, cause.to_string())
                    .with_client(connection.server_id.as_deref())
            }
            PlayerEvent::FellBack { dialect } => {
                connection.dialect = dialect.as_str();
                Event::now(
                    EventKind::Info,
                    format!("the server closed the Sendspin 1.0 handshake before server/init; dialing again in {dialect}"),
                )
            }
            // The feed shows the player's connection, not what its group plays.
            PlayerEvent::ServerState(_) | PlayerEvent::GroupUpdate(_) => return,
            PlayerEvent::Retrying {
                attempt,
                delay,
                error,
            } => Event::now(
                EventKind::Info,
                format!(
                    "connection attempt {attempt} failed ({error}); retrying in {} ms",
                    delay.as_millis()
                ),
            ),
        };
        drop(connection);
        self.hub.emit(line);
    }

    /// Publishes a snapshot of the connection as it is now.
    pub fn publish(&self) {
        let status = self.scheduler.status();
        let clock = self.clock.snapshot();
        let connection = self
            .connection
            .lock()
            .expect("player telemetry lock poisoned");
        let source = self.hub.source();
        let row = SessionRow {
            session: "server".into(),
            client_id: connection.server_id.clone(),
            name: connection.server_name.clone(),
            peer: source.target.clone(),
            dialect: connection.dialect.to_string(),
            roles: connection.roles.clone(),
            phase: connection.phase,
            group: None,
            format: connection.format.clone(),
            server_clock: None,
            client_clock: clock.is_valid().then(|| clock_view(&clock)),
            buffer_ms: status.format.map(|_| status.buffered_us as f64 / 1000.0),
            late_chunks: status.totals.late_chunks_dropped,
            dropped_chunks: status.totals.overflow_chunks_dropped + status.totals.corrupt_chunks,
            reconnects: connection.reconnects,
            opened_unix_ms: connection.connected_unix_ms,
        };
        let counters = [
            ("frames_played", status.totals.frames_played),
            ("silence_frames", status.totals.silence_frames),
            ("underruns", status.totals.underruns),
            ("reanchors", status.totals.reanchors),
            ("connections", connection.connections),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
        drop(connection);
        self.hub.publish(Snapshot {
            source: Default::default(),
            taken_unix_ms: unix_ms_now(),
            sessions: vec![row],
            groups: Vec::new(),
            counters,
            gauges: Default::default(),
            notes: vec![
                "a player sees only its own connection; run the monitor on the server for the whole group".into(),
                crate::telemetry::OFFSET_NOTE.into(),
            ],
        });
    }
}
