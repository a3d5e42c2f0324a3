//! `weir-bench race`: weir against Kafka Streams and against the machine's
//! limit, on the same pre-produced input, one after another, each until all
//! its output is durable.
//!
//! - **plain consume**: a consumer that touches every value (the limit);
//! - **weir (Wasm)**: `weir run` of the demo pipeline as its own process
//!   (three Wasm stages, Avro to Kafka and upserts to PostgreSQL);
//! - **weir (native)**: the same, with the three plugins' Rust code compiled
//!   into the process instead of run in Wasm (`weir-bench weir-native`);
//! - **weir (Wasm), aggregation only**: `weir run` of `session-stats` alone
//!   with the Kafka sink alone: the same work as the peer's;
//! - **Kafka Streams**: the peer in `bench/peers/kafka-streams` (the
//!   `session_stats` aggregation alone, JSON rows to Kafka, exactly-once).
//!
//! Each contestant is timed from its first committed offset to the commit of
//! the input's last one (both commit only what their outputs hold), and its
//! process's CPU time and peak resident memory are read from `/proc` over the
//! same span. After each throughput run, the contestant runs again on an
//! input of its own fed at half the rate it reached, and its p99 freshness
//! is measured on its output topic (`freshness.rs`). Every contestant runs
//! `--runs` times (the native and Wasm demo pipelines taking turns going
//! first); the table shows the median and the spread, and each median as a
//! ratio to weir's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use apache_avro::types::Value as Avro;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use weir_tests::Stack;
use weir_tests::avro::WireReader;
use weir_tests::pipeline::{Names, create_topic, demo_pipeline, terminate};

use crate::freshness::{Arrived, Freshness, OutputTail, RowVersion, produce_paced};

/// Options of `weir-bench race`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events pre-produced for every contestant.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Runs per contestant.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Live sessions in the generated stream.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// The Kafka Streams peer's jar (built with Maven when missing).
    #[arg(long)]
    peer_jar: Option<PathBuf>,
    /// How long each freshness measurement measures.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    freshness_for: Duration,
    /// How long each freshness measurement produces before it measures
    /// (the peer's JVM compiles its hot code in the first seconds).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    warm_up: Duration,
    /// Another `weir` binary (an earlier build) to race this build's
    /// against instead: only the aggregation-only pipeline runs, the two
    /// taking turns going first, and each pair's ratios are shown.
    #[arg(long)]
    baseline: Option<PathBuf>,
}

/// One contestant's figures for one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Figures {
    pub(crate) events_per_second: f64,
    /// CPU seconds of the contestant's process per million events.
    pub(crate) cpu_per_million: f64,
    /// Peak resident memory, MiB (`None`: measured in this process).
    pub(crate) peak_mib: Option<f64>,
    /// p99 freshness at half this run's rate (`None`: not measured).
    pub(crate) freshness_p99: Option<Duration>,
}

