//! The play queue of a group: its entries, their order, repeat and
//! shuffle.
//!
//! Entries come from the command line: audio files, directories (every
//! audio file inside, sorted by path), M3U playlists and generated test
//! signals. Each group has a queue of its own, so groups move through the
//! same entries independently.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::seq::SliceRandom;

use crate::audio::pipe::PcmPipe;
use crate::audio::tone::ToneKind;
use crate::protocol::RepeatMode;

/// File name extensions a directory is scanned for.
pub const AUDIO_EXTENSIONS: [&str; 18] = [
    "wav", "wave", "flac", "mp3", "mp2", "mp1", "ogg", "oga", "m4a", "m4b", "mp4", "aac", "aif",
    "aiff", "aifc", "caf", "mka", "webm",
];

/// Playlists nest at most this deep, so a playlist that lists itself ends.
const MAX_PLAYLIST_DEPTH: usize = 8;

/// One thing the queue plays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueEntry {
    File(PathBuf),
    Tone(ToneKind),
    /// Raw PCM from a stream such as stdin: live, so it cannot pause,
    /// skip, repeat or shuffle.
    Pipe(PipeEntry),
}

/// A PCM stream in a queue; entries are equal when they share the stream.
#[derive(Clone, Debug)]
pub struct PipeEntry(pub Arc<PcmPipe>);

impl PartialEq for PipeEntry {
    fn eq(&self, other: &PipeEntry) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PipeEntry {}

impl QueueEntry {
    /// Describes the entry for logs.
    pub fn describe(&self) -> String {
        match self {
            QueueEntry::File(path) => path.display().to_string(),
            QueueEntry::Tone(kind) => format!("{} tone", kind.as_str()),
            QueueEntry::Pipe(_) => "raw PCM from stdin".to_string(),
        }
    }

    /// Whether the entry is a live stream.
    pub fn is_live(&self) -> bool {
        matches!(self, QueueEntry::Pipe(_))
    }
}

/// A source named on the command line that cannot be queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceListError {
    #[error("{} not found; check the path of the file, directory or playlist", .0.display())]
    NotFound(PathBuf),
    #[error("cannot read {}: {detail}; check that it is readable", .path.display())]
    Unreadable { path: PathBuf, detail: String },
    #[error("directory {} holds no audio files ({}); pass a directory with audio files", .0.display(), AUDIO_EXTENSIONS.join(", "))]
    EmptyDirectory(PathBuf),
    #[error("playlist {} lists no entries; add one path per line", .0.display())]
    EmptyPlaylist(PathBuf),
    #[error("playlist {} nests playlists more than {MAX_PLAYLIST_DEPTH} deep; a playlist may list itself", .0.display())]
    TooDeep(PathBuf),
}

/// Expands files, directories and M3U playlists into queue entries, in
/// the order given.
pub fn expand_sources(paths: &[PathBuf]) -> Result<Vec<QueueEntry>, SourceListError> {
    let mut entries = Vec::new();
    for path in paths {
        expand_one(path, 0, &mut entries)?;
    }
    Ok(entries)
}

fn expand_one(
    path: &Path,
    depth: usize,
    entries: &mut Vec<QueueEntry>,
) -> Result<(), SourceListError> {
    let metadata = std::fs::metadata(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => SourceListError::NotFound(path.to_path_buf()),
        _ => SourceListError::Unreadable {
            path: path.to_path_buf(),
            detail: err.to_string(),
        },
    })?;
    if metadata.is_dir() {
        let before = entries.len();
        scan_directory(path, entries)?;
        if entries.len() == before {
            return Err(SourceListError::EmptyDirectory(path.to_path_buf()));
        }
    } else if is_playlist(path) {
        if depth >= MAX_PLAYLIST_DEPTH {
            return Err(SourceListError::TooDeep(path.to_path_buf()));
        }
        let text = std::fs::read(path).map_err(|err| SourceListError::Unreadable {
            path: path.to_path_buf(),
            detail: err.to_string(),
        })?;
        let lines = parse_m3u(&String::from_utf8_lossy(&text));
        if lines.is_empty() {
            return Err(SourceListError::EmptyPlaylist(path.to_path_buf()));
        }
        let base = path.parent().unwrap_or(Path::new(""));
        for line in lines {
            if line.contains("://") && !line.starts_with("file://") {
                tracing::warn!(playlist = %path.display(), entry = %line, "skipping a playlist entry that is a URL; only local files play");
                continue;
            }
            let line = line.strip_prefix("file://").unwrap_or(&line);
            let entry = Path::new(line);
            let resolved = if entry.is_absolute() {
                entry.to_path_buf()
            } else {
                base.join(entry)
            };
            expand_one(&resolved, depth + 1, entries)?;
        }
    } else {
        entries.push(QueueEntry::File(path.to_path_buf()));
    }
    Ok(())
}

fn is_playlist(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("m3u") || e.eq_ignore_ascii_case("m3u8"))
}

fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(e)))
}

