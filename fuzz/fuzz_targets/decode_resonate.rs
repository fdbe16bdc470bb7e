//! The legacy Resonate codec decodes any text or binary frame without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resonate::dialect::Dialect;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let frame = if kind & 1 == 0 {
        match std::str::from_utf8(body) {
            Ok(text) => WsMessage::text(text),
            Err(_) => return,
        }
    } else {
        WsMessage::binary(body.to_vec())
    };
    let _ = Dialect::Resonate.codec().decode(frame);
});
