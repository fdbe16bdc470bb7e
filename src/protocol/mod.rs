//! The protocol's typed messages, independent of any wire dialect.
//!
//! These types follow the Sendspin v1 message set, which is the richest of
//! the dialects the engine speaks. A [`crate::dialect`] maps them to and from
//! the frames of one wire format.

pub mod binary;
pub mod messages;
pub mod roles;

pub use binary::{BinaryFrame, BinaryKind};
pub use messages::*;
pub use roles::{activate_roles, Role, RoleFamily};

/// Version of the core message format carried in both hello messages.
pub const PROTOCOL_VERSION: u32 = 1;
