//! The local monotonic clock in microseconds.
//!
//! Servers stamp audio and `server/time` replies with it, and players use it
//! as the local side of clock synchronization. Its epoch is the first use in
//! the process, so values are small, positive and meaningless across
//! processes.

use std::sync::OnceLock;
use std::time::Instant;

/// The process epoch and the system monotonic clock's reading at it.
#[derive(Clone, Copy)]
struct Epoch {
    instant: Instant,
    /// `CLOCK_MONOTONIC` in microseconds, read right after `instant`.
    system_us: i64,
}

static EPOCH: OnceLock<Epoch> = OnceLock::new();

fn epoch() -> Epoch {
    *EPOCH.get_or_init(|| Epoch {
        instant: Instant::now(),
        system_us: read_system_monotonic_us(),
    })
}

/// Reads `CLOCK_MONOTONIC`, the clock behind [`Instant`] on Linux, which
/// every process of one host shares.
#[cfg(unix)]
fn read_system_monotonic_us() -> i64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable timespec for the whole call.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut time) };
    if status != 0 {
        return 0;
    }
    // The fields are `i64` on 64-bit targets and narrower on some 32-bit
    // ones, so the conversion is needed only there.
    #[allow(clippy::useless_conversion)]
    let (seconds, nanoseconds) = (i64::from(time.tv_sec), i64::from(time.tv_nsec));
    seconds * 1_000_000 + nanoseconds / 1_000
}

/// Without a shared monotonic clock the process epoch is used, so
/// [`to_system_monotonic_us`] returns local time unchanged.
#[cfg(not(unix))]
fn read_system_monotonic_us() -> i64 {
    0
}

/// Returns microseconds elapsed on the monotonic clock since the process
/// epoch.
pub fn now_us() -> i64 {
    epoch().instant.elapsed().as_micros() as i64
}

/// Converts a local time of [`now_us`] to microseconds of the host's
/// `CLOCK_MONOTONIC`, so that times logged by two processes on one host can
/// be compared. The conversion is exact to about a microsecond.
///
/// NOTE: on platforms other than Unix this returns `local_us` unchanged, so
/// times of different processes are not comparable there.
pub fn to_system_monotonic_us(local_us: i64) -> i64 {
    epoch().system_us + local_us
}

/// Returns the [`Instant`] at which [`now_us`] reads `micros`.
pub fn instant_at(micros: i64) -> Instant {
    let epoch = epoch().instant;
    if micros >= 0 {
        epoch + std::time::Duration::from_micros(micros as u64)
    } else {
        epoch
            .checked_sub(std::time::Duration::from_micros(micros.unsigned_abs()))
            .unwrap_or(epoch)
    }
}
