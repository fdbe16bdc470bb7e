//! Virtual client: one raw WebSocket connection to the target. It checks
//! every frame it receives and can end the connection in every way a real
//! client can, cleanly or not.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use url::Url;

use super::check::{Checker, Finding, Seen, ViolationKind, Violations};
use crate::clock::now_us;
use crate::dialect::{Dialect, Incoming, Outgoing, WireCodec};
use crate::noise::Identity;
use crate::player::encrypted::{open_codec, ClientKeys};
use crate::protocol::{
    BinaryFrame, ClientGoodbye, ClientHello, ClientTime, GoodbyeReason, Message, ServerHello,
};
use crate::session::CloseCause;
use crate::transport::Limits;
use sha2::{Digest, Sha256};

/// Outcome of a connection, as the virtual client saw it end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The peer sent a WebSocket close frame.
    Closed { code: u16 },
    /// The TCP stream ended without a close frame.
    Eof,
    /// The connection failed (reset, refused, protocol error).
    Failed(String),
    /// Nothing arrived in time.
    Timeout,
}

/// Error opening a virtual client's connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("failed to connect to {addr}: {source}")]
    Tcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("WebSocket handshake with {url} failed: {source}")]
    Upgrade {
        url: String,
        source: tokio_tungstenite::tungstenite::Error,
    },
    #[error("connection to {url} timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
}

/// Server under test: address, dialect and limits shared by every virtual
/// client of a run.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: Url,
    pub addr: SocketAddr,
    pub dialect: Dialect,
    pub limits: Limits,
}

