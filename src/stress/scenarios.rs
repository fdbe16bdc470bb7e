//! Stress scenarios: the actions of each virtual client and the checks it applies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{watch, Barrier, Notify, Semaphore};
use tokio::task::JoinSet;

use super::check::{Seen, ViolationKind, Violations};
use super::probe::{reset_mid_upgrade, Ending, Probe, Target};
use super::report::{Counters, Latencies, Measure};
use super::Scenario;
use crate::clock::now_us;
use crate::protocol::{
    ArtworkChannelSupport, ArtworkSupport, ClientCommand, ClientHello, ClientState,
    ClientStateKind, ControllerCommand, DeviceInfo, GoodbyeReason, Message, PlayerState,
    PlayerSupport, SupportedFormat, PROTOCOL_VERSION,
};

/// Settings and shared records of one scenario, used by all its virtual clients.
pub struct Context {
    pub target: Target,
    pub scenario: Scenario,
    pub violations: Violations,
    pub counters: Arc<Counters>,
    pub latencies: Arc<Latencies>,
    pub duration: Duration,
    pub clients: usize,
    pub rate: Option<f64>,
    /// Roles of the handshake storm's clients. `None` mixes them at random.
    pub storm_roles: Option<Roles>,
    pub seed: u64,
    /// Maximum time the target has for each awaited reaction: a reply to a
    /// hello, a close, dropping a slow consumer, the start of audio.
    pub bound: Duration,
    /// Prefix of every `client_id`, unique to the run.
    pub id_prefix: String,
    /// Whether the target is a player that waits for servers, so the
    /// virtual clients act as servers.
    pub against_player: bool,
    pub notes: std::sync::Mutex<Vec<String>>,
}