/// Adds the audio files under `dir`, depth first, sorted by name.
fn scan_directory(dir: &Path, entries: &mut Vec<QueueEntry>) -> Result<(), SourceListError> {
    let listing = std::fs::read_dir(dir).map_err(|err| SourceListError::Unreadable {
        path: dir.to_path_buf(),
        detail: err.to_string(),
    })?;
    let mut paths: Vec<PathBuf> = listing.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            scan_directory(&path, entries)?;
        } else if is_audio(&path) {
            entries.push(QueueEntry::File(path));
        }
    }
    Ok(())
}

/// Returns the paths an M3U or extended M3U playlist lists, in order:
/// every line that is neither empty nor a `#` comment or directive.
pub fn parse_m3u(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.trim_start_matches('\u{feff}').trim())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The entries of a group in play order, with the group's position, repeat
/// mode and shuffle.
#[derive(Clone, Debug)]
pub struct Queue {
    entries: Vec<QueueEntry>,
    /// Play order: indices into `entries`.
    order: Vec<usize>,
    /// Index into `order` of the current entry.
    position: usize,
    repeat: RepeatMode,
    shuffled: bool,
    /// Indices into `entries` that failed to open, so each gets one
    /// warning however often the queue comes round to it.
    unplayable: HashSet<usize>,
}

