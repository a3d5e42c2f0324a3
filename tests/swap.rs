//! Hot swap through the admin API, on the real stack with a `weir run`
//! process: `session-stats` v1 and v2 swapped back and forth under load, a
//! broken v3 rolled back by itself, the same aggregation swapped between
//! the four languages weir's SDKs serve, refusals that leave the pipeline as it
//! was, and changes without the token refused. Results are compared with
//! the SQL oracle of the version in force.
//!
//! `cargo xtask test` runs the test under load on a release build (it
//! prints swap latency against targets), the others with the rest.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use weir_tests::Stack;
use weir_tests::oracle::{check_avro, differences_in, load_raw, oracle_query, read_topic};
use weir_tests::pipeline::{Scenario, demo_pipeline, generate, terminate, wait_caught_up};

const TOKEN: &str = "swap-test-token";
const SEED: &str = "42";

/// The compiled plugins the test command builds.
fn component(file: &str) -> Result<PathBuf> {
    let path = weir_tests::pipeline::plugin_dir().join(file);
    ensure!(
        path.is_file(),
        "{} is missing: build the plugins (`cargo xtask test` does)",
        path.display()
    );
    Ok(path)
}

/// The admin API of a running `weir run`, found in its log.
struct Api {
    base: String,
    http: reqwest::blocking::Client,
}

impl Api {
    fn find(run: &Scenario, log: &str) -> Result<Self> {
        Ok(Self {
            base: run.admin_url(log)?,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()?,
        })
    }

    /// PUTs `file` as the new plugin of `stage`: status and JSON answer.
    fn swap(
        &self,
        pipeline: &str,
        stage: &str,
        file: &str,
        token: Option<&str>,
    ) -> Result<(u16, serde_json::Value)> {
        let mut request = self
            .http
            .put(format!(
                "{}/pipelines/{pipeline}/stages/{stage}/plugin",
                self.base
            ))
            .body(std::fs::read(component(file)?)?);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send()?;
        Ok((response.status().as_u16(), response.json()?))
    }

    fn get(&self, path: &str) -> Result<serde_json::Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.base))
            .send()?
            .error_for_status()?
            .json()?)
    }

    /// The SHA-256 of the plugin stage `stage` runs now.
    fn running(&self, pipeline: &str, stage: &str) -> Result<String> {
        let described = self.get(&format!("/pipelines/{pipeline}"))?;
        described["stages"]
            .as_array()
            .context("stages")?
            .iter()
            .find(|s| s["name"] == stage)
            .and_then(|s| s["plugin"]["sha256"].as_str())
            .map(str::to_owned)
            .context("the stage's plugin")
    }
}

/// The v2 columns the oracle adds to v1's, as session-stats-v2 defines them.
fn oracle_v2(raw: &str) -> String {
    format!(
        "SELECT *, \"PAGES_VIEWED\" + \"PRODUCTS_VIEWED\" AS \"VIEWS_COUNT\", \
         \"PURCHASE_COUNT\" > 0 AS \"CONVERTED\", \
         coalesce(\"ITEMS_IN_CART\", 0) > 0 AND \"PURCHASE_COUNT\" = 0 AS \"CART_ABANDONED\", \
         CASE WHEN coalesce(\"ITEMS_IN_CART\", 0) = 0 THEN NULL \
              ELSE \"CART_VALUE\" / \"ITEMS_IN_CART\"::DOUBLE PRECISION END AS \"AVERAGE_ITEM_VALUE\" \
         FROM ({}) v1",
        oracle_query(raw)
    )
}

const COLUMNS_V2: &str = "\"SESSION_ID\", \"USER_ID\", \"USER_SEGMENT\", \"SESSION_STATE\", \
    \"EVENTS_COUNT\", \"PAGES_VIEWED\", \"PRODUCTS_VIEWED\", \"ITEMS_IN_CART\", \"CART_VALUE\", \
    \"PURCHASE_COUNT\", \"VIEWS_COUNT\", \"CONVERTED\", \"CART_ABANDONED\", \"AVERAGE_ITEM_VALUE\"";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The demo pipeline running in a scenario named after `prefix`, with its admin API.
