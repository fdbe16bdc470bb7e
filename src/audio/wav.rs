//! WAV file output of integer PCM, with an optional text note chunk.
//!
//! [`WavWriter`] writes a RIFF WAVE file of 16-, 24- or 32-bit signed PCM. It
//! converts samples as [`encode_pcm`] does, so 16- and 24-bit audio that came
//! from integer PCM is written back bit-exact. The RIFF and `data` sizes are
//! patched about once per second of audio, so a process that is killed
//! leaves a file that readers accept with at most the last second missing.
//!
//! A writer made with [`WavWriter::create_with_note`] stores a UTF-8 note,
//! such as JSON with the server timestamp of the first frame, in a chunk
//! named `rsnt` before `data`. Readers skip chunks they do not know, and
//! [`read_note`] reads the note back.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::convert::{check_bit_depth, encode_pcm};

/// Four-character id of the chunk that stores the note.
pub const NOTE_CHUNK_ID: [u8; 4] = *b"rsnt";

/// Largest note [`read_note`] accepts, in bytes. It guards the allocation
/// against a corrupt chunk size.
const MAX_NOTE_BYTES: u32 = 1 << 20;

const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// `KSDATAFORMAT_SUBTYPE_PCM`, the sub-format GUID of integer PCM.
const SUBTYPE_PCM: [u8; 16] = [
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

/// Writer of a PCM WAV file.
///
/// Call [`finish`](Self::finish) to write the final sizes and see any error.
/// Dropping an unfinished writer finishes it too but only logs errors.
pub struct WavWriter {
    /// `None` once the file is finished.
    file: Option<BufWriter<File>>,
    path: PathBuf,
    sample_rate: u32,
    channels: u16,
    bit_depth: u16,
    /// File offset of the `data` chunk's size field.
    data_size_offset: u64,
    data_bytes: u64,
    frames_written: u64,
    frames_since_patch: u64,
    scratch: Vec<u8>,
}

impl WavWriter {
    /// Creates (or truncates) the WAV file at `path` for `channels`
    /// interleaved channels at `sample_rate` Hz with `bit_depth` bits per
    /// sample (16, 24 or 32) and writes its header.
    pub fn create(
        path: impl AsRef<Path>,
        sample_rate: u32,
        channels: u16,
        bit_depth: u16,
    ) -> io::Result<WavWriter> {
        Self::create_inner(path.as_ref(), sample_rate, channels, bit_depth, None)
    }

    /// Creates a WAV file like [`create`](Self::create) and stores `note` in
    /// an `rsnt` chunk before the audio. [`read_note`] returns it.
    pub fn create_with_note(
        path: impl AsRef<Path>,
        sample_rate: u32,
        channels: u16,
        bit_depth: u16,
        note: &str,
    ) -> io::Result<WavWriter> {
        Self::create_inner(path.as_ref(), sample_rate, channels, bit_depth, Some(note))
    }

    fn create_inner(
        path: &Path,
        sample_rate: u32,
        channels: u16,
        bit_depth: u16,
        note: Option<&str>,
    ) -> io::Result<WavWriter> {
        validate_format(path, sample_rate, channels, bit_depth)?;
        if let Some(note) = note {
            validate_note(path, note)?;
        }

        let file = File::create(path).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("failed to create {}: {err}", path.display()),
            )
        })?;
        let mut file = BufWriter::new(file);
        let mut header = Vec::new();
        write_header(&mut header, sample_rate, channels, bit_depth, note);
        file.write_all(&header)?;

        Ok(WavWriter {
            file: Some(file),
            path: path.to_path_buf(),
            sample_rate,
            channels,
            bit_depth,
            data_size_offset: header.len() as u64 - 4,
            data_bytes: 0,
            frames_written: 0,
            frames_since_patch: 0,
            scratch: Vec::new(),
        })
    }

    /// Path of the file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.frames_written
    }

    /// Appends interleaved `samples` (whole frames) as integer PCM.
    ///
    /// Fails when `samples` is not a whole number of frames or when the
    /// `data` chunk would grow past the 4 GiB limit of RIFF sizes.
    pub fn write(&mut self, samples: &[f32]) -> io::Result<()> {
        let channels = self.channels as usize;
        if !samples.len().is_multiple_of(channels) {
            return Err(invalid_input(format!(
                "{} samples are not whole frames of {channels} channels; \
                 pass complete frames to the wav writer for {}",
                samples.len(),
                self.path.display()
            )));
        }
        let new_bytes = (samples.len() * self.bit_depth as usize / 8) as u64;
        if self.data_bytes + new_bytes > self.max_data_bytes() {
            return Err(invalid_input(format!(
                "wav data of {} would exceed the 4 GiB riff size limit; start a new file",
                self.path.display()
            )));
        }

        self.scratch.clear();
        encode_pcm(samples, self.bit_depth, &mut self.scratch);
        let file = self.file.as_mut().ok_or_else(finished_error)?;
        file.write_all(&self.scratch)?;
        self.data_bytes += new_bytes;

        let frames = (samples.len() / channels) as u64;
        self.frames_written += frames;
        self.frames_since_patch += frames;
        if self.frames_since_patch >= self.sample_rate as u64 {
            self.patch_sizes(self.data_bytes)?;
            self.frames_since_patch = 0;
        }
        Ok(())
    }

    /// Writes the final RIFF and `data` sizes and closes the file.
    pub fn finish(mut self) -> io::Result<()> {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            return Ok(());
        }
        // RIFF pads a chunk of odd size to an even length.
        if self.data_bytes % 2 == 1 {
            self.file_mut()?.write_all(&[0])?;
        }
        self.patch_sizes(self.data_bytes + self.data_bytes % 2)?;
        let mut file = self.file.take().expect("file checked above");
        file.flush()
    }

    /// Writes the `data` size and a RIFF size covering `padded_data_bytes`
    /// of `data` payload, then returns to the end of the file.
    fn patch_sizes(&mut self, padded_data_bytes: u64) -> io::Result<()> {
        let data_size = self.data_bytes as u32;
        let riff_size = (self.data_size_offset + padded_data_bytes) as u32 - 4;
        let data_size_offset = self.data_size_offset;

        let file = self.file_mut()?;
        file.seek(SeekFrom::Start(4))?;
        file.write_all(&riff_size.to_le_bytes())?;
        file.seek(SeekFrom::Start(data_size_offset))?;
        file.write_all(&data_size.to_le_bytes())?;
        file.seek(SeekFrom::End(0))?;
        file.flush()
    }

    /// Largest `data` payload whose RIFF size, with the pad byte, fits in
    /// 32 bits.
    fn max_data_bytes(&self) -> u64 {
        u32::MAX as u64 - (self.data_size_offset - 4) - 1
    }

    fn file_mut(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.file.as_mut().ok_or_else(finished_error)
    }
}

