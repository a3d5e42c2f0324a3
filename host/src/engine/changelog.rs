//! The changelog of an aggregator's state: a compacted Kafka topic per
//! pipeline group and stage, partitioned like the input (the state of input
//! partition `p` lives in changelog partition `p`). Each flush writes the
//! keys that changed (after the sinks have their rows, before the input
//! offsets are committed); an evicted key gets a tombstone. Compaction keeps
//! the newest record per key, so restoring reads each key about once.
//!
//! A record's key is the state key; its value is
//!
//! ```text
//! byte 0       format (1)
//! bytes 1..5   the aggregator's state version (u32, big-endian)
//! bytes 5..13  applied offset: the newest input offset folded in (i64, big-endian)
//! bytes 13..21 the key's newest event time, ms (i64, big-endian)
//! bytes 21..   the state bytes, as the plugin returned them
//! ```
//!
//! An aggregator behind a repartition topic ([`super::origin`]) also keeps,
//! per key, the newest source record folded in per source partition: its
//! values are format 2, the same header, then the origins, then the state:
//!
//! ```text
//! bytes 21..23     how many origins, n (u16, big-endian)
//! n × 16 bytes     source partition (i32), offset (i64), index (u32), big-endian
//! then             the state bytes
//! ```
//!
//! Other aggregators write format 1, which weir has always read.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::origin::{Origin, Origins};
use crate::kafka::Connection;
pub use crate::sink::changelog::{ChangelogRecord, ChangelogWriter};

/// The value format of state without origins.
const FORMAT: u8 = 1;
/// The value format of state with origins (behind a repartition topic).
const FORMAT_ORIGINS: u8 = 2;
const HEADER: usize = 21;
/// The bytes of one origin in a format 2 value.
const ORIGIN_BYTES: usize = 16;

/// The changelog topic of `stage` in the pipeline consuming as `group`: the
/// state belongs with the group's committed offsets, so a new group starts
/// with new state.
pub fn topic(group: &str, stage: &str) -> String {
    format!("{group}.{stage}.changelog")
}

/// The topic settings of a changelog.
pub fn topic_config() -> [(&'static str, &'static str); 3] {
    [
        ("cleanup.policy", "compact"),
        // Compaction only cleans closed segments: keep them small enough
        // that a restore reads little beyond each key's newest record.
        ("segment.bytes", "67108864"),
        ("min.cleanable.dirty.ratio", "0.3"),
    ]
}

/// A changelog value weir cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Too short to hold the header.
    #[error("a changelog value of {0} bytes is shorter than its {HEADER}-byte header")]
    Short(usize),
    /// Too short to hold the origins its header announces.
    #[error("a changelog value of {len} bytes cannot hold the {origins} origins it announces")]
    ShortOrigins {
        /// Its length.
        len: usize,
        /// The origins announced.
        origins: usize,
    },
    /// Format 2 without origins (weir writes format 1 then).
    #[error("a changelog value of format {FORMAT_ORIGINS} holds no origins")]
    NoOrigins,
    /// Another format.
    #[error(
        "changelog format {0} is not one this weir reads (it reads {FORMAT} and \
         {FORMAT_ORIGINS}); a newer weir wrote it"
    )]
    Format(u8),
}

/// Restoring from a changelog failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Kafka failed.
    #[error("restoring from changelog `{topic}`: {what}: {source}")]
    Kafka {
        /// The changelog.
        topic: String,
        /// What was being done.
        what: String,
        /// What Kafka said.
        source: Box<KafkaError>,
    },
    /// A value is not one weir wrote.
    #[error("restoring from changelog `{topic}`: partition {partition} offset {offset}: {source}")]
    Value {
        /// The changelog.
        topic: String,
        /// Where.
        partition: i32,
        /// Where.
        offset: i64,
        /// Why.
        source: DecodeError,
    },
    /// The changelog lacks partitions the source has, and could not be given them.
    #[error("changelog `{topic}` has fewer partitions than the source: {source}")]
    Partitions {
        /// The changelog.
        topic: String,
        /// Why they could not be added.
        source: Box<crate::kafka::TopicsError>,
    },
    /// Nothing came for too long.
    #[error(
        "restoring from changelog `{topic}`: no progress: nothing read for {waited:?}, {unfinished} partitions unfinished"
    )]
    Stalled {
        /// The changelog.
        topic: String,
        /// How long it waited.
        waited: Duration,
        /// Partitions not read to their end.
        unfinished: usize,
    },
}

/// One key's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The state version of the plugin that wrote it.
    pub state_version: u32,
    /// The newest input offset folded into `state`.
    pub applied: i64,
    /// Behind a repartition topic: the newest source record folded in, per
    /// source partition (empty otherwise).
    pub origins: Origins,
    /// The key's newest event time (ms).
    pub last_event: i64,
    /// The plugin's state bytes.
    pub state: Vec<u8>,
}