impl Target {
    /// Opens a plain TCP connection to the target, with an optional small
    /// receive buffer so a client that stops reading pushes back quickly.
    pub async fn tcp(&self, receive_buffer: Option<u32>) -> Result<TcpStream, ConnectError> {
        let tcp_error = |source| ConnectError::Tcp {
            addr: self.addr,
            source,
        };
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(tcp_error)?;
        if let Some(bytes) = receive_buffer {
            socket.set_recv_buffer_size(bytes).map_err(tcp_error)?;
        }
        let stream = socket.connect(self.addr).await.map_err(tcp_error)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Durations measured while opening a connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenTimes {
    /// TCP connect plus WebSocket upgrade.
    pub connect: Duration,
}

/// One checked connection.
pub struct Probe {
    pub label: String,
    scenario: &'static str,
    ws: WebSocketStream<TcpStream>,
    codec: Box<dyn WireCodec>,
    pub check: Checker,
    violations: Violations,
    findings: Vec<Finding>,
    ended: Option<Ending>,
    /// Whether frames are checked as a server's. A virtual server reads a
    /// player, whose messages have checks of their own.
    peer_is_server: bool,
    /// Sendspin 1.0: the Noise handshake runs when the first
    /// `client/hello` is sent, with an identity derived from its
    /// `client_id`, so sockets that share a `client_id` share a key.
    noise_pending: bool,
    /// Whether the target speaks Sendspin 1.0, whose servers may activate
    /// a connection again.
    encrypted: bool,
    handshake_timeout: Duration,
}

impl Probe {
    /// Connects and upgrades to WebSocket within the handshake timeout.
    pub async fn open(
        target: &Target,
        scenario: &'static str,
        label: String,
        violations: &Violations,
        receive_buffer: Option<u32>,
    ) -> Result<(Probe, OpenTimes), ConnectError> {
        let started = Instant::now();
        let timeout = target.limits.handshake_timeout;
        let connecting = async {
            let tcp = target.tcp(receive_buffer).await?;
            tokio_tungstenite::client_async_with_config(
                target.url.as_str(),
                tcp,
                Some(target.limits.websocket_config()),
            )
            .await
            .map_err(|source| ConnectError::Upgrade {
                url: target.url.to_string(),
                source,
            })
        };
        let (ws, _response) = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| ConnectError::Timeout {
                url: target.url.to_string(),
                timeout,
            })??;
        let probe = Probe {
            label,
            scenario,
            ws,
            // Until the Noise handshake, a 1.0 probe writes cleartext v1
            // frames, which is what abuse before the handshake sends.
            codec: match target.dialect {
                Dialect::Sendspin => Dialect::SendspinV1.codec(),
                other => other.codec(),
            },
            check: Checker::new(Vec::new()),
            violations: violations.clone(),
            findings: Vec::new(),
            ended: None,
            peer_is_server: true,
            noise_pending: target.dialect == Dialect::Sendspin,
            encrypted: target.dialect == Dialect::Sendspin,
            handshake_timeout: timeout,
        };
        Ok((
            probe,
            OpenTimes {
                connect: started.elapsed(),
            },
        ))
    }

    /// Gives up the checks and returns the socket, for scenarios that write
    /// frames no codec would.
    pub fn into_socket(self) -> WebSocketStream<TcpStream> {
        self.ws
    }

    /// Makes this probe a virtual server's connection to a player: frames
    /// read while closing are not judged as a server's messages.
    pub fn act_as_server(&mut self) {
        self.peer_is_server = false;
    }

    /// Records a violation against this connection.
    pub fn violation(&self, kind: ViolationKind, detail: String) {
        self.violations
            .record(kind, self.scenario, &self.label, detail, None);
    }

    pub fn ended(&self) -> Option<&Ending> {
        self.ended.as_ref()
    }

    pub async fn send(&mut self, message: Message) -> Result<(), Ending> {
        self.send_or_queue(message, true).await
    }

    /// Encodes `message` and writes it to the socket when `flush` is set,
    /// or only queues it in the WebSocket's write buffer, so that it goes
    /// out with the next frame that is flushed.
    async fn send_or_queue(&mut self, message: Message, flush: bool) -> Result<(), Ending> {
        if let Message::ClientTime(time) = &message {
            self.check.sent_time(time.client_transmitted);
        }
        if let Message::ClientHello(hello) = &message {
            if self.noise_pending {
                self.noise_pending = false;
                self.noise_handshake(hello).await?;
            }
        }
        match self.codec.encode(&Outgoing::Message(message)) {
            Some(frame) if flush => self.write(frame).await,
            Some(frame) => self.queue(frame).await,
            // The dialect has no form of it, so there is nothing to send.
            None => Ok(()),
        }
    }

    /// Runs the Sendspin 1.0 handshake on the Sentinel PSK, as an unpaired
    /// client, and takes the codec it yields.
    async fn noise_handshake(&mut self, hello: &ClientHello) -> Result<(), Ending> {
        if let Some(ending) = &self.ended {
            return Err(ending.clone());
        }
        let keys = ClientKeys::unpaired(identity_for(&hello.client_id));
        match open_codec(
            &mut self.ws,
            Dialect::Sendspin,
            Some(&keys),
            hello,
            self.handshake_timeout,
        )
        .await
        .map_err(|failure| failure.cause)
        {
            Ok(codec) => {
                self.codec = codec;
                Ok(())
            }
            Err(CloseCause::HandshakeTimeout) => {
                self.violation(
                    ViolationKind::NoiseHandshake,
                    format!(
                        "the Noise handshake did not finish within {:?}",
                        self.handshake_timeout
                    ),
                );
                Err(self.end(Ending::Timeout))
            }
            Err(cause) => {
                let detail = cause.to_string();
                // A server that hangs up is judged by the scenario, as for
                // cleartext clients; anything else is a broken handshake.
                if !detail.contains("closed the connection") && !detail.contains("WebSocket error")
                {
                    self.violation(ViolationKind::NoiseHandshake, detail.clone());
                }
                Err(self.end(Ending::Failed(detail)))
            }
        }
    }

    async fn write(&mut self, frame: WsMessage) -> Result<(), Ending> {
        if let Some(ending) = &self.ended {
            return Err(ending.clone());
        }
        match self.ws.send(frame).await {
            Ok(()) => Ok(()),
            Err(err) => Err(self.end(Ending::Failed(err.to_string()))),
        }
    }

    /// Puts `frame` in the WebSocket's write buffer without flushing it.
    async fn queue(&mut self, frame: WsMessage) -> Result<(), Ending> {
        if let Some(ending) = &self.ended {
            return Err(ending.clone());
        }
        match self.ws.feed(frame).await {
            Ok(()) => Ok(()),
            Err(err) => Err(self.end(Ending::Failed(err.to_string()))),
        }
    }

    /// Sends a `client/time` stamped now.
    pub async fn send_time(&mut self) -> Result<(), Ending> {
        // Two sends within one microsecond share a stamp. The checker counts
        // each stamp, so it expects one reply per send.
        let stamp = now_us();
        self.send(Message::ClientTime(ClientTime {
            client_transmitted: stamp,
        }))
        .await
    }

    /// Sends `hello` and waits for `server/hello`, checking every frame that
    /// arrives first. Records a violation if no reply comes within `bound`.
    pub async fn handshake(
        &mut self,
        hello: ClientHello,
        bound: Duration,
    ) -> Result<ServerHello, Ending> {
        let keep = (
            self.check.check_continuity,
            self.check.check_first_chunk_future,
        );
        self.check = Checker::new(hello.supported_roles.clone());
        (
            self.check.check_continuity,
            self.check.check_first_chunk_future,
        ) = keep;
        self.check.reactivation_allowed = self.encrypted;
        self.check.sent_hello(now_us());
        self.send(Message::ClientHello(hello)).await?;

        let deadline = tokio::time::Instant::now() + bound;
        loop {
            if let Some(hello) = self.check.server_hello() {
                return Ok(hello.clone());
            }
            match self.next_until(deadline).await {
                Ok(_) => {}
                Err(Ending::Timeout) => {
                    self.violation(
                        ViolationKind::HelloTimeout,
                        format!("no server/hello within {bound:?}"),
                    );
                    return Err(Ending::Timeout);
                }
                Err(ending) => return Err(ending),
            }
        }
    }

    /// Receives and checks the next frame, waiting at most `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<Seen, Ending> {
        self.next_until(tokio::time::Instant::now() + wait).await
    }

