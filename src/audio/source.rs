//! Decoding of audio files into interleaved `f32` samples with symphonia.
//!
//! [`SourceDecoder`] reads every container and codec that symphonia 0.5
//! enables with its `all` feature, including WAV, FLAC, MP3, Ogg Vorbis, AAC
//! in MP4 and ALAC, with any channel count, bit depth and sample rate.
//! Integer samples of up to 24 bits convert to `f32` exactly, so decoding a
//! 16- or 24-bit WAV or FLAC file and encoding it again at the same depth
//! returns the original samples.
//!
//! Damage mid-file is skipped, because one bad frame should not stop
//! playback. A packet that fails to decode is skipped with a warning and
//! counted, and so is a jump in packet timestamps where the container
//! reader dropped data on its own (symphonia's FLAC reader drops frames with
//! a bad checksum). symphonia's MP3 reader also skips junk between frames
//! without a trace, which shows only as a stream shorter than its header
//! states, and that gets a warning at the end. Decoding fails when nothing
//! decodes, after 1000 bad packets in a row, or when the sample rate or
//! channel count changes.

use std::fs::{self, File};
use std::io;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use symphonia::core::audio::{AudioBufferRef, SampleBuffer};
use symphonia::core::codecs::{
    CodecParameters, Decoder, DecoderOptions, CODEC_TYPE_NULL, CODEC_TYPE_VORBIS,
};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, Packet};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use thiserror::Error;

/// Bit depth reported for codecs without a native integer depth (MP3,
/// Vorbis, AAC), whose decoders produce floating-point samples.
pub const LOSSY_BIT_DEPTH: u16 = 16;

/// Skipped packets that each get their own warning. Later ones are only
/// counted and reported once at the end of the stream.
const WARNED_SKIPS: u64 = 5;

/// Rejected packets in a row that must decode to the same new format before
/// decoding fails with [`SourceError::FormatChanged`].
const FORMAT_CHANGE_PACKETS: u32 = 3;

/// Consecutive failed packets after which the file counts as unreadable,
/// which also ends the loop on a container reader that cannot resync.
const MAX_CONSECUTIVE_FAILURES: u64 = 1000;

/// Errors from opening or decoding an audio file. Each names the file.
#[derive(Debug, Error)]
pub enum SourceError {
    /// The file does not exist.
    #[error("audio file {} not found; check the path and file name", .path.display())]
    NotFound { path: PathBuf },
    /// The file exists but the process may not read it.
    #[error(
        "cannot read {}: permission denied; grant read access to this user or copy the file",
        .path.display()
    )]
    PermissionDenied { path: PathBuf },
    /// The path is a directory.
    #[error("{} is a directory; pass an audio file inside it", .path.display())]
    IsDirectory { path: PathBuf },
    /// The file has no bytes.
    #[error("{} is empty (0 bytes); pass a file that contains audio", .path.display())]
    Empty { path: PathBuf },
    /// Reading the file failed for another reason.
    #[error("failed to read {}: {source}; check that the file is readable", .path.display())]
    Io { path: PathBuf, source: io::Error },
    /// No container format recognised the file.
    #[error(
        "{} is not a recognized audio file ({detail}); pass WAV, FLAC, MP3, Ogg Vorbis, \
         MP4/AAC or ALAC, or convert the file to WAV or FLAC",
        .path.display()
    )]
    NotAudio { path: PathBuf, detail: String },
    /// The container has no track that carries audio.
    #[error("{} contains no audio track; pass a file with an audio stream", .path.display())]
    NoAudioTrack { path: PathBuf },
    /// The audio track uses a codec that symphonia cannot decode.
    #[error(
        "{} uses codec {codec}, which is not supported; convert the file to WAV or FLAC",
        .path.display()
    )]
    UnsupportedCodec { path: PathBuf, codec: String },
    /// Neither the container nor the decoded audio gives a sample rate or
    /// channel count.
    #[error(
        "{} does not state its sample rate or channel count; re-encode it to WAV or FLAC",
        .path.display()
    )]
    MissingFormat { path: PathBuf },
    /// No packet decoded, or too many in a row failed.
    #[error("{} is corrupt: {detail}; re-encode or replace the file", .path.display())]
    Corrupt { path: PathBuf, detail: String },
    /// The sample rate or channel count changed within the stream.
    #[error(
        "{} changes format mid-stream from {from} to {to}; split the file at the change \
         or convert it to one format",
        .path.display()
    )]
    FormatChanged {
        path: PathBuf,
        from: String,
        to: String,
    },
    /// Another symphonia error.
    #[error("failed to decode {}: {detail}; convert the file to WAV or FLAC", .path.display())]
    Decode { path: PathBuf, detail: String },
}

/// Properties of an opened audio file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceInfo {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count. Samples are interleaved in this order.
    pub channels: u16,
    /// Native bits per sample of the stored audio, or [`LOSSY_BIT_DEPTH`] for
    /// lossy codecs that have none.
    pub bit_depth: u16,
    /// Length in frames when the container states it. For an MP3 file
    /// without a Xing, Info or VBRI header it is an estimate.
    pub duration_frames: Option<u64>,
    /// Short codec name from symphonia, such as `flac`, `mp3`, `vorbis` or
    /// `pcm_s16le`.
    pub codec: String,
}

/// Format of one decoded packet.
struct DecodedPacket {
    sample_rate: u32,
    channels: usize,
}

