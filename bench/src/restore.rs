//! `weir-bench restore`: how fast weir reads an aggregator's state back from
//! its changelog on the local stack.
//!
//! 1. **Fill**: a fresh compacted changelog topic (the settings weir gives
//!    its own) gets `--keys` distinct session-id keys spread evenly over the
//!    partitions, each with a [`Stored`] state of `--state-bytes` bytes,
//!    written with weir's own [`ChangelogWriter`]; then every tenth key of
//!    each partition is written again with a newer state, so the log holds
//!    keys that a restore must resolve to their newest record.
//! 2. **Restore**: [`changelog::restore`] of all partitions, `--runs` times,
//!    each run checked (every key back, each with its newest state); then
//!    one partition alone, and every partition in its own thread at once.
//!
//! A restore's time runs from the call to its return: creating the
//! consumer, reading the watermarks, reading and decoding every record into
//! the per-partition maps. MB/s counts the changelog records' keys and
//! values read.

use std::time::{Duration, Instant};
use weir::kafka::Connection;

use anyhow::{Context, Result, bail, ensure};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use weir::engine::changelog::{self, ChangelogRecord, ChangelogWriter, Restored, Stored};
use weir_tests::Stack;

/// The acceptance target: keys restored per second.
const TARGET: f64 = 200_000.0;
/// Records per [`ChangelogWriter::send`] call while filling the topic.
const CHUNK: usize = 50_000;
/// Every this many keys of a partition, one is written twice.
const OVERWRITE_EVERY: u64 = 10;
/// How long a restore may go without progress before it fails.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of a session id key: UUID text.
const KEY_BYTES: usize = 36;
/// Bytes of a changelog value's header before the state.
const VALUE_HEADER: usize = 21;

/// Options of `weir-bench restore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Distinct keys in the changelog.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Partitions of the changelog topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Bytes of each key's state (JSON text).
    #[arg(long, default_value_t = 200)]
    state_bytes: usize,
    /// Restores of all partitions timed; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Fills a changelog, times restoring it, prints the figures, deletes the topic.
pub fn run(args: &Args) -> Result<()> {
    ensure!(args.keys > 0, "--keys must be at least 1");
    ensure!(args.partitions > 0, "--partitions must be at least 1");
    ensure!(args.runs > 0, "--runs must be at least 1");
    ensure!(
        args.state_bytes >= MIN_STATE_BYTES,
        "--state-bytes must be at least {MIN_STATE_BYTES} (the smallest state this bench writes)"
    );
    let stack = Stack::from_env();
    let tokio = tokio::runtime::Runtime::new()?;
    let topic = weir_tests::unique("weir-bench-restore-changelog");
    println!(
        "weir-bench restore: {} keys, {} partitions, {} state bytes per key, {} runs",
        args.keys, args.partitions, args.state_bytes, args.runs
    );
    tokio.block_on(create_changelog(&stack, &topic, args.partitions))?;
    let result = fill_and_measure(&stack, &tokio, &topic, args);
    let deleted = tokio.block_on(delete_topic(&stack, &topic));
    match (result, deleted) {
        (Ok(()), deleted) => deleted,
        (Err(error), Ok(())) => Err(error),
        (Err(error), Err(deleting)) => {
            eprintln!("weir-bench restore: the topic `{topic}` is left behind: {deleting:#}");
            Err(error)
        }
    }
}

