//! Exact results through faults, on the real stack with real processes:
//! `weir run` killed with SIGKILL at random moments and restarted, several
//! instances sharing the partitions while one dies and another joins, the
//! broker and the database stopped under a running pipeline. Every test
//! ends by comparing the sinks with the SQL oracle over every input event.
//!
//! The tests here stop services of the shared stack, so they run one at a
//! time (a lock), in their own test binary.

use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use weir_tests::categories::{CATALOG_CATEGORY, category_pipeline, equal_to_oracle};
use weir_tests::oracle::check_run;
use weir_tests::pipeline::{
    Scenario, count_per_key, demo_pipeline, progress, replace_setting, terminate, wait_caught_up,
};

/// One fault test at a time: they stop the shared stack's services.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds [`SERIAL`] for a test (a test that failed while holding it does
/// not stop the others).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The catalog every pipeline test writes (seed 42), so tests agree on it.
const SEED: &str = "42";

/// A small pseudo-random source, seeded from the clock; the test prints
/// what it drew so a failing run can be told apart.
struct Draw(u64);

impl Draw {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        Self(seed)
    }

    /// A duration between `low` and `high`.
    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let fraction = (self.0 % 10_000) as f64 / 10_000.0;
        low + (high - low).mul_f64(fraction)
    }
}

