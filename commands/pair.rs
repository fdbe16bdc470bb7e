//! `resonate serve pair` and `resonate play pair`: one-time Sendspin 1.0
//! pairing of a player with a server, by a static code, a dynamic code or
//! the player's pairing token.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use resonate::dialect::sendspin::ClientPairing;
use resonate::noise::handshake::{self, HandshakeError, PskChoice, ServerOptions};
use resonate::noise::pairing::{decode_token, encode_token, PskToken};
use resonate::noise::pairing_code::{self, PairingError, StaticCode};
use resonate::noise::{ClientIdSet, Identity, PairingStore, PskCategory, Suite, APPROVALS};
use resonate::player::encrypted::{self as client_side, ClientKeys, Paired};
use resonate::protocol::ClientHello;
use resonate::server::pairing::{CodeMethod, CodePairing, Operator};
use resonate::transport::{self, parse_ws_url, Limits};

use crate::cli::{PairMethodArg, PlayPairArgs, ServePairArgs};
use crate::Failure;

/// How long each pairing message may take to arrive once an attempt runs.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Wait before `play pair` connects again to a server that closed the
/// connection while the pairing window is open.
const REDIAL_DELAY: Duration = Duration::from_millis(500);

/// Maximum wait between two connections of `play pair`.
const MAX_REDIAL_DELAY: Duration = Duration::from_secs(8);

fn state_dir(requested: &Option<PathBuf>) -> Result<PathBuf, Failure> {
    match requested {
        Some(dir) => Ok(dir.clone()),
        None => resonate::noise::default_state_dir().map_err(Failure::usage),
    }
}

