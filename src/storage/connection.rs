//! One connection type for both backends, the pool that hands them out, and the few places where
//! SQLite and PostgreSQL must be told apart.

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;

use super::{DatabaseTarget, StorageError};

/// Inside diesel's `transaction`, which wants an error it can make from its own: either the
/// caller's error or the database's.
enum Failed<E> {
    Body(E),
    Database(diesel::result::Error),
}

impl<E> From<diesel::result::Error> for Failed<E> {
    fn from(error: diesel::result::Error) -> Self {
        Failed::Database(error)
    }
}

impl<E: From<StorageError>> Failed<E> {
    fn into_error(self) -> E {
        match self {
            Failed::Body(e) => e,
            Failed::Database(e) => StorageError::from(e).into(),
        }
    }
}

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

impl DbConnection {
    /// Marks the connection unusable, so the pool drops it instead of handing it out again.
    pub fn mark_broken(&mut self) {
        fn mark<C>(conn: &mut C)
        where
            C: diesel::Connection<TransactionManager = AnsiTransactionManager>,
        {
            AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
        }
        match self {
            DbConnection::Postgres(c) => mark(c),
            DbConnection::Sqlite(c) => mark(c),
        }
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self, DbConnection::Sqlite(_))
    }

    /// Runs `body` in a transaction that holds the write lock from its first statement.
    ///
    /// SQLite's default `BEGIN DEFERRED` takes the write lock at the first write; when another
    /// connection committed after this one's first read, SQLite answers `SQLITE_BUSY` at once,
    /// without waiting for `busy_timeout`. `BEGIN IMMEDIATE` waits instead. PostgreSQL needs no such
    /// care: row locks and `ON CONFLICT` do that job there.
    pub fn write_transaction<T, E>(
        &mut self,
        body: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StorageError>,
    {
        let database = |e: diesel::result::Error| E::from(StorageError::from(e));
        if let DbConnection::Sqlite(inner) = self {
            let _writer = SqliteWriter::acquire();
            AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")
                .map_err(database)?;
            let outcome = body(self);
            let DbConnection::Sqlite(inner) = self else {
                unreachable!("the variant cannot change inside a transaction")
            };
            match outcome {
                Ok(value) => {
                    AnsiTransactionManager::commit_transaction(inner).map_err(database)?;
                    Ok(value)
                }
                Err(error) => {
                    AnsiTransactionManager::rollback_transaction(inner).map_err(database)?;
                    Err(error)
                }
            }
        } else {
            self.transaction(|conn| body(conn).map_err(Failed::Body))
                .map_err(Failed::into_error)
        }
    }
}

