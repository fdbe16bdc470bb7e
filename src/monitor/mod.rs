//! The monitor: a terminal view of a telemetry source's sessions, groups
//! and events.
//!
//! [`state`] contains what is shown, [`view`] draws it, [`input`] turns keys
//! into state changes, and [`source`] turns a feed or an in-process hub
//! into [`Update`]s. [`run`] is the draw loop, generic over the ratatui
//! backend so tests drive it on `TestBackend`; [`terminal`] owns the real
//! terminal, and [`plain`] prints periodic text tables instead.

pub mod input;
pub mod plain;
pub mod source;
pub mod state;
pub mod terminal;
pub mod view;

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use ratatui::backend::Backend;
use ratatui::Terminal;
use tokio::sync::mpsc;

use crate::telemetry::FeedMessage;

pub use input::Outcome;
pub use plain::run_plain;
pub use source::{follow_feed, forward_hub, Source, SourceError};
pub use state::App;
pub use terminal::{run_in_process, run_terminal};

/// Shortest time between two frames: at most ten frames per second.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(100);

/// Maximum time between two frames, so uptime and rates move on a quiet feed.
const IDLE_REDRAW: Duration = Duration::from_secs(1);

/// Messages the channel from a source to the monitor holds.
pub const UPDATE_CHANNEL: usize = 4096;

/// Message from the monitor's source to the draw loop.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// A message of the telemetry feed.
    Feed(FeedMessage),
    /// The state of the connection to the source, such as `connected` or
    /// `the feed closed; retry in 2.0 s`.
    Status(String),
}

/// Draws `app` on `terminal` until a quit key, applying `updates` and
/// terminal events as they come, at most once per [`FRAME_INTERVAL`].
///
/// `now` returns the wall-clock time in Unix milliseconds for each frame,
/// so tests can fix it. The loop also returns after a last frame when the
/// updates channel is closed and the event stream has ended, which is how
/// tests end a scripted run.
pub async fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut updates: mpsc::Receiver<Update>,
    events: impl Stream<Item = std::io::Result<crossterm::event::Event>>,
    mut now: impl FnMut() -> u64,
) -> std::io::Result<()> {
    let mut events = std::pin::pin!(events);
    let mut ticks = tokio::time::interval(FRAME_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut updates_open = true;
    let mut events_open = true;
    let mut dirty = true;
    let mut last_frame = tokio::time::Instant::now();

    loop {
        tokio::select! {
            // Updates go first, so a burst is applied before the next
            // frame and scripted tests see every update before their keys.
            biased;
            update = updates.recv(), if updates_open => match update {
                Some(update) => {
                    app.apply(update);
                    dirty = true;
                }
                None => updates_open = false,
            },
            event = events.next(), if events_open => match event {
                Some(Ok(event)) => match input::handle(app, &event) {
                    Outcome::Quit => return Ok(()),
                    Outcome::Consumed | Outcome::Resized => dirty = true,
                    Outcome::Ignored => {}
                },
                Some(Err(err)) => return Err(err),
                None => events_open = false,
            },
            // A tick only wakes the loop; the check below decides on a frame.
            _ = ticks.tick() => {}
        }
        let since = last_frame.elapsed();
        if (dirty && since >= FRAME_INTERVAL) || since >= IDLE_REDRAW {
            app.now_unix_ms = now();
            terminal.draw(|frame| view::render(frame, app))?;
            last_frame = tokio::time::Instant::now();
            dirty = false;
        }
        if !updates_open && !events_open {
            app.now_unix_ms = now();
            terminal.draw(|frame| view::render(frame, app))?;
            return Ok(());
        }
    }
}