fn demo_with_admin(prefix: &str) -> Result<(Scenario, std::process::Child, Api)> {
    let run = Scenario::new(prefix, 4)?;
    run.write_catalog(SEED)?;
    let pipeline = demo_pipeline(&run.dir, &run.names, "")?;
    let weir = run.spawn_weir(&pipeline, "weir.log", &["--admin-token", TOKEN])?;
    let api = Api::find(&run, "weir.log")?;
    Ok((run, weir, api))
}

#[test]
fn session_stats_swapped_back_and_forth_under_load_counts_every_event_once() -> Result<()> {
    let (run, mut weir, api) = demo_with_admin("swap")?;
    let (stack, names) = (&run.stack, &run.names);

    let events: u64 = 400_000;
    let rate = 20_000;
    let generator = run.start_generator(SEED, events, rate, 2_000);
    // Let the pipeline start and the load settle.
    std::thread::sleep(Duration::from_secs(4));
    let v1 = api.running(&names.pipeline, "session-stats")?;
    let swaps = 11; // v1 -> v2 -> v1 -> ... -> v2
    for swap in 1..=swaps {
        let file = if swap % 2 == 1 {
            "session_stats_v2.wasm"
        } else {
            "session_stats.wasm"
        };
        let (status, answer) = api.swap(&names.pipeline, "session-stats", file, Some(TOKEN))?;
        ensure!(status == 200, "swap {swap} to {file}: {status} {answer}");
        std::thread::sleep(Duration::from_millis(700));
    }
    let v2 = api.running(&names.pipeline, "session-stats")?;
    ensure!(v1 != v2, "v2 runs at the end");

    // A broken v3 traps on its first batch: rolled back by itself.
    let (status, answer) = api.swap(
        &names.pipeline,
        "session-stats",
        "trapping_aggregator_v3.wasm",
        Some(TOKEN),
    )?;
    ensure!(
        status == 200,
        "the v3 swap itself goes through: {status} {answer}"
    );
    let started = Instant::now();
    let history = loop {
        let history = api.get(&format!("/pipelines/{}/history", names.pipeline))?;
        if history
            .as_array()
            .is_some_and(|h| h.iter().any(|r| r["action"] == "automatic-rollback"))
        {
            break history;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "v3 was not rolled back: {history}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    ensure!(
        api.running(&names.pipeline, "session-stats")? == v2,
        "back on v2 after v3"
    );
    let rollback = history
        .as_array()
        .context("history")?
        .last()
        .context("an entry")?
        .clone();
    println!(
        "v3 rolled back by itself {:.0?} after its swap: {}",
        started.elapsed(),
        rollback["reason"]
    );

    run.caught_up(generator, events, &mut weir)?;
    // Stale keys get their v2 row between batches; the stop's last flush writes what is left.
    std::thread::sleep(Duration::from_secs(2));
    ensure!(terminate(&mut weir)?.success(), "weir stops cleanly");

    // Swap latency and stall, from the history.
    let records: Vec<serde_json::Value> = history
        .as_array()
        .context("history")?
        .iter()
        .filter(|r| r["action"] == "swap" && r["to"] != rollback["from"])
        .cloned()
        .collect();
    ensure!(
        records.len() == swaps,
        "{} swaps in the history",
        records.len()
    );
    let mut latency: Vec<f64> = records
        .iter()
        .filter_map(|r| r["first_batch_ms"].as_f64())
        .collect();
    let mut stall: Vec<f64> = records
        .iter()
        .filter_map(|r| r["stall_ms"].as_f64())
        .collect();
    ensure!(
        latency.len() == swaps,
        "every swap saw its first batch: {records:?}"
    );
    latency.sort_by(f64::total_cmp);
    stall.sort_by(f64::total_cmp);
    println!(
        // With a dozen swaps, the slowest stands for the p99 of the target.
        "{swaps} swaps under {rate} ev/s: request -> first batch of the new version p50 {:.1} ms, max {:.1} ms \
         (target p99 <= 100); longest processing stall {:.1} ms (target <= 250)",
        percentile(&latency, 50.0),
        latency.last().copied().unwrap_or_default(),
        stall.last().copied().unwrap_or_default()
    );

    // Every row equals the v2 oracle over every event.
    let raw_events = read_topic(stack, &names.events)?;
    run.tokio.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&stack.database_url)
            .await?;
        let raw = format!("{}_raw", names.table);
        let oracle = format!("{}_oracle", names.table);
        load_raw(&pool, &raw, &raw_events).await?;
        sqlx::query(&format!("CREATE TABLE {oracle} AS {}", oracle_v2(&raw)))
            .execute(&pool)
            .await?;
        let (different, samples) = differences_in(&pool, &names.table, &oracle, COLUMNS_V2).await?;
        ensure!(
            different == 0,
            "{different} rows differ from the v2 oracle; first ones:\n{}",
            samples.join("\n")
        );
        let (keys, schema_ids) = check_avro(stack, &pool, &names.avro, &oracle).await?;
        println!(
            "{} events: `{}` and the latest Avro value of each of {keys} keys equal the v2 oracle \
             (schema ids seen: {schema_ids})",
            raw_events.len(),
            names.table
        );
        for table in [&raw, &oracle] {
            sqlx::query(&format!("DROP TABLE {table}"))
                .execute(&pool)
                .await?;
        }
        Ok(())
    })
}

