//! Kalman filter that estimates the server clock from `client/time` and
//! `server/time` exchanges.
//!
//! Each exchange carries four timestamps in microseconds: the client sends
//! at T1 (`client_transmitted`, local clock), the server receives at T2
//! (`server_received`) and replies at T3 (`server_transmitted`, both server
//! clock), and the client receives the reply at T4 (`client_received`). If
//! the two network paths are equally long, the exchange measures
//!
//! - offset = ((T2 − T1) + (T3 − T4)) / 2, server minus local time, and
//! - max_error = ((T4 − T1) − (T3 − T2)) / 2, half the round-trip delay,
//!   which bounds the offset error however unequal the paths are.
//!
//! [`TimeFilter`] tracks the state (offset, drift) with a two-state Kalman
//! filter, where drift is the rate of change of the offset in µs per µs. It
//! follows the Sendspin time-filter design (`docs/theory.md` in the
//! `Sendspin-Protocol/time-filter` repository):
//!
//! - The first measurement sets the offset, the second sets the drift from
//!   the finite difference, and later ones go through the usual predict and
//!   update steps with measurement variance max_error².
//! - Offset and drift each follow a random walk whose variance grows in
//!   proportion to elapsed time.
//! - After a warm-up, a residual larger than a fraction of max_error scales
//!   the predicted covariance by λ² (adaptive forgetting), so the filter
//!   follows a changed clock rate faster.
//!
//! Two points differ from the Python port of that design in
//! `aiosendspin/client/time_sync.py` of `Sendspin/aiosendspin`. The initial
//! drift variance divides by dt², as the theory requires, and forgetting
//! compares the magnitude of the residual, so a clock that falls behind is
//! followed as fast as one that runs ahead.
//!
//! [`SharedClock`] publishes each new [`ClockSnapshot`] to readers in other
//! tasks.

use tokio::sync::watch;

use super::ClockSnapshot;

/// Number of prediction standard deviations added to max_error in
/// [`Innovation::bound_us`], so that a correct model exceeds the bound only
/// rarely.
const PREDICTION_SIGMAS: f64 = 3.0;

/// Timestamps of one `client/time` and `server/time` exchange, in
/// microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// T1: local time at which the client sent `client/time`.
    pub client_transmitted: i64,
    /// T2: server time at which the server received `client/time`.
    pub server_received: i64,
    /// T3: server time at which the server sent `server/time`.
    pub server_transmitted: i64,
    /// T4: local time at which the client received `server/time`.
    pub client_received: i64,
}

/// Reasons why a measurement cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MeasurementError {
    /// T4 is earlier than T1 on the local monotonic clock.
    #[error(
        "client receive time {client_received} µs is earlier than client transmit time \
         {client_transmitted} µs; pass local monotonic timestamps"
    )]
    ReceivedBeforeSent {
        client_transmitted: i64,
        client_received: i64,
    },
    /// T3 is earlier than T2, so the server reported a negative hold time.
    #[error(
        "server transmit time {server_transmitted} µs is earlier than server receive time \
         {server_received} µs"
    )]
    NegativeServerHold {
        server_received: i64,
        server_transmitted: i64,
    },
    /// The server hold time (T3 − T2) is longer than the local round trip
    /// (T4 − T1).
    #[error(
        "round-trip delay is negative ({delay_us} µs) because the server hold time exceeds \
         the local round trip"
    )]
    NegativeDelay { delay_us: i64 },
    /// The measurement is not later than the one the filter used last.
    #[error(
        "measurement at local time {local_us} µs is not later than the previous one at \
         {previous_local_us} µs"
    )]
    OutOfOrder {
        local_us: i64,
        previous_local_us: i64,
    },
}

/// A validated measurement reduced to what the filter uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Measured server minus local time in microseconds.
    pub offset_us: f64,
    /// Half the round-trip delay in microseconds, the bound on the error of
    /// `offset_us`.
    pub max_error_us: f64,
    /// Round-trip delay without the server hold time, in microseconds.
    pub delay_us: i64,
    /// Local time at which the offset was measured: the midpoint of T1 and
    /// T4, in microseconds.
    pub local_us: i64,
}

