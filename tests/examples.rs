//! The custom aggregation examples (one per plugin language other than
//! Rust), each run by its own pipeline file, all three in one `weir run`
//! on the real stack; their tables are checked against what SQL computes
//! from the raw events.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, ensure};
use weir_tests::pipeline::{Scenario, stock_pipeline, terminate, wait_caught_up};

/// Example name, its plugin folder's component name, and its table.
const EXAMPLES: [(&str, &str); 3] = [
    ("category-interest", "category_interest"),
    ("funnel-timing", "funnel_timing"),
    ("checkout-summary", "checkout_summary"),
];

/// `pipelines/<example>.toml` with the scenario's topic and fresh names, its
/// plugin where the test command builds it; returns the file, the pipeline
/// name and the table.
fn example_pipeline(
    run: &Scenario,
    example: &str,
    table: &str,
) -> Result<(PathBuf, String, String)> {
    let pipeline = format!("{}-{example}", run.names.pipeline);
    let fresh_table = format!("{}_{table}", run.names.table);
    let path = stock_pipeline(
        &run.dir,
        example,
        &pipeline,
        &[
            (
                &format!("name = \"{example}\""),
                format!("name = \"{pipeline}\""),
            ),
            (
                "topic = \"ecommerce.events\"",
                format!("topic = \"{}\"", run.names.events),
            ),
            (
                &format!("table = \"{table}\""),
                format!("table = \"{fresh_table}\""),
            ),
        ],
        "",
    )?;
    Ok((path, pipeline, fresh_table))
}