/// Runs the race and prints the table.
pub fn run(args: &Args) -> Result<()> {
    let stack = Stack::from_env();
    let tokio = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(weir_tests::unique("weir-bench-race"));
    std::fs::create_dir_all(&dir)?;
    // A race against a baseline binary has no peer.
    let jar = match (&args.peer_jar, &args.baseline) {
        (Some(jar), _) => Some(jar.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(build_peer()?),
    };
    let ticks = clock_ticks()?;
    println!(
        "weir-bench race: {} events, {} partitions, {} live sessions, {} runs each",
        args.events, args.partitions, args.sessions, args.runs
    );

    // Every topic and group of this race carries `tag`.
    let tag = tag("race");
    let names = Names::fresh(&tag);
    tokio.block_on(create_topic(&stack, &names.events, args.partitions))?;
    let produced = Instant::now();
    crate::pipeline::produce(&stack, &names.events, args.events, args.sessions)?;
    println!("  produced in {:.1?}", produced.elapsed());

    let race = Race {
        stack: &stack,
        dir: &dir,
        input: &names,
        tag: &tag,
        events: args.events,
        partitions: args.partitions,
        ticks,
        jar: jar.as_deref(),
        sessions: args.sessions,
        freshness: (args.warm_up, args.freshness_for),
        tokio: &tokio,
        baseline: args.baseline.as_deref(),
    };
    if race.baseline.is_some() {
        let outcome = baseline_pairs(&race, args.runs);
        std::fs::remove_dir_all(&dir)?;
        delete_tagged(&stack, &tag)?;
        return outcome;
    }
    let mut raw = Vec::new();
    let mut native = Vec::new();
    let mut weir = Vec::new();
    let mut alone = Vec::new();
    let mut streams = Vec::new();
    for run in 1..=args.runs {
        let figures = plain_consume(&stack, &names.events, args.events, ticks)?;
        println!("  run {run}: plain consume  {}", show(&figures));
        raw.push(figures);

        // The two demo pipelines take turns going first: each leaves
        // PostgreSQL work behind (its upserts' checkpoint, autovacuum) that
        // the one after it runs beside.
        let mut tables = (String::new(), String::new());
        let engines = if run % 2 == 1 {
            [Engine::Native, Engine::Wasm]
        } else {
            [Engine::Wasm, Engine::Native]
        };
        for engine in engines {
            let (figures, table) = weir_run(&race, run, engine)?;
            if engine == Engine::Native {
                println!("  run {run}: weir (native)  {}", show(&figures));
                native.push(figures);
                tables.0 = table;
            } else {
                println!("  run {run}: weir (Wasm)    {}", show(&figures));
                weir.push(figures);
                tables.1 = table;
            }
        }
        let (native_table, wasm_table) = tables;
        // Equal work: the native baseline's table is the Wasm run's, row for row.
        let differences = tokio.block_on(differences(&stack, &native_table, &wasm_table))?;
        if differences > 0 {
            bail!("weir (native) and weir (Wasm) differ in {differences} rows");
        }

        let (figures, _) = weir_run(&race, run, Engine::WasmAggregationOnly)?;
        println!(
            "  run {run}: weir (Wasm), aggregation only {}",
            show(&figures)
        );
        alone.push(figures);

        let figures = streams_run(&race, run)?;
        println!("  run {run}: Kafka Streams  {}", show(&figures));
        streams.push(figures);
    }

    let reference = summary(&weir);
    println!();
    println!(
        "{:<16} {:>22} {:>8} {:>24} {:>8} {:>16} {:>26} {:>8}",
        "",
        "events/s (spread)",
        "÷ weir",
        "CPU s / M events (spread)",
        "÷ weir",
        "peak MiB",
        "p99 freshness ms (spread)",
        "÷ weir"
    );
    let spread = |(m, lo, hi): (f64, f64, f64)| format!("{m:.0} ({lo:.0}–{hi:.0})");
    for (name, runs) in [
        ("plain consume", &raw),
        ("weir (native)", &native),
        ("weir (Wasm)", &weir),
        ("weir (Wasm) agg.", &alone),
        ("Kafka Streams", &streams),
    ] {
        let row = summary(runs);
        let freshness_ratio = match (row.freshness, reference.freshness) {
            (Some(row), Some(reference)) => format!("{:.2}x", row.0 / reference.0),
            _ => "-".to_owned(),
        };
        println!(
            "{name:<16} {:>9.0} ({:>6.0}–{:<6.0}) {:>7.2}x {:>10.1} ({:>5.1}–{:<5.1}) {:>7.2}x {:>16} {:>26} {:>8}",
            row.rate.0,
            row.rate.1,
            row.rate.2,
            row.rate.0 / reference.rate.0,
            row.cpu.0,
            row.cpu.1,
            row.cpu.2,
            row.cpu.0 / reference.cpu.0,
            row.peak.map_or_else(|| "-".to_owned(), spread),
            row.freshness.map_or_else(|| "-".to_owned(), spread),
            freshness_ratio,
        );
    }
    std::fs::remove_dir_all(&dir)?;
    // Every topic of the race (input, outputs, dead letters, changelogs, the
    // peer's internal topics) holds the race's tag.
    delete_tagged(&stack, &tag)
}

/// This build's `weir` against the `--baseline` binary on the
/// aggregation-only pipeline: `runs` pairs, taking turns going first; prints
/// each pair's ratios (this build ÷ baseline) and their medians.
fn baseline_pairs(race: &Race<'_>, runs: usize) -> Result<()> {
    let mut ratios = Vec::with_capacity(runs);
    for run in 1..=runs {
        let engines = if run % 2 == 1 {
            [Engine::Baseline, Engine::WasmAggregationOnly]
        } else {
            [Engine::WasmAggregationOnly, Engine::Baseline]
        };
        let mut pair = Vec::with_capacity(2);
        for engine in engines {
            let (figures, _) = weir_run(race, run, engine)?;
            let name = if engine == Engine::Baseline {
                "baseline  "
            } else {
                "this build"
            };
            println!("  run {run}: {name} {}", show(&figures));
            pair.push((engine, figures));
        }
        let of = |wanted: Engine| {
            pair.iter()
                .find_map(|(engine, figures)| (*engine == wanted).then_some(*figures))
                .expect("both ran")
        };
        let (old, new) = (of(Engine::Baseline), of(Engine::WasmAggregationOnly));
        let ratio = (
            new.events_per_second / old.events_per_second,
            new.cpu_per_million / old.cpu_per_million,
        );
        println!(
            "  run {run}: this build ÷ baseline: {:.3}x events/s, {:.3}x CPU s per million events",
            ratio.0, ratio.1
        );
        ratios.push(ratio);
    }
    println!();
    println!(
        "this build ÷ baseline, median of {runs} pairs: {:.3}x events/s, {:.3}x CPU s per million events",
        median(&mut ratios.iter().map(|r| r.0).collect::<Vec<_>>()),
        median(&mut ratios.iter().map(|r| r.1).collect::<Vec<_>>()),
    );
    Ok(())
}

/// The median of `values` (with an even number, the mean of the middle
/// two); `values` ends sorted.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

/// A benchmark run's tag: `prefix` and 8 hex digits, for names that stay
/// within weir's 64 characters.
pub fn tag(prefix: &str) -> String {
    format!("{prefix}{}", &weir_tests::unique("x")[2..10])
}

/// Deletes every topic whose name holds `tag`: a benchmark's input and
/// outputs are gigabytes, which would otherwise stay on the broker's disk.
pub fn delete_tagged(stack: &Stack, tag: &str) -> Result<()> {
    let topics: Vec<String> = topic_names(stack)?
        .into_iter()
        .filter(|topic| topic.contains(tag))
        .collect();
    if topics.is_empty() {
        return Ok(());
    }
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(crate::restore::delete_topics(stack, &topics))
}

/// The names of the broker's topics.
fn topic_names(stack: &Stack) -> Result<Vec<String>> {
    let consumer: BaseConsumer = stack.kafka_client().create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .map(|topic| topic.name().to_owned())
        .collect())
}

