//! Wire dialects: how typed messages become WebSocket frames.
//!
//! The engine speaks one set of [`Message`]s. Each dialect is a
//! [`WireCodec`] chosen per connection that maps those messages to the
//! frames of one wire format, so sessions, the server and the player never
//! see the difference between dialects.

mod resonate;
pub mod sendspin;
mod sendspin_v1;

use std::fmt;
use std::str::FromStr;

pub use resonate::ResonateCodec;
pub use sendspin::SendspinCodec;
pub use sendspin_v1::SendspinV1Codec;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::protocol::{BinaryFrame, Message};

/// A wire format of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Sendspin v1 in cleartext: JSON text frames, binary frames with a
    /// 9-byte header.
    SendspinV1,
    /// Legacy Resonate (aioresonate 0.13.2): unversioned roles and binary
    /// frames with a u64 timestamp, translated to the v1 messages.
    Resonate,
    /// Sendspin 1.0: a Noise handshake, then every message encrypted in a
    /// binary frame.
    Sendspin,
}

impl Dialect {
    /// Returns the WebSocket path servers of this dialect listen on by
    /// default.
    pub fn default_path(self) -> &'static str {
        match self {
            Dialect::SendspinV1 | Dialect::Sendspin => "/sendspin",
            Dialect::Resonate => "/resonate",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::SendspinV1 => "sendspin-v1",
            Dialect::Resonate => "resonate",
            Dialect::Sendspin => "sendspin",
        }
    }

    /// Returns whether connections of this dialect start with a handshake
    /// that yields their codec ([`SendspinCodec`]).
    pub fn is_encrypted(self) -> bool {
        self == Dialect::Sendspin
    }

    /// Creates the per-connection codec of a cleartext dialect.
    ///
    /// # Panics
    ///
    /// For [`Dialect::Sendspin`], whose codec holds the keys of its Noise
    /// handshake and comes from [`crate::noise`] instead.
    pub fn codec(self) -> Box<dyn WireCodec> {
        match self {
            Dialect::SendspinV1 => Box::new(SendspinV1Codec),
            Dialect::Resonate => Box::<ResonateCodec>::default(),
            Dialect::Sendspin => panic!("the Sendspin 1.0 codec comes from its Noise handshake"),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dialect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sendspin-v1" | "v1" => Ok(Dialect::SendspinV1),
            "resonate" => Ok(Dialect::Resonate),
            "sendspin" => Ok(Dialect::Sendspin),
            other => Err(format!(
                "unknown dialect {other:?}; expected sendspin, sendspin-v1 or resonate"
            )),
        }
    }
}

/// Tells the cleartext dialect of a `client/hello` from its shape: Sendspin
/// v1 names its roles with a version (`player@v1`) and puts player support
/// under `player@v1_support`, legacy Resonate names them bare (`player`) and
/// uses `player_support`. Returns `None` for text that is not a
/// `client/hello` or names no role.
pub fn dialect_of_hello(text: &str) -> Option<Dialect> {
    let message: serde_json::Value = serde_json::from_str(text).ok()?;
    if message.get("type")?.as_str()? != "client/hello" {
        return None;
    }
    let payload = message.get("payload")?;
    let roles = payload.get("supported_roles")?.as_array()?;
    let versioned = roles
        .iter()
        .filter_map(|role| role.as_str())
        .any(|role| role.contains('@'));
    if versioned || payload.get("player@v1_support").is_some() {
        return Some(Dialect::SendspinV1);
    }
    let bare = roles
        .iter()
        .filter_map(|role| role.as_str())
        .any(|role| !role.is_empty());
    (bare || payload.get("player_support").is_some()).then_some(Dialect::Resonate)
}

/// An outgoing item of a session: a JSON message or a binary frame.
///
/// `client/hello` makes the message variant large; it is sent once per
/// session, so boxing it would only add an allocation to every other send.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Outgoing {
    Message(Message),
    Binary(BinaryFrame),
}

/// The result of decoding one received frame.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    Message(Message),
    Binary(BinaryFrame),
    /// A well-formed message of a type this dialect does not define; it is
    /// logged and ignored.
    Unknown {
        type_name: String,
    },
    /// A frame the codec used up itself, such as a fragment of a message
    /// not yet complete.
    Consumed,
    /// The server dropped its pairing record of this client: a Sendspin
    /// 1.0 `server/unpair` on a session keyed by that record. The client
    /// removes its own record, sends `client/goodbye` (`unpaired`) and
    /// closes.
    Unpaired,
}

/// A frame that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("text frame is not valid JSON: {0}")]
    InvalidJson(serde_json::Error),
    #[error("message has no string \"type\" field")]
    MissingType,
    #[error("invalid payload of {type_name}: {source}")]
    InvalidPayload {
        type_name: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    ShortBinary(#[from] crate::protocol::binary::ShortFrame),
    /// The encrypted transport failed: authentication, fragment rules or a
    /// cleartext frame where only encrypted ones may come.
    #[error("{0}")]
    Transport(String),
}

/// Maps typed messages to frames and back for one connection.
///
/// Codecs take `&mut self` because stateful dialects (encrypted transports)
/// keep per-connection state.
pub trait WireCodec: Send {
    fn dialect(&self) -> Dialect;

    /// Encodes an outgoing item, or returns `None` for a message this
    /// dialect has no form of; the session then leaves it out.
    fn encode(&mut self, outgoing: &Outgoing) -> Option<WsMessage>;

    /// Encodes an outgoing item into the frames that carry it: none for a
    /// message this dialect has no form of, several when it is fragmented.
    fn encode_frames(&mut self, outgoing: &Outgoing) -> Vec<WsMessage> {
        self.encode(outgoing).into_iter().collect()
    }

    /// Decodes a text or binary frame. Control frames never reach a codec.
    fn decode(&mut self, frame: WsMessage) -> Result<Incoming, DecodeError>;

    /// Returns the frames a decode produced for the peer, which go out
    /// before any other: Noise message 2 of an in-band re-handshake, and the
    /// frames held back while it ran. Cleartext dialects have none.
    fn take_replies(&mut self) -> Vec<WsMessage> {
        Vec::new()
    }

    /// Checks the codec's own deadlines, such as the one for the peer's
    /// part of a re-handshake; an error closes the session.
    fn check_timers(&mut self) -> Result<(), DecodeError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_dialect_follows_role_names() {
        let v1 = r#"{"type":"client/hello","payload":{"client_id":"a","name":"A","version":1,
            "supported_roles":["player@v1","metadata@v1"],"player@v1_support":{}}}"#;
        assert_eq!(dialect_of_hello(v1), Some(Dialect::SendspinV1));
        let legacy = r#"{"type":"client/hello","payload":{"client_id":"a","name":"A","version":1,
            "supported_roles":["player","metadata"],"player_support":{}}}"#;
        assert_eq!(dialect_of_hello(legacy), Some(Dialect::Resonate));
    }

    #[test]
    fn hello_dialect_needs_a_hello_with_roles() {
        assert_eq!(dialect_of_hello("not json"), None);
        assert_eq!(
            dialect_of_hello(r#"{"type":"client/time","payload":{"client_transmitted":1}}"#),
            None
        );
        assert_eq!(
            dialect_of_hello(r#"{"type":"client/hello","payload":{"supported_roles":[]}}"#),
            None
        );
        assert_eq!(
            dialect_of_hello(r#"{"type":"client/hello","payload":{}}"#),
            None
        );
    }
}
