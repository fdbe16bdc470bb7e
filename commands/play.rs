//! `resonate play`: a player that keeps its clock in sync with a server and
//! plays through the sound card, into a WAV file or nowhere. In a terminal
//! it draws what plays and sends the group's controller commands from keys.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::sync::mpsc;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use url::Url;

use crate::cli::{CodecArg, PlayArgs};
use crate::logging::Destination;
use crate::Failure;
use resonate::audio::{flac, opus};
use resonate::dialect::sendspin::ClientPairing;
use resonate::dialect::Dialect;
use resonate::discovery::{Advertisement, BrowseEvent, Endpoint, Family, Mdns, Scope, ServiceType};
use resonate::noise::{Identity, Suite};
use resonate::player::client::{Backoff, Player, PlayerConfig, PlayerError, PlayerEvent};
use resonate::player::encrypted::ClientKeys;
use resonate::player::output::{
    self, Output, OutputOptions, OutputSpec, SinkModel, SyncLog, SIMULATED_LATENCY_US,
};
use resonate::player::request::parse_format_request;
use resonate::player::roles::Roles;
use resonate::player::scheduler::Scheduler;
use resonate::player::servers::{LastPlayed, LastPlayedStore};
use resonate::player::telemetry::PlayerTelemetry;
use resonate::player::ui::plain;
use resonate::player::ui::state::PlayState;
use resonate::protocol::SupportedFormat;
use resonate::sync::SharedClock;
use resonate::transport::parse_ws_url;

/// Returns whether `play` draws its terminal UI: only when stdout is a
/// terminal, and neither --no-tui nor --json is given.
pub fn wants_tui(args: &PlayArgs) -> bool {
    use std::io::IsTerminal;
    !args.no_tui && !args.json && !args.list_devices && std::io::stdout().is_terminal()
}

/// Returns where the log goes: --log-file when given, otherwise nowhere
/// while the terminal UI owns the terminal, and stderr without it.
pub fn log_destination(args: &PlayArgs) -> Result<Destination, Failure> {
    match &args.log_file {
        Some(path) => crate::monitor::open_log_file(path),
        None if wants_tui(args) => Ok(Destination::Discard),
        None => Ok(Destination::Stderr),
    }
}

/// Returns the roles of --roles, or the default for `dialect`: every role
/// for Sendspin, the player alone for legacy Resonate servers.
fn chosen_roles(requested: Option<Roles>, dialect: Dialect) -> Roles {
    match requested {
        Some(roles) => roles,
        None if dialect == Dialect::Resonate => Roles::PLAYER,
        None => Roles::ALL,
    }
}

/// Rejects options that set up audio output when --roles leaves out the
/// player role.
fn check_audio_options(args: &PlayArgs, roles: Roles) -> Result<(), Failure> {
    if roles.player {
        return Ok(());
    }
    let audio_options = [
        (args.output != "default", "--output"),
        (args.device.is_some(), "--device"),
        (args.request_format.is_some(), "--request-format"),
        (args.sync_log.is_some(), "--sync-log"),
    ];
    if let Some((_, option)) = audio_options.iter().find(|(given, _)| *given) {
        return Err(Failure::usage(anyhow::anyhow!(
            "{option} needs the player role, but --roles {roles} leaves it out; add player to --roles or drop {option}"
        )));
    }
    Ok(())
}

