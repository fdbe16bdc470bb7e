//! Opus encoding and decoding with libopus, one packet per chunk.
//!
//! # Wire convention
//!
//! Each binary audio chunk carries one raw Opus packet, without Ogg
//! framing, and `stream/start` carries no `codec_header`. The reference
//! peers agree:
//!
//! - aiosendspin (`aiosendspin/audio/codecs.py`, `OpusEncoder`) sends each
//!   packet of ffmpeg's libopus encoder as one chunk, and its `get_header`
//!   returns `None` for Opus. It announces `bit_depth` 16 for Opus streams
//!   (`server/roles/player/v1.py`), because it encodes from 16-bit PCM.
//! - The `sendspin` crate 0.3.8 (`src/audio/decode/opus.rs`, `OpusDecoder`)
//!   decodes every chunk as one complete packet, ignores `codec_header` and
//!   plays every decoded sample, including the encoder's warm-up.
//!
//! # Codec delay and timestamps
//!
//! The decoded signal lags the input by the encoder's lookahead,
//! [`OpusEncoder::pre_skip`] frames (312 frames or 6.5 ms at 48 kHz with
//! libopus 1.3). Decoded frame `k + pre_skip` is input frame `k`. Players
//! play every decoded frame from the chunk's timestamp on and do not drop a
//! pre-skip, so the server stamps each packet
//! [`OpusEncoder::delay_us`] earlier than the timeline time of the packet's
//! first input frame. Then input frame `k` sounds at its timeline time, in
//! sync with PCM and FLAC players, and the warm-up frames play just before
//! the stream's start. aiosendspin does the same: it subtracts the OpusHead
//! pre-skip from its first packet's timestamp (`OpusEncoder.process`).

use ::opus as libopus;

use super::CodecError;

/// Sample rates in Hz that Opus encodes and decodes.
pub const SAMPLE_RATES: [u32; 5] = [48_000, 24_000, 16_000, 12_000, 8_000];

/// Bit depth to announce in `stream/start` for Opus, as aiosendspin does.
/// Opus has no bit depth of its own.
pub const ANNOUNCED_BIT_DEPTH: u16 = 16;

/// Smallest bitrate libopus accepts, in bits per second.
pub const MIN_BITRATE_BPS: u32 = 500;

/// Largest bitrate libopus accepts, in bits per second.
pub const MAX_BITRATE_BPS: u32 = 512_000;

/// Size in bytes of the buffer one packet is encoded into, the maximum
/// that the libopus documentation recommends.
const MAX_PACKET_BYTES: usize = 4000;

/// Duration of one Opus packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FrameDuration {
    /// 2.5 ms.
    Ms2_5,
    /// 5 ms.
    Ms5,
    /// 10 ms.
    Ms10,
    /// 20 ms, the default and the server's chunk length.
    #[default]
    Ms20,
    /// 40 ms.
    Ms40,
    /// 60 ms.
    Ms60,
}

impl FrameDuration {
    /// Duration in microseconds.
    pub fn micros(self) -> u32 {
        match self {
            FrameDuration::Ms2_5 => 2_500,
            FrameDuration::Ms5 => 5_000,
            FrameDuration::Ms10 => 10_000,
            FrameDuration::Ms20 => 20_000,
            FrameDuration::Ms40 => 40_000,
            FrameDuration::Ms60 => 60_000,
        }
    }

    /// Frames (samples per channel) in one packet at `sample_rate` Hz. Exact
    /// for every rate in [`SAMPLE_RATES`].
    pub fn frames(self, sample_rate: u32) -> usize {
        (u64::from(sample_rate) * u64::from(self.micros()) / 1_000_000) as usize
    }
}

/// Checks a sample rate and channel count against what Opus supports.
fn check_format(sample_rate: u32, channels: u16) -> Result<libopus::Channels, CodecError> {
    if !SAMPLE_RATES.contains(&sample_rate) {
        return Err(CodecError::OpusSampleRate(sample_rate));
    }
    match channels {
        1 => Ok(libopus::Channels::Mono),
        2 => Ok(libopus::Channels::Stereo),
        other => Err(CodecError::OpusChannels(other)),
    }
}