impl DecodedPacket {
    fn format(&self) -> (u32, usize) {
        (self.sample_rate, self.channels)
    }
}

/// Decoder that turns an audio file into interleaved `f32` frames.
pub struct SourceDecoder {
    path: PathBuf,
    info: SourceInfo,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track_id: u32,
    /// Frames after which decoding stops, for codecs that decode past the
    /// stream's stated end.
    frame_limit: Option<u64>,
    /// Decoded samples not yet returned, from `pending_offset` on.
    pending: Vec<f32>,
    pending_offset: usize,
    sample_buffer: Option<SampleBuffer<f32>>,
    ended: bool,
    /// Format and count of the rejected packets in a row that decode to
    /// another format.
    format_change_run: Option<((u32, usize), u32)>,
    /// Error to return from the next [`read`](Self::read).
    deferred_error: Option<SourceError>,
    skipped_packets: u64,
    consecutive_failures: u64,
    last_failure: String,
    /// Timestamp the next packet should have if the reader dropped nothing.
    next_timestamp: Option<u64>,
    frames_decoded: u64,
    frames_read: u64,
}

impl SourceDecoder {
    /// Opens and probes the audio file at `path` and decodes its first
    /// packet to learn the stream's format.
    pub fn open(path: impl AsRef<Path>) -> Result<SourceDecoder, SourceError> {
        let path = path.as_ref().to_path_buf();
        // symphonia 0.5 panics on some impossible headers (a WAV that states
        // 0 Hz builds a time base with a zero denominator), so a panic while
        // probing is a corrupt file, not a crash.
        let probed = std::panic::catch_unwind(|| open_format(&path));
        let format = match probed {
            Ok(result) => result?,
            Err(_) => return Err(SourceError::Corrupt {
                path,
                detail:
                    "its header describes an impossible stream (the decoder panicked reading it)"
                        .into(),
            }),
        };

        let track = format
            .tracks()
            .iter()
            .find(|track| track.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or_else(|| SourceError::NoAudioTrack { path: path.clone() })?;
        let track_id = track.id;
        let params = track.codec_params.clone();
        let decoder = make_decoder(&path, &params)?;

        let mut source = SourceDecoder {
            info: initial_info(&params),
            path,
            format,
            decoder,
            track_id,
            frame_limit: frame_limit(&params),
            pending: Vec::new(),
            pending_offset: 0,
            sample_buffer: None,
            ended: false,
            format_change_run: None,
            deferred_error: None,
            skipped_packets: 0,
            consecutive_failures: 0,
            last_failure: String::new(),
            next_timestamp: None,
            frames_decoded: 0,
            frames_read: 0,
        };
        let first = std::panic::catch_unwind(AssertUnwindSafe(|| source.decode_first_packet()));
        match first {
            Ok(result) => result?,
            Err(_) => {
                return Err(SourceError::Corrupt {
                    path: source.path,
                    detail: "the decoder panicked on its first packet".into(),
                })
            }
        }
        Ok(source)
    }

    /// Format of the decoded stream.
    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    /// Path the decoder was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Packets skipped since the last open or rewind: packets that failed
    /// to decode, and jumps in packet timestamps where the container reader
    /// dropped data.
    pub fn skipped_packets(&self) -> u64 {
        self.skipped_packets
    }

    /// Frames returned by [`read`](Self::read) since the last open or
    /// rewind.
    pub fn frames_read(&self) -> u64 {
        self.frames_read
    }

    /// Appends up to `max_frames` interleaved frames to `out` and returns how
    /// many it appended, or 0 at the end of the stream.
    ///
    /// An error that occurs after some frames were appended is returned by
    /// the next call, so those frames are counted. An error ends the stream,
    /// so later calls return 0 until [`rewind`](Self::rewind).
    pub fn read(&mut self, out: &mut Vec<f32>, max_frames: usize) -> Result<usize, SourceError> {
        if let Some(err) = self.deferred_error.take() {
            return Err(err);
        }
        let channels = self.info.channels as usize;
        let mut frames = 0;
        while frames < max_frames {
            if self.pending_offset == self.pending.len() {
                match self.decode_next_packet_guarded() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(err) => {
                        self.end_after_error();
                        if frames == 0 {
                            return Err(err);
                        }
                        self.deferred_error = Some(err);
                        break;
                    }
                }
            }
            let available = (self.pending.len() - self.pending_offset) / channels;
            let count = available.min(max_frames - frames);
            let end = self.pending_offset + count * channels;
            out.extend_from_slice(&self.pending[self.pending_offset..end]);
            self.pending_offset = end;
            frames += count;
        }
        self.frames_read += frames as u64;
        Ok(frames)
    }

    fn end_after_error(&mut self) {
        self.ended = true;
        self.pending.clear();
        self.pending_offset = 0;
    }

    /// Starts the stream again from its first frame, for looping, by
    /// reopening the file. Fails with [`SourceError::FormatChanged`] when
    /// the file was replaced by one of another format.
    pub fn rewind(&mut self) -> Result<(), SourceError> {
        let reopened = SourceDecoder::open(&self.path)?;
        let (old, new) = (&self.info, &reopened.info);
        if old.sample_rate != new.sample_rate || old.channels != new.channels {
            return Err(SourceError::FormatChanged {
                path: self.path.clone(),
                from: describe_format(old.sample_rate, old.channels as usize),
                to: describe_format(new.sample_rate, new.channels as usize),
            });
        }
        *self = reopened;
        Ok(())
    }

