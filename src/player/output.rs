//! Audio outputs that pull samples from a [`Scheduler`].
//!
//! An [`OutputSpec`] names where audio goes: the default sound card, a named
//! sound card, a WAV file or nowhere. [`Output::start`] runs it on its own
//! thread or audio callback, which calls [`Scheduler::fill_expecting`] with
//! the local time at which the first frame of each buffer will be heard.
//!
//! * `default` and `device:NAME` open a cpal output stream in the stream's
//!   format and take the latency from the callback timestamps.
//! * `wav:PATH` and `null` run a simulated sound card on the local monotonic
//!   clock (see [`simulated`]). `wav:PATH` records what it plays, starting at
//!   the first audible frame of each stream (see [`recorder`]).
//!
//! Dropping an [`Output`] stops it and finishes its files.

pub mod device;
pub mod recorder;
pub mod simulated;
pub mod sync_log;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::scheduler::Scheduler;
use crate::sync::ClockSnapshot;

pub use device::{list_devices, DeviceConfig, DeviceInfo, SupportedRange};
pub use simulated::{SinkModel, BLOCK_US, SIMULATED_LATENCY_US};
pub use sync_log::{read_sync_log, BlockRecord, SyncLog};

/// Valid forms of an output value, for error and help texts.
pub const OUTPUT_FORMS: &str = "default, device:NAME, wav:PATH or null";

/// Destination of the player's audio, parsed from the `--output` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputSpec {
    /// The default output device of cpal's default host.
    Default,
    /// The output device whose name or id is this string.
    Device(String),
    /// A WAV file at this path, fed by a simulated sound card.
    Wav(PathBuf),
    /// A simulated sound card whose audio is discarded.
    Null,
}

impl fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputSpec::Default => f.write_str("default"),
            OutputSpec::Device(name) => write!(f, "device:{name}"),
            OutputSpec::Wav(path) => write!(f, "wav:{}", path.display()),
            OutputSpec::Null => f.write_str("null"),
        }
    }
}

/// An `--output` value that matches none of the [`OUTPUT_FORMS`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid output {value:?}: {reason}; expected {OUTPUT_FORMS}")]
pub struct ParseOutputSpecError {
    /// The rejected value.
    pub value: String,
    /// Reason the value was rejected.
    pub reason: &'static str,
}

impl FromStr for OutputSpec {
    type Err = ParseOutputSpecError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| ParseOutputSpecError {
            value: value.to_string(),
            reason,
        };
        match value {
            "default" => return Ok(OutputSpec::Default),
            "null" => return Ok(OutputSpec::Null),
            _ => {}
        }
        if let Some(name) = value.strip_prefix("device:") {
            if name.is_empty() {
                return Err(invalid("the device name is missing"));
            }
            return Ok(OutputSpec::Device(name.to_string()));
        }
        if let Some(path) = value.strip_prefix("wav:") {
            if path.is_empty() {
                return Err(invalid("the wav path is missing"));
            }
            return Ok(OutputSpec::Wav(PathBuf::from(path)));
        }
        Err(invalid("unknown output kind"))
    }
}

/// A source of clock snapshots for an output, read once per buffer.
///
/// Implemented for [`crate::sync::SharedClock`] and, for tests and fixed
/// offsets, for a constant [`ClockSnapshot`].
pub trait ClockSource: Send + Sync + 'static {
    /// Returns the latest estimate of the server clock.
    fn snapshot(&self) -> ClockSnapshot;
}

impl ClockSource for ClockSnapshot {
    fn snapshot(&self) -> ClockSnapshot {
        *self
    }
}

impl ClockSource for crate::sync::SharedClock {
    fn snapshot(&self) -> ClockSnapshot {
        crate::sync::SharedClock::snapshot(self)
    }
}

/// Errors from starting or running an output.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// `default` was requested but the host has no usable output device.
    #[error("no audio output device found; use --output wav:PATH or --output null")]
    NoDefaultDevice,
    /// `device:NAME` matched no output device.
    #[error("output device {name:?} not found; available output devices: {available}")]
    DeviceNotFound {
        /// The requested name.
        name: String,
        /// Names of the devices found, comma-separated, or "none".
        available: String,
    },
    /// The audio back end failed.
    #[error("audio back end failed to {action}: {message}")]
    Backend {
        /// Operation that failed, such as "list output devices".
        action: &'static str,
        /// The back end's error message.
        message: String,
    },
    /// A WAV file could not be created or written.
    #[error("failed to write the WAV output {}", path.display())]
    Wav {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The output thread could not be spawned or panicked.
    #[error("audio output thread failed: {0}")]
    Thread(String),
}

