//! Telemetry of any server, ours or not, seen from one of its clients.
//!
//! The observer joins the server as a controller and metadata client,
//! keeps its own clock filter against the server, and publishes what it
//! learns (its group's playback state, volume and metadata, and its own
//! clock offset and round trip) to a [`Telemetry`] hub. Reconnects with
//! backoff when the connection drops.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};
use tokio_util::task::TaskTracker;
use url::Url;

use super::{
    unix_ms_now, Event, EventKind, GroupRow, Phase, SessionRow, Snapshot, Telemetry, TrackInfo,
};
use crate::clock::now_us;
use crate::dialect::{Dialect, Incoming};
use crate::noise::Identity;
use crate::player::encrypted::{open_codec, ClientKeys};
use crate::protocol::{
    ClientHello, ClientTime, ControllerState, GoodbyeReason, GroupUpdate, Message, Metadata,
    PlaybackState, ServerHello, PROTOCOL_VERSION,
};
use crate::session::{
    self, CloseCause, EventKind as SessionEventKind, SessionEvent, SessionHandle, Side,
};
use crate::sync::filter::{FilterConfig, Measurement, TimeFilter};
use crate::sync::schedule::{ScheduleConfig, SyncSchedule};
use crate::transport::{self, Limits};

/// Interval between two snapshots.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);

/// First and longest wait before reconnecting.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Limits of a client's view of a foreign server, shown with every snapshot.
const NOTES: [&str; 4] = [
    "seen as one client of this server: other clients, their clock offsets and buffers are not visible",
    "the clock offset and round trip shown are this monitor's own to the server",
    "the group shown is the one the server placed this monitor in",
    super::OFFSET_NOTE,
];

/// Settings of an observer.
#[derive(Clone, Debug)]
pub struct ObserverConfig {
    pub url: Url,
    pub dialect: Dialect,
    pub client_id: String,
    pub name: String,
    pub limits: Limits,
}

/// The observer's view of the server, kept across reconnects.
#[derive(Debug)]
struct View {
    dialect: Dialect,
    phase: Phase,
    peer: String,
    hello: Option<ServerHello>,
    group_id: Option<String>,
    group_name: Option<String>,
    playback: Option<PlaybackState>,
    controller: Option<ControllerState>,
    track: TrackInfo,
    /// Server time in microseconds at which `track.position_ms` was valid,
    /// and the playback speed times 1000 from then on.
    progress_at: Option<(i64, i64)>,
    connected_unix_ms: u64,
    connections: u64,
    clock: Option<super::ClockView>,
}

