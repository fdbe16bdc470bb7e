//! The artwork role: a track's cover scaled to fit each channel a client
//! declares and encoded in the channel's format.

use std::collections::HashMap;
use std::hash::Hash;
use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};

use crate::protocol::{ArtworkChannelFormat, ArtworkChannelSupport};

/// Most artwork channels a client may declare.
pub const MAX_CHANNELS: usize = 4;

/// Largest width or height a channel may ask for, in pixels.
pub const MAX_SIDE: u32 = 4096;

/// Largest width or height of a cover image the server decodes, in
/// pixels. A larger cover is skipped before it is decoded, because an
/// 8192 by 8192 RGBA image already takes 256 MiB and decoding blocks the
/// server's core task.
pub const MAX_COVER_SIDE: u32 = 8192;

/// Memory the image decoder may allocate for one cover, in bytes: an RGBA
/// image of [`MAX_COVER_SIDE`] by [`MAX_COVER_SIDE`] pixels.
const MAX_COVER_ALLOC: u64 = MAX_COVER_SIDE as u64 * MAX_COVER_SIDE as u64 * 4;

/// Source of a channel's images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArtSource {
    /// The cover of the track's album.
    Album,
    /// A picture of the artist; this server has none, so the channel stays
    /// clear.
    Artist,
    /// Nothing: the client turned the channel off.
    None,
}

/// Image format of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArtFormat {
    Jpeg,
    Png,
    Bmp,
}

impl ArtFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtFormat::Jpeg => "jpeg",
            ArtFormat::Png => "png",
            ArtFormat::Bmp => "bmp",
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            ArtFormat::Jpeg => ImageFormat::Jpeg,
            ArtFormat::Png => ImageFormat::Png,
            ArtFormat::Bmp => ImageFormat::Bmp,
        }
    }
}

/// One artwork channel as a client declared or last requested it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArtChannel {
    pub source: ArtSource,
    pub format: ArtFormat,
    pub max_width: u32,
    pub max_height: u32,
    /// Whether images fill exactly `max_width` by `max_height`, the scaled
    /// cover centered on black, as Sendspin 1.0 channels declared in
    /// `client/state` require. v1 channels get the scaled cover alone.
    pub padded: bool,
}

impl ArtChannel {
    /// Validates a channel of `artwork@v1_support`.
    pub fn parse(support: &ArtworkChannelSupport) -> Result<ArtChannel, String> {
        let source = match support.source.as_str() {
            "album" => ArtSource::Album,
            "artist" => ArtSource::Artist,
            "none" => ArtSource::None,
            other => {
                return Err(format!(
                    "artwork source {other:?} is not album, artist or none"
                ))
            }
        };
        let format = parse_format(&support.format)?;
        for (name, side) in [
            ("media_width", support.media_width),
            ("media_height", support.media_height),
        ] {
            if side == 0 || side > MAX_SIDE {
                return Err(format!(
                    "artwork {name} {side} is outside 1 to {MAX_SIDE} pixels"
                ));
            }
        }
        Ok(ArtChannel {
            source,
            format,
            max_width: support.media_width,
            max_height: support.media_height,
            padded: false,
        })
    }

    /// Validates a channel of a Sendspin 1.0 `client/state` artwork object:
    /// `source`, and unless it is `none`, `format`, `width` and `height`.
    pub fn parse_state(channel: &serde_json::Value) -> Result<ArtChannel, String> {
        let source = channel
            .get("source")
            .and_then(serde_json::Value::as_str)
            .ok_or("artwork channel has no source")?;
        if source == "none" {
            return Ok(ArtChannel {
                source: ArtSource::None,
                format: ArtFormat::Jpeg,
                max_width: 1,
                max_height: 1,
                padded: true,
            });
        }
        let side = |name: &str| -> Result<u32, String> {
            let value = channel
                .get(name)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| format!("artwork channel has no {name}"))?;
            u32::try_from(value)
                .map_err(|_| format!("artwork {name} {value} is outside 1 to {MAX_SIDE} pixels"))
        };
        let support = ArtworkChannelSupport {
            source: source.to_string(),
            format: channel
                .get("format")
                .and_then(serde_json::Value::as_str)
                .ok_or("artwork channel has no format")?
                .to_string(),
            media_width: side("width")?,
            media_height: side("height")?,
        };
        let parsed = ArtChannel::parse(&support).map_err(|reason| reason.replace("media_", ""))?;
        Ok(ArtChannel {
            padded: true,
            ..parsed
        })
    }

    /// Builds the channel's entry in `stream/start`: its source, format
    /// and the largest size an image on it has.
    pub fn announce(&self) -> ArtworkChannelFormat {
        ArtworkChannelFormat {
            source: match self.source {
                ArtSource::Album => "album",
                ArtSource::Artist => "artist",
                ArtSource::None => "none",
            }
            .to_string(),
            format: self.format.as_str().to_string(),
            width: self.max_width,
            height: self.max_height,
        }
    }
}

