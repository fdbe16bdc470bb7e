//! The real terminal: raw mode and the alternate screen while the monitor
//! runs, restored when it ends, fails or panics.

use std::io::{self, Stdout};
use std::sync::Once;

use crossterm::cursor::Show;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, EventStream};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::telemetry::{unix_ms_now, Telemetry};

use super::{forward_hub, run, App, Update, UPDATE_CHANNEL};

/// Owns the terminal while the monitor draws on it; dropping it restores
/// the terminal.
pub struct TerminalGuard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    /// Enters raw mode and the alternate screen, captures the mouse and
    /// installs a panic hook that restores the terminal before the panic
    /// message is printed.
    pub fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        enable_raw_mode()?;
        let mut stdout = io::stdout();
        if let Err(err) = execute!(stdout, EnterAlternateScreen, EnableMouseCapture) {
            restore();
            return Err(err);
        }
        match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(err) => {
                restore();
                Err(err)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen and raw mode and shows the cursor; safe to
/// call more than once.
fn restore() {
    let _ = execute!(
        io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        Show
    );
    let _ = disable_raw_mode();
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Runs the monitor on the process's terminal until the operator quits.
/// `target` is what the header names as the source.
pub async fn run_terminal(target: &str, updates: mpsc::Receiver<Update>) -> io::Result<()> {
    let mut guard = TerminalGuard::enter()?;
    let mut app = App::new(target, unix_ms_now());
    run(
        &mut guard.terminal,
        &mut app,
        updates,
        EventStream::new(),
        unix_ms_now,
    )
    .await
}

/// Draws the monitor of an in-process `telemetry` hub on the terminal,
/// for `serve` and `stress`. Returns when the operator quits or when
/// `stop` is cancelled; the caller decides what quitting stops. The caller
/// must keep its own status lines and logs off the terminal meanwhile.
pub async fn run_in_process(telemetry: Telemetry, stop: CancellationToken) -> io::Result<()> {
    let target = format!(
        "in process: {} {}",
        telemetry.source().kind,
        telemetry.source().target
    );
    let (sender, receiver) = mpsc::channel(UPDATE_CHANNEL);
    let _ = sender.send(Update::Status("live".into())).await;
    // The forwarder ends only on stop or when the monitor is gone, so it
    // then waits forever and the draw loop or `stop` ends the select.
    let forward = async {
        forward_hub(telemetry, sender, stop.clone()).await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        result = run_terminal(&target, receiver) => result,
        _ = stop.cancelled() => Ok(()),
        _ = forward => Ok(()),
    }
}
