//! Scenarios against a player that waits for servers: virtual servers dial
//! it, stream to it, command it and drop it, checking what the player sends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::check::ViolationKind;
use super::probe::{reset_mid_upgrade, Ending, Probe};
use super::report::{Counters, Measure};
use super::scenarios::Context;
use super::Scenario;
use crate::clock::now_us;
use crate::dialect::Incoming;
use crate::protocol::{
    activate_roles, BinaryFrame, BinaryKind, ClientHello, ConnectionReason, Message, PlayerCommand,
    PlayerState, ServerCommand, ServerHello, ServerTime, StreamClear, StreamEnd, StreamStart,
    StreamStartPlayer, SupportedFormat, PROTOCOL_VERSION,
};

/// Roles a virtual server activates.
const SERVER_ROLES: [&str; 3] = ["player@v1", "controller@v1", "metadata@v1"];

/// Audio of one chunk a virtual server sends, and how far ahead.
const CHUNK_US: i64 = 20_000;
const LEAD_US: i64 = 500_000;

/// Way a virtual server ends a connection.
#[derive(Clone, Copy, Debug)]
enum Hangup {
    /// A close frame, which the player must reply to.
    Close,
    /// `stream/end`, then a close frame.
    EndThenClose,
    /// A TCP reset without a close frame.
    Reset,
    /// A reset in the middle of a binary frame.
    ResetMidFrame,
}

/// Runs `ctx.scenario` against the player at the target.
pub async fn run(ctx: Arc<Context>) {
    match ctx.scenario {
        Scenario::HandshakeStorm => server_storm(ctx).await,
        Scenario::Churn => stream_churn(ctx).await,
        Scenario::SameId => same_id(ctx).await,
        Scenario::Goodbyes => hangups(ctx).await,
        Scenario::SlowConsumer => stalled_server(ctx).await,
        Scenario::ReconnectFlap => reconnect_flap(ctx).await,
        Scenario::TimeFlood => time_flood(ctx).await,
        Scenario::ConcurrentControl => command_burst(ctx).await,
        Scenario::NoiseAbuse => ctx
            .note_once("noise-abuse needs a Sendspin 1.0 server; skipped against a player".into()),
        // The command line rejects fan-out against a player, so only a
        // library caller gets here.
        Scenario::FanOut => {
            ctx.note("fan-out measures a server; it did not run against the player".into())
        }
    }
}

/// Runs virtual servers against the player at the target until the
/// scenario's duration is over: each dials, completes the handshake,
/// streams silence for a while and drops the connection in one of the
/// ways a server can.
async fn server_storm(ctx: Arc<Context>) {
    let deadline = Instant::now() + ctx.duration;
    let mut workers = JoinSet::new();
    for worker in 0..ctx.clients as u64 {
        let ctx = ctx.clone();
        workers.spawn(async move {
            let mut rng = ctx.rng(worker);
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let label = ctx.client_id(&format!("server-w{worker}"), n);
                serve_once(&ctx, label, &mut rng).await;
            }
        });
    }
    workers.join_all().await;
}

