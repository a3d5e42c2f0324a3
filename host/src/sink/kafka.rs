//! The Kafka sink: rows as Avro in the Confluent wire format (magic byte 0,
//! the schema's 4-byte big-endian id, the Avro binary datum), keyed by the
//! aggregate's key as plain UTF-8, the schema registered once under
//! `<topic>-value`.

use apache_avro::write_avro_datum_ref;
use futures::future::BoxFuture;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::error::SinkError;
use super::output::{Prepared, Records, Rows, Shape, Sink};
use super::registry::{RegistryClient, RegistryError};
use super::schema::{RowSchema, SchemaError};
use crate::kafka::{Connection, Producing, send_all};
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
    #[error("topic `{topic}`: {source}")]
    Kafka {
        /// The topic.
        topic: String,
        /// Why.
        source: KafkaError,
    },
}

/// Writes rows to one topic.
pub struct KafkaSink {
    topic: String,
    subject: String,
    schema: RowSchema,
    schema_id: u32,
    producer: FutureProducer,
    registry: RegistryClient,
    /// The registry id of each shape prepared.
    ids: Prepared<u32>,
}

impl KafkaSink {
    /// Registers `schema` under `subject` (default `<topic>-value`) and opens
    /// an idempotent producer to `topic`.
    pub async fn connect(
        kafka: &Connection,
        registry: RegistryClient,
        topic: &str,
        subject: Option<&str>,
        schema: RowSchema,
    ) -> Result<Self, KafkaSinkError> {
        let subject = subject.map_or_else(|| format!("{topic}-value"), str::to_owned);
        let schema_id = registry.register(&subject, &schema.text).await?;
        let producer = kafka
            .producer(Producing::Flushes)
            .create()
            .map_err(|source| KafkaSinkError::Kafka {
                topic: topic.to_owned(),
                source,
            })?;
        Ok(Self {
            topic: topic.to_owned(),
            subject,
            schema,
            schema_id,
            producer,
            registry,
            ids: Prepared::default(),
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
        let records = messages.iter().map(|(key, payload)| {
            FutureRecord::to(&self.topic)
                .key(key.as_str())
                .payload(payload)
        });
        send_all(&self.producer, records.collect())
            .await
            .map_err(|source| KafkaSinkError::Kafka {
                topic: self.topic.clone(),
                source,
            })
    }
}

impl KafkaSinkError {
    /// What delivery should do about it.
    fn classify(self, sink: &str) -> SinkError {
        match self {
            // The registry answered no, or not at all: a service's trouble.
            Self::Registry(error) => SinkError::External {
                sink: sink.to_owned(),
                source: error.into(),
            },
            // Rows were checked against this schema when they were made.
            Self::Row { topic, source } => SinkError::Internal {
                sink: sink.to_owned(),
                source: format!("topic `{topic}`: {source}").into(),
            },
            Self::Kafka { topic, source } => SinkError::from_kafka(sink, &topic, source),
        }
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        "kafka"
    }

    fn count(&self, records: &Records) -> usize {
        records.row_count()
    }

    fn write<'a>(&'a self, records: &'a Records) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            for Rows { shape, rows, .. } in &records.rows {
                let id = self.ids.get(self.name(), shape)?;
                self.send_as(rows, &shape.schema, id)
                    .await
                    .map_err(|error| error.classify(self.name()))?;
            }
            Ok(())
        })
    }

    fn check<'a>(
        &'a self,
        schema: &'a RowSchema,
    ) -> BoxFuture<'a, Result<Option<String>, SinkError>> {
        Box::pin(async move {
            let compatible = self
                .registry
                .is_compatible(&self.subject, &schema.text)
                .await
                .map_err(|error| KafkaSinkError::from(error).classify(self.name()))?;
            Ok((!compatible).then(|| {
                format!(
                    "the schema registry's compatibility rules for `{}` reject the new \
                     output schema (add fields with defaults; do not remove or retype fields)",
                    self.subject
                )
            }))
        })
    }

    fn prepare<'a>(&'a self, shape: &'a Shape) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let id = self
                .registry
                .register(&self.subject, &shape.schema.text)
                .await
                .map_err(|error| KafkaSinkError::from(error).classify(self.name()))?;
            self.ids.insert(shape, id);
            Ok(())
        })
    }
}

