//! The session task: the only code that touches a session's socket.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;

use super::throttle::{RejectLog, TokenBucket};
use super::{
    queued_cost, CloseCause, Command, EventKind, SessionEvent, SessionHandle, SessionId,
    SessionState, Side,
};
use crate::clock::now_us;
use crate::dialect::{Incoming, Outgoing, WireCodec};
use crate::protocol::{BinaryKind, ClientGoodbye, ClientTime, Message, ServerTime};
use crate::transport::Limits;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Time allowed for the close frame (and a goodbye before it) to go out.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Most queued messages written with one flush.
const WRITE_BATCH: usize = 32;

/// Starts the task that owns `ws` and returns the handle to reach it.
///
/// The task is tracked by `tracker`, so its owner can wait for it. Events,
/// ending with exactly one `Closed`, go to `events`.
pub fn spawn<S>(
    ws: WebSocketStream<S>,
    peer: SocketAddr,
    side: Side,
    codec: Box<dyn WireCodec>,
    limits: Limits,
    events: mpsc::Sender<SessionEvent>,
    tracker: &TaskTracker,
) -> SessionHandle
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    spawn_with_first_frame(ws, None, peer, side, codec, limits, events, tracker)
}

/// Like [`spawn`], for a connection whose first frame was already read (to
/// tell dialects apart): the session handles `first_frame` before reading
/// the socket.
#[allow(clippy::too_many_arguments)]
pub fn spawn_with_first_frame<S>(
    ws: WebSocketStream<S>,
    first_frame: Option<WsMessage>,
    peer: SocketAddr,
    side: Side,
    codec: Box<dyn WireCodec>,
    limits: Limits,
    events: mpsc::Sender<SessionEvent>,
    tracker: &TaskTracker,
) -> SessionHandle
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (handle, run) = create(ws, first_frame, peer, side, codec, limits, events);
    tracker.spawn(run);
    handle
}

/// Creates a session like [`spawn_with_first_frame`] but spawns nothing:
/// returns the handle and the future that runs the session to its end,
/// for a caller that runs it in a task it already owns. Events go to
/// `events` only once the future is polled.
pub fn create<S>(
    ws: WebSocketStream<S>,
    first_frame: Option<WsMessage>,
    peer: SocketAddr,
    side: Side,
    codec: Box<dyn WireCodec>,
    limits: Limits,
    events: mpsc::Sender<SessionEvent>,
) -> (SessionHandle, impl Future<Output = ()> + Send + 'static)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = SessionId::next();
    let limits_rate = limits.max_messages_per_second;
    let (command_tx, command_rx) = mpsc::channel(limits.outbound_queue.max(1));
    let (close_tx, close_rx) = watch::channel(None);
    let (state_tx, state_rx) = watch::channel(SessionState::Handshaking);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let handle = SessionHandle {
        id,
        peer,
        commands: command_tx,
        close: Arc::new(close_tx),
        state: state_rx,
        queued_bytes: queued_bytes.clone(),
    };
    let task = SessionTask {
        id,
        peer,
        side,
        ws,
        codec,
        limits,
        events,
        commands: command_rx,
        close_requests: close_rx,
        state: state_tx,
        last_heard: Instant::now(),
        hello_received: false,
        queued_bytes,
        first_frame,
        inbound: (side == Side::Server).then(|| TokenBucket::new(limits_rate, limits_rate)),
    };
    (handle, task.run())
}

/// The cause of one wakeup of the session loop. It lives for one loop turn, so the size of
/// its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Wakeup {
    CloseRequested(CloseCause),
    Command(Option<Command>),
    Frame(Option<Result<WsMessage, WsError>>),
    HandshakeDeadline,
    PingTick,
}

