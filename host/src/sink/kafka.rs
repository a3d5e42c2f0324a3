//! The Kafka sink: rows as Avro in the Confluent wire format (magic byte 0,
//! the schema's 4-byte big-endian id, the Avro binary datum), keyed by the
//! aggregate's key as plain UTF-8, the schema registered once under
//! `<topic>-value`.

use std::time::Duration;

use apache_avro::types::Value as Avro;
use apache_avro::{Schema, to_avro_datum};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::registry::{RegistryClient, RegistryError};
use super::schema::{RowSchema, SchemaError};
use crate::plugin::Value;

/// The Kafka sink failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    /// Registering the schema failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A row did not fit the schema.
    #[error("topic `{topic}`: {source}")]
    Row {
        /// The topic.
        topic: String,
        /// Why.
        source: SchemaError,
    },
    /// Kafka refused a write.
    #[error("topic `{topic}`: {message}")]
    Kafka {
        /// The topic.
        topic: String,
        /// Why.
        message: String,
    },
}

/// Writes rows to one topic.
pub struct KafkaSink {
    topic: String,
    subject: String,
    schema: RowSchema,
    schema_id: u32,
    producer: FutureProducer,
}

impl KafkaSink {
    /// Registers `schema` under `subject` (default `<topic>-value`) and opens
    /// an idempotent producer to `topic`.
    pub async fn connect(
        bootstrap: &str,
        registry: &RegistryClient,
        topic: &str,
        subject: Option<&str>,
        schema: RowSchema,
    ) -> Result<Self, KafkaSinkError> {
        let subject = subject.map_or_else(|| format!("{topic}-value"), str::to_owned);
        let schema_id = registry.register(&subject, &schema.text).await?;
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // A flush is sent as a whole and awaited: few large requests
            // beat many small ones, and waiting to fill them buys nothing.
            .set("linger.ms", "1")
            .set("batch.size", "1000000")
            .set("compression.type", "lz4")
            .create()
            .map_err(|e| KafkaSinkError::Kafka {
                topic: topic.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            topic: topic.to_owned(),
            subject,
            schema,
            schema_id,
            producer,
        })
    }

    /// The schema id every message carries.
    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// The subject the row schema is registered under.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Encodes `row` in the Confluent wire format.
    pub fn encode(&self, row: &[Value]) -> Result<Vec<u8>, SchemaError> {
        encode(row, &self.schema, self.schema_id)
    }

    /// Writes `rows` (key, row) and returns once Kafka has acknowledged all
    /// of them (`acks=all`): after this they are durable.
    pub async fn send(&self, rows: &[(String, Vec<Value>)]) -> Result<(), KafkaSinkError> {
        self.send_as(rows, &self.schema, self.schema_id).await
    }

    /// [`Self::send`] of rows shaped by `schema` (a plugin version's),
    /// registered as `schema_id`.
    pub async fn send_as(
        &self,
        rows: &[(String, Vec<Value>)],
        schema: &RowSchema,
        schema_id: u32,
    ) -> Result<(), KafkaSinkError> {
        let messages = rows
            .iter()
            .map(|(key, row)| Ok((key, encode(row, schema, schema_id)?)))
            .collect::<Result<Vec<_>, SchemaError>>()
            .map_err(|source| KafkaSinkError::Row {
                topic: self.topic.clone(),
                source,
            })?;
        let deliveries: Vec<_> = messages
            .iter()
            .map(|(key, payload)| {
                self.producer.send(
                    FutureRecord::to(&self.topic)
                        .key(key.as_str())
                        .payload(payload),
                    Duration::from_secs(30),
                )
            })
            .collect();
        for delivery in futures::future::join_all(deliveries).await {
            delivery.map_err(|(error, _)| KafkaSinkError::Kafka {
                topic: self.topic.clone(),
                message: error.to_string(),
            })?;
        }
        Ok(())
    }
}

/// `row` in the Confluent wire format: magic byte, `schema_id`, the Avro datum.
fn encode(row: &[Value], schema: &RowSchema, schema_id: u32) -> Result<Vec<u8>, SchemaError> {
    schema.check(row)?;
    let Schema::Record(record) = &schema.avro else {
        unreachable!("RowSchema only holds records");
    };
    let fields = record
        .fields
        .iter()
        .zip(row)
        .map(|(field, value)| (field.name.clone(), avro_value(&field.schema, value)))
        .collect();
    let datum = to_avro_datum(&schema.avro, Avro::Record(fields)).map_err(SchemaError::Avro)?;
    let mut message = Vec::with_capacity(5 + datum.len());
    message.push(0);
    message.extend_from_slice(&schema_id.to_be_bytes());
    message.extend_from_slice(&datum);
    Ok(message)
}

/// A row value as Avro, placed in its union branch when the field is nullable.
fn avro_value(schema: &Schema, value: &Value) -> Avro {
    let plain = match value {
        Value::Null => Avro::Null,
        Value::Boolean(b) => Avro::Boolean(*b),
        Value::Long(n) => match union_inner(schema) {
            Schema::Int => Avro::Int(*n as i32),
            _ => Avro::Long(*n),
        },
        Value::Double(x) => match union_inner(schema) {
            Schema::Float => Avro::Float(*x as f32),
            _ => Avro::Double(*x),
        },
        Value::Text(s) => Avro::String(s.clone()),
        Value::Bytes(b) => Avro::Bytes(b.clone()),
    };
    match schema {
        Schema::Union(union) => {
            let position = union
                .variants()
                .iter()
                .position(|variant| match (&plain, variant) {
                    (Avro::Null, Schema::Null) => true,
                    (Avro::Null, _) | (_, Schema::Null) => false,
                    _ => true,
                })
                .unwrap_or(0);
            Avro::Union(position as u32, Box::new(plain))
        }
        _ => plain,
    }
}

fn union_inner(schema: &Schema) -> &Schema {
    match schema {
        Schema::Union(union) => union
            .variants()
            .iter()
            .find(|s| **s != Schema::Null)
            .unwrap_or(schema),
        other => other,
    }
}
