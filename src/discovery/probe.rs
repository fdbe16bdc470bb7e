//! Probing a discovered endpoint: connect, do the handshake from the other
//! side, and measure round trip and clock offset.
//!
//! A server is probed as a client with the `controller@v1` and `metadata@v1`
//! roles, which observe without playing: a few `client/time` exchanges give
//! the round trip and the server's clock offset, then the probe sends
//! `client/goodbye` (`user_request`).
//!
//! A listening client is probed as a server. The client sends `client/hello`
//! first and the probe replies with `server/hello`. Its
//! `connection_reason: discovery` lets a client that plays from another
//! server keep that server. The probe then measures the round trip with
//! WebSocket pings and estimates the client's clock offset from the
//! `client/time` messages the client sends.
//!
//! Legacy Resonate endpoints (`_resonate-server._tcp`, `_resonate._tcp`) are
//! probed the same way in the legacy dialect. It has no goodbye and no
//! `metadata` role without a support object, so a legacy server receives a
//! `controller` hello and a plain close.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::time::{timeout_at, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{Endpoint, EndpointKind, Family};
use crate::clock::now_us;
use crate::dialect::{Dialect, Incoming, Outgoing, WireCodec};
use crate::noise::Identity;
use crate::player::encrypted::{open_codec, ClientKeys};
use crate::protocol::{
    ClientGoodbye, ClientHello, ClientTime, ConnectionReason, DeviceInfo, GoodbyeReason, Message,
    ServerHello, ServerTime, PROTOCOL_VERSION,
};
use crate::transport::{self, Limits, PlainStream};

/// Number of clock exchanges (or pings) that a probe makes.
const SAMPLES: usize = 5;

/// Maximum time a client probe waits for the client's first `client/time`.
const CLIENT_TIME_WAIT: Duration = Duration::from_secs(1);

/// Facts a probe learned about an endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProbeReport {
    /// `server_id` or `client_id` from the peer's hello.
    pub id: String,
    pub name: String,
    pub version: u32,
    /// Roles the client supports, or the roles the server activated.
    pub roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_info: Option<DeviceInfo>,
    /// The connection reason a server sent in `server/hello`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_reason: Option<ConnectionReason>,
    /// Smallest round trip measured, in microseconds.
    pub rtt_us: Option<i64>,
    /// The peer's clock minus this host's clock, in microseconds, from the
    /// sample with the smallest round trip. Each process's clock counts from
    /// its own start, so this compares clocks, not wall times.
    pub offset_us: Option<i64>,
    /// Round-trip samples taken.
    pub samples: usize,
    /// A goodbye the peer sent during the probe, such as `another_server`
    /// from a player that kept its current server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goodbye: Option<GoodbyeReason>,
    /// Whether the server spoke Sendspin 1.0 (encrypted) after it rejected
    /// the cleartext v1 hello.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
}

