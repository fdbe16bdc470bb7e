//! Sessions: one task owns one connection and its state.
//!
//! Everything else talks to a session through its [`SessionHandle`] and
//! hears from it through [`SessionEvent`]s. A session closes along exactly
//! one path, whatever starts the close (a goodbye, the peer, an error, a
//! timeout, a replacement or a local request), and that path reports exactly
//! one [`EventKind::Closed`] with the first cause that was raised.

mod task;
mod throttle;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::dialect::{Incoming, Outgoing};
use crate::protocol::{GoodbyeReason, Message};
pub use task::{create, spawn, spawn_with_first_frame};

pub use throttle::{RejectLog, TokenBucket};

/// Process-unique session number, assigned in creation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl SessionId {
    pub fn next() -> SessionId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SessionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// The end of the protocol a session speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Receives `client/hello` and replies to `client/time` itself.
    Server,
    /// Receives `server/hello`.
    Client,
}

/// Lifecycle of a session. Connecting happens before a session exists: it
/// starts once the WebSocket is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// The hello messages are not yet both exchanged.
    Handshaking,
    Active,
    Closing,
    Closed,
}

/// The reason a session closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseCause {
    /// The peer sent `client/goodbye` with this reason.
    Goodbye(GoodbyeReason),
    /// This side (a client) sent `client/goodbye` with this reason.
    LocalGoodbye(GoodbyeReason),
    /// The peer sent a WebSocket close frame.
    PeerClosed {
        code: u16,
        reason: String,
    },
    /// The connection ended without a close frame (reset or EOF).
    PeerReset(String),
    /// The peer broke the protocol, as the text describes.
    ProtocolError(String),
    HandshakeTimeout,
    /// No frame and no pong from the peer within the idle timeout.
    IdleTimeout,
    /// A newer session with the same `client_id` took this one's place.
    Replaced,
    /// The peer did not keep up with what was sent to it.
    SlowConsumer(String),
    /// The owner of the session closed it (shutdown or a dropped handle).
    Shutdown,
    /// The server's operator approved this client, revoked its approval or
    /// requested its unpairing. The client connects again under the new terms.
    AccessChanged,
    /// The peer went past a configured limit: `limit` is the field of
    /// [`Limits`](crate::transport::Limits), such as `max_message_bytes`.
    LimitExceeded {
        limit: &'static str,
        detail: String,
    },
}

impl CloseCause {
    /// Returns a short stable label for logs and counters.
    pub fn label(&self) -> &'static str {
        match self {
            CloseCause::Goodbye(_) => "goodbye",
            CloseCause::LocalGoodbye(_) => "local_goodbye",
            CloseCause::PeerClosed { .. } => "peer_closed",
            CloseCause::PeerReset(_) => "peer_reset",
            CloseCause::ProtocolError(_) => "protocol_error",
            CloseCause::HandshakeTimeout => "handshake_timeout",
            CloseCause::IdleTimeout => "idle_timeout",
            CloseCause::Replaced => "replaced",
            CloseCause::SlowConsumer(_) => "slow_consumer",
            CloseCause::Shutdown => "shutdown",
            CloseCause::AccessChanged => "access_changed",
            CloseCause::LimitExceeded { .. } => "limit_exceeded",
        }
    }

    /// Returns the rejection this close counts as, for the server's
    /// `rejected.*` counters: the limit a peer went past, or the kind of
    /// misbehaviour. Closes that are no fault of the peer return `None`.
    pub fn rejection(&self) -> Option<&'static str> {
        match self {
            CloseCause::LimitExceeded { limit, .. } => Some(limit),
            CloseCause::ProtocolError(_) => Some("protocol_error"),
            CloseCause::HandshakeTimeout => Some("handshake_timeout"),
            CloseCause::IdleTimeout => Some("idle_timeout"),
            CloseCause::SlowConsumer(_) => Some("slow_consumer"),
            _ => None,
        }
    }

    /// Whether a server should dial a server-initiated client again after
    /// this close: after a `restart` goodbye or a close without goodbye.
    pub fn wants_reconnect(&self) -> bool {
        match self {
            CloseCause::Goodbye(reason) => reason.wants_reconnect(),
            CloseCause::PeerClosed { .. }
            | CloseCause::PeerReset(_)
            | CloseCause::IdleTimeout
            | CloseCause::SlowConsumer(_)
            | CloseCause::AccessChanged => true,
            _ => false,
        }
    }
}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseCause::Goodbye(reason) => write!(f, "peer said goodbye ({})", reason.as_str()),
            CloseCause::LocalGoodbye(reason) => write!(f, "said goodbye ({})", reason.as_str()),
            CloseCause::PeerClosed { code, reason } if reason.is_empty() => {
                write!(f, "peer closed the connection (code {code})")
            }
            CloseCause::PeerClosed { code, reason } => {
                write!(f, "peer closed the connection (code {code}: {reason})")
            }
            CloseCause::PeerReset(detail) => write!(f, "connection lost: {detail}"),
            CloseCause::ProtocolError(detail) => write!(f, "protocol error: {detail}"),
            CloseCause::HandshakeTimeout => f.write_str("handshake timed out"),
            CloseCause::IdleTimeout => f.write_str("peer idle: no frame or pong in time"),
            CloseCause::Replaced => {
                f.write_str("replaced by a newer session with the same client_id")
            }
            CloseCause::SlowConsumer(detail) => write!(f, "slow consumer: {detail}"),
            CloseCause::Shutdown => f.write_str("closed locally"),
            CloseCause::AccessChanged => {
                f.write_str("the server's operator changed this client's access; connect again")
            }
            CloseCause::LimitExceeded { limit, detail } => {
                write!(f, "limit {limit} exceeded: {detail}")
            }
        }
    }
}

