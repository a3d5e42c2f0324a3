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
//!    running pipeline, measured after a warm-up; PostgreSQL's log of the
//!    table's changes (logical decoding) gives each row version's commit
//!    time; an event's freshness is the time from its production to the
//!    commit of the first row of its session counting it.

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

/// An event the paced producer sent: its session, its place in the
/// session (the n-th event counted), and when it left.
pub struct Sent {
    pub session: String,
    pub n: i64,
    pub at: SystemTime,
}

/// Produces demo events (seed 42, `sessions` live sessions) into `topic` at
/// `rate` for the warm-up and then the measured span; returns the events of
/// the measured span.
///
/// The events are rendered to JSON before the clock starts: the load
/// generator shares the machine with what it measures, and rendering them
/// on the fly cost about a fifth of both cores at 87 000 events/s. Sending
/// is then an enqueue into the producer's buffer.
pub fn produce_paced(
    stack: &Stack,
    topic: &str,
    rate: f64,
    sessions: usize,
    (warm_up, measured): (Duration, Duration),
) -> Result<Vec<Sent>> {
    let total = (rate * (warm_up + measured).as_secs_f64()).ceil() as usize;
    let warm_up = (rate * warm_up.as_secs_f64()).ceil() as usize;
    let mut generator = weir::generate::Generator::new(
        StdRng::seed_from_u64(42),
        sessions,
        chrono::Utc::now(),
        (1e6 / rate) as i64,
    );
    // (session, n-th event of the session, JSON value)
    let mut per_session: HashMap<String, i64> = HashMap::new();
    let mut events: Vec<(String, i64, Vec<u8>)> = Vec::with_capacity(total);
    for _ in 0..total {
        let event = generator.next_event();
        let value = serde_json::to_vec(&event)?;
        let n = per_session.entry(event.session_id.clone()).or_default();
        *n += 1;
        events.push((event.session_id, *n, value));
    }
    drop(per_session);

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    let mut sent: Vec<Sent> = Vec::with_capacity(total - warm_up.min(total));
    let began = Instant::now();
    for (index, (session, n, value)) in events.into_iter().enumerate() {
        let due = Duration::from_secs_f64(index as f64 / rate);
        if let Some(ahead) = due.checked_sub(began.elapsed()) {
            std::thread::sleep(ahead);
        }
        let record = BaseRecord::to(topic).key(session.as_str()).payload(&value);
        weir::generate::output::send_waiting(&producer, record)?;
        // Every event counts for its session; only those after the warm-up are measured.
        if index >= warm_up {
            sent.push(Sent {
                session,
                n,
                at: SystemTime::now(),
            });
        }
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(sent)
}

/// The row versions a pipeline commits to its table, each with its
/// transaction's commit time, read from PostgreSQL's write-ahead log through
/// a logical replication slot (`test_decoding`). The log is decoded only
/// when read, after the run: measuring adds no work to the statements being
/// measured (a trigger writing a row per row version doubled the rows each
/// flush writes), and a row counts from its commit, when readers first see it.
struct RowLog {
    pool: sqlx::PgPool,
    slot: String,
    table: String,
}

/// Slots of this benchmark are named so; a run that failed leaves its slot
/// behind, and a slot keeps the server's write-ahead log until dropped.
const SLOT_PREFIX: &str = "weir_bench_";

impl RowLog {
    /// Starts recording the changes of `table` (it must exist, or appear
    /// within a minute).
    async fn start(stack: &Stack, table: &str) -> Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&stack.database_url)
            .await?;
        let level: String = sqlx::query_scalar("SHOW wal_level")
            .fetch_one(&pool)
            .await?;
        if level != "logical" {
            bail!(
                "PostgreSQL runs with wal_level = {level}; the freshness measurement reads row changes \
                 from its log and needs `logical` (the stack sets it: restart it with \
                 `cargo xtask stack down && cargo xtask stack up`)"
            );
        }
        sqlx::query(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name LIKE $1 AND NOT active",
        )
        .bind(format!("{SLOT_PREFIX}%"))
        .execute(&pool)
        .await?;
        for _ in 0..600 {
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(table)
                .fetch_one(&pool)
                .await?;
            if exists {
                let slot = format!("{SLOT_PREFIX}{}", std::process::id());
                sqlx::query("SELECT pg_create_logical_replication_slot($1, 'test_decoding')")
                    .bind(&slot)
                    .execute(&pool)
                    .await?;
                return Ok(Self {
                    pool,
                    slot,
                    table: table.to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("table {table} did not appear within a minute")
    }

    /// Every row version of the table since [`Self::start`]: (session, events
    /// counted, commit time). Drops the slot.
    async fn read(self) -> Result<Vec<(String, i64, SystemTime)>> {
        let changes: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
            "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL, \
             'include-timestamp', '1', 'skip-empty-xacts', '1')",
        )
        .bind(&self.slot)
        .fetch_all(&self.pool)
        .await;
        sqlx::query("SELECT pg_drop_replication_slot($1)")
            .bind(&self.slot)
            .execute(&self.pool)
            .await?;
        parse_changes(&changes?, &self.table)
    }
}

/// `test_decoding`'s lines, as (session, events counted, commit time) of the
/// row versions of `table`: `BEGIN`, then a line per row
/// (`table public.t: INSERT: "SESSION_ID"[text]:'…' … "EVENTS_COUNT"[bigint]:9 …`),
/// then `COMMIT 123 (at 2026-11-26 11:40:01.123456+00)`.
fn parse_changes(lines: &[String], table: &str) -> Result<Vec<(String, i64, SystemTime)>> {
    let prefix = format!("table public.{table}: ");
    let field = |line: &str, name: &str| -> Option<String> {
        let start = line.find(name)? + name.len();
        let rest = &line[start..];
        let end = rest.find(' ').unwrap_or(rest.len());
        Some(rest[..end].trim_matches('\'').to_owned())
    };
    let mut rows = Vec::new();
    let mut open: Vec<(String, i64)> = Vec::new();
    for line in lines {
        if line.starts_with("BEGIN") {
            open.clear();
        } else if let Some(row) = line.strip_prefix(&prefix) {
            let session =
                field(row, "\"SESSION_ID\"[text]:").context("a row without SESSION_ID")?;
            let events = field(row, "\"EVENTS_COUNT\"[bigint]:")
                .context("a row without EVENTS_COUNT")?
                .parse()?;
            open.push((session, events));
        } else if let Some(rest) = line.strip_prefix("COMMIT") {
            let at = rest
                .split_once("(at ")
                .and_then(|(_, at)| at.strip_suffix(')'))
                .context("a COMMIT without its time (include-timestamp)")?;
            let at = chrono::DateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S%.f%#z")
                .with_context(|| format!("commit time {at:?}"))?;
            let at = SystemTime::from(at.with_timezone(&chrono::Utc));
            rows.extend(
                open.drain(..)
                    .map(|(session, events)| (session, events, at)),
            );
        }
    }
    Ok(rows)
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
    // The table exists once weir has started; its changes are recorded from then.
    let mut running = Running::start(stack, &pipeline)?;
    let log = tokio.block_on(RowLog::start(stack, &names.table))?;
    let sent = produce_paced(
        stack,
        &names.events,
        rate,
        args.sessions,
        (args.warm_up, args.freshness_for),
    )?;
    // Wait until everything is in the table.
    wait_caught_up(
        stack,
        &names.group(),
        &names.events,
        &mut running,
        Duration::from_secs(120),
    )?;
    running.stop()?;

    // (session, events counted, committed at)
    let writes = tokio.block_on(log.read())?;
    // Per session, row versions in increasing event counts; an event is
    // fresh once a version counts it.
    let mut versions: HashMap<&str, Vec<(i64, SystemTime)>> = HashMap::new();
    for (session, events, at) in &writes {
        versions.entry(session).or_default().push((*events, *at));
    }
    for list in versions.values_mut() {
        list.sort_unstable();
    }
    let mut delays: Vec<Duration> = Vec::with_capacity(sent.len());
    for Sent {
        session,
        n,
        at: produced,
    } in &sent
    {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_versions_take_their_transaction_commit_time() {
        let lines: Vec<String> = [
            "BEGIN 741",
            "table public.demo_x: INSERT: \"SESSION_ID\"[text]:'sess_a' \"USER_ID\"[text]:'user_1' \"EVENTS_COUNT\"[bigint]:3 \"CART_VALUE\"[double precision]:null",
            "table public.other: INSERT: \"SESSION_ID\"[text]:'sess_z' \"EVENTS_COUNT\"[bigint]:1",
            "table public.demo_x: UPDATE: \"SESSION_ID\"[text]:'sess_b' \"EVENTS_COUNT\"[bigint]:12",
            "COMMIT 741 (at 2026-11-26 11:40:01.250000+00)",
            "BEGIN 742",
            "table public.demo_x: UPDATE: \"SESSION_ID\"[text]:'sess_a' \"EVENTS_COUNT\"[bigint]:5",
            "COMMIT 742 (at 2026-11-26 12:40:02.5+01)",
        ]
        .map(str::to_owned)
        .to_vec();
        let at = |s: u64, ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(s * 1000 + ms);
        // 2026-11-26T11:40:01Z is 1 795 693 201 s after the epoch.
        assert_eq!(
            parse_changes(&lines, "demo_x").unwrap(),
            vec![
                ("sess_a".to_owned(), 3, at(1_795_693_201, 250)),
                ("sess_b".to_owned(), 12, at(1_795_693_201, 250)),
                ("sess_a".to_owned(), 5, at(1_795_693_202, 500)),
            ]
        );
    }
}
