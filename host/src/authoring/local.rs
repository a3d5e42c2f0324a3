//! `weir plugin test`: one plugin over a JSON Lines file, with no Kafka and
//! no database. Records go through the same code a pipeline runs (the host's
//! parse, the worker with its trap isolation, and for aggregators the chain
//! with host-owned keyed state), in batches of a pipeline's size. Output:
//!
//! - a filter: the values it kept, one per line;
//! - a transform: the values it emitted, one per line;
//! - an aggregator: each key's last row, `{"key": ..., "row": {...}}` with
//!   the columns in output-schema order, keys sorted; optionally each key's
//!   final state (`--state`).
//!
//! Dead letters are counted, the first few printed, all of them written with
//! `--dead-letters`. `--expect FILE` compares the output with a file, line
//! by line, which makes a plugin's own test one command.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::engine::chain::{Chain, Stage};
use crate::engine::state::KeyedState;
use crate::pipeline::config::Format;
use crate::plugin::{
    Batch, BatchBuilder, BatchExt, LookupTables, Plugin, PluginKind, RecordRef, Runtime,
    StageContext, Value, Verdict, Worker, read,
};
use crate::sink::RowSchema;
use crate::sink::{DeadLetter, PluginRef};

/// How many dead letters are printed (all go to `--dead-letters`).
const SHOWN_DEAD_LETTERS: usize = 10;

/// `weir plugin test`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// The plugin: a component (.wasm), or a plugin folder, which is built
    /// first and runs its own test (the `[test]` table of its `weir-plugin.toml`)
    /// unless told otherwise.
    #[arg(default_value = ".")]
    pub plugin: PathBuf,
    /// Input records, one value per line (`weir generate --output FILE` writes such files).
    #[arg(long, short)]
    pub input: Option<PathBuf>,
    /// The plugin's configuration: JSON text, or `@FILE` for a JSON file.
    #[arg(long)]
    pub config: Option<String>,
    /// The JSON field whose value keys an aggregator's state (the demo's events: `session_id`).
    #[arg(long)]
    pub key_field: Option<String>,
    /// A lookup table for the plugin: `NAME=FILE:KEY` (a JSON Lines file, keyed by column KEY).
    #[arg(long = "lookup", value_name = "NAME=FILE:KEY")]
    pub lookups: Vec<String>,
    /// Where the output goes (`-`: standard output; with `--expect`, nowhere unless given).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Aggregators: also write each key's final state to this file (JSON Lines).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Write every dead letter to this file (JSON Lines).
    #[arg(long)]
    pub dead_letters: Option<PathBuf>,
    /// Compare the output with this file, line by line; fail on any difference.
    #[arg(long)]
    pub expect: Option<PathBuf>,
    /// Records per plugin call, as in a pipeline's batches.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch: u32,
}

impl TestArgs {
    /// Arguments for `plugin` over `input`, everything else as by default.
    pub fn new(plugin: impl Into<PathBuf>, input: impl Into<PathBuf>) -> Self {
        Self {
            plugin: plugin.into(),
            input: Some(input.into()),
            config: None,
            key_field: None,
            lookups: Vec::new(),
            output: None,
            state: None,
            dead_letters: None,
            expect: None,
            batch: 512,
        }
    }

    /// For a plugin folder: builds it, and fills in what the command line
    /// left out from the folder's `[test]` table. A component is left as is.
    fn resolve(&self) -> anyhow::Result<Self> {
        if !self.plugin.is_dir() {
            return Ok(self.clone());
        }
        let dir = &self.plugin;
        let manifest = super::build::manifest(dir)?;
        let component = super::build::run(&super::build::BuildArgs {
            dir: dir.clone(),
            out: None,
            force: false,
        })?;
        let test = manifest.test.unwrap_or_default();
        let config = match (&self.config, &test.config) {
            (Some(config), _) => Some(config.clone()),
            (None, Some(table)) => Some(serde_json::to_string(table)?),
            (None, None) => None,
        };
        Ok(Self {
            plugin: component,
            input: self
                .input
                .clone()
                .or_else(|| test.input.map(|p| dir.join(p))),
            expect: self
                .expect
                .clone()
                .or_else(|| test.expect.map(|p| dir.join(p))),
            key_field: self.key_field.clone().or(test.key_field),
            config,
            ..self.clone()
        })
    }
}

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
    run_in(&super::runtime()?, args)
}

