//! How weir reaches Kafka, and the settings of each client it makes.

use std::sync::Arc;

use rdkafka::ClientConfig;

use crate::connect::Secret;

/// How weir reaches a Kafka cluster. Every client weir makes is configured
/// from one of these: weir's settings for the client's purpose, then the
/// user's properties (security, tuning), which never include
/// [`weirs_own`].
#[derive(Clone, PartialEq, Eq)]
pub struct Connection {
    bootstrap: String,
    properties: Arc<[(String, Secret)]>,
}

/// The properties weir sets itself because its guarantees rest on them,
/// each with the reason a user may not change it; `None` for any other.
pub fn weirs_own(property: &str) -> Option<&'static str> {
    Some(match property {
        "enable.auto.commit" | "enable.auto.offset.store" => {
            "weir commits offsets itself, after the records' results are written"
        }
        "group.id" => "each pipeline's consumer group is named in its pipeline file (`group`)",
        "enable.idempotence" | "acks" => {
            "weir's producers are idempotent and wait for every in-sync replica so no write is lost"
        }
        "transactional.id" | "isolation.level" => "weir does not use Kafka transactions",
        "auto.offset.reset" => "a new consumer group reads its topic from the start",
        "enable.auto.create.topics" | "allow.auto.create.topics" => {
            "weir creates the topics it writes, with the partitions they need"
        }
        _ => return None,
    })
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("bootstrap", &self.bootstrap)
            .field(
                "properties",
                &self
                    .properties
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What a producer is for: each use wants its own batching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Producing {
    /// A whole flush sent at once and awaited (sink rows, the changelog):
    /// few large requests beat many small ones, and waiting to fill them
    /// buys nothing.
    Flushes,
    /// Dead letters: a value of up to `max_record_bytes` plus its headers.
    DeadLetters,
    /// A steady stream of events (the generator): batches fill as they go.
    Stream,
}

impl Connection {
    /// A cluster reached at `bootstrap` (`host:port`, comma-separated).
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            properties: Arc::new([]),
        }
    }

    /// The same cluster, every client also given `properties` (librdkafka's
    /// names), which must not include [`weirs_own`].
    pub fn with_properties(mut self, properties: Vec<(String, Secret)>) -> Self {
        debug_assert!(properties.iter().all(|(name, _)| weirs_own(name).is_none()));
        self.properties = properties.into();
        self
    }

    /// `security.protocol` as the user's properties set it (PLAINTEXT by default).
    pub fn security_protocol(&self) -> &str {
        self.property("security.protocol").unwrap_or("PLAINTEXT")
    }

    /// The user's value of `name`.
    fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(property, _)| property == name)
            .map(|(_, value)| value.expose())
    }

    /// The bootstrap servers, as given.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// What every client shares: where the cluster is, and how to trust it.
    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        // With TLS and no CA named, trust the system's CAs: librdkafka's
        // OpenSSL is weir's own, and its built-in folder holds none.
        let names_a_ca = ["ssl.ca.location", "ssl.ca.pem", "ssl.ca.certificate.stores"]
            .iter()
            .any(|name| self.property(name).is_some());
        if self
            .security_protocol()
            .to_ascii_lowercase()
            .contains("ssl")
            && !names_a_ca
        {
            config.set("ssl.ca.location", "probe");
        }
        config
    }

    /// `config` with the user's properties over weir's tuning.
    fn finish(&self, mut config: ClientConfig) -> ClientConfig {
        for (name, value) in self.properties.iter() {
            config.set(name, value.expose());
        }
        config
    }

    /// An idempotent producer (no duplicates on retries) for `purpose`.
    /// Its writes are acknowledged by every in-sync replica, except the
    /// generator's, which keeps librdkafka's default.
    pub fn producer(&self, purpose: Producing) -> ClientConfig {
        let mut config = self.client();
        config.set("enable.idempotence", "true");
        match purpose {
            Producing::Flushes => config
                .set("acks", "all")
                .set("linger.ms", "1")
                .set("batch.size", "1000000")
                .set("compression.type", "lz4"),
            Producing::DeadLetters => config
                .set("acks", "all")
                .set("linger.ms", "5")
                // A dead letter carries a value of up to `max_record_bytes`
                // plus its headers: allow what a default topic allows.
                .set("message.max.bytes", "1048588"),
            Producing::Stream => config
                .set("linger.ms", "20")
                .set("compression.type", "lz4")
                .set("message.timeout.ms", "120000"),
        };
        self.finish(config)
    }

    /// The source's consumer: a member of `group`, named `client_id`, that
    /// stores offsets only when weir commits them.
    pub fn source_consumer(&self, group: &str, client_id: &str) -> ClientConfig {
        let mut config = self.client();
        config
            .set("group.id", group)
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Prefetch at most 64 MiB: the bound on what waits in the client.
            .set("queued.max.messages.kbytes", "65536")
            // When that bound is reached, fetch again 10 ms later, not the
            // default 1 s: at full speed the queue drains in about that second,
            // and the shards then waited for the next fetch (measured: 117 000
            // -> 160 000 events/s with `weir-bench pipeline`).
            .set("fetch.queue.backoff.ms", "10")
            // Rebalances move only the partitions that change owner; the others keep flowing.
            .set("partition.assignment.strategy", "cooperative-sticky")
            // An instance that dies without leaving (kill -9, a lost machine)
            // holds its partitions this long before the group moves them.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "2000");
        self.finish(config)
    }

    /// A consumer that reads a changelog from the start, as fast as the
    /// broker sends it (assigned partitions, never a group member).
    pub fn restore_consumer(&self) -> ClientConfig {
        let mut config = self.client();
        config
            .set("enable.auto.commit", "false")
            .set("group.id", "weir-restore")
            .set("fetch.max.bytes", "104857600")
            .set("max.partition.fetch.bytes", "16777216")
            // Bound the prefetch by bytes, not by a message count (the default
            // stops at 100 000 messages and then waits up to a second).
            .set("queued.max.messages.kbytes", "65536")
            .set("queued.min.messages", "10000000")
            .set("fetch.queue.backoff.ms", "10");
        self.finish(config)
    }

    /// A client that only asks for metadata and offsets (of `group`, when
    /// given); it never creates a topic by asking about it.
    pub fn reader(&self, group: Option<&str>) -> ClientConfig {
        let mut config = self.client();
        config.set("allow.auto.create.topics", "false");
        if let Some(group) = group {
            config.set("group.id", group);
        }
        self.finish(config)
    }

    /// An admin client (topics).
    pub fn admin(&self) -> ClientConfig {
        self.finish(self.client())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_reaches_the_same_cluster() {
        let kafka = Connection::new("broker-1:9092,broker-2:9092");
        let configs = [
            kafka.producer(Producing::Flushes),
            kafka.producer(Producing::DeadLetters),
            kafka.producer(Producing::Stream),
            kafka.source_consumer("group", "client"),
            kafka.restore_consumer(),
            kafka.reader(Some("group")),
            kafka.admin(),
        ];
        for config in configs {
            assert_eq!(
                config.get("bootstrap.servers"),
                Some("broker-1:9092,broker-2:9092")
            );
        }
    }

    #[test]
    fn writes_that_guard_data_wait_for_every_replica() {
        let kafka = Connection::new("localhost:9092");
        for purpose in [Producing::Flushes, Producing::DeadLetters] {
            let config = kafka.producer(purpose);
            assert_eq!(config.get("acks"), Some("all"), "{purpose:?}");
            assert_eq!(
                config.get("enable.idempotence"),
                Some("true"),
                "{purpose:?}"
            );
        }
    }

    #[test]
    fn the_source_commits_only_what_weir_commits() {
        let config = Connection::new("localhost:9092").source_consumer("g", "c");
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(config.get("group.id"), Some("g"));
    }
}
