//! Chat notifications: payment events as redacted messages in the team's chat (Slack, Slack-format
//! webhooks, Teams, any signed webhook). The pure parts: which news an event is (`facts`), which
//! rules want it (`rules`), what a message says (`render`, with `redact` applied to every text),
//! each service's format (`format`) and how a service's answer reads (`send`).

pub mod facts;
pub mod format;
pub mod redact;
pub mod render;
pub mod rules;
pub mod send;
