//! What the export macros expand to call: turning WIT batches into calls of
//! the plugin traits. Not part of the public API.

use std::sync::OnceLock;

use crate::batch::{self, Emitter};
use crate::bindings::aggregating::{Group, Outcome};
use crate::bindings::transforming::Transformed;
use crate::bindings::types::{Batch, Fields, Rejection};
use crate::{
    Aggregator, Config, Decision, Filter, PluginError, Transform, decode_state, plugin_error,
};

/// Builds the plugin from the host's configuration, once per instance.
pub fn init<P>(
    slot: &OnceLock<P>,
    new: impl FnOnce(&Config) -> Result<P, PluginError>,
) -> Result<(), PluginError> {
    if slot.get().is_none() {
        let plugin = new(&Config::from_host()?)?;
        // A guest is single-threaded: nobody else can have set it meanwhile.
        let _ = slot.set(plugin);
    }
    Ok(())
}

/// The plugin built by `init`. The host always calls `init` first; a call
/// before it is a host bug, and trapping says so.
pub fn instance<P>(slot: &OnceLock<P>) -> &P {
    slot.get().expect("weir called the plugin before `init`")
}

pub fn filter<P: Filter>(plugin: &P, batch: &Batch, fields: &Fields) -> Vec<Decision> {
    let width = width(fields);
    batch::records(batch, fields, width)
        .map(|record| plugin.filter(&record))
        .collect()
}

pub fn transform<P: Transform>(plugin: &P, batch: &Batch, fields: &Fields) -> Transformed {
    let width = width(fields);
    let mut out = Emitter::default();
    for (index, record) in batch::records(batch, fields, width).enumerate() {
        out.begin(index as u32);
        if let Err(error) = plugin.transform(&record, &mut out) {
            out.reject(error);
        }
    }
    out.finish()
}

pub fn aggregate<P: Aggregator>(
    plugin: &P,
    batch: &Batch,
    fields: &Fields,
    groups: Vec<Group>,
) -> Vec<Result<Outcome, PluginError>> {
    let width = width(fields);
    let records: Vec<_> = batch::records(batch, fields, width).collect();
    groups
        .into_iter()
        .map(|group| {
            let first = group.first as usize;
            let events = records
                .get(first..first + group.count as usize)
                .ok_or_else(|| plugin_error("bad-group", "a group points past the batch"))?;
            aggregate_group(plugin, group, first, events)
        })
        .collect()
}

