//! CPace, the balanced password-authenticated key exchange that Sendspin
//! 1.0's code-based pairing runs: the CPACE-X25519-SHA512 suite of
//! draft-irtf-cfrg-cpace-21 in initiator-responder mode, with explicit
//! mutual key confirmation.
//!
//! Both sides derive a generator from the password and the session id,
//! exchange one public share each, and end with the same intermediate
//! session key (ISK) only if they used the same password. The confirmation
//! tags let each side check that before anything secret is sent.

use curve25519_dalek::montgomery::MontgomeryPoint;
use hmac::{Hmac, Mac};
use num_bigint::BigUint;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// Length of a public share (an X25519 u-coordinate).
pub const SHARE_LEN: usize = 32;
/// Length of a confirmation tag (HMAC-SHA-512).
pub const TAG_LEN: usize = 64;
/// Length of the intermediate session key (SHA-512).
pub const ISK_LEN: usize = 64;

/// Domain separation of the generator string for the X25519 group.
const GENERATOR_LABEL: &[u8] = b"CPace255";
/// Domain separation of the intermediate session key.
const ISK_LABEL: &[u8] = b"CPace255_ISK";
/// Label of the key the confirmation tags are computed with.
const MAC_LABEL: &[u8] = b"CPaceMac";
/// Input block size of SHA-512, which the generator string pads towards.
const HASH_BLOCK_LEN: usize = 128;
/// Curve25519's Montgomery coefficient A.
const MONTGOMERY_A: u32 = 486_662;
/// The non-square Z that Elligator2 uses on Curve25519.
const ELLIGATOR_Z: u32 = 2;

/// The side of a CPace run. Sendspin's server is the initiator (A) and its
/// client the responder (B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

/// A CPace step that cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpaceError {
    #[error("a CPace share must be {SHARE_LEN} bytes, got {0}")]
    ShareLength(usize),
    #[error("the peer's CPace share is a low-order point")]
    LowOrderShare,
    #[error("the CPace generator is a low-order point")]
    LowOrderGenerator,
}

/// One side of a CPace run, after it computed its public share and
/// before it received the peer's.
pub struct Cpace {
    role: Role,
    sid: Vec<u8>,
    associated_data: Vec<u8>,
    scalar: [u8; 32],
    share: [u8; SHARE_LEN],
}

impl Cpace {
    /// Starts a run with a fresh random scalar. `password` is CPace's PRS,
    /// `channel_id` its CI, `sid` the session id, unique per run, and
    /// `associated_data` this side's AD.
    pub fn start(
        role: Role,
        password: &[u8],
        channel_id: &[u8],
        sid: &[u8],
        associated_data: &[u8],
    ) -> Result<Self, CpaceError> {
        let scalar: [u8; 32] = rand::random();
        Self::with_scalar(role, password, channel_id, sid, associated_data, scalar)
    }

    /// Starts a run with a given scalar, for known-answer tests.
    pub fn with_scalar(
        role: Role,
        password: &[u8],
        channel_id: &[u8],
        sid: &[u8],
        associated_data: &[u8],
        scalar: [u8; 32],
    ) -> Result<Self, CpaceError> {
        let generator = generator(password, channel_id, sid);
        let share =
            scalar_mult_checked(&scalar, &generator).ok_or(CpaceError::LowOrderGenerator)?;
        Ok(Self {
            role,
            sid: sid.to_vec(),
            associated_data: associated_data.to_vec(),
            scalar,
            share,
        })
    }

    /// Returns this side's public share (`Ya` or `Yb`).
    pub fn share(&self) -> [u8; SHARE_LEN] {
        self.share
    }

    /// Ends the run with the peer's share and associated data, deriving
    /// the session key and the confirmation key.
    pub fn finish(
        self,
        peer_share: &[u8],
        peer_associated_data: &[u8],
    ) -> Result<SessionKeys, CpaceError> {
        let peer_share: [u8; SHARE_LEN] = peer_share
            .try_into()
            .map_err(|_| CpaceError::ShareLength(peer_share.len()))?;
        let shared =
            scalar_mult_checked(&self.scalar, &peer_share).ok_or(CpaceError::LowOrderShare)?;
        let own = (self.share, self.associated_data);
        let peer = (peer_share, peer_associated_data.to_vec());
        let (initiator, responder) = match self.role {
            Role::Initiator => (own, peer),
            Role::Responder => (peer, own),
        };

        let mut isk_input = Vec::new();
        push_prefixed(&mut isk_input, ISK_LABEL);
        push_prefixed(&mut isk_input, &self.sid);
        push_prefixed(&mut isk_input, &shared);
        isk_input.extend(transcript_part(&initiator));
        isk_input.extend(transcript_part(&responder));
        let isk: [u8; ISK_LEN] = Sha512::digest(&isk_input).into();

        let mut hasher = Sha512::new();
        hasher.update(MAC_LABEL);
        hasher.update(&self.sid);
        hasher.update(isk);
        let mac_key: [u8; 64] = hasher.finalize().into();
        Ok(SessionKeys {
            role: self.role,
            isk,
            mac_key,
            initiator,
            responder,
        })
    }
}