pub fn parse_format(text: &str) -> Result<ArtFormat, String> {
    match text {
        "jpeg" => Ok(ArtFormat::Jpeg),
        "png" => Ok(ArtFormat::Png),
        "bmp" => Ok(ArtFormat::Bmp),
        other => Err(format!("artwork format {other:?} is not jpeg, png or bmp")),
    }
}

/// Returns the largest size with `width`:`height`'s aspect ratio that
/// fits in `max_width` by `max_height`. Images are never enlarged.
pub fn fit(width: u32, height: u32, max_width: u32, max_height: u32) -> (u32, u32) {
    if width <= max_width && height <= max_height {
        return (width.max(1), height.max(1));
    }
    let (w, h) = (u64::from(width), u64::from(height));
    // Scale by the tighter of the two bounds, rounding to the nearest pixel.
    if w * u64::from(max_height) >= h * u64::from(max_width) {
        let scaled = (h * u64::from(max_width) + w / 2) / w;
        (max_width, (scaled as u32).clamp(1, max_height))
    } else {
        let scaled = (w * u64::from(max_height) + h / 2) / h;
        ((scaled as u32).clamp(1, max_width), max_height)
    }
}

/// Decodes `cover`, scales it to fit `channel` and encodes it in the
/// channel's format.
pub fn render(cover: &[u8], channel: &ArtChannel) -> Result<Vec<u8>, String> {
    let image = decode_cover(cover)?;
    let (width, height) = fit(
        image.width(),
        image.height(),
        channel.max_width,
        channel.max_height,
    );
    let mut scaled = if (width, height) == (image.width(), image.height()) {
        image
    } else {
        image.resize_exact(width, height, FilterType::Triangle)
    };
    if channel.padded && (width, height) != (channel.max_width, channel.max_height) {
        let mut canvas = image::RgbaImage::from_pixel(
            channel.max_width,
            channel.max_height,
            image::Rgba([0, 0, 0, 255]),
        );
        let (x, y) = (
            (channel.max_width - width) / 2,
            (channel.max_height - height) / 2,
        );
        image::imageops::overlay(&mut canvas, &scaled.to_rgba8(), i64::from(x), i64::from(y));
        scaled = DynamicImage::ImageRgba8(canvas);
    }
    // JPEG and BMP carry no alpha channel here; PNG keeps it.
    let scaled = match channel.format {
        ArtFormat::Png => scaled,
        ArtFormat::Jpeg | ArtFormat::Bmp => DynamicImage::ImageRgb8(scaled.to_rgb8()),
    };
    let mut out = Cursor::new(Vec::new());
    scaled
        .write_to(&mut out, channel.format.image_format())
        .map_err(|err| {
            format!(
                "cannot encode the cover as {}: {err}",
                channel.format.as_str()
            )
        })?;
    Ok(out.into_inner())
}

/// Empties `cache` when it contains `capacity` values and `key` is not one of
/// them, so the caller's insert keeps it at `capacity` at most.
///
/// Cached covers are large: up to 16 MiB read from a file, and 48 MiB for
/// a 4096 by 4096 BMP rendered for a channel. A client picks the channel
/// sizes, so these caches must not grow with every request.
pub fn make_room<K: Eq + Hash, V>(cache: &mut HashMap<K, V>, key: &K, capacity: usize) {
    if cache.len() >= capacity && !cache.contains_key(key) {
        cache.clear();
    }
}

