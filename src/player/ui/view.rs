//! Drawing: one `render_*` function per area of the screen, each reading
//! the [`App`] and writing into a ratatui frame.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use crate::player::scheduler::PlaybackState as AudioState;
use crate::protocol::{PlaybackState, RepeatMode};

use super::state::{App, Connection, Live, PlayState};

/// Keys other than space and the controller commands they send, in the
/// order the footer lists them. A key shows only when the server supports
/// one of its commands.
const KEYS: [(&str, &str, &[&str]); 6] = [
    ("←/→", "skip", &["previous", "next"]),
    ("↑/↓", "volume", &["volume"]),
    ("m", "mute", &["mute"]),
    ("r", "repeat", &["repeat_off", "repeat_one", "repeat_all"]),
    ("x", "shuffle", &["shuffle", "unshuffle"]),
    ("g", "group", &["switch"]),
];

/// Draws the whole player UI.
pub fn render(frame: &mut Frame, app: &App) {
    let [header, now_playing, status, notice, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(7),
        Constraint::Min(5),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_header(frame, &app.state, header);
    render_now_playing(frame, app, now_playing);
    render_status(frame, app, status);
    if let Some(text) = &app.notice {
        frame.render_widget(Paragraph::new(Line::from(text.as_str()).yellow()), notice);
    }
    render_footer(frame, &app.state, footer);
}

/// Draws the server and the connection state, then the roles.
pub fn render_header(frame: &mut Frame, state: &PlayState, area: Rect) {
    let [top, roles] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let connection = match &state.connection {
        Connection::Connecting if state.listening => Span::raw(format!(
            "waiting for servers to connect to {}",
            state.target
        ))
        .yellow(),
        Connection::Connecting => Span::raw(format!("connecting to {}", state.target)).yellow(),
        Connection::Connected { server_name, .. } if state.listening => Span::raw(format!(
            "connected to \"{server_name}\", which dialed {}",
            state.target
        ))
        .green(),
        Connection::Connected { server_name, .. } => Span::raw(format!(
            "connected to \"{server_name}\" at {}",
            state.target
        ))
        .green(),
        Connection::Disconnected(cause) => {
            Span::raw(format!("disconnected ({cause}); reconnecting")).red()
        }
    };
    let line = Line::from(vec![
        Span::styled("resonate play  ", Style::new().bold()),
        connection,
    ]);
    frame.render_widget(Paragraph::new(line), top);

    let active = if state.active_roles.is_empty() {
        "none yet".to_string()
    } else {
        state.active_roles.join(", ")
    };
    let text = format!("roles {}  active {active}", state.roles);
    frame.render_widget(Paragraph::new(Line::from(text).dark_gray()), roles);
}

/// Draws the title, artist, album, progress bar and repeat and shuffle.
pub fn render_now_playing(frame: &mut Frame, app: &App, area: Rect) {
    let block = Block::bordered().title(" Now playing ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let track = &app.state.metadata;
    if !app.state.roles.metadata {
        let line =
            Line::from("no metadata role; add metadata to --roles to see what plays").dark_gray();
        frame.render_widget(Paragraph::new(line), inner);
        return;
    }
    if track.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::from("no metadata from the server yet").dark_gray()),
            inner,
        );
        return;
    }

    let mut album = track.album.clone().unwrap_or_default();
    if let Some(year) = track.year {
        album.push_str(&format!(" ({year})"));
    }
    if let Some(number) = track.track {
        album.push_str(&format!("  track {number}"));
    }
    let mut lines = vec![
        Line::from(track.title.clone().unwrap_or_else(|| "untitled".into())).bold(),
        Line::from(track.artist.clone().unwrap_or_default()),
        Line::from(album),
        progress_line(app, inner.width),
    ];

    let repeat = match track.repeat {
        Some(RepeatMode::Off) => "off",
        Some(RepeatMode::One) => "one",
        Some(RepeatMode::All) => "all",
        None => "-",
    };
    let shuffle = match track.shuffle {
        Some(true) => "on",
        Some(false) => "off",
        None => "-",
    };
    lines.push(Line::from(format!("repeat {repeat}  shuffle {shuffle}")).dark_gray());
    frame.render_widget(Paragraph::new(lines), inner);
}

/// Returns the progress bar with position and duration, `width` cells
/// wide: the position comes from the metadata's progress moved on to the
/// server time now.
fn progress_line(app: &App, width: u16) -> Line<'static> {
    let track = &app.state.metadata;
    let Some(progress) = track.progress else {
        return Line::from("no progress from the server").dark_gray();
    };
    let Some(server_now) = app.live.server_now_us() else {
        return Line::from("progress waits for the clock to sync").dark_gray();
    };
    let position = track
        .position_ms(server_now)
        .unwrap_or(progress.track_progress);
    let mut time = clock_time(position);
    if let Some(duration) = track.duration_ms() {
        time.push_str(&format!(" / {}", clock_time(duration)));
    }
    if track.paused() {
        time.push_str("  paused");
    }
    let bar_width = (width as usize).saturating_sub(time.chars().count() + 1);
    let filled = match track.duration_ms() {
        Some(duration) => (bar_width as i64 * position / duration.max(1)) as usize,
        None => 0,
    };
    let filled = filled.min(bar_width);
    Line::from(vec![
        Span::raw("━".repeat(filled)).cyan(),
        Span::raw("─".repeat(bar_width - filled)).dark_gray(),
        Span::raw(format!(" {time}")),
    ])
}

