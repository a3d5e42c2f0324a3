//! The Kafka source: one consumer in the pipeline's group, polled by one
//! thread that checks each record (size, format), builds a batch per shard
//! and hands it over when it is full or has waited long enough. While a
//! shard is busy the consumer's partitions are paused (and it keeps
//! polling, so it stays in its group), so a slow stage or sink slows reading
//! down instead of filling memory; librdkafka's prefetch queue is bounded
//! too (`queued.max.messages.kbytes`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};

use super::dead_letter::DeadLetter;
use super::shard::Chunk;
use crate::pipeline::config::Format;
use crate::plugin::{BatchBuilder, RecordRef};

/// How the source checks and batches records.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// Records per batch at most.
    pub max_records: usize,
    /// How long a batch waits to fill.
    pub max_wait: Duration,
    /// How values are encoded.
    pub format: Format,
    /// Values larger than this are dead-lettered.
    pub max_record_bytes: usize,
}

/// A batch being filled for one shard.
#[derive(Default)]
struct Open {
    builder: BatchBuilder,
    dead: Vec<DeadLetter>,
    offsets: Vec<(i32, i64)>,
    since: Option<Instant>,
}

impl Open {
    fn records(&self) -> usize {
        self.builder.len() + self.dead.len()
    }

    fn take(&mut self) -> Chunk {
        let open = std::mem::take(self);
        Chunk {
            batch: open.builder.build(),
            dead: open.dead,
            offsets: open.offsets,
        }
    }
}

/// Polls `consumer` until `stop` is raised, feeding `shards`; then hands over
/// what it holds and returns (dropping the senders tells the shards to finish).
pub fn run(
    consumer: &BaseConsumer,
    shards: Vec<SyncSender<Chunk>>,
    settings: &SourceSettings,
    stop: &AtomicBool,
) {
    let mut open: Vec<Open> = shards.iter().map(|_| Open::default()).collect();
    let mut last_error: Option<(String, Instant)> = None;
    while !stop.load(Ordering::Relaxed) {
        let wait = open
            .iter()
            .filter_map(|o| o.since)
            .map(|since| (since + settings.max_wait).saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        match consumer.poll(wait) {
            Some(Ok(message)) => {
                let shard = message.partition().unsigned_abs() as usize % shards.len();
                add(&mut open[shard], &message, settings);
                if open[shard].records() >= settings.max_records
                    && !hand_over(consumer, &shards, &mut open, shard, settings)
                {
                    return;
                }
            }
            Some(Err(error)) => {
                // librdkafka retries by itself; say so once per kind of error and minute.
                let text = error.to_string();
                let repeat = last_error.as_ref().is_some_and(|(last, at)| {
                    *last == text && at.elapsed() < Duration::from_secs(60)
                });
                if !repeat {
                    tracing::warn!(error = %text, "Kafka consumer error; retrying.");
                    last_error = Some((text, Instant::now()));
                }
            }
            None => {}
        }
        for shard in 0..shards.len() {
            if open[shard]
                .since
                .is_some_and(|since| since.elapsed() >= settings.max_wait)
                && !hand_over(consumer, &shards, &mut open, shard, settings)
            {
                return;
            }
        }
    }
    for shard in 0..shards.len() {
        if open[shard].records() > 0 && !hand_over(consumer, &shards, &mut open, shard, settings) {
            return;
        }
    }
}

/// How long a hand-over waits on a busy shard before pausing the consumer.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// Sends shard `shard`'s open chunk; false when the shard has stopped.
///
/// While the shard is busy the consumer's partitions are paused and it
/// keeps being polled: it stays in its group however long a sink stalls
/// (a consumer that stops polling for `max.poll.interval.ms` is put out of
/// the group, and would read again records it already has in state). Pausing
/// drops what librdkafka prefetched; fetching resumes from the next offset.
fn hand_over(
    consumer: &BaseConsumer,
    shards: &[SyncSender<Chunk>],
    open: &mut [Open],
    shard: usize,
    settings: &SourceSettings,
) -> bool {
    let mut chunk = open[shard].take();
    let mut paused: Option<TopicPartitionList> = None;
    let since = Instant::now();
    let delivered = loop {
        match shards[shard].try_send(chunk) {
            Ok(()) => break true,
            Err(TrySendError::Disconnected(_)) => break false,
            Err(TrySendError::Full(back)) => chunk = back,
        }
        // A busy shard is the normal pace at full speed: wait a little
        // first, since pausing throws away what was prefetched.
        if since.elapsed() < PAUSE_AFTER {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        if paused.is_none()
            && let Ok(assignment) = consumer.assignment()
        {
            if let Err(error) = consumer.pause(&assignment) {
                tracing::warn!(%error, "Could not pause the consumer's partitions.");
            }
            paused = Some(assignment);
        }
        // Serves the group's events; paused partitions yield no records,
        // but one that arrives anyway is kept, not lost.
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
            let other = message.partition().unsigned_abs() as usize % shards.len();
            add(&mut open[other], &message, settings);
        }
    };
    if let Some(assignment) = paused
        && let Err(error) = consumer.resume(&assignment)
    {
        tracing::error!(%error, "Could not resume the consumer's partitions.");
    }
    delivered
}

/// Checks one record and adds it to the batch, or to the dead letters.
fn add(slot: &mut Open, message: &BorrowedMessage<'_>, settings: &SourceSettings) {
    let partition = message.partition();
    let offset = message.offset();
    let record = RecordRef {
        key: message.key(),
        value: message.payload().unwrap_or_default(),
        timestamp: message.timestamp().to_millis().unwrap_or_default(),
        partition,
        offset,
    };
    slot.since.get_or_insert_with(Instant::now);
    match slot.offsets.iter_mut().find(|(p, _)| *p == partition) {
        Some(next) => next.1 = offset + 1,
        None => slot.offsets.push((partition, offset + 1)),
    }
    if let Some(letter) = refuse(record, settings) {
        slot.dead.push(letter);
        return;
    }
    slot.builder.push(record);
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            slot.builder
                .header(header.key, header.value.unwrap_or_default());
        }
    }
}

