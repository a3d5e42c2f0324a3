//! `cargo xtask demo`: the stock pipelines end to end on the local stack.
//!
//! Brings the stack up, builds the stock plugins and `weir`, creates the
//! input topic, writes the shop's catalog to PostgreSQL, starts both stock
//! pipelines in one `weir run pipelines/demo.toml pipelines/activity.toml`
//! and the event generator, and shows a live summary of the first, measured
//! from the outside — Kafka's offsets, the consumer group's commits and the
//! `sessions` table — until Ctrl-C. Then it stops both processes cleanly and
//! says where to look at the results.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::stack::{self, Stack};

const EVENTS: &str = "ecommerce.events";
const AVRO: &str = "session_stats_avro";
const DEAD_LETTERS: &str = "demo.dlq";
// The second stock pipeline's outputs (pipelines/activity.toml): the
// dashboards' recency and revenue, which `sessions` cannot hold.
const ACTIVITY_AVRO: &str = "session_activity_avro";
const ACTIVITY_DEAD_LETTERS: &str = "activity.dlq";
const GROUP: &str = "weir-demo";
const PARTITIONS: i32 = 4;

/// How the demo runs.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Events per second from the generator.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Shoppers browsing at once.
    #[arg(long, default_value_t = 200)]
    pub sessions: usize,
    /// Stop by itself after this long (for example `2m`); default: at Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