pub fn run(args: PlayArgs) -> Result<(), Failure> {
    if args.list_devices {
        return list_devices();
    }
    // Bad roles are reported before anything is looked up over mDNS.
    let requested_roles = match &args.roles {
        Some(text) => Some(
            text.parse::<Roles>()
                .map_err(|err| Failure::usage(anyhow::anyhow!(err)))?,
        ),
        None => None,
    };
    if let Some(roles) = requested_roles {
        check_audio_options(&args, roles)?;
    }
    // Only --roles can leave out the player role; every default has it.
    let player_role = requested_roles.is_none_or(|roles| roles.player);
    let stem = identity_stem(requested_roles);
    if args.pairing_token {
        let keys = client_keys(&args, &stem)?;
        let psk = keys.pairing_psk.expect("client_keys loads the pairing PSK");
        println!(
            "{}",
            resonate::noise::pairing::encode_token(keys.identity.public_key(), &psk)
        );
        return Ok(());
    }
    let requested: Option<Dialect> = match &args.dialect {
        Some(text) => Some(
            text.parse()
                .map_err(|e: String| Failure::usage(anyhow::anyhow!(e)))?,
        ),
        None => None,
    };
    if requested == Some(Dialect::Resonate) && args.listen.is_some() {
        return Err(Failure::usage(anyhow::anyhow!(
            "--dialect resonate cannot be combined with --listen: legacy Resonate servers never connect to players; use --server ws://HOST[:PORT]/resonate"
        )));
    }
    let spec = match &args.device {
        Some(name) => OutputSpec::Device(name.clone()),
        None => args.output.parse::<OutputSpec>().map_err(Failure::usage)?,
    };
    let (output_options, formats) = if player_role {
        check_wav_directory(&spec)?;
        let output_options = output_options(&args, &spec)?;
        let formats =
            advertised_formats(&args, &spec).map_err(|err| Failure::usage(anyhow::anyhow!(err)))?;
        (Some(output_options), formats)
    } else {
        (None, Vec::new())
    };
    let format_request = match &args.request_format {
        Some(spec) => {
            let request =
                parse_format_request(spec).map_err(|err| Failure::usage(anyhow::anyhow!(err)))?;
            if !(0.0..=86_400.0).contains(&args.request_format_after) {
                return Err(Failure::usage(anyhow::anyhow!(
                    "--request-format-after {} is out of range; use 0 to 86400 seconds",
                    args.request_format_after
                )));
            }
            Some((request, Duration::from_secs_f64(args.request_format_after)))
        }
        None => None,
    };
    let host = crate::host_name();
    // Sendspin 1.0 is the default: only a chosen cleartext dialect goes
    // without keys.
    let keys = match requested {
        Some(Dialect::SendspinV1 | Dialect::Resonate) => None,
        Some(Dialect::Sendspin) | None => Some(client_keys(&args, &stem)?),
    };
    let client_id = match (&keys, &args.client_id, requested_roles) {
        // A Sendspin 1.0 client's id is its public key.
        (Some(keys), _, _) => keys.identity.id(),
        (None, Some(id), _) => id.clone(),
        // A client without audio must not replace the host's player.
        (None, None, Some(roles)) if !roles.player => format!(
            "resonate-play-{host}-{}",
            roles.to_string().replace(',', "-")
        ),
        (None, None, _) => default_client_id(&host, &spec),
    };
    let last_played = match &args.state_file {
        Some(path) => Some(LastPlayedStore::new(path.clone())),
        None => LastPlayedStore::in_state_dir(&client_id),
    };
    let runtime = crate::runtime()?;
    let (url, dialect) = match (&args.server, args.listen) {
        (Some(server), _) => {
            let dialect = requested.unwrap_or(Dialect::Sendspin);
            (
                parse_ws_url(server, dialect.default_path()).map_err(Failure::usage)?,
                dialect,
            )
        }
        (None, Some(listen)) => {
            let dialect = requested.unwrap_or(Dialect::Sendspin);
            let path = dialect.default_path();
            let url = Url::parse(&format!("ws://{listen}{path}"))
                .context("listen address makes no URL")?;
            (url, dialect)
        }
        (None, None) => {
            let last = last_played.as_ref().and_then(LastPlayedStore::load);
            let scope = args.interface.clone().map_or(Scope::All, Scope::Interface);
            let timeout = Duration::from_secs_f64(args.search_timeout);
            runtime.block_on(find_server(scope, last, requested, timeout))?
        }
    };
    let path = dialect.default_path();
    let roles = chosen_roles(requested_roles, dialect);
    let tui = wants_tui(&args);
    let config = PlayerConfig {
        url,
        client_id,
        name: args.name.clone().unwrap_or(host),
        dialect,
        formats,
        buffer_capacity: args.buffer_capacity,
        limits: args.connection_limits.limits(),
        backoff: Backoff {
            first_connect_attempts: args.connect_attempts,
            ..Backoff::default()
        },
        volume: args.volume,
        muted: false,
        format_request,
        // A listening player cannot tell a cleartext server from one that
        // failed its handshake: servers dial it, and it only replies.
        cleartext_fallback: requested.is_none()
            && dialect == Dialect::Sendspin
            && args.listen.is_none(),
        keys,
    };

    let url_text = config.url.to_string();
    let waits_for_servers = args.listen.is_some();
    let name_for_mdns = (config.client_id.clone(), config.name.clone());
    let scheduler = Arc::new(Scheduler::new());
    scheduler.set_static_delay_us(args.static_delay_ms * 1000);
    scheduler.set_drift_correction(!args.no_drift_correction);
    let (publisher, clock) = SharedClock::channel();
    let output = match output_options {
        Some(options) => Some(
            Output::start_with(&spec, options, scheduler.clone(), clock.clone())
                .map_err(Failure::usage)?,
        ),
        None => None,
    };
    let mut display = PlayState::new(&url_text, roles);
    display.listening = waits_for_servers;

    let json_output = args.json;
    let duration = args.duration;
    let status_scheduler = scheduler.clone();
    let status_clock = clock.clone();
    let status_clock_for_feed = clock.clone();
    let status_clock_for_ui = clock.clone();
    let telemetry_addr = args.telemetry;
    let player_name = config.name.clone();
    let url_text_for_feed = url_text.clone();
    let listen_args = (
        args.listen,
        args.no_mdns,
        args.interface.clone(),
        name_for_mdns,
    );
    let result: Result<(Result<(), PlayerError>, bool), Failure> = runtime.block_on(async move {
        let interrupt = crate::interrupted();
        let listening = match listen_args {
            (Some(addr), no_mdns, interface, (client_id, name)) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}; choose another --listen address or port"))
                    .map_err(Failure::usage)?;
                let bound = listener.local_addr().context("listener has no local address")?;
                let mdns = if no_mdns {
                    None
                } else {
                    Some(advertise_player(bound, interface, client_id, name)?)
                };
                if json_output {
                    println!("{}", json!({"event": "listening", "url": format!("ws://{bound}{path}"), "addr": bound.to_string()}));
                } else {
                    crate::status(&format!("waiting for servers on ws://{bound}{path}"));
                }
                Some((listener, mdns))
            }
            _ => None,
        };
        let feed = match telemetry_addr {
            Some(addr) => {
                let hub = crate::telemetry::hub("play", &player_name, &url_text_for_feed);
                let feed = crate::telemetry::start(addr, &hub).await?;
                if json_output {
                    println!("{}", json!({"event": "telemetry", "addr": feed.addr.to_string()}));
                }
                let telemetry = PlayerTelemetry::new(hub, dialect, scheduler.clone(), status_clock_for_feed);
                Some((feed, telemetry))
            }
            None => None,
        };
        let publisher_task = feed.as_ref().map(|(_, telemetry)| {
            let telemetry = telemetry.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(TELEMETRY_INTERVAL);
                loop {
                    tick.tick().await;
                    telemetry.publish();
                }
            })
        });
        let (events_tx, events) = mpsc::unbounded_channel();
        let (ui_events_tx, ui_events) = mpsc::unbounded_channel();
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let output_mode = match (tui, json_output) {
            (true, _) => EventOutput::Interface(ui_events_tx),
            (false, true) => EventOutput::Json,
            (false, false) => EventOutput::Status,
        };
        let printer = tokio::spawn(report_events(
            events,
            output_mode,
            dialect,
            feed.as_ref().map(|(_, t)| t.clone()),
            display.clone(),
        ));
        let mut player = Player::new(config, scheduler.clone(), publisher)
            .with_events(events_tx)
            .with_roles(roles)
            .with_commands(commands);
        if let Some(store) = last_played {
            player = player.with_last_played(store);
        }
        let quit = tokio_util::sync::CancellationToken::new();
        let quit_by_key = quit.clone();
        let stop = async move {
            let limit = async {
                match duration {
                    Some(seconds) => tokio::time::sleep(Duration::from_secs_f64(seconds.max(0.0))).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = interrupt => {}
                _ = limit => {}
                _ = quit_by_key.cancelled() => {}
            }
        };
        let playing = async move {
            match listening {
                Some((listener, mdns)) => {
                    let outcome = player.run_listening(listener, path.to_string(), stop).await;
                    drop(mdns);
                    outcome
                }
                None => player.run(stop).await,
            }
        };
        let interface = async {
            if !tui {
                return Ok(());
            }
            let live_scheduler = scheduler.clone();
            let sample = move || resonate::player::ui::Live {
                clock: status_clock_for_ui.snapshot(),
                local_now_us: resonate::clock::now_us(),
                playback: roles.player.then(|| live_scheduler.status()),
            };
            let drawn = run_interface(display, ui_events, commands_tx, sample).await;
            // Quitting the UI stops the player, as Ctrl-C does elsewhere.
            quit.cancel();
            drawn
        };
        let (outcome, drawn) = tokio::join!(playing, interface);
        drawn.map_err(|err| Failure::from(anyhow::anyhow!("the terminal UI failed: {err}")))?;
        let connected = printer.await.unwrap_or(true);
        if let Some(task) = publisher_task {
            task.abort();
        }
        if let Some((feed, _)) = feed {
            feed.stop().await;
        }
        Ok((outcome, connected))
    });
    let (result, connected) = result?;
    if let Some(output) = output {
        let summary = output.stop().context("failed to finish the output")?;
        // A player that never connected played nothing worth a summary line.
        if connected || json_output {
            report_summary(&summary, &status_scheduler, &status_clock, json_output);
        }
    }
    if result.is_ok() && !connected && !waits_for_servers && duration.is_some() {
        return Err(Failure::usage(anyhow::anyhow!(
            "never connected to {url_text} within --duration; check that the server runs and the URL is right"
        )));
    }
    result.map_err(|err| match err {
        PlayerError::Replaced { .. } => Failure::from(err),
        _ => Failure::usage(err),
    })
}

