//! Track tags and cover art of an audio file, read with symphonia.
//!
//! Tags come from the container (FLAC and Vorbis comments, MP4 atoms) and
//! from tags in front of it (ID3v2 in MP3 and WAV); the container's win
//! where both name a field. The cover is the embedded front cover, else
//! any embedded picture, else an image file beside the audio file such as
//! `cover.jpg` or `folder.png`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::{
    MetadataOptions, MetadataRevision, StandardTagKey, StandardVisualKey, Value,
};
use symphonia::core::probe::Hint;

/// Image files beside an audio file that count as its cover, in order of
/// preference; names are compared without regard to case.
pub const COVER_FILES: [&str; 6] = [
    "cover.jpg",
    "cover.png",
    "folder.jpg",
    "folder.png",
    "front.jpg",
    "front.png",
];

/// Largest cover image kept, in encoded bytes. A larger embedded picture or
/// cover file is skipped with a warning, because the server keeps the
/// covers of several tracks in memory and decodes each one.
pub const MAX_COVER_BYTES: usize = 16 << 20;

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
    let mut probed = symphonia::default::get_probe().format(
        &hint,
        stream,
        &FormatOptions::default(),
        &MetadataOptions::default(),
    )?;
    let mut tags = TrackTags::default();
    // Tags in front of the container first, so the container's own
    // override them.
    if let Some(metadata) = probed.metadata.get() {
        if let Some(revision) = metadata.current() {
            apply_revision(&mut tags, revision, path);
        }
    }
    if let Some(revision) = probed.format.metadata().current() {
        apply_revision(&mut tags, revision, path);
    }
    Ok(tags)
}

fn apply_revision(tags: &mut TrackTags, revision: &MetadataRevision, path: &Path) {
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
        if visual.data.len() > MAX_COVER_BYTES {
            tracing::warn!(
                path = %path.display(),
                bytes = visual.data.len(),
                limit = MAX_COVER_BYTES,
                "skipping an embedded picture larger than the cover limit"
            );
        } else if !visual.data.is_empty() {
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
    let digits: String = text
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
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
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    for wanted in COVER_FILES {
        let found = entries.iter().find(|candidate| {
            candidate
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.eq_ignore_ascii_case(wanted))
        });
        if let Some(found) = found {
            match read_cover_file(found) {
                Ok(Some(bytes)) => return Some(bytes),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(path = %found.display(), cause = %err, "cannot read the cover image")
                }
            }
        }
    }
    None
}