/// Files written by a stopped output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputSummary {
    /// WAV files finished, in the order they were started.
    pub files: Vec<PathBuf>,
    /// Frames written to those files in total.
    pub frames_written: u64,
}

/// Stop flag shared between an [`Output`] and its thread.
#[derive(Clone, Debug, Default)]
pub(crate) struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

type OutputThread = JoinHandle<Result<OutputSummary, OutputError>>;

/// Settings of an output beyond its [`OutputSpec`].
#[derive(Default)]
pub struct OutputOptions {
    /// Clock drift and latency of the simulated card behind `wav:` and
    /// `null`. Sound cards report their own latency and ignore it.
    pub sink: SinkModel,
    /// Log of every block the output renders.
    pub sync_log: Option<SyncLog>,
}

/// A running output. It owns its thread and stops it when dropped.
pub struct Output {
    spec: OutputSpec,
    stop: StopFlag,
    thread: Option<OutputThread>,
}

impl Output {
    /// Starts the output named by `spec`, pulling audio from `scheduler` and
    /// clock estimates from `clock`.
    ///
    /// Device outputs fail here when no matching device exists, with
    /// [`OutputError::NoDefaultDevice`] or [`OutputError::DeviceNotFound`].
    /// WAV files are created later, at the first audible frame of a stream.
    pub fn start(
        spec: &OutputSpec,
        scheduler: Arc<Scheduler>,
        clock: impl ClockSource,
    ) -> Result<Output, OutputError> {
        Self::start_with(spec, OutputOptions::default(), scheduler, clock)
    }

    /// Starts the output like [`Output::start`], with the sync log and,
    /// for `wav:` and `null`, the simulated card described by `options`.
    /// Sound cards take their latency from cpal's timestamps instead.
    pub fn start_with(
        spec: &OutputSpec,
        options: OutputOptions,
        scheduler: Arc<Scheduler>,
        clock: impl ClockSource,
    ) -> Result<Output, OutputError> {
        let stop = StopFlag::default();
        let clock: Arc<dyn ClockSource> = Arc::new(clock);
        let thread = match spec {
            OutputSpec::Default => {
                device::spawn(None, options.sync_log, scheduler, clock, stop.clone())?
            }
            OutputSpec::Device(name) => {
                device::spawn(Some(name), options.sync_log, scheduler, clock, stop.clone())?
            }
            OutputSpec::Wav(path) => {
                let recorder = recorder::Recorder::new(path.clone());
                simulated::spawn(Some(recorder), options, scheduler, clock, stop.clone())?
            }
            OutputSpec::Null => simulated::spawn(None, options, scheduler, clock, stop.clone())?,
        };
        Ok(Output {
            spec: spec.clone(),
            stop,
            thread: Some(thread),
        })
    }

    /// Returns the spec this output was started from.
    pub fn spec(&self) -> &OutputSpec {
        &self.spec
    }

    /// Stops the output, finishes its files and returns what it wrote.
    ///
    /// Returns the first error the output thread met, such as a failed WAV
    /// write.
    pub fn stop(mut self) -> Result<OutputSummary, OutputError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<OutputSummary, OutputError> {
        let Some(thread) = self.thread.take() else {
            return Ok(OutputSummary::default());
        };
        self.stop.set();
        thread.thread().unpark();
        thread
            .join()
            .map_err(|_| OutputError::Thread(format!("the {} output thread panicked", self.spec)))?
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Err(err) = self.stop_and_join() {
            tracing::error!(output = %self.spec, error = %err, "audio output stopped with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_valid_forms() {
        let cases = [
            ("default", OutputSpec::Default),
            ("null", OutputSpec::Null),
            ("device:hw:0,0", OutputSpec::Device("hw:0,0".into())),
            ("wav:/tmp/out.wav", OutputSpec::Wav("/tmp/out.wav".into())),
            ("wav:C:\\out.wav", OutputSpec::Wav("C:\\out.wav".into())),
        ];
        for (value, expected) in cases {
            assert_eq!(value.parse::<OutputSpec>(), Ok(expected.clone()), "{value}");
            assert_eq!(expected.to_string(), value, "display of {value}");
        }
    }

    #[test]
    fn spec_rejects_invalid_forms() {
        for value in [
            "",
            "speaker",
            "wav:",
            "device:",
            "Default",
            "file:/tmp/x.wav",
        ] {
            let err = value.parse::<OutputSpec>().unwrap_err();
            assert_eq!(err.value, value);
            let message = err.to_string();
            assert!(message.contains(&format!("{value:?}")), "{message}");
            assert!(message.contains(OUTPUT_FORMS), "{message}");
        }
    }
}
