//! Drawing: one `render_*` function per area of the screen, each reading
//! the [`App`] and writing into a ratatui frame.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Sparkline, Table, Wrap};
use ratatui::Frame;

use crate::telemetry::{ClockView, EventKind, GroupRow, SessionRow, TrackInfo};

use super::state::{clock_figure, App, ClockSide, History, Sample, Screen};

/// Marks a clock figure that is the server's estimate, not the client's own.
pub const SERVER_MARK: &str = "*";

/// Note lines shown above the footer at most.
const MAX_NOTE_LINES: usize = 4;

/// Draws the whole monitor.
pub fn render(frame: &mut Frame, app: &App) {
    let notes = note_lines(app, frame.area().width).min(MAX_NOTE_LINES) as u16;
    let [header, tabs, body, notes_area, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(notes),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    render_header(frame, app, header);
    render_tabs(frame, app, tabs);
    match app.screen {
        Screen::Sessions if app.details => render_details(frame, app, body),
        Screen::Sessions => render_sessions(frame, app, body),
        Screen::Groups => render_groups(frame, app, body),
        Screen::Events => render_events(frame, app, body),
    }
    render_notes(frame, app, notes_area);
    render_footer(frame, app, footer);
}

/// Draws the pause marker, source, uptime and rates, then the feed and
/// its connection status.
pub fn render_header(frame: &mut Frame, app: &App, area: Rect) {
    let [top, status] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let mut spans = Vec::new();
    if app.paused() {
        spans.push(Span::styled(
            " PAUSED ",
            Style::new().black().on_yellow().bold(),
        ));
        spans.push(Span::raw(" "));
    }
    match &app.source {
        Some(source) => spans.push(Span::styled(
            format!("{} \"{}\"", source.kind, source.name),
            Style::new().bold(),
        )),
        None => spans.push(Span::styled("resonate monitor", Style::new().bold())),
    }
    if let Some(uptime) = app.uptime_ms() {
        spans.push(Span::raw(format!("  up {}", duration(uptime))));
    }
    spans.push(Span::raw(format!(
        "  {} sessions, {:.1}/s new  {:.1} events/s",
        app.live.sessions.len(),
        app.session_rate(),
        app.event_rate()
    )));
    frame.render_widget(Paragraph::new(Line::from(spans)), top);

    let mut feed = format!("feed {}", app.target);
    if let Some(source) = &app.source {
        feed.push_str(&format!(" ({})", source.target));
    }
    let state = app
        .status
        .as_deref()
        .unwrap_or("waiting for the first message");
    let line = Line::from(vec![
        Span::raw(feed).dark_gray(),
        Span::raw(format!("  {state}")),
    ]);
    frame.render_widget(Paragraph::new(line), status);
}

/// Draws the screen tabs, with the sort and filter of the sessions table.
pub fn render_tabs(frame: &mut Frame, app: &App, area: Rect) {
    let mut spans = Vec::new();
    for (n, screen) in Screen::ALL.iter().enumerate() {
        let label = format!(" {} {} ", n + 1, screen.title());
        let style = if *screen == app.screen {
            Style::new().black().on_cyan().bold()
        } else {
            Style::new()
        };
        spans.push(Span::styled(label, style));
    }
    if app.screen == Screen::Sessions {
        let arrow = if app.descending { "desc" } else { "asc" };
        spans.push(Span::raw(format!("  sort {} {arrow}", app.sort.label())).dark_gray());
        if !app.filter.is_empty() || app.editing_filter {
            spans.push(Span::raw(format!("  filter \"{}\"", app.filter)).yellow());
        }
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A column of the sessions table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Id,
    Name,
    Dialect,
    Roles,
    State,
    Group,
    Format,
    Rtt,
    Offset,
    Drift,
    Error,
    Buffer,
    LateDropped,
    Reconnects,
}

/// Columns in display order, with their headers and widths.
const COLUMNS: [(Column, &str, u16); 14] = [
    (Column::Id, "id", 6),
    (Column::Name, "name", 14),
    (Column::Dialect, "dialect", 11),
    (Column::Roles, "roles", 18),
    (Column::State, "state", 11),
    (Column::Group, "group", 10),
    (Column::Format, "format", 26),
    (Column::Rtt, "rtt", 9),
    (Column::Offset, "offset", 10),
    (Column::Drift, "drift ppm", 9),
    (Column::Error, "error", 9),
    (Column::Buffer, "buffer", 7),
    (Column::LateDropped, "late/drop", 9),
    (Column::Reconnects, "recon", 5),
];

/// Columns in the order they are given up when the terminal is narrow:
/// the last ones go first.
const PRIORITY: [Column; 14] = [
    Column::Id,
    Column::State,
    Column::Offset,
    Column::Rtt,
    Column::Name,
    Column::Buffer,
    Column::Drift,
    Column::Error,
    Column::LateDropped,
    Column::Reconnects,
    Column::Group,
    Column::Format,
    Column::Roles,
    Column::Dialect,
];

/// Returns the columns that fit in `width`, in display order.
fn fitting_columns(width: u16) -> Vec<(Column, &'static str, u16)> {
    let mut used = 0u16;
    let mut chosen = Vec::new();
    for column in PRIORITY {
        let (_, _, w) = COLUMNS
            .iter()
            .find(|(c, _, _)| *c == column)
            .copied()
            .expect("every column has a width");
        if used + w < width {
            used += w + 1;
            chosen.push(column);
        }
    }
    COLUMNS
        .iter()
        .copied()
        .filter(|(c, _, _)| chosen.contains(c))
        .collect()
}

/// Draws the sessions table: only the rows that fit are built.
pub fn render_sessions(frame: &mut Frame, app: &App, area: Rect) {
    let [title, table_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let title_line = Line::from(vec![
        Span::raw(format!(
            "{} of {} sessions",
            app.order.len(),
            app.shown.sessions.len()
        ))
        .bold(),
        Span::raw(format!(
            "  clock figures: the client's own; {SERVER_MARK} = the server's estimate"
        ))
        .dark_gray(),
    ]);
    frame.render_widget(Paragraph::new(title_line), title);

    let columns = fitting_columns(table_area.width);
    let rows_visible = table_area.height.saturating_sub(1) as usize;
    app.page_lines.set(rows_visible);
    let offset = scroll_to_show(
        app.table_offset.get(),
        app.selected,
        rows_visible,
        app.order.len(),
    );
    app.table_offset.set(offset);

    let header = Row::new(columns.iter().map(|(_, name, _)| Cell::from(*name)))
        .style(Style::new().bold().underlined());
    let rows = app
        .order
        .iter()
        .enumerate()
        .skip(offset)
        .take(rows_visible)
        .map(|(position, &index)| {
            let row = &app.shown.sessions[index];
            let style = if position == app.selected {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
            };
            Row::new(
                columns
                    .iter()
                    .map(|(column, _, _)| session_cell(row, *column)),
            )
            .style(style)
        });
    let widths = columns.iter().map(|(_, _, w)| Constraint::Length(*w));
    frame.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        table_area,
    );
}

/// Returns the first row to draw so `selected` stays within `visible` rows,
/// moving the previous offset as little as possible.
fn scroll_to_show(offset: usize, selected: usize, visible: usize, total: usize) -> usize {
    if visible == 0 {
        return 0;
    }
    let max_offset = total.saturating_sub(visible);
    let offset = if selected < offset {
        selected
    } else if selected >= offset + visible {
        selected + 1 - visible
    } else {
        offset
    };
    offset.min(max_offset)
}

fn session_cell(row: &SessionRow, column: Column) -> Cell<'static> {
    match column {
        Column::Id => Cell::from(row.session.clone()),
        Column::Name => Cell::from(display_name(row).to_string()),
        Column::Dialect => Cell::from(row.dialect.clone()),
        Column::Roles => Cell::from(short_roles(&row.roles)),
        Column::State => Cell::from(row.phase.as_str()).style(phase_style(row)),
        Column::Group => Cell::from(row.group.clone().unwrap_or_else(|| "-".into())),
        Column::Format => Cell::from(row.format.clone().unwrap_or_else(|| "-".into())),
        Column::Rtt => marked(clock_figure(row, |c| c.rtt_us), micros),
        Column::Offset => marked(clock_figure(row, |c| Some(c.offset_us)), micros),
        Column::Drift => marked(clock_figure(row, |c| c.drift_ppm), |v| format!("{v:+.1}")),
        Column::Error => marked(clock_figure(row, |c| c.error_us), micros),
        Column::Buffer => Cell::from(
            row.buffer_ms
                .map_or_else(|| "-".into(), |ms| format!("{ms:.0}ms")),
        ),
        Column::LateDropped => {
            let text = format!("{}/{}", row.late_chunks, row.dropped_chunks);
            let style = if row.late_chunks + row.dropped_chunks > 0 {
                Style::new().yellow()
            } else {
                Style::new()
            };
            Cell::from(text).style(style)
        }
        Column::Reconnects => Cell::from(row.reconnects.to_string()),
    }
}

fn phase_style(row: &SessionRow) -> Style {
    use crate::telemetry::Phase;
    match row.phase {
        Phase::Active => Style::new().green(),
        Phase::Closing => Style::new().yellow(),
        Phase::Connecting | Phase::Handshaking => Style::new().cyan(),
    }
}

/// Formats a clock figure and marks it when it is the server's estimate.
fn marked(figure: Option<(f64, ClockSide)>, format: impl Fn(f64) -> String) -> Cell<'static> {
    match figure {
        Some((value, ClockSide::Client)) => Cell::from(format(value)),
        Some((value, ClockSide::Server)) => Cell::from(format!("{}{SERVER_MARK}", format(value))),
        None => Cell::from("-"),
    }
}

