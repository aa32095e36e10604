//! Payable invoices made in billmirror: parsed input, the invoice and its push job written
//! together, the push worker that creates each in Stripe exactly once, voiding, and the views.

pub mod input;
