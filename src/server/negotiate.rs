//! Choosing each player's stream format from its `supported_formats`, and
//! the closest producible format for requests the server cannot meet.

use crate::audio::{flac, opus, AudioFormat, Codec};
use crate::protocol::{PlayerFormatRequest, SupportedFormat};

/// PCM bit depths the server encodes.
const PCM_BIT_DEPTHS: [u16; 3] = [16, 24, 32];

/// Bit depths an Opus stream may announce. Opus has no bit depth of its
/// own, so the server announces the one the player offered, which the
/// player decodes to.
const OPUS_BIT_DEPTHS: [u16; 3] = [16, 24, 32];

/// Highest channel count the server maps a source to.
pub const MAX_CHANNELS: u16 = 8;

/// Sample rates the server resamples to, in Hz.
const RATE_RANGE: std::ops::RangeInclusive<u32> = 8_000..=384_000;

/// Picks the first format in the player's order that the server can
/// produce. The player's order decides, not a fixed server preference.
///
/// With `forced` set, only entries of that codec count. When the player
/// offers none, the forced codec's closest match to the first entry is
/// returned, so `serve --codec` can test players with codecs they did not
/// offer.
///
/// Fails with the list of formats offered when nothing fits.
pub fn choose_format(
    offered: &[SupportedFormat],
    forced: Option<Codec>,
) -> Result<AudioFormat, String> {
    let candidates = offered.iter().filter_map(offered_format);
    let mut candidates: Vec<AudioFormat> = match forced {
        Some(codec) => candidates.filter(|format| format.codec == codec).collect(),
        None => candidates.collect(),
    };
    candidates.retain(is_producible);
    if let Some(first) = candidates.first() {
        return Ok(*first);
    }
    if let (Some(codec), Some(first)) = (forced, offered.first()) {
        let requested = AudioFormat {
            codec,
            sample_rate: first.sample_rate,
            channels: first.channels,
            bit_depth: first.bit_depth,
        };
        return Ok(closest_producible(requested));
    }
    Err(format!(
        "no producible format among [{}]; this server produces pcm (16, 24 or 32 bits, 1 to {MAX_CHANNELS} \
         channels, 8000 to 384000 Hz), flac (16 or 24 bits, 1 to 8 channels, 8000 to 96000 Hz) and opus \
         (1 or 2 channels at 48000, 24000, 16000, 12000 or 8000 Hz)",
        describe_offer(offered)
    ))
}

/// Lists at most five offered formats: a hostile hello may offer
/// thousands, and five make the point.
fn describe_offer(offered: &[SupportedFormat]) -> String {
    let mut listed: Vec<String> = offered
        .iter()
        .take(5)
        .map(|f| {
            format!(
                "{} {} Hz {} ch {}-bit",
                f.codec, f.sample_rate, f.channels, f.bit_depth
            )
        })
        .collect();
    if offered.len() > listed.len() {
        listed.push(format!("and {} more", offered.len() - listed.len()));
    }
    listed.join(", ")
}

/// Converts an offered format with a known codec.
fn offered_format(format: &SupportedFormat) -> Option<AudioFormat> {
    Some(AudioFormat {
        codec: format.codec.parse().ok()?,
        sample_rate: format.sample_rate,
        channels: format.channels,
        bit_depth: format.bit_depth,
    })
}

/// Returns whether the server can encode `format` from any source.
pub fn is_producible(format: &AudioFormat) -> bool {
    match format.codec {
        Codec::Pcm => {
            PCM_BIT_DEPTHS.contains(&format.bit_depth)
                && (1..=MAX_CHANNELS).contains(&format.channels)
                && RATE_RANGE.contains(&format.sample_rate)
        }
        Codec::Flac => {
            flac::BIT_DEPTHS.contains(&format.bit_depth)
                && (1..=MAX_CHANNELS).contains(&format.channels)
                && (*RATE_RANGE.start()..=flac::MAX_SAMPLE_RATE).contains(&format.sample_rate)
        }
        Codec::Opus => {
            OPUS_BIT_DEPTHS.contains(&format.bit_depth)
                && (1..=2).contains(&format.channels)
                && opus::SAMPLE_RATES.contains(&format.sample_rate)
        }
    }
}

