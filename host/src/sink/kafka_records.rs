//! A pipeline without an aggregator: the records its last stage passed on,
//! to a Kafka topic as they are — key, value, headers and timestamp.
//!
//! Records are partitioned by their key with the Java client's hash
//! (murmur2), so a Kafka Streams or Java consumer of the topic sees each
//! key where it would have put it; records without a key are spread.

use futures::future::BoxFuture;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::error::SinkError;
use super::output::{Records, Sink};
use crate::kafka::{Connection, Producing, send_all};
use crate::plugin::{Batch, BatchExt};

/// Writes a stateless pipeline's records to one topic.
pub struct KafkaRecordSink {
    topic: String,
    producer: FutureProducer,
}

impl KafkaRecordSink {
    /// A sink writing to `topic` (idempotent, `acks=all`).
    pub fn new(kafka: &Connection, topic: &str) -> Result<Self, KafkaError> {
        let producer = kafka
            .producer(Producing::Flushes)
            .set("partitioner", "murmur2_random")
            .create()?;
        Ok(Self {
            topic: topic.to_owned(),
            producer,
        })
    }

    /// A sink writing a re-keyed pipeline's repartition topic `topic`: as
    /// [`Self::new`], and a record that cannot be written fails the
    /// producer rather than leaving a gap behind the records after it
    /// (`enable.gapless.guarantee`), and none is given up for lost while
    /// Kafka is away (`message.timeout.ms` 0: delivery waits, as it waits
    /// for any sink). The second hop counts each record once only if the
    /// records of a source partition arrive in order and without gaps (see
    /// [`crate::engine::origin`]).
    pub fn repartition(kafka: &Connection, topic: &str) -> Result<Self, KafkaError> {
        let producer = kafka
            .producer(Producing::Flushes)
            .set("partitioner", "murmur2_random")
            .set("enable.gapless.guarantee", "true")
            .set("message.timeout.ms", "0")
            .create()?;
        Ok(Self {
            topic: topic.to_owned(),
            producer,
        })
    }

    /// Sends every record of `batches`, returning once Kafka has
    /// acknowledged each.
    async fn send(&self, batches: &[Batch]) -> Result<(), KafkaError> {
        let count = batches.iter().map(|batch| batch.records.len()).sum();
        let mut messages = Vec::with_capacity(count);
        for batch in batches {
            for index in 0..batch.records.len() {
                let record = batch.record(index);
                let mut message = FutureRecord::to(&self.topic)
                    .payload(record.value)
                    .timestamp(record.timestamp);
                if let Some(key) = record.key {
                    message = message.key(key);
                }
                let headers = batch.headers_of(index);
                if !headers.is_empty() {
                    let own = headers.iter().fold(OwnedHeaders::new(), |own, header| {
                        own.insert(Header {
                            key: &header.key,
                            value: Some(&header.value),
                        })
                    });
                    message = message.headers(own);
                }
                messages.push(message);
            }
        }
        send_all(&self.producer, messages).await
    }
}

impl Sink for KafkaRecordSink {
    fn name(&self) -> &str {
        "kafka"
    }

    fn count(&self, records: &Records) -> usize {
        records.emitted_count()
    }

    fn write<'a>(&'a self, records: &'a Records) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.send(&records.emitted)
                .await
                .map_err(|error| SinkError::from_kafka(self.name(), &self.topic, error))
        })
    }
}