impl Drop for WavWriter {
    fn drop(&mut self) {
        if let Err(err) = self.finish_inner() {
            tracing::warn!(path = %self.path.display(), error = %err, "failed to finish wav file");
        }
    }
}

fn validate_format(path: &Path, sample_rate: u32, channels: u16, bit_depth: u16) -> io::Result<()> {
    if sample_rate == 0 {
        return Err(invalid_input(format!(
            "invalid sample rate 0 Hz for {}; use a rate above 0",
            path.display()
        )));
    }
    if channels == 0 {
        return Err(invalid_input(format!(
            "invalid channel count 0 for {}; use 1 or more channels",
            path.display()
        )));
    }
    check_bit_depth(bit_depth)
        .map_err(|err| invalid_input(format!("cannot write {}: {err}", path.display())))
}

fn validate_note(path: &Path, note: &str) -> io::Result<()> {
    if note.len() as u64 >= MAX_NOTE_BYTES as u64 {
        return Err(invalid_input(format!(
            "note of {} bytes for {} exceeds the {MAX_NOTE_BYTES}-byte limit; shorten it",
            note.len(),
            path.display()
        )));
    }
    if note.contains('\0') {
        return Err(invalid_input(format!(
            "note for {} contains a NUL character, which marks padding; remove it",
            path.display()
        )));
    }
    Ok(())
}