/// Interval between two telemetry snapshots of the player.
const TELEMETRY_INTERVAL: Duration = Duration::from_millis(500);

/// Time `play` gathers mDNS answers before choosing a server when neither
/// --server nor --listen is given.
const SERVER_SEARCH: Duration = Duration::from_secs(3);

/// Returns the name part of the state files of a client with `roles`:
/// `player` for a player, the roles otherwise, so that a client without
/// audio has its own key and never replaces the host's player.
fn identity_stem(roles: Option<Roles>) -> String {
    match roles {
        Some(roles) if !roles.player => roles.to_string().replace(',', "-"),
        _ => "player".to_string(),
    }
}

/// Loads (or creates) the client's Sendspin 1.0 identity, its pairing PSK
/// and its pairing records, named after `stem`, in its state directory.
fn client_keys(args: &PlayArgs, stem: &str) -> Result<ClientKeys, Failure> {
    if args.client_id.is_some() {
        return Err(Failure::usage(anyhow::anyhow!(
            "--client-id cannot be combined with Sendspin 1.0, the default dialect: its client_id is the public key stored in the state directory; give each player its own --state-dir, or add --dialect sendspin-v1 to keep the id"
        )));
    }
    let suite = Suite::from_name(&args.suite).ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "unknown --suite {:?}; use 25519_ChaChaPoly_SHA256 or 25519_AESGCM_SHA256",
            args.suite
        ))
    })?;
    let dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => resonate::noise::default_state_dir().map_err(Failure::usage)?,
    };
    let identity = Identity::load_or_create(&dir.join(format!("identity-{stem}.json")))
        .map_err(Failure::usage)?;
    let pairing_psk = resonate::noise::pairing::load_or_create_pairing_psk(
        &dir.join(format!("pairing-psk-{stem}.txt")),
    )
    .map_err(Failure::usage)?;
    Ok(ClientKeys {
        identity,
        records_path: dir.join(format!("pairings-{stem}.json")),
        suite,
        pairing: ClientPairing::default(),
        pairing_psk: Some(pairing_psk),
        pairing_slot: Default::default(),
    })
}