/// Median and spread of each figure over the runs.
struct Summary {
    rate: (f64, f64, f64),
    cpu: (f64, f64, f64),
    peak: Option<(f64, f64, f64)>,
    /// p99 freshness, ms.
    freshness: Option<(f64, f64, f64)>,
}

fn summary(runs: &[Figures]) -> Summary {
    let spread = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        (
            values[values.len() / 2],
            values[0],
            values[values.len() - 1],
        )
    };
    let peaks: Option<Vec<f64>> = runs.iter().map(|f| f.peak_mib).collect();
    let freshness: Option<Vec<f64>> = runs
        .iter()
        .map(|f| f.freshness_p99.map(|p99| p99.as_secs_f64() * 1e3))
        .collect();
    Summary {
        rate: spread(runs.iter().map(|f| f.events_per_second).collect()),
        cpu: spread(runs.iter().map(|f| f.cpu_per_million).collect()),
        peak: peaks.map(spread),
        freshness: freshness.map(spread),
    }
}

pub(crate) fn show(figures: &Figures) -> String {
    format!(
        "{:>9.0} events/s, {:>5.1} CPU s per million events, peak {}, p99 freshness {}",
        figures.events_per_second,
        figures.cpu_per_million,
        figures
            .peak_mib
            .map_or_else(|| "-".to_owned(), |mib| format!("{mib:.0} MiB")),
        figures.freshness_p99.map_or_else(
            || "-".to_owned(),
            |p99| format!("{:.0} ms", p99.as_secs_f64() * 1e3)
        ),
    )
}

