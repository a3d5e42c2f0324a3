//! `weir-plugin.toml`: what a plugin folder says it is, and its own test.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// A plugin folder's `weir-plugin.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name (the component is `<name>.wasm`).
    pub name: String,
    /// The language it is written in.
    pub language: Language,
    /// The world it is built for.
    pub world: World,
    /// JavaScript: the module file; Python: the module name. Rust: unused.
    pub entry: Option<String>,
    /// What `weir plugin test` runs in this folder when given no files.
    #[serde(default)]
    pub test: Option<TestManifest>,
}

/// The `[test]` table of `weir-plugin.toml`: the plugin's own test, paths
/// relative to the plugin's folder.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestManifest {
    /// Input records, one per line.
    pub input: Option<PathBuf>,
    /// The output expected.
    pub expect: Option<PathBuf>,
    /// The JSON field keying an aggregator's state.
    pub key_field: Option<String>,
    /// The plugin's configuration (a table).
    pub config: Option<toml::Table>,
}

/// The languages `weir plugin build` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Rust, with weir's Rust SDK (cargo).
    Rust,
    /// JavaScript, with weir's JavaScript SDK (esbuild and componentize-js, from npm).
    #[serde(alias = "js")]
    #[value(alias = "js")]
    Javascript,
    /// Python, with weir's Python SDK (componentize-py, from PyPI).
    #[serde(alias = "py")]
    #[value(alias = "py")]
    Python,
    /// C, with weir's C SDK (clang and wasi-libc, from Debian's packages).
    C,
}

/// The contract's worlds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum World {
    /// Keeps, drops or rejects records.
    Filter,
    /// Turns each record into zero or more records.
    Transform,
    /// Folds each key's events into host-held state.
    Aggregator,
}

impl World {
    /// The world's name in the contract.
    pub fn name(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Transform => "transform",
            Self::Aggregator => "aggregator",
        }
    }
}

/// Reads `<dir>/weir-plugin.toml`.
pub fn manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join("weir-plugin.toml");
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: a plugin folder says what it is there (`weir plugin new` writes one)",
            path.display()
        )
    })?;
    toml::from_str(&text)
        .with_context(|| format!("{} is not a valid plugin manifest", path.display()))
}

/// The manifest's `entry`, which `what` (the language's kind of entry) needs.
pub(super) fn entry<'a>(manifest: &'a Manifest, what: &str) -> anyhow::Result<&'a str> {
    manifest
        .entry
        .as_deref()
        .with_context(|| format!("weir-plugin.toml: `entry` must name the plugin's {what}"))
}