    /// Receives and checks the next frame, waiting until `deadline`.
    pub async fn next_until(&mut self, deadline: tokio::time::Instant) -> Result<Seen, Ending> {
        let (incoming, text, received_us) = self.next_unchecked(deadline).await?;
        if !self.peer_is_server {
            return Ok(match incoming {
                Incoming::Message(message) => Seen::Message(message),
                Incoming::Binary(_) => Seen::OtherBinary,
                Incoming::Unknown { .. } | Incoming::Consumed | Incoming::Unpaired => Seen::Unknown,
            });
        }
        let seen = self
            .check
            .observe(incoming, received_us, &mut self.findings);
        for (kind, detail) in self.findings.drain(..) {
            self.violations
                .record(kind, self.scenario, &self.label, detail, text.clone());
        }
        Ok(seen)
    }

    /// Receives the next decoded frame without the checks of server
    /// messages, with its text and local arrival time. A virtual server
    /// reads a player with it. Undecodable frames are recorded and skipped.
    pub async fn next_unchecked(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<(Incoming, Option<String>, i64), Ending> {
        loop {
            if let Some(ending) = &self.ended {
                return Err(ending.clone());
            }
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err(Ending::Timeout),
                Ok(None) => return Err(self.end(Ending::Eof)),
                Ok(Some(Err(err))) => return Err(self.end(ending_of(err))),
                Ok(Some(Ok(frame))) => frame,
            };
            let received_us = now_us();
            let text = match &frame {
                WsMessage::Close(close) => {
                    let code = close.as_ref().map_or(1005, |c| u16::from(c.code));
                    return Err(self.end(Ending::Closed { code }));
                }
                WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => continue,
                WsMessage::Text(text) => Some(text.to_string()),
                WsMessage::Binary(_) => None,
            };
            match self.codec.decode(frame) {
                Ok(incoming) => return Ok((incoming, text, received_us)),
                Err(err) => {
                    self.violations.record(
                        ViolationKind::UndecodableFrame,
                        self.scenario,
                        &self.label,
                        err.to_string(),
                        text,
                    );
                }
            }
        }
    }

