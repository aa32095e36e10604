//! The integration tests: the real app over real HTTP, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod auth;
mod billing;
mod browser;
mod chat_actions;
mod cli;
mod connection_keys;
mod connections;
mod drift;
mod health;
mod hostile;
mod inbox;
mod instances;
mod invoice_faults;
mod invoices;
mod jobs;
mod mapping;
mod notify;
mod oauth;
mod openapi;
mod ordering;
mod prepared;
mod properties;
mod secrets;
mod storage;
mod stripe_client;
mod support_view;
mod thin;
mod webhooks;
