//! The metadata role: what a group plays, as complete views and as the
//! deltas `server/state` carries.
//!
//! The core keeps the view it last sent to each metadata client. A change
//! sends only the fields that differ, `null` for a field that no longer
//! has a value, and nothing when no field differs. Progress counts as
//! unchanged while it moves as the last message predicted.

use crate::audio::tags::TrackTags;
use crate::protocol::{Metadata, RepeatMode, TrackProgress};

use super::group::NowPlaying;
use super::queue::QueueEntry;

/// Progress that differs from the projection of the last one by no more
/// than this, in milliseconds, is not sent again.
const PROGRESS_TOLERANCE_MS: i64 = 50;

/// The complete metadata state of a client, as of `timestamp`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetadataView {
    pub timestamp: i64,
    pub title: Option<String>,
    pub artist: Option<String>,
    pub album_artist: Option<String>,
    pub album: Option<String>,
    pub year: Option<i32>,
    pub track: Option<u32>,
    pub progress: Option<TrackProgress>,
    pub repeat: Option<RepeatMode>,
    pub shuffle: Option<bool>,
}

impl MetadataView {
    /// Builds the view of a group playing `entry` with `tags` at the
    /// position in `now`.
    pub fn of(
        entry: &QueueEntry,
        tags: &TrackTags,
        now: &NowPlaying,
        repeat: RepeatMode,
        shuffle: bool,
    ) -> MetadataView {
        let title = match entry {
            QueueEntry::File(path) => tags.title.clone().or_else(|| {
                path.file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
            }),
            QueueEntry::Tone(kind) => Some(kind.title().to_string()),
            QueueEntry::Pipe(_) => Some("Live input".to_string()),
        };
        let duration = now.duration_ms.unwrap_or(0) as i64;
        let mut progress_ms = now.progress_ms as i64;
        if duration > 0 {
            progress_ms = progress_ms.min(duration);
        }
        MetadataView {
            timestamp: now.at_us,
            title,
            artist: tags.artist.clone(),
            album_artist: tags.album_artist.clone(),
            album: tags.album.clone(),
            year: tags.year,
            track: tags.track,
            progress: Some(TrackProgress {
                track_progress: progress_ms,
                track_duration: duration,
                playback_speed: if now.playing { 1000 } else { 0 },
            }),
            repeat: Some(repeat),
            shuffle: Some(shuffle),
        }
    }

    /// Returns the delta that turns `previous` into this view, or `None`
    /// when nothing changed. Without a previous view every field is sent.
    pub fn delta_from(&self, previous: Option<&MetadataView>) -> Option<Metadata> {
        let empty = MetadataView::default();
        let first = previous.is_none();
        let before = previous.unwrap_or(&empty);
        let mut delta = Metadata {
            timestamp: self.timestamp,
            ..Default::default()
        };
        let mut changed = first;

        macro_rules! field {
            ($name:ident) => {
                if first || self.$name != before.$name {
                    delta.$name = Some(self.$name.clone());
                    changed = true;
                }
            };
        }
        field!(title);
        field!(artist);
        field!(album_artist);
        field!(album);
        field!(year);
        field!(track);
        field!(repeat);
        field!(shuffle);
        if first || !progress_agrees(before, self) {
            delta.progress = Some(self.progress);
            changed = true;
        }
        if first {
            // The server has no artwork URL to offer, so the first message
            // clears it.
            delta.artwork_url = Some(None);
        }
        changed.then_some(delta)
    }
}

