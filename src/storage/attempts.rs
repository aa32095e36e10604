//! The attempts (charges) of each payment: written whole when the payment is rebuilt, read by the
//! billing context and the invoice detail.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::payment_attempts;
use super::{DbConnection, StorageError};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(
    table_name = payment_attempts,
    treat_none_as_null = true,
    treat_none_as_default_value = false
)]
pub struct AttemptRow {
    pub id: String,
    pub connection_id: String,
    /// The payment's Stripe id (its PaymentIntent, or its charge when it has none).
    pub payment_stripe_id: String,
    /// The charge's id; an attempt known only from a PaymentIntent's error without a charge id
    /// is keyed by the event that reported it.
    pub charge_id: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub failure_code: Option<String>,
    pub decline_code: Option<String>,
    pub failure_message: Option<String>,
    pub method_type: Option<String>,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub stripe_created: Option<NaiveDateTime>,
}

/// Writes every attempt of one payment. A charge first filed under another payment key (a charge
/// event seen before its PaymentIntent was known) moves to this one.
pub fn write_all(conn: &mut DbConnection, rows: &[AttemptRow]) -> Result<(), StorageError> {
    for row in rows {
        macro_rules! statement {
            () => {
                diesel::insert_into(payment_attempts::table)
                    .values(row)
                    .on_conflict((payment_attempts::connection_id, payment_attempts::charge_id))
                    .do_update()
                    .set(row)
            };
        }
        crate::on_backend!(conn, c => crate::fixed!(statement!()).execute(c)?);
    }
    Ok(())
}

/// The attempts of these payments, oldest first.
pub fn of_payments(
    conn: &mut DbConnection,
    payment_stripe_ids: &[String],
) -> Result<Vec<AttemptRow>, StorageError> {
    Ok(payment_attempts::table
        .filter(payment_attempts::payment_stripe_id.eq_any(payment_stripe_ids))
        .select(AttemptRow::as_select())
        .order((
            payment_attempts::stripe_created.asc(),
            payment_attempts::charge_id.asc(),
        ))
        .load(conn)?)
}
