//! Fragmentation of Sendspin 1.0 transport messages.
//!
//! A Noise transport message carries at most 65535 bytes, 16 of them the
//! AEAD tag, so one plaintext carries at most [`MAX_PLAINTEXT`] bytes: a type
//! byte and up to 65518 bytes of payload. A larger message travels as
//! fragments of type 1: `[1][flags][orig_type][data]` first, then
//! `[1][flags][data]`. Flag bit 1 marks the first fragment and bit 0 the
//! last; bits 2 to 7 are reserved and zero.

/// Largest plaintext of one Noise transport message: 65535 bytes minus the
/// 16-byte AEAD tag.
pub const MAX_PLAINTEXT: usize = 65535 - 16;

/// Type byte of a JSON message body.
pub const TYPE_JSON: u8 = 0;

/// Type byte of a fragment.
pub const TYPE_FRAGMENT: u8 = 1;

const FLAG_LAST: u8 = 0x01;
const FLAG_FIRST: u8 = 0x02;
const FLAGS_RESERVED: u8 = 0xFC;

/// Largest message one reassembly may produce, so a peer that streams
/// fragments without end cannot exhaust memory.
pub const MAX_REASSEMBLED: usize = 16 << 20;

/// A malformed fragment sequence; the receiver closes the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FragmentError {
    #[error("empty transport message: no type byte")]
    Empty,
    #[error("fragment without a flags byte")]
    MissingFlags,
    #[error("fragment flags {0:#04x} set reserved bits")]
    ReservedFlags(u8),
    #[error("first fragment without an orig_type byte")]
    MissingOrigType,
    #[error("first fragment with orig_type 1")]
    NestedFragment,
    #[error("first fragment while a fragmented message is in flight")]
    FirstInFlight,
    #[error("continuation fragment with no fragmented message in flight")]
    NothingInFlight,
    #[error("message of type {0} while a fragmented message is in flight")]
    InterleavedMessage(u8),
    #[error("fragmented message exceeds {MAX_REASSEMBLED} bytes")]
    TooLarge,
}

/// Splits a type-prefixed plaintext into transport plaintexts: the
/// plaintext itself when it fits in one message, else type 1 fragments.
pub fn split(plaintext: Vec<u8>) -> Vec<Vec<u8>> {
    if plaintext.len() <= MAX_PLAINTEXT {
        return vec![plaintext];
    }
    let orig_type = plaintext[0];
    let data = &plaintext[1..];
    let first_len = MAX_PLAINTEXT - 3;
    let next_len = MAX_PLAINTEXT - 2;
    let mut pieces = vec![&data[..first_len]];
    pieces.extend(data[first_len..].chunks(next_len));
    let last = pieces.len() - 1;
    pieces
        .into_iter()
        .enumerate()
        .map(|(index, piece)| {
            let mut flags = if index == last { FLAG_LAST } else { 0 };
            let mut fragment = Vec::with_capacity(piece.len() + 3);
            fragment.push(TYPE_FRAGMENT);
            if index == 0 {
                flags |= FLAG_FIRST;
                fragment.extend_from_slice(&[flags, orig_type]);
            } else {
                fragment.push(flags);
            }
            fragment.extend_from_slice(piece);
            fragment
        })
        .collect()
}

/// The receiving side: one reassembly buffer per direction.
#[derive(Debug, Default)]
pub struct Reassembler {
    /// The `orig_type` and data of the fragmented message in flight.
    in_flight: Option<(u8, Vec<u8>)>,
}

impl Reassembler {
    /// Takes one decrypted transport plaintext. Returns the whole
    /// type-prefixed message once it is complete, `None` while fragments
    /// are still missing.
    pub fn push(&mut self, plaintext: Vec<u8>) -> Result<Option<Vec<u8>>, FragmentError> {
        let result = self.accept(plaintext);
        if result.is_err() {
            self.in_flight = None;
        }
        result
    }

