//! Storage: the diesel schema, the connection pool on SQLite or PostgreSQL, migrations, and the
//! queries each part of billmirror runs. Diesel is synchronous, so every query runs on tokio's
//! blocking pool through [`Db::run`], never on the async executor.

pub mod attempts;
pub mod backup;
pub mod billing;
pub mod chat;
mod connection;
pub mod connection_drafts;
pub mod connections;
pub mod events;
pub mod fixed;
pub mod invoices;
pub mod jobs;
pub mod ledger;
pub mod metrics;
pub mod migrate;
pub mod notify;
pub mod oauth_states;
pub mod ops_alerts;
pub mod reconcile;
pub mod schema;
pub mod snapshot;
pub mod stripe_keys;
pub mod sync;
pub mod tokens;
pub mod users;

use std::fmt;
use std::time::Duration;

use diesel::r2d2::{Pool, PooledConnection};

pub use connection::{ConnectionManager, DbConnection, MultiBackend};

/// Where the ledger lives, decided once from `DATABASE_URL`'s scheme.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// A file path, created on first use.
    Sqlite(String),
    /// A `postgres://` URL, passed to libpq as is.
    Postgres(String),
}

impl DatabaseTarget {
    pub const DEFAULT_SQLITE_FILE: &'static str = "billmirror.db";

    /// Reads a `DATABASE_URL`. No value means the SQLite file in the working directory. A value
    /// without a known scheme is refused rather than taken as a file name: a typo in a PostgreSQL
    /// URL must not quietly start an empty SQLite ledger.
    pub fn parse(url: Option<&str>) -> Result<Self, String> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(DatabaseTarget::Sqlite(Self::DEFAULT_SQLITE_FILE.to_owned()));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseTarget::Postgres(url.to_owned()));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(
                    "the sqlite:// URL names no file (write sqlite://billmirror.db)".into(),
                );
            }
            return Ok(DatabaseTarget::Sqlite(path.to_owned()));
        }
        let scheme = url.split_once("://").map_or("none", |(scheme, _)| scheme);
        Err(format!(
            "the URL scheme `{scheme}` is not supported: use sqlite://FILE or postgres://USER@HOST/DB"
        ))
    }

    pub fn backend(&self) -> Backend {
        match self {
            DatabaseTarget::Sqlite(_) => Backend::Sqlite,
            DatabaseTarget::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Shows where the database is without the password a PostgreSQL URL may carry.
impl fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseTarget::Sqlite(path) => write!(f, "sqlite://{path}"),
            DatabaseTarget::Postgres(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                write!(f, "{scheme}://…@{host}")
            }
        }
    }
}

impl fmt::Display for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("a database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("a migration failed: {0}")]
    Migration(String),
}

impl StorageError {
    /// A deadlock or serialisation failure between writers: nobody's fault, worth trying again.
    pub fn is_contention(&self) -> bool {
        match self {
            StorageError::Query(diesel::result::Error::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    diesel::result::DatabaseErrorKind::SerializationFailure
                ) || info.message().contains("deadlock detected")
            }
            _ => false,
        }
    }

    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            StorageError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

impl StorageError {
    /// A clash between concurrent transactions that running the whole transaction again resolves:
    /// PostgreSQL's serialization failure (40001) or deadlock (40P01). Diesel names only the
    /// first; a deadlock is recognised by PostgreSQL's message, which is not translated unless
    /// the server's `lc_messages` is changed from its default.
    pub fn is_retryable_conflict(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StorageError::Query(Error::DatabaseError(
                DatabaseErrorKind::SerializationFailure,
                _,
            )) => true,
            StorageError::Query(Error::DatabaseError(DatabaseErrorKind::Unknown, info)) => {
                info.message().contains("deadlock detected")
            }
            _ => false,
        }
    }

    /// A statement PostgreSQL cancelled because it waited longer than the transaction's
    /// `lock_timeout` or `statement_timeout` (see [`DbConnection::bound_waits`]).
    /// The connection to the database was lost (libpq reports it closed, or cannot send).
    pub fn is_closed_connection(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        matches!(
            self,
            StorageError::Query(Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _
            ))
        )
    }

    pub fn is_timeout(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StorageError::Query(Error::DatabaseError(DatabaseErrorKind::Unknown, info)) => {
                let message = info.message();
                message.contains("lock timeout") || message.contains("statement timeout")
            }
            _ => false,
        }
    }
}