/// Wraps a libopus error from `operation`.
fn libopus_error(operation: &'static str) -> impl FnOnce(libopus::Error) -> CodecError {
    move |source| CodecError::Opus { operation, source }
}

/// Streaming Opus encoder that buffers input into whole packets.
///
/// With the default 20 ms packets, each 20 ms chunk of the server yields
/// exactly one packet.
pub struct OpusEncoder {
    encoder: libopus::Encoder,
    sample_rate: u32,
    channels: u16,
    frame_duration: FrameDuration,
    /// Codec delay in frames at `sample_rate`.
    pre_skip: usize,
    /// Interleaved input not yet encoded, shorter than one packet.
    pending: Vec<f32>,
    /// Input frames received since the stream started.
    input_frames: u64,
    /// Frames encoded since the stream started, including padding.
    encoded_frames: u64,
    packet_buffer: Vec<u8>,
}

impl OpusEncoder {
    /// Creates an encoder for music at `sample_rate` Hz (48000, 24000,
    /// 16000, 12000 or 8000) with 1 or 2 interleaved channels, making 20 ms
    /// packets.
    ///
    /// `bitrate_bps` is the target bitrate in bits per second, from
    /// [`MIN_BITRATE_BPS`] to [`MAX_BITRATE_BPS`]. `None` keeps the libopus
    /// default, 99 kbit/s for 48 kHz stereo with 20 ms packets in libopus
    /// 1.3.
    /// libopus varies the packet size around the target (VBR).
    pub fn new(
        sample_rate: u32,
        channels: u16,
        bitrate_bps: Option<u32>,
    ) -> Result<Self, CodecError> {
        let opus_channels = check_format(sample_rate, channels)?;
        if let Some(bps) = bitrate_bps {
            if !(MIN_BITRATE_BPS..=MAX_BITRATE_BPS).contains(&bps) {
                return Err(CodecError::OpusBitrate(bps));
            }
        }
        let mut encoder =
            libopus::Encoder::new(sample_rate, opus_channels, libopus::Application::Audio)
                .map_err(libopus_error("encoder creation"))?;
        if let Some(bps) = bitrate_bps {
            // The range check above keeps the value within i32.
            encoder
                .set_bitrate(libopus::Bitrate::Bits(bps as i32))
                .map_err(libopus_error("bitrate setting"))?;
        }
        let lookahead = encoder
            .get_lookahead()
            .map_err(libopus_error("lookahead query"))?;
        Ok(OpusEncoder {
            encoder,
            sample_rate,
            channels,
            frame_duration: FrameDuration::default(),
            pre_skip: usize::try_from(lookahead).unwrap_or(0),
            pending: Vec::new(),
            input_frames: 0,
            encoded_frames: 0,
            packet_buffer: vec![0; MAX_PACKET_BYTES],
        })
    }

    /// Returns the encoder making packets of `duration`. Samples already
    /// buffered go into the first packet of the new duration.
    pub fn with_frame_duration(mut self, duration: FrameDuration) -> Self {
        self.frame_duration = duration;
        self
    }

    /// Duration of each packet.
    pub fn frame_duration(&self) -> FrameDuration {
        self.frame_duration
    }

    /// Frames (samples per channel) in each packet.
    pub fn packet_frames(&self) -> usize {
        self.frame_duration.frames(self.sample_rate)
    }

    /// Sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Channel count.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Input frames buffered for the next packet.
    pub fn pending_frames(&self) -> usize {
        self.pending.len() / usize::from(self.channels)
    }

    /// Returns the codec header for `stream/start`, which is `None` for
    /// Opus: the reference peers send no header and decode raw packets
    /// without one.
    pub fn header(&self) -> Option<Vec<u8>> {
        None
    }

