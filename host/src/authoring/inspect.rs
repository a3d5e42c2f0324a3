//! `weir plugin inspect`: what a component is, as weir sees it — its world
//! and contract version, what it imports and exports, the fields it reads,
//! and for an aggregator its state version and output schema.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;

use crate::plugin::{CONTRACT_VERSION, Capability, PluginKind, StageContext, Worker};
use crate::sink::{ColumnType, RowSchema};

/// `weir plugin inspect`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// The component (.wasm).
    pub plugin: PathBuf,
    /// The configuration its `init` gets: JSON text, or `@FILE`.
    #[arg(long)]
    pub config: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `weir plugin inspect` reports.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The component file.
    pub file: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// `sha256:<hex>`: the version weir names it by.
    pub version: String,
    /// `filter`, `transform` or `aggregator`.
    pub world: &'static str,
    /// The contract version it was built against.
    pub contract: String,
    /// The contract version this weir runs.
    pub host_contract: &'static str,
    /// The fields it reads (its `reads`).
    pub reads: Vec<String>,
    /// An aggregator's state version.
    pub state_version: Option<u32>,
    /// An aggregator's output schema (Avro, as the plugin wrote it).
    pub output_schema: Option<serde_json::Value>,
    /// An aggregator's output columns: name, type, nullable.
    pub columns: Vec<(String, &'static str, bool)>,
    /// What it imports.
    pub imports: Vec<String>,
    /// The capabilities whose interfaces it imports (`clock`, `random`):
    /// what it reads there is replayable unless its stage grants them.
    pub capabilities: Vec<&'static str>,
    /// What it exports.
    pub exports: Vec<String>,
}

/// Loads and instantiates the plugin (calling `init`) and reports on it.
pub fn inspect(args: &InspectArgs) -> anyhow::Result<Report> {
    let runtime = super::runtime()?;
    let name = super::local::plugin_name(&args.plugin);
    let plugin = runtime.load_file(&name, &args.plugin)?;
    let context = Arc::new(StageContext {
        config_json: super::local::config_json(args.config.as_deref())?,
        ..StageContext::new("inspect", name.clone())
    });
    let mut worker = Worker::new(Arc::clone(&plugin), context)?;
    let (imports, exports) = plugin.interfaces();
    let mut report = Report {
        file: args.plugin.clone(),
        bytes: std::fs::metadata(&args.plugin)
            .with_context(|| format!("cannot read {}", args.plugin.display()))?
            .len(),
        version: format!("sha256:{}", plugin.sha256),
        world: plugin.kind.world(),
        contract: plugin.contract_version.to_string(),
        host_contract: CONTRACT_VERSION,
        reads: worker.reads().to_vec(),
        state_version: None,
        output_schema: None,
        columns: Vec::new(),
        capabilities: capabilities(&imports),
        imports,
        exports,
    };
    if plugin.kind == PluginKind::Aggregator {
        let fail = |what: &str, failure| anyhow::anyhow!("plugin `{name}`: {what} {failure}");
        report.state_version = Some(
            worker
                .state_version()
                .map_err(|f| fail("state-version", f))?,
        );
        let text = worker
            .output_schema()
            .map_err(|f| fail("output-schema", f))?;
        let schema = RowSchema::parse(&text).with_context(|| {
            format!("plugin `{name}` declares an output schema weir cannot use")
        })?;
        report.columns = schema
            .columns
            .iter()
            .map(|column| {
                let kind = match (column.kind, column.int32) {
                    (ColumnType::Boolean, _) => "boolean",
                    (ColumnType::Long, true) => "int",
                    (ColumnType::Long, false) => "long",
                    (ColumnType::Double, _) => "double",
                    (ColumnType::Text, _) => "string",
                    (ColumnType::Bytes, _) => "bytes",
                };
                (column.name.clone(), kind, column.nullable)
            })
            .collect();
        report.output_schema = serde_json::from_str(&text).ok();
    }
    Ok(report)
}

/// The capabilities whose WASI interfaces `imports` names.
fn capabilities(imports: &[String]) -> Vec<&'static str> {
    [Capability::Clock, Capability::Random]
        .into_iter()
        .filter(|capability| {
            imports.iter().any(|import| {
                let unversioned = import.split('@').next().unwrap_or(import);
                capability.interfaces().contains(&unversioned)
            })
        })
        .map(Capability::name)
        .collect()
}

/// Runs `weir plugin inspect`: prints the report.
pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let report = inspect(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let list = |items: &[String]| {
        if items.is_empty() {
            "(none)".to_owned()
        } else {
            items.join(", ")
        }
    };
    println!(
        "file       {} ({} bytes)",
        report.file.display(),
        report.bytes
    );
    println!("version    {}", report.version);
    println!("world      {}", report.world);
    println!(
        "contract   weir:plugin@{} (this weir runs {})",
        report.contract, report.host_contract
    );
    println!("reads      {}", list(&report.reads));
    if let Some(version) = report.state_version {
        println!("state      version {version}");
    }
    if let Some(schema) = &report.output_schema {
        let name = [schema.get("namespace"), schema.get("name")]
            .into_iter()
            .flatten()
            .filter_map(|part| part.as_str())
            .collect::<Vec<_>>()
            .join(".");
        println!("output     Avro record {name}");
        let width = report.columns.iter().map(|c| c.0.len()).max().unwrap_or(0);
        for (column, kind, nullable) in &report.columns {
            let null = if *nullable { ", nullable" } else { "" };
            println!("             {column:width$}  {kind}{null}");
        }
    }
    println!("imports    {}", list(&report.imports));
    if !report.capabilities.is_empty() {
        println!(
            "can read   {}: replayable values unless the stage grants `capabilities = [{}]`",
            report.capabilities.join(", "),
            report
                .capabilities
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("exports    {}", list(&report.exports));
    Ok(())
}
