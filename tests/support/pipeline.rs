//! Running a real pipeline in a test: topics made for it, the demo pipeline
//! file rewritten to the test's own names, `weir run` (the library entry of
//! the command) on a thread, and waiting until its committed offsets reach
//! the end of the input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use weir::engine::RunConfig;
use weir::generate::GenerateArgs;

use crate::{Stack, manifest_dir, unique};

/// The names one test's pipeline uses, all fresh.
#[derive(Debug, Clone)]
pub struct Names {
    /// The pipeline (and so its group `weir-<name>` and dead-letter topic `<name>.dlq`).
    pub pipeline: String,
    /// The input topic.
    pub events: String,
    /// The Avro output topic.
    pub avro: String,
    /// The PostgreSQL table.
    pub table: String,
}

impl Names {
    /// Fresh names starting with `prefix`.
    pub fn fresh(prefix: &str) -> Self {
        let id = unique(prefix).replace('_', "-");
        let pipeline = id.to_lowercase();
        let table = pipeline.replace('-', "_");
        Self {
            events: format!("{pipeline}.events"),
            avro: format!("{table}_avro"),
            pipeline,
            table,
        }
    }

    /// The consumer group.
    pub fn group(&self) -> String {
        format!("weir-{}", self.pipeline)
    }

    /// The dead-letter topic.
    pub fn dead_letters(&self) -> String {
        format!("{}.dlq", self.pipeline)
    }
}

/// Writes `pipelines/activity.toml` with `names` into `dir` (plugin paths
/// made absolute); returns the file. Fails if a line it must rewrite is not
/// there, so the test never runs against the stock topic or table.
pub fn activity_pipeline(dir: &Path, names: &Names) -> Result<PathBuf> {
    let root = manifest_dir().join("..");
    let stock = std::fs::read_to_string(root.join("pipelines/activity.toml"))?;
    let plugins = plugin_dir();
    let mut text = String::new();
    let mut rewritten = 0;
    for line in stock.lines() {
        let fresh = match line.trim() {
            "name = \"activity\"" => Some(format!("name = \"{}\"", names.pipeline)),
            "topic = \"ecommerce.events\"" => Some(format!("topic = \"{}\"", names.events)),
            "topic = \"session_activity_avro\"" => Some(format!("topic = \"{}\"", names.avro)),
            "table = \"session_activity\"" => Some(format!("table = \"{}\"", names.table)),
            trimmed => plugin_line(trimmed, &plugins),
        };
        if fresh.is_some() {
            rewritten += 1;
        }
        text.push_str(&fresh.unwrap_or_else(|| line.to_owned()));
        text.push('\n');
    }
    anyhow::ensure!(
        rewritten == 6,
        "pipelines/activity.toml: {rewritten} lines rewritten, expected the name, two topics, \
         the table and two plugins"
    );
    let path = dir.join(format!("{}.toml", names.pipeline));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Writes `pipelines/demo.toml` with `names` into `dir` (plugin paths made
/// absolute), plus `extra` appended to its `[source]` table; returns the file.
pub fn demo_pipeline(dir: &Path, names: &Names, source_extra: &str) -> Result<PathBuf> {
    stock_pipeline(
        dir,
        "demo",
        &names.pipeline,
        &[
            ("name = \"demo\"", format!("name = \"{}\"", names.pipeline)),
            (
                "topic = \"ecommerce.events\"",
                format!("topic = \"{}\"\n{source_extra}", names.events),
            ),
            (
                "topic = \"session_stats_avro\"",
                format!("topic = \"{}\"", names.avro),
            ),
            (
                "table = \"sessions\"",
                format!("table = \"{}\"", names.table),
            ),
        ],
        "",
    )
}

/// Writes `pipelines/<stock>.toml` into `dir` as `<name>.toml`, each line
/// that reads `from` (trimmed) written as `to`, plugin paths made absolute,
/// `extra` appended; returns the file. Fails if a `from` line is not there,
/// so a test never runs against a stock topic or table unnoticed.
pub fn stock_pipeline(
    dir: &Path,
    stock: &str,
    name: &str,
    rewrites: &[(&str, String)],
    extra: &str,
) -> Result<PathBuf> {
    let root = manifest_dir().join("..");
    let text = std::fs::read_to_string(root.join(format!("pipelines/{stock}.toml")))?;
    let plugins = plugin_dir();
    let mut out = String::new();
    let mut unused: Vec<&str> = rewrites.iter().map(|(from, _)| *from).collect();
    for line in text.lines() {
        let trimmed = line.trim();
        let line = match rewrites.iter().find(|(from, _)| *from == trimmed) {
            Some((from, to)) => {
                unused.retain(|u| u != from);
                to.clone()
            }
            None => plugin_line(trimmed, &plugins).unwrap_or_else(|| line.to_owned()),
        };
        out.push_str(&line);
        out.push('\n');
    }
    ensure!(
        unused.is_empty(),
        "pipelines/{stock}.toml has no line {unused:?}"
    );
    out.push_str(extra);
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, out)?;
    Ok(path)
}

/// Changes one setting of the pipeline file at `path`: `from`, which must
/// be there (so a test does not go on with the stock value unnoticed),
/// becomes `to`.
pub fn replace_setting(path: &Path, from: &str, to: &str) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    ensure!(text.contains(from), "{} has no `{from}`", path.display());
    std::fs::write(path, text.replace(from, to))?;
    Ok(())
}

