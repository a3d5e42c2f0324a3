//! Kafka clients: every setting weir gives librdkafka, and the few admin
//! operations weir needs, in one place.
//!
//! - [`config`]: [`Connection`], how weir reaches a cluster, and the
//!   settings of each kind of client it makes (producers, consumers, admin).
//! - [`headers`]: a record's headers as bytes, whatever their names hold.
//! - [`produce`]: sending a whole flush and awaiting every acknowledgement.
//! - [`topics`]: creating topics, counting partitions, a group's progress.
//!
//! Everything that connects to Kafka (the source, the sinks, dead letters,
//! the changelog, the generator) starts from a [`Connection`], so what a
//! secured cluster needs is added to [`config`] alone.

pub mod config;
pub mod headers;
pub mod produce;
pub mod topics;

pub use config::{Connection, Producing, weirs_own};
pub use produce::send_all;
pub use topics::{
    PartitionProgress, TopicsError, ensure_partitions, ensure_topics, group_progress,
    partition_count,
};
