//! `resonate serve`: play a queue of files, playlists or a test signal to
//! players, in sync.

use resonate::noise::identity::{PairingRequest, PairingRequests};
use resonate::noise::pairing_code::StaticCode;
use resonate::noise::{ClientIdSet, Identity, PairingStore, APPROVALS, PENDING_UNPAIRS};
use resonate::server::encrypted::ServerKeys;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::net::TcpListener;

use crate::cli::{AccessArgs, GroupingArg, RepeatArg, ServeArgs, ServeClientsArgs, ToneArg};
use crate::Failure;
use resonate::audio::pipe::PcmPipe;
use resonate::audio::source::SourceDecoder;
use resonate::audio::tone::{ToneKind, TONE_CHANNELS, TONE_RATE};
use resonate::dialect::Dialect;
use resonate::discovery::{Advertisement, Mdns, Scope, ServiceType};
use resonate::protocol::RepeatMode;
use resonate::server::dial::follow_players;
use resonate::server::queue::PipeEntry;
use resonate::server::{
    expand_sources, EncoderSettings, Grouping, QueueEntry, Server, ServerConfig, ServerEvent,
    SourcePlan,
};
use resonate::transport::{parse_ws_url_with_port, DEFAULT_CLIENT_PORT};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub fn run(args: ServeArgs) -> Result<(), Failure> {
    if args.demo {
        return crate::demo::run(args.demo_seconds, args.demo_players as usize, args.json);
    }
    if !args.path.starts_with('/') {
        return Err(Failure::usage(anyhow::anyhow!(
            "invalid --path {:?}: a WebSocket path starts with /, such as /sendspin",
            args.path
        )));
    }
    let legacy_path = Dialect::Resonate.default_path();
    if args.legacy && args.path == legacy_path {
        return Err(Failure::usage(anyhow::anyhow!(
            "--path {legacy_path} is where --legacy accepts legacy Resonate clients; give Sendspin clients another path, such as /sendspin"
        )));
    }
    check_placements(&args.groups)?;
    let mut plan = source_plan(&args)?;
    let first = describe_first(&mut plan)?;
    let mut config = config_from(&args, plan.clone());
    if let Some(keys) = server_keys(&args)? {
        config.server_id = keys.identity.id();
        config.dialect = Dialect::Sendspin;
        config.keys = Some(keys);
    }
    let client_urls = args
        .clients
        .iter()
        .map(|text| parse_ws_url_with_port(text, &config.path, DEFAULT_CLIENT_PORT))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| Failure::usage(anyhow::Error::new(err).context("invalid --client URL")))?;

    let runtime = crate::runtime()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}; choose another --listen address or port",
                    args.listen
                )
            })
            .map_err(Failure::usage)?;
        let addr = listener
            .local_addr()
            .context("listener has no local address")?;
        let mut server = Server::new(config.clone());
        let hub = (args.telemetry.is_some() || args.tui)
            .then(|| crate::telemetry::hub("serve", &config.name, &addr.to_string()));
        let feed = match (args.telemetry, &hub) {
            (Some(telemetry_addr), Some(hub)) => {
                let feed = crate::telemetry::start(telemetry_addr, hub).await?;
                if args.json {
                    print_json(&json!({"event": "telemetry", "addr": feed.addr.to_string()}));
                }
                Some(feed)
            }
            _ => None,
        };
        if let Some(hub) = &hub {
            server = server.with_telemetry(hub.clone());
        }
        // With --tui, quitting the monitor stops the server like Ctrl-C.
        let monitor_stop = tokio_util::sync::CancellationToken::new();
        let monitor = match (&hub, args.tui) {
            (Some(hub), true) => Some(tokio::spawn(resonate::monitor::run_in_process(
                hub.clone(),
                monitor_stop.clone(),
            ))),
            _ => None,
        };
        let monitor_ended = monitor_stop.clone();
        let interrupt = crate::interrupted();
        let shutdown = async move {
            match monitor {
                Some(monitor) => {
                    tokio::select! {
                        _ = interrupt => {}
                        ended = monitor => {
                            if let Ok(Err(err)) = ended {
                                tracing::error!(cause = %err, "the monitor failed");
                            }
                        }
                    }
                }
                None => interrupt.await,
            }
            monitor_ended.cancel();
        };
        let events = server.subscribe();
        let dialer = server.dialer();
        for url in &client_urls {
            dialer.add(url.clone());
        }
        let mdns = if args.no_mdns {
            None
        } else {
            Some(start_mdns(&args, &config, addr)?)
        };
        let browsing = match &mdns {
            Some(mdns) => Some(
                mdns.browse(&[ServiceType::SENDSPIN_CLIENT])
                    .map_err(Failure::from)?,
            ),
            None => None,
        };
        let follower =
            browsing.map(|players| tokio::spawn(follow_players(players, dialer.clone())));
        let url = format!("ws://{addr}{}", config.path);
        let legacy_url = config
            .legacy_path
            .as_ref()
            .map(|path| format!("ws://{addr}{path}"));
        if args.json {
            let mut listening = json!({
                "event": "listening", "url": url, "addr": addr.to_string(),
                "dialect": config.dialect.as_str(), "server_id": config.server_id,
            });
            if let Some(legacy_url) = &legacy_url {
                listening["legacy_url"] = json!(legacy_url);
            }
            print_json(&listening);
        } else {
            let also = legacy_url
                .map(|legacy_url| format!(" and {legacy_url} (legacy Resonate)"))
                .unwrap_or_default();
            let more = match plan.entries.len() {
                1 => String::new(),
                n => format!(" and {} more", n - 1),
            };
            let dialect = match &config.keys {
                Some(keys) if keys.accept_v1 => format!(
                    "Sendspin 1.0 as server {}, and cleartext v1",
                    config.server_id
                ),
                Some(_) => format!("Sendspin 1.0 as server {}", config.server_id),
                None => "cleartext Sendspin v1".to_string(),
            };
            crate::status(&format!("serving {first}{more} on {url} ({dialect}){also}"));
        }
        let printer = tokio::spawn(report_events(events, args.json));
        let outcome = server.run(listener, shutdown).await;
        monitor_stop.cancel();
        if let Some(follower) = follower {
            follower.abort();
        }
        drop(mdns);
        if let Some(feed) = feed {
            feed.stop().await;
        }
        outcome?;
        // The server dropped its event sender, which ends the printer.
        let _ = tokio::time::timeout(Duration::from_secs(1), printer).await;
        Ok(())
    })
}