/// Observes the server at `config.url` until `shutdown` completes.
/// Returns an error only when the first connection attempt fails, so a
/// wrong address is reported at once; later failures are retried.
pub async fn observe(
    config: ObserverConfig,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()>,
) -> Result<(), transport::TransportError> {
    tokio::pin!(shutdown);
    let mut view = View {
        dialect: config.dialect,
        phase: Phase::Connecting,
        peer: config.url.to_string(),
        hello: None,
        group_id: None,
        group_name: None,
        playback: None,
        controller: None,
        track: TrackInfo::default(),
        progress_at: None,
        connected_unix_ms: 0,
        connections: 0,
        clock: None,
    };
    // Sendspin 1.0: one key for the whole run, so an operator who approves
    // the monitor's client_id approves it across reconnects.
    let identity = config.dialect.is_encrypted().then(Identity::generate);
    if let Some(identity) = &identity {
        telemetry.emit(Event::now(
            EventKind::Info,
            format!(
                "joining as the unpaired Sendspin 1.0 client {}; the server shows its group and metadata only once it approves that client_id",
                identity.id()
            ),
        ));
    }
    let mut delay = RETRY_FIRST;
    let mut first_attempt = true;
    loop {
        publish(&telemetry, &view);
        let connecting = transport::connect(&config.url, &config.limits);
        let ws = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            result = connecting => result,
        };
        match ws {
            Ok(ws) => {
                first_attempt = false;
                delay = RETRY_FIRST;
                let ended = run_session(
                    &config,
                    identity.as_ref(),
                    ws,
                    &telemetry,
                    &mut view,
                    &mut shutdown,
                )
                .await;
                view.phase = Phase::Connecting;
                view.clock = None;
                publish(&telemetry, &view);
                if ended.is_none() {
                    return Ok(());
                }
            }
            Err(err) if first_attempt => return Err(err),
            Err(err) => {
                telemetry.emit(Event::now(
                    EventKind::Info,
                    format!(
                        "connecting to {} failed ({err}); retrying in {} ms",
                        config.url,
                        delay.as_millis()
                    ),
                ));
            }
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = sleep(delay) => {}
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}

/// Runs one connection. Returns the close cause, or `None` when
/// `shutdown` ended it.
async fn run_session(
    config: &ObserverConfig,
    identity: Option<&Identity>,
    mut ws: transport::ClientStream,
    telemetry: &Telemetry,
    view: &mut View,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<CloseCause> {
    let codec = match identity {
        Some(identity) => {
            let keys = ClientKeys::unpaired(identity.clone());
            view.phase = Phase::Handshaking;
            match open_codec(
                &mut ws,
                config.dialect,
                Some(&keys),
                &hello(config),
                config.limits.handshake_timeout,
            )
            .await
            .map_err(|failure| failure.cause)
            {
                Ok(codec) => codec,
                Err(cause) => {
                    telemetry.emit(Event::now(EventKind::Disconnected, cause.to_string()));
                    return Some(cause);
                }
            }
        }
        None => config.dialect.codec(),
    };
    let peer = match ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(stream) => stream.peer_addr().ok(),
        _ => None,
    };
    let peer = peer.unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
    let tracker = TaskTracker::new();
    let (events_tx, mut events) = mpsc::channel(256);
    let handle = session::spawn(
        ws,
        peer,
        Side::Client,
        codec,
        config.limits.clone(),
        events_tx,
        &tracker,
    );
    tracker.close();
    let _ = handle.send_message(Message::ClientHello(hello(config)));
    view.phase = Phase::Handshaking;
    view.peer = peer.to_string();

    let mut sync = ClockSync::new();
    let mut publish_tick = tokio::time::interval(PUBLISH_INTERVAL);
    let cause = loop {
        tokio::select! {
            _ = shutdown.as_mut() => {
                handle.close(CloseCause::LocalGoodbye(GoodbyeReason::Shutdown));
                break None;
            }
            event = events.recv() => match event {
                Some(SessionEvent { kind: SessionEventKind::Closed(cause), .. }) => break Some(cause),
                Some(event) => on_event(event, &handle, telemetry, view, &mut sync),
                None => break Some(CloseCause::Shutdown),
            },
            _ = sleep(sync.next_request(view.phase == Phase::Active)) => sync.request(&handle),
            _ = publish_tick.tick() => {
                view.clock = sync.view();
                publish(telemetry, view);
            }
        }
    };
    match &cause {
        Some(cause) => {
            // Sendspin 1.0 servers close a cleartext hello unanswered.
            let hint = if view.hello.is_none()
                && !config.dialect.is_encrypted()
                && matches!(
                    cause,
                    CloseCause::PeerClosed { .. } | CloseCause::PeerReset(_)
                ) {
                "; the server closed the connection before server/hello, as Sendspin 1.0 servers do with cleartext clients: run the monitor with --dialect sendspin"
            } else {
                ""
            };
            telemetry.emit(
                Event::now(EventKind::Disconnected, format!("{cause}{hint}"))
                    .with_client(server_id(view)),
            );
        }
        None => {
            // Let the goodbye go out before the runtime ends.
            let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
        }
    }
    cause
}

fn hello(config: &ObserverConfig) -> ClientHello {
    ClientHello {
        client_id: config.client_id.clone(),
        name: config.name.clone(),
        device_info: None,
        version: PROTOCOL_VERSION,
        supported_roles: vec!["controller@v1".into(), "metadata@v1".into()],
        player_support: None,
        artwork_support: None,
        visualizer_support: None,
        extra: Default::default(),
    }
}

fn server_id(view: &View) -> Option<&str> {
    view.hello.as_ref().map(|h| h.server_id.as_str())
}

fn on_event(
    event: SessionEvent,
    handle: &SessionHandle,
    telemetry: &Telemetry,
    view: &mut View,
    sync: &mut ClockSync,
) {
    match event.kind {
        SessionEventKind::TimeSent { client_transmitted } => {
            sync.schedule.record_sent(client_transmitted)
        }
        SessionEventKind::Received {
            incoming: Incoming::Message(message),
            received_us,
        } => on_message(message, received_us, telemetry, view, sync),
        SessionEventKind::Activated => {
            view.phase = Phase::Active;
            sync.request(handle);
        }
        _ => {}
    }
}

fn on_message(
    message: Message,
    received_us: i64,
    telemetry: &Telemetry,
    view: &mut View,
    sync: &mut ClockSync,
) {
    match message {
        Message::ServerHello(hello) => {
            view.connections += 1;
            view.connected_unix_ms = unix_ms_now();
            let line = format!(
                "joined {:?} with roles {}",
                hello.name,
                hello.active_roles.join(", ")
            );
            telemetry.emit(
                Event::now(EventKind::Connected, line).with_client(Some(hello.server_id.as_str())),
            );
            view.hello = Some(hello);
        }
        Message::ServerTime(time) => {
            sync.waiting = None;
            let measurement = Measurement {
                client_transmitted: time.client_transmitted,
                server_received: time.server_received,
                server_transmitted: time.server_transmitted,
                client_received: received_us,
            };
            sync.schedule.record_reply(measurement, &mut sync.filter);
        }
        Message::GroupUpdate(update) => on_group_update(update, telemetry, view),
        Message::ServerState(state) => {
            if let Some(controller) = state.controller {
                view.controller = Some(controller);
            }
            if let Some(metadata) = state.metadata {
                on_metadata(metadata, telemetry, view);
            }
        }
        _ => {}
    }
}

fn on_group_update(update: GroupUpdate, telemetry: &Telemetry, view: &mut View) {
    if let Some(group_id) = update.group_id {
        view.group_id = group_id;
    }
    if let Some(name) = update.group_name {
        view.group_name = name;
    }
    if let Some(playback) = update.playback_state {
        if playback != view.playback {
            let state = playback.map_or("unknown", playback_name);
            telemetry.emit(Event::now(
                EventKind::Stream,
                format!("group playback is {state}"),
            ));
        }
        view.playback = playback;
    }
}

fn on_metadata(metadata: Metadata, telemetry: &Telemetry, view: &mut View) {
    if let Some(title) = metadata.title {
        if title != view.track.title {
            if let Some(title) = &title {
                telemetry.emit(Event::now(
                    EventKind::Stream,
                    format!("now playing {title:?}"),
                ));
            }
        }
        view.track.title = title;
    }
    if let Some(artist) = metadata.artist {
        view.track.artist = artist;
    }
    if let Some(album) = metadata.album {
        view.track.album = album;
    }
    if let Some(progress) = metadata.progress {
        match progress {
            Some(progress) => {
                view.track.position_ms = Some(progress.track_progress.max(0) as u64);
                view.track.duration_ms =
                    (progress.track_duration > 0).then_some(progress.track_duration as u64);
                view.progress_at = Some((metadata.timestamp, progress.playback_speed));
            }
            None => {
                view.track.position_ms = None;
                view.track.duration_ms = None;
                view.progress_at = None;
            }
        }
    }
}

fn playback_name(state: PlaybackState) -> &'static str {
    match state {
        PlaybackState::Playing => "playing",
        PlaybackState::Stopped => "stopped",
    }
}

