//! Keys: each key press becomes a controller command for the server, a
//! quit, or a notice saying why it did nothing.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::protocol::{ControllerCommand, PlaybackState, RepeatMode};

use super::state::PlayState;

/// Volume step of the up and down arrows, in points of 0 to 100.
pub const VOLUME_STEP: u8 = 5;

/// Effect of a terminal event.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send this command to the server.
    Send(ControllerCommand),
    /// The key names a command that cannot be sent now, for this reason.
    Unavailable(String),
    /// The event means nothing here.
    Ignored,
    /// The terminal size changed, so the screen needs a redraw.
    Resized,
    Quit,
}

/// Turns one terminal event into an action.
pub fn handle(state: &PlayState, event: &Event) -> Action {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => handle_key(state, key),
        Event::Resize(_, _) => Action::Resized,
        _ => Action::Ignored,
    }
}

/// Turns one key press into an action: space plays or pauses, the left
/// and right arrows skip, up and down change the volume, `m` mutes, `r`
/// cycles repeat, `x` toggles shuffle, `g` switches groups, and `q`, Esc
/// or Ctrl-C quit.
pub fn handle_key(state: &PlayState, key: &KeyEvent) -> Action {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Action::Quit;
    }
    let command = match key.code {
        KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
        KeyCode::Char(' ') => play_or_pause(state),
        KeyCode::Right => "next",
        KeyCode::Left => "previous",
        KeyCode::Up | KeyCode::Down => {
            let up = key.code == KeyCode::Up;
            return volume_step(state, up);
        }
        KeyCode::Char('m') => {
            let Some(controller) = &state.controller else {
                return unavailable(state, "mute");
            };
            return checked(
                state,
                ControllerCommand {
                    command: "mute".into(),
                    volume: None,
                    mute: Some(!controller.muted),
                },
            );
        }
        KeyCode::Char('r') => match state.metadata.repeat {
            None | Some(RepeatMode::Off) => "repeat_all",
            Some(RepeatMode::All) => "repeat_one",
            Some(RepeatMode::One) => "repeat_off",
        },
        KeyCode::Char('x') => match state.metadata.shuffle {
            Some(true) => "unshuffle",
            _ => "shuffle",
        },
        KeyCode::Char('g') => "switch",
        _ => return Action::Ignored,
    };
    checked(state, plain(command))
}

/// Returns the command of the space key: `pause` (or `stop` where the
/// server has no `pause`) while the group plays, otherwise `play`.
pub fn play_or_pause(state: &PlayState) -> &'static str {
    let playing = state.group.playback == Some(PlaybackState::Playing) && !state.metadata.paused();
    match playing {
        true if state.supports("pause") || !state.supports("stop") => "pause",
        true => "stop",
        false => "play",
    }
}

fn volume_step(state: &PlayState, up: bool) -> Action {
    let Some(controller) = &state.controller else {
        return unavailable(state, "volume");
    };
    let volume = if up {
        controller.volume.saturating_add(VOLUME_STEP).min(100)
    } else {
        controller.volume.saturating_sub(VOLUME_STEP)
    };
    checked(
        state,
        ControllerCommand {
            command: "volume".into(),
            volume: Some(volume as i64),
            mute: None,
        },
    )
}

fn plain(command: &str) -> ControllerCommand {
    ControllerCommand {
        command: command.into(),
        volume: None,
        mute: None,
    }
}

/// Returns `command` to send when the server supports it, otherwise why
/// it cannot be sent.
fn checked(state: &PlayState, command: ControllerCommand) -> Action {
    if state.supports(&command.command) {
        Action::Send(command)
    } else {
        unavailable(state, &command.command)
    }
}

fn unavailable(state: &PlayState, command: &str) -> Action {
    let reason = if !state.roles.controller {
        format!("{command}: this client has no controller role; add controller to --roles")
    } else if !state.has_active("controller") {
        format!("{command}: the server has not activated the controller role")
    } else {
        format!("{command}: not in the server's supported commands")
    };
    Action::Unavailable(reason)
}