/// The keys of a finished CPace run: the session key, and the key of the
/// tags that confirm both sides hold it.
pub struct SessionKeys {
    role: Role,
    isk: [u8; ISK_LEN],
    mac_key: [u8; 64],
    initiator: ([u8; SHARE_LEN], Vec<u8>),
    responder: ([u8; SHARE_LEN], Vec<u8>),
}

impl SessionKeys {
    /// Returns the intermediate session key. Sendspin feeds it to a hash
    /// with a label before use; it is never a key as it is.
    pub fn isk(&self) -> &[u8; ISK_LEN] {
        &self.isk
    }

    /// Returns this side's confirmation tag (`Ta` for the initiator, `Tb`
    /// for the responder).
    pub fn own_tag(&self) -> [u8; TAG_LEN] {
        match self.role {
            Role::Initiator => self.tag_of(&self.initiator),
            Role::Responder => self.tag_of(&self.responder),
        }
    }

    /// Checks the peer's confirmation tag in constant time. A peer that
    /// reflected this side's own share and data back fails, because its tag
    /// would equal this side's.
    pub fn verify_peer_tag(&self, tag: &[u8]) -> bool {
        if self.initiator == self.responder {
            return false;
        }
        let expected = match self.role {
            Role::Initiator => self.tag_of(&self.responder),
            Role::Responder => self.tag_of(&self.initiator),
        };
        tag.len() == TAG_LEN && bool::from(expected.ct_eq(tag))
    }

    fn tag_of(&self, side: &([u8; SHARE_LEN], Vec<u8>)) -> [u8; TAG_LEN] {
        let mut mac =
            Hmac::<Sha512>::new_from_slice(&self.mac_key).expect("HMAC takes a key of any length");
        mac.update(&transcript_part(side));
        mac.finalize().into_bytes().into()
    }
}

/// Appends `data` after its length as an unsigned LEB128 number.
fn push_prefixed(out: &mut Vec<u8>, data: &[u8]) {
    let mut length = data.len();
    loop {
        let low = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            out.push(low);
            break;
        }
        out.push(low | 0x80);
    }
    out.extend_from_slice(data);
}

/// Returns the length of `data` once `push_prefixed` wrote it.
fn prefixed_len(data: &[u8]) -> usize {
    let mut length_bytes = 1;
    let mut length = data.len() >> 7;
    while length > 0 {
        length_bytes += 1;
        length >>= 7;
    }
    length_bytes + data.len()
}

