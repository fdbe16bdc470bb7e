//! The `--request-format` specification of `resonate play`.

use crate::audio::Codec;
use crate::protocol::PlayerFormatRequest;

/// Parses `CODEC[:RATE[:CHANNELS[:BITS]]]`, such as `flac`, `opus:48000`
/// or `pcm:44100:2:16`, into a `stream/request-format` player part. An
/// empty field, as in `flac::1`, leaves that field out of the request, so
/// the server keeps its current value.
pub fn parse_format_request(spec: &str) -> Result<PlayerFormatRequest, String> {
    let fields: Vec<&str> = spec.split(':').map(str::trim).collect();
    if fields.len() > 4 {
        return Err(format!(
            "invalid format request {spec:?}: more than 4 fields. Use CODEC[:RATE[:CHANNELS[:BITS]]], such as flac:48000:2:24"
        ));
    }
    let field = |index: usize| fields.get(index).copied().filter(|value| !value.is_empty());
    let codec = match field(0) {
        Some(name) => Some(
            name.parse::<Codec>()
                .map_err(|err| format!("invalid format request {spec:?}: {err}"))?
                .as_str()
                .to_string(),
        ),
        None => None,
    };
    let request = PlayerFormatRequest {
        codec,
        sample_rate: parse_number(spec, "sample rate", field(1))?,
        channels: parse_number(spec, "channel count", field(2))?,
        bit_depth: parse_number(spec, "bit depth", field(3))?,
    };
    if request == PlayerFormatRequest::default() {
        return Err(format!(
            "invalid format request {spec:?}: no field is set. Use CODEC[:RATE[:CHANNELS[:BITS]]], such as flac"
        ));
    }
    Ok(request)
}

fn parse_number<T: std::str::FromStr + Default + PartialEq>(
    spec: &str,
    field: &str,
    value: Option<&str>,
) -> Result<Option<T>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value.parse::<T>() {
        Ok(number) if number != T::default() => Ok(Some(number)),
        _ => Err(format!(
            "invalid format request {spec:?}: {field} {value:?} is not a positive whole number"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_codec_alone() {
        let request = parse_format_request("flac").unwrap();
        assert_eq!(request.codec.as_deref(), Some("flac"));
        assert_eq!(request.sample_rate, None);
        assert_eq!(request.channels, None);
        assert_eq!(request.bit_depth, None);
    }

    #[test]
    fn parse_every_field() {
        let request = parse_format_request("pcm:44100:1:16").unwrap();
        assert_eq!(request.codec.as_deref(), Some("pcm"));
        assert_eq!(request.sample_rate, Some(44_100));
        assert_eq!(request.channels, Some(1));
        assert_eq!(request.bit_depth, Some(16));
    }

    #[test]
    fn empty_fields_left_out() {
        let request = parse_format_request(":48000::24").unwrap();
        assert_eq!(request.codec, None);
        assert_eq!(request.sample_rate, Some(48_000));
        assert_eq!(request.channels, None);
        assert_eq!(request.bit_depth, Some(24));
    }

    #[test]
    fn invalid_specs_rejected_with_reason() {
        let cases = [
            ("aac", "aac"),
            ("flac:fast", "fast"),
            ("flac:0", "positive whole number"),
            ("", "no field is set"),
            ("pcm:1:2:3:4", "more than 4"),
        ];
        for (spec, expected) in cases {
            let err = parse_format_request(spec).unwrap_err();
            assert!(err.contains(expected), "{spec:?}: {err}");
        }
    }
}
