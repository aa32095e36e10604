//! Domain types that cannot hold a bad value: roles, ids, masked secrets, time. Nothing here
//! does I/O or knows about the web framework or the database.

pub mod backoff;
pub mod email;
pub mod ids;
pub mod money;
pub mod role;
pub mod secret;
pub mod states;
pub mod time;

pub use email::Email;
pub use money::Currency;
pub use role::Role;
pub use secret::Secret;
