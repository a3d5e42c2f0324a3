//! weir's metrics: recorded through the `metrics` facade wherever the work
//! happens, exported in Prometheus' text format at the admin API's
//! `/metrics`.
//!
//! Every family weir exports is in [`FAMILIES`], with its type, its labels
//! and what it counts; docs/observability.md lists the same (a test keeps
//! them equal). Labels are bounded: pipeline, stage, sink and partition
//! names, never a record's key.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// What a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (`_total`).
    Counter,
    /// A value now.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

/// One metric family: name, kind, labels, help text.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// The name, with its unit and, for counters, `_total`.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Its labels.
    pub labels: &'static [&'static str],
    /// What it measures (the `# HELP` line).
    pub help: &'static str,
}

const fn family(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind,
        labels,
        help,
    }
}

use Kind::{Counter, Gauge, Histogram};

/// Every family weir exports.
pub const FAMILIES: &[Family] = &[
    family(
        "weir_build_info",
        Gauge,
        &["version"],
        "Always 1; the version of weir running.",
    ),
    family(
        "weir_source_records_total",
        Counter,
        &["pipeline"],
        "Records read from the source topic.",
    ),
    family(
        "weir_records_replayed_total",
        Counter,
        &["pipeline"],
        "Records skipped because their key's state already held them (read again after a restart or a rebalance).",
    ),
    family(
        "weir_records_ahead_of_clock_total",
        Counter,
        &["pipeline"],
        "Records dated further ahead of weir's clock than the source's max_clock_skew: they moved stream time only to the clock plus the skew.",
    ),
    family(
        "weir_batch_records",
        Histogram,
        &["pipeline"],
        "Records per batch a shard processes.",
    ),
    family(
        "weir_batch_duration_seconds",
        Histogram,
        &["pipeline"],
        "Time the whole stage chain takes over one batch.",
    ),
    family(
        "weir_plugin_call_duration_seconds",
        Histogram,
        &["pipeline", "stage"],
        "Time of one call into a stage's plugin (one batch).",
    ),
    family(
        "weir_stage_records_in_total",
        Counter,
        &["pipeline", "stage"],
        "Records a stage was given.",
    ),
    family(
        "weir_stage_records_out_total",
        Counter,
        &["pipeline", "stage"],
        "Records a stage passed on (for the aggregator: records folded into state).",
    ),
    family(
        "weir_stage_records_dropped_total",
        Counter,
        &["pipeline", "stage"],
        "Records a filter dropped or a transform turned into nothing.",
    ),
    family(
        "weir_dead_letters_total",
        Counter,
        &["pipeline", "stage", "kind"],
        "Records written to the dead-letter topic, by the stage that refused them (`source` before any stage) and why.",
    ),
    family(
        "weir_consumer_lag_records",
        Gauge,
        &["pipeline", "partition"],
        "Records of a source partition not yet committed (end offset minus committed offset).",
    ),
    family(
        "weir_flush_duration_seconds",
        Histogram,
        &["pipeline"],
        "Time to write one flush to every sink, retries included.",
    ),
    family(
        "weir_commit_duration_seconds",
        Histogram,
        &["pipeline"],
        "Time to commit the source offsets of a written flush.",
    ),
    family(
        "weir_state_keys",
        Gauge,
        &["pipeline"],
        "Keys the aggregator holds state for.",
    ),
    family(
        "weir_state_bytes",
        Gauge,
        &["pipeline"],
        "Bytes of the keys the aggregator holds and their state (the heap holds more: maps, rows waiting for a flush).",
    ),
    family(
        "weir_state_evicted_keys_total",
        Counter,
        &["pipeline"],
        "Keys evicted for being idle.",
    ),
    family(
        "weir_plugin_swaps_total",
        Counter,
        &["pipeline", "stage", "action"],
        "Plugin versions changed in a running pipeline (action: swap, rollback, automatic-rollback).",
    ),
    family(
        "weir_sink_rows_total",
        Counter,
        &["pipeline", "sink"],
        "Rows or records a sink confirmed (sink: kafka, postgres, dead-letters, changelog).",
    ),
    family(
        "weir_sink_write_duration_seconds",
        Histogram,
        &["pipeline", "sink"],
        "Time of one successful write to a sink.",
    ),
    family(
        "weir_sink_errors_total",
        Counter,
        &["pipeline", "sink"],
        "Failed writes to a sink.",
    ),
    family(
        "weir_sink_retries_total",
        Counter,
        &["pipeline"],
        "Attempts to write a flush again after a sink failed (the pipeline waits meanwhile).",
    ),
    family(
        "weir_plugin_circuit_opened_total",
        Counter,
        &["pipeline", "stage"],
        "Times a stage's plugin kept running out of time and its records were dead-lettered without calling it for a cool-down.",
    ),
    family(
        "weir_plugin_counter_total",
        Counter,
        &["pipeline", "stage", "name"],
        "Counters a plugin adds to through the contract's metrics import.",
    ),
    family(
        "weir_plugin_gauge",
        Gauge,
        &["pipeline", "stage", "name"],
        "Gauges a plugin sets through the contract's metrics import.",
    ),
];

/// Buckets of time histograms: 100 µs to 10 s.
const SECONDS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets of batch sizes, up to the largest batch a pipeline allows.
const RECORDS: &[f64] = &[
    1.0, 8.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16_384.0, 65_536.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs weir's recorder (once per process) and returns the handle that
/// renders it. Without it, metrics are recorded nowhere (the `metrics`
/// facade's default), which is what the tools that run no pipeline want.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full("weir_batch_records".to_owned()),
                        RECORDS,
                    )
                })
                .expect("the bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                // Another recorder came first (a program embedding weir):
                // metrics go there; this handle renders an empty page.
                tracing::warn!("A metrics recorder was already installed; /metrics stays empty.");
            }
            describe();
            metrics::gauge!("weir_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

/// The text `/metrics` serves: every family, in Prometheus' text format.
pub fn render(handle: &PrometheusHandle) -> String {
    // Histogram observations wait in lock-free buffers until drained.
    handle.run_upkeep();
    handle.render()
}

fn describe() {
    for family in FAMILIES {
        match family.kind {
            Counter => metrics::describe_counter!(family.name, family.help),
            Gauge => metrics::describe_gauge!(family.name, family.help),
            Histogram => metrics::describe_histogram!(family.name, family.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for family in FAMILIES {
            assert!(seen.insert(family.name), "{} twice", family.name);
            assert!(family.name.starts_with("weir_"), "{}", family.name);
            assert_eq!(
                family.kind == Counter,
                family.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                family.name
            );
            assert!(
                !family
                    .labels
                    .iter()
                    .any(|label| *label == "key" || *label == "session_id"),
                "{}: a record's key is not a label",
                family.name
            );
        }
    }

    #[test]
    fn every_family_is_documented() {
        let docs = include_str!("../../../docs/observability.md");
        for family in FAMILIES {
            assert!(
                docs.contains(&format!("`{}`", family.name)),
                "docs/observability.md does not describe {}",
                family.name
            );
        }
    }
}
