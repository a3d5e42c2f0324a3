//! Making a plugin instance: a store with the stage's limits, the plugin
//! instantiated from its pre-instantiated form, `init` called; and arming
//! the store before each call.

use std::sync::Arc;

use wasmtime::Store;

use super::bindings::{aggregator_world, filter_world, transform_world};
use super::context::StageContext;
use super::error::LoadError;
use super::imports::HostState;
use super::limits::StageLimits;
use super::runtime::{EPOCH_TICK, Plugin, PluginKind, Pre};

/// An instance's typed exports, one variant per world.
pub(super) enum Instance {
    Filter(filter_world::Filter),
    Transform(transform_world::Transform),
    Aggregator(aggregator_world::Aggregator),
}

impl Instance {
    /// The fields the plugin reads (its `reads` export).
    fn reads(&self, store: &mut Store<HostState>) -> wasmtime::Result<Vec<String>> {
        match self {
            Self::Filter(bindings) => bindings.weir_plugin_filtering().call_reads(store),
            Self::Transform(bindings) => bindings.weir_plugin_transforming().call_reads(store),
            Self::Aggregator(bindings) => bindings.weir_plugin_aggregating().call_reads(store),
        }
    }
}

/// A new store with the stage's limits, the plugin instantiated in it, `init`
/// called; and the fields the plugin reads.
pub(super) fn instantiate(
    plugin: &Plugin,
    context: &Arc<StageContext>,
) -> Result<(Store<HostState>, Instance, Vec<String>), LoadError> {
    let state = HostState::new(Arc::clone(context), Arc::from(plugin.name.as_str()));
    let mut store = Store::new(&plugin.engine, state);
    store.limiter(|state| &mut state.limits);
    let limits = &context.limits;
    arm(
        &mut store,
        limits.call_timeout(),
        limits,
        plugin.fuel_metering,
    );
    let start = |store: &Store<HostState>, error: wasmtime::Error| {
        let output = store.data().output.take();
        let reason = if output.is_empty() {
            format!("{error:#}")
        } else {
            format!("{error:#}; plugin output: {output}")
        };
        LoadError::Start {
            plugin: plugin.name.clone(),
            reason,
        }
    };
    let (instance, init) = match &plugin.pre {
        Pre::Filter(pre) => {
            let bindings = pre.instantiate(&mut store).map_err(|e| start(&store, e))?;
            let init = bindings
                .weir_plugin_filtering()
                .call_init(&mut store)
                .map_err(|e| start(&store, e))?;
            (Instance::Filter(bindings), init)
        }
        Pre::Transform(pre) => {
            let bindings = pre.instantiate(&mut store).map_err(|e| start(&store, e))?;
            let init = bindings
                .weir_plugin_transforming()
                .call_init(&mut store)
                .map_err(|e| start(&store, e))?;
            (Instance::Transform(bindings), init)
        }
        Pre::Aggregator(pre) => {
            let bindings = pre.instantiate(&mut store).map_err(|e| start(&store, e))?;
            let init = bindings
                .weir_plugin_aggregating()
                .call_init(&mut store)
                .map_err(|e| start(&store, e))?;
            (Instance::Aggregator(bindings), init)
        }
    };
    init.map_err(|error| LoadError::Config {
        plugin: plugin.name.clone(),
        error,
    })?;
    // Asked once the configuration is accepted: the fields may depend on it.
    let reads = instance.reads(&mut store).map_err(|e| start(&store, e))?;
    debug_assert!(matches!(
        (&instance, plugin.kind),
        (Instance::Filter(_), PluginKind::Filter)
            | (Instance::Transform(_), PluginKind::Transform)
            | (Instance::Aggregator(_), PluginKind::Aggregator)
    ));
    Ok((store, instance, reads))
}

/// Arms `store` for the next call: the epoch `deadline` and the fuel budget.
pub(super) fn arm(
    store: &mut Store<HostState>,
    deadline: std::time::Duration,
    limits: &StageLimits,
    fuel_metering: bool,
) {
    let ticks = deadline.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1);
    store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    if fuel_metering {
        store
            .set_fuel(limits.fuel.unwrap_or(u64::MAX))
            .expect("fuel metering is on");
    }
}
