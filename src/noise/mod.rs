//! Sendspin 1.0's encrypted transport: identities, the cleartext init
//! exchange, the Noise `KKpsk2` handshake and fragmentation.
//!
//! The server is always the Noise initiator and the client the responder,
//! whichever side opened the WebSocket. The PSK is mixed in at the end of
//! the second handshake message, so the first message's payload, which
//! names the PSK by its id, is readable without it.

pub mod cpace;
pub mod fragment;
pub mod handshake;
pub mod identity;
pub mod pairing;
pub mod pairing_code;

use sha2::{Digest, Sha256};

pub use handshake::{accept, connect, Established, HandshakeError, PskChoice};
pub use identity::{
    default_state_dir, ClientIdSet, Identity, PairingStore, StateError, APPROVALS, PENDING_UNPAIRS,
};

/// Length of a PSK in bytes.
pub const PSK_LEN: usize = 32;

/// Core message format version of `client/init` and `server/init`.
pub const CORE_VERSION: u64 = 1;

/// Label hashed in front of a PSK to derive its id.
const PSK_ID_LABEL: &[u8] = b"sendspin-psk-id-v1";

/// Input hashed to derive the Sentinel PSK.
const SENTINEL_LABEL: &[u8] = b"sendspin-sentinel-psk-v1";

/// Returns the Sentinel PSK: SHA-256 of `sendspin-sentinel-psk-v1`, a
/// public constant used whenever no other PSK applies.
pub fn sentinel_psk() -> [u8; PSK_LEN] {
    Sha256::digest(SENTINEL_LABEL).into()
}

/// Returns the id of `psk`: base64url of SHA-256(`sendspin-psk-id-v1` || PSK).
pub fn psk_id(psk: &[u8; PSK_LEN]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(PSK_ID_LABEL);
    hasher.update(psk);
    identity::encode_id(&hasher.finalize())
}

/// The role of the PSK named in Noise message 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PskCategory {
    /// A long-term PSK from a finished pairing (`lt`).
    LongTerm,
    /// A pairing PSK from a pairing token (`pr`).
    Pairing,
    /// The public Sentinel PSK (`sn`).
    Sentinel,
}

impl PskCategory {
    pub fn code(self) -> &'static str {
        match self {
            PskCategory::LongTerm => "lt",
            PskCategory::Pairing => "pr",
            PskCategory::Sentinel => "sn",
        }
    }

    pub fn from_code(code: &str) -> Option<PskCategory> {
        match code {
            "lt" => Some(PskCategory::LongTerm),
            "pr" => Some(PskCategory::Pairing),
            "sn" => Some(PskCategory::Sentinel),
            _ => None,
        }
    }
}

/// A Noise cipher suite of Sendspin 1.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    ChaChaPoly,
    AesGcm,
}

impl Suite {
    pub const ALL: [Suite; 2] = [Suite::ChaChaPoly, Suite::AesGcm];

    /// Returns the name used in `client/init`.
    pub fn as_str(self) -> &'static str {
        match self {
            Suite::ChaChaPoly => "25519_ChaChaPoly_SHA256",
            Suite::AesGcm => "25519_AESGCM_SHA256",
        }
    }

    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|suite| suite.as_str() == name)
    }

    /// Returns the full Noise protocol name with the `KKpsk2` pattern.
    pub fn noise_params(self) -> snow::params::NoiseParams {
        format!("Noise_KKpsk2_{}", self.as_str())
            .parse()
            .expect("both suites are valid Noise protocol names")
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_matches_the_published_constants() {
        let sentinel = sentinel_psk();
        let hex: String = sentinel.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "1b5e24dbc1aed95fc2a5a338a90c05df44bd10f5ec1f4cd66cbf86272767b9d3"
        );
        assert_eq!(
            psk_id(&sentinel),
            "GFsV9tLaSQm9HcFWpKsgYQOr7wFTvNUtkmFwuVz3zoo"
        );
    }

    #[test]
    fn category_codes_round_trip() {
        for category in [
            PskCategory::LongTerm,
            PskCategory::Pairing,
            PskCategory::Sentinel,
        ] {
            assert_eq!(PskCategory::from_code(category.code()), Some(category));
        }
        assert_eq!(PskCategory::from_code("xx"), None);
    }
}