fn fill_and_measure(
    stack: &Stack,
    tokio: &tokio::runtime::Runtime,
    topic: &str,
    args: &Args,
) -> Result<()> {
    let layout = Layout::new(args);
    let written = fill(stack, tokio, topic, &layout)?;
    let record_bytes = KEY_BYTES + VALUE_HEADER + args.state_bytes;
    println!(
        "  wrote {} records ({} keys, {} of them twice) in {:.1?}: {:.0} records/s, {:.1} MB",
        written.records,
        args.keys,
        written.records - args.keys,
        written.took,
        written.records as f64 / written.took.as_secs_f64(),
        (written.records as usize * record_bytes) as f64 / 1e6,
    );

    let all: Vec<i32> = (0..args.partitions).collect();
    let mut rates = Vec::with_capacity(args.runs);
    for run in 1..=args.runs {
        let started = Instant::now();
        let restored = changelog::restore(
            &Connection::new(&stack.bootstrap),
            topic,
            &all,
            RESTORE_TIMEOUT,
        )
        .map_err(anyhow::Error::msg)?;
        let seconds = started.elapsed().as_secs_f64();
        check(&restored, &layout, &all, written.records)
            .with_context(|| format!("run {run} restored the wrong state"))?;
        let keys = restored.keys() as f64;
        rates.push(keys / seconds);
        println!(
            "  run {run}: {} keys from {} changelog records in {seconds:.2} s: {:>9.0} keys/s, {:>6.1} MB/s",
            restored.keys(),
            restored.records,
            keys / seconds,
            (restored.records as usize * record_bytes) as f64 / 1e6 / seconds,
        );
        // Dropping a million keys is not part of the restore.
        drop(restored);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "  median of {} runs: {median:.0} keys/s; target at least {TARGET:.0} keys/s: {}",
        rates.len(),
        if median >= TARGET { "met" } else { "NOT met" }
    );

    // One partition alone against all of them, in one call and in one thread each.
    let started = Instant::now();
    let one = changelog::restore(
        &Connection::new(&stack.bootstrap),
        topic,
        &[0],
        RESTORE_TIMEOUT,
    )
    .map_err(anyhow::Error::msg)?;
    let one_seconds = started.elapsed().as_secs_f64();
    check(&one, &layout, &[0], written.records).context("partition 0 alone")?;
    println!(
        "  partition 0 alone: {} keys in {one_seconds:.2} s: {:>9.0} keys/s",
        one.keys(),
        one.keys() as f64 / one_seconds
    );
    drop(one);
    let started = Instant::now();
    let threads: Vec<_> = all
        .iter()
        .map(|&partition| {
            let bootstrap = stack.bootstrap.clone();
            let topic = topic.to_owned();
            std::thread::spawn(move || {
                changelog::restore(
                    &Connection::new(&bootstrap),
                    &topic,
                    &[partition],
                    RESTORE_TIMEOUT,
                )
            })
        })
        .collect();
    let mut apart = Vec::with_capacity(threads.len());
    for thread in threads {
        let restored = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a restore thread panicked"))?
            .map_err(anyhow::Error::msg)?;
        apart.push(restored);
    }
    let apart_seconds = started.elapsed().as_secs_f64();
    for (restored, partition) in apart.iter().zip(&all) {
        check(restored, &layout, &[*partition], written.records)
            .with_context(|| format!("partition {partition} in its own thread"))?;
    }
    let apart_keys: usize = apart.iter().map(Restored::keys).sum();
    println!(
        "  all {} partitions, one thread each: {apart_keys} keys in {apart_seconds:.2} s: {:>9.0} keys/s",
        args.partitions,
        apart_keys as f64 / apart_seconds
    );
    let all_seconds = args.keys as f64 / median;
    println!(
        "  partition 0 alone (1/{} of the keys) takes {:.0} % of the time all {} take in one call ({:.2} s of {all_seconds:.2} s at the median)",
        args.partitions,
        100.0 * one_seconds / all_seconds,
        args.partitions,
        one_seconds,
    );
    Ok(())
}

/// Which key goes where, and what state it holds.
struct Layout {
    keys: u64,
    partitions: u64,
    state_bytes: usize,
}

impl Layout {
    fn new(args: &Args) -> Self {
        Self {
            keys: args.keys,
            partitions: u64::try_from(args.partitions).expect("checked positive"),
            state_bytes: args.state_bytes,
        }
    }

    /// Key `index`'s partition: keys are dealt out in turn.
    fn partition(&self, index: u64) -> i32 {
        i32::try_from(index % self.partitions).expect("fewer partitions than i32::MAX")
    }

