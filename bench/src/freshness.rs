//! Freshness: how long after an event is produced a result counting it can
//! be read. Shared by `weir-bench pipeline` (rows in PostgreSQL) and
//! `weir-bench race` (rows on a Kafka topic, for every contestant).
//!
//! - [`produce_paced`]: demo events at a steady rate, each one's send time kept;
//! - [`RowLog`]: the commit time of every row version of a PostgreSQL table;
//! - [`OutputTail`]: the time every row of an output topic becomes readable;
//! - [`Freshness::of`]: per event, the first row of its session that counts
//!   it (`EVENTS_COUNT` at least its place in the session).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::ConnectOptions;
use weir_tests::Stack;

/// A row version: its session, the events it counts, when it could be read.
pub type RowVersion = (String, i64, SystemTime);

/// An output record as it arrived: its key, its value, when.
pub type Arrived = (String, Vec<u8>, SystemTime);

/// An event the paced producer sent: its session, its place in the
/// session (the n-th event counted), and when it left.
pub struct Sent {
    pub session: String,
    pub n: i64,
    pub at: SystemTime,
}

/// Produces demo events (seed 42, `sessions` live sessions) into `topic` at
/// `rate` for the warm-up and then the measured span.
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
) -> Result<Paced> {
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
    Ok(Paced {
        sent,
        produced: total as u64,
    })
}

/// What [`produce_paced`] sent.
pub struct Paced {
    /// The events measured (those after the warm-up).
    pub sent: Vec<Sent>,
    /// All the events produced, the warm-up's included.
    pub produced: u64,
}

/// The row versions a pipeline commits to its table, each with its
/// transaction's commit time, read from PostgreSQL's write-ahead log through
/// a logical replication slot (`test_decoding`). The log is decoded only
/// when read, after the run: measuring adds no work to the statements being
/// measured (a trigger writing a row per row version doubled the rows each
/// flush writes), and a row counts from its commit, when readers first see it.
pub struct RowLog {
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
    pub async fn start(stack: &Stack, table: &str) -> Result<Self> {
        // Reading a run's changes takes a second or more: not worth a warning.
        let options = sqlx::postgres::PgConnectOptions::from_str(&stack.database_url)?
            .disable_statement_logging();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
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
    pub async fn read(self) -> Result<Vec<RowVersion>> {
        let changes: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
            "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL, \
             'include-timestamp', '1', 'skip-empty-xacts', '1')",
        )
        .bind(&self.slot)
        .fetch_all(&self.pool)
        .await;
        let dropped = self.drop_slot().await;
        let rows = parse_changes(&changes?, &self.table)?;
        dropped?;
        Ok(rows)
    }