/// [`run`] with plugins loaded into `runtime`.
pub fn run_in(runtime: &Runtime, args: &TestArgs) -> anyhow::Result<Summary> {
    let args = &args.resolve()?;
    let Some(input) = &args.input else {
        bail!("name the input records with --input FILE (one value per line)");
    };
    let name = plugin_name(&args.plugin);
    let plugin = runtime.load_file(&name, &args.plugin)?;
    let context = Arc::new(StageContext {
        config_json: config_json(args.config.as_deref())?,
        lookups: Arc::new(lookups(&args.lookups)?),
        ..StageContext::new("test", name.clone())
    });
    let input_path = input;
    let input = std::fs::File::open(input_path)
        .with_context(|| format!("cannot read {}", input_path.display()))?;
    let started = Instant::now();
    let mut run = Run::new(&plugin, &context, args.key_field.clone())?;
    let mut summary = Summary::default();
    let mut builder = BatchBuilder::default();
    let timestamp = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(i64::MAX);
    let mut dead = Vec::new();
    for (number, line) in BufReader::new(input).split(b'\n').enumerate() {
        let mut line = line.with_context(|| format!("cannot read {}", input_path.display()))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        summary.records += 1;
        builder.push(RecordRef {
            key: None,
            value: &line,
            timestamp,
            partition: 0,
            offset: i64::try_from(number).unwrap_or(i64::MAX),
        });
        if builder.len() == args.batch as usize {
            run.process(&std::mem::take(&mut builder).build(), &mut dead)?;
        }
    }
    if !builder.is_empty() {
        run.process(&builder.build(), &mut dead)?;
    }
    let elapsed = started.elapsed();
    dead.sort_by_key(|letter| letter.offset);
    let output = run.finish();
    summary.outputs = output.lines.len();
    summary.dead_letters = dead.iter().map(|letter| letter.offset + 1).collect();

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
        dead.len(),
    );
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
            if args.dead_letters.is_some() {
                ""
            } else {
                " (all of them: --dead-letters FILE)"
            }
        );
    }
    if let Some(expected) = &args.expect {
        summary.differences = compare(expected, &output.lines)?;
        if summary.differences > 0 {
            bail!(
                "the output differs from {} in {} lines",
                expected.display(),
                summary.differences
            );
        }
        eprintln!("The output equals {}.", expected.display());
    }
    Ok(summary)
}

/// The plugin's name: its file name without `.wasm`.
pub(super) fn plugin_name(path: &Path) -> String {
    path.file_stem().map_or_else(
        || "plugin".to_owned(),
        |stem| stem.to_string_lossy().into_owned(),
    )
}

/// `--config`: JSON text or `@FILE`, which must be a JSON object.
pub(super) fn config_json(config: Option<&str>) -> anyhow::Result<String> {
    let Some(config) = config else {
        return Ok("{}".to_owned());
    };
    let text = match config.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("--config: cannot read {path}"))?,
        None => config.to_owned(),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .context("--config: not JSON (write a JSON object, or @FILE)")?;
    if !value.is_object() {
        bail!("--config: the configuration must be a JSON object, like {{\"key\": \"value\"}}");
    }
    Ok(value.to_string())
}

/// `--lookup NAME=FILE:KEY`, each loaded.
fn lookups(specs: &[String]) -> anyhow::Result<LookupTables> {
    let mut tables = LookupTables::default();
    for spec in specs {
        let parsed = spec
            .split_once('=')
            .and_then(|(name, rest)| Some((name, rest.rsplit_once(':')?)));
        let Some((name, (file, key))) =
            parsed.filter(|(n, (f, k))| ![n, f, k].iter().any(|p| p.is_empty()))
        else {
            bail!(
                "--lookup {spec}: write NAME=FILE:KEY, for example products=catalog.jsonl:product_id"
            );
        };
        let rows = crate::engine::lookups::file_table(name, Path::new(file), key)?;
        tables.insert(name, rows);
    }
    Ok(tables)
}

/// The plugin running over batches.
enum Run {
    /// A filter or transform, called directly.
    Stage {
        worker: Box<Worker>,
        kind: PluginKind,
        plugin: PluginRef,
        stage: String,
        lines: Vec<String>,
    },
    /// An aggregator, in a chain of its own with keyed state.
    Aggregator {
        chain: Box<Chain>,
        state: KeyedState,
        schema: Arc<RowSchema>,
        rows: BTreeMap<String, Vec<Value>>,
    },
}

/// What a run produced.
struct Output {
    lines: Vec<String>,
    states: Option<Vec<String>>,
}

