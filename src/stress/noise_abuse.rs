//! The `noise-abuse` scenario: Sendspin 1.0 handshakes and transport
//! messages that the protocol makes fatal, against a server.
//!
//! Each virtual client breaks the rules once, in one of seven ways, and
//! checks that the server rejects it. A bad `client/init` gets no
//! `server/init`, a forged Noise message gets no message at all, and the
//! connection is closed within the bound. Between attempts, a well-behaved
//! client checks that the server still completes handshakes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::{Rng, RngCore};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use super::check::ViolationKind;
use super::probe::identity_for;
use super::report::Counters;
use super::scenarios::{hello, Context, Roles};
use crate::dialect::Dialect;
use crate::noise::fragment::TYPE_FRAGMENT;
use crate::noise::handshake::{self, ClientOptions};
use crate::noise::identity::encode_id;
use crate::noise::Suite;

/// Attempts of one worker between two checks that the server still
/// completes a clean handshake.
const ATTEMPTS_PER_CHECK: u64 = 8;

/// One way to break the Sendspin 1.0 handshake or transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Abuse {
    /// `client/init` naming a cipher suite that does not exist.
    WrongSuite,
    /// `client/init` whose `client_id` is not a base64url Curve25519 key.
    BadClientId,
    /// Noise message 2 cut to 16 bytes.
    TruncatedMessage2,
    /// Noise message 2 of the right length, made of random bytes.
    ForgedMessage2,
    /// A cleartext text frame after the handshake finished.
    CleartextAfterHandshake,
    /// A continuation fragment with no first fragment before it.
    OrphanFragment,
    /// A binary frame of random bytes in place of a transport message.
    ForgedTransport,
}

impl Abuse {
    const ALL: [Abuse; 7] = [
        Abuse::WrongSuite,
        Abuse::BadClientId,
        Abuse::TruncatedMessage2,
        Abuse::ForgedMessage2,
        Abuse::CleartextAfterHandshake,
        Abuse::OrphanFragment,
        Abuse::ForgedTransport,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Abuse::WrongSuite => "wrong suite",
            Abuse::BadClientId => "malformed client_id",
            Abuse::TruncatedMessage2 => "truncated Noise message 2",
            Abuse::ForgedMessage2 => "forged Noise message 2",
            Abuse::CleartextAfterHandshake => "cleartext after the handshake",
            Abuse::OrphanFragment => "continuation fragment without a first",
            Abuse::ForgedTransport => "forged transport message",
        }
    }
}

