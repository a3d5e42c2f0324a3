//! What the plugin is given: its name, its configuration (`--config`) and
//! its lookup tables (`--lookup`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

use super::args::TestArgs;
use crate::plugin::{LookupTables, StageContext};

/// The stage context the plugin runs in: the test's stage, the plugin's
/// configuration and lookup tables.
pub(super) fn stage_context(args: &TestArgs, name: &str) -> anyhow::Result<Arc<StageContext>> {
    Ok(Arc::new(StageContext {
        config_json: config_json(args.config.as_deref())?,
        lookups: Arc::new(lookups(&args.lookups)?),
        capabilities: args.capabilities.iter().copied().collect(),
        ..StageContext::new("test", name)
    }))
}

/// The plugin's name: its file name without `.wasm`.
pub(in crate::authoring) fn plugin_name(path: &Path) -> String {
    path.file_stem().map_or_else(
        || "plugin".to_owned(),
        |stem| stem.to_string_lossy().into_owned(),
    )
}

/// `--config`: JSON text or `@FILE`, which must be a JSON object.
pub(in crate::authoring) fn config_json(config: Option<&str>) -> anyhow::Result<String> {
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
