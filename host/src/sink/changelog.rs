//! The changelog writer: each flush's state changes to the aggregator's
//! compacted changelog topic, after every output confirmed (the format of
//! a record's value and restoring from the topic are the engine's:
//! `engine/changelog.rs`).

use futures::future::BoxFuture;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::error::SinkError;
use super::output::{Phase, Records, Sink};
use crate::kafka::{Connection, Producing, send_all};

/// A record for the changelog: `value` `None` is a tombstone (the key was evicted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    /// The input partition, which is also the changelog partition.
    pub partition: i32,
    /// The state key.
    pub key: Vec<u8>,
    /// The encoded [`Stored`] state, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

/// Writes a stage's changelog.
pub struct ChangelogWriter {
    topic: String,
    producer: FutureProducer,
}

impl ChangelogWriter {
    /// A writer to `topic` (idempotent, `acks=all`).
    pub fn new(kafka: &Connection, topic: &str) -> Result<Self, KafkaError> {
        let producer = kafka.producer(Producing::Flushes).create()?;
        Ok(Self {
            topic: topic.to_owned(),
            producer,
        })
    }

    /// The topic written.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `records` and returns once Kafka has acknowledged every one.
    pub async fn send(&self, records: &[ChangelogRecord]) -> Result<(), KafkaError> {
        let messages = records.iter().map(|record| {
            let mut message = FutureRecord::to(&self.topic)
                .partition(record.partition)
                .key(&record.key);
            if let Some(value) = &record.value {
                message = message.payload(value);
            }
            message
        });
        send_all(&self.producer, messages.collect()).await
    }
}

impl Sink for ChangelogWriter {
    fn name(&self) -> &str {
        "changelog"
    }

    fn phase(&self) -> Phase {
        Phase::State
    }

    fn count(&self, records: &Records) -> usize {
        records.changelog.len()
    }

    fn write<'a>(&'a self, records: &'a Records) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.send(&records.changelog)
                .await
                .map_err(|error| SinkError::from_kafka(self.name(), &self.topic, error))
        })
    }
}
