//! State shown by the player's terminal UI and its plain output: the
//! connection, the group, the controller state and the track, merged from
//! the player's events in arrival order.

use crate::audio::AudioFormat;
use crate::player::client::PlayerEvent;
use crate::player::roles::Roles;
use crate::player::scheduler::PlaybackStatus;
use crate::protocol::{
    ControllerState, GroupUpdate, Metadata, PlaybackState, RepeatMode, TrackProgress,
};
use crate::sync::ClockSnapshot;

/// The track, merged from `server/state` metadata deltas: an absent field
/// keeps its value and `null` clears it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NowPlaying {
    pub title: Option<String>,
    pub artist: Option<String>,
    pub album_artist: Option<String>,
    pub album: Option<String>,
    pub artwork_url: Option<String>,
    pub year: Option<i32>,
    pub track: Option<u32>,
    pub progress: Option<TrackProgress>,
    /// Server time in microseconds at which `progress` was valid: the
    /// timestamp of the latest metadata that carried `progress`, or 0
    /// without progress.
    pub progress_timestamp_us: i64,
    pub repeat: Option<RepeatMode>,
    pub shuffle: Option<bool>,
}

impl NowPlaying {
    /// Merges one metadata delta.
    pub fn apply(&mut self, metadata: Metadata) {
        merge(&mut self.title, metadata.title);
        merge(&mut self.artist, metadata.artist);
        merge(&mut self.album_artist, metadata.album_artist);
        merge(&mut self.album, metadata.album);
        merge(&mut self.artwork_url, metadata.artwork_url);
        merge(&mut self.year, metadata.year);
        merge(&mut self.track, metadata.track);
        merge(&mut self.repeat, metadata.repeat);
        merge(&mut self.shuffle, metadata.shuffle);
        if let Some(progress) = metadata.progress {
            self.progress = progress;
            self.progress_timestamp_us = if progress.is_some() {
                metadata.timestamp
            } else {
                0
            };
        }
    }

    /// Returns whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == NowPlaying::default()
    }

    /// Returns the track position in milliseconds at `server_now_us`. The
    /// reported progress moves on by the server time elapsed since its
    /// timestamp times the playback speed. The result stays within 0 and
    /// the track duration, when the duration is known (not 0).
    pub fn position_ms(&self, server_now_us: i64) -> Option<i64> {
        let progress = self.progress?;
        let elapsed_us = (server_now_us - self.progress_timestamp_us) as i128;
        let moved = progress.track_progress as i128
            + elapsed_us * progress.playback_speed as i128 / 1_000_000;
        let mut position = moved.max(0);
        if progress.track_duration > 0 {
            position = position.min(progress.track_duration as i128);
        }
        Some(position as i64)
    }

    /// Returns the track length in milliseconds, when known.
    pub fn duration_ms(&self) -> Option<i64> {
        self.progress
            .map(|p| p.track_duration)
            .filter(|duration| *duration > 0)
    }

    /// Returns whether the track is paused: progress with speed 0.
    pub fn paused(&self) -> bool {
        self.progress.is_some_and(|p| p.playback_speed == 0)
    }
}

/// Sets `field` from a delta: `None` keeps it, `Some(value)` replaces it,
/// and `Some(None)` (a JSON `null`) clears it.
fn merge<T>(field: &mut Option<T>, delta: Option<Option<T>>) {
    if let Some(value) = delta {
        *field = value;
    }
}

/// The player's group, merged from `group/update` deltas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    pub id: Option<String>,
    pub name: Option<String>,
    pub playback: Option<PlaybackState>,
}

impl Group {
    pub fn apply(&mut self, update: GroupUpdate) {
        merge(&mut self.id, update.group_id);
        merge(&mut self.name, update.group_name);
        merge(&mut self.playback, update.playback_state);
    }
}

/// The connection to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Connected {
        server_id: String,
        server_name: String,
    },
    /// The session ended for this reason, and the player reconnects.
    Disconnected(String),
}

/// Parts changed by [`PlayState::apply`], for outputs that print changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub connection: bool,
    pub metadata: bool,
    pub controller: bool,
    pub group: bool,
    pub stream: bool,
}

