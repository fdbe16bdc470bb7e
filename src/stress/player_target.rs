//! Storms against a player that waits for servers: virtual servers dial
//! it, stream to it and drop it, checking what the player sends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;
use tokio::task::JoinSet;

use super::check::ViolationKind;
use super::probe::{Ending, Probe};
use super::report::{Counters, Measure};
use super::scenarios::Context;
use crate::clock::now_us;
use crate::dialect::Incoming;
use crate::protocol::{
    activate_roles, BinaryFrame, BinaryKind, ClientHello, ConnectionReason, Message, ServerHello, ServerTime, StreamEnd,
    StreamStart, StreamStartPlayer, PROTOCOL_VERSION,
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

/// Runs virtual servers against the player at the target until the
/// scenario's duration is over: each dials, completes the handshake,
/// streams silence for a while and drops the connection in one of the
/// ways a server can.
pub async fn server_storm(ctx: Arc<Context>) {
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
    if probe.send(Message::ServerHello(server_hello)).await.is_err() {
        ctx.finish(&mut probe).await;
        return;
    }
    let format = hello
        .player_support
        .as_ref()
        .and_then(|support| support.supported_formats.iter().find(|f| f.codec == "pcm").cloned())
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

    match [Hangup::Close, Hangup::EndThenClose, Hangup::Reset, Hangup::ResetMidFrame][rng.random_range(0..4)] {
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
                    ctx.violations.record(ViolationKind::BadHello, ctx.name(), &probe.label, problem, text);
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
                probe.violation(ViolationKind::HelloTimeout, format!("no client/hello within {:?} of connecting", ctx.bound));
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
    if hello.supported_roles.iter().any(|r| r.starts_with("player@")) && hello.player_support.is_none() {
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
    }
}

/// State for the checks of the messages a player sends after its hello.
#[derive(Default)]
struct PlayerChecks {
    last_client_time: Option<i64>,
}

/// Handles one message from the player: replies to `client/time` and
/// checks for messages a player must not send. Returns false when the player ended the
/// connection.
async fn handle_player_frame(ctx: &Context, probe: &mut Probe, checks: &mut PlayerChecks, deadline: tokio::time::Instant) -> Option<bool> {
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
                                format!("client_transmitted went back {} µs", last - time.client_transmitted),
                                text,
                            );
                        }
                    }
                    checks.last_client_time = Some(time.client_transmitted);
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
                    probe.violation(ViolationKind::DuplicateHello, "second client/hello on one connection".into());
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
async fn stream_silence(ctx: &Context, probe: &mut Probe, checks: &mut PlayerChecks, chunk_bytes: usize, duration: Duration) -> bool {
    let until = Instant::now() + duration;
    let mut next_chunk_us = now_us() + LEAD_US;
    let silence = vec![0u8; chunk_bytes];
    let mut tick = tokio::time::interval(Duration::from_micros(CHUNK_US as u64));
    while Instant::now() < until {
        tick.tick().await;
        let frame = BinaryFrame {
            kind: BinaryKind::Audio,
            timestamp_us: next_chunk_us,
            payload: silence.clone(),
        };
        if probe.send_binary(frame).await.is_err() {
            return false;
        }
        Counters::add(&ctx.counters.audio_chunks, 1);
        next_chunk_us += CHUNK_US;
        // Answer what the player sent meanwhile, without waiting.
        loop {
            match handle_player_frame(ctx, probe, checks, tokio::time::Instant::now() + Duration::from_millis(1)).await {
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
async fn answer_for(ctx: &Context, probe: &mut Probe, checks: &mut PlayerChecks, duration: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + duration;
    loop {
        match handle_player_frame(ctx, probe, checks, deadline).await {
            Some(true) => {}
            Some(false) => return false,
            None => return true,
        }
    }
}