    /// Decodes packets until one yields audio, then sets the sample rate and
    /// channel count from that audio, which is more reliable than the
    /// container's header.
    fn decode_first_packet(&mut self) -> Result<(), SourceError> {
        let Some(first) = self.decode_packet()? else {
            if self.info.sample_rate == 0 || self.info.channels == 0 {
                return Err(SourceError::MissingFormat {
                    path: self.path.clone(),
                });
            }
            tracing::warn!(path = %self.path.display(), "audio file contains no audio frames");
            return Ok(());
        };
        self.info.sample_rate = first.sample_rate;
        self.info.channels = first.channels as u16;
        Ok(())
    }

    /// Runs [`decode_next_packet`](Self::decode_next_packet) and turns a
    /// panic inside symphonia into [`SourceError::Corrupt`], so a damaged
    /// file ends its own track and not the program that plays it.
    fn decode_next_packet_guarded(&mut self) -> Result<bool, SourceError> {
        let frame = self.frames_decoded;
        let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| self.decode_next_packet()));
        decoded.unwrap_or_else(|_| {
            Err(SourceError::Corrupt {
                path: self.path.clone(),
                detail: format!("the decoder panicked on the packet after frame {frame}"),
            })
        })
    }

    /// Replaces `pending` with the next packet's frames. Returns `false` at
    /// the end of the stream.
    fn decode_next_packet(&mut self) -> Result<bool, SourceError> {
        self.pending.clear();
        self.pending_offset = 0;
        let Some(packet) = self.decode_packet()? else {
            return Ok(false);
        };
        self.check_format(&packet)?;
        Ok(true)
    }

    /// Fails when `packet` has another sample rate or channel count than
    /// the stream so far.
    fn check_format(&self, packet: &DecodedPacket) -> Result<(), SourceError> {
        let info = &self.info;
        if packet.sample_rate == info.sample_rate && packet.channels == info.channels as usize {
            return Ok(());
        }
        Err(SourceError::FormatChanged {
            path: self.path.clone(),
            from: describe_format(info.sample_rate, info.channels as usize),
            to: describe_format(packet.sample_rate, packet.channels),
        })
    }

    /// Decodes packets until one yields frames and appends them to
    /// `pending`. Returns `None` at the end of the stream. Skips packets
    /// that fail to decode.
    fn decode_packet(&mut self) -> Result<Option<DecodedPacket>, SourceError> {
        while !self.ended {
            let packet = match self.format.next_packet() {
                Ok(packet) => packet,
                Err(err) => {
                    self.handle_reader_error(err)?;
                    continue;
                }
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            self.check_timestamp_gap(packet.ts(), packet.dur());
            let decoded = match self.decoder.decode(&packet) {
                Ok(decoded) => decoded,
                Err(err) => {
                    self.check_format_change(&packet, &err)?;
                    self.handle_decoder_error(err)?;
                    continue;
                }
            };
            self.consecutive_failures = 0;
            self.format_change_run = None;

            let spec = *decoded.spec();
            let frames = copy_interleaved(decoded, &mut self.sample_buffer, &mut self.pending);
            if frames > 0 {
                self.frames_decoded += frames as u64;
                self.apply_frame_limit(spec.channels.count())?;
                return Ok(Some(DecodedPacket {
                    sample_rate: spec.rate,
                    channels: spec.channels.count(),
                }));
            }
        }
        Ok(None)
    }

    /// Drops decoded frames past [`frame_limit`] and ends the stream there.
    fn apply_frame_limit(&mut self, channels: usize) -> Result<(), SourceError> {
        let Some(limit) = self.frame_limit else {
            return Ok(());
        };
        if self.frames_decoded < limit {
            return Ok(());
        }
        let excess = (self.frames_decoded - limit) as usize;
        self.pending
            .truncate(self.pending.len() - excess * channels);
        self.frames_decoded = limit;
        self.finish_stream()
    }

    /// Handles an error from the container reader: the end of the stream, a
    /// track reset, or damaged data that the reader may skip past.
    fn handle_reader_error(&mut self, err: SymphoniaError) -> Result<(), SourceError> {
        match err {
            SymphoniaError::IoError(io_err) if io_err.kind() == io::ErrorKind::UnexpectedEof => {
                self.finish_stream()
            }
            SymphoniaError::ResetRequired => self.reset_decoder(),
            SymphoniaError::IoError(source) => Err(SourceError::Io {
                path: self.path.clone(),
                source,
            }),
            SymphoniaError::DecodeError(detail) => self.record_failure(detail.to_string()),
            other => Err(SourceError::Decode {
                path: self.path.clone(),
                detail: other.to_string(),
            }),
        }
    }

    /// Fails with [`SourceError::FormatChanged`] when [`FORMAT_CHANGE_PACKETS`]
    /// packets in a row that the decoder rejected decode with a fresh decoder
    /// to the same other sample rate or channel count.
    ///
    /// symphonia's MP3 decoder rejects a format change as malformed data,
    /// which would otherwise read as damaged packets. A single such packet
    /// is more likely junk that the MP3 reader took for a frame header.
    fn check_format_change(
        &mut self,
        packet: &Packet,
        err: &SymphoniaError,
    ) -> Result<(), SourceError> {
        if !matches!(err, SymphoniaError::DecodeError(_)) {
            return Ok(());
        }
        let params = self.decoder.codec_params().clone();
        let Ok(mut fresh) = make_decoder(&self.path, &params) else {
            return Ok(());
        };
        let Ok(decoded) = fresh.decode(packet) else {
            return Ok(());
        };
        let spec = decoded.spec();
        let packet = DecodedPacket {
            sample_rate: spec.rate,
            channels: spec.channels.count(),
        };
        let Err(changed) = self.check_format(&packet) else {
            return Ok(());
        };

        let run = match self.format_change_run {
            Some((format, count)) if format == packet.format() => count + 1,
            _ => 1,
        };
        self.format_change_run = Some((packet.format(), run));
        if run >= FORMAT_CHANGE_PACKETS {
            return Err(changed);
        }
        Ok(())
    }

    /// Handles an error from the codec. Damaged packets are skipped.
    fn handle_decoder_error(&mut self, err: SymphoniaError) -> Result<(), SourceError> {
        match err {
            // symphonia's bit readers return an IO error when a packet's bits
            // run out early, which is damage too.
            SymphoniaError::DecodeError(_) | SymphoniaError::IoError(_) => {
                self.record_failure(err.to_string())
            }
            SymphoniaError::ResetRequired => self.reset_decoder(),
            other => Err(SourceError::Decode {
                path: self.path.clone(),
                detail: other.to_string(),
            }),
        }
    }

    /// Counts a damaged packet, warns about the first few, and fails once
    /// [`MAX_CONSECUTIVE_FAILURES`] packets in a row were damaged.
    fn record_failure(&mut self, detail: String) -> Result<(), SourceError> {
        self.skipped_packets += 1;
        self.consecutive_failures += 1;
        if self.skipped_packets <= WARNED_SKIPS {
            tracing::warn!(
                path = %self.path.display(),
                frame = self.frames_decoded,
                error = %detail,
                "skipped a packet that failed to decode"
            );
        }
        self.last_failure = detail;
        if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
            return Err(self.corrupt_error());
        }
        Ok(())
    }

    /// Counts a jump in packet timestamps as a skipped packet. Some readers,
    /// such as symphonia's FLAC reader, drop a frame that fails its checksum
    /// and resync without returning an error, which leaves such a jump.
    fn check_timestamp_gap(&mut self, timestamp: u64, duration: u64) {
        if let Some(expected) = self.next_timestamp {
            if timestamp > expected {
                self.skipped_packets += 1;
                if self.skipped_packets <= WARNED_SKIPS {
                    tracing::warn!(
                        path = %self.path.display(),
                        frame = self.frames_decoded,
                        expected_timestamp = expected,
                        timestamp,
                        "audio is missing where the reader skipped damaged data"
                    );
                }
            }
        }
        self.next_timestamp = Some(timestamp + duration);
    }

    /// Marks the end of the stream. Fails when no audio decoded although
    /// packets failed or the header states a length, and warns when the
    /// stream is shorter than its header states.
    fn finish_stream(&mut self) -> Result<(), SourceError> {
        self.ended = true;
        if self.frames_decoded == 0 && self.consecutive_failures > 0 {
            return Err(self.corrupt_error());
        }
        if let Some(expected) = self.info.duration_frames.filter(|&n| n > 0) {
            if self.frames_decoded == 0 {
                return Err(SourceError::Corrupt {
                    path: self.path.clone(),
                    detail: format!("its header states {expected} frames but none decoded"),
                });
            }
        }
        if self.skipped_packets > WARNED_SKIPS {
            tracing::warn!(
                path = %self.path.display(),
                skipped = self.skipped_packets,
                "skipped packets that failed to decode"
            );
        }
        if let Some(expected) = self.info.duration_frames {
            if self.frames_decoded < expected && self.skipped_packets > 0 {
                tracing::warn!(
                    path = %self.path.display(),
                    decoded = self.frames_decoded,
                    expected,
                    skipped = self.skipped_packets,
                    "stream is shorter than the length in its header because damaged packets were skipped"
                );
            } else if self.frames_decoded < expected {
                tracing::warn!(
                    path = %self.path.display(),
                    decoded = self.frames_decoded,
                    expected,
                    "stream ended before the length in its header; the file may be truncated"
                );
            }
        }
        Ok(())
    }

    /// Recreates the decoder after the container changed its track list,
    /// as chained Ogg streams do.
    fn reset_decoder(&mut self) -> Result<(), SourceError> {
        let track = self
            .format
            .tracks()
            .iter()
            .find(|track| track.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or_else(|| SourceError::NoAudioTrack {
                path: self.path.clone(),
            })?;
        self.track_id = track.id;
        let params = track.codec_params.clone();
        self.decoder = make_decoder(&self.path, &params)?;
        self.frame_limit = frame_limit(&params).map(|frames| self.frames_decoded + frames);
        self.next_timestamp = None;
        Ok(())
    }

    fn corrupt_error(&self) -> SourceError {
        SourceError::Corrupt {
            path: self.path.clone(),
            detail: format!(
                "{} packets in a row failed to decode, the last with: {}",
                self.consecutive_failures, self.last_failure
            ),
        }
    }
}

