//! A pipeline's sinks as one: every output written in its phase, each
//! write timed and counted under the sink's name.

use std::collections::HashSet;
use std::time::Instant;

use super::dead_letter::Kind;
use super::error::SinkError;
use super::output::{Phase, Records, Shape, Sink};
use super::schema::RowSchema;

/// Which sinks (by their place in [`Sinks`]) have taken one flush.
#[derive(Debug, Default)]
pub struct Progress(HashSet<usize>);

/// Where a pipeline's results go: rows, dead letters, the changelog.
pub struct Sinks {
    pipeline: String,
    sinks: Vec<Box<dyn Sink>>,
}

impl Sinks {
    /// `sinks` of `pipeline`. Outputs are written together, started in this
    /// order (put the one that takes longest to answer first: it works
    /// while the next ones encode).
    pub fn new(pipeline: &str, sinks: Vec<Box<dyn Sink>>) -> Self {
        Self {
            pipeline: pipeline.to_owned(),
            sinks,
        }
    }

    /// The pipeline they belong to.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The sinks' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sinks.iter().map(|sink| sink.name())
    }

    /// Starts this pipeline's error, retry and circuit counters at zero: a healthy
    /// pipeline then shows its errors as 0, where a query expects a value,
    /// rather than as no series at all.
    pub fn start_counters(&self, stages: &[&str]) {
        for sink in self.names() {
            let labels = [
                ("pipeline", self.pipeline.clone()),
                ("sink", sink.to_owned()),
            ];
            metrics::counter!("weir_sink_errors_total", &labels).absolute(0);
            metrics::counter!("weir_sink_rows_total", &labels).absolute(0);
        }
        metrics::counter!("weir_sink_retries_total", "pipeline" => self.pipeline.clone())
            .absolute(0);
        for stage in stages {
            metrics::counter!(
                "weir_plugin_circuit_opened_total",
                "pipeline" => self.pipeline.clone(),
                "stage" => (*stage).to_owned(),
            )
            .absolute(0);
        }
        // Dead letters too: the source's malformed values, each stage's kinds.
        let source = std::iter::once(("source", Kind::Malformed));
        let stages = stages.iter().flat_map(|stage| {
            [Kind::Malformed, Kind::Rejected, Kind::Trapped].map(|kind| (*stage, kind))
        });
        for (stage, kind) in source.chain(stages) {
            metrics::counter!(
                "weir_dead_letters_total",
                "pipeline" => self.pipeline.clone(),
                "stage" => stage.to_owned(),
                "kind" => kind.name(),
            )
            .absolute(0);
        }
    }

    /// Whether every sink takes rows of `schema` after the ones it holds:
    /// the first refusal's reason.
    pub async fn check(&self, schema: &RowSchema) -> Result<Option<String>, SinkError> {
        for sink in &self.sinks {
            if let Some(refusal) = sink.check(schema).await? {
                return Ok(Some(refusal));
            }
        }
        Ok(None)
    }

    /// Gets every sink ready for rows of `shape`.
    pub async fn prepare(&self, shape: &Shape) -> Result<(), SinkError> {
        for sink in &self.sinks {
            sink.prepare(shape).await?;
        }
        Ok(())
    }

    /// Writes what the sinks of `phase` take of `records`, all at once,
    /// skipping those `progress` says took them already; each sink that
    /// takes them is added to `progress`, so a retry writes only to the
    /// sinks that failed (a Kafka topic is not sent the same flush again
    /// while PostgreSQL is down). Every write runs to its end; the error is
    /// a permanent one if any sink failed for good, else the first. A sink
    /// with nothing to write is not called.
    pub async fn write(
        &self,
        phase: Phase,
        records: &Records,
        progress: &mut Progress,
    ) -> Result<(), SinkError> {
        let writes = self
            .sinks
            .iter()
            .enumerate()
            .filter(|(index, sink)| sink.phase() == phase && !progress.0.contains(index))
            .map(
                |(index, sink)| async move { (index, self.observed(sink.as_ref(), records).await) },
            );
        let mut failed: Option<SinkError> = None;
        for (index, written) in futures::future::join_all(writes).await {
            match written {
                Ok(()) => {
                    progress.0.insert(index);
                }
                Err(error) => {
                    if failed
                        .as_ref()
                        .is_none_or(|kept| kept.is_transient() && !error.is_transient())
                    {
                        failed = Some(error);
                    }
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// One sink's write, timed and counted (records, failures) under its name.
    async fn observed(&self, sink: &dyn Sink, records: &Records) -> Result<(), SinkError> {
        let count = sink.count(records);
        if count == 0 {
            return Ok(());
        }
        let labels = [
            ("pipeline", self.pipeline.clone()),
            ("sink", sink.name().to_owned()),
        ];
        let started = Instant::now();
        let written = sink.write(records).await;
        match &written {
            Ok(()) => {
                metrics::histogram!("weir_sink_write_duration_seconds", &labels)
                    .record(started.elapsed());
                metrics::counter!("weir_sink_rows_total", &labels).increment(count as u64);
            }
            Err(_) => metrics::counter!("weir_sink_errors_total", &labels).increment(1),
        }
        written
    }
}
