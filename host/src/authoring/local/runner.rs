//! The plugin running over batches, through the code a pipeline runs: a
//! filter or transform in a worker of its own, an aggregator in a chain of
//! its own with host-owned keyed state.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::bail;

use super::json::{hex, json_text, row_json, text};
use crate::engine::chain::{Aggregating, Chain, End, Stage, Values};
use crate::engine::state::KeyedState;
use crate::plugin::{
    Batch, BatchExt, Plugin, PluginKind, StageContext, Value, Verdict, Worker, read,
};
use crate::sink::{DeadLetter, PluginRef, RowSchema};

/// The plugin running over batches.
pub(super) enum Runner {
    /// A filter or transform, called directly.
    Stage {
        worker: Box<Worker>,
        kind: PluginKind,
        plugin: PluginRef,
        stage: String,
        lines: Vec<String>,
    },
    /// An aggregator, in a chain of its own with keyed state.
    Aggregator {
        chain: Box<Chain>,
        state: KeyedState,
        schema: Arc<RowSchema>,
        rows: BTreeMap<String, Vec<Value>>,
    },
}

/// What a run produced.
pub(super) struct Output {
    /// The output's lines: the values kept or emitted, or each key's last row.
    pub(super) lines: Vec<String>,
    /// An aggregator's final state per key, as lines; `None` for the others.
    pub(super) states: Option<Vec<String>>,
}

impl Runner {
    /// The plugin ready to run; an aggregator needs `key_field`.
    pub(super) fn new(
        plugin: &Arc<Plugin>,
        context: &Arc<StageContext>,
        key_field: Option<String>,
    ) -> anyhow::Result<Self> {
        if plugin.kind != PluginKind::Aggregator {
            let worker = Worker::new(Arc::clone(plugin), Arc::clone(context))?;
            return Ok(Self::Stage {
                worker: Box::new(worker),
                kind: plugin.kind,
                plugin: PluginRef::of(plugin),
                stage: context.stage.clone(),
                lines: Vec::new(),
            });
        }
        if key_field.is_none() {
            bail!(
                "`{}` is an aggregator, which keeps state per key: name the JSON field that keys it with --key-field (for the demo's events: --key-field session_id)",
                plugin.name
            );
        }
        let (schema, state_version) = crate::engine::aggregator_schema(plugin, context)?;
        let stage = Stage::new(plugin, Arc::clone(context))?;
        let chain = Chain::new(
            Vec::new(),
            End::Aggregate(Box::new(Aggregating::new(
                stage,
                key_field,
                Arc::clone(&schema),
                state_version,
            ))),
            // Test input goes to the plugin as it is, checked by no source.
            Values::Bytes,
        );
        Ok(Self::Aggregator {
            chain: Box::new(chain),
            state: KeyedState::new(state_version),
            schema,
            rows: BTreeMap::new(),
        })
    }

    /// Runs the plugin over `batch`; the records it fails on go to `dead`.
    pub(super) fn process(&mut self, batch: &Batch, dead: &mut Vec<DeadLetter>) {
        match self {
            Self::Stage {
                worker,
                kind,
                plugin,
                stage,
                lines,
            } => {
                let fields = read(batch, worker.reads());
                let fail = |index: usize, failure| {
                    DeadLetter::failed(batch.record(index), stage, plugin, failure)
                };
                if *kind == PluginKind::Filter {
                    for (index, verdict) in worker.filter(batch, &fields).into_iter().enumerate() {
                        match verdict {
                            Verdict::Keep => lines.push(text(batch.record(index).value)),
                            Verdict::Drop => {}
                            Verdict::Failed(failure) => dead.push(fail(index, failure)),
                        }
                    }
                } else {
                    for (index, result) in worker.transform(batch, &fields).into_iter().enumerate()
                    {
                        match result {
                            Ok(outputs) => {
                                lines.extend(outputs.iter().map(|output| text(&output.value)));
                            }
                            Err(failure) => dead.push(fail(index, failure)),
                        }
                    }
                }
            }
            Self::Aggregator {
                chain, state, rows, ..
            } => {
                chain.process(batch, state, dead);
                for (_, _, (key, row)) in state.take_changes().rows {
                    rows.insert(key, row);
                }
            }
        }
    }

    /// What the plugin produced over every batch.
    pub(super) fn finish(self) -> Output {
        match self {
            Self::Stage { lines, .. } => Output {
                lines,
                states: None,
            },
            Self::Aggregator {
                state,
                schema,
                rows,
                ..
            } => Output {
                lines: row_lines(&schema, &rows),
                states: Some(state_lines(&state)),
            },
        }
    }
}

/// Each key's last row, `{"key": ..., "row": {...}}`, keys sorted.
fn row_lines(schema: &RowSchema, rows: &BTreeMap<String, Vec<Value>>) -> Vec<String> {
    rows.iter()
        .map(|(key, row)| {
            format!(
                "{{\"key\":{},\"row\":{}}}",
                json_text(key),
                row_json(schema, row)
            )
        })
        .collect()
}

/// Each key's final state, keys sorted: JSON when the state is JSON, else
/// its bytes in hexadecimal.
fn state_lines(state: &KeyedState) -> Vec<String> {
    let mut states: Vec<(&[u8], String)> = state
        .entries()
        .map(|(_, key, held)| {
            let state = match serde_json::from_slice::<serde_json::Value>(held.state) {
                Ok(json) => format!("\"state\":{json}"),
                Err(_) => format!("\"state_hex\":\"{}\"", hex(held.state)),
            };
            let line = format!(
                "{{\"key\":{},\"version\":{},{state}}}",
                json_text(&String::from_utf8_lossy(key)),
                held.version
            );
            (key, line)
        })
        .collect();
    states.sort();
    states.into_iter().map(|(_, line)| line).collect()
}
