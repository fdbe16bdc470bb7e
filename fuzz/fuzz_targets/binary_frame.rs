//! The binary frame header parses any bytes without panicking, and a parsed
//! frame encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resonate::protocol::BinaryFrame;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = BinaryFrame::parse(data) {
        assert_eq!(frame.to_bytes(), data);
    }
});