async fn serve_once(ctx: &Context, label: String, rng: &mut StdRng) {
    let Some(mut probe) = ctx.open(label.clone(), None).await else {
        ctx.violations.record(
            ViolationKind::Unresponsive,
            ctx.name(),
            &label,
            "the player did not accept a connection".into(),
            None,
        );
        return;
    };
    let started = Instant::now();
    let Some(hello) = await_client_hello(ctx, &mut probe).await else {
        ctx.finish(&mut probe).await;
        return;
    };
    ctx.latencies.record(Measure::Handshake, started.elapsed());
    Counters::add(&ctx.counters.handshakes, 1);

    let activation = activate_roles(&hello.supported_roles, &SERVER_ROLES);
    let server_hello = ServerHello {
        server_id: label.clone(),
        name: label.clone(),
        version: PROTOCOL_VERSION,
        active_roles: activation.active.clone(),
        connection_reason: ConnectionReason::Playback,
    };
    if probe
        .send(Message::ServerHello(server_hello))
        .await
        .is_err()
    {
        ctx.finish(&mut probe).await;
        return;
    }
    let format = hello
        .player_support
        .as_ref()
        .and_then(|support| {
            support
                .supported_formats
                .iter()
                .find(|f| f.codec == "pcm")
                .cloned()
        })
        .filter(|_| activation.active.iter().any(|r| r == "player@v1"));
    let stream_for = Duration::from_millis(rng.random_range(100..1_500));
    let mut checks = PlayerChecks::default();
    if let Some(format) = format {
        let start = StreamStart {
            player: Some(StreamStartPlayer {
                codec: "pcm".into(),
                sample_rate: format.sample_rate,
                channels: format.channels,
                bit_depth: format.bit_depth,
                codec_header: None,
            }),
            ..Default::default()
        };
        if probe.send(Message::StreamStart(start)).await.is_err() {
            ctx.finish(&mut probe).await;
            return;
        }
        let frame_bytes = usize::from(format.channels) * usize::from(format.bit_depth.div_ceil(8));
        let chunk_bytes = format.sample_rate as usize * frame_bytes / 50;
        if !stream_silence(ctx, &mut probe, &mut checks, chunk_bytes, stream_for).await {
            return finish_dropped(ctx, probe).await;
        }
    } else if !answer_for(ctx, &mut probe, &mut checks, stream_for).await {
        return finish_dropped(ctx, probe).await;
    }

    match [
        Hangup::Close,
        Hangup::EndThenClose,
        Hangup::Reset,
        Hangup::ResetMidFrame,
    ][rng.random_range(0..4)]
    {
        Hangup::Close => ctx.finish(&mut probe).await,
        Hangup::EndThenClose => {
            let _ = probe.send(Message::StreamEnd(StreamEnd::default())).await;
            ctx.finish(&mut probe).await;
        }
        Hangup::Reset => {
            ctx.count_ended(&probe);
            probe.reset();
        }
        Hangup::ResetMidFrame => {
            ctx.count_ended(&probe);
            probe.reset_mid_frame(1024).await;
        }
    }
}

/// Closes and counts a connection that the player may have ended. A goodbye
/// before the end is the player's choice, such as keeping another server.
async fn finish_dropped(ctx: &Context, mut probe: Probe) {
    if probe.ended().is_none() {
        ctx.finish(&mut probe).await;
    } else {
        ctx.count_ended(&probe);
    }
}

/// Waits for the player's `client/hello`, which must come first and in
/// time.
async fn await_client_hello(ctx: &Context, probe: &mut Probe) -> Option<ClientHello> {
    let deadline = tokio::time::Instant::now() + ctx.bound;
    loop {
        match probe.next_unchecked(deadline).await {
            Ok((Incoming::Message(Message::ClientHello(hello)), text, _)) => {
                if let Err(problem) = check_client_hello(&hello) {
                    ctx.violations.record(
                        ViolationKind::BadHello,
                        ctx.name(),
                        &probe.label,
                        problem,
                        text,
                    );
                }
                return Some(hello);
            }
            Ok((incoming, text, _)) => ctx.violations.record(
                ViolationKind::BeforeHello,
                ctx.name(),
                &probe.label,
                format!("{} before client/hello", describe(&incoming)),
                text,
            ),
            Err(Ending::Timeout) => {
                probe.violation(
                    ViolationKind::HelloTimeout,
                    format!("no client/hello within {:?} of connecting", ctx.bound),
                );
                return None;
            }
            Err(_) => return None,
        }
    }
}

fn check_client_hello(hello: &ClientHello) -> Result<(), String> {
    if hello.version != PROTOCOL_VERSION {
        return Err(format!("client/hello version {}", hello.version));
    }
    if hello.client_id.is_empty() {
        return Err("client/hello with an empty client_id".into());
    }
    if hello.supported_roles.is_empty() {
        return Err("client/hello with no supported_roles".into());
    }
    if hello
        .supported_roles
        .iter()
        .any(|r| r.starts_with("player@"))
        && hello.player_support.is_none()
    {
        return Err("client/hello offers the player role without player support".into());
    }
    Ok(())
}

