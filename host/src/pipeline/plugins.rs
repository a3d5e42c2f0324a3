//! What only a pipeline's plugins can tell: each stage's world, and so
//! whether the stages come in an order weir can run.

use std::sync::Arc;

use super::plan::{PipelinePlan, StagePlan};
use crate::plugin::{LoadError, Plugin, PluginKind, Runtime};

/// The stages' order or settings do not fit their plugins' worlds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// An aggregator somewhere but last.
    #[error(
        "stage `{stage}` is an aggregator but not the last stage; \
         an aggregator's rows go to the sinks, so it must come last"
    )]
    AggregatorNotLast {
        /// The stage.
        stage: String,
    },
    /// A sink that writes rows of columns, after a stage that makes none.
    #[error(
        "the PostgreSQL sink writes rows of columns, which an aggregator makes; \
         the last stage `{stage}` is a {world} plugin, whose records have no columns \
         (write them to Kafka or to a file, or end the pipeline with an aggregator)"
    )]
    NoColumns {
        /// The last stage.
        stage: String,
        /// Its plugin's world.
        world: &'static str,
    },
    /// Aggregator settings on a stage that is not one.
    #[error(
        "stage `{stage}` sets `key_field`, `idle_timeout` or `max_keys`, \
         which only aggregators use; its plugin is a {world}"
    )]
    AggregatorSettings {
        /// The stage.
        stage: String,
        /// Its plugin's world.
        world: &'static str,
    },
}

/// A stage's plugin does not load: which stage, and why.
#[derive(Debug, thiserror::Error)]
#[error("stage `{stage}`: {source}")]
pub struct StageLoadError {
    /// The stage.
    pub stage: String,
    /// Why.
    pub source: LoadError,
}

impl StageLoadError {
    /// `stage`'s plugin failed to load with `source`.
    pub fn new(stage: impl Into<String>, source: LoadError) -> Self {
        Self {
            stage: stage.into(),
            source,
        }
    }
}

/// Why `weir validate` found a pipeline's plugins unfit.
#[derive(Debug, thiserror::Error)]
pub enum PluginCheckError {
    /// The Wasm engine would not start (a bug or a broken machine).
    #[error("cannot start the Wasm engine: {0}")]
    Engine(String),
    /// A stage's plugin does not load.
    #[error(transparent)]
    Load(#[from] StageLoadError),
    /// The stages' order does not fit.
    #[error(transparent)]
    Shape(#[from] ShapeError),
}

/// What `weir validate` checks beyond the file: each stage's plugin loads
/// (compiled in memory, nothing cached or written), and the stages are in
/// an order weir can run. Returns each stage's world.
pub fn check_plugins(plan: &PipelinePlan) -> Result<Vec<PluginKind>, PluginCheckError> {
    let runtime = Runtime::new().map_err(|error| PluginCheckError::Engine(format!("{error:#}")))?;
    let plugins = plan
        .stages
        .iter()
        .map(|stage| {
            runtime
                .load_file(&stage.name, &stage.plugin)
                .map_err(|source| StageLoadError::new(stage.name.to_string(), source))
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_shape(plan, &plugins)?;
    Ok(plugins.iter().map(|plugin| plugin.kind).collect())
}

/// Filters and transforms first, then at most one aggregator, last: the
/// sinks write the aggregator's rows, or, without one, the records the last
/// stage passes on (to Kafka and files: PostgreSQL needs columns). `plugins`
/// are the plan's stages' plugins, in order.
pub fn check_shape(plan: &PipelinePlan, plugins: &[Arc<Plugin>]) -> Result<(), ShapeError> {
    let last = plugins.len().saturating_sub(1);
    for (index, (stage, plugin)) in plan.stages.iter().zip(plugins).enumerate() {
        check_stage(stage, plugin.kind, index == last)?;
    }
    if let Some(plugin) = plugins.last()
        && plugin.kind != PluginKind::Aggregator
        && plan.sinks.postgres.is_some()
    {
        return Err(ShapeError::NoColumns {
            stage: (plan.last_stage().expect("a stage per plugin").name).to_string(),
            world: plugin.kind.world(),
        });
    }
    Ok(())
}

fn check_stage(stage: &StagePlan, kind: PluginKind, last: bool) -> Result<(), ShapeError> {
    let name = stage.name.to_string();
    if !last && kind == PluginKind::Aggregator {
        return Err(ShapeError::AggregatorNotLast { stage: name });
    }
    let aggregator_settings =
        stage.key_field.is_some() || stage.idle_timeout.is_some() || stage.max_keys.is_some();
    if kind != PluginKind::Aggregator && aggregator_settings {
        return Err(ShapeError::AggregatorSettings {
            stage: name,
            world: kind.world(),
        });
    }
    Ok(())
}
