//! Telemetry of the server core: a snapshot of its sessions
//! and groups, built by the core itself from the state it owns, and one
//! feed event per server event worth a log line.

use std::collections::{HashMap, VecDeque};

use super::{Core, SessionEntry};
use crate::clock::now_us;
use crate::server::metadata::MetadataView;
use crate::server::ServerEvent;
use crate::session::{CloseCause, SessionState};
use crate::telemetry::{
    unix_ms_now, ClockView, Event, EventKind, GroupRow, Phase, PlayerReport, SessionRow, Snapshot,
    TrackInfo, REPORT_KEY,
};

/// `client/time` exchanges the server's clock estimate looks back over.
const EXCHANGE_WINDOW: usize = 32;

/// WebSocket round trips the estimate looks back over.
const RTT_WINDOW: usize = 8;

/// Most `client_id`s whose earlier sessions are counted; the oldest is
/// forgotten first, so clients with fresh ids cannot grow the map.
const MAX_TRACKED_CLIENTS: usize = 4096;

/// The server's own estimate of a client's clock.
///
/// A `client/time` exchange gives `server_received - client_transmitted`,
/// which is the offset plus the uplink delay. The smallest value in a
/// window has the least queueing in it; half the smallest WebSocket ping
/// round trip is used as the uplink delay. The result is an estimate
/// that is only as good as that symmetry assumption, which is why the
/// monitor labels it as the server's.
#[derive(Debug, Default)]
pub(super) struct ServerClockEstimate {
    uplink: VecDeque<i64>,
    rtts: VecDeque<i64>,
    exchanges: u64,
}

impl ServerClockEstimate {
    pub fn record_exchange(&mut self, client_transmitted: i64, server_received: i64) {
        push_bounded(
            &mut self.uplink,
            server_received - client_transmitted,
            EXCHANGE_WINDOW,
        );
        self.exchanges += 1;
    }

    pub fn record_round_trip(&mut self, rtt_us: i64) {
        push_bounded(&mut self.rtts, rtt_us.max(0), RTT_WINDOW);
    }

    pub fn view(&self) -> Option<ClockView> {
        let rtt = self.rtts.iter().min().copied();
        let uplink = self.uplink.iter().min().copied()?;
        let one_way = rtt.unwrap_or(0) as f64 / 2.0;
        Some(ClockView {
            offset_us: uplink as f64 - one_way,
            drift_ppm: None,
            error_us: None,
            rtt_us: rtt.map(|r| r as f64),
            samples: self.exchanges,
            converged: None,
        })
    }
}

fn push_bounded(values: &mut VecDeque<i64>, value: i64, limit: usize) {
    if values.len() == limit {
        values.pop_front();
    }
    values.push_back(value);
}

/// Per-session state the core keeps for telemetry only.
#[derive(Debug)]
pub(super) struct SessionTelemetry {
    pub opened_unix_ms: u64,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub clock: ServerClockEstimate,
    pub report: Option<PlayerReport>,
    /// Sessions the same `client_id` had before this one.
    pub reconnects: u64,
}

impl SessionTelemetry {
    pub fn new() -> SessionTelemetry {
        SessionTelemetry {
            opened_unix_ms: unix_ms_now(),
            name: None,
            roles: Vec::new(),
            clock: ServerClockEstimate::default(),
            report: None,
            reconnects: 0,
        }
    }

    /// Takes the player's report from the `_resonate` object of a
    /// `client/state`, if it has one. An invalid report is logged and
    /// ignored: it is information for people, not for playback.
    pub fn take_report(
        &mut self,
        extra: &serde_json::Map<String, serde_json::Value>,
        client_id: &str,
    ) {
        let Some(value) = extra.get(REPORT_KEY) else {
            return;
        };
        match serde_json::from_value::<PlayerReport>(value.clone()) {
            Ok(report) => self.report = Some(report),
            Err(err) => {
                tracing::debug!(client_id, cause = %err, "ignoring an invalid {REPORT_KEY} report")
            }
        }
    }
}

/// Counts the sessions each `client_id` has had, for the reconnect column.
#[derive(Debug, Default)]
pub(super) struct SessionCounts {
    counts: HashMap<String, u64>,
    order: VecDeque<String>,
}

impl SessionCounts {
    /// Records a new session of `client_id` and returns how many it had
    /// before.
    pub fn record(&mut self, client_id: &str) -> u64 {
        if let Some(count) = self.counts.get_mut(client_id) {
            *count += 1;
            return *count - 1;
        }
        if self.order.len() == MAX_TRACKED_CLIENTS {
            if let Some(oldest) = self.order.pop_front() {
                self.counts.remove(&oldest);
            }
        }
        self.order.push_back(client_id.to_string());
        self.counts.insert(client_id.to_string(), 1);
        0
    }
}