fn positive_seconds(flag: &str, seconds: f64) -> Result<Duration, Failure> {
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        return Err(Failure::usage(anyhow!(
            "{flag} {seconds} is out of range; use 1 to 86400 seconds"
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn print_event(json_output: bool, event: Value, line: &str) {
    if json_output {
        println!("{event}");
    } else {
        crate::status(line);
    }
}

/// Runs `resonate serve pair`.
pub fn serve_pair(args: ServePairArgs) -> Result<(), Failure> {
    let limit = positive_seconds("--timeout", args.timeout)?;
    let preset = match &args.code {
        Some(text) => Some(StaticCode::parse(text).map_err(|reason| {
            Failure::usage(anyhow!("{reason}; pass --code as play pair shows it"))
        })?),
        None => None,
    };
    let token = match &args.token {
        Some(text) => Some(decode_token(text).map_err(|reason| {
            Failure::usage(anyhow!("{reason}; pass --token as play pair shows it"))
        })?),
        None => None,
    };
    if preset.is_some() && args.method == Some(PairMethodArg::Dynamic) {
        return Err(Failure::usage(anyhow!(
            "--code is a static pairing code, but --method dynamic asks for the code the player shows; drop one of them"
        )));
    }
    if !args.path.starts_with('/') {
        return Err(Failure::usage(anyhow!(
            "--path {:?} must start with /, such as /sendspin",
            args.path
        )));
    }
    let dir = state_dir(&args.state_dir)?;
    let identity =
        Identity::load_or_create(&dir.join("identity-server.json")).map_err(Failure::usage)?;
    let records = dir.join("pairings-server.json");

    let runtime = crate::runtime()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}; choose another --listen address or port", args.listen))
            .map_err(Failure::usage)?;
        let addr = listener.local_addr().context("listener has no local address")?;
        let url = format!("ws://{addr}{}", args.path);
        print_event(
            args.json,
            json!({ "event": "listening", "url": url, "server_id": identity.id() }),
            &format!("waiting for a player to pair at {url}; on the player run: resonate play pair --server {url}"),
        );
        let mut operator = TerminalOperator::new(preset, args.json);
        let pairing = wait_and_pair(&listener, &identity, &records, &args, token.as_ref(), &mut operator);
        let interrupt = crate::interrupted();
        tokio::select! {
            outcome = tokio::time::timeout(limit, pairing) => match outcome {
                Ok(Ok((client_id, method))) => {
                    // A paired client needs no approval any more.
                    let approvals = dir.join("approvals-server.json");
                    let discarded = ClientIdSet::load(&approvals, APPROVALS).and_then(|mut stored| stored.remove(&client_id));
                    if let Err(err) = discarded {
                        tracing::warn!(client = %client_id, cause = %err, "cannot discard the approval of the paired client");
                    }
                    print_event(
                        args.json,
                        json!({ "event": "paired", "client_id": client_id, "method": method }),
                        &format!(
                            "paired with player {client_id} by {method}; serve --dialect sendspin --state-dir {} now admits it",
                            dir.display()
                        ),
                    );
                    Ok(())
                }
                Ok(Err(failure)) => Err(failure),
                Err(_) => Err(Failure::from(anyhow!(
                    "no player paired within {} s; start play pair on the player, or pass a longer --timeout",
                    limit.as_secs_f64()
                ))),
            },
            _ = interrupt => Err(Failure::from(anyhow!("interrupted; nothing was paired"))),
        }
    })
}

/// Accepts players until one pairs. A player that is already paired, or
/// that offers no method this server can start, gets a status line with
/// the reason, and its connection is closed.
async fn wait_and_pair(
    listener: &TcpListener,
    identity: &Identity,
    records: &std::path::Path,
    args: &ServePairArgs,
    token: Option<&PskToken>,
    operator: &mut TerminalOperator,
) -> Result<(String, &'static str), Failure> {
    let limits = Limits::default();
    loop {
        let (stream, peer) = listener
            .accept()
            .await
            .context("accepting a connection failed")?;
        let mut ws = match transport::accept(stream, &peer.to_string(), &args.path, &limits).await {
            Ok(ws) => ws,
            Err(err) => {
                tracing::info!(%peer, cause = %err, "WebSocket handshake failed");
                continue;
            }
        };
        let stored = PairingStore::load(records).map_err(Failure::usage)?;
        let choose = |client_id: &str| {
            if let Some(psk) = stored
                .record_of(client_id)
                .and_then(|record| record.psk_bytes())
            {
                return Some(PskChoice {
                    psk,
                    category: PskCategory::LongTerm,
                });
            }
            Some(match token.filter(|token| token.client_id == client_id) {
                Some(token) => PskChoice {
                    psk: token.pairing_psk,
                    category: PskCategory::Pairing,
                },
                None => PskChoice::sentinel(),
            })
        };
        let options = ServerOptions {
            identity,
            timeout: STEP_TIMEOUT,
        };
        let established = match handshake::accept(&mut ws, None, options, choose).await {
            Ok(established) => established,
            Err(err) => {
                crate::status(&format!(
                    "a connection from {peer} failed its Noise handshake: {err}"
                ));
                let _ = ws.close(None).await;
                continue;
            }
        };
        let client_id = established.peer_id.clone();
        let mut channel = established.channel;
        let hello = json!({ "type": "server/hello", "payload": { "name": args.name } }).to_string();
        if let Err(err) = handshake::send_json(&mut ws, &mut channel, &hello).await {
            crate::status(&format!(
                "player {client_id} left before server/hello: {err}"
            ));
            continue;
        }
        match established.category {
            PskCategory::LongTerm => {
                crate::status(&format!(
                    "player {client_id} is already paired with this server; remove its record from {} to pair it again",
                    records.display()
                ));
                let _ = ws.close(None).await;
                continue;
            }
            PskCategory::Pairing => {
                resonate::server::encrypted::pair_with_psk(
                    &mut ws,
                    &mut channel,
                    identity,
                    records,
                    &client_id,
                    established.suite,
                    &established.handshake_hash,
                    STEP_TIMEOUT,
                )
                .await
                .map_err(|err| {
                    anyhow!("pairing with player {client_id} by its pairing token failed: {err}")
                })?;
                let _ = ws.close(None).await;
                return Ok((client_id, "pairing_psk"));
            }
            PskCategory::Sentinel => {}
        }
        if token.is_some() {
            crate::status(&format!(
                "player {client_id} is not the player of --token; waiting for that player"
            ));
            let _ = ws.close(None).await;
            continue;
        }

        let client_hello = match handshake::receive_json(
            &mut ws,
            &mut channel,
            "client/hello",
            STEP_TIMEOUT,
        )
        .await
        {
            Ok(hello) => hello,
            Err(err) => {
                crate::status(&format!("player {client_id} sent no client/hello: {err}"));
                continue;
            }
        };
        let Some(method) = pick_method(&client_hello, args.method, operator.preset.is_some())
        else {
            crate::status(&format!(
                "player {client_id} offers no pairing code method this run can use (it offers {}); pair it by its pairing token with --token",
                client_hello.pointer("/payload/supported_pair_methods").unwrap_or(&Value::Null)
            ));
            let _ = ws.close(None).await;
            continue;
        };
        print_event(
            args.json,
            json!({ "event": "pairing", "client_id": client_id, "method": method_name(method) }),
            &format!("pairing with player {client_id} by its {method}"),
        );
        let pairing = CodePairing {
            ws: &mut ws,
            channel: &mut channel,
            identity,
            records,
            client_id: &client_id,
            suite: established.suite,
            handshake_hash: &established.handshake_hash,
            timeout: STEP_TIMEOUT,
        };
        let outcome = pairing.run(method, operator).await;
        match outcome {
            Ok(()) => end_pairing(&mut ws, &mut channel).await,
            Err(_) => {
                let _ = ws.close(None).await;
            }
        }
        return match outcome {
            Ok(()) => Ok((client_id, method_name(method))),
            Err(PairingError::CodeMismatch) => Err(Failure::from(anyhow!(
                "pairing with player {client_id} failed: the code entered is not the player's; run serve pair again and check the code"
            ))),
            Err(err) => Err(Failure::from(anyhow!("pairing with player {client_id} failed: {err}"))),
        };
    }
}

/// Ends the pairing activity as the spec requires, with a `server/activate`
/// that declares no activities and no roles, then closes: this run only
/// pairs, and `serve` activates the player when it connects there.
async fn end_pairing<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    channel: &mut resonate::noise::handshake::Channel,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let activate =
        json!({ "type": "server/activate", "payload": { "activities": [], "active_roles": [] } });
    if let Err(err) = handshake::send_json(ws, channel, &activate.to_string()).await {
        tracing::info!(cause = %err, "the player left before the closing server/activate");
    }
    let _ = ws.close(None).await;
}

