//! The terminal UI of `play`: what plays, the group's volume and mute, the
//! group, codec and clock sync, and keys that send controller commands.
//!
//! [`state`] merges the player's events into what is shown, [`view`] draws
//! it, and [`input`] turns keys into controller commands. [`run`] is the
//! draw loop, generic over the ratatui backend so tests drive it on
//! `TestBackend`. The real terminal is the monitor's
//! [`TerminalGuard`](crate::monitor::terminal::TerminalGuard).

pub mod input;
pub mod plain;
pub mod state;
pub mod view;

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use ratatui::backend::Backend;
use ratatui::Terminal;
use tokio::sync::mpsc;

use crate::player::client::PlayerEvent;
use crate::protocol::ControllerCommand;

pub use input::Action;
pub use state::{App, Live, NowPlaying, PlayState};

/// Shortest time between two frames: at most ten frames per second.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(100);

/// Maximum time between two frames, so the progress bar moves.
const IDLE_REDRAW: Duration = Duration::from_millis(500);

/// Draws `app` on `terminal` until a quit key or until the player stops,
/// which closes `events`. Applies player events and keys as they come and
/// sends each command a key stands for to `commands`. `sample` returns the
/// clock, local time and scheduler figures for each frame, so tests can
/// fix them.
pub async fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut events: mpsc::UnboundedReceiver<PlayerEvent>,
    keys: impl Stream<Item = std::io::Result<crossterm::event::Event>>,
    commands: mpsc::UnboundedSender<ControllerCommand>,
    mut sample: impl FnMut() -> Live,
) -> std::io::Result<()> {
    let mut keys = std::pin::pin!(keys);
    let mut ticks = tokio::time::interval(FRAME_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut keys_open = true;
    let mut dirty = true;
    let mut last_frame = tokio::time::Instant::now();

    loop {
        tokio::select! {
            // Events go first, so a burst is applied before the next frame
            // and scripted tests see every event before their keys.
            biased;
            event = events.recv() => match event {
                Some(event) => {
                    app.state.apply(&event);
                    dirty = true;
                }
                None => {
                    app.live = sample();
                    terminal.draw(|frame| view::render(frame, app))?;
                    return Ok(());
                }
            },
            key = keys.next(), if keys_open => match key {
                Some(Ok(key)) => match input::handle(&app.state, &key) {
                    Action::Quit => return Ok(()),
                    Action::Send(command) => {
                        app.notice = Some(describe(&command));
                        let _ = commands.send(command);
                        dirty = true;
                    }
                    Action::Unavailable(reason) => {
                        app.notice = Some(reason);
                        dirty = true;
                    }
                    Action::Resized => dirty = true,
                    Action::Ignored => {}
                },
                Some(Err(err)) => return Err(err),
                None => keys_open = false,
            },
            // A tick only wakes the loop, and the check below decides on a frame.
            _ = ticks.tick() => {}
        }
        let since = last_frame.elapsed();
        if (dirty && since >= FRAME_INTERVAL) || since >= IDLE_REDRAW {
            app.live = sample();
            terminal.draw(|frame| view::render(frame, app))?;
            last_frame = tokio::time::Instant::now();
            dirty = false;
        }
    }
}

/// Returns the notice for a sent command, such as `sent volume 45`.
fn describe(command: &ControllerCommand) -> String {
    match (command.volume, command.mute) {
        (Some(volume), _) => format!("sent {} {volume}", command.command),
        (_, Some(true)) => format!("sent {} on", command.command),
        (_, Some(false)) => format!("sent {} off", command.command),
        (None, None) => format!("sent {}", command.command),
    }
}
