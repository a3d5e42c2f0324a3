//! What a run reports: the output, states and dead letters written where
//! asked, a summary and the first dead letters printed to standard error,
//! and the output compared with `--expect`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use super::args::TestArgs;
use super::json::dead_letter_json;
use super::run::Summary;
use super::runner::Output;
use crate::plugin::{Plugin, PluginKind};
use crate::sink::DeadLetter;

/// How many dead letters are printed (all go to `--dead-letters`).
const SHOWN_DEAD_LETTERS: usize = 10;

/// Writes the output, an aggregator's states and the dead letters where
/// `args` asks.
pub(super) fn write(args: &TestArgs, output: &Output, dead: &[DeadLetter]) -> anyhow::Result<()> {
    // The output goes to standard output unless it is compared (then only where asked).
    match (&args.output, &args.expect) {
        (Some(path), _) => write_lines(path, &output.lines)?,
        (None, None) => write_lines(Path::new("-"), &output.lines)?,
        (None, Some(_)) => {}
    }
    if let (Some(path), Some(states)) = (&args.state, &output.states) {
        write_lines(path, states)?;
    }
    if let Some(path) = &args.dead_letters {
        let lines: Vec<String> = dead.iter().map(dead_letter_json).collect();
        write_lines(path, &lines)?;
    }
    Ok(())
}

/// Prints one line on the run: the plugin, its speed, its output and its
/// dead letters.
pub(super) fn print_summary(name: &str, plugin: &Plugin, summary: &Summary, elapsed: Duration) {
    eprintln!(
        "{name} ({}, weir:plugin@{}): {} records in {:.2} s ({:.0} records/s); {} {}; {} dead letters",
        plugin.kind.world(),
        plugin.contract_version,
        summary.records,
        elapsed.as_secs_f64(),
        summary.records as f64 / elapsed.as_secs_f64().max(1e-9),
        summary.outputs,
        match plugin.kind {
            PluginKind::Filter => "kept",
            PluginKind::Transform => "emitted",
            PluginKind::Aggregator => "keys",
        },
        summary.dead_letters.len(),
    );
}

/// Prints the first dead letters; `all_written` when `--dead-letters` has
/// them all.
pub(super) fn print_dead_letters(dead: &[DeadLetter], all_written: bool) {
    for letter in dead.iter().take(SHOWN_DEAD_LETTERS) {
        eprintln!(
            "  line {}: {} ({}): {}",
            letter.offset + 1,
            letter.kind.name(),
            letter.code,
            letter.reason
        );
    }
    if dead.len() > SHOWN_DEAD_LETTERS {
        eprintln!(
            "  ... and {} more{}",
            dead.len() - SHOWN_DEAD_LETTERS,
            if all_written {
                ""
            } else {
                " (all of them: --dead-letters FILE)"
            }
        );
    }
}

/// `--expect`: compares `lines` with the file; fails when they differ.
/// Returns how many lines differ (0 on success).
pub(super) fn expect(expected: &Path, lines: &[String]) -> anyhow::Result<usize> {
    let differences = compare(expected, lines)?;
    if differences > 0 {
        bail!(
            "the output differs from {} in {} lines",
            expected.display(),
            differences
        );
    }
    eprintln!("The output equals {}.", expected.display());
    Ok(differences)
}

/// Writes `lines` to `path`, or to standard output for `-`.
fn write_lines(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    if path == Path::new("-") {
        std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .context("cannot write to standard output")
    } else {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Compares `lines` with the file's lines; prints the differences (the
/// first few hunks of a unified diff) and returns how many lines differ.
fn compare(expected: &Path, lines: &[String]) -> anyhow::Result<usize> {
    let wanted = std::fs::read_to_string(expected)
        .with_context(|| format!("cannot read {}", expected.display()))?;
    let wanted: String = wanted
        .lines()
        .filter(|line| !line.trim().is_empty())
        .flat_map(|line| [line, "\n"])
        .collect();
    let got: String = lines
        .iter()
        .flat_map(|line| [line.as_str(), "\n"])
        .collect();
    let diff = similar::TextDiff::from_lines(&wanted, &got);
    let differences = diff
        .iter_all_changes()
        .filter(|change| change.tag() != similar::ChangeTag::Equal)
        .count();
    if differences > 0 {
        let shown = diff
            .unified_diff()
            .context_radius(1)
            .header(&expected.display().to_string(), "output")
            .to_string();
        let mut lines = shown.lines();
        for line in lines.by_ref().take(40) {
            eprintln!("  {line}");
        }
        if lines.next().is_some() {
            eprintln!("  ...");
        }
    }
    Ok(differences)
}
