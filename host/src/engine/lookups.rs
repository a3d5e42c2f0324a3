//! Lookup tables: reference data the host loads at start — rows of a
//! PostgreSQL query or of a JSON Lines file — keyed by one column and handed
//! to the stages that name them. A query table with a `refresh` is read
//! again on that schedule, its rows replaced at once ([`refresh`]): a record
//! is enriched with the rows as they were at the last refresh before its
//! batch ran.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::kafka::Connection;
use crate::pipeline::{LookupFrom, LookupPlan};
use crate::plugin::LiveTable;

mod topic;

/// Every table of a pipeline: name -> its rows (key -> a JSON object as text).
pub type Tables = HashMap<String, Arc<LiveTable>>;

/// A lookup table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// PostgreSQL did not answer or refused the query.
    #[error("lookup table `{table}`: {what}: {source}")]
    Database {
        /// The table.
        table: String,
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: sqlx::Error,
    },
    /// A row of the query is not a JSON object.
    #[error("lookup table `{table}`: a row is not a JSON object: {source}")]
    Row {
        /// The table.
        table: String,
        /// Why.
        source: serde_json::Error,
    },
    /// The file cannot be read.
    #[error("lookup table `{table}`: cannot read {}: {source}", path.display())]
    Read {
        /// The table.
        table: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A lookup topic could not be read.
    #[error("lookup table `{table}`: {message}")]
    Topic {
        /// The table.
        table: String,
        /// What went wrong.
        message: String,
    },
    /// A line of the file is not a JSON object.
    #[error("lookup table `{table}`: {}:{line}: not a JSON object: {source}", path.display())]
    Line {
        /// The table.
        table: String,
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
}

impl LookupError {
    /// True when PostgreSQL could not be reached (worth a retry).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Database {
                source: sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed,
                ..
            }
        )
    }
}

/// The tables of a pipeline, loaded, and where each topic table's reading
/// stopped (its followers go on from there).
#[derive(Debug)]
pub struct Loaded {
    /// Every table.
    pub tables: Tables,
    /// The topic tables.
    pub topics: Vec<TopicStart>,
}

/// Where a topic table's first reading stopped.
#[derive(Debug)]
pub struct TopicStart {
    /// The table.
    pub table: String,
    /// Its topic.
    pub topic: String,
    /// The offset reached on each partition.
    pub positions: topic::Positions,
}

/// Loads `lookups`: queries run on the database `at`, topics are read from
/// their start to their end on `kafka`.
pub async fn load(
    lookups: &[LookupPlan],
    at: &crate::connect::Database,
    kafka: &Connection,
) -> Result<Loaded, LookupError> {
    let mut loaded = Loaded {
        tables: Tables::new(),
        topics: Vec::new(),
    };
    let mut pool = None;
    for lookup in lookups {
        let name = lookup.name.to_string();
        let rows = match &lookup.from {
            LookupFrom::Query { sql, key } => read_query(&name, sql, key, &mut pool, at).await?,
            LookupFrom::File { path, key } => keyed(&name, key, read_file(&name, path)?),
            LookupFrom::Topic(topic) => {
                let topic = topic.to_string();
                let (kafka, table, read) = (kafka.clone(), name.clone(), topic.clone());
                let (rows, positions) =
                    tokio::task::spawn_blocking(move || topic::read(&table, &read, &kafka))
                        .await
                        .map_err(|error| LookupError::Topic {
                            table: name.clone(),
                            message: error.to_string(),
                        })??;
                loaded.topics.push(TopicStart {
                    table: name.clone(),
                    topic,
                    positions,
                });
                rows
            }
        };
        loaded.tables.insert(name, Arc::new(LiveTable::new(rows)));
    }
    if let Some(pool) = pool {
        pool.close().await;
    }
    Ok(loaded)
}

