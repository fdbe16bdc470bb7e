//! Recording of played audio into WAV files.
//!
//! A [`Recorder`] receives every buffer the simulated sound card plays and
//! writes it in the stream's format (sample rate, channels, bit depth). A
//! file starts at the first frame taken from a chunk, so silence before the
//! first chunk is not written, but silence across gaps, underruns and
//! re-anchors inside the stream is. The file's `rsnt` note chunk is JSON:
//!
//! ```json
//! {"first_frame_server_us": 5000000, "format": "pcm 48000 Hz 2 ch 16-bit", "segment": 0}
//! ```
//!
//! A file ends when the stream ends or changes format. The next stream then
//! goes into a new file named with a numeric suffix before the extension:
//! `out.wav`, `out.1.wav`, `out.2.wav`, and so on. A path without an
//! extension gets `out`, `out.1`, and so on.

use std::path::{Path, PathBuf};

use crate::audio::wav::WavWriter;
use crate::audio::AudioFormat;
use crate::player::scheduler::FillReport;

use super::{OutputError, OutputSummary};

/// Returns the path of file number `segment` for the base path `path`.
///
/// Segment 0 is `path` itself. Later segments insert `.N` before the
/// extension, or append it when there is none.
pub fn segment_path(path: &Path, segment: u32) -> PathBuf {
    if segment == 0 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(extension) => format!("{stem}.{segment}.{}", extension.to_string_lossy()),
        None => format!("{stem}.{segment}"),
    };
    path.with_file_name(name)
}

/// Builds the JSON stored in a file's `rsnt` note chunk.
///
/// The JSON is padded with a trailing space to an even length, so the
/// chunk needs no NUL pad byte and its whole body parses as JSON.
fn note_json(first_frame_server_us: i64, format: &AudioFormat, segment: u32) -> String {
    let mut json = serde_json::json!({
        "first_frame_server_us": first_frame_server_us,
        "format": format.to_string(),
        "segment": segment,
    })
    .to_string();
    if json.len() % 2 == 1 {
        json.push(' ');
    }
    json
}

/// The file being written and the stream it belongs to.
struct Segment {
    writer: WavWriter,
    format: AudioFormat,
    stream_generation: u64,
}

/// Writes played buffers into WAV files, one file per stream and format.
pub struct Recorder {
    base_path: PathBuf,
    next_segment: u32,
    segment: Option<Segment>,
    summary: OutputSummary,
    /// The first write error. Recording stops after it.
    error: Option<OutputError>,
}

impl Recorder {
    /// Creates a recorder whose first file will be `base_path`. No file is
    /// created before the first audible frame.
    pub fn new(base_path: PathBuf) -> Self {
        Recorder {
            base_path,
            next_segment: 0,
            segment: None,
            summary: OutputSummary::default(),
            error: None,
        }
    }

    /// Records one played buffer of interleaved samples, described by the
    /// [`FillReport`] of the fill that produced it.
    pub fn record(&mut self, buffer: &[f32], report: &FillReport) {
        if self.error.is_some() {
            return;
        }
        if let Err(err) = self.record_inner(buffer, report) {
            tracing::error!(error = %err, "wav recording stopped");
            self.error = Some(err);
        }
    }

    fn record_inner(&mut self, buffer: &[f32], report: &FillReport) -> Result<(), OutputError> {
        let same_stream = self.segment.as_ref().is_some_and(|segment| {
            report.format == Some(segment.format)
                && report.stream_generation == segment.stream_generation
        });
        if !same_stream {
            self.finish_segment()?;
        }

        if let Some(segment) = self.segment.as_mut() {
            return segment
                .writer
                .write(buffer)
                .map_err(|source| OutputError::Wav {
                    path: segment.writer.path().to_path_buf(),
                    source,
                });
        }

        // No file is open, so recording starts at the buffer's first audible
        // frame, if it has one.
        let (Some(first_frame), Some(server_us), Some(format)) = (
            report.first_audio_frame,
            report.first_audio_server_us,
            report.format,
        ) else {
            return Ok(());
        };
        let segment = self.open_segment(format, report.stream_generation, server_us)?;
        let first_sample = first_frame * usize::from(format.channels);
        let audible = buffer.get(first_sample..).unwrap_or_default();
        segment
            .writer
            .write(audible)
            .map_err(|source| OutputError::Wav {
                path: segment.writer.path().to_path_buf(),
                source,
            })
    }

    fn open_segment(
        &mut self,
        format: AudioFormat,
        stream_generation: u64,
        first_frame_server_us: i64,
    ) -> Result<&mut Segment, OutputError> {
        let index = self.next_segment;
        let path = segment_path(&self.base_path, index);
        let note = note_json(first_frame_server_us, &format, index);
        let writer = WavWriter::create_with_note(
            &path,
            format.sample_rate,
            format.channels,
            format.bit_depth,
            &note,
        )
        .map_err(|source| OutputError::Wav {
            path: path.clone(),
            source,
        })?;
        tracing::info!(path = %path.display(), %format, first_frame_server_us, "recording started");
        self.next_segment += 1;
        Ok(self.segment.insert(Segment {
            writer,
            format,
            stream_generation,
        }))
    }

    /// Finishes the open file, if any, so that it is complete on disk.
    pub fn finish_segment(&mut self) -> Result<(), OutputError> {
        let Some(segment) = self.segment.take() else {
            return Ok(());
        };
        let path = segment.writer.path().to_path_buf();
        let frames = segment.writer.frames_written();
        segment.writer.finish().map_err(|source| OutputError::Wav {
            path: path.clone(),
            source,
        })?;
        tracing::info!(path = %path.display(), frames, "recording finished");
        self.summary.files.push(path);
        self.summary.frames_written += frames;
        Ok(())
    }