impl Stored {
    /// The changelog value.
    pub fn encode(&self) -> Vec<u8> {
        let origins = self.origins.as_slice();
        let mut value =
            Vec::with_capacity(HEADER + 2 + origins.len() * ORIGIN_BYTES + self.state.len());
        value.push(if origins.is_empty() {
            FORMAT
        } else {
            FORMAT_ORIGINS
        });
        value.extend_from_slice(&self.state_version.to_be_bytes());
        value.extend_from_slice(&self.applied.to_be_bytes());
        value.extend_from_slice(&self.last_event.to_be_bytes());
        if !origins.is_empty() {
            // One per source partition: Kafka topics have far fewer than 65 536.
            let count = u16::try_from(origins.len()).expect("fewer origins than partitions");
            value.extend_from_slice(&count.to_be_bytes());
            for origin in origins {
                value.extend_from_slice(&origin.encode());
            }
        }
        value.extend_from_slice(&self.state);
        value
    }

    /// Reads a changelog value.
    pub fn decode(value: &[u8]) -> Result<Self, DecodeError> {
        if value.len() < HEADER {
            return Err(DecodeError::Short(value.len()));
        }
        let word = |range: std::ops::Range<usize>| -> [u8; 8] {
            value[range].try_into().expect("eight bytes")
        };
        let (origins, state) = match value[0] {
            FORMAT => (Origins::default(), &value[HEADER..]),
            FORMAT_ORIGINS => read_origins(value)?,
            other => return Err(DecodeError::Format(other)),
        };
        Ok(Self {
            state_version: u32::from_be_bytes(value[1..5].try_into().expect("four bytes")),
            applied: i64::from_be_bytes(word(5..13)),
            origins,
            last_event: i64::from_be_bytes(word(13..21)),
            state: state.to_vec(),
        })
    }
}

/// The origins of a format 2 value, and its state bytes.
fn read_origins(value: &[u8]) -> Result<(Origins, &[u8]), DecodeError> {
    let short = |origins: usize| DecodeError::ShortOrigins {
        len: value.len(),
        origins,
    };
    let count: [u8; 2] = (value.get(HEADER..HEADER + 2))
        .ok_or_else(|| short(0))?
        .try_into()
        .expect("two bytes");
    let count = usize::from(u16::from_be_bytes(count));
    if count == 0 {
        return Err(DecodeError::NoOrigins);
    }
    let start = HEADER + 2;
    let end = start + count * ORIGIN_BYTES;
    let entries = value.get(start..end).ok_or_else(|| short(count))?;
    let origins = entries
        .chunks_exact(ORIGIN_BYTES)
        .map(|bytes| Origin::decode(bytes).expect("sixteen bytes"))
        .collect();
    Ok((Origins::from_vec(origins), &value[end..]))
}

/// The state of some partitions read back from a changelog.
#[derive(Debug, Default)]
pub struct Restored {
    /// Per partition, each key's newest state.
    pub partitions: HashMap<i32, HashMap<Vec<u8>, Stored>>,
    /// Changelog records read.
    pub records: u64,
}

impl Restored {
    /// Keys restored.
    pub fn keys(&self) -> usize {
        self.partitions.values().map(HashMap::len).sum()
    }
}

/// Reads `partitions` of the changelog `topic` from their start to their
/// end as of the call: each key's newest state (a tombstone removes it).
/// Blocking; gives up after `timeout` without progress.
pub fn restore(
    kafka: &Connection,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<Restored, RestoreError> {
    let consumer: BaseConsumer = kafka
        .restore_consumer()
        .create()
        .map_err(failed(topic, "cannot create a consumer"))?;
    let mut restored = Restored::default();
    let assigned = assign(&consumer, topic, partitions, timeout, &mut restored);
    let mut ends = match assigned {
        Err(RestoreError::Kafka { .. }) => {
            // A partition added to the source since the changelog was made
            // has none yet: it gets one (empty, nothing to restore), so its
            // state can be written; then the restore is tried again.
            let needed = partitions.iter().max().map_or(0, |&p| p as usize + 1);
            crate::kafka::ensure_partitions(kafka, topic, needed).map_err(|error| {
                RestoreError::Partitions {
                    topic: topic.to_owned(),
                    source: Box::new(error),
                }
            })?;
            restored = Restored::default();
            assign(&consumer, topic, partitions, timeout, &mut restored)?
        }
        assigned => assigned?,
    };
    let mut progress = Instant::now();
    while !ends.is_empty() {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            // Compaction can leave the end beyond the last record: ask where we are.
            if let Ok(positions) = consumer.position() {
                for entry in positions.elements() {
                    if let Offset::Offset(at) = entry.offset()
                        && ends.get(&entry.partition()).is_some_and(|&end| at >= end)
                    {
                        ends.remove(&entry.partition());
                    }
                }
            }
            if progress.elapsed() > timeout {
                return Err(RestoreError::Stalled {
                    topic: topic.to_owned(),
                    waited: timeout,
                    unfinished: ends.len(),
                });
            }
            continue;
        };
        let message = message.map_err(failed(topic, "reading"))?;
        progress = Instant::now();
        let partition = message.partition();
        let Some(&end) = ends.get(&partition) else {
            continue;
        };
        restored.apply(topic, &message)?;
        if message.offset() + 1 >= end {
            ends.remove(&partition);
        }
    }
    Ok(restored)
}