struct SessionTask<S> {
    id: SessionId,
    peer: SocketAddr,
    side: Side,
    ws: WebSocketStream<S>,
    codec: Box<dyn WireCodec>,
    limits: Limits,
    events: mpsc::Sender<SessionEvent>,
    commands: mpsc::Receiver<Command>,
    close_requests: watch::Receiver<Option<CloseCause>>,
    state: watch::Sender<SessionState>,
    last_heard: Instant,
    /// Whether the peer's hello arrived. Messages a client sends after its
    /// hello but before `server/hello` reaches it are kept in order, not
    /// rejected, since their arrival before the reply depends on timing.
    hello_received: bool,
    queued_bytes: Arc<AtomicUsize>,
    /// A frame read before the session started, handled first.
    first_frame: Option<WsMessage>,
    /// Frames the peer may still send now, refilled at
    /// `max_messages_per_second`. Only servers limit the rate: a server
    /// sends seconds of audio ahead in one burst.
    inbound: Option<TokenBucket>,
}

impl<S> SessionTask<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn run(mut self) {
        tracing::debug!(session = %self.id, peer = %self.peer, side = ?self.side, "session started");
        let cause = self.serve().await;
        // Boxed, like the steps of `serve`, so the future every session
        // keeps for its whole life is not sized for the close path.
        Box::pin(self.finish(cause)).await;
    }

    /// Runs until something closes the session and returns the cause.
    async fn serve(&mut self) -> CloseCause {
        let handshake_deadline = Instant::now() + self.limits.handshake_timeout;
        let first_ping = Instant::now() + self.limits.ping_interval;
        let mut ping = interval_at(first_ping, self.limits.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        if let Some(frame) = self.first_frame.take() {
            if let Err(cause) = Box::pin(self.on_frame(Some(Ok(frame)))).await {
                return cause;
            }
        }

        loop {
            let handshaking = *self.state.borrow() == SessionState::Handshaking;
            let wakeup = tokio::select! {
                biased;
                requested = self.close_requests.wait_for(Option::is_some) => {
                    let cause = requested.ok().and_then(|c| c.clone());
                    Wakeup::CloseRequested(cause.unwrap_or(CloseCause::Shutdown))
                }
                // Frames come before queued writes, so a goodbye that has
                // arrived is read before a write can fail on a closed socket.
                frame = self.ws.next() => Wakeup::Frame(frame),
                command = self.commands.recv() => Wakeup::Command(command),
                _ = sleep_until(handshake_deadline), if handshaking => Wakeup::HandshakeDeadline,
                _ = ping.tick() => Wakeup::PingTick,
            };
            // A write batch or a frame needs a few KiB of future state for
            // one wakeup. Boxed, it is allocated only while it runs, instead
            // of in every session's task future for the session's life.
            let step = match wakeup {
                Wakeup::CloseRequested(cause) => Err(cause),
                Wakeup::Command(Some(command)) => {
                    Box::pin(self.write_batch(command.into_outgoing())).await
                }
                Wakeup::Command(None) => Err(CloseCause::Shutdown),
                Wakeup::Frame(frame) => Box::pin(self.on_frame(frame)).await,
                Wakeup::HandshakeDeadline => Err(CloseCause::HandshakeTimeout),
                Wakeup::PingTick => self.on_ping_tick().await,
            };
            if let Err(cause) = step {
                return cause;
            }
        }
    }

    /// Closes the session along its one close path: sends `client/goodbye`
    /// when this side owes one, sends a close frame, and reports `Closed`
    /// once.
    async fn finish(mut self, cause: CloseCause) {
        let was_active = *self.state.borrow() == SessionState::Active;
        self.state.send_replace(SessionState::Closing);
        let mut peer_gone = matches!(
            cause,
            CloseCause::PeerReset(_) | CloseCause::PeerClosed { .. }
        );
        if let CloseCause::LocalGoodbye(reason) = &cause {
            if self.side == Side::Client && was_active {
                let goodbye =
                    Outgoing::Message(Message::ClientGoodbye(ClientGoodbye { reason: *reason }));
                // A dialect without a goodbye goes straight to the close frame.
                let sent = match self.codec.encode(&goodbye) {
                    Some(frame) => {
                        tokio::time::timeout(CLOSE_WRITE_TIMEOUT, self.ws.send(frame)).await
                    }
                    None => Ok(Err(WsError::ConnectionClosed)),
                };
                // The server closes the connection after a goodbye. Waiting
                // for that lets it read the goodbye before the socket goes
                // away, instead of failing a write on a closed socket first.
                if matches!(sent, Ok(Ok(()))) {
                    peer_gone = self.await_peer_close().await;
                }
            }
        }
        if !peer_gone {
            let frame = close_frame(&cause);
            let sent = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, self.ws.close(Some(frame))).await;
            // Unread data in a dropped socket makes the kernel reset the
            // connection, so wait for the peer's close frame first.
            if matches!(sent, Ok(Ok(()))) && !matches!(cause, CloseCause::SlowConsumer(_)) {
                self.await_peer_close().await;
            }
        } else if !matches!(cause, CloseCause::PeerReset(_)) {
            // The reply to the peer's close frame (received as the cause, or
            // while waiting after a goodbye) is queued inside the WebSocket.
            // Flushing sends it, which completes the closing handshake the
            // peer waits for.
            let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, self.ws.flush()).await;
        }
        log_close(self.id, self.peer, &cause);
        self.state.send_replace(SessionState::Closed);
        let event = SessionEvent {
            session: self.id,
            kind: EventKind::Closed(cause),
        };
        // An owner that is gone no longer needs the event.
        let _ = self.events.send(event).await;
    }

    /// Reads and discards frames until the peer closes the connection, for
    /// at most [`CLOSE_WRITE_TIMEOUT`]. Returns whether it closed.
    async fn await_peer_close(&mut self) -> bool {
        let drain = async {
            while let Some(frame) = self.ws.next().await {
                if matches!(frame, Ok(WsMessage::Close(_)) | Err(_)) {
                    break;
                }
            }
        };
        tokio::time::timeout(CLOSE_WRITE_TIMEOUT, drain)
            .await
            .is_ok()
    }

    async fn emit(&mut self, kind: EventKind) -> Result<(), CloseCause> {
        let event = SessionEvent {
            session: self.id,
            kind,
        };
        self.events
            .send(event)
            .await
            .map_err(|_| CloseCause::Shutdown)
    }

    fn activate(&mut self) -> bool {
        self.state.send_if_modified(|state| {
            if *state != SessionState::Handshaking {
                return false;
            }
            *state = SessionState::Active;
            true
        })
    }

    /// Writes `first` and the messages already queued behind it, up to
    /// [`WRITE_BATCH`], and flushes them to the socket in one write. Each
    /// message must be out before its own deadline (see
    /// [`write_timeout_of`](Self::write_timeout_of)).
    async fn write_batch(&mut self, first: Outgoing) -> Result<(), CloseCause> {
        let mut deadline = WriteDeadline {
            at: Instant::now() + self.limits.write_timeout,
            late_audio: false,
        };
        let mut next = Some(first);
        let mut fed = 0;
        while let Some(outgoing) = next.take() {
            let cost = queued_cost(&outgoing);
            let result = self.feed(outgoing, &mut deadline).await;
            self.queued_bytes.fetch_sub(cost, Ordering::Relaxed);
            result?;
            fed += 1;
            if fed < WRITE_BATCH {
                if let Ok(more) = self.commands.try_recv() {
                    next = Some(more.into_outgoing());
                }
            }
        }
        match tokio::time::timeout_at(deadline.at, self.ws.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(error_cause(err)),
            Err(_) => Err(self.deadline_missed(&deadline)),
        }
    }

    /// Returns the close cause for a write that missed `deadline`: the
    /// late-audio limit when an audio frame set it, else the write timeout.
    fn deadline_missed(&self, deadline: &WriteDeadline) -> CloseCause {
        if deadline.late_audio {
            CloseCause::SlowConsumer(format!(
                "audio was not written within {} ms after its play time",
                self.limits.audio_late_limit.as_millis()
            ))
        } else {
            write_timed_out(self.limits.write_timeout)
        }
    }

    /// Encodes one outgoing message into the WebSocket's write buffer and
    /// moves `deadline` earlier when this message needs it out sooner.
    /// Clock stamps (`client_transmitted` on the client, `server_transmitted`
    /// on the server) are taken here, right before the batch is flushed, not
    /// when the message was queued.
    async fn feed(
        &mut self,
        mut outgoing: Outgoing,
        deadline: &mut WriteDeadline,
    ) -> Result<(), CloseCause> {
        match &mut outgoing {
            Outgoing::Message(Message::ClientTime(time)) => time.client_transmitted = now_us(),
            Outgoing::Message(Message::ServerTime(time)) => time.server_transmitted = now_us(),
            _ => {}
        }
        let is_server_hello = matches!(outgoing, Outgoing::Message(Message::ServerHello(_)));
        let time_sent = match &outgoing {
            Outgoing::Message(Message::ClientTime(time)) => Some(time.client_transmitted),
            _ => None,
        };
        let (allowed, late_audio) = self.write_timeout_of(&outgoing)?;
        let own = Instant::now() + allowed;
        if own < deadline.at {
            *deadline = WriteDeadline {
                at: own,
                late_audio,
            };
        }
        let frames = self.codec.encode_frames(&outgoing);
        if frames.is_empty() {
            tracing::trace!(session = %self.id, dialect = %self.codec.dialect(), "leaving out a message the dialect cannot express");
            return Ok(());
        }
        for frame in frames {
            match tokio::time::timeout_at(deadline.at, self.ws.feed(frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(error_cause(err)),
                Err(_) => return Err(self.deadline_missed(deadline)),
            }
        }
        if let Some(client_transmitted) = time_sent {
            self.emit(EventKind::TimeSent { client_transmitted })
                .await?;
        }
        if is_server_hello && self.side == Side::Server && self.activate() {
            self.emit(EventKind::Activated).await?;
        }
        Ok(())
    }

    /// Returns the time allowed for writing `outgoing`, and whether the
    /// late-audio limit set it. Audio a server sends must reach the socket
    /// before its play time is `audio_late_limit` past: a peer that delays
    /// it longer cannot keep up, and later audio would only pile up behind
    /// it.
    fn write_timeout_of(&self, outgoing: &Outgoing) -> Result<(Duration, bool), CloseCause> {
        let Outgoing::Binary(frame) = outgoing else {
            return Ok((self.limits.write_timeout, false));
        };
        if self.side != Side::Server || frame.kind != BinaryKind::Audio {
            return Ok((self.limits.write_timeout, false));
        }
        let limit_us = self.limits.audio_late_limit.as_micros() as i64;
        let left_us = frame.timestamp_us + limit_us - now_us();
        if left_us <= 0 {
            return Err(CloseCause::SlowConsumer(format!(
                "audio reached the socket {} ms after its play time",
                (limit_us - left_us) / 1000
            )));
        }
        let left = Duration::from_micros(left_us as u64);
        Ok((
            self.limits.write_timeout.min(left),
            left < self.limits.write_timeout,
        ))
    }

    async fn send_frame(&mut self, frame: WsMessage) -> Result<(), CloseCause> {
        self.send_frame_within(frame, self.limits.write_timeout)
            .await
    }

    async fn send_frame_within(
        &mut self,
        frame: WsMessage,
        timeout: Duration,
    ) -> Result<(), CloseCause> {
        match tokio::time::timeout(timeout, self.ws.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(error_cause(err)),
            Err(_) => Err(write_timed_out(timeout)),
        }
    }

    async fn on_ping_tick(&mut self) -> Result<(), CloseCause> {
        if self.last_heard.elapsed() > self.limits.idle_timeout {
            return Err(CloseCause::IdleTimeout);
        }
        self.codec
            .check_timers()
            .map_err(|err| CloseCause::ProtocolError(err.to_string()))?;
        // The payload is the local send time, so the pong gives the round
        // trip without keeping state.
        let sent_us = now_us().to_be_bytes().to_vec();
        self.send_frame(WsMessage::Ping(sent_us.into())).await
    }

    async fn on_frame(
        &mut self,
        frame: Option<Result<WsMessage, WsError>>,
    ) -> Result<(), CloseCause> {
        let received_us = now_us();
        let frame = match frame {
            None => {
                return Err(CloseCause::PeerReset(
                    "connection ended without a close frame".into(),
                ))
            }
            Some(Err(err)) => return Err(self.read_error_cause(err)),
            Some(Ok(frame)) => frame,
        };
        self.last_heard = Instant::now();
        let is_close = matches!(frame, WsMessage::Close(_));
        if !is_close && self.inbound.as_mut().is_some_and(|bucket| !bucket.take()) {
            let rate = self.limits.max_messages_per_second;
            return Err(CloseCause::LimitExceeded {
                limit: "max_messages_per_second",
                detail: format!("more than {rate} frames a second"),
            });
        }
        match frame {
            WsMessage::Close(close) => {
                let (code, reason) = close
                    .map(|c| (u16::from(c.code), c.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                Err(CloseCause::PeerClosed { code, reason })
            }
            WsMessage::Pong(payload) => match <[u8; 8]>::try_from(payload.as_ref()) {
                Ok(sent) => {
                    let rtt_us = received_us - i64::from_be_bytes(sent);
                    self.emit(EventKind::RoundTrip { rtt_us }).await
                }
                // A pong to a ping this side did not send, or unsolicited.
                Err(_) => Ok(()),
            },
            WsMessage::Ping(_) | WsMessage::Frame(_) => Ok(()),
            WsMessage::Text(_) | WsMessage::Binary(_) => {
                let incoming = self
                    .codec
                    .decode(frame)
                    .map_err(|err| CloseCause::ProtocolError(err.to_string()))?;
                for reply in self.codec.take_replies() {
                    self.send_frame(reply).await?;
                }
                if incoming == Incoming::Consumed {
                    return Ok(());
                }
                self.on_incoming(incoming, received_us).await
            }
        }
    }

    async fn on_incoming(
        &mut self,
        incoming: Incoming,
        received_us: i64,
    ) -> Result<(), CloseCause> {
        let handshaking = *self.state.borrow() == SessionState::Handshaking;
        if handshaking && !self.hello_received {
            self.check_handshake_order(&incoming)?;
            self.hello_received = true;
        } else if handshaking
            && self.side == Side::Server
            && matches!(incoming, Incoming::Binary(_))
        {
            return Err(CloseCause::ProtocolError(
                "binary frame before server/hello was sent".into(),
            ));
        }
        match (&incoming, self.side) {
            (Incoming::Message(Message::ClientGoodbye(goodbye)), Side::Server) => {
                return Err(CloseCause::Goodbye(goodbye.reason));
            }
            (Incoming::Message(Message::ClientTime(time)), Side::Server) => {
                self.answer_time(time, received_us).await?;
            }
            (Incoming::Message(Message::ServerHello(_)), Side::Client) if self.activate() => {
                self.emit(EventKind::Activated).await?;
            }
            (Incoming::Unknown { type_name }, _) => {
                tracing::debug!(session = %self.id, peer = %self.peer, type_name, "ignoring unknown message type");
                return Ok(());
            }
            _ => {}
        }
        self.emit(EventKind::Received {
            incoming,
            received_us,
        })
        .await
    }

    /// Returns the close cause of a failed read, naming the size limit a
    /// frame or message went past.
    fn read_error_cause(&self, err: WsError) -> CloseCause {
        use tokio_tungstenite::tungstenite::error::CapacityError;
        let WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) = err else {
            return error_cause(err);
        };
        let limit = if max_size == self.limits.max_frame_bytes
            && max_size != self.limits.max_message_bytes
        {
            "max_frame_bytes"
        } else {
            "max_message_bytes"
        };
        CloseCause::LimitExceeded {
            limit,
            detail: format!("{size} bytes is over the size limit of {max_size} bytes"),
        }
    }

    /// Rejects anything but the expected hello before the handshake is done.
    fn check_handshake_order(&self, incoming: &Incoming) -> Result<(), CloseCause> {
        let expected = match self.side {
            Side::Server => "client/hello",
            Side::Client => "server/hello",
        };
        let got = match incoming {
            Incoming::Message(Message::ClientHello(_)) if self.side == Side::Server => {
                return Ok(())
            }
            Incoming::Message(Message::ServerHello(_)) if self.side == Side::Client => {
                return Ok(())
            }
            // Any other message before the hello is an error.
            Incoming::Message(message) => message.type_name().to_string(),
            Incoming::Binary(_) => "a binary frame".to_string(),
            Incoming::Unknown { type_name } => type_name.clone(),
            Incoming::Consumed => return Ok(()),
            Incoming::Unpaired => "server/unpair".to_string(),
        };
        // A Sendspin 1.0 client opens with client/init, which a cleartext
        // server cannot process.
        let hint = if got == "client/init" {
            " (a Sendspin 1.0 client; serve --dialect sendspin takes it)"
        } else {
            ""
        };
        Err(CloseCause::ProtocolError(format!(
            "expected {expected} first, got {got}{hint}"
        )))
    }

    async fn answer_time(&mut self, time: &ClientTime, received_us: i64) -> Result<(), CloseCause> {
        let mut reply = ServerTime {
            client_transmitted: time.client_transmitted,
            server_received: received_us,
            server_transmitted: 0,
        };
        // Stamped as late as possible, right before encoding and writing.
        reply.server_transmitted = now_us();
        let frame = self
            .codec
            .encode(&Outgoing::Message(Message::ServerTime(reply)))
            .expect("every dialect has server/time");
        self.send_frame(frame).await?;
        self.emit(EventKind::TimeAnswered {
            client_transmitted: reply.client_transmitted,
            server_received: reply.server_received,
            server_transmitted: reply.server_transmitted,
        })
        .await
    }
}

/// Returns the close cause of a write that did not finish within `timeout`.
/// The time by which a batch of writes must be out.
struct WriteDeadline {
    at: Instant,
    /// Whether an audio frame's late-audio limit set `at`, rather than the
    /// write timeout.
    late_audio: bool,
}

fn write_timed_out(timeout: Duration) -> CloseCause {
    CloseCause::SlowConsumer(format!("a write timed out after {timeout:?}"))
}

fn error_cause(err: WsError) -> CloseCause {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match err {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            CloseCause::PeerReset("connection reset without a close frame".into())
        }
        WsError::Capacity(err) => {
            CloseCause::ProtocolError(format!("frame exceeds the size limit: {err}"))
        }
        WsError::Protocol(err) => {
            CloseCause::ProtocolError(format!("WebSocket protocol violation: {err}"))
        }
        WsError::Utf8(err) => {
            CloseCause::ProtocolError(format!("text frame is not valid UTF-8: {err}"))
        }
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            CloseCause::PeerReset("connection closed".into())
        }
        other => CloseCause::PeerReset(other.to_string()),
    }
}

