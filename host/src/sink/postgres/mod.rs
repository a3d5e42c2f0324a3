//! The PostgreSQL sink: a table with the key column and one column per
//! output field, created (and widened when new fields appear) by weir, and
//! rows upserted in one statement per batch. Identifiers are quoted; values
//! are always bound, never pasted into SQL.

use std::collections::HashMap;

use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::error::SinkError;
use super::output::{Prepared, Records, Rows, Shape, Sink};
use super::schema::RowSchema;
use crate::plugin::Value;

mod statement;

use self::statement::{bind_rows, others, upsert_statement};

/// The PostgreSQL sink failed.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// Connecting, or a statement, failed.
    #[error("PostgreSQL, table `{table}`: {source}")]
    Database {
        /// The table.
        table: String,
        /// The driver's error.
        source: sqlx::Error,
    },
}

/// Connections to the database; a large flush is written as this many
/// statements at once.
const CONNECTIONS: usize = 4;

/// Fewer rows than this are not worth a statement of their own.
const MIN_ROWS_PER_STATEMENT: usize = 256;

/// More rows than this go as further statements, which wait for a
/// connection: a flush after a long stall is not one statement racing the
/// statement timeout.
const MAX_ROWS_PER_STATEMENT: usize = 4096;

/// Upserts rows into one table.
pub struct PostgresSink {
    pool: PgPool,
    /// The table's columns as of the last migration.
    columns: std::sync::Mutex<Vec<String>>,
    table: String,
    key_column: String,
    schema: RowSchema,
    upsert: String,
    /// The upsert statement of each shape prepared.
    statements: Prepared<Arc<str>>,
}

