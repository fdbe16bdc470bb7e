//! The `resonate` engine: the protocol, its wire dialects, sessions, the
//! server and the player shared by every subcommand of the binary.
//!
//! Framing is kept apart from meaning. [`transport`] moves WebSocket frames,
//! a [`dialect`] turns frames into typed [`protocol`] messages, and a
//! [`session`] task owns one connection and applies those messages.

pub mod audio;
pub mod clock;
pub mod dialect;
pub mod discovery;
pub mod monitor;
pub mod noise;
pub mod player;
pub mod protocol;
pub mod server;
pub mod session;
pub mod stress;
pub mod sync;
pub mod telemetry;
pub mod transport;
