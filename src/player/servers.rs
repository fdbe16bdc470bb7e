//! Choosing between servers: the multiple-server rules of server-initiated
//! connections and the persisted last-played server.
//!
//! A client talks to one server at a time. When a second server connects,
//! the client completes the handshake with it, then keeps one of the two.
//! A new server that connected for `playback` wins. A new `discovery`
//! server loses to a current `playback` server. Between two `discovery`
//! servers, the one that last played on this client wins, and without such
//! a match the current server stays. The server that loses gets
//! `client/goodbye` with reason `another_server`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::ConnectionReason;

/// Server that a client keeps of two connected ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    KeepCurrent,
    SwitchToNew,
}

/// Server id and connection reason: the inputs of the choice.
#[derive(Clone, Copy, Debug)]
pub struct ServerSide<'a> {
    pub server_id: &'a str,
    pub reason: ConnectionReason,
}

/// Applies the multiple-server rules to a `current` server and a `new` one
/// that has completed its handshake.
pub fn choose_server(
    current: ServerSide<'_>,
    new: ServerSide<'_>,
    last_played: Option<&str>,
) -> Choice {
    match (current.reason, new.reason) {
        (_, ConnectionReason::Playback) => Choice::SwitchToNew,
        (ConnectionReason::Playback, ConnectionReason::Discovery) => Choice::KeepCurrent,
        (ConnectionReason::Discovery, ConnectionReason::Discovery) => {
            let new_played_last = last_played == Some(new.server_id);
            let current_played_last = last_played == Some(current.server_id);
            if new_played_last && !current_played_last {
                Choice::SwitchToNew
            } else {
                Choice::KeepCurrent
            }
        }
    }
}

/// Server that most recently played on this client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastPlayed {
    pub server_id: String,
    /// URL this client dialed, when it dialed the server itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Small JSON file that stores the last-played server across restarts.
#[derive(Clone, Debug)]
pub struct LastPlayedStore {
    path: PathBuf,
}

impl LastPlayedStore {
    pub fn new(path: PathBuf) -> LastPlayedStore {
        LastPlayedStore { path }
    }

    /// Returns the store of `client_id` in the user's state directory:
    /// `$XDG_STATE_HOME/resonate/` or `~/.local/state/resonate/`.
    pub fn in_state_dir(client_id: &str) -> Option<LastPlayedStore> {
        let base = std::env::var_os("XDG_STATE_HOME")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/state"))
            })?;
        let file: String = client_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        Some(LastPlayedStore::new(
            base.join("resonate")
                .join(format!("last-played-{file}.json")),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the stored server. A missing or unreadable file counts as none.
    pub fn load(&self) -> Option<LastPlayed> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        match serde_json::from_str(&text) {
            Ok(last) => Some(last),
            Err(err) => {
                tracing::warn!(path = %self.path.display(), cause = %err, "ignoring an unreadable last-played file");
                None
            }
        }
    }

    /// Writes `last` through a temporary file and a rename, so that a crash of
    /// this process leaves the old or the new content, never a torn file.
    /// The file is not synced to disk, so a power failure may lose the update.
    pub fn save(&self, last: &LastPlayed) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string(last).map_err(std::io::Error::other)?;
        let temporary = self.path.with_extension("json.tmp");
        std::fs::write(&temporary, text)?;
        std::fs::rename(&temporary, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionReason::{Discovery, Playback};

    fn side(server_id: &str, reason: ConnectionReason) -> ServerSide<'_> {
        ServerSide { server_id, reason }
    }

    #[test]
    fn playback_newcomer_always_wins() {
        for current in [Discovery, Playback] {
            let choice = choose_server(side("a", current), side("b", Playback), Some("a"));
            assert_eq!(choice, Choice::SwitchToNew, "current {current:?}");
        }
    }

    #[test]
    fn discovery_newcomer_loses_to_playback() {
        let choice = choose_server(side("a", Playback), side("b", Discovery), Some("b"));
        assert_eq!(choice, Choice::KeepCurrent);
    }

    #[test]
    fn discovery_tie_prefers_last_played() {
        let current = side("a", Discovery);
        let new = side("b", Discovery);
        assert_eq!(choose_server(current, new, Some("b")), Choice::SwitchToNew);
        assert_eq!(choose_server(current, new, Some("a")), Choice::KeepCurrent);
        assert_eq!(choose_server(current, new, Some("c")), Choice::KeepCurrent);
        assert_eq!(choose_server(current, new, None), Choice::KeepCurrent);
    }

    #[test]
    fn store_round_trips_and_tolerates_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let store = LastPlayedStore::new(dir.path().join("nested/last.json"));
        assert_eq!(store.load(), None);
        let last = LastPlayed {
            server_id: "srv".into(),
            url: Some("ws://127.0.0.1:8927/sendspin".into()),
        };
        store.save(&last).unwrap();
        assert_eq!(store.load(), Some(last));
        std::fs::write(store.path(), "not json").unwrap();
        assert_eq!(store.load(), None);
    }
}
