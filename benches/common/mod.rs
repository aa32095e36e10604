//! What every bench needs: its settings from the environment and a fresh database per backend.
//! Each bench is its own crate, so this file is included with `#[path]` and not all of it is used
//! by each.

#![allow(dead_code)]

use billmirror::storage::DatabaseTarget;
use diesel::connection::SimpleConnection;
use diesel::Connection;

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A comma-separated list from the environment (`BENCH_BACKENDS=postgres`), else `default`.
pub fn list_from_env(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect()
}

/// A number from the environment, else `default`.
pub fn number_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A new database named after `what`: on the shared PostgreSQL server, or a SQLite file in a
/// temporary directory that lives as long as the returned guard.
pub fn fresh_database(backend: &str, what: &str) -> (DatabaseTarget, Option<tempfile::TempDir>) {
    if backend == "sqlite" {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{what}.db")).display().to_string();
        (DatabaseTarget::Sqlite(path), Some(dir))
    } else {
        let name = format!("billmirror_bench_{what}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = diesel::PgConnection::establish(ADMIN_URL).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        (
            DatabaseTarget::Postgres(format!(
                "postgres://postgres@127.0.0.1:5432/{name}?sslmode=disable"
            )),
            None,
        )
    }
}

/// Drops a PostgreSQL database made by [`fresh_database`] (a SQLite file goes with its guard).
/// Best effort: a bench that measured should not fail on its clean-up.
pub fn drop_database(target: &DatabaseTarget) {
    if let DatabaseTarget::Postgres(url) = target {
        let name = url
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .split('?')
            .next()
            .unwrap_or_default();
        if let Ok(mut admin) = diesel::PgConnection::establish(ADMIN_URL) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}
