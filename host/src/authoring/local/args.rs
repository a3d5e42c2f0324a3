//! `weir plugin test`'s arguments, and for a plugin folder what its
//! `[test]` table adds to them.

use std::path::PathBuf;

use crate::plugin::Capability;

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
    /// Grant the plugin the real clocks (`clock`) or random source
    /// (`random`), as a stage's `capabilities` does; without, it reads
    /// replayable ones and a run repeats byte for byte.
    #[arg(long = "capability", value_enum, value_name = "CAPABILITY")]
    pub capabilities: Vec<Capability>,
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
            capabilities: Vec::new(),
        }
    }

    /// For a plugin folder: builds it, and fills in what the command line
    /// left out from the folder's `[test]` table. A component is left as is.
    pub(super) fn resolve(&self) -> anyhow::Result<Self> {
        if !self.plugin.is_dir() {
            return Ok(self.clone());
        }
        let dir = &self.plugin;
        let manifest = crate::authoring::build::manifest(dir)?;
        let component = crate::authoring::build::run(&crate::authoring::build::BuildArgs {
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