/// Finds a server over mDNS: the last-played one as soon as it shows up,
/// otherwise the first by instance name among Sendspin servers, then among
/// legacy Resonate servers, chosen from the responses gathered in
/// [`SERVER_SEARCH`] or, when none came by then, from the first response
/// before `timeout`. `requested` limits the search to one dialect. Returns
/// the URL and the dialect of its service type.
async fn find_server(
    scope: Scope,
    last: Option<LastPlayed>,
    requested: Option<Dialect>,
    timeout: Duration,
) -> Result<(Url, Dialect), Failure> {
    let mdns = Mdns::start(scope).map_err(Failure::usage)?;
    let services: &[ServiceType] = match requested {
        Some(Dialect::SendspinV1 | Dialect::Sendspin) => &[ServiceType::SENDSPIN_SERVER],
        Some(Dialect::Resonate) => &[ServiceType::RESONATE_SERVER],
        None => &[ServiceType::SENDSPIN_SERVER, ServiceType::RESONATE_SERVER],
    };
    let mut events = mdns.browse(services).map_err(Failure::from)?;
    // Keyed by preference: Sendspin before legacy, then by instance name.
    // Only endpoints with an address are kept, so any entry can be dialed.
    let mut found: BTreeMap<(u8, String), (Endpoint, Url)> = BTreeMap::new();
    let gathering = tokio::time::sleep(SERVER_SEARCH.min(timeout));
    let give_up = tokio::time::sleep(timeout);
    tokio::pin!(gathering, give_up);
    let mut gathered = false;
    loop {
        tokio::select! {
            _ = &mut give_up => break,
            _ = &mut gathering, if !gathered => {
                gathered = true;
                if !found.is_empty() {
                    break;
                }
            }
            event = events.next() => match event {
                None => break,
                Some(BrowseEvent::Resolved(endpoint)) => {
                    let Some(url) = endpoint.url() else { continue };
                    if is_last_played(&endpoint, last.as_ref()) {
                        found.clear();
                        found.insert((0, String::new()), (endpoint, url));
                        break;
                    }
                    found.insert(preference(&endpoint), (endpoint, url));
                    if gathered {
                        break;
                    }
                }
                Some(BrowseEvent::Removed { fullname, .. }) => {
                    found.retain(|_, (endpoint, _)| endpoint.fullname != fullname);
                }
            },
        }
    }
    match found.into_values().next() {
        Some((endpoint, url)) => {
            let name = endpoint.name.as_deref().unwrap_or(&endpoint.instance);
            let dialect = requested.unwrap_or_else(|| dialect_of(endpoint.family));
            crate::status(&format!(
                "found server {name:?} at {url} over mDNS, speaking {dialect}"
            ));
            Ok((url, dialect))
        }
        None => {
            let kind = match requested {
                Some(Dialect::Resonate) => "legacy Resonate",
                _ => "Sendspin",
            };
            Err(Failure::usage(anyhow::anyhow!(
                "no {kind} server responded over mDNS within {} s; start one, pass --server ws://HOST:PORT/PATH, or wait longer with --search-timeout",
                timeout.as_secs_f64()
            )))
        }
    }
}

