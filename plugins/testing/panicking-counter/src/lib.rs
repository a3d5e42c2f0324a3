//! Counts events per key; panics on an event containing `POISON`.

use serde::{Deserialize, Serialize};
use weir_plugin_sdk::{Aggregator, Config, PluginError, Record, Value, export_aggregator};

#[derive(Default, Serialize, Deserialize)]
struct Count {
    events: i64,
}

struct PanickingCounter;

impl Aggregator for PanickingCounter {
    type State = Count;
    const STATE_VERSION: u32 = 1;
    const OUTPUT_SCHEMA: &'static str =
        r#"{"type":"record","name":"Count","fields":[{"name":"EVENTS","type":"long"}]}"#;

    fn new(_config: &Config) -> Result<Self, PluginError> {
        Ok(Self)
    }

    fn apply(&self, state: &mut Count, event: &Record<'_>) -> Result<(), PluginError> {
        if event.value.windows(6).any(|window| window == b"POISON") {
            panic!("poison event at offset {}", event.offset);
        }
        state.events += 1;
        Ok(())
    }

    fn row(&self, _key: &[u8], state: &Count) -> Vec<Value> {
        vec![Value::Long(state.events)]
    }
}

export_aggregator!(PanickingCounter);
