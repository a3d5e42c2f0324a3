//! A pipeline whose aggregator is keyed by a field (`key_field`) runs in two
//! hops through a repartition topic, as Kafka Streams and ksqlDB do for a
//! `groupBy` on anything but the key: the input is partitioned by its Kafka
//! key, and a key's state must live in one place.
//!
//! ```text
//! source topic -> filters, transforms -> <group>.<stage>.repartition -> aggregator -> sinks
//!                 first hop: `<name>`      keyed by the field           second hop: `<name>.<stage>`
//! ```
//!
//! Each hop is a pipeline of its own to the engine: its consumer group, its
//! shards, its metrics. The first writes at least once; the second counts
//! each source record once ([`crate::engine::origin`]).

use std::fmt;

use super::config::Format;
use super::names::{Name, TopicName};
use super::plan::{KafkaSinkPlan, PipelinePlan, SinksPlan, SourcePlan};

/// Where a plan sits in its pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Hop {
    /// The whole pipeline: it reads its source and writes its sinks.
    #[default]
    Whole,
    /// The first hop: it reads the source and writes the repartition topic
    /// (its Kafka sink), keyed by the aggregator's field.
    First {
        /// The field.
        field: String,
        /// The aggregator's stage.
        stage: Name,
    },
    /// The second hop: it reads the repartition topic into the aggregator.
    Second {
        /// The pipeline's source topic (the repartition topic has as many
        /// partitions).
        source_topic: TopicName,
        /// The pipeline's consumer group: the aggregator's changelog is
        /// named after it, as in a pipeline read in one hop.
        group: String,
    },
}

/// What weir makes to re-key a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repartition {
    /// The aggregator's stage.
    pub stage: Name,
    /// The field it is keyed by.
    pub field: String,
    /// The topic between the hops, with the source's partition count.
    pub topic: TopicName,
    /// The second hop's consumer group.
    pub group: String,
    /// The second hop's name (in logs, metrics and the admin API).
    pub name: Name,
}

impl fmt::Display for Repartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stage `{}` is keyed by field `{}`: records are re-keyed through topic `{}` \
             (made with the source's partition count), read by group `{}` as `{}`",
            self.stage, self.field, self.topic, self.group, self.name
        )
    }
}

impl PipelinePlan {
    /// The repartition this pipeline needs: when its last stage (an
    /// aggregator) is keyed by a field.
    pub fn repartition(&self) -> Option<Repartition> {
        let stage = self.stages.last()?;
        let field = stage.key_field.clone()?;
        let group = format!("{}.{}", self.source.group, stage.name);
        Some(Repartition {
            topic: TopicName::internal(format!("{group}.repartition")),
            group,
            field,
            stage: stage.name.clone(),
            name: self.name.part(&stage.name),
        })
    }

    /// The plans weir runs for this pipeline: itself, or its two hops.
    pub fn into_hops(self) -> Vec<PipelinePlan> {
        let Some(repartition) = self.repartition() else {
            return vec![self];
        };
        let mut first = self.clone();
        let aggregator = first
            .stages
            .pop()
            .expect("a re-keyed plan has its aggregator");
        first.hop = Hop::First {
            field: repartition.field,
            stage: repartition.stage,
        };
        first.sinks = SinksPlan {
            kafka: Some(KafkaSinkPlan {
                topic: repartition.topic.clone(),
                subject: String::new(),
            }),
            postgres: None,
            file: None,
        };
        first
            .lookups
            .retain(|table| (first.stages.iter()).any(|stage| stage.lookups.contains(&table.name)));
        let mut second = self;
        second.hop = Hop::Second {
            source_topic: second.source.topic.clone(),
            group: second.source.group.clone(),
        };
        second.name = repartition.name;
        second.source = SourcePlan {
            topic: repartition.topic,
            group: repartition.group,
            // The first hop writes what its stages read: an Avro source's
            // values as JSON.
            format: match second.source.format {
                Format::Avro => Format::Json,
                format => format,
            },
            ..second.source
        };
        second
            .lookups
            .retain(|table| aggregator.lookups.contains(&table.name));
        second.stages = vec![aggregator];
        vec![first, second]
    }