/// The same aggregation written in four languages, swapped one for another
/// in a running pipeline: each takes over the state the previous one wrote
/// (the SDKs share one JSON state encoding), and the result equals the
/// oracle over every event.
#[test]
fn session_stats_swapped_between_languages_keeps_every_sessions_state() -> Result<()> {
    let (run, mut weir, api) = demo_with_admin("langswap")?;
    let (stack, names) = (&run.stack, &run.names);

    let events: u64 = 120_000;
    let generator = run.start_generator(SEED, events, 8_000, 2_000);
    std::thread::sleep(Duration::from_secs(3));
    // Each language takes over another's state: C Rust's, JavaScript C's,
    // Python JavaScript's, and Rust Python's.
    let languages = [
        ("C", "session_stats_c.wasm"),
        ("JavaScript", "session_stats_js.wasm"),
        ("Python", "session_stats_py.wasm"),
        ("Rust", "session_stats.wasm"),
    ];
    for (language, file) in languages {
        let (status, answer) = api.swap(&names.pipeline, "session-stats", file, Some(TOKEN))?;
        ensure!(status == 200, "swap to {language}: {status} {answer}");
        println!("swapped to session-stats in {language}");
        std::thread::sleep(Duration::from_secs(2));
    }
    let history = api.get(&format!("/pipelines/{}/history", names.pipeline))?;
    ensure!(
        !history
            .as_array()
            .context("history")?
            .iter()
            .any(|r| r["action"] == "automatic-rollback"),
        "no language's version was rolled back: {history}"
    );

    run.caught_up(generator, events, &mut weir)?;
    ensure!(terminate(&mut weir)?.success(), "weir stops cleanly");
    weir_tests::oracle::check_run(stack, &run.tokio, names)?;
    Ok(())
}