fn describe(incoming: &Incoming) -> String {
    match incoming {
        Incoming::Message(message) => message.type_name().to_string(),
        Incoming::Binary(_) => "a binary frame".into(),
        Incoming::Unknown { type_name } => type_name.clone(),
        Incoming::Consumed => "a fragment".into(),
        Incoming::Unpaired => "server/unpair".into(),
    }
}

/// State for the checks of the messages a player sends after its hello.
#[derive(Default)]
struct PlayerChecks {
    last_client_time: Option<i64>,
    /// The player's volume and mute as its `client/state` messages report
    /// them, deltas applied.
    player: PlayerState,
    /// `client/time` messages received.
    time_requests: u64,
}

/// Handles one message from the player: replies to `client/time` and
/// checks for messages a player must not send. Returns false when the player ended the
/// connection.
async fn handle_player_frame(
    ctx: &Context,
    probe: &mut Probe,
    checks: &mut PlayerChecks,
    deadline: tokio::time::Instant,
) -> Option<bool> {
    match probe.next_unchecked(deadline).await {
        Ok((Incoming::Message(message), text, received_us)) => {
            match message {
                Message::ClientTime(time) => {
                    if let Some(last) = checks.last_client_time {
                        if time.client_transmitted < last {
                            ctx.violations.record(
                                ViolationKind::TimeNotMonotonic,
                                ctx.name(),
                                &probe.label,
                                format!(
                                    "client_transmitted went back {} µs",
                                    last - time.client_transmitted
                                ),
                                text,
                            );
                        }
                    }
                    checks.last_client_time = Some(time.client_transmitted);
                    checks.time_requests += 1;
                    let reply = ServerTime {
                        client_transmitted: time.client_transmitted,
                        server_received: received_us,
                        server_transmitted: now_us(),
                    };
                    if probe.send(Message::ServerTime(reply)).await.is_err() {
                        return Some(false);
                    }
                    Counters::add(&ctx.counters.time_replies, 1);
                }
                Message::ClientHello(_) => {
                    probe.violation(
                        ViolationKind::DuplicateHello,
                        "second client/hello on one connection".into(),
                    );
                }
                Message::ClientState(state) => {
                    if let Some(player) = state.player {
                        checks.player.volume = player.volume.or(checks.player.volume);
                        checks.player.muted = player.muted.or(checks.player.muted);
                    }
                }
                Message::ServerHello(_)
                | Message::ServerTime(_)
                | Message::ServerState(_)
                | Message::ServerCommand(_)
                | Message::StreamStart(_)
                | Message::StreamClear(_)
                | Message::StreamEnd(_)
                | Message::GroupUpdate(_) => ctx.violations.record(
                    ViolationKind::WrongDirection,
                    ctx.name(),
                    &probe.label,
                    format!("player sent the server message {}", message.type_name()),
                    text,
                ),
                _ => {}
            }
            Some(true)
        }
        Ok(_) => Some(true),
        Err(Ending::Timeout) => None,
        Err(_) => Some(false),
    }
}

/// Streams silence for `duration`, a chunk every 20 ms stamped half a
/// second ahead, while replying to the player. Returns false when the
/// player ended the connection.
async fn stream_silence(
    ctx: &Context,
    probe: &mut Probe,
    checks: &mut PlayerChecks,
    chunk_bytes: usize,
    duration: Duration,
) -> bool {
    let until = Instant::now() + duration;
    let mut next_chunk_us = now_us() + LEAD_US;
    let silence = vec![0u8; chunk_bytes];
    let mut tick = tokio::time::interval(Duration::from_micros(CHUNK_US as u64));
    while Instant::now() < until {
        tick.tick().await;
        let frame = BinaryFrame::new(BinaryKind::Audio, next_chunk_us, silence.clone());
        if probe.send_binary(frame).await.is_err() {
            return false;
        }
        Counters::add(&ctx.counters.audio_chunks, 1);
        next_chunk_us += CHUNK_US;
        // Answer what the player sent meanwhile, without waiting.
        loop {
            match handle_player_frame(
                ctx,
                probe,
                checks,
                tokio::time::Instant::now() + Duration::from_millis(1),
            )
            .await
            {
                Some(true) => continue,
                Some(false) => return false,
                None => break,
            }
        }
    }
    true
}

