//! The values of Sendspin 1.0's code-based pairing: static and dynamic
//! pairing codes, the commitment that binds a dynamic code to the Noise
//! handshake, the CPace session id, and the sealing of secrets under the
//! CPace output.

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use num_bigint::BigUint;
use sha2::{Digest, Sha256};

use super::pairing::QR_CODE_LEN;
use super::Suite;

/// Digits of a static pairing code.
pub const STATIC_CODE_DIGITS: usize = 8;
/// Digits of a dynamic pairing code in the `digits` format.
pub const DYNAMIC_CODE_DIGITS: usize = 6;
/// Length of a sealed 32-byte value: the ciphertext and its 16-byte tag.
pub const SEALED_LEN: usize = 48;

const COMMIT_LABEL: &[u8] = b"sendspin-pair-commit-v1";
const CODE_LABEL: &[u8] = b"sendspin-pairing-code-derive-v1";
const PAKE_SID_LABEL: &[u8] = b"sendspin-pair-pake-v1";
/// Label of the key that seals the new long-term PSK.
pub const PSK_WRAP_LABEL: &[u8] = b"sendspin-pair-psk-wrap-v1";
/// Label of the key that seals the dynamic flow's `nonce_B`.
pub const NONCE_WRAP_LABEL: &[u8] = b"sendspin-pair-nonce-wrap-v1";

/// A static pairing code: exactly eight ASCII digits.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCode(String);

impl StaticCode {
    /// Parses an operator-typed code, dropping spaces and hyphens.
    pub fn parse(text: &str) -> Result<Self, String> {
        let digits = strip_separators(text);
        if digits.len() != STATIC_CODE_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "invalid static pairing code {text:?}: expected {STATIC_CODE_DIGITS} digits, such as 1234-5678"
            ));
        }
        Ok(Self(digits))
    }

    /// Draws a code uniformly from the CSPRNG.
    pub fn generate() -> Self {
        let value = rand::random_range(0..100_000_000u32);
        Self(format!("{value:08}"))
    }

    /// Returns the digits, which are CPace's password.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// Returns the code as presented to people: `1234-5678`.
    pub fn grouped(&self) -> String {
        format!("{}-{}", &self.0[..4], &self.0[4..])
    }
}

impl std::fmt::Debug for StaticCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticCode(..)")
    }
}

