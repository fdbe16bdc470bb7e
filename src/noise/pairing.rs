//! Pairing tokens, which carry a client's key and pairing PSK (version 0)
//! or a dynamic pairing code (version 1) to the server, and the client's
//! persisted pairing PSK.
//!
//! A pairing token is `SP:`, a version character and the base32 (RFC 4648,
//! no padding) of its payload with every `2` written as `9`. Version 0
//! carries the 32-byte client public key followed by the 32-byte pairing PSK.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::identity::{create_private, encode_id, StateError, KEY_LEN};
use super::PSK_LEN;

const TOKEN_PREFIX: &str = "SP:";
const PSK_TOKEN_VERSION: char = '0';
const CODE_TOKEN_VERSION: char = '1';
/// Length of a dynamic pairing code in the `qr_code` format.
pub const QR_CODE_LEN: usize = 24;
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
    encode_payload(
        PSK_TOKEN_VERSION,
        &[client_key.as_slice(), pairing_psk.as_slice()].concat(),
    )
}

/// Decodes a version-0 pairing token, leniently: surrounding whitespace,
/// lower case and a missing `SP:` prefix are accepted, and payload bytes
/// past the 64 that version 0 defines are ignored.
pub fn decode_token(text: &str) -> Result<PskToken, String> {
    let payload = decode_payload(
        text,
        PSK_TOKEN_VERSION,
        KEY_LEN + PSK_LEN,
        "a pairing PSK token",
    )?;
    let pairing_psk: [u8; PSK_LEN] = payload[KEY_LEN..KEY_LEN + PSK_LEN]
        .try_into()
        .expect("length checked");
    Ok(PskToken {
        client_id: encode_id(&payload[..KEY_LEN]),
        pairing_psk,
    })
}

/// Encodes a version-1 pairing token: a dynamic pairing code in the
/// `qr_code` format.
pub fn encode_code_token(code: &[u8; QR_CODE_LEN]) -> String {
    encode_payload(CODE_TOKEN_VERSION, code)
}

/// Decodes a version-1 pairing token as leniently as `decode_token`,
/// returning the 24-byte pairing code it carries.
pub fn decode_code_token(text: &str) -> Result<[u8; QR_CODE_LEN], String> {
    let payload = decode_payload(
        text,
        CODE_TOKEN_VERSION,
        QR_CODE_LEN,
        "a pairing code token",
    )?;
    Ok(payload[..QR_CODE_LEN].try_into().expect("length checked"))
}

/// Writes `SP:`, the version and the base32 of `payload` with every `2`
/// written as `9`.
fn encode_payload(version: char, payload: &[u8]) -> String {
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
    format!("{TOKEN_PREFIX}{version}{}", body.replace('2', "9"))
}

/// Reads the payload of a token of `version` that must carry at least
/// `min_len` bytes; `kind` names the token in errors.
fn decode_payload(
    text: &str,
    version: char,
    min_len: usize,
    kind: &str,
) -> Result<Vec<u8>, String> {
    let invalid = |reason: &str| format!("invalid pairing token {text:?}: {reason}");
    let upper = text.trim().to_ascii_uppercase();
    let rest = upper.strip_prefix(TOKEN_PREFIX).unwrap_or(&upper);
    let mut chars = rest.chars();
    match chars.next() {
        Some(found) if found == version => {}
        Some(other) => {
            return Err(invalid(&format!(
                "version {other:?} is not {version} ({kind})"
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
    if payload.len() < min_len {
        return Err(invalid(&format!(
            "{} payload bytes, expected {min_len}",
            payload.len()
        )));
    }
    Ok(payload)
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
            if !create_private(path, encode_id(&psk).as_bytes())? {
                // Another process created it first: use that one.
                return load_or_create_pairing_psk(path);
            }
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
    fn code_token_matches_reference_vector() {
        let code: [u8; QR_CODE_LEN] = std::array::from_fn(|i| 0xe0 + i as u8);
        let reference = "SP:14DQ6FY7E4XTOP9HJ5LV6Z3PO57YPD4XT6T97N5Y";
        assert_eq!(encode_code_token(&code), reference);
        assert_eq!(decode_code_token(&reference.to_lowercase()).unwrap(), code);
    }

    #[test]
    fn token_versions_are_not_mixed() {
        let err = decode_code_token(REFERENCE).unwrap_err();
        assert!(err.contains("version '0' is not 1"), "{err}");
        let err = decode_token("SP:14DQ6FY7E4XTOP9HJ5LV6Z3PO57YPD4XT6T97N5Y").unwrap_err();
        assert!(err.contains("version '1' is not 0"), "{err}");
    }

    #[test]
    fn pairing_psk_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairing-psk.txt");
        let first = load_or_create_pairing_psk(&path).unwrap();
        assert_eq!(load_or_create_pairing_psk(&path).unwrap(), first);
    }
}
