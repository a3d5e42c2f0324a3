//! The stock pipeline end to end on the real stack: `weir generate` into
//! Kafka, `weir run pipelines/demo.toml`, and the `sessions` table compared
//! with an oracle computed in SQL from the raw events — every row, every
//! column — and the dashboards' questions asked of both.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use sqlx::postgres::PgPoolOptions;
use weir_tests::oracle::{check_avro, check_run, differences, load_raw, oracle_query};
use weir_tests::pipeline::{
    Names, Running, Scenario, demo_pipeline, generate, generate_with_copy, generated_events,
    progress, replace_setting, wait_caught_up,
};

/// Events in the oracle run.
const EVENTS: u64 = 200_000;

/// The catalog of seed 42 is what every pipeline test writes to the shared
/// `users` and `products` tables, so tests running at once agree on it.
const SEED: &str = "42";

/// The questions of the reference dashboards (semantics.md §4), over a
/// table of session rows. Each returns one text value, so results compare
/// exactly.
fn dashboard_questions(table: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "total sessions",
            format!("SELECT count(*)::text FROM {table}"),
        ),
        (
            "total events",
            format!("SELECT sum(\"EVENTS_COUNT\")::text FROM {table}"),
        ),
        (
            "total purchases",
            format!("SELECT sum(\"PURCHASE_COUNT\")::text FROM {table}"),
        ),
        (
            "average events per session",
            format!("SELECT round(avg(\"EVENTS_COUNT\"), 6)::text FROM {table}"),
        ),
        (
            "conversion rate %",
            format!(
                "SELECT round(100.0 * count(*) FILTER (WHERE \"PURCHASE_COUNT\" > 0) / count(*), 6)::text FROM {table}"
            ),
        ),
        (
            "sessions by state",
            format!(
                "SELECT string_agg(s || '=' || n, ',' ORDER BY s) FROM \
                 (SELECT coalesce(\"SESSION_STATE\", '?') s, count(*) n FROM {table} GROUP BY 1) x"
            ),
        ),
        (
            "sessions by segment",
            format!(
                "SELECT string_agg(s || '=' || n, ',' ORDER BY s) FROM \
                 (SELECT coalesce(\"USER_SEGMENT\", '?') s, count(*) n FROM {table} GROUP BY 1) x"
            ),
        ),
        (
            "events by segment",
            format!(
                "SELECT string_agg(s || '=' || n, ',' ORDER BY s) FROM \
                 (SELECT coalesce(\"USER_SEGMENT\", '?') s, sum(\"EVENTS_COUNT\") n FROM {table} GROUP BY 1) x"
            ),
        ),
        (
            "funnel: sessions, with a cart, purchased",
            format!(
                "SELECT count(*) || ',' || count(*) FILTER (WHERE \"CART_VALUE\" IS NOT NULL) || ',' || \
                 count(*) FILTER (WHERE \"PURCHASE_COUNT\" > 0) FROM {table}"
            ),
        ),
        (
            "cart abandonment rate %",
            format!(
                "SELECT round(100.0 * count(*) FILTER (WHERE \"CART_VALUE\" IS NOT NULL AND \"PURCHASE_COUNT\" = 0) \
                 / nullif(count(*) FILTER (WHERE \"CART_VALUE\" IS NOT NULL), 0), 6)::text FROM {table}"
            ),
        ),
        (
            "revenue vs abandoned cart value",
            format!(
                "SELECT round(sum(\"CART_VALUE\") FILTER (WHERE \"PURCHASE_COUNT\" > 0)::numeric, 2) || ',' || \
                 round(sum(\"CART_VALUE\") FILTER (WHERE \"PURCHASE_COUNT\" = 0)::numeric, 2) FROM {table}"
            ),
        ),
        (
            "average order value",
            format!(
                "SELECT round((sum(\"CART_VALUE\") FILTER (WHERE \"PURCHASE_COUNT\" > 0) / \
                 nullif(sum(\"PURCHASE_COUNT\"), 0))::numeric, 4)::text FROM {table}"
            ),
        ),
        (
            "top sessions by cart value",
            format!(
                "SELECT string_agg(\"SESSION_ID\" || ':' || \"CART_VALUE\", ',') FROM \
                 (SELECT \"SESSION_ID\", \"CART_VALUE\" FROM {table} WHERE \"CART_VALUE\" IS NOT NULL \
                  ORDER BY \"CART_VALUE\" DESC, \"SESSION_ID\" LIMIT 10) x"
            ),
        ),
    ]
}