/// Server state that the UI shows, as the player received it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlayState {
    /// The server URL, or with `listening` the URL servers dial.
    pub target: String,
    /// Whether servers dial this player (`play --listen`).
    pub listening: bool,
    /// Roles this client asked for.
    pub roles: Roles,
    pub connection: Connection,
    /// Roles the server activated.
    pub active_roles: Vec<String>,
    pub metadata: NowPlaying,
    /// The group's volume, mute and the commands the server accepts,
    /// while the controller role is active.
    pub controller: Option<ControllerState>,
    pub group: Group,
    /// Format of the audio stream playing, while one plays.
    pub format: Option<AudioFormat>,
}

impl PlayState {
    pub fn new(target: &str, roles: Roles) -> PlayState {
        PlayState {
            target: target.to_string(),
            listening: false,
            roles,
            connection: Connection::Connecting,
            active_roles: Vec::new(),
            metadata: NowPlaying::default(),
            controller: None,
            group: Group::default(),
            format: None,
        }
    }

    /// Applies one player event. A new connection starts from an empty
    /// state, because the server sends its whole state after the hello.
    pub fn apply(&mut self, event: &PlayerEvent) -> Changes {
        let mut changes = Changes::default();
        match event {
            PlayerEvent::Connected {
                server_id,
                server_name,
                active_roles,
                ..
            } => {
                self.connection = Connection::Connected {
                    server_id: server_id.clone(),
                    server_name: server_name.clone(),
                };
                self.active_roles = active_roles.clone();
                self.metadata = NowPlaying::default();
                self.controller = None;
                self.group = Group::default();
                self.format = None;
                changes = Changes {
                    connection: true,
                    metadata: true,
                    controller: true,
                    group: true,
                    stream: true,
                };
            }
            PlayerEvent::Disconnected { cause } => {
                self.connection = Connection::Disconnected(cause.to_string());
                self.format = None;
                changes.connection = true;
                changes.stream = true;
            }
            PlayerEvent::Reactivated { active_roles, .. } => {
                self.active_roles = active_roles.clone();
                changes.connection = true;
            }
            PlayerEvent::ServerSwitched { .. }
            | PlayerEvent::ServerRejected { .. }
            | PlayerEvent::Retrying { .. }
            | PlayerEvent::FellBack { .. } => {}
            PlayerEvent::StreamStarted { format } => {
                self.format = Some(*format);
                changes.stream = true;
            }
            PlayerEvent::StreamEnded => {
                self.format = None;
                changes.stream = true;
            }
            PlayerEvent::ServerState(state) => {
                if let Some(metadata) = &state.metadata {
                    self.metadata.apply(metadata.clone());
                    changes.metadata = true;
                }
                if let Some(controller) = &state.controller {
                    self.controller = Some(controller.clone());
                    changes.controller = true;
                }
            }
            PlayerEvent::GroupUpdate(update) => {
                self.group.apply(update.clone());
                changes.group = true;
            }
        }
        changes
    }

    /// Returns whether the server activated a role of `family`.
    pub fn has_active(&self, family: &str) -> bool {
        self.active_roles
            .iter()
            .any(|role| role.split('@').next() == Some(family))
    }

    /// Returns whether the server lists `command` in the controller's
    /// `supported_commands`.
    pub fn supports(&self, command: &str) -> bool {
        self.controller
            .as_ref()
            .is_some_and(|controller| controller.supported_commands.iter().any(|c| c == command))
    }
}

/// Figures sampled at each frame: the clock filter, the local time and,
/// with the player role, the scheduler.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Live {
    pub clock: ClockSnapshot,
    /// Local monotonic time in microseconds, on the clock the filter maps.
    pub local_now_us: i64,
    pub playback: Option<PlaybackStatus>,
}

impl Live {
    /// Returns the server time now, once the clock filter has an estimate.
    pub fn server_now_us(&self) -> Option<i64> {
        self.clock
            .is_valid()
            .then(|| self.clock.local_to_server(self.local_now_us))
    }
}

/// The terminal UI's state: the server state, the live figures and the
/// notice of the latest key.
#[derive(Clone, Debug, PartialEq)]
pub struct App {
    pub state: PlayState,
    pub live: Live,
    /// Outcome of the latest key, such as `sent volume 45`, or the reason
    /// it sent nothing.
    pub notice: Option<String>,
}