/// Reads a cover image file. Returns `None` for an empty file, and for a
/// file larger than [`MAX_COVER_BYTES`], with a warning, without reading it.
fn read_cover_file(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_COVER_BYTES as u64 {
        tracing::warn!(
            path = %path.display(),
            bytes = len,
            limit = MAX_COVER_BYTES,
            "skipping a cover image file larger than the cover limit"
        );
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // The file may grow after the length check, so the read stops at the limit.
    file.take(MAX_COVER_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_COVER_BYTES || bytes.is_empty() {
        return Ok(None);
    }
    Ok(Some(bytes))
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

    /// Copies a FLAC file and adds a Vorbis comment block with `comments`
    /// and a front-cover picture block holding `cover`.
    fn tag_flac(source: &Path, target: &Path, comments: &[&str], cover: &[u8]) {
        let bytes = std::fs::read(source).unwrap();
        assert_eq!(&bytes[..4], b"fLaC");
        let mut blocks = Vec::new();
        let mut at = 4;
        loop {
            let header = bytes[at];
            let len = u32::from_be_bytes([0, bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
            blocks.push((header & 0x7f, bytes[at + 4..at + 4 + len].to_vec()));
            at += 4 + len;
            if header & 0x80 != 0 {
                break;
            }
        }
        let mut comment = Vec::new();
        comment.extend_from_slice(&4u32.to_le_bytes());
        comment.extend_from_slice(b"test");
        comment.extend_from_slice(&(comments.len() as u32).to_le_bytes());
        for text in comments {
            comment.extend_from_slice(&(text.len() as u32).to_le_bytes());
            comment.extend_from_slice(text.as_bytes());
        }
        blocks.push((4, comment));
        let mut picture = Vec::new();
        picture.extend_from_slice(&3u32.to_be_bytes());
        picture.extend_from_slice(&9u32.to_be_bytes());
        picture.extend_from_slice(b"image/png");
        picture.extend_from_slice(&0u32.to_be_bytes());
        for value in [1u32, 1, 24, 0, cover.len() as u32] {
            picture.extend_from_slice(&value.to_be_bytes());
        }
        picture.extend_from_slice(cover);
        blocks.push((6, picture));

        let mut out = b"fLaC".to_vec();
        let count = blocks.len();
        for (index, (kind, body)) in blocks.into_iter().enumerate() {
            let last = if index + 1 == count { 0x80 } else { 0 };
            out.push(kind | last);
            out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(&body);
        }
        out.extend_from_slice(&bytes[at..]);
        std::fs::write(target, out).unwrap();
    }

    #[test]
    fn flac_tags_and_embedded_cover_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sine440_mono_44100_16bit.flac");
        let tagged = dir.path().join("tagged.flac");
        let comments = [
            "TITLE=Song",
            "ARTIST=Artist",
            "ALBUMARTIST=Band",
            "ALBUM=Album",
            "DATE=2019-05-03",
            "TRACKNUMBER=3/12",
        ];
        tag_flac(&fixture, &tagged, &comments, b"cover bytes");
        std::fs::write(dir.path().join("cover.jpg"), b"file beside").unwrap();
        let tags = read_tags(&tagged);
        assert_eq!(tags.title.as_deref(), Some("Song"));
        assert_eq!(tags.artist.as_deref(), Some("Artist"));
        assert_eq!(tags.album_artist.as_deref(), Some("Band"));
        assert_eq!(tags.album.as_deref(), Some("Album"));
        assert_eq!(tags.year, Some(2019));
        assert_eq!(tags.track, Some(3));
        assert_eq!(
            tags.cover.as_deref(),
            Some(&b"cover bytes"[..]),
            "the embedded cover wins over the file beside"
        );
    }

    /// Copies an audio file behind an ID3v2.3 tag whose only frame is a
    /// front-cover APIC frame holding `cover`.
    fn tag_id3(source: &Path, target: &Path, cover: &[u8]) {
        let mut apic = vec![0u8];
        apic.extend_from_slice(b"image/png\0");
        apic.push(3);
        apic.push(0);
        apic.extend_from_slice(cover);
        let mut frames = b"APIC".to_vec();
        frames.extend_from_slice(&(apic.len() as u32).to_be_bytes());
        frames.extend_from_slice(&[0, 0]);
        frames.extend_from_slice(&apic);

        let size = frames.len() as u32;
        assert!(size < 1 << 28, "an ID3v2 tag holds at most 256 MiB");
        let mut out = b"ID3\x03\x00\x00".to_vec();
        // The tag size is syncsafe: 7 bits in each of four bytes.
        for shift in [21, 14, 7, 0] {
            out.push(((size >> shift) & 0x7f) as u8);
        }
        out.extend_from_slice(&frames);
        out.extend_from_slice(&std::fs::read(source).unwrap());
        std::fs::write(target, out).unwrap();
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn id3_cover_is_read_below_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let tagged = dir.path().join("small.mp3");
        tag_id3(&fixture("sine440_mono_44100.mp3"), &tagged, b"small cover");
        assert_eq!(
            read_tags(&tagged).cover.as_deref(),
            Some(&b"small cover"[..])
        );
    }

    #[test]
    fn oversized_embedded_cover_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let tagged = dir.path().join("huge.mp3");
        let cover = vec![0x55; MAX_COVER_BYTES + 1];
        tag_id3(&fixture("sine440_mono_44100.mp3"), &tagged, &cover);
        assert_eq!(read_tags(&tagged).cover, None);

        // The file beside the audio replaces the skipped picture.
        std::fs::write(dir.path().join("cover.png"), b"small cover").unwrap();
        assert_eq!(
            read_tags(&tagged).cover.as_deref(),
            Some(&b"small cover"[..])
        );
    }

    #[test]
    fn oversized_cover_file_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let audio = dir.path().join("song.wav");
        std::fs::write(&audio, b"not audio").unwrap();
        let huge = std::fs::File::create(dir.path().join("cover.jpg")).unwrap();
        huge.set_len(MAX_COVER_BYTES as u64 + 1).unwrap();
        assert_eq!(read_tags(&audio).cover, None);

        std::fs::write(dir.path().join("folder.jpg"), b"jpeg bytes").unwrap();
        assert_eq!(
            read_tags(&audio).cover.as_deref(),
            Some(&b"jpeg bytes"[..]),
            "the next cover file stands in for the oversized one"
        );
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
        assert_eq!(
            read_tags(&audio).cover.as_deref(),
            Some(&b"jpeg bytes"[..]),
            "cover.jpg comes first"
        );
    }
}