#[test]
fn the_demo_pipeline_matches_the_sql_oracle_row_for_row() -> Result<()> {
    let run = Scenario::new("oracle", 4)?;
    let (stack, names, dir, tokio) = (&run.stack, &run.names, &run.dir, &run.tokio);

    // The same seed twice: once into Kafka, once into a file for the oracle.
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
    let (counts, produced) = generate_with_copy(
        stack,
        &common,
        &["--topic", &names.events, "--write-catalog"],
        &file,
    )?;
    ensure!(counts.events == EVENTS);

    let pipeline = demo_pipeline(dir, names, "")?;
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
        "demo pipeline: {EVENTS} events produced in {produced:.1?}, processed and committed \
         {caught_up:.1?} after start ({:.1?} including start-up)",
        started.elapsed()
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

        let sessions: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", names.table))
            .fetch_one(&pool)
            .await?;
        let expected: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {oracle}"))
            .fetch_one(&pool)
            .await?;
        ensure!(expected as u64 == counts.sessions, "the oracle sees every session");
        let (different, samples) = differences(&pool, &names.table, &oracle).await?;
        ensure!(
            different == 0,
            "{different} rows differ between `{}` and the oracle; first ones:\n{}",
            names.table,
            samples.join("\n")
        );
        println!("sessions table: {sessions} rows, every column equal to the SQL oracle");

        // The dashboards' questions, over weir's table and the oracle's.
        for (question, query) in dashboard_questions(&names.table) {
            let over_oracle = query.replace(&names.table, &oracle);
            let weir: Option<String> = sqlx::query_scalar(&query).fetch_one(&pool).await?;
            let truth: Option<String> = sqlx::query_scalar(&over_oracle).fetch_one(&pool).await?;
            ensure!(weir == truth, "{question}: weir says {weir:?}, the oracle {truth:?}");
            let shown = weir.unwrap_or_default();
            let shown = if shown.len() > 70 { format!("{}…", &shown[..70]) } else { shown };
            println!("  {question}: {shown}");
        }
        // The raw events answer the simplest questions without any aggregate.
        let raw_totals: String = sqlx::query_scalar(&format!(
            "SELECT count(*) || ',' || count(*) FILTER (WHERE data->>'event_type' = 'purchase') \
             || ',' || count(DISTINCT data->>'session_id') FROM {raw}"
        ))
        .fetch_one(&pool)
        .await?;
        let table_totals: String = sqlx::query_scalar(&format!(
            "SELECT sum(\"EVENTS_COUNT\") || ',' || sum(\"PURCHASE_COUNT\") || ',' || count(*) FROM {}",
            names.table
        ))
        .fetch_one(&pool)
        .await
        .context("totals")?;
        ensure!(raw_totals == table_totals, "events, purchases, sessions: raw {raw_totals}, table {table_totals}");
        // The Avro topic, read by confluent-kafka's deserializer through the registry.
        let (keys, schema_ids) = check_avro(stack, &pool, &names.avro, &oracle).await?;
        ensure!(schema_ids.as_array().is_some_and(|ids| ids.len() == 1), "one schema id: {schema_ids}");
        println!(
            "Avro topic `{}`: {keys} keys decoded by confluent-kafka through the registry (schema id {}), latest values equal to the oracle",
            names.avro,
            schema_ids[0]
        );

        for table in [&raw, &oracle] {
            sqlx::query(&format!("DROP TABLE {table}")).execute(&pool).await?;
        }
        Ok(())
    })?;
    Ok(())
}

