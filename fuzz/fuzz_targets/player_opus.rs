//! The player's Opus path: any packets decode or fail without panicking.
//!
//! Input: one byte choosing the rate and channel count, then packets, each
//! a u16 little-endian length and its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resonate::player::decode::ChunkDecoder;
use resonate::protocol::StreamStartPlayer;

const RATES: [u32; 5] = [48_000, 24_000, 16_000, 12_000, 8_000];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, mut rest)) = data.split_first() else {
        return;
    };
    let start = StreamStartPlayer {
        codec: "opus".into(),
        sample_rate: RATES[usize::from(choice % 5)],
        channels: if choice & 0x80 == 0 { 1 } else { 2 },
        bit_depth: 16,
        codec_header: None,
    };
    let Ok(mut decoder) = ChunkDecoder::new(&start) else {
        return;
    };
    let mut out = Vec::new();
    while let Some((length, tail)) = rest.split_first_chunk::<2>() {
        let length = usize::from(u16::from_le_bytes(*length)).min(tail.len());
        let (packet, tail) = tail.split_at(length);
        rest = tail;
        if decoder.decode(packet, &mut out).is_err() {
            decoder.conceal(&mut out);
        }
        out.clear();
    }
});