/// Rejects a client placed in two groups and a group named twice.
fn check_placements(groups: &[resonate::server::GroupPlacement]) -> Result<(), Failure> {
    let mut names = std::collections::HashSet::new();
    let mut placed = std::collections::HashMap::new();
    for group in groups {
        if group.name == "main" || group.name.starts_with("solo-") {
            return Err(Failure::usage(anyhow::anyhow!(
                "--group {} uses a name the server keeps for its own groups (main, solo-*); choose another name",
                group.name
            )));
        }
        if !names.insert(group.name.as_str()) {
            return Err(Failure::usage(anyhow::anyhow!(
                "--group {} is given twice; list all of its clients in one --group",
                group.name
            )));
        }
        for id in &group.client_ids {
            if let Some(other) = placed.insert(id.as_str(), group.name.as_str()) {
                return Err(Failure::usage(anyhow::anyhow!(
                    "client {id} is placed in both --group {other} and --group {}; place it in one group",
                    group.name
                )));
            }
        }
    }
    Ok(())
}

/// Builds the queue from the SOURCEs and --tone, with its repeat and
/// shuffle modes.
fn source_plan(args: &ServeArgs) -> Result<SourcePlan, Failure> {
    if let Some(format) = args.stdin_format {
        let pipe = PcmPipe::spawn(format, std::io::stdin());
        return Ok(SourcePlan {
            entries: vec![QueueEntry::Pipe(PipeEntry(pipe))],
            repeat: RepeatMode::Off,
            shuffle: false,
        });
    }
    let mut entries =
        expand_sources(&args.sources).map_err(|err| Failure::usage(anyhow::Error::new(err)))?;
    if let Some(tone) = args.tone {
        entries.push(QueueEntry::Tone(match tone {
            ToneArg::Sine => ToneKind::Sine,
            ToneArg::Click => ToneKind::Click,
        }));
    }
    let repeat = match (args.looping, args.repeat) {
        (true, _) | (_, RepeatArg::All) => RepeatMode::All,
        (false, RepeatArg::One) => RepeatMode::One,
        (false, RepeatArg::Off) => RepeatMode::Off,
    };
    Ok(SourcePlan {
        entries,
        repeat,
        shuffle: args.shuffle,
    })
}