/// Appends `decoded` as interleaved `f32` to `out` and returns the frames
/// appended. `sample_buffer` is scratch space, reallocated when too small.
fn copy_interleaved(
    decoded: AudioBufferRef<'_>,
    sample_buffer: &mut Option<SampleBuffer<f32>>,
    out: &mut Vec<f32>,
) -> usize {
    let spec = *decoded.spec();
    let needed = decoded.capacity() * spec.channels.count();
    let buffer = match sample_buffer {
        Some(buffer) if buffer.capacity() >= needed => buffer,
        slot => slot.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
    };
    buffer.copy_interleaved_ref(decoded);
    out.extend_from_slice(buffer.samples());
    buffer.len() / spec.channels.count().max(1)
}

/// Returns the stated frame count for Vorbis, where decoding stops.
///
/// The Ogg reader of symphonia 0.5.5 states the length from the last page's
/// granule position but does not trim the last Vorbis packet to it, so
/// decoding goes up to one block past the end. Other codecs trim their own
/// end or state only an estimate, which must not cut audio.
fn frame_limit(params: &CodecParameters) -> Option<u64> {
    if params.codec == CODEC_TYPE_VORBIS {
        params.n_frames
    } else {
        None
    }
}

/// Formats a sample rate and channel count for error messages.
fn describe_format(sample_rate: u32, channels: usize) -> String {
    format!("{sample_rate} Hz {channels} ch")
}