/// Draws volume and mute, group, codec, clock sync and the commands the
/// server supports.
pub fn render_status(frame: &mut Frame, app: &App, area: Rect) {
    let state = &app.state;
    let mut rows: Vec<(&str, String)> = Vec::new();

    let group_volume = match &state.controller {
        Some(controller) => {
            let mute = if controller.muted { "  muted" } else { "" };
            format!("group {}%{mute}", controller.volume)
        }
        None if state.roles.controller => "group: waiting for the server".into(),
        None => "group: no controller role".into(),
    };
    let own_volume = app
        .live
        .playback
        .filter(|_| state.roles.player)
        .map(|playback| {
            let mute = if playback.muted { " muted" } else { "" };
            format!("  player {}%{mute}", playback.volume)
        });
    rows.push((
        "volume",
        format!("{group_volume}{}", own_volume.unwrap_or_default()),
    ));

    let group = &state.group;
    let name = match (&group.name, &group.id) {
        (Some(name), Some(id)) => format!("{name} ({id})"),
        (None, Some(id)) => id.clone(),
        (Some(name), None) => name.clone(),
        (None, None) => "-".into(),
    };
    let playback = match group.playback {
        Some(PlaybackState::Playing) => "playing",
        Some(PlaybackState::Stopped) => "stopped",
        None => "unknown",
    };
    rows.push(("group", format!("{name}  {playback}")));

    let codec = match (&state.format, state.roles.player) {
        (Some(format), _) => format.to_string(),
        (None, true) => "no stream".into(),
        (None, false) => "no audio: no player role".into(),
    };
    rows.push(("codec", codec));
    rows.push(("sync", sync_text(&app.live, state.roles.player)));

    let commands = match &state.controller {
        Some(controller) if controller.supported_commands.is_empty() => "none".into(),
        Some(controller) => controller.supported_commands.join(" "),
        None => "-".into(),
    };
    rows.push(("commands", commands));

    let lines: Vec<Line> = rows
        .into_iter()
        .map(|(label, value)| {
            Line::from(vec![
                Span::raw(format!(" {label:<9}")).dark_gray(),
                Span::raw(value),
            ])
        })
        .collect();
    // The commands row comes last, so a long list wraps onto free lines.
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

/// Describes the clock filter and, with the player role, the audio.
fn sync_text(live: &Live, player: bool) -> String {
    let clock = &live.clock;
    let mut text = if !clock.is_valid() {
        "clock not synced yet".to_string()
    } else if clock.converged {
        format!(
            "clock synced: offset {} ±{}",
            micros(clock.offset_us),
            micros(clock.error_us)
        )
    } else {
        format!(
            "clock converging ({} samples, error ±{})",
            clock.samples,
            micros(clock.error_us)
        )
    };
    if let Some(playback) = live.playback.filter(|_| player) {
        let audio = match playback.state {
            AudioState::Idle => "audio idle".to_string(),
            AudioState::Buffering => "audio buffering".to_string(),
            AudioState::Playing => format!(
                "audio in sync, {:.1} s buffered",
                playback.buffered_us as f64 / 1e6
            ),
        };
        text.push_str(&format!("; {audio}"));
        if playback.underrun {
            text.push_str(", underrun");
        }
    }
    text
}

/// Draws the keys of the commands the server supports, and quit, in at
/// most 80 columns.
pub fn render_footer(frame: &mut Frame, state: &PlayState, area: Rect) {
    let mut spans = Vec::new();
    // The space key's label is the command it sends now.
    let space = [super::input::play_or_pause(state)];
    let keys = [("space", space[0], space.as_slice())]
        .into_iter()
        .chain(KEYS);
    for (key, label, commands) in keys {
        if commands.iter().any(|command| state.supports(command)) {
            spans.push(Span::styled(format!(" {key}"), Style::new().bold()));
            spans.push(Span::raw(format!(" {label} ")));
        }
    }
    spans.push(Span::styled(" q", Style::new().bold()));
    spans.push(Span::raw(" quit"));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Formats milliseconds as `m:ss`, or `h:mm:ss` from an hour on.
pub fn clock_time(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Formats microseconds with a unit: `us` below 10 ms, `ms` below 10 s,
/// else `s`.
fn micros(value: f64) -> String {
    if value.abs() < 10_000.0 {
        format!("{value:.0} us")
    } else if value.abs() < 10_000_000.0 {
        format!("{:.1} ms", value / 1000.0)
    } else {
        format!("{:.1} s", value / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_time_formats() {
        assert_eq!(clock_time(83_000), "1:23");
        assert_eq!(clock_time(3_723_000), "1:02:03");
        assert_eq!(clock_time(-5), "0:00");
    }

    #[test]
    fn micros_picks_unit() {
        assert_eq!(micros(-420.4), "-420 us");
        assert_eq!(micros(7_000_000.0), "7000.0 ms");
        assert_eq!(micros(1_434_309_600.0), "1434.3 s");
    }
}