impl App {
    pub fn new(state: PlayState) -> App {
        App {
            state,
            live: Live::default(),
            notice: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(
        track_progress: i64,
        track_duration: i64,
        playback_speed: i64,
    ) -> Option<Option<TrackProgress>> {
        Some(Some(TrackProgress {
            track_progress,
            track_duration,
            playback_speed,
        }))
    }

    #[test]
    fn metadata_delta_keeps_absent_and_clears_null() {
        let mut now = NowPlaying::default();
        now.apply(Metadata {
            timestamp: 1_000,
            title: Some(Some("Song".into())),
            artist: Some(Some("Band".into())),
            album: Some(Some("Record".into())),
            shuffle: Some(Some(true)),
            ..Default::default()
        });
        now.apply(Metadata {
            timestamp: 2_000,
            artist: Some(None),
            year: Some(Some(1999)),
            ..Default::default()
        });
        assert_eq!(now.title.as_deref(), Some("Song"));
        assert_eq!(now.artist, None);
        assert_eq!(now.album.as_deref(), Some("Record"));
        assert_eq!(now.year, Some(1999));
        assert_eq!(now.shuffle, Some(true));
    }

    #[test]
    fn progress_timestamp_comes_from_progress_messages() {
        let mut now = NowPlaying::default();
        now.apply(Metadata {
            timestamp: 10_000_000,
            progress: progress(5_000, 60_000, 1000),
            ..Default::default()
        });
        // A later delta without progress leaves the reference point alone.
        now.apply(Metadata {
            timestamp: 12_000_000,
            title: Some(Some("Song".into())),
            ..Default::default()
        });
        assert_eq!(now.progress_timestamp_us, 10_000_000);
        assert_eq!(now.position_ms(13_000_000), Some(8_000));
        now.apply(Metadata {
            timestamp: 14_000_000,
            progress: Some(None),
            ..Default::default()
        });
        assert_eq!(now.position_ms(15_000_000), None);
    }

    #[test]
    fn position_follows_speed_and_stays_in_track() {
        let mut now = NowPlaying::default();
        now.apply(Metadata {
            timestamp: 1_000_000,
            progress: progress(10_000, 20_000, 1500),
            ..Default::default()
        });
        // 2 s at 1.5x moves 3 s.
        assert_eq!(now.position_ms(3_000_000), Some(13_000));
        // Far past the end, the position stops at the duration.
        assert_eq!(now.position_ms(100_000_000), Some(20_000));
        // A clock estimate before the timestamp never goes below 0.
        assert_eq!(now.position_ms(-100_000_000), Some(0));

        now.apply(Metadata {
            timestamp: 5_000_000,
            progress: progress(4_000, 0, 0),
            ..Default::default()
        });
        assert!(now.paused());
        assert_eq!(
            now.position_ms(50_000_000),
            Some(4_000),
            "paused position moved"
        );
        assert_eq!(now.duration_ms(), None);

        now.apply(Metadata {
            timestamp: 5_000_000,
            progress: progress(4_000, 0, 1000),
            ..Default::default()
        });
        assert_eq!(
            now.position_ms(605_000_000),
            Some(604_000),
            "position with an unknown duration stopped moving"
        );
    }

    #[test]
    fn group_update_merges_deltas() {
        let mut group = Group::default();
        group.apply(GroupUpdate {
            playback_state: Some(Some(PlaybackState::Playing)),
            group_id: Some(Some("g1".into())),
            group_name: Some(Some("Kitchen".into())),
        });
        group.apply(GroupUpdate {
            group_name: Some(None),
            ..Default::default()
        });
        assert_eq!(group.id.as_deref(), Some("g1"));
        assert_eq!(group.name, None);
        assert_eq!(group.playback, Some(PlaybackState::Playing));
    }

    #[test]
    fn connection_resets_server_state() {
        let mut state = PlayState::new("ws://127.0.0.1:8927/sendspin", Roles::ALL);
        state.apply(&PlayerEvent::ServerState(crate::protocol::ServerState {
            metadata: Some(Metadata {
                timestamp: 0,
                title: Some(Some("Old".into())),
                ..Default::default()
            }),
            ..Default::default()
        }));
        assert_eq!(state.metadata.title.as_deref(), Some("Old"));
        let changes = state.apply(&PlayerEvent::Connected {
            server_id: "s".into(),
            server_name: "S".into(),
            active_roles: vec!["controller@v1".into()],
            connection_reason: crate::protocol::ConnectionReason::Discovery,
        });
        assert!(changes.metadata);
        assert!(state.metadata.is_empty());
        assert!(state.has_active("controller"));
        assert!(!state.has_active("player"));
    }
}
