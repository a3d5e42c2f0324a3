//! The category example (`pipelines/category-sales.toml`: purchases split
//! into their items, summed per product category through the repartition
//! topic) for a test's scenario: its pipeline file, waiting for both hops,
//! and its oracle, SQL over the input events and a catalog table.

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sqlx::PgPool;

use crate::oracle::differences_in;
use crate::pipeline::{Scenario, stock_pipeline, terminate, wait_caught_up};

/// The category of an item in the oracle: from catalog table `before` for
/// events before `boundary` (their partition's offset below it), from
/// `after` for the others.
pub fn by_boundary(boundary: &[i64], before: &str, after: &str) -> String {
    let before_boundary = boundary
        .iter()
        .enumerate()
        .map(|(partition, end)| {
            format!("(r.line / 1000000000000 = {partition} AND r.line % 1000000000000 < {end})")
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    format!(
        "CASE WHEN {before_boundary} \
         THEN (SELECT p.category FROM {before} p WHERE p.product_id = item->>'product_id') \
         ELSE (SELECT p.category FROM {after} p WHERE p.product_id = item->>'product_id') END"
    )
}

/// `pipelines/category-sales.toml` for `run`, reading values as `format`;
/// the file and its table.
pub fn category_pipeline(run: &Scenario, format: &str) -> Result<(PathBuf, String)> {
    category_pipeline_with(run, format, Vec::new())
}

/// [`category_pipeline`] with more of its lines rewritten.
pub fn category_pipeline_with(
    run: &Scenario,
    format: &str,
    more: Vec<(&str, String)>,
) -> Result<(PathBuf, String)> {
    let table = format!("{}_sales", run.names.table);
    let mut rewrites = vec![
        (
            "name = \"category-sales\"",
            format!("name = \"{}\"", run.names.pipeline),
        ),
        (
            "topic = \"ecommerce.events\"",
            format!("topic = \"{}\"", run.names.events),
        ),
        ("format = \"json\"", format!("format = \"{format}\"")),
        ("table = \"category_sales\"", format!("table = \"{table}\"")),
    ];
    rewrites.extend(more);
    let pipeline = stock_pipeline(
        &run.dir,
        "category-sales",
        &run.names.pipeline,
        &rewrites,
        "",
    )?;
    Ok((pipeline, table))
}

/// Waits until both hops have committed everything, then stops weir.
pub fn run_to_end(run: &Scenario, weir: &mut Child) -> Result<()> {
    caught_up(run, weir)?;
    ensure!(terminate(weir)?.success(), "weir stops cleanly");
    Ok(())
}

/// Waits until both hops have committed everything.
pub fn caught_up(run: &Scenario, weir: &mut Child) -> Result<()> {
    let group = run.names.group();
    let second = format!("{group}.sales");
    for (group, topic) in [
        (group.clone(), run.names.events.clone()),
        (second.clone(), format!("{second}.repartition")),
    ] {
        wait_caught_up(&run.stack, &group, &topic, weir, Duration::from_secs(300))
            .with_context(|| format!("weir's log ends:\n{}", run.log_tail("weir.log", 12)))?;
    }
    Ok(())
}

/// The category of an item (`item`, of event `r`) in the oracle: the
/// catalog table's.
pub const CATALOG_CATEGORY: &str =
    "(SELECT p.category FROM products p WHERE p.product_id = item->>'product_id')";

/// Compares `table` with SQL over the events in `raw` (`line`, `data`):
/// every item of every purchase, its category given by the SQL expression
/// `category` (NULL: uncategorised), summed per category in exact decimals.
/// Returns the categories and the items.
pub fn equal_to_oracle(
    run: &Scenario,
    pool: &PgPool,
    raw: &str,
    table: &str,
    category: &str,
) -> Result<(i64, i64)> {
    let oracle = format!("{raw}_oracle");
    run.tokio.block_on(async {
        sqlx::query(&format!(
            "CREATE TABLE {oracle} AS \
             SELECT coalesce({category}, 'uncategorised') AS \"CATEGORY\", \
                    sum((item->>'quantity')::bigint) AS \"UNITS_SOLD\", \
                    (sum(round((item->>'price')::numeric * 100) * (item->>'quantity')::bigint) / 100)::float8 AS \"REVENUE\", \
                    count(*) AS \"ORDER_LINES\" \
             FROM {raw} r \
             CROSS JOIN LATERAL jsonb_array_elements(r.data->'items') AS item \
             WHERE r.data->>'event_type' = 'purchase' \
             GROUP BY 1"
        ))
        .execute(pool)
        .await
    })?;
    let categories = run.scalar::<i64>(pool, &format!("SELECT count(*) FROM {oracle}"))?;
    let lines = run.scalar::<i64>(
        pool,
        &format!("SELECT sum(\"ORDER_LINES\")::bigint FROM {oracle}"),
    )?;
    ensure!(
        categories > 3 && lines > 300,
        "the input has sales: {categories} categories, {lines} items"
    );
    let columns = "\"CATEGORY\", \"UNITS_SOLD\", \"REVENUE\", \"ORDER_LINES\"";
    let (different, samples) = run
        .tokio
        .block_on(differences_in(pool, table, &oracle, columns))?;
    ensure!(
        different == 0,
        "{different} rows differ between `{table}` and the oracle; first ones:\n{}",
        samples.join("\n")
    );
    Ok((categories, lines))
}
