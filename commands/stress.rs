//! `resonate stress`: storms of virtual clients against a server, with a
//! report of rates, latencies and every violation found.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::StressArgs;
use crate::Failure;
use resonate::dialect::Dialect;
use resonate::server::{Server, ServerConfig, ServerStats, SourcePlan};
use resonate::stress::{self, Counters, Progress, Scenario, StressConfig, Target, TargetCounters};
use resonate::telemetry::{Snapshot, Telemetry};
use resonate::transport::{parse_ws_url, parse_ws_url_with_port, Limits, DEFAULT_CLIENT_PORT};
use tokio_util::sync::CancellationToken;

/// Length of the looping tone an embedded server plays.
const TONE_SECONDS: f64 = 10.0;

pub fn run(args: StressArgs) -> Result<(), Failure> {
    let scenarios = parse_scenarios(&args.scenarios).map_err(Failure::usage)?;
    if args.player.is_some() && scenarios.contains(&Scenario::FanOut) {
        return Err(Failure::usage(anyhow!("--scenario fan-out measures a server and cannot run against --player; use --server URL")));
    }
    let duration = seconds("--duration", args.duration, 0.1, 3_600.0)?;
    let bound = seconds("--bound", args.bound, 0.1, 600.0)?;
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0) {
            return Err(Failure::usage(anyhow!("invalid --rate {rate}: expected new sessions per second, above 0 and at most 1000000")));
        }
    }
    let storm_roles = match args.roles.as_str() {
        "mixed" => None,
        list => {
            Some(stress::Roles::parse(list).map_err(|e| Failure::usage(anyhow!("--roles: {e}")))?)
        }
    };
    let dialect: Dialect = args
        .dialect
        .parse()
        .map_err(|e: String| Failure::usage(anyhow!(e)))?;
    if dialect == Dialect::Sendspin && args.player.is_some() {
        return Err(Failure::usage(anyhow!(
            "--dialect sendspin cannot be combined with --player: listening Sendspin 1.0 players are not supported yet; use --dialect sendspin-v1"
        )));
    }
    let seed = args.seed.unwrap_or_else(|| {
        // The wall clock, not the process clock, which starts near zero.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_nanos() as u64)
    });
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        // The embedded server publishes to a hub of its own, which the
        // relay merges with the run's counters into the command's hub.
        let publishing = args.telemetry.is_some() || args.tui;
        let server_hub = publishing.then(|| crate::telemetry::hub("serve", "resonate stress (embedded)", "embedded"));
        let embedded = match (&args.server, &args.player) {
            (None, None) => Some(Embedded::start(server_hub.clone(), dialect).await?),
            _ => None,
        };
        let url = match (&args.server, &args.player, &embedded) {
            (Some(url), _, _) => parse_ws_url(url, dialect.default_path()),
            (_, Some(url), _) => parse_ws_url_with_port(url, dialect.default_path(), DEFAULT_CLIENT_PORT),
            (None, None, Some(embedded)) => parse_ws_url(&format!("ws://{}{}", embedded.addr, dialect.default_path()), dialect.default_path()),
            (None, None, None) => unreachable!("an embedded server starts without --server or --player"),
        }
        .map_err(Failure::usage)?;
        let addr = resolve(&url).await?;
        let hub = publishing.then(|| crate::telemetry::hub("stress", "resonate stress", url.as_str()));
        let feed = match (args.telemetry, &hub) {
            (Some(addr), Some(hub)) => Some(crate::telemetry::start(addr, hub).await?),
            _ => None,
        };
        let config = StressConfig {
            target: Target {
                url: url.clone(),
                addr,
                dialect,
                limits: Limits {
                    handshake_timeout: bound,
                    ..Limits::default()
                },
            },
            scenarios,
            duration,
            clients: args.clients as usize,
            rate: args.rate,
            storm_roles,
            seed,
            bound,
            against_player: args.player.is_some(),
            telemetry: hub.clone(),
        };
        preflight(&config).await?;
        let counters = match (&embedded, &args.server_telemetry) {
            (Some(embedded), _) => Some(TargetCounters::Local(embedded.stats.clone())),
            (None, Some(feed_url)) => Some(follow_target_feed(feed_url, config.bound).await?),
            (None, None) => None,
        };
        crate::status(&format!(
            "stressing {url} with {} clients, {} s per scenario, seed {seed}",
            config.clients,
            duration.as_secs_f64()
        ));
        let relay_stop = CancellationToken::new();
        let mut relay = None;
        let report = match (&hub, args.tui) {
            (Some(hub), true) => {
                // The run and the monitor go on together. When the run ends
                // first, the monitor stays until the operator quits; quitting
                // first drops the run, which stops its clients.
                let monitor_stop = tokio_util::sync::CancellationToken::new();
                let mut monitor = tokio::spawn(resonate::monitor::run_in_process(hub.clone(), monitor_stop.clone()));
                let run = run_with_progress(&config, counters.as_ref(), server_hub.as_ref(), &relay_stop);
                let report = tokio::select! {
                    (report, relaying) = run => {
                        relay = relaying;
                        Some(report)
                    }
                    _ = &mut monitor => None,
                };
                if let Some(report) = &report {
                    hub.emit(resonate::telemetry::Event::now(
                        resonate::telemetry::EventKind::Marker,
                        format!("run finished with {} violations; press q for the report", report.violation_count()),
                    ));
                    let _ = monitor.await;
                }
                monitor_stop.cancel();
                report
            }
            _ => {
                let (report, relaying) = run_with_progress(&config, counters.as_ref(), server_hub.as_ref(), &relay_stop).await;
                relay = relaying;
                Some(report)
            }
        };
        relay_stop.cancel();
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        if let Some(embedded) = embedded {
            embedded.stop().await;
        }
        if let Some(feed) = feed {
            feed.stop().await;
        }
        let Some(report) = report else {
            return Err(Failure {
                status: 1,
                error: anyhow!("the run was stopped from the monitor before it finished, so there is no report"),
            });
        };
        if args.json {
            let json = serde_json::to_string_pretty(&report).context("failed to encode the report as JSON")?;
            println!("{json}");
        } else {
            print!("{}", report.render());
        }
        match report.violation_count() {
            0 => Ok(()),
            n => Err(Failure {
                status: 1,
                error: anyhow!("{n} violations found, listed by kind in the report above"),
            }),
        }
    })
}

