//! The native baseline: the three stock plugins' own Rust code compiled into
//! this process and run by weir's engine in place of their Wasm components,
//! so `weir-bench race` can show what the Wasm boundary and sandbox cost in
//! the whole pipeline. Everything else — source, host parse, state, sinks,
//! changelog, commits — is weir's, unchanged.
//!
//! Each call converts the host's batch into the SDK's (one copy of the
//! buffer, as lowering it into a Wasm instance costs) and the SDK's answer
//! back; the plugins run through the SDK's own glue, as in Wasm.

use std::sync::Arc;

use serde_json::{Map, Value as Json};
use weir::plugin::bindings::aggregating as host_aggregating;
use weir::plugin::bindings::transforming as host_transforming;
use weir::plugin::bindings::types as host_types;
use weir::plugin::transformed::split_transformed;
use weir::plugin::{
    Batch, Failure, Fields, GroupResult, LookupTables, NativeStage, NativeStages, OutputRecord,
    StageCode, StageContext, Verdict,
};
use weir_plugin_sdk as sdk;
use weir_plugin_sdk::bindings::types as sdk_types;

/// The demo pipeline's three stages, by stage name, as native code.
pub fn demo_stages() -> NativeStages {
    let mut stages = NativeStages::new();
    let filter: NativeStage = Arc::new(|context: &StageContext| {
        let plugin = field_filter::FieldFilter::from_json(&context.config_json).map_err(error)?;
        Ok(Box::new(NativeFilter::new(plugin)) as Box<dyn StageCode>)
    });
    let enrich: NativeStage = Arc::new(|context: &StageContext| {
        let plugin =
            catalog_enrich::CatalogEnrich::from_json(&context.config_json).map_err(error)?;
        Ok(Box::new(NativeEnrich(WithTables {
            reads: sdk::Transform::reads(&plugin),
            plugin,
            lookups: Arc::clone(&context.lookups),
        })) as Box<dyn StageCode>)
    });
    let stats: NativeStage = Arc::new(|_context: &StageContext| {
        let plugin = session_stats::SessionStats;
        Ok(Box::new(NativeStats {
            reads: sdk::Aggregator::reads(&plugin),
            plugin,
        }) as Box<dyn StageCode>)
    });
    stages.insert("field-filter".to_owned(), filter);
    stages.insert("catalog-enrich".to_owned(), enrich);
    stages.insert("session-stats".to_owned(), stats);
    stages
}

/// Why a stock plugin's configuration was refused, as native code says it.
fn error(error: sdk::PluginError) -> Box<dyn std::error::Error + Send + Sync> {
    format!("{}: {}", error.code, error.message).into()
}

struct NativeFilter {
    reads: Vec<String>,
    plugin: field_filter::FieldFilter,
}

impl NativeFilter {
    fn new(plugin: field_filter::FieldFilter) -> Self {
        Self {
            reads: sdk::Filter::reads(&plugin),
            plugin,
        }
    }
}

struct NativeEnrich(WithTables);

struct NativeStats {
    reads: Vec<String>,
    plugin: session_stats::SessionStats,
}

/// `catalog-enrich` with the host's tables in place of its lookup import:
/// what its own `transform` does in Wasm.
struct WithTables {
    plugin: catalog_enrich::CatalogEnrich,
    reads: Vec<String>,
    lookups: Arc<LookupTables>,
}

impl sdk::Transform for WithTables {
    fn new(_config: &sdk::Config) -> Result<Self, sdk::PluginError> {
        Err(sdk::plugin_error("native", "built by the benchmark"))
    }

    fn reads(&self) -> Vec<String> {
        self.reads.clone()
    }

    fn transform(
        &self,
        record: &sdk::Record<'_>,
        out: &mut sdk::Emitter,
    ) -> Result<(), sdk::PluginError> {
        let found = record.fields()?;
        out.emit_with(record.key, |value| {
            self.plugin
                .enrich(record.value, &found, &Tables(&self.lookups), value)
        })?;
        for (key, value) in record.headers() {
            out.header(key, value);
        }
        Ok(())
    }
}

/// The host's lookup tables, as `catalog-enrich` asks for rows.
struct Tables<'a>(&'a LookupTables);

impl catalog_enrich::Lookup for Tables<'_> {
    fn row(&self, table: &str, key: &str) -> Option<Map<String, Json>> {
        serde_json::from_str(&self.0.get(table, key)?).ok()
    }
}

impl StageCode for NativeFilter {
    fn reads(&self) -> &[String] {
        &self.reads
    }

    fn filter(&mut self, batch: &Batch, fields: &Fields) -> Vec<Verdict> {
        sdk::glue::filter(&self.plugin, &guest_batch(batch), &guest_fields(fields))
            .into_iter()
            .map(|decision| match decision {
                sdk::Decision::Keep => Verdict::Keep,
                sdk::Decision::Drop => Verdict::Drop,
                sdk::Decision::Reject(error) => Verdict::Failed(rejected(error)),
            })
            .collect()
    }
}

