//! Every state billmirror stores as text, one enum each, so that a misspelt state is a compile
//! error rather than a row no query finds. Each is stored as its lower-case word
//! (`ToSql`/`FromSql<Text>` on both backends) and shown the same way in answers.

/// Declares a state enum stored as text: its words, parsing, display, serde and diesel impls.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = diesel::sql_types::Text)]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        /// In `/openapi.json`: a string, one of the stored words.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "`{other}` is not one of: {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                <str as diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg>>::to_sql(
                    self.as_str(),
                    out,
                )
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::sqlite::Sqlite> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::sqlite::Sqlite>,
            ) -> diesel::serialize::Result {
                out.set_value(self.as_str());
                Ok(diesel::serialize::IsNull::No)
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Text, $crate::storage::MultiBackend>
            for $name
        {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, $crate::storage::MultiBackend>,
            ) -> diesel::serialize::Result {
                out.set_value((diesel::sql_types::Text, self));
                Ok(diesel::serialize::IsNull::No)
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn from_sql(
                bytes: <diesel::pg::Pg as diesel::backend::Backend>::RawValue<'_>,
            ) -> diesel::deserialize::Result<Self> {
                let text = <String as diesel::deserialize::FromSql<
                    diesel::sql_types::Text,
                    diesel::pg::Pg,
                >>::from_sql(bytes)?;
                Ok(text.parse()?)
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::sqlite::Sqlite>
            for $name
        {
            fn from_sql(
                bytes: <diesel::sqlite::Sqlite as diesel::backend::Backend>::RawValue<'_>,
            ) -> diesel::deserialize::Result<Self> {
                let text = <String as diesel::deserialize::FromSql<
                    diesel::sql_types::Text,
                    diesel::sqlite::Sqlite,
                >>::from_sql(bytes)?;
                Ok(text.parse()?)
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, $crate::storage::MultiBackend>
            for $name
        {
            fn from_sql(
                bytes: <$crate::storage::MultiBackend as diesel::backend::Backend>::RawValue<'_>,
            ) -> diesel::deserialize::Result<Self> {
                bytes.from_sql::<Self, diesel::sql_types::Text>()
            }
        }
    };
}

text_enum! {
    /// What a background job does; each kind has its own runner, which claims only its own jobs.
    pub enum JobKind {
        /// Make one of our invoices exist in Stripe, exactly once.
        PushInvoice = "push_invoice",
        /// Read the lines Stripe's events cut from a mirrored invoice.
        CompleteInvoiceLines = "complete_invoice_lines",
        /// Compare a connection's ledger with Stripe's lists (and repair it when asked).
        Reconcile = "reconcile",
        /// Post one chat message (an event's, or a digest's) to its channel, once.
        Notify = "notify",
        /// Read a thin (v2) event and its related object from Stripe, and store what they say
        /// as an event the ledger folds.
        FetchThinEvent = "fetch_thin_event",
        /// Carry out a button clicked in chat (retry a payment, send an invoice, record a
        /// follow-up, escalate), then say so in the message's thread.
        ChatAction = "chat_action",
    }
}

text_enum! {
    /// Where a job stands. `failed` and `dead` both wait for a person: `failed` because Stripe
    /// refused (fix the cause, then retry), `dead` because every attempt allowed was spent on
    /// errors that might pass (retry when they have).
    pub enum JobState {
        /// Runs when due (again, after a retryable error).
        Pending = "pending",
        Done = "done",
        /// Refused for a reason a person must fix; not retried until asked.
        Failed = "failed",
        /// Given up after the policy's most attempts; not retried until asked.
        Dead = "dead",
        /// No longer wanted (its invoice was voided).
        Cancelled = "cancelled",
    }
}

text_enum! {
    /// An invoice's state, ours or Stripe's word for a mirrored one. Listed in the order an
    /// invoice moves through them.
    pub enum InvoiceStatus {
        Draft = "draft",
        Open = "open",
        PastDue = "past_due",
        Uncollectible = "uncollectible",
        Paid = "paid",
        Void = "void",
        /// A Stripe draft deleted before it was finalized.
        Deleted = "deleted",
    }
}

impl InvoiceStatus {
    /// How far along its life an invoice is; it never moves back: a late `invoice.updated`
    /// cannot reopen a paid invoice, and void or deleted end it.
    pub fn rank(self) -> u8 {
        match self {
            InvoiceStatus::Draft => 0,
            InvoiceStatus::Open => 1,
            InvoiceStatus::PastDue => 2,
            InvoiceStatus::Uncollectible => 3,
            InvoiceStatus::Paid => 4,
            InvoiceStatus::Void | InvoiceStatus::Deleted => 5,
        }
    }

    /// Void or deleted: nothing more can happen to it.
    pub fn is_ended(self) -> bool {
        matches!(self, InvoiceStatus::Void | InvoiceStatus::Deleted)
    }
}

// Written out: the enum's derives come from `text_enum!`, shared by every state.
#[allow(clippy::derivable_impls)]
impl Default for InvoiceStatus {
    fn default() -> Self {
        InvoiceStatus::Draft
    }
}

text_enum! {
    /// Where an invoice stands with Stripe.
    pub enum SyncState {
        /// Ours, waiting for (or in) its push.
        Pending = "pending",
        /// Ours, made in Stripe and finalized.
        Pushed = "pushed",
        /// Ours, stopped: Stripe refused, or every attempt allowed failed. A person must act.
        Failed = "failed",
        /// Ours, voided before its push ended.
        Cancelled = "cancelled",
        /// Made in Stripe; billmirror mirrors it.
        Mirrored = "mirrored",
    }
}

text_enum! {
    /// Who made an invoice.
    pub enum InvoiceOrigin {
        Billmirror = "billmirror",
        Stripe = "stripe",
    }
}

text_enum! {
    /// Where a stored webhook event stands.
    pub enum EventStatus {
        /// Stored, not applied yet.
        Pending = "pending",
        Applied = "applied",
        /// A type billmirror does not map: kept, never applied.
        Ignored = "ignored",
        /// Failed to apply; tried again at its next attempt time.
        Retrying = "retrying",
        /// Failed every attempt allowed; replayable by a person.
        Dead = "dead",
        /// A thin (v2) event, stored: its `fetch_thin_event` job reads the full event and the
        /// object it names from Stripe. Never applied itself.
        Fetching = "fetching",
        /// A thin event whose object was read: what Stripe said is stored as its own event
        /// (`evt_bm_thin_{thin id}`, source `thin`), which the apply workers fold.
        Fetched = "fetched",
        /// A thin event whose object Stripe no longer has (deleted since): nothing to fold; the
        /// deletion's own event says the rest.
        Gone = "gone",
    }
}

impl EventStatus {
    /// Waiting for the apply workers.
    pub const DUE: [EventStatus; 2] = [EventStatus::Pending, EventStatus::Retrying];
}

text_enum! {
    /// Whether a connection still syncs.
    pub enum ConnectionStatus {
        Active = "active",
        /// Stopped by ops; its ledger stays, its webhooks are refused.
        Disconnected = "disconnected",
        /// Stripe said the OAuth authorisation is gone (deauthorised there, or a 401): no more
        /// reads; connecting again makes a new authorisation.
        Revoked = "revoked",
    }
}

text_enum! {
    /// How billmirror reads a connection's account.
    pub enum ConnectionAuth {
        /// With a pasted (or `STRIPE_*`) secret or restricted key.
        Key = "key",
        /// Stripe Connect OAuth (Standard account): the platform key with `Stripe-Account`.
        Connect = "connect",
        /// Stripe App OAuth: a short-lived access token, refreshed with a rolling refresh token.
        App = "app",
    }
}

text_enum! {
    /// Where a connection's keys come from.
    pub enum ConnectionOrigin {
        /// Made through `POST /api/connections`.
        Api = "api",
        /// The one configured from `STRIPE_*` (its id is `env`).
        Env = "env",
    }
}

text_enum! {
    /// What Stripe said about a connection's secret key.
    pub enum KeyVerdict {
        /// Stripe never answered about it (unreachable, or an error that says nothing of the key).
        Unverified = "unverified",
        /// Stripe accepted it and said what it may do (`can_push`).
        Verified = "verified",
        /// Stripe refused it: revoked, rolled or unknown.
        Rejected = "rejected",
    }
}

text_enum! {
    /// A webhook signing secret of a connection.
    pub enum SecretStatus {
        /// Verifies deliveries.
        Active = "active",
        /// Verifies nothing any more (rotated out).
        Retired = "retired",
    }
}

text_enum! {
    /// Where a drift report stands.
    pub enum RunStatus {
        Running = "running",
        Done = "done",
        /// Stopped by an error a person must look at (the key may not list a resource).
        Failed = "failed",
    }
}

text_enum! {
    /// Where a chat channel's messages go.
    pub enum ChannelKind {
        /// A Slack app's bot token: `chat.postMessage`, threads and `chat.update`.
        SlackApp = "slack_app",
        /// A Slack-format incoming webhook (Slack, Mattermost, Rocket.Chat, Discord's `/slack`).
        SlackWebhook = "slack_webhook",
        /// A Microsoft Teams Workflows webhook: an Adaptive Card.
        Teams = "teams",
        /// Any HTTP endpoint, signed per the Standard Webhooks spec.
        Webhook = "webhook",
    }
}

text_enum! {
    /// A channel's health: `broken` when the service refused it for good (removed, archived, a
    /// revoked token); its messages then wait for a person instead of being retried forever.
    pub enum ChannelStatus {
        Active = "active",
        Broken = "broken",
    }
}

text_enum! {
    /// How much of a person a message shows. Card numbers beyond brand and last 4, fingerprints,
    /// phones, addresses and tax ids are never shown at any level.
    pub enum Redaction {
        /// Names and emails as they are.
        Full = "full",
        /// `a***@example.com`, `A*** L***`.
        Masked = "masked",
        /// No name or email at all.
        Hidden = "hidden",
    }
}

text_enum! {
    /// Which Stripe mode a notification rule takes events from.
    pub enum RuleMode {
        Any = "any",
        Live = "live",
        Test = "test",
    }
}

text_enum! {
    /// The kinds of news a rule can subscribe a channel to.
    pub enum Family {
        PaymentFailed = "payment_failed",
        InvoicePaid = "invoice_paid",
        Dispute = "dispute",
        CustomerUpdated = "customer_updated",
        Subscription = "subscription",
        Refund = "refund",
        Ops = "ops",
    }
}

text_enum! {
    /// What a delivery posts.
    pub enum DeliveryKind {
        /// One event, for one rule.
        Event = "event",
        /// Several events counted in one message (a burst, or events too old to announce).
        Digest = "digest",
        /// A channel's test message.
        Test = "test",
    }
}

text_enum! {
    /// Where a delivery stands.
    pub enum DeliveryState {
        /// Waiting for its channel's turn.
        Pending = "pending",
        /// Being posted now.
        Sending = "sending",
        Sent = "sent",
        /// Counted in a digest (`digest_id`) instead of posted alone.
        Digested = "digested",
        /// The channel refused it for good (broken channel); retryable through its job.
        Failed = "failed",
        /// No longer wanted (its channel was deleted).
        Skipped = "skipped",
    }
}

text_enum! {
    /// What a button in a chat message asks billmirror to do.
    pub enum ChatAction {
        /// Attempt the failed invoice's payment now (`POST /v1/invoices/{id}/pay`).
        RetryPayment = "retry_payment",
        /// Email the invoice to the customer again (`POST /v1/invoices/{id}/send`).
        SendInvoice = "send_invoice",
        /// Record that someone contacted the customer.
        MarkContacted = "mark_contacted",
        /// Put the customer in the billing queue.
        AssignBillingQueue = "assign_billing_queue",
        /// Post the message to the escalation channel (legal/finance).
        Escalate = "escalate",
    }
}

text_enum! {
    /// Where a click from chat stands.
    pub enum ChatActionState {
        /// Accepted; its job does the work.
        Pending = "pending",
        Done = "done",
        /// Tried and refused by Stripe or unreachable for good: said in the thread.
        Failed = "failed",
        /// Not allowed (role, connection): the clicker was told, nothing was called.
        Refused = "refused",
    }
}

text_enum! {
    /// A follow-up billmirror records on a customer, shown in its billing context.
    pub enum FollowUpKind {
        Contacted = "contacted",
        AssignedToBillingQueue = "assigned_to_billing_queue",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_word_and_nothing_else_does() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(*state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        for kind in JobKind::ALL {
            assert_eq!(kind.to_string().parse::<JobKind>(), Ok(*kind));
        }
        for status in InvoiceStatus::ALL {
            assert_eq!(status.as_str().parse::<InvoiceStatus>(), Ok(*status));
        }
        let ranks: Vec<u8> = InvoiceStatus::ALL.iter().map(|s| s.rank()).collect();
        assert!(
            ranks.windows(2).all(|w| w[0] <= w[1]),
            "listed in life order"
        );
        let error = "Pending".parse::<JobState>().unwrap_err();
        assert!(
            error.contains("pending, done, failed, dead, cancelled"),
            "{error}"
        );
    }
}
