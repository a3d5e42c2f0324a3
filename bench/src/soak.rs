//! `weir-bench soak`: the stock pipeline, run as `weir run`, fed at a fixed
//! rate for a long time while a fault strikes every few minutes, in turn: a
//! broker restart, a PostgreSQL outage, `kill -9` and a restart of weir, a
//! swap and a rollback of the aggregator, a burst of hostile records. It
//! prints, every 10 s, the lag and weir's resident memory; after each fault,
//! how long the pipeline took to catch up again; during the PostgreSQL
//! outage, how many Avro messages each key got; at the end, the memory's
//! growth over the last 20 minutes and the whole output compared with the
//! oracle (the plain fold of `tests/support/oracle`, over every event of
//! the input topic).
//!
//! It stops the stack's services through the xtask binary (`WEIR_XTASK`, or
//! the one `cargo xtask` built beside this benchmark).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use weir_tests::oracle::fold::{Event, SessionRow, fold};
use weir_tests::oracle::{COLUMNS, check_avro, differences};
use weir_tests::pipeline::{
    Alive, Scenario, count_per_key, demo_pipeline, plugin_dir, progress, replace_setting,
    terminate, wait_caught_up,
};

/// The admin token of the soak's `weir run`.
const TOKEN: &str = "soak";

/// The catalog and the events' seed (the catalog every test writes).
const SEED: &str = "42";

/// Options of `weir-bench soak`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events per second produced.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// How long events are produced.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time between two faults.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    fault_every: Duration,
    /// How long the broker and PostgreSQL stay down.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    outage: Duration,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Sessions live at once in the generated stream.
    #[arg(long, default_value_t = 2_000)]
    sessions: u64,
    /// The aggregator's `idle_timeout`: short enough that state reaches a
    /// steady size within the run (the demo's 30 minutes would have every
    /// session of a 30-minute run held at its end, and memory grow with
    /// them); long beyond any pause within a generated session.
    #[arg(long, default_value = "2m")]
    idle_timeout: String,
    /// The faults, struck in this order and then again from the first
    /// [default: all of them].
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(FAULTS))]
    faults: Vec<String>,
}

/// The faults, in the order they strike (then again from the first).
const FAULTS: [&str; 5] = [
    "PostgreSQL outage",
    "broker restart",
    "kill -9 and restart",
    "swap and rollback",
    "hostile burst",
];

/// The running `weir run` and what it takes to start it again.
struct Weir {
    child: std::process::Child,
    /// Its admin API.
    admin: String,
    /// Processes started so far (each logs to `weir-<n>.log`).
    starts: usize,
}

/// One sample of the pipeline.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    lag: i64,
    rss_mib: f64,
    /// Which `weir run` process it measured.
    process: usize,
}

