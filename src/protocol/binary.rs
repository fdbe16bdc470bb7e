//! Binary frames: a type byte, a big-endian timestamp and a payload.

use std::fmt;

use bytes::Bytes;

/// Bytes in front of every binary payload: one type byte and an i64
/// timestamp in microseconds on the server clock.
pub const HEADER_LEN: usize = 9;

/// What a binary frame carries, from its type byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    /// Audio chunk of the player role (type 4).
    Audio,
    /// Image for artwork channel 0 to 3 (types 8 to 11).
    Artwork(u8),
    /// Visualization data (types 16 to 23).
    Visualizer(u8),
    /// Types 192 to 255, left to application-specific roles.
    Application(u8),
    /// A reserved or not yet defined type.
    Reserved(u8),
}

impl BinaryKind {
    pub fn from_type(byte: u8) -> BinaryKind {
        match byte {
            4 => BinaryKind::Audio,
            8..=11 => BinaryKind::Artwork(byte - 8),
            16..=23 => BinaryKind::Visualizer(byte - 16),
            192..=255 => BinaryKind::Application(byte),
            other => BinaryKind::Reserved(other),
        }
    }

    pub fn type_byte(self) -> u8 {
        match self {
            BinaryKind::Audio => 4,
            BinaryKind::Artwork(channel) => 8 + channel.min(3),
            BinaryKind::Visualizer(slot) => 16 + slot.min(7),
            BinaryKind::Application(byte) | BinaryKind::Reserved(byte) => byte,
        }
    }
}

/// A decoded binary frame.
///
/// The payload is reference-counted, so clones of a frame share its bytes:
/// a server sends one encoded chunk to many players without copying it.
#[derive(Clone)]
pub struct BinaryFrame {
    pub kind: BinaryKind,
    /// Server clock time in microseconds at which the payload takes effect
    /// (for audio, when its first frame is heard).
    pub timestamp_us: i64,
    /// The payload, or for a frame made by [`BinaryFrame::with_v1_layout`]
    /// the whole frame in the v1 layout with the payload after the header.
    data: Bytes,
    /// Offset of the payload in `data`: 0, or [`HEADER_LEN`] when `data`
    /// is the v1 layout.
    payload_start: u8,
}

/// A binary frame shorter than its header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("binary frame of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
pub struct ShortFrame(pub usize);

impl BinaryFrame {
    /// Creates a frame from its parts.
    pub fn new(kind: BinaryKind, timestamp_us: i64, payload: impl Into<Bytes>) -> BinaryFrame {
        BinaryFrame {
            kind,
            timestamp_us,
            data: payload.into(),
            payload_start: 0,
        }
    }

    /// Creates a frame that keeps its v1 layout, built here once with one
    /// copy of `payload`. Clones share that buffer, and the v1 codec sends
    /// it as it is, so a chunk sent to many players is not copied per
    /// player.
    pub fn with_v1_layout(kind: BinaryKind, timestamp_us: i64, payload: &[u8]) -> BinaryFrame {
        BinaryFrame {
            kind,
            timestamp_us,
            data: Bytes::from(v1_layout(kind, timestamp_us, payload)),
            payload_start: HEADER_LEN as u8,
        }
    }

    /// Parses the v1 layout: type u8, timestamp i64 big-endian, payload.
    pub fn parse(bytes: &[u8]) -> Result<BinaryFrame, ShortFrame> {
        let (kind, timestamp_us) = parse_header(bytes)?;
        Ok(BinaryFrame::new(
            kind,
            timestamp_us,
            Bytes::copy_from_slice(&bytes[HEADER_LEN..]),
        ))
    }

    /// Parses the v1 layout like [`BinaryFrame::parse`], keeping `bytes`
    /// instead of copying the payload.
    pub fn parse_shared(bytes: Bytes) -> Result<BinaryFrame, ShortFrame> {
        let (kind, timestamp_us) = parse_header(&bytes)?;
        Ok(BinaryFrame {
            kind,
            timestamp_us,
            data: bytes,
            payload_start: HEADER_LEN as u8,
        })
    }

