//! Pipeline files (`pipelines/*.toml`), from text to a plan the engine
//! runs: what a file says ([`config`]), checking what it means without side
//! effects ([`validate`], every problem at once, [`error`]), the names that
//! must be valid identifiers ([`names`]), the checked result ([`plan`]),
//! what only the plugins can tell ([`plugins`]), and the two hops of a
//! pipeline re-keyed through Kafka ([`hops`]). The schema is
//! documented in `docs/pipelines.md`.

pub mod config;
pub mod error;
pub mod hops;
pub mod names;
pub mod plan;
pub mod plugins;
pub mod validate;

pub use config::{Format, PipelineConfig};
pub use error::{PipelineError, PipelineErrors};
pub use hops::{Hop, Repartition};
pub use names::{ColumnName, Name, NameError, TableName, TopicName};
pub use plan::{
    BatchPlan, DEFAULT_MAX_KEYS, FileSinkPlan, KafkaSinkPlan, LookupFrom, LookupPlan, PipelinePlan,
    PostgresSinkPlan, SinksPlan, SourcePlan, StagePlan,
};
pub use plugins::{PluginCheckError, ShapeError, StageLoadError, check_plugins, check_shape};
pub use validate::{check, load};
