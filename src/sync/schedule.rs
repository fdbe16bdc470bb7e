//! When to send the next `client/time`, and which replies reach the filter.
//!
//! [`SyncSchedule`] is pure logic over local microsecond timestamps, so the
//! task that owns the connection keeps the timers. One exchange is in flight
//! at a time, and the task loops like this:
//!
//! 1. Sleep for [`SyncSchedule::send_delay`], send `client/time` stamped
//!    T1 and call [`SyncSchedule::record_sent`] with T1.
//! 2. Wait up to [`ScheduleConfig::reply_timeout`] for `server/time`, then
//!    call [`SyncSchedule::record_reply`] or [`SyncSchedule::record_timeout`].
//!    Both update the [`TimeFilter`] when a sample is due.
//! 3. Publish [`TimeFilter::snapshot`].
//!
//! The schedule works in two phases:
//!
//! - A burst of [`ScheduleConfig::burst_size`] requests, each sent
//!   [`ScheduleConfig::burst_spacing`] after the previous reply. Only the
//!   reply with the shortest round trip reaches the filter, because it has
//!   the smallest max_error. Bursts run at start, after
//!   [`SyncSchedule::reset`], and to confirm a suspected clock step.
//! - Steady exchanges at an interval that starts at
//!   [`ScheduleConfig::min_interval`]. Each is a short burst of
//!   [`ScheduleConfig::steady_burst_size`] requests whose shortest round
//!   trip reaches the filter, so a queue that delays one request does not
//!   bias the estimate. It grows by
//!   [`ScheduleConfig::interval_growth`] after each converged sample whose
//!   residual is well inside the error bound, up to
//!   [`ScheduleConfig::max_interval`], and halves after a residual outside
//!   the bound.
//!
//! A steady sample whose residual is far outside the bound, of either sign,
//! is held back and starts a confirmation burst. If the best reply of that
//! burst is also far outside, the server or local clock jumped, so the
//! filter is reset and restarts from that reply. Otherwise the held-back
//! sample was an outlier and the burst's best reply is applied as usual. The
//! best reply of a start burst gets the same check when the filter still
//! contains an earlier estimate.

use std::time::Duration;

use super::filter::{Innovation, Measurement, MeasurementError, Sample, TimeFilter, UpdateReport};

/// Timing and thresholds of [`SyncSchedule`].
///
/// NOTE: the defaults were checked against the simulated links in the tests
/// of this module, not yet against real Wi-Fi links.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduleConfig {
    /// Requests per burst. Default 8. More requests raise the chance that
    /// one of them meets empty queues, but make the burst longer.
    pub burst_size: u32,
    /// Requests per steady exchange, of which the reply with the shortest
    /// round trip reaches the filter. Default 4: on a link whose queueing
    /// delay varies by milliseconds, the best of four is several times
    /// closer to the true offset than a single reply, for four small
    /// messages per interval. 1 sends single requests.
    pub steady_burst_size: u32,
    /// Pause between a reply and the next request of a burst. Default 40 ms,
    /// so the requests of one burst meet different queue states while the
    /// whole burst takes under half a second on a LAN.
    pub burst_spacing: Duration,
    /// Time after which a request without reply counts as lost. Default
    /// 1 s. A reply with a longer round trip would have a max_error of more
    /// than 500 ms and add little to the estimate.
    pub reply_timeout: Duration,
    /// Minimum steady interval, which is also the interval after a burst.
    /// Default 500 ms.
    pub min_interval: Duration,
    /// Maximum steady interval. Default 10 s, over which a drift error of
    /// 1 ppm adds 10 µs of offset error.
    pub max_interval: Duration,
    /// Factor by which the interval grows after a stable sample of a
    /// converged filter. Values below 1 count as 1. Default 1.5, which
    /// reaches the maximum from the minimum in 8 samples, about 25 s.
    pub interval_growth: f64,
    /// Maximum residual, as a fraction of [`Innovation::bound_us`], for
    /// which a sample counts as stable. Default 0.5.
    pub stable_ratio: f64,
    /// Minimum residual, as a multiple of [`Innovation::bound_us`], that
    /// suggests a clock step. Default 4.
    pub step_ratio: f64,
    /// Minimum residual in microseconds that suggests a clock step.
    /// Default 2000 µs. On loopback links the bound is tens of microseconds,
    /// and smaller jumps are left to the filter, which follows them over
    /// several samples without a reset.
    pub min_step_us: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            burst_size: 8,
            steady_burst_size: 4,
            burst_spacing: Duration::from_millis(40),
            reply_timeout: Duration::from_secs(1),
            min_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(10),
            interval_growth: 1.5,
            stable_ratio: 0.5,
            step_ratio: 4.0,
            min_step_us: 2_000.0,
        }
    }
}

