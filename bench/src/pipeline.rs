//! `weir-bench pipeline`: the stock pipeline end to end on the local stack.
//!
//! 1. **Limit**: N pre-produced events merely consumed from the topic (a
//!    consumer that touches every value and does nothing else).
//! 2. **Throughput**: `weir run` of the demo pipeline over the same N events,
//!    timed from its first committed flush until its committed offsets reach
//!    the end of the topic — offsets are committed only after both sinks have
//!    confirmed, so that is when every row is durable. Start-up (loading
//!    plugins, connecting) is left out by starting the clock at the first
//!    commit and counting only the records after it.
//! 3. **Freshness**: events produced at half the measured throughput into a
//!    running pipeline, measured after a warm-up; a trigger on the
//!    `sessions` table records when each row version was written; an event's
//!    freshness is the time from its production to the first row of its
//!    session counting it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use weir_tests::Stack;
use weir_tests::pipeline::{Names, Running, create_topic, demo_pipeline, generate, wait_caught_up};

/// Options of `weir-bench pipeline`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events pre-produced for the throughput runs.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Live sessions in the generated stream.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// How long the freshness run measures.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    freshness_for: Duration,
    /// How long the freshness run produces before it measures (start-up
    /// effects — the first fetches, the producer's first requests — are not
    /// the steady state being measured).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    warm_up: Duration,
    /// Measure freshness only, at this rate (events/s), skipping the
    /// throughput runs (to compare settings quickly).
    #[arg(long)]
    freshness_at: Option<f64>,
    /// After the freshness run, print weir's time histograms (sums and
    /// counts): plugin calls, batches, each sink's writes, flushes, commits.
    #[arg(long)]
    breakdown: bool,
}

/// Runs the three measurements and prints them.
pub fn run(args: &Args) -> Result<()> {
    let stack = Stack::from_env();
    let tokio = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(weir_tests::unique("weir-bench-pipeline"));
    std::fs::create_dir_all(&dir)?;
    println!(
        "weir-bench pipeline: {} events, {} partitions, {} live sessions",
        args.events, args.partitions, args.sessions
    );

    // Every topic of this run holds `tag`; they are deleted at the end.
    let tag = crate::race::tag("bench");
    if let Some(rate) = args.freshness_at {
        produce(&stack, &crate::race::tag("catalog-only"), 0, args.sessions)?;
        report_freshness(&stack, &dir, &tag, rate, args)?;
        std::fs::remove_dir_all(&dir)?;
        return crate::race::delete_tagged(&stack, &tag);
    }

    // The input, produced once.
    let names = Names::fresh(&tag);
    tokio.block_on(create_topic(&stack, &names.events, args.partitions))?;
    let produced = Instant::now();
    produce(&stack, &names.events, args.events, args.sessions)?;
    println!(
        "  produced {} events in {:.1?}",
        args.events,
        produced.elapsed()
    );

    let raw = consume_all(&stack, &names.events, args.events)?;
    println!("  limit: plain consume            {:>9.0} events/s", raw);

    let pipeline = demo_pipeline(&dir, &names, "")?;
    let throughput = run_to_end(&stack, &names, &pipeline, args.events)?;
    println!(
        "  weir run, demo pipeline         {:>9.0} events/s end to end ({:.0} % of the limit)",
        throughput,
        100.0 * throughput / raw
    );

    report_freshness(&stack, &dir, &tag, throughput / 2.0, args)?;
    std::fs::remove_dir_all(&dir)?;
    crate::race::delete_tagged(&stack, &tag)?;
    Ok(())
}

/// Measures freshness at `rate` and prints it.
fn report_freshness(
    stack: &Stack,
    dir: &std::path::Path,
    tag: &str,
    rate: f64,
    args: &Args,
) -> Result<()> {
    let (p50, p99, max, events) = freshness(stack, dir, tag, rate, args)?;
    if args.breakdown {
        // Where the time went: weir's own histograms (the pipelines of this
        // process), as sums and counts.
        let text = weir::telemetry::metrics::render(&weir::telemetry::metrics::install());
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && (l.contains("_sum{") || l.contains("_count{")))
        {
            println!("    {line}");
        }
    }
    println!(
        "  freshness at {rate:.0} events/s, {events} events after a warm-up: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (flush interval 1000 ms)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
    );
    Ok(())
}