/// Loads the client's static pairing code from `path`, creating one from
/// the CSPRNG and storing it (owner-readable only) when the file does not
/// exist. `replace` stores an operator-chosen code instead.
pub fn load_or_create_static_code(
    path: &std::path::Path,
    replace: Option<&StaticCode>,
) -> Result<StaticCode, super::StateError> {
    if let Some(code) = replace {
        super::identity::write_private(path, code.digits().as_bytes())?;
        return Ok(code.clone());
    }
    match std::fs::read_to_string(path) {
        Ok(text) => StaticCode::parse(&text).map_err(|reason| super::StateError::Invalid {
            path: path.to_path_buf(),
            what: "static pairing code file",
            reason,
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let code = StaticCode::generate();
            if !super::identity::create_private(path, code.digits().as_bytes())? {
                // Another process created it first: use that one.
                return load_or_create_static_code(path, None);
            }
            Ok(code)
        }
        Err(source) => Err(super::StateError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Removes the spaces and hyphens people type between groups of a code.
pub fn strip_separators(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect()
}

/// Returns `commit_B`: SHA-256 of the commit label and `nonce_B`.
pub fn commit(nonce_b: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(COMMIT_LABEL);
    hasher.update(nonce_b);
    hasher.finalize().into()
}

/// Returns the digest a dynamic code is derived from: SHA-256 of the label,
/// the Noise handshake hash and both nonces.
pub fn code_digest(handshake_hash: &[u8], nonce_a: &[u8; 32], nonce_b: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(CODE_LABEL);
    hasher.update(handshake_hash);
    hasher.update(nonce_a);
    hasher.update(nonce_b);
    hasher.finalize().into()
}

/// Returns the `digits` form of a dynamic code: the digest as a big-endian
/// number modulo 10^6, zero-padded to six digits.
pub fn digits_code(digest: &[u8; 32]) -> String {
    let value = BigUint::from_bytes_be(digest) % BigUint::from(1_000_000u32);
    format!("{value:0>width$}", width = DYNAMIC_CODE_DIGITS)
}

/// Returns the `qr_code` form of a dynamic code: the digest's first 24 bytes.
pub fn qr_code(digest: &[u8; 32]) -> [u8; QR_CODE_LEN] {
    digest[..QR_CODE_LEN]
        .try_into()
        .expect("a digest has 32 bytes")
}

/// Returns CPace's session id: the label, the handshake hash, then the
/// pairing index and the round, each as a big-endian u32.
pub fn pake_sid(handshake_hash: &[u8], pairing_index: u32, round: u32) -> Vec<u8> {
    let mut sid = PAKE_SID_LABEL.to_vec();
    sid.extend_from_slice(handshake_hash);
    sid.extend_from_slice(&pairing_index.to_be_bytes());
    sid.extend_from_slice(&round.to_be_bytes());
    sid
}

/// Returns the key that seals one field: SHA-256 of `label`, the CPace
/// session id and the CPace ISK.
pub fn wrap_key(label: &[u8], sid: &[u8], isk: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(label);
    hasher.update(sid);
    hasher.update(isk);
    hasher.finalize().into()
}

/// Seals a 32-byte value with the connection suite's AEAD under `key`, an
/// all-zero nonce and no associated data. Each key seals one value only.
pub fn seal(suite: Suite, key: &[u8; 32], value: &[u8; 32]) -> [u8; SEALED_LEN] {
    let nonce = [0u8; 12];
    let sealed = match suite {
        Suite::ChaChaPoly => {
            ChaCha20Poly1305::new(key.into()).encrypt((&nonce).into(), value.as_slice())
        }
        Suite::AesGcm => Aes256Gcm::new(key.into()).encrypt((&nonce).into(), value.as_slice()),
    };
    sealed
        .expect("sealing 32 bytes cannot fail")
        .try_into()
        .expect("32 bytes seal to 48")
}

/// Opens a value sealed by `seal`, or returns `None` when it does not
/// authenticate.
pub fn open(suite: Suite, key: &[u8; 32], sealed: &[u8]) -> Option<[u8; 32]> {
    let nonce = [0u8; 12];
    let opened = match suite {
        Suite::ChaChaPoly => ChaCha20Poly1305::new(key.into()).decrypt((&nonce).into(), sealed),
        Suite::AesGcm => Aes256Gcm::new(key.into()).decrypt((&nonce).into(), sealed),
    };
    opened.ok()?.try_into().ok()
}

/// Decodes the base64url payload field `field` of a pairing message.
pub fn payload_field(message: &serde_json::Value, field: &str) -> Result<Vec<u8>, PairingError> {
    use base64::Engine;
    let type_name = message.get("type").and_then(serde_json::Value::as_str);
    let text = message
        .pointer(&format!("/payload/{field}"))
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            PairingError::Protocol(format!(
                "missing {field} in {}",
                type_name.unwrap_or("a message")
            ))
        })?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|err| PairingError::Protocol(format!("{field} is not base64url: {err}")))
}

/// Reasons a pairing attempt ends without a record.
#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    #[error(transparent)]
    Handshake(#[from] super::HandshakeError),
    #[error("the peer aborted the pairing with reason {reason:?}")]
    Aborted { reason: String },
    #[error("the peer's key confirmation did not verify, so the two sides used different codes")]
    CodeMismatch,
    #[error("the operator cancelled the pairing")]
    Cancelled,
    #[error("pairing protocol error: {0}")]
    Protocol(String),
    #[error("cannot store the pairing record: {0}")]
    Store(String),
    #[error("the client held the attempt back for {0:?}; open its pairing window and try again")]
    PendingTooLong(std::time::Duration),
    #[error("no pairing started within {:.0} s; start the pairing on the server while this waits", .0.as_secs_f64())]
    NotStarted(std::time::Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_code_parses_grouped_input() {
        for text in ["12345678", "1234-5678", " 1234 5678 "] {
            let code = StaticCode::parse(text).unwrap();
            assert_eq!(code.digits(), "12345678", "{text}");
            assert_eq!(code.grouped(), "1234-5678", "{text}");
        }
    }

    #[test]
    fn static_code_rejects_bad_input() {
        for text in ["", "1234567", "123456789", "1234-567a"] {
            let err = StaticCode::parse(text).unwrap_err();
            assert!(err.contains("expected 8 digits"), "{text}: {err}");
        }
    }

    #[test]
    fn generated_static_codes_parse() {
        for _ in 0..100 {
            let code = StaticCode::generate();
            assert_eq!(StaticCode::parse(&code.grouped()).unwrap(), code);
        }
    }

    #[test]
    fn static_code_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairing-code.txt");
        let first = load_or_create_static_code(&path, None).unwrap();
        assert_eq!(load_or_create_static_code(&path, None).unwrap(), first);
        let chosen = StaticCode::parse("8765-4321").unwrap();
        assert_eq!(
            load_or_create_static_code(&path, Some(&chosen)).unwrap(),
            chosen
        );
        assert_eq!(load_or_create_static_code(&path, None).unwrap(), chosen);
        std::fs::write(&path, "12").unwrap();
        let err = load_or_create_static_code(&path, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("static pairing code file"), "{err}");
    }

    #[test]
    fn digits_code_reduces_big_endian() {
        let mut digest = [0u8; 32];
        digest[31] = 7;
        assert_eq!(digits_code(&digest), "000007");
        // 2^256 - 1 = ...639935 (mod 10^6).
        assert_eq!(digits_code(&[0xff; 32]), "639935");
        digest[29] = 0x0f;
        digest[30] = 0x42;
        digest[31] = 0x40;
        assert_eq!(digits_code(&digest), "000000", "10^6 itself");
    }

    #[test]
    fn pake_sid_layout() {
        let sid = pake_sid(&[9; 32], 2, 3);
        assert_eq!(&sid[..21], b"sendspin-pair-pake-v1");
        assert_eq!(&sid[21..53], &[9; 32]);
        assert_eq!(&sid[53..], &[0, 0, 0, 2, 0, 0, 0, 3]);
    }

    #[test]
    fn sealed_values_open_with_their_key_only() {
        for suite in Suite::ALL {
            let key = wrap_key(PSK_WRAP_LABEL, b"sid", &[1; 64]);
            let sealed = seal(suite, &key, &[5; 32]);
            assert_eq!(open(suite, &key, &sealed), Some([5; 32]), "{suite}");

            let other = wrap_key(NONCE_WRAP_LABEL, b"sid", &[1; 64]);
            assert_eq!(open(suite, &other, &sealed), None, "{suite}: other key");
            let mut tampered = sealed;
            tampered[0] ^= 1;
            assert_eq!(open(suite, &key, &tampered), None, "{suite}: tampered");
            assert_eq!(open(suite, &key, &sealed[..47]), None, "{suite}: cut");
        }
    }

    #[test]
    fn suites_seal_differently() {
        let key = [3; 32];
        assert_ne!(
            seal(Suite::ChaChaPoly, &key, &[0; 32]),
            seal(Suite::AesGcm, &key, &[0; 32])
        );
    }

    #[test]
    fn commit_binds_nonce() {
        assert_ne!(commit(&[0; 32]), commit(&[1; 32]));
        let digest = code_digest(&[1; 32], &[2; 32], &[3; 32]);
        assert_ne!(digest, code_digest(&[1; 32], &[2; 32], &[4; 32]));
        assert_eq!(&qr_code(&digest)[..], &digest[..24]);
    }
}
