//! A pipeline without an aggregator (`pipelines/commerce-events.toml`:
//! the demo's filter and enrichment), its records to a Kafka topic and a
//! file as they are, on the real stack. The output is checked against what SQL computes from the input
//! topic and the catalog tables: the filter's rule and the enrichment's
//! joins, written again in SQL.

use std::time::Duration;

use anyhow::{Result, ensure};
use weir_tests::oracle::{load_raw, read_topic};
use weir_tests::pipeline::{Scenario, stock_pipeline, terminate, wait_caught_up};

/// Event types `pipelines/commerce-events.toml` keeps.
const EVENT_TYPES: [&str; 3] = ["product_viewed", "add_to_cart", "purchase"];

#[test]
fn a_pipeline_without_an_aggregator_writes_its_records_as_they_are() -> Result<()> {
    let run = Scenario::new("stateless", 4)?;
    let stack = &run.stack;
    run.write_catalog("7")?;
    let topic = format!("{}.enriched", run.names.pipeline);
    let file = run.dir.join("out/enriched.jsonl");
    let path = stock_pipeline(
        &run.dir,
        "commerce-events",
        &run.names.pipeline,
        &[
            (
                "name = \"commerce-events\"",
                format!("name = \"{}\"", run.names.pipeline),
            ),
            (
                "topic = \"ecommerce.events\"",
                format!("topic = \"{}\"", run.names.events),
            ),
            (
                "topic = \"commerce_events\"",
                format!("topic = \"{topic}\""),
            ),
        ],
        &format!("\n[sinks.file]\npath = \"{}\"\n", file.display()),
    )?;
    let mut weir = run.spawn_weir(&path, "weir.log", &[])?;
    let counts = run
        .start_generator("7", 30_000, 0, 1_000)
        .join()
        .expect("generator")?;
    ensure!(counts.events == 30_000);
    wait_caught_up(
        stack,
        &format!("weir-{}", run.names.pipeline),
        &run.names.events,
        &mut weir,
        Duration::from_secs(300),
    )?;
    ensure!(terminate(&mut weir)?.success(), "weir stops cleanly");

    let pool = run.pool()?;
    let (input, output, lines) = (
        format!("{}_in", run.names.table),
        format!("{}_out", run.names.table),
        format!("{}_file", run.names.table),
    );
    let file_values: Vec<(i64, String)> = std::fs::read_to_string(&file)?
        .lines()
        .enumerate()
        .map(|(line, text)| (line as i64, text.to_owned()))
        .collect();
    run.tokio.block_on(async {
        load_raw(&pool, &input, &read_topic(stack, &run.names.events)?).await?;
        load_raw(&pool, &output, &read_topic(stack, &topic)?).await?;
        load_raw(&pool, &lines, &file_values).await
    })?;

    // The oracle: the filter's rule and the enrichment's joins in SQL (a
    // field the event has already is kept; a missing row adds nothing).
    let types = EVENT_TYPES.map(|t| format!("'{t}'")).join(", ");
    let expected = format!(
        "SELECT jsonb_strip_nulls(jsonb_build_object( \
                'user_segment', u.segment, \
                'product_category', p.category, \
                'product_brand', p.brand)) || i.data AS data \
         FROM {input} i \
         LEFT JOIN users u ON u.user_id = i.data->>'user_id' \
         LEFT JOIN products p ON p.product_id = i.data->>'product_id' \
         WHERE i.data->>'event_type' IN ({types})"
    );
    let kept = run.scalar::<i64>(&pool, &format!("SELECT count(*) FROM ({expected}) e"))?;
    ensure!(
        kept > 1_000 && kept < 30_000,
        "the filter keeps some events, not all: {kept}"
    );
    for (name, table) in [("the Kafka topic", &output), ("the file", &lines)] {
        let differing = run.scalar::<i64>(
            &pool,
            &format!(
                "SELECT count(*) FROM ( \
                   (SELECT data FROM {table_data} EXCEPT ALL SELECT data FROM ({expected}) e) \
                   UNION ALL \
                   (SELECT data FROM ({expected}) e EXCEPT ALL SELECT data FROM {table_data})) d",
                table_data = if table == &lines {
                    format!("(SELECT data->'value' AS data FROM {lines}) f")
                } else {
                    table.clone()
                }
            ),
        )?;
        ensure!(
            differing == 0,
            "{name}: {differing} records differ from the oracle's {kept}"
        );
    }
    // Each record keeps its key: the generator keys events by session.
    let rekeyed = run.scalar::<i64>(&pool,
        &format!(
            "SELECT count(*) FROM {lines} WHERE data->>'key' IS DISTINCT FROM data->'value'->>'session_id'"
        ),
    )?;
    ensure!(rekeyed == 0, "{rekeyed} records lost their key");
    Ok(())
}
