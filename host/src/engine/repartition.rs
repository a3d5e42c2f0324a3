//! A re-keyed pipeline's repartition topic (see [`crate::pipeline::hops`]):
//! made by whichever hop starts first, kept as long as the second hop needs
//! its records and no longer.
//!
//! The topic keeps its records without a time limit (`retention.ms` -1): a
//! second hop stopped for longer than a broker's default retention must not
//! find its input gone. Instead the second hop deletes what its group has
//! committed ([`purge`]), as Kafka Streams does with its repartition
//! topics, so the topic holds about what the second hop has yet to read.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::{Offset, TopicPartitionList};

use super::deliver::Committed;
use crate::kafka::{Connection, TopicsError, ensure_topics};

/// How often the second hop deletes what it has committed.
pub const PURGE_EVERY: Duration = Duration::from_secs(10);

/// The topic settings of a repartition topic.
pub fn topic_config() -> [(&'static str, &'static str); 2] {
    [("cleanup.policy", "delete"), ("retention.ms", "-1")]
}

/// Makes the repartition `topic` with `partitions` partitions (the
/// source's) unless it exists.
pub async fn ensure(kafka: &Connection, topic: &str, partitions: usize) -> Result<(), TopicsError> {
    ensure_topics(kafka, &[topic.to_owned()], partitions, &topic_config()).await?;
    Ok(())
}

/// Every [`PURGE_EVERY`], deletes the records of `topic` below the offsets
/// this instance has committed for it (`committed`): the group has read
/// them into state and the sinks, and never reads them again. Runs until
/// aborted; a failed deletion is logged and tried again next time.
pub async fn purge(kafka: Connection, topic: String, committed: Arc<Committed>) {
    let admin: AdminClient<DefaultClientContext> = match kafka.admin().create() {
        Ok(admin) => admin,
        Err(error) => {
            tracing::warn!(%topic, %error, "Cannot make the admin client that deletes the repartition topic's consumed records; they stay until restart.");
            return;
        }
    };
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let mut purged: Vec<(i32, i64)> = Vec::new();
    let mut every = tokio::time::interval(PURGE_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        let mut offsets = committed.snapshot();
        offsets.sort_unstable();
        if offsets.is_empty() || offsets == purged {
            continue;
        }
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in &offsets {
            // Refused only for an offset no commit holds (a negative one).
            let _ = list.add_partition_offset(&topic, partition, Offset::Offset(offset));
        }
        match admin.delete_records(&list, &options).await {
            Ok(result) => {
                let failed: Vec<String> = result
                    .elements()
                    .iter()
                    .filter_map(|e| {
                        e.error()
                            .err()
                            .map(|error| format!("{}: {error}", e.partition()))
                    })
                    .collect();
                if failed.is_empty() {
                    tracing::debug!(%topic, ?offsets, "Deleted the repartition topic's consumed records.");
                    purged = offsets;
                } else {
                    tracing::warn!(%topic, failed = %failed.join(", "), "Deleting the repartition topic's consumed records failed for some partitions; tried again soon.");
                }
            }
            Err(error) => {
                tracing::warn!(%topic, %error, "Deleting the repartition topic's consumed records failed; tried again soon.");
            }
        }
    }
}