/// Keeps `loaded`'s tables fresh until `stop` is raised: follows every
/// topic table (a thread each, from where its reading stopped), and reads
/// every query table that has a `refresh` again on its schedule, replacing
/// its rows at once. A read that fails (PostgreSQL down, a query that now
/// fails) keeps the rows the table has, says so, and is tried at the next
/// tick.
pub async fn keep_fresh(
    lookups: Vec<LookupPlan>,
    loaded: Loaded,
    (at, kafka): (crate::connect::Database, Connection),
    stop: Arc<AtomicBool>,
) {
    let tables = loaded.tables;
    for TopicStart {
        table,
        topic,
        positions,
    } in loaded.topics
    {
        let Some(rows) = tables.get(&table).cloned() else {
            continue;
        };
        let (kafka, stop) = (kafka.clone(), Arc::clone(&stop));
        let spawned = std::thread::Builder::new()
            .name(format!("weir-lookup-{table}"))
            .spawn(move || topic::follow(&table, &topic, &positions, &kafka, &rows, &stop));
        if let Err(error) = spawned {
            tracing::error!("Cannot start the thread that follows a lookup topic: {error}");
        }
    }
    let mut due: Vec<Refreshed> = (lookups.into_iter())
        .filter_map(|lookup| {
            let every = lookup.refresh?;
            let LookupFrom::Query { sql, key } = lookup.from else {
                return None;
            };
            Some(Refreshed {
                table: Arc::clone(tables.get(lookup.name.as_str())?),
                name: lookup.name.to_string(),
                sql,
                key,
                every,
                next: Instant::now() + every,
            })
        })
        .collect();
    let mut pool = None;
    while !stop.load(Ordering::Relaxed) && !due.is_empty() {
        let next = due
            .iter()
            .map(|due| due.next)
            .min()
            .unwrap_or_else(Instant::now);
        // Woken at least every second to see `stop`.
        tokio::time::sleep_until(next.min(Instant::now() + Duration::from_secs(1)).into()).await;
        for Refreshed {
            name,
            sql,
            key,
            every,
            next,
            table,
        } in &mut due
        {
            if Instant::now() < *next {
                continue;
            }
            *next = Instant::now() + *every;
            let started = Instant::now();
            match read_query(name, sql, key, &mut pool, &at).await {
                Ok(rows) => {
                    let (before, after) = (table.len(), rows.len());
                    table.replace(rows);
                    tracing::debug!(
                        table = %name,
                        rows = after,
                        before,
                        took = ?started.elapsed(),
                        "Lookup table refreshed."
                    );
                }
                Err(error) => {
                    // A connection that failed is made anew next time.
                    pool = None;
                    tracing::warn!(
                        table = %name,
                        rows = table.len(),
                        "Cannot refresh the lookup table; its rows stay as they were: {error}"
                    );
                }
            }
        }
    }
}

/// A query table read again every `every`, next at `next`.
struct Refreshed {
    name: String,
    sql: String,
    key: String,
    every: Duration,
    next: Instant,
    table: Arc<LiveTable>,
}

/// The rows of query `sql`, keyed by column `key`; the query runs on
/// `pool`, connected to `at` the first time.
async fn read_query(
    name: &str,
    sql: &str,
    key: &str,
    pool: &mut Option<PgPool>,
    at: &crate::connect::Database,
) -> Result<HashMap<String, String>, LookupError> {
    let database = |what| {
        move |source| LookupError::Database {
            table: name.to_owned(),
            what,
            source,
        }
    };
    if pool.is_none() {
        *pool = Some(
            PgPoolOptions::new()
                .max_connections(1)
                .connect_with(at.options())
                .await
                .map_err(database("cannot connect to PostgreSQL"))?,
        );
    }
    let pool = pool.as_ref().expect("connected above");
    // PostgreSQL turns each row into a JSON object itself, whatever the column types.
    let wrapped = format!(
        "SELECT row_to_json(t)::text FROM ({}) AS t",
        sql.trim().trim_end_matches(';')
    );
    let texts: Vec<String> = sqlx::query_scalar(&wrapped)
        .fetch_all(pool)
        .await
        .map_err(database("the query failed"))?;
    let rows = texts
        .iter()
        .map(|text| serde_json::from_str(text))
        .collect::<Result<_, _>>()
        .map_err(|source| LookupError::Row {
            table: name.to_owned(),
            source,
        })?;
    Ok(keyed(name, key, rows))
}