/// Appends the RIFF header, `fmt ` chunk, optional note chunk and the
/// `data` chunk header with zero sizes, which later patches fill in.
///
/// Files with more than 2 channels or more than 16 bits use
/// `WAVE_FORMAT_EXTENSIBLE`, whose header carries the valid bit count and
/// speaker mask. hound 3.5 makes the same choice when it writes.
fn write_header(
    out: &mut Vec<u8>,
    sample_rate: u32,
    channels: u16,
    bit_depth: u16,
    note: Option<&str>,
) {
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(b"WAVE");

    let block_align = channels * (bit_depth / 8);
    let extensible = channels > 2 || bit_depth > 16;
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&(if extensible { 40u32 } else { 16 }).to_le_bytes());
    let format_tag = if extensible {
        WAVE_FORMAT_EXTENSIBLE
    } else {
        WAVE_FORMAT_PCM
    };
    out.extend_from_slice(&format_tag.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * block_align as u32).to_le_bytes());
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&bit_depth.to_le_bytes());
    if extensible {
        out.extend_from_slice(&22u16.to_le_bytes());
        out.extend_from_slice(&bit_depth.to_le_bytes());
        out.extend_from_slice(&speaker_mask(channels).to_le_bytes());
        out.extend_from_slice(&SUBTYPE_PCM);
    }

    if let Some(note) = note {
        write_note_chunk(out, note);
    }

    out.extend_from_slice(b"data");
    out.extend_from_slice(&0u32.to_le_bytes());
}

/// Appends the `rsnt` chunk. An odd-length note gets a NUL byte inside the
/// chunk, because some readers (hound 3.5) skip an odd chunk without its
/// RIFF pad byte.
fn write_note_chunk(out: &mut Vec<u8>, note: &str) {
    let padded_len = note.len() + note.len() % 2;
    out.extend_from_slice(&NOTE_CHUNK_ID);
    out.extend_from_slice(&(padded_len as u32).to_le_bytes());
    out.extend_from_slice(note.as_bytes());
    out.resize(out.len() + padded_len - note.len(), 0);
}

/// Channel mask that assigns the first `channels` speaker positions (front
/// left, front right, centre, LFE and so on), up to the 18 defined ones.
fn speaker_mask(channels: u16) -> u32 {
    let assigned = channels.min(18) as u32;
    ((1u64 << assigned) - 1) as u32
}

fn finished_error() -> io::Error {
    io::Error::other("wav writer is already finished")
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Reads the note that [`WavWriter::create_with_note`] stored in the WAV
/// file at `path`.
///
/// Returns `Ok(None)` when the file has no `rsnt` chunk before its `data`
/// chunk. Fails when the file is not RIFF WAVE or the note is not UTF-8.
pub fn read_note(path: impl AsRef<Path>) -> io::Result<Option<String>> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("failed to open {}: {err}", path.display()),
        )
    })?;
    let mut reader = io::BufReader::new(file);

    let mut riff_header = [0u8; 12];
    if reader.read_exact(&mut riff_header).is_err()
        || &riff_header[..4] != b"RIFF"
        || &riff_header[8..] != b"WAVE"
    {
        return Err(invalid_data(format!(
            "{} is not a riff wave file; pass a .wav file",
            path.display()
        )));
    }

    while let Some((id, size)) = read_chunk_header(&mut reader)? {
        if id == NOTE_CHUNK_ID {
            return read_note_payload(&mut reader, size, path).map(Some);
        }
        if &id == b"data" {
            break;
        }
        let padded = size as i64 + (size % 2) as i64;
        reader.seek_relative(padded)?;
    }
    Ok(None)
}

