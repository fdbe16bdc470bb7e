//! Choosing each player's stream format from its `supported_formats`.

use crate::audio::{AudioFormat, Codec};
use crate::protocol::SupportedFormat;

/// PCM bit depths the server encodes.
const PCM_BIT_DEPTHS: [u16; 3] = [16, 24, 32];

/// Highest channel count the server maps a source to.
pub const MAX_CHANNELS: u16 = 8;

/// Sample rates the server resamples to, in Hz.
const RATE_RANGE: std::ops::RangeInclusive<u32> = 8_000..=384_000;

/// Picks the first format in the player's order that the server can
/// produce. The player's order decides, not a fixed server preference.
///
/// Returns `None` with the list of codecs offered when nothing fits.
pub fn choose_format(offered: &[SupportedFormat]) -> Result<AudioFormat, String> {
    for format in offered {
        if let Some(chosen) = producible(format) {
            return Ok(chosen);
        }
    }
    // A hostile hello may offer thousands of formats; five make the point.
    let mut listed: Vec<String> = offered
        .iter()
        .take(5)
        .map(|f| format!("{} {} Hz {} ch {}-bit", f.codec, f.sample_rate, f.channels, f.bit_depth))
        .collect();
    if offered.len() > listed.len() {
        listed.push(format!("and {} more", offered.len() - listed.len()));
    }
    Err(format!(
        "no producible format among [{}]; this server produces pcm at 16, 24 or 32 bits, 1 to {MAX_CHANNELS} channels, 8000 to 384000 Hz",
        listed.join(", ")
    ))
}

fn producible(format: &SupportedFormat) -> Option<AudioFormat> {
    let codec: Codec = format.codec.parse().ok()?;
    let fits = codec == Codec::Pcm
        && PCM_BIT_DEPTHS.contains(&format.bit_depth)
        && (1..=MAX_CHANNELS).contains(&format.channels)
        && RATE_RANGE.contains(&format.sample_rate);
    fits.then(|| AudioFormat::pcm(format.sample_rate, format.channels, format.bit_depth))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(codec: &str, rate: u32, channels: u16, bits: u16) -> SupportedFormat {
        SupportedFormat {
            codec: codec.into(),
            sample_rate: rate,
            channels,
            bit_depth: bits,
        }
    }

    #[test]
    fn player_order_decides() {
        let offered = [offer("pcm", 44_100, 2, 24), offer("pcm", 48_000, 2, 16)];
        assert_eq!(choose_format(&offered).unwrap(), AudioFormat::pcm(44_100, 2, 24));
    }

    #[test]
    fn unproducible_entries_are_skipped() {
        let offered = [offer("aac", 48_000, 2, 16), offer("pcm", 48_000, 2, 12), offer("pcm", 48_000, 1, 16)];
        assert_eq!(choose_format(&offered).unwrap(), AudioFormat::pcm(48_000, 1, 16));
    }

    #[test]
    fn nothing_producible_names_the_offer() {
        let err = choose_format(&[offer("aac", 48_000, 2, 16)]).unwrap_err();
        assert!(err.contains("aac 48000 Hz"), "{err}");
    }
}