    /// Codec delay in frames at the stream's sample rate: decoded frame
    /// `k + pre_skip()` is input frame `k`. This is the libopus lookahead,
    /// which an Ogg Opus file stores (at 48 kHz) as the OpusHead pre-skip.
    pub fn pre_skip(&self) -> usize {
        self.pre_skip
    }

    /// Codec delay in microseconds, rounded down. The server subtracts it
    /// from each packet's timestamp, as the module documentation explains.
    pub fn delay_us(&self) -> i64 {
        (self.pre_skip as u64 * 1_000_000 / u64::from(self.sample_rate)) as i64
    }

    /// Encodes interleaved samples and returns the packets completed by
    /// them, in order. Samples that do not fill a packet wait for the next
    /// call or for [`flush`](Self::flush).
    ///
    /// libopus reports invalid arguments, an output buffer that is too
    /// small and failed allocations here. This encoder passes valid packet
    /// lengths and a 4000-byte buffer, so only a failed allocation remains.
    /// If libopus fails, the packets of this call are lost and the samples
    /// from the failed packet on stay pending.
    pub fn encode(&mut self, samples: &[f32]) -> Result<Vec<Vec<u8>>, CodecError> {
        let channels = usize::from(self.channels);
        if !samples.len().is_multiple_of(channels) {
            return Err(CodecError::PartialFrame {
                samples: samples.len(),
                channels: self.channels,
            });
        }
        self.pending.extend_from_slice(samples);
        self.input_frames += (samples.len() / channels) as u64;

        let packet_samples = self.packet_frames() * channels;
        let mut packets = Vec::with_capacity(self.pending.len() / packet_samples);
        let mut start = 0;
        let mut result = Ok(());
        while self.pending.len() - start >= packet_samples {
            let end = start + packet_samples;
            match self.encode_packet(start, end) {
                Ok(packet) => packets.push(packet),
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
            start = end;
        }
        self.pending.drain(..start);
        result.map(|()| packets)
    }

    /// Encodes `pending[start..end]`, one packet of input.
    fn encode_packet(&mut self, start: usize, end: usize) -> Result<Vec<u8>, CodecError> {
        let length = self
            .encoder
            .encode_float(&self.pending[start..end], &mut self.packet_buffer)
            .map_err(libopus_error("encoding"))?;
        self.encoded_frames += ((end - start) / usize::from(self.channels)) as u64;
        Ok(self.packet_buffer[..length].to_vec())
    }

    /// Ends the stream: pads the buffered samples with silence to a whole
    /// packet and adds silent packets until the encoder has passed its
    /// lookahead, so the decoded packets contain every input frame. Returns
    /// the final packets, none when nothing was encoded.
    ///
    /// The encoder then starts a new stream, as if newly created.
    pub fn flush(&mut self) -> Result<Vec<Vec<u8>>, CodecError> {
        let mut packets = Vec::new();
        if self.input_frames > 0 {
            let packet_samples = self.packet_frames() * usize::from(self.channels);
            let needed = self.input_frames + self.pre_skip as u64;
            while self.encoded_frames < needed {
                self.pending.resize(packet_samples, 0.0);
                packets.push(self.encode_packet(0, packet_samples)?);
                self.pending.clear();
            }
        }
        self.encoder.reset_state().map_err(libopus_error("reset"))?;
        self.pending.clear();
        self.input_frames = 0;
        self.encoded_frames = 0;
        Ok(packets)
    }
}

/// Opus decoder of one packet per chunk, with packet loss concealment.
///
/// The decoder does not drop the codec delay. It returns every decoded
/// frame, as the reference players play them, and the server's timestamps
/// account for the delay.
pub struct OpusDecoder {
    decoder: libopus::Decoder,
    sample_rate: u32,
    channels: u16,
    scratch: Vec<f32>,
}

impl OpusDecoder {
    /// Creates a decoder that outputs `sample_rate` Hz (48000, 24000,
    /// 16000, 12000 or 8000) with 1 or 2 interleaved channels. libopus
    /// converts packets of any Opus rate and channel count to this format.
    pub fn new(sample_rate: u32, channels: u16) -> Result<Self, CodecError> {
        let opus_channels = check_format(sample_rate, channels)?;
        let decoder = libopus::Decoder::new(sample_rate, opus_channels)
            .map_err(libopus_error("decoder creation"))?;
        Ok(OpusDecoder {
            decoder,
            sample_rate,
            channels,
            scratch: Vec::new(),
        })
    }

