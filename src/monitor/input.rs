//! Keys and mouse: each terminal event changes the [`App`] and returns
//! whether it was used and whether the monitor should quit.

use crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};

use super::state::{App, Screen};

/// Effect of a terminal event on the monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The event changed the state; the screen needs a redraw.
    Consumed,
    /// The event means nothing here.
    Ignored,
    /// The terminal size changed; redraw without a state change.
    Resized,
    Quit,
}

/// Applies one terminal event to `app`.
pub fn handle(app: &mut App, event: &Event) -> Outcome {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => handle_key(app, key),
        Event::Mouse(mouse) => handle_mouse(app, mouse),
        Event::Resize(_, _) => Outcome::Resized,
        _ => Outcome::Ignored,
    }
}

/// Applies one key press to `app`.
pub fn handle_key(app: &mut App, key: &KeyEvent) -> Outcome {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Outcome::Quit;
    }
    if app.editing_filter {
        return edit_filter(app, key);
    }
    match key.code {
        KeyCode::Char('q') => return Outcome::Quit,
        KeyCode::Char('p') | KeyCode::Char(' ') => app.toggle_pause(),
        KeyCode::Tab => app.next_screen(1),
        KeyCode::BackTab => app.next_screen(-1),
        KeyCode::Char('1') => app.show_screen(Screen::Sessions),
        KeyCode::Char('2') => app.show_screen(Screen::Groups),
        KeyCode::Char('3') => app.show_screen(Screen::Events),
        KeyCode::Char('s') => app.next_sort(),
        KeyCode::Char('S') => app.reverse_sort(),
        KeyCode::Char('/') => app.start_filter(),
        KeyCode::Up | KeyCode::Char('k') => app.move_by(-1),
        KeyCode::Down | KeyCode::Char('j') => app.move_by(1),
        KeyCode::PageUp => app.move_by(-page(app)),
        KeyCode::PageDown => app.move_by(page(app)),
        KeyCode::Home | KeyCode::Char('g') => app.move_to_end(false),
        KeyCode::End | KeyCode::Char('G') => app.move_to_end(true),
        KeyCode::Enter if app.screen == Screen::Sessions => app.toggle_details(),
        KeyCode::Esc if app.details => app.details = false,
        KeyCode::Esc if !app.filter.is_empty() => app.end_filter(false),
        _ => return Outcome::Ignored,
    }
    Outcome::Consumed
}

/// Returns the lines Page Up and Page Down move: one line less than the
/// list showed, so one line stays in view.
fn page(app: &App) -> isize {
    app.page_lines.get().saturating_sub(1).max(1) as isize
}

fn edit_filter(app: &mut App, key: &KeyEvent) -> Outcome {
    match key.code {
        KeyCode::Enter => app.end_filter(true),
        KeyCode::Esc => app.end_filter(false),
        KeyCode::Backspace => app.filter_pop(),
        KeyCode::Char(c) => app.filter_push(c),
        _ => return Outcome::Ignored,
    }
    Outcome::Consumed
}

fn handle_mouse(app: &mut App, mouse: &MouseEvent) -> Outcome {
    match mouse.kind {
        MouseEventKind::ScrollUp => app.move_by(-1),
        MouseEventKind::ScrollDown => app.move_by(1),
        _ => return Outcome::Ignored,
    }
    Outcome::Consumed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(app: &mut App, code: KeyCode) -> Outcome {
        handle(app, &Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    }

    #[test]
    fn q_and_ctrl_c_quit() {
        let mut app = App::new("t", 0);
        assert_eq!(press(&mut app, KeyCode::Char('q')), Outcome::Quit);
        let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(handle(&mut app, &ctrl_c), Outcome::Quit);
    }

    #[test]
    fn filter_captures_letters() {
        let mut app = App::new("t", 0);
        assert_eq!(press(&mut app, KeyCode::Char('/')), Outcome::Consumed);
        // While editing, q and p are text, not commands.
        assert_eq!(press(&mut app, KeyCode::Char('q')), Outcome::Consumed);
        assert_eq!(press(&mut app, KeyCode::Char('p')), Outcome::Consumed);
        assert!(!app.paused());
        assert_eq!(app.filter, "qp");
        press(&mut app, KeyCode::Backspace);
        assert_eq!(press(&mut app, KeyCode::Enter), Outcome::Consumed);
        assert_eq!(app.filter, "q");
        assert!(!app.editing_filter);
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.filter, "");
    }

    #[test]
    fn tab_cycles_screens() {
        let mut app = App::new("t", 0);
        press(&mut app, KeyCode::Tab);
        assert_eq!(app.screen, Screen::Groups);
        press(&mut app, KeyCode::Tab);
        assert_eq!(app.screen, Screen::Events);
        press(&mut app, KeyCode::Tab);
        assert_eq!(app.screen, Screen::Sessions);
        press(&mut app, KeyCode::BackTab);
        assert_eq!(app.screen, Screen::Events);
        press(&mut app, KeyCode::Char('2'));
        assert_eq!(app.screen, Screen::Groups);
    }

    #[test]
    fn p_toggles_pause() {
        let mut app = App::new("t", 0);
        press(&mut app, KeyCode::Char('p'));
        assert!(app.paused());
        press(&mut app, KeyCode::Char('p'));
        assert!(!app.paused());
    }

    #[test]
    fn enter_without_rows_opens_nothing() {
        let mut app = App::new("t", 0);
        press(&mut app, KeyCode::Enter);
        assert!(!app.details);
    }

    #[test]
    fn mouse_wheel_scrolls_event_log() {
        use crate::telemetry::{Event as FeedEvent, EventKind, FeedMessage};
        let mut app = App::new("t", 0);
        for n in 0..5 {
            app.apply(super::super::Update::Feed(FeedMessage::Event(
                FeedEvent::now(EventKind::Info, n.to_string()),
            )));
        }
        app.show_screen(Screen::Events);
        // A log page of two lines leaves room to scroll back three.
        app.page_lines.set(2);
        let wheel = |kind| {
            Event::Mouse(MouseEvent {
                kind,
                column: 0,
                row: 0,
                modifiers: KeyModifiers::NONE,
            })
        };
        assert_eq!(
            handle(&mut app, &wheel(MouseEventKind::ScrollUp)),
            Outcome::Consumed
        );
        assert_eq!(app.event_scroll, 1);
        handle(&mut app, &wheel(MouseEventKind::ScrollDown));
        assert_eq!(app.event_scroll, 0);
        assert_eq!(
            handle(&mut app, &wheel(MouseEventKind::Moved)),
            Outcome::Ignored
        );
    }

    #[test]
    fn unknown_key_is_ignored() {
        let mut app = App::new("t", 0);
        assert_eq!(press(&mut app, KeyCode::Char('x')), Outcome::Ignored);
        assert_eq!(handle(&mut app, &Event::Resize(80, 24)), Outcome::Resized);
    }
}
