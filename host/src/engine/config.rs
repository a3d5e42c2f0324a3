//! How a `weir run` process runs: where the services are, its admin API,
//! its parallelism. What a pipeline means is in its plan; these are the
//! settings of the process around it (flags and environment, never the
//! pipeline file).

use std::net::SocketAddr;
use std::time::Duration;

use crate::kafka::Connection;

/// The process settings every pipeline of one `weir run` shares.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// How to reach Kafka.
    pub kafka: Connection,
    /// The schema registry's Confluent-compatible API.
    pub registry_url: String,
    /// PostgreSQL: the sink's database, and where lookup queries run.
    pub database_url: String,
    /// Shards (threads running plugins) per pipeline; `None`: one per core.
    pub shards: Option<usize>,
    /// Time between status lines (zero: none).
    pub status_every: Duration,
    /// The admin API.
    pub admin: AdminConfig,
    /// Swap a stage's plugin when its file changes on disk.
    pub watch: bool,
}

/// Where the admin API listens and what it asks of changes.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// The address (port 0: any free port; the log says which).
    pub addr: SocketAddr,
    /// The bearer token changes need (`None`: changes are refused).
    pub token: Option<String>,
}

impl RunConfig {
    /// The local stack's addresses (`cargo xtask stack up`), the admin API
    /// on any free port, and everything else at its default.
    pub fn local() -> Self {
        Self {
            kafka: Connection::new("127.0.0.1:9092"),
            registry_url: "http://127.0.0.1:8081/apis/ccompat/v7".to_owned(),
            database_url: "postgres://weir:weir@127.0.0.1:5432/weir".to_owned(),
            shards: None,
            status_every: Duration::from_secs(10),
            admin: AdminConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                token: None,
            },
            watch: false,
        }
    }

    /// How many shards a pipeline of `partitions` partitions gets: as
    /// configured or one per core, at least one and at most one per partition.
    pub fn shards_for(&self, partitions: usize) -> usize {
        self.shards
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
            .clamp(1, partitions.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::RunConfig;

    #[test]
    fn a_pipeline_has_a_shard_per_partition_at_most() {
        let config = RunConfig {
            shards: Some(8),
            ..RunConfig::local()
        };
        assert_eq!(config.shards_for(4), 4);
        assert_eq!(config.shards_for(16), 8);
        assert_eq!(
            config.shards_for(0),
            1,
            "a topic without partitions still runs one"
        );
        let config = RunConfig {
            shards: Some(0),
            ..RunConfig::local()
        };
        assert_eq!(config.shards_for(4), 1);
    }
}