/// A lookup table from a JSON Lines file of objects, keyed by column `key`.
pub fn file_table(
    name: &str,
    path: &Path,
    key: &str,
) -> Result<HashMap<String, String>, LookupError> {
    let rows = read_file(name, path)?;
    Ok(keyed(name, key, rows))
}

/// Rows keyed by the text of their `key` column (rows without one are left out).
fn keyed(name: &str, key: &str, rows: Vec<Map<String, Value>>) -> HashMap<String, String> {
    let mut keyed = HashMap::with_capacity(rows.len());
    let mut keyless = 0usize;
    for row in rows {
        let Some(id) = key_text(row.get(key)) else {
            keyless += 1;
            continue;
        };
        keyed.insert(id, Value::Object(row).to_string());
    }
    if keyless > 0 {
        tracing::warn!(
            table = %name,
            rows = keyless,
            "Lookup rows without a `{key}` value are left out."
        );
    }
    tracing::info!(table = %name, rows = keyed.len(), "Lookup table loaded.");
    keyed
}

/// Table `name`'s rows: a JSON Lines file of objects (blank lines allowed).
fn read_file(name: &str, path: &Path) -> Result<Vec<Map<String, Value>>, LookupError> {
    let text = std::fs::read_to_string(path).map_err(|source| LookupError::Read {
        table: name.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line).map_err(|source| LookupError::Line {
                table: name.to_owned(),
                path: path.to_owned(),
                line: number + 1,
                source,
            })
        })
        .collect()
}

/// A key column's value as the text plugins look it up by.
fn key_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(dir: &Path, lookups: &str) -> crate::pipeline::PipelinePlan {
        std::fs::write(dir.join("plugin.wasm"), b"").unwrap();
        let text = format!(
            "name = \"t\"\n[source]\ntopic = \"in\"\n{lookups}\n\
             [[stages]]\nname = \"s\"\nplugin = \"plugin.wasm\"\nlookups = [\"users\"]\n\
             [sinks.postgres]\ntable = \"t\"\n"
        );
        crate::pipeline::check("t.toml", &text, dir).unwrap()
    }

    #[tokio::test]
    async fn file_tables_are_keyed_by_their_key_field_as_text() {
        let dir = std::env::temp_dir().join(format!("weir-lookups-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("users.jsonl"),
            "{\"id\": \"u1\", \"segment\": \"vip\"}\n\n{\"id\": 7, \"segment\": \"new\"}\n{\"segment\": \"keyless\"}\n",
        )
        .unwrap();
        let pipeline = pipeline(
            &dir,
            "[[lookups]]\nname = \"users\"\nfile = \"users.jsonl\"\nkey = \"id\"\n",
        );
        // No query and no topic: neither the database nor Kafka is used.
        let kafka = Connection::new("127.0.0.1:9092");
        let tables = load(
            &pipeline.lookups,
            &crate::connect::Database::local(),
            &kafka,
        )
        .await
        .unwrap()
        .tables;
        let users = &tables["users"];
        assert_eq!(users.len(), 2, "the keyless row is left out");
        let row: Value = serde_json::from_str(&users.get("u1").unwrap()).unwrap();
        assert_eq!(row["segment"], "vip");
        let row: Value = serde_json::from_str(&users.get("7").unwrap()).unwrap();
        assert_eq!(row["segment"], "new", "numbers are looked up as text");

        std::fs::write(dir.join("users.jsonl"), "{\"id\": \"u1\"}\nnot json\n").unwrap();
        let error = load(
            &pipeline.lookups,
            &crate::connect::Database::local(),
            &kafka,
        )
        .await
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("users.jsonl:2: not a JSON object"),
            "{error:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
