//! Throwaway databases: a SQLite file in a temporary directory, or a PostgreSQL database with a
//! unique name on the server at `TEST_DATABASE_URL`, dropped when the test ends.

use billmirror::storage::{DatabaseTarget, Db};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

/// TLS off: on loopback it buys nothing, and a test process that exits while a pool thread is
/// inside OpenSSL can die of a signal after every test passed.
pub const DEFAULT_TEST_DATABASE_URL: &str =
    "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    target: DatabaseTarget,
    /// The SQLite file's directory, removed on drop.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL server URL and the database made on it.
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub fn create(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir
                    .path()
                    .join("billmirror.db")
                    .to_string_lossy()
                    .into_owned();
                TestDb {
                    target: DatabaseTarget::Sqlite(path),
                    _dir: Some(dir),
                    postgres: None,
                }
            }
            Backend::Postgres => {
                let server = server_url();
                let name = format!("billmirror_test_{}", uuid::Uuid::new_v4().simple());
                admin_connection(&server)
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .unwrap();
                let target = DatabaseTarget::Postgres(with_database(&server, &name));
                TestDb {
                    target,
                    _dir: None,
                    postgres: Some((server, name)),
                }
            }
        }
    }

    pub fn url(&self) -> String {
        match &self.target {
            DatabaseTarget::Sqlite(path) => format!("sqlite://{path}"),
            DatabaseTarget::Postgres(url) => url.clone(),
        }
    }

    pub fn open(&self) -> Db {
        Db::connect(&self.target, 4).unwrap()
    }

    pub fn open_migrated(&self) -> Db {
        let db = self.open();
        db.migrate().unwrap();
        db
    }

    /// Ends every session on the PostgreSQL database, as a server restart or an operator's
    /// `pg_terminate_backend` would; returns how many it ended.
    pub fn end_sessions(&self) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Ended {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            ended: i64,
        }
        use diesel::RunQueryDsl;
        let (server, name) = self.postgres.as_ref().expect("a PostgreSQL database");
        let ended: Vec<Ended> = diesel::sql_query(
            "SELECT count(pg_terminate_backend(pid)) AS ended FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind::<diesel::sql_types::Text, _>(name)
        .load(&mut admin_connection(server))
        .unwrap();
        ended[0].ended
    }

    /// Removes the PostgreSQL database under running connections, as an outage would.
    pub fn drop_now(&self) {
        if let Some((server, name)) = &self.postgres {
            admin_connection(server)
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .unwrap();
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = &self.postgres {
            // Best effort: a failure here must not hide the test's own result.
            if let Ok(mut conn) = PgConnection::establish(server) {
                let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned())
}

fn admin_connection(server: &str) -> PgConnection {
    PgConnection::establish(server).unwrap_or_else(|e| {
        panic!(
            "\n\nThe PostgreSQL tests cannot reach {server}: {e}\n\
             Every storage test runs on SQLite and PostgreSQL; none is skipped.\n\
             Start PostgreSQL there, or point TEST_DATABASE_URL at a server where this user may\n\
             create databases, e.g. TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres make test\n"
        )
    })
}

/// The same server URL naming another database (keeps user, host, port and query).
fn with_database(server: &str, name: &str) -> String {
    let (scheme, rest) = server
        .split_once("://")
        .expect("TEST_DATABASE_URL has a scheme");
    let (rest, query) = rest
        .split_once('?')
        .map_or((rest, None), |(r, q)| (r, Some(q)));
    let authority = rest.split('/').next().unwrap_or(rest);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{scheme}://{authority}/{name}{query}")
}