    /// Drops the slot without reading it (a run that failed).
    pub async fn drop_slot(&self) -> Result<()> {
        sqlx::query("SELECT pg_drop_replication_slot($1)")
            .bind(&self.slot)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// `test_decoding`'s lines, as (session, events counted, commit time) of the
/// row versions of `table`: `BEGIN`, then a line per row
/// (`table public.t: INSERT: "SESSION_ID"[text]:'…' … "EVENTS_COUNT"[bigint]:9 …`),
/// then `COMMIT 123 (at 2026-11-26 11:40:01.123456+00)`.
fn parse_changes(lines: &[String], table: &str) -> Result<Vec<RowVersion>> {
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

/// Reads an output topic from its start while a contestant runs, keeping
/// each row's session (the record key), its value and when it arrived (the
/// values are decoded after the run, off the measured machine's clock).
/// Reads committed data only, so a transactional writer's rows count from
/// their commit.
pub struct OutputTail {
    stop: Arc<AtomicBool>,
    reader: JoinHandle<Result<Vec<Arrived>>>,
}

impl OutputTail {
    /// Starts reading all `partitions` of `topic`.
    pub fn start(stack: &Stack, topic: &str, partitions: i32) -> Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &stack.bootstrap)
            .set("group.id", weir_tests::unique("weir-bench-tail"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "10")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let topic = topic.to_owned();
        let reader = std::thread::spawn(move || {
            let mut rows = Vec::new();
            // After the stop, what is already there is still read.
            let mut idle_since: Option<Instant> = None;
            loop {
                match consumer.poll(Duration::from_millis(50)) {
                    // librdkafka retries by itself (a broker that is slow to
                    // answer is not the end of the measurement).
                    Some(Err(error)) => eprintln!("reading {topic}: {error}; still reading"),
                    Some(Ok(message)) => {
                        let at = SystemTime::now();
                        idle_since = None;
                        let key = message.key().context("an output row without a key")?;
                        let value = message.payload().context("an output row without a value")?;
                        rows.push((String::from_utf8(key.to_vec())?, value.to_vec(), at));
                    }
                    None if stopping.load(Ordering::Relaxed) => {
                        let since = *idle_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_millis(500) {
                            return Ok(rows);
                        }
                    }
                    None => {}
                }
            }
        });
        Ok(Self { stop, reader })
    }

    /// Stops once nothing more arrives; every row read.
    pub fn finish(self) -> Result<Vec<Arrived>> {
        self.stop.store(true, Ordering::Relaxed);
        self.reader
            .join()
            .map_err(|_| anyhow::anyhow!("the output reader panicked"))?
    }
}

/// Freshness figures of one measurement.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Events measured.
    pub events: usize,
}

impl Freshness {
    /// Per event of `sent`, the time to the first of `rows` of its session
    /// that counts it.
    pub fn of(sent: &[Sent], rows: &[RowVersion]) -> Result<Self> {
        // Per session, row versions in increasing event counts.
        let mut versions: HashMap<&str, Vec<(i64, SystemTime)>> = HashMap::new();
        for (session, events, at) in rows {
            versions.entry(session).or_default().push((*events, *at));
        }
        for list in versions.values_mut() {
            // By count; then each entry's time becomes the earliest at or
            // after it, so the first entry counting an event carries the
            // first time any row counted it (a row written again after a
            // replay may arrive later with a lower count).
            list.sort_unstable();
            let mut earliest: Option<SystemTime> = None;
            for (_, at) in list.iter_mut().rev() {
                let first = earliest.map_or(*at, |e| e.min(*at));
                *at = first;
                earliest = Some(first);
            }
        }
        let mut delays: Vec<Duration> = Vec::with_capacity(sent.len());
        for Sent {
            session,
            n,
            at: produced,
        } in sent
        {
            let list = versions
                .get(session.as_str())
                .with_context(|| format!("no row of session {session} arrived"))?;
            let first = list.partition_point(|(events, _)| events < n);
            let (_, written) = list
                .get(first)
                .with_context(|| format!("event {n} of session {session} never reached a row"))?;
            delays.push(written.duration_since(*produced).unwrap_or_default());
        }
        if delays.is_empty() {
            bail!("no events were measured");
        }
        delays.sort_unstable();
        let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
        Ok(Self {
            p50: at(0.5),
            p99: at(0.99),
            max: delays[delays.len() - 1],
            events: delays.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_fresh_at_the_first_row_counting_it() {
        let t = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000 + ms);
        let sent = |n: i64, ms: u64| Sent {
            session: "a".to_owned(),
            n,
            at: t(ms),
        };
        // Counts 1 and 3 arrive; a replayed row counting 2 arrives last.
        let rows = vec![
            ("a".to_owned(), 1, t(100)),
            ("a".to_owned(), 3, t(200)),
            ("a".to_owned(), 2, t(300)),
        ];
        let measured = Freshness::of(&[sent(1, 0), sent(2, 50), sent(3, 60)], &rows).unwrap();
        // Delays 100 ms (n=1), 150 ms (n=2, counted first by the row of 3),
        // 140 ms (n=3).
        assert_eq!(measured.events, 3);
        assert_eq!(measured.p50, Duration::from_millis(140));
        assert_eq!(measured.p99, Duration::from_millis(150));
        assert_eq!(measured.max, Duration::from_millis(150));
        assert!(Freshness::of(&[], &rows).is_err(), "nothing measured");
        assert!(
            Freshness::of(&[sent(4, 0)], &rows).is_err(),
            "an event no row counts"
        );
    }

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