/// The observer's own `client/time` exchanges and clock filter.
struct ClockSync {
    filter: TimeFilter,
    schedule: SyncSchedule,
    /// When the outstanding `client/time` was queued.
    waiting: Option<Instant>,
}

impl ClockSync {
    fn new() -> ClockSync {
        ClockSync {
            filter: TimeFilter::new(FilterConfig::default()),
            schedule: SyncSchedule::new(ScheduleConfig::default()),
            waiting: None,
        }
    }

    fn next_request(&self, active: bool) -> Duration {
        if !active {
            return Duration::from_secs(3600);
        }
        match self.waiting {
            Some(queued) => self
                .schedule
                .config()
                .reply_timeout
                .saturating_sub(queued.elapsed()),
            None => self.schedule.send_delay(now_us()),
        }
    }

    /// Sends the next `client/time`, or records a timeout of the one
    /// still waiting for its reply.
    fn request(&mut self, handle: &SessionHandle) {
        if let Some(queued) = self.waiting {
            if queued.elapsed() < self.schedule.config().reply_timeout {
                return;
            }
            self.schedule.record_timeout(now_us(), &mut self.filter);
            self.waiting = None;
            return;
        }
        // The session stamps T1 as it writes the message.
        if handle
            .send_message(Message::ClientTime(ClientTime {
                client_transmitted: 0,
            }))
            .is_ok()
        {
            self.waiting = Some(Instant::now());
        }
    }