impl Core {
    /// Builds a snapshot of every session and group from the core's state.
    pub(super) fn telemetry_snapshot(&self) -> Snapshot {
        let now = now_us();
        let mut sessions: Vec<SessionRow> = self
            .sessions
            .iter()
            .map(|(id, entry)| self.session_row(*id, entry, now))
            .collect();
        sessions.sort_by_key(|row| row.opened_unix_ms);
        for address in self.dial_slots.addresses() {
            if !self
                .sessions
                .values()
                .any(|entry| entry.handle.peer.to_string() == address)
            {
                sessions.push(SessionRow {
                    session: "-".into(),
                    peer: address.to_string(),
                    dialect: self.config.dialect.as_str().into(),
                    phase: Phase::Connecting,
                    ..Default::default()
                });
            }
        }

        let mut groups: Vec<GroupRow> = self
            .groups
            .values()
            .map(|group| self.group_row(group))
            .collect();
        groups.sort_by(|a, b| a.id.cmp(&b.id));

        let stats = self.stats.snapshot();
        let mut counters = std::collections::BTreeMap::from([(
            "sessions_opened".to_string(),
            stats.sessions_opened,
        )]);
        for (cause, count) in stats.closed_by_cause {
            counters.insert(format!("closed.{cause}"), count);
        }
        for (cause, count) in stats.rejected_by_cause {
            counters.insert(format!("rejected.{cause}"), count);
        }
        Snapshot {
            source: Default::default(),
            taken_unix_ms: unix_ms_now(),
            sessions,
            groups,
            counters,
            gauges: std::collections::BTreeMap::from([
                ("tasks_live".to_string(), stats.tasks_live as f64),
                ("clients_live".to_string(), stats.clients_live as f64),
            ]),
            notes: vec![
                crate::telemetry::OFFSET_NOTE.into(),
                "offsets marked as server estimates come from client/time exchanges and WebSocket pings, assuming symmetric delay".into(),
            ],
        }
    }

    fn session_row(
        &self,
        id: crate::session::SessionId,
        entry: &SessionEntry,
        now: i64,
    ) -> SessionRow {
        let registered = self.client_of(id).is_some();
        let client = entry
            .client_id
            .as_ref()
            .filter(|_| registered)
            .and_then(|c| self.clients.get(c));
        let group = client.and_then(|c| self.groups.get(&c.group));
        let client_id = entry.client_id.as_deref();
        let format = group.zip(client_id).and_then(|(g, c)| g.player_format(c));
        let sent_ahead = group
            .zip(client_id)
            .and_then(|(g, c)| g.sent_ahead_us(c, now));
        let report = entry.telemetry.report.as_ref();
        SessionRow {
            session: id.to_string(),
            client_id: entry.client_id.clone(),
            name: entry.telemetry.name.clone(),
            peer: entry.handle.peer.to_string(),
            dialect: entry.dialect.as_str().into(),
            roles: entry.telemetry.roles.clone(),
            phase: phase_of(entry.handle.state()),
            group: client.map(|c| c.group.clone()),
            format: format.map(|f| f.to_string()),
            server_clock: entry.telemetry.clock.view(),
            client_clock: report.and_then(|r| r.clock),
            // The player's own count is better; without one, what the server
            // sent ahead is what the player holds if nothing was lost.
            buffer_ms: report
                .and_then(|r| r.buffer_ms)
                .or(sent_ahead.map(|us| us as f64 / 1000.0)),
            late_chunks: report.map_or(0, |r| r.late_chunks),
            dropped_chunks: report.map_or(0, |r| r.dropped_chunks),
            reconnects: entry.telemetry.reconnects,
            opened_unix_ms: entry.telemetry.opened_unix_ms,
        }
    }

    fn group_row(&self, group: &crate::server::group::Group) -> GroupRow {
        let state = self.controller_state(&group.id);
        let has_players = !self.players_of(&group.id).is_empty();
        GroupRow {
            id: group.id.clone(),
            name: group.name.clone(),
            members: group.member_ids().map(str::to_string).collect(),
            playback: if group.is_playing() {
                "playing"
            } else {
                "stopped"
            }
            .into(),
            volume: has_players.then_some(state.volume),
            muted: has_players.then_some(state.muted),
            metadata: Some(self.track_info(group)),
        }
    }

    /// Describes what a group plays, from tags already read.
    fn track_info(&self, group: &crate::server::group::Group) -> TrackInfo {
        let playing = group.now_playing(now_us());
        let entry = &group.queue.entries()[playing.entry];
        let tags = self
            .tags
            .get(&playing.entry)
            .map(|tags| (**tags).clone())
            .unwrap_or_default();
        let view = MetadataView::of(
            entry,
            &tags,
            &playing,
            group.queue.repeat(),
            group.queue.is_shuffled(),
        );
        TrackInfo {
            title: view.title,
            artist: view.artist,
            album: view.album,
            position_ms: Some(playing.progress_ms),
            duration_ms: playing.duration_ms,
        }
    }
}