fn parse_scenarios(names: &[String]) -> Result<Vec<Scenario>, anyhow::Error> {
    let mut scenarios = Vec::new();
    for name in names {
        if name == "all" {
            scenarios.extend(Scenario::ALL);
            continue;
        }
        scenarios.push(
            name.parse::<Scenario>()
                .map_err(|e| anyhow!("--scenario: {e}"))?,
        );
    }
    let mut seen = std::collections::HashSet::new();
    scenarios.retain(|s| seen.insert(*s));
    Ok(scenarios)
}

fn seconds(flag: &str, value: f64, min: f64, max: f64) -> Result<Duration, Failure> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(Failure::usage(anyhow!(
            "invalid {flag} {value}: expected seconds from {min} to {max}"
        )))
    }
}

async fn resolve(url: &url::Url) -> Result<SocketAddr, Failure> {
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = url
        .port_or_known_default()
        .unwrap_or(resonate::transport::DEFAULT_SERVER_PORT);
    let mut addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|err| Failure::usage(anyhow!("failed to resolve {host:?} from {url}: {err}")))?;
    addrs
        .next()
        .ok_or_else(|| Failure::usage(anyhow!("no address found for {host:?} from {url}")))
}

/// Completes one handshake before the storm, so that an unreachable target
/// is a usage error (exit 2) rather than thousands of failures.
async fn preflight(config: &StressConfig) -> Result<(), Failure> {
    let violations = stress::Violations::new(std::time::Instant::now());
    let (mut probe, _) = stress::Probe::open(&config.target, "preflight", "preflight".into(), &violations, None)
        .await
        .map_err(|err| {
            let expected = if config.against_player {
                "a player started with `resonate play --listen`"
            } else {
                "a Sendspin server"
            };
            Failure::usage(anyhow!(
                "{err}. Check that {expected} is listening there. Without --server or --player, stress starts its own server"
            ))
        })?;
    let result = if config.against_player {
        // A player speaks first: its client/hello shows it is one.
        let deadline = tokio::time::Instant::now() + config.bound;
        match probe.next_unchecked(deadline).await {
            Ok((
                resonate::dialect::Incoming::Message(resonate::protocol::Message::ClientHello(_)),
                _,
                _,
            )) => Ok(()),
            Ok(_) => Err(stress::Ending::Failed(
                "the first message was not client/hello".into(),
            )),
            Err(ending) => Err(ending),
        }
    } else {
        let hello = stress::hello("resonate-stress-preflight", stress::Roles::CONTROLLER);
        probe.handshake(hello, config.bound).await.map(|_| ())
    };
    let _ = probe.close(config.bound).await;
    result.map_err(|ending| {
        // Sendspin 1.0 servers, `resonate serve` by default among them,
        // close the connection of a cleartext hello without a reply.
        let hint = match config.target.dialect {
            Dialect::SendspinV1 if matches!(ending, stress::Ending::Closed { .. }) => {
                "; a Sendspin 1.0 server closes cleartext hellos: add --dialect sendspin (unpaired clients, which the server must admit, as serve --allow-unpaired does)"
            }
            _ => "; check the path and the dialect",
        };
        Failure::usage(anyhow!(
            "{} accepted the connection but did not complete the Sendspin handshake ({ending:?}){hint}",
            config.target.url
        ))
    })
}