/// Decodes `cover` after checking, from its header alone, that neither
/// side exceeds [`MAX_COVER_SIDE`].
fn decode_cover(cover: &[u8]) -> Result<DynamicImage, String> {
    let reader = || {
        ImageReader::new(Cursor::new(cover))
            .with_guessed_format()
            .map_err(|err| format!("cannot read the cover image: {err}"))
    };
    let (width, height) = reader()?
        .into_dimensions()
        .map_err(|err| format!("cannot decode the cover image: {err}"))?;
    if width > MAX_COVER_SIDE || height > MAX_COVER_SIDE {
        return Err(format!(
            "the cover image is {width}x{height} pixels, larger than the \
             {MAX_COVER_SIDE}x{MAX_COVER_SIDE} limit; scale it down to send it"
        ));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_COVER_SIDE);
    limits.max_image_height = Some(MAX_COVER_SIDE);
    limits.max_alloc = Some(MAX_COVER_ALLOC);
    let mut decoder = reader()?;
    decoder.limits(limits);
    decoder
        .decode()
        .map_err(|err| format!("cannot decode the cover image: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(image)
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    fn channel(format: ArtFormat, max_width: u32, max_height: u32) -> ArtChannel {
        ArtChannel {
            source: ArtSource::Album,
            format,
            max_width,
            max_height,
            padded: false,
        }
    }

    #[test]
    fn fit_keeps_the_aspect_ratio_and_never_enlarges() {
        assert_eq!(fit(1000, 500, 300, 300), (300, 150));
        assert_eq!(fit(500, 1000, 300, 300), (150, 300));
        assert_eq!(fit(1000, 1000, 400, 200), (200, 200));
        assert_eq!(fit(100, 50, 300, 300), (100, 50));
        assert_eq!(fit(3000, 1, 100, 100), (100, 1));
    }

    #[test]
    fn render_scales_and_encodes_every_format() {
        let cover = png(800, 400);
        for (format, expected) in [
            (ArtFormat::Jpeg, ImageFormat::Jpeg),
            (ArtFormat::Png, ImageFormat::Png),
            (ArtFormat::Bmp, ImageFormat::Bmp),
        ] {
            let bytes = render(&cover, &channel(format, 200, 200)).unwrap();
            assert_eq!(image::guess_format(&bytes).unwrap(), expected);
            let decoded = image::load_from_memory(&bytes).unwrap();
            assert_eq!(
                (decoded.width(), decoded.height()),
                (200, 100),
                "{format:?}"
            );
        }
    }

    #[test]
    fn padded_channels_get_their_exact_size() {
        let cover = png(800, 400);
        let channel = ArtChannel::parse_state(
            &serde_json::json!({"source": "album", "format": "png", "width": 100, "height": 100}),
        )
        .unwrap();
        let decoded = image::load_from_memory(&render(&cover, &channel).unwrap())
            .unwrap()
            .to_rgb8();
        assert_eq!(decoded.dimensions(), (100, 100));
        // The 100x50 cover sits in rows 25 to 74; the bands around it are black.
        assert_eq!(decoded.get_pixel(50, 10).0, [0, 0, 0]);
        assert_eq!(decoded.get_pixel(50, 90).0, [0, 0, 0]);
        assert_eq!(decoded.get_pixel(50, 50).0[2], 128);
        let off = ArtChannel::parse_state(&serde_json::json!({"source": "none"})).unwrap();
        assert_eq!(off.source, ArtSource::None);
        let missing = ArtChannel::parse_state(
            &serde_json::json!({"source": "album", "format": "png", "width": 100}),
        );
        assert_eq!(missing.unwrap_err(), "artwork channel has no height");
    }

    #[test]
    fn bad_channels_and_covers_are_named() {
        let support = ArtworkChannelSupport {
            source: "album".into(),
            format: "gif".into(),
            media_width: 100,
            media_height: 100,
        };
        assert!(ArtChannel::parse(&support).unwrap_err().contains("\"gif\""));
        let support = ArtworkChannelSupport {
            format: "png".into(),
            media_width: 0,
            ..support
        };
        assert!(ArtChannel::parse(&support)
            .unwrap_err()
            .contains("media_width 0"));
        assert!(render(b"not an image", &channel(ArtFormat::Png, 10, 10)).is_err());
    }

    /// Returns a PNG that states `width` by `height` pixels in its header
    /// but contains an empty IDAT chunk, so only a dimension check reads it
    /// without an error.
    fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut header = Vec::new();
        header.extend_from_slice(&width.to_be_bytes());
        header.extend_from_slice(&height.to_be_bytes());
        // 8-bit RGB, deflate, adaptive filtering, no interlace.
        header.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, body) in [
            (b"IHDR", header),
            (b"IDAT", Vec::new()),
            (b"IEND", Vec::new()),
        ] {
            let mut chunk = kind.to_vec();
            chunk.extend_from_slice(&body);
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend_from_slice(&chunk);
            out.extend_from_slice(&crc32(&chunk).to_be_bytes());
        }
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn oversized_cover_is_skipped_before_decoding() {
        // 20000 by 20000 RGB pixels would take 1.2 GB once decoded, from a
        // file of 57 bytes, so only a dimension check can stop it.
        let header = png_header(20_000, 20_000);
        let reason = render(&header, &channel(ArtFormat::Jpeg, 300, 300)).unwrap_err();
        assert!(reason.contains("20000x20000 pixels"), "{reason}");
        assert!(reason.contains("8192x8192 limit"), "{reason}");

        let wide = png_header(MAX_COVER_SIDE + 1, 10);
        let reason = render(&wide, &channel(ArtFormat::Jpeg, 300, 300)).unwrap_err();
        assert!(reason.contains("8193x10 pixels"), "{reason}");
    }

    #[test]
    fn make_room_bounds_the_cache() {
        let mut cache: HashMap<u32, &str> = HashMap::new();
        for key in 0..3 {
            make_room(&mut cache, &key, 3);
            cache.insert(key, "cover");
        }
        assert_eq!(cache.len(), 3);

        make_room(&mut cache, &1, 3);
        assert_eq!(cache.len(), 3, "a cached key keeps the cache");
        make_room(&mut cache, &7, 3);
        assert!(cache.is_empty(), "a new key past the capacity empties it");
    }

    #[test]
    fn cover_at_the_side_limit_is_decoded() {
        let cover = png(MAX_COVER_SIDE, 2);
        let bytes = render(&cover, &channel(ArtFormat::Png, 400, 400)).unwrap();
        let decoded = image::load_from_memory(&bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (400, 1));
    }
}