/// Error of a failed probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("endpoint has no address")]
    NoAddress,
    #[error(transparent)]
    Connect(#[from] transport::TransportError),
    #[error("timed out after {timeout:?} waiting for {expected}")]
    Timeout {
        expected: &'static str,
        timeout: Duration,
    },
    #[error("connection closed before {expected}")]
    Closed { expected: &'static str },
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Probes `endpoint`, allowing `limit` for the whole probe.
pub async fn probe(endpoint: &Endpoint, limit: Duration) -> Result<ProbeReport, ProbeError> {
    let dialect = match endpoint.family {
        Family::Sendspin => Dialect::SendspinV1,
        Family::ResonateLegacy => Dialect::Resonate,
    };
    let url = endpoint.url().ok_or(ProbeError::NoAddress)?;
    let limits = Limits {
        handshake_timeout: limit,
        ..Limits::default()
    };
    let deadline = Instant::now() + limit;
    let ws = transport::dial(&url, &limits).await?;
    let mut peer = Peer {
        ws,
        codec: dialect.codec(),
        deadline,
        limit,
    };
    match endpoint.kind {
        EndpointKind::Server => match peer.probe_server().await {
            // A Sendspin 1.0 server closes a cleartext hello unanswered, so
            // the probe tries again over the encrypted transport.
            Err(ProbeError::Closed {
                expected: "server/hello",
            }) if dialect == Dialect::SendspinV1 => {
                let mut ws = transport::dial(&url, &limits).await?;
                let keys = ClientKeys::unpaired(Identity::generate());
                let left = deadline.saturating_duration_since(Instant::now());
                let codec = open_codec(&mut ws, Dialect::Sendspin, Some(&keys), &probe_hello(), left)
                    .await
                    .map_err(|failure| failure.cause)
                    .map_err(|cause| ProbeError::Protocol(format!("the cleartext hello was closed unanswered, and the Sendspin 1.0 handshake failed: {cause}")))?;
                let mut peer = Peer {
                    ws,
                    codec,
                    deadline,
                    limit,
                };
                let mut report = peer.probe_server().await?;
                report.encrypted = true;
                Ok(report)
            }
            other => other,
        },
        EndpointKind::Client => peer.probe_client().await,
    }
}

/// One probe connection.
struct Peer {
    ws: PlainStream,
    /// Codec of the endpoint's dialect, chosen from its mDNS service type.
    codec: Box<dyn WireCodec>,
    deadline: Instant,
    limit: Duration,
}

impl Peer {
    /// Sends `message`, or nothing when the dialect has no form of it.
    async fn send(&mut self, message: Message) -> Result<(), ProbeError> {
        let Some(frame) = self.codec.encode(&Outgoing::Message(message)) else {
            return Ok(());
        };
        self.ws.send(frame).await.map_err(|_| ProbeError::Closed {
            expected: "the write",
        })
    }

    /// Reads the next frame before the deadline. Returns `None` for a
    /// closed connection.
    async fn next_frame(
        &mut self,
        expected: &'static str,
    ) -> Result<Option<WsMessage>, ProbeError> {
        match timeout_at(self.deadline, self.ws.next()).await {
            Err(_) => Err(ProbeError::Timeout {
                expected,
                timeout: self.limit,
            }),
            Ok(Some(Ok(frame))) => Ok(Some(frame)),
            Ok(_) => Ok(None),
        }
    }

    /// Reads the next protocol message, skipping binary and control frames.
    async fn next_message(
        &mut self,
        expected: &'static str,
    ) -> Result<Option<Message>, ProbeError> {
        loop {
            let Some(frame) = self.next_frame(expected).await? else {
                return Ok(None);
            };
            match frame {
                // Sendspin 1.0 messages travel in binary frames.
                WsMessage::Text(_) | WsMessage::Binary(_) => match self.codec.decode(frame) {
                    Ok(Incoming::Message(message)) => return Ok(Some(message)),
                    Ok(_) => continue,
                    Err(err) => return Err(ProbeError::Protocol(err.to_string())),
                },
                WsMessage::Close(_) => return Ok(None),
                _ => continue,
            }
        }
    }

    async fn probe_server(&mut self) -> Result<ProbeReport, ProbeError> {
        self.send(Message::ClientHello(probe_hello())).await?;
        let hello = loop {
            match self.next_message("server/hello").await? {
                Some(Message::ServerHello(hello)) => break hello,
                Some(_) => continue,
                None => {
                    return Err(ProbeError::Closed {
                        expected: "server/hello",
                    })
                }
            }
        };

        let mut report = ProbeReport {
            id: hello.server_id,
            name: hello.name,
            version: hello.version,
            roles: hello.active_roles,
            connection_reason: Some(hello.connection_reason),
            ..ProbeReport::default()
        };

        let mut best: Option<(i64, i64)> = None;
        for _ in 0..SAMPLES {
            let client_transmitted = now_us();
            self.send(Message::ClientTime(ClientTime { client_transmitted }))
                .await?;
            let reply = loop {
                match self.next_message("server/time").await? {
                    Some(Message::ServerTime(time))
                        if time.client_transmitted == client_transmitted =>
                    {
                        break time
                    }
                    Some(_) => continue,
                    None => {
                        return Err(ProbeError::Closed {
                            expected: "server/time",
                        })
                    }
                }
            };
            let sample = clock_sample(&reply, now_us());
            report.samples += 1;
            if best.is_none_or(|(rtt, _)| sample.0 < rtt) {
                best = Some(sample);
            }
        }
        report.rtt_us = best.map(|(rtt, _)| rtt);
        report.offset_us = best.map(|(_, offset)| offset);

        let goodbye = ClientGoodbye {
            reason: GoodbyeReason::UserRequest,
        };
        let _ = self.send(Message::ClientGoodbye(goodbye)).await;
        let _ = self.ws.close(None).await;
        Ok(report)
    }

    async fn probe_client(&mut self) -> Result<ProbeReport, ProbeError> {
        let hello = match self.next_message("client/hello").await? {
            Some(Message::ClientHello(hello)) => hello,
            Some(other) => {
                return Err(ProbeError::Protocol(format!(
                    "expected client/hello first, got {}",
                    other.type_name()
                )))
            }
            None => {
                return Err(ProbeError::Closed {
                    expected: "client/hello",
                })
            }
        };
        let mut report = ProbeReport {
            id: hello.client_id,
            name: hello.name,
            version: hello.version,
            roles: hello.supported_roles,
            device_info: hello.device_info,
            ..ProbeReport::default()
        };
        let server_hello = ServerHello {
            server_id: format!("resonate-discover-{}", std::process::id()),
            name: "resonate discover".into(),
            version: PROTOCOL_VERSION,
            active_roles: Vec::new(),
            connection_reason: ConnectionReason::Discovery,
        };
        self.send(Message::ServerHello(server_hello)).await?;
        self.measure_client(&mut report).await?;
        let _ = self.ws.close(None).await;
        Ok(report)
    }

    /// Pings the client [`SAMPLES`] times, replies to its `client/time`
    /// messages meanwhile, and fills in round trip and offset.
    async fn measure_client(&mut self, report: &mut ProbeReport) -> Result<(), ProbeError> {
        // Each client stamp (NTP's T1) paired with this host's receive time.
        let mut client_times: Vec<(i64, i64)> = Vec::new();
        let mut best_rtt: Option<i64> = None;
        // Pings first, then up to CLIENT_TIME_WAIT for a client/time when
        // none has arrived yet.
        let mut pings_left = SAMPLES;
        let mut outstanding: Option<(i64, Vec<u8>)> = None;
        let wait_end = Instant::now() + CLIENT_TIME_WAIT;
        loop {
            if outstanding.is_none() && pings_left > 0 {
                let sent = now_us();
                let payload = sent.to_be_bytes().to_vec();
                if self
                    .ws
                    .send(WsMessage::Ping(payload.clone().into()))
                    .await
                    .is_err()
                {
                    break;
                }
                pings_left -= 1;
                outstanding = Some((sent, payload));
            }
            let done_pinging = outstanding.is_none() && pings_left == 0;
            if done_pinging && (!client_times.is_empty() || Instant::now() >= wait_end) {
                break;
            }
            let frame = if done_pinging {
                match timeout_at(wait_end.min(self.deadline), self.ws.next()).await {
                    Ok(Some(Ok(frame))) => frame,
                    _ => break,
                }
            } else {
                match self.next_frame("a pong").await? {
                    Some(frame) => frame,
                    None => break,
                }
            };
            let received = now_us();
            match frame {
                WsMessage::Pong(data)
                    if outstanding
                        .as_ref()
                        .is_some_and(|(_, payload)| data.as_ref() == payload.as_slice()) =>
                {
                    let (sent, _) = outstanding.take().expect("checked above");
                    report.samples += 1;
                    let rtt = received - sent;
                    best_rtt = Some(best_rtt.map_or(rtt, |best| best.min(rtt)));
                }
                WsMessage::Text(_) => match self.codec.decode(frame) {
                    Ok(Incoming::Message(Message::ClientTime(time))) => {
                        client_times.push((time.client_transmitted, received));
                        let reply = ServerTime {
                            client_transmitted: time.client_transmitted,
                            server_received: received,
                            server_transmitted: now_us(),
                        };
                        let _ = self.send(Message::ServerTime(reply)).await;
                    }
                    Ok(Incoming::Message(Message::ClientGoodbye(goodbye))) => {
                        report.goodbye = Some(goodbye.reason);
                        break;
                    }
                    _ => {}
                },
                WsMessage::Close(_) => break,
                _ => {}
            }
        }
        report.rtt_us = best_rtt;
        report.offset_us = best_rtt.and_then(|rtt| client_offset(&client_times, rtt));
        Ok(())
    }
}

/// Estimates the client's clock minus this host's clock, in microseconds,
/// from `(client_transmitted, received)` pairs and the smallest round trip.
///
/// The one-way delay is taken as half the round trip. Any extra delay only
/// makes `received` later, so the largest offset comes from the least
/// delayed message.
fn client_offset(client_times: &[(i64, i64)], rtt: i64) -> Option<i64> {
    client_times
        .iter()
        .map(|(client, received)| client - (received - rtt / 2))
        .max()
}

/// Returns (round trip, server offset) of one exchange, in microseconds,
/// given T4 `client_received`.
fn clock_sample(reply: &ServerTime, client_received: i64) -> (i64, i64) {
    let t1 = reply.client_transmitted;
    let t2 = reply.server_received;
    let t3 = reply.server_transmitted;
    let rtt = (client_received - t1) - (t3 - t2);
    let offset = ((t2 - t1) + (t3 - client_received)) / 2;
    (rtt, offset)
}

/// Returns a `client_id` unique to one probe of this process.
///
/// A server replaces a session when another one sends `client/hello` with
/// the same `client_id`, so concurrent probes of one server's endpoints, such as its
/// Sendspin and legacy paths, need different ids.
fn probe_client_id() -> String {
    static PROBES: AtomicU32 = AtomicU32::new(0);
    let probe = PROBES.fetch_add(1, Ordering::Relaxed);
    format!("resonate-discover-{}-{probe}", std::process::id())
}

fn probe_hello() -> ClientHello {
    ClientHello {
        client_id: probe_client_id(),
        name: "resonate discover".into(),
        device_info: Some(DeviceInfo {
            product_name: Some("resonate discover".into()),
            manufacturer: None,
            software_version: Some(env!("CARGO_PKG_VERSION").into()),
        }),
        version: PROTOCOL_VERSION,
        supported_roles: vec!["controller@v1".into(), "metadata@v1".into()],
        player_support: None,
        artwork_support: None,
        visualizer_support: None,
        extra: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_client_ids_differ() {
        assert_ne!(probe_client_id(), probe_client_id());
    }

    #[test]
    fn clock_sample_follows_ntp() {
        // The server clock is 1000 us ahead. Each way takes 50 us and the
        // server spends 10 us on the request.
        let reply = ServerTime {
            client_transmitted: 0,
            server_received: 1050,
            server_transmitted: 1060,
        };
        assert_eq!(clock_sample(&reply, 110), (100, 1000));
    }

    #[test]
    fn client_offset_uses_least_delayed_message() {
        // The client clock is 1000 us ahead and each way takes 50 us, but
        // the second message waited 400 us more before it arrived.
        let times = [(10_000, 9_050), (20_000, 19_450)];
        assert_eq!(client_offset(&times, 100), Some(1_000));

        // The same holds when the client clock is behind.
        let times = [(10_000, 11_050), (20_000, 21_450)];
        assert_eq!(client_offset(&times, 100), Some(-1_000));
    }
}