/// `"name"`, with embedded quotes doubled: safe for any identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PostgresSink {
    /// Connects to `database_at` for `table`, whose rows are keyed by
    /// `key_column` and shaped by `schema`.
    pub async fn connect(
        database_at: &crate::connect::Database,
        table: &str,
        key_column: &str,
        schema: RowSchema,
    ) -> Result<Self, PostgresError> {
        let database = |source| PostgresError::Database {
            table: table.to_owned(),
            source,
        };
        // A statement that waits (a locked table, a stuck server) gives up
        // after 30 s and is retried, so a stop is never held up for longer.
        let options = database_at
            .options()
            .options([("statement_timeout", "30s")]);
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS as u32)
            .connect_with(options)
            .await
            .map_err(database)?;
        let upsert = upsert_statement(table, key_column, &schema, &[]);
        Ok(Self {
            pool,
            columns: std::sync::Mutex::default(),
            table: table.to_owned(),
            key_column: key_column.to_owned(),
            schema,
            upsert,
            statements: Prepared::default(),
        })
    }

    /// Creates the table if it is missing and adds the columns it lacks (a
    /// new plugin version may add output fields). Safe to run every start.
    pub async fn migrate(&self) -> Result<(), PostgresError> {
        self.migrate_to(&self.schema).await
    }

    /// [`Self::migrate`] for `schema` (a new plugin version's rows): adds the
    /// columns it has and the table lacks.
    pub async fn migrate_to(&self, schema: &RowSchema) -> Result<(), PostgresError> {
        let mut transaction = self.pool.begin().await.map_err(|e| self.error(e))?;
        let all = self.migrate_in(&mut transaction, schema).await?;
        *self.columns.lock().expect("not poisoned") = all;
        transaction
            .commit()
            .await
            .map_err(|source| self.error(source))?;
        Ok(())
    }

    /// [`Self::migrate_to`] in `transaction`: the table's columns after it.
    async fn migrate_in(
        &self,
        transaction: &mut sqlx::PgConnection,
        schema: &RowSchema,
    ) -> Result<Vec<String>, PostgresError> {
        let table = quote_ident(&self.table);
        // Several weir processes may start at once: they migrate in turn
        // (`IF NOT EXISTS` is not safe against itself running concurrently).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('weir.table.' || $1))")
            .bind(&self.table)
            .execute(&mut *transaction)
            .await
            .map_err(|source| self.error(source))?;
        let mut columns = vec![format!(
            "{} TEXT PRIMARY KEY",
            quote_ident(&self.key_column)
        )];
        columns.extend(
            schema
                .columns
                .iter()
                .map(|c| format!("{} {}", quote_ident(&c.name), c.kind.postgres())),
        );
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {table} ({})",
            columns.join(", ")
        ))
        .execute(&mut *transaction)
        .await
        .map_err(|source| self.error(source))?;
        // Columns a newer plugin version added: only the missing ones, so a
        // restart neither alters the table nor fills the log with notices.
        let existing: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(&self.table)
        .fetch_all(&mut *transaction)
        .await
        .map_err(|source| self.error(source))?;
        let mut all = existing.clone();
        all.extend(
            schema
                .columns
                .iter()
                .filter(|c| !existing.contains(&c.name))
                .map(|c| c.name.clone()),
        );
        for column in &schema.columns {
            if existing.contains(&column.name) {
                continue;
            }
            sqlx::query(&format!(
                "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {} {}",
                quote_ident(&column.name),
                column.kind.postgres()
            ))
            .execute(&mut *transaction)
            .await
            .map_err(|source| self.error(source))?;
            tracing::debug!(table = %self.table, column = %column.name, "Adding a column.");
        }
        Ok(all)
    }

    /// Why rows of `schema` could not be written to the table, if they
    /// could not: an output field named like the key column, a column the
    /// table has with another type, a NOT NULL column the rows would clear.
    /// Then, in a transaction rolled back at the end (PostgreSQL's DDL is
    /// transactional), the table gets the columns the rows need and their
    /// upsert statement runs without rows: whatever else PostgreSQL would
    /// refuse is found now, and nothing is left changed.
    pub async fn refusal(&self, schema: &RowSchema) -> Result<Option<String>, PostgresError> {
        if let Some(column) = schema.columns.iter().find(|c| c.name == self.key_column) {
            return Ok(Some(format!(
                "its output field `{}` is named like the key column of table `{}`",
                column.name, self.table
            )));
        }
        let mut transaction = self.pool.begin().await.map_err(|e| self.error(e))?;
        // A table someone holds locked fails the check rather than hang it.
        sqlx::query("SET LOCAL lock_timeout = '5s'")
            .execute(&mut *transaction)
            .await
            .map_err(|source| self.error(source))?;
        let existing: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text, is_nullable = 'YES' \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(&self.table)
        .fetch_all(&mut *transaction)
        .await
        .map_err(|source| self.error(source))?;
        for (name, kind, nullable) in &existing {
            match schema.columns.iter().find(|c| c.name == *name) {
                Some(column) if !column.kind.postgres().eq_ignore_ascii_case(kind) => {
                    return Ok(Some(format!(
                        "column `{name}` of table `{}` is {kind}; the rows would make it {}",
                        self.table,
                        column.kind.postgres()
                    )));
                }
                None if !nullable && *name != self.key_column => {
                    return Ok(Some(format!(
                        "column `{name}` of table `{}` is NOT NULL, and the rows, which lack \
                         it, would clear it",
                        self.table
                    )));
                }
                _ => {}
            }
        }
        let columns = self.migrate_in(&mut transaction, schema).await?;
        let others = others(&columns, &self.key_column, schema);
        let statement = upsert_statement(&self.table, &self.key_column, schema, &others);
        let dry_run = bind_rows(&statement, &[], &[], schema)
            .execute(&mut *transaction)
            .await;
        drop(transaction); // rolled back
        match dry_run {
            Ok(_) => Ok(None),
            Err(error) if refuses_data(&error, true) => Ok(Some(format!(
                "table `{}` refuses the rows' upsert: {error}",
                self.table
            ))),
            Err(source) => Err(self.error(source)),
        }
    }

    /// Upserts `rows` (key, row): a statement per connection (256 to 4 096
    /// rows each; more statements wait for a connection), run concurrently.
    /// A key that appears more than once keeps its last row.
    /// Returns the number of rows written.
    pub async fn upsert(&self, rows: &[(String, Vec<Value>)]) -> Result<u64, PostgresError> {
        self.upsert_as(rows, &self.schema, &self.upsert).await
    }

    /// [`Self::upsert`] of rows shaped by `schema` (a plugin version's),
    /// whose statement is `statement` ([`Self::statement`]).
    pub async fn upsert_as(
        &self,
        rows: &[(String, Vec<Value>)],
        schema: &RowSchema,
        statement: &str,
    ) -> Result<u64, PostgresError> {
        // The last row of each key wins; PostgreSQL refuses to update one row
        // twice in a statement.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(rows.len());
        for (index, (key, _)) in rows.iter().enumerate() {
            last.insert(key, index);
        }
        let mut chosen: Vec<usize> = last.into_values().collect();
        chosen.sort_unstable();
        // Large flushes go as a few statements at once, on separate
        // connections: their keys are distinct, so they never wait on each
        // other. Never more statements than connections: one more would
        // wait for a connection and write its rows a whole statement later.
        let per_statement = chosen
            .len()
            .div_ceil(CONNECTIONS)
            .clamp(MIN_ROWS_PER_STATEMENT, MAX_ROWS_PER_STATEMENT);
        let statements = chosen
            .chunks(per_statement)
            .map(|chunk| self.upsert_rows(rows, chunk, schema, statement));
        let written = futures::future::try_join_all(statements).await?;
        Ok(written.into_iter().sum())
    }

    /// Upserts `rows[i]` for each `i` of `chosen` (distinct keys) in one statement.
    async fn upsert_rows(
        &self,
        rows: &[(String, Vec<Value>)],
        chosen: &[usize],
        schema: &RowSchema,
        statement: &str,
    ) -> Result<u64, PostgresError> {
        let result = bind_rows(statement, rows, chosen, schema)
            .execute(&self.pool)
            .await
            .map_err(|source| self.error(source))?;
        Ok(result.rows_affected())
    }

    /// The upsert statement of rows shaped by `schema`: it also clears the
    /// table's columns `schema` lacks (as of the last migration).
    pub fn statement(&self, schema: &RowSchema) -> String {
        let columns = self.columns.lock().expect("not poisoned");
        let others = others(&columns, &self.key_column, schema);
        upsert_statement(&self.table, &self.key_column, schema, &others)
    }

    /// The connection pool (for readers in tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn error(&self, source: sqlx::Error) -> PostgresError {
        PostgresError::Database {
            table: self.table.clone(),
            source,
        }
    }
}