/// Reason for a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BurstReason {
    /// First burst after creation or [`SyncSchedule::reset`].
    Start,
    /// A steady sample was far outside the error bound, and the burst
    /// checks whether a clock stepped.
    StepCheck,
    /// The requests of one steady exchange. Its best reply counts as one
    /// steady sample.
    Steady,
}

/// Public view of the schedule's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedulePhase {
    /// Sending a burst of closely spaced requests.
    Burst(BurstReason),
    /// Sending single requests at [`SyncSchedule::interval`].
    Steady,
}

/// Result of one finished exchange.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExchangeOutcome {
    /// The reply does not answer the request in flight, for example a late
    /// reply after a timeout, and was ignored.
    Stale,
    /// The reply is invalid, or the filter rejected it. The filter did not
    /// change.
    Rejected(MeasurementError),
    /// The request timed out, or a burst ended without any valid reply.
    Lost,
    /// The reply is kept as a burst candidate until the burst ends.
    Buffered,
    /// The filter accepted a sample.
    Applied(UpdateReport),
    /// A steady sample was far outside the error bound. It was not applied,
    /// and a confirmation burst starts.
    StepSuspected(Innovation),
    /// The best reply of a burst was far outside the error bound as well.
    /// The filter was reset and restarted from that reply.
    StepConfirmed(Innovation),
}

/// Burst in progress.
#[derive(Clone, Copy, Debug)]
struct Burst {
    reason: BurstReason,
    sent: u32,
    /// Valid reply with the shortest round trip so far.
    best: Option<Sample>,
}

impl Burst {
    fn new(reason: BurstReason) -> Self {
        Self {
            reason,
            sent: 0,
            best: None,
        }
    }

