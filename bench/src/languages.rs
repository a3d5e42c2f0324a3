//! `weir-bench languages`: `session-stats` written in Rust, C, JavaScript
//! and Python, each through the Wasm runtime on the same event stream, side
//! by side in one run: events/s per batch size and the ratio to Rust; and
//! what each costs to load (component size, compile and instantiate time).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;
use weir::plugin::{LookupTables, Runtime, RuntimeOptions};

use crate::events;
use crate::plugins::{aggregate_time, default_plugin_dir, host_groups, worker};

/// Options of `weir-bench languages`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events per run.
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "64,512,4096")]
    batches: Vec<usize>,
    /// Runs per figure; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Live sessions interleaved in the stream (keys per batch).
    #[arg(long, default_value_t = 50)]
    sessions: usize,
    /// Where the compiled plugins are (default: the plugins workspace's release folder).
    #[arg(long, env = "WEIR_PLUGIN_DIR")]
    plugin_dir: Option<PathBuf>,
}

/// The language and the component of its `session-stats`.
const PLUGINS: [(&str, &str); 4] = [
    ("Rust", "session_stats"),
    ("C", "session_stats_c"),
    ("JavaScript", "session_stats_js"),
    ("Python", "session_stats_py"),
];

pub fn run(args: &Args) -> Result<()> {
    let events = events::generate(args.events, args.sessions, 42);
    let dir = args.plugin_dir.clone().unwrap_or_else(default_plugin_dir);
    // No compiled-plugin cache: the compile time is part of what is shown.
    let runtime =
        Runtime::with_options(RuntimeOptions::default()).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    println!(
        "session-stats in each language: {} events, {} live sessions, median of {} runs, one thread",
        events.len(),
        args.sessions,
        args.runs
    );
    println!(
        "{:<11} {:>10} {:>11} {:>12}",
        "language", "component", "compile", "instantiate"
    );
    let mut workers = Vec::new();
    for (language, file) in PLUGINS {
        let path = dir.join(format!("{file}.wasm"));
        let size = std::fs::metadata(&path)
            .with_context(|| {
                format!(
                    "{} is missing: `cargo xtask test` builds it",
                    path.display()
                )
            })?
            .len();
        let started = Instant::now();
        let plugin = runtime.load_file(file, &path)?;
        let compiled = started.elapsed();
        let started = Instant::now();
        let worker = worker(&plugin, json!({}), LookupTables::default())?;
        let instantiated = started.elapsed();
        println!(
            "{language:<11} {:>8.2} MB {:>9.2} s {:>9.1} ms",
            size as f64 / 1e6,
            compiled.as_secs_f64(),
            instantiated.as_secs_f64() * 1e3
        );
        workers.push((language, Arc::clone(&plugin), worker));
    }
    println!();
    println!(
        "{:<11} {:>6} {:>12} {:>11} {:>9}",
        "language", "batch", "events/s", "ns/event", "÷ Rust"
    );
    for &size in &args.batches {
        let grouped: Vec<_> = events.chunks(size).map(host_groups).collect();
        let mut rust = None;
        for (language, _, worker) in &mut workers {
            let time = aggregate_time(worker, &grouped, args.runs);
            let rust_time = *rust.get_or_insert(time);
            println!(
                "{language:<11} {size:>6} {:>12.0} {:>11.0} {:>9.1}",
                events.len() as f64 / time.as_secs_f64(),
                time.as_nanos() as f64 / events.len() as f64,
                time.as_secs_f64() / rust_time.as_secs_f64()
            );
        }
    }
    Ok(())
}
