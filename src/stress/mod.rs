//! Stress runs: storms of virtual clients against a server. Each client
//! checks the protocol and the session lifecycle as it goes, and the run
//! reports every violation found.

mod check;
mod noise_abuse;
mod player_target;
mod probe;
mod report;
mod scenarios;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use check::{Violation, ViolationGroup, ViolationKind, Violations};
pub use probe::{Ending, Probe, Target};
pub use report::{Counters, LatencySummary, Report, ScenarioReport};
pub use scenarios::{hello, Roles};

use crate::server::{ServerStats, StatsSnapshot};
use crate::telemetry::{unix_ms_now, Event, EventKind, Phase, Snapshot, Telemetry};
use tokio::sync::watch;

/// Time allowed for an embedded server to release everything after a
/// scenario's last client has gone.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A scenario of a stress run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    HandshakeStorm,
    Churn,
    SameId,
    Goodbyes,
    SlowConsumer,
    ReconnectFlap,
    TimeFlood,
    ConcurrentControl,
    NoiseAbuse,
    FanOut,
}

impl Scenario {
    /// Measurements, named with `--scenario` only: `all` leaves them out.
    pub const MEASUREMENTS: [Scenario; 1] = [Scenario::FanOut];

    /// Returns every scenario that `--scenario` accepts by name.
    pub fn named() -> impl Iterator<Item = Scenario> {
        Scenario::ALL.into_iter().chain(Scenario::MEASUREMENTS)
    }

    /// The checks that `all` runs.
    pub const ALL: [Scenario; 9] = [
        Scenario::HandshakeStorm,
        Scenario::Churn,
        Scenario::SameId,
        Scenario::Goodbyes,
        Scenario::SlowConsumer,
        Scenario::ReconnectFlap,
        Scenario::TimeFlood,
        Scenario::ConcurrentControl,
        Scenario::NoiseAbuse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::HandshakeStorm => "handshake-storm",
            Scenario::Churn => "churn",
            Scenario::SameId => "same-id",
            Scenario::Goodbyes => "goodbyes",
            Scenario::SlowConsumer => "slow-consumer",
            Scenario::ReconnectFlap => "reconnect-flap",
            Scenario::TimeFlood => "time-flood",
            Scenario::ConcurrentControl => "concurrent-control",
            Scenario::NoiseAbuse => "noise-abuse",
            Scenario::FanOut => "fan-out",
        }
    }

    /// Returns a one-sentence description of what the scenario does and checks.
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::HandshakeStorm => {
                "open, hello and close at --rate (or as fast as possible) with mixed roles; every session gets exactly one server/hello in time and closes cleanly"
            }
            Scenario::Churn => {
                "players join and leave a playing group at random while two stay; the two see no gap, overlap, stream/end or stream/clear, and joiners' first chunks are not late"
            }
            Scenario::SameId => {
                "many sockets send a hello with one client_id at once; exactly one survives and every other gets a close frame"
            }
            Scenario::Goodbyes => {
                "each goodbye reason, a close without goodbye, resets after the handshake, mid-frame, before hello and mid-upgrade; the server closes cleanly and keeps responding"
            }
            Scenario::SlowConsumer => {
                "players stop reading (plainly, after a goodbye, then with a reset); the server drops them within --bound and two listening neighbours are not disturbed"
            }
            Scenario::ReconnectFlap => {
                "players reconnect with the same client_id as fast as possible; each new session gets audio again and no reply meant for an old session"
            }
            Scenario::TimeFlood => {
                "clients keep 32 client/time messages in flight; every reply echoes a sent stamp, is causal and monotonic, and none is missing"
            }
            Scenario::ConcurrentControl => {
                "many controllers send volume and mute commands at once; all controllers and the player end with the same group state"
            }
            Scenario::NoiseAbuse => {
                "Sendspin 1.0 only: a wrong suite, a malformed client_id, truncated and forged Noise messages, cleartext after the handshake and an orphan fragment; the server answers none of them, closes each connection, and still serves clean clients"
            }
            Scenario::FanOut => {
                "--clients players join one group and only read audio for --duration seconds after the last joined; every chunk must arrive before its play time (not part of all)"
            }
        }
    }
}