fn close_frame(cause: &CloseCause) -> CloseFrame {
    let code = match cause {
        CloseCause::ProtocolError(detail) if detail.contains("size limit") => CloseCode::Size,
        CloseCause::ProtocolError(_) => CloseCode::Policy,
        CloseCause::LimitExceeded { limit, .. } if limit.ends_with("_bytes") => CloseCode::Size,
        CloseCause::LimitExceeded { .. } => CloseCode::Policy,
        CloseCause::HandshakeTimeout | CloseCause::IdleTimeout | CloseCause::SlowConsumer(_) => {
            CloseCode::Policy
        }
        CloseCause::Shutdown => CloseCode::Away,
        _ => CloseCode::Normal,
    };
    // The reason is read by the peer, so it avoids words that only make
    // sense from this side.
    let mut reason = match cause {
        CloseCause::Shutdown => "going away".to_string(),
        other => other.to_string(),
    };
    // A close frame's reason must fit in 123 bytes.
    while reason.len() > 123 {
        reason.pop();
    }
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// Logs the one close of a session. Rejections (closes that are the
/// peer's fault) are warnings within the process-wide budget of
/// [`RejectLog`], and debug lines past it.
fn log_close(id: SessionId, peer: SocketAddr, cause: &CloseCause) {
    let Some(rejection) = cause.rejection() else {
        tracing::info!(session = %id, %peer, cause = %cause, "session closed");
        return;
    };
    match RejectLog::permit() {
        Some(0) => {
            tracing::warn!(session = %id, %peer, rejection, cause = %cause, "session rejected")
        }
        Some(suppressed) => {
            tracing::warn!(session = %id, %peer, rejection, cause = %cause, suppressed, "session rejected; suppressed log lines of earlier rejections")
        }
        None => {
            tracing::debug!(session = %id, %peer, rejection, cause = %cause, "session rejected")
        }
    }
}