/// Something a session reports to its owner.
#[derive(Debug)]
pub struct SessionEvent {
    pub session: SessionId,
    pub kind: EventKind,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum EventKind {
    /// A decoded message or binary frame, with the local clock in
    /// microseconds at which its frame was read.
    Received {
        incoming: Incoming,
        received_us: i64,
    },
    /// The session replied to `client/time` (server side), with the
    /// timestamps of the exchange that this side has.
    TimeAnswered {
        client_transmitted: i64,
        server_received: i64,
        server_transmitted: i64,
    },
    /// The session wrote `client/time` (client side) stamped with this T1.
    TimeSent { client_transmitted: i64 },
    /// The peer's pong to a WebSocket ping arrived this many microseconds
    /// after the ping.
    RoundTrip { rtt_us: i64 },
    /// The state moved to `Active`.
    Activated,
    /// The one and only last event of a session.
    Closed(CloseCause),
}

/// A request to a session task.
///
/// The session queue allocates its slots 32 at a time and keeps them for
/// the session's life. A slot therefore contains at most a binary frame,
/// and a whole [`Message`] (288 bytes) is boxed, which keeps a streaming
/// session's queue near 1.5 KiB instead of 9 KiB.
#[derive(Debug)]
pub(crate) enum Command {
    /// A binary frame, such as an audio chunk, the bulk of what a server sends.
    SendBinary(crate::protocol::BinaryFrame),
    /// A message.
    Send(Box<Message>),
}

impl Command {
    fn wrap(outgoing: Outgoing) -> Command {
        match outgoing {
            Outgoing::Binary(frame) => Command::SendBinary(frame),
            Outgoing::Message(message) => Command::Send(Box::new(message)),
        }
    }

    /// Returns the item to send.
    pub(crate) fn into_outgoing(self) -> Outgoing {
        match self {
            Command::SendBinary(frame) => Outgoing::Binary(frame),
            Command::Send(message) => Outgoing::Message(*message),
        }
    }
}

/// The reason a message could not be queued for a session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("session is closed")]
    Closed,
    #[error("outbound queue of session is full")]
    Full,
}

/// The way to reach a session. Cheap to clone; dropping every clone closes
/// the session with [`CloseCause::Shutdown`].
#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub id: SessionId,
    pub peer: SocketAddr,
    commands: mpsc::Sender<Command>,
    close: Arc<watch::Sender<Option<CloseCause>>>,
    state: watch::Receiver<SessionState>,
    /// Binary payload bytes queued and not yet written, shared with the task.
    queued_bytes: Arc<AtomicUsize>,
}

/// Bytes an outgoing item adds to [`SessionHandle::queued_bytes`]: binary
/// payloads count, JSON messages are small and count nothing.
pub(crate) fn queued_cost(outgoing: &Outgoing) -> usize {
    match outgoing {
        Outgoing::Binary(frame) => frame.payload().len(),
        Outgoing::Message(_) => 0,
    }
}

impl SessionHandle {
    /// Queues a message without waiting. A full queue means the peer is not
    /// reading: the session is closed as a slow consumer.
    pub fn send(&self, outgoing: Outgoing) -> Result<(), SendError> {
        let cost = queued_cost(&outgoing);
        match self.commands.try_send(Command::wrap(outgoing)) {
            Ok(()) => {
                self.queued_bytes.fetch_add(cost, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
            Err(mpsc::error::TrySendError::Full(_)) => {
                let queue = self.commands.max_capacity();
                self.close(CloseCause::SlowConsumer(format!(
                    "{queue} messages queued (the outbound_queue limit)"
                )));
                Err(SendError::Full)
            }
        }
    }

    pub fn send_message(&self, message: Message) -> Result<(), SendError> {
        self.send(Outgoing::Message(message))
    }

    /// Asks the session to close. The first cause wins; later calls do
    /// nothing, so this is safe to call from anywhere, any number of times.
    pub fn close(&self, cause: CloseCause) {
        self.close.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(cause);
            true
        });
    }

    /// Binary payload bytes queued for the peer and not yet written. Senders
    /// of bulk data hold back while this is high, so a peer that reads slowly
    /// costs bounded memory until the write timeout closes it.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> SessionState {
        *self.state.borrow()
    }

    /// Waits until the session has closed.
    pub async fn closed(&self) {
        let mut state = self.state.clone();
        let _ = state.wait_for(|s| *s == SessionState::Closed).await;
    }
}
