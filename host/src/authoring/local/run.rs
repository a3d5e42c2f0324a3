//! The command: the plugin loaded, the input read into it in batches of a
//! pipeline's size, and what came out reported.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};

use super::args::TestArgs;
use super::context::{plugin_name, stage_context};
use super::report;
use super::runner::Runner;
use crate::plugin::{BatchBuilder, RecordRef, Runtime};
use crate::sink::DeadLetter;

/// What a test run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Input lines (records).
    pub records: usize,
    /// Output lines.
    pub outputs: usize,
    /// The input lines (counted from 1) that became dead letters, in order.
    pub dead_letters: Vec<i64>,
    /// Output lines that differ from `--expect` (0 when not asked).
    pub differences: usize,
}

/// Runs `weir plugin test`: prints a summary to standard error; fails when
/// the plugin cannot run or the output differs from `--expect`.
pub fn run(args: &TestArgs) -> anyhow::Result<Summary> {
    run_in(&crate::authoring::runtime()?, args)
}

/// [`run`] with plugins loaded into `runtime`.
pub fn run_in(runtime: &Runtime, args: &TestArgs) -> anyhow::Result<Summary> {
    let args = &args.resolve()?;
    let Some(input) = &args.input else {
        bail!("name the input records with --input FILE (one value per line)");
    };
    let name = plugin_name(&args.plugin);
    let plugin = runtime.load_file(&name, &args.plugin)?;
    let context = stage_context(args, &name)?;
    let input = Input::open(input)?;
    let started = Instant::now();
    let mut runner = Runner::new(&plugin, &context, args.key_field.clone())?;
    let mut dead = Vec::new();
    let records = feed(&mut runner, input, args.batch as usize, &mut dead)?;
    let elapsed = started.elapsed();
    dead.sort_by_key(|letter| letter.offset);
    let output = runner.finish();
    let mut summary = Summary {
        records,
        outputs: output.lines.len(),
        dead_letters: dead.iter().map(|letter| letter.offset + 1).collect(),
        differences: 0,
    };
    report::write(args, &output, &dead)?;
    report::print_summary(&name, &plugin, &summary, elapsed);
    report::print_dead_letters(&dead, args.dead_letters.is_some());
    if let Some(expected) = &args.expect {
        summary.differences = report::expect(expected, &output.lines)?;
    }
    Ok(summary)
}

/// The input records' file, open.
struct Input<'a> {
    file: File,
    /// Its path, for errors.
    path: &'a Path,
}

impl<'a> Input<'a> {
    fn open(path: &'a Path) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Self { file, path })
    }
}

/// The timestamp of the input's first line: 2026-01-01T00:00:00Z, in ms.
pub const FIRST_TIMESTAMP: i64 = 1_767_225_600_000;

/// Reads `input` into `runner`, `batch` records per call, skipping blank
/// lines; returns how many records it read. Each record's offset is its
/// line's index, so a dead letter names its line, and its timestamp
/// [`FIRST_TIMESTAMP`] plus that index in milliseconds, so a run repeats
/// byte for byte (a plugin not granted the real clock reads these times).
fn feed(
    runner: &mut Runner,
    input: Input<'_>,
    batch: usize,
    dead: &mut Vec<DeadLetter>,
) -> anyhow::Result<usize> {
    let mut builder = BatchBuilder::default();
    let mut records = 0;
    for (number, line) in BufReader::new(input.file).split(b'\n').enumerate() {
        let mut line = line.with_context(|| format!("cannot read {}", input.path.display()))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        records += 1;
        let offset = i64::try_from(number).unwrap_or(i64::MAX);
        builder.push(RecordRef {
            key: None,
            value: &line,
            timestamp: FIRST_TIMESTAMP.saturating_add(offset),
            partition: 0,
            offset,
        });
        if builder.len() == batch {
            runner.process(&std::mem::take(&mut builder).build(), dead);
        }
    }
    if !builder.is_empty() {
        runner.process(&builder.build(), dead);
    }
    Ok(records)
}
