//! One stage of a chain: its plugin instance (or native code), where its
//! fields lie among the chain's, and its metric handles.

use std::sync::Arc;

use crate::plugin::{
    Batch, Failure, Fields, LoadError, Parsed, Plugin, PluginKind, Reader, RecordRef, StageCode,
    StageContext, Worker, no_fields,
};
use crate::sink::{DeadLetter, PluginRef};

/// One stage with its own plugin instance.
pub struct Stage {
    /// The stage's name.
    pub name: String,
    /// Its plugin, as dead letters name it.
    pub plugin: PluginRef,
    pub(super) kind: PluginKind,
    pub(super) worker: Box<dyn StageCode>,
    /// Where the fields the plugin reads lie among the chain's (its [`Reader`]).
    pub(super) columns: Vec<usize>,
    /// Whether a stage after this one reads fields.
    pub(super) read_later: bool,
    pub(super) metrics: StageMetrics,
}

/// One stage's metric handles (looked up once per stage instance).
pub(super) struct StageMetrics {
    records_in: metrics::Counter,
    records_out: metrics::Counter,
    dropped: metrics::Counter,
    call: metrics::Histogram,
}

impl StageMetrics {
    fn new(pipeline: &str, stage: &str) -> Self {
        let labels = [
            ("pipeline", pipeline.to_owned()),
            ("stage", stage.to_owned()),
        ];
        Self {
            records_in: metrics::counter!("weir_stage_records_in_total", &labels),
            records_out: metrics::counter!("weir_stage_records_out_total", &labels),
            dropped: metrics::counter!("weir_stage_records_dropped_total", &labels),
            call: metrics::histogram!("weir_plugin_call_duration_seconds", &labels),
        }
    }

    pub(super) fn add(&self, counts: Counts) {
        self.records_in.increment(counts.records_in);
        self.records_out.increment(counts.records_out);
        self.dropped.increment(counts.dropped);
    }
}

/// What one stage did with one batch (counted once the batch is kept).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    pub(super) records_in: u64,
    pub(super) records_out: u64,
    pub(super) dropped: u64,
}

impl Stage {
    /// Instantiates `plugin` for the stage `context`.
    pub fn new(plugin: &Arc<Plugin>, context: Arc<StageContext>) -> Result<Self, LoadError> {
        let worker = Worker::new(Arc::clone(plugin), Arc::clone(&context))?;
        Ok(Self::running(plugin, &context, Box::new(worker)))
    }

    /// The stage of `plugin` run by `code` instead of a plugin instance (the
    /// benchmark's native baseline).
    pub fn running(plugin: &Arc<Plugin>, context: &StageContext, code: Box<dyn StageCode>) -> Self {
        Self {
            name: context.stage.clone(),
            plugin: PluginRef::of(plugin),
            kind: plugin.kind,
            worker: code,
            columns: Vec::new(),
            read_later: false,
            metrics: StageMetrics::new(&context.pipeline, &context.stage),
        }
    }

    /// A stage of `kind` run by `code` with no component behind it (the
    /// simulation tests' stages); dead letters name it `native`.
    #[cfg(test)]
    pub(crate) fn native(
        pipeline: &str,
        name: &str,
        kind: PluginKind,
        code: Box<dyn StageCode>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            plugin: PluginRef {
                name: name.to_owned(),
                version: "native".to_owned(),
            },
            kind,
            worker: code,
            columns: Vec::new(),
            read_later: false,
            metrics: StageMetrics::new(pipeline, name),
        }
    }

    /// Runs `call` on the stage's code, timing it as a plugin call.
    pub(super) fn timed<T>(&mut self, call: impl FnOnce(&mut dyn StageCode) -> T) -> T {
        let started = std::time::Instant::now();
        let result = call(self.worker.as_mut());
        self.metrics.call.record(started.elapsed());
        result
    }

    /// The values of the fields this stage reads, from the batch's `parsed`
    /// fields (parsed now, if no stage before needed them).
    pub(super) fn fields(
        &self,
        batch: &Batch,
        parsed: &mut Option<Parsed>,
        reader: &Reader,
    ) -> Fields {
        if self.columns.is_empty() {
            return no_fields();
        }
        parsed
            .get_or_insert_with(|| reader.parse(batch))
            .project(&self.columns)
    }

    /// Makes a trap fail the whole call (on probation) or isolate records.
    pub fn set_fail_fast(&mut self, fail_fast: bool) {
        self.worker.set_fail_fast(fail_fast);
    }

    /// A dead letter for `record`, which this stage failed.
    pub(super) fn fail(&self, record: RecordRef<'_>, failure: Failure) -> DeadLetter {
        DeadLetter::failed(record, &self.name, &self.plugin, failure)
    }
}
