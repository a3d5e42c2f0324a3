//! Apache Kafka 4.3.1, KRaft mode, one node acting as broker and controller,
//! run from the Maven Central artifacts (no tarball, no Docker).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::process::ProcessSlot;
use super::tools::{self, maven};
use super::{Dirs, Service};

/// The Kafka release the stack runs; `xtask/stack/kafka-pom.xml` names the same.
pub const VERSION: &str = "4.3.1";
/// Where clients connect.
pub const PORT: u16 = 9092;
/// The KRaft controller listener (internal to the node).
const CONTROLLER_PORT: u16 = 9093;

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

    /// The resolved runtime classpath, cached outside the checkout.
    fn cached_classpath(&self) -> PathBuf {
        self.dirs.cache.join(format!("kafka-{VERSION}.classpath"))
    }

    /// The classpath as the tests and Kafka's tools read it: `<state>/kafka/classpath`.
    fn classpath_file(&self) -> PathBuf {
        self.slot.dir().join("classpath")
    }

    fn config_file(&self) -> PathBuf {
        self.slot.dir().join("server.properties")
    }

    fn data_dir(&self) -> PathBuf {
        self.slot.dir().join("data")
    }

    /// Resolves the broker's jars with Maven unless a cached classpath still
    /// points at existing jars and is newer than the POM.
    fn resolve_classpath(&self) -> Result<String> {
        let cached = self.cached_classpath();
        if let Ok(classpath) = fs::read_to_string(&cached) {
            let fresh = is_newer(&cached, &self.pom())
                && classpath.split(':').all(|jar| Path::new(jar).is_file());
            if fresh {
                return Ok(classpath);
            }
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
             controller.quorum.voters=1@127.0.0.1:{CONTROLLER_PORT}\n\
             listeners=PLAINTEXT://127.0.0.1:{PORT},CONTROLLER://127.0.0.1:{CONTROLLER_PORT}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{PORT}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
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
            data = self.data_dir().display()
        );
        fs::write(self.config_file(), config)?;
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
        tools::run(
            self.java_command(&[], "kafka.tools.StorageTool")?
                .args(["format", "--ignore-formatted", "--cluster-id", &cluster_id])
                .arg("--config")
                .arg(self.config_file()),
            "formatting Kafka's storage",
        )?;
        Ok(())
    }
}

impl Service for Kafka {
    fn slot(&self) -> &ProcessSlot {
        &self.slot
    }

    fn ports(&self) -> &'static [u16] {
        &[PORT, CONTROLLER_PORT]
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{PORT}")
    }

    fn describe(&self) -> String {
        format!("Apache Kafka {VERSION}, KRaft, one node")
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
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.endpoint())
            .set("socket.timeout.ms", "1000")
            .create()
            .map_err(|error| error.to_string())?;
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

/// True when `a` was modified after `b` (false if either cannot be read).
fn is_newer(a: &Path, b: &Path) -> bool {
    let modified = |path: &Path| fs::metadata(path).and_then(|m| m.modified()).ok();
    matches!((modified(a), modified(b)), (Some(a), Some(b)) if a >= b)
}