    fn accept(&mut self, plaintext: Vec<u8>) -> Result<Option<Vec<u8>>, FragmentError> {
        let Some(&type_byte) = plaintext.first() else {
            return Err(FragmentError::Empty);
        };
        if type_byte != TYPE_FRAGMENT {
            if self.in_flight.is_some() {
                return Err(FragmentError::InterleavedMessage(type_byte));
            }
            return Ok(Some(plaintext));
        }
        let flags = *plaintext.get(1).ok_or(FragmentError::MissingFlags)?;
        if flags & FLAGS_RESERVED != 0 {
            return Err(FragmentError::ReservedFlags(flags));
        }
        let data = if flags & FLAG_FIRST != 0 {
            if self.in_flight.is_some() {
                return Err(FragmentError::FirstInFlight);
            }
            let orig_type = *plaintext.get(2).ok_or(FragmentError::MissingOrigType)?;
            if orig_type == TYPE_FRAGMENT {
                return Err(FragmentError::NestedFragment);
            }
            self.in_flight = Some((orig_type, vec![orig_type]));
            &plaintext[3..]
        } else {
            if self.in_flight.is_none() {
                return Err(FragmentError::NothingInFlight);
            }
            &plaintext[2..]
        };
        let (_, buffer) = self
            .in_flight
            .as_mut()
            .expect("a fragmented message is in flight");
        if buffer.len() + data.len() > MAX_REASSEMBLED {
            return Err(FragmentError::TooLarge);
        }
        buffer.extend_from_slice(data);
        if flags & FLAG_LAST == 0 {
            return Ok(None);
        }
        Ok(self.in_flight.take().map(|(_, message)| message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(type_byte: u8, len: usize) -> Vec<u8> {
        let mut bytes = vec![type_byte];
        bytes.extend((0..len).map(|i| (i % 251) as u8));
        bytes
    }

    #[test]
    fn small_message_is_not_fragmented() {
        let plain = message(TYPE_JSON, MAX_PLAINTEXT - 1);
        assert_eq!(split(plain.clone()), vec![plain]);
    }

    #[test]
    fn large_message_round_trips() {
        for len in [MAX_PLAINTEXT, 2 * MAX_PLAINTEXT, 3 * MAX_PLAINTEXT + 17] {
            let plain = message(4, len);
            let pieces = split(plain.clone());
            assert!(pieces.len() >= 2, "{len} bytes were not fragmented");
            assert!(
                pieces.iter().all(|p| p.len() <= MAX_PLAINTEXT),
                "a fragment exceeds the limit"
            );
            assert_eq!(pieces[0][..3], [TYPE_FRAGMENT, FLAG_FIRST, 4]);
            assert_eq!(pieces.last().unwrap()[1], FLAG_LAST);
            let mut reassembler = Reassembler::default();
            let mut out = None;
            for (index, piece) in pieces.iter().enumerate() {
                out = reassembler.push(piece.clone()).unwrap();
                assert_eq!(out.is_some(), index == pieces.len() - 1, "fragment {index}");
            }
            assert_eq!(out.unwrap(), plain);
        }
    }

    #[test]
    fn single_first_and_last_fragment() {
        let mut reassembler = Reassembler::default();
        let out = reassembler
            .push(vec![TYPE_FRAGMENT, FLAG_FIRST | FLAG_LAST, 0, b'{', b'}'])
            .unwrap();
        assert_eq!(out, Some(vec![0, b'{', b'}']));
    }

    #[test]
    fn malformed_sequences_are_rejected() {
        let cases: Vec<(Vec<Vec<u8>>, FragmentError)> = vec![
            (vec![vec![]], FragmentError::Empty),
            (vec![vec![TYPE_FRAGMENT]], FragmentError::MissingFlags),
            (
                vec![vec![TYPE_FRAGMENT, 0x04 | FLAG_FIRST, 0]],
                FragmentError::ReservedFlags(0x06),
            ),
            (
                vec![vec![TYPE_FRAGMENT, FLAG_FIRST]],
                FragmentError::MissingOrigType,
            ),
            (
                vec![vec![TYPE_FRAGMENT, FLAG_FIRST, TYPE_FRAGMENT]],
                FragmentError::NestedFragment,
            ),
            (
                vec![vec![TYPE_FRAGMENT, FLAG_LAST, 1, 2]],
                FragmentError::NothingInFlight,
            ),
            (
                vec![
                    vec![TYPE_FRAGMENT, FLAG_FIRST, 0, 1],
                    vec![TYPE_FRAGMENT, FLAG_FIRST, 0, 1],
                ],
                FragmentError::FirstInFlight,
            ),
            (
                vec![vec![TYPE_FRAGMENT, FLAG_FIRST, 0, 1], vec![4, 0, 0]],
                FragmentError::InterleavedMessage(4),
            ),
        ];
        for (sequence, expected) in cases {
            let mut reassembler = Reassembler::default();
            let (last, head) = sequence.split_last().unwrap();
            for piece in head {
                assert_eq!(reassembler.push(piece.clone()), Ok(None), "{sequence:?}");
            }
            assert_eq!(
                reassembler.push(last.clone()),
                Err(expected),
                "{sequence:?}"
            );
        }
    }

    #[test]
    fn error_clears_the_buffer() {
        let mut reassembler = Reassembler::default();
        reassembler
            .push(vec![TYPE_FRAGMENT, FLAG_FIRST, 0, 1])
            .unwrap();
        assert!(reassembler
            .push(vec![TYPE_FRAGMENT, FLAG_FIRST, 0, 1])
            .is_err());
        assert_eq!(reassembler.push(vec![4, 9]), Ok(Some(vec![4, 9])));
    }
}
