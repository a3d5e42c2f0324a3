//! The runtime's errors. Loading errors name the plugin and what is wrong
//! with it; call failures keep the two kinds apart: a plugin *rejecting*
//! bad data (a value it returns) and a plugin *trapping* (it broke).

use std::path::PathBuf;

use super::bindings::types::PluginError;

/// A plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("plugin `{plugin}`: cannot read {}: {source}", path.display())]
    Read {
        /// The plugin's name.
        plugin: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly component wasmtime can compile.
    #[error("plugin `{plugin}` is not a valid WebAssembly component: {reason}")]
    Compile {
        /// The plugin's name.
        plugin: String,
        /// wasmtime's explanation.
        reason: String,
    },
    /// The component exports none (or several) of weir's worlds.
    #[error(
        "plugin `{plugin}` exports {found}; a weir plugin exports exactly one of \
         `weir:plugin/filtering`, `weir:plugin/transforming` or `weir:plugin/aggregating` \
         (build it against weir's WIT with world `filter`, `transform` or `aggregator`)"
    )]
    NoWorld {
        /// The plugin's name.
        plugin: String,
        /// What it does export.
        found: String,
    },
    /// The plugin was built against a contract version this host cannot run.
    #[error(
        "plugin `{plugin}` was built against weir:plugin@{found}; this weir runs \
         weir:plugin@{supported} and versions compatible with it. Rebuild the plugin \
         against weir:plugin@{supported}"
    )]
    IncompatibleVersion {
        /// The plugin's name.
        plugin: String,
        /// Its contract version.
        found: String,
        /// The host's.
        supported: String,
    },
    /// The stage expects a different world than the plugin exports.
    #[error("plugin `{plugin}` is a {found} plugin, but this stage needs a {expected} plugin")]
    WrongWorld {
        /// The plugin's name.
        plugin: String,
        /// What it is.
        found: &'static str,
        /// What was asked for.
        expected: &'static str,
    },
    /// The component imports something weir does not provide, or its exports
    /// do not match the contract.
    #[error("plugin `{plugin}` cannot be linked: {reason}")]
    Link {
        /// The plugin's name.
        plugin: String,
        /// wasmtime's explanation, naming the missing import or export.
        reason: String,
    },
    /// `init` refused the stage's configuration.
    #[error("plugin `{plugin}` refused its configuration ({}): {}", error.code, error.message)]
    Config {
        /// The plugin's name.
        plugin: String,
        /// The plugin's own error.
        error: PluginError,
    },
    /// Instantiating or initialising the plugin trapped.
    #[error("plugin `{plugin}` failed while starting: {reason}")]
    Start {
        /// The plugin's name.
        plugin: String,
        /// The trap.
        reason: String,
    },
}

/// Why one record (or one aggregator event) did not go through.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The plugin judged the data bad and said why.
    Rejected(PluginError),
    /// The plugin trapped on this record (panic, deadline, memory, fuel).
    Trapped(String),
    /// The plugin was not called for this record: its circuit is open, or
    /// the batch's time budget was spent ([`super::budget`]).
    Skipped {
        /// The dead letter's code (`circuit-open`, `budget-spent`).
        code: &'static str,
        /// Why, in words.
        reason: String,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rejected(error) => write!(f, "rejected ({}): {}", error.code, error.message),
            Self::Trapped(message) => write!(f, "trapped: {message}"),
            Self::Skipped { reason, .. } => write!(f, "{reason}"),
        }
    }
}

/// A plugin call trapped, or answered in a way that breaks the contract
/// (which counts as a trap): what happened, in words for the plugin's
/// author. The instance has been renewed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Trap(pub String);
