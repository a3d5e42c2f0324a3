//! `weir-bench rekey`: what keying the demo's aggregation by its
//! `session_id` field costs when the input is already keyed by it (the
//! generator's is), side by side on the same pre-produced input:
//!
//! - **read directly**: `pipelines/demo.toml`, the aggregator keyed by the
//!   record key, in one hop;
//! - **re-keyed**: the same with `key_field = "session_id"`: two hops
//!   through the repartition topic, every record written to Kafka and read
//!   back once more.
//!
//! Each is `weir run` as its own process, timed from its first commit to
//! the commit of the input's last record by the hop that aggregates (for
//! the re-keyed pipeline, the second hop's group on the repartition topic:
//! the generator's events all pass the filter, so it holds as many), with
//! its CPU time and peak memory over the same span. The two take turns
//! going first, `--runs` times each; both tables are compared row for row.

use std::process::Child;

use anyhow::{Result, bail};
use weir_tests::Stack;
use weir_tests::pipeline::{Names, create_topic, demo_pipeline, replace_setting, terminate};

use crate::race::{Figures, clock_ticks, differences, measure, median, show};

/// Options of `weir-bench rekey`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events pre-produced.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Live sessions in the generated stream.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Runs of each, taking turns.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Runs both in turn and prints each run and the medians.
pub fn run(args: &Args) -> Result<()> {
    let stack = Stack::from_env();
    let tokio = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(weir_tests::unique("weir-bench-rekey"));
    std::fs::create_dir_all(&dir)?;
    let ticks = clock_ticks()?;
    let tag = crate::race::tag("rekey");
    let input = Names::fresh(&tag);
    tokio.block_on(create_topic(&stack, &input.events, args.partitions))?;
    println!(
        "weir-bench rekey: {} events, {} partitions, {} live sessions, {} runs each",
        args.events, args.partitions, args.sessions, args.runs
    );
    crate::pipeline::produce(&stack, &input.events, args.events, args.sessions)?;
    let (mut direct, mut rekeyed) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let direct_first = run % 2 == 0;
        let mut tables = Vec::new();
        for rekey in [!direct_first, direct_first] {
            let mut names = Names::fresh(&format!("{tag}-{}{run}", if rekey { "r" } else { "d" }));
            names.events.clone_from(&input.events);
            let figures = weir_run(&stack, &dir, &names, rekey, args.events, ticks)?;
            let label = if rekey {
                "re-keyed       "
            } else {
                "read directly  "
            };
            println!("  run {}: {label} {}", run + 1, show(&figures));
            if rekey { &mut rekeyed } else { &mut direct }.push(figures);
            tables.push(names.table);
        }
        let differing = tokio.block_on(differences(&stack, &tables[0], &tables[1]))?;
        if differing > 0 {
            bail!("the two pipelines' tables differ in {differing} rows");
        }
    }
    let rate = |figures: &[Figures]| {
        median(
            &mut figures
                .iter()
                .map(|f| f.events_per_second)
                .collect::<Vec<_>>(),
        )
    };
    let cpu = |figures: &[Figures]| {
        median(
            &mut figures
                .iter()
                .map(|f| f.cpu_per_million)
                .collect::<Vec<_>>(),
        )
    };
    println!(
        "medians: read directly {:.0} events/s, {:.1} CPU s per million events; \
         re-keyed {:.0} events/s, {:.1} CPU s per million events: \
         {:.2}x the rate, {:.2}x the CPU per event",
        rate(&direct),
        cpu(&direct),
        rate(&rekeyed),
        cpu(&rekeyed),
        rate(&rekeyed) / rate(&direct),
        cpu(&rekeyed) / cpu(&direct),
    );
    std::fs::remove_dir_all(&dir)?;
    crate::race::delete_tagged(&stack, &tag)
}

/// `weir run` of the demo pipeline with `names`, re-keyed or not, until it
/// has aggregated every event; its figures.
fn weir_run(
    stack: &Stack,
    dir: &std::path::Path,
    names: &Names,
    rekey: bool,
    events: u64,
    ticks: f64,
) -> Result<Figures> {
    let pipeline = demo_pipeline(dir, names, "")?;
    let (group, topic) = if rekey {
        replace_setting(
            &pipeline,
            "idle_timeout = \"30m\"",
            "idle_timeout = \"30m\"\nkey_field = \"session_id\"",
        )?;
        let group = format!("{}.session-stats", names.group());
        let topic = format!("{group}.repartition");
        (group, topic)
    } else {
        (names.group(), names.events.clone())
    };
    let mut child = spawn(stack, dir, &pipeline, &names.pipeline)?;
    let result = measure(stack, &mut child, &group, &topic, events, ticks);
    let stopped = terminate(&mut child);
    let figures = result?;
    stopped?;
    Ok(figures)
}

/// `weir run PIPELINE`, this build's, as its own process.
pub(crate) fn spawn(
    stack: &Stack,
    dir: &std::path::Path,
    pipeline: &std::path::Path,
    log: &str,
) -> Result<Child> {
    let program = std::env::current_exe()?.with_file_name("weir");
    if !program.is_file() {
        bail!(
            "{} is missing: `cargo build --release -p weir`",
            program.display()
        );
    }
    crate::race::start(
        &program,
        "run",
        pipeline,
        stack,
        &dir.join(format!("{log}.log")),
    )
}
