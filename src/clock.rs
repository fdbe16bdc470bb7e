//! The local monotonic clock in microseconds.
//!
//! Servers stamp audio and `server/time` replies with it, and players use it
//! as the local side of clock synchronization. Its epoch is the first use in
//! the process, so values are small, positive and meaningless across
//! processes.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Returns microseconds elapsed on the monotonic clock since the process
/// epoch.
pub fn now_us() -> i64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_micros() as i64
}

/// Returns the [`Instant`] at which [`now_us`] reads `micros`.
pub fn instant_at(micros: i64) -> Instant {
    let epoch = *EPOCH.get_or_init(Instant::now);
    if micros >= 0 {
        epoch + std::time::Duration::from_micros(micros as u64)
    } else {
        epoch
            .checked_sub(std::time::Duration::from_micros(micros.unsigned_abs()))
            .unwrap_or(epoch)
    }
}
