//! How a `weir run` process runs: where the services are, its admin API,
//! its parallelism. What a pipeline means is in its plan; these are the
//! settings of the process around it (flags and environment, never the
//! pipeline file).

use std::net::SocketAddr;
use std::time::Duration;

use crate::connect::{Database, RegistryAccess, Secret, Services};
use crate::kafka::Connection;

/// The process settings every pipeline of one `weir run` shares.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// How to reach Kafka.
    pub kafka: Connection,
    /// The schema registry (its Confluent-compatible API).
    pub registry: RegistryAccess,
    /// PostgreSQL: the sink's database, and where lookup queries run.
    pub database: Database,
    /// Shards (threads running plugins) per pipeline; `None`: one per core.
    pub shards: Option<usize>,
    /// Time between status lines (zero: none).
    pub status_every: Duration,
    /// The admin API.
    pub admin: AdminConfig,
    /// Swap a stage's plugin when its file changes on disk.
    pub watch: bool,
}

/// Where the admin API listens and who may use it.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// The address (port 0: any free port; the log says which).
    pub addr: SocketAddr,
    /// The bearer token changes need (`None`: changes are refused).
    pub token: Option<Secret>,
    /// The token reads need (`None`: reads are open to whoever reaches it).
    pub read_token: Option<Secret>,
    /// Host names the API answers to beside the loopback ones (`*`: any).
    pub allowed_hosts: Vec<String>,
    /// Reads without a token on an address beyond this machine, said on purpose.
    pub open_reads: bool,
    /// Serve over TLS with this certificate and key (`None`: plain HTTP).
    pub tls: Option<crate::admin::AdminTls>,
}

impl AdminConfig {
    /// Refuses an address beyond this machine whose reads would be open to
    /// anyone reaching it, unless that is said on purpose (`open_reads`).
    pub fn check_exposure(&self) -> Result<(), super::error::RunError> {
        if !self.addr.ip().is_loopback() && self.read_token.is_none() && !self.open_reads {
            return Err(super::error::RunError::AdminExposed { addr: self.addr });
        }
        Ok(())
    }

    /// The access rules these settings make.
    pub fn access(&self) -> crate::admin::Access {
        crate::admin::Access::new(
            self.addr,
            self.token.clone(),
            self.read_token.clone(),
            &self.allowed_hosts,
        )
    }
}

impl RunConfig {
    /// The local stack's addresses (`cargo xtask stack up`), the admin API
    /// on any free port, and everything else at its default.
    pub fn local() -> Self {
        Self {
            kafka: Connection::new(crate::connect::kafka::LOCAL_BOOTSTRAP),
            registry: RegistryAccess::local(),
            database: Database::local(),
            shards: None,
            status_every: Duration::from_secs(10),
            admin: AdminConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                token: None,
                read_token: None,
                allowed_hosts: Vec::new(),
                open_reads: false,
                tls: None,
            },
            watch: false,
        }
    }

    /// The services as `services` describes them, everything else as
    /// [`RunConfig::local`] has it.
    pub fn with_services(services: Services) -> Self {
        Self {
            kafka: services.kafka,
            registry: services.registry,
            database: services.database,
            ..Self::local()
        }
    }

    /// The services, as [`crate::connect::check`] takes them.
    pub fn services(&self) -> Services {
        Services {
            kafka: self.kafka.clone(),
            registry: self.registry.clone(),
            database: self.database.clone(),
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