/// Returns the producible format in `requested`'s codec nearest to it: the
/// rate, channel count and bit depth are each moved to the nearest value
/// the codec supports. A producible `requested` comes back unchanged.
pub fn closest_producible(requested: AudioFormat) -> AudioFormat {
    let channel_limit = if requested.codec == Codec::Opus {
        2
    } else {
        MAX_CHANNELS
    };
    let channels = requested.channels.clamp(1, channel_limit);
    let (sample_rate, depths): (u32, &[u16]) = match requested.codec {
        Codec::Pcm => (
            requested
                .sample_rate
                .clamp(*RATE_RANGE.start(), *RATE_RANGE.end()),
            &PCM_BIT_DEPTHS,
        ),
        Codec::Flac => (
            requested
                .sample_rate
                .clamp(*RATE_RANGE.start(), flac::MAX_SAMPLE_RATE),
            &flac::BIT_DEPTHS,
        ),
        Codec::Opus => (
            nearest(&opus::SAMPLE_RATES, requested.sample_rate),
            &OPUS_BIT_DEPTHS,
        ),
    };
    let bit_depth = nearest(depths, requested.bit_depth);
    AudioFormat {
        codec: requested.codec,
        sample_rate,
        channels,
        bit_depth,
    }
}

/// Returns the value of `choices` nearest to `target`, the higher one on a
/// tie.
fn nearest<T: Copy + Into<u64>>(choices: &[T], target: T) -> T {
    let target: u64 = target.into();
    let mut best = choices[0];
    for &choice in choices {
        let distance = choice.into().abs_diff(target);
        let best_distance = best.into().abs_diff(target);
        if distance < best_distance || (distance == best_distance && choice.into() > best.into()) {
            best = choice;
        }
    }
    best
}

/// Outcome of a `stream/request-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormatAnswer {
    /// The format the server streams from now on.
    pub format: AudioFormat,
    /// Whether the server had to change the request to produce it.
    pub adjusted: bool,
}