/// Opens the queue's files from the first on until one plays, and
/// describes the first entry that plays. A file that cannot play is dropped
/// from the queue with a warning when more entries follow it, so the server
/// starts with the next one. A file that cannot play with nothing after it
/// is an error before the server starts.
fn describe_first(plan: &mut SourcePlan) -> Result<String, Failure> {
    loop {
        let path = match plan.entries.first() {
            Some(QueueEntry::File(path)) => path,
            Some(QueueEntry::Tone(kind)) => {
                return Ok(format!(
                    "a {} tone ({TONE_RATE} Hz, {TONE_CHANNELS} ch)",
                    kind.as_str()
                ))
            }
            Some(QueueEntry::Pipe(pipe)) => {
                let format = pipe.0.format();
                return Ok(format!(
                    "raw PCM from stdin ({} Hz, {} ch, {}-bit)",
                    format.sample_rate, format.channels, format.bit_depth
                ));
            }
            None => {
                return Err(Failure::usage(anyhow::anyhow!(
                    "nothing to play; pass an audio file, directory or playlist, or --tone"
                )))
            }
        };
        match SourceDecoder::open(path) {
            Ok(source) => {
                let info = source.info();
                return Ok(format!(
                    "{} ({} Hz, {} ch, {}-bit)",
                    path.display(),
                    info.sample_rate,
                    info.channels,
                    info.bit_depth
                ));
            }
            Err(err) if plan.entries.len() > 1 => {
                tracing::warn!(path = %path.display(), cause = %err, "skipping a queue entry that cannot play");
                plan.entries.remove(0);
            }
            Err(err) => return Err(Failure::usage(err)),
        }
    }
}

/// Advertises the server as `_sendspin-server._tcp` on the interfaces the
/// listener serves.
fn start_mdns(args: &ServeArgs, config: &ServerConfig, addr: SocketAddr) -> Result<Mdns, Failure> {
    let scope = match &args.interface {
        Some(name) => Scope::Interface(name.clone()),
        None => Scope::for_listen_address(addr.ip()),
    };
    let mut mdns = Mdns::start(scope).map_err(Failure::usage)?;
    let advertisement = Advertisement {
        service: ServiceType::SENDSPIN_SERVER,
        instance: config.server_id.clone(),
        name: config.name.clone(),
        port: addr.port(),
        path: config.path.clone(),
    };
    mdns.advertise(&advertisement).map_err(Failure::usage)?;
    if let Some(legacy_path) = &config.legacy_path {
        let legacy = Advertisement {
            service: ServiceType::RESONATE_SERVER,
            path: legacy_path.clone(),
            ..advertisement
        };
        mdns.advertise(&legacy).map_err(Failure::usage)?;
    }
    Ok(mdns)
}

