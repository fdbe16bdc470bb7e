//! What the monitor shows, apart from how it is drawn: the latest snapshot,
//! per-session history for sparklines, the event log, and the operator's
//! choices (screen, sort, filter, selection, pause). Pure state with no I/O:
//! the caller sets the current time, so tests can fix it.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::telemetry::{
    ClockView, Event, EventKind, FeedMessage, SessionRow, Snapshot, SourceInfo,
};

use super::Update;

/// Events kept in the log; older ones are dropped.
pub const EVENT_LOG_LINES: usize = 5_000;

/// History samples kept per session, at most one per [`HISTORY_STEP_MS`],
/// so the sparklines cover the last five minutes.
pub const HISTORY_SAMPLES: usize = 300;

/// Shortest time between two history samples of one session, in milliseconds.
pub const HISTORY_STEP_MS: u64 = 1_000;

/// Window over which the header's rates are averaged, in milliseconds.
const RATE_WINDOW_MS: u64 = 10_000;

/// The monitor's screens, in tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Sessions,
    Groups,
    Events,
}

impl Screen {
    pub const ALL: [Screen; 3] = [Screen::Sessions, Screen::Groups, Screen::Events];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Sessions => "Sessions",
            Screen::Groups => "Groups",
            Screen::Events => "Events",
        }
    }
}

/// Column the sessions table is sorted by; `s` steps through them in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortColumn {
    Session,
    Name,
    State,
    Group,
    Rtt,
    Offset,
    Drift,
    Error,
    Buffer,
    Late,
    Reconnects,
}

impl SortColumn {
    const ORDER: [SortColumn; 11] = [
        SortColumn::Session,
        SortColumn::Name,
        SortColumn::State,
        SortColumn::Group,
        SortColumn::Rtt,
        SortColumn::Offset,
        SortColumn::Drift,
        SortColumn::Error,
        SortColumn::Buffer,
        SortColumn::Late,
        SortColumn::Reconnects,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SortColumn::Session => "id",
            SortColumn::Name => "name",
            SortColumn::State => "state",
            SortColumn::Group => "group",
            SortColumn::Rtt => "rtt",
            SortColumn::Offset => "|offset|",
            SortColumn::Drift => "|drift|",
            SortColumn::Error => "error",
            SortColumn::Buffer => "buffer",
            SortColumn::Late => "late+dropped",
            SortColumn::Reconnects => "reconnects",
        }
    }

    fn next(self) -> SortColumn {
        let index = SortColumn::ORDER
            .iter()
            .position(|c| *c == self)
            .unwrap_or(0);
        SortColumn::ORDER[(index + 1) % SortColumn::ORDER.len()]
    }
}

/// Side of a session that measured a clock figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockSide {
    /// The client's own filter, as the client reports it.
    Client,
    /// The server's estimate of the client's clock.
    Server,
}

/// Returns a clock figure from the client's own view when it has one,
/// otherwise the server's estimate, with the side it came from.
pub fn clock_figure(
    row: &SessionRow,
    field: impl Fn(&ClockView) -> Option<f64>,
) -> Option<(f64, ClockSide)> {
    if let Some(value) = row.client_clock.as_ref().and_then(&field) {
        return Some((value, ClockSide::Client));
    }
    row.server_clock
        .as_ref()
        .and_then(field)
        .map(|value| (value, ClockSide::Server))
}

/// One history sample of a session.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Snapshot time, in Unix milliseconds.
    pub unix_ms: u64,
    /// Clock offset in microseconds (client view preferred).
    pub offset_us: Option<f32>,
    /// Round-trip time in microseconds (client view preferred).
    pub rtt_us: Option<f32>,
    /// Buffered audio in milliseconds.
    pub buffer_ms: Option<f32>,
}

/// The recent samples of one session, oldest first, bounded by [`HISTORY_SAMPLES`].
#[derive(Clone, Debug, Default)]
pub struct History {
    pub samples: VecDeque<Sample>,
}

impl History {
    fn record(&mut self, row: &SessionRow, unix_ms: u64) {
        if let Some(last) = self.samples.back() {
            if unix_ms < last.unix_ms + HISTORY_STEP_MS {
                return;
            }
        }
        if self.samples.len() == HISTORY_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            unix_ms,
            offset_us: clock_figure(row, |c| Some(c.offset_us)).map(|(v, _)| v as f32),
            rtt_us: clock_figure(row, |c| c.rtt_us).map(|(v, _)| v as f32),
            buffer_ms: row.buffer_ms.map(|v| v as f32),
        });
    }
}

