//! Live counters of a server: open sessions and clients, closed sessions by
//! cause, and running tasks, so that leaks show under load.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio_util::task::TaskTracker;

/// Cheap, shareable handle to a running server's counters.
///
/// Only the server core writes the session and client counters, at the
/// step where the registry changes. A snapshot taken between two steps is
/// consistent with the registry at that moment. The task count comes from
/// the task tracker and can change at any time.
#[derive(Clone, Debug)]
pub struct ServerStats {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sessions_opened: AtomicU64,
    sessions_live: AtomicU64,
    clients_live: AtomicU64,
    closed_by_cause: Mutex<BTreeMap<&'static str, u64>>,
    rejected_by_cause: Mutex<BTreeMap<&'static str, u64>>,
    tasks: TaskTracker,
}

/// Counters read at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Sessions opened since the server started (WebSocket handshake done).
    pub sessions_opened: u64,
    /// Sessions open now, handshaking or active.
    pub sessions_live: u64,
    /// Clients registered now: sessions that sent a hello and were not replaced.
    pub clients_live: u64,
    /// Closed sessions by cause label.
    pub closed_by_cause: BTreeMap<String, u64>,
    /// Rejected connections and sessions by cause: the limit a peer went
    /// past (`max_message_bytes`, `max_sessions`, ...) or the kind of
    /// misbehaviour (`protocol_error`, `handshake_failed`, ...).
    pub rejected_by_cause: BTreeMap<String, u64>,
    /// Tasks the server owns that are still running: session tasks and
    /// WebSocket handshakes in progress.
    pub tasks_live: u64,
}

impl StatsSnapshot {
    /// Sessions closed since the server started, by any cause.
    pub fn sessions_closed(&self) -> u64 {
        self.closed_by_cause.values().sum()
    }

    /// Returns whether nothing is left open: no session, client or task.
    pub fn is_idle(&self) -> bool {
        self.sessions_live == 0 && self.clients_live == 0 && self.tasks_live == 0
    }
}

impl ServerStats {
    pub(super) fn new(tasks: TaskTracker) -> ServerStats {
        ServerStats {
            inner: Arc::new(Inner {
                sessions_opened: AtomicU64::new(0),
                sessions_live: AtomicU64::new(0),
                clients_live: AtomicU64::new(0),
                closed_by_cause: Mutex::new(BTreeMap::new()),
                rejected_by_cause: Mutex::new(BTreeMap::new()),
                tasks,
            }),
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let closed = self
            .inner
            .closed_by_cause
            .lock()
            .expect("stats lock poisoned");
        let rejected = self
            .inner
            .rejected_by_cause
            .lock()
            .expect("stats lock poisoned");
        StatsSnapshot {
            sessions_opened: self.inner.sessions_opened.load(Ordering::Relaxed),
            sessions_live: self.inner.sessions_live.load(Ordering::Relaxed),
            clients_live: self.inner.clients_live.load(Ordering::Relaxed),
            closed_by_cause: closed
                .iter()
                .map(|(cause, n)| (cause.to_string(), *n))
                .collect(),
            rejected_by_cause: rejected
                .iter()
                .map(|(cause, n)| (cause.to_string(), *n))
                .collect(),
            tasks_live: self.inner.tasks.len() as u64,
        }
    }

    pub(super) fn session_opened(&self) {
        self.inner.sessions_opened.fetch_add(1, Ordering::Relaxed);
        self.inner.sessions_live.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn session_closed(&self, cause: &'static str) {
        self.inner.sessions_live.fetch_sub(1, Ordering::Relaxed);
        *self
            .inner
            .closed_by_cause
            .lock()
            .expect("stats lock poisoned")
            .entry(cause)
            .or_insert(0) += 1;
    }

    /// Counts one rejected connection or session.
    pub(super) fn rejected(&self, cause: &'static str) {
        *self
            .inner
            .rejected_by_cause
            .lock()
            .expect("stats lock poisoned")
            .entry(cause)
            .or_insert(0) += 1;
    }

    pub(super) fn set_clients(&self, count: usize) {
        self.inner
            .clients_live
            .store(count as u64, Ordering::Relaxed);
    }
}
