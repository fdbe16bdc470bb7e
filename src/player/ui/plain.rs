//! The player UI's state as text for daemons and scripts: status lines
//! printed when what they show changes, and JSON events.

use serde_json::{json, Value};

use crate::protocol::PlaybackState;

use super::state::{Changes, NowPlaying, PlayState};

/// The track, group volume and group lines last returned, so a line comes
/// again only when what it shows changed.
#[derive(Debug, Default)]
pub struct Printed {
    track: Option<String>,
    volume: Option<String>,
    group: Option<String>,
}

impl Printed {
    /// Returns the status lines of what `changes` changed in `display` and
    /// reads differently from the last line of its kind.
    pub fn changed_lines(&mut self, display: &PlayState, changes: Changes) -> Vec<String> {
        let mut lines = Vec::new();
        if changes.metadata {
            update(&mut self.track, track_line(&display.metadata), &mut lines);
        }
        if changes.controller {
            let volume = display.controller.as_ref().map(|controller| {
                let mute = if controller.muted { ", muted" } else { "" };
                format!("group volume {}{mute}", controller.volume)
            });
            update(&mut self.volume, volume, &mut lines);
        }
        if changes.group {
            let group = &display.group;
            let line = group.id.as_ref().map(|id| {
                let name = group
                    .name
                    .as_ref()
                    .map(|name| format!("{name} "))
                    .unwrap_or_default();
                let playback = match group.playback {
                    Some(PlaybackState::Playing) => "playing",
                    Some(PlaybackState::Stopped) => "stopped",
                    None => "in an unknown state",
                };
                format!("group {name}({id}) is {playback}")
            });
            update(&mut self.group, line, &mut lines);
        }
        lines
    }
}

/// Stores `line` as the last of its kind and adds it to `lines` when it is
/// new.
fn update(last: &mut Option<String>, line: Option<String>, lines: &mut Vec<String>) {
    if line.is_some() && line != *last {
        lines.extend(line.clone());
    }
    *last = line;
}

/// Returns `now playing "TITLE" by ARTIST on ALBUM`, or `None` without a
/// title, artist or album.
pub fn track_line(track: &NowPlaying) -> Option<String> {
    if track.title.is_none() && track.artist.is_none() && track.album.is_none() {
        return None;
    }
    let mut line = format!(
        "now playing {:?}",
        track.title.as_deref().unwrap_or("untitled")
    );
    if let Some(artist) = &track.artist {
        line.push_str(&format!(" by {artist}"));
    }
    if let Some(album) = &track.album {
        line.push_str(&format!(" on {album}"));
    }
    Some(line)
}

/// Returns the merged metadata as a `metadata` event.
pub fn metadata_json(display: &PlayState) -> Value {
    let track = &display.metadata;
    json!({
        "event": "metadata", "title": track.title, "artist": track.artist, "album_artist": track.album_artist,
        "album": track.album, "artwork_url": track.artwork_url, "year": track.year, "track": track.track,
        "progress": track.progress, "progress_timestamp_us": track.progress_timestamp_us,
        "repeat": track.repeat, "shuffle": track.shuffle,
    })
}

/// Returns the controller state as a `controller` event, with no fields
/// but `event` while the server has sent none.
pub fn controller_json(display: &PlayState) -> Value {
    match &display.controller {
        Some(controller) => json!({
            "event": "controller", "supported_commands": controller.supported_commands,
            "volume": controller.volume, "muted": controller.muted,
        }),
        None => json!({"event": "controller"}),
    }
}

/// Returns the merged group as a `group` event.
pub fn group_json(display: &PlayState) -> Value {
    json!({
        "event": "group", "group_id": display.group.id, "group_name": display.group.name,
        "playback_state": display.group.playback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::player::client::PlayerEvent;
    use crate::player::roles::Roles;
    use crate::protocol::{ControllerState, GroupUpdate, Metadata, ServerState};

    fn metadata(title: Option<&str>, artist: Option<&str>) -> PlayerEvent {
        PlayerEvent::ServerState(ServerState {
            metadata: Some(Metadata {
                timestamp: 0,
                title: Some(title.map(str::to_string)),
                artist: Some(artist.map(str::to_string)),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn status_lines_come_once_per_change() {
        let mut display = PlayState::new("ws://127.0.0.1:8927/sendspin", Roles::ALL);
        let mut printed = Printed::default();

        let changes = display.apply(&metadata(Some("Song"), Some("Band")));
        assert_eq!(
            printed.changed_lines(&display, changes),
            ["now playing \"Song\" by Band"]
        );
        // The same track again prints nothing.
        let changes = display.apply(&metadata(Some("Song"), Some("Band")));
        assert!(printed.changed_lines(&display, changes).is_empty());
        // Clearing the track prints nothing, and the same track after it
        // prints again.
        let changes = display.apply(&metadata(None, None));
        assert!(printed.changed_lines(&display, changes).is_empty());
        let changes = display.apply(&metadata(Some("Song"), Some("Band")));
        assert_eq!(printed.changed_lines(&display, changes).len(), 1);

        let changes = display.apply(&PlayerEvent::ServerState(ServerState {
            controller: Some(ControllerState {
                supported_commands: vec!["volume".into()],
                volume: 30,
                muted: true,
            }),
            ..Default::default()
        }));
        assert_eq!(
            printed.changed_lines(&display, changes),
            ["group volume 30, muted"]
        );

        let changes = display.apply(&PlayerEvent::GroupUpdate(GroupUpdate {
            playback_state: Some(Some(PlaybackState::Stopped)),
            group_id: Some(Some("g1".into())),
            group_name: Some(Some("Kitchen".into())),
        }));
        assert_eq!(
            printed.changed_lines(&display, changes),
            ["group Kitchen (g1) is stopped"]
        );
    }

    #[test]
    fn json_events_carry_merged_state() {
        let mut display = PlayState::new("ws://127.0.0.1:8927/sendspin", Roles::ALL);
        display.apply(&metadata(Some("Song"), Some("Band")));
        display.apply(&metadata(Some("Song 2"), None));
        let value = metadata_json(&display);
        assert_eq!(value["event"], "metadata");
        assert_eq!(value["title"], "Song 2");
        assert_eq!(value["artist"], Value::Null);
        assert_eq!(value["progress"], Value::Null);
        assert_eq!(controller_json(&display), json!({"event": "controller"}));
        assert_eq!(group_json(&display)["group_id"], Value::Null);
    }
}