/// Waits until the answer to `probe` changes (a flush reached PostgreSQL;
/// its changelog write and offset commit come right after), for at most
/// `limit`.
fn wait_for_a_flush(
    run: &Scenario,
    pool: &sqlx::PgPool,
    probe: &str,
    limit: Duration,
) -> Result<bool> {
    let total = |pool: &sqlx::PgPool| run.scalar::<i64>(pool, probe);
    let started = Instant::now();
    let Ok(before) = total(pool) else {
        return Ok(false); // no table yet
    };
    while started.elapsed() < limit {
        if total(pool)? != before {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(false)
}

/// SIGKILL, and the exit status.
fn kill_9(child: &mut Child) -> Result<()> {
    child.kill().context("kill -9")?;
    child.wait()?;
    Ok(())
}

/// What a fault test's pipeline writes, and how it is checked at the end.
enum Output {
    /// The demo's `sessions` table and Avro topic, against the SQL oracle.
    Sessions,
    /// The category example's table, against SQL over the input and the catalog.
    CategorySales(String),
}

impl Output {
    /// A query whose answer changes with every flush the sinks take.
    fn flush_probe(&self, run: &Scenario) -> String {
        match self {
            Self::Sessions => format!(
                "SELECT coalesce(sum(\"EVENTS_COUNT\"), 0)::BIGINT FROM {}",
                run.names.table
            ),
            Self::CategorySales(table) => {
                format!("SELECT coalesce(sum(\"ORDER_LINES\"), 0)::BIGINT FROM {table}")
            }
        }
    }

    /// Compares the sinks with the oracle over every event of the input.
    fn check(&self, run: &Scenario, counts: &weir::generate::Counts) -> Result<()> {
        match self {
            Self::Sessions => {
                let sessions = check_run(&run.stack, &run.tokio, &run.names)?;
                ensure!(sessions as u64 == counts.sessions);
            }
            Self::CategorySales(table) => {
                let pool = run.pool()?;
                let raw = run.load_input(&pool)?;
                let (categories, lines) =
                    equal_to_oracle(run, &pool, &raw, table, CATALOG_CATEGORY)?;
                println!("{lines} items in {categories} categories equal the SQL oracle");
            }
        }
        Ok(())
    }
}

#[test]
fn weir_killed_with_sigkill_at_random_moments_counts_every_event_exactly_once() -> Result<()> {
    let _serial = one_at_a_time();
    let run = Scenario::new("chaos", 4)?;
    run.write_catalog(SEED)?;
    let pipeline = demo_pipeline(&run.dir, &run.names, "")?;
    killed_at_random(&run, &pipeline, 6, &[], &Output::Sessions)
}

#[test]
fn a_pipeline_rekeyed_through_kafka_counts_every_event_once_through_sigkill() -> Result<()> {
    let _serial = one_at_a_time();
    let run = Scenario::new("rekeyed", 4)?;
    run.write_catalog(SEED)?;
    let pipeline = demo_pipeline(&run.dir, &run.names, "")?;
    let second = rekey_by_session(&run, &pipeline)?;
    killed_at_random(&run, &pipeline, 5, &second, &Output::Sessions)
}

#[test]
fn sales_per_category_stay_exact_through_sigkill_at_random_moments() -> Result<()> {
    let _serial = one_at_a_time();
    let run = Scenario::new("categories-chaos", 4)?;
    run.write_catalog(SEED)?;
    let (pipeline, table) = category_pipeline(&run, "json")?;
    let second = category_second_hop(&run);
    killed_at_random(&run, &pipeline, 5, &second, &Output::CategorySales(table))
}

/// The category example's second hop: its group and topic.
fn category_second_hop(run: &Scenario) -> Vec<(String, String)> {
    let second = format!("{}.sales", run.names.group());
    vec![(second.clone(), format!("{second}.repartition"))]
}

/// Events sent under a Kafka key other than their `session_id` (page views
/// with no other field, so their order among the session's events does not
/// matter to the oracle), for sessions of the input topic; how many.
fn send_under_other_keys(run: &Scenario, count: usize) -> Result<usize> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let events = weir_tests::oracle::read_topic(&run.stack, &run.names.events)?;
    let sessions: Vec<String> = events
        .iter()
        .filter_map(|(_, value)| serde_json::from_str::<serde_json::Value>(value).ok())
        .filter_map(|value| value["session_id"].as_str().map(str::to_owned))
        .step_by(97)
        .take(count)
        .collect();
    let producer: BaseProducer = run.stack.kafka_client().create()?;
    for (index, session) in sessions.iter().enumerate() {
        let value =
            serde_json::json!({"session_id": session, "event_type": "page_view"}).to_string();
        let key = format!("moved-{index}");
        producer
            .send(BaseRecord::to(&run.names.events).key(&key).payload(&value))
            .map_err(|(error, _)| error)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(sessions.len())
}

/// Waits until every partition of `topic` has had its records deleted up
/// to its end (a repartition topic, once its reader has committed it all).
fn wait_purged(run: &Scenario, topic: &str, limit: Duration) -> Result<Duration> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = run.stack.kafka_client().create()?;
    let timeout = Duration::from_secs(10);
    let partitions = client
        .fetch_metadata(Some(topic), timeout)?
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    ensure!(partitions > 0, "`{topic}` has no partitions");
    let started = Instant::now();
    loop {
        let mut left = Vec::new();
        for partition in 0..partitions as i32 {
            let (low, high) = client.fetch_watermarks(topic, partition, timeout)?;
            if low < high {
                left.push(format!("{partition}: {low}..{high}"));
            }
        }
        if left.is_empty() {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < limit,
            "`{topic}` still holds consumed records after {limit:?}: {}",
            left.join(", ")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs `pipeline` with 200 000 events coming in, kills it with SIGKILL
/// `kills` times at random moments (restarting it each time), waits for it
/// to have committed everything (its own group, then each of `then`: a
/// (group, topic) it reads after its source), and compares its sinks with
/// the oracle.
fn killed_at_random(
    run: &Scenario,
    pipeline: &std::path::Path,
    kills: usize,
    then: &[(String, String)],
    output: &Output,
) -> Result<()> {
    let pool = run.pool()?;
    let events = 200_000;
    let generator = run.start_generator(SEED, events, 2_500, 200);
    let started = Instant::now();
    let mut weir = run.spawn_weir(pipeline, "weir-0.log", &[])?;
    let mut draw = Draw::new();
    for kill in 1..=kills {
        // Kill an instance at work: once it has its partitions and their state
        // (a restarted instance waits for the group to expire the dead one).
        let log = format!("weir-{}.log", kill - 1);
        let waiting = Instant::now();
        while run
            .last_log_line(&log, "State restored; the partitions flow.")
            .is_err()
        {
            ensure!(
                waiting.elapsed() < Duration::from_secs(60),
                "no partitions 60 s after a restart"
            );
            ensure!(
                matches!(weir.try_wait(), Ok(None)),
                "weir exited by itself; see {log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let pause = draw.between(Duration::from_millis(1_500), Duration::from_millis(3_500));
        std::thread::sleep(pause);
        // Every other kill lands right after the sinks took a flush, before
        // its changelog write and offset commit have finished.
        let mid_flush = kill % 2 == 0
            && wait_for_a_flush(run, &pool, &output.flush_probe(run), Duration::from_secs(3))?;
        kill_9(&mut weir)?;
        println!(
            "kill -9 #{kill} at {:.1?}{}",
            started.elapsed(),
            if mid_flush {
                " (just as a flush reached PostgreSQL)"
            } else {
                ""
            }
        );
        weir = run.spawn_weir(pipeline, &format!("weir-{kill}.log"), &[])?;
    }
    let counts = generator.join().expect("the generator thread")?;
    ensure!(counts.events == events);
    println!("generator done at {:.1?}", started.elapsed());
    if !then.is_empty() {
        let moved = send_under_other_keys(run, 2_000)?;
        println!("{moved} events sent under other Kafka keys than their session's");
    }
    let mut reads = vec![(run.names.group(), run.names.events.clone())];
    reads.extend_from_slice(then);
    for (group, topic) in &reads {
        let caught_up = wait_caught_up(
            &run.stack,
            group,
            topic,
            &mut weir,
            Duration::from_secs(300),
        )?;
        println!("`{group}` caught up with `{topic}` {caught_up:.1?} later");
    }
    for (_, topic) in then {
        let purged = wait_purged(run, topic, Duration::from_secs(30))?;
        println!("`{topic}`: its consumed records deleted {purged:.1?} later");
    }
    ensure!(
        terminate(&mut weir)?.success(),
        "the last weir stops cleanly"
    );
    let stopped = run.last_log_line(&format!("weir-{kills}.log"), "Pipeline stopped.")?;
    println!(
        "the last instance: {} records aggregated, {} skipped as already in the restored state",
        stopped["aggregated"], stopped["replayed"]
    );
    output.check(run, &counts)
}

/// The `fields.partitions` of every `message` line in `log`.
fn partitions_logged(run: &Scenario, log: &str, message: &str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(run.dir.join(log))?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["fields"]["message"] == message)
        .map(|line| {
            line["fields"]["partitions"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect())
}

#[test]
fn instances_share_partitions_and_take_over_from_a_killed_one() -> Result<()> {
    let _serial = one_at_a_time();
    let run = Scenario::new("scale", 6)?;
    run.write_catalog(SEED)?;
    let pipeline = demo_pipeline(&run.dir, &run.names, "")?;
    shared_and_taken_over(&run, &pipeline, &[], &Output::Sessions)
}

#[test]
fn instances_of_a_rekeyed_pipeline_share_both_hops_and_take_over_from_a_killed_one() -> Result<()> {
    let _serial = one_at_a_time();
    let run = Scenario::new("rescale", 6)?;
    run.write_catalog(SEED)?;
    let pipeline = demo_pipeline(&run.dir, &run.names, "")?;
    let second = rekey_by_session(&run, &pipeline)?;
    shared_and_taken_over(&run, &pipeline, &second, &Output::Sessions)
}

#[test]
fn instances_summing_sales_per_category_share_both_hops_and_take_over_from_a_killed_one()
-> Result<()> {
    let _serial = one_at_a_time();
    let run = Scenario::new("categories-rescale", 6)?;
    run.write_catalog(SEED)?;
    let (pipeline, table) = category_pipeline(&run, "json")?;
    let second = category_second_hop(&run);
    shared_and_taken_over(&run, &pipeline, &second, &Output::CategorySales(table))
}

/// Keys the demo `pipeline` by the `session_id` field (through the
/// repartition topic, as the reference's GROUP BY is); the second hop's
/// group and topic.
fn rekey_by_session(run: &Scenario, pipeline: &std::path::Path) -> Result<Vec<(String, String)>> {
    replace_setting(
        pipeline,
        "idle_timeout = \"30m\"",
        "idle_timeout = \"30m\"\nkey_field = \"session_id\"",
    )?;
    let second = format!("{}.session-stats", run.names.group());
    Ok(vec![(second.clone(), format!("{second}.repartition"))])
}

/// Two instances of `pipeline` (one shard each) with 200 000 events coming
/// in; one killed with SIGKILL, a third joining later; then, once every
/// read (the pipeline's group, then each of `then`) has caught up, the
/// sinks against the oracle.
fn shared_and_taken_over(
    run: &Scenario,
    pipeline: &std::path::Path,
    then: &[(String, String)],
    output: &Output,
) -> Result<()> {
    let events = 200_000;
    let generator = run.start_generator(SEED, events, 5_000, 200);
    let started = Instant::now();
    let mut a = run.spawn_weir(pipeline, "a.log", &["--shards", "1"])?;
    let mut b = run.spawn_weir(pipeline, "b.log", &["--shards", "1"])?;
    std::thread::sleep(Duration::from_secs(7));
    let assigned = "Partitions assigned; restoring their state.";
    let b_before_kill = partitions_logged(run, "b.log", assigned)?.len();
    kill_9(&mut a)?;
    println!(
        "instance a killed with SIGKILL at {:.1?}",
        started.elapsed()
    );
    // The group notices after its session timeout (10 s) and gives a's
    // partitions to b; c joins after that and takes some from b.
    std::thread::sleep(Duration::from_secs(15));
    let mut c = run.spawn_weir(pipeline, "c.log", &["--shards", "1"])?;
    println!("instance c started at {:.1?}", started.elapsed());
    let (counts, _) = run.caught_up(generator, events, &mut b)?;
    if !then.is_empty() {
        let moved = send_under_other_keys(run, 2_000)?;
        println!("{moved} events sent under other Kafka keys than their session's");
        wait_caught_up(
            &run.stack,
            &run.names.group(),
            &run.names.events,
            &mut b,
            Duration::from_secs(300),
        )?;
    }
    for (group, topic) in then {
        wait_caught_up(&run.stack, group, topic, &mut b, Duration::from_secs(300))?;
    }
    ensure!(terminate(&mut c)?.success(), "c stops cleanly");
    ensure!(terminate(&mut b)?.success(), "b stops cleanly");
    for log in ["a.log", "b.log", "c.log"] {
        let assigned = partitions_logged(run, log, "Partitions assigned; restoring their state.")?;
        let revoked = partitions_logged(
            run,
            log,
            "Partitions revoked; their results are written and committed.",
        )?;
        println!("{log}: assigned {assigned:?}, revoked {revoked:?}");
    }
    let c_assigned =
        partitions_logged(run, "c.log", "Partitions assigned; restoring their state.")?;
    ensure!(!c_assigned.is_empty(), "c took partitions over");
    // However the group first split the partitions between a and b, b gets
    // a new assignment once a is gone: a's partitions.
    let b_assigned = partitions_logged(run, "b.log", assigned)?;
    ensure!(
        b_assigned.len() > b_before_kill,
        "b took over partitions of a after the kill: {b_assigned:?} ({b_before_kill} before)"
    );
    output.check(run, &counts)
}

/// How long the pipeline of `names` takes to commit everything that was
/// in its input at the call.
fn catch_up(run: &Scenario, weir: &mut Child, limit: Duration) -> Result<Duration> {
    let (stack, names) = (&run.stack, &run.names);
    let started = Instant::now();
    // Right after a broker restart the group's coordinator may not answer yet.
    let target = loop {
        match progress(stack, &names.group(), &names.events) {
            Ok((_, ends)) => break ends,
            Err(error) => {
                ensure!(
                    started.elapsed() < limit,
                    "cannot read the input's end offsets: {error:#}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    loop {
        ensure!(
            matches!(weir.try_wait(), Ok(None)),
            "weir exited during an outage; its log ends with:\n{}",
            run.log_tail("weir.log", 40)
        );
        if let Ok((committed, _)) = progress(stack, &names.group(), &names.events)
            && committed
                .iter()
                .zip(&target)
                .all(|(done, &end)| done.unwrap_or(0) >= end)
        {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < limit,
            "not caught up {limit:?} after the outage"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn broker_and_database_outages_lose_nothing_and_weir_catches_up_by_itself() -> Result<()> {
    let _serial = one_at_a_time();
    let run = Scenario::new("outage", 4)?;
    run.write_catalog(SEED)?;
    let pipeline = demo_pipeline(&run.dir, &run.names, "")?;
    // The second part's generator starts the same sessions again: no key
    // may be evicted in between (an evicted key that comes back starts a
    // new aggregate, which the oracle does not model).
    replace_setting(
        &pipeline,
        "idle_timeout = \"30m\"",
        "idle_timeout = \"3650d\"",
    )?;
    let started = Instant::now();
    let mut weir = run.spawn_weir(&pipeline, "weir.log", &[])?;
    // The load goes in two parts, none of it written while the broker is
    // away: a broker that has just restarted can report a topic before all
    // its partitions and refuse writes to them for a moment. weir's own
    // writers retry whole flushes; the generator, a plain producer, says
    // what it could not deliver and stops.
    let first = run
        .start_generator(SEED, 100_000, 0, 200)
        .join()
        .expect("the generator thread")?;
    // weir is still working through them when the broker goes.
    run.stack.stop_service("kafka")?;
    println!(
        "broker stopped at {:.1?}, {} events in",
        started.elapsed(),
        first.events
    );
    std::thread::sleep(Duration::from_secs(5));
    run.stack.start_service("kafka")?;
    println!("broker back at {:.1?}", started.elapsed());
    let took = catch_up(&run, &mut weir, Duration::from_secs(180))?;
    println!("caught up {took:.1?} after the broker came back");

    // The same seed: the same users as the catalog (which enrichment reads),
    // and the same session keys again, folded onto the first part's.
    // 60 s of PostgreSQL outage under load: the Avro topic must not be sent
    // the same flush again on every retry (it once was, every 10 s).
    let generator = run.start_generator(SEED, 150_000, 2_000, 200);
    std::thread::sleep(Duration::from_secs(3));
    let avro_ends =
        || Ok::<_, anyhow::Error>(progress(&run.stack, "outage-avro", &run.names.avro)?.1);
    let before = avro_ends()?;
    run.stack.stop_service("postgres")?;
    let stopped = Instant::now();
    println!("PostgreSQL stopped at {:.1?}", started.elapsed());
    // The status says the sinks fail, and since when, once a write has
    // failed (a connection waits up to 30 s for the database).
    let admin = run.admin_url("weir.log")?;
    let mut failing = serde_json::Value::Null;
    while failing.is_null() && stopped.elapsed() < Duration::from_secs(55) {
        std::thread::sleep(Duration::from_secs(1));
        let status = reqwest::blocking::get(format!("{admin}/status"))
            .and_then(reqwest::blocking::Response::json::<serde_json::Value>);
        if let Ok(status) = status {
            failing = status["pipelines"][0]["live"]["failing"].clone();
        }
    }
    let seen = stopped.elapsed();
    std::thread::sleep(Duration::from_secs(60).saturating_sub(stopped.elapsed()));
    let after = avro_ends()?;
    let alive = matches!(weir.try_wait(), Ok(None));
    run.stack.start_service("postgres")?;
    ensure!(
        alive,
        "weir exited while PostgreSQL was down; its log ends with:\n{}",
        run.log_tail("weir.log", 40)
    );
    ensure!(
        failing["attempts"].as_u64().is_some_and(|n| n >= 1)
            && failing["error"]
                .as_str()
                .is_some_and(|e| e.contains("postgres")),
        "the status shows the failing sink: {failing}"
    );
    println!("the status showed the failing sink {seen:.0?} into the outage: {failing}");
    let (messages, keys, most) = count_per_key(&run.stack, &run.names.avro, &before, &after)?;
    println!(
        "during the 60 s outage the Avro topic got {messages} messages for {keys} keys, at most \
         {most} per key (the bound: one per flush interval, 60)"
    );
    ensure!(
        most <= 2,
        "a key's row was sent {most} times while PostgreSQL was down"
    );
    println!("PostgreSQL back at {:.1?}", started.elapsed());
    let took = catch_up(&run, &mut weir, Duration::from_secs(180))?;
    println!("caught up {took:.1?} after PostgreSQL came back");

    let second = generator.join().expect("the generator thread")?;
    ensure!(first.events + second.events == 250_000);
    wait_caught_up(
        &run.stack,
        &run.names.group(),
        &run.names.events,
        &mut weir,
        Duration::from_secs(300),
    )?;
    ensure!(terminate(&mut weir)?.success(), "weir stops cleanly");
    check_run(&run.stack, &run.tokio, &run.names)?;
    Ok(())
}