fn aggregate_group<P: Aggregator>(
    plugin: &P,
    group: Group,
    first: usize,
    events: &[batch::Record<'_>],
) -> Result<Outcome, PluginError> {
    let mut state = match &group.state {
        None => P::State::default(),
        Some(bytes) => decode_state(bytes)?,
    };
    let mut rejected = Vec::new();
    for (index, event) in events.iter().enumerate() {
        if let Err(error) = plugin.apply(&mut state, event) {
            let index = u32::try_from(first + index).expect("a batch holds fewer than 2^32 events");
            rejected.push(Rejection { index, error });
        }
    }
    let new_state = encode_state::<P>(&state)?;
    // A row goes out when the state changed, and always for a group
    // without events: the host asks that way for a key's row as this
    // version makes it (after a swap).
    let changed = group.state.as_deref() != Some(new_state.as_slice());
    let row = (changed || events.is_empty()).then(|| plugin.row(&group.key, &state));
    Ok(Outcome {
        state: new_state,
        row,
        rejected,
    })
}

/// How many spans each JSON-object record has in `fields` (the length of
/// the plugin's `reads`).
fn width(fields: &Fields) -> usize {
    let objects = fields.first.iter().flatten().count();
    fields.spans.len().checked_div(objects).unwrap_or(0)
}

/// The `migrate` export: state of this plugin's own version is returned as it
/// is; any other goes through [`Aggregator::migrate`] and is encoded again.
pub fn migrate<P: Aggregator>(from_version: u32, state: Vec<u8>) -> Result<Vec<u8>, PluginError> {
    if from_version == P::STATE_VERSION {
        return Ok(state);
    }
    encode_state::<P>(&P::migrate(from_version, &state)?)
}

fn encode_state<P: Aggregator>(state: &P::State) -> Result<Vec<u8>, PluginError> {
    serde_json::to_vec(state).map_err(|error| {
        plugin_error(
            "bad-state",
            format!("cannot encode the key's state: {error}"),
        )
    })
}

/// Exports a [`Filter`](crate::Filter) implementation as the plugin's `filter` world.
#[macro_export]
macro_rules! export_filter {
    ($plugin:ty) => {
        // Only a WebAssembly build exports the world: built natively (for
        // unit tests or the native benchmark baseline) a plugin is a plain library.
        #[cfg(target_family = "wasm")]
        const _: () = {
            static PLUGIN: ::std::sync::OnceLock<$plugin> = ::std::sync::OnceLock::new();
            struct WeirExport;
            impl $crate::bindings::filtering::Guest for WeirExport {
                fn init() -> ::core::result::Result<(), $crate::PluginError> {
                    $crate::glue::init(&PLUGIN, <$plugin as $crate::Filter>::new)
                }
                fn reads() -> ::std::vec::Vec<::std::string::String> {
                    <$plugin as $crate::Filter>::reads($crate::glue::instance(&PLUGIN))
                }
                fn filter(
                    batch: $crate::Batch,
                    fields: $crate::BatchFields,
                ) -> ::std::vec::Vec<$crate::Decision> {
                    $crate::glue::filter($crate::glue::instance(&PLUGIN), &batch, &fields)
                }
            }
            $crate::bindings::filter_world::export_filter_world!(WeirExport with_types_in $crate::bindings::filter_world);
        };
    };
}

/// Exports a [`Transform`](crate::Transform) implementation as the plugin's `transform` world.
#[macro_export]
macro_rules! export_transform {
    ($plugin:ty) => {
        // Only a WebAssembly build exports the world: built natively (for
        // unit tests or the native benchmark baseline) a plugin is a plain library.
        #[cfg(target_family = "wasm")]
        const _: () = {
            static PLUGIN: ::std::sync::OnceLock<$plugin> = ::std::sync::OnceLock::new();
            struct WeirExport;
            impl $crate::bindings::transforming::Guest for WeirExport {
                fn init() -> ::core::result::Result<(), $crate::PluginError> {
                    $crate::glue::init(&PLUGIN, <$plugin as $crate::Transform>::new)
                }
                fn reads() -> ::std::vec::Vec<::std::string::String> {
                    <$plugin as $crate::Transform>::reads($crate::glue::instance(&PLUGIN))
                }
                fn transform(
                    batch: $crate::Batch,
                    fields: $crate::BatchFields,
                ) -> $crate::bindings::transforming::Transformed {
                    $crate::glue::transform($crate::glue::instance(&PLUGIN), &batch, &fields)
                }
            }
            $crate::bindings::transform_world::export_transform_world!(WeirExport with_types_in $crate::bindings::transform_world);
        };
    };
}

/// Exports an [`Aggregator`](crate::Aggregator) implementation as the plugin's `aggregator` world.
#[macro_export]
macro_rules! export_aggregator {
    ($plugin:ty) => {
        // Only a WebAssembly build exports the world: built natively (for
        // unit tests or the native benchmark baseline) a plugin is a plain library.
        #[cfg(target_family = "wasm")]
        const _: () = {
            static PLUGIN: ::std::sync::OnceLock<$plugin> = ::std::sync::OnceLock::new();
            struct WeirExport;
            impl $crate::bindings::aggregating::Guest for WeirExport {
                fn init() -> ::core::result::Result<(), $crate::PluginError> {
                    $crate::glue::init(&PLUGIN, <$plugin as $crate::Aggregator>::new)
                }
                fn reads() -> ::std::vec::Vec<::std::string::String> {
                    <$plugin as $crate::Aggregator>::reads($crate::glue::instance(&PLUGIN))
                }
                fn state_version() -> u32 {
                    <$plugin as $crate::Aggregator>::STATE_VERSION
                }
                fn output_schema() -> ::std::string::String {
                    <$plugin as $crate::Aggregator>::OUTPUT_SCHEMA.to_owned()
                }
                fn aggregate(
                    batch: $crate::Batch,
                    fields: $crate::BatchFields,
                    groups: ::std::vec::Vec<$crate::bindings::aggregating::Group>,
                ) -> ::std::vec::Vec<
                    ::core::result::Result<$crate::bindings::aggregating::Outcome, $crate::PluginError>,
                > {
                    $crate::glue::aggregate($crate::glue::instance(&PLUGIN), &batch, &fields, groups)
                }
                fn migrate(
                    from_version: u32,
                    state: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, $crate::PluginError> {
                    $crate::glue::migrate::<$plugin>(from_version, state)
                }
            }
            $crate::bindings::aggregator_world::export_aggregator_world!(WeirExport with_types_in $crate::bindings::aggregator_world);
        };
    };
}