impl Measurement {
    /// Validates the timestamps and computes offset, max_error and delay.
    ///
    /// Differences are computed in `i128`, so no pair of `i64` timestamps
    /// overflows. A delay of zero is accepted, and the filter then uses
    /// [`FilterConfig::min_measurement_error_us`] as the error.
    pub fn sample(&self) -> Result<Sample, MeasurementError> {
        let t1 = i128::from(self.client_transmitted);
        let t2 = i128::from(self.server_received);
        let t3 = i128::from(self.server_transmitted);
        let t4 = i128::from(self.client_received);

        if t4 < t1 {
            return Err(MeasurementError::ReceivedBeforeSent {
                client_transmitted: self.client_transmitted,
                client_received: self.client_received,
            });
        }
        if t3 < t2 {
            return Err(MeasurementError::NegativeServerHold {
                server_received: self.server_received,
                server_transmitted: self.server_transmitted,
            });
        }

        let delay = (t4 - t1) - (t3 - t2);
        let delay_us = saturate_i64(delay);
        if delay < 0 {
            return Err(MeasurementError::NegativeDelay { delay_us });
        }

        Ok(Sample {
            offset_us: ((t2 - t1) + (t3 - t4)) as f64 / 2.0,
            max_error_us: delay as f64 / 2.0,
            delay_us,
            // The midpoint of two i64 values always fits in i64.
            local_us: ((t1 + t4) / 2) as i64,
        })
    }
}

fn saturate_i64(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// Tuning of [`TimeFilter`].
///
/// Times are in microseconds and drift is in µs per µs, so 1e-6 is one ppm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FilterConfig {
    /// Standard deviation of the offset random walk per √µs of elapsed time.
    /// The default 0.01 lets the offset wander by 10 µs in one second to
    /// allow for timestamp jitter. It is the value recommended by the
    /// time-filter README.
    pub offset_process_std: f64,
    /// Standard deviation of the drift random walk per √µs of elapsed time.
    /// The default 1e-11 lets the drift wander by 0.01 ppm in one second and
    /// by 0.6 ppm in one hour. Zero would let the filter stop following
    /// changes of the clock rate.
    pub drift_process_std: f64,
    /// Forgetting factor λ. Adaptive forgetting scales the predicted
    /// covariance by λ², so 1 disables it. The default 1.001 is the value
    /// recommended by the time-filter README.
    pub forget_factor: f64,
    /// Fraction of max_error that the residual magnitude must exceed for
    /// forgetting to apply. Default 0.75, the default of the time-filter C++
    /// reference.
    pub forget_cutoff: f64,
    /// Measurements accepted before forgetting may apply. Default 100, the
    /// default of the time-filter C++ reference.
    pub forget_min_samples: u64,
    /// Floor on the measurement standard deviation in microseconds. It keeps
    /// the update defined when a loopback exchange reports a zero delay.
    /// The default 1 µs is the resolution of the timestamps.
    pub min_measurement_error_us: f64,
    /// Maximum offset standard deviation in microseconds at which the
    /// estimate counts as converged. Default 2000 µs. A lower limit delays
    /// the start of playback on links with long round trips.
    pub converged_error_us: f64,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            offset_process_std: 0.01,
            drift_process_std: 1e-11,
            forget_factor: 1.001,
            forget_cutoff: 0.75,
            forget_min_samples: 100,
            min_measurement_error_us: 1.0,
            converged_error_us: 2_000.0,
        }
    }
}

/// The offset that a measurement reports compared with the filter's
/// prediction for the same local time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Innovation {
    /// Measured minus predicted offset in microseconds.
    pub residual_us: f64,
    /// Standard deviation of the predicted offset in microseconds, before
    /// forgetting.
    pub predicted_error_us: f64,
    /// The measurement's max_error in microseconds.
    pub max_error_us: f64,
}

impl Innovation {
    /// Returns the maximum residual magnitude in microseconds that
    /// measurement error and prediction uncertainty explain.
    ///
    /// A measured offset is never further than max_error from the true
    /// offset. Unless the clocks changed, the prediction is usually within
    /// three standard deviations of it.
    pub fn bound_us(&self) -> f64 {
        self.max_error_us + PREDICTION_SIGMAS * self.predicted_error_us
    }

    /// Returns the residual magnitude as a multiple of [`Self::bound_us`].
    pub fn bound_ratio(&self) -> f64 {
        self.residual_us.abs() / self.bound_us().max(f64::MIN_POSITIVE)
    }
}

/// Result of applying one measurement to the filter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpdateReport {
    /// The accepted sample.
    pub sample: Sample,
    /// Comparison with the prediction, absent for the first two samples
    /// after a reset because the drift is not yet known.
    pub innovation: Option<Innovation>,
    /// Whether adaptive forgetting scaled the covariance in this update.
    pub forgetting_applied: bool,
    /// Measurements accepted since the last reset, including this one.
    pub samples: u64,
}

/// Offset and covariance predicted for a later local time.
#[derive(Clone, Copy, Debug)]
struct Prediction {
    offset: f64,
    offset_variance: f64,
    covariance: f64,
    drift_variance: f64,
}