/// `weir run` as a process: SIGTERM while events still arrive makes it
/// finish what it holds, commit, and exit 0; run again, it goes on from
/// there and nothing is read twice or skipped.
#[test]
fn weir_run_stops_cleanly_on_sigterm_and_resumes_where_it_stopped() -> Result<()> {
    use weir_tests::pipeline::{Alive, Scenario, progress, terminate};

    let run = Scenario::new("sigterm", 2)?;
    let (stack, names) = (&run.stack, &run.names);
    let pipeline = demo_pipeline(&run.dir, names, "")?;

    // Events keep arriving while the first run is stopped: 15 s of them.
    let producer = {
        let stack = stack.clone();
        let topic = names.events.clone();
        std::thread::spawn(move || {
            generate(
                &stack,
                &[
                    "--rate",
                    "2000",
                    "--seed",
                    SEED,
                    "--sessions",
                    "100",
                    "--count",
                    "30000",
                    "--write-catalog",
                    "--topic",
                    &topic,
                ],
            )
        })
    };
    let mut first = run.spawn_weir(&pipeline, "first.log", &[])?;
    // Stop it once it has committed some work, while events still arrive.
    let waiting = Instant::now();
    loop {
        ensure!(first.alive(), "weir run exited early");
        let (committed, _) = progress(stack, &names.group(), &names.events)?;
        if committed.iter().any(Option::is_some) {
            break;
        }
        ensure!(
            waiting.elapsed() < Duration::from_secs(120),
            "weir run committed nothing in 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(
        !producer.is_finished(),
        "the producer finished before the stop; make it produce longer"
    );
    let signalled = Instant::now();
    let status = terminate(&mut first)?;
    let stopped_in = signalled.elapsed();
    ensure!(status.success(), "weir run exited with {status}");
    let counts = producer
        .join()
        .map_err(|_| anyhow::anyhow!("producer panicked"))??;

    // The second run reads from the commit on, to the end.
    let mut second = run.spawn_weir(&pipeline, "second.log", &[])?;
    wait_caught_up(
        stack,
        &names.group(),
        &names.events,
        &mut second,
        Duration::from_secs(120),
    )?;
    ensure!(terminate(&mut second)?.success());
    // What each run read, from its own final line: together exactly every event.
    let received = |log: &str| -> Result<u64> {
        run.last_log_line(log, "Pipeline stopped.")?["received"]
            .as_u64()
            .context("received")
    };
    let (a, b) = (received("first.log")?, received("second.log")?);
    ensure!(
        a + b == counts.events,
        "first run read {a}, second {b}: {} together, {} produced",
        a + b,
        counts.events
    );
    println!(
        "SIGTERM: weir run stopped cleanly in {stopped_in:.1?} (exit 0) after reading {a} events; \
         the second run read the other {b}: {} of {} events, none twice",
        a + b,
        counts.events
    );
    Ok(())
}

/// A sink that stops answering holds the pipeline back instead of filling
/// memory: with the `sessions` table locked, nothing is committed, the
/// process's memory stays bounded, and once the lock goes everything
/// arrives.
#[test]
fn a_stalled_sink_applies_backpressure_and_memory_stays_bounded() -> Result<()> {
    use weir_tests::pipeline::{Alive, Scenario, progress, terminate};

    let run = Scenario::new("backpressure", 2)?;
    let (stack, names) = (&run.stack, &run.names);
    let pipeline = demo_pipeline(&run.dir, names, "")?;
    let counts = generate(
        stack,
        &[
            "--rate",
            "0",
            "--seed",
            SEED,
            "--sessions",
            "500",
            "--count",
            "300000",
            "--write-catalog",
            "--topic",
            &names.events,
        ],
    )?;
    let mut weir = run.spawn_weir(&pipeline, "weir.log", &["--status-every", "1s"])?;
    // How many records weir has taken in, from its latest status line.
    let received = || -> Result<u64> {
        run.last_log_line("weir.log", "Running.")?["received"]
            .as_u64()
            .context("received")
    };
    let rss_mib = |pid: u32| -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };

    let pool = run.pool()?;
    run.tokio.block_on(async {
        // Lock the table as soon as weir has created it, before its first flush lands.
        let started = Instant::now();
        loop {
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(&names.table)
                .fetch_one(&pool)
                .await?;
            if exists {
                break;
            }
            ensure!(started.elapsed() < Duration::from_secs(60) && weir.alive(), "weir did not create its table");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut lock = pool.begin().await?;
        sqlx::query(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", names.table))
            .execute(&mut *lock)
            .await?;
        let (before, _) = progress(stack, &names.group(), &names.events)?;
        let mut peak: f64 = 0.0;
        let mut taken_in = Vec::new();
        let stalled = Instant::now();
        while stalled.elapsed() < Duration::from_secs(12) {
            ensure!(weir.alive(), "weir exited while the sink was stalled");
            peak = peak.max(rss_mib(weir.id()).unwrap_or(0.0));
            tokio::time::sleep(Duration::from_millis(250)).await;
            if stalled.elapsed() > Duration::from_secs(7) {
                taken_in.push(received()?);
            }
        }
        // Reading stopped: the last seconds of the stall took nothing in.
        let (first, last) = (taken_in[0], *taken_in.last().context("samples")?);
        ensure!(
            first == last && last < counts.events,
            "weir kept reading while its sink was stalled: {first} -> {last} of {}",
            counts.events
        );
        let (during, ends) = progress(stack, &names.group(), &names.events)?;
        let committed = |offsets: &[Option<i64>]| offsets.iter().map(|o| o.unwrap_or(0)).sum::<i64>();
        ensure!(
            committed(&during) == committed(&before),
            "offsets were committed while the sink could not write: {before:?} -> {during:?}"
        );
        lock.rollback().await?;
        println!(
            "backpressure: sessions table locked 12 s with {} events waiting; weir stopped reading at \
             {last} records, nothing committed meanwhile ({} of {} committed), its memory peaked at {peak:.0} MiB",
            counts.events,
            committed(&during),
            ends.iter().sum::<i64>(),
        );
        ensure!(peak < 512.0, "weir grew to {peak:.0} MiB while its sink was stalled");
        Ok(())
    })?;
    wait_caught_up(
        stack,
        &names.group(),
        &names.events,
        &mut weir,
        Duration::from_secs(120),
    )?;
    ensure!(terminate(&mut weir)?.success());
    let events: i64 = run.tokio.block_on(
        sqlx::query_scalar(&format!(
            "SELECT sum(\"EVENTS_COUNT\")::BIGINT FROM {}",
            names.table
        ))
        .fetch_one(&pool),
    )?;
    ensure!(
        events as u64 == counts.events,
        "{events} events in the table, {} produced",
        counts.events
    );
    Ok(())
}

/// With an idle timeout, a key whose newest event is older than the timeout
/// in stream time (the partition's newest record timestamp) leaves the
/// state once its last row is written; the row stays in the sinks.
#[test]
fn idle_keys_are_evicted_by_stream_time_and_their_rows_stay() -> Result<()> {
    use weir_tests::pipeline::terminate;

    let run = Scenario::new("idle", 1)?;
    let (stack, names) = (&run.stack, &run.names);
    let pipeline = demo_pipeline(&run.dir, names, "")?;
    replace_setting(&pipeline, "idle_timeout = \"30m\"", "idle_timeout = \"4s\"")?;

    let sessions = Sessions::new(&run)?;
    // Session a at t0; session b a minute later (in record time).
    let t0 = 1_790_000_000_000;
    for event in ["session_start", "page_view", "page_view"] {
        sessions.send("sess_idle_a", event, Some(t0))?;
    }
    for event in ["session_start", "page_view"] {
        sessions.send("sess_idle_b", event, Some(t0 + 60_000))?;
    }
    sessions.flush()?;

    let mut weir = run.spawn_weir(&pipeline, "weir.log", &["--status-every", "1s"])?;
    let status = || -> Result<(u64, u64)> {
        let line = run.last_log_line("weir.log", "Running.")?;
        let field = |name: &str| line[name].as_u64().unwrap_or(0);
        Ok((field("keys"), field("evicted")))
    };
    wait_caught_up(
        stack,
        &names.group(),
        &names.events,
        &mut weir,
        Duration::from_secs(120),
    )?;
    // a is more than 4 s older than the partition's stream time: evicted.
    let deadline = Instant::now() + Duration::from_secs(30);
    while status().ok() != Some((1, 1)) {
        ensure!(
            Instant::now() < deadline,
            "a was not evicted: (keys, evicted) = {:?}",
            status().ok()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ensure!(
        sessions.events("sess_idle_a")? == Some(3),
        "a's last row stays in the sinks"
    );
    ensure!(sessions.events("sess_idle_b")? == Some(2));
    ensure!(terminate(&mut weir)?.success());
    println!(
        "idle timeout 4 s: the session idle 60 s in stream time was evicted, its row (3 events) kept; the other stayed in state"
    );
    Ok(())
}

#[test]
fn a_pipeline_that_has_caught_up_sends_rows_before_the_flush_interval() -> Result<()> {
    use weir_tests::pipeline::terminate;

    let run = Scenario::new("caughtup", 1)?;
    let pipeline = demo_pipeline(&run.dir, &run.names, "")?;
    // A tenth of 30 s is 3 s: rows should come within a few seconds, far
    // sooner than the tick.
    replace_setting(
        &pipeline,
        "flush_interval = \"1s\"",
        "flush_interval = \"30s\"",
    )?;
    let mut weir = run.spawn_weir(&pipeline, "weir.log", &["--status-every", "1s"])?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while run.last_log_line("weir.log", "Running.").is_err() {
        ensure!(
            Instant::now() < deadline,
            "weir did not start: {}",
            run.log_tail("weir.log", 20)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let sessions = Sessions::new(&run)?;
    // Twice: the first flush, and one after it (the gap since the last flush).
    let mut waits = Vec::new();
    for (round, count) in [(1, 2), (2, 3)] {
        let kinds: &[&str] = if round == 1 {
            &["session_start", "page_view"]
        } else {
            &["page_view"]
        };
        for kind in kinds {
            sessions.send("sess_caught_up", kind, None)?;
        }
        sessions.flush()?;
        let sent = Instant::now();
        while sessions.events("sess_caught_up")? != Some(count) {
            ensure!(
                sent.elapsed() < Duration::from_secs(15),
                "round {round}: no row of {count} events 15 s after sending (the tick is 30 s)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        waits.push(sent.elapsed());
    }
    ensure!(terminate(&mut weir)?.success());
    println!(
        "flush interval 30 s, input quiet: rows in PostgreSQL {waits:?} after the events were sent"
    );
    Ok(())
}

/// Test events for a pipeline's input, and a look at a session's row in its
/// table.
struct Sessions<'a> {
    run: &'a Scenario,
    producer: rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    pool: sqlx::PgPool,
}

impl<'a> Sessions<'a> {
    fn new(run: &'a Scenario) -> Result<Self> {
        Ok(Self {
            run,
            producer: rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &run.stack.bootstrap)
                .create()?,
            pool: run.pool()?,
        })
    }

    /// Queues an event of `session` (keyed by it), with record time `at`
    /// when given.
    fn send(&self, session: &str, event_type: &str, at: Option<i64>) -> Result<()> {
        let value = serde_json::json!({
            "session_id": session, "event_type": event_type, "user_id": "user_00001",
        })
        .to_string();
        let mut record = rdkafka::producer::BaseRecord::to(&self.run.names.events)
            .key(session)
            .payload(&value);
        if let Some(at) = at {
            record = record.timestamp(at);
        }
        self.producer.send(record).map_err(|(error, _)| error)?;
        Ok(())
    }

    /// Waits until every queued event is in Kafka.
    fn flush(&self) -> Result<()> {
        use rdkafka::producer::Producer;
        Ok(self.producer.flush(Duration::from_secs(30))?)
    }

    /// `EVENTS_COUNT` of `session`'s row, `None` when it has none.
    fn events(&self, session: &str) -> Result<Option<i64>> {
        Ok(self.run.tokio.block_on(
            sqlx::query_scalar(&format!(
                "SELECT \"EVENTS_COUNT\" FROM {} WHERE \"SESSION_ID\" = $1",
                self.run.names.table
            ))
            .bind(session)
            .fetch_optional(&self.pool),
        )?)
    }
}

/// The `file` sink works beside the others and in their place: one process
/// runs the demo pipeline with its PostgreSQL and Kafka sinks plus a file,
/// and a second pipeline over the same input with a file alone; the newest
/// line of every key in each file equals the SQL oracle, as the table and
/// the topic do.
#[test]
fn the_file_sink_matches_the_oracle_beside_the_other_sinks_and_alone() -> Result<()> {
    let run = Scenario::new("filesink", 2)?;
    let (stack, names, dir, tokio) = (&run.stack, &run.names, &run.dir, &run.tokio);
    let count = 20_000.to_string();
    let args = [
        "--rate",
        "0",
        "--seed",
        SEED,
        "--sessions",
        "100",
        "--count",
        &count,
        "--topic",
        &names.events,
        "--write-catalog",
    ];
    ensure!(generate(stack, &args)?.events == 20_000);

    let beside = demo_pipeline(dir, names, "")?;
    let beside_file = dir.join("beside/rows.jsonl");
    std::fs::write(
        &beside,
        std::fs::read_to_string(&beside)? + "\n[sinks.file]\npath = \"beside/rows.jsonl\"\n",
    )?;
    // The second pipeline: same input, its own group, only a file.
    let alone_names = Names {
        events: names.events.clone(),
        ..Names::fresh("filealone")
    };
    let alone = demo_pipeline(dir, &alone_names, "")?;
    let text = std::fs::read_to_string(&alone)?;
    let sinks = text
        .find("[sinks.")
        .context("the demo pipeline has sinks")?;
    let rest = &text[sinks..];
    // The sink tables end where the next top-level table starts.
    let end = rest
        .find("\n[dead_letter")
        .or_else(|| rest.find("\n[["))
        .map_or(text.len(), |at| sinks + at);
    let alone_text = format!(
        "{}[sinks.file]\npath = \"alone/rows.jsonl\"\n{}",
        &text[..sinks],
        &text[end..]
    );
    ensure!(!alone_text.contains("[sinks.kafka]") && !alone_text.contains("[sinks.postgres]"));
    std::fs::write(&alone, alone_text)?;

    let mut running = Running::start_all(stack, &[&beside, &alone])?;
    for group in [names.group(), alone_names.group()] {
        wait_caught_up(
            stack,
            &group,
            &names.events,
            &mut running,
            Duration::from_secs(300),
        )?;
    }
    running.stop()?;
    let sessions = check_run(stack, tokio, names)?;

    tokio.block_on(async {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&stack.database_url)
            .await?;
        for (what, file) in [
            ("beside", beside_file),
            ("alone", dir.join("alone/rows.jsonl")),
        ] {
            // The newest line of each key is its row.
            let mut rows = std::collections::HashMap::new();
            for line in std::fs::read_to_string(&file)?.lines() {
                let line: serde_json::Value = serde_json::from_str(line)?;
                let key = line["key"].as_str().context("a key")?.to_owned();
                let mut row = line["row"].clone();
                row["SESSION_ID"] = serde_json::Value::String(key.clone());
                rows.insert(key, row.to_string());
            }
            ensure!(
                rows.len() == sessions,
                "{what}: {} keys, {sessions} sessions",
                rows.len()
            );
            let table = format!("{}_{what}_file", names.table);
            sqlx::query(&format!("CREATE TABLE {table} (LIKE {} )", names.table))
                .execute(&pool)
                .await?;
            let docs: Vec<String> = rows.into_values().collect();
            sqlx::query(&format!(
                "INSERT INTO {table} SELECT (jsonb_populate_record(NULL::{table}, doc::jsonb)).* \
                 FROM UNNEST($1::TEXT[]) AS t(doc)"
            ))
            .bind(&docs)
            .execute(&pool)
            .await?;
            // The table was checked against the oracle above.
            let (different, samples) = differences(&pool, &table, &names.table).await?;
            ensure!(
                different == 0,
                "{what}: {different} rows of the file differ from the oracle's; first ones:\n{}",
                samples.join("\n")
            );
            sqlx::query(&format!("DROP TABLE {table}"))
                .execute(&pool)
                .await?;
        }
        println!(
            "file sink: {sessions} sessions, beside the other sinks and alone, equal to the oracle"
        );
        anyhow::Ok(())
    })
}

/// Partitions added to the source topic while weir is stopped (Kafka lets
/// a topic grow, never shrink): the changelog, made with the source's
/// partition count, gets partitions for the new ones at start (and at a
/// rebalance), so their state can be restored and written. Before, the
/// restore of a new partition failed and the pipeline could not start.
#[test]
fn partitions_added_to_the_source_get_their_changelog_partitions() -> Result<()> {
    use rdkafka::ClientConfig;
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    let run = Scenario::new("grown", 2)?;
    let (stack, names, dir, tokio) = (&run.stack, &run.names, &run.dir, &run.tokio);
    let events = generated_events(stack, SEED, 20, 2000, &dir.join("events.jsonl"))?;
    // Each run's sessions are its own (a session's events stay in one
    // partition: keys move when a topic grows).
    let produce = |suffix: &str| -> Result<()> {
        // A producer of its own: it sees the topic's partitions as they are now.
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &stack.bootstrap)
            .set("enable.idempotence", "true")
            .create()?;
        for event in &events {
            let mut event = event.clone();
            let session = format!(
                "{}{suffix}",
                event["session_id"].as_str().context("session_id")?
            );
            event["session_id"] = serde_json::json!(session);
            let value = event.to_string();
            producer
                .send(BaseRecord::to(&names.events).key(&session).payload(&value))
                .map_err(|(error, _)| error)?;
        }
        producer.flush(Duration::from_secs(30))?;
        Ok(())
    };
    let pipeline = demo_pipeline(dir, names, "")?;
    // weir runs until it has committed everything in the topic.
    let run_to_end = || -> Result<()> {
        let mut running = Running::start(stack, &pipeline)?;
        wait_caught_up(
            stack,
            &names.group(),
            &names.events,
            &mut running,
            Duration::from_secs(300),
        )?;
        running.stop()
    };
    produce("")?;
    run_to_end()?;

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .create()?;
    let grown = NewPartitions::new(&names.events, 4);
    for result in tokio.block_on(admin.create_partitions([&grown], &AdminOptions::new()))? {
        result.map_err(|(_, error)| anyhow::anyhow!("adding partitions: {error}"))?;
    }
    produce("-b")?;
    let (_, ends) = progress(stack, &names.group(), &names.events)?;
    ensure!(
        ends.len() == 4 && ends[2] > 0 && ends[3] > 0,
        "the new partitions hold events: {ends:?}"
    );
    run_to_end()?;
    let sessions = check_run(stack, tokio, names)?;
    println!("a source grown from 2 to 4 partitions: {sessions} sessions equal the oracle");
    Ok(())
}

#[test]
fn a_group_is_never_caught_up_on_a_topic_that_does_not_exist() -> Result<()> {
    // A topic the broker does not know has no partitions, so nothing is
    // behind on it: the progress must be an error, or a test waiting for a
    // misnamed topic would pass before the pipeline has done anything.
    let run = Scenario::new("progress", 3)?;
    let (stack, names) = (&run.stack, &run.names);
    let missing = format!("{}.missing", names.events);
    let error = progress(stack, &names.group(), &missing)
        .err()
        .context("the progress on a missing topic is an error")?;
    ensure!(
        format!("{error:#}").contains("Unknown topic"),
        "the error names the cause: {error:#}"
    );
    let (committed, ends) = progress(stack, &names.group(), &names.events)?;
    ensure!(
        committed == [None, None, None] && ends == [0, 0, 0],
        "a new topic's three partitions, nothing committed: {committed:?}, {ends:?}"
    );
    Ok(())
}
