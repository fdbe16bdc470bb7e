//! Track tags and cover art of an audio file, read with symphonia.
//!
//! Tags come from the container (FLAC and Vorbis comments, MP4 atoms) and
//! from tags in front of it (ID3v2 in MP3 and WAV); the container's win
//! where both name a field. The cover is the embedded front cover, else
//! any embedded picture, else an image file beside the audio file such as
//! `cover.jpg` or `folder.png`.

use std::fs::File;
use std::path::{Path, PathBuf};

use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::{MetadataOptions, MetadataRevision, StandardTagKey, StandardVisualKey, Value};
use symphonia::core::probe::Hint;

/// Image files beside an audio file that count as its cover, in order of
/// preference; names are compared without regard to case.
pub const COVER_FILES: [&str; 6] = ["cover.jpg", "cover.png", "folder.jpg", "folder.png", "front.jpg", "front.png"];

/// Tags of one track, as the file states them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackTags {
    pub title: Option<String>,
    pub artist: Option<String>,
    pub album_artist: Option<String>,
    pub album: Option<String>,
    pub year: Option<i32>,
    /// Track number on the album, from 1.
    pub track: Option<u32>,
    /// Encoded cover image (JPEG, PNG or another format the image crate
    /// reads).
    pub cover: Option<Vec<u8>>,
}

/// Reads the tags and cover of the audio file at `path`. A file without
/// tags, or one symphonia cannot probe, gives empty tags: tags are for
/// display, and playback reports its own errors.
pub fn read_tags(path: &Path) -> TrackTags {
    let mut tags = match probe_tags(path) {
        Ok(tags) => tags,
        Err(err) => {
            tracing::debug!(path = %path.display(), cause = %err, "cannot read tags");
            TrackTags::default()
        }
    };
    if tags.cover.is_none() {
        tags.cover = cover_beside(path);
    }
    tags
}

fn probe_tags(path: &Path) -> Result<TrackTags, symphonia::core::errors::Error> {
    let file = File::open(path)?;
    let mut hint = Hint::new();
    if let Some(extension) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(extension);
    }
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut probed =
        symphonia::default::get_probe().format(&hint, stream, &FormatOptions::default(), &MetadataOptions::default())?;
    let mut tags = TrackTags::default();
    // Tags in front of the container first, so the container's own
    // override them.
    if let Some(metadata) = probed.metadata.get() {
        if let Some(revision) = metadata.current() {
            apply_revision(&mut tags, revision);
        }
    }
    if let Some(revision) = probed.format.metadata().current() {
        apply_revision(&mut tags, revision);
    }
    Ok(tags)
}

fn apply_revision(tags: &mut TrackTags, revision: &MetadataRevision) {
    for tag in revision.tags() {
        let Some(key) = tag.std_key else {
            continue;
        };
        let text = value_text(&tag.value);
        if text.is_empty() {
            continue;
        }
        match key {
            StandardTagKey::TrackTitle => tags.title = Some(text),
            StandardTagKey::Artist => tags.artist = Some(text),
            StandardTagKey::AlbumArtist => tags.album_artist = Some(text),
            StandardTagKey::Album => tags.album = Some(text),
            StandardTagKey::Date | StandardTagKey::ReleaseDate | StandardTagKey::OriginalDate => {
                if let Some(year) = parse_year(&text) {
                    // The release date wins over the original date.
                    if key != StandardTagKey::OriginalDate || tags.year.is_none() {
                        tags.year = Some(year);
                    }
                }
            }
            StandardTagKey::TrackNumber => {
                if let Some(track) = parse_track(&text) {
                    tags.track = Some(track);
                }
            }
            _ => {}
        }
    }
    let visuals = revision.visuals();
    let front = visuals
        .iter()
        .find(|v| v.usage == Some(StandardVisualKey::FrontCover))
        .or_else(|| visuals.first());
    if let Some(visual) = front {
        if !visual.data.is_empty() {
            tags.cover = Some(visual.data.to_vec());
        }
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.trim().to_string(),
        Value::UnsignedInt(n) => n.to_string(),
        Value::SignedInt(n) => n.to_string(),
        other => other.to_string().trim().to_string(),
    }
}

/// Reads the year from a date such as `2019`, `2019-05-03` or
/// `2019-05-03T10:00:00`.
pub fn parse_year(text: &str) -> Option<i32> {
    let digits: String = text.trim().chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.len() != 4 {
        return None;
    }
    digits.parse().ok()
}

/// Reads the track number from `3` or `3/12`; 0 is no track number.
pub fn parse_track(text: &str) -> Option<u32> {
    let number = text.split('/').next()?.trim().parse::<u32>().ok()?;
    (number > 0).then_some(number)
}

/// Reads the first of [`COVER_FILES`] in the audio file's directory.
fn cover_beside(path: &Path) -> Option<Vec<u8>> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let entries: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    for wanted in COVER_FILES {
        let found = entries.iter().find(|candidate| {
            candidate
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.eq_ignore_ascii_case(wanted))
        });
        if let Some(found) = found {
            match std::fs::read(found) {
                Ok(bytes) if !bytes.is_empty() => return Some(bytes),
                Ok(_) => {}
                Err(err) => tracing::warn!(path = %found.display(), cause = %err, "cannot read the cover image"),
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_and_track_numbers_parse() {
        assert_eq!(parse_year("2019"), Some(2019));
        assert_eq!(parse_year("2019-05-03"), Some(2019));
        assert_eq!(parse_year("May 2019"), None);
        assert_eq!(parse_year("19"), None);
        assert_eq!(parse_track("3/12"), Some(3));
        assert_eq!(parse_track(" 7 "), Some(7));
        assert_eq!(parse_track("0"), None);
        assert_eq!(parse_track("A1"), None);
    }

    #[test]
    fn cover_file_beside_the_audio_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let audio = dir.path().join("song.wav");
        std::fs::write(&audio, b"not audio").unwrap();
        assert_eq!(read_tags(&audio).cover, None);
        std::fs::write(dir.path().join("Folder.PNG"), b"png bytes").unwrap();
        assert_eq!(read_tags(&audio).cover.as_deref(), Some(&b"png bytes"[..]));
        std::fs::write(dir.path().join("cover.jpg"), b"jpeg bytes").unwrap();
        assert_eq!(read_tags(&audio).cover.as_deref(), Some(&b"jpeg bytes"[..]), "cover.jpg comes first");
    }
}
