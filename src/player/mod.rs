//! The player.

pub mod scheduler;