    /// Sends a binary frame, as a virtual server sends audio.
    pub async fn send_binary(&mut self, frame: BinaryFrame) -> Result<(), Ending> {
        let frame = self
            .codec
            .encode(&Outgoing::Binary(frame))
            .expect("every dialect has binary frames");
        self.write(frame).await
    }

    /// Reads and checks every frame until the connection ends or `wait`
    /// passes, and returns how it ended.
    pub async fn drain(&mut self, wait: Duration) -> Ending {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Err(ending) = self.next_until(deadline).await {
                return ending;
            }
        }
    }

    fn end(&mut self, ending: Ending) -> Ending {
        if self.ended.is_none() {
            self.ended = Some(ending.clone());
        }
        ending
    }

    /// Sends `client/goodbye` with `reason`, after which the server should close.
    pub async fn goodbye(&mut self, reason: GoodbyeReason) -> Result<(), Ending> {
        self.send(Message::ClientGoodbye(ClientGoodbye { reason }))
            .await
    }

    /// Queues `client/goodbye` with `reason` without flushing it, so that it
    /// goes out in one write with the close frame that
    /// [`close`](Self::close) sends next. The server still reads the
    /// goodbye first.
    pub async fn queue_goodbye(&mut self, reason: GoodbyeReason) -> Result<(), Ending> {
        self.send_or_queue(Message::ClientGoodbye(ClientGoodbye { reason }), false)
            .await
    }

    /// Starts the WebSocket close handshake, waits up to `wait` for the
    /// server's close frame and returns how the connection ended.
    pub async fn close(&mut self, wait: Duration) -> Ending {
        if self.ended.is_none() {
            if let Err(err) = self.ws.close(None).await {
                return self.end(ending_of(err));
            }
        }
        self.drain(wait).await
    }

    /// Ends the connection with a TCP reset, without any goodbye or close.
    pub fn reset(self) {
        let _ = self.ws.get_ref().set_zero_linger();
        drop(self);
    }

    /// Writes the start of a binary frame that announces `announced` payload
    /// bytes but carries only a few, then resets the connection.
    pub async fn reset_mid_frame(mut self, announced: u16) {
        // FIN and binary opcode, masked 16-bit length, mask key, 4 payload bytes.
        let mut partial = vec![0x82, 0xFE];
        partial.extend_from_slice(&announced.to_be_bytes());
        partial.extend_from_slice(&[1, 2, 3, 4, 9, 9, 9, 9]);
        let _ = self.ws.get_mut().write_all(&partial).await;
        let _ = self.ws.get_mut().flush().await;
        self.reset();
    }
}

fn ending_of(err: tokio_tungstenite::tungstenite::Error) -> Ending {
    use tokio_tungstenite::tungstenite::Error;
    match err {
        Error::ConnectionClosed | Error::AlreadyClosed => Ending::Eof,
        Error::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => Ending::Eof,
        other => Ending::Failed(other.to_string()),
    }
}

/// Opens a TCP connection, writes part of a WebSocket upgrade request and
/// resets it, like a client that vanishes mid-handshake.
pub async fn reset_mid_upgrade(target: &Target) -> Result<(), ConnectError> {
    let mut tcp = target.tcp(None).await?;
    let partial = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n",
        target.url.path(),
        target.addr
    );
    let _ = tcp.write_all(partial.as_bytes()).await;
    let _ = tcp.set_zero_linger();
    Ok(())
}

/// Returns the Sendspin 1.0 identity of a virtual client: its private key is
/// a hash of its `client_id`, so one `client_id` always gives one key.
pub fn identity_for(client_id: &str) -> Identity {
    let mut hasher = Sha256::new();
    hasher.update(b"resonate-stress-identity-v1");
    hasher.update(client_id.as_bytes());
    Identity::from_private(hasher.finalize().into())
}