/// Loads (or creates) the server's Sendspin 1.0 identity when `--dialect
/// sendspin` asks for it, with the admission policy of the flags.
fn server_keys(args: &ServeArgs) -> Result<Option<ServerKeys>, Failure> {
    let dialect: Dialect = args
        .dialect
        .parse()
        .map_err(|e: String| Failure::usage(anyhow::anyhow!(e)))?;
    let encrypted_only = [
        (args.accept_v1, "--accept-v1"),
        (args.allow_unpaired, "--allow-unpaired"),
        (!args.access.approve.is_empty(), "--approve"),
        (!args.access.revoke.is_empty(), "--revoke"),
        (!args.access.unpair.is_empty(), "--unpair"),
        (!args.pair_token.is_empty(), "--pair-token"),
        (args.rekey_interval.is_some(), "--rekey-interval"),
    ];
    match dialect {
        Dialect::Sendspin => {}
        Dialect::SendspinV1 => {
            if let Some((_, flag)) = encrypted_only.iter().find(|(given, _)| *given) {
                return Err(Failure::usage(anyhow::anyhow!("{flag} applies to Sendspin 1.0 clients only; drop it or drop --dialect sendspin-v1")));
            }
            return Ok(None);
        }
        Dialect::Resonate => {
            return Err(Failure::usage(anyhow::anyhow!(
                "--dialect resonate is not a dialect of --path; use --legacy to accept legacy Resonate clients at /resonate"
            )))
        }
    }
    if args.server_id.is_some() {
        return Err(Failure::usage(anyhow::anyhow!(
            "--server-id cannot be combined with Sendspin 1.0, the default dialect: its server_id is the public key stored in the state directory; use --state-dir, or add --dialect sendspin-v1 to keep the id"
        )));
    }
    // The flags are stored like those of serve clients, so that a later
    // serve clients run can undo them while this server runs.
    let change = AccessChange {
        access: &args.access,
        pairings: pairing_requests(&args.pair_token, &[])?,
        cancel_pairings: &[],
        already_paired: PairedClient::Skip,
    };
    change.check()?;
    let dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => resonate::noise::default_state_dir().map_err(Failure::usage)?,
    };
    let identity =
        Identity::load_or_create(&dir.join("identity-server.json")).map_err(Failure::usage)?;
    let state = ServerState::in_dir(&dir);
    change.apply(&state)?;
    Ok(Some(ServerKeys {
        accept_v1: args.accept_v1,
        allow_unpaired: args.allow_unpaired,
        approvals_path: Some(state.approvals),
        unpairs_path: Some(state.unpairs),
        pairing_requests_path: Some(state.pairing_requests),
        key_rotation: args.rekey_interval.map(Duration::from_secs_f64),
        ..ServerKeys::new(identity, state.records)
    }))
}

/// The files of a server's state directory that admit 1.0 clients.
struct ServerState {
    records: PathBuf,
    approvals: PathBuf,
    unpairs: PathBuf,
    pairing_requests: PathBuf,
}

impl ServerState {
    fn in_dir(dir: &Path) -> ServerState {
        ServerState {
            records: dir.join("pairings-server.json"),
            approvals: dir.join("approvals-server.json"),
            unpairs: dir.join("unpairs-server.json"),
            pairing_requests: dir.join("pairing-requests-server.json"),
        }
    }
}

/// The handling of a pairing requested for a client that is already
/// paired.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PairedClient {
    /// Reject the run: `serve clients`, where the operator is at hand.
    Reject,
    /// Leave the request out with a note: `serve` at start, which a service
    /// manager may run with the same flags long after the pairing.
    Skip,
}

/// Changes an operator makes to who is admitted, kept in the state
/// directory: approvals, revocations, unpairs and pairing requests.
struct AccessChange<'a> {
    access: &'a AccessArgs,
    pairings: Vec<(String, PairingRequest)>,
    cancel_pairings: &'a [String],
    already_paired: PairedClient,
}

