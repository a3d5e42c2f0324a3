//! The checks a new aggregator version passes before a swap: its output
//! schema and state version read from a probe instance, the sinks able to
//! take its rows, and the running version able to read the state the new
//! one writes.

use std::sync::Arc;

use super::SwapError;
use super::order::AggregatorVersion;
use super::stages::StageSlot;
use crate::plugin::{BatchBuilder, Group, Plugin, StageContext, Worker, no_fields};
use crate::sink::{RowSchema, Shape, SinkError, Sinks};

/// The aggregator checks: its schema parses, the registry accepts it, the
/// table can take it, and the version running now in `slot` (of `current`)
/// can read the state the new one writes (or a rollback could not work).
/// Prepares the sinks for the new version's rows.
pub(super) async fn check_aggregator(
    sinks: &Sinks,
    slot: &StageSlot,
    current: &AggregatorVersion,
    plugin: &Arc<Plugin>,
) -> Result<AggregatorVersion, SwapError> {
    // Plugin calls block (and may write to stdio): off the async threads.
    let (plugin, running, context) = (
        Arc::clone(plugin),
        Arc::clone(&slot.current.plugin),
        Arc::clone(&slot.context),
    );
    let current_version = current.state_version;
    let (schema, state_version) = tokio::task::spawn_blocking(move || {
        probe_aggregator(&plugin, &running, &context, current_version)
    })
    .await
    .map_err(|error| SwapError::Unavailable(error.to_string()))??;
    let unavailable = |error: SinkError| SwapError::Unavailable(error.to_string());
    if let Some(refusal) = sinks.check(&schema).await.map_err(unavailable)? {
        return Err(SwapError::Refused(refusal));
    }
    let shape = Arc::new(Shape::new(Arc::new(schema)));
    // Registers the schema and adds the new columns before any shard writes
    // such rows.
    sinks.prepare(&shape).await.map_err(unavailable)?;
    Ok(AggregatorVersion {
        output: shape,
        state_version,
    })
}

/// Reads a new aggregator's output schema and state version, and checks
/// that `running` (state version `current_version`) can read the state the
/// new one writes — or a rollback could not work.
fn probe_aggregator(
    plugin: &Arc<Plugin>,
    running: &Arc<Plugin>,
    context: &Arc<StageContext>,
    current_version: u32,
) -> Result<(RowSchema, u32), SwapError> {
    let refused = |what: String| SwapError::Refused(what);
    let mut probe = Worker::new(Arc::clone(plugin), Arc::clone(context))
        .map_err(|error| refused(error.to_string()))?;
    let text = probe
        .output_schema()
        .map_err(|failure| refused(format!("its output-schema {failure}")))?;
    let state_version = probe
        .state_version()
        .map_err(|failure| refused(format!("its state-version {failure}")))?;
    let schema = RowSchema::parse(&text).map_err(|error| {
        refused(format!(
            "its output schema is not one weir can use: {error}"
        ))
    })?;
    if state_version != current_version {
        // The state the new version writes for a fresh key...
        let empty = BatchBuilder::default().build();
        let key = Group {
            key: b"weir-probe".to_vec(),
            state: None,
            first: 0,
            count: 0,
        };
        let fresh = probe
            .aggregate(&empty, &no_fields(), &[key])
            .pop()
            .and_then(|result| result.state)
            .ok_or_else(|| refused("it returned no state for a key without events".to_owned()))?;
        // ...must be readable by the version running now.
        let mut old = Worker::new(Arc::clone(running), Arc::clone(context))
            .map_err(|error| SwapError::Unavailable(error.to_string()))?;
        old.migrate(state_version, &fresh).map_err(|failure| {
            refused(format!(
                "the running version (state version {current_version}) cannot read the state \
                 version {state_version} the new one writes ({failure}), so the swap could not be \
                 rolled back; make the new state a superset the old version can read, as weir's \
                 SDKs do"
            ))
        })?;
    }
    Ok((schema, state_version))
}
