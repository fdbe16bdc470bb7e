//! The player's FLAC path: a codec header from the server, then chunks,
//! decode or fail without panicking.
//!
//! Input: a little-endian u16 header length, the header, then chunks, each
//! a u16 length and its bytes.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use resonate::player::decode::ChunkDecoder;
use resonate::protocol::StreamStartPlayer;

fuzz_target!(|data: &[u8]| {
    let mut parts = resonate_fuzz_parts(data);
    let Some(header) = parts.next() else {
        return;
    };
    let start = StreamStartPlayer {
        codec: "flac".into(),
        sample_rate: 48_000,
        channels: 2,
        bit_depth: 16,
        codec_header: Some(base64::engine::general_purpose::STANDARD.encode(header)),
    };
    let Ok(mut decoder) = ChunkDecoder::new(&start) else {
        return;
    };
    let mut out = Vec::new();
    for chunk in parts {
        if decoder.decode(chunk, &mut out).is_err() {
            decoder.conceal(&mut out);
        }
        out.clear();
    }
});

/// Splits `data` into parts, each preceded by its u16 little-endian length.
fn resonate_fuzz_parts(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (length, rest) = data.split_first_chunk::<2>()?;
        let length = usize::from(u16::from_le_bytes(*length)).min(rest.len());
        let (part, rest) = rest.split_at(length);
        data = rest;
        Some(part)
    })
}