/// Answers the player for `duration` without streaming. Returns false when
/// the player ended the connection.
async fn answer_for(
    ctx: &Context,
    probe: &mut Probe,
    checks: &mut PlayerChecks,
    duration: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + duration;
    loop {
        match handle_player_frame(ctx, probe, checks, deadline).await {
            Some(true) => {}
            Some(false) => return false,
            None => return true,
        }
    }
}

/// One connection of a virtual server to the player, past the handshake.
struct Dialed {
    probe: Probe,
    hello: ClientHello,
    checks: PlayerChecks,
}

impl Dialed {
    /// Dials the player, reads its `client/hello` and replies as
    /// `server_id` with `connection_reason: playback`.
    async fn connect(ctx: &Context, label: String, server_id: &str) -> Option<Dialed> {
        let Some(mut probe) = ctx.open(label.clone(), None).await else {
            ctx.violations.record(
                ViolationKind::Unresponsive,
                ctx.name(),
                &label,
                "the player did not accept a connection".into(),
                None,
            );
            return None;
        };
        let started = Instant::now();
        let Some(hello) = await_client_hello(ctx, &mut probe).await else {
            ctx.finish(&mut probe).await;
            return None;
        };
        ctx.latencies.record(Measure::Handshake, started.elapsed());
        Counters::add(&ctx.counters.handshakes, 1);
        let activation = activate_roles(&hello.supported_roles, &SERVER_ROLES);
        let server_hello = ServerHello {
            server_id: server_id.to_string(),
            name: server_id.to_string(),
            version: PROTOCOL_VERSION,
            active_roles: activation.active,
            connection_reason: ConnectionReason::Playback,
        };
        if probe
            .send(Message::ServerHello(server_hello))
            .await
            .is_err()
        {
            finish_dropped(ctx, probe).await;
            return None;
        }
        Some(Dialed {
            probe,
            hello,
            checks: PlayerChecks::default(),
        })
    }

