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
//! ```
//! use weir_plugin_sdk::{Config, Decision, PluginError, Record};
//!
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
pub mod json;

#[doc(hidden)]
pub mod glue;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use batch::{BatchBuilder, Emitter, Record};
pub use bindings::filtering::Decision;
pub use bindings::types::{Batch, Fields as BatchFields, PluginError, Value};
pub use json::{Field, Fields};

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
    /// The top-level JSON fields this filter reads: the host parses each
    /// record once and hands their values over ([`Record::fields`]). None
    /// by default: the filter reads [`Record::value`] itself.
    fn reads(&self) -> Vec<String> {
        Vec::new()
    }
    /// Keep, drop or reject `record`.
    fn filter(&self, record: &Record<'_>) -> Decision;
}

/// A transform: each record becomes zero or more records.
pub trait Transform: Sized + Send + Sync + 'static {
    /// Builds the plugin from its configuration (called once per instance).
    fn new(config: &Config) -> Result<Self, PluginError>;
    /// The top-level JSON fields this transform reads ([`Record::fields`]);
    /// none by default.
    fn reads(&self) -> Vec<String> {
        Vec::new()
    }
    /// Emits what `record` becomes (zero or more records) into `out`, or
    /// says why it is bad data (anything it emitted is then discarded).
    fn transform(&self, record: &Record<'_>, out: &mut Emitter) -> Result<(), PluginError>;
}

/// A keyed aggregator whose state the host keeps.
///
/// # State versions and rollbacks
///
/// The host stores each key's state bytes with the [`STATE_VERSION`] of the
/// plugin that wrote them. When a plugin gets state of another version (a
/// newer plugin was swapped in, or an older one swapped back), the host first
/// calls its [`migrate`] with that version.
///
/// Swaps go both ways, so state encodings follow one rule, **forward
/// compatibility**: a newer version's state is a JSON superset of an older
/// version's. A new version may add fields; it never renames, retypes or
/// changes the meaning of an existing one. An older plugin then reads a newer
/// plugin's state as it is (fields it does not know are ignored, missing ones
/// take their default), which is what [`migrate`] does by default for any
/// `from_version` above [`STATE_VERSION`]. The older plugin drops the fields
/// it does not know when it writes the state back, so the newer version's
/// [`migrate`] from the older version must rebuild them from the older fields
/// (`session-stats-v2` recomputes its `views_count` that way).
///
/// State of an *older* version needs an override of [`migrate`]; without
/// one it is refused with `unsupported-state-version`. An override handles
/// the versions it knows and hands the others to [`default_migrate`], which
/// keeps the rule above.
///
/// [`STATE_VERSION`]: Aggregator::STATE_VERSION
/// [`migrate`]: Aggregator::migrate
pub trait Aggregator: Sized + Send + Sync + 'static {
    /// The per-key state, stored by the SDK as JSON. Give the type
    /// `#[serde(default)]` (and never `deny_unknown_fields`) so that unknown
    /// fields are ignored and missing ones take their default: that is what
    /// lets versions evolve (see the trait's documentation).
    type State: Serialize + DeserializeOwned + Default;
    /// The version of [`Self::State`]'s encoding; bump it when a migration is needed.
    const STATE_VERSION: u32;
    /// The output row's Avro schema (a record) as JSON text.
    const OUTPUT_SCHEMA: &'static str;

    /// Builds the plugin from its configuration (called once per instance).
    fn new(config: &Config) -> Result<Self, PluginError>;
    /// The top-level JSON fields this aggregator reads ([`Record::fields`]);
    /// none by default.
    fn reads(&self) -> Vec<String> {
        Vec::new()
    }
    /// Folds one event into the key's state. An error rejects the event (it
    /// goes to the dead-letter topic); it must leave the state untouched, so
    /// check the event before changing anything.
    fn apply(&self, state: &mut Self::State, event: &Record<'_>) -> Result<(), PluginError>;
    /// The output row for `key`, one value per output-schema field.
    fn row(&self, key: &[u8], state: &Self::State) -> Vec<Value>;
    /// Converts state written by version `from_version` of this plugin (never
    /// [`Self::STATE_VERSION`] itself: that state is used as it is).
    ///
    /// The default is [`default_migrate`]: state of a newer version is
    /// decoded as it is (the forward-compatibility rule), state of an older
    /// version is refused with `unsupported-state-version`.
    fn migrate(from_version: u32, state: &[u8]) -> Result<Self::State, PluginError> {
        default_migrate::<Self>(from_version, state)
    }
}

/// What [`Aggregator::migrate`] does unless overridden: state written by a
/// newer version (`from_version` above `A::STATE_VERSION`) is decoded as it
/// is, ignoring the fields this version does not know; state of an older
/// version is refused with `unsupported-state-version`. An override calls it
/// for the versions it does not convert itself.
pub fn default_migrate<A: Aggregator>(
    from_version: u32,
    state: &[u8],
) -> Result<A::State, PluginError> {
    if from_version > A::STATE_VERSION {
        return decode_state(state);
    }
    Err(plugin_error(
        "unsupported-state-version",
        format!(
            "cannot read state version {from_version}: this plugin writes version {} \
             and has no migration from older versions",
            A::STATE_VERSION
        ),
    ))
}