/// Runs the scenario: `clients` workers, each cycling through the abuses
/// until the duration ends.
pub async fn run(ctx: Arc<Context>) {
    if ctx.target.dialect != Dialect::Sendspin {
        ctx.note_once(format!(
            "noise-abuse runs only with --dialect sendspin; the {} dialect has no Noise handshake",
            ctx.target.dialect
        ));
        return;
    }
    let deadline = Instant::now() + ctx.duration;
    let workers: Vec<_> = (0..ctx.clients as u64)
        .map(|worker| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let mut attempt = 0u64;
                while Instant::now() < deadline {
                    let abuse = Abuse::ALL[((worker + attempt) % Abuse::ALL.len() as u64) as usize];
                    let label = ctx.client_id("abuse", worker * 1_000_000 + attempt);
                    abuse_once(&ctx, abuse, label).await;
                    attempt += 1;
                    if attempt.is_multiple_of(ATTEMPTS_PER_CHECK) {
                        check_still_serving(&ctx, worker, attempt).await;
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
}

/// Opens one connection, breaks the rules in the way of `abuse`, and checks
/// how the server reacts.
async fn abuse_once(ctx: &Context, abuse: Abuse, label: String) {
    let Some(probe) = ctx.open(label.clone(), None).await else {
        return;
    };
    let mut ws = probe.into_socket();
    let identity = identity_for(&label);
    let init = |client_id: &str, suite: &str| {
        json!({ "type": "client/init", "payload": { "client_id": client_id, "version": 1, "suite": suite } }).to_string()
    };
    let outcome = match abuse {
        Abuse::WrongSuite => {
            send(
                &mut ws,
                WsMessage::text(init(&identity.id(), "25519_Bogus_SHA256")),
            )
            .await;
            expect_rejected_init(ctx, &mut ws).await
        }
        Abuse::BadClientId => {
            send(
                &mut ws,
                WsMessage::text(init("not-a-curve25519-key", Suite::ChaChaPoly.as_str())),
            )
            .await;
            expect_rejected_init(ctx, &mut ws).await
        }
        Abuse::TruncatedMessage2 | Abuse::ForgedMessage2 => {
            send(
                &mut ws,
                WsMessage::text(init(&identity.id(), Suite::ChaChaPoly.as_str())),
            )
            .await;
            match read_until_message_1(ctx, &mut ws).await {
                Ok(()) => {
                    // Message 2 carries an ephemeral key (32 bytes) and the
                    // encrypted payload `{}` with its tag (18 bytes).
                    let length = if abuse == Abuse::TruncatedMessage2 {
                        16
                    } else {
                        50
                    };
                    let mut forged = vec![0u8; length];
                    rand::rng().fill_bytes(&mut forged);
                    let message = json!({ "type": "noise/handshake", "payload": { "data": encode_id(&forged) } });
                    send(&mut ws, WsMessage::text(message.to_string())).await;
                    expect_silent_close(ctx, &mut ws, false).await
                }
                Err(outcome) => outcome,
            }
        }
        Abuse::CleartextAfterHandshake | Abuse::OrphanFragment | Abuse::ForgedTransport => {
            let options = ClientOptions {
                identity: &identity,
                suite: Suite::ChaChaPoly,
                records: None,
                pairing_psk: None,
                expected_server: None,
                timeout: ctx.bound,
            };
            match handshake::connect(&mut ws, options).await {
                Ok(mut established) => {
                    let frame = match abuse {
                        Abuse::CleartextAfterHandshake => {
                            let hello = crate::protocol::Message::ClientHello(hello(
                                &label,
                                Roles::CONTROLLER,
                            ));
                            Dialect::SendspinV1
                                .codec()
                                .encode(&crate::dialect::Outgoing::Message(hello))
                                .expect("v1 has a client/hello")
                        }
                        Abuse::OrphanFragment => {
                            // Flags 0x01: the last fragment, with no first.
                            WsMessage::binary(established.channel.seal_unchecked(&[
                                TYPE_FRAGMENT,
                                0x01,
                                b'x',
                            ]))
                        }
                        _ => {
                            let mut forged = vec![0u8; rand::rng().random_range(17..200)];
                            rand::rng().fill_bytes(&mut forged);
                            WsMessage::binary(forged)
                        }
                    };
                    send(&mut ws, frame).await;
                    // The server's server/hello and what follows it may be
                    // in flight, so only the close is judged.
                    expect_silent_close(ctx, &mut ws, true).await
                }
                Err(err) => {
                    ctx.violations.record(
                        ViolationKind::NoiseHandshake,
                        ctx.name(),
                        &label,
                        format!(
                            "a clean Noise handshake, before the {} abuse, failed: {err}",
                            abuse.as_str()
                        ),
                        None,
                    );
                    Outcome::Ended
                }
            }
        }
    };
    match outcome {
        Outcome::Ended => {}
        Outcome::Replied(text) => ctx.violations.record(
            ViolationKind::AbuseAccepted,
            ctx.name(),
            &label,
            format!("the server answered a {} with a message", abuse.as_str()),
            Some(text),
        ),
        Outcome::Open => ctx.violations.record(
            ViolationKind::NotClosed,
            ctx.name(),
            &label,
            format!(
                "the connection stayed open {:?} after a {}",
                ctx.bound,
                abuse.as_str()
            ),
            None,
        ),
    }
    let _ = ws.close(None).await;
    Counters::add(&ctx.counters.closed, 1);
}

/// The server's reaction to the abuse.
enum Outcome {
    /// It closed the connection, as it should.
    Ended,
    /// It sent a message it should not have, shown here.
    Replied(String),
    /// It kept the connection open past the bound.
    Open,
}

async fn send(ws: &mut WebSocketStream<TcpStream>, frame: WsMessage) {
    if let Err(err) = ws.send(frame).await {
        tracing::debug!(cause = %err, "the server closed before the abuse was sent");
    }
}

/// Reads until the connection ends. `server/init` to a bad `client/init`
/// is a violation; `server/error` is the reply the spec gives.
async fn expect_rejected_init(ctx: &Context, ws: &mut WebSocketStream<TcpStream>) -> Outcome {
    let deadline = Instant::now() + ctx.bound;
    loop {
        match next_frame(ws, deadline).await {
            Frame::Ended => return Outcome::Ended,
            Frame::Timeout => return Outcome::Open,
            Frame::Text(text) => {
                let message: Value = serde_json::from_str(&text).unwrap_or_default();
                if message.get("type").and_then(Value::as_str) != Some("server/error") {
                    return Outcome::Replied(text);
                }
            }
            Frame::Binary => return Outcome::Replied("a binary frame".into()),
        }
    }
}

/// Reads `server/init` and Noise message 1, after a valid `client/init`.
async fn read_until_message_1(
    ctx: &Context,
    ws: &mut WebSocketStream<TcpStream>,
) -> Result<(), Outcome> {
    let deadline = Instant::now() + ctx.bound;
    for expected in ["server/init", "noise/handshake"] {
        match next_frame(ws, deadline).await {
            Frame::Text(text) => {
                let message: Value = serde_json::from_str(&text).unwrap_or_default();
                if message.get("type").and_then(Value::as_str) != Some(expected) {
                    ctx.violations.record(
                        ViolationKind::NoiseHandshake,
                        ctx.name(),
                        "server",
                        format!("expected {expected} after a valid client/init"),
                        Some(text),
                    );
                    return Err(Outcome::Ended);
                }
            }
            Frame::Binary => {
                return Err(Outcome::Replied(format!(
                    "a binary frame in place of {expected}"
                )))
            }
            Frame::Ended => {
                ctx.violations.record(
                    ViolationKind::NoiseHandshake,
                    ctx.name(),
                    "server",
                    format!("the server closed before {expected}, after a valid client/init"),
                    None,
                );
                return Err(Outcome::Ended);
            }
            Frame::Timeout => {
                ctx.violations.record(
                    ViolationKind::NoiseHandshake,
                    ctx.name(),
                    "server",
                    format!(
                        "no {expected} within {:?} after a valid client/init",
                        ctx.bound
                    ),
                    None,
                );
                return Err(Outcome::Ended);
            }
        }
    }
    Ok(())
}

/// Reads until the connection ends. Handshake failures are silent, so any
/// text frame is a violation; `allow_binary` lets encrypted messages sent
/// before the abuse arrive.
async fn expect_silent_close(
    ctx: &Context,
    ws: &mut WebSocketStream<TcpStream>,
    allow_binary: bool,
) -> Outcome {
    let deadline = Instant::now() + ctx.bound;
    loop {
        match next_frame(ws, deadline).await {
            Frame::Ended => return Outcome::Ended,
            Frame::Timeout => return Outcome::Open,
            Frame::Text(text) => return Outcome::Replied(text),
            Frame::Binary if allow_binary => {}
            Frame::Binary => return Outcome::Replied("a binary frame".into()),
        }
    }
}

enum Frame {
    Text(String),
    Binary,
    Ended,
    Timeout,
}

async fn next_frame(ws: &mut WebSocketStream<TcpStream>, deadline: Instant) -> Frame {
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Frame::Timeout,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(WsMessage::Close(_)))) => return Frame::Ended,
            Ok(Some(Ok(WsMessage::Text(text)))) => return Frame::Text(text.to_string()),
            Ok(Some(Ok(WsMessage::Binary(_)))) => return Frame::Binary,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Completes one clean handshake and closes it; the server must still
/// serve after the abuse so far.
async fn check_still_serving(ctx: &Context, worker: u64, attempt: u64) {
    let client_id = ctx.client_id("bystander", worker * 1_000_000 + attempt);
    let Some(mut probe) = ctx.open(client_id.clone(), None).await else {
        ctx.violations.record(
            ViolationKind::Unresponsive,
            ctx.name(),
            &client_id,
            "a clean connection failed after the abuse".into(),
            None,
        );
        return;
    };
    match probe
        .handshake(hello(&client_id, Roles::CONTROLLER), ctx.bound)
        .await
    {
        Ok(_) => Counters::add(&ctx.counters.handshakes, 1),
        // The handshake already recorded a hello timeout.
        Err(super::probe::Ending::Timeout) => {}
        Err(ending) => ctx.violations.record(
            ViolationKind::Unresponsive,
            ctx.name(),
            &client_id,
            format!("a clean handshake after the abuse ended with {ending:?}"),
            None,
        ),
    }
    let _ = probe.close(Duration::from_millis(500).min(ctx.bound)).await;
    Counters::add(&ctx.counters.closed, 1);
}
