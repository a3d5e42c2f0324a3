//! Dead letters: records that could not be processed, written to the
//! pipeline's dead-letter topic as they arrived (same key, same value) with
//! headers saying why, where and by which plugin — enough to find, fix and
//! replay them.

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use futures::future::BoxFuture;

use super::error::SinkError;
use super::limits;
use super::output::{Records, Sink};
use crate::kafka::{Connection, Producing, send_all};
use crate::plugin::{Failure, RecordRef};

/// Why a record became a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The host refused it before or between stages (not JSON, too big, no key).
    Malformed,
    /// A plugin judged it bad and said why.
    Rejected,
    /// A plugin trapped on it (panic, deadline, memory, fuel).
    Trapped,
}

impl Kind {
    /// The name in the `weir.error.kind` header and the metric label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Rejected => "rejected",
            Self::Trapped => "trapped",
        }
    }
}

/// The plugin a dead letter failed in.
#[derive(Debug, Clone)]
pub struct PluginRef {
    /// The stage's plugin name.
    pub name: String,
    /// `sha256:<hex>` of its component.
    pub version: String,
}

impl PluginRef {
    /// How dead letters name `plugin`.
    pub fn of(plugin: &crate::plugin::Plugin) -> Self {
        Self {
            name: plugin.name.clone(),
            version: format!("sha256:{}", plugin.sha256),
        }
    }
}

/// One record that could not be processed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The record's key, as it arrived.
    pub key: Option<Vec<u8>>,
    /// The record's value, as it arrived.
    pub value: Vec<u8>,
    /// Where it came from.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// Its timestamp (ms since the epoch).
    pub timestamp: i64,
    /// The stage that failed it (`source` for the host's own checks).
    pub stage: String,
    /// The plugin that failed it, if one did.
    pub plugin: Option<PluginRef>,
    /// Why, in one word.
    pub kind: Kind,
    /// A short machine-readable code (`not-json`, `oversized`, a plugin's code, ...).
    pub code: String,
    /// Why, in words.
    pub reason: String,
}

impl DeadLetter {
    /// `record`, refused by the host itself.
    pub fn malformed(record: RecordRef<'_>, stage: &str, code: &str, reason: String) -> Self {
        Self::new(
            record,
            stage,
            None,
            Kind::Malformed,
            code.to_owned(),
            reason,
        )
    }

    /// `record`, failed by `plugin` in `stage`.
    pub fn failed(
        record: RecordRef<'_>,
        stage: &str,
        plugin: &PluginRef,
        failure: Failure,
    ) -> Self {
        let (kind, code, reason) = match failure {
            Failure::Rejected(error) => (Kind::Rejected, error.code, error.message),
            Failure::Trapped(message) => (Kind::Trapped, "trap".to_owned(), message),
            Failure::Skipped { code, reason } => (Kind::Trapped, code.to_owned(), reason),
        };
        Self::new(record, stage, Some(plugin.clone()), kind, code, reason)
    }

    /// A dead letter that always fits its topic: the code and reason (a
    /// plugin's words) are cut to [`limits::MAX_CODE_BYTES`] and
    /// [`limits::MAX_REASON_BYTES`], and a value or key that would make the
    /// message too large is left out (the reason says so, and the headers
    /// say where the record is in the source topic).
    fn new(
        record: RecordRef<'_>,
        stage: &str,
        plugin: Option<PluginRef>,
        kind: Kind,
        mut code: String,
        mut reason: String,
    ) -> Self {
        limits::truncate(&mut code, limits::MAX_CODE_BYTES);
        limits::truncate(&mut reason, limits::MAX_REASON_BYTES);
        // Room for the headers: the reason, the code and the rest (names
        // of at most 249 characters, numbers).
        let headers = reason.len() + code.len() + 4096;
        let budget = limits::MAX_DEAD_LETTER_BYTES - headers;
        let key_bytes = record.key.map_or(0, <[u8]>::len);
        let mut key = record.key;
        let mut value = record.value;
        if key_bytes + value.len() > budget {
            reason = format!(
                "{reason} (the value, {} bytes, is left out so that the dead letter fits \
                 its topic: read it from the source topic at the partition and offset in \
                 the headers)",
                value.len()
            );
            value = &[];
            if key_bytes > budget {
                key = None;
            }
        }
        Self {
            key: key.map(<[u8]>::to_vec),
            value: value.to_vec(),
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            stage: stage.to_owned(),
            plugin,
            kind,
            code,
            reason,
        }
    }