/// Runs the scenarios with a progress line and, with telemetry, a relay
/// that goes on publishing after the run until `relay_stop` is cancelled.
async fn run_with_progress(
    config: &StressConfig,
    counters: Option<&TargetCounters>,
    server_hub: Option<&Telemetry>,
    relay_stop: &CancellationToken,
) -> (stress::Report, Option<tokio::task::JoinHandle<()>>) {
    let show = std::io::stderr().is_terminal() && !crate::is_quiet();
    let (progress_tx, progress_rx) = watch::channel(Progress::default());
    let printer = show.then(|| tokio::spawn(print_progress(progress_rx.clone())));
    let relay = config.telemetry.clone().map(|hub| {
        tokio::spawn(relay_telemetry(
            hub,
            server_hub.cloned(),
            progress_rx,
            relay_stop.clone(),
        ))
    });
    let report = stress::run(config, counters, |progress| {
        let _ = progress_tx.send(progress);
    })
    .await;
    drop(progress_tx);
    if let Some(printer) = printer {
        let _ = printer.await;
        eprint!("\r\x1b[2K");
    }
    (report, relay)
}

/// Follows the telemetry feed of the target server at `url`, so the run can
/// check that its sessions, clients and tasks return to idle. Fails when no
/// snapshot arrives within `patience`.
async fn follow_target_feed(url: &str, patience: Duration) -> Result<TargetCounters, Failure> {
    let parsed = url::Url::parse(url)
        .ok()
        .filter(|u| u.scheme() == "ws" && u.host_str().is_some())
        .ok_or_else(|| Failure::usage(anyhow!("invalid --server-telemetry {url:?}: expected ws://HOST:PORT/ as printed by `resonate serve --telemetry`")))?;
    let (latest_tx, latest) = watch::channel(None);
    let (error_tx, errors) = watch::channel(None::<String>);
    let feed_url = parsed.to_string();
    tokio::spawn(async move {
        // Reconnects while the run lasts; the task ends with the runtime.
        let mut connected = false;
        loop {
            let result = resonate::telemetry::feed::read(&feed_url, |message| {
                if let resonate::telemetry::FeedMessage::Snapshot(snapshot) = message {
                    connected = true;
                    latest_tx.send_replace(Some(std::sync::Arc::new(snapshot)));
                }
            })
            .await;
            if let Err(err) = result {
                // Before the first snapshot, the caller reports the error.
                if connected {
                    tracing::warn!(url = %feed_url, cause = %err, "target telemetry feed lost; reconnecting");
                }
                error_tx.send_replace(Some(err.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let mut waiting = latest.clone();
    let arrived = tokio::time::timeout(
        patience.max(Duration::from_secs(2)),
        waiting.wait_for(Option::is_some),
    )
    .await;
    if !matches!(arrived, Ok(Ok(_))) {
        let cause = errors
            .borrow()
            .clone()
            .unwrap_or_else(|| "no snapshot arrived".to_string());
        return Err(Failure::usage(anyhow!(
            "no snapshot from the telemetry feed at {url} ({cause}); start the target with `resonate serve --telemetry ADDR` and pass ws://ADDR/"
        )));
    }
    Ok(TargetCounters::Feed(latest))
}

/// Publishes the run to `hub` every 500 ms until the run ends: the embedded
/// server's sessions and events, if there is one, with the counters of the
/// running scenario.
async fn relay_telemetry(
    hub: Telemetry,
    server_hub: Option<Telemetry>,
    mut progress: watch::Receiver<Progress>,
    stop: CancellationToken,
) {
    let mut server_events = server_hub.as_ref().map(|h| h.subscribe().events);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut finished = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = progress.changed(), if !finished => if changed.is_err() { finished = true },
            _ = tick.tick() => {}
            Some(event) = next_event(&mut server_events) => {
                hub.emit(event);
                continue;
            }
        }
        hub.publish(run_snapshot(
            server_hub.as_ref(),
            &progress.borrow(),
            finished,
        ));
    }
    hub.publish(run_snapshot(
        server_hub.as_ref(),
        &progress.borrow(),
        finished,
    ));
}

async fn next_event(
    events: &mut Option<tokio::sync::broadcast::Receiver<resonate::telemetry::Event>>,
) -> Option<resonate::telemetry::Event> {
    use tokio::sync::broadcast::error::RecvError;
    let events = events.as_mut()?;
    loop {
        match events.recv().await {
            Ok(event) => return Some(event),
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return None,
        }
    }
}

fn run_snapshot(server_hub: Option<&Telemetry>, progress: &Progress, finished: bool) -> Snapshot {
    let mut snapshot = server_hub
        .map(|h| h.latest().as_ref().clone())
        .unwrap_or_default();
    let counters = &progress.counters;
    for (name, counter) in [
        ("stress.opened", &counters.opened),
        ("stress.handshakes", &counters.handshakes),
        ("stress.closed", &counters.closed),
        ("stress.connect_failures", &counters.connect_failures),
        ("stress.audio_chunks", &counters.audio_chunks),
        ("stress.time_replies", &counters.time_replies),
    ] {
        snapshot
            .counters
            .insert(name.to_string(), Counters::get(counter));
    }
    let violations = progress.violations.as_ref().map_or(0, |v| v.total());
    snapshot
        .counters
        .insert("stress.violations".to_string(), violations);
    snapshot.taken_unix_ms = resonate::telemetry::unix_ms_now();
    snapshot.notes = match progress.scenario {
        _ if finished => {
            vec!["the run finished; the counters are those of the last scenario".to_string()]
        }
        Some(scenario) => vec![format!(
            "running scenario {scenario}: {}",
            scenario.describe()
        )],
        None => vec!["starting".to_string()],
    };
    if server_hub.is_none() {
        snapshot.notes.push(
            "the target is another process: its sessions show in its own telemetry, if it has any"
                .into(),
        );
    }
    snapshot
}

/// Rewrites one status line every 250 ms until the run ends.
async fn print_progress(mut progress: watch::Receiver<Progress>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            changed = progress.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
        let current = progress.borrow().clone();
        let Some(scenario) = current.scenario else {
            continue;
        };
        let c = &current.counters;
        let violations = current.violations.as_ref().map_or(0, |v| v.total());
        eprint!(
            "\r\x1b[2K{scenario}: {} opened, {} handshakes, {} closed, {} failed, {violations} violations",
            Counters::get(&c.opened),
            Counters::get(&c.handshakes),
            Counters::get(&c.closed),
            Counters::get(&c.connect_failures),
        );
    }
}

/// Embedded `resonate serve` in this process, on a loopback port, playing a
/// generated tone in a loop.
struct Embedded {
    addr: SocketAddr,
    stats: ServerStats,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), resonate::server::ServerError>>,
    dir: std::path::PathBuf,
}

impl Embedded {
    async fn start(telemetry: Option<Telemetry>, dialect: Dialect) -> Result<Embedded, Failure> {
        let dir = crate::demo::tempdir("stress")?;
        let tone = dir.join("tone.wav");
        crate::demo::write_tone(&tone, TONE_SECONDS)
            .with_context(|| format!("failed to write the tone to {}", tone.display()))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("failed to bind a loopback port")?;
        let addr = listener.local_addr().context("listener has no address")?;
        let mut config = ServerConfig::new(SourcePlan::file(tone, true));
        config.server_id = "resonate-stress-embedded".into();
        config.name = "resonate stress (embedded)".into();
        config.start_delay = Duration::from_millis(300);
        // Virtual clients of either dialect find the embedded server at
        // their dialect's default path.
        config.legacy_path = Some(Dialect::Resonate.default_path().to_string());
        if dialect == Dialect::Sendspin {
            // Sendspin 1.0 virtual clients connect unpaired; v1 clients
            // share the path.
            config.dialect = Dialect::Sendspin;
            config.keys = Some(resonate::server::encrypted::ServerKeys {
                accept_v1: true,
                allow_unpaired: true,
                ..resonate::server::encrypted::ServerKeys::new(
                    resonate::noise::Identity::generate(),
                    dir.join("pairings-server.json"),
                )
            });
        }
        // The storms are the load under test, so the limits that would turn
        // a flood or a handshake storm away are lifted. Malformed input and
        // slow consumers still trip their limits.
        config.limits.max_messages_per_second = u32::MAX;
        config.limits.max_sessions = usize::MAX;
        config.limits.max_pending_handshakes = usize::MAX;
        let mut server = Server::new(config);
        if let Some(telemetry) = telemetry {
            server = server.with_telemetry(telemetry);
        }
        let stats = server.stats();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(server.run(listener, async move {
            let mut stop_rx = stop_rx;
            let _ = stop_rx.wait_for(|stopped| *stopped).await;
        }));
        Ok(Embedded {
            addr,
            stats,
            stop,
            task,
            dir,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
