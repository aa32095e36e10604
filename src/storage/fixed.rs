//! Statements prepared once per connection and reused, for the apply worker's and the inbox's
//! hot paths.
//!
//! Diesel keeps a prepared statement only when it can prove the statement's text never changes.
//! It cannot for every `UPDATE`, every `ON CONFLICT … DO UPDATE`, every `sql_query`, and every
//! `INSERT` of an `Option` field that may stand for `DEFAULT`: those are built as text and
//! prepared again on every run. A statement run on [`super::DbConnection`] itself (diesel's
//! multi-backend connection) also has its text rebuilt on every run, cached or not. On the apply
//! path that was most of the CPU spent per event besides parsing.
//!
//! [`fixed!`](crate::fixed) marks a statement whose text, at that place in the code, is always the
//! same; diesel then prepares it once per connection. Run it on the concrete connection
//! ([`on_backend!`](crate::on_backend)). Never wrap a statement whose text depends on its values:
//! `eq_any` on SQLite (one `?` per value), a batch `INSERT` of many rows, or an `Insertable`
//! without `treat_none_as_default_value = false`.

use std::marker::PhantomData;
use std::sync::OnceLock;

use diesel::backend::Backend;
// Tells the pass that collects a statement's values from the ones that build or vet its text;
// diesel's own multi-backend connection uses it the same way. Pinned by Cargo.lock.
use diesel::internal::derives::multiconnection::AstPassHelper;
use diesel::query_builder::{AstPass, Query, QueryBuilder, QueryFragment, QueryId};
use diesel::{QueryResult, RunQueryDsl};

/// `query`, promised to have the same text every time it runs at the place `Site` names. The
/// text is built once, from `query`, and kept in `sql` (a static of that place).
#[derive(Debug, Clone, Copy)]
pub struct Fixed<Site: 'static, Q> {
    query: Q,
    sql: &'static OnceLock<String>,
    site: PhantomData<Site>,
}

impl<Site, Q> Fixed<Site, Q> {
    pub fn new(query: Q, sql: &'static OnceLock<String>) -> Self {
        Fixed {
            query,
            sql,
            site: PhantomData,
        }
    }
}

/// Diesel caches a statement by its query id: the call site, and the query's own type where it has
/// one.
impl<Site: 'static, Q: QueryId> QueryId for Fixed<Site, Q> {
    type QueryId = (Site, <Q as QueryId>::QueryId);
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB, Site, Q> QueryFragment<DB> for Fixed<Site, Q>
where
    DB: Backend + Default,
    DB::QueryBuilder: Default,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        // The values come from the statement itself, every time.
        if pass.bind_collector().is_some() || pass.debug_binds().is_some() {
            return self.query.walk_ast(pass);
        }
        // Building the text, or asking whether it may be kept: the kept text, which (unlike the
        // statement's own walk) never says "do not keep me".
        let sql = match self.sql.get() {
            Some(sql) => sql,
            None => {
                let mut builder = DB::QueryBuilder::default();
                self.query.to_sql(&mut builder, &DB::default())?;
                self.sql.get_or_init(|| builder.finish())
            }
        };
        pass.push_sql(sql);
        Ok(())
    }
}

impl<Site, Q: Query> Query for Fixed<Site, Q> {
    type SqlType = Q::SqlType;
}

impl<Conn, Site, Q> RunQueryDsl<Conn> for Fixed<Site, Q> {}

/// Wraps a statement whose text is the same every time this line runs (see the module's docs).
/// Not for a generic function: its `Site` and kept text would be shared by every instance.
#[macro_export]
macro_rules! fixed {
    ($query:expr) => {{
        enum Site {}
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        $crate::storage::fixed::Fixed::<Site, _>::new($query, &SQL)
    }};
}

/// Runs `$body` with `$c` bound to the concrete diesel connection inside a
/// [`DbConnection`](super::DbConnection), so the statement is built for its backend alone.
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::storage::DbConnection::Postgres($c) => $body,
            $crate::storage::DbConnection::Sqlite($c) => $body,
        }
    };
}