impl Context {
    pub(super) fn name(&self) -> &'static str {
        self.scenario.as_str()
    }

    pub(super) fn rng(&self, stream: u64) -> StdRng {
        StdRng::seed_from_u64(self.seed ^ (stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.duration
    }

    pub(super) fn note(&self, note: String) {
        self.notes.lock().expect("notes lock poisoned").push(note);
    }

    pub(super) fn note_once(&self, note: String) {
        let mut notes = self.notes.lock().expect("notes lock poisoned");
        if !notes.contains(&note) {
            notes.push(note);
        }
    }

    pub(super) fn client_id(&self, kind: &str, n: u64) -> String {
        format!("{}-{}-{kind}-{n}", self.id_prefix, self.name())
    }

    /// Opens a connection and counts it. A failure is counted as a connect
    /// failure, logged at debug level, and returns `None`.
    pub(super) async fn open(&self, label: String, receive_buffer: Option<u32>) -> Option<Probe> {
        match Probe::open(
            &self.target,
            self.name(),
            label,
            &self.violations,
            receive_buffer,
        )
        .await
        {
            Ok((mut probe, times)) => {
                if self.against_player {
                    probe.act_as_server();
                }
                Counters::add(&self.counters.opened, 1);
                self.latencies.record(Measure::Connect, times.connect);
                Some(probe)
            }
            Err(err) => {
                Counters::add(&self.counters.connect_failures, 1);
                tracing::debug!(cause = %err, "connect failed");
                None
            }
        }
    }

    /// Opens a connection and completes the handshake with `roles`. Players
    /// also send their first `client/state`.
    async fn join(&self, client_id: String, roles: Roles) -> Option<(Probe, Instant)> {
        let mut probe = self.open(client_id.clone(), None).await?;
        let started = Instant::now();
        let hello = hello(&client_id, roles);
        match probe.handshake(hello, self.bound).await {
            Ok(_) => {
                self.latencies.record(Measure::Handshake, started.elapsed());
                Counters::add(&self.counters.handshakes, 1);
            }
            Err(_) => {
                self.finish(&mut probe).await;
                return None;
            }
        }
        if roles.player
            && probe
                .send(Message::ClientState(initial_state()))
                .await
                .is_err()
        {
            self.finish(&mut probe).await;
            return None;
        }
        Some((probe, started))
    }

    /// Closes `probe` with a close handshake unless it already ended, and
    /// counts it as closed.
    pub(super) async fn finish(&self, probe: &mut Probe) {
        if probe.ended().is_none() {
            let ending = probe.close(self.bound).await;
            self.expect_clean(probe, &ending, "after the client's close frame");
        }
        self.count_ended(probe);
    }

    /// Counts `probe` as closed, with the audio chunks it received.
    pub(super) fn count_ended(&self, probe: &Probe) {
        self.count_chunks(probe);
        Counters::add(&self.counters.closed, 1);
    }

    fn count_chunks(&self, probe: &Probe) {
        Counters::add(&self.counters.audio_chunks, probe.check.audio_chunks());
    }

    /// Records a violation unless the server ended the connection with a
    /// close frame.
    fn expect_clean(&self, probe: &Probe, ending: &Ending, when: &str) {
        match ending {
            Ending::Closed { .. } => {}
            Ending::Timeout => probe.violation(
                ViolationKind::NotClosed,
                format!("connection still open {when}, {:?} later", self.bound),
            ),
            Ending::Eof | Ending::Failed(_) => probe.violation(
                ViolationKind::UncleanClose,
                format!("connection ended without a close frame {when}: {ending:?}"),
            ),
        }
    }

    /// Waits for the first audio chunk, recording how long it took since
    /// `since`; records `NoAudio` when none comes within the bound.
    async fn first_audio(&self, probe: &mut Probe, since: Instant) -> bool {
        let deadline = tokio::time::Instant::now() + self.bound;
        loop {
            match probe.next_until(deadline).await {
                Ok(Seen::Audio) => {
                    self.latencies.record(Measure::FirstAudio, since.elapsed());
                    return true;
                }
                Ok(_) => {}
                Err(Ending::Timeout) => {
                    probe.violation(
                        ViolationKind::NoAudio,
                        format!(
                            "no audio chunk within {:?} of joining a playing group",
                            self.bound
                        ),
                    );
                    return false;
                }
                Err(_) => return false,
            }
        }
    }

    /// Sends one `client/time` and waits for its reply, recording the round
    /// trip as `measure`.
    async fn time_exchange(&self, probe: &mut Probe, measure: Measure) -> bool {
        let sent = Instant::now();
        if probe.send_time().await.is_err() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + self.bound;
        loop {
            match probe.next_until(deadline).await {
                Ok(Seen::Message(Message::ServerTime(_))) => {
                    self.latencies.record(measure, sent.elapsed());
                    Counters::add(&self.counters.time_replies, 1);
                    return true;
                }
                Ok(_) => {}
                Err(Ending::Timeout) => {
                    probe.violation(
                        ViolationKind::Unresponsive,
                        format!("no server/time within {:?}", self.bound),
                    );
                    return false;
                }
                Err(_) => return false,
            }
        }
    }

    /// Checks that the target still completes a handshake.
    async fn check_alive(&self, after: &str) {
        let label = self.client_id("health", now_us() as u64);
        match self.join(label.clone(), Roles::CONTROLLER).await {
            Some((mut probe, _)) => self.finish(&mut probe).await,
            None => self.violations.record(
                ViolationKind::Unresponsive,
                self.name(),
                &label,
                format!("a new session could not complete its handshake {after}"),
                None,
            ),
        }
    }
}

/// Role families that a virtual client requests in its hello.
#[derive(Clone, Copy, Debug)]
pub struct Roles {
    pub player: bool,
    pub controller: bool,
    pub metadata: bool,
    pub artwork: bool,
}

impl Roles {
    pub const PLAYER: Roles = Roles {
        player: true,
        controller: false,
        metadata: false,
        artwork: false,
    };
    pub const CONTROLLER: Roles = Roles {
        player: false,
        controller: true,
        metadata: false,
        artwork: false,
    };

    /// Parses a comma-separated list of role families, such as
    /// `player,controller`.
    pub fn parse(text: &str) -> Result<Roles, String> {
        let mut roles = Roles {
            player: false,
            controller: false,
            metadata: false,
            artwork: false,
        };
        for name in text.split(',').map(str::trim) {
            match name {
                "player" => roles.player = true,
                "controller" => roles.controller = true,
                "metadata" => roles.metadata = true,
                "artwork" => roles.artwork = true,
                other => {
                    return Err(format!(
                        "unknown role {other:?} in {text:?}: expected mixed or a comma-separated list of player, controller, metadata, artwork"
                    ))
                }
            }
        }
        Ok(roles)
    }

    /// Draws a role mix from `rng`, uniformly over every combination with at
    /// least one role.
    fn random(rng: &mut StdRng) -> Roles {
        let bits: u8 = rng.random_range(1..16);
        Roles {
            player: bits & 1 != 0,
            controller: bits & 2 != 0,
            metadata: bits & 4 != 0,
            artwork: bits & 8 != 0,
        }
    }
}

/// PCM formats that virtual players advertise. With PCM, the checks can
/// compute every chunk's duration from its length.
fn pcm_formats() -> Vec<SupportedFormat> {
    [(48_000, 16), (44_100, 16)]
        .into_iter()
        .map(|(sample_rate, bit_depth)| SupportedFormat {
            codec: "pcm".into(),
            channels: 2,
            sample_rate,
            bit_depth,
        })
        .collect()
}

pub fn hello(client_id: &str, roles: Roles) -> ClientHello {
    let mut supported_roles = Vec::new();
    if roles.player {
        supported_roles.push("player@v1".to_string());
    }
    if roles.controller {
        supported_roles.push("controller@v1".to_string());
    }
    if roles.metadata {
        supported_roles.push("metadata@v1".to_string());
    }
    if roles.artwork {
        supported_roles.push("artwork@v1".to_string());
    }
    ClientHello {
        client_id: client_id.to_string(),
        name: client_id.to_string(),
        device_info: Some(DeviceInfo {
            product_name: Some("resonate stress".into()),
            manufacturer: None,
            software_version: Some(env!("CARGO_PKG_VERSION").into()),
        }),
        version: PROTOCOL_VERSION,
        supported_roles,
        player_support: roles.player.then(|| PlayerSupport {
            supported_formats: pcm_formats(),
            buffer_capacity: 2_000_000,
            supported_commands: vec!["volume".into(), "mute".into()],
        }),
        artwork_support: roles.artwork.then(|| ArtworkSupport {
            channels: vec![ArtworkChannelSupport {
                source: "album".into(),
                format: "jpeg".into(),
                media_width: 256,
                media_height: 256,
            }],
        }),
        visualizer_support: None,
        extra: Default::default(),
    }
}

fn initial_state() -> ClientState {
    ClientState {
        state: Some(ClientStateKind::Synchronized),
        player: Some(PlayerState {
            volume: Some(100),
            muted: Some(false),
        }),
        extra: Default::default(),
    }
}

/// Runs `scenario` to completion.
pub async fn run(ctx: Arc<Context>) {
    if ctx.against_player {
        return super::player_target::run(ctx).await;
    }
    match ctx.scenario {
        Scenario::HandshakeStorm => handshake_storm(ctx).await,
        Scenario::Churn => churn(ctx).await,
        Scenario::SameId => same_id(ctx).await,
        Scenario::Goodbyes => goodbyes(ctx).await,
        Scenario::SlowConsumer => slow_consumer(ctx).await,
        Scenario::ReconnectFlap => reconnect_flap(ctx).await,
        Scenario::TimeFlood => time_flood(ctx).await,
        Scenario::ConcurrentControl => concurrent_control(ctx).await,
        Scenario::NoiseAbuse => super::noise_abuse::run(ctx).await,
        Scenario::FanOut => fan_out(ctx).await,
    }
}

/// Start schedule shared by all workers: one start every `1 / rate`
/// seconds, or no waiting when no rate is set.
struct Pacer {
    started: Instant,
    interval: Option<Duration>,
    issued: AtomicU64,
}

impl Pacer {
    fn new(rate: Option<f64>) -> Pacer {
        Pacer {
            started: Instant::now(),
            interval: rate.map(|r| Duration::from_secs_f64(1.0 / r)),
            issued: AtomicU64::new(0),
        }
    }

    async fn wait_turn(&self) {
        if let Some(interval) = self.interval {
            let n = self.issued.fetch_add(1, Ordering::Relaxed);
            let at = self.started + interval.mul_f64(n as f64);
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

async fn handshake_storm(ctx: Arc<Context>) {
    let deadline = ctx.deadline();
    let pacer = Arc::new(Pacer::new(ctx.rate));
    let mut workers = JoinSet::new();
    for worker in 0..ctx.clients as u64 {
        let ctx = ctx.clone();
        let pacer = pacer.clone();
        workers.spawn(async move {
            let mut rng = ctx.rng(worker);
            let mut n = 0u64;
            while Instant::now() < deadline {
                pacer.wait_turn().await;
                if Instant::now() >= deadline {
                    break;
                }
                n += 1;
                let client_id = ctx.client_id(&format!("w{worker}"), n);
                let roles = ctx.storm_roles.unwrap_or_else(|| Roles::random(&mut rng));
                let Some((mut probe, _)) = ctx.join(client_id, roles).await else {
                    continue;
                };
                if rng.random_bool(0.25) {
                    ctx.time_exchange(&mut probe, Measure::FirstTimeRtt).await;
                }
                // The goodbye goes out in one write with the close frame
                // that `finish` sends.
                if rng.random_bool(0.5) {
                    let _ = probe.queue_goodbye(GoodbyeReason::Shutdown).await;
                }
                ctx.finish(&mut probe).await;
            }
        });
    }
    workers.join_all().await;
}

async fn churn(ctx: Arc<Context>) {
    let deadline = ctx.deadline();
    let mut survivors = JoinSet::new();
    for n in 0..2 {
        let ctx = ctx.clone();
        survivors.spawn(async move {
            let Some((mut probe, joined)) =
                ctx.join(ctx.client_id("survivor", n), Roles::PLAYER).await
            else {
                return;
            };
            probe.check.check_continuity = true;
            ctx.time_exchange(&mut probe, Measure::FirstTimeRtt).await;
            if !ctx.first_audio(&mut probe, joined).await {
                ctx.finish(&mut probe).await;
                return;
            }
            watch_undisturbed(&ctx, &mut probe, deadline + Duration::from_millis(500)).await;
            ctx.finish(&mut probe).await;
        });
    }
    // Let the survivors start the group before the churn begins.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut churners = JoinSet::new();
    for worker in 0..ctx.clients as u64 {
        let ctx = ctx.clone();
        churners.spawn(async move {
            let mut rng = ctx.rng(worker);
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                let Some((mut probe, joined)) = ctx
                    .join(ctx.client_id(&format!("w{worker}"), n), Roles::PLAYER)
                    .await
                else {
                    continue;
                };
                probe.check.check_first_chunk_future = true;
                probe.check.check_continuity = true;
                ctx.time_exchange(&mut probe, Measure::FirstTimeRtt).await;
                if ctx.first_audio(&mut probe, joined).await {
                    let stay = Duration::from_millis(rng.random_range(20..1_500));
                    let _ = probe.drain(stay).await;
                }
                leave_somehow(&ctx, probe, &mut rng).await;
            }
        });
    }
    churners.join_all().await;
    survivors.join_all().await;
}

/// Reads until `until`, recording anything that disturbs a session that
/// only listens: the end or clearing of its stream, or its connection.
async fn watch_undisturbed(ctx: &Context, probe: &mut Probe, until: Instant) {
    let deadline = tokio::time::Instant::from_std(until);
    loop {
        match probe.next_until(deadline).await {
            Ok(Seen::Message(Message::StreamEnd(_))) => probe.violation(
                ViolationKind::NeighbourDisturbed,
                "stream/end reached a member that stayed while others came and went".into(),
            ),
            Ok(Seen::Message(Message::StreamClear(_))) => probe.violation(
                ViolationKind::NeighbourDisturbed,
                "stream/clear reached a member that stayed while others came and went".into(),
            ),
            Ok(_) => {}
            Err(Ending::Timeout) => return,
            Err(ending) => {
                probe.violation(
                    ViolationKind::NeighbourDisturbed,
                    format!("the server ended a member that stayed while others came and went: {ending:?}"),
                );
                return;
            }
        }
        if probe.ended().is_some() {
            return;
        }
        let _ = ctx;
    }
}

/// Ends a connection in one of the ways real clients do.
async fn leave_somehow(ctx: &Context, mut probe: Probe, rng: &mut StdRng) {
    match rng.random_range(0..4) {
        0 => {
            let _ = probe.goodbye(GoodbyeReason::UserRequest).await;
            ctx.finish(&mut probe).await;
        }
        1 => ctx.finish(&mut probe).await,
        2 => {
            ctx.count_ended(&probe);
            probe.reset();
        }
        _ => {
            ctx.count_ended(&probe);
            probe.reset_mid_frame(512).await;
        }
    }
}

async fn same_id(ctx: Arc<Context>) {
    let deadline = ctx.deadline();
    let sockets = ctx.clients.clamp(2, 64);
    let mut round = 0;
    while round == 0 || Instant::now() < deadline {
        round += 1;
        let client_id = ctx.client_id("shared", round);
        let barrier = Arc::new(Barrier::new(sockets));
        let mut contenders = JoinSet::new();
        for n in 0..sockets {
            let ctx = ctx.clone();
            let barrier = barrier.clone();
            let client_id = client_id.clone();
            contenders.spawn(async move {
                let probe = ctx.open(format!("{client_id}#{n}"), None).await;
                barrier.wait().await;
                let mut probe = probe?;
                let started = Instant::now();
                let result = probe
                    .handshake(hello(&client_id, Roles::PLAYER), ctx.bound)
                    .await;
                if result.is_ok() {
                    ctx.latencies.record(Measure::Handshake, started.elapsed());
                    Counters::add(&ctx.counters.handshakes, 1);
                    let _ = probe.send(Message::ClientState(initial_state())).await;
                }
                // The losers are closed within the bound; the survivor
                // stays open.
                let ending = probe.drain(ctx.bound).await;
                Some((probe, ending))
            });
        }
        let results: Vec<(Probe, Ending)> =
            contenders.join_all().await.into_iter().flatten().collect();
        let survivors = results
            .iter()
            .filter(|(_, ending)| *ending == Ending::Timeout)
            .count();
        if survivors != 1 && !results.is_empty() {
            ctx.violations.record(
                ViolationKind::SurvivorCount,
                ctx.name(),
                &client_id,
                format!(
                    "{survivors} of {} sessions with one client_id survived; exactly one should",
                    results.len()
                ),
                None,
            );
        }
        for (mut probe, ending) in results {
            if ending != Ending::Timeout {
                ctx.expect_clean(&probe, &ending, "when a newer session replaced it");
                ctx.count_ended(&probe);
            } else {
                ctx.finish(&mut probe).await;
            }
        }
    }
}

async fn goodbyes(ctx: Arc<Context>) {
    let deadline = ctx.deadline();
    let reasons = [
        GoodbyeReason::AnotherServer,
        GoodbyeReason::Shutdown,
        GoodbyeReason::Restart,
        GoodbyeReason::UserRequest,
    ];
    let mut round = 0;
    while round == 0 || Instant::now() < deadline {
        round += 1;
        let mut endings = JoinSet::new();
        for (n, reason) in reasons.into_iter().enumerate() {
            let ctx = ctx.clone();
            endings.spawn(async move {
                let id = ctx.client_id(&format!("{}-r{round}", reason.as_str()), n as u64);
                if let Some((mut probe, _)) = ctx.join(id, Roles::PLAYER).await {
                    if probe.goodbye(reason).await.is_ok() {
                        ctx.finish(&mut probe).await;
                    }
                }
            });
        }
        let abrupt = ctx.clone();
        endings.spawn(async move {
            let ctx = abrupt;
            // A close frame without goodbye.
            if let Some((mut probe, _)) =
                ctx.join(ctx.client_id("close", round), Roles::PLAYER).await
            {
                ctx.finish(&mut probe).await;
            }
            // A reset after the handshake.
            if let Some((probe, _)) = ctx.join(ctx.client_id("reset", round), Roles::PLAYER).await {
                ctx.count_ended(&probe);
                probe.reset();
            }
            // A reset in the middle of a frame.
            if let Some((probe, _)) = ctx
                .join(ctx.client_id("reset-mid-frame", round), Roles::PLAYER)
                .await
            {
                ctx.count_ended(&probe);
                probe.reset_mid_frame(4096).await;
            }
            // A reset after the upgrade, before any hello.
            if let Some(probe) = ctx
                .open(ctx.client_id("reset-before-hello", round), None)
                .await
            {
                ctx.count_ended(&probe);
                probe.reset();
            }
            // A close frame before any hello.
            if let Some(mut probe) = ctx
                .open(ctx.client_id("close-before-hello", round), None)
                .await
            {
                ctx.finish(&mut probe).await;
            }
            // A reset in the middle of the HTTP upgrade.
            if reset_mid_upgrade(&ctx.target).await.is_err() {
                Counters::add(&ctx.counters.connect_failures, 1);
            }
        });
        endings.join_all().await;
        ctx.check_alive("after goodbyes and abrupt endings").await;
    }
}

/// Ways a slow consumer ends.
#[derive(Clone, Copy, Debug)]
enum Stall {
    /// Stops reading and stays.
    Plain,
    /// Says goodbye, then stops reading and stays.
    AfterGoodbye,
    /// Stops reading, then resets the connection halfway through the bound.
    ThenReset,
}

async fn slow_consumer(ctx: Arc<Context>) {
    let deadline = ctx.deadline();
    let mut round = 0;
    while round == 0 || Instant::now() < deadline {
        round += 1;
        let witness_until = Instant::now() + ctx.bound + Duration::from_secs(2);
        let mut witnesses = JoinSet::new();
        for n in 0..2 {
            let ctx = ctx.clone();
            witnesses.spawn(async move {
                let Some((mut probe, joined)) = ctx
                    .join(
                        ctx.client_id(&format!("witness-r{round}"), n),
                        Roles::PLAYER,
                    )
                    .await
                else {
                    return;
                };
                probe.check.check_continuity = true;
                if ctx.first_audio(&mut probe, joined).await {
                    watch_undisturbed(&ctx, &mut probe, witness_until).await;
                }
                ctx.finish(&mut probe).await;
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut stalls = JoinSet::new();
        for (n, stall) in [Stall::Plain, Stall::AfterGoodbye, Stall::ThenReset]
            .into_iter()
            .enumerate()
        {
            let ctx = ctx.clone();
            stalls.spawn(async move { stall_once(&ctx, stall, round, n as u64).await });
        }
        stalls.join_all().await;
        witnesses.join_all().await;
    }
}

async fn stall_once(ctx: &Context, stall: Stall, round: u64, n: u64) {
    let id = ctx.client_id(&format!("slow-r{round}"), n);
    let Some(mut probe) = ctx.open(id.clone(), Some(4096)).await else {
        return;
    };

    let mut hello = hello(&id, Roles::PLAYER);
    if let Some(support) = &mut hello.player_support {
        // The richest PCM a server is likely to produce, so the backlog
        // builds fast, and room for it all.
        support.supported_formats.insert(
            0,
            SupportedFormat {
                codec: "pcm".into(),
                channels: 2,
                sample_rate: 96_000,
                bit_depth: 24,
            },
        );
        support.buffer_capacity = 64 << 20;
    }
    if probe.handshake(hello, ctx.bound).await.is_err() {
        ctx.finish(&mut probe).await;
        return;
    }
    Counters::add(&ctx.counters.handshakes, 1);
    let _ = probe.send(Message::ClientState(initial_state())).await;

    // Stop reading, in the way `stall` describes.
    if matches!(stall, Stall::AfterGoodbye) {
        let _ = probe.goodbye(GoodbyeReason::UserRequest).await;
    }
    if matches!(stall, Stall::ThenReset) {
        tokio::time::sleep(ctx.bound / 2).await;
        ctx.count_ended(&probe);
        probe.reset();
        return;
    }
    tokio::time::sleep(ctx.bound).await;

    // On loopback, whatever the server had queued drains within moments. A
    // server that still streams keeps the connection busy past that.
    match probe.drain(Duration::from_secs(2)).await {
        Ending::Timeout => {
            probe.violation(
                ViolationKind::SlowConsumerKept,
                format!(
                    "a client that stopped reading ({stall:?}) was still served {:?} later",
                    ctx.bound
                ),
            );
            ctx.finish(&mut probe).await;
        }
        _ => {
            ctx.count_ended(&probe);
        }
    }
}

async fn reconnect_flap(ctx: Arc<Context>) {
    let deadline = ctx.deadline();
    // An anchor player keeps the group playing while the others flap.
    let anchor_ctx = ctx.clone();
    let anchor = tokio::spawn(async move {
        let ctx = anchor_ctx;
        let Some((mut probe, joined)) = ctx.join(ctx.client_id("anchor", 0), Roles::PLAYER).await
        else {
            return;
        };
        if ctx.first_audio(&mut probe, joined).await {
            let _ = probe
                .drain(
                    deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(500),
                )
                .await;
        }
        ctx.finish(&mut probe).await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut workers = JoinSet::new();
    for worker in 0..ctx.clients.clamp(1, 16) as u64 {
        let ctx = ctx.clone();
        workers.spawn(async move {
            let mut rng = ctx.rng(worker);
            let client_id = ctx.client_id("flap", worker);
            while Instant::now() < deadline {
                let Some((mut probe, joined)) = ctx.join(client_id.clone(), Roles::PLAYER).await
                else {
                    continue;
                };
                probe.check.check_first_chunk_future = true;
                // This stamp belongs to this session only, so a reply to it on
                // a later session is an old session's message leaking into the new one.
                ctx.time_exchange(&mut probe, Measure::FirstTimeRtt).await;
                ctx.first_audio(&mut probe, joined).await;
                if rng.random_bool(0.5) {
                    let _ = probe.send_time().await;
                    ctx.count_ended(&probe);
                    probe.reset();
                } else {
                    let _ = probe.goodbye(GoodbyeReason::Restart).await;
                    ctx.finish(&mut probe).await;
                }
            }
        });
    }
    workers.join_all().await;
    let _ = anchor.await;
}

/// Number of `client/time` requests that a flooding client keeps in flight.
const TIME_WINDOW: usize = 32;

async fn time_flood(ctx: Arc<Context>) {
    let deadline = ctx.deadline();
    let mut workers = JoinSet::new();
    for worker in 0..ctx.clients.clamp(1, 8) as u64 {
        let ctx = ctx.clone();
        workers.spawn(async move {
            let Some((mut probe, _)) = ctx
                .join(ctx.client_id("flood", worker), Roles::CONTROLLER)
                .await
            else {
                return;
            };
            let mut in_flight = std::collections::VecDeque::new();
            let mut sent = 0u64;
            let mut answered = 0u64;
            'flood: while Instant::now() < deadline {
                while in_flight.len() < TIME_WINDOW {
                    if probe.send_time().await.is_err() {
                        break 'flood;
                    }
                    in_flight.push_back(Instant::now());
                    sent += 1;
                }
                match probe.next(ctx.bound).await {
                    Ok(Seen::Message(Message::ServerTime(_))) => {
                        if let Some(at) = in_flight.pop_front() {
                            ctx.latencies.record(Measure::TimeRtt, at.elapsed());
                        }
                        answered += 1;
                        Counters::add(&ctx.counters.time_replies, 1);
                    }
                    Ok(_) => {}
                    Err(Ending::Timeout) => {
                        probe.violation(
                            ViolationKind::Unresponsive,
                            format!("no server/time within {:?} under a flood", ctx.bound),
                        );
                        break;
                    }
                    Err(_) => break,
                }
            }
            // Collect the replies still in flight.
            let settle = tokio::time::Instant::now() + ctx.bound;
            while !in_flight.is_empty() && probe.ended().is_none() {
                match probe.next_until(settle).await {
                    Ok(Seen::Message(Message::ServerTime(_))) => {
                        in_flight.pop_front();
                        answered += 1;
                        Counters::add(&ctx.counters.time_replies, 1);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            if answered < sent && probe.ended().is_none() {
                probe.violation(
                    ViolationKind::Unresponsive,
                    format!(
                        "{} of {sent} client/time messages got no reply",
                        sent - answered
                    ),
                );
            }
            ctx.finish(&mut probe).await;
        });
    }
    workers.join_all().await;
}

/// Number of commands that each controller sends in one burst.
const COMMANDS_PER_CONTROLLER: usize = 20;

async fn concurrent_control(ctx: Arc<Context>) {
    let controllers = ctx.clients.clamp(2, 64);
    let deadline = ctx.deadline();
    let mut round = 0;
    while round == 0 || Instant::now() < deadline {
        round += 1;
        let Some((mut player, _)) = ctx
            .join(ctx.client_id(&format!("player-r{round}"), 0), Roles::PLAYER)
            .await
        else {
            return;
        };
        let barrier = Arc::new(Barrier::new(controllers));
        let mut tasks = JoinSet::new();
        for n in 0..controllers as u64 {
            let ctx = ctx.clone();
            let barrier = barrier.clone();
            tasks.spawn(async move {
                let mut joined = ctx.join(ctx.client_id(&format!("controller-r{round}"), n), Roles::CONTROLLER).await;
                // A controller may send only the commands the server lists.
                let mut initial = None;
                if let Some((probe, _)) = &mut joined {
                    initial = last_controller_state(probe, ctx.bound, None, true).await;
                }
                barrier.wait().await;
                let (mut probe, _) = joined?;
                let supported: Vec<String> = initial
                    .as_ref()
                    .map(|(_, commands)| commands.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| c == "volume" || c == "mute")
                    .collect();
                if supported.is_empty() {
                    ctx.note_once(format!(
                        "the server lists neither volume nor mute among its controller commands ({:?}), so none were sent",
                        initial.as_ref().map(|(_, commands)| commands.clone())
                    ));
                }
                let mut rng = ctx.rng(round * 1_000 + n);
                for _ in 0..COMMANDS_PER_CONTROLLER {
                    if supported.is_empty() {
                        break;
                    }
                    let command = match supported[rng.random_range(0..supported.len())].as_str() {
                        "volume" => ControllerCommand {
                            command: "volume".into(),
                            volume: Some(rng.random_range(0..=100)),
                            mute: None,
                        },
                        _ => ControllerCommand {
                            command: "mute".into(),
                            volume: None,
                            mute: Some(rng.random_bool(0.5)),
                        },
                    };
                    let message = Message::ClientCommand(ClientCommand {
                        controller: Some(command),
                        extra: Default::default(),
                    });
                    if probe.send(message).await.is_err() {
                        break;
                    }
                }
                let last = settled_controller_state(&mut probe, ctx.bound, initial).await;
                // A controller the server closed meanwhile, such as a slow
                // consumer under overload, missed the last updates, so its
                // state is not compared.
                let closed_by_server = probe.ended().is_some();
                ctx.finish(&mut probe).await;
                if closed_by_server {
                    ctx.note_once("some controllers were closed by the server before the end, so their final state was not compared".into());
                    return Some((probe.label.clone(), None));
                }
                Some((probe.label.clone(), last.map(|(state, _)| state)))
            });
        }
        // The player follows the commands the server sends it, as a real
        // player would, and reports its state back.
        let mut volume = 100u8;
        let mut muted = false;
        let follow_until = tokio::time::Instant::now() + ctx.bound;
        let results: Vec<(String, Option<(u8, bool)>)> = {
            let collecting = tasks.join_all();
            tokio::pin!(collecting);
            loop {
                tokio::select! {
                    results = &mut collecting => break results.into_iter().flatten().collect(),
                    seen = player.next_until(follow_until) => match seen {
                        Ok(Seen::Message(Message::ServerCommand(command))) => {
                            if let Some(command) = command.player {
                                if let Some(v) = command.volume {
                                    volume = v.clamp(0, 100) as u8;
                                }
                                if let Some(m) = command.mute {
                                    muted = m;
                                }
                                let state = ClientState {
                                    state: None,
                                    player: Some(PlayerState { volume: Some(volume), muted: Some(muted) }),
                                    extra: Default::default(),
                                };
                                let _ = player.send(Message::ClientState(state)).await;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => {
                            // Stop following; the controllers finish on their own.
                            break (&mut collecting).await.into_iter().flatten().collect();
                        }
                    },
                }
            }
        };
        judge_control(&ctx, &results, volume, muted);
        ctx.finish(&mut player).await;
    }
}

/// Reads for `settle` and returns the last controller volume and mute the
/// server reported, with its list of supported commands, starting from
/// `last`. With `first_only` it returns at the first report.
async fn last_controller_state(
    probe: &mut Probe,
    settle: Duration,
    mut last: Option<((u8, bool), Vec<String>)>,
    first_only: bool,
) -> Option<((u8, bool), Vec<String>)> {
    let deadline = tokio::time::Instant::now() + settle;
    while let Ok(seen) = probe.next_until(deadline).await {
        if let Seen::Message(Message::ServerState(state)) = seen {
            if let Some(controller) = state.controller {
                last = Some((
                    (controller.volume, controller.muted),
                    controller.supported_commands,
                ));
                if first_only {
                    break;
                }
            }
        }
    }
    last
}

/// Reads until no controller state has arrived for a second, or at most
/// `bound`, and returns the last controller volume and mute. A loaded
/// client may still be reading a backlog of updates after a fixed wait, so
/// the wait ends only once the server has gone quiet.
async fn settled_controller_state(
    probe: &mut Probe,
    bound: Duration,
    mut last: Option<((u8, bool), Vec<String>)>,
) -> Option<((u8, bool), Vec<String>)> {
    const QUIET: Duration = Duration::from_secs(1);
    let limit = tokio::time::Instant::now() + bound.max(QUIET);
    loop {
        let deadline = (tokio::time::Instant::now() + QUIET).min(limit);
        match probe.next_until(deadline).await {
            Ok(Seen::Message(Message::ServerState(state))) => {
                if let Some(controller) = state.controller {
                    last = Some((
                        (controller.volume, controller.muted),
                        controller.supported_commands,
                    ));
                }
            }
            Ok(_) => {}
            Err(_) => return last,
        }
        if tokio::time::Instant::now() >= limit {
            return last;
        }
    }
}

fn judge_control(
    ctx: &Context,
    results: &[(String, Option<(u8, bool)>)],
    player_volume: u8,
    player_muted: bool,
) {
    let finals: Vec<(u8, bool)> = results.iter().filter_map(|(_, last)| *last).collect();
    let Some(first) = finals.first().copied() else {
        ctx.note(
            "no controller received a controller state, so the final state could not be compared"
                .into(),
        );
        return;
    };
    if finals.iter().any(|f| *f != first) {
        let mut distinct = finals.clone();
        distinct.sort_unstable();
        distinct.dedup();
        ctx.violations.record(
            ViolationKind::InconsistentState,
            ctx.name(),
            &results[0].0,
            format!("controllers ended with different group states (volume, muted): {distinct:?}"),
            None,
        );
    } else if first != (player_volume, player_muted) {
        ctx.violations.record(
            ViolationKind::InconsistentState,
            ctx.name(),
            &results[0].0,
            format!(
                "controllers see volume {} muted {}, but the group's only player received volume {player_volume} muted {player_muted}",
                first.0, first.1
            ),
            None,
        );
    }
}

/// Fan-out players that join at once during the ramp, well under a
/// server's default limit of 128 WebSocket handshakes in progress.
const FAN_OUT_JOINS_AT_ONCE: usize = 32;

/// `client/time` exchanges each fan-out player makes before it judges
/// chunks. The offset of the exchange with the smallest round trip counts.
const FAN_OUT_TIME_EXCHANGES: usize = 4;

/// Measures how many players the server feeds in real time: `clients`
/// players join one group, then all of them read audio for `duration` and
/// judge every chunk against its play time on the server clock. With
/// `--roles` (such as `controller`), the clients join with those roles
/// instead, which measures idle sessions when none is a player.
async fn fan_out(ctx: Arc<Context>) {
    let ramp_started = Instant::now();
    let joins = Arc::new(Semaphore::new(FAN_OUT_JOINS_AT_ONCE));
    let ramped = Arc::new(AtomicU64::new(0));
    let ramp_step = Arc::new(Notify::new());
    let (end_tx, end_rx) = watch::channel::<Option<tokio::time::Instant>>(None);
    let mut players = JoinSet::new();
    for n in 0..ctx.clients as u64 {
        let ctx = ctx.clone();
        let joins = joins.clone();
        let ramped = ramped.clone();
        let ramp_step = ramp_step.clone();
        let end_rx = end_rx.clone();
        players.spawn(async move {
            let joined = fan_out_join(&ctx, &joins, n).await;
            ramped.fetch_add(1, Ordering::Relaxed);
            ramp_step.notify_one();
            if let Some((mut probe, joined_at)) = joined {
                fan_out_listen(&ctx, &mut probe, joined_at, end_rx).await;
            }
        });
    }

    // The measurement starts once every player has joined or failed to.
    let ramp_limit = ctx.bound * 2 + Duration::from_millis(20) * ctx.clients as u32;
    let ramp_deadline = tokio::time::Instant::now() + ramp_limit;
    while ramped.load(Ordering::Relaxed) < ctx.clients as u64 {
        if tokio::time::timeout_at(ramp_deadline, ramp_step.notified())
            .await
            .is_err()
        {
            ctx.note(format!(
                "{} of {} clients had not joined after {ramp_limit:?}; measuring the others",
                ctx.clients as u64 - ramped.load(Ordering::Relaxed),
                ctx.clients
            ));
            break;
        }
    }
    let handshakes = Counters::get(&ctx.counters.handshakes);
    ctx.note(format!(
        "{handshakes} clients joined in {:.1} s; the measurement ran {:.1} s after that",
        ramp_started.elapsed().as_secs_f64(),
        ctx.duration.as_secs_f64()
    ));
    let _ = end_tx.send(Some(tokio::time::Instant::now() + ctx.duration));
    players.join_all().await;
    let judged = Counters::get(&ctx.counters.chunks_judged);
    if handshakes > 0 && judged > 0 {
        ctx.note(format!(
            "{:.1} chunks judged per player per second of measurement",
            judged as f64 / handshakes as f64 / ctx.duration.as_secs_f64()
        ));
    }
}

/// Joins as a player and measures the clock offset, at most
/// [`FAN_OUT_JOINS_AT_ONCE`] players at a time.
async fn fan_out_join(ctx: &Context, joins: &Semaphore, n: u64) -> Option<(Probe, Instant)> {
    let _permit = joins.acquire().await.ok()?;
    let roles = ctx.storm_roles.unwrap_or(Roles::PLAYER);
    let (mut probe, joined_at) = ctx.join(ctx.client_id("client", n), roles).await?;
    for exchange in 0..FAN_OUT_TIME_EXCHANGES {
        let measure = if exchange == 0 {
            Measure::FirstTimeRtt
        } else {
            Measure::TimeRtt
        };
        if !ctx.time_exchange(&mut probe, measure).await {
            break;
        }
    }
    probe.check.check_arrival = true;
    // A server that drops late chunks instead of sending them late leaves
    // gaps, which only the continuity check detects.
    probe.check.check_continuity = roles.player;
    Some((probe, joined_at))
}

/// Reads audio until the measurement ends, then counts what the player
/// judged and closes its connection.
async fn fan_out_listen(
    ctx: &Context,
    probe: &mut Probe,
    joined_at: Instant,
    end: watch::Receiver<Option<tokio::time::Instant>>,
) {
    let is_player = ctx.storm_roles.unwrap_or(Roles::PLAYER).player;
    if !is_player || ctx.first_audio(probe, joined_at).await {
        loop {
            let measurement_end = *end.borrow();
            let wait_until = measurement_end
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_millis(250));
            if measurement_end.is_some_and(|end| tokio::time::Instant::now() >= end) {
                break;
            }
            match probe.next_until(wait_until).await {
                Ok(Seen::Message(Message::StreamEnd(_))) => {
                    probe.violation(
                        ViolationKind::NeighbourDisturbed,
                        "stream/end reached a fan-out player during the measurement; serve a looping source (serve --loop)".into(),
                    );
                    break;
                }
                Ok(_) | Err(Ending::Timeout) => {}
                Err(ending) => {
                    probe.violation(
                        ViolationKind::NeighbourDisturbed,
                        format!(
                            "the server ended a fan-out player during the measurement: {ending:?}"
                        ),
                    );
                    break;
                }
            }
        }
    }
    Counters::add(&ctx.counters.chunks_judged, probe.check.chunks_judged);
    Counters::add(&ctx.counters.chunks_late, probe.check.chunks_late);
    if let (0, Some(lead_us)) = (probe.check.chunks_late, probe.check.min_lead_us) {
        let lead = Duration::from_micros(lead_us.max(0) as u64);
        ctx.latencies.record(Measure::MinChunkLead, lead);
    }
    ctx.finish(probe).await;
}