impl Queue {
    /// Creates a queue of `entries` (at least one) at its first entry.
    pub fn new(entries: Vec<QueueEntry>, repeat: RepeatMode, shuffled: bool) -> Queue {
        assert!(!entries.is_empty(), "a queue needs at least one entry");
        let mut queue = Queue {
            order: (0..entries.len()).collect(),
            entries,
            position: 0,
            repeat,
            shuffled: false,
            unplayable: HashSet::new(),
        };
        if shuffled {
            queue.set_shuffle(true);
        }
        queue
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[QueueEntry] {
        &self.entries
    }

    /// Index into the play order of the current entry.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Index into [`entries`](Self::entries) of the entry at play-order
    /// position `position`.
    pub fn entry_index(&self, position: usize) -> usize {
        self.order[position.min(self.order.len() - 1)]
    }

    /// Play-order position of entry `entry`.
    pub fn position_of(&self, entry: usize) -> usize {
        self.order.iter().position(|&e| e == entry).unwrap_or(0)
    }

    pub fn current(&self) -> &QueueEntry {
        &self.entries[self.entry_index(self.position)]
    }

    pub fn repeat(&self) -> RepeatMode {
        self.repeat
    }

    pub fn set_repeat(&mut self, repeat: RepeatMode) {
        self.repeat = repeat;
    }

    pub fn is_shuffled(&self) -> bool {
        self.shuffled
    }

    /// Records that the current entry failed to open. Returns true the
    /// first time for that entry, when the failure deserves a warning.
    pub fn mark_current_unplayable(&mut self) -> bool {
        self.unplayable.insert(self.entry_index(self.position))
    }

    /// Makes play-order position `position` the current one.
    pub fn set_position(&mut self, position: usize) {
        self.position = position.min(self.order.len() - 1);
    }

    /// Position that follows the current one when it ends by itself:
    /// the same with repeat one, the next, or the first again with repeat
    /// all. `None` when the queue has ended.
    pub fn after_end(&self) -> Option<usize> {
        match self.repeat {
            RepeatMode::One => Some(self.position),
            _ if self.position + 1 < self.order.len() => Some(self.position + 1),
            RepeatMode::All => Some(0),
            RepeatMode::Off => None,
        }
    }

    /// Moves to the next entry for a `next` command, whatever the repeat
    /// mode: after the last entry comes the first. Returns false when that
    /// wrapped around without repeat all, so the queue has ended.
    pub fn skip_next(&mut self) -> bool {
        if self.position + 1 < self.order.len() {
            self.position += 1;
            return true;
        }
        self.position = 0;
        self.repeat == RepeatMode::All
    }

    /// Moves to the previous entry for a `previous` command: before the
    /// first comes the last with repeat all, else the first again.
    pub fn skip_previous(&mut self) {
        if self.position > 0 {
            self.position -= 1;
        } else if self.repeat == RepeatMode::All {
            self.position = self.order.len() - 1;
        }
    }

    /// Turns shuffle on or off; the current entry stays current. On, the
    /// other entries follow it in random order; off, the original order
    /// comes back.
    pub fn set_shuffle(&mut self, on: bool) {
        let current = self.entry_index(self.position);
        if on {
            let mut rest: Vec<usize> = (0..self.entries.len()).filter(|&i| i != current).collect();
            rest.shuffle(&mut rand::rng());
            self.order = std::iter::once(current).chain(rest).collect();
            self.position = 0;
        } else {
            self.order = (0..self.entries.len()).collect();
            self.position = current;
        }
        self.shuffled = on;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<QueueEntry> {
        names
            .iter()
            .map(|n| QueueEntry::File(PathBuf::from(n)))
            .collect()
    }

    fn name(queue: &Queue) -> String {
        match queue.current() {
            QueueEntry::File(path) => path.display().to_string(),
            QueueEntry::Tone(kind) => kind.as_str().to_string(),
            QueueEntry::Pipe(_) => "pipe".to_string(),
        }
    }

    #[test]
    fn repeat_modes_choose_what_follows_the_end() {
        let mut queue = Queue::new(files(&["a", "b"]), RepeatMode::Off, false);
        assert_eq!(queue.after_end(), Some(1));
        queue.set_position(1);
        assert_eq!(queue.after_end(), None);
        queue.set_repeat(RepeatMode::All);
        assert_eq!(queue.after_end(), Some(0));
        queue.set_repeat(RepeatMode::One);
        assert_eq!(queue.after_end(), Some(1));
    }

    #[test]
    fn next_and_previous_wrap_only_with_repeat_all() {
        let mut queue = Queue::new(files(&["a", "b", "c"]), RepeatMode::Off, false);
        assert!(queue.skip_next());
        assert!(queue.skip_next());
        assert_eq!(name(&queue), "c");
        assert!(
            !queue.skip_next(),
            "next after the last entry ends the queue"
        );
        assert_eq!(name(&queue), "a");
        queue.skip_previous();
        assert_eq!(name(&queue), "a", "previous at the first entry stays there");
        queue.set_repeat(RepeatMode::All);
        queue.skip_previous();
        assert_eq!(name(&queue), "c");
        assert!(queue.skip_next());
        assert_eq!(name(&queue), "a");
    }

    #[test]
    fn shuffle_keeps_current_entry() {
        let names: Vec<String> = (0..20).map(|n| format!("t{n:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut queue = Queue::new(files(&refs), RepeatMode::Off, false);
        queue.set_position(5);
        queue.set_shuffle(true);
        assert_eq!(name(&queue), "t05");
        assert_eq!(queue.position(), 0);
        let mut seen: Vec<usize> = (0..20).map(|p| queue.entry_index(p)).collect();
        seen.sort();
        assert_eq!(seen, (0..20).collect::<Vec<_>>(), "every entry once");
        queue.skip_next();
        let playing = name(&queue);
        queue.set_shuffle(false);
        assert_eq!(name(&queue), playing);
        // The next entry may be the last one, so the whole order is checked.
        let order: Vec<usize> = (0..20).map(|p| queue.entry_index(p)).collect();
        assert_eq!(order, (0..20).collect::<Vec<_>>(), "the original order");
    }

    #[test]
    fn unplayable_entry_is_marked_once() {
        let mut queue = Queue::new(files(&["a", "b"]), RepeatMode::All, false);
        assert!(queue.mark_current_unplayable());
        assert!(
            !queue.mark_current_unplayable(),
            "a second failure is known"
        );
        queue.skip_next();
        assert!(queue.mark_current_unplayable(), "another entry is new");
    }

    #[test]
    fn m3u_skips_comments_and_blank_lines() {
        let text = "\u{feff}#EXTM3U\n#EXTINF:123,Artist - Title\nmusic/one.flac\n\n  two.mp3  \r\n# note\n";
        assert_eq!(parse_m3u(text), vec!["music/one.flac", "two.mp3"]);
    }

    #[test]
    fn sources_expand_directories_and_playlists_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("album/disc2")).unwrap();
        for file in [
            "album/02.flac",
            "album/01.wav",
            "album/cover.jpg",
            "album/disc2/01.mp3",
            "single.ogg",
        ] {
            std::fs::write(root.join(file), b"x").unwrap();
        }
        std::fs::write(root.join("list.m3u"), "#EXTM3U\nsingle.ogg\nalbum\n").unwrap();
        let entries = expand_sources(&[root.join("list.m3u"), root.join("single.ogg")]).unwrap();
        let expected: Vec<QueueEntry> = [
            "single.ogg",
            "album/01.wav",
            "album/02.flac",
            "album/disc2/01.mp3",
            "single.ogg",
        ]
        .iter()
        .map(|f| QueueEntry::File(root.join(f)))
        .collect();
        assert_eq!(entries, expected);
    }

    #[test]
    fn bad_sources_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.flac");
        assert_eq!(
            expand_sources(std::slice::from_ref(&missing)),
            Err(SourceListError::NotFound(missing))
        );
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let err = expand_sources(&[dir.path().join("empty")]).unwrap_err();
        assert!(err.to_string().contains("holds no audio files"), "{err}");
        std::fs::write(dir.path().join("self.m3u"), "self.m3u\n").unwrap();
        let err = expand_sources(&[dir.path().join("self.m3u")]).unwrap_err();
        assert!(matches!(err, SourceListError::TooDeep(_)), "{err}");
        std::fs::write(dir.path().join("blank.m3u8"), "#EXTM3U\n").unwrap();
        let err = expand_sources(&[dir.path().join("blank.m3u8")]).unwrap_err();
        assert!(matches!(err, SourceListError::EmptyPlaylist(_)), "{err}");
    }
}