    /// Returns the player's PCM formats, first preferred.
    fn pcm_formats(&self) -> Vec<SupportedFormat> {
        self.hello
            .player_support
            .as_ref()
            .map(|support| {
                support
                    .supported_formats
                    .iter()
                    .filter(|f| f.codec == "pcm")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn supports_command(&self, command: &str) -> bool {
        self.hello
            .player_support
            .as_ref()
            .is_some_and(|support| support.supported_commands.iter().any(|c| c == command))
    }

    /// Starts a PCM stream in `format` and returns the bytes of one chunk.
    async fn start_stream(&mut self, format: &SupportedFormat) -> Option<usize> {
        let start = StreamStart {
            player: Some(StreamStartPlayer {
                codec: "pcm".into(),
                sample_rate: format.sample_rate,
                channels: format.channels,
                bit_depth: format.bit_depth,
                codec_header: None,
            }),
            ..Default::default()
        };
        self.probe.send(Message::StreamStart(start)).await.ok()?;
        let frame_bytes = usize::from(format.channels) * usize::from(format.bit_depth.div_ceil(8));
        Some(format.sample_rate as usize * frame_bytes / 50)
    }

    /// Sends `server/command` setting the player's volume to `volume`
    /// and waits until its `client/state` reports it. Records
    /// `unresponsive` when that does not happen within the bound, and
    /// returns whether it did.
    async fn obeys(&mut self, ctx: &Context, volume: u8, after: &str) -> bool {
        let command = ServerCommand {
            player: Some(PlayerCommand {
                command: "volume".into(),
                volume: Some(i64::from(volume)),
                mute: None,
            }),
            ..Default::default()
        };
        if self
            .probe
            .send(Message::ServerCommand(command))
            .await
            .is_err()
        {
            self.probe.violation(
                ViolationKind::Unresponsive,
                format!("the player closed the connection {after}"),
            );
            return false;
        }
        let deadline = tokio::time::Instant::now() + ctx.bound;
        loop {
            if self.checks.player.volume == Some(volume) {
                return true;
            }
            match handle_player_frame(ctx, &mut self.probe, &mut self.checks, deadline).await {
                Some(true) => {}
                Some(false) => {
                    self.probe.violation(
                        ViolationKind::Unresponsive,
                        format!("the player closed the connection {after}"),
                    );
                    return false;
                }
                None => {
                    self.probe.violation(
                        ViolationKind::Unresponsive,
                        format!(
                            "the player did not report volume {volume} within {:?} {after}",
                            ctx.bound
                        ),
                    );
                    return false;
                }
            }
        }
    }
}

/// Checks that a player still obeys commands, when it accepts them;
/// notes once when it does not list `volume`.
async fn still_obeys(ctx: &Context, dialed: &mut Dialed, rng: &mut StdRng, after: &str) -> bool {
    if !dialed.supports_command("volume") {
        ctx.note_once("the player lists no volume command, so its responsiveness was judged by its connection alone".into());
        return dialed.probe.ended().is_none();
    }
    let volume = rng.random_range(0..=100u8);
    // A player that already reports this volume would not send a state.
    let volume = if dialed.checks.player.volume == Some(volume) {
        (volume + 1) % 101
    } else {
        volume
    };
    dialed.obeys(ctx, volume, after).await
}

/// churn: one virtual server keeps the player and, until the duration is
/// over, restarts its stream in another of the player's PCM formats, clears
/// it, or ends it and starts again, streaming silence in between. The
/// player must stay connected and keep obeying commands.
async fn stream_churn(ctx: Arc<Context>) {
    let mut rng = ctx.rng(0);
    let label = ctx.client_id("server", 0);
    let Some(mut dialed) = Dialed::connect(&ctx, label.clone(), &label).await else {
        return;
    };
    let formats = dialed.pcm_formats();
    if formats.is_empty() {
        ctx.note_once("the player offers no PCM format, so no stream was started".into());
    }
    let deadline = Instant::now() + ctx.duration;
    let mut changes = 0u64;
    while Instant::now() < deadline && !formats.is_empty() {
        let format = &formats[rng.random_range(0..formats.len())];
        let Some(chunk_bytes) = dialed.start_stream(format).await else {
            break;
        };
        let stream_for = Duration::from_millis(rng.random_range(50..400));
        if !stream_silence(
            &ctx,
            &mut dialed.probe,
            &mut dialed.checks,
            chunk_bytes,
            stream_for,
        )
        .await
        {
            break;
        }
        let sent = match rng.random_range(0..3) {
            0 => {
                dialed
                    .probe
                    .send(Message::StreamClear(StreamClear::default()))
                    .await
            }
            1 => {
                dialed
                    .probe
                    .send(Message::StreamEnd(StreamEnd::default()))
                    .await
            }
            // A new stream/start without an end: a format change.
            _ => Ok(()),
        };
        if sent.is_err() {
            break;
        }
        changes += 1;
        if changes.is_multiple_of(8)
            && !still_obeys(&ctx, &mut dialed, &mut rng, "while its streams changed").await
        {
            break;
        }
    }
    if dialed.probe.ended().is_some() {
        dialed.probe.violation(
            ViolationKind::NeighbourDisturbed,
            format!("the player left its server after {changes} stream changes"),
        );
    } else {
        still_obeys(&ctx, &mut dialed, &mut rng, "after its streams changed").await;
    }
    finish_dropped(&ctx, dialed.probe).await;
}

/// same-id: up to 16 virtual servers with one `server_id` pass a barrier
/// and send `server/hello` at once. The player keeps one server at a time,
/// so exactly one connection must survive the bound; the player ends the
/// others with a close frame.
async fn same_id(ctx: Arc<Context>) {
    let deadline = Instant::now() + ctx.duration;
    let sockets = ctx.clients.clamp(2, 16);
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let server_id = ctx.client_id("shared", round);
        let barrier = Arc::new(Barrier::new(sockets));
        let mut servers = JoinSet::new();
        for n in 0..sockets as u64 {
            let ctx = ctx.clone();
            let barrier = barrier.clone();
            let server_id = server_id.clone();
            servers.spawn(async move {
                let label = format!("{server_id}-socket{n}");
                let Some(mut probe) = ctx.open(label, None).await else {
                    barrier.wait().await;
                    return None;
                };
                let hello = await_client_hello(&ctx, &mut probe).await;
                barrier.wait().await;
                hello.as_ref()?;
                Counters::add(&ctx.counters.handshakes, 1);
                let server_hello = ServerHello {
                    server_id: server_id.clone(),
                    name: server_id.clone(),
                    version: PROTOCOL_VERSION,
                    active_roles: vec!["player@v1".into()],
                    connection_reason: ConnectionReason::Playback,
                };
                probe.send(Message::ServerHello(server_hello)).await.ok()?;
                let mut checks = PlayerChecks::default();
                let alive = answer_for(&ctx, &mut probe, &mut checks, ctx.bound).await;
                Some((probe, alive))
            });
        }
        let mut survivors = Vec::new();
        while let Some(joined) = servers.join_next().await {
            match joined {
                Ok(Some((probe, true))) => survivors.push(probe),
                Ok(Some((probe, false))) => {
                    if !matches!(probe.ended(), Some(Ending::Closed { .. })) {
                        probe.violation(
                            ViolationKind::UncleanClose,
                            format!(
                                "the player dropped a server without a close frame: {:?}",
                                probe.ended()
                            ),
                        );
                    }
                    ctx.count_ended(&probe);
                }
                Ok(None) => {}
                Err(err) => tracing::debug!(cause = %err, "same-id server task failed"),
            }
        }
        if survivors.len() != 1 {
            ctx.violations.record(
                ViolationKind::SurvivorCount,
                ctx.name(),
                &server_id,
                format!(
                    "{} of {sockets} connections of one server_id survived; exactly one should",
                    survivors.len()
                ),
                None,
            );
        }
        for mut probe in survivors {
            ctx.finish(&mut probe).await;
        }
    }
}

/// goodbyes: virtual servers end their connection in every way a server
/// can, including before `server/hello` and in the middle of the HTTP
/// upgrade. After each round the player must accept the next server.
async fn hangups(ctx: Arc<Context>) {
    let mut rng = ctx.rng(0);
    let deadline = Instant::now() + ctx.duration;
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        // Before server/hello: a close frame, a reset, a torn upgrade.
        if let Some(mut probe) = ctx
            .open(ctx.client_id("close-before-hello", round), None)
            .await
        {
            if await_client_hello(&ctx, &mut probe).await.is_some() {
                ctx.finish(&mut probe).await;
            }
        }
        if let Some(mut probe) = ctx
            .open(ctx.client_id("reset-before-hello", round), None)
            .await
        {
            let _ = await_client_hello(&ctx, &mut probe).await;
            ctx.count_ended(&probe);
            probe.reset();
        }
        if let Err(err) = reset_mid_upgrade(&ctx.target).await {
            tracing::debug!(cause = %err, "torn upgrade could not connect");
        }
        // After the handshake and a short stream, each way of hanging up.
        for hangup in [
            Hangup::Close,
            Hangup::EndThenClose,
            Hangup::Reset,
            Hangup::ResetMidFrame,
        ] {
            let label = ctx.client_id(&format!("{hangup:?}").to_lowercase(), round);
            let Some(mut dialed) = Dialed::connect(&ctx, label.clone(), &label).await else {
                continue;
            };
            if let Some(format) = dialed.pcm_formats().first().cloned() {
                if let Some(chunk_bytes) = dialed.start_stream(&format).await {
                    let stream_for = Duration::from_millis(rng.random_range(20..200));
                    stream_silence(
                        &ctx,
                        &mut dialed.probe,
                        &mut dialed.checks,
                        chunk_bytes,
                        stream_for,
                    )
                    .await;
                }
            }
            hang_up(&ctx, dialed.probe, hangup).await;
        }
        // The next server must still be accepted and obeyed.
        let label = ctx.client_id("after", round);
        if let Some(mut dialed) = Dialed::connect(&ctx, label.clone(), &label).await {
            still_obeys(
                &ctx,
                &mut dialed,
                &mut rng,
                "after servers hung up in every way",
            )
            .await;
            finish_dropped(&ctx, dialed.probe).await;
        }
    }
}

async fn hang_up(ctx: &Context, mut probe: Probe, hangup: Hangup) {
    if probe.ended().is_some() {
        return ctx.count_ended(&probe);
    }
    match hangup {
        Hangup::Close => ctx.finish(&mut probe).await,
        Hangup::EndThenClose => {
            let _ = probe.send(Message::StreamEnd(StreamEnd::default())).await;
            ctx.finish(&mut probe).await;
        }
        Hangup::Reset => {
            ctx.count_ended(&probe);
            probe.reset();
        }
        Hangup::ResetMidFrame => {
            ctx.count_ended(&probe);
            probe.reset_mid_frame(1024).await;
        }
    }
}

/// slow-consumer: a virtual server with a 4 KiB receive buffer starts a
/// stream and then stops reading, so the player's writes back up. A second
/// server then dials with `connection_reason: playback`: the player must
/// take it and obey it within the bound, whatever the stalled one does.
async fn stalled_server(ctx: Arc<Context>) {
    let mut rng = ctx.rng(0);
    let deadline = Instant::now() + ctx.duration;
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let label = ctx.client_id("stalled", round);
        let Some(mut probe) = ctx.open(label.clone(), Some(4096)).await else {
            return;
        };
        let Some(hello) = await_client_hello(&ctx, &mut probe).await else {
            ctx.finish(&mut probe).await;
            return;
        };
        Counters::add(&ctx.counters.handshakes, 1);
        let activation = activate_roles(&hello.supported_roles, &SERVER_ROLES);
        let server_hello = ServerHello {
            server_id: label.clone(),
            name: label.clone(),
            version: PROTOCOL_VERSION,
            active_roles: activation.active,
            connection_reason: ConnectionReason::Playback,
        };
        if probe
            .send(Message::ServerHello(server_hello))
            .await
            .is_err()
        {
            finish_dropped(&ctx, probe).await;
            continue;
        }
        // From here on the stalled server writes but never reads. Flooding
        // it with server/time replies the player is waiting for keeps the
        // player writing.
        let stall = tokio::time::Instant::now() + Duration::from_millis(rng.random_range(200..800));
        while tokio::time::Instant::now() < stall {
            let reply = ServerTime {
                client_transmitted: now_us(),
                server_received: now_us(),
                server_transmitted: now_us(),
            };
            if probe.send(Message::ServerTime(reply)).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let label = ctx.client_id("successor", round);
        if let Some(mut dialed) = Dialed::connect(&ctx, label.clone(), &label).await {
            still_obeys(
                &ctx,
                &mut dialed,
                &mut rng,
                "while another server had stopped reading",
            )
            .await;
            finish_dropped(&ctx, dialed.probe).await;
        }
        ctx.count_ended(&probe);
        probe.reset();
    }
}

/// reconnect-flap: one virtual server drops the player and dials it
/// again at once, as fast as it can, with one `server_id`. Each new
/// connection must get a `client/hello` and the player's time requests
/// again, and the player must obey it.
async fn reconnect_flap(ctx: Arc<Context>) {
    let mut rng = ctx.rng(0);
    let server_id = ctx.client_id("server", 0);
    let deadline = Instant::now() + ctx.duration;
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let Some(mut dialed) =
            Dialed::connect(&ctx, format!("{server_id}-flap{n}"), &server_id).await
        else {
            continue;
        };
        let until = tokio::time::Instant::now() + ctx.bound;
        let mut answered = true;
        while dialed.checks.time_requests == 0 {
            match handle_player_frame(&ctx, &mut dialed.probe, &mut dialed.checks, until).await {
                Some(true) => {}
                Some(false) => {
                    answered = false;
                    break;
                }
                None => {
                    dialed.probe.violation(
                        ViolationKind::Unresponsive,
                        format!("no client/time within {:?} of a reconnect", ctx.bound),
                    );
                    answered = false;
                    break;
                }
            }
        }
        if answered && n.is_multiple_of(4) {
            still_obeys(&ctx, &mut dialed, &mut rng, "after a reconnect").await;
        }
        let hangup = if rng.random_bool(0.5) {
            Hangup::Close
        } else {
            Hangup::Reset
        };
        hang_up(&ctx, dialed.probe, hangup).await;
    }
}

