//! Pairing by pairing PSK: the pairing token that carries a client's key and
//! pairing PSK to the server, and the client's persisted pairing PSK.
//!
//! A pairing token is `SP:`, a version character and the base32 (RFC 4648,
//! no padding) of its payload with every `2` written as `9`. Version 0
//! carries the 32-byte client public key followed by the 32-byte pairing PSK.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::identity::{encode_id, write_private, StateError, KEY_LEN};
use super::PSK_LEN;

const TOKEN_PREFIX: &str = "SP:";
const PSK_TOKEN_VERSION: char = '0';
const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A decoded version-0 pairing token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PskToken {
    /// The client's `client_id` (base64url public key).
    pub client_id: String,
    pub pairing_psk: [u8; PSK_LEN],
}

/// Encodes a version-0 pairing token.
pub fn encode_token(client_key: &[u8; KEY_LEN], pairing_psk: &[u8; PSK_LEN]) -> String {
    let payload = [client_key.as_slice(), pairing_psk.as_slice()].concat();
    let mut body = String::new();
    for chunk in payload.chunks(5) {
        let mut block = [0u8; 5];
        block[..chunk.len()].copy_from_slice(chunk);
        let bits = block
            .iter()
            .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte));
        let symbols = (chunk.len() * 8).div_ceil(5);
        for index in 0..symbols {
            let value = (bits >> (35 - 5 * index)) & 0x1f;
            body.push(BASE32_ALPHABET[value as usize] as char);
        }
    }
    format!(
        "{TOKEN_PREFIX}{PSK_TOKEN_VERSION}{}",
        body.replace('2', "9")
    )
}

/// Decodes a version-0 pairing token, leniently: surrounding whitespace,
/// lower case and a missing `SP:` prefix are accepted, and payload bytes
/// past the 64 that version 0 defines are ignored.
pub fn decode_token(text: &str) -> Result<PskToken, String> {
    let invalid = |reason: &str| format!("invalid pairing token {text:?}: {reason}");
    let upper = text.trim().to_ascii_uppercase();
    let rest = upper.strip_prefix(TOKEN_PREFIX).unwrap_or(&upper);
    let mut chars = rest.chars();
    match chars.next() {
        Some(PSK_TOKEN_VERSION) => {}
        Some(other) => {
            return Err(invalid(&format!(
                "version {other:?} is not 0 (a pairing PSK token)"
            )))
        }
        None => return Err(invalid("it is empty")),
    }

    // Base32 decoding: 5 bits per symbol, a byte out whenever 8 are pending.
    let mut bits = 0u64;
    let mut pending_bits = 0u32;
    let mut payload = Vec::new();
    for symbol in chars.map(|c| if c == '9' { '2' } else { c }) {
        let value = BASE32_ALPHABET
            .iter()
            .position(|&a| a as char == symbol)
            .ok_or_else(|| invalid(&format!("{symbol:?} is not a base32 character")))?;
        bits = (bits << 5) | value as u64;
        pending_bits += 5;
        if pending_bits >= 8 {
            pending_bits -= 8;
            payload.push((bits >> pending_bits) as u8);
            bits &= (1 << pending_bits) - 1;
        }
    }

    if payload.len() < KEY_LEN + PSK_LEN {
        return Err(invalid(&format!(
            "{} payload bytes, expected {}",
            payload.len(),
            KEY_LEN + PSK_LEN
        )));
    }
    let pairing_psk: [u8; PSK_LEN] = payload[KEY_LEN..KEY_LEN + PSK_LEN]
        .try_into()
        .expect("length checked");
    Ok(PskToken {
        client_id: encode_id(&payload[..KEY_LEN]),
        pairing_psk,
    })
}

/// Loads the client's pairing PSK from `path`, creating and storing a new
/// one from the CSPRNG when the file does not exist. The PSK is kept across
/// restarts, as a pairing does not use it up.
pub fn load_or_create_pairing_psk(path: &Path) -> Result<[u8; PSK_LEN], StateError> {
    match std::fs::read_to_string(path) {
        Ok(text) => URL_SAFE_NO_PAD
            .decode(text.trim())
            .ok()
            .and_then(|bytes| <[u8; PSK_LEN]>::try_from(bytes).ok())
            .ok_or_else(|| StateError::Invalid {
                path: path.to_path_buf(),
                what: "pairing PSK file",
                reason: "not 32 bytes in base64url".into(),
            }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut psk = [0u8; PSK_LEN];
            rand::fill(&mut psk);
            write_private(path, encode_id(&psk).as_bytes())?;
            Ok(psk)
        }
        Err(source) => Err(StateError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference vector of the Sendspin pairing spec.
    const REFERENCE: &str = "SP:0AAAQEAYEAUDAOCAJBIFQYDIOB4IBCEQTCQKRMFYYDENBWHA5DYP6BYPC4PSOLZXH5DU6V97M5XXO74HR6LZ7J5PW674PT6X37T6757Y";

    fn reference_inputs() -> ([u8; 32], [u8; 32]) {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let psk: [u8; 32] = std::array::from_fn(|i| 0xe0 + i as u8);
        (key, psk)
    }

    #[test]
    fn token_matches_reference_vector() {
        let (key, psk) = reference_inputs();
        assert_eq!(encode_token(&key, &psk), REFERENCE);
    }

    #[test]
    fn token_decodes_leniently() {
        let (key, psk) = reference_inputs();
        for text in [
            REFERENCE.to_string(),
            format!("  {}  ", REFERENCE.to_lowercase()),
            REFERENCE[3..].to_string(),
        ] {
            let token = decode_token(&text).unwrap();
            assert_eq!(token.client_id, encode_id(&key), "{text}");
            assert_eq!(token.pairing_psk, psk, "{text}");
        }
    }

    #[test]
    fn bad_tokens_are_rejected() {
        for text in ["", "SP:", "SP:1AAAA", "SP:0AAAA", "SP:0AA!A"] {
            let err = decode_token(text).unwrap_err();
            assert!(err.contains("invalid pairing token"), "{text}: {err}");
        }
    }

    #[test]
    fn pairing_psk_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairing-psk.txt");
        let first = load_or_create_pairing_psk(&path).unwrap();
        assert_eq!(load_or_create_pairing_psk(&path).unwrap(), first);
    }
}