/// Returns one side's share and associated data, each length-prefixed.
fn transcript_part(side: &([u8; SHARE_LEN], Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    push_prefixed(&mut out, &side.0);
    push_prefixed(&mut out, &side.1);
    out
}

/// Builds the generator string: the label, the password, zero padding
/// that fills the first hash block, the channel id and the session id.
fn generator_string(password: &[u8], channel_id: &[u8], sid: &[u8]) -> Vec<u8> {
    let padding = HASH_BLOCK_LEN
        .saturating_sub(1)
        .saturating_sub(prefixed_len(password))
        .saturating_sub(prefixed_len(GENERATOR_LABEL));
    let mut out = Vec::new();
    push_prefixed(&mut out, GENERATOR_LABEL);
    push_prefixed(&mut out, password);
    push_prefixed(&mut out, &vec![0; padding]);
    push_prefixed(&mut out, channel_id);
    push_prefixed(&mut out, sid);
    out
}

/// Maps the password and session to a point: the first 32 bytes of the
/// generator string's SHA-512, read as a field element and mapped with
/// Elligator2.
fn generator(password: &[u8], channel_id: &[u8], sid: &[u8]) -> [u8; 32] {
    let digest = Sha512::digest(generator_string(password, channel_id, sid));
    let mut field_bytes = [0u8; 32];
    field_bytes.copy_from_slice(&digest[..32]);
    elligator2(field_bytes)
}

/// Elligator2 onto Curve25519, returning only the u-coordinate, which is
/// all X25519 needs.
///
/// NOTE: big-integer arithmetic is not constant time, so the time this
/// takes depends on the password-derived input.
fn elligator2(mut field_bytes: [u8; 32]) -> [u8; 32] {
    field_bytes[31] &= 0x7f;
    let prime = (BigUint::from(1u8) << 255u32) - BigUint::from(19u8);
    let a = BigUint::from(MONTGOMERY_A);
    let one = BigUint::from(1u8);
    let r = BigUint::from_bytes_le(&field_bytes) % &prime;

    // v = -A / (1 + Z r^2), where dividing by zero gives zero.
    let denominator = (&one + BigUint::from(ELLIGATOR_Z) * &r * &r) % &prime;
    let inverse = denominator.modpow(&(&prime - BigUint::from(2u8)), &prime);
    let v = ((&prime - &a) * inverse) % &prime;
    // The curve's right-hand side at v decides between v and -v - A.
    let rhs = (&v * &v * &v + &a * &v * &v + &v) % &prime;
    let legendre = rhs.modpow(&((&prime - &one) >> 1u32), &prime);
    let u = if legendre == &prime - &one {
        (&prime + &prime - &v - &a) % &prime
    } else if legendre == BigUint::from(0u8) {
        // Unreachable on Curve25519, where 1 + 2 r^2 never vanishes, but
        // defined by the draft as -A / 2.
        let half = one.clone() + (&prime - &one) / BigUint::from(2u8);
        ((&prime - &a) * half) % &prime
    } else {
        v
    };
    let mut out = [0u8; 32];
    let bytes = u.to_bytes_le();
    out[..bytes.len()].copy_from_slice(&bytes);
    out
}

/// X25519 of `scalar` and `point`, or `None` when the result is the
/// all-zero identity, which a low-order point gives.
fn scalar_mult_checked(scalar: &[u8; 32], point: &[u8; 32]) -> Option<[u8; 32]> {
    let product = MontgomeryPoint(*point).mul_clamped(*scalar).to_bytes();
    (product != [0u8; 32]).then_some(product)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    #[test]
    fn length_prefix_is_leb128() {
        let mut out = Vec::new();
        push_prefixed(&mut out, &[7; 3]);
        assert_eq!(out, [3, 7, 7, 7]);
        let mut long = Vec::new();
        push_prefixed(&mut long, &[0; 200]);
        assert_eq!(&long[..2], &[0xc8, 0x01]);
        assert_eq!(long.len(), 202);
        assert_eq!(prefixed_len(&[0; 200]), 202);
        assert_eq!(prefixed_len(&[]), 1);
    }

    #[test]
    fn generator_string_fills_first_block() {
        let string = generator_string(b"12345678", b"", b"sid");
        // Label and password with their prefixes, then the padding with its
        // own one-byte prefix, end one byte short of 128.
        let padded_prefix_end = 9 + 9 + 1 + (HASH_BLOCK_LEN - 1 - 9 - 9);
        assert_eq!(string[padded_prefix_end], 0, "empty channel id");
        assert_eq!(&string[padded_prefix_end + 1..], &[3, b's', b'i', b'd']);
    }

    #[test]
    fn matching_passwords_agree() {
        let server =
            Cpace::start(Role::Initiator, b"12345678", b"", b"session", b"server").unwrap();
        let client =
            Cpace::start(Role::Responder, b"12345678", b"", b"session", b"client").unwrap();
        let (server_share, client_share) = (server.share(), client.share());
        let server_keys = server.finish(&client_share, b"client").unwrap();
        let client_keys = client.finish(&server_share, b"server").unwrap();

        assert_eq!(server_keys.isk(), client_keys.isk());
        assert!(client_keys.verify_peer_tag(&server_keys.own_tag()));
        assert!(server_keys.verify_peer_tag(&client_keys.own_tag()));
        assert_ne!(server_keys.own_tag(), client_keys.own_tag());
    }

    #[test]
    fn different_passwords_fail_confirmation() {
        let server =
            Cpace::start(Role::Initiator, b"12345678", b"", b"session", b"server").unwrap();
        let client =
            Cpace::start(Role::Responder, b"12345679", b"", b"session", b"client").unwrap();
        let (server_share, client_share) = (server.share(), client.share());
        let server_keys = server.finish(&client_share, b"client").unwrap();
        let client_keys = client.finish(&server_share, b"server").unwrap();

        assert_ne!(server_keys.isk(), client_keys.isk());
        assert!(!client_keys.verify_peer_tag(&server_keys.own_tag()));
        assert!(!server_keys.verify_peer_tag(&client_keys.own_tag()));
    }

    #[test]
    fn bad_shares_are_rejected() {
        let side = || Cpace::start(Role::Initiator, b"1", b"", b"s", b"server").unwrap();
        assert_eq!(
            side().finish(&[1; 31], b"client").err(),
            Some(CpaceError::ShareLength(31))
        );
        assert_eq!(
            side().finish(&[0; 32], b"client").err(),
            Some(CpaceError::LowOrderShare)
        );
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(
            side().finish(&one, b"client").err(),
            Some(CpaceError::LowOrderShare)
        );
    }

    #[test]
    fn reflected_share_fails_confirmation() {
        let side = Cpace::start(Role::Initiator, b"1", b"", b"s", b"same").unwrap();
        let share = side.share();
        let keys = side.finish(&share, b"same").unwrap();
        assert!(!keys.verify_peer_tag(&keys.own_tag()));
    }

    #[test]
    fn wrong_tag_length_fails() {
        let server = Cpace::start(Role::Initiator, b"1", b"", b"s", b"server").unwrap();
        let client = Cpace::start(Role::Responder, b"1", b"", b"s", b"client").unwrap();
        let client_share = client.share();
        let keys = server.finish(&client_share, b"client").unwrap();
        assert!(!keys.verify_peer_tag(&[0; 63]));
    }

    /// A run computed by the `cpace` 0.1.0 Python package, which its
    /// authors checked against the draft's test vectors, with Sendspin's
    /// inputs: an 8-digit code, no channel id, a pairing session id and the
    /// server and client as associated data.
    #[test]
    fn known_answer_matches_python_cpace() {
        let mut sid = b"sendspin-pair-pake-v1".to_vec();
        sid.extend(0u8..32);
        sid.extend([0, 0, 0, 1, 0, 0, 0, 1]);
        let server =
            Cpace::with_scalar(Role::Initiator, b"12345678", b"", &sid, b"server", [1; 32])
                .unwrap();
        let client =
            Cpace::with_scalar(Role::Responder, b"12345678", b"", &sid, b"client", [2; 32])
                .unwrap();
        assert_eq!(
            hex(&server.share()),
            "ebb8034d98baa5852cb583f86fbc0fc2d3889f03cff03cb2e7993efdf2830b06"
        );
        assert_eq!(
            hex(&client.share()),
            "3491ddbd4e9f95671e6ffde1652a49c40ff20ea6aefc9e430dbf72e34cc5b56a"
        );

        let (server_share, client_share) = (server.share(), client.share());
        let server_keys = server.finish(&client_share, b"client").unwrap();
        let client_keys = client.finish(&server_share, b"server").unwrap();
        let isk = "5682ae90edb776ecca9a35fd49bf8add88d86f1ad356a99f0b4f3ae4db8e0c62\
                   f1917dd19a35168bcf896db99f635e5ba52e63d11887ca1dda5c982b735493dc";
        assert_eq!(hex(server_keys.isk()), isk);
        assert_eq!(hex(client_keys.isk()), isk);
        let server_tag = "0264cd5c3ba8b0ddacdbac3d649f55b7b45f33f34c931b455b62347558cee45a\
                          10925ea6b56af18858cb4a0485338799a8dbd6e9ffd552ce7763c1baa3e12d4e";
        let client_tag = "dfd5b832b1ed6cd987845f2118a55937e790199deebde7b94726a8533c57a7b6\
                          77d089278016e1ab10a47dbed99403da1d4a1e73dd04a2f612efc05db0184947";
        assert_eq!(hex(&server_keys.own_tag()), server_tag);
        assert_eq!(hex(&client_keys.own_tag()), client_tag);
    }

    #[test]
    fn elligator_output_is_reduced() {
        for fill in [0u8, 0x55, 0xff] {
            let u = elligator2([fill; 32]);
            assert!(u[31] < 0x80, "u of {fill:#x} is {}", hex(&u));
        }
    }
}
