//! The few admin operations weir needs: creating the topics it writes,
//! counting a topic's partitions, and reading where a group stands.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::Connection;

/// An admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    /// librdkafka refused to make a client (a bad setting).
    #[error("cannot create a Kafka client: {0}")]
    Client(#[source] KafkaError),
    /// The cluster did not answer.
    #[error("cannot reach Kafka at {bootstrap}: {source}")]
    Unreachable {
        /// Where weir looked for it.
        bootstrap: String,
        /// What librdkafka said.
        source: KafkaError,
    },
    /// The topic a pipeline reads does not exist.
    #[error(
        "the source topic `{topic}` does not exist on {bootstrap}; create it (or start the producer) first"
    )]
    Missing {
        /// The topic.
        topic: String,
        /// The cluster.
        bootstrap: String,
    },
    /// A topic weir writes could not be created.
    #[error("cannot create topic `{topic}`: {code}")]
    Create {
        /// The topic.
        topic: String,
        /// What the broker said.
        code: RDKafkaErrorCode,
    },
}

/// The partition count of `topic`, which must exist (it is never created
/// by asking). Blocking.
pub fn partition_count(kafka: &Connection, topic: &str) -> Result<usize, TopicsError> {
    let probe: BaseConsumer = kafka.reader(None).create().map_err(TopicsError::Client)?;
    let metadata = probe
        .fetch_metadata(Some(topic), Duration::from_secs(15))
        .map_err(|source| TopicsError::Unreachable {
            bootstrap: kafka.bootstrap().to_owned(),
            source,
        })?;
    match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len()),
        _ => Err(TopicsError::Missing {
            topic: topic.to_owned(),
            bootstrap: kafka.bootstrap().to_owned(),
        }),
    }
}

/// Creates the `topics` that are missing, with `partitions` partitions and
/// the topic settings `config`; existing topics are left as they are, and
/// returned.
pub async fn ensure_topics(
    kafka: &Connection,
    topics: &[String],
    partitions: usize,
    config: &[(&str, &str)],
) -> Result<Vec<String>, TopicsError> {
    let admin: AdminClient<DefaultClientContext> =
        kafka.admin().create().map_err(TopicsError::Client)?;
    let partitions = i32::try_from(partitions).unwrap_or(i32::MAX);
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| {
            config.iter().fold(
                NewTopic::new(topic, partitions, TopicReplication::Fixed(-1)),
                |new, (key, value)| new.set(key, value),
            )
        })
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(|source| TopicsError::Unreachable {
            bootstrap: kafka.bootstrap().to_owned(),
            source,
        })?;
    let mut existing = Vec::new();
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic = %topic, partitions, "Created topic."),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => existing.push(topic),
            Err((topic, code)) => return Err(TopicsError::Create { topic, code }),
        }
    }
    Ok(existing)
}

/// Gives `topic` (which exists) at least `partitions` partitions: a
/// changelog must have one for each partition of the source, which may have
/// been given more since the changelog was made. Blocking.
pub fn ensure_partitions(
    kafka: &Connection,
    topic: &str,
    partitions: usize,
) -> Result<(), TopicsError> {
    let count = partition_count(kafka, topic)?;
    if count >= partitions {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> =
        kafka.admin().create().map_err(TopicsError::Client)?;
    let more = NewPartitions::new(topic, partitions);
    // The admin client's own thread answers: any executor can wait for it.
    let results = futures::executor::block_on(admin.create_partitions(
        [&more],
        &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
    ))
    .map_err(|source| TopicsError::Unreachable {
        bootstrap: kafka.bootstrap().to_owned(),
        source,
    })?;
    for result in results {
        match result {
            Ok(topic) => tracing::warn!(
                topic = %topic,
                from = count,
                to = partitions,
                "Added partitions to the changelog: the source topic has more than it had."
            ),
            Err((topic, code)) => return Err(TopicsError::Create { topic, code }),
        }
    }
    Ok(())
}

/// Where a consumer group stands on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    /// The group's committed offset (`None`: nothing committed yet).
    pub committed: Option<i64>,
    /// The partition's first offset still held.
    pub low: i64,
    /// The partition's end offset (the next one to be written).
    pub high: i64,
}

impl PartitionProgress {
    /// Records the group has not committed yet (a new group starts at `low`).
    pub fn lag(&self) -> i64 {
        (self.high - self.committed.unwrap_or(self.low)).max(0)
    }
}

/// Where a consumer group stands on each partition of `topic`.
/// `consumer` must be configured with the group's `group.id`
/// ([`Connection::reader`]); it need not subscribe.
pub fn group_progress<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<Vec<PartitionProgress>> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    // A topic the broker does not (yet) know comes back with an error or
    // without partitions: an error, never an empty and so "caught up" list.
    let partitions = match metadata.topics().first() {
        Some(found) if found.error().is_none() && !found.partitions().is_empty() => {
            i32::try_from(found.partitions().len()).unwrap_or(i32::MAX)
        }
        found => {
            return Err(KafkaError::MetadataFetch(
                found
                    .and_then(|t| t.error())
                    .map_or(RDKafkaErrorCode::UnknownTopicOrPartition, Into::into),
            ));
        }
    };
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(list, timeout)?;
    (0..partitions)
        .map(|partition| {
            let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
            let committed = match committed
                .find_partition(topic, partition)
                .map(|e| e.offset())
            {
                Some(rdkafka::Offset::Offset(offset)) => Some(offset),
                _ => None,
            };
            Ok(PartitionProgress {
                committed,
                low,
                high,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::PartitionProgress;

    #[test]
    fn lag_counts_from_the_commit_or_the_start() {
        let fresh = PartitionProgress {
            committed: None,
            low: 10,
            high: 25,
        };
        assert_eq!(fresh.lag(), 15);
        let behind = PartitionProgress {
            committed: Some(20),
            ..fresh
        };
        assert_eq!(behind.lag(), 5);
        // A commit past the end (the partition was truncated) is no lag.
        let ahead = PartitionProgress {
            committed: Some(30),
            ..fresh
        };
        assert_eq!(ahead.lag(), 0);
    }
}