fn display_name(row: &SessionRow) -> &str {
    row.name
        .as_deref()
        .or(row.client_id.as_deref())
        .unwrap_or("-")
}

/// Returns roles without their version suffix, such as `player,metadata`.
pub fn short_roles(roles: &[String]) -> String {
    let names: Vec<&str> = roles
        .iter()
        .map(|role| role.split('@').next().unwrap_or(role))
        .collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

/// Formats microseconds with a unit that keeps three significant digits.
pub fn micros(us: f64) -> String {
    let magnitude = us.abs();
    if magnitude < 1_000.0 {
        format!("{us:.0}us")
    } else if magnitude < 1_000_000.0 {
        format!("{:.2}ms", us / 1_000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// Formats milliseconds as `1h02m03s`, `2m03s` or `3s`.
pub fn duration(ms: u64) -> String {
    let seconds = ms / 1_000;
    let (h, m, s) = (seconds / 3_600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Formats Unix milliseconds as UTC time of day, `HH:MM:SS.mmm`.
pub fn time_of_day(unix_ms: u64) -> String {
    let ms = unix_ms % 86_400_000;
    let seconds = ms / 1_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60,
        ms % 1_000
    )
}

/// Draws the selected session: its fields, both clock views side by side,
/// and sparklines of its recent history.
pub fn render_details(frame: &mut Frame, app: &App, area: Rect) {
    let Some(row) = app.selected_row() else {
        frame.render_widget(
            Paragraph::new("no session selected; Esc returns to the table"),
            area,
        );
        return;
    };
    let [info, charts] = Layout::vertical([Constraint::Length(9), Constraint::Min(3)]).areas(area);
    let [fields, clocks] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(info);

    let age = (row.opened_unix_ms > 0)
        .then(|| duration(app.now_unix_ms.saturating_sub(row.opened_unix_ms)));
    let field_lines = vec![
        Line::from(vec![
            Span::raw(row.session.clone()).bold(),
            Span::raw(format!("  {}", display_name(row))),
        ]),
        Line::from(format!(
            "client id {}",
            row.client_id.as_deref().unwrap_or("-")
        )),
        Line::from(format!("peer {}  {}", row.peer, row.dialect)),
        Line::from(format!(
            "roles {}",
            if row.roles.is_empty() {
                "-".into()
            } else {
                row.roles.join(", ")
            }
        )),
        Line::from(format!(
            "state {}  group {}",
            row.phase.as_str(),
            row.group.as_deref().unwrap_or("-")
        )),
        Line::from(format!("format {}", row.format.as_deref().unwrap_or("-"))),
        Line::from(format!(
            "buffer {}  late {}  dropped {}",
            row.buffer_ms
                .map_or_else(|| "-".into(), |ms| format!("{ms:.0} ms")),
            row.late_chunks,
            row.dropped_chunks
        )),
        Line::from(format!(
            "reconnects {}  open for {}",
            row.reconnects,
            age.as_deref().unwrap_or("-")
        )),
    ];
    frame.render_widget(
        Paragraph::new(field_lines).wrap(Wrap { trim: true }),
        fields,
    );
    frame.render_widget(Paragraph::new(clock_lines(row)), clocks);

    let history = app.histories.get(&row.session);
    render_history(frame, history, charts);
}

/// Returns the two clock views of a session as a small table.
fn clock_lines(row: &SessionRow) -> Vec<Line<'static>> {
    let both = [row.client_clock, row.server_clock];
    let cell = |pick: &dyn Fn(&ClockView) -> Option<String>| -> [String; 2] {
        both.map(|view| view.as_ref().and_then(pick).unwrap_or_else(|| "-".into()))
    };
    let figures: [(&str, [String; 2]); 6] = [
        ("offset", cell(&|c| Some(micros(c.offset_us)))),
        (
            "drift ppm",
            cell(&|c| c.drift_ppm.map(|v| format!("{v:+.2}"))),
        ),
        ("error", cell(&|c| c.error_us.map(micros))),
        ("rtt", cell(&|c| c.rtt_us.map(micros))),
        ("samples", cell(&|c| Some(c.samples.to_string()))),
        (
            "converged",
            cell(&|c| {
                c.converged
                    .map(|v| if v { "yes" } else { "no" }.to_string())
            }),
        ),
    ];
    let mut lines =
        vec![Line::from(format!("{:<10} {:>11} {:>11}", "clock", "client", "server")).bold()];
    for (name, [client, server]) in figures {
        lines.push(Line::from(format!("{name:<10} {client:>11} {server:>11}")));
    }
    lines.push(Line::from("client: own filter; server: estimate").dark_gray());
    lines
}

/// A sparkline's name, the sample field it draws and how its values read.
type Series = (&'static str, fn(&Sample) -> Option<f32>, fn(f64) -> String);

/// Draws sparklines of offset, round-trip time and buffer fill.
fn render_history(frame: &mut Frame, history: Option<&History>, area: Rect) {
    let parts = Layout::vertical([Constraint::Ratio(1, 3); 3]).split(area);
    let series: [Series; 3] = [
        ("offset", |s| s.offset_us, micros),
        ("rtt", |s| s.rtt_us, micros),
        ("buffer", |s| s.buffer_ms, |ms| format!("{ms:.0}ms")),
    ];
    for ((name, pick, format), part) in series.into_iter().zip(parts.iter()) {
        let [label, chart] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(*part);
        let samples: Vec<&Sample> = history
            .map(|h| {
                h.samples
                    .iter()
                    .rev()
                    .take(chart.width as usize)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .rev()
            .collect();
        let values: Vec<Option<f64>> = samples.iter().map(|s| pick(s).map(f64::from)).collect();
        let present = values.iter().flatten();
        let min = present.clone().copied().fold(f64::INFINITY, f64::min);
        let max = present.copied().fold(f64::NEG_INFINITY, f64::max);
        let span_ms = match (samples.first(), samples.last()) {
            (Some(first), Some(last)) => last.unix_ms - first.unix_ms,
            _ => 0,
        };
        let text = match values.iter().rev().flatten().next() {
            Some(last) => format!(
                "{name} {}  min {}  max {}  over {}",
                format(*last),
                format(min),
                format(max),
                duration(span_ms)
            ),
            None => format!("{name}: no samples"),
        };
        frame.render_widget(Paragraph::new(Line::from(text).bold()), label);

        // Bars show each value above the window's minimum, so negative
        // offsets still draw. The minimum keeps a low bar, so a sample is
        // never drawn as nothing, and a constant series draws at half height.
        let range = max - min;
        let bars: Vec<Option<u64>> = values
            .iter()
            .map(|v| {
                v.map(|v| match range > 0.0 {
                    true => ((v - min) / range * 85.0).round() as u64 + 16,
                    false => 50,
                })
            })
            .collect();
        frame.render_widget(
            Sparkline::default()
                .data(bars)
                .max(101)
                .style(Style::new().cyan()),
            chart,
        );
    }
}

/// Draws the groups table: members, playback, volume, mute and metadata.
pub fn render_groups(frame: &mut Frame, app: &App, area: Rect) {
    let groups = &app.shown.groups;
    let header = Row::new(["group", "playback", "volume", "members", "now playing"])
        .style(Style::new().bold().underlined());
    let rows = groups.iter().skip(app.group_scroll).map(group_row);
    let widths = [
        Constraint::Length(20),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Fill(1),
        Constraint::Fill(2),
    ];
    let [title, table] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    frame.render_widget(
        Paragraph::new(format!("{} groups", groups.len())).bold(),
        title,
    );
    frame.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        table,
    );
}

fn group_row(group: &GroupRow) -> Row<'static> {
    let name = if group.name == group.id || group.name.is_empty() {
        group.id.clone()
    } else {
        format!("{} ({})", group.name, group.id)
    };
    let volume = match (group.volume, group.muted) {
        (_, Some(true)) => "muted".to_string(),
        (Some(volume), _) => volume.to_string(),
        (None, _) => "-".to_string(),
    };
    let members = format!("{}: {}", group.members.len(), group.members.join(", "));
    let playback_style = match group.playback.as_str() {
        "playing" => Style::new().green(),
        "paused" => Style::new().yellow(),
        _ => Style::new(),
    };
    Row::new([
        Cell::from(name),
        Cell::from(group.playback.clone()).style(playback_style),
        Cell::from(volume),
        Cell::from(members),
        Cell::from(
            group
                .metadata
                .as_ref()
                .map_or_else(|| "-".into(), track_text),
        ),
    ])
}

/// Formats what a group plays, such as `Artist - Title (Album) 1:02/3:45`.
pub fn track_text(track: &TrackInfo) -> String {
    let mut text = match (&track.artist, &track.title) {
        (Some(artist), Some(title)) => format!("{artist} - {title}"),
        (None, Some(title)) => title.clone(),
        (Some(artist), None) => artist.clone(),
        (None, None) => "-".into(),
    };
    if let Some(album) = &track.album {
        text.push_str(&format!(" ({album})"));
    }
    let clock = |ms: u64| format!("{}:{:02}", ms / 60_000, ms / 1_000 % 60);
    match (track.position_ms, track.duration_ms) {
        (Some(position), Some(length)) => {
            text.push_str(&format!(" {}/{}", clock(position), clock(length)))
        }
        (Some(position), None) => text.push_str(&format!(" {}", clock(position))),
        _ => {}
    }
    text
}

/// Draws the event log, newest at the bottom, scrolled up by `event_scroll`.
pub fn render_events(frame: &mut Frame, app: &App, area: Rect) {
    let [title, log] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let visible = app.visible_events();
    let total = visible.len();
    let end = total.saturating_sub(app.event_scroll);
    let height = log.height as usize;
    app.page_lines.set(height);
    let start = end.saturating_sub(height);
    let title_text = if app.event_scroll > 0 {
        format!(
            "{total} events (UTC), lines {}-{end}, scrolled back {}",
            start + 1,
            app.event_scroll
        )
    } else {
        format!("{total} events (UTC), newest last")
    };
    frame.render_widget(Paragraph::new(title_text).bold(), title);

    let lines: Vec<Line> = visible
        .skip(start)
        .take(end - start)
        .map(|logged| {
            let event = &logged.event;
            let who = match (&event.session, &event.client_id) {
                (Some(session), Some(client)) => format!("{session} {client}"),
                (Some(session), None) => session.clone(),
                (None, Some(client)) => client.clone(),
                (None, None) => "-".into(),
            };
            Line::from(vec![
                Span::raw(time_of_day(event.unix_ms)).dark_gray(),
                Span::raw(" "),
                Span::styled(
                    format!("{:<12}", event.kind.as_str()),
                    kind_style(event.kind),
                ),
                Span::raw(format!(" {who}: {}", event.detail)),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), log);
}

fn kind_style(kind: EventKind) -> Style {
    match kind {
        EventKind::Connected => Style::new().green(),
        EventKind::Disconnected | EventKind::Replaced => Style::new().yellow(),
        EventKind::Violation => Style::new().red().bold(),
        EventKind::Marker => Style::new().magenta().bold(),
        EventKind::Stream => Style::new().cyan(),
        EventKind::Info => Style::new(),
    }
}

/// Returns the lines the snapshot's notes take when wrapped at `width`.
fn note_lines(app: &App, width: u16) -> usize {
    let width = usize::from(width.max(1));
    app.shown
        .notes
        .iter()
        .map(|note| (note.chars().count() + "note: ".len()).div_ceil(width))
        .sum()
}

/// Draws the snapshot's notes: what the source cannot know.
pub fn render_notes(frame: &mut Frame, app: &App, area: Rect) {
    if area.height == 0 {
        return;
    }
    let lines: Vec<Line> = app
        .shown
        .notes
        .iter()
        .map(|note| Line::from(format!("note: {note}")).yellow())
        .collect();
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), area);
}

/// Draws the keys that work on the current screen.
pub fn render_footer(frame: &mut Frame, app: &App, area: Rect) {
    let text = if app.editing_filter {
        format!("filter: {}_   Enter keep  Esc clear", app.filter)
    } else {
        let pause = if app.paused() { "p resume" } else { "p pause" };
        let screen_keys = match app.screen {
            Screen::Sessions if app.details => "Esc back  ↑↓ next session",
            Screen::Sessions => "s/S sort  / filter  ↑↓ select  Enter details",
            Screen::Groups => "↑↓ scroll",
            Screen::Events => "↑↓ PgUp/PgDn scroll  End newest",
        };
        format!("q quit  {pause}  Tab screens  {screen_keys}")
    };
    frame.render_widget(Paragraph::new(Line::from(text).reversed()), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_picks_unit() {
        assert_eq!(micros(-12.4), "-12us");
        assert_eq!(micros(1_500.0), "1.50ms");
        assert_eq!(micros(2_500_000.0), "2.50s");
    }

    #[test]
    fn duration_and_time_of_day() {
        assert_eq!(duration(3_723_000), "1h02m03s");
        assert_eq!(duration(61_000), "1m01s");
        assert_eq!(time_of_day(86_400_000 + 3_723_456), "01:02:03.456");
    }

    #[test]
    fn narrow_terminal_keeps_priority_columns() {
        let narrow: Vec<Column> = fitting_columns(80).iter().map(|c| c.0).collect();
        assert!(narrow.contains(&Column::Offset));
        assert!(narrow.contains(&Column::State));
        assert!(!narrow.contains(&Column::Dialect));
        let total: u16 = fitting_columns(80).iter().map(|c| c.2 + 1).sum();
        assert!(total <= 80);
        assert_eq!(fitting_columns(400).len(), COLUMNS.len());
    }

    #[test]
    fn scroll_keeps_selection_visible() {
        assert_eq!(scroll_to_show(0, 5, 10, 100), 0);
        assert_eq!(scroll_to_show(0, 15, 10, 100), 6);
        assert_eq!(scroll_to_show(6, 3, 10, 100), 3);
        assert_eq!(scroll_to_show(50, 99, 10, 20), 10);
    }
}