/// An event with its position in the whole stream, so a paused view can
/// hide events that arrived after the pause.
#[derive(Clone, Debug)]
pub struct LoggedEvent {
    pub seq: u64,
    pub event: Event,
}

/// Everything the monitor draws.
#[derive(Debug)]
pub struct App {
    /// Target the monitor watches, as given by the operator, such as a feed URL.
    pub target: String,
    /// Current wall-clock time in Unix milliseconds, set by the caller.
    pub now_unix_ms: u64,
    /// Connection status of the source, such as a retry countdown.
    pub status: Option<String>,
    /// The source named in the feed's hello.
    pub source: Option<SourceInfo>,
    /// Latest snapshot received.
    pub live: Arc<Snapshot>,
    /// Snapshot drawn: the live one, or the one current at the pause.
    pub shown: Arc<Snapshot>,
    /// Indices into `shown.sessions` that pass the filter, in sort order.
    pub order: Vec<usize>,
    pub histories: HashMap<String, History>,
    pub events: VecDeque<LoggedEvent>,
    /// Events received since the start, including those dropped from the log.
    pub events_total: u64,
    pub screen: Screen,
    pub sort: SortColumn,
    pub descending: bool,
    pub filter: String,
    /// Whether keys go to the filter text.
    pub editing_filter: bool,
    /// Selected position in `order`.
    pub selected: usize,
    /// Session id of the selected row, so the selection follows a session
    /// when rows move.
    selected_id: Option<String>,
    pub details: bool,
    /// Event count at the pause, when paused.
    pub paused_at: Option<u64>,
    /// Lines the event log is scrolled up from its newest line.
    pub event_scroll: usize,
    /// First group row drawn.
    pub group_scroll: usize,
    /// First session row drawn; the view moves it to keep the selection visible.
    pub table_offset: Cell<usize>,
    /// Lines of the current screen's list in the last frame, the step of
    /// Page Up and Page Down; the view sets it.
    pub page_lines: Cell<usize>,
    /// Counter `sessions_opened` over recent snapshots: (time, value).
    opened: VecDeque<(u64, u64)>,
}

impl App {
    pub fn new(target: impl Into<String>, now_unix_ms: u64) -> App {
        App {
            target: target.into(),
            now_unix_ms,
            status: None,
            source: None,
            live: Arc::default(),
            shown: Arc::default(),
            order: Vec::new(),
            histories: HashMap::new(),
            events: VecDeque::new(),
            events_total: 0,
            screen: Screen::Sessions,
            sort: SortColumn::Session,
            descending: false,
            filter: String::new(),
            editing_filter: false,
            selected: 0,
            selected_id: None,
            details: false,
            paused_at: None,
            event_scroll: 0,
            group_scroll: 0,
            table_offset: Cell::new(0),
            page_lines: Cell::new(10),
            opened: VecDeque::new(),
        }
    }

    pub fn paused(&self) -> bool {
        self.paused_at.is_some()
    }