/// time-flood: one virtual server sends `server/time` replies for stamps
/// the player never sent, as fast as it can, while replying to the player's
/// real requests. The player must ignore the strays, stay connected and
/// keep obeying commands.
async fn time_flood(ctx: Arc<Context>) {
    let mut rng = ctx.rng(0);
    let label = ctx.client_id("server", 0);
    let Some(mut dialed) = Dialed::connect(&ctx, label.clone(), &label).await else {
        return;
    };
    let deadline = Instant::now() + ctx.duration;
    let mut strays = 0u64;
    while Instant::now() < deadline {
        for _ in 0..64 {
            let stray = ServerTime {
                client_transmitted: rng.random_range(0..i64::MAX / 2),
                server_received: now_us(),
                server_transmitted: now_us(),
            };
            if dialed.probe.send(Message::ServerTime(stray)).await.is_err() {
                break;
            }
            strays += 1;
        }
        if dialed.probe.ended().is_some() {
            break;
        }
        // Answer what the player sent meanwhile, without waiting.
        while let Some(true) = handle_player_frame(
            &ctx,
            &mut dialed.probe,
            &mut dialed.checks,
            tokio::time::Instant::now(),
        )
        .await
        {}
    }
    Counters::add(&ctx.counters.time_replies, strays);
    if dialed.probe.ended().is_some() {
        dialed.probe.violation(
            ViolationKind::Unresponsive,
            format!("the player left after {strays} stray server/time messages"),
        );
    } else {
        still_obeys(
            &ctx,
            &mut dialed,
            &mut rng,
            &format!("after {strays} stray server/time messages"),
        )
        .await;
    }
    finish_dropped(&ctx, dialed.probe).await;
}