    /// Returns the payload, the bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.data[usize::from(self.payload_start)..]
    }

    /// Returns the payload as shared bytes, without a copy.
    pub fn payload_bytes(&self) -> Bytes {
        self.data.slice(usize::from(self.payload_start)..)
    }

    /// Serializes to the v1 layout. A frame that keeps its v1 layout
    /// returns that buffer without a copy.
    pub fn to_bytes(&self) -> Bytes {
        // The kind and timestamp are public fields, so the kept header
        // counts only while it still matches them.
        let layout_matches = usize::from(self.payload_start) == HEADER_LEN
            && self.data[0] == self.kind.type_byte()
            && self.data[1..HEADER_LEN] == self.timestamp_us.to_be_bytes();
        if layout_matches {
            return self.data.clone();
        }
        Bytes::from(v1_layout(self.kind, self.timestamp_us, self.payload()))
    }
}

/// Reads the kind and timestamp of a v1 frame.
fn parse_header(bytes: &[u8]) -> Result<(BinaryKind, i64), ShortFrame> {
    if bytes.len() < HEADER_LEN {
        return Err(ShortFrame(bytes.len()));
    }
    let mut timestamp = [0u8; 8];
    timestamp.copy_from_slice(&bytes[1..HEADER_LEN]);
    Ok((
        BinaryKind::from_type(bytes[0]),
        i64::from_be_bytes(timestamp),
    ))
}

fn v1_layout(kind: BinaryKind, timestamp_us: i64, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.push(kind.type_byte());
    bytes.extend_from_slice(&timestamp_us.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Frames are equal when their kind, timestamp and payload are. Whether
/// one keeps its v1 layout does not count.
impl PartialEq for BinaryFrame {
    fn eq(&self, other: &BinaryFrame) -> bool {
        self.kind == other.kind
            && self.timestamp_us == other.timestamp_us
            && self.payload() == other.payload()
    }
}

impl Eq for BinaryFrame {}

impl fmt::Debug for BinaryFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BinaryFrame")
            .field("kind", &self.kind)
            .field("timestamp_us", &self.timestamp_us)
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_frame_round_trips() {
        let frame = BinaryFrame::new(BinaryKind::Audio, -5, vec![1, 2, 3]);
        let bytes = frame.to_bytes();
        assert_eq!(bytes[0], 4);
        assert_eq!(&bytes[1..9], &(-5i64).to_be_bytes());
        assert_eq!(BinaryFrame::parse(&bytes).unwrap(), frame);
    }

    #[test]
    fn v1_layout_is_shared_by_clones() {
        let frame = BinaryFrame::with_v1_layout(BinaryKind::Audio, 7, &[1, 2, 3]);
        let clone = frame.clone();
        let first = frame.to_bytes();
        let second = clone.to_bytes();
        assert_eq!(first.as_ptr(), second.as_ptr());
        assert_eq!(
            first,
            BinaryFrame::new(BinaryKind::Audio, 7, vec![1, 2, 3]).to_bytes()
        );
        assert_eq!(frame.payload(), [1, 2, 3]);
        assert_eq!(BinaryFrame::parse(&first).unwrap(), frame);
        assert_eq!(BinaryFrame::parse_shared(first).unwrap(), frame);
    }

    #[test]
    fn changed_header_stops_using_kept_layout() {
        let mut frame = BinaryFrame::with_v1_layout(BinaryKind::Audio, 7, &[1, 2, 3]);
        frame.timestamp_us = 8;
        let bytes = frame.to_bytes();
        assert_eq!(&bytes[1..HEADER_LEN], &8i64.to_be_bytes());
        assert_eq!(&bytes[HEADER_LEN..], &[1, 2, 3]);
        frame.kind = BinaryKind::Artwork(0);
        assert_eq!(frame.to_bytes()[0], 8);
    }

    #[test]
    fn short_frame_is_rejected() {
        assert_eq!(BinaryFrame::parse(&[4, 0, 0]), Err(ShortFrame(3)));
    }

    #[test]
    fn type_bytes_map_to_roles() {
        assert_eq!(BinaryKind::from_type(9), BinaryKind::Artwork(1));
        assert_eq!(BinaryKind::from_type(17), BinaryKind::Visualizer(1));
        assert_eq!(BinaryKind::from_type(200), BinaryKind::Application(200));
        assert_eq!(BinaryKind::from_type(0), BinaryKind::Reserved(0));
    }
}