    /// The headers the dead-letter message carries.
    pub fn headers(&self, pipeline: &str, source_topic: &str) -> OwnedHeaders {
        let partition = self.partition.to_string();
        let offset = self.offset.to_string();
        let timestamp = self.timestamp.to_string();
        let mut pairs = vec![
            ("weir.pipeline", pipeline),
            ("weir.error.stage", self.stage.as_str()),
            ("weir.error.kind", self.kind.name()),
            ("weir.error.code", self.code.as_str()),
            ("weir.error.reason", self.reason.as_str()),
        ];
        if let Some(plugin) = &self.plugin {
            pairs.push(("weir.error.plugin", plugin.name.as_str()));
            pairs.push(("weir.error.plugin-version", plugin.version.as_str()));
        }
        pairs.extend([
            ("weir.source.topic", source_topic),
            ("weir.source.partition", partition.as_str()),
            ("weir.source.offset", offset.as_str()),
            ("weir.source.timestamp", timestamp.as_str()),
        ]);
        pairs.into_iter().fold(
            OwnedHeaders::new_with_capacity(11),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value),
                })
            },
        )
    }
}

/// Writes dead letters to the pipeline's dead-letter topic.
pub struct DeadLetterWriter {
    pipeline: String,
    source_topic: String,
    topic: String,
    producer: FutureProducer,
}

impl DeadLetterWriter {
    /// A writer to `topic` (idempotent, `acks=all`).
    pub fn new(
        kafka: &Connection,
        pipeline: &str,
        source_topic: &str,
        topic: &str,
    ) -> Result<Self, KafkaError> {
        let producer = kafka.producer(Producing::DeadLetters).create()?;
        Ok(Self {
            pipeline: pipeline.to_owned(),
            source_topic: source_topic.to_owned(),
            topic: topic.to_owned(),
            producer,
        })
    }

    /// Writes `letters` and returns once Kafka has acknowledged every one.
    pub async fn send(&self, letters: &[DeadLetter]) -> Result<(), KafkaError> {
        let records = letters.iter().map(|letter| {
            let mut record = FutureRecord::to(&self.topic)
                .payload(&letter.value)
                .timestamp(letter.timestamp)
                .headers(letter.headers(&self.pipeline, &self.source_topic));
            if let Some(key) = &letter.key {
                record = record.key(key);
            }
            record
        });
        send_all(&self.producer, records.collect()).await
    }
}

impl Sink for DeadLetterWriter {
    fn name(&self) -> &str {
        "dead-letters"
    }

    fn count(&self, records: &Records) -> usize {
        records.dead.len()
    }

    fn write<'a>(&'a self, records: &'a Records) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.send(&records.dead)
                .await
                .map_err(|error| SinkError::from_kafka(self.name(), &self.topic, error))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(key: &'a [u8], value: &'a [u8]) -> RecordRef<'a> {
        RecordRef {
            key: Some(key),
            value,
            timestamp: 1,
            partition: 2,
            offset: 3,
        }
    }

    /// The bytes the message takes: key, value and every header.
    fn message_bytes(letter: &DeadLetter) -> usize {
        use rdkafka::message::Headers;
        let headers = letter.headers(&"p".repeat(249), &"t".repeat(249));
        let headers: usize = headers
            .iter()
            .map(|header| header.key.len() + header.value.map_or(0, <[u8]>::len))
            .sum();
        letter.key.as_ref().map_or(0, Vec::len) + letter.value.len() + headers
    }

    #[test]
    fn a_plugins_long_code_and_reason_are_cut_to_fit() {
        let plugin = PluginRef {
            name: "p".into(),
            version: "sha256:00".into(),
        };
        let failure = Failure::Rejected(crate::plugin::PluginError {
            code: "c".repeat(10_000),
            message: "é".repeat(1_000_000),
        });
        let letter = DeadLetter::failed(record(b"k", b"{}"), "stage", &plugin, failure);
        assert!(
            letter.code.len() <= limits::MAX_CODE_BYTES,
            "{}",
            letter.code.len()
        );
        assert!(letter.reason.len() <= limits::MAX_REASON_BYTES);
        assert!(letter.reason.ends_with('…'));
        assert_eq!(letter.value, b"{}", "a small record is kept whole");
    }

    #[test]
    fn a_record_too_large_for_its_dead_letter_is_left_out_and_the_reason_says_where_it_is() {
        let value = vec![b'v'; 999_000];
        let letter = DeadLetter::malformed(record(b"key", &value), "s", "x", "why".into());
        assert!(letter.value.is_empty());
        assert_eq!(
            letter.key.as_deref(),
            Some(&b"key"[..]),
            "a short key stays"
        );
        assert!(
            letter
                .reason
                .starts_with("why (the value, 999000 bytes, is left out")
        );
        assert!(message_bytes(&letter) <= limits::MAX_DEAD_LETTER_BYTES);

        let key = vec![b'k'; 999_000];
        let letter = DeadLetter::malformed(record(&key, b"{}"), "s", "x", "why".into());
        assert_eq!(
            letter.key, None,
            "a key too large for the topic is left out too"
        );
        assert!(message_bytes(&letter) <= limits::MAX_DEAD_LETTER_BYTES);

        let fits = vec![b'v'; 990_000];
        let letter = DeadLetter::malformed(record(b"key", &fits), "s", "x", "why".into());
        assert_eq!(letter.value.len(), 990_000, "what fits is kept");
        assert!(message_bytes(&letter) <= limits::MAX_DEAD_LETTER_BYTES);
    }
}