impl AccessChange<'_> {
    /// Rejects client ids that are not keys, a client both approved and
    /// revoked, and two pairing requests for one client. Ids to revoke or
    /// to cancel are checked against the files in [`AccessChange::apply`],
    /// so a hand-edited entry that is not a key can still be removed.
    fn check(&self) -> Result<(), Failure> {
        let access = self.access;
        for (flag, ids) in [("--approve", &access.approve), ("--unpair", &access.unpair)] {
            for id in ids {
                check_key(flag, id)?;
            }
        }
        if let Some(id) = access.approve.iter().find(|id| access.revoke.contains(id)) {
            return Err(Failure::usage(anyhow::anyhow!(
                "client {id} is given to both --approve and --revoke; give it to one of them"
            )));
        }
        let mut requested = HashSet::new();
        for (id, _) in &self.pairings {
            if access.unpair.contains(id) {
                return Err(Failure::usage(anyhow::anyhow!(
                    "client {id} is given both --unpair and a pairing request; unpair it first, and request the pairing once it has connected unpaired"
                )));
            }
            if !requested.insert(id.as_str()) {
                return Err(Failure::usage(anyhow::anyhow!(
                    "client {id} is given more than one pairing request (--pair-token or --pair-code); give one"
                )));
            }
            if self.cancel_pairings.contains(id) {
                return Err(Failure::usage(anyhow::anyhow!(
                    "client {id} is given both a pairing request and --cancel-pairing; give one of them"
                )));
            }
        }
        Ok(())
    }

    /// Writes the changes to the state files. Every file is read and every
    /// change checked first, so a run that fails writes nothing.
    fn apply(&self, state: &ServerState) -> Result<(), Failure> {
        let access = self.access;
        let records = PairingStore::load(&state.records).map_err(Failure::usage)?;
        let mut approvals =
            ClientIdSet::load(&state.approvals, APPROVALS).map_err(Failure::usage)?;
        let mut pending =
            ClientIdSet::load(&state.unpairs, PENDING_UNPAIRS).map_err(Failure::usage)?;
        let mut requests =
            PairingRequests::load(&state.pairing_requests).map_err(Failure::usage)?;

        if let Some(id) = access
            .unpair
            .iter()
            .find(|id| records.record_of(id).is_none())
        {
            return Err(Failure::usage(anyhow::anyhow!(
                "--unpair {id}: no pairing record of that client in {}; give the client_id of a paired client",
                state.records.display()
            )));
        }
        for id in &access.revoke {
            if !approvals.contains(id) {
                check_key("--revoke", id)?;
            }
        }
        for id in self.cancel_pairings {
            if requests.request_of(id).is_none() {
                check_key("--cancel-pairing", id)?;
            }
        }
        let mut pairings = Vec::new();
        for (id, request) in &self.pairings {
            if records.record_of(id).is_none() {
                pairings.push((id, request));
                continue;
            }
            match self.already_paired {
                PairedClient::Reject => {
                    return Err(Failure::usage(anyhow::anyhow!(
                        "client {id} is already paired with this server; unpair it first with --unpair {id}"
                    )))
                }
                PairedClient::Skip => crate::status(&format!(
                    "client {id} is already paired with this server; leaving its pairing token unused"
                )),
            }
        }

        for id in &access.approve {
            approvals.insert(id).map_err(Failure::usage)?;
        }
        for id in &access.revoke {
            if !approvals.remove(id).map_err(Failure::usage)? {
                crate::status(&format!("client {id} had no stored approval to revoke"));
            }
        }
        for id in &access.unpair {
            pending.insert(id).map_err(Failure::usage)?;
        }
        for (id, request) in pairings {
            requests
                .insert(id, request.clone())
                .map_err(Failure::usage)?;
        }
        for id in self.cancel_pairings {
            if !requests.remove(id).map_err(Failure::usage)? {
                crate::status(&format!("client {id} had no pairing request to cancel"));
            }
        }
        Ok(())
    }
}

/// Rejects `id`, given to `flag`, unless it is a client_id (a base64url
/// public key).
fn check_key(flag: &str, id: &str) -> Result<(), Failure> {
    resonate::noise::identity::decode_key(id)
        .map(|_| ())
        .map_err(|reason| Failure::usage(anyhow::anyhow!("invalid {flag} {id:?}: {reason}")))
}