impl Run {
    fn new(
        plugin: &Arc<Plugin>,
        context: &Arc<StageContext>,
        key_field: Option<String>,
    ) -> anyhow::Result<Self> {
        if plugin.kind != PluginKind::Aggregator {
            let worker = Worker::new(Arc::clone(plugin), Arc::clone(context))?;
            return Ok(Self::Stage {
                worker: Box::new(worker),
                kind: plugin.kind,
                plugin: PluginRef::of(plugin),
                stage: context.stage.clone(),
                lines: Vec::new(),
            });
        }
        if key_field.is_none() {
            bail!(
                "`{}` is an aggregator, which keeps state per key: name the JSON field that keys it with --key-field (for the demo's events: --key-field session_id)",
                plugin.name
            );
        }
        let (schema, state_version) = crate::engine::aggregator_schema(plugin, context)?;
        let stage = Stage::new(plugin, Arc::clone(context))?;
        let chain = Chain::new(
            Vec::new(),
            stage,
            key_field,
            Arc::clone(&schema),
            state_version,
            // Test input goes to the plugin as it is, checked by no source.
            Format::Bytes,
        );
        Ok(Self::Aggregator {
            chain: Box::new(chain),
            state: KeyedState::new(state_version),
            schema,
            rows: BTreeMap::new(),
        })
    }

    fn process(&mut self, batch: &Batch, dead: &mut Vec<DeadLetter>) -> anyhow::Result<()> {
        match self {
            Self::Stage {
                worker,
                kind,
                plugin,
                stage,
                lines,
            } => {
                let fields = read(batch, worker.reads());
                let fail = |index: usize, failure| {
                    DeadLetter::failed(batch.record(index), stage, plugin, failure)
                };
                if *kind == PluginKind::Filter {
                    for (index, verdict) in worker.filter(batch, &fields).into_iter().enumerate() {
                        match verdict {
                            Verdict::Keep => lines.push(text(batch.record(index).value)),
                            Verdict::Drop => {}
                            Verdict::Failed(failure) => dead.push(fail(index, failure)),
                        }
                    }
                } else {
                    for (index, result) in worker.transform(batch, &fields).into_iter().enumerate()
                    {
                        match result {
                            Ok(outputs) => {
                                lines.extend(outputs.iter().map(|output| text(&output.value)));
                            }
                            Err(failure) => dead.push(fail(index, failure)),
                        }
                    }
                }
            }
            Self::Aggregator {
                chain, state, rows, ..
            } => {
                chain.process(batch, state, dead);
                for (_, _, (key, row)) in state.take_changes().rows {
                    rows.insert(key, row);
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Output {
        match self {
            Self::Stage { lines, .. } => Output {
                lines,
                states: None,
            },
            Self::Aggregator {
                state,
                schema,
                rows,
                ..
            } => {
                let lines = rows
                    .iter()
                    .map(|(key, row)| {
                        format!(
                            "{{\"key\":{},\"row\":{}}}",
                            json_text(key),
                            row_json(&schema, row)
                        )
                    })
                    .collect();
                let mut states: Vec<(&[u8], String)> = state
                    .entries()
                    .map(|(_, key, held)| {
                        let state = match serde_json::from_slice::<serde_json::Value>(held.state) {
                            Ok(json) => format!("\"state\":{json}"),
                            Err(_) => format!("\"state_hex\":\"{}\"", hex(held.state)),
                        };
                        let line = format!(
                            "{{\"key\":{},\"version\":{},{state}}}",
                            json_text(&String::from_utf8_lossy(key)),
                            held.version
                        );
                        (key, line)
                    })
                    .collect();
                states.sort();
                Output {
                    lines,
                    states: Some(states.into_iter().map(|(_, line)| line).collect()),
                }
            }
        }
    }
}

/// A row as a JSON object, its columns in schema order.
pub fn row_json(schema: &RowSchema, row: &[Value]) -> String {
    let mut out = String::from("{");
    for (index, (column, value)) in schema.columns.iter().zip(row).enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&json_text(&column.name));
        out.push(':');
        match value {
            Value::Null => out.push_str("null"),
            Value::Boolean(flag) => out.push_str(if *flag { "true" } else { "false" }),
            Value::Long(number) => write!(out, "{number}").expect("writing to a String"),
            Value::Double(number) => out.push_str(
                &serde_json::to_string(number).expect("a double serialises (non-finite as null)"),
            ),
            Value::Text(text) => out.push_str(&json_text(text)),
            Value::Bytes(bytes) => write!(out, "\"{}\"", hex(bytes)).expect("writing to a String"),
        }
    }
    out.push('}');
    out
}

fn json_text(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            write!(out, "{b:02x}").expect("writing to a String");
            out
        })
}

/// A value as one line of text (invalid UTF-8 replaced).
fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

fn dead_letter_json(letter: &DeadLetter) -> String {
    serde_json::json!({
        "line": letter.offset + 1,
        "stage": letter.stage,
        "kind": letter.kind.name(),
        "code": letter.code,
        "reason": letter.reason,
        "value": String::from_utf8_lossy(&letter.value),
    })
    .to_string()
}

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
