//! The second stock pipeline end to end on the real stack: `weir generate`
//! into Kafka, `weir run pipelines/activity.toml`, and its table compared
//! with an oracle computed in SQL from the raw events — every row, every
//! column — and the latest Avro value of every session read back through
//! the registry.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use sqlx::postgres::PgPoolOptions;
use weir_tests::oracle::{check_avro, differences_in, load_raw, read_topic};
use weir_tests::pipeline::{
    Running, Scenario, activity_pipeline, generate_with_copy, wait_caught_up,
};

/// Events in the run: about 5 000 sessions, several hundred of them buying.
const EVENTS: u64 = 50_000;

/// The generator's seed, fixed so that a failure can be replayed.
const SEED: &str = "2718";

/// The columns of the `session_activity` table, in order.
const COLUMNS: &str =
    "\"SESSION_ID\", \"LAST_EVENT_AT\", \"ORDERS\", \"REVENUE\", \"ITEMS_PURCHASED\"";

/// The `session_activity` rule (the crate documentation of
/// `plugins/session-activity`) in SQL, one row per session: `line` orders a
/// session's events as they were written, which is their order by offset
/// (a session's events share a key, so a partition).
fn oracle_query(raw: &str) -> String {
    format!(
        "SELECT data->>'session_id' AS \"SESSION_ID\", \
           (array_agg(data->>'timestamp' ORDER BY line DESC) \
              FILTER (WHERE data->>'timestamp' IS NOT NULL))[1] AS \"LAST_EVENT_AT\", \
           count(*) FILTER (WHERE purchase) AS \"ORDERS\", \
           round(sum((data->>'total')::NUMERIC) FILTER (WHERE purchase), 2)::DOUBLE PRECISION \
             AS \"REVENUE\", \
           coalesce(sum(items) FILTER (WHERE purchase), 0)::BIGINT AS \"ITEMS_PURCHASED\" \
         FROM {raw} r CROSS JOIN LATERAL ( \
           SELECT data->>'event_type' = 'purchase' AS purchase, \
                  (SELECT sum((item->>'quantity')::BIGINT) \
                   FROM jsonb_array_elements(r.data->'items') AS item) AS items) e \
         GROUP BY data->>'session_id'"
    )
}

#[test]
fn the_activity_pipeline_matches_the_sql_oracle_row_for_row() -> Result<()> {
    let run = Scenario::new("activity", 4)?;
    let (stack, names, dir, tokio) = (&run.stack, &run.names, &run.dir, &run.tokio);

    // The same seed twice: once into Kafka, once into a file for the oracle,
    // whose line order is the order the events were produced in.
    let count = EVENTS.to_string();
    let common = [
        "--rate",
        "0",
        "--seed",
        SEED,
        "--sessions",
        "200",
        "--count",
        &count,
    ];
    let file = dir.join("events.jsonl");
    let (counts, _) = generate_with_copy(stack, &common, &["--topic", &names.events], &file)?;
    ensure!(counts.events == EVENTS);

    let pipeline = activity_pipeline(dir, names)?;
    let started = Instant::now();
    let mut running = Running::start(stack, &pipeline)?;
    let caught_up = wait_caught_up(
        stack,
        &names.group(),
        &names.events,
        &mut running,
        Duration::from_secs(600),
    )?;
    running.stop()?;
    println!(
        "activity pipeline: {EVENTS} events processed and committed {caught_up:.1?} after start \
         ({:.1?} including start-up)",
        started.elapsed()
    );
    // Every generated event is well formed: nothing may have been dead-lettered.
    let dead_letters = read_topic(stack, &names.dead_letters())?;
    ensure!(
        dead_letters.is_empty(),
        "{} dead letters, first: {}",
        dead_letters.len(),
        dead_letters[0].1
    );

    tokio.block_on(async {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&stack.database_url)
            .await?;
        let lines: Vec<(i64, String)> = std::fs::read_to_string(&file)?
            .lines()
            .enumerate()
            .map(|(line, doc)| (line as i64, doc.to_owned()))
            .collect();
        ensure!(lines.len() as u64 == EVENTS);
        let raw = format!("{}_raw", names.table);
        let oracle = format!("{}_oracle", names.table);
        load_raw(&pool, &raw, &lines).await?;
        sqlx::query(&format!("CREATE TABLE {oracle} AS {}", oracle_query(&raw)))
            .execute(&pool)
            .await?;

        let (rows, buying, orders, items, revenue): (i64, i64, i64, i64, Option<f64>) =
            sqlx::query_as(&format!(
                "SELECT count(*), count(*) FILTER (WHERE \"ORDERS\" > 0), \
                   coalesce(sum(\"ORDERS\"), 0)::BIGINT, \
                   coalesce(sum(\"ITEMS_PURCHASED\"), 0)::BIGINT, sum(\"REVENUE\") FROM {}",
                names.table
            ))
            .fetch_one(&pool)
            .await?;
        ensure!(
            rows as u64 == counts.sessions,
            "{rows} rows, {} sessions generated",
            counts.sessions
        );
        ensure!(
            buying as u64 == counts.purchases,
            "{buying} sessions with an order, {} sessions that bought generated",
            counts.purchases
        );
        // Not a trivial agreement: many sessions, hundreds of them buying.
        ensure!(
            rows > 1_000 && buying >= 100,
            "{rows} sessions, {buying} buying"
        );
        ensure!(items >= orders, "every order holds at least one item");

        let (different, samples) = differences_in(&pool, &names.table, &oracle, COLUMNS).await?;
        ensure!(
            different == 0,
            "{different} rows differ between `{}` and the oracle; first ones:\n{}",
            names.table,
            samples.join("\n")
        );
        let with_revenue: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {} WHERE \"REVENUE\" IS NOT NULL",
            names.table
        ))
        .fetch_one(&pool)
        .await?;
        ensure!(
            with_revenue == buying,
            "REVENUE is set exactly where there are orders"
        );
        println!(
            "session_activity table: {rows} rows, every column equal to the SQL oracle; \
             {buying} sessions with {orders} orders, {items} items, revenue {:.2}",
            revenue.unwrap_or_default()
        );

        // The Avro topic, read by confluent-kafka's deserializer through the registry.
        let (keys, schema_ids) = check_avro(stack, &pool, &names.avro, &oracle).await?;
        ensure!(
            schema_ids.as_array().is_some_and(|ids| ids.len() == 1),
            "one schema id: {schema_ids}"
        );
        println!(
            "Avro topic `{}`: {keys} keys decoded by confluent-kafka, latest values equal to \
             the oracle",
            names.avro
        );

        for table in [&raw, &oracle] {
            sqlx::query(&format!("DROP TABLE {table}"))
                .execute(&pool)
                .await?;
        }
        Ok(())
    })
}
