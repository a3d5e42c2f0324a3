//! Apache Kafka 4.3.1, KRaft mode, one node acting as broker and controller,
//! run from the Maven Central artifacts (no tarball, no Docker). Secured, its
//! only client listeners are SASL_SSL (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN)
//! and SSL with client certificates (mutual TLS).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sha2::{Digest, Sha256};

use super::process::ProcessSlot;
use super::secured::{self, Credentials, KAFKA_ADMIN, USER};
use super::tools::{self, maven};
use super::{Dirs, Service};

/// The Kafka release the stack runs; `xtask/stack/kafka-pom.xml` names the same.
pub const VERSION: &str = "4.3.1";
/// The secured stack's mutual-TLS listener (client certificates, no SASL).
const MTLS_PORT: u16 = 9194;

pub struct Kafka {
    slot: ProcessSlot,
    dirs: Dirs,
}

impl Kafka {
    pub fn new(dirs: &Dirs) -> Self {
        Self {
            slot: ProcessSlot::new("kafka", &dirs.state),
            dirs: dirs.clone(),
        }
    }

    fn pom(&self) -> PathBuf {
        self.dirs.repo.join("xtask/stack/kafka-pom.xml")
    }

    /// The resolved runtime classpath, cached outside the checkout and
    /// named by the POM's content (every clone's POM file is newer than
    /// the cache; its content is the same).
    fn cached_classpath(&self) -> Result<PathBuf> {
        let pom = fs::read(self.pom())
            .with_context(|| format!("cannot read {}", self.pom().display()))?;
        let digest = format!("{:x}", Sha256::digest(&pom));
        let digest = &digest[..12];
        Ok(self
            .dirs
            .cache
            .join(format!("kafka-{VERSION}-{digest}.classpath")))
    }

    /// The classpath as the tests and Kafka's tools read it: `<state>/kafka/classpath`.
    fn classpath_file(&self) -> PathBuf {
        self.slot.dir().join("classpath")
    }

    fn config_file(&self) -> PathBuf {
        self.slot.dir().join("server.properties")
    }

    /// weir's client settings for this broker (`WEIR_KAFKA_CONFIG`): SCRAM
    /// over TLS when secured.
    pub fn client_properties(&self) -> PathBuf {
        self.slot.dir().join("client.properties")
    }

    /// Client settings for the mutual-TLS listener (secured only).
    fn mtls_properties(&self) -> PathBuf {
        self.slot.dir().join("client-mtls.properties")
    }

    fn port(&self) -> u16 {
        self.dirs.profile.kafka_port()
    }

    /// Writes the client settings files of the secured broker.
    fn write_client_files(&self, credentials: &Credentials) -> Result<()> {
        let ca = credentials.ca();
        fs::write(
            self.client_properties(),
            format!(
                "# Written by `cargo xtask stack up --secure`: how weir reaches this broker.\n\
                 bootstrap.servers=127.0.0.1:{port}\n\
                 security.protocol=SASL_SSL\n\
                 sasl.mechanism=SCRAM-SHA-512\n\
                 sasl.username={USER}\n\
                 sasl.password=${{file:{password}}}\n\
                 ssl.ca.location={ca}\n",
                port = self.port(),
                password = credentials.password_file("kafka").display(),
                ca = ca.display(),
            ),
        )?;
        fs::write(
            self.mtls_properties(),
            format!(
                "# Written by `cargo xtask stack up --secure`: the mutual-TLS listener.\n\
                 bootstrap.servers=127.0.0.1:{MTLS_PORT}\n\
                 security.protocol=SSL\n\
                 ssl.ca.location={ca}\n\
                 ssl.certificate.location={cert}\n\
                 ssl.key.location={key}\n",
                ca = ca.display(),
                cert = credentials.client_cert().display(),
                key = credentials.client_key().display(),
            ),
        )?;
        Ok(())
    }

