//! Sendspin v1 cleartext: `{"type", "payload"}` JSON in text frames and
//! binary frames of a type byte plus an i64 big-endian timestamp.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::{DecodeError, Dialect, Incoming, Outgoing, WireCodec};
use crate::protocol::{BinaryFrame, Message};

/// The stateless codec of the v1 cleartext dialect.
#[derive(Clone, Copy, Debug, Default)]
pub struct SendspinV1Codec;

impl WireCodec for SendspinV1Codec {
    fn dialect(&self) -> Dialect {
        Dialect::SendspinV1
    }

    fn encode(&mut self, outgoing: &Outgoing) -> Option<WsMessage> {
        Some(match outgoing {
            Outgoing::Message(message) => WsMessage::text(encode_message(message)),
            Outgoing::Binary(frame) => WsMessage::binary(frame.to_bytes()),
        })
    }

    fn decode(&mut self, frame: WsMessage) -> Result<Incoming, DecodeError> {
        match frame {
            WsMessage::Text(text) => decode_text(text.as_str()),
            WsMessage::Binary(bytes) => Ok(Incoming::Binary(BinaryFrame::parse_shared(bytes)?)),
            // Control frames are handled by the transport.
            _ => Ok(Incoming::Unknown {
                type_name: "control frame".to_string(),
            }),
        }
    }
}

/// A JSON envelope: the message type and its payload.
#[derive(Serialize)]
struct Envelope<'a, T> {
    #[serde(rename = "type")]
    type_name: &'a str,
    payload: &'a T,
}

/// Serializes `payload` inside a `{"type", "payload"}` envelope in one
/// pass, without building a `serde_json::Value` tree first. Payload keys
/// keep the order of their struct's fields.
pub(super) fn envelope<T: Serialize>(type_name: &str, payload: &T) -> String {
    serde_json::to_string(&Envelope { type_name, payload })
        .expect("protocol types serialize to JSON")
}

/// Serializes one message as a v1 JSON envelope.
pub fn encode_message(message: &Message) -> String {
    let name = message.type_name();
    match message {
        Message::ClientHello(p) => envelope(name, p),
        Message::ClientTime(p) => envelope(name, p),
        Message::ClientState(p) => envelope(name, p),
        Message::ClientCommand(p) => envelope(name, p),
        Message::ClientGoodbye(p) => envelope(name, p),
        Message::StreamRequestFormat(p) => envelope(name, p),
        Message::ServerHello(p) => envelope(name, p),
        Message::ServerTime(p) => envelope(name, p),
        Message::ServerState(p) => envelope(name, p),
        Message::ServerCommand(p) => envelope(name, p),
        Message::StreamStart(p) => envelope(name, p),
        Message::StreamClear(p) => envelope(name, p),
        Message::StreamEnd(p) => envelope(name, p),
        Message::GroupUpdate(p) => envelope(name, p),
    }
}

fn payload<T: DeserializeOwned>(type_name: &str, payload: Value) -> Result<T, DecodeError> {
    serde_json::from_value(payload).map_err(|source| DecodeError::InvalidPayload {
        type_name: type_name.to_string(),
        source,
    })
}

pub(super) fn decode_text(text: &str) -> Result<Incoming, DecodeError> {
    let mut value: Value = serde_json::from_str(text).map_err(DecodeError::InvalidJson)?;
    let Some(type_name) = value
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Err(DecodeError::MissingType);
    };
    // A missing payload is treated as an empty object, so messages whose
    // fields are all optional may omit it.
    let body = match value.get_mut("payload").map(Value::take) {
        Some(Value::Null) | None => Value::Object(Default::default()),
        Some(body) => body,
    };
    let t = type_name.as_str();
    let message = match t {
        "client/hello" => Message::ClientHello(payload(t, body)?),
        "client/time" => Message::ClientTime(payload(t, body)?),
        "client/state" => Message::ClientState(payload(t, body)?),
        "client/command" => Message::ClientCommand(payload(t, body)?),
        "client/goodbye" => Message::ClientGoodbye(payload(t, body)?),
        "stream/request-format" => Message::StreamRequestFormat(payload(t, body)?),
        "server/hello" => Message::ServerHello(payload(t, body)?),
        "server/time" => Message::ServerTime(payload(t, body)?),
        "server/state" => Message::ServerState(payload(t, body)?),
        "server/command" => Message::ServerCommand(payload(t, body)?),
        "stream/start" => Message::StreamStart(payload(t, body)?),
        "stream/clear" => Message::StreamClear(payload(t, body)?),
        "stream/end" => Message::StreamEnd(payload(t, body)?),
        "group/update" => Message::GroupUpdate(payload(t, body)?),
        _ => return Ok(Incoming::Unknown { type_name }),
    };
    Ok(Incoming::Message(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientTime, GroupUpdate, PlaybackState, ServerTime};

    fn decode(text: &str) -> Result<Incoming, DecodeError> {
        SendspinV1Codec.decode(WsMessage::text(text))
    }

    #[test]
    fn messages_round_trip() {
        let messages = [
            Message::ClientTime(ClientTime {
                client_transmitted: 7,
            }),
            Message::ServerTime(ServerTime {
                client_transmitted: 1,
                server_received: 2,
                server_transmitted: 3,
            }),
            Message::GroupUpdate(GroupUpdate {
                playback_state: Some(Some(PlaybackState::Playing)),
                group_id: Some(Some("g".into())),
                group_name: None,
            }),
        ];
        for message in messages {
            let frame = SendspinV1Codec
                .encode(&Outgoing::Message(message.clone()))
                .unwrap();
            match SendspinV1Codec.decode(frame).unwrap() {
                Incoming::Message(back) => assert_eq!(back, message),
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_type_is_not_an_error() {
        let incoming = decode(r#"{"type": "client/dance", "payload": {}}"#).unwrap();
        assert_eq!(
            incoming,
            Incoming::Unknown {
                type_name: "client/dance".into()
            }
        );
    }

    #[test]
    fn garbage_and_wrong_types_are_errors() {
        assert!(matches!(
            decode("not json"),
            Err(DecodeError::InvalidJson(_))
        ));
        assert!(matches!(
            decode(r#"{"payload": {}}"#),
            Err(DecodeError::MissingType)
        ));
        assert!(matches!(
            decode(r#"{"type": "client/time", "payload": {"client_transmitted": "x"}}"#),
            Err(DecodeError::InvalidPayload { .. })
        ));
    }

    #[test]
    fn short_binary_is_an_error() {
        let result = SendspinV1Codec.decode(WsMessage::binary(vec![4u8, 1]));
        assert!(matches!(result, Err(DecodeError::ShortBinary(_))));
    }
}
