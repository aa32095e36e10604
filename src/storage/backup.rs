//! An online copy of a SQLite database. `VACUUM INTO` writes a consistent snapshot (one read
//! transaction) while `serve` keeps writing, and the copy is compact. PostgreSQL has pg_dump.

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::{DbConnection, StorageError};

/// Writes a consistent copy of the SQLite database to `path`, which must not exist yet.
pub fn sqlite_copy(conn: &mut DbConnection, path: &str) -> Result<(), StorageError> {
    match conn {
        DbConnection::Sqlite(c) => {
            diesel::sql_query("VACUUM INTO ?")
                .bind::<Text, _>(path)
                .execute(c)?;
            Ok(())
        }
        DbConnection::Postgres(_) => Err(StorageError::Unavailable(
            "a copy with VACUUM INTO is for SQLite only".into(),
        )),
    }
}