/// Opens `path` for reading and rejects directories and empty files.
fn open_file(path: &Path) -> Result<File, SourceError> {
    let metadata = fs::metadata(path).map_err(|err| io_error(path, err))?;
    if metadata.is_dir() {
        return Err(SourceError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    if metadata.len() == 0 {
        return Err(SourceError::Empty {
            path: path.to_path_buf(),
        });
    }
    File::open(path).map_err(|err| io_error(path, err))
}

fn io_error(path: &Path, err: io::Error) -> SourceError {
    let path = path.to_path_buf();
    match err.kind() {
        io::ErrorKind::NotFound => SourceError::NotFound { path },
        io::ErrorKind::PermissionDenied => SourceError::PermissionDenied { path },
        _ => SourceError::Io { path, source: err },
    }
}

/// Opens the file at `path` and probes its container format.
///
/// When probing fails on damaged data, it probes again without seeking.
/// The Ogg reader of symphonia 0.5.5 scans every page up to the end of a
/// seekable file to learn its length, and one page with a bad checksum fails
/// that scan. Without seeking the reader skips bad pages as it plays, but
/// the length stays unknown.
fn open_format(path: &Path) -> Result<Box<dyn FormatReader>, SourceError> {
    let file = open_file(path)?;
    let err = match probe(path, Box::new(file)) {
        Ok(format) => return Ok(format),
        Err(err @ SymphoniaError::DecodeError(_)) => err,
        Err(err) => return Err(probe_error(path, err)),
    };

    tracing::warn!(
        path = %path.display(),
        error = %err,
        "audio file is damaged; reading it again without seeking"
    );
    // NOTE: no test covers this path, because a damaged Ogg file needs more
    // than one audio page and the 0.5 s fixtures have only one.
    let file = open_file(path)?;
    probe(path, Box::new(Unseekable(file))).map_err(|_| probe_error(path, err))
}

fn probe(
    path: &Path,
    source: Box<dyn MediaSource>,
) -> Result<Box<dyn FormatReader>, SymphoniaError> {
    let mut hint = Hint::new();
    if let Some(extension) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(extension);
    }
    let stream = MediaSourceStream::new(source, Default::default());
    let format_options = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let probed = symphonia::default::get_probe().format(
        &hint,
        stream,
        &format_options,
        &MetadataOptions::default(),
    )?;
    Ok(probed.format)
}

/// File that symphonia treats as a stream it cannot seek in.
struct Unseekable(File);

impl io::Read for Unseekable {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl io::Seek for Unseekable {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

impl MediaSource for Unseekable {
    fn is_seekable(&self) -> bool {
        false
    }

    fn byte_len(&self) -> Option<u64> {
        None
    }
}

/// Maps a probe failure. No matching container format gives
/// [`SourceError::NotAudio`], while a known format with damaged or cut-off
/// headers gives [`SourceError::Corrupt`].
fn probe_error(path: &Path, err: SymphoniaError) -> SourceError {
    let path = path.to_path_buf();
    match err {
        SymphoniaError::Unsupported(detail) => SourceError::NotAudio {
            path,
            detail: detail.to_string(),
        },
        SymphoniaError::IoError(source) if source.kind() == io::ErrorKind::UnexpectedEof => {
            SourceError::Corrupt {
                path,
                detail: "the file ends inside its header".to_string(),
            }
        }
        SymphoniaError::IoError(source) => io_error(&path, source),
        SymphoniaError::DecodeError(detail) => SourceError::Corrupt {
            path,
            detail: detail.to_string(),
        },
        other => SourceError::Decode {
            path,
            detail: other.to_string(),
        },
    }
}

fn make_decoder(path: &Path, params: &CodecParameters) -> Result<Box<dyn Decoder>, SourceError> {
    let codecs = symphonia::default::get_codecs();
    let Some(descriptor) = codecs.get_codec(params.codec) else {
        return Err(SourceError::UnsupportedCodec {
            path: path.to_path_buf(),
            codec: format!("{}", params.codec),
        });
    };
    codecs
        .make(params, &DecoderOptions::default())
        .map_err(|err| match err {
            SymphoniaError::Unsupported(feature) => SourceError::UnsupportedCodec {
                path: path.to_path_buf(),
                codec: format!("{} ({feature})", descriptor.short_name),
            },
            other => SourceError::Decode {
                path: path.to_path_buf(),
                detail: other.to_string(),
            },
        })
}

/// Builds the info the container states. The decoded audio later replaces
/// the sample rate and channel count.
fn initial_info(params: &CodecParameters) -> SourceInfo {
    let lossless_depth = params.bits_per_sample.map(|bits| bits as u16);
    SourceInfo {
        sample_rate: params.sample_rate.unwrap_or(0),
        channels: params.channels.map_or(0, |c| c.count() as u16),
        bit_depth: lossless_depth.unwrap_or(LOSSY_BIT_DEPTH),
        duration_frames: params.n_frames,
        codec: symphonia::default::get_codecs()
            .get_codec(params.codec)
            .map_or_else(|| format!("{}", params.codec), |d| d.short_name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::convert::int_to_f32;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn read_all(source: &mut SourceDecoder) -> Vec<f32> {
        let mut out = Vec::new();
        while source.read(&mut out, 4096).unwrap() > 0 {}
        out
    }

    fn channel(samples: &[f32], channels: usize, index: usize) -> Vec<f32> {
        samples
            .iter()
            .skip(index)
            .step_by(channels)
            .copied()
            .collect()
    }

    fn rms(samples: &[f32]) -> f32 {
        (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt()
    }

    /// Estimates a tone's frequency in Hz from its rising zero crossings.
    fn tone_frequency(samples: &[f32], sample_rate: u32) -> f32 {
        let rising = samples
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        rising as f32 * sample_rate as f32 / samples.len() as f32
    }

    /// Returns the RMS difference between `samples`, which start at frame
    /// `start`, and a sine of amplitude 0.5 and phase 0 at frame 0. A shift
    /// of a few frames raises it well above the 0.02 of MP3 coding noise.
    fn tone_error(samples: &[f32], start: usize, frequency: f32, sample_rate: u32) -> f32 {
        let sum: f64 = samples
            .iter()
            .enumerate()
            .map(|(i, &sample)| {
                let t = (start + i) as f64 / sample_rate as f64;
                let ideal = 0.5 * (std::f64::consts::TAU * frequency as f64 * t).sin();
                (sample as f64 - ideal).powi(2)
            })
            .sum();
        (sum / samples.len() as f64).sqrt() as f32
    }

    /// Writes `values` as integer samples to a WAV file with hound.
    fn write_wav(path: &Path, rate: u32, channels: u16, bits: u16, values: &[i32]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for &value in values {
            match bits {
                8 => writer.write_sample(value as i8).unwrap(),
                16 => writer.write_sample(value as i16).unwrap(),
                _ => writer.write_sample(value).unwrap(),
            }
        }
        writer.finalize().unwrap();
    }

    /// Pseudo-random integer samples spread over the full range of `bits`.
    fn noise_values(count: usize, bits: u16) -> Vec<i32> {
        let mut state = 0x2545_F491u32;
        (0..count)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as i32) >> (32 - bits)
            })
            .collect()
    }

    #[test]
    fn wav_16_bit_stereo_bit_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let values = noise_values(3000 * 2, 16);
        write_wav(&path, 44100, 2, 16, &values);

        let mut source = SourceDecoder::open(&path).unwrap();
        let info = source.info().clone();
        assert_eq!(info.sample_rate, 44100);
        assert_eq!(info.channels, 2);
        assert_eq!(info.bit_depth, 16);
        assert_eq!(info.duration_frames, Some(3000));
        assert_eq!(info.codec, "pcm_s16le");
        let expected: Vec<f32> = values.iter().map(|&v| int_to_f32(v, 16)).collect();
        assert_eq!(read_all(&mut source), expected);
    }

    #[test]
    fn wav_24_bit_mono_bit_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let mut values = noise_values(5000, 24);
        values.extend([-(1 << 23), (1 << 23) - 1, 0, 1, -1]);
        write_wav(&path, 96000, 1, 24, &values);

        let mut source = SourceDecoder::open(&path).unwrap();
        assert_eq!(source.info().sample_rate, 96000);
        assert_eq!(source.info().channels, 1);
        assert_eq!(source.info().bit_depth, 24);
        let expected: Vec<f32> = values.iter().map(|&v| int_to_f32(v, 24)).collect();
        assert_eq!(read_all(&mut source), expected);
    }

    #[test]
    fn wav_8_and_32_bit_and_many_channels() {
        let dir = tempfile::tempdir().unwrap();
        for (bits, channels, rate) in [(8u16, 1u16, 8000u32), (32, 2, 48000), (16, 6, 22050)] {
            let path = dir.path().join(format!("{bits}.wav"));
            let values = noise_values(700 * channels as usize, bits);
            write_wav(&path, rate, channels, bits, &values);

            let mut source = SourceDecoder::open(&path).unwrap();
            assert_eq!(source.info().sample_rate, rate, "{bits}-bit rate");
            assert_eq!(source.info().channels, channels, "{bits}-bit channels");
            assert_eq!(source.info().bit_depth, bits, "{bits}-bit depth");
            let samples = read_all(&mut source);
            assert_eq!(samples.len(), values.len(), "{bits}-bit sample count");
            for (i, (&got, &value)) in samples.iter().zip(&values).enumerate() {
                let expected = int_to_f32(value, bits);
                assert!((got - expected).abs() < 1e-6, "{bits}-bit sample {i}");
            }
        }
    }

    #[test]
    fn read_respects_max_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        write_wav(&path, 48000, 2, 16, &noise_values(2500 * 2, 16));

        let mut source = SourceDecoder::open(&path).unwrap();
        let mut out = Vec::new();
        let mut counts = Vec::new();
        loop {
            let count = source.read(&mut out, 333).unwrap();
            if count == 0 {
                break;
            }
            counts.push(count);
        }
        assert!(counts.iter().all(|&c| c <= 333));
        assert_eq!(counts.iter().sum::<usize>(), 2500);
        assert_eq!(out.len(), 2500 * 2);
        assert_eq!(source.frames_read(), 2500);
        assert_eq!(source.read(&mut out, 10).unwrap(), 0, "end stays at end");
    }

    #[test]
    fn rewind_restarts_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        write_wav(&path, 48000, 1, 16, &noise_values(1500, 16));

        let mut source = SourceDecoder::open(&path).unwrap();
        let first = read_all(&mut source);
        source.rewind().unwrap();
        assert_eq!(source.frames_read(), 0);
        assert_eq!(read_all(&mut source), first);
    }

    #[test]
    fn rewind_rejects_replaced_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        write_wav(&path, 48000, 1, 16, &noise_values(100, 16));
        let mut source = SourceDecoder::open(&path).unwrap();
        write_wav(&path, 44100, 1, 16, &noise_values(100, 16));

        let err = source.rewind().unwrap_err();
        assert!(matches!(err, SourceError::FormatChanged { .. }), "{err}");
    }

    /// Checks a sine fixture: format, exact length, and the RMS, frequency
    /// and phase of each channel away from the edges.
    fn check_fixture(
        name: &str,
        rate: u32,
        channels: u16,
        bit_depth: u16,
        frames: u64,
        frequencies: &[f32],
    ) {
        let mut source = SourceDecoder::open(fixture(name)).unwrap();
        let info = source.info().clone();
        assert_eq!(info.sample_rate, rate, "{name} rate");
        assert_eq!(info.channels, channels, "{name} channels");
        assert_eq!(info.bit_depth, bit_depth, "{name} bit depth");

        let samples = read_all(&mut source);
        let decoded = samples.len() as u64 / channels as u64;
        assert_eq!(decoded, frames, "{name} decoded frames");
        assert_eq!(source.skipped_packets(), 0, "{name} skipped packets");

        let edge = rate as usize / 20;
        for (index, &frequency) in frequencies.iter().enumerate() {
            let plane = channel(&samples, channels as usize, index);
            let middle = &plane[edge..plane.len() - edge];
            let level = rms(middle);
            // A sine of amplitude 0.5 has an RMS of 0.354.
            assert!(
                (level - 0.354).abs() < 0.02,
                "{name} ch {index}: rms {level}"
            );
            let error = tone_error(middle, edge, frequency, rate);
            assert!(
                error < 0.05,
                "{name} ch {index}: rms error {error} against the tone"
            );
            let measured = tone_frequency(middle, rate);
            assert!(
                (measured - frequency).abs() < 10.0,
                "{name} ch {index}: {measured} Hz, expected {frequency} Hz"
            );
        }
    }

    #[test]
    fn flac_fixtures_decode() {
        check_fixture(
            "sine440_mono_44100_16bit.flac",
            44100,
            1,
            16,
            22050,
            &[440.0],
        );
        check_fixture(
            "sine440_660_stereo_48000_24bit.flac",
            48000,
            2,
            24,
            14400,
            &[440.0, 660.0],
        );
    }

    #[test]
    fn mp3_fixtures_decode() {
        // symphonia trims the encoder delay and padding that lame's tag states.
        check_fixture("sine440_mono_44100.mp3", 44100, 1, 16, 22050, &[440.0]);
        check_fixture(
            "sine440_660_stereo_48000.mp3",
            48000,
            2,
            16,
            14400,
            &[440.0, 660.0],
        );
    }

    #[test]
    fn vorbis_fixtures_decode() {
        check_fixture("sine440_mono_44100.ogg", 44100, 1, 16, 22050, &[440.0]);
        check_fixture(
            "sine440_660_stereo_48000.ogg",
            48000,
            2,
            16,
            14400,
            &[440.0, 660.0],
        );
    }

    #[test]
    fn missing_file_not_found() {
        let err = SourceDecoder::open("/nonexistent/dir/song.flac")
            .err()
            .unwrap();
        assert!(matches!(err, SourceError::NotFound { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("/nonexistent/dir/song.flac"), "{message}");
        assert!(message.contains("not found"), "{message}");
    }

    #[test]
    fn zero_length_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.wav");
        File::create(&path).unwrap();

        let err = SourceDecoder::open(&path).err().unwrap();
        assert!(matches!(err, SourceError::Empty { .. }), "{err}");
        assert!(err.to_string().contains("empty (0 bytes)"), "{err}");
    }

    #[test]
    fn directory_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let err = SourceDecoder::open(dir.path()).err().unwrap();
        assert!(matches!(err, SourceError::IsDirectory { .. }), "{err}");
    }

    #[test]
    fn unreadable_file_permission_denied() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.wav");
        write_wav(&path, 48000, 1, 16, &[0; 10]);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        if File::open(&path).is_ok() {
            // Root reads files regardless of their mode, so the case cannot occur.
            return;
        }

        let err = SourceDecoder::open(&path).err().unwrap();
        assert!(matches!(err, SourceError::PermissionDenied { .. }), "{err}");
    }

    #[test]
    fn text_file_is_not_audio() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.wav");
        fs::write(&path, "These are meeting notes, not audio.\n".repeat(50)).unwrap();

        let err = SourceDecoder::open(&path).err().unwrap();
        assert!(matches!(err, SourceError::NotAudio { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("notes.wav"), "{message}");
        assert!(message.contains("not a recognized audio file"), "{message}");
    }

    #[test]
    fn truncated_wav_reads_what_remains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let values = noise_values(10000 * 2, 16);
        write_wav(&path, 44100, 2, 16, &values);
        let bytes = fs::read(&path).unwrap();
        // Keep the 44-byte header, 4000 frames and half of the next frame.
        fs::write(&path, &bytes[..44 + 4000 * 4 + 2]).unwrap();

        let mut source = SourceDecoder::open(&path).unwrap();
        assert_eq!(source.info().duration_frames, Some(10000));
        let samples = read_all(&mut source);
        let frames = samples.len() / 2;
        assert!(frames <= 4000, "decoded {frames} frames");
        assert!(frames >= 3000, "decoded {frames} frames");
        let expected: Vec<f32> = values[..samples.len()]
            .iter()
            .map(|&v| int_to_f32(v, 16))
            .collect();
        assert_eq!(samples, expected);
    }

    #[test]
    fn truncated_wav_header_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        write_wav(&path, 44100, 2, 16, &noise_values(100, 16));
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..20]).unwrap();

        let err = SourceDecoder::open(&path).err().unwrap();
        assert!(matches!(err, SourceError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("ends inside its header"), "{err}");
    }

    #[test]
    fn wav_with_corrupted_middle_keeps_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        write_wav(&path, 44100, 1, 16, &noise_values(8000, 16));
        let mut bytes = fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle..middle + 1000].fill(0xAB);
        fs::write(&path, &bytes).unwrap();

        let mut source = SourceDecoder::open(&path).unwrap();
        let samples = read_all(&mut source);
        assert_eq!(
            samples.len(),
            8000,
            "pcm has no checksums, so all frames decode"
        );
        let garbage = int_to_f32(i16::from_le_bytes([0xAB, 0xAB]) as i32, 16);
        let index = (middle + 100 - 44) / 2;
        assert_eq!(samples[index], garbage);
    }

    #[test]
    fn flac_with_corrupted_middle_skips_packets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.flac");
        let mut bytes = fs::read(fixture("sine440_mono_44100_16bit.flac")).unwrap();
        let middle = bytes.len() / 2;
        for byte in &mut bytes[middle..middle + 200] {
            *byte ^= 0x5A;
        }
        fs::write(&path, &bytes).unwrap();

        let mut source = SourceDecoder::open(&path).unwrap();
        let samples = read_all(&mut source);
        assert!(
            source.skipped_packets() >= 1,
            "skipped {}",
            source.skipped_packets()
        );
        assert!(samples.len() > 11025, "decoded {} frames", samples.len());
        assert!(samples.len() < 22050, "decoded {} frames", samples.len());
    }

    #[test]
    fn mp3_rate_change_is_error() {
        let path = fixture("rate_change_44100_mono_to_48000_stereo.mp3");
        let mut source = SourceDecoder::open(&path).unwrap();
        let mut out = Vec::new();
        let err = loop {
            match source.read(&mut out, 4096) {
                Ok(0) => panic!(
                    "stream ended after {} frames without an error",
                    source.frames_read()
                ),
                Ok(_) => {}
                Err(err) => break err,
            }
        };
        assert!(matches!(err, SourceError::FormatChanged { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("44100 Hz 1 ch"), "{message}");
        assert!(message.contains("48000 Hz 2 ch"), "{message}");
        // Without a LAME tag nothing is trimmed, so the first part decodes
        // to five whole MP3 frames of 1152 samples.
        assert_eq!(source.frames_read(), 5 * 1152, "frames before the change");
        assert_eq!(out.len(), 5 * 1152, "samples before the change");
    }

    #[test]
    fn flac_fully_corrupt_is_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.flac");
        let mut bytes = fs::read(fixture("sine440_mono_44100_16bit.flac")).unwrap();
        let len = bytes.len();
        for byte in &mut bytes[len / 8..] {
            *byte ^= 0x5A;
        }
        fs::write(&path, &bytes).unwrap();

        // symphonia's FLAC reader drops every frame that fails its checksum,
        // so opening finds no audio at all.
        let err = SourceDecoder::open(&path).err().unwrap();
        assert!(matches!(err, SourceError::Corrupt { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("broken.flac"), "{message}");
        assert!(
            message.contains("22050 frames but none decoded"),
            "{message}"
        );
    }

    #[test]
    fn mp3_with_corrupted_middle_skips_packets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mp3");
        let mut bytes = fs::read(fixture("sine440_660_stereo_48000.mp3")).unwrap();
        let middle = bytes.len() / 2;
        for byte in &mut bytes[middle..middle + 300] {
            *byte ^= 0x5A;
        }
        fs::write(&path, &bytes).unwrap();

        let mut source = SourceDecoder::open(&path).unwrap();
        let frames = read_all(&mut source).len() / 2;
        assert!(
            source.skipped_packets() >= 1,
            "skipped {}",
            source.skipped_packets()
        );
        assert!(frames > 7200, "decoded {frames} frames");
        assert!(frames < 14400, "decoded {frames} frames");
    }
}