/// Two-state Kalman filter of server clock offset and drift.
///
/// Feed it every usable exchange with [`TimeFilter::update`] and read the
/// estimate with [`TimeFilter::snapshot`].
#[derive(Clone, Debug)]
pub struct TimeFilter {
    config: FilterConfig,
    /// Server minus local time at `last_local_us`, in microseconds.
    offset: f64,
    /// Rate of change of the offset in µs per µs.
    drift: f64,
    /// Variance of `offset` in µs².
    offset_variance: f64,
    /// Covariance of offset and drift in µs.
    covariance: f64,
    /// Variance of `drift`, dimensionless.
    drift_variance: f64,
    last_local_us: i64,
    last_delay_us: i64,
    samples: u64,
}

impl TimeFilter {
    /// Creates a filter with no estimate.
    pub fn new(config: FilterConfig) -> Self {
        Self {
            config,
            offset: 0.0,
            drift: 0.0,
            offset_variance: f64::INFINITY,
            covariance: 0.0,
            drift_variance: 0.0,
            last_local_us: 0,
            last_delay_us: 0,
            samples: 0,
        }
    }

    /// Returns the tuning the filter was created with.
    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    /// Discards the estimate, for example after a server change or a clock
    /// step. The next measurement starts a new estimate.
    pub fn reset(&mut self) {
        *self = Self::new(self.config);
    }

    /// Validates one exchange and applies it to the estimate.
    ///
    /// A rejected measurement leaves the filter unchanged.
    pub fn update(&mut self, measurement: Measurement) -> Result<UpdateReport, MeasurementError> {
        self.apply(measurement.sample()?)
    }

    /// Applies an already validated sample, as [`TimeFilter::update`] does.
    ///
    /// Rejects a sample whose local time is not later than the previous
    /// one, because the prediction step needs a positive time step.
    pub fn apply(&mut self, sample: Sample) -> Result<UpdateReport, MeasurementError> {
        if self.samples > 0 && sample.local_us <= self.last_local_us {
            return Err(MeasurementError::OutOfOrder {
                local_us: sample.local_us,
                previous_local_us: self.last_local_us,
            });
        }

        let variance = self.measurement_variance(&sample);
        let (innovation, forgetting_applied) = match self.samples {
            0 => {
                self.start_offset(&sample, variance);
                (None, false)
            }
            1 => {
                self.start_drift(&sample, variance);
                (None, false)
            }
            _ => {
                let (innovation, forgot) = self.correct(&sample, variance);
                (Some(innovation), forgot)
            }
        };

        self.last_local_us = sample.local_us;
        self.last_delay_us = sample.delay_us;
        self.samples += 1;
        Ok(UpdateReport {
            sample,
            innovation,
            forgetting_applied,
            samples: self.samples,
        })
    }

    /// Compares a sample with the prediction without changing the filter.
    ///
    /// Returns `None` until two samples have given a drift estimate, or when
    /// the sample is not later than the last one.
    pub fn innovation(&self, sample: &Sample) -> Option<Innovation> {
        let prediction = self.predict(sample.local_us)?;
        Some(Innovation {
            residual_us: sample.offset_us - prediction.offset,
            predicted_error_us: prediction.offset_variance.sqrt(),
            max_error_us: sample.max_error_us,
        })
    }

    /// Returns the number of measurements accepted since the last reset.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Returns the standard deviation of the drift estimate in µs per µs,
    /// or infinity before the second sample.
    pub fn drift_std_dev(&self) -> f64 {
        if self.samples < 2 {
            return f64::INFINITY;
        }
        self.drift_variance.sqrt()
    }

    /// Returns whether the estimate is good enough to schedule audio: at
    /// least one sample and an offset standard deviation of at most
    /// [`FilterConfig::converged_error_us`].
    ///
    /// One sample suffices because the drift, unknown until the second
    /// sample, moves the offset by at most about 100 µs per second between
    /// consumer clocks, and the second sample follows within a second. Waiting
    /// for it would cost every new player its first half second of audio.
    pub fn is_converged(&self) -> bool {
        self.samples >= 1 && self.offset_variance.sqrt() <= self.config.converged_error_us
    }

    /// Returns a copy of the current estimate.
    ///
    /// Before the first sample this is [`ClockSnapshot::default`] with an
    /// infinite `error_us`.
    pub fn snapshot(&self) -> ClockSnapshot {
        if self.samples == 0 {
            return ClockSnapshot {
                error_us: f64::INFINITY,
                ..ClockSnapshot::default()
            };
        }
        ClockSnapshot {
            offset_us: self.offset,
            drift: self.drift,
            reference_local_us: self.last_local_us,
            error_us: self.offset_variance.sqrt(),
            rtt_us: self.last_delay_us,
            samples: self.samples,
            converged: self.is_converged(),
        }
    }

