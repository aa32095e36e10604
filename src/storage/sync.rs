//! The backfill's cursors: per connection and resource, the last Stripe id written and whether
//! the resource is complete. A page's events and its cursor are committed together, so a run
//! that stops anywhere resumes without a gap or a duplicate.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::sync_cursors;
use super::{DbConnection, StorageError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sync_cursors)]
pub struct CursorRow {
    pub connection_id: String,
    pub resource: String,
    pub cursor: Option<String>,
    pub completed: bool,
    pub objects_seen: i64,
    pub updated_at: NaiveDateTime,
}

pub fn cursors(
    conn: &mut DbConnection,
    connection_id: &str,
) -> Result<Vec<CursorRow>, StorageError> {
    Ok(sync_cursors::table
        .filter(sync_cursors::connection_id.eq(connection_id))
        .select(CursorRow::as_select())
        .load(conn)?)
}

/// Writes a resource's cursor, creating it on first use.
pub fn save(conn: &mut DbConnection, row: &CursorRow) -> Result<(), StorageError> {
    let updated = diesel::update(sync_cursors::table.find((&row.connection_id, &row.resource)))
        .set((
            sync_cursors::cursor.eq(&row.cursor),
            sync_cursors::completed.eq(row.completed),
            sync_cursors::objects_seen.eq(row.objects_seen),
            sync_cursors::updated_at.eq(row.updated_at),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(sync_cursors::table)
            .values(row)
            .execute(conn)?;
    }
    Ok(())
}

/// Starts the given resources over (a new run after a complete one).
pub fn reset(
    conn: &mut DbConnection,
    connection_id: &str,
    resources: &[&str],
) -> Result<(), StorageError> {
    diesel::delete(
        sync_cursors::table
            .filter(sync_cursors::connection_id.eq(connection_id))
            .filter(sync_cursors::resource.eq_any(resources)),
    )
    .execute(conn)?;
    Ok(())
}
