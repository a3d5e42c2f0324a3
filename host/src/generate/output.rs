//! Where generated events go: a Kafka topic (keyed by `session_id`) or a
//! JSON Lines file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, ToBytes};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use super::event::Event;
use crate::kafka::{Connection, Producing};

/// An output failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Kafka refused or lost events.
    #[error("Kafka at {bootstrap}, topic `{topic}`: {message}")]
    Kafka {
        /// Bootstrap servers.
        bootstrap: String,
        /// Topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
}

/// Counts deliveries the broker refused.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

#[derive(Clone, Default)]
struct DeliveryContext(Arc<Deliveries>);

impl rdkafka::ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((error, _)) = result {
            self.0.failed.fetch_add(1, Ordering::Relaxed);
            *self.0.last_error.lock().expect("lock") = Some(error.to_string());
        }
    }
}

/// An open output.
pub struct Output(Target);

enum Target {
    /// JSON Lines.
    File {
        /// The file.
        path: PathBuf,
        /// Buffered writer.
        writer: BufWriter<File>,
    },
    /// A Kafka topic.
    Kafka {
        /// Bootstrap servers.
        bootstrap: String,
        /// Topic.
        topic: String,
        /// The producer (delivers from its own thread).
        producer: ThreadedProducer<DeliveryContext>,
        /// Delivery failures.
        context: DeliveryContext,
    },
}

impl Output {
    /// A JSON Lines file (created or truncated).
    pub fn file(path: &Path) -> Result<Self, OutputError> {
        let file = File::create(path).map_err(|source| OutputError::File {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self(Target::File {
            path: path.to_owned(),
            writer: BufWriter::new(file),
        }))
    }

    /// A Kafka topic, written idempotently (no duplicates on retries).
    pub fn kafka(kafka: &Connection, topic: &str) -> Result<Self, OutputError> {
        let bootstrap = kafka.bootstrap();
        let context = DeliveryContext::default();
        let producer = kafka
            .producer(Producing::Stream)
            .create_with_context(context.clone())
            .map_err(|error| kafka_error(bootstrap, topic, error.to_string()))?;
        Ok(Self(Target::Kafka {
            bootstrap: bootstrap.to_owned(),
            topic: topic.to_owned(),
            producer,
            context,
        }))
    }

    /// Where events go, for logs.
    pub fn describe(&self) -> String {
        match &self.0 {
            Target::File { path, .. } => path.display().to_string(),
            Target::Kafka {
                bootstrap, topic, ..
            } => format!("kafka://{bootstrap}/{topic}"),
        }
    }

    /// Writes one event (keyed by its session in Kafka).
    pub fn write(&mut self, event: &Event) -> Result<(), OutputError> {
        let value = serde_json::to_vec(event).expect("events always serialise");
        match &mut self.0 {
            Target::File { path, writer } => writer
                .write_all(&value)
                .and_then(|()| writer.write_all(b"\n"))
                .map_err(|source| OutputError::File {
                    path: path.clone(),
                    source,
                }),
            Target::Kafka {
                bootstrap,
                topic,
                producer,
                context,
            } => {
                if context.0.failed.load(Ordering::Relaxed) > 0 {
                    return Err(kafka_lost(bootstrap, topic, context));
                }
                let record = BaseRecord::to(topic.as_str())
                    .key(event.session_id.as_bytes())
                    .payload(&value);
                send_waiting(producer, record)
                    .map_err(|error| kafka_error(bootstrap, topic, error.to_string()))
            }
        }
    }

    /// Flushes: every event is in the file or acknowledged by the broker.
    pub fn finish(self) -> Result<(), OutputError> {
        match self.0 {
            Target::File { path, mut writer } => writer
                .flush()
                .map_err(|source| OutputError::File { path, source }),
            Target::Kafka {
                bootstrap,
                topic,
                producer,
                context,
            } => {
                producer.flush(Duration::from_secs(120)).map_err(|error| {
                    kafka_error(
                        &bootstrap,
                        &topic,
                        format!("events not acknowledged in time: {error}"),
                    )
                })?;
                if context.0.failed.load(Ordering::Relaxed) > 0 {
                    return Err(kafka_lost(&bootstrap, &topic, &context));
                }
                Ok(())
            }
        }
    }
}

fn kafka_error(bootstrap: &str, topic: &str, message: String) -> OutputError {
    OutputError::Kafka {
        bootstrap: bootstrap.to_owned(),
        topic: topic.to_owned(),
        message,
    }
}

/// Sends `record`; while the producer's local queue is full, waits for
/// deliveries to make room (backpressure) instead of failing.
pub fn send_waiting<C: ProducerContext, K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
) -> KafkaResult<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((error, _)) => return Err(error),
        }
    }
}

fn kafka_lost(bootstrap: &str, topic: &str, context: &DeliveryContext) -> OutputError {
    kafka_error(
        bootstrap,
        topic,
        format!(
            "{} events were not delivered (last error: {})",
            context.0.failed.load(Ordering::Relaxed),
            context
                .0
                .last_error
                .lock()
                .expect("lock")
                .as_deref()
                .unwrap_or("unknown")
        ),
    )
}