#[test]
fn the_example_aggregations_run_from_their_pipeline_files() -> Result<()> {
    let run = Scenario::new("examples", 4)?;
    let stack = &run.stack;
    run.write_catalog("7")?;
    let pipelines: Vec<(PathBuf, String, String)> = EXAMPLES
        .iter()
        .map(|(example, table)| example_pipeline(&run, example, table))
        .collect::<Result<_>>()?;
    // One process runs the three pipeline files.
    let rest: Vec<&str> = pipelines[1..]
        .iter()
        .map(|(file, _, _)| file.to_str().expect("a UTF-8 path"))
        .collect();
    let mut weir = run.spawn_weir(&pipelines[0].0, "weir.log", &rest)?;
    let counts = run
        .start_generator("7", 30_000, 0, 1_000)
        .join()
        .expect("generator")?;
    ensure!(counts.events == 30_000);
    for (_, pipeline, _) in &pipelines {
        wait_caught_up(
            stack,
            &format!("weir-{pipeline}"),
            &run.names.events,
            &mut weir,
            Duration::from_secs(300),
        )?;
    }
    ensure!(terminate(&mut weir)?.success(), "weir stops cleanly");

    let pool = run.pool()?;
    let raw = run.load_input(&pool)?;
    let sessions = run.scalar::<f64>(
        &pool,
        &format!("SELECT count(DISTINCT data->>'session_id')::float8 FROM {raw}"),
    )?;
    let [category, funnel, checkout] = [0, 1, 2].map(|i| pipelines[i].2.clone());
    let events_of =
        |kind: &str| format!("(SELECT * FROM {raw} WHERE data->>'event_type' = '{kind}') AS e");

    // category-interest: a row per session; every product view counted.
    ensure!(
        run.scalar::<f64>(&pool, &format!("SELECT count(*)::float8 FROM {category}"))? == sessions
    );
    ensure!(
        run.scalar::<f64>(
            &pool,
            &format!("SELECT sum(\"PRODUCT_VIEWS\")::float8 FROM {category}")
        )? == run.scalar::<f64>(
            &pool,
            &format!(
                "SELECT count(*)::float8 FROM {}",
                events_of("product_viewed")
            )
        )?,
        "category-interest counts every product view"
    );
    let top_wrong = run.scalar::<f64>(&pool,
        &format!(
            "WITH v AS (SELECT data->>'session_id' AS s, data->>'product_category' AS c, count(*) AS n \
                        FROM {} WHERE data->>'product_category' IS NOT NULL GROUP BY 1, 2), \
                  top AS (SELECT DISTINCT ON (s) s, c, n FROM v ORDER BY s, n DESC, c) \
             SELECT count(*)::float8 FROM top JOIN {category} t ON t.\"SESSION_ID\" = top.s \
             WHERE t.\"TOP_CATEGORY\" IS DISTINCT FROM top.c OR t.\"TOP_CATEGORY_VIEWS\" <> top.n",
            events_of("product_viewed")
        ),
    )?;
    ensure!(
        top_wrong == 0.0,
        "{top_wrong} sessions with another top category than SQL's"
    );

    // funnel-timing: every event counted; duration = last - first timestamp.
    ensure!(
        run.scalar::<f64>(&pool, &format!("SELECT count(*)::float8 FROM {funnel}"))? == sessions
    );
    ensure!(
        run.scalar::<f64>(
            &pool,
            &format!("SELECT sum(\"EVENTS\")::float8 FROM {funnel}")
        )? == f64::from(u32::try_from(counts.events)?)
    );
    let duration_wrong = run.scalar::<f64>(&pool,
        &format!(
            "WITH d AS (SELECT data->>'session_id' AS s, extract(epoch FROM \
                          max((data->>'timestamp')::timestamptz) - min((data->>'timestamp')::timestamptz))::float8 AS d \
                        FROM {raw} GROUP BY 1) \
             SELECT count(*)::float8 FROM d JOIN {funnel} t ON t.\"SESSION_ID\" = d.s \
             WHERE abs(t.\"DURATION_SECONDS\" - d.d) > 1e-6"
        ),
    )?;
    ensure!(
        duration_wrong == 0.0,
        "{duration_wrong} sessions with another duration than SQL's"
    );
    // The time between two events counts toward the earlier one's stage.
    let stages_wrong = run.scalar::<f64>(&pool,
        &format!(
            "WITH e AS (SELECT data->>'session_id' AS s, line, (data->>'timestamp')::timestamptz AS t, \
                          data->>'session_state' AS st FROM {raw}), \
                  g AS (SELECT s, line, st, lag(st) OVER w AS before, \
                          greatest(extract(epoch FROM t - lag(t) OVER w)::float8, 0) AS gap \
                        FROM e WINDOW w AS (PARTITION BY s ORDER BY line)), \
                  sums AS (SELECT s, coalesce(sum(gap) FILTER (WHERE before = 'browsing'), 0) AS b, \
                                  coalesce(sum(gap) FILTER (WHERE before = 'shopping'), 0) AS p, \
                                  coalesce(sum(gap) FILTER (WHERE before = 'checkout'), 0) AS c, \
                                  (array_agg(st ORDER BY line DESC))[1] AS last FROM g GROUP BY s) \
             SELECT count(*)::float8 FROM sums JOIN {funnel} t ON t.\"SESSION_ID\" = sums.s \
             WHERE abs(t.\"BROWSING_SECONDS\" - b) > 1e-6 OR abs(t.\"SHOPPING_SECONDS\" - p) > 1e-6 \
                OR abs(t.\"CHECKOUT_SECONDS\" - c) > 1e-6 OR t.\"FINAL_STATE\" IS DISTINCT FROM last"
        ),
    )?;
    ensure!(
        stages_wrong == 0.0,
        "{stages_wrong} sessions with other stage times than SQL's"
    );

    // checkout-summary: adds to cart, conversions and order totals.
    ensure!(
        run.scalar::<f64>(&pool, &format!("SELECT count(*)::float8 FROM {checkout}"))? == sessions
    );
    ensure!(
        run.scalar::<f64>(
            &pool,
            &format!("SELECT sum(\"ADDS_TO_CART\")::float8 FROM {checkout}")
        )? == run.scalar::<f64>(
            &pool,
            &format!("SELECT count(*)::float8 FROM {}", events_of("add_to_cart"))
        )?
    );
    let orders_wrong = run.scalar::<f64>(&pool,
        &format!(
            "WITH o AS (SELECT DISTINCT ON (data->>'session_id') data->>'session_id' AS s, \
                          (data->>'total')::float8 AS total, data->>'payment_method' AS paid \
                        FROM {raw} WHERE data->>'event_type' = 'purchase' ORDER BY data->>'session_id', line DESC), \
                  c AS (SELECT data->>'session_id' AS s, max((data->>'cart_total')::float8) AS peak \
                        FROM {raw} WHERE data->>'event_type' = 'add_to_cart' GROUP BY 1) \
             SELECT count(*)::float8 FROM {checkout} t LEFT JOIN o ON o.s = t.\"SESSION_ID\" \
               LEFT JOIN c ON c.s = t.\"SESSION_ID\" \
             WHERE t.\"CONVERTED\" <> (o.s IS NOT NULL) \
                OR t.\"ORDER_TOTAL\" IS DISTINCT FROM o.total OR t.\"PAYMENT_METHOD\" IS DISTINCT FROM o.paid \
                OR t.\"CART_PEAK\" IS DISTINCT FROM c.peak"
        ),
    )?;
    ensure!(
        orders_wrong == 0.0,
        "{orders_wrong} sessions with another order than SQL's"
    );
    println!(
        "{} events, {sessions} sessions: category-interest (JavaScript), funnel-timing (Python) and \
         checkout-summary (C) agree with SQL over the raw events",
        counts.events
    );
    Ok(())
}