impl StageCode for NativeEnrich {
    fn reads(&self) -> &[String] {
        &self.0.reads
    }

    fn transform(
        &mut self,
        batch: &Batch,
        fields: &Fields,
    ) -> Vec<Result<Vec<OutputRecord>, Failure>> {
        let transformed = sdk::glue::transform(&self.0, &guest_batch(batch), &guest_fields(fields));
        let host = host_transforming::Transformed {
            data: transformed.data,
            records: transformed
                .records
                .into_iter()
                .map(|record| host_transforming::Emitted {
                    source: record.source,
                    key: record.key.map(host_span),
                    value: host_span(record.value),
                })
                .collect(),
            headers: Vec::new(),
            rejected: transformed
                .rejected
                .into_iter()
                .map(|rejection| host_types::Rejection {
                    index: rejection.index,
                    error: host_error(rejection.error),
                })
                .collect(),
        };
        split_transformed(host, batch.records.len()).expect("the SDK keeps to the contract")
    }
}

impl StageCode for NativeStats {
    fn reads(&self) -> &[String] {
        &self.reads
    }

    fn aggregate(
        &mut self,
        batch: &Batch,
        fields: &Fields,
        groups: &[host_aggregating::Group],
    ) -> Vec<GroupResult> {
        let guest_groups = groups
            .iter()
            .map(|group| sdk::bindings::aggregating::Group {
                key: group.key.clone(),
                state: group.state.clone(),
                first: group.first,
                count: group.count,
            })
            .collect();
        let outcomes = sdk::glue::aggregate(
            &self.plugin,
            &guest_batch(batch),
            &guest_fields(fields),
            guest_groups,
        );
        groups
            .iter()
            .zip(outcomes)
            .map(|(group, outcome)| match outcome {
                Ok(outcome) => GroupResult {
                    state: Some(outcome.state),
                    row: outcome
                        .row
                        .map(|row| row.into_iter().map(host_value).collect()),
                    failures: outcome
                        .rejected
                        .into_iter()
                        .map(|rejection| (rejection.index as usize, rejected(rejection.error)))
                        .collect(),
                },
                Err(error) => GroupResult {
                    state: group.state.clone(),
                    row: None,
                    failures: (group.first..group.first + group.count)
                        .map(|index| (index as usize, rejected(error.clone())))
                        .collect(),
                },
            })
            .collect()
    }

    fn migrate(&mut self, from_version: u32, state: &[u8]) -> Result<Vec<u8>, Failure> {
        sdk::glue::migrate::<session_stats::SessionStats>(from_version, state.to_vec())
            .map_err(rejected)
    }
}

/// The host's batch as the SDK's type: one copy of the buffer.
fn guest_batch(batch: &Batch) -> sdk::Batch {
    sdk::Batch {
        data: batch.data.clone(),
        records: batch
            .records
            .iter()
            .map(|record| sdk_types::RecordInfo {
                key: record.key.map(guest_span),
                value: guest_span(record.value),
                timestamp: record.timestamp,
                partition: record.partition,
                offset: record.offset,
            })
            .collect(),
        headers: batch
            .headers
            .iter()
            .map(|header| sdk_types::RecordHeader {
                record: header.record,
                key: header.key.clone(),
                value: header.value.clone(),
            })
            .collect(),
    }
}

/// The host's fields as the SDK's type.
pub fn guest_fields(fields: &Fields) -> sdk::BatchFields {
    sdk::BatchFields {
        first: fields.first.clone(),
        spans: fields.spans.iter().copied().map(guest_span).collect(),
    }
}

fn guest_span(span: host_types::Span) -> sdk_types::Span {
    sdk_types::Span {
        start: span.start,
        len: span.len,
    }
}

fn host_span(span: sdk_types::Span) -> host_types::Span {
    host_types::Span {
        start: span.start,
        len: span.len,
    }
}

fn host_error(error: sdk::PluginError) -> host_types::PluginError {
    host_types::PluginError {
        code: error.code,
        message: error.message,
    }
}

fn rejected(error: sdk::PluginError) -> Failure {
    Failure::Rejected(host_error(error))
}

fn host_value(value: sdk::Value) -> host_types::Value {
    match value {
        sdk::Value::Null => host_types::Value::Null,
        sdk::Value::Boolean(value) => host_types::Value::Boolean(value),
        sdk::Value::Long(value) => host_types::Value::Long(value),
        sdk::Value::Double(value) => host_types::Value::Double(value),
        sdk::Value::Text(value) => host_types::Value::Text(value),
        sdk::Value::Bytes(value) => host_types::Value::Bytes(value),
    }
}