/// Reads an 8-byte chunk header, or returns `None` at the end of the file.
fn read_chunk_header(reader: &mut impl Read) -> io::Result<Option<([u8; 4], u32)>> {
    let mut header = [0u8; 8];
    match reader.read_exact(&mut header) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let id = [header[0], header[1], header[2], header[3]];
    let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    Ok(Some((id, size)))
}

fn read_note_payload(reader: &mut impl Read, size: u32, path: &Path) -> io::Result<String> {
    if size > MAX_NOTE_BYTES {
        return Err(invalid_data(format!(
            "rsnt chunk of {size} bytes in {} exceeds the {MAX_NOTE_BYTES}-byte limit; \
             the file is corrupt",
            path.display()
        )));
    }
    let mut payload = vec![0u8; size as usize];
    reader.read_exact(&mut payload).map_err(|err| {
        invalid_data(format!(
            "rsnt chunk in {} is truncated: {err}",
            path.display()
        ))
    })?;
    while payload.last() == Some(&0) {
        payload.pop();
    }
    String::from_utf8(payload).map_err(|err| {
        invalid_data(format!(
            "rsnt note in {} is not valid utf-8: {err}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::convert::int_to_f32;

    fn ramp(frames: usize, channels: usize, bits: u16) -> Vec<f32> {
        let max = (1i64 << (bits - 1)) - 1;
        (0..frames * channels)
            .map(|i| {
                let value = (i as i64 * 7919 % (2 * max)) - max;
                int_to_f32(value as i32, bits)
            })
            .collect()
    }

    fn read_ints(path: &Path) -> (hound::WavSpec, Vec<i32>) {
        let mut reader = hound::WavReader::open(path).unwrap();
        let spec = reader.spec();
        let samples = reader.samples::<i32>().map(Result::unwrap).collect();
        (spec, samples)
    }

    #[test]
    fn hound_reads_16_and_24_bit_exact() {
        let dir = tempfile::tempdir().unwrap();
        for (bits, channels) in [(16u16, 1u16), (16, 2), (24, 1), (24, 2), (24, 6)] {
            let path = dir.path().join(format!("{bits}-{channels}.wav"));
            let samples = ramp(1001, channels as usize, bits);
            let mut writer = WavWriter::create(&path, 44100, channels, bits).unwrap();
            writer.write(&samples).unwrap();
            writer.finish().unwrap();

            let (spec, ints) = read_ints(&path);
            assert_eq!(spec.sample_rate, 44100, "{bits}-bit {channels} ch rate");
            assert_eq!(spec.channels, channels, "{bits}-bit {channels} ch channels");
            assert_eq!(spec.bits_per_sample, bits, "{bits}-bit {channels} ch depth");
            let expected: Vec<i32> = samples
                .iter()
                .map(|&s| crate::audio::convert::f32_to_int(s, bits))
                .collect();
            assert_eq!(ints, expected, "{bits}-bit {channels} ch samples");
        }
    }

    #[test]
    fn hound_reads_32_bit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("32.wav");
        let mut writer = WavWriter::create(&path, 48000, 2, 32).unwrap();
        writer.write(&[0.5, -0.5, 1.0, -1.0]).unwrap();
        writer.finish().unwrap();

        let (spec, ints) = read_ints(&path);
        assert_eq!(spec.bits_per_sample, 32);
        assert_eq!(ints, [1 << 30, -(1 << 30), i32::MAX, i32::MIN]);
    }

    #[test]
    fn odd_data_length_is_padded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.wav");
        let mut writer = WavWriter::create(&path, 8000, 1, 24).unwrap();
        writer.write(&[0.25; 3]).unwrap();
        writer.finish().unwrap();

        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() % 2, 0, "file length is even");
        let riff_size = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
        assert_eq!(riff_size as usize, bytes.len() - 8);
        let (_, ints) = read_ints(&path);
        assert_eq!(ints, [1 << 21; 3]);
    }

    #[test]
    fn note_round_trips_and_hound_skips_it() {
        let dir = tempfile::tempdir().unwrap();
        for note in ["{\"first_frame_server_us\":1234567}", "odd", ""] {
            let path = dir.path().join("note.wav");
            let mut writer = WavWriter::create_with_note(&path, 48000, 2, 16, note).unwrap();
            writer.write(&[0.5, -0.5]).unwrap();
            writer.finish().unwrap();

            assert_eq!(read_note(&path).unwrap().as_deref(), Some(note));
            let (_, ints) = read_ints(&path);
            assert_eq!(ints, [16384, -16384], "samples after note {note:?}");
        }
    }

    #[test]
    fn read_note_absent_returns_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.wav");
        WavWriter::create(&path, 48000, 1, 16)
            .unwrap()
            .finish()
            .unwrap();

        assert_eq!(read_note(&path).unwrap(), None);
    }

    #[test]
    fn read_note_rejects_non_wav() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("text.wav");
        std::fs::write(&path, "hello, not audio").unwrap();

        let err = read_note(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("not a riff wave file"), "{err}");
    }

    #[test]
    fn create_rejects_bad_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.wav");
        let cases = [
            (0, 2, 16, "sample rate 0"),
            (48000, 0, 16, "channel count 0"),
            (48000, 2, 8, "bit depth 8"),
        ];
        for (rate, channels, bits, message) in cases {
            let err = WavWriter::create(&path, rate, channels, bits)
                .err()
                .unwrap();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{message}");
            assert!(err.to_string().contains(message), "{err}");
        }
        let err = WavWriter::create_with_note(&path, 48000, 2, 16, "a\0b")
            .err()
            .unwrap();
        assert!(err.to_string().contains("NUL"), "{err}");
    }

    #[test]
    fn write_rejects_partial_frame() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = WavWriter::create(dir.path().join("p.wav"), 48000, 2, 16).unwrap();
        let err = writer.write(&[0.1, 0.2, 0.3]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(writer.frames_written(), 0);
    }

    #[test]
    fn killed_writer_leaves_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("killed.wav");
        let mut writer = WavWriter::create_with_note(&path, 48000, 2, 16, "{}").unwrap();
        for _ in 0..25 {
            writer.write(&[0.25; 4800 * 2]).unwrap();
        }
        // Leaking the writer skips Drop and the buffered tail, as a kill does.
        std::mem::forget(writer);

        let (spec, ints) = read_ints(&path);
        assert_eq!(spec.channels, 2);
        assert_eq!(ints.len(), 2 * 48000 * 2, "sizes patched at the 2 s mark");
        assert!(ints.iter().all(|&v| v == 8192));
        assert_eq!(read_note(&path).unwrap().as_deref(), Some("{}"));
    }

    #[test]
    fn drop_finishes_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dropped.wav");
        {
            let mut writer = WavWriter::create(&path, 16000, 1, 16).unwrap();
            writer.write(&[0.5; 1234]).unwrap();
        }

        let (_, ints) = read_ints(&path);
        assert_eq!(ints.len(), 1234);
    }

    #[test]
    fn source_decoder_reads_back_bit_exact() {
        use crate::audio::source::SourceDecoder;
        let dir = tempfile::tempdir().unwrap();
        for (bits, channels) in [(16u16, 2u16), (24, 1), (24, 6)] {
            let path = dir.path().join(format!("{bits}-{channels}.wav"));
            let samples = ramp(777, channels as usize, bits);
            let mut writer =
                WavWriter::create_with_note(&path, 48000, channels, bits, "{\"t\":1}").unwrap();
            writer.write(&samples).unwrap();
            writer.finish().unwrap();

            let mut source = SourceDecoder::open(&path).unwrap();
            assert_eq!(source.info().channels, channels, "{bits}-bit {channels} ch");
            assert_eq!(source.info().bit_depth, bits, "{bits}-bit {channels} ch");
            let mut decoded = Vec::new();
            while source.read(&mut decoded, 1000).unwrap() > 0 {}
            assert_eq!(decoded, samples, "{bits}-bit {channels} ch samples");
        }
    }
}