impl From<diesel::r2d2::PoolError> for StorageError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        StorageError::Unavailable(error.to_string())
    }
}

impl From<diesel::ConnectionError> for StorageError {
    fn from(error: diesel::ConnectionError) -> Self {
        StorageError::Unavailable(error.to_string())
    }
}

/// The connection pool. Cheap to clone; every clone shares the same connections.
#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager>,
    backend: Backend,
}

impl Db {
    /// Opens the pool without touching the schema. A database that does not answer fails here
    /// within a few seconds instead of hanging the start.
    pub fn connect(target: &DatabaseTarget, pool_size: u32) -> Result<Db, StorageError> {
        let pool = Pool::builder()
            .max_size(pool_size)
            // No idle minimum: topping it up runs on a pool thread, and a short command (`migrate`,
            // `token list`) that exits while that thread is inside libpq can die of a signal.
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(5))
            // No `SELECT 1` before every checkout (a round trip per request on PostgreSQL): a
            // connection found dead while in use is dropped instead (`with`, `has_broken`), and
            // the next checkout opens a new one.
            .test_on_check_out(false)
            .build(ConnectionManager::new(target.clone()))?;
        Ok(Db {
            pool,
            backend: target.backend(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A connection for code that is already off the async executor (the CLI, blocking workers).
    pub fn blocking(&self) -> Result<PooledConnection<ConnectionManager>, StorageError> {
        Ok(self.pool.get()?)
    }

    /// Runs `work` with a pooled connection, on the calling thread. A connection that turned out
    /// closed (the server restarted, or an operator ended the session) is not returned to the pool.
    pub fn with<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut conn = self.pool.get()?;
        let outcome = work(&mut conn);
        if outcome
            .as_ref()
            .is_err_and(StorageError::is_closed_connection)
        {
            conn.mark_broken();
        }
        outcome
    }

    /// Runs `work` with a pooled connection on tokio's blocking pool.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.with(work))
            .await
            .map_err(|e| StorageError::Unavailable(format!("the database task stopped: {e}")))?
    }

    pub fn migrate(&self) -> Result<Vec<String>, StorageError> {
        migrate::run_pending(&mut *self.blocking()?)
    }

    /// Ready means the database answers, runs the schema this binary expects, and takes writes
    /// (a SQLite file locked by another process or on a read-only mount still answers reads, but
    /// every webhook would fail).
    pub async fn check_ready(&self) -> Result<(), StorageError> {
        self.run(|conn| {
            if migrate::has_pending(conn)? {
                return Err(StorageError::Migration("migrations are pending".into()));
            }
            conn.probe_write().map_err(|e| {
                StorageError::Unavailable(format!("the database takes no writes: {e}"))
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_url_means_the_sqlite_file_in_the_working_directory() {
        assert_eq!(
            DatabaseTarget::parse(None),
            Ok(DatabaseTarget::Sqlite("billmirror.db".into()))
        );
        assert_eq!(
            DatabaseTarget::parse(Some("  ")),
            Ok(DatabaseTarget::Sqlite("billmirror.db".into()))
        );
    }

    #[test]
    fn sqlite_and_postgres_schemes_pick_their_backend() {
        assert_eq!(
            DatabaseTarget::parse(Some("sqlite://data/x.db"))
                .unwrap()
                .backend(),
            Backend::Sqlite
        );
        assert_eq!(
            DatabaseTarget::parse(Some("postgresql://u@h/db"))
                .unwrap()
                .backend(),
            Backend::Postgres
        );
    }

    #[test]
    fn unknown_schemes_and_bare_paths_are_refused_with_a_hint() {
        let error = DatabaseTarget::parse(Some("mysql://root@localhost/x")).unwrap_err();
        assert!(
            error.contains("`mysql`") && error.contains("postgres://"),
            "{error}"
        );
        assert!(DatabaseTarget::parse(Some("billmirror.db")).is_err());
        assert!(DatabaseTarget::parse(Some("sqlite://")).is_err());
    }

    #[test]
    fn a_postgres_password_never_shows_in_debug_output() {
        let target =
            DatabaseTarget::parse(Some("postgres://app:hunter2@db.internal:5432/ledger")).unwrap();
        let shown = format!("{target:?} {target}");
        assert!(
            !shown.contains("hunter2") && shown.contains("db.internal:5432/ledger"),
            "{shown}"
        );
    }
}
