//! The two migration trees describe one schema, `schema.rs` describes it too, and every
//! `down.sql` really undoes its `up.sql`.

use std::collections::BTreeMap;

use billmirror::storage::{migrate, DbConnection};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};

use crate::on_both_backends;
use crate::support::{Backend, TestDb};

/// table → column → (portable type, nullable)
type Shape = BTreeMap<String, BTreeMap<String, (String, bool)>>;

#[derive(QueryableByName)]
struct ColumnInfo {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Bool)]
    nullable: bool,
}

fn portable_type(declared: &str) -> String {
    match declared.to_ascii_lowercase().as_str() {
        "timestamp without time zone" => "timestamp".to_owned(),
        other => other.to_owned(),
    }
}

fn shape_of(conn: &mut DbConnection) -> Shape {
    let columns: Vec<ColumnInfo> = match conn {
        DbConnection::Sqlite(c) => diesel::sql_query(
            "SELECT m.name AS table_name, p.name AS column_name, p.type AS data_type, \
                    (p.\"notnull\" = 0) AS nullable \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '__diesel_schema_migrations'",
        )
        .load(c)
        .unwrap(),
        DbConnection::Postgres(c) => diesel::sql_query(
            "SELECT table_name::text AS table_name, column_name::text AS column_name, \
                    data_type::text AS data_type, (is_nullable = 'YES') AS nullable \
             FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
        )
        .load(c)
        .unwrap(),
    };
    let mut shape = Shape::new();
    for c in columns {
        shape
            .entry(c.table_name)
            .or_default()
            .insert(c.column_name, (portable_type(&c.data_type), c.nullable));
    }
    shape
}

/// Reads `src/storage/schema.rs` as the same shape, so a column added to a migration but not to
/// the schema (or the other way round) fails a test instead of a query in production.
fn shape_of_schema_rs() -> Shape {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/storage/schema.rs"
    ))
    .unwrap();
    let mut shape = Shape::new();
    let mut table = None;
    for line in text.lines().map(str::trim) {
        if let Some((name, _)) = line.split_once(" (").filter(|_| line.ends_with('{')) {
            table = Some(name.to_owned());
        } else if line == "}" {
            table = None;
        } else if let (Some(table), Some((column, ty))) = (&table, line.split_once(" -> ")) {
            let ty = ty.trim_end_matches(',');
            let (ty, nullable) = match ty.strip_prefix("Nullable<") {
                Some(inner) => (inner.trim_end_matches('>'), true),
                None => (ty, false),
            };
            let portable = match ty {
                "Text" => "text",
                "BigInt" => "bigint",
                "Integer" => "integer",
                "Bool" => "boolean",
                "Timestamp" => "timestamp",
                other => panic!("schema.rs uses {other}, which is not in the portable subset"),
            };
            shape
                .entry(table.clone())
                .or_default()
                .insert(column.to_owned(), (portable.to_owned(), nullable));
        }
    }
    shape
}

#[test]
fn both_migration_trees_and_schema_rs_describe_the_same_tables_and_columns() {
    let sqlite = TestDb::create(Backend::Sqlite);
    let postgres = TestDb::create(Backend::Postgres);
    let sqlite_shape = shape_of(&mut sqlite.open_migrated().blocking().unwrap());
    let postgres_shape = shape_of(&mut postgres.open_migrated().blocking().unwrap());
    assert!(
        sqlite_shape.len() >= 18,
        "the ledger has its tables: {:?}",
        sqlite_shape.keys()
    );
    assert_eq!(
        sqlite_shape, postgres_shape,
        "SQLite (left) and PostgreSQL (right) migrations differ"
    );
    assert_eq!(
        shape_of_schema_rs(),
        sqlite_shape,
        "schema.rs (left) and the migrations (right) differ"
    );
}

on_both_backends! {
    async fn migrations_go_up_down_and_up_again(backend: Backend) {
        let test_db = TestDb::create(backend);
        let db = test_db.open_migrated();
        let mut conn = db.blocking().unwrap();
        let first = shape_of(&mut conn);
        assert!(first.contains_key("webhook_events"));

        migrate::revert_all(&mut conn).unwrap();
        assert!(shape_of(&mut conn).is_empty(), "down.sql left tables behind: {:?}", shape_of(&mut conn).keys());
        assert!(migrate::has_pending(&mut conn).unwrap());

        let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).unwrap().count();
        assert_eq!(migrate::run_pending(&mut conn).unwrap().len(), migrations);
        assert_eq!(shape_of(&mut conn), first);
        assert!(!migrate::has_pending(&mut conn).unwrap());
    }

    async fn migrating_twice_changes_nothing(backend: Backend) {
        let test_db = TestDb::create(backend);
        let db = test_db.open_migrated();
        assert!(db.migrate().unwrap().is_empty());
    }

    async fn an_sqlite_write_transaction_rolls_back_on_error(backend: Backend) {
        use billmirror::storage::schema::audit_log;
        let test_db = TestDb::create(backend);
        let db = test_db.open_migrated();
        let mut conn = db.blocking().unwrap();
        let result: Result<(), billmirror::storage::StorageError> = conn.write_transaction(|conn| {
            billmirror::storage::tokens::audit(conn, "test", "probe", "x", serde_json::json!({}))?;
            Err(diesel::result::Error::RollbackTransaction.into())
        });
        assert!(result.is_err());
        let count: i64 = audit_log::table.count().get_result(&mut *conn).unwrap();
        assert_eq!(count, 0, "the audit entry written before the error was rolled back");
    }
}

/// The pool no longer runs `SELECT 1` before every checkout. A pooled connection the server ended
/// (a restart, an operator's `pg_terminate_backend`) may fail the one request that finds it dead,
/// but is then dropped and replaced: it must not fail every later request. PostgreSQL only: a
/// SQLite connection is a file handle that no server can end.
#[tokio::test]
async fn a_connection_the_server_ended_fails_once_and_is_replaced() {
    let test_db = TestDb::create(Backend::Postgres);
    let db = test_db.open_migrated();
    {
        // Three connections open in the pool, all idle afterwards.
        let held: Vec<_> = (0..3).map(|_| db.blocking().unwrap()).collect();
        drop(held);
    }
    assert!(
        test_db.end_sessions() >= 3,
        "the pool's sessions were ended"
    );
    let mut failures = 0;
    for _ in 0..10 {
        if db
            .run(billmirror::storage::events::count_pending)
            .await
            .is_err()
        {
            failures += 1;
        }
    }
    assert!(
        failures <= 3,
        "{failures} of 10 requests failed: dead connections were reused"
    );
    assert_eq!(
        db.run(billmirror::storage::events::count_pending)
            .await
            .unwrap(),
        0
    );
}
