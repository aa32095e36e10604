//! Embedded migrations, one tree per backend with the same names, applied before the pool starts.

use diesel::connection::SimpleConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::connection::DbConnection;
use super::StorageError;

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Any constant will do, as long as no other program on the same PostgreSQL uses it.
const POSTGRES_MIGRATION_LOCK: i64 = 0x6269_6c6c_6d69_7272; // "billmirr"

/// Applies every pending migration and returns the names of those it applied.
pub fn run_pending(conn: &mut DbConnection) -> Result<Vec<String>, StorageError> {
    let applied = match conn {
        DbConnection::Sqlite(c) => c
            .run_pending_migrations(SQLITE)
            .map(|versions| versions.iter().map(ToString::to_string).collect()),
        DbConnection::Postgres(c) => {
            // Two instances starting together must not both run the same migration.
            c.batch_execute(&format!(
                "SELECT pg_advisory_lock({POSTGRES_MIGRATION_LOCK})"
            ))?;
            let result = c
                .run_pending_migrations(POSTGRES)
                .map(|versions| versions.iter().map(ToString::to_string).collect());
            c.batch_execute(&format!(
                "SELECT pg_advisory_unlock({POSTGRES_MIGRATION_LOCK})"
            ))?;
            result
        }
    };
    applied.map_err(|e| StorageError::Migration(e.to_string()))
}

pub fn has_pending(conn: &mut DbConnection) -> Result<bool, StorageError> {
    let pending = match conn {
        DbConnection::Sqlite(c) => c.has_pending_migration(SQLITE),
        DbConnection::Postgres(c) => c.has_pending_migration(POSTGRES),
    };
    pending.map_err(|e| StorageError::Migration(e.to_string()))
}

/// Reverts every applied migration, newest first. Only tests use it, to prove each `down.sql`
/// really undoes its `up.sql`.
pub fn revert_all(conn: &mut DbConnection) -> Result<(), StorageError> {
    let reverted = match conn {
        DbConnection::Sqlite(c) => c.revert_all_migrations(SQLITE).map(drop),
        DbConnection::Postgres(c) => c.revert_all_migrations(POSTGRES).map(drop),
    };
    reverted.map_err(|e| StorageError::Migration(e.to_string()))
}