/// Pre-produces `events` demo events (seed 42, `sessions` live sessions) into
/// `topic` as fast as the broker takes them, and the catalog they refer to.
pub fn produce(stack: &Stack, topic: &str, events: u64, sessions: usize) -> Result<()> {
    let (count, sessions) = (events.to_string(), sessions.to_string());
    generate(
        stack,
        &[
            "--rate",
            "0",
            "--seed",
            "42",
            "--sessions",
            &sessions,
            "--count",
            &count,
            "--write-catalog",
            "--topic",
            topic,
        ],
    )?;
    Ok(())
}

/// Events per second at which one consumer reads `topic` from the start to its end.
pub fn consume_all(stack: &Stack, topic: &str, events: u64) -> Result<f64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .set("group.id", weir_tests::unique("weir-bench-raw"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("queued.max.messages.kbytes", "65536")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut read = 0u64;
    let mut bytes = 0usize;
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while read < events {
        if Instant::now() > deadline {
            bail!("plain consume read {read} of {events} events in 10 minutes");
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message?;
            started.get_or_insert_with(Instant::now);
            bytes += message.payload().map_or(0, <[u8]>::len);
            read += 1;
        }
    }
    let seconds = started.expect("read something").elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    Ok(read as f64 / seconds)
}

/// Runs the pipeline over the topic; events per second from its first commit to its last.
fn run_to_end(
    stack: &Stack,
    names: &Names,
    pipeline: &std::path::Path,
    events: u64,
) -> Result<f64> {
    let running = Running::start(stack, pipeline)?;
    let timed = time_commits(
        stack,
        &names.group(),
        &names.events,
        events,
        || running.is_running(),
        || Ok(()),
    );
    running.stop()?;
    let (seconds, counted, ()) = timed?;
    Ok(counted as f64 / seconds)
}

/// Waits until `group` has committed `events` records of `topic`, timing
/// from its first commit: the seconds from then, the records committed
/// since, and what `at_first_commit` returned then. Fails when `alive` says
/// the contestant stopped, or after 15 minutes. One client asks for the
/// offsets every 20 ms (a new client per look would load the machine being
/// measured).
pub fn time_commits<T>(
    stack: &Stack,
    group: &str,
    topic: &str,
    events: u64,
    mut alive: impl FnMut() -> bool,
    at_first_commit: impl FnOnce() -> Result<T>,
) -> Result<(f64, i64, T)> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .set("group.id", group)
        .create()?;
    let committed = || -> Result<i64> {
        let progress = weir::engine::group_progress(&reader, topic, Duration::from_secs(10))?;
        Ok(progress.iter().map(|p| p.committed.unwrap_or(0)).sum())
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    let (started, at_start) = loop {
        let done = committed()?;
        if done > 0 {
            break (Instant::now(), done);
        }
        if !alive() || Instant::now() > deadline {
            bail!("{group} committed nothing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let first = at_first_commit()?;
    loop {
        let done = committed()?;
        if done as u64 >= events {
            return Ok((started.elapsed().as_secs_f64(), done - at_start, first));
        }
        if !alive() || Instant::now() > deadline {
            bail!("{group} stopped at {done} of {events} events");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Produces at `rate` into a running pipeline; returns p50, p99 and max
/// freshness, and how many events were measured.
fn freshness(
    stack: &Stack,
    dir: &std::path::Path,
    tag: &str,
    rate: f64,
    args: &Args,
) -> Result<(Duration, Duration, Duration, usize)> {
    let names = Names::fresh(&format!("{tag}-f"));
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(create_topic(stack, &names.events, args.partitions))?;
    let pipeline: PathBuf = demo_pipeline(dir, &names, "")?;
    // The table exists once weir has started; the trigger goes on it then.
    let mut running = Running::start(stack, &pipeline)?;
    tokio.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&stack.database_url)
            .await?;
        let table = &names.table;
        for _ in 0..600 {
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(table)
                .fetch_one(&pool)
                .await?;
            if exists {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for statement in [
            format!("CREATE TABLE {table}_writes (session TEXT, events BIGINT, written_at TIMESTAMPTZ)"),
            // One statement-level trigger per kind of write, reading the
            // statement's rows from its transition table: the time is taken
            // once the statement has written them all (just before its
            // commit), and the measuring costs one INSERT per statement, not
            // a PL/pgSQL call per row.
            format!(
                "CREATE FUNCTION {table}_log() RETURNS trigger AS $$ BEGIN \
                 INSERT INTO {table}_writes SELECT \"SESSION_ID\", \"EVENTS_COUNT\", clock_timestamp() FROM written; \
                 RETURN NULL; END $$ LANGUAGE plpgsql"
            ),
            format!(
                "CREATE TRIGGER {table}_log_inserts AFTER INSERT ON {table} \
                 REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION {table}_log()"
            ),
            format!(
                "CREATE TRIGGER {table}_log_updates AFTER UPDATE ON {table} \
                 REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION {table}_log()"
            ),
        ] {
            sqlx::query(&statement).execute(&pool).await?;
        }
        anyhow::Ok(())
    })?;

    // Produce at `rate`, remembering when each (session, n-th event) left.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    let mut generator = weir::generate::Generator::new(
        StdRng::seed_from_u64(42),
        args.sessions,
        chrono::Utc::now(),
        (1e6 / rate) as i64,
    );
    let mut sent: Vec<(String, i64, SystemTime)> = Vec::new();
    let mut per_session: HashMap<String, i64> = HashMap::new();
    let began = Instant::now();
    let mut produced = 0u64;
    while began.elapsed() < args.warm_up + args.freshness_for {
        let event = generator.next_event();
        let value = serde_json::to_vec(&event)?;
        let due = Duration::from_secs_f64(produced as f64 / rate);
        produced += 1;
        if let Some(ahead) = due.checked_sub(began.elapsed()) {
            std::thread::sleep(ahead);
        }
        let n = per_session.entry(event.session_id.clone()).or_default();
        *n += 1;
        let record = BaseRecord::to(&names.events)
            .key(event.session_id.as_str())
            .payload(&value);
        weir::generate::output::send_waiting(&producer, record)?;
        // Every event counts for its session; only those after the warm-up are measured.
        if began.elapsed() >= args.warm_up {
            sent.push((event.session_id, *n, SystemTime::now()));
        }
    }
    producer.flush(Duration::from_secs(30))?;
    // Wait until everything is in the table.
    wait_caught_up(
        stack,
        &names.group(),
        &names.events,
        &mut running,
        Duration::from_secs(120),
    )?;
    running.stop()?;

    // (session, events counted, written at: µs since the epoch)
    let writes: Vec<(String, i64, i64)> = tokio.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&stack.database_url)
            .await?;
        let rows = sqlx::query_as(&format!(
            "SELECT session, events, (extract(epoch FROM written_at) * 1e6)::BIGINT \
             FROM {}_writes ORDER BY session, events",
            names.table
        ))
        .fetch_all(&pool)
        .await?;
        anyhow::Ok(rows)
    })?;
    // Per session, row versions in increasing event counts; an event is
    // fresh once a version counts it.
    let mut versions: HashMap<&str, Vec<(i64, SystemTime)>> = HashMap::new();
    for (session, events, at) in &writes {
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(*at)?);
        versions.entry(session).or_default().push((*events, at));
    }
    let mut delays: Vec<Duration> = Vec::with_capacity(sent.len());
    for (session, n, produced) in &sent {
        let list = versions
            .get(session.as_str())
            .context("a session never reached the table")?;
        let first = list.partition_point(|(events, _)| events < n);
        let (_, written) = list
            .get(first)
            .context("an event never reached the table")?;
        delays.push(written.duration_since(*produced).unwrap_or_default());
    }
    delays.sort_unstable();
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    Ok((
        at(0.5),
        at(0.99),
        *delays.last().context("no events")?,
        delays.len(),
    ))
}
