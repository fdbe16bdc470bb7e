//! The player.

pub mod output;
pub mod scheduler;