    /// Applies one update from the source.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Status(status) => self.status = Some(status),
            Update::Feed(FeedMessage::Hello(hello)) => self.source = Some(hello.source),
            Update::Feed(FeedMessage::Event(event)) => self.push_event(event),
            Update::Feed(FeedMessage::Snapshot(snapshot)) => self.apply_snapshot(snapshot),
        }
    }

    fn push_event(&mut self, event: Event) {
        if self.events.len() == EVENT_LOG_LINES {
            self.events.pop_front();
        }
        self.events.push_back(LoggedEvent {
            seq: self.events_total,
            event,
        });
        self.events_total += 1;
    }

    fn apply_snapshot(&mut self, snapshot: Snapshot) {
        // History goes on while paused; only the drawn snapshot freezes.
        let taken = snapshot.taken_unix_ms;
        for row in &snapshot.sessions {
            self.histories
                .entry(row.session.clone())
                .or_default()
                .record(row, taken);
        }
        if self.histories.len() > snapshot.sessions.len() {
            let present: std::collections::HashSet<&str> = snapshot
                .sessions
                .iter()
                .map(|r| r.session.as_str())
                .collect();
            self.histories.retain(|id, _| present.contains(id.as_str()));
        }
        if let Some(&opened) = snapshot.counters.get("sessions_opened") {
            self.opened.push_back((taken, opened));
            while self.opened.len() > 2 && self.opened[1].0 + RATE_WINDOW_MS <= taken {
                self.opened.pop_front();
            }
        }
        if self.source.is_none() {
            self.source = Some(snapshot.source.clone());
        }

        self.live = Arc::new(snapshot);
        if !self.paused() {
            self.shown = self.live.clone();
            self.refresh_order();
        }
    }

    /// Recomputes the filtered and sorted row order, keeping the selected
    /// session selected when it is still listed.
    pub fn refresh_order(&mut self) {
        let sessions = &self.shown.sessions;
        let needle = self.filter.to_lowercase();
        let mut order: Vec<usize> = (0..sessions.len())
            .filter(|&i| needle.is_empty() || row_matches(&sessions[i], &needle))
            .collect();
        let (sort, descending) = (self.sort, self.descending);
        order.sort_by(|&a, &b| {
            compare_rows(&sessions[a], &sessions[b], sort, descending)
                .then_with(|| natural_cmp(&sessions[a].session, &sessions[b].session))
        });
        self.order = order;

        let found = self
            .selected_id
            .as_ref()
            .and_then(|id| self.order.iter().position(|&i| &sessions[i].session == id));
        match found {
            Some(position) => self.selected = position,
            None => {
                // The details of a session that is gone would silently
                // turn into another session's, so they close.
                if self.selected_id.is_some() {
                    self.details = false;
                }
                self.select(self.selected);
            }
        }
    }

    fn select(&mut self, position: usize) {
        self.selected = position.min(self.order.len().saturating_sub(1));
        self.selected_id = self.selected_row().map(|row| row.session.clone());
    }

    /// Returns the selected session row, if any row is listed.
    pub fn selected_row(&self) -> Option<&SessionRow> {
        self.order
            .get(self.selected)
            .map(|&i| &self.shown.sessions[i])
    }

    /// Moves the selection or scrolls the current screen by `delta` lines.
    pub fn move_by(&mut self, delta: isize) {
        match self.screen {
            Screen::Sessions => self.select(self.selected.saturating_add_signed(delta)),
            Screen::Groups => {
                let last = self.shown.groups.len().saturating_sub(1);
                self.group_scroll = self.group_scroll.saturating_add_signed(delta).min(last);
            }
            Screen::Events => {
                // Up (negative) scrolls back to older events, at most until
                // the oldest page is full.
                let last = self.max_event_scroll();
                self.event_scroll = self.event_scroll.saturating_add_signed(-delta).min(last);
            }
        }
    }

    /// Moves to the first (`to_end` false) or last line of the current screen.
    pub fn move_to_end(&mut self, to_end: bool) {
        match self.screen {
            Screen::Sessions => self.select(if to_end { usize::MAX } else { 0 }),
            Screen::Groups => {
                self.group_scroll = if to_end {
                    self.shown.groups.len().saturating_sub(1)
                } else {
                    0
                }
            }
            Screen::Events => self.event_scroll = if to_end { 0 } else { self.max_event_scroll() },
        }
    }

    /// Scroll position that shows the oldest events as a full page.
    fn max_event_scroll(&self) -> usize {
        let page = self.page_lines.get().max(1);
        self.visible_events().count().saturating_sub(page)
    }

    pub fn next_screen(&mut self, step: isize) {
        let index = Screen::ALL
            .iter()
            .position(|s| *s == self.screen)
            .unwrap_or(0) as isize;
        let count = Screen::ALL.len() as isize;
        self.screen = Screen::ALL[(index + step).rem_euclid(count) as usize];
        self.details = false;
    }

    pub fn show_screen(&mut self, screen: Screen) {
        self.screen = screen;
        self.details = false;
    }

    pub fn next_sort(&mut self) {
        self.sort = self.sort.next();
        self.refresh_order();
    }

    pub fn reverse_sort(&mut self) {
        self.descending = !self.descending;
        self.refresh_order();
    }

    pub fn toggle_pause(&mut self) {
        match self.paused_at {
            Some(_) => {
                self.paused_at = None;
                self.shown = self.live.clone();
                self.refresh_order();
            }
            None => self.paused_at = Some(self.events_total),
        }
    }

    pub fn toggle_details(&mut self) {
        self.details = !self.details && self.selected_row().is_some();
    }

    pub fn start_filter(&mut self) {
        self.screen = Screen::Sessions;
        self.details = false;
        self.editing_filter = true;
    }

    pub fn filter_push(&mut self, c: char) {
        self.filter.push(c);
        self.refresh_order();
    }

    pub fn filter_pop(&mut self) {
        self.filter.pop();
        self.refresh_order();
    }

    /// Ends filter editing; `keep` false also clears the filter.
    pub fn end_filter(&mut self, keep: bool) {
        self.editing_filter = false;
        if !keep {
            self.filter.clear();
            self.refresh_order();
        }
    }

    /// Returns the events the log shows, oldest first: all of them, or
    /// those received before the pause.
    pub fn visible_events(
        &self,
    ) -> impl DoubleEndedIterator<Item = &LoggedEvent> + ExactSizeIterator {
        let hidden = match self.paused_at {
            Some(at) => self.events.iter().rev().take_while(|e| e.seq >= at).count(),
            None => 0,
        };
        self.events.range(..self.events.len() - hidden)
    }

    /// Returns the time since the source started, in milliseconds.
    pub fn uptime_ms(&self) -> Option<u64> {
        let started = self.source.as_ref()?.started_unix_ms;
        (started > 0).then(|| self.now_unix_ms.saturating_sub(started))
    }

    /// Returns new sessions per second over the last ten seconds (or the
    /// source's uptime, when shorter): from the
    /// `sessions_opened` counter when the source publishes it, otherwise
    /// from `connected` events.
    pub fn session_rate(&self) -> f64 {
        if let (Some(first), Some(last)) = (self.opened.front(), self.opened.back()) {
            if last.0 > first.0 {
                return last.1.saturating_sub(first.1) as f64 * 1000.0 / (last.0 - first.0) as f64;
            }
        }
        self.recent_events(|kind| kind == EventKind::Connected)
    }

    /// Returns events per second over the last ten seconds, or the
    /// source's uptime when shorter.
    pub fn event_rate(&self) -> f64 {
        self.recent_events(|_| true)
    }

    fn recent_events(&self, wanted: impl Fn(EventKind) -> bool) -> f64 {
        // A source younger than the window is averaged over its uptime.
        let window = self
            .uptime_ms()
            .unwrap_or(RATE_WINDOW_MS)
            .clamp(1_000, RATE_WINDOW_MS);
        let since = self.now_unix_ms.saturating_sub(window);
        let count = self
            .events
            .iter()
            .rev()
            .take_while(|e| e.event.unix_ms >= since)
            .filter(|e| wanted(e.event.kind))
            .count();
        count as f64 * 1000.0 / window as f64
    }
}