/// `row` in the Confluent wire format: magic byte, `schema_id`, the Avro datum.
///
/// The datum is written by apache-avro's schema-aware serializer straight
/// from the row: no `Value` tree, and no schema resolution or validation
/// per row (the row was checked against the schema just before).
fn encode(row: &[Value], schema: &RowSchema, schema_id: u32) -> Result<Vec<u8>, SchemaError> {
    schema.check(row)?;
    let mut message = Vec::with_capacity(128);
    message.push(0);
    message.extend_from_slice(&schema_id.to_be_bytes());
    let row = AvroRow {
        names: &schema.field_names,
        row,
    };
    write_avro_datum_ref(&schema.avro, &row, &mut message)?;
    Ok(message)
}

/// A row as serde sees it: a struct of the schema's fields, in order.
struct AvroRow<'a> {
    names: &'a [&'static str],
    row: &'a [Value],
}

impl Serialize for AvroRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut record = serializer.serialize_struct("row", self.row.len())?;
        for (name, value) in self.names.iter().zip(self.row) {
            record.serialize_field(name, &AvroValue(value))?;
        }
        record.end()
    }
}

/// One column's value; the serializer picks its union branch (`null` or
/// the column's type) and narrows it to an Avro `int` or `float`.
struct AvroValue<'a>(&'a Value);

impl Serialize for AvroValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => serializer.serialize_none(),
            Value::Boolean(b) => serializer.serialize_bool(*b),
            Value::Long(n) => serializer.serialize_i64(*n),
            Value::Double(x) => serializer.serialize_f64(*x),
            Value::Text(text) => serializer.serialize_str(text),
            Value::Bytes(bytes) => serializer.serialize_bytes(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value as Avro;
    use apache_avro::{Schema, to_avro_datum};

    use super::*;

    /// apache-avro's general path: a `Value` tree, resolved and validated.
    fn reference(row: &[Value], schema: &RowSchema) -> Vec<u8> {
        let Schema::Record(record) = &schema.avro else {
            unreachable!("a row schema is a record");
        };
        let fields = record
            .fields
            .iter()
            .zip(row)
            .map(|(field, value)| {
                let plain = match value {
                    Value::Null => Avro::Null,
                    Value::Boolean(b) => Avro::Boolean(*b),
                    Value::Long(n) if field.schema == Schema::Int => Avro::Int(*n as i32),
                    Value::Long(n) => Avro::Long(*n),
                    Value::Double(x) if field.schema == Schema::Float => Avro::Float(*x as f32),
                    Value::Double(x) => Avro::Double(*x),
                    Value::Text(text) => Avro::String(text.clone()),
                    Value::Bytes(bytes) => Avro::Bytes(bytes.clone()),
                };
                let value = match &field.schema {
                    Schema::Union(union) => {
                        let branch = union
                            .variants()
                            .iter()
                            .position(|s| (*s == Schema::Null) == (plain == Avro::Null))
                            .expect("a branch");
                        Avro::Union(branch as u32, Box::new(plain))
                    }
                    _ => plain,
                };
                (field.name.clone(), value)
            })
            .collect();
        let mut message = vec![0, 0, 0, 0, 7];
        message.extend(to_avro_datum(&schema.avro, Avro::Record(fields)).expect("encodes"));
        message
    }

    #[test]
    fn rows_encode_as_apache_avros_value_path_does() {
        let schema = RowSchema::parse(
            r#"{"type":"record","name":"R","namespace":"weir.test","fields":[
                {"name":"TEXT","type":["null","string"]},
                {"name":"LONG","type":["null","long"]},
                {"name":"INT","type":"int"},
                {"name":"DOUBLE","type":["double","null"]},
                {"name":"FLOAT","type":"float"},
                {"name":"FLAG","type":"boolean"},
                {"name":"RAW","type":["null","bytes"]}
            ]}"#,
        )
        .expect("a row schema");
        let rows = [
            vec![
                Value::Text("user_00042 ünïcode".into()),
                Value::Long(-1 << 40),
                Value::Long(-7),
                Value::Double(1513.0534),
                Value::Double(0.5),
                Value::Boolean(true),
                Value::Bytes(vec![0, 255, 7]),
            ],
            vec![
                Value::Null,
                Value::Null,
                Value::Long(i64::from(i32::MAX)),
                Value::Null,
                Value::Double(-2.25),
                Value::Boolean(false),
                Value::Null,
            ],
        ];
        for row in &rows {
            assert_eq!(
                encode(row, &schema, 7).expect("encodes"),
                reference(row, &schema)
            );
        }
        let too_big = [
            Value::Null,
            Value::Null,
            Value::Long(1 << 40),
            Value::Null,
            Value::Double(0.0),
            Value::Boolean(false),
            Value::Null,
        ];
        assert!(
            encode(&too_big, &schema, 7).is_err(),
            "an int column takes 32 bits"
        );
    }
}
