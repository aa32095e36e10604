//! Domain types that cannot hold a bad value: roles, ids, masked secrets, time. Nothing here
//! does I/O or knows about the web framework or the database.

pub mod ids;
pub mod role;
pub mod secret;
pub mod time;

pub use role::Role;
pub use secret::Secret;