/// concurrent-control: one virtual server sends bursts of volume and mute
/// commands without waiting. After each burst the player's reported state
/// must settle on the last volume and mute sent.
async fn command_burst(ctx: Arc<Context>) {
    let mut rng = ctx.rng(0);
    let label = ctx.client_id("server", 0);
    let Some(mut dialed) = Dialed::connect(&ctx, label.clone(), &label).await else {
        return;
    };
    if !dialed.supports_command("volume") || !dialed.supports_command("mute") {
        ctx.note_once(
            "the player lists neither volume nor mute among its commands, so none were sent".into(),
        );
        return finish_dropped(&ctx, dialed.probe).await;
    }
    let deadline = Instant::now() + ctx.duration;
    while Instant::now() < deadline && dialed.probe.ended().is_none() {
        let mut last = (0u8, false);
        for _ in 0..ctx.clients.clamp(2, 64) {
            last = (rng.random_range(0..=100u8), rng.random_bool(0.5));
            for command in [
                PlayerCommand {
                    command: "volume".into(),
                    volume: Some(i64::from(last.0)),
                    mute: None,
                },
                PlayerCommand {
                    command: "mute".into(),
                    volume: None,
                    mute: Some(last.1),
                },
            ] {
                let command = ServerCommand {
                    player: Some(command),
                    ..Default::default()
                };
                if dialed
                    .probe
                    .send(Message::ServerCommand(command))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        let settled = tokio::time::Instant::now() + ctx.bound;
        while dialed.checks.player.volume != Some(last.0)
            || dialed.checks.player.muted != Some(last.1)
        {
            match handle_player_frame(&ctx, &mut dialed.probe, &mut dialed.checks, settled).await {
                Some(true) => {}
                Some(false) => break,
                None => {
                    dialed.probe.violation(
                        ViolationKind::InconsistentState,
                        format!(
                            "the player reports volume {:?} muted {:?} {:?} after a burst that ended with volume {} muted {}",
                            dialed.checks.player.volume, dialed.checks.player.muted, ctx.bound, last.0, last.1
                        ),
                    );
                    break;
                }
            }
        }
    }
    finish_dropped(&ctx, dialed.probe).await;
}
