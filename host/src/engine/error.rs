//! What can stop `weir run`, by where it happens: the process
//! ([`RunError`]) or one pipeline's start and run ([`TopologyError`]).

use rdkafka::error::KafkaError;

use super::deliver::DeliveryError;
use super::lookups::LookupError;
use super::shard::ShardError;
use crate::kafka::TopicsError;
use crate::pipeline::{ShapeError, StageLoadError};
use crate::plugin::{Failure, UnknownProfiler};
use crate::sink::{KafkaSinkError, PostgresError, RegistryError, SchemaError};

/// `weir run` could not start, or a pipeline stopped it.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The environment asks for a Wasm profiler weir does not know.
    #[error(transparent)]
    Profiler(#[from] UnknownProfiler),
    /// The Wasm engine would not start.
    #[error("cannot start the Wasm engine: {0}")]
    Wasm(String),
    /// A service refused weir's credentials or certificate.
    #[error(transparent)]
    Access(#[from] crate::connect::AccessError),
    /// The async runtime would not start.
    #[error("cannot start the async runtime: {0}")]
    AsyncRuntime(#[source] std::io::Error),
    /// The admin API's address is taken or not ours.
    #[error(
        "the admin API cannot listen on {addr} (another weir?); give another --admin-addr, \
         for example 127.0.0.1:0 for any free port: {source}"
    )]
    AdminListen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The admin API would serve anyone on the network.
    #[error(
        "the admin API would let anyone who reaches {addr} read it: give it a read token \
         (WEIR_ADMIN_READ_TOKEN), listen on 127.0.0.1, or say reads are meant to be open \
         (--admin-open-reads, for a private network)"
    )]
    AdminExposed {
        /// The address.
        addr: std::net::SocketAddr,
    },
    /// The admin API's certificate or key cannot be used.
    #[error(transparent)]
    AdminTls(#[from] crate::admin::TlsError),
    /// One pipeline failed (the others were stopped with it).
    #[error("pipeline `{pipeline}`: {source}")]
    Pipeline {
        /// The pipeline.
        pipeline: String,
        /// What went wrong.
        source: Box<TopologyError>,
    },
}

/// A pipeline could not be built, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A stage's plugin does not load.
    #[error(transparent)]
    Load(#[from] StageLoadError),
    /// The stages' order does not fit their plugins.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A lookup table could not be loaded.
    #[error(transparent)]
    Lookups(#[from] LookupError),
    /// The aggregator did not answer a question about itself.
    #[error("plugin `{plugin}`: {call} {failure}")]
    Probe {
        /// The plugin.
        plugin: String,
        /// What it was asked.
        call: &'static str,
        /// How it failed.
        failure: Failure,
    },
    /// The aggregator's output schema is not one weir can write.
    #[error("plugin `{plugin}` declares an output schema weir cannot use: {source}")]
    Schema {
        /// The plugin.
        plugin: String,
        /// Why.
        source: SchemaError,
    },
    /// Kafka's topics: the source is missing, or an output topic cannot be made.
    #[error(transparent)]
    Topics(#[from] TopicsError),
    /// The Kafka sink could not start.
    #[error(transparent)]
    KafkaSink(#[from] KafkaSinkError),
    /// The PostgreSQL sink could not start.
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    /// An Avro source has no usable schema registry client.
    #[error("the source reads Avro, whose schemas come from the registry: {0}")]
    Registry(#[source] crate::sink::registry::RegistryError),
    /// A Kafka client could not be made.
    #[error("{what}: {source}")]
    Client {
        /// Which client.
        what: String,
        /// Why.
        source: KafkaError,
    },
    /// A stage's native code (benchmarks) would not start.
    #[error("stage `{stage}`: its native code would not start: {message}")]
    Native {
        /// The stage.
        stage: String,
        /// Why.
        message: String,
    },
    /// The file sink's file cannot be opened.
    #[error("the file sink cannot open {}: {source}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A sink could not get ready for the aggregator's rows.
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    /// A sink can never take the aggregator's rows.
    #[error("the sinks cannot take the aggregator's rows: {0}")]
    Refused(String),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A start-up task panicked (a bug in weir).
    #[error("a start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A shard stopped with an error.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// Delivery could not finish.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// Threads panicked.
    #[error(
        "{0} of its threads panicked (a bug in weir; the log above says where); uncommitted records will be read again on restart"
    )]
    Panicked(usize),
}

impl TopologyError {
    /// True when a service (the registry, PostgreSQL) did not answer: worth
    /// trying again while starting.
    pub fn is_unreachable(&self) -> bool {
        let sql = |error: &sqlx::Error| {
            matches!(
                error,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            )
        };
        match self {
            Self::Lookups(error) => error.is_unreachable(),
            Self::KafkaSink(KafkaSinkError::Registry(RegistryError::Unreachable { .. })) => true,
            Self::Postgres(PostgresError::Database { source, .. }) => sql(source),
            Self::Sink(error) => error.is_transient(),
            _ => false,
        }
    }
}