/// The plain consumer, in this process: the limit.
fn plain_consume(stack: &Stack, topic: &str, events: u64, ticks: f64) -> Result<Figures> {
    let before = cpu_seconds(std::process::id(), ticks)?;
    let rate = crate::pipeline::consume_all(stack, topic, events)?;
    // The consumer's start-up (joining the group) is in the CPU time but not
    // in the rate's clock: small next to reading millions of records.
    let cpu = cpu_seconds(std::process::id(), ticks)? - before;
    Ok(Figures {
        events_per_second: rate,
        cpu_per_million: cpu / (events as f64 / 1e6),
        peak_mib: None,
        freshness_p99: None,
    })
}

/// What every contestant's run shares.
struct Race<'a> {
    stack: &'a Stack,
    /// Scratch folder (pipeline files, logs).
    dir: &'a Path,
    /// The pre-produced input.
    input: &'a Names,
    /// Carried by every topic and group of the race (`race` and 8 hex digits).
    tag: &'a str,
    events: u64,
    partitions: i32,
    /// Clock ticks per second.
    ticks: f64,
    /// The Kafka Streams peer (none when racing a baseline binary).
    jar: Option<&'a Path>,
    sessions: usize,
    /// Warm-up and measured span of a freshness measurement.
    freshness: (Duration, Duration),
    /// For the async clients (topics, the registry).
    tokio: &'a tokio::runtime::Runtime,
    /// The `weir` binary of [`Engine::Baseline`].
    baseline: Option<&'a Path>,
}

/// How the plugins run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Wasm,
    Native,
    /// `session-stats` alone, Kafka sink alone.
    WasmAggregationOnly,
    /// The same, run by the `--baseline` binary.
    Baseline,
}

impl Engine {
    /// For names (pipeline names are at most 64 characters).
    fn short(self) -> &'static str {
        match self {
            Self::Wasm => "w",
            Self::Native => "n",
            Self::WasmAggregationOnly => "a",
            Self::Baseline => "b",
        }
    }
}

/// `weir run` of the demo pipeline, as its own process; its figures and
/// the name of the table it wrote. Then its freshness at half the rate it
/// reached, on an input of its own.
fn weir_run(race: &Race<'_>, run: usize, engine: Engine) -> Result<(Figures, String)> {
    let Race {
        stack,
        input,
        tag,
        events,
        ticks,
        ..
    } = *race;
    // Fresh output names, the same input topic.
    let mut names = Names::fresh(&format!("{tag}-{}{run}", engine.short()));
    names.events.clone_from(&input.events);
    let mut child = spawn_weir(race, &names, engine, &format!("{engine:?}-{run}"))?;
    let result = measure(
        stack,
        &mut child,
        &names.group(),
        &names.events,
        events,
        ticks,
    );
    // A contestant that stopped by itself already failed its measurement.
    let stopped = terminate(&mut child);
    let mut figures = result?;
    stopped?;

    let fresh = Names::fresh(&format!("{tag}-{}{run}f", engine.short()));
    race.tokio
        .block_on(create_topic(stack, &fresh.events, race.partitions))?;
    race.tokio
        .block_on(create_topic(stack, &fresh.avro, race.partitions))?;
    let mut child = spawn_weir(race, &fresh, engine, &format!("{engine:?}-{run}-freshness"))?;
    let measured = freshness(
        race,
        &mut child,
        (&fresh.group(), &fresh.events, &fresh.avro),
        figures.events_per_second / 2.0,
        |arrived| avro_rows(race, arrived),
    );
    let stopped = terminate(&mut child);
    // A freshness input is a gigabyte or more: gone before the next run.
    delete_tagged(stack, &fresh.pipeline)?;
    delete_tagged(stack, &fresh.table)?;
    figures.freshness_p99 = Some(measured?.p99);
    stopped?;
    Ok((figures, names.table))
}

