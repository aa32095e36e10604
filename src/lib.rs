//! billmirror keeps a local billing ledger in step with Stripe. See the README's "Architecture"
//! section for a map of these modules and how a request travels through them.

pub mod app;
pub mod auth;
pub mod billing;
pub mod cli;
pub mod config;
pub mod connections;
pub mod domain;
pub mod http;
pub mod invoices;
pub mod jobs;
pub mod ledger;
pub mod notify;
pub mod people;
pub mod shutdown;
pub mod storage;
pub mod stripe;
pub mod sync;
pub mod telemetry;
pub mod vault;
pub mod web;
pub mod webhook;