/// Whether PostgreSQL refused the data itself: SQLSTATE classes 22 data
/// exception, 23 integrity, 54 program limit (such as an index row too
/// large), and, with `statement`, 42 (a statement that does not fit the
/// table).
fn refuses_data(error: &sqlx::Error, statement: bool) -> bool {
    let classes: &[&str] = if statement {
        &["22", "23", "42", "54"]
    } else {
        &["22", "23", "54"]
    };
    error
        .as_database_error()
        .and_then(|error| error.code())
        .is_some_and(|code| classes.iter().any(|class| code.starts_with(class)))
}

impl PostgresError {
    /// What delivery should do about it: the database refusing the data
    /// (SQLSTATE classes 22 data exception, 23 integrity, 54 program limit,
    /// such as an index row too large) is data; the rest is external.
    fn classify(self, sink: &str) -> SinkError {
        let Self::Database { table, source } = self;
        let data = refuses_data(&source, false);
        let source = format!("table `{table}`: {source}").into();
        let sink = sink.to_owned();
        if data {
            SinkError::Data { sink, source }
        } else {
            SinkError::External { sink, source }
        }
    }
}

impl Sink for PostgresSink {
    fn name(&self) -> &str {
        "postgres"
    }

    fn count(&self, records: &Records) -> usize {
        records.row_count()
    }

    fn write<'a>(&'a self, records: &'a Records) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            for Rows { shape, rows, .. } in &records.rows {
                let statement = self.statements.get(self.name(), shape)?;
                self.upsert_as(rows, &shape.schema, &statement)
                    .await
                    .map_err(|error| error.classify(self.name()))?;
            }
            Ok(())
        })
    }

    fn check<'a>(
        &'a self,
        schema: &'a RowSchema,
    ) -> BoxFuture<'a, Result<Option<String>, SinkError>> {
        Box::pin(async move {
            self.refusal(schema)
                .await
                .map_err(|error| error.classify(self.name()))
        })
    }

    /// Adds the columns `shape` has and the table lacks, and makes its
    /// statement for the table as it is now (which also clears the
    /// columns it lacks: a later version may have added them).
    fn prepare<'a>(&'a self, shape: &'a Shape) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.migrate_to(&shape.schema)
                .await
                .map_err(|error| error.classify(self.name()))?;
            let statement: Arc<str> = self.statement(&shape.schema).into();
            self.statements.insert(shape, statement);
            Ok(())
        })
    }
}
