//! `resonate`: one binary for serving, playing, discovering, stressing and
//! monitoring Resonate and Sendspin networks.
//!
//! Exit status: 0 on success, 1 when a run fails, 2 for bad input (an
//! invalid argument, file or URL, or a server or telemetry feed that cannot
//! be reached).

mod cli;
mod demo;
mod discover;
mod logging;
mod monitor;
mod pair;
mod play;
mod serve;
mod stress;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, PlayAction, PlayArgs, ServeAction, ServeArgs};

/// An error together with the exit status it maps to.
#[derive(Debug)]
pub struct Failure {
    pub status: u8,
    pub error: anyhow::Error,
}

impl Failure {
    /// Bad input: exit status 2.
    pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            status: 2,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure {
            status: 1,
            error: error.into(),
        }
    }
}

/// Whether -q was given: status lines on stderr are left out.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Returns whether -q was given.
pub fn is_quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// Prints a status line for the user on stderr, unless -q was given.
pub fn status(line: &str) {
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("resonate: {line}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    QUIET.store(cli.quiet > 0, std::sync::atomic::Ordering::Relaxed);
    let destination = match &cli.command {
        Command::Monitor(args) => match monitor::log_destination(args) {
            Ok(destination) => destination,
            Err(failure) => return report(failure),
        },
        Command::Serve(args) if args.tui => {
            match monitor::tui_log_destination(args.log_file.as_deref()) {
                Ok(destination) => destination,
                Err(failure) => return report(failure),
            }
        }
        Command::Stress(args) if args.tui => {
            match monitor::tui_log_destination(args.log_file.as_deref()) {
                Ok(destination) => destination,
                Err(failure) => return report(failure),
            }
        }
        Command::Play(args) => match play::log_destination(args) {
            Ok(destination) => destination,
            Err(failure) => return report(failure),
        },
        _ => logging::Destination::Stderr,
    };
    let tui = matches!(&cli.command, Command::Serve(args) if args.tui)
        || matches!(&cli.command, Command::Stress(args) if args.tui);
    if tui {
        // Status lines would draw over the monitor.
        QUIET.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    logging::init(cli.verbose, cli.quiet, destination);
    let result = match cli.command {
        Command::Serve(ServeArgs {
            action: Some(ServeAction::Pair(args)),
            ..
        }) => pair::serve_pair(args),
        Command::Serve(ServeArgs {
            action: Some(ServeAction::Clients(args)),
            ..
        }) => serve::clients(args),
        Command::Play(PlayArgs {
            action: Some(PlayAction::Pair(args)),
            ..
        }) => pair::play_pair(args),
        Command::Serve(args) => serve::run(args),
        Command::Play(args) => play::run(args),
        Command::Discover(args) => discover::run(args),
        Command::Stress(args) => stress::run(args),
        Command::Monitor(args) => monitor::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report(failure),
    }
}

fn report(failure: Failure) -> ExitCode {
    eprintln!("resonate: {:#}", failure.error);
    ExitCode::from(failure.status)
}

/// Builds the Tokio runtime the subcommands run on.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            Failure::from(anyhow::Error::new(err).context("failed to start the async runtime"))
        })
}

/// Catches Ctrl-C and SIGTERM from this call on, and resolves when either
/// arrives.
///
/// The handlers are installed when this is called, not when the future is
/// first polled, so a signal that comes right after a subcommand reports it
/// is ready still ends it cleanly. Call it inside the runtime, before the
/// readiness line.
pub fn interrupted() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Ok(mut interrupt), Err(_)) => {
                    interrupt.recv().await;
                }
                (Err(_), _) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Returns the machine's host name, for default names and identifiers.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}
