//! Chat notifications: payment events as redacted messages in the team's chat (Slack, Slack-format
//! webhooks, Teams, any signed webhook).
//!
//! The flow: applying an event (`ledger::apply`) calls [`produce`], which picks the event's news
//! (`facts`), matches it against the rules (`rules`) and, in the same transaction, writes one
//! delivery per matching rule (unique on `{event}:{rule}`) with a `notify` job. The job
//! (`deliver`) waits for its channel's turn, counts bursts and late events into digests, renders
//! the message (`render`, with `redact` applied to every text), formats it for the service
//! (`format`) and posts it (`send`), recording the channel's health. `channels` is what the API
//! manages: channels with sealed secrets, rules, test messages. `ops` watches billmirror itself
//! and queues an `ops` message each time one of its alerts changes state.

pub mod actions;
pub mod channels;
pub mod deliver;
pub mod facts;
pub mod format;
pub mod interact;
pub mod ops;
pub mod produce;
pub mod queue;
pub mod redact;
pub mod render;
pub mod rules;
pub mod send;
pub mod slack;

use std::time::Duration;

pub use produce::produce;

use crate::jobs::Wakers;
use crate::storage::Db;
use crate::vault::Vault;

/// What notifications are configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Events older than this when their turn comes are summarised, not announced one by one.
    pub max_age: Duration,
    /// billmirror's address, for links in messages.
    pub public_url: String,
    /// One post's time limit.
    pub timeout: Duration,
    /// When ops alerts fire.
    pub alerts: ops::Thresholds,
}

impl Settings {
    pub fn links(&self) -> render::Links {
        render::Links {
            public_url: self.public_url.trim_end_matches('/').to_owned(),
        }
    }
}

/// The notifications service: the `notify` job's handler, and what the API calls.
#[derive(Clone)]
pub struct Notifier {
    db: Db,
    vault: Vault,
    poster: send::Poster,
    settings: Settings,
    wakers: Wakers,
}

impl Notifier {
    pub fn new(db: Db, vault: Vault, settings: Settings, wakers: Wakers) -> Notifier {
        Notifier {
            db,
            vault,
            poster: send::Poster::new(settings.timeout),
            settings,
            wakers,
        }
    }
}