    fn measurement_variance(&self, sample: &Sample) -> f64 {
        let std_dev = sample
            .max_error_us
            .max(self.config.min_measurement_error_us);
        std_dev * std_dev
    }

    /// Takes the first sample as the offset, with drift still unknown.
    fn start_offset(&mut self, sample: &Sample, variance: f64) {
        self.offset = sample.offset_us;
        self.drift = 0.0;
        self.offset_variance = variance;
        self.covariance = 0.0;
        self.drift_variance = 0.0;
    }

    /// Estimates the drift from the difference between the first two
    /// samples.
    fn start_drift(&mut self, sample: &Sample, variance: f64) {
        let dt = (sample.local_us - self.last_local_us) as f64;
        self.drift = (sample.offset_us - self.offset) / dt;
        // The difference of two independent offsets divided by dt has the
        // sum of their variances divided by dt².
        self.drift_variance = (self.offset_variance + variance) / (dt * dt);
        // The new offset is the second sample, which also enters the
        // difference. theory.md leaves this covariance unspecified.
        self.covariance = variance / dt;
        self.offset = sample.offset_us;
        self.offset_variance = variance;
    }

    /// Propagates the estimate to `local_us` with F = [[1, dt], [0, 1]] and
    /// adds the random-walk process noise for dt.
    fn predict(&self, local_us: i64) -> Option<Prediction> {
        if self.samples < 2 || local_us <= self.last_local_us {
            return None;
        }
        let dt = (local_us - self.last_local_us) as f64;
        let offset_noise = self.config.offset_process_std.powi(2) * dt;
        let drift_noise = self.config.drift_process_std.powi(2) * dt;
        Some(Prediction {
            offset: self.offset + self.drift * dt,
            offset_variance: self.offset_variance
                + 2.0 * self.covariance * dt
                + self.drift_variance * dt * dt
                + offset_noise,
            covariance: self.covariance + self.drift_variance * dt,
            drift_variance: self.drift_variance + drift_noise,
        })
    }

    /// Runs one predict and update step. Returns the innovation and whether
    /// forgetting applied.
    fn correct(&mut self, sample: &Sample, variance: f64) -> (Innovation, bool) {
        let mut prediction = self
            .predict(sample.local_us)
            .expect("apply checked that the sample is later and two samples exist");
        let residual = sample.offset_us - prediction.offset;
        let innovation = Innovation {
            residual_us: residual,
            predicted_error_us: prediction.offset_variance.sqrt(),
            max_error_us: sample.max_error_us,
        };

        let forget = self.should_forget(residual, sample.max_error_us);
        if forget {
            let factor = self.config.forget_factor.powi(2);
            prediction.offset_variance *= factor;
            prediction.covariance *= factor;
            prediction.drift_variance *= factor;
        }

        let innovation_variance = prediction.offset_variance + variance;
        let offset_gain = prediction.offset_variance / innovation_variance;
        let drift_gain = prediction.covariance / innovation_variance;

        self.offset = prediction.offset + offset_gain * residual;
        self.drift += drift_gain * residual;

        // P = (I − K·H)·P with H = [1, 0].
        self.offset_variance = prediction.offset_variance * (1.0 - offset_gain);
        self.covariance = prediction.covariance - drift_gain * prediction.offset_variance;
        self.drift_variance = prediction.drift_variance - drift_gain * prediction.covariance;

        (innovation, forget)
    }

    /// Returns whether adaptive forgetting applies. It does only after the
    /// warm-up, and for residuals of either sign.
    fn should_forget(&self, residual_us: f64, max_error_us: f64) -> bool {
        self.samples >= self.config.forget_min_samples
            && residual_us.abs() > self.config.forget_cutoff * max_error_us
    }
}

impl Default for TimeFilter {
    fn default() -> Self {
        Self::new(FilterConfig::default())
    }
}

/// Read side of the clock estimate, cheap to clone and share between tasks.
///
/// Every read returns a whole [`ClockSnapshot`] published by the single
/// [`ClockPublisher`], so a reader never mixes fields of two updates. Reads
/// keep returning the last snapshot after the publisher is dropped.
#[derive(Clone, Debug)]
pub struct SharedClock {
    receiver: watch::Receiver<ClockSnapshot>,
}

/// Write side of a [`SharedClock`], held by the task that runs the filter.
#[derive(Debug)]
pub struct ClockPublisher {
    sender: watch::Sender<ClockSnapshot>,
}

impl SharedClock {
    /// Creates a publisher and a reader that starts with an empty snapshot
    /// (`samples == 0`).
    pub fn channel() -> (ClockPublisher, SharedClock) {
        let (sender, receiver) = watch::channel(TimeFilter::default().snapshot());
        (ClockPublisher { sender }, SharedClock { receiver })
    }

