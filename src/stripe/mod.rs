//! Talking to Stripe's API: the client (timeouts, retries, rate limit, idempotency keys), the
//! pure key-format checks, and the key report that combines them with online checks.

pub mod client;
pub mod keys;
pub mod lists;
mod rate_limit;
pub mod report;
pub mod typed;

pub use client::{ClientSettings, StripeClient, StripeError};
pub use keys::Mode;
