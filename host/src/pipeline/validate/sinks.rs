//! The sinks' part of a pipeline file's check: at least one sink, the
//! Kafka topic, the PostgreSQL table and key column, the file sink's path,
//! and the dead-letter topic.

use super::Checker;
use crate::pipeline::config::{FileSinkConfig, PipelineConfig, SinksConfig};
use crate::pipeline::names::{ColumnName, TableName, TopicName};
use crate::pipeline::plan::{FileSinkPlan, KafkaSinkPlan, PostgresSinkPlan, SinksPlan};

impl Checker<'_> {
    pub(super) fn sinks(&mut self, sinks: &SinksConfig, source_topic: &str) -> Option<SinksPlan> {
        if sinks.kafka.is_none() && sinks.postgres.is_none() && sinks.file.is_none() {
            self.error_in_file(
                "the pipeline has no sink",
                "add `[sinks.kafka]` (Avro to a topic), `[sinks.postgres]` (upserts to a table) or `[sinks.file]` (JSON Lines)",
            );
            return None;
        }
        let kafka = match &sinks.kafka {
            None => Some(None),
            Some(kafka) => {
                let topic = self.topic(&kafka.topic, "sink topic");
                if kafka.topic.get_ref() == source_topic {
                    self.error(
                        &kafka.topic,
                        "the sink topic is the source topic: the pipeline would read its own output"
                            .into(),
                        "write results to another topic",
                    );
                }
                topic
                    .filter(|topic| topic.as_str() != source_topic)
                    .map(|topic| {
                        Some(KafkaSinkPlan {
                            subject: kafka
                                .subject
                                .clone()
                                .unwrap_or_else(|| format!("{topic}-value")),
                            topic,
                        })
                    })
            }
        };
        let postgres = match &sinks.postgres {
            None => Some(None),
            Some(postgres) => {
                let table = self.named(&postgres.table, TableName::parse(postgres.table.get_ref()));
                let key_column = self.named(
                    &postgres.key_column,
                    ColumnName::parse(postgres.key_column.get_ref()),
                );
                table
                    .zip(key_column)
                    .map(|(table, key_column)| Some(PostgresSinkPlan { table, key_column }))
            }
        };
        let file = match &sinks.file {
            None => Some(None),
            Some(file) => self.file_sink(file),
        };
        Some(SinksPlan {
            kafka: kafka?,
            postgres: postgres?,
            file: file?,
        })
    }

    fn file_sink(&mut self, file: &FileSinkConfig) -> Option<Option<FileSinkPlan>> {
        let given = file.path.get_ref();
        let path = self.base_dir.join(given);
        if given.as_os_str().is_empty() || path.is_dir() {
            self.error(
                &file.path,
                format!("`{}` is not a file the file sink can write", given.display()),
                "name a file, such as `out/rows.jsonl`; it is relative to the pipeline file's folder",
            );
            return None;
        }
        Some(Some(FileSinkPlan { path }))
    }

    pub(super) fn dead_letter_topic(&mut self, config: &PipelineConfig) -> Option<TopicName> {
        let Some(topic) = &config.dead_letter.topic else {
            // A valid pipeline name makes a valid topic (the name's own
            // error is reported once, by the name's check).
            let default = format!("{}.dlq", config.name.get_ref());
            return TopicName::parse(&default, "dead-letter topic").ok();
        };
        let parsed = self.topic(topic, "dead-letter topic");
        if topic.get_ref() == config.source.topic.get_ref() {
            self.error(
                topic,
                "the dead-letter topic is the source topic".into(),
                "dead letters need a topic of their own, such as `<pipeline>.dlq`",
            );
            return None;
        }
        parsed
    }
}
