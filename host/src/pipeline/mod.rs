//! Pipeline files (`pipelines/*.toml`): what they say ([`config`]) and
//! checking what they mean without side effects ([`validate`]). The
//! schema is documented in `docs/pipelines.md`.

pub mod config;
pub mod validate;

pub use config::PipelineConfig;
pub use validate::{Pipeline, PipelineError, PipelineErrors, check, load};