fn phase_of(state: SessionState) -> Phase {
    match state {
        SessionState::Handshaking => Phase::Handshaking,
        SessionState::Active => Phase::Active,
        SessionState::Closing | SessionState::Closed => Phase::Closing,
    }
}

/// Returns the feed event for a server event, or `None` for events too
/// frequent or too minor for the log.
pub(in crate::server) fn telemetry_event(event: &ServerEvent) -> Option<Event> {
    let line = match event {
        ServerEvent::SessionOpened { .. } => return None,
        ServerEvent::ClientJoined {
            session,
            client_id,
            active_roles,
        } => Event::now(
            EventKind::Connected,
            format!("joined with roles {}", active_roles.join(", ")),
        )
        .with_session(session)
        .with_client(Some(client_id.as_str())),
        ServerEvent::ClientReplaced {
            client_id,
            old,
            new,
        } => Event::now(EventKind::Replaced, format!("session {new} replaced {old}"))
            .with_session(new)
            .with_client(Some(client_id.as_str())),
        ServerEvent::SessionClosed {
            session,
            client_id,
            cause,
        } => {
            let kind = match cause {
                CloseCause::ProtocolError(_) => EventKind::Violation,
                _ => EventKind::Disconnected,
            };
            Event::now(kind, cause.to_string())
                .with_session(session)
                .with_client(client_id.as_deref())
        }
        ServerEvent::ProgramStarted { group_id, .. } => Event::now(
            EventKind::Stream,
            format!("group {group_id} started playing"),
        ),
        ServerEvent::ProgramEnded { group_id } => {
            Event::now(EventKind::Stream, format!("group {group_id} stopped"))
        }
        ServerEvent::StreamStarted { client_id, format } => {
            Event::now(EventKind::Stream, format!("stream started: {format}"))
                .with_client(Some(client_id.as_str()))
        }
        ServerEvent::StreamEnded {
            client_id,
            chunks_sent,
        } => Event::now(
            EventKind::Stream,
            format!("stream ended after {chunks_sent} chunks"),
        )
        .with_client(Some(client_id.as_str())),
        ServerEvent::DialStarted { address, url } => Event::now(
            EventKind::Info,
            format!("dialing player {address} at {url}"),
        ),
        ServerEvent::DialStopped { address, reason } => Event::now(
            EventKind::Info,
            format!("stopped dialing {address}: {reason}"),
        ),
    };
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_takes_least_delayed_exchange() {
        let mut estimate = ServerClockEstimate::default();
        assert!(estimate.view().is_none());
        // The client's clock is 5,000 µs behind the server's; uplink delays
        // of 300, 100 and 900 µs.
        for (client, delay) in [(1_000, 300), (2_000, 100), (3_000, 900)] {
            estimate.record_exchange(client, client + 5_000 + delay);
        }
        estimate.record_round_trip(250);
        estimate.record_round_trip(200);
        let view = estimate.view().unwrap();
        assert_eq!(view.offset_us, 5_100.0 - 100.0);
        assert_eq!(view.rtt_us, Some(200.0));
        assert_eq!(view.samples, 3);
    }

    #[test]
    fn estimate_window_forgets_old_exchanges() {
        let mut estimate = ServerClockEstimate::default();
        estimate.record_exchange(0, 10);
        for n in 0..EXCHANGE_WINDOW as i64 {
            estimate.record_exchange(n, n + 1_000);
        }
        assert_eq!(estimate.view().unwrap().offset_us, 1_000.0);
    }

    #[test]
    fn session_counts_are_bounded() {
        let mut counts = SessionCounts::default();
        assert_eq!(counts.record("a"), 0);
        assert_eq!(counts.record("a"), 1);
        for n in 0..MAX_TRACKED_CLIENTS {
            counts.record(&n.to_string());
        }
        assert_eq!(counts.counts.len(), MAX_TRACKED_CLIENTS);
        assert_eq!(counts.record("a"), 0, "the oldest id is forgotten first");
    }

    #[test]
    fn protocol_errors_are_violations() {
        let event = ServerEvent::SessionClosed {
            session: crate::session::SessionId(7),
            client_id: Some("p".into()),
            cause: CloseCause::ProtocolError("binary frame before server/hello was sent".into()),
        };
        let line = telemetry_event(&event).unwrap();
        assert_eq!(line.kind, EventKind::Violation);
        assert_eq!(line.session.as_deref(), Some("s7"));
        assert!(line.detail.contains("binary frame"), "{}", line.detail);
    }
}