/// Picks the method to start from what the player offers and what the
/// operator asked for. A preset static code rules out dynamic codes.
fn pick_method(
    hello: &Value,
    requested: Option<PairMethodArg>,
    has_preset: bool,
) -> Option<CodeMethod> {
    let offered = CodeMethod::choose(hello)?;
    let offers_static = hello
        .pointer("/payload/supported_pair_methods/static_pairing_code")
        .is_some();
    match requested {
        Some(PairMethodArg::Static) => offers_static.then_some(CodeMethod::Static),
        Some(PairMethodArg::Dynamic) => offered.is_dynamic().then_some(offered),
        Some(PairMethodArg::Auto) | None if has_preset => {
            offers_static.then_some(CodeMethod::Static)
        }
        Some(PairMethodArg::Auto) | None => Some(offered),
    }
}

fn method_name(method: CodeMethod) -> &'static str {
    match method {
        CodeMethod::Static => "static_pairing_code",
        CodeMethod::DynamicDigits | CodeMethod::DynamicQrCode => "dynamic_pairing_code",
    }
}

/// The operator at the terminal: a static code given up front, or lines
/// typed on stdin.
struct TerminalOperator {
    preset: Option<StaticCode>,
    json_output: bool,
    lines: Option<mpsc::UnboundedReceiver<String>>,
}

impl TerminalOperator {
    fn new(preset: Option<StaticCode>, json_output: bool) -> Self {
        Self {
            preset,
            json_output,
            lines: None,
        }
    }

    /// Reads stdin on a thread of its own from the first prompt on.
    fn lines(&mut self) -> &mut mpsc::UnboundedReceiver<String> {
        self.lines.get_or_insert_with(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        return;
                    }
                }
            });
            receiver
        })
    }
}

