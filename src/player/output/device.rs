//! Sound card output through cpal 0.18.
//!
//! A control thread opens a cpal output stream in the active stream's
//! format, reopens it when the format changes and closes it while no stream
//! is active. The device must support the stream's sample rate and channel
//! count, because the player does not resample. The client should offer the
//! server only formats the device supports. Any cpal sample format works,
//! since samples are converted from `f32` in the callback.
//!
//! The callback computes when its first frame will be heard as
//! `now_us() + (playback - callback)`, from the timestamps in
//! [`cpal::OutputCallbackInfo`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{
    FromSample, OutputCallbackInfo, SampleFormat, SizedSample, StreamConfig,
    SupportedStreamConfigRange,
};

use crate::audio::AudioFormat;
use crate::clock::now_us;
use crate::player::scheduler::Scheduler;

use super::sync_log::{BlockRecord, SyncLog};
use super::{ClockSource, OutputError, OutputSummary, OutputThread, StopFlag};

/// The sync log and its block count, shared by the streams the output
/// opens one after another. The callback only tries the lock, so it never
/// waits for it.
type SharedSyncLog = Arc<Mutex<(SyncLog, u64)>>;

/// Interval at which the control thread checks the stream format and the
/// stop flag.
const CONTROL_POLL: Duration = Duration::from_millis(20);

/// `f32` samples allocated up front for the callback's conversion buffer.
/// Larger callbacks grow it once.
const INITIAL_CALLBACK_SAMPLES: usize = 16_384;

/// An output device as [`list_devices`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Human-readable name, usable as `device:NAME`.
    pub name: String,
    /// Stable cpal id such as `alsa:hw:0,0`, also usable as `device:NAME`.
    pub id: String,
    /// Whether this is the host's default output device.
    pub is_default: bool,
    /// The device's default output configuration, if it reports one.
    pub default_config: Option<DeviceConfig>,
    /// Supported output configurations.
    pub supported: Vec<SupportedRange>,
}

/// One output configuration of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u16,
    /// cpal sample format, such as `f32` or `i16`.
    pub sample_format: String,
}

/// A range of sample rates that a device supports for one channel count and
/// sample format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupportedRange {
    /// Channel count.
    pub channels: u16,
    /// Lowest sample rate in Hz.
    pub min_sample_rate: u32,
    /// Highest sample rate in Hz.
    pub max_sample_rate: u32,
    /// cpal sample format, such as `f32` or `i16`.
    pub sample_format: String,
}

fn backend_error(action: &'static str, err: impl std::fmt::Display) -> OutputError {
    OutputError::Backend {
        action,
        message: err.to_string(),
    }
}

fn device_name(device: &cpal::Device) -> String {
    match device.description() {
        Ok(description) => description.name().to_string(),
        Err(_) => device_id(device),
    }
}

fn device_id(device: &cpal::Device) -> String {
    device.id().map(|id| id.to_string()).unwrap_or_default()
}

/// Lists the output devices of cpal's default host.
///
/// Returns an empty list on a machine without sound cards, or an
/// [`OutputError::Backend`] when the host cannot enumerate devices.
pub fn list_devices() -> Result<Vec<DeviceInfo>, OutputError> {
    let host = cpal::default_host();
    let default_id = host
        .default_output_device()
        .map(|device| device_id(&device));
    let devices = host
        .output_devices()
        .map_err(|err| backend_error("list output devices", err))?;
    let infos = devices
        .map(|device| describe(&device, default_id.as_deref()))
        .collect();
    Ok(infos)
}

fn describe(device: &cpal::Device, default_id: Option<&str>) -> DeviceInfo {
    let id = device_id(device);
    let default_config = device
        .default_output_config()
        .ok()
        .map(|config| DeviceConfig {
            sample_rate: config.sample_rate(),
            channels: config.channels(),
            sample_format: config.sample_format().to_string(),
        });
    let supported = device
        .supported_output_configs()
        .map(|ranges| ranges.map(|range| supported_range(&range)).collect())
        .unwrap_or_default();
    DeviceInfo {
        name: device_name(device),
        is_default: default_id == Some(id.as_str()),
        id,
        default_config,
        supported,
    }
}

fn supported_range(range: &SupportedStreamConfigRange) -> SupportedRange {
    SupportedRange {
        channels: range.channels(),
        min_sample_rate: range.min_sample_rate(),
        max_sample_rate: range.max_sample_rate(),
        sample_format: range.sample_format().to_string(),
    }
}