    /// Sample rate of the output in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Channel count of the output.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Decodes one Opus packet, appends its interleaved samples to `out`
    /// and returns the number of frames decoded.
    ///
    /// An empty or malformed packet fails with an error and leaves `out`
    /// and the decoder's state unchanged, so the next packet decodes as if
    /// the bad one never came. Call [`decode_lost`](Self::decode_lost) to
    /// fill its time.
    ///
    /// NOTE: libopus detects only structural damage, such as a bad frame
    /// count or lengths that overrun the packet. Flipped bits in the coded
    /// audio decode into wrong audio without an error.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<f32>) -> Result<usize, CodecError> {
        if packet.is_empty() {
            return Err(CodecError::OpusEmptyPacket);
        }
        let invalid = |source| CodecError::OpusPacket {
            len: packet.len(),
            source,
        };
        let frames = libopus::packet::get_nb_samples(packet, self.sample_rate).map_err(invalid)?;
        self.scratch
            .resize(frames * usize::from(self.channels), 0.0);
        let decoded = self
            .decoder
            .decode_float(packet, &mut self.scratch, false)
            .map_err(invalid)?;
        out.extend_from_slice(&self.scratch[..decoded * usize::from(self.channels)]);
        Ok(decoded)
    }

    /// Appends `frames` frames in place of lost or rejected packets to
    /// `out` and returns `frames`.
    ///
    /// libopus conceals the loss from the audio before it, in whole steps
    /// of 2.5 ms because its concealment accepts only multiples of 2.5 ms.
    /// The remaining frames, and everything before the first packet, are
    /// silence.
    pub fn decode_lost(&mut self, frames: usize, out: &mut Vec<f32>) -> Result<usize, CodecError> {
        let step = FrameDuration::Ms2_5.frames(self.sample_rate);
        let concealed = frames / step * step;
        let channels = usize::from(self.channels);
        if concealed > 0 {
            self.scratch.resize(concealed * channels, 0.0);
            let decoded = self
                .decoder
                .decode_float(&[], &mut self.scratch, false)
                .map_err(libopus_error("packet loss concealment"))?;
            out.extend_from_slice(&self.scratch[..decoded * channels]);
            out.resize(out.len() + (frames - decoded) * channels, 0.0);
        } else {
            out.resize(out.len() + frames * channels, 0.0);
        }
        Ok(frames)
    }