/// Starts `weir run` (or the native baseline) of `engine`'s pipeline with
/// `names`, logging to `<dir>/weir-<log>.log`.
fn spawn_weir(race: &Race<'_>, names: &Names, engine: Engine, log: &str) -> Result<Child> {
    let Race { stack, dir, .. } = *race;
    let pipeline = match engine {
        Engine::WasmAggregationOnly | Engine::Baseline => aggregation_only(dir, names)?,
        Engine::Wasm | Engine::Native => demo_pipeline(dir, names, "")?,
    };
    let bench = std::env::current_exe()?;
    let (program, command) = match engine {
        Engine::Wasm | Engine::WasmAggregationOnly => (bench.with_file_name("weir"), "run"),
        Engine::Native => (bench, "weir-native"),
        Engine::Baseline => (
            race.baseline.context("no --baseline binary")?.to_path_buf(),
            "run",
        ),
    };
    if !program.is_file() {
        bail!(
            "{} is missing: `cargo build --release -p weir`",
            program.display()
        );
    }
    start(
        &program,
        command,
        &pipeline,
        stack,
        &dir.join(format!("weir-{log}.log")),
    )
}

/// `PROGRAM COMMAND PIPELINE` (`weir run`, or the native baseline) as its
/// own process against `stack`, its admin API on a free port, logging to
/// `log`.
pub(crate) fn start(
    program: &Path,
    command: &str,
    pipeline: &Path,
    stack: &Stack,
    log: &Path,
) -> Result<Child> {
    let log = std::fs::File::create(log)?;
    Ok(Command::new(program)
        .arg(command)
        .arg(pipeline)
        .args(["--admin-addr", "127.0.0.1:0"])
        .env("WEIR_BOOTSTRAP", &stack.bootstrap)
        .env("WEIR_REGISTRY_URL", &stack.registry_url)
        .env("WEIR_DATABASE_URL", &stack.database_url)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

/// Freshness of a started contestant (`child`, consuming `input` as `group`
/// and writing `output`): once it has joined its group, events are produced
/// into `input` at `rate`, and its output topic is read as it is written;
/// `decode` finds each output row's `EVENTS_COUNT`. Done once the
/// contestant has committed every event.
fn freshness(
    race: &Race<'_>,
    child: &mut Child,
    (group, input, output): (&str, &str, &str),
    rate: f64,
    decode: impl FnOnce(Vec<Arrived>) -> Result<Vec<RowVersion>>,
) -> Result<Freshness> {
    let stack = race.stack;
    wait_for_members(stack, group, child)?;
    let tail = OutputTail::start(stack, output, race.partitions)?;
    let paced = produce_paced(stack, input, rate, race.sessions, race.freshness)?;
    crate::pipeline::time_commits(
        stack,
        group,
        input,
        paced.produced,
        || matches!(child.try_wait(), Ok(None)),
        || Ok(()),
    )?;
    let arrived = tail.finish()?;
    Freshness::of(&paced.sent, &decode(arrived)?)
}

/// Waits until `group` has members (the contestant has joined and been
/// given its partitions), for at most two minutes.
fn wait_for_members(stack: &Stack, group: &str, child: &mut Child) -> Result<()> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .create()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = client.fetch_group_list(Some(group), Duration::from_secs(5))?;
        if list
            .groups()
            .iter()
            .any(|g| g.state() == "Stable" && !g.members().is_empty())
        {
            return Ok(());
        }
        if !matches!(child.try_wait(), Ok(None)) {
            bail!("the contestant of group {group} stopped before joining it");
        }
        if Instant::now() > deadline {
            bail!("group {group} had no members after two minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// weir's output rows (Avro, Confluent wire format: the schema is fetched
/// from the registry by the id each value carries) as row versions.
fn avro_rows(race: &Race<'_>, arrived: Vec<Arrived>) -> Result<Vec<RowVersion>> {
    let mut reader = WireReader::default();
    arrived
        .into_iter()
        .map(|(key, value, at)| {
            let fields = race.tokio.block_on(reader.fields(race.stack, &value))?;
            let count = fields
                .into_iter()
                .find_map(|(name, value)| (name == "EVENTS_COUNT").then_some(value))
                .context("an output row without EVENTS_COUNT")?;
            let count = match count {
                Avro::Union(_, inner) => *inner,
                other => other,
            };
            let Avro::Long(count) = count else {
                bail!("EVENTS_COUNT is not a long: {count:?}");
            };
            Ok((key, count, at))
        })
        .collect()
}

/// The peer's output rows (JSON) as row versions.
fn json_rows(arrived: Vec<Arrived>) -> Result<Vec<RowVersion>> {
    arrived
        .into_iter()
        .map(|(key, value, at)| {
            let row: serde_json::Value = serde_json::from_slice(&value)?;
            let count = row["EVENTS_COUNT"]
                .as_i64()
                .context("a peer row without EVENTS_COUNT")?;
            Ok((key, count, at))
        })
        .collect()
}

/// A pipeline of `session-stats` alone writing Avro to Kafka alone: the
/// Kafka Streams peer's work (it writes JSON).
pub(crate) fn aggregation_only(dir: &Path, names: &Names) -> Result<PathBuf> {
    let plugins = std::env::var_os("WEIR_PLUGIN_DIR").map_or_else(
        || weir_tests::manifest_dir().join("../plugins/target/wasm32-wasip2/release"),
        PathBuf::from,
    );
    let text = format!(
        r#"name = "{pipeline}"

[source]
topic = "{events}"
format = "json"

[batch]
max_records = 512
max_wait = "50ms"
flush_interval = "1s"

[[stages]]
name = "session-stats"
plugin = "{plugin}"
idle_timeout = "30m"

[sinks.kafka]
topic = "{avro}"
"#,
        pipeline = names.pipeline,
        events = names.events,
        plugin = plugins.join("session_stats.wasm").display(),
        avro = names.avro,
    );
    let path = dir.join(format!("{}.toml", names.pipeline));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Rows of table `a` not in table `b`, and of `b` not in `a`.
pub(crate) async fn differences(stack: &Stack, a: &str, b: &str) -> Result<i64> {
    let pool = stack.pool(2).await?;
    let query = format!(
        "SELECT (SELECT count(*) FROM (TABLE \"{a}\" EXCEPT TABLE \"{b}\") AS x) \
              + (SELECT count(*) FROM (TABLE \"{b}\" EXCEPT TABLE \"{a}\") AS y)"
    );
    let (count,): (i64,) = sqlx::query_as(&query).fetch_one(&pool).await?;
    pool.close().await;
    Ok(count)
}

/// The Kafka Streams peer, as its own process; then its freshness at half
/// the rate it reached, on an input of its own.
fn streams_run(race: &Race<'_>, run: usize) -> Result<Figures> {
    let Race {
        stack,
        input,
        tag,
        ticks,
        ..
    } = *race;
    let input = input.events.as_str();
    let id = format!("{tag}-streams-{run}");
    let (mut child, _) = spawn_streams(race, input, &id)?;
    let result = measure(stack, &mut child, &id, input, race.events, ticks);
    let stopped = terminate(&mut child);
    std::fs::remove_dir_all(std::env::temp_dir().join(&id)).ok();
    let mut figures = result?;
    stopped?;

    let id = format!("{tag}-streams-{run}f");
    let input = format!("{id}.events");
    race.tokio
        .block_on(create_topic(stack, &input, race.partitions))?;
    let (mut child, output) = spawn_streams(race, &input, &id)?;
    let measured = freshness(
        race,
        &mut child,
        (&id, &input, &output),
        figures.events_per_second / 2.0,
        json_rows,
    );
    let stopped = terminate(&mut child);
    std::fs::remove_dir_all(std::env::temp_dir().join(&id)).ok();
    delete_tagged(stack, &id)?;
    figures.freshness_p99 = Some(measured?.p99);
    stopped?;
    Ok(figures)
}

/// Starts the peer as application `id` reading `input`; the process and
/// its output topic (`<id>.rows`, created here).
fn spawn_streams(race: &Race<'_>, input: &str, id: &str) -> Result<(Child, String)> {
    let stack = race.stack;
    let output = format!("{id}.rows");
    race.tokio
        .block_on(create_topic(stack, &output, race.partitions))?;
    let child = peer(
        race.jar.context("the race has no peer jar")?,
        stack,
        id,
        (input, &output),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .context("cannot start `java` for the Kafka Streams peer")?;
    Ok((child, output))
}

/// The Kafka Streams peer (`jar`) as application `id` on `stack`, reading
/// `input` and writing `output`, two stream threads, its state in a folder
/// named after `id` in the temporary folder: the command, to which a
/// caller adds a topology.
pub(crate) fn peer(jar: &Path, stack: &Stack, id: &str, (input, output): (&str, &str)) -> Command {
    let mut command = Command::new("java");
    command
        .arg("-jar")
        .arg(jar)
        .args(["--bootstrap", &stack.bootstrap])
        .args(["--input", input, "--output", output])
        .args(["--application-id", id, "--threads", "2"])
        .arg("--state-dir")
        .arg(std::env::temp_dir().join(id));
    command
}

/// Times `child` (consuming `topic` as `group`) from its first commit until
/// it has committed `events` records, with its CPU time over that span and
/// its peak memory.
pub(crate) fn measure(
    stack: &Stack,
    child: &mut Child,
    group: &str,
    topic: &str,
    events: u64,
    ticks: f64,
) -> Result<Figures> {
    let pid = child.id();
    let (seconds, counted, cpu_at_start) = crate::pipeline::time_commits(
        stack,
        group,
        topic,
        events,
        || matches!(child.try_wait(), Ok(None)),
        || cpu_seconds(pid, ticks),
    )?;
    let cpu = cpu_seconds(pid, ticks)? - cpu_at_start;
    let counted = counted as f64;
    Ok(Figures {
        events_per_second: counted / seconds,
        cpu_per_million: cpu / (counted / 1e6),
        peak_mib: Some(peak_mib(pid)?),
        freshness_p99: None,
    })
}

/// User and system CPU seconds of process `pid` so far (all its threads).
pub(crate) fn cpu_seconds(pid: u32, ticks: f64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces), from field 3.
    let after = stat.rsplit_once(')').context("a /proc stat line")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields[11].parse()?;
    let stime: f64 = fields[12].parse()?;
    Ok((utime + stime) / ticks)
}

/// Peak resident memory of process `pid`, MiB.
pub(crate) fn peak_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .context("VmHWM in /proc status")?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .context("a VmHWM value")?
        .parse()?;
    Ok(kib / 1024.0)
}

/// Clock ticks per second, the unit of `/proc/*/stat` times.
pub(crate) fn clock_ticks() -> Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

/// Builds the Kafka Streams peer's jar with Maven; returns its path.
pub(crate) fn build_peer() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/kafka-streams");
    let jar = root.join("target/streams-peer.jar");
    if jar.is_file() {
        return Ok(jar);
    }
    println!("  building the Kafka Streams peer (mvn package)");
    let status = Command::new("mvn")
        .args(["-q", "-B", "package", "-DskipTests"])
        .current_dir(&root)
        .status()
        .context("cannot run `mvn`")?;
    if !status.success() || !jar.is_file() {
        bail!("building {} failed ({status})", root.display());
    }
    Ok(jar)
}
