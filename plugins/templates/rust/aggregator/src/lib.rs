//! `{{name}}`: a weir aggregator. Per key (the pipeline's `key_field`, for
//! example `session_id`): how many events, how many purchases, and the type
//! of the newest event.

use serde::{Deserialize, Serialize};
use weir_plugin_sdk::{Aggregator, Config, PluginError, Record, Value, export_aggregator};

/// One key's state, stored by the SDK as JSON. `#[serde(default)]` lets a
/// later version add fields and still read this one's state.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    events: i64,
    purchases: i64,
    last_event: Option<String>,
}

/// The plugin; it needs no configuration.
pub struct Plugin;

impl Aggregator for Plugin {
    type State = State;
    const STATE_VERSION: u32 = 1;
    /// The row's Avro schema: the Kafka sink registers it, the PostgreSQL
    /// sink makes a column of each field.
    const OUTPUT_SCHEMA: &'static str = r#"{
      "type": "record",
      "name": "Activity",
      "fields": [
        {"name": "EVENTS", "type": "long"},
        {"name": "PURCHASES", "type": "long"},
        {"name": "LAST_EVENT", "type": ["null", "string"], "default": null}
      ]
    }"#;

    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    /// The fields read; the host parses each event once and hands them over.
    fn reads(&self) -> Vec<String> {
        vec!["event_type".to_owned()]
    }

    fn apply(&self, state: &mut State, event: &Record<'_>) -> Result<(), PluginError> {
        // Read (and type-check) first: a rejected event must leave the state as it was.
        let fields = event.fields()?;
        let event_type: Option<String> = fields
            .get(0)
            .and_then(|field| field.non_null())
            .map(|field| field.parse())
            .transpose()?;
        state.events += 1;
        if event_type.as_deref() == Some("purchase") {
            state.purchases += 1;
        }
        if event_type.is_some() {
            state.last_event = event_type;
        }
        Ok(())
    }

    fn row(&self, _key: &[u8], state: &State) -> Vec<Value> {
        vec![
            Value::Long(state.events),
            Value::Long(state.purchases),
            state.last_event.clone().map_or(Value::Null, Value::Text),
        ]
    }
}

export_aggregator!(Plugin);