    /// Finishes the open file and returns the files written, or the first
    /// error met while recording.
    pub fn finish(mut self) -> Result<OutputSummary, OutputError> {
        if let Some(err) = self.error.take() {
            return Err(err);
        }
        self.finish_segment()?;
        Ok(self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_json_has_even_length() {
        let format = AudioFormat {
            codec: crate::audio::Codec::Pcm,
            sample_rate: 48_000,
            channels: 2,
            bit_depth: 24,
        };
        for timestamp in [0, 7, 10, 123, 1_821_312] {
            let note = note_json(timestamp, &format, 0);
            assert_eq!(note.len() % 2, 0, "{note:?}");
            serde_json::from_str::<serde_json::Value>(&note).unwrap();
        }
    }
    use crate::audio::wav::read_note;
    use crate::player::scheduler::PlaybackState;

    fn report(
        format: AudioFormat,
        generation: u64,
        first_audio: Option<(usize, i64)>,
    ) -> FillReport {
        FillReport {
            state: PlaybackState::Playing,
            clock_converged: true,
            first_audio_frame: first_audio.map(|(frame, _)| frame),
            first_audio_server_us: first_audio.map(|(_, server_us)| server_us),
            format: Some(format),
            stream_generation: generation,
            ..FillReport::default()
        }
    }

    fn read_samples(path: &Path) -> (hound::WavSpec, Vec<i16>) {
        let mut reader = hound::WavReader::open(path).unwrap();
        let spec = reader.spec();
        let samples = reader.samples::<i16>().map(Result::unwrap).collect();
        (spec, samples)
    }

    #[test]
    fn segment_path_suffixes() {
        assert_eq!(
            segment_path(Path::new("/tmp/out.wav"), 0),
            PathBuf::from("/tmp/out.wav")
        );
        assert_eq!(
            segment_path(Path::new("/tmp/out.wav"), 2),
            PathBuf::from("/tmp/out.2.wav")
        );
        assert_eq!(segment_path(Path::new("out"), 1), PathBuf::from("out.1"));
        assert_eq!(
            segment_path(Path::new("a.b.wav"), 1),
            PathBuf::from("a.b.1.wav")
        );
    }

    #[test]
    fn recorder_skips_leading_silence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.wav");
        let format = AudioFormat::pcm(48_000, 1, 16);
        let mut recorder = Recorder::new(path.clone());

        recorder.record(&[0.0; 4], &report(format, 1, None));
        recorder.record(&[0.0, 0.0, 0.5, -0.5], &report(format, 1, Some((2, 7_000))));
        recorder.record(&[0.0, 0.25], &report(format, 1, None));
        let summary = recorder.finish().unwrap();

        assert_eq!(summary.files, vec![path.clone()]);
        assert_eq!(summary.frames_written, 4);
        let (spec, samples) = read_samples(&path);
        assert_eq!(spec.sample_rate, 48_000);
        assert_eq!(spec.channels, 1);
        assert_eq!(spec.bits_per_sample, 16);
        assert_eq!(samples, vec![16_384, -16_384, 0, 8_192]);
        let note: serde_json::Value =
            serde_json::from_str(&read_note(&path).unwrap().unwrap()).unwrap();
        assert_eq!(note["first_frame_server_us"], 7_000);
        assert_eq!(note["format"], "pcm 48000 Hz 1 ch 16-bit");
    }

    #[test]
    fn recorder_splits_on_new_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.wav");
        let first = AudioFormat::pcm(48_000, 1, 16);
        let second = AudioFormat::pcm(44_100, 2, 24);
        let mut recorder = Recorder::new(path.clone());

        recorder.record(&[0.5, 0.5], &report(first, 1, Some((0, 1_000))));
        recorder.record(&[0.0; 4], &FillReport::default());
        recorder.record(
            &[0.25, 0.25, 0.0, 0.0],
            &report(second, 2, Some((0, 9_000))),
        );
        recorder.record(&[0.5, 0.5], &report(first, 3, Some((0, 20_000))));
        let summary = recorder.finish().unwrap();

        let second_path = dir.path().join("out.1.wav");
        let third_path = dir.path().join("out.2.wav");
        assert_eq!(
            summary.files,
            vec![path.clone(), second_path.clone(), third_path.clone()]
        );
        assert_eq!(read_samples(&path).1, vec![16_384, 16_384]);
        let spec = hound::WavReader::open(&second_path).unwrap().spec();
        assert_eq!(
            (spec.sample_rate, spec.channels, spec.bits_per_sample),
            (44_100, 2, 24)
        );
        let note: serde_json::Value =
            serde_json::from_str(&read_note(&third_path).unwrap().unwrap()).unwrap();
        assert_eq!(note["first_frame_server_us"], 20_000);
        assert_eq!(note["segment"], 2);
    }

    #[test]
    fn recorder_reports_create_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("out.wav");
        let format = AudioFormat::pcm(48_000, 1, 16);
        let mut recorder = Recorder::new(path.clone());

        recorder.record(&[0.5], &report(format, 1, Some((0, 0))));

        let err = recorder.finish().unwrap_err();
        assert!(
            matches!(err, OutputError::Wav { path: ref failed, .. } if *failed == path),
            "{err}"
        );
    }
}