/// Runs the demo until Ctrl-C, SIGTERM or `--duration`.
pub fn run(stack: &Stack, args: &DemoArgs) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    stack.up()?;
    let env = stack.env();
    let endpoint = |name: &str| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
            .expect("the stack names its endpoints")
    };
    let bootstrap = endpoint("WEIR_BOOTSTRAP");
    let database_url = endpoint("WEIR_DATABASE_URL");
    let registry_url = endpoint("WEIR_REGISTRY_URL");

    println!("==> building the stock plugins and weir (release)");
    let target = target_dir(stack);
    // The plugins go where the pipeline files look for them, wherever
    // CARGO_TARGET_DIR points.
    let plugins = stack.repo().join("plugins");
    let plugin_target = plugins.join("target");
    crate::toolchains::ensure_wasm_target()?;
    cargo(
        stack,
        &[
            "build",
            "--release",
            "--locked",
            "--target-dir",
            &plugin_target.display().to_string(),
        ],
        Some(&plugins),
    )?;
    cargo(
        stack,
        &["build", "--release", "--locked", "-p", "weir"],
        None,
    )?;
    let weir = target.join("release/weir");

    create_topic(&bootstrap, EVENTS, PARTITIONS)?;
    let logs = stack.repo().join(".weir/demo");
    std::fs::create_dir_all(&logs)?;
    // One seed for the catalog and the events, new each run: the catalog
    // written first is the one the events refer to, and session ids differ
    // from the last run's.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let seed = seed.to_string();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    println!("==> writing the shop's catalog (users, products) to PostgreSQL");
    let status = Command::new(&weir)
        .args([
            "generate",
            "--seed",
            &seed,
            "--count",
            "0",
            "--write-catalog",
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(log_file(&logs, "catalog.log")?)
        .status()?;
    if !status.success() {
        bail!(
            "writing the catalog failed; see {}",
            logs.join("catalog.log").display()
        );
    }

    println!(
        "==> starting weir run pipelines/demo.toml pipelines/activity.toml and the generator \
         ({} events/s)",
        args.rate
    );
    let admin_token = std::env::var("WEIR_ADMIN_TOKEN").unwrap_or_else(|_| "demo".to_owned());
    let mut pipeline = Command::new(&weir)
        .args(["run", "pipelines/demo.toml", "pipelines/activity.toml"])
        .current_dir(stack.repo())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("WEIR_LOG_FORMAT", "text")
        // The admin API's changes (hot swap) need a token: the demo's is `demo`.
        .env("WEIR_ADMIN_TOKEN", &admin_token)
        .stdout(Stdio::null())
        .stderr(log_file(&logs, "weir.log")?)
        .spawn()
        .context("cannot start weir run")?;
    println!("==> status page http://127.0.0.1:7878/ , metrics http://127.0.0.1:7878/metrics");
    println!(
        "==> admin API on http://127.0.0.1:7878 (token `{admin_token}`): try \
         `WEIR_ADMIN_TOKEN={admin_token} cargo run -q -p weir -- plugin list`"
    );
    let mut generator = Command::new(&weir)
        .args(["generate", "--seed", &seed, "--start", &now])
        .args([
            "--rate",
            &args.rate.to_string(),
            "--sessions",
            &args.sessions.to_string(),
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(log_file(&logs, "generate.log")?)
        .spawn()
        .context("cannot start weir generate")?;

    let watch = Watch::new(&bootstrap, &database_url)?;
    println!();
    println!("Live (Ctrl-C to stop); logs in {}:", logs.display());
    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let mut last: Option<(Instant, Sample)> = None;
    let mut failure = None;
    while !stop.load(Ordering::Relaxed)
        && args.duration.is_none_or(|limit| started.elapsed() < limit)
    {
        std::thread::sleep(Duration::from_secs(2));
        if let Some(status) = pipeline.try_wait()? {
            failure = Some(format!(
                "weir run exited ({status}); see {}",
                logs.join("weir.log").display()
            ));
            break;
        }
        if let Some(status) = generator.try_wait()? {
            failure = Some(format!(
                "the generator exited ({status}); see {}",
                logs.join("generate.log").display()
            ));
            break;
        }
        let sample = watch.sample();
        if let Some((at, previous)) = &last {
            let line = sample.line(previous, at.elapsed());
            if tty {
                print!("\r\x1b[2K{line}");
                std::io::stdout().flush()?;
            } else if started.elapsed().as_secs() % 10 < 2 {
                println!("{line}");
            }
        }
        last = Some((Instant::now(), sample));
    }
    println!();
    println!("==> stopping the generator, then weir (it finishes and commits what is in flight)");
    stop_child(&mut generator, Duration::from_secs(30))?;
    // Let weir catch up with the last events before it stops.
    let drain = Instant::now();
    while drain.elapsed() < Duration::from_secs(15) && watch.sample().lag.is_some_and(|lag| lag > 0)
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    let exit = stop_child(&mut pipeline, Duration::from_secs(60))?;
    let last = watch.sample();
    println!(
        "weir run exited with {exit}. Final: {} events in, {} sessions, conversion {}, {} dead letters, lag {}.",
        last.events,
        last.sessions.map_or("?".into(), |s| s.to_string()),
        last.conversion(),
        last.dead_letters,
        last.lag.map_or("?".into(), |l| l.to_string()),
    );
    println!();
    println!("Look at the results:");
    println!(
        "  psql {database_url} -c 'SELECT * FROM sessions ORDER BY \"EVENTS_COUNT\" DESC LIMIT 10'"
    );
    println!(
        "  psql {database_url} -c 'SELECT * FROM session_activity ORDER BY \"LAST_EVENT_AT\" DESC LIMIT 10'"
    );
    println!(
        "  topics: {EVENTS} (input, JSON), {AVRO} (Avro rows, schema subject {AVRO}-value at {registry_url}), {DEAD_LETTERS} (dead letters)"
    );
    println!(
        "          {ACTIVITY_AVRO} (Avro rows of session_activity, subject {ACTIVITY_AVRO}-value), {ACTIVITY_DEAD_LETTERS} (its dead letters)"
    );
    println!("  logs:   {}", logs.display());
    println!("The stack keeps running; stop it with `cargo xtask stack down`.");
    if let Some(failure) = failure {
        bail!(failure);
    }
    Ok(())
}

/// What the summary line shows, read from Kafka and PostgreSQL.
#[derive(Debug, Clone, Default)]
struct Sample {
    events: i64,
    rows: i64,
    dead_letters: i64,
    lag: Option<i64>,
    sessions: Option<i64>,
    converted: Option<i64>,
}

impl Sample {
    fn conversion(&self) -> String {
        match (self.sessions, self.converted) {
            (Some(sessions), Some(converted)) if sessions > 0 => {
                format!("{:.1}%", 100.0 * converted as f64 / sessions as f64)
            }
            _ => "?".into(),
        }
    }

    fn line(&self, previous: &Sample, elapsed: Duration) -> String {
        let seconds = elapsed.as_secs_f64().max(1e-3);
        format!(
            "in {:>6.0} ev/s | rows out {:>6.0}/s | sessions {:>7} | conversion {:>6} | lag {:>6} | dead letters {}",
            (self.events - previous.events) as f64 / seconds,
            (self.rows - previous.rows) as f64 / seconds,
            self.sessions.map_or("?".into(), |s| s.to_string()),
            self.conversion(),
            self.lag.map_or("?".into(), |l| l.to_string()),
            self.dead_letters,
        )
    }
}

/// Reads offsets and the `sessions` table.
struct Watch {
    consumer: BaseConsumer,
    database_url: String,
    psql: PathBuf,
}

impl Watch {
    fn new(bootstrap: &str, database_url: &str) -> Result<Self> {
        // A client of the demo's group that never subscribes only reads its commits.
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", GROUP)
            .create()?;
        Ok(Self {
            consumer,
            database_url: database_url.to_owned(),
            psql: stack::psql()?,
        })
    }

    fn sample(&self) -> Sample {
        let ends = |topic: &str| self.ends(topic).unwrap_or_default();
        let events = ends(EVENTS);
        let lag = self.committed(EVENTS, events.len()).map(|committed| {
            events
                .iter()
                .zip(committed)
                .map(|(end, done)| (end - done.unwrap_or(0)).max(0))
                .sum()
        });
        let (sessions, converted) = self.sessions().unzip();
        Sample {
            events: events.iter().sum(),
            rows: ends(AVRO).iter().sum(),
            dead_letters: ends(DEAD_LETTERS).iter().sum(),
            lag,
            sessions,
            converted,
        }
    }

    /// The end offset of each partition of `topic`.
    fn ends(&self, topic: &str) -> Option<Vec<i64>> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()?;
        let partitions = metadata.topics().first()?.partitions().len();
        (0..partitions as i32)
            .map(|p| {
                self.consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(5))
                    .ok()
                    .map(|(_, high)| high)
            })
            .collect()
    }

    /// The group's committed offset of each partition (`None`: nothing committed).
    fn committed(&self, topic: &str, partitions: usize) -> Option<Vec<Option<i64>>> {
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions as i32 {
            list.add_partition(topic, partition);
        }
        let committed = self
            .consumer
            .committed_offsets(list, Duration::from_secs(5))
            .ok()?;
        Some(
            (0..partitions as i32)
                .map(|p| match committed.find_partition(topic, p)?.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                })
                .collect(),
        )
    }

    /// Sessions, and those with a purchase.
    fn sessions(&self) -> Option<(i64, i64)> {
        let output = Command::new(&self.psql)
            .args(["--no-psqlrc", "-At", "-d", &self.database_url, "-c"])
            .arg("SELECT count(*) || ' ' || count(*) FILTER (WHERE \"PURCHASE_COUNT\" > 0) FROM sessions")
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        let mut numbers = text.split_whitespace().map(str::parse::<i64>);
        Some((numbers.next()?.ok()?, numbers.next()?.ok()?))
    }
}

fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let results = futures::executor::block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
    ))?;
    for result in results {
        match result {
            Ok(_) => println!("==> created topic {topic} ({partitions} partitions)"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("cannot create topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// SIGTERM, then wait up to `grace`, then SIGKILL. Returns how it ended.
fn stop_child(child: &mut Child, grace: Duration) -> Result<String> {
    if let Some(status) = child.try_wait()? {
        return Ok(status.to_string());
    }
    let pid = Pid::from_raw(i32::try_from(child.id())?);
    // Ctrl-C in a terminal reaches the children too; a second signal would force them.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(300) {
        if let Some(status) = child.try_wait()? {
            return Ok(status.to_string());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if child.try_wait()?.is_none() {
        let _ = kill(pid, Signal::SIGTERM);
    }
    while started.elapsed() < grace {
        if let Some(status) = child.try_wait()? {
            return Ok(status.to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill()?;
    Ok(format!("{} (killed after {grace:?})", child.wait()?))
}

fn log_file(dir: &Path, name: &str) -> Result<File> {
    File::create(dir.join(name))
        .with_context(|| format!("cannot create {}", dir.join(name).display()))
}

fn target_dir(stack: &Stack) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| stack.repo().join("target"))
}

fn cargo(stack: &Stack, args: &[&str], dir: Option<&Path>) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(args).current_dir(dir.unwrap_or(stack.repo()));
    let status = command.status()?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
