//! The server: accepts players and other clients, places them in groups and
//! streams a source to every player of a group on one timeline.
//!
//! One task, the core, owns the registry of clients, the groups and their
//! streams. Sessions report to it through one channel, so every change of
//! who is connected happens in one step in one place.

pub mod artwork;
mod core;
pub mod dial;
mod encode;
mod encoding;
pub mod encrypted;
mod group;
pub mod metadata;
mod negotiate;
pub mod pairing;
mod program;
pub mod queue;
mod stats;
mod stream;
mod track;
pub mod volume;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

use crate::audio::{AudioFormat, Codec};
use crate::dialect::Dialect;
use crate::protocol::RepeatMode;
use crate::session::{CloseCause, SessionId};
use crate::telemetry::Telemetry;
use crate::transport::Limits;

pub use self::core::ServerError;
pub use dial::{DialBackoff, Dialer};
pub use encode::EncoderSettings;
pub use negotiate::{
    answer_request, choose_format, closest_producible, is_producible, FormatAnswer,
};
pub use program::CHUNK_MS;
pub use queue::{expand_sources, Queue, QueueEntry, SourceListError};
pub use stats::{ServerStats, StatsSnapshot};

/// How clients are placed in groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// Every player joins one group that plays the source in sync.
    Shared,
    /// Every client gets a group of its own, as the protocol starts it; each
    /// player's group plays the source from the start when it joins.
    Solo,
}

/// A group named on the command line and the clients placed in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPlacement {
    /// Id and name of the group.
    pub name: String,
    pub client_ids: Vec<String>,
}

impl std::str::FromStr for GroupPlacement {
    type Err = String;

    /// Parses `NAME=CLIENT_ID,CLIENT_ID,...`.
    fn from_str(text: &str) -> Result<GroupPlacement, String> {
        let (name, ids) = text
            .split_once('=')
            .ok_or_else(|| format!("invalid group {text:?}; write NAME=CLIENT_ID,CLIENT_ID, such as kitchen=player-1,player-2"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!(
                "invalid group {text:?}: the name before = is empty"
            ));
        }
        let client_ids: Vec<String> = ids
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect();
        if client_ids.is_empty() {
            return Err(format!(
                "invalid group {text:?}: list at least one client id after ="
            ));
        }
        Ok(GroupPlacement {
            name: name.to_string(),
            client_ids,
        })
    }
}

/// The initial queue of every group.
#[derive(Clone, Debug)]
pub struct SourcePlan {
    /// Files and test signals in their original order; at least one.
    pub entries: Vec<QueueEntry>,
    /// Repeat mode at the end of a track.
    pub repeat: RepeatMode,
    /// Whether the queue starts in random order.
    pub shuffle: bool,
}

impl SourcePlan {
    /// Creates a plan of one file, played once or, with `looping`, over
    /// and over.
    pub fn file(path: PathBuf, looping: bool) -> SourcePlan {
        SourcePlan {
            entries: vec![QueueEntry::File(path)],
            repeat: if looping {
                RepeatMode::All
            } else {
                RepeatMode::Off
            },
            shuffle: false,
        }
    }

    /// Creates a new queue of these entries for one group.
    pub fn queue(&self) -> Queue {
        Queue::new(self.entries.clone(), self.repeat, self.shuffle)
    }
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub server_id: String,
    pub name: String,
    /// WebSocket path to accept connections on.
    pub path: String,
    /// Dialect of connections on `path` and of connections the server dials.
    pub dialect: Dialect,
    /// A second path that accepts legacy Resonate clients, such as
    /// `/resonate`; they join the same groups as everyone else.
    pub legacy_path: Option<String>,
    pub limits: Limits,
    pub source: SourcePlan,
    pub grouping: Grouping,
    /// Groups named on the command line: their clients join them instead
    /// of the group `grouping` gives them.
    pub placements: Vec<GroupPlacement>,
    /// Name of the shared group.
    pub group_name: String,
    /// How far ahead of real time audio is sent.
    pub lead: Duration,
    /// Delay from the start of a program until its first frame sounds.
    pub start_delay: Duration,
    /// Minimum lead of the first chunk a late joiner receives.
    pub join_margin: Duration,
    /// Codec every player gets, whatever it prefers; for testing players.
    pub forced_codec: Option<Codec>,
    /// Encoder settings, such as the Opus bitrate.
    pub encoder: EncoderSettings,
    /// Reconnection timing of server-initiated connections.
    pub dial_backoff: DialBackoff,
    /// Keys and admission policy for Sendspin 1.0 clients on `path`; `None`
    /// accepts only the cleartext `dialect`.
    pub keys: Option<encrypted::ServerKeys>,
}