    /// The listeners and their security, as `server.properties` lines.
    fn listener_config(&self) -> Result<String> {
        let port = self.port();
        let controller = self.dirs.profile.kafka_controller_port();
        let Some(credentials) = self.dirs.profile.credentials() else {
            return Ok(format!(
                "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
                 inter.broker.listener.name=PLAINTEXT\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
            ));
        };
        let admin = credentials.password("kafka-admin")?;
        let weir = credentials.password("kafka")?;
        let scram = "org.apache.kafka.common.security.scram.ScramLoginModule";
        let plain = "org.apache.kafka.common.security.plain.PlainLoginModule";
        Ok(format!(
            "# Clients reach the broker over TLS only: SASL (SCRAM, PLAIN) or client certificates.\n\
             listeners=SASL_SSL://127.0.0.1:{port},SSL://127.0.0.1:{MTLS_PORT},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=SASL_SSL://127.0.0.1:{port},SSL://127.0.0.1:{MTLS_PORT}\n\
             listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:PLAINTEXT\n\
             inter.broker.listener.name=SASL_SSL\n\
             sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512\n\
             sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN\n\
             listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram} required username=\"{KAFKA_ADMIN}\" password=\"{admin}\";\n\
             listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram} required;\n\
             listener.name.sasl_ssl.plain.sasl.jaas.config={plain} required user_{KAFKA_ADMIN}=\"{admin}\" user_{USER}=\"{weir}\";\n\
             listener.name.ssl.ssl.client.auth=required\n\
             ssl.keystore.type=PEM\n\
             ssl.keystore.location={keystore}\n\
             ssl.truststore.type=PEM\n\
             ssl.truststore.location={ca}\n",
            keystore = credentials.server_keystore().display(),
            ca = credentials.ca().display(),
        ))
    }

    fn data_dir(&self) -> PathBuf {
        self.slot.dir().join("data")
    }

    /// Resolves the broker's jars with Maven unless the classpath cached
    /// for this POM still points at existing jars.
    fn resolve_classpath(&self) -> Result<String> {
        let cached = self.cached_classpath()?;
        if let Ok(classpath) = fs::read_to_string(&cached)
            && classpath.split(':').all(|jar| Path::new(jar).is_file())
        {
            return Ok(classpath);
        }
        tools::ensure_maven()?;
        println!("kafka: resolving Apache Kafka {VERSION} from Maven Central (first run only)");
        fs::create_dir_all(&self.dirs.cache)?;
        tools::run(
            maven()
                .arg("--file")
                .arg(self.pom())
                .arg("dependency:build-classpath")
                .arg(format!("-Dmdep.outputFile={}", cached.display())),
            "resolving Kafka's jars with Maven",
        )?;
        fs::read_to_string(&cached).context("Maven wrote no classpath")
    }