/// Runs `serve clients`: applies the access changes given, then lists the
/// paired, approved, to-be-unpaired and to-be-paired clients of the state
/// directory.
pub fn clients(args: ServeClientsArgs) -> Result<(), Failure> {
    let change = AccessChange {
        access: &args.access,
        pairings: pairing_requests(&args.pair_token, &args.pair_code)?,
        cancel_pairings: &args.cancel_pairing,
        already_paired: PairedClient::Reject,
    };
    change.check()?;
    let dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => resonate::noise::default_state_dir().map_err(Failure::usage)?,
    };
    let changes_given = !args.access.approve.is_empty()
        || !args.access.revoke.is_empty()
        || !args.access.unpair.is_empty()
        || !change.pairings.is_empty()
        || !change.cancel_pairings.is_empty();
    if !dir.exists() && !changes_given {
        crate::status(&format!(
            "state directory {} does not exist yet; serve creates it on its first run (check --state-dir)",
            dir.display()
        ));
    }
    let state = ServerState::in_dir(&dir);
    change.apply(&state)?;

    let records = PairingStore::load(&state.records).map_err(Failure::usage)?;
    let requests = PairingRequests::load(&state.pairing_requests).map_err(Failure::usage)?;
    let approvals = ClientIdSet::load(&state.approvals, APPROVALS).map_err(Failure::usage)?;
    let pending = ClientIdSet::load(&state.unpairs, PENDING_UNPAIRS).map_err(Failure::usage)?;
    let paired: Vec<&str> = records
        .records()
        .iter()
        .map(|record| record.peer_id.as_str())
        .collect();
    let approved: Vec<&str> = approvals.client_ids().collect();
    let to_unpair: Vec<&str> = pending.client_ids().collect();
    let to_pair: Vec<String> = requests
        .requests()
        .map(|(id, request)| match request {
            PairingRequest::Code(_) => format!("{id} (static pairing code)"),
            PairingRequest::Token(_) => format!("{id} (pairing token)"),
        })
        .collect();

    if args.json {
        let to_pair: Vec<serde_json::Value> = requests
            .requests()
            .map(|(id, request)| {
                let method = match request {
                    PairingRequest::Code(_) => "static_pairing_code",
                    PairingRequest::Token(_) => "pairing_psk",
                };
                json!({ "client_id": id, "method": method })
            })
            .collect();
        let listing = json!({
            "state_dir": dir.display().to_string(),
            "paired": paired,
            "approved": approved,
            "to_unpair": to_unpair,
            "to_pair": to_pair,
        });
        return print_listing(&format!("{listing}\n"));
    }
    let mut text = format!("state directory {}\n", dir.display());
    let to_pair: Vec<&str> = to_pair.iter().map(String::as_str).collect();
    for (heading, ids) in [
        ("paired", &paired),
        ("approved (unpaired)", &approved),
        ("to unpair on next connection", &to_unpair),
        ("to pair on next connection", &to_pair),
    ] {
        text.push_str(&format!("{heading}: {}\n", ids.len()));
        for id in ids.iter() {
            // A hand-edited entry that is no key never matches a client.
            let key = id.split(' ').next().unwrap_or_default();
            let note = match resonate::noise::identity::decode_key(key) {
                Ok(_) => "",
                Err(_) => " (not a client_id; no client can match it)",
            };
            text.push_str(&format!("  {id}{note}\n"));
        }
    }
    print_listing(&text)
}

/// Prints the listing of `serve clients`. A reader that stops early, such
/// as `head`, ends the output without an error.
fn print_listing(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::from(
            anyhow::Error::new(err).context("cannot write the listing to standard output"),
        )),
        _ => Ok(()),
    }
}

/// Parses pairing requests by client id: from pairing tokens (--pair-token)
/// and from CLIENT_ID=CODE pairs (--pair-code).
fn pairing_requests(
    tokens: &[String],
    codes: &[String],
) -> Result<Vec<(String, PairingRequest)>, Failure> {
    let mut requests = Vec::new();
    for text in tokens {
        let token = resonate::noise::pairing::decode_token(text).map_err(|reason| {
            Failure::usage(anyhow::anyhow!(
                "invalid --pair-token: {reason}; pass the token play --pairing-token printed"
            ))
        })?;
        requests.push((token.client_id, PairingRequest::Token(text.clone())));
    }
    for text in codes {
        let Some((id, code)) = text.split_once('=') else {
            return Err(Failure::usage(anyhow::anyhow!(
                "invalid --pair-code {text:?}: expected CLIENT_ID=CODE, such as the client_id the server logged, '=', and the player's 8-digit code"
            )));
        };
        check_key("--pair-code client id", id)?;
        let code = StaticCode::parse(code).map_err(|reason| {
            Failure::usage(anyhow::anyhow!(
                "invalid --pair-code code {code:?}: {reason}; pass the code play pair shows"
            ))
        })?;
        requests.push((
            id.to_string(),
            PairingRequest::Code(code.digits().to_string()),
        ));
    }
    Ok(requests)
}