impl ServerConfig {
    pub fn new(source: SourcePlan) -> ServerConfig {
        ServerConfig {
            server_id: format!("resonate-{}", std::process::id()),
            name: "resonate".to_string(),
            path: Dialect::SendspinV1.default_path().to_string(),
            dialect: Dialect::SendspinV1,
            legacy_path: None,
            limits: Limits::default(),
            source,
            grouping: Grouping::Shared,
            placements: Vec::new(),
            group_name: "Resonate".to_string(),
            lead: Duration::from_millis(2000),
            start_delay: Duration::from_millis(1000),
            join_margin: Duration::from_millis(100),
            forced_codec: None,
            encoder: EncoderSettings::default(),
            dial_backoff: DialBackoff::default(),
            keys: None,
        }
    }
}

/// What the server reports as it runs, for logs, tests and monitors.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerEvent {
    SessionOpened {
        session: SessionId,
        peer: SocketAddr,
    },
    /// A client completed the handshake.
    ClientJoined {
        session: SessionId,
        client_id: String,
        active_roles: Vec<String>,
    },
    /// A second connection with the same `client_id` replaced the first.
    ClientReplaced {
        client_id: String,
        old: SessionId,
        new: SessionId,
    },
    ProgramStarted {
        group_id: String,
        start_us: i64,
    },
    ProgramEnded {
        group_id: String,
    },
    StreamStarted {
        client_id: String,
        format: AudioFormat,
    },
    StreamEnded {
        client_id: String,
        chunks_sent: u64,
    },
    /// The one close report of a session, with its cause.
    SessionClosed {
        session: SessionId,
        client_id: Option<String>,
        cause: CloseCause,
    },
    /// A dial loop for the player at `address` (`host:port`) started.
    DialStarted {
        address: String,
        url: String,
    },
    /// The dial loop for `address` ended, for the reason given.
    DialStopped {
        address: String,
        reason: String,
    },
}

/// A server ready to run on a bound listener.
pub struct Server {
    config: ServerConfig,
    events: broadcast::Sender<ServerEvent>,
    tasks: tokio_util::task::TaskTracker,
    stats: ServerStats,
    dial_requests_tx: mpsc::UnboundedSender<dial::DialRequest>,
    dial_requests: mpsc::UnboundedReceiver<dial::DialRequest>,
    telemetry: Option<Telemetry>,
}

impl Server {
    pub fn new(config: ServerConfig) -> Server {
        let (events, _) = broadcast::channel(4096);
        let tasks = tokio_util::task::TaskTracker::new();
        let stats = ServerStats::new(tasks.clone());
        let (dial_requests_tx, dial_requests) = mpsc::unbounded_channel();
        Server {
            config,
            events,
            tasks,
            stats,
            dial_requests_tx,
            dial_requests,
            telemetry: None,
        }
    }

    /// Publishes the server's sessions, groups and events to `telemetry`
    /// while it runs.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Server {
        self.telemetry = Some(telemetry);
        self
    }

    /// Returns the server's live counters, which stay readable after it stops.
    pub fn stats(&self) -> ServerStats {
        self.stats.clone()
    }

    /// Returns the handle that makes the running server dial players.
    /// Requests made before `run` are applied when it starts.
    pub fn dialer(&self) -> Dialer {
        Dialer {
            requests: self.dial_requests_tx.clone(),
        }
    }

    /// Subscribes to the server's events; subscribe before `run`.
    pub fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        self.events.subscribe()
    }

    /// Serves on `listener` until `shutdown` completes, then closes every
    /// session and waits for their tasks.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        self::core::Core::new(
            self.config,
            self.events,
            self.telemetry,
            self.tasks,
            self.stats,
        )
        .run(listener, self.dial_requests, shutdown)
        .await
    }
}
