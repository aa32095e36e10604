//! The epochs of idempotency keys billmirror gave up on. Stripe replays the first answer to a key
//! for 24 hours, a 500 included; a step whose key got a 500 is sent again, once the object is
//! known not to exist, under the next epoch's key. Kept in the database so that every instance,
//! and the attempt after a restart, uses the same key.

use diesel::prelude::*;

use super::schema::stripe_key_epochs;
use super::{DbConnection, StorageError};
use crate::domain::time;

/// The epoch `key_base` is at: 0 until a key was given up on.
pub fn epoch(conn: &mut DbConnection, key_base: &str) -> Result<i32, StorageError> {
    Ok(stripe_key_epochs::table
        .find(key_base)
        .select(stripe_key_epochs::epoch)
        .first(conn)
        .optional()?
        .unwrap_or(0))
}

/// Moves `key_base` past epoch `spent`. Two attempts that spent the same key move it once.
pub fn spend(conn: &mut DbConnection, key_base: &str, spent: i32) -> Result<(), StorageError> {
    let now = time::now();
    if spent > 0 {
        diesel::update(
            stripe_key_epochs::table
                .find(key_base)
                .filter(stripe_key_epochs::epoch.eq(spent)),
        )
        .set((
            stripe_key_epochs::epoch.eq(spent + 1),
            stripe_key_epochs::updated_at.eq(now),
        ))
        .execute(conn)?;
        return Ok(());
    }
    let row = (
        stripe_key_epochs::key_base.eq(key_base),
        stripe_key_epochs::epoch.eq(1),
        stripe_key_epochs::updated_at.eq(now),
    );
    macro_rules! insert {
        ($c:expr) => {
            diesel::insert_into(stripe_key_epochs::table)
                .values(row)
                .on_conflict_do_nothing()
                .execute($c)?
        };
    }
    match conn {
        DbConnection::Postgres(c) => insert!(c),
        DbConnection::Sqlite(c) => insert!(c),
    };
    Ok(())
}

/// The key to send: the base itself at epoch 0, else `{base}:r{epoch}`.
pub fn key_at(key_base: &str, epoch: i32) -> String {
    if epoch == 0 {
        key_base.to_owned()
    } else {
        format!("{key_base}:r{epoch}")
    }
}

#[cfg(test)]
mod tests {
    use super::key_at;

    #[test]
    fn the_first_key_is_the_base_and_later_ones_name_their_epoch() {
        assert_eq!(key_at("bm:inv_1:finalize", 0), "bm:inv_1:finalize");
        assert_eq!(key_at("bm:inv_1:finalize", 2), "bm:inv_1:finalize:r2");
    }
}
