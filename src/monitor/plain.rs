//! Plain-text output for when stdout is not a terminal, or with `--plain`:
//! every interval, a table of sessions and groups, the notes, and the
//! events that arrived since the previous table.

use std::io::{self, Write};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::telemetry::unix_ms_now;

use super::state::{clock_figure, App, ClockSide};
use super::view::{duration, micros, short_roles, time_of_day, track_text, SERVER_MARK};
use super::Update;

/// Prints a report of `updates` to `writer` every `interval` until the
/// updates channel closes, then prints a last report. A closed pipe ends
/// the output without an error.
pub async fn run_plain(
    target: &str,
    mut updates: mpsc::Receiver<Update>,
    mut writer: impl Write,
    interval: Duration,
) -> io::Result<()> {
    let mut app = App::new(target, unix_ms_now());
    let mut printed_events = 0u64;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // The first tick completes at once; skip it so the first report has data.
    ticks.tick().await;
    loop {
        let open = tokio::select! {
            update = updates.recv() => match update {
                Some(update) => {
                    app.apply(update);
                    continue;
                }
                None => false,
            },
            _ = ticks.tick() => true,
        };
        app.now_unix_ms = unix_ms_now();
        let report = render_plain(&app, &mut printed_events);
        match writer
            .write_all(report.as_bytes())
            .and_then(|()| writer.flush())
        {
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
        if !open {
            return Ok(());
        }
    }
}

/// Returns one report of `app`: a header line, the sessions and groups
/// tables, the notes, and the events after `printed_events`, which it
/// then advances.
pub fn render_plain(app: &App, printed_events: &mut u64) -> String {
    let mut out = String::new();
    let snapshot = &app.shown;

    let mut header = format!(
        "== {} UTC  feed {}",
        time_of_day(app.now_unix_ms),
        app.target
    );
    if let Some(source) = &app.source {
        header.push_str(&format!(
            "  {} \"{}\" at {}",
            source.kind, source.name, source.target
        ));
    }
    if let Some(uptime) = app.uptime_ms() {
        header.push_str(&format!("  up {}", duration(uptime)));
    }
    if let Some(status) = &app.status {
        header.push_str(&format!("  ({status})"));
    }
    out.push_str(&header);
    out.push('\n');

    let mut sessions = vec![[
        "SESSION",
        "NAME",
        "DIALECT",
        "ROLES",
        "STATE",
        "GROUP",
        "FORMAT",
        "RTT",
        "OFFSET",
        "DRIFT_PPM",
        "ERROR",
        "BUFFER",
        "LATE/DROP",
        "RECONNECTS",
    ]
    .map(String::from)];
    let mut any_server_figure = false;
    for &index in &app.order {
        let row = &snapshot.sessions[index];
        let mut figure = |value: Option<(f64, ClockSide)>, format: fn(f64) -> String| match value {
            Some((v, ClockSide::Client)) => format(v),
            Some((v, ClockSide::Server)) => {
                any_server_figure = true;
                format!("{}{SERVER_MARK}", format(v))
            }
            None => "-".into(),
        };
        sessions.push([
            row.session.clone(),
            row.name
                .clone()
                .or_else(|| row.client_id.clone())
                .unwrap_or_else(|| "-".into()),
            row.dialect.clone(),
            short_roles(&row.roles),
            row.phase.as_str().to_string(),
            row.group.clone().unwrap_or_else(|| "-".into()),
            row.format.clone().unwrap_or_else(|| "-".into()),
            figure(clock_figure(row, |c| c.rtt_us), micros),
            figure(clock_figure(row, |c| Some(c.offset_us)), micros),
            figure(clock_figure(row, |c| c.drift_ppm), |v| format!("{v:+.1}")),
            figure(clock_figure(row, |c| c.error_us), micros),
            row.buffer_ms
                .map_or_else(|| "-".into(), |ms| format!("{ms:.0}ms")),
            format!("{}/{}", row.late_chunks, row.dropped_chunks),
            row.reconnects.to_string(),
        ]);
    }
    out.push_str(&format!("{} sessions\n", snapshot.sessions.len()));
    push_table(&mut out, &sessions);
    if any_server_figure {
        out.push_str(&format!(
            "{SERVER_MARK} = the server's estimate; other clock figures are the client's own\n"
        ));
    }

    let mut groups = vec![[
        "GROUP",
        "NAME",
        "PLAYBACK",
        "VOLUME",
        "MUTED",
        "MEMBERS",
        "NOW_PLAYING",
    ]
    .map(String::from)];
    for group in &snapshot.groups {
        groups.push([
            group.id.clone(),
            group.name.clone(),
            group.playback.clone(),
            group.volume.map_or_else(|| "-".into(), |v| v.to_string()),
            group
                .muted
                .map_or_else(|| "-".into(), |m| if m { "yes" } else { "no" }.into()),
            group.members.join(","),
            group
                .metadata
                .as_ref()
                .map_or_else(|| "-".into(), track_text),
        ]);
    }
    out.push_str(&format!("{} groups\n", snapshot.groups.len()));
    push_table(&mut out, &groups);

    for note in &snapshot.notes {
        out.push_str(&format!("note: {note}\n"));
    }

    let first_new = *printed_events;
    for logged in app.visible_events().filter(|e| e.seq >= first_new) {
        let event = &logged.event;
        let who = event
            .session
            .as_deref()
            .or(event.client_id.as_deref())
            .unwrap_or("-");
        out.push_str(&format!(
            "{} {:<12} {who}: {}\n",
            time_of_day(event.unix_ms),
            event.kind.as_str(),
            event.detail
        ));
        *printed_events = logged.seq + 1;
    }
    out.push('\n');
    out
}

/// Appends rows as columns padded to their widest cell, the last column unpadded.
fn push_table<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}