/// Decodes a key's state from the JSON bytes the SDK stores (an error has
/// code `bad-state`). Migrations use it to read an older version's state.
pub fn decode_state<S: DeserializeOwned>(bytes: &[u8]) -> Result<S, PluginError> {
    serde_json::from_slice(bytes).map_err(|error| {
        plugin_error(
            "bad-state",
            format!("cannot decode the key's state: {error}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    /// Version 2 of a counter's state (tests treat `total` as a field of version 3).
    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    struct Counter {
        events: i64,
        last: Option<String>,
    }

    struct CounterV2;

    impl Aggregator for CounterV2 {
        type State = Counter;
        const STATE_VERSION: u32 = 2;
        const OUTPUT_SCHEMA: &'static str =
            r#"{"type":"record","name":"Count","fields":[{"name":"EVENTS","type":"long"}]}"#;

        fn new(_config: &Config) -> Result<Self, PluginError> {
            Ok(Self)
        }

        fn apply(&self, state: &mut Counter, _event: &Record<'_>) -> Result<(), PluginError> {
            state.events += 1;
            Ok(())
        }

        fn row(&self, _key: &[u8], state: &Counter) -> Vec<Value> {
            vec![Value::Long(state.events)]
        }
    }

    /// The same counter with a migration from version 1, which counted in `n`.
    struct CounterV2FromV1;

    impl Aggregator for CounterV2FromV1 {
        type State = Counter;
        const STATE_VERSION: u32 = 2;
        const OUTPUT_SCHEMA: &'static str = CounterV2::OUTPUT_SCHEMA;

        fn new(_config: &Config) -> Result<Self, PluginError> {
            Ok(Self)
        }

        fn apply(&self, state: &mut Counter, event: &Record<'_>) -> Result<(), PluginError> {
            CounterV2.apply(state, event)
        }

        fn row(&self, key: &[u8], state: &Counter) -> Vec<Value> {
            CounterV2.row(key, state)
        }

        fn migrate(from_version: u32, state: &[u8]) -> Result<Counter, PluginError> {
            #[derive(Deserialize)]
            struct V1 {
                n: i64,
            }
            match from_version {
                1 => {
                    let old: V1 = decode_state(state)?;
                    Ok(Counter {
                        events: old.n,
                        last: None,
                    })
                }
                _ => default_migrate::<Self>(from_version, state),
            }
        }
    }

    #[test]
    fn newer_state_is_read_as_it_is() {
        let newer = br#"{"events":7,"last":"b","total":12.5,"extra":{"nested":[1,2]}}"#;
        let state = CounterV2::migrate(3, newer).unwrap();
        assert_eq!(
            state,
            Counter {
                events: 7,
                last: Some("b".into()),
            }
        );
    }

    #[test]
    fn newer_state_missing_fields_take_their_default() {
        let state = CounterV2::migrate(9, br#"{"total":1}"#).unwrap();
        assert_eq!(state, Counter::default());
    }

    #[test]
    fn newer_state_that_is_not_json_is_bad_state() {
        let error = CounterV2::migrate(3, b"not json").unwrap_err();
        assert_eq!(error.code, "bad-state");
        assert!(error.message.contains("cannot decode"), "{}", error.message);
    }

    #[test]
    fn older_state_without_a_migration_is_refused() {
        for version in [0, 1] {
            let error = CounterV2::migrate(version, br#"{"events":1}"#).unwrap_err();
            assert_eq!(error.code, "unsupported-state-version");
            assert!(
                error.message.contains(&format!("state version {version}"))
                    && error.message.contains("writes version 2"),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn an_override_keeps_the_default_for_other_versions() {
        let migrated = CounterV2FromV1::migrate(1, br#"{"n":4}"#).unwrap();
        assert_eq!(migrated.events, 4);
        let newer = CounterV2FromV1::migrate(3, br#"{"events":5,"total":1}"#).unwrap();
        assert_eq!(newer.events, 5);
        let error = CounterV2FromV1::migrate(0, br#"{}"#).unwrap_err();
        assert_eq!(error.code, "unsupported-state-version");
    }

    #[test]
    fn the_export_passes_own_state_through_and_reencodes_newer_state() {
        // Its own version is not decoded at all.
        let own = glue::migrate::<CounterV2>(2, b"opaque".to_vec()).unwrap();
        assert_eq!(own, b"opaque");
        // A newer version's state comes back in this version's encoding.
        let newer = br#"{"events":3,"total":2,"last":"a"}"#.to_vec();
        let migrated = glue::migrate::<CounterV2>(3, newer).unwrap();
        assert_eq!(migrated, br#"{"events":3,"last":"a"}"#);
        let error = glue::migrate::<CounterV2>(1, b"{}".to_vec()).unwrap_err();
        assert_eq!(error.code, "unsupported-state-version");
    }
}