    /// Whether key `index` is written twice: every tenth key of each partition.
    fn overwritten(&self, index: u64) -> bool {
        (index / self.partitions).is_multiple_of(OVERWRITE_EVERY)
    }

    /// Key `index`'s state as written the `generation`-th time (1 or 2).
    fn stored(&self, index: u64, generation: u64) -> Stored {
        Stored {
            state_version: 1,
            // Offset-like: the second writes come after all the first ones.
            applied: i64::try_from((generation - 1) * self.keys + index).expect("small"),
            origins: weir::engine::origin::Origins::default(),
            last_event: 1_767_225_600_000 + i64::try_from(index).expect("small") * 7,
            state: state(index, generation, self.state_bytes),
        }
    }

    /// The record writing key `index` the `generation`-th time.
    fn record(&self, index: u64, generation: u64) -> ChangelogRecord {
        ChangelogRecord {
            partition: self.partition(index),
            key: session_id(index).into_bytes(),
            value: Some(self.stored(index, generation).encode()),
        }
    }
}

/// What filling the changelog wrote.
struct Written {
    records: u64,
    took: Duration,
}

/// Writes every key once, then the overwritten keys again, in chunks of
/// [`CHUNK`] records through weir's changelog writer.
fn fill(
    stack: &Stack,
    tokio: &tokio::runtime::Runtime,
    topic: &str,
    layout: &Layout,
) -> Result<Written> {
    let writer = ChangelogWriter::new(&Connection::new(&stack.bootstrap), topic)?;
    let started = Instant::now();
    let mut records = 0u64;
    let first = (0..layout.keys).map(|index| (index, 1));
    let second = (0..layout.keys)
        .filter(|&index| layout.overwritten(index))
        .map(|index| (index, 2));
    let mut chunk = Vec::with_capacity(CHUNK);
    for (index, generation) in first.chain(second) {
        chunk.push(layout.record(index, generation));
        if chunk.len() == CHUNK {
            tokio
                .block_on(writer.send(&chunk))
                .map_err(anyhow::Error::msg)?;
            records += chunk.len() as u64;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        tokio
            .block_on(writer.send(&chunk))
            .map_err(anyhow::Error::msg)?;
        records += chunk.len() as u64;
    }
    Ok(Written {
        records,
        took: started.elapsed(),
    })
}

/// Checks that `restored` holds exactly the keys of `partitions`, each with
/// its newest state, read from no more records than were written.
fn check(restored: &Restored, layout: &Layout, partitions: &[i32], written: u64) -> Result<()> {
    let expected: Vec<u64> = (0..layout.keys)
        .filter(|&index| partitions.contains(&layout.partition(index)))
        .collect();
    if restored.keys() != expected.len() {
        bail!(
            "{} keys restored, {} written to partitions {partitions:?}",
            restored.keys(),
            expected.len()
        );
    }
    if restored.records < expected.len() as u64 || restored.records > written {
        bail!(
            "{} changelog records read for {} keys ({written} written in all)",
            restored.records,
            expected.len()
        );
    }
    let mut overwritten = 0u64;
    for index in expected {
        let partition = layout.partition(index);
        let key = session_id(index);
        let generation = if layout.overwritten(index) {
            overwritten += 1;
            2
        } else {
            1
        };
        let got = restored
            .partitions
            .get(&partition)
            .and_then(|keys| keys.get(key.as_bytes()))
            .with_context(|| format!("key {key} (partition {partition}) was not restored"))?;
        let want = layout.stored(index, generation);
        if *got != want {
            let written = if generation == 2 { "twice" } else { "once" };
            if got.applied != want.applied {
                bail!(
                    "key {key} (partition {partition}, written {written}) came back with applied \
                     offset {}, but its newest record has {}",
                    got.applied,
                    want.applied
                );
            }
            bail!(
                "key {key} (partition {partition}, written {written}) came back with another \
                 state than its newest record holds"
            );
        }
    }
    ensure!(
        overwritten > 0 || layout.keys < OVERWRITE_EVERY * layout.partitions,
        "no overwritten key was checked"
    );
    Ok(())
}

/// Key `index` as UUID text (36 characters), distinct for distinct indexes.
fn session_id(index: u64) -> String {
    let high = mix(index);
    let low = mix(!index);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

/// splitmix64's finaliser: a bijection on u64 that scatters its bits.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The opening of a state, up to its product list (its length never varies).
const STATE_HEAD: usize = r#"{"events":1,"revenue_cents":0000000000,"products":["#.len();
/// The smallest state: its opening and `]}`.
const MIN_STATE_BYTES: usize = STATE_HEAD + 2;

/// A session's state as JSON text of exactly `bytes` bytes: counters and
/// the products it saw (padded with spaces to the length).
fn state(index: u64, generation: u64, bytes: usize) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(bytes);
    write!(
        text,
        r#"{{"events":{generation},"revenue_cents":{:010},"products":["#,
        mix(index ^ (generation << 60)) % 10_000_000_000
    )
    .expect("writing to a string");
    debug_assert_eq!(text.len(), STATE_HEAD);
    for item in 0u64.. {
        let separator = usize::from(item > 0);
        // `"p-NNNNN"` and the closing `]}` must still fit.
        if text.len() + separator + 9 + 2 > bytes {
            break;
        }
        if separator == 1 {
            text.push(',');
        }
        let product = mix(index.wrapping_mul(64) + item + (generation << 56)) % 100_000;
        write!(text, r#""p-{product:05}""#).expect("writing to a string");
    }
    text.push_str("]}");
    while text.len() < bytes {
        text.push(' ');
    }
    text.into_bytes()
}

/// Creates the changelog topic with weir's changelog settings.
async fn create_changelog(stack: &Stack, topic: &str, partitions: i32) -> Result<()> {
    let admin = admin(stack)?;
    let new = changelog::topic_config().iter().fold(
        NewTopic::new(topic, partitions, TopicReplication::Fixed(1)),
        |new, (key, value)| new.set(key, value),
    );
    let results = admin
        .create_topics(&[new], &AdminOptions::new())
        .await
        .with_context(|| format!("cannot create the changelog topic `{topic}`"))?;
    for result in results {
        result.map_err(|(topic, code)| anyhow::anyhow!("creating `{topic}`: {code}"))?;
    }
    Ok(())
}

/// Deletes the changelog topic.
async fn delete_topic(stack: &Stack, topic: &str) -> Result<()> {
    delete_topics(stack, &[topic]).await
}

/// Deletes `topics` (a benchmark's input and outputs: they would fill the disk).
pub async fn delete_topics(stack: &Stack, topics: &[&str]) -> Result<()> {
    let admin = admin(stack)?;
    let results = admin
        .delete_topics(topics, &AdminOptions::new())
        .await
        .with_context(|| format!("cannot delete the topics {topics:?}"))?;
    for result in results {
        result.map_err(|(topic, code)| anyhow::anyhow!("deleting `{topic}`: {code}"))?;
    }
    Ok(())
}

fn admin(stack: &Stack) -> Result<AdminClient<DefaultClientContext>> {
    stack
        .kafka_client()
        .create()
        .context("cannot create a Kafka admin client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_the_asked_length_and_keys_are_uuid_text() {
        for bytes in [MIN_STATE_BYTES, MIN_STATE_BYTES + 10, 200, 1000] {
            for generation in [1, 2] {
                let state = state(12_345, generation, bytes);
                assert_eq!(state.len(), bytes);
                serde_json::from_slice::<serde_json::Value>(&state).expect("JSON");
            }
        }
        assert_ne!(state(7, 1, 200), state(7, 2, 200));
        assert_eq!(session_id(0).len(), KEY_BYTES);
        assert_eq!(session_id(u64::MAX).len(), KEY_BYTES);
        assert_ne!(session_id(1), session_id(2));
        let stored = Layout {
            keys: 10,
            partitions: 4,
            state_bytes: 200,
        }
        .stored(3, 2);
        assert_eq!(stored.encode().len(), VALUE_HEADER + 200);
    }
}
