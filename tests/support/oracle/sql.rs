//! `session_stats` computed in SQL from the raw events (semantics.md §3),
//! compared with what weir's sinks hold: the PostgreSQL table row for row
//! and column for column, and the latest Avro value of every key as
//! confluent-kafka's deserializer reads it.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::{PgPool, Row};

use crate::Stack;
use crate::pipeline::Names;

/// The columns of the sessions table, in order.
pub const COLUMNS: &str = "\"SESSION_ID\", \"USER_ID\", \"USER_SEGMENT\", \"SESSION_STATE\", \
    \"EVENTS_COUNT\", \"PAGES_VIEWED\", \"PRODUCTS_VIEWED\", \"ITEMS_IN_CART\", \"CART_VALUE\", \
    \"PURCHASE_COUNT\"";

/// Loads raw events into `table`: (order, JSON document) pairs, where the
/// order sorts each session's events as they were written.
pub async fn load_raw(pool: &PgPool, table: &str, events: &[(i64, String)]) -> Result<()> {
    load_lines(pool, table, ("data JSONB", "doc::jsonb"), events).await
}

/// Creates `table` (`line BIGINT`, then `column`: its name and type, and
/// the expression that makes it of the event's text `doc`) and loads
/// `events` into it.
async fn load_lines(
    pool: &PgPool,
    table: &str,
    (column, value): (&str, &str),
    events: &[(i64, String)],
) -> Result<()> {
    sqlx::query(&format!(
        "CREATE TABLE {table} (line BIGINT PRIMARY KEY, {column} NOT NULL)"
    ))
    .execute(pool)
    .await?;
    for chunk in events.chunks(20_000) {
        let (lines, docs): (Vec<i64>, Vec<&str>) = chunk
            .iter()
            .map(|(line, doc)| (*line, doc.as_str()))
            .unzip();
        sqlx::query(&format!(
            "INSERT INTO {table} SELECT line, {value} \
             FROM UNNEST($1::BIGINT[], $2::TEXT[]) AS t(line, doc)"
        ))
        .bind(&lines)
        .bind(&docs)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Loads events that may be malformed into `table` as [`load_raw`] does,
/// the good ones only, and returns the order of every bad one: a value that
/// is not a JSON object, or whose text fields are not strings, whose
/// `cart_item_count` is not an integer or whose `cart_total` is not a
/// number (null or absent is fine). The check is SQL's own, independent of
/// the fold's.
pub async fn load_checked(
    pool: &PgPool,
    table: &str,
    events: &[(i64, String)],
) -> Result<Vec<i64>> {
    let texts = format!("{table}_text");
    load_lines(pool, &texts, ("doc TEXT", "doc"), events).await?;
    // PostgreSQL 15 has no `pg_input_is_valid`: a failed cast, caught.
    let good = format!("{table}_good");
    let text =
        |field: &str| format!("coalesce(jsonb_typeof(d->'{field}'), 'null') IN ('string', 'null')");
    sqlx::query(&format!(
        "CREATE FUNCTION {good}(doc TEXT) RETURNS BOOLEAN LANGUAGE plpgsql AS $$ \
         DECLARE d JSONB; \
         BEGIN \
           BEGIN d := doc::jsonb; EXCEPTION WHEN others THEN RETURN false; END; \
           RETURN jsonb_typeof(d) = 'object' AND {} AND {} AND {} AND {} \
             AND (coalesce(jsonb_typeof(d->'cart_item_count'), 'null') = 'null' \
                  OR (jsonb_typeof(d->'cart_item_count') = 'number' \
                      AND d->>'cart_item_count' ~ '^-?[0-9]+$')) \
             AND coalesce(jsonb_typeof(d->'cart_total'), 'null') IN ('number', 'null'); \
         END $$",
        text("event_type"),
        text("user_id"),
        text("user_segment"),
        text("session_state"),
    ))
    .execute(pool)
    .await?;
    sqlx::query(&format!(
        "CREATE TABLE {table} AS SELECT line, doc::jsonb AS data FROM {texts} WHERE {good}(doc)"
    ))
    .execute(pool)
    .await?;
    let bad: Vec<(i64,)> = sqlx::query_as(&format!(
        "SELECT line FROM {texts} WHERE NOT {good}(doc) ORDER BY line"
    ))
    .fetch_all(pool)
    .await?;
    sqlx::query(&format!("DROP TABLE {texts}"))
        .execute(pool)
        .await?;
    sqlx::query(&format!("DROP FUNCTION {good}"))
        .execute(pool)
        .await?;
    Ok(bad.into_iter().map(|(line,)| line).collect())
}

/// semantics.md §3 in SQL: one row per session, "newest" meaning the
/// latest non-null value in event order.
pub fn oracle_query(raw: &str) -> String {
    let latest = |field: &str| {
        format!(
            "(array_agg(data->>'{field}' ORDER BY line DESC) \
             FILTER (WHERE data->>'{field}' IS NOT NULL))[1]"
        )
    };
    let count_of = |event: &str| format!("count(*) FILTER (WHERE data->>'event_type' = '{event}')");
    format!(
        "SELECT data->>'session_id' AS \"SESSION_ID\", {} AS \"USER_ID\", {} AS \"USER_SEGMENT\", \
         {} AS \"SESSION_STATE\", count(*) AS \"EVENTS_COUNT\", {} AS \"PAGES_VIEWED\", \
         {} AS \"PRODUCTS_VIEWED\", max((data->>'cart_item_count')::BIGINT) AS \"ITEMS_IN_CART\", \
         max((data->>'cart_total')::DOUBLE PRECISION) AS \"CART_VALUE\", {} AS \"PURCHASE_COUNT\" \
         FROM {raw} GROUP BY data->>'session_id'",
        latest("user_id"),
        latest("user_segment"),
        latest("session_state"),
        count_of("page_view"),
        count_of("product_viewed"),
        count_of("purchase"),
    )
}

/// Rows in one table and not the other (both ways), as text, at most 10.
pub async fn differences(pool: &PgPool, left: &str, right: &str) -> Result<(i64, Vec<String>)> {
    differences_in(pool, left, right, COLUMNS).await
}

/// [`differences`] over `columns` (a comma-separated list of quoted names).
pub async fn differences_in(
    pool: &PgPool,
    left: &str,
    right: &str,
    columns: &str,
) -> Result<(i64, Vec<String>)> {
    let query = format!(
        "WITH l AS (SELECT {columns} FROM {left}), r AS (SELECT {columns} FROM {right}), \
         d AS ((SELECT 'only in {left}' AS side, * FROM (SELECT * FROM l EXCEPT ALL SELECT * FROM r) a) \
               UNION ALL (SELECT 'only in {right}', * FROM (SELECT * FROM r EXCEPT ALL SELECT * FROM l) b)) \
         SELECT (SELECT count(*) FROM d), d::text FROM d ORDER BY 2 LIMIT 10"
    );
    let rows = sqlx::query(&query).fetch_all(pool).await?;
    let count = rows.first().map_or(Ok(0), |row| row.try_get(0))?;
    let samples = rows
        .iter()
        .map(|row| row.try_get::<String, _>(1))
        .collect::<Result<_, _>>()?;
    Ok((count, samples))
}

/// Every record of `topic` as (order, value text), read from its start to
/// its current end; the order is `partition * 10^12 + offset`, so a
/// session's events (one partition) sort as written.
pub fn read_topic(stack: &Stack, topic: &str) -> Result<Vec<(i64, String)>> {
    let consumer: BaseConsumer = stack
        .kafka_client()
        .set("group.id", crate::unique("oracle-reader"))
        .set("enable.auto.commit", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    let mut ends = HashMap::new();
    let mut list = TopicPartitionList::new();
    for partition in 0..i32::try_from(partitions)? {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        if high > low {
            ends.insert(partition, high);
            list.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
    }
    consumer.assign(&list)?;
    let mut events = Vec::new();
    let started = std::time::Instant::now();
    while !ends.is_empty() {
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "reading {topic} back took over 2 minutes"
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        let partition = message.partition();
        let value = std::str::from_utf8(message.payload().unwrap_or_default())
            .context("the generator writes UTF-8")?;
        events.push((
            i64::from(partition) * 1_000_000_000_000 + message.offset(),
            value.to_owned(),
        ));
        if ends
            .get(&partition)
            .is_some_and(|&end| message.offset() + 1 >= end)
        {
            ends.remove(&partition);
        }
    }
    Ok(events)
}

/// Runs `tests/python/read_avro.py` (confluent-kafka) on `topic`: its JSON answer.
pub fn read_avro_with_python(stack: &Stack, topic: &str, keys: usize) -> Result<serde_json::Value> {
    let python = std::env::var("WEIR_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = crate::manifest_dir().join("python/read_avro.py");
    let output = std::process::Command::new(&python)
        .envs(stack.env.iter().map(|(name, value)| (name, value)))
        .arg(&script)
        .args([
            &stack.bootstrap,
            &stack.registry_url,
            topic,
            &keys.to_string(),
        ])
        .output()
        .with_context(|| format!("cannot run {python}"))?;
    ensure!(
        output.status.success(),
        "{} failed ({}): {}\n(`cargo xtask test` installs confluent-kafka and sets WEIR_PYTHON)",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Checks that the latest Avro value of every key of `topic` equals the
/// `oracle` table's row; returns how many keys were compared.
pub async fn check_avro(
    stack: &Stack,
    pool: &PgPool,
    topic: &str,
    oracle: &str,
) -> Result<(usize, serde_json::Value)> {
    let oracle_rows: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT \"SESSION_ID\", row_to_json(o)::text FROM {oracle} o"
    ))
    .fetch_all(pool)
    .await?;
    let avro = read_avro_with_python(stack, topic, oracle_rows.len())?;
    let rows = avro["rows"].as_object().context("rows")?;
    ensure!(
        rows.len() == oracle_rows.len(),
        "{} keys in the Avro topic, {} sessions",
        rows.len(),
        oracle_rows.len()
    );
    for (session, expected) in &oracle_rows {
        let expected: serde_json::Value = serde_json::from_str(expected)?;
        let got = rows
            .get(session)
            .with_context(|| format!("{session} is not in the Avro topic"))?;
        for (column, want) in expected.as_object().context("a row")? {
            if column == "SESSION_ID" {
                continue;
            }
            let have = &got[column];
            let same = match (want.as_f64(), have.as_f64()) {
                (Some(a), Some(b)) => a == b,
                _ => want == have,
            };
            ensure!(same, "{session}.{column}: Avro {have}, oracle {want}");
        }
    }
    Ok((rows.len(), avro["schema_ids"].clone()))
}

/// Compares everything a finished run wrote (the PostgreSQL table and the
/// Avro topic of `names`) with the oracle over every event of its input
/// topic; fails on the first difference. Returns the number of sessions.
pub fn check_run(stack: &Stack, tokio: &tokio::runtime::Runtime, names: &Names) -> Result<usize> {
    let events = read_topic(stack, &names.events)?;
    tokio.block_on(async {
        let pool = stack.pool(2).await?;
        let raw = format!("{}_raw", names.table);
        let oracle = format!("{}_oracle", names.table);
        load_raw(&pool, &raw, &events).await?;
        sqlx::query(&format!("CREATE TABLE {oracle} AS {}", oracle_query(&raw)))
            .execute(&pool)
            .await?;
        let (different, samples) = differences(&pool, &names.table, &oracle).await?;
        ensure!(
            different == 0,
            "{different} rows differ between `{}` and the oracle over {} events; first ones:\n{}",
            names.table,
            events.len(),
            samples.join("\n")
        );
        let (keys, _) = check_avro(stack, &pool, &names.avro, &oracle).await?;
        for table in [&raw, &oracle] {
            sqlx::query(&format!("DROP TABLE {table}"))
                .execute(&pool)
                .await?;
        }
        println!(
            "{} events: `{}` and the latest Avro value of each of {keys} keys equal the SQL oracle",
            events.len(),
            names.table
        );
        Ok(keys)
    })
}