/// Returns the sort key of a found server: Sendspin servers first, then
/// legacy ones, each by instance name.
fn preference(endpoint: &Endpoint) -> (u8, String) {
    let rank = match endpoint.family {
        Family::Sendspin => 0,
        Family::ResonateLegacy => 1,
    };
    (rank, endpoint.instance.clone())
}

/// Returns the dialect a server of `family` speaks.
fn dialect_of(family: Family) -> Dialect {
    match family {
        Family::Sendspin => Dialect::Sendspin,
        Family::ResonateLegacy => Dialect::Resonate,
    }
}

/// Returns whether `endpoint` is the server that last played here. Servers
/// of this project use their server id as the instance name, and a dialed
/// URL is stored with the id.
fn is_last_played(endpoint: &Endpoint, last: Option<&LastPlayed>) -> bool {
    let Some(last) = last else {
        return false;
    };
    endpoint.instance == last.server_id || endpoint.url().map(|url| url.to_string()) == last.url
}

/// Advertises this listening player as `_sendspin._tcp`.
fn advertise_player(
    addr: SocketAddr,
    interface: Option<String>,
    client_id: String,
    name: String,
) -> Result<Mdns, Failure> {
    let scope = interface.map_or(Scope::for_listen_address(addr.ip()), Scope::Interface);
    let mut mdns = Mdns::start(scope).map_err(Failure::usage)?;
    let advertisement = Advertisement {
        service: ServiceType::SENDSPIN_CLIENT,
        instance: client_id,
        name,
        port: addr.port(),
        path: Dialect::SendspinV1.default_path().to_string(),
    };
    mdns.advertise(&advertisement).map_err(Failure::usage)?;
    Ok(mdns)
}

/// Prints what the player did: audio played and dropped, the clock
/// estimate at the end, and the files written.
fn report_summary(
    summary: &output::OutputSummary,
    scheduler: &Scheduler,
    clock: &SharedClock,
    as_json: bool,
) {
    let status = scheduler.status();
    let totals = status.totals;
    let clock = clock.snapshot();
    let files: Vec<String> = summary
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    if as_json {
        let report = json!({
            "event": "finished",
            "files": files,
            "frames_written": summary.frames_written,
            "frames_played": totals.frames_played,
            "silence_frames": totals.silence_frames,
            "late_chunks_dropped": totals.late_chunks_dropped,
            "chunks_skipped_at_start": totals.chunks_skipped_at_start,
            "reanchors": totals.reanchors,
            "frames_inserted": totals.frames_inserted,
            "frames_dropped": totals.frames_dropped,
            "underruns": totals.underruns,
            "corrupt_chunks": totals.corrupt_chunks,
            "clock": {
                "offset_us": clock.offset_us, "drift_ppm": clock.drift_ppm(), "error_us": clock.error_us,
                "rtt_us": clock.rtt_us, "samples": clock.samples, "converged": clock.converged,
            },
        });
        println!("{report}");
        return;
    }
    let clock_text = if clock.converged {
        format!(
            "clock offset {:.0} us (error {:.0} us, rtt {} us)",
            clock.offset_us, clock.error_us, clock.rtt_us
        )
    } else {
        "clock not synchronized".to_string()
    };
    crate::status(&format!(
        "played {} frames, dropped {} late chunks, {} re-anchors, {} frames repeated and {} skipped for drift, {} underruns, {} corrupt chunks; {clock_text}",
        totals.frames_played,
        totals.late_chunks_dropped,
        totals.reanchors,
        totals.frames_inserted,
        totals.frames_dropped,
        totals.underruns,
        totals.corrupt_chunks,
    ));
    if !files.is_empty() {
        crate::status(&format!(
            "wrote {} frames to {}",
            summary.frames_written,
            files.join(", ")
        ));
    }
}

