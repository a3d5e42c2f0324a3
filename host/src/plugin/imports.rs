//! The host side of a plugin instance: its store data, and the imports of
//! the contract (logging, configuration, lookup tables, metrics) plus a
//! sandboxed WASI (no files, no network, no environment).

use std::collections::HashSet;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{config, logging, lookup, metrics};
use super::context::StageContext;
use super::stderr::TailBuffer;

/// How much of a plugin's standard output and error is kept for trap reports.
const OUTPUT_TAIL_BYTES: usize = 4096;

/// Everything a plugin instance's store holds.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: StoreLimits,
    pub(super) output: TailBuffer,
    context: Arc<StageContext>,
    plugin: Arc<str>,
    /// Lookup tables asked for that the stage does not have (logged once each).
    missing_tables: HashSet<String>,
}

impl HostState {
    pub(super) fn new(context: Arc<StageContext>, plugin: Arc<str>) -> Self {
        let output = TailBuffer::new(OUTPUT_TAIL_BYTES);
        // No preopened folders, no sockets, no environment, no arguments:
        // a plugin sees only what the contract hands it.
        let wasi = WasiCtxBuilder::new()
            .stdout(output.clone())
            .stderr(output.clone())
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(context.limits.memory_bytes())
            .trap_on_grow_failure(true)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limits,
            output,
            context,
            plugin,
            missing_tables: HashSet::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Adds WASI and the contract's imports to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    logging::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    config::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    lookup::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    metrics::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    Ok(())
}

impl logging::Host for HostState {
    fn log(&mut self, level: logging::Level, message: String, fields: Vec<(String, String)>) {
        let pipeline = &self.context.pipeline;
        let stage = &self.context.stage;
        let plugin = &*self.plugin;
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    pipeline = %pipeline,
                    stage = %stage,
                    plugin = %plugin,
                    fields = ?fields,
                    "{message}"
                )
            };
        }
        match level {
            logging::Level::Trace => emit!(tracing::Level::TRACE),
            logging::Level::Debug => emit!(tracing::Level::DEBUG),
            logging::Level::Info => emit!(tracing::Level::INFO),
            logging::Level::Warn => emit!(tracing::Level::WARN),
            logging::Level::Error => emit!(tracing::Level::ERROR),
        }
    }
}

impl config::Host for HostState {
    fn get(&mut self) -> String {
        self.context.config_json.clone()
    }
}

impl lookup::Host for HostState {
    fn get(&mut self, table: String, key: String) -> Option<String> {
        let lookups = &self.context.lookups;
        if !lookups.has_table(&table) && self.missing_tables.insert(table.clone()) {
            tracing::warn!(
                pipeline = %self.context.pipeline,
                stage = %self.context.stage,
                plugin = %self.plugin,
                table = %table,
                "Plugin asked for a lookup table the stage does not have."
            );
        }
        lookups.get(&table, &key).map(str::to_owned)
    }
}

impl metrics::Host for HostState {
    fn counter_add(&mut self, name: String, delta: u64) {
        ::metrics::counter!(
            "weir_plugin_counter_total",
            "pipeline" => self.context.pipeline.clone(),
            "stage" => self.context.stage.clone(),
            "name" => name,
        )
        .increment(delta);
    }

    fn gauge_set(&mut self, name: String, value: f64) {
        ::metrics::gauge!(
            "weir_plugin_gauge",
            "pipeline" => self.context.pipeline.clone(),
            "stage" => self.context.stage.clone(),
            "name" => name,
        )
        .set(value);
    }
}

impl super::bindings::types::Host for HostState {}