    /// The consumer group the aggregator's changelog is named after.
    pub fn state_group(&self) -> &str {
        match &self.hop {
            Hop::Second { group, .. } => group,
            Hop::Whole | Hop::First { .. } => &self.source.group,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(key_field: &str) -> PipelinePlan {
        let dir = tempfile::tempdir().expect("a scratch folder");
        for plugin in ["filter.wasm", "enrich.wasm", "agg.wasm"] {
            std::fs::write(dir.path().join(plugin), b"").expect("written");
        }
        let text = format!(
            r#"
name = "categories"
[source]
topic = "ecommerce.events"
[[lookups]]
name = "products"
query = "SELECT * FROM products"
key = "product_id"
[[lookups]]
name = "rates"
query = "SELECT * FROM rates"
key = "currency"
[[stages]]
name = "filter"
plugin = "filter.wasm"
[[stages]]
name = "enrich"
plugin = "enrich.wasm"
lookups = ["products"]
[[stages]]
name = "revenue"
plugin = "agg.wasm"
lookups = ["rates"]
idle_timeout = "10m"
{key_field}
[sinks.postgres]
table = "category_revenue"
key_column = "CATEGORY"
"#
        );
        crate::pipeline::check("p.toml", &text, dir.path()).expect("a sound file")
    }

    #[test]
    fn a_pipeline_keyed_by_its_input_runs_whole() {
        let plan = plan("");
        assert_eq!(plan.repartition(), None);
        let hops = plan.into_hops();
        assert_eq!(hops.len(), 1);
        assert_eq!(hops[0].hop, Hop::Whole);
        assert_eq!(hops[0].state_group(), "weir-categories");
    }

    #[test]
    fn a_pipeline_keyed_by_a_field_runs_in_two_hops_through_its_repartition_topic() {
        let plan = plan(r#"key_field = "product_category""#);
        let repartition = plan.repartition().expect("re-keyed");
        assert_eq!(
            repartition.to_string(),
            "stage `revenue` is keyed by field `product_category`: records are re-keyed through \
             topic `weir-categories.revenue.repartition` (made with the source's partition \
             count), read by group `weir-categories.revenue` as `categories.revenue`"
        );
        let [first, second]: [PipelinePlan; 2] = plan.into_hops().try_into().expect("two hops");

        assert_eq!(first.name.as_str(), "categories");
        assert_eq!(first.source.topic.as_str(), "ecommerce.events");
        assert_eq!(first.source.group, "weir-categories");
        assert_eq!(
            first.stage_names().collect::<Vec<_>>(),
            ["filter", "enrich"]
        );
        assert_eq!(
            first.hop,
            Hop::First {
                field: "product_category".to_owned(),
                stage: repartition.stage.clone()
            }
        );
        let sink = first.sinks.kafka.as_ref().expect("the repartition topic");
        assert_eq!(sink.topic, repartition.topic);
        assert!(first.sinks.postgres.is_none() && first.sinks.file.is_none());
        let lookups = |plan: &PipelinePlan| -> Vec<String> {
            plan.lookups.iter().map(|l| l.name.to_string()).collect()
        };
        assert_eq!(lookups(&first), ["products"]);

        assert_eq!(second.name.as_str(), "categories.revenue");
        assert_eq!(second.source.topic, repartition.topic);
        assert_eq!(second.source.group, "weir-categories.revenue");
        assert_eq!(second.stage_names().collect::<Vec<_>>(), ["revenue"]);
        // The changelog keeps the name a pipeline read in one hop gives it.
        assert_eq!(second.state_group(), "weir-categories");
        assert!(second.sinks.postgres.is_some());
        assert_eq!(lookups(&second), ["rates"]);
        assert_eq!(second.dead_letter_topic, first.dead_letter_topic);
    }
}
