//! What a swap or a rollback can fail with.

/// A swap refused or failed; the pipeline runs on as before.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// No such stage.
    #[error("pipeline `{pipeline}` has no stage `{stage}`; its stages: {stages}")]
    NoStage {
        /// The pipeline.
        pipeline: String,
        /// The stage asked for.
        stage: String,
        /// The stages it has.
        stages: String,
    },
    /// The new component cannot replace the stage's plugin.
    #[error("refused: {0}")]
    Refused(String),
    /// Nothing to roll back to.
    #[error("stage `{0}` has no earlier version to roll back to")]
    NoPrevious(String),
    /// A service the swap needs did not answer (the registry, PostgreSQL).
    #[error("cannot swap now: {0}")]
    Unavailable(String),
    /// The shards did not all take the new version.
    #[error("the swap did not complete: {0}")]
    Incomplete(String),
}