/// Finds the default output device, or the one whose name or id is `name`.
fn find_device(name: Option<&str>) -> Result<cpal::Device, OutputError> {
    let host = cpal::default_host();
    let Some(name) = name else {
        let device = host
            .default_output_device()
            .ok_or(OutputError::NoDefaultDevice)?;
        // ALSA reports a "default" device even without a sound card, so a
        // device that has no output configuration counts as missing.
        let usable = device
            .supported_output_configs()
            .is_ok_and(|mut ranges| ranges.next().is_some());
        return if usable {
            Ok(device)
        } else {
            Err(OutputError::NoDefaultDevice)
        };
    };

    let devices: Vec<cpal::Device> = host
        .output_devices()
        .map_err(|err| backend_error("list output devices", err))?
        .collect();
    let found = devices
        .iter()
        .find(|device| device_name(device) == name || device_id(device) == name);
    match found {
        Some(device) => Ok(device.clone()),
        None => {
            let names: Vec<String> = devices.iter().map(device_name).collect();
            let available = if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            };
            Err(OutputError::DeviceNotFound {
                name: name.to_string(),
                available,
            })
        }
    }
}

/// Finds the device and spawns the control thread that plays to it until
/// `stop` is set.
pub(super) fn spawn(
    name: Option<&String>,
    sync_log: Option<SyncLog>,
    scheduler: Arc<Scheduler>,
    clock: Arc<dyn ClockSource>,
    stop: StopFlag,
) -> Result<OutputThread, OutputError> {
    let device = find_device(name.map(String::as_str))?;
    let sync_log = sync_log.map(|log| Arc::new(Mutex::new((log, 0))));
    let run = move || {
        run_control(&device, &scheduler, &clock, sync_log.as_ref(), &stop);
        Ok(OutputSummary::default())
    };
    std::thread::Builder::new()
        .name("device-output".into())
        .spawn(run)
        .map_err(|err| {
            OutputError::Thread(format!("failed to spawn the device output thread: {err}"))
        })
}

/// Keeps one cpal stream open in the active stream's format until `stop` is
/// set.
fn run_control(
    device: &cpal::Device,
    scheduler: &Arc<Scheduler>,
    clock: &Arc<dyn ClockSource>,
    sync_log: Option<&SharedSyncLog>,
    stop: &StopFlag,
) {
    let name = device_name(device);
    let mut open: Option<(AudioFormat, cpal::Stream)> = None;
    // A format the device rejected, so it is not retried every poll.
    let mut rejected: Option<AudioFormat> = None;
    while !stop.is_set() {
        let wanted = scheduler.format();
        let open_format = open.as_ref().map(|(format, _)| *format);
        if wanted != open_format {
            // Dropping the stream stops it before another one opens.
            open = None;
            if let Some(format) = wanted.filter(|format| rejected != Some(*format)) {
                match open_stream(
                    device,
                    format,
                    scheduler.clone(),
                    clock.clone(),
                    sync_log.cloned(),
                ) {
                    Ok(stream) => {
                        tracing::info!(device = %name, %format, "audio output started");
                        open = Some((format, stream));
                        rejected = None;
                    }
                    Err(err) => {
                        tracing::error!(device = %name, %format, error = %err, "failed to open the audio output; playing nothing");
                        rejected = Some(format);
                    }
                }
            }
        }
        std::thread::park_timeout(CONTROL_POLL);
    }
}

/// Picks the device configuration for `format`: the right channel count and
/// sample rate, with the best sample format by cpal's default ranking
/// (`f32` first, then wider integers).
fn pick_config(
    device: &cpal::Device,
    format: AudioFormat,
) -> Result<(StreamConfig, SampleFormat), OutputError> {
    let ranges = device
        .supported_output_configs()
        .map_err(|err| backend_error("read supported output configurations", err))?;
    let best = ranges
        .filter(|range| range.channels() == format.channels && range.contains_rate(format.sample_rate))
        .max_by(|left, right| left.cmp_default_heuristics(right))
        .ok_or_else(|| OutputError::Backend {
            action: "open an output stream",
            message: format!(
                "the device does not support {} Hz with {} channels; offer the server a format the device supports",
                format.sample_rate, format.channels
            ),
        })?;
    let config = best.with_sample_rate(format.sample_rate);
    Ok((config.config(), config.sample_format()))
}

