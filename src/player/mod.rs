//! The player: the network client that keeps the clock in sync and feeds
//! the scheduler, the scheduler that decides which sample sounds when, and
//! the outputs that pull from it, and the terminal UI of `play`.

pub mod client;
pub mod decode;
pub mod encrypted;
pub mod output;
pub mod request;
pub mod roles;
pub mod scheduler;
pub mod servers;
pub mod telemetry;
pub mod ui;
