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

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use weir_tests::Stack;

use crate::freshness::{Freshness, RowLog, produce_paced};
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
    let throughput = run_to_end(
        &stack,
        &names.group(),
        &names.events,
        &pipeline,
        args.events,
    )?;
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
    let Freshness {
        p50,
        p99,
        max,
        events,
    } = freshness(stack, dir, tag, rate, args)?;
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
    let consumer: BaseConsumer = stack
        .kafka_client()
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

/// Runs `pipeline` (its consumer group `group`) over the `events` records
/// of `topic`; events per second from its first commit to its last.
pub fn run_to_end(
    stack: &Stack,
    group: &str,
    topic: &str,
    pipeline: &std::path::Path,
    events: u64,
) -> Result<f64> {
    let running = Running::start(stack, pipeline)?;
    let timed = time_commits(
        stack,
        group,
        topic,
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
/// the contestant stopped, or after 15 minutes.
pub fn time_commits<T>(
    stack: &Stack,
    group: &str,
    topic: &str,
    events: u64,
    alive: impl FnMut() -> bool,
    at_first_commit: impl FnOnce() -> Result<T>,
) -> Result<(f64, i64, T)> {
    let timed = time_from_first_commit(stack, (group, topic), alive, at_first_commit, |done| {
        Ok(done as u64 >= events)
    })?;
    Ok((timed.seconds, timed.at_end - timed.at_start, timed.first))
}

/// A span timed by [`time_from_first_commit`].
pub struct Timed<T> {
    /// Seconds from the first commit until done.
    pub seconds: f64,
    /// Records the group had committed at its first commit.
    pub at_start: i64,
    /// Records it had committed when done.
    pub at_end: i64,
    /// What `at_first_commit` returned.
    pub first: T,
}

/// Times `group` reading `topic` from its first commit until `done` (given
/// the records committed so far) says the contestant is done. Fails when
/// `alive` says the contestant stopped, or after 15 minutes. One client
/// asks for the offsets every 20 ms (a new client per look would load the
/// machine being measured).
pub fn time_from_first_commit<T>(
    stack: &Stack,
    (group, topic): (&str, &str),
    mut alive: impl FnMut() -> bool,
    at_first_commit: impl FnOnce() -> Result<T>,
    mut done: impl FnMut(i64) -> Result<bool>,
) -> Result<Timed<T>> {
    let reader: BaseConsumer = stack.kafka_client().set("group.id", group).create()?;
    let committed = || -> Result<i64> {
        let progress = weir::kafka::group_progress(&reader, topic, Duration::from_secs(10))?;
        Ok(progress.iter().map(|p| p.committed.unwrap_or(0)).sum())
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    let (started, at_start) = loop {
        // A topic the contestant has just made (a repartition topic) may
        // not have its leaders yet: asked again until the first commit.
        let committed = match committed() {
            Ok(committed) if committed > 0 => break (Instant::now(), committed),
            other => other,
        };
        if !alive() || Instant::now() > deadline {
            bail!("{group} committed nothing ({committed:?})");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let first = at_first_commit()?;
    loop {
        let at_end = committed()?;
        if done(at_end)? {
            return Ok(Timed {
                seconds: started.elapsed().as_secs_f64(),
                at_start,
                at_end,
                first,
            });
        }
        if !alive() || Instant::now() > deadline {
            bail!("{group} stopped at {at_end} records committed, not done");
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
) -> Result<Freshness> {
    let names = Names::fresh(&format!("{tag}-f"));
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(create_topic(stack, &names.events, args.partitions))?;
    let pipeline: PathBuf = demo_pipeline(dir, &names, "")?;
    // The table exists once weir has started; its changes are recorded from then.
    let mut running = Running::start(stack, &pipeline)?;
    let log = tokio.block_on(RowLog::start(stack, &names.table))?;
    let run = || -> Result<_> {
        let paced = produce_paced(
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
        Ok(paced)
    };
    let paced = match run() {
        Ok(paced) => paced,
        Err(error) => {
            // The slot would keep the server's log until the next run.
            tokio.block_on(log.drop_slot()).ok();
            return Err(error);
        }
    };
    let writes = tokio.block_on(log.read())?;
    Freshness::of(&paced.sent, &writes)
}
