//! A re-keyed aggregation from its pipeline file (`pipelines/category-sales.toml`:
//! purchases split into their items, summed per product category through the
//! repartition topic) on the real stack, its table checked against what SQL
//! computes from the input topic and the catalog.

use std::time::Duration;

use anyhow::{Result, ensure};
use weir_tests::oracle::{differences_in, load_raw, read_topic};
use weir_tests::pipeline::{Scenario, stock_pipeline, terminate, wait_caught_up};

#[test]
fn sales_per_category_are_summed_through_the_repartition_topic() -> Result<()> {
    let run = Scenario::new("categories", 4)?;
    let stack = &run.stack;
    run.write_catalog("7")?;
    let table = format!("{}_sales", run.names.table);
    let pipeline = stock_pipeline(
        &run.dir,
        "category-sales",
        &run.names.pipeline,
        &[
            (
                "name = \"category-sales\"",
                format!("name = \"{}\"", run.names.pipeline),
            ),
            (
                "topic = \"ecommerce.events\"",
                format!("topic = \"{}\"", run.names.events),
            ),
            ("table = \"category_sales\"", format!("table = \"{table}\"")),
        ],
        "",
    )?;
    let mut weir = run.spawn_weir(&pipeline, "weir.log", &[])?;
    let counts = run
        .start_generator("7", 40_000, 0, 1_000)
        .join()
        .expect("generator")?;
    ensure!(counts.events == 40_000);
    let group = run.names.group();
    let second = format!("{group}.sales");
    for (group, topic) in [
        (group.clone(), run.names.events.clone()),
        (second.clone(), format!("{second}.repartition")),
    ] {
        wait_caught_up(stack, &group, &topic, &mut weir, Duration::from_secs(300))?;
    }
    ensure!(terminate(&mut weir)?.success(), "weir stops cleanly");

    let pool = run.pool()?;
    let raw = format!("{}_raw", run.names.table);
    run.tokio.block_on(load_raw(
        &pool,
        &raw,
        &read_topic(stack, &run.names.events)?,
    ))?;
    // The oracle: every item of every purchase, its category from the
    // catalog table, summed per category in exact decimals.
    let oracle = format!("{}_oracle", run.names.table);
    run.tokio.block_on(async {
        sqlx::query(&format!(
            "CREATE TABLE {oracle} AS \
             SELECT coalesce(p.category, 'uncategorised') AS \"CATEGORY\", \
                    sum((item->>'quantity')::bigint) AS \"UNITS_SOLD\", \
                    (sum(round((item->>'price')::numeric * 100) * (item->>'quantity')::bigint) / 100)::float8 AS \"REVENUE\", \
                    count(*) AS \"ORDER_LINES\" \
             FROM {raw} r \
             CROSS JOIN LATERAL jsonb_array_elements(r.data->'items') AS item \
             LEFT JOIN products p ON p.product_id = item->>'product_id' \
             WHERE r.data->>'event_type' = 'purchase' \
             GROUP BY 1"
        ))
        .execute(&pool)
        .await
    })?;
    let categories = run.scalar::<i64>(&pool, &format!("SELECT count(*) FROM {oracle}"))?;
    let lines = run.scalar::<i64>(
        &pool,
        &format!("SELECT sum(\"ORDER_LINES\")::bigint FROM {oracle}"),
    )?;
    ensure!(
        categories > 3 && lines > 500,
        "the input has sales: {categories} categories, {lines} items"
    );
    let columns = "\"CATEGORY\", \"UNITS_SOLD\", \"REVENUE\", \"ORDER_LINES\"";
    let (different, samples) = run
        .tokio
        .block_on(differences_in(&pool, &table, &oracle, columns))?;
    ensure!(
        different == 0,
        "{different} rows differ between `{table}` and the oracle; first ones:\n{}",
        samples.join("\n")
    );
    println!(
        "{lines} items of {} events: {categories} categories equal the SQL oracle",
        counts.events
    );
    Ok(())
}