impl Operator for TerminalOperator {
    fn pending(&mut self, client_id: &str, message: Option<&str>) {
        let quoted = message
            .map(|text| format!(": \"{text}\""))
            .unwrap_or_default();
        print_event(
            self.json_output,
            json!({ "event": "pair_pending", "client_id": client_id, "message": message }),
            &format!(
                "player {client_id} holds the pairing back until its pairing window opens{quoted}"
            ),
        );
    }

    fn code<'a>(
        &'a mut self,
        client_id: &'a str,
        method: CodeMethod,
        round: u32,
        rejected: Option<&'a str>,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            if rejected.is_none() && method == CodeMethod::Static {
                if let Some(code) = &self.preset {
                    return Some(code.digits().to_string());
                }
            }
            if let Some(reason) = rejected {
                eprintln!("resonate: {reason}");
            }
            let expected_input = match method {
                CodeMethod::Static => "the player's static pairing code (1234-5678)",
                CodeMethod::DynamicDigits => "the code the player shows or speaks (123-456)",
                CodeMethod::DynamicQrCode => "the pairing token the player shows (SP:1...)",
            };
            let again = if round > 1 {
                " again; the last one did not match"
            } else {
                ""
            };
            if self.json_output {
                println!(
                    "{}",
                    json!({ "event": "code_wanted", "client_id": client_id, "round": round })
                );
            } else {
                // A prompt, so -q does not hide it.
                eprintln!("resonate: type {expected_input}{again}, then Enter:");
            }
            self.lines().recv().await
        })
    }
}