/// The source's own checks: the dead letter for a record it refuses.
fn refuse(record: RecordRef<'_>, settings: &SourceSettings) -> Option<DeadLetter> {
    let size = record.value.len();
    if size > settings.max_record_bytes {
        // Too big to pass on: the dead letter says where the value is instead
        // of carrying it (the dead-letter topic takes no larger messages either).
        let reason = format!(
            "the value is {size} bytes; the source takes at most {} (`max_record_bytes`); \
             it is left out of the dead letter: read it from the source topic at the \
             partition and offset in the headers",
            settings.max_record_bytes
        );
        let record = RecordRef {
            value: &[],
            ..record
        };
        return Some(DeadLetter::malformed(record, "source", "oversized", reason));
    }
    let reason = check_format(record.value, settings.format).err()?;
    Some(DeadLetter::malformed(record, "source", "not-json", reason))
}

/// Checks that `value` is what `format` promises the plugins.
fn check_format(value: &[u8], format: Format) -> Result<(), String> {
    match format {
        Format::Bytes => Ok(()),
        Format::Json => {
            if value.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                let what = if value.iter().all(u8::is_ascii_whitespace) {
                    "the value is empty"
                } else {
                    "the value is not a JSON object"
                };
                return Err(format!("{what}; the source's format is `json`"));
            }
            // Skipping over strings does not check their UTF-8, so check it first.
            let text = std::str::from_utf8(value)
                .map_err(|error| format!("the value is not UTF-8, so not JSON: {error}"))?;
            serde_json::from_str::<serde::de::IgnoredAny>(text)
                .map(drop)
                .map_err(|error| format!("the value is not valid JSON: {error}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SourceSettings {
        SourceSettings {
            max_records: 10,
            max_wait: Duration::from_millis(10),
            format: Format::Json,
            max_record_bytes: 64,
        }
    }

    #[test]
    fn the_source_refuses_what_is_not_a_json_object_or_too_big() {
        let settings = settings();
        let refused = |value: &[u8], settings: &SourceSettings| {
            let record = RecordRef {
                key: Some(b"k"),
                value,
                timestamp: 1,
                partition: 2,
                offset: 3,
            };
            refuse(record, settings).map(|letter| (letter.code, letter.reason, letter.value))
        };
        assert_eq!(refused(br#" {"a": 1}"#, &settings), None);
        let code = |value: &[u8]| refused(value, &settings).expect("refused");
        assert_eq!(
            code(b"").1,
            "the value is empty; the source's format is `json`"
        );
        assert_eq!(code(b"[1, 2]").0, "not-json");
        assert_eq!(
            code(b"[1, 2]").2,
            b"[1, 2]",
            "the dead letter keeps the value"
        );
        assert_eq!(code(b"42").0, "not-json");
        assert_eq!(code(br#"{"a": "#).0, "not-json");
        assert_eq!(code(b"{\"a\": \"\xff\"}").0, "not-json");
        let (oversized, _, value) = code(&[b' '; 65]);
        assert_eq!(oversized, "oversized");
        assert!(value.is_empty(), "an oversized value is left out");
        let bytes = SourceSettings {
            format: Format::Bytes,
            ..settings
        };
        assert_eq!(refused(b"\xff\x00", &bytes), None);
    }
}