/// Returns whether any text field of `row` contains `needle` (lowercase).
fn row_matches(row: &SessionRow, needle: &str) -> bool {
    let contains = |text: &str| text.to_lowercase().contains(needle);
    contains(&row.session)
        || row.client_id.as_deref().is_some_and(contains)
        || row.name.as_deref().is_some_and(contains)
        || contains(&row.peer)
        || contains(&row.dialect)
        || row.roles.iter().any(|role| contains(role))
        || contains(row.phase.as_str())
        || row.group.as_deref().is_some_and(contains)
        || row.format.as_deref().is_some_and(contains)
}

/// Orders two rows by `column`; rows without a value sort last in either
/// direction.
fn compare_rows(a: &SessionRow, b: &SessionRow, column: SortColumn, descending: bool) -> Ordering {
    let direct = |ordering: Ordering| {
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    };
    let number = |row: &SessionRow| -> Option<f64> {
        match column {
            SortColumn::Rtt => clock_figure(row, |c| c.rtt_us).map(|(v, _)| v),
            SortColumn::Offset => clock_figure(row, |c| Some(c.offset_us)).map(|(v, _)| v.abs()),
            SortColumn::Drift => clock_figure(row, |c| c.drift_ppm).map(|(v, _)| v.abs()),
            SortColumn::Error => clock_figure(row, |c| c.error_us).map(|(v, _)| v),
            SortColumn::Buffer => row.buffer_ms,
            SortColumn::Late => Some((row.late_chunks + row.dropped_chunks) as f64),
            SortColumn::Reconnects => Some(row.reconnects as f64),
            _ => None,
        }
    };
    match column {
        SortColumn::Session => direct(natural_cmp(&a.session, &b.session)),
        SortColumn::Name => direct(
            a.name
                .as_deref()
                .unwrap_or("")
                .cmp(b.name.as_deref().unwrap_or("")),
        ),
        SortColumn::State => direct(a.phase.cmp(&b.phase)),
        SortColumn::Group => direct(a.group.cmp(&b.group)),
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => direct(x.total_cmp(&y)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
    }
}

/// Compares session ids such as `s9` and `s10` by their number when both
/// have the same prefix, so `s10` comes after `s9`.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let split = |s: &str| {
        let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (prefix, number) = s.split_at(s.len() - digits);
        (prefix.to_string(), number.parse::<u64>().ok())
    };
    let (pa, na) = split(a);
    let (pb, nb) = split(b);
    pa.cmp(&pb).then(na.cmp(&nb)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Phase;

    fn row(id: &str, offset_us: f64) -> SessionRow {
        SessionRow {
            session: id.into(),
            peer: "127.0.0.1:1".into(),
            dialect: "sendspin-v1".into(),
            phase: Phase::Active,
            server_clock: Some(ClockView {
                offset_us,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn snapshot(taken_unix_ms: u64, sessions: Vec<SessionRow>) -> Update {
        Update::Feed(FeedMessage::Snapshot(Snapshot {
            taken_unix_ms,
            sessions,
            ..Default::default()
        }))
    }

    fn shown_ids(app: &App) -> Vec<&str> {
        app.order
            .iter()
            .map(|&i| app.shown.sessions[i].session.as_str())
            .collect()
    }

    #[test]
    fn session_ids_sort_by_number() {
        let mut app = App::new("t", 0);
        app.apply(snapshot(
            1,
            vec![row("s10", 0.0), row("s9", 0.0), row("s1", 0.0)],
        ));
        assert_eq!(shown_ids(&app), ["s1", "s9", "s10"]);
    }

    #[test]
    fn sort_by_offset_uses_magnitude() {
        let mut app = App::new("t", 0);
        let mut no_clock = row("s4", 0.0);
        no_clock.server_clock = None;
        app.apply(snapshot(
            1,
            vec![row("s1", -50.0), row("s2", 10.0), no_clock, row("s3", 20.0)],
        ));
        while app.sort != SortColumn::Offset {
            app.next_sort();
        }
        assert_eq!(shown_ids(&app), ["s2", "s3", "s1", "s4"]);
        app.reverse_sort();
        assert_eq!(shown_ids(&app), ["s1", "s3", "s2", "s4"]);
    }

    #[test]
    fn filter_matches_any_text_field() {
        let mut app = App::new("t", 0);
        let mut kitchen = row("s1", 0.0);
        kitchen.name = Some("Kitchen".into());
        app.apply(snapshot(1, vec![kitchen, row("s2", 0.0)]));
        for c in "kitch".chars() {
            app.filter_push(c);
        }
        assert_eq!(shown_ids(&app), ["s1"]);
        app.end_filter(false);
        assert_eq!(shown_ids(&app), ["s1", "s2"]);
    }

    #[test]
    fn selection_follows_session_across_snapshots() {
        let mut app = App::new("t", 0);
        app.apply(snapshot(
            1,
            vec![row("s1", 0.0), row("s2", 0.0), row("s3", 0.0)],
        ));
        app.move_by(1);
        assert_eq!(app.selected_row().unwrap().session, "s2");
        app.apply(snapshot(
            2,
            vec![row("s0", 0.0), row("s2", 0.0), row("s3", 0.0)],
        ));
        assert_eq!(app.selected_row().unwrap().session, "s2");
        app.apply(snapshot(3, vec![row("s0", 0.0)]));
        assert_eq!(app.selected_row().unwrap().session, "s0");
    }

    #[test]
    fn details_close_when_session_leaves() {
        let mut app = App::new("t", 0);
        app.apply(snapshot(1, vec![row("s1", 0.0), row("s2", 0.0)]));
        app.toggle_details();
        assert!(app.details);
        app.apply(snapshot(2, vec![row("s1", 1.0), row("s2", 0.0)]));
        assert!(app.details);
        app.apply(snapshot(3, vec![row("s2", 0.0)]));
        assert!(!app.details);
        assert_eq!(app.selected_row().unwrap().session, "s2");
    }

    #[test]
    fn pause_freezes_view_but_keeps_history() {
        let mut app = App::new("t", 0);
        app.apply(snapshot(1_000, vec![row("s1", 1.0)]));
        app.toggle_pause();
        app.apply(snapshot(2_000, vec![row("s1", 2.0), row("s2", 0.0)]));
        app.apply(Update::Feed(FeedMessage::Event(Event::now(
            EventKind::Info,
            "later",
        ))));
        assert_eq!(shown_ids(&app), ["s1"]);
        assert_eq!(app.histories["s1"].samples.len(), 2);
        assert_eq!(app.visible_events().count(), 0);
        app.toggle_pause();
        assert_eq!(shown_ids(&app), ["s1", "s2"]);
        assert_eq!(app.visible_events().count(), 1);
    }

    #[test]
    fn history_is_bounded_and_spaced() {
        let mut app = App::new("t", 0);
        for n in 0..HISTORY_SAMPLES as u64 + 20 {
            app.apply(snapshot(n * HISTORY_STEP_MS, vec![row("s1", n as f64)]));
            // A second snapshot within the step adds no sample.
            app.apply(snapshot(n * HISTORY_STEP_MS + 10, vec![row("s1", -1.0)]));
        }
        let samples = &app.histories["s1"].samples;
        assert_eq!(samples.len(), HISTORY_SAMPLES);
        assert_eq!(samples.front().unwrap().offset_us, Some(20.0));
    }

    #[test]
    fn history_of_gone_sessions_is_dropped() {
        let mut app = App::new("t", 0);
        app.apply(snapshot(1_000, vec![row("s1", 1.0), row("s2", 1.0)]));
        app.apply(snapshot(2_000, vec![row("s2", 1.0)]));
        assert!(!app.histories.contains_key("s1"));
        assert!(app.histories.contains_key("s2"));
    }

    #[test]
    fn event_log_is_bounded() {
        let mut app = App::new("t", 0);
        for n in 0..EVENT_LOG_LINES + 5 {
            app.apply(Update::Feed(FeedMessage::Event(Event::now(
                EventKind::Info,
                n.to_string(),
            ))));
        }
        assert_eq!(app.events.len(), EVENT_LOG_LINES);
        assert_eq!(app.events.front().unwrap().event.detail, "5");
        assert_eq!(app.events_total, EVENT_LOG_LINES as u64 + 5);
    }

    #[test]
    fn client_clock_is_preferred() {
        let mut both = row("s1", 100.0);
        both.client_clock = Some(ClockView {
            offset_us: 5.0,
            ..Default::default()
        });
        assert_eq!(
            clock_figure(&both, |c| Some(c.offset_us)),
            Some((5.0, ClockSide::Client))
        );
        let server_only = row("s2", 100.0);
        assert_eq!(
            clock_figure(&server_only, |c| Some(c.offset_us)),
            Some((100.0, ClockSide::Server))
        );
        assert_eq!(clock_figure(&server_only, |c| c.rtt_us), None);
    }

    #[test]
    fn event_rate_over_young_source() {
        let mut app = App::new("t", 0);
        app.source = Some(SourceInfo {
            started_unix_ms: 100_000,
            ..Default::default()
        });
        for n in 0..40 {
            app.apply(Update::Feed(FeedMessage::Event(Event {
                unix_ms: 100_000 + n * 100,
                kind: EventKind::Info,
                session: None,
                client_id: None,
                detail: String::new(),
            })));
        }
        // 40 events in the first 4 s: over 4 s of uptime, then over 10 s.
        app.now_unix_ms = 104_000;
        assert_eq!(app.event_rate(), 10.0);
        app.now_unix_ms = 110_000;
        assert_eq!(app.event_rate(), 4.0);
    }

    #[test]
    fn session_rate_from_counter() {
        let mut app = App::new("t", 0);
        for (taken, opened) in [(1_000, 10), (3_000, 30)] {
            app.apply(Update::Feed(FeedMessage::Snapshot(Snapshot {
                taken_unix_ms: taken,
                counters: [("sessions_opened".to_string(), opened)].into(),
                ..Default::default()
            })));
        }
        assert_eq!(app.session_rate(), 10.0);
    }
}