impl Scenario {
    /// Returns a one-sentence description of what the scenario does and
    /// checks against a player (`--player`), where the virtual clients act
    /// as servers.
    pub fn describe_against_player(self) -> &'static str {
        match self {
            Scenario::HandshakeStorm => {
                "servers dial, hello, stream silence briefly and hang up in one of four ways; the player sends one valid client/hello in time and answers close frames"
            }
            Scenario::Churn => {
                "one server restarts, clears and ends the stream in the player's PCM formats; the player stays connected and keeps obeying commands"
            }
            Scenario::SameId => {
                "up to 16 servers with one server_id send server/hello at once; exactly one connection survives and the player closes the others cleanly"
            }
            Scenario::Goodbyes => {
                "servers hang up in every way, before server/hello, mid-upgrade, after a stream; the player accepts and obeys the next server"
            }
            Scenario::SlowConsumer => {
                "a server stops reading while flooding the player; a second server takes over and the player obeys it within --bound"
            }
            Scenario::ReconnectFlap => {
                "one server_id drops the player and dials again as fast as possible; each new connection gets a client/hello and client/time in time"
            }
            Scenario::TimeFlood => {
                "a server floods server/time replies for stamps the player never sent; the player stays connected and keeps obeying commands"
            }
            Scenario::ConcurrentControl => {
                "a server sends bursts of volume and mute commands without waiting; the player's reported state settles on the last of each"
            }
            Scenario::NoiseAbuse => "not run against players: it needs a Sendspin 1.0 server",
            Scenario::FanOut => {
                "not available against a player"
            }
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Scenario::named()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::named().map(|s| s.as_str()).collect();
                format!(
                    "unknown scenario {text:?}: expected `all` or one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Settings of a stress run.
#[derive(Clone, Debug)]
pub struct StressConfig {
    pub target: Target,
    pub scenarios: Vec<Scenario>,
    /// How long each scenario runs.
    pub duration: Duration,
    /// Concurrent virtual clients (workers) per scenario.
    pub clients: usize,
    /// Target rate of new sessions per second for the handshake storm.
    pub rate: Option<f64>,
    /// Roles of the handshake storm's clients. `None` mixes them at random.
    pub storm_roles: Option<Roles>,
    pub seed: u64,
    /// Maximum time the target has for each awaited reaction (a hello reply,
    /// a close, dropping a slow consumer, the start of audio).
    pub bound: Duration,
    /// Whether the target is a player that waits for servers; the virtual
    /// clients then dial it as servers, and only the handshake storm runs.
    pub against_player: bool,
    /// Hub that gets scenario starts and ends and the first violations.
    pub telemetry: Option<Telemetry>,
}

/// Live counters of the scenario that is running, for a progress line.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub counters: Arc<Counters>,
    pub violations: Option<Violations>,
    pub scenario: Option<Scenario>,
}

/// Source of the target server's own counters during a run.
#[derive(Clone, Debug)]
pub enum TargetCounters {
    /// The live counters of a server in this process.
    Local(ServerStats),
    /// The latest snapshot of the target's telemetry feed, as `resonate
    /// serve --telemetry` publishes it.
    Feed(watch::Receiver<Option<Arc<Snapshot>>>),
}

impl TargetCounters {
    /// Returns the counters, or `None` when the feed has not sent a
    /// snapshot taken at or after `since_unix_ms`.
    fn read(&self, since_unix_ms: u64) -> Option<StatsSnapshot> {
        match self {
            TargetCounters::Local(stats) => Some(stats.snapshot()),
            TargetCounters::Feed(latest) => {
                let snapshot = latest.borrow().clone()?;
                (snapshot.taken_unix_ms >= since_unix_ms).then(|| stats_of(&snapshot))
            }
        }
    }
}

/// Reads server counters from a telemetry snapshot of `resonate serve`.
pub fn stats_of(snapshot: &Snapshot) -> StatsSnapshot {
    let gauge = |name: &str| snapshot.gauges.get(name).copied().unwrap_or(0.0) as u64;
    StatsSnapshot {
        sessions_opened: snapshot
            .counters
            .get("sessions_opened")
            .copied()
            .unwrap_or(0),
        sessions_live: snapshot
            .sessions
            .iter()
            .filter(|row| row.phase != Phase::Connecting)
            .count() as u64,
        clients_live: gauge("clients_live"),
        closed_by_cause: snapshot
            .counters
            .iter()
            .filter_map(|(name, count)| Some((name.strip_prefix("closed.")?.to_string(), *count)))
            .collect(),
        rejected_by_cause: snapshot
            .counters
            .iter()
            .filter_map(|(name, count)| Some((name.strip_prefix("rejected.")?.to_string(), *count)))
            .collect(),
        tasks_live: gauge("tasks_live"),
    }
}

/// Runs every scenario in turn and returns the report.
///
/// `target_counters` are the target server's own counters, when it is an
/// embedded server or publishes telemetry. After each scenario the run
/// waits for them to fall back to idle and records a leak if they do not.
/// `progress` receives the live counters of each scenario as it starts.
pub async fn run(
    config: &StressConfig,
    target_counters: Option<&TargetCounters>,
    progress: impl Fn(Progress),
) -> Report {
    let mut reports = Vec::new();
    let id_prefix = format!("stress-{:x}", config.seed & 0xffff_ffff);
    for &scenario in &config.scenarios {
        let started = Instant::now();
        let violations = Violations::new(started).with_telemetry(config.telemetry.clone());
        mark(config, format!("scenario {scenario} started"));
        let counters = Arc::new(Counters::default());
        progress(Progress {
            counters: counters.clone(),
            violations: Some(violations.clone()),
            scenario: Some(scenario),
        });
        let ctx = Arc::new(scenarios::Context {
            target: config.target.clone(),
            scenario,
            violations: violations.clone(),
            counters: counters.clone(),
            latencies: Arc::default(),
            duration: config.duration,
            clients: config.clients.max(1),
            rate: config.rate,
            storm_roles: config.storm_roles,
            seed: config.seed,
            bound: config.bound,
            id_prefix: id_prefix.clone(),
            against_player: config.against_player,
            notes: Default::default(),
        });

        scenarios::run(ctx.clone()).await;
        let elapsed = started.elapsed();
        let server = match target_counters {
            Some(counters) => Some(settle(counters, &violations, scenario).await),
            None => None,
        };

        let handshakes = Counters::get(&counters.handshakes);
        mark(
            config,
            format!(
                "scenario {scenario} ended after {} ms: {handshakes} handshakes, {} violations",
                elapsed.as_millis(),
                violations.total()
            ),
        );
        reports.push(ScenarioReport {
            scenario: scenario.as_str(),
            elapsed_ms: elapsed.as_millis() as u64,
            sessions_opened: Counters::get(&counters.opened),
            handshakes,
            sessions_closed: Counters::get(&counters.closed),
            connect_failures: Counters::get(&counters.connect_failures),
            handshakes_per_second: handshakes as f64 / elapsed.as_secs_f64().max(1e-9),
            audio_chunks: Counters::get(&counters.audio_chunks),
            time_replies: Counters::get(&counters.time_replies),
            chunks_judged: Counters::get(&counters.chunks_judged),
            chunks_late: Counters::get(&counters.chunks_late),
            latency: ctx.latencies.summaries(),
            violations: violations.snapshot(),
            server,
            notes: ctx.notes.lock().expect("notes lock poisoned").clone(),
        });
    }

    Report {
        target: config.target.url.to_string(),
        dialect: config.target.dialect.to_string(),
        seed: config.seed,
        clients: config.clients,
        scenarios: reports,
    }
}

/// Logs a scenario marker to the run's telemetry, if any.
fn mark(config: &StressConfig, line: String) {
    if let Some(telemetry) = &config.telemetry {
        telemetry.emit(Event::now(EventKind::Marker, line));
    }
}

/// Waits until the server has no open session, client or task. Records a
/// leak with the remaining counts if that does not happen within
/// [`SETTLE_TIMEOUT`], and returns the last snapshot.
async fn settle(
    counters: &TargetCounters,
    violations: &Violations,
    scenario: Scenario,
) -> StatsSnapshot {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    // A snapshot from a feed counts only when taken after the scenario
    // ended, so an older, idle one cannot hide a leak.
    let ended_unix_ms = unix_ms_now();
    loop {
        let Some(snapshot) = counters.read(ended_unix_ms) else {
            if Instant::now() >= deadline {
                violations.record(
                    ViolationKind::Leak,
                    scenario.as_str(),
                    "server",
                    format!("the target's telemetry feed sent no snapshot within {SETTLE_TIMEOUT:?} after the scenario"),
                    None,
                );
                return StatsSnapshot::default();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if snapshot.is_idle() {
            return snapshot;
        }
        if Instant::now() >= deadline {
            violations.record(
                ViolationKind::Leak,
                scenario.as_str(),
                "server",
                format!(
                    "{SETTLE_TIMEOUT:?} after the last client left, the server still has {} sessions, {} clients and {} tasks open",
                    snapshot.sessions_live, snapshot.clients_live, snapshot.tasks_live
                ),
                None,
            );
            return snapshot;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
