//! Lookup tables fed by a Kafka topic, as a Kafka Streams `KTable` is: each
//! record is a row keyed by its Kafka key (UTF-8), its value a JSON object;
//! a record without a value (a tombstone) deletes its key. The topic is
//! read from its start to its end before the pipeline runs, then followed
//! on a thread of its own, its updates applied in batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Map, Value};

use super::LookupError;
use crate::kafka::{Connection, TopicsError, partition_count};
use crate::plugin::LiveTable;

/// Where a reading stands: the next offset on each partition.
pub type Positions = Vec<(i32, i64)>;

/// How long a batch of updates gathers before it is applied.
const GATHER: Duration = Duration::from_millis(100);

/// How long the first reading waits for a broker that sends nothing.
const SILENCE: Duration = Duration::from_secs(60);

/// Table `table`'s rows from topic `topic`, read from its start to the end
/// it had when reading began; and where the reading stopped on each
/// partition.
pub(super) fn read(
    table: &str,
    topic: &str,
    kafka: &Connection,
) -> Result<(HashMap<String, String>, Positions), LookupError> {
    let failed = |message: String| LookupError::Topic {
        table: table.to_owned(),
        message,
    };
    let partitions = partition_count(kafka, topic).map_err(|error| match error {
        TopicsError::Missing { .. } => failed(format!(
            "topic `{topic}` does not exist; create it (compacted, keyed by the lookup key) first"
        )),
        other => failed(other.to_string()),
    })?;
    let consumer: BaseConsumer = kafka
        .restore_consumer()
        .create()
        .map_err(|error| failed(format!("cannot make a Kafka client: {error}")))?;
    let timeout = Duration::from_secs(15);
    let mut ends = Vec::with_capacity(partitions);
    let mut list = TopicPartitionList::new();
    for partition in 0..i32::try_from(partitions).unwrap_or(i32::MAX) {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|error| failed(format!("cannot read the end of `{topic}`: {error}")))?;
        ends.push((partition, high));
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(|error| failed(error.to_string()))?;
    }
    consumer
        .assign(&list)
        .map_err(|error| failed(error.to_string()))?;
    let mut rows = HashMap::new();
    let mut skipped = Skipped::default();
    let mut heard = Instant::now();
    loop {
        let positions = positions(&consumer, topic, &ends);
        if (positions.iter().zip(&ends)).all(|(&(_, at), &(_, end))| at >= end) {
            skipped.report(table);
            tracing::info!(
                table,
                topic,
                rows = rows.len(),
                "Lookup table read from its topic."
            );
            return Ok((rows, positions));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                heard = Instant::now();
                skipped.count(apply(&mut rows, message.key(), message.payload()));
            }
            Some(Err(error)) => {
                tracing::warn!(table, topic, "Reading the lookup topic: {error}");
            }
            None if heard.elapsed() > SILENCE => {
                return Err(failed(format!(
                    "`{topic}` sent nothing for {SILENCE:?} before its end was reached"
                )));
            }
            None => {}
        }
    }
}

/// Follows `topic` from `positions`, applying its records to `rows` in
/// batches, until `stop` is raised.
pub(super) fn follow(
    table: &str,
    topic: &str,
    positions: &[(i32, i64)],
    kafka: &Connection,
    rows: &LiveTable,
    stop: &AtomicBool,
) {
    let consumer: BaseConsumer = match kafka.restore_consumer().create() {
        Ok(consumer) => consumer,
        Err(error) => {
            tracing::error!(table, topic, "Cannot follow the lookup topic: {error}");
            return;
        }
    };
    let mut list = TopicPartitionList::new();
    for &(partition, offset) in positions {
        if let Err(error) = list.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            tracing::error!(table, topic, "Cannot follow the lookup topic: {error}");
            return;
        }
    }
    if let Err(error) = consumer.assign(&list) {
        tracing::error!(table, topic, "Cannot follow the lookup topic: {error}");
        return;
    }
    let mut warned: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut updates = Vec::new();
        let started = Instant::now();
        while started.elapsed() < GATHER && updates.len() < 10_000 {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(message)) => updates.push((
                    message.key().map(<[u8]>::to_vec),
                    message.payload().map(<[u8]>::to_vec),
                )),
                Some(Err(error))
                    if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(30)) =>
                {
                    tracing::warn!(table, topic, "Following the lookup topic: {error}");
                    warned = Some(Instant::now());
                }
                Some(Err(_)) | None => {}
            }
        }
        if updates.is_empty() {
            continue;
        }
        let mut skipped = Skipped::default();
        rows.update(|rows| {
            for (key, value) in &updates {
                skipped.count(apply(rows, key.as_deref(), value.as_deref()));
            }
        });
        skipped.report(table);
        tracing::debug!(
            table,
            topic,
            updates = updates.len(),
            "Lookup table updated."
        );
    }
}

/// Where `consumer` stands on each partition of `ends` (the start when it
/// has not read yet).
fn positions(consumer: &BaseConsumer, topic: &str, ends: &[(i32, i64)]) -> Positions {
    let position = consumer.position().ok();
    ends.iter()
        .map(|&(partition, _)| {
            let at = position
                .as_ref()
                .and_then(|list| list.find_partition(topic, partition))
                .and_then(|element| match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                })
                .unwrap_or(0);
            (partition, at)
        })
        .collect()
}

/// One record applied to `rows`: its value set as its key's row, or its
/// key deleted when it has no value. Why not, for a record that is not a
/// row.
fn apply(
    rows: &mut HashMap<String, String>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(), &'static str> {
    let key = std::str::from_utf8(key.ok_or("no key")?).map_err(|_| "a key that is not UTF-8")?;
    match value {
        None => {
            rows.remove(key);
        }
        Some(value) => {
            let row: Map<String, Value> =
                serde_json::from_slice(value).map_err(|_| "a value that is not a JSON object")?;
            rows.insert(key.to_owned(), Value::Object(row).to_string());
        }
    }
    Ok(())
}

/// Records left out of a table, by reason, logged once per batch.
#[derive(Default)]
struct Skipped(HashMap<&'static str, u64>);

impl Skipped {
    fn count(&mut self, applied: Result<(), &'static str>) {
        if let Err(why) = applied {
            *self.0.entry(why).or_default() += 1;
        }
    }

    fn report(&self, table: &str) {
        for (why, count) in &self.0 {
            tracing::warn!(
                table,
                records = count,
                "Lookup topic records left out: {why}."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_set_and_delete_rows_and_others_are_left_out() {
        let mut rows = HashMap::new();
        assert_eq!(
            apply(&mut rows, Some(b"p1"), Some(br#"{"category": "home"}"#)),
            Ok(())
        );
        assert_eq!(
            apply(&mut rows, Some(b"p1"), Some(br#"{"category": "garden"}"#)),
            Ok(())
        );
        assert_eq!(rows["p1"], r#"{"category":"garden"}"#, "the newest wins");
        assert_eq!(
            apply(&mut rows, Some(b"p2"), Some(b"[1]")),
            Err("a value that is not a JSON object")
        );
        assert_eq!(apply(&mut rows, None, Some(b"{}")), Err("no key"));
        assert_eq!(
            apply(&mut rows, Some(&[0xff]), Some(b"{}")),
            Err("a key that is not UTF-8")
        );
        assert_eq!(apply(&mut rows, Some(b"p1"), None), Ok(()));
        assert!(rows.is_empty(), "a tombstone deletes its key");
    }
}