/// A pipeline file's `plugin = "../plugins/..."` line with the path of the
/// component where the test command builds it (`plugins`): the Rust ones
/// by file name, the others (`../plugins/<language>/<name>/target/<name>.wasm`)
/// as `<name>.wasm` with underscores. `None` for any other line.
pub fn plugin_line(line: &str, plugins: &Path) -> Option<String> {
    let path = line
        .strip_prefix("plugin = \"../plugins/")?
        .trim_end_matches('"');
    let file = path.rsplit('/').next()?;
    let file = if path.starts_with("target/") {
        file.to_owned()
    } else {
        file.replace('-', "_")
    };
    Some(format!("plugin = \"{}\"", plugins.join(file).display()))
}

/// The folder the test command builds components into.
pub fn plugin_dir() -> PathBuf {
    std::env::var_os("WEIR_PLUGIN_DIR").map_or_else(
        || manifest_dir().join("../plugins/target/wasm32-wasip2/release"),
        PathBuf::from,
    )
}

/// Creates `topic` with `partitions` partitions (retrying for a while: a
/// broker just restarted by another test may not take requests yet).
pub async fn create_topic(stack: &Stack, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = stack.kafka_client().create()?;
    let started = Instant::now();
    loop {
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
            )
            .await;
        match results {
            Ok(results) => {
                for result in results {
                    result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
                }
                return Ok(());
            }
            Err(error) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("creating {topic}: {error}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => {
                return Err(anyhow::Error::from(error).context(format!(
                    "cannot create {topic} at {}: is the stack up? (`cargo xtask stack up` \
                     starts it)",
                    stack.bootstrap
                )));
            }
        }
    }
}

/// `weir generate` with `args` (the command's own options) against the stack.
pub fn generate(stack: &Stack, args: &[&str]) -> Result<weir::generate::Counts> {
    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        generate: GenerateArgs,
    }
    let flags = stack.connect_flags();
    let mut argv = vec!["generate"];
    argv.extend(flags.iter().map(String::as_str));
    argv.extend_from_slice(args);
    let args = Command::try_parse_from(argv)?.generate;
    Ok(weir::generate::run(
        &args,
        &Arc::new(AtomicBool::new(false)),
    )?)
}

/// `weir generate ARGS` twice with the same arguments (a fixed seed gives
/// the same events): into the topic with `topic_args` as well, then into
/// the file `copy`, for an oracle. The copy's lines are in the order the
/// events were produced, which is their order by offset within a session.
/// Returns the counts of the run into Kafka and how long it took.
pub fn generate_with_copy(
    stack: &Stack,
    args: &[&str],
    topic_args: &[&str],
    copy: &Path,
) -> Result<(weir::generate::Counts, Duration)> {
    let started = Instant::now();
    let counts = generate(stack, &[args, topic_args].concat())?;
    let took = started.elapsed();
    generate(
        stack,
        &[args, &["--output", &copy.display().to_string()]].concat(),
    )?;
    Ok((counts, took))
}

