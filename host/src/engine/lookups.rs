//! Lookup tables: reference data the host loads once at start — rows of a
//! PostgreSQL query or of a JSON Lines file — keyed by one column and handed
//! to the stages that name them.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::{Map, Value};
use sqlx::postgres::PgPoolOptions;

use crate::pipeline::Pipeline;

/// Every table of a pipeline: name -> key -> row (a JSON object as text).
pub type Tables = HashMap<String, HashMap<String, String>>;

/// Loads the lookup tables of `pipeline`; queries run on `database_url`.
pub async fn load(pipeline: &Pipeline, database_url: &str) -> anyhow::Result<Tables> {
    let mut tables = Tables::new();
    let mut pool = None;
    for lookup in &pipeline.config.lookups {
        let name = lookup.name.get_ref();
        let key = lookup.key.get_ref();
        let rows: Vec<Map<String, Value>> = if let Some(query) = &lookup.query {
            if pool.is_none() {
                pool = Some(
                    PgPoolOptions::new()
                        .max_connections(1)
                        .connect(database_url)
                        .await
                        .with_context(|| {
                            format!("lookup table `{name}`: cannot connect to PostgreSQL")
                        })?,
                );
            }
            let pool = pool.as_ref().expect("connected above");
            // PostgreSQL turns each row into a JSON object itself, whatever the column types.
            let wrapped = format!(
                "SELECT row_to_json(t)::text FROM ({}) AS t",
                query.get_ref().trim().trim_end_matches(';')
            );
            let texts: Vec<String> = sqlx::query_scalar(&wrapped)
                .fetch_all(pool)
                .await
                .with_context(|| format!("lookup table `{name}`: the query failed"))?;
            texts
                .iter()
                .map(|text| serde_json::from_str(text))
                .collect::<Result<_, _>>()
                .with_context(|| format!("lookup table `{name}`: a row is not a JSON object"))?
        } else if let Some(file) = &lookup.file {
            read_file(&pipeline.base_dir.join(file.get_ref()))
                .with_context(|| format!("lookup table `{name}`"))?
        } else {
            bail!("lookup table `{name}` has neither `query` nor `file`");
        };
        let keyed = keyed(name, key, rows);
        tables.insert(name.clone(), keyed);
    }
    Ok(tables)
}

/// A lookup table from a JSON Lines file of objects, keyed by column `key`.
pub fn file_table(name: &str, path: &Path, key: &str) -> anyhow::Result<HashMap<String, String>> {
    let rows = read_file(path).with_context(|| format!("lookup table `{name}`"))?;
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

/// A JSON Lines file of objects (blank lines allowed).
fn read_file(path: &Path) -> anyhow::Result<Vec<Map<String, Value>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a JSON object", path.display(), number + 1))
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

    fn pipeline(dir: &Path, lookups: &str) -> Pipeline {
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
        // No query, so no database is needed: the URL is never used.
        let tables = load(&pipeline, "postgres://unused").await.unwrap();
        let users = &tables["users"];
        assert_eq!(users.len(), 2, "the keyless row is left out");
        let row: Value = serde_json::from_str(&users["u1"]).unwrap();
        assert_eq!(row["segment"], "vip");
        let row: Value = serde_json::from_str(&users["7"]).unwrap();
        assert_eq!(row["segment"], "new", "numbers are looked up as text");

        std::fs::write(dir.join("users.jsonl"), "{\"id\": \"u1\"}\nnot json\n").unwrap();
        let error = load(&pipeline, "postgres://unused").await.unwrap_err();
        assert!(
            format!("{error:#}").contains("users.jsonl:2: not a JSON object"),
            "{error:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