    fn view(&self) -> Option<super::ClockView> {
        let snapshot = self.filter.snapshot();
        snapshot
            .is_valid()
            .then(|| crate::player::client::clock_view(&snapshot))
    }
}

/// Publishes `view` as a snapshot.
fn publish(telemetry: &Telemetry, view: &View) {
    let hello = view.hello.as_ref();
    let row = SessionRow {
        session: "monitor".into(),
        client_id: hello.map(|h| h.server_id.clone()),
        name: hello.map(|h| h.name.clone()),
        peer: view.peer.clone(),
        dialect: view.dialect.as_str().into(),
        roles: hello.map(|h| h.active_roles.clone()).unwrap_or_default(),
        phase: view.phase,
        group: view.group_id.clone(),
        format: None,
        server_clock: None,
        client_clock: view.clock,
        buffer_ms: None,
        late_chunks: 0,
        dropped_chunks: 0,
        reconnects: view.connections.saturating_sub(1),
        opened_unix_ms: view.connected_unix_ms,
    };
    let groups = view
        .group_id
        .as_ref()
        .map(|id| GroupRow {
            id: id.clone(),
            name: view.group_name.clone().unwrap_or_default(),
            members: Vec::new(),
            playback: view.playback.map_or("unknown", playback_name).into(),
            volume: view.controller.as_ref().map(|c| c.volume),
            muted: view.controller.as_ref().map(|c| c.muted),
            metadata: track_now(view),
        })
        .into_iter()
        .collect();
    telemetry.publish(Snapshot {
        source: Default::default(),
        taken_unix_ms: unix_ms_now(),
        sessions: vec![row],
        groups,
        counters: [("connections".to_string(), view.connections)].into(),
        gauges: Default::default(),
        notes: NOTES.iter().map(|n| n.to_string()).collect(),
    });
}

/// Returns the track with its position moved on to now, using the
/// observer's clock estimate to read the server's metadata timestamp.
fn track_now(view: &View) -> Option<TrackInfo> {
    if view.track == TrackInfo::default() {
        return None;
    }
    let mut track = view.track.clone();
    if let (Some(position), Some((timestamp, speed)), Some(clock)) =
        (track.position_ms, view.progress_at, view.clock)
    {
        let server_now = now_us() as f64 + clock.offset_us;
        let elapsed_ms =
            ((server_now - timestamp as f64) / 1000.0).max(0.0) * speed as f64 / 1000.0;
        let mut moved = position + elapsed_ms as u64;
        if let Some(duration) = track.duration_ms {
            moved = moved.min(duration);
        }
        track.position_ms = Some(moved);
    }
    Some(track)
}