    /// Clears the decoder's state, for a new stream or after
    /// `stream/clear`, so no audio of the old stream leaks into the new one.
    pub fn reset(&mut self) -> Result<(), CodecError> {
        self.decoder.reset_state().map_err(libopus_error("reset"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Music-like test signal: two sines per channel (at different
    /// frequencies per channel) plus white noise 30 dB below them.
    fn music_signal(frames: usize, channels: u16, rate: u32) -> Vec<f32> {
        let mut state: u32 = 0x9E37_79B9;
        let mut samples = Vec::with_capacity(frames * usize::from(channels));
        for i in 0..frames {
            let t = i as f64 / f64::from(rate);
            for channel in 0..channels {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let noise = (f64::from(state) / f64::from(u32::MAX) - 0.5) * 0.03;
                let shift = f64::from(channel) * 60.0;
                let low = 0.35 * (2.0 * std::f64::consts::PI * (330.0 + shift) * t).sin();
                let high = 0.2 * (2.0 * std::f64::consts::PI * (1250.0 + shift) * t).sin();
                samples.push((low + high + noise) as f32);
            }
        }
        samples
    }

    /// Encodes `signal` in 20 ms chunks, checks that each chunk yields one
    /// packet, flushes and returns the packets.
    fn encode_in_chunks(encoder: &mut OpusEncoder, signal: &[f32]) -> Vec<Vec<u8>> {
        let chunk_samples = encoder.packet_frames() * usize::from(encoder.channels());
        let mut packets = Vec::new();
        for (index, chunk) in signal.chunks(chunk_samples).enumerate() {
            let mut chunk_packets = encoder.encode(chunk).unwrap();
            if chunk.len() == chunk_samples {
                assert_eq!(chunk_packets.len(), 1, "chunk {index}: packet count");
            }
            packets.append(&mut chunk_packets);
        }
        packets.append(&mut encoder.flush().unwrap());
        packets
    }

    fn decode_all(decoder: &mut OpusDecoder, packets: &[Vec<u8>]) -> Vec<f32> {
        let mut decoded = Vec::new();
        for packet in packets {
            decoder.decode(packet, &mut decoded).unwrap();
        }
        decoded
    }

    /// SNR in dB of `decoded` shifted back by `delay` frames against
    /// `input`, over the input from `skip` frames on.
    fn snr_db(input: &[f32], decoded: &[f32], channels: usize, delay: usize, skip: usize) -> f64 {
        let (mut signal, mut error) = (0.0f64, 0.0f64);
        for (index, &x) in input.iter().enumerate().skip(skip * channels) {
            let y = decoded[index + delay * channels];
            signal += f64::from(x) * f64::from(x);
            error += f64::from(x - y) * f64::from(x - y);
        }
        10.0 * (signal / error).log10()
    }

    /// Delay in frames, within `0..max_delay`, at which the decoded signal
    /// matches the input best.
    fn measured_delay(
        input: &[f32],
        decoded: &[f32],
        channels: usize,
        max_delay: usize,
        skip: usize,
    ) -> usize {
        let snr_at = |delay| snr_db(input, decoded, channels, delay, skip);
        (0..max_delay)
            .max_by(|&a, &b| snr_at(a).total_cmp(&snr_at(b)))
            .unwrap()
    }

    #[test]
    fn round_trip_snr_after_delay() {
        // Measured with this test and libopus 1.3.1 (Debian libopus-dev
        // 1.3.1-3) on x86-64, mono and stereo: 35.6 and 31.0 dB at 48 kHz,
        // 41.4 and 36.5 dB at 24 kHz, 41.1 and 39.5 dB at 16 kHz. The bound
        // leaves 6 dB for other libopus versions.
        const MIN_SNR_DB: f64 = 25.0;
        let cases = [
            (48_000u32, 1u16),
            (48_000, 2),
            (24_000, 1),
            (24_000, 2),
            (16_000, 1),
            (16_000, 2),
        ];
        for (rate, channels) in cases {
            let case = format!("{rate} Hz {channels} ch");
            let mut encoder = OpusEncoder::new(rate, channels, Some(128_000)).unwrap();
            let input = music_signal(rate as usize, channels, rate);
            let packets = encode_in_chunks(&mut encoder, &input);
            let mut decoder = OpusDecoder::new(rate, channels).unwrap();
            let decoded = decode_all(&mut decoder, &packets);

            let ch = usize::from(channels);
            let pre_skip = encoder.pre_skip();
            assert!(
                decoded.len() >= input.len() + pre_skip * ch,
                "{case}: decoded too short"
            );
            let skip = rate as usize / 10;
            let delay = measured_delay(&input, &decoded, ch, 2 * pre_skip, skip);
            assert_eq!(delay, pre_skip, "{case}: measured delay");
            let snr = snr_db(&input, &decoded, ch, pre_skip, skip);
            eprintln!(
                "{case}: pre-skip {pre_skip} frames ({} us), SNR {snr:.1} dB",
                encoder.delay_us()
            );
            assert!(
                snr >= MIN_SNR_DB,
                "{case}: SNR {snr:.1} dB below {MIN_SNR_DB} dB"
            );
        }
    }

    #[test]
    fn sendspin_crate_decodes_packets() {
        use sendspin::audio::decode::{Decoder as _, OpusDecoder as PeerDecoder};

        let (rate, channels) = (48_000u32, 2u16);
        let mut encoder = OpusEncoder::new(rate, channels, Some(128_000)).unwrap();
        let input = music_signal(rate as usize / 2, channels, rate);
        let packets = encode_in_chunks(&mut encoder, &input);

        let peer = PeerDecoder::new(rate, channels as u8).unwrap();
        let mut decoded = Vec::new();
        for packet in &packets {
            let samples = peer.decode(packet).unwrap();
            assert_eq!(samples.len(), 960 * 2, "samples per packet");
            decoded.extend(samples.iter().map(|&s| s as f32 / i32::MAX as f32));
        }
        // The peer plays every decoded frame, so the same pre-skip aligns
        // its output with the input.
        let skip = rate as usize / 10;
        let delay = measured_delay(&input, &decoded, 2, 2 * encoder.pre_skip(), skip);
        assert_eq!(delay, encoder.pre_skip(), "measured delay");
        let snr = snr_db(&input, &decoded, 2, delay, skip);
        assert!(snr >= 25.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn pre_skip_at_48_khz() {
        let encoder = OpusEncoder::new(48_000, 2, None).unwrap();
        assert_eq!(encoder.pre_skip(), 312);
        assert_eq!(encoder.delay_us(), 6500);
        assert_eq!(encoder.header(), None);
    }

    #[test]
    fn corrupt_packet_errors_and_decoder_recovers() {
        let mut encoder = OpusEncoder::new(48_000, 2, Some(128_000)).unwrap();
        let input = music_signal(960 * 10, 2, 48_000);
        let packets = encode_in_chunks(&mut encoder, &input);

        let mut clean = OpusDecoder::new(48_000, 2).unwrap();
        let expected = decode_all(&mut clean, &packets);

        let mut decoder = OpusDecoder::new(48_000, 2).unwrap();
        let mut decoded = decode_all(&mut decoder, &packets[..4]);
        let before = decoded.len();
        // Code 3 (arbitrary frame count) with 63 frames of 20 ms, more than
        // the 120 ms a packet may hold.
        let too_many_frames = [packets[4][0] | 0x03, 0x3F, 0, 0];
        let err = decoder.decode(&too_many_frames, &mut decoded).unwrap_err();
        assert!(
            matches!(err, CodecError::OpusPacket { len: 4, .. }),
            "{err}"
        );
        // Code 2 (two frames of different sizes) whose first length overruns
        // the packet.
        let overrun = [packets[4][0] & 0xFC | 0x02, 200, 1, 2, 3];
        assert!(
            decoder.decode(&overrun, &mut decoded).is_err(),
            "overrun packet decoded"
        );
        assert!(matches!(
            decoder.decode(&[], &mut decoded),
            Err(CodecError::OpusEmptyPacket)
        ));
        assert_eq!(decoded.len(), before, "output changed on error");

        for packet in &packets[4..] {
            decoder.decode(packet, &mut decoded).unwrap();
        }
        assert!(
            decoded == expected,
            "decoding after the bad packets differs"
        );
    }

    #[test]
    fn bitrate_changes_packet_sizes() {
        let input = music_signal(48_000, 2, 48_000);
        let mut mean_bytes = Vec::new();
        for bitrate in [32_000u32, 128_000] {
            let mut encoder = OpusEncoder::new(48_000, 2, Some(bitrate)).unwrap();
            let packets = encode_in_chunks(&mut encoder, &input);
            let total: usize = packets.iter().map(Vec::len).sum();
            let mean = total as f64 / packets.len() as f64;
            // A 20 ms packet at the target bitrate has bitrate / 400 bytes.
            let target = f64::from(bitrate) / 400.0;
            assert!(
                mean > target * 0.5 && mean < target * 1.5,
                "{bitrate} bit/s: mean packet {mean:.0} bytes, target {target:.0}"
            );
            mean_bytes.push(mean);
        }
        assert!(
            mean_bytes[1] > 2.5 * mean_bytes[0],
            "packet sizes {mean_bytes:?}"
        );
    }

    #[test]
    fn encoder_buffers_partial_packets() {
        let mut encoder = OpusEncoder::new(48_000, 1, None).unwrap();
        let input = music_signal(960 * 3, 1, 48_000);
        assert_eq!(encoder.encode(&input[..500]).unwrap().len(), 0);
        assert_eq!(encoder.encode(&input[500..1500]).unwrap().len(), 1);
        assert_eq!(encoder.encode(&input[1500..]).unwrap().len(), 2);
        // Nothing is pending, but the last 312 input frames are still inside
        // the encoder's lookahead, so flush adds one silent packet.
        assert_eq!(encoder.flush().unwrap().len(), 1);
        assert_eq!(
            encoder.flush().unwrap().len(),
            0,
            "flush of an empty stream"
        );
    }

    #[test]
    fn flush_pads_to_cover_delay() {
        let mut encoder = OpusEncoder::new(48_000, 2, None).unwrap();
        // 700 pending frames: one padded packet covers only 260 of the 312
        // frames of delay, so flush makes two packets.
        let input = music_signal(960 + 700, 2, 48_000);
        assert_eq!(encoder.encode(&input).unwrap().len(), 1);
        assert_eq!(encoder.flush().unwrap().len(), 2);

        let input = music_signal(960 + 500, 2, 48_000);
        assert_eq!(encoder.encode(&input).unwrap().len(), 1);
        assert_eq!(encoder.flush().unwrap().len(), 1);
    }

    #[test]
    fn frame_duration_sets_packets_per_chunk() {
        let input = music_signal(960 * 6, 2, 48_000);
        let cases = [
            (FrameDuration::Ms2_5, 8usize),
            (FrameDuration::Ms10, 2),
            (FrameDuration::Ms20, 1),
        ];
        for (duration, per_chunk) in cases {
            let mut encoder = OpusEncoder::new(48_000, 2, None)
                .unwrap()
                .with_frame_duration(duration);
            let mut decoder = OpusDecoder::new(48_000, 2).unwrap();
            for chunk in input.chunks(960 * 2) {
                let packets = encoder.encode(chunk).unwrap();
                assert_eq!(packets.len(), per_chunk, "{duration:?}: packets per chunk");
                let mut decoded = Vec::new();
                for packet in &packets {
                    decoder.decode(packet, &mut decoded).unwrap();
                }
                assert_eq!(
                    decoded.len(),
                    960 * 2,
                    "{duration:?}: decoded samples per chunk"
                );
            }
        }

        let mut long = OpusEncoder::new(24_000, 1, None)
            .unwrap()
            .with_frame_duration(FrameDuration::Ms60);
        let input = music_signal(480 * 6, 1, 24_000);
        let counts: Vec<usize> = input
            .chunks(480)
            .map(|chunk| long.encode(chunk).unwrap().len())
            .collect();
        assert_eq!(counts, [0, 0, 1, 0, 0, 1]);
    }

    #[test]
    fn frame_durations_in_frames() {
        assert_eq!(FrameDuration::Ms2_5.frames(8_000), 20);
        assert_eq!(FrameDuration::Ms5.frames(12_000), 60);
        assert_eq!(FrameDuration::Ms20.frames(48_000), 960);
        assert_eq!(FrameDuration::Ms40.frames(16_000), 640);
        assert_eq!(FrameDuration::Ms60.frames(24_000), 1440);
    }

    #[test]
    fn decode_lost_conceals_and_pads() {
        let mut encoder = OpusEncoder::new(48_000, 2, None).unwrap();
        let input = music_signal(960 * 5, 2, 48_000);
        let packets = encode_in_chunks(&mut encoder, &input);
        let mut decoder = OpusDecoder::new(48_000, 2).unwrap();

        let mut before_audio = Vec::new();
        assert_eq!(decoder.decode_lost(960, &mut before_audio).unwrap(), 960);
        assert!(
            before_audio.iter().all(|&s| s == 0.0),
            "loss before any packet is not silent"
        );

        let _ = decode_all(&mut decoder, &packets[..3]);
        let mut concealed = Vec::new();
        assert_eq!(decoder.decode_lost(960, &mut concealed).unwrap(), 960);
        assert_eq!(concealed.len(), 960 * 2);
        assert!(concealed.iter().any(|&s| s != 0.0), "concealment is silent");

        let mut odd = Vec::new();
        assert_eq!(decoder.decode_lost(250, &mut odd).unwrap(), 250);
        assert_eq!(odd.len(), 250 * 2);
        assert!(
            odd[240 * 2..].iter().all(|&s| s == 0.0),
            "remainder past 2.5 ms steps is not silent"
        );

        let mut after = Vec::new();
        assert_eq!(decoder.decode(&packets[3], &mut after).unwrap(), 960);
    }

    #[test]
    fn reset_clears_decoder_state() {
        let mut encoder = OpusEncoder::new(48_000, 1, None).unwrap();
        let packets = encode_in_chunks(&mut encoder, &music_signal(960 * 3, 1, 48_000));
        let mut decoder = OpusDecoder::new(48_000, 1).unwrap();
        let _ = decode_all(&mut decoder, &packets);
        decoder.reset().unwrap();
        let mut concealed = Vec::new();
        decoder.decode_lost(960, &mut concealed).unwrap();
        assert!(
            concealed.iter().all(|&s| s == 0.0),
            "old audio leaked after reset"
        );
    }

    #[test]
    fn rejects_unsupported_formats() {
        let err = OpusEncoder::new(44_100, 2, None).err().unwrap();
        assert_eq!(
            err.to_string(),
            "opus does not support 44100 Hz; use 48000, 24000, 16000, 12000 or 8000"
        );
        assert!(matches!(
            OpusEncoder::new(48_000, 3, None),
            Err(CodecError::OpusChannels(3))
        ));
        assert!(matches!(
            OpusEncoder::new(48_000, 0, None),
            Err(CodecError::OpusChannels(0))
        ));
        assert!(matches!(
            OpusEncoder::new(48_000, 2, Some(499)),
            Err(CodecError::OpusBitrate(499))
        ));
        assert!(matches!(
            OpusEncoder::new(48_000, 2, Some(512_001)),
            Err(CodecError::OpusBitrate(512_001))
        ));
        assert!(matches!(
            OpusDecoder::new(96_000, 2),
            Err(CodecError::OpusSampleRate(96_000))
        ));
        assert!(matches!(
            OpusDecoder::new(48_000, 6),
            Err(CodecError::OpusChannels(6))
        ));
        for rate in SAMPLE_RATES {
            assert!(
                OpusEncoder::new(rate, 1, Some(MIN_BITRATE_BPS)).is_ok(),
                "{rate} Hz"
            );
            assert!(OpusDecoder::new(rate, 2).is_ok(), "{rate} Hz");
        }
    }

    #[test]
    fn encoder_and_decoder_are_send() {
        fn assert_send<T: Send>() {}
        assert_send::<OpusEncoder>();
        assert_send::<OpusDecoder>();
    }

    #[test]
    fn encoder_rejects_partial_frame() {
        let mut encoder = OpusEncoder::new(48_000, 2, None).unwrap();
        let err = encoder.encode(&[0.0; 5]).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::PartialFrame {
                    samples: 5,
                    channels: 2
                }
            ),
            "{err}"
        );
    }
}