#[test]
fn bad_components_and_missing_tokens_are_refused_and_change_nothing() -> Result<()> {
    let run = Scenario::new("refuse", 2)?;
    let (stack, names) = (&run.stack, &run.names);
    run.write_catalog(SEED)?;
    generate(
        stack,
        &[
            "--rate",
            "0",
            "--seed",
            SEED,
            "--count",
            "2000",
            "--topic",
            &names.events,
        ],
    )?;
    let pipeline = demo_pipeline(&run.dir, names, "")?;
    let mut weir = run.spawn_weir(&pipeline, "weir.log", &["--admin-token", TOKEN])?;
    let api = Api::find(&run, "weir.log")?;
    wait_caught_up(
        stack,
        &names.group(),
        &names.events,
        &mut weir,
        Duration::from_secs(120),
    )?;
    let before = api.get(&format!("/pipelines/{}", names.pipeline))?;

    // The registry enforces backward compatibility on the subject, as in production.
    set_compatibility(stack, &format!("{}-value", names.avro), "BACKWARD")?;
    let cases = [
        ("wrong_world.wasm", Some(TOKEN), 422, "exports"),
        ("future_contract.wasm", Some(TOKEN), 422, "0.3.0"),
        ("field_filter.wasm", Some(TOKEN), 422, "aggregator"),
        ("panicking_counter.wasm", Some(TOKEN), 422, "compatibility"),
        ("session_stats_v2.wasm", None, 401, "Authorization"),
        ("session_stats_v2.wasm", Some("wrong"), 401, "wrong token"),
    ];
    for (file, token, status, says) in cases {
        let (got, answer) = api.swap(&names.pipeline, "session-stats", file, token)?;
        let message = answer["error"].as_str().unwrap_or_default();
        println!("{file} (token {token:?}): {got} {message}");
        ensure!(
            got == status,
            "{file}: expected {status}, got {got}: {answer}"
        );
        ensure!(
            message.contains(says),
            "{file}: the message should mention `{says}`: {message}"
        );
    }
    let response = api
        .http
        .post(format!(
            "{}/pipelines/{}/stages/session-stats/rollback",
            api.base, names.pipeline
        ))
        .send()?;
    ensure!(
        response.status().as_u16() == 401,
        "a rollback without the token is refused"
    );
    let after = api.get(&format!("/pipelines/{}", names.pipeline))?;
    ensure!(
        before == after,
        "nothing changed:\nbefore {before}\nafter {after}"
    );
    ensure!(
        api.get(&format!("/pipelines/{}/history", names.pipeline))?
            .as_array()
            .is_some_and(Vec::is_empty),
        "no swap in the history"
    );
    ensure!(
        matches!(weir.try_wait(), Ok(None)),
        "the pipeline still runs"
    );
    ensure!(terminate(&mut weir)?.success());
    Ok(())
}

/// Sets the registry's compatibility level of `subject`.
fn set_compatibility(stack: &Stack, subject: &str, level: &str) -> Result<()> {
    reqwest::blocking::Client::new()
        .put(format!("{}/config/{subject}", stack.registry_url))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .json(&serde_json::json!({ "compatibility": level }))
        .send()?
        .error_for_status()?;
    Ok(())
}

#[test]
fn weir_run_watch_swaps_a_plugin_whose_file_changes() -> Result<()> {
    let run = Scenario::new("watch", 1)?;
    let names = &run.names;
    run.write_catalog(SEED)?;
    // The pipeline's plugins are copies this test can overwrite.
    let plugins = run.dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    for file in [
        "field_filter.wasm",
        "catalog_enrich.wasm",
        "session_stats.wasm",
    ] {
        std::fs::copy(component(file)?, plugins.join(file))?;
    }
    let pipeline = demo_pipeline(&run.dir, names, "")?;
    let text = std::fs::read_to_string(&pipeline)?;
    let dir = component("session_stats.wasm")?
        .parent()
        .context("a folder")?
        .display()
        .to_string();
    std::fs::write(
        &pipeline,
        text.replace(&dir, &plugins.display().to_string()),
    )?;
    let mut weir = run.spawn_weir(&pipeline, "weir.log", &["--watch"])?;
    let api = Api::find(&run, "weir.log")?;
    let started = Instant::now();
    while run
        .last_log_line("weir.log", "Watching the plugin files.")
        .is_err()
    {
        ensure!(started.elapsed() < Duration::from_secs(60), "not watching");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = api.running(&names.pipeline, "session-stats")?;
    // A rebuild: the file is rewritten in place.
    std::fs::write(
        plugins.join("session_stats.wasm"),
        std::fs::read(component("session_stats_v2.wasm")?)?,
    )?;
    let started = Instant::now();
    let history = loop {
        let history = api.get(&format!("/pipelines/{}/history", names.pipeline))?;
        if history.as_array().is_some_and(|h| !h.is_empty()) {
            break history;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "no swap after the file changed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let after = api.running(&names.pipeline, "session-stats")?;
    ensure!(before != after, "the stage runs the new file");
    ensure!(history[0]["from"] == before.as_str() && history[0]["to"] == after.as_str());
    println!(
        "--watch: swapped {:.1?} after the file changed",
        started.elapsed()
    );
    ensure!(terminate(&mut weir)?.success());
    Ok(())
}