/// Returns a client id that stays the same across restarts of the same
/// player: the host name and the output. Two players on one host with the
/// same output still need `--client-id`.
fn default_client_id(host: &str, spec: &OutputSpec) -> String {
    let output = match spec {
        OutputSpec::Default => "default".to_string(),
        OutputSpec::Device(name) => name.clone(),
        OutputSpec::Wav(path) => format!(
            "wav-{}",
            path.file_stem()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default()
        ),
        OutputSpec::Null => "null".to_string(),
    };
    let output: String = output
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("resonate-play-{host}-{output}")
}

/// Builds the simulated card's model, which applies only to `wav:` and
/// `null`, and opens the sync log.
fn output_options(args: &PlayArgs, spec: &OutputSpec) -> Result<OutputOptions, Failure> {
    let simulated = matches!(spec, OutputSpec::Wav(_) | OutputSpec::Null);
    let sink_changed =
        args.sink_drift_ppm != 0.0 || args.sink_latency_ms != SIMULATED_LATENCY_US as f64 / 1000.0;
    if !simulated && sink_changed {
        return Err(Failure::usage(anyhow::anyhow!(
            "--sink-drift-ppm and --sink-latency-ms apply to --output wav:PATH and null, not to {spec}; \
             a sound card has its own clock and latency"
        )));
    }
    let sync_log = match &args.sync_log {
        Some(path) => Some(SyncLog::create(path).with_context(|| {
            format!("cannot create the sync log {}; check that its directory exists and is writable", path.display())
        }).map_err(Failure::usage)?),
        None => None,
    };
    Ok(OutputOptions {
        sink: SinkModel {
            drift_ppm: args.sink_drift_ppm,
            latency_us: (args.sink_latency_ms * 1000.0).round() as i64,
        },
        sync_log,
    })
}

