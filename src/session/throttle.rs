//! Rate limits: a token bucket for a peer's inbound frames, and a
//! process-wide budget for rejection log lines, so a flood of bad peers
//! cannot flood the log.

use std::sync::Mutex;

use tokio::time::Instant;

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// Creates a full bucket. A `rate` of 0 lets nothing through after the
    /// first `burst` tokens.
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            refilled: Instant::now(),
        }
    }

    /// Takes one token at `now` and returns whether one was left.
    pub fn take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }
}

/// Rejection log lines allowed per second across the process, and the burst.
const LOG_LINES_PER_SECOND: u32 = 20;

/// The process-wide budget of rejection log lines.
///
/// Each rejection takes a permit before it logs. A rejection without a permit is
/// counted, and the next permit carries that count so the line can say how
/// many similar lines were suppressed. Counters in the server's telemetry
/// count every rejection either way.
pub struct RejectLog;

struct LogBudget {
    bucket: Option<TokenBucket>,
    suppressed: u64,
}

static BUDGET: Mutex<LogBudget> = Mutex::new(LogBudget {
    bucket: None,
    suppressed: 0,
});

impl RejectLog {
    /// Returns `Some(suppressed)` when a rejection may be logged now, with the
    /// number of rejections left unlogged since the last permit, and `None`
    /// when the budget is spent.
    pub fn permit() -> Option<u64> {
        let mut budget = BUDGET
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bucket = budget
            .bucket
            .get_or_insert_with(|| TokenBucket::new(LOG_LINES_PER_SECOND, LOG_LINES_PER_SECOND));
        if bucket.take() {
            Some(std::mem::take(&mut budget.suppressed))
        } else {
            budget.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 5);
        bucket.refilled = start;
        let allowed = (0..20).filter(|_| bucket.take_at(start)).count();
        assert_eq!(allowed, 5);
        assert!(bucket.take_at(start + Duration::from_millis(100)));
        assert!(!bucket.take_at(start + Duration::from_millis(100)));
    }

    #[test]
    fn bucket_never_holds_more_than_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000, 3);
        bucket.refilled = start;
        let later = start + Duration::from_secs(60);
        let allowed = (0..10).filter(|_| bucket.take_at(later)).count();
        assert_eq!(allowed, 3);
    }
}