/// `count` events of seed `seed` (`sessions` live at once) written to
/// `file` (the catalog written to the shared tables too), read back as
/// JSON values in the order they were generated.
pub fn generated_events(
    stack: &Stack,
    seed: &str,
    sessions: usize,
    count: u64,
    file: &Path,
) -> Result<Vec<serde_json::Value>> {
    let (sessions, count) = (sessions.to_string(), count.to_string());
    generate(
        stack,
        &[
            "--rate",
            "0",
            "--seed",
            seed,
            "--sessions",
            &sessions,
            "--count",
            &count,
            "--write-catalog",
            "--output",
            &file.display().to_string(),
        ],
    )?;
    std::fs::read_to_string(file)?
        .lines()
        .map(|line| Ok(serde_json::from_str(line)?))
        .collect()
}

/// Pipelines running on their own thread, as `weir run FILE...` runs them.
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<()>>,
}

impl Running {
    /// Starts `weir run file` against the stack.
    pub fn start(stack: &Stack, file: &Path) -> Result<Self> {
        Self::start_all(stack, &[file])
    }

    /// Starts `weir run files...` (one process, every pipeline) against the
    /// stack, with the admin API on any free port.
    pub fn start_all(stack: &Stack, files: &[&Path]) -> Result<Self> {
        let plans = files
            .iter()
            .map(|file| weir::pipeline::load(file).map_err(|errors| anyhow::anyhow!("{errors}")))
            .collect::<Result<Vec<_>>>()?;
        let config = RunConfig {
            status_every: Duration::from_secs(5),
            ..RunConfig::with_services(stack.services.clone())
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || Ok(weir::engine::run(plans, &config, &stop)?))
        };
        Ok(Self { stop, thread })
    }

    /// True while the pipeline runs.
    pub fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }

    /// Stops it the way Ctrl-C does and waits: its result.
    pub fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))?
    }
}

/// Something that runs a pipeline: a thread here, or a `weir run` process.
pub trait Alive {
    /// True while it runs.
    fn alive(&mut self) -> bool;
}

impl Alive for Running {
    fn alive(&mut self) -> bool {
        self.is_running()
    }
}

impl Alive for std::process::Child {
    fn alive(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }
}

/// The `weir` binary cargo built beside this test (`cargo test --workspace`
/// builds it: the host's own tests need it).
pub fn weir_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // Beside a benchmark (<target>/<profile>/weir-bench), or one folder up
    // from a test (<target>/<profile>/deps/<test>).
    let beside = exe.with_file_name("weir");
    if beside.is_file() {
        return Ok(beside);
    }
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("tests run from <target>/<profile>/deps")?;
    let weir = dir.join("weir");
    if !weir.is_file() {
        bail!(
            "{} is missing: build it with `cargo build -p weir`",
            weir.display()
        );
    }
    Ok(weir)
}

/// The group's committed offsets of `topic`'s partitions, and their end offsets.
pub fn progress(stack: &Stack, group: &str, topic: &str) -> Result<(Vec<Option<i64>>, Vec<i64>)> {
    let reader: BaseConsumer = stack.kafka_client().set("group.id", group).create()?;
    let progress = weir::kafka::group_progress(&reader, topic, Duration::from_secs(10))?;
    Ok(progress.iter().map(|p| (p.committed, p.high)).unzip())
}