/// Runs `resonate play pair`.
pub fn play_pair(args: PlayPairArgs) -> Result<(), Failure> {
    let window = positive_seconds("--window", args.window)?;
    let suite = Suite::from_name(&args.suite).ok_or_else(|| {
        Failure::usage(anyhow!(
            "unknown --suite {:?}; use 25519_ChaChaPoly_SHA256 or 25519_AESGCM_SHA256",
            args.suite
        ))
    })?;
    let chosen = match &args.code {
        Some(text) => Some(
            StaticCode::parse(text)
                .map_err(|reason| Failure::usage(anyhow!("{reason}; choose 8 digits")))?,
        ),
        None => None,
    };
    let url = match &args.server {
        Some(text) => Some(parse_ws_url(text, "/sendspin").map_err(Failure::usage)?),
        None => None,
    };
    let dir = state_dir(&args.state_dir)?;
    let identity =
        Identity::load_or_create(&dir.join("identity-player.json")).map_err(Failure::usage)?;
    let pairing_psk =
        resonate::noise::pairing::load_or_create_pairing_psk(&dir.join("pairing-psk-player.txt"))
            .map_err(Failure::usage)?;
    let code = pairing_code::load_or_create_static_code(
        &dir.join("pairing-code-player.txt"),
        chosen.as_ref(),
    )
    .map_err(Failure::usage)?;
    let token = encode_token(identity.public_key(), &pairing_psk);
    let client_id = identity.id();
    let location = if chosen.is_some() {
        "operator"
    } else {
        "device"
    };
    print_event(
        args.json,
        json!({ "event": "pairing_secrets", "client_id": client_id, "token": token, "static_code": code.grouped() }),
        &format!(
            "player {client_id}\n  pairing token: {token}\n  static pairing code: {}\nOn the server, enter the token (resonate serve pair --token TOKEN, or serve --pair-token TOKEN) or, when it asks, the code (resonate serve pair).",
            code.grouped()
        ),
    );
    let Some(url) = url else {
        crate::status("pass --server URL to connect to the server and wait for it to pair");
        return Ok(());
    };

    let mut pairing = ClientPairing::default();
    pairing.methods.insert(
        "static_pairing_code".into(),
        json!({ "locations": [location] }),
    );
    let keys = ClientKeys {
        identity,
        records_path: dir.join("pairings-player.json"),
        suite,
        pairing,
        pairing_psk: Some(pairing_psk),
        pairing_slot: Default::default(),
    };
    let name = args.name.clone().unwrap_or_else(crate::host_name);
    let hello = ClientHello {
        client_id: client_id.clone(),
        name,
        device_info: None,
        version: 1,
        supported_roles: vec!["metadata@v1".into()],
        player_support: None,
        artwork_support: None,
        visualizer_support: None,
        extra: Default::default(),
    };

    let runtime = crate::runtime()?;
    runtime.block_on(async move {
        let interrupt = crate::interrupted();
        tokio::pin!(interrupt);
        let limits = Limits::default();
        let closes = tokio::time::Instant::now() + window;
        let mut ws = transport::connect(&url, &limits).await.map_err(Failure::usage)?;
        print_event(
            args.json,
            json!({ "event": "waiting", "url": url.as_str(), "window_seconds": window.as_secs_f64() }),
            &format!(
                "connected to {url}; the pairing window is open for {} s: start the pairing on the server now (resonate serve pair, or for a running serve: resonate serve clients --pair-code {client_id}={})",
                window.as_secs(),
                code.grouped()
            ),
        );
        let mut delay = REDIAL_DELAY;
        let outcome = loop {
            let left = closes.saturating_duration_since(tokio::time::Instant::now());
            let outcome = tokio::select! {
                outcome = client_side::pair(&mut ws, &keys, &hello, &code, left, STEP_TIMEOUT) => outcome,
                _ = &mut interrupt => return Err(Failure::from(anyhow!("interrupted; nothing was paired"))),
            };
            let _ = ws.close(None).await;
            // A running serve closes the session of a client whose pairing
            // was just requested, so that its next connection pairs. A close
            // during the pairing itself is a failure.
            let closed_before_pairing = matches!(
                outcome,
                Err(PairingError::Handshake(HandshakeError::Closed {
                    what: "server/activate"
                }))
            );
            if !closed_before_pairing || tokio::time::Instant::now() + delay >= closes {
                break outcome;
            }
            crate::status("the server closed the connection; connecting again while the pairing window is open");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_REDIAL_DELAY);
            ws = transport::connect(&url, &limits).await.map_err(Failure::usage)?;
        };
        match outcome {
            Ok(Paired::New { server_id, method }) => {
                print_event(
                    args.json,
                    json!({ "event": "paired", "server_id": server_id, "method": method }),
                    &format!(
                        "paired with server {server_id} by {method}; play --dialect sendspin --server {url} --state-dir {} now connects as a paired player",
                        dir.display()
                    ),
                );
                Ok(())
            }
            Ok(Paired::Already { server_id }) => {
                print_event(
                    args.json,
                    json!({ "event": "already_paired", "server_id": server_id }),
                    &format!("already paired with server {server_id}; nothing to do"),
                );
                Ok(())
            }
            Err(PairingError::CodeMismatch) => Err(Failure::from(anyhow!(
                "the server entered a code that is not this player's ({}); pairing failed, run play pair again",
                code.grouped()
            ))),
            Err(err) => Err(Failure::from(anyhow!("pairing with {url} failed: {err}"))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(methods: Value) -> Value {
        json!({ "payload": { "supported_pair_methods": methods } })
    }

    #[test]
    fn preset_code_picks_static() {
        let both = hello(
            json!({ "static_pairing_code": {}, "dynamic_pairing_code": { "out_channels": ["display"], "formats": ["digits"] } }),
        );
        assert_eq!(pick_method(&both, None, true), Some(CodeMethod::Static));
        assert_eq!(
            pick_method(&both, None, false),
            Some(CodeMethod::DynamicDigits)
        );
        assert_eq!(
            pick_method(&both, Some(PairMethodArg::Static), false),
            Some(CodeMethod::Static)
        );
        let dynamic_only = hello(
            json!({ "dynamic_pairing_code": { "out_channels": ["speaker"], "formats": ["digits"] } }),
        );
        assert_eq!(
            pick_method(&dynamic_only, Some(PairMethodArg::Static), false),
            None
        );
        assert_eq!(pick_method(&dynamic_only, None, true), None);
    }
}
