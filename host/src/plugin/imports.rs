//! The host side of a plugin instance: its store data, and the imports of
//! the contract (logging, configuration, lookup tables, metrics) plus a
//! sandboxed WASI (no files, no network, no environment).

use std::collections::HashSet;
use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{config, logging, lookup, metrics};
use super::capabilities::Replay;
use super::context::StageContext;
use super::stderr::TailBuffer;

/// How much of a plugin's standard output and error is kept for trap reports.
const OUTPUT_TAIL_BYTES: usize = 4096;

/// The longest log message a plugin may write (longer ones are cut).
const MAX_LOG_BYTES: usize = 4096;

/// The most fields one log line of a plugin carries (the rest are left out).
const MAX_LOG_FIELDS: usize = 32;

/// The most distinct metric names one stage's plugin may use: each is a
/// label value, and Prometheus keeps a series per value.
pub const MAX_METRIC_NAMES: usize = 100;

/// The longest metric name a plugin may use, in bytes.
const MAX_METRIC_NAME_BYTES: usize = 64;

/// The most missing lookup tables remembered (each is logged once).
const MAX_MISSING_TABLES: usize = 16;

/// The most elements an instance's tables may hold in all.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Everything a plugin instance's store holds.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: Limits,
    pub(super) output: TailBuffer,
    /// The clocks and random source it reads unless the stage grants the
    /// real ones.
    pub(super) replay: Replay,
    context: Arc<StageContext>,
    plugin: Arc<str>,
    /// Lookup tables asked for that the stage does not have (logged once each).
    missing_tables: HashSet<String>,
}

impl HostState {
    pub(super) fn new(context: Arc<StageContext>, plugin: Arc<str>) -> Self {
        let output = TailBuffer::new(OUTPUT_TAIL_BYTES);
        // No preopened folders, no sockets, no environment, no arguments:
        // a plugin sees only what the contract hands it, and the real clocks
        // and random source only if its stage grants them.
        let replay = Replay::new(&context.stage);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(output.clone()).stderr(output.clone());
        replay.install(&mut wasi, context.capabilities);
        let wasi = wasi.build();
        let limits = Limits::new(context.limits.memory_bytes());
        Self {
            wasi,
            table: ResourceTable::new(),
            limits,
            output,
            replay,
            context,
            plugin,
            missing_tables: HashSet::new(),
        }
    }
}

/// What an instance's memories and tables may take: `memory_mib` for all
/// its memories together (a component may declare several; each once got
/// the whole limit), and [`MAX_TABLE_ELEMENTS`] table elements.
#[derive(Debug)]
pub(super) struct Limits {
    max_memory: usize,
    memory: usize,
    tables: usize,
}

impl Limits {
    pub(super) fn new(max_memory: usize) -> Self {
        Self {
            max_memory,
            memory: 0,
            tables: 0,
        }
    }
}

impl ResourceLimiter for Limits {
    /// Also called when a memory is made (from 0 to its initial size).
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.memory - current.min(self.memory)).saturating_add(desired);
        if total > self.max_memory {
            // A trap, described by `Worker::trapped` from this prefix.
            wasmtime::bail!(
                "forcing trap when growing memory to {desired} bytes: the instance's memories \
                 would take {total} bytes in all"
            );
        }
        self.memory = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.tables - current.min(self.tables)).saturating_add(desired);
        if total > MAX_TABLE_ELEMENTS {
            wasmtime::bail!(
                "forcing trap when growing a table to {desired} elements: the instance's \
                 tables would hold {total}, more than {MAX_TABLE_ELEMENTS}"
            );
        }
        self.tables = total;
        Ok(true)
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
    fn log(
        &mut self,
        level: logging::Level,
        mut message: String,
        mut fields: Vec<(String, String)>,
    ) {
        crate::sink::limits::truncate(&mut message, MAX_LOG_BYTES);
        fields.truncate(MAX_LOG_FIELDS);
        for (name, value) in &mut fields {
            crate::sink::limits::truncate(name, MAX_METRIC_NAME_BYTES);
            crate::sink::limits::truncate(value, MAX_LOG_BYTES);
        }
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
        if !lookups.has_table(&table)
            && self.missing_tables.len() < MAX_MISSING_TABLES
            && self.missing_tables.insert(table.clone())
        {
            tracing::warn!(
                pipeline = %self.context.pipeline,
                stage = %self.context.stage,
                plugin = %self.plugin,
                table = %table,
                "Plugin asked for a lookup table the stage does not have."
            );
        }
        lookups.get(&table, &key)
    }
}

impl HostState {
    /// Whether the plugin may record metric `name`: at most
    /// [`MAX_METRIC_NAMES`] distinct names per stage, each at most
    /// [`MAX_METRIC_NAME_BYTES`] long; the first name refused is logged.
    fn metric_allowed(&self, name: &str) -> bool {
        let refused = if name.len() > MAX_METRIC_NAME_BYTES {
            format!("longer than {MAX_METRIC_NAME_BYTES} bytes")
        } else {
            match self.context.metric_names.admit(name) {
                true => return true,
                false => format!("beyond the {MAX_METRIC_NAMES} distinct names a stage may use"),
            }
        };
        if self.context.metric_names.first_refusal() {
            tracing::warn!(
                pipeline = %self.context.pipeline,
                stage = %self.context.stage,
                plugin = %self.plugin,
                name = %name.chars().take(MAX_METRIC_NAME_BYTES).collect::<String>(),
                "Plugin metric left out: its name is {refused} (each name is a series in \
                 Prometheus); logged once per stage."
            );
        }
        false
    }
}

impl metrics::Host for HostState {
    fn counter_add(&mut self, name: String, delta: u64) {
        if !self.metric_allowed(&name) {
            return;
        }
        ::metrics::counter!(
            "weir_plugin_counter_total",
            "pipeline" => self.context.pipeline.clone(),
            "stage" => self.context.stage.clone(),
            "name" => name,
        )
        .increment(delta);
    }

    fn gauge_set(&mut self, name: String, value: f64) {
        if !self.metric_allowed(&name) {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_memory_of_an_instance_counts_toward_one_limit() {
        let mib = 1024 * 1024;
        let mut limits = Limits::new(256 * mib);
        // Two memories made at 100 MiB each, then one grows within the limit.
        assert!(limits.memory_growing(0, 100 * mib, None).expect("fits"));
        assert!(limits.memory_growing(0, 100 * mib, None).expect("fits"));
        assert!(
            limits
                .memory_growing(100 * mib, 150 * mib, None)
                .expect("fits")
        );
        // A third memory, or more growth, would pass 256 MiB in all.
        let error = limits
            .memory_growing(0, 16 * mib, None)
            .expect_err("over the total");
        assert!(
            error
                .to_string()
                .starts_with("forcing trap when growing memory")
        );
        assert!(limits.memory_growing(150 * mib, 200 * mib, None).is_err());
        assert!(
            limits
                .memory_growing(0, 6 * mib, None)
                .expect("what is left fits")
        );
    }

    #[test]
    fn table_elements_are_bounded_in_all() {
        let mut limits = Limits::new(0);
        assert!(limits.table_growing(0, 10, None).expect("fits"));
        assert!(
            limits
                .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
                .is_err()
        );
    }
}