/// Assigns `consumer` the start of each of `partitions` that holds records
/// and returns where each ends now (records written later are not ours to
/// read); every partition gets its place in `restored`.
fn assign(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
    restored: &mut Restored,
) -> Result<HashMap<i32, i64>, RestoreError> {
    let mut ends = HashMap::new();
    let mut list = TopicPartitionList::new();
    for &partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(failed(topic, &format!("partition {partition}")))?;
        let records = usize::try_from(high - low).unwrap_or_default();
        restored
            .partitions
            .insert(partition, HashMap::with_capacity(records));
        if high > low {
            ends.insert(partition, high);
            list.add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(failed(topic, "cannot assign"))?;
        }
    }
    if !ends.is_empty() {
        consumer
            .assign(&list)
            .map_err(failed(topic, "cannot assign"))?;
    }
    Ok(ends)
}

/// A Kafka error while restoring from `topic`, doing `what`.
fn failed(topic: &str, what: &str) -> impl Fn(KafkaError) -> RestoreError {
    let (topic, what) = (topic.to_owned(), what.to_owned());
    move |source| RestoreError::Kafka {
        topic: topic.clone(),
        what: what.clone(),
        source: Box::new(source),
    }
}

impl Restored {
    /// Applies one changelog record of `topic`: its key's newest state, or
    /// a tombstone that removes the key.
    fn apply(&mut self, topic: &str, message: &BorrowedMessage<'_>) -> Result<(), RestoreError> {
        self.records += 1;
        let partition = message.partition();
        // weir writes only keys that can key state; anything else was not
        // written by weir and is left out.
        let key = message
            .key()
            .filter(|key| super::chain::check_key(key).is_ok());
        let Some(key) = key else {
            if message.key().is_some() {
                tracing::warn!(
                    topic,
                    partition,
                    offset = message.offset(),
                    "A changelog key that is not text weir writes; left out of the restore."
                );
            }
            return Ok(());
        };
        let keys = self.partitions.entry(partition).or_default();
        match message.payload() {
            Some(value) => {
                let stored = Stored::decode(value).map_err(|source| RestoreError::Value {
                    topic: topic.to_owned(),
                    partition,
                    offset: message.offset(),
                    source,
                })?;
                keys.insert(key.to_vec(), stored);
            }
            None => {
                keys.remove(key);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_state_reads_back_as_written() {
        let stored = Stored {
            state_version: 7,
            applied: 1 << 40,
            origins: Origins::default(),
            last_event: -3,
            state: b"{\"n\":1}".to_vec(),
        };
        let value = stored.encode();
        assert_eq!(value.len(), HEADER + 7);
        assert_eq!(
            value[0], 1,
            "state without origins is format 1, as weir always wrote"
        );
        assert_eq!(Stored::decode(&value), Ok(stored));
        assert_eq!(Stored::decode(&value[..20]), Err(DecodeError::Short(20)));
        let mut newer = value;
        newer[0] = 3;
        let error = Stored::decode(&newer).unwrap_err();
        assert_eq!(error, DecodeError::Format(3));
        assert!(error.to_string().contains("newer weir"), "{error}");
    }

    #[test]
    fn state_with_origins_reads_back_as_written() {
        let origin = |partition, offset, index| Origin {
            partition,
            offset,
            index,
        };
        let stored = Stored {
            state_version: 2,
            applied: 99,
            origins: Origins::from_vec(vec![origin(3, 1 << 33, 0), origin(0, 5, 2)]),
            last_event: 1_700_000_000_000,
            state: b"state".to_vec(),
        };
        let value = stored.encode();
        assert_eq!(value[0], 2);
        assert_eq!(value.len(), HEADER + 2 + 2 * ORIGIN_BYTES + 5);
        assert_eq!(Stored::decode(&value), Ok(stored));
        // Cut inside the origins: refused, not read as state.
        let cut = &value[..HEADER + 2 + ORIGIN_BYTES];
        assert_eq!(
            Stored::decode(cut),
            Err(DecodeError::ShortOrigins {
                len: cut.len(),
                origins: 2
            })
        );
        assert_eq!(
            Stored::decode(&value[..HEADER + 1]),
            Err(DecodeError::ShortOrigins {
                len: HEADER + 1,
                origins: 0
            })
        );
    }
}
