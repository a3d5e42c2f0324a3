//! A pipeline's sinks as one: every output written in its phase, each
//! write timed and counted under the sink's name.

use std::time::Instant;

use super::dead_letter::Kind;
use super::error::SinkError;
use super::output::{Phase, Records, Shape, Sink};
use super::schema::RowSchema;

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

    /// Starts this pipeline's error and retry counters at zero: a healthy
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

    /// Writes what the sinks of `phase` take of `records`, all at once;
    /// all or the first error. A sink with nothing to write is not called.
    pub async fn write(&self, phase: Phase, records: &Records) -> Result<(), SinkError> {
        let writes = self
            .sinks
            .iter()
            .filter(|sink| sink.phase() == phase)
            .map(|sink| self.observed(sink.as_ref(), records));
        futures::future::try_join_all(writes).await.map(drop)
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