/// Runs the soak and prints what it saw.
pub fn run(args: &Args) -> Result<()> {
    find_xtask()?;
    let run = Scenario::new("soak", args.partitions)?;
    run.write_catalog(SEED)?;
    let pipeline = demo_pipeline(&run.dir, &run.names, "")?;
    replace_setting(
        &pipeline,
        "idle_timeout = \"30m\"",
        &format!("idle_timeout = \"{}\"", args.idle_timeout),
    )?;
    let weir = Arc::new(Mutex::new(start_weir(&run, &pipeline, 0)?));
    let count = args.rate * args.duration.as_secs();
    println!(
        "weir-bench soak: {} events/s for {:?} ({count} events, {} sessions live, {} partitions, \
         idle_timeout {}), a fault every {:?}: {}",
        args.rate,
        args.duration,
        args.sessions,
        args.partitions,
        args.idle_timeout,
        args.fault_every,
        if args.faults.is_empty() {
            FAULTS.join(", ")
        } else {
            args.faults.join(", ")
        }
    );
    let faults: Vec<&str> = if args.faults.is_empty() {
        FAULTS.to_vec()
    } else {
        args.faults.iter().map(String::as_str).collect()
    };
    let generator = run.start_generator(SEED, count, args.rate, args.sessions);
    let started = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stack, names, weir, samples, done) = (
            run.stack.clone(),
            run.names.clone(),
            Arc::clone(&weir),
            Arc::clone(&samples),
            Arc::clone(&done),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let (pid, process, admin) = {
                    let weir = weir.lock().expect("not poisoned");
                    (weir.child.id(), weir.starts, weir.admin.clone())
                };
                let lag = lag(&stack, &names).unwrap_or(-1);
                let sample = Sample {
                    at: started.elapsed(),
                    lag,
                    rss_mib: rss_mib(pid).unwrap_or(f64::NAN),
                    process,
                };
                let (keys, bytes) = state_gauges(&admin)
                    .map_or(("?".into(), "?".into()), |(k, b)| {
                        (k.to_string(), format!("{:.1}", b / 1048576.0))
                    });
                println!(
                    "  {:>6.0} s  lag {:>8}  weir rss {:>6.1} MiB  keys held {keys} ({bytes} MiB)",
                    sample.at.as_secs_f64(),
                    sample.lag,
                    sample.rss_mib
                );
                samples.lock().expect("not poisoned").push(sample);
                std::thread::sleep(Duration::from_secs(10));
            }
        })
    };

    // The faults, each after `fault_every`, while events are produced.
    let mut fault = 0;
    loop {
        let at = args.fault_every * (fault as u32 + 1);
        if at + args.fault_every / 2 > args.duration {
            break;
        }
        std::thread::sleep(at.saturating_sub(started.elapsed()));
        let name = faults[fault % faults.len()];
        println!(
            "  {:>6.0} s  fault: {name}",
            started.elapsed().as_secs_f64()
        );
        strike(name, &run, &pipeline, &weir, args)?;
        let recovered = catch_up_time(&run, &weir, args.rate)?;
        println!(
            "  {:>6.0} s  fault: {name}: the pipeline caught up {recovered:.0?} after it ended",
            started.elapsed().as_secs_f64()
        );
        fault += 1;
    }

    let produced = generator
        .join()
        .map_err(|_| anyhow::anyhow!("the generator panicked"))??;
    {
        let mut weir = weir.lock().expect("not poisoned");
        wait_caught_up(
            &run.stack,
            &run.names.group(),
            &run.names.events,
            &mut weir.child,
            Duration::from_secs(600),
        )?;
    }
    done.store(true, Ordering::Relaxed);
    sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the sampler panicked"))?;
    let stopping = Instant::now();
    let status = terminate(&mut weir.lock().expect("not poisoned").child)?;
    println!(
        "  produced {} events in {:.0?}; caught up; SIGTERM ended weir with {status} in {:.1?}",
        produced.events,
        started.elapsed(),
        stopping.elapsed()
    );
    report_memory(&samples.lock().expect("not poisoned"), args.duration);
    compare_with_oracle(&run)?;
    ensure!(status.success(), "weir did not exit 0");
    // A 30-minute input is some 17 GB on the broker: gone once checked (a
    // failed run keeps it for a look).
    crate::race::delete_tagged(&run.stack, &run.names.pipeline)?;
    crate::race::delete_tagged(&run.stack, &run.names.table)?;
    run.tokio.block_on(async {
        let pool = run.stack.pool(1).await?;
        sqlx::query(&format!("DROP TABLE IF EXISTS \"{}\"", run.names.table))
            .execute(&pool)
            .await?;
        anyhow::Ok(())
    })?;
    Ok(())
}