/// Applies a `stream/request-format` to the `current` format: fields the
/// request leaves out keep their current value, an unknown codec keeps the
/// current codec, and a format the server cannot produce becomes the
/// closest one it can.
pub fn answer_request(current: AudioFormat, request: &PlayerFormatRequest) -> FormatAnswer {
    let requested_codec = request.codec.as_deref().map(str::parse::<Codec>);
    let codec = match requested_codec {
        Some(Ok(codec)) => codec,
        Some(Err(_)) | None => current.codec,
    };
    let requested = AudioFormat {
        codec,
        sample_rate: request.sample_rate.unwrap_or(current.sample_rate),
        channels: request.channels.unwrap_or(current.channels),
        bit_depth: request.bit_depth.unwrap_or(current.bit_depth),
    };
    let format = closest_producible(requested);
    let unknown_codec = matches!(requested_codec, Some(Err(_)));
    FormatAnswer {
        format,
        adjusted: unknown_codec || format != requested,
    }
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

    fn format(codec: Codec, sample_rate: u32, channels: u16, bit_depth: u16) -> AudioFormat {
        AudioFormat {
            codec,
            sample_rate,
            channels,
            bit_depth,
        }
    }

    #[test]
    fn player_order_decides() {
        let offered = [offer("pcm", 44_100, 2, 24), offer("pcm", 48_000, 2, 16)];
        assert_eq!(
            choose_format(&offered, None).unwrap(),
            AudioFormat::pcm(44_100, 2, 24)
        );
        let offered = [
            offer("opus", 48_000, 2, 16),
            offer("flac", 48_000, 2, 24),
            offer("pcm", 48_000, 2, 24),
        ];
        assert_eq!(
            choose_format(&offered, None).unwrap(),
            format(Codec::Opus, 48_000, 2, 16)
        );
        let offered = [offer("flac", 44_100, 1, 16), offer("pcm", 48_000, 2, 24)];
        assert_eq!(
            choose_format(&offered, None).unwrap(),
            format(Codec::Flac, 44_100, 1, 16)
        );
    }

    #[test]
    fn unproducible_entries_are_skipped() {
        let offered = [
            offer("aac", 48_000, 2, 16),
            offer("pcm", 48_000, 2, 12),
            offer("flac", 192_000, 2, 24),
            offer("flac", 48_000, 2, 32),
            offer("opus", 44_100, 2, 16),
            offer("opus", 48_000, 6, 16),
            offer("pcm", 48_000, 1, 16),
        ];
        assert_eq!(
            choose_format(&offered, None).unwrap(),
            AudioFormat::pcm(48_000, 1, 16)
        );
    }

    #[test]
    fn nothing_producible_names_the_offer() {
        let err = choose_format(&[offer("aac", 48_000, 2, 16)], None).unwrap_err();
        assert!(err.contains("aac 48000 Hz"), "{err}");
    }

    #[test]
    fn forced_codec_wins_over_order() {
        let offered = [offer("pcm", 48_000, 2, 24), offer("flac", 48_000, 2, 16)];
        assert_eq!(
            choose_format(&offered, Some(Codec::Flac)).unwrap(),
            format(Codec::Flac, 48_000, 2, 16)
        );
    }

    #[test]
    fn forced_codec_not_offered_uses_closest() {
        let offered = [offer("pcm", 44_100, 2, 24)];
        assert_eq!(
            choose_format(&offered, Some(Codec::Opus)).unwrap(),
            format(Codec::Opus, 48_000, 2, 24)
        );
    }

    #[test]
    fn closest_moves_each_field() {
        let cases = [
            (
                format(Codec::Flac, 192_000, 2, 32),
                format(Codec::Flac, 96_000, 2, 24),
            ),
            (
                format(Codec::Opus, 44_100, 6, 16),
                format(Codec::Opus, 48_000, 2, 16),
            ),
            (
                format(Codec::Opus, 20_000, 1, 20),
                format(Codec::Opus, 24_000, 1, 24),
            ),
            (
                format(Codec::Pcm, 1_000, 0, 8),
                format(Codec::Pcm, 8_000, 1, 16),
            ),
            (
                format(Codec::Pcm, 48_000, 2, 24),
                format(Codec::Pcm, 48_000, 2, 24),
            ),
        ];
        for (requested, expected) in cases {
            assert_eq!(
                closest_producible(requested),
                expected,
                "closest to {requested}"
            );
        }
    }

    #[test]
    fn request_keeps_unnamed_fields() {
        let current = AudioFormat::pcm(48_000, 2, 24);
        let request = PlayerFormatRequest {
            codec: Some("flac".into()),
            ..Default::default()
        };
        let answer = answer_request(current, &request);
        assert_eq!(answer.format, format(Codec::Flac, 48_000, 2, 24));
        assert!(!answer.adjusted);
    }

    #[test]
    fn request_out_of_range_is_adjusted() {
        let current = AudioFormat::pcm(48_000, 2, 24);
        let request = PlayerFormatRequest {
            codec: Some("opus".into()),
            sample_rate: Some(44_100),
            ..Default::default()
        };
        let answer = answer_request(current, &request);
        assert_eq!(answer.format, format(Codec::Opus, 48_000, 2, 24));
        assert!(answer.adjusted);
    }

    #[test]
    fn request_with_unknown_codec_keeps_codec() {
        let current = format(Codec::Flac, 48_000, 2, 16);
        let request = PlayerFormatRequest {
            codec: Some("aac".into()),
            sample_rate: Some(44_100),
            ..Default::default()
        };
        let answer = answer_request(current, &request);
        assert_eq!(answer.format, format(Codec::Flac, 44_100, 2, 16));
        assert!(answer.adjusted);
    }
}