/// Rejects a WAV path whose directory does not exist before connecting, so
/// the error does not wait for the first audio.
fn check_wav_directory(spec: &OutputSpec) -> Result<(), Failure> {
    let OutputSpec::Wav(path) = spec else {
        return Ok(());
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    if directory.is_dir() {
        return Ok(());
    }
    Err(Failure::usage(anyhow::anyhow!(
        "directory {} of --output wav:{} does not exist; create it or choose another path",
        directory.display(),
        path.display()
    )))
}

/// Rates a device may play, in order of preference, when it supports them.
const PREFERRED_RATES: [u32; 4] = [48_000, 44_100, 96_000, 88_200];

/// Lists the formats to offer: for each codec of --codec in order, what
/// the output device plays (any rate for file and null outputs), narrowed by
/// --sample-rate, --bit-depth and --channels and by what the codec carries.
/// Higher quality comes first within a codec. Fails when nothing is left.
fn advertised_formats(args: &PlayArgs, spec: &OutputSpec) -> Result<Vec<SupportedFormat>, String> {
    let device = device_capabilities(spec);
    let channels = args
        .channels
        .or(device.as_ref().map(|(_, channels)| *channels))
        .unwrap_or(2);
    let rates = match (args.sample_rate, &device) {
        (Some(rate), _) => vec![rate],
        (None, Some((rates, _))) if !rates.is_empty() => rates.clone(),
        _ => vec![48_000, 44_100],
    };
    let depths: Vec<u16> = match &args.bit_depth {
        Some(depth) => vec![depth.parse().expect("clap limits --bit-depth to numbers")],
        None => vec![24, 16],
    };
    let mut formats = Vec::new();
    for &codec in &args.codec {
        for &bit_depth in &depths {
            for &sample_rate in &rates {
                let offered = SupportedFormat {
                    codec: resonate::audio::Codec::from(codec).as_str().into(),
                    channels,
                    sample_rate,
                    bit_depth,
                };
                if codec_carries(codec, &offered) && !formats.contains(&offered) {
                    formats.push(offered);
                }
            }
        }
    }
    if formats.is_empty() {
        return Err(format!(
            "no format to advertise: --codec {} cannot carry {} channels at {} Hz and {} bits; add pcm to --codec \
             or choose a rate and channel count the codec supports (opus: 48000 Hz and 1 or 2 channels)",
            args.codec.iter().map(|c| resonate::audio::Codec::from(*c).as_str()).collect::<Vec<_>>().join(","),
            channels,
            rates.iter().map(u32::to_string).collect::<Vec<_>>().join(" or "),
            depths.iter().map(u16::to_string).collect::<Vec<_>>().join(" or "),
        ));
    }
    Ok(formats)
}

/// Returns whether `codec` can carry `format`. PCM carries everything that
/// play offers.
fn codec_carries(codec: CodecArg, format: &SupportedFormat) -> bool {
    match codec {
        CodecArg::Pcm => true,
        CodecArg::Flac => {
            flac::BIT_DEPTHS.contains(&format.bit_depth)
                && format.sample_rate <= flac::MAX_SAMPLE_RATE
        }
        CodecArg::Opus => opus::SAMPLE_RATES.contains(&format.sample_rate) && format.channels <= 2,
    }
}

/// Returns the preferred rates and the channel count (at most 2) of the
/// sound card behind `spec`, or `None` for file and null outputs or an
/// unknown device.
/// Outputs convert samples to the card's sample format, so bit depth is free.
fn device_capabilities(spec: &OutputSpec) -> Option<(Vec<u32>, u16)> {
    let devices = match spec {
        OutputSpec::Default | OutputSpec::Device(_) => output::list_devices().ok()?,
        OutputSpec::Wav(_) | OutputSpec::Null => return None,
    };
    let device = devices.into_iter().find(|device| match spec {
        OutputSpec::Device(name) => &device.name == name || &device.id == name,
        _ => device.is_default,
    })?;
    let channels = device
        .default_config
        .as_ref()
        .map_or(2, |config| config.channels.clamp(1, 2));
    let mut rates: Vec<u32> = PREFERRED_RATES
        .into_iter()
        .filter(|rate| {
            device.supported.iter().any(|range| {
                range.channels == channels
                    && (range.min_sample_rate..=range.max_sample_rate).contains(rate)
            })
        })
        .collect();
    if rates.is_empty() {
        rates.extend(
            device
                .default_config
                .as_ref()
                .map(|config| config.sample_rate),
        );
    }
    Some((rates, channels))
}

fn list_devices() -> Result<(), Failure> {
    let devices = output::list_devices().map_err(Failure::from)?;
    if devices.is_empty() {
        eprintln!("resonate: no audio output device found; use --output wav:PATH or --output null");
        return Ok(());
    }
    for device in devices {
        let marker = if device.is_default { " (default)" } else { "" };
        let config = device
            .default_config
            .as_ref()
            .map(|c| format!("{} Hz, {} ch", c.sample_rate, c.channels))
            .unwrap_or_else(|| "no default configuration".to_string());
        println!(
            "{}{marker}\n    id: {}\n    {config}",
            device.name, device.id
        );
    }
    Ok(())
}

/// Draws the terminal UI until the operator quits or the player stops.
async fn run_interface(
    display: PlayState,
    events: mpsc::UnboundedReceiver<PlayerEvent>,
    commands: mpsc::UnboundedSender<resonate::protocol::ControllerCommand>,
    sample: impl FnMut() -> resonate::player::ui::Live,
) -> std::io::Result<()> {
    let mut guard = resonate::monitor::terminal::TerminalGuard::enter()?;
    let mut app = resonate::player::ui::App::new(display);
    let keys = crossterm::event::EventStream::new();
    resonate::player::ui::run(
        &mut guard.terminal,
        &mut app,
        events,
        keys,
        commands,
        sample,
    )
    .await
}

/// Destination of player events.
enum EventOutput {
    /// Status lines on stderr.
    Status,
    /// JSON lines on stdout.
    Json,
    /// The terminal UI, which draws them.
    Interface(mpsc::UnboundedSender<PlayerEvent>),
}

/// Prints player events, or hands them to the terminal UI, until the
/// player stops, and returns whether it ever connected to a server.
/// `display` merges the server's state deltas for the printed lines.
async fn report_events(
    mut events: mpsc::UnboundedReceiver<PlayerEvent>,
    output: EventOutput,
    mut dialect: Dialect,
    telemetry: Option<PlayerTelemetry>,
    mut display: PlayState,
) -> bool {
    let mut connected = false;
    let mut printed = plain::Printed::default();
    while let Some(event) = events.recv().await {
        connected |= matches!(event, PlayerEvent::Connected { .. });
        if let PlayerEvent::FellBack { dialect: now } = event {
            dialect = now;
        }
        if let Some(telemetry) = &telemetry {
            telemetry.on_event(&event);
        }
        let changes = display.apply(&event);
        match &output {
            EventOutput::Interface(interface) => {
                let _ = interface.send(event);
            }
            EventOutput::Status => {
                print_status(&event);
                for line in printed.changed_lines(&display, changes) {
                    crate::status(&line);
                }
            }
            EventOutput::Json => {
                for value in event_json(&event, dialect, &display) {
                    println!("{value}");
                }
            }
        }
    }
    connected
}

/// Prints one status line for a player event.
fn print_status(event: &PlayerEvent) {
    match event {
        PlayerEvent::Connected { server_name, .. } => {
            crate::status(&format!("connected to {server_name}"))
        }
        PlayerEvent::ServerRejected { server_id, .. } => crate::status(&format!(
            "kept the current server; said goodbye to {server_id}"
        )),
        PlayerEvent::ServerSwitched { from, to } => {
            crate::status(&format!("switched from {from} to {to}"))
        }
        PlayerEvent::Reactivated { active_roles, .. } => crate::status(&format!(
            "the server changed this player's roles to [{}]",
            active_roles.join(", ")
        )),
        PlayerEvent::StreamStarted { format } => crate::status(&format!("playing {format}")),
        PlayerEvent::StreamEnded => crate::status("stream ended; waiting for the next one"),
        PlayerEvent::Disconnected { cause } => crate::status(&format!("disconnected: {cause}")),
        // The player logs each retry and fallback as a warning, and
        // `plain::Printed` returns what changed in the server's state.
        PlayerEvent::Retrying { .. }
        | PlayerEvent::FellBack { .. }
        | PlayerEvent::ServerState(_)
        | PlayerEvent::GroupUpdate(_) => {}
    }
}

/// Returns the JSON lines of a player event. Server state and group deltas
/// are printed merged, as `metadata`, `controller` and `group` events.
fn event_json(
    event: &PlayerEvent,
    dialect: Dialect,
    display: &PlayState,
) -> Vec<serde_json::Value> {
    let value = match event {
        PlayerEvent::Connected {
            server_id,
            server_name,
            active_roles,
            connection_reason,
        } => json!({
            "event": "connected", "server_id": server_id, "server_name": server_name, "active_roles": active_roles,
            "dialect": dialect.as_str(),
            "connection_reason": connection_reason
        }),
        PlayerEvent::ServerRejected {
            server_id,
            connection_reason,
        } => json!({
            "event": "server_rejected", "server_id": server_id, "connection_reason": connection_reason
        }),
        PlayerEvent::ServerSwitched { from, to } => {
            json!({"event": "server_switched", "from": from, "to": to})
        }
        PlayerEvent::Reactivated {
            active_roles,
            connection_reason,
        } => json!({
            "event": "reactivated", "active_roles": active_roles, "connection_reason": connection_reason
        }),
        PlayerEvent::StreamStarted { format } => json!({
            "event": "stream_started", "codec": format.codec.as_str(), "sample_rate": format.sample_rate,
            "channels": format.channels, "bit_depth": format.bit_depth
        }),
        PlayerEvent::StreamEnded => json!({"event": "stream_ended"}),
        PlayerEvent::FellBack { dialect } => {
            json!({"event": "fell_back", "dialect": dialect.as_str()})
        }
        PlayerEvent::Disconnected { cause } => {
            json!({"event": "disconnected", "cause": cause.label(), "detail": cause.to_string()})
        }
        PlayerEvent::Retrying {
            attempt,
            delay,
            error,
        } => json!({
            "event": "retrying", "attempt": attempt, "delay_ms": delay.as_millis() as u64, "error": error
        }),
        PlayerEvent::ServerState(state) => {
            // One server/state can carry both objects: metadata goes first,
            // and the controller state follows as its own line.
            let mut values = Vec::new();
            if state.metadata.is_some() {
                values.push(plain::metadata_json(display));
            }
            if state.controller.is_some() {
                values.push(plain::controller_json(display));
            }
            return values;
        }
        PlayerEvent::GroupUpdate(_) => plain::group_json(display),
    };
    vec![value]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_without_audio_keep_their_own_key() {
        let roles = |text: &str| Some(text.parse::<Roles>().unwrap());
        assert_eq!(identity_stem(None), "player");
        assert_eq!(identity_stem(roles("player,controller")), "player");
        assert_eq!(identity_stem(roles("controller")), "controller");
        assert_eq!(
            identity_stem(roles("controller,metadata")),
            "controller-metadata"
        );
    }

    fn endpoint(instance: &str, family: Family) -> Endpoint {
        Endpoint {
            kind: resonate::discovery::EndpointKind::Server,
            family,
            instance: instance.into(),
            fullname: format!("{instance}._sendspin-server._tcp.local."),
            name: None,
            host: "host.local.".into(),
            addresses: vec![std::net::Ipv4Addr::LOCALHOST.into()],
            port: 8927,
            path: "/sendspin".into(),
        }
    }

    #[test]
    fn sendspin_servers_are_preferred() {
        let mut found = BTreeMap::new();
        for (instance, family) in [
            ("aaa-legacy", Family::ResonateLegacy),
            ("zzz", Family::Sendspin),
        ] {
            let endpoint = endpoint(instance, family);
            found.insert(preference(&endpoint), endpoint);
        }
        let first = found.into_values().next().unwrap();
        assert_eq!(first.instance, "zzz");
        assert_eq!(dialect_of(first.family), Dialect::Sendspin);
    }

    #[test]
    fn legacy_server_speaks_resonate() {
        assert_eq!(dialect_of(Family::ResonateLegacy), Dialect::Resonate);
    }
}
