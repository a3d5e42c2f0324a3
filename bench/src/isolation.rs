//! `weir-bench isolation`: what a plugin that loops forever on every record
//! costs the other pipelines of the same `weir run`. The demo pipeline runs
//! over N pre-produced events alone, then again (a fresh consumer group
//! over the same events) beside a pipeline whose filter loops on each of
//! its records; the demo pipeline's throughput with the looping one beside
//! it is compared with its throughput alone, and the looping pipeline's
//! records must all be dead-lettered by the end.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use weir_tests::Stack;
use weir_tests::pipeline::{Names, Running, create_topic, demo_pipeline, plugin_dir, progress};

use crate::pipeline::{produce, time_commits};

/// Options of `weir-bench isolation`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events the demo pipeline processes in each run.
    #[arg(long, default_value_t = 3_000_000)]
    events: u64,
    /// Records of the looping pipeline (every one makes its plugin loop).
    #[arg(long, default_value_t = 20_000)]
    looping: u64,
    /// Partitions of each input topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Runs of each kind, alternating (alone, beside, alone, ...).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Runs the pairs and prints them.
pub fn run(args: &Args) -> Result<()> {
    let stack = Stack::from_env();
    let tokio = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(weir_tests::unique("weir-bench-isolation"));
    std::fs::create_dir_all(&dir)?;
    let tag = crate::race::tag("isolation");
    let input = Names::fresh(&tag);
    tokio.block_on(create_topic(&stack, &input.events, args.partitions))?;
    produce(&stack, &input.events, args.events, 1000)?;
    println!(
        "weir-bench isolation: the demo pipeline over {} events, alone and beside a pipeline \
         whose filter loops forever on each of its {} records ({} runs each)",
        args.events, args.looping, args.runs
    );
    let mut ratios = Vec::new();
    for run in 0..args.runs {
        // Alternating which goes first, so neither gains from the other's warm-up.
        let (mut alone, mut beside) = (0.0, 0.0);
        for looping in [run % 2 == 1, run % 2 == 0] {
            let label = format!("{}{run}", if looping { "b" } else { "a" });
            let rate = demo_run(&stack, &dir, &input, (&tag, &label), looping, args)?;
            *(if looping { &mut beside } else { &mut alone }) = rate;
        }
        let ratio = beside / alone;
        println!(
            "  run {}: alone {alone:>9.0} events/s, beside the looping pipeline {beside:>9.0} events/s: {:.2}",
            run + 1,
            ratio
        );
        ratios.push(ratio);
    }
    println!(
        "  median ratio (beside / alone): {:.2}",
        crate::race::median(&mut ratios)
    );
    std::fs::remove_dir_all(&dir)?;
    crate::race::delete_tagged(&stack, &tag)
}

/// The demo pipeline's throughput over `input`'s events under a fresh
/// group (`tag` and `label` name it), with a looping pipeline beside it
/// when `looping`.
fn demo_run(
    stack: &Stack,
    dir: &Path,
    input: &Names,
    (tag, label): (&str, &str),
    looping: bool,
    args: &Args,
) -> Result<f64> {
    let mut names = Names::fresh(&format!("{tag}{label}"));
    names.events.clone_from(&input.events);
    let demo = demo_pipeline(dir, &names, "")?;
    let mut files = vec![demo];
    let looping = if looping {
        let (file, names) = looping_pipeline(stack, dir, tag, label, args)?;
        files.push(file);
        Some(names)
    } else {
        None
    };
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let running = Running::start_all(stack, &paths)?;
    let started = Instant::now();
    let timed = time_commits(
        stack,
        &names.group(),
        &names.events,
        args.events,
        || running.is_running(),
        || Ok(()),
    );
    if let Some(names) = &looping {
        // The looping pipeline's records all end as dead letters: it caught up.
        let (committed, ends) = progress(stack, &names.group(), &names.events)?;
        let done: i64 = committed.iter().map(|c| c.unwrap_or(0)).sum();
        println!(
            "    the looping pipeline committed {done} of {} records in {:.0?} (each a dead letter)",
            ends.iter().sum::<i64>(),
            started.elapsed()
        );
    }
    running.stop()?;
    let (seconds, counted, ()) = timed?;
    Ok(counted as f64 / seconds)
}

/// A pipeline whose filter loops forever on every record of its own topic
/// (each holds `LOOP`), writing to a file: its file and names.
fn looping_pipeline(
    stack: &Stack,
    dir: &Path,
    tag: &str,
    label: &str,
    args: &Args,
) -> Result<(PathBuf, Names)> {
    let names = Names::fresh(&format!("{tag}loop{label}"));
    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(create_topic(stack, &names.events, args.partitions))?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &stack.bootstrap)
        .set("linger.ms", "20")
        .create()?;
    for index in 0..args.looping {
        let key = format!("loop-{}", index % 500);
        let value =
            format!(r#"{{"session_id": "{key}", "event_type": "page_view", "note": "LOOP"}}"#);
        producer
            .send(BaseRecord::to(&names.events).key(&key).payload(&value))
            .map_err(|(error, _)| error)?;
    }
    producer.flush(Duration::from_secs(60))?;
    let plugins = plugin_dir();
    let file = dir.join(format!("{}.toml", names.pipeline));
    std::fs::write(
        &file,
        format!(
            r#"name = "{pipeline}"

[source]
topic = "{topic}"

[[stages]]
name = "looping"
plugin = "{looping}"

[[stages]]
name = "session-stats"
plugin = "{stats}"

[sinks.file]
path = "{output}"
"#,
            pipeline = names.pipeline,
            topic = names.events,
            looping = plugins.join("looping_filter.wasm").display(),
            stats = plugins.join("session_stats.wasm").display(),
            output = dir.join(format!("{}.jsonl", names.pipeline)).display(),
        ),
    )?;
    ensure!(
        plugins.join("looping_filter.wasm").is_file(),
        "{} is missing: `cargo xtask test` builds the test plugins",
        plugins.join("looping_filter.wasm").display()
    );
    Ok((file, names))
}
