//! Counters, latency histograms and the final report of a stress run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::check::{ViolationGroup, ViolationKind};
use crate::server::StatsSnapshot;

/// Counters that every virtual client updates and the progress line reads.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections that completed the WebSocket upgrade.
    pub opened: AtomicU64,
    /// Connections that got `server/hello`.
    pub handshakes: AtomicU64,
    /// Connections that ended, by any cause.
    pub closed: AtomicU64,
    /// Connections that could not be opened.
    pub connect_failures: AtomicU64,
    /// Audio chunks received.
    pub audio_chunks: AtomicU64,
    /// `server/time` replies received.
    pub time_replies: AtomicU64,
    /// Audio chunks judged against their play time (fan-out).
    pub chunks_judged: AtomicU64,
    /// Audio chunks that arrived after their play time (fan-out).
    pub chunks_late: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Timed interval, recorded in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Measure {
    /// TCP connect and WebSocket upgrade.
    Connect,
    /// `client/hello` sent to `server/hello` received.
    Handshake,
    /// Round trip of the first `client/time` of a session.
    FirstTimeRtt,
    /// Round trip of every `client/time` (time flood).
    TimeRtt,
    /// `client/hello` sent to the first audio chunk received.
    FirstAudio,
    /// Smallest time from arrival to play time over one player's chunks,
    /// one sample per player that got no late chunk (fan-out).
    MinChunkLead,
}

impl Measure {
    const ALL: [Measure; 6] = [
        Measure::Connect,
        Measure::Handshake,
        Measure::FirstTimeRtt,
        Measure::TimeRtt,
        Measure::FirstAudio,
        Measure::MinChunkLead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Connect => "connect",
            Measure::Handshake => "handshake",
            Measure::FirstTimeRtt => "first_time_rtt",
            Measure::TimeRtt => "time_rtt",
            Measure::FirstAudio => "first_audio",
            Measure::MinChunkLead => "min_chunk_lead",
        }
    }
}

/// Latency histograms, one per [`Measure`].
#[derive(Debug)]
pub struct Latencies {
    histograms: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Latencies {
    fn default() -> Self {
        let histogram = || {
            Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
            )
        };
        Latencies {
            histograms: Measure::ALL.iter().map(|_| histogram()).collect(),
        }
    }
}

impl Latencies {
    pub fn record(&self, measure: Measure, elapsed: Duration) {
        let micros = (elapsed.as_micros() as u64).max(1);
        let mut histogram = self.histograms[measure as usize]
            .lock()
            .expect("histogram lock poisoned");
        histogram.saturating_record(micros);
    }

    pub fn summaries(&self) -> BTreeMap<&'static str, LatencySummary> {
        let mut summaries = BTreeMap::new();
        for measure in Measure::ALL {
            let histogram = self.histograms[measure as usize]
                .lock()
                .expect("histogram lock poisoned");
            if histogram.is_empty() {
                continue;
            }
            summaries.insert(
                measure.as_str(),
                LatencySummary {
                    count: histogram.len(),
                    p50_us: histogram.value_at_quantile(0.5),
                    p90_us: histogram.value_at_quantile(0.9),
                    p99_us: histogram.value_at_quantile(0.99),
                    p999_us: histogram.value_at_quantile(0.999),
                    max_us: histogram.max(),
                },
            );
        }
        summaries
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// Result of one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    pub scenario: &'static str,
    pub elapsed_ms: u64,
    pub sessions_opened: u64,
    pub handshakes: u64,
    pub sessions_closed: u64,
    pub connect_failures: u64,
    pub handshakes_per_second: f64,
    pub audio_chunks: u64,
    pub time_replies: u64,
    /// Audio chunks judged against their play time, and those of them
    /// that arrived late (fan-out only).
    pub chunks_judged: u64,
    pub chunks_late: u64,
    pub latency: BTreeMap<&'static str, LatencySummary>,
    pub violations: BTreeMap<ViolationKind, ViolationGroup>,
    /// The server's counters after the scenario, when the target is an
    /// embedded server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<StatsSnapshot>,
    /// Observations worth reporting that are not violations.
    pub notes: Vec<String>,
}

impl ScenarioReport {
    pub fn violation_count(&self) -> u64 {
        self.violations.values().map(|g| g.count).sum()
    }
}

/// Result of a whole stress run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub dialect: String,
    pub seed: u64,
    pub clients: usize,
    pub scenarios: Vec<ScenarioReport>,
}

impl Report {
    pub fn violation_count(&self) -> u64 {
        self.scenarios
            .iter()
            .map(ScenarioReport::violation_count)
            .sum()
    }

    /// Formats the report as text for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "target {} ({}), seed {}, {} clients",
            self.target, self.dialect, self.seed, self.clients
        );
        for scenario in &self.scenarios {
            render_scenario(&mut out, scenario);
        }
        let total = self.violation_count();
        let _ = writeln!(
            out,
            "\n{}",
            if total == 0 {
                "no violations".to_string()
            } else {
                format!("{total} violations in all")
            }
        );
        out
    }
}

fn render_scenario(out: &mut String, s: &ScenarioReport) {
    let _ = writeln!(
        out,
        "\n{}: {} sessions ({} handshakes, {:.0}/s) in {:.1} s, {} closed, {} failed to connect",
        s.scenario,
        s.sessions_opened,
        s.handshakes,
        s.handshakes_per_second,
        s.elapsed_ms as f64 / 1000.0,
        s.sessions_closed,
        s.connect_failures
    );
    if s.audio_chunks > 0 || s.time_replies > 0 {
        let _ = writeln!(
            out,
            "  {} audio chunks, {} time replies",
            s.audio_chunks, s.time_replies
        );
    }
    if s.chunks_judged > 0 {
        let _ = writeln!(
            out,
            "  {} chunks judged against their play time, {} arrived late",
            s.chunks_judged, s.chunks_late
        );
    }
    if !s.latency.is_empty() {
        let _ = writeln!(
            out,
            "  {:<16}{:>8}{:>12}{:>12}{:>12}{:>12}{:>12}",
            "latency", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        for (name, l) in &s.latency {
            let _ = writeln!(
                out,
                "  {:<16}{:>8}{:>12}{:>12}{:>12}{:>12}{:>12}",
                name,
                l.count,
                millis(l.p50_us),
                millis(l.p90_us),
                millis(l.p99_us),
                millis(l.p999_us),
                millis(l.max_us)
            );
        }
    }
    for (kind, group) in &s.violations {
        let _ = writeln!(out, "  violation {kind}: {}", group.count);
        for example in &group.examples {
            let _ = writeln!(
                out,
                "    at {} ms, {}: {}",
                example.at_ms, example.session, example.detail
            );
            if let Some(message) = &example.message {
                let _ = writeln!(out, "      {message}");
            }
        }
    }
    if let Some(server) = &s.server {
        let closed: Vec<String> = server
            .closed_by_cause
            .iter()
            .map(|(cause, n)| format!("{cause} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "  server now: {} sessions live, {} clients, {} tasks; since it started: {} opened, closed: {}",
            server.sessions_live,
            server.clients_live,
            server.tasks_live,
            server.sessions_opened,
            if closed.is_empty() { "none".to_string() } else { closed.join(", ") }
        );
    }
    for note in &s.notes {
        let _ = writeln!(out, "  note: {note}");
    }
}

/// Formats microseconds as milliseconds with three decimals.
fn millis(micros: u64) -> String {
    format!("{:.3}ms", micros as f64 / 1000.0)
}