    /// `java <jvm_options> -cp <kafka jars> <main_class>`, logging through our log4j2 file.
    fn java_command(&self, jvm_options: &[&str], main_class: &str) -> Result<Command> {
        let mut command = Command::new(tools::java()?);
        command
            .args(jvm_options)
            .arg("-cp")
            .arg(fs::read_to_string(self.classpath_file())?.trim())
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.slot.dir().join("log4j2.properties").display()
            ))
            .arg(main_class);
        Ok(command)
    }

    fn write_config(&self) -> Result<()> {
        let config = format!(
            "# Written by `cargo xtask stack up`; edits are overwritten on the next start.\n\
             process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             controller.listener.names=CONTROLLER\n\
             {listeners}\
             log.dirs={data}\n\
             # One node: every internal topic has one replica.\n\
             offsets.topic.replication.factor=1\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             default.replication.factor=1\n\
             min.insync.replicas=1\n\
             # Consumer groups form at once instead of waiting for more members.\n\
             group.initial.rebalance.delay.ms=0\n\
             num.partitions=1\n\
             auto.create.topics.enable=true\n\
             # Transactions are on by default; keep finished ones for a day.\n\
             transactional.id.expiration.ms=86400000\n",
            data = self.data_dir().display(),
            controller = self.dirs.profile.kafka_controller_port(),
            listeners = self.listener_config()?,
        );
        // The secured broker's file holds its users' passwords.
        secured::write_private(&self.config_file(), &config)?;
        if let Some(credentials) = self.dirs.profile.credentials() {
            self.write_client_files(credentials)?;
        }
        let log4j = "# Written by `cargo xtask stack up`: Kafka logs to standard output,\n\
                     # which the stack appends to kafka.log.\n\
                     status = warn\n\
                     appender.console.type = Console\n\
                     appender.console.name = console\n\
                     appender.console.layout.type = PatternLayout\n\
                     appender.console.layout.pattern = [%d] %p %m (%c)%n\n\
                     rootLogger.level = INFO\n\
                     rootLogger.appenderRef.console.ref = console\n\
                     logger.kafka-request.name = kafka.request.logger\n\
                     logger.kafka-request.level = WARN\n";
        fs::write(self.slot.dir().join("log4j2.properties"), log4j)?;
        Ok(())
    }

    /// Formats the KRaft storage with a new cluster id on the first start.
    fn format_storage(&self) -> Result<()> {
        if self.data_dir().join("meta.properties").exists() {
            return Ok(());
        }
        println!(
            "kafka: formatting KRaft storage in {}",
            self.data_dir().display()
        );
        let output = tools::run(
            self.java_command(&[], "kafka.tools.StorageTool")?
                .arg("random-uuid"),
            "generating a Kafka cluster id",
        )?;
        let cluster_id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let mut format = self.java_command(&[], "kafka.tools.StorageTool")?;
        format
            .args(["format", "--ignore-formatted", "--cluster-id", &cluster_id])
            .arg("--config")
            .arg(self.config_file());
        // KRaft keeps SCRAM users in its metadata: the first ones are made
        // with the storage.
        if let Some(credentials) = self.dirs.profile.credentials() {
            let admin = credentials.password("kafka-admin")?;
            let weir = credentials.password("kafka")?;
            for (mechanism, user, password) in [
                ("SCRAM-SHA-512", KAFKA_ADMIN, &admin),
                ("SCRAM-SHA-512", USER, &weir),
                ("SCRAM-SHA-256", USER, &weir),
            ] {
                format
                    .arg("--add-scram")
                    .arg(format!("{mechanism}=[name={user},password={password}]"));
            }
        }
        tools::run(&mut format, "formatting Kafka's storage")?;
        Ok(())
    }
}

impl Service for Kafka {
    fn slot(&self) -> &ProcessSlot {
        &self.slot
    }

    fn ports(&self) -> Vec<u16> {
        let mut ports = vec![self.port(), self.dirs.profile.kafka_controller_port()];
        if self.dirs.profile.credentials().is_some() {
            ports.push(MTLS_PORT);
        }
        ports
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    fn describe(&self) -> String {
        match self.dirs.profile.credentials() {
            None => format!("Apache Kafka {VERSION}, KRaft, one node"),
            Some(_) => format!(
                "Apache Kafka {VERSION}, KRaft, one node, SASL_SSL (SCRAM, PLAIN); \
                 mutual TLS on {MTLS_PORT}"
            ),
        }
    }

    fn prepare(&self) -> Result<()> {
        tools::java()?;
        let classpath = self.resolve_classpath()?;
        fs::create_dir_all(self.slot.dir())?;
        fs::write(self.classpath_file(), classpath)?;
        self.write_config()?;
        self.format_storage()
    }

    fn command(&self) -> Result<Command> {
        let jvm_options = [
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
        ];
        let mut command = self.java_command(&jvm_options, "kafka.Kafka")?;
        command.arg(self.config_file());
        Ok(command)
    }

    fn probe(&self) -> std::result::Result<String, String> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.endpoint())
            .set("socket.timeout.ms", "1000");
        if let Some(credentials) = self.dirs.profile.credentials() {
            config
                .set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", "SCRAM-SHA-512")
                .set("sasl.username", KAFKA_ADMIN)
                .set(
                    "sasl.password",
                    credentials
                        .password("kafka-admin")
                        .map_err(|e| e.to_string())?,
                )
                .set("ssl.ca.location", credentials.ca().display().to_string());
        }
        let consumer: BaseConsumer = config.create().map_err(|error| error.to_string())?;
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(1))
            .map_err(|error| error.to_string())?;
        match metadata.brokers().len() {
            0 => Err("the cluster lists no broker yet".to_owned()),
            n => Ok(format!("{n} broker, {} topics", metadata.topics().len())),
        }
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(90)
    }
}
