//! Write weir plugins in Rust.
//!
//! A plugin is a type implementing one of three traits, exported with one
//! macro; the SDK hides the WIT plumbing (batches, state bytes, statics):
//!
//! - [`Filter`] + [`export_filter!`]: keep, drop or reject each record;
//! - [`Transform`] + [`export_transform!`]: each record becomes zero or more;
//! - [`Aggregator`] + [`export_aggregator!`]: fold a key's events into its
//!   state (a serde type the SDK stores as JSON, so a newer plugin's state
//!   stays readable by an older one) and describe the output row.
//!
//! ```ignore
//! struct KeepPurchases;
//! impl weir_plugin_sdk::Filter for KeepPurchases {
//!     fn new(_config: &Config) -> Result<Self, PluginError> { Ok(Self) }
//!     fn filter(&self, record: &Record<'_>) -> Decision {
//!         if record.value.windows(10).any(|w| w == b"\"purchase\"") { Decision::Keep } else { Decision::Drop }
//!     }
//! }
//! weir_plugin_sdk::export_filter!(KeepPurchases);
//! ```
//!
//! # Layout
//!
//! - [`bindings`]: the generated WIT bindings, one module per world.
//! - [`host`]: the host's imports (logging, lookup tables, metrics) as plain functions.
//! - [`batch`]: records borrowed from a batch, building batches, emitting records.
//! - this file: the plugin traits and [`Config`]; `glue` is what the export macros call.

#![deny(missing_docs)]

pub mod batch;
pub mod bindings;
pub mod host;

#[doc(hidden)]
pub mod glue;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use batch::{BatchBuilder, Emitter, Record};
pub use bindings::filtering::Decision;
pub use bindings::types::{Batch, PluginError, Value};

/// The stage's configuration from the pipeline file.
#[derive(Debug, Clone)]
pub struct Config {
    json: serde_json::Value,
}

impl Config {
    /// Reads the configuration the host holds for this stage.
    pub fn from_host() -> Result<Self, PluginError> {
        let text = bindings::filter_world::weir::plugin::config::get();
        Self::from_json(&text)
    }

    /// A configuration from JSON text (tests use this).
    pub fn from_json(text: &str) -> Result<Self, PluginError> {
        let json = serde_json::from_str(text).map_err(|error| {
            plugin_error("bad-config", format!("configuration is not JSON: {error}"))
        })?;
        Ok(Self { json })
    }

    /// The configuration as a typed value; the error names what does not fit.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        T::deserialize(&self.json)
            .map_err(|error| plugin_error("bad-config", format!("invalid configuration: {error}")))
    }

    /// The raw JSON value.
    pub fn json(&self) -> &serde_json::Value {
        &self.json
    }
}

/// Builds a [`PluginError`].
pub fn plugin_error(code: &str, message: impl Into<String>) -> PluginError {
    PluginError {
        code: code.to_owned(),
        message: message.into(),
    }
}

/// A filter: one decision per record.
pub trait Filter: Sized + Send + Sync + 'static {
    /// Builds the plugin from its configuration (called once per instance).
    fn new(config: &Config) -> Result<Self, PluginError>;
    /// Keep, drop or reject `record`.
    fn filter(&self, record: &Record<'_>) -> Decision;
}

/// A transform: each record becomes zero or more records.
pub trait Transform: Sized + Send + Sync + 'static {
    /// Builds the plugin from its configuration (called once per instance).
    fn new(config: &Config) -> Result<Self, PluginError>;
    /// Emits what `record` becomes (zero or more records) into `out`, or
    /// says why it is bad data (anything it emitted is then discarded).
    fn transform(&self, record: &Record<'_>, out: &mut Emitter) -> Result<(), PluginError>;
}

/// A keyed aggregator whose state the host keeps.
pub trait Aggregator: Sized + Send + Sync + 'static {
    /// The per-key state, stored by the SDK as JSON: unknown fields are
    /// ignored and missing ones take their default, so versions can evolve.
    type State: Serialize + DeserializeOwned + Default;
    /// The version of [`Self::State`]'s encoding; bump it when a migration is needed.
    const STATE_VERSION: u32;
    /// The output row's Avro schema (a record) as JSON text.
    const OUTPUT_SCHEMA: &'static str;

    /// Builds the plugin from its configuration (called once per instance).
    fn new(config: &Config) -> Result<Self, PluginError>;
    /// Folds one event into the key's state. An error rejects the event (it
    /// goes to the dead-letter topic); it must leave the state untouched, so
    /// check the event before changing anything.
    fn apply(&self, state: &mut Self::State, event: &Record<'_>) -> Result<(), PluginError>;
    /// The output row for `key`, one value per output-schema field.
    fn row(&self, key: &[u8], state: &Self::State) -> Vec<Value>;
    /// Converts state written by an older (or newer) `from_version`.
    fn migrate(from_version: u32, state: &[u8]) -> Result<Self::State, PluginError> {
        let _ = state;
        Err(plugin_error(
            "unsupported-state-version",
            format!(
                "cannot read state version {from_version}; this plugin writes version {}",
                Self::STATE_VERSION
            ),
        ))
    }
}
