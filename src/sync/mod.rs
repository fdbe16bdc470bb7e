//! Clock synchronization between a client's local clock and the server's
//! clock.
//!
//! The filter that produces estimates lives in its own module; everything
//! else reads a [`ClockSnapshot`], a copy of one consistent estimate, so a
//! reader never mixes an offset from one update with a drift from another.
//! [`SharedClock`] hands those copies from the filter task to readers, and
//! [`SyncSchedule`] decides when to send the next `client/time`.

pub mod filter;
pub mod schedule;

pub use filter::{
    ClockPublisher, FilterConfig, Innovation, Measurement, MeasurementError, Sample, SharedClock,
    TimeFilter, UpdateReport,
};
pub use schedule::{BurstReason, ExchangeOutcome, ScheduleConfig, SchedulePhase, SyncSchedule};

/// One consistent estimate of the server clock relative to the local clock.
///
/// `server = local + offset_us + drift * (local - reference_local_us)`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ClockSnapshot {
    /// Server time minus local time, in microseconds, at `reference_local_us`.
    pub offset_us: f64,
    /// Rate of change of the offset, in microseconds per microsecond
    /// (1e-6 is one ppm).
    pub drift: f64,
    /// Local time in microseconds at which `offset_us` was estimated.
    pub reference_local_us: i64,
    /// Standard deviation of the offset estimate in microseconds.
    pub error_us: f64,
    /// Round-trip time of the latest accepted measurement in microseconds.
    pub rtt_us: i64,
    /// Measurements accepted since the last reset.
    pub samples: u64,
    /// Whether the estimate is good enough to schedule audio.
    pub converged: bool,
}

impl ClockSnapshot {
    /// Whether the snapshot holds any estimate at all.
    pub fn is_valid(&self) -> bool {
        self.samples > 0
    }

    /// Maps a local time to the server clock, in microseconds.
    pub fn local_to_server(&self, local_us: i64) -> i64 {
        let elapsed = (local_us - self.reference_local_us) as f64;
        (local_us as f64 + self.offset_us + self.drift * elapsed).round() as i64
    }

    /// Maps a server time to the local clock, in microseconds.
    pub fn server_to_local(&self, server_us: i64) -> i64 {
        // Solve server = local + offset + drift * (local - reference) for local.
        let numerator =
            server_us as f64 - self.offset_us + self.drift * self.reference_local_us as f64;
        (numerator / (1.0 + self.drift)).round() as i64
    }

    /// Drift in parts per million.
    pub fn drift_ppm(&self) -> f64 {
        self.drift * 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_round_trips() {
        let snapshot = ClockSnapshot {
            offset_us: 1_234_567.0,
            drift: 25e-6,
            reference_local_us: 10_000_000,
            samples: 1,
            ..Default::default()
        };
        for local in [0_i64, 10_000_000, 99_999_999] {
            let server = snapshot.local_to_server(local);
            assert_eq!(snapshot.server_to_local(server), local);
        }
    }
}
