//! Binary frames: a type byte, a big-endian timestamp and a payload.

use std::fmt;

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
#[derive(Clone, PartialEq, Eq)]
pub struct BinaryFrame {
    pub kind: BinaryKind,
    /// Server clock time in microseconds at which the payload takes effect
    /// (for audio, when its first frame is heard).
    pub timestamp_us: i64,
    pub payload: Vec<u8>,
}

/// A binary frame shorter than its header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("binary frame of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
pub struct ShortFrame(pub usize);

impl BinaryFrame {
    /// Parses the v1 layout: type u8, timestamp i64 big-endian, payload.
    pub fn parse(bytes: &[u8]) -> Result<BinaryFrame, ShortFrame> {
        if bytes.len() < HEADER_LEN {
            return Err(ShortFrame(bytes.len()));
        }
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&bytes[1..HEADER_LEN]);
        Ok(BinaryFrame {
            kind: BinaryKind::from_type(bytes[0]),
            timestamp_us: i64::from_be_bytes(timestamp),
            payload: bytes[HEADER_LEN..].to_vec(),
        })
    }

    /// Serializes to the v1 layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + self.payload.len());
        bytes.push(self.kind.type_byte());
        bytes.extend_from_slice(&self.timestamp_us.to_be_bytes());
        bytes.extend_from_slice(&self.payload);
        bytes
    }
}

impl fmt::Debug for BinaryFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BinaryFrame")
            .field("kind", &self.kind)
            .field("timestamp_us", &self.timestamp_us)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_frame_round_trips() {
        let frame = BinaryFrame {
            kind: BinaryKind::Audio,
            timestamp_us: -5,
            payload: vec![1, 2, 3],
        };
        let bytes = frame.to_bytes();
        assert_eq!(bytes[0], 4);
        assert_eq!(&bytes[1..9], &(-5i64).to_be_bytes());
        assert_eq!(BinaryFrame::parse(&bytes).unwrap(), frame);
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