/// The messages of `topic` between `from` and `to` (offsets per
/// partition): how many, for how many keys, and the most for one key.
pub fn count_per_key(
    stack: &Stack,
    topic: &str,
    from: &[i64],
    to: &[i64],
) -> Result<(usize, usize, usize)> {
    let consumer: BaseConsumer = stack
        .kafka_client()
        .set("group.id", unique("count-per-key"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut list = TopicPartitionList::new();
    let mut left = 0;
    for (partition, (&start, &end)) in from.iter().zip(to).enumerate() {
        if end > start {
            list.add_partition_offset(topic, partition as i32, Offset::Offset(start))?;
            left += usize::try_from(end - start)?;
        }
    }
    let mut per_key: HashMap<Vec<u8>, usize> = HashMap::new();
    let total = left;
    if left > 0 {
        consumer.assign(&list)?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while left > 0 && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            let message = message?;
            let partition = message.partition() as usize;
            if message.offset() < to[partition] {
                *per_key
                    .entry(message.key().unwrap_or_default().to_vec())
                    .or_default() += 1;
                left -= 1;
            }
        }
    }
    Ok((
        total,
        per_key.len(),
        per_key.values().copied().max().unwrap_or(0),
    ))
}

/// Waits until `group` has committed the end of every partition of `topic`
/// (all records processed and in the sinks), failing after `timeout` or if
/// `running` stops first.
pub fn wait_caught_up(
    stack: &Stack,
    group: &str,
    topic: &str,
    running: &mut impl Alive,
    timeout: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    loop {
        if !running.alive() {
            bail!("the pipeline stopped before it caught up");
        }
        // A group's coordinator may still be moving while a pipeline starts
        // (`NotCoordinator`): asked again until the timeout.
        let (committed, ends) = match progress(stack, group, topic) {
            Ok(progress) => progress,
            Err(error) if started.elapsed() < timeout => {
                eprintln!("progress of `{group}` not known yet: {error:#}");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            Err(error) => return Err(error.context(format!("the progress of `{group}`"))),
        };
        let caught_up = ends
            .iter()
            .zip(&committed)
            .all(|(&end, &done)| end == 0 || done == Some(end));
        if caught_up {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!(
                "the pipeline did not catch up within {timeout:?}: committed {committed:?}, ends {ends:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A test's pipeline: the stack, fresh names, a scratch folder, the input
/// topic created with `partitions` partitions, and an async runtime.
pub struct Scenario {
    /// The stack.
    pub stack: Stack,
    /// Fresh names.
    pub names: Names,
    /// A scratch folder (pipeline file, logs, data).
    pub dir: PathBuf,
    /// For the async clients (PostgreSQL, Kafka admin).
    pub tokio: tokio::runtime::Runtime,
    /// The `weir run` processes started, killed when the scenario ends (a
    /// failed test must not leave them running).
    children: std::sync::Mutex<Vec<u32>>,
}

impl Scenario {
    /// Sets up a scenario named after `prefix`.
    pub fn new(prefix: &str, partitions: i32) -> Result<Self> {
        Self::on(Stack::from_env(), prefix, partitions)
    }

    /// [`Scenario::new`] on `stack` (the secured one, say).
    pub fn on(stack: Stack, prefix: &str, partitions: i32) -> Result<Self> {
        let names = Names::fresh(prefix);
        let dir = std::env::temp_dir().join(&names.pipeline);
        std::fs::create_dir_all(&dir)?;
        let tokio = tokio::runtime::Runtime::new()?;
        tokio.block_on(create_topic(&stack, &names.events, partitions))?;
        Ok(Self {
            stack,
            names,
            dir,
            tokio,
            children: std::sync::Mutex::default(),
        })
    }

    /// `weir run PIPELINE ARGS` as a process against the stack, logging JSON to `log` in the scratch folder.
    pub fn spawn_weir(
        &self,
        pipeline: &Path,
        log: &str,
        args: &[&str],
    ) -> Result<std::process::Child> {
        let child = std::process::Command::new(weir_binary()?)
            .arg("run")
            .arg(pipeline)
            .args(["--admin-addr", "127.0.0.1:0"])
            .args(args)
            .env("WEIR_BOOTSTRAP", &self.stack.bootstrap)
            .env("WEIR_REGISTRY_URL", &self.stack.registry_url)
            .env("WEIR_DATABASE_URL", &self.stack.database_url)
            .envs(self.stack.env.iter().map(|(name, value)| (name, value)))
            .env("WEIR_LOG_FORMAT", "json")
            .stderr(std::fs::File::create(self.dir.join(log))?)
            .spawn()?;
        self.children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(child.id());
        Ok(child)
    }

    /// The fields of the last line of `log` whose message is `message`.
    pub fn last_log_line(&self, log: &str, message: &str) -> Result<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.join(log))?;
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .rfind(|line| line["fields"]["message"] == message)
            .map(|line| line["fields"].clone())
            .with_context(|| format!("no `{message}` line in {log} yet"))
    }

    /// The base URL of the admin API of the `weir run` logging to `log`
    /// (started with `--admin-addr 127.0.0.1:0`: the log says where it is).
    pub fn admin_url(&self, log: &str) -> Result<String> {
        let started = std::time::Instant::now();
        loop {
            if let Ok(line) = self.last_log_line(log, "Admin API listening.") {
                let addr = line["addr"].as_str().context("addr")?;
                return Ok(format!("http://{addr}"));
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("no admin API in {log}: {}", self.log_tail(log, 20));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes the shop's catalog of seed `seed` (users and products) to
    /// the shared tables, for the enrichment stage: before weir starts.
    pub fn write_catalog(&self, seed: &str) -> Result<()> {
        let unused = unique("unused");
        generate(
            &self.stack,
            &[
                "--seed",
                seed,
                "--count",
                "0",
                "--write-catalog",
                "--topic",
                &unused,
            ],
        )?;
        Ok(())
    }

    /// `weir generate` into the scenario's input topic on a thread: `count`
    /// events of seed `seed` at `rate` per second, `sessions` live at once.
    pub fn start_generator(
        &self,
        seed: &str,
        count: u64,
        rate: u64,
        sessions: u64,
    ) -> JoinHandle<Result<weir::generate::Counts>> {
        let stack = self.stack.clone();
        let args: Vec<String> = [
            "--rate",
            &rate.to_string(),
            "--seed",
            seed,
            "--sessions",
            &sessions.to_string(),
            "--count",
            &count.to_string(),
            "--topic",
            &self.names.events,
            "--progress-every",
            "3600",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            generate(&stack, &args)
        })
    }

    /// Waits for `generator` to produce its `events`, then for the pipeline
    /// (`running`) to have committed them all: what the generator made, and
    /// how long the second wait took.
    pub fn caught_up(
        &self,
        generator: JoinHandle<Result<weir::generate::Counts>>,
        events: u64,
        running: &mut impl Alive,
    ) -> Result<(weir::generate::Counts, Duration)> {
        let counts = generator.join().expect("the generator thread")?;
        anyhow::ensure!(
            counts.events == events,
            "the generator produced {} events, not {events}",
            counts.events
        );
        let waited = wait_caught_up(
            &self.stack,
            &self.names.group(),
            &self.names.events,
            running,
            Duration::from_secs(300),
        )?;
        Ok((counts, waited))
    }

    /// The last `lines` lines of `log` (for a failure message).
    pub fn log_tail(&self, log: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// A connection pool to the stack's database.
    pub fn pool(&self) -> Result<sqlx::PgPool> {
        self.tokio.block_on(self.stack.pool(2))
    }

    /// Every record of the input topic loaded into a new table
    /// `<table>_raw` ([`crate::oracle::load_raw`]); its name.
    pub fn load_input(&self, pool: &sqlx::PgPool) -> Result<String> {
        let raw = format!("{}_raw", self.names.table);
        let events = crate::oracle::read_topic(&self.stack, &self.names.events)?;
        self.tokio
            .block_on(crate::oracle::load_raw(pool, &raw, &events))?;
        Ok(raw)
    }

    /// The one value `sql` selects.
    pub fn scalar<T>(&self, pool: &sqlx::PgPool, sql: &str) -> Result<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        Ok(self
            .tokio
            .block_on(sqlx::query_scalar::<_, T>(sql).fetch_one(pool))?)
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let children = self
            .children
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for pid in children.drain(..) {
            // Only a `weir run` of this scenario still running: a finished
            // child's number may belong to another process by now.
            let ours = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                String::from_utf8_lossy(&cmdline).contains(&self.names.pipeline)
            });
            if ours {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends SIGTERM to `child` (as Ctrl-C or a service manager would) and waits for it.
pub fn terminate(child: &mut std::process::Child) -> Result<std::process::ExitStatus> {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -TERM {} failed", child.id());
    }
    Ok(child.wait()?)
}

/// A record of a dead-letter topic: its key, its value, its headers (as text).
#[derive(Debug)]
pub struct Letter {
    /// The Kafka key.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Vec<u8>,
    /// Each header, its value as (lossy) UTF-8.
    pub headers: HashMap<String, String>,
}

/// The first `count` records of dead-letter topic `topic`, waiting up to a
/// minute for them; fails when more arrive within two seconds after.
pub fn read_dead_letters(stack: &Stack, topic: &str, count: usize) -> Result<Vec<Letter>> {
    let reader: BaseConsumer = stack
        .kafka_client()
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()?;
    reader.subscribe(&[topic])?;
    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while letters.len() < count && Instant::now() < deadline {
        let Some(message) = reader.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message?;
        let headers = (message.headers().into_iter())
            .flat_map(|headers| headers.iter())
            .map(|header| {
                let value = String::from_utf8_lossy(header.value.unwrap_or_default());
                (header.key.to_owned(), value.into_owned())
            })
            .collect();
        letters.push(Letter {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    ensure!(
        reader.poll(Duration::from_secs(2)).is_none(),
        "more dead letters than the {count} expected"
    );
    Ok(letters)
}