    /// Returns a copy of the latest published snapshot.
    pub fn snapshot(&self) -> ClockSnapshot {
        *self.receiver.borrow()
    }

    /// Returns a receiver whose `changed()` resolves on the next publish.
    ///
    /// The receiver counts the snapshot current at this call as seen.
    pub fn subscribe(&self) -> watch::Receiver<ClockSnapshot> {
        let mut receiver = self.receiver.clone();
        receiver.mark_unchanged();
        receiver
    }
}

impl ClockPublisher {
    /// Replaces the shared snapshot and wakes subscribers. Publishing
    /// succeeds even when no reader is left.
    pub fn publish(&self, snapshot: ClockSnapshot) {
        self.sender.send_replace(snapshot);
    }

    /// Returns a new reader of this publisher's snapshots.
    pub fn shared(&self) -> SharedClock {
        SharedClock {
            receiver: self.sender.subscribe(),
        }
    }
}

/// Deterministic simulation of a client, a server and the network between
/// them, shared by the filter and schedule tests.
#[cfg(test)]
pub(crate) mod sim {
    use super::Measurement;

    /// SplitMix64 pseudo-random generator, so every run draws the same
    /// noise.
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Self {
            Self(seed)
        }

        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in [0, 1).
        pub(crate) fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Exponentially distributed with the given mean.
        pub(crate) fn exponential(&mut self, mean: f64) -> f64 {
            -mean * (1.0 - self.unit()).ln()
        }
    }

    /// One network path: a fixed delay plus exponential queueing jitter,
    /// in microseconds.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Path {
        pub(crate) base_us: f64,
        pub(crate) jitter_mean_us: f64,
    }

    impl Path {
        pub(crate) fn symmetric_lan() -> Self {
            Self {
                base_us: 1_000.0,
                jitter_mean_us: 500.0,
            }
        }
    }

    /// A server clock `server = offset + local * (1 + drift) + step` seen
    /// from the client's local clock, over a simulated network.
    pub(crate) struct World {
        pub(crate) rng: Rng,
        pub(crate) offset_us: f64,
        pub(crate) drift: f64,
        pub(crate) step_us: f64,
        pub(crate) forward: Path,
        pub(crate) backward: Path,
        /// Probability that an exchange is lost.
        pub(crate) loss: f64,
    }

    impl World {
        pub(crate) fn new(seed: u64, offset_us: f64, drift: f64) -> Self {
            Self {
                rng: Rng::new(seed),
                offset_us,
                drift,
                step_us: 0.0,
                forward: Path::symmetric_lan(),
                backward: Path::symmetric_lan(),
                loss: 0.0,
            }
        }

        /// Server time at a local time, in microseconds.
        pub(crate) fn server_time(&self, local_us: f64) -> f64 {
            self.offset_us + local_us * (1.0 + self.drift) + self.step_us
        }

        fn delay(&mut self, path: Path) -> f64 {
            path.base_us + self.rng.exponential(path.jitter_mean_us)
        }

        /// Runs one exchange sent at local time `sent_us`, or returns `None`
        /// when the simulated network loses it.
        pub(crate) fn exchange(&mut self, sent_us: i64) -> Option<Measurement> {
            let lost = self.rng.unit() < self.loss;
            let forward = self.delay(self.forward);
            let hold = 50.0 + self.rng.exponential(100.0);
            let backward = self.delay(self.backward);
            if lost {
                return None;
            }
            let arrival = sent_us as f64 + forward;
            let departure = arrival + hold;
            Some(Measurement {
                client_transmitted: sent_us,
                server_received: self.server_time(arrival).round() as i64,
                server_transmitted: self.server_time(departure).round() as i64,
                client_received: (departure + backward).round() as i64,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sim::{Path, World};
    use super::*;

    const SECOND: i64 = 1_000_000;

    /// Feeds one exchange every `interval_us` from `start_us` and returns
    /// the local time after the last one.
    fn run(
        filter: &mut TimeFilter,
        world: &mut World,
        start_us: i64,
        count: usize,
        interval_us: i64,
    ) -> i64 {
        let mut now = start_us;
        for _ in 0..count {
            let measurement = world.exchange(now).expect("simulation without loss");
            filter
                .update(measurement)
                .expect("simulated measurement is valid");
            now += interval_us;
        }
        now
    }

    /// Estimated minus true server time at a local time, in microseconds.
    fn estimate_error(filter: &TimeFilter, world: &World, local_us: i64) -> f64 {
        let estimated = filter.snapshot().local_to_server(local_us) as f64;
        estimated - world.server_time(local_us as f64)
    }

    fn exact(local_us: i64, offset_us: i64, max_error_us: i64) -> Measurement {
        Measurement {
            client_transmitted: local_us - max_error_us,
            server_received: local_us + offset_us,
            server_transmitted: local_us + offset_us,
            client_received: local_us + max_error_us,
        }
    }

    #[test]
    fn measurement_computes_offset_and_error() {
        let measurement = Measurement {
            client_transmitted: 1_000,
            server_received: 6_100,
            server_transmitted: 6_300,
            client_received: 1_600,
        };

        let sample = measurement.sample().unwrap();

        assert_eq!(sample.offset_us, 4_900.0);
        assert_eq!(sample.max_error_us, 200.0);
        assert_eq!(sample.delay_us, 400);
        assert_eq!(sample.local_us, 1_300);
    }

    #[test]
    fn measurement_rejects_inconsistent_timestamps() {
        let received_before_sent = Measurement {
            client_transmitted: 2_000,
            server_received: 5_000,
            server_transmitted: 5_010,
            client_received: 1_999,
        };
        let negative_hold = Measurement {
            client_transmitted: 1_000,
            server_received: 5_000,
            server_transmitted: 4_990,
            client_received: 1_500,
        };
        let negative_delay = Measurement {
            client_transmitted: 1_000,
            server_received: 5_000,
            server_transmitted: 5_600,
            client_received: 1_500,
        };

        assert!(matches!(
            received_before_sent.sample(),
            Err(MeasurementError::ReceivedBeforeSent { .. })
        ));
        assert!(matches!(
            negative_hold.sample(),
            Err(MeasurementError::NegativeServerHold { .. })
        ));
        assert_eq!(
            negative_delay.sample(),
            Err(MeasurementError::NegativeDelay { delay_us: -100 })
        );
    }

    #[test]
    fn measurement_survives_extreme_timestamps() {
        let measurement = Measurement {
            client_transmitted: i64::MIN,
            server_received: i64::MIN,
            server_transmitted: i64::MAX,
            client_received: i64::MAX,
        };

        let sample = measurement.sample().unwrap();

        assert_eq!(sample.delay_us, 0);
        assert_eq!(sample.local_us, 0);
    }

    #[test]
    fn error_message_names_values() {
        let error = MeasurementError::NegativeDelay { delay_us: -100 };

        assert!(error.to_string().contains("-100 µs"), "{error}");
    }

    #[test]
    fn update_rejects_without_changing_state() {
        let mut filter = TimeFilter::default();
        filter.update(exact(10 * SECOND, 500, 1_000)).unwrap();
        let before = filter.snapshot();

        let invalid = Measurement {
            client_received: 0,
            ..exact(11 * SECOND, 500, 1_000)
        };
        let out_of_order = exact(9 * SECOND, 500, 1_000);

        assert!(filter.update(invalid).is_err());
        assert_eq!(
            filter.update(out_of_order),
            Err(MeasurementError::OutOfOrder {
                local_us: 9 * SECOND,
                previous_local_us: 10 * SECOND,
            })
        );
        assert_eq!(filter.snapshot(), before);
    }

    #[test]
    fn zero_delay_stays_finite() {
        let mut filter = TimeFilter::default();

        for second in 1..=5 {
            filter.update(exact(second * SECOND, 250, 0)).unwrap();
        }
        let snapshot = filter.snapshot();

        assert!(snapshot.error_us.is_finite());
        assert!((snapshot.offset_us - 250.0).abs() < 1.0, "{snapshot:?}");
    }

    #[test]
    fn snapshot_before_first_sample_is_invalid() {
        let snapshot = TimeFilter::default().snapshot();

        assert!(!snapshot.is_valid());
        assert!(!snapshot.converged);
        assert_eq!(snapshot.error_us, f64::INFINITY);
    }

    #[test]
    fn snapshot_reports_latest_sample() {
        let mut filter = TimeFilter::default();
        filter.update(exact(SECOND, 7_000, 800)).unwrap();

        let first = filter.snapshot();
        filter.update(exact(2 * SECOND, 7_000, 300)).unwrap();
        let second = filter.snapshot();

        assert_eq!(first.samples, 1);
        assert_eq!(first.rtt_us, 1_600);
        assert_eq!(first.reference_local_us, SECOND);
        assert!((first.error_us - 800.0).abs() < 1e-9);
        assert!(
            first.converged,
            "one precise sample is enough to schedule audio"
        );
        assert_eq!(second.samples, 2);
        assert_eq!(second.rtt_us, 600);
        assert_eq!(second.reference_local_us, 2 * SECOND);
        assert!(second.converged);
    }

    #[test]
    fn converged_needs_small_error() {
        let config = FilterConfig {
            converged_error_us: 500.0,
            ..FilterConfig::default()
        };
        let mut filter = TimeFilter::new(config);

        filter.update(exact(SECOND, 0, 2_000)).unwrap();
        filter.update(exact(2 * SECOND, 0, 2_000)).unwrap();
        let after_two = filter.is_converged();
        for second in 3..=200 {
            filter.update(exact(second * SECOND, 0, 2_000)).unwrap();
        }

        assert!(!after_two);
        assert!(filter.is_converged(), "{:?}", filter.snapshot());
    }

    #[test]
    fn reset_discards_estimate() {
        let mut filter = TimeFilter::default();
        filter.update(exact(SECOND, 900, 500)).unwrap();
        filter.update(exact(2 * SECOND, 900, 500)).unwrap();

        filter.reset();
        let snapshot = filter.snapshot();
        filter.update(exact(SECOND, -300, 500)).unwrap();

        assert!(!snapshot.is_valid());
        assert_eq!(filter.samples(), 1);
        assert_eq!(filter.snapshot().offset_us, -300.0);
    }

    #[test]
    fn converges_to_constant_offset() {
        let mut world = World::new(1, 123_456_789.0, 0.0);
        let mut filter = TimeFilter::default();

        let end = run(&mut filter, &mut world, SECOND, 300, SECOND / 2);
        let snapshot = filter.snapshot();
        let error = estimate_error(&filter, &world, end);

        assert!(snapshot.converged);
        assert!(error.abs() < 200.0, "offset error {error} µs");
        assert!(
            snapshot.drift.abs() < 1e-6,
            "drift {} ppm",
            snapshot.drift_ppm()
        );
    }

    #[test]
    fn tracks_drift_both_signs() {
        for drift in [50e-6, -50e-6] {
            let mut world = World::new(2, -4_000_000.0, drift);
            let mut filter = TimeFilter::default();

            let end = run(&mut filter, &mut world, SECOND, 600, SECOND);
            let snapshot = filter.snapshot();
            let drift_error_ppm = (snapshot.drift - drift) * 1e6;
            // One minute past the last update the drift term carries the
            // estimate.
            let error = estimate_error(&filter, &world, end + 60 * SECOND);

            assert!(
                drift_error_ppm.abs() < 0.5,
                "drift error {drift_error_ppm} ppm"
            );
            assert!(
                error.abs() < 300.0,
                "offset error {error} µs one minute ahead"
            );
        }
    }

    #[test]
    fn recovers_from_asymmetric_delay_change() {
        let mut world = World::new(3, 2_500_000.0, 20e-6);
        let mut filter = TimeFilter::default();
        let interval = SECOND / 2;
        let mut now = run(&mut filter, &mut world, SECOND, 200, interval);

        // The forward path becomes 30 ms longer for 100 s, which biases each
        // measured offset by +15 ms but also widens max_error by 15 ms.
        world.forward.base_us += 30_000.0;
        let mut worst = 0.0_f64;
        for _ in 0..200 {
            now = run(&mut filter, &mut world, now, 1, interval);
            worst = worst.max(estimate_error(&filter, &world, now).abs());
        }
        world.forward = Path::symmetric_lan();
        now = run(&mut filter, &mut world, now, 100, interval);
        let error = estimate_error(&filter, &world, now);

        // The filter cannot tell the bias from a real clock change, so it
        // follows it slowly. It must stay far from the full 15 ms.
        assert!(
            worst < 5_000.0,
            "worst offset error {worst} µs while delayed"
        );
        assert!(
            error.abs() < 300.0,
            "offset error {error} µs after recovery"
        );
    }

    #[test]
    fn follows_clock_step_after_reset() {
        for step in [SECOND as f64, -SECOND as f64] {
            let mut world = World::new(4, 1_000.0, 10e-6);
            let mut filter = TimeFilter::default();
            let mut now = run(&mut filter, &mut world, SECOND, 50, SECOND);

            world.step_us = step;
            let measurement = world.exchange(now).unwrap();
            let innovation = filter.innovation(&measurement.sample().unwrap()).unwrap();
            filter.reset();
            now = run(&mut filter, &mut world, now, 20, SECOND / 2);
            let error = estimate_error(&filter, &world, now);

            assert!(innovation.bound_ratio() > 100.0, "{innovation:?}");
            assert!(filter.is_converged());
            assert!(
                error.abs() < 1_000.0,
                "offset error {error} µs after step {step}"
            );
        }
    }

    #[test]
    fn initial_drift_variance_scales_with_dt_squared() {
        let drift_std_after = |dt: i64| {
            let mut filter = TimeFilter::default();
            filter.update(exact(SECOND, 0, 1_000)).unwrap();
            filter.update(exact(SECOND + dt, 0, 1_000)).unwrap();
            filter.drift_std_dev()
        };

        let short = drift_std_after(SECOND / 2);
        let long = drift_std_after(4 * SECOND);

        // sqrt(1000² + 1000²) / 0.5 s is 2828 ppm. Dividing by dt instead of
        // dt² would give sqrt(2) / sqrt(500000) per µs, about 2000 ppm, and a
        // ratio of sqrt(8) instead of 8 between the two spacings.
        assert!((short - 2.828_427e-3).abs() < 1e-8, "drift std {short}");
        assert!((short / long - 8.0).abs() < 1e-9, "ratio {}", short / long);
    }

    #[test]
    fn initial_drift_variance_sets_prediction_error() {
        let mut filter = TimeFilter::default();
        filter.update(exact(SECOND, 0, 1_000)).unwrap();
        filter.update(exact(2 * SECOND, 0, 1_000)).unwrap();

        let sample = exact(3 * SECOND, 0, 1_000).sample().unwrap();
        let innovation = filter.innovation(&sample).unwrap();

        // Offset variance 1000² + 2·(1000²/1 s)·1 s + (2·1000²/1 s²)·1 s² plus
        // 100 µs² of process noise. A variance divided by dt alone would
        // predict an error of about 1.4 s.
        let expected = (5_000_000.0_f64 + 100.0).sqrt();
        assert!(
            (innovation.predicted_error_us - expected).abs() < 1e-6,
            "{innovation:?}"
        );
    }

    #[test]
    fn forgetting_reacts_to_both_signs() {
        let config = FilterConfig {
            forget_factor: 2.0,
            forget_min_samples: 10,
            ..FilterConfig::default()
        };
        let mut filter = TimeFilter::new(config);
        for second in 1..=20 {
            filter.update(exact(second * SECOND, 0, 1_000)).unwrap();
        }
        let mut without_forgetting = filter.clone();
        without_forgetting.config.forget_factor = 1.0;

        let shift = |filter: &TimeFilter, residual: i64| {
            let mut filter = filter.clone();
            let report = filter.update(exact(21 * SECOND, residual, 1_000)).unwrap();
            (report.forgetting_applied, filter.snapshot().offset_us)
        };
        let (ahead_forgot, ahead) = shift(&filter, 900);
        let (behind_forgot, behind) = shift(&filter, -900);
        let (_, ahead_plain) = shift(&without_forgetting, 900);
        let (small_forgot, _) = shift(&filter, 700);

        assert!(ahead_forgot);
        assert!(behind_forgot);
        assert!(!small_forgot, "700 µs is within 0.75 of max_error");
        assert!(
            (ahead + behind).abs() < 1e-6,
            "moves {ahead} and {behind} differ"
        );
        assert!(
            ahead > 1.5 * ahead_plain,
            "forgetting moved {ahead}, plain {ahead_plain}"
        );
    }

    #[test]
    fn forgetting_waits_for_warm_up() {
        let config = FilterConfig {
            forget_min_samples: 10,
            ..FilterConfig::default()
        };
        let mut filter = TimeFilter::new(config);

        let mut reports = Vec::new();
        for second in 1..=12 {
            let residual = if second % 2 == 0 { 900 } else { -900 };
            reports.push(
                filter
                    .update(exact(second * SECOND, residual, 1_000))
                    .unwrap(),
            );
        }

        assert!(reports[..10]
            .iter()
            .all(|report| !report.forgetting_applied));
        assert!(reports[10..].iter().all(|report| report.forgetting_applied));
    }

    #[test]
    fn shared_clock_publishes_whole_snapshot() {
        let (publisher, clock) = SharedClock::channel();
        let mut subscriber = clock.subscribe();
        let reader = clock.clone();
        let mut filter = TimeFilter::default();
        filter.update(exact(SECOND, 42, 100)).unwrap();

        let before = reader.snapshot();
        assert!(!subscriber.has_changed().unwrap());
        publisher.publish(filter.snapshot());

        assert!(!before.is_valid());
        assert!(subscriber.has_changed().unwrap());
        assert_eq!(reader.snapshot(), filter.snapshot());
        assert_eq!(*subscriber.borrow_and_update(), filter.snapshot());
        assert_eq!(publisher.shared().snapshot(), filter.snapshot());
    }

    #[test]
    fn shared_clock_outlives_publisher() {
        let (publisher, clock) = SharedClock::channel();
        let mut filter = TimeFilter::default();
        filter.update(exact(SECOND, 42, 100)).unwrap();

        publisher.publish(filter.snapshot());
        drop(publisher);

        assert_eq!(clock.snapshot().offset_us, 42.0);
    }
}