fn open_stream(
    device: &cpal::Device,
    format: AudioFormat,
    scheduler: Arc<Scheduler>,
    clock: Arc<dyn ClockSource>,
    sync_log: Option<SharedSyncLog>,
) -> Result<cpal::Stream, OutputError> {
    let (config, sample_format) = pick_config(device, format)?;
    let stream = match sample_format {
        SampleFormat::F32 => build::<f32>(device, config, format, scheduler, clock, sync_log),
        SampleFormat::F64 => build::<f64>(device, config, format, scheduler, clock, sync_log),
        SampleFormat::I32 => build::<i32>(device, config, format, scheduler, clock, sync_log),
        SampleFormat::I24 => build::<cpal::I24>(device, config, format, scheduler, clock, sync_log),
        SampleFormat::I16 => build::<i16>(device, config, format, scheduler, clock, sync_log),
        SampleFormat::I8 => build::<i8>(device, config, format, scheduler, clock, sync_log),
        SampleFormat::U32 => build::<u32>(device, config, format, scheduler, clock, sync_log),
        SampleFormat::U16 => build::<u16>(device, config, format, scheduler, clock, sync_log),
        SampleFormat::U8 => build::<u8>(device, config, format, scheduler, clock, sync_log),
        other => Err(OutputError::Backend {
            action: "open an output stream",
            message: format!("sample format {other} is not supported by the player"),
        }),
    }?;
    stream
        .play()
        .map_err(|err| backend_error("start the output stream", err))?;
    Ok(stream)
}

fn build<T>(
    device: &cpal::Device,
    config: StreamConfig,
    format: AudioFormat,
    scheduler: Arc<Scheduler>,
    clock: Arc<dyn ClockSource>,
    sync_log: Option<SharedSyncLog>,
) -> Result<cpal::Stream, OutputError>
where
    T: SizedSample + FromSample<f32>,
{
    let mut scratch = vec![0.0_f32; INITIAL_CALLBACK_SAMPLES];
    let callback = move |data: &mut [T], info: &OutputCallbackInfo| {
        let timestamp = info.timestamp();
        let latency = timestamp
            .playback
            .saturating_duration_since(timestamp.callback);
        let heard_at_us = now_us() + latency.as_micros() as i64;
        if scratch.len() < data.len() {
            scratch.resize(data.len(), 0.0);
        }
        let buffer = &mut scratch[..data.len()];
        let snapshot = clock.snapshot();
        let report = scheduler.fill_expecting(buffer, heard_at_us, &snapshot, &format);
        if let Some(Ok(mut log)) = sync_log.as_ref().map(|log| log.try_lock()) {
            let frames = data.len() / usize::from(format.channels.max(1));
            let block = log.1;
            log.0.record(BlockRecord::new(
                block,
                heard_at_us,
                frames,
                &report,
                &snapshot,
            ));
            log.1 += 1;
        }
        for (out, &sample) in data.iter_mut().zip(buffer.iter()) {
            *out = T::from_sample(sample);
        }
    };
    let errors = AtomicU64::new(0);
    let on_error = move |err: cpal::Error| {
        // Count repeats and log only the 1st, 2nd, 4th, 8th, ... occurrence.
        let count = errors.fetch_add(1, Ordering::Relaxed) + 1;
        if count.is_power_of_two() {
            tracing::warn!(error = %err, count, "audio output stream error");
        }
    };
    device
        .build_output_stream(config, callback, on_error, None)
        .map_err(|err| backend_error("open an output stream", err))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test machine may have no sound card, so listing may return an
    /// empty list or an error. Every listed device needs a name or an id to
    /// be selectable.
    #[test]
    fn list_devices_without_panic() {
        match list_devices() {
            Ok(devices) => {
                for device in devices {
                    assert!(
                        !device.name.is_empty() || !device.id.is_empty(),
                        "{device:?}"
                    );
                }
            }
            Err(err) => assert!(err.to_string().contains("list output devices"), "{err}"),
        }
    }

    #[test]
    fn unknown_device_lists_alternatives() {
        let name = "no such device for resonate tests";
        match find_device(Some(name)) {
            Err(OutputError::DeviceNotFound {
                name: missing,
                available,
            }) => {
                assert_eq!(missing, name);
                assert!(!available.is_empty());
            }
            Err(OutputError::Backend { .. }) => {}
            other => panic!(
                "expected a missing device, got {:?}",
                other.map(|device| device_name(&device))
            ),
        }
    }
}