impl DbConnection {
    /// Runs `body` in a savepoint (a nested transaction) of the transaction in progress: an error
    /// rolls back what `body` wrote and nothing else.
    pub fn savepoint<T, E>(
        &mut self,
        body: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StorageError>,
    {
        self.transaction(|conn| body(conn).map_err(Failed::Body))
            .map_err(Failed::into_error)
    }

    /// Bounds how long the current transaction's statements may wait for locks and run, so a
    /// table locked by a migration or an operator turns into a prompt error instead of a request
    /// that waits without limit. PostgreSQL only (`SET LOCAL` ends with the transaction); SQLite's
    /// waits are already bounded by its `busy_timeout`.
    pub fn bound_waits(
        &mut self,
        lock: std::time::Duration,
        statement: std::time::Duration,
    ) -> diesel::QueryResult<()> {
        if self.is_sqlite() {
            return Ok(());
        }
        self.batch_execute(&format!(
            "SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}",
            lock.as_millis(),
            statement.as_millis()
        ))
    }

    /// Checks that the database takes writes without writing anything. On SQLite `BEGIN
    /// IMMEDIATE` asks for the write lock (a read-only file or another process holding the lock
    /// fails it), waiting at most a second instead of the pool's usual ten. PostgreSQL refuses
    /// writes only on a standby, which `pg_is_in_recovery()` tells.
    pub fn probe_write(&mut self) -> diesel::QueryResult<()> {
        match self {
            DbConnection::Sqlite(c) => {
                c.batch_execute("PRAGMA busy_timeout = 1000")?;
                let probed = c.batch_execute("BEGIN IMMEDIATE; ROLLBACK");
                c.batch_execute("PRAGMA busy_timeout = 10000")?;
                probed
            }
            DbConnection::Postgres(c) => {
                use diesel::RunQueryDsl;
                let standby: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
                    "pg_is_in_recovery()",
                ))
                .get_result(c)?;
                if standby {
                    return Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::ReadOnlyTransaction,
                        Box::new("the PostgreSQL server is a read-only standby".to_owned()),
                    ));
                }
                Ok(())
            }
        }
    }

    /// A write transaction whose commit need not reach the disk before it returns: for work that is
    /// recomputed from durably stored rows if a power cut loses it (the ledger is rebuilt from the
    /// inbox). Both backends still commit atomically and in order; only the last commits may be
    /// lost, together with the marks saying they were done, so the work is simply done again.
    pub fn relaxed_write_transaction<T, E>(
        &mut self,
        body: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StorageError>,
    {
        let database = |e: diesel::result::Error| E::from(StorageError::from(e));
        if self.is_sqlite() {
            // In WAL mode NORMAL syncs at checkpoints instead of at every commit.
            self.batch_execute("PRAGMA synchronous = NORMAL")
                .map_err(database)?;
            let outcome = self.write_transaction(body);
            self.batch_execute("PRAGMA synchronous = FULL")
                .map_err(database)?;
            outcome
        } else {
            self.write_transaction(|conn| {
                conn.batch_execute("SET LOCAL synchronous_commit = off")
                    .map_err(database)?;
                body(conn)
            })
        }
    }
}

/// Queues this process's SQLite write transactions on a mutex before they ask SQLite for its lock.
///
/// SQLite's busy handler polls with sleeps of up to 100 ms, so two connections of one process that
/// meet at the write lock wait far longer than the transaction in their way takes. A mutex hands
/// the lock over at once. It is process-wide (one per process rather than per file, which only
/// matters to tests running several SQLite files side by side) and re-entrant per thread, so a
/// write transaction opened inside another on the same thread does not wait for itself.
struct SqliteWriter(Option<std::sync::MutexGuard<'static, ()>>);

static SQLITE_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());

thread_local! {
    static HOLDS_SQLITE_WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl SqliteWriter {
    fn acquire() -> SqliteWriter {
        if HOLDS_SQLITE_WRITER.get() {
            return SqliteWriter(None);
        }
        // A panic while holding it poisons nothing we rely on: the guarded data is `()`.
        let guard = SQLITE_WRITER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        HOLDS_SQLITE_WRITER.set(true);
        SqliteWriter(Some(guard))
    }
}

impl Drop for SqliteWriter {
    fn drop(&mut self) {
        if self.0.is_some() {
            HOLDS_SQLITE_WRITER.set(false);
        }
    }
}

/// Opens connections for the pool, choosing the backend from the configured target (never by
/// trial: SQLite would accept any string as a file name).
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    target: DatabaseTarget,
}

impl ConnectionManager {
    pub fn new(target: DatabaseTarget) -> Self {
        ConnectionManager { target }
    }

    pub fn establish(&self) -> Result<DbConnection, diesel::ConnectionError> {
        match &self.target {
            DatabaseTarget::Postgres(url) => {
                PgConnection::establish(url).map(DbConnection::Postgres)
            }
            DatabaseTarget::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path)?;
                // WAL lets readers run beside the writer; FULL makes each commit survive power loss,
                // which a ledger that acknowledged a webhook owes its sender; the busy timeout makes
                // writers queue instead of failing; SQLite leaves foreign keys off unless asked.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                )
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

impl ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        self.establish().map_err(r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    /// Checked when a connection goes back to the pool, without a round trip: one marked broken
    /// (`DbConnection::mark_broken`) or left inside a transaction is dropped.
    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        diesel::r2d2::R2D2Connection::is_broken(conn)
    }
}