    fn offer(&mut self, sample: Sample) {
        let shorter = self.best.is_none_or(|best| sample.delay_us < best.delay_us);
        if shorter {
            self.best = Some(sample);
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Burst(Burst),
    Steady,
}

/// Decides when to send `client/time` and feeds replies to a
/// [`TimeFilter`].
#[derive(Clone, Debug)]
pub struct SyncSchedule {
    config: ScheduleConfig,
    phase: Phase,
    interval: Duration,
    /// Local time in microseconds of the next request, or `None` to send
    /// immediately.
    next_send_us: Option<i64>,
    /// T1 of the request in flight.
    in_flight: Option<i64>,
}

impl SyncSchedule {
    /// Creates a schedule that starts with a burst right away.
    pub fn new(config: ScheduleConfig) -> Self {
        Self {
            config,
            phase: Phase::Burst(Burst::new(BurstReason::Start)),
            interval: config.min_interval,
            next_send_us: None,
            in_flight: None,
        }
    }

    /// Returns the timing the schedule was created with.
    pub fn config(&self) -> &ScheduleConfig {
        &self.config
    }

    /// Returns the current phase.
    pub fn phase(&self) -> SchedulePhase {
        match self.phase {
            Phase::Burst(burst) if burst.reason != BurstReason::Steady => {
                SchedulePhase::Burst(burst.reason)
            }
            Phase::Burst(_) | Phase::Steady => SchedulePhase::Steady,
        }
    }

    /// Returns the current steady interval between requests.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Restarts with a burst at the minimum interval, for example after a
    /// reconnect.
    ///
    /// The filter is kept. Call [`TimeFilter::reset`] as well when the
    /// server may have changed.
    pub fn reset(&mut self) {
        *self = Self::new(self.config);
    }

    /// Returns how long to wait from local time `now_us` before sending the
    /// next request, zero when it is due.
    pub fn send_delay(&self, now_us: i64) -> Duration {
        let Some(next_send_us) = self.next_send_us else {
            return Duration::ZERO;
        };
        let remaining = next_send_us.saturating_sub(now_us);
        Duration::from_micros(u64::try_from(remaining).unwrap_or(0))
    }

    /// Records that a request stamped `client_transmitted` (T1, local µs)
    /// was sent. Any earlier request in flight is given up.
    pub fn record_sent(&mut self, client_transmitted: i64) {
        self.in_flight = Some(client_transmitted);
        self.next_send_us = None;
        if let Phase::Burst(burst) = &mut self.phase {
            burst.sent += 1;
        }
    }

    /// Handles a `server/time` reply and updates the filter when a sample
    /// is due.
    ///
    /// A reply whose T1 differs from the request in flight is
    /// [`ExchangeOutcome::Stale`].
    pub fn record_reply(
        &mut self,
        measurement: Measurement,
        filter: &mut TimeFilter,
    ) -> ExchangeOutcome {
        if self.in_flight != Some(measurement.client_transmitted) {
            return ExchangeOutcome::Stale;
        }
        self.in_flight = None;
        let now_us = measurement
            .client_received
            .max(measurement.client_transmitted);
        let sample = measurement.sample();

        match &mut self.phase {
            Phase::Steady => match sample {
                Ok(sample) => self.submit(sample, None, now_us, filter),
                Err(error) => {
                    self.send_after(now_us, self.config.min_interval);
                    ExchangeOutcome::Rejected(error)
                }
            },
            Phase::Burst(burst) => {
                if let Ok(sample) = sample {
                    burst.offer(sample);
                }
                if self.burst_complete() {
                    if let Err(error) = sample {
                        tracing::warn!(%error, "ignored an invalid reply at the end of a time sync burst");
                    }
                    return self.finish_burst(now_us, filter);
                }
                self.send_after(now_us, self.config.burst_spacing);
                match sample {
                    Ok(_) => ExchangeOutcome::Buffered,
                    Err(error) => ExchangeOutcome::Rejected(error),
                }
            }
        }
    }

    /// Handles a request that got no reply within
    /// [`ScheduleConfig::reply_timeout`], at local time `now_us`.
    ///
    /// Ends the burst when this was its last request, which may apply the
    /// best reply received before.
    pub fn record_timeout(&mut self, now_us: i64, filter: &mut TimeFilter) -> ExchangeOutcome {
        self.in_flight = None;
        match self.phase {
            Phase::Steady => {
                self.send_after(now_us, self.config.min_interval);
                ExchangeOutcome::Lost
            }
            Phase::Burst(_) if self.burst_complete() => self.finish_burst(now_us, filter),
            Phase::Burst(_) => {
                self.send_after(now_us, self.config.burst_spacing);
                ExchangeOutcome::Lost
            }
        }
    }

    fn burst_complete(&self) -> bool {
        match self.phase {
            Phase::Burst(burst) if burst.reason == BurstReason::Steady => {
                burst.sent >= self.config.steady_burst_size.max(1)
            }
            Phase::Burst(burst) => burst.sent >= self.config.burst_size.max(1),
            Phase::Steady => false,
        }
    }

    /// Applies the best reply of the finished burst, or repeats the burst
    /// when no valid reply arrived.
    fn finish_burst(&mut self, now_us: i64, filter: &mut TimeFilter) -> ExchangeOutcome {
        let Phase::Burst(burst) = self.phase else {
            unreachable!("finish_burst runs only during a burst");
        };
        let Some(best) = burst.best else {
            tracing::warn!(
                requests = burst.sent,
                reason = ?burst.reason,
                "time sync burst got no valid reply, retrying"
            );
            self.phase = Phase::Burst(Burst::new(burst.reason));
            self.send_after(now_us, self.config.min_interval);
            return ExchangeOutcome::Lost;
        };
        self.enter_steady();
        // The best reply of a steady exchange is checked like a single
        // steady sample, so a suspected step still gets its confirmation
        // burst.
        let reason = Some(burst.reason).filter(|reason| *reason != BurstReason::Steady);
        self.submit(best, reason, now_us, filter)
    }

    /// Passes a sample to the filter unless it suggests a clock step.
    ///
    /// A suspicious single sample starts a confirmation burst. A suspicious
    /// burst sample confirms the step, because it had the shortest round
    /// trip of several requests.
    fn submit(
        &mut self,
        sample: Sample,
        burst: Option<BurstReason>,
        now_us: i64,
        filter: &mut TimeFilter,
    ) -> ExchangeOutcome {
        let step = filter
            .innovation(&sample)
            .filter(|innovation| self.is_step(innovation));
        if let Some(innovation) = step {
            return match burst {
                Some(_) => self.restart_after_step(sample, innovation, now_us, filter),
                None => self.check_step(innovation, now_us),
            };
        }

        let outcome = match filter.apply(sample) {
            Ok(report) => {
                self.adapt_interval(&report, filter.is_converged());
                ExchangeOutcome::Applied(report)
            }
            Err(error) => ExchangeOutcome::Rejected(error),
        };
        self.send_after(now_us, self.interval);
        outcome
    }

    fn is_step(&self, innovation: &Innovation) -> bool {
        innovation.bound_ratio() > self.config.step_ratio
            && innovation.residual_us.abs() > self.config.min_step_us
    }

    fn check_step(&mut self, innovation: Innovation, now_us: i64) -> ExchangeOutcome {
        tracing::debug!(
            residual_us = innovation.residual_us,
            bound_us = innovation.bound_us(),
            "time sync residual far outside the error bound, checking for a clock step"
        );
        self.phase = Phase::Burst(Burst::new(BurstReason::StepCheck));
        self.send_after(now_us, self.config.burst_spacing);
        ExchangeOutcome::StepSuspected(innovation)
    }

    fn restart_after_step(
        &mut self,
        sample: Sample,
        innovation: Innovation,
        now_us: i64,
        filter: &mut TimeFilter,
    ) -> ExchangeOutcome {
        tracing::warn!(
            residual_us = innovation.residual_us,
            bound_us = innovation.bound_us(),
            "clock step detected, restarting time sync"
        );
        filter.reset();
        self.enter_steady();
        self.interval = self.config.min_interval;
        self.send_after(now_us, self.interval);
        match filter.apply(sample) {
            Ok(_) => ExchangeOutcome::StepConfirmed(innovation),
            Err(error) => unreachable!("a reset filter accepts any valid sample: {error}"),
        }
    }

    /// Grows the interval after a stable sample of a converged filter and
    /// halves it after a residual outside the error bound.
    fn adapt_interval(&mut self, report: &UpdateReport, converged: bool) {
        let Some(innovation) = report.innovation else {
            return;
        };
        let ratio = innovation.bound_ratio();
        if ratio > 1.0 {
            self.interval = (self.interval / 2).max(self.config.min_interval);
        } else if converged && ratio <= self.config.stable_ratio {
            let grown = self.interval.mul_f64(self.config.interval_growth.max(1.0));
            self.interval = grown.min(self.config.max_interval);
        }
    }

    /// Switches to steady exchanges: single requests, or a fresh steady
    /// burst when [`ScheduleConfig::steady_burst_size`] is above 1.
    fn enter_steady(&mut self) {
        self.phase = if self.config.steady_burst_size > 1 {
            Phase::Burst(Burst::new(BurstReason::Steady))
        } else {
            Phase::Steady
        };
    }

    fn send_after(&mut self, now_us: i64, delay: Duration) {
        let delay_us = i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
        self.next_send_us = Some(now_us.saturating_add(delay_us));
    }
}

impl Default for SyncSchedule {
    fn default() -> Self {
        Self::new(ScheduleConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::filter::sim::{Path, World};
    use crate::sync::FilterConfig;

    const SECOND: i64 = 1_000_000;

    /// One simulated exchange: when the request went out and what came of
    /// it.
    #[derive(Debug)]
    struct Exchange {
        sent_us: i64,
        reply: Option<Measurement>,
        outcome: ExchangeOutcome,
    }

    /// Schedule, filter and simulated world driven on simulated time.
    struct Harness {
        schedule: SyncSchedule,
        filter: TimeFilter,
        world: World,
        now_us: i64,
    }

    impl Harness {
        fn new(world: World) -> Self {
            Self::with_config(world, ScheduleConfig::default())
        }

        /// Creates a harness whose steady phase sends single requests, so
        /// each steady exchange is one reply.
        fn single(world: World) -> Self {
            let config = ScheduleConfig {
                steady_burst_size: 1,
                ..ScheduleConfig::default()
            };
            Self::with_config(world, config)
        }

        fn with_config(world: World, config: ScheduleConfig) -> Self {
            Self {
                schedule: SyncSchedule::new(config),
                filter: TimeFilter::new(FilterConfig::default()),
                world,
                now_us: SECOND,
            }
        }

        /// Sends the next request when it is due and finishes the
        /// exchange.
        fn exchange(&mut self) -> Exchange {
            self.now_us += self.schedule.send_delay(self.now_us).as_micros() as i64;
            let sent_us = self.now_us;
            self.schedule.record_sent(sent_us);
            let reply = self.world.exchange(sent_us);
            self.finish(sent_us, reply)
        }

        fn finish(&mut self, sent_us: i64, reply: Option<Measurement>) -> Exchange {
            let timeout_us = self.schedule.config().reply_timeout.as_micros() as i64;
            let outcome = match reply {
                Some(measurement) if measurement.client_received - sent_us <= timeout_us => {
                    self.now_us = measurement.client_received;
                    self.schedule.record_reply(measurement, &mut self.filter)
                }
                _ => {
                    self.now_us = sent_us + timeout_us;
                    self.schedule.record_timeout(self.now_us, &mut self.filter)
                }
            };
            Exchange {
                sent_us,
                reply,
                outcome,
            }
        }

        fn run_for(&mut self, duration_us: i64) -> Vec<Exchange> {
            let end = self.now_us + duration_us;
            let mut exchanges = Vec::new();
            while self.now_us < end {
                exchanges.push(self.exchange());
            }
            exchanges
        }

        fn offset_error_us(&self) -> f64 {
            let estimated = self.filter.snapshot().local_to_server(self.now_us) as f64;
            estimated - self.world.server_time(self.now_us as f64)
        }
    }

    fn burst_of(harness: &mut Harness) -> Vec<Exchange> {
        let size = harness.schedule.config().burst_size;
        (0..size).map(|_| harness.exchange()).collect()
    }

    fn is_step_outcome(outcome: &ExchangeOutcome) -> bool {
        matches!(
            outcome,
            ExchangeOutcome::StepSuspected(_) | ExchangeOutcome::StepConfirmed(_)
        )
    }

    #[test]
    fn start_sends_burst() {
        let mut harness = Harness::new(World::new(11, 5_000_000.0, 0.0));
        let spacing = harness.schedule.config().burst_spacing.as_micros() as i64;

        assert_eq!(
            harness.schedule.phase(),
            SchedulePhase::Burst(BurstReason::Start)
        );
        assert_eq!(harness.schedule.send_delay(0), Duration::ZERO);
        let burst = burst_of(&mut harness);

        for pair in burst.windows(2) {
            let reply = pair[0].reply.unwrap();
            assert_eq!(pair[1].sent_us - reply.client_received, spacing);
        }
        for exchange in &burst[..burst.len() - 1] {
            assert_eq!(exchange.outcome, ExchangeOutcome::Buffered);
        }
        assert!(matches!(
            burst.last().unwrap().outcome,
            ExchangeOutcome::Applied(_)
        ));
        assert_eq!(harness.filter.samples(), 1);
        assert_eq!(harness.schedule.phase(), SchedulePhase::Steady);
        assert_eq!(
            harness.schedule.send_delay(harness.now_us),
            harness.schedule.config().min_interval
        );
    }

    #[test]
    fn burst_applies_shortest_round_trip() {
        let mut harness = Harness::new(World::new(12, 5_000_000.0, 0.0));

        let burst = burst_of(&mut harness);
        let delays: Vec<i64> = burst
            .iter()
            .map(|exchange| exchange.reply.unwrap().sample().unwrap().delay_us)
            .collect();
        let shortest = *delays.iter().min().unwrap();

        assert!(delays.iter().any(|&delay| delay != shortest), "{delays:?}");
        assert_eq!(harness.filter.snapshot().rtt_us, shortest);
    }

    #[test]
    fn interval_grows_when_stable() {
        let mut harness = Harness::single(World::new(13, -750_000.0, 30e-6));
        let max_interval = harness.schedule.config().max_interval;

        let exchanges = harness.run_for(120 * SECOND);
        // Gap from each steady reply to the next request.
        let steady = &exchanges[harness.schedule.config().burst_size as usize - 1..];
        let gaps: Vec<i64> = steady
            .windows(2)
            .map(|pair| pair[1].sent_us - pair[0].reply.unwrap().client_received)
            .collect();

        assert_eq!(
            gaps[0],
            harness.schedule.config().min_interval.as_micros() as i64
        );
        assert!(gaps.windows(2).all(|pair| pair[1] >= pair[0]), "{gaps:?}");
        assert_eq!(*gaps.last().unwrap(), max_interval.as_micros() as i64);
        assert_eq!(harness.schedule.interval(), max_interval);
        assert!(!exchanges
            .iter()
            .any(|exchange| is_step_outcome(&exchange.outcome)));
        assert!(harness.offset_error_us().abs() < 500.0);
    }

    #[test]
    fn interval_shrinks_on_large_residual() {
        for sign in [1.0, -1.0] {
            let mut harness = Harness::single(World::new(14, 0.0, 0.0));
            harness.run_for(120 * SECOND);
            let before = harness.schedule.interval();

            // Shift the server timestamps so the residual is twice the
            // bound: outside it, but too small to suggest a clock step.
            harness.now_us += harness.schedule.send_delay(harness.now_us).as_micros() as i64;
            let sent_us = harness.now_us;
            harness.schedule.record_sent(sent_us);
            let mut reply = harness.world.exchange(sent_us).unwrap();
            let innovation = harness.filter.innovation(&reply.sample().unwrap()).unwrap();
            let shift =
                (sign * 2.0 * innovation.bound_us() - innovation.residual_us).round() as i64;
            reply.server_received += shift;
            reply.server_transmitted += shift;
            let exchange = harness.finish(sent_us, Some(reply));

            let ExchangeOutcome::Applied(report) = exchange.outcome else {
                panic!("expected an applied sample, got {:?}", exchange.outcome);
            };
            let ratio = report.innovation.unwrap().bound_ratio();
            assert!(ratio > 1.5, "ratio {ratio}");
            assert!(ratio < 2.5, "ratio {ratio}");
            assert_eq!(harness.schedule.interval(), before / 2);
        }
    }

    #[test]
    fn reset_starts_new_burst() {
        let mut harness = Harness::new(World::new(15, 42_000.0, 0.0));
        harness.run_for(30 * SECOND);
        assert_eq!(harness.schedule.phase(), SchedulePhase::Steady);
        let samples = harness.filter.samples();

        harness.schedule.reset();

        assert_eq!(
            harness.schedule.phase(),
            SchedulePhase::Burst(BurstReason::Start)
        );
        assert_eq!(harness.schedule.send_delay(harness.now_us), Duration::ZERO);
        assert_eq!(
            harness.schedule.interval(),
            harness.schedule.config().min_interval
        );
        let burst = burst_of(&mut harness);
        assert!(burst[..burst.len() - 1]
            .iter()
            .all(|exchange| exchange.outcome == ExchangeOutcome::Buffered));
        assert_eq!(harness.filter.samples(), samples + 1);
    }

    #[test]
    fn clock_step_resets_and_recovers() {
        for step in [SECOND as f64, -SECOND as f64] {
            let mut harness = Harness::new(World::new(16, 3_000_000.0, -40e-6));
            harness.run_for(60 * SECOND);
            assert!(harness.filter.is_converged());

            harness.world.step_us = step;
            let exchanges = harness.run_for(15 * SECOND);
            let suspected = exchanges
                .iter()
                .position(|exchange| matches!(exchange.outcome, ExchangeOutcome::StepSuspected(_)));
            let confirmed = exchanges
                .iter()
                .position(|exchange| matches!(exchange.outcome, ExchangeOutcome::StepConfirmed(_)));

            let (Some(suspected), Some(confirmed)) = (suspected, confirmed) else {
                panic!("step {step} µs: no suspected and confirmed step in {exchanges:?}");
            };
            assert_eq!(
                confirmed - suspected,
                harness.schedule.config().burst_size as usize
            );
            assert!(harness.filter.is_converged(), "step {step} µs");
            let error = harness.offset_error_us();
            assert!(
                error.abs() < 1_000.0,
                "offset error {error} µs after step {step} µs"
            );
        }
    }

    #[test]
    fn small_step_on_loopback_is_absorbed() {
        let mut world = World::new(23, 70_000.0, 0.0);
        let loopback = Path {
            base_us: 20.0,
            jitter_mean_us: 10.0,
        };
        world.forward = loopback;
        world.backward = loopback;
        let mut harness = Harness::new(world);
        harness.run_for(60 * SECOND);

        harness.world.step_us = 1_500.0;
        let exchanges = harness.run_for(60 * SECOND);

        assert!(!exchanges
            .iter()
            .any(|exchange| is_step_outcome(&exchange.outcome)));
        let error = harness.offset_error_us();
        assert!(
            error.abs() < 100.0,
            "offset error {error} µs after a 1.5 ms step"
        );
    }

    #[test]
    fn single_outlier_does_not_reset() {
        let mut harness = Harness::single(World::new(17, 0.0, 0.0));
        harness.run_for(60 * SECOND);
        let samples = harness.filter.samples();

        harness.now_us += harness.schedule.send_delay(harness.now_us).as_micros() as i64;
        let sent_us = harness.now_us;
        harness.schedule.record_sent(sent_us);
        let mut reply = harness.world.exchange(sent_us).unwrap();
        reply.server_received -= SECOND;
        reply.server_transmitted -= SECOND;
        let outlier = harness.finish(sent_us, Some(reply));
        let check = burst_of(&mut harness);

        assert!(matches!(outlier.outcome, ExchangeOutcome::StepSuspected(_)));
        assert_eq!(
            harness.schedule.phase(),
            SchedulePhase::Steady,
            "the check burst ended"
        );
        assert!(matches!(
            check.last().unwrap().outcome,
            ExchangeOutcome::Applied(_)
        ));
        assert_eq!(harness.filter.samples(), samples + 1);
        assert!(harness.offset_error_us().abs() < 500.0);
    }

    #[test]
    fn delay_change_keeps_estimate() {
        let mut harness = Harness::new(World::new(18, 9_000_000.0, 15e-6));
        harness.run_for(60 * SECOND);

        // The forward path becomes 30 ms longer for two minutes and then
        // returns to normal. That biases each measured offset by +15 ms, but
        // max_error grows by as much, so no step is suspected.
        harness.world.forward.base_us += 30_000.0;
        let delayed = harness.run_for(120 * SECOND);
        let worst = harness.offset_error_us().abs();
        harness.world.forward = Path::symmetric_lan();
        let recovered = harness.run_for(60 * SECOND);

        assert!(!delayed
            .iter()
            .any(|exchange| is_step_outcome(&exchange.outcome)));
        assert!(!recovered
            .iter()
            .any(|exchange| is_step_outcome(&exchange.outcome)));
        assert!(worst < 5_000.0, "offset error {worst} µs while delayed");
        let error = harness.offset_error_us();
        assert!(
            error.abs() < 500.0,
            "offset error {error} µs after recovery"
        );
    }

    #[test]
    fn lost_burst_repeats() {
        let mut world = World::new(19, 0.0, 0.0);
        world.loss = 1.0;
        let mut harness = Harness::new(world);

        let lost = burst_of(&mut harness);
        let phase_after_loss = harness.schedule.phase();
        let retry_delay = harness.schedule.send_delay(harness.now_us);
        harness.world.loss = 0.0;
        burst_of(&mut harness);

        assert!(lost
            .iter()
            .all(|exchange| exchange.outcome == ExchangeOutcome::Lost));
        assert_eq!(phase_after_loss, SchedulePhase::Burst(BurstReason::Start));
        assert_eq!(retry_delay, harness.schedule.config().min_interval);
        assert_eq!(harness.filter.samples(), 1);
    }

    #[test]
    fn converges_with_lossy_network() {
        let mut world = World::new(20, 1_234_000.0, 5e-6);
        world.loss = 0.3;
        let mut harness = Harness::new(world);

        harness.run_for(60 * SECOND);

        assert!(harness.filter.is_converged());
        assert!(harness.offset_error_us().abs() < 500.0);
    }

    /// Returns the offset errors, in µs, sampled after every exchange from
    /// 20 s on of a 120 s run on a link with heavy queueing jitter.
    fn errors_on_jittery_link(mut harness: Harness) -> Vec<f64> {
        let mut errors = Vec::new();
        while harness.now_us < 120 * SECOND {
            harness.exchange();
            if harness.now_us > 20 * SECOND {
                errors.push(harness.offset_error_us().abs());
            }
        }
        errors.sort_by(f64::total_cmp);
        errors
    }

    fn jittery_world() -> World {
        let mut world = World::new(31, -2_000_000.0, 30e-6);
        for path in [&mut world.forward, &mut world.backward] {
            path.base_us = 1_000.0;
            path.jitter_mean_us = 2_000.0;
        }
        world
    }

    #[test]
    fn steady_bursts_beat_single_requests() {
        let single = errors_on_jittery_link(Harness::single(jittery_world()));
        let bursts = errors_on_jittery_link(Harness::new(jittery_world()));

        let p90 = |errors: &[f64]| errors[errors.len() * 9 / 10];
        assert!(
            p90(&bursts) < p90(&single) * 0.7,
            "p90 offset error with steady bursts {:.0} us, with single requests {:.0} us",
            p90(&bursts),
            p90(&single)
        );
    }

    #[test]
    fn stale_reply_is_ignored() {
        let mut harness = Harness::new(World::new(21, 0.0, 0.0));
        harness.schedule.record_sent(SECOND);
        let late = harness.world.exchange(SECOND - 5_000).unwrap();

        let outcome = harness.schedule.record_reply(late, &mut harness.filter);

        assert_eq!(outcome, ExchangeOutcome::Stale);
        assert_eq!(harness.filter.samples(), 0);
    }

    #[test]
    fn invalid_reply_is_rejected() {
        let mut harness = Harness::single(World::new(22, 0.0, 0.0));
        harness.run_for(10 * SECOND);
        let samples = harness.filter.samples();
        harness.schedule.record_sent(harness.now_us);
        let reply = Measurement {
            client_transmitted: harness.now_us,
            server_received: 500,
            server_transmitted: 400,
            client_received: harness.now_us + 1_000,
        };

        let outcome = harness.schedule.record_reply(reply, &mut harness.filter);

        assert!(matches!(
            outcome,
            ExchangeOutcome::Rejected(MeasurementError::NegativeServerHold { .. })
        ));
        assert_eq!(harness.filter.samples(), samples);
        assert_eq!(
            harness.schedule.send_delay(reply.client_received),
            harness.schedule.config().min_interval
        );
    }
}