pub fn config_from(args: &ServeArgs, source: SourcePlan) -> ServerConfig {
    let mut config = ServerConfig::new(source);
    config.name = args.name.clone();
    config.server_id = args
        .server_id
        .clone()
        .unwrap_or_else(|| format!("resonate-{}", crate::host_name()));
    config.path = args.path.clone();
    if args.legacy {
        config.legacy_path = Some(Dialect::Resonate.default_path().to_string());
    }
    config.grouping = match args.grouping {
        GroupingArg::Shared => Grouping::Shared,
        GroupingArg::Solo => Grouping::Solo,
    };
    config.group_name = args.group_name.clone();
    config.placements = args.groups.clone();
    config.lead = Duration::from_millis(args.lead_ms);
    config.start_delay = Duration::from_millis(args.start_delay_ms);
    config.forced_codec = args.codec.map(Into::into);
    config.encoder = EncoderSettings {
        opus_bitrate_bps: args.opus_bitrate,
    };
    args.connection_limits.apply(&mut config.limits);
    args.server_limits.apply(&mut config.limits);
    config
}

async fn report_events(mut events: tokio::sync::broadcast::Receiver<ServerEvent>, as_json: bool) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(event) if as_json => print_json(&event_json(&event)),
            Ok(event) => tracing::info!(?event, "server event"),
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "event output fell behind; events were dropped")
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn print_json(value: &serde_json::Value) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (a pipe whose reader left) is not an error here.
    let _ = writeln!(stdout, "{value}");
    let _ = stdout.flush();
}

/// Converts a server event to one JSON object with a stable `event` name.
pub fn event_json(event: &ServerEvent) -> serde_json::Value {
    match event {
        ServerEvent::SessionOpened { session, peer } => {
            json!({"event": "session_opened", "session": session.to_string(), "peer": peer.to_string()})
        }
        ServerEvent::ClientJoined {
            session,
            client_id,
            active_roles,
        } => json!({
            "event": "client_joined", "session": session.to_string(), "client_id": client_id, "active_roles": active_roles
        }),
        ServerEvent::ClientReplaced {
            client_id,
            old,
            new,
        } => json!({
            "event": "client_replaced", "client_id": client_id, "old": old.to_string(), "new": new.to_string()
        }),
        ServerEvent::ProgramStarted { group_id, start_us } => {
            json!({"event": "program_started", "group_id": group_id, "start_us": start_us})
        }
        ServerEvent::ProgramEnded { group_id } => {
            json!({"event": "program_ended", "group_id": group_id})
        }
        ServerEvent::StreamStarted { client_id, format } => json!({
            "event": "stream_started", "client_id": client_id, "codec": format.codec.as_str(),
            "sample_rate": format.sample_rate, "channels": format.channels, "bit_depth": format.bit_depth
        }),
        ServerEvent::StreamEnded {
            client_id,
            chunks_sent,
        } => {
            json!({"event": "stream_ended", "client_id": client_id, "chunks_sent": chunks_sent})
        }
        ServerEvent::SessionClosed {
            session,
            client_id,
            cause,
        } => json!({
            "event": "session_closed", "session": session.to_string(), "client_id": client_id,
            "cause": cause.label(), "detail": cause.to_string()
        }),
        ServerEvent::DialStarted { address, url } => {
            json!({"event": "dial_started", "address": address, "url": url})
        }
        ServerEvent::DialStopped { address, reason } => {
            json!({"event": "dial_stopped", "address": address, "reason": reason})
        }
    }
}