/// Checks that `later`'s progress is where `earlier`'s predicts it.
fn progress_agrees(earlier: &MetadataView, later: &MetadataView) -> bool {
    match (earlier.progress, later.progress) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            if a.playback_speed != b.playback_speed || a.track_duration != b.track_duration {
                return false;
            }
            let elapsed_ms = (later.timestamp - earlier.timestamp) * a.playback_speed / 1_000_000;
            let mut predicted = a.track_progress + elapsed_ms;
            if a.track_duration > 0 {
                predicted = predicted.min(a.track_duration);
            }
            (predicted - b.track_progress).abs() <= PROGRESS_TOLERANCE_MS
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::tone::ToneKind;
    use std::path::PathBuf;

    fn now(progress_ms: u64, at_us: i64, playing: bool) -> NowPlaying {
        NowPlaying {
            entry: 0,
            progress_ms,
            at_us,
            duration_ms: Some(180_000),
            playing,
        }
    }

    fn tagged() -> TrackTags {
        TrackTags {
            title: Some("Song".into()),
            artist: Some("Artist".into()),
            album_artist: None,
            album: Some("Album".into()),
            year: Some(2019),
            track: Some(3),
            cover: None,
        }
    }

    #[test]
    fn first_delta_is_complete() {
        let entry = QueueEntry::File(PathBuf::from("/music/song.flac"));
        let view = MetadataView::of(
            &entry,
            &tagged(),
            &now(0, 1_000, true),
            RepeatMode::Off,
            false,
        );
        let delta = view.delta_from(None).unwrap();
        let json = serde_json::to_value(&delta).unwrap();
        assert_eq!(json["title"], "Song");
        assert_eq!(json["album_artist"], serde_json::Value::Null);
        assert_eq!(json["artwork_url"], serde_json::Value::Null);
        assert_eq!(json["year"], 2019);
        assert_eq!(json["track"], 3);
        assert_eq!(json["repeat"], "off");
        assert_eq!(json["shuffle"], false);
        assert_eq!(
            json["progress"],
            serde_json::json!({"track_progress": 0, "track_duration": 180_000, "playback_speed": 1000})
        );
        assert_eq!(json["timestamp"], 1_000);
    }

    #[test]
    fn unchanged_view_sends_nothing() {
        let entry = QueueEntry::File(PathBuf::from("/music/song.flac"));
        let first = MetadataView::of(&entry, &tagged(), &now(0, 0, true), RepeatMode::Off, false);
        let later = MetadataView::of(
            &entry,
            &tagged(),
            &now(5_000, 5_000_000, true),
            RepeatMode::Off,
            false,
        );
        assert_eq!(later.delta_from(Some(&first)), None);
    }

    #[test]
    fn delta_carries_only_changes_and_nulls_clear() {
        let entry = QueueEntry::File(PathBuf::from("/music/song.flac"));
        let first = MetadataView::of(&entry, &tagged(), &now(0, 0, true), RepeatMode::Off, false);
        let mut untagged = tagged();
        untagged.artist = None;
        untagged.title = Some("Other".into());
        let second = MetadataView::of(
            &entry,
            &untagged,
            &now(1_000, 1_000_000, true),
            RepeatMode::All,
            false,
        );
        let json = serde_json::to_value(second.delta_from(Some(&first)).unwrap()).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 4, "{json}");
        assert_eq!(json["title"], "Other");
        assert_eq!(json["artist"], serde_json::Value::Null);
        assert_eq!(json["repeat"], "all");
        assert_eq!(json["timestamp"], 1_000_000);
    }

    #[test]
    fn pause_sends_progress_with_speed_zero() {
        let entry = QueueEntry::Tone(ToneKind::Click);
        let playing = MetadataView::of(
            &entry,
            &TrackTags::default(),
            &now(0, 0, true),
            RepeatMode::Off,
            false,
        );
        let paused = MetadataView::of(
            &entry,
            &TrackTags::default(),
            &now(2_000, 2_000_000, false),
            RepeatMode::Off,
            false,
        );
        let delta = paused.delta_from(Some(&playing)).unwrap();
        assert_eq!(
            delta.progress,
            Some(Some(TrackProgress {
                track_progress: 2_000,
                track_duration: 180_000,
                playback_speed: 0
            }))
        );
        assert_eq!(delta.title, None);
        assert_eq!(playing.title.as_deref(), Some(ToneKind::Click.title()));
    }
}