/// The keys a running weir holds in state and their bytes (the
/// `weir_state_keys` and `weir_state_bytes` gauges of its `/metrics`,
/// summed over pipelines).
fn state_gauges(admin: &str) -> Result<(u64, f64)> {
    let metrics = reqwest::blocking::Client::new()
        .get(format!("{admin}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()?
        .text()?;
    let sum = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Ok((sum("weir_state_keys{") as u64, sum("weir_state_bytes{")))
}

/// Makes sure the stack's services can be stopped and started.
fn find_xtask() -> Result<()> {
    if weir_tests::xtask_binary().is_none() {
        bail!(
            "the soak stops and starts the stack's services through the xtask binary: run \
             `cargo xtask stack up` once (which builds it), or set WEIR_XTASK"
        );
    }
    Ok(())
}

/// Starts `weir run` of `pipeline`, process number `starts`.
fn start_weir(run: &Scenario, pipeline: &std::path::Path, starts: usize) -> Result<Weir> {
    let log = format!("weir-{starts}.log");
    let child = run.spawn_weir(pipeline, &log, &["--admin-token", TOKEN])?;
    let admin = run.admin_url(&log)?;
    Ok(Weir {
        child,
        admin,
        starts,
    })
}

/// Makes fault `name` happen, and ends it.
fn strike(
    name: &str,
    run: &Scenario,
    pipeline: &std::path::Path,
    weir: &Mutex<Weir>,
    args: &Args,
) -> Result<()> {
    match name {
        "PostgreSQL outage" => {
            let before = ends(run, &run.names.avro)?;
            run.stack.stop_service("postgres")?;
            std::thread::sleep(args.outage);
            let after = ends(run, &run.names.avro)?;
            run.stack.start_service("postgres")?;
            let (messages, keys, most) =
                count_per_key(&run.stack, &run.names.avro, &before, &after)?;
            println!(
                "            during the {:?} outage the Avro topic got {messages} messages for \
                 {keys} keys, at most {most} per key ({} flush intervals)",
                args.outage,
                args.outage.as_secs()
            );
        }
        "broker restart" => {
            run.stack.stop_service("kafka")?;
            std::thread::sleep(args.outage.min(Duration::from_secs(30)));
            run.stack.start_service("kafka")?;
        }
        "kill -9 and restart" => {
            let mut weir = weir.lock().expect("not poisoned");
            weir.child.kill()?;
            weir.child.wait()?;
            let starts = weir.starts + 1;
            *weir = start_weir(run, pipeline, starts)?;
        }
        "swap and rollback" => {
            let admin = weir.lock().expect("not poisoned").admin.clone();
            let v2 = plugin_dir().join("session_stats_v2.wasm");
            let pipeline_name = run.names.pipeline.clone();
            plugin_command(
                &admin,
                &[
                    "swap",
                    &pipeline_name,
                    "session-stats",
                    &v2.display().to_string(),
                ],
            )?;
            std::thread::sleep(Duration::from_secs(30));
            plugin_command(&admin, &["rollback", &pipeline_name, "session-stats"])?;
        }
        "hostile burst" => hostile_burst(run)?,
        other => bail!("no fault `{other}`"),
    }
    Ok(())
}

/// `weir plugin ARGS` against the admin API at `admin`.
fn plugin_command(admin: &str, args: &[&str]) -> Result<()> {
    let weir = weir_tests::pipeline::weir_binary()?;
    let output = std::process::Command::new(weir)
        .arg("plugin")
        .args(["--admin", admin, "--token", TOKEN])
        .args(args)
        .output()?;
    ensure!(
        output.status.success(),
        "weir plugin {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// 300 records weir must dead-letter, among the events: values that are
/// not JSON, and fields of the wrong type (the fold finds them bad too).
fn hostile_burst(run: &Scenario) -> Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &run.stack.bootstrap)
        .set("enable.idempotence", "true")
        .create()?;
    for index in 0..300 {
        let key = format!("hostile-{index}");
        let value = match index % 3 {
            0 => "{not json".to_owned(),
            1 => format!(
                r#"{{"session_id": "{key}", "event_type": "add_to_cart", "cart_total": "lots"}}"#
            ),
            _ => format!(
                r#"{{"session_id": "{key}", "event_type": "add_to_cart", "cart_item_count": 2.5}}"#
            ),
        };
        producer
            .send(BaseRecord::to(&run.names.events).key(&key).payload(&value))
            .map_err(|(error, _)| error)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

/// How long after a fault the group's lag is back under two seconds of
/// input, and stays there for [`STEADY`] (right after a `kill -9`, the lag
/// of the last commit is small until the new process restores its state).
fn catch_up_time(run: &Scenario, weir: &Mutex<Weir>, rate: u64) -> Result<Duration> {
    const STEADY: Duration = Duration::from_secs(10);
    let started = Instant::now();
    let mut under_since: Option<Duration> = None;
    loop {
        // A broker just started may not answer yet: not caught up.
        let lag = lag(&run.stack, &run.names).unwrap_or(i64::MAX);
        if lag < 2 * rate as i64 {
            let since = *under_since.get_or_insert(started.elapsed());
            if started.elapsed() - since >= STEADY {
                return Ok(since);
            }
        } else {
            under_since = None;
        }
        let mut weir = weir.lock().expect("not poisoned");
        let log = format!("weir-{}.log", weir.starts);
        ensure!(
            weir.child.alive(),
            "weir stopped: {}",
            run.log_tail(&log, 20)
        );
        drop(weir);
        ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the pipeline is stuck: lag {lag} ten minutes after the fault"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Records of the input the pipeline's group has not committed (`None`:
/// the broker did not answer).
fn lag(stack: &weir_tests::Stack, names: &weir_tests::pipeline::Names) -> Option<i64> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .set("group.id", names.group())
        .create()
        .ok()?;
    let progress = weir::kafka::group_progress(&reader, &names.events, Duration::from_secs(10));
    Some(
        progress
            .ok()?
            .iter()
            .map(weir::kafka::PartitionProgress::lag)
            .sum(),
    )
}

/// The end offsets of `topic`'s partitions.
fn ends(run: &Scenario, topic: &str) -> Result<Vec<i64>> {
    Ok(progress(&run.stack, "weir-bench-soak-reader", topic)?.1)
}

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Memory over the last 20 minutes (or the last two thirds of a shorter
/// run), leaving out each process's first minute (start-up): the resident
/// set in the window's first steady minute against its last, and each
/// process's own growth in the window (a `kill -9` starts a new one).
fn report_memory(samples: &[Sample], duration: Duration) {
    let window = Duration::from_secs(20 * 60).min(duration * 2 / 3);
    let from = duration.saturating_sub(window);
    let mut firsts: HashMap<usize, Duration> = HashMap::new();
    for sample in samples {
        firsts.entry(sample.process).or_insert(sample.at);
    }
    let steady: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= from && s.rss_mib.is_finite())
        .filter(|s| s.at >= firsts[&s.process] + Duration::from_secs(60))
        .collect();
    let (Some(first), Some(last)) = (steady.first(), steady.last()) else {
        println!("  memory: no steady samples in the last {window:?}");
        return;
    };
    let mean_near = |edge: Duration| {
        let near: Vec<f64> = steady
            .iter()
            .filter(|s| s.at.abs_diff(edge) <= Duration::from_secs(30))
            .map(|s| s.rss_mib)
            .collect();
        near.iter().sum::<f64>() / near.len() as f64
    };
    let (start, end) = (mean_near(first.at), mean_near(last.at));
    println!(
        "  memory over the last {:.0?}: weir's resident set {start:.1} MiB -> {end:.1} MiB \
         ({:+.1} %)",
        last.at - first.at,
        100.0 * (end - start) / start
    );
    let points: Vec<(f64, f64)> = steady
        .iter()
        .map(|s| (s.at.as_secs_f64() / 60.0, s.rss_mib))
        .collect();
    if let Some((slope, mean)) = least_squares(&points) {
        let minutes = (last.at - first.at).as_secs_f64() / 60.0;
        println!(
            "  least-squares slope over those samples: {slope:+.2} MiB/min around a mean of \
             {mean:.1} MiB ({:+.1} % over {minutes:.0} min)",
            100.0 * slope * minutes / mean
        );
    }
    let mut processes: Vec<usize> = steady.iter().map(|s| s.process).collect();
    processes.dedup();
    for process in processes {
        let own: Vec<&&Sample> = steady.iter().filter(|s| s.process == process).collect();
        let (a, b) = (own[0], own[own.len() - 1]);
        println!(
            "    process {process} (started at {:.0?}): {:.1} MiB at {:.0?} -> {:.1} MiB at {:.0?} ({:+.1} %)",
            firsts[&process],
            a.rss_mib,
            a.at,
            b.rss_mib,
            b.at,
            100.0 * (b.rss_mib - a.rss_mib) / a.rss_mib
        );
    }
}

/// The least-squares line through `points` (x, y): its slope and the mean
/// of y; `None` for fewer than two distinct x.
fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let spread: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if points.len() < 2 || spread == 0.0 {
        return None;
    }
    let covariance: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    Some((covariance / spread, mean_y))
}

/// Compares the table and the Avro topic with the fold of every event of
/// the input topic.
fn compare_with_oracle(run: &Scenario) -> Result<()> {
    let started = Instant::now();
    let rows = fold_topic(run)?;
    run.tokio.block_on(async {
        let pool = run.stack.pool(2).await?;
        let oracle = format!("{}_oracle", run.names.table);
        // The oracle's own columns only: a swap widened the table, and the
        // Avro rows the new version wrote last carry its columns too.
        sqlx::query(&format!(
            "CREATE TABLE {oracle} AS SELECT {COLUMNS} FROM \"{}\" WITH NO DATA",
            run.names.table
        ))
        .execute(&pool)
        .await?;
        let rows: Vec<(&String, &SessionRow)> = rows.iter().collect();
        for chunk in rows.chunks(20_000) {
            insert(&pool, &oracle, chunk).await?;
        }
        let (different, samples) = differences(&pool, &run.names.table, &oracle).await?;
        ensure!(
            different == 0,
            "{different} sessions differ from the oracle; first ones:\n{}",
            samples.join("\n")
        );
        let (keys, _) = check_avro(&run.stack, &pool, &run.names.avro, &oracle).await?;
        sqlx::query(&format!("DROP TABLE {oracle}"))
            .execute(&pool)
            .await?;
        println!(
            "  exact: {} sessions in the table and {keys} keys on the Avro topic equal the \
             oracle's fold of the input topic (compared in {:.0?})",
            rows.len(),
            started.elapsed()
        );
        anyhow::Ok(())
    })
}

/// The fold of every event of the input topic, read a million at a time.
fn fold_topic(run: &Scenario) -> Result<HashMap<String, SessionRow>> {
    let topic = &run.names.events;
    let ends = ends(run, topic)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &run.stack.bootstrap)
        .set("group.id", weir_tests::unique("soak-oracle"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let mut list = TopicPartitionList::new();
    for partition in 0..ends.len() {
        list.add_partition_offset(topic, partition as i32, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let mut left: i64 = ends.iter().sum();
    let mut rows: HashMap<String, SessionRow> = HashMap::new();
    let mut chunk = Vec::with_capacity(1_000_000);
    let mut quiet = Instant::now();
    while left > 0 {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            ensure!(
                quiet.elapsed() < Duration::from_secs(60),
                "reading the input stalled"
            );
            continue;
        };
        let message = message?;
        quiet = Instant::now();
        if message.offset() >= ends[message.partition() as usize] {
            continue;
        }
        left -= 1;
        chunk.push(Event {
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            value: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            partition: message.partition(),
            offset: message.offset(),
        });
        if chunk.len() == chunk.capacity() || left == 0 {
            for (key, later) in fold(&chunk).rows {
                match rows.get_mut(&key) {
                    Some(row) => merge(row, later),
                    None => {
                        rows.insert(key, later);
                    }
                }
            }
            chunk.clear();
        }
    }
    Ok(rows)
}

/// `row` followed by `later`, the fold of the key's next events.
fn merge(row: &mut SessionRow, later: SessionRow) {
    row.user_id = later.user_id.or(row.user_id.take());
    row.user_segment = later.user_segment.or(row.user_segment.take());
    row.session_state = later.session_state.or(row.session_state.take());
    row.events += later.events;
    row.pages += later.pages;
    row.products += later.products;
    row.purchases += later.purchases;
    row.items_in_cart = row.items_in_cart.max(later.items_in_cart);
    row.cart_value = match (row.cart_value, later.cart_value) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
}

/// Inserts `rows` into the oracle table.
async fn insert(pool: &sqlx::PgPool, table: &str, rows: &[(&String, &SessionRow)]) -> Result<()> {
    let column =
        |f: fn(&SessionRow) -> Option<String>| rows.iter().map(|(_, r)| f(r)).collect::<Vec<_>>();
    let long = |f: fn(&SessionRow) -> i64| rows.iter().map(|(_, r)| f(r)).collect::<Vec<_>>();
    sqlx::query(&format!(
        "INSERT INTO {table} ({COLUMNS}) SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], \
         $4::TEXT[], $5::BIGINT[], $6::BIGINT[], $7::BIGINT[], $8::BIGINT[], \
         $9::DOUBLE PRECISION[], $10::BIGINT[])"
    ))
    .bind(
        rows.iter()
            .map(|(key, _)| (*key).clone())
            .collect::<Vec<_>>(),
    )
    .bind(column(|r| r.user_id.clone()))
    .bind(column(|r| r.user_segment.clone()))
    .bind(column(|r| r.session_state.clone()))
    .bind(long(|r| r.events))
    .bind(long(|r| r.pages))
    .bind(long(|r| r.products))
    .bind(
        rows.iter()
            .map(|(_, r)| r.items_in_cart)
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|(_, r)| r.cart_value).collect::<Vec<_>>())
    .bind(long(|r| r.purchases))
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::least_squares;

    #[test]
    fn the_slope_of_a_line_and_of_noise_around_it() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|x| (f64::from(x), 3.0 * f64::from(x) + 7.0))
            .collect();
        let (slope, mean) = least_squares(&line).unwrap();
        assert!((slope - 3.0).abs() < 1e-9 && (mean - 20.5).abs() < 1e-9);
        // A sawtooth around a flat level has no slope to speak of.
        let flat: Vec<(f64, f64)> = (0..40)
            .map(|x| (f64::from(x), 300.0 + f64::from(x % 4) * 10.0 - 15.0))
            .collect();
        assert!(least_squares(&flat).unwrap().0.abs() < 0.1);
        assert!(least_squares(&[(1.0, 2.0)]).is_none());
    }
}
